//! The home screen (`ListMyCommunities`) in Redis, on top of [`crate::cache::Cache`].
//!
//! A user's entry (their memberships with each community and their own name as a member) is
//! keyed `my_communities:<user>` under two scopes: `communities:home:member:<user>` (bumped by
//! every write to that user's memberships and by their profile edits, which change the name the
//! entry shows) and `communities:home:communities` (bumped by every write that changes what a
//! community shows — a registry import that created or changed rows, any community edit — so
//! every entry moves at once, whoever the members are). The anonymous sample is one key,
//! invalidated by community creations and edits. Writers call these functions after their
//! transaction commits and before they return, from any process (the `maru import apartments`
//! CLI included): no read is stale once the write has returned (DOMAIN §1). Fills made with an
//! old version land under keys nobody reads again and expire with their TTL.
//!
//! The membership decision of reads ([`super::access::standing_cached`]: GetPost, the community
//! feed and everything else that asks whether a post is visible) is cached too: a user's standing
//! in one community (`standing:<community>:<user>`, the APPROVED role or none) under the same
//! member scope, so every write that moves a user's home entry moves their standings as well —
//! request, decision (one or in bulk), role change, leaving, removal, a guest's memberships
//! dropped — and so do account deletion, suspension and reinstatement and the deletion of
//! expired guests (whose memberships go with them). Communities are never deleted (the
//! foreign keys would cascade; there is no such operation): a standing for a community that does
//! not exist is not cached. The standing is read in the same script as its scope's version:
//! one Redis round trip, no database query on a hit.

use std::time::Duration;

use uuid::Uuid;

use crate::cache::Cache;

/// Cache name (label of the cache metrics) of users' standings in communities.
pub const STANDING_CACHE: &str = "standing";

/// Lifetime of a cached standing (every membership write of the user moves it before that).
pub const STANDING_TTL: Duration = Duration::from_secs(300);

/// Cache name (label of the cache metrics) of the home screen.
pub const MY_COMMUNITIES_CACHE: &str = "my_communities";

/// Bumped after a write that changes what communities show: moves every user's entry.
const COMMUNITIES_SCOPE: &str = "communities:home:communities";

fn member_scope(user_id: Uuid) -> String {
    format!("communities:home:member:{user_id}")
}

/// The key of a user's home entry, without its scope versions (see `Cache::scoped_key`).
pub fn home_base(user_id: Uuid) -> String {
    format!("my_communities:{user_id}")
}

/// The key of `user_id`'s standing in `community_id`, without its scope version.
pub fn standing_base(community_id: Uuid, user_id: Uuid) -> String {
    format!("standing:{community_id}:{user_id}")
}

/// The scope whose version a user's standings carry (the member scope of the home entry).
pub fn standing_scopes(user_id: Uuid) -> [String; 1] {
    [member_scope(user_id)]
}

/// The scopes whose versions a user's home entry carries.
pub fn home_scopes(user_id: Uuid) -> [String; 2] {
    [member_scope(user_id), COMMUNITIES_SCOPE.to_owned()]
}

/// Cache key of the anonymous home screen.
pub fn anonymous_sample_key() -> String {
    "my_communities:anonymous".to_owned()
}

/// After a committed write to these users' memberships (request, decision, role change,
/// leaving, removal), to what their membership shows of them (display name), or to their
/// accounts (deletion, suspension, reinstatement): their home entries and standings.
pub async fn members_changed(cache: &Cache, users: &[Uuid]) {
    let keys: Vec<String> = users.iter().map(|u| member_scope(*u)).collect();
    cache.invalidate(&keys).await;
}

/// After a committed write that changed what one or more existing communities show (name,
/// address, registry data): every user's entry and the anonymous sample.
pub async fn communities_changed(cache: &Cache) {
    cache.invalidate(&[COMMUNITIES_SCOPE.to_owned(), anonymous_sample_key()]).await;
}

/// After a community was created: the anonymous sample shows the newest communities.
pub async fn community_created(cache: &Cache) {
    cache.invalidate(&[anonymous_sample_key()]).await;
}
