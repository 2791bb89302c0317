//! The ingest schedule: a cron expression read in a named time zone (croner + chrono-tz).
//! The source system's `* 0 * * *` fired every minute of the midnight hour; the default here,
//! `0 0 * * *` in Asia/Seoul, fires once a day.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;

/// A parsed cron expression and its time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    tz: Tz,
}

impl Schedule {
    /// Every problem at once, each prefixed with its setting name.
    pub fn parse(expr: &str, time_zone: &str) -> Result<Self, Vec<String>> {
        let cron = Cron::from_str(expr).map_err(|e| format!("trials.schedule: `{expr}` is not a cron expression: {e}"));
        let tz = Tz::from_str(time_zone)
            .map_err(|_| format!("trials.time_zone: `{time_zone}` is not an IANA time zone like Asia/Seoul"));
        match (cron, tz) {
            (Ok(cron), Ok(tz)) => Ok(Self { cron, tz }),
            (cron, tz) => Err(cron.err().into_iter().chain(tz.err()).collect()),
        }
    }

    /// The first fire time strictly after `now`; `None` if the expression never fires again.
    pub fn next_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_next_occurrence(&now.with_timezone(&self.tz), false).ok().map(|t| t.with_timezone(&Utc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn default_fires_at_midnight_in_seoul() {
        let s = Schedule::parse("0 0 * * *", "Asia/Seoul").unwrap();
        // 00:00 KST is 15:00 UTC the day before.
        assert_eq!(s.next_after(utc("2026-11-22T14:59:59Z")), Some(utc("2026-11-22T15:00:00Z")));
        // Strictly after: a run at the fire time schedules the next day.
        assert_eq!(s.next_after(utc("2026-11-22T15:00:00Z")), Some(utc("2026-11-23T15:00:00Z")));
    }

    #[test]
    fn default_fires_once_a_day_unlike_the_source_cron() {
        let count = |expr: &str| {
            let s = Schedule::parse(expr, "Asia/Seoul").unwrap();
            let (mut t, end) = (utc("2026-11-22T00:00:00Z"), utc("2026-11-23T00:00:00Z"));
            let mut n = 0;
            while let Some(next) = s.next_after(t).filter(|x| *x < end) {
                n += 1;
                t = next;
            }
            n
        };
        assert_eq!(count("0 0 * * *"), 1);
        assert_eq!(count("* 0 * * *"), 60);
    }

    #[test]
    fn bad_expression_and_zone_are_both_reported() {
        let errs = Schedule::parse("not cron", "Nowhere/City").unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].starts_with("trials.schedule") && errs[1].starts_with("trials.time_zone"));
        assert!(Schedule::parse("0 0 * * *", "UTC").is_ok());
    }
}
