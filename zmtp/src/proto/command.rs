//! Command frames (RFC 23 "Commands", RFC 37 "PING and PONG").
//!
//! ```text
//! command      = command-size command-body      ; a frame with the COMMAND flag
//! command-body = command-name command-data
//! command-name = OCTET 1*255command-name-char   ; length-prefixed ASCII
//! ready        = command-size %d5 "READY" metadata
//! metadata     = *property
//! property     = name value
//! name         = OCTET 1*255name-char
//! value        = 4OCTET *OCTET                  ; 4-byte big-endian length
//! error        = command-size %d5 "ERROR" error-reason
//! error-reason = OCTET 0*255VCHAR
//! ping         = command-size %d4 "PING" ping-ttl ping-context
//! ping-ttl     = 2OCTET                         ; deciseconds
//! ping-context = 0*16OCTET
//! pong         = command-size %d4 "PONG" ping-context
//! ```

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::ProtocolError;

/// Longest PING context a peer may send (RFC 37).
pub const MAX_PING_CONTEXT: usize = 16;

/// A decoded command frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `READY` with the sender's metadata (NULL and PLAIN/CURVE final step).
    Ready(Metadata),
    /// `ERROR` with a human-readable reason; the sender closes the connection after it.
    Error(Bytes),
    /// `PING`: the peer wants a `PONG` carrying `context`.
    Ping {
        /// Time-to-live the peer asks for, in deciseconds.
        ttl: u16,
        /// Opaque context to echo in the `PONG`.
        context: Bytes,
    },
    /// `PONG`: answer to one of our `PING`s.
    Pong {
        /// The context of the `PING` being answered.
        context: Bytes,
    },
    /// Any other command (`SUBSCRIBE`, `CANCEL`, mechanism commands such as `HELLO`).
    /// Mechanisms interpret their own commands; the data phase ignores unknown ones.
    Other {
        /// Command name.
        name: Bytes,
        /// Command data after the name.
        data: Bytes,
    },
}

impl Command {
    /// Parses a command frame body.
    pub fn decode(mut body: Bytes) -> Result<Self, ProtocolError> {
        let name_len = usize::from(*body.first().ok_or(ProtocolError::MalformedCommand)?);
        if name_len == 0 || body.len() < 1 + name_len {
            return Err(ProtocolError::MalformedCommand);
        }
        body.advance(1);
        let name = body.split_to(name_len);
        let data = body;
        match &name[..] {
            b"READY" => Ok(Self::Ready(Metadata::decode(data)?)),
            b"ERROR" => Ok(Self::Error(decode_error_reason(data)?)),
            b"PING" => decode_ping(data),
            b"PONG" if data.len() <= MAX_PING_CONTEXT => Ok(Self::Pong { context: data }),
            b"PONG" => Err(ProtocolError::MalformedCommand),
            _ => Ok(Self::Other { name, data }),
        }
    }

    /// Parses a command frame body into name and data only ([`Command::Other`]), whatever
    /// the name: for mechanisms whose commands share names with NULL's but not its layout
    /// (CURVE's `READY` is a box).
    pub fn decode_raw(mut body: Bytes) -> Result<Self, ProtocolError> {
        let name_len = usize::from(*body.first().ok_or(ProtocolError::MalformedCommand)?);
        if name_len == 0 || body.len() < 1 + name_len {
            return Err(ProtocolError::MalformedCommand);
        }
        body.advance(1);
        let name = body.split_to(name_len);
        Ok(Self::Other { name, data: body })
    }

    /// Appends the command frame body (without the frame header) to `out`.
    pub fn encode_body(&self, out: &mut BytesMut) {
        match self {
            Self::Ready(meta) => {
                put_name(out, b"READY");
                meta.encode(out);
            }
            Self::Error(reason) => {
                put_name(out, b"ERROR");
                let reason = &reason[..reason.len().min(255)];
                out.put_u8(reason.len() as u8);
                out.put_slice(reason);
            }
            Self::Ping { ttl, context } => {
                put_name(out, b"PING");
                out.put_u16(*ttl);
                out.put_slice(&context[..context.len().min(MAX_PING_CONTEXT)]);
            }
            Self::Pong { context } => {
                put_name(out, b"PONG");
                out.put_slice(&context[..context.len().min(MAX_PING_CONTEXT)]);
            }
            Self::Other { name, data } => {
                put_name(out, &name[..name.len().min(255)]);
                out.put_slice(data);
            }
        }
    }

    /// The command frame body as bytes.
    pub fn to_body(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.encode_body(&mut out);
        out.freeze()
    }
}

fn put_name(out: &mut BytesMut, name: &[u8]) {
    out.put_u8(name.len() as u8);
    out.put_slice(name);
}

fn decode_error_reason(mut data: Bytes) -> Result<Bytes, ProtocolError> {
    let len = usize::from(*data.first().ok_or(ProtocolError::MalformedCommand)?);
    if data.len() < 1 + len {
        return Err(ProtocolError::MalformedCommand);
    }
    data.advance(1);
    Ok(data.split_to(len))
}

