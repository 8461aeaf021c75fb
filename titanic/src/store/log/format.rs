//! The bytes of a log segment: pure encoding and decoding, no I/O.
//!
//! A segment is a header and then records, back to back:
//!
//! ```text
//! header:  "DOMOTLOG" (8 bytes) | version u32 LE | 4 zero bytes           (16 bytes)
//! record:  length u32 LE | crc32c u32 LE | payload (length bytes)
//! payload: kind u8 | id u128 BE | body
//!   kind 1, a request: key length u8 (0: no key) | key | the encoded request
//!   kind 2, a reply:   the encoded reply
//!   kind 3, a close:   nothing
//!   kind 4, an expiry: nothing (every request whose id is below `id` is gone)
//! ```
//!
//! The checksum covers the segment's number (8 bytes LE) and then the payload, so a record
//! left in a recycled file from its earlier life never passes for one of the segment it is
//! now. A record is whole when its length fits in what is left of the file and its checksum
//! matches; the first record that is not ends the segment (a write torn by a crash, never
//! acknowledged, in the newest segment). Zeros to the end of the file also end it cleanly:
//! segment files are written full of zeros before they are used (so that a commit's
//! `fdatasync` does not also change the file's size).

/// The first bytes of every segment.
pub(super) const MAGIC: &[u8; 8] = b"DOMOTLOG";
/// The segment format this version writes and reads.
pub(super) const VERSION: u32 = 1;
/// Bytes of the segment header.
pub(super) const HEADER_LEN: usize = 16;
/// Bytes before a record's payload.
pub(super) const RECORD_HEADER_LEN: usize = 8;
/// Bytes of a payload before its body (kind and id).
const PAYLOAD_PREFIX: usize = 17;
/// The largest payload a record may have (a request is at most a few MiB; this bounds what
/// a damaged length makes the reader allocate).
pub(super) const MAX_PAYLOAD: usize = 256 << 20;

const REQUEST: u8 = 1;
const REPLY: u8 = 2;
const CLOSE: u8 = 3;
const EXPIRE: u8 = 4;

/// The header of a new segment.
pub(super) fn header() -> [u8; HEADER_LEN] {
    let mut h = [0; HEADER_LEN];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h
}

/// Checks a segment's header.
pub(super) fn check_header(bytes: &[u8]) -> Result<(), String> {
    if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC {
        return Err("not a Titanic log segment (bad magic)".into());
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version != VERSION {
        return Err(format!(
            "segment format {version}, this version reads {VERSION}"
        ));
    }
    Ok(())
}

/// One record, borrowed from the bytes it was decoded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Record<'a> {
    /// A request stored (or moved by compaction) with its encoded bytes.
    Request {
        id: u128,
        key: Option<&'a [u8]>,
        encoded: &'a [u8],
    },
    /// The reply of `id`, encoded.
    Reply { id: u128, encoded: &'a [u8] },
    /// `id` and its reply are gone.
    Close { id: u128 },
    /// Every request with an id below `below` is gone.
    Expire { below: u128 },
}

/// The checksum of a payload in segment `seg`.
pub(super) fn checksum(seg: u64, payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&seg.to_le_bytes()), payload)
}

/// Appends records of segment `seg` to a buffer and says where each body lands.
pub(super) struct Encoder<'b> {
    pub(super) buf: &'b mut Vec<u8>,
    pub(super) seg: u64,
}

