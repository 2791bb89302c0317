//! Report and moderation use cases. Who may do what (admin = deployment ADMIN):
//!
//! | op | who |
//! |---|---|
//! | create_report | signed-in users, about a target they can see that is not theirs |
//! | list_reports, resolve_report, get_report_stats, list_moderation_actions | admins (the policy layer refuses others) |
//!
//! Decided by the database: one report per (reporter, target) (unique constraint → ALREADY_EXISTS
//! `ALREADY_REPORTED`); a target's open reports counted and resolved under the lock of its
//! `report_targets` row, so the auto-hide threshold is crossed exactly once and two resolutions
//! of one target cannot both win (the second finds no open report: `ALREADY_RESOLVED`).

use chrono::{DateTime, Utc};
use tonic::Code;
use uuid::Uuid;

use super::model::{
    Action, CreateReport, ModerationAction, Report, ReportFilter, ReportStats, ReportedTarget, ResolveReport,
    ResolveTarget, Target, TargetRef, TargetType,
};
use super::store::{self, ActionCursor, QueueCursor};
use crate::caller::Caller;
use crate::error::{AppError, AppResult, Reason};
use crate::idempotency::{remember, replayed};
use crate::state::AppState;
use crate::{chat, feed, market};

/// A target of the queue with its oldest reports.
pub type QueueEntry = (ReportedTarget, Vec<Report>);

fn report_not_found() -> AppError {
    AppError::not_found(Reason::ReportNotFound, "report")
}

/// The target a reporter names, if they can see it: its type, id and owner.
async fn resolve_target(state: &AppState, caller: &Caller, t: &TargetRef) -> AppResult<Target> {
    let (kind, id, owner) = match t {
        TargetRef::User(handle) => {
            let id = store::user_by_handle(&state.db, handle)
                .await?
                .ok_or_else(|| AppError::not_found(Reason::UserNotFound, "user"))?;
            (TargetType::User, id, id)
        }
        TargetRef::Post(id) => (TargetType::Post, *id, feed::moderation::post_author(state, caller, *id).await?),
        TargetRef::Comment(id) => {
            (TargetType::Comment, *id, feed::moderation::comment_author(state, caller, *id).await?)
        }
        TargetRef::Product(id) => {
            (TargetType::Product, *id, market::moderation::product_seller(state, caller, *id).await?)
        }
        TargetRef::ChatMessage(id) => {
            (TargetType::ChatMessage, *id, chat::moderation::message_author(state, caller, *id).await?)
        }
    };
    if owner == caller.user_id {
        return Err(AppError::refused(
            Code::InvalidArgument,
            Reason::CannotReportSelf,
            "you cannot report yourself or your own content",
        ));
    }
    Ok(Target { kind, id, owner })
}

/// What [`hide`] remembers of a user target: the account was live, or was already gone.
const USER_ACTIVE: &str = "ACTIVE";
const USER_GONE: &str = "GONE";

/// Hides `kind`/`id` in `conn`'s transaction: posts and products SUSPENDED, comments hidden,
/// users suspended (hidden like a deleted account, signed out). The state it had, for
/// [`unhide`]; `None` when the target no longer exists.
async fn hide(conn: &mut sqlx::PgConnection, kind: TargetType, id: Uuid) -> AppResult<Option<String>> {
    match kind {
        TargetType::Post => feed::moderation::suspend_post(conn, id).await,
        TargetType::Comment => feed::moderation::suspend_comment(conn, id).await,
        TargetType::Product => market::moderation::suspend_product(conn, id).await,
        TargetType::User => {
            Ok(Some(if store::suspend_user(conn, id).await? { USER_ACTIVE } else { USER_GONE }.to_owned()))
        }
        TargetType::ChatMessage => Ok(None),
    }
}

