//! The log store's writer thread: one buffer, one `pwrite` and one `fdatasync` per group
//! commit; the index changes only once the commit is durable.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::direct::{self, DirectFile};
use super::format::Encoder;
use super::index::{Change, Index, Loc, Seg};
use super::{create_segment, read_at, segment_name, sync_dir, Shared};
use crate::clock::TimeSource;
use crate::error::{Error, Result};
use crate::id::{Id, IdGenerator};
use crate::record::{encode_reply_into, encode_request_into, Reply, Request};
use crate::store::op::{fail_all, refuse_until, Answer, Kind, Op, Value};
use crate::store::queue::{Linger, Queue, Waited};
use crate::store::recovery::Recovery;
use crate::store::redb::{CommitObserver, ReopenObserver, StoredFeed};
use crate::store::Limits;
use domo_mdp::LockExt;

/// Most live entries one commit moves out of a segment being compacted.
const MOVES_PER_COMMIT: usize = 256;
/// Most index entries one commit looks at to find them.
const SCAN_PER_COMMIT: usize = 16 * 1024;

pub(super) struct LogWriter {
    /// Tells the preparer thread to make the segment `prepared` wants.
    pub(super) prepare: std::sync::mpsc::Sender<()>,
    pub(super) prepared: Arc<std::sync::Mutex<super::Prepared>>,
    pub(super) dir: PathBuf,
    pub(super) shared: Arc<Shared>,
    pub(super) clock: Arc<dyn TimeSource>,
    pub(super) limits: Limits,
    pub(super) ids: IdGenerator,
    /// Live bytes as committed.
    pub(super) live: u64,
    pub(super) max_batch: usize,
    pub(super) linger: Linger,
    pub(super) last_batch: usize,
    pub(super) on_commit: Option<CommitObserver>,
    pub(super) feed: Option<StoredFeed>,
    pub(super) on_reopen: Option<ReopenObserver>,
    pub(super) recovery: Recovery,
    /// The newest segment, where commits go, and its durable length.
    pub(super) active: u64,
    pub(super) file: Arc<File>,
    pub(super) end: u64,
    pub(super) segment_bytes: u64,
    pub(super) buf: Vec<u8>,
    /// The newest segment opened for direct writes ([`super::direct`]), once a commit has
    /// gone to it.
    pub(super) direct: Option<DirectFile>,
    /// Commits go through the page cache and `fdatasync`: the options say so, or the file
    /// system refused direct I/O.
    pub(super) buffered: bool,
    /// The segment whose live entries are being moved to the end of the log.
    pub(super) compacting: Option<u64>,
    /// Where the next search for them starts.
    pub(super) cursor: u128,
}

/// What a batch did so far, on top of the index (which changes only after the commit).
#[derive(Default)]
struct Overlay {
    /// Requests stored in this batch.
    added: HashSet<u128>,
    /// Keys stored in this batch.
    keys: HashMap<Bytes, u128>,
    /// Replies stored in this batch, with their sizes.
    replied: HashMap<u128, u64>,
    /// Requests closed or expired in this batch.
    removed: HashSet<u128>,
}

impl Overlay {
    fn live(&self, index: &Index, id: u128) -> bool {
        !self.removed.contains(&id) && (self.added.contains(&id) || index.entries.contains_key(&id))
    }

    fn answered(&self, index: &Index, id: u128) -> bool {
        self.replied.contains_key(&id) || index.entries.get(&id).is_some_and(|e| e.reply.is_some())
    }
}

impl LogWriter {
    pub(super) fn run(mut self, queue: &Queue<Op>) {
        let mut batch = Vec::with_capacity(self.max_batch.min(4096));
        loop {
            if let Some(at) = self.recovery.retry_at() {
                // Broken: refuse ops at once until it is time to repair.
                let refusal = || {
                    self.shared.failure().unwrap_or_else(|| {
                        Error::WriteFailed("the store is recovering from a failed write".into())
                    })
                };
                if Instant::now() >= at {
                    self.repair();
                } else if !refuse_until(queue, at, &mut batch, self.max_batch, refusal) {
                    return;
                }
                continue;
            }
            // With a compaction under way, a commit goes out even with nothing queued.
            let wait = self.compacting.map(|_| Duration::ZERO);
            match queue.wait(wait) {
                Waited::Ready => {
                    queue.take(&mut batch, self.max_batch, self.linger, self.last_batch > 1);
                }
                Waited::TimedOut if self.compacting.is_some() => {}
                Waited::TimedOut => continue,
                Waited::Closed => return,
            }
            self.commit_batch(std::mem::take(&mut batch));
        }
    }

