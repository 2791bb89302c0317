//! Log capture for the whole test process: one global subscriber writes maru's JSON log lines
//! into memory and pushes them through the real `tracing-loki` layer to a local receiver that
//! decodes the Loki push format (snappy-compressed protobuf).

#![allow(dead_code)]

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Bytes;
use prost::Message;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Loki's `logproto.PushRequest`, as tracing-loki encodes it.
#[derive(Clone, PartialEq, Message)]
pub struct PushRequest {
    #[prost(message, repeated, tag = "1")]
    pub streams: Vec<StreamAdapter>,
}

#[derive(Clone, PartialEq, Message)]
pub struct StreamAdapter {
    #[prost(string, tag = "1")]
    pub labels: String,
    #[prost(message, repeated, tag = "2")]
    pub entries: Vec<EntryAdapter>,
}

#[derive(Clone, PartialEq, Message)]
pub struct EntryAdapter {
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<prost_types::Timestamp>,
    #[prost(string, tag = "2")]
    pub line: String,
}

/// What the process logged: stdout JSON lines and Loki pushes (labels, line).
#[derive(Default)]
pub struct Captured {
    pub stdout: Mutex<Vec<u8>>,
    pub loki: Mutex<Vec<(String, String)>>,
}

impl Captured {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned()
    }
    pub fn loki_lines(&self) -> Vec<(String, String)> {
        self.loki.lock().unwrap().clone()
    }
}

#[derive(Clone)]
struct BufferWriter(Arc<Captured>);

impl Write for BufferWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.stdout.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BufferWriter {
    type Writer = BufferWriter;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Installs the capturing subscriber once (with a Loki receiver on its own runtime thread).
pub fn capture() -> Arc<Captured> {
    static CAPTURED: OnceLock<Arc<Captured>> = OnceLock::new();
    CAPTURED
        .get_or_init(|| {
            let captured = Arc::new(Captured::default());
            let (tx, rx) = std::sync::mpsc::channel();
            let sink = captured.clone();
            let writer = BufferWriter(captured.clone());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                    let url = format!("http://{}", listener.local_addr().unwrap());
                    let app = axum::Router::new().route(
                        "/loki/api/v1/push",
                        axum::routing::post(move |headers: axum::http::HeaderMap, body: Bytes| {
                            let sink = sink.clone();
                            async move {
                                assert_eq!(headers.get("content-encoding").unwrap(), "snappy");
                                assert_eq!(headers.get("content-type").unwrap(), "application/x-protobuf");
                                let raw = snap::raw::Decoder::new().decompress_vec(&body).expect("snappy block");
                                let push = PushRequest::decode(raw.as_slice()).expect("PushRequest protobuf");
                                let mut out = sink.loki.lock().unwrap();
                                for s in push.streams {
                                    for e in s.entries {
                                        out.push((s.labels.clone(), e.line));
                                    }
                                }
                                axum::http::StatusCode::NO_CONTENT
                            }
                        }),
                    );
                    let settings = maru::config::Settings::default();
                    let (loki, task) = maru::telemetry::loki_layer(&settings, &url).unwrap();
                    let filter = || EnvFilter::new("info,maru=debug,sqlx::postgres::notice=warn");
                    tracing_subscriber::registry()
                        .with(maru::telemetry::json_layer(writer).with_filter(filter()))
                        .with(loki.with_filter(filter()))
                        .with(maru::telemetry::sqlx_metrics_layer())
                        .init();
                    tx.send(()).unwrap();
                    tokio::spawn(task);
                    axum::serve(listener, app).await.unwrap();
                });
            });
            rx.recv().unwrap();
            captured
        })
        .clone()
}
