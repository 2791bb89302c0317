//! Media use cases: CreateUpload, CompleteUpload, GetMedia. Who may do what: only the owner
//! completes an upload; the owner (and admins) read a media, and so does anyone who may read
//! what it is attached to (a post they see); to anyone else it does not exist (NOT_FOUND
//! `MEDIA_NOT_FOUND`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::model::{ImageType, Purpose, SNIFF_BYTES, State};
use super::storage::Storage;
use super::store::{self, MediaRow, NewMedia};
use super::token;
use crate::caller::Caller;
use crate::error::{AppError, AppResult, Reason, Violations};
use crate::idempotency::{self, RequestId};
use crate::state::AppState;

/// A validated CreateUpload.
#[derive(Debug, Clone, Serialize)]
pub struct CreateUpload {
    pub purpose: Purpose,
    pub content_type: String,
    pub size_bytes: u64,
    #[serde(skip)]
    pub sha256: Option<[u8; 32]>,
    /// In the fingerprint instead of the raw bytes.
    pub sha256_hex: String,
    #[serde(skip)]
    pub request_id: Option<RequestId>,
}

/// What CreateUpload answers (also its idempotent replay).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadTicket {
    pub media_id: Uuid,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub expires_at: DateTime<Utc>,
}

/// A media as the API shows it.
#[derive(Debug, Clone)]
pub struct MediaView {
    pub media: MediaRow,
    pub variants: Vec<VariantView>,
}

#[derive(Debug, Clone)]
pub struct VariantView {
    pub name: String,
    pub content_type: String,
    pub width: i32,
    pub height: i32,
    pub size_bytes: i64,
    pub url: String,
    pub url_expires_at: DateTime<Utc>,
}

fn counted(purpose: Purpose, outcome: &'static str) {
    metrics::counter!("maru_media_uploads_total", "purpose" => purpose.as_str(), "outcome" => outcome).increment(1);
}

/// The closed set of the `outcome` label of `maru_media_uploads_total`.
pub const UPLOAD_OUTCOMES: [&str; 6] =
    ["created", "quota_exceeded", "completed", "incomplete", "type_unsupported", "expired"];

/// Checks the request against the purpose's limits (every bad field at once).
pub fn validate(
    settings: &super::config::MediaSettings,
    purpose: i32,
    content_type: &str,
    size_bytes: i64,
    sha256: &str,
    request_id: &str,
) -> AppResult<CreateUpload> {
    let mut v = Violations::new();
    let purpose = v.check("purpose", Purpose::from_pb(purpose).ok_or_else(|| "must be a MediaPurpose".to_owned()));
    if let Some(p) = purpose {
        match ImageType::from_mime(content_type) {
            Some(t) if p.types().contains(&t) => {}
            _ => v.add(
                "content_type",
                format!(
                    "must be one of {} for {}",
                    p.types().iter().map(|t| t.mime()).collect::<Vec<_>>().join(", "),
                    p.as_str()
                ),
            ),
        }
        let max = p.max_bytes().min(settings.max_upload_bytes);
        if size_bytes < 1 || size_bytes as u64 > max {
            v.add("size_bytes", format!("must be 1 to {max} bytes for {}", p.as_str()));
        }
    }
    let sha = v.check("sha256", super::model::parse_sha256(sha256)).flatten();
    let rid = crate::fields::request_id(&mut v, request_id);
    v.finish()?;
    Ok(CreateUpload {
        purpose: purpose.expect("checked"),
        content_type: content_type.to_owned(),
        size_bytes: size_bytes as u64,
        sha256: sha,
        sha256_hex: sha256.to_owned(),
        request_id: rid,
    })
}

/// The base of the local backend's URLs.
fn public_url(state: &AppState) -> String {
    let base = &state.settings.media.public_url;
    if base.is_empty() {
        let addr = state.settings.grpc_addr();
        let host = if addr.ip().is_unspecified() { "127.0.0.1".to_owned() } else { addr.ip().to_string() };
        format!("http://{host}:{}", addr.port())
    } else {
        base.trim_end_matches('/').to_owned()
    }
}

fn object_key(owner: Uuid, media: Uuid) -> String {
    format!("media/{owner}/{media}/original")
}

