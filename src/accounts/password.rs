//! Argon2id password hashing off the async runtime, with a bounded number of hashes at once so
//! a sign-up storm queues instead of starving every other RPC of CPU.

use std::sync::Arc;
use std::time::Instant;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString, rand_core::OsRng};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

use crate::error::{AppError, AppResult};

#[derive(Clone)]
pub struct Passwords {
    permits: Arc<Semaphore>,
    /// Verified when a login names no account, so both failures cost the same time.
    dummy_hash: Arc<str>,
}

impl Passwords {
    /// `max_concurrent` 0 = number of CPUs.
    pub fn new(max_concurrent: usize) -> Self {
        let n = if max_concurrent == 0 {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
        } else {
            max_concurrent
        };
        let salt = SaltString::generate(&mut OsRng);
        let dummy =
            Argon2::default().hash_password(b"not a real password", &salt).map(|h| h.to_string()).unwrap_or_default();
        Self { permits: Arc::new(Semaphore::new(n)), dummy_hash: dummy.into() }
    }

    pub async fn hash(&self, password: &SecretString) -> AppResult<String> {
        let password = password.clone();
        self.run("hash", move || {
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default()
                .hash_password(password.expose_secret().as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| AppError::internal(format!("argon2 hash: {e}")))
        })
        .await
    }

    /// True when `password` matches `hash`; with no hash, burns the same time and says false.
    pub async fn verify(&self, password: &SecretString, hash: Option<String>) -> AppResult<bool> {
        let password = password.clone();
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy_hash.to_string());
        self.run("verify", move || {
            let parsed = PasswordHash::new(&hash).map_err(|e| AppError::internal(format!("stored hash: {e}")))?;
            Ok(known && Argon2::default().verify_password(password.expose_secret().as_bytes(), &parsed).is_ok())
        })
        .await
    }

    async fn run<T: Send + 'static>(
        &self,
        op: &'static str,
        f: impl FnOnce() -> AppResult<T> + Send + 'static,
    ) -> AppResult<T> {
        let queued = Instant::now();
        let _permit = self.permits.acquire().await.map_err(|_| AppError::internal("password hasher closed"))?;
        metrics::histogram!("maru_password_hash_wait_seconds").record(queued.elapsed().as_secs_f64());
        let started = Instant::now();
        let out = tokio::task::spawn_blocking(f).await.map_err(|e| AppError::internal(format!("hash task: {e}")))?;
        metrics::histogram!("maru_password_hash_seconds", "op" => op).record(started.elapsed().as_secs_f64());
        out
    }
}
