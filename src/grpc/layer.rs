//! The per-RPC tower layer, inside tonic-web so that its refusals reach browsers as proper
//! gRPC-web errors. For every request it: assigns the request id and the `rpc` span, refuses
//! calls before the database is ready, authenticates the bearer token, checks its session
//! ([`crate::sessions`]: live, account active, current role) and enforces the method's caller
//! rule from its `(maru.v1.policy)` (before the rate limiter counts the call), enforces the
//! server deadline (DEADLINE_EXCEEDED), and records the gRPC metrics and one
//! access line when the response ends — exactly once, whether the body completes or the
//! client goes away.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{HeaderValue, Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::Code;
use tonic::body::Body;
use tonic::transport::server::TcpConnectInfo;
use tower::{Layer, Service};
use tracing::Instrument;

use super::admission::HeldUntilSent;
use super::connections::{ConnInfo, UnsentResponse};
use super::policy::{CallerRule, Policy, RpcClass};
use super::{Auth, GrpcType, MethodInfo, methods};
use crate::error::{AppError, Reason, layer_status};
use crate::request_id;
use crate::sessions::{Sessions, Verdict};
use crate::tokens::TokenKeys;

/// Which wire protocol the client spoke; set by [`mark_protocol`] before tonic-web translates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    GrpcWeb,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::GrpcWeb => "grpc_web",
        }
    }
}

/// Marks gRPC-web requests (by content type) so metrics can tell them apart after translation.
pub fn mark_protocol<B>(mut req: Request<B>) -> Request<B> {
    let web = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc-web"));
    req.extensions_mut().insert(if web { Protocol::GrpcWeb } else { Protocol::Grpc });
    req
}

/// Settings and shared state of the layer.
pub struct RpcLayerConfig {
    pub tokens: Arc<TokenKeys>,
    pub max_timeout: Duration,
    pub access_log: bool,
    pub metrics: bool,
    /// False until the database is reachable and migrated.
    pub ready: Arc<AtomicBool>,
    /// The session behind every presented token is checked on every call.
    pub sessions: Arc<Sessions>,
    /// Peers whose `traceparent`/`tracestate` is followed (`rate_limit.trusted_proxies`, the
    /// same rule as forwarded addresses); other callers start a new trace.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

#[derive(Clone)]
pub struct RpcLayer {
    cfg: Arc<RpcLayerConfig>,
}

impl RpcLayer {
    pub fn new(cfg: RpcLayerConfig) -> Self {
        Self { cfg: Arc::new(cfg) }
    }
}

impl<S> Layer<S> for RpcLayer {
    type Service = RpcService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RpcService { inner, cfg: self.cfg.clone() }
    }
}

#[derive(Clone)]
pub struct RpcService<S> {
    inner: S,
    cfg: Arc<RpcLayerConfig>,
}

/// A path no service answers: tonic replies UNIMPLEMENTED. It counts against the write bucket
/// (so probing paths is rate limited) and its token is not looked at.
static UNKNOWN: MethodInfo = MethodInfo {
    service: "unknown",
    method: "unknown",
    grpc_type: GrpcType::Unary,
    policy: Policy { rate_class: Some(RpcClass::Write), caller: CallerRule::None, guests: false },
};

