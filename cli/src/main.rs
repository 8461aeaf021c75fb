//! `domo`: call services, ask the broker's MMI, run an echo worker, benchmark.
//!
//! Exit codes: 0 success; 1 a failed request (one line on stderr saying why), for
//! `domo service` a 404, for `domo bench` a broker binary it cannot find or start, or for
//! `domo keygen` files it cannot write (or that exist); 2 bad usage (including a
//! `--server-key`/`--key` file that cannot be used); `domo titanic reply` 3 while the request is pending (`300`) and 4 for an unknown id
//! (`400`), so scripts can poll. `domo bench` stopped by SIGINT, SIGTERM or SIGHUP while running a broker of its own
//! kills that broker and exits 130, 143 or 129.
//!
//! CURVE: the global `--server-key FILE` (the broker's public certificate) and `--key FILE`
//! (the caller's secret certificate), or `DOMO_SERVER_KEY`/`DOMO_KEY`, make every connection
//! to a broker a CURVE one; `domo keygen` writes such certificates (see `keys.rs`).
//!
//! Topics: `domo topic create|write|read|list|delete` call the broker's `topic.*` services;
//! `domo pub` publishes (acknowledged, or `--no-ack` on a PUB connection) and `domo sub`
//! prints what a subscriber gets (see `topic.rs`).
//!
//! `domo` does not link the broker: `domo bench` without `--broker` runs the `domo-broker`
//! binary as a child process (see `bench/broker.rs`).

mod bench;
mod call;
mod duration;
mod ha;
mod keys;
mod output;
mod titanic;
mod token;
mod top;
mod topic;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use domo_zmtp::curve::CurveClient;

use crate::duration::parse_duration;

/// Command-line tool for domo, the Majordomo (MDP/0.1) broker.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    broker: BrokerArg,
    #[command(subcommand)]
    command: Command,
}

/// The broker endpoint when neither --broker nor DOMO_BROKER gives one.
const DEFAULT_BROKER: &str = "tcp://127.0.0.1:5555";

/// Where the broker is: global options, accepted before or after the subcommand
/// (`domo --broker EP call ...` and `domo call --broker EP ...`).
#[derive(Debug, Args, Clone, Default)]
struct BrokerArg {
    /// Broker endpoint(s), comma-separated for failover [default: tcp://127.0.0.1:5555;
    /// `bench` starts a broker of its own without it].
    #[arg(
        long,
        global = true,
        env = "DOMO_BROKER",
        value_name = "EP",
        value_delimiter = ','
    )]
    broker: Vec<String>,
    /// The --broker endpoints are a Binary Star pair (primary first): workers register with
    /// both, and requests switch to the other broker on any timeout, after a settle delay.
    #[arg(long, global = true, env = "DOMO_PAIR")]
    pair: bool,
    /// The broker's public CURVE certificate (NAME.key): talk CURVE to a broker with
    /// [security]. Needs --key.
    #[arg(long, global = true, env = "DOMO_SERVER_KEY", value_name = "FILE")]
    server_key: Option<PathBuf>,
    /// Your secret CURVE certificate (NAME.key_secret, from `domo keygen`); the broker
    /// checks its public key and rights. Needs --server-key.
    #[arg(long, global = true, env = "DOMO_KEY", value_name = "FILE")]
    key: Option<PathBuf>,
    /// The keys read from --server-key and --key, filled in after parsing.
    #[arg(skip)]
    curve: Option<CurveClient>,
}

impl BrokerArg {
    /// The endpoints to use, [`DEFAULT_BROKER`] if none was given.
    fn or_default(&self) -> Self {
        let mut resolved = self.clone();
        if resolved.broker.is_empty() {
            resolved.broker = vec![DEFAULT_BROKER.to_string()];
        }
        resolved
    }
}

