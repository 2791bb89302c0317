//! `rate-limit-abuse`: one client far over its buckets while the others behave. The abuser
//! hammers `WhoAmI` (read bucket, keyed by its user) and `Login` (auth bucket, keyed by its
//! address) with no think time; polite users do the same at a human pace. Every client claims
//! its own address with `x-forwarded-for`, so the server must trust the loopback proxy:
//!
//! ```sh
//! MARU__RATE_LIMIT__TRUSTED_PROXIES='["127.0.0.1/32"]' target/release/maru serve
//! ```
//!
//! Checks: the abuser really floods both buckets (more calls than the bucket's burst plus its
//! rate over the run), is refused on both with RESOURCE_EXHAUSTED `RATE_LIMITED` carrying
//! `RetryInfo` and gets no more through than each bucket allows; the polite users get only OK;
//! nothing is INTERNAL. The checks need the target's buckets: `--read-bucket` and
//! `--auth-bucket` default to the server's defaults. A slow machine (a debug build on a busy
//! CI runner) may not outrun the default read bucket (3000/min, burst 300), so the smoke run
//! gives the server a smaller one and tells maru-load so.

use std::sync::{Arc, OnceLock};

use anyhow::Context;
use async_trait::async_trait;
use goose::goose::{GooseUser, Scenario, TransactionResult};
use maru::grpc::pb;
use maru::grpc::pb::auth_service_client::AuthServiceClient;
use tonic::Code;
use tonic::transport::Channel;

use super::whoami::custom;
use super::{Ctx, Entry, LoadScenario, Shape, Think, session, tx, with_think};
use crate::report::{Check, Summary};
use crate::rpc::{GRPC, bearer, fire, record, request};
use crate::seed::{self, Account, Seeding};

pub const ENTRY: Entry = Entry {
    name: "rate-limit-abuse",
    about: "one client far over its buckets → RESOURCE_EXHAUSTED with RetryInfo; the others unaffected",
    full: Shape::new(20, 30, Think::ms(1000, 2000)),
    smoke: Shape::new(5, 5, Think::ms(500, 1000)),
    build: |ctx| Box::new(Arc::new(Abuse { ctx, accounts: OnceLock::new() })),
};

/// Name prefix of the abuser's requests in the report.
const ABUSER: &str = "abuser:";
const ABUSER_WHO_AM_I: &str = "GRPC abuser:WhoAmI";
const ABUSER_LOGIN: &str = "GRPC abuser:Login";

/// A token bucket as the server configures it (`rate_limit.buckets.*`), written
/// `PER_MINUTE/BURST` on the command line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub per_minute: f64,
    pub burst: f64,
}

impl Bucket {
    /// The most calls one key can get through in `elapsed_s` seconds: the burst plus the refill,
    /// and 2 calls of slack for the seeding login that shares the key.
    pub fn allowance(&self, elapsed_s: f64) -> f64 {
        self.burst + self.per_minute / 60.0 * elapsed_s + 2.0
    }
}

impl std::str::FromStr for Bucket {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("not a bucket: `{s}` (expected PER_MINUTE/BURST, e.g. 3000/300)");
        let (rate, burst) = s.split_once('/').ok_or_else(bad)?;
        let positive = |v: &str| v.trim().parse::<u32>().ok().filter(|n| *n > 0).map(f64::from).ok_or_else(bad);
        Ok(Bucket { per_minute: positive(rate)?, burst: positive(burst)? })
    }
}

struct Abuse {
    ctx: Arc<Ctx>,
    accounts: OnceLock<Vec<Account>>,
}

#[derive(Clone)]
struct Session {
    client: AuthServiceClient<Channel>,
    account: Account,
}

impl Abuse {
    async fn start(self: Arc<Self>, user: &mut GooseUser) -> TransactionResult {
        let i = user.weighted_users_index;
        let accounts = self.accounts.get().map(Vec::as_slice).unwrap_or_default();
        let account = accounts.get(i % accounts.len().max(1)).ok_or_else(|| custom("no seeded accounts".into()))?;
        let channel = self.ctx.channel(i).map_err(|e| custom(format!("{e:#}")))?;
        user.set_session_data(Session { client: AuthServiceClient::new(channel), account: account.clone() });
        Ok(())
    }

