//! Admission control, a tower layer inside tonic-web (so browsers get proper gRPC-web errors)
//! and after the auth step of [`super::layer`] (so it knows the caller):
//!
//! - **Rate limits** (governor, GCRA): one bucket per RPC class — `auth` (SignUp, Login,
//!   Refresh), `sensitive` (password changes, account deletion, admin triggers), `write`,
//!   `read` — keyed by the authenticated user, else by client IP (IPv6 grouped by /64). A
//!   method's class is its `(maru.v1.policy)` in the proto ([`super::policy`]).
//!   `x-forwarded-for` / `x-real-ip` are honoured only when the TCP peer is a configured
//!   trusted proxy. Per-method overrides get their own bucket, labelled with the method's
//!   class. A refusal is RESOURCE_EXHAUSTED with `RetryInfo` (the exact wait) and
//!   `ErrorInfo{RATE_LIMITED, bucket, limit}`. Methods without a class (health, reflection)
//!   are exempt. Keys idle long enough to be full again are dropped periodically, so the key
//!   store stays bounded.
//! - **Load shedding**: at most `max_in_flight` RPCs at once; beyond that UNAVAILABLE
//!   `OVERLOADED` with `RetryInfo`, before any work is done. An RPC counts until its response
//!   has been taken by the client (the slot travels with the response body,
//!   [`HeldUntilSent`]), so clients that never read cannot pile up responses beyond it.
//!   A server stream (chat's Subscribe) holds its slot only until it is open: its life is
//!   bounded by its own limits (`chat.max_streams_per_user`, `chat.max_streams_per_replica`).
//! - **Streams of health and reflection**: exempt from rate limits, but Health/Watch and
//!   reflection streams open at once are capped per client address
//!   (`grpc.max_streams_per_address`); beyond that RESOURCE_EXHAUSTED `CAPACITY_EXCEEDED`
//!   with `RetryInfo`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http::{Request, Response};
use ipnet::IpNet;
use tonic::Code;
use tonic::body::Body;
use tonic::transport::server::TcpConnectInfo;
use tower::{Layer, Service};
use uuid::Uuid;

use super::policy::{Registry, RpcClass};
use super::{Auth, GrpcType, MethodInfo};
use crate::config::{BucketSettings, RateLimitSettings};
use crate::error::{AppError, Reason};

/// Who a bucket is counted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKey {
    User(Uuid),
    Ip(IpAddr),
}

struct Bucket {
    class: RpcClass,
    limiter: DefaultKeyedRateLimiter<ClientKey>,
    /// For `ErrorInfo.metadata.limit`, e.g. `60/min burst 20`.
    limit: String,
}

impl Bucket {
    fn new(class: RpcClass, s: &BucketSettings) -> Self {
        let per_minute = s.per_minute.max(1);
        let period = Duration::from_secs(60) / per_minute;
        let burst = NonZeroU32::new(s.burst.max(1)).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(period).unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN)).allow_burst(burst);
        Self { class, limiter: RateLimiter::keyed(quota), limit: format!("{per_minute}/min burst {}", burst) }
    }
}

/// Shared state of the admission layer.
pub struct Admission {
    enabled: bool,
    classes: HashMap<RpcClass, Bucket>,
    /// Per-method overrides, keyed by path (`/package.Service/Method`).
    methods: HashMap<String, Bucket>,
    trusted: Vec<IpNet>,
    max_in_flight: usize,
    in_flight: AtomicUsize,
    clock: DefaultClock,
    /// Health/Watch and reflection streams open per client address (0: no cap).
    max_streams_per_address: usize,
    streams: parking_lot::Mutex<HashMap<IpAddr, usize>>,
}

/// Something held until the response body is done (taken to its end by the client, or the
/// stream reset): the in-flight slot of an RPC, the stream slot of a Watch. The admission
/// puts it in the response's extensions; the per-RPC layer moves it into the body.
#[derive(Clone)]
pub struct HeldUntilSent(pub Arc<dyn Send + Sync>);

