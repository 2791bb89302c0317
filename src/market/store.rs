//! Every SQL statement of the market. Products and likes of deleted accounts are left out by
//! joining live users; like counts are the counter the database keeps on each product, equal to
//! the like rows of live users (triggers of migration 20261206040000).

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::model::{CreateProduct, Product, ProductFilter, ProductPatch, ProductStatus, Ranked, Reader};
use crate::db::escape_like;
use crate::error::AppResult;

/// Sort key of product lists: (created_at, id), both descending.
pub type ProductCursor = (DateTime<Utc>, Uuid);

const PRODUCT_SELECT: &str = "select p.id, p.seller_id, a.handle as seller_handle,
        a.display_name as seller_display_name, a.image_url as seller_image_url,
        p.name, p.description, p.price, p.tags, p.image_url, p.sale_link, p.status, p.view_count, p.like_count,
        p.version, p.created_at, p.updated_at
   from products p join users a on a.id = p.seller_id and a.deleted_at is null";

/// [`super::model::sees`] as an SQL condition over `products p`, for the reader in `$1` (user)
/// and `$2` (admin).
pub const VISIBLE: &str = "(p.status <> 'SUSPENDED' or p.seller_id = $1 or $2)";

/// Whether the account exists and is not deleted, holding a share lock on its row until the
/// transaction ends (a concurrent DeleteAccount waits for it, or it sees the deletion).
pub async fn lock_live_user(conn: &mut PgConnection, user: Uuid) -> AppResult<bool> {
    let row: Option<(Uuid,)> = sqlx::query_as("select id from users where id = $1 and deleted_at is null for share")
        .bind(user)
        .fetch_optional(conn)
        .await?;
    Ok(row.is_some())
}

/// The live account with `handle`.
pub async fn user_by_handle(db: impl PgExecutor<'_>, handle: &str) -> AppResult<Option<Uuid>> {
    Ok(sqlx::query_scalar("select id from users where lower(handle) = lower($1) and deleted_at is null")
        .bind(handle)
        .fetch_optional(db)
        .await?)
}

pub async fn insert_product(conn: &mut PgConnection, p: &CreateProduct, seller: Uuid) -> AppResult<Uuid> {
    let id = Uuid::now_v7();
    sqlx::query(
        "insert into products (id, seller_id, name, description, price, tags, image_url, sale_link)
         values ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(id)
    .bind(seller)
    .bind(&p.name)
    .bind(&p.description)
    .bind(p.price)
    .bind(&p.tags)
    .bind(&p.image_url)
    .bind(&p.sale_link)
    .execute(conn)
    .await?;
    Ok(id)
}

/// A product of a live seller, whatever its status.
pub async fn get_product(db: impl PgExecutor<'_>, id: Uuid) -> AppResult<Option<Product>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!("{PRODUCT_SELECT} where p.id = $1")))
        .bind(id)
        .fetch_optional(db)
        .await?)
}

/// Products by id (live sellers, any status), in no particular order.
pub async fn get_products(db: impl PgExecutor<'_>, ids: &[Uuid]) -> AppResult<Vec<Product>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!("{PRODUCT_SELECT} where p.id = any($1)")))
        .bind(ids)
        .fetch_all(db)
        .await?)
}

/// Applies `patch` if the product is still at `expected` (when given); `false` otherwise.
pub async fn update_product(
    db: impl PgExecutor<'_>,
    id: Uuid,
    patch: &ProductPatch,
    expected: Option<i64>,
) -> AppResult<bool> {
    Ok(sqlx::query(
        "update products
            set name = coalesce($2, name), price = coalesce($3, price), description = coalesce($4, description),
                tags = coalesce($5, tags), image_url = coalesce($6, image_url), sale_link = coalesce($7, sale_link),
                version = version + 1, updated_at = now()
          where id = $1 and ($8::bigint is null or version = $8)",
    )
    .bind(id)
    .bind(&patch.name)
    .bind(patch.price)
    .bind(&patch.description)
    .bind(&patch.tags)
    .bind(&patch.image_url)
    .bind(&patch.sale_link)
    .bind(expected)
    .execute(db)
    .await?
    .rows_affected()
        == 1)
}

