//! FeedService: posts, comments and replies, likes, search, home feed, authorization,
//! suspension, view counting and caching.

use maru::grpc::pb;
use maru::grpc::pb::feed_service_client::FeedServiceClient;
use maru::grpc::pb::social_service_client::SocialServiceClient;
use prost_types::FieldMask;
use sqlx::PgPool;
use tonic::transport::Channel;
use tonic::{Code, Request};
use uuid::Uuid;

use crate::helpers::{TestApp, TestUser, assert_err, reason, violations};

fn feed(app: &TestApp) -> FeedServiceClient<Channel> {
    FeedServiceClient::new(app.channel.clone())
}

fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask { paths: paths.iter().map(|p| p.to_string()).collect() })
}

/// A community with an author, a plain member, a manager, an outsider and an admin.
struct Fx {
    app: TestApp,
    community: String,
    author: TestUser,
    member: TestUser,
    manager: TestUser,
    outsider: TestUser,
    admin: TestUser,
}

impl Fx {
    async fn new(pool: PgPool) -> Self {
        let app = TestApp::spawn(pool).await;
        Self::with(app).await
    }

    async fn with(app: TestApp) -> Self {
        let community = app.community("APARTMENT", "판교 푸르지오").await;
        let mut users = app.fast_users("fx", 4).await.into_iter();
        let (author, member, manager, outsider) =
            (users.next().unwrap(), users.next().unwrap(), users.next().unwrap(), users.next().unwrap());
        app.add_member(&community, &author, "APPROVED", "MEMBER").await;
        app.add_member(&community, &member, "APPROVED", "MEMBER").await;
        app.add_member(&community, &manager, "APPROVED", "MANAGER").await;
        app.add_member(&community, &outsider, "PENDING", "MEMBER").await;
        let admin = app.admin_user("feedadmin").await;
        Self { app, community, author, member, manager, outsider, admin }
    }

    fn feed(&self) -> FeedServiceClient<Channel> {
        feed(&self.app)
    }

    async fn post(&self, who: &TestUser, community: bool, text: &str, tags: &[&str]) -> pb::Post {
        self.feed()
            .create_post(who.req(pb::CreatePostRequest {
                community_id: if community { self.community.clone() } else { String::new() },
                public: !community,
                text: text.into(),
                tags: tags.iter().map(|t| t.to_string()).collect(),
                image_urls: vec!["https://img.example/1.jpg".into()],
                request_id: String::new(),
                media_ids: vec![],
            }))
            .await
            .expect("create post")
            .into_inner()
            .post
            .unwrap()
    }

    async fn get(&self, who: Option<&TestUser>, id: &str) -> Result<pb::Post, tonic::Status> {
        let msg = pb::GetPostRequest { post_id: id.into() };
        let req = match who {
            Some(u) => u.req(msg),
            None => Request::new(msg),
        };
        self.feed().get_post(req).await.map(|r| r.into_inner().post.unwrap())
    }

    async fn community_page(&self, who: &TestUser) -> Vec<pb::Post> {
        self.feed()
            .list_posts(who.req(pb::ListPostsRequest { community_id: self.community.clone(), ..Default::default() }))
            .await
            .expect("list")
            .into_inner()
            .posts
    }

    async fn comment(&self, who: &TestUser, post: &str, parent: &str, text: &str) -> pb::Comment {
        self.feed()
            .create_comment(who.req(pb::CreateCommentRequest {
                post_id: post.into(),
                parent_id: parent.into(),
                text: text.into(),
                request_id: String::new(),
            }))
            .await
            .expect("comment")
            .into_inner()
            .comment
            .unwrap()
    }

    async fn rows(&self, sql: &str, id: &str) -> i64 {
        let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql.to_owned()))
            .bind(Uuid::parse_str(id).unwrap())
            .fetch_one(&self.app.state.db)
            .await
            .unwrap();
        n
    }
}

fn like_post(id: &str) -> pb::LikeRequest {
    pb::LikeRequest { post_id: id.into(), comment_id: String::new(), ..Default::default() }
}

#[sqlx::test]
async fn community_posts_are_for_members_and_public_posts_for_everyone(pool: PgPool) {
    let fx = Fx::new(pool).await;
    let public = fx.post(&fx.author, false, "누구나 보는 글", &[]).await;
    let inside = fx.post(&fx.author, true, "우리 단지 주민만", &["공지"]).await;
    assert_eq!(inside.community_id, fx.community);
    assert_eq!(inside.author.as_ref().unwrap().user_id, fx.author.id);
    assert_eq!((inside.like_count, inside.comment_count, inside.etag.as_str()), (0, 0, "v1"));

    // Public: anyone, anonymous included.
    assert_eq!(fx.get(None, &public.id).await.unwrap().text, "누구나 보는 글");
    assert_eq!(fx.get(Some(&fx.outsider), &public.id).await.unwrap().id, public.id);
    // Community: members and admins; others cannot tell it exists.
    assert_eq!(fx.get(Some(&fx.member), &inside.id).await.unwrap().text, "우리 단지 주민만");
    assert!(fx.get(Some(&fx.admin), &inside.id).await.is_ok());
    assert_err(fx.get(Some(&fx.outsider), &inside.id).await, Code::NotFound, "POST_NOT_FOUND");
    assert_err(fx.get(None, &inside.id).await, Code::NotFound, "POST_NOT_FOUND");
    assert_err(fx.get(None, &Uuid::now_v7().to_string()).await, Code::NotFound, "POST_NOT_FOUND");

    // The community feed.
    let list = |who: Option<&TestUser>| {
        let msg = pb::ListPostsRequest { community_id: fx.community.clone(), ..Default::default() };
        match who {
            Some(u) => u.req(msg),
            None => Request::new(msg),
        }
    };
    assert_eq!(fx.community_page(&fx.member).await.len(), 1);
    assert_err(fx.feed().list_posts(list(Some(&fx.outsider))).await, Code::PermissionDenied, "MEMBERSHIP_REQUIRED");
    assert_err(fx.feed().list_posts(list(None)).await, Code::Unauthenticated, "TOKEN_MISSING");
    let unknown = pb::ListPostsRequest { community_id: Uuid::now_v7().to_string(), ..Default::default() };
    assert_err(fx.feed().list_posts(fx.member.req(unknown)).await, Code::NotFound, "COMMUNITY_NOT_FOUND");

    // Writing into a community needs membership; anonymous callers write nothing.
    let req =
        pb::CreatePostRequest { community_id: fx.community.clone(), text: "끼어들기".into(), ..Default::default() };
    assert_err(
        fx.feed().create_post(fx.outsider.req(req.clone())).await,
        Code::PermissionDenied,
        "MEMBERSHIP_REQUIRED",
    );
    assert_err(fx.feed().create_post(Request::new(req)).await, Code::Unauthenticated, "TOKEN_MISSING");
    // Comments and likes on a hidden post are NOT_FOUND.
    assert_err(
        fx.feed()
            .create_comment(fx.outsider.req(pb::CreateCommentRequest {
                post_id: inside.id.clone(),
                text: "몰래".into(),
                ..Default::default()
            }))
            .await,
        Code::NotFound,
        "POST_NOT_FOUND",
    );
    assert_err(fx.feed().like(fx.outsider.req(like_post(&inside.id))).await, Code::NotFound, "POST_NOT_FOUND");
    assert_err(
        fx.feed()
            .list_comments(Request::new(pb::ListCommentsRequest { post_id: inside.id.clone(), ..Default::default() }))
            .await,
        Code::NotFound,
        "POST_NOT_FOUND",
    );
}

#[sqlx::test]
async fn create_is_idempotent_per_request_id(pool: PgPool) {
    let fx = Fx::new(pool).await;
    let req = pb::CreatePostRequest {
        public: true,
        text: "한 번만".into(),
        request_id: "post-1".into(),
        ..Default::default()
    };
    let a = fx.feed().create_post(fx.author.req(req.clone())).await.unwrap().into_inner().post.unwrap();
    let b = fx.feed().create_post(fx.author.req(req.clone())).await.unwrap().into_inner().post.unwrap();
    assert_eq!(a.id, b.id);
    let other = pb::CreatePostRequest { text: "다른 글".into(), ..req };
    assert_err(fx.feed().create_post(fx.author.req(other)).await, Code::InvalidArgument, "REQUEST_ID_REUSED");
}