    fn commit_batch(&mut self, batch: Vec<Op>) {
        let started = Instant::now();
        if self.end >= self.segment_bytes {
            if let Err(e) = self.rotate() {
                let results = batch.into_iter().map(|op| (op.answer, Ok(Value::Unit)));
                return self.failed(results.collect(), e);
            }
        }
        let now = self.clock.now_millis();
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let mut changes = Vec::with_capacity(batch.len());
        let mut results = Vec::with_capacity(batch.len());
        let mut stored = self.feed.as_ref().map(|_| Vec::with_capacity(batch.len()));
        let live_before = self.live;
        let moved = {
            let shared = self.shared.clone();
            let index = shared.read();
            let mut overlay = Overlay::default();
            for op in batch {
                let r = self.apply(
                    &index,
                    &mut overlay,
                    &mut buf,
                    &mut changes,
                    now,
                    op.kind,
                    stored.as_mut(),
                );
                results.push((op.answer, r));
            }
            self.compact(&index, &overlay, &mut buf, &mut changes)
        };
        let outcome = match moved {
            Err(e) => Err(e),
            Ok(_) if buf.is_empty() => Ok(()),
            Ok(_) => self.write_durably(&buf).map_err(Error::from_write_io),
        };
        let written = buf.len() as u64;
        self.buf = buf;
        if let Err(e) = outcome {
            self.live = live_before;
            return self.failed(results, e);
        }
        self.end += written;
        {
            let mut index = self.shared.write();
            if let Some(seg) = index.segs.get_mut(&self.active) {
                seg.size = self.end;
            }
            changes.into_iter().for_each(|c| index.apply(c));
            self.live = index.live_bytes;
        }
        self.collect_segments();
        self.shared
            .commits
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if self.shared.failure().is_some() {
            self.shared.set_failure(None);
        }
        self.recovery.committed();
        self.last_batch = results.len();
        if let (Some(feed), Some(stored)) = (&self.feed, stored) {
            if !stored.is_empty() {
                let _ = feed.send(stored);
            }
        }
        if let Some(observe) = &self.on_commit {
            if !results.is_empty() {
                observe(started.elapsed(), results.len());
            }
        }
        results.into_iter().for_each(|(a, r)| a.send(r));
    }

    /// Checks one op against the index and this batch, and encodes its record.
    #[allow(clippy::too_many_arguments)]
    fn apply(
        &mut self,
        index: &Index,
        overlay: &mut Overlay,
        buf: &mut Vec<u8>,
        changes: &mut Vec<Change>,
        now: u64,
        kind: Kind,
        stored: Option<&mut Vec<(Id, Request)>>,
    ) -> Result<Value> {
        let base = self.end;
        let seg = self.active;
        let at = |off: usize, len: usize| Loc {
            seg,
            off: base + off as u64,
            len: len as u32,
        };
        match kind {
            Kind::Put {
                request,
                encoded,
                key,
            } => {
                if let Some(key) = &key {
                    let known =
                        overlay.keys.get(key).copied().or_else(|| {
                            index.keyed(key).filter(|id| !overlay.removed.contains(id))
                        });
                    if let Some(id) = known {
                        return Ok(Value::Id(Id::from_u128(id)));
                    }
                }
                // Encoded here, straight into the commit's buffer (the log's writer has the
                // time; the broker thread, where the caller is, has not), unless the caller
                // did already.
                let mark = buf.len();
                let id = self.ids.next(now);
                let raw = id.as_u128();
                let (off, len) = Encoder { buf, seg }.request_with(raw, key.as_deref(), |out| {
                    if encoded.is_empty() {
                        encode_request_into(&request, out);
                    } else {
                        out.extend_from_slice(&encoded);
                    }
                });
                let size = len as u64;
                if self.live + size > self.limits.max_bytes {
                    buf.truncate(mark);
                    return Err(Error::StoreFull {
                        used: self.live,
                        limit: self.limits.max_bytes,
                        needed: size,
                    });
                }
                changes.push(Change::Request {
                    id: raw,
                    at: at(off, len),
                    // A copy: the caller's key may be a slice of a large network buffer, which
                    // the index would otherwise keep alive for as long as the request.
                    key: key.as_deref().map(Bytes::copy_from_slice),
                });
                self.live += size;
                overlay.added.insert(raw);
                if let Some(key) = key {
                    overlay.keys.insert(key, raw);
                }
                if let Some(stored) = stored {
                    stored.push((id, request));
                }
                Ok(Value::Id(id))
            }
            Kind::Complete { id, frames } => {
                let raw = id.as_u128();
                // Only a pending request takes a reply; the first reply wins.
                if !overlay.live(index, raw) || overlay.answered(index, raw) {
                    return Ok(Value::Unit);
                }
                let reply = Reply {
                    frames,
                    completed_millis: now,
                };
                let (off, len) =
                    Encoder { buf, seg }.reply_with(raw, |out| encode_reply_into(&reply, out));
                changes.push(Change::Reply {
                    id: raw,
                    at: at(off, len),
                });
                self.live += len as u64;
                overlay.replied.insert(raw, len as u64);
                Ok(Value::Unit)
            }
            Kind::Close { id } => {
                let raw = id.as_u128();
                if overlay.live(index, raw) {
                    Encoder { buf, seg }.close(raw);
                    changes.push(Change::Close { id: raw });
                    self.live = self.live.saturating_sub(self.bytes_of(index, overlay, raw));
                    overlay.removed.insert(raw);
                }
                Ok(Value::Unit)
            }
            Kind::Expire { older_than_millis } => {
                let below = Id::lowest_at(now.saturating_sub(older_than_millis)).as_u128();
                let mut gone: Vec<u128> = index
                    .entries
                    .range(..below)
                    .map(|(id, _)| *id)
                    .filter(|id| !overlay.removed.contains(id))
                    .collect();
                gone.extend(
                    overlay
                        .added
                        .iter()
                        .filter(|id| **id < below && !overlay.removed.contains(id)),
                );
                if !gone.is_empty() {
                    Encoder { buf, seg }.expire(below);
                    changes.push(Change::Expire { below });
                    for id in &gone {
                        self.live = self.live.saturating_sub(self.bytes_of(index, overlay, *id));
                        overlay.removed.insert(*id);
                    }
                }
                Ok(Value::Count(gone.len()))
            }
        }
    }

