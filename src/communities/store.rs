//! Every SQL statement of communities and memberships (content tables live elsewhere).

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgExecutor, Row};
use uuid::Uuid;

use super::model::{Community, Kind, MemberRole, Membership, MyCommunity, NewCommunity, SearchQuery, Status};
use crate::db::escape_like;
use crate::error::{AppError, AppResult};

/// Community columns, prefixed `c_` (so they can sit next to membership columns).
const COMMUNITY_COLUMNS: &str = "c.id as c_id, c.kind as c_kind, c.name as c_name, c.address as c_address, \
     c.external_code as c_external_code, c.registry->>'bjdCode' as c_bjd_code, c.join_code as c_join_code, \
     c.created_at as c_created_at, c.updated_at as c_updated_at";

/// Membership columns, prefixed `m_`, from `community_memberships m join users u`.
const MEMBERSHIP_COLUMNS: &str = "m.id as m_id, m.community_id as m_community_id, m.user_id as m_user_id, \
     u.handle as m_user_handle, u.display_name as m_user_display_name, m.status as m_status, m.role as m_role, \
     m.building as m_building, m.unit as m_unit, m.note as m_note, m.created_at as m_created_at, \
     m.decided_at as m_decided_at";

fn bad_value(what: &str, v: &str) -> AppError {
    AppError::internal(format!("unexpected {what} `{v}` in the database"))
}

fn community_from(row: &PgRow, member_count: i64) -> AppResult<Community> {
    let kind: String = row.try_get("c_kind")?;
    Ok(Community {
        id: row.try_get("c_id")?,
        kind: Kind::from_db(&kind).ok_or_else(|| bad_value("community kind", &kind))?,
        name: row.try_get("c_name")?,
        address: row.try_get("c_address")?,
        external_code: row.try_get("c_external_code")?,
        bjd_code: row.try_get("c_bjd_code")?,
        join_code: row.try_get("c_join_code")?,
        member_count,
        created_at: row.try_get("c_created_at")?,
        updated_at: row.try_get("c_updated_at")?,
    })
}

fn membership_from(row: &PgRow) -> AppResult<Membership> {
    let status: String = row.try_get("m_status")?;
    let role: String = row.try_get("m_role")?;
    Ok(Membership {
        id: row.try_get("m_id")?,
        community_id: row.try_get("m_community_id")?,
        user_id: row.try_get("m_user_id")?,
        user_handle: row.try_get("m_user_handle")?,
        user_display_name: row.try_get("m_user_display_name")?,
        status: Status::from_db(&status).ok_or_else(|| bad_value("membership status", &status))?,
        role: MemberRole::from_db(&role).ok_or_else(|| bad_value("member role", &role))?,
        building: row.try_get("m_building")?,
        unit: row.try_get("m_unit")?,
        note: row.try_get("m_note")?,
        created_at: row.try_get("m_created_at")?,
        decided_at: row.try_get("m_decided_at")?,
    })
}

fn communities_from(rows: &[PgRow]) -> AppResult<Vec<Community>> {
    rows.iter().map(|r| community_from(r, 0)).collect()
}

fn memberships_from(rows: &[PgRow]) -> AppResult<Vec<Membership>> {
    rows.iter().map(membership_from).collect()
}

/// The `ILIKE` pattern of a search: the text with `%`, `_` and `\` escaped, inside `%…%`.
pub fn contains_pattern(text: &str) -> String {
    format!("%{}%", escape_like(text))
}

/// Whether a query is too short for trigrams (served by the bigram indexes instead).
pub fn is_two_chars(q: &SearchQuery) -> bool {
    q.text.chars().count() < 3
}

/// The search predicate over `c`: `$1` is the ILIKE pattern and, for two-character queries,
/// `$raw` the query text. Trigram GIN indexes serve three characters and more; two-character
/// queries (which have no trigram) are served by the GIN indexes on the stored character-pair
/// columns (`name_bigrams`, `address_bigrams`), ILIKE rechecking.
pub fn search_predicate(q: &SearchQuery, raw: usize) -> String {
    if is_two_chars(q) {
        // The query's pair is computed once per statement (an InitPlan), by the same function
        // as the stored columns. The recheck is `lower(x) like lower(pattern)` — what ILIKE does
        // for UTF-8 — written so the trigram index cannot take it: in a generic plan the planner
        // would otherwise AND in a trigram scan that, for a pattern without trigrams, reads the
        // whole index.
        format!(
            "((c.name_bigrams @> (select community_bigrams(${raw}::text)) and lower(c.name) like lower($1))
              or (c.address_bigrams @> (select community_bigrams(${raw}::text)) and lower(c.address) like lower($1)))"
        )
    } else {
        "(c.name ilike $1 or c.address ilike $1)".to_owned()
    }
}