#[sqlx::test]
async fn invalid_input_names_every_bad_field(pool: PgPool) {
    let fx = Fx::new(pool).await;
    let mut f = fx.feed();
    let u = &fx.author;
    let s = assert_err(
        f.create_post(u.req(pb::CreatePostRequest::default())).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violations(&s), ["community_id", "text"]);
    let s = assert_err(
        f.create_post(u.req(pb::CreatePostRequest {
            community_id: "not-a-uuid".into(),
            public: true,
            text: "가".repeat(5001),
            tags: vec!["two words".into()],
            image_urls: vec!["javascript:alert(1)".into()],
            request_id: "bad id!".into(),
            media_ids: vec!["nope".into()],
        }))
        .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violations(&s), ["community_id", "public", "text", "tags", "image_urls", "media_ids[0]", "request_id"]);
    let post = fx.post(u, false, "원문", &[]).await;
    let s = assert_err(
        f.update_post(u.req(pb::UpdatePostRequest {
            post_id: post.id.clone(),
            text: " ".into(),
            update_mask: mask(&["text", "status"]),
            etag: "bogus".into(),
            ..Default::default()
        }))
        .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violations(&s), ["update_mask", "text", "etag"]);
    for (req, field) in [
        (pb::ListPostsRequest::default(), "community_id"),
        (pb::ListPostsRequest { query: "판".into(), ..Default::default() }, "query"),
        (pb::ListPostsRequest { tag: "a b".into(), ..Default::default() }, "tag"),
        (pb::ListPostsRequest { author_handle: "X!".into(), ..Default::default() }, "author_handle"),
        (pb::ListPostsRequest { tag: "a".into(), query: "판교".into(), ..Default::default() }, "query"),
        (pb::ListPostsRequest { community_id: "1".into(), ..Default::default() }, "community_id"),
        (pb::ListPostsRequest { tag: "a".into(), page_size: -1, ..Default::default() }, "page_size"),
        (pb::ListPostsRequest { tag: "a".into(), page_token: "x.y".into(), ..Default::default() }, "page_token"),
    ] {
        let s = f.list_posts(u.req(req.clone())).await.expect_err("invalid");
        assert_eq!(s.code(), Code::InvalidArgument, "{req:?}");
        assert_eq!(violations(&s), [field], "{req:?}");
    }
    for (p, c, field) in [("", "", "post_id"), (post.id.as_str(), post.id.as_str(), "comment_id"), ("x", "", "post_id")]
    {
        let s = f
            .like(u.req(pb::LikeRequest { post_id: p.into(), comment_id: c.into(), ..Default::default() }))
            .await
            .unwrap_err();
        assert_eq!((s.code(), violations(&s)), (Code::InvalidArgument, vec![field.to_string()]));
        let s = f.unlike(u.req(pb::UnlikeRequest { post_id: p.into(), comment_id: c.into() })).await.unwrap_err();
        assert_eq!(s.code(), Code::InvalidArgument);
        let s = f
            .list_likers(u.req(pb::ListLikersRequest { post_id: p.into(), comment_id: c.into(), ..Default::default() }))
            .await
            .unwrap_err();
        assert_eq!(s.code(), Code::InvalidArgument);
    }
    let s = f
        .create_comment(u.req(pb::CreateCommentRequest {
            post_id: "x".into(),
            parent_id: "y".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(violations(&s), ["post_id", "parent_id", "text"]);
    let s = f.update_comment(u.req(pb::UpdateCommentRequest::default())).await.unwrap_err();
    assert_eq!(violations(&s), ["comment_id", "text"]);
    let s = f.delete_comment(u.req(pb::DeleteCommentRequest::default())).await.unwrap_err();
    assert_eq!(violations(&s), ["comment_id"]);
    let s = f.get_post(u.req(pb::GetPostRequest { post_id: "nope".into() })).await.unwrap_err();
    assert_eq!(violations(&s), ["post_id"]);
    let s = f.delete_post(u.req(pb::DeletePostRequest::default())).await.unwrap_err();
    assert_eq!(violations(&s), ["post_id"]);
    let s = f
        .set_post_status(fx.admin.req(pb::SetPostStatusRequest { post_id: post.id.clone(), status: 0 }))
        .await
        .unwrap_err();
    assert_eq!(violations(&s), ["status"]);
    let s = f
        .list_comments(u.req(pb::ListCommentsRequest {
            post_id: post.id.clone(),
            parent_id: "z".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(violations(&s), ["parent_id"]);
    let s = f.list_home_feed(u.req(pb::ListHomeFeedRequest { page_size: -5, ..Default::default() })).await.unwrap_err();
    assert_eq!(violations(&s), ["page_size"]);
}

#[sqlx::test]
async fn only_the_author_edits_and_a_stale_etag_is_aborted(pool: PgPool) {
    let fx = Fx::new(pool).await;
    let post = fx.post(&fx.author, true, "처음 글", &["a"]).await;
    let edit = |etag: &str, text: &str| pb::UpdatePostRequest {
        post_id: post.id.clone(),
        text: text.into(),
        tags: vec!["B".into(), "#c".into()],
        image_urls: vec![],
        update_mask: mask(&["text", "tags"]),
        etag: etag.into(),
        media_ids: vec![],
    };
    let v2 =
        fx.feed().update_post(fx.author.req(edit(&post.etag, "고친 글"))).await.unwrap().into_inner().post.unwrap();
    assert_eq!(
        (v2.text.as_str(), v2.tags.clone(), v2.etag.as_str()),
        ("고친 글", vec!["b".to_string(), "c".into()], "v2")
    );
    assert_eq!(v2.image_urls.len(), 1, "not in the mask: unchanged");
    let s = assert_err(
        fx.feed().update_post(fx.author.req(edit(&post.etag, "늦은 수정"))).await,
        Code::Aborted,
        "ETAG_MISMATCH",
    );
    assert_eq!(s.get_details_error_info_meta("etag"), Some("v2".to_string()));
    // Without an etag the edit is unconditional.
    fx.feed().update_post(fx.author.req(edit("", "세 번째"))).await.unwrap();
    // Nobody else edits, not even a manager or an admin.
    for who in [&fx.member, &fx.manager, &fx.admin] {
        assert_err(
            fx.feed().update_post(who.req(edit("", "남의 글"))).await,
            Code::PermissionDenied,
            "POST_AUTHOR_REQUIRED",
        );
    }
    assert_err(fx.feed().update_post(fx.outsider.req(edit("", "x"))).await, Code::NotFound, "POST_NOT_FOUND");
    assert_eq!(fx.get(Some(&fx.member), &post.id).await.unwrap().text, "세 번째");
}

trait MetaExt {
    fn get_details_error_info_meta(&self, key: &str) -> Option<String>;
}

impl MetaExt for tonic::Status {
    fn get_details_error_info_meta(&self, key: &str) -> Option<String> {
        use tonic_types::StatusExt;
        self.get_details_error_info().and_then(|i| i.metadata.get(key).cloned())
    }
}

#[sqlx::test]
async fn delete_authorization_matrix(pool: PgPool) {
    let fx = Fx::new(pool).await;
    // (who deletes, allowed?) for a community post of `author`.
    for (who, allowed) in
        [(&fx.member, false), (&fx.outsider, false), (&fx.author, true), (&fx.manager, true), (&fx.admin, true)]
    {
        let post = fx.post(&fx.author, true, "지울 글", &[]).await;
        let r = fx.feed().delete_post(who.req(pb::DeletePostRequest { post_id: post.id.clone() })).await;
        match (allowed, r) {
            (true, Ok(_)) => {
                assert_err(fx.get(Some(&fx.author), &post.id).await, Code::NotFound, "POST_NOT_FOUND");
            }
            (false, Err(s)) if who.id == fx.outsider.id => assert_eq!(s.code(), Code::NotFound),
            (false, Err(s)) => {
                assert_eq!(
                    (s.code(), crate::helpers::reason(&s).as_str()),
                    (Code::PermissionDenied, "POST_AUTHOR_REQUIRED")
                )
            }
            (a, r) => panic!("{} allowed={a}: {r:?}", who.handle),
        }
    }
    // A public post: its author or an admin; a community manager has no say.
    for (who, allowed) in [(&fx.manager, false), (&fx.admin, true)] {
        let post = fx.post(&fx.author, false, "공개 글", &[]).await;
        let r = fx.feed().delete_post(who.req(pb::DeletePostRequest { post_id: post.id.clone() })).await;
        assert_eq!(r.is_ok(), allowed, "{}: {r:?}", who.handle);
    }
    assert_err(
        fx.feed().delete_post(Request::new(pb::DeletePostRequest { post_id: Uuid::now_v7().to_string() })).await,
        Code::Unauthenticated,
        "TOKEN_MISSING",
    );
}

#[sqlx::test]
async fn suspended_posts_are_hidden_from_all_but_their_author_and_admins(pool: PgPool) {
    let fx = Fx::new(pool).await;
    let post = fx.post(&fx.author, true, "문제의 글", &["신고"]).await;
    let suspend = |s: pb::PostStatus| pb::SetPostStatusRequest { post_id: post.id.clone(), status: s as i32 };
    // Members and authors do not moderate; managers of the community and admins do.
    assert_err(
        fx.feed().set_post_status(fx.member.req(suspend(pb::PostStatus::Suspended))).await,
        Code::PermissionDenied,
        "MANAGER_REQUIRED",
    );
    assert_err(
        fx.feed().set_post_status(fx.author.req(suspend(pb::PostStatus::Suspended))).await,
        Code::PermissionDenied,
        "MANAGER_REQUIRED",
    );
    let s = fx.feed().set_post_status(fx.manager.req(suspend(pb::PostStatus::Suspended))).await.unwrap();
    assert_eq!(s.into_inner().post.unwrap().status, pb::PostStatus::Suspended as i32);

    assert_err(fx.get(Some(&fx.member), &post.id).await, Code::NotFound, "POST_NOT_FOUND");
    assert_err(fx.get(Some(&fx.manager), &post.id).await, Code::NotFound, "POST_NOT_FOUND");
    assert_eq!(fx.get(Some(&fx.author), &post.id).await.unwrap().status, pb::PostStatus::Suspended as i32);
    assert!(fx.get(Some(&fx.admin), &post.id).await.is_ok());
    assert!(fx.community_page(&fx.member).await.is_empty());
    assert_eq!(fx.community_page(&fx.author).await.len(), 1);
    assert_eq!(fx.community_page(&fx.admin).await.len(), 1);
    let by_tag = |who: &TestUser| who.req(pb::ListPostsRequest { tag: "신고".into(), ..Default::default() });
    assert!(fx.feed().list_posts(by_tag(&fx.member)).await.unwrap().into_inner().posts.is_empty());
    assert_eq!(fx.feed().list_posts(by_tag(&fx.author)).await.unwrap().into_inner().posts.len(), 1);
    assert_err(fx.feed().like(fx.member.req(like_post(&post.id))).await, Code::NotFound, "POST_NOT_FOUND");

    // Published again.
    fx.feed().set_post_status(fx.admin.req(suspend(pb::PostStatus::Published))).await.unwrap();
    assert!(fx.get(Some(&fx.member), &post.id).await.is_ok());
    assert_eq!(fx.community_page(&fx.member).await.len(), 1);

    // A public post: admins only.
    let public = fx.post(&fx.author, false, "공개", &[]).await;
    let req = pb::SetPostStatusRequest { post_id: public.id.clone(), status: pb::PostStatus::Suspended as i32 };
    assert_err(fx.feed().set_post_status(fx.manager.req(req.clone())).await, Code::PermissionDenied, "ADMIN_REQUIRED");
    fx.feed().set_post_status(fx.admin.req(req)).await.unwrap();
    assert_err(fx.get(None, &public.id).await, Code::NotFound, "POST_NOT_FOUND");
}

#[sqlx::test]
async fn comments_and_one_level_of_replies(pool: PgPool) {
    let fx = Fx::new(pool).await;
    let post = fx.post(&fx.author, true, "댓글 달아주세요", &[]).await;
    let top = fx.comment(&fx.member, &post.id, "", "첫 댓글").await;
    assert_eq!(top.parent_id, "");
    let reply = fx.comment(&fx.author, &post.id, &top.id, "답글").await;
    assert_eq!(reply.parent_id, top.id);
    // A reply to a reply joins the same thread.
    let deeper = fx.comment(&fx.manager, &post.id, &reply.id, "답글의 답글").await;
    assert_eq!(deeper.parent_id, top.id);
    fx.comment(&fx.admin, &post.id, "", "두 번째 댓글").await;

    let list = |parent: &str| pb::ListCommentsRequest {
        post_id: post.id.clone(),
        parent_id: parent.into(),
        ..Default::default()
    };
    let tops = fx.feed().list_comments(fx.member.req(list(""))).await.unwrap().into_inner().comments;
    assert_eq!(tops.iter().map(|c| c.text.as_str()).collect::<Vec<_>>(), ["첫 댓글", "두 번째 댓글"]);
    assert_eq!(tops[0].reply_count, 2);
    let replies = fx.feed().list_comments(fx.member.req(list(&top.id))).await.unwrap().into_inner().comments;
    assert_eq!(replies.iter().map(|c| c.text.as_str()).collect::<Vec<_>>(), ["답글", "답글의 답글"]);
    assert_eq!(fx.get(Some(&fx.member), &post.id).await.unwrap().comment_count, 4);

    // A parent from another post.
    let other = fx.post(&fx.author, true, "다른 글", &[]).await;
    let s = fx
        .feed()
        .create_comment(fx.member.req(pb::CreateCommentRequest {
            post_id: other.id.clone(),
            parent_id: top.id.clone(),
            text: "엉뚱한 답글".into(),
            request_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!((s.code(), crate::helpers::reason(&s).as_str()), (Code::NotFound, "COMMENT_NOT_FOUND"));

    // Edit: the author only.
    let edit = |text: &str| pb::UpdateCommentRequest { comment_id: top.id.clone(), text: text.into() };
    for who in [&fx.author, &fx.manager, &fx.admin] {
        assert_err(
            fx.feed().update_comment(who.req(edit("남의 댓글"))).await,
            Code::PermissionDenied,
            "COMMENT_AUTHOR_REQUIRED",
        );
    }
    let edited = fx.feed().update_comment(fx.member.req(edit("고친 댓글"))).await.unwrap().into_inner();
    assert_eq!(edited.comment.unwrap().text, "고친 댓글");
    assert_err(fx.feed().update_comment(fx.outsider.req(edit("x"))).await, Code::NotFound, "COMMENT_NOT_FOUND");

    // Delete: the author, a manager or an admin; a top-level comment takes its replies along.
    let del = |id: &str| pb::DeleteCommentRequest { comment_id: id.into() };
    assert_err(
        fx.feed().delete_comment(fx.author.req(del(&top.id))).await,
        Code::PermissionDenied,
        "COMMENT_AUTHOR_REQUIRED",
    );
    fx.feed().delete_comment(fx.manager.req(del(&top.id))).await.unwrap();
    assert_eq!(fx.get(Some(&fx.member), &post.id).await.unwrap().comment_count, 1);
    assert_err(fx.feed().delete_comment(fx.member.req(del(&reply.id))).await, Code::NotFound, "COMMENT_NOT_FOUND");
    assert_eq!(fx.rows("select count(*) from post_comments where post_id = $1", &post.id).await, 1);
}

#[sqlx::test]
async fn likes_are_idempotent_and_counted_from_rows(pool: PgPool) {
    let fx = Fx::new(pool).await;
    let post = fx.post(&fx.author, false, "좋아요 눌러주세요", &[]).await;
    let r = fx.feed().like(fx.member.req(like_post(&post.id))).await.unwrap().into_inner();
    assert_eq!((r.created, r.like_count), (true, 1));
    let r = fx.feed().like(fx.member.req(like_post(&post.id))).await.unwrap().into_inner();
    assert_eq!((r.created, r.like_count), (false, 1), "liking twice is OK and changes nothing");
    let p = fx.get(Some(&fx.member), &post.id).await.unwrap();
    assert_eq!((p.like_count, p.liked_by_me), (1, true));
    assert!(!fx.get(Some(&fx.author), &post.id).await.unwrap().liked_by_me);
    // A community post: liked_by_me per reader on the community feed and on GetPost (read in
    // the same query as the membership).
    let cpost = fx.post(&fx.author, true, "단지 소식", &[]).await;
    fx.feed().like(fx.member.req(like_post(&cpost.id))).await.unwrap();
    let liked = |page: Vec<pb::Post>| page.into_iter().find(|p| p.id == cpost.id).map(|p| p.liked_by_me);
    assert_eq!(liked(fx.community_page(&fx.member).await), Some(true));
    assert_eq!(liked(fx.community_page(&fx.author).await), Some(false));
    assert!(fx.get(Some(&fx.member), &cpost.id).await.unwrap().liked_by_me);
    assert!(!fx.get(Some(&fx.author), &cpost.id).await.unwrap().liked_by_me);

    let c = fx.comment(&fx.author, &post.id, "", "댓글").await;
    let like_c = pb::LikeRequest { post_id: String::new(), comment_id: c.id.clone(), ..Default::default() };
    assert!(fx.feed().like(fx.admin.req(like_c.clone())).await.unwrap().into_inner().created);
    let comments = fx
        .feed()
        .list_comments(fx.admin.req(pb::ListCommentsRequest { post_id: post.id.clone(), ..Default::default() }))
        .await
        .unwrap()
        .into_inner()
        .comments;
    assert_eq!((comments[0].like_count, comments[0].liked_by_me), (1, true));

    let likers = fx
        .feed()
        .list_likers(Request::new(pb::ListLikersRequest { post_id: post.id.clone(), ..Default::default() }))
        .await
        .unwrap()
        .into_inner()
        .likers;
    assert_eq!(
        likers.iter().map(|l| l.user.as_ref().unwrap().handle.as_str()).collect::<Vec<_>>(),
        [fx.member.handle.as_str()]
    );

    let unlike = pb::UnlikeRequest { post_id: post.id.clone(), comment_id: String::new() };
    let r = fx.feed().unlike(fx.member.req(unlike.clone())).await.unwrap().into_inner();
    assert_eq!((r.removed, r.like_count), (true, 0));
    let r = fx.feed().unlike(fx.member.req(unlike)).await.unwrap().into_inner();
    assert_eq!((r.removed, r.like_count), (false, 0));
    assert_err(fx.feed().like(Request::new(like_post(&post.id))).await, Code::Unauthenticated, "TOKEN_MISSING");
    assert_err(
        fx.feed().like(fx.member.req(like_post(&Uuid::now_v7().to_string()))).await,
        Code::NotFound,
        "POST_NOT_FOUND",
    );
}

#[sqlx::test]
async fn one_user_liking_100_times_at_once_makes_one_row(pool: PgPool) {
    let fx = Fx::new(pool).await;
    let post = fx.post(&fx.author, true, "동시에 좋아요", &[]).await;
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let mut c = fx.feed();
        let req = fx.member.req(like_post(&post.id));
        tasks.push(tokio::spawn(async move { c.like(req).await }));
    }
    let mut created = 0;
    for r in futures::future::join_all(tasks).await {
        if r.unwrap().expect("like is idempotent").into_inner().created {
            created += 1;
        }
    }
    assert_eq!(created, 1);
    assert_eq!(fx.rows("select count(*) from post_likes where post_id = $1", &post.id).await, 1);
    assert_eq!(fx.get(Some(&fx.member), &post.id).await.unwrap().like_count, 1);
}

#[sqlx::test]
async fn a_hundred_users_liking_at_once_are_all_counted(pool: PgPool) {
    let fx = Fx::new(pool).await;
    let post = fx.post(&fx.author, false, "100명의 좋아요", &[]).await;
    let c = fx.comment(&fx.author, &post.id, "", "댓글도").await;
    let users = fx.app.fast_users("liker", 100).await;
    let mut tasks = Vec::new();
    for u in &users {
        for req in [
            like_post(&post.id),
            pb::LikeRequest { post_id: String::new(), comment_id: c.id.clone(), ..Default::default() },
        ] {
            let mut client = fx.feed();
            let req = u.req(req);
            tasks.push(tokio::spawn(async move { client.like(req).await }));
        }
    }
    for r in futures::future::join_all(tasks).await {
        assert!(r.unwrap().unwrap().into_inner().created);
    }
    assert_eq!(fx.rows("select count(*) from post_likes where post_id = $1", &post.id).await, 100);
    assert_eq!(fx.rows("select count(*) from comment_likes where comment_id = $1", &c.id).await, 100);
    assert_eq!(fx.get(None, &post.id).await.unwrap().like_count, 100);
}

#[sqlx::test]
async fn korean_substring_search_exact_tags_and_authors(pool: PgPool) {
    let fx = Fx::new(pool).await;
    fx.post(&fx.author, false, "성남시 판교동 맛집 추천합니다", &["맛집", "판교"]).await;
    fx.post(&fx.member, false, "판교역 근처 카페", &["맛집투어"]).await;
    fx.post(&fx.author, true, "단지 안 판교 소식 (주민 전용)", &["맛집"]).await;
    fx.post(&fx.author, false, "100% 할인_이벤트", &[]).await;
    let search = |who: &TestUser, req: pb::ListPostsRequest| {
        let mut f = fx.feed();
        let req = who.req(req);
        async move { f.list_posts(req).await.unwrap().into_inner().posts.into_iter().map(|p| p.text).collect::<Vec<_>>() }
    };
    let q = |s: &str| pb::ListPostsRequest { query: s.into(), ..Default::default() };
    // Substring (trigram-served for 3+ characters; two characters work too), newest first.
    assert_eq!(search(&fx.outsider, q("판교")).await, ["판교역 근처 카페", "성남시 판교동 맛집 추천합니다"]);
    assert_eq!(search(&fx.outsider, q("교동 맛")).await, ["성남시 판교동 맛집 추천합니다"]);
    // Members also find their community's posts.
    assert_eq!(search(&fx.member, q("판교")).await.len(), 3);
    // LIKE wildcards in the query are literal.
    assert_eq!(search(&fx.outsider, q("0%")).await, ["100% 할인_이벤트"]);
    assert!(search(&fx.outsider, q("인_이")).await.len() == 1);
    assert!(search(&fx.outsider, q("%%")).await.is_empty());
    // Tags are exact (and case/# insensitive).
    let t = |s: &str| pb::ListPostsRequest { tag: s.into(), ..Default::default() };
    assert_eq!(search(&fx.outsider, t("#맛집")).await, ["성남시 판교동 맛집 추천합니다"]);
    assert_eq!(search(&fx.member, t("맛집")).await.len(), 2);
    assert_eq!(search(&fx.outsider, t("맛집투어")).await, ["판교역 근처 카페"]);
    let a = pb::ListPostsRequest { author_handle: fx.member.handle.clone(), ..Default::default() };
    assert_eq!(search(&fx.outsider, a).await, ["판교역 근처 카페"]);
    // Anonymous callers search public posts.
    let anon = fx.feed().list_posts(Request::new(q("판교"))).await.unwrap().into_inner().posts;
    assert_eq!(anon.len(), 2);
}

#[sqlx::test]
async fn home_feed_shows_public_posts_of_followed_people(pool: PgPool) {
    let fx = Fx::new(pool).await;
    let mut social = SocialServiceClient::new(fx.app.channel.clone());
    social
        .follow(fx.member.req(pb::FollowRequest { handle: fx.author.handle.clone(), ..Default::default() }))
        .await
        .unwrap();
    fx.post(&fx.author, false, "첫 공개 글", &[]).await;
    fx.post(&fx.author, true, "단지 글은 홈에 없음", &[]).await;
    fx.post(&fx.manager, false, "팔로우 안 한 사람 글", &[]).await;
    fx.post(&fx.author, false, "두 번째 공개 글", &[]).await;
    let home = |page_token: String| fx.member.req(pb::ListHomeFeedRequest { page_size: 1, page_token });
    let first = fx.feed().list_home_feed(home(String::new())).await.unwrap().into_inner();
    assert_eq!(first.posts[0].text, "두 번째 공개 글");
    let second = fx.feed().list_home_feed(home(first.next_page_token)).await.unwrap().into_inner();
    assert_eq!(second.posts[0].text, "첫 공개 글");
    assert!(second.next_page_token.is_empty());
    assert_err(
        fx.feed().list_home_feed(Request::new(pb::ListHomeFeedRequest::default())).await,
        Code::Unauthenticated,
        "TOKEN_MISSING",
    );
    social.unfollow(fx.member.req(pb::UnfollowRequest { handle: fx.author.handle.clone() })).await.unwrap();
    assert!(fx.feed().list_home_feed(home(String::new())).await.unwrap().into_inner().posts.is_empty());
}

#[sqlx::test]
async fn paging_through_a_community_feed_is_exact(pool: PgPool) {
    let fx = Fx::new(pool).await;
    for i in 0..7 {
        fx.post(&fx.author, true, &format!("글 {i}"), &[]).await;
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let r = fx
            .feed()
            .list_posts(fx.member.req(pb::ListPostsRequest {
                community_id: fx.community.clone(),
                page_size: 3,
                page_token: token.clone(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        seen.extend(r.posts.into_iter().map(|p| p.text));
        if r.next_page_token.is_empty() {
            break;
        }
        token = r.next_page_token;
    }
    assert_eq!(seen, (0..7).rev().map(|i| format!("글 {i}")).collect::<Vec<_>>());
}

#[sqlx::test]
async fn posts_of_a_deleted_account_disappear(pool: PgPool) {
    let fx = Fx::new(pool).await;
    let leaving = fx.app.user("leaving").await;
    let post = fx.post(&leaving, false, "곧 사라질 글", &["작별"]).await;
    let kept = fx.post(&fx.author, false, "남는 글", &[]).await;
    fx.feed().like(leaving.req(like_post(&kept.id))).await.unwrap();
    assert_eq!(fx.get(None, &post.id).await.unwrap().text, "곧 사라질 글");
    assert_eq!(fx.get(None, &kept.id).await.unwrap().like_count, 1);
    maru::grpc::pb::profile_service_client::ProfileServiceClient::new(fx.app.channel.clone())
        .delete_account(leaving.req(pb::DeleteAccountRequest { confirm_handle: "leaving".into() }))
        .await
        .unwrap();
    assert_err(fx.get(None, &post.id).await, Code::NotFound, "POST_NOT_FOUND");
    assert_eq!(fx.get(None, &kept.id).await.unwrap().like_count, 0, "cached detail was invalidated");
    let tagged = pb::ListPostsRequest { tag: "작별".into(), ..Default::default() };
    assert!(fx.feed().list_posts(Request::new(tagged)).await.unwrap().into_inner().posts.is_empty());
}

// ---- views

async fn view_count(fx: &Fx, id: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as("select view_count from posts where id = $1")
        .bind(Uuid::parse_str(id).unwrap())
        .fetch_one(&fx.app.state.db)
        .await
        .unwrap();
    n
}

#[sqlx::test]
async fn fifty_views_by_one_viewer_count_once_and_fifty_viewers_fifty_times(pool: PgPool) {
    let fx = Fx::new(pool).await;
    let post = fx.post(&fx.author, false, "조회수", &[]).await;
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let mut c = fx.feed();
        let req = fx.member.req(pb::GetPostRequest { post_id: post.id.clone() });
        tasks.push(tokio::spawn(async move { c.get_post(req).await }));
    }
    for r in futures::future::join_all(tasks).await {
        r.unwrap().unwrap();
    }
    assert_eq!(view_count(&fx, &post.id).await, 0, "not flushed yet");
    let out = maru::jobs::views::flush(&fx.app.state).await.unwrap();
    assert_eq!((out.views, out.items), (1, 1));
    assert_eq!(view_count(&fx, &post.id).await, 1);
    // The cached detail shows the flushed count at once.
    assert_eq!(fx.get(Some(&fx.member), &post.id).await.unwrap().view_count, 1);

    let viewers = fx.app.fast_users("viewer", 50).await;
    let mut tasks = Vec::new();
    for v in &viewers {
        for _ in 0..2 {
            let mut c = fx.feed();
            let req = v.req(pb::GetPostRequest { post_id: post.id.clone() });
            tasks.push(tokio::spawn(async move { c.get_post(req).await }));
        }
    }
    for r in futures::future::join_all(tasks).await {
        r.unwrap().unwrap();
    }
    // Anonymous viewers count by client IP: all of these come from 127.0.0.1.
    for _ in 0..5 {
        fx.get(None, &post.id).await.unwrap();
    }
    maru::jobs::views::flush(&fx.app.state).await.unwrap();
    assert_eq!(view_count(&fx, &post.id).await, 1 + 50 + 1);
    // Nothing pending: a flush changes nothing.
    assert_eq!(maru::jobs::views::flush(&fx.app.state).await.unwrap().views, 0);
    assert_eq!(view_count(&fx, &post.id).await, 52);
}

#[sqlx::test]
async fn two_instances_flushing_concurrently_never_double_count(pool: PgPool) {
    let first = TestApp::spawn(pool.clone()).await;
    let prefix = first.redis_prefix.clone();
    let second = TestApp::spawn_with(pool, |s| s.redis.key_prefix = prefix).await;
    let fx = Fx::with(first).await;
    let posts = [fx.post(&fx.author, false, "하나", &[]).await, fx.post(&fx.author, false, "둘", &[]).await];
    let viewers = fx.app.fast_users("twoview", 30).await;
    let mut expected = 0;
    for round in 0..5 {
        // Views through both instances while both flush repeatedly.
        let mut tasks = Vec::new();
        for (i, v) in viewers.iter().enumerate().filter(|(i, _)| i % 5 == round) {
            for p in &posts {
                let app = if i % 2 == 0 { &fx.app } else { &second };
                let mut c = feed(app);
                let req = v.req(pb::GetPostRequest { post_id: p.id.clone() });
                tasks.push(tokio::spawn(async move { c.get_post(req).await.map(|_| ()) }));
                expected += 1;
            }
        }
        let flushes: Vec<_> = (0..4)
            .map(|i| {
                let state = if i % 2 == 0 { fx.app.state.clone() } else { second.state.clone() };
                tokio::spawn(async move { maru::jobs::views::flush(&state).await.unwrap() })
            })
            .collect();
        for r in futures::future::join_all(tasks).await {
            r.unwrap().unwrap();
        }
        for f in futures::future::join_all(flushes).await {
            f.unwrap();
        }
    }
    maru::jobs::views::flush(&second.state).await.unwrap();
    let total = view_count(&fx, &posts[0].id).await + view_count(&fx, &posts[1].id).await;
    assert_eq!(total, expected);
    assert_eq!(expected, 60);
}

/// The pending views of `post` in Redis (what a flush would take), read directly.
async fn pending_views(fx: &Fx, post: &str) -> Option<i64> {
    use deadpool_redis::redis::AsyncCommands;
    let url = secrecy::ExposeSecret::expose_secret(&fx.app.state.settings.redis.url).to_owned();
    let pool = deadpool_redis::Config::from_url(url).create_pool(Some(deadpool_redis::Runtime::Tokio1)).unwrap();
    let mut conn = pool.get().await.unwrap();
    conn.hget(fx.app.state.cache.key("views:pending"), post).await.unwrap()
}

/// Views stay queued (a long batch interval) until something drains them.
fn slow_batches(s: &mut maru::config::Settings) {
    s.feed.view_batch_interval_ms = 60_000;
}

#[sqlx::test]
async fn views_queued_just_before_a_graceful_shutdown_are_counted(pool: PgPool) {
    let mut fx = Fx::with(TestApp::spawn_with(pool, slow_batches).await).await;
    let post = fx.post(&fx.author, false, "종료 직전 조회", &[]).await;
    let viewers = fx.app.fast_users("lastview", 3).await;
    for v in &viewers {
        fx.feed().get_post(v.req(pb::GetPostRequest { post_id: post.id.clone() })).await.unwrap();
    }
    fx.get(None, &post.id).await.unwrap();
    assert_eq!(fx.app.state.views.queued(), 4, "answered, still queued");
    assert_eq!(pending_views(&fx, &post.id).await, None, "nothing in Redis yet");
    fx.app.shutdown.shutdown();
    (&mut fx.app.task).await.unwrap().unwrap();
    assert_eq!(fx.app.state.views.queued(), 0);
    assert_eq!(pending_views(&fx, &post.id).await, Some(4), "the shutdown moved the queue to Redis");
    let out = maru::jobs::views::flush(&fx.app.state).await.unwrap();
    assert_eq!(out.views, 4);
    assert_eq!(view_count(&fx, &post.id).await, 4);
}

#[sqlx::test]
async fn a_viewer_waits_in_the_queue_once_and_a_full_queue_counts_directly(pool: PgPool) {
    let fx = Fx::with(
        TestApp::spawn_with(pool, |s| {
            slow_batches(s);
            s.feed.view_queue_capacity = 3;
        })
        .await,
    )
    .await;
    let post = fx.post(&fx.author, false, "대기열", &[]).await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let mut c = fx.feed();
        let req = fx.member.req(pb::GetPostRequest { post_id: post.id.clone() });
        tasks.push(tokio::spawn(async move { c.get_post(req).await }));
    }
    for r in futures::future::join_all(tasks).await {
        r.unwrap().unwrap();
    }
    assert_eq!(fx.app.state.views.queued(), 1, "one viewer, one queued view");
    let viewers = fx.app.fast_users("queued", 3).await;
    for v in &viewers[..2] {
        fx.feed().get_post(v.req(pb::GetPostRequest { post_id: post.id.clone() })).await.unwrap();
    }
    assert_eq!(fx.app.state.views.queued(), 3);
    assert_eq!(pending_views(&fx, &post.id).await, None);
    // The queue is full: this view is counted on the request path instead.
    fx.feed().get_post(viewers[2].req(pb::GetPostRequest { post_id: post.id.clone() })).await.unwrap();
    assert_eq!(fx.app.state.views.queued(), 3);
    assert_eq!(pending_views(&fx, &post.id).await, Some(1));
    let fallbacks: f64 = fx
        .app
        .metrics()
        .await
        .lines()
        .find_map(|l| l.strip_prefix("maru_view_queue_fallbacks_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    assert!(fallbacks >= 1.0, "the fallback is counted");
    let out = maru::jobs::views::flush(&fx.app.state).await.unwrap();
    assert_eq!((out.views, out.items), (4, 1));
    assert_eq!(fx.app.state.views.queued(), 0);
    // Seen again the same day, after the first batch reached Redis: not counted again.
    fx.feed().get_post(fx.member.req(pb::GetPostRequest { post_id: post.id.clone() })).await.unwrap();
    fx.feed().get_post(viewers[2].req(pb::GetPostRequest { post_id: post.id.clone() })).await.unwrap();
    assert_eq!(fx.app.state.views.queued(), 2);
    assert_eq!(maru::jobs::views::flush(&fx.app.state).await.unwrap().views, 0);
    assert_eq!(view_count(&fx, &post.id).await, 4);
}

#[sqlx::test]
async fn an_interrupted_flush_is_finished_once(pool: PgPool) {
    let fx = Fx::new(pool).await;
    let post = fx.post(&fx.author, false, "중단된 반영", &[]).await;
    fx.get(Some(&fx.member), &post.id).await.unwrap();
    // The view is pending in Redis once the batcher sent it.
    fx.app.state.views.drain().await;
    // A flush took the batch and committed, then died before deleting it from Redis: simulate by
    // applying the batch by hand and recording its id, leaving Redis as it was.
    let cache = &fx.app.state.cache;
    let url = secrecy::ExposeSecret::expose_secret(&fx.app.state.settings.redis.url).to_owned();
    let mut conn = deadpool_redis::Config::from_url(url)
        .create_pool(Some(deadpool_redis::Runtime::Tokio1))
        .unwrap()
        .get()
        .await
        .unwrap();
    use deadpool_redis::redis::AsyncCommands;
    let batch = Uuid::new_v4();
    let _: () = conn.rename(cache.key("views:pending"), cache.key("views:flushing")).await.unwrap();
    let _: () = conn.set(cache.key("views:flushing:id"), batch.to_string()).await.unwrap();
    sqlx::query("insert into post_view_flushes (batch_id, posts, views) values ($1, 1, 1)")
        .bind(batch)
        .execute(&fx.app.state.db)
        .await
        .unwrap();
    sqlx::query("update posts set view_count = view_count + 1 where id = $1")
        .bind(Uuid::parse_str(&post.id).unwrap())
        .execute(&fx.app.state.db)
        .await
        .unwrap();
    let out = maru::jobs::views::flush(&fx.app.state).await.unwrap();
    assert_eq!((out.replayed, out.views), (1, 0));
    assert_eq!(view_count(&fx, &post.id).await, 1);
    let left: bool = conn.exists(cache.key("views:flushing")).await.unwrap();
    assert!(!left);
}

#[sqlx::test]
async fn without_redis_posts_are_served_and_views_are_not_counted(pool: PgPool) {
    let app = TestApp::spawn_with(pool, |s| s.redis.url = secrecy::SecretString::from("redis://127.0.0.1:1/")).await;
    let fx = Fx::with(app).await;
    let post = fx.post(&fx.author, true, "레디스 없이", &[]).await;
    for _ in 0..3 {
        assert_eq!(fx.get(Some(&fx.member), &post.id).await.unwrap().text, "레디스 없이");
    }
    assert_eq!(fx.community_page(&fx.member).await.len(), 1);
    fx.feed().like(fx.member.req(like_post(&post.id))).await.unwrap();
    assert_eq!(fx.get(Some(&fx.member), &post.id).await.unwrap().like_count, 1);
    let out = maru::jobs::views::flush(&fx.app.state).await.unwrap();
    assert!(out.redis_down);
    assert_eq!(view_count(&fx, &post.id).await, 0);
    assert!(fx.app.metrics().await.contains("maru_post_views_dropped_total"));
}

// ---- caching

/// What a reader may compare: everything but the view count (documented to lag by up to one
/// flush interval) and the caller-specific flag.
fn snapshot(p: &pb::Post) -> (String, Vec<String>, i32, i64, i64, String) {
    (p.text.clone(), p.tags.clone(), p.status, p.like_count, p.comment_count, p.etag.clone())
}

#[sqlx::test]
async fn randomised_writes_and_reads_across_two_instances_are_never_stale(pool: PgPool) {
    use rand::{Rng, SeedableRng};
    let first = TestApp::spawn(pool.clone()).await;
    let prefix = first.redis_prefix.clone();
    let second = TestApp::spawn_with(pool, |s| s.redis.key_prefix = prefix).await;
    let fx = Fx::with(first).await;
    let apps = [&fx.app, &second];
    let writers = [&fx.author, &fx.member, &fx.manager];
    let mut posts: Vec<String> = Vec::new();
    let mut authors = std::collections::HashMap::new();
    for i in 0..3 {
        let id = fx.post(&fx.author, true, &format!("초기 글 {i}"), &[]).await.id;
        authors.insert(id.clone(), fx.author.clone());
        posts.push(id);
    }
    let seed: u64 = rand::rng().random();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut checks = 0;
    for step in 0..200 {
        // One write through a random instance…
        let app = apps[rng.random_range(0..2)];
        let who = writers[rng.random_range(0..3)];
        let pid = posts[rng.random_range(0..posts.len())].clone();
        let mut f = feed(app);
        // Writes on a post the writer cannot see (suspended, not theirs) are NOT_FOUND; anything
        // else must succeed.
        let allowed = |r: Result<(), tonic::Status>| match r {
            Ok(()) => {}
            Err(s) => assert_eq!(s.code(), Code::NotFound, "step {step} (seed {seed}): {s:?}"),
        };
        match rng.random_range(0..8) {
            0 => {
                let req = pb::UpdatePostRequest {
                    post_id: pid.clone(),
                    text: format!("수정 {step}"),
                    update_mask: mask(&["text"]),
                    ..Default::default()
                };
                let author = &authors[&pid];
                allowed(f.update_post(author.req(req)).await.map(|_| ()));
            }
            1 => {
                let req = pb::CreateCommentRequest {
                    post_id: pid.clone(),
                    text: format!("댓글 {step}"),
                    ..Default::default()
                };
                allowed(f.create_comment(who.req(req)).await.map(|_| ()));
            }
            2 => allowed(f.like(who.req(like_post(&pid))).await.map(|_| ())),
            3 => {
                let req = pb::UnlikeRequest { post_id: pid.clone(), comment_id: String::new() };
                allowed(f.unlike(who.req(req)).await.map(|_| ()));
            }
            4 => {
                let status = if rng.random_bool(0.5) { pb::PostStatus::Suspended } else { pb::PostStatus::Published };
                let req = pb::SetPostStatusRequest { post_id: pid.clone(), status: status as i32 };
                f.set_post_status(fx.manager.req(req)).await.unwrap();
            }
            5 if posts.len() > 2 => {
                f.delete_post(fx.admin.req(pb::DeletePostRequest { post_id: pid.clone() })).await.unwrap();
                posts.retain(|p| *p != pid);
            }
            _ => {
                let id = f
                    .create_post(who.req(pb::CreatePostRequest {
                        community_id: fx.community.clone(),
                        text: format!("새 글 {step}"),
                        tags: vec![format!("t{}", step % 3)],
                        ..Default::default()
                    }))
                    .await
                    .unwrap()
                    .into_inner()
                    .post
                    .unwrap()
                    .id;
                authors.insert(id.clone(), (*who).clone());
                posts.push(id);
            }
        }
        // …then reads through both instances must equal the database (read through an
        // instance with caching bypassed: the first instance's ops without Redis).
        for app in apps {
            let reader = writers[rng.random_range(0..3)];
            let mut f = feed(app);
            let got_page = f
                .list_posts(reader.req(pb::ListPostsRequest {
                    community_id: fx.community.clone(),
                    page_size: 100,
                    ..Default::default()
                }))
                .await
                .unwrap()
                .into_inner()
                .posts;
            let want = truth_page(&fx, reader).await;
            let got: Vec<_> = got_page.iter().map(|p| (p.id.clone(), snapshot(p))).collect();
            assert_eq!(got, want, "stale page at step {step} (seed {seed})");
            for pid in &posts {
                let got = f.get_post(reader.req(pb::GetPostRequest { post_id: pid.clone() })).await;
                let want = want.iter().find(|(id, _)| id == pid).map(|(_, s)| s.clone());
                match (got, want) {
                    (Ok(p), Some(w)) => {
                        assert_eq!(snapshot(&p.into_inner().post.unwrap()), w, "stale post at {step} (seed {seed})")
                    }
                    (Err(s), None) => assert_eq!(s.code(), Code::NotFound),
                    (g, w) => panic!("step {step} (seed {seed}): got {g:?}, want {w:?}"),
                }
                checks += 1;
            }
        }
    }
    assert!(checks > 1000, "{checks}");
    // The caches were really used.
    let metrics = fx.app.metrics().await;
    let hits: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("maru_cache_requests_total") && l.contains("feed_") && l.contains("result=\"hit\""))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum();
    assert!(hits > 0.0, "{metrics}");
}

/// Whether `who` may read the community's posts, asked on both instances twice (the second time
/// from the cached standing): GetPost answers NOT_FOUND and ListPosts PERMISSION_DENIED to
/// non-members, and every answer must agree.
async fn reads_posts(apps: &[&TestApp], community: &str, post: &str, who: &TestUser) -> bool {
    let mut seen = Vec::new();
    for app in apps {
        for _ in 0..2 {
            let got = feed(app).get_post(who.req(pb::GetPostRequest { post_id: post.into() })).await;
            let page = feed(app)
                .list_posts(who.req(pb::ListPostsRequest { community_id: community.into(), ..Default::default() }))
                .await;
            seen.push(match (got, page) {
                (Ok(_), Ok(_)) => true,
                (Err(g), Err(p)) => {
                    assert_eq!(g.code(), Code::NotFound, "{g:?}");
                    assert_eq!(
                        (p.code(), reason(&p).as_str()),
                        (Code::PermissionDenied, "MEMBERSHIP_REQUIRED"),
                        "{p:?}"
                    );
                    false
                }
                (g, p) => panic!("GetPost and ListPosts disagree: {g:?} / {p:?}"),
            });
        }
    }
    assert!(seen.iter().all(|s| *s == seen[0]), "instances or repeats disagree: {seen:?}");
    seen[0]
}

/// The membership decision of feed reads is cached (the `standing` cache); every membership
/// write moves it before it returns, on both instances: approval, removal, a new request and a
/// bulk approval, leaving, a role change (a manager deletes others' posts) and account deletion.
#[sqlx::test]
async fn every_membership_write_is_seen_by_the_next_feed_read_on_both_instances(pool: PgPool) {
    use maru::grpc::pb::community_service_client::CommunityServiceClient;
    let first = TestApp::spawn(pool.clone()).await;
    let prefix = first.redis_prefix.clone();
    let second = TestApp::spawn_with(pool, |s| s.redis.key_prefix = prefix).await;
    let fx = Fx::with(first).await;
    let apps = [&fx.app, &second];
    let communities = |app: &TestApp| CommunityServiceClient::new(app.channel.clone());
    let post = fx.post(&fx.author, true, "회원만 보는 글", &[]).await;
    let (c, who) = (fx.community.as_str(), &fx.outsider);

    // PENDING: not yet.
    assert!(!reads_posts(&apps, c, &post.id, who).await);
    let pending: Uuid = sqlx::query_scalar("select id from community_memberships where user_id = $1")
        .bind(Uuid::parse_str(&who.id).unwrap())
        .fetch_one(&fx.app.state.db)
        .await
        .unwrap();
    communities(&second)
        .decide_membership(fx.manager.req(pb::DecideMembershipRequest {
            membership_id: pending.to_string(),
            approve: true,
            note: String::new(),
        }))
        .await
        .unwrap();
    assert!(reads_posts(&apps, c, &post.id, who).await, "approved");
    communities(&fx.app)
        .remove_member(fx.manager.req(pb::RemoveMemberRequest { community_id: c.into(), user_id: who.id.clone() }))
        .await
        .unwrap();
    assert!(!reads_posts(&apps, c, &post.id, who).await, "removed");
    let asked = communities(&second)
        .request_membership(who.req(pb::RequestMembershipRequest {
            community_id: c.into(),
            building: "101".into(),
            unit: "1001".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .membership
        .unwrap();
    assert!(!reads_posts(&apps, c, &post.id, who).await, "asked again");
    communities(&fx.app)
        .decide_memberships(fx.manager.req(pb::DecideMembershipsRequest {
            community_id: c.into(),
            membership_ids: vec![asked.id],
            approve: true,
            note: String::new(),
        }))
        .await
        .unwrap();
    assert!(reads_posts(&apps, c, &post.id, who).await, "approved in bulk");
    communities(&second).leave_community(who.req(pb::LeaveCommunityRequest { community_id: c.into() })).await.unwrap();
    assert!(!reads_posts(&apps, c, &post.id, who).await, "left");

    // The role comes from the cached standing too: a member may not delete another's post, a
    // manager may, and a demoted manager no longer may.
    let delete = |app: &TestApp, id: &str| {
        let mut f = feed(app);
        let req = fx.member.req(pb::DeletePostRequest { post_id: id.into() });
        async move { f.delete_post(req).await }
    };
    let doomed = fx.post(&fx.author, true, "지워질 글", &[]).await;
    for app in apps {
        assert_eq!(delete(app, &doomed.id).await.unwrap_err().code(), Code::PermissionDenied);
    }
    let role = |r: pb::MemberRole| {
        fx.manager.req(pb::SetMemberRoleRequest {
            community_id: c.into(),
            user_id: fx.member.id.clone(),
            role: r as i32,
        })
    };
    communities(&fx.app).set_member_role(role(pb::MemberRole::Manager)).await.unwrap();
    delete(&second, &doomed.id).await.expect("a manager deletes others' posts");
    communities(&second).set_member_role(role(pb::MemberRole::Member)).await.unwrap();
    for app in apps {
        assert_eq!(delete(app, &post.id).await.unwrap_err().code(), Code::PermissionDenied, "demoted");
    }

    // Account deletion moves the deleted user's standings (nobody reads with them any more:
    // the session ends too, so the version key is what can be checked).
    let scopes = maru::communities::cache::standing_scopes(Uuid::parse_str(&fx.member.id).unwrap());
    assert!(reads_posts(&apps, c, &post.id, &fx.member).await);
    let before = fx.app.state.cache.versions(&scopes).await.unwrap();
    let handle = fx.member.handle.clone();
    maru::grpc::pb::profile_service_client::ProfileServiceClient::new(second.channel.clone())
        .delete_account(fx.member.req(pb::DeleteAccountRequest { confirm_handle: handle }))
        .await
        .unwrap();
    assert_ne!(fx.app.state.cache.versions(&scopes).await.unwrap(), before, "account deletion");

    // The decision was really served from the cache.
    let hits: f64 = fx
        .app
        .metrics()
        .await
        .lines()
        .filter(|l| l.starts_with("maru_cache_requests_total") && l.contains("cache=\"standing\""))
        .filter(|l| l.contains("result=\"hit\""))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum();
    assert!(hits >= 10.0, "standing hits: {hits}");
}

/// The community page as the database has it for `reader`, bypassing every cache.
async fn truth_page(fx: &Fx, reader: &TestUser) -> Vec<(String, (String, Vec<String>, i32, i64, i64, String))> {
    let caller = maru::caller::Caller {
        user_id: Uuid::parse_str(&reader.id).unwrap(),
        session_id: Uuid::nil(),
        role: maru::caller::Role::User,
    };
    let r = maru::feed::visibility::Reader { user_id: caller.user_id, is_admin: false };
    let filter = maru::feed::model::PostFilter::Community(Uuid::parse_str(&fx.community).unwrap());
    let rows = maru::feed::store::list_posts(&fx.app.state.db, r, Some(&filter), None, 1000).await.unwrap();
    let status =
        |s: &str| if s == "SUSPENDED" { pb::PostStatus::Suspended as i32 } else { pb::PostStatus::Published as i32 };
    rows.into_iter()
        .map(|p| {
            (
                p.id.to_string(),
                (p.text.clone(), p.tags.clone(), status(&p.status), p.like_count, p.comment_count, p.etag()),
            )
        })
        .collect()
}

#[sqlx::test]
async fn anonymous_views_count_per_client_ip_behind_a_trusted_proxy(pool: PgPool) {
    let app = TestApp::spawn_with(pool, |s| s.rate_limit.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()]).await;
    let fx = Fx::with(app).await;
    let post = fx.post(&fx.author, false, "익명 조회", &[]).await;
    for xff in ["203.0.113.7", "203.0.113.7", "198.51.100.2", "198.51.100.2, 127.0.0.1"] {
        let mut req = Request::new(pb::GetPostRequest { post_id: post.id.clone() });
        req.metadata_mut().insert("x-forwarded-for", xff.parse().unwrap());
        fx.feed().get_post(req).await.unwrap();
    }
    maru::jobs::views::flush(&fx.app.state).await.unwrap();
    assert_eq!(view_count(&fx, &post.id).await, 2, "two clients behind the proxy");
}

/// Every FeedService RPC against a community post: anonymous, outsider (PENDING), member,
/// manager, admin. Expected code per caller, in that order (`Ok` = allowed).
#[sqlx::test]
async fn authorization_matrix_of_every_rpc_on_a_community_post(pool: PgPool) {
    let fx = Fx::new(pool).await;
    let post = fx.post(&fx.author, true, "매트릭스", &[]).await;
    let comment = fx.comment(&fx.author, &post.id, "", "작성자 댓글").await;
    let anon = TestUser { id: String::new(), handle: String::new(), token: String::new(), refresh: String::new() };
    let callers = [&anon, &fx.outsider, &fx.member, &fx.manager, &fx.admin];
    fn req<T>(who: &TestUser, msg: T) -> Request<T> {
        if who.token.is_empty() { Request::new(msg) } else { who.req(msg) }
    }
    use Code::{NotFound as NF, Ok as OK, PermissionDenied as PD, Unauthenticated as UA};
    let pid = post.id.clone();
    let cid = comment.id.clone();
    let code = |r: Result<(), tonic::Status>| r.map_or_else(|s| s.code(), |_| OK);
    for (i, who) in callers.iter().enumerate() {
        let mut f = fx.feed();
        let got = [
            code(f.get_post(req(who, pb::GetPostRequest { post_id: pid.clone() })).await.map(|_| ())),
            code(
                f.list_posts(req(
                    who,
                    pb::ListPostsRequest { community_id: fx.community.clone(), ..Default::default() },
                ))
                .await
                .map(|_| ()),
            ),
            code(
                f.list_comments(req(who, pb::ListCommentsRequest { post_id: pid.clone(), ..Default::default() }))
                    .await
                    .map(|_| ()),
            ),
            code(
                f.list_likers(req(who, pb::ListLikersRequest { post_id: pid.clone(), ..Default::default() }))
                    .await
                    .map(|_| ()),
            ),
            code(f.like(req(who, like_post(&pid))).await.map(|_| ())),
            code(
                f.create_comment(req(
                    who,
                    pb::CreateCommentRequest { post_id: pid.clone(), text: "댓글".into(), ..Default::default() },
                ))
                .await
                .map(|_| ()),
            ),
            code(
                f.update_post(req(
                    who,
                    pb::UpdatePostRequest {
                        post_id: pid.clone(),
                        text: "x".into(),
                        update_mask: mask(&["text"]),
                        ..Default::default()
                    },
                ))
                .await
                .map(|_| ()),
            ),
            code(
                f.update_comment(req(who, pb::UpdateCommentRequest { comment_id: cid.clone(), text: "y".into() }))
                    .await
                    .map(|_| ()),
            ),
        ];
        let want = [
            [NF, UA, NF, NF, UA, UA, UA, UA],
            [NF, PD, NF, NF, NF, NF, NF, NF],
            [OK, OK, OK, OK, OK, OK, PD, PD],
            [OK, OK, OK, OK, OK, OK, PD, PD],
            [OK, OK, OK, OK, OK, OK, PD, PD],
        ][i];
        assert_eq!(got, want, "caller #{i}");
    }
    // Deletes last: a member may not, the manager may (a comment), the admin may (the post).
    let del_c = |who: &TestUser| who.req(pb::DeleteCommentRequest { comment_id: cid.clone() });
    assert_eq!(
        fx.feed()
            .delete_comment(fx.outsider.req(pb::DeleteCommentRequest { comment_id: cid.clone() }))
            .await
            .unwrap_err()
            .code(),
        NF
    );
    assert_eq!(fx.feed().delete_comment(del_c(&fx.member)).await.unwrap_err().code(), PD);
    fx.feed().delete_comment(del_c(&fx.manager)).await.unwrap();
    let del_p = |who: &TestUser| who.req(pb::DeletePostRequest { post_id: pid.clone() });
    assert_eq!(fx.feed().delete_post(del_p(&fx.outsider)).await.unwrap_err().code(), NF);
    assert_eq!(fx.feed().delete_post(del_p(&fx.member)).await.unwrap_err().code(), PD);
    fx.feed().delete_post(del_p(&fx.admin)).await.unwrap();
}

#[sqlx::test]
async fn a_retried_like_with_a_request_id_gets_its_first_answer(pool: PgPool) {
    // Issue 13 pt 5: without a request id a retried Like is a silent no-op (`created: false`);
    // with one it gets the first answer, also when the retries race.
    let fx = Fx::new(pool).await;
    let post = fx.post(&fx.author, false, "다시 눌러도 처음 답", &[]).await;
    let like = |rid: &str| pb::LikeRequest { request_id: rid.into(), ..like_post(&post.id) };
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let mut api = fx.feed();
        let req = fx.member.req(like("like-1"));
        tasks.push(tokio::spawn(async move { api.like(req).await.map(|r| r.into_inner()) }));
    }
    for t in tasks {
        let r = t.await.unwrap().expect("every retry gets the first answer");
        assert_eq!((r.created, r.like_count), (true, 1));
    }
    let r = fx.feed().like(fx.member.req(like(""))).await.unwrap().into_inner();
    assert_eq!((r.created, r.like_count), (false, 1));
    // The same id naming another target is refused.
    let other = fx.post(&fx.author, false, "다른 글", &[]).await;
    let r =
        fx.feed().like(fx.member.req(pb::LikeRequest { request_id: "like-1".into(), ..like_post(&other.id) })).await;
    assert_err(r, Code::InvalidArgument, "REQUEST_ID_REUSED");
}
