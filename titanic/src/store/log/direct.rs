//! Commits written with `O_DIRECT | O_DSYNC`, where the file system takes them.
//!
//! A commit is then one `pwrite` that returns once its bytes are durable: no copy into the
//! page cache, no writeback of dirty pages by `fdatasync`, one cache flush by the kernel (or
//! a FUA write where the disk has it). Over blocks already written (the log's segments are
//! made ahead full of zeros) the file system has no metadata to journal, so that is all a
//! commit costs. Measured on this project's 2-vCPU VM (ext4, virtio, a volatile write
//! cache): 70-85 us per 88 KB commit against 85-120 us for `pwrite` + `fdatasync`, and less
//! under load, where the buffered path also waits for the writeback (BENCHMARKS.md).
//!
//! Direct writes must start and end on block boundaries, from aligned memory. So each
//! commit writes again the segment's last partial block (kept here, the bytes up to the
//! durable end), then its records, padded with zeros to a whole block: the padding lands on
//! the zeros a segment is made of, which a reader takes for its end. The bytes of the
//! partial block that were already durable are written unchanged, as the page cache's
//! writeback of that page would write them.
//!
//! Reads stay buffered (`pread` through the page cache). A direct write drops the cached pages
//! of its range once it completes, before the call returns (a clean page a reader brought in
//! meanwhile included), and the index sends readers to a commit's records only after that;
//! the earlier bytes of the partial block are written unchanged, so a reader of an earlier
//! record sees the same bytes either way.
//!
//! A file system that refuses direct I/O (`EINVAL` when the file is opened or at the first
//! write) makes the log go back to `pwrite` + `fdatasync` for good, which it logs once.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

/// The alignment of a direct write's offset, length and memory: a page, a multiple of the
/// logical block sizes disks have (512 or 4096 bytes). A device that wants more refuses the
/// write with `EINVAL`, and the log goes back to buffered writes.
pub(super) const ALIGN: usize = 4096;

/// A segment opened for direct, synchronous writes at its end.
pub(super) struct DirectFile {
    seg: u64,
    file: File,
    /// The segment's last partial block, up to its durable end: written again in front of
    /// the next commit's records. Its length is the end's offset in its block.
    tail: Vec<u8>,
    /// Room for one commit's aligned copy.
    mem: Vec<u8>,
}

impl DirectFile {
    /// Opens segment `seg` at `path`, durable up to `end`, for direct writes; `buffered` is
    /// the same file opened as usual, to read its partial last block once.
    pub(super) fn open(path: &Path, seg: u64, end: u64, buffered: &File) -> std::io::Result<Self> {
        let file = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT | libc::O_DSYNC)
            .open(path)?;
        let partial = end % ALIGN as u64;
        let mut tail = vec![0; partial as usize];
        buffered.read_exact_at(&mut tail, end - partial)?;
        Ok(Self {
            seg,
            file,
            tail,
            mem: Vec::new(),
        })
    }

    /// The segment this file is.
    pub(super) fn seg(&self) -> u64 {
        self.seg
    }

    /// Writes `records` at `end`, the segment's durable length, and returns once they are
    /// durable: the partial last block, then the records, padded with zeros to a whole block,
    /// in one write. After an error nothing changes here: the next attempt writes the same
    /// partial block again.
    pub(super) fn append(&mut self, records: &[u8], end: u64) -> std::io::Result<()> {
        debug_assert_eq!(end % ALIGN as u64, self.tail.len() as u64);
        let start = end - self.tail.len() as u64;
        let used = self.tail.len() + records.len();
        let len = used.div_ceil(ALIGN) * ALIGN;
        if self.mem.len() < len + ALIGN {
            self.mem.resize(len + ALIGN, 0);
        }
        let skip = self.mem.as_ptr().align_offset(ALIGN);
        let out = &mut self.mem[skip..skip + len];
        out[..self.tail.len()].copy_from_slice(&self.tail);
        out[self.tail.len()..used].copy_from_slice(records);
        out[used..].fill(0);
        self.file.write_all_at(out, start)?;
        let whole = used - used % ALIGN;
        self.tail.clear();
        self.tail.extend_from_slice(&out[whole..used]);
        Ok(())
    }
}

/// Zeros for the files of segments made ahead, written directly where the file system
/// takes it.
pub(super) struct Zeros {
    mem: Vec<u8>,
    chunk: usize,
    /// The file system refused direct I/O: zeros through the page cache.
    buffered: bool,
}

impl Zeros {
    /// Zeros written `chunk` bytes (a multiple of [`ALIGN`]) at a time.
    pub(super) fn new(chunk: usize) -> Self {
        let chunk = chunk.div_ceil(ALIGN).max(1) * ALIGN;
        Self {
            mem: vec![0; chunk + ALIGN],
            chunk,
            buffered: false,
        }
    }

