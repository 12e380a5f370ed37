//! PacketCrypt announcements: the 1024-byte layout as a checked view ([`Announcement`]), the
//! header fields as a plain value ([`AnnHeader`]), and `CheckAnn` ([`check_ann`]) with the v0
//! and v1 rules in the reference order.
//!
//! Layout: `[0]` version, `[1,4)` soft nonce (LE24), `[4,8)` hard nonce, `[8,12)` work bits,
//! `[12,16)` parent block height, `[16,20)` content type, `[20,24)` content length, `[24,56)`
//! content hash, `[56,88)` signing key, `[88,920)` 13 merkle siblings, `[920,984)` merkle root,
//! `[984,1024)` item-4 prefix. In v1 the siblings and the prefix are XOR-encrypted with the
//! final CryptoCycle state.
//!
//! Validity contract: [`Announcement::new_checked`] accepts exactly 1024 bytes; after that every
//! accessor is infallible. Validation never panics on any 1024-byte input.

use crate::cryptocycle::{State, ITEM_LEN};
use crate::difficulty::{ann_soft_nonce_max, is_hash_ok};
use crate::hash::{b2b512, b2b512_parts};
use crate::item::{merkle_branch_is_valid, mkitem_v0, ItemBuilder, TABLE_ITEMS};
use crate::randhash::{Program, RandHashError};

/// Size of an announcement.
pub const ANN_LEN: usize = 1024;
/// Size of the announcement header that is hashed (`PcAnnHeaderLen`).
pub const ANN_HEADER_LEN: usize = 88;
/// Offset of the merkle branch (13 × 64 bytes).
pub const MERKLE_BRANCH_OFFSET: usize = 88;
/// Offset of the 64-byte merkle root.
pub const MERKLE_ROOT_OFFSET: usize = 920;
/// Offset of the 40-byte item-4 prefix.
pub const ITEM4_PREFIX_OFFSET: usize = 984;
/// Length of the item-4 prefix.
pub const ITEM4_PREFIX_LEN: usize = 40;
/// First parent block height at which version-1 announcements are allowed.
pub const ANN_V1_MIN_PARENT_HEIGHT: u32 = 103_869;

/// Why an announcement is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnnError {
    /// Not exactly 1024 bytes.
    #[error("announcement must be {ANN_LEN} bytes, got {0}")]
    Length(usize),
    /// Unknown announcement version.
    #[error("unknown announcement version {0}")]
    UnknownVersion(u8),
    /// Version 1 announcement whose parent block is below the v1 activation height.
    #[error("announcement version {version} not allowed at parent height {parent_height}")]
    VersionNotAllowed {
        /// Announcement version.
        version: u8,
        /// Its parent block height.
        parent_height: u32,
    },
    /// A PcP version ≥ 2 block may only use version ≥ 1 announcements.
    #[error("announcement version {ann_version} not allowed in PcP version {pcp_version}")]
    VersionMismatch {
        /// Announcement version.
        ann_version: u8,
        /// PcP version of the block.
        pcp_version: u32,
    },
    /// Soft nonce above the limit for the announcement's work bits.
    #[error("soft nonce {soft_nonce} above maximum {max}")]
    SoftNonceHigh {
        /// The soft nonce.
        soft_nonce: u32,
        /// The limit for the work bits.
        max: u32,
    },
    /// RandGen or RandHash rejected a program.
    #[error("bad RandHash program: {0}")]
    BadProgram(#[from] RandHashError),
    /// The item-4 prefix is wrong (v1: not zero after decryption).
    #[error("item 4 prefix mismatch")]
    InvalidItem4,
    /// The merkle branch does not prove the last item.
    #[error("merkle branch does not match the root")]
    InvalidMerkle,
    /// The announcement hash does not meet its own work bits.
    #[error("announcement work hash does not meet target {target:08x}")]
    InsufficientWork {
        /// The work bits.
        target: u32,
        /// The computed work hash (raw byte order).
        work_hash: [u8; 32],
    },
}