pub async fn set_product_status(db: impl PgExecutor<'_>, id: Uuid, status: ProductStatus) -> AppResult<bool> {
    Ok(sqlx::query("update products set status = $2, version = version + 1, updated_at = now() where id = $1")
        .bind(id)
        .bind(status.as_db())
        .execute(db)
        .await?
        .rows_affected()
        == 1)
}

pub async fn delete_product(db: impl PgExecutor<'_>, id: Uuid) -> AppResult<bool> {
    Ok(sqlx::query("delete from products where id = $1").bind(id).execute(db).await?.rows_affected() == 1)
}

/// A page of the products `reader` sees, newest first, with every filter that is set. Only the
/// conditions of the set filters are in the statement, so each combination gets its own plan
/// (a search uses the bigram index, a seller list the seller index).
pub async fn list_products(
    db: impl PgExecutor<'_>,
    reader: Reader,
    f: &ProductFilter,
    after: Option<ProductCursor>,
    limit: i64,
) -> AppResult<Vec<Product>> {
    let mut cond = vec![VISIBLE.to_owned()];
    if f.tag.is_some() {
        cond.push("p.tags @> array[$6::text]".into());
    }
    if f.min_price.is_some() {
        cond.push("p.price >= $7".into());
    }
    if f.max_price.is_some() {
        cond.push("p.price <= $8".into());
    }
    if f.query.is_some() {
        // The query's pairs in a sub-select: computed once, in any plan.
        cond.push(
            "p.text_bigrams @> (select community_bigrams($10::text))
             and (p.name || ' ' || p.description) ilike '%' || $9 || '%'"
                .into(),
        );
    }
    if f.seller_handle.is_some() {
        cond.push("lower(a.handle) = lower($11)".into());
    }
    if after.is_some() {
        cond.push("(p.created_at, p.id) < ($3, $4)".into());
    }
    let sql = format!("{PRODUCT_SELECT} where {} order by p.created_at desc, p.id desc limit $5", cond.join(" and "));
    let (at, id) = after.map_or((None, None), |(a, i)| (Some(a), Some(i)));
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(reader.user_id)
        .bind(reader.is_admin)
        .bind(at)
        .bind(id)
        .bind(limit)
        .bind(f.tag.as_deref())
        .bind(f.min_price)
        .bind(f.max_price)
        .bind(f.query.as_deref().map(escape_like))
        .bind(f.query.as_deref())
        .bind(f.seller_handle.as_deref())
        .fetch_all(db)
        .await?)
}

/// Which of `products` `user` likes.
pub async fn liked_products(db: impl PgExecutor<'_>, user: Uuid, products: &[Uuid]) -> AppResult<Vec<Uuid>> {
    Ok(sqlx::query_scalar("select product_id from product_likes where user_id = $1 and product_id = any($2)")
        .bind(user)
        .bind(products)
        .fetch_all(db)
        .await?)
}

/// Inserts the like unless it exists; true when a row was created.
pub async fn insert_like(db: impl PgExecutor<'_>, product: Uuid, user: Uuid) -> AppResult<bool> {
    Ok(sqlx::query("insert into product_likes (product_id, user_id) values ($1, $2) on conflict do nothing")
        .bind(product)
        .bind(user)
        .execute(db)
        .await?
        .rows_affected()
        == 1)
}

pub async fn delete_like(db: impl PgExecutor<'_>, product: Uuid, user: Uuid) -> AppResult<bool> {
    Ok(sqlx::query("delete from product_likes where product_id = $1 and user_id = $2")
        .bind(product)
        .bind(user)
        .execute(db)
        .await?
        .rows_affected()
        == 1)
}

