//! The SNS market (DOMAIN §3 products, issue 16): `maru.v1.ProductService`
//! (`proto/maru/v1/market.proto`, `docs/market.md`). Products belong to their seller and are
//! listed deployment-wide.
//!
//! Invariants, decided by the database: one like per user and product (primary key of
//! `product_likes`), like counts equal to the like rows of live accounts (a counter kept by
//! triggers in the same transaction), a name of 2–15 characters and a price
//! ≥ 0 (check constraints behind the request validation), edits conditional on the version named
//! by the etag (ABORTED `ETAG_MISMATCH` otherwise), the infinite scroll a keyset on
//! (created_at, id). Views are counted by the platform's [`crate::views`] (target prefix
//! `product:`). A SUSPENDED product is seen by its seller and admins only ([`model::sees`] and
//! its SQL twin `store::VISIBLE`). Who may do what is in [`ops`]; the recommendation ranking
//! is `store::rank` (docs/market.md#recommendations).
//!
//! Public API (what other domains may use; `tests/layering.rs` checks it): [`views`] (products
//! as a counted target, for the flush job), [`moderation`] (for `crate::reports`),
//! [`register_metrics`] and [`add_services`].

pub mod cache;
pub mod config;
pub mod convert;
pub mod model;
/// Public API: what moderation (`crate::reports`) needs of products.
pub mod moderation;
pub mod ops;
pub mod service;
pub mod store;
/// Public API: products as a counted target of [`crate::views`] — the flush job passes it.
pub mod views;

use crate::grpc::pb;
use crate::services::{RoutesBuilder, add_service};
use crate::state::AppState;

/// Describes the market metrics and registers the counters at zero (docs/market.md#metrics).
pub fn register_metrics() {
    use metrics::describe_counter;
    for (name, help) in [
        ("maru_products_created_total", "Products created (request_id replays excluded)."),
        ("maru_product_likes_total", "Likes on products that created a row."),
        ("maru_product_views_counted_total", "Product views counted (a viewer's first of the day)."),
        ("maru_product_views_dropped_total", "Product views not counted because Redis was unavailable."),
        ("maru_product_views_flushed_total", "Product views added to PostgreSQL by flushes."),
    ] {
        describe_counter!(name, help);
        metrics::counter!(name).increment(0);
    }
    describe_counter!(
        "maru_product_recommendations_total",
        "Products recommended, by the source that ranked them (tags, co_likes, tags_and_co_likes, newest)."
    );
    for source in ["tags", "co_likes", "tags_and_co_likes", "newest"] {
        metrics::counter!("maru_product_recommendations_total", "source" => source).increment(0);
    }
}

/// Puts `ProductService` on the server.
pub fn add_services(routes: &mut RoutesBuilder, state: &AppState) {
    // Readers of a product see its image (GetMedia).
    crate::media::attach::register_reader(crate::media::attach::Kind::Product, ops::sees_product);
    add_service!(
        routes,
        state,
        pb::product_service_server::ProductServiceServer::new(service::ProductApi { state: state.clone() })
    );
}
