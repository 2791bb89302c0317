//! What moderation (`crate::reports`) needs of chat: whose a message is, as the reporter may
//! see it (a member of its room). Chat messages are not hidden by moderation: their reports
//! are left to the queue.

use uuid::Uuid;

use super::store;
use crate::caller::Caller;
use crate::error::{AppError, AppResult, Reason};
use crate::state::AppState;

/// The author of message `id`; NOT_FOUND `CHAT_MESSAGE_NOT_FOUND` unless `caller` is a member of
/// its room.
pub async fn message_author(state: &AppState, caller: &Caller, id: Uuid) -> AppResult<Uuid> {
    let not_found = || AppError::not_found(Reason::ChatMessageNotFound, "chat message");
    let m = store::get_message(&state.db, id).await?.ok_or_else(not_found)?;
    store::member_read_seq(&state.db, m.room_id, caller.user_id).await?.ok_or_else(not_found)?;
    Ok(m.author_id)
}
