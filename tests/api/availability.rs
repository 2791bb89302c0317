//! Availability under hostile clients (issue 14 points 4 and 5): the per-address connection
//! cap, the handshake timeout, SETTINGS_MAX_CONCURRENT_STREAMS, the send timeout of responses
//! a client never takes, and the cap on health/reflection streams.

use std::time::Duration;

use bytes::Bytes;
use sqlx::PgPool;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_types::StatusExt;

use crate::helpers::*;

/// Waits until the server closes `stream` (EOF or reset); `false` if it is still open after
/// `limit` (a hang guard only).
async fn closed_by_server(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(limit, stream.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) => closed_by_server_after_data(stream, limit).await,
        Err(_) => false,
    }
}

async fn closed_by_server_after_data(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[sqlx::test]
async fn connections_beyond_the_per_address_cap_are_closed_at_once(pool: PgPool) {
    let app = TestApp::spawn_with(pool, |s| {
        s.grpc.max_connections_per_address = 4;
        s.grpc.handshake_timeout_ms = 60_000;
    })
    .await;
    // The test's channel holds one connection; three silent ones fill the cap.
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(TcpStream::connect(app.grpc_addr).await.unwrap());
    }
    // Give the server the time to accept them.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut over = TcpStream::connect(app.grpc_addr).await.unwrap();
    assert!(closed_by_server(&mut over, Duration::from_secs(5)).await, "the fifth connection is closed");
    // The connection already open keeps working.
    app.health().check(HealthCheckRequest { service: String::new() }).await.unwrap();
    // Once the silent ones go, new connections are admitted again.
    drop(silent);
    let mut admitted = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let channel = tonic::transport::Channel::from_shared(format!("http://{}", app.grpc_addr)).unwrap();
        let Ok(channel) = channel.connect().await else { continue };
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        if health.check(HealthCheckRequest { service: String::new() }).await.is_ok() {
            admitted = true;
            break;
        }
    }
    assert!(admitted, "a new connection is admitted once the silent ones closed");
    let metrics = app.metrics().await;
    assert!(metrics.contains("maru_grpc_connections_total{outcome=\"rejected_address_limit\"}"), "{metrics}");
    assert!(metrics.contains("# HELP maru_grpc_connections "), "{metrics}");
}

#[sqlx::test]
async fn trusted_proxies_are_not_capped(pool: PgPool) {
    let app = TestApp::spawn_with(pool, |s| {
        s.grpc.max_connections_per_address = 1;
        s.rate_limit.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let _others: Vec<TcpStream> = futures::future::join_all((0..3).map(|_| TcpStream::connect(app.grpc_addr)))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let channel =
        tonic::transport::Channel::from_shared(format!("http://{}", app.grpc_addr)).unwrap().connect().await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    health.check(HealthCheckRequest { service: String::new() }).await.unwrap();
}

#[sqlx::test]
async fn silent_connections_are_closed_after_the_handshake_timeout(pool: PgPool) {
    let app = TestApp::spawn_with(pool, |s| s.grpc.handshake_timeout_ms = 300).await;
    let mut silent = TcpStream::connect(app.grpc_addr).await.unwrap();
    assert!(closed_by_server(&mut silent, Duration::from_secs(10)).await, "a silent connection is closed");
    // A client that speaks keeps its connection past the timeout.
    tokio::time::sleep(Duration::from_millis(600)).await;
    app.health().check(HealthCheckRequest { service: String::new() }).await.unwrap();
    let metrics = app.metrics().await;
    assert!(metrics.contains("maru_grpc_connections_closed_total{reason=\"handshake_timeout\"}"), "{metrics}");
}

/// A raw HTTP/2 connection with the given initial stream window, driven in the background;
/// the returned receiver fires when the server ends the connection.
async fn raw_h2(
    addr: std::net::SocketAddr,
    window: u32,
) -> (h2::client::SendRequest<Bytes>, usize, tokio::sync::oneshot::Receiver<()>) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (client, mut conn) = h2::client::Builder::new().initial_window_size(window).handshake(tcp).await.unwrap();
    // Let the server's SETTINGS arrive.
    let _ = tokio::time::timeout(Duration::from_millis(300), &mut conn).await;
    let max_streams = conn.max_concurrent_send_streams();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let _ = conn.await;
        let _ = tx.send(());
    });
    (client, max_streams, rx)
}

/// Sends a Health/Check for the whole server on `client` (an empty request message).
async fn health_check_request(client: &mut h2::client::SendRequest<Bytes>) -> h2::client::ResponseFuture {
    let request = http::Request::post("/grpc.health.v1.Health/Check")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let ready = client.clone().ready().await.unwrap();
    *client = ready;
    let (response, mut body) = client.send_request(request, false).unwrap();
    body.send_data(Bytes::from_static(&[0, 0, 0, 0, 0]), true).unwrap();
    response
}

