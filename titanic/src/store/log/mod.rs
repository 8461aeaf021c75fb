//! The log store: requests and replies appended to segment files, one synchronous write per group
//! commit, an index in memory.
//!
//! Design (the shape of a message log such as JetStream's file store, with an fsync before
//! every acknowledgement): a directory of segment files (`0000000000000001.log`, ...), each
//! a header and records ([`format`]: a request, a reply, a close, an expiry; each with a
//! CRC-32C). The single writer thread takes every queued write (as the redb store's does,
//! with the same queue and the same answers), checks it against the index, encodes the
//! batch's records into one buffer, writes it at the end of the newest segment with one
//! synchronous write ([`direct`]: `O_DIRECT | O_DSYNC`; `pwrite` and `fdatasync` where the
//! file system refuses direct I/O), and only then applies the batch to the index and
//! answers its callers. A request costs its record's bytes and a share of one write;
//! nothing is rewritten in place (a B-tree store copies its leaf pages at each commit).
//!
//! The index ([`index`]) maps each live request to where its bytes and its reply's are, and
//! its idempotency key to it; reads look it up and `pread` the bytes (from the page cache,
//! as a rule). Opening the store reads every segment in order and applies its records with
//! the same rules, so the index after a crash is the one of the last durable commit. A record
//! that is not whole (a write torn by the crash, never acknowledged) ends the segment last
//! written to (the newest with records; one made ahead may follow it), which is cut there;
//! in an older segment it is damage, and the store refuses to open rather than drop what
//! follows. The writer then goes on in that segment.
//!
//! Space: a segment is closed at [`RedbOptions::segment_bytes`] (64 MiB) and a new one
//! started. A segment is deleted once nothing in it is live and it is the oldest: a close
//! record later in the log then never outlives the request it closes. A segment that is the
//! oldest and at most half live is compacted: its live requests and replies are written
//! again at the end of the log (a few hundred per commit, in the commits that follow) and the
//! segment deleted once empty. So a long-pending request pins no more than its own bytes.
//!
//! After a failed write (disk full, I/O error) the writer refuses writes, with the error,
//! until an attempt (on the schedule of [`RedbOptions::reopen_backoff`]) cuts the newest
//! segment back to its last durable length and syncs it; nothing acknowledged is in the cut
//! part. The index holds about 150 bytes per live request.

mod direct;
mod format;
mod index;
mod writer;

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use bytes::Bytes;
use domo_mdp::LockExt;

use self::format::{Next, Record};
use self::index::{Change, Index, Loc, Seg};
use self::writer::LogWriter;

use super::op::{submit, submit_async, Answer, Kind, Op};
use super::queue::Queue;
use super::recovery::Recovery;
use super::redb::RedbOptions;
use super::{Durable, Lookup, Stats, Store};
use crate::clock::TimeSource;
use crate::error::{Error, Result};
use crate::id::{Id, IdGenerator};
use crate::record::{decode_reply, decode_request, Request};

/// The default size at which a segment is closed and the next one started.
pub const SEGMENT_BYTES: u64 = 64 << 20;

/// A durable Titanic store in a directory of log segments. Dropping it stops the writer
/// after the queued ops.
pub struct LogStore {
    shared: Arc<Shared>,
    clock: Arc<dyn TimeSource>,
    queue: Arc<Queue<Op>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// The thread that makes segments ahead; it ends after the writer (which tells it).
    preparer: Mutex<Option<JoinHandle<()>>>,
    /// Held while the store is open: another process cannot open the same directory.
    _lock: File,
}

impl std::fmt::Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").finish_non_exhaustive()
    }
}

/// What the callers and the writer share.
struct Shared {
    index: RwLock<Index>,
    /// The error of the failed write, while the store refuses writes.
    failure: Mutex<Option<Error>>,
    commits: AtomicU64,
}

impl Shared {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.index
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn failure(&self) -> Option<Error> {
        self.failure
            .lock_unpoisoned()
            .as_ref()
            .map(Error::duplicate)
    }

    fn set_failure(&self, failure: Option<Error>) {
        *self.failure.lock_unpoisoned() = failure;
    }
}

