//! Arbitrary bytes as `cjdroute.conf`: loading never panics; it is a config or an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pktmesh_node::config::Config;

fuzz_target!(|data: &[u8]| {
    let _ = Config::load(data, "fuzz.conf");
});
