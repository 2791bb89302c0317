//! Access tokens: HS256 JWTs, short-lived and stateless, issued by accounts (Login, Refresh)
//! and verified by the per-RPC layer on every call. Refresh tokens are accounts' own
//! (`accounts::refresh`).
//!
//! Each token names its key in the header (`kid`): it is signed with the keyring's signing key
//! and verified with the key it names, so keys rotate without logging anyone out
//! ([`crate::keyring`]). A token without a `kid` (issued before key ids) is tried against every
//! key; a token naming a key the ring no longer has is TOKEN_INVALID.

use chrono::{DateTime, Utc};
use http::HeaderMap;
use jsonwebtoken::errors::ErrorKind;
use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::caller::{Auth, Caller, Role};
use crate::error::Reason;
use crate::keyring::{Key, KeySet, Keyring};

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: Uuid,
    /// Session (refresh-token family) the token was issued for.
    sid: Uuid,
    role: Role,
    iss: String,
    aud: String,
    iat: i64,
    exp: i64,
    /// Unique per token, so two tokens issued in the same second differ.
    jti: Uuid,
}

const AUDIENCE: &str = "maru";

/// Signing and verification keys for access tokens.
pub struct TokenKeys {
    keys: Arc<Keyring>,
    validation: Validation,
    issuer: String,
    access_ttl: chrono::Duration,
}

impl TokenKeys {
    /// One fixed key (tools and tests).
    pub fn new(secret: &[u8], issuer: &str, access_ttl_s: u64) -> Self {
        let ring = Keyring::fixed(KeySet::new(vec![Key::derived(secret.to_vec())]));
        Self::with_keyring(Arc::new(ring), issuer, access_ttl_s)
    }

