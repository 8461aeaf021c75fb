use proptest::prelude::*;

use super::*;

fn encode(msg: Vec<Bytes>) -> Bytes {
    let mut enc = Encoder::new();
    enc.encode_message(msg);
    enc.take_all()
}

fn decode_all(bytes: &[u8], limits: Limits) -> Result<Vec<Decoded>, ProtocolError> {
    let mut dec = Decoder::new(limits);
    dec.feed(bytes);
    let mut out = Vec::new();
    while let Some(item) = dec.decode()? {
        out.push(item);
    }
    Ok(out)
}

fn msg(frames: &[&[u8]]) -> Vec<Bytes> {
    frames.iter().map(|f| Bytes::copy_from_slice(f)).collect()
}

#[test]
fn short_frame_has_two_byte_header() {
    assert_eq!(&encode(msg(&[b"hello"]))[..], b"\x00\x05hello");
}

#[test]
fn size_255_is_short_and_256_is_long() {
    let b255 = encode(vec![Bytes::from(vec![7u8; 255])]);
    assert_eq!(&b255[..2], &[0x00, 0xFF]);
    assert_eq!(b255.len(), 257);
    let b256 = encode(vec![Bytes::from(vec![7u8; 256])]);
    assert_eq!(&b256[..9], &[0x02, 0, 0, 0, 0, 0, 0, 1, 0]);
    assert_eq!(b256.len(), 265);
    for bytes in [b255, b256] {
        let decoded = decode_all(&bytes, Limits::default()).unwrap();
        assert_eq!(decoded.len(), 1);
    }
}

#[test]
fn multipart_sets_more_on_all_but_last() {
    let bytes = encode(msg(&[b"a", b"", b"c"]));
    assert_eq!(&bytes[..], b"\x01\x01a\x01\x00\x00\x01c");
    assert_eq!(
        decode_all(&bytes, Limits::default()).unwrap(),
        vec![Decoded::Message(msg(&[b"a", b"", b"c"]))]
    );
}

#[test]
fn empty_vec_is_one_empty_frame() {
    assert_eq!(&encode(Vec::new())[..], b"\x00\x00");
}

#[test]
fn long_multipart_round_trips() {
    let frames: Vec<Bytes> = (0..150)
        .map(|i| Bytes::from(vec![i as u8; i * 3]))
        .collect();
    let bytes = encode(frames.clone());
    assert_eq!(
        decode_all(&bytes, Limits::default()).unwrap(),
        vec![Decoded::Message(frames)]
    );
}

#[test]
fn large_frame_is_read_into_its_own_buffer() {
    let body = Bytes::from(vec![9u8; 3 * READ_CHUNK + 5]);
    let bytes = encode(vec![Bytes::from_static(b"x"), body.clone()]);
    let mut dec = Decoder::new(Limits::default());
    dec.feed(&bytes[..100]);
    assert_eq!(dec.decode().unwrap(), None);
    // The pending large frame's buffer is sized exactly: a read cannot run past it.
    assert_eq!(dec.read_buf().capacity(), body.len());
    dec.feed(&bytes[100..]);
    let Some(Decoded::Message(m)) = dec.decode().unwrap() else {
        panic!("no message")
    };
    assert_eq!(m, vec![Bytes::from_static(b"x"), body]);
}

#[test]
fn huge_announced_frame_is_refused_before_allocation() {
    // 2^40 bytes announced; no body follows.
    let mut dec = Decoder::new(Limits::default());
    dec.feed(&[FLAG_LONG, 0, 0, 1, 0, 0, 0, 0, 0]);
    assert!(matches!(
        dec.decode(),
        Err(ProtocolError::MessageTooLarge { size, .. }) if size == 1 << 40
    ));
    assert!(dec.read_buf().capacity() < 1 << 20);
}