/// Request settings shared by the client subcommands.
#[derive(Debug, Args, Clone)]
struct RequestArgs {
    /// Filled in from the global --broker and --pair after parsing.
    #[arg(skip)]
    broker: BrokerArg,
    /// Per-attempt timeout, e.g. 2500ms or 5s.
    #[arg(long, value_name = "DURATION", default_value = "2500ms", value_parser = parse_duration)]
    timeout: Duration,
    /// Retries after the first attempt, each on a fresh connection.
    #[arg(long, value_name = "N", default_value_t = 2)]
    retries: u32,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Send a request and print the reply frames (UTF-8 as text, other bytes as hex).
    Call {
        #[command(flatten)]
        request: RequestArgs,
        /// Print the reply as a JSON array instead.
        #[arg(long)]
        json: bool,
        /// The service to call.
        service: String,
        /// Request body frames (one empty frame if none).
        frames: Vec<String>,
    },
    /// Send a request to every worker of a service (mmi.broadcast) and print each reply as
    /// it comes, then who answered; --timeout bounds the wait. Exit 0 when every worker
    /// asked answered, 1 otherwise (none, or some failed or timed out). Each reply is one
    /// line, `WORKER: FRAME | FRAME`.
    Broadcast {
        #[command(flatten)]
        request: RequestArgs,
        /// The service whose workers are asked.
        service: String,
        /// Request body frames (one empty frame if none).
        frames: Vec<String>,
    },
    /// List the services that have workers (mmi.services).
    Services {
        #[command(flatten)]
        request: RequestArgs,
    },
    /// Check a service (mmi.service): exit 0 if it has workers (200), 1 if not (404).
    Service {
        #[command(flatten)]
        request: RequestArgs,
        /// The service to check.
        name: String,
    },
    /// Run a worker.
    #[command(subcommand)]
    Worker(WorkerCommand),
    /// Durable requests through Titanic (RFC 9): submit, fetch the reply, close.
    #[command(subcommand)]
    Titanic(TitanicCommand),
    /// Topics: create, write, read, list, delete (the broker's topic.* services).
    #[command(subcommand)]
    Topic(TopicCommand),
    /// Publish a message to a topic: acknowledged (prints its offset once stored), or with
    /// --no-ack fire-and-forget on a PUB connection.
    Pub {
        #[command(flatten)]
        request: RequestArgs,
        /// Send on a PUB connection to the broker's publish endpoint; no acknowledgement.
        #[arg(long)]
        no_ack: bool,
        /// The broker's topic publish endpoint (for --no-ack).
        #[arg(
            long,
            value_name = "EP",
            env = "DOMO_TOPICS__PUBLISH",
            default_value = "tcp://127.0.0.1:5558"
        )]
        topics_publish: String,
        /// The topic (the message's first frame).
        topic: String,
        /// The message's frames after the topic.
        frames: Vec<String>,
    },
    /// Subscribe to topics by prefix and print messages as they come (`TOPIC OFFSET FRAME |
    /// FRAME...`): the last value of each matching topic first, then live; resumes after a
    /// reconnect without gaps or duplicates where the topics retain what was missed.
    Sub {
        #[command(flatten)]
        request: RequestArgs,
        /// The broker's topic subscribe endpoint.
        #[arg(
            long,
            value_name = "EP",
            env = "DOMO_TOPICS__SUBSCRIBE",
            default_value = "tcp://127.0.0.1:5557"
        )]
        topics_subscribe: String,
        /// Stop after this many messages.
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        /// One JSON object per message instead.
        #[arg(long)]
        json: bool,
        /// Topic prefixes (all topics if none).
        prefixes: Vec<String>,
    },
    /// Load test through the SDKs, with the raw-socket path in the same run for comparison.
    Bench(bench::BenchArgs),
    /// Binary Star pairs.
    #[command(subcommand)]
    Ha(HaCommand),
    /// Write a CURVE certificate: DIR/NAME.key (public, for the broker's allow-list) and
    /// DIR/NAME.key_secret (secret, mode 0600); never over existing files.
    Keygen {
        /// The certificate's name: the files are NAME.key and NAME.key_secret.
        name: String,
        /// The directory to write into (it must exist).
        #[arg(long, value_name = "DIR", default_value = ".")]
        dir: PathBuf,
        /// Metadata to put in the certificate, repeatable; the broker reads the rights
        /// `call` and `serve` from it, e.g. --meta call=echo,pay*.
        #[arg(long = "meta", value_name = "NAME=VALUE", value_parser = keys::parse_meta)]
        meta: Vec<(String, String)>,
    },
    /// Bearer tokens for the HTTP gateway.
    #[command(subcommand)]
    Token(TokenCommand),
    /// The broker at a glance, refreshed every second: services busiest first (workers, queue,
    /// requests/s, queue wait), drops, connections, the pair, Titanic, topics, the gateway.
    /// Reads GET /api/overview on the broker's metrics listener; q quits.
    Top {
        /// The broker's metrics listener ([metrics] listen).
        #[arg(
            long,
            value_name = "HOST:PORT",
            default_value = "127.0.0.1:9464",
            env = "DOMO_BROKER_HTTP"
        )]
        broker_http: String,
        /// Print one snapshot (with rates: it takes a second) and exit.
        #[arg(long)]
        once: bool,
        /// With --once: print the overview as JSON (the broker's /api/overview).
        #[arg(long, requires = "once")]
        json: bool,
    },
}

