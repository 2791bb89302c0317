//! `whoami`: the baseline. Seeded, logged-in users call `WhoAmI` (JWT check, then the user
//! from Redis or PostgreSQL) as fast as their think time allows. Every reply must be OK; a
//! full run also checks the p99 goal (50 ms unless `--p99-ms`).

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use goose::goose::{GooseUser, Scenario, TransactionResult};
use maru::grpc::pb;
use maru::grpc::pb::auth_service_client::AuthServiceClient;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::Channel;

use super::{Ctx, Entry, LoadScenario, Shape, Think, session, tx, with_think};
use crate::report::{Check, Summary};
use crate::rpc::{GRPC, fire, request};
use crate::seed::{self, Account, Seeding};

pub const ENTRY: Entry = Entry {
    name: "whoami",
    about: "baseline: seeded users call WhoAmI; all OK, p99 goal",
    full: Shape::new(100, 30, Think::NONE),
    smoke: Shape::new(10, 4, Think::NONE),
    build: |ctx| Box::new(WhoAmI(Arc::new(Readers::new(ctx)))),
};

/// Default p99 goal of a full run, in milliseconds.
const P99_GOAL_MS: f64 = 50.0;

/// Logged-in users calling `WhoAmI`, spread over the targets. Shared with `pool`.
pub struct Readers {
    pub ctx: Arc<Ctx>,
    accounts: OnceLock<Vec<Account>>,
}

#[derive(Clone)]
struct Session {
    client: AuthServiceClient<Channel>,
    bearer: AsciiMetadataValue,
}

impl Readers {
    pub fn new(ctx: Arc<Ctx>) -> Self {
        Readers { ctx, accounts: OnceLock::new() }
    }

    /// Seeds up to 50 accounts (users share them round-robin: logins cost an argon2 hash
    /// each, and who calls does not matter to `WhoAmI`) and returns the user type.
    pub async fn prepare(self: &Arc<Self>, prefix: &str) -> anyhow::Result<Scenario> {
        let how = Seeding { prefix, count: self.ctx.users.clamp(1, 50), forwarded: false, fail_on_rate_limit: false };
        let accounts = seed::accounts(&self.ctx, &how).await?;
        let _ = self.accounts.set(accounts);
        let s = Scenario::new("readers")
            .register_transaction(tx!(self, "start", start).set_on_start())
            .register_transaction(tx!(self, "WhoAmI", who_am_i));
        with_think(s, self.ctx.think)
    }

    async fn start(self: Arc<Self>, user: &mut GooseUser) -> TransactionResult {
        let i = user.weighted_users_index;
        let accounts = self.accounts.get().map(Vec::as_slice).unwrap_or_default();
        let account = accounts.get(i % accounts.len().max(1)).ok_or_else(no_accounts)?;
        let channel = self.ctx.channel(i).map_err(|e| custom(format!("{e:#}")))?;
        user.set_session_data(Session { client: AuthServiceClient::new(channel), bearer: account.bearer.clone() });
        Ok(())
    }

    async fn who_am_i(self: Arc<Self>, user: &mut GooseUser) -> TransactionResult {
        let Session { mut client, bearer } = session::<Session>(user)?;
        let call = client.who_am_i(request(pb::WhoAmIRequest {}, Some(&bearer), None));
        fire(user, &self.ctx.budget, GRPC, "WhoAmI", call).await?;
        Ok(())
    }
}

fn no_accounts() -> Box<goose::goose::TransactionError> {
    custom("no seeded accounts".into())
}

pub fn custom(msg: String) -> Box<goose::goose::TransactionError> {
    Box::new(goose::goose::TransactionError::Custom(msg))
}

struct WhoAmI(Arc<Readers>);

#[async_trait]
impl LoadScenario for WhoAmI {
    async fn prepare(&self) -> anyhow::Result<Vec<Scenario>> {
        let prefix = format!("who.s{}.", self.0.ctx.seed);
        Ok(vec![self.0.prepare(&prefix).await?])
    }

    async fn verify(&self, s: &Summary) -> anyhow::Result<Vec<Check>> {
        let ctx = &self.0.ctx;
        let mut checks = vec![Check::no_internal(s), Check::only_codes("every reply OK", s, |_, code| code == "OK")];
        if !ctx.smoke {
            checks.push(Check::p99(s, "GRPC WhoAmI", ctx.options.p99_ms.unwrap_or(P99_GOAL_MS)));
        }
        Ok(checks)
    }
}