impl Encoder<'_> {
    /// Appends a request; returns the offset of its encoded bytes in the buffer.
    pub(super) fn request(&mut self, id: u128, key: Option<&[u8]>, encoded: &[u8]) -> usize {
        let key = key.unwrap_or_default();
        debug_assert!(key.len() <= usize::from(u8::MAX));
        let key_len = key.len().min(usize::from(u8::MAX));
        let key = &key[..key_len];
        self.record(REQUEST, id, &[&[key_len as u8], key, encoded]) + 1 + key_len
    }

    /// Appends a reply; returns the offset of its encoded bytes in the buffer.
    pub(super) fn reply(&mut self, id: u128, encoded: &[u8]) -> usize {
        self.record(REPLY, id, &[encoded])
    }

    pub(super) fn close(&mut self, id: u128) {
        self.record(CLOSE, id, &[]);
    }

    pub(super) fn expire(&mut self, below: u128) {
        self.record(EXPIRE, below, &[]);
    }

    /// Appends a request whose encoded bytes `write` appends; returns where they are in the
    /// buffer and their length.
    pub(super) fn request_with(
        &mut self,
        id: u128,
        key: Option<&[u8]>,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> (usize, usize) {
        let key = key.unwrap_or_default();
        let key_len = key.len().min(usize::from(u8::MAX));
        let key = &key[..key_len];
        let mut at = 0;
        self.record_with(REQUEST, id, |buf| {
            buf.push(key_len as u8);
            buf.extend_from_slice(key);
            at = buf.len();
            write(buf);
        });
        (at, self.buf.len() - at)
    }

    /// Appends a reply whose encoded bytes `write` appends; returns where they are and
    /// their length.
    pub(super) fn reply_with(
        &mut self,
        id: u128,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> (usize, usize) {
        let body = self.record_with(REPLY, id, write);
        (body, self.buf.len() - body)
    }

    /// Appends one record; returns the offset of its body in the buffer.
    fn record(&mut self, kind: u8, id: u128, body: &[&[u8]]) -> usize {
        self.record_with(kind, id, |buf| {
            for part in body {
                buf.extend_from_slice(part);
            }
        })
    }

    /// Appends one record whose body `write` appends; returns the offset of its body.
    fn record_with(&mut self, kind: u8, id: u128, write: impl FnOnce(&mut Vec<u8>)) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; RECORD_HEADER_LEN]);
        self.buf.push(kind);
        self.buf.extend_from_slice(&id.to_be_bytes());
        write(self.buf);
        let payload = start + RECORD_HEADER_LEN;
        let len = self.buf.len() - payload;
        let crc = checksum(self.seg, &self.buf[payload..]);
        self.buf[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
        self.buf[start + 4..payload].copy_from_slice(&crc.to_le_bytes());
        payload + PAYLOAD_PREFIX
    }
}

/// What [`next`] found at an offset.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Next<'a> {
    /// A whole record; the next one starts at `end`. `body` is the offset of the record's
    /// body (a request's or a reply's encoded bytes follow at `body` plus, for a request,
    /// one byte and the key).
    Record {
        record: Record<'a>,
        body: usize,
        end: usize,
    },
    /// Nothing more: the bytes end here.
    End,
    /// The bytes from here are not a whole record (a torn write, or damage).
    Torn(&'static str),
}

/// Decodes the record at `at` in the bytes of segment `seg`.
pub(super) fn next(bytes: &[u8], seg: u64, at: usize) -> Next<'_> {
    let rest = &bytes[at.min(bytes.len())..];
    if rest.is_empty() {
        return Next::End;
    }
    if rest.len() < RECORD_HEADER_LEN {
        // Zeros shorter than a header: the end of a segment whose last commit was written
        // directly, padded with zeros to a block boundary.
        if rest.iter().all(|b| *b == 0) {
            return Next::End;
        }
        return Next::Torn("a record header cut short");
    }
    let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
    if len == 0 && crc == 0 && rest.iter().all(|b| *b == 0) {
        // Zeros to the end: the file's unused, zero-filled space.
        return Next::End;
    }
    if !(PAYLOAD_PREFIX..=MAX_PAYLOAD).contains(&len) {
        return Next::Torn("a record length out of range");
    }
    let Some(payload) = rest.get(RECORD_HEADER_LEN..RECORD_HEADER_LEN + len) else {
        return Next::Torn("a record cut short");
    };
    if checksum(seg, payload) != crc {
        return Next::Torn("a record whose checksum does not match");
    }
    let kind = payload[0];
    let mut id = [0; 16];
    id.copy_from_slice(&payload[1..PAYLOAD_PREFIX]);
    let id = u128::from_be_bytes(id);
    let body = &payload[PAYLOAD_PREFIX..];
    let body_at = at + RECORD_HEADER_LEN + PAYLOAD_PREFIX;
    let end = at + RECORD_HEADER_LEN + len;
    let record = match kind {
        REQUEST => {
            let Some((&key_len, rest)) = body.split_first() else {
                return Next::Torn("a request record without its key length");
            };
            let key_len = usize::from(key_len);
            if rest.len() < key_len {
                return Next::Torn("a request record shorter than its key");
            }
            let (key, encoded) = rest.split_at(key_len);
            Record::Request {
                id,
                key: (key_len > 0).then_some(key),
                encoded,
            }
        }
        REPLY => Record::Reply { id, encoded: body },
        CLOSE => Record::Close { id },
        EXPIRE => Record::Expire { below: id },
        _ => return Next::Torn("a record of an unknown kind"),
    };
    Next::Record {
        record,
        body: body_at,
        end,
    }
}

