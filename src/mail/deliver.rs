//! Delivery of the outbox over SMTP (see the module docs of [`crate::mail`]).

use std::time::Duration;

use anyhow::Context;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use secrecy::ExposeSecret;

use super::store;
use super::templates::Kind;
use crate::config::MailSettings;
use crate::error::AppResult;
use crate::retry::Policy;
use crate::state::AppState;

/// The longest wait between two attempts at one mail (before jitter).
const MAX_BACKOFF: Duration = Duration::from_secs(3_600);

/// The SMTP transport and the `From` of every mail; one per replica, its connections pooled.
#[derive(Clone)]
pub struct Sender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Sender {
    /// `None` when `mail.smtp_url` is unset (mail stays in the outbox).
    pub fn from_settings(s: &MailSettings) -> anyhow::Result<Option<Self>> {
        let Some(url) = &s.smtp_url else { return Ok(None) };
        // The URL may hold a password: the error says what is wrong, not the URL.
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret())
            .map_err(|e| anyhow::anyhow!("mail.smtp_url is not usable: {e}"))?
            .timeout(Some(Duration::from_millis(s.timeout_ms)))
            .build();
        let from = s.from.parse().context("mail.from")?;
        Ok(Some(Self { transport, from }))
    }
}

/// When to try a mail again after `attempts` failed deliveries.
pub fn next_attempt_in(first: Duration, attempts: i32) -> Duration {
    let policy = Policy { first, max: MAX_BACKOFF, retries: None };
    let n = u32::try_from(attempts.saturating_sub(1)).unwrap_or(0);
    policy.delay(n).unwrap_or(MAX_BACKOFF)
}

/// Why a delivery failed, in words that never quote the SMTP reply (it may hold the address),
/// and whether trying again can help.
fn classify(e: &lettre::transport::smtp::Error) -> (&'static str, bool) {
    if e.is_permanent() {
        ("permanent SMTP error (5xx)", false)
    } else if e.is_transient() {
        ("transient SMTP error (4xx)", true)
    } else if e.is_timeout() {
        ("timed out", true)
    } else if e.is_tls() {
        ("TLS error", true)
    } else {
        ("connection failed", true)
    }
}

/// Sends up to `mail.batch_size` due mails, each in its own transaction holding its row lock
/// while it is sent; returns how many were sent.
pub async fn deliver_due(state: &AppState, sender: &Sender) -> AppResult<usize> {
    let cfg = &state.settings.mail;
    let mut sent = 0;
    for _ in 0..cfg.batch_size {
        let mut tx = crate::db::begin(&state.db).await?;
        let Some(mail) = store::take_due(&mut tx).await? else { break };
        let kind = Kind::label(&mail.kind);
        let message = mail.recipient.parse::<Mailbox>().ok().and_then(|to| {
            Message::builder()
                .from(sender.from.clone())
                .to(to)
                .subject(&mail.subject)
                .header(ContentType::TEXT_PLAIN)
                .body(mail.body.clone())
                .ok()
        });
        let outcome = match message {
            None => Err(("invalid recipient address", false)),
            Some(m) => sender.transport.send(m).await.map(|_| ()).map_err(|e| classify(&e)),
        };
        match outcome {
            Ok(()) => {
                store::mark_sent(&mut tx, mail.id).await?;
                crate::db::commit(&state.db, tx).await?;
                metrics::counter!("maru_emails_sent_total", "kind" => kind).increment(1);
                sent += 1;
            }
            Err((error, retry)) => {
                let attempt = mail.attempts + 1;
                let give_up = !retry || attempt >= cfg.max_attempts;
                let backoff = next_attempt_in(Duration::from_millis(cfg.backoff_ms), attempt);
                store::mark_failed(&mut tx, mail.id, error, backoff.as_millis() as f64, give_up).await?;
                crate::db::commit(&state.db, tx).await?;
                metrics::counter!("maru_emails_failed_total", "kind" => kind).increment(1);
                tracing::warn!(outbox_id = %mail.id, kind, attempt, error, given_up = give_up, "mail not delivered");
                if retry {
                    // The server is likely down for the rest of the batch too.
                    break;
                }
            }
        }
    }
    Ok(sent)
}

/// Sets `maru_email_outbox_oldest_age_seconds`.
pub async fn update_outbox_age(state: &AppState) -> AppResult<()> {
    let age = store::oldest_pending_age_s(&state.db).await?;
    metrics::gauge!("maru_email_outbox_oldest_age_seconds").set(age);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_with_jitter_up_to_an_hour() {
        let first = Duration::from_millis(1_000);
        for _ in 0..20 {
            let d = next_attempt_in(first, 1);
            assert!(d >= first && d <= first * 2, "{d:?}");
            let d = next_attempt_in(first, 3);
            assert!(d >= first * 4 && d <= first * 8, "{d:?}");
            let d = next_attempt_in(first, 40);
            assert!(d >= MAX_BACKOFF && d <= MAX_BACKOFF * 2, "{d:?}");
        }
    }

    #[tokio::test]
    async fn no_smtp_url_no_sender() {
        let mut s = MailSettings::default();
        assert!(Sender::from_settings(&s).unwrap().is_none());
        s.smtp_url = Some(secrecy::SecretString::from("smtp://127.0.0.1:2525"));
        assert!(Sender::from_settings(&s).unwrap().is_some());
    }
}
