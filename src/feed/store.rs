//! Every SQL statement of the feed. Rows of deleted accounts (posts, comments, likes) are left
//! out by joining live users; counts are counted from the rows.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::model::{Comment, CreateComment, CreatePost, Liker, Post, PostFilter, PostPatch, PostStatus, Target};
use super::visibility::{self, Reader};
use crate::db::escape_like;
use crate::error::AppResult;

/// Sort key of post lists: (created_at, id), both descending.
pub type PostCursor = (DateTime<Utc>, Uuid);
/// Sort key of comment lists: (created_at, id), both ascending.
pub type CommentCursor = (DateTime<Utc>, Uuid);
/// Sort key of liker lists: (liked_at, user id), both descending.
pub type LikerCursor = (DateTime<Utc>, Uuid);

const POST_SELECT: &str = "select p.id, p.community_id, p.author_id, a.handle as author_handle,
        a.display_name as author_display_name, a.image_url as author_image_url,
        p.text, p.tags, p.image_urls, p.status, p.view_count,
        (select count(*) from post_likes l join users x on x.id = l.user_id and x.deleted_at is null
          where l.post_id = p.id) as like_count,
        (select count(*) from post_comments c join users x on x.id = c.author_id and x.deleted_at is null
          where c.post_id = p.id and c.suspended_at is null
            and not exists (select 1 from post_comments h where h.id = c.parent_id and h.suspended_at is not null))
          as comment_count,
        p.version, p.created_at, p.updated_at
   from posts p join users a on a.id = p.author_id and a.deleted_at is null";

const COMMENT_SELECT: &str = "select c.id, c.post_id, c.parent_id, c.author_id, a.handle as author_handle,
        a.display_name as author_display_name, a.image_url as author_image_url, c.text,
        (select count(*) from comment_likes l join users x on x.id = l.user_id and x.deleted_at is null
          where l.comment_id = c.id) as like_count,
        (select count(*) from post_comments r join users x on x.id = r.author_id and x.deleted_at is null
          where r.parent_id = c.id and r.suspended_at is null) as reply_count,
        c.suspended_at is not null as suspended, c.created_at, c.updated_at
   from post_comments c join users a on a.id = c.author_id and a.deleted_at is null";

/// Whether the account exists and is not deleted, holding a share lock on its row until the
/// transaction ends: a concurrent DeleteAccount waits for it (or it sees the deletion).
pub async fn lock_live_author(conn: &mut PgConnection, author: Uuid) -> AppResult<bool> {
    let row: Option<(Uuid,)> = sqlx::query_as("select id from users where id = $1 and deleted_at is null for share")
        .bind(author)
        .fetch_optional(conn)
        .await?;
    Ok(row.is_some())
}

pub async fn insert_post(conn: &mut PgConnection, p: &CreatePost, author: Uuid) -> AppResult<Uuid> {
    let id = Uuid::now_v7();
    sqlx::query(
        "insert into posts (id, author_id, community_id, text, tags, image_urls) values ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(author)
    .bind(p.community_id)
    .bind(&p.text)
    .bind(&p.tags)
    .bind(&p.image_urls)
    .execute(conn)
    .await?;
    Ok(id)
}

/// A post of a live author, whatever its status.
pub async fn get_post(db: impl PgExecutor<'_>, id: Uuid) -> AppResult<Option<Post>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!("{POST_SELECT} where p.id = $1")))
        .bind(id)
        .fetch_optional(db)
        .await?)
}

/// Applies `patch` if the post is still at `expected` (when given); `false` otherwise.
pub async fn update_post(
    db: impl PgExecutor<'_>,
    id: Uuid,
    patch: &PostPatch,
    expected: Option<i64>,
) -> AppResult<bool> {
    Ok(sqlx::query(
        "update posts
            set text = coalesce($2, text), tags = coalesce($3, tags), image_urls = coalesce($4, image_urls),
                version = version + 1, updated_at = now()
          where id = $1 and ($5::bigint is null or version = $5)",
    )
    .bind(id)
    .bind(&patch.text)
    .bind(&patch.tags)
    .bind(&patch.image_urls)
    .bind(expected)
    .execute(db)
    .await?
    .rows_affected()
        == 1)
}

pub async fn set_post_status(db: impl PgExecutor<'_>, id: Uuid, status: PostStatus) -> AppResult<bool> {
    Ok(sqlx::query("update posts set status = $2, version = version + 1, updated_at = now() where id = $1")
        .bind(id)
        .bind(status.as_db())
        .execute(db)
        .await?
        .rows_affected()
        == 1)
}

