//! A minimal OTLP/gRPC trace receiver for the live exemplar check (`monitoring/exemplars_live.sh`):
//! accepts every export and prints one line per received span, `<trace id> <span name>`, on
//! stdout. Loopback only.
//!
//! ```sh
//! cargo build --example otlp_sink
//! target/debug/examples/otlp_sink 127.0.0.1:4317 > spans.txt &
//! MARU__TRACE__OTLP_ENDPOINT=http://127.0.0.1:4317 target/debug/maru serve
//! ```

use std::io::Write;
use std::net::SocketAddr;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};

struct Sink;

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut out = std::io::stdout().lock();
        for rs in request.into_inner().resource_spans {
            for ss in rs.scope_spans {
                for span in ss.spans {
                    let id: String = span.trace_id.iter().map(|b| format!("{b:02x}")).collect();
                    let _ = writeln!(out, "{id} {}", span.name);
                }
            }
        }
        let _ = out.flush();
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let addr: SocketAddr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:4317".into()).parse()?;
    anyhow::ensure!(addr.ip().is_loopback(), "otlp_sink listens on a loopback address only");
    tonic::transport::Server::builder().add_service(TraceServiceServer::new(Sink)).serve(addr).await?;
    Ok(())
}
