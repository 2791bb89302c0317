//! The server's signing keys, each with a key id (`kid`), rotated without a restart.
//!
//! Access tokens ([`crate::tokens`]) and page tokens ([`crate::paging`]) are signed with the
//! **signing key** and verified with **any key of the ring**, so a key can be introduced,
//! promoted and retired while replicas keep running and nobody is logged out
//! (the procedure is in `docs/sessions.md`).
//!
//! Where the keys come from, first match wins:
//! 1. `auth.jwt_keyring_file`: one key per line, `<kid> <key>`; the **first** key signs, every
//!    key verifies; blank lines and `#` comments are ignored. kids are 1–64 characters of
//!    `[A-Za-z0-9._-]`, unique; keys are at least 32 bytes without spaces. The file is read
//!    again when its modification time changes (checked every `auth.keyring_reload_s`); a file
//!    that does not parse is refused with an error log and the ring in use stays.
//! 2. `auth.jwt_key`, else `auth.jwt_key_file`: one key, its kid derived from the key (the first
//!    8 bytes of its SHA-256, hex), so the kid stays the same across restarts and replicas.
//! 3. In development only: a random key.
//!
//! Metrics: `maru_auth_keyring_reloads_total{outcome=ok|error}`, `maru_auth_keys` (keys in the
//! ring).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use parking_lot::{Mutex, RwLock};
use rand::RngCore;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::config::{Environment, Settings};

/// Shortest key accepted (HS256 wants at least the hash size).
pub const MIN_KEY_BYTES: usize = 32;
const MAX_KID_CHARS: usize = 64;

/// One key and its id. The secret never appears in `Debug` output.
#[derive(Clone)]
pub struct Key {
    pub kid: String,
    secret: Vec<u8>,
}

impl Key {
    pub fn new(kid: impl Into<String>, secret: Vec<u8>) -> Self {
        Self { kid: kid.into(), secret }
    }

    /// A key whose kid is derived from the secret (stable across restarts and replicas).
    pub fn derived(secret: Vec<u8>) -> Self {
        let digest = Sha256::digest(&secret);
        let kid = digest[..8].iter().map(|b| format!("{b:02x}")).collect::<String>();
        Self { kid, secret }
    }

    pub fn secret(&self) -> &[u8] {
        &self.secret
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key").field("kid", &self.kid).field("secret", &"[masked]").finish()
    }
}

/// The keys in use: the first signs, all verify.
#[derive(Debug, Clone)]
pub struct KeySet {
    keys: Vec<Key>,
}

impl KeySet {
    /// `keys` must not be empty; the first one signs.
    pub fn new(keys: Vec<Key>) -> Self {
        assert!(!keys.is_empty(), "a key set has at least the signing key");
        Self { keys }
    }

    pub fn signing(&self) -> &Key {
        &self.keys[0]
    }

    pub fn get(&self, kid: &str) -> Option<&Key> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    pub fn all(&self) -> &[Key] {
        &self.keys
    }

    /// Parses a keyring file's text; the error names the line at fault (never its key).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut keys: Vec<Key> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let n = n + 1;
            let mut parts = line.split_whitespace();
            let (Some(kid), Some(secret), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(format!("line {n}: expected `<kid> <key>`"));
            };
            let kid_ok = kid.chars().count() <= MAX_KID_CHARS
                && kid.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
            if !kid_ok {
                return Err(format!("line {n}: the kid must be 1–{MAX_KID_CHARS} characters of [A-Za-z0-9._-]"));
            }
            if secret.len() < MIN_KEY_BYTES {
                return Err(format!("line {n}: the key of {kid} is shorter than {MIN_KEY_BYTES} bytes"));
            }
            if keys.iter().any(|k| k.kid == kid) {
                return Err(format!("line {n}: kid {kid} appears twice"));
            }
            keys.push(Key::new(kid, secret.as_bytes().to_vec()));
        }
        if keys.is_empty() {
            return Err("no key: the first `<kid> <key>` line is the signing key".into());
        }
        Ok(Self { keys })
    }
}

/// The key set in use, swapped atomically when its file changes.
pub struct Keyring {
    current: RwLock<Arc<KeySet>>,
    file: Option<PathBuf>,
    loaded: Mutex<Option<SystemTime>>,
}

impl Keyring {
    /// A fixed ring (tests, tools).
    pub fn fixed(keys: KeySet) -> Self {
        publish_size(&keys);
        Self { current: RwLock::new(Arc::new(keys)), file: None, loaded: Mutex::new(None) }
    }

    /// The ring the settings describe (see the module docs); the random development key is the
    /// only case that returns `true`.
    pub fn from_settings(settings: &Settings) -> anyhow::Result<(Self, bool)> {
        let auth = &settings.auth;
        if let Some(path) = &auth.jwt_keyring_file {
            let (keys, mtime) = read_file(path)?;
            publish_size(&keys);
            let ring =
                Self { current: RwLock::new(Arc::new(keys)), file: Some(path.clone()), loaded: Mutex::new(mtime) };
            return Ok((ring, false));
        }
        if let Some(key) = &auth.jwt_key {
            return Ok((Self::fixed(KeySet::new(vec![Key::derived(key.expose_secret().as_bytes().to_vec())])), false));
        }
        if let Some(path) = &auth.jwt_key_file {
            let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            return Ok((Self::fixed(KeySet::new(vec![Key::derived(bytes.trim_ascii().to_vec())])), false));
        }
        anyhow::ensure!(settings.env == Environment::Development, "auth.jwt_key is required in production");
        let mut key = vec![0u8; MIN_KEY_BYTES];
        rand::rng().fill_bytes(&mut key);
        Ok((Self::fixed(KeySet::new(vec![Key::derived(key)])), true))
    }

