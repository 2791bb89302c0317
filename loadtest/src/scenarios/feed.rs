//! `feed`: the apartment journey (DOMAIN §6: 7,500 ms → 1,600 ms average at 100 users). Each
//! user logs in as a seeded resident, then reads and writes their community's feed:
//! `ListPosts` (weight 6: the list is what residents open most), `GetPost` of a post from the
//! page they last listed (weight 3) and `CreatePost` (weight 1, with a `request_id`).
//!
//! The residents, their apartment community and its posts are seeded once per `--seed`
//! (shared with `detail-cache` and `grpc-web`): a rerun logs the same residents in and tops
//! the feed up to its size. Afterwards every reply must be OK and the feed must hold exactly
//! one new post per accepted `CreatePost`; a full run checks each RPC's p99 against the goal
//! (50 ms) and, with `--server-metrics`, the server's resident memory against 150 MB.
//! `grpc-web` runs this same journey over gRPC-web.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use goose::goose::{GooseUser, Scenario, TransactionResult};
use maru::grpc::pb;
use tonic::metadata::AsciiMetadataValue;

use super::whoami::custom;
use super::{Ctx, Entry, LoadScenario, Shape, Think, advance, session, tx, with_think};
use crate::api::Api;
use crate::report::{Check, Summary};
use crate::seed::{self, Account, Seeding};
use crate::web::WebClient;

pub const ENTRY: Entry = Entry {
    name: "feed",
    about: "apartment journey: Login, then ListPosts ×6, GetPost ×3, CreatePost ×1 in the community feed",
    full: Shape::new(100, 30, Think::NONE),
    smoke: Shape::new(8, 4, Think::NONE),
    build: |ctx| Box::new(Arc::new(Feed::new(ctx, Transport::Grpc, Journey::Feed))),
};

/// Default p99 goal of a full run per feed RPC, in milliseconds.
const P99_GOAL_MS: f64 = 50.0;
/// Server resident memory goal during a full run, in MiB.
const RSS_GOAL_MB: f64 = 150.0;
const PAGE_SIZE: i32 = 20;

pub const LOGIN: &str = "/maru.v1.AuthService/Login";
pub const LIST_POSTS: &str = "/maru.v1.FeedService/ListPosts";
pub const GET_POST: &str = "/maru.v1.FeedService/GetPost";
pub const CREATE_POST: &str = "/maru.v1.FeedService/CreatePost";
pub const GET_PROFILE: &str = "/maru.v1.ProfileService/GetProfile";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Grpc,
    Web,
}

impl Transport {
    pub fn method(self) -> &'static str {
        match self {
            Transport::Grpc => crate::rpc::GRPC,
            Transport::Web => crate::rpc::GRPC_WEB,
        }
    }

    /// A client for user `i`: its own HTTP/2 channel, or its own HTTP/1.1 connection pool.
    pub fn api(self, ctx: &Ctx, i: usize) -> anyhow::Result<Api> {
        Ok(match self {
            Transport::Grpc => Api::Grpc(ctx.channel(i)?),
            Transport::Web => Api::Web(WebClient::new(ctx.target(i), ctx.request_timeout)?),
        })
    }
}

/// The seeded residents, their community and its posts (newest first).
pub struct FeedData {
    pub accounts: Vec<Account>,
    pub community: String,
    pub posts: Vec<String>,
}

