use anyhow::Result;
use clap::Parser;
use pglater::config::{AuthMode, Cli, Config, LogFormat};
use pglater::frontend::{Proxy, listener};
use std::io::IsTerminal;
use std::sync::Arc;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, warn};

fn main() {
    let cli = Cli::parse();
    let config = match Config::load(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pglater: configuration error: {e:#}");
            std::process::exit(2);
        }
    };
    init_logging(config.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = runtime.block_on(run(config)) {
        error!("{e:#}");
        std::process::exit(1);
    }
}

async fn run(config: Config) -> Result<()> {
    if config.auth == AuthMode::Trust {
        warn!("auth = trust: clients are NOT authenticated. Use this for development only.");
    }
    let proxy = Arc::new(Proxy::new(config)?);
    listener::run(proxy, shutdown_signal()).await
}

/// Resolves on the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        error!("cannot install signal handlers");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PGLATER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
