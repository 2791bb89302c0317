//! Polls: managers (and admins) ask a question with 2–10 distinct options and an optional
//! deadline; APPROVED members vote once, in their own name; members read results.
//!
//! One vote per member and poll is the unique constraint
//! `community_poll_votes_poll_id_user_id_key` (a second vote, concurrent ones included, is
//! ALREADY_EXISTS `ALREADY_VOTED`); a vote can only name an option of its own poll (composite
//! foreign key). Results are counted from the vote rows, so they always equal them. A vote
//! holds a share lock on the poll row, so it either commits before a ClosePoll or sees the poll
//! closed. Every counted vote increments `maru_poll_votes_total`.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{not_found, visible};
use crate::caller::Caller;
use crate::communities::access;
use crate::error::{AppError, AppResult, Reason, Violations};
use crate::fields::{enum_value, id, request_id, text, time, timestamp};
use crate::grpc::pb;
use crate::idempotency::{RequestId, remember, replayed};
use crate::state::AppState;

pub const MAX_QUESTION_CHARS: usize = 300;
pub const MAX_OPTION_CHARS: usize = 200;
pub const MIN_OPTIONS: usize = 2;
pub const MAX_OPTIONS: usize = 10;

/// A stored poll (without results).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct PollRow {
    pub id: Uuid,
    pub community_id: Uuid,
    pub question: String,
    pub closes_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

impl PollRow {
    /// Open until a manager closes it or its deadline passes.
    pub fn is_open(&self, now: DateTime<Utc>) -> bool {
        self.closed_at.is_none() && self.closes_at.is_none_or(|c| c > now)
    }
}

/// One option with its votes.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct OptionResult {
    pub id: Uuid,
    pub poll_id: Uuid,
    pub text: String,
    pub votes: i64,
}

