//! Secrets in settings: serializers that print them masked (`maru check-config`, the settings'
//! `Serialize`), for every section's `#[serde(serialize_with = …)]`.

use secrecy::{ExposeSecret, SecretString};
use serde::Serializer;

/// A secret URL with its password masked.
pub fn masked_url<S: Serializer>(v: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&mask_url(v.expose_secret()))
}

/// An optional secret, masked when set.
pub fn masked_opt<S: Serializer>(v: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_str("********"),
        None => s.serialize_none(),
    }
}

/// Hides the password of a URL, keeping the rest readable.
pub fn mask_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("********"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "********".to_owned(),
    }
}
