//! Sets `has_avx512_target_feature` where the compiler accepts AVX-512 target features
//! (`#[target_feature(enable = "avx512f,avx512vl,avx512dq")]`, stable since Rust 1.89), so
//! that `src/cpu` can offer its AVX-512 level there and still build with the workspace's MSRV.

fn main() {
    let ac = autocfg::new();
    let probe =
        r#"#[target_feature(enable = "avx2,avx512f,avx512vl,avx512dq")] pub unsafe fn probe() {}"#;
    if ac.probe_raw(probe).is_ok() {
        autocfg::emit("has_avx512_target_feature");
    }
    autocfg::rerun_path("build.rs");
}
