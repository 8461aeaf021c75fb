//! Golden bytes: these fixtures are the on-disk format. If one of these tests fails, an existing
//! layout changed: add a new version variant instead.

use super::*;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn request_fixture() -> Request {
    Request {
        service: Bytes::from_static(b"echo"),
        body: vec![Bytes::from_static(b"hi"), Bytes::new()],
        created_millis: 1_700_000_000_000,
        attempts: 2,
    }
}

fn reply_fixture() -> Reply {
    Reply {
        frames: vec![Bytes::from_static(b"ok"), Bytes::from_static(&[0, 255])],
        completed_millis: 1_700_000_000_123,
    }
}

/// `00` = V1; `04 "echo"`; 2 frames: `02 "hi"`, `00`; created as a varint; attempts `02`.
const REQUEST_V1: &str = "00046563686f020268690080d095ffbc3102";
/// `00` = V1; 2 frames: `02 "ok"`, `02 00 ff`; completed as a varint.
const REPLY_V1: &str = "0002026f6b0200fffbd095ffbc31";

#[test]
fn request_v1_golden_bytes_decode_and_encode() {
    let fixture = unhex(REQUEST_V1);
    assert_eq!(decode_request(&fixture).unwrap(), request_fixture());
    assert_eq!(hex(&encode_request(&request_fixture())), REQUEST_V1);
}

#[test]
fn reply_v1_golden_bytes_decode_and_encode() {
    let fixture = unhex(REPLY_V1);
    assert_eq!(decode_reply(&fixture).unwrap(), reply_fixture());
    assert_eq!(hex(&encode_reply(&reply_fixture())), REPLY_V1);
}

#[test]
fn unknown_versions_and_truncated_records_are_errors_not_panics() {
    let mut future = unhex(REQUEST_V1);
    future[0] = 1;
    assert!(decode_request(&future).is_err());
    let full = unhex(REPLY_V1);
    for n in 0..full.len() {
        assert!(decode_reply(&full[..n]).is_err(), "prefix of {n} bytes");
    }
}

#[test]
fn the_borrowing_encoder_writes_the_bytes_of_the_owned_layouts() {
    // Lengths around the varint boundaries (127/128, 16383/16384) and empty frames.
    for sizes in [
        vec![0],
        vec![127, 128],
        vec![16_383, 16_384, 1],
        vec![5; 40],
    ] {
        let body: Vec<Bytes> = sizes
            .iter()
            .map(|&n| Bytes::from((0..n).map(|i| (i % 251) as u8).collect::<Vec<u8>>()))
            .collect();
        let request = Request {
            service: Bytes::from(vec![b's'; 200]),
            body: body.clone(),
            created_millis: u64::MAX - 1,
            attempts: 300,
        };
        let owned = postcard::to_stdvec(&StoredRequest::from(&request)).unwrap();
        assert_eq!(encode_request(&request), owned);
        assert_eq!(decode_request(&owned).unwrap(), request);
        let reply = Reply {
            frames: body,
            completed_millis: 7,
        };
        let owned = postcard::to_stdvec(&StoredReply::from(&reply)).unwrap();
        assert_eq!(encode_reply(&reply), owned);
    }
}
