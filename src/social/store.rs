//! Every SQL statement of profiles and follows. Deleted accounts (`deleted_at` set) are
//! invisible to all of them except [`delete_account`].

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::model::{Profile, ProfileCard, ProfilePatch, ProfileSearch, ProfileSummary};
use crate::db::escape_like;
use crate::error::AppResult;

/// Sort key of follow lists: (created_at, other user's id), both descending.
pub type Cursor = (DateTime<Utc>, Uuid);

/// Profile columns of `users u`; `$viewer` is the caller (nil for anonymous).
fn profile_select(viewer_param: &str) -> String {
    format!(
        "select u.id as user_id, u.handle, u.display_name, u.bio, u.link1, u.link2, u.image_url, u.created_at,
                u.dev_position as position, u.tech_tags, u.links, u.profile_version as version,
                (select count(*) from follows f join users x on x.id = f.follower_id and x.deleted_at is null
                  where f.followee_id = u.id) as follower_count,
                (select count(*) from follows f join users x on x.id = f.followee_id and x.deleted_at is null
                  where f.follower_id = u.id) as following_count,
                exists (select 1 from follows f where f.follower_id = {viewer_param} and f.followee_id = u.id)
                  as followed_by_me,
                exists (select 1 from follows f where f.follower_id = u.id and f.followee_id = {viewer_param})
                  as follows_me
           from users u"
    )
}

pub async fn get_profile_by_handle(db: impl PgExecutor<'_>, handle: &str, viewer: Uuid) -> AppResult<Option<Profile>> {
    let sql = format!("{} where lower(u.handle) = lower($1) and u.deleted_at is null", profile_select("$2"));
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(handle).bind(viewer).fetch_optional(db).await?)
}

pub async fn get_profile(db: impl PgExecutor<'_>, id: Uuid, viewer: Uuid) -> AppResult<Option<Profile>> {
    let sql = format!("{} where u.id = $1 and u.deleted_at is null", profile_select("$2"));
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).bind(viewer).fetch_optional(db).await?)
}

/// The accounts people search shows: live ones. The one place that decides it, so that an
/// account state that must also hide people (suspension by moderation) joins here.
/// Suspended accounts (ReportService SUSPEND_USER) have `deleted_at` set too (a check constraint
/// of `users`), so this one condition hides both.
const SEARCHABLE_ACCOUNT: &str = "u.deleted_at is null";

/// Sort key of people search: (account created_at, id), both descending.
pub type SearchCursor = (DateTime<Utc>, Uuid);

/// A page of the accounts matching `s`, newest first. A query's pairs select candidates by the
/// bigram index (`users_search_bigram_idx`), ILIKE over the same text decides. Only the
/// conditions asked for are in the statement, so each plan can use its index.
pub async fn search_profiles(
    conn: &mut PgConnection,
    s: &ProfileSearch,
    after: Option<SearchCursor>,
    limit: i64,
) -> AppResult<Vec<ProfileCard>> {
    let mut cond = vec![SEARCHABLE_ACCOUNT];
    if s.query.is_some() {
        cond.push(
            "u.search_bigrams @> (select community_bigrams($2::text))
             and profile_search_text(u.handle, u.display_name, u.bio, u.tech_tags) ilike '%' || $1 || '%'",
        );
    }
    if s.position.is_some() {
        cond.push("u.dev_position = $3");
    }
    if s.tech_tag.is_some() {
        cond.push("u.tech_tags @> array[$4::text]");
    }
    if after.is_some() {
        cond.push("(u.created_at, u.id) < ($5, $6)");
    }
    let sql = format!(
        "select u.id as user_id, u.handle, u.display_name, u.image_url, u.bio, u.dev_position as position,
                u.tech_tags, u.created_at
           from users u
          where {}
          order by u.created_at desc, u.id desc
          limit $7",
        cond.join(" and ")
    );
    let (at, id) = after.map_or((None, None), |(a, i)| (Some(a), Some(i)));
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(s.query.as_deref().map(escape_like))
        .bind(s.query.as_deref())
        .bind(s.position.as_deref())
        .bind(s.tech_tag.as_deref())
        .bind(at)
        .bind(id)
        .bind(limit)
        .fetch_all(conn)
        .await?)
}

/// Whether `follower` follows `followee`.
pub async fn follows(db: impl PgExecutor<'_>, follower: Uuid, followee: Uuid) -> AppResult<bool> {
    Ok(sqlx::query_scalar("select exists(select 1 from follows where follower_id = $1 and followee_id = $2)")
        .bind(follower)
        .bind(followee)
        .fetch_one(db)
        .await?)
}

/// Whether `a` follows `b` and whether `b` follows `a`, in one round trip.
pub async fn follow_pair(db: impl PgExecutor<'_>, a: Uuid, b: Uuid) -> AppResult<(bool, bool)> {
    Ok(sqlx::query_as(
        "select exists(select 1 from follows where follower_id = $1 and followee_id = $2),
                exists(select 1 from follows where follower_id = $2 and followee_id = $1)",
    )
    .bind(a)
    .bind(b)
    .fetch_one(db)
    .await?)
}