async fn unhide(conn: &mut sqlx::PgConnection, kind: TargetType, id: Uuid, before: &str) -> AppResult<()> {
    match kind {
        TargetType::Post => feed::moderation::restore_post(conn, id, before).await,
        TargetType::Comment => feed::moderation::restore_comment(conn, id, before).await,
        TargetType::Product => market::moderation::restore_product(conn, id, before).await,
        TargetType::User if before == USER_ACTIVE => store::reinstate_user_id(conn, id).await,
        TargetType::User | TargetType::ChatMessage => Ok(()),
    }
}

/// After a moderation transaction committed: caches of what it changed (`account`: a user it
/// suspended or reinstated), the queue gauges.
async fn moderated(state: &AppState, kind: TargetType, id: Uuid, account: Option<Uuid>) {
    match kind {
        TargetType::Post => feed::moderation::post_moderated(state, id).await,
        TargetType::Comment => feed::moderation::comment_moderated(state, id).await,
        _ => {}
    }
    if let Some(user) = account {
        account_changed(state, user).await;
    }
    // The job sets them again within its interval if this read fails.
    if let Err(e) = refresh_queue_gauges(state).await {
        tracing::debug!(error = %e, "report queue gauges not refreshed");
    }
}

/// The open queue as its gauges show it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueueGauges {
    /// `maru_reports_open`: open reports.
    pub open: i64,
    /// `maru_reports_oldest_open_age_seconds`: age of the oldest open report (0: none).
    pub oldest_age_seconds: f64,
}

impl QueueGauges {
    /// Sets the two gauges to these values.
    pub fn set(&self) {
        metrics::gauge!("maru_reports_open").set(self.open as f64);
        metrics::gauge!("maru_reports_oldest_open_age_seconds").set(self.oldest_age_seconds);
    }
}

/// Reads the open queue from the database and sets `maru_reports_open` and
/// `maru_reports_oldest_open_age_seconds`: after every report and resolution, and every
/// `reports.queue_gauge_interval_s` by `jobs::report_gauges` (so the age grows while nobody
/// touches the queue).
pub async fn refresh_queue_gauges(state: &AppState) -> AppResult<QueueGauges> {
    let (open, oldest) = store::queue_size_and_oldest(&state.db).await?;
    let oldest_age_seconds = oldest.map_or(0.0, |t| (Utc::now() - t).num_milliseconds().max(0) as f64 / 1e3);
    let g = QueueGauges { open, oldest_age_seconds };
    g.set();
    Ok(g)
}

#[tracing::instrument(name = "reports.create_report", skip_all, err(level = "debug"))]
pub async fn create_report(state: &AppState, caller: &Caller, cmd: CreateReport) -> AppResult<Report> {
    let target = resolve_target(state, caller, &cmd.target).await?;
    let threshold = i32::try_from(state.settings.reports.auto_hide_threshold).unwrap_or(i32::MAX);
    let mut tx = crate::db::begin(&state.db).await?;
    let (id, created, hidden) =
        match replayed::<Uuid>(state, &mut tx, "CreateReport", caller, cmd.request_id.as_ref(), &cmd).await? {
            Some(id) => (id, false, false),
            None => {
                let id = store::insert_report(&mut tx, caller.user_id, target, cmd.reason, &cmd.details).await?;
                let (open, hidden_already) = store::count_open_report(&mut tx, target.kind, target.id).await?;
                let mut hidden = false;
                if open >= threshold
                    && !hidden_already
                    && let Some(before) = hide(&mut tx, target.kind, target.id).await?
                {
                    store::mark_hidden(&mut tx, target.kind, target.id, &before).await?;
                    let note = format!("{open} distinct users reported it (auto-hide threshold {threshold})");
                    let action = Uuid::now_v7();
                    let (kind, tid, owner) = (target.kind, target.id, Some(target.owner));
                    store::insert_action(&mut tx, action, None, Action::AutoHide, kind, tid, owner, &note).await?;
                    hidden = true;
                }
                remember(&mut tx, "CreateReport", caller, cmd.request_id.as_ref(), &id).await?;
                (id, true, hidden)
            }
        };
    let report = store::get_report(&mut *tx, id).await?.ok_or_else(report_not_found)?;
    crate::db::commit(&state.db, tx).await?;
    if created {
        metrics::counter!("maru_reports_created_total", "reason" => cmd.reason.as_db()).increment(1);
        if hidden {
            metrics::counter!("maru_reports_auto_hidden_total").increment(1);
        }
        let account = (hidden && target.kind == TargetType::User).then_some(target.id);
        moderated(state, target.kind, target.id, account).await;
    }
    Ok(report)
}