/// A poll as a member sees it: results and their own vote.
#[derive(Debug, Clone, PartialEq)]
pub struct Poll {
    pub poll: PollRow,
    pub options: Vec<OptionResult>,
    pub my_option: Option<Uuid>,
    pub open: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum StateFilter {
    All,
    Open,
    Closed,
}

#[derive(Debug, Serialize)]
pub struct CreatePoll {
    pub community_id: Uuid,
    pub question: String,
    pub options: Vec<String>,
    pub closes_at: Option<DateTime<Utc>>,
    #[serde(skip)]
    pub request_id: Option<RequestId>,
}

#[derive(Debug)]
pub struct ListPolls {
    pub community_id: Uuid,
    pub state: StateFilter,
    pub page_size: i32,
    pub page_token: String,
}

#[derive(Debug, Serialize)]
pub struct CastVote {
    pub poll_id: Uuid,
    pub option_id: Uuid,
    #[serde(skip)]
    pub request_id: Option<RequestId>,
}

/// The options of a new poll: 2–10, each 1–200 characters, distinct ignoring case and
/// surrounding spaces. Violations name `options` (the count) or `options[i]`.
pub fn parse_options(v: &mut Violations, raw: &[String]) -> Vec<String> {
    if raw.len() < MIN_OPTIONS || raw.len() > MAX_OPTIONS {
        v.add("options", format!("must have {MIN_OPTIONS} to {MAX_OPTIONS} options"));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, o) in raw.iter().enumerate().take(MAX_OPTIONS + 1) {
        let field = format!("options[{i}]");
        let t = text(v, &field, o, 1, MAX_OPTION_CHARS, false);
        if !t.is_empty() && !seen.insert(t.to_lowercase()) {
            v.add(&field, "duplicates an earlier option");
        }
        out.push(t);
    }
    out
}

// ---- conversions

impl TryFrom<pb::CreatePollRequest> for CreatePoll {
    type Error = AppError;
    fn try_from(r: pb::CreatePollRequest) -> Result<Self, AppError> {
        let mut v = Violations::new();
        let community_id = id(&mut v, "community_id", &r.community_id);
        let question = text(&mut v, "question", &r.question, 1, MAX_QUESTION_CHARS, false);
        let options = parse_options(&mut v, &r.options);
        let closes_at = time(&mut v, "closes_at", r.closes_at.as_ref(), false);
        if closes_at.is_some_and(|c| c <= Utc::now()) {
            v.add("closes_at", "must be in the future");
        }
        let request_id = request_id(&mut v, &r.request_id);
        v.finish()?;
        Ok(CreatePoll { community_id, question, options, closes_at, request_id })
    }
}

impl TryFrom<pb::ListPollsRequest> for ListPolls {
    type Error = AppError;
    fn try_from(r: pb::ListPollsRequest) -> Result<Self, AppError> {
        let mut v = Violations::new();
        let community_id = id(&mut v, "community_id", &r.community_id);
        let state = match v.check("state", enum_value::<pb::PollState>(r.state, "poll state")) {
            Some(pb::PollState::Open) => StateFilter::Open,
            Some(pb::PollState::Closed) => StateFilter::Closed,
            Some(pb::PollState::Unspecified) | None => StateFilter::All,
        };
        v.finish()?;
        Ok(ListPolls { community_id, state, page_size: r.page_size, page_token: r.page_token })
    }
}

impl TryFrom<pb::CastVoteRequest> for CastVote {
    type Error = AppError;
    fn try_from(r: pb::CastVoteRequest) -> Result<Self, AppError> {
        let mut v = Violations::new();
        let cmd = CastVote {
            poll_id: id(&mut v, "poll_id", &r.poll_id),
            option_id: id(&mut v, "option_id", &r.option_id),
            request_id: request_id(&mut v, &r.request_id),
        };
        v.finish()?;
        Ok(cmd)
    }
}

pub fn to_pb(p: Poll) -> pb::Poll {
    let total = p.options.iter().map(|o| o.votes).sum();
    let state = if p.open { pb::PollState::Open } else { pb::PollState::Closed };
    pb::Poll {
        id: p.poll.id.to_string(),
        community_id: p.poll.community_id.to_string(),
        question: p.poll.question,
        options: p
            .options
            .into_iter()
            .map(|o| pb::PollOption { id: o.id.to_string(), text: o.text, votes: o.votes })
            .collect(),
        closes_at: p.poll.closes_at.map(timestamp),
        closed_at: p.poll.closed_at.map(timestamp),
        state: state as i32,
        total_votes: total,
        my_option_id: p.my_option.map(|u| u.to_string()).unwrap_or_default(),
        created_by: p.poll.created_by.map(|u| u.to_string()).unwrap_or_default(),
        created_at: Some(timestamp(p.poll.created_at)),
    }
}

// ---- use cases

/// Results and the caller's vote for `rows`, in the same order.
/// Polls as `caller` sees them, read on `conn` (writes read their answer inside their
/// transaction, so a committed write is never answered with a retryable error).
async fn views(conn: &mut PgConnection, caller: &Caller, rows: Vec<PollRow>) -> AppResult<Vec<Poll>> {
    let ids: Vec<Uuid> = rows.iter().map(|p| p.id).collect();
    let mut options: HashMap<Uuid, Vec<OptionResult>> = HashMap::new();
    for o in store::results(&mut *conn, &ids).await? {
        options.entry(o.poll_id).or_default().push(o);
    }
    let mine: HashMap<Uuid, Uuid> = store::votes_of(&mut *conn, &ids, caller.user_id).await?.into_iter().collect();
    let now = Utc::now();
    Ok(rows
        .into_iter()
        .map(|poll| Poll {
            options: options.remove(&poll.id).unwrap_or_default(),
            my_option: mine.get(&poll.id).copied(),
            open: poll.is_open(now),
            poll,
        })
        .collect())
}

async fn view(conn: &mut PgConnection, caller: &Caller, poll_id: Uuid) -> AppResult<Poll> {
    let row = store::get_poll(&mut *conn, poll_id).await?.ok_or_else(|| not_found(Reason::PollNotFound))?;
    views(conn, caller, vec![row]).await?.pop().ok_or_else(|| not_found(Reason::PollNotFound))
}

#[tracing::instrument(name = "polls.create_poll", skip_all, err(level = "debug"))]
pub async fn create_poll(state: &AppState, caller: &Caller, cmd: CreatePoll) -> AppResult<Poll> {
    access::manager(&state.db, caller, cmd.community_id).await?;
    let mut tx = crate::db::begin(&state.db).await?;
    // The replay returns the poll as it is now (results move), so only its id is remembered.
    let poll_id = match replayed::<Uuid>(state, &mut tx, "CreatePoll", caller, cmd.request_id.as_ref(), &cmd).await? {
        Some(id) => id,
        None => {
            let id = store::insert_poll(&mut tx, &cmd, caller.user_id).await?;
            remember(&mut tx, "CreatePoll", caller, cmd.request_id.as_ref(), &id).await?;
            id
        }
    };
    let poll = view(&mut tx, caller, poll_id).await?;
    crate::db::commit(&state.db, tx).await?;
    Ok(poll)
}

#[tracing::instrument(name = "polls.get_poll", skip_all, err(level = "debug"))]
pub async fn get_poll(state: &AppState, caller: &Caller, poll_id: Uuid) -> AppResult<Poll> {
    let row = store::get_poll(&state.db, poll_id).await?.ok_or_else(|| not_found(Reason::PollNotFound))?;
    visible(state, caller, row.community_id, Reason::PollNotFound).await?;
    let mut conn = state.db.acquire().await?;
    views(&mut conn, caller, vec![row]).await?.pop().ok_or_else(|| not_found(Reason::PollNotFound))
}

/// A page of polls, newest first, optionally only open or closed ones.
#[tracing::instrument(name = "polls.list_polls", skip_all, err(level = "debug"))]
pub async fn list_polls(state: &AppState, caller: &Caller, q: ListPolls) -> AppResult<(Vec<Poll>, String)> {
    let query = ("polls", q.community_id, q.state);
    let page = state.pager.page::<store::Cursor>(q.page_size, &q.page_token, &query)?;
    access::member(&state.db, caller, q.community_id).await?;
    let rows = store::list_polls(&state.db, q.community_id, q.state, page.after, page.fetch_limit()).await?;
    let (rows, next) = state.pager.finish(&page, rows, &query, |p| (p.created_at, p.id));
    let mut conn = state.db.acquire().await?;
    Ok((views(&mut conn, caller, rows).await?, next))
}

/// Closes a poll now; a closed poll is returned unchanged.
#[tracing::instrument(name = "polls.close_poll", skip_all, err(level = "debug"))]
pub async fn close_poll(state: &AppState, caller: &Caller, poll_id: Uuid) -> AppResult<Poll> {
    let row = store::get_poll(&state.db, poll_id).await?.ok_or_else(|| not_found(Reason::PollNotFound))?;
    visible(state, caller, row.community_id, Reason::PollNotFound).await?;
    access::manager(&state.db, caller, row.community_id).await?;
    let mut tx = crate::db::begin(&state.db).await?;
    store::close_poll(&mut *tx, poll_id).await?;
    let poll = view(&mut tx, caller, poll_id).await?;
    crate::db::commit(&state.db, tx).await?;
    Ok(poll)
}

#[tracing::instrument(name = "polls.cast_vote", skip_all, err(level = "debug"))]
pub async fn cast_vote(state: &AppState, caller: &Caller, cmd: CastVote) -> AppResult<Poll> {
    let row = store::get_poll(&state.db, cmd.poll_id).await?.ok_or_else(|| not_found(Reason::PollNotFound))?;
    visible(state, caller, row.community_id, Reason::PollNotFound).await?;
    access::resident(&state.db, caller, row.community_id).await?;

    let mut tx = crate::db::begin(&state.db).await?;
    // A retry of a counted vote is answered like the first call (the poll with the vote
    // counted), not ALREADY_VOTED.
    if replayed::<()>(state, &mut tx, "CastVote", caller, cmd.request_id.as_ref(), &cmd).await?.is_some() {
        return view(&mut tx, caller, cmd.poll_id).await;
    }
    // Share lock: ClosePoll (an UPDATE) waits for votes in flight and vice versa.
    let (poll, now) =
        store::lock_poll_shared(&mut tx, cmd.poll_id).await?.ok_or_else(|| not_found(Reason::PollNotFound))?;
    if !store::option_of_poll(&mut tx, cmd.poll_id, cmd.option_id).await? {
        return Err(
            Violations::one("option_id", "is not an option of this poll").into_error_with(Reason::PollOptionNotFound)
        );
    }
    if !poll.is_open(now) {
        return Err(AppError::failed_precondition(Reason::PollClosed, "the poll is closed"));
    }
    store::insert_vote(&mut tx, cmd.poll_id, cmd.option_id, caller.user_id).await?;
    remember(&mut tx, "CastVote", caller, cmd.request_id.as_ref(), &()).await?;
    let poll = view(&mut tx, caller, cmd.poll_id).await?;
    crate::db::commit(&state.db, tx).await?;
    metrics::counter!("maru_poll_votes_total").increment(1);
    Ok(poll)
}

/// Every SQL statement of polls.
pub mod store {
    use chrono::{DateTime, Utc};
    use sqlx::{PgConnection, PgExecutor};
    use uuid::Uuid;