impl<S> Service<Request<Body>> for RpcService<S>
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

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        // The clone that was polled ready is the one that must be called.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let cfg = self.cfg.clone();
        let start = Instant::now();

        let info: Arc<MethodInfo> =
            methods().get(req.uri().path()).cloned().unwrap_or_else(|| Arc::new(UNKNOWN.clone()));
        let protocol = req.extensions().get::<Protocol>().copied().unwrap_or(Protocol::Grpc);
        let request_id = request_id::from_headers(req.headers());
        // A unary response is tracked until its client takes it (the connection's send timeout).
        let conn =
            req.extensions().get::<ConnInfo>().filter(|_| info.grpc_type == GrpcType::Unary).map(|c| c.conn.clone());
        let exempt = info.service == "grpc.health.v1.Health" || info.service.starts_with("grpc.reflection.");
        let auth = cfg.tokens.authenticate(req.headers());
        req.extensions_mut().insert(info.clone());
        let user_id = match auth {
            Auth::Caller(c) => c.user_id.to_string(),
            _ => String::new(),
        };
        let span = tracing::info_span!(
            "rpc",
            request_id = %request_id,
            rpc = %format_args!("{}/{}", info.service, info.method),
            user_id = %user_id,
        );
        // Traces (`crate::traces`): the caller's trace context when it comes through a trusted
        // proxy, and the conventional RPC attributes. Nothing happens when tracing is off.
        let peer = req.extensions().get::<TcpConnectInfo>().and_then(|i| i.remote_addr()).map(|a| a.ip());
        if peer.is_some_and(|ip| cfg.trusted_proxies.iter().any(|n| n.contains(&ip))) {
            crate::traces::accept_parent(&span, req.headers());
        }
        crate::traces::rpc_attributes(&span, info.service, info.method);
        // A client deadline is kept a millisecond early: tonic enforces `grpc-timeout` itself,
        // outside every layer, and would answer CANCELLED "Timeout expired" with no ErrorInfo,
        // metrics or access line. Ours fires first and answers DEADLINE_EXCEEDED.
        // The deadline is fixed here, synchronously: tonic's own timer starts only after this
        // `call` returns, so ours is always the earlier one (and tonic polls us first).
        let timeout = client_timeout(req.headers())
            .map_or(cfg.max_timeout, |t| t.saturating_sub(CLIENT_DEADLINE_MARGIN).min(cfg.max_timeout));
        let deadline = tokio::time::Instant::now() + timeout;

        if cfg.metrics {
            metrics::counter!("grpc_server_started_total",
                "grpc_type" => info.grpc_type.as_str(), "grpc_service" => info.service,
                "grpc_method" => info.method, "protocol" => protocol.as_str())
            .increment(1);
            if matches!(info.grpc_type, GrpcType::Unary | GrpcType::ServerStream) {
                metrics::counter!("grpc_server_msg_received_total",
                    "grpc_type" => info.grpc_type.as_str(), "grpc_service" => info.service,
                    "grpc_method" => info.method, "protocol" => protocol.as_str())
                .increment(1);
            }
        }
        let completion = Completion {
            info: info.clone(),
            protocol,
            start,
            end: None,
            code: None,
            request_id: request_id.clone(),
            user_id,
            span: span.clone(),
            log: cfg.access_log && info.service != "grpc.health.v1.Health",
            metrics: cfg.metrics,
        };

        Box::pin(async move {
            let early = if !exempt && !cfg.ready.load(Ordering::Acquire) {
                Some(AppError::Retry {
                    code: Code::Unavailable,
                    reason: Reason::NotReady,
                    message: "server is starting; the database is not ready yet".into(),
                    retry_after: Duration::from_secs(1),
                    metadata: Default::default(),
                })
            } else {
                // A signed token is not enough: its session must be live and its account
                // active, and the call is judged with the account's current role. Health,
                // reflection and methods that carry their own credential do not look at it.
                let checked = match auth {
                    Auth::Caller(claimed) if !exempt && info.policy.caller != CallerRule::None => {
                        match cfg.sessions.check(claimed).instrument(span.clone()).await {
                            Verdict::Live(caller) => Ok(Auth::Caller(caller)),
                            Verdict::Ended(_) => Ok(Auth::Rejected(Reason::SessionEnded)),
                            Verdict::Unavailable(err) => Err(err),
                        }
                    }
                    other => Ok(other),
                };
                match checked {
                    Ok(auth) => {
                        req.extensions_mut().insert(auth);
                        info.policy.admit(&auth).err()
                    }
                    Err(err) => Some(err),
                }
            };
            let response = match early {
                Some(err) => Ok(error_response(&request_id, err)),
                None => {
                    let call = request_id::scope(request_id.clone(), inner.call(req)).instrument(span);
                    if info.grpc_type == GrpcType::Unary {
                        // Reads bound their statements by what is left of it (`db`).
                        let call = crate::db::with_deadline(deadline.into_std(), call);
                        match tokio::time::timeout_at(deadline, call).await {
                            Ok(r) => r,
                            Err(_) => Ok(error_response(
                                &request_id,
                                AppError::refused(
                                    Code::DeadlineExceeded,
                                    Reason::DeadlineExceeded,
                                    format!("deadline of {} ms exceeded", timeout.as_millis()),
                                ),
                            )),
                        }
                    } else {
                        call.await
                    }
                }
            };
            let unsent = conn.map(|c| c.response_pending());
            response.map(|resp| finish_response(resp, &request_id, completion, unsent))
        })
    }
}

/// The response header carrying the RPC's trace id when tracing is on (32 hex digits).
pub const TRACE_ID_HEADER: &str = "x-trace-id";

fn error_response(request_id: &str, err: AppError) -> Response<Body> {
    let status = request_id::scope_sync(request_id, || layer_status(err));
    status.into_http()
}