    /// Fills `file` (at `path`, opened as usual) with zeros up to at least `size` bytes
    /// (whole blocks), a chunk at a time, each synced before the next.
    pub(super) fn fill(&mut self, file: &File, path: &Path, size: u64) -> std::io::Result<()> {
        if !self.buffered {
            let direct = OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_DIRECT)
                .open(path)
                .and_then(|direct| self.write(&direct, size));
            match direct {
                Err(e) if refused(&e) => self.buffered = true,
                done => return done,
            }
        }
        self.write(file, size)
    }

    fn write(&self, file: &File, size: u64) -> std::io::Result<()> {
        let skip = self.mem.as_ptr().align_offset(ALIGN);
        let zeros = &self.mem[skip..skip + self.chunk];
        let mut at = 0;
        while at < size {
            let n = ((size - at) as usize).min(self.chunk).div_ceil(ALIGN) * ALIGN;
            file.write_all_at(&zeros[..n], at)?;
            file.sync_data()?;
            at += n as u64;
        }
        Ok(())
    }
}

/// Whether an error says the file system does not take direct I/O (as opposed to a failed
/// write).
pub(super) fn refused(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::EINVAL)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(dir: &Path, bytes: &[u8]) -> (std::path::PathBuf, File) {
        let path = dir.join("seg");
        std::fs::write(&path, bytes).unwrap();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        (path, file)
    }

    /// Appends of every size around a block, from a partial first block, leave the file
    /// holding exactly what was appended, then zeros to a block boundary.
    #[test]
    fn appends_leave_the_records_in_order_and_zeros_after_them() {
        let dir = tempfile::tempdir().unwrap();
        let header = b"HEADER-0123456789".to_vec();
        let (path, buffered) = segment(dir.path(), &header);
        let mut direct = match DirectFile::open(&path, 7, header.len() as u64, &buffered) {
            Ok(d) => d,
            // A file system without direct I/O (the log then writes as before).
            Err(e) if refused(&e) => return,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(direct.seg(), 7);
        let mut expected = header;
        let sizes = [1, 4095, 4096, 4097, 10, 8192 + 3, 0, ALIGN - 1, 100_000];
        for (i, size) in sizes.into_iter().enumerate() {
            let records: Vec<u8> = (0..size).map(|b| (b * 7 + i) as u8 | 1).collect();
            match direct.append(&records, expected.len() as u64) {
                Ok(()) => {}
                Err(e) if refused(&e) => return,
                Err(e) => panic!("{e}"),
            }
            expected.extend_from_slice(&records);
            let on_disk = std::fs::read(&path).unwrap();
            assert_eq!(on_disk.len() % ALIGN, 0, "after append {i}");
            assert_eq!(on_disk[..expected.len()], expected[..], "after append {i}");
            assert!(on_disk[expected.len()..].iter().all(|b| *b == 0));
        }
    }

    /// A file made ahead is zeros over whatever it held, to the whole block past its size.
    #[test]
    fn zeros_fill_a_file_to_whole_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let (path, file) = segment(dir.path(), &[0xaa; 30_000]);
        let mut zeros = Zeros::new(8192);
        zeros.fill(&file, &path, 20_000).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 30_000, "the file keeps its size");
        assert!(bytes[..20_480].iter().all(|b| *b == 0));
        assert!(bytes[20_480..].iter().all(|b| *b == 0xaa));
    }

    /// A partial block already on the disk (a restart in the middle of a segment) is read
    /// once and kept: the next append writes it again unchanged.
    #[test]
    fn a_restart_in_the_middle_of_a_block_keeps_what_was_there() {
        let dir = tempfile::tempdir().unwrap();
        let mut before = vec![0u8; 3 * ALIGN];
        before[..ALIGN + 700]
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = (i % 251) as u8 + 1);
        let (path, buffered) = segment(dir.path(), &before);
        let end = (ALIGN + 700) as u64;
        let mut direct = match DirectFile::open(&path, 1, end, &buffered) {
            Ok(d) => d,
            Err(e) if refused(&e) => return,
            Err(e) => panic!("{e}"),
        };
        match direct.append(b"next", end) {
            Ok(()) => {}
            Err(e) if refused(&e) => return,
            Err(e) => panic!("{e}"),
        }
        let after = std::fs::read(&path).unwrap();
        assert_eq!(after.len(), 3 * ALIGN);
        assert_eq!(after[..end as usize], before[..end as usize]);
        assert_eq!(&after[end as usize..end as usize + 4], b"next");
        assert!(after[end as usize + 4..].iter().all(|b| *b == 0));
    }
}
