//! The cjdns additional data of a Noise handshake initiation (`cnoise.rs`) and the CjdnsPsk
//! credentials.
//!
//! Additional data is a list of `[type u8][len u8][value]` entities: 0 Padding (zeros),
//! 1 CjdnsPsk (8 bytes: `03` ‖ 7 lookup bytes), 2 PrevSessIndex (u32 LE), 3 CjdnsVer (u32 LE);
//! other types are skipped. cjdns writes `[Padding][CjdnsVer][CjdnsPsk][PrevSessIndex]`,
//! padded at the front to a multiple of 4 bytes.
//!
//! pktmesh adds 0x50 PktmeshPsk: the same 8 bytes as CjdnsPsk under a type stock cjdns 22.3
//! skips. An initiation that names its user only there is dropped by a stock node (no CjdnsPsk
//! from an unknown address: `AUTH_REQUIRED`, no reply) and answered by a pktmesh node, which is
//! how a pktmesh initiator tells the two apart (`docs/node.md`, "Noise on peer links").

use super::crypto::hmac;
use super::NoiseError;

/// Entity types.
const PADDING: u8 = 0;
const CJDNS_PSK: u8 = 1;
const PREV_SESS_INDEX: u8 = 2;
const CJDNS_VER: u8 = 3;
/// pktmesh's own entity: a CjdnsPsk lookup that stock cjdns does not read.
const PKTMESH_PSK: u8 = 0x50;

/// The largest additional-data blob this implementation writes or accepts.
pub const MAX_ADDITIONAL: usize = 64;

/// The PSK and CjdnsPsk lookup of a (login, password).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    psk: [u8; 32],
    lookup: [u8; 8],
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("lookup", &self.lookup)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// I = HMAC(password, login ‖ 03); psk = HMAC(I, 00); lookup = 03 ‖ HMAC(I, 01)[1..8].
    pub fn derive(login: &[u8], password: &[u8]) -> Self {
        let i = hmac(password, &[login, &[3]]);
        let psk = hmac(&i, &[&[0]]);
        let challenge = hmac(&i, &[&[1]]);
        let mut lookup = [3u8; 8];
        lookup[1..].copy_from_slice(&challenge[1..8]);
        Self { psk, lookup }
    }
    /// The pre-shared key mixed into the handshake.
    pub fn psk(&self) -> &[u8; 32] {
        &self.psk
    }
    /// The 8-byte CjdnsPsk lookup.
    pub fn lookup(&self) -> &[u8; 8] {
        &self.lookup
    }
}

/// The decoded additional data of an initiation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Additional {
    /// CjdnsVer: the sender's protocol version.
    pub version: Option<u32>,
    /// CjdnsPsk: which user's password the initiator used.
    pub psk_lookup: Option<[u8; 8]>,
    /// PktmeshPsk: the same lookup in the entity only pktmesh reads.
    pub pktmesh_psk: Option<[u8; 8]>,
    /// PrevSessIndex: the peer's session index from an earlier handshake (a hint only).
    pub prev_session_index: Option<u32>,
}

impl Additional {
    /// Encode as cjdns does; returns the length written into `out` (≥ [`MAX_ADDITIONAL`]).
    pub fn encode(&self, out: &mut [u8; MAX_ADDITIONAL]) -> usize {
        let mut body = [0u8; MAX_ADDITIONAL];
        let mut n = 0;
        let mut put = |ty: u8, value: &[u8]| {
            body[n] = ty;
            body[n + 1] = value.len() as u8;
            body[n + 2..n + 2 + value.len()].copy_from_slice(value);
            n += 2 + value.len();
        };
        if let Some(v) = self.version {
            put(CJDNS_VER, &v.to_le_bytes());
        }
        if let Some(l) = &self.psk_lookup {
            put(CJDNS_PSK, l);
        }
        if let Some(l) = &self.pktmesh_psk {
            put(PKTMESH_PSK, l);
        }
        if let Some(i) = self.prev_session_index {
            put(PREV_SESS_INDEX, &i.to_le_bytes());
        }
        let pad = match n % 4 {
            0 => 0,
            1 => 3, // 00 01 00
            2 => 2, // 00 00
            _ => 5, // 00 03 00 00 00
        };
        out.fill(0);
        if pad > 0 {
            out[1] = (pad - 2) as u8;
        }
        out[pad..pad + n].copy_from_slice(&body[..n]);
        pad + n
    }

