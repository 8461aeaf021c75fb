//! Titanic on PostgreSQL in a real `domo-broker` (issue #18): `[titanic] store =
//! "postgres"` against a real server (`DOMO_TEST_PG_URL`, which `.ci/run` sets from
//! `scripts/pg-test-cluster.sh`). A request acknowledged with `200` survives a kill -9 of the
//! broker: the restarted broker dispatches it and answers its reply. Without the variable the
//! tests say so and pass, except under `CI=true`, where they fail.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::Duration;

use domo_tests::*;

/// Writes `DIR/NAME.toml` with `[titanic] store = "postgres"`, `url` and the `more` lines of
/// that section; its path.
fn config(dir: &TempDir, name: &str, url: &str, more: &str) -> String {
    let path = dir.path().join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!("[titanic]\nstore = \"postgres\"\nurl = \"{url}\"\n{more}"),
    )
    .unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn an_acknowledged_request_survives_a_kill_9_of_the_broker_in_postgres() {
    let Some(url) = fresh_pg_database("DOMO_TEST_PG_URL") else {
        return;
    };
    let dir = TempDir::new("titanic-pg");
    let cfg = config(&dir, "broker", &url, "commit_timeout = \"5s\"\n");
    let mut b = LoggedBroker::start(&["--config", &cfg, "--heartbeat", "250ms"]);
    b.child.wait_line("Titanic store open (PostgreSQL)");
    wait_for_service(&b.endpoint, "titanic.request", b"200");
    // Stored while no worker serves `echo`: pending, then the broker dies.
    let ids: Vec<Vec<u8>> = {
        let client = ReqClient::connect(&b.endpoint);
        (0..5)
            .map(|i| {
                let body = format!("job {i}");
                let ack = client.request("titanic.request", &[b"echo", body.as_bytes()]);
                assert_eq!(ack[0], b"200", "{ack:?}");
                ack[1].clone()
            })
            .collect()
    };
    let (status, body) = http_get(&b.metrics, "/readyz");
    assert_eq!(status, 200);
    assert_eq!(
        body,
        "ready\ntitanic store: postgres, no synchronous standby configured\n"
    );
    b.child.signal("KILL");
    b.child.wait_exit(Duration::from_secs(10));
    drop(b);
    // Another broker process on the same database: every acknowledged request is still
    // there, and is dispatched once a worker comes.
    let b = LoggedBroker::start(&["--config", &cfg, "--heartbeat", "250ms"]);
    b.child.wait_line("Titanic store open (PostgreSQL)");
    wait_for_service(&b.endpoint, "titanic.reply", b"200");
    let client = ReqClient::connect(&b.endpoint);
    for id in &ids {
        assert_eq!(
            client.request("titanic.reply", &[id])[0],
            b"300",
            "pending after restart"
        );
    }
    let _echo = ZWorker::echo(&b.endpoint, "echo", Duration::from_millis(250));
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(
            titanic_reply_when_done(&client, id),
            vec![format!("job {i}").into_bytes()]
        );
    }
    assert_eq!(client.request("titanic.close", &[&ids[0]]), vec![b"200"]);
    assert_eq!(client.request("titanic.reply", &[&ids[0]]), vec![b"400"]);
    // domo titanic list / purge on the database, the broker running.
    let ack = client.request("titanic.request", &[b"nobody", b"x"]);
    assert_eq!(ack[0], b"200");
    let stuck = String::from_utf8(ack[1].clone()).unwrap();
    let domo = |args: &[&str]| {
        let out = Command::new(DOMO).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let listing = domo(&["titanic", "list", "--url", &url]);
    assert!(
        listing.starts_with(&format!("{stuck} nobody pending")),
        "{listing}"
    );
    assert!(listing.contains("1 pending, 4 done"), "{listing}");
    let purged = domo(&["titanic", "purge", "--url", &url, "--older-than", "0s"]);
    assert_eq!(purged, "5 removed\n");
    let listing = domo(&["titanic", "list", "--url", &url]);
    assert!(listing.starts_with("0 pending, 0 done"), "{listing}");
}

