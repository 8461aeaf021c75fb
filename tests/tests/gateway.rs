//! The HTTP gateway in a real `domo-broker` (`--gateway-listen`), with domo-worker workers:
//! round trips, the status codes users expect (503 with `Retry-After`, 504, 413, 502), the
//! Titanic 202/202/200/404 cycle and topics over HTTP.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::time::Duration;

use bytes::Bytes;
use domo_tests::*;
use domo_worker::{Worker, WorkerOptions};

/// An HTTP/1.1 response: status, headers (lowercase names), body.
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

/// One request on a fresh connection (`Connection: close`), read to the end.
fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    // A body over the limit may be refused before it is all sent.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no header end");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&raw[..line_end]).unwrap(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[line_end + 2..line_end + 2 + size]);
        raw = &raw[line_end + 4 + size..];
    }
}

/// A broker with the gateway (and Titanic on a scratch directory); the gateway's address.
fn broker(dir: &TempDir, extra: &[&str]) -> (LoggedBroker, String) {
    let titanic = dir.path().join("titanic");
    let mut args = vec![
        "--gateway-listen",
        "127.0.0.1:0",
        "--heartbeat",
        "500ms",
        "--titanic-data-dir",
        titanic.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let b = LoggedBroker::start(&args);
    let gateway = http_addr(&b.child.wait_line("Gateway listening"));
    (b, gateway)
}

/// Serves `service` with `handler` on a domo-worker until the task is aborted.
fn serve<F, Fut>(endpoint: &str, service: &str, handler: F) -> tokio::task::JoinHandle<()>
where
    F: Fn(Vec<Bytes>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Vec<Bytes>> + Send + 'static,
{
    let options = WorkerOptions::new([endpoint]).heartbeat(domo_mdp::Heartbeat {
        interval: Duration::from_millis(500),
        liveness: 3,
    });
    let worker = Worker::new(service.to_string(), options).unwrap();
    tokio::spawn(async move {
        worker
            .serve(
                move |body| {
                    let reply = handler(body);
                    async move { Ok::<_, std::convert::Infallible>(reply.await) }
                },
                std::future::pending(),
            )
            .await;
    })
}

/// A worker of `slow` that answers after `delay`, and word of each request it gets.
async fn slow_worker(
    endpoint: &str,
    delay: Duration,
) -> (tokio::task::JoinHandle<()>, std::sync::mpsc::Receiver<()>) {
    let (entered_tx, entered_rx) = std::sync::mpsc::channel::<()>();
    let entered_tx = std::sync::Mutex::new(entered_tx);
    let worker = serve(endpoint, "slow", move |body| {
        let _ = entered_tx.lock().unwrap().send(());
        async move {
            tokio::time::sleep(delay).await;
            body
        }
    });
    wait_service(endpoint, "slow").await;
    (worker, entered_rx)
}

async fn wait_service(endpoint: &str, service: &str) {
    let ep = endpoint.to_string();
    let service = service.to_string();
    blocking(move || wait_for_service(&ep, &service, b"200")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_http_with_the_statuses_users_expect() {
    let (b, gw, _dir) = blocking(|| {
        let d = TempDir::new("gateway");
        let (b, gw) = broker(&d, &[]);
        (b, gw, d)
    })
    .await;
    let _echo = serve(&b.endpoint, "echo", |body| async move { body });
    let _slow = serve(&b.endpoint, "slow", |body| async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        body
    });
    let _two = serve(&b.endpoint, "two", |body| async move {
        let mut out = body;
        out.push(Bytes::from_static(&[0xff, 0x00]));
        out
    });
    for s in ["echo", "slow", "two"] {
        wait_service(&b.endpoint, s).await;
    }
    let gw2 = gw.clone();
    blocking(move || {
        let gw = gw2;
        // A raw frame in, the same back.
        let r = http(&gw, "POST", "/v1/services/echo", &[], b"hello");
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hello"[..]));
        assert_eq!(r.header("content-type"), Some("application/octet-stream"));
        // Frames as JSON, binary ones in base64, both ways.
        let r = http(
            &gw,
            "POST",
            "/v1/services/two?frames=json",
            &[("Content-Type", "application/json")],
            br#"["a", {"base64": "/wE="}]"#,
        );
        assert_eq!(r.status, 200);
        assert_eq!(
            r.json(),
            serde_json::json!(["a", {"base64": "/wE="}, {"base64": "/wA="}])
        );
        // Several reply frames cannot be a raw body: 502, saying how to ask.
        let r = http(&gw, "POST", "/v1/services/two", &[], b"x");
        assert_eq!(r.status, 502);
        assert!(r.json()["error"].as_str().unwrap().contains("?frames=json"));
        // No worker: 503 with Retry-After, at once.
        let t0 = std::time::Instant::now();
        let r = http(&gw, "POST", "/v1/services/nobody", &[], b"x");
        assert_eq!(r.status, 503);
        assert_eq!(r.header("retry-after"), Some("1"));
        assert!(t0.elapsed() < Duration::from_secs(2));
        // A slow worker past the deadline: 504.
        let r = http(&gw, "POST", "/v1/services/slow?timeout=300ms", &[], b"x");
        assert_eq!(r.status, 504);
        // Over the body limit: 413.
        let big = vec![b'x'; 5 << 20];
        let r = http(&gw, "POST", "/v1/services/echo", &[], &big);
        assert_eq!(r.status, 413);
        // Malformed: 400 with a reason.
        let r = http(&gw, "POST", "/v1/services/echo?frames=json", &[], b"[1,");
        assert_eq!(r.status, 400);
        assert!(r.json()["error"].as_str().unwrap().contains("not JSON"));
        let r = http(&gw, "POST", "/v1/services/echo?timeout=soon", &[], b"x");
        assert_eq!(r.status, 400);
        // The services, and the gateway still serving.
        let r = http(&gw, "GET", "/v1/services", &[], b"");
        assert_eq!(r.status, 200);
        let names: Vec<String> = r.json()["services"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_string())
            .collect();
        for s in ["echo", "slow", "two"] {
            assert!(names.iter().any(|n| n == s), "{names:?}");
        }
        let echo = r.json()["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "echo")
            .cloned()
            .unwrap();
        assert_eq!(
            (echo["workers"].as_u64(), echo["queued"].as_u64()),
            (Some(1), Some(0))
        );
        let r = http(&gw, "POST", "/v1/services/echo", &[], b"still here");
        assert_eq!((r.status, r.body.as_slice()), (200, &b"still here"[..]));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn titanic_over_http_goes_202_then_200_then_404() {
    let (b, gw, _dir) = blocking(|| {
        let d = TempDir::new("gateway-titanic");
        let (b, gw) = broker(&d, &[]);
        (b, gw, d)
    })
    .await;
    let gw2 = gw.clone();
    // Submitted while nobody serves it: stored, pending.
    let location = blocking(move || {
        let r = http(&gw2, "POST", "/v1/titanic/later", &[], b"job");
        assert_eq!(r.status, 202);
        let location = r.header("location").unwrap().to_string();
        assert!(location.starts_with("/v1/titanic/"), "{location}");
        let r = http(&gw2, "GET", &location, &[], b"");
        assert_eq!(r.status, 202);
        assert_eq!(r.header("retry-after"), Some("1"));
        location
    })
    .await;
    let _later = serve(&b.endpoint, "later", |body| async move {
        let mut out = vec![Bytes::from_static(b"done:")];
        out.extend(body);
        out
    });
    let gw3 = gw.clone();
    blocking(move || {
        let done = poll_until(Duration::from_secs(20), || {
            let r = http(&gw3, "GET", &format!("{location}?frames=json"), &[], b"");
            (r.status == 200).then_some(r)
        })
        .expect("never answered");
        assert_eq!(done.json(), serde_json::json!(["done:", "job"]));
        let r = http(&gw3, "DELETE", &location, &[], b"");
        assert_eq!(r.status, 204);
        let r = http(&gw3, "GET", &location, &[], b"");
        assert_eq!(r.status, 404);
        let r = http(&gw3, "GET", "/v1/titanic/not-an-id", &[], b"");
        assert_eq!(r.status, 404);
    })
    .await;
}

#[test]
fn topics_over_http_publish_with_offsets_and_read_from_one() {
    let dir = TempDir::new("gateway-topics");
    let (_b, gw) = broker(&dir, &[]);
    for i in 0..3 {
        let r = http(
            &gw,
            "POST",
            "/v1/topics/news",
            &[],
            format!("m{i}").as_bytes(),
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["offset"], i);
    }
    // A topic nobody created keeps its last value only.
    let r = http(&gw, "GET", "/v1/topics/news?from=0", &[], b"");
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(
        (v["first"].as_u64(), v["next"].as_u64()),
        (Some(2), Some(3))
    );
    assert_eq!(v["messages"][0]["frames"][0], "m2");
    let r = http(&gw, "GET", "/v1/topics/unknown", &[], b"");
    assert_eq!(r.status, 404);
}

#[test]
fn a_gateway_on_a_public_address_without_authentication_is_refused() {
    let out = std::process::Command::new(DOMO_BROKER)
        .args(["--check-config", "--gateway-listen", "0.0.0.0:8080"])
        .env_remove("DOMO_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("gateway-listen") && err.contains("allow_anonymous"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standalone_gateway_serves_any_broker_and_exits_0_on_sigterm() {
    let b = blocking(|| LoggedBroker::start(&["--no-titanic"])).await;
    let _echo = serve(&b.endpoint, "echo", |body| async move { body });
    wait_service(&b.endpoint, "echo").await;
    let endpoint = b.endpoint.clone();
    blocking(move || {
        let mut cmd = std::process::Command::new(DOMO_GATEWAY);
        cmd.args(["--broker", &endpoint, "--listen", "127.0.0.1:0"])
            .env_remove("RUST_LOG")
            .env_remove("DOMO_BROKER")
            .env_remove("DOMO_GATEWAY__LISTEN")
            .stdout(std::process::Stdio::null());
        let mut gw = LoggedChild::spawn(&mut cmd);
        let addr = http_addr(&gw.wait_line("Gateway listening"));
        let r = http(&addr, "POST", "/v1/services/echo", &[], b"standalone");
        assert_eq!((r.status, r.body.as_slice()), (200, &b"standalone"[..]));
        gw.signal("TERM");
        assert_eq!(gw.wait_exit(Duration::from_secs(10)).code(), Some(0));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_in_flight_it_answers_503_and_it_counts_by_route_with_request_ids() {
    let (b, gw, _dir) = blocking(|| {
        let d = TempDir::new("gateway-limit");
        let config = d.path().join("broker.toml");
        std::fs::write(&config, "[gateway]\nmax_in_flight = 1\n").unwrap();
        let (b, gw) = broker(&d, &["--config", config.to_str().unwrap()]);
        (b, gw, d)
    })
    .await;
    let (_slow, entered_rx) = slow_worker(&b.endpoint, Duration::from_secs(2)).await;
    let gw2 = gw.clone();
    blocking(move || {
        let gw = gw2;
        // One request in progress (the worker has it) ...
        let held = {
            let gw = gw.clone();
            std::thread::spawn(move || http(&gw, "POST", "/v1/services/slow", &[], b"x"))
        };
        entered_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the first request never reached the worker");
        // ... and the next one is refused at once, with its own id echoed.
        let r = http(
            &gw,
            "POST",
            "/v1/services/slow",
            &[("x-request-id", "abc-123")],
            b"y",
        );
        assert_eq!(r.status, 503);
        assert_eq!(r.header("retry-after"), Some("1"));
        assert_eq!(r.header("x-request-id"), Some("abc-123"));
        let first = held.join().unwrap();
        assert_eq!(first.status, 200);
        assert!(first.header("x-request-id").is_some());
    })
    .await;
    let route = "route=\"/v1/services/{service}\"";
    b.wait_metric(
        &format!("domo_gateway_requests_total{{{route},status=\"200\"}}"),
        1.0,
    );
    b.wait_metric(
        &format!("domo_gateway_requests_total{{{route},status=\"503\"}}"),
        1.0,
    );
}

#[test]
fn a_client_that_trickles_its_headers_is_closed_and_others_are_served() {
    let dir = TempDir::new("gateway-slowloris");
    let config = dir.path().join("broker.toml");
    std::fs::write(&config, "[gateway]\nheader_timeout = \"1s\"\n").unwrap();
    let (_b, gw) = broker(&dir, &["--config", config.to_str().unwrap()]);
    let mut slow = std::net::TcpStream::connect(&gw).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    slow.write_all(b"GET /v1/services HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    // Meanwhile others are served.
    let r = http(&gw, "GET", "/v1/services", &[], b"");
    assert_eq!(r.status, 200);
    // The trickling one is cut off after its header timeout (a 408 at most, then the close).
    let t0 = std::time::Instant::now();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    assert!(t0.elapsed() < Duration::from_secs(8), "not closed in time");
    let text = String::from_utf8_lossy(&rest);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_request_in_progress_finish_then_the_broker_exits_0() {
    let (b, gw, _dir) = blocking(|| {
        let d = TempDir::new("gateway-drain");
        let (b, gw) = broker(&d, &[]);
        (b, gw, d)
    })
    .await;
    let (_slow, entered_rx) = slow_worker(&b.endpoint, Duration::from_secs(1)).await;
    let mut b = b;
    blocking(move || {
        let held = {
            let gw = gw.clone();
            std::thread::spawn(move || http(&gw, "POST", "/v1/services/slow", &[], b"kept"))
        };
        entered_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the request never reached the worker");
        b.child.signal("TERM");
        let r = held.join().unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"kept"[..]));
        assert_eq!(b.child.wait_exit(Duration::from_secs(20)).code(), Some(0));
    })
    .await;
}