#[tracing::instrument(name = "reports.list_reports", skip_all, err(level = "debug"))]
pub async fn list_reports(
    state: &AppState,
    caller: &Caller,
    filter: ReportFilter,
    page_size: i32,
    page_token: &str,
) -> AppResult<(Vec<QueueEntry>, String)> {
    caller.require_admin()?;
    let query = ("reports", &filter);
    let page = state.pager.page::<QueueCursor>(page_size, page_token, &query)?;
    let rows = store::list_targets(&state.db, &filter, page.after.clone(), page.fetch_limit()).await?;
    let (rows, next) =
        state.pager.finish(&page, rows, &query, |t| (t.first_reported_at, t.target_type.clone(), t.target_id));
    let ids: Vec<Uuid> = rows.iter().flat_map(|t| t.report_ids.iter().copied()).collect();
    let reports = store::get_reports(&state.db, &ids).await?;
    let out = rows
        .into_iter()
        .map(|t| {
            let mine = reports.iter().filter(|r| t.report_ids.contains(&r.id)).cloned().collect();
            (t, mine)
        })
        .collect();
    Ok((out, next))
}

#[tracing::instrument(name = "reports.resolve_report", skip_all, err(level = "debug"))]
pub async fn resolve_report(state: &AppState, caller: &Caller, cmd: ResolveReport) -> AppResult<ModerationAction> {
    caller.require_admin()?;
    let (kind, id) = match cmd.target {
        ResolveTarget::Report(r) => {
            let r = store::get_report(&state.db, r).await?.ok_or_else(report_not_found)?;
            (TargetType::from_db(&r.target_type).ok_or_else(report_not_found)?, r.target_id)
        }
        ResolveTarget::Target(k, i) => (k, i),
    };
    let already = || AppError::failed_precondition(Reason::AlreadyResolved, "the target has no open report");
    let mut tx = crate::db::begin(&state.db).await?;
    // The target's lock: concurrent resolutions (and reports) of it wait here, then see the
    // first one's outcome.
    let hidden_from = store::lock_target(&mut tx, kind, id).await?.ok_or_else(report_not_found)?;
    let owner = store::target_owner(&mut *tx, kind, id).await?;
    let action_id = Uuid::now_v7();
    store::insert_action(&mut tx, action_id, Some(caller.user_id), cmd.action, kind, id, owner, &cmd.note).await?;
    let resolved = store::resolve_reports(&mut tx, kind, id, cmd.action.resolved_state(), action_id).await?;
    if resolved == 0 {
        return Err(already());
    }
    // An account suspended or reinstated by this resolution: its caches go after the commit.
    let mut account = None;
    match cmd.action {
        Action::Dismiss => {
            if let Some(before) = &hidden_from {
                unhide(&mut tx, kind, id, before).await?;
                account = (kind == TargetType::User).then_some(id);
            }
        }
        Action::SuspendTarget => {
            if kind == TargetType::User {
                return Err(AppError::failed_precondition(
                    Reason::ReportActionUnsupported,
                    "SUSPEND_TARGET applies to posts, comments and products; for a user use SUSPEND_USER",
                ));
            }
            if hidden_from.is_none() && hide(&mut tx, kind, id).await?.is_none() {
                return Err(AppError::failed_precondition(
                    Reason::ReportActionUnsupported,
                    "the target no longer exists: nothing to suspend",
                ));
            }
        }
        Action::WarnUser => {}
        Action::SuspendUser => {
            let owner = owner.ok_or_else(|| AppError::not_found(Reason::UserNotFound, "user"))?;
            // A user the threshold hid is suspended already: the resolution confirms it.
            let hidden_user = kind == TargetType::User && hidden_from.is_some();
            if !store::suspend_user(&mut tx, owner).await? && !hidden_user {
                return Err(AppError::not_found(Reason::UserNotFound, "user"));
            }
            account = Some(owner);
        }
        Action::ReinstateUser | Action::AutoHide => {
            return Err(AppError::invalid("action", "must be DISMISS, SUSPEND_TARGET, WARN_USER or SUSPEND_USER"));
        }
    }
    store::clear_target(&mut tx, kind, id).await?;
    store::set_action_reports(&mut tx, action_id, resolved as i64).await?;
    let action = store::get_action(&mut *tx, action_id).await?.ok_or_else(report_not_found)?;
    crate::db::commit(&state.db, tx).await?;
    metrics::counter!("maru_reports_resolved_total", "action" => cmd.action.as_db()).increment(resolved);
    moderated(state, kind, id, account).await;
    Ok(action)
}

