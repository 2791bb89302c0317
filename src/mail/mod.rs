//! Email: an outbox delivered over SMTP, the templates of the mails maru sends, and the send
//! limits of the RPCs that send them.
//!
//! - [`enqueue`] writes a rendered mail into `email_outbox` in the transaction of the action
//!   that sends it (a rolled-back action sends nothing); call [`queued`] after the commit.
//! - [`deliver_due`] (the mail job, every replica, every `mail.poll_interval_ms`) takes due mails
//!   one at a time under `FOR UPDATE SKIP LOCKED`, so two replicas never take the same mail, and
//!   sends each with `lettre` over `mail.smtp_url`. A failed delivery is tried again with
//!   exponential backoff ([`crate::retry`]: `mail.backoff_ms` doubling up to one hour, plus
//!   jitter) up to `mail.max_attempts`, then given up (kept with its last error). The body of a
//!   sent mail is erased. Delivery is at least once: a crash between the SMTP answer and the
//!   commit sends the mail again.
//! - [`hit_send_limit`]: fixed-window counters per address and per account, decided by the
//!   database (an upsert; concurrent requests of one key queue on its row).
//!
//! Nothing here logs an address, a code or a token: a failed delivery logs the outbox id, the
//! kind and the class of the error only (an SMTP reply may quote the recipient).
//!
//! Metrics: `maru_emails_queued_total{kind}`, `maru_emails_sent_total{kind}`,
//! `maru_emails_failed_total{kind}` (failed delivery attempts) and the gauge
//! `maru_email_outbox_oldest_age_seconds` (the oldest mail neither sent nor given up; 0 when
//! none).

mod deliver;
mod store;
pub mod templates;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use std::time::Duration;

pub use deliver::{Sender, deliver_due, update_outbox_age};
pub use templates::{Kind, Lang, Rendered};

use crate::error::AppResult;

/// Writes a mail to `to` into the outbox, in the caller's transaction.
pub async fn enqueue(conn: &mut PgConnection, kind: Kind, to: &str, mail: &Rendered) -> AppResult<()> {
    store::insert_mail(conn, kind.as_str(), to, &mail.subject, &mail.body).await
}

/// Counts a mail [`enqueue`]d by a committed transaction.
pub fn queued(kind: Kind) {
    metrics::counter!("maru_emails_queued_total", "kind" => kind.as_str()).increment(1);
}

/// The send-limit key of an address: a hash of its lower-case form (keys are stored).
pub fn address_key(address: &str) -> String {
    format!("address:{}", hex::encode(Sha256::digest(address.trim().to_lowercase().as_bytes())))
}

/// The send-limit key of an account.
pub fn account_key(user_id: uuid::Uuid) -> String {
    format!("account:{user_id}")
}

/// Counts one request against `key` in the fixed window of `window` that holds `now`; when that
/// makes more than `limit`, returns how long until the window ends. Runs in the caller's
/// transaction: a refused or rolled-back request does not count, and concurrent requests of one
/// key take turns on its counter row, so exactly `limit` pass per window.
pub async fn hit_send_limit(
    conn: &mut PgConnection,
    key: &str,
    limit: i32,
    window: Duration,
    now: DateTime<Utc>,
) -> AppResult<Option<Duration>> {
    let secs = window.as_secs().max(1) as i64;
    let start = now.timestamp().div_euclid(secs) * secs;
    let window_start = DateTime::<Utc>::from_timestamp(start, 0).unwrap_or(now);
    let count = store::count_send(conn, key, window_start).await?;
    if count <= limit {
        return Ok(None);
    }
    let ends = window_start + chrono::Duration::seconds(secs);
    Ok(Some((ends - now).to_std().unwrap_or_default().max(Duration::from_secs(1))))
}

/// Deletes send counters of windows that ended more than a day ago; returns how many.
pub async fn sweep_send_counts(db: &sqlx::PgPool) -> AppResult<u64> {
    store::delete_old_send_counts(db).await
}

/// HELP lines of this module's metrics.
pub fn describe() {
    metrics::describe_counter!("maru_emails_queued_total", "Mails written to the email outbox, by kind.");
    metrics::describe_counter!("maru_emails_sent_total", "Mails the SMTP server accepted, by kind.");
    metrics::describe_counter!(
        "maru_emails_failed_total",
        "Failed SMTP delivery attempts, by kind (each is retried with backoff up to mail.max_attempts)."
    );
    metrics::describe_gauge!(
        "maru_email_outbox_oldest_age_seconds",
        metrics::Unit::Seconds,
        "Age of the oldest mail in the outbox neither sent nor given up; 0 when none."
    );
    // At zero from the start, so that dashboards and alerts see every kind before its first mail.
    for kind in ["verification_code", "password_reset", "link_code"] {
        for name in ["maru_emails_queued_total", "maru_emails_sent_total", "maru_emails_failed_total"] {
            metrics::counter!(name, "kind" => kind).increment(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_keys_fold_case_and_hide_the_address() {
        let k = address_key(" Kim@Example.com ");
        assert_eq!(k, address_key("kim@example.com"));
        assert!(k.starts_with("address:") && !k.contains("kim"));
        assert_eq!(Kind::label("password_reset"), "password_reset");
        assert_eq!(Kind::label("x"), "other");
    }
}
