//! The providers' wire formats: OIDC discovery, the token endpoint, ID-token validation against
//! the JWKS (cached, refetched for an unknown key id at most every `jwks_min_refetch_s`), and
//! GitHub's token endpoint and user API. A provider that cannot be reached or answers something
//! that is not its format is UNAVAILABLE `PROVIDER_UNAVAILABLE`; what the provider refuses or
//! a token that fails a check is UNAUTHENTICATED `EXTERNAL_LOGIN_FAILED` (`metadata.check`).
//! Nothing here logs a code, token, secret or address.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use parking_lot::Mutex;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tonic::Code;

use super::config::{IdentitySettings, ProviderKind, ProviderSettings};
use super::model::Profile;
use crate::error::{AppError, AppResult, Reason};

/// The largest provider answer read (discovery, tokens, JWKS, user API).
const MAX_BODY_BYTES: usize = 1 << 20;
/// Clock skew allowed on an ID token's `exp`.
const EXP_LEEWAY_S: i64 = 30;

/// Every configured provider, with its HTTP client and cached metadata.
pub struct Providers {
    http: reqwest::Client,
    map: BTreeMap<String, Provider>,
    jwks_min_refetch: Duration,
    metadata_ttl: Duration,
}

pub struct Provider {
    pub name: String,
    pub kind: ProviderKind,
    pub settings: ProviderSettings,
    cache: Mutex<Cache>,
}

#[derive(Default)]
struct Cache {
    discovery: Option<(Instant, Arc<Discovery>)>,
    jwks: Option<(Instant, Arc<JwkSet>)>,
}

#[derive(Debug, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<String>,
    id_token: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct IdClaims {
    sub: String,
    exp: i64,
    nonce: Option<String>,
    email: Option<String>,
    email_verified: Option<serde_json::Value>,
    name: Option<String>,
    preferred_username: Option<String>,
    nickname: Option<String>,
}

#[derive(Deserialize)]
struct GithubUser {
    id: u64,
    login: String,
    name: Option<String>,
}

#[derive(Deserialize)]
struct GithubEmail {
    email: String,
    primary: bool,
    verified: bool,
}

/// `maru_external_login_failures_total{provider, reason}`.
pub fn failure(provider: &str, reason: &'static str) {
    metrics::counter!("maru_external_login_failures_total", "provider" => provider.to_owned(), "reason" => reason)
        .increment(1);
}

fn jwks_refresh(provider: &str, outcome: &'static str) {
    metrics::counter!("maru_jwks_refreshes_total", "provider" => provider.to_owned(), "outcome" => outcome)
        .increment(1);
}

fn unavailable(provider: &str, what: &str) -> AppError {
    failure(provider, "provider_unavailable");
    tracing::warn!(provider, what, "identity provider unavailable");
    AppError::refused(Code::Unavailable, Reason::ProviderUnavailable, format!("the identity provider failed: {what}"))
        .with_meta("provider", provider)
}

fn failed(provider: &str, check: &'static str) -> AppError {
    failure(provider, check);
    tracing::info!(provider, check, "external login refused");
    AppError::unauthenticated(
        Reason::ExternalLoginFailed,
        format!("the identity provider's answer failed the {check} check"),
    )
    .with_meta("check", check)
}

impl Providers {
    pub fn new(settings: &IdentitySettings) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.http_timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("maru/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let map = settings
            .providers
            .iter()
            .map(|(name, p)| {
                let provider =
                    Provider { name: name.clone(), kind: p.kind(name), settings: p.clone(), cache: Mutex::default() };
                (name.clone(), provider)
            })
            .collect();
        Ok(Self {
            http,
            map,
            jwks_min_refetch: Duration::from_secs(settings.jwks_min_refetch_s),
            metadata_ttl: Duration::from_secs(settings.metadata_ttl_s),
        })
    }

    /// The provider of that name; NOT_FOUND `PROVIDER_UNKNOWN`.
    pub fn get(&self, name: &str) -> AppResult<&Provider> {
        self.map.get(name).ok_or_else(|| AppError::not_found(Reason::ProviderUnknown, "identity provider"))
    }

