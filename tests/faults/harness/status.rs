//! What a call ended with, as the shared assertions see it: the code, the `ErrorInfo` reason,
//! whether `RetryInfo` came along, and whether the status came from maru at all (a status
//! carries the `x-request-id` maru stamps on every response) or from the client's transport
//! (connection refused, reset, GOAWAY).

use std::collections::BTreeSet;
use std::sync::OnceLock;
use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::StatusExt;

/// The reasons of `docs/errors.md`, the catalogue clients may rely on.
pub fn documented_reasons() -> &'static BTreeSet<String> {
    static R: OnceLock<BTreeSet<String>> = OnceLock::new();
    R.get_or_init(|| {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/errors.md"))
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split('`').next())
            .map(str::to_owned)
            .collect()
    })
}

#[derive(Debug, Clone)]
pub struct Failure {
    pub code: Code,
    /// `ErrorInfo.reason` when the status had an `ErrorInfo` of domain `maru`.
    pub reason: Option<String>,
    pub retry_info: bool,
    pub retry_delay: Option<Duration>,
    /// From maru (a response with its request id) rather than from the client's transport.
    pub from_server: bool,
    pub message: String,
    /// Bytes of `grpc-message` plus `grpc-status-details-bin` as received.
    pub status_bytes: usize,
}

impl Failure {
    pub fn of(status: &Status) -> Self {
        let details = status.get_error_details();
        let info = details.error_info().filter(|i| i.domain == "maru");
        let retry = details.retry_info();
        Self {
            code: status.code(),
            reason: info.map(|i| i.reason.clone()),
            retry_info: retry.is_some(),
            retry_delay: retry.and_then(|r| r.retry_delay),
            from_server: status.metadata().contains_key("x-request-id"),
            message: status.message().chars().take(200).collect(),
            status_bytes: status.message().len() + status.details().len(),
        }
    }

    /// The client gave up waiting (no status at all).
    pub fn hung(after: Duration) -> Self {
        Self {
            code: Code::DeadlineExceeded,
            reason: None,
            retry_info: false,
            retry_delay: None,
            from_server: false,
            message: format!("no answer within {} ms (client-side guard)", after.as_millis()),
            status_bytes: 0,
        }
    }

    /// UNAVAILABLE and RESOURCE_EXHAUSTED tell the client to come back later, so they carry
    /// `RetryInfo` — except `MESSAGE_TOO_LARGE`, which the same message gets every time.
    pub fn retryable(&self) -> bool {
        match self.code {
            Code::Unavailable => true,
            Code::ResourceExhausted => self.reason.as_deref() != Some("MESSAGE_TOO_LARGE"),
            _ => false,
        }
    }

    /// e.g. `UNAVAILABLE DATABASE_UNAVAILABLE +RetryInfo`, `transport UNAVAILABLE`.
    pub fn label(&self) -> String {
        if !self.from_server {
            return format!("transport {}", code_name(self.code));
        }
        let mut s = code_name(self.code).to_owned();
        match &self.reason {
            Some(r) => {
                s.push(' ');
                s.push_str(r);
            }
            None => s.push_str(" (no ErrorInfo)"),
        }
        if self.retry_info {
            s.push_str(" +RetryInfo");
        }
        s
    }

    /// What the error design requires of a status maru sent; `None` when it complies.
    /// (Without the message, so equal violations count together.)
    pub fn design_violation(&self) -> Option<String> {
        if matches!(self.code, Code::Internal | Code::Unknown) {
            return Some(self.label());
        }
        if !self.from_server {
            return None;
        }
        match &self.reason {
            None => return Some(format!("{} without ErrorInfo", code_name(self.code))),
            Some(r) if !documented_reasons().contains(r) => {
                return Some(format!("{} with undocumented reason {r}", code_name(self.code)));
            }
            Some(_) => {}
        }
        if self.retryable() && !self.retry_info {
            return Some(format!("{} without RetryInfo", self.label()));
        }
        None
    }
}

/// Upper-snake gRPC code names, as in the issue and `docs/errors.md`.
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
