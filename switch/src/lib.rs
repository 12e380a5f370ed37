//! The cjdns forwarding plane, bit-exact with cjdns 22.x.
//!
//! - [`label`]: 64-bit route labels, their text form, splice / unsplice / routes-through.
//! - [`scheme`]: encoding forms and schemes, director numbering, re-encoding, the compact
//!   serialized form.
//! - [`header`]: the 12-byte switch header as a checked view and a plain struct.
//! - [`switch_core`]: the per-packet forwarding decision of a switch.
//! - [`control`]: switch control messages (ping, key ping, error, getsnode, rpath, lladdr),
//!   the RFC 1071 checksum and the query responder.
//!
//! Everything here is sans-IO: bytes in, bytes and decisions out. The forwarding path
//! (`SwitchCore::forward`, header views, `write_switch_error`) never allocates.
//! Sessions, interfaces and scheduling live elsewhere.
#![forbid(unsafe_code)]

pub mod control;
pub mod header;
pub mod label;
pub mod scheme;
pub mod switch_core;

pub use control::{ControlMessage, ErrorCode};
pub use header::{SwitchHeader, SwitchHeaderRepr};
pub use label::{Label, LabelError};
pub use scheme::{ConvertTo, EncodingForm, EncodingScheme, ReencodeError, SchemeError};
pub use switch_core::{DropReason, Forward, SwitchCore, TrafficClassPolicy};
