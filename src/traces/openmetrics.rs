//! The OpenMetrics exposition of `/metrics`, with exemplars on `grpc_server_handling_seconds`
//! (a latency bucket → the trace of a request that landed in it).
//!
//! `metrics-exporter-prometheus` renders the Prometheus text format only and has no exemplars.
//! When a scraper asks for `application/openmetrics-text` ([`wants_openmetrics`]), its output is
//! converted line by line ([`convert`]): counter families lose `_total` in their `TYPE`/`HELP`
//! lines (the samples keep it), `HELP` escapes quotes, values use `+Inf`/`-Inf`, blank lines
//! go, `# EOF` ends it, and each bucket of `grpc_server_handling_seconds` carries the latest
//! exemplar of a sampled request for its label set ([`Exemplars`]). Every other scraper gets
//! the text format, unchanged.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{TraceContextExt, TraceId};
use parking_lot::Mutex;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The histogram whose buckets carry exemplars.
pub const HISTOGRAM: &str = "grpc_server_handling_seconds";

/// The content type of the OpenMetrics answer.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Set once a tracer provider exists in the process: before that no span has a trace id and
/// the RPC layer does not even look.
static TRACING: AtomicBool = AtomicBool::new(false);

/// The process's exemplars (recorded by the RPC layer, rendered by `/metrics`).
pub static EXEMPLARS: LazyLock<Exemplars> = LazyLock::new(Exemplars::default);

pub(crate) fn tracing_built() {
    TRACING.store(true, Ordering::Relaxed);
}

/// Whether a tracer provider was built in this process (spans may be traced).
pub fn tracing_on() -> bool {
    TRACING.load(Ordering::Relaxed)
}

/// One exemplar: the trace, the observed value (seconds) and when (Unix seconds).
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    pub trace_id: TraceId,
    pub value: f64,
    pub timestamp: f64,
}

/// The latest exemplar per label set (sorted `name="value"` pairs, without `le`) and bucket
/// (index into the histogram's buckets, the last one `+Inf`). Label sets are the histogram's
/// closed sets, so this stays small. Records nothing until it knows the buckets
/// (telemetry gives them when it installs the recorder).
#[derive(Debug, Default)]
pub struct Exemplars {
    buckets: OnceLock<Vec<f64>>,
    slots: Mutex<HashMap<String, Vec<Option<Exemplar>>>>,
    /// Exemplars of traces the ratio dropped, until their root is decided ([`Self::kept`]).
    pending: Mutex<VecDeque<(String, Exemplar)>>,
}

/// Undecided exemplars held at most (a root ends right after its RPC is measured, so only a
/// burst pushes one out before its decision).
const PENDING: usize = 1024;

impl Exemplars {
    /// A store for a histogram with these upper bounds (ascending, `+Inf` implied).
    pub fn with_buckets(buckets: &[f64]) -> Self {
        let e = Self::default();
        e.set_buckets(buckets);
        e
    }

    /// Sets the histogram's upper bounds, once.
    pub fn set_buckets(&self, buckets: &[f64]) {
        let _ = self.buckets.set(buckets.to_vec());
    }

    /// Remembers `trace_id` as the exemplar of the bucket `value` falls in, for `labels`.
    pub fn record(&self, labels: &[(&str, &str)], value: f64, trace_id: TraceId) {
        let (key, exemplar) = exemplar(labels, value, trace_id);
        self.put(key, exemplar);
    }

    /// Like [`Self::record`] for a trace not sampled yet: recorded once [`Self::kept`] says the
    /// tail rules kept it (a slow or failed request), forgotten otherwise.
    pub fn hold(&self, labels: &[(&str, &str)], value: f64, trace_id: TraceId) {
        if self.buckets.get().is_none() {
            return;
        }
        let mut pending = self.pending.lock();
        if pending.len() >= PENDING {
            pending.pop_front();
        }
        pending.push_back(exemplar(labels, value, trace_id));
    }

