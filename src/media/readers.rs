//! Who may read what media are attached to: each attaching domain registers its rule
//! ([`register_reader`], re-exported by `super::attach`); GetMedia asks it for non-owners.

use std::sync::{PoisonError, RwLock};

use futures::future::BoxFuture;
use uuid::Uuid;

use super::model::AttachKind;
use super::store::MediaRow;
use crate::caller::Caller;
use crate::error::AppResult;
use crate::state::AppState;

/// Whether a caller may read a target of some kind (a post they see).
pub type Reader = for<'a> fn(&'a AppState, &'a Caller, Uuid) -> BoxFuture<'a, AppResult<bool>>;

static READERS: RwLock<Vec<(&'static str, Reader)>> = RwLock::new(Vec::new());

/// Registers who may read targets of `kind` (the attaching domain does it when its services
/// are added). Without one, only the owner and admins see media attached to such targets.
pub fn register_reader(kind: AttachKind, reader: Reader) {
    let mut readers = READERS.write().unwrap_or_else(PoisonError::into_inner);
    readers.retain(|(k, _)| *k != kind.as_str());
    readers.push((kind.as_str(), reader));
}

/// Whether `caller` may read what `m` is attached to (false when it is attached to nothing).
pub(super) async fn may_read_target(state: &AppState, caller: &Caller, m: &MediaRow) -> AppResult<bool> {
    let (Some(kind), Some(target)) = (m.attached_kind.as_deref(), m.attached_id) else { return Ok(false) };
    let reader = {
        let readers = READERS.read().unwrap_or_else(PoisonError::into_inner);
        readers.iter().find(|(k, _)| *k == kind).map(|(_, r)| *r)
    };
    match reader {
        Some(r) => r(state, caller, target).await,
        None => Ok(false),
    }
}
