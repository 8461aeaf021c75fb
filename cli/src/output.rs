//! How reply frames are printed: UTF-8 text as is, anything else as hex; or JSON.

use bytes::Bytes;
use serde_json::{json, Value};

/// One frame for a terminal: the text if it is printable UTF-8, else `0x` and hex.
pub(crate) fn frame_text(frame: &[u8]) -> String {
    match std::str::from_utf8(frame) {
        Ok(s) if !s.chars().any(|c| c.is_control() && c != '\t') => s.to_string(),
        _ => format!("0x{}", hex(frame)),
    }
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The frames as a JSON array: strings for UTF-8 frames, `{"hex": "…"}` for others.
pub(crate) fn frames_json(frames: &[Bytes]) -> Value {
    Value::Array(
        frames
            .iter()
            .map(|f| match std::str::from_utf8(f) {
                Ok(s) => Value::String(s.to_string()),
                Err(_) => json!({ "hex": hex(f) }),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_binary_frames() {
        assert_eq!(frame_text(b"hello"), "hello");
        assert_eq!(frame_text(b""), "");
        assert_eq!(frame_text(&[0, 255]), "0x00ff");
        assert_eq!(frame_text(b"a\nb"), "0x610a62");
        let v = frames_json(&[Bytes::from_static(b"hi"), Bytes::from_static(&[0xff])]);
        assert_eq!(v.to_string(), r#"["hi",{"hex":"ff"}]"#);
    }
}
