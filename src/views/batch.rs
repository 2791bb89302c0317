//! The in-process view batcher: [`crate::views::record`] queues a view here and returns; a
//! background task moves the queue to Redis every `feed.view_batch_interval_ms`, or as soon as
//! `feed.view_batch_max` views wait, in one script call per `view_batch_max` views (the same
//! `SADD` + `HINCRBY` per view as the direct path, so a counted view is always pending).
//!
//! Never lost, never double counted:
//! - a viewer's repeated views of one target on one day wait in the queue once (de-duplicated
//!   here), and Redis' viewer set de-duplicates across batches as before;
//! - a full queue (`feed.view_queue_capacity`) does not drop: that view runs the script
//!   directly (`maru_view_queue_fallbacks_total`);
//! - graceful shutdown drains the queue after the gRPC drain ([`ViewBatcher::drain`]), and the
//!   flush job drains every batcher of the process writing to its Redis namespace before it
//!   takes the pending hash ([`ViewBatcher::drain_process`]: one batcher in production; the
//!   in-process two-replica tests have two), so a flush counts every view answered before it;
//! - pushes are serialised (one at a time per batcher), so a drain returns only after a push
//!   that had already taken views finished.
//!
//! A crash (no graceful shutdown) loses the views still queued: at most one interval's worth.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Weak};
use std::time::Duration;

use deadpool_redis::redis::Script;
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::cache::Cache;

/// How long a viewer set lives (no midnight job: the day is in its key).
pub const VIEWER_SET_TTL_S: u64 = 2 * 86_400;
/// The hash of views not yet in PostgreSQL (under the cache prefix).
pub const PENDING: &str = "views:pending";

/// `KEYS[1]` the pending hash, `KEYS[1+i]` the viewer set of view i; `ARGV[1]` the set TTL,
/// `ARGV[2i]` the viewer and `ARGV[2i+1]` the pending field of view i. Returns, per view, 1 when
/// it was the viewer's first of the day (then counted as pending).
static RECORD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local out = {}
          for i = 2, #KEYS do
            local added = redis.call('SADD', KEYS[i], ARGV[2 * (i - 1)])
            if added == 1 then
              redis.call('EXPIRE', KEYS[i], ARGV[1])
              redis.call('HINCRBY', KEYS[1], ARGV[2 * (i - 1) + 1], 1)
            end
            out[i - 1] = added
          end
          return out",
    )
});

/// Batchers alive in this process (see [`ViewBatcher::drain_process`]).
static LIVE: LazyLock<Mutex<Vec<Weak<Inner>>>> = LazyLock::new(|| Mutex::new(Vec::new()));

/// One view to count.
#[derive(Debug, Clone)]
pub struct View {
    /// The full key of the day's viewer set of the target.
    pub set: String,
    pub viewer: String,
    /// The target's field in the pending hash.
    pub field: String,
    pub counted_metric: &'static str,
    pub dropped_metric: &'static str,
}

/// Limits of the batcher (from `feed.view_batch_*`).
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    pub interval: Duration,
    pub max: usize,
    pub capacity: usize,
}

/// Queues views and moves them to Redis in batches; cheap to clone.
#[derive(Clone)]
pub struct ViewBatcher {
    inner: Arc<Inner>,
}

struct Inner {
    cache: Cache,
    limits: BatchLimits,
    queue: Mutex<Queue>,
    /// Held by a push from taking the queue until Redis answered.
    push: tokio::sync::Mutex<()>,
    /// Wakes the waiting push task early when `max` views wait.
    full: Notify,
}

#[derive(Default)]
struct Queue {
    /// (viewer set, viewer) → the view: one entry per viewer, target and day.
    views: HashMap<(String, String), View>,
    /// A push task is waiting for the interval.
    scheduled: bool,
}