/// The next segment, made ahead by the preparer thread: its file full of zeros, its header
/// written, both durable, so that a commit writes over zeros already on the disk and its
/// sync flushes only the data (appending also changes the file's size and extents,
/// which costs the file system a journal commit: measured, about 1.8x the time of an
/// `fdatasync` at 200 KB), and a rotation costs the writer nothing.
#[derive(Default)]
pub(super) struct Prepared {
    /// The segment the writer will want next; `None` while it makes one itself.
    pub(super) wanted: Option<u64>,
    /// The segment made, with its file.
    pub(super) ready: Option<(u64, Arc<File>)>,
}

/// The file the preparer fills before it becomes a segment.
const SPARE_TMP: &str = "next.tmp";

/// Starts the thread that makes the segment `prepared` wants, when told; it ends when the
/// sender is dropped.
fn spawn_preparer(
    dir: PathBuf,
    size: u64,
    prepared: Arc<Mutex<Prepared>>,
) -> Result<(mpsc::Sender<()>, JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel::<()>();
    let _ = std::fs::remove_file(dir.join(SPARE_TMP));
    let handle = std::thread::Builder::new()
        .name("titanic-segments".into())
        .spawn(move || {
            let mut zeros = direct::Zeros::new(1 << 20);
            while rx.recv().is_ok() {
                let n = {
                    let p = prepared.lock_unpoisoned();
                    match (p.wanted, &p.ready) {
                        (Some(n), None) => n,
                        _ => continue,
                    }
                };
                let tmp = dir.join(SPARE_TMP);
                let made = (|| -> std::io::Result<File> {
                    let file = OpenOptions::new()
                        .read(true)
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .open(&tmp)?;
                    // A megabyte at a time, each synced before the next: the commits' own
                    // syncs never wait behind more than that of it. Written directly where
                    // the file system takes it (no copy into the page cache, which the
                    // commits, written directly too, would not use).
                    zeros.fill(&file, &tmp, size)?;
                    file.write_all_at(&format::header(), 0)?;
                    file.sync_all()?;
                    Ok(file)
                })();
                let file = match made {
                    Ok(file) => file,
                    Err(e) => {
                        // Segments are then made by the writer (slower commits, nothing lost).
                        let _ = std::fs::remove_file(&tmp);
                        tracing::warn!(error = %e, dir = %dir.display(),
                            "Titanic log: cannot make the next segment ahead");
                        continue;
                    }
                };
                // Named as a segment only while the writer still wants it (it has not made
                // it itself meanwhile), and durable before it is handed over.
                let mut p = prepared.lock_unpoisoned();
                let placed = p.wanted == Some(n)
                    && std::fs::rename(&tmp, dir.join(segment_name(n))).is_ok()
                    && sync_dir(&dir).is_ok();
                if placed {
                    p.ready = Some((n, Arc::new(file)));
                } else {
                    let _ = std::fs::remove_file(&tmp);
                }
            }
        })
        .map_err(|e| Error::Unavailable(format!("cannot start the segment thread: {e}")))?;
    Ok((tx, handle))
}

/// The file name of segment `n`.
fn segment_name(n: u64) -> String {
    format!("{n:016x}.log")
}

/// The segment number of a file name, if it is one.
fn segment_number(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".log")?;
    (hex.len() == 16)
        .then(|| u64::from_str_radix(hex, 16).ok())
        .flatten()
}

fn io_err(what: impl std::fmt::Display, e: std::io::Error) -> Error {
    Error::Unavailable(format!("{what}: {e}"))
}

/// Syncs a directory, so that a file created or deleted in it stays so after a crash.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// What reading the segments back gave.
struct Recovered {
    index: Index,
    floor: Option<Id>,
    /// The segment to write to, and its length.
    active: (u64, Arc<File>, u64),
    /// The empty segment after it, made ahead before the stop.
    ready: Option<(u64, Arc<File>)>,
}

