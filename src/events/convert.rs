//! Requests → commands (every bad field reported) and models → messages.

use uuid::Uuid;

use super::model::{
    Attendance, Category, CheckIn, Coords, CreateEvent, EventPatch, EventUser, EventView, FeeStatus, ListEvents,
    MAX_ADDRESS_CHARS, MAX_DESCRIPTION_CHARS, MAX_FEE, MAX_TITLE_CHARS, MemberRow, ParticipantRow, Participation,
    PenaltyReason, PenaltyRow, PendingFeeRow, StatsRow, UpdateEvent, Venue,
};
use crate::error::{AppError, Violations};
use crate::fields::{id, mask, request_id, text, time, timestamp};
use crate::grpc::pb;

pub const UPDATABLE: &[&str] =
    &["title", "address", "location", "gender_category", "fee", "starts_at", "ends_at", "description"];

fn category(v: &mut Violations, field: &str, raw: i32, allow_all: bool) -> Category {
    match pb::GenderCategory::try_from(raw) {
        Ok(pb::GenderCategory::All) if allow_all => Category::All,
        Ok(pb::GenderCategory::Male) => Category::Male,
        Ok(pb::GenderCategory::Female) => Category::Female,
        _ => {
            v.add(field, if allow_all { "must be ALL, MALE or FEMALE" } else { "must be MALE or FEMALE" });
            Category::All
        }
    }
}

fn fee(v: &mut Violations, raw: i64) -> i64 {
    if !(0..=MAX_FEE).contains(&raw) {
        v.add("fee", format!("must be 0 to {MAX_FEE}"));
    }
    raw
}

fn coords(v: &mut Violations, lat: f64, lng: f64) -> Coords {
    match Coords::parse(lat, lng) {
        Ok(c) => c,
        Err((field, msg)) => {
            v.add(field, msg);
            Coords { latitude: 0.0, longitude: 0.0 }
        }
    }
}

/// Explicit coordinates: both or neither.
fn venue(v: &mut Violations, lat: Option<f64>, lng: Option<f64>) -> Venue {
    match (lat, lng) {
        (Some(lat), Some(lng)) => Venue::Explicit(coords(v, lat, lng)),
        (None, None) => Venue::Geocode,
        (Some(_), None) => {
            v.add("longitude", "is required with latitude");
            Venue::Geocode
        }
        (None, Some(_)) => {
            v.add("latitude", "is required with longitude");
            Venue::Geocode
        }
    }
}

impl TryFrom<pb::CreateEventRequest> for CreateEvent {
    type Error = AppError;
    fn try_from(r: pb::CreateEventRequest) -> Result<Self, AppError> {
        let mut v = Violations::new();
        let community_id = id(&mut v, "community_id", &r.community_id);
        let title = text(&mut v, "title", &r.title, 1, MAX_TITLE_CHARS, false);
        let address = text(&mut v, "address", &r.address, 1, MAX_ADDRESS_CHARS, false);
        let category = category(&mut v, "gender_category", r.gender_category, true);
        let fee = fee(&mut v, r.fee);
        let starts_at = time(&mut v, "starts_at", r.starts_at.as_ref(), true);
        let ends_at = time(&mut v, "ends_at", r.ends_at.as_ref(), true);
        if let (Some(s), Some(e)) = (starts_at, ends_at)
            && e <= s
        {
            v.add("ends_at", "must be after starts_at");
        }
        let description = text(&mut v, "description", &r.description, 0, MAX_DESCRIPTION_CHARS, true);
        let venue = venue(&mut v, r.latitude, r.longitude);
        let request_id = request_id(&mut v, &r.request_id);
        v.finish()?;
        Ok(CreateEvent {
            community_id,
            title,
            address,
            category,
            fee,
            starts_at: starts_at.unwrap_or_default(),
            ends_at: ends_at.unwrap_or_default(),
            description,
            venue,
            request_id,
        })
    }
}

