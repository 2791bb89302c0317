//! Sets `maru_reports_open` and `maru_reports_oldest_open_age_seconds` from the database every
//! `reports.queue_gauge_interval_s` (default 30 s) on every replica. Reports and resolutions
//! set them too, but a queue nobody touches would keep its last age: the alert "oldest open
//! report older than 24 h" needs the age to grow on its own.

use std::time::Duration;

use tokio::sync::watch;

use crate::reports::ops::refresh_queue_gauges;
use crate::state::AppState;

pub async fn run(state: AppState, mut stop: watch::Receiver<bool>) {
    let every = Duration::from_secs(state.settings.reports.queue_gauge_interval_s.max(1));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|v| *v) => return,
        }
        // Before migrations ran the table may not exist yet: tried again at the next tick.
        if let Err(e) = refresh_queue_gauges(&state).await {
            tracing::debug!(error = %e, "report queue gauges not refreshed");
        }
    }
}

#[cfg(test)]
mod tests {
    use metrics_exporter_prometheus::PrometheusBuilder;
    use sqlx::PgPool;
    use uuid::Uuid;

    use super::*;
    use crate::config::Settings;
    use crate::db::fixtures::user;
    use crate::reports::ops::QueueGauges;

    async fn report(pool: &PgPool, reporter: Uuid, target: Uuid, state: &str, age_hours: i32) {
        sqlx::query(
            "insert into reports (id, reporter_id, target_type, target_id, owner_id, reason, details, state, created_at)
             values ($1, $2, 'USER', $3, $3, 'SPAM', '', $4, now() - $5 * interval '1 hour')",
        )
        .bind(Uuid::now_v7())
        .bind(reporter)
        .bind(target)
        .bind(state)
        .bind(age_hours)
        .execute(pool)
        .await
        .unwrap();
    }

    /// The job reads the queue from the database (only OPEN reports count, the oldest decides
    /// the age) and sets the two gauges the alert uses, under these names.
    #[sqlx::test]
    async fn the_job_sets_the_queue_gauges_from_the_database(pool: PgPool) {
        let state = AppState::new(Settings::default(), pool.clone()).unwrap();
        let empty = refresh_queue_gauges(&state).await.unwrap();
        assert_eq!(empty, QueueGauges { open: 0, oldest_age_seconds: 0.0 });

        let [a, b, c] =
            [user(&pool, "alice", false).await, user(&pool, "bobby", false).await, user(&pool, "carol", false).await];
        report(&pool, a, c, "OPEN", 25).await;
        report(&pool, b, c, "OPEN", 1).await;
        report(&pool, c, a, "DISMISSED", 100).await;
        let g = refresh_queue_gauges(&state).await.unwrap();
        assert_eq!(g.open, 2);
        // 25 h old, give or take the statement's clock: older than the 24 h of the alert.
        assert!((25.0 * 3600.0..26.0 * 3600.0).contains(&g.oldest_age_seconds), "{g:?}");

        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || g.set());
        let text = handle.render();
        let value = |name: &str| -> f64 {
            let line = text.lines().find(|l| l.split(' ').next() == Some(name)).unwrap_or_else(|| panic!("{text}"));
            line.rsplit(' ').next().unwrap().parse().unwrap()
        };
        assert_eq!(value("maru_reports_open"), 2.0);
        assert_eq!(value("maru_reports_oldest_open_age_seconds"), g.oldest_age_seconds);
    }

    /// The loop refreshes on its first tick and ends when told to stop.
    #[sqlx::test]
    async fn the_job_stops_when_told(pool: PgPool) {
        let state = AppState::new(Settings::default(), pool.clone()).unwrap();
        let (tx, rx) = watch::channel(false);
        let job = tokio::spawn(run(state, rx));
        tx.send(true).unwrap();
        job.await.unwrap();
    }
}