#[test]
fn a_password_in_the_url_or_no_url_is_a_config_error_naming_the_key() {
    let dir = TempDir::new("titanic-pg-config");
    for (text, words) in [
        ("[titanic]\nstore = \"postgres\"\n", "titanic.url: required"),
        (
            "[titanic]\nstore = \"postgres\"\nurl = \"postgres://domo:secret@db/domo\"\n",
            "titanic.url: holds a password",
        ),
        ("[topics]\nstore = \"postgres\"\n", "topics.url: required"),
        (
            "[topics]\nstore = \"postgres\"\nurl = \"postgres://domo:secret@db/domo\"\n",
            "topics.url: holds a password",
        ),
        ("[topics]\nstore = \"mysql\"\n", "topics.store"),
    ] {
        let path = dir.path().join("broker.toml");
        std::fs::write(&path, text).unwrap();
        let out = Command::new(DOMO_BROKER)
            .args(["--check-config", "--config", path.to_str().unwrap()])
            .env_remove("DOMO_CONFIG")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(words), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}

fn cluster(args: &[&str]) {
    let script =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/pg-test-cluster.sh");
    let out = Command::new("bash")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn with_the_synchronous_standby_down_a_request_is_an_error_never_a_200_and_works_again_after() {
    let Some(url) = fresh_pg_database("DOMO_TEST_PG_SYNC_URL") else {
        return;
    };
    let dir = std::env::var("DOMO_TEST_PG_SYNC_DIR").unwrap();
    let tmp = TempDir::new("titanic-pg-sync");
    let path = config(
        &tmp,
        "broker",
        &url,
        "require_sync_standby = true\ncommit_timeout = \"2s\"\n",
    );
    let b = LoggedBroker::start(&["--config", &path, "--heartbeat", "250ms"]);
    b.child.wait_line("Titanic store open (PostgreSQL)");
    wait_for_service(&b.endpoint, "titanic.request", b"200");
    let client = ReqClient::connect(&b.endpoint);
    assert_eq!(
        client.request("titanic.request", &[b"echo", b"one"])[0],
        b"200"
    );
    // /readyz names the store and its standby.
    let (status, body) = http_get(&b.metrics, "/readyz");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("titanic store: postgres, 1 synchronous standby attached"),
        "{body}"
    );
    // The standby goes away: the primary cannot acknowledge, and neither does Titanic.
    cluster(&["standby-stop", &dir]);
    struct Restart(String);
    impl Drop for Restart {
        fn drop(&mut self) {
            cluster(&["standby-start", &self.0]);
        }
    }
    let restart = Restart(dir.clone());
    let t0 = std::time::Instant::now();
    let answer = client.request("titanic.request", &[b"echo", b"two"]);
    assert_eq!(
        answer,
        vec![b"500".to_vec()],
        "never a 200 without the standby"
    );
    assert!(
        t0.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        t0.elapsed()
    );
    let (status, body) = http_get(&b.metrics, "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("commit_timeout"), "{body}");
    // Within a few seconds /readyz also says the standby is gone.
    eventually(
        Duration::from_secs(10),
        "/readyz never saw the standby gone",
        || {
            let (_, body) = http_get(&b.metrics, "/readyz");
            body.contains("no synchronous standby attached")
                .then_some(())
        },
    );
    // Back: requests are acknowledged again, and /readyz is 200.
    drop(restart);
    eventually(
        Duration::from_secs(30),
        "no 200 once the standby is back",
        || (client.request("titanic.request", &[b"echo", b"three"])[0] == b"200").then_some(()),
    );
    assert_eq!(http_get(&b.metrics, "/readyz").0, 200);
}

#[test]
fn require_sync_standby_against_a_server_without_one_keeps_titanic_closed_and_says_why() {
    let Some(url) = fresh_pg_database("DOMO_TEST_PG_URL") else {
        return;
    };
    let tmp = TempDir::new("titanic-pg-nosync");
    let path = config(&tmp, "broker", &url, "require_sync_standby = true\n");
    let b = LoggedBroker::start(&["--config", &path]);
    let (status, body) = eventually(Duration::from_secs(10), "readyz never said why", || {
        let (status, body) = http_get(&b.metrics, "/readyz");
        body.contains("require_sync_standby")
            .then_some((status, body))
    });
    assert_eq!(status, 503, "{body}");
}

#[test]
fn a_broker_started_before_its_database_serves_titanic_once_the_database_is_up() {
    if !pg_server_or_skip() {
        return;
    }
    // The database's port, free for now: nothing answers there yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = TempDir::new("titanic-pg-late");
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let path = config(&dir, "broker", &url, "commit_timeout = \"1s\"\n");
    let b = LoggedBroker::start(&["--config", &path, "--heartbeat", "250ms"]);
    wait_for_service(&b.endpoint, "titanic.request", b"200");

    // Up, Titanic registered, but no database: an error, never a 200, and /readyz says why.
    let client = ReqClient::connect(&b.endpoint);
    assert_eq!(
        client.request("titanic.request", &[b"echo", b"early"]),
        vec![b"500"]
    );
    let (status, body) = http_get(&b.metrics, "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("PostgreSQL"), "{body}");
    // The database comes up on that port: the broker connects in the background.
    let _db = PgCluster::start(&["start", &port.to_string()], "DOMO_TEST_PG_DIR");
    poll_until(Duration::from_secs(20), || {
        (http_get(&b.metrics, "/readyz").0 == 200).then_some(())
    })
    .unwrap_or_else(|| panic!("/readyz never 200:\n{}", b.child.log()));
    let ack = client.request("titanic.request", &[b"echo", b"late"]);
    assert_eq!(ack[0], b"200", "{ack:?}");
    assert_eq!(client.request("titanic.reply", &[&ack[1]]), vec![b"300"]);
}

#[test]
fn tls_to_the_database_is_verified_against_the_ca_file_and_a_refusal_says_why() {
    if !pg_server_or_skip() {
        return;
    }
    let db = PgCluster::start(&["start-tls"], "DOMO_TEST_PG_TLS_DIR");
    let (url, ca) = (
        db.var("DOMO_TEST_PG_TLS_URL"),
        db.var("DOMO_TEST_PG_TLS_CA"),
    );
    let dir = TempDir::new("titanic-pg-tls");
    let broker = |name: &str, url: &str, ca: Option<&str>| {
        let ca = ca.map_or(String::new(), |ca| format!("ca_file = \"{ca}\"\n"));
        let path = config(&dir, name, url, &format!("commit_timeout = \"2s\"\n{ca}"));
        let b = LoggedBroker::start(&["--config", &path, "--heartbeat", "250ms"]);
        wait_for_service(&b.endpoint, "titanic.request", b"200");
        b
    };

    // Trusting the CA: stored, over TLS (the server takes nothing else).
    let b = broker("trusted", &url, Some(&ca));
    let client = ReqClient::connect(&b.endpoint);
    let ack = client.request("titanic.request", &[b"echo", b"over tls"]);
    assert_eq!(ack[0], b"200", "{ack:?}\n{}", b.child.log());
    assert_eq!(http_get(&b.metrics, "/readyz").0, 200);
    let ssl = Command::new("psql")
        .args([
            url.as_str(),
            "-qAtc",
            "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = 'domo-titanic'",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&ssl.stdout).trim(), "t", "{ssl:?}");
    drop(client);
    drop(b);

    // The system's trust store does not know the test CA: refused, and /readyz says it is
    // the certificate, not a timeout.
    let b = broker("untrusted", &url, None);
    let client = ReqClient::connect(&b.endpoint);
    assert_eq!(
        client.request("titanic.request", &[b"echo", b"x"]),
        vec![b"500"]
    );
    let (status, body) = http_get(&b.metrics, "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.to_lowercase().contains("certificate"), "{body}");
    drop(client);
    drop(b);

    // Plain to a server that takes TLS only: the server's refusal, named.
    let plain = url.replace("sslmode=require", "sslmode=disable");
    let b = broker("plain", &plain, None);
    let client = ReqClient::connect(&b.endpoint);
    assert_eq!(
        client.request("titanic.request", &[b"echo", b"x"]),
        vec![b"500"]
    );
    let (status, body) = http_get(&b.metrics, "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no encryption"), "{body}");
}
