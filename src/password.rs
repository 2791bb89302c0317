//! Argon2id password hashing off the async runtime, with a bounded number of hashes at once so
//! a sign-up storm queues instead of starving every other RPC of CPU.
//!
//! Each hash needs `m_cost` KiB of working memory (19 MiB by default). Allocating it per hash
//! let glibc keep the freed blocks in per-thread arenas: after a login storm the server held
//! 500+ MiB it no longer used (the `feed` load scenario measured it). So the working memory is
//! allocated once per concurrent hash and reused: hashing costs at most
//! `max_concurrent_hashes × m_cost` of memory, for good.

use std::sync::Arc;
use std::time::Instant;

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString, rand_core::OsRng};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use parking_lot::Mutex;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

use crate::error::{AppError, AppResult};

#[derive(Clone)]
pub struct Passwords {
    permits: Arc<Semaphore>,
    /// Working memory of the hashes in flight: one buffer per permit, reused.
    memory: Arc<Mutex<Vec<Vec<Block>>>>,
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
        let mut scratch = blocks_for(&Params::default());
        let dummy = hash_with(b"not a real password", &mut scratch).unwrap_or_default();
        Self {
            permits: Arc::new(Semaphore::new(n)),
            memory: Arc::new(Mutex::new(vec![scratch])),
            dummy_hash: dummy.into(),
        }
    }

    pub async fn hash(&self, password: &SecretString) -> AppResult<String> {
        let password = password.clone();
        self.run("hash", move |memory| hash_with(password.expose_secret().as_bytes(), memory)).await
    }

    /// True when `password` matches `hash`; with no hash, burns the same time and says false.
    pub async fn verify(&self, password: &SecretString, hash: Option<String>) -> AppResult<bool> {
        let password = password.clone();
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy_hash.to_string());
        self.run("verify", move |memory| Ok(verify_with(password.expose_secret().as_bytes(), &hash, memory)? && known))
            .await
    }

    async fn run<T: Send + 'static>(
        &self,
        op: &'static str,
        f: impl FnOnce(&mut Vec<Block>) -> AppResult<T> + Send + 'static,
    ) -> AppResult<T> {
        let queued = Instant::now();
        let _permit = self.permits.acquire().await.map_err(|_| AppError::internal("password hasher closed"))?;
        metrics::histogram!("maru_password_hash_wait_seconds").record(queued.elapsed().as_secs_f64());
        let started = Instant::now();
        // A permit holder always finds a buffer once every permit has made one.
        let mut memory = self.memory.lock().pop().unwrap_or_default();
        let task = tokio::task::spawn_blocking(move || {
            let out = f(&mut memory);
            (out, memory)
        });
        let (out, memory) = task.await.map_err(|e| AppError::internal(format!("hash task: {e}")))?;
        self.memory.lock().push(memory);
        metrics::histogram!("maru_password_hash_seconds", "op" => op).record(started.elapsed().as_secs_f64());
        out
    }
}

fn blocks_for(params: &Params) -> Vec<Block> {
    vec![Block::default(); params.block_count()]
}

/// Grows `memory` to what `params` needs (a stored hash with a larger `m_cost`).
fn ensure(memory: &mut Vec<Block>, params: &Params) {
    if memory.len() < params.block_count() {
        memory.resize(params.block_count(), Block::default());
    }
}

fn internal(what: &str, e: impl std::fmt::Display) -> AppError {
    AppError::internal(format!("argon2 {what}: {e}"))
}

/// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`) with the default parameters, as
/// `PasswordHasher::hash_password` writes it, computed in `memory`.
fn hash_with(password: &[u8], memory: &mut Vec<Block>) -> AppResult<String> {
    let argon = Argon2::default();
    ensure(memory, argon.params());
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_buf = [0u8; 64];
    let salt_bytes = salt.as_salt().decode_b64(&mut salt_buf).map_err(|e| internal("salt", e))?;
    let len = argon.params().output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let output = Output::init_with(len, |out| {
        argon.hash_password_into_with_memory(password, salt_bytes, out, &mut memory[..]).map_err(Into::into)
    })
    .map_err(|e| internal("hash", e))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(argon.params()).map_err(|e| internal("params", e))?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the PHC string `stored` (any Argon2 variant, version and
/// parameters), computed in `memory`; the comparison is constant-time.
fn verify_with(password: &[u8], stored: &str, memory: &mut Vec<Block>) -> AppResult<bool> {
    let phc = PasswordHash::new(stored).map_err(|e| internal("stored hash", e))?;
    let algorithm = Algorithm::try_from(phc.algorithm).map_err(|e| internal("stored hash", e))?;
    let version = phc.version.map(Version::try_from).transpose().map_err(|e| internal("stored hash", e))?;
    let params = Params::try_from(&phc).map_err(|e| internal("stored hash", e))?;
    let (Some(expected), Some(salt)) = (phc.hash, phc.salt) else {
        return Err(AppError::internal("stored hash without salt or output"));
    };
    let mut salt_buf = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_buf).map_err(|e| internal("stored salt", e))?;
    ensure(memory, &params);
    let argon = Argon2::new(algorithm, version.unwrap_or_default(), params);
    let computed = Output::init_with(expected.len(), |out| {
        argon.hash_password_into_with_memory(password, salt_bytes, out, &mut memory[..]).map_err(Into::into)
    })
    .map_err(|e| internal("verify", e))?;
    Ok(computed == expected)
}

#[cfg(test)]
mod tests {
    use argon2::password_hash::{PasswordHasher, PasswordVerifier};

    use super::*;

    #[test]
    fn hashes_are_standard_phc_strings_both_ways() {
        let mut memory = Vec::new();
        let ours = hash_with(b"correct horse", &mut memory).unwrap();
        assert!(ours.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{ours}");
        // What the argon2 crate itself writes and reads (hashes stored before this change).
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default().verify_password(b"correct horse", &parsed).is_ok());
        assert!(Argon2::default().verify_password(b"wrong horse", &parsed).is_err());
        let salt = SaltString::generate(&mut OsRng);
        let theirs = Argon2::default().hash_password(b"battery staple", &salt).unwrap().to_string();
        assert!(verify_with(b"battery staple", &theirs, &mut memory).unwrap());
        assert!(!verify_with(b"battery stapler", &theirs, &mut memory).unwrap());
    }

    #[test]
    fn other_parameters_and_variants_verify_and_grow_the_memory() {
        let params = Params::new(32 * 1024, 1, 1, None).unwrap();
        let salt = SaltString::generate(&mut OsRng);
        let stored = Argon2::new(Algorithm::Argon2i, Version::V0x10, params.clone())
            .hash_password(b"pw", &salt)
            .unwrap()
            .to_string();
        let mut memory = blocks_for(&Params::default());
        assert!(verify_with(b"pw", &stored, &mut memory).unwrap());
        assert!(!verify_with(b"pW", &stored, &mut memory).unwrap());
        assert_eq!(memory.len(), params.block_count());
        assert!(verify_with(b"pw", "not a hash", &mut memory).is_err());
    }
}
