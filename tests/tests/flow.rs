//! Replies to clients that have gone are dropped and counted, and the broker goes on.
#![allow(clippy::unwrap_used)]

use std::thread;
use std::time::Duration;

use domo_broker::shell::{self, ShellConfig};
use domo_broker::BrokerConfig;
use domo_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_to_a_client_that_has_gone_is_dropped_and_counted() {
    let config = ShellConfig {
        binds: vec!["tcp://127.0.0.1:0".into()],
        core: BrokerConfig::default(),
        ..ShellConfig::default()
    };
    let bound = shell::bind(config).await.unwrap();
    let ep = bound.endpoints()[0].to_string();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let broker = tokio::spawn(bound.run(async {
        let _ = stop_rx.await;
    }));
    let worker_ep = ep.clone();
    blocking(move || {
        // The worker answers 300 ms after it got the request; the client hangs up before.
        let (got_tx, got_rx) = std::sync::mpsc::channel();
        let got_tx = std::sync::Mutex::new(got_tx);
        let slow = ZWorker::start(
            &worker_ep,
            "slow",
            Duration::from_millis(2500),
            Box::new(move |body| {
                let _ = got_tx.lock().unwrap().send(());
                thread::sleep(Duration::from_millis(300));
                Some(body)
            }),
        );
        wait_for_service(&worker_ep, "slow", b"200");
        {
            let ctx = zmq::Context::new();
            let client = zsocket(&ctx, zmq::DEALER);
            client.connect(&worker_ep).unwrap();
            client
                .send_multipart(
                    [vec![], MDPC01.to_vec(), b"slow".to_vec(), b"bye".to_vec()],
                    0,
                )
                .unwrap();
            got_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        } // client socket and context closed while the worker is busy with its request
        eventually(
            Duration::from_secs(10),
            "the slow worker never replied",
            || (slow.served() >= 1).then_some(()),
        );
        // The broker still serves others afterwards.
        let c = ReqClient::connect(&worker_ep);
        assert_eq!(c.request("slow", &[b"next"]), vec![b"next".to_vec()]);
    })
    .await;
    stop_tx.send(()).unwrap();
    let stats = tokio::time::timeout(Duration::from_secs(10), broker)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    // The core knew the client had gone and dropped the reply itself.
    assert_eq!(
        stats.core.requests.dropped.client_gone + stats.shell.replies_to_gone_clients,
        1
    );
    assert_eq!(stats.core.requests.replied, 1, "only the second client's");
}