fn decode_ping(mut data: Bytes) -> Result<Command, ProtocolError> {
    if data.len() < 2 || data.len() > 2 + MAX_PING_CONTEXT {
        return Err(ProtocolError::MalformedCommand);
    }
    let ttl = data.get_u16();
    Ok(Command::Ping { ttl, context: data })
}

/// Connection metadata: the properties of a `READY` command.
///
/// Property names are compared case-insensitively, as RFC 23 requires.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    props: Vec<(Bytes, Bytes)>,
}

impl Metadata {
    /// Empty metadata.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a property. Names longer than 255 bytes are truncated.
    pub fn insert(&mut self, name: impl Into<Bytes>, value: impl Into<Bytes>) {
        let mut name = name.into();
        name.truncate(255);
        self.props.push((name, value.into()));
    }

    /// The value of the first property named `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&Bytes> {
        self.props
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// All properties in wire order.
    pub fn iter(&self) -> impl Iterator<Item = (&Bytes, &Bytes)> {
        self.props.iter().map(|(n, v)| (n, v))
    }

    /// Parses a metadata block.
    pub fn decode(mut data: Bytes) -> Result<Self, ProtocolError> {
        let mut props = Vec::new();
        while !data.is_empty() {
            let name_len = usize::from(data[0]);
            if name_len == 0 || data.len() < 1 + name_len + 4 {
                return Err(ProtocolError::MalformedMetadata);
            }
            data.advance(1);
            let name = data.split_to(name_len);
            let value_len = data.get_u32();
            let value_len =
                usize::try_from(value_len).map_err(|_| ProtocolError::MalformedMetadata)?;
            if data.len() < value_len {
                return Err(ProtocolError::MalformedMetadata);
            }
            props.push((name, data.split_to(value_len)));
        }
        Ok(Self { props })
    }

    /// Appends the wire form of the metadata to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        for (name, value) in &self.props {
            out.put_u8(name.len() as u8);
            out.put_slice(name);
            out.put_u32(value.len() as u32);
            out.put_slice(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_has_the_exact_wire_form() {
        let mut meta = Metadata::new();
        meta.insert("Socket-Type", "DEALER");
        meta.insert("Identity", "");
        let body = Command::Ready(meta.clone()).to_body();
        let mut expected = vec![5u8];
        expected.extend_from_slice(b"READY");
        expected.push(11);
        expected.extend_from_slice(b"Socket-Type");
        expected.extend_from_slice(&[0, 0, 0, 6]);
        expected.extend_from_slice(b"DEALER");
        expected.push(8);
        expected.extend_from_slice(b"Identity");
        expected.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(&body[..], &expected[..]);
        assert_eq!(Command::decode(body).unwrap(), Command::Ready(meta));
    }

    #[test]
    fn metadata_names_are_case_insensitive() {
        let mut meta = Metadata::new();
        meta.insert("socket-type", "REQ");
        assert_eq!(meta.get("Socket-Type").map(|v| &v[..]), Some(&b"REQ"[..]));
        assert!(meta.get("Identity").is_none());
    }

    #[test]
    fn ping_pong_round_trip() {
        let ping = Command::Ping {
            ttl: 300,
            context: Bytes::from_static(b"ctx"),
        };
        let body = ping.to_body();
        assert_eq!(&body[..], b"\x04PING\x01\x2cctx");
        assert_eq!(Command::decode(body).unwrap(), ping);
        let pong = Command::Pong {
            context: Bytes::from_static(b"ctx"),
        };
        assert_eq!(Command::decode(pong.to_body()).unwrap(), pong);
    }

    #[test]
    fn error_round_trip() {
        let err = Command::Error(Bytes::from_static(b"Invalid socket type"));
        let body = err.to_body();
        assert_eq!(&body[..6], b"\x05ERROR");
        assert_eq!(body[6], 19);
        assert_eq!(Command::decode(body).unwrap(), err);
    }

    #[test]
    fn unknown_commands_are_kept_for_mechanisms() {
        let body = Bytes::from_static(b"\x05HELLOdata");
        assert_eq!(
            Command::decode(body).unwrap(),
            Command::Other {
                name: Bytes::from_static(b"HELLO"),
                data: Bytes::from_static(b"data")
            }
        );
    }

    #[test]
    fn malformed_commands_are_errors_not_panics() {
        for body in [
            &b""[..],
            b"\x00",
            b"\x09READY",
            b"\x05READY\x0bSocket-Type\x00\x00",
            b"\x05READY\x0bSocket-Type\xff\xff\xff\xffDEALER",
            b"\x05READY\x00",
            b"\x05ERROR",
            b"\x05ERROR\x05ab",
            b"\x04PING\x01",
            b"\x04PING\x00\x0112345678901234567",
            b"\x04PONG12345678901234567",
        ] {
            assert!(
                Command::decode(Bytes::copy_from_slice(body)).is_err(),
                "{body:?}"
            );
        }
    }
}
