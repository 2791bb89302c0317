//! `contention`: many clients racing one unique key. The run is cut into rounds; every user
//! sleeps until the round's start instant and then claims that round's key, so the claims land
//! together. Afterwards the database must hold exactly one row per raced key, the replies
//! must say the same (one winner where the operation is exclusive), and none may be INTERNAL.
//!
//! Races today: `signup` (one handle per round) and `vote` (one member casting the round's poll
//! vote from every client at once). Like, follow and check-in join as further [`Race`]
//! implementations when their RPCs land.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use goose::goose::{GooseUser, Scenario, TransactionResult};
use maru::grpc::pb;
use maru::grpc::pb::auth_service_client::AuthServiceClient;
use maru::grpc::pb::poll_service_client::PollServiceClient;
use tokio::time::Instant;
use tonic::Code;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::Channel;

use super::whoami::custom;
use super::{Ctx, Entry, LoadScenario, Shape, Think, session, tx};
use crate::report::{Check, Summary};
use crate::rpc::{GRPC, TxResult, record, request};
use crate::seed::{self, Seeding};

pub const ENTRY: Entry = Entry {
    name: "contention",
    about: "all users race one unique key per round (--race signup|vote); exact counts read back",
    full: Shape::new(100, 30, Think::NONE),
    smoke: Shape::new(10, 5, Think::NONE),
    build: |ctx| Box::new(Arc::new(Contention::new(ctx))),
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RaceKind {
    /// SignUp with the round's handle: one account, one OK, the rest ALREADY_EXISTS.
    Signup,
    /// One member's CastVote in the round's poll from every client: one vote row, one OK, the
    /// rest ALREADY_EXISTS `ALREADY_VOTED`.
    Vote,
}

/// What one claim got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    Won,
    Lost,
    Other,
    /// Not sent: the request budget is spent.
    Skipped,
}

/// One kind of unique key that users race for.
#[async_trait]
pub trait Race: Send + Sync {
    /// Seeds what the race needs for `rounds` rounds (before the users start).
    async fn prepare(&self, _ctx: &Ctx, _rounds: u64) -> anyhow::Result<()> {
        Ok(())
    }
    /// The recorded RPC (`GRPC SignUp`).
    fn rpc(&self) -> &'static str;
    /// The code a loser gets (an idempotent operation would answer OK to everyone).
    fn loser_code(&self) -> &'static str;
    /// Whether exactly one claim per round may succeed.
    fn exclusive(&self) -> bool;
    /// User `i` claims round `round`'s key.
    async fn claim(&self, ctx: &Ctx, user: &mut GooseUser, channel: Channel, i: usize, round: u64) -> TxResult<Claim>;
    /// Rows per round's key, read back from the database.
    async fn rows(&self, ctx: &Ctx) -> anyhow::Result<BTreeMap<u64, i64>>;
}

struct SignUpRace {
    prefix: String,
}

#[async_trait]
impl Race for SignUpRace {
    fn rpc(&self) -> &'static str {
        "GRPC SignUp"
    }

    fn loser_code(&self) -> &'static str {
        "ALREADY_EXISTS"
    }

    fn exclusive(&self) -> bool {
        true
    }

    async fn claim(&self, ctx: &Ctx, user: &mut GooseUser, channel: Channel, i: usize, round: u64) -> TxResult<Claim> {
        let handle = format!("{}r{round}", self.prefix);
        let msg = pb::SignUpRequest {
            email: format!("{handle}u{i}@example.com"),
            handle,
            password: "contention password".into(),
            display_name: format!("Racer {i}"),
            request_id: String::new(),
        };
        let mut client = AuthServiceClient::new(channel);
        let call = client.sign_up(request(msg, None, None));
        Ok(match record(user, &ctx.budget, GRPC, "SignUp", call).await? {
            Ok(_) => Claim::Won,
            Err(f) if f.skipped => Claim::Skipped,
            Err(f) if f.code == Code::AlreadyExists => Claim::Lost,
            Err(_) => Claim::Other,
        })
    }

    async fn rows(&self, ctx: &Ctx) -> anyhow::Result<BTreeMap<u64, i64>> {
        let mut db = ctx.db().await?;
        let rows: Vec<(String, i64)> =
            sqlx::query_as("select handle, count(*) from users where handle like $1 || 'r%' group by handle")
                .bind(&self.prefix)
                .fetch_all(&mut db)
                .await?;
        let prefix = format!("{}r", self.prefix);
        Ok(rows.into_iter().filter_map(|(h, n)| Some((h.strip_prefix(&prefix)?.parse().ok()?, n))).collect())
    }
}