/// Communities whose name or address contains the query, by `(name, id)` after the cursor.
pub async fn search_communities(
    db: impl PgExecutor<'_>,
    q: &SearchQuery,
    after: Option<&(String, Uuid)>,
    limit: i64,
) -> AppResult<Vec<Community>> {
    let sql = format!(
        "select {COMMUNITY_COLUMNS} from communities c
         where {}
           and ($2::text is null or c.kind = $2)
           and ($3::text is null or (c.name, c.id) > ($3, $4))
         order by c.name, c.id
         limit $5",
        search_predicate(q, 6)
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(contains_pattern(&q.text))
        .bind(q.kind.map(Kind::as_db))
        .bind(after.map(|a| a.0.as_str()))
        .bind(after.map(|a| a.1))
        .bind(limit);
    if is_two_chars(q) {
        query = query.bind(q.text.as_str());
    }
    let rows = query.fetch_all(db).await?;
    communities_from(&rows)
}

/// How many communities match the query, counted up to `at_most` (same predicate, same
/// indexes; the scan stops there).
pub async fn count_communities(db: impl PgExecutor<'_>, q: &SearchQuery, at_most: i64) -> AppResult<i64> {
    let sql = format!(
        "select count(*) from (select 1 from communities c where {} and ($2::text is null or c.kind = $2) limit $3) m",
        search_predicate(q, 4)
    );
    let mut query = sqlx::query_as::<_, (i64,)>(sqlx::AssertSqlSafe(sql))
        .bind(contains_pattern(&q.text))
        .bind(q.kind.map(Kind::as_db))
        .bind(at_most);
    if is_two_chars(q) {
        query = query.bind(q.text.as_str());
    }
    Ok(query.fetch_one(db).await?.0)
}

/// One community with its APPROVED member count.
pub async fn get_community(db: impl PgExecutor<'_>, id: Uuid) -> AppResult<Option<Community>> {
    let sql = format!(
        "select {COMMUNITY_COLUMNS},
                (select count(*) from community_memberships m join users u on u.id = m.user_id
                  where m.community_id = c.id and m.status = 'APPROVED' and u.deleted_at is null
                    and u.role <> 'GUEST') as member_count
         from communities c where c.id = $1"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(db).await?;
    row.map(|r| community_from(&r, r.try_get("member_count")?)).transpose()
}

/// The APPROVED role of `user_id` in `community_id` (as `communities::access::standing_from`
/// reads it): `None` when the community does not exist, `Some(None)` without an approved
/// membership.
pub async fn standing_role(
    db: impl PgExecutor<'_>,
    community_id: Uuid,
    user_id: Uuid,
) -> AppResult<Option<Option<String>>> {
    let row: Option<(Option<String>,)> = sqlx::query_as(
        "select m.role
           from communities c
           left join community_memberships m
             on m.community_id = c.id and m.user_id = $2 and m.status = 'APPROVED'
          where c.id = $1",
    )
    .bind(community_id)
    .bind(user_id)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|(role,)| role))
}

/// Locks the community row for the rest of the transaction: membership changes that must see
/// a stable set of managers (role changes, leaving, removal) serialise on it. `FOR NO KEY
/// UPDATE` does not block inserts of memberships (their foreign-key checks).
pub async fn lock_community(conn: &mut PgConnection, id: Uuid) -> AppResult<bool> {
    let row: Option<(Uuid,)> = sqlx::query_as("select id from communities where id = $1 for no key update")
        .bind(id)
        .fetch_optional(conn)
        .await?;
    Ok(row.is_some())
}

