//! PKT mainnet constants: units, block reward schedule, Network Steward share, genesis.

use num_bigint::BigUint;

/// Units ("bits") per PKT.
pub const UNITS_PER_PKT: u64 = 1 << 30;
/// Blocks per reward period (the reward drops by 10 % each period).
pub const REWARD_PERIOD_BLOCKS: u32 = 144_000;
/// Target block time in seconds.
pub const TARGET_BLOCK_SECS: u32 = 60;
/// Blocks between difficulty retargets.
pub const RETARGET_BLOCKS: u32 = 2016;
/// Proof-of-work limit and genesis bits (compact).
pub const POW_LIMIT_BITS: u32 = 0x1f0f_ffff;
/// Coinbase maturity in blocks.
pub const COINBASE_MATURITY: u32 = 100;
/// Network Steward payments become unspendable this many blocks after creation.
pub const STEWARD_EXPIRY_BLOCKS: u32 = 129_600;
/// Network magic.
pub const NETWORK_MAGIC: u32 = 0x082f_00fc;
/// Default P2P port.
pub const DEFAULT_PORT: u16 = 64764;
/// Genesis block id, display (explorer) byte order.
pub const GENESIS_HASH_DISPLAY: &str =
    "0bdc1712a46194e552cf417ab0439c2d4f456c35cf63a0a406964c6f93432d85";
/// The initial Network Steward output script (P2WSH).
pub const INITIAL_STEWARD_SCRIPT_HEX: &str =
    "0020d5c1005c0d4012d3ae2672319e7f9eb15a57516aeefabbbc062265f67e308f2b";
/// Highest block height at which PcP versions below 2 are allowed.
pub const PCP_V1_LAST_HEIGHT: u32 = 122_621;
/// First block height at which PcP version 2 is allowed.
pub const PCP_V2_FIRST_HEIGHT: u32 = 113_949;

/// Block subsidy in units at `height`: `floor(4166 · 2^30 · 9^p / 10^p)`, `p = height / 144000`.
pub fn block_reward(height: u32) -> u64 {
    let p = height / REWARD_PERIOD_BLOCKS;
    let num = BigUint::from(4166u32) * BigUint::from(UNITS_PER_PKT) * BigUint::from(9u32).pow(p);
    let q = num / BigUint::from(10u32).pow(p);
    q.iter_u64_digits().next().unwrap_or(0)
}

/// The Network Steward's share of the subsidy at `height`: `floor(subsidy · 51 / 256)`.
pub fn steward_share(height: u32) -> u64 {
    let s = u128::from(block_reward(height));
    (s * 51 / 256) as u64
}

/// `IsPacketCryptAllowedVersion`: whether a PcP of `version` may appear at `height`.
pub fn is_pcp_version_allowed(version: u32, height: u32) -> bool {
    if version >= 2 {
        height >= PCP_V2_FIRST_HEIGHT
    } else {
        height <= PCP_V1_LAST_HEIGHT
    }
}