/// The voter, their community's poll per round, and who made them.
struct VoteRace {
    prefix: String,
    voter: OnceLock<AsciiMetadataValue>,
    /// (poll id, first option id) per round.
    polls: OnceLock<Vec<(String, String)>>,
}

#[async_trait]
impl Race for VoteRace {
    /// Seeds a manager and a voter through the API, makes them members of a fresh community
    /// ([`seed::community`]), then lets the manager open one poll per round through the API.
    async fn prepare(&self, ctx: &Ctx, rounds: u64) -> anyhow::Result<()> {
        let how = Seeding { prefix: &self.prefix, count: 2, forwarded: false, fail_on_rate_limit: false };
        let accounts = seed::accounts(ctx, &how).await?;
        let (manager, voter) = (&accounts[0], &accounts[1]);
        let community = seed::community(ctx, "CLUB", &self.prefix, &[(manager, "MANAGER"), (voter, "MEMBER")]).await?;
        let mut client = PollServiceClient::new(ctx.channel(0)?);
        let mut polls = Vec::new();
        for round in 0..rounds {
            let msg = pb::CreatePollRequest {
                community_id: community.clone(),
                question: format!("{} round {round}", self.prefix),
                options: vec!["yes".into(), "no".into()],
                ..Default::default()
            };
            let poll = client
                .create_poll(request(msg, Some(&manager.bearer), None))
                .await
                .map_err(|s| anyhow::anyhow!("seeding the round {round} poll: {s}"))?
                .into_inner()
                .poll
                .ok_or_else(|| anyhow::anyhow!("CreatePoll returned no poll"))?;
            let option = poll.options.first().map(|o| o.id.clone()).unwrap_or_default();
            polls.push((poll.id, option));
        }
        let _ = self.voter.set(voter.bearer.clone());
        let _ = self.polls.set(polls);
        Ok(())
    }

    fn rpc(&self) -> &'static str {
        "GRPC CastVote"
    }

    fn loser_code(&self) -> &'static str {
        "ALREADY_EXISTS"
    }

    fn exclusive(&self) -> bool {
        true
    }

    async fn claim(&self, ctx: &Ctx, user: &mut GooseUser, channel: Channel, _i: usize, round: u64) -> TxResult<Claim> {
        let (Some(voter), Some((poll_id, option_id))) =
            (self.voter.get(), self.polls.get().and_then(|p| p.get(round as usize)))
        else {
            return Ok(Claim::Other);
        };
        let msg = pb::CastVoteRequest { poll_id: poll_id.clone(), option_id: option_id.clone() };
        let mut client = PollServiceClient::new(channel);
        let call = client.cast_vote(request(msg, Some(voter), None));
        Ok(match record(user, &ctx.budget, GRPC, "CastVote", call).await? {
            Ok(_) => Claim::Won,
            Err(f) if f.skipped => Claim::Skipped,
            Err(f) if f.code == Code::AlreadyExists => Claim::Lost,
            Err(_) => Claim::Other,
        })
    }

    async fn rows(&self, ctx: &Ctx) -> anyhow::Result<BTreeMap<u64, i64>> {
        let ids: Vec<String> =
            self.polls.get().map(|p| p.iter().map(|(id, _)| id.clone()).collect()).unwrap_or_default();
        let mut db = ctx.db().await?;
        let counts: Vec<(String, i64)> = sqlx::query_as(
            "select poll_id::text, count(*) from community_poll_votes
              where poll_id = any($1::text[]::uuid[]) group by poll_id",
        )
        .bind(&ids)
        .fetch_all(&mut db)
        .await?;
        Ok(ids
            .iter()
            .enumerate()
            .filter_map(|(round, id)| counts.iter().find(|(p, _)| p == id).map(|(_, n)| (round as u64, *n)))
            .collect())
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    claims: u64,
    won: u64,
    lost: u64,
    other: u64,
}

struct Contention {
    ctx: Arc<Ctx>,
    race: Box<dyn Race>,
    period: Duration,
    rounds: u64,
    /// When round 0 starts: set by the first user to start, a moment ahead so all are up.
    t0: OnceLock<Instant>,
    tally: Mutex<BTreeMap<u64, Tally>>,
}

#[derive(Clone)]
struct Session {
    channel: Channel,
    next_round: u64,
}