    /// The live bytes of `id` as of this batch.
    fn bytes_of(&self, index: &Index, overlay: &Overlay, id: u128) -> u64 {
        // A request stored in this batch and removed in it too (an expiry behind a clock
        // that stepped back) is not counted here; `live` is set from the index after each
        // commit, so that lasts one commit.
        let committed = index.entries.get(&id).map_or(0, |e| e.bytes());
        committed + overlay.replied.get(&id).copied().unwrap_or(0)
    }

    /// Moves up to [`MOVES_PER_COMMIT`] live entries out of the segment being compacted:
    /// their requests and replies are written again in this commit.
    fn compact(
        &mut self,
        index: &Index,
        overlay: &Overlay,
        buf: &mut Vec<u8>,
        changes: &mut Vec<Change>,
    ) -> Result<usize> {
        let Some(target) = self.compacting else {
            return Ok(0);
        };
        if index.segs.get(&target).is_none_or(|s| s.live == 0) {
            self.compacting = None;
            return Ok(0);
        }
        let (base, seg) = (self.end, self.active);
        let mut moved = 0;
        let mut next = None;
        for (scanned, (id, entry)) in index.entries.range(self.cursor..).enumerate() {
            if scanned == SCAN_PER_COMMIT || moved == MOVES_PER_COMMIT {
                next = Some(*id);
                break;
            }
            let in_target =
                entry.request.seg == target || entry.reply.is_some_and(|r| r.seg == target);
            if !in_target || overlay.removed.contains(id) {
                continue;
            }
            let file = |at: Loc| {
                index
                    .segs
                    .get(&at.seg)
                    .map(|s| s.file.clone())
                    .ok_or_else(|| Error::Unavailable("a segment is missing".into()))
            };
            let request = read_at(&*file(entry.request)?, entry.request)?;
            let off = Encoder { buf, seg }.request(*id, entry.key.as_deref(), &request);
            changes.push(Change::Request {
                id: *id,
                at: Loc {
                    seg,
                    off: base + off as u64,
                    len: entry.request.len,
                },
                key: entry.key.clone(),
            });
            if let Some(reply_at) = entry.reply {
                let reply = read_at(&*file(reply_at)?, reply_at)?;
                let off = Encoder { buf, seg }.reply(*id, &reply);
                changes.push(Change::Reply {
                    id: *id,
                    at: Loc {
                        seg,
                        off: base + off as u64,
                        len: reply_at.len,
                    },
                });
            }
            moved += 1;
        }
        match next {
            Some(id) => self.cursor = id,
            // A whole pass: what was in the segment has moved (or is moving now).
            None => {
                self.cursor = 0;
                self.compacting = None;
            }
        }
        Ok(moved)
    }

