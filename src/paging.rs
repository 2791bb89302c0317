//! Pagination shared by every list RPC: `page_size` (default 20, max 100, larger is coerced,
//! negative is INVALID_ARGUMENT) and opaque `page_token`s. A token carries the cursor (the
//! sort key of the last row returned) and an HMAC over the cursor and the query's filters, so a
//! tampered token, or a token replayed with other filters, is INVALID_ARGUMENT
//! `PAGE_TOKEN_INVALID`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::Sha256;

use std::sync::Arc;

use crate::error::{AppResult, Reason, Violations};
use crate::keyring::{Key, KeySet, Keyring};

pub const DEFAULT_PAGE_SIZE: i64 = 20;
pub const MAX_PAGE_SIZE: i64 = 100;

type HmacSha256 = Hmac<Sha256>;

/// Signs and checks page tokens: signed with the keyring's signing key, accepted under any of
/// its keys, so a key rotation does not break a scroll in progress ([`crate::keyring`]).
#[derive(Clone)]
pub struct Pager {
    keys: Arc<Keyring>,
}

/// A validated page request: how many rows, and after which cursor.
#[derive(Debug, Clone)]
pub struct Page<C> {
    pub size: i64,
    pub after: Option<C>,
}

impl<C> Page<C> {
    /// Rows to fetch: one more than the page, to know whether another page follows.
    pub fn fetch_limit(&self) -> i64 {
        self.size + 1
    }
}

impl Pager {
    /// Derives the token key from the server secret, so tokens survive restarts and work on
    /// every replica sharing the secret.
    pub fn new(secret: &[u8]) -> Self {
        Self::with_keyring(Arc::new(Keyring::fixed(KeySet::new(vec![Key::derived(secret.to_vec())]))))
    }

    /// Keys from `keys`, read at every call (so a reloaded ring applies at once).
    pub fn with_keyring(keys: Arc<Keyring>) -> Self {
        Self { keys }
    }

    /// The page-token key derived from a server key.
    fn token_key(secret: &[u8]) -> Vec<u8> {
        let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts any key length");
        mac.update(b"maru page tokens v1");
        mac.finalize().into_bytes().to_vec()
    }

    /// Validates `page_size` and `page_token` against `query` (the request's filters).
    pub fn page<C: DeserializeOwned>(
        &self,
        page_size: i32,
        page_token: &str,
        query: &impl Serialize,
    ) -> AppResult<Page<C>> {
        let mut v = Violations::new();
        let size = match page_size {
            n if n < 0 => {
                v.add("page_size", "must not be negative");
                DEFAULT_PAGE_SIZE
            }
            0 => DEFAULT_PAGE_SIZE,
            n => i64::from(n).min(MAX_PAGE_SIZE),
        };
        v.finish()?;
        let after = if page_token.is_empty() {
            None
        } else {
            Some(self.decode(page_token, query).ok_or_else(|| {
                Violations::one("page_token", "is invalid, expired or was issued for different filters")
                    .into_error_with(Reason::PageTokenInvalid)
            })?)
        };
        Ok(Page { size, after })
    }

    /// Trims `rows` (fetched with [`Page::fetch_limit`]) to the page and makes the next token
    /// from the cursor of the last row kept; empty when this is the last page.
    pub fn finish<R, C: Serialize>(
        &self,
        page: &Page<impl Sized>,
        mut rows: Vec<R>,
        query: &impl Serialize,
        cursor: impl Fn(&R) -> C,
    ) -> (Vec<R>, String) {
        let more = rows.len() as i64 > page.size;
        rows.truncate(page.size as usize);
        let token = match rows.last() {
            Some(last) if more => self.encode(&cursor(last), query),
            _ => String::new(),
        };
        (rows, token)
    }

    fn mac(key: &[u8], payload: &[u8], query: &impl Serialize) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
        mac.update(&serde_json::to_vec(query).unwrap_or_default());
        mac.update(&[0]);
        mac.update(payload);
        mac
    }

    fn encode<C: Serialize>(&self, cursor: &C, query: &impl Serialize) -> String {
        let payload = serde_json::to_vec(cursor).unwrap_or_default();
        let key = Self::token_key(self.keys.current().signing().secret());
        let sig = Self::mac(&key, &payload, query).finalize().into_bytes();
        format!("{}.{}", URL_SAFE_NO_PAD.encode(&payload), URL_SAFE_NO_PAD.encode(&sig[..16]))
    }

    fn decode<C: DeserializeOwned>(&self, token: &str, query: &impl Serialize) -> Option<C> {
        let (payload, sig) = token.split_once('.')?;
        let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
        let keys = self.keys.current();
        let signed = keys
            .all()
            .iter()
            .any(|k| Self::mac(&Self::token_key(k.secret()), &payload, query).verify_truncated_left(&sig).is_ok());
        if !signed {
            return None;
        }
        serde_json::from_slice(&payload).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::AppError;

    fn reason(e: AppError) -> Reason {
        e.reason()
    }

    #[test]
    fn sizes() {
        let p = Pager::new(b"secret");
        assert_eq!(p.page::<i64>(0, "", &()).unwrap().size, 20);
        assert_eq!(p.page::<i64>(7, "", &()).unwrap().size, 7);
        assert_eq!(p.page::<i64>(1000, "", &()).unwrap().size, 100);
        assert_eq!(reason(p.page::<i64>(-1, "", &()).unwrap_err()), Reason::InvalidArgument);
    }

    #[test]
    fn tokens_are_bound_to_filters_and_tamper_proof() {
        let p = Pager::new(b"secret");
        let page = p.page::<i64>(2, "", &"q=a").unwrap();
        let (rows, token) = p.finish(&page, vec![1, 2, 3], &"q=a", |r| *r);
        assert_eq!(rows, [1, 2]);
        assert_eq!(p.page::<i64>(2, &token, &"q=a").unwrap().after, Some(2));
        assert_eq!(reason(p.page::<i64>(2, &token, &"q=b").unwrap_err()), Reason::PageTokenInvalid);
        let mut bad = token.clone();
        bad.insert(0, 'x');
        assert_eq!(reason(p.page::<i64>(2, &bad, &"q=a").unwrap_err()), Reason::PageTokenInvalid);
        assert_eq!(reason(Pager::new(b"other").page::<i64>(2, &token, &"q=a").unwrap_err()), Reason::PageTokenInvalid);
        let (_, last) = p.finish(&page, vec![1], &"q=a", |r| *r);
        assert!(last.is_empty());
    }

    #[test]
    fn a_page_token_outlives_a_key_rotation_until_its_key_is_retired() {
        let ring = |keys: &[(&str, u8)]| {
            let set = KeySet::new(keys.iter().map(|(kid, b)| Key::new(*kid, vec![*b; 32])).collect());
            Pager::with_keyring(Arc::new(Keyring::fixed(set)))
        };
        let before = ring(&[("k1", 1)]);
        let page = before.page::<i64>(1, "", &"q").unwrap();
        let (_, token) = before.finish(&page, vec![5_i64, 6], &"q", |r| *r);
        assert!(!token.is_empty());
        let rotated = ring(&[("k2", 2), ("k1", 1)]);
        assert_eq!(rotated.page::<i64>(1, &token, &"q").unwrap().after, Some(5));
        let retired = ring(&[("k2", 2)]);
        assert_eq!(reason(retired.page::<i64>(1, &token, &"q").unwrap_err()), Reason::PageTokenInvalid);
    }
}
