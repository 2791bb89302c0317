//! Address → coordinates, behind the [`Geocoder`] trait. [`NaverGeocoder`] speaks the Naver
//! Cloud Maps geocoding API (`GET {base}/map-geocode/v2/geocode?query=…` with the
//! `X-NCP-APIGW-API-KEY-ID` / `X-NCP-APIGW-API-KEY` headers); every request is bounded by a
//! time-out and retried with backoff after time-outs, connection errors, 429 and 5xx.
//! [`resolve`] requires exactly one match (INVALID_ARGUMENT `ADDRESS_NOT_FOUND` otherwise) and
//! caches the matches of an address in Redis (cache `geocode`).

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::config::EventsSettings;
use super::model::Coords;
use crate::error::{AppError, AppResult, Reason, Violations};
use crate::state::AppState;

/// Looks addresses up. Returns every match; the caller decides what is acceptable.
#[async_trait::async_trait]
pub trait Geocoder: Send + Sync {
    async fn geocode(&self, address: &str) -> Result<Vec<Coords>, GeocodeError>;
}

/// The upstream failed (after retries). The text holds no key.
#[derive(Debug, Clone, thiserror::Error)]
#[error("geocoding failed: {0}")]
pub struct GeocodeError(pub String);

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NaverResponse {
    status: String,
    #[serde(default)]
    addresses: Vec<NaverAddress>,
    #[serde(default)]
    error_message: String,
}

#[derive(Debug, Deserialize)]
struct NaverAddress {
    /// Longitude, as a decimal string.
    x: String,
    /// Latitude, as a decimal string.
    y: String,
}

/// The Naver Cloud geocoding API client.
pub struct NaverGeocoder {
    client: reqwest::Client,
    url: String,
    key_id: String,
    key: SecretString,
    retries: u32,
}

impl NaverGeocoder {
    /// `None` unless both keys are configured.
    pub fn from_settings(s: &EventsSettings) -> Option<Self> {
        let (Some(key_id), Some(key)) = (s.geocoder_key_id.clone(), s.geocoder_key.clone()) else { return None };
        let timeout = Duration::from_millis(s.geocoder_timeout_ms);
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("maru/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .ok()?;
        let url = format!("{}/map-geocode/v2/geocode", s.geocoder_base_url.trim_end_matches('/'));
        Some(Self { client, url, key_id, key, retries: s.geocoder_retries })
    }

    async fn attempt(&self, address: &str) -> Result<Vec<Coords>, (String, bool)> {
        let resp = self
            .client
            .get(&self.url)
            .query(&[("query", address)])
            .header("X-NCP-APIGW-API-KEY-ID", &self.key_id)
            .header("X-NCP-APIGW-API-KEY", self.key.expose_secret())
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|e| {
                let retryable = e.is_timeout() || e.is_connect() || e.is_request();
                (if e.is_timeout() { "timed out".to_owned() } else { "request failed".to_owned() }, retryable)
            })?;
        let status = resp.status();
        if !status.is_success() {
            let retryable = status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
            return Err((format!("HTTP {status}"), retryable));
        }
        let body: NaverResponse = resp.json().await.map_err(|_| ("unreadable response".to_owned(), false))?;
        if body.status != "OK" {
            return Err((format!("status {}: {}", body.status, body.error_message), false));
        }
        body.addresses
            .iter()
            .map(|a| {
                let (lng, lat) = (a.x.trim().parse::<f64>(), a.y.trim().parse::<f64>());
                match (lat, lng) {
                    (Ok(lat), Ok(lng)) => {
                        Coords::parse(lat, lng).map_err(|_| ("coordinates out of range".into(), false))
                    }
                    _ => Err(("coordinates are not numbers".to_owned(), false)),
                }
            })
            .collect()
    }
}

#[async_trait::async_trait]
impl Geocoder for NaverGeocoder {
    async fn geocode(&self, address: &str) -> Result<Vec<Coords>, GeocodeError> {
        let mut attempt = 0u32;
        loop {
            match self.attempt(address).await {
                Ok(v) => return Ok(v),
                Err((e, true)) if attempt < self.retries => {
                    let delay = Duration::from_millis(200).saturating_mul(2u32.saturating_pow(attempt));
                    tracing::warn!(error = %e, attempt, "geocoding request failed; retrying");
                    tokio::time::sleep(delay.min(Duration::from_secs(5))).await;
                    attempt += 1;
                }
                Err((e, _)) => return Err(GeocodeError(e)),
            }
        }
    }
}

/// The single location of `address`, through the Redis cache. INVALID_ARGUMENT when
/// geocoding is not configured (coordinates are then required) or the match is not unique;
/// UNAVAILABLE `GEOCODING_UNAVAILABLE` when the API fails.
pub async fn resolve(state: &AppState, address: &str) -> AppResult<Coords> {
    let Some(geocoder) = NaverGeocoder::from_settings(&state.settings.events) else {
        let mut v = Violations::new();
        v.add("latitude", "is required: address geocoding is not configured on this server");
        v.add("longitude", "is required: address geocoding is not configured on this server");
        return Err(v.into_error());
    };
    resolve_with(state, &geocoder, address).await
}

/// [`resolve`] with a given geocoder.
pub async fn resolve_with(state: &AppState, geocoder: &dyn Geocoder, address: &str) -> AppResult<Coords> {
    let key = format!("geocode:{:x}", Sha256::digest(address.as_bytes()));
    let ttl = Duration::from_secs(state.settings.events.geocode_cache_ttl_s);
    let found =
        state.cache.get_or_load("geocode", &key, ttl, || async { geocoder.geocode(address).await }).await.map_err(
            |e| {
                tracing::warn!(error = %e, "geocoding unavailable");
                AppError::Retry {
                    code: tonic::Code::Unavailable,
                    reason: Reason::GeocodingUnavailable,
                    message: "the geocoding service is unavailable; retry later or pass coordinates".into(),
                    retry_after: Duration::from_secs(5),
                    metadata: Default::default(),
                }
            },
        )?;
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(Violations::one("address", "matches no known address").into_error_with(Reason::AddressNotFound)),
        many => Err(Violations::one(
            "address",
            format!("matches {} addresses; make it more precise or pass coordinates", many.len()),
        )
        .into_error_with(Reason::AddressNotFound)),
    }
}