/// Seeds (or finds, for the same `--seed`) `residents` accounts in one apartment community
/// whose feed holds at least `posts` posts, written through `CreatePost`.
pub async fn seed_feed(ctx: &Ctx, residents: usize, posts: usize) -> anyhow::Result<FeedData> {
    let prefix = format!("fd.s{}.", ctx.seed);
    let how = Seeding { prefix: &prefix, count: residents.max(1), forwarded: false, fail_on_rate_limit: false };
    let accounts = seed::accounts(ctx, &how).await?;
    let members: Vec<(&Account, &str)> =
        accounts.iter().enumerate().map(|(i, a)| (a, if i == 0 { "MANAGER" } else { "MEMBER" })).collect();
    let community = seed::community(ctx, "APARTMENT", &format!("feed-s{}", ctx.seed), &members).await?;

    let have = post_count(ctx, &community).await?;
    let missing = posts.saturating_sub(usize::try_from(have).unwrap_or(usize::MAX));
    if missing > 0 {
        println!("seeding {missing} posts in the feed community");
        let channel = ctx.channel(0)?;
        let api = Api::Grpc(channel);
        let (accounts, community, seed) = (&accounts, &community, ctx.seed);
        futures::stream::iter(0..missing)
            .map(|n| {
                let api = api.clone();
                let n = n + usize::try_from(have).unwrap_or(0);
                async move {
                    let author = &accounts[n % accounts.len()];
                    let msg = pb::CreatePostRequest {
                        community_id: community.clone(),
                        text: post_text(seed, n as u64),
                        tags: vec![TAGS[(mix(seed, n as u64) % TAGS.len() as u64) as usize].to_owned()],
                        ..Default::default()
                    };
                    api.unary::<_, pb::CreatePostResponse>(CREATE_POST, msg, Some(&author.bearer))
                        .await
                        .map_err(|s| anyhow::anyhow!("seeding post {n}: {s}"))
                }
            })
            .buffer_unordered(8)
            .try_for_each(|_| async { Ok(()) })
            .await?;
    }
    seed::analyze(ctx, &["users", "communities", "community_memberships", "posts", "post_likes", "post_comments"])
        .await?;
    let mut db = ctx.db().await?;
    let posts: Vec<String> = sqlx::query_scalar(
        "select id::text from posts where community_id = $1::uuid order by created_at desc, id desc limit 2000",
    )
    .bind(&community)
    .fetch_all(&mut db)
    .await?;
    Ok(FeedData { accounts, community, posts })
}

pub async fn post_count(ctx: &Ctx, community: &str) -> anyhow::Result<i64> {
    let mut db = ctx.db().await?;
    Ok(sqlx::query_scalar("select count(*) from posts where community_id = $1::uuid")
        .bind(community)
        .fetch_one(&mut db)
        .await?)
}

const TAGS: &[&str] = &["공지", "분실물", "나눔", "주차", "소음", "모임"];
const TOPICS: &[&str] = &[
    "엘리베이터 점검 안내",
    "지하주차장 물청소",
    "분리수거 요일 변경",
    "놀이터 보수 공사",
    "택배 보관함 이용",
    "층간소음 배려 부탁드립니다",
    "관리비 고지서 확인",
    "헬스장 운영 시간",
];

/// A deterministic post text: the same seed and number give the same text.
pub fn post_text(seed: u64, n: u64) -> String {
    let topic = TOPICS[(mix(seed, n) % TOPICS.len() as u64) as usize];
    format!("{topic} ({n}번째 글, 시드 {seed})")
}

/// splitmix64 of (seed, n): cheap, reproducible choices without a random-number crate.
pub fn mix(seed: u64, n: u64) -> u64 {
    let mut z = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(n).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// What the residents do after logging in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Journey {
    /// ListPosts ×6, GetPost ×3, CreatePost ×1.
    Feed,
    /// GetPost ×1 and GetProfile ×1 of seeded posts and residents (`detail-cache`).
    Detail,
}

pub struct Feed {
    pub ctx: Arc<Ctx>,
    transport: Transport,
    journey: Journey,
    data: OnceLock<FeedData>,
    posts_before: OnceLock<i64>,
    created: AtomicU64,
}

#[derive(Clone)]
struct Session {
    api: Api,
    bearer: Option<AsciiMetadataValue>,
    /// Post ids of the page this user listed last: the posts they can open.
    page: Vec<String>,
    n: u64,
}

impl Feed {
    pub fn new(ctx: Arc<Ctx>, transport: Transport, journey: Journey) -> Self {
        Feed {
            ctx,
            transport,
            journey,
            data: OnceLock::new(),
            posts_before: OnceLock::new(),
            created: AtomicU64::new(0),
        }
    }

