//! What one-shot commands show a person on the terminal: progress bars and summaries. Used by
//! the CLI and by `seed` (which imports the registry first).

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::communities::registry;
use crate::state::AppState;

/// Imports the apartment registry with a progress bar on stderr and prints a summary.
pub async fn import_apartments(state: &AppState, source: registry::Source) -> anyhow::Result<registry::Summary> {
    let bar = row_progress_bar();
    let progress = {
        let bar = bar.clone();
        move |p: registry::Progress| match p {
            registry::Progress::Fetched { rows, total } => {
                bar.set_length(total as u64);
                bar.set_position(rows as u64);
            }
            registry::Progress::Written { rows, total } => {
                bar.set_message("writing");
                bar.set_length(total as u64);
                bar.set_position(rows as u64);
            }
        }
    };
    let started = std::time::Instant::now();
    let summary = registry::import(state, source, &progress).await;
    bar.finish_and_clear();
    let s = summary?;
    println!("apartment registry import: fetched {}", s.fetched);
    println!(
        "  created {}  updated {}  unchanged {}  failed {}  in {:.1} s",
        s.created,
        s.updated,
        s.unchanged,
        s.failed,
        started.elapsed().as_secs_f64()
    );
    for (row, reason) in &s.problems {
        println!("  row {row}: {reason}");
    }
    if !s.home_cache_current {
        println!(
            "  warning: Redis was unreachable, so cached home screens were not invalidated: servers that \
             use that Redis may show the old names for up to 5 minutes"
        );
    }
    Ok(s)
}

/// A spinner-and-bar on stderr counting rows, starting at "fetching".
pub fn row_progress_bar() -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} rows")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    bar.set_message("fetching");
    bar
}
