//! The Titanic helpers against the real `domo-broker` binary, which runs Titanic by default.
#![allow(clippy::unwrap_used)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use domo_client::{Client, ClientOptions, ErrorKind, TitanicReply};
use domo_tests::*;

/// A broker process, killed on drop; then its data directory is removed.
struct Broker {
    child: Child,
    _dir: TempDir,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_broker_with_titanic(ep: &str) -> Broker {
    let dir = TempDir::new("client-titanic");
    let child = Command::new(broker_binary())
        .args(["--bind", ep, "--metrics-listen", "off", "--no-topics"])
        .arg("--titanic-data-dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let broker = Broker { child, _dir: dir };
    wait_for_service(ep, "titanic.request", b"200");
    broker
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_poll_close_and_call_durable() {
    let ep = dead_endpoint();
    let e = ep.clone();
    let _broker = blocking(move || start_broker_with_titanic(&e)).await;
    let client =
        Client::new(ClientOptions::new([ep.as_str()]).timeout(Duration::from_secs(5))).unwrap();

    // Nobody serves "later" yet: the request is stored and stays pending.
    let id = client
        .submit("later", vec![Bytes::from("durable"), Bytes::new()])
        .await
        .unwrap();
    assert_eq!(id.to_string().len(), 32);
    assert_eq!(
        client.titanic_reply(&id).await.unwrap(),
        TitanicReply::Pending
    );
    match client
        .call_durable("later", vec![Bytes::from("x")], Duration::from_millis(300))
        .await
    {
        Err(e) if e.kind() == ErrorKind::TitanicPending => {
            assert_ne!(e.pending_id(), Some(id));
        }
        other => panic!("{other:?}"),
    }

    // A worker arrives; Titanic delivers the stored request and keeps the reply.
    let _worker = ZWorker::echo(&ep, "later", Duration::from_millis(2500));
    let reply = eventually_async(Duration::from_secs(20), "never answered", || async {
        match client.titanic_reply(&id).await.unwrap() {
            TitanicReply::Done(reply) => Some(reply),
            TitanicReply::Pending => None,
            TitanicReply::Unknown => panic!("request lost"),
        }
    })
    .await;
    assert_eq!(reply, vec![Bytes::from("durable"), Bytes::new()]);
    // titanic.reply does not delete; close does, and closing twice is fine.
    assert!(matches!(
        client.titanic_reply(&id).await.unwrap(),
        TitanicReply::Done(_)
    ));
    client.titanic_close(&id).await.unwrap();
    client.titanic_close(&id).await.unwrap();
    assert_eq!(
        client.titanic_reply(&id).await.unwrap(),
        TitanicReply::Unknown
    );

    // The convenience does all of it.
    let reply = client
        .call_durable(
            "later",
            vec![Bytes::from("all in one")],
            Duration::from_secs(20),
        )
        .await
        .unwrap();
    assert_eq!(reply, vec![Bytes::from("all in one")]);
    assert_eq!(
        client
            .titanic_reply(&"0123456789abcdef0123456789abcdef".parse().unwrap())
            .await
            .unwrap(),
        TitanicReply::Unknown
    );
}
