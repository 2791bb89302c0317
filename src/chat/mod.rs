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

pub mod convert;
pub mod model;
/// Public API: what moderation (`crate::reports`) needs of chat messages.
pub mod moderation;
pub mod ops;
pub mod service;
pub mod store;

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
}

/// Puts `ChatService` on the server.
pub fn add_services(routes: &mut RoutesBuilder, state: &AppState) {
    add_service!(
        routes,
        state,
        pb::chat_service_server::ChatServiceServer::new(service::ChatApi { state: state.clone() })
    );
}
