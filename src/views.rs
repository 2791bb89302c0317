//! View counting for any counted target (posts, teams; DOMAIN §2): a viewer (user id, else
//! client IP, read through trusted proxies like the rate limiter) counts once per target per day
//! (Asia/Seoul). One mechanism: a domain describes its target with a [`Target`] (its key prefix,
//! its metric names, how flushed views are added to its table and which caches to invalidate
//! after) and calls [`record`]; the flush job passes every target to [`flush`].
//!
//! [`record`] only queues the view in the process' [`batch::ViewBatcher`]; the batcher moves
//! queued views to Redis in one script call per batch (about every 100 ms), drained on graceful
//! shutdown and before every flush (see [`batch`] for why none is lost or counted twice).
//!
//! Redis holds, under the cache prefix (`<p>` is the target's prefix: empty for posts, as before
//! teams existed, `team:` for teams):
//! - `views:<day>:<p><id>` — the set of the day's viewers of a target, with a 2-day TTL (no
//!   midnight job); `SADD` answers whether this viewer is new today;
//! - `views:pending` — a hash `<p><id>` → views not yet in PostgreSQL, incremented in the same
//!   script as the `SADD`, so a counted view is always pending;
//! - `views:flushing` + `views:flushing:id` — the batch a flush took (by `RENAME`), with its id.
//!
//! [`flush`] runs every `feed.view_flush_interval_s` on every replica, one at a time across
//! replicas (`pg_try_advisory_xact_lock`, held for the whole flush). It takes the pending hash as
//! a batch (or the batch an interrupted flush left), adds each target's deltas to its table in
//! one statement per target and records the batch id in `post_view_flushes` (the batch table of
//! every target; its name predates teams) in the same transaction, then deletes the batch from
//! Redis. A batch taken again after a crash between the commit and the delete finds its id
//! recorded and is not applied twice; a crash before the commit leaves the batch to the next
//! flush. Nothing depends on a cache entry, so nothing is lost when one expires (the source's
//! defect).
//!
//! Redis down: views are not counted while it is unreachable (the target's dropped counter) —
//! counting in PostgreSQL instead would need the viewer sets too; reads keep working. Pending
//! views already in Redis are flushed once it is back.

use std::sync::LazyLock;
use std::time::Instant;

use chrono::Utc;
use deadpool_redis::redis::Script;
use futures::future::BoxFuture;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::AppResult;
use crate::state::AppState;

/// Adds flushed views to a target's table: `counts[i]` to `ids[i]`, in one statement, in the
/// flush's transaction.
pub type ApplyFn = for<'c> fn(&'c mut PgConnection, &'c [Uuid], &'c [i64]) -> BoxFuture<'c, AppResult<()>>;
/// After a flush committed views of `ids`: invalidate the caches that show their counts.
pub type FlushedFn = for<'a> fn(&'a AppState, &'a [Uuid]) -> BoxFuture<'a, ()>;

/// A kind of thing whose views are counted.
pub struct Target {
    /// Prefix of its keys and pending-hash fields (empty for posts: their keys predate targets).
    pub prefix: &'static str,
    /// Counter of views counted (a viewer's first of the day).
    pub counted_metric: &'static str,
    /// Counter of views not counted because Redis was unavailable.
    pub dropped_metric: &'static str,
    /// Counter of views added to PostgreSQL by flushes.
    pub flushed_metric: &'static str,
    pub apply: ApplyFn,
    pub flushed: FlushedFn,
}

pub mod batch;

use batch::{PENDING, View};

const FLUSHING: &str = "views:flushing";
const FLUSHING_ID: &str = "views:flushing:id";
/// Batches one flush applies at most (a left-over batch, then the pending one).
const MAX_BATCHES: usize = 4;

static TAKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('EXISTS', KEYS[2]) == 0 then
            if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
            redis.call('RENAME', KEYS[1], KEYS[2])
            redis.call('SET', KEYS[3], ARGV[1])
          end
          local id = redis.call('GET', KEYS[3])
          if not id then id = ARGV[1] redis.call('SET', KEYS[3], id) end
          local out = {id}
          for _, x in ipairs(redis.call('HGETALL', KEYS[2])) do table.insert(out, x) end
          return out",
    )
});

static DONE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[1], KEYS[2]) return 1 end
          return 0",
    )
});

/// The day a view counts in.
fn today() -> String {
    Utc::now().with_timezone(&chrono_tz::Asia::Seoul).format("%Y-%m-%d").to_string()
}

/// Counts a view of `id` (a `target`) by a user (else a client IP): queues it in the state's
/// [`batch::ViewBatcher`], which moves it to Redis off the response path (a viewer's first view
/// of the day is counted). Nothing is counted without a viewer or while Redis is unavailable.
pub async fn record(state: &AppState, target: &Target, id: Uuid, user: Option<Uuid>, ip: Option<&str>) {
    let viewer = match (user, ip) {
        (Some(u), _) => format!("u:{u}"),
        (None, Some(ip)) => format!("ip:{ip}"),
        (None, None) => return,
    };
    let field = format!("{}{id}", target.prefix);
    let set = state.cache.key(&format!("views:{}:{field}", today()));
    let view =
        View { set, viewer, field, counted_metric: target.counted_metric, dropped_metric: target.dropped_metric };
    state.views.record(view).await;
}

/// What one flush did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlushOutcome {
    /// Another replica was flushing: nothing done.
    pub locked: bool,
    /// Redis was unavailable: nothing done.
    pub redis_down: bool,
    /// Batches applied to PostgreSQL.
    pub batches: u32,
    /// Batches found already applied (taken again after an interrupted flush).
    pub replayed: u32,
    /// Targets (posts, teams …) whose counts changed.
    pub items: u64,
    pub views: i64,
}