    /// Keys from `keys`, read at every issue and check (so a reloaded ring applies at once).
    pub fn with_keyring(keys: Arc<Keyring>, issuer: &str, access_ttl_s: u64) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[AUDIENCE]);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        Self { keys, validation, issuer: issuer.to_owned(), access_ttl: chrono::Duration::seconds(access_ttl_s as i64) }
    }

    /// A signed access token and its expiry.
    pub fn issue(
        &self,
        user_id: Uuid,
        session_id: Uuid,
        role: Role,
        now: DateTime<Utc>,
    ) -> anyhow::Result<(String, DateTime<Utc>)> {
        let exp = now + self.access_ttl;
        let claims = Claims {
            sub: user_id,
            sid: session_id,
            role,
            iss: self.issuer.clone(),
            aud: AUDIENCE.into(),
            iat: now.timestamp(),
            exp: exp.timestamp(),
            jti: Uuid::new_v4(),
        };
        let keys = self.keys.current();
        let key = keys.signing();
        let header = Header { kid: Some(key.kid.clone()), ..Header::new(Algorithm::HS256) };
        let token = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(key.secret()))?;
        Ok((token, exp))
    }

    /// Verifies a token; the error is the reason reported to the client.
    pub fn verify(&self, token: &str) -> Result<Caller, Reason> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| Reason::TokenInvalid)?;
        let keys = self.keys.current();
        let candidates: Vec<&Key> = match &header.kid {
            Some(kid) => vec![keys.get(kid).ok_or(Reason::TokenInvalid)?],
            None => keys.all().iter().collect(),
        };
        let mut outcome = Err(Reason::TokenInvalid);
        for key in candidates {
            outcome = match jsonwebtoken::decode::<Claims>(
                token,
                &DecodingKey::from_secret(key.secret()),
                &self.validation,
            ) {
                Ok(data) => {
                    return Ok(Caller {
                        user_id: data.claims.sub,
                        session_id: data.claims.sid,
                        role: data.claims.role,
                    });
                }
                Err(e) if matches!(e.kind(), ErrorKind::ExpiredSignature) => Err(Reason::TokenExpired),
                Err(_) => Err(Reason::TokenInvalid),
            };
        }
        outcome
    }

    /// Reads `authorization: Bearer …`; no header means anonymous.
    pub fn authenticate(&self, headers: &HeaderMap) -> Auth {
        let Some(value) = headers.get(http::header::AUTHORIZATION) else {
            return Auth::Anonymous;
        };
        let outcome = match value.to_str().ok().and_then(|v| v.split_once(' ')) {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => {
                self.verify(token.trim())
            }
            _ => Err(Reason::TokenInvalid),
        };
        let label = match outcome {
            Ok(_) => "ok",
            Err(Reason::TokenExpired) => "expired",
            Err(_) => "invalid",
        };
        metrics::counter!("maru_auth_token_checks_total", "outcome" => label).increment(1);
        match outcome {
            Ok(caller) => Auth::Caller(caller),
            Err(reason) => Auth::Rejected(reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> TokenKeys {
        TokenKeys::new(&[7u8; 32], "maru", 900)
    }

    #[test]
    fn round_trip() {
        let k = keys();
        let (uid, sid) = (Uuid::now_v7(), Uuid::now_v7());
        let (t, _) = k.issue(uid, sid, Role::Admin, Utc::now()).unwrap();
        let c = k.verify(&t).unwrap();
        assert_eq!((c.user_id, c.session_id, c.role), (uid, sid, Role::Admin));
    }

    #[test]
    fn expired_tampered_and_foreign_tokens_are_rejected() {
        let k = keys();
        let (t, _) =
            k.issue(Uuid::now_v7(), Uuid::now_v7(), Role::User, Utc::now() - chrono::Duration::hours(1)).unwrap();
        assert_eq!(k.verify(&t), Err(Reason::TokenExpired));
        let (t, _) = k.issue(Uuid::now_v7(), Uuid::now_v7(), Role::User, Utc::now()).unwrap();
        let mut tampered = t.clone();
        tampered.pop();
        tampered.push(if t.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(k.verify(&tampered), Err(Reason::TokenInvalid));
        let other = TokenKeys::new(&[8u8; 32], "maru", 900);
        assert_eq!(other.verify(&t), Err(Reason::TokenInvalid));
    }

    fn set(keys: &[(&str, u8)]) -> KeySet {
        KeySet::new(keys.iter().map(|(kid, b)| Key::new(*kid, vec![*b; 32])).collect())
    }

    fn kid_of(token: &str) -> Option<String> {
        jsonwebtoken::decode_header(token).unwrap().kid
    }

    #[test]
    fn tokens_name_their_key_and_verify_through_a_rotation() {
        let (uid, sid) = (Uuid::now_v7(), Uuid::now_v7());
        let old = TokenKeys::with_keyring(Arc::new(Keyring::fixed(set(&[("k1", 1)]))), "maru", 900);
        let (t1, _) = old.issue(uid, sid, Role::User, Utc::now()).unwrap();
        assert_eq!(kid_of(&t1).as_deref(), Some("k1"));
        // Step 1 and 2: k2 is added, then signs; k1's tokens still verify.
        let rotated = TokenKeys::with_keyring(Arc::new(Keyring::fixed(set(&[("k2", 2), ("k1", 1)]))), "maru", 900);
        let (t2, _) = rotated.issue(uid, sid, Role::User, Utc::now()).unwrap();
        assert_eq!(kid_of(&t2).as_deref(), Some("k2"));
        assert_eq!(rotated.verify(&t1).unwrap().user_id, uid);
        assert_eq!(rotated.verify(&t2).unwrap().user_id, uid);
        // Step 3: k1 retired; its tokens are refused, k2's are not.
        let retired = TokenKeys::with_keyring(Arc::new(Keyring::fixed(set(&[("k2", 2)]))), "maru", 900);
        assert_eq!(retired.verify(&t1), Err(Reason::TokenInvalid));
        assert_eq!(retired.verify(&t2).unwrap().session_id, sid);
        // A kid naming a key the token was not signed with is refused, not tried elsewhere.
        let swapped = TokenKeys::with_keyring(Arc::new(Keyring::fixed(set(&[("k1", 2), ("k2", 1)]))), "maru", 900);
        assert_eq!(swapped.verify(&t1), Err(Reason::TokenInvalid));
    }

    #[test]
    fn a_token_without_a_kid_is_tried_against_every_key() {
        let claims = Claims {
            sub: Uuid::now_v7(),
            sid: Uuid::now_v7(),
            role: Role::User,
            iss: "maru".into(),
            aud: AUDIENCE.into(),
            iat: Utc::now().timestamp(),
            exp: (Utc::now() + chrono::Duration::minutes(5)).timestamp(),
            jti: Uuid::new_v4(),
        };
        let legacy =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(&[1u8; 32]))
                .unwrap();
        let ring = TokenKeys::with_keyring(Arc::new(Keyring::fixed(set(&[("k2", 2), ("k1", 1)]))), "maru", 900);
        assert_eq!(ring.verify(&legacy).unwrap().user_id, claims.sub);
        let without = TokenKeys::with_keyring(Arc::new(Keyring::fixed(set(&[("k2", 2)]))), "maru", 900);
        assert_eq!(without.verify(&legacy), Err(Reason::TokenInvalid));
    }
}