/// Likes of live users on `product` (the counter the database keeps, migration
/// 20261206040000; 0 for a product that is gone).
pub async fn count_likes(db: impl PgExecutor<'_>, product: Uuid) -> AppResult<i64> {
    Ok(sqlx::query_scalar("select like_count from products where id = $1")
        .bind(product)
        .fetch_optional(db)
        .await?
        .unwrap_or(0))
}

/// Adds `counts[i]` views to product `ids[i]`, in one statement.
pub async fn add_product_views(conn: &mut PgConnection, ids: &[Uuid], counts: &[i64]) -> AppResult<()> {
    sqlx::query(
        "update products p set view_count = p.view_count + d.n
           from unnest($1::uuid[], $2::bigint[]) as d (id, n) where p.id = d.id",
    )
    .bind(ids)
    .bind(counts)
    .execute(conn)
    .await?;
    Ok(())
}

// ---- recommendations (docs/market.md#recommendations)

/// The `n` products `user` liked last (the seeds of their co-likes).
pub async fn recent_likes(db: impl PgExecutor<'_>, user: Uuid, n: i64) -> AppResult<Vec<Uuid>> {
    Ok(sqlx::query_scalar(
        "select product_id from product_likes where user_id = $1 order by created_at desc, product_id limit $2",
    )
    .bind(user)
    .bind(n)
    .fetch_all(db)
    .await?)
}

/// The tag profile of liked (2 each) and viewed (1 each) products: the `n` heaviest tags, ties
/// by tag, weights scaled to 1–5 (the heaviest 5), so that a profile of many likes does not
/// drown the co-likes (3 per co-liker) in tag weight.
pub async fn tag_profile(
    db: impl PgExecutor<'_>,
    liked: &[Uuid],
    viewed: &[Uuid],
    n: i64,
) -> AppResult<Vec<(String, i32)>> {
    Ok(sqlx::query_as(
        "select tag, ceil(5.0 * raw / max(raw) over ())::int as weight
           from (select t.tag, sum(s.w) as raw
                   from (select tags, 2 as w from products where id = any($1)
                         union all
                         select tags, 1 from products where id = any($2)) s
                   cross join lateral unnest(s.tags) as t (tag)
                  group by t.tag
                  order by raw desc, t.tag
                  limit $3) top
          order by weight desc, tag",
    )
    .bind(liked)
    .bind(viewed)
    .bind(n)
    .fetch_all(db)
    .await?)
}

/// What the ranking starts from.
pub struct RankInput<'a> {
    /// Co-like seeds: products whose likers' other likes are candidates.
    pub seeds: &'a [Uuid],
    /// The tag profile: tags and their weights.
    pub tags: &'a [String],
    pub weights: &'a [i32],
    /// Never recommended: the caller's own products (nil when anonymous) …
    pub viewer: Uuid,
    /// … and these (the product of "similar to", the caller's recently viewed).
    pub exclude: &'a [Uuid],
    /// Leave out what `viewer` already likes.
    pub exclude_liked: bool,
    /// Likers read per seed: its latest live ones (`product_likes_product_recent_idx`).
    pub likers_per_seed: i64,
    /// Likes read per such liker (their latest, `product_likes_user_id_idx`).
    pub likes_per_liker: i64,
    /// Tag candidates come from this many newest products on sale.
    pub recent_products: i64,
    /// Candidates kept from each source (the best co-liked, the best tag matches) before the
    /// final scoring.
    pub per_source: i64,
    pub limit: i64,
}

