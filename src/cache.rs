//! Redis access with a documented fallback: when Redis is unreachable the server keeps serving
//! from PostgreSQL (cache bypassed, one warning, `maru_redis_up` = 0) and uses Redis again
//! once a probe succeeds.
//!
//! Staleness rules (DOMAIN §1: no read may be stale after the write that changed it returns):
//! - Writers call [`Cache::invalidate`] after their transaction commits. It bumps a version
//!   key and deletes the entry in one script.
//! - Readers fill with [`Cache::get_or_load`], which stores the loaded value only if the
//!   version did not move while it was loading (no stale fill after a concurrent write).
//!   Concurrent misses of one key *and version* share one load (`result="shared"`): a
//!   reader that saw a newer version never waits for an older load.
//! - An invalidation that fails because Redis is away is queued; Redis is not used again by
//!   this replica until the queue has been replayed (or, on overflow, every key under the
//!   prefix deleted).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use deadpool_redis::redis::{self, AsyncCommands, Script};
use deadpool_redis::{Config as PoolConfig, Connection, Pool, Runtime};
use parking_lot::Mutex;
use secrecy::ExposeSecret;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::config::RedisSettings;

const PENDING_LIMIT: usize = 10_000;
const VERSION_TTL_S: u64 = 86_400;

/// Caches by name: the closed set of the `cache` metric label.
pub const CACHES: &[&str] = &[
    "user",
    "my_communities",
    "geocode",
    "feed_post",
    "feed_page",
    "profile",
    "session",
    "profile_activity",
    "recommendations",
    "standing",
    "follow_pair",
    "team",
    "team_page",
];

#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Option<Pool>,
    prefix: String,
    timeout: Duration,
    up: AtomicBool,
    /// Set by the first probe or command result; until then Redis is neither up nor reported down.
    checked: AtomicBool,
    pending: Mutex<Pending>,
    /// Loads in progress per (key, version): concurrent misses of one key wait for the first
    /// one's load instead of all going to the database (a write to a hot feed page otherwise
    /// sends every reader of it to PostgreSQL at once).
    flights: Mutex<HashMap<String, watch::Receiver<Option<Arc<str>>>>>,
    fill: Script,
    /// The versions of some scopes, then the value and version of the key built from them.
    scoped_get: Script,
    invalidate: Script,
}

#[derive(Default)]
struct Pending {
    keys: Vec<String>,
    overflow: bool,
}

