//! The real `domo-broker` binary is SIGKILLed and started again on the same endpoint: a
//! domo-worker worker re-registers within its backoff and a domo-client request succeeds,
//! with neither program restarted.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;
use domo_client::{Client, ClientOptions};
use domo_mdp::Heartbeat;
use domo_tests::*;
use domo_worker::{Worker, WorkerOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_and_client_survive_a_broker_restart_on_the_same_endpoint() {
    let ep = dead_endpoint();
    let args = ["--heartbeat", "200ms", "--liveness", "3"];
    let e = ep.clone();
    let broker = blocking(move || BrokerProcess::start(&e, &args)).await;

    let heartbeat = Heartbeat {
        interval: Duration::from_millis(200),
        liveness: 3,
    };
    let worker = Worker::new(
        "echo",
        WorkerOptions::new([ep.as_str()]).heartbeat(heartbeat),
    )
    .unwrap();
    let serving = tokio::spawn(worker.serve(
        |body: Vec<Bytes>| async move { Ok::<_, std::convert::Infallible>(body) },
        std::future::pending(),
    ));
    let client = Client::new(
        ClientOptions::new([ep.as_str()])
            .timeout(Duration::from_millis(500))
            .retries(1),
    )
    .unwrap();
    let reply = tokio::time::timeout(
        Duration::from_secs(20),
        client.request("echo", vec![Bytes::from_static(b"before")]),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(reply, vec![Bytes::from_static(b"before")]);

    blocking(move || broker.kill()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let e = ep.clone();
    let _broker = blocking(move || BrokerProcess::start(&e, &args)).await;

    // Dead-broker detection (3 x 200 ms) plus the first backoff delay (1 s + up to 25%),
    // with slack for a loaded machine.
    let reply = eventually_async(Duration::from_secs(10), "no reply after restart", || {
        client.request("echo", vec![Bytes::from_static(b"after")])
    })
    .await;
    assert_eq!(reply, vec![Bytes::from_static(b"after")]);
    serving.abort();
}
