//! The log store's own behaviour: what survives a reopen, torn and damaged segments,
//! deletion and compaction of segments, the lock, and the move from a redb store. (The
//! behaviour every store shares is in `store/contract.rs`.)

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{import_redb, segment_name, segment_number, LogStore};
use crate::clock::ManualClock;
use crate::id::Id;
use crate::store::redb::{RedbOptions, RedbStore};
use crate::store::{Lookup, Store};

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn options(clock: &ManualClock, segment_bytes: u64) -> RedbOptions {
    RedbOptions {
        clock: Arc::new(clock.clone()),
        segment_bytes,
        ..RedbOptions::default()
    }
}

fn segments(dir: &Path) -> Vec<u64> {
    let mut out: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str().and_then(segment_number))
        .collect();
    out.sort_unstable();
    out
}

fn body(id: Id, store: &dyn Store) -> Vec<Bytes> {
    store
        .pending(Some(Id::from_u128(id.as_u128() - 1)), 1)
        .unwrap()
        .into_iter()
        .find(|(found, _)| *found == id)
        .map(|(_, r)| r.body)
        .unwrap_or_default()
}

#[test]
fn what_was_acknowledged_is_there_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_700_000_000_000);
    let (pending, done, closed, keyed, old) = {
        let s = LogStore::open(dir.path(), options(&clock, 4096)).unwrap();
        let old = s.put_request(b("echo"), vec![b("old")]).unwrap();
        clock.advance(60_000);
        let pending = s.put_request(b("echo"), vec![b("a"), b("b")]).unwrap();
        let done = s.put_request(b("echo"), vec![b("c")]).unwrap();
        s.complete(done, vec![b("reply")]).unwrap();
        let closed = s.put_request(b("echo"), vec![b("d")]).unwrap();
        s.complete(closed, vec![b("r")]).unwrap();
        s.close(closed).unwrap();
        let keyed = s.put_keyed(b("k1"), b("echo"), vec![b("e")]).unwrap();
        assert_eq!(s.expire(30_000).unwrap(), 1);
        (pending, done, closed, keyed, old)
    };
    let s = LogStore::open(dir.path(), options(&clock, 4096)).unwrap();
    assert_eq!(s.get(pending).unwrap(), Lookup::Pending);
    assert_eq!(body(pending, &s), vec![b("a"), b("b")]);
    match s.get(done).unwrap() {
        Lookup::Done(r) => assert_eq!(r.frames, vec![b("reply")]),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.get(closed).unwrap(), Lookup::Unknown);
    assert_eq!(
        s.get(old).unwrap(),
        Lookup::Unknown,
        "expired before the reopen"
    );
    assert_eq!(
        s.put_keyed(b("k1"), b("echo"), vec![b("x")]).unwrap(),
        keyed
    );
    let stats = s.stats().unwrap();
    assert_eq!((stats.pending, stats.done), (2, 1));
    // New ids sort after every id read back, even with the clock stepped back.
    clock.set(1_600_000_000_000);
    let next = s.put_request(b("echo"), vec![b("f")]).unwrap();
    assert!(next > keyed);
    let ids: Vec<Id> = s
        .pending(None, 10)
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids, vec![pending, keyed, next]);
}

#[test]
fn a_torn_write_at_the_end_is_cut_and_what_came_before_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_700_000_000_000);
    let (a, c) = {
        let s = LogStore::open(dir.path(), options(&clock, 1 << 20)).unwrap();
        let a = s.put_request(b("echo"), vec![b("a")]).unwrap();
        let c = s.put_request(b("echo"), vec![b("c")]).unwrap();
        s.complete(c, vec![b("done")]).unwrap();
        // The next segment, made ahead, is there: the torn write below is not in the
        // newest file.
        let next = dir.path().join(segment_name(2));
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::metadata(&next).map_or(0, |m| m.len()) < 1 << 20 {
            assert!(Instant::now() < deadline, "segment 2 not made ahead");
            std::thread::sleep(Duration::from_millis(2));
        }
        (a, c)
    };
    // The segment written to (the one after it, made ahead, may be there too: a torn write
    // is then not in the newest file, and is cut all the same).
    let seg = segments(dir.path())[0];
    let path = dir.path().join(segment_name(seg));
    let whole = std::fs::metadata(&path).unwrap().len();
    // Half of a record (as a crash in the middle of its write leaves it), then garbage.
    let mut record = Vec::new();
    super::format::Encoder {
        buf: &mut record,
        seg,
    }
    .request(u128::MAX, None, b"never acknowledged");
    let mut torn = std::fs::read(&path).unwrap();
    torn.extend_from_slice(&record[..record.len() / 2]);
    std::fs::write(&path, &torn).unwrap();
    let s = LogStore::open(dir.path(), options(&clock, 1 << 20)).unwrap();
    // Cut back: the torn bytes are gone (zeroed, or the file cut before them; a commit
    // written directly ends with zeros to a block boundary), what came before is untouched.
    let after = std::fs::read(&path).unwrap();
    let kept = after.len().min(whole as usize);
    assert_eq!(after[..kept], torn[..kept]);
    assert!(after[kept..].iter().all(|b| *b == 0), "cut back");
    assert_eq!(s.get(a).unwrap(), Lookup::Pending);
    assert!(matches!(s.get(c).unwrap(), Lookup::Done(_)));
    assert_eq!(s.get(Id::from_u128(u128::MAX)).unwrap(), Lookup::Unknown);
    // And it writes on from there.
    let d = s.put_request(b("echo"), vec![b("d")]).unwrap();
    drop(s);
    let s = LogStore::open(dir.path(), options(&clock, 1 << 20)).unwrap();
    assert_eq!(body(d, &s), vec![b("d")]);
}

