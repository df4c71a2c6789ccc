// The same rule as the library's (see lib.rs): nothing here may panic on input.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::todo,
    clippy::unimplemented,
    clippy::indexing_slicing
)]

use anyhow::Result;
use clap::Parser;
use pglater::config::{Cli, Config, LogFormat, warn_if_trust};
use pglater::frontend::{Proxy, listener};
use pglater::later::Later;
use std::io::IsTerminal;
use std::sync::Arc;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::oneshot;
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
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.threads)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("pglater: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(run(config, cli)) {
        error!("{e:#}");
        std::process::exit(1);
    }
}

async fn run(config: Config, cli: Cli) -> Result<()> {
    if config.hba.is_none() {
        warn_if_trust(config.auth);
    }
    let mut proxy = Proxy::new(config)?;
    if proxy.config.later.enabled {
        proxy.later = Some(Later::start(&proxy.config, proxy.upstream.clone()).await?);
    }
    let proxy = Arc::new(proxy);
    tokio::spawn(reload_on_sighup(proxy.clone(), cli));
    let later = proxy.later.clone();
    pglater::admin::start(&proxy.config, later.clone()).await?;
    let grace = proxy.config.shutdown_timeout;
    let (first_signal, stop_accepting) = oneshot::channel();
    let force = proxy.force_close.clone();
    let stop_jobs = later.as_ref().map(|l| l.stopping.clone());
    tokio::spawn(async move {
        let Ok(mut signals) = Signals::new() else {
            error!("cannot install signal handlers");
            return;
        };
        signals.next().await;
        let _ = first_signal.send(());
        if let Some(stop) = &stop_jobs {
            stop.cancel();
        }
        signals.next().await;
        warn!("second signal: closing sessions now");
        force.cancel();
    });
    let jobs_done = async {
        if let Some(later) = &later {
            later.shutdown(grace).await;
        }
    };
    let (served, ()) = tokio::join!(
        listener::run(proxy, async {
            let _ = stop_accepting.await;
        }),
        async {
            // Jobs drain alongside sessions once the first signal arrives.
            if let Some(later) = &later {
                later.stopping.cancelled().await;
            }
            jobs_done.await
        }
    );
    served
}

/// SIGHUP reads the configuration again (file, environment, the flags given at start) and
/// applies what can change without a restart; a bad file leaves everything as it was.
async fn reload_on_sighup(proxy: Arc<Proxy>, cli: Cli) {
    let Ok(mut hangup) = signal(SignalKind::hangup()) else {
        error!("cannot install the SIGHUP handler");
        return;
    };
    while hangup.recv().await.is_some() {
        let reloaded = Config::load(&cli).and_then(|config| proxy.reload(&config));
        if let Err(e) = reloaded {
            error!("configuration not reloaded, the current one stays: {e:#}");
        }
    }
}

/// SIGTERM and SIGINT: the first stops accepting and drains, the second closes sessions.
struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn next(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_env("PGLATER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // Whatever PGLATER_LOG says, other crates log warnings and errors only: at debug level
    // tokio-postgres prints every store statement's parameters (job scripts, bound values)
    // and sqlparser the expressions of the scripts it reads. Only pglater's own lines, which
    // name jobs by id and hold no secret, follow the chosen level.
    let own_lines_only = tracing_subscriber::filter::Targets::new()
        .with_target("pglater", tracing::Level::TRACE)
        .with_default(tracing::Level::WARN);
    match format {
        LogFormat::Text => builder.finish().with(own_lines_only).init(),
        LogFormat::Json => builder.json().finish().with(own_lines_only).init(),
    }
}
