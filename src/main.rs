use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = maru::cli::Cli::parse();
    match maru::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("maru: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