    /// The trace `trace_id` was kept: its held exemplars become exemplars.
    pub fn kept(&self, trace_id: TraceId) {
        let mut found = Vec::new();
        self.pending.lock().retain(|(key, e)| {
            if e.trace_id == trace_id {
                found.push((key.clone(), e.clone()));
                false
            } else {
                true
            }
        });
        for (key, e) in found {
            self.put(key, e);
        }
    }

    fn put(&self, key: String, exemplar: Exemplar) {
        let Some(buckets) = self.buckets.get() else { return };
        let bucket = buckets.iter().position(|le| exemplar.value <= *le).unwrap_or(buckets.len());
        let mut map = self.slots.lock();
        let slots = map.entry(key).or_insert_with(|| vec![None; buckets.len() + 1]);
        slots[bucket] = Some(exemplar);
    }

    /// The exemplar of the bucket `le` (as rendered) for the label set `key`.
    fn get(&self, key: &str, le: &str) -> Option<Exemplar> {
        let buckets = self.buckets.get()?;
        let bucket = if le == "+Inf" {
            buckets.len()
        } else {
            let le: f64 = le.parse().ok()?;
            buckets.iter().position(|b| *b == le)?
        };
        self.slots.lock().get(key)?.get(bucket)?.clone()
    }
}

/// Records the exemplar of one finished RPC (`labels` those of its histogram sample) when its
/// span belongs to a sampled trace, or holds it until the tail rules decide on a trace the
/// ratio dropped. Nothing is looked at while tracing is off.
pub fn record_rpc(span: &tracing::Span, labels: &[(&str, &str)], secs: f64) {
    if !tracing_on() {
        return;
    }
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    if !sc.is_valid() {
        return;
    }
    if sc.is_sampled() {
        EXEMPLARS.record(labels, secs, sc.trace_id());
    } else {
        // The tail rules may still keep it (`super::TailKeep` calls `kept`).
        EXEMPLARS.hold(labels, secs, sc.trace_id());
    }
}

fn exemplar(labels: &[(&str, &str)], value: f64, trace_id: TraceId) -> (String, Exemplar) {
    let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or_default();
    let key = label_key(labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect());
    (key, Exemplar { trace_id, value, timestamp })
}

fn label_key(mut pairs: Vec<(String, String)>) -> String {
    pairs.sort();
    let mut key = String::new();
    for (k, v) in pairs {
        let _ = write!(key, "{k}=\"{v}\",");
    }
    key
}

/// Whether an `Accept` header prefers OpenMetrics 1.0.0 (or an unversioned OpenMetrics) to the
/// text format: Prometheus asks `application/openmetrics-text;version=1.0.0,…,text/plain;…;q=0.5`.
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    let Some(accept) = accept else { return false };
    let mut om: f64 = 0.0;
    let mut text: f64 = 0.0;
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let mut q = 1.0;
        let mut version = None;
        for p in parts {
            if let Some((k, v)) = p.split_once('=') {
                match k.trim().to_ascii_lowercase().as_str() {
                    "q" => q = v.trim().parse().unwrap_or(0.0),
                    "version" => version = Some(v.trim().trim_matches('"').to_owned()),
                    _ => {}
                }
            }
        }
        match media.as_str() {
            "application/openmetrics-text" if version.as_deref().is_none_or(|v| v == "1.0.0") => om = om.max(q),
            "text/plain" | "text/*" | "*/*" => text = text.max(q),
            _ => {}
        }
    }
    om > 0.0 && om >= text
}

