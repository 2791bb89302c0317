//! Profiles and follows: value types and their rules.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::fields;

pub const MAX_BIO_CHARS: usize = 500;

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

/// The profile fields an update changes (`None` = unchanged).
#[derive(Debug, Default, PartialEq)]
pub struct ProfilePatch {
    pub display_name: Option<String>,
    pub bio: Option<String>,
    pub link1: Option<String>,
    pub link2: Option<String>,
    pub image_url: Option<String>,
}

/// At most [`MAX_BIO_CHARS`] characters; line breaks allowed, other control characters not.
pub fn parse_bio(raw: &str) -> Result<String, String> {
    fields::parse_text(raw, 0, MAX_BIO_CHARS, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bios() {
        assert_eq!(parse_bio(" 안녕하세요\n반갑습니다 ").unwrap(), "안녕하세요\n반갑습니다");
        assert!(parse_bio(&"가".repeat(MAX_BIO_CHARS)).is_ok());
        assert!(parse_bio(&"가".repeat(MAX_BIO_CHARS + 1)).is_err());
        assert!(parse_bio("a\u{0}b").is_err());
    }
}
