//! `domo-gateway`: the HTTP gateway standalone, in front of any MDP broker.
//!
//! ```text
//! domo-gateway --broker tcp://127.0.0.1:5555 --listen 127.0.0.1:8080
//! ```
//!
//! `GET /metrics` on the same address gives its `domo_gateway_*` series.
//!
//! Exit codes: 0 after SIGINT/SIGTERM (requests in progress finish), 1 if the address cannot
//! be bound, 2 for bad flags.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use domo_client::{Client, ClientOptions};
use domo_gateway::{router, serve, Access, Closing, GatewayConfig, Setup};

/// HTTP gateway for MDP services, Titanic and topics.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The broker's MDP endpoint(s), comma-separated for failover.
    #[arg(
        long,
        env = "DOMO_BROKER",
        value_delimiter = ',',
        default_value = "tcp://127.0.0.1:5555"
    )]
    broker: Vec<String>,
    /// The HTTP address to listen on; port 0 picks a free one (logged).
    #[arg(long, env = "DOMO_GATEWAY__LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Listen on an address other than loopback without a tokens file, where anyone on the
    /// network can call every service.
    #[arg(long)]
    allow_anonymous: bool,
    /// Bearer tokens (SHA-256 hashes) and their rights; without it the gateway is open.
    #[arg(long, env = "DOMO_GATEWAY__TOKENS_FILE")]
    tokens_file: Option<std::path::PathBuf>,
    /// The pre-shared key of the WebSocket challenge.
    #[arg(long, env = "DOMO_GATEWAY__PSK_FILE")]
    psk_file: Option<std::path::PathBuf>,
    /// The broker's topics subscribe endpoint, for event streams and WebSocket subscriptions.
    #[arg(
        long,
        env = "DOMO_TOPICS__SUBSCRIBE",
        default_value = "tcp://127.0.0.1:5557"
    )]
    topics: String,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 4 << 20)]
    body_limit: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    if !args.listen.ip().is_loopback() && !args.allow_anonymous && args.tokens_file.is_none() {
        eprintln!(
            "domo-gateway: --listen {}: not a loopback address, and no --tokens-file: pass \
             --allow-anonymous to serve it to anyone anyway",
            args.listen
        );
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("domo-gateway: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(args))
}

async fn run(args: Args) -> ExitCode {
    let config = GatewayConfig {
        body_limit: args.body_limit,
        ..GatewayConfig::default()
    };
    let access = match Access::from_files(args.tokens_file.as_deref(), args.psk_file.as_deref()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("domo-gateway: {e}");
            return ExitCode::from(2);
        }
    };
    let topics = match args.topics.as_str() {
        "" | "off" => None,
        t => Some(t.to_string()),
    };
    let client = match Client::new(
        ClientOptions::new(args.broker.iter().cloned())
            .timeout(config.max_timeout + Duration::from_secs(1))
            .retries(0)
            .pool_size(64),
    ) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("domo-gateway: {e}");
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("domo-gateway: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let local = listener.local_addr().unwrap_or(args.listen);
    tracing::info!(addr = %local, broker = ?args.broker, "Gateway listening on http://{local}/v1/");
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let shutdown = async move {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    () = shutdown => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => shutdown.await,
        }
    };
    // Its own registry, served at GET /metrics on the same listener.
    let registry = prometheus::Registry::new();
    let metrics = match domo_gateway::GatewayMetrics::register(&registry) {
        Ok(m) => Some(m),
        Err(e) => {
            eprintln!("domo-gateway: metrics: {e}");
            None
        }
    };
    let closing = Closing::default();
    let setup = Setup {
        config,
        access,
        topics,
        metrics,
        closing: closing.clone(),
        ..Setup::new(client)
    };
    let app = router(setup).route(
        "/metrics",
        axum::routing::get(move || {
            let registry = registry.clone();
            async move {
                let mut buf = Vec::new();
                let _ = prometheus::Encoder::encode(
                    &prometheus::TextEncoder::new(),
                    &registry.gather(),
                    &mut buf,
                );
                String::from_utf8_lossy(&buf).into_owned()
            }
        }),
    );
    match serve(listener, app, config.header_timeout, closing, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("domo-gateway: {e}");
            ExitCode::FAILURE
        }
    }
}