/// Gives a client address's stream slot back.
struct StreamSlot(Arc<Admission>, IpAddr);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut streams = self.0.streams.lock();
        if let Some(n) = streams.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                streams.remove(&self.1);
            }
        }
    }
}

/// The configured bucket of a class.
fn bucket_settings(s: &RateLimitSettings, class: RpcClass) -> &BucketSettings {
    match class {
        RpcClass::Auth => &s.buckets.auth,
        RpcClass::Sensitive => &s.buckets.sensitive,
        RpcClass::Write => &s.buckets.write,
        RpcClass::Read => &s.buckets.read,
    }
}

impl Admission {
    /// The admission of `s` over the methods of `registry`. A start-up error names every
    /// `rate_limit.methods` key that is not a method of this server or is exempt.
    pub fn new(s: &RateLimitSettings, registry: &Registry) -> anyhow::Result<Arc<Self>> {
        Self::with_stream_cap(s, registry, 0)
    }

    /// As [`Self::new`], with at most `max_streams_per_address` Health/Watch and reflection
    /// streams open per client address (0: no cap).
    pub fn with_stream_cap(
        s: &RateLimitSettings,
        registry: &Registry,
        max_streams_per_address: usize,
    ) -> anyhow::Result<Arc<Self>> {
        let classes = RpcClass::ALL.iter().map(|c| (*c, Bucket::new(*c, bucket_settings(s, *c)))).collect();
        let mut methods = HashMap::new();
        let (mut unknown, mut exempt) = (Vec::new(), Vec::new());
        for (name, bucket) in &s.methods {
            let path = format!("/{name}");
            match registry.get(&path).map(|m| m.policy.rate_class) {
                Some(Some(class)) => {
                    methods.insert(path, Bucket::new(class, bucket));
                }
                Some(None) => exempt.push(name.as_str()),
                None => unknown.push(name.as_str()),
            }
        }
        let mut problems = Vec::new();
        if !unknown.is_empty() {
            problems.push(format!("not methods of this server (package.Service/Method): {}", unknown.join(", ")));
        }
        if !exempt.is_empty() {
            problems.push(format!("exempt from rate limits: {}", exempt.join(", ")));
        }
        anyhow::ensure!(problems.is_empty(), "rate_limit.methods: {}", problems.join("; "));
        Ok(Arc::new(Self {
            enabled: s.enabled,
            classes,
            methods,
            trusted: s.trusted_proxies.clone(),
            max_in_flight: s.max_in_flight,
            in_flight: AtomicUsize::new(0),
            clock: DefaultClock::default(),
            max_streams_per_address,
            streams: parking_lot::Mutex::new(HashMap::new()),
        }))
    }

    /// Drops keys whose buckets are full again; reports how many remain.
    pub fn cleanup(&self) -> usize {
        let mut total = 0;
        for b in self.classes.values().chain(self.methods.values()) {
            b.limiter.retain_recent();
            b.limiter.shrink_to_fit();
            total += b.limiter.len();
        }
        metrics::gauge!("maru_rate_limit_keys").set(total as f64);
        total
    }

