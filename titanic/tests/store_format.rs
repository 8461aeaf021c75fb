//! The store's on-disk format across versions: a store written before format 2 (with its
//! `pending` table) opens with every request in its state, and a store of a newer format is
//! refused rather than misread.

#![allow(clippy::unwrap_used)] // test helpers: a failed setup step should panic

use bytes::Bytes;
use domo_titanic::record::{encode_reply, encode_request};
use domo_titanic::{Id, IdGenerator, Lookup, RedbOptions, RedbStore, Reply, Request, Store};
use redb::{Database, ReadableDatabase, TableDefinition};

const REQUESTS: TableDefinition<'static, u128, &[u8]> = TableDefinition::new("requests");
const REPLIES: TableDefinition<'static, u128, &[u8]> = TableDefinition::new("replies");
const PENDING: TableDefinition<'static, u128, ()> = TableDefinition::new("pending");
const META: TableDefinition<'static, &str, u64> = TableDefinition::new("meta");

fn request(i: usize) -> Request {
    Request {
        service: Bytes::from_static(b"echo"),
        body: vec![Bytes::from(format!("body {i}"))],
        created_millis: 1_700_000_000_000 + i as u64,
        attempts: 0,
    }
}

#[test]
fn a_store_written_with_a_pending_table_opens_with_every_request_in_its_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.redb");
    // Format 1, as earlier versions wrote it: ten requests, every third one answered, so
    // pending = the requests without a reply, also listed in `pending`.
    let mut ids = IdGenerator::default();
    let stored: Vec<(Id, bool)> = (0..10)
        .map(|i| (ids.next(1_700_000_000_000 + i as u64), i % 3 == 0))
        .collect();
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut requests = txn.open_table(REQUESTS).unwrap();
            let mut replies = txn.open_table(REPLIES).unwrap();
            let mut pending = txn.open_table(PENDING).unwrap();
            for (i, (id, done)) in stored.iter().enumerate() {
                let key = id.as_u128();
                requests
                    .insert(key, encode_request(&request(i)).as_slice())
                    .unwrap();
                if *done {
                    let reply = Reply {
                        frames: vec![Bytes::from(format!("reply {i}"))],
                        completed_millis: 1_700_000_001_000,
                    };
                    replies
                        .insert(key, encode_reply(&reply).as_slice())
                        .unwrap();
                } else {
                    pending.insert(key, ()).unwrap();
                }
            }
        }
        txn.commit().unwrap();
    }

    let store = RedbStore::open(&path, RedbOptions::default()).unwrap();
    let pending = store.pending(None, 100).unwrap();
    let want: Vec<Id> = stored.iter().filter(|s| !s.1).map(|s| s.0).collect();
    assert_eq!(pending.iter().map(|p| p.0).collect::<Vec<_>>(), want);
    for (id, r) in &pending {
        let i = stored.iter().position(|s| s.0 == *id).unwrap();
        assert_eq!(*r, request(i));
    }
    // Paging with a cursor in the middle of done requests.
    let page = store.pending(Some(stored[2].0), 2).unwrap();
    assert_eq!(
        page.iter().map(|p| p.0).collect::<Vec<_>>(),
        vec![stored[4].0, stored[5].0]
    );
    let stats = store.stats().unwrap();
    assert_eq!((stats.pending, stats.done), (6, 4));
    match store.get(stored[3].0).unwrap() {
        Lookup::Done(reply) => assert_eq!(reply.frames, vec![Bytes::from("reply 3")]),
        other => panic!("{other:?}"),
    }
    assert_eq!(store.get(stored[4].0).unwrap(), Lookup::Pending);
    // Completing a pending one, and again (first reply wins), and a done one.
    store
        .complete(stored[4].0, vec![Bytes::from("new")])
        .unwrap();
    store
        .complete(stored[4].0, vec![Bytes::from("late")])
        .unwrap();
    store
        .complete(stored[3].0, vec![Bytes::from("late")])
        .unwrap();
    match store.get(stored[4].0).unwrap() {
        Lookup::Done(reply) => assert_eq!(reply.frames, vec![Bytes::from("new")]),
        other => panic!("{other:?}"),
    }
    match store.get(stored[3].0).unwrap() {
        Lookup::Done(reply) => assert_eq!(reply.frames, vec![Bytes::from("reply 3")]),
        other => panic!("{other:?}"),
    }
    // A new request sorts after the old ones.
    let new = store
        .put_request(Bytes::from_static(b"echo"), vec![Bytes::from_static(b"x")])
        .unwrap();
    assert!(new > stored[9].0);
    drop(store);

    // The file is format 2 now: no pending table, the format recorded.
    let db = Database::open(&path).unwrap();
    let txn = db.begin_read().unwrap();
    assert!(
        txn.open_table(PENDING).is_err(),
        "the pending table is gone"
    );
    let meta = txn.open_table(META).unwrap();
    assert_eq!(meta.get("format").unwrap().unwrap().value(), 2);
}

#[test]
fn a_store_of_a_newer_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("future.redb");
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META).unwrap().insert("format", 3).unwrap();
        txn.commit().unwrap();
    }
    let err = RedbStore::open(&path, RedbOptions::default()).unwrap_err();
    assert!(err.to_string().contains("format 3"), "{err}");
}
