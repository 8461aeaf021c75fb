//! MDP peers written from RFC 7 on plain libzmq sockets (no domo code on the peer side): a REQ
//! client as in the zguide's `mdcliapi`, a DEALER worker, and the `mmi.service` wait.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::wait::eventually;

/// The MDP/0.1 client header frame.
pub const MDPC01: &[u8] = b"MDPC01";
/// The MDP/0.1 worker header frame.
pub const MDPW01: &[u8] = b"MDPW01";
/// Worker command `READY`.
pub const READY: u8 = 1;
/// Worker command `REQUEST`.
pub const REQUEST: u8 = 2;
/// Worker command `REPLY`.
pub const REPLY: u8 = 3;
/// Worker command `HEARTBEAT`.
pub const HEARTBEAT: u8 = 4;
/// Worker command `DISCONNECT`.
pub const DISCONNECT: u8 = 5;
/// Send and receive timeout of every libzmq socket made by [`zsocket`], in milliseconds.
pub const TIMEOUT_MS: i32 = 10_000;

/// A multipart message as libzmq hands it over.
pub type Msg = Vec<Vec<u8>>;

/// A libzmq socket of `kind` with [`TIMEOUT_MS`] send and receive timeouts and no linger.
pub fn zsocket(ctx: &zmq::Context, kind: zmq::SocketType) -> zmq::Socket {
    let s = ctx.socket(kind).unwrap();
    s.set_rcvtimeo(TIMEOUT_MS).unwrap();
    s.set_sndtimeo(TIMEOUT_MS).unwrap();
    s.set_linger(0).unwrap();
    s
}

/// A synchronous MDP client on a libzmq REQ socket, as in the zguide's `mdcliapi`.
pub struct ReqClient {
    _ctx: zmq::Context,
    socket: zmq::Socket,
}

impl ReqClient {
    /// Connects a REQ socket to `endpoint`.
    pub fn connect(endpoint: &str) -> Self {
        let ctx = zmq::Context::new();
        let socket = zsocket(&ctx, zmq::REQ);
        socket.connect(endpoint).unwrap();
        Self { _ctx: ctx, socket }
    }

    /// Sends `[MDPC01][service][body...]`, returns the reply body after checking the header
    /// and service frames.
    pub fn request(&self, service: &str, body: &[&[u8]]) -> Msg {
        let mut msg: Msg = vec![MDPC01.to_vec(), service.as_bytes().to_vec()];
        msg.extend(body.iter().map(|f| f.to_vec()));
        self.socket.send_multipart(msg, 0).unwrap();
        let reply = self.socket.recv_multipart(0).expect("no reply in time");
        assert_eq!(reply[0], MDPC01, "reply header");
        assert_eq!(reply[1], service.as_bytes(), "reply service frame");
        reply[2..].to_vec()
    }

    /// Sets the receive timeout (how long [`ReqClient::try_request`] waits), in milliseconds.
    pub fn set_timeout(&self, ms: i32) {
        self.socket.set_rcvtimeo(ms).unwrap();
    }

    /// Sends a request and waits up to the socket timeout; `None` if nothing came.
    pub fn try_request(&self, service: &str, body: &[&[u8]]) -> Option<Msg> {
        let mut msg: Msg = vec![MDPC01.to_vec(), service.as_bytes().to_vec()];
        msg.extend(body.iter().map(|f| f.to_vec()));
        self.socket.send_multipart(msg, 0).unwrap();
        self.socket.recv_multipart(0).ok().map(|r| r[2..].to_vec())
    }
}

/// What a test worker does with a request body.
pub type Handler = Box<dyn Fn(Msg) -> Option<Msg> + Send>;

/// An MDP worker on a libzmq DEALER socket, written from RFC 7: READY, then REQUEST/REPLY,
/// heartbeats every `heartbeat`, stops on DISCONNECT or when told to.
pub struct ZWorker {
    stop: Arc<AtomicBool>,
    served: Arc<AtomicUsize>,
    thread: Option<JoinHandle<WorkerLog>>,
}

/// What a worker saw.
#[derive(Debug, Default)]
pub struct WorkerLog {
    /// `REQUEST`s received.
    pub requests: usize,
    /// Whether the broker sent `DISCONNECT`.
    pub disconnected: bool,
    /// `HEARTBEAT`s received.
    pub heartbeats: usize,
}

