//! Records larger than a page, stored as page-sized parts.
//!
//! redb keeps a value inside its B-tree leaf, and a leaf is one page (4 KiB) or a power of two
//! of pages. A record just over 4 KiB (a 4 KiB body with its framing) gets an 8 KiB page to
//! itself, so every such request wrote 8 KiB and more to the disk. So a record of [`PART`]
//! bytes or more is cut: its first `n * PART` bytes go to a parts table as `n` parts of
//! [`PART`] bytes, keyed `(id, i)`, each filling one 4 KiB leaf on its own, and the rest (the
//! *tail*) stays in the record's own table behind a small header, where it shares a page with
//! other records. A 4 KiB request then costs about 4 KiB on the disk.
//!
//! A split record's value in its table: `[0xFF][total length, u32 LE][parts, u32 LE][tail]`.
//! A whole record starts with its layout's postcard variant index (`0x00` for V1; indexes stay
//! below `0x80`), so the two never mix up.

use std::borrow::Cow;

use redb::{ReadableTable, StorageError, Table, TableDefinition};

use super::map_err;
use crate::error::Error;

/// The size of one part: one part and its key fill one 4 KiB leaf. Smaller records stay whole
/// in their table.
pub(super) const PART: usize = 4000;
/// The first byte of a split record's value.
const SPLIT: u8 = 0xff;
/// Header: marker, total length, number of parts.
const HEADER: usize = 9;

/// A parts table: (record id, part number) -> [`PART`] bytes.
pub(super) type PartsTable = TableDefinition<'static, (u128, u32), &'static [u8]>;
/// The parts of large requests.
pub(crate) const REQUEST_PARTS: PartsTable = TableDefinition::new("request_parts");
/// The parts of large replies.
pub(crate) const REPLY_PARTS: PartsTable = TableDefinition::new("reply_parts");

/// Why a stored record cannot be read back.
#[derive(Debug)]
pub(super) enum ReadError {
    Storage(StorageError),
    /// A split header without its parts, or parts of the wrong size.
    Damaged(&'static str),
}

impl From<StorageError> for ReadError {
    fn from(e: StorageError) -> Self {
        Self::Storage(e)
    }
}

/// Whether `encoded` is kept in parts (so its parts table is needed to store it).
pub(super) fn needs_parts(encoded: &[u8]) -> bool {
    encoded.len() >= PART
}

/// Stores `encoded` under `key` in `records`, split as the module docs say when large
/// (`parts` is only used then).
pub(super) fn insert<'p, 'txn: 'p>(
    records: &mut Table<'_, u128, &'static [u8]>,
    parts: impl FnOnce() -> Result<&'p mut Table<'txn, (u128, u32), &'static [u8]>, Error>,
    key: u128,
    encoded: &[u8],
) -> Result<(), Error> {
    if !needs_parts(encoded) {
        records.insert(key, encoded).map_err(map_err)?;
        return Ok(());
    }
    let parts = parts()?;
    let n = encoded.len() / PART;
    for (i, part) in encoded[..n * PART].chunks(PART).enumerate() {
        parts.insert((key, i as u32), part).map_err(map_err)?;
    }
    let tail = &encoded[n * PART..];
    let mut head = Vec::with_capacity(HEADER + tail.len());
    head.push(SPLIT);
    head.extend_from_slice(&(encoded.len() as u32).to_le_bytes());
    head.extend_from_slice(&(n as u32).to_le_bytes());
    head.extend_from_slice(tail);
    records.insert(key, head.as_slice()).map_err(map_err)?;
    Ok(())
}

/// The encoded length a stored value stands for (the whole record's, for a split one).
pub(super) fn stored_len(value: &[u8]) -> u64 {
    match split_header(value) {
        Some((total, _)) => u64::from(total),
        None => value.len() as u64,
    }
}

/// Removes the record under `key` and its parts (`parts` is only used for a split one);
/// returns its encoded length, if it was there.
pub(super) fn remove<'p, 'txn: 'p>(
    records: &mut Table<'_, u128, &'static [u8]>,
    parts: impl FnOnce() -> Result<&'p mut Table<'txn, (u128, u32), &'static [u8]>, Error>,
    key: u128,
) -> Result<Option<u64>, Error> {
    let (len, n) = match records.remove(key).map_err(map_err)? {
        None => return Ok(None),
        Some(v) => {
            let value = v.value();
            (stored_len(value), split_header(value).map_or(0, |(_, n)| n))
        }
    };
    if n > 0 {
        let parts = parts()?;
        for i in 0..n {
            parts.remove((key, i)).map_err(map_err)?;
        }
    }
    Ok(Some(len))
}

/// Whether a stored value is the head of a split record (its parts must be read too).
pub(super) fn is_split(value: &[u8]) -> bool {
    split_header(value).is_some()
}

/// The whole encoded record from the value stored under `key`, reading its parts from
/// `parts` if it is split.
pub(super) fn read<'a>(
    value: &'a [u8],
    parts: &dyn PartsReader,
    key: u128,
) -> Result<Cow<'a, [u8]>, ReadError> {
    let Some((total, n)) = split_header(value) else {
        return Ok(Cow::Borrowed(value));
    };
    let mut whole = Vec::with_capacity(total as usize);
    for i in 0..n {
        let part = parts
            .part(key, i)?
            .ok_or(ReadError::Damaged("a part of a split record is missing"))?;
        if part.len() != PART {
            return Err(ReadError::Damaged(
                "a part of a split record has the wrong size",
            ));
        }
        whole.extend_from_slice(&part);
    }
    whole.extend_from_slice(&value[HEADER..]);
    if whole.len() != total as usize {
        return Err(ReadError::Damaged("a split record has the wrong length"));
    }
    Ok(Cow::Owned(whole))
}

/// Reads parts from a read or write transaction's parts table.
pub(super) trait PartsReader {
    fn part(&self, key: u128, i: u32) -> Result<Option<Vec<u8>>, StorageError>;
}

impl<T: ReadableTable<(u128, u32), &'static [u8]>> PartsReader for T {
    fn part(&self, key: u128, i: u32) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.get((key, i))?.map(|v| v.value().to_vec()))
    }
}

/// `(total length, number of parts)` of a split record's value.
fn split_header(value: &[u8]) -> Option<(u32, u32)> {
    if value.len() < HEADER || value[0] != SPLIT {
        return None;
    }
    let total = u32::from_le_bytes(value[1..5].try_into().ok()?);
    let n = u32::from_le_bytes(value[5..9].try_into().ok()?);
    Some((total, n))
}
