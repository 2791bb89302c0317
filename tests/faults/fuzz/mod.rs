//! The RPC fuzzer, reusable by any scenario: every method of `maru::grpc::FILE_DESCRIPTOR_SET`
//! (decoded with `prost-reflect`) gets random and mutated messages of its input type,
//! sent as raw bytes (a tonic `Codec` that does not encode), as anonymous, a user and an
//! admin. Cases are reproducible: case `i` of seed `s` is always the same bytes, whatever the
//! concurrency (`FAULTS_FUZZ_SEED`, `FAULTS_FUZZ_CASES`).

pub mod generate;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use prost_reflect::{DescriptorPool, MessageDescriptor};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tonic::transport::Channel;
use tonic::{Code, Status};

use self::generate::{Gen, Known};
use crate::harness::load::authed;
use crate::harness::status::{Failure, code_name};

#[path = "../../support/raw_codec.rs"]
mod raw_codec;
pub use raw_codec::RawCodec;

/// A unary method of the descriptor.
#[derive(Debug, Clone)]
pub struct Method {
    /// `/maru.v1.Service/Method`
    pub path: String,
    pub input: MessageDescriptor,
}

/// Every unary method of every `maru.*` service in the compiled descriptor set.
pub fn methods() -> Vec<Method> {
    let pool = DescriptorPool::decode(maru::grpc::FILE_DESCRIPTOR_SET).expect("maru's descriptor set decodes");
    let mut out = Vec::new();
    for service in pool.services().filter(|s| s.full_name().starts_with("maru.")) {
        for m in service.methods() {
            if !m.is_client_streaming() && !m.is_server_streaming() {
                out.push(Method { path: format!("/{}/{}", service.full_name(), m.name()), input: m.input() });
            }
        }
    }
    out
}

/// Who sends a case.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: &'static str,
    pub token: String,
}

/// How case `index` was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Random,
    Mutated,
}

/// One case: method, caller, the exact bytes.
#[derive(Debug, Clone)]
pub struct Case {
    pub index: u64,
    pub method: usize,
    pub caller: usize,
    pub kind: Kind,
    pub body: Bytes,
}

/// The case `index` of `seed` (30 % mutated encodings).
pub fn case(seed: u64, index: u64, methods: &[Method], callers: usize, known: &Known) -> Case {
    let mut rng = StdRng::seed_from_u64(seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let method = rand::Rng::random_range(&mut rng, 0..methods.len());
    let caller = rand::Rng::random_range(&mut rng, 0..callers);
    let mutated = rand::Rng::random_bool(&mut rng, 0.3);
    let mut g = Gen::new(rng, known);
    let desc = &methods[method].input;
    let (kind, body) = if mutated {
        (Kind::Mutated, g.mutated(desc))
    } else {
        (Kind::Random, prost::Message::encode_to_vec(&g.message(desc)))
    };
    Case { index, method, caller, kind, body: body.into() }
}

/// Sends one message to `path` as `token` (anonymous when empty).
pub async fn send(channel: &Channel, path: &str, token: &str, body: Bytes) -> Result<Bytes, Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.map_err(|e| Status::unavailable(format!("not ready: {e}")))?;
    let path: http::uri::PathAndQuery = path.parse().map_err(|_| Status::internal("bad path"))?;
    let call = grpc.unary(authed(body, token), path, RawCodec);
    match tokio::time::timeout(Duration::from_secs(30), call).await {
        Ok(r) => r.map(tonic::Response::into_inner),
        Err(_) => Err(Status::deadline_exceeded("fuzz client gave up after 30 s")),
    }
}

