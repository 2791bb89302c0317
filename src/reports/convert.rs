//! Protobuf ⇄ model conversions for reports. Requests become commands or every bad field is
//! reported at once.

use chrono::{DateTime, Duration, Utc};

use super::model::{
    Action, CreateReport, MAX_DETAILS_CHARS, MAX_NOTE_CHARS, ModerationAction, Report, ReportFilter, ReportReason,
    ReportState, ReportStats, ReportedTarget, ResolveReport, ResolveTarget, TargetRef, TargetType,
};
use crate::accounts::Handle;
use crate::error::{AppError, AppResult, Violations};
use crate::fields::{enum_value, opt_id, request_id, text, time, timestamp};
use crate::grpc::pb;

fn target_type_from_pb(t: pb::ReportTargetType) -> Option<TargetType> {
    match t {
        pb::ReportTargetType::Unspecified => None,
        pb::ReportTargetType::User => Some(TargetType::User),
        pb::ReportTargetType::Post => Some(TargetType::Post),
        pb::ReportTargetType::Comment => Some(TargetType::Comment),
        pb::ReportTargetType::Product => Some(TargetType::Product),
        pb::ReportTargetType::ChatMessage => Some(TargetType::ChatMessage),
    }
}

fn target_type_to_pb(s: &str) -> pb::ReportTargetType {
    match TargetType::from_db(s) {
        Some(TargetType::User) => pb::ReportTargetType::User,
        Some(TargetType::Post) => pb::ReportTargetType::Post,
        Some(TargetType::Comment) => pb::ReportTargetType::Comment,
        Some(TargetType::Product) => pb::ReportTargetType::Product,
        Some(TargetType::ChatMessage) => pb::ReportTargetType::ChatMessage,
        None => pb::ReportTargetType::Unspecified,
    }
}

fn reason_from_pb(r: pb::ReportReason) -> Option<ReportReason> {
    match r {
        pb::ReportReason::Unspecified => None,
        pb::ReportReason::Spam => Some(ReportReason::Spam),
        pb::ReportReason::Abuse => Some(ReportReason::Abuse),
        pb::ReportReason::Sexual => Some(ReportReason::Sexual),
        pb::ReportReason::Illegal => Some(ReportReason::Illegal),
        pb::ReportReason::Fraud => Some(ReportReason::Fraud),
        pb::ReportReason::Other => Some(ReportReason::Other),
    }
}

fn reason_to_pb(s: &str) -> pb::ReportReason {
    pb::ReportReason::from_str_name(&format!("REPORT_REASON_{s}")).unwrap_or(pb::ReportReason::Unspecified)
}

fn state_from_pb(s: pb::ReportState) -> Option<ReportState> {
    match s {
        pb::ReportState::Unspecified => None,
        pb::ReportState::Open => Some(ReportState::Open),
        pb::ReportState::Dismissed => Some(ReportState::Dismissed),
        pb::ReportState::Actioned => Some(ReportState::Actioned),
    }
}

fn state_to_pb(s: &str) -> pb::ReportState {
    pb::ReportState::from_str_name(&format!("REPORT_STATE_{s}")).unwrap_or(pb::ReportState::Unspecified)
}

fn action_to_pb(s: &str) -> pb::ModerationActionType {
    pb::ModerationActionType::from_str_name(&format!("MODERATION_ACTION_TYPE_{s}"))
        .unwrap_or(pb::ModerationActionType::Unspecified)
}

/// Exactly one of the target's fields.
fn target_ref(v: &mut Violations, t: Option<&pb::ReportTarget>) -> Option<TargetRef> {
    let Some(t) = t else {
        v.add(
            "target",
            "is required: set exactly one of user_handle, post_id, comment_id, product_id, chat_message_id",
        );
        return None;
    };
    let mut set = Vec::new();
    if !t.user_handle.trim().is_empty()
        && let Some(h) = v.check("target.user_handle", Handle::parse(&t.user_handle))
    {
        set.push(TargetRef::User(h.as_str().to_owned()));
    }
    for (field, raw, make) in [
        ("target.post_id", &t.post_id, TargetRef::Post as fn(_) -> _),
        ("target.comment_id", &t.comment_id, TargetRef::Comment),
        ("target.product_id", &t.product_id, TargetRef::Product),
        ("target.chat_message_id", &t.chat_message_id, TargetRef::ChatMessage),
    ] {
        if let Some(id) = opt_id(v, field, raw) {
            set.push(make(id));
        }
    }
    match set.len() {
        1 => set.pop(),
        0 => {
            if v.is_empty() {
                v.add("target", "set exactly one of user_handle, post_id, comment_id, product_id, chat_message_id");
            }
            None
        }
        _ => {
            v.add("target", "set exactly one of user_handle, post_id, comment_id, product_id, chat_message_id");
            None
        }
    }
}

impl TryFrom<pb::CreateReportRequest> for CreateReport {
    type Error = AppError;
    fn try_from(r: pb::CreateReportRequest) -> Result<Self, AppError> {
        let mut v = Violations::new();
        let target = target_ref(&mut v, r.target.as_ref());
        let reason =
            v.check("reason", enum_value::<pb::ReportReason>(r.reason, "report reason")).and_then(reason_from_pb);
        if reason.is_none() && r.reason == 0 {
            v.add("reason", "is required: SPAM, ABUSE, SEXUAL, ILLEGAL, FRAUD or OTHER");
        }
        let details = text(&mut v, "details", &r.details, 0, MAX_DETAILS_CHARS, true);
        let request_id = request_id(&mut v, &r.request_id);
        v.finish()?;
        match (target, reason) {
            (Some(target), Some(reason)) => Ok(CreateReport { target, reason, details, request_id }),
            _ => Err(AppError::invalid("target", "is required")),
        }
    }
}

