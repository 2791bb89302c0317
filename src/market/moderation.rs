//! What moderation (`crate::reports`) needs of the market: whose a product is, as the reporter
//! may see it, and the suspension of products inside the moderation's transaction (the status
//! SetProductStatus sets). Products are not cached: nothing to invalidate.

use sqlx::PgConnection;
use uuid::Uuid;

use super::model::ProductStatus;
use super::{ops, store};
use crate::caller::Caller;
use crate::error::AppResult;
use crate::state::AppState;

/// The seller of product `id`; NOT_FOUND `PRODUCT_NOT_FOUND` unless `caller` may see it.
pub async fn product_seller(state: &AppState, caller: &Caller, id: Uuid) -> AppResult<Uuid> {
    Ok(ops::visible_product(state, Some(caller), id).await?.seller_id)
}

/// Suspends product `id` in `conn`'s transaction; its status before (`None`: no such product).
pub async fn suspend_product(conn: &mut PgConnection, id: Uuid) -> AppResult<Option<String>> {
    let Some(p) = store::get_product(&mut *conn, id).await? else { return Ok(None) };
    store::set_product_status(&mut *conn, id, ProductStatus::Suspended).await?;
    Ok(Some(p.status))
}

/// Gives product `id` back the status `before` (as [`suspend_product`] returned it).
pub async fn restore_product(conn: &mut PgConnection, id: Uuid, before: &str) -> AppResult<()> {
    store::set_product_status(conn, id, ProductStatus::from_db(before)).await?;
    Ok(())
}
