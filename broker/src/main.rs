//! `domo-broker`: the Majordomo broker daemon.
//!
//! Exit codes: 0 after a clean shutdown (SIGINT/SIGTERM, after the drain) or a successful
//! `--check-config` / `--print-config`; 1 for a runtime failure (for example an endpoint or
//! the metrics address that cannot be bound); 2 for a usage or configuration error; 3 for a
//! CURVE key file that cannot be used (`[security]`: missing, unreadable, malformed, or a
//! secret key readable by group or others).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser};
use domo_broker::config::{ConfigSource, Overrides, DEFAULT_CONFIG};
use domo_broker::daemon::{self, EXIT_CONFIG, EXIT_KEYS, EXIT_RUNTIME};
use domo_broker::security::BrokerKeys;

/// The domo Majordomo (MDP/0.1) broker.
///
/// Settings come from built-in defaults, then the --config file, then the environment
/// variables named below, then flags (later wins). Without --config the built-in defaults
/// are used; `--print-default-config` shows them, documented. Exit codes: 0 clean shutdown,
/// 1 runtime failure (e.g. cannot bind), 2 configuration or usage error, 3 unusable CURVE key
/// file.
#[derive(Debug, Parser)]
#[command(version = daemon::version(), about, long_about)]
struct Cli {
    /// Configuration file (TOML). Unknown keys and bad values are errors.
    #[arg(long, short = 'c', value_name = "PATH", env = "DOMO_CONFIG")]
    config: Option<PathBuf>,
    /// Check the configuration (file, env, flags) and the key files it names, and exit 0 if
    /// valid, 2 (configuration) or 3 (key file) if not. Binds nothing.
    #[arg(long)]
    check_config: bool,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
    /// Print the documented default configuration file and exit.
    #[arg(long)]
    print_default_config: bool,
    /// What the environment and flags set over the file.
    #[command(flatten)]
    overrides: Overrides,
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    cli.overrides.from_env = Overrides::keys_from_env(&matches);
    if cli.print_default_config {
        print!("{DEFAULT_CONFIG}");
        return ExitCode::SUCCESS;
    }
    let source = ConfigSource {
        file: cli.config.clone(),
        overrides: cli.overrides.clone(),
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
    let peer_key_file = settings.ha.as_ref().and_then(|ha| ha.peer_key_file.clone());
    let loaded =
        BrokerKeys::load(&settings.security).and_then(|keys| match (keys, peer_key_file) {
            (Some(mut keys), Some(path)) => keys.load_peer(&path).map(|()| Some(keys)),
            (keys, _) => Ok(keys),
        });
    let keys = match loaded {
        Ok(keys) => keys,
        Err(e) => {
            eprintln!("domo-broker: {e}");
            return ExitCode::from(EXIT_KEYS);
        }
    };
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
    runtime.block_on(daemon::run(source, settings, keys, filter))
}
