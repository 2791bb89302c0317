//! Profiles and follows: value types and their rules.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub const MAX_BIO_CHARS: usize = 500;
pub const MAX_URL_CHARS: usize = 2048;

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

/// An optional http(s) URL: empty is allowed (clears the field).
pub fn parse_url(raw: &str) -> Result<String, String> {
    let s = raw.trim();
    if s.is_empty() {
        return Ok(String::new());
    }
    if s.chars().count() > MAX_URL_CHARS {
        return Err(format!("must be at most {MAX_URL_CHARS} characters"));
    }
    match url::Url::parse(s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(s.to_owned()),
        _ => Err("must be an http(s) URL".into()),
    }
}

/// At most [`MAX_BIO_CHARS`] characters; line breaks allowed, other control characters not.
pub fn parse_bio(raw: &str) -> Result<String, String> {
    let s = raw.trim();
    if s.chars().count() > MAX_BIO_CHARS {
        return Err(format!("must be at most {MAX_BIO_CHARS} characters"));
    }
    if s.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
        return Err("must not contain control characters".into());
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(parse_url("").unwrap(), "");
        assert_eq!(parse_url(" https://maru.example/a ").unwrap(), "https://maru.example/a");
        assert!(parse_url("javascript:alert(1)").is_err());
        assert!(parse_url("ftp://x.example").is_err());
        assert!(parse_url("not a url").is_err());
        assert!(parse_url(&format!("https://x.example/{}", "a".repeat(MAX_URL_CHARS))).is_err());
    }

    #[test]
    fn bios() {
        assert_eq!(parse_bio(" 안녕하세요\n반갑습니다 ").unwrap(), "안녕하세요\n반갑습니다");
        assert!(parse_bio(&"가".repeat(MAX_BIO_CHARS)).is_ok());
        assert!(parse_bio(&"가".repeat(MAX_BIO_CHARS + 1)).is_err());
        assert!(parse_bio("a\u{0}b").is_err());
    }
}
