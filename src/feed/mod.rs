//! The feed (DOMAIN §1 feed, §3 posts): `maru.v1.FeedService` (`proto/maru/v1/feed.proto`,
//! `docs/feed.md`). One post model serves both the apartment community feeds (members only)
//! and the public SNS.
//!
//! Invariants, decided by the database: one like per user and target (primary keys of
//! `post_likes` and `comment_likes`), like and comment counts counted from the rows, replies
//! one level deep (a reply's parent is always a top-level comment of the same post), edits
//! conditional on the version named by the etag (ABORTED `ETAG_MISMATCH` otherwise), view
//! counts applied once per flush batch (the platform's [`crate::views`]; posts' target in [`views`]). Who may do what is in [`ops`]; community
//! membership is decided by [`crate::communities::access`]. Caching and its invalidation are
//! in [`cache`].
//!
//! Public API (what other domains may use; `tests/layering.rs` checks it): [`authors_changed`]
//! (the invalidation after a change to how authors are shown, e.g. a profile edit), [`views`]
//! (posts as a counted target, for the flush job), [`moderation`] (for `crate::reports`) and
//! [`add_services`].

pub mod cache;
pub mod config;
pub mod convert;
pub mod model;
/// Public API: what moderation (`crate::reports`) needs of posts and comments.
pub mod moderation;
pub mod ops;
pub mod service;
pub mod store;
/// Public API: posts as a counted target of [`crate::views`] — the flush job passes it.
pub mod views;
pub mod visibility;

use crate::grpc::pb;
use crate::services::{RoutesBuilder, add_service};
use crate::state::AppState;

// Public API (see the module docs).
pub use cache::authors_changed;

/// Describes the feed metrics and registers the counters at zero, so dashboards and rates have
/// series before the first event (docs/feed.md#metrics).
pub fn register_metrics() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    for (name, help) in [
        ("maru_posts_created_total", "Posts created (request_id replays excluded)."),
        ("maru_comments_created_total", "Comments and replies created."),
        ("maru_post_likes_total", "Likes on posts that created a row."),
        ("maru_comment_likes_total", "Likes on comments and replies that created a row."),
        ("maru_follows_total", "Follows that created a row."),
        ("maru_post_views_counted_total", "Post views counted (a viewer's first of the day)."),
        ("maru_post_views_dropped_total", "Post views not counted because Redis was unavailable."),
        ("maru_post_views_flushed_total", "Post views added to PostgreSQL by flushes."),
    ] {
        describe_counter!(name, help);
        metrics::counter!(name).increment(0);
    }
    describe_histogram!("maru_view_flush_seconds", Unit::Seconds, "Duration of a view flush run (posts and teams).");
    describe_histogram!("maru_view_batch_size", "Views per script call of the view batcher.");
    describe_gauge!("maru_view_queue_depth", "Views queued in this process, not yet sent to Redis.");
    metrics::gauge!("maru_view_queue_depth").set(0.0);
    describe_counter!(
        "maru_view_queue_fallbacks_total",
        "Views counted on the request path because the view queue was full."
    );
    metrics::counter!("maru_view_queue_fallbacks_total").increment(0);
    describe_gauge!(
        "maru_view_flush_last_success_timestamp_seconds",
        Unit::Seconds,
        "Unix time of the last view flush that reached Redis and PostgreSQL."
    );
}

/// Puts `FeedService` on the server.
pub fn add_services(routes: &mut RoutesBuilder, state: &AppState) {
    // Readers of a post see its photos (GetMedia).
    crate::media::attach::register_reader(crate::media::attach::Kind::Post, ops::sees_post);
    add_service!(
        routes,
        state,
        pb::feed_service_server::FeedServiceServer::new(service::FeedApi { state: state.clone() })
    );
}
