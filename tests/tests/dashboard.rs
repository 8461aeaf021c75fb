//! The dashboard (`GET /` on the metrics listener) in a real headless Chromium, driven over the
//! DevTools protocol: the page renders the broker's services from `/api/overview`, follows
//! requests and a worker leaving, and shows no message body. Also `/api/overview`'s schema and
//! `domo top --once --json`.
//!
//! The browser test needs Debian's `chromium` (`.ci/run` installs it); without it the test says
//! so and passes, except under `CI=true`, where it fails. Its screenshot is written to
//! `target/ci-artifacts/dashboard.png`.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use domo_tests::*;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const CHROMIUM: &str = "chromium";

fn chromium_present() -> bool {
    let ok = Command::new(CHROMIUM)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    present_or_skip(ok, "chromium (apt-get install chromium)")
}

/// A headless Chromium in its own process group, killed (with its children) on drop.
struct Browser {
    child: std::process::Child,
    devtools: String,
    _profile: TempDir,
}

impl Browser {
    fn start() -> Self {
        use std::os::unix::process::CommandExt as _;
        let profile = TempDir::new("chromium-profile");
        let mut child = Command::new(CHROMIUM)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                // No crash reporter: its handler would leave the process group.
                "--disable-crash-reporter",
                "--disable-breakpad",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "--window-size=1280,800",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            // Its crash handler starts in a session of its own; with HOME here its command
            // line names the profile, so it can be found and killed too.
            .env("HOME", profile.path())
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        let devtools = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("chromium did not open its DevTools endpoint in 30 s");
        Self {
            child,
            devtools,
            _profile: profile,
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole group: the browser and its renderer processes; then whatever else runs
        // from its profile (the crash handler).
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
        let _ = Command::new("pkill")
            .args(["-KILL", "-f", &self._profile.path().display().to_string()])
            .status();
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A DevTools protocol connection to the browser, with one page attached.
struct Page {
    ws: Ws,
    next_id: u64,
    session: String,
}

impl Page {
    async fn open(browser: &Browser, url: &str) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(browser.devtools.as_str())
            .await
            .unwrap();
        let mut page = Self {
            ws,
            next_id: 0,
            session: String::new(),
        };
        let target = page
            .call(None, "Target.createTarget", json!({ "url": "about:blank" }))
            .await;
        let target = target["targetId"].as_str().unwrap().to_string();
        let attached = page
            .call(
                None,
                "Target.attachToTarget",
                json!({ "targetId": target, "flatten": true }),
            )
            .await;
        page.session = attached["sessionId"].as_str().unwrap().to_string();
        page.send(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": false }),
        )
        .await;
        page.send("Page.navigate", json!({ "url": url })).await;
        page
    }

    /// A command and its result (events in between are skipped).
    async fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        self.ws.send(Message::text(msg.to_string())).await.unwrap();
        loop {
            let m = tokio::time::timeout(Duration::from_secs(20), self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("no answer to {method} in 20 s"))
                .expect("DevTools connection closed")
                .unwrap();
            let Message::Text(text) = m else { continue };
            let v: Value = serde_json::from_str(text.as_str()).unwrap();
            if v["id"] == json!(id) {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    async fn send(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.call(Some(&session), method, params).await
    }

    /// The value of a JavaScript expression in the page.
    async fn eval(&mut self, expression: &str) -> Value {
        let r = self
            .send(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true }),
            )
            .await;
        r["result"]["value"].clone()
    }

    /// Waits (up to `within`) until `expression` is truthy; its last value.
    async fn wait_for(&mut self, expression: &str, within: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let v = self.eval(expression).await;
            if !v.is_null() && v != json!(false) {
                return v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{expression} never held; the page shows: {}",
                self.eval("document.body.innerText").await
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The text of a cell of the service row.
fn cell(service: &str, field: &str) -> String {
    format!(
        "document.querySelector('tr[data-service=\"{service}\"] td[data-field=\"{field}\"]')?.textContent ?? null"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_a_real_browser_follows_workers_and_requests() {
    if !chromium_present() {
        return;
    }
    let b = blocking(|| LoggedBroker::start(&["--no-titanic"])).await;
    let w1 = serve(&b.endpoint, "payments", |body| async move { body });
    let _w2 = serve(&b.endpoint, "payments", |body| async move { body });
    let browser = blocking(Browser::start).await;
    let mut page = Page::open(&browser, &format!("http://{}/", b.metrics)).await;
    // The page's script renders the service with its two workers.
    let workers = page
        .wait_for(
            &format!("({}) === '2' && '2'", cell("payments", "workers")),
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(workers, "2");
    // Requests: the rate moves off zero. No body is ever shown.
    let client =
        domo_client::Client::new(domo_client::ClientOptions::new([b.endpoint.clone()])).unwrap();
    let load = tokio::spawn(async move {
        loop {
            let _ = client
                .request("payments", vec![Bytes::from_static(b"card-4111-secret")])
                .await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let rate = page
        .wait_for(
            &format!(
                "parseFloat(({}) || '0') > 0 && ({})",
                cell("payments", "rate"),
                cell("payments", "rate")
            ),
            Duration::from_secs(20),
        )
        .await;
    eprintln!("payments rate shown: {rate}");
    // A few seconds of it, so the sparkline has a shape in the screenshot.
    page.wait_for(
        "(document.querySelector('tr[data-service=\"payments\"] td[data-field=\"rate\"] polyline')\
         ?.getAttribute('points') ?? '').split(' ').length >= 6",
        Duration::from_secs(20),
    )
    .await;
    let shown = page.eval("document.documentElement.outerHTML").await;
    assert!(!shown.as_str().unwrap().contains("card-4111-secret"));
    // A screenshot of it at work, for the CI artifacts.
    let shot = page
        .send("Page.captureScreenshot", json!({ "format": "png" }))
        .await;
    let png = base64_decode(shot["data"].as_str().unwrap());
    assert!(png.starts_with(b"\x89PNG"));
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/ci-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("dashboard.png"), &png).unwrap();
    eprintln!("screenshot: {}", dir.join("dashboard.png").display());
    load.abort();
    // A worker stops: the page follows.
    w1.abort();
    let workers = page
        .wait_for(
            &format!("({}) === '1' && '1'", cell("payments", "workers")),
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(workers, "1");
    drop(browser);
}

fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes().filter(|c| *c != b'=') {
        let v = ALPHABET.iter().position(|a| *a == c).unwrap() as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// The fields of `/api/overview` version 1, with their JSON types.
fn assert_schema(o: &Value) {
    assert_eq!(o["version"], 1, "{o}");
    assert!(o["broker"]["version"].is_string() && o["broker"]["draining"].is_boolean());
    assert!(o["interval_seconds"].is_number() || o["interval_seconds"].is_null());
    for s in o["services"].as_array().unwrap() {
        for key in [
            "workers_idle",
            "workers_busy",
            "queued",
            "queued_bytes",
            "credit_used",
            "credit_total",
            "expired_total",
        ] {
            assert!(s[key].is_u64(), "{key}: {s}");
        }
        assert!(s["name"].is_string() && s["history"].is_array());
        for key in [
            "requests_per_second",
            "replies_per_second",
            "queue_wait_p50_ms",
            "queue_wait_p99_ms",
        ] {
            assert!(s[key].is_number() || s[key].is_null(), "{key}: {s}");
        }
    }
    let r = &o["requests"];
    assert!(r["queued"].is_u64() && r["queued_bytes"].is_u64() && r["dropped"].is_object());
    assert!(r["history"].is_array());
    let c = &o["connections"];
    assert!(c["peers"].is_u64() && c["workers"].is_u64());
    assert!(c["clients_paused"].is_u64() && c["pauses"].is_object());
    for part in ["pair", "titanic", "topics", "gateway"] {
        assert!(o[part].is_object() || o[part].is_null(), "{part}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_api_and_domo_top_once_json_describe_the_broker() {
    let b = blocking(|| LoggedBroker::start(&["--gateway-listen", "127.0.0.1:0"])).await;
    let _w = serve(&b.endpoint, "orders", |body| async move { body });
    wait_service(&b.endpoint, "orders").await;
    let client =
        domo_client::Client::new(domo_client::ClientOptions::new([b.endpoint.clone()])).unwrap();
    for _ in 0..20 {
        client
            .request("orders", vec![Bytes::from_static(b"x")])
            .await
            .unwrap();
    }
    let metrics = b.metrics.clone();
    let (status, body) = blocking(move || http_get(&metrics, "/api/overview")).await;
    assert_eq!(status, 200);
    let o: Value = serde_json::from_str(&body).unwrap();
    assert_schema(&o);
    let orders = o["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "orders")
        .expect("orders listed")
        .clone();
    assert_eq!(
        (
            orders["workers_idle"].as_u64(),
            orders["workers_busy"].as_u64()
        ),
        (Some(1), Some(0))
    );
    // Titanic and topics run in this broker (the defaults); the pair does not.
    assert!(o["titanic"].is_object() && o["topics"].is_object() && o["pair"].is_null());
    // domo top --once --json: the same document, with rates.
    let metrics = b.metrics.clone();
    let out = blocking(move || {
        Command::new(DOMO)
            .args(["top", "--once", "--json", "--broker-http", &metrics])
            .output()
            .unwrap()
    })
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let top: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_schema(&top);
    assert!(top["interval_seconds"].as_f64().unwrap() > 0.0, "{top}");
    assert!(top["services"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["name"] == "orders"));
    // The text form names the service too.
    let metrics = b.metrics.clone();
    let out = blocking(move || {
        Command::new(DOMO)
            .args(["top", "--once", "--broker-http", &metrics])
            .output()
            .unwrap()
    })
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().any(|l| l.starts_with("orders ")), "{text}");
    // The page itself is served, compiled in.
    let metrics = b.metrics.clone();
    let (status, page) = blocking(move || http_get(&metrics, "/")).await;
    assert_eq!(status, 200);
    assert!(page.contains("api/overview") && page.contains("<title>domo broker</title>"));
}

#[test]
fn without_a_metrics_listener_domo_top_says_why_and_exits_1() {
    // A port nothing listens on: what `domo top` meets when [metrics] listen = "off".
    let dead = dead_endpoint().replace("tcp://", "");
    let out = Command::new(DOMO)
        .args(["top", "--once", "--broker-http", &dead])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&dead) && err.to_lowercase().contains("refused"),
        "{err}"
    );
}
