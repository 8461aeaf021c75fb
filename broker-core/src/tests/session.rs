//! RFC 7 session rules: DISCONNECT for valid but unexpected commands, and silence after it.

use super::util::{frames, id, Harness, Sent, EXPIRY, NS};

#[test]
fn second_ready_gets_disconnect_and_the_worker_is_removed() {
    let mut h = Harness::new();
    h.ready("w1", "echo");
    h.ready("w1", "echo");
    assert_eq!(h.take(), [Sent::disconnect("w1")]);
    assert_eq!(h.worker_count("echo"), 0);
    let stats = h.broker.stats();
    assert_eq!(stats.disconnects_sent.second_ready, 1);
    assert_eq!(stats.worker_departures.protocol_error, 1);
}

#[test]
fn second_ready_while_busy_redispatches_the_request() {
    let mut h = Harness::new();
    h.ready("w1", "echo");
    h.request("c", "echo", "job");
    h.ready("w1", "other");
    h.ready("w2", "echo");
    assert_eq!(
        h.take(),
        [
            Sent::request("w1", "c", "job"),
            Sent::disconnect("w1"),
            Sent::request("w2", "c", "job"),
        ]
    );
}

#[test]
fn heartbeat_before_ready_gets_disconnect() {
    let mut h = Harness::new();
    h.heartbeat("stranger");
    assert_eq!(h.take(), [Sent::disconnect("stranger")]);
    assert_eq!(h.broker.stats().disconnects_sent.unknown_worker, 1);
    assert!(h.broker.workers.is_empty());
}

#[test]
fn reply_from_an_unknown_worker_gets_disconnect_and_is_not_forwarded() {
    let mut h = Harness::new();
    h.reply("stranger", "c", "unsolicited");
    assert_eq!(h.take(), [Sent::disconnect("stranger")]);
    assert_eq!(h.broker.stats().requests.replied, 0);
}

#[test]
fn ready_for_an_mmi_service_gets_disconnect() {
    let mut h = Harness::new();
    h.ready("w1", "mmi.service");
    assert_eq!(h.take(), [Sent::disconnect("w1")]);
    assert_eq!(h.broker.stats().disconnects_sent.mmi_ready, 1);
    assert_eq!(h.broker.stats().services, 0);
}

#[test]
fn the_service_frame_not_the_sender_decides_what_is_mmi() {
    // The zguide C broker checks the sender's identity frame for "mmi." instead.
    let mut h = Harness::new();
    h.ready("mmi.worker", "echo");
    h.ready("w2", "echo.mmi.service");
    assert_eq!(h.take(), []);
    assert_eq!(h.worker_count("echo"), 1);
    assert_eq!(h.worker_count("echo.mmi.service"), 1);
}

#[test]
fn reply_from_an_idle_worker_gets_disconnect() {
    let mut h = Harness::new();
    h.ready("w1", "echo");
    h.reply("w1", "c", "unsolicited");
    assert_eq!(h.take(), [Sent::disconnect("w1")]);
    assert_eq!(h.broker.stats().disconnects_sent.unexpected_reply, 1);
    assert_eq!(h.worker_count("echo"), 0);
}

#[test]
fn reply_for_another_client_gets_disconnect_and_the_request_is_redispatched() {
    let mut h = Harness::new();
    h.ready("w1", "echo");
    h.ready("w2", "echo");
    h.request("c1", "echo", "job");
    h.reply("w1", "c2", "misrouted");
    assert_eq!(
        h.take(),
        [
            Sent::request("w1", "c1", "job"),
            Sent::request("w2", "c1", "job"),
            Sent::disconnect("w1"),
        ]
    );
    assert_eq!(h.broker.stats().requests.replied, 0);
}

