//! The client and worker subcommands: `call`, `services`, `service`, `worker echo`.

use std::process::ExitCode;

use bytes::Bytes;
use domo_client::{Client, ClientOptions};
use domo_mdp::Heartbeat;
use domo_worker::{Worker, WorkerOptions};

use crate::output::{frame_text, frames_json};
use crate::{BrokerArg, RequestArgs};

pub(crate) fn client(args: &RequestArgs) -> Result<Client, domo_client::Error> {
    let base = match (args.broker.pair, args.broker.broker.as_slice()) {
        (true, [primary, backup]) => ClientOptions::pair(primary.clone(), backup.clone()),
        _ => ClientOptions::new(args.broker.broker.iter().cloned()),
    };
    let mut options = base
        .timeout(args.timeout)
        .retries(args.retries)
        .pool_size(1);
    options.curve = args.broker.curve.clone();
    Client::new(options)
}

pub(crate) fn fail(error: impl std::fmt::Display) -> ExitCode {
    eprintln!("domo: {error}");
    ExitCode::FAILURE
}

/// `domo call SERVICE [FRAME]...`
pub(crate) async fn call(
    args: &RequestArgs,
    service: &str,
    frames: Vec<String>,
    json: bool,
) -> ExitCode {
    let body: Vec<Bytes> = frames.into_iter().map(Bytes::from).collect();
    let reply = match client(args) {
        Ok(c) => c.request(service.to_string(), body).await,
        Err(e) => Err(e),
    };
    match reply {
        Ok(frames) if json => {
            println!("{}", frames_json(&frames));
            ExitCode::SUCCESS
        }
        Ok(frames) => {
            for f in &frames {
                println!("{}", frame_text(f));
            }
            ExitCode::SUCCESS
        }
        Err(error) => fail(error),
    }
}

/// `domo services`
pub(crate) async fn services(args: &RequestArgs) -> ExitCode {
    let names = match client(args) {
        Ok(c) => c.services().await,
        Err(e) => Err(e),
    };
    match names {
        Ok(names) => {
            for n in names {
                println!("{n}");
            }
            ExitCode::SUCCESS
        }
        Err(error) => fail(error),
    }
}

/// `domo service NAME`: 0 for 200, 1 for 404, 2 if the broker could not be asked.
pub(crate) async fn service(args: &RequestArgs, name: &str) -> ExitCode {
    let available = match client(args) {
        Ok(c) => c.service_available(name.to_string()).await,
        Err(e) => Err(e),
    };
    match available {
        Ok(true) => {
            println!("200 {name}");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            println!("404 {name}");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("domo: {error}");
            ExitCode::from(2)
        }
    }
}

/// `domo worker echo SERVICE`: serves until SIGINT or SIGTERM, then sends DISCONNECT.
pub(crate) async fn echo_worker(
    broker: &BrokerArg,
    service: &str,
    sessions: usize,
    heartbeat: Heartbeat,
) -> ExitCode {
    let endpoints = &broker.broker;
    let base = match (broker.pair, endpoints.as_slice()) {
        (true, [primary, backup]) => WorkerOptions::pair(primary.clone(), backup.clone()),
        _ => WorkerOptions::new(endpoints.iter().cloned()),
    };
    let mut options = base.sessions(sessions).heartbeat(heartbeat);
    options.curve = broker.curve.clone();
    let worker = match Worker::new(service.to_string(), options) {
        Ok(w) => w,
        Err(error) => return fail(error),
    };
    eprintln!(
        "domo: echo worker for {service:?} on {}",
        endpoints.join(", ")
    );
    worker
        .serve(
            |body| async move { Ok::<_, std::convert::Infallible>(body) },
            shutdown_signal(),
        )
        .await;
    ExitCode::SUCCESS
}

/// Completes on SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// `domo broadcast SERVICE [FRAME]...`
pub(crate) async fn broadcast(args: &RequestArgs, service: &str, frames: Vec<String>) -> ExitCode {
    use domo_client::BroadcastEvent;
    let mut body: Vec<Bytes> = frames.into_iter().map(Bytes::from).collect();
    if body.is_empty() {
        body.push(Bytes::new());
    }
    let client = match client(args) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let mut replies = match client
        .broadcast(service.to_string(), body, args.timeout)
        .await
    {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    loop {
        let event = match replies.next().await {
            Ok(Some(event)) => event,
            Ok(None) => return ExitCode::FAILURE,
            Err(e) => return fail(e),
        };
        match event {
            BroadcastEvent::Reply { worker, frames } => {
                let shown: Vec<String> = frames.iter().map(|f| frame_text(f)).collect();
                println!("{worker}: {}", shown.join(" | "));
            }
            BroadcastEvent::Failed { worker } => println!("{worker}: failed"),
            BroadcastEvent::Done(s) => {
                println!(
                    "asked {}, answered {}, failed {}, timed out {}",
                    s.asked, s.answered, s.failed, s.timed_out
                );
                for (worker, outcome) in s
                    .workers
                    .iter()
                    .filter(|(_, o)| *o != domo_client::Outcome::Answered)
                {
                    println!("  {worker}: {outcome}");
                }
                return if s.asked > 0 && s.answered == s.asked {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                };
            }
        }
    }
}