/// What a run saw.
#[derive(Debug, Default)]
pub struct Stats {
    pub cases: usize,
    /// Outcome label → count (`OK`, `INVALID_ARGUMENT INVALID_ARGUMENT`, …).
    pub by_label: BTreeMap<String, usize>,
    /// Gross code → count.
    pub by_code: BTreeMap<&'static str, usize>,
    /// Error-design violations (INTERNAL, UNKNOWN, missing ErrorInfo, …) and transport
    /// failures, by method and label: count and the first case.
    pub violations: BTreeMap<String, (usize, String)>,
    /// The largest `grpc-message` + details seen, and where.
    pub max_status_bytes: (usize, String),
    /// Time spent waiting for answers, by method.
    pub time_by_method: BTreeMap<String, Duration>,
}

impl Stats {
    /// The `n` methods that took longest in total.
    pub fn slowest(&self, n: usize) -> String {
        let mut v: Vec<_> = self.time_by_method.iter().collect();
        v.sort_by(|a, b| b.1.cmp(a.1));
        v.iter().take(n).map(|(m, d)| format!("{m} {:.1} s", d.as_secs_f64())).collect::<Vec<_>>().join(", ")
    }

    /// Adds the counts of another run (one per worker).
    pub fn merge(&mut self, other: Stats) {
        self.cases += other.cases;
        for (k, v) in other.by_label {
            *self.by_label.entry(k).or_default() += v;
        }
        for (k, v) in other.by_code {
            *self.by_code.entry(k).or_default() += v;
        }
        for (k, (n, first)) in other.violations {
            self.violations.entry(k).or_insert((0, first)).0 += n;
        }
        if other.max_status_bytes.0 > self.max_status_bytes.0 {
            self.max_status_bytes = other.max_status_bytes;
        }
        for (k, v) in other.time_by_method {
            *self.time_by_method.entry(k).or_default() += v;
        }
    }

    pub fn record(&mut self, method: &str, case: &Case, caller: &str, result: &Result<Bytes, Status>, took: Duration) {
        self.cases += 1;
        *self.time_by_method.entry(method.to_owned()).or_default() += took;
        let (label, code) = match result {
            Ok(_) => ("OK".to_owned(), Code::Ok),
            Err(s) => (Failure::of(s).label(), s.code()),
        };
        *self.by_label.entry(label.clone()).or_default() += 1;
        *self.by_code.entry(code_name(code)).or_default() += 1;
        if let Err(s) = result {
            let f = Failure::of(s);
            let violation = f.design_violation().or_else(|| (!f.from_server).then(|| f.label()));
            let where_ =
                format!("case {} ({:?}, as {caller}, {} bytes): {}", case.index, case.kind, case.body.len(), f.message);
            if let Some(v) = violation {
                let e = self.violations.entry(format!("{method}: {v}")).or_insert((0, where_.clone()));
                e.0 += 1;
            }
            if f.status_bytes > self.max_status_bytes.0 {
                self.max_status_bytes = (f.status_bytes, format!("{method} {where_}"));
            }
        }
    }
}

/// A client connection for the fuzzer: one per worker, so a connection-level failure is
/// charged to the case that caused it; up to 8 MiB of headers accepted, so an oversized
/// answer is measured rather than refused by the client.
pub fn connection(to: std::net::SocketAddr) -> Channel {
    crate::harness::maru::endpoint(to).http2_max_header_list_size(8 << 20).connect_lazy()
}

#[test]
fn cases_are_reproducible_and_random_ones_decode() {
    let methods = methods();
    let known = Known { strings: vec!["known-id".into()] };
    let started = std::time::Instant::now();
    for i in 0..2_000 {
        let a = case(7, i, &methods, 3, &known);
        let b = case(7, i, &methods, 3, &known);
        assert_eq!((a.method, a.caller, a.kind, &a.body), (b.method, b.caller, b.kind, &b.body), "case {i}");
        if a.kind == Kind::Random {
            let desc = methods[a.method].input.clone();
            prost_reflect::DynamicMessage::decode(desc, a.body.clone()).expect("a random case is a valid message");
        }
    }
    println!("2000 cases generated twice in {:?}", started.elapsed());
    assert_ne!(case(7, 1, &methods, 3, &known).body, case(8, 1, &methods, 3, &known).body, "the seed matters");
}