pub async fn delete_post(db: impl PgExecutor<'_>, id: Uuid) -> AppResult<bool> {
    Ok(sqlx::query("delete from posts where id = $1").bind(id).execute(db).await?.rows_affected() == 1)
}

/// A page of the posts `reader` sees ([`visibility::sql`]) newest first. `filter = None` is the
/// home feed of `reader`.
pub async fn list_posts(
    db: impl PgExecutor<'_>,
    reader: Reader,
    filter: Option<&PostFilter>,
    after: Option<PostCursor>,
    limit: i64,
) -> AppResult<Vec<Post>> {
    let (cond, value) = match filter {
        Some(PostFilter::Community(id)) => ("p.community_id = $6::uuid", id.to_string()),
        Some(PostFilter::Author(h)) => ("lower(a.handle) = lower($6)", h.clone()),
        Some(PostFilter::Tag(t)) => ("p.tags @> array[$6::text]", t.clone()),
        // The bigram index (`text_bigrams`, queries have 2+ characters) selects candidates,
        // ILIKE decides. The query's pairs in a sub-select: computed once, in any plan.
        Some(PostFilter::Query(q)) => {
            ("p.text_bigrams @> (select community_bigrams($7::text)) and p.text ilike '%' || $6 || '%'", escape_like(q))
        }
        None => (
            "p.community_id is null and $6 = ''
             and p.author_id in (select followee_id from follows where follower_id = $1)",
            String::new(),
        ),
    };
    let sql = format!(
        "{POST_SELECT}
          where {cond}
            and {visible}
            and ($3::timestamptz is null or (p.created_at, p.id) < ($3, $4))
          order by p.created_at desc, p.id desc
          limit $5",
        visible = visibility::sql("$1", "$2"),
    );
    let (at, id) = after.map_or((None, None), |(a, i)| (Some(a), Some(i)));
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(reader.user_id)
        .bind(reader.is_admin)
        .bind(at)
        .bind(id)
        .bind(limit)
        .bind(value)
        .bind(match filter {
            Some(PostFilter::Query(q)) => q.as_str(),
            _ => "",
        })
        .fetch_all(db)
        .await?)
}

/// Which of `posts` `user` likes.
pub async fn liked_posts(db: impl PgExecutor<'_>, user: Uuid, posts: &[Uuid]) -> AppResult<Vec<Uuid>> {
    let rows: Vec<(Uuid,)> = sqlx::query_as("select post_id from post_likes where user_id = $1 and post_id = any($2)")
        .bind(user)
        .bind(posts)
        .fetch_all(db)
        .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// Which of `comments` `user` likes.
pub async fn liked_comments(db: impl PgExecutor<'_>, user: Uuid, comments: &[Uuid]) -> AppResult<Vec<Uuid>> {
    let rows: Vec<(Uuid,)> =
        sqlx::query_as("select comment_id from comment_likes where user_id = $1 and comment_id = any($2)")
            .bind(user)
            .bind(comments)
            .fetch_all(db)
            .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

pub async fn insert_comment(conn: &mut PgConnection, c: &CreateComment, author: Uuid) -> AppResult<Uuid> {
    let id = Uuid::now_v7();
    sqlx::query("insert into post_comments (id, post_id, parent_id, author_id, text) values ($1, $2, $3, $4, $5)")
        .bind(id)
        .bind(c.post_id)
        .bind(c.parent_id)
        .bind(author)
        .bind(&c.text)
        .execute(conn)
        .await?;
    Ok(id)
}

/// A comment of a live author.
pub async fn get_comment(db: impl PgExecutor<'_>, id: Uuid) -> AppResult<Option<Comment>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!("{COMMENT_SELECT} where c.id = $1")))
        .bind(id)
        .fetch_optional(db)
        .await?)
}

/// [`super::visibility::sees_comment`] as an SQL condition over `post_comments c`, for the
/// reader in `$6` (user) and `$7` (admin).
pub const COMMENT_VISIBLE: &str = "(c.suspended_at is null or c.author_id = $6 or $7)";

/// Top-level comments of a post (`parent = None`) or the replies of `parent` that `reader`
/// sees, oldest first.
pub async fn list_comments(
    db: impl PgExecutor<'_>,
    reader: Reader,
    post: Uuid,
    parent: Option<Uuid>,
    after: Option<CommentCursor>,
    limit: i64,
) -> AppResult<Vec<Comment>> {
    let (at, id) = after.map_or((None, None), |(a, i)| (Some(a), Some(i)));
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{COMMENT_SELECT}
          where c.post_id = $1 and c.parent_id is not distinct from $2 and {COMMENT_VISIBLE}
            and ($3::timestamptz is null or (c.created_at, c.id) > ($3, $4))
          order by c.created_at, c.id
          limit $5"
    )))
    .bind(post)
    .bind(parent)
    .bind(at)
    .bind(id)
    .bind(limit)
    .bind(reader.user_id)
    .bind(reader.is_admin)
    .fetch_all(db)
    .await?)
}