/// `domo token`.
#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Print a new token (on stderr, to give to the client) and its entry for the gateway's
    /// tokens file (on stdout, holding only the token's SHA-256):
    /// `domo token new --name web --call 'echo' >> tokens.toml`.
    New {
        /// Its name in the file and in logs.
        #[arg(long)]
        name: String,
        /// Services it may call, e.g. 'echo, billing.*' ('*': all; empty: none).
        #[arg(long, default_value = "")]
        call: String,
        /// Topics it may publish to.
        #[arg(long, default_value = "")]
        publish: String,
        /// Topics it may read and subscribe to.
        #[arg(long, default_value = "")]
        subscribe: String,
    },
}

#[derive(Debug, Subcommand)]
enum TopicCommand {
    /// Create a topic that keeps its newest messages within the bounds given; prints
    /// `created`, or `exists` if it exists with the same bounds.
    Create {
        #[command(flatten)]
        request: RequestArgs,
        /// Most messages kept.
        #[arg(long, value_name = "N", default_value_t = 1000)]
        max_messages: u64,
        /// Most bytes kept (frames after the topic).
        #[arg(long, value_name = "N", default_value_t = 16 << 20)]
        max_bytes: u64,
        /// Oldest message kept, e.g. 1h or 7d [default: no age limit].
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        max_age: Option<Duration>,
        /// Keep the messages on disk (durable before each write is acknowledged).
        #[arg(long)]
        disk: bool,
        /// The topic's name.
        name: String,
    },
    /// Publish a message and print its offset once stored (the same as `domo pub`).
    Write {
        #[command(flatten)]
        request: RequestArgs,
        /// The topic.
        name: String,
        /// The message's frames after the topic.
        frames: Vec<String>,
    },
    /// Print retained messages from an offset: `OFFSET FRAME | FRAME...` per line.
    Read {
        #[command(flatten)]
        request: RequestArgs,
        /// First offset wanted.
        #[arg(long, value_name = "N", default_value_t = 0)]
        from: u64,
        /// Most messages (at most 1000).
        #[arg(long, value_name = "N", default_value_t = 100)]
        max: usize,
        /// One JSON object (stream, first, next, messages) instead.
        #[arg(long)]
        json: bool,
        /// The topic.
        name: String,
    },
    /// List topics (`NAME INFO` per line), those starting with PREFIX if given.
    List {
        #[command(flatten)]
        request: RequestArgs,
        /// Name prefix.
        #[arg(default_value = "")]
        prefix: String,
    },
    /// Delete a topic and what it kept.
    Delete {
        #[command(flatten)]
        request: RequestArgs,
        /// The topic.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum HaCommand {
    /// Ask each broker (mmi.ha) for its role, state, term and what it knows of its peer; list
    /// both with --broker A,B. Exit 0 when every broker answered as one of a pair.
    Status {
        #[command(flatten)]
        request: RequestArgs,
        /// Print JSON instead (an object, or an array for several brokers).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum WorkerCommand {
    /// Echo every request back, until SIGINT or SIGTERM.
    Echo {
        /// Filled in from the global --broker and --pair after parsing.
        #[arg(skip)]
        broker: BrokerArg,
        /// The service to serve.
        service: String,
        /// Concurrent sessions (worker connections).
        #[arg(long, value_name = "N", default_value_t = 1)]
        sessions: usize,
        /// Heartbeat interval; must match the broker's.
        #[arg(long, value_name = "DURATION", default_value = "2500ms", value_parser = parse_duration)]
        heartbeat: Duration,
        /// Silent intervals before the broker is presumed dead; must match the broker's.
        #[arg(long, value_name = "N", default_value_t = 3)]
        liveness: u32,
    },
}

#[derive(Debug, Subcommand)]
enum TitanicCommand {
    /// Store a request durably; prints its id.
    Submit {
        #[command(flatten)]
        request: RequestArgs,
        /// The service that should answer it.
        service: String,
        /// Request body frames (one empty frame if none).
        frames: Vec<String>,
        /// An idempotency key: submitting again with the same key prints the same id and
        /// stores nothing (until that request is closed or expires).
        #[arg(long = "idempotency-key", value_name = "KEY")]
        idempotency_key: Option<String>,
    },
    /// Print the reply to a stored request: exit 0 with the frames, 3 while pending, 4 if unknown.
    Reply {
        #[command(flatten)]
        request: RequestArgs,
        /// Print the reply as a JSON array.
        #[arg(long)]
        json: bool,
        /// The request id from `submit`.
        id: String,
    },
    /// Remove a stored request and its reply.
    Close {
        #[command(flatten)]
        request: RequestArgs,
        /// The request id from `submit`.
        id: String,
    },
    /// List the pending requests of a stopped broker's store, oldest first (offline), or of
    /// a PostgreSQL store ([titanic] store = "postgres"; brokers may run).
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Remove requests stored more than a given time ago from a stopped broker's store
    /// (offline).
    Purge {
        #[command(flatten)]
        store: StoreArgs,
        /// Age limit, e.g. 7d or 12h.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        older_than: Duration,
    },
}

/// Which Titanic store `titanic list|purge` opens.
#[derive(Debug, clap::Args)]
pub(crate) struct StoreArgs {
    /// The Titanic data directory (holds titanic-log or titanic.redb) of a stopped broker.
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "url",
        conflicts_with = "url"
    )]
    data_dir: Option<std::path::PathBuf>,
    /// A PostgreSQL store instead: its URL ([titanic] url).
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// With --url: a file holding the password ([titanic] password_file).
    #[arg(long, value_name = "FILE", requires = "url")]
    password_file: Option<std::path::PathBuf>,
    /// With --url and sslmode=require in it: the CA certificates (PEM) the server's must
    /// chain to ([titanic] ca_file); default: the system's trust store.
    #[arg(long, value_name = "FILE", requires = "url")]
    ca_file: Option<std::path::PathBuf>,
}

