//! Protobuf ⇄ model conversions for the feed. Requests become commands or every bad field is
//! reported at once.

use uuid::Uuid;

use super::model::{
    CommentView, CreateComment, CreatePost, Liker, MAX_COMMENT_CHARS, MAX_POST_CHARS, MAX_TAGS, PostFilter, PostPatch,
    PostStatus, PostView, Target, UpdatePost, parse_image_urls,
};
use crate::accounts::Handle;
use crate::error::{AppError, AppResult, Violations};
use crate::fields::{id, mask, opt_id, parse_etag, parse_query, parse_tag, parse_tags, request_id, text, timestamp};
use crate::grpc::pb;
use crate::media::attach;

impl TryFrom<pb::CreatePostRequest> for CreatePost {
    type Error = AppError;
    fn try_from(r: pb::CreatePostRequest) -> Result<Self, AppError> {
        let mut v = Violations::new();
        let community_id = opt_id(&mut v, "community_id", &r.community_id);
        if community_id.is_none() && !r.public && r.community_id.trim().is_empty() {
            v.add("community_id", "name a community, or set `public` for a public post");
        }
        if r.public && !r.community_id.trim().is_empty() {
            v.add("public", "a post is public or belongs to a community, not both");
        }
        let cmd = CreatePost {
            community_id,
            text: text(&mut v, "text", &r.text, 1, MAX_POST_CHARS, true),
            tags: v.check("tags", parse_tags(&r.tags, MAX_TAGS)).unwrap_or_default(),
            image_urls: v.check("image_urls", parse_image_urls(&r.image_urls)).unwrap_or_default(),
            media_ids: attach::parse_ids(&mut v, "media_ids", &r.media_ids),
            request_id: request_id(&mut v, &r.request_id),
        };
        v.finish()?;
        Ok(cmd)
    }
}

impl TryFrom<pb::UpdatePostRequest> for UpdatePost {
    type Error = AppError;
    fn try_from(r: pb::UpdatePostRequest) -> Result<Self, AppError> {
        let mut v = Violations::new();
        let post_id = id(&mut v, "post_id", &r.post_id);
        let mut patch = PostPatch::default();
        for path in mask(&mut v, r.update_mask.as_ref(), &["text", "tags", "image_urls", "media_ids"]) {
            match path.as_str() {
                "text" => patch.text = Some(text(&mut v, "text", &r.text, 1, MAX_POST_CHARS, true)),
                "tags" => patch.tags = v.check("tags", parse_tags(&r.tags, MAX_TAGS)),
                "image_urls" => patch.image_urls = v.check("image_urls", parse_image_urls(&r.image_urls)),
                "media_ids" => patch.media_ids = Some(attach::parse_ids(&mut v, "media_ids", &r.media_ids)),
                _ => {}
            }
        }
        let expected_version = v.check("etag", parse_etag(&r.etag, "post")).flatten();
        v.finish()?;
        Ok(UpdatePost { post_id, patch, expected_version })
    }
}

pub fn status_from_pb(raw: i32) -> AppResult<PostStatus> {
    match pb::PostStatus::try_from(raw) {
        Ok(pb::PostStatus::Published) => Ok(PostStatus::Published),
        Ok(pb::PostStatus::Suspended) => Ok(PostStatus::Suspended),
        _ => Err(AppError::invalid("status", "must be POST_STATUS_PUBLISHED or POST_STATUS_SUSPENDED")),
    }
}

impl TryFrom<&pb::ListPostsRequest> for PostFilter {
    type Error = AppError;
    fn try_from(r: &pb::ListPostsRequest) -> Result<Self, AppError> {
        let mut v = Violations::new();
        let mut filters = Vec::new();
        if !r.community_id.trim().is_empty() {
            filters.push(PostFilter::Community(id(&mut v, "community_id", &r.community_id)));
        }
        if !r.author_handle.trim().is_empty()
            && let Some(h) = v.check("author_handle", Handle::parse(&r.author_handle))
        {
            filters.push(PostFilter::Author(h.as_str().to_owned()));
        }
        if !r.tag.trim().is_empty()
            && let Some(t) = v.check("tag", parse_tag(&r.tag))
        {
            filters.push(PostFilter::Tag(t));
        }
        if !r.query.is_empty()
            && let Some(q) = v.check("query", parse_query(&r.query))
        {
            filters.push(PostFilter::Query(q));
        }
        v.finish()?;
        match filters.len() {
            1 => Ok(filters.remove(0)),
            0 => Err(AppError::invalid("community_id", "set exactly one of community_id, author_handle, tag, query")),
            _ => Err(AppError::invalid("query", "set exactly one of community_id, author_handle, tag, query")),
        }
    }
}

