//! `mmi.broadcast`: one request to every worker of a service at that moment, each reply
//! passed on as it comes, then the summary; busy workers get their part before the queue,
//! lost ones are `failed`, silent ones `timed_out`.

use std::time::Duration;

use super::util::{Harness, Sent};

/// A worker's name in broadcast replies: its routing id in hex.
fn hex(worker: &str) -> String {
    worker.bytes().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn every_worker_gets_one_request_and_each_reply_streams_then_the_summary() {
    let mut h = Harness::new();
    h.mux_client("c");
    for w in ["w1", "w2", "w3"] {
        h.ready(w, "echo");
    }
    h.ready("x", "other");
    // w2 is busy with an ordinary request; another waits in the queue behind it.
    h.request("a", "echo", "first");
    let got = h.take();
    assert_eq!(got, [Sent::request("w1", "a", "first")]);
    h.request("b", "echo", "second");
    h.request("d", "echo", "third");
    assert_eq!(
        h.take(),
        [
            Sent::request("w2", "b", "second"),
            Sent::request("w3", "d", "third")
        ]
    );
    h.request("e", "echo", "queued");
    assert_eq!(h.take(), []);
    // Every worker is busy: each gets its part as soon as it is free, before the queue.
    h.tagged_request("c", "mmi.broadcast", "t", "echo|5000|hi|there");
    assert_eq!(h.take(), []);
    h.reply("w1", "a", "FIRST");
    assert_eq!(
        h.take(),
        [
            Sent::reply("a", "echo", "FIRST"),
            Sent::request("w1", "c", "hi|there")
        ]
    );
    h.reply("w2", "b", "SECOND");
    assert_eq!(
        h.take(),
        [
            Sent::reply("b", "echo", "SECOND"),
            Sent::request("w2", "c", "hi|there")
        ]
    );
    // A worker's reply reaches the client at once, named by the worker.
    h.reply("w1", "c", "HI");
    let w1 = hex("w1");
    assert_eq!(
        h.take(),
        [
            Sent::reply("c", "mmi.broadcast", &format!("t|reply|{w1}|HI")),
            // w1 is free again: the queued ordinary request.
            Sent::request("w1", "e", "queued"),
        ]
    );
    // w3 dies with its part pinned: failed at once.
    h.disconnect("w3");
    let got = h.take();
    let w3 = hex("w3");
    assert!(
        got.contains(&Sent::reply(
            "c",
            "mmi.broadcast",
            &format!("t|failed|{w3}")
        )),
        "{got:?}"
    );
    // The last answer ends it: the reply, then the summary naming every worker.
    h.reply("w2", "c", "HI2");
    let w2 = hex("w2");
    assert_eq!(
        h.take(),
        [
            Sent::reply("c", "mmi.broadcast", &format!("t|reply|{w2}|HI2")),
            Sent::reply(
                "c",
                "mmi.broadcast",
                &format!("t|done|3|2|1|0|{w1} answered|{w2} answered|{w3} failed")
            ),
            // The ordinary request w3 held went to the queue's head, and now to w2.
            Sent::request("w2", "d", "third"),
        ]
    );
    // The part is the one request lost with w3; the worker of another service got nothing.
    assert_eq!(h.broker.stats().requests.dropped.worker_lost, 1);
    assert_eq!(h.broker.stats().requests.redispatched, 1);
}

#[test]
fn a_silent_worker_times_out_and_its_late_reply_is_dropped() {
    let mut h = Harness::new();
    h.mux_client("c");
    h.ready("fast", "echo");
    h.ready("slow", "echo");
    h.tagged_request("c", "mmi.broadcast", "t", "echo|1000|ping");
    assert_eq!(
        h.take(),
        [
            Sent::request("fast", "c", "ping"),
            Sent::request("slow", "c", "ping")
        ]
    );
    h.reply("fast", "c", "pong");
    assert_eq!(h.take().len(), 1);
    h.advance(Duration::from_millis(1000));
    let (fast, slow) = (hex("fast"), hex("slow"));
    assert!(h.take().contains(&Sent::reply(
        "c",
        "mmi.broadcast",
        &format!("t|done|2|1|0|1|{fast} answered|{slow} timed_out")
    )));
    // A request queued meanwhile goes to the slow worker once it replies; the client hears
    // nothing more of the broadcast.
    h.request("a", "echo", "next");
    assert_eq!(h.take(), [Sent::request("fast", "a", "next")]);
    h.request("b", "echo", "after");
    assert_eq!(h.take(), []);
    h.reply("slow", "c", "late");
    assert_eq!(h.take(), [Sent::request("slow", "b", "after")]);
    assert_eq!(h.broker.stats().requests.dropped.expired, 1);
}

#[test]
fn a_part_pinned_past_the_timeout_is_never_sent() {
    let mut h = Harness::new();
    h.mux_client("c");
    h.ready("w", "echo");
    h.request("a", "echo", "busy");
    assert_eq!(h.take(), [Sent::request("w", "a", "busy")]);
    h.tagged_request("c", "mmi.broadcast", "t", "echo|500|ping");
    h.advance(Duration::from_millis(500));
    let w = hex("w");
    assert_eq!(
        h.take(),
        [Sent::reply(
            "c",
            "mmi.broadcast",
            &format!("t|done|1|0|0|1|{w} timed_out")
        )]
    );
    h.reply("w", "a", "done");
    assert_eq!(h.take(), [Sent::reply("a", "echo", "done")]);
}

#[test]
fn refusals_are_answered_with_a_status() {
    let mut h = Harness::new();
    h.ready("w", "echo");
    // A plain RFC 7 client cannot take several replies.
    h.request("plain", "mmi.broadcast", "echo|100|x");
    let got = h.take();
    assert_eq!(got.len(), 1);
    let Sent::Reply(_, service, body) = &got[0] else {
        panic!("{got:?}")
    };
    assert_eq!(service, "mmi.broadcast");
    assert!(body.starts_with("400|"), "{body}");
    h.mux_client("c");
    for (body, status) in [
        ("echo|100", "400"),
        ("echo|soon|x", "400"),
        ("|100|x", "400"),
    ] {
        h.tagged_request("c", "mmi.broadcast", "t", body);
        let got = h.take();
        assert!(
            matches!(&got[..], [Sent::Reply(_, _, b)] if b.starts_with(&format!("t|{status}|"))),
            "{body}: {got:?}"
        );
    }
    // No worker: an empty summary at once.
    h.tagged_request("c", "mmi.broadcast", "t", "nobody|100|x");
    assert_eq!(
        h.take(),
        [Sent::reply("c", "mmi.broadcast", "t|done|0|0|0|0")]
    );
    // A client that may call the broadcast but not the service.
    h.mux_client("limited");
    h.set_rights("limited", "mmi.broadcast", "");
    h.tagged_request("limited", "mmi.broadcast", "t", "echo|100|x");
    let got = h.take();
    assert!(
        matches!(&got[..], [Sent::Reply(_, _, b)] if b.starts_with("t|403|")),
        "{got:?}"
    );
    // The worker got none of these.
    h.assert_still_serves();
}

#[test]
fn a_client_gone_mid_broadcast_gets_nothing_and_is_released() {
    let mut h = Harness::new();
    h.mux_client("c");
    h.ready("w1", "echo");
    h.ready("w2", "echo");
    h.tagged_request("c", "mmi.broadcast", "t", "echo|1000|x");
    assert_eq!(h.take().len(), 2);
    h.close("c");
    h.reply("w1", "c", "a");
    h.reply("w2", "c", "b");
    assert_eq!(h.take(), []);
    // Both workers serve ordinary requests again.
    h.request("a", "echo", "one");
    h.request("b", "echo", "two");
    assert_eq!(h.take().len(), 2);
}
