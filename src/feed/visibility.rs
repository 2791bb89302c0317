//! Who can see a post: the one rule, used by the use cases (`ops::check_visible`), the cached
//! community pages (filtered after paging) and every list read from the database ([`sql`]).
//!
//! - A post of a community: only APPROVED members of that community, and admins.
//! - A SUSPENDED post: only its author, and admins.
//! - Its author must be a live account: rows of deleted accounts are never read (`store`
//!   joins live users), so that part needs no check here.
//!
//! Anyone else gets NOT_FOUND `POST_NOT_FOUND`, so an id leaks nothing. The Rust rule
//! ([`sees`]) and its SQL twin ([`sql`]) sit side by side and a test checks that they agree on
//! every combination of reader and post (`store::tests::visibility_rule_and_sql_agree`).

use uuid::Uuid;

use super::model::{Comment, Post, PostStatus};
use crate::caller::Caller;

/// Who is reading: a user (`Uuid::nil()` when anonymous) and whether they are an admin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reader {
    pub user_id: Uuid,
    pub is_admin: bool,
}

impl Reader {
    /// Sees every post: community pages are cached as it reads them.
    pub const CANONICAL: Reader = Reader { user_id: Uuid::nil(), is_admin: true };

    pub fn of(caller: Option<&Caller>) -> Self {
        Reader { user_id: caller.map_or(Uuid::nil(), |c| c.user_id), is_admin: caller.is_some_and(|c| c.is_admin()) }
    }
}

/// The rule: whether `reader` sees `post`, `member` telling whether they are an APPROVED member
/// of the post's community (ignored for public posts).
pub fn sees(reader: Reader, post: &Post, member: bool) -> bool {
    let author = reader.user_id == post.author_id;
    let community = post.community_id.is_none() || member || reader.is_admin;
    let status = post.status() == PostStatus::Published || author || reader.is_admin;
    community && status
}

/// [`sees`] as an SQL condition over `posts p`, for the reader in the parameters named
/// `user` (uuid) and `admin` (boolean), e.g. `sql("$1", "$2")`.
pub fn sql(user: &str, admin: &str) -> String {
    format!(
        "((p.status = 'PUBLISHED' or p.author_id = {user} or {admin})
          and (p.community_id is null or {admin} or exists (
                select 1 from community_memberships m
                 where m.community_id = p.community_id and m.user_id = {user} and m.status = 'APPROVED')))"
    )
}

/// Whether `reader` sees `comment` (its post being visible to them): a comment hidden by
/// moderation only by its author and admins, like a SUSPENDED post. Its SQL twin is
/// `store::COMMENT_VISIBLE`.
pub fn sees_comment(reader: Reader, comment: &Comment) -> bool {
    !comment.suspended || reader.user_id == comment.author_id || reader.is_admin
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(community: bool, suspended: bool, author: Uuid) -> Post {
        let now = chrono::Utc::now();
        Post {
            id: Uuid::now_v7(),
            community_id: community.then(Uuid::now_v7),
            author_id: author,
            author_handle: "author".into(),
            author_display_name: "Author".into(),
            author_image_url: String::new(),
            text: "hello".into(),
            tags: vec![],
            image_urls: vec![],
            status: if suspended { "SUSPENDED" } else { "PUBLISHED" }.into(),
            view_count: 0,
            like_count: 0,
            comment_count: 0,
            version: 1,
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn the_rule() {
        let author = Uuid::now_v7();
        let someone = Reader { user_id: Uuid::now_v7(), is_admin: false };
        let writer = Reader { user_id: author, is_admin: false };
        let anonymous = Reader::of(None);
        let admin = Reader { user_id: Uuid::now_v7(), is_admin: true };
        // Public posts: everyone while published; the author and admins once suspended.
        assert!(sees(anonymous, &post(false, false, author), false));
        assert!(!sees(anonymous, &post(false, true, author), false));
        assert!(!sees(someone, &post(false, true, author), false));
        assert!(sees(writer, &post(false, true, author), false));
        assert!(sees(admin, &post(false, true, author), false));
        // Community posts: members and admins; suspended ones only the author (a member) and admins.
        assert!(!sees(someone, &post(true, false, author), false));
        assert!(sees(someone, &post(true, false, author), true));
        assert!(!sees(someone, &post(true, true, author), true));
        assert!(sees(writer, &post(true, true, author), true));
        assert!(!sees(writer, &post(true, false, author), false), "an author who left the community");
        assert!(sees(admin, &post(true, true, author), false));
        assert!(!sees(anonymous, &post(true, false, author), false));
    }
}
