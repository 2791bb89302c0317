//! The identity-provider settings (`[identity]`, `MARU__IDENTITY__…`) and their validation
//! (docs/identity.md). Client secrets are [`SecretString`] and printed masked.

use std::collections::BTreeMap;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::secrets::masked_opt;

/// Sign-in with external identity providers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentitySettings {
    /// How long a `state` of StartExternalLogin may be used (single use).
    pub state_ttl_s: u64,
    /// How long a registration or link ticket of FinishExternalLogin may be used (single use).
    pub ticket_ttl_s: u64,
    /// Wrong proofs (password or mailed code) LinkIdentity accepts per link ticket.
    pub max_link_attempts: i32,
    /// A JWKS is refetched for an unknown key id at most this often per provider (key rotation
    /// without letting forged key ids hammer the provider).
    pub jwks_min_refetch_s: u64,
    /// A fetched discovery document and JWKS are used for at most this long.
    pub metadata_ttl_s: u64,
    /// Timeout of every call to a provider.
    pub http_timeout_ms: u64,
    /// Providers by name (`[identity.providers.github]`, `…google]`, any other name for a
    /// generic OIDC provider). None configured by default.
    pub providers: BTreeMap<String, ProviderSettings>,
}

impl Default for IdentitySettings {
    fn default() -> Self {
        Self {
            state_ttl_s: 600,
            ticket_ttl_s: 900,
            max_link_attempts: 5,
            jwks_min_refetch_s: 60,
            metadata_ttl_s: 3600,
            http_timeout_ms: 5000,
            providers: BTreeMap::new(),
        }
    }
}

/// How a provider signs users in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// OpenID Connect: discovery, code exchange, ID token checked against the JWKS.
    #[default]
    Oidc,
    /// GitHub's OAuth2 apps: code exchange, then its `/user` and `/user/emails` API.
    Github,
}

/// One provider. Unset fields take the preset of the provider's name: `google` (issuer
/// `https://accounts.google.com`), `github` (github.com and api.github.com).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderSettings {
    /// `oidc` or `github`; default: `github` for the provider named `github`, else `oidc`.
    pub kind: Option<ProviderKind>,
    /// OIDC issuer; its `/.well-known/openid-configuration` is fetched.
    pub issuer: String,
    pub client_id: String,
    #[serde(serialize_with = "masked_opt")]
    pub client_secret: Option<SecretString>,
    /// Scopes asked for; default `openid email profile` (OIDC) or `read:user user:email` (GitHub).
    pub scopes: Vec<String>,
    /// The redirect URIs StartExternalLogin accepts (each registered with the provider).
    pub redirect_uris: Vec<String>,
    /// GitHub: the authorization endpoint (default `https://github.com/login/oauth/authorize`).
    pub authorize_url: String,
    /// GitHub: the token endpoint (default `https://github.com/login/oauth/access_token`).
    pub token_url: String,
    /// GitHub: the REST API base (default `https://api.github.com`).
    pub api_url: String,
}

impl ProviderSettings {
    pub fn kind(&self, name: &str) -> ProviderKind {
        self.kind.unwrap_or(if name == "github" { ProviderKind::Github } else { ProviderKind::Oidc })
    }
    /// The issuer, with the Google preset.
    pub fn issuer(&self, name: &str) -> String {
        match (self.issuer.trim(), name) {
            ("", "google") => "https://accounts.google.com".into(),
            (i, _) => i.trim_end_matches('/').to_owned(),
        }
    }
    pub fn scopes(&self, name: &str) -> Vec<String> {
        if !self.scopes.is_empty() {
            return self.scopes.clone();
        }
        match self.kind(name) {
            ProviderKind::Oidc => vec!["openid".into(), "email".into(), "profile".into()],
            ProviderKind::Github => vec!["read:user".into(), "user:email".into()],
        }
    }
    pub fn authorize_url(&self) -> String {
        or(&self.authorize_url, "https://github.com/login/oauth/authorize")
    }
    pub fn token_url(&self) -> String {
        or(&self.token_url, "https://github.com/login/oauth/access_token")
    }
    pub fn api_url(&self) -> String {
        or(&self.api_url, "https://api.github.com").trim_end_matches('/').to_owned()
    }
}

