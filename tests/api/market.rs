//! ProductService (DOMAIN §3 products, issue 16): products and their validation, edits with
//! etags, moderation status, the keyset scroll under concurrent inserts, filters and search,
//! likes (with races), views, recommendations and the authorization matrix of every RPC.

use std::collections::HashSet;

use maru::grpc::pb;
use maru::grpc::pb::product_service_client::ProductServiceClient;
use prost_types::FieldMask;
use sqlx::PgPool;
use tonic::transport::Channel;
use tonic::{Code, Status};

use tonic_types::StatusExt;

use crate::helpers::*;

fn api(app: &TestApp) -> ProductServiceClient<Channel> {
    ProductServiceClient::new(app.channel.clone())
}

fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask { paths: paths.iter().map(|p| p.to_string()).collect() })
}

fn new_product(name: &str, price: i64, tags: &[&str]) -> pb::CreateProductRequest {
    pb::CreateProductRequest {
        name: name.into(),
        price,
        description: format!("{name} 팝니다"),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        image_url: "https://img.example/p.jpg".into(),
        sale_link: "https://store.example/p".into(),
        request_id: String::new(),
        media_id: String::new(),
    }
}

async fn create(app: &TestApp, who: &TestUser, req: pb::CreateProductRequest) -> pb::Product {
    api(app).create_product(who.req(req)).await.unwrap().into_inner().product.unwrap()
}

async fn get(app: &TestApp, who: Option<&TestUser>, id: &str) -> Result<pb::Product, Status> {
    api(app)
        .get_product(as_who(who, pb::GetProductRequest { product_id: id.into() }))
        .await
        .map(|r| r.into_inner().product.unwrap())
}

async fn set_status(app: &TestApp, who: &TestUser, id: &str, s: pb::ProductStatus) -> Result<pb::Product, Status> {
    api(app)
        .set_product_status(who.req(pb::SetProductStatusRequest { product_id: id.into(), status: s as i32 }))
        .await
        .map(|r| r.into_inner().product.unwrap())
}

async fn list(
    app: &TestApp,
    who: Option<&TestUser>,
    req: pb::ListProductsRequest,
) -> Result<(Vec<String>, String), Status> {
    let r = api(app).list_products(as_who(who, req)).await?.into_inner();
    Ok((r.products.into_iter().map(|p| p.name).collect(), r.next_page_token))
}

#[sqlx::test]
async fn a_product_is_created_read_edited_and_deleted(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let seller = app.user("seller").await;
    let buyer = app.user("buyer").await;
    let p = create(&app, &seller, new_product("  중고 자전거  ", 120_000, &["#Bike", "bike", "출퇴근"])).await;
    assert_eq!(p.name, "중고 자전거", "trimmed");
    assert_eq!(p.tags, ["bike", "출퇴근"], "lower case, deduplicated, '#' dropped");
    assert_eq!(p.status, pb::ProductStatus::OnSale as i32);
    assert_eq!(p.seller.as_ref().unwrap().handle, "seller");
    assert_eq!(get(&app, None, &p.id).await.unwrap().price, 120_000);

    // Only the seller edits; the etag makes a stale edit ABORTED.
    let edit = |etag: &str, price: i64| pb::UpdateProductRequest {
        product_id: p.id.clone(),
        price,
        update_mask: mask(&["price"]),
        etag: etag.into(),
        ..Default::default()
    };
    assert_err(
        api(&app).update_product(buyer.req(edit("", 1))).await,
        Code::PermissionDenied,
        "PRODUCT_OWNER_REQUIRED",
    );
    let e = api(&app).update_product(seller.req(edit(&p.etag, 100_000))).await.unwrap().into_inner().product.unwrap();
    assert_eq!((e.price, e.name.as_str()), (100_000, "중고 자전거"), "only the masked field changes");
    let stale =
        assert_err(api(&app).update_product(seller.req(edit(&p.etag, 90_000))).await, Code::Aborted, "ETAG_MISMATCH");
    assert_eq!(stale.get_details_error_info().unwrap().metadata["etag"], e.etag);

    // SOLD_OUT by the seller; SUSPENDED by admins only, then hidden from everyone else.
    let admin = app.admin_user("boss").await;
    assert_eq!(set_status(&app, &seller, &p.id, pb::ProductStatus::SoldOut).await.unwrap().status, 2);
    assert_err(
        set_status(&app, &seller, &p.id, pb::ProductStatus::Suspended).await,
        Code::PermissionDenied,
        "ADMIN_REQUIRED",
    );
    assert_err(
        set_status(&app, &buyer, &p.id, pb::ProductStatus::OnSale).await,
        Code::PermissionDenied,
        "PRODUCT_OWNER_REQUIRED",
    );
    set_status(&app, &admin, &p.id, pb::ProductStatus::Suspended).await.unwrap();
    assert_err(get(&app, Some(&buyer), &p.id).await, Code::NotFound, "PRODUCT_NOT_FOUND");
    assert_err(get(&app, None, &p.id).await, Code::NotFound, "PRODUCT_NOT_FOUND");
    assert!(get(&app, Some(&seller), &p.id).await.is_ok(), "the seller still sees it");
    assert!(list(&app, Some(&buyer), Default::default()).await.unwrap().0.is_empty());
    assert_eq!(list(&app, Some(&seller), Default::default()).await.unwrap().0, ["중고 자전거"]);
    assert_err(
        set_status(&app, &seller, &p.id, pb::ProductStatus::OnSale).await,
        Code::PermissionDenied,
        "ADMIN_REQUIRED",
    );
    set_status(&app, &admin, &p.id, pb::ProductStatus::OnSale).await.unwrap();

    // Delete: not by others; by the seller; then gone.
    let del = |id: &str| pb::DeleteProductRequest { product_id: id.into() };
    assert_err(api(&app).delete_product(buyer.req(del(&p.id))).await, Code::PermissionDenied, "PRODUCT_OWNER_REQUIRED");
    api(&app).delete_product(seller.req(del(&p.id))).await.unwrap();
    assert_err(get(&app, Some(&seller), &p.id).await, Code::NotFound, "PRODUCT_NOT_FOUND");
    assert_err(api(&app).delete_product(seller.req(del(&p.id))).await, Code::NotFound, "PRODUCT_NOT_FOUND");
}

