//! Routing: LRU worker choice, FIFO queues, dispatch triggers, service isolation, the wire
//! shape of what the broker forwards.

use bytes::Bytes;
use domo_mdp::{client, worker};

use super::util::{frames, id, service, Harness, Sent};

#[test]
fn requests_go_to_the_least_recently_used_idle_worker() {
    let mut h = Harness::new();
    for w in ["w1", "w2", "w3"] {
        h.ready(w, "echo");
    }
    for c in ["c1", "c2", "c3"] {
        h.request(c, "echo", c);
    }
    assert_eq!(
        h.take(),
        [
            Sent::request("w1", "c1", "c1"),
            Sent::request("w2", "c2", "c2"),
            Sent::request("w3", "c3", "c3"),
        ]
    );
    // They finish in the order w2, w3, w1: that is the new LRU order.
    for (w, c) in [("w2", "c2"), ("w3", "c3"), ("w1", "c1")] {
        h.reply(w, c, "done");
    }
    h.take();
    for c in ["c4", "c5", "c6"] {
        h.request(c, "echo", c);
    }
    assert_eq!(
        h.take(),
        [
            Sent::request("w2", "c4", "c4"),
            Sent::request("w3", "c5", "c5"),
            Sent::request("w1", "c6", "c6"),
        ]
    );
}

#[test]
fn queued_requests_are_dispatched_in_order_when_workers_register() {
    let mut h = Harness::new();
    h.request("c1", "echo", "first");
    h.request("c2", "echo", "second");
    h.request("c1", "echo", "third");
    assert_eq!(h.take(), []);
    assert_eq!(h.broker.stats().queued_requests, 3);
    assert_eq!(h.broker.stats().requests.no_worker, 3);
    h.ready("w1", "echo");
    assert_eq!(h.take(), [Sent::request("w1", "c1", "first")]);
    h.ready("w2", "echo");
    assert_eq!(h.take(), [Sent::request("w2", "c2", "second")]);
}

#[test]
fn a_reply_dispatches_the_next_queued_request_at_once() {
    // zeromq/majordomo #73: dispatch must run again after a worker finishes.
    let mut h = Harness::new();
    h.ready("w1", "echo");
    for c in ["c1", "c2", "c3"] {
        h.request(c, "echo", c);
    }
    assert_eq!(h.take(), [Sent::request("w1", "c1", "c1")]);
    h.reply("w1", "c1", "r1");
    assert_eq!(
        h.take(),
        [
            Sent::reply("c1", "echo", "r1"),
            Sent::request("w1", "c2", "c2")
        ]
    );
    h.reply("w1", "c2", "r2");
    assert_eq!(
        h.take(),
        [
            Sent::reply("c2", "echo", "r2"),
            Sent::request("w1", "c3", "c3")
        ]
    );
    h.reply("w1", "c3", "r3");
    assert_eq!(h.take(), [Sent::reply("c3", "echo", "r3")]);
    assert_eq!(h.broker.stats().workers_idle, 1);
}

#[test]
fn two_services_are_isolated() {
    let mut h = Harness::new();
    h.ready("wa", "a");
    h.ready("wb", "b");
    h.request("c1", "a", "x");
    h.request("c2", "a", "y");
    h.request("c3", "b", "z");
    assert_eq!(
        h.take(),
        [
            Sent::request("wa", "c1", "x"),
            Sent::request("wb", "c3", "z")
        ]
    );
    // b's worker finishing does not pick up a's queued request.
    h.reply("wb", "c3", "Z");
    assert_eq!(h.take(), [Sent::reply("c3", "b", "Z")]);
    assert_eq!(h.broker.stats().queued_requests, 1);
    h.reply("wa", "c1", "X");
    assert_eq!(
        h.take(),
        [Sent::reply("c1", "a", "X"), Sent::request("wa", "c2", "y")]
    );
}

#[test]
fn a_finished_worker_returns_to_its_own_service() {
    // zeromq/majordomo #61: the broker put a finished worker on the last-seen service.
    let mut h = Harness::new();
    h.ready("wa", "a");
    h.ready("wb", "b");
    h.request("c1", "a", "1");
    h.request("c2", "b", "2");
    h.reply("wa", "c1", "1");
    h.take();
    h.request("c3", "b", "3");
    assert_eq!(h.take(), [], "b's request waits for b's worker");
    h.request("c4", "a", "4");
    assert_eq!(h.take(), [Sent::request("wa", "c4", "4")]);
}

