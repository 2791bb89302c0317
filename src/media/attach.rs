//! Attaching media to what other domains own (a post's photos). The attaching domain calls
//! [`parse_ids`] on its request, [`set`] in the transaction that writes its row, and [`shown`]
//! when it answers; it registers who may read its targets ([`register_reader`]) so GetMedia
//! lets those readers see the media too.
//!
//! Rules (docs/media.md#attaching): at most [`MAX_ATTACHED`] per target, each the caller's own
//! or already on the target (INVALID_ARGUMENT on `media_ids[i]` otherwise — another user's
//! media looks like none),
//! of the target's purpose (INVALID_ARGUMENT), READY (FAILED_PRECONDITION `MEDIA_NOT_READY`)
//! and attached to nothing else (FAILED_PRECONDITION `MEDIA_ALREADY_ATTACHED`). The rows are
//! locked (`FOR UPDATE`, in id order) for the check and the write, so of two targets attaching
//! the same media at once exactly one wins. Attached media are never cleaned up; detached
//! ones (left out by an edit, or their post deleted) are, like media never attached.

use std::collections::HashMap;
use uuid::Uuid;

pub use super::model::AttachKind as Kind;
use super::model::State;
use super::ops;
pub use super::readers::{Reader, register_reader};
use super::storage::Storage;
use super::store;
use crate::error::{AppError, AppResult, Reason, Violations};
use crate::grpc::pb;
use crate::state::AppState;

/// The most media one target carries.
pub const MAX_ATTACHED: usize = 10;

/// Parses a `media_ids` field: at most [`MAX_ATTACHED`] ids, each once; a bad one is a
/// violation on `<field>[<index>]`.
pub fn parse_ids(v: &mut Violations, field: &str, raw: &[String]) -> Vec<Uuid> {
    if raw.len() > MAX_ATTACHED {
        v.add(field, format!("at most {MAX_ATTACHED} media"));
        return vec![];
    }
    let mut out = Vec::with_capacity(raw.len());
    for (i, r) in raw.iter().enumerate() {
        let name = format!("{field}[{i}]");
        let Some(id) = v.check(&name, crate::fields::parse_id(r)) else { continue };
        if out.contains(&id) {
            v.add(&name, "listed twice");
            continue;
        }
        out.push(id);
    }
    out
}

/// Parses a single, optional media id field (`media_id`; empty: none).
pub fn parse_one(v: &mut Violations, field: &str, raw: &str) -> Vec<Uuid> {
    if raw.trim().is_empty() {
        return vec![];
    }
    v.check(field, crate::fields::parse_id(raw)).into_iter().collect()
}

/// How refusals name the request field: `media_ids[i]` for a list, `media_id` for one.
fn field_name(field: &str, i: usize, list: bool) -> String {
    if list { format!("{field}[{i}]") } else { field.to_owned() }
}

/// Makes `ids` (in this order) the media of `target`, in `tx`: the caller's own, READY, of
/// `kind`'s purpose, attached to nothing else (or already to `target`). Media `target` had
/// and `ids` leaves out are detached. `field` names the request field in refusals.
pub async fn set(
    tx: &mut sqlx::PgConnection,
    owner: Uuid,
    kind: Kind,
    target: Uuid,
    ids: &[Uuid],
    field: &str,
) -> AppResult<()> {
    let rows = if ids.is_empty() { vec![] } else { store::lock_for_attach(tx, ids).await? };
    let mut v = Violations::new();
    let mut refusal: Option<AppError> = None;
    for (i, id) in ids.iter().enumerate() {
        let name = field_name(field, i, kind.max() > 1);
        // One already on `target` may stay whoever uploaded it (another manager's notice
        // images survive an edit by a colleague).
        let row = rows.iter().find(|r| {
            r.id == *id
                && (r.owner_id == owner
                    || (r.attached_id == Some(target) && r.attached_kind.as_deref() == Some(kind.as_str())))
        });
        let Some(row) = row else {
            v.add(&name, "no media of yours has this id");
            continue;
        };
        if row.purpose != kind.purpose().as_str() {
            v.add(
                &name,
                format!(
                    "was uploaded for {}, not {}",
                    row.purpose.to_uppercase(),
                    kind.purpose().as_str().to_uppercase()
                ),
            );
            continue;
        }
        if refusal.is_some() {
            continue;
        }
        if row.state != State::Ready.as_str() {
            refusal = Some(
                AppError::failed_precondition(
                    Reason::MediaNotReady,
                    format!("{name} is {}: attach it once it is READY", row.state),
                )
                .with_meta("field", &name)
                .with_meta("state", &row.state),
            );
        } else if row.attached_id.is_some_and(|t| t != target)
            || row.attached_kind.as_deref().is_some_and(|k| k != kind.as_str())
        {
            refusal = Some(
                AppError::failed_precondition(
                    Reason::MediaAlreadyAttached,
                    format!(
                        "{name} is attached to another {} already",
                        row.attached_kind.as_deref().unwrap_or("target")
                    ),
                )
                .with_meta("field", &name),
            );
        }
    }
    v.finish()?;
    if let Some(e) = refusal {
        return Err(e);
    }
    store::set_attached(tx, kind.as_str(), target, ids).await
}

/// The media attached to each of `targets`, in order, with their variants' URLs (valid for
/// `media.url_ttl_s`). Targets without media are absent.
pub async fn shown(state: &AppState, kind: Kind, targets: &[Uuid]) -> AppResult<HashMap<Uuid, Vec<pb::Media>>> {
    let mut out: HashMap<Uuid, Vec<pb::Media>> = HashMap::new();
    if targets.is_empty() {
        return Ok(out);
    }
    let rows = store::attached_to(&state.db, kind.as_str(), targets).await?;
    if rows.is_empty() {
        return Ok(out);
    }
    let storage =
        Storage::shared(&state.settings.media).map_err(|e| AppError::internal(format!("media store: {e:#}")))?;
    let ids: Vec<Uuid> = rows.iter().map(|m| m.id).collect();
    let mut variants: HashMap<Uuid, Vec<store::VariantRow>> = HashMap::new();
    for (id, v) in store::variants_of(&state.db, &ids).await? {
        variants.entry(id).or_default().push(v);
    }
    for m in rows {
        let Some(target) = m.attached_id else { continue };
        let vs = variants.remove(&m.id).unwrap_or_default();
        let view = ops::view_with(state, &storage, m, vs).await?;
        out.entry(target).or_default().push(super::service::media_to_pb(view));
    }
    Ok(out)
}