    /// The URL to send the user to.
    pub async fn authorization_url(
        &self,
        p: &Provider,
        redirect_uri: &str,
        state: &str,
        challenge: &str,
        nonce: &str,
    ) -> AppResult<String> {
        let endpoint = match p.kind {
            ProviderKind::Oidc => self.discovery(p).await?.authorization_endpoint.clone(),
            ProviderKind::Github => p.settings.authorize_url(),
        };
        let mut url = url::Url::parse(&endpoint).map_err(|_| unavailable(&p.name, "authorization endpoint"))?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &p.settings.client_id)
                .append_pair("redirect_uri", redirect_uri)
                .append_pair("scope", &p.settings.scopes(&p.name).join(" "))
                .append_pair("state", state)
                .append_pair("code_challenge", challenge)
                .append_pair("code_challenge_method", "S256");
            if p.kind == ProviderKind::Oidc {
                q.append_pair("nonce", nonce);
            }
        }
        Ok(url.into())
    }

    /// Exchanges the code and returns who signed in, every check passed.
    pub async fn profile(
        &self,
        p: &Provider,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
        nonce: &str,
        now: DateTime<Utc>,
    ) -> AppResult<Profile> {
        match p.kind {
            ProviderKind::Oidc => {
                let d = self.discovery(p).await?;
                let t = self.exchange(p, &d.token_endpoint, code, redirect_uri, verifier).await?;
                let id_token = t.id_token.ok_or_else(|| unavailable(&p.name, "no id_token in the token response"))?;
                self.validate_id_token(p, &d, &id_token, nonce, now).await
            }
            ProviderKind::Github => {
                let t = self.exchange(p, &p.settings.token_url(), code, redirect_uri, verifier).await?;
                let token =
                    t.access_token.ok_or_else(|| unavailable(&p.name, "no access_token in the token response"))?;
                self.github_profile(p, &token).await
            }
        }
    }

    async fn read<T: DeserializeOwned>(&self, provider: &str, what: &str, resp: reqwest::Response) -> AppResult<T> {
        let mut resp = resp;
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|_| unavailable(provider, what))? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(unavailable(provider, what));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|_| unavailable(provider, what))
    }

    async fn get_json<T: DeserializeOwned>(&self, provider: &str, what: &str, url: &str) -> AppResult<T> {
        let req = self.http.get(url).header("accept", "application/json");
        let resp = crate::traces::send(req, "identity.get").await.map_err(|_| unavailable(provider, what))?;
        if !resp.status().is_success() {
            return Err(unavailable(provider, what));
        }
        self.read(provider, what, resp).await
    }

    async fn discovery(&self, p: &Provider) -> AppResult<Arc<Discovery>> {
        if let Some((at, d)) = &p.cache.lock().discovery
            && at.elapsed() < self.metadata_ttl
        {
            return Ok(d.clone());
        }
        let issuer = p.settings.issuer(&p.name);
        let url = format!("{issuer}/.well-known/openid-configuration");
        let d: Discovery = self.get_json(&p.name, "discovery document", &url).await?;
        if d.issuer.trim_end_matches('/') != issuer {
            return Err(unavailable(&p.name, "discovery document names another issuer"));
        }
        let d = Arc::new(d);
        p.cache.lock().discovery = Some((Instant::now(), d.clone()));
        Ok(d)
    }

    async fn exchange(
        &self,
        p: &Provider,
        endpoint: &str,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
    ) -> AppResult<TokenResponse> {
        let secret = p.settings.client_secret.as_ref().map(|s| s.expose_secret().to_owned()).unwrap_or_default();
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("client_id", p.settings.client_id.as_str()),
            ("client_secret", secret.as_str()),
            ("code_verifier", verifier),
        ];
        let req = self.http.post(endpoint).header("accept", "application/json").form(&form);
        let resp =
            crate::traces::send(req, "identity.token").await.map_err(|_| unavailable(&p.name, "token endpoint"))?;
        let status = resp.status();
        if status.is_server_error() {
            return Err(unavailable(&p.name, "token endpoint"));
        }
        let t: TokenResponse = self.read(&p.name, "token endpoint", resp).await?;
        // OAuth2 errors come as 400 (RFC 6749 §5.2); GitHub answers them with 200.
        if t.error.is_some() || status.is_client_error() {
            return Err(failed(&p.name, "code"));
        }
        Ok(t)
    }

    async fn jwks(&self, p: &Provider, uri: &str, refetch: bool) -> AppResult<Option<Arc<JwkSet>>> {
        {
            let cache = p.cache.lock();
            if let Some((at, set)) = &cache.jwks {
                let fresh = at.elapsed() < self.metadata_ttl;
                if fresh && !refetch {
                    return Ok(Some(set.clone()));
                }
                if refetch && at.elapsed() < self.jwks_min_refetch {
                    jwks_refresh(&p.name, "rate_limited");
                    return Ok(None);
                }
            }
        }
        let set: JwkSet = match self.get_json(&p.name, "JWKS", uri).await {
            Ok(set) => set,
            Err(e) => {
                jwks_refresh(&p.name, "failed");
                return Err(e);
            }
        };
        jwks_refresh(&p.name, "ok");
        let set = Arc::new(set);
        p.cache.lock().jwks = Some((Instant::now(), set.clone()));
        Ok(Some(set))
    }

    async fn validate_id_token(
        &self,
        p: &Provider,
        d: &Discovery,
        token: &str,
        nonce: &str,
        now: DateTime<Utc>,
    ) -> AppResult<Profile> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| failed(&p.name, "format"))?;
        // Asymmetric signatures only: never `none` or a MAC keyed with public material.
        if matches!(header.alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
            return Err(failed(&p.name, "algorithm"));
        }
        let mut v = Validation::new(header.alg);
        v.set_issuer(&[d.issuer.as_str()]);
        v.set_audience(&[p.settings.client_id.as_str()]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // `exp` is checked against maru's clock below.
        v.validate_exp = false;
        let cached = self.jwks(p, &d.jwks_uri, false).await?.unwrap_or_default();
        let claims = match verify(&cached, header.kid.as_deref(), token, &v) {
            // No key of the cached set verifies it: the provider may have rotated its keys.
            Err(miss @ (Check::NoKey | Check::Failed("signature"))) => match self.jwks(p, &d.jwks_uri, true).await? {
                Some(fresh) => verify(&fresh, header.kid.as_deref(), token, &v),
                None if miss == Check::NoKey => {
                    return Err(unavailable(&p.name, "unknown signing key (JWKS refetched recently)"));
                }
                None => Err(miss),
            },
            other => other,
        };
        let c = match claims {
            Ok(c) => c,
            Err(Check::NoKey) => return Err(failed(&p.name, "signature")),
            Err(Check::Failed(check)) => return Err(failed(&p.name, check)),
        };
        if c.exp + EXP_LEEWAY_S < now.timestamp() {
            return Err(failed(&p.name, "expiry"));
        }
        if c.nonce.as_deref() != Some(nonce) {
            return Err(failed(&p.name, "nonce"));
        }
        if c.sub.is_empty() || c.sub.len() > 255 {
            return Err(failed(&p.name, "subject"));
        }
        let verified = match c.email_verified {
            Some(serde_json::Value::Bool(b)) => b,
            Some(serde_json::Value::String(s)) => s == "true",
            _ => false,
        };
        let email = c.email.filter(|e| !e.trim().is_empty() && e.len() <= 254);
        Ok(Profile {
            subject: c.sub,
            email_verified: verified && email.is_some(),
            email,
            username: c.preferred_username.or(c.nickname).unwrap_or_default(),
            name: c.name.unwrap_or_default(),
        })
    }

    async fn github_profile(&self, p: &Provider, token: &str) -> AppResult<Profile> {
        let api = p.settings.api_url();
        let get = |path: &str| {
            let req = self
                .http
                .get(format!("{api}{path}"))
                .bearer_auth(token)
                .header("accept", "application/vnd.github+json")
                .header("x-github-api-version", "2022-11-28");
            crate::traces::send(req, "identity.github")
        };
        let resp = get("/user").await.map_err(|_| unavailable(&p.name, "user API"))?;
        match resp.status() {
            s if s.is_success() => {}
            s if s.is_client_error() => return Err(failed(&p.name, "token")),
            _ => return Err(unavailable(&p.name, "user API")),
        }
        let user: GithubUser = self.read(&p.name, "user API", resp).await?;
        let resp = get("/user/emails").await.map_err(|_| unavailable(&p.name, "emails API"))?;
        // Without the `user:email` scope the list is refused: no address then.
        let emails: Vec<GithubEmail> = match resp.status() {
            s if s.is_success() => self.read(&p.name, "emails API", resp).await?,
            s if s.is_client_error() => Vec::new(),
            _ => return Err(unavailable(&p.name, "emails API")),
        };
        let primary = emails.into_iter().find(|e| e.primary).filter(|e| !e.email.is_empty() && e.email.len() <= 254);
        Ok(Profile {
            subject: user.id.to_string(),
            email_verified: primary.as_ref().is_some_and(|e| e.verified),
            email: primary.map(|e| e.email),
            username: user.login,
            name: user.name.unwrap_or_default(),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// No key of the set can have signed the token.
    NoKey,
    Failed(&'static str),
}

/// Verifies the token with the key its `kid` names, or (no `kid`) with each key of the set.
fn verify(set: &JwkSet, kid: Option<&str>, token: &str, v: &Validation) -> Result<IdClaims, Check> {
    let candidates: Vec<_> = match kid {
        Some(kid) => set.find(kid).into_iter().collect(),
        None => set.keys.iter().collect(),
    };
    let mut result = Err(Check::NoKey);
    for jwk in candidates {
        // Asymmetric keys only.
        if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
            continue;
        }
        let Ok(key) = DecodingKey::from_jwk(jwk) else { continue };
        match jsonwebtoken::decode::<IdClaims>(token, &key, v) {
            Ok(data) => return Ok(data.claims),
            Err(e) => {
                let check = match e.kind() {
                    ErrorKind::InvalidSignature => "signature",
                    ErrorKind::InvalidIssuer => "issuer",
                    ErrorKind::InvalidAudience => "audience",
                    ErrorKind::InvalidAlgorithm => "algorithm",
                    _ => "format",
                };
                // A key that verified the signature decides; else keep trying.
                result = Err(Check::Failed(check));
                if check != "signature" {
                    return result;
                }
            }
        }
    }
    result
}

/// The `method` label of `maru_logins_total` / `maru_registrations_total` for a provider:
/// `github`, `google`, or `oidc` for any other (a closed set whatever the settings name).
pub fn method_of(p: &Provider) -> &'static str {
    match (p.kind, p.name.as_str()) {
        (ProviderKind::Github, _) => "github",
        (ProviderKind::Oidc, "google") => "google",
        _ => "oidc",
    }
}
