//! The one error type of the crate and its one mapping to `tonic::Status`.
//!
//! Every non-OK status carries `google.rpc.ErrorInfo{reason, domain: "maru"}` and a
//! `RequestInfo` with the request id. Invalid input carries `BadRequest.field_violations`.
//! Unique violations map by constraint name ([`UNIQUE_CONSTRAINTS`]) to ALREADY_EXISTS.
//! Internal errors are logged once here, with their chain; the client sees only
//! "internal error" and the request id. Every reason is listed in `docs/errors.md`.

use std::collections::BTreeMap;
use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

use crate::request_id;

pub type AppResult<T> = Result<T, AppError>;

macro_rules! reasons {
    ($($variant:ident => $text:literal,)*) => {
        /// Machine-readable error reasons (`ErrorInfo.reason`), catalogued in `docs/errors.md`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Reason { $($variant,)* }

        impl Reason {
            pub const ALL: &'static [Reason] = &[$(Reason::$variant,)*];
            pub fn as_str(self) -> &'static str {
                match self { $(Reason::$variant => $text,)* }
            }
        }
    };
}

reasons! {
    InvalidArgument => "INVALID_ARGUMENT",
    PageTokenInvalid => "PAGE_TOKEN_INVALID",
    RequestIdReused => "REQUEST_ID_REUSED",
    HandleTaken => "HANDLE_TAKEN",
    EmailTaken => "EMAIL_TAKEN",
    AlreadyExists => "ALREADY_EXISTS",
    NotFound => "NOT_FOUND",
    UserNotFound => "USER_NOT_FOUND",
    TokenMissing => "TOKEN_MISSING",
    TokenInvalid => "TOKEN_INVALID",
    TokenExpired => "TOKEN_EXPIRED",
    BadCredentials => "BAD_CREDENTIALS",
    RefreshTokenInvalid => "REFRESH_TOKEN_INVALID",
    RefreshTokenReused => "REFRESH_TOKEN_REUSED",
    SessionRevoked => "SESSION_REVOKED",
    SessionEnded => "SESSION_ENDED",
    AdminRequired => "ADMIN_REQUIRED",
    RequestInProgress => "REQUEST_IN_PROGRESS",
    DatabaseUnavailable => "DATABASE_UNAVAILABLE",
    NotReady => "NOT_READY",
    RateLimited => "RATE_LIMITED",
    Overloaded => "OVERLOADED",
    CapacityExceeded => "CAPACITY_EXCEEDED",
    DeadlineExceeded => "DEADLINE_EXCEEDED",
    MalformedMessage => "MALFORMED_MESSAGE",
    MessageTooLarge => "MESSAGE_TOO_LARGE",
    Unimplemented => "UNIMPLEMENTED",
    Cancelled => "CANCELLED",
    TransportError => "TRANSPORT_ERROR",
    ServiceUnknown => "SERVICE_UNKNOWN",
    TrialNotFound => "TRIAL_NOT_FOUND",
    IngestInProgress => "INGEST_IN_PROGRESS",
    IngestNotConfigured => "INGEST_NOT_CONFIGURED",
    CommunityNotFound => "COMMUNITY_NOT_FOUND",
    MembershipRequired => "MEMBERSHIP_REQUIRED",
    ManagerRequired => "MANAGER_REQUIRED",
    // Community content (notices, complaints, contacts, schedules, polls).
    NoticeNotFound => "NOTICE_NOT_FOUND",
    ComplaintNotFound => "COMPLAINT_NOT_FOUND",
    ContactNotFound => "CONTACT_NOT_FOUND",
    ScheduleNotFound => "SCHEDULE_NOT_FOUND",
    PollNotFound => "POLL_NOT_FOUND",
    InvalidStatusTransition => "INVALID_STATUS_TRANSITION",
    ComplaintNotWithdrawable => "COMPLAINT_NOT_WITHDRAWABLE",
    ComplaintFilerRequired => "COMPLAINT_FILER_REQUIRED",
    PollOptionNotFound => "POLL_OPTION_NOT_FOUND",
    PollClosed => "POLL_CLOSED",
    AlreadyVoted => "ALREADY_VOTED",
    CommunityExists => "COMMUNITY_EXISTS",
    AlreadyMember => "ALREADY_MEMBER",
    MembershipNotFound => "MEMBERSHIP_NOT_FOUND",
    MemberNotFound => "MEMBER_NOT_FOUND",
    MembershipAlreadyDecided => "MEMBERSHIP_ALREADY_DECIDED",
    LastManager => "LAST_MANAGER",
    VerificationCodeMismatch => "VERIFICATION_CODE_MISMATCH",
    // Sports-club events.
    EventNotFound => "EVENT_NOT_FOUND",
    NotSportsClub => "NOT_SPORTS_CLUB",
    CategoryLocked => "CATEGORY_LOCKED",
    CategoryMismatch => "CATEGORY_MISMATCH",
    AlreadyParticipant => "ALREADY_PARTICIPANT",
    ParticipantNotFound => "PARTICIPANT_NOT_FOUND",
    NotParticipant => "NOT_PARTICIPANT",
    EventSettled => "EVENT_SETTLED",
    TooFar => "TOO_FAR",
    NotOpenYet => "NOT_OPEN_YET",
    EventEnded => "EVENT_ENDED",
    AlreadyCheckedIn => "ALREADY_CHECKED_IN",
    NoFee => "NO_FEE",
    FeeAlreadyReported => "FEE_ALREADY_REPORTED",
    FeeAlreadyPaid => "FEE_ALREADY_PAID",
    FeeNotPending => "FEE_NOT_PENDING",
    AddressNotFound => "ADDRESS_NOT_FOUND",
    GeocodingUnavailable => "GEOCODING_UNAVAILABLE",
    // Profiles, social graph and feed.
    CannotFollowSelf => "CANNOT_FOLLOW_SELF",
    PostNotFound => "POST_NOT_FOUND",
    CommentNotFound => "COMMENT_NOT_FOUND",
    PostAuthorRequired => "POST_AUTHOR_REQUIRED",
    CommentAuthorRequired => "COMMENT_AUTHOR_REQUIRED",
    EtagMismatch => "ETAG_MISMATCH",
    // Club team building.
    TeamNotFound => "TEAM_NOT_FOUND",
    NotClub => "NOT_CLUB",
    TeamTitleTaken => "TEAM_TITLE_TAKEN",
    TeamLeaderRequired => "TEAM_LEADER_REQUIRED",
    InvalidTeamState => "INVALID_TEAM_STATE",
    ApplicationsClosed => "APPLICATIONS_CLOSED",
    AlreadyApplied => "ALREADY_APPLIED",
    RoleFull => "ROLE_FULL",
    AlreadyTeamMember => "ALREADY_TEAM_MEMBER",
    ApplicationNotFound => "APPLICATION_NOT_FOUND",
    ApplicationAlreadyDecided => "APPLICATION_ALREADY_DECIDED",
    ApplicantRequired => "APPLICANT_REQUIRED",
    LeaderCannotLeave => "LEADER_CANNOT_LEAVE",
    NotTeamMember => "NOT_TEAM_MEMBER",
    RoleNotEmpty => "ROLE_NOT_EMPTY",
    CapacityBelowFilled => "CAPACITY_BELOW_FILLED",
    Internal => "INTERNAL",
    // SNS market.
    ProductNotFound => "PRODUCT_NOT_FOUND",
    ProductOwnerRequired => "PRODUCT_OWNER_REQUIRED",
    // Reports and moderation.
    ReportNotFound => "REPORT_NOT_FOUND",
    AlreadyReported => "ALREADY_REPORTED",
    CannotReportSelf => "CANNOT_REPORT_SELF",
    ReportTargetUnsupported => "REPORT_TARGET_UNSUPPORTED",
    ReportActionUnsupported => "REPORT_ACTION_UNSUPPORTED",
    AlreadyResolved => "ALREADY_RESOLVED",
    // Chat.
    ChatRoomNotFound => "CHAT_ROOM_NOT_FOUND",
    ChatMessageNotFound => "CHAT_MESSAGE_NOT_FOUND",
    ChatMemberNotFound => "CHAT_MEMBER_NOT_FOUND",
    ChatOwnerRequired => "CHAT_OWNER_REQUIRED",
    ChatAuthorRequired => "CHAT_AUTHOR_REQUIRED",
    ChatRoomIsDirect => "CHAT_ROOM_IS_DIRECT",
    ChatRoomFull => "CHAT_ROOM_FULL",
    ChatBlocked => "CHAT_BLOCKED",
    ChatMessageDeleted => "CHAT_MESSAGE_DELETED",
    AccountSuspended => "ACCOUNT_SUSPENDED",
    // Session management.
    SessionNotFound => "SESSION_NOT_FOUND",
    // Chat's live stream.
    ChatStreamTooSlow => "CHAT_STREAM_TOO_SLOW",
    ChatStreamsLimit => "CHAT_STREAMS_LIMIT",
    ShuttingDown => "SHUTTING_DOWN",
    // Email verification and password reset.
    EmailAlreadyVerified => "EMAIL_ALREADY_VERIFIED",
    EmailRateLimited => "EMAIL_RATE_LIMITED",
    VerificationCodeExpired => "VERIFICATION_CODE_EXPIRED",
    VerificationCodeExhausted => "VERIFICATION_CODE_EXHAUSTED",
    ResetTokenInvalid => "RESET_TOKEN_INVALID",
    // Guests.
    GuestReadOnly => "GUEST_READ_ONLY",
    NotAGuest => "NOT_A_GUEST",
    GuestsDisabled => "GUESTS_DISABLED",
    // Media.
    MediaNotFound => "MEDIA_NOT_FOUND",
    MediaQuotaExceeded => "MEDIA_QUOTA_EXCEEDED",
    MediaUploadIncomplete => "MEDIA_UPLOAD_INCOMPLETE",
    MediaTypeUnsupported => "MEDIA_TYPE_UNSUPPORTED",
    MediaUploadExpired => "MEDIA_UPLOAD_EXPIRED",
    MediaStorageUnavailable => "MEDIA_STORAGE_UNAVAILABLE",
    MediaNotReady => "MEDIA_NOT_READY",
    MediaAlreadyAttached => "MEDIA_ALREADY_ATTACHED",
    // External identity providers.
    ProviderUnknown => "PROVIDER_UNKNOWN",
    ProviderUnavailable => "PROVIDER_UNAVAILABLE",
    ExternalStateInvalid => "EXTERNAL_STATE_INVALID",
    ExternalLoginFailed => "EXTERNAL_LOGIN_FAILED",
    ExternalTicketInvalid => "EXTERNAL_TICKET_INVALID",
    IdentityLinkRequired => "IDENTITY_LINK_REQUIRED",
    IdentityTaken => "IDENTITY_TAKEN",
    IdentityNotFound => "IDENTITY_NOT_FOUND",
    LastSignInMethod => "LAST_SIGN_IN_METHOD",
}

