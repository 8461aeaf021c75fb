//! MMI (RFC 8) and the domo extensions `mmi.services` and `mmi.workers`.

use super::util::{frames, Harness, Sent, EXPIRY};

fn ask(h: &mut Harness, service: &str, body: &str) -> Sent {
    h.take();
    h.request("c", service, body);
    let mut sent = h.take();
    assert_eq!(sent.len(), 1, "one answer: {sent:?}");
    sent.remove(0)
}

#[test]
fn mmi_service_is_200_while_a_worker_exists_and_404_after_the_last_leaves() {
    let mut h = Harness::new();
    assert_eq!(
        ask(&mut h, "mmi.service", "echo"),
        Sent::reply("c", "mmi.service", "404")
    );
    h.ready("w1", "echo");
    h.ready("w2", "echo");
    assert_eq!(
        ask(&mut h, "mmi.service", "echo"),
        Sent::reply("c", "mmi.service", "200")
    );
    h.disconnect("w1");
    assert_eq!(
        ask(&mut h, "mmi.service", "echo"),
        Sent::reply("c", "mmi.service", "200")
    );
    h.close("w2");
    assert_eq!(
        ask(&mut h, "mmi.service", "echo"),
        Sent::reply("c", "mmi.service", "404")
    );
}

#[test]
fn mmi_service_is_404_once_the_last_worker_expires() {
    let mut h = Harness::new();
    h.ready("w1", "echo");
    h.advance(EXPIRY);
    assert_eq!(
        ask(&mut h, "mmi.service", "echo"),
        Sent::reply("c", "mmi.service", "404")
    );
}

#[test]
fn mmi_service_is_404_for_a_service_with_only_queued_requests() {
    // The zguide Python broker answers 200 here, because asking created the service.
    let mut h = Harness::new();
    h.request("other", "echo", "waiting");
    assert_eq!(
        ask(&mut h, "mmi.service", "echo"),
        Sent::reply("c", "mmi.service", "404")
    );
}

#[test]
fn mmi_service_reads_the_last_body_frame() {
    let mut h = Harness::new();
    h.ready("w1", "echo");
    assert_eq!(
        ask(&mut h, "mmi.service", "ignored|echo"),
        Sent::reply("c", "mmi.service", "200")
    );
}

#[test]
fn unknown_mmi_services_are_501() {
    let mut h = Harness::new();
    for name in ["mmi.filter", "mmi.", "mmi.status"] {
        assert_eq!(ask(&mut h, name, "x"), Sent::reply("c", name, "501"));
    }
}

#[test]
fn mmi_with_an_invalid_name_argument_is_400() {
    let mut h = Harness::new();
    assert_eq!(
        ask(&mut h, "mmi.service", ""),
        Sent::reply("c", "mmi.service", "400")
    );
    assert_eq!(
        ask(&mut h, "mmi.workers", "a|"),
        Sent::reply("c", "mmi.workers", "400")
    );
}

#[test]
fn mmi_services_lists_services_with_workers_one_frame_each_sorted() {
    let mut h = Harness::new();
    assert_eq!(
        ask(&mut h, "mmi.services", ""),
        Sent::reply("c", "mmi.services", "")
    );
    h.ready("w1", "zeta");
    h.ready("w2", "alpha");
    h.ready("w3", "alpha");
    h.request("c2", "queued-only", "x");
    assert_eq!(
        ask(&mut h, "mmi.services", ""),
        Sent::reply("c", "mmi.services", "alpha|zeta")
    );
}

#[test]
fn mmi_workers_counts_idle_and_busy_workers() {
    let mut h = Harness::new();
    assert_eq!(
        ask(&mut h, "mmi.workers", "echo"),
        Sent::reply("c", "mmi.workers", "0")
    );
    h.ready("w1", "echo");
    h.ready("w2", "echo");
    h.request("c2", "echo", "keep one busy");
    assert_eq!(
        ask(&mut h, "mmi.workers", "echo"),
        Sent::reply("c", "mmi.workers", "2")
    );
}

#[test]
fn mmi_queued_counts_the_requests_waiting_for_a_worker() {
    let mut h = Harness::new();
    assert_eq!(
        ask(&mut h, "mmi.queued", "echo"),
        Sent::reply("c", "mmi.queued", "0")
    );
    h.request("c2", "echo", "one");
    h.request("c3", "echo", "two");
    assert_eq!(
        ask(&mut h, "mmi.queued", "echo"),
        Sent::reply("c", "mmi.queued", "2")
    );
    assert_eq!(
        ask(&mut h, "mmi.queued", "a|"),
        Sent::reply("c", "mmi.queued", "400")
    );
}

#[test]
fn mmi_requests_never_create_services_or_reach_workers() {
    let mut h = Harness::new();
    h.ready("w1", "mmi-lookalike");
    for name in ["mmi.service", "mmi.workers", "mmi.services", "mmi.nope"] {
        ask(&mut h, name, "ghost");
    }
    let stats = h.broker.stats();
    assert_eq!(stats.services, 1);
    assert_eq!(stats.mmi_requests, 4);
    assert_eq!(stats.requests.received, 0);
    assert_eq!(stats.workers_idle, 1);
}

#[test]
fn mmi_reply_is_byte_exact() {
    let mut h = Harness::new();
    h.broker.handle_message(
        h.now,
        super::util::id("c"),
        frames(&[b"", b"MDPC01", b"mmi.service", b"echo"]),
    );
    let reply = h.broker.poll_outbound().unwrap();
    assert_eq!(
        reply.frames,
        frames(&[b"", b"MDPC01", b"mmi.service", b"404"])
    );
}