    /// Runs [`Self::cleanup`] every `every` until the process ends.
    pub fn spawn_cleanup(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                this.cleanup();
            }
        })
    }

    /// Counts a call to `path` against its override or its class's bucket.
    fn check(&self, path: &str, info: &MethodInfo, key: ClientKey) -> Result<(), AppError> {
        let bucket = match (self.methods.get(path), info.policy.rate_class) {
            (Some(b), _) => b,
            (None, Some(class)) => match self.classes.get(&class) {
                Some(b) => b,
                None => return Ok(()),
            },
            (None, None) => return Ok(()),
        };
        let label = bucket.class.as_str();
        match bucket.limiter.check_key(&key) {
            Ok(()) => {
                metrics::counter!("maru_rate_limit_decisions_total", "bucket" => label, "decision" => "allowed")
                    .increment(1);
                Ok(())
            }
            Err(not_until) => {
                metrics::counter!("maru_rate_limit_decisions_total", "bucket" => label, "decision" => "rejected")
                    .increment(1);
                let wait = not_until.wait_time_from(self.clock.now());
                // Round up to whole milliseconds so a client sleeping exactly this long succeeds.
                let wait = Duration::from_millis(wait.as_millis() as u64 + 1);
                Err(AppError::Retry {
                    code: Code::ResourceExhausted,
                    reason: Reason::RateLimited,
                    message: format!("rate limit of the {label} bucket exceeded; retry in {} ms", wait.as_millis()),
                    retry_after: wait,
                    metadata: Default::default(),
                }
                .with_meta("bucket", label)
                .with_meta("limit", &bucket.limit))
            }
        }
    }

    /// The rate-limit key of a request: the caller, else the client IP.
    pub fn client_key<B>(&self, req: &Request<B>) -> Option<ClientKey> {
        if let Some(Auth::Caller(c)) = req.extensions().get::<Auth>() {
            return Some(ClientKey::User(c.user_id));
        }
        let peer =
            req.extensions().get::<TcpConnectInfo>().and_then(|i| i.remote_addr()).map(|a: SocketAddr| a.ip())?;
        Some(ClientKey::Ip(group(self.client_ip(peer, req.headers()))))
    }

    /// The client address of a request (grouped as rate-limit keys are).
    fn client_address<B>(&self, req: &Request<B>) -> Option<IpAddr> {
        let peer =
            req.extensions().get::<TcpConnectInfo>().and_then(|i| i.remote_addr()).map(|a: SocketAddr| a.ip())?;
        Some(group(self.client_ip(peer, req.headers())))
    }

    /// A stream slot of `ip`, or the refusal when its streams are at the cap.
    fn open_stream(self: &Arc<Self>, ip: IpAddr) -> Result<StreamSlot, AppError> {
        let mut streams = self.streams.lock();
        let n = streams.entry(ip).or_insert(0);
        if *n >= self.max_streams_per_address {
            drop(streams);
            metrics::counter!("maru_stream_limit_rejections_total").increment(1);
            return Err(AppError::Retry {
                code: Code::ResourceExhausted,
                reason: Reason::CapacityExceeded,
                message: format!(
                    "at most {} health and reflection streams per client address; close one or retry later",
                    self.max_streams_per_address
                ),
                retry_after: Duration::from_secs(1),
                metadata: Default::default(),
            }
            .with_meta("limit", "streams_per_address"));
        }
        *n += 1;
        Ok(StreamSlot(self.clone(), ip))
    }

    /// The peer, or — when the peer is a trusted proxy — the client it forwarded for.
    pub fn client_ip(&self, peer: IpAddr, headers: &http::HeaderMap) -> IpAddr {
        client_ip(&self.trusted, peer, headers)
    }
}

/// The peer, or — when the peer is one of `trusted` proxies — the client it forwarded for
/// (`x-forwarded-for` read right to left, else `x-real-ip`). Also used to count anonymous
/// post views per client.
pub fn client_ip(trusted_proxies: &[IpNet], peer: IpAddr, headers: &http::HeaderMap) -> IpAddr {
    let trusted = |ip: &IpAddr| trusted_proxies.iter().any(|n| n.contains(ip));
    if !trusted(&peer) {
        return peer;
    }
    // Right to left: the first address not added by a trusted proxy is the client.
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    if let Some(ip) = forwarded.iter().rev().find(|ip| !trusted(ip)) {
        return *ip;
    }
    headers.get("x-real-ip").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok()).unwrap_or(peer)
}