/// The offset of a request's encoded bytes, given its record's body offset and key.
pub(super) fn request_bytes_at(body: usize, key: Option<&[u8]>) -> usize {
    body + 1 + key.map_or(0, <[u8]>::len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(bytes: &[u8]) -> (Vec<Record<'_>>, Next<'_>) {
        let mut at = 0;
        let mut out = Vec::new();
        loop {
            match next(bytes, 3, at) {
                Next::Record { record, end, .. } => {
                    out.push(record);
                    at = end;
                }
                other => return (out, other),
            }
        }
    }

    #[test]
    fn records_round_trip_and_say_where_their_bodies_are() {
        let mut buf = Vec::new();
        let mut e = Encoder {
            buf: &mut buf,
            seg: 3,
        };
        let r1 = e.request(7, Some(b"key-1"), b"request bytes");
        let r2 = e.request(8, None, b"");
        let p1 = e.reply(7, b"reply bytes");
        e.close(8);
        e.expire(5);
        assert_eq!(&buf[r1..r1 + 13], b"request bytes");
        assert_eq!(&buf[p1..p1 + 11], b"reply bytes");
        let (records, end) = all(&buf);
        assert_eq!(end, Next::End);
        assert_eq!(
            records,
            vec![
                Record::Request {
                    id: 7,
                    key: Some(b"key-1"),
                    encoded: b"request bytes"
                },
                Record::Request {
                    id: 8,
                    key: None,
                    encoded: b""
                },
                Record::Reply {
                    id: 7,
                    encoded: b"reply bytes"
                },
                Record::Close { id: 8 },
                Record::Expire { below: 5 },
            ]
        );
        let Next::Record { body, .. } = next(&buf, 3, 0) else {
            panic!()
        };
        assert_eq!(request_bytes_at(body, Some(b"key-1")), r1);
        let _ = r2;
    }

    #[test]
    fn records_written_in_place_are_the_same_records() {
        let mut a = Vec::new();
        let mut e = Encoder {
            buf: &mut a,
            seg: 3,
        };
        e.request(7, Some(b"k"), b"request");
        e.reply(7, b"reply");
        let mut b = Vec::new();
        let mut e = Encoder {
            buf: &mut b,
            seg: 3,
        };
        let (at, len) = e.request_with(7, Some(b"k"), |buf| buf.extend_from_slice(b"request"));
        let (rat, rlen) = e.reply_with(7, |buf| buf.extend_from_slice(b"reply"));
        assert_eq!(a, b);
        assert_eq!(
            (&b[at..at + len], &b[rat..rat + rlen]),
            (&b"request"[..], &b"reply"[..])
        );
    }

    #[test]
    fn a_torn_or_damaged_tail_ends_the_records_before_it() {
        let mut buf = Vec::new();
        let mut e = Encoder {
            buf: &mut buf,
            seg: 3,
        };
        e.request(1, None, b"first");
        let whole = buf.len();
        let mut e = Encoder {
            buf: &mut buf,
            seg: 3,
        };
        e.request(2, None, b"second, torn");
        // Every cut inside the second record leaves exactly the first.
        for cut in whole + 1..buf.len() {
            let (records, end) = all(&buf[..cut]);
            assert_eq!(records.len(), 1, "cut at {cut}");
            assert!(matches!(end, Next::Torn(_)), "cut at {cut}: {end:?}");
        }
        // One flipped bit anywhere in the second record is caught.
        for at in whole..buf.len() {
            let mut damaged = buf.clone();
            damaged[at] ^= 0x10;
            let (records, end) = all(&damaged);
            assert_eq!(records.len(), 1, "flip at {at}");
            assert!(matches!(end, Next::Torn(_)), "flip at {at}");
        }
        // Zeros after the last record (a zero-filled file) end it cleanly.
        let mut zeroed = buf.clone();
        zeroed.extend_from_slice(&[0; 64]);
        let (records, end) = all(&zeroed);
        assert_eq!(records.len(), 2);
        assert_eq!(end, Next::End);
        // However few (a direct write's padding to a block boundary can leave 1 byte).
        for zeros in 1..=RECORD_HEADER_LEN {
            let mut padded = buf.clone();
            padded.extend(std::iter::repeat_n(0, zeros));
            let (records, end) = all(&padded);
            assert_eq!((records.len(), end), (2, Next::End), "{zeros} zeros");
        }
        // The same records read as another segment's (a recycled file) are not records.
        assert!(matches!(next(&buf, 4, 0), Next::Torn(_)));
    }

    #[test]
    fn headers_are_checked() {
        assert!(check_header(&header()).is_ok());
        let mut h = header();
        h[0] = b'X';
        assert!(check_header(&h).is_err());
        let mut h = header();
        h[8] = 9;
        assert!(check_header(&h).unwrap_err().contains("format 9"));
        assert!(check_header(&h[..4]).is_err());
    }
}
