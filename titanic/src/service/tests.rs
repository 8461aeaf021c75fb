use std::sync::Arc;

use super::*;
use crate::clock::ManualClock;
use crate::store::{memory::MemoryStore, Limits};

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn store() -> MemoryStore {
    MemoryStore::new(Arc::new(ManualClock::new(1_000)), Limits::default())
}

fn submit(store: &MemoryStore) -> Id {
    let out = handle_request(store, vec![b("echo"), b("hello"), b("world")]);
    assert_eq!(out.len(), 2);
    assert_eq!(out[0], OK);
    assert_eq!(out[1].len(), 32);
    Id::parse(&out[1]).unwrap()
}

#[test]
fn request_answers_200_and_a_lowercase_uuid_and_stores_the_request() {
    let s = store();
    let id = submit(&s);
    let stored = s.pending(None, 10).unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].0, id);
    assert_eq!(stored[0].1.service, b("echo"));
    assert_eq!(stored[0].1.body, vec![b("hello"), b("world")]);
    assert_eq!(id.to_hex(), id.to_hex().to_lowercase());
}

#[test]
fn malformed_requests_are_400() {
    let s = store();
    assert_eq!(handle_request(&s, vec![]), vec![b("400")]);
    assert_eq!(handle_request(&s, vec![b("echo")]), vec![b("400")]);
    assert_eq!(handle_request(&s, vec![b(""), b("x")]), vec![b("400")]);
    for body in [vec![], vec![b("nothex")], vec![b("0123"), b("0123")]] {
        assert_eq!(handle_reply(&s, body.clone()), vec![b("400")]);
        assert_eq!(handle_close(&s, body), vec![b("400")]);
    }
    assert!(s.pending(None, 10).unwrap().is_empty());
}

#[test]
fn reply_is_300_while_pending_then_200_with_the_reply_repeatedly() {
    let s = store();
    let id = submit(&s);
    let ask = || handle_reply(&s, vec![Bytes::from(id.to_hex())]);
    assert_eq!(ask(), vec![b("300")]);
    s.complete(id, vec![b("r1"), b("r2")]).unwrap();
    for _ in 0..3 {
        assert_eq!(ask(), vec![b("200"), b("r1"), b("r2")]);
    }
}

#[test]
fn reply_accepts_uppercase_uuids() {
    let s = store();
    let id = submit(&s);
    s.complete(id, vec![b("r")]).unwrap();
    let upper = Bytes::from(id.to_hex().to_uppercase());
    assert_eq!(handle_reply(&s, vec![upper]), vec![b("200"), b("r")]);
}

#[test]
fn reply_for_an_unknown_uuid_is_400() {
    let s = store();
    let unknown = Bytes::from("0123456789abcdef0123456789abcdef");
    assert_eq!(handle_reply(&s, vec![unknown]), vec![b("400")]);
}

#[test]
fn close_is_200_then_the_uuid_is_unknown_and_close_again_is_200() {
    let s = store();
    let id = submit(&s);
    s.complete(id, vec![b("r")]).unwrap();
    let frame = || vec![Bytes::from(id.to_hex())];
    assert_eq!(handle_close(&s, frame()), vec![b("200")]);
    assert_eq!(handle_reply(&s, frame()), vec![b("400")]);
    assert_eq!(handle_close(&s, frame()), vec![b("200")]);
    assert_eq!(s.stats().unwrap().live_bytes, 0);
}

#[test]
fn store_failures_are_500_for_every_service() {
    let s = store();
    let id = submit(&s);
    assert!(s.check_writes().is_ok());
    s.fail_writes(true);
    assert!(s.check_writes().unwrap_err().is_write_failure());
    assert_eq!(handle_request(&s, vec![b("echo"), b("x")]), vec![b("500")]);
    assert_eq!(
        handle_close(&s, vec![Bytes::from(id.to_hex())]),
        vec![b("500")]
    );
    s.fail_writes(false);
    assert!(s.check_writes().is_ok());
    assert_eq!(
        handle_reply(&s, vec![Bytes::from(id.to_hex())]),
        vec![b("300")]
    );
}

#[test]
fn a_full_store_answers_500_and_accepts_again_after_a_close() {
    let s = MemoryStore::new(Arc::new(ManualClock::new(0)), Limits { max_bytes: 40 });
    let id = submit(&s);
    assert_eq!(
        handle_request(&s, vec![b("echo"), b("hello"), b("world")]),
        vec![b("500")]
    );
    assert_eq!(
        handle_close(&s, vec![Bytes::from(id.to_hex())]),
        vec![b("200")]
    );
    submit(&s);
}

#[test]
fn service_names_round_trip() {
    for s in TitanicService::ALL {
        assert_eq!(TitanicService::from_name(s.name().as_bytes()), Some(s));
    }
    assert_eq!(TitanicService::from_name(b"titanic.other"), None);
}

#[test]
fn handle_dispatches_by_service() {
    let s = store();
    let out = handle(&s, TitanicService::Request, vec![b("echo"), b("x")]);
    let id = out[1].clone();
    assert_eq!(
        handle(&s, TitanicService::Reply, vec![id.clone()]),
        vec![b("300")]
    );
    assert_eq!(handle(&s, TitanicService::Close, vec![id]), vec![b("200")]);
}
