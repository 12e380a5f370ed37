//! The cjdns forwarding plane.
#![forbid(unsafe_code)]