fn or(v: &str, default: &str) -> String {
    if v.trim().is_empty() { default.to_owned() } else { v.trim().to_owned() }
}

fn is_http_url(raw: &str) -> bool {
    url::Url::parse(raw).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}

impl IdentitySettings {
    /// Appends every problem of this section to `errs` (see `Settings::validate`).
    pub fn validate(&self, errs: &mut Vec<String>) {
        for (key, v, lo, hi) in [
            ("state_ttl_s", self.state_ttl_s, 30, 3600),
            ("ticket_ttl_s", self.ticket_ttl_s, 30, 86_400),
            ("jwks_min_refetch_s", self.jwks_min_refetch_s, 0, 86_400),
            ("metadata_ttl_s", self.metadata_ttl_s, 1, 7 * 86_400),
            ("http_timeout_ms", self.http_timeout_ms, 100, 60_000),
        ] {
            if !(lo..=hi).contains(&v) {
                errs.push(format!("identity.{key}: must be {lo} to {hi}"));
            }
        }
        if !(1..=20).contains(&self.max_link_attempts) {
            errs.push("identity.max_link_attempts: must be 1 to 20".into());
        }
        for (name, p) in &self.providers {
            let at = format!("identity.providers.{name}");
            if name.is_empty()
                || name.len() > 32
                || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
            {
                errs.push(format!("{at}: a provider name is 1 to 32 characters of a-z, 0-9, '_' and '-'"));
            }
            if p.client_id.trim().is_empty() {
                errs.push(format!("{at}.client_id: is required"));
            }
            if p.client_secret.is_none() {
                errs.push(format!("{at}.client_secret: is required"));
            }
            if p.redirect_uris.is_empty() {
                errs.push(format!("{at}.redirect_uris: at least one redirect URI is required"));
            }
            for uri in &p.redirect_uris {
                if url::Url::parse(uri).is_err() || uri.len() > 2000 {
                    errs.push(format!("{at}.redirect_uris: `{uri}` is not an absolute URI"));
                }
            }
            match p.kind(name) {
                ProviderKind::Oidc => {
                    if !is_http_url(&p.issuer(name)) {
                        errs.push(format!("{at}.issuer: an http(s) issuer URL is required for an OIDC provider"));
                    }
                    if !p.scopes(name).iter().any(|s| s == "openid") {
                        errs.push(format!("{at}.scopes: an OIDC provider needs the `openid` scope"));
                    }
                }
                ProviderKind::Github => {
                    for (key, v) in
                        [("authorize_url", p.authorize_url()), ("token_url", p.token_url()), ("api_url", p.api_url())]
                    {
                        if !is_http_url(&v) {
                            errs.push(format!("{at}.{key}: `{v}` is not an http(s) URL"));
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(issuer: &str) -> ProviderSettings {
        ProviderSettings {
            issuer: issuer.into(),
            client_id: "id".into(),
            client_secret: Some(SecretString::from("secret")),
            redirect_uris: vec!["https://app.example/cb".into()],
            ..Default::default()
        }
    }

    #[test]
    fn presets_and_validation() {
        let mut s = IdentitySettings::default();
        s.providers.insert("google".into(), provider(""));
        s.providers.insert("github".into(), provider(""));
        let mut errs = Vec::new();
        s.validate(&mut errs);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(s.providers["google"].issuer("google"), "https://accounts.google.com");
        assert_eq!(s.providers["github"].kind("github"), ProviderKind::Github);
        assert_eq!(s.providers["github"].api_url(), "https://api.github.com");

        s.providers.insert("Bad Name".into(), ProviderSettings::default());
        s.providers.insert("corp".into(), provider("not a url"));
        let mut errs = Vec::new();
        s.validate(&mut errs);
        for needle in ["a provider name", "client_id: is required", "client_secret: is required", "corp.issuer"] {
            assert!(errs.iter().any(|e| e.contains(needle)), "{needle} missing in {errs:?}");
        }
    }

    #[test]
    fn secret_is_masked() {
        let mut s = IdentitySettings::default();
        s.providers.insert("google".into(), provider(""));
        let out = serde_json::to_string(&s).unwrap();
        assert!(!out.contains("\"secret\""), "{out}");
        assert!(out.contains("********"));
    }
}