/// Unique constraints (or unique index names) and the reason their violation reports.
pub const UNIQUE_CONSTRAINTS: &[(&str, Reason)] = &[
    ("users_handle_key", Reason::HandleTaken),
    ("users_email_key", Reason::EmailTaken),
    ("community_poll_votes_poll_id_user_id_key", Reason::AlreadyVoted),
    ("community_memberships_active_key", Reason::AlreadyMember),
    ("communities_external_code_key", Reason::CommunityExists),
    ("event_participants_pkey", Reason::AlreadyParticipant),
    ("event_check_ins_event_id_user_id_key", Reason::AlreadyCheckedIn),
    ("teams_community_id_title_key", Reason::TeamTitleTaken),
    ("team_applications_team_id_user_id_role_key", Reason::AlreadyApplied),
    ("reports_reporter_id_target_type_target_id_key", Reason::AlreadyReported),
    ("external_identities_provider_subject_key", Reason::IdentityTaken),
    ("external_identities_user_id_provider_key", Reason::IdentityTaken),
];

/// An error of any layer. Built by ops and stores; turned into a `Status` in one place.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Input that fails validation; one violation per bad field.
    #[error("invalid argument: {}", describe(.violations))]
    Invalid { reason: Reason, violations: Vec<FieldViolation> },
    /// A documented refusal with its own gRPC code and reason.
    #[error("{message}")]
    Refused { code: Code, reason: Reason, message: String, metadata: BTreeMap<String, String> },
    /// Refused for now; the client may retry after `retry_after`.
    #[error("{message}")]
    Retry { code: Code, reason: Reason, message: String, retry_after: Duration, metadata: BTreeMap<String, String> },
    /// A bug or an unexpected failure of a dependency. Opaque to clients.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// At most this many characters of client input are echoed in an error (a grpc-message, a field