impl TryFrom<pb::UpdateEventRequest> for UpdateEvent {
    type Error = AppError;
    fn try_from(r: pb::UpdateEventRequest) -> Result<Self, AppError> {
        let mut v = Violations::new();
        let event_id = id(&mut v, "event_id", &r.event_id);
        let paths = mask(&mut v, r.update_mask.as_ref(), UPDATABLE);
        let has = |p: &str| paths.iter().any(|x| x == p);
        let mut patch = EventPatch::default();
        if has("title") {
            patch.title = Some(text(&mut v, "title", &r.title, 1, MAX_TITLE_CHARS, false));
        }
        if has("address") {
            patch.address = Some(text(&mut v, "address", &r.address, 1, MAX_ADDRESS_CHARS, false));
        }
        if has("location") {
            match (r.latitude, r.longitude) {
                (Some(lat), Some(lng)) => patch.coords = Some(coords(&mut v, lat, lng)),
                _ => v.add("latitude", "latitude and longitude are required with mask path `location`"),
            }
        } else if has("address") {
            patch.geocode = true;
        }
        if has("gender_category") {
            patch.category = Some(category(&mut v, "gender_category", r.gender_category, true));
        }
        if has("fee") {
            patch.fee = Some(fee(&mut v, r.fee));
        }
        if has("starts_at") {
            patch.starts_at = time(&mut v, "starts_at", r.starts_at.as_ref(), true);
        }
        if has("ends_at") {
            patch.ends_at = time(&mut v, "ends_at", r.ends_at.as_ref(), true);
        }
        if has("description") {
            patch.description = Some(text(&mut v, "description", &r.description, 0, MAX_DESCRIPTION_CHARS, true));
        }
        v.finish()?;
        Ok(UpdateEvent { event_id, patch })
    }
}

impl TryFrom<pb::ListEventsRequest> for ListEvents {
    type Error = AppError;
    fn try_from(r: pb::ListEventsRequest) -> Result<Self, AppError> {
        let mut v = Violations::new();
        let community_id = id(&mut v, "community_id", &r.community_id);
        let from = time(&mut v, "from", r.from.as_ref(), false);
        let to = time(&mut v, "to", r.to.as_ref(), false);
        if let (Some(f), Some(t)) = (from, to)
            && t <= f
        {
            v.add("to", "must be after from");
        }
        v.finish()?;
        Ok(ListEvents { community_id, from, to, page_size: r.page_size, page_token: r.page_token })
    }
}

impl TryFrom<pb::CheckInRequest> for CheckIn {
    type Error = AppError;
    fn try_from(r: pb::CheckInRequest) -> Result<Self, AppError> {
        let mut v = Violations::new();
        let event_id = id(&mut v, "event_id", &r.event_id);
        let at = coords(&mut v, r.latitude, r.longitude);
        let request_id = request_id(&mut v, &r.request_id);
        v.finish()?;
        Ok(CheckIn { event_id, at, request_id })
    }
}

/// Required `event_id` and `user_id`.
pub fn event_user(event_id: &str, user_id: &str) -> Result<EventUser, AppError> {
    let mut v = Violations::new();
    let e = EventUser { event_id: id(&mut v, "event_id", event_id), user_id: id(&mut v, "user_id", user_id) };
    v.finish()?;
    Ok(e)
}

/// Required `community_id` and optional (`optional`) or required `user_id`.
pub fn community_user(community_id: &str, user_id: &str, optional: bool) -> Result<(Uuid, Option<Uuid>), AppError> {
    let mut v = Violations::new();
    let c = id(&mut v, "community_id", community_id);
    let u = if optional && user_id.trim().is_empty() { None } else { Some(id(&mut v, "user_id", user_id)) };
    v.finish()?;
    Ok((c, u))
}

/// A SetMemberGender request.
pub fn member_gender(r: &pb::SetMemberGenderRequest) -> Result<(Uuid, Uuid, Category), AppError> {
    let mut v = Violations::new();
    let c = id(&mut v, "community_id", &r.community_id);
    let u = id(&mut v, "user_id", &r.user_id);
    let g = category(&mut v, "gender", r.gender, false);
    v.finish()?;
    Ok((c, u, g))
}

pub fn category_to_pb(c: Category) -> pb::GenderCategory {
    match c {
        Category::All => pb::GenderCategory::All,
        Category::Male => pb::GenderCategory::Male,
        Category::Female => pb::GenderCategory::Female,
    }
}

