//! The chat settings (`[chat]`, `MARU__CHAT__…`) and their validation.

use serde::{Deserialize, Serialize};

/// The live stream of chat events (docs/chat.md#settings).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChatSettings {
    /// Seconds between two heartbeats on an open Subscribe stream (each also checks the
    /// stream's rooms against the database, so a lost notice is found within this time).
    pub heartbeat_s: u64,
    /// Events queued per stream for its client; when full the stream ends with
    /// RESOURCE_EXHAUSTED `CHAT_STREAM_TOO_SLOW` and the client resumes.
    pub stream_buffer: usize,
    /// Open Subscribe streams per user over the deployment (counted in Redis with leases;
    /// per replica while Redis is unavailable).
    pub max_streams_per_user: usize,
    /// Open Subscribe streams on one replica.
    pub max_streams_per_replica: usize,
    /// Milliseconds the pub/sub connection waits before its first reconnect attempt (doubled up
    /// to 30 s while Redis stays away).
    pub reconnect_backoff_ms: u64,
}

impl Default for ChatSettings {
    fn default() -> Self {
        Self {
            heartbeat_s: 15,
            stream_buffer: 256,
            max_streams_per_user: 5,
            max_streams_per_replica: 10_000,
            reconnect_backoff_ms: 100,
        }
    }
}

impl ChatSettings {
    /// Appends every problem of this section to `errs` (see `Settings::validate`).
    pub fn validate(&self, errs: &mut Vec<String>) {
        if !(1..=3600).contains(&self.heartbeat_s) {
            errs.push("chat.heartbeat_s: must be 1 to 3600".into());
        }
        if !(8..=65_536).contains(&self.stream_buffer) {
            errs.push("chat.stream_buffer: must be 8 to 65536".into());
        }
        if !(1..=1000).contains(&self.max_streams_per_user) {
            errs.push("chat.max_streams_per_user: must be 1 to 1000".into());
        }
        if !(1..=1_000_000).contains(&self.max_streams_per_replica) {
            errs.push("chat.max_streams_per_replica: must be 1 to 1000000".into());
        }
        if !(10..=60_000).contains(&self.reconnect_backoff_ms) {
            errs.push("chat.reconnect_backoff_ms: must be 10 to 60000".into());
        }
    }
}