/// Reads every segment of `dir` in order into an index (see the module docs).
fn recover(dir: &Path) -> Result<Recovered> {
    let mut numbers = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| io_err(dir.display(), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_err(dir.display(), e))?;
        if let Some(n) = entry.file_name().to_str().and_then(segment_number) {
            numbers.push(n);
        }
    }
    numbers.sort_unstable();
    let mut index = Index::default();
    let mut floor: Option<u128> = None;
    let last = numbers.last().copied();
    // The segment the writer appended to last: the newest one with a record in it (the
    // segments after it, if any, were made ahead and are still empty). Only there can a
    // write have been torn.
    let mut appended = last;
    for n in numbers.iter().rev() {
        let path = dir.join(segment_name(*n));
        let bytes = std::fs::read(&path).map_err(|e| io_err(path.display(), e))?;
        let empty = bytes.len() <= format::HEADER_LEN
            || bytes[format::HEADER_LEN..].iter().all(|b| *b == 0);
        if !empty {
            appended = Some(*n);
            break;
        }
    }
    for n in numbers {
        let path = dir.join(segment_name(n));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io_err(path.display(), e))?;
        let bytes = std::fs::read(&path).map_err(|e| io_err(path.display(), e))?;
        let newest = Some(n) == last;
        let no_header =
            bytes.len() < format::HEADER_LEN || bytes[..format::HEADER_LEN].iter().all(|b| *b == 0);
        if no_header && newest {
            // Made (or a spare renamed), and the crash came before its header was durable:
            // start it again.
            file.set_len(0).map_err(|e| io_err(path.display(), e))?;
            file.write_all_at(&format::header(), 0)
                .and_then(|()| file.sync_all())
                .map_err(|e| io_err(path.display(), e))?;
            index
                .segs
                .insert(n, new_seg(file, format::HEADER_LEN as u64));
            continue;
        }
        format::check_header(&bytes)
            .map_err(|e| Error::Unavailable(format!("{}: {e}", path.display())))?;
        index.segs.insert(n, new_seg(file, 0));
        let mut at = format::HEADER_LEN;
        loop {
            match format::next(&bytes, n, at) {
                Next::Record { record, body, end } => {
                    let change = match record {
                        Record::Request { id, key, encoded } => {
                            floor = floor.max(Some(id));
                            Change::Request {
                                id,
                                at: loc(n, format::request_bytes_at(body, key), encoded.len()),
                                key: key.map(Bytes::copy_from_slice),
                            }
                        }
                        Record::Reply { id, encoded } => Change::Reply {
                            id,
                            at: loc(n, body, encoded.len()),
                        },
                        Record::Close { id } => Change::Close { id },
                        Record::Expire { below } => Change::Expire { below },
                    };
                    index.apply(change);
                    at = end;
                }
                Next::End => break,
                Next::Torn(why) if newest || Some(n) == appended => {
                    clear_torn(&index.segs[&n].file, &bytes, at, &path, why)?;
                    break;
                }
                Next::Torn(why) => {
                    return Err(Error::Unavailable(format!(
                        "{}: {why} at byte {at}, before the newest segment with records; \
                         refusing to open rather than drop the records after it",
                        path.display()
                    )));
                }
            }
        }
        if let Some(seg) = index.segs.get_mut(&n) {
            seg.size = at as u64;
        }
    }
    // The writer goes on in the segment it last wrote to, keeping its zeros; an empty segment
    // made ahead after it stays the next one, any other goes. (Starting a new segment at each
    // start would leave the last one's zeros unused: 64 MiB per restart.)
    let mut ready = None;
    if let Some(k) = appended.filter(|k| index.segs.contains_key(k)) {
        let later: Vec<u64> = index.segs.range(k + 1..).map(|(n, _)| *n).collect();
        for n in later {
            let Some(seg) = index.segs.remove(&n) else {
                continue;
            };
            if n == k + 1 {
                ready = Some((n, seg.file));
            } else {
                let path = dir.join(segment_name(n));
                std::fs::remove_file(&path).map_err(|e| io_err(path.display(), e))?;
            }
        }
    }
    // Every segment but the one written to is cut to its records.
    let newest = index.segs.keys().next_back().copied();
    for (n, seg) in &index.segs {
        let len = seg
            .file
            .metadata()
            .map_err(|e| io_err(segment_name(*n), e))?
            .len();
        if Some(*n) != newest && len > seg.size {
            seg.file
                .set_len(seg.size)
                .map_err(|e| io_err(segment_name(*n), e))?;
        }
    }
    let active = match index.segs.iter().next_back() {
        Some((n, seg)) => (*n, seg.file.clone(), seg.size),
        None => {
            let (file, size) = create_segment(dir, 1)?;
            let file = Arc::new(file);
            index.segs.insert(
                1,
                Seg {
                    file: file.clone(),
                    size,
                    live: 0,
                    live_bytes: 0,
                },
            );
            (1, file, size)
        }
    };
    Ok(Recovered {
        index,
        floor: floor.map(Id::from_u128),
        active,
        ready,
    })
}

