//! The same behaviour tests, run against every store: in memory, redb, the log, and PostgreSQL when
//! `DOMO_TEST_PG_URL` names one.

use std::sync::Arc;

use bytes::Bytes;

use super::log::LogStore;
use super::memory::MemoryStore;
use super::postgres::{PostgresOptions, PostgresStore};
use super::redb::{RedbOptions, RedbStore};
use super::{Limits, Lookup, Store};
use crate::clock::ManualClock;
use crate::id::Id;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn both(limits: Limits, check: impl Fn(&dyn Store, &ManualClock)) {
    let clock = ManualClock::new(1_700_000_000_000);
    check(&MemoryStore::new(Arc::new(clock.clone()), limits), &clock);
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_700_000_000_000);
    let options = RedbOptions {
        limits,
        clock: Arc::new(clock.clone()),
        ..RedbOptions::default()
    };
    let store = RedbStore::open(dir.path().join("titanic.redb"), options).unwrap();
    check(&store, &clock);
    // The log store, with small segments so that rotation and deletion happen too.
    let clock = ManualClock::new(1_700_000_000_000);
    let options = RedbOptions {
        limits,
        clock: Arc::new(clock.clone()),
        segment_bytes: 4096,
        ..RedbOptions::default()
    };
    let store = LogStore::open(dir.path().join("titanic-log"), options).unwrap();
    check(&store, &clock);
    // And with its commits through the page cache and fdatasync (a file system that refuses
    // direct I/O).
    let clock = ManualClock::new(1_700_000_000_000);
    let options = RedbOptions {
        limits,
        clock: Arc::new(clock.clone()),
        segment_bytes: 4096,
        direct_io: false,
        ..RedbOptions::default()
    };
    let store = LogStore::open(dir.path().join("titanic-log-buffered"), options).unwrap();
    check(&store, &clock);
    // A real PostgreSQL when the environment gives one (`.ci/run` does), in a fresh schema.
    if let Some(url) = super::postgres::test_url() {
        let clock = ManualClock::new(1_700_000_000_000);
        let options = PostgresOptions {
            limits,
            clock: Arc::new(clock.clone()),
            ..PostgresOptions::new(url)
        };
        let store = PostgresStore::open(options).unwrap();
        check(&store, &clock);
    }
}

#[test]
fn lifecycle_pending_done_closed() {
    both(Limits::default(), |s, _| {
        let id = s.put_request(b("echo"), vec![b("x")]).unwrap();
        assert_eq!(s.get(id).unwrap(), Lookup::Pending);
        s.complete(id, vec![b("y")]).unwrap();
        match s.get(id).unwrap() {
            Lookup::Done(r) => assert_eq!(r.frames, vec![b("y")]),
            other => panic!("{other:?}"),
        }
        let st = s.stats().unwrap();
        assert_eq!((st.pending, st.done), (0, 1));
        s.close(id).unwrap();
        assert_eq!(s.get(id).unwrap(), Lookup::Unknown);
        s.close(id).unwrap();
        assert_eq!(s.stats().unwrap().live_bytes, 0);
    });
}

#[test]
fn the_first_reply_wins_and_replies_to_closed_ids_are_dropped() {
    both(Limits::default(), |s, _| {
        let id = s.put_request(b("echo"), vec![b("x")]).unwrap();
        s.complete(id, vec![b("first")]).unwrap();
        s.complete(id, vec![b("second")]).unwrap();
        assert!(matches!(s.get(id).unwrap(), Lookup::Done(r) if r.frames == vec![b("first")]));
        s.close(id).unwrap();
        s.complete(id, vec![b("late")]).unwrap();
        assert_eq!(s.get(id).unwrap(), Lookup::Unknown);
    });
}

#[test]
fn pending_is_fifo_skips_done_and_pages_with_a_cursor() {
    both(Limits::default(), |s, clock| {
        let mut ids = Vec::new();
        for i in 0..10 {
            ids.push(s.put_request(b("svc"), vec![b(&i.to_string())]).unwrap());
            if i % 3 == 0 {
                clock.advance(1);
            }
        }
        s.complete(ids[4], vec![b("done")]).unwrap();
        let want: Vec<Id> = ids.iter().copied().filter(|id| *id != ids[4]).collect();
        let mut got = Vec::new();
        let mut cursor = None;
        loop {
            let page = s.pending(cursor, 4).unwrap();
            let Some(last) = page.last() else { break };
            cursor = Some(last.0);
            got.extend(page.iter().map(|(id, _)| *id));
        }
        assert_eq!(got, want);
        let first = &s.pending(None, 1).unwrap()[0].1;
        assert_eq!(first.body, vec![b("0")]);
        assert_eq!(first.created_millis, 1_700_000_000_000);
    });
}

