//! `market`: the SNS market at 100 users on a catalogue of 100,000 products (issue 16; smoke
//! 2,000). Each user logs in as a seeded buyer, then scrolls `ListProducts` newest first for
//! three pages with the page token (weight 3: the infinite scroll people open most), opens a
//! product from those pages with `GetProduct` (3), asks `RecommendProducts` for themself (2)
//! and for products similar to one of the catalogue (1, recorded as `RecommendSimilar`), and
//! likes a product with `LikeProduct` (1).
//!
//! The catalogue is written with bulk SQL, as `examples/market_bench.rs` does (the API would
//! take an hour): 1,000 sellers (smoke 50), products `0..N` (`--products`, a Korean word and the
//! number as name, a category and one of 100 interest-group tags, price, sale link) and likes by
//! synthetic likers (`--likes`, default 100,000; `--likes 1000000` for the million), each
//! liking 100 products, 80 of their interest group's and 20 anywhere, so that co-likes have
//! structure. The buyers are real accounts (SignUp, Login) and get 20 likes each in their group,
//! so their recommendations have seeds. Everything is keyed by `--seed` (ids are md5 of the seed
//! and the number) and topped up, never duplicated, by a rerun; `vacuum analyze` afterwards, as
//! autovacuum would have by then.
//!
//! Checks: every reply OK, no INTERNAL; read back: exactly one new like row per LikeProduct that
//! answered `created`; the buyers' own recommendations are explained (ranked by tags or
//! co-likes, not only the newest); a full run checks each RPC's p99 against 50 ms
//! (`--p99-ms`), the feed's goal.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use async_trait::async_trait;
use goose::goose::{GooseUser, Scenario, TransactionResult};
use maru::grpc::pb;
use tonic::metadata::AsciiMetadataValue;

use super::feed::{LOGIN, Transport, mix};
use super::whoami::custom;
use super::{Ctx, Entry, LoadScenario, Shape, Think, advance, tx, with_think};
use crate::api::Api;
use crate::report::{Check, Summary};
use crate::rpc::record;
use crate::seed::{self, Account, Seeding};

pub const ENTRY: Entry = Entry {
    name: "market",
    about: "SNS market on 100,000 products (smoke 2,000): ListProducts 3 pages ×3, GetProduct ×3, \
            RecommendProducts ×2 (+ similar ×1), LikeProduct ×1",
    full: Shape::new(100, 30, Think::NONE),
    smoke: Shape::new(8, 4, Think::NONE),
    build: |ctx| Box::new(Arc::new(Market::new(ctx))),
};

/// Default p99 goal of a full run per RPC, in milliseconds (the feed's).
const P99_GOAL_MS: f64 = 50.0;
const PAGE_SIZE: i32 = 20;
const PAGES: usize = 3;
/// Likes each synthetic liker makes, and each buyer.
const LIKES_PER_LIKER: i64 = 100;
const BUYER_LIKES: i64 = 20;
/// Rows per insert statement while seeding (one transaction each).
const PRODUCT_BATCH: i64 = 20_000;
const LIKER_BATCH: i64 = 1_000;
/// Product ids the users pick from for "similar to" and likes: evenly spread over the catalogue.
const SAMPLE: i64 = 5_000;
const WORDS: [&str; 10] = ["자전거", "키보드", "캠핑", "의자", "노트북", "텐트", "모니터", "책상", "운동화", "가방"];

const LIST_PRODUCTS: &str = "/maru.v1.ProductService/ListProducts";
const GET_PRODUCT: &str = "/maru.v1.ProductService/GetProduct";
const RECOMMEND: &str = "/maru.v1.ProductService/RecommendProducts";
const LIKE: &str = "/maru.v1.ProductService/LikeProduct";
const SIMILAR: &str = "RecommendSimilar";

struct Market {
    ctx: Arc<Ctx>,
    buyers: OnceLock<Vec<Account>>,
    /// Seeded product ids, [`SAMPLE`] of them spread over the catalogue.
    sample: OnceLock<Vec<String>>,
    likes_before: OnceLock<i64>,
    /// LikeProduct replies with `created`.
    created: AtomicU64,
    /// Results of the buyers' own RecommendProducts, and those ranked by tags or co-likes.
    recommended: AtomicU64,
    explained: AtomicU64,
}

