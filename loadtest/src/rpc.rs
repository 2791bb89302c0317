//! Timing one RPC and recording it in goose: the gRPC code becomes goose's status code, and a
//! failure is labelled `CODE REASON` (the `ErrorInfo.reason` maru sends), plus `no-retry-info`
//! when a retryable refusal came without `RetryInfo`. Labels come from closed sets, so goose's
//! error table stays small whatever the server says.

use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use goose::goose::{GooseUser, TransactionError};
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

/// goose's "method" column for calls over gRPC (HTTP/2) and gRPC-web (HTTP/1.1).
pub const GRPC: &str = "GRPC";
pub const GRPC_WEB: &str = "GRPC-WEB";

/// `Result` of a goose transaction.
pub type TxResult<T> = Result<T, Box<TransactionError>>;

/// A call that did not return OK (or was not made because the request budget is spent).
#[derive(Debug, Clone)]
pub struct Failed {
    pub code: Code,
    /// `ErrorInfo.reason` from maru; `NO_ERROR_INFO` when the status did not come from maru's
    /// error mapping (transport failures, a proxy, a panic).
    pub reason: String,
    pub retry_after: Option<Duration>,
    /// The call was skipped: the run's request budget is spent.
    pub skipped: bool,
    /// The status message, for diagnostics outside the metrics (unbounded text).
    pub message: String,
}

impl Failed {
    pub fn from_status(status: &Status) -> Self {
        let reason = status
            .get_details_error_info()
            .filter(|i| i.domain == "maru")
            .map(|i| i.reason)
            .unwrap_or_else(|| "NO_ERROR_INFO".to_owned());
        let retry_after = status.get_details_retry_info().and_then(|r| r.retry_delay);
        Failed { code: status.code(), reason, retry_after, skipped: false, message: status.message().to_owned() }
    }

    fn skipped() -> Self {
        Failed {
            code: Code::Cancelled,
            reason: "BUDGET_SPENT".into(),
            retry_after: None,
            skipped: true,
            message: "request budget spent".into(),
        }
    }

    /// The label goose aggregates errors under.
    pub fn label(&self) -> String {
        let mut label = format!("{} {}", code_name(self.code), self.reason);
        if matches!(self.code, Code::ResourceExhausted | Code::Unavailable) && self.retry_after.is_none() {
            label.push_str(" no-retry-info");
        }
        label
    }
}

/// Caps the number of RPCs of one run, whatever the duration (once spent, calls are
/// skipped), and notes when the first call started and the last one ended: throughput is
/// counted over that window, not over goose's start-up and shutdown.
pub struct Budget {
    left: AtomicI64,
    base: Instant,
    first_start_us: AtomicU64,
    last_end_us: AtomicU64,
}

impl Budget {
    pub fn new(max_requests: u64) -> Self {
        Budget {
            left: AtomicI64::new(i64::try_from(max_requests).unwrap_or(i64::MAX)),
            base: Instant::now(),
            first_start_us: AtomicU64::new(u64::MAX),
            last_end_us: AtomicU64::new(0),
        }
    }

    fn take(&self) -> bool {
        self.left.fetch_sub(1, Ordering::Relaxed) > 0
    }

    pub fn spent(&self) -> bool {
        self.left.load(Ordering::Relaxed) <= 0
    }

    fn mark(&self, start: Instant, end: Instant) {
        let us = |t: Instant| u64::try_from(t.saturating_duration_since(self.base).as_micros()).unwrap_or(u64::MAX);
        self.first_start_us.fetch_min(us(start), Ordering::Relaxed);
        self.last_end_us.fetch_max(us(end), Ordering::Relaxed);
    }

    /// From the first call's start to the last call's end; `None` before any call.
    pub fn active(&self) -> Option<Duration> {
        let (first, last) = (self.first_start_us.load(Ordering::Relaxed), self.last_end_us.load(Ordering::Relaxed));
        (first < last).then(|| Duration::from_micros(last - first))
    }
}

