//! Every kind of bad input the broker must survive: dropped and counted, never a panic, and the broker
//! keeps serving afterwards.

use bytes::Bytes;

use super::util::{frames, Harness, Sent};
use crate::ProtocolErrors;

/// Sends `message` from a peer the broker does not know and checks it is dropped, counted
/// against `client` or `worker`, and answered with nothing.
fn dropped(message: &[&[u8]], client: u64, worker: u64) {
    let mut h = Harness::new();
    h.send("garbage", frames(message));
    assert_eq!(h.take(), [], "{message:?} got an answer");
    let expected = ProtocolErrors { client, worker };
    assert_eq!(h.broker.stats().protocol_errors, expected, "{message:?}");
    assert_eq!(h.broker.stats().services, 0);
    assert_eq!(
        h.broker.poll_timeout(),
        None,
        "{message:?} left state behind"
    );
    h.assert_still_serves();
}

#[test]
fn missing_empty_frame() {
    dropped(&[b"MDPC01", b"echo", b"x"], 1, 0);
    dropped(&[b"MDPW01", b"\x01", b"echo"], 0, 1);
}

#[test]
fn unknown_headers_including_mdp_0_2() {
    dropped(&[b"", b"MDPC02", b"\x01", b"echo", b"x"], 1, 0);
    dropped(&[b"", b"MDPW02", b"\x01", b"echo"], 1, 0);
    dropped(&[b"", b"HTTP/1", b"echo", b"x"], 1, 0);
    dropped(&[b"", b""], 1, 0);
}

#[test]
fn client_message_with_no_service_or_no_body() {
    dropped(&[b"", b"MDPC01"], 1, 0);
    dropped(&[b"", b"MDPC01", b"", b"x"], 1, 0);
    dropped(&[b"", b"MDPC01", b"echo"], 1, 0);
}

#[test]
fn worker_message_with_no_command_or_a_bad_command_frame() {
    dropped(&[b"", b"MDPW01"], 0, 1);
    dropped(&[b"", b"MDPW01", b""], 0, 1);
    dropped(&[b"", b"MDPW01", b"\x01\x01", b"echo"], 0, 1);
}

#[test]
fn unknown_command_bytes() {
    for code in [0x00, 0x06, 0x09, 0xff] {
        dropped(&[b"", b"MDPW01", &[code]], 0, 1);
    }
}

#[test]
fn request_command_from_a_worker() {
    dropped(&[b"", b"MDPW01", b"\x02", b"c", b"", b"x"], 0, 1);
}

#[test]
fn ready_with_no_service_or_extra_frames() {
    dropped(&[b"", b"MDPW01", b"\x01"], 0, 1);
    dropped(&[b"", b"MDPW01", b"\x01", b""], 0, 1);
    dropped(&[b"", b"MDPW01", b"\x01", b"echo", b"extra"], 0, 1);
}

#[test]
fn reply_with_no_client_address_or_an_empty_one() {
    dropped(&[b"", b"MDPW01", b"\x03"], 0, 1);
    dropped(&[b"", b"MDPW01", b"\x03", b"", b"", b"x"], 0, 1);
    dropped(&[b"", b"MDPW01", b"\x03", b"c", b"x"], 0, 1);
    dropped(&[b"", b"MDPW01", b"\x03", b"c", b""], 0, 1);
}

#[test]
fn one_frame_and_empty_messages() {
    dropped(&[b""], 1, 0);
    dropped(&[b"x"], 1, 0);
    dropped(&[b"MDPW01"], 0, 1);
    dropped(&[], 1, 0);
}

#[test]
fn heartbeat_before_ready_gets_disconnect_and_the_broker_keeps_serving() {
    let mut h = Harness::new();
    h.heartbeat("early");
    assert_eq!(h.take(), [Sent::disconnect("early")]);
    h.assert_still_serves();
}

#[test]
fn a_garbled_reply_from_a_busy_worker_ends_its_session_and_the_request_is_redispatched() {
    let mut h = Harness::new();
    h.ready("w1", "echo");
    h.ready("w2", "echo");
    h.request("c", "echo", "job");
    h.send("w1", frames(&[b"", b"MDPW01", b"\x03", b"", b"", b"x"]));
    assert_eq!(
        h.take(),
        [
            Sent::request("w1", "c", "job"),
            Sent::request("w2", "c", "job"),
            Sent::disconnect("w1"),
        ]
    );
    let stats = h.broker.stats();
    assert_eq!(stats.protocol_errors.worker, 1);
    assert_eq!(stats.disconnects_sent.invalid_message, 1);
    h.assert_still_serves();
}

#[test]
fn a_flood_of_garbage_from_one_peer_while_another_client_is_served() {
    let mut h = Harness::new();
    h.checking = false;
    h.ready("w1", "echo");
    let garbage = [
        frames(&[b"x"]),
        frames(&[b"", b"MDPC02", b"\x01", b"echo", b"x"]),
        frames(&[b"", b"MDPW01", b"\x09"]),
        frames(&[b"", b"MDPC01"]),
        vec![Bytes::from(vec![0xAB; 300]); 5],
    ];
    for round in 0..100_000 {
        h.send("flooder", garbage[round % garbage.len()].clone());
        if round % 1000 == 0 {
            h.request("client", "echo", "ping");
            h.reply("w1", "client", "pong");
        }
    }
    let sent = h.take();
    assert_eq!(sent.len(), 200);
    assert!(sent.ends_with(&[
        Sent::request("w1", "client", "ping"),
        Sent::reply("client", "echo", "pong"),
    ]));
    let stats = h.broker.stats();
    assert_eq!(
        stats.protocol_errors.client + stats.protocol_errors.worker,
        100_000
    );
    assert_eq!(stats.requests.replied, 100);
    assert_eq!(stats.services, 1);
    assert!(h.broker.silenced.is_empty());
    h.broker.check_invariants(h.now);
    h.assert_still_serves();
}
