//! domo-worker's credit end to end: against a broker process, one session of credit 4 runs
//! four handlers at once (and the broker counts four requests at workers), one of credit 1
//! runs one at a time; against a plain ROUTER standing in for an RFC 7 broker, the worker
//! announces its credit in the handshake and answers a request as RFC 7 says.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use domo_client::{Client, ClientOptions};
use domo_mdp::extensions::CREDIT_PROPERTY;
use domo_mdp::worker::{decode_from_worker, encode_heartbeat, encode_request};
use domo_mdp::{PeerId, WorkerCommand};
use domo_tests::*;
use domo_worker::{Worker, WorkerOptions};
use domo_zmtp::{Router, RouterEvent};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(10);

/// Runs a short blocking closure that borrows from the test (metrics over HTTP).
fn blocking_scope<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// Starts `worker` serving `handler` in the background; the sender stops it.
fn serve<F, Fut>(worker: Worker, handler: F) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>)
where
    F: Fn(Vec<Bytes>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Vec<Bytes>, String>> + Send + 'static,
{
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(worker.serve(handler, async {
        let _ = stopped.await;
    }));
    (stop, serving)
}

/// Sends `n` requests to `service` at once through a client of `n` connections; each must
/// come back as its own body.
fn requests(endpoint: &str, service: &'static str, n: usize) -> JoinSet<()> {
    let options = ClientOptions::new([endpoint])
        .pool_size(n)
        .timeout(LIMIT)
        .retries(0);
    let client = Client::new(options).unwrap();
    let mut tasks = JoinSet::new();
    for i in 0..n {
        let client = client.clone();
        tasks.spawn(async move {
            let body = Bytes::from(format!("r{i}"));
            let reply = client.request(service, vec![body.clone()]).await.unwrap();
            assert_eq!(reply, vec![body]);
        });
    }
    tasks
}

async fn join_all(mut tasks: JoinSet<()>) {
    timeout(LIMIT, async {
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
    })
    .await
    .expect("every request answered in time");
}

async fn stop(stop: oneshot::Sender<()>, serving: tokio::task::JoinHandle<()>) {
    stop.send(()).unwrap();
    timeout(LIMIT, serving).await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_session_of_credit_4_runs_four_handlers_at_once() {
    let broker = blocking(|| LoggedBroker::start(&["--no-titanic"])).await;
    let options = WorkerOptions::new([broker.endpoint.as_str()])
        .sessions(1)
        .credit(4);
    let worker = Worker::new("credit", options).unwrap();
    // Each handler counts itself in, then waits for the test to let it go.
    let inside = Arc::new(AtomicUsize::new(0));
    let (entered, mut entries) = watch::channel(0);
    let (release, released) = watch::channel(false);
    let counter = inside.clone();
    let (stop_worker, serving) = serve(worker, move |body| {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        entered.send_replace(n);
        let mut released = released.clone();
        async move {
            timeout(LIMIT, released.wait_for(|go| *go))
                .await
                .map_err(|_| "never released".to_string())?
                .map_err(|e| e.to_string())?;
            Ok(body)
        }
    });
    blocking_scope(|| broker.wait_metric("domo_workers{service=\"credit\",state=\"idle\"}", 1.0));

    let tasks = requests(&broker.endpoint, "credit", 4);
    timeout(LIMIT, entries.wait_for(|n| *n == 4))
        .await
        .expect("four requests inside the handler at once")
        .unwrap();
    assert_eq!(inside.load(Ordering::SeqCst), 4);
    blocking_scope(|| broker.wait_metric("domo_requests_at_workers", 4.0));
    release.send_replace(true);
    join_all(tasks).await;
    blocking_scope(|| broker.wait_metric("domo_requests_at_workers", 0.0));
    stop(stop_worker, serving).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_of_credit_1_runs_one_handler_at_a_time() {
    let broker = blocking(|| LoggedBroker::start(&["--no-titanic"])).await;
    let options = WorkerOptions::new([broker.endpoint.as_str()])
        .sessions(1)
        .credit(1);
    let worker = Worker::new("single", options).unwrap();
    let inside = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (counter, peak) = (inside.clone(), most.clone());
    let (stop_worker, serving) = serve(worker, move |body| {
        let (counter, peak) = (counter.clone(), peak.clone());
        async move {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(n, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            counter.fetch_sub(1, Ordering::SeqCst);
            Ok(body)
        }
    });
    blocking_scope(|| broker.wait_metric("domo_workers{service=\"single\",state=\"idle\"}", 1.0));

    join_all(requests(&broker.endpoint, "single", 4)).await;
    assert_eq!(most.load(Ordering::SeqCst), 1, "handlers overlapped");
    stop(stop_worker, serving).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn against_an_rfc7_broker_the_credit_is_announced_and_a_request_answered() {
    // A ROUTER without X-Domo-Extensions, speaking RFC 7 frames.
    let router = Router::new(domo_zmtp::Options::default());
    let endpoint = router.bind("tcp://127.0.0.1:0").await.unwrap().to_string();
    let worker = Worker::new("rfc7", WorkerOptions::new([endpoint]).credit(4)).unwrap();
    let (stop_worker, serving) = serve(worker, |mut body: Vec<Bytes>| async move {
        body.push(Bytes::from_static(b"!"));
        Ok(body)
    });

    let (worker_id, metadata) = timeout(LIMIT, async {
        loop {
            if let RouterEvent::Connected { peer, metadata, .. } =
                router.recv_event().await.unwrap()
            {
                return (peer, metadata);
            }
        }
    })
    .await
    .expect("the worker connects");
    let credit = metadata.get(CREDIT_PROPERTY).map(|v| v.to_vec());
    assert_eq!(credit, Some(b"4".to_vec()));

    // The worker's commands, heartbeats skipped (and answered).
    let next = || async {
        timeout(LIMIT, async {
            loop {
                let (peer, msg) = router.recv().await.unwrap();
                assert_eq!(peer, worker_id);
                match decode_from_worker(msg).unwrap() {
                    WorkerCommand::Heartbeat => {
                        let _ = router.try_send(&peer, encode_heartbeat());
                    }
                    command => return command,
                }
            }
        })
        .await
        .expect("a command from the worker")
    };
    assert!(matches!(next().await, WorkerCommand::Ready { .. }));
    let token = PeerId::new(Bytes::from_static(b"client-1")).unwrap();
    let request = encode_request(&token, [Bytes::from_static(b"hi")]);
    router.send(&worker_id, request).await.unwrap();
    match next().await {
        WorkerCommand::Reply { client, body } => {
            assert_eq!(client, token);
            assert_eq!(body, [Bytes::from_static(b"hi"), Bytes::from_static(b"!")]);
        }
        other => panic!("expected a REPLY, got {other:?}"),
    }
    stop(stop_worker, serving).await;
}
