//! The signed tokens of the local backend's URLs: `PUT /media/upload/<token>` (single use: the
//! first PUT marks the media) and `GET /media/<token>` (a variant, until the token expires).
//! A token is `base64url(claims).base64url(HMAC-SHA256)`; the key is `media.url_key`, else one
//! derived from each access-token signing key, named by its kid so a key rotation keeps
//! outstanding URLs valid while the old key verifies.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac as _};
use secrecy::ExposeSecret as _;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;

use crate::state::AppState;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// `u` upload, `g` get.
    pub k: char,
    pub m: Uuid,
    /// The variant (downloads).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub v: String,
    /// Expiry, Unix seconds.
    pub e: i64,
    /// The key id.
    pub i: String,
}

pub const UPLOAD: char = 'u';
pub const DOWNLOAD: char = 'g';

/// The kid of `media.url_key`.
const URL_KEY_KID: &str = "media";

fn key_for(state: &AppState, kid: Option<&str>) -> Option<(String, Vec<u8>)> {
    if let Some(k) = &state.settings.media.url_key {
        return (kid.is_none() || kid == Some(URL_KEY_KID))
            .then(|| (URL_KEY_KID.to_owned(), k.expose_secret().as_bytes().to_vec()));
    }
    let set = state.keyring.current();
    let key = match kid {
        None => set.signing().clone(),
        Some(kid) => set.get(kid)?.clone(),
    };
    // Domain separation: never the access-token key itself.
    let mut mac = HmacSha256::new_from_slice(key.secret()).expect("HMAC accepts any key length");
    mac.update(b"maru media url key v1");
    Some((key.kid, mac.finalize().into_bytes().to_vec()))
}

fn mac(key: &[u8], payload: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(payload);
    mac
}

/// A token for `kind` on `media` (and `variant`), valid until `expires` (Unix seconds).
pub fn sign(state: &AppState, kind: char, media: Uuid, variant: &str, expires: i64) -> String {
    let (kid, key) = key_for(state, None).expect("the signing key always exists");
    let claims = Claims { k: kind, m: media, v: variant.to_owned(), e: expires, i: kid };
    let payload = serde_json::to_vec(&claims).expect("claims serialize");
    let sig = mac(&key, &payload).finalize().into_bytes();
    format!("{}.{}", B64.encode(&payload), B64.encode(sig))
}

/// Why a token was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    Malformed,
    BadSignature,
    Expired,
    WrongKind,
}

/// The claims of a valid, unexpired token of `kind`.
pub fn verify(state: &AppState, token: &str, kind: char, now: i64) -> Result<Claims, Refusal> {
    let (payload, sig) = token.split_once('.').ok_or(Refusal::Malformed)?;
    let payload = B64.decode(payload).map_err(|_| Refusal::Malformed)?;
    let sig = B64.decode(sig).map_err(|_| Refusal::Malformed)?;
    let claims: Claims = serde_json::from_slice(&payload).map_err(|_| Refusal::Malformed)?;
    let (_, key) = key_for(state, Some(&claims.i)).ok_or(Refusal::BadSignature)?;
    mac(&key, &payload).verify_slice(&sig).map_err(|_| Refusal::BadSignature)?;
    if claims.k != kind {
        return Err(Refusal::WrongKind);
    }
    if claims.e <= now {
        return Err(Refusal::Expired);
    }
    Ok(claims)
}
