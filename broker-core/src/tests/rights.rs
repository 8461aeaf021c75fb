//! Rights per peer (CURVE keys): the call and serve rules, MMI's 403, and peers the core was
//! told nothing about, which may do anything.

use bytes::Bytes;
use domo_mdp::worker;

use super::util::{id, service, Harness, Sent};

fn ask(h: &mut Harness, client: &str, mmi: &str, body: &str) -> Vec<Sent> {
    h.take();
    h.request(client, mmi, body);
    h.take()
}

#[test]
fn ready_for_a_service_the_key_may_not_serve_gets_disconnect() {
    let mut h = Harness::new();
    h.set_rights("w1", "*", "billing.*");
    // Straight from the core, to see the exact frames: [""][MDPW01][0x05].
    h.broker
        .handle_message(h.now, id("w1"), worker::encode_ready(&service("echo")));
    let out = h.broker.poll_outbound().expect("a DISCONNECT");
    assert_eq!(out.peer, id("w1"));
    let expected: [&[u8]; 3] = [b"", b"MDPW01", &[0x05]];
    assert_eq!(out.frames, expected.map(Bytes::from_static));
    assert_eq!(h.broker.poll_outbound(), None);
    h.collect_now();
    let stats = h.broker.stats();
    assert_eq!(stats.refusals.serve, 1);
    assert_eq!(stats.disconnects_sent.not_authorized, 1);
    assert_eq!(stats.services, 0, "a refused READY creates no service");
    assert_eq!(h.worker_count("echo"), 0);
    // The same rights allow what they name.
    h.set_rights("w2", "*", "billing.*");
    h.ready("w2", "billing.refund");
    assert_eq!(h.worker_count("billing.refund"), 1);
    assert_eq!(h.broker.stats().refusals.serve, 1);
}

#[test]
fn request_for_a_service_the_client_may_not_call_is_dropped_and_counted() {
    let mut h = Harness::new();
    h.ready("w1", "echo");
    h.set_rights("c", "billing.*", "");
    h.request("c", "echo", "hi");
    assert_eq!(h.take(), []);
    let stats = h.broker.stats();
    assert_eq!(stats.refusals.call, 1);
    assert_eq!(stats.requests.received, 0, "not a request for routing");
    assert_eq!(stats.queued_requests, 0);
    // Another client is served, and `c` is served what it may call.
    h.request("d", "echo", "hello");
    assert_eq!(h.take(), [Sent::request("w1", "d", "hello")]);
    h.reply("w1", "d", "hello");
    h.ready("w2", "billing.pay");
    h.request("c", "billing.pay", "1 EUR");
    assert_eq!(
        h.take(),
        [
            Sent::reply("d", "echo", "hello"),
            Sent::request("w2", "c", "1 EUR")
        ]
    );
}

#[test]
fn mmi_and_titanic_are_services_for_the_call_right() {
    let mut h = Harness::new();
    h.ready("w1", "echo");
    h.set_rights("c", "echo", "");
    for (mmi, body) in [
        ("mmi.service", "echo"),
        ("mmi.services", ""),
        ("mmi.ha", ""),
        ("titanic.request", "echo"),
    ] {
        assert_eq!(ask(&mut h, "c", mmi, body), [], "{mmi}");
    }
    assert_eq!(h.broker.stats().refusals.call, 4);
    assert_eq!(h.broker.stats().mmi_requests, 0);
}

#[test]
fn mmi_answers_403_about_services_the_caller_may_not_call() {
    let mut h = Harness::new();
    h.ready("w1", "echo");
    h.ready("w2", "billing.pay");
    h.set_rights("c", "echo, mmi.*", "");
    assert_eq!(
        ask(&mut h, "c", "mmi.service", "billing.pay"),
        [Sent::reply("c", "mmi.service", "403")]
    );
    assert_eq!(
        ask(&mut h, "c", "mmi.workers", "billing.pay"),
        [Sent::reply("c", "mmi.workers", "403")]
    );
    assert_eq!(
        ask(&mut h, "c", "mmi.service", "echo"),
        [Sent::reply("c", "mmi.service", "200")]
    );
    assert_eq!(
        ask(&mut h, "c", "mmi.service", "nobody"),
        [Sent::reply("c", "mmi.service", "403")],
        "403 before 404: the caller learns nothing about what it may not call"
    );
    // mmi.services lists only what the caller may call.
    assert_eq!(
        ask(&mut h, "c", "mmi.services", ""),
        [Sent::reply("c", "mmi.services", "echo")]
    );
    assert_eq!(
        ask(&mut h, "other", "mmi.services", ""),
        [Sent::reply("other", "mmi.services", "billing.pay|echo")]
    );
    assert_eq!(h.broker.stats().refusals.call, 0, "answered, not refused");
}

#[test]
fn peers_without_rights_may_do_anything() {
    let mut h = Harness::new();
    h.ready("w1", "any.thing");
    h.request("c", "any.thing", "x");
    assert_eq!(h.take(), [Sent::request("w1", "c", "x")]);
    assert_eq!(
        ask(&mut h, "c", "mmi.service", "any.thing"),
        [Sent::reply("c", "mmi.service", "200")]
    );
    // Every right is the same as none given: nothing is kept.
    h.set_rights("c", "*", "*");
    assert!(h.broker.rights.is_empty());
    h.assert_still_serves();
    assert_eq!(h.broker.stats().refusals, crate::Refusals::default());
}

#[test]
fn rights_are_forgotten_when_the_connection_closes() {
    let mut h = Harness::new();
    h.ready("w1", "echo");
    h.set_rights("c", "", "");
    h.close("c");
    assert!(h.broker.rights.is_empty());
    // A new connection with the same routing id starts unrestricted (the shell sets its
    // rights again when it connects with a key).
    h.request("c", "echo", "again");
    assert_eq!(h.take(), [Sent::request("w1", "c", "again")]);
}

#[test]
fn new_rights_that_no_longer_cover_a_workers_service_disconnect_it() {
    let mut h = Harness::new();
    h.set_rights("w1", "", "echo, billing.*");
    h.ready("w1", "echo");
    h.ready("w2", "echo");
    h.request("c", "echo", "job");
    assert_eq!(h.take(), [Sent::request("w1", "c", "job")]);
    // Rights that still cover `echo` change nothing.
    h.set_rights("w1", "", "echo");
    assert_eq!(h.take(), []);
    // Rights without `echo`: DISCONNECT, and its request goes to the other worker.
    h.set_rights("w1", "", "billing.*");
    assert_eq!(
        h.take(),
        [Sent::request("w2", "c", "job"), Sent::disconnect("w1")]
    );
    let stats = h.broker.stats();
    assert_eq!(stats.refusals.serve, 1);
    assert_eq!(stats.disconnects_sent.not_authorized, 1);
    assert_eq!(stats.worker_departures.protocol_error, 1);
    assert_eq!(h.worker_count("echo"), 1);
    // Changing a client's rights disconnects nothing.
    h.set_rights("c", "billing.*", "");
    assert_eq!(h.take(), []);
}