#[derive(Clone)]
struct Session {
    api: Api,
    bearer: Option<AsciiMetadataValue>,
    /// Product ids of the pages this user scrolled last.
    seen: Vec<String>,
    n: u64,
}

impl Market {
    fn new(ctx: Arc<Ctx>) -> Self {
        Market {
            ctx,
            buyers: OnceLock::new(),
            sample: OnceLock::new(),
            likes_before: OnceLock::new(),
            created: AtomicU64::new(0),
            recommended: AtomicU64::new(0),
            explained: AtomicU64::new(0),
        }
    }

    /// md5 keys of this seed's rows: products `<key>p<n>`, sellers `<key>s<n>`, likers `<key>l<n>`.
    fn key(&self) -> String {
        format!("mk{}", self.ctx.seed)
    }

    fn handle_prefix(&self) -> String {
        format!("mk.s{}.", self.ctx.seed)
    }

    fn products(&self) -> i64 {
        self.ctx.options.products.unwrap_or(if self.ctx.smoke { 2_000 } else { 100_000 })
    }

    fn likers(&self) -> i64 {
        self.ctx.options.likes.unwrap_or(if self.ctx.smoke { 2_000 } else { 100_000 }) / LIKES_PER_LIKER
    }

    fn sellers(&self) -> i64 {
        if self.ctx.smoke { 50 } else { 1_000 }
    }