/// The OpenMetrics form of the text exposition `text` (see the module), with the exemplars of
/// `exemplars` on the buckets of [`HISTOGRAM`].
pub fn convert(text: &str, exemplars: &Exemplars) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    let mut help: Option<(&str, &str)> = None;
    let mut family = String::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, desc) = rest.split_once(' ').unwrap_or((rest, ""));
            help = Some((name, desc));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            family = if kind == "counter" { name.strip_suffix("_total").unwrap_or(name) } else { name }.to_owned();
            if let Some((_, desc)) = help.take().filter(|(n, _)| *n == name) {
                // The text format escapes `\` and newlines in HELP; OpenMetrics also quotes.
                let _ = writeln!(out, "# HELP {family} {}", desc.replace('"', "\\\""));
            }
            let _ = writeln!(out, "# TYPE {family} {kind}");
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let value = match value {
            "inf" => "+Inf",
            "-inf" => "-Inf",
            v => v,
        };
        out.push_str(series);
        out.push(' ');
        out.push_str(value);
        if family == HISTOGRAM
            && let Some(labels) = series.strip_prefix("grpc_server_handling_seconds_bucket{")
            && let Some(e) = bucket_exemplar(labels.trim_end_matches('}'), exemplars)
        {
            let _ = write!(out, " # {{trace_id=\"{}\"}} {} {:.3}", e.trace_id, e.value, e.timestamp);
        }
        out.push('\n');
    }
    out.push_str("# EOF\n");
    out
}

fn bucket_exemplar(labels: &str, exemplars: &Exemplars) -> Option<Exemplar> {
    let mut pairs = parse_labels(labels)?;
    let at = pairs.iter().position(|(k, _)| k == "le")?;
    let (_, le) = pairs.remove(at);
    exemplars.get(&label_key(pairs), &le)
}

