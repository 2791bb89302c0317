//! Posts, comments and likes: rows, commands and the rules of their fields.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::idempotency::RequestId;

pub const MAX_POST_CHARS: usize = 5_000;
pub const MAX_COMMENT_CHARS: usize = 2_000;
pub const MAX_TAGS: usize = 10;
pub const MAX_IMAGES: usize = 10;

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
    /// Hidden by moderation: seen by its author and admins only (`visibility::sees_comment`).
    pub suspended: bool,
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
    /// Attached in the same transaction (`crate::media::attach`).
    pub media_ids: Vec<Uuid>,
    #[serde(skip)]
    pub request_id: Option<RequestId>,
}

#[derive(Debug, Default, PartialEq)]
pub struct PostPatch {
    pub text: Option<String>,
    pub tags: Option<Vec<String>>,
    pub image_urls: Option<Vec<String>>,
    /// The post's media from now on (detaching the others).
    pub media_ids: Option<Vec<Uuid>>,
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

/// Up to [`MAX_IMAGES`] http(s) URLs.
pub fn parse_image_urls(raw: &[String]) -> Result<Vec<String>, String> {
    crate::fields::parse_urls(raw, MAX_IMAGES, "image")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images() {
        assert!(parse_image_urls(&["https://img.example/a.jpg".into()]).is_ok());
        assert!(parse_image_urls(&["".into()]).is_err());
        assert!(parse_image_urls(&["file:///etc/passwd".into()]).is_err());
        assert!(parse_image_urls(&vec!["https://i.example/a".to_string(); 11]).is_err());
    }
}
