//! Protobuf ⇄ model conversions for communities. Requests become commands or every bad field
//! is reported at once; no description repeats a submitted building or unit.

use uuid::Uuid;

use super::model::{
    Community, Decision, JoinRequest, Kind, MemberRole, Membership, MyCommunity, NewCommunity, SearchQuery, Status,
    parse_address, parse_external_code, parse_join_code, parse_name, parse_note,
};
use crate::error::{AppError, AppResult, Violations};
use crate::fields::{enum_value, parse_id, parse_query, request_id, timestamp};
use crate::grpc::pb;

pub fn kind_to_pb(k: Kind) -> pb::CommunityKind {
    match k {
        Kind::Apartment => pb::CommunityKind::Apartment,
        Kind::Club => pb::CommunityKind::Club,
        Kind::SportsClub => pb::CommunityKind::SportsClub,
    }
}

/// A kind field: `Ok(None)` for UNSPECIFIED, an error for unknown numbers.
fn kind_from_pb(raw: i32) -> Result<Option<Kind>, String> {
    Ok(match enum_value::<pb::CommunityKind>(raw, "community kind")? {
        pb::CommunityKind::Unspecified => None,
        pb::CommunityKind::Apartment => Some(Kind::Apartment),
        pb::CommunityKind::Club => Some(Kind::Club),
        pb::CommunityKind::SportsClub => Some(Kind::SportsClub),
    })
}

/// A role field: `Ok(None)` for UNSPECIFIED.
pub fn role_from_pb(raw: i32) -> Result<Option<MemberRole>, String> {
    Ok(match enum_value::<pb::MemberRole>(raw, "member role")? {
        pb::MemberRole::Unspecified => None,
        pb::MemberRole::Member => Some(MemberRole::Member),
        pb::MemberRole::Manager => Some(MemberRole::Manager),
    })
}

fn status_to_pb(s: Status) -> pb::MembershipStatus {
    match s {
        Status::Pending => pb::MembershipStatus::Pending,
        Status::Approved => pb::MembershipStatus::Approved,
        Status::Rejected => pb::MembershipStatus::Rejected,
    }
}

fn role_to_pb(r: MemberRole) -> pb::MemberRole {
    match r {
        MemberRole::Member => pb::MemberRole::Member,
        MemberRole::Manager => pb::MemberRole::Manager,
    }
}

pub fn community_to_pb(c: Community) -> pb::Community {
    pb::Community {
        id: c.id.to_string(),
        kind: kind_to_pb(c.kind) as i32,
        name: c.name,
        address: c.address,
        external_code: c.external_code.unwrap_or_default(),
        bjd_code: c.bjd_code.unwrap_or_default(),
        join_code: c.join_code.unwrap_or_default(),
        member_count: i32::try_from(c.member_count).unwrap_or(i32::MAX),
        created_at: Some(timestamp(c.created_at)),
        updated_at: Some(timestamp(c.updated_at)),
    }
}

pub fn membership_to_pb(m: Membership) -> pb::Membership {
    pb::Membership {
        id: m.id.to_string(),
        community_id: m.community_id.to_string(),
        user_id: m.user_id.to_string(),
        user_handle: m.user_handle,
        user_display_name: m.user_display_name,
        status: status_to_pb(m.status) as i32,
        role: role_to_pb(m.role) as i32,
        building: m.building.unwrap_or_default(),
        unit: m.unit.unwrap_or_default(),
        note: m.note.unwrap_or_default(),
        created_at: Some(timestamp(m.created_at)),
        decided_at: m.decided_at.map(timestamp),
    }
}

pub fn my_community_to_pb(m: MyCommunity) -> pb::MyCommunity {
    pb::MyCommunity { community: Some(community_to_pb(m.community)), membership: m.membership.map(membership_to_pb) }
}

impl TryFrom<&pb::SearchCommunitiesRequest> for SearchQuery {
    type Error = AppError;
    fn try_from(r: &pb::SearchCommunitiesRequest) -> Result<Self, AppError> {
        let mut v = Violations::new();
        let text = v.check("query", parse_query(&r.query));
        let kind = v.check("kind", kind_from_pb(r.kind));
        if r.page_size < 0 {
            v.add("page_size", "must not be negative");
        }
        v.finish()?;
        Ok(SearchQuery { text: text.unwrap_or_default(), kind: kind.flatten() })
    }
}

impl TryFrom<pb::CreateCommunityRequest> for NewCommunity {
    type Error = AppError;
    fn try_from(r: pb::CreateCommunityRequest) -> Result<Self, AppError> {
        let mut v = Violations::new();
        let kind = match kind_from_pb(r.kind) {
            Ok(Some(k)) => Some(k),
            Ok(None) => {
                v.add("kind", "is required");
                None
            }
            Err(e) => {
                v.add("kind", e);
                None
            }
        };
        let name = v.check("name", parse_name(&r.name));
        let address = v.check("address", parse_address(&r.address));
        let join_code = match (kind, r.join_code.trim().is_empty()) {
            (Some(Kind::SportsClub), true) => {
                v.add("join_code", "is required for a sports club");
                None
            }
            (Some(Kind::SportsClub), false) => v.check("join_code", parse_join_code(&r.join_code)),
            (_, false) => {
                v.add("join_code", "is only for sports clubs");
                None
            }
            (_, true) => None,
        };
        let external_code = if r.external_code.trim().is_empty() {
            None
        } else {
            v.check("external_code", parse_external_code(&r.external_code))
        };
        let request_id = request_id(&mut v, &r.request_id);
        v.finish()?;
        match (kind, name, address) {
            (Some(kind), Some(name), Some(address)) => {
                Ok(NewCommunity { kind, name, address, join_code, external_code, request_id })
            }
            _ => Err(AppError::internal("validated fields missing")),
        }
    }
}