/// The target a pending-hash field belongs to (the longest matching prefix) and its id.
fn parse_field(targets: &[&Target], field: &str) -> Option<(usize, Uuid)> {
    let (i, t) =
        targets.iter().enumerate().filter(|(_, t)| field.starts_with(t.prefix)).max_by_key(|(_, t)| t.prefix.len())?;
    Uuid::parse_str(&field[t.prefix.len()..]).ok().map(|id| (i, id))
}

/// Moves pending views from Redis to the targets' tables (see the module docs). `targets` must
/// name every target views are recorded for: a batch holds them all, and views of a target
/// missing here are dropped with the batch.
#[tracing::instrument(name = "views.flush", skip_all, err(level = "warn"))]
pub async fn flush(state: &AppState, targets: &[&Target]) -> AppResult<FlushOutcome> {
    let start = Instant::now();
    // Every view this process answered for is pending before the batch is taken.
    state.views.drain_process().await;
    let mut out = FlushOutcome::default();
    let mut tx = crate::db::begin(&state.db).await?;
    if !try_lock_view_flush(&mut tx).await? {
        out.locked = true;
        return Ok(out);
    }
    let mut flushed: Vec<Vec<Uuid>> = vec![Vec::new(); targets.len()];
    for _ in 0..MAX_BATCHES {
        let keys = (state.cache.key(PENDING), state.cache.key(FLUSHING), state.cache.key(FLUSHING_ID));
        let (p, f, fid) = keys.clone();
        let taken = state
            .cache
            .run("flush", |mut c| async move {
                TAKE.key(p).key(f).key(fid).arg(Uuid::new_v4().to_string()).invoke_async::<Vec<String>>(&mut c).await
            })
            .await;
        let Some(taken) = taken else {
            out.redis_down = true;
            break;
        };
        let Some((id, fields)) = taken.split_first() else { break };
        let Ok(batch_id) = Uuid::parse_str(id) else { break };
        let mut deltas: Vec<(Vec<Uuid>, Vec<i64>)> = vec![(Vec::new(), Vec::new()); targets.len()];
        for pair in fields.chunks_exact(2) {
            if let (Some((t, id)), Ok(n)) = (parse_field(targets, &pair[0]), pair[1].parse::<i64>())
                && n > 0
            {
                deltas[t].0.push(id);
                deltas[t].1.push(n);
            }
        }
        let items: usize = deltas.iter().map(|d| d.0.len()).sum();
        let views: i64 = deltas.iter().flat_map(|d| d.1.iter()).sum();
        if insert_view_flush(&mut tx, batch_id, items as i32, views).await? {
            for (t, (ids, counts)) in targets.iter().zip(&deltas) {
                if !ids.is_empty() {
                    (t.apply)(&mut tx, ids, counts).await?;
                    metrics::counter!(t.flushed_metric).increment(counts.iter().sum::<i64>().max(0) as u64);
                }
            }
            out.batches += 1;
            out.items += items as u64;
            out.views += views;
        } else {
            out.replayed += 1;
        }
        // Commit before the batch leaves Redis; the lock is taken again for the next batch.
        crate::db::commit(&state.db, tx).await?;
        let (_, f, fid) = keys;
        state
            .cache
            .run("flush", |mut c| async move {
                DONE.key(f).key(fid).arg(batch_id.to_string()).invoke_async::<i64>(&mut c).await
            })
            .await;
        for (f, (ids, _)) in flushed.iter_mut().zip(deltas) {
            f.extend(ids);
        }
        tx = crate::db::begin(&state.db).await?;
        if !try_lock_view_flush(&mut tx).await? {
            break;
        }
    }
    delete_old_view_flushes(&mut tx).await?;
    crate::db::commit(&state.db, tx).await?;
    for (t, ids) in targets.iter().zip(&flushed) {
        if !ids.is_empty() {
            (t.flushed)(state, ids).await;
        }
    }
    metrics::histogram!("maru_view_flush_seconds").record(start.elapsed().as_secs_f64());
    if !out.redis_down {
        metrics::gauge!("maru_view_flush_last_success_timestamp_seconds").set(Utc::now().timestamp() as f64);
    }
    Ok(out)
}

/// Advisory lock key of the view flush ("maruview").
const VIEW_FLUSH_LOCK: i64 = 0x6d61_7275_7669_6577;

/// Takes the view-flush lock for the rest of the transaction, unless another flush holds it.
async fn try_lock_view_flush(conn: &mut PgConnection) -> AppResult<bool> {
    let (locked,): (bool,) =
        sqlx::query_as("select pg_try_advisory_xact_lock($1)").bind(VIEW_FLUSH_LOCK).fetch_one(conn).await?;
    Ok(locked)
}

/// Records a flushed batch of views; `false` when it was applied before (taken again after an
/// interrupted flush).
async fn insert_view_flush(conn: &mut PgConnection, batch_id: Uuid, items: i32, views: i64) -> AppResult<bool> {
    Ok(sqlx::query("insert into post_view_flushes (batch_id, posts, views) values ($1, $2, $3) on conflict do nothing")
        .bind(batch_id)
        .bind(items)
        .bind(views)
        .execute(conn)
        .await?
        .rows_affected()
        == 1)
}

/// Forgets flushed batches older than a week (none is taken again that late).
async fn delete_old_view_flushes(conn: &mut PgConnection) -> AppResult<()> {
    sqlx::query("delete from post_view_flushes where applied_at < now() - interval '7 days'").execute(conn).await?;
    Ok(())
}