    /// The keys in use now.
    pub fn current(&self) -> Arc<KeySet> {
        self.current.read().clone()
    }

    /// Reads the keyring file again if it changed since it was last read. `Ok(true)` when a new
    /// ring is in use; an error leaves the ring in use as it was.
    pub fn reload(&self) -> anyhow::Result<bool> {
        let Some(path) = &self.file else { return Ok(false) };
        let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let mut loaded = self.loaded.lock();
        if mtime.is_some() && mtime == *loaded {
            return Ok(false);
        }
        let (keys, mtime) = read_file(path)?;
        publish_size(&keys);
        *self.current.write() = Arc::new(keys);
        *loaded = mtime;
        Ok(true)
    }
}

fn read_file(path: &Path) -> anyhow::Result<(KeySet, Option<SystemTime>)> {
    let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let keys = KeySet::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok((keys, mtime))
}

fn publish_size(keys: &KeySet) {
    metrics::gauge!("maru_auth_keys").set(keys.all().len() as f64);
}

/// Re-reads the keyring file every `every` until `stop` (a no-op without a keyring file).
pub async fn watch(ring: Arc<Keyring>, every: Duration, mut stop: watch::Receiver<bool>) {
    if ring.file.is_none() {
        return;
    }
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|v| *v) => return,
        }
        match ring.reload() {
            Ok(true) => {
                let keys = ring.current();
                let kids: Vec<&str> = keys.all().iter().map(|k| k.kid.as_str()).collect();
                tracing::info!(signing = %keys.signing().kid, kids = ?kids, "keyring reloaded");
                metrics::counter!("maru_auth_keyring_reloads_total", "outcome" => "ok").increment(1);
            }
            Ok(false) => {}
            Err(e) => {
                tracing::error!(error = %e, "keyring file refused; the keys in use stay");
                metrics::counter!("maru_auth_keyring_reloads_total", "outcome" => "error").increment(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn the_first_key_signs_and_every_key_verifies() {
        let set = KeySet::parse(&format!("# rotated 2026-12\n\nk2 {B}\n  k1 {A}  \n")).unwrap();
        assert_eq!(set.signing().kid, "k2");
        assert_eq!(set.get("k1").unwrap().secret(), A.as_bytes());
        assert_eq!(set.all().len(), 2);
        assert!(set.get("k3").is_none());
    }

    #[test]
    fn a_bad_file_is_refused_naming_the_line_but_not_the_key() {
        for (text, expected) in [
            (String::new(), "no key"),
            ("# only a comment".to_owned(), "no key"),
            (format!("k1 {A}\nk1 {B}"), "line 2: kid k1 appears twice"),
            ("k1 short".to_owned(), "line 1: the key of k1 is shorter than 32 bytes"),
            (format!("k1 {A} extra"), "line 1: expected"),
            ("k1".to_owned(), "line 1: expected"),
            (format!("k/1 {A}"), "line 1: the kid must be"),
            (format!("{} {A}", "k".repeat(65)), "line 1: the kid must be"),
        ] {
            let err = KeySet::parse(&text).unwrap_err();
            assert!(err.starts_with(expected), "{text:?}: {err}");
            assert!(!err.contains(A) && !err.contains(B), "the key leaked: {err}");
        }
    }

    #[test]
    fn a_derived_kid_is_stable_and_the_secret_is_masked() {
        let k = Key::derived(A.as_bytes().to_vec());
        assert_eq!(k.kid, Key::derived(A.as_bytes().to_vec()).kid);
        assert_eq!(k.kid.len(), 16);
        assert_ne!(k.kid, Key::derived(B.as_bytes().to_vec()).kid);
        assert!(!format!("{k:?}").contains(A));
    }

    #[test]
    fn reload_swaps_on_change_and_keeps_the_ring_on_a_bad_file() {
        let dir = std::env::temp_dir().join(format!("maru-keyring-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys");
        std::fs::write(&path, format!("k1 {A}\n")).unwrap();
        let mut settings = Settings::default();
        settings.auth.jwt_keyring_file = Some(path.clone());
        let (ring, random) = Keyring::from_settings(&settings).unwrap();
        assert!(!random);
        assert_eq!(ring.current().signing().kid, "k1");
        assert!(!ring.reload().unwrap(), "unchanged file: nothing to do");

        let later = |secs| SystemTime::now() + Duration::from_secs(secs);
        std::fs::write(&path, format!("k2 {B}\nk1 {A}\n")).unwrap();
        std::fs::File::options().write(true).open(&path).unwrap().set_modified(later(10)).unwrap();
        assert!(ring.reload().unwrap());
        assert_eq!(ring.current().signing().kid, "k2");

        std::fs::write(&path, "k3 short\n").unwrap();
        std::fs::File::options().write(true).open(&path).unwrap().set_modified(later(20)).unwrap();
        assert!(ring.reload().is_err());
        assert_eq!(ring.current().signing().kid, "k2", "a refused file leaves the ring as it was");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
