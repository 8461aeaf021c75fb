//! `domo-broker`: the Majordomo broker daemon.
//!
//! Exit codes: 0 after a clean shutdown (SIGINT/SIGTERM, after the drain) or a successful
//! `--check-config` / `--print-config`; 1 for a runtime failure (for example an endpoint or
//! the metrics address that cannot be bound); 2 for a usage or configuration error.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use domo_broker::config::{ConfigSource, HaRole, LogFormat, Overrides, DEFAULT_CONFIG};
use domo_broker::daemon::{self, EXIT_CONFIG, EXIT_RUNTIME};
use domo_broker::duration::parse_duration;

/// The domo Majordomo (MDP/0.1) broker.
///
/// Settings come from built-in defaults, then the --config file, then the environment
/// variables named below, then flags (later wins). Without --config the built-in defaults
/// are used; `--print-default-config` shows them, documented. Exit codes: 0 clean shutdown,
/// 1 runtime failure (e.g. cannot bind), 2 configuration or usage error.
#[derive(Debug, Parser)]
#[command(version = daemon::version(), about, long_about)]
struct Cli {
    /// Configuration file (TOML). Unknown keys and bad values are errors.
    #[arg(long, short = 'c', value_name = "PATH", env = "DOMO_CONFIG")]
    config: Option<PathBuf>,
    /// Check the configuration (file, env, flags) and exit 0 if valid, 2 if not. Binds
    /// nothing.
    #[arg(long)]
    check_config: bool,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
    /// Print the documented default configuration file and exit.
    #[arg(long)]
    print_default_config: bool,
    /// Endpoint to bind: tcp://host:port, tcp://*:port or ipc://path. Repeat for several
    /// [default: tcp://127.0.0.1:5555; config broker.bind]
    #[arg(
        long = "bind",
        value_name = "EP",
        env = "DOMO_BROKER__BIND",
        value_delimiter = ','
    )]
    binds: Option<Vec<String>>,
    /// Heartbeat interval towards workers, e.g. 2500ms, 1s. Workers must use the same value
    /// [default: 2500ms; config broker.heartbeat]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    heartbeat: Option<Duration>,
    /// Silent heartbeat intervals after which a worker is considered dead
    /// [default: 3; config broker.liveness]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    liveness: Option<u32>,
    /// Address of the /metrics, /healthz, /readyz listener; port 0 picks a free port (the
    /// address is logged); "off" disables it [default: 127.0.0.1:9464; config metrics.listen]
    #[arg(long, value_name = "ADDR|off", env = "DOMO_METRICS__LISTEN")]
    metrics_listen: Option<String>,
    /// Log filter when RUST_LOG is unset, e.g. info or "info,domo_zmtp=debug"
    /// [default: info; config log.level]
    #[arg(long, value_name = "FILTER", env = "DOMO_LOG__LEVEL")]
    log_level: Option<String>,
    /// Log line format on stderr [default: text; config log.format]
    #[arg(long, value_name = "FORMAT", env = "DOMO_LOG__FORMAT")]
    log_format: Option<LogFormat>,
    /// Directory of the Titanic store [default: $STATE_DIRECTORY if set, else
    /// ./titanic-data; config titanic.data_dir]
    #[arg(long, value_name = "PATH", env = "DOMO_TITANIC__DATA_DIR")]
    titanic_data_dir: Option<PathBuf>,
    /// Do not run the embedded Titanic (RFC 9) service [config titanic.enabled]
    #[arg(long)]
    no_titanic: bool,
    /// Binary Star: this broker's role in a primary/backup pair. Any --ha-* flag makes the
    /// broker one of a pair and needs role, bind and peer [config ha.role]
    #[arg(long, value_name = "ROLE", env = "DOMO_HA__ROLE")]
    ha_role: Option<HaRole>,
    /// Binary Star: this broker's state endpoint, where the peer connects, e.g.
    /// tcp://10.0.0.1:5556 [config ha.bind]
    #[arg(long, value_name = "EP", env = "DOMO_HA__BIND")]
    ha_bind: Option<String>,
    /// Binary Star: the peer's state endpoint [config ha.peer]
    #[arg(long, value_name = "EP", env = "DOMO_HA__PEER")]
    ha_peer: Option<String>,
    /// Binary Star: interval of the state exchange; the peer counts as silent after two
    /// [default: 1000ms; config ha.heartbeat]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    ha_heartbeat: Option<Duration>,
}

impl Cli {
    fn overrides(&self) -> Overrides {
        Overrides {
            binds: self.binds.clone(),
            heartbeat: self.heartbeat,
            liveness: self.liveness,
            metrics_listen: self.metrics_listen.clone(),
            log_level: self.log_level.clone(),
            log_format: self.log_format,
            titanic_data_dir: self.titanic_data_dir.clone(),
            no_titanic: self.no_titanic,
            ha_role: self.ha_role.map(Into::into),
            ha_bind: self.ha_bind.clone(),
            ha_peer: self.ha_peer.clone(),
            ha_heartbeat: self.ha_heartbeat,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.print_default_config {
        print!("{DEFAULT_CONFIG}");
        return ExitCode::SUCCESS;
    }
    let source = ConfigSource {
        file: cli.config.clone(),
        overrides: cli.overrides(),
    };
    let settings = match source.load() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("domo-broker: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if cli.print_config {
        print!("{}", settings.to_toml());
        return ExitCode::SUCCESS;
    }
    if cli.check_config {
        let source = cli
            .config
            .as_ref()
            .map_or_else(|| "built-in defaults".into(), |p| p.display().to_string());
        println!("domo-broker: configuration OK ({source})");
        return ExitCode::SUCCESS;
    }
    let filter = daemon::logging::init(&settings);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("domo-broker: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    runtime.block_on(daemon::run(source, settings, filter))
}
