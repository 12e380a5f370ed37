//! The 12-byte cjdns switch header: a checked view over a byte buffer and a plain struct.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | label, big-endian |
//! | 8 | 1 | congestion (bits 7..1) and suppress-errors (bit 0) |
//! | 9 | 1 | version (bits 7..6) and label shift (bits 5..0) |
//! | 10 | 2 | traffic class, big-endian |
//!
//! [`SwitchHeader::new_checked`] is the only constructor for untrusted input: once it has
//! passed, no accessor can panic. [`SwitchHeaderRepr::emit`] writes into a buffer of at least
//! [`HEADER_LEN`] bytes and cannot fail on one.

use thiserror::Error;

/// Size of the switch header.
pub const HEADER_LEN: usize = 12;

/// The switch header version senders write.
pub const CURRENT_VERSION: u8 = 1;

/// The traffic class every cjdns switch writes when it forwards ("unclassed").
pub const TRAFFIC_CLASS_UNCLASSED: u16 = 0xffff;

/// The buffer is shorter than a switch header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("packet of {0} bytes is shorter than the 12-byte switch header")]
pub struct Truncated(pub usize);

/// A switch header at the front of a packet buffer.
#[derive(Debug, Clone, Copy)]
pub struct SwitchHeader<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> SwitchHeader<T> {
    /// Wraps `buffer` after checking it holds a whole header.
    pub fn new_checked(buffer: T) -> Result<Self, Truncated> {
        let len = buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Truncated(len));
        }
        Ok(Self { buffer })
    }

    fn head(&self) -> &[u8; HEADER_LEN] {
        match self.buffer.as_ref().first_chunk::<HEADER_LEN>() {
            Some(h) => h,
            None => unreachable!("length checked in new_checked"),
        }
    }

    /// The whole buffer, header included.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// The bytes after the header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// The route label, as a raw 64-bit value (possibly zero on hostile input).
    pub fn label(&self) -> u64 {
        let h = self.head();
        u64::from_be_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]])
    }

    /// The 7-bit congestion value.
    pub fn congestion(&self) -> u8 {
        self.head()[8] >> 1
    }

    /// Whether a switch that cannot forward this packet must stay silent.
    pub fn suppress_errors(&self) -> bool {
        self.head()[8] & 1 == 1
    }

    /// The 2-bit header version.
    pub fn version(&self) -> u8 {
        self.head()[9] >> 6
    }

    /// Label bits consumed by switches so far.
    pub fn label_shift(&self) -> u8 {
        self.head()[9] & 0x3f
    }

    /// The 16-bit traffic class.
    pub fn traffic_class(&self) -> u16 {
        let h = self.head();
        u16::from_be_bytes([h[10], h[11]])
    }

    /// The header as a plain struct.
    pub fn repr(&self) -> SwitchHeaderRepr {
        SwitchHeaderRepr {
            label: self.label(),
            congestion: self.congestion(),
            suppress_errors: self.suppress_errors(),
            version: self.version(),
            label_shift: self.label_shift(),
            traffic_class: self.traffic_class(),
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> SwitchHeader<T> {
    fn head_mut(&mut self) -> &mut [u8; HEADER_LEN] {
        match self.buffer.as_mut().first_chunk_mut::<HEADER_LEN>() {
            Some(h) => h,
            None => unreachable!("length checked in new_checked"),
        }
    }

    /// Writes the label.
    pub fn set_label(&mut self, label: u64) {
        self.head_mut()[..8].copy_from_slice(&label.to_be_bytes());
    }

    /// Writes the congestion value (7 bits; higher bits are dropped).
    pub fn set_congestion(&mut self, congestion: u8) {
        let h = self.head_mut();
        h[8] = (h[8] & 1) | (congestion << 1);
    }

    /// Writes the suppress-errors bit.
    pub fn set_suppress_errors(&mut self, suppress: bool) {
        let h = self.head_mut();
        h[8] = (h[8] & !1) | u8::from(suppress);
    }

    /// Writes the version (2 bits; higher bits are dropped).
    pub fn set_version(&mut self, version: u8) {
        let h = self.head_mut();
        h[9] = (version << 6) | (h[9] & 0x3f);
    }

    /// Writes the label shift (6 bits; higher bits are dropped).
    pub fn set_label_shift(&mut self, shift: u8) {
        let h = self.head_mut();
        h[9] = (h[9] & 0xc0) | (shift & 0x3f);
    }

    /// Writes the traffic class.
    pub fn set_traffic_class(&mut self, class: u16) {
        self.head_mut()[10..12].copy_from_slice(&class.to_be_bytes());
    }
}

/// A switch header's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SwitchHeaderRepr {
    /// The route label.
    pub label: u64,
    /// Congestion, 7 bits.
    pub congestion: u8,
    /// Suppress-errors flag.
    pub suppress_errors: bool,
    /// Version, 2 bits.
    pub version: u8,
    /// Label shift, 6 bits.
    pub label_shift: u8,
    /// Traffic class.
    pub traffic_class: u16,
}

impl SwitchHeaderRepr {
    /// A fresh header as a router originates it: version 1, nothing shifted, class 0.
    pub const fn new(label: u64) -> Self {
        Self {
            label,
            congestion: 0,
            suppress_errors: false,
            version: CURRENT_VERSION,
            label_shift: 0,
            traffic_class: 0,
        }
    }

    /// Parses the header at the front of `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Self, Truncated> {
        Ok(SwitchHeader::new_checked(bytes)?.repr())
    }

    /// The 12 header bytes. Out-of-range field values are masked to their widths.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..8].copy_from_slice(&self.label.to_be_bytes());
        out[8] = (self.congestion << 1) | u8::from(self.suppress_errors);
        out[9] = (self.version << 6) | (self.label_shift & 0x3f);
        out[10..].copy_from_slice(&self.traffic_class.to_be_bytes());
        out
    }

    /// Writes the header to the front of `out`.
    pub fn emit(&self, out: &mut [u8]) -> Result<(), Truncated> {
        let len = out.len();
        let head = out.first_chunk_mut::<HEADER_LEN>().ok_or(Truncated(len))?;
        *head = self.to_bytes();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cjdns_hdr_vector() {
        let bytes = hex::decode("000000000000001300480000").unwrap();
        let repr = SwitchHeaderRepr::parse(&bytes).unwrap();
        assert_eq!(
            repr,
            SwitchHeaderRepr {
                label: 0x13,
                congestion: 0,
                suppress_errors: false,
                version: 1,
                label_shift: 8,
                traffic_class: 0,
            }
        );
        assert_eq!(repr.to_bytes().as_slice(), bytes.as_slice());
    }

    #[test]
    fn error_cause_header_vector() {
        // The cause header inside the cjdns-ctrl ERROR vector: congest 1, S 1, v1, shift 57.
        let bytes = hex::decode("62c1d23a6481140103790000").unwrap();
        let repr = SwitchHeaderRepr::parse(&bytes).unwrap();
        assert_eq!(repr.label, 0x62c1_d23a_6481_1401);
        assert_eq!(repr.congestion, 1);
        assert!(repr.suppress_errors);
        assert_eq!(repr.version, 1);
        assert_eq!(repr.label_shift, 57);
        assert_eq!(repr.to_bytes().as_slice(), bytes.as_slice());
    }

    #[test]
    fn setters_touch_only_their_bits() {
        let mut buf = [0xffu8; 14];
        let mut h = SwitchHeader::new_checked(&mut buf[..]).unwrap();
        h.set_label(0x0102_0304_0506_0708);
        h.set_suppress_errors(false);
        h.set_label_shift(5);
        h.set_traffic_class(0x1234);
        assert_eq!(h.congestion(), 0x7f);
        assert!(!h.suppress_errors());
        assert_eq!(h.version(), 3);
        assert_eq!(h.label_shift(), 5);
        h.set_version(1);
        h.set_congestion(1);
        assert_eq!(h.label_shift(), 5);
        assert_eq!(h.repr().to_bytes()[8..], [0x02, 0x45, 0x12, 0x34]);
        assert_eq!(h.payload(), &[0xff, 0xff]);
    }

    #[test]
    fn short_buffers_are_rejected() {
        for len in 0..HEADER_LEN {
            let buf = vec![0u8; len];
            assert_eq!(
                SwitchHeader::new_checked(&buf[..]).err(),
                Some(Truncated(len))
            );
            assert!(SwitchHeaderRepr::new(1).emit(&mut vec![0u8; len]).is_err());
        }
    }
}
