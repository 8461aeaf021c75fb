//! A pure codec for the Majordomo Protocol, MDP/0.1 ([RFC 7]), and its management
//! interface, MMI ([RFC 8]), plus the bodies of the Titanic services ([RFC 9]).
//!
//! This crate is the protocol contract shared by the domo broker, the client and worker
//! SDKs and Titanic. It turns multipart messages (`Vec<Bytes>`, one `Bytes` per frame) into
//! typed commands and back. It has no sockets, no async runtime and never reads a clock.
//!
//! Every function works on the frames *after* the routing id: a ROUTER socket hands the
//! broker `(peer_id, frames)` and takes `(peer_id, frames)` to send. Decoders take the frames
//! by value and return body frames in the same vector; no frame content is ever copied.
//!
//! # Wire format
//!
//! Frames are written `[a][b]`; `[""]` is an empty frame; `(id)` is the routing id the
//! broker's ROUTER socket adds in front (not part of what this crate sees).
//!
//! MDP/Client 0.1, no command byte; direction tells REQUEST from REPLY:
//!
//! ```text
//! REQUEST  client -> broker   (client)[""][MDPC01][service][body]...   >= 4 frames
//! REPLY    broker -> client   (client)[""][MDPC01][service][body]...   >= 4 frames
//! ```
//!
//! MDP/Worker 0.1, third frame is a one-byte command:
//!
//! ```text
//! READY       worker -> broker  (worker)[""][MDPW01][0x01][service]                exactly 4
//! REQUEST     broker -> worker  (worker)[""][MDPW01][0x02][client][""][body]...    >= 6
//! REPLY       worker -> broker  (worker)[""][MDPW01][0x03][client][""][body]...    >= 6
//! HEARTBEAT   both ways         (worker)[""][MDPW01][0x04]                         exactly 3
//! DISCONNECT  both ways         (worker)[""][MDPW01][0x05]                         exactly 3
//! ```
//!
//! MDP/0.2 (RFC 18) reuses the same command bytes with other meanings, so the header frame
//! is always checked before anything else; `MDPC02`/`MDPW02` are rejected as unknown headers.
//!
//! # Strictness
//!
//! Decoding follows RFC 7 to the letter and reports each defect as its own [`DecodeError`]
//! variant, so the broker can count and drop bad input (never panic): frame counts are exact,
//! bodies have at least one frame, names are 1 to 255 bytes. Encoders never produce a message
//! their decoder would reject: an empty body is sent as one empty frame.
//!
//! # Layout
//!
//! * [`consts`]: header frames, command bytes, MMI names and status codes, named once.
//! * [`ServiceName`], [`PeerId`]: checked newtypes for names and routing ids.
//! * [`client`]: MDP/Client REQUEST and REPLY, [`ClientRequest`], [`ClientReply`].
//! * [`worker`]: MDP/Worker commands, [`WorkerCommand`], one decoder per direction.
//! * [`decode`]: the broker's entry point for a socket carrying both, giving [`Incoming`].
//! * [`mmi`]: parsing `mmi.*` requests into [`MmiRequest`] and building reply bodies.
//! * [`titanic`]: Titanic (RFC 9) request and reply bodies and the request [`titanic::Id`].
//! * [`topic`]: the `topic.*` services' bodies and statuses, and the subscribers' offset
//!   stamp.
//! * [`Heartbeat`], [`Liveness`]: the heartbeat settings and the peer liveness rule.
//! * [`Backoff`], [`BackoffOptions`]: the reconnect schedule of the zguide's `ppworker`, used
//!   by the worker SDK's sessions and by Titanic's store.
//! * [`DecodeError`], [`NameError`]: what can be wrong with input.
//!
//! [RFC 7]: https://rfc.zeromq.org/spec/7/
//! [RFC 8]: https://rfc.zeromq.org/spec/8/
//! [RFC 9]: https://rfc.zeromq.org/spec/9/

mod backoff;
pub mod broadcast;
pub mod client;
pub mod consts;
mod error;
pub mod extensions;
mod frames;
mod heartbeat;
mod incoming;
pub mod mmi;
mod names;
pub mod sync;
pub mod titanic;
pub mod topic;
pub mod worker;

pub use backoff::{Backoff, BackoffOptions};
pub use client::{ClientReply, ClientRequest};
pub use error::DecodeError;
pub use extensions::Credit;
pub use heartbeat::{Heartbeat, Liveness};
pub use incoming::{decode, Incoming};
pub use mmi::MmiRequest;
pub use names::{NameError, PeerId, ServiceName};
pub use sync::LockExt;
pub use worker::WorkerCommand;
