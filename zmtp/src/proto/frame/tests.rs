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
}
