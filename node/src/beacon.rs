//! UDP beacons: LAN auto-peering as cjdns 22.3 does it (`UDPInterface.c`, `InterfaceController.c`).
//!
//! A node with beaconing on broadcasts, every [`BEACON_INTERVAL`], a 64-byte beacon to the
//! beacon port of every IPv4 broadcast address: `FF FF FF FC`, version 0, a zero byte, its data
//! port, then its protocol version, a 20-byte password and its public key. A node that hears a
//! beacon from a new address peers with the sender (data address = source IP + the advertised
//! port) using that password with the login `Local Peers`, and pings it at once, so the
//! receiver of a beacon is the CryptoAuth initiator. Each node authorizes its own beacon
//! password under `Local Peers`.
//!
//! On Ethernet (cjdns ETHInterface) the same beacon travels without the 8-byte UDP header: the
//! 56-byte body ([`BODY_LEN`]) right after the Ethernet frame header, broadcast to
//! `ff:ff:ff:ff:ff:ff`; the sender is addressed by its MAC ([`Beacon::parse_body`]).
//!
//! Only the beacon format lives here; sockets and broadcast addresses are the daemon's.

use std::time::Duration;

use pktmesh_crypto_auth::PublicKey;
use rand_core::RngCore;
use thiserror::Error;

/// The first four bytes of every UDP beacon.
pub const BEACON_MAGIC: [u8; 4] = [0xff, 0xff, 0xff, 0xfc];
/// Size of a UDP beacon: 8-byte broadcast header + 56-byte beacon.
pub const BEACON_LEN: usize = 64;
/// Size of the beacon proper (cjdns `Headers_Beacon`: version, password, key), which is all an
/// Ethernet beacon carries.
pub const BODY_LEN: usize = 56;
/// Where the body starts in a UDP beacon.
const UDP_HEADER_LEN: usize = BEACON_LEN - BODY_LEN;
/// Length of the beacon password.
pub const PASSWORD_LEN: usize = 20;
/// How often beacons are sent.
pub const BEACON_INTERVAL: Duration = Duration::from_millis(32768);
/// The login beacon peers authenticate with.
pub const LOCAL_PEERS_LOGIN: &[u8] = b"Local Peers";
/// Most peers a node makes from beacons at once (a beacon peer is forgotten after
/// [`crate::peers::FORGET_AFTER`] of silence). Beacons can be forged by any host on the link,
/// so without a cap they could take every peer slot.
pub const MAX_BEACON_PEERS: usize = 32;
/// The protocol version stock 22.3 puts in beacons (Noise is compiled out there); pktmesh
/// peers over legacy CryptoAuth on beacon links too, so it says the same.
pub const BEACON_PROTOCOL_VERSION: u32 = 21;

const BASE32: &[u8; 32] = b"0123456789bcdfghjklmnpqrstuvwxyz";

/// Why a datagram on the beacon port is not a usable beacon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum BeaconError {
    /// Shorter than a beacon.
    #[error("beacon of {len} bytes, {expected} expected")]
    Runt {
        /// Bytes received.
        len: usize,
        /// Bytes a beacon has in this framing.
        expected: usize,
    },
    /// Not `FF FF FF FC`.
    #[error("bad beacon magic")]
    BadMagic,
    /// Header version is not 0 or the zero byte is not zero.
    #[error("unsupported beacon header")]
    BadHeader,
    /// The key's address is not in fc00::/8.
    #[error("beacon key is not a valid cjdns key")]
    BadKey,
    /// The sender's protocol version is known to be incompatible (1..=19).
    #[error("beacon from incompatible protocol version {0}")]
    IncompatibleVersion(u32),
    /// A beacon from a new peer while the node has as many peers from beacons as it takes.
    #[error("already {0} peers from beacons; no more until one is forgotten")]
    TooManyBeaconPeers(usize),
}

/// A parsed beacon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Beacon {
    /// The sender's data (comm) port (0 for Ethernet beacons, whose sender is its MAC).
    pub data_port: u16,
    /// The sender's protocol version (0 = unknown).
    pub version: u32,
    /// The password to peer with.
    pub password: [u8; PASSWORD_LEN],
    /// The sender's key.
    pub key: PublicKey,
}

impl Beacon {
    /// Parses a beacon datagram (extra bytes after the 64 are ignored, as in cjdns).
    pub fn parse(data: &[u8]) -> Result<Self, BeaconError> {
        let b = data.first_chunk::<BEACON_LEN>().ok_or(BeaconError::Runt {
            len: data.len(),
            expected: BEACON_LEN,
        })?;
        if b[..4] != BEACON_MAGIC {
            return Err(BeaconError::BadMagic);
        }
        if b[4] != 0 || b[5] != 0 {
            return Err(BeaconError::BadHeader);
        }
        let data_port = u16::from_be_bytes([b[6], b[7]]);
        Ok(Self {
            data_port,
            ..Self::parse_body(&b[UDP_HEADER_LEN..])?
        })
    }

