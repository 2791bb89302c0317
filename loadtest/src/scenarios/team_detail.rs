//! `team-detail`: the club's team detail and profile reads (DOMAIN §2 and §6: 80 clients with
//! 1.5–2 s think time went from ~3,000 ms to ~1,000 ms average once the source cached them).
//! Seeded members of a seeded club alternate `GetTeam` of any of its approved teams and
//! `GetProfile` of any member, with 1.5–2 s think time by default (`--think-time 0` for
//! throughput).
//!
//! Cache on and off in the same run: `--uncached-target` names a second server on the same
//! database and Redis, started with `MARU__TEAMS__CACHE_ENABLED=false
//! MARU__FEED__CACHE_ENABLED=false` (and the same `auth.jwt_key`: the users' tokens come from the
//! first one). Users alternate between the two, and each target's calls are recorded under their
//! own names (`GetTeam [cached]`, `GetTeam [uncached]`), so one report gives avg/p50/p99 per
//! target under the same load. With `--server-metrics` (the cached server's) the run must see
//! cache hits there. A full run checks the cached p99 of both RPCs against 10 ms.
//!
//! The club, its members (and their tokens) and its teams are seeded once per `--seed`; a rerun
//! finds them again.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use goose::goose::{GooseUser, Scenario, TransactionResult};
use maru::grpc::pb;
use maru::grpc::pb::team_service_client::TeamServiceClient;
use tonic::transport::{Channel, Endpoint};

use super::feed::mix;
use super::whoami::custom;
use super::{Ctx, Entry, LoadScenario, Shape, Think, session, tx, with_think};
use crate::report::{Check, Summary};
use crate::rpc::{GRPC, fire, request};
use crate::seed::{self, Account, Seeding};

pub const ENTRY: Entry = Entry {
    name: "team-detail",
    about: "GetTeam and GetProfile in a seeded club; cache on vs off in one run with --uncached-target",
    full: Shape::new(80, 60, Think::ms(1500, 2000)),
    smoke: Shape::new(8, 4, Think::NONE),
    build: |ctx| Box::new(Arc::new(TeamDetail { ctx, data: OnceLock::new(), hits_before: OnceLock::new() })),
};

/// Default p99 goal of a full run per cached RPC, in milliseconds.
const P99_GOAL_MS: f64 = 10.0;
/// Approved teams in the seeded club.
const TEAMS: usize = 40;
/// The caches behind GetTeam and GetProfile (`maru_cache_requests_total{cache}`).
const CACHES: &[&str] = &["team", "profile"];
const GET_TEAM: &str = "GetTeam";
const GET_PROFILE: &str = "GetProfile";

struct Data {
    accounts: Vec<Account>,
    teams: Vec<String>,
}

struct TeamDetail {
    ctx: Arc<Ctx>,
    data: OnceLock<Data>,
    hits_before: OnceLock<f64>,
}

#[derive(Clone)]
struct Session {
    channel: Channel,
    /// `[cached]` or `[uncached]` with an uncached target, else empty.
    label: &'static str,
    account: usize,
    n: u64,
}