/// IPv6 clients are grouped by /64 (one subscriber usually owns a whole /64).
pub fn group(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

#[derive(Clone)]
pub struct AdmissionLayer {
    admission: Arc<Admission>,
}

impl AdmissionLayer {
    pub fn new(admission: Arc<Admission>) -> Self {
        Self { admission }
    }
}

impl<S> Layer<S> for AdmissionLayer {
    type Service = AdmissionService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AdmissionService { inner, admission: self.admission.clone() }
    }
}

#[derive(Clone)]
pub struct AdmissionService<S> {
    inner: S,
    admission: Arc<Admission>,
}

/// Decrements the in-flight count when the RPC's future is done or dropped.
struct InFlight(Arc<Admission>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let now = self.0.in_flight.fetch_sub(1, Ordering::AcqRel) - 1;
        metrics::gauge!("maru_inflight_requests").set(now as f64);
    }
}

impl<S> Service<Request<Body>> for AdmissionService<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let adm = self.admission.clone();
        let info = req.extensions().get::<Arc<MethodInfo>>().cloned();
        // Health and reflection have no class: neither rate limited nor shed.
        let exempt = info.as_ref().is_none_or(|i| i.policy.rate_class.is_none());
        if exempt {
            let streaming = info.as_ref().is_some_and(|i| i.grpc_type != GrpcType::Unary);
            if streaming
                && adm.max_streams_per_address > 0
                && let Some(ip) = adm.client_address(&req)
            {
                return match adm.open_stream(ip) {
                    Ok(slot) => {
                        let call = inner.call(req);
                        Box::pin(async move { call.await.map(|r| held_until_sent(r, slot)) })
                    }
                    Err(err) => Box::pin(async move { Ok(tonic::Status::from(err).into_http()) }),
                };
            }
            return Box::pin(inner.call(req));
        }

        let streaming_response =
            info.as_ref().is_some_and(|i| matches!(i.grpc_type, GrpcType::ServerStream | GrpcType::BidiStream));
        let now = adm.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        let guard = InFlight(adm.clone());
        metrics::gauge!("maru_inflight_requests").set(now as f64);
        if now > adm.max_in_flight {
            metrics::counter!("maru_load_shed_total").increment(1);
            let err = AppError::Retry {
                code: Code::Unavailable,
                reason: Reason::Overloaded,
                message: "server is overloaded; retry shortly".into(),
                retry_after: Duration::from_millis(250),
                metadata: Default::default(),
            };
            drop(guard);
            return Box::pin(async move { Ok(tonic::Status::from(err).into_http()) });
        }
        if adm.enabled
            && let (Some(info), Some(key)) = (info, adm.client_key(&req))
            && let Err(err) = adm.check(req.uri().path(), &info, key)
        {
            drop(guard);
            return Box::pin(async move { Ok(tonic::Status::from(err).into_http()) });
        }
        if streaming_response {
            // A response stream (chat's Subscribe) may stay open for hours: it holds its
            // in-flight slot while the handler opens it, not for its whole life (its own limits
            // are per user and per replica).
            return Box::pin(async move {
                let r = inner.call(req).await;
                drop(guard);
                r
            });
        }
        Box::pin(async move { inner.call(req).await.map(|r| held_until_sent(r, guard)) })
    }
}