#[test]
fn expire_removes_old_requests_pending_or_done() {
    both(Limits::default(), |s, clock| {
        let old_pending = s.put_request(b("svc"), vec![b("1")]).unwrap();
        let old_done = s.put_request(b("svc"), vec![b("2")]).unwrap();
        s.complete(old_done, vec![b("r")]).unwrap();
        clock.advance(60_000);
        let young = s.put_request(b("svc"), vec![b("3")]).unwrap();
        clock.advance(1_000);
        assert_eq!(s.expire(30_000).unwrap(), 2);
        assert_eq!(s.get(old_pending).unwrap(), Lookup::Unknown);
        assert_eq!(s.get(old_done).unwrap(), Lookup::Unknown);
        assert_eq!(s.get(young).unwrap(), Lookup::Pending);
        assert_eq!(s.expire(30_000).unwrap(), 0);
    });
}

#[test]
fn the_byte_limit_refuses_requests_but_not_replies() {
    both(Limits { max_bytes: 100 }, |s, _| {
        let id = s
            .put_request(b("svc"), vec![Bytes::from(vec![7; 60])])
            .unwrap();
        let err = s
            .put_request(b("svc"), vec![Bytes::from(vec![7; 60])])
            .unwrap_err();
        assert!(matches!(err, crate::Error::StoreFull { .. }), "{err}");
        assert!(!err.is_write_failure());
        s.complete(id, vec![Bytes::from(vec![1; 80])]).unwrap();
        assert!(s.stats().unwrap().live_bytes > 100);
        s.close(id).unwrap();
        s.put_request(b("svc"), vec![Bytes::from(vec![7; 60])])
            .unwrap();
    });
}

#[test]
fn a_key_stores_its_request_once_until_it_is_closed_or_expires() {
    both(Limits::default(), |s, clock| {
        let first = s.put_keyed(b("k1"), b("svc"), vec![b("a")]).unwrap();
        // A retry, even with another body: the first id, nothing stored.
        let again = s.put_keyed(b("k1"), b("svc"), vec![b("b")]).unwrap();
        assert_eq!(again, first);
        assert_eq!(s.stats().unwrap().pending, 1);
        assert_eq!(s.pending(None, 10).unwrap()[0].1.body, vec![b("a")]);
        // Another key, or no key: new requests.
        let other = s.put_keyed(b("k2"), b("svc"), vec![b("a")]).unwrap();
        let plain = s.put_request(b("svc"), vec![b("a")]).unwrap();
        assert!(other != first && plain != first && plain != other);
        // Done: still the same id, with its reply.
        s.complete(first, vec![b("r")]).unwrap();
        assert_eq!(s.put_keyed(b("k1"), b("svc"), vec![b("a")]).unwrap(), first);
        assert_eq!(s.stats().unwrap().pending, 2);
        // Closed: the key is free again.
        s.close(first).unwrap();
        let later = s.put_keyed(b("k1"), b("svc"), vec![b("c")]).unwrap();
        assert_ne!(later, first);
        assert_eq!(s.get(later).unwrap(), Lookup::Pending);
        // Expired: free again too.
        clock.advance(60_000);
        assert_eq!(s.expire(30_000).unwrap(), 3);
        let fresh = s.put_keyed(b("k1"), b("svc"), vec![b("d")]).unwrap();
        assert_ne!(fresh, later);
        s.close(fresh).unwrap();
        assert_eq!(s.stats().unwrap().live_bytes, 0);
    });
}

#[test]
fn the_same_key_at_the_same_moment_gets_one_id() {
    both(Limits::default(), |s, _| {
        let ids: Vec<Id> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..16)
                .map(|i| {
                    scope.spawn(move || {
                        s.put_keyed(b(&format!("k{}", i % 4)), b("svc"), vec![b("x")])
                            .unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for i in 0..16 {
            assert_eq!(ids[i], ids[i % 4], "submission {i}");
        }
        assert_eq!(s.stats().unwrap().pending, 4);
    });
}