impl TryFrom<pb::CreateCommentRequest> for CreateComment {
    type Error = AppError;
    fn try_from(r: pb::CreateCommentRequest) -> Result<Self, AppError> {
        let mut v = Violations::new();
        let cmd = CreateComment {
            post_id: id(&mut v, "post_id", &r.post_id),
            parent_id: opt_id(&mut v, "parent_id", &r.parent_id),
            text: text(&mut v, "text", &r.text, 1, MAX_COMMENT_CHARS, true),
            request_id: request_id(&mut v, &r.request_id),
        };
        v.finish()?;
        Ok(cmd)
    }
}

/// A comment id and its new text.
pub fn comment_update(r: &pb::UpdateCommentRequest) -> AppResult<(Uuid, String)> {
    let mut v = Violations::new();
    let cid = id(&mut v, "comment_id", &r.comment_id);
    let t = text(&mut v, "text", &r.text, 1, MAX_COMMENT_CHARS, true);
    v.finish()?;
    Ok((cid, t))
}

/// Exactly one of `post_id` and `comment_id`.
pub fn target(post_id: &str, comment_id: &str) -> AppResult<Target> {
    let mut v = Violations::new();
    let p = opt_id(&mut v, "post_id", post_id);
    let c = opt_id(&mut v, "comment_id", comment_id);
    v.finish()?;
    match (p, c) {
        (Some(p), None) => Ok(Target::Post(p)),
        (None, Some(c)) => Ok(Target::Comment(c)),
        (None, None) => Err(AppError::invalid("post_id", "set exactly one of post_id and comment_id")),
        (Some(_), Some(_)) => Err(AppError::invalid("comment_id", "set exactly one of post_id and comment_id")),
    }
}

/// `v` with its attached `media` (`crate::media::attach::shown`).
pub fn post_to_pb(v: PostView, media: Vec<pb::Media>) -> pb::Post {
    let p = v.post;
    let etag = p.etag();
    let status = match p.status() {
        PostStatus::Published => pb::PostStatus::Published,
        PostStatus::Suspended => pb::PostStatus::Suspended,
    };
    pb::Post {
        id: p.id.to_string(),
        community_id: p.community_id.map(|c| c.to_string()).unwrap_or_default(),
        author: Some(pb::Author {
            user_id: p.author_id.to_string(),
            handle: p.author_handle,
            display_name: p.author_display_name,
            image_url: p.author_image_url,
        }),
        text: p.text,
        tags: p.tags,
        image_urls: p.image_urls,
        status: status as i32,
        view_count: p.view_count,
        like_count: p.like_count,
        comment_count: p.comment_count,
        liked_by_me: v.liked_by_me,
        etag,
        created_at: Some(timestamp(p.created_at)),
        updated_at: Some(timestamp(p.updated_at)),
        media,
    }
}

pub fn comment_to_pb(v: CommentView) -> pb::Comment {
    let c = v.comment;
    pb::Comment {
        id: c.id.to_string(),
        post_id: c.post_id.to_string(),
        parent_id: c.parent_id.map(|p| p.to_string()).unwrap_or_default(),
        author: Some(pb::Author {
            user_id: c.author_id.to_string(),
            handle: c.author_handle,
            display_name: c.author_display_name,
            image_url: c.author_image_url,
        }),
        text: c.text,
        like_count: c.like_count,
        reply_count: c.reply_count,
        liked_by_me: v.liked_by_me,
        suspended: c.suspended,
        created_at: Some(timestamp(c.created_at)),
        updated_at: Some(timestamp(c.updated_at)),
    }
}

pub fn liker_to_pb(l: Liker) -> pb::Liker {
    pb::Liker {
        user: Some(pb::Author {
            user_id: l.user_id.to_string(),
            handle: l.handle,
            display_name: l.display_name,
            image_url: l.image_url,
        }),
        liked_at: Some(timestamp(l.liked_at)),
    }
}