/// `a="x",b="y\"z"` → pairs, values unescaped; `None` if malformed.
pub fn parse_labels(s: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let (name, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break i,
                c => value.push(c),
            }
        };
        out.push((name.trim().to_owned(), value));
        rest = after[end + 1..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use metrics::Unit;
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

    use super::*;

    /// telemetry's `LATENCY_BUCKETS` (this module sits below telemetry).
    const LATENCY_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

    #[test]
    fn prometheus_asks_for_openmetrics_and_others_get_text() {
        let prom2 = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        let prom3 = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1";
        assert!(wants_openmetrics(Some(prom2)));
        assert!(wants_openmetrics(Some(prom3)));
        assert!(wants_openmetrics(Some("application/openmetrics-text")));
        assert!(!wants_openmetrics(None));
        assert!(!wants_openmetrics(Some("*/*")));
        assert!(!wants_openmetrics(Some("text/plain;version=0.0.4")));
        assert!(!wants_openmetrics(Some("application/openmetrics-text;version=0.0.1")));
        assert!(!wants_openmetrics(Some("text/plain,application/openmetrics-text;q=0.5")));
    }

    /// One family of a strictly parsed exposition.
    #[derive(Debug, Default)]
    struct Family {
        kind: String,
        help: bool,
        samples: Vec<Sample>,
    }

    #[derive(Debug, Clone)]
    struct Sample {
        name: String,
        labels: Vec<(String, String)>,
        value: f64,
        exemplar: Option<(Labels, f64, f64)>,
    }

    type Labels = Vec<(String, String)>;

    fn number(s: &str) -> f64 {
        match s {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            _ => {
                assert!(s.chars().all(|c| c.is_ascii_digit() || "+-.eE".contains(c)), "not an OpenMetrics number: {s}");
                s.parse().unwrap_or_else(|_| panic!("not a number: {s}"))
            }
        }
    }

    fn valid_name(s: &str) -> bool {
        let mut c = s.chars();
        c.next().is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
            && c.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }

    /// Splits `name{labels} value [# {labels} value [ts]]`.
    fn sample(line: &str) -> Sample {
        let (series, rest) = match line.find('{') {
            Some(open) if open < line.find(' ').unwrap_or(usize::MAX) => {
                let close = line.find("} ").unwrap_or_else(|| panic!("unclosed labels: {line}"));
                (&line[..=close], &line[close + 2..])
            }
            _ => line.split_once(' ').unwrap_or_else(|| panic!("no value: {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, parse_labels(l.strip_suffix('}').unwrap()).unwrap_or_else(|| panic!("labels: {line}"))),
            None => (series, Vec::new()),
        };
        assert!(valid_name(name), "metric name {name}");
        for (k, _) in &labels {
            assert!(valid_name(k) && !k.contains(':'), "label name {k}");
        }
        let (value, exemplar) = match rest.split_once(" # ") {
            Some((v, e)) => {
                let close = e.find("} ").unwrap_or_else(|| panic!("exemplar labels: {line}"));
                let el = parse_labels(&e[1..close]).unwrap();
                let chars: usize = el.iter().map(|(k, v)| k.chars().count() + v.chars().count()).sum();
                assert!(chars <= 128, "exemplar label set longer than 128 characters: {line}");
                let mut parts = e[close + 2..].split(' ');
                let ev = number(parts.next().unwrap());
                let ts = number(parts.next().expect("exemplar timestamp"));
                assert!(parts.next().is_none(), "{line}");
                (v, Some((el, ev, ts)))
            }
            None => (rest, None),
        };
        assert!(!value.contains(' '), "a timestamp or junk after the value: {line}");
        Sample { name: name.to_owned(), labels, value: number(value), exemplar }
    }

    /// Parses an OpenMetrics 1.0 exposition strictly; panics on anything the spec forbids that
    /// this exposition could contain.
    fn parse_strict(text: &str) -> BTreeMap<String, Family> {
        assert!(text.ends_with("# EOF\n"), "ends with # EOF");
        let body = &text[..text.len() - "# EOF\n".len()];
        let mut families: BTreeMap<String, Family> = BTreeMap::new();
        let mut current = String::new();
        let mut closed: BTreeSet<String> = BTreeSet::new();
        for line in body.lines() {
            assert!(!line.is_empty(), "blank line");
            assert!(line != "# EOF", "# EOF before the end");
            if let Some(rest) = line.strip_prefix("# HELP ").or_else(|| line.strip_prefix("# TYPE ")) {
                let (name, arg) = rest.split_once(' ').unwrap_or((rest, ""));
                assert!(valid_name(name), "family name {name}");
                if name != current {
                    assert!(!closed.contains(name), "family {name} interleaved or repeated");
                    if !current.is_empty() {
                        closed.insert(current.clone());
                    }
                    current = name.to_owned();
                }
                let f = families.entry(name.to_owned()).or_default();
                if line.starts_with("# HELP ") {
                    assert!(!f.help, "two HELP lines for {name}");
                    assert!(f.samples.is_empty(), "HELP of {name} after its samples");
                    // Escapes: only \\, \n and \" are allowed.
                    let mut chars = arg.chars();
                    while let Some(c) = chars.next() {
                        assert!(c != '"', "unescaped quote in HELP of {name}");
                        if c == '\\' {
                            assert!(matches!(chars.next(), Some('\\' | 'n' | '"')), "bad escape in HELP of {name}");
                        }
                    }
                    f.help = true;
                } else {
                    assert!(f.kind.is_empty(), "two TYPE lines for {name}");
                    assert!(f.samples.is_empty(), "TYPE of {name} after its samples");
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "unknown", "info", "stateset", "gaugehistogram"]
                            .contains(&arg),
                        "type {arg}"
                    );
                    if arg == "counter" {
                        assert!(!name.ends_with("_total"), "counter family named with _total: {name}");
                    }
                    f.kind = arg.to_owned();
                }
                continue;
            }
            assert!(!line.starts_with('#'), "a comment OpenMetrics does not allow: {line}");
            let s = sample(line);
            let f = families.get_mut(&current).unwrap_or_else(|| panic!("sample before any TYPE: {line}"));
            let suffix =
                s.name.strip_prefix(current.as_str()).unwrap_or_else(|| panic!("{} outside {current}", s.name));
            let allowed: &[&str] = match f.kind.as_str() {
                "counter" => &["_total", "_created"],
                "gauge" | "unknown" => &[""],
                "histogram" => &["_bucket", "_count", "_sum", "_created"],
                "summary" => &["", "_count", "_sum", "_created"],
                other => panic!("unexpected type {other}"),
            };
            assert!(allowed.contains(&suffix), "{} in a {} family", s.name, f.kind);
            if s.exemplar.is_some() {
                assert!(suffix == "_bucket" || suffix == "_total", "exemplar on {}", s.name);
            }
            if f.kind == "counter" {
                assert!(s.value >= 0.0, "negative counter {line}");
            }
            f.samples.push(s);
        }
        for (name, f) in &families {
            assert!(!f.kind.is_empty(), "{name} has no TYPE");
            // Unique label sets per sample name.
            let mut seen = BTreeSet::new();
            for s in &f.samples {
                let mut l = s.labels.clone();
                l.sort();
                assert!(seen.insert((s.name.clone(), l)), "duplicate series {} in {name}", s.name);
            }
            if f.kind == "histogram" {
                check_histogram(name, f);
            }
        }
        families
    }

    fn without(labels: &[(String, String)], key: &str) -> Vec<(String, String)> {
        let mut l: Vec<_> = labels.iter().filter(|(k, _)| k != key).cloned().collect();
        l.sort();
        l
    }

    fn check_histogram(name: &str, f: &Family) {
        let mut sets: BTreeMap<Vec<(String, String)>, Vec<&Sample>> = BTreeMap::new();
        for s in f.samples.iter().filter(|s| s.name.ends_with("_bucket")) {
            sets.entry(without(&s.labels, "le")).or_default().push(s);
        }
        for (labels, buckets) in &sets {
            let les: Vec<f64> =
                buckets.iter().map(|b| number(&b.labels.iter().find(|(k, _)| k == "le").expect("le").1)).collect();
            assert!(les.windows(2).all(|w| w[0] < w[1]), "{name} buckets ascending: {les:?}");
            assert_eq!(les.last(), Some(&f64::INFINITY), "{name}{labels:?} has a +Inf bucket");
            assert!(buckets.windows(2).all(|w| w[0].value <= w[1].value), "{name} buckets cumulative");
            let count = f
                .samples
                .iter()
                .find(|s| s.name == format!("{name}_count") && without(&s.labels, "") == *labels)
                .expect("_count");
            assert_eq!(count.value, buckets.last().unwrap().value, "{name}: _count equals the +Inf bucket");
            assert!(f.samples.iter().any(|s| s.name == format!("{name}_sum") && without(&s.labels, "") == *labels));
            for (i, b) in buckets.iter().enumerate() {
                if let Some((_, v, _)) = &b.exemplar {
                    let lower = if i == 0 { f64::NEG_INFINITY } else { les[i - 1] };
                    assert!(
                        *v > lower && *v <= les[i],
                        "{name}: exemplar {v} outside its bucket ({lower}, {}]",
                        les[i]
                    );
                }
            }
        }
    }

    #[test]
    fn the_openmetrics_exposition_is_strictly_valid_and_carries_exemplars() {
        let recorder = PrometheusBuilder::new()
            .with_recommended_naming(true)
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .unwrap()
            .build_recorder();
        let handle = recorder.handle();
        let labels = [("grpc_type", "unary"), ("grpc_service", "maru.v1.FeedService"), ("grpc_method", "CreatePost")];
        let other = [("grpc_type", "unary"), ("grpc_service", "maru.v1.AuthService"), ("grpc_method", "WhoAmI")];
        // Names through constants: string literals in `counter!(…)` count as metrics of maru
        // (`describes_every_metric_recorded_in_src`).
        const BATCH: &str = "test_batch_rows";
        const LIMIT: &str = "test_limit";
        const UNDESCRIBED: &str = "test_undescribed_total";
        metrics::with_local_recorder(&recorder, || {
            metrics::describe_histogram!(HISTOGRAM, Unit::Seconds, "RPC latency until the status is sent.");
            metrics::describe_counter!(
                "grpc_server_handled_total",
                "RPCs completed, by \"code\".\nSecond line \\ end."
            );
            metrics::describe_gauge!("maru_ready", "1 once ready.");
            metrics::describe_histogram!(BATCH, "Rows per batch (a summary: no buckets).");
            for v in [0.0004, 0.003, 0.003, 0.2, 42.0] {
                metrics::histogram!(HISTOGRAM, &labels).record(v);
            }
            metrics::histogram!(HISTOGRAM, &other).record(0.0005);
            metrics::counter!("grpc_server_handled_total", "grpc_code" => "OK").increment(3);
            metrics::counter!(UNDESCRIBED).increment(1);
            metrics::gauge!("maru_ready").set(1.0);
            metrics::gauge!(LIMIT).set(f64::INFINITY);
            metrics::histogram!(BATCH).record(12.0);
        });
        let exemplars = Exemplars::with_buckets(LATENCY_BUCKETS);
        let ids: Vec<TraceId> = (1..=4u128).map(TraceId::from).collect();
        exemplars.record(&labels, 0.0004, ids[0]);
        exemplars.record(&labels, 0.003, ids[1]);
        exemplars.record(&labels, 0.2, ids[2]);
        exemplars.record(&labels, 42.0, ids[3]);
        // The latest of a bucket wins.
        exemplars.record(&labels, 0.0008, ids[1]);
        // Held exemplars count once their trace is kept, never otherwise.
        let (held_kept, held_dropped) = (TraceId::from(77u128), TraceId::from(78u128));
        exemplars.hold(&labels, 0.04, held_kept);
        exemplars.hold(&labels, 0.007, held_dropped);
        exemplars.kept(held_kept);

        let text = handle.render();
        let om = convert(&text, &exemplars);
        let families = parse_strict(&om);
        let names: BTreeSet<&str> = families.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            BTreeSet::from([
                "grpc_server_handled",
                HISTOGRAM,
                "maru_ready",
                "test_batch_rows",
                "test_limit",
                "test_undescribed"
            ]),
            "{om}"
        );
        assert_eq!(families["grpc_server_handled"].kind, "counter");
        assert!(families["grpc_server_handled"].help);
        assert!(om.contains(r#"# HELP grpc_server_handled RPCs completed, by \"code\".\nSecond line \\ end."#), "{om}");
        assert_eq!(families["test_batch_rows"].kind, "summary");
        assert!(om.contains("test_limit +Inf\n"), "{om}");
        // Every sample of the text format is there, with the same value.
        let samples = |t: &str| t.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).count();
        assert_eq!(samples(&text), samples(&om));

        let h = &families[HISTOGRAM];
        let with = |method: &str| -> Vec<Sample> {
            h.samples
                .iter()
                .filter(|s| {
                    s.name.ends_with("_bucket") && s.labels.iter().any(|(k, v)| k == "grpc_method" && v == method)
                })
                .cloned()
                .collect()
        };
        let create = with("CreatePost");
        assert_eq!(create.len(), LATENCY_BUCKETS.len() + 1);
        let by_le: BTreeMap<String, String> = create
            .iter()
            .filter_map(|s| {
                let le = s.labels.iter().find(|(k, _)| k == "le")?.1.clone();
                let (l, _, _) = s.exemplar.as_ref()?;
                assert_eq!(l.len(), 1);
                assert_eq!(l[0].0, "trace_id");
                Some((le, l[0].1.clone()))
            })
            .collect();
        assert_eq!(
            by_le,
            BTreeMap::from([
                ("0.001".to_owned(), ids[1].to_string()),
                ("0.005".to_owned(), ids[1].to_string()),
                ("0.05".to_owned(), held_kept.to_string()),
                ("0.25".to_owned(), ids[2].to_string()),
                ("+Inf".to_owned(), ids[3].to_string()),
            ])
        );
        assert!(by_le.values().all(|t| t.len() == 32));
        assert!(with("WhoAmI").iter().all(|s| s.exemplar.is_none()), "no exemplar recorded for that label set");
        // Only the exemplar histogram's buckets carry exemplars.
        assert!(
            families
                .iter()
                .filter(|(n, _)| *n != HISTOGRAM)
                .all(|(_, f)| f.samples.iter().all(|s| s.exemplar.is_none()))
        );
    }
}
