//! The `maru` command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::app::Application;
use crate::caller::Role;
use crate::communities::registry;
use crate::config::Settings;
use crate::console::{import_apartments, row_progress_bar};
use crate::state::AppState;
use crate::trials::ingest::{IngestRequest, Source};
use crate::trials::model::{IngestRun, Progress, RunResult, Trigger};
use crate::{accounts, db, telemetry, trials};

#[derive(Debug, Parser)]
#[command(name = "maru", version, about = "Community software over typed gRPC")]
pub struct Cli {
    /// Optional TOML settings file; `MARU__SECTION__KEY` variables override it.
    #[arg(long, short, global = true, env = "MARU_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gRPC server (and the admin HTTP server for metrics and probes).
    Serve,
    /// Create the database if missing and apply pending migrations, then exit.
    Migrate,
    /// Print the effective settings (secrets masked) and exit non-zero if any is invalid.
    CheckConfig,
    /// Operator tools.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Import open data now (the same run as the scheduled one, recorded in ingest_runs).
    Ingest {
        #[command(subcommand)]
        command: IngestCommand,
    },
    /// Import registry data (idempotent upserts; prints created / updated / unchanged).
    Import {
        #[command(subcommand)]
        command: ImportCommand,
    },
    /// Load demonstration data.
    Seed {
        #[command(subcommand)]
        command: SeedCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum SeedCommand {
    /// The apartment registry plus a lived-in demo complex, 용인신갈푸르지오: accounts demo.admin,
    /// demo.manager, demo.kim, demo.lee, demo.park (password maru-demo-1234), notices, contacts,
    /// schedules, a complaint and an open poll; and the sports club FC 마루 with an ended and a
    /// running match. Running it again changes nothing.
    Demo {
        /// The registry file to import first (AptListService rows); default: the Gyeonggi
        /// registry compiled into the binary.
        #[arg(long, value_name = "FILE")]
        registry: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Apartment complexes (kaptCode, kaptName, as1..as4, bjdCode) into communities (APARTMENT).
    Apartments {
        /// A JSON file: an array of rows or the AptListService envelope.
        #[arg(long, value_name = "FILE", required_unless_present = "from_api", conflicts_with = "from_api")]
        file: Option<PathBuf>,
        /// Page through the AptListService API configured in `[registry]` instead.
        #[arg(long)]
        from_api: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum IngestCommand {
    /// Clinical trials (dataset 3074271) from the configured gateway, or from a JSON file.
    Trials {
        /// A JSON file holding an array of rows or the gateway envelope, instead of the gateway.
        #[arg(long, value_name = "FILE")]
        from_file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Give the user the deployment-wide ADMIN role (bootstrap path for the first admin).
    Grant { handle: String },
    /// Take the ADMIN role away from the user.
    Revoke { handle: String },
}

/// Runs the parsed command; the exit code follows the result.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::CheckConfig = cli.command {
        return match Settings::load(cli.config.as_deref()) {
            Ok(s) => {
                // The per-method rate limits name methods: checked as the server start-up does.
                crate::grpc::admission::Admission::new(&s.rate_limit, crate::grpc::registry()?)?;
                println!("{}", s.to_masked_toml());
                Ok(())
            }
            Err(e) => Err(e.into()),
        };
    }
    let mut settings = Settings::load(cli.config.as_deref())?;
    if !matches!(cli.command, Command::Serve) && std::env::var_os("MARU__LOG__LEVEL").is_none() {
        // One-shot commands talk to a person: only problems are logged.
        settings.log.level = "warn".into();
        settings.log.format = "pretty".into();
    }
    let loki = telemetry::init_logging(&settings)?;
    if let Some(task) = loki {
        tokio::spawn(task);
    }
    let out = match trace_name(&cli.command) {
        // A one-shot command is one trace, its root span named after it (`cli.ingest`); the
        // server's RPCs are roots of their own.
        Some(name) => crate::traces::job(name, execute(cli.command, settings)).await,
        None => execute(cli.command, settings).await,
    };
    // Whatever the outcome, the exporter's last batch goes out before the process exits (the
    // server's: the spans of the drained RPCs).
    crate::traces::shutdown().await;
    out
}

/// The root span's name of a one-shot command; `None` for the server.
fn trace_name(command: &Command) -> Option<&'static str> {
    Some(match command {
        Command::Serve | Command::CheckConfig => return None,
        Command::Migrate => "cli.migrate",
        Command::Admin { .. } => "cli.admin",
        Command::Ingest { .. } => "cli.ingest",
        Command::Import { .. } => "cli.import",
        Command::Seed { .. } => "cli.seed",
    })
}

async fn execute(command: Command, settings: Settings) -> anyhow::Result<()> {
    match command {
        Command::Serve => Application::build(settings).await?.run_until_stopped().await,
        Command::Migrate => {
            let state = prepared_state(settings).await?;
            tracing::info!(applied = db::MIGRATOR.iter().count(), "migrations applied");
            state.db.close().await;
            Ok(())
        }
        Command::Admin { command } => {
            let state = prepared_state(settings).await?;
            let (handle, role) = match &command {
                AdminCommand::Grant { handle } => (handle, Role::Admin),
                AdminCommand::Revoke { handle } => (handle, Role::User),
            };
            state.cache.probe().await;
            let user = accounts::ops::set_role(&state, handle, role).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("{} is now {}", user.handle, role.as_db());
            if !state.cache.is_up() {
                // The servers' session cache could not be told; entries expire on their own.
                eprintln!(
                    "warning: Redis was unreachable: servers may judge {}'s existing tokens with the old role for up to {} s",
                    user.handle, state.settings.auth.session_cache_ttl_s
                );
            }
            Ok(())
        }
        Command::Ingest { command: IngestCommand::Trials { from_file } } => {
            let state = prepared_state(settings).await?;
            let run = ingest_trials(&state, from_file).await;
            state.db.close().await;
            let run = run?;
            anyhow::ensure!(run.result == RunResult::Succeeded, "ingest run {} failed", run.id);
            Ok(())
        }
        Command::Import { command: ImportCommand::Apartments { file, from_api } } => {
            let state = prepared_state(settings).await?;
            state.cache.probe().await;
            let source = match file {
                Some(path) if !from_api => registry::Source::File(path),
                _ => registry::Source::Api,
            };
            let summary = import_apartments(&state, source).await;
            state.db.close().await;
            summary.map(|_| ())
        }
        Command::Seed { command: SeedCommand::Demo { registry } } => {
            let state = prepared_state(settings).await?;
            state.cache.probe().await;
            let demo = crate::seed::demo(&state, registry).await;
            state.db.close().await;
            let demo = demo?;
            let what = if demo.created { "created" } else { "already there, unchanged" };
            println!("demo complex 용인신갈푸르지오 ({}): {what}", crate::seed::DEMO_KAPT_CODE);
            println!("  community_id {}", demo.community_id);
            println!("  sports club FC 마루 (join code {}), two matches", crate::seed::DEMO_CLUB_CODE);
            println!(
                "  accounts demo.admin (ADMIN), demo.manager (MANAGER), demo.kim, demo.lee (members), \
                 demo.park (pending); password {}",
                crate::seed::DEMO_PASSWORD
            );
            let what = if demo.dev_club_created { "created" } else { "already there, unchanged" };
            println!("club {} (community_id {}): {what}", crate::seed::DEMO_DEV_CLUB, demo.dev_club_id);
            println!(
                "  teams in every state, applications, likes; manager demo.manager, members demo.jiwoo, \
                 demo.minji, demo.hyun, demo.sora, demo.taeyang, demo.yuna (pending); same password"
            );
            let what = if demo.market_created { "created" } else { "already there, unchanged" };
            println!("market: {what}");
            println!(
                "  sellers demo.hana, demo.jun, demo.seo; {} products, likes, 3 open reports; same password",
                crate::seed::DEMO_PRODUCTS.len()
            );
            let what = if demo.chat_created { "created" } else { "already there, unchanged" };
            println!("chat: {what}");
            println!(
                "  {} rooms: DMs demo.kim–demo.lee and demo.kim–demo.hana, the group 마루 101동 이웃 (owner demo.manager)",
                crate::seed::DEMO_CHATS.len()
            );
            let what = if demo.photos_created { "created" } else { "already there, unchanged" };
            println!("feed photos: {what}");
            println!(
                "  {} posts with photos in 용인신갈푸르지오 (demo.kim, demo.lee, demo.manager), processed into variants",
                crate::seed::DEMO_PHOTO_POSTS.len()
            );
            Ok(())
        }
        Command::CheckConfig => unreachable!("handled above"),
    }
}

/// Runs a trials ingest with a progress bar on stderr and prints a summary.
async fn ingest_trials(state: &AppState, from_file: Option<PathBuf>) -> anyhow::Result<IngestRun> {
    let source = match from_file {
        Some(path) => Source::File(path),
        None => Source::Gateway,
    };
    let bar = row_progress_bar();
    let progress = {
        let bar = bar.clone();
        move |p: Progress| match p {
            Progress::Fetched { rows, total } => {
                bar.set_length(total as u64);
                bar.set_position(rows as u64);
            }
            Progress::Writing { rows } => {
                bar.set_message("writing");
                bar.set_length(rows as u64);
                bar.set_position(rows as u64);
            }
        }
    };
    let req = IngestRequest { source, trigger: Trigger::Cli, triggered_by: None, scheduled_for: None };
    let run = trials::ingest::ingest(state, req, &progress).await;
    bar.finish_and_clear();
    let run = run.map_err(|e| anyhow::anyhow!("{e}"))?;
    let took = run.finished_at.map(|f| (f - run.started_at).num_milliseconds() as f64 / 1000.0).unwrap_or_default();
    println!("ingest run {} ({}): {}", run.id, run.origin.label(), run.result.as_db());
    println!(
        "  fetched {}  created {}  updated {}  unchanged {}  failed {}  in {took:.1} s",
        run.fetched, run.created, run.updated, run.unchanged, run.failed
    );
    for e in &run.row_errors {
        println!("  row {} {}: {}", e.row, e.trial_id.as_deref().unwrap_or("-"), e.reason);
    }
    if let Some(error) = &run.error {
        println!("  error: {error}");
    }
    Ok(run)
}

async fn prepared_state(settings: Settings) -> anyhow::Result<AppState> {
    if settings.database.create_if_missing {
        db::create_if_missing(&settings.database).await?;
    }
    let pool = db::lazy_pool(&settings.database)?;
    db::migrate(&pool).await?;
    AppState::new(settings, pool)
}
