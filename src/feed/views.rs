//! Post view counting (DOMAIN §2 rules applied to posts): a viewer (user id, else client IP,
//! read through trusted proxies like the rate limiter) counts once per post per day (Asia/Seoul).
//!
//! Redis holds, under the cache prefix:
//! - `views:<day>:<post>` — the set of the day's viewers of a post, with a 2-day TTL (no
//!   midnight job); `SADD` answers whether this viewer is new today;
//! - `views:pending` — a hash post → views not yet in PostgreSQL, incremented in the same
//!   script as the `SADD`, so a counted view is always pending;
//! - `views:flushing` + `views:flushing:id` — the batch a flush took (by `RENAME`), with its id.
//!
//! [`flush`] runs every `feed.view_flush_interval_s` on every replica, one at a time across
//! replicas (`pg_try_advisory_xact_lock`, held for the whole flush). It takes the pending
//! hash as a batch (or the batch an interrupted flush left), adds it to `posts.view_count` in
//! one statement and records the batch id in `post_view_flushes` in the same transaction, then
//! deletes the batch from Redis. A batch taken again after a crash between the commit and the
//! delete finds its id recorded and is not applied twice; a crash before the commit leaves the
//! batch to the next flush. Nothing depends on a cache entry, so nothing is lost when one
//! expires (the source's defect).
//!
//! Redis down: views are not counted while it is unreachable (`maru_post_views_dropped_total`)
//! — counting in PostgreSQL instead would need the viewer sets too; GetPost keeps working.
//! Pending views already in Redis are flushed once it is back.

use std::sync::LazyLock;
use std::time::Instant;

use chrono::Utc;
use deadpool_redis::redis::Script;
use uuid::Uuid;

use super::store;
use crate::error::AppResult;
use crate::state::AppState;

const VIEWER_SET_TTL_S: u64 = 2 * 86_400;
const PENDING: &str = "views:pending";
const FLUSHING: &str = "views:flushing";
const FLUSHING_ID: &str = "views:flushing:id";
/// Batches one flush applies at most (a left-over batch, then the pending one).
const MAX_BATCHES: usize = 4;

static RECORD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local added = redis.call('SADD', KEYS[1], ARGV[1])
          if added == 1 then
            redis.call('EXPIRE', KEYS[1], ARGV[3])
            redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
          end
          return added",
    )
});

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

/// Counts a view of `post` by a user (else a client IP); true when it was the viewer's first
/// today. Nothing is counted without a viewer or while Redis is unavailable.
pub async fn record(state: &AppState, post: Uuid, user: Option<Uuid>, ip: Option<&str>) -> bool {
    let viewer = match (user, ip) {
        (Some(u), _) => format!("u:{u}"),
        (None, Some(ip)) => format!("ip:{ip}"),
        (None, None) => return false,
    };
    let set = state.cache.key(&format!("views:{}:{post}", today()));
    let pending = state.cache.key(PENDING);
    let added = state
        .cache
        .run("view", |mut c| async move {
            RECORD
                .key(set)
                .key(pending)
                .arg(viewer)
                .arg(post.to_string())
                .arg(VIEWER_SET_TTL_S)
                .invoke_async::<i64>(&mut c)
                .await
        })
        .await;
    match added {
        Some(1) => {
            metrics::counter!("maru_post_views_counted_total").increment(1);
            true
        }
        Some(_) => false,
        None => {
            metrics::counter!("maru_post_views_dropped_total").increment(1);
            false
        }
    }
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
    pub posts: u64,
    pub views: i64,
}

/// Moves pending views from Redis to `posts.view_count` (see the module docs).
#[tracing::instrument(name = "feed.flush_views", skip_all, err(level = "warn"))]
pub async fn flush(state: &AppState) -> AppResult<FlushOutcome> {
    let start = Instant::now();
    let mut out = FlushOutcome::default();
    let mut tx = state.db.begin().await?;
    if !store::try_lock_view_flush(&mut tx).await? {
        out.locked = true;
        return Ok(out);
    }
    let mut flushed_posts: Vec<Uuid> = Vec::new();
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
        let (mut ids, mut counts) = (Vec::new(), Vec::new());
        for pair in fields.chunks_exact(2) {
            if let (Ok(post), Ok(n)) = (Uuid::parse_str(&pair[0]), pair[1].parse::<i64>())
                && n > 0
            {
                ids.push(post);
                counts.push(n);
            }
        }
        let views: i64 = counts.iter().sum();
        if store::insert_view_flush(&mut tx, batch_id, ids.len() as i32, views).await? {
            store::add_post_views(&mut tx, &ids, &counts).await?;
            out.batches += 1;
            out.posts += ids.len() as u64;
            out.views += views;
        } else {
            out.replayed += 1;
        }
        // Commit before the batch leaves Redis; the lock is taken again for the next batch.
        tx.commit().await?;
        let (_, f, fid) = keys;
        state
            .cache
            .run("flush", |mut c| async move {
                DONE.key(f).key(fid).arg(batch_id.to_string()).invoke_async::<i64>(&mut c).await
            })
            .await;
        flushed_posts.extend(ids);
        tx = state.db.begin().await?;
        if !store::try_lock_view_flush(&mut tx).await? {
            break;
        }
    }
    store::delete_old_view_flushes(&mut tx).await?;
    tx.commit().await?;
    if !flushed_posts.is_empty() {
        super::cache::views_flushed(state, &flushed_posts).await;
    }
    metrics::counter!("maru_post_views_flushed_total").increment(out.views.max(0) as u64);
    metrics::histogram!("maru_view_flush_seconds").record(start.elapsed().as_secs_f64());
    if !out.redis_down {
        metrics::gauge!("maru_view_flush_last_success_timestamp_seconds").set(Utc::now().timestamp() as f64);
    }
    Ok(out)
}