pub fn attendance_to_pb(a: Attendance) -> pb::Attendance {
    match a {
        Attendance::Absent => pb::Attendance::Absent,
        Attendance::Attend => pb::Attendance::Attend,
        Attendance::Late => pb::Attendance::Late,
    }
}

pub fn fee_to_pb(f: FeeStatus) -> pb::FeeStatus {
    match f {
        FeeStatus::NotPaid => pb::FeeStatus::NotPaid,
        FeeStatus::Pending => pb::FeeStatus::Pending,
        FeeStatus::Paid => pb::FeeStatus::Paid,
    }
}

fn attendance_db(s: &str) -> i32 {
    Attendance::from_db(s).map_or(pb::Attendance::Unspecified, attendance_to_pb) as i32
}

fn fee_db(s: &str) -> i32 {
    FeeStatus::from_db(s).map_or(pb::FeeStatus::Unspecified, fee_to_pb) as i32
}

impl From<EventView> for pb::Event {
    fn from(e: EventView) -> Self {
        pb::Event {
            id: e.id.to_string(),
            community_id: e.community_id.to_string(),
            title: e.title,
            address: e.address,
            latitude: e.coords.latitude,
            longitude: e.coords.longitude,
            gender_category: category_to_pb(e.category) as i32,
            fee: e.fee,
            starts_at: Some(timestamp(e.starts_at)),
            ends_at: Some(timestamp(e.ends_at)),
            description: e.description,
            settled_at: e.settled_at.map(timestamp),
            participant_count: i32::try_from(e.participant_count).unwrap_or(i32::MAX),
            my_participation: e.mine.map(|p: Participation| pb::Participation {
                attendance: attendance_to_pb(p.attendance) as i32,
                fee_status: fee_to_pb(p.fee_status) as i32,
                checked_in_at: p.checked_in_at.map(timestamp),
            }),
            created_at: Some(timestamp(e.created_at)),
        }
    }
}

impl From<ParticipantRow> for pb::Participant {
    fn from(p: ParticipantRow) -> Self {
        pb::Participant {
            user_id: p.user_id.to_string(),
            handle: p.handle,
            display_name: p.display_name,
            attendance: attendance_db(&p.attendance),
            fee_status: fee_db(&p.fee_status),
            checked_in_at: p.checked_in_at.map(timestamp),
        }
    }
}

impl From<MemberRow> for pb::Member {
    fn from(m: MemberRow) -> Self {
        pb::Member { user_id: m.user_id.to_string(), handle: m.handle, display_name: m.display_name }
    }
}

impl From<PendingFeeRow> for pb::PendingFee {
    fn from(f: PendingFeeRow) -> Self {
        pb::PendingFee {
            event_id: f.event_id.to_string(),
            event_title: f.event_title,
            user_id: f.user_id.to_string(),
            handle: f.handle,
            fee: f.fee,
            reported_at: Some(timestamp(f.reported_at)),
        }
    }
}

impl From<StatsRow> for pb::MemberStats {
    fn from(s: StatsRow) -> Self {
        pb::MemberStats {
            user_id: s.user_id.to_string(),
            handle: s.handle,
            total: s.total,
            joined: s.joined,
            attended: s.attended,
            late: s.late,
            absent: s.absent,
            penalty_points: s.penalty_points,
        }
    }
}

impl From<PenaltyRow> for pb::Penalty {
    fn from(p: PenaltyRow) -> Self {
        let reason = match PenaltyReason::from_db(&p.reason) {
            Some(PenaltyReason::Absent) => pb::PenaltyReason::Absent,
            Some(PenaltyReason::Late) => pb::PenaltyReason::Late,
            Some(PenaltyReason::NotPaid) => pb::PenaltyReason::NotPaid,
            None => pb::PenaltyReason::Unspecified,
        };
        pb::Penalty {
            id: p.id.to_string(),
            event_id: p.event_id.to_string(),
            user_id: p.user_id.to_string(),
            reason: reason as i32,
            points: p.points,
            created_at: Some(timestamp(p.created_at)),
        }
    }
}
