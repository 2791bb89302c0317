//! The object store behind media (`object_store`): a local directory by default, an
//! S3-compatible bucket when configured. Every failure of the store is counted
//! (`maru_media_storage_errors_total{op}`) and answered UNAVAILABLE `MEDIA_STORAGE_UNAVAILABLE`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use futures::StreamExt as _;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::signer::Signer as _;
use object_store::{ObjectStore, ObjectStoreExt as _, PutPayload, WriteMultipart};
use secrecy::ExposeSecret as _;
use sha2::{Digest as _, Sha256};

use super::config::{MediaBackend, MediaSettings};
use crate::error::{AppError, Reason};

/// The store and, for S3, its URL signer.
#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    s3: Option<Arc<AmazonS3>>,
}

/// An error of the store, as clients see it (the cause is logged).
pub fn storage_error(op: &'static str, err: &object_store::Error) -> AppError {
    metrics::counter!("maru_media_storage_errors_total", "op" => op).increment(1);
    tracing::warn!(op, error = %err, "object store failed");
    AppError::Retry {
        code: tonic::Code::Unavailable,
        reason: Reason::MediaStorageUnavailable,
        message: "the media store is unavailable; retry shortly".into(),
        retry_after: Duration::from_secs(1),
        metadata: Default::default(),
    }
}

/// The storage operations, the closed set of the `op` label.
pub const OPS: [&str; 6] = ["head", "get", "put", "delete", "sign", "write"];

impl Storage {
    /// The store of `s`, opened once per process and settings (answers that show attached media
    /// sign URLs on every call: no new S3 client each time).
    pub fn shared(s: &MediaSettings) -> anyhow::Result<Self> {
        use std::collections::HashMap;
        use std::sync::{Mutex, OnceLock, PoisonError};
        static OPEN: OnceLock<Mutex<HashMap<String, Storage>>> = OnceLock::new();
        // Every setting the store is built from (secrets by their serialisation: masked, so
        // the credentials are compared by presence; a rotation needs a restart anyway).
        let key = serde_json::to_string(s)?;
        let open = OPEN.get_or_init(Default::default);
        if let Some(st) = open.lock().unwrap_or_else(PoisonError::into_inner).get(&key) {
            return Ok(st.clone());
        }
        let st = Self::from_settings(s)?;
        open.lock().unwrap_or_else(PoisonError::into_inner).insert(key, st.clone());
        Ok(st)
    }

    /// The configured store; the local backend's directory is created here.
    pub fn from_settings(s: &MediaSettings) -> anyhow::Result<Self> {
        match s.backend {
            MediaBackend::Local => {
                std::fs::create_dir_all(&s.data_dir)
                    .with_context(|| format!("creating media.data_dir {}", s.data_dir))?;
                let fs = LocalFileSystem::new_with_prefix(&s.data_dir)
                    .with_context(|| format!("opening media.data_dir {}", s.data_dir))?
                    .with_automatic_cleanup(true);
                Ok(Self { store: Arc::new(fs), s3: None })
            }
            MediaBackend::S3 => {
                let mut b = AmazonS3Builder::new()
                    .with_bucket_name(&s.s3_bucket)
                    .with_region(&s.s3_region)
                    .with_allow_http(s.s3_allow_http);
                if !s.s3_endpoint.is_empty() {
                    // Path-style requests: S3-compatible servers rarely have per-bucket hosts.
                    b = b.with_endpoint(&s.s3_endpoint).with_virtual_hosted_style_request(false);
                }
                if let Some(k) = &s.s3_access_key_id {
                    b = b.with_access_key_id(k.expose_secret());
                }
                if let Some(k) = &s.s3_secret_access_key {
                    b = b.with_secret_access_key(k.expose_secret());
                }
                let s3 = Arc::new(b.build().context("configuring the media S3 bucket")?);
                Ok(Self { store: s3.clone(), s3: Some(s3) })
            }
        }
    }

    pub fn is_s3(&self) -> bool {
        self.s3.is_some()
    }

    /// The size of the object, `None` when it does not exist.
    pub async fn size(&self, key: &str) -> Result<Option<u64>, AppError> {
        match self.store.head(&Path::from(key)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(storage_error("head", &e)),
        }
    }

    /// The first `n` bytes of the object (fewer if it is shorter).
    pub async fn head_bytes(&self, key: &str, n: u64, size: u64) -> Result<Bytes, AppError> {
        let end = n.min(size);
        if end == 0 {
            return Ok(Bytes::new());
        }
        self.store.get_range(&Path::from(key), 0..end).await.map_err(|e| storage_error("get", &e))
    }

    /// SHA-256 of the object, read as a stream (never held whole).
    pub async fn sha256(&self, key: &str) -> Result<[u8; 32], AppError> {
        let got = self.store.get(&Path::from(key)).await.map_err(|e| storage_error("get", &e))?;
        let mut stream = got.into_stream();
        let mut hash = Sha256::new();
        while let Some(chunk) = stream.next().await {
            hash.update(chunk.map_err(|e| storage_error("get", &e))?);
        }
        Ok(hash.finalize().into())
    }

    /// The whole object (processing decodes it; its size was checked against the purpose's
    /// limit before).
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, AppError> {
        match self.store.get(&Path::from(key)).await {
            Ok(r) => r.bytes().await.map(Some).map_err(|e| storage_error("get", &e)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(storage_error("get", &e)),
        }
    }

    /// Writes `bytes` at `key`, replacing what is there (variants: idempotent).
    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), AppError> {
        self.store
            .put(&Path::from(key), PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|e| storage_error("put", &e))
    }

    /// Deletes the object; a missing one is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), AppError> {
        match self.store.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(storage_error("delete", &e)),
        }
    }

    /// A streaming writer to `key`, buffering at most `chunk` bytes before each write.
    pub async fn writer(&self, key: &str, chunk: usize) -> Result<WriteMultipart, AppError> {
        let upload = self.store.put_multipart(&Path::from(key)).await.map_err(|e| storage_error("write", &e))?;
        Ok(WriteMultipart::new_with_chunk_size(upload, chunk))
    }

    /// A presigned URL for `method` on `key` (S3 only).
    pub async fn presign(&self, method: http::Method, key: &str, ttl: Duration) -> Result<Option<String>, AppError> {
        let Some(s3) = &self.s3 else { return Ok(None) };
        s3.signed_url(method, &Path::from(key), ttl)
            .await
            .map(|u| Some(u.to_string()))
            .map_err(|e| storage_error("sign", &e))
    }
}