/// Seeds (or finds) the club: `members` accounts (the first its manager), and [`TEAMS`] teams
/// proposed by members and approved by the manager through the API.
async fn seed_club(ctx: &Ctx, members: usize) -> anyhow::Result<Data> {
    let prefix = format!("td.s{}.", ctx.seed);
    let how = Seeding { prefix: &prefix, count: members.max(2), forwarded: false, fail_on_rate_limit: false };
    let accounts = seed::accounts(ctx, &how).await?;
    let roles: Vec<(&Account, &str)> =
        accounts.iter().enumerate().map(|(i, a)| (a, if i == 0 { "MANAGER" } else { "MEMBER" })).collect();
    let club = seed::community(ctx, "CLUB", &format!("team-detail-s{}", ctx.seed), &roles).await?;
    let existing: Vec<String> = {
        let mut db = ctx.db().await?;
        sqlx::query_scalar("select title from teams where community_id = $1::uuid")
            .bind(&club)
            .fetch_all(&mut db)
            .await?
    };
    let missing: Vec<usize> =
        (0..TEAMS).filter(|n| !existing.iter().any(|t| *t == format!("load team {n} s{}", ctx.seed))).collect();
    if !missing.is_empty() {
        println!("seeding {} teams in the team-detail club", missing.len());
    }
    let client = TeamServiceClient::new(ctx.channel(0)?);
    let (accounts_ref, club_ref) = (&accounts, &club);
    futures::stream::iter(missing)
        .map(|n| {
            let mut client = client.clone();
            async move {
                let leader = &accounts_ref[1 + n % (accounts_ref.len() - 1)];
                let msg = pb::ProposeTeamRequest {
                    community_id: club_ref.clone(),
                    title: format!("load team {n} s{}", ctx.seed),
                    genre: pb::TeamGenre::Web as i32,
                    description: format!("load-test team {n}: a web service with a Rust backend"),
                    links: vec!["https://github.com/maru-load".into()],
                    roles: vec![
                        pb::RoleSeats { role: pb::TeamRole::Backend as i32, capacity: 3, filled: 0 },
                        pb::RoleSeats { role: pb::TeamRole::Frontend as i32, capacity: 2, filled: 0 },
                        pb::RoleSeats { role: pb::TeamRole::Design as i32, capacity: 1, filled: 0 },
                    ],
                    leader_role: pb::TeamRole::Backend as i32,
                    ..Default::default()
                };
                let team = client
                    .propose_team(request(msg, Some(&leader.bearer), None))
                    .await
                    .map_err(|s| anyhow::anyhow!("seeding team {n}: {s}"))?
                    .into_inner()
                    .team
                    .context("ProposeTeam returned no team")?;
                let approve = pb::ApproveTeamRequest { team_id: team.id, note: String::new() };
                client
                    .approve_team(request(approve, Some(&accounts_ref[0].bearer), None))
                    .await
                    .map_err(|s| anyhow::anyhow!("approving team {n}: {s}"))?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(8)
        .try_for_each(|_| async { Ok(()) })
        .await?;
    seed::analyze(ctx, &["users", "communities", "community_memberships", "teams", "team_roles", "team_members"])
        .await?;
    let mut db = ctx.db().await?;
    let teams: Vec<String> = sqlx::query_scalar(
        "select id::text from teams where community_id = $1::uuid and state = 'RECRUITING' order by created_at",
    )
    .bind(&club)
    .fetch_all(&mut db)
    .await?;
    anyhow::ensure!(!teams.is_empty(), "the team-detail club has no approved team");
    Ok(Data { accounts, teams })
}

impl TeamDetail {
    fn uncached(&self) -> Option<&str> {
        self.ctx.options.uncached_target.as_deref()
    }

    fn data(&self) -> Result<&Data, Box<goose::goose::TransactionError>> {
        self.data.get().ok_or_else(|| custom("the club is not seeded".into()))
    }

    /// Even users call the (cached) targets, odd users the uncached one, when there is one.
    async fn start(self: Arc<Self>, user: &mut GooseUser) -> TransactionResult {
        let i = user.weighted_users_index;
        let accounts = self.data()?.accounts.len();
        let (channel, label) = match self.uncached() {
            Some(origin) if i % 2 == 1 => {
                let channel = Endpoint::from_shared(origin.to_owned())
                    .map_err(|e| custom(format!("{e}")))?
                    .timeout(self.ctx.request_timeout)
                    .connect_timeout(Duration::from_secs(5))
                    .connect_lazy();
                (channel, " [uncached]")
            }
            Some(_) => (self.ctx.channel(i / 2).map_err(|e| custom(format!("{e:#}")))?, " [cached]"),
            None => (self.ctx.channel(i).map_err(|e| custom(format!("{e:#}")))?, ""),
        };
        user.set_session_data(Session { channel, label, account: i % accounts, n: i as u64 * 7919 });
        Ok(())
    }

    fn next(&self, user: &mut GooseUser) -> crate::rpc::TxResult<(Session, u64)> {
        let mut s = session::<Session>(user)?;
        s.n += 1;
        let pick = mix(self.ctx.seed, s.n);
        user.set_session_data(s.clone());
        Ok((s, pick))
    }

    async fn get_team(self: Arc<Self>, user: &mut GooseUser) -> TransactionResult {
        let (s, pick) = self.next(user)?;
        let data = self.data()?;
        let team_id = data.teams[(pick % data.teams.len() as u64) as usize].clone();
        let bearer = &data.accounts[s.account].bearer;
        let mut client = TeamServiceClient::new(s.channel);
        let call = client.get_team(request(pb::GetTeamRequest { team_id }, Some(bearer), None));
        fire(user, &self.ctx.budget, GRPC, &format!("{GET_TEAM}{}", s.label), call).await
    }

    async fn get_profile(self: Arc<Self>, user: &mut GooseUser) -> TransactionResult {
        let (s, pick) = self.next(user)?;
        let data = self.data()?;
        let handle = data.accounts[(pick % data.accounts.len() as u64) as usize].handle.clone();
        let bearer = &data.accounts[s.account].bearer;
        let mut client = maru::grpc::pb::profile_service_client::ProfileServiceClient::new(s.channel);
        let call = client.get_profile(request(pb::GetProfileRequest { handle }, Some(bearer), None));
        fire(user, &self.ctx.budget, GRPC, &format!("{GET_PROFILE}{}", s.label), call).await
    }

    async fn hits(&self) -> anyhow::Result<Option<f64>> {
        let Some(m) = &self.ctx.server_metrics else { return Ok(None) };
        let mut total = 0.0;
        for cache in CACHES {
            total += m.sum("maru_cache_requests_total", &[("cache", cache), ("result", "hit")]).await?;
        }
        Ok(Some(total))
    }

    /// avg/p50/p99 and requests of both RPCs on the targets called `label`.
    fn target_line(s: &Summary, label: &str) -> Option<(String, f64)> {
        let rpcs: Vec<_> =
            [GET_TEAM, GET_PROFILE].iter().filter_map(|r| Some((*r, s.rpc(&format!("{GRPC} {r}{label}"))?))).collect();
        if rpcs.is_empty() {
            return None;
        }
        let requests: u64 = rpcs.iter().map(|(_, r)| r.requests).sum();
        let mean = rpcs.iter().map(|(_, r)| r.mean_ms * r.requests as f64).sum::<f64>() / requests.max(1) as f64;
        let parts: Vec<String> = rpcs
            .iter()
            .map(|(name, r)| {
                format!(
                    "{name} avg {:.2} / p50 {:.2} / p99 {:.2} ms ({} calls, {:.1}/s)",
                    r.mean_ms, r.p50_ms, r.p99_ms, r.requests, r.rps
                )
            })
            .collect();
        Some((parts.join("; "), mean))
    }
}

#[async_trait]
impl LoadScenario for Arc<TeamDetail> {
    async fn prepare(&self) -> anyhow::Result<Vec<Scenario>> {
        let data = seed_club(&self.ctx, self.ctx.users.min(200)).await?;
        let _ = self.data.set(data);
        if let Some(h) = self.hits().await? {
            let _ = self.hits_before.set(h);
        }
        let s = Scenario::new("club members")
            .register_transaction(tx!(self, "start", start).set_on_start())
            .register_transaction(tx!(self, "GetTeam", get_team))
            .register_transaction(tx!(self, "GetProfile", get_profile));
        Ok(vec![with_think(s, self.ctx.think)?])
    }

    async fn verify(&self, s: &Summary) -> anyhow::Result<Vec<Check>> {
        let mut checks = vec![Check::no_internal(s), Check::only_codes("every reply OK", s, |_, code| code == "OK")];
        match (self.hits().await?, self.hits_before.get()) {
            (Some(after), Some(before)) => checks.push(Check::new(
                "the cached server's caches answered",
                after - before > 0.0,
                format!("{} cache hits ({}) during the run", after - before, CACHES.join(", ")),
            )),
            _ => checks.push(Check::new("cache hits not verified", true, "no --server-metrics")),
        }
        let cached_label = if self.uncached().is_some() { " [cached]" } else { "" };
        let cached = TeamDetail::target_line(s, cached_label);
        if let Some((line, _)) = &cached {
            checks.push(Check::new(format!("target{cached_label}"), true, line.clone()));
        }
        if self.uncached().is_some() {
            let uncached = TeamDetail::target_line(s, " [uncached]");
            checks.push(Check::new(
                "both targets served",
                cached.is_some() && uncached.is_some(),
                "users alternate between the cached and the uncached target",
            ));
            if let (Some((_, c)), Some((line, u))) = (&cached, &uncached) {
                checks.push(Check::new(
                    "target [uncached]",
                    true,
                    format!("{line}; avg {:.1}× the cached", u / c.max(1e-9)),
                ));
            }
        }
        if !self.ctx.smoke {
            let goal = self.ctx.options.p99_ms.unwrap_or(P99_GOAL_MS);
            for rpc in [GET_TEAM, GET_PROFILE] {
                checks.push(Check::p99(s, &format!("{GRPC} {rpc}{cached_label}"), goal));
            }
        }
        Ok(checks)
    }
}
