//! The store's on-disk format across versions: a store written before format 2 (with its
//! `pending` table) opens with every request in its state, a store of a newer format is
//! refused rather than misread, and records of 4,000 bytes or more are kept in page-sized
//! parts and read back whole.

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

    // The file is format 3 now: no pending table, the format recorded.
    let db = Database::open(&path).unwrap();
    let txn = db.begin_read().unwrap();
    assert!(
        txn.open_table(PENDING).is_err(),
        "the pending table is gone"
    );
    let meta = txn.open_table(META).unwrap();
    assert_eq!(meta.get("format").unwrap().unwrap().value(), 3);
}

#[test]
fn a_store_of_a_newer_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("future.redb");
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META).unwrap().insert("format", 4).unwrap();
        txn.commit().unwrap();
    }
    let err = RedbStore::open(&path, RedbOptions::default()).unwrap_err();
    assert!(err.to_string().contains("format 4"), "{err}");
}

const REQUEST_PARTS: TableDefinition<'static, (u128, u32), &[u8]> =
    TableDefinition::new("request_parts");
const REPLY_PARTS: TableDefinition<'static, (u128, u32), &[u8]> =
    TableDefinition::new("reply_parts");

fn sized(n: usize, seed: u8) -> Bytes {
    Bytes::from(
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect::<Vec<u8>>(),
    )
}

#[test]
fn large_records_are_kept_in_page_sized_parts_and_read_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("large.redb");
    // Around the threshold (parts of 4,000 bytes): whole, one part and a small tail, parts
    // and a tail, several parts.
    let sizes = [2_900, 3_100, 3_990, 4_096, 8_000, 20_000];
    let mut expected_live = 0;
    let (mut request_parts, mut reply_parts) = (0, 0);
    let mut ids = Vec::new();
    {
        let store = RedbStore::open(&path, RedbOptions::default()).unwrap();
        for (i, &n) in sizes.iter().enumerate() {
            let body = vec![sized(n, i as u8), Bytes::from_static(b"second frame")];
            let id = store
                .put_request(Bytes::from_static(b"echo"), body.clone())
                .unwrap();
            let stored = store.pending(None, 100).unwrap();
            let (_, request) = stored.iter().find(|(s, _)| *s == id).unwrap();
            assert_eq!(request.body, body, "{n} B read back whole");
            let len = encode_request(request).len();
            expected_live += len as u64;
            request_parts += len / 4000;
            ids.push(id);
        }
        // Replies: large ones too.
        for (i, id) in ids.iter().enumerate() {
            store.complete(*id, vec![sized(sizes[i] + 7, 99)]).unwrap();
            match store.get(*id).unwrap() {
                Lookup::Done(reply) => {
                    assert_eq!(reply.frames, vec![sized(sizes[i] + 7, 99)]);
                    let len = encode_reply(&reply).len();
                    expected_live += len as u64;
                    reply_parts += len / 4000;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(store.stats().unwrap().live_bytes, expected_live);
    }
    // The large records are in parts (9 of each here).
    assert_eq!((request_parts, reply_parts), (9, 9));
    {
        let db = Database::open(&path).unwrap();
        let txn = db.begin_read().unwrap();
        let count = |t| redb::ReadableTableMetadata::len(&txn.open_table(t).unwrap()).unwrap();
        assert_eq!(count(REQUEST_PARTS), request_parts as u64);
        assert_eq!(count(REPLY_PARTS), reply_parts as u64);
    }
    // Reopened: the live bytes are counted again from the stored records, parts included.
    let store = RedbStore::open(&path, RedbOptions::default()).unwrap();
    assert_eq!(store.stats().unwrap().live_bytes, expected_live);
    match store.get(ids[5]).unwrap() {
        Lookup::Done(reply) => assert_eq!(reply.frames, vec![sized(20_007, 99)]),
        other => panic!("{other:?}"),
    }
    for id in &ids {
        store.close(*id).unwrap();
    }
    assert_eq!(store.stats().unwrap().live_bytes, 0);
    drop(store);
    // Closing removed every part.
    let db = Database::open(&path).unwrap();
    let txn = db.begin_read().unwrap();
    for table in [REQUEST_PARTS, REPLY_PARTS] {
        let parts = txn.open_table(table).unwrap();
        assert_eq!(redb::ReadableTableMetadata::len(&parts).unwrap(), 0);
    }
}