    async fn who_am_i(&self, user: &mut GooseUser, name: &str) -> TransactionResult {
        let Session { mut client, account } = session::<Session>(user)?;
        let req = request(pb::WhoAmIRequest {}, Some(&account.bearer), account.forwarded_for.as_ref());
        fire(user, &self.ctx.budget, GRPC, name, client.who_am_i(req)).await?;
        Ok(())
    }

    async fn login(&self, user: &mut GooseUser, name: &str) -> TransactionResult {
        let Session { mut client, account } = session::<Session>(user)?;
        let msg = pb::LoginRequest { login: account.handle.clone(), password: account.password.clone() };
        let req = request(msg, None, account.forwarded_for.as_ref());
        // A login is a new session; the account's live sessions are capped per user
        // (`auth.max_sessions_per_user`), so later calls use the newest token.
        if let Ok(r) = record(user, &self.ctx.budget, GRPC, name, client.login(req)).await? {
            let bearer = bearer(&r.into_inner().access_token).map_err(|e| custom(e.to_string()))?;
            user.set_session_data(Session { client, account: Account { bearer, ..account } });
        }
        Ok(())
    }

    async fn abuse_who_am_i(self: Arc<Self>, user: &mut GooseUser) -> TransactionResult {
        self.who_am_i(user, "abuser:WhoAmI").await
    }

    async fn abuse_login(self: Arc<Self>, user: &mut GooseUser) -> TransactionResult {
        self.login(user, "abuser:Login").await
    }

    async fn polite_who_am_i(self: Arc<Self>, user: &mut GooseUser) -> TransactionResult {
        self.who_am_i(user, "WhoAmI").await
    }

    async fn polite_login(self: Arc<Self>, user: &mut GooseUser) -> TransactionResult {
        self.login(user, "Login").await
    }
}

fn weighted(t: goose::goose::Transaction, weight: usize) -> anyhow::Result<goose::goose::Transaction> {
    t.set_weight(weight).map_err(|e| anyhow::anyhow!("{e}"))
}

#[async_trait]
impl LoadScenario for Arc<Abuse> {
    async fn prepare(&self) -> anyhow::Result<Vec<Scenario>> {
        anyhow::ensure!(self.ctx.users >= 2, "rate-limit-abuse needs at least 2 users (1 abuser + polite ones)");
        let prefix = format!("rl{}.", self.ctx.tag);
        let how = Seeding { prefix: &prefix, count: self.ctx.users, forwarded: true, fail_on_rate_limit: true };
        let accounts = seed::accounts(&self.ctx, &how).await.context(
            "seeding was rate limited: the server must trust this client's x-forwarded-for \
             (MARU__RATE_LIMIT__TRUSTED_PROXIES='[\"127.0.0.1/32\"]')",
        )?;
        let _ = self.accounts.set(accounts);
        let abuser = Scenario::new("abuser")
            .set_weight(1)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .register_transaction(tx!(self, "start", start).set_on_start())
            .register_transaction(weighted(tx!(self, "WhoAmI", abuse_who_am_i), 4)?)
            .register_transaction(tx!(self, "Login", abuse_login));
        let polite = Scenario::new("polite")
            .set_weight(self.ctx.users - 1)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .register_transaction(tx!(self, "start", start).set_on_start())
            .register_transaction(weighted(tx!(self, "WhoAmI", polite_who_am_i), 9)?)
            .register_transaction(tx!(self, "Login", polite_login));
        Ok(vec![abuser, with_think(polite, self.ctx.think)?])
    }

