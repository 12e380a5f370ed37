//! A packet buffer with headroom, reused for every packet on the data path.
//!
//! Each layer on the way out (end-to-end session, switch header, link session) writes its
//! header in front of the bytes it was given, and each layer on the way in strips its header
//! by moving the start forward, so a packet is never copied between layers (a Noise link also
//! appends its tag behind the packet, [`PacketBuf::push_back`]). The driver
//! allocates a few of these once and reads datagrams or TUN packets into [`PacketBuf::read_area`].

/// Bytes kept free in front of a freshly read packet: enough for an IPv6-to-UDP trip (inner
/// handshake 120 + handle 4 + switch header 12 + link handshake 120, with margin).
pub const HEADROOM: usize = 512;

/// The largest packet read from a socket or TUN device (cjdns reads at most 3496 bytes).
pub const MAX_PACKET: usize = 4096;

/// A byte buffer holding one packet at `bytes[start..end]`.
#[derive(Clone)]
pub struct PacketBuf {
    bytes: Box<[u8]>,
    start: usize,
    end: usize,
}

impl Default for PacketBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for PacketBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketBuf")
            .field("start", &self.start)
            .field("len", &self.len())
            .finish()
    }
}

impl PacketBuf {
    /// An empty buffer with [`HEADROOM`] and room for [`MAX_PACKET`] bytes.
    pub fn new() -> Self {
        Self {
            bytes: vec![0u8; HEADROOM + MAX_PACKET].into_boxed_slice(),
            start: HEADROOM,
            end: HEADROOM,
        }
    }

    /// A buffer holding a copy of `data` after the usual headroom (control plane only).
    pub fn from_slice(data: &[u8]) -> Self {
        let mut buf = Self::new();
        buf.load(data);
        buf
    }

    /// Resets the buffer to hold a copy of `data` (cut at [`MAX_PACKET`]) after the usual
    /// headroom: a packet that was read elsewhere, such as one of a batch.
    pub fn load(&mut self, data: &[u8]) {
        let n = data.len().min(MAX_PACKET);
        self.read_area()[..n].copy_from_slice(&data[..n]);
        self.set_read_len(n);
    }

    /// Resets the buffer and returns the area to read a packet into.
    pub fn read_area(&mut self) -> &mut [u8] {
        self.start = HEADROOM;
        self.end = HEADROOM;
        &mut self.bytes[HEADROOM..]
    }

    /// Records that `n` bytes were read into [`PacketBuf::read_area`].
    pub fn set_read_len(&mut self, n: usize) {
        self.start = HEADROOM;
        self.end = HEADROOM + n.min(MAX_PACKET);
    }

    /// The packet.
    pub fn data(&self) -> &[u8] {
        &self.bytes[self.start..self.end]
    }

    /// The packet, mutably.
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.bytes[self.start..self.end]
    }

    /// Length of the packet.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// Whether the packet is empty.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Free bytes in front of the packet.
    pub fn headroom(&self) -> usize {
        self.start
    }

    /// The whole buffer up to the end of the packet, and the packet's start within it: what
    /// an in-place encryptor that writes in front of the packet needs.
    pub fn with_headroom(&mut self) -> (&mut [u8], usize) {
        (&mut self.bytes[..self.end], self.start)
    }

    /// Moves the start of the packet to `start` (within the buffer, not past the end).
    pub fn set_start(&mut self, start: usize) {
        self.start = start.min(self.end);
    }

    /// Drops `n` bytes from the front of the packet.
    pub fn advance(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
    }

    /// Makes room for `n` bytes in front of the packet and returns them; `None` when the
    /// headroom is used up.
    pub fn push_front(&mut self, n: usize) -> Option<&mut [u8]> {
        let start = self.start.checked_sub(n)?;
        self.start = start;
        Some(&mut self.bytes[start..start + n])
    }

    /// Makes room for `n` bytes after the packet and returns them (whatever they held);
    /// `None` when the buffer ends first.
    pub fn push_back(&mut self, n: usize) -> Option<&mut [u8]> {
        let end = self.end.checked_add(n).filter(|&e| e <= self.bytes.len())?;
        let old = std::mem::replace(&mut self.end, end);
        Some(&mut self.bytes[old..end])
    }

    /// Cuts the packet to `len` bytes.
    pub fn truncate(&mut self, len: usize) {
        self.end = self.start + len.min(self.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_push_and_pop_without_copying() {
        let mut b = PacketBuf::from_slice(b"payload");
        assert_eq!(b.headroom(), HEADROOM);
        b.push_front(4).unwrap().copy_from_slice(b"hdr:");
        assert_eq!(b.data(), b"hdr:payload");
        b.advance(4);
        assert_eq!(b.data(), b"payload");
        assert!(b.push_front(HEADROOM + 1).is_none());
        b.push_back(4).unwrap().copy_from_slice(b":tag");
        assert_eq!(b.data(), b"payload:tag");
        assert!(b.push_back(MAX_PACKET).is_none(), "no room past the buffer");
        b.truncate(7);
        b.truncate(3);
        assert_eq!(b.data(), b"pay");
        let (whole, start) = b.with_headroom();
        assert_eq!(&whole[start..], b"pay");
    }
}