/// The key of a variant.
pub fn variant_key(m: &MediaRow, variant: &str, ext: &str) -> String {
    format!("media/{}/{}/{variant}.{ext}", m.owner_id, m.id)
}

fn start_of_next_day(now: DateTime<Utc>) -> DateTime<Utc> {
    (now.date_naive() + chrono::Days::new(1)).and_hms_opt(0, 0, 0).expect("midnight exists").and_utc()
}

pub async fn create_upload(
    state: &AppState,
    storage: &Storage,
    caller: &Caller,
    cmd: CreateUpload,
) -> AppResult<UploadTicket> {
    let s = &state.settings.media;
    let now = state.clock.now();
    let mut tx = crate::db::begin(&state.db).await?;
    if let Some(done) =
        idempotency::replayed(state, &mut tx, "CreateUpload", caller, cmd.request_id.as_ref(), &cmd).await?
    {
        return Ok(done);
    }
    store::lock_owner_quota(&mut tx, caller.user_id).await?;
    let day = now.date_naive().and_hms_opt(0, 0, 0).expect("midnight exists").and_utc();
    let (n, bytes) = store::usage_since(&mut tx, caller.user_id, day).await?;
    let over_count = n >= i64::from(s.quota_uploads_per_day);
    let over_bytes = bytes as u64 + cmd.size_bytes > s.quota_bytes_per_day;
    if over_count || over_bytes {
        counted(cmd.purpose, "quota_exceeded");
        let retry_after = (start_of_next_day(now) - now).to_std().unwrap_or(Duration::from_secs(1));
        let (message, limit) = if over_count {
            (
                format!("daily upload quota reached: {n} of {} uploads today (UTC)", s.quota_uploads_per_day),
                format!("{} uploads/day", s.quota_uploads_per_day),
            )
        } else {
            (
                format!(
                    "daily upload quota reached: {bytes} bytes uploaded today, {} more would pass {} bytes",
                    cmd.size_bytes, s.quota_bytes_per_day
                ),
                format!("{} bytes/day", s.quota_bytes_per_day),
            )
        };
        return Err(AppError::Retry {
            code: tonic::Code::ResourceExhausted,
            reason: Reason::MediaQuotaExceeded,
            message,
            retry_after,
            metadata: [("limit".to_owned(), limit)].into(),
        });
    }
    let id = Uuid::now_v7();
    let key = object_key(caller.user_id, id);
    let ttl = Duration::from_secs(s.upload_ttl_s);
    let expires_at = now + chrono::Duration::seconds(s.upload_ttl_s as i64);
    store::insert(
        &mut tx,
        &NewMedia {
            id,
            owner_id: caller.user_id,
            purpose: cmd.purpose,
            declared_type: &cmd.content_type,
            size_bytes: cmd.size_bytes as i64,
            sha256: cmd.sha256.as_ref().map(|h| h.as_slice()),
            object_key: &key,
            upload_expires_at: expires_at,
        },
    )
    .await?;
    let url = match storage.presign(http::Method::PUT, &key, ttl).await? {
        Some(url) => url,
        None => format!(
            "{}/media/upload/{}",
            public_url(state),
            token::sign(state, token::UPLOAD, id, "", expires_at.timestamp())
        ),
    };
    let ticket = UploadTicket {
        media_id: id,
        url,
        headers: vec![("content-type".to_owned(), cmd.content_type.clone())],
        expires_at,
    };
    idempotency::remember(&mut tx, "CreateUpload", caller, cmd.request_id.as_ref(), &ticket).await?;
    crate::db::commit(&state.db, tx).await?;
    counted(cmd.purpose, "created");
    Ok(ticket)
}

fn media_not_found() -> AppError {
    AppError::not_found(Reason::MediaNotFound, "media")
}

fn incomplete(purpose: Purpose, message: String) -> AppError {
    counted(purpose, "incomplete");
    AppError::failed_precondition(Reason::MediaUploadIncomplete, message)
}

