//! One retry policy for every place maru retries a transient failure — the public-data APIs
//! ([`crate::opendata`]), the geocoder, the settlement webhook outbox and the database at
//! start-up — on the `backon` crate: exponential backoff from a first delay, doubling up to a
//! cap, each delay plus a random jitter of up to the same again (replicas that failed together
//! do not retry together), bounded in attempts where the caller gives up. Over HTTP, a server's
//! `Retry-After` (delta-seconds or an HTTP date) on 429 or 503 replaces the computed delay,
//! bounded by [`RETRY_AFTER_CAP`] (or the caller's own cap).

use std::time::{Duration, SystemTime};

use backon::{BackoffBuilder, ExponentialBuilder};

/// The longest `Retry-After` an in-request retry waits; a server asking for more is not retried
/// (the request fails with what it answered).
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(60);

/// Exponential backoff with jitter.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// The first delay (before jitter).
    pub first: Duration,
    /// The cap of the doubling delay (before jitter).
    pub max: Duration,
    /// Retries after the first attempt; `None`: until it succeeds.
    pub retries: Option<u32>,
}

impl Policy {
    /// The `backon` builder of this policy.
    pub fn backoff(&self) -> ExponentialBuilder {
        let b = ExponentialBuilder::new()
            .with_jitter()
            .with_factor(2.0)
            .with_min_delay(self.first)
            .with_max_delay(self.max.max(self.first));
        match self.retries {
            Some(n) => b.with_max_times(n as usize),
            None => b.without_max_times(),
        }
    }

    /// The delay before retry number `retry` (0 = the first retry), jitter included; `None`
    /// once the retries are used up. For schedules kept outside a loop (the webhook outbox
    /// stores the next attempt's time).
    pub fn delay(&self, retry: u32) -> Option<Duration> {
        self.backoff().build().nth(retry as usize)
    }
}

/// The wait a response asks for in its `Retry-After` header (RFC 9110 §10.2.3: delta-seconds
/// or an HTTP date, a date in the past meaning now), if the status is 429 or 503.
pub fn retry_after(status: http::StatusCode, headers: &http::HeaderMap, now: SystemTime) -> Option<Duration> {
    if status != http::StatusCode::TOO_MANY_REQUESTS && status != http::StatusCode::SERVICE_UNAVAILABLE {
        return None;
    }
    let value = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The delay before the next attempt: the server's `Retry-After` when it gave one (it replaces
/// the computed delay, even once the backoff would have grown past it), or the computed delay.
/// `None` — give up — when the retries are used up or the server asks for longer than `cap`.
pub fn next_delay(computed: Option<Duration>, retry_after: Option<Duration>, cap: Duration) -> Option<Duration> {
    let computed = computed?;
    match retry_after {
        Some(wait) if wait > cap => None,
        Some(wait) => Some(wait),
        None => Some(computed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(v: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::RETRY_AFTER, v.parse().unwrap());
        h
    }

    #[test]
    fn delays_double_with_jitter_up_to_the_cap_and_stop() {
        let p = Policy { first: Duration::from_millis(100), max: Duration::from_millis(400), retries: Some(4) };
        for _ in 0..50 {
            let delays: Vec<Duration> = p.backoff().build().collect();
            assert_eq!(delays.len(), 4);
            for (d, base) in delays.iter().zip([100, 200, 400, 400]) {
                let base = Duration::from_millis(base);
                assert!(*d >= base && *d <= base * 2, "{d:?} for {base:?}");
            }
        }
        // Jittered: not every run gives the same first delay.
        let firsts: std::collections::BTreeSet<Duration> = (0..50).filter_map(|_| p.delay(0)).collect();
        assert!(firsts.len() > 1, "{firsts:?}");
        assert_eq!(p.delay(4), None);
        let forever = Policy { retries: None, ..p };
        assert!(forever.delay(1_000).is_some_and(|d| d <= Duration::from_millis(800)));
    }

    #[test]
    fn retry_after_seconds_or_http_date_on_429_and_503_only() {
        let now = httpdate::parse_http_date("Wed, 02 Dec 2026 05:00:00 GMT").unwrap();
        let s429 = http::StatusCode::TOO_MANY_REQUESTS;
        let s503 = http::StatusCode::SERVICE_UNAVAILABLE;
        assert_eq!(retry_after(s429, &headers("3"), now), Some(Duration::from_secs(3)));
        assert_eq!(retry_after(s503, &headers(" 120 "), now), Some(Duration::from_secs(120)));
        assert_eq!(retry_after(s503, &headers("Wed, 02 Dec 2026 05:00:30 GMT"), now), Some(Duration::from_secs(30)));
        // RFC 850 and asctime forms too; a date in the past means now.
        assert_eq!(
            retry_after(s503, &headers("Wednesday, 02-Dec-26 05:01:00 GMT"), now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(retry_after(s503, &headers("Wed Dec  2 05:00:05 2026"), now), Some(Duration::from_secs(5)));
        assert_eq!(retry_after(s503, &headers("Tue, 01 Dec 2026 05:00:00 GMT"), now), Some(Duration::ZERO));
        assert_eq!(retry_after(s503, &headers("soon"), now), None);
        assert_eq!(retry_after(s503, &http::HeaderMap::new(), now), None);
        assert_eq!(retry_after(http::StatusCode::INTERNAL_SERVER_ERROR, &headers("3"), now), None);
    }

    #[test]
    fn retry_after_replaces_the_delay_within_the_cap() {
        let cap = Duration::from_secs(60);
        let ms = Duration::from_millis;
        assert_eq!(next_delay(Some(ms(200)), None, cap), Some(ms(200)));
        assert_eq!(next_delay(Some(ms(200)), Some(ms(1_000)), cap), Some(ms(1_000)));
        assert_eq!(next_delay(Some(ms(5_000)), Some(ms(1_000)), cap), Some(ms(1_000)));
        assert_eq!(next_delay(Some(ms(200)), Some(Duration::from_secs(61)), cap), None);
        assert_eq!(next_delay(None, Some(ms(1_000)), cap), None);
    }
}
