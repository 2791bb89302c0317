//! Community content (DOMAIN §1): notices, complaints (민원), contacts, schedules and polls,
//! served by `maru.v1.{Notice,Complaint,Contact,Schedule,Poll}Service`
//! (`proto/maru/v1/community_content.proto`, `docs/community-content.md`).
//!
//! Layout: one file per kind of content holding its rules, conversions, use cases and — in an
//! inner `store` module — every SQL statement of that kind; [`service`] holds the thin gRPC
//! handlers of all five services.
//!
//! Who may act is decided only by [`crate::communities::access`]:
//! - calls naming a community: `member` to read, `manager` to write, `resident` to file a
//!   complaint or vote (an admin must really be a member for those);
//! - calls naming a content id: the content's community must be visible to the caller
//!   ([`visible`]): an unknown id and an id of a community where the caller is not an APPROVED
//!   member (nor admin) are the same NOT_FOUND `<X>_NOT_FOUND`, so ids leak nothing. Once
//!   visible, writes need `manager` (PERMISSION_DENIED `MANAGER_REQUIRED` otherwise).
//!
//! Invariants: content belongs to exactly one community; complaint transitions are decided by a
//! conditional UPDATE on the expected status; one vote per member and poll by the unique
//! constraint `community_poll_votes_poll_id_user_id_key`; poll results are counted from the
//! vote rows, so they always equal them.

pub mod complaints;
pub mod contacts;
pub mod notices;
pub mod polls;
pub mod schedules;
pub mod service;

use chrono::{DateTime, Datelike, Utc};
use prost_types::{FieldMask, Timestamp};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::PgConnection;
use tonic::Code;
use uuid::Uuid;

use crate::caller::Caller;
use crate::communities::access::{self, Access};
use crate::error::{AppError, AppResult, Reason, Violations};
use crate::idempotency::{self, Claim, RequestId};
use crate::state::AppState;

/// The caller's access to `community_id` when the call named a content id of it: NOT_FOUND
/// `not_found` unless the caller may see the community's content (see the module docs).
pub async fn visible(state: &AppState, caller: &Caller, community_id: Uuid, not_found: Reason) -> AppResult<Access> {
    match access::member(&state.db, caller, community_id).await {
        Err(e) if matches!(e.code(), Code::PermissionDenied | Code::NotFound) => {
            Err(AppError::not_found(not_found, what(not_found)))
        }
        other => other,
    }
}

fn what(reason: Reason) -> &'static str {
    match reason {
        Reason::NoticeNotFound => "notice",
        Reason::ComplaintNotFound => "complaint",
        Reason::ContactNotFound => "contact",
        Reason::ScheduleNotFound => "schedule",
        Reason::PollNotFound => "poll",
        _ => "resource",
    }
}

/// NOT_FOUND for a content id.
pub fn not_found(reason: Reason) -> AppError {
    AppError::not_found(reason, what(reason))
}

// ---- request parsing: each records its violation and returns a placeholder, so one request
// reports every bad field; callers use the values only after `Violations::finish`.

/// A required id field.
pub fn id(v: &mut Violations, field: &str, raw: &str) -> Uuid {
    let raw = raw.trim();
    if raw.is_empty() {
        v.add(field, "is required");
        return Uuid::nil();
    }
    match Uuid::parse_str(raw) {
        Ok(id) => id,
        Err(_) => {
            v.add(field, "must be a UUID");
            Uuid::nil()
        }
    }
}

/// Trimmed text of `min..=max` characters; control characters are refused, except line breaks
/// and tabs when `multiline`.
pub fn text(v: &mut Violations, field: &str, raw: &str, min: usize, max: usize, multiline: bool) -> String {
    let s = raw.trim();
    let n = s.chars().count();
    if n < min {
        v.add(field, if min == 1 { "is required".to_owned() } else { format!("must be at least {min} characters") });
    } else if n > max {
        v.add(field, format!("must be at most {max} characters"));
    } else if s.chars().any(|c| c.is_control() && !(multiline && matches!(c, '\n' | '\r' | '\t'))) {
        v.add(field, "must not contain control characters");
    }
    s.to_owned()
}

