//! `search`: apartment search over registry-scale data (500,000 complexes; smoke 5,000),
//! with the search indexes (`--search-index on`, the schema as migrated) or without them
//! (`off`: trigram and character-pair GIN indexes dropped for the run, rebuilt afterwards).
//! Anonymous users call `SearchCommunities` (page of 20 + total) with queries people type,
//! 2 to 5 Korean characters.
//!
//! The complexes are synthetic but reproducible ([`maru::communities::synthetic`]: complex `i`
//! is always the same name and address), inserted into the target's database once and kept,
//! so a rerun only tops them up. A run that dies with the indexes dropped leaves them for the
//! next `--search-index on` run, which creates whichever is missing before it starts.
//!
//! Checks: every reply OK, every query finds complexes, the same query always reports the
//! same total (nothing matching changes during the run), the indexes are back afterwards,
//! and, given `--p99-ms`, a full run's p99 (the issue sets no search goal: the figures with and
//! without the indexes are the result).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use async_trait::async_trait;
use goose::goose::{GooseUser, Scenario, TransactionResult};
use maru::communities::synthetic::{self, QUERIES};
use maru::grpc::pb;

use super::feed::{Transport, mix};
use super::whoami::custom;
use super::{Entry, LoadScenario, Shape, Think, session, tx, with_think};
use crate::api::Api;
use crate::report::{Check, Summary};
use crate::scenarios::Ctx;

pub const ENTRY: Entry = Entry {
    name: "search",
    about: "SearchCommunities over 500,000 complexes (smoke 5,000), --search-index on|off",
    full: Shape::new(10, 30, Think::NONE),
    smoke: Shape::new(4, 4, Think::NONE),
    build: |ctx| Box::new(Arc::new(Search { ctx, totals: Mutex::new(BTreeMap::new()) })),
};

const SEARCH: &str = "/maru.v1.CommunityService/SearchCommunities";
const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/apartments-gyeonggi.json");
const BATCH: i64 = 50_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IndexMode {
    On,
    Off,
}

struct Search {
    ctx: Arc<Ctx>,
    /// Every `total_size` seen per query.
    totals: Mutex<BTreeMap<&'static str, BTreeSet<i32>>>,
}

#[derive(Clone)]
struct Session {
    api: Api,
    n: u64,
}

impl Search {
    fn code_prefix(&self) -> String {
        format!("LS{}-", self.ctx.seed)
    }

    fn complexes(&self) -> i64 {
        self.ctx.options.complexes.unwrap_or(if self.ctx.smoke { 5_000 } else { 500_000 })
    }

    /// Tops the synthetic complexes of this seed up to [`Search::complexes`].
    async fn fill(&self) -> anyhow::Result<()> {
        let mut db = self.ctx.db().await?;
        let have: i64 = sqlx::query_scalar("select count(*) from communities where starts_with(external_code, $1)")
            .bind(self.code_prefix())
            .fetch_one(&mut db)
            .await?;
        let want = self.complexes();
        if have >= want {
            println!("{have} synthetic complexes already in place");
            return Ok(());
        }
        let raw = std::fs::read_to_string(FIXTURE).with_context(|| format!("reading {FIXTURE}"))?;
        let templates = synthetic::Templates::from_json(&raw)?;
        let started = Instant::now();
        let mut from = 0;
        while from < want {
            let to = (from + BATCH).min(want);
            synthetic::insert(&mut db, &templates, &self.code_prefix(), from, to).await?;
            println!("complexes {to} of {want} ({:.0} s)", started.elapsed().as_secs_f64());
            from = to;
        }
        Ok(())
    }

    async fn start(self: Arc<Self>, user: &mut GooseUser) -> TransactionResult {
        let api = Transport::Grpc.api(&self.ctx, user.weighted_users_index).map_err(|e| custom(format!("{e:#}")))?;
        user.set_session_data(Session { api, n: 0 });
        Ok(())
    }

    async fn search(self: Arc<Self>, user: &mut GooseUser) -> TransactionResult {
        let mut s = session::<Session>(user)?;
        s.n += 1;
        user.set_session_data(s.clone());
        let query = QUERIES[(mix(user.weighted_users_index as u64, s.n) % QUERIES.len() as u64) as usize];
        let msg = pb::SearchCommunitiesRequest { query: query.to_owned(), page_size: 20, ..Default::default() };
        let reply = s.api.call::<_, pb::SearchCommunitiesResponse>(user, &self.ctx.budget, SEARCH, msg, None).await?;
        if let Ok(r) = reply
            && let Ok(mut totals) = self.totals.lock()
        {
            totals.entry(query).or_default().insert(r.total_size);
        }
        Ok(())
    }
}

#[async_trait]
impl LoadScenario for Arc<Search> {
    async fn prepare(&self) -> anyhow::Result<Vec<Scenario>> {
        self.fill().await?;
        let mut db = self.ctx.db().await?;
        let started = Instant::now();
        match self.ctx.options.search_index {
            IndexMode::On => synthetic::create_search_indexes(&mut db).await?,
            IndexMode::Off => synthetic::drop_search_indexes(&mut db).await?,
        }
        println!("search indexes {:?} ({:.1} s)", self.ctx.options.search_index, started.elapsed().as_secs_f64());
        let s = Scenario::new("searchers")
            .register_transaction(tx!(self, "start", start).set_on_start())
            .register_transaction(tx!(self, "SearchCommunities", search));
        Ok(vec![with_think(s, self.ctx.think)?])
    }

    async fn verify(&self, s: &Summary) -> anyhow::Result<Vec<Check>> {
        let ctx = &self.ctx;
        let mut db = ctx.db().await?;
        if ctx.options.search_index == IndexMode::Off {
            let started = Instant::now();
            synthetic::create_search_indexes(&mut db).await?;
            println!("search indexes rebuilt ({:.1} s)", started.elapsed().as_secs_f64());
        }
        let present = synthetic::search_indexes_present(&mut db).await?;
        let totals = self.totals.lock().map(|t| t.clone()).unwrap_or_default();
        let empty: Vec<&str> = totals.iter().filter(|(_, t)| t.iter().any(|n| *n == 0)).map(|(q, _)| *q).collect();
        let unstable: Vec<String> =
            totals.iter().filter(|(_, t)| t.len() > 1).map(|(q, t)| format!("{q}: {t:?}")).collect();
        let mut checks = vec![
            Check::no_internal(s),
            Check::only_codes("every reply OK", s, |_, code| code == "OK"),
            Check::new(
                "every query finds complexes",
                !totals.is_empty() && empty.is_empty(),
                if empty.is_empty() { format!("{} queries", totals.len()) } else { format!("none for {empty:?}") },
            ),
            Check::new(
                "one total per query",
                unstable.is_empty(),
                if unstable.is_empty() { "stable".to_owned() } else { unstable.join("; ") },
            ),
            Check::new(
                "search indexes in place afterwards",
                present == synthetic::SEARCH_INDEXES.len() as i64,
                format!("{present} of {}", synthetic::SEARCH_INDEXES.len()),
            ),
        ];
        if let Some(goal) = ctx.options.p99_ms.filter(|_| !ctx.smoke) {
            checks.push(Check::p99(s, "GRPC SearchCommunities", goal));
        }
        Ok(checks)
    }
}
