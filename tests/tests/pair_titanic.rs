//! Binary Star with the embedded Titanic, against real `domo-broker` processes on 127.0.0.1:
//! a durable request acknowledged by the primary stays on the primary's disk through a
//! kill -9, a takeover by the backup and the primary's restart as passive; the passive
//! primary's dispatcher neither delivers it nor votes its broker active; after a manual
//! fail-back (the backup stopped, a client votes for the primary) it is delivered and its
//! reply fetched from the primary.
//!
//! The harness is `domo_tests::pair` (shared with `pair.rs`), each broker with its own Titanic
//! data directory instead of `--no-titanic`. Every process is killed on drop; every wait is
//! bounded.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use domo_client::{Error, TitanicId, TitanicReply};
use tokio::task::JoinHandle;

use domo_tests::pair::{
    pair_specs_with_titanic, pair_worker, single_client, wait_one_active, Node, Spec,
};
use domo_tests::{eventually_async, poll_until_async, TempDir};

/// The service behind Titanic; no worker serves it until step 4.
const SERVICE: &str = "slow";
/// What the worker puts before the request body in its reply.
const REPLY_TAG: &str = "slow served";

// === Harness (the rest is in `domo_tests::pair`) ===

/// Both brokers' logs, for failure messages; `earlier` is the log of a killed incarnation.
fn logs(a: &Node, b: &Node, earlier: &str) -> String {
    format!(
        "A (earlier run):\n{earlier}\nA:\n{}\nB:\n{}",
        a.log(),
        b.log()
    )
}

/// `titanic.reply id` at one broker, on a fresh connection (a passive broker drops it: a
/// timeout).
async fn reply_at(
    endpoint: &str,
    id: &TitanicId,
    timeout: Duration,
) -> Result<TitanicReply, Error> {
    let client = single_client(endpoint, timeout);
    let reply = client.titanic_reply(id).await;
    client.close().await;
    reply
}

/// Asks `titanic.reply id` at `endpoint` until the broker answers at all: the first
/// answered request after the peer's expiry is the client vote that makes it active.
async fn vote_with_reply(endpoint: &str, id: &TitanicId, within: Duration) -> TitanicReply {
    eventually_async(
        within,
        format!("{endpoint} never answered titanic.reply"),
        || reply_at(endpoint, id, Duration::from_millis(300)),
    )
    .await
}

/// A worker for [`SERVICE`] registered with both brokers; records every request body it
/// serves and replies [`REPLY_TAG`] then the body.
fn slow_worker(a: &Spec, b: &Spec, served: Arc<Mutex<Vec<Vec<Bytes>>>>) -> JoinHandle<()> {
    pair_worker(a, b, SERVICE, move |body| {
        served.lock().unwrap().push(body.clone());
        let mut reply = vec![Bytes::from_static(REPLY_TAG.as_bytes())];
        reply.extend(body);
        reply
    })
}

// === Test ===

