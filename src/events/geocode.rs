//! Address → coordinates, behind the [`Geocoder`] trait. [`NaverGeocoder`] speaks the Naver
//! Cloud Maps geocoding API (`GET {base}/map-geocode/v2/geocode?query=…` with the
//! `X-NCP-APIGW-API-KEY-ID` / `X-NCP-APIGW-API-KEY` headers); every request is bounded by a
//! time-out and retried after time-outs, connection errors, 429 and 5xx ([`crate::retry`]:
//! backoff from 200 ms with jitter, at most 5 s; a `Retry-After` on 429/503 honoured up to
//! [`crate::retry::RETRY_AFTER_CAP`]), never after another 4xx.
//! [`resolve`] requires exactly one match (INVALID_ARGUMENT `ADDRESS_NOT_FOUND` otherwise) and
//! caches the matches of an address in Redis (cache `geocode`).

use std::time::{Duration, SystemTime};

use backon::Retryable;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::config::EventsSettings;
use super::model::Coords;
use crate::error::{AppError, AppResult, Reason, Violations};
use crate::retry::{self, Policy, RETRY_AFTER_CAP};
use crate::state::AppState;

/// A failed attempt: what went wrong, whether trying again may help, the server's `Retry-After`.
#[derive(Debug)]
struct Failure {
    error: String,
    retryable: bool,
    retry_after: Option<Duration>,
}

impl Failure {
    fn fatal(error: impl Into<String>) -> Self {
        Self { error: error.into(), retryable: false, retry_after: None }
    }
}

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

    async fn attempt(&self, address: &str) -> Result<Vec<Coords>, Failure> {
        let req = self
            .client
            .get(&self.url)
            .query(&[("query", address)])
            .header("X-NCP-APIGW-API-KEY-ID", &self.key_id)
            .header("X-NCP-APIGW-API-KEY", self.key.expose_secret())
            .header("Accept", "application/json");
        let resp = crate::traces::send(req, "geocoder.geocode").await.map_err(|e| Failure {
            error: if e.is_timeout() { "timed out".to_owned() } else { "request failed".to_owned() },
            retryable: e.is_timeout() || e.is_connect() || e.is_request(),
            retry_after: None,
        })?;
        let status = resp.status();
        if !status.is_success() {
            return Err(Failure {
                error: format!("HTTP {status}"),
                retryable: status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS,
                retry_after: retry::retry_after(status, resp.headers(), SystemTime::now()),
            });
        }
        let body: NaverResponse = resp.json().await.map_err(|_| Failure::fatal("unreadable response"))?;
        if body.status != "OK" {
            return Err(Failure::fatal(format!("status {}: {}", body.status, body.error_message)));
        }
        body.addresses
            .iter()
            .map(|a| {
                let (lng, lat) = (a.x.trim().parse::<f64>(), a.y.trim().parse::<f64>());
                match (lat, lng) {
                    (Ok(lat), Ok(lng)) => {
                        Coords::parse(lat, lng).map_err(|_| Failure::fatal("coordinates out of range"))
                    }
                    _ => Err(Failure::fatal("coordinates are not numbers")),
                }
            })
            .collect()
    }
}

#[async_trait::async_trait]
impl Geocoder for NaverGeocoder {
    async fn geocode(&self, address: &str) -> Result<Vec<Coords>, GeocodeError> {
        let policy =
            Policy { first: Duration::from_millis(200), max: Duration::from_secs(5), retries: Some(self.retries) };
        (|| self.attempt(address))
            .retry(policy.backoff())
            .sleep(tokio::time::sleep)
            .when(|f: &Failure| f.retryable)
            .adjust(|f: &Failure, computed| retry::next_delay(computed, f.retry_after, RETRY_AFTER_CAP))
            .notify(|f: &Failure, delay| {
                tracing::warn!(error = %f.error, retry_ms = delay.as_millis() as u64, "geocoding request failed; retrying");
            })
            .await
            .map_err(|f| GeocodeError(f.error))
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Instant;

    use axum::http::{HeaderValue, StatusCode};
    use axum::response::IntoResponse;

    use super::*;

    /// A local Naver geocoding API answering with the next of `replies` (status, Retry-After),
    /// then one match; returns the geocoder (200 ms first backoff, 2 retries) and the hit count.
    async fn naver(replies: Vec<(u16, Option<&'static str>)>) -> (NaverGeocoder, Arc<AtomicU32>) {
        let hits = Arc::new(AtomicU32::new(0));
        let (counter, replies) = (hits.clone(), Arc::new(replies));
        let router = axum::Router::new().route(
            "/map-geocode/v2/geocode",
            axum::routing::get(move || {
                let (hits, replies) = (counter.clone(), replies.clone());
                async move {
                    match replies.get(hits.fetch_add(1, Ordering::SeqCst) as usize) {
                        Some((status, retry_after)) => {
                            let mut r = (StatusCode::from_u16(*status).unwrap(), "{}").into_response();
                            if let Some(v) = retry_after {
                                r.headers_mut().insert("retry-after", HeaderValue::from_static(v));
                            }
                            r
                        }
                        None => (
                            [("content-type", "application/json")],
                            r#"{"status":"OK","addresses":[{"x":"126.9780","y":"37.5665"}],"errorMessage":""}"#,
                        )
                            .into_response(),
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        let settings = EventsSettings {
            geocoder_base_url: base,
            geocoder_key_id: Some("id".into()),
            geocoder_key: Some(SecretString::from("key")),
            ..Default::default()
        };
        (NaverGeocoder::from_settings(&settings).unwrap(), hits)
    }

    #[tokio::test]
    async fn retry_after_is_honoured_and_4xx_is_not_retried() {
        let (g, hits) = naver(vec![(429, Some("1"))]).await;
        let started = Instant::now();
        let found = g.geocode("서울특별시 중구 세종대로 110").await.unwrap();
        assert_eq!(found, [Coords { latitude: 37.5665, longitude: 126.9780 }]);
        assert_eq!(hits.load(Ordering::SeqCst), 2);
        // The retry waited the second the API asked for, not the 200 ms backoff.
        assert!(started.elapsed() >= Duration::from_secs(1), "retried after {:?}", started.elapsed());

        // 5xx: backoff, up to the retries.
        let (g, hits) = naver(vec![(503, None), (500, None), (500, None)]).await;
        let e = g.geocode("x").await.unwrap_err();
        assert_eq!((e.0.as_str(), hits.load(Ordering::SeqCst)), ("HTTP 500 Internal Server Error", 3));

        for status in [400, 401, 403, 404] {
            let (g, hits) = naver(vec![(status, Some("1"))]).await;
            assert!(g.geocode("x").await.is_err());
            assert_eq!(hits.load(Ordering::SeqCst), 1, "{status} is not retried");
        }
        // Asked to wait longer than maru waits inside a request: not retried.
        let (g, hits) = naver(vec![(503, Some("3600"))]).await;
        assert!(g.geocode("x").await.is_err());
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }
}