#[sqlx::test]
async fn max_concurrent_streams_is_advertised(pool: PgPool) {
    let app = TestApp::spawn_with(pool, |s| s.grpc.max_concurrent_streams = 7).await;
    let (_client, max_streams, _closed) = raw_h2(app.grpc_addr, 65_535).await;
    assert_eq!(max_streams, 7);
}

#[sqlx::test]
async fn a_response_its_client_never_takes_closes_the_connection_after_the_send_timeout(pool: PgPool) {
    let app = TestApp::spawn_with(pool, |s| s.grpc.response_send_timeout_ms = 300).await;
    // Window 0: the client never takes a byte of any response body.
    let (mut client, _, closed) = raw_h2(app.grpc_addr, 0).await;
    let mut responses = Vec::new();
    for _ in 0..5 {
        responses.push(health_check_request(&mut client).await);
    }
    tokio::time::timeout(Duration::from_secs(10), closed).await.expect("the server closes the connection").unwrap();
    let metrics = app.metrics().await;
    assert!(metrics.contains("maru_grpc_connections_closed_total{reason=\"send_timeout\"}"), "{metrics}");
    // Clients that read are not affected.
    app.health().check(HealthCheckRequest { service: String::new() }).await.unwrap();
}

#[sqlx::test]
async fn health_watch_streams_are_capped_per_client_address(pool: PgPool) {
    let app = TestApp::spawn_with(pool, |s| s.grpc.max_streams_per_address = 2).await;
    let mut health = app.health();
    let watch = || HealthCheckRequest { service: String::new() };
    let first = health.watch(watch()).await.unwrap().into_inner();
    let _second = health.watch(watch()).await.unwrap().into_inner();
    let refused = health.watch(watch()).await;
    let status = assert_err(refused.map(|_| ()), Code::ResourceExhausted, "CAPACITY_EXCEEDED");
    assert!(status.get_details_retry_info().is_some(), "{status:?}");
    // Unary checks are not streams: still answered.
    health.check(watch()).await.unwrap();
    // Closing a stream gives its slot back.
    drop(first);
    let mut reopened = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if health.watch(watch()).await.is_ok() {
            reopened = true;
            break;
        }
    }
    assert!(reopened, "a stream can be opened once another closed");
}

/// Outcomes of a search flood and of the cheap calls made during it.
struct Flood {
    searches: std::collections::BTreeMap<String, usize>,
    cheap_failures: Vec<String>,
    cheap_calls: usize,
}