/// violation): a C-core client refuses trailers over 8 KiB and would never see the real error.
pub const MAX_ECHO_CHARS: usize = 200;
/// Bounds of what one status carries, whatever its parts echo: the message, and each violation's
/// field and description.
/// With 3-byte characters throughout, the trailers stay under 6 KiB: the message (percent-encoded)
/// plus `grpc-status-details-bin` (base64 of the message and the violations).
const MAX_MESSAGE_CHARS: usize = 250;
const MAX_DESCRIPTION_CHARS: usize = 400;
const MAX_VIOLATIONS: usize = 10;
const MAX_VIOLATION_CHARS: usize = 600;

/// `s` cut to `max` characters, with an ellipsis when cut.
pub fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_owned(),
        Some((at, _)) => format!("{}…", &s[..at]),
    }
}

/// Client input as an error may echo it: at most [`MAX_ECHO_CHARS`] characters.
pub fn echo(s: &str) -> String {
    truncate(s, MAX_ECHO_CHARS)
}

fn describe(v: &[FieldViolation]) -> String {
    v.iter().map(|f| format!("{}: {}", f.field, f.description)).collect::<Vec<_>>().join("; ")
}

impl AppError {
    pub fn refused(code: Code, reason: Reason, message: impl Into<String>) -> Self {
        AppError::Refused { code, reason, message: message.into(), metadata: BTreeMap::new() }
    }