    async fn verify(&self, s: &Summary) -> anyhow::Result<Vec<Check>> {
        let is_abuser = |rpc: &str| rpc.contains(ABUSER);
        let abuser_total: u64 = s.rpcs.iter().filter(|(k, _)| is_abuser(k)).map(|(_, r)| r.requests).sum();
        let refused = s.count(is_abuser, Code::ResourceExhausted);
        let refused_each: Vec<(String, u64)> = s
            .rpcs
            .iter()
            .filter(|(k, _)| is_abuser(k))
            .map(|(k, r)| (k.clone(), r.codes.get("RESOURCE_EXHAUSTED").copied().unwrap_or(0)))
            .collect();
        let polite_total: u64 = s.rpcs.iter().filter(|(k, _)| !is_abuser(k)).map(|(_, r)| r.requests).sum();
        let exhausted = s.errors_matching("RESOURCE_EXHAUSTED");
        // Whatever the machine's speed: a bucket lets through its burst plus its rate over the
        // run, and not one call more.
        let (read, auth) = (self.ctx.options.read_bucket, self.ctx.options.auth_bucket);
        let calls = |rpc: &str| s.rpcs.get(rpc).map(|r| r.requests).unwrap_or(0) as f64;
        let ok = |rpc: &str| s.rpcs.get(rpc).and_then(|r| r.codes.get("OK")).copied().unwrap_or(0) as f64;
        let (read_allows, auth_allows) = (read.allowance(s.elapsed_s), auth.allowance(s.elapsed_s));
        Ok(vec![
            Check::no_internal(s),
            Check::new(
                "the abuser floods both buckets (more calls than each allows in the run)",
                calls(ABUSER_WHO_AM_I) > read_allows && calls(ABUSER_LOGIN) > auth_allows,
                format!(
                    "WhoAmI {} calls (read bucket {}/{} allows {read_allows:.0}), Login {} calls (auth bucket {}/{} \
                     allows {auth_allows:.0}) in {:.1} s; a machine too slow to flood the read bucket needs a \
                     smaller one on the server and in --read-bucket",
                    calls(ABUSER_WHO_AM_I),
                    read.per_minute,
                    read.burst,
                    calls(ABUSER_LOGIN),
                    auth.per_minute,
                    auth.burst,
                    s.elapsed_s
                ),
            ),
            Check::new(
                "the abuser is refused on every bucket it floods and gets no more through than the bucket allows",
                refused_each.len() == 2
                    && refused_each.iter().all(|(_, n)| *n > 0)
                    && ok(ABUSER_WHO_AM_I) <= read_allows
                    && ok(ABUSER_LOGIN) <= auth_allows,
                format!(
                    "{refused} of {abuser_total} refused: {refused_each:?}; OK WhoAmI {} (read bucket allows \
                     {read_allows:.0}), OK Login {} (auth bucket allows {auth_allows:.0}) in {:.1} s",
                    ok(ABUSER_WHO_AM_I),
                    ok(ABUSER_LOGIN),
                    s.elapsed_s
                ),
            ),
            Check::new(
                "every RESOURCE_EXHAUSTED is RATE_LIMITED with RetryInfo",
                exhausted == s.errors_matching("RESOURCE_EXHAUSTED RATE_LIMITED")
                    && s.errors_matching("no-retry-info") == 0,
                format!("{exhausted} RESOURCE_EXHAUSTED, {} without RetryInfo", s.errors_matching("no-retry-info")),
            ),
            Check::only_codes("the abuser gets only OK or RESOURCE_EXHAUSTED", s, |rpc, code| {
                !is_abuser(rpc) || code == "OK" || code == "RESOURCE_EXHAUSTED"
            }),
            Check::only_codes("polite users get only OK", s, |rpc, code| is_abuser(rpc) || code == "OK"),
            Check::new("polite users made calls", polite_total > 0, format!("{polite_total} calls")),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::Bucket;

    #[test]
    fn buckets_parse_and_allow_burst_plus_refill() {
        let b: Bucket = "600/20".parse().unwrap();
        assert_eq!(b, Bucket { per_minute: 600.0, burst: 20.0 });
        // 20 at once, 10 a second for 6 s, 2 of slack.
        assert_eq!(b.allowance(6.0), 82.0);
        for bad in ["600", "600/", "/20", "0/20", "600/0", "-1/5", "a/b", "600/20/1"] {
            assert!(bad.parse::<Bucket>().is_err(), "{bad} parsed");
        }
    }
}