pub async fn insert_community(conn: &mut PgConnection, c: &NewCommunity, created_by: Uuid) -> AppResult<Community> {
    let sql = format!(
        "with c as (
            insert into communities (id, kind, name, address, external_code, join_code, created_by)
            values ($1, $2, $3, $4, $5, $6, $7)
            returning *)
         select {COMMUNITY_COLUMNS} from c"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(Uuid::now_v7())
        .bind(c.kind.as_db())
        .bind(&c.name)
        .bind(&c.address)
        .bind(&c.external_code)
        .bind(&c.join_code)
        .bind(created_by)
        .fetch_one(conn)
        .await?;
    community_from(&row, 0)
}

/// The most recently created communities (the anonymous home screen).
pub async fn sample_communities(db: impl PgExecutor<'_>, limit: i64) -> AppResult<Vec<Community>> {
    let sql = format!("select {COMMUNITY_COLUMNS} from communities c order by c.created_at desc, c.id limit $1");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(limit).fetch_all(db).await?;
    communities_from(&rows)
}

pub struct NewMembership<'a> {
    pub community_id: Uuid,
    pub user_id: Uuid,
    pub status: Status,
    pub building: Option<&'a str>,
    pub unit: Option<&'a str>,
}

/// Inserts a membership; a second active one violates `community_memberships_active_key`.
pub async fn insert_membership(conn: &mut PgConnection, n: &NewMembership<'_>) -> AppResult<Membership> {
    let sql = format!(
        "with m as (
            insert into community_memberships (id, community_id, user_id, status, building, unit, decided_at)
            values ($1, $2, $3, $4, $5, $6, case when $4 = 'PENDING' then null else now() end)
            returning *)
         select {MEMBERSHIP_COLUMNS} from m join users u on u.id = m.user_id"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(Uuid::now_v7())
        .bind(n.community_id)
        .bind(n.user_id)
        .bind(n.status.as_db())
        .bind(n.building)
        .bind(n.unit)
        .fetch_one(conn)
        .await?;
    membership_from(&row)
}