impl TryFrom<&pb::ListReportsRequest> for ReportFilter {
    type Error = AppError;
    fn try_from(r: &pb::ListReportsRequest) -> Result<Self, AppError> {
        let mut v = Violations::new();
        let state = v.check("state", enum_value::<pb::ReportState>(r.state, "report state")).and_then(state_from_pb);
        let target_type = v
            .check("target_type", enum_value::<pb::ReportTargetType>(r.target_type, "target type"))
            .and_then(target_type_from_pb);
        let reason =
            v.check("reason", enum_value::<pb::ReportReason>(r.reason, "report reason")).and_then(reason_from_pb);
        v.finish()?;
        Ok(ReportFilter { state: state.unwrap_or(ReportState::Open), target_type, reason })
    }
}

impl TryFrom<pb::ResolveReportRequest> for ResolveReport {
    type Error = AppError;
    fn try_from(r: pb::ResolveReportRequest) -> Result<Self, AppError> {
        let mut v = Violations::new();
        let report = opt_id(&mut v, "report_id", &r.report_id);
        let kind = v
            .check("target_type", enum_value::<pb::ReportTargetType>(r.target_type, "target type"))
            .and_then(target_type_from_pb);
        let target_id = opt_id(&mut v, "target_id", &r.target_id);
        let target = match (report, kind, target_id) {
            (Some(id), None, None) => Some(ResolveTarget::Report(id)),
            (None, Some(k), Some(id)) => Some(ResolveTarget::Target(k, id)),
            _ => {
                v.add("report_id", "name a report_id, or a target_type with a target_id (not both)");
                None
            }
        };
        let action = match v.check("action", enum_value::<pb::ModerationActionType>(r.action, "moderation action")) {
            Some(pb::ModerationActionType::Dismiss) => Some(Action::Dismiss),
            Some(pb::ModerationActionType::SuspendTarget) => Some(Action::SuspendTarget),
            Some(pb::ModerationActionType::WarnUser) => Some(Action::WarnUser),
            Some(pb::ModerationActionType::SuspendUser) => Some(Action::SuspendUser),
            Some(_) => {
                v.add("action", "must be DISMISS, SUSPEND_TARGET, WARN_USER or SUSPEND_USER");
                None
            }
            None => None,
        };
        let note = text(&mut v, "note", &r.note, 0, MAX_NOTE_CHARS, true);
        v.finish()?;
        match (target, action) {
            (Some(target), Some(action)) => Ok(ResolveReport { target, action, note }),
            _ => Err(AppError::invalid("action", "is required")),
        }
    }
}

/// The handle and note of ReinstateUser.
pub fn reinstatement(r: &pb::ReinstateUserRequest) -> AppResult<(String, String)> {
    let mut v = Violations::new();
    let handle = v.check("handle", Handle::parse(&r.handle)).map(|h| h.as_str().to_owned());
    let note = text(&mut v, "note", &r.note, 0, MAX_NOTE_CHARS, true);
    v.finish()?;
    Ok((handle.unwrap_or_default(), note))
}

/// `since` of GetReportStats: default 30 days ago.
pub fn stats_since(r: &pb::GetReportStatsRequest) -> AppResult<DateTime<Utc>> {
    let mut v = Violations::new();
    let since = time(&mut v, "since", r.since.as_ref(), false);
    v.finish()?;
    Ok(since.unwrap_or_else(|| Utc::now() - Duration::days(30)))
}

pub fn report_to_pb(r: Report) -> pb::Report {
    pb::Report {
        id: r.id.to_string(),
        target_type: target_type_to_pb(&r.target_type) as i32,
        target_id: r.target_id.to_string(),
        reason: reason_to_pb(&r.reason) as i32,
        details: r.details,
        state: state_to_pb(&r.state) as i32,
        created_at: Some(timestamp(r.created_at)),
        resolved_at: r.resolved_at.map(timestamp),
    }
}

pub fn reported_target_to_pb(t: ReportedTarget, reports: Vec<Report>) -> pb::ReportedTarget {
    pb::ReportedTarget {
        target_type: target_type_to_pb(&t.target_type) as i32,
        target_id: t.target_id.to_string(),
        owner_id: t.owner_id.map(|o| o.to_string()).unwrap_or_default(),
        report_count: t.report_count,
        reasons: t.reasons.iter().map(|r| reason_to_pb(r) as i32).collect(),
        first_reported_at: Some(timestamp(t.first_reported_at)),
        last_reported_at: Some(timestamp(t.last_reported_at)),
        auto_hidden: t.auto_hidden,
        reports: reports.into_iter().map(report_to_pb).collect(),
    }
}

pub fn action_to_pb_msg(a: ModerationAction) -> pb::ModerationAction {
    pb::ModerationAction {
        id: a.id.to_string(),
        actor_id: a.actor_id.map(|x| x.to_string()).unwrap_or_default(),
        action: action_to_pb(&a.action) as i32,
        target_type: target_type_to_pb(&a.target_type) as i32,
        target_id: a.target_id.to_string(),
        owner_id: a.owner_id.map(|x| x.to_string()).unwrap_or_default(),
        note: a.note,
        reports: a.reports,
        created_at: Some(timestamp(a.created_at)),
    }
}

pub fn stats_to_pb(s: ReportStats) -> pb::GetReportStatsResponse {
    let counts = |v: Vec<(String, i64)>| v.into_iter().map(|(key, count)| pb::ReportCount { key, count }).collect();
    pb::GetReportStatsResponse {
        by_reason: counts(s.by_reason),
        by_state: counts(s.by_state),
        by_target_type: counts(s.by_target_type),
        median_seconds_to_resolve: s.median_seconds_to_resolve,
        total: s.total,
    }
}
