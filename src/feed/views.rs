//! Posts as a counted target of the platform's view counting ([`crate::views`]): how flushed
//! views reach `posts.view_count` and which cached details they invalidate.

use futures::future::BoxFuture;
use sqlx::PgConnection;
use uuid::Uuid;

use super::store;
use crate::error::AppResult;
use crate::state::AppState;
use crate::views::Target;

/// Posts' keys have no prefix: they predate other targets, so nothing pending was renamed.
pub const TARGET: Target = Target {
    prefix: "",
    counted_metric: "maru_post_views_counted_total",
    dropped_metric: "maru_post_views_dropped_total",
    flushed_metric: "maru_post_views_flushed_total",
    apply,
    flushed,
};

fn apply<'c>(conn: &'c mut PgConnection, ids: &'c [Uuid], counts: &'c [i64]) -> BoxFuture<'c, AppResult<()>> {
    Box::pin(store::add_post_views(conn, ids, counts))
}

fn flushed<'a>(state: &'a AppState, ids: &'a [Uuid]) -> BoxFuture<'a, ()> {
    Box::pin(super::cache::views_flushed(state, ids))
}