impl ZWorker {
    /// Starts a worker; `handler` returns `None` to swallow a request (never reply).
    pub fn start(endpoint: &str, service: &str, heartbeat: Duration, handler: Handler) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicUsize::new(0));
        let counter = served.clone();
        let (ep, svc, flag) = (endpoint.to_string(), service.to_string(), stop.clone());
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread = thread::spawn(move || {
            let ctx = zmq::Context::new();
            let s = zsocket(&ctx, zmq::DEALER);
            s.connect(&ep).unwrap();
            s.send_multipart([vec![], MDPW01.to_vec(), vec![READY], svc.into_bytes()], 0)
                .unwrap();
            ready_tx.send(()).unwrap();
            let mut log = WorkerLog::default();
            let mut next_hb = Instant::now() + heartbeat;
            while !flag.load(Ordering::Relaxed) {
                let wait = next_hb
                    .saturating_duration_since(Instant::now())
                    .as_millis()
                    .min(50) as i64;
                if s.poll(zmq::POLLIN, wait).unwrap() > 0 {
                    let msg = s.recv_multipart(0).unwrap();
                    assert_eq!(
                        &msg[..2],
                        &[vec![], MDPW01.to_vec()],
                        "worker frames {msg:?}"
                    );
                    match msg[2][0] {
                        REQUEST => {
                            log.requests += 1;
                            let client = msg[3].clone();
                            assert!(msg[4].is_empty());
                            if let Some(body) = handler(msg[5..].to_vec()) {
                                let mut reply =
                                    vec![vec![], MDPW01.to_vec(), vec![REPLY], client, vec![]];
                                reply.extend(body);
                                s.send_multipart(reply, 0).unwrap();
                            }
                            counter.fetch_add(1, Ordering::Relaxed);
                        }
                        HEARTBEAT => log.heartbeats += 1,
                        DISCONNECT => {
                            log.disconnected = true;
                            break;
                        }
                        other => panic!("unexpected command {other}"),
                    }
                }
                if Instant::now() >= next_hb {
                    s.send_multipart([vec![], MDPW01.to_vec(), vec![HEARTBEAT]], 0)
                        .unwrap();
                    next_hb += heartbeat;
                }
            }
            log
        });
        ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        Self {
            stop,
            served,
            thread: Some(thread),
        }
    }

    /// Requests handled so far.
    pub fn served(&self) -> usize {
        self.served.load(Ordering::Relaxed)
    }

    /// A worker for `service` that replies with the request body.
    pub fn echo(endpoint: &str, service: &str, heartbeat: Duration) -> Self {
        Self::start(endpoint, service, heartbeat, Box::new(Some))
    }

    /// Stops the worker (its socket closes without DISCONNECT) and returns its log.
    pub fn stop(mut self) -> WorkerLog {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for ZWorker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Asks `mmi.service` until it says `expected`, for up to 10 s.
pub fn wait_for_service(endpoint: &str, service: &str, expected: &[u8]) {
    let client = ReqClient::connect(endpoint);
    eventually(
        Duration::from_secs(10),
        format_args!("mmi.service {service} never said {expected:?}"),
        || (client.request("mmi.service", &[service.as_bytes()]) == [expected]).then_some(()),
    );
}

/// An endpoint on 127.0.0.1 where nothing listens (the port was free a moment ago).
pub fn dead_endpoint() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("tcp://127.0.0.1:{}", l.local_addr().unwrap().port())
}

/// Asks `titanic.reply` for `id` (up to 20 s) until it is done (`200`); the reply frames.
/// Panics on any answer but `200` and `300` (pending).
pub fn titanic_reply_when_done(client: &ReqClient, id: &[u8]) -> Msg {
    crate::eventually(
        Duration::from_secs(20),
        "no reply for the Titanic request in time",
        || {
            let reply = client.request("titanic.reply", &[id]);
            match reply[0].as_slice() {
                b"200" => Some(reply[1..].to_vec()),
                b"300" => None,
                other => panic!("titanic.reply said {:?}", String::from_utf8_lossy(other)),
            }
        },
    )
}