    pub fn not_found(reason: Reason, what: &str) -> Self {
        Self::refused(Code::NotFound, reason, format!("{what} not found"))
    }
    pub fn already_exists(reason: Reason, message: impl Into<String>) -> Self {
        Self::refused(Code::AlreadyExists, reason, message)
    }
    pub fn failed_precondition(reason: Reason, message: impl Into<String>) -> Self {
        Self::refused(Code::FailedPrecondition, reason, message)
    }
    pub fn permission_denied(reason: Reason, message: impl Into<String>) -> Self {
        Self::refused(Code::PermissionDenied, reason, message)
    }
    pub fn unauthenticated(reason: Reason, message: impl Into<String>) -> Self {
        Self::refused(Code::Unauthenticated, reason, message)
    }
    /// One invalid field.
    pub fn invalid(field: &str, description: impl Into<String>) -> Self {
        Violations::one(field, description).into_error()
    }
    pub fn internal(message: impl Into<String>) -> Self {
        AppError::Internal(anyhow::anyhow!(message.into()))
    }

    /// Adds `ErrorInfo.metadata` (a no-op for invalid-argument and internal errors).
    pub fn with_meta(mut self, key: &str, value: impl ToString) -> Self {
        if let AppError::Refused { metadata, .. } | AppError::Retry { metadata, .. } = &mut self {
            metadata.insert(key.to_owned(), value.to_string());
        }
        self
    }

    pub fn code(&self) -> Code {
        match self {
            AppError::Invalid { .. } => Code::InvalidArgument,
            AppError::Refused { code, .. } | AppError::Retry { code, .. } => *code,
            AppError::Internal(_) => Code::Internal,
        }
    }

    pub fn reason(&self) -> Reason {
        match self {
            AppError::Invalid { reason, .. } | AppError::Refused { reason, .. } | AppError::Retry { reason, .. } => {
                *reason
            }
            AppError::Internal(_) => Reason::Internal,
        }
    }
}