#[test]
fn damage_before_the_newest_segment_keeps_the_store_closed_and_says_where() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_700_000_000_000);
    {
        let s = LogStore::open(dir.path(), options(&clock, 1024)).unwrap();
        for n in 0..40 {
            s.put_request(b("echo"), vec![Bytes::from(format!("request {n:0>60}"))])
                .unwrap();
        }
    }
    let segs = segments(dir.path());
    assert!(segs.len() >= 3, "{segs:?}");
    let path = dir.path().join(segment_name(segs[0]));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[super::format::HEADER_LEN + 30] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let e = LogStore::open(dir.path(), options(&clock, 1024)).unwrap_err();
    let text = e.to_string();
    assert!(text.contains(&segment_name(segs[0])), "{text}");
    assert!(text.contains("refusing to open"), "{text}");
}

#[test]
fn empty_segments_are_deleted_and_a_long_pending_request_is_moved_not_kept_with_its_segment() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_700_000_000_000);
    let s = LogStore::open(dir.path(), options(&clock, 2048)).unwrap();
    let ids: Vec<Id> = (0..200)
        .map(|n| {
            s.put_keyed(
                Bytes::from(format!("key-{n}")),
                b("echo"),
                vec![Bytes::from(format!("request {n:0>40}"))],
            )
            .unwrap()
        })
        .collect();
    let (kept_done, kept_pending) = (ids[3], ids[150]);
    s.complete(kept_done, vec![b("its reply")]).unwrap();
    let many = segments(dir.path()).len();
    assert!(many >= 8, "{many} segments");
    for id in &ids {
        if *id != kept_done && *id != kept_pending {
            s.complete(*id, vec![b("r")]).unwrap();
            s.close(*id).unwrap();
        }
    }
    // The writer moves the two out of their segments in commits of its own; wait for it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while segments(dir.path()).len() > 3 {
        assert!(
            Instant::now() < deadline,
            "segments {:?}",
            segments(dir.path())
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let st = s.stats().unwrap();
    assert!(st.file_bytes < 3 * 2048 + 1024, "{st:?}");
    drop(s);
    let s = LogStore::open(dir.path(), options(&clock, 2048)).unwrap();
    match s.get(kept_done).unwrap() {
        Lookup::Done(r) => assert_eq!(r.frames, vec![b("its reply")]),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        body(kept_pending, &s),
        vec![Bytes::from(format!("request {:0>40}", 150))]
    );
    let st = s.stats().unwrap();
    assert_eq!((st.pending, st.done), (1, 1));
    // The keys moved with them; the closed ones' keys are free again.
    assert_eq!(
        s.put_keyed(b("key-150"), b("echo"), vec![]).unwrap(),
        kept_pending
    );
    assert_ne!(s.put_keyed(b("key-7"), b("echo"), vec![]).unwrap(), ids[7]);
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _s = LogStore::open(dir.path(), RedbOptions::default()).unwrap();
    let e = LogStore::open(dir.path(), RedbOptions::default()).unwrap_err();
    assert!(e.to_string().contains("open in another process"), "{e}");
}

#[test]
fn a_redb_store_moves_into_the_log_with_its_ids_replies_and_keys() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_700_000_000_000);
    let redb = dir.path().join("titanic.redb");
    let log = dir.path().join("titanic-log");
    let big = Bytes::from(vec![b'x'; 9000]); // kept in parts by redb
    let (pending, done, keyed, closed) = {
        let s = RedbStore::open(&redb, options(&clock, 0)).unwrap();
        let pending = s.put_request(b("echo"), vec![big.clone()]).unwrap();
        let done = s.put_request(b("echo"), vec![b("c")]).unwrap();
        s.complete(done, vec![big.clone(), b("tail")]).unwrap();
        let keyed = s.put_keyed(b("k"), b("echo"), vec![b("k")]).unwrap();
        let closed = s.put_request(b("echo"), vec![b("d")]).unwrap();
        s.close(closed).unwrap();
        (pending, done, keyed, closed)
    };
    assert_eq!(import_redb(&redb, &log).unwrap(), 3);
    assert!(!redb.exists());
    assert!(dir.path().join("titanic.redb.imported").exists());
    // Moving it twice (a crash before the rename) changes nothing.
    std::fs::copy(dir.path().join("titanic.redb.imported"), &redb).unwrap();
    assert_eq!(import_redb(&redb, &log).unwrap(), 3);
    let s = LogStore::open(&log, options(&clock, 1 << 20)).unwrap();
    assert_eq!(body(pending, &s), vec![big.clone()]);
    match s.get(done).unwrap() {
        Lookup::Done(r) => assert_eq!(r.frames, vec![big, b("tail")]),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.get(closed).unwrap(), Lookup::Unknown);
    assert_eq!(s.put_keyed(b("k"), b("echo"), vec![]).unwrap(), keyed);
    let st = s.stats().unwrap();
    assert_eq!((st.pending, st.done), (2, 1));
    // Ids go on above every request moved (a closed one was not, as with redb).
    assert!(s.put_request(b("echo"), vec![]).unwrap() > keyed);
}