#[test]
fn request_and_reply_are_forwarded_byte_exact_with_a_token_for_the_client() {
    let mut h = Harness::new();
    h.ready("w1", "echo");
    let body = frames(&[b"", b"\x00\xff binary", b""]);
    h.broker.handle_message(
        h.now,
        id("c1"),
        client::encode_request(&service("echo"), body.clone()),
    );
    let to_worker = h.broker.poll_outbound().unwrap();
    assert_eq!(to_worker.peer, id("w1"));
    // The address frame is a token naming the request, not the client's routing id: eight
    // bytes, never empty; everything else is as RFC 7 has it.
    let token = to_worker.frames[3].clone();
    assert_eq!(token.len(), 8);
    assert_ne!(token, id("c1").as_bytes());
    let mut expected = frames(&[b"", b"MDPW01", b"\x02", &token, b""]);
    expected.extend(body.iter().cloned());
    assert_eq!(to_worker.frames, expected);

    // The worker echoes the frame, as every RFC 7 worker does.
    let reply = frames(&[b"\x01", b"", b"last"]);
    let mut echoed = frames(&[b"", b"MDPW01", b"\x03", &token, b""]);
    echoed.extend(reply.iter().cloned());
    h.broker.handle_message(h.now, id("w1"), echoed);
    let to_client = h.broker.poll_outbound().unwrap();
    assert_eq!(to_client.peer, id("c1"));
    assert_eq!(to_client.kind, crate::PeerKind::Client);
    let mut expected = frames(&[b"", b"MDPC01", b"echo"]);
    expected.extend(reply);
    assert_eq!(to_client.frames, expected);
}

#[test]
fn one_client_may_have_many_requests_in_flight() {
    let mut h = Harness::new();
    h.ready("w1", "echo");
    h.ready("w2", "echo");
    h.request("c", "echo", "1");
    h.request("c", "echo", "2");
    h.take();
    h.reply("w2", "c", "two");
    h.reply("w1", "c", "one");
    assert_eq!(
        h.take(),
        [
            Sent::reply("c", "echo", "two"),
            Sent::reply("c", "echo", "one")
        ]
    );
    assert_eq!(h.broker.stats().requests.replied, 2);
}

#[test]
fn services_are_forgotten_once_they_have_no_workers_and_no_requests() {
    let mut h = Harness::new();
    h.ready("w1", "echo");
    h.request("c", "echo", "x");
    assert_eq!(h.broker.stats().services, 1);
    h.reply("w1", "c", "y");
    h.disconnect("w1");
    assert_eq!(h.broker.stats().services, 0);
    assert!(h.broker.services.is_empty());
}

#[test]
fn ten_thousand_services_each_with_a_worker_route_independently() {
    let mut h = Harness::new();
    h.checking = false;
    let names: Vec<String> = (0..10_000).map(|i| format!("svc-{i}")).collect();
    for name in &names {
        h.ready(&format!("w-{name}"), name);
    }
    for name in names.iter().rev() {
        h.request("c", name, name);
        h.reply(&format!("w-{name}"), "c", name);
    }
    let sent = h.take();
    assert_eq!(sent.len(), 20_000);
    assert_eq!(sent[0], Sent::request("w-svc-9999", "c", "svc-9999"));
    assert_eq!(sent[1], Sent::reply("c", "svc-9999", "svc-9999"));
    assert_eq!(h.broker.stats().workers_idle, 10_000);
    h.broker.check_invariants(h.now);
}

#[test]
fn empty_reply_body_frame_is_forwarded_as_is() {
    let mut h = Harness::new();
    h.ready("w1", "echo");
    h.request("c", "echo", "x");
    h.take();
    let reply = worker::encode_reply(&h.token("w1", "c").unwrap(), [Bytes::new()]);
    h.send("w1", reply);
    assert_eq!(h.take(), [Sent::reply("c", "echo", "")]);
}
