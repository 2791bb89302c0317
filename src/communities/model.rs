//! Communities and memberships: ids, validated values, commands and rows. No tonic, no SQL.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::fields;
use crate::idempotency::RequestId;

pub const MAX_NAME_CHARS: usize = 100;
pub const MAX_ADDRESS_CHARS: usize = 200;
pub const MAX_NOTE_CHARS: usize = 500;
pub const MAX_DWELLING_CHARS: usize = 20;
/// Communities an anonymous caller sees on the home screen.
pub const ANONYMOUS_SAMPLE: i64 = 10;
/// Most memberships of one user kept in the home-screen cache entry.
pub const MAX_MY_COMMUNITIES: i64 = 1000;

/// A member's role inside one community.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum MemberRole {
    Member,
    Manager,
}

impl MemberRole {
    pub fn as_db(self) -> &'static str {
        match self {
            MemberRole::Member => "MEMBER",
            MemberRole::Manager => "MANAGER",
        }
    }
    pub fn from_db(s: &str) -> Option<Self> {
        match s {
            "MEMBER" => Some(MemberRole::Member),
            "MANAGER" => Some(MemberRole::Manager),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Kind {
    Apartment,
    Club,
    SportsClub,
}

impl Kind {
    pub fn as_db(self) -> &'static str {
        match self {
            Kind::Apartment => "APARTMENT",
            Kind::Club => "CLUB",
            Kind::SportsClub => "SPORTS_CLUB",
        }
    }
    pub fn from_db(s: &str) -> Option<Self> {
        match s {
            "APARTMENT" => Some(Kind::Apartment),
            "CLUB" => Some(Kind::Club),
            "SPORTS_CLUB" => Some(Kind::SportsClub),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Status {
    Pending,
    Approved,
    Rejected,
}

impl Status {
    pub const ALL: [Status; 3] = [Status::Pending, Status::Approved, Status::Rejected];
    pub fn as_db(self) -> &'static str {
        match self {
            Status::Pending => "PENDING",
            Status::Approved => "APPROVED",
            Status::Rejected => "REJECTED",
        }
    }
    pub fn from_db(s: &str) -> Option<Self> {
        match s {
            "PENDING" => Some(Status::Pending),
            "APPROVED" => Some(Status::Approved),
            "REJECTED" => Some(Status::Rejected),
            _ => None,
        }
    }
}

/// A community as stored. `join_code` is removed before it reaches a caller who may not see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Community {
    pub id: Uuid,
    pub kind: Kind,
    pub name: String,
    pub address: String,
    pub external_code: Option<String>,
    pub bjd_code: Option<String>,
    pub join_code: Option<String>,
    pub member_count: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Community {
    /// Without the join code (for callers who do not manage the community).
    pub fn public(mut self) -> Self {
        self.join_code = None;
        self
    }
}

/// A membership with the member's public profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Membership {
    pub id: Uuid,
    pub community_id: Uuid,
    pub user_id: Uuid,
    pub user_handle: String,
    pub user_display_name: String,
    pub status: Status,
    pub role: MemberRole,
    pub building: Option<String>,
    pub unit: Option<String>,
    pub note: Option<String>,
    pub created_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
}

impl Membership {
    /// Without building and unit (personal data), for other members.
    pub fn without_dwelling(mut self) -> Self {
        self.building = None;
        self.unit = None;
        self
    }
}

/// A home-screen entry: a community and the caller's membership (none for anonymous callers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MyCommunity {
    pub community: Community,
    pub membership: Option<Membership>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchQuery {
    /// Trimmed search text (not yet escaped for LIKE).
    pub text: String,
    pub kind: Option<Kind>,
}

#[derive(Debug, Clone)]
pub struct NewCommunity {
    pub kind: Kind,
    pub name: String,
    pub address: String,
    pub join_code: Option<String>,
    pub external_code: Option<String>,
    pub request_id: Option<RequestId>,
}

/// Its `request_id` fingerprint covers the community and the dwelling, never the join code.
#[derive(Debug, Clone, Serialize)]
pub struct JoinRequest {
    pub community_id: Uuid,
    pub building: String,
    pub unit: String,
    #[serde(skip)]
    pub verification_code: String,
    #[serde(skip)]
    pub request_id: Option<RequestId>,
}

#[derive(Debug, Clone)]
pub struct Decision {
    pub membership_id: Uuid,
    pub approve: bool,
    pub note: Option<String>,
}

/// A community name: trimmed, 1 to 100 characters, no control characters.
pub fn parse_name(raw: &str) -> Result<String, String> {
    fields::parse_text(raw, 1, MAX_NAME_CHARS, false)
}

/// An address: trimmed, at most 200 characters, no control characters.
pub fn parse_address(raw: &str) -> Result<String, String> {
    fields::parse_text(raw, 0, MAX_ADDRESS_CHARS, false)
}

/// A SPORTS_CLUB join code: 4 to 32 visible characters without spaces.
pub fn parse_join_code(raw: &str) -> Result<String, String> {
    let s = raw.trim();
    let n = s.chars().count();
    if !(4..=32).contains(&n) || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must be 4 to 32 characters without spaces".into());
    }
    Ok(s.to_owned())
}

/// A registry code such as `A44658807`: 1 to 32 of `[A-Za-z0-9-]`.
pub fn parse_external_code(raw: &str) -> Result<String, String> {
    let s = raw.trim();
    if s.is_empty() || s.len() > 32 || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err("must be 1 to 32 characters of A-Z, a-z, 0-9 and '-'".into());
    }
    Ok(s.to_owned())
}

/// A building (동) or unit (호): 1 to 20 letters (Hangul included), digits or '-'.
/// The message never repeats the value: unit numbers are personal data.
pub fn parse_dwelling(raw: &str) -> Result<String, String> {
    let s = raw.trim();
    if s.is_empty() {
        return Err("is required for an apartment".into());
    }
    if s.chars().count() > MAX_DWELLING_CHARS || !s.chars().all(|c| c.is_alphanumeric() || c == '-') {
        return Err(format!("must be 1 to {MAX_DWELLING_CHARS} letters, digits or '-'"));
    }
    Ok(s.to_owned())
}

pub fn parse_note(raw: &str) -> Result<Option<String>, String> {
    let s = raw.trim();
    if s.is_empty() {
        return Ok(None);
    }
    fields::parse_text(s, 1, MAX_NOTE_CHARS, true).map(Some)
}

/// Compares secrets in time independent of where they differ.
pub fn codes_match(given: &str, expected: &str) -> bool {
    let (a, b) = (given.trim().as_bytes(), expected.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries() {}

    #[test]
    fn dwellings() {
        assert_eq!(parse_dwelling(" 101 ").unwrap(), "101");
        assert_eq!(parse_dwelling("가-3").unwrap(), "가-3");
        assert!(parse_dwelling("").is_err());
        assert!(parse_dwelling("1 2").is_err());
        assert!(parse_dwelling(&"1".repeat(21)).is_err());
        // The description never echoes the value.
        assert!(!parse_dwelling("9876543210987654321099").unwrap_err().contains("98765"));
    }

    #[test]
    fn codes() {
        assert!(codes_match(" secret1 ", "secret1"));
        assert!(!codes_match("secret2", "secret1"));
        assert!(!codes_match("secret", "secret1"));
        assert!(parse_join_code("abc").is_err());
        assert!(parse_join_code("ab cd").is_err());
        assert!(parse_join_code("FC-2024").is_ok());
        assert!(parse_external_code("A44658807").is_ok());
        assert!(parse_external_code("A4465 8807").is_err());
    }
}
