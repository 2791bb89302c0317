//! One unary call over either transport: native gRPC (HTTP/2, tonic's generic client with
//! prost) or gRPC-web over HTTP/1.1 ([`WebClient`]). A journey written against [`Api`] runs
//! unchanged as the `feed` scenario and as the browser's `grpc-web` scenario, and records
//! under `GRPC Name` or `GRPC-WEB Name`.

use goose::goose::GooseUser;
use http::uri::PathAndQuery;
use prost::Message;
use tonic::Status;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::Channel;

use crate::rpc::{Budget, Failed, GRPC, GRPC_WEB, TxResult, record, request};
use crate::web::WebClient;

#[derive(Clone)]
pub enum Api {
    Grpc(Channel),
    Web(WebClient),
}

impl Api {
    /// goose's method column for this transport.
    pub fn method(&self) -> &'static str {
        match self {
            Api::Grpc(_) => GRPC,
            Api::Web(_) => GRPC_WEB,
        }
    }

    /// Calls `path` (`/maru.v1.FeedService/ListPosts`) with an optional bearer token.
    pub async fn unary<Req, Resp>(
        &self,
        path: &'static str,
        msg: Req,
        bearer: Option<&AsciiMetadataValue>,
    ) -> Result<Resp, Status>
    where
        Req: Message + Send + Sync + 'static,
        Resp: Message + Default + Send + Sync + 'static,
    {
        match self {
            Api::Grpc(channel) => {
                let mut grpc = tonic::client::Grpc::new(channel.clone());
                grpc.ready().await.map_err(|e| Status::unavailable(format!("channel not ready: {e}")))?;
                let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
                let reply = grpc.unary(request(msg, bearer, None), PathAndQuery::from_static(path), codec).await?;
                Ok(reply.into_inner())
            }
            Api::Web(web) => {
                let auth = bearer.and_then(|b| b.to_str().ok());
                let metadata: Vec<(&'static str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
                web.unary(path, &msg, &metadata).await
            }
        }
    }

    /// [`Api::unary`] timed and recorded in goose under the method's name (the last segment
    /// of `path`).
    pub async fn call<Req, Resp>(
        &self,
        user: &mut GooseUser,
        budget: &Budget,
        path: &'static str,
        msg: Req,
        bearer: Option<&AsciiMetadataValue>,
    ) -> TxResult<Result<Resp, Failed>>
    where
        Req: Message + Send + Sync + 'static,
        Resp: Message + Default + Send + Sync + 'static,
    {
        let name = path.rsplit('/').next().unwrap_or(path);
        record(user, budget, self.method(), name, self.unary(path, msg, bearer)).await
    }
}