    fn data(&self) -> Result<&FeedData, Box<goose::goose::TransactionError>> {
        self.data.get().ok_or_else(|| custom("the feed is not seeded".into()))
    }

    /// A seeded post by a deterministic pick: any post of the community, not only the first page.
    async fn any_post(self: Arc<Self>, user: &mut GooseUser) -> TransactionResult {
        let s = advance::<Session>(user)?;
        self.open_post(user, &s, &self.data()?.posts).await
    }

    /// GetPost of one of `posts`, picked by user and call number.
    async fn open_post(&self, user: &mut GooseUser, s: &Session, posts: &[String]) -> TransactionResult {
        let pick = mix(user.weighted_users_index as u64, s.n) as usize % posts.len().max(1);
        let msg = pb::GetPostRequest { post_id: posts.get(pick).cloned().unwrap_or_default() };
        // The outcome is in the metrics.
        let _ = s.api.call::<_, pb::GetPostResponse>(user, &self.ctx.budget, GET_POST, msg, s.bearer.as_ref()).await?;
        Ok(())
    }

    /// A seeded resident's profile.
    async fn profile(self: Arc<Self>, user: &mut GooseUser) -> TransactionResult {
        let s = advance::<Session>(user)?;
        let accounts = &self.data()?.accounts;
        let who = mix(self.ctx.seed ^ user.weighted_users_index as u64, s.n) as usize % accounts.len().max(1);
        let msg = pb::GetProfileRequest { handle: accounts.get(who).map(|a| a.handle.clone()).unwrap_or_default() };
        let _ = s
            .api
            .call::<_, pb::GetProfileResponse>(user, &self.ctx.budget, GET_PROFILE, msg, s.bearer.as_ref())
            .await?;
        Ok(())
    }

    async fn login(self: Arc<Self>, user: &mut GooseUser) -> TransactionResult {
        let i = user.weighted_users_index;
        let data = self.data()?;
        let account = &data.accounts[i % data.accounts.len()];
        let api = self.transport.api(&self.ctx, i).map_err(|e| custom(format!("{e:#}")))?;
        let msg = pb::LoginRequest { login: account.handle.clone(), password: account.password.clone() };
        let reply = api.call::<_, pb::LoginResponse>(user, &self.ctx.budget, LOGIN, msg, None).await?;
        let bearer = match reply {
            Ok(tokens) => Some(crate::rpc::bearer(&tokens.access_token).map_err(|e| custom(format!("{e:#}")))?),
            Err(_) => None,
        };
        let start = (mix(self.ctx.seed, i as u64) % data.posts.len().max(1) as u64) as usize;
        let page = data.posts.iter().cycle().skip(start).take(PAGE_SIZE as usize).cloned().collect();
        user.set_session_data(Session { api, bearer, page, n: 0 });
        Ok(())
    }

    async fn list_posts(self: Arc<Self>, user: &mut GooseUser) -> TransactionResult {
        let mut s = session::<Session>(user)?;
        let msg = pb::ListPostsRequest {
            community_id: self.data()?.community.clone(),
            page_size: PAGE_SIZE,
            ..Default::default()
        };
        let reply =
            s.api.call::<_, pb::ListPostsResponse>(user, &self.ctx.budget, LIST_POSTS, msg, s.bearer.as_ref()).await?;
        if let Ok(r) = reply
            && !r.posts.is_empty()
        {
            s.page = r.posts.into_iter().map(|p| p.id).collect();
            user.set_session_data(s);
        }
        Ok(())
    }

    async fn get_post(self: Arc<Self>, user: &mut GooseUser) -> TransactionResult {
        let s = advance::<Session>(user)?;
        self.open_post(user, &s, &s.page).await
    }