/// A checked view of a 1024-byte announcement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Announcement<T: AsRef<[u8]>> {
    buf: T,
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl<T: AsRef<[u8]>> Announcement<T> {
    /// Wraps `buf` after checking that it is exactly 1024 bytes.
    pub fn new_checked(buf: T) -> Result<Self, AnnError> {
        let len = buf.as_ref().len();
        if len != ANN_LEN {
            return Err(AnnError::Length(len));
        }
        Ok(Announcement { buf })
    }

    /// The underlying bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.as_ref()
    }

    /// The bytes as a fixed-size array reference.
    pub fn as_array(&self) -> &[u8; ANN_LEN] {
        // new_checked guarantees the length.
        self.buf.as_ref().try_into().unwrap_or(&[0u8; ANN_LEN])
    }

    /// Consumes the view, returning the buffer.
    pub fn into_inner(self) -> T {
        self.buf
    }

    /// Announcement version (byte 0).
    pub fn version(&self) -> u8 {
        self.as_bytes()[0]
    }
    /// Soft nonce (24-bit LE at bytes 1..4).
    pub fn soft_nonce(&self) -> u32 {
        le32(self.as_bytes(), 0) >> 8
    }
    /// Hard nonce.
    pub fn hard_nonce(&self) -> u32 {
        le32(self.as_bytes(), 4)
    }
    /// Compact work target the announcement claims.
    pub fn work_bits(&self) -> u32 {
        le32(self.as_bytes(), 8)
    }
    /// Height of the block whose hash is committed.
    pub fn parent_block_height(&self) -> u32 {
        le32(self.as_bytes(), 12)
    }
    /// Content type (opaque to consensus).
    pub fn content_type(&self) -> u32 {
        le32(self.as_bytes(), 16)
    }
    /// Content length.
    pub fn content_length(&self) -> u32 {
        le32(self.as_bytes(), 20)
    }
    /// Content (if ≤ 32 bytes) or content merkle root.
    pub fn content_hash(&self) -> &[u8] {
        &self.as_bytes()[24..56]
    }
    /// Ed25519 signing key; all zero means none.
    pub fn signing_key(&self) -> &[u8] {
        &self.as_bytes()[56..88]
    }
    /// Whether a signing key is present.
    pub fn has_signing_key(&self) -> bool {
        self.signing_key().iter().any(|&b| b != 0)
    }
    /// The 88-byte header.
    pub fn header(&self) -> &[u8] {
        &self.as_bytes()[..ANN_HEADER_LEN]
    }
    /// The 64-byte merkle root (stored in clear).
    pub fn merkle_root(&self) -> &[u8] {
        &self.as_bytes()[MERKLE_ROOT_OFFSET..MERKLE_ROOT_OFFSET + 64]
    }
    /// The decoded header fields.
    pub fn header_repr(&self) -> AnnHeader {
        let mut content_hash = [0u8; 32];
        content_hash.copy_from_slice(self.content_hash());
        let mut signing_key = [0u8; 32];
        signing_key.copy_from_slice(self.signing_key());
        AnnHeader {
            version: self.version(),
            soft_nonce: self.soft_nonce(),
            hard_nonce: self.hard_nonce(),
            work_bits: self.work_bits(),
            parent_block_height: self.parent_block_height(),
            content_type: self.content_type(),
            content_length: self.content_length(),
            content_hash,
            signing_key,
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Announcement<T> {
    /// Sets the 24-bit soft nonce (higher bits are ignored).
    pub fn set_soft_nonce(&mut self, soft_nonce: u32) {
        let b = soft_nonce.to_le_bytes();
        self.buf.as_mut()[1..4].copy_from_slice(&b[..3]);
    }
}

/// The header fields of an announcement (bytes `[0,88)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AnnHeader {
    /// Version (0 or 1).
    pub version: u8,
    /// 24-bit soft nonce.
    pub soft_nonce: u32,
    /// Hard nonce.
    pub hard_nonce: u32,
    /// Compact work target.
    pub work_bits: u32,
    /// Parent block height.
    pub parent_block_height: u32,
    /// Content type.
    pub content_type: u32,
    /// Content length.
    pub content_length: u32,
    /// Content or content root.
    pub content_hash: [u8; 32],
    /// Ed25519 signing key (zero = none).
    pub signing_key: [u8; 32],
}

impl AnnHeader {
    /// Serialises the header into its 88 bytes.
    pub fn emit(&self) -> [u8; ANN_HEADER_LEN] {
        let mut out = [0u8; ANN_HEADER_LEN];
        out[0] = self.version;
        out[1..4].copy_from_slice(&self.soft_nonce.to_le_bytes()[..3]);
        out[4..8].copy_from_slice(&self.hard_nonce.to_le_bytes());
        out[8..12].copy_from_slice(&self.work_bits.to_le_bytes());
        out[12..16].copy_from_slice(&self.parent_block_height.to_le_bytes());
        out[16..20].copy_from_slice(&self.content_type.to_le_bytes());
        out[20..24].copy_from_slice(&self.content_length.to_le_bytes());
        out[24..56].copy_from_slice(&self.content_hash);
        out[56..88].copy_from_slice(&self.signing_key);
        out
    }
}

/// `annHash0 = B2b512(header88 with soft nonce zeroed ‖ parentHash ‖ 0^32)`.
pub fn ann_hash0(header: &[u8], parent_hash: &[u8; 32]) -> [u8; 64] {
    let mut hdr = [0u8; ANN_HEADER_LEN];
    hdr.copy_from_slice(&header[..ANN_HEADER_LEN]);
    hdr[1..4].fill(0);
    b2b512_parts(&[&hdr, parent_hash, &[0u8; 32]])
}

/// `annHash1 = B2b512(header88 with soft nonce zeroed ‖ merkleRoot64)`.
pub fn ann_hash1(header: &[u8], merkle_root: &[u8]) -> [u8; 64] {
    let mut hdr = [0u8; ANN_HEADER_LEN];
    hdr.copy_from_slice(&header[..ANN_HEADER_LEN]);
    hdr[1..4].fill(0);
    b2b512_parts(&[&hdr, merkle_root])
}

/// Seed of the v1 hashing table T1: `B2b512(merkleRoot64 ‖ annHash0)`.
pub fn v1_table_seed(merkle_root: &[u8], ann_hash0: &[u8; 64]) -> [u8; 64] {
    b2b512_parts(&[merkle_root, ann_hash0])
}

/// First half of a 64-byte hash.
pub fn lo32(h: &[u8; 64]) -> [u8; 32] {
    let mut o = [0u8; 32];
    o.copy_from_slice(&h[..32]);
    o
}

/// Second half of a 64-byte hash.
pub fn hi32(h: &[u8; 64]) -> [u8; 32] {
    let mut o = [0u8; 32];
    o.copy_from_slice(&h[32..]);
    o
}

/// XORs the encrypted regions of a v1 announcement with the final CryptoCycle state
/// (branch `[88,920)` with `state[0,832)`, prefix `[984,1024)` with `state[832,872)`).
pub fn xor_v1_encrypted_regions(ann: &mut [u8; ANN_LEN], final_state: &State) {
    let s = final_state.bytes();
    for (a, k) in ann[MERKLE_BRANCH_OFFSET..MERKLE_ROOT_OFFSET]
        .iter_mut()
        .zip(&s[..832])
    {
        *a ^= k;
    }
    for (a, k) in ann[ITEM4_PREFIX_OFFSET..].iter_mut().zip(&s[832..872]) {
        *a ^= k;
    }
}

/// Result of a successful check, with the intermediate values (useful for debugging).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnCheck {
    /// The work hash (raw byte order; compare as a little-endian number).
    pub work_hash: [u8; 32],
    /// `annHash0`.
    pub ann_hash0: [u8; 64],
    /// `annHash1`.
    pub ann_hash1: [u8; 64],
    /// The four table item numbers, in hashing order.
    pub item_nos: [u32; 4],
}