/// Collects field violations so a request reports every bad field at once.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn one(field: &str, description: impl Into<String>) -> Self {
        let mut v = Self::new();
        v.add(field, description);
        v
    }
    pub fn add(&mut self, field: &str, description: impl Into<String>) {
        self.0.push(FieldViolation::new(field, description));
    }
    /// Records the error of a field parser, keeping the parsed value when it succeeds.
    pub fn check<T>(&mut self, field: &str, r: Result<T, String>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.add(field, e);
                None
            }
        }
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn into_error(self) -> AppError {
        self.into_error_with(Reason::InvalidArgument)
    }
    /// INVALID_ARGUMENT with a more specific reason than `INVALID_ARGUMENT`.
    pub fn into_error_with(self, reason: Reason) -> AppError {
        AppError::Invalid { reason, violations: self.0 }
    }
    /// `Ok(())` when nothing was recorded.
    pub fn finish(self) -> AppResult<()> {
        if self.0.is_empty() { Ok(()) } else { Err(self.into_error()) }
    }
}

impl From<sqlx::Error> for AppError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            // PostgreSQL cannot store NUL in text (22021) or jsonb (22P05). The field helpers
            // refuse it with the field's name ([`crate::fields`]); this catches a text that
            // escaped them, still as the client's fault.
            sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("22021" | "22P05")) => {
                tracing::warn!(error = %db, "text PostgreSQL rejects reached the database: a field escaped fields::check_chars");
                Violations::one("", "text must not contain NUL or other characters the database cannot store")
                    .into_error()
            }
            // The connection was lost: the backend was terminated (57P01), the server is
            // shutting down or starting (57P02, 57P03), or the connection broke (class 08).
            // The pool tests a connection when it comes back and drops a dead one.
            sqlx::Error::Database(db) if db.code().as_deref().is_some_and(connection_lost) => lost_connection(),
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                let name = db.constraint().unwrap_or("");
                let (label, reason) = UNIQUE_CONSTRAINTS
                    .iter()
                    .find(|(c, _)| *c == name)
                    .map(|(c, r)| (*c, *r))
                    .unwrap_or(("other", Reason::AlreadyExists));
                metrics::counter!("maru_unique_conflicts_total", "constraint" => label).increment(1);
                AppError::already_exists(reason, reason_message(reason))
            }
            // No connection within the acquire timeout: the database is down or every
            // connection is taken. Either way it is unavailable to this call.
            sqlx::Error::PoolTimedOut => {
                metrics::counter!("maru_db_pool_acquire_timeouts_total").increment(1);
                AppError::Retry {
                    code: Code::Unavailable,
                    reason: Reason::DatabaseUnavailable,
                    message: "database unavailable; retry shortly".into(),
                    retry_after: Duration::from_millis(500),
                    metadata: BTreeMap::new(),
                }
            }
            sqlx::Error::Io(_) | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed | sqlx::Error::Tls(_) => {
                lost_connection()
            }
            _ => AppError::Internal(anyhow::Error::new(err)),
        }
    }
}

/// True when `err` means the connection to PostgreSQL was lost (see [`connection_lost`]).
pub fn is_connection_lost(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => db.code().as_deref().is_some_and(connection_lost),
        sqlx::Error::Io(_) | sqlx::Error::WorkerCrashed | sqlx::Error::Tls(_) => true,
        _ => false,
    }
}

/// SQLSTATEs of a lost connection: `admin_shutdown` (`pg_terminate_backend`), `crash_shutdown`,
/// `cannot_connect_now`, and class 08 (connection exception).
fn connection_lost(code: &str) -> bool {
    matches!(code, "57P01" | "57P02" | "57P03") || code.starts_with("08")
}

fn lost_connection() -> AppError {
    metrics::counter!("maru_db_connections_lost_total").increment(1);
    AppError::Retry {
        code: Code::Unavailable,
        reason: Reason::DatabaseUnavailable,
        message: "database unavailable: the connection was lost; retry shortly".into(),
        retry_after: Duration::from_secs(1),
        metadata: BTreeMap::new(),
    }
}