fn finish_response(
    resp: Response<Body>,
    request_id: &str,
    mut completion: Completion,
    unsent: Option<UnsentResponse>,
) -> Response<Body> {
    let (mut parts, body) = resp.into_parts();
    let held = parts.extensions.remove::<HeldUntilSent>();
    if let Ok(v) = HeaderValue::from_str(request_id) {
        parts.headers.insert(request_id::HEADER, v);
    }
    if let Some(v) = crate::traces::trace_id(&completion.span).and_then(|t| HeaderValue::from_str(&t).ok()) {
        parts.headers.insert(TRACE_ID_HEADER, v);
    }
    // A trailers-only response carries its status in the headers.
    if let Some(code) = normalize_status(&mut parts.headers, request_id, &completion.info) {
        completion.code = Some(code);
    }
    Response::from_parts(
        parts,
        Body::new(MeteredBody { inner: body, completion, frames: FrameCounter::default(), _held: (held, unsent) }),
    )
}

/// Makes every non-OK status follow the error design, including those tonic, health and
/// reflection build themselves: `ErrorInfo` + `RequestInfo` are added when missing, with the
/// reason of [`builtin_reason`]. Returns the final code.
fn normalize_status(headers: &mut http::HeaderMap, request_id: &str, info: &MethodInfo) -> Option<Code> {
    let status = tonic::Status::from_header_map(headers)?;
    let code = status.code();
    if code == Code::Ok || headers.contains_key("grpc-status-details-bin") {
        return Some(code);
    }
    let msg = status.message();
    let (code, reason) = builtin_reason(code, msg, info);
    // Library messages may echo input (reflection's unknown symbol, a bad path).
    let err = AppError::refused(code, reason, crate::error::truncate(msg, 2 * crate::error::MAX_ECHO_CHARS));
    let rebuilt = request_id::scope_sync(request_id, || layer_status(err));
    // Only fails for header values that cannot be encoded; the original status then stands.
    let _ = rebuilt.add_header(headers);
    Some(code)
}

/// The code and reason of a status built outside maru's error mapping: a malformed request is
/// INVALID_ARGUMENT instead of INTERNAL, an oversized one RESOURCE_EXHAUSTED, health's unknown
/// service `SERVICE_UNKNOWN`, a broken stream `TRANSPORT_ERROR`; INTERNAL stays for the rest of
/// INTERNAL only (an encoding failure on our side).
fn builtin_reason(code: Code, msg: &str, info: &MethodInfo) -> (Code, Reason) {
    const MALFORMED: &[&str] = &[
        // The request body was not a (complete) message of the method's type.
        "failed to decode Protobuf message",
        "Unexpected EOF decoding",
        // A unary call whose body held no message.
        "Missing request message",
        // A bad compression flag or a body that does not decompress.
        "protocol error:",
        "Error decompressing:",
        // gRPC-web: a grpc-web-text body that is not base64, or a malformed frame.
        "tonic-web: ",
    ];
    if msg.starts_with("h2 protocol error") {
        return (code, Reason::TransportError);
    }
    match code {
        Code::Internal if MALFORMED.iter().any(|m| msg.starts_with(m)) => {
            (Code::InvalidArgument, Reason::MalformedMessage)
        }
        Code::Internal => (Code::Internal, Reason::Internal),
        Code::OutOfRange if msg.contains("message length too large") => {
            (Code::ResourceExhausted, Reason::MessageTooLarge)
        }
        Code::ResourceExhausted if msg.contains("size limit") => (Code::ResourceExhausted, Reason::MessageTooLarge),
        Code::Unimplemented => (Code::Unimplemented, Reason::Unimplemented),
        Code::Cancelled => (Code::Cancelled, Reason::Cancelled),
        Code::NotFound if info.service == "grpc.health.v1.Health" => (Code::NotFound, Reason::ServiceUnknown),
        // Reflection: no such symbol, file or extension.
        Code::NotFound => (Code::NotFound, Reason::NotFound),
        Code::InvalidArgument => (Code::InvalidArgument, Reason::InvalidArgument),
        Code::DeadlineExceeded => (Code::DeadlineExceeded, Reason::DeadlineExceeded),
        // What remains comes from the transport: the request body broke off (UNKNOWN), the
        // stream was refused (UNAVAILABLE), or another HTTP/2 reset.
        other => (other, Reason::TransportError),
    }
}

/// How much earlier than a client's `grpc-timeout` the server gives up (see the layer).
const CLIENT_DEADLINE_MARGIN: Duration = Duration::from_millis(1);