    /// Parses the beacon body an Ethernet beacon carries (extra bytes are ignored); the data
    /// port is 0.
    pub fn parse_body(body: &[u8]) -> Result<Self, BeaconError> {
        let b = body.first_chunk::<BODY_LEN>().ok_or(BeaconError::Runt {
            len: body.len(),
            expected: BODY_LEN,
        })?;
        let version = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let mut password = [0u8; PASSWORD_LEN];
        password.copy_from_slice(&b[4..24]);
        let mut key = [0u8; 32];
        key.copy_from_slice(&b[24..]);
        let key = PublicKey::from_bytes(key);
        if !key.is_valid() {
            return Err(BeaconError::BadKey);
        }
        if (1..20).contains(&version) {
            return Err(BeaconError::IncompatibleVersion(version));
        }
        Ok(Self {
            data_port: 0,
            version,
            password,
            key,
        })
    }

    /// The 56-byte body (what an Ethernet beacon carries after its frame header).
    pub fn body_bytes(&self) -> [u8; BODY_LEN] {
        let mut out = [0u8; BODY_LEN];
        out[..4].copy_from_slice(&self.version.to_be_bytes());
        out[4..24].copy_from_slice(&self.password);
        out[24..].copy_from_slice(self.key.as_bytes());
        out
    }

    /// The 64 bytes on the wire.
    pub fn to_bytes(&self) -> [u8; BEACON_LEN] {
        let mut out = [0u8; BEACON_LEN];
        out[..4].copy_from_slice(&BEACON_MAGIC);
        out[6..8].copy_from_slice(&self.data_port.to_be_bytes());
        out[UDP_HEADER_LEN..].copy_from_slice(&self.body_bytes());
        out
    }
}

/// A fresh beacon password: 19 random base32 characters and a NUL, as cjdns makes it.
pub fn new_password(rng: &mut impl RngCore) -> [u8; PASSWORD_LEN] {
    let mut out = [0u8; PASSWORD_LEN];
    for c in out.iter_mut().take(PASSWORD_LEN - 1) {
        *c = BASE32[(rng.next_u32() % 32) as usize];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use pktmesh_crypto_auth::PrivateKey;

    fn key() -> PublicKey {
        PrivateKey::from_hex("751d3db85b848deaf221e0ed2b6cc17f587b29057d74cdd4dc0bd18b7157288e")
            .unwrap()
            .public_key()
    }

    #[test]
    fn round_trip_and_layout() {
        let b = Beacon {
            data_port: 11002,
            version: 21,
            password: *b"abcdefghijklmnopqrs\0",
            key: key(),
        };
        let bytes = b.to_bytes();
        assert_eq!(&bytes[..8], &[0xff, 0xff, 0xff, 0xfc, 0, 0, 0x2a, 0xfa]);
        assert_eq!(&bytes[8..12], &[0, 0, 0, 21]);
        assert_eq!(Beacon::parse(&bytes), Ok(b));
    }

    #[test]
    fn bad_beacons() {
        let good = Beacon {
            data_port: 1,
            version: 22,
            password: [b'x'; 20],
            key: key(),
        }
        .to_bytes();
        assert_eq!(
            Beacon::parse(&good[..63]),
            Err(BeaconError::Runt {
                len: 63,
                expected: 64
            })
        );
        assert_eq!(
            Beacon::parse_body(&good[8..63]),
            Err(BeaconError::Runt {
                len: 55,
                expected: 56
            })
        );
        let mut m = good;
        m[3] = 0xfd;
        assert_eq!(Beacon::parse(&m), Err(BeaconError::BadMagic));
        let mut m = good;
        m[5] = 1;
        assert_eq!(Beacon::parse(&m), Err(BeaconError::BadHeader));
        let mut m = good;
        m[8..12].copy_from_slice(&19u32.to_be_bytes());
        assert_eq!(Beacon::parse(&m), Err(BeaconError::IncompatibleVersion(19)));
        let mut m = good;
        m[8..12].copy_from_slice(&0u32.to_be_bytes());
        assert!(
            Beacon::parse(&m).is_ok(),
            "version 0 means unknown and is accepted"
        );
        let mut m = good;
        m[32..].fill(0);
        assert_eq!(Beacon::parse(&m), Err(BeaconError::BadKey));
    }

    #[test]
    fn the_ethernet_body_is_the_udp_beacon_without_its_header() {
        let b = Beacon {
            data_port: 0,
            version: 21,
            password: *b"0123456789bcdfghjkl\0",
            key: key(),
        };
        let body = b.body_bytes();
        assert_eq!(body[..], b.to_bytes()[8..]);
        assert_eq!(Beacon::parse_body(&body), Ok(b));
        // The body check rejects what the UDP check rejects.
        let mut m = body;
        m[..4].copy_from_slice(&5u32.to_be_bytes());
        assert_eq!(
            Beacon::parse_body(&m),
            Err(BeaconError::IncompatibleVersion(5))
        );
        let mut m = body;
        m[24..].fill(0);
        assert_eq!(Beacon::parse_body(&m), Err(BeaconError::BadKey));
    }

    #[test]
    fn passwords_are_base32_with_a_nul() {
        use rand_core::SeedableRng;
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([1; 32]);
        let p = new_password(&mut rng);
        assert_eq!(p[19], 0);
        assert!(p[..19].iter().all(|c| BASE32.contains(c)));
    }
}
