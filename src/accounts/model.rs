//! Account rules: what a handle, an email, a password and a display name may be.
//! No SQL, no transport: parsers return the description a field violation carries.

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::caller::Role;
use crate::fields;
use crate::idempotency::RequestId;
use crate::mail::Lang;

/// A user as every RPC returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct User {
    pub id: Uuid,
    pub handle: String,
    pub email: String,
    pub display_name: String,
    #[sqlx(try_from = "String")]
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

/// 3–30 characters of `[a-z0-9._]`, stored lower case; unique case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Handle(String);

impl Handle {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let h = raw.trim().to_lowercase();
        let len = h.chars().count();
        if !(3..=30).contains(&len) {
            return Err("must be 3 to 30 characters".into());
        }
        if !h.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '_') {
            return Err("may contain only a-z, 0-9, '.' and '_'".into());
        }
        Ok(Self(h))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An email address as given (trimmed); unique case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let e = raw.trim();
        if e.is_empty() {
            return Err("is required".into());
        }
        if e.len() > 254 {
            return Err("must be at most 254 characters".into());
        }
        let valid = match e.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !e.chars().any(|c| c.is_whitespace() || c.is_control())
            }
            None => false,
        };
        if !valid {
            return Err("is not an email address".into());
        }
        Ok(Self(e.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// 8–128 characters (the upper bound keeps hashing cost bounded).
pub fn parse_password(raw: &str) -> Result<SecretString, String> {
    let n = raw.chars().count();
    if n < 8 {
        return Err("must be at least 8 characters".into());
    }
    if n > 128 {
        return Err("must be at most 128 characters".into());
    }
    Ok(SecretString::from(raw.to_owned()))
}

/// 1–50 characters, no control characters, trimmed.
pub fn parse_display_name(raw: &str) -> Result<String, String> {
    fields::parse_text(raw, 1, 50, false)
}

#[derive(Debug)]
pub struct SignUp {
    pub handle: Handle,
    pub email: Email,
    pub password: SecretString,
    pub display_name: String,
    pub request_id: Option<RequestId>,
}

/// ConvertGuest: the credentials a guest's account takes on (validated as [`SignUp`]).
#[derive(Debug)]
pub struct ConvertGuest {
    pub handle: Handle,
    pub email: Email,
    pub password: SecretString,
    pub display_name: String,
}

#[derive(Debug)]
pub struct Login {
    pub login: String,
    pub password: SecretString,
}

#[derive(Debug)]
pub struct ChangePassword {
    pub old: SecretString,
    pub new: SecretString,
}

/// The device a login came from, as its session shows it (ListSessions).
#[derive(Debug, Clone, Default)]
pub struct Device {
    /// The client's `user-agent`, control characters removed, at most
    /// [`Device::MAX_USER_AGENT_CHARS`] characters.
    pub user_agent: String,
    /// The client address (through trusted proxies only), empty when unknown.
    pub address: String,
}

impl Device {
    pub const MAX_USER_AGENT_CHARS: usize = 256;

    pub fn new(user_agent: Option<&str>, address: Option<std::net::IpAddr>) -> Self {
        let user_agent = user_agent
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_control())
            .take(Self::MAX_USER_AGENT_CHARS)
            .collect::<String>()
            .trim()
            .to_owned();
        Self { user_agent, address: address.map(|a| a.to_string()).unwrap_or_default() }
    }
}

/// One live session of a user (a signed-in device).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionInfo {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    /// The last token refresh (access tokens are verified without touching the database).
    pub last_used_at: DateTime<Utc>,
    /// When the newest refresh token runs out, unless refreshed before.
    pub expires_at: DateTime<Utc>,
    pub user_agent: String,
    pub address: String,
}

/// Tokens handed out by Login and Refresh.
#[derive(Debug)]
pub struct Tokens {
    pub access_token: String,
    pub access_expires_at: DateTime<Utc>,
    pub refresh_token: String,
    pub refresh_expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserFilter {
    pub query: Option<String>,
    pub role: Option<Role>,
}

/// The characters of an email verification code: digits and upper-case letters without the
/// look-alikes 0/O and 1/I.
pub const CODE_ALPHABET: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ";
/// Characters in an email verification code.
pub const CODE_LEN: usize = 6;

/// A fresh random verification code.
pub fn new_code() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..CODE_LEN).map(|_| CODE_ALPHABET[rng.random_range(0..CODE_ALPHABET.len())] as char).collect()
}

/// A code as typed: surrounding spaces and case ignored.
pub fn parse_code(raw: &str) -> Result<String, String> {
    let code = raw.trim().to_ascii_uppercase();
    if code.is_empty() {
        return Err("is required".into());
    }
    if code.chars().count() != CODE_LEN || !code.bytes().all(|b| CODE_ALPHABET.contains(&b)) {
        return Err(format!("must be the {CODE_LEN} characters from the mail"));
    }
    Ok(code)
}

/// What is stored of a code: SHA-256 over the account and the code.
pub fn hash_code(user_id: Uuid, code: &str) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(user_id.as_bytes());
    h.update(code.as_bytes());
    h.finalize().to_vec()
}

/// Equal byte strings, compared in time independent of where they differ.
pub fn same_hash(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Debug)]
pub struct SendCode {
    pub lang: Lang,
}

#[derive(Debug)]
pub struct VerifyEmail {
    pub code: String,
}

#[derive(Debug)]
pub struct RequestReset {
    pub email: Email,
    pub lang: Lang,
}

#[derive(Debug)]
pub struct ResetPassword {
    pub token: String,
    pub new: SecretString,
}

/// A pending verification code as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PendingCode {
    pub code_hash: Vec<u8>,
    pub attempts: i32,
    pub expires_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles() {
        assert_eq!(Handle::parse(" Alice.B_1 ").unwrap().as_str(), "alice.b_1");
        assert!(Handle::parse("ab").is_err());
        assert!(Handle::parse(&"a".repeat(31)).is_err());
        assert!(Handle::parse("bad-dash").is_err());
        assert!(Handle::parse("한글이름").is_err());
        assert!(Handle::parse(&"a".repeat(30)).is_ok());
    }

    #[test]
    fn emails() {
        assert!(Email::parse("a@b.co").is_ok());
        for bad in ["", "a", "a@b", "@b.co", "a@@b.co", "a b@c.co", "a@.co", "a@b."] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords_and_names() {
        assert!(parse_password("1234567").is_err());
        assert!(parse_password("12345678").is_ok());
        assert!(parse_password(&"x".repeat(129)).is_err());
        assert!(parse_display_name("  ").is_err());
        assert_eq!(parse_display_name(" 김민수 ").unwrap(), "김민수");
        assert!(parse_display_name("a\u{7}b").is_err());
    }

    #[test]
    fn codes() {
        for _ in 0..50 {
            let c = new_code();
            assert_eq!(parse_code(&format!(" {} ", c.to_lowercase())).unwrap(), c);
        }
        assert!(parse_code("").is_err());
        assert!(parse_code("ABC12").is_err(), "short, and 1 is not in the alphabet");
        assert!(parse_code("ABCDE0").is_err());
        let u = Uuid::now_v7();
        assert!(same_hash(&hash_code(u, "ABCDEF"), &hash_code(u, "ABCDEF")));
        assert!(!same_hash(&hash_code(u, "ABCDEF"), &hash_code(u, "ABCDEG")));
        assert!(!same_hash(&hash_code(u, "ABCDEF"), &hash_code(Uuid::now_v7(), "ABCDEF")));
    }
}