/// The id of the live account with `handle`.
pub async fn user_id_by_handle(db: impl PgExecutor<'_>, handle: &str) -> AppResult<Option<Uuid>> {
    let row: Option<(Uuid,)> =
        sqlx::query_as("select id from users where lower(handle) = lower($1) and deleted_at is null")
            .bind(handle)
            .fetch_optional(db)
            .await?;
    Ok(row.map(|r| r.0))
}

/// The handle of a live account.
pub async fn handle_of(db: impl PgExecutor<'_>, id: Uuid) -> AppResult<Option<String>> {
    let row: Option<(String,)> = sqlx::query_as("select handle from users where id = $1 and deleted_at is null")
        .bind(id)
        .fetch_optional(db)
        .await?;
    Ok(row.map(|r| r.0))
}

/// The handles of the live accounts among `ids` (in no particular order).
pub async fn handles_of(db: impl PgExecutor<'_>, ids: &[Uuid]) -> AppResult<Vec<String>> {
    Ok(sqlx::query_scalar("select handle from users where id = any($1) and deleted_at is null")
        .bind(ids)
        .fetch_all(db)
        .await?)
}

/// Applies `p` if the account is live and (when `p.expected_version` is set) still at that
/// version, bumping the version; false otherwise.
pub async fn update_profile(db: impl PgExecutor<'_>, id: Uuid, p: &ProfilePatch) -> AppResult<bool> {
    Ok(sqlx::query(
        "update users
            set display_name = coalesce($2, display_name), bio = coalesce($3, bio),
                link1 = coalesce($4, link1), link2 = coalesce($5, link2), image_url = coalesce($6, image_url),
                dev_position = coalesce($7, dev_position), tech_tags = coalesce($8, tech_tags),
                links = coalesce($9, links), profile_version = profile_version + 1, updated_at = now()
          where id = $1 and deleted_at is null and ($10::bigint is null or profile_version = $10)",
    )
    .bind(id)
    .bind(&p.display_name)
    .bind(&p.bio)
    .bind(&p.link1)
    .bind(&p.link2)
    .bind(&p.image_url)
    .bind(&p.position)
    .bind(&p.tech_tags)
    .bind(&p.links)
    .bind(p.expected_version)
    .execute(db)
    .await?
    .rows_affected()
        == 1)
}

/// Soft-deletes the account and revokes every session; false when it was already gone.
pub async fn delete_account(conn: &mut PgConnection, id: Uuid) -> AppResult<bool> {
    let n = sqlx::query("update users set deleted_at = now(), updated_at = now() where id = $1 and deleted_at is null")
        .bind(id)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    sqlx::query(
        "update sessions set revoked_at = now(), revoked_reason = 'account_deleted'
          where user_id = $1 and revoked_at is null",
    )
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(n == 1)
}

/// Inserts the follow unless it exists; true when a row was created.
pub async fn insert_follow(db: impl PgExecutor<'_>, follower: Uuid, followee: Uuid) -> AppResult<bool> {
    Ok(sqlx::query(
        "insert into follows (follower_id, followee_id) values ($1, $2)
         on conflict on constraint follows_pkey do nothing",
    )
    .bind(follower)
    .bind(followee)
    .execute(db)
    .await?
    .rows_affected()
        == 1)
}

/// Deletes the follow; true when a row was deleted.
pub async fn delete_follow(db: impl PgExecutor<'_>, follower: Uuid, followee: Uuid) -> AppResult<bool> {
    Ok(sqlx::query("delete from follows where follower_id = $1 and followee_id = $2")
        .bind(follower)
        .bind(followee)
        .execute(db)
        .await?
        .rows_affected()
        == 1)
}

/// Followers of `user` (`followers = true`) or whom `user` follows, newest follow first.
pub async fn list_follows(
    db: impl PgExecutor<'_>,
    user: Uuid,
    followers: bool,
    after: Option<Cursor>,
    limit: i64,
) -> AppResult<Vec<ProfileSummary>> {
    let (me, other) = if followers { ("followee_id", "follower_id") } else { ("follower_id", "followee_id") };
    let (at, id) = after.map_or((None, None), |(a, i)| (Some(a), Some(i)));
    let sql = format!(
        "select u.id as user_id, u.handle, u.display_name, u.image_url, f.created_at as followed_at
           from follows f join users u on u.id = f.{other} and u.deleted_at is null
          where f.{me} = $1
            and ($2::timestamptz is null or (f.created_at, f.{other}) < ($2, $3))
          order by f.created_at desc, f.{other} desc
          limit $4"
    );
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(user).bind(at).bind(id).bind(limit).fetch_all(db).await?)
}

#[cfg(test)]
mod tests {
    use sqlx::PgPool;

    use super::*;
    use crate::db::fixtures::user;