/// Products on sale ranked by 3 × co-likers + the (1–5) weights of shared tags, ties by newest
/// then id (deterministic). Every step reads a bounded number of index entries, whatever the
/// catalogue's size (docs/market.md#recommendations):
/// - co-likes: the latest `likers_per_seed` live likers of each seed, the latest
///   `likes_per_liker` likes of each of them, grouped per product; the `per_source` most
///   co-liked (ties: highest id, i.e. newest for UUIDv7) that are not excluded or already liked;
/// - tags: among the `recent_products` newest on sale, the `per_source` with the heaviest shared
///   tags (ties: newest) that are not the viewer's, excluded or already liked;
/// - only these (≤ 2 × `per_source`) are joined to products and sellers and scored.
///
/// Each liker is read once however many seeds they liked (`likers`), so co-likers are a plain
/// count and the seeds of `co_liked_with` are gathered for the kept candidates only; accounts are
/// checked live by an anti-join on the small partial index of deleted ones (`users_deleted_idx`)
/// rather than by reading each account's row (release profile of 2026-12-04: 20 → 13 ms on the
/// benchmark data, same results).
///
/// Each source is cut before the join so that the statement's cost does not depend on how many
/// candidates a popular seed or tag brings, and so that PostgreSQL's generic plan for the
/// prepared statement (chosen after five executions, with a guess of a few rows per CTE) stays
/// cheap: scoring ~3,000 candidates under it took 456 ms.
pub async fn rank(db: impl PgExecutor<'_>, r: &RankInput<'_>) -> AppResult<Vec<Ranked>> {
    Ok(sqlx::query_as(
        "with mine as (select product_id from product_likes where $6 and user_id = $5),
          seed_likers as (
              select s.seed, l.user_id
                from unnest($1::uuid[]) as s (seed)
                cross join lateral (
                      select k.user_id
                        from product_likes k
                       where k.product_id = s.seed and k.user_id <> $5
                         and not exists (select 1 from users x where x.id = k.user_id and x.deleted_at is not null)
                       order by k.created_at desc, k.user_id
                       limit $8) l),
          likers as (select user_id, array_agg(seed) as seeds from seed_likers group by user_id),
          pairs as materialized (
              select l.user_id, l.seeds, m.product_id
                from likers l
                cross join lateral (
                      select m.product_id from product_likes m where m.user_id = l.user_id
                       order by m.created_at desc, m.product_id limit $10) m
               where m.product_id <> all($1) and m.product_id <> all($4)
                 and m.product_id not in (select product_id from mine)),
          co_top as (
              select product_id, count(*) as co_likers from pairs
               group by product_id
               order by co_likers desc, product_id desc
               limit $11),
          co as (
              select t.product_id, t.co_likers, (array_agg(distinct s.seed))[1:3] as co_liked_with
                from co_top t
                join pairs p on p.product_id = t.product_id
                cross join unnest(p.seeds) as s (seed)
               group by t.product_id, t.co_likers),
          tag_cand as (
              select r.id
                from (select id, tags, seller_id, created_at from products where status = 'ON_SALE'
                       order by created_at desc, id desc limit $9) r
               where r.tags && $2::text[] and r.seller_id <> $5 and r.id <> all($4)
                 and r.id not in (select product_id from mine)
               order by (select sum(t.w) from unnest($2::text[], $3::int[]) as t (tag, w) where t.tag = any(r.tags)) desc,
                        r.created_at desc, r.id desc
               limit $11),
          cand as (select product_id as id from co union select id from tag_cand),
          scored as (
              select p.id, p.created_at, coalesce(co.co_likers, 0) as co_likers,
                     coalesce(co.co_liked_with, '{}') as co_liked_with,
                     coalesce((select array_agg(t.tag order by t.w desc, t.tag)
                                 from unnest($2::text[], $3::int[]) as t (tag, w) where t.tag = any(p.tags)),
                              '{}') as shared_tags,
                     coalesce((select sum(t.w) from unnest($2::text[], $3::int[]) as t (tag, w)
                                where t.tag = any(p.tags)), 0)::bigint as tag_score
                from cand c
                join products p on p.id = c.id
                left join co on co.product_id = p.id
               where p.status = 'ON_SALE' and p.seller_id <> $5
                 and not exists (select 1 from users a where a.id = p.seller_id and a.deleted_at is not null))
         select id as product_id, (3 * co_likers + tag_score)::bigint as score, shared_tags, co_likers, co_liked_with
           from scored
          order by score desc, created_at desc, id desc
          limit $7",
    )
    .bind(r.seeds)
    .bind(r.tags)
    .bind(r.weights)
    .bind(r.exclude)
    .bind(r.viewer)
    .bind(r.exclude_liked)
    .bind(r.limit)
    .bind(r.likers_per_seed)
    .bind(r.recent_products)
    .bind(r.likes_per_liker)
    .bind(r.per_source)
    .fetch_all(db)
    .await?)
}

