//! Services the broker serves in process (how the embedded Titanic is served): libzmq clients
//! reach them like any worker's service, they take `credit` requests at once, they never
//! expire for lack of heartbeats, and a panicking handler (in its future, or in the call that
//! makes it) is answered with its failure reply while the service goes on.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use domo_broker::shell::{self, LocalHandler, ShellConfig};
use domo_broker::BrokerConfig;
use domo_mdp::{Credit, Heartbeat, ServiceName};
use domo_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_process_service_answers_clients_concurrently_outlives_heartbeats_and_survives_a_panic(
) {
    // A worker silent for 300 ms would expire; the in-process one must not.
    let core = BrokerConfig {
        heartbeat: Heartbeat {
            interval: Duration::from_millis(100),
            liveness: 3,
        },
        ..BrokerConfig::default()
    };
    let config = ShellConfig {
        binds: vec!["tcp://127.0.0.1:0".into()],
        core,
        ..ShellConfig::default()
    };
    let mut bound = shell::bind(config).await.unwrap();
    let ep = bound.endpoints()[0].to_string();

    // Echoes the body; "wait" requests hold until 4 are in the handler at once (so they all
    // finish only if the broker runs 4 at once: credit 4); "panic" panics.
    let inside = Arc::new(AtomicUsize::new(0));
    let all_in = Arc::new(tokio::sync::Notify::new());
    let handler: LocalHandler = {
        let (inside, all_in) = (inside.clone(), all_in.clone());
        Arc::new(move |body: Vec<Bytes>| {
            // A panic in the call itself, before any future (a handler that does its
            // synchronous part at once, as Titanic's queues its write).
            assert!(
                &body[0][..] != b"panic at the call",
                "the handler fails at once"
            );
            let (inside, all_in) = (inside.clone(), all_in.clone());
            Box::pin(async move {
                match &body[0][..] {
                    b"panic" => panic!("the handler fails"),
                    b"wait" => {
                        let notified = all_in.notified();
                        if inside.fetch_add(1, Ordering::SeqCst) + 1 == 4 {
                            all_in.notify_waiters();
                        } else {
                            notified.await;
                        }
                        body
                    }
                    _ => body,
                }
            })
        })
    };
    bound.serve_in_process(
        ServiceName::try_from("local.echo").unwrap(),
        Credit::new(4).unwrap(),
        handler,
        vec![Bytes::from_static(b"failed")],
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let broker = tokio::spawn(bound.run(async {
        let _ = stop_rx.await;
    }));

    blocking(move || {
        wait_for_service(&ep, "local.echo", b"200");
        let c = ReqClient::connect(&ep);
        assert_eq!(
            c.request("local.echo", &[b"hi", b"there"]),
            vec![b"hi".to_vec(), b"there".to_vec()]
        );

        // Four at once, from four libzmq clients.
        let waiting: Vec<_> = (0..4)
            .map(|_| {
                let ep = ep.clone();
                std::thread::spawn(move || {
                    ReqClient::connect(&ep).request("local.echo", &[b"wait"])
                })
            })
            .collect();
        for w in waiting {
            assert_eq!(w.join().unwrap(), vec![b"wait".to_vec()]);
        }

        // A panic is answered with the failure reply; the service goes on.
        assert_eq!(
            c.request("local.echo", &[b"panic"]),
            vec![b"failed".to_vec()]
        );
        assert_eq!(
            c.request("local.echo", &[b"after"]),
            vec![b"after".to_vec()]
        );
        assert_eq!(
            c.request("local.echo", &[b"panic at the call"]),
            vec![b"failed".to_vec()]
        );
        assert_eq!(
            c.request("local.echo", &[b"after that"]),
            vec![b"after that".to_vec()]
        );

        // Ten liveness windows without a request: still registered, still served.
        std::thread::sleep(Duration::from_secs(3));
        assert_eq!(
            c.request("mmi.service", &[b"local.echo"]),
            vec![b"200".to_vec()]
        );
        assert_eq!(
            c.request("local.echo", &[b"later"]),
            vec![b"later".to_vec()]
        );
    })
    .await;
    stop_tx.send(()).unwrap();
    let stats = tokio::time::timeout(Duration::from_secs(10), broker)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(stats.core.requests.replied, 10, "{:?}", stats.core.requests);
}