impl Contention {
    fn new(ctx: Arc<Ctx>) -> Self {
        let race: Box<dyn Race> = match ctx.options.race {
            RaceKind::Signup => Box::new(SignUpRace { prefix: format!("ct{}", ctx.tag) }),
            RaceKind::Vote => {
                Box::new(VoteRace { prefix: format!("cv{}", ctx.tag), voter: OnceLock::new(), polls: OnceLock::new() })
            }
        };
        // A round must leave time for every claim: a SignUp race hashes once per claimant.
        let period = if ctx.smoke { Duration::from_secs(1) } else { Duration::from_secs(3) };
        let usable = ctx.duration.saturating_sub(START_DELAY);
        let rounds = (usable.as_millis() / period.as_millis()).max(1) as u64;
        Contention { ctx, race, period, rounds, t0: OnceLock::new(), tally: Mutex::new(BTreeMap::new()) }
    }

    async fn start(self: Arc<Self>, user: &mut GooseUser) -> TransactionResult {
        let channel = self.ctx.channel(user.weighted_users_index).map_err(|e| custom(format!("{e:#}")))?;
        user.set_session_data(Session { channel, next_round: 0 });
        Ok(())
    }

    async fn claim(self: Arc<Self>, user: &mut GooseUser) -> TransactionResult {
        let mut s = session::<Session>(user)?;
        let t0 = *self.t0.get_or_init(|| Instant::now() + START_DELAY);
        // The next round that has not started yet: a late user waits rather than trickles in.
        let since = Instant::now().saturating_duration_since(t0);
        let due = since.as_millis().div_ceil(self.period.as_millis()) as u64;
        let round = due.max(s.next_round);
        if round >= self.rounds {
            tokio::time::sleep(Duration::from_millis(200)).await;
            return Ok(());
        }
        tokio::time::sleep_until(t0 + self.period * round as u32).await;
        let i = user.weighted_users_index;
        let claim = self.race.claim(&self.ctx, user, s.channel.clone(), i, round).await?;
        if claim != Claim::Skipped
            && let Ok(mut tally) = self.tally.lock()
        {
            let t = tally.entry(round).or_default();
            t.claims += 1;
            match claim {
                Claim::Won => t.won += 1,
                Claim::Lost => t.lost += 1,
                Claim::Other | Claim::Skipped => t.other += 1,
            }
        }
        s.next_round = round + 1;
        user.set_session_data(s);
        Ok(())
    }
}

const START_DELAY: Duration = Duration::from_millis(1500);

#[async_trait]
impl LoadScenario for Arc<Contention> {
    async fn prepare(&self) -> anyhow::Result<Vec<Scenario>> {
        self.race.prepare(&self.ctx, self.rounds).await?;
        Ok(vec![
            Scenario::new("racers")
                .register_transaction(tx!(self, "start", start).set_on_start())
                .register_transaction(tx!(self, "claim", claim)),
        ])
    }

    async fn verify(&self, s: &Summary) -> anyhow::Result<Vec<Check>> {
        let tally = self.tally.lock().map(|t| t.clone()).unwrap_or_default();
        let rows = self.race.rows(&self.ctx).await?;
        let raced: Vec<u64> = tally.keys().copied().collect();
        let wrong_rows: Vec<String> = raced
            .iter()
            .map(|r| (r, rows.get(r).copied().unwrap_or(0)))
            .filter(|(_, n)| *n != 1)
            .map(|(r, n)| format!("round {r}: {n} rows"))
            .chain(rows.keys().filter(|r| !tally.contains_key(r)).map(|r| format!("round {r}: rows but no claim")))
            .collect();
        let winners: Vec<u64> = tally.values().map(|t| t.won).collect();
        let max_claims = tally.values().map(|t| t.claims).max().unwrap_or(0);
        let (rpc, loser) = (self.race.rpc(), self.race.loser_code());
        let mut checks = vec![
            Check::no_internal(s),
            Check::only_codes("only OK and the loser's code", s, |r, code| code == "OK" || (r == rpc && code == loser)),
            Check::new(
                "rounds raced with real contention",
                !raced.is_empty() && max_claims >= 2,
                format!("{} of {} rounds raced, up to {max_claims} claims per round", raced.len(), self.rounds),
            ),
            Check::new(
                "exactly one row per raced key",
                wrong_rows.is_empty(),
                if wrong_rows.is_empty() { format!("{} keys", raced.len()) } else { wrong_rows.join("; ") },
            ),
        ];
        if self.race.exclusive() {
            checks.push(Check::new(
                "exactly one winner per round",
                winners.iter().all(|w| *w == 1),
                format!("winners per round {winners:?}"),
            ));
        }
        Ok(checks)
    }
}
