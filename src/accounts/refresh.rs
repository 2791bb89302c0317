//! Refresh tokens: opaque random strings, stored only as SHA-256, single use (the rotation and
//! reuse rules are in [`super::ops::refresh`]).

use rand::RngCore;
use sha2::{Digest, Sha256};

/// A new opaque refresh token and the hash stored for it.
pub fn new_refresh_token() -> (String, Vec<u8>) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes);
    let hash = hash_refresh_token(&token);
    (token, hash)
}

pub fn hash_refresh_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}