pub async fn get_membership(db: impl PgExecutor<'_>, id: Uuid) -> AppResult<Option<Membership>> {
    let sql = format!(
        "select {MEMBERSHIP_COLUMNS} from community_memberships m join users u on u.id = m.user_id
         where m.id = $1 and u.deleted_at is null"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(db).await?;
    row.as_ref().map(membership_from).transpose()
}

/// The PENDING or APPROVED membership of a user in a community.
pub async fn active_membership(
    db: impl PgExecutor<'_>,
    community_id: Uuid,
    user_id: Uuid,
) -> AppResult<Option<Membership>> {
    let sql = format!(
        "select {MEMBERSHIP_COLUMNS} from community_memberships m join users u on u.id = m.user_id
         where m.community_id = $1 and m.user_id = $2 and m.status in ('PENDING', 'APPROVED')
           and u.deleted_at is null"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(community_id).bind(user_id).fetch_optional(db).await?;
    row.as_ref().map(membership_from).transpose()
}

/// Decides a PENDING membership. `None` when it is no longer PENDING: of two concurrent
/// decisions exactly one updates the row.
pub async fn decide_membership(
    db: impl PgExecutor<'_>,
    id: Uuid,
    status: Status,
    note: Option<&str>,
    decided_by: Uuid,
) -> AppResult<Option<Membership>> {
    let sql = format!(
        "with m as (
            update community_memberships
               set status = $2, note = $3, decided_by = $4, decided_at = now(), updated_at = now()
             where id = $1 and status = 'PENDING'
               and user_id in (select id from users where deleted_at is null)
            returning *)
         select {MEMBERSHIP_COLUMNS} from m join users u on u.id = m.user_id"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(status.as_db())
        .bind(note)
        .bind(decided_by)
        .fetch_optional(db)
        .await?;
    row.as_ref().map(membership_from).transpose()
}

/// Decides every PENDING request of `community_id` among `ids` in one statement; returns those
/// this call decided. A request is decided once: concurrent calls naming the same ids each get
/// the rows their own update changed (row locks serialise them; the loser sees the new status).
pub async fn decide_memberships(
    db: impl PgExecutor<'_>,
    community_id: Uuid,
    ids: &[Uuid],
    status: Status,
    note: Option<&str>,
    decided_by: Uuid,
) -> AppResult<Vec<Membership>> {
    let sql = format!(
        "with m as (
            update community_memberships
               set status = $3, note = $4, decided_by = $5, decided_at = now(), updated_at = now()
             where id = any($2) and community_id = $1 and status = 'PENDING'
            returning *)
         select {MEMBERSHIP_COLUMNS} from m join users u on u.id = m.user_id order by m.created_at, m.id"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(community_id)
        .bind(ids)
        .bind(status.as_db())
        .bind(note)
        .bind(decided_by)
        .fetch_all(db)
        .await?;
    memberships_from(&rows)
}

/// PENDING memberships of a community, oldest first, after the `(created_at, id)` cursor.
pub async fn list_pending(
    db: impl PgExecutor<'_>,
    community_id: Uuid,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> AppResult<Vec<Membership>> {
    list_by_status(db, community_id, Status::Pending, None, None, after, limit).await
}

/// APPROVED memberships of a community (optionally of one role, optionally whose display name
/// or handle contains `query`, case-insensitively), in joining order.
pub async fn list_members(
    db: impl PgExecutor<'_>,
    community_id: Uuid,
    role: Option<MemberRole>,
    query: Option<&str>,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> AppResult<Vec<Membership>> {
    list_by_status(db, community_id, Status::Approved, role, query, after, limit).await
}

async fn list_by_status(
    db: impl PgExecutor<'_>,
    community_id: Uuid,
    status: Status,
    role: Option<MemberRole>,
    query: Option<&str>,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> AppResult<Vec<Membership>> {
    let sql = format!(
        "select {MEMBERSHIP_COLUMNS} from community_memberships m join users u on u.id = m.user_id
         where m.community_id = $1 and m.status = $2 and ($3::text is null or m.role = $3)
           and u.deleted_at is null and u.role <> 'GUEST'
           and ($4::timestamptz is null or (m.created_at, m.id) > ($4, $5))
           and ($7::text is null or u.display_name ilike '%' || $7 || '%' or u.handle ilike '%' || $7 || '%')
         order by m.created_at, m.id
         limit $6"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(community_id)
        .bind(status.as_db())
        .bind(role.map(MemberRole::as_db))
        .bind(after.map(|a| a.0))
        .bind(after.map(|a| a.1))
        .bind(limit)
        .bind(query.map(crate::db::escape_like))
        .fetch_all(db)
        .await?;
    memberships_from(&rows)
}

/// APPROVED managers of a community (call with the community row locked).
pub async fn count_managers(db: impl PgExecutor<'_>, community_id: Uuid) -> AppResult<i64> {
    let (n,): (i64,) = sqlx::query_as(
        "select count(*) from community_memberships m join users u on u.id = m.user_id
         where m.community_id = $1 and m.status = 'APPROVED' and m.role = 'MANAGER' and u.deleted_at is null",
    )
    .bind(community_id)
    .fetch_one(db)
    .await?;
    Ok(n)
}

pub async fn set_role(conn: &mut PgConnection, membership_id: Uuid, role: MemberRole) -> AppResult<Membership> {
    let sql = format!(
        "with m as (
            update community_memberships set role = $2, updated_at = now() where id = $1 returning *)
         select {MEMBERSHIP_COLUMNS} from m join users u on u.id = m.user_id"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(membership_id).bind(role.as_db()).fetch_one(conn).await?;
    membership_from(&row)
}

pub async fn delete_membership(conn: &mut PgConnection, membership_id: Uuid) -> AppResult<()> {
    sqlx::query("delete from community_memberships where id = $1").bind(membership_id).execute(conn).await?;
    Ok(())
}

/// A user's PENDING and APPROVED memberships with their communities, by community name.
pub async fn my_communities(db: impl PgExecutor<'_>, user_id: Uuid, limit: i64) -> AppResult<Vec<MyCommunity>> {
    let sql = format!(
        "select {COMMUNITY_COLUMNS}, {MEMBERSHIP_COLUMNS}
         from community_memberships m
         join communities c on c.id = m.community_id
         join users u on u.id = m.user_id
         where m.user_id = $1 and m.status in ('PENDING', 'APPROVED') and u.deleted_at is null
         order by c.name, c.id
         limit $2"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(user_id).bind(limit).fetch_all(db).await?;
    rows.iter()
        .map(|r| Ok(MyCommunity { community: community_from(r, 0)?.public(), membership: Some(membership_from(r)?) }))
        .collect()
}

/// Memberships per status, for the `maru_community_memberships` gauge.
pub async fn membership_counts(db: impl PgExecutor<'_>) -> AppResult<Vec<(String, i64)>> {
    Ok(sqlx::query_as(
        "select m.status, count(*) from community_memberships m join users u on u.id = m.user_id
         where u.deleted_at is null group by m.status",
    )
    .fetch_all(db)
    .await?)
}

/// One registry row ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct ApartmentRow {
    pub code: String,
    pub name: String,
    pub address: String,
    pub registry: serde_json::Value,
}

/// Upsert counts of one batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpsertCounts {
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
}

/// Inserts or updates apartments by registry code in one statement; a row whose values did not
/// change is not written (its `updated_at` stays). Codes must be unique within the batch.
pub async fn upsert_apartments(db: impl PgExecutor<'_>, rows: &[ApartmentRow]) -> AppResult<UpsertCounts> {
    if rows.is_empty() {
        return Ok(UpsertCounts::default());
    }
    let ids: Vec<Uuid> = rows.iter().map(|_| Uuid::now_v7()).collect();
    let codes: Vec<&str> = rows.iter().map(|r| r.code.as_str()).collect();
    let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
    let addresses: Vec<&str> = rows.iter().map(|r| r.address.as_str()).collect();
    let registries: Vec<String> = rows.iter().map(|r| r.registry.to_string()).collect();
    // xmax = 0 only on a freshly inserted row version.
    let written: Vec<(bool,)> = sqlx::query_as(
        "insert into communities (id, kind, name, address, external_code, registry)
         select u.id, 'APARTMENT', u.name, u.address, u.code, u.registry::jsonb
           from unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[])
                as u(id, code, name, address, registry)
         on conflict (external_code) where external_code is not null do update
            set name = excluded.name, address = excluded.address, registry = excluded.registry,
                kind = 'APARTMENT', updated_at = now()
          where (communities.name, communities.address, communities.registry, communities.kind)
                is distinct from (excluded.name, excluded.address, excluded.registry, 'APARTMENT')
         returning (xmax = 0)",
    )
    .bind(&ids)
    .bind(&codes)
    .bind(&names)
    .bind(&addresses)
    .bind(&registries)
    .fetch_all(db)
    .await?;
    let created = written.iter().filter(|(inserted,)| *inserted).count() as u64;
    let updated = written.len() as u64 - created;
    Ok(UpsertCounts { created, updated, unchanged: rows.len() as u64 - written.len() as u64 })
}

// ---- synthetic complexes and the search indexes (benchmarks and the `search` load scenario,
// `super::synthetic`)

/// Inserts complexes `from..to` built from the registry's `(names, addresses, bjd codes)`
/// (external code `{code_prefix}{i:09}`, brand prefixes and phase suffixes by `i`); complexes
/// already there are kept. Returns rows inserted.
pub async fn insert_synthetic_apartments(
    db: &mut PgConnection,
    (names, addresses, bjd): (&[String], &[String], &[String]),
    code_prefix: &str,
    from: i64,
    to: i64,
) -> AppResult<u64> {
    let done = sqlx::query(
        "with f as (
             select row_number() over () - 1 as idx, name, address, bjd
               from unnest($1::text[], $2::text[], $3::text[]) as t(name, address, bjd)),
         n as (select count(*) as n from f)
         insert into communities (id, kind, name, address, external_code, registry)
         select gen_random_uuid(), 'APARTMENT',
                (array['', '신', '더샵', '래미안', '푸르지오', '힐스테이트', '센트럴', '자이', 'e편한세상', '뉴'])
                    [((g.i / n.n) % 10) + 1] || f.name
                    || case when g.i / n.n / 10 > 0 then ' ' || (g.i / n.n / 10 + 1) || '차' else '' end,
                f.address,
                $4 || lpad(g.i::text, 9, '0'),
                jsonb_build_object('bjdCode', f.bjd)
           from generate_series($5::bigint, $6::bigint - 1) as g(i)
           cross join n
           join f on f.idx = g.i % n.n
         on conflict (external_code) where external_code is not null do nothing",
    )
    .bind(names)
    .bind(addresses)
    .bind(bjd)
    .bind(code_prefix)
    .bind(from)
    .bind(to)
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// Drops the named indexes if they exist, and refreshes the statistics of `communities`.
pub async fn drop_indexes(db: &mut PgConnection, names: &[&str]) -> AppResult<()> {
    for name in names {
        let sql = format!("drop index if exists \"{}\"", name.replace('"', "\"\""));
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut *db).await?;
    }
    sqlx::query("analyze communities").execute(db).await?;
    Ok(())
}

/// Runs the index DDL statements (`create index if not exists …`), then refreshes the statistics.
pub async fn create_indexes(db: &mut PgConnection, ddl: &[&str]) -> AppResult<()> {
    for statement in ddl {
        sqlx::query(sqlx::AssertSqlSafe(statement.to_string())).execute(&mut *db).await?;
    }
    sqlx::query("analyze communities").execute(db).await?;
    Ok(())
}

/// How many of the named indexes exist on `communities`.
pub async fn count_indexes(db: &mut PgConnection, names: &[&str]) -> AppResult<i64> {
    Ok(sqlx::query_scalar("select count(*) from pg_indexes where tablename = 'communities' and indexname = any($1)")
        .bind(names)
        .fetch_one(db)
        .await?)
}

/// The communities `refs` name (each a community id or an apartment registry code), in `refs`
/// order, each once; refs that match nothing are left out.
pub async fn resolve_community_refs(db: impl PgExecutor<'_>, refs: &[String]) -> AppResult<Vec<Uuid>> {
    let ids: Vec<Option<Uuid>> = refs.iter().map(|r| Uuid::parse_str(r.trim()).ok()).collect();
    let codes: Vec<&str> = refs.iter().map(|r| r.trim()).collect();
    let rows: Vec<(Uuid,)> = sqlx::query_as(
        "select c.id from unnest($1::uuid[], $2::text[]) with ordinality as r(id, code, n)
           join communities c on c.id = r.id or c.external_code = r.code
         group by c.id order by min(r.n)",
    )
    .bind(ids)
    .bind(codes)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// APPROVED MEMBER memberships of `user_id` in `communities`, marked with `note` (guests).
pub async fn insert_guest_memberships(
    conn: &mut PgConnection,
    user_id: Uuid,
    communities: &[Uuid],
    note: &str,
) -> AppResult<()> {
    let ids: Vec<Uuid> = communities.iter().map(|_| Uuid::now_v7()).collect();
    sqlx::query(
        "insert into community_memberships (id, community_id, user_id, status, note, decided_at)
         select m.id, m.community_id, $3, 'APPROVED', $4, now()
         from unnest($1::uuid[], $2::uuid[]) as m(id, community_id)",
    )
    .bind(ids)
    .bind(communities)
    .bind(user_id)
    .bind(note)
    .execute(conn)
    .await?;
    Ok(())
}

/// Deletes the memberships of `user_id` marked with `note`; returns how many.
pub async fn delete_guest_memberships(conn: &mut PgConnection, user_id: Uuid, note: &str) -> AppResult<u64> {
    Ok(sqlx::query("delete from community_memberships where user_id = $1 and note = $2")
        .bind(user_id)
        .bind(note)
        .execute(conn)
        .await?
        .rows_affected())
}

#[cfg(test)]
mod tests {
    use sqlx::PgPool;

    use super::*;
    use crate::communities::synthetic::{self, SEARCH_INDEXES, Templates};
    use crate::db::fixtures::{community, membership, user};

    #[test]
    fn patterns_escape_wildcards() {
        assert_eq!(contains_pattern("파장"), "%파장%");
        assert_eq!(contains_pattern("10%_a\\"), "%10\\%\\_a\\\\%");
    }

    fn apartment(code: &str, name: &str, address: &str) -> ApartmentRow {
        ApartmentRow { code: code.into(), name: name.into(), address: address.into(), registry: serde_json::json!({}) }
    }

    fn query(text: &str, kind: Option<Kind>) -> SearchQuery {
        SearchQuery { text: text.into(), kind }
    }

    async fn names(pool: &PgPool, q: &SearchQuery, after: Option<&(String, Uuid)>) -> Vec<String> {
        search_communities(pool, q, after, 10).await.unwrap().into_iter().map(|c| c.name).collect()
    }

    /// The search statement changes with the query: two characters go through the bigram
    /// columns (one more parameter), longer ones through ILIKE; the count uses the same predicate.
    #[sqlx::test]
    async fn search_and_count_by_query_length_kind_and_cursor(pool: PgPool) {
        let rows = [
            apartment("A1", "파장 주공", "경기도 수원시 장안구 파장동"),
            apartment("A2", "정자 푸르지오", "경기도 수원시 장안구 정자동"),
            apartment("A3", "100% 아파트", "서울특별시 중구"),
        ];
        assert_eq!(upsert_apartments(&pool, &rows).await.unwrap().created, 3);
        community(&pool, "파장 클럽").await;
        for (text, kind, expected) in [
            ("파장", None, vec!["파장 주공", "파장 클럽"]),
            ("파장", Some(Kind::Apartment), vec!["파장 주공"]),
            ("정자", None, vec!["정자 푸르지오"]),
            ("장안구", None, vec!["정자 푸르지오", "파장 주공"]),
            ("0%", None, vec!["100% 아파트"]),
            ("00% 아", None, vec!["100% 아파트"]),
            ("없는말", None, vec![]),
        ] {
            let q = query(text, kind);
            assert_eq!(names(&pool, &q, None).await, expected, "{text}");
            assert_eq!(count_communities(&pool, &q, 10_001).await.unwrap(), expected.len() as i64, "{text}");
        }
        // The count stops at its bound.
        assert_eq!(count_communities(&pool, &query("장안구", None), 1).await.unwrap(), 1);
        let q = query("장안구", None);
        let first = search_communities(&pool, &q, None, 1).await.unwrap().remove(0);
        assert_eq!(names(&pool, &q, Some(&(first.name, first.id))).await, ["파장 주공"]);
    }

    #[sqlx::test]
    async fn standing_roles(pool: PgPool) {
        let (manager, pending, outsider) =
            (user(&pool, "manager", false).await, user(&pool, "pending", false).await, user(&pool, "out", false).await);
        let club = community(&pool, "club").await;
        membership(&pool, club, manager, "APPROVED").await;
        sqlx::query("update community_memberships set role = 'MANAGER' where user_id = $1")
            .bind(manager)
            .execute(&pool)
            .await
            .unwrap();
        membership(&pool, club, pending, "PENDING").await;
        assert_eq!(standing_role(&pool, club, manager).await.unwrap(), Some(Some("MANAGER".to_owned())));
        assert_eq!(standing_role(&pool, club, pending).await.unwrap(), Some(None));
        assert_eq!(standing_role(&pool, club, outsider).await.unwrap(), Some(None));
        assert_eq!(standing_role(&pool, Uuid::now_v7(), manager).await.unwrap(), None);
    }

    /// The synthetic complexes and the index statements built from names and DDL.
    #[sqlx::test]
    async fn synthetic_complexes_and_search_indexes(pool: PgPool) {
        let t = Templates::from_json(
            r#"[{"kaptName":"파장 주공","as1":"경기도","as2":"수원시","bjdCode":"41"},
                                        {"kaptName":"정자","as1":"경기도","bjdCode":"42"}]"#,
        )
        .unwrap();
        let mut db = pool.acquire().await.unwrap();
        assert_eq!(synthetic::insert(&mut db, &t, "T", 0, 25).await.unwrap(), 25);
        assert_eq!(synthetic::insert(&mut db, &t, "T", 20, 30).await.unwrap(), 5, "existing codes are kept");
        let (n, brands): (i64, i64) = sqlx::query_as(
            "select count(*), count(*) filter (where name like '래미안%') from communities where external_code like 'T%'",
        )
        .fetch_one(&mut *db)
        .await
        .unwrap();
        assert_eq!((n, brands), (30, 4), "complexes 6, 7, 26 and 27");
        assert_eq!(synthetic::search_indexes_present(&mut db).await.unwrap(), SEARCH_INDEXES.len() as i64);
        synthetic::drop_search_indexes(&mut db).await.unwrap();
        assert_eq!(synthetic::search_indexes_present(&mut db).await.unwrap(), 0);
        assert_eq!(
            count_communities(&pool, &query("파장", None), 10_001).await.unwrap(),
            15,
            "searches work without them"
        );
        synthetic::create_search_indexes(&mut db).await.unwrap();
        assert_eq!(synthetic::search_indexes_present(&mut db).await.unwrap(), SEARCH_INDEXES.len() as i64);
    }
}
