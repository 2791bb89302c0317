//! Products as a counted target of the platform's view counting ([`crate::views`]): GetProduct
//! counts a view once per viewer, product and day; flushes add them to `products.view_count`.
//! Product reads are not cached, so a flush invalidates nothing.

use futures::future::BoxFuture;
use sqlx::PgConnection;
use uuid::Uuid;

use super::store;
use crate::error::AppResult;
use crate::state::AppState;
use crate::views::Target;

pub const TARGET: Target = Target {
    prefix: "product:",
    counted_metric: "maru_product_views_counted_total",
    dropped_metric: "maru_product_views_dropped_total",
    flushed_metric: "maru_product_views_flushed_total",
    apply,
    flushed,
};

fn apply<'c>(conn: &'c mut PgConnection, ids: &'c [Uuid], counts: &'c [i64]) -> BoxFuture<'c, AppResult<()>> {
    Box::pin(store::add_product_views(conn, ids, counts))
}

fn flushed<'a>(_state: &'a AppState, _ids: &'a [Uuid]) -> BoxFuture<'a, ()> {
    Box::pin(async {})
}