impl Command {
    /// Where the subcommand keeps the broker endpoints, if it talks to a broker (`bench`
    /// takes its optional one separately).
    fn broker_mut(&mut self) -> Option<&mut BrokerArg> {
        match self {
            Self::Call { request, .. }
            | Self::Broadcast { request, .. }
            | Self::Services { request }
            | Self::Service { request, .. }
            | Self::Ha(HaCommand::Status { request, .. })
            | Self::Pub { request, .. }
            | Self::Sub { request, .. }
            | Self::Topic(
                TopicCommand::Create { request, .. }
                | TopicCommand::Write { request, .. }
                | TopicCommand::Read { request, .. }
                | TopicCommand::List { request, .. }
                | TopicCommand::Delete { request, .. },
            )
            | Self::Titanic(
                TitanicCommand::Submit { request, .. }
                | TitanicCommand::Reply { request, .. }
                | TitanicCommand::Close { request, .. },
            ) => Some(&mut request.broker),
            Self::Worker(WorkerCommand::Echo { broker, .. }) => Some(broker),
            Self::Bench(_)
            | Self::Keygen { .. }
            | Self::Token(_)
            | Self::Top { .. }
            | Self::Titanic(TitanicCommand::List { .. } | TitanicCommand::Purge { .. }) => None,
        }
    }
}

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    if let Some(broker) = cli.command.broker_mut() {
        *broker = cli.broker.or_default();
        if broker.pair && broker.broker.len() != 2 {
            eprintln!("domo: --pair needs exactly two --broker endpoints: primary,backup");
            return ExitCode::from(2);
        }
        match keys::load(broker.server_key.as_deref(), broker.key.as_deref()) {
            Ok(curve) => broker.curve = curve,
            Err(message) => {
                eprintln!("domo: {message}");
                return ExitCode::from(2);
            }
        }
    }
    if let Command::Bench(args) = &mut cli.command {
        // bench's own broker talks NULL; so do its raw phases, even to a given broker.
        if !cli.broker.broker.is_empty()
            && (cli.broker.server_key.is_some() || cli.broker.key.is_some())
        {
            eprintln!("domo: bench talks NULL only: leave out --server-key and --key");
            return ExitCode::from(2);
        }
        match cli.broker.broker.as_slice() {
            [] => args.broker = None,
            [one] => args.broker = Some(one.clone()),
            _ => {
                eprintln!("domo: bench takes one --broker endpoint");
                return ExitCode::from(2);
            }
        }
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("domo: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli.command))
}

async fn run(command: Command) -> ExitCode {
    match command {
        Command::Call {
            request,
            json,
            service,
            frames,
        } => call::call(&request, &service, frames, json).await,
        Command::Broadcast {
            request,
            service,
            frames,
        } => call::broadcast(&request, &service, frames).await,
        Command::Services { request } => call::services(&request).await,
        Command::Service { request, name } => call::service(&request, &name).await,
        Command::Worker(WorkerCommand::Echo {
            broker,
            service,
            sessions,
            heartbeat,
            liveness,
        }) => {
            let heartbeat = domo_mdp::Heartbeat {
                interval: heartbeat,
                liveness,
            };
            call::echo_worker(&broker, &service, sessions, heartbeat).await
        }
        Command::Bench(args) => bench::run(args).await,
        Command::Topic(TopicCommand::Create {
            request,
            max_messages,
            max_bytes,
            max_age,
            disk,
            name,
        }) => topic::create(&request, &name, max_messages, max_bytes, max_age, disk).await,
        Command::Topic(TopicCommand::Write {
            request,
            name,
            frames,
        })
        | Command::Pub {
            request,
            no_ack: false,
            topic: name,
            frames,
            ..
        } => topic::write(&request, &name, frames).await,
        Command::Pub {
            request,
            no_ack: true,
            topics_publish,
            topic,
            frames,
        } => topic::send(&request, &topics_publish, &topic, frames).await,
        Command::Topic(TopicCommand::Read {
            request,
            from,
            max,
            json,
            name,
        }) => topic::read(&request, &name, from, max, json).await,
        Command::Topic(TopicCommand::List { request, prefix }) => {
            topic::list(&request, &prefix).await
        }
        Command::Topic(TopicCommand::Delete { request, name }) => {
            topic::delete(&request, &name).await
        }
        Command::Sub {
            request,
            topics_subscribe,
            count,
            json,
            prefixes,
        } => topic::sub(&request, &topics_subscribe, &prefixes, count, json).await,
        Command::Ha(HaCommand::Status { request, json }) => ha::status(&request, json).await,
        Command::Titanic(TitanicCommand::Submit {
            request,
            service,
            frames,
            idempotency_key,
        }) => titanic::submit(&request, &service, frames, idempotency_key.as_deref()).await,
        Command::Titanic(TitanicCommand::Reply { request, json, id }) => {
            titanic::reply(&request, &id, json).await
        }
        Command::Titanic(TitanicCommand::Close { request, id }) => {
            titanic::close(&request, &id).await
        }
        Command::Keygen { name, dir, meta } => keys::keygen(&name, &dir, meta),
        Command::Top {
            broker_http,
            once,
            json,
        } => top::run(&broker_http, once, json),
        Command::Token(TokenCommand::New {
            name,
            call,
            publish,
            subscribe,
        }) => token::new(
            &name,
            &token::Rights {
                call,
                publish,
                subscribe,
            },
        ),
        // The stores' calls block: off the runtime's thread.
        Command::Titanic(TitanicCommand::List { store }) => {
            tokio::task::spawn_blocking(move || titanic::list(&store))
                .await
                .unwrap_or(ExitCode::FAILURE)
        }
        Command::Titanic(TitanicCommand::Purge { store, older_than }) => {
            tokio::task::spawn_blocking(move || titanic::purge(&store, older_than))
                .await
                .unwrap_or(ExitCode::FAILURE)
        }
    }
}