/// `resp` carrying `held` until its body is done (see [`HeldUntilSent`]).
fn held_until_sent<T: Send + Sync + 'static>(mut resp: Response<Body>, held: T) -> Response<Body> {
    resp.extensions_mut().insert(HeldUntilSent(Arc::new(held)));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> &'static Registry {
        crate::grpc::registry().expect("registry builds")
    }

    /// The bucket label of a refusal, or `None` when the call was admitted.
    fn refused_bucket(adm: &Admission, path: &str, key: ClientKey) -> Option<String> {
        let info = registry().get(path).expect("known method");
        match adm.check(path, info, key) {
            Ok(()) => None,
            Err(AppError::Retry { reason: Reason::RateLimited, metadata, .. }) => metadata.get("bucket").cloned(),
            Err(e) => panic!("unexpected refusal {e:?}"),
        }
    }

    #[test]
    fn a_method_counts_against_the_bucket_its_policy_names() {
        let mut s = RateLimitSettings::default();
        s.buckets.write = BucketSettings { per_minute: 1, burst: 1 };
        s.buckets.read = BucketSettings { per_minute: 1, burst: 1 };
        let adm = Admission::new(&s, registry()).unwrap();
        let key = ClientKey::User(Uuid::nil());
        // CheckIn is a write (it was counted as a read because its name starts with "Check").
        assert_eq!(refused_bucket(&adm, "/maru.v1.EventService/CheckIn", key), None);
        assert_eq!(refused_bucket(&adm, "/maru.v1.EventService/CheckIn", key).as_deref(), Some("write"));
        assert_eq!(refused_bucket(&adm, "/maru.v1.EventService/GetEvent", key), None);
        assert_eq!(refused_bucket(&adm, "/maru.v1.EventService/GetEvent", key).as_deref(), Some("read"));
    }

    #[test]
    fn a_method_override_is_labelled_with_the_methods_class() {
        let mut s = RateLimitSettings::default();
        s.methods.insert("maru.v1.EventService/CheckIn".into(), BucketSettings { per_minute: 1, burst: 1 });
        let adm = Admission::new(&s, registry()).unwrap();
        let key = ClientKey::User(Uuid::nil());
        assert_eq!(refused_bucket(&adm, "/maru.v1.EventService/CheckIn", key), None);
        assert_eq!(refused_bucket(&adm, "/maru.v1.EventService/CheckIn", key).as_deref(), Some("write"));
        // Other writes keep the (default, roomy) class bucket.
        assert_eq!(refused_bucket(&adm, "/maru.v1.EventService/ReportFeePaid", key), None);
    }

    #[test]
    fn overrides_of_unknown_or_exempt_methods_are_start_up_errors_naming_them() {
        let mut s = RateLimitSettings::default();
        let b = BucketSettings { per_minute: 1, burst: 1 };
        s.methods.insert("maru.v1.AuthService/ResetPassword".into(), b.clone());
        s.methods.insert("maru.v1.NoService/Login".into(), b.clone());
        s.methods.insert("grpc.health.v1.Health/Check".into(), b.clone());
        s.methods.insert("maru.v1.AuthService/Login".into(), b);
        let err = Admission::new(&s, registry()).err().expect("refused").to_string();
        assert!(err.contains("maru.v1.AuthService/ResetPassword, maru.v1.NoService/Login"), "{err}");
        assert!(err.contains("exempt from rate limits: grpc.health.v1.Health/Check"), "{err}");
        assert!(!err.contains("AuthService/Login"), "{err}");
    }

    #[test]
    fn ipv6_is_grouped_by_64_and_mapped_v4_unwrapped() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        assert_eq!(group(a), group(b));
        assert_ne!(group(a), group("2001:db8:1:3::1".parse().unwrap()));
        assert_eq!(group("::ffff:10.1.2.3".parse().unwrap()), "10.1.2.3".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn forwarded_headers_count_only_from_trusted_proxies() {
        let s = RateLimitSettings { trusted_proxies: vec!["10.0.0.0/8".parse().unwrap()], ..Default::default() };
        let adm = Admission::new(&s, registry()).unwrap();
        let mut h = http::HeaderMap::new();
        h.insert("x-forwarded-for", "203.0.113.7, 10.0.0.2".parse().unwrap());
        let untrusted: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(adm.client_ip(untrusted, &h), untrusted);
        assert_eq!(adm.client_ip("10.0.0.1".parse().unwrap(), &h), "203.0.113.7".parse::<IpAddr>().unwrap());
        let mut h = http::HeaderMap::new();
        h.insert("x-real-ip", "203.0.113.9".parse().unwrap());
        assert_eq!(adm.client_ip("10.0.0.1".parse().unwrap(), &h), "203.0.113.9".parse::<IpAddr>().unwrap());
    }
}