pub async fn complete_upload(state: &AppState, storage: &Storage, caller: &Caller, id: Uuid) -> AppResult<MediaView> {
    let m = store::get(&state.db, id).await?.filter(|m| m.owner_id == caller.user_id).ok_or_else(media_not_found)?;
    if m.state != State::Uploading {
        return view(state, storage, m).await;
    }
    let now = state.clock.now();
    let Some(size) = storage.size(&m.object_key).await? else {
        if m.upload_expires_at <= now {
            counted(m.purpose, "expired");
            return Err(AppError::failed_precondition(
                Reason::MediaUploadExpired,
                "the upload URL expired before the bytes arrived; create a new upload",
            ));
        }
        return Err(incomplete(m.purpose, "no bytes were uploaded yet: PUT them to the upload URL first".into()));
    };
    if size != m.size_bytes as u64 {
        return Err(incomplete(m.purpose, format!("{size} bytes were uploaded, {} were declared", m.size_bytes)));
    }
    if let Some(want) = &m.sha256 {
        let got = storage.sha256(&m.object_key).await?;
        if got.as_slice() != want.as_slice() {
            return Err(incomplete(
                m.purpose,
                format!("the uploaded bytes have SHA-256 {}, {} was declared", hex::encode(got), hex::encode(want)),
            ));
        }
    }
    let head = storage.head_bytes(&m.object_key, SNIFF_BYTES, size).await?;
    let Some(kind) = ImageType::sniff(&head) else {
        counted(m.purpose, "type_unsupported");
        return Err(AppError::failed_precondition(
            Reason::MediaTypeUnsupported,
            "the uploaded bytes are not a JPEG, PNG, WebP or GIF image",
        ));
    };
    if !m.purpose.types().contains(&kind) {
        counted(m.purpose, "type_unsupported");
        return Err(AppError::failed_precondition(
            Reason::MediaTypeUnsupported,
            format!("{} is not accepted for {}", kind.mime(), m.purpose.as_str()),
        ));
    }
    let mut tx = crate::db::begin(&state.db).await?;
    let Some(locked) = store::get_for_update(&mut tx, id).await? else { return Err(media_not_found()) };
    let fresh = locked.state == State::Uploading;
    if fresh {
        store::complete(&mut tx, id, kind.mime(), now).await?;
    }
    crate::db::commit(&state.db, tx).await?;
    if fresh {
        counted(m.purpose, "completed");
        metrics::counter!("maru_media_upload_bytes_total", "purpose" => m.purpose.as_str()).increment(size);
    }
    let m = store::get(&state.db, id).await?.ok_or_else(media_not_found)?;
    view(state, storage, m).await
}

/// Whether `caller` may see `m`.
fn may_see(caller: &Caller, m: &MediaRow) -> bool {
    m.owner_id == caller.user_id || caller.is_admin()
}

/// The owner and admins see a media; anyone else when it is attached to something they may
/// read (the attaching domain decides, see [`super::readers::register_reader`]).
pub async fn get_media(state: &AppState, storage: &Storage, caller: &Caller, id: Uuid) -> AppResult<MediaView> {
    let m = store::get(&state.db, id).await?.ok_or_else(media_not_found)?;
    if !may_see(caller, &m) && !super::readers::may_read_target(state, caller, &m).await? {
        return Err(media_not_found());
    }
    view(state, storage, m).await
}

/// The media with its variants' URLs (READY only).
async fn view(state: &AppState, storage: &Storage, m: MediaRow) -> AppResult<MediaView> {
    if m.state != State::Ready {
        return Ok(MediaView { media: m, variants: vec![] });
    }
    let rows = store::variants(&state.db, m.id).await?;
    view_with(state, storage, m, rows).await
}

/// The media with the URLs of `rows`, its variants (read already).
pub async fn view_with(
    state: &AppState,
    storage: &Storage,
    m: MediaRow,
    rows: Vec<store::VariantRow>,
) -> AppResult<MediaView> {
    let ttl = state.settings.media.url_ttl_s;
    let expires = state.clock.now() + chrono::Duration::seconds(ttl as i64);
    let mut variants = Vec::new();
    for v in rows {
        let url = match storage.presign(http::Method::GET, &v.object_key, Duration::from_secs(ttl)).await? {
            Some(url) => url,
            None => format!(
                "{}/media/{}",
                public_url(state),
                token::sign(state, token::DOWNLOAD, m.id, &v.name, expires.timestamp())
            ),
        };
        variants.push(VariantView {
            name: v.name,
            content_type: v.content_type,
            width: v.width,
            height: v.height,
            size_bytes: v.size_bytes,
            url,
            url_expires_at: expires,
        });
    }
    Ok(MediaView { media: m, variants })
}