/// After a suspension or reinstatement committed: the cached account and session checks (its
/// access tokens stop, or may be issued again, at once), every cached profile (its own, and the
/// follow counts of others), every cached post and page that may show its content, and its
/// cached standings in communities.
async fn account_changed(state: &AppState, user: Uuid) {
    state.cache.invalidate(&[crate::accounts::user_cache_key(user)]).await;
    crate::sessions::sessions_changed(&state.cache, user).await;
    crate::social::accounts_shown_or_hidden(state).await;
    feed::authors_changed(state).await;
    crate::communities::cache::members_changed(&state.cache, &[user]).await;
}

/// Lifts the suspension of the account `handle` and logs it; NOT_FOUND `USER_NOT_FOUND` when no
/// suspended account has that handle.
#[tracing::instrument(name = "reports.reinstate_user", skip_all, err(level = "debug"))]
pub async fn reinstate_user(
    state: &AppState,
    caller: &Caller,
    handle: &str,
    note: &str,
) -> AppResult<ModerationAction> {
    caller.require_admin()?;
    let mut tx = crate::db::begin(&state.db).await?;
    let user = store::reinstate_user(&mut tx, handle)
        .await?
        .ok_or_else(|| AppError::not_found(Reason::UserNotFound, "suspended user"))?;
    let action_id = Uuid::now_v7();
    let (kind, owner) = (TargetType::User, Some(user));
    store::insert_action(&mut tx, action_id, Some(caller.user_id), Action::ReinstateUser, kind, user, owner, note)
        .await?;
    let action = store::get_action(&mut *tx, action_id).await?.ok_or_else(report_not_found)?;
    crate::db::commit(&state.db, tx).await?;
    account_changed(state, user).await;
    Ok(action)
}

#[tracing::instrument(name = "reports.get_report_stats", skip_all, err(level = "debug"))]
pub async fn get_report_stats(state: &AppState, caller: &Caller, since: DateTime<Utc>) -> AppResult<ReportStats> {
    caller.require_admin()?;
    store::stats(&state.db, since).await
}

#[tracing::instrument(name = "reports.list_moderation_actions", skip_all, err(level = "debug"))]
pub async fn list_moderation_actions(
    state: &AppState,
    caller: &Caller,
    page_size: i32,
    page_token: &str,
) -> AppResult<(Vec<ModerationAction>, String)> {
    caller.require_admin()?;
    let query = "moderation_actions";
    let page = state.pager.page::<ActionCursor>(page_size, page_token, &query)?;
    let rows = store::list_actions(&state.db, page.after, page.fetch_limit()).await?;
    Ok(state.pager.finish(&page, rows, &query, |a| (a.created_at, a.id)))
}
