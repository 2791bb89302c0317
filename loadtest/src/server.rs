//! The target's own Prometheus endpoint (`--server-metrics http://127.0.0.1:9090/metrics`):
//! the server's resident memory sampled through the run, and counters read before and after
//! it (cache hits, to tell a cached run from an uncached one). Loopback only, like every URL.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio::task::JoinHandle;
use url::Url;

pub struct ServerMetrics {
    http: reqwest::Client,
    url: Url,
}

impl ServerMetrics {
    pub fn new(url: Url) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).no_proxy().build()?;
        Ok(ServerMetrics { http, url })
    }

    pub async fn scrape(&self) -> anyhow::Result<String> {
        let response =
            self.http.get(self.url.clone()).send().await.with_context(|| format!("scraping {}", self.url))?;
        let response = response.error_for_status().with_context(|| format!("scraping {}", self.url))?;
        Ok(response.text().await?)
    }

    /// The sum of the series of `name` carrying every `labels` pair.
    pub async fn sum(&self, name: &str, labels: &[(&str, &str)]) -> anyhow::Result<f64> {
        Ok(sum_series(&self.scrape().await?, name, labels))
    }

    /// Samples `process_resident_memory_bytes` every `every` until [`RssSampler::stop`].
    pub fn sample_rss(self: &Arc<Self>, every: Duration) -> RssSampler {
        let max = Arc::new(AtomicU64::new(0));
        let (me, seen) = (Arc::clone(self), Arc::clone(&max));
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                if let Ok(bytes) = me.sum("process_resident_memory_bytes", &[]).await {
                    seen.fetch_max(bytes as u64, Ordering::Relaxed);
                }
            }
        });
        RssSampler { max, task }
    }
}

pub struct RssSampler {
    max: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl RssSampler {
    /// The largest resident set seen, in MiB; `None` when no sample succeeded.
    pub fn stop(self) -> Option<f64> {
        self.task.abort();
        let bytes = self.max.load(Ordering::Relaxed);
        (bytes > 0).then(|| bytes as f64 / 1024.0 / 1024.0)
    }
}

/// Sums the samples of `name` (exactly that name, with or without labels) whose label set
/// holds every `labels` pair, in the Prometheus text format.
pub fn sum_series(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (label_part, value) = match rest.strip_prefix('{') {
                Some(r) => {
                    let (set, value) = r.split_once('}')?;
                    (set, value)
                }
                None if rest.starts_with(' ') => ("", rest),
                None => return None,
            };
            let all = labels.iter().all(|(k, v)| label_part.split(',').any(|p| p == format!("{k}=\"{v}\"")));
            all.then(|| value.split_whitespace().next()?.parse::<f64>().ok()).flatten()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP x\n\
        maru_cache_requests_total{cache=\"feed_post\",result=\"hit\"} 41\n\
        maru_cache_requests_total{cache=\"feed_post\",result=\"miss\"} 3\n\
        maru_cache_requests_total{cache=\"feed_page\",result=\"hit\"} 7\n\
        maru_cache_requests_total_other 99\n\
        process_resident_memory_bytes 52428800\n";

    #[test]
    fn sums_matching_series_only() {
        assert_eq!(sum_series(TEXT, "maru_cache_requests_total", &[("cache", "feed_post"), ("result", "hit")]), 41.0);
        assert_eq!(sum_series(TEXT, "maru_cache_requests_total", &[("result", "hit")]), 48.0);
        assert_eq!(sum_series(TEXT, "maru_cache_requests_total", &[]), 51.0);
        assert_eq!(sum_series(TEXT, "process_resident_memory_bytes", &[]), 52_428_800.0);
        assert_eq!(sum_series(TEXT, "maru_cache", &[]), 0.0);
    }
}
