//! Protobuf ⇄ model conversions for profiles and follows.

use super::model::{
    Profile, ProfileCard, ProfilePatch, ProfileSearch, ProfileSummary, parse_bio, parse_links, parse_tech_tags,
};
use crate::accounts::{Handle, parse_display_name};
use crate::error::{AppError, Violations};
use crate::fields::{enum_value, mask, parse_etag, parse_query, parse_tag, parse_url, timestamp};
use crate::grpc::pb;
use crate::media::attach;
use crate::teams::activity;

const PROFILE_FIELDS: &[&str] =
    &["display_name", "bio", "link1", "link2", "image_url", "position", "tech_tags", "links", "media_id"];

const POSITION_PREFIX: &str = "DEVELOPER_POSITION_";

/// A position as stored: the enum's name without its prefix (`BACKEND`), empty for UNSPECIFIED.
fn position_to_db(p: pb::DeveloperPosition) -> String {
    match p {
        pb::DeveloperPosition::Unspecified => String::new(),
        p => p.as_str_name().trim_start_matches(POSITION_PREFIX).to_owned(),
    }
}

fn position_to_pb(s: &str) -> i32 {
    if s.is_empty() {
        return pb::DeveloperPosition::Unspecified as i32;
    }
    pb::DeveloperPosition::from_str_name(&format!("{POSITION_PREFIX}{s}")).unwrap_or(pb::DeveloperPosition::Unspecified)
        as i32
}

impl TryFrom<pb::UpdateProfileRequest> for ProfilePatch {
    type Error = AppError;
    fn try_from(r: pb::UpdateProfileRequest) -> Result<Self, AppError> {
        let mut v = Violations::new();
        let mut p = ProfilePatch {
            expected_version: v.check("etag", parse_etag(&r.etag, "profile")).flatten(),
            ..Default::default()
        };
        for path in mask(&mut v, r.update_mask.as_ref(), PROFILE_FIELDS) {
            match path.as_str() {
                "display_name" => p.display_name = v.check("display_name", parse_display_name(&r.display_name)),
                "bio" => p.bio = v.check("bio", parse_bio(&r.bio)),
                "link1" => p.link1 = v.check("link1", parse_url(&r.link1)),
                "link2" => p.link2 = v.check("link2", parse_url(&r.link2)),
                "image_url" => p.image_url = v.check("image_url", parse_url(&r.image_url)),
                "position" => {
                    p.position = v
                        .check("position", enum_value::<pb::DeveloperPosition>(r.position, "position"))
                        .map(position_to_db)
                }
                "tech_tags" => p.tech_tags = v.check("tech_tags", parse_tech_tags(&r.tech_tags)),
                "links" => p.links = v.check("links", parse_links(&r.links)),
                "media_id" => p.media_ids = Some(attach::parse_one(&mut v, "media_id", &r.media_id)),
                _ => {}
            }
        }
        v.finish()?;
        Ok(p)
    }
}

/// A profile for the wire; `activity` is the reader's view of the member's team history,
/// `media` its picture (`crate::media::attach::shown`).
pub fn profile_to_pb(p: Profile, activity: Option<pb::ProfileActivityCounts>, media: Option<pb::Media>) -> pb::Profile {
    pb::Profile {
        user_id: p.user_id.to_string(),
        etag: p.etag(),
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
        position: position_to_pb(&p.position),
        tech_tags: p.tech_tags,
        links: p.links,
        follows_me: p.follows_me,
        activity,
        media,
    }
}

/// ListProfileActivity's handle and kind, or every bad field.
pub fn activity_request(r: &pb::ListProfileActivityRequest) -> Result<(Handle, activity::Kind), AppError> {
    let mut v = Violations::new();
    let handle = v.check("handle", Handle::parse(&r.handle));
    let kind = v.check("kind", activity::activity_kind(r.kind));
    v.finish()?;
    match (handle, kind) {
        (Some(h), Some(k)) => Ok((h, k)),
        _ => Err(AppError::invalid("handle", "is required")),
    }
}

impl TryFrom<&pb::SearchProfilesRequest> for ProfileSearch {
    type Error = AppError;
    fn try_from(r: &pb::SearchProfilesRequest) -> Result<Self, AppError> {
        let mut v = Violations::new();
        let query = if r.query.trim().is_empty() { None } else { v.check("query", parse_query(&r.query)) };
        let position = match v.check("position", enum_value::<pb::DeveloperPosition>(r.position, "position")) {
            Some(pb::DeveloperPosition::Unspecified) | None => None,
            Some(p) => Some(position_to_db(p)),
        };
        let tech_tag = if r.tech_tag.trim().is_empty() { None } else { v.check("tech_tag", parse_tag(&r.tech_tag)) };
        let s = ProfileSearch { query, position, tech_tag };
        if v.is_empty() && s == ProfileSearch::default() {
            v.add("query", "give a query (2 or more characters), a position or a tech tag");
        }
        v.finish()?;
        Ok(s)
    }
}

pub fn card_to_pb(c: ProfileCard) -> pb::ProfileCard {
    pb::ProfileCard {
        user_id: c.user_id.to_string(),
        handle: c.handle,
        display_name: c.display_name,
        image_url: c.image_url,
        bio: c.bio,
        position: position_to_pb(&c.position),
        tech_tags: c.tech_tags,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip() {
        for raw in 0..=10 {
            let p = pb::DeveloperPosition::try_from(raw).unwrap();
            assert_eq!(position_to_pb(&position_to_db(p)), raw);
        }
        assert_eq!(position_to_db(pb::DeveloperPosition::Fullstack), "FULLSTACK");
        assert!(pb::DeveloperPosition::try_from(11).is_err(), "a new position needs the users_dev_position_check");
    }
}