impl ViewBatcher {
    pub fn new(cache: Cache, limits: BatchLimits) -> Self {
        let inner = Arc::new(Inner {
            cache,
            limits,
            queue: Mutex::new(Queue::default()),
            push: tokio::sync::Mutex::new(()),
            full: Notify::new(),
        });
        let mut live = LIVE.lock();
        live.retain(|w| w.strong_count() > 0);
        live.push(Arc::downgrade(&inner));
        Self { inner }
    }

    /// Views waiting in the queue.
    pub fn queued(&self) -> usize {
        self.inner.queue.lock().views.len()
    }

    /// Queues `view` (a repeat of a queued viewer's view is dropped here: Redis would not count
    /// it either); a full queue runs the script for it directly.
    pub async fn record(&self, view: View) {
        let inner = &self.inner;
        let view = {
            let mut q = inner.queue.lock();
            let key = (view.set.clone(), view.viewer.clone());
            if q.views.contains_key(&key) {
                return;
            }
            if q.views.len() < inner.limits.capacity {
                q.views.insert(key, view);
                let depth = q.views.len();
                metrics::gauge!("maru_view_queue_depth").set(depth as f64);
                if depth >= inner.limits.max {
                    inner.full.notify_one();
                }
                if !std::mem::replace(&mut q.scheduled, true) {
                    let inner = self.inner.clone();
                    tokio::spawn(async move {
                        let deadline = tokio::time::Instant::now() + inner.limits.interval;
                        loop {
                            tokio::select! {
                                _ = tokio::time::sleep_until(deadline) => break,
                                // A wake-up left over from an earlier batch is not a full queue.
                                _ = inner.full.notified() => {
                                    if inner.queue.lock().views.len() >= inner.limits.max {
                                        break;
                                    }
                                }
                            }
                        }
                        // Its own root span (the Redis call is not part of any request's trace).
                        tracing::Instrument::instrument(push(&inner), crate::traces::job_span("views.batch")).await;
                    });
                }
                return;
            }
            view
        };
        metrics::counter!("maru_view_queue_fallbacks_total").increment(1);
        send(&inner.cache, inner.limits.max, vec![view]).await;
    }

    /// Moves every queued view to Redis now; returns once a push already under way finished too.
    pub async fn drain(&self) {
        push(&self.inner).await;
    }

    /// Drains every batcher of this process that writes to this one's Redis namespace (this
    /// one in production, both replicas in in-process two-replica tests).
    pub async fn drain_process(&self) {
        let prefix = self.inner.cache.key("");
        let same: Vec<Arc<Inner>> =
            LIVE.lock().iter().filter_map(Weak::upgrade).filter(|i| i.cache.key("") == prefix).collect();
        for inner in same {
            push(&inner).await;
        }
    }
}

/// Takes the queue and sends it (one push at a time).
async fn push(inner: &Inner) {
    let _one = inner.push.lock().await;
    let views: Vec<View> = {
        let mut q = inner.queue.lock();
        q.scheduled = false;
        metrics::gauge!("maru_view_queue_depth").set(0.0);
        q.views.drain().map(|(_, v)| v).collect()
    };
    if !views.is_empty() {
        send(&inner.cache, inner.limits.max, views).await;
    }
}

/// Runs the record script over `views`, `max` per call; counts each view counted or dropped.
async fn send(cache: &Cache, max: usize, views: Vec<View>) {
    for chunk in views.chunks(max.max(1)) {
        metrics::histogram!("maru_view_batch_size").record(chunk.len() as f64);
        let mut script = RECORD.key(cache.key(PENDING));
        for v in chunk {
            script.key(&v.set);
        }
        script.arg(VIEWER_SET_TTL_S);
        for v in chunk {
            script.arg(&v.viewer).arg(&v.field);
        }
        let added = cache.run("view", |mut c| async move { script.invoke_async::<Vec<i64>>(&mut c).await }).await;
        match added {
            Some(added) => {
                for (v, a) in chunk.iter().zip(added) {
                    if a == 1 {
                        metrics::counter!(v.counted_metric).increment(1);
                    }
                }
            }
            None => {
                for v in chunk {
                    metrics::counter!(v.dropped_metric).increment(1);
                }
            }
        }
    }
}