/// A timestamp field: `None` when unset and not `required`. Years 1900–9999 only.
pub fn time(v: &mut Violations, field: &str, ts: Option<&Timestamp>, required: bool) -> Option<DateTime<Utc>> {
    let Some(ts) = ts else {
        if required {
            v.add(field, "is required");
        }
        return None;
    };
    let parsed = u32::try_from(ts.nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000)
        .and_then(|n| DateTime::from_timestamp(ts.seconds, n))
        .filter(|t| (1900..=9999).contains(&t.year()));
    if parsed.is_none() {
        v.add(field, "must be a valid time between the years 1900 and 9999");
    }
    parsed
}

/// The paths of a required `update_mask`, each one of `allowed`.
pub fn mask(v: &mut Violations, mask: Option<&FieldMask>, allowed: &[&str]) -> Vec<String> {
    let paths: Vec<String> = mask.map(|m| m.paths.iter().map(|p| p.trim().to_owned()).collect()).unwrap_or_default();
    if paths.is_empty() {
        v.add("update_mask", format!("is required: name the fields to change, of {}", allowed.join(", ")));
    }
    for p in &paths {
        if !allowed.contains(&p.as_str()) {
            v.add("update_mask", format!("unknown field {p:?}; allowed: {}", allowed.join(", ")));
        }
    }
    paths
}

/// A request id field (empty = none).
pub fn request_id(v: &mut Violations, raw: &str) -> Option<RequestId> {
    v.check("request_id", RequestId::parse(raw)).flatten()
}

// ---- idempotent creates

/// Claims the caller's `request_id` for `method` in `tx`; `Some` is the original result.
pub async fn replayed<T: DeserializeOwned>(
    state: &AppState,
    tx: &mut PgConnection,
    method: &str,
    caller: &Caller,
    rid: Option<&RequestId>,
    request: &impl Serialize,
) -> AppResult<Option<T>> {
    let Some(rid) = rid else { return Ok(None) };
    let scope = idempotency::scope(method, Some(caller.user_id));
    let fp = idempotency::fingerprint(request);
    match idempotency::claim::<T>(tx, &scope, rid, &fp, state.settings.idempotency.ttl_s).await? {
        Claim::Replay(t) => Ok(Some(t)),
        Claim::Fresh => Ok(None),
    }
}

/// Stores the result of a fresh create under its `request_id`, in the create's transaction.
pub async fn remember<T: Serialize>(
    tx: &mut PgConnection,
    method: &str,
    caller: &Caller,
    rid: Option<&RequestId>,
    result: &T,
) -> AppResult<()> {
    match rid {
        Some(rid) => idempotency::complete(tx, &idempotency::scope(method, Some(caller.user_id)), rid, result).await,
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_rules() {
        let mut v = Violations::new();
        assert_eq!(text(&mut v, "a", "  hi  ", 1, 5, false), "hi");
        assert!(v.is_empty());
        text(&mut v, "b", "   ", 1, 5, false);
        text(&mut v, "c", "toolong", 1, 5, false);
        text(&mut v, "d", "a\nb", 1, 5, false);
        assert_eq!(text(&mut v, "e", "a\nb", 1, 5, true), "a\nb");
        text(&mut v, "f", "", 0, 5, false);
        let err = v.into_error();
        assert!(err.to_string().contains("b: is required"));
        assert!(err.to_string().contains("c: must be at most 5"));
        assert!(err.to_string().contains("d: must not contain control"));
        assert!(!err.to_string().contains("e:") && !err.to_string().contains("f:"));
    }

    #[test]
    fn times_and_masks() {
        let mut v = Violations::new();
        assert!(time(&mut v, "t", None, false).is_none());
        assert!(v.is_empty());
        assert!(time(&mut v, "t", Some(&Timestamp { seconds: 1_800_000_000, nanos: 0 }), true).is_some());
        assert!(time(&mut v, "t", Some(&Timestamp { seconds: 0, nanos: -1 }), true).is_none());
        assert!(time(&mut v, "t", Some(&Timestamp { seconds: i64::MAX, nanos: 0 }), true).is_none());
        assert!(!v.is_empty());
        let mut v = Violations::new();
        mask(&mut v, Some(&FieldMask { paths: vec!["title".into()] }), &["title", "body"]);
        assert!(v.is_empty());
        mask(&mut v, None, &["title"]);
        mask(&mut v, Some(&FieldMask { paths: vec!["nope".into()] }), &["title"]);
        assert_eq!(v.into_error().to_string().matches("update_mask").count(), 2);
    }
}
