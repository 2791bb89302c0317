//! Identity rules: what a provider told us about a user, the suggested handle, the random
//! values of a login (state, PKCE, nonce, tickets) and how they are stored (hashed). No SQL, no
//! transport.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::accounts::Handle;

/// What a provider says about the signed-in user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// The provider's stable id of the user (OIDC `sub`, GitHub's numeric `id`).
    pub subject: String,
    /// The user's address, when the provider gave one.
    pub email: Option<String>,
    /// Whether the provider says it verified the address.
    pub email_verified: bool,
    /// A login name (GitHub `login`, OIDC `preferred_username`/`nickname`), possibly empty.
    pub username: String,
    /// A display name, possibly empty.
    pub name: String,
}

/// A started login as stored (found again by its state).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LoginState {
    pub provider: String,
    pub redirect_uri: String,
    pub pkce_verifier: String,
    pub nonce: String,
    pub expires_at: DateTime<Utc>,
}

/// What kind of ticket FinishExternalLogin handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketKind {
    Register,
    Link,
}

impl TicketKind {
    pub fn as_db(self) -> &'static str {
        match self {
            TicketKind::Register => "register",
            TicketKind::Link => "link",
        }
    }
}

/// A registration or link ticket as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Ticket {
    pub provider: String,
    pub subject: String,
    pub email: String,
    pub email_verified: bool,
    pub suggested_handle: String,
    pub suggested_name: String,
    pub user_id: Option<Uuid>,
    pub attempts: i32,
    pub expires_at: DateTime<Utc>,
}

/// A linked identity.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Identity {
    pub provider: String,
    pub subject: String,
    pub email: String,
    pub linked_at: DateTime<Utc>,
    pub last_login_at: DateTime<Utc>,
}

/// 32 random bytes, base64url (43 characters): states, PKCE verifiers, nonces, tickets.
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The PKCE S256 challenge of a verifier (RFC 7636 §4.2).
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// How states and tickets are stored: SHA-256, so a database read does not hand them out.
pub fn hash_secret(value: &str) -> Vec<u8> {
    Sha256::digest(value.as_bytes()).to_vec()
}

/// A state or ticket as a client may send it: 1–128 URL-safe characters.
pub fn parse_opaque(raw: &str) -> Result<&str, String> {
    let t = raw.trim();
    if t.is_empty() {
        return Err("is required".into());
    }
    if t.len() > 128 || !t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err("is not one this server issued".into());
    }
    Ok(t)
}

/// A valid handle made from what the provider suggests (login name, else the address's local
/// part, else the name), `user` when nothing usable is left. It may be taken.
pub fn suggest_handle(p: &Profile) -> String {
    let local = p.email.as_deref().and_then(|e| e.split('@').next()).unwrap_or_default();
    for raw in [p.username.as_str(), local, p.name.as_str()] {
        let mut h: String = raw
            .trim()
            .to_lowercase()
            .chars()
            .map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '_' { c } else { '_' })
            .take(30)
            .collect();
        h = h.trim_matches('_').to_owned();
        if h.chars().count() < 3 {
            continue;
        }
        if let Ok(handle) = Handle::parse(&h) {
            return handle.as_str().to_owned();
        }
    }
    "user".to_owned()
}

/// A display name made from the profile: its name, else its login name, at most 50 characters
/// without control characters; `User` when empty.
pub fn suggest_display_name(p: &Profile) -> String {
    let pick = if p.name.trim().is_empty() { &p.username } else { &p.name };
    let n: String = pick.chars().filter(|c| !c.is_control()).take(50).collect();
    let n = n.trim();
    if n.is_empty() { "User".to_owned() } else { n.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(username: &str, email: Option<&str>, name: &str) -> Profile {
        Profile {
            subject: "1".into(),
            email: email.map(Into::into),
            email_verified: false,
            username: username.into(),
            name: name.into(),
        }
    }

    #[test]
    fn pkce_challenge_matches_rfc7636_example() {
        // RFC 7636 appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn handles_are_suggested_valid() {
        assert_eq!(suggest_handle(&profile("Octo-Cat", None, "")), "octo_cat");
        assert_eq!(suggest_handle(&profile("", Some("Kim.Min@example.com"), "")), "kim.min");
        assert_eq!(suggest_handle(&profile("a", Some("b@x.io"), "김민수")), "user");
        assert_eq!(suggest_handle(&profile(&"x".repeat(99), None, "")).len(), 30);
    }

    #[test]
    fn display_names_are_bounded() {
        assert_eq!(suggest_display_name(&profile("octo", None, "  ")), "octo");
        assert_eq!(suggest_display_name(&profile("", None, "")), "User");
        assert_eq!(suggest_display_name(&profile("", None, &"가\u{0}".repeat(60))).chars().count(), 50);
    }

    #[test]
    fn opaque_values_are_bounded() {
        assert!(parse_opaque(&random_token()).is_ok());
        assert!(parse_opaque("").is_err());
        assert!(parse_opaque("a\u{0}b").is_err());
        assert!(parse_opaque(&"a".repeat(129)).is_err());
    }
}