    /// Decode; malformed entities (truncated, non-zero padding, wrong sizes) are an error.
    pub fn decode(mut data: &[u8]) -> Result<Self, NoiseError> {
        let mut a = Additional::default();
        while !data.is_empty() {
            let [ty, len, rest @ ..] = data else {
                return Err(NoiseError::BadAdditionalData);
            };
            let len = usize::from(*len);
            let value = rest.get(..len).ok_or(NoiseError::BadAdditionalData)?;
            match (*ty, len) {
                (PADDING, _) if value.iter().all(|b| *b == 0) => {}
                (PADDING, _) => return Err(NoiseError::BadAdditionalData),
                (CJDNS_PSK, 8) => a.psk_lookup = value.try_into().ok(),
                (PKTMESH_PSK, 8) => a.pktmesh_psk = value.try_into().ok(),
                (PREV_SESS_INDEX, 4) => {
                    a.prev_session_index = value.try_into().ok().map(u32::from_le_bytes)
                }
                (CJDNS_VER, 4) => a.version = value.try_into().ok().map(u32::from_le_bytes),
                (CJDNS_PSK | PREV_SESS_INDEX | CJDNS_VER | PKTMESH_PSK, _) => {
                    return Err(NoiseError::BadAdditionalData)
                }
                _ => {}
            }
            data = rest.get(len..).unwrap_or_default();
        }
        Ok(a)
    }

    /// The user lookup the initiator sent, from either entity. Both present and different is
    /// malformed.
    pub fn user_lookup(&self) -> Result<Option<[u8; 8]>, NoiseError> {
        match (self.psk_lookup, self.pktmesh_psk) {
            (Some(a), Some(b)) if a != b => Err(NoiseError::BadAdditionalData),
            (a, b) => Ok(a.or(b)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Digest §6.3.1 derived example: login "", password `password`.
    #[test]
    fn psk_vector() {
        let c = Credentials::derive(b"", b"password");
        let psk = hex::encode(c.psk());
        assert!(
            psk.starts_with("e328f6c5") && psk.ends_with("6aa6bd5a"),
            "{psk}"
        );
        assert_eq!(hex::encode(c.lookup()), "030add5b59c1fc5e");
    }

    /// Digest §6.3.2 layouts.
    #[test]
    fn encode_examples() {
        let mut out = [0u8; MAX_ADDITIONAL];
        let a = Additional {
            version: Some(22),
            ..Default::default()
        };
        let n = a.encode(&mut out);
        assert_eq!(hex::encode(&out[..n]), "0000030416000000");
        let lookup = [3, 1, 2, 3, 4, 5, 6, 7];
        let a = Additional {
            version: Some(22),
            psk_lookup: Some(lookup),
            ..Default::default()
        };
        let n = a.encode(&mut out);
        assert_eq!(hex::encode(&out[..n]), "03041600000001080301020304050607");
        let a = Additional {
            prev_session_index: Some(0x0403_0201),
            ..a
        };
        let n = a.encode(&mut out);
        assert_eq!(
            hex::encode(&out[..n]),
            "000003041600000001080301020304050607020401020304"
        );
        assert_eq!(Additional::decode(&out[..n]).unwrap(), a);
        // Pad sizes 3 and 5.
        let a = Additional {
            prev_session_index: Some(1),
            ..Default::default()
        };
        let n = a.encode(&mut out);
        assert_eq!(n % 4, 0);
        assert_eq!(Additional::decode(&out[..n]).unwrap(), a);
    }

    /// What a pktmesh initiator sends: CjdnsVer and PktmeshPsk, 16 bytes, no padding.
    #[test]
    fn pktmesh_psk_entity() {
        let mut out = [0u8; MAX_ADDITIONAL];
        let lookup = [3, 1, 2, 3, 4, 5, 6, 7];
        let a = Additional {
            version: Some(22),
            pktmesh_psk: Some(lookup),
            ..Default::default()
        };
        let n = a.encode(&mut out);
        assert_eq!(hex::encode(&out[..n]), "03041600000050080301020304050607");
        let back = Additional::decode(&out[..n]).unwrap();
        assert_eq!((back, back.user_lookup()), (a, Ok(Some(lookup))));
        let both = Additional {
            psk_lookup: Some([3, 9, 9, 9, 9, 9, 9, 9]),
            ..a
        };
        assert_eq!(both.user_lookup(), Err(NoiseError::BadAdditionalData));
        assert!(
            Additional::decode(&[0x50, 4, 1, 2, 3, 4]).is_err(),
            "8 bytes or nothing"
        );
    }

    #[test]
    fn malformed() {
        assert!(Additional::decode(&[1]).is_err());
        assert!(Additional::decode(&[1, 8, 3]).is_err());
        assert!(Additional::decode(&[0, 1, 1]).is_err());
        assert!(Additional::decode(&[3, 3, 1, 2, 3]).is_err());
        assert_eq!(
            Additional::decode(&[9, 1, 7]).unwrap(),
            Additional::default()
        );
    }
}