/// The newest products on sale, not `viewer`'s, not in `exclude`, not liked by `viewer` when
/// `exclude_liked`: what fills a recommendation list with nothing better to go on.
pub async fn newest_on_sale(
    db: impl PgExecutor<'_>,
    viewer: Uuid,
    exclude: &[Uuid],
    exclude_liked: bool,
    limit: i64,
) -> AppResult<Vec<Uuid>> {
    Ok(sqlx::query_scalar(
        "select p.id from products p join users a on a.id = p.seller_id and a.deleted_at is null
          where p.status = 'ON_SALE' and p.seller_id <> $1 and p.id <> all($2)
            and not ($3 and exists (select 1 from product_likes m where m.product_id = p.id and m.user_id = $1))
          order by p.created_at desc, p.id desc
          limit $4",
    )
    .bind(viewer)
    .bind(exclude)
    .bind(exclude_liked)
    .bind(limit)
    .fetch_all(db)
    .await?)
}

#[cfg(test)]
mod tests {
    use sqlx::PgPool;

    use super::*;
    use crate::db::fixtures::user;
    use crate::market::model::sees;

    async fn product(db: &PgPool, seller: Uuid, name: &str, tags: &[&str]) -> Uuid {
        let cmd = CreateProduct {
            name: name.into(),
            price: 1000,
            description: String::new(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            image_url: String::new(),
            sale_link: String::new(),
            media_ids: vec![],
            request_id: None,
        };
        insert_product(&mut db.acquire().await.unwrap(), &cmd, seller).await.unwrap()
    }

    /// The visibility rule in Rust and its SQL twin agree on every reader and status.
    #[sqlx::test]
    async fn visibility_rule_and_sql_agree(pool: PgPool) {
        let seller = user(&pool, "seller", false).await;
        let other = user(&pool, "other", false).await;
        let admin = user(&pool, "admin", true).await;
        let mut all = Vec::new();
        for status in [ProductStatus::OnSale, ProductStatus::SoldOut, ProductStatus::Suspended] {
            let id = product(&pool, seller, "상품", &["x"]).await;
            set_product_status(&pool, id, status).await.unwrap();
            all.push(get_product(&pool, id).await.unwrap().unwrap());
        }
        for reader in [
            Reader { user_id: Uuid::nil(), is_admin: false },
            Reader { user_id: seller, is_admin: false },
            Reader { user_id: other, is_admin: false },
            Reader { user_id: admin, is_admin: true },
        ] {
            let listed: Vec<Uuid> = list_products(&pool, reader, &ProductFilter::default(), None, 10)
                .await
                .unwrap()
                .into_iter()
                .map(|p| p.id)
                .collect();
            for p in &all {
                assert_eq!(listed.contains(&p.id), sees(reader, p), "{reader:?} {}", p.status);
            }
        }
    }

    /// Each filter alone and combined, LIKE wildcards literal, the cursor.
    #[sqlx::test]
    async fn filters_combine(pool: PgPool) {
        let alice = user(&pool, "alice", false).await;
        let bob = user(&pool, "bob", false).await;
        let a1 = product(&pool, alice, "자전거 100%", &["bike"]).await;
        let a2 = product(&pool, alice, "자전거 헬멧", &["bike", "gear"]).await;
        let b1 = product(&pool, bob, "키보드", &["pc"]).await;
        sqlx::query("update products set price = 50000 where id = $1").bind(a2).execute(&pool).await.unwrap();
        let r = Reader { user_id: Uuid::nil(), is_admin: false };
        let ids = |f: ProductFilter| {
            let pool = pool.clone();
            async move { list_products(&pool, r, &f, None, 10).await.unwrap().into_iter().map(|p| p.id).collect::<Vec<_>>() }
        };
        assert_eq!(ids(ProductFilter::default()).await, [b1, a2, a1]);
        assert_eq!(ids(ProductFilter { tag: Some("bike".into()), ..Default::default() }).await, [a2, a1]);
        assert_eq!(ids(ProductFilter { min_price: Some(2000), ..Default::default() }).await, [a2]);
        assert_eq!(ids(ProductFilter { max_price: Some(1000), ..Default::default() }).await, [b1, a1]);
        assert_eq!(ids(ProductFilter { query: Some("자전".into()), ..Default::default() }).await, [a2, a1]);
        assert_eq!(ids(ProductFilter { query: Some("0%".into()), ..Default::default() }).await, [a1]);
        assert_eq!(ids(ProductFilter { seller_handle: Some("BOB".into()), ..Default::default() }).await, [b1]);
        let both = ProductFilter { tag: Some("bike".into()), max_price: Some(1000), ..Default::default() };
        assert_eq!(ids(both).await, [a1]);
        let first = get_product(&pool, b1).await.unwrap().unwrap();
        let rest = list_products(&pool, r, &ProductFilter::default(), Some((first.created_at, b1)), 10).await.unwrap();
        assert_eq!(rest.into_iter().map(|p| p.id).collect::<Vec<_>>(), [a2, a1]);
    }

    /// The bounds of the ranking: only the latest likers of a seed are read, each source is cut
    /// to its best `per_source`, and what the viewer likes never comes back.
    #[sqlx::test]
    async fn rank_reads_the_latest_likers_and_keeps_the_best_per_source(pool: PgPool) {
        let seller = user(&pool, "seller", false).await;
        let me = user(&pool, "myself", false).await;
        let seed = product(&pool, seller, "씨앗", &["seed"]).await;
        let [a, b, c] = [
            product(&pool, seller, "에이", &["x"]).await,
            product(&pool, seller, "비이", &["x"]).await,
            product(&pool, seller, "씨이", &["x"]).await,
        ];
        // u1 liked the seed first, u3 last; u1 → a, u2 → b, u3 → b and c.
        let mut likers = Vec::new();
        for (i, likes) in [vec![a], vec![b], vec![b, c]].into_iter().enumerate() {
            let u = user(&pool, &format!("liker{i}"), false).await;
            sqlx::query("insert into product_likes (product_id, user_id, created_at) values ($1, $2, now() - $3 * interval '1 hour')")
                .bind(seed)
                .bind(u)
                .bind(10 - i as i32)
                .execute(&pool)
                .await
                .unwrap();
            for p in likes {
                insert_like(&pool, p, u).await.unwrap();
            }
            likers.push(u);
        }
        let input = |likers_per_seed, per_source, exclude_liked| RankInput {
            seeds: std::slice::from_ref(&seed),
            tags: &[],
            weights: &[],
            viewer: me,
            exclude: &[],
            exclude_liked,
            likers_per_seed,
            likes_per_liker: 10,
            recent_products: 100,
            per_source,
            limit: 10,
        };
        let ranked = |r: Vec<Ranked>| r.into_iter().map(|r| (r.product_id, r.co_likers)).collect::<Vec<_>>();
        // The latest two likers (u3, u2) only: a is not reached.
        assert_eq!(ranked(rank(&pool, &input(2, 10, true)).await.unwrap()), [(b, 2), (c, 1)]);
        assert_eq!(ranked(rank(&pool, &input(3, 10, true)).await.unwrap()), [(b, 2), (c, 1), (a, 1)]);
        // One candidate per source: the most co-liked.
        assert_eq!(ranked(rank(&pool, &input(3, 1, true)).await.unwrap()), [(b, 2)]);
        // What the viewer likes is left out before the cut, so the next best takes its place.
        insert_like(&pool, b, me).await.unwrap();
        assert_eq!(ranked(rank(&pool, &input(2, 1, true)).await.unwrap()), [(c, 1)]);
        assert_eq!(ranked(rank(&pool, &input(2, 1, false)).await.unwrap()), [(b, 2)]);
    }

    /// The like rows of live accounts, counted the slow way: what the kept counter must equal.
    async fn counted(db: &PgPool, product: Uuid) -> i64 {
        sqlx::query_scalar(
            "select count(*) from product_likes l join users x on x.id = l.user_id and x.deleted_at is null
              where l.product_id = $1",
        )
        .bind(product)
        .fetch_one(db)
        .await
        .unwrap()
    }

    /// The counter follows likes, unlikes, accounts deleted, suspended, restored and removed for
    /// good, and racing likers, and always equals the rows of live likers.
    #[sqlx::test]
    async fn like_counts_equal_the_rows_of_live_likers(pool: PgPool) {
        let seller = user(&pool, "seller", false).await;
        let p = product(&pool, seller, "카운터", &[]).await;
        let q = product(&pool, seller, "다른 것", &[]).await;
        let check = |want: i64| {
            let pool = pool.clone();
            async move {
                assert_eq!(count_likes(&pool, p).await.unwrap(), want);
                assert_eq!(counted(&pool, p).await, want);
            }
        };
        // 40 likers at once, each twice (the second is a no-op), one of them also on q.
        let mut likers = Vec::new();
        for i in 0..40 {
            likers.push(user(&pool, &format!("liker{i}"), false).await);
        }
        let races = likers.iter().flat_map(|&u| [insert_like(&pool, p, u), insert_like(&pool, p, u)]);
        let created = futures::future::join_all(races).await.into_iter().filter(|r| *r.as_ref().unwrap()).count();
        assert_eq!(created, 40);
        insert_like(&pool, q, likers[0]).await.unwrap();
        check(40).await;
        assert!(delete_like(&pool, p, likers[1]).await.unwrap());
        assert!(!delete_like(&pool, p, likers[1]).await.unwrap());
        check(39).await;
        // Deleted (soft), restored, suspended: the account's likes leave and come back.
        sqlx::query("update users set deleted_at = now() where id = $1").bind(likers[0]).execute(&pool).await.unwrap();
        check(38).await;
        assert_eq!(count_likes(&pool, q).await.unwrap(), 0);
        // A deleted account's like row going away (e.g. removed with it) takes nothing off again.
        assert!(delete_like(&pool, q, likers[0]).await.unwrap());
        assert_eq!(count_likes(&pool, q).await.unwrap(), 0);
        sqlx::query("update users set deleted_at = null where id = $1").bind(likers[0]).execute(&pool).await.unwrap();
        check(39).await;
        // Removed for good while live, and while deleted: each like counted off exactly once.
        sqlx::query("delete from users where id = $1").bind(likers[2]).execute(&pool).await.unwrap();
        check(38).await;
        sqlx::query("update users set deleted_at = now() where id = $1").bind(likers[3]).execute(&pool).await.unwrap();
        sqlx::query("delete from users where id = $1").bind(likers[3]).execute(&pool).await.unwrap();
        check(37).await;
        // Other changes of an account leave the count alone.
        sqlx::query("update users set display_name = 'x', deleted_at = deleted_at where id = $1")
            .bind(likers[4])
            .execute(&pool)
            .await
            .unwrap();
        check(37).await;
        // Likes racing the deletion of their accounts: whatever the order, the count is exact.
        let rest = &likers[5..];
        let unlikes = rest.iter().map(|&u| delete_like(&pool, p, u));
        let deletions = rest.iter().map(|&u| {
            let pool = pool.clone();
            async move {
                sqlx::query("update users set deleted_at = now() where id = $1").bind(u).execute(&pool).await.unwrap();
            }
        });
        let relikes = rest.iter().map(|&u| insert_like(&pool, q, u));
        let (_, _, _) = tokio::join!(
            futures::future::join_all(unlikes),
            futures::future::join_all(deletions),
            futures::future::join_all(relikes)
        );
        check(2).await;
        assert_eq!(count_likes(&pool, q).await.unwrap(), counted(&pool, q).await);
        assert_eq!(count_likes(&pool, q).await.unwrap(), 0);
    }
}