    use super::{CreatePoll, OptionResult, PollRow, StateFilter};
    use crate::error::AppResult;

    /// Sort key of ListPolls: (created_at, id), descending.
    pub type Cursor = (DateTime<Utc>, Uuid);

    const COLUMNS: &str = "id, community_id, question, closes_at, closed_at, created_by, created_at";

    /// Inserts the poll and its options (in order); returns the poll id.
    pub async fn insert_poll(conn: &mut PgConnection, p: &CreatePoll, by: Uuid) -> AppResult<Uuid> {
        let id = Uuid::now_v7();
        sqlx::query(
            "insert into community_polls (id, community_id, question, closes_at, created_by)
             values ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(p.community_id)
        .bind(&p.question)
        .bind(p.closes_at)
        .bind(by)
        .execute(&mut *conn)
        .await?;
        let ids: Vec<Uuid> = p.options.iter().map(|_| Uuid::now_v7()).collect();
        sqlx::query(
            "insert into community_poll_options (id, poll_id, position, text)
             select o.id, $1, o.pos::int, o.text
               from unnest($2::uuid[], $3::text[]) with ordinality as o(id, text, pos)",
        )
        .bind(id)
        .bind(&ids)
        .bind(&p.options)
        .execute(&mut *conn)
        .await?;
        Ok(id)
    }

    pub async fn get_poll(db: impl PgExecutor<'_>, id: Uuid) -> AppResult<Option<PollRow>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!("select {COLUMNS} from community_polls where id = $1")))
            .bind(id)
            .fetch_optional(db)
            .await?)
    }

