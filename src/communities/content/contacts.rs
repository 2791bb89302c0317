//! Contacts: the community's phone directory (관리사무소, 경비실 …). Managers (and admins)
//! edit, APPROVED members read. Phone numbers are personal data: no log line, span field or
//! error message ever carries one (violations describe the rule, never the value).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{not_found, visible};
use crate::caller::Caller;
use crate::communities::access;
use crate::error::{AppError, AppResult, Reason, Violations};
use crate::fields::{id, mask, request_id, text, timestamp};
use crate::grpc::pb;
use crate::idempotency::{RequestId, remember, replayed};
use crate::state::AppState;

pub const MAX_NAME_CHARS: usize = 100;
pub const MAX_CATEGORY_CHARS: usize = 50;
pub const MAX_DESCRIPTION_CHARS: usize = 500;

/// A stored contact.
#[derive(Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Contact {
    pub id: Uuid,
    pub community_id: Uuid,
    pub name: String,
    pub phone: String,
    pub category: String,
    pub description: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

// Hand-written so a stray `{:?}` can never print a phone number.
impl std::fmt::Debug for Contact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Contact")
            .field("id", &self.id)
            .field("community_id", &self.community_id)
            .finish_non_exhaustive()
    }
}

/// A phone number: 3–20 characters of digits, spaces and `+ - ( )`, at least 3 digits.
pub fn parse_phone(raw: &str) -> Result<String, String> {
    let s = raw.trim();
    let len = s.chars().count();
    if len == 0 {
        return Err("is required".into());
    }
    if !(3..=20).contains(&len) {
        return Err("must be 3 to 20 characters".into());
    }
    if !s.chars().all(|c| c.is_ascii_digit() || matches!(c, ' ' | '+' | '-' | '(' | ')')) {
        return Err("may contain only digits, spaces and + - ( )".into());
    }
    if s.chars().filter(char::is_ascii_digit).count() < 3 {
        return Err("must contain at least 3 digits".into());
    }
    Ok(s.to_owned())
}

#[derive(Serialize)]
pub struct CreateContact {
    pub community_id: Uuid,
    pub name: String,
    pub phone: String,
    pub category: String,
    pub description: String,
    #[serde(skip)]
    pub request_id: Option<RequestId>,
}

/// The fields an update changes (`None` = unchanged).
#[derive(Default)]
pub struct ContactPatch {
    pub name: Option<String>,
    pub phone: Option<String>,
    pub category: Option<String>,
    pub description: Option<String>,
}

pub struct UpdateContact {
    pub contact_id: Uuid,
    pub patch: ContactPatch,
}

fn phone(v: &mut Violations, raw: &str) -> String {
    v.check("phone", parse_phone(raw)).unwrap_or_default()
}

// ---- conversions

impl TryFrom<pb::CreateContactRequest> for CreateContact {
    type Error = AppError;
    fn try_from(r: pb::CreateContactRequest) -> Result<Self, AppError> {
        let mut v = Violations::new();
        let cmd = CreateContact {
            community_id: id(&mut v, "community_id", &r.community_id),
            name: text(&mut v, "name", &r.name, 1, MAX_NAME_CHARS, false),
            phone: phone(&mut v, &r.phone),
            category: text(&mut v, "category", &r.category, 0, MAX_CATEGORY_CHARS, false),
            description: text(&mut v, "description", &r.description, 0, MAX_DESCRIPTION_CHARS, true),
            request_id: request_id(&mut v, &r.request_id),
        };
        v.finish()?;
        Ok(cmd)
    }
}

impl TryFrom<pb::UpdateContactRequest> for UpdateContact {
    type Error = AppError;
    fn try_from(r: pb::UpdateContactRequest) -> Result<Self, AppError> {
        let mut v = Violations::new();
        let contact_id = id(&mut v, "contact_id", &r.contact_id);
        let mut patch = ContactPatch::default();
        for path in mask(&mut v, r.update_mask.as_ref(), &["name", "phone", "category", "description"]) {
            match path.as_str() {
                "name" => patch.name = Some(text(&mut v, "name", &r.name, 1, MAX_NAME_CHARS, false)),
                "phone" => patch.phone = Some(phone(&mut v, &r.phone)),
                "category" => {
                    patch.category = Some(text(&mut v, "category", &r.category, 0, MAX_CATEGORY_CHARS, false))
                }
                "description" => {
                    patch.description =
                        Some(text(&mut v, "description", &r.description, 0, MAX_DESCRIPTION_CHARS, true))
                }
                _ => {}
            }
        }
        v.finish()?;
        Ok(UpdateContact { contact_id, patch })
    }
}

pub fn to_pb(c: Contact) -> pb::Contact {
    pb::Contact {
        id: c.id.to_string(),
        community_id: c.community_id.to_string(),
        name: c.name,
        phone: c.phone,
        category: c.category,
        description: c.description,
        created_at: Some(timestamp(c.created_at)),
        updated_at: Some(timestamp(c.updated_at)),
    }
}

// ---- use cases

#[tracing::instrument(name = "contacts.create_contact", skip_all, err(level = "debug"))]
pub async fn create_contact(state: &AppState, caller: &Caller, cmd: CreateContact) -> AppResult<Contact> {
    access::manager(&state.db, caller, cmd.community_id).await?;
    let mut tx = crate::db::begin(&state.db).await?;
    if let Some(c) = replayed(state, &mut tx, "CreateContact", caller, cmd.request_id.as_ref(), &cmd).await? {
        return Ok(c);
    }
    let contact = store::insert_contact(&mut tx, &cmd).await?;
    remember(&mut tx, "CreateContact", caller, cmd.request_id.as_ref(), &contact).await?;
    crate::db::commit(&state.db, tx).await?;
    Ok(contact)
}

