//! Multiplexed clients (`mux`): a client that announced `X-Domo-Mux: 1` puts a tag after the
//! service frame of each request; the worker sees the request exactly as an RFC 7 worker
//! would, and the reply carries the tag back, whichever order replies come in.

use super::util::{frames, Harness, Sent};
use crate::{BrokerConfig, QueueLimits};

#[test]
fn replies_carry_their_requests_tags_in_the_order_workers_answer() {
    let mut h = Harness::new();
    h.mux_client("c");
    h.ready("w1", "echo");
    h.ready("w2", "echo");
    h.tagged_request("c", "echo", "t1", "one");
    h.tagged_request("c", "echo", "t2", "two");
    // The workers get plain RFC 7 requests: no tag in the body.
    assert_eq!(
        h.take(),
        [
            Sent::request("w1", "c", "one"),
            Sent::request("w2", "c", "two")
        ]
    );
    h.reply("w2", "c", "TWO");
    h.reply("w1", "c", "ONE");
    assert_eq!(
        h.take(),
        [
            Sent::reply("c", "echo", "t2|TWO"),
            Sent::reply("c", "echo", "t1|ONE")
        ]
    );
    assert_eq!(h.broker.stats().requests.replied, 2);
}

#[test]
fn many_tagged_requests_of_one_client_at_one_credit_worker() {
    let mut h = Harness::new();
    h.mux_client("c");
    h.ready_with_credit("w", "echo", 4);
    for i in 0..4 {
        h.tagged_request("c", "echo", &format!("tag{i}"), &format!("b{i}"));
    }
    let got = h.take();
    assert_eq!(got.len(), 4);
    // Answer each request by its own token, last first.
    let tokens: Vec<_> = h.broker.in_flight.keys().copied().collect();
    let mut tokens: Vec<_> = tokens
        .into_iter()
        .map(|t| {
            let body = h.broker.in_flight[&t].request.body[0].clone();
            (t, body)
        })
        .collect();
    tokens.sort_by(|a, b| b.1.cmp(&a.1));
    for (token, body) in tokens {
        let address = token.to_address().unwrap();
        let reply = format!("r{}", String::from_utf8_lossy(&body[1..]));
        h.reply_with("w", &address, &reply);
    }
    assert_eq!(
        h.take(),
        [
            Sent::reply("c", "echo", "tag3|r3"),
            Sent::reply("c", "echo", "tag2|r2"),
            Sent::reply("c", "echo", "tag1|r1"),
            Sent::reply("c", "echo", "tag0|r0"),
        ]
    );
}

#[test]
fn mmi_answers_carry_the_tag() {
    let mut h = Harness::new();
    h.mux_client("c");
    h.ready("w", "echo");
    h.tagged_request("c", "mmi.service", "q1", "echo");
    h.tagged_request("c", "mmi.service", "q2", "nope");
    assert_eq!(
        h.take(),
        [
            Sent::reply("c", "mmi.service", "q1|200"),
            Sent::reply("c", "mmi.service", "q2|404")
        ]
    );
}

#[test]
fn a_missing_or_bad_tag_drops_the_request_as_malformed() {
    let mut h = Harness::new();
    h.mux_client("c");
    h.ready("w", "echo");
    let service = super::util::service("echo");
    let too_long = [b'x'; 17];
    let cases: [Vec<&[u8]>; 3] = [
        vec![b"", b"body"],       // empty tag
        vec![&too_long, b"b"],    // 17 bytes
        vec![b"tag-but-no-body"], // a tag and nothing after it
    ];
    for (n, case) in cases.iter().enumerate() {
        let mut message = frames(&[b"", b"MDPC01"]);
        message.push(service.clone().into_bytes());
        message.extend(frames(case));
        h.send("c", message);
        assert_eq!(h.broker.stats().protocol_errors.client, n as u64 + 1);
    }
    assert_eq!(h.take(), []);
    assert_eq!(h.broker.stats().requests.received, 0);
    // The client is not punished: a good request still goes through.
    h.tagged_request("c", "echo", "ok", "fine");
    assert_eq!(h.take(), [Sent::request("w", "c", "fine")]);
}

#[test]
fn a_client_that_did_not_announce_mux_is_plain_rfc7() {
    let mut h = Harness::new();
    h.ready("w", "echo");
    // Looks like a tag, but this client did not ask for multiplexing: it is body.
    h.tagged_request("c", "echo", "t1", "one");
    assert_eq!(h.take(), [Sent::request("w", "c", "t1|one")]);
    h.reply("w", "c", "ONE");
    assert_eq!(h.take(), [Sent::reply("c", "echo", "ONE")]);
}

#[test]
fn a_deferred_tagged_request_keeps_its_tag() {
    let mut h = Harness::with_config(BrokerConfig {
        service_queue: QueueLimits {
            max_requests: 1,
            max_bytes: usize::MAX,
        },
        ..BrokerConfig::default()
    });
    h.mux_client("c");
    h.request("other", "echo", "first");
    // The queue is full: this request goes back to the transport and its client pauses.
    h.tagged_request("c", "echo", "late", "second");
    assert!(h.is_paused("c"));
    h.ready("w", "echo");
    assert_eq!(h.take(), [Sent::request("w", "other", "first")]);
    h.reply("w", "other", "1");
    // Room again: the held request is read again, tag and all, and dispatched.
    assert_eq!(
        h.take(),
        [
            Sent::reply("other", "echo", "1"),
            Sent::request("w", "c", "second")
        ]
    );
    h.reply("w", "c", "2");
    assert_eq!(h.take(), [Sent::reply("c", "echo", "late|2")]);
}
