//! `domo-broker`: the Majordomo broker daemon.
//!
//! Exit codes: 0 after a clean shutdown (SIGINT/SIGTERM), 1 for a runtime failure (for
//! example an endpoint that cannot be bound), 2 for a usage or configuration error.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use domo_broker::duration::parse_duration;
use domo_broker::shell::{self, ShellConfig};
use domo_broker::BrokerConfig;
use domo_mdp::Heartbeat;
use tracing::error;

/// The domo Majordomo (MDP/0.1) broker.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Endpoint to bind: tcp://host:port, tcp://*:port or ipc://path. Repeat for several.
    #[arg(
        long = "bind",
        value_name = "EP",
        default_value = "tcp://127.0.0.1:5555"
    )]
    binds: Vec<String>,
    /// Heartbeat interval towards workers (e.g. 2500ms, 1s). Workers must use the same value.
    #[arg(long, value_name = "DURATION", default_value = "2500ms", value_parser = parse_duration)]
    heartbeat: Duration,
    /// Silent heartbeat intervals after which a worker is considered dead.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    liveness: u32,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = ShellConfig {
        binds: cli.binds,
        core: BrokerConfig {
            heartbeat: Heartbeat {
                interval: cli.heartbeat,
                liveness: cli.liveness,
            },
            ..BrokerConfig::default()
        },
        ..ShellConfig::default()
    };
    if let Err(e) = config.core.validate() {
        eprintln!("domo-broker: invalid configuration: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("domo-broker: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async {
        let bound = match shell::bind(config).await {
            Ok(b) => b,
            Err(e) => {
                error!(error = %e, "Cannot start");
                eprintln!("domo-broker: {e}");
                return ExitCode::from(1);
            }
        };
        match bound.run(shutdown_signal()).await {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                error!(error = %e, "Broker failed");
                ExitCode::from(1)
            }
        }
    })
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