#[sqlx::test]
async fn bad_fields_are_reported_at_once_and_hostile_input_is_refused(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let seller = app.user("seller").await;
    let bad = pb::CreateProductRequest {
        name: "x".into(),
        price: -1,
        description: "a\0b".into(),
        tags: vec!["two words".into()],
        image_url: "file:///etc/passwd".into(),
        sale_link: "javascript:alert(1)".into(),
        request_id: "no spaces allowed".into(),
        media_id: "not an id".into(),
    };
    let s = assert_err(api(&app).create_product(seller.req(bad)).await, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(
        violations(&s),
        ["name", "price", "description", "tags", "image_url", "sale_link", "media_id", "request_id"]
    );
    for (name, field) in [("열여섯글자가넘는아주긴상품이름입니다", "name"), ("a\0", "name")] {
        let req = pb::CreateProductRequest { description: String::new(), ..new_product(name, 1, &[]) };
        let s = assert_err(api(&app).create_product(seller.req(req)).await, Code::InvalidArgument, "INVALID_ARGUMENT");
        assert_eq!(violations(&s), [field]);
    }
    let mut huge = new_product("큰 설명", 1, &[]);
    huge.description = "가".repeat(1_000_000);
    let s = api(&app).create_product(seller.req(huge)).await.unwrap_err();
    assert!(matches!(s.code(), Code::InvalidArgument | Code::ResourceExhausted), "{s:?}");
    for sale_link in ["data:text/html,hi", "ftp://example.com/x", "http://"] {
        let mut r = new_product("링크", 1, &[]);
        r.sale_link = sale_link.into();
        let s = assert_err(api(&app).create_product(seller.req(r)).await, Code::InvalidArgument, "INVALID_ARGUMENT");
        assert_eq!(violations(&s), ["sale_link"]);
    }
    // Lists: a price range upside down, a 1-character query, a NUL, a negative page size.
    let q = |r: pb::ListProductsRequest| list(&app, None, r);
    let s = assert_err(
        q(pb::ListProductsRequest { min_price: Some(10), max_price: Some(5), ..Default::default() }).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violations(&s), ["max_price"]);
    for query in ["가", "a\0b", &"가".repeat(101)] {
        let r = pb::ListProductsRequest { query: query.into(), ..Default::default() };
        assert_err(q(r).await, Code::InvalidArgument, "INVALID_ARGUMENT");
    }
    assert_err(
        q(pb::ListProductsRequest { page_size: -1, ..Default::default() }).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert!(q(pb::ListProductsRequest { page_size: i32::MAX, ..Default::default() }).await.is_ok(), "coerced to 100");
    let r = api(&app).get_product(pb::GetProductRequest { product_id: "not-a-uuid".into() }).await;
    assert_err(r, Code::InvalidArgument, "INVALID_ARGUMENT");
    let mut c = api(&app);
    let r = c.list_user_products(pb::ListUserProductsRequest { handle: "nobody".into(), ..Default::default() });
    assert_err(r.await, Code::NotFound, "USER_NOT_FOUND");
    // A request_id replays the first answer.
    let mut once = new_product("한 번만", 1, &[]);
    once.request_id = "create-1".into();
    let a = create(&app, &seller, once.clone()).await;
    let b = create(&app, &seller, once).await;
    assert_eq!(a.id, b.id);
}

#[sqlx::test]
async fn filters_search_and_a_sellers_latest(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    create(&app, &alice, new_product("자전거", 100_000, &["bike"])).await;
    create(&app, &alice, new_product("자전거 헬멧", 30_000, &["bike", "gear"])).await;
    create(&app, &bob, new_product("기계식 키보드", 80_000, &["pc"])).await;
    let q = |r: pb::ListProductsRequest| list(&app, None, r);
    assert_eq!(
        q(pb::ListProductsRequest { tag: "#BIKE".into(), ..Default::default() }).await.unwrap().0,
        ["자전거 헬멧", "자전거"]
    );
    let range = pb::ListProductsRequest { min_price: Some(50_000), max_price: Some(90_000), ..Default::default() };
    assert_eq!(q(range).await.unwrap().0, ["기계식 키보드"]);
    assert_eq!(
        q(pb::ListProductsRequest { query: "자전".into(), ..Default::default() }).await.unwrap().0,
        ["자전거 헬멧", "자전거"]
    );
    assert_eq!(
        q(pb::ListProductsRequest { query: "팝니".into(), seller_handle: "bob".into(), ..Default::default() })
            .await
            .unwrap()
            .0,
        ["기계식 키보드"],
        "description searched, filters combine"
    );
    let r = api(&app)
        .list_user_products(pb::ListUserProductsRequest { handle: "alice".into(), page_size: 1, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.products[0].name, "자전거 헬멧");
    // A token is bound to its filters.
    let (_, token) =
        q(pb::ListProductsRequest { tag: "bike".into(), page_size: 1, ..Default::default() }).await.unwrap();
    let other = pb::ListProductsRequest { tag: "pc".into(), page_size: 1, page_token: token, ..Default::default() };
    assert_err(q(other).await, Code::InvalidArgument, "PAGE_TOKEN_INVALID");
}

/// Infinite scroll while products are created: every product that existed when the scroll
/// began is seen exactly once, nothing twice.
#[sqlx::test]
async fn the_scroll_never_duplicates_or_skips_under_concurrent_inserts(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let sellers = app.fast_users("seller", 4).await;
    let reader = app.user("reader").await;
    for i in 0..60 {
        create(&app, &sellers[i % 4], new_product(&format!("기존 {i}"), i as i64, &[])).await;
    }
    let writers: Vec<_> = sellers
        .iter()
        .cloned()
        .enumerate()
        .map(|(w, s)| {
            let mut c = api(&app);
            tokio::spawn(async move {
                for i in 0..15 {
                    c.create_product(s.req(new_product(&format!("새 {w}-{i}"), 1, &[]))).await.unwrap();
                }
            })
        })
        .collect();
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let req = pb::ListProductsRequest { page_size: 7, page_token: token.clone(), ..Default::default() };
        let (names, next) = list(&app, Some(&reader), req).await.unwrap();
        seen.extend(names);
        tokio::task::yield_now().await;
        if next.is_empty() {
            break;
        }
        token = next;
    }
    for w in writers {
        w.await.unwrap();
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no product twice");
    let old: Vec<&String> = seen.iter().filter(|n| n.starts_with("기존")).collect();
    assert_eq!(old.len(), 60, "every product that existed is seen once");
    let expected: Vec<String> = (0..60).rev().map(|i| format!("기존 {i}")).collect();
    assert_eq!(old.into_iter().cloned().collect::<Vec<_>>(), expected, "newest first");
}

/// 50 concurrent likes of one user make one row; 50 users make 50; unlikes likewise.
#[sqlx::test]
async fn likes_are_one_per_user_under_races(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let seller = app.user("seller").await;
    let p = create(&app, &seller, new_product("인기 상품", 1, &[])).await;
    let fan = app.user("fan").await;
    let like = |u: &TestUser| {
        let (mut c, r) =
            (api(&app), u.req(pb::LikeProductRequest { product_id: p.id.clone(), request_id: String::new() }));
        tokio::spawn(async move { c.like_product(r).await.unwrap().into_inner().created })
    };
    let created = futures::future::join_all((0..50).map(|_| like(&fan))).await;
    assert_eq!(created.into_iter().filter(|c| *c.as_ref().unwrap()).count(), 1);
    let users = app.fast_users("liker", 50).await;
    let created = futures::future::join_all(users.iter().map(like)).await;
    assert_eq!(created.into_iter().filter(|c| *c.as_ref().unwrap()).count(), 50);
    let rows: i64 = sqlx::query_scalar("select count(*) from product_likes").fetch_one(&app.state.db).await.unwrap();
    assert_eq!(rows, 51);
    let got = get(&app, Some(&fan), &p.id).await.unwrap();
    assert_eq!((got.like_count, got.liked_by_me), (51, true));
    let unlike = |u: &TestUser| {
        let (mut c, r) = (api(&app), u.req(pb::UnlikeProductRequest { product_id: p.id.clone() }));
        tokio::spawn(async move { c.unlike_product(r).await.unwrap().into_inner().removed })
    };
    let removed = futures::future::join_all((0..20).map(|_| unlike(&fan))).await;
    assert_eq!(removed.into_iter().filter(|c| *c.as_ref().unwrap()).count(), 1);
    assert_eq!(get(&app, None, &p.id).await.unwrap().like_count, 50);
    // A like with a request_id replays its first answer.
    let r = || fan.req(pb::LikeProductRequest { product_id: p.id.clone(), request_id: "like-1".into() });
    let first = api(&app).like_product(r()).await.unwrap().into_inner();
    let again = api(&app).like_product(r()).await.unwrap().into_inner();
    assert_eq!((first.created, again.created, again.like_count), (true, true, 51));
}

/// Concurrent edits naming the same etag: exactly one wins, the others are ABORTED.
#[sqlx::test]
async fn concurrent_edits_with_one_etag_let_exactly_one_win(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let seller = app.user("seller").await;
    let p = create(&app, &seller, new_product("경쟁", 1, &[])).await;
    let tasks = (0..20).map(|i| {
        let mut c = api(&app);
        let r = seller.req(pb::UpdateProductRequest {
            product_id: p.id.clone(),
            price: i,
            update_mask: mask(&["price"]),
            etag: p.etag.clone(),
            ..Default::default()
        });
        tokio::spawn(async move { c.update_product(r).await.map_err(|s| reason(&s)) })
    });
    let results = futures::future::join_all(tasks).await;
    let ok = results.iter().filter(|r| r.as_ref().unwrap().is_ok()).count();
    let aborted = results.iter().filter(|r| r.as_ref().unwrap().as_ref().is_err_and(|e| e == "ETAG_MISMATCH")).count();
    assert_eq!((ok, aborted), (1, 19));
    assert_eq!(get(&app, None, &p.id).await.unwrap().etag, "v2");
}

/// GetProduct counts a view once per viewer and day, through the platform's view counter.
#[sqlx::test]
async fn views_count_once_per_viewer_and_day(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let seller = app.user("seller").await;
    let p = create(&app, &seller, new_product("조회", 1, &[])).await;
    let viewers = app.fast_users("viewer", 5).await;
    for v in &viewers {
        for _ in 0..3 {
            get(&app, Some(v), &p.id).await.unwrap();
        }
    }
    maru::jobs::views::flush(&app.state).await.unwrap();
    assert_eq!(get(&app, None, &p.id).await.unwrap().view_count, 5);
}

#[sqlx::test]
async fn recommendations_rank_by_co_likes_and_tags_and_explain_why(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let seller = app.user("seller").await;
    let me = app.user("myself").await;
    let others = app.fast_users("other", 3).await;
    let liked = create(&app, &seller, new_product("캠핑 의자", 1, &["camping"])).await;
    let co = create(&app, &seller, new_product("전기 포트", 1, &["kitchen"])).await;
    let tagged = create(&app, &seller, new_product("캠핑 텐트", 1, &["camping"])).await;
    let both = create(&app, &seller, new_product("캠핑 랜턴", 1, &["camping"])).await;
    let suspended = create(&app, &seller, new_product("캠핑 칼", 1, &["camping"])).await;
    let mine = create(&app, &me, new_product("내 캠핑 의자", 1, &["camping"])).await;
    let admin = app.admin_user("boss").await;
    set_status(&app, &admin, &suspended.id, pb::ProductStatus::Suspended).await.unwrap();
    let like = |u: &TestUser, id: &str| {
        let mut c = api(&app);
        let r = u.req(pb::LikeProductRequest { product_id: id.into(), request_id: String::new() });
        async move { c.like_product(r).await.unwrap() }
    };
    like(&me, &liked.id).await;
    for o in &others {
        like(o, &liked.id).await;
        like(o, &co.id).await;
    }
    like(&others[0], &both.id).await;
    let rec = |who: Option<&TestUser>, product: &str| {
        let mut c = api(&app);
        let r = as_who(who, pb::RecommendProductsRequest { product_id: product.into(), page_size: 10 });
        async move { c.recommend_products(r).await.map(|r| r.into_inner().recommendations) }
    };
    let got = rec(Some(&me), "").await.unwrap();
    let names: Vec<&str> = got.iter().map(|r| r.product.as_ref().unwrap().name.as_str()).collect();
    // co: 3 co-likers (9); both: 1 co-liker + tag camping (the heaviest: 5) = 8; tagged: 5.
    assert_eq!(names, ["전기 포트", "캠핑 랜턴", "캠핑 텐트"], "own, liked and suspended products left out");
    assert_eq!((got[0].source, got[0].score, got[0].co_likers), (pb::RecommendationSource::CoLikes as i32, 9, 3));
    assert_eq!(got[0].co_liked_with, std::slice::from_ref(&liked.id));
    assert_eq!((got[1].source, got[1].score), (pb::RecommendationSource::TagsAndCoLikes as i32, 8));
    assert_eq!(
        (got[2].source, got[2].shared_tags.as_slice()),
        (pb::RecommendationSource::Tags as i32, &["camping".to_string()][..])
    );
    assert_eq!(rec(Some(&me), "").await.unwrap(), got, "deterministic");
    assert!(!got.iter().any(|r| r.product.as_ref().unwrap().id == mine.id));

    // Similar to a product, for anyone; anonymous "for me" needs a token.
    let similar = rec(None, &liked.id).await.unwrap();
    let names: Vec<&str> = similar.iter().map(|r| r.product.as_ref().unwrap().name.as_str()).collect();
    assert_eq!(names[..4], ["전기 포트", "캠핑 랜턴", "내 캠핑 의자", "캠핑 텐트"], "equal scores: newest first");
    assert_err(rec(None, "").await, Code::Unauthenticated, "TOKEN_MISSING");
    assert_err(rec(None, &suspended.id).await, Code::NotFound, "PRODUCT_NOT_FOUND");
    // Nothing to go on: the newest products on sale, said so.
    let newcomer = app.user("newcomer").await;
    let cold = rec(Some(&newcomer), "").await.unwrap();
    assert!(cold.iter().all(|r| r.source == pb::RecommendationSource::Newest as i32));
    assert_eq!(cold[0].product.as_ref().unwrap().id, mine.id);
    // A viewed product's tags count (weight 1) once viewed.
    get(&app, Some(&newcomer), &tagged.id).await.unwrap();
    let warm = rec(Some(&newcomer), "").await.unwrap();
    assert_eq!(warm[0].source, pb::RecommendationSource::Tags as i32);
    assert!(!warm.iter().any(|r| r.product.as_ref().unwrap().id == tagged.id), "viewed one is not recommended back");
}

/// Ranked lists are cached (docs/market.md#caching): other people's likes wait for the TTL, but
/// the caller's own likes and profile, the product's own edits and whatever makes a product
/// unfit (suspended, viewed, the reader's own) take effect at once.
#[sqlx::test]
async fn cached_recommendations_change_with_what_changes_them(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let seller = app.user("seller").await;
    let me = app.user("myself").await;
    let admin = app.admin_user("boss").await;
    let others = app.fast_users("other", 3).await;
    let seed = create(&app, &seller, new_product("캠핑 의자", 1, &["camping"])).await;
    let co = create(&app, &seller, new_product("전기 포트", 1, &["kitchen"])).await;
    let tent = create(&app, &seller, new_product("캠핑 텐트", 1, &["camping"])).await;
    let lamp = create(&app, &seller, new_product("캠핑 랜턴", 1, &["camping"])).await;
    let later = create(&app, &seller, new_product("믹서기", 1, &["blender"])).await;
    let like = |u: &TestUser, id: &str| {
        let mut c = api(&app);
        let r = u.req(pb::LikeProductRequest { product_id: id.into(), request_id: String::new() });
        async move { assert!(c.like_product(r).await.unwrap().into_inner().created) }
    };
    let rec = |who: Option<&TestUser>, product: &str| {
        let mut c = api(&app);
        let r = as_who(who, pb::RecommendProductsRequest { product_id: product.into(), page_size: 10 });
        async move {
            let got = c.recommend_products(r).await.unwrap().into_inner().recommendations;
            got.into_iter().map(|r| (r.product.unwrap().name, r.score)).collect::<Vec<_>>()
        }
    };
    let names = |got: &[(String, i64)]| got.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    like(&me, &seed.id).await;
    for o in &others {
        like(o, &seed.id).await;
        like(o, &co.id).await;
    }
    let first = rec(Some(&me), "").await;
    assert_eq!(names(&first[..3]), ["전기 포트", "캠핑 랜턴", "캠핑 텐트"]);
    assert_eq!(first[0].1, 9, "3 co-likers");

    // Other people's likes reach a cached list within the TTL, not at once.
    for o in &others {
        like(o, &later.id).await;
    }
    assert_eq!(rec(Some(&me), "").await, first, "served from the cache");
    // A product suspended since is dropped when the list is read; so is one just viewed.
    set_status(&app, &admin, &co.id, pb::ProductStatus::Suspended).await.unwrap();
    get(&app, Some(&me), &tent.id).await.unwrap();
    let now = names(&rec(Some(&me), "").await);
    assert_eq!(now[0], "캠핑 랜턴");
    assert!(!now.iter().any(|n| n == "전기 포트" || n == "캠핑 텐트"), "{now:?}");
    // The caller's own like ranks again at once: the three who liked the seed also liked `later`.
    like(&me, &lamp.id).await;
    let after = rec(Some(&me), "").await;
    assert_eq!(after[0], ("믹서기".to_string(), 9), "{after:?}");
    assert!(!names(&after).iter().any(|n| n == "캠핑 랜턴"), "liked products are not recommended");

    // Similar lists are shared by every reader and ranked again when the product changes.
    let similar = rec(None, &seed.id).await;
    assert!(similar.iter().any(|(n, s)| n == "캠핑 랜턴" && *s >= 5), "{similar:?}");
    let edit = pb::UpdateProductRequest {
        product_id: seed.id.clone(),
        tags: vec!["바베큐".into()],
        update_mask: mask(&["tags"]),
        ..Default::default()
    };
    api(&app).update_product(seller.req(edit)).await.unwrap();
    let edited = rec(None, &seed.id).await;
    assert!(!edited.iter().any(|(n, s)| n == "캠핑 텐트" && *s > 0), "no camping tag to share any more: {edited:?}");
    // The list is cached for every reader, but nobody is recommended their own products: every
    // product here is the seller's.
    assert!(!rec(Some(&me), &seed.id).await.is_empty());
    assert_eq!(rec(Some(&seller), &seed.id).await, vec![]);
}

// ---- authorization matrix

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    Anonymous,
    Other,
    Seller,
    Admin,
}

const RPCS: [&str; 11] = [
    "CreateProduct",
    "GetProduct",
    "UpdateProduct",
    "DeleteProduct",
    "SetProductStatus",
    "ListProducts",
    "ListUserProducts",
    "LikeProduct",
    "UnlikeProduct",
    "RecommendProducts",
    "SuspendProduct",
];

/// What `who` gets from `rpc` on a fresh product: `"OK"` or the reason. `SuspendProduct` is
/// SetProductStatus to SUSPENDED.
fn expected(rpc: &str, who: Caller) -> &'static str {
    use Caller::*;
    match (rpc, who) {
        ("GetProduct" | "ListProducts" | "ListUserProducts" | "RecommendProducts", _) => "OK",
        (_, Anonymous) => "TOKEN_MISSING",
        ("CreateProduct" | "LikeProduct" | "UnlikeProduct", _) => "OK",
        ("UpdateProduct", Seller) => "OK",
        ("UpdateProduct", _) => "PRODUCT_OWNER_REQUIRED",
        ("DeleteProduct" | "SetProductStatus", Seller | Admin) => "OK",
        ("DeleteProduct" | "SetProductStatus", _) => "PRODUCT_OWNER_REQUIRED",
        ("SuspendProduct", Admin) => "OK",
        ("SuspendProduct", _) => "ADMIN_REQUIRED",
        _ => unreachable!("{rpc}"),
    }
}

/// Every ProductService RPC × every kind of caller, each cell on a fresh product.
#[sqlx::test]
async fn authorization_matrix(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let seller = app.user("seller").await;
    let other = app.user("other").await;
    let admin = app.admin_user("boss").await;
    let mut failures = Vec::new();
    for &rpc in &RPCS {
        for who in [Caller::Anonymous, Caller::Other, Caller::Seller, Caller::Admin] {
            let p = create(&app, &seller, new_product("매트릭스", 1, &["x"])).await;
            let user = match who {
                Caller::Anonymous => None,
                Caller::Other => Some(&other),
                Caller::Seller => Some(&seller),
                Caller::Admin => Some(&admin),
            };
            let mut c = api(&app);
            let id = p.id.clone();
            let r: Result<(), Status> = match rpc {
                "CreateProduct" => c.create_product(as_who(user, new_product("새 상품", 1, &[]))).await.map(|_| ()),
                "GetProduct" => c.get_product(as_who(user, pb::GetProductRequest { product_id: id })).await.map(|_| ()),
                "UpdateProduct" => c
                    .update_product(as_who(
                        user,
                        pb::UpdateProductRequest {
                            product_id: id,
                            price: 5,
                            update_mask: mask(&["price"]),
                            ..Default::default()
                        },
                    ))
                    .await
                    .map(|_| ()),
                "DeleteProduct" => {
                    c.delete_product(as_who(user, pb::DeleteProductRequest { product_id: id })).await.map(|_| ())
                }
                "SetProductStatus" | "SuspendProduct" => {
                    let s = if rpc == "SetProductStatus" {
                        pb::ProductStatus::SoldOut
                    } else {
                        pb::ProductStatus::Suspended
                    };
                    c.set_product_status(as_who(user, pb::SetProductStatusRequest { product_id: id, status: s as i32 }))
                        .await
                        .map(|_| ())
                }
                "ListProducts" => c.list_products(as_who(user, pb::ListProductsRequest::default())).await.map(|_| ()),
                "ListUserProducts" => c
                    .list_user_products(as_who(
                        user,
                        pb::ListUserProductsRequest { handle: "seller".into(), ..Default::default() },
                    ))
                    .await
                    .map(|_| ()),
                "LikeProduct" => c
                    .like_product(as_who(user, pb::LikeProductRequest { product_id: id, request_id: String::new() }))
                    .await
                    .map(|_| ()),
                "UnlikeProduct" => {
                    c.unlike_product(as_who(user, pb::UnlikeProductRequest { product_id: id })).await.map(|_| ())
                }
                "RecommendProducts" => c
                    .recommend_products(as_who(user, pb::RecommendProductsRequest { product_id: id, page_size: 5 }))
                    .await
                    .map(|_| ()),
                _ => unreachable!(),
            };
            let got = match &r {
                Ok(()) => "OK".to_owned(),
                Err(s) => reason(s),
            };
            if got != expected(rpc, who) {
                failures.push(format!("{rpc} as {who:?}: expected {}, got {got} ({r:?})", expected(rpc, who)));
            }
        }
    }
    assert!(failures.is_empty(), "{} cells differ:\n{}", failures.len(), failures.join("\n"));
    // A suspended product is NOT_FOUND to others for every RPC naming it.
    let p = create(&app, &seller, new_product("숨김", 1, &[])).await;
    set_status(&app, &admin, &p.id, pb::ProductStatus::Suspended).await.unwrap();
    let mut c = api(&app);
    let like = other.req(pb::LikeProductRequest { product_id: p.id.clone(), request_id: String::new() });
    assert_err(c.like_product(like).await, Code::NotFound, "PRODUCT_NOT_FOUND");
    let del = other.req(pb::DeleteProductRequest { product_id: p.id.clone() });
    assert_err(c.delete_product(del).await, Code::NotFound, "PRODUCT_NOT_FOUND");
}