/// Cuts what follows the last whole record (at `at`) of the segment written to: zeros over
/// its bytes, up to where the file's zeros begin (it keeps its size: commits then do not grow
/// it), or the file cut there.
fn clear_torn(file: &File, bytes: &[u8], at: usize, path: &Path, why: &str) -> Result<()> {
    tracing::warn!(
        segment = %path.display(), at, dropped = bytes.len() - at, why,
        "Titanic log: cutting an incomplete write at the end of the log (never acknowledged)"
    );
    let dirty = bytes[at..]
        .iter()
        .rposition(|b| *b != 0)
        .map_or(0, |p| p + 1);
    let cleared = if at + dirty < bytes.len() {
        file.write_all_at(&vec![0; dirty], at as u64)
    } else {
        file.set_len(at as u64)
    };
    cleared
        .and_then(|()| file.sync_all())
        .map_err(|e| io_err(path.display(), e))
}

fn new_seg(file: File, size: u64) -> Seg {
    Seg {
        file: Arc::new(file),
        size,
        live: 0,
        live_bytes: 0,
    }
}

fn loc(seg: u64, off: usize, len: usize) -> Loc {
    Loc {
        seg,
        off: off as u64,
        len: len as u32,
    }
}

/// Creates segment `n` with its header, durable (file and directory entry).
fn create_segment(dir: &Path, n: u64) -> Result<(File, u64)> {
    let path = dir.join(segment_name(n));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(Error::from_write_io)?;
    file.write_all_at(&format::header(), 0)
        .and_then(|()| file.sync_all())
        .and_then(|()| sync_dir(dir))
        .map_err(Error::from_write_io)?;
    Ok((file, format::HEADER_LEN as u64))
}

impl LogStore {
    /// Opens the store in the directory `dir` (created if missing, with its parent), reading
    /// the log back into memory (see the module docs). The options are those of the redb
    /// store; [`RedbOptions::segment_bytes`] sets the segment size.
    ///
    /// # Errors
    ///
    /// [`Error::Unavailable`] if the directory cannot be created or read, another process
    /// has it open, or a segment before the newest is damaged.
    pub fn open(dir: impl AsRef<Path>, options: RedbOptions) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| io_err(dir.display(), e))?;
        let lock = lock_dir(&dir)?;
        let Recovered {
            index,
            floor,
            active,
            ready,
        } = recover(&dir)?;
        let shared = Arc::new(Shared {
            index: RwLock::new(index),
            failure: Mutex::new(None),
            commits: AtomicU64::new(0),
        });
        let live = shared.read().live_bytes;
        let clock = options.clock.clone();
        let segment_bytes = options.segment_bytes.max(format::HEADER_LEN as u64 + 1);
        let prepared = Arc::new(Mutex::new(Prepared {
            wanted: ready.is_none().then_some(active.0 + 1),
            ready,
        }));
        let (prepare, preparer) = spawn_preparer(dir.clone(), segment_bytes, prepared.clone())?;
        let _ = prepare.send(());
        let mut writer = LogWriter {
            prepare,
            prepared,
            dir,
            shared: shared.clone(),
            clock: options.clock,
            limits: options.limits,
            ids: IdGenerator::after(floor),
            live,
            max_batch: options.max_batch.max(1),
            linger: options.linger,
            last_batch: 0,
            on_commit: options.on_commit,
            feed: options.feed,
            on_reopen: options.on_reopen,
            recovery: Recovery::new(options.reopen_backoff),
            active: active.0,
            file: active.1,
            end: active.2,
            segment_bytes,
            buf: Vec::new(),
            direct: None,
            buffered: !options.direct_io,
            compacting: None,
            cursor: 0,
        };
        writer.collect_segments();
        let queue = Arc::new(Queue::new(options.queue_capacity));
        let writer_queue = queue.clone();
        let handle = std::thread::Builder::new()
            .name("titanic-writer".into())
            .spawn(move || writer.run(&writer_queue))
            .map_err(|e| Error::Unavailable(format!("cannot start the writer thread: {e}")))?;
        Ok(Self {
            shared,
            clock,
            queue,
            writer: Mutex::new(Some(handle)),
            preparer: Mutex::new(Some(preparer)),
            _lock: lock,
        })
    }

    fn put_op(&self, service: Bytes, body: Vec<Bytes>, key: Option<Bytes>) -> Kind {
        let request = Request {
            service,
            body,
            created_millis: self.clock.now_millis(),
            attempts: 0,
        };
        // Encoded by the writer, into its commit's buffer (an empty `encoded` says so).
        Kind::Put {
            request,
            encoded: Vec::new(),
            key,
        }
    }
}

