//! Shared helpers for the pktmesh criterion benchmarks (the benchmarks live in `benches/`).
#![forbid(unsafe_code)]
