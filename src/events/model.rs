//! Event rules without I/O: categories, attendance, fee states, distance and the check-in window.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::db::db_enum;
use crate::error::Reason;
use crate::idempotency::RequestId;

/// Mean Earth radius used by the haversine distance, metres.
pub const EARTH_RADIUS_M: f64 = 6_371_000.0;
pub const MAX_TITLE_CHARS: usize = 100;
pub const MAX_ADDRESS_CHARS: usize = 300;
pub const MAX_DESCRIPTION_CHARS: usize = 2_000;
pub const MAX_FEE: i64 = 10_000_000;

db_enum!(Category { All => "ALL", Male => "MALE", Female => "FEMALE", });
db_enum!(Attendance { Absent => "ABSENT", Attend => "ATTEND", Late => "LATE", });
db_enum!(FeeStatus { NotPaid => "NOT_PAID", Pending => "PENDING", Paid => "PAID", });
db_enum!(PenaltyReason { Absent => "ABSENT", Late => "LATE", NotPaid => "NOT_PAID", });

impl Category {
    /// Whether a member of `gender` (None: not set) belongs to this category.
    pub fn admits(self, gender: Option<Category>) -> bool {
        self == Category::All || gender == Some(self)
    }
}

impl FeeStatus {
    pub fn label(self) -> &'static str {
        match self {
            FeeStatus::NotPaid => "not_paid",
            FeeStatus::Pending => "pending",
            FeeStatus::Paid => "paid",
        }
    }
}

impl PenaltyReason {
    pub fn label(self) -> &'static str {
        match self {
            PenaltyReason::Absent => "absent",
            PenaltyReason::Late => "late",
            PenaltyReason::NotPaid => "not_paid",
        }
    }
}

/// A venue: latitude and longitude in degrees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Coords {
    pub latitude: f64,
    pub longitude: f64,
}

impl Coords {
    /// Range-checked coordinates.
    pub fn parse(latitude: f64, longitude: f64) -> Result<Self, (&'static str, &'static str)> {
        if !latitude.is_finite() || !(-90.0..=90.0).contains(&latitude) {
            return Err(("latitude", "must be between -90 and 90"));
        }
        if !longitude.is_finite() || !(-180.0..=180.0).contains(&longitude) {
            return Err(("longitude", "must be between -180 and 180"));
        }
        Ok(Self { latitude, longitude })
    }
}

/// Great-circle distance in metres (haversine, R = 6,371,000 m).
pub fn haversine_m(a: Coords, b: Coords) -> f64 {
    let (p1, p2) = (a.latitude.to_radians(), b.latitude.to_radians());
    let dp = (b.latitude - a.latitude).to_radians();
    let dl = (b.longitude - a.longitude).to_radians();
    let h = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * h.sqrt().min(1.0).asin()
}

/// Check-in rules (from settings).
#[derive(Debug, Clone, Copy)]
pub struct CheckInRules {
    pub radius_m: f64,
    pub opens_before: Duration,
    pub late_after: Duration,
}

/// What a check-in request finds: the clock, the event's window and settlement, the distance to
/// the venue and whether the participant has checked in already.
#[derive(Debug, Clone, Copy)]
pub struct CheckInFacts {
    pub now: DateTime<Utc>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub settled: bool,
    pub distance_m: f64,
    pub checked_in: bool,
}

/// The result of a check-in, or the reason it is refused, decided in the order of
/// docs/events.md: the event ended (or was settled), not open yet, too far, already checked in;
/// then ATTEND up to `late_after` past the start (inclusive), LATE after. A participant who
/// checked in and tries again after the end hears that the event ended, not that they are in.
pub fn check_in(rules: &CheckInRules, f: &CheckInFacts) -> Result<Attendance, Reason> {
    if f.settled || f.now >= f.ends_at {
        Err(Reason::EventEnded)
    } else if f.now < f.starts_at - rules.opens_before {
        Err(Reason::NotOpenYet)
    } else if f.distance_m > rules.radius_m {
        Err(Reason::TooFar)
    } else if f.checked_in {
        Err(Reason::AlreadyCheckedIn)
    } else if f.now <= f.starts_at + rules.late_after {
        Ok(Attendance::Attend)
    } else {
        Ok(Attendance::Late)
    }
}

/// A distance as shown to a person, metres with one decimal, rounded **up**: a refused
/// distance is never shown as the radius or less (400.01 m is "400.1", not "400.0" or "400").
pub fn shown_metres(distance_m: f64) -> String {
    let mut tenths = (distance_m * 10.0).ceil();
    // `distance_m * 10.0` is rounded: never show less than the distance, and keep a value that
    // is already a tenth (400.1 is 400.1000000000000227 in binary) at itself.
    if tenths / 10.0 < distance_m {
        tenths += 1.0;
    } else if (tenths - 1.0) / 10.0 >= distance_m {
        tenths -= 1.0;
    }
    format!("{:.1}", tenths.max(0.0) / 10.0)
}