fn reason_message(reason: Reason) -> &'static str {
    match reason {
        Reason::HandleTaken => "handle is already taken",
        Reason::EmailTaken => "email is already registered",
        Reason::AlreadyVoted => "you have already voted in this poll",
        Reason::AlreadyMember => "you already have a pending or approved membership of this community",
        Reason::CommunityExists => "a community with this registry code already exists",
        Reason::AlreadyParticipant => "the member is already a participant of this event",
        Reason::AlreadyCheckedIn => "you have already checked in to this event",
        Reason::TeamTitleTaken => "another team of this club has this title",
        Reason::AlreadyApplied => "you have already applied to this team for this role",
        _ => "already exists",
    }
}

impl From<AppError> for Status {
    fn from(err: AppError) -> Self {
        let request_id = request_id::current();
        let mut details = ErrorDetails::new();
        if let Some(id) = &request_id {
            details.set_request_info(id.clone(), "");
        }
        let (code, message) = match err {
            AppError::Invalid { reason, violations } => {
                let violations = bounded(violations);
                let message = format!("invalid argument: {}", describe(&violations));
                details.set_error_info(reason.as_str(), "maru", std::collections::HashMap::new());
                details.set_bad_request(violations);
                (Code::InvalidArgument, message)
            }
            AppError::Refused { code, reason, message, metadata } => {
                details.set_error_info(
                    reason.as_str(),
                    "maru",
                    metadata.into_iter().collect::<std::collections::HashMap<_, _>>(),
                );
                (code, message)
            }
            AppError::Retry { code, reason, message, retry_after, metadata } => {
                details.set_error_info(
                    reason.as_str(),
                    "maru",
                    metadata.into_iter().collect::<std::collections::HashMap<_, _>>(),
                );
                details.set_retry_info(Some(retry_after));
                (code, message)
            }
            AppError::Internal(e) => {
                // Logged once, here, with the whole chain; the client learns nothing of it.
                tracing::error!(error = format!("{e:#}"), "internal error");
                details.set_error_info(Reason::Internal.as_str(), "maru", std::collections::HashMap::new());
                let message = match &request_id {
                    Some(id) => format!("internal error (request id {id})"),
                    None => "internal error".to_owned(),
                };
                (Code::Internal, message)
            }
        };
        Status::with_error_details(code, truncate(&message, MAX_MESSAGE_CHARS), details)
    }
}

/// The violations a status carries: each cut ([`MAX_ECHO_CHARS`] of field name,
/// [`MAX_DESCRIPTION_CHARS`] of description), at most [`MAX_VIOLATIONS`] of them and
/// [`MAX_VIOLATION_CHARS`] in all; the rest are counted in a last one.
fn bounded(violations: Vec<FieldViolation>) -> Vec<FieldViolation> {
    let total = violations.len();
    let mut budget = MAX_VIOLATION_CHARS;
    let mut kept = Vec::new();
    for mut v in violations {
        if kept.len() >= MAX_VIOLATIONS || budget == 0 {
            break;
        }
        v.field = truncate(&v.field, MAX_ECHO_CHARS);
        v.description = truncate(&v.description, MAX_DESCRIPTION_CHARS.min(budget));
        budget = budget.saturating_sub(v.field.chars().count() + v.description.chars().count());
        kept.push(v);
    }
    if kept.len() < total {
        let more = total - kept.len();
        kept.push(FieldViolation::new("", format!("and {more} more")));
    }
    kept
}