#[test]
fn nothing_is_sent_after_disconnect_and_the_peer_is_ignored() {
    let mut h = Harness::new();
    h.ready("w1", "echo");
    h.ready("w1", "echo");
    assert_eq!(h.take(), [Sent::disconnect("w1")]);
    // In-flight traffic from the old session: ignored, not answered with more DISCONNECTs.
    h.heartbeat("w1");
    h.reply("w1", "c", "late");
    h.ready("w1", "echo");
    h.request("w1", "echo", "as a client");
    h.advance(EXPIRY - NS);
    assert_eq!(h.take(), []);
    assert_eq!(h.broker.stats().ignored_after_disconnect, 4);
    assert_eq!(h.broker.stats().requests.received, 0);
}

#[test]
fn silence_ends_when_the_connection_closes() {
    let mut h = Harness::new();
    h.heartbeat("w1");
    h.close("w1");
    // A new connection may reuse the routing id (a peer with a fixed identity).
    h.ready("w1", "echo");
    assert_eq!(h.take(), [Sent::disconnect("w1")]);
    assert_eq!(h.worker_count("echo"), 1);
}

#[test]
fn a_peer_that_keeps_talking_after_the_silence_gets_another_disconnect() {
    let mut h = Harness::new();
    h.heartbeat("w1");
    h.advance(EXPIRY - NS);
    h.heartbeat("w1");
    assert_eq!(h.take(), [Sent::disconnect("w1")]);
    h.advance(NS);
    h.heartbeat("w1");
    assert_eq!(h.take(), [Sent::disconnect("w1")]);
}

#[test]
fn worker_disconnect_removes_it_and_gets_no_answer() {
    let mut h = Harness::new();
    h.ready("w1", "echo");
    h.disconnect("w1");
    h.heartbeat("w1");
    h.advance(EXPIRY - NS);
    assert_eq!(h.take(), []);
    assert_eq!(h.broker.stats().worker_departures.disconnect, 1);
    assert_eq!(h.broker.stats().services, 0);
}

#[test]
fn disconnect_from_an_unknown_peer_is_not_answered() {
    let mut h = Harness::new();
    h.disconnect("stranger");
    h.heartbeat("stranger");
    assert_eq!(h.take(), []);
}

#[test]
fn an_expired_worker_that_speaks_again_gets_disconnect() {
    let mut h = Harness::new();
    h.ready("w1", "echo");
    h.advance(EXPIRY);
    h.take();
    h.heartbeat("w1");
    assert_eq!(h.take(), [Sent::disconnect("w1")]);
}

#[test]
fn a_client_request_from_a_registered_worker_costs_it_its_session() {
    let mut h = Harness::new();
    h.ready("w1", "echo");
    h.request("w1", "echo", "loop");
    assert_eq!(h.take(), [Sent::disconnect("w1")]);
    let stats = h.broker.stats();
    assert_eq!(stats.disconnects_sent.client_request, 1);
    assert_eq!(stats.requests.received, 0);
}

#[test]
fn a_client_may_later_register_as_a_worker_and_still_gets_its_reply() {
    let mut h = Harness::new();
    h.ready("w1", "echo");
    h.request("p", "echo", "question");
    h.ready("p", "other");
    h.reply("w1", "p", "answer");
    assert_eq!(
        h.take(),
        [
            Sent::request("w1", "p", "question"),
            Sent::reply("p", "echo", "answer")
        ]
    );
}

#[test]
fn replies_to_a_silenced_peer_are_dropped() {
    let mut h = Harness::new();
    h.ready("w1", "echo");
    h.request("p", "echo", "question");
    h.heartbeat("p");
    h.reply("w1", "p", "answer");
    assert_eq!(
        h.take(),
        [Sent::request("w1", "p", "question"), Sent::disconnect("p")]
    );
    assert_eq!(h.broker.stats().requests.dropped.client_silenced, 1);
}

#[test]
fn disconnect_with_trailing_frames_is_invalid_not_a_disconnect() {
    let mut h = Harness::new();
    h.ready("w1", "echo");
    h.send("w1", frames(&[b"", b"MDPW01", b"\x05", b"extra"]));
    assert_eq!(h.take(), [Sent::disconnect("w1")]);
    assert_eq!(h.broker.stats().disconnects_sent.invalid_message, 1);
    assert!(!h.broker.workers.contains_key(&id("w1")));
}