impl Cache {
    pub fn new(settings: &RedisSettings) -> Self {
        let mut cfg = PoolConfig::from_url(settings.url.expose_secret());
        cfg.pool = Some(deadpool_redis::PoolConfig {
            max_size: settings.pool_size,
            timeouts: deadpool_redis::Timeouts {
                wait: Some(Duration::from_millis(settings.command_timeout_ms)),
                create: Some(Duration::from_millis(settings.command_timeout_ms.max(500))),
                recycle: Some(Duration::from_millis(settings.command_timeout_ms)),
            },
            ..Default::default()
        });
        let pool = match cfg.create_pool(Some(Runtime::Tokio1)) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(error = %e, "redis pool could not be created; cache disabled");
                None
            }
        };
        metrics::gauge!("maru_redis_up").set(0.0);
        Self {
            inner: Arc::new(Inner {
                pool,
                prefix: settings.key_prefix.clone(),
                timeout: Duration::from_millis(settings.command_timeout_ms),
                up: AtomicBool::new(false),
                checked: AtomicBool::new(false),
                pending: Mutex::new(Pending::default()),
                flights: Mutex::new(HashMap::new()),
                fill: Script::new(
                    r"if redis.call('GET', KEYS[2]) == (ARGV[1] ~= '' and ARGV[1] or false) then
                        redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) return 1 end return 0",
                ),
                scoped_get: Script::new(
                    r"local key, vkey, versions = ARGV[1], ARGV[2], {}
                      for i = 1, #KEYS do
                        local v = redis.call('GET', KEYS[i]) or ''
                        versions[i] = v
                        key = key .. ':' .. v
                        vkey = vkey .. ':' .. v
                      end
                      return {versions, redis.call('GET', key), redis.call('GET', vkey)}",
                ),
                invalidate: Script::new(
                    r"for i = 1, #KEYS, 2 do
                        redis.call('INCR', KEYS[i+1]) redis.call('EXPIRE', KEYS[i+1], ARGV[1])
                        redis.call('DEL', KEYS[i]) end return 1",
                ),
            }),
        }
    }

    pub fn is_up(&self) -> bool {
        self.inner.up.load(Ordering::Acquire)
    }

    /// The full Redis key for `key` under this deployment's prefix.
    pub fn key(&self, key: &str) -> String {
        format!("{}{key}", self.inner.prefix)
    }

    fn version_key(&self, key: &str) -> String {
        format!("{}v:{key}", self.inner.prefix)
    }

    /// A connection while Redis is up; `None` (bypass) otherwise.
    pub async fn conn(&self) -> Option<Connection> {
        if !self.is_up() {
            return None;
        }
        let pool = self.inner.pool.as_ref()?;
        match pool.get().await {
            Ok(c) => Some(c),
            Err(e) => {
                self.mark_down(&e.to_string());
                None
            }
        }
    }

    /// Runs one Redis operation with the command timeout and records its outcome; an error
    /// marks Redis down.
    pub async fn run<T, F, Fut>(&self, op: &'static str, f: F) -> Option<T>
    where
        F: FnOnce(Connection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let conn = self.conn().await?;
        let start = Instant::now();
        let span = crate::traces::redis_span(op);
        let out =
            tokio::time::timeout(self.inner.timeout, tracing::Instrument::instrument(f(conn), span.clone())).await;
        metrics::histogram!("maru_redis_command_seconds", "op" => op).record(start.elapsed().as_secs_f64());
        if !matches!(out, Ok(Ok(_))) {
            crate::traces::failed(&span);
        }
        match out {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                metrics::counter!("maru_redis_errors_total", "op" => op).increment(1);
                self.mark_down(&e.to_string());
                None
            }
            Err(_) => {
                metrics::counter!("maru_redis_errors_total", "op" => op).increment(1);
                self.mark_down("command timed out");
                None
            }
        }
    }

    /// Read-through cache: the cached value, or `load()` stored for `ttl` unless a write
    /// invalidated the key meanwhile. Redis trouble falls back to `load()`.
    pub async fn get_or_load<T, E, F, Fut>(
        &self,
        cache: &'static str,
        key: &str,
        ttl: Duration,
        load: F,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.get_or_load_scoped(cache, &[], key, ttl, load).await
    }

    /// [`Self::get_or_load`] of the key `{base}:{v1}:{v2}…` that carries the current versions
    /// of `scopes` (as [`Self::versions`] reads them and [`Self::invalidate`] bumps them), so
    /// that one write to a scope moves every key under it (every page of a feed). The versions,
    /// the value and its own version are read in one round trip (a script that builds the key
    /// from the versions; maru runs a single Redis, not a cluster, so the script may touch keys
    /// it computes). [`Self::scoped_key`] is the same key for invalidating one entry.
    pub async fn get_or_load_scoped<T, E, F, Fut>(
        &self,
        cache: &'static str,
        scopes: &[String],
        base: &str,
        ttl: Duration,
        load: F,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let script = &self.inner.scoped_get;
        let mut inv = script.prepare_invoke();
        for scope in scopes {
            inv.key(self.version_key(scope));
        }
        inv.arg(self.key(base)).arg(self.version_key(base));
        let read = self
            .run("get", |mut c| async move {
                let out: (Vec<String>, Option<String>, Option<String>) = inv.invoke_async(&mut c).await?;
                Ok(out)
            })
            .await;
        let (full, vkey, probe) = match read {
            Some((versions, value, version)) => {
                let key = Self::scoped_key(base, &versions);
                (self.key(&key), self.version_key(&key), Some((value, version)))
            }
            None => (String::new(), String::new(), None),
        };
        let version = match probe {
            Some((Some(hit), _)) => match serde_json::from_str(&hit) {
                Ok(v) => {
                    metrics::counter!("maru_cache_requests_total", "cache" => cache, "result" => "hit").increment(1);
                    return Ok(v);
                }
                Err(_) => None,
            },
            Some((None, ver)) => Some(ver.unwrap_or_default()),
            None => None,
        };
        let Some(ver) = version else {
            metrics::counter!("maru_cache_requests_total", "cache" => cache, "result" => "bypass").increment(1);
            return load().await;
        };
        // Join a load of this key and version in progress, or become the one that loads.
        let flight = format!("{full}\u{0}{ver}");
        let joined = {
            let mut flights = self.inner.flights.lock();
            match flights.get(&flight) {
                Some(rx) => Err(rx.clone()),
                None => {
                    let (tx, rx) = watch::channel(None);
                    flights.insert(flight.clone(), rx);
                    Ok(Leader { cache: self, flight, tx })
                }
            }
        };
        let leader = match joined {
            Ok(leader) => leader,
            Err(mut rx) => {
                // The leader's value, unless it failed or was cancelled: then load as usual.
                if let Ok(json) = rx.wait_for(Option::is_some).await
                    && let Some(Ok(v)) = json.as_deref().map(serde_json::from_str)
                {
                    metrics::counter!("maru_cache_requests_total", "cache" => cache, "result" => "shared").increment(1);
                    return Ok(v);
                }
                metrics::counter!("maru_cache_requests_total", "cache" => cache, "result" => "miss").increment(1);
                return load().await;
            }
        };
        metrics::counter!("maru_cache_requests_total", "cache" => cache, "result" => "miss").increment(1);
        let value = load().await?;
        if let Ok(json) = serde_json::to_string(&value) {
            let json: Arc<str> = json.into();
            leader.tx.send_replace(Some(json.clone()));
            drop(leader);
            let script = &self.inner.fill;
            self.run("fill", |mut c| async move {
                script
                    .key(&full)
                    .key(&vkey)
                    .arg(ver)
                    .arg(&*json)
                    .arg(ttl.as_millis() as u64)
                    .invoke_async::<i64>(&mut c)
                    .await
            })
            .await;
        }
        Ok(value)
    }

    /// The key [`Self::get_or_load_scoped`] reads for `base` under these scope versions.
    pub fn scoped_key(base: &str, versions: &[String]) -> String {
        versions.iter().fold(base.to_owned(), |key, v| format!("{key}:{v}"))
    }

    /// The current versions of `keys` (as [`Self::invalidate`] bumps them; empty = never
    /// invalidated), to build cache keys that change with every write to a whole scope (e.g.
    /// every page of a feed). `None` while Redis is unavailable: bypass the cache then.
    pub async fn versions(&self, keys: &[String]) -> Option<Vec<String>> {
        let vkeys: Vec<String> = keys.iter().map(|k| self.version_key(k)).collect();
        self.run("get", |mut c| async move {
            let mut pipe = redis::pipe();
            for k in &vkeys {
                pipe.get(k);
            }
            let v: Vec<Option<String>> = pipe.query_async(&mut c).await?;
            Ok(v.into_iter().map(Option::unwrap_or_default).collect())
        })
        .await
    }

    /// Makes the next read of each key go to the database. Call after the write committed.
    pub async fn invalidate(&self, keys: &[String]) {
        if keys.is_empty() {
            return;
        }
        let ok = self.invalidate_now(keys).await;
        if !ok && self.inner.pool.is_some() {
            let mut p = self.inner.pending.lock();
            if p.keys.len() + keys.len() > PENDING_LIMIT {
                p.overflow = true;
                p.keys.clear();
            } else if !p.overflow {
                p.keys.extend(keys.iter().cloned());
            }
        }
    }

    async fn invalidate_now(&self, keys: &[String]) -> bool {
        let script = &self.inner.invalidate;
        let mut inv = script.prepare_invoke();
        for k in keys {
            inv.key(self.key(k)).key(self.version_key(k));
        }
        inv.arg(VERSION_TTL_S);
        self.run("invalidate", |mut c| async move { inv.invoke_async::<i64>(&mut c).await }).await.is_some()
    }

    fn mark_down(&self, why: &str) {
        let was_up = self.inner.up.swap(false, Ordering::AcqRel);
        let first = !self.inner.checked.swap(true, Ordering::AcqRel);
        // One warning per outage, including an outage that was there at start-up.
        if was_up || first {
            tracing::warn!(error = why, "redis unreachable: cache bypassed until it returns");
            metrics::gauge!("maru_redis_up").set(0.0);
        }
    }

    /// Pings Redis; on success replays queued invalidations before marking it up again.
    pub async fn probe(&self) -> bool {
        let Some(pool) = &self.inner.pool else { return false };
        let reachable = async {
            let mut c = pool.get().await.ok()?;
            let pong: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut c).await;
            pong.ok().map(|_| c)
        };
        let Ok(Some(mut conn)) =
            tokio::time::timeout(self.inner.timeout.max(Duration::from_millis(500)), reachable).await
        else {
            self.mark_down("ping failed");
            return false;
        };
        if !self.is_up() {
            let pending = std::mem::take(&mut *self.inner.pending.lock());
            let replayed = if pending.overflow {
                self.purge_prefix(&mut conn).await
            } else {
                let mut ok = true;
                for chunk in pending.keys.chunks(500) {
                    let mut inv = self.inner.invalidate.prepare_invoke();
                    for k in chunk {
                        inv.key(self.key(k)).key(self.version_key(k));
                    }
                    inv.arg(VERSION_TTL_S);
                    ok &= inv.invoke_async::<i64>(&mut conn).await.is_ok();
                }
                ok
            };
            if !replayed {
                // Try again at the next probe; keep bypassing meanwhile.
                let mut p = self.inner.pending.lock();
                p.overflow = true;
                return false;
            }
            self.inner.up.store(true, Ordering::Release);
            self.inner.checked.store(true, Ordering::Release);
            metrics::gauge!("maru_redis_up").set(1.0);
            tracing::info!("redis reachable: cache in use");
        }
        true
    }

    async fn purge_prefix(&self, conn: &mut Connection) -> bool {
        let pattern = format!("{}*", self.inner.prefix);
        let keys: Vec<String> = {
            let Ok(mut iter) = conn.scan_match::<_, String>(&pattern).await else { return false };
            let mut keys = Vec::new();
            while let Some(k) = iter.next_item().await {
                match k {
                    Ok(k) => keys.push(k),
                    Err(_) => return false,
                }
            }
            keys
        };
        for chunk in keys.chunks(500) {
            if conn.del::<_, i64>(chunk).await.is_err() {
                return false;
            }
        }
        true
    }

    /// Probes every `interval` until the process ends.
    pub fn spawn_monitor(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        let cache = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                cache.probe().await;
            }
        })
    }
}

/// The load of one (key, version) in progress; followers wait on its channel. Dropped — after
/// sending, after a failed load, or when the request is cancelled — it leaves the table, and
/// followers still waiting without a value load for themselves.
struct Leader<'a> {
    cache: &'a Cache,
    flight: String,
    tx: watch::Sender<Option<Arc<str>>>,
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        self.cache.inner.flights.lock().remove(&self.flight);
    }
}
