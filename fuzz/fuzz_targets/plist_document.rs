//! Feeds arbitrary bytes straight to `parse_document` (one powermetrics plist document).
//!
//! Panics when `parse_document` panics, or when it returns a reading that breaks its
//! contract: `elapsed_ns >= 1`, at least one energy, and every energy `None` or finite and
//! non-negative (errors are fine: most inputs are not plists at all).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracing_energy::power::plist_stream::parse_document;

fuzz_target!(|data: &[u8]| {
    if let Ok(reading) = parse_document(data) {
        assert!(reading.elapsed_ns >= 1, "elapsed_ns is 0");
        let e = reading.energy;
        assert!(e.total().is_some(), "a reading without energies: {e:?}");
        for v in [e.cpu, e.gpu, e.ane, e.dram].into_iter().flatten() {
            assert!(v.is_finite() && v >= 0.0, "energy {v} in {e:?}");
        }
    }
});