    /// Inserts `users` accounts `<prefix><what><n>` for `n` in `from..to` with ids md5(`<key><tag><n>`)
    /// (no password: they never log in).
    async fn synthetic_users(
        &self,
        db: &mut sqlx::PgConnection,
        what: &str,
        tag: &str,
        from: i64,
        to: i64,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "insert into users (id, handle, email, password_hash, display_name)
             select md5($1 || $2 || g)::uuid, $3 || $4 || g, $3 || $4 || g || '@example.com', '!', $5 || ' ' || g
               from generate_series($6::bigint, $7::bigint - 1) g
             on conflict do nothing",
        )
        .bind(self.key())
        .bind(tag)
        .bind(self.handle_prefix())
        .bind(what)
        .bind(if what == "seller" { "판매자" } else { "구매자" })
        .bind(from)
        .bind(to)
        .execute(db)
        .await?;
        Ok(())
    }

    /// Tops this seed's catalogue up to [`Market::products`] products and [`Market::likers`] likers.
    async fn fill(&self) -> anyhow::Result<()> {
        let mut db = self.ctx.db().await?;
        let (key, products, sellers) = (self.key(), self.products(), self.sellers());
        let started = Instant::now();
        self.synthetic_users(&mut db, "seller", "s", 0, sellers).await?;
        let have: i64 = sqlx::query_scalar(
            "select count(*) from products
              where seller_id in (select md5($1 || 's' || g)::uuid from generate_series(0, $2::bigint - 1) g)",
        )
        .bind(&key)
        .bind(sellers)
        .fetch_one(&mut db)
        .await?;
        let mut from = have;
        while from < products {
            let to = (from + PRODUCT_BATCH).min(products);
            sqlx::query(
                "insert into products (id, seller_id, name, description, price, tags, sale_link, created_at)
                 select md5($1 || 'p' || g)::uuid, md5($1 || 's' || (g % $4))::uuid,
                        ($5::text[])[g % 10 + 1] || ' ' || g, '부하 시험용 상품 #' || g, 1000 * (g % 500),
                        array[($5::text[])[g % 10 + 1], 'g' || (g % 100)], 'https://store.example.com/p/' || g,
                        now() - interval '1 day' - g * interval '1 second'
                   from generate_series($2::bigint, $3::bigint - 1) g
                 on conflict do nothing",
            )
            .bind(&key)
            .bind(from)
            .bind(to)
            .bind(sellers)
            .bind(WORDS.map(str::to_owned).to_vec())
            .execute(&mut db)
            .await?;
            println!("products {to} of {products} ({:.0} s)", started.elapsed().as_secs_f64());
            from = to;
        }
        // Likers, each with their likes in the same transaction: a liker's row means its likes are there.
        let likers = self.likers();
        let have: i64 = sqlx::query_scalar(
            "select count(*) from users
              where id in (select md5($1 || 'l' || g)::uuid from generate_series(0, $2::bigint - 1) g)",
        )
        .bind(&key)
        .bind(likers)
        .fetch_one(&mut db)
        .await?;
        let mut from = have;
        while from < likers {
            let to = (from + LIKER_BATCH).min(likers);
            let mut tx = sqlx::Connection::begin(&mut db).await?;
            self.synthetic_users(&mut tx, "liker", "l", from, to).await?;
            sqlx::query(
                "insert into product_likes (product_id, user_id, created_at)
                 select md5($1 || 'p' || (case when k < 80
                                               then (u % 100) + 100 * (abs(hashtext(u || ':' || k)) % ($2 / 100))
                                               else abs(hashtext(k || ':' || u)) % $2 end))::uuid,
                        md5($1 || 'l' || u)::uuid, now() - k * interval '1 minute'
                   from generate_series($3::bigint, $4::bigint - 1) u, generate_series(0, $5::bigint - 1) k
                 on conflict do nothing",
            )
            .bind(&key)
            .bind(products)
            .bind(from)
            .bind(to)
            .bind(LIKES_PER_LIKER)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            println!("likers {to} of {likers} ({:.0} s)", started.elapsed().as_secs_f64());
            from = to;
        }
        Ok(())
    }

    /// The buyers' own likes (20 each, in their interest group), once.
    async fn buyer_likes(&self, buyers: &[Account]) -> anyhow::Result<()> {
        let mut db = self.ctx.db().await?;
        let handles: Vec<String> = buyers.iter().map(|a| a.handle.clone()).collect();
        sqlx::query(
            "insert into product_likes (product_id, user_id, created_at)
             select md5($1 || 'p' || ((b.n % 100) + 100 * (abs(hashtext('b' || b.n || ':' || k)) % ($2 / 100))))::uuid,
                    u.id, now() - interval '1 day' - k * interval '1 minute'
               from unnest($3::text[]) with ordinality as b(handle, n)
               join users u on lower(u.handle) = b.handle,
                    generate_series(0, $4::bigint - 1) k
             on conflict do nothing",
        )
        .bind(self.key())
        .bind(self.products())
        .bind(&handles)
        .bind(BUYER_LIKES)
        .execute(&mut db)
        .await?;
        // As autovacuum would have by now: visibility map (index-only scans) and statistics.
        for table in ["products", "product_likes", "users"] {
            sqlx::query(sqlx::AssertSqlSafe(format!("vacuum analyze {table}"))).execute(&mut db).await?;
        }
        Ok(())
    }

    /// Like rows of this seed's buyers.
    async fn buyer_like_rows(&self) -> anyhow::Result<i64> {
        let mut db = self.ctx.db().await?;
        Ok(sqlx::query_scalar(
            "select count(*) from product_likes l join users u on u.id = l.user_id
              where starts_with(lower(u.handle), $1)",
        )
        .bind(format!("{}u", self.handle_prefix()))
        .fetch_one(&mut db)
        .await?)
    }

    fn sample(&self) -> Result<&[String], Box<goose::goose::TransactionError>> {
        self.sample.get().map(Vec::as_slice).ok_or_else(|| custom("the catalogue is not seeded".into()))
    }

    fn pick<'a>(user: &GooseUser, s: &Session, salt: u64, ids: &'a [String]) -> Option<&'a String> {
        ids.get(mix(user.weighted_users_index as u64 ^ salt, s.n) as usize % ids.len().max(1))
    }

    async fn login(self: Arc<Self>, user: &mut GooseUser) -> TransactionResult {
        let i = user.weighted_users_index;
        let buyers = self.buyers.get().ok_or_else(|| custom("the buyers are not seeded".into()))?;
        let account = &buyers[i % buyers.len()];
        let api = Transport::Grpc.api(&self.ctx, i).map_err(|e| custom(format!("{e:#}")))?;
        let msg = pb::LoginRequest { login: account.handle.clone(), password: account.password.clone() };
        let reply = api.call::<_, pb::LoginResponse>(user, &self.ctx.budget, LOGIN, msg, None).await?;
        let bearer = match reply {
            Ok(tokens) => Some(crate::rpc::bearer(&tokens.access_token).map_err(|e| custom(format!("{e:#}")))?),
            Err(_) => None,
        };
        user.set_session_data(Session { api, bearer, seen: Vec::new(), n: 0 });
        Ok(())
    }

    /// Three pages newest first, each with the previous page's token.
    async fn scroll(self: Arc<Self>, user: &mut GooseUser) -> TransactionResult {
        let mut s = advance::<Session>(user)?;
        let mut token = String::new();
        let mut seen = Vec::new();
        for _ in 0..PAGES {
            let msg = pb::ListProductsRequest { page_size: PAGE_SIZE, page_token: token, ..Default::default() };
            let reply = s
                .api
                .call::<_, pb::ListProductsResponse>(user, &self.ctx.budget, LIST_PRODUCTS, msg, s.bearer.as_ref())
                .await?;
            let Ok(page) = reply else { break };
            seen.extend(page.products.into_iter().map(|p| p.id));
            token = page.next_page_token;
            if token.is_empty() {
                break;
            }
        }
        if !seen.is_empty() {
            s.seen = seen;
            user.set_session_data(s);
        }
        Ok(())
    }

    /// A product from the pages the user scrolled (the catalogue before their first scroll).
    async fn get_product(self: Arc<Self>, user: &mut GooseUser) -> TransactionResult {
        let s = advance::<Session>(user)?;
        let from = if s.seen.is_empty() { self.sample()? } else { &s.seen };
        let msg = pb::GetProductRequest { product_id: Self::pick(user, &s, 1, from).cloned().unwrap_or_default() };
        let _ = s
            .api
            .call::<_, pb::GetProductResponse>(user, &self.ctx.budget, GET_PRODUCT, msg, s.bearer.as_ref())
            .await?;
        Ok(())
    }

    async fn recommend(self: Arc<Self>, user: &mut GooseUser) -> TransactionResult {
        let s = advance::<Session>(user)?;
        let msg = pb::RecommendProductsRequest { product_id: String::new(), page_size: 10 };
        let reply = s
            .api
            .call::<_, pb::RecommendProductsResponse>(user, &self.ctx.budget, RECOMMEND, msg, s.bearer.as_ref())
            .await?;
        if let Ok(r) = reply {
            let explained = r.recommendations.iter().filter(|r| r.source() != pb::RecommendationSource::Newest).count();
            self.recommended.fetch_add(r.recommendations.len() as u64, Ordering::Relaxed);
            self.explained.fetch_add(explained as u64, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Products similar to one anywhere in the catalogue.
    async fn similar(self: Arc<Self>, user: &mut GooseUser) -> TransactionResult {
        let s = advance::<Session>(user)?;
        let product_id = Self::pick(user, &s, 2, self.sample()?).cloned().unwrap_or_default();
        let msg = pb::RecommendProductsRequest { product_id, page_size: 10 };
        let call = s.api.unary::<_, pb::RecommendProductsResponse>(RECOMMEND, msg, s.bearer.as_ref());
        let _ = record(user, &self.ctx.budget, s.api.method(), SIMILAR, call).await?;
        Ok(())
    }

    async fn like(self: Arc<Self>, user: &mut GooseUser) -> TransactionResult {
        let s = advance::<Session>(user)?;
        // Salted with the run's tag: a rerun with the same seed (the same buyers) likes other
        // products than the last run, not only ones it liked already.
        let salt = u64::from_str_radix(&self.ctx.tag, 16).unwrap_or(3);
        let product_id = Self::pick(user, &s, salt, self.sample()?).cloned().unwrap_or_default();
        let msg = pb::LikeProductRequest { product_id, request_id: String::new() };
        let reply =
            s.api.call::<_, pb::LikeProductResponse>(user, &self.ctx.budget, LIKE, msg, s.bearer.as_ref()).await?;
        if reply.is_ok_and(|r| r.created) {
            self.created.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

#[async_trait]
impl LoadScenario for Arc<Market> {
    async fn prepare(&self) -> anyhow::Result<Vec<Scenario>> {
        let ctx = &self.ctx;
        anyhow::ensure!(self.products() >= 1_000, "--products must be at least 1,000");
        self.fill().await?;
        let prefix = self.handle_prefix();
        let how = Seeding { prefix: &prefix, count: ctx.users.min(200), forwarded: false, fail_on_rate_limit: false };
        let buyers = seed::accounts(ctx, &how).await?;
        self.buyer_likes(&buyers).await?;
        let mut db = ctx.db().await?;
        let step = (self.products() / SAMPLE).max(1);
        let sample: Vec<String> = sqlx::query_scalar(
            "select md5($1 || 'p' || g)::uuid::text from generate_series(0, $2::bigint - 1, $3::bigint) g",
        )
        .bind(self.key())
        .bind(self.products())
        .bind(step)
        .fetch_all(&mut db)
        .await?;
        println!(
            "catalogue: {} products, {} likers × {LIKES_PER_LIKER} likes, {} buyers × {BUYER_LIKES} likes",
            self.products(),
            self.likers(),
            buyers.len()
        );
        let _ = self.sample.set(sample);
        let _ = self.buyers.set(buyers);
        let _ = self.likes_before.set(self.buyer_like_rows().await?);

        let weight = |t: goose::goose::Transaction, w: usize| t.set_weight(w).map_err(|e| anyhow::anyhow!("{e}"));
        let s = Scenario::new("buyers")
            .register_transaction(tx!(self, "Login", login).set_on_start())
            .register_transaction(weight(tx!(self, "Scroll", scroll), 3)?)
            .register_transaction(weight(tx!(self, "GetProduct", get_product), 3)?)
            .register_transaction(weight(tx!(self, "RecommendProducts", recommend), 2)?)
            .register_transaction(weight(tx!(self, "RecommendSimilar", similar), 1)?)
            .register_transaction(weight(tx!(self, "LikeProduct", like), 1)?);
        Ok(vec![with_think(s, ctx.think)?])
    }

    async fn verify(&self, s: &Summary) -> anyhow::Result<Vec<Check>> {
        let ctx = &self.ctx;
        let before = self.likes_before.get().copied().unwrap_or_default();
        let stored = self.buyer_like_rows().await? - before;
        let created = self.created.load(Ordering::Relaxed);
        let (recommended, explained) =
            (self.recommended.load(Ordering::Relaxed), self.explained.load(Ordering::Relaxed));
        let mut checks = vec![
            Check::no_internal(s),
            Check::only_codes("every reply OK", s, |_, code| code == "OK"),
            Check::new(
                "one stored like per LikeProduct that created one",
                stored == i64::try_from(created).unwrap_or(-1) && created > 0,
                format!("{created} replies with created, {stored} new like rows of the buyers"),
            ),
            Check::new(
                "the buyers' recommendations are explained",
                explained > 0,
                format!("{explained} of {recommended} results ranked by tags or co-likes (the rest: newest)"),
            ),
        ];
        if !ctx.smoke {
            let goal = ctx.options.p99_ms.unwrap_or(P99_GOAL_MS);
            for rpc in ["ListProducts", "GetProduct", "RecommendProducts", SIMILAR, "LikeProduct"] {
                checks.push(Check::p99(s, &format!("GRPC {rpc}"), goal));
            }
        }
        Ok(checks)
    }
}

impl super::Counted for Session {
    fn next_call(&mut self) {
        self.n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_names_fit_the_product_rules() {
        // name = word + ' ' + number: 2–15 characters up to the largest --products.
        for w in WORDS {
            let longest = format!("{w} {}", 2_000_000 - 1);
            assert!((2..=15).contains(&longest.chars().count()), "{longest}");
        }
    }
}
