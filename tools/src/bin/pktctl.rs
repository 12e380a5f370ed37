//! pktctl placeholder.
fn main() {}