/// Takes the directory's lock file, or says who has it.
fn lock_dir(dir: &Path) -> Result<File> {
    let path: PathBuf = dir.join("LOCK");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| io_err(path.display(), e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Unavailable(format!(
            "{}: the Titanic log is open in another process",
            dir.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(io_err(path.display(), e)),
    }
}

/// Reads a record's bytes.
fn read_at(file: &File, at: Loc) -> Result<Vec<u8>> {
    let mut out = vec![0; at.len as usize];
    file.read_exact_at(&mut out, at.off)
        .map_err(|e| Error::Unavailable(format!("reading the Titanic log: {e}")))?;
    Ok(out)
}

fn corrupt(id: u128, e: postcard::Error) -> Error {
    Error::Corrupt {
        id: Id::from_u128(id).to_hex(),
        reason: e.to_string(),
    }
}

impl Store for LogStore {
    fn put_request(&self, service: Bytes, body: Vec<Bytes>) -> Result<Id> {
        submit(&self.queue, self.put_op(service, body, None), Answer::Id)
    }

    fn put_request_async(&self, service: Bytes, body: Vec<Bytes>) -> Durable<Id> {
        submit_async(&self.queue, self.put_op(service, body, None), Answer::Id)
    }

    fn put_keyed(&self, key: Bytes, service: Bytes, body: Vec<Bytes>) -> Result<Id> {
        submit(
            &self.queue,
            self.put_op(service, body, Some(key)),
            Answer::Id,
        )
    }

    fn put_keyed_async(&self, key: Bytes, service: Bytes, body: Vec<Bytes>) -> Durable<Id> {
        submit_async(
            &self.queue,
            self.put_op(service, body, Some(key)),
            Answer::Id,
        )
    }

    fn complete(&self, id: Id, frames: Vec<Bytes>) -> Result<()> {
        submit(&self.queue, Kind::Complete { id, frames }, Answer::Unit)
    }

    fn complete_async(&self, id: Id, frames: Vec<Bytes>) -> Durable<()> {
        submit_async(&self.queue, Kind::Complete { id, frames }, Answer::Unit)
    }

    fn get(&self, id: Id) -> Result<Lookup> {
        let key = id.as_u128();
        let reply = {
            let index = self.shared.read();
            let Some(entry) = index.entries.get(&key) else {
                return Ok(Lookup::Unknown);
            };
            let Some(at) = entry.reply else {
                return Ok(Lookup::Pending);
            };
            let file = index.segs.get(&at.seg).map(|s| s.file.clone());
            (file, at)
        };
        let (Some(file), at) = reply else {
            return Err(Error::Unavailable("a reply's segment is missing".into()));
        };
        let bytes = read_at(&file, at)?;
        decode_reply(&bytes)
            .map(Lookup::Done)
            .map_err(|e| corrupt(key, e))
    }

    fn close(&self, id: Id) -> Result<()> {
        submit(&self.queue, Kind::Close { id }, Answer::Unit)
    }

    fn close_async(&self, id: Id) -> Durable<()> {
        submit_async(&self.queue, Kind::Close { id }, Answer::Unit)
    }

    fn pending(&self, after: Option<Id>, limit: usize) -> Result<Vec<(Id, Request)>> {
        let from = after.map_or(0, |a| a.as_u128().saturating_add(1));
        let found: Vec<(u128, Option<Arc<File>>, Loc)> = {
            let index = self.shared.read();
            index
                .entries
                .range(from..)
                .filter(|(_, e)| e.reply.is_none())
                .take(limit)
                .map(|(id, e)| {
                    let file = index.segs.get(&e.request.seg).map(|s| s.file.clone());
                    (*id, file, e.request)
                })
                .collect()
        };
        let mut out = Vec::with_capacity(found.len());
        for (id, file, at) in found {
            let file =
                file.ok_or_else(|| Error::Unavailable("a request's segment is missing".into()))?;
            let request = decode_request(&read_at(&file, at)?).map_err(|e| corrupt(id, e))?;
            out.push((Id::from_u128(id), request));
        }
        Ok(out)
    }

    fn expire(&self, older_than_millis: u64) -> Result<usize> {
        submit(
            &self.queue,
            Kind::Expire { older_than_millis },
            Answer::Count,
        )
    }

    fn stats(&self) -> Result<Stats> {
        let index = self.shared.read();
        let requests = index.entries.len() as u64;
        Ok(Stats {
            pending: requests - index.done,
            done: index.done,
            live_bytes: index.live_bytes,
            file_bytes: index.file_bytes(),
            commits: self.shared.commits.load(Ordering::Relaxed),
        })
    }

    fn check_writes(&self) -> Result<()> {
        self.shared.failure().map_or(Ok(()), Err)
    }
}

impl Drop for LogStore {
    fn drop(&mut self) {
        self.queue.close();
        if let Some(handle) = self.writer.lock().ok().and_then(|mut w| w.take()) {
            let _ = handle.join();
        }
        // Before the lock is released: no segment is made in the directory once another
        // store may have opened it.
        if let Some(handle) = self.preparer.lock().ok().and_then(|mut w| w.take()) {
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests;

/// Moves every live request of the redb store at `from` (with its reply and key, under the
/// same id) into the log directory `dir`, as a new segment after any there, synced; then
/// renames `from` to `NAME.imported`. Returns how many requests moved.
///
/// Safe to run again after a crash at any point: until the rename, the redb file is
/// untouched, and a request written to the log twice is one request (a later record of an
/// id replaces the earlier one, as after a compaction).
///
/// # Errors
///
/// The redb store cannot be opened or read, or the log cannot be written; nothing is
/// renamed then.
pub fn import_redb(from: &Path, dir: &Path) -> Result<usize> {
    std::fs::create_dir_all(dir).map_err(|e| io_err(dir.display(), e))?;
    let _lock = lock_dir(dir)?;
    let redb = super::redb::RedbStore::open(from, RedbOptions::default())?;
    let mut last = 0;
    for entry in std::fs::read_dir(dir).map_err(|e| io_err(dir.display(), e))? {
        let entry = entry.map_err(|e| io_err(dir.display(), e))?;
        if let Some(n) = entry.file_name().to_str().and_then(segment_number) {
            last = last.max(n);
        }
    }
    // Written whole under a temporary name, then renamed: a crash leaves no torn segment
    // (a segment before the last one written to that is not whole stops the log opening).
    let tmp = dir.join("import.tmp");
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(Error::from_write_io)?;
    file.write_all_at(&format::header(), 0)
        .map_err(Error::from_write_io)?;
    let mut end = format::HEADER_LEN as u64;
    let mut buf = Vec::new();
    let mut moved = 0;
    let flush = |buf: &mut Vec<u8>, end: &mut u64| -> Result<()> {
        file.write_all_at(buf, *end).map_err(Error::from_write_io)?;
        *end += buf.len() as u64;
        buf.clear();
        Ok(())
    };
    redb.for_each_live(|id, request, reply, key| {
        let mut e = format::Encoder {
            buf: &mut buf,
            seg: last + 1,
        };
        e.request(id, key, request);
        if let Some(reply) = reply {
            e.reply(id, reply);
        }
        moved += 1;
        if buf.len() >= 1 << 20 {
            flush(&mut buf, &mut end)?;
        }
        Ok(())
    })?;
    flush(&mut buf, &mut end)?;
    drop(redb);
    file.sync_all().map_err(Error::from_write_io)?;
    std::fs::rename(&tmp, dir.join(segment_name(last + 1)))
        .and_then(|()| sync_dir(dir))
        .map_err(|e| io_err(dir.display(), e))?;
    let mut imported = from.as_os_str().to_owned();
    imported.push(".imported");
    std::fs::rename(from, &imported).map_err(|e| io_err(from.display(), e))?;
    if let Some(parent) = from.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent).map_err(|e| io_err(parent.display(), e))?;
    }
    Ok(moved)
}
