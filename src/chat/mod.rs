//! Chat (DOMAIN §3, issue 17): `maru.v1.ChatService` (`proto/maru/v1/chat.proto`,
//! `docs/chat.md`). Rooms of signed-in users: a direct message (DM) between two people, one per
//! pair, or a group with an owner; messages with a per-room `seq`; read marks; blocks.
//!
//! Invariants, decided by the database: one DM per pair (unique key `chat_rooms_dm_pair_key`
//! on the ordered pair — a concurrent second CreateRoom returns the first's room); every change
//! of a room is an event of `chat_events` with the room's next seq, taken under the room row's
//! lock in the change's own transaction, so a room's seqs are 1, 2, 3, … without gaps or
//! duplicates and commit in seq order; membership is checked under that same lock; a message is
//! at most 4,000 characters and a room at most 100 members. Only members read a room; to
//! others it does not exist (NOT_FOUND `CHAT_ROOM_NOT_FOUND`). Who may do what is in [`ops`].
//!
//! Public API (what other domains may use; `tests/layering.rs` checks it): [`moderation`] (for
//! `crate::reports`), [`register_metrics`] and [`add_services`].

pub mod config;
pub mod convert;
pub mod hub;
pub mod model;
/// Public API: what moderation (`crate::reports`) needs of chat messages.
pub mod moderation;
pub mod ops;
pub mod service;
pub mod store;
pub mod stream;

use std::time::Duration;

use tokio::sync::watch;

use crate::grpc::pb;
use crate::services::{RoutesBuilder, add_service};
use crate::state::AppState;

/// Describes the chat metrics and registers them at zero (docs/chat.md#metrics).
pub fn register_metrics() {
    use metrics::describe_counter;
    describe_counter!("maru_chat_messages_sent_total", "Chat messages stored (request_id replays excluded).");
    metrics::counter!("maru_chat_messages_sent_total").increment(0);
    describe_counter!("maru_chat_rooms_created_total", "Chat rooms created, by kind (direct, group).");
    for kind in model::RoomKind::ALL {
        metrics::counter!("maru_chat_rooms_created_total", "room_kind" => ops::kind_label(*kind)).increment(0);
    }
    describe_stream_metrics();
}

/// The metrics of the live stream (docs/chat.md#metrics).
fn describe_stream_metrics() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "maru_chat_events_fanned_out_total",
        "Chat events written to Subscribe streams (heartbeats excluded)."
    );
    describe_histogram!(
        "maru_chat_delivery_seconds",
        Unit::Seconds,
        "From the commit of a chat change to its event written to a subscriber's stream (resume backlogs excluded)."
    );
    describe_gauge!("maru_chat_streams_open", "Subscribe streams open on this replica.");
    describe_counter!("maru_chat_resumes_total", "Subscribe streams opened with resume points.");
    describe_counter!(
        "maru_chat_gap_fills_total",
        "Chat events sent without a notice of their own: read from PostgreSQL because a notice was lost, late or missed during a pub/sub reconnect."
    );
    describe_counter!(
        "maru_chat_slow_subscriber_closes_total",
        "Subscribe streams ended with CHAT_STREAM_TOO_SLOW because their buffer was full."
    );
    describe_counter!(
        "maru_chat_streams_refused_total",
        "Subscribe streams refused with CHAT_STREAMS_LIMIT, by reason (user_limit, replica_limit)."
    );
    describe_counter!(
        "maru_chat_pubsub_reconnects_total",
        "Reconnects of the chat pub/sub connection after it dropped."
    );
    describe_counter!(
        "maru_chat_fanout_reads_total",
        "Reads of a room's new events from PostgreSQL shared by every local Subscribe stream of the room (one per notice per replica)."
    );
    for m in [
        "maru_chat_events_fanned_out_total",
        "maru_chat_resumes_total",
        "maru_chat_gap_fills_total",
        "maru_chat_slow_subscriber_closes_total",
        "maru_chat_pubsub_reconnects_total",
        "maru_chat_fanout_reads_total",
    ] {
        metrics::counter!(m).increment(0);
    }
    for reason in ["user_limit", "replica_limit"] {
        metrics::counter!("maru_chat_streams_refused_total", "reason" => reason).increment(0);
    }
    metrics::gauge!("maru_chat_streams_open").set(0.0);
}

/// Puts `ChatService` on the server, with this replica's stream hub: its pub/sub listener
/// starts now; once `stopping` turns true and `grpc.shutdown_grace_ms` passed, open streams
/// end with UNAVAILABLE `SHUTTING_DOWN` (docs/chat.md#drain).
pub fn add_services(routes: &mut RoutesBuilder, state: &AppState, stopping: watch::Receiver<bool>) {
    let hub = hub::Hub::new(state.settings.chat.clone());
    hub.spawn(
        &hub::redis_url(state),
        &state.settings.redis.key_prefix,
        Duration::from_millis(state.settings.grpc.shutdown_grace_ms),
        stopping,
    );
    add_service!(
        routes,
        state,
        pb::chat_service_server::ChatServiceServer::new(service::ChatApi { state: state.clone(), hub })
    );
}
