//! Reports and moderation actions: rows, commands and the closed sets of their fields.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::db::db_enum;
use crate::idempotency::RequestId;

pub const MAX_DETAILS_CHARS: usize = 1_000;
pub const MAX_NOTE_CHARS: usize = 1_000;

db_enum!(TargetType {
    User => "USER",
    Post => "POST",
    Comment => "COMMENT",
    Product => "PRODUCT",
    ChatMessage => "CHAT_MESSAGE",
});

db_enum!(ReportReason {
    Spam => "SPAM",
    Abuse => "ABUSE",
    Sexual => "SEXUAL",
    Illegal => "ILLEGAL",
    Fraud => "FRAUD",
    Other => "OTHER",
});

db_enum!(ReportState {
    Open => "OPEN",
    Dismissed => "DISMISSED",
    Actioned => "ACTIONED",
});

db_enum!(Action {
    Dismiss => "DISMISS",
    SuspendTarget => "SUSPEND_TARGET",
    WarnUser => "WARN_USER",
    SuspendUser => "SUSPEND_USER",
    ReinstateUser => "REINSTATE_USER",
    AutoHide => "AUTO_HIDE",
});

impl Action {
    /// The state a resolution leaves its reports in.
    pub fn resolved_state(self) -> ReportState {
        if self == Action::Dismiss { ReportState::Dismissed } else { ReportState::Actioned }
    }
}

/// What a report names, as the request gave it (a user by handle).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum TargetRef {
    User(String),
    Post(Uuid),
    Comment(Uuid),
    Product(Uuid),
    ChatMessage(Uuid),
}

/// A resolved target: its type, id and the account it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub kind: TargetType,
    pub id: Uuid,
    pub owner: Uuid,
}

#[derive(Debug, Serialize)]
pub struct CreateReport {
    pub target: TargetRef,
    pub reason: ReportReason,
    pub details: String,
    #[serde(skip)]
    pub request_id: Option<RequestId>,
}

/// The target of a ResolveReport: one of its reports, or the target itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolveTarget {
    Report(Uuid),
    Target(TargetType, Uuid),
}

#[derive(Debug)]
pub struct ResolveReport {
    pub target: ResolveTarget,
    pub action: Action,
    pub note: String,
}

/// The filters of ListReports (and what its page tokens are bound to).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ReportFilter {
    pub state: ReportState,
    pub target_type: Option<TargetType>,
    pub reason: Option<ReportReason>,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Report {
    pub id: Uuid,
    pub target_type: String,
    pub target_id: Uuid,
    pub reason: String,
    pub details: String,
    pub state: String,
    pub created_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
}

/// A target of the queue with its reports in one state.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ReportedTarget {
    pub target_type: String,
    pub target_id: Uuid,
    pub owner_id: Option<Uuid>,
    pub report_count: i64,
    pub reasons: Vec<String>,
    pub first_reported_at: DateTime<Utc>,
    pub last_reported_at: DateTime<Utc>,
    pub auto_hidden: bool,
    pub report_ids: Vec<Uuid>,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ModerationAction {
    pub id: Uuid,
    pub actor_id: Option<Uuid>,
    pub action: String,
    pub target_type: String,
    pub target_id: Uuid,
    pub owner_id: Option<Uuid>,
    pub note: String,
    pub reports: i32,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReportStats {
    pub by_reason: Vec<(String, i64)>,
    pub by_state: Vec<(String, i64)>,
    pub by_target_type: Vec<(String, i64)>,
    pub median_seconds_to_resolve: f64,
    pub total: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_sets_round_trip() {
        for t in TargetType::ALL {
            assert_eq!(TargetType::from_db(t.as_db()), Some(*t));
        }
        for a in Action::ALL {
            assert_eq!(Action::from_db(a.as_db()), Some(*a));
        }
        assert_eq!(Action::Dismiss.resolved_state(), ReportState::Dismissed);
        assert_eq!(Action::WarnUser.resolved_state(), ReportState::Actioned);
        assert_eq!(ReportReason::from_db("NOPE"), None);
    }
}