/// Reusable scratch space for announcement validation.
#[derive(Debug)]
pub struct AnnValidator {
    items: ItemBuilder,
    state: Box<State>,
    item: Box<[u8; ITEM_LEN]>,
}

impl Default for AnnValidator {
    fn default() -> Self {
        AnnValidator {
            items: ItemBuilder::new(),
            state: Box::default(),
            item: Box::new([0u8; ITEM_LEN]),
        }
    }
}

impl AnnValidator {
    /// New scratch space.
    pub fn new() -> Self {
        Self::default()
    }

    /// `CheckAnn(ann, parentHash, pcpVersion)`; `parent_hash` is in raw (internal) byte order.
    pub fn check(
        &mut self,
        ann: &[u8],
        parent_hash: &[u8; 32],
        pcp_version: u32,
    ) -> Result<AnnCheck, AnnError> {
        let ann = Announcement::new_checked(ann)?;
        let version = ann.version();
        if version > 1 {
            return Err(AnnError::UnknownVersion(version));
        }
        let parent_height = ann.parent_block_height();
        if version > 0 && parent_height < ANN_V1_MIN_PARENT_HEIGHT {
            return Err(AnnError::VersionNotAllowed {
                version,
                parent_height,
            });
        }
        if pcp_version >= 2 && version < 1 {
            return Err(AnnError::VersionMismatch {
                ann_version: version,
                pcp_version,
            });
        }
        let h0 = ann_hash0(ann.header(), parent_hash);
        let h1 = ann_hash1(ann.header(), ann.merkle_root());
        let soft_nonce = ann.soft_nonce();
        let mut item_nos = [0u32; 4];

        if version == 1 {
            let max = ann_soft_nonce_max(ann.work_bits());
            if soft_nonce > max {
                return Err(AnnError::SoftNonceHigh { soft_nonce, max });
            }
            let seed1 = v1_table_seed(ann.merkle_root(), &h0);
            let prog = Program::create(&lo32(&seed1))?;
            let item_seed = hi32(&seed1);
            self.state.init(&lo32(&h1), u64::from(soft_nonce));
            for n in item_nos.iter_mut() {
                *n = (self.state.item_no() % TABLE_ITEMS as u64) as u32;
                self.items
                    .mkitem2(u64::from(*n), &item_seed, &prog, &mut self.item)?;
                self.state.update(&self.item);
            }
            self.state.finalize();
            let mut clear = *ann.as_array();
            xor_v1_encrypted_regions(&mut clear, &self.state);
            if clear[ITEM4_PREFIX_OFFSET..].iter().any(|&b| b != 0) {
                return Err(AnnError::InvalidItem4);
            }
            let prog0 = Program::create(&lo32(&h0))?;
            self.items
                .mkitem2(u64::from(item_nos[3]), &hi32(&h0), &prog0, &mut self.item)?;
            let leaf = b2b512(&self.item[..]);
            if !merkle_branch_is_valid(
                &leaf,
                item_nos[3] as usize,
                &clear[MERKLE_BRANCH_OFFSET..MERKLE_ROOT_OFFSET],
                &clear[MERKLE_ROOT_OFFSET..ITEM4_PREFIX_OFFSET],
            ) {
                return Err(AnnError::InvalidMerkle);
            }
        } else {
            let seed = lo32(&h0);
            self.state.init(&lo32(&h1), u64::from(soft_nonce));
            for n in item_nos.iter_mut() {
                *n = (self.state.item_no() % TABLE_ITEMS as u64) as u32;
                mkitem_v0(*n, &seed, &mut self.item);
                self.items.update_v0(&mut self.state, &self.item)?;
            }
            if self.item[..ITEM4_PREFIX_LEN] != ann.as_bytes()[ITEM4_PREFIX_OFFSET..] {
                return Err(AnnError::InvalidItem4);
            }
            let leaf = b2b512(&self.item[..]);
            if !merkle_branch_is_valid(
                &leaf,
                item_nos[3] as usize,
                &ann.as_bytes()[MERKLE_BRANCH_OFFSET..MERKLE_ROOT_OFFSET],
                ann.merkle_root(),
            ) {
                return Err(AnnError::InvalidMerkle);
            }
            self.state.finalize();
        }

        let work_hash = self.state.hash();
        if !is_hash_ok(&work_hash, ann.work_bits()) {
            return Err(AnnError::InsufficientWork {
                target: ann.work_bits(),
                work_hash,
            });
        }
        Ok(AnnCheck {
            work_hash,
            ann_hash0: h0,
            ann_hash1: h1,
            item_nos,
        })
    }
}

/// `CheckAnn` with fresh scratch space; see [`AnnValidator::check`].
pub fn check_ann(
    ann: &[u8],
    parent_hash: &[u8; 32],
    pcp_version: u32,
) -> Result<AnnCheck, AnnError> {
    AnnValidator::new().check(ann, parent_hash, pcp_version)
}