    /// Deletes the oldest segments while nothing in them is live, and picks the oldest for
    /// compaction when it is at most half live.
    pub(super) fn collect_segments(&mut self) {
        let mut deleted = false;
        loop {
            let oldest = {
                let index = self.shared.read();
                match index.segs.iter().next() {
                    Some((n, seg)) if *n != self.active && seg.live == 0 => *n,
                    Some((n, seg)) if *n != self.active && self.compacting.is_none() => {
                        if seg.live_bytes.saturating_mul(2) <= seg.size {
                            self.compacting = Some(*n);
                            self.cursor = 0;
                        }
                        break;
                    }
                    _ => break,
                }
            };
            self.shared.write().segs.remove(&oldest);
            if self.compacting == Some(oldest) {
                self.compacting = None;
            }
            let path = self.dir.join(segment_name(oldest));
            match std::fs::remove_file(&path) {
                Ok(()) => deleted = true,
                Err(e) => tracing::warn!(segment = %path.display(), error = %e,
                    "Titanic log: cannot delete a segment with nothing live in it"),
            }
        }
        if deleted {
            // Deletions in order: a later segment's close never outlives its request.
            if let Err(e) = sync_dir(&self.dir) {
                tracing::warn!(error = %e, "Titanic log: cannot sync its directory");
            }
        }
    }

    /// Starts the next segment.
    fn rotate(&mut self) -> Result<()> {
        let next = self.active + 1;
        let ready = {
            let mut p = self.prepared.lock_unpoisoned();
            // Made ahead, or (the preparer is late) made here: then it no longer may.
            p.wanted = None;
            p.ready.take().filter(|(n, _)| *n == next)
        };
        let (file, size) = match ready {
            Some((_, file)) => (file, super::format::HEADER_LEN as u64),
            None => {
                let (file, size) = create_segment(&self.dir, next)?;
                (Arc::new(file), size)
            }
        };
        self.prepared.lock_unpoisoned().wanted = Some(next + 1);
        // A preparer that is gone only leaves the segments to the writer to make.
        let _ = self.prepare.send(());
        self.shared.write().segs.insert(
            next,
            Seg {
                file: file.clone(),
                size,
                live: 0,
                live_bytes: 0,
            },
        );
        self.active = next;
        self.file = file;
        self.end = size;
        self.collect_segments();
        Ok(())
    }

    /// Writes a commit's records at the end of the newest segment and returns once they are
    /// durable: one direct, synchronous write where the file system takes them, else one
    /// `pwrite` and one `fdatasync`.
    fn write_durably(&mut self, records: &[u8]) -> std::io::Result<()> {
        if !self.buffered {
            if self.direct.as_ref().is_none_or(|d| d.seg() != self.active) {
                self.direct = None;
                let path = self.dir.join(segment_name(self.active));
                match DirectFile::open(&path, self.active, self.end, &self.file) {
                    Ok(direct) => self.direct = Some(direct),
                    Err(e) if direct::refused(&e) => self.refuse_direct(&e),
                    // This commit goes through the page cache; the next one tries again.
                    Err(e) => tracing::debug!(error = %e, "Titanic log: cannot open a segment \
                        for direct writes"),
                }
            }
            if let Some(direct) = self.direct.as_mut() {
                match direct.append(records, self.end) {
                    Err(e) if direct::refused(&e) => self.refuse_direct(&e),
                    done => return done,
                }
            }
        }
        self.file.write_all_at(records, self.end)?;
        self.file.sync_data()
    }

    /// Goes back to buffered writes for good: the file system does not take direct ones.
    fn refuse_direct(&mut self, e: &std::io::Error) {
        tracing::info!(error = %e, dir = %self.dir.display(),
            "Titanic log: the file system refuses direct I/O; commits use pwrite and fdatasync");
        self.direct = None;
        self.buffered = true;
    }

    fn failed(&mut self, results: Vec<(Answer, Result<Value>)>, e: Error) {
        if e.is_write_failure() {
            let delay = self.recovery.failed(Instant::now());
            tracing::warn!(error = %e, batch = results.len(), ?delay,
                "Titanic log commit failed; refusing writes until the log is repaired");
            self.shared.set_failure(Some(e.duplicate()));
        } else {
            tracing::warn!(error = %e, batch = results.len(), "Titanic log commit failed");
        }
        fail_all(results.into_iter(), &e);
    }

    /// Cuts the newest segment back to its last durable length (dropping the failed write)
    /// and syncs it; the store takes writes again once that works.
    fn repair(&mut self) {
        let cut = self
            .file
            .set_len(self.end)
            .and_then(|()| self.file.sync_all());
        match cut {
            Ok(()) => {
                self.recovery.reopened();
                self.shared.set_failure(None);
                // The redb store's words for the same event, so that operators watch one line.
                tracing::info!(
                    "Titanic store reopened after a failed write (the log cut back to its last \
                     commit); taking writes again"
                );
                if let Some(observe) = &self.on_reopen {
                    observe();
                }
            }
            Err(e) => {
                let e = Error::from_write_io(e);
                let delay = self.recovery.failed(Instant::now());
                tracing::warn!(error = %e, ?delay, "Titanic store still refuses writes; retrying");
                self.shared.set_failure(Some(e));
            }
        }
    }
}
