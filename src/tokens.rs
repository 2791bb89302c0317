//! Access tokens: HS256 JWTs, short-lived and stateless, issued by accounts (Login, Refresh)
//! and verified by the per-RPC layer on every call. Refresh tokens are accounts' own
//! (`accounts::refresh`).

use chrono::{DateTime, Utc};
use http::HeaderMap;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::caller::{Auth, Caller, Role};
use crate::error::Reason;

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
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    access_ttl: chrono::Duration,
}

impl TokenKeys {
    pub fn new(secret: &[u8], issuer: &str, access_ttl_s: u64) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[AUDIENCE]);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer: issuer.to_owned(),
            access_ttl: chrono::Duration::seconds(access_ttl_s as i64),
        }
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
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok((token, exp))
    }

    /// Verifies a token; the error is the reason reported to the client.
    pub fn verify(&self, token: &str) -> Result<Caller, Reason> {
        match jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation) {
            Ok(data) => Ok(Caller { user_id: data.claims.sub, session_id: data.claims.sid, role: data.claims.role }),
            Err(e) if matches!(e.kind(), ErrorKind::ExpiredSignature) => Err(Reason::TokenExpired),
            Err(_) => Err(Reason::TokenInvalid),
        }
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
}
