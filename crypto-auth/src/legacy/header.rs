//! The 120-byte legacy CryptoAuth handshake header and its 12-byte auth challenge.
//!
//! ```text
//! 0   4  stage, u32 BE: 0 HELLO, 1 REPEAT HELLO, 2 KEY, 3 REPEAT KEY (>= 4: a data packet)
//! 4  12  auth challenge: type(1) lookup(7) derivations(2, BE) additional(2, BE)
//! 16 24  handshake nonce (XSalsa20 nonce of the box)
//! 40 32  sender's permanent public key
//! 72 16  Poly1305 tag of the box
//! 88 32  encrypted temporary public key       } box = tempPub ‖ payload
//! 120 n  encrypted payload                    }
//! ```
//!
//! [`HandshakeHeader::parse`] reads the clear part (bytes 0..72) of any slice of at least
//! [`HEADER_LEN`] bytes and never panics.

/// Size of the handshake header, including the encrypted temporary key.
pub const HEADER_LEN: usize = 120;
/// Size of a data packet's header: nonce(4) + tag(16).
pub const DATA_HEADER_LEN: usize = 20;
/// Offset of the box (tag) inside a handshake packet.
pub(crate) const BOX_OFFSET: usize = 72;

/// The kind of a legacy CryptoAuth packet, from its first 32-bit word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketKind {
    /// Stage 0.
    Hello,
    /// Stage 1.
    RepeatHello,
    /// Stage 2.
    Key,
    /// Stage 3.
    RepeatKey,
    /// A data packet with this nonce (>= 4).
    Data(u32),
}

impl PacketKind {
    /// Classify by the first word (big endian) of a packet.
    pub const fn from_word(word: u32) -> Self {
        match word {
            0 => Self::Hello,
            1 => Self::RepeatHello,
            2 => Self::Key,
            3 => Self::RepeatKey,
            n => Self::Data(n),
        }
    }

    /// Classify a packet; `None` if it is shorter than 4 bytes.
    pub fn of(packet: &[u8]) -> Option<Self> {
        let word: [u8; 4] = packet.get(..4)?.try_into().ok()?;
        Some(Self::from_word(u32::from_be_bytes(word)))
    }

    /// Whether this is one of the four handshake packets.
    pub const fn is_handshake(self) -> bool {
        !matches!(self, Self::Data(_))
    }

    /// Lowercase name: `hello`, `repeat-hello`, `key`, `repeat-key`, `data`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Hello => "hello",
            Self::RepeatHello => "repeat-hello",
            Self::Key => "key",
            Self::RepeatKey => "repeat-key",
            Self::Data(_) => "data",
        }
    }
}

/// Auth type of a challenge (open: unknown values round-trip).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthType {
    /// 0: no authentication.
    None,
    /// 1: password; lookup = SHA-256(SHA-256(password))[1..8].
    Password,
    /// 2: login + password; lookup = SHA-256(login)[1..8].
    Login,
    /// Anything else (3 is Noise-only).
    Unknown(u8),
}

impl AuthType {
    /// From the wire byte.
    pub const fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::None,
            1 => Self::Password,
            2 => Self::Login,
            x => Self::Unknown(x),
        }
    }
    /// To the wire byte.
    pub const fn to_u8(self) -> u8 {
        match self {
            Self::None => 0,
            Self::Password => 1,
            Self::Login => 2,
            Self::Unknown(x) => x,
        }
    }
}

/// The 12-byte auth challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AuthChallenge {
    /// Auth type.
    pub auth_type: AuthType,
    /// The 7 lookup bytes.
    pub lookup: [u8; 7],
    /// Legacy "require packet auth and derivation count" field, ignored on receipt.
    pub derivations: u16,
    /// Legacy "additional" field, ignored on receipt.
    pub additional: u16,
}