/// The part size of an UploadMedia stream written to S3: S3 refuses multipart parts under
/// 5 MiB but the last (`EntityTooSmall` at the completion). With at most two in flight, a
/// stream holds at most about 11 MiB (two parts and a message), and never more than its file.
pub const S3_PART_BYTES: usize = 5 * 1024 * 1024;

/// The largest chunk of an UploadMedia stream.
pub const MAX_STREAM_CHUNK: usize = 1024 * 1024;

/// UploadMedia (native clients): reserves the media as CreateUpload does (limits, quota,
/// idempotency), streams `chunks` to the store in parts of `http::CHUNK_BYTES` (S3:
/// [`S3_PART_BYTES`]; at most two in flight: a bounded buffer, whatever the file's size),
/// enforcing the declared size as the bytes arrive, then checks and queues it as
/// CompleteUpload does. Until the upload URL's expiry at the latest: a stream silent past it is
/// refused. A refused or broken stream leaves the media UPLOADING (its upload released, the
/// partial object discarded) for the clean-up.
pub async fn upload_media<S>(
    state: &AppState,
    storage: &Storage,
    caller: &Caller,
    cmd: CreateUpload,
    mut chunks: S,
) -> AppResult<MediaView>
where
    S: futures::Stream<Item = AppResult<bytes::Bytes>> + Unpin,
{
    use futures::StreamExt as _;
    let purpose = cmd.purpose;
    let ticket = create_upload(state, storage, caller, cmd).await?;
    let now = state.clock.now();
    let Some(m) = store::start_upload(&state.db, ticket.media_id, now).await? else {
        // An idempotent replay of a stream that got this far already: answer the media.
        let m = store::get(&state.db, ticket.media_id).await?.ok_or_else(media_not_found)?;
        if m.state != State::Uploading {
            return view(state, storage, m).await;
        }
        return Err(incomplete(purpose, "this upload is already being received on another stream".into()));
    };
    let release = || async {
        if let Err(e) = store::release_upload(&state.db, m.id).await {
            tracing::warn!(error = %e, media_id = %m.id, "releasing a refused upload failed");
        }
    };
    let declared = m.size_bytes as u64;
    let deadline = tokio::time::Instant::now()
        + (ticket.expires_at - now).to_std().unwrap_or(Duration::from_secs(state.settings.media.upload_ttl_s));
    // S3 refuses multipart parts under 5 MiB (but the last): bigger parts there.
    let part = if storage.is_s3() { S3_PART_BYTES } else { super::http::CHUNK_BYTES };
    let mut writer = match storage.writer(&m.object_key, part).await {
        Ok(w) => w,
        Err(e) => {
            release().await;
            return Err(e);
        }
    };
    let mut total: u64 = 0;
    let refusal = loop {
        let next = match tokio::time::timeout_at(deadline, chunks.next()).await {
            Ok(next) => next,
            Err(_) => {
                break Some(AppError::refused(
                    tonic::Code::DeadlineExceeded,
                    Reason::MediaUploadExpired,
                    "the upload took longer than media.upload_ttl_s; create a new upload",
                ));
            }
        };
        let chunk = match next {
            None => break None,
            Some(Ok(c)) => c,
            Some(Err(e)) => break Some(e),
        };
        if chunk.len() > MAX_STREAM_CHUNK {
            break Some(AppError::invalid("chunk", format!("at most {MAX_STREAM_CHUNK} bytes per message")));
        }
        total += chunk.len() as u64;
        if total > declared {
            counted(purpose, "incomplete");
            break Some(AppError::invalid("size_bytes", format!("{declared} bytes were declared and more were sent")));
        }
        if let Err(e) = writer.wait_for_capacity(2).await {
            break Some(super::storage::storage_error("write", &e));
        }
        writer.put(chunk);
    };
    let refusal = refusal.or_else(|| {
        (total != declared).then(|| incomplete(purpose, format!("{total} bytes were sent, {declared} were declared")))
    });
    if let Some(e) = refusal {
        let _ = writer.abort().await;
        release().await;
        return Err(e);
    }
    if let Err(e) = writer.finish().await {
        release().await;
        return Err(super::storage::storage_error("write", &e));
    }
    complete_upload(state, storage, caller, m.id).await
}