/// A Titanic request acknowledged by the primary lives on the primary's disk only: after a
/// kill -9 and a takeover the backup does not know it; the restarted (passive) primary's
/// dispatcher holds it without delivering it or voting; once the backup is stopped and a
/// client votes the primary active, it is delivered with its original body and its reply is
/// served by the primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn titanic_request_stays_on_its_broker_and_goes_out_after_failback() {
    let started = Instant::now();
    let hb = Duration::from_millis(200);
    let expiry = hb * 2;
    let dir = TempDir::new("pair-titanic");
    let (sa, sb) = pair_specs_with_titanic(&dir, hb);

    // 1. The pair: A active, B passive.
    let mut a = Node::start(&sa);
    let mut b = Node::start(&sb);
    let states = wait_one_active(&a, &b, Duration::ZERO, Duration::from_secs(10));
    assert_eq!(
        (states.0.as_str(), states.1.as_str()),
        ("active", "passive"),
        "the primary is active first\n{}",
        logs(&a, &b, "")
    );

    // 2. With no worker for the service, a client of A alone stores a request: 200 + id.
    let client = single_client(&sa.frontend, Duration::from_secs(2));
    poll_until_async(Duration::from_secs(10), || async {
        let up = client.service_available("titanic.request").await;
        up.is_ok_and(|up| up).then_some(())
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "titanic.request never registered with A\n{}",
            logs(&a, &b, "")
        )
    });
    let body = vec![
        Bytes::from_static(b"durable"),
        Bytes::from_static(b"payload 42"),
    ];
    let id = client
        .submit(SERVICE, body.clone())
        .await
        .unwrap_or_else(|e| panic!("titanic.request at A: {e}\n{}", logs(&a, &b, "")));
    assert_eq!(id.to_string().len(), 32, "a 32-hex-digit id: {id:?}");
    assert_eq!(
        client.titanic_reply(&id).await.unwrap(),
        TitanicReply::Pending,
        "no worker yet: titanic.reply at A says 300\n{}",
        logs(&a, &b, "")
    );
    client.close().await;
    eprintln!(
        "step 2 done at {:?}: request {id} stored by A",
        started.elapsed()
    );

    // 3. kill -9 A; a client request to B after the peer expiry makes B active; B never
    // stored the request.
    a.kill9();
    let killed_log = a.log();
    let killed = Instant::now();
    tokio::time::sleep(expiry + Duration::from_millis(100)).await;
    let at_b = vote_with_reply(&sb.frontend, &id, Duration::from_secs(10)).await;
    eprintln!("step 3: B answered {:?} after the kill", killed.elapsed());
    assert_eq!(
        at_b,
        TitanicReply::Unknown,
        "B's Titanic never stored the request: 400\n{}",
        logs(&a, &b, &killed_log)
    );
    assert_eq!(b.state(), "active", "{}", logs(&a, &b, &killed_log));
    assert_eq!(b.failovers(), 1.0, "B took over by one client vote");

    // 4. A restarts on the same endpoint and data directory: passive, the request still
    // pending on its disk. A worker registered with both gets nothing, and A stays passive.
    a = Node::start(&sa);
    a.wait_state("passive", Duration::from_secs(10));
    poll_until_async(Duration::from_secs(10), || {
        std::future::ready((a.titanic_pending() == Some(1.0)).then_some(()))
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "A's Titanic does not hold the request after its restart: {:?}\n{}",
            a.titanic_pending(),
            logs(&a, &b, &killed_log)
        )
    });
    assert_eq!(b.titanic_pending(), Some(0.0), "B's Titanic holds nothing");
    let served = Arc::new(Mutex::new(Vec::new()));
    let worker = slow_worker(&sa, &sb, served.clone());
    let idle = format!("domo_workers{{service=\"{SERVICE}\",state=\"idle\"}}");
    poll_until_async(Duration::from_secs(10), || {
        let both = a.metric(&idle) == Some(1.0) && b.metric(&idle) == Some(1.0);
        std::future::ready(both.then_some(()))
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "worker not registered with both: A {:?}, B {:?}\n{}",
            a.metric(&idle),
            b.metric(&idle),
            logs(&a, &b, &killed_log)
        )
    });
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        assert!(
            served.lock().unwrap().is_empty(),
            "the worker got a request while A is passive: {:?}\n{}",
            served.lock().unwrap(),
            logs(&a, &b, &killed_log)
        );
        assert_eq!(
            (a.state().as_str(), b.state().as_str()),
            ("passive", "active"),
            "no fail-back while B is up\n{}",
            logs(&a, &b, &killed_log)
        );
        assert_eq!(
            a.failovers(),
            0.0,
            "A's own Titanic voted A active\n{}",
            logs(&a, &b, &killed_log)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(a.titanic_pending(), Some(1.0), "still pending on A");
    eprintln!("step 4 done at {:?}", started.elapsed());

    // 5. Manual fail-back: B drains and exits on SIGTERM.
    b.signal("TERM");
    let status = b.wait_exit(Duration::from_secs(30));
    assert_eq!(
        status.code(),
        Some(0),
        "B's clean exit\n{}",
        logs(&a, &b, &killed_log)
    );
    let b_gone = Instant::now();
    // With its peer gone and no client asking, A stays passive: the request its Titanic
    // holds does not go out, so it casts no vote.
    let until = b_gone + expiry * 3;
    while Instant::now() < until {
        assert_eq!(
            a.state(),
            "passive",
            "A turned active without a client vote\n{}",
            logs(&a, &b, &killed_log)
        );
        assert!(
            served.lock().unwrap().is_empty(),
            "delivered while A is passive\n{}",
            logs(&a, &b, &killed_log)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(a.failovers(), 0.0, "no vote from A's own Titanic");
    // A client request to A is the vote.
    let first = vote_with_reply(&sa.frontend, &id, Duration::from_secs(10)).await;
    let voted = Instant::now();
    assert!(
        matches!(first, TitanicReply::Pending | TitanicReply::Done(_)),
        "A still holds the request after the fail-back: {first:?}\n{}",
        logs(&a, &b, &killed_log)
    );
    assert_eq!(a.state(), "active", "{}", logs(&a, &b, &killed_log));
    assert_eq!(a.failovers(), 1.0, "A took over by the client's vote");
    // A's dispatcher delivers the stored request; its reply is stored and served.
    let client = single_client(&sa.frontend, Duration::from_secs(2));
    let within = Duration::from_secs(10).saturating_sub(voted.elapsed());
    let reply = poll_until_async(within, || async {
        match client.titanic_reply(&id).await {
            Ok(TitanicReply::Done(reply)) => Some(reply),
            Ok(TitanicReply::Pending) => None,
            other => panic!(
                "titanic.reply at A: {other:?}\n{}",
                logs(&a, &b, &killed_log)
            ),
        }
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "not delivered within 10 s of the fail-back (served {:?})\n{}",
            served.lock().unwrap(),
            logs(&a, &b, &killed_log)
        )
    });
    eprintln!(
        "step 5: reply stored {:?} after the vote, at {:?}",
        voted.elapsed(),
        started.elapsed()
    );
    let mut expected = vec![Bytes::from_static(REPLY_TAG.as_bytes())];
    expected.extend(body.iter().cloned());
    assert_eq!(reply, expected, "the worker's reply, via A's Titanic");
    let served_now = served.lock().unwrap().clone();
    assert!(
        !served_now.is_empty() && served_now.iter().all(|b| *b == body),
        "the worker served the original body at least once: {served_now:?}"
    );
    eprintln!("worker served the request {} time(s)", served_now.len());
    client
        .titanic_close(&id)
        .await
        .unwrap_or_else(|e| panic!("titanic.close at A: {e}\n{}", logs(&a, &b, &killed_log)));
    assert_eq!(
        client.titanic_reply(&id).await.unwrap(),
        TitanicReply::Unknown,
        "closed: titanic.reply says 400"
    );
    client.close().await;
    worker.abort();
    eprintln!("total {:?}", started.elapsed());
}
