//! Teams as a counted target of the platform's view counting ([`crate::views`]): GetTeam counts
//! a view once per viewer, team and day; flushes add them to `teams.view_count`.

use futures::future::BoxFuture;
use sqlx::PgConnection;
use uuid::Uuid;

use super::store;
use crate::error::AppResult;
use crate::state::AppState;
use crate::views::Target;

pub const TARGET: Target = Target {
    prefix: "team:",
    counted_metric: "maru_team_views_counted_total",
    dropped_metric: "maru_team_views_dropped_total",
    flushed_metric: "maru_team_views_flushed_total",
    apply,
    flushed,
};

fn apply<'c>(conn: &'c mut PgConnection, ids: &'c [Uuid], counts: &'c [i64]) -> BoxFuture<'c, AppResult<()>> {
    Box::pin(store::add_team_views(conn, ids, counts))
}

fn flushed<'a>(state: &'a AppState, ids: &'a [Uuid]) -> BoxFuture<'a, ()> {
    Box::pin(super::cache::views_flushed(state, ids))
}