    /// The profile statement with the viewer's parameter, and the follow lists whose columns
    /// depend on the direction.
    #[sqlx::test]
    async fn profiles_and_follow_lists_both_ways(pool: PgPool) {
        let (ann, ben, cho) =
            (user(&pool, "ann", false).await, user(&pool, "ben", false).await, user(&pool, "cho", false).await);
        assert!(insert_follow(&pool, ben, ann).await.unwrap());
        assert!(insert_follow(&pool, cho, ann).await.unwrap());
        assert!(insert_follow(&pool, ann, cho).await.unwrap());
        let seen_by_ben = get_profile_by_handle(&pool, "ANN", ben).await.unwrap().unwrap();
        assert_eq!((seen_by_ben.follower_count, seen_by_ben.following_count, seen_by_ben.followed_by_me), (2, 1, true));
        let anonymous = get_profile(&pool, ann, Uuid::nil()).await.unwrap().unwrap();
        assert_eq!((anonymous.handle.as_str(), anonymous.followed_by_me), ("ann", false));

        let handles = |v: Vec<ProfileSummary>| v.into_iter().map(|p| p.handle).collect::<Vec<_>>();
        assert_eq!(handles(list_follows(&pool, ann, true, None, 10).await.unwrap()), ["cho", "ben"]);
        assert_eq!(handles(list_follows(&pool, ann, false, None, 10).await.unwrap()), ["cho"]);
        let first = list_follows(&pool, ann, true, None, 1).await.unwrap().remove(0);
        let rest = list_follows(&pool, ann, true, Some((first.followed_at, first.user_id)), 10).await.unwrap();
        assert_eq!(handles(rest), ["ben"]);

        // A deleted account leaves lists and counts.
        assert!(delete_account(&mut pool.acquire().await.unwrap(), cho).await.unwrap());
        assert_eq!(handles(list_follows(&pool, ann, true, None, 10).await.unwrap()), ["ben"]);
        let after = get_profile(&pool, ann, ben).await.unwrap().unwrap();
        assert_eq!((after.follower_count, after.following_count), (1, 0));
        assert!(get_profile(&pool, cho, ann).await.unwrap().is_none());
    }
}

/// People search over 100,000 accounts (issue 16 "People"): prints the median time of each kind
/// of search; the figures are in docs/people.md. A measurement, not a test of speed:
/// `cargo test --workspace --lib people_search_bench -- --ignored --nocapture`.
#[cfg(test)]
mod bench {
    use std::time::{Duration, Instant};

    use sqlx::PgPool;

    use super::*;

    #[sqlx::test]
    #[ignore = "a benchmark: run it by name"]
    async fn people_search_bench(pool: PgPool) {
        let started = Instant::now();
        sqlx::query(
            "insert into users (id, handle, email, password_hash, display_name, bio, dev_position, tech_tags,
                                created_at)
             select gen_random_uuid(), 'user' || i, 'user' || i || '@example.com', 'x',
                    (array['김','이','박','최','정','강','조','윤','장','임'])[1 + i % 10]
                      || (array['지민','서연','민수','하준','도윤','서준','예은','지우','수아','현우'])[1 + (i / 10) % 10],
                    (array['판교에서 일하는','서울 사는','부산 출신','주니어','시니어','취준생'])[1 + i % 6] || ' '
                      || (array['백엔드','프론트엔드','디자이너','기획자','데이터 엔지니어','머신러닝'])[1 + (i / 7) % 6]
                      || ' 개발자입니다. ' || md5(i::text),
                    (array['BACKEND','FRONTEND','FULLSTACK','DESIGN','AI',''])[1 + i % 6],
                    array[(array['rust','go','react','figma','python','kotlin','swift','spring'])[1 + i % 8],
                          (array['postgresql','redis','kubernetes','aws','docker'])[1 + i % 5]],
                    now() - i * interval '1 minute'
               from generate_series(1, 100000) as i",
        )
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query("analyze users").execute(&pool).await.unwrap();
        println!("seeded 100,000 accounts in {:?}", started.elapsed());
        let q = |query: Option<&str>, position: Option<&str>, tag: Option<&str>| ProfileSearch {
            query: query.map(str::to_owned),
            position: position.map(str::to_owned),
            tech_tag: tag.map(str::to_owned),
        };
        let cases = [
            ("common name 지민 (10%)", q(Some("지민"), None, None)),
            ("bio word 백엔 (17%)", q(Some("백엔"), None, None)),
            ("rare handle user99999", q(Some("user99999"), None, None)),
            ("no match 없는말", q(Some("없는말"), None, None)),
            ("tag rust (12%)", q(None, None, Some("rust"))),
            ("position BACKEND (17%)", q(None, Some("BACKEND"), None)),
            ("지민 + BACKEND + rust", q(Some("지민"), Some("BACKEND"), Some("rust"))),
        ];
        let mut conn = pool.acquire().await.unwrap();
        for (name, s) in cases {
            let mut times = Vec::new();
            let mut after = None;
            for _ in 0..7 {
                let t = Instant::now();
                let rows = search_profiles(&mut conn, &s, None, 21).await.unwrap();
                times.push(t.elapsed());
                after = rows.get(19).map(|r| (r.created_at, r.user_id));
            }
            times.sort();
            let t = Instant::now();
            search_profiles(&mut conn, &s, after, 21).await.unwrap();
            let page2 = t.elapsed();
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            println!("{name:28} first page median {:7.2} ms, page 2 {:7.2} ms", ms(times[3]), ms(page2));
        }
    }
}
