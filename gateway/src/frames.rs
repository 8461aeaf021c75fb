//! Request and reply bodies over HTTP: one frame as the raw body, or several as a JSON array.
//!
//! - **Raw** (the default): the HTTP body is the one request frame; a reply of one frame is
//!   the HTTP body (`application/octet-stream`). A reply of several frames cannot be shown so:
//!   `502` (ask with `?frames=json`).
//! - **JSON** (`?frames=json`, or `Content-Type: application/json` with `?frames=json`): the
//!   body is a JSON array with one element per frame: a string (the frame's UTF-8 text) or
//!   `{"base64": "..."}` (any bytes, standard alphabet with padding). The reply is the same:
//!   strings for frames that are UTF-8, `{"base64": ...}` for the others.

use base64::Engine as _;
use bytes::Bytes;
use serde_json::Value;

/// Why a JSON body is not a list of frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadFrames(pub String);

/// Reads a JSON array of frames.
///
/// # Errors
/// [`BadFrames`] saying what is wrong (not JSON, not an array, an element of another kind, bad
/// base64).
pub fn from_json(body: &[u8]) -> Result<Vec<Bytes>, BadFrames> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| BadFrames(format!("not JSON: {e}")))?;
    from_value(value)
}

/// Reads frames from a JSON value already parsed (an array, as [`from_json`] reads).
///
/// # Errors
/// As [`from_json`].
pub fn from_value(value: Value) -> Result<Vec<Bytes>, BadFrames> {
    let Value::Array(items) = value else {
        return Err(BadFrames("expected a JSON array of frames".into()));
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(s) => Ok(Bytes::from(s)),
            Value::Object(o) if o.len() == 1 => match o.get("base64") {
                Some(Value::String(b64)) => base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map(Bytes::from)
                    .map_err(|e| BadFrames(format!("frame {i}: bad base64: {e}"))),
                _ => Err(BadFrames(format!(
                    "frame {i}: an object must be {{\"base64\": \"...\"}}"
                ))),
            },
            _ => Err(BadFrames(format!(
                "frame {i}: a frame is a string or {{\"base64\": \"...\"}}"
            ))),
        })
        .collect()
}

/// Frames as a JSON array (strings where UTF-8, `{"base64": ...}` elsewhere).
pub fn to_json(frames: &[Bytes]) -> Value {
    Value::Array(
        frames
            .iter()
            .map(|f| match std::str::from_utf8(f) {
                Ok(s) => Value::String(s.to_string()),
                Err(_) => serde_json::json!({
                    "base64": base64::engine::general_purpose::STANDARD.encode(f)
                }),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_binary_frames_round_trip() {
        let frames = vec![
            Bytes::from_static(b"hello"),
            Bytes::new(),
            Bytes::from_static(&[0, 255, 10]),
        ];
        let json = to_json(&frames);
        assert_eq!(json.to_string(), r#"["hello","",{"base64":"AP8K"}]"#);
        assert_eq!(from_json(json.to_string().as_bytes()), Ok(frames));
    }

    #[test]
    fn bad_bodies_say_why() {
        for (body, words) in [
            (&b"{"[..], "not JSON"),
            (b"{\"a\": 1}", "array"),
            (b"[1]", "frame 0"),
            (b"[\"a\", {\"base64\": \"%%\"}]", "frame 1: bad base64"),
            (b"[{\"hex\": \"00\"}]", "base64"),
        ] {
            let e = from_json(body).unwrap_err();
            assert!(e.0.contains(words), "{body:?}: {e:?}");
        }
        assert_eq!(from_json(b"[]"), Ok(vec![]));
    }
}