impl AuthChallenge {
    /// Parse 12 bytes.
    pub fn from_bytes(b: &[u8; 12]) -> Self {
        let mut lookup = [0u8; 7];
        lookup.copy_from_slice(&b[1..8]);
        Self {
            auth_type: AuthType::from_u8(b[0]),
            lookup,
            derivations: u16::from_be_bytes([b[8], b[9]]),
            additional: u16::from_be_bytes([b[10], b[11]]),
        }
    }

    /// Serialize to 12 bytes.
    pub fn to_bytes(&self) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[0] = self.auth_type.to_u8();
        b[1..8].copy_from_slice(&self.lookup);
        b[8..10].copy_from_slice(&self.derivations.to_be_bytes());
        b[10..12].copy_from_slice(&self.additional.to_be_bytes());
        b
    }

    /// The 8-byte user lookup key: type ‖ lookup.
    pub fn key(&self) -> [u8; 8] {
        let mut k = [0u8; 8];
        k[0] = self.auth_type.to_u8();
        k[1..].copy_from_slice(&self.lookup);
        k
    }

    /// The challenge a sender with `password` (and optionally `login`) puts in its HELLO:
    /// type 2 with a login, else type 1; derivations and additional are zero.
    pub fn for_password(password: &[u8], login: Option<&[u8]>) -> Self {
        use super::crypto::sha256;
        let (auth_type, digest) = match login {
            Some(l) => (AuthType::Login, sha256(l)),
            None => (AuthType::Password, sha256(&sha256(password))),
        };
        let mut lookup = [0u8; 7];
        lookup.copy_from_slice(&digest[1..8]);
        Self {
            auth_type,
            lookup,
            derivations: 0,
            additional: 0,
        }
    }
}

/// The clear part of a handshake header (bytes 0..72).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeHeader {
    /// Stage word (0..=3 for handshakes).
    pub stage: u32,
    /// Auth challenge.
    pub auth: AuthChallenge,
    /// The box nonce.
    pub nonce: [u8; 24],
    /// Sender's permanent public key.
    pub public_key: [u8; 32],
}

impl HandshakeHeader {
    /// Parse the clear fields of a handshake packet; `None` if shorter than [`HEADER_LEN`].
    pub fn parse(packet: &[u8]) -> Option<Self> {
        let h: &[u8; HEADER_LEN] = packet.get(..HEADER_LEN)?.try_into().ok()?;
        let (stage, rest) = h.split_first_chunk::<4>()?;
        let (auth, rest) = rest.split_first_chunk::<12>()?;
        let (nonce, rest) = rest.split_first_chunk::<24>()?;
        let (public_key, _) = rest.split_first_chunk::<32>()?;
        Some(Self {
            stage: u32::from_be_bytes(*stage),
            auth: AuthChallenge::from_bytes(auth),
            nonce: *nonce,
            public_key: *public_key,
        })
    }

    /// Write the clear fields into the first 72 bytes of `out` (which must hold 72 bytes).
    pub(crate) fn emit(&self, out: &mut [u8; BOX_OFFSET]) {
        out[0..4].copy_from_slice(&self.stage.to_be_bytes());
        out[4..16].copy_from_slice(&self.auth.to_bytes());
        out[16..40].copy_from_slice(&self.nonce);
        out[40..72].copy_from_slice(&self.public_key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Digest §6.2.2: password `password`, type 1 → `01 641c99f7719f57 0000 0000`.
    #[test]
    fn password_challenge_vector() {
        let c = AuthChallenge::for_password(b"password", None);
        assert_eq!(hex::encode(c.to_bytes()), "01641c99f7719f5700000000");
        let c = AuthChallenge::for_password(b"x", Some(b"default-login"));
        assert_eq!(hex::encode(&c.to_bytes()[..8]), "02ba73d3240a0dba");
        let c = AuthChallenge::for_password(b"x", Some(b"Local Peers"));
        assert_eq!(hex::encode(&c.to_bytes()[..8]), "02c193e0b60d1422");
    }

    #[test]
    fn short_input_is_none() {
        assert!(HandshakeHeader::parse(&[0u8; 119]).is_none());
        assert!(PacketKind::of(&[0u8; 3]).is_none());
    }
}