#[test]
fn segments_are_made_ahead_full_of_zeros_and_read_back_across_their_zeros() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_700_000_000_000);
    let made_ahead = |n: u64| {
        let path = dir.path().join(segment_name(n));
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::metadata(&path).map_or(0, |m| m.len()) < 8192 {
            assert!(Instant::now() < deadline, "segment {n} not made ahead");
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    let mut ids = Vec::new();
    {
        let s = LogStore::open(dir.path(), options(&clock, 8192)).unwrap();
        // Each round waits for the next segment, full of zeros, then fills the newest one
        // past its size, so that the writer moves to the one made ahead.
        for round in 0..3u64 {
            made_ahead(round + 2);
            let before = segments(dir.path());
            for n in 0..40 {
                let body = Bytes::from(format!("round {round} request {n:0>200}"));
                ids.push((s.put_request(b("echo"), vec![body.clone()]).unwrap(), body));
            }
            assert!(segments(dir.path()).len() > before.len() || round == 0);
        }
        assert!(segments(dir.path()).len() >= 4);
    }
    // Zeros after the last record end a segment cleanly, old or newest.
    let s = LogStore::open(dir.path(), options(&clock, 8192)).unwrap();
    for (id, body) in &ids {
        assert_eq!(s.get(*id).unwrap(), Lookup::Pending);
        assert_eq!(&self::body(*id, &s), &vec![body.clone()]);
    }
}

#[test]
fn restarts_go_on_in_the_segment_written_to_and_leave_no_zeros_unused() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_700_000_000_000);
    let size = 1 << 20;
    let mut ids = Vec::new();
    for start in 0..6 {
        let s = LogStore::open(dir.path(), options(&clock, size)).unwrap();
        for n in 0..20 {
            let body = Bytes::from(format!("start {start} request {n}"));
            ids.push((s.put_request(b("echo"), vec![body.clone()]).unwrap(), body));
        }
        // The next segment is made ahead before the stop.
        let deadline = Instant::now() + Duration::from_secs(10);
        while segments(dir.path()).len() < 2 {
            assert!(Instant::now() < deadline, "no segment made ahead");
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    // Everything went to segment 1; segment 2 is the one made ahead, kept for the next
    // start: two files in all, not one per start.
    assert_eq!(segments(dir.path()), vec![1, 2]);
    let total: u64 = segments(dir.path())
        .iter()
        .map(|n| {
            std::fs::metadata(dir.path().join(segment_name(*n)))
                .unwrap()
                .len()
        })
        .sum();
    assert!(total <= 2 * size, "{total} bytes of segment files");
    let s = LogStore::open(dir.path(), options(&clock, size)).unwrap();
    for (id, body) in &ids {
        assert_eq!(&self::body(*id, &s), &vec![body.clone()]);
    }
}

/// Direct writes (a block at a time, the partial last one written again) and buffered ones
/// (`pwrite` + `fdatasync`, as on a file system without direct I/O) take over from each other
/// at restarts in the middle of a block and across segments: every record stays readable.
#[test]
fn direct_and_buffered_commits_take_over_from_each_other_at_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_700_000_000_000);
    // Each request's body, also its reply's when it was answered.
    let check = |s: &LogStore, ids: &[(Id, Bytes, bool)]| {
        for (id, body, done) in ids {
            if *done {
                match s.get(*id).unwrap() {
                    Lookup::Done(r) => assert_eq!(&r.frames, &vec![body.clone()]),
                    other => panic!("{other:?}"),
                }
            } else {
                assert_eq!(&self::body(*id, s), &vec![body.clone()]);
            }
        }
    };
    let mut ids = Vec::new();
    for start in 0..8 {
        let options = RedbOptions {
            direct_io: start % 2 == 0,
            ..options(&clock, 16 * 1024)
        };
        let s = LogStore::open(dir.path(), options).unwrap();
        for n in 0..30 {
            // Sizes around a block, so that commits end anywhere in one.
            let body = Bytes::from(vec![
                b'a' + (n % 26) as u8;
                1 + (start * 997 + n * 331) % 5000
            ]);
            let id = s.put_request(b("echo"), vec![body.clone()]).unwrap();
            let done = n % 7 == 3;
            if done {
                s.complete(id, vec![body.clone()]).unwrap();
            }
            ids.push((id, body, done));
        }
        check(&s, &ids);
    }
    assert!(segments(dir.path()).len() > 4, "{:?}", segments(dir.path()));
    check(
        &LogStore::open(dir.path(), options(&clock, 16 * 1024)).unwrap(),
        &ids,
    );
}