/// Parses the gRPC `grpc-timeout` header (`<digits><H|M|S|m|u|n>`).
pub fn client_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    let v = headers.get("grpc-timeout")?.to_str().ok()?;
    if v.len() < 2 || v.len() > 9 {
        return None;
    }
    let (num, unit) = v.split_at(v.len() - 1);
    let n: u64 = num.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The gRPC code names used by community dashboards (grpc-go's `codes.Code.String()`).
pub fn code_label(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// Bookkeeping of one RPC, recorded once when dropped (body finished or abandoned).
struct Completion {
    info: Arc<MethodInfo>,
    protocol: Protocol,
    start: Instant,
    end: Option<Instant>,
    code: Option<Code>,
    request_id: String,
    user_id: String,
    span: tracing::Span,
    log: bool,
    metrics: bool,
}

impl Drop for Completion {
    fn drop(&mut self) {
        // No status seen: the client went away before the response ended.
        let code = self.code.unwrap_or(Code::Cancelled);
        let elapsed = self.end.unwrap_or_else(Instant::now).duration_since(self.start);
        let info = &self.info;
        crate::traces::rpc_status(&self.span, code, code_label(code));
        if self.metrics {
            let labels = [
                ("grpc_type", info.grpc_type.as_str()),
                ("grpc_service", info.service),
                ("grpc_method", info.method),
                ("protocol", self.protocol.as_str()),
            ];
            metrics::histogram!("grpc_server_handling_seconds", &labels).record(elapsed.as_secs_f64());
            crate::traces::openmetrics::record_rpc(&self.span, &labels, elapsed.as_secs_f64());
            let mut handled = labels.to_vec();
            handled.push(("grpc_code", code_label(code)));
            metrics::counter!("grpc_server_handled_total", &handled).increment(1);
        }
        if self.log {
            let _enter = self.span.enter();
            tracing::info!(
                target: "maru::access",
                request_id = %self.request_id,
                rpc = %format_args!("{}/{}", info.service, info.method),
                grpc_code = code_label(code),
                latency_ms = elapsed.as_secs_f64() * 1000.0,
                protocol = self.protocol.as_str(),
                user_id = %self.user_id,
                "rpc finished"
            );
        }
    }
}

pin_project_lite::pin_project! {
    /// Passes the response body through, counting messages and reading the final status.
    struct MeteredBody {
        #[pin]
        inner: Body,
        completion: Completion,
        frames: FrameCounter,
        // Released when the body is done: the admission's slot, the unsent-response entry.
        _held: (Option<HeldUntilSent>, Option<UnsentResponse>),
    }
}

impl HttpBody for MeteredBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        let c = this.completion;
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) if frame.is_trailers() => {
                let mut trailers = match frame.into_trailers() {
                    Ok(t) => t,
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                };
                if let Some(code) = normalize_status(&mut trailers, &c.request_id, &c.info) {
                    c.code = Some(code);
                }
                c.end = Some(Instant::now());
                Poll::Ready(Some(Ok(Frame::trailers(trailers))))
            }
            Poll::Ready(Some(Ok(frame))) => {
                if c.metrics
                    && let Some(data) = frame.data_ref()
                {
                    // One data frame may carry several messages of a stream (or part of one).
                    let messages = this.frames.count(data);
                    if messages > 0 {
                        metrics::counter!("grpc_server_msg_sent_total",
                            "grpc_type" => c.info.grpc_type.as_str(), "grpc_service" => c.info.service,
                            "grpc_method" => c.info.method, "protocol" => c.protocol.as_str())
                        .increment(messages);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                c.end.get_or_insert_with(Instant::now);
                // Trailers-only responses set the code from headers; a body that ends without
                // any status is a protocol error on our side.
                c.code.get_or_insert(Code::Unknown);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(status))) => {
                c.code = Some(status.code());
                c.end = Some(Instant::now());
                Poll::Ready(Some(Err(status)))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Counts the gRPC messages of a response body however its bytes are split into data frames:
/// each message is a 5-byte prefix (flag, big-endian length) and its bytes.
#[derive(Debug, Default)]
struct FrameCounter {
    /// Bytes of the current message still to skip.
    skip: usize,
    /// The prefix read so far (when split across frames).
    prefix: Vec<u8>,
}

impl FrameCounter {
    /// How many messages start in `data`.
    fn count(&mut self, mut data: &[u8]) -> u64 {
        let mut n = 0;
        while !data.is_empty() {
            if self.skip > 0 {
                let k = self.skip.min(data.len());
                self.skip -= k;
                data = &data[k..];
                continue;
            }
            let need = 5 - self.prefix.len();
            let k = need.min(data.len());
            self.prefix.extend_from_slice(&data[..k]);
            data = &data[k..];
            if self.prefix.len() == 5 {
                n += 1;
                self.skip =
                    u32::from_be_bytes([self.prefix[1], self.prefix[2], self.prefix[3], self.prefix[4]]) as usize;
                self.prefix.clear();
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_messages_across_and_within_data_frames() {
        let msg = |len: u32| {
            let mut v = vec![0u8];
            v.extend_from_slice(&len.to_be_bytes());
            v.extend(std::iter::repeat_n(7u8, len as usize));
            v
        };
        let mut all = Vec::new();
        for len in [3, 0, 10, 1] {
            all.extend(msg(len));
        }
        let mut c = FrameCounter::default();
        assert_eq!(c.count(&all), 4);
        // The same bytes one at a time, then in uneven pieces.
        let mut c = FrameCounter::default();
        assert_eq!(all.iter().map(|b| c.count(std::slice::from_ref(b))).sum::<u64>(), 4);
        let mut c = FrameCounter::default();
        assert_eq!(all.chunks(4).map(|p| c.count(p)).sum::<u64>(), 4);
    }

    #[test]
    fn statuses_built_outside_the_error_mapping_get_meaningful_reasons() {
        let maru = methods().get("/maru.v1.AuthService/SignUp").expect("known").clone();
        let health = methods().get("/grpc.health.v1.Health/Check").expect("known").clone();
        let reflection =
            methods().get("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo").expect("known").clone();
        let cases: &[(Code, &str, &MethodInfo, Code, Reason)] = &[
            (Code::NotFound, "service not registered", &health, Code::NotFound, Reason::ServiceUnknown),
            (Code::NotFound, "symbol 'x' not found", &reflection, Code::NotFound, Reason::NotFound),
            (
                Code::InvalidArgument,
                "invalid MessageRequest",
                &reflection,
                Code::InvalidArgument,
                Reason::InvalidArgument,
            ),
            (
                Code::Internal,
                "failed to decode Protobuf message: x",
                &maru,
                Code::InvalidArgument,
                Reason::MalformedMessage,
            ),
            (Code::Internal, "Unexpected EOF decoding stream.", &maru, Code::InvalidArgument, Reason::MalformedMessage),
            (Code::Internal, "Missing request message.", &maru, Code::InvalidArgument, Reason::MalformedMessage),
            (
                Code::Internal,
                "protocol error: received message with compressed-flag but no grpc-encoding was specified",
                &maru,
                Code::InvalidArgument,
                Reason::MalformedMessage,
            ),
            (
                Code::Internal,
                "Error decompressing: x, while sending request",
                &maru,
                Code::InvalidArgument,
                Reason::MalformedMessage,
            ),
            (Code::Internal, "Error encoding: x", &maru, Code::Internal, Reason::Internal),
            (
                Code::Internal,
                "tonic-web: Invalid symbol 33, offset 0.",
                &maru,
                Code::InvalidArgument,
                Reason::MalformedMessage,
            ),
            (Code::Internal, "h2 protocol error: stream reset", &maru, Code::Internal, Reason::TransportError),
            (
                Code::OutOfRange,
                "Error, decoded message length too large: found 9 bytes, the limit is: 1 bytes",
                &maru,
                Code::ResourceExhausted,
                Reason::MessageTooLarge,
            ),
            (
                Code::ResourceExhausted,
                "Error decompressing: size limit, of 1 bytes, exceeded while decompressing message",
                &maru,
                Code::ResourceExhausted,
                Reason::MessageTooLarge,
            ),
            (Code::Unknown, "error reading a body from connection", &maru, Code::Unknown, Reason::TransportError),
            (Code::Unavailable, "h2 protocol error: refused", &maru, Code::Unavailable, Reason::TransportError),
            (Code::Unimplemented, "", &maru, Code::Unimplemented, Reason::Unimplemented),
            (Code::Cancelled, "", &maru, Code::Cancelled, Reason::Cancelled),
        ];
        for (code, msg, info, want_code, want_reason) in cases {
            assert_eq!(builtin_reason(*code, msg, info), (*want_code, *want_reason), "{code:?} {msg}");
        }
    }

    #[test]
    fn parses_grpc_timeout() {
        let mut h = http::HeaderMap::new();
        h.insert("grpc-timeout", "250m".parse().unwrap());
        assert_eq!(client_timeout(&h), Some(Duration::from_millis(250)));
        h.insert("grpc-timeout", "3S".parse().unwrap());
        assert_eq!(client_timeout(&h), Some(Duration::from_secs(3)));
        h.insert("grpc-timeout", "3x".parse().unwrap());
        assert_eq!(client_timeout(&h), None);
        h.insert("grpc-timeout", "1234567890S".parse().unwrap());
        assert_eq!(client_timeout(&h), None);
    }
}
