//! The guest settings (`[guests]`, `MARU__GUESTS__…`) and their validation (docs/guests.md).

use serde::{Deserialize, Serialize};

/// One-day guest visits (StartGuestSession, ConvertGuest and the nightly clean-up).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GuestSettings {
    /// StartGuestSession answers FAILED_PRECONDITION `GUESTS_DISABLED` when false.
    pub enabled: bool,
    /// How long a guest visit lasts: its session cannot be refreshed past it, and the nightly
    /// clean-up deletes the guest after it.
    pub session_ttl_s: u64,
    /// The demo complexes a guest may read: community ids, or apartment registry codes
    /// (`kaptCode`). Entries that match no community are skipped (and logged).
    pub complexes: Vec<String>,
    /// The display name every guest gets.
    pub display_name: String,
    /// How often each replica checks whether the nightly clean-up (00:00 Asia/Seoul) is due and
    /// refreshes `maru_guests_active`.
    pub cleanup_check_s: u64,
}

impl Default for GuestSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            session_ttl_s: 86_400,
            complexes: Vec::new(),
            display_name: "Guest".into(),
            cleanup_check_s: 60,
        }
    }
}

impl GuestSettings {
    /// Appends every problem of this section to `errs` (see `Settings::validate`).
    pub fn validate(&self, errs: &mut Vec<String>) {
        if !(60..=7 * 86_400).contains(&self.session_ttl_s) {
            errs.push("guests.session_ttl_s: must be 60 to 604800 (a week)".into());
        }
        if !(1..=3600).contains(&self.cleanup_check_s) {
            errs.push("guests.cleanup_check_s: must be 1 to 3600".into());
        }
        if self.complexes.len() > 100 {
            errs.push("guests.complexes: at most 100 communities".into());
        }
        if self.complexes.iter().any(|c| c.trim().is_empty() || c.len() > 64) {
            errs.push("guests.complexes: every entry is a community id or a registry code (1 to 64 characters)".into());
        }
        let name = self.display_name.trim();
        if !(1..=50).contains(&name.chars().count()) || name.chars().any(char::is_control) {
            errs.push("guests.display_name: must be 1 to 50 characters, no control characters".into());
        }
    }
}
