//! The cjdns forwarding plane, bit-exact with cjdns 22.x.
//!
//! - [`label`]: 64-bit route labels, their text form, splice / unsplice / routes-through.
//! - [`scheme`]: encoding forms and schemes, director numbering, re-encoding, the compact
//!   serialized form.
//!
//! Everything here is sans-IO and allocation-free on the forwarding path.
#![forbid(unsafe_code)]

pub mod label;
pub mod scheme;

pub use label::{Label, LabelError};
pub use scheme::{ConvertTo, EncodingForm, EncodingScheme, ReencodeError, SchemeError};
