//! Binary Star with Titanic on one shared PostgreSQL database (issue #18): a durable request
//! acknowledged by the primary is known to the backup after a kill -9 and a takeover (with a
//! store per broker it answers 400), and the backup, now active, dispatches it and serves its
//! reply. Real `domo-broker` processes, a real PostgreSQL (`DOMO_TEST_PG_URL`, set by
//! `.ci/run`); without it the test says so and passes, except under `CI=true`.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;
use domo_client::{TitanicId, TitanicReply};
use domo_tests::pair::{
    pair_specs_with_titanic, pair_worker, single_client, wait_one_active, Node,
};
use domo_tests::{eventually_async, poll_until_async, TempDir};

const SERVICE: &str = "ledger";

async fn reply_at(endpoint: &str, id: &TitanicId) -> Result<TitanicReply, domo_client::Error> {
    let client = single_client(endpoint, Duration::from_millis(300));
    let reply = client.titanic_reply(id).await;
    client.close().await;
    reply
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failover_the_survivor_serves_every_request_the_dead_broker_acknowledged() {
    let Some(url) = domo_tests::fresh_pg_database("DOMO_TEST_PG_URL") else {
        return;
    };
    let hb = Duration::from_millis(200);
    let dir = TempDir::new("pair-titanic-pg");
    let config = dir.path().join("broker.toml");
    std::fs::write(
        &config,
        format!("[titanic]\nstore = \"postgres\"\nurl = \"{url}\"\n"),
    )
    .unwrap();
    let (mut sa, mut sb) = pair_specs_with_titanic(&dir, hb);
    for s in [&mut sa, &mut sb] {
        s.extra_args = vec!["--config".into(), config.to_str().unwrap().into()];
    }
    let mut a = Node::start(&sa);
    let b = Node::start(&sb);
    let states = wait_one_active(&a, &b, Duration::ZERO, Duration::from_secs(10));
    assert_eq!(
        (states.0.as_str(), states.1.as_str()),
        ("active", "passive")
    );

    // Three requests acknowledged by A, with no worker for the service.
    let client = single_client(&sa.frontend, Duration::from_secs(2));
    poll_until_async(Duration::from_secs(10), || async {
        let up = client.service_available("titanic.request").await;
        up.is_ok_and(|up| up).then_some(())
    })
    .await
    .expect("titanic.request never registered with A");
    let mut ids = Vec::new();
    for i in 0..3 {
        let body = vec![Bytes::from(format!("entry {i}"))];
        ids.push(client.submit(SERVICE, body).await.unwrap());
    }
    // One more under an idempotency key, submitted twice to A: one id.
    let keyed = client
        .submit_keyed("entry-3", SERVICE, vec![Bytes::from("entry 3")])
        .await
        .unwrap();
    let retry = client.submit_keyed("entry-3", SERVICE, vec![Bytes::from("entry 3")]);
    assert_eq!(retry.await.unwrap(), keyed);
    ids.push(keyed);
    client.close().await;

    // A dies; a client vote makes B active. B knows every request A acknowledged.
    a.kill9();
    let first = eventually_async(
        Duration::from_secs(10),
        "B never answered titanic.reply".to_string(),
        || reply_at(&sb.frontend, &ids[0]),
    )
    .await;
    assert_eq!(
        first,
        TitanicReply::Pending,
        "B shares A's store:\n{}",
        b.log()
    );
    assert_eq!(b.state(), "active");
    // The client that never heard A's answer retries through B with the same key: the id A
    // stored, not a second request.
    let client = single_client(&sb.frontend, Duration::from_secs(2));
    let retried = client.submit_keyed("entry-3", SERVICE, vec![Bytes::from("entry 3")]);
    assert_eq!(retried.await.unwrap(), keyed, "{}", b.log());
    client.close().await;
    // A worker comes: B's dispatcher delivers them, and B serves the replies.
    let worker_calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let calls = worker_calls.clone();
    let _worker = pair_worker(&sa, &sb, SERVICE, move |body| {
        calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut reply = vec![Bytes::from_static(b"booked")];
        reply.extend(body);
        reply
    });
    let client = single_client(&sb.frontend, Duration::from_secs(2));
    for (i, id) in ids.iter().enumerate() {
        let reply = eventually_async(
            Duration::from_secs(20),
            format!("no reply for request {i} through B"),
            || async {
                match client.titanic_reply(id).await {
                    Ok(TitanicReply::Done(frames)) => Ok(frames),
                    Ok(other) => Err(format!("{other:?}")),
                    Err(e) => Err(e.to_string()),
                }
            },
        )
        .await;
        assert_eq!(
            reply,
            vec![
                Bytes::from_static(b"booked"),
                Bytes::from(format!("entry {i}"))
            ]
        );
    }
    client.close().await;
    // Four requests, four deliveries: the keyed retries stored nothing.
    assert_eq!(worker_calls.load(std::sync::atomic::Ordering::SeqCst), 4);
}
