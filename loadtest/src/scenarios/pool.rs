//! `pool`: the `max_connections` collapse. Many users call `WhoAmI` round-robin over several
//! maru replicas (`--target` repeated) that share one PostgreSQL. `loadtest/pool.sh` starts a
//! throw-away cluster with `max_connections=100`, runs the replicas with the Redis cache
//! pointed at nothing (so every call takes a pooled connection) and runs this scenario twice:
//!
//! - `--pool-expect overcommit`: pools summing above `max_connections`. The run passes when
//!   the failure shows (non-OK replies, or p99 at the acquire timeout); the codes are the
//!   finding.
//! - `--pool-expect holds`: the documented sizing. Every reply must be OK; with `--baseline`
//!   (the 100-user report) throughput must stay within `--min-throughput-ratio` of it.

use std::sync::Arc;

use async_trait::async_trait;
use goose::goose::Scenario;

use super::whoami::Readers;
use super::{Ctx, Entry, LoadScenario, Shape, Think};
use crate::report::{Check, Summary};

pub const ENTRY: Entry = Entry {
    name: "pool",
    about: "WhoAmI over several replicas sharing one PostgreSQL (see pool.sh): overcommitted pools vs the sizing rule",
    full: Shape::new(500, 30, Think::NONE),
    smoke: Shape::new(60, 4, Think::NONE),
    build: |ctx| Box::new(Pool(Arc::new(Readers::new(ctx)))),
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Expect {
    /// Pools sized by the rule: zero errors.
    Holds,
    /// Pools summing above max_connections: the failure must show.
    Overcommit,
}

struct Pool(Arc<Readers>);

/// A p99 at or above this (ms) counts as the collapse even without errors.
const COLLAPSE_P99_MS: f64 = 1000.0;

#[async_trait]
impl LoadScenario for Pool {
    async fn prepare(&self) -> anyhow::Result<Vec<Scenario>> {
        let prefix = format!("pool.s{}.", self.0.ctx.seed);
        Ok(vec![self.0.prepare(&prefix).await?])
    }

    async fn verify(&self, s: &Summary) -> anyhow::Result<Vec<Check>> {
        let ctx: &Ctx = &self.0.ctx;
        let mut checks = Vec::new();
        let retry_info_missing = s.errors_matching("no-retry-info");
        checks.push(Check::new(
            "every UNAVAILABLE/RESOURCE_EXHAUSTED carries RetryInfo",
            retry_info_missing == 0,
            format!("{retry_info_missing} without"),
        ));
        match ctx.options.pool_expect {
            Expect::Holds => {
                checks.push(Check::no_internal(s));
                checks.push(Check::only_codes("every reply OK", s, |_, code| code == "OK"));
            }
            Expect::Overcommit => {
                let failed: u64 = s.codes.iter().filter(|(c, _)| *c != "OK").map(|(_, n)| n).sum();
                let p99 = s.rpc("GRPC WhoAmI").map(|r| r.p99_ms).unwrap_or(0.0);
                checks.push(Check::new(
                    "failure mode reproduced (non-OK replies or p99 ≥ 1 s)",
                    failed > 0 || p99 >= COLLAPSE_P99_MS,
                    format!("{failed} non-OK replies, WhoAmI p99 {p99:.1} ms, codes {:?}", s.codes),
                ));
            }
        }
        Ok(checks)
    }
}
