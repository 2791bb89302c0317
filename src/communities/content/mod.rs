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

use tonic::Code;
use uuid::Uuid;

use crate::caller::Caller;
use crate::communities::access::{self, Access};
use crate::error::{AppError, AppResult, Reason};
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
