//! A domo-worker worker behind an in-process broker, driven by a libzmq REQ client written
//! from RFC 7.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;
use domo_mdp::Heartbeat;
use domo_tests::*;
use domo_worker::{Worker, WorkerOptions};

fn options(endpoint: &str) -> WorkerOptions {
    WorkerOptions::new([endpoint]).heartbeat(Heartbeat {
        interval: Duration::from_millis(100),
        liveness: 3,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_serves_a_libzmq_req_client_through_the_broker() {
    let broker = TestBroker::start(fast_heartbeat()).await;
    let worker = Worker::new("echo", options(&broker.endpoint).sessions(2)).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(worker.serve(
        |mut body: Vec<Bytes>| async move {
            body.push(Bytes::from_static(b"!"));
            Ok::<_, std::convert::Infallible>(body)
        },
        async {
            let _ = stopped.await;
        },
    ));
    let ep = broker.endpoint.clone();
    blocking(move || {
        wait_for_service(&ep, "echo", b"200");
        let client = ReqClient::connect(&ep);
        for i in 0..20 {
            let n = i.to_string();
            let reply = client.request("echo", &[b"hi", n.as_bytes()]);
            assert_eq!(reply, vec![b"hi".to_vec(), n.into_bytes(), b"!".to_vec()]);
        }
        let workers = client.request("mmi.workers", &[b"echo"]);
        assert_eq!(workers, vec![b"2".to_vec()]);
    })
    .await;
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), serving)
        .await
        .unwrap()
        .unwrap();
    // Shutdown sent DISCONNECT: the broker forgets the service's workers at once.
    let ep = broker.endpoint.clone();
    blocking(move || wait_for_service(&ep, "echo", b"404")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_panic_or_error_does_not_kill_the_worker() {
    let broker = TestBroker::start(fast_heartbeat()).await;
    let worker = Worker::new("flaky", options(&broker.endpoint)).unwrap();
    let serving = tokio::spawn(worker.serve(
        |body: Vec<Bytes>| async move {
            match &body[0][..] {
                b"panic" => panic!("handler panics on purpose"),
                b"error" => Err("handler fails on purpose"),
                _ => Ok(body),
            }
        },
        std::future::pending(),
    ));
    let ep = broker.endpoint.clone();
    blocking(move || {
        wait_for_service(&ep, "flaky", b"200");
        for bad in [&b"panic"[..], b"error"] {
            let client = ReqClient::connect(&ep);
            client.set_timeout(300);
            // No reply: the session restarts and the broker re-dispatches the request
            // (to the same failing handler) until it gives up.
            assert_eq!(client.try_request("flaky", &[bad]), None, "{bad:?}");
        }
        let client = ReqClient::connect(&ep);
        let reply = eventually(Duration::from_secs(10), "worker never recovered", || {
            client.set_timeout(1000);
            client.try_request("flaky", &[b"fine"])
        });
        assert_eq!(reply, vec![b"fine".to_vec()]);
    })
    .await;
    serving.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_level_recv_and_reply() {
    let broker = TestBroker::start(fast_heartbeat()).await;
    let mut worker = Worker::new("upper", options(&broker.endpoint)).unwrap();
    let ep = broker.endpoint.clone();
    let client = tokio::task::spawn_blocking(move || {
        wait_for_service(&ep, "upper", b"200");
        ReqClient::connect(&ep).request("upper", &[b"abc"])
    });
    let mut request = tokio::time::timeout(Duration::from_secs(10), worker.recv())
        .await
        .unwrap()
        .unwrap();
    let body = request.take_body();
    request
        .reply(vec![Bytes::from(body[0].to_ascii_uppercase())])
        .unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(10), client)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply, vec![b"ABC".to_vec()]);
    tokio::time::timeout(Duration::from_secs(5), worker.shutdown())
        .await
        .unwrap();
}

#[tokio::test]
async fn bad_names_and_endpoints_are_refused() {
    use domo_worker::ErrorKind;
    let kind = |r: Result<Worker, domo_worker::Error>| r.unwrap_err().kind();
    assert_eq!(
        kind(Worker::new("", WorkerOptions::default())),
        ErrorKind::InvalidService
    );
    assert_eq!(
        kind(Worker::new("mmi.x", WorkerOptions::default())),
        ErrorKind::ReservedService
    );
    assert_eq!(
        kind(Worker::new("x", WorkerOptions::new(Vec::<String>::new()))),
        ErrorKind::NoEndpoints
    );
    assert_eq!(
        kind(Worker::new("x", WorkerOptions::new(["nonsense"]))),
        ErrorKind::InvalidEndpoint
    );
}
