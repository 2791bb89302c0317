//! Posts, comments and likes: rows, commands and the rules of their fields.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::idempotency::RequestId;

pub const MAX_POST_CHARS: usize = 5_000;
pub const MAX_COMMENT_CHARS: usize = 2_000;
pub const MAX_TAGS: usize = 10;
pub const MAX_TAG_CHARS: usize = 30;
pub const MAX_IMAGES: usize = 10;
pub const MIN_QUERY_CHARS: usize = 2;
pub const MAX_QUERY_CHARS: usize = 100;

/// Moderation status of a post.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PostStatus {
    Published,
    Suspended,
}

impl PostStatus {
    pub fn as_db(self) -> &'static str {
        match self {
            PostStatus::Published => "PUBLISHED",
            PostStatus::Suspended => "SUSPENDED",
        }
    }
    pub fn from_db(s: &str) -> Self {
        if s == "SUSPENDED" { PostStatus::Suspended } else { PostStatus::Published }
    }
}

/// A post as stored, with its author and counts; the same for every viewer (cacheable).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Post {
    pub id: Uuid,
    pub community_id: Option<Uuid>,
    pub author_id: Uuid,
    pub author_handle: String,
    pub author_display_name: String,
    pub author_image_url: String,
    pub text: String,
    pub tags: Vec<String>,
    pub image_urls: Vec<String>,
    pub status: String,
    pub view_count: i64,
    pub like_count: i64,
    pub comment_count: i64,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Post {
    pub fn status(&self) -> PostStatus {
        PostStatus::from_db(&self.status)
    }
    /// The etag clients send back with UpdatePost.
    pub fn etag(&self) -> String {
        format!("v{}", self.version)
    }
}

/// A post for one viewer.
#[derive(Debug, Clone, PartialEq)]
pub struct PostView {
    pub post: Post,
    pub liked_by_me: bool,
}

/// A comment or reply with its author and counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Comment {
    pub id: Uuid,
    pub post_id: Uuid,
    pub parent_id: Option<Uuid>,
    pub author_id: Uuid,
    pub author_handle: String,
    pub author_display_name: String,
    pub author_image_url: String,
    pub text: String,
    pub like_count: i64,
    pub reply_count: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CommentView {
    pub comment: Comment,
    pub liked_by_me: bool,
}

/// Who liked something, and when.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Liker {
    pub user_id: Uuid,
    pub handle: String,
    pub display_name: String,
    pub image_url: String,
    pub liked_at: DateTime<Utc>,
}

#[derive(Debug, Serialize)]
pub struct CreatePost {
    pub community_id: Option<Uuid>,
    pub text: String,
    pub tags: Vec<String>,
    pub image_urls: Vec<String>,
    #[serde(skip)]
    pub request_id: Option<RequestId>,
}

#[derive(Debug, Default, PartialEq)]
pub struct PostPatch {
    pub text: Option<String>,
    pub tags: Option<Vec<String>>,
    pub image_urls: Option<Vec<String>>,
}

#[derive(Debug)]
pub struct UpdatePost {
    pub post_id: Uuid,
    pub patch: PostPatch,
    /// The version the client read (`None`: no check).
    pub expected_version: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct CreateComment {
    pub post_id: Uuid,
    pub parent_id: Option<Uuid>,
    pub text: String,
    #[serde(skip)]
    pub request_id: Option<RequestId>,
}

/// What a like names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Target {
    Post(Uuid),
    Comment(Uuid),
}

/// The one filter of ListPosts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum PostFilter {
    Community(Uuid),
    Author(String),
    Tag(String),
    Query(String),
}

/// A tag: trimmed, a leading '#' dropped, lower case, 1–30 characters without spaces.
pub fn parse_tag(raw: &str) -> Result<String, String> {
    let t = raw.trim();
    let t = t.strip_prefix('#').unwrap_or(t).to_lowercase();
    let n = t.chars().count();
    if n == 0 {
        return Err("must not be empty".into());
    }
    if n > MAX_TAG_CHARS {
        return Err(format!("must be at most {MAX_TAG_CHARS} characters"));
    }
    if t.chars().any(|c| c.is_whitespace() || c.is_control() || c == '#') {
        return Err("must not contain spaces, control characters or '#'".into());
    }
    Ok(t)
}

/// Up to [`MAX_TAGS`] tags, deduplicated in order.
pub fn parse_tags(raw: &[String]) -> Result<Vec<String>, String> {
    if raw.len() > MAX_TAGS {
        return Err(format!("at most {MAX_TAGS} tags"));
    }
    let mut out: Vec<String> = Vec::new();
    for (i, t) in raw.iter().enumerate() {
        let t = parse_tag(t).map_err(|e| format!("tag {}: {e}", i + 1))?;
        if !out.contains(&t) {
            out.push(t);
        }
    }
    Ok(out)
}

/// Up to [`MAX_IMAGES`] http(s) URLs.
pub fn parse_image_urls(raw: &[String]) -> Result<Vec<String>, String> {
    if raw.len() > MAX_IMAGES {
        return Err(format!("at most {MAX_IMAGES} images"));
    }
    raw.iter()
        .enumerate()
        .map(|(i, u)| match crate::fields::parse_url(u) {
            Ok(u) if !u.is_empty() => Ok(u),
            Ok(_) => Err(format!("image {}: must not be empty", i + 1)),
            Err(e) => Err(format!("image {}: {e}", i + 1)),
        })
        .collect()
}

/// A search query of 2–100 characters.
pub fn parse_query(raw: &str) -> Result<String, String> {
    crate::fields::parse_text(raw, MIN_QUERY_CHARS, MAX_QUERY_CHARS, false)
}

/// An etag as [`Post::etag`] makes it; empty = none.
pub fn parse_etag(raw: &str) -> Result<Option<i64>, String> {
    let e = raw.trim().trim_matches('"');
    if e.is_empty() {
        return Ok(None);
    }
    e.strip_prefix('v').and_then(|n| n.parse::<i64>().ok()).map(Some).ok_or_else(|| "is not an etag of a post".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags() {
        assert_eq!(parse_tag(" #맛집 ").unwrap(), "맛집");
        assert_eq!(parse_tag("Rust").unwrap(), "rust");
        assert!(parse_tag("#").is_err());
        assert!(parse_tag("two words").is_err());
        assert!(parse_tag(&"가".repeat(31)).is_err());
        assert_eq!(parse_tags(&["a".into(), "A".into(), "b".into()]).unwrap(), ["a", "b"]);
        assert!(parse_tags(&vec!["a".to_string(); 11]).is_err());
    }

    #[test]
    fn queries_and_etags() {
        assert!(parse_query("판").is_err());
        assert_eq!(parse_query(" 판교 ").unwrap(), "판교");
        assert!(parse_query(&"가".repeat(101)).is_err());
        assert_eq!(parse_etag("").unwrap(), None);
        assert_eq!(parse_etag("v3").unwrap(), Some(3));
        assert_eq!(parse_etag("\"v3\"").unwrap(), Some(3));
        assert!(parse_etag("3").is_err());
    }

    #[test]
    fn images() {
        assert!(parse_image_urls(&["https://img.example/a.jpg".into()]).is_ok());
        assert!(parse_image_urls(&["".into()]).is_err());
        assert!(parse_image_urls(&["file:///etc/passwd".into()]).is_err());
        assert!(parse_image_urls(&vec!["https://i.example/a".to_string(); 11]).is_err());
    }
}
