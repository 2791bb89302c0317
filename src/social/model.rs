//! Profiles and follows: value types and their rules.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::fields;

pub const MAX_BIO_CHARS: usize = 500;
/// Developer profile: at most this many tech tags ([`fields::parse_tags`]) …
pub const MAX_TECH_TAGS: usize = 20;
/// … and links ([`fields::parse_urls`]).
pub const MAX_LINKS: usize = 5;

/// A live account's public profile with its follow counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Profile {
    pub user_id: Uuid,
    pub handle: String,
    pub display_name: String,
    pub bio: String,
    pub link1: String,
    pub link2: String,
    pub image_url: String,
    pub follower_count: i64,
    pub following_count: i64,
    pub followed_by_me: bool,
    pub created_at: DateTime<Utc>,
    /// Developer position as stored (`BACKEND` …), empty when not set.
    pub position: String,
    pub tech_tags: Vec<String>,
    pub links: Vec<String>,
    /// Bumped by every update; the etag is `v<version>`.
    pub version: i64,
    /// Whether this user follows the reader (cached as `false`: decided per reader).
    pub follows_me: bool,
}

impl Profile {
    /// The etag clients send back with UpdateProfile.
    pub fn etag(&self) -> String {
        format!("v{}", self.version)
    }
}

/// One entry of a follower or following list.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ProfileSummary {
    pub user_id: Uuid,
    pub handle: String,
    pub display_name: String,
    pub image_url: String,
    pub followed_at: DateTime<Utc>,
}

/// One result of a people search.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ProfileCard {
    pub user_id: Uuid,
    pub handle: String,
    pub display_name: String,
    pub image_url: String,
    pub bio: String,
    pub position: String,
    pub tech_tags: Vec<String>,
    pub created_at: DateTime<Utc>,
}

/// SearchProfiles, validated: at least one of the three (also what its page tokens are bound to).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ProfileSearch {
    /// 2–100 characters ([`fields::parse_query`]).
    pub query: Option<String>,
    /// A position as stored (`BACKEND` …).
    pub position: Option<String>,
    /// A normalised tag ([`fields::parse_tag`]).
    pub tech_tag: Option<String>,
}

/// The profile fields an update changes (`None` = unchanged).
#[derive(Debug, Default, PartialEq)]
pub struct ProfilePatch {
    pub display_name: Option<String>,
    pub bio: Option<String>,
    pub link1: Option<String>,
    pub link2: Option<String>,
    pub image_url: Option<String>,
    pub position: Option<String>,
    pub tech_tags: Option<Vec<String>>,
    pub links: Option<Vec<String>>,
    /// The profile picture from now on (empty: none), attached in the same transaction
    /// (`crate::media::attach`).
    pub media_ids: Option<Vec<Uuid>>,
    /// From the request's etag: apply only if the profile is still at this version.
    pub expected_version: Option<i64>,
}

/// At most [`MAX_BIO_CHARS`] characters; line breaks allowed, other control characters not.
pub fn parse_bio(raw: &str) -> Result<String, String> {
    fields::parse_text(raw, 0, MAX_BIO_CHARS, true)
}

/// Up to [`MAX_TECH_TAGS`] tags, normalised.
pub fn parse_tech_tags(raw: &[String]) -> Result<Vec<String>, String> {
    fields::parse_tags(raw, MAX_TECH_TAGS)
}

/// Up to [`MAX_LINKS`] http(s) links, none empty.
pub fn parse_links(raw: &[String]) -> Result<Vec<String>, String> {
    fields::parse_urls(raw, MAX_LINKS, "link")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn developer_fields() {
        assert_eq!(
            parse_tech_tags(&["#Rust".into(), "rust".into(), "쿠버네티스".into()]).unwrap(),
            ["rust", "쿠버네티스"]
        );
        assert!(parse_tech_tags(&vec!["a".to_string(); MAX_TECH_TAGS + 1]).is_err());
        assert!(parse_tech_tags(&["two words".into()]).is_err());
        assert!(parse_links(&vec!["https://github.com/a".to_string(); MAX_LINKS]).is_ok());
        assert!(parse_links(&vec!["https://github.com/a".to_string(); MAX_LINKS + 1]).is_err());
        assert!(parse_links(&["javascript:alert(1)".into()]).is_err());
    }

    #[test]
    fn bios() {
        assert_eq!(parse_bio(" 안녕하세요\n반갑습니다 ").unwrap(), "안녕하세요\n반갑습니다");
        assert!(parse_bio(&"가".repeat(MAX_BIO_CHARS)).is_ok());
        assert!(parse_bio(&"가".repeat(MAX_BIO_CHARS + 1)).is_err());
        assert!(parse_bio("a\u{0}b").is_err());
    }
}
