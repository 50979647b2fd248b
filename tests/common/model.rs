//! The default model for tests and benches that run it: `models/` as the README's main job
//! fetches it, fetched by `scripts/fetch-model.sh` when missing.

use std::path::{Path, PathBuf};

/// The default model's path, fetching it first when it is missing.
pub fn default_model() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = root.join(tracing_energy::candle::SMOLLM2_PATH);
    if !path.is_file() {
        let status = std::process::Command::new("bash")
            .arg(root.join("scripts/fetch-model.sh"))
            .status();
        assert!(
            status.as_ref().is_ok_and(|s| s.success()) && path.is_file(),
            "scripts/fetch-model.sh failed: {status:?}"
        );
    }
    path
}