    async fn create_post(self: Arc<Self>, user: &mut GooseUser) -> TransactionResult {
        let s = advance::<Session>(user)?;
        let msg = pb::CreatePostRequest {
            community_id: self.data()?.community.clone(),
            text: format!("{} — {}", post_text(self.ctx.seed, s.n), self.ctx.tag),
            request_id: uuid::Uuid::new_v4().to_string(),
            ..Default::default()
        };
        let reply = s
            .api
            .call::<_, pb::CreatePostResponse>(user, &self.ctx.budget, CREATE_POST, msg, s.bearer.as_ref())
            .await?;
        if reply.is_ok() {
            self.created.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// The journey as goose's user type (shared with `grpc-web`).
    pub async fn prepare_journey(self: &Arc<Self>) -> anyhow::Result<Vec<Scenario>> {
        let posts = if self.ctx.smoke { 40 } else { 500 };
        let data = seed_feed(&self.ctx, self.ctx.users.min(200), posts).await?;
        let _ = self.posts_before.set(post_count(&self.ctx, &data.community).await?);
        let _ = self.data.set(data);
        let weight = |t: goose::goose::Transaction, w: usize| t.set_weight(w).map_err(|e| anyhow::anyhow!("{e}"));
        let s = Scenario::new("residents").register_transaction(tx!(self, "Login", login).set_on_start());
        let s = match self.journey {
            Journey::Feed => s
                .register_transaction(weight(tx!(self, "ListPosts", list_posts), 6)?)
                .register_transaction(weight(tx!(self, "GetPost", get_post), 3)?)
                .register_transaction(weight(tx!(self, "CreatePost", create_post), 1)?),
            Journey::Detail => s.register_transaction(tx!(self, "GetPost", any_post)).register_transaction(tx!(
                self,
                "GetProfile",
                profile
            )),
        };
        Ok(vec![with_think(s, self.ctx.think)?])
    }

    /// Every reply OK; for the feed journey every accepted post stored once and (full runs)
    /// the p99 goal per RPC.
    pub async fn verify_journey(&self, s: &Summary) -> anyhow::Result<Vec<Check>> {
        let ctx = &self.ctx;
        if self.journey == Journey::Detail {
            return Ok(vec![Check::no_internal(s), Check::only_codes("every reply OK", s, |_, code| code == "OK")]);
        }
        let community = &self.data.get().ok_or_else(|| anyhow::anyhow!("not seeded"))?.community;
        let before = self.posts_before.get().copied().unwrap_or_default();
        let stored = post_count(ctx, community).await? - before;
        let created = self.created.load(Ordering::Relaxed);
        let mut checks = vec![
            Check::no_internal(s),
            Check::only_codes("every reply OK", s, |_, code| code == "OK"),
            Check::new(
                "one stored post per accepted CreatePost",
                stored == i64::try_from(created).unwrap_or(-1) && created > 0,
                format!("{created} accepted, {stored} new rows in the feed"),
            ),
        ];
        if !ctx.smoke {
            let method = self.transport.method();
            let goal = ctx.options.p99_ms.unwrap_or(P99_GOAL_MS);
            for rpc in ["ListPosts", "GetPost", "CreatePost"] {
                checks.push(Check::p99(s, &format!("{method} {rpc}"), goal));
            }
        }
        Ok(checks)
    }
}

#[async_trait]
impl LoadScenario for Arc<Feed> {
    async fn prepare(&self) -> anyhow::Result<Vec<Scenario>> {
        self.prepare_journey().await
    }

    async fn verify(&self, s: &Summary) -> anyhow::Result<Vec<Check>> {
        self.verify_journey(s).await
    }

    fn rss_goal_mb(&self) -> Option<f64> {
        Some(RSS_GOAL_MB)
    }

    /// The community, the residents' logins and the newest posts (the k6 `feed` script's input).
    fn seeded(&self) -> Option<serde_json::Value> {
        let data = self.data.get()?;
        let accounts: Vec<serde_json::Value> =
            data.accounts.iter().map(|a| serde_json::json!({ "handle": a.handle, "password": a.password })).collect();
        let posts: Vec<&String> = data.posts.iter().take(100).collect();
        Some(serde_json::json!({ "community": data.community, "accounts": accounts, "posts": posts }))
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
    fn seeded_texts_are_reproducible() {
        assert_eq!(post_text(1, 7), post_text(1, 7));
        assert_ne!(mix(1, 7), mix(2, 7));
        assert!(post_text(3, 12).contains("12번째"));
    }
}
