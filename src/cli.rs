//! The `maru` command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::app::{AppState, Application};
use crate::caller::Role;
use crate::config::Settings;
use crate::{accounts, db, telemetry};

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
    match cli.command {
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
            Ok(())
        }
        Command::CheckConfig => unreachable!("handled above"),
    }
}

async fn prepared_state(settings: Settings) -> anyhow::Result<AppState> {
    if settings.database.create_if_missing {
        db::create_if_missing(&settings.database).await?;
    }
    let pool = db::lazy_pool(&settings.database)?;
    db::migrate(&pool).await?;
    AppState::new(settings, pool)
}