/// A configured radius as shown to a person: no trailing ".0" (400 → "400", 400.5 → "400.5").
pub fn shown_radius(radius_m: f64) -> String {
    format!("{radius_m}")
}

/// The TOO_FAR message: the distance rounded up so it always reads as more than the radius.
pub fn too_far_message(distance_m: f64, radius_m: f64) -> String {
    format!(
        "you are {} m from the venue; check-in needs {} m or less",
        shown_metres(distance_m),
        shown_radius(radius_m)
    )
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct EventRow {
    pub id: Uuid,
    pub community_id: Uuid,
    pub title: String,
    pub address: String,
    pub latitude: f64,
    pub longitude: f64,
    pub gender_category: String,
    pub fee: i64,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub description: String,
    pub settled_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub participant_count: i64,
}

impl EventRow {
    pub fn category(&self) -> Category {
        Category::from_db(&self.gender_category).unwrap_or(Category::All)
    }
}

/// An event as the caller sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventView {
    pub id: Uuid,
    pub community_id: Uuid,
    pub title: String,
    pub address: String,
    pub coords: Coords,
    pub category: Category,
    pub fee: i64,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub description: String,
    pub settled_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub participant_count: i64,
    pub mine: Option<Participation>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Participation {
    pub attendance: Attendance,
    pub fee_status: FeeStatus,
    pub checked_in_at: Option<DateTime<Utc>>,
}

/// A participant row joined with the user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct ParticipantRow {
    pub user_id: Uuid,
    pub handle: String,
    pub display_name: String,
    pub attendance: String,
    pub fee_status: String,
    pub checked_in_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct MemberRow {
    pub user_id: Uuid,
    pub handle: String,
    pub display_name: String,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct PendingFeeRow {
    pub event_id: Uuid,
    pub event_title: String,
    pub user_id: Uuid,
    pub handle: String,
    pub fee: i64,
    pub reported_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct StatsRow {
    pub user_id: Uuid,
    pub handle: String,
    pub total: i32,
    pub joined: i32,
    pub attended: i32,
    pub late: i32,
    pub absent: i32,
    pub penalty_points: i32,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct PenaltyRow {
    pub id: Uuid,
    pub event_id: Uuid,
    pub user_id: Uuid,
    pub reason: String,
    pub points: i32,
    pub created_at: DateTime<Utc>,
}

/// Where the venue comes from.
#[derive(Debug, Clone, Serialize)]
pub enum Venue {
    Explicit(Coords),
    Geocode,
}

#[derive(Debug, Serialize)]
pub struct CreateEvent {
    pub community_id: Uuid,
    pub title: String,
    pub address: String,
    pub category: Category,
    pub fee: i64,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub description: String,
    pub venue: Venue,
    #[serde(skip)]
    pub request_id: Option<RequestId>,
}

/// The fields an UpdateEvent changes (`None`: unchanged).
#[derive(Debug, Default)]
pub struct EventPatch {
    pub title: Option<String>,
    pub address: Option<String>,
    pub coords: Option<Coords>,
    /// The address changed without explicit coordinates: geocode it.
    pub geocode: bool,
    pub category: Option<Category>,
    pub fee: Option<i64>,
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: Option<DateTime<Utc>>,
    pub description: Option<String>,
}

#[derive(Debug)]
pub struct UpdateEvent {
    pub event_id: Uuid,
    pub patch: EventPatch,
}

#[derive(Debug)]
pub struct ListEvents {
    pub community_id: Uuid,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub page_size: i32,
    pub page_token: String,
}

/// An (event, user) pair named by a manager RPC.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct EventUser {
    pub event_id: Uuid,
    pub user_id: Uuid,
}

#[derive(Debug, Serialize)]
pub struct CheckIn {
    pub event_id: Uuid,
    pub at: Coords,
    #[serde(skip)]
    pub request_id: Option<RequestId>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> CheckInRules {
        CheckInRules { radius_m: 400.0, opens_before: Duration::minutes(60), late_after: Duration::minutes(20) }
    }

    #[test]
    fn haversine_matches_known_distances() {
        let seoul_station = Coords { latitude: 37.5547, longitude: 126.9707 };
        let city_hall = Coords { latitude: 37.5663, longitude: 126.9779 };
        let d = haversine_m(seoul_station, city_hall);
        assert!((d - 1_437.5).abs() < 1.0, "{d}");
        assert_eq!(haversine_m(city_hall, city_hall), 0.0);
        // One degree of latitude is R·π/180.
        let d = haversine_m(Coords { latitude: 0.0, longitude: 0.0 }, Coords { latitude: 1.0, longitude: 0.0 });
        assert!((d - EARTH_RADIUS_M * std::f64::consts::PI / 180.0).abs() < 1e-6);
    }

    fn facts(now: DateTime<Utc>, s: DateTime<Utc>, e: DateTime<Utc>, distance_m: f64) -> CheckInFacts {
        CheckInFacts { now, starts_at: s, ends_at: e, settled: false, distance_m, checked_in: false }
    }

    #[test]
    fn window_boundaries() {
        let s = Utc::now();
        let e = s + Duration::hours(2);
        let r = rules();
        let at = |m: i64| check_in(&r, &facts(s + Duration::minutes(m), s, e, 10.0));
        assert_eq!(at(-61), Err(Reason::NotOpenYet));
        assert_eq!(at(-59), Ok(Attendance::Attend));
        assert_eq!(at(19), Ok(Attendance::Attend));
        assert_eq!(at(20), Ok(Attendance::Attend));
        assert_eq!(at(21), Ok(Attendance::Late));
        assert_eq!(at(120), Err(Reason::EventEnded));
        assert_eq!(check_in(&r, &facts(s, s, e, 401.0)), Err(Reason::TooFar));
        assert_eq!(check_in(&r, &facts(s, s, e, 399.0)), Ok(Attendance::Attend));
        assert_eq!(check_in(&r, &facts(s, s, e, 400.0)), Ok(Attendance::Attend));
        assert_eq!(check_in(&r, &facts(s, s, e, 400.05)), Err(Reason::TooFar));
    }

    /// docs/events.md: ended, not open yet, too far, already checked in, then the attendance.
    #[test]
    fn refusals_follow_the_documented_order() {
        let s = Utc::now();
        let e = s + Duration::hours(2);
        let r = rules();
        let checked_in =
            |now: DateTime<Utc>, distance_m: f64| CheckInFacts { checked_in: true, ..facts(now, s, e, distance_m) };
        // After the end, a participant who checked in hears EVENT_ENDED, near or far.
        assert_eq!(check_in(&r, &checked_in(e, 10.0)), Err(Reason::EventEnded));
        assert_eq!(check_in(&r, &checked_in(e + Duration::days(1), 5_000.0)), Err(Reason::EventEnded));
        // Settled counts as ended, even if the clock says otherwise.
        let settled = CheckInFacts { settled: true, ..checked_in(s, 10.0) };
        assert_eq!(check_in(&r, &settled), Err(Reason::EventEnded));
        // Before the window the window wins over the distance and the earlier check-in.
        assert_eq!(check_in(&r, &checked_in(s - Duration::hours(2), 5_000.0)), Err(Reason::NotOpenYet));
        // In the window: too far before already checked in.
        assert_eq!(check_in(&r, &checked_in(s, 5_000.0)), Err(Reason::TooFar));
        assert_eq!(check_in(&r, &checked_in(s, 10.0)), Err(Reason::AlreadyCheckedIn));
        assert_eq!(check_in(&r, &checked_in(s + Duration::minutes(30), 10.0)), Err(Reason::AlreadyCheckedIn));
    }

    #[test]
    fn shown_distances_never_round_down_to_the_radius() {
        assert_eq!(shown_metres(400.05), "400.1");
        assert_eq!(shown_metres(400.01), "400.1");
        assert_eq!(shown_metres(400.000_001), "400.1");
        assert_eq!(shown_metres(400.1), "400.1");
        assert_eq!(shown_metres(400.0), "400.0");
        assert_eq!(shown_metres(1_437.46), "1437.5");
        assert_eq!(shown_metres(0.0), "0.0");
        assert_eq!(shown_radius(400.0), "400");
        assert_eq!(shown_radius(400.5), "400.5");
        assert_eq!(too_far_message(400.05, 400.0), "you are 400.1 m from the venue; check-in needs 400 m or less");
        // Every refused distance reads as more than the radius.
        for d in [400.000_000_000_1, 400.000_000_1, 400.001, 400.04, 400.05, 400.09, 400.099_999] {
            let shown: f64 = shown_metres(d).parse().unwrap();
            assert!(shown > 400.0, "{d} shown as {shown}");
        }
    }

    #[test]
    fn categories_and_coords() {
        assert!(Category::All.admits(None));
        assert!(Category::Male.admits(Some(Category::Male)));
        assert!(!Category::Male.admits(Some(Category::Female)));
        assert!(!Category::Female.admits(None));
        assert!(Coords::parse(37.0, 127.0).is_ok());
        assert_eq!(Coords::parse(91.0, 0.0).unwrap_err().0, "latitude");
        assert_eq!(Coords::parse(0.0, f64::NAN).unwrap_err().0, "longitude");
    }
}
