//! Protobuf ⇄ model conversions for profiles and follows.

use super::model::{Profile, ProfilePatch, ProfileSummary, parse_bio};
use crate::accounts::parse_display_name;
use crate::error::{AppError, Violations};
use crate::fields::{mask, parse_url, timestamp};
use crate::grpc::pb;

const PROFILE_FIELDS: &[&str] = &["display_name", "bio", "link1", "link2", "image_url"];

impl TryFrom<pb::UpdateProfileRequest> for ProfilePatch {
    type Error = AppError;
    fn try_from(r: pb::UpdateProfileRequest) -> Result<Self, AppError> {
        let mut v = Violations::new();
        let mut p = ProfilePatch::default();
        for path in mask(&mut v, r.update_mask.as_ref(), PROFILE_FIELDS) {
            match path.as_str() {
                "display_name" => p.display_name = v.check("display_name", parse_display_name(&r.display_name)),
                "bio" => p.bio = v.check("bio", parse_bio(&r.bio)),
                "link1" => p.link1 = v.check("link1", parse_url(&r.link1)),
                "link2" => p.link2 = v.check("link2", parse_url(&r.link2)),
                "image_url" => p.image_url = v.check("image_url", parse_url(&r.image_url)),
                _ => {}
            }
        }
        v.finish()?;
        Ok(p)
    }
}

pub fn profile_to_pb(p: Profile) -> pb::Profile {
    pb::Profile {
        user_id: p.user_id.to_string(),
        handle: p.handle,
        display_name: p.display_name,
        bio: p.bio,
        link1: p.link1,
        link2: p.link2,
        image_url: p.image_url,
        follower_count: p.follower_count,
        following_count: p.following_count,
        followed_by_me: p.followed_by_me,
        created_at: Some(timestamp(p.created_at)),
    }
}

pub fn summary_to_pb(p: ProfileSummary) -> pb::ProfileSummary {
    pb::ProfileSummary {
        user_id: p.user_id.to_string(),
        handle: p.handle,
        display_name: p.display_name,
        image_url: p.image_url,
        followed_at: Some(timestamp(p.followed_at)),
    }
}