/// Runs one RPC, times it, and records it in goose as `method name` with the gRPC code.
/// The outer `Result` is goose's own (its metrics channel); the inner one is the call's.
pub async fn record<T, F>(
    user: &mut GooseUser,
    budget: &Budget,
    method: &str,
    name: &str,
    call: F,
) -> TxResult<Result<T, Failed>>
where
    F: Future<Output = Result<T, Status>>,
{
    if !budget.take() {
        // Do not spin while the clock runs out.
        tokio::time::sleep(Duration::from_millis(100)).await;
        return Ok(Err(Failed::skipped()));
    }
    let started = Instant::now();
    let result = call.await;
    let ended = Instant::now();
    let elapsed = ended - started;
    budget.mark(started, ended);
    match result {
        Ok(v) => {
            user.record_custom_request_duration(method, name, elapsed, true, Some(0), None).await?;
            Ok(Ok(v))
        }
        Err(status) => {
            let failed = Failed::from_status(&status);
            let label = failed.label();
            user.record_custom_request_duration(
                method,
                name,
                elapsed,
                false,
                Some(code_number(failed.code)),
                Some(&label),
            )
            .await?;
            Ok(Err(failed))
        }
    }
}

/// [`record`] for a call whose reply is not needed: the outcome is in the metrics.
pub async fn fire<T, F>(user: &mut GooseUser, budget: &Budget, method: &str, name: &str, call: F) -> TxResult<()>
where
    F: Future<Output = Result<T, Status>>,
{
    record(user, budget, method, name, call).await.map(drop)
}

/// A request with optional bearer token and `x-forwarded-for`.
pub fn request<T>(
    msg: T,
    bearer: Option<&AsciiMetadataValue>,
    forwarded_for: Option<&AsciiMetadataValue>,
) -> Request<T> {
    let mut req = Request::new(msg);
    if let Some(b) = bearer {
        req.metadata_mut().insert("authorization", b.clone());
    }
    if let Some(ip) = forwarded_for {
        req.metadata_mut().insert("x-forwarded-for", ip.clone());
    }
    req
}

/// `Bearer <token>` as metadata; tokens are ASCII, anything else is reported, not unwrapped.
pub fn bearer(access_token: &str) -> anyhow::Result<AsciiMetadataValue> {
    MetadataValue::try_from(format!("Bearer {access_token}"))
        .map_err(|_| anyhow::anyhow!("access token is not valid metadata"))
}

pub fn code_number(code: Code) -> u16 {
    u16::try_from(code as i32).unwrap_or(u16::MAX)
}

/// Canonical upper-case names, as grpcurl and the gRPC spec print them.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::{ErrorDetails, StatusExt};

    #[test]
    fn labels_carry_code_reason_and_missing_retry_info() {
        let mut d = ErrorDetails::new();
        d.set_error_info("RATE_LIMITED", "maru", std::collections::HashMap::new());
        d.set_retry_info(Some(Duration::from_millis(250)));
        let s = Status::with_error_details(Code::ResourceExhausted, "slow down", d);
        let f = Failed::from_status(&s);
        assert_eq!(f.label(), "RESOURCE_EXHAUSTED RATE_LIMITED");
        assert_eq!(f.retry_after, Some(Duration::from_millis(250)));

        let bare = Failed::from_status(&Status::unavailable("connection refused"));
        assert_eq!(bare.label(), "UNAVAILABLE NO_ERROR_INFO no-retry-info");
    }

    #[test]
    fn budget_runs_out() {
        let b = Budget::new(2);
        assert!(b.take() && b.take());
        assert!(!b.take());
        assert!(b.spent());
        assert_eq!(b.active(), None);
        let t = Instant::now();
        b.mark(t, t + Duration::from_millis(5));
        b.mark(t + Duration::from_millis(1), t + Duration::from_millis(9));
        assert_eq!(b.active(), Some(Duration::from_millis(9)));
    }

    #[test]
    fn code_numbers_round_trip() {
        for n in 0..=16 {
            let c = Code::from_i32(n);
            assert_eq!(i32::from(code_number(c)), n, "{}", code_name(c));
        }
    }
}