/// A `Status` for a request refused by a layer before it reached a service.
pub fn layer_status(err: AppError) -> Status {
    err.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/errors.md lists exactly the reasons the code can produce.
    #[test]
    fn error_catalogue_matches_code() {
        let doc = include_str!("../docs/errors.md");
        let documented: std::collections::BTreeSet<&str> =
            doc.lines().filter_map(|l| l.strip_prefix("| `")).filter_map(|l| l.split('`').next()).collect();
        let in_code: std::collections::BTreeSet<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        let missing: Vec<_> = in_code.difference(&documented).collect();
        let stale: Vec<_> = documented.difference(&in_code).collect();
        assert!(missing.is_empty(), "reasons used in code but missing from docs/errors.md: {missing:?}");
        assert!(stale.is_empty(), "reasons in docs/errors.md that the code no longer has: {stale:?}");
    }

    #[test]
    fn reasons_are_unique_and_upper_snake() {
        let mut seen = std::collections::HashSet::new();
        for r in Reason::ALL {
            assert!(seen.insert(r.as_str()), "duplicate {}", r.as_str());
            assert!(r.as_str().chars().all(|c| c.is_ascii_uppercase() || c == '_'), "{}", r.as_str());
        }
    }

    #[test]
    fn invalid_argument_carries_every_violation() {
        let mut v = Violations::new();
        v.add("handle", "too short");
        v.add("email", "not an email");
        let status: Status = v.into_error().into();
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let fields: Vec<_> = details.bad_request().unwrap().field_violations.iter().map(|f| f.field.clone()).collect();
        assert_eq!(fields, ["handle", "email"]);
        assert_eq!(details.error_info().unwrap().reason, "INVALID_ARGUMENT");
        assert_eq!(details.error_info().unwrap().domain, "maru");
    }

    #[test]
    fn echoed_input_is_bounded() {
        assert_eq!(echo("short"), "short");
        let long = "가".repeat(100_000);
        assert_eq!(echo(&long).chars().count(), MAX_ECHO_CHARS + 1);
        assert!(echo(&long).ends_with('…'));
        let mut v = Violations::new();
        for _ in 0..20 {
            v.add(&long, long.clone());
        }
        let status: Status = v.into_error().into();
        assert!(status.message().chars().count() <= MAX_MESSAGE_CHARS + 1, "{}", status.message());
        // What a C-core client (8 KiB of trailers) receives: the percent-encoded message and the
        // base64 of the details.
        let trailers = 9 * status.message().chars().count() + status.details().len() * 4 / 3;
        assert!(trailers < 6 * 1024, "{trailers} bytes of trailers");
        let details = status.get_error_details();
        let kept = &details.bad_request().unwrap().field_violations;
        assert!(kept.len() < 20 && kept.last().unwrap().description.ends_with("more"), "{kept:?}");
        for f in kept {
            assert!(f.field.chars().count() <= MAX_ECHO_CHARS + 1);
            assert!(f.description.chars().count() <= MAX_DESCRIPTION_CHARS + 1);
        }
    }

    /// A backend terminated in the middle of a query (`pg_terminate_backend`, as under load in
    /// issue 14) fails with SQLSTATE 57P01: UNAVAILABLE with RetryInfo, not INTERNAL.
    #[sqlx::test]
    async fn a_backend_terminated_mid_query_is_unavailable_with_retry_info(pool: sqlx::PgPool) {
        let mut victim = pool.acquire().await.unwrap();
        let pid: i32 = sqlx::query_scalar("select pg_backend_pid()").fetch_one(&mut *victim).await.unwrap();
        let killer = pool.clone();
        let kill = tokio::spawn(async move {
            // Until the victim's sleep is running, then terminate it.
            loop {
                let active: bool = sqlx::query_scalar(
                    "select exists (select 1 from pg_stat_activity where pid = $1 and query like 'select pg_sleep%')",
                )
                .bind(pid)
                .fetch_one(&killer)
                .await
                .unwrap();
                if active {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            sqlx::query("select pg_terminate_backend($1)").bind(pid).execute(&killer).await.unwrap();
        });
        let err = sqlx::query("select pg_sleep(30)").execute(&mut *victim).await.unwrap_err();
        kill.await.unwrap();
        let app: AppError = err.into();
        assert_eq!((app.code(), app.reason()), (Code::Unavailable, Reason::DatabaseUnavailable), "{app:?}");
        let status: Status = app.into();
        assert!(status.get_error_details().retry_info().is_some());
    }

    #[test]
    fn internal_errors_are_opaque() {
        let status: Status = AppError::Internal(anyhow::anyhow!("relation \"secret_table\" does not exist")).into();
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("secret_table"));
    }
}
