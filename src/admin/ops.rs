//! Admin use cases.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::accounts::{self, User, UserFilter};
use crate::caller::Caller;
use crate::error::AppResult;
use crate::state::AppState;

/// Users newest first; the page token is bound to `filter`.
#[tracing::instrument(name = "admin.list_users", skip_all, err(level = "debug"))]
pub async fn list_users(
    state: &AppState,
    caller: &Caller,
    filter: UserFilter,
    page_size: i32,
    page_token: &str,
) -> AppResult<(Vec<User>, String)> {
    caller.require_admin()?;
    let page = state.pager.page::<(DateTime<Utc>, Uuid)>(page_size, page_token, &filter)?;
    let rows = accounts::list_users(state, &filter, page.after, page.fetch_limit()).await?;
    Ok(state.pager.finish(&page, rows, &filter, |u| (u.created_at, u.id)))
}