impl TryFrom<pb::RequestMembershipRequest> for JoinRequest {
    type Error = AppError;
    fn try_from(r: pb::RequestMembershipRequest) -> Result<Self, AppError> {
        let mut v = Violations::new();
        let community_id = v.check("community_id", parse_id(&r.community_id));
        let request_id = request_id(&mut v, &r.request_id);
        v.finish()?;
        Ok(JoinRequest {
            community_id: community_id.unwrap_or_default(),
            building: r.building,
            unit: r.unit,
            verification_code: r.verification_code,
            request_id,
        })
    }
}

impl TryFrom<pb::DecideMembershipRequest> for Decision {
    type Error = AppError;
    fn try_from(r: pb::DecideMembershipRequest) -> Result<Self, AppError> {
        let mut v = Violations::new();
        let id = v.check("membership_id", parse_id(&r.membership_id));
        let note = v.check("note", parse_note(&r.note));
        v.finish()?;
        match (id, note) {
            (Some(membership_id), Some(note)) => Ok(Decision { membership_id, approve: r.approve, note }),
            _ => Err(AppError::internal("validated fields missing")),
        }
    }
}

/// Most requests one DecideMemberships call decides.
pub const MAX_BULK_DECISIONS: usize = 100;

/// DecideMemberships' community, distinct membership ids (1–100) and note.
pub fn bulk_decision(r: &pb::DecideMembershipsRequest) -> AppResult<(Uuid, Vec<Uuid>, Option<String>)> {
    let mut v = Violations::new();
    let c = v.check("community_id", parse_id(&r.community_id));
    let mut ids = Vec::new();
    if r.membership_ids.is_empty() || r.membership_ids.len() > MAX_BULK_DECISIONS {
        v.add("membership_ids", format!("name 1 to {MAX_BULK_DECISIONS} membership requests"));
    }
    for (i, raw) in r.membership_ids.iter().enumerate() {
        if let Some(id) = v.check(&format!("membership_ids[{i}]"), parse_id(raw))
            && !ids.contains(&id)
        {
            ids.push(id);
        }
    }
    let note = v.check("note", parse_note(&r.note));
    v.finish()?;
    match (c, note) {
        (Some(c), Some(note)) => Ok((c, ids, note)),
        _ => Err(AppError::internal("validated fields missing")),
    }
}

/// ListMembers' optional `query`: part of a display name or handle, 2–100 characters.
pub fn member_query(raw: &str) -> AppResult<Option<String>> {
    if raw.trim().is_empty() {
        return Ok(None);
    }
    parse_query(raw).map(Some).map_err(|e| AppError::invalid("query", e))
}

/// `community_id` and `user_id` of SetMemberRole / RemoveMember, both reported when bad.
pub fn community_and_user(community_id: &str, user_id: &str) -> AppResult<(Uuid, Uuid)> {
    let mut v = Violations::new();
    let c = v.check("community_id", parse_id(community_id));
    let u = v.check("user_id", parse_id(user_id));
    v.finish()?;
    match (c, u) {
        (Some(c), Some(u)) => Ok((c, u)),
        _ => Err(AppError::internal("validated fields missing")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(e: AppError) -> Vec<String> {
        match e {
            AppError::Invalid { violations, .. } => violations.into_iter().map(|v| v.field).collect(),
            other => panic!("not invalid: {other:?}"),
        }
    }

    #[test]
    fn create_reports_every_bad_field() {
        let r = pb::CreateCommunityRequest {
            kind: 0,
            name: " ".into(),
            address: "x".repeat(201),
            join_code: "code".into(),
            external_code: "A 1".into(),
            request_id: "bad id".into(),
        };
        assert_eq!(
            fields(NewCommunity::try_from(r).unwrap_err()),
            ["kind", "name", "address", "join_code", "external_code", "request_id"]
        );
        let r = pb::CreateCommunityRequest {
            kind: pb::CommunityKind::SportsClub as i32,
            name: "FC".into(),
            ..Default::default()
        };
        assert_eq!(fields(NewCommunity::try_from(r).unwrap_err()), ["join_code"]);
    }

    #[test]
    fn search_needs_two_characters() {
        let r = pb::SearchCommunitiesRequest { query: " 파 ".into(), kind: 9, ..Default::default() };
        assert_eq!(fields(SearchQuery::try_from(&r).unwrap_err()), ["query", "kind"]);
    }
}
