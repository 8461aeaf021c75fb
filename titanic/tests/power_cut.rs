//! Simulated power cuts: only what was fsynced (plus any torn subset of later writes) survives,
//! and every acknowledged request and reply must be in it.
//!
//! A kill -9 leaves the OS page cache intact, so it cannot show a missing fsync. Here the store
//! runs on an in-memory "disk" that keeps two images: what reads see, and what a sync made
//! durable. A cut keeps the durable image plus a random subset of the 512-byte sectors written
//! since the last sync (a torn write), then the store is reopened on that image.

#![allow(clippy::unwrap_used)] // test helpers: a failed setup step should panic

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use domo_titanic::{Id, Lookup, RedbOptions, RedbStore, Store};
use redb::StorageBackend;

const SECTOR: usize = 512;

#[derive(Debug, Default)]
struct Images {
    /// What reads see.
    live: Vec<u8>,
    /// What survives a power cut.
    durable: Vec<u8>,
    /// Sectors written since the last sync: (offset, bytes).
    unsynced: Vec<(usize, Vec<u8>)>,
}

#[derive(Debug, Clone, Default)]
struct Disk(Arc<Mutex<Images>>);

impl Disk {
    fn from_image(image: Vec<u8>) -> Self {
        Self(Arc::new(Mutex::new(Images {
            live: image.clone(),
            durable: image,
            unsynced: Vec::new(),
        })))
    }

    /// The image a power cut at this instant leaves behind.
    fn cut(&self, seed: &mut u64) -> Vec<u8> {
        let images = self.0.lock().unwrap();
        let mut image = images.durable.clone();
        for (offset, data) in &images.unsynced {
            if next(seed).is_multiple_of(2) {
                put(&mut image, *offset, data);
            }
        }
        image
    }
}

fn put(image: &mut Vec<u8>, offset: usize, data: &[u8]) {
    if image.len() < offset + data.len() {
        image.resize(offset + data.len(), 0);
    }
    image[offset..offset + data.len()].copy_from_slice(data);
}

impl StorageBackend for Disk {
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.lock().unwrap().live.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let images = self.0.lock().unwrap();
        let start = offset as usize;
        let src = images
            .live
            .get(start..start + out.len())
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        out.copy_from_slice(src);
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        // Length changes are treated as durable at once (ext4 journals metadata); the new
        // bytes are zeros either way.
        let mut images = self.0.lock().unwrap();
        images.live.resize(len as usize, 0);
        images.durable.resize(len as usize, 0);
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut images = self.0.lock().unwrap();
        let writes = std::mem::take(&mut images.unsynced);
        for (offset, data) in writes {
            put(&mut images.durable, offset, &data);
        }
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut images = self.0.lock().unwrap();
        let offset = offset as usize;
        put(&mut images.live, offset, data);
        for (i, sector) in data.chunks(SECTOR).enumerate() {
            images.unsynced.push((offset + i * SECTOR, sector.to_vec()));
        }
        Ok(())
    }
}

fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

fn reply_for(id: Id) -> Vec<Bytes> {
    vec![Bytes::from(format!("reply {id}"))]
}

#[test]
fn acknowledged_writes_survive_power_cuts_with_torn_writes() {
    let mut seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("power cut seed {seed}");
    let mut image = Vec::new();
    let (mut written, mut done) = (Vec::new(), Vec::new());
    for cut in 0..10 {
        let disk = Disk::from_image(image);
        let store =
            Arc::new(RedbStore::open_with_backend(disk.clone(), RedbOptions::default()).unwrap());
        check(&store, &written, &done, cut);
        let acked = Arc::new(Mutex::new((Vec::new(), Vec::new())));
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (store, acked, stop) = (store.clone(), acked.clone(), stop.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let Ok(id) = store.put_request(Bytes::from_static(b"svc"), vec![]) else {
                            return;
                        };
                        acked.lock().unwrap().0.push(id);
                        if store.complete(id, reply_for(id)).is_ok() {
                            acked.lock().unwrap().1.push(id);
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(20 + next(&mut seed) % 80));
        // Acknowledgements first, then the image: everything acknowledged before this point
        // was synced before the cut.
        let (w, d) = acked.lock().unwrap().clone();
        image = disk.cut(&mut seed);
        stop.store(true, Ordering::Relaxed);
        threads.into_iter().for_each(|t| t.join().unwrap());
        eprintln!(
            "cut {cut}: +{} requests, +{} replies acknowledged",
            w.len(),
            d.len()
        );
        written.extend(w);
        done.extend(d);
    }
    let store =
        RedbStore::open_with_backend(Disk::from_image(image), RedbOptions::default()).unwrap();
    check(&store, &written, &done, 10);
    assert!(!written.is_empty());
}

fn check(store: &RedbStore, written: &[Id], done: &[Id], cut: usize) {
    for id in written {
        assert_ne!(
            store.get(*id).unwrap(),
            Lookup::Unknown,
            "after cut {cut}: lost {id}"
        );
    }
    for id in done {
        match store.get(*id).unwrap() {
            Lookup::Done(r) => assert_eq!(r.frames, reply_for(*id)),
            other => panic!("after cut {cut}: reply for {id} lost: {other:?}"),
        }
    }
}