/// `flooders` anonymous clients search posts for "가나다" while another user makes cheap
/// calls — posts and reads — one after another. Every post has the bigrams 가나 and 나다 but
/// not the word: the index returns every row as a candidate and each search rechecks them all
/// (the hostile case of a bigram index).
async fn search_flood(app: &TestApp, flooders: usize) -> Flood {
    use maru::grpc::pb;
    use maru::grpc::pb::feed_service_client::FeedServiceClient;
    let user = app.user("cheap").await;
    let author = app.user("author").await;
    sqlx::query(
        "insert into posts (id, author_id, text, created_at)
         select gen_random_uuid(), $1::uuid,
                '가나 나다 ' || (select string_agg(chr(44032 + ((g * 7 + s * 13) % 2000)), '') from generate_series(1, 60) s),
                now() - g * interval '1 second'
           from generate_series(1, 20000) g",
    )
    .bind(&author.id)
    .execute(&app.state.db)
    .await
    .unwrap();
    sqlx::query("analyze posts").execute(&app.state.db).await.unwrap();

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood: Vec<_> = (0..flooders)
        .map(|_| {
            let (channel, stop) = (app.channel.clone(), stop.clone());
            tokio::spawn(async move {
                let mut seen = std::collections::BTreeMap::<String, usize>::new();
                let mut feed = FeedServiceClient::new(channel);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let req = pb::ListPostsRequest { query: "가나다".into(), page_size: 100, ..Default::default() };
                    let label = match feed.list_posts(req).await {
                        Ok(_) => "OK".to_owned(),
                        Err(s) => format!("{:?} {}", s.code(), reason(&s)),
                    };
                    *seen.entry(label).or_default() += 1;
                }
                seen
            })
        })
        .collect();
    // Let the flood fill up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut feed = FeedServiceClient::new(app.channel.clone());
    let mut cheap_failures = Vec::new();
    let mut cheap_calls = 0;
    for i in 0..10 {
        let create = pb::CreatePostRequest {
            public: true,
            text: format!("cheap {i}"),
            request_id: format!("cheap-{i}"),
            ..Default::default()
        };
        let r = feed.create_post(user.req(create)).await;
        cheap_calls += 1;
        let post = match r {
            Ok(r) => r.into_inner().post.unwrap(),
            Err(s) => {
                cheap_failures.push(format!("CreatePost {:?} {}", s.code(), reason(&s)));
                continue;
            }
        };
        let r = feed.get_post(user.req(pb::GetPostRequest { post_id: post.id })).await;
        cheap_calls += 1;
        if let Err(s) = r {
            cheap_failures.push(format!("GetPost {:?} {}", s.code(), reason(&s)));
        }
        let list = pb::ListPostsRequest { author_handle: user.handle.clone(), page_size: 10, ..Default::default() };
        let r = feed.list_posts(user.req(list)).await;
        cheap_calls += 1;
        if let Err(s) = r {
            cheap_failures.push(format!("ListPosts(author) {:?} {}", s.code(), reason(&s)));
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut searches = std::collections::BTreeMap::new();
    for task in flood {
        for (k, v) in task.await.unwrap() {
            *searches.entry(k).or_default() += v;
        }
    }
    Flood { searches, cheap_failures, cheap_calls }
}

/// The server for a flood: a pool of 10 whose acquire gives up after 300 ms (UNAVAILABLE), as
/// a loaded deployment's does, with `expensive` of them for searches.
async fn flood_app(pool: PgPool, expensive: usize) -> TestApp {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(10)
        .acquire_timeout(Duration::from_millis(300))
        .connect_with((*pool.connect_options()).clone())
        .await
        .unwrap();
    TestApp::spawn_with(pool, |s| {
        s.database.max_connections = 10;
        s.database.max_expensive_reads = expensive;
    })
    .await
}

/// `FLOOD_EXPENSIVE_READS=10` (the whole pool, as before the bulkhead) reproduces the outage:
/// cheap calls fail with UNAVAILABLE `DATABASE_UNAVAILABLE`.
#[sqlx::test]
async fn a_search_flood_leaves_the_cheap_calls_of_other_users_ok(pool: PgPool) {
    let expensive = std::env::var("FLOOD_EXPENSIVE_READS").ok().and_then(|v| v.parse().ok()).unwrap_or(2);
    let app = flood_app(pool, expensive).await;
    let flood = search_flood(&app, 40).await;
    eprintln!("searches: {:?}; cheap calls failed: {:?}", flood.searches, flood.cheap_failures);
    assert!(
        flood.cheap_failures.is_empty(),
        "{} of {} cheap calls failed: {:?}; searches: {:?}",
        flood.cheap_failures.len(),
        flood.cheap_calls,
        flood.cheap_failures,
        flood.searches
    );
    // The flood itself got answers or the bulkhead's refusal (with RetryInfo), nothing else.
    for label in flood.searches.keys() {
        assert!(label == "OK" || label == "ResourceExhausted CAPACITY_EXCEEDED", "{:?}", flood.searches);
    }
    assert!(flood.searches.contains_key("ResourceExhausted CAPACITY_EXCEEDED"), "{:?}", flood.searches);
}

/// A COMMIT whose connection broke is answered by what PostgreSQL says of its transaction
/// (`maru::db::commit`): `resolve_commit` reads `txid_status` — committed, aborted, or not known
/// in time while the transaction is still open.
#[sqlx::test]
async fn a_broken_commit_is_resolved_from_the_transaction_status(pool: PgPool) {
    let until = || std::time::Instant::now() + Duration::from_secs(2);
    sqlx::query("create table resolve_probe (x int)").execute(&pool).await.unwrap();
    const XID: &str = "insert into resolve_probe values (1) returning txid_current()";

    let mut tx = pool.begin().await.unwrap();
    let committed = sqlx::query_scalar::<_, i64>(XID).fetch_one(&mut *tx).await.unwrap();
    maru::db::commit(&pool, tx).await.unwrap();
    assert_eq!(maru::db::resolve_commit(&pool, committed, until()).await, Some(true));

    let mut tx = pool.begin().await.unwrap();
    let aborted = sqlx::query_scalar::<_, i64>(XID).fetch_one(&mut *tx).await.unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(maru::db::resolve_commit(&pool, aborted, until()).await, Some(false));

    // Still in progress: not known before the deadline.
    let mut open = pool.begin().await.unwrap();
    let running = sqlx::query_scalar::<_, i64>(XID).fetch_one(&mut *open).await.unwrap();
    let short = std::time::Instant::now() + Duration::from_millis(300);
    assert_eq!(maru::db::resolve_commit(&pool, running, short).await, None);
    open.rollback().await.unwrap();

    // A transaction whose backend was terminated before COMMIT wrote nothing: UNAVAILABLE.
    let mut tx = pool.begin().await.unwrap();
    let pid: i32 = sqlx::query_scalar("select pg_backend_pid()").fetch_one(&mut *tx).await.unwrap();
    sqlx::query_scalar::<_, i64>(XID).fetch_one(&mut *tx).await.unwrap();
    sqlx::query("select pg_terminate_backend($1)").bind(pid).execute(&pool).await.unwrap();
    let err = maru::db::commit(&pool, tx).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    let rows: i64 = sqlx::query_scalar("select count(*) from resolve_probe").fetch_one(&pool).await.unwrap();
    assert_eq!(rows, 1);
}