    /// The poll under a share lock, and the transaction's `now()`.
    pub async fn lock_poll_shared(conn: &mut PgConnection, id: Uuid) -> AppResult<Option<(PollRow, DateTime<Utc>)>> {
        let row: Option<PollRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "select {COLUMNS} from community_polls where id = $1 for share"
        )))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let now: DateTime<Utc> = sqlx::query_scalar("select now()").fetch_one(&mut *conn).await?;
        Ok(Some((row, now)))
    }

    pub async fn option_of_poll(conn: &mut PgConnection, poll_id: Uuid, option_id: Uuid) -> AppResult<bool> {
        Ok(sqlx::query_scalar("select exists (select 1 from community_poll_options where id = $2 and poll_id = $1)")
            .bind(poll_id)
            .bind(option_id)
            .fetch_one(conn)
            .await?)
    }

    pub async fn list_polls(
        db: impl PgExecutor<'_>,
        community_id: Uuid,
        state: StateFilter,
        after: Option<Cursor>,
        limit: i64,
    ) -> AppResult<Vec<PollRow>> {
        let open = match state {
            StateFilter::All => None,
            StateFilter::Open => Some(true),
            StateFilter::Closed => Some(false),
        };
        let (created, id) = after.map_or((None, None), |(c, i)| (Some(c), Some(i)));
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "select {COLUMNS} from community_polls
              where community_id = $1
                and ($2::boolean is null
                     or $2 = (closed_at is null and (closes_at is null or closes_at > now())))
                and ($3::timestamptz is null or (created_at, id) < ($3, $4))
              order by created_at desc, id desc
              limit $5"
        )))
        .bind(community_id)
        .bind(open)
        .bind(created)
        .bind(id)
        .bind(limit)
        .fetch_all(db)
        .await?)
    }

    /// Options of `poll_ids` in their order, each with its votes counted from the rows.
    pub async fn results(db: impl PgExecutor<'_>, poll_ids: &[Uuid]) -> AppResult<Vec<OptionResult>> {
        Ok(sqlx::query_as(
            "select o.id, o.poll_id, o.text,
                    (select count(*) from community_poll_votes v
                      where v.poll_id = o.poll_id and v.option_id = o.id) as votes
               from community_poll_options o
              where o.poll_id = any($1)
              order by o.poll_id, o.position",
        )
        .bind(poll_ids)
        .fetch_all(db)
        .await?)
    }

    /// (poll id, option id) of `user`'s votes among `poll_ids`.
    pub async fn votes_of(db: impl PgExecutor<'_>, poll_ids: &[Uuid], user: Uuid) -> AppResult<Vec<(Uuid, Uuid)>> {
        Ok(sqlx::query_as(
            "select poll_id, option_id from community_poll_votes where poll_id = any($1) and user_id = $2",
        )
        .bind(poll_ids)
        .bind(user)
        .fetch_all(db)
        .await?)
    }

    /// Closes an open poll (no-op on a closed one).
    pub async fn close_poll(db: impl PgExecutor<'_>, id: Uuid) -> AppResult<()> {
        sqlx::query(
            "update community_polls set closed_at = now(), updated_at = now() where id = $1 and closed_at is null",
        )
        .bind(id)
        .execute(db)
        .await?;
        Ok(())
    }

    /// Records a vote; a second vote of the same user violates
    /// `community_poll_votes_poll_id_user_id_key` (ALREADY_VOTED).
    pub async fn insert_vote(conn: &mut PgConnection, poll_id: Uuid, option_id: Uuid, user: Uuid) -> AppResult<()> {
        sqlx::query("insert into community_poll_votes (poll_id, option_id, user_id) values ($1, $2, $3)")
            .bind(poll_id)
            .bind(option_id)
            .bind(user)
            .execute(conn)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn fields(v: Violations) -> String {
        v.into_error().to_string()
    }

    #[test]
    fn options_rules() {
        let mut v = Violations::new();
        assert_eq!(parse_options(&mut v, &opts(&[" 찬성 ", "반대"])), ["찬성", "반대"]);
        assert!(v.is_empty());

        let mut v = Violations::new();
        parse_options(&mut v, &opts(&["only one"]));
        assert!(fields(v).contains("options: must have 2 to 10"));

        let mut v = Violations::new();
        parse_options(&mut v, &opts(&["Yes", "no", " yes", ""]));
        let s = fields(v);
        assert!(s.contains("options[2]: duplicates"), "{s}");
        assert!(s.contains("options[3]: is required"), "{s}");
        assert!(!s.contains("options[1]"), "{s}");

        let mut v = Violations::new();
        parse_options(&mut v, &(0..11).map(|i| i.to_string()).collect::<Vec<_>>());
        assert!(fields(v).contains("options: must have"));
    }

    #[test]
    fn open_until_closed_or_deadline() {
        let now = Utc::now();
        let mut p = PollRow {
            id: Uuid::nil(),
            community_id: Uuid::nil(),
            question: "q".into(),
            closes_at: None,
            closed_at: None,
            created_by: None,
            created_at: now,
        };
        assert!(p.is_open(now));
        p.closes_at = Some(now + chrono::Duration::minutes(1));
        assert!(p.is_open(now));
        p.closes_at = Some(now);
        assert!(!p.is_open(now));
        p.closes_at = None;
        p.closed_at = Some(now);
        assert!(!p.is_open(now));
    }
}