pub async fn update_comment(db: impl PgExecutor<'_>, id: Uuid, text: &str) -> AppResult<bool> {
    Ok(sqlx::query("update post_comments set text = $2, updated_at = now() where id = $1")
        .bind(id)
        .bind(text)
        .execute(db)
        .await?
        .rows_affected()
        == 1)
}

/// Hides (`true`) or shows comment `id`; false when there is no such comment.
pub async fn set_comment_suspended(db: impl PgExecutor<'_>, id: Uuid, suspended: bool) -> AppResult<bool> {
    Ok(sqlx::query(
        "update post_comments set suspended_at = case when $2 then coalesce(suspended_at, now()) end where id = $1",
    )
    .bind(id)
    .bind(suspended)
    .execute(db)
    .await?
    .rows_affected()
        == 1)
}

pub async fn delete_comment(db: impl PgExecutor<'_>, id: Uuid) -> AppResult<bool> {
    Ok(sqlx::query("delete from post_comments where id = $1").bind(id).execute(db).await?.rows_affected() == 1)
}

fn like_table(t: Target) -> (&'static str, &'static str, Uuid) {
    match t {
        Target::Post(id) => ("post_likes", "post_id", id),
        Target::Comment(id) => ("comment_likes", "comment_id", id),
    }
}

/// Inserts the like unless it exists; true when a row was created.
pub async fn insert_like(db: impl PgExecutor<'_>, target: Target, user: Uuid) -> AppResult<bool> {
    let (table, column, id) = like_table(target);
    let sql = format!("insert into {table} ({column}, user_id) values ($1, $2) on conflict do nothing");
    Ok(sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).bind(user).execute(db).await?.rows_affected() == 1)
}

pub async fn delete_like(db: impl PgExecutor<'_>, target: Target, user: Uuid) -> AppResult<bool> {
    let (table, column, id) = like_table(target);
    let sql = format!("delete from {table} where {column} = $1 and user_id = $2");
    Ok(sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).bind(user).execute(db).await?.rows_affected() == 1)
}

/// Likes of live users on `target`.
pub async fn count_likes(db: impl PgExecutor<'_>, target: Target) -> AppResult<i64> {
    let (table, column, id) = like_table(target);
    let sql = format!(
        "select count(*) from {table} l join users x on x.id = l.user_id and x.deleted_at is null
          where l.{column} = $1"
    );
    let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_one(db).await?;
    Ok(n)
}

pub async fn list_likers(
    db: impl PgExecutor<'_>,
    target: Target,
    after: Option<LikerCursor>,
    limit: i64,
) -> AppResult<Vec<Liker>> {
    let (table, column, id) = like_table(target);
    let (at, uid) = after.map_or((None, None), |(a, i)| (Some(a), Some(i)));
    let sql = format!(
        "select u.id as user_id, u.handle, u.display_name, u.image_url, l.created_at as liked_at
           from {table} l join users u on u.id = l.user_id and u.deleted_at is null
          where l.{column} = $1 and ($2::timestamptz is null or (l.created_at, l.user_id) < ($2, $3))
          order by l.created_at desc, l.user_id desc
          limit $4"
    );
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).bind(at).bind(uid).bind(limit).fetch_all(db).await?)
}

