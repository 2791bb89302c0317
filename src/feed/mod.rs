//! The feed (DOMAIN §1 feed, §3 posts): `maru.v1.FeedService` (`proto/maru/v1/feed.proto`,
//! `docs/feed.md`). One post model serves both the apartment community feeds (members only)
//! and the public SNS.
//!
//! Invariants, decided by the database: one like per user and target (primary keys of
//! `post_likes` and `comment_likes`), like and comment counts counted from the rows, replies
//! one level deep (a reply's parent is always a top-level comment of the same post), edits
//! conditional on the version named by the etag (ABORTED `ETAG_MISMATCH` otherwise), view
//! counts applied once per flush batch ([`views`]). Who may do what is in [`ops`]; community
//! membership is decided by [`crate::communities::access`]. Caching and its invalidation are
//! in [`cache`].

pub mod cache;
pub mod convert;
pub mod model;
pub mod ops;
pub mod service;
pub mod store;
pub mod views;
