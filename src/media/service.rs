//! `maru.v1.MediaService`: thin handlers over [`super::ops`].

use tonic::{Request, Response, Status};

use super::ops::{self, MediaView};
use super::storage::Storage;
use crate::error::{AppError, Reason};
use crate::fields::{required_id, timestamp};
use crate::grpc::{caller, pb};
use crate::state::AppState;

pub struct MediaApi {
    pub state: AppState,
    pub storage: Storage,
}

impl MediaApi {
    /// CreateUpload's fields (also UploadMedia's first message), checked.
    fn validate(&self, r: &pb::CreateUploadRequest) -> Result<ops::CreateUpload, AppError> {
        ops::validate(&self.state.settings.media, r.purpose, &r.content_type, r.size_bytes, &r.sha256, &r.request_id)
    }
}

pub fn media_to_pb(v: MediaView) -> pb::Media {
    let m = v.media;
    pb::Media {
        id: m.id.to_string(),
        purpose: m.purpose.to_pb() as i32,
        state: m.state.to_pb() as i32,
        content_type: m.content_type.unwrap_or_default(),
        size_bytes: m.size_bytes,
        failure_reason: m.failure_reason.unwrap_or_default(),
        variants: v
            .variants
            .into_iter()
            .map(|x| pb::MediaVariant {
                name: x.name,
                content_type: x.content_type,
                width: x.width,
                height: x.height,
                size_bytes: x.size_bytes,
                url: x.url,
                url_expires_at: Some(timestamp(x.url_expires_at)),
            })
            .collect(),
        created_at: Some(timestamp(m.created_at)),
    }
}

#[tonic::async_trait]
impl pb::media_service_server::MediaService for MediaApi {
    async fn create_upload(
        &self,
        req: Request<pb::CreateUploadRequest>,
    ) -> Result<Response<pb::CreateUploadResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let cmd = self.validate(&r)?;
        let t = ops::create_upload(&self.state, &self.storage, &caller, cmd).await?;
        Ok(Response::new(pb::CreateUploadResponse {
            media_id: t.media_id.to_string(),
            upload_url: t.url,
            upload_headers: t.headers.into_iter().map(|(name, value)| pb::UploadHeader { name, value }).collect(),
            expires_at: Some(timestamp(t.expires_at)),
        }))
    }

    async fn complete_upload(
        &self,
        req: Request<pb::CompleteUploadRequest>,
    ) -> Result<Response<pb::CompleteUploadResponse>, Status> {
        let caller = caller(&req)?;
        let id = required_id("media_id", &req.get_ref().media_id)?;
        let v = ops::complete_upload(&self.state, &self.storage, &caller, id).await?;
        Ok(Response::new(pb::CompleteUploadResponse { media: Some(media_to_pb(v)) }))
    }

    async fn upload_media(
        &self,
        req: Request<tonic::Streaming<pb::UploadMediaRequest>>,
    ) -> Result<Response<pb::UploadMediaResponse>, Status> {
        use futures::StreamExt as _;
        let caller = caller(&req)?;
        let mut stream = req.into_inner();
        let first = stream.next().await.transpose()?;
        let Some(pb::upload_media_request::Part::Metadata(r)) = first.and_then(|m| m.part) else {
            return Err(AppError::invalid("metadata", "the first message must carry the upload's metadata").into());
        };
        let cmd = self.validate(&r)?;
        let chunks = stream.map(|m| match m.map(|m| m.part) {
            Ok(Some(pb::upload_media_request::Part::Chunk(c))) => Ok(bytes::Bytes::from(c)),
            Ok(_) => Err(AppError::invalid("chunk", "every message after the first must carry a chunk")),
            Err(status) => {
                Err(AppError::refused(status.code(), Reason::MediaUploadIncomplete, "the upload stream broke off"))
            }
        });
        let v = ops::upload_media(&self.state, &self.storage, &caller, cmd, chunks).await?;
        Ok(Response::new(pb::UploadMediaResponse { media: Some(media_to_pb(v)) }))
    }

    async fn get_media(&self, req: Request<pb::GetMediaRequest>) -> Result<Response<pb::GetMediaResponse>, Status> {
        let caller = caller(&req)?;
        let id = required_id("media_id", &req.get_ref().media_id)?;
        let v = ops::get_media(&self.state, &self.storage, &caller, id).await?;
        Ok(Response::new(pb::GetMediaResponse { media: Some(media_to_pb(v)) }))
    }
}