/// Adds `counts[i]` views to post `ids[i]`, in one statement.
pub async fn add_post_views(conn: &mut PgConnection, ids: &[Uuid], counts: &[i64]) -> AppResult<()> {
    sqlx::query(
        "update posts p set view_count = p.view_count + d.n
           from unnest($1::uuid[], $2::bigint[]) as d (id, n) where p.id = d.id",
    )
    .bind(ids)
    .bind(counts)
    .execute(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use sqlx::PgPool;

    use super::*;
    use crate::caller::{Caller, Role};
    use crate::config::Settings;
    use crate::db::fixtures::{community, membership, user};
    use crate::feed::ops::check_visible;
    use crate::feed::visibility::sees;
    use crate::state::AppState;

    async fn post(db: &PgPool, author: Uuid, community: Option<Uuid>, text: &str, tags: &[&str]) -> Uuid {
        let cmd = CreatePost {
            community_id: community,
            text: text.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            image_urls: vec![],
            media_ids: vec![],
            request_id: None,
        };
        insert_post(&mut db.acquire().await.unwrap(), &cmd, author).await.unwrap()
    }

    /// The comment rule in Rust (`visibility::sees_comment`) and in SQL (`COMMENT_VISIBLE`,
    /// through `list_comments`) agree on every reader and hidden or shown comment; counts leave
    /// hidden comments and the replies of hidden comments out.
    #[sqlx::test]
    async fn comment_visibility_rule_and_sql_agree(pool: PgPool) {
        use crate::feed::visibility::sees_comment;
        let author = user(&pool, "author", false).await;
        let other = user(&pool, "other", false).await;
        let admin = user(&pool, "admin", true).await;
        let p = post(&pool, other, None, "글", &[]).await;
        let mut conn = pool.acquire().await.unwrap();
        let mut ids = Vec::new();
        for hidden in [false, true] {
            let cmd = CreateComment { post_id: p, parent_id: None, text: "댓글".into(), request_id: None };
            let id = insert_comment(&mut conn, &cmd, author).await.unwrap();
            let reply = CreateComment { post_id: p, parent_id: Some(id), text: "답글".into(), request_id: None };
            insert_comment(&mut conn, &reply, other).await.unwrap();
            assert!(set_comment_suspended(&pool, id, hidden).await.unwrap());
            ids.push(id);
        }
        for reader in [
            Reader { user_id: Uuid::nil(), is_admin: false },
            Reader { user_id: author, is_admin: false },
            Reader { user_id: other, is_admin: false },
            Reader { user_id: admin, is_admin: true },
        ] {
            let listed: Vec<Uuid> =
                list_comments(&pool, reader, p, None, None, 10).await.unwrap().into_iter().map(|c| c.id).collect();
            for id in &ids {
                let c = get_comment(&pool, *id).await.unwrap().unwrap();
                assert_eq!(listed.contains(id), sees_comment(reader, &c), "{reader:?} {}", c.suspended);
            }
        }
        // Shown: the comment and its reply; hidden: neither.
        assert_eq!(get_post(&pool, p).await.unwrap().unwrap().comment_count, 2);
        assert!(set_comment_suspended(&pool, ids[1], false).await.unwrap());
        assert_eq!(get_post(&pool, p).await.unwrap().unwrap().comment_count, 4);
    }

    /// The visibility rule in Rust (`visibility::sees`, and `check_visible` of the use cases)
    /// and in SQL (`visibility::sql`, through `list_posts`) agree on every reader and post.
    #[sqlx::test]
    async fn visibility_rule_and_sql_agree(pool: PgPool) {
        let state = AppState::new(Settings::default(), pool.clone()).unwrap();
        let author = user(&pool, "author", false).await;
        let member = user(&pool, "member", false).await;
        let pending = user(&pool, "pending", false).await;
        let outsider = user(&pool, "outsider", false).await;
        let admin = user(&pool, "admin", true).await;
        let club = community(&pool, "club").await;
        membership(&pool, club, author, "APPROVED").await;
        membership(&pool, club, member, "APPROVED").await;
        membership(&pool, club, pending, "PENDING").await;
        let mut posts = Vec::new();
        for place in [None, Some(club)] {
            for suspended in [false, true] {
                let id = post(&pool, author, place, "matrix", &["matrix"]).await;
                if suspended {
                    set_post_status(&pool, id, PostStatus::Suspended).await.unwrap();
                }
                posts.push(get_post(&pool, id).await.unwrap().unwrap());
            }
        }
        // (reader, approved member of the club, posts seen)
        let readers = [(None, false, 1), (Some((author, Role::User)), true, 4), (Some((member, Role::User)), true, 2)];
        let readers = readers.into_iter().chain([
            (Some((pending, Role::User)), false, 1),
            (Some((outsider, Role::User)), false, 1),
            (Some((admin, Role::Admin)), false, 4),
        ]);
        for (who, is_member, expected) in readers {
            let caller = who.map(|(user_id, role)| Caller { user_id, session_id: Uuid::nil(), role });
            let reader = Reader::of(caller.as_ref());
            let filter = PostFilter::Tag("matrix".into());
            let listed: HashSet<Uuid> =
                list_posts(&pool, reader, Some(&filter), None, 100).await.unwrap().iter().map(|p| p.id).collect();
            let mut seen = 0;
            for p in &posts {
                let rule = sees(reader, p, is_member);
                let by_ops = check_visible(&state, caller.as_ref(), Some(p.clone()), true).await.is_ok();
                assert_eq!(listed.contains(&p.id), rule, "SQL vs rule: {who:?} on {:?} {}", p.community_id, p.status);
                assert_eq!(by_ops, rule, "use cases vs rule: {who:?} on {:?} {}", p.community_id, p.status);
                seen += usize::from(rule);
            }
            assert_eq!(seen, expected, "{who:?}");
        }
    }

    /// `list_posts` builds its condition from the filter: each filter, the home feed and the
    /// cursor, with LIKE wildcards in a query matched literally.
    #[sqlx::test]
    async fn list_posts_per_filter(pool: PgPool) {
        let alice = user(&pool, "alice", false).await;
        let bob = user(&pool, "bob", false).await;
        let club = community(&pool, "club").await;
        membership(&pool, club, alice, "APPROVED").await;
        let a1 = post(&pool, alice, None, "100% sure", &["rust"]).await;
        let a2 = post(&pool, alice, Some(club), "in the club", &["rust"]).await;
        let b1 = post(&pool, bob, None, "1000 ways", &["go"]).await;
        let ids = |rows: Vec<Post>| rows.into_iter().map(|p| p.id).collect::<Vec<_>>();
        let as_alice = Reader { user_id: alice, is_admin: false };
        let as_bob = Reader { user_id: bob, is_admin: false };
        let list = |r: Reader, f: Option<PostFilter>| {
            let pool = pool.clone();
            async move { ids(list_posts(&pool, r, f.as_ref(), None, 10).await.unwrap()) }
        };
        assert_eq!(list(as_alice, Some(PostFilter::Community(club))).await, [a2]);
        assert_eq!(list(as_bob, Some(PostFilter::Author("ALICE".into()))).await, [a1]);
        assert_eq!(list(as_alice, Some(PostFilter::Author("alice".into()))).await, [a2, a1]);
        assert_eq!(list(as_alice, Some(PostFilter::Tag("rust".into()))).await, [a2, a1]);
        assert_eq!(list(as_bob, Some(PostFilter::Query("0%".into()))).await, [a1], "% is literal");
        assert_eq!(list(as_bob, Some(PostFilter::Query("000".into()))).await, [b1]);
        // The home feed: public posts of the people the reader follows.
        assert!(list(as_bob, None).await.is_empty());
        sqlx::query("insert into follows (follower_id, followee_id) values ($1, $2)")
            .bind(bob)
            .bind(alice)
            .execute(&pool)
            .await
            .unwrap();
        assert_eq!(list(as_bob, None).await, [a1]);
        // After the cursor of the first row, newest first.
        let first = get_post(&pool, a2).await.unwrap().unwrap();
        let rust = PostFilter::Tag("rust".into());
        let rest = list_posts(&pool, as_alice, Some(&rust), Some((first.created_at, a2)), 10).await.unwrap();
        assert_eq!(ids(rest), [a1]);
    }

    /// The like statements pick their table from the target: posts and comments alike.
    #[sqlx::test]
    async fn likes_of_posts_and_comments(pool: PgPool) {
        let alice = user(&pool, "alice", false).await;
        let bob = user(&pool, "bob", false).await;
        let p = post(&pool, alice, None, "post", &[]).await;
        let c = insert_comment(
            &mut pool.acquire().await.unwrap(),
            &CreateComment { post_id: p, parent_id: None, text: "comment".into(), request_id: None },
            alice,
        )
        .await
        .unwrap();
        for target in [Target::Post(p), Target::Comment(c)] {
            assert!(insert_like(&pool, target, alice).await.unwrap());
            assert!(!insert_like(&pool, target, alice).await.unwrap(), "one like per user");
            assert!(insert_like(&pool, target, bob).await.unwrap());
            assert_eq!(count_likes(&pool, target).await.unwrap(), 2);
            let likers = list_likers(&pool, target, None, 10).await.unwrap();
            assert_eq!(likers.iter().map(|l| l.user_id).collect::<Vec<_>>(), [bob, alice], "newest first");
            let after = (likers[0].liked_at, likers[0].user_id);
            assert_eq!(list_likers(&pool, target, Some(after), 10).await.unwrap()[0].user_id, alice);
            assert!(delete_like(&pool, target, bob).await.unwrap());
            assert!(!delete_like(&pool, target, bob).await.unwrap());
            assert_eq!(count_likes(&pool, target).await.unwrap(), 1);
        }
        assert_eq!(get_post(&pool, p).await.unwrap().unwrap().like_count, 1);
        assert_eq!(get_comment(&pool, c).await.unwrap().unwrap().like_count, 1);
        assert_eq!(liked_posts(&pool, alice, &[p]).await.unwrap(), [p]);
        assert_eq!(liked_comments(&pool, bob, &[c]).await.unwrap(), Vec::<Uuid>::new());
    }
}