#[test]
fn size_with_top_bit_set_is_refused() {
    let mut dec = Decoder::new(Limits {
        max_message_size: u64::MAX,
        max_frames: 10,
    });
    dec.feed(&[FLAG_LONG, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
    // Either refused as too large for this target or pending; never allocated.
    match dec.decode() {
        Err(ProtocolError::MessageTooLarge { .. }) => {}
        Ok(None) => assert!(dec.read_buf().capacity() < 1 << 20),
        other => panic!("{other:?}"),
    }
}

#[test]
fn message_limit_counts_all_frames() {
    let limits = Limits {
        max_message_size: 10,
        max_frames: 100,
    };
    let ok = encode(msg(&[b"12345", b"12345"]));
    assert!(decode_all(&ok, limits).is_ok());
    let over = encode(msg(&[b"12345", b"123456"]));
    assert_eq!(
        decode_all(&over, limits),
        Err(ProtocolError::MessageTooLarge { size: 11, max: 10 })
    );
}

#[test]
fn frame_count_limit() {
    let limits = Limits {
        max_message_size: 1000,
        max_frames: 3,
    };
    assert!(decode_all(&encode(msg(&[b"", b"", b""])), limits).is_ok());
    assert_eq!(
        decode_all(&encode(msg(&[b"", b"", b"", b""])), limits),
        Err(ProtocolError::TooManyFrames { max: 3 })
    );
}

#[test]
fn commands_decode_between_messages() {
    let mut enc = Encoder::new();
    enc.encode_message(msg(&[b"a"]));
    enc.encode_command(&Command::Ping {
        ttl: 0,
        context: Bytes::new(),
    });
    enc.encode_message(msg(&[b"b"]));
    let items = decode_all(&enc.take_all(), Limits::default()).unwrap();
    assert_eq!(items.len(), 3);
    assert!(matches!(items[1], Decoded::Command(Command::Ping { .. })));
}

#[test]
fn command_rules() {
    // MORE on a command
    assert_eq!(
        decode_all(b"\x05\x05\x04PING", Limits::default()),
        Err(ProtocolError::CommandWithMore)
    );
    // command inside a multipart message
    assert_eq!(
        decode_all(b"\x01\x01a\x04\x06\x04PING\x00\x00", Limits::default()),
        Err(ProtocolError::CommandInsideMessage)
    );
    // oversized command
    assert!(matches!(
        decode_all(&[0x06, 0, 0, 0, 0, 0, 1, 0, 1], Limits::default()),
        Err(ProtocolError::CommandTooLarge { .. })
    ));
}

#[test]
fn byte_at_a_time_equals_all_at_once() {
    let frames = msg(&[b"", b"MDPC01", b"echo", &[0u8; 300]]);
    let bytes = encode(frames.clone());
    let mut dec = Decoder::new(Limits::default());
    let mut got = None;
    for b in bytes.iter() {
        dec.feed(&[*b]);
        if let Some(item) = dec.decode().unwrap() {
            got = Some(item);
        }
    }
    assert_eq!(got, Some(Decoded::Message(frames)));
}

#[test]
fn large_bodies_are_not_copied_on_the_way_out() {
    let body = Bytes::from(vec![1u8; 10_000]);
    let mut enc = Encoder::new();
    enc.encode_message(vec![Bytes::from_static(b"id"), body.clone()]);
    let mut slices = [IoSlice::new(&[]); 8];
    let n = enc.slices(&mut slices);
    assert_eq!(n, 2);
    assert_eq!(slices[1].as_ptr(), body.as_ptr());
}

#[test]
fn advance_across_chunks() {
    let mut enc = Encoder::new();
    enc.encode_message(vec![
        Bytes::from(vec![1u8; 5000]),
        Bytes::from_static(b"tail"),
    ]);
    let total = enc.pending();
    assert_eq!(total, 9 + 5000 + 2 + 4);
    enc.advance(7);
    enc.advance(5000);
    assert_eq!(enc.pending(), total - 5007);
    let rest = enc.take_all();
    assert_eq!(&rest[..], b"\x01\x01\x00\x04tail");
}

/// Writes everything queued in `enc` as a socket would, at most `step` bytes per write, and
/// returns the bytes written.
fn write_out(enc: &mut Encoder, step: usize) -> Vec<u8> {
    let mut wire = Vec::new();
    while !enc.is_empty() {
        let mut slices = [IoSlice::new(&[]); 8];
        let n = enc.slices(&mut slices);
        let mut room = step;
        for s in &slices[..n] {
            let take = s.len().min(room);
            wire.extend_from_slice(&s[..take]);
            room -= take;
            if room == 0 {
                break;
            }
        }
        let written = step - room;
        enc.advance(written);
    }
    wire
}

/// Sends `msg` through an encoder (written in pieces of `step` bytes) and offers the written
/// chunks to `dec`, as the connection does. Returns the bytes that went on the wire.
fn send_and_recycle(dec: &mut Decoder, msg: Vec<Bytes>, step: usize) -> Vec<u8> {
    let mut enc = Encoder::new();
    enc.encode_message(msg);
    let wire = write_out(&mut enc, step);
    for chunk in enc.drain_written() {
        dec.recycle(chunk);
    }
    wire
}

/// Delivers `wire` as the connection reads it: each read at most `read` bytes and never more
/// than the room the decoder offers, decoding after each read. Returns the messages.
fn receive(dec: &mut Decoder, wire: &[u8], read: usize) -> Vec<Vec<Bytes>> {
    let mut got = Vec::new();
    let mut rest = wire;
    while !rest.is_empty() {
        let buf = dec.read_buf();
        let n = (buf.capacity() - buf.len()).min(read).min(rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        if let Some(large) = &dec.large {
            assert!(large.body.len() <= large.size, "read past the frame");
        }
        while let Some(item) = dec.decode().unwrap() {
            match item {
                Decoded::Message(m) => got.push(m),
                Decoded::Command(c) => panic!("unexpected {c:?}"),
            }
        }
    }
    got
}

fn large_body(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect::<Vec<u8>>()
        .into()
}

fn one_message(dec: &mut Decoder) -> Vec<Bytes> {
    match dec.decode().unwrap() {
        Some(Decoded::Message(m)) => m,
        other => panic!("expected a message, got {other:?}"),
    }
}

#[test]
fn partial_writes_keep_the_chunk_whole() {
    let body = large_body(4 * READ_CHUNK, 1);
    let mut enc = Encoder::new();
    enc.encode_message(vec![body.clone()]);
    let wire = write_out(&mut enc, 1000);
    assert_eq!(&wire[9..], &body[..]);
    let written: Vec<Bytes> = enc.drain_written().collect();
    assert_eq!(written.len(), 1, "only the body is longer than READ_CHUNK");
    assert_eq!(written[0].as_ptr(), body.as_ptr());
    assert_eq!(written[0].len(), body.len());
    assert_eq!(enc.drain_written().count(), 0);
}

#[test]
fn encoder_holds_a_bounded_number_of_written_chunks() {
    let mut enc = Encoder::new();
    for i in 0..MAX_SPARES + 5 {
        enc.encode_message(vec![large_body(READ_CHUNK + 1, i as u8)]);
    }
    write_out(&mut enc, usize::MAX);
    assert_eq!(enc.drain_written().count(), MAX_SPARES);
}

#[test]
fn recycled_buffer_is_reused_for_the_next_large_frame() {
    let size = 3 * READ_CHUNK + 5;
    let mut dec = Decoder::new(Limits::default());
    let first = receive(&mut dec, &encode(vec![large_body(size, 1)]), 9000)
        .pop()
        .unwrap()
        .pop()
        .unwrap();
    let ptr = first.as_ptr();
    // The received body goes back out, as an echo does, and is then unreferenced.
    let wire = send_and_recycle(&mut dec, vec![first], 777);
    assert_eq!(&wire[9..], &large_body(size, 1)[..]);
    assert_eq!(dec.spares(), 1);
    // The next frame of that size lands in the same memory, with its own content.
    let second = encode(vec![large_body(size, 2)]);
    dec.feed(&second[..100]);
    assert_eq!(dec.decode().unwrap(), None);
    assert_eq!(dec.spares(), 1, "taken only when the caller reads into it");
    assert_eq!(dec.read_buf().capacity(), size);
    assert_eq!(dec.spares(), 0);
    dec.feed(&second[100..]);
    let got = one_message(&mut dec);
    assert_eq!(got, vec![large_body(size, 2)]);
    assert_eq!(got[0].as_ptr(), ptr);
    assert_eq!(dec.decode().unwrap(), None);
}

#[test]
fn buffers_built_by_the_application_are_recycled_too() {
    let size = 100_000;
    let body = large_body(size, 3);
    let ptr = body.as_ptr();
    let mut dec = Decoder::new(Limits::default());
    send_and_recycle(&mut dec, vec![Bytes::from_static(b"id"), body], 4096);
    assert_eq!(dec.spares(), 1);
    let got = receive(&mut dec, &encode(vec![large_body(size, 4)]), 9000);
    assert_eq!(got, vec![vec![large_body(size, 4)]]);
    assert_eq!(got[0][0].as_ptr(), ptr);
}

#[test]
fn a_buffer_still_shared_is_not_recycled() {
    let size = 2 * READ_CHUNK;
    let mut dec = Decoder::new(Limits::default());
    // A clone, or a slice of a few bytes, kept elsewhere keeps the buffer from being reused.
    let body = large_body(size, 5);
    let clone = body.clone();
    send_and_recycle(&mut dec, vec![body], 1000);
    let body = large_body(size, 6);
    let slice = body.slice(10..20);
    send_and_recycle(&mut dec, vec![body], 1000);
    assert_eq!(dec.spares(), 0);
    for seed in [7, 8] {
        dec.feed(&encode(vec![large_body(size, seed)]));
        let got = one_message(&mut dec);
        assert_eq!(got, vec![large_body(size, seed)]);
        assert_ne!(got[0].as_ptr(), clone.as_ptr());
        assert_ne!(got[0].as_ptr(), slice.as_ptr().wrapping_sub(10));
    }
    assert_eq!(clone, large_body(size, 5));
    assert_eq!(slice, large_body(size, 6).slice(10..20));
    // Static and small buffers are never kept either.
    dec.recycle(Bytes::from_static(&[0u8; 2 * READ_CHUNK]));
    dec.recycle(large_body(READ_CHUNK, 7));
    assert_eq!(dec.spares(), 0);
}

#[test]
fn spares_that_do_not_fit_the_frame_are_not_used() {
    let cap = 100_000;
    let mut dec = Decoder::new(Limits::default());
    dec.recycle(large_body(cap, 8));
    assert_eq!(dec.spares(), 1);
    // Too small for the frame, then more than a quarter larger than it.
    for size in [cap + 1, cap * 4 / 5 - 1, READ_CHUNK + 1] {
        dec.feed(&encode(vec![large_body(size, 9)]));
        assert_eq!(one_message(&mut dec), vec![large_body(size, 9)]);
        assert_eq!(dec.spares(), 1, "size {size}");
    }
    // Within a quarter: used, and the read stops at the end of the frame.
    let size = cap * 4 / 5;
    let wire = encode(vec![large_body(size, 10)]);
    dec.feed(&wire[..50]);
    assert_eq!(dec.decode().unwrap(), None);
    assert_eq!(dec.spares(), 1, "taken only when the caller reads into it");
    assert_eq!(dec.read_buf().capacity(), size);
    assert_eq!(dec.spares(), 0);
    dec.feed(&wire[50..]);
    let got = one_message(&mut dec).pop().unwrap();
    assert_eq!(got, large_body(size, 10));
    // Recycled again, the buffer comes back with its whole capacity.
    dec.recycle(got);
    assert_eq!(dec.spares(), 1);
    assert_eq!(dec.spares[0].capacity(), cap);
}

#[test]
fn bytes_after_a_recycled_frame_are_intact() {
    let cap = 120_000;
    let size = 100_000;
    let msgs = vec![
        vec![large_body(size, 11)],
        vec![Bytes::from_static(b"small"), Bytes::from_static(b"")],
        vec![large_body(size, 12), large_body(300, 13)],
        vec![Bytes::from_static(b"tail")],
    ];
    let mut wire = Vec::new();
    for m in &msgs {
        wire.extend_from_slice(&encode(m.clone()));
    }
    for piece in [wire.len(), 65_537, 4093, 777, 1] {
        // Reads as the connection makes them: never more than the decoder offers room for.
        // While a frame is read into the 120 kB spare, that room ends with the frame.
        let mut dec = Decoder::new(Limits::default());
        dec.recycle(Bytes::from(vec![0xEEu8; cap]));
        let spare = dec.spares[0].as_ptr();
        let got = receive(&mut dec, &wire, piece);
        assert_eq!(got, msgs, "reads of {piece}");
        assert_eq!(got[0][0].as_ptr(), spare, "reads of {piece}");
        assert_eq!(dec.buffered(), 0);
        // Reads that do run past the frame (`feed` without decoding in between, or a
        // caller's own reads): the excess is given back to the read buffer.
        let mut dec = Decoder::new(Limits::default());
        dec.recycle(Bytes::from(vec![0xEEu8; cap]));
        let mut got = Vec::new();
        for bytes in wire.chunks(piece) {
            dec.feed(bytes);
            while let Some(Decoded::Message(m)) = dec.decode().unwrap() {
                got.push(m);
            }
        }
        assert_eq!(got, msgs, "feed of {piece}");
        assert_eq!(dec.buffered(), 0);
    }
}

#[test]
fn spares_are_bounded_in_number_and_bytes() {
    let mut dec = Decoder::new(Limits::default());
    let bodies: Vec<Bytes> = (0..MAX_SPARES + 3)
        .map(|i| large_body(READ_CHUNK + 1 + i, i as u8))
        .collect();
    let ptrs: Vec<*const u8> = bodies.iter().map(|b| b.as_ptr()).collect();
    for b in bodies {
        dec.recycle(b);
    }
    assert_eq!(dec.spares(), MAX_SPARES);
    // The oldest went first.
    let kept: Vec<*const u8> = dec.spares.iter().map(|b| b.as_ptr()).collect();
    assert_eq!(kept, ptrs[3..]);

    // Together at most one largest message; a buffer larger than that is never kept.
    let limits = Limits {
        max_message_size: 100_000,
        max_frames: 10,
    };
    let mut dec = Decoder::new(limits);
    for i in 0..3 {
        dec.recycle(large_body(40_000, i));
    }
    assert_eq!(dec.spares(), 2);
    assert_eq!(dec.spare_bytes, 80_000);
    dec.recycle(large_body(100_001, 0));
    assert_eq!(dec.spares(), 2);
    dec.recycle(large_body(100_000, 0));
    assert_eq!(dec.spares(), 1);
    assert_eq!(dec.spare_bytes, 100_000);
}

#[test]
fn a_short_view_of_a_large_buffer_counts_as_the_whole_buffer() {
    // A unique `Bytes` viewing the end of a larger allocation holds all of it.
    let tail = || {
        let mut tail = Bytes::from(vec![1u8; 200_000]);
        tail.advance(150_000);
        tail
    };
    let mut dec = Decoder::new(Limits {
        max_message_size: 100_000,
        max_frames: 10,
    });
    dec.recycle(tail());
    assert_eq!(dec.spares(), 0, "200 kB held, over the 100 kB limit");
    let mut dec = Decoder::new(Limits::default());
    dec.recycle(tail());
    assert_eq!(dec.spares(), 1);
    assert_eq!(dec.spares[0].capacity(), 200_000);
}

proptest! {
    #[test]
    fn round_trip(frames in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..600), 1..20),
                  split in 0usize..2000) {
        let msg: Vec<Bytes> = frames.into_iter().map(Bytes::from).collect();
        let bytes = encode(msg.clone());
        let split = split.min(bytes.len());
        let mut dec = Decoder::new(Limits::default());
        dec.feed(&bytes[..split]);
        let first = dec.decode().unwrap();
        dec.feed(&bytes[split..]);
        let item = match first { Some(item) => item, None => dec.decode().unwrap().unwrap() };
        prop_assert_eq!(item, Decoded::Message(msg));
        prop_assert_eq!(dec.decode().unwrap(), None);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        let limits = Limits { max_message_size: 1 << 16, max_frames: 64 };
        let mut dec = Decoder::new(limits);
        dec.feed(&bytes);
        for _ in 0..bytes.len() + 1 {
            match dec.decode() {
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        prop_assert!(dec.read_buf().capacity() <= (1 << 16) + 2 * READ_CHUNK);
    }

    /// Large frames of mixed sizes in one stream, each echoed back and its buffer recycled as
    /// it arrives, read in random pieces (as the connection reads, or with `feed`, which may
    /// run past a frame), with some received bodies kept by the application: every message
    /// arrives byte-identical, and a kept body is never overwritten by a later frame.
    #[test]
    fn recycling_round_trip(sizes in prop::collection::vec((READ_CHUNK - 10..3 * READ_CHUNK, any::<bool>()), 1..24),
                            piece in 1usize..70_000,
                            step in 1usize..70_000,
                            as_connection in any::<bool>()) {
        let sent: Vec<Vec<Bytes>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &(size, _))| vec![large_body(size, i as u8), Bytes::from(vec![i as u8; i])])
            .collect();
        let mut wire = Vec::new();
        for m in &sent {
            wire.extend_from_slice(&encode(m.clone()));
        }
        let mut dec = Decoder::new(Limits::default());
        let mut kept = Vec::new();
        let mut i = 0;
        let mut rest = &wire[..];
        while !rest.is_empty() {
            let n = if as_connection {
                let buf = dec.read_buf();
                let n = (buf.capacity() - buf.len()).min(piece).min(rest.len());
                buf.extend_from_slice(&rest[..n]);
                n
            } else {
                let n = piece.min(rest.len());
                dec.feed(&rest[..n]);
                n
            };
            rest = &rest[n..];
            while let Some(item) = dec.decode().unwrap() {
                let Decoded::Message(got) = item else { panic!("not a message") };
                prop_assert_eq!(&got, &sent[i]);
                if sizes[i].1 {
                    kept.push((got[0].clone(), i));
                }
                // Echo it: the body goes out, and comes back as a spare when nothing holds it.
                let echoed = send_and_recycle(&mut dec, got, step);
                prop_assert_eq!(&echoed[..], &encode(sent[i].clone())[..]);
                prop_assert!(dec.spares() <= MAX_SPARES);
                i += 1;
            }
        }
        prop_assert_eq!(i, sent.len());
        for (kept, i) in kept {
            prop_assert_eq!(&kept, &sent[i][0]);
        }
    }
}

#[test]
fn spares_of_all_decoders_share_one_budget() {
    static SMALL: SpareBudget = SpareBudget::new(250_000);
    let mut a = Decoder::new(Limits::default());
    let mut b = Decoder::new(Limits::default());
    a.budget = &SMALL;
    b.budget = &SMALL;
    a.recycle(large_body(100_000, 1));
    a.recycle(large_body(100_000, 2));
    b.recycle(large_body(100_000, 3));
    assert_eq!(
        (a.spares(), b.spares()),
        (2, 0),
        "the third is over the budget"
    );
    assert_eq!(SMALL.used(), 200_000);
    // A spare taken for a frame, evicted, or dropped with its decoder gives its bytes back.
    let wire = encode(vec![large_body(90_000, 4)]);
    a.feed(&wire[..1000]);
    assert!(
        matches!(a.decode(), Ok(None)),
        "the frame's body is not all there"
    );
    a.read_buf();
    assert_eq!((a.spares(), SMALL.used()), (1, 100_000));
    a.feed(&wire[1000..]);
    assert!(matches!(a.decode(), Ok(Some(Decoded::Message(_)))));
    b.recycle(large_body(100_000, 5));
    assert_eq!((b.spares(), SMALL.used()), (1, 200_000));
    drop(a);
    assert_eq!(SMALL.used(), 100_000);
    drop(b);
    assert_eq!(SMALL.used(), 0);
}

#[test]
fn a_large_frame_gets_its_buffer_only_when_read_into() {
    let size = 4 * READ_CHUNK;
    let wire = encode(vec![large_body(size, 3)]);
    let mut dec = Decoder::new(Limits::default());
    dec.feed(&wire[..READ_CHUNK]);
    assert_eq!(dec.decode().unwrap(), None);
    // Header decoded, body pending: its size is known, no buffer of that size exists yet.
    assert_eq!(dec.large_frame(), Some(size));
    assert!(dec.large.as_ref().unwrap().body.capacity() == 0);
    assert_eq!(dec.buffered(), READ_CHUNK - 9);
    let buf = dec.read_buf();
    assert_eq!((buf.len(), buf.capacity()), (READ_CHUNK - 9, size));
    dec.feed(&wire[READ_CHUNK..]);
    assert_eq!(one_message(&mut dec), vec![large_body(size, 3)]);
    assert_eq!(dec.large_frame(), None);
}
