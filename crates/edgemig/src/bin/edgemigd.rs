//! `edgemigd`: the host agent of one edge site. Thin shell over
//! `edgemig_agent`: parse flags, load the config, serve until SIGINT/SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use edgemig_agent::SiteConfig;
use tokio::signal::unix::{SignalKind, signal};

/// The edgemig host agent: runs this site's VMs and serves the edgemig API.
#[derive(Debug, Parser)]
#[command(name = "edgemigd", version, about)]
struct Args {
    /// Site config file (TOML); see docs/agent.md.
    #[arg(long, short, env = "EDGEMIGD_CONFIG")]
    config: PathBuf,
}

async fn shutdown_signal() {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let config = SiteConfig::load(&args.config)?;
    let listener = edgemig_agent::server::bind(&config)?;
    edgemig_agent::run(config, listener, shutdown_signal()).await?;
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EDGEMIG_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            for cause in error.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}
