//! Protocol versions (`util/version/Version.{h,c}` of cjdns 22.3).

/// The protocol version this pathfinder speaks (`Version_CURRENT_PROTOCOL`).
pub const CURRENT: u32 = 22;

/// Oldest version whose DHT messages are accepted (`Version_MINIMUM_COMPATIBLE`).
pub const MINIMUM_COMPATIBLE: u32 = 20;

/// For each version, the older versions it declares itself compatible with
/// (`Version_COMPATIBILITY`).
const COMPAT: [&[u32]; 23] = [
    &[0],
    &[0],
    &[1],
    &[1, 2],
    &[1, 2, 3],
    &[1, 2, 3, 4],
    &[5],
    &[5, 6],
    &[5, 6, 7],
    &[5, 6, 7, 8],
    &[7, 8, 9],
    &[7, 8, 9, 10],
    &[7, 8, 9, 10, 11],
    &[12],
    &[12, 13],
    &[12, 13, 14],
    &[12, 13, 14, 15],
    &[16],
    &[16, 17],
    &[16, 17, 18],
    &[16, 17, 18, 19],
    &[20],
    &[21, 20],
];

/// `Version_isCompatible`: versions above [`CURRENT`] count as [`CURRENT`]; equal versions are
/// compatible; otherwise the newer one must list the older one.
pub fn compatible(a: u32, b: u32) -> bool {
    let (a, b) = (a.min(CURRENT), b.min(CURRENT));
    let (older, newer) = if a <= b { (a, b) } else { (b, a) };
    older == newer
        || COMPAT
            .get(newer as usize)
            .is_some_and(|list| list.contains(&older))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix() {
        assert!(compatible(22, 20));
        assert!(compatible(20, 21));
        assert!(compatible(30, 22));
        assert!(compatible(20, 16));
        assert!(!compatible(22, 16));
        assert!(!compatible(21, 19));
        assert!(compatible(0, 0));
    }
}