/// A page of contacts, by category, then name.
#[tracing::instrument(name = "contacts.list_contacts", skip_all, err(level = "debug"))]
pub async fn list_contacts(
    state: &AppState,
    caller: &Caller,
    community_id: Uuid,
    page_size: i32,
    page_token: &str,
) -> AppResult<(Vec<Contact>, String)> {
    let query = ("contacts", community_id);
    let page = state.pager.page::<store::Cursor>(page_size, page_token, &query)?;
    access::member(&state.db, caller, community_id).await?;
    let rows = store::list_contacts(&state.db, community_id, page.after.clone(), page.fetch_limit()).await?;
    Ok(state.pager.finish(&page, rows, &query, |c| (c.category.clone(), c.name.clone(), c.id)))
}

#[tracing::instrument(name = "contacts.update_contact", skip_all, err(level = "debug"))]
pub async fn update_contact(state: &AppState, caller: &Caller, cmd: UpdateContact) -> AppResult<Contact> {
    let community_id =
        store::community_of(&state.db, cmd.contact_id).await?.ok_or_else(|| not_found(Reason::ContactNotFound))?;
    visible(state, caller, community_id, Reason::ContactNotFound).await?;
    access::manager(&state.db, caller, community_id).await?;
    store::update_contact(&state.db, cmd.contact_id, &cmd.patch)
        .await?
        .ok_or_else(|| not_found(Reason::ContactNotFound))
}

#[tracing::instrument(name = "contacts.delete_contact", skip_all, err(level = "debug"))]
pub async fn delete_contact(state: &AppState, caller: &Caller, contact_id: Uuid) -> AppResult<()> {
    let community_id =
        store::community_of(&state.db, contact_id).await?.ok_or_else(|| not_found(Reason::ContactNotFound))?;
    visible(state, caller, community_id, Reason::ContactNotFound).await?;
    access::manager(&state.db, caller, community_id).await?;
    if store::delete_contact(&state.db, contact_id).await? { Ok(()) } else { Err(not_found(Reason::ContactNotFound)) }
}

/// Every SQL statement of contacts.
pub mod store {
    use sqlx::{PgConnection, PgExecutor};
    use uuid::Uuid;

    use super::{Contact, ContactPatch, CreateContact};
    use crate::error::AppResult;

    /// Sort key of ListContacts: (category, name, id), ascending.
    pub type Cursor = (String, String, Uuid);

    const COLUMNS: &str = "id, community_id, name, phone, category, description, created_at, updated_at";

    pub async fn insert_contact(conn: &mut PgConnection, c: &CreateContact) -> AppResult<Contact> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "insert into community_contacts (id, community_id, name, phone, category, description)
             values ($1, $2, $3, $4, $5, $6) returning {COLUMNS}"
        )))
        .bind(Uuid::now_v7())
        .bind(c.community_id)
        .bind(&c.name)
        .bind(&c.phone)
        .bind(&c.category)
        .bind(&c.description)
        .fetch_one(conn)
        .await?)
    }

    pub async fn community_of(db: impl PgExecutor<'_>, id: Uuid) -> AppResult<Option<Uuid>> {
        Ok(sqlx::query_scalar("select community_id from community_contacts where id = $1")
            .bind(id)
            .fetch_optional(db)
            .await?)
    }

    pub async fn list_contacts(
        db: impl PgExecutor<'_>,
        community_id: Uuid,
        after: Option<Cursor>,
        limit: i64,
    ) -> AppResult<Vec<Contact>> {
        let (category, name, id) = after.map_or((None, None, None), |(c, n, i)| (Some(c), Some(n), Some(i)));
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "select {COLUMNS} from community_contacts
              where community_id = $1
                and ($2::text is null or (category, name, id) > ($2, $3, $4))
              order by category, name, id
              limit $5"
        )))
        .bind(community_id)
        .bind(category)
        .bind(name)
        .bind(id)
        .bind(limit)
        .fetch_all(db)
        .await?)
    }

    pub async fn update_contact(db: impl PgExecutor<'_>, id: Uuid, p: &ContactPatch) -> AppResult<Option<Contact>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "update community_contacts
                set name = coalesce($2, name), phone = coalesce($3, phone),
                    category = coalesce($4, category), description = coalesce($5, description),
                    updated_at = now()
              where id = $1
          returning {COLUMNS}"
        )))
        .bind(id)
        .bind(&p.name)
        .bind(&p.phone)
        .bind(&p.category)
        .bind(&p.description)
        .fetch_optional(db)
        .await?)
    }

    pub async fn delete_contact(db: impl PgExecutor<'_>, id: Uuid) -> AppResult<bool> {
        Ok(sqlx::query("delete from community_contacts where id = $1").bind(id).execute(db).await?.rows_affected() == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones() {
        for ok in ["031-123-4567", "119", "+82 31 123 4567", "(031) 123-4567", "1588-1234"] {
            assert_eq!(parse_phone(ok).as_deref(), Ok(ok));
        }
        for bad in ["", "12", "call me", "031-123-4567-0000-0000", "--1", "０３１"] {
            assert!(parse_phone(bad).is_err(), "{bad}");
        }
    }
}
