//! The powermetrics captures the tests and benches read: the ones copied into this
//! repository, and those that stay in `../shared` (their licences do not allow copying).
//! Shared with `benches/powermetrics_parse.rs`, which includes this file by path.

use std::path::{Path, PathBuf};

/// The fixtures copied into this repository.
pub fn local_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/powermetrics")
        .join(name)
}

/// A fixture that stays in `../shared` (its licence does not allow copying). Prints a loud
/// skip notice and returns `None` when `../shared` is not beside the repository.
pub fn shared_fixture(name: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/powermetrics")
        .join(name);
    if p.is_file() {
        Some(p)
    } else {
        eprintln!(
            "!! SKIPPED part of this run: {} is not present (it lives in ../shared beside the \
             repository)",
            p.display()
        );
        None
    }
}

/// The 29-document M1 Pro capture (AGPL-3.0, read from ../shared only).
pub const M1PRO_29: &str =
    "m1pro_macbookpro18-3_macos14.7.2_23H311_default_plus_process_flags_29samples.plist";
/// The 5-document M4 Pro gpu_power capture (MIT, copied).
pub const M4PRO_GPU_5: &str = "m4pro_mac16-8_macos15.5_24F74_gpu_power_5samples.plist";

/// Every copied fixture plus the ../shared-only plist captures that are present.
pub fn all_plist_fixtures() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(local_fixture(""))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "plist"))
        .collect();
    for name in [
        M1PRO_29,
        "m1_macbookair10-1_macos14.3.1_23D56_all_samplers.plist",
        "m1_macbookair10-1_macos14.3.1_23D56_cpu_gpu.plist",
        "m1_macbookair10-1_macos14.3.1_23D56_cpu_power.plist",
    ] {
        v.extend(shared_fixture(name));
    }
    v.sort();
    v
}
