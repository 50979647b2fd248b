//! Every real capture, fed to the streaming splitter at many chunk sizes, gives exactly the
//! documents and values that an independent reading (NUL split + regular expressions) finds.

mod common;

use common::{all_plist_fixtures, expected, independent_docs};
use tracing_energy::power::plist_stream::{parse_document, DocProblem, PlistSplitter};

const CHUNK_SIZES: [usize; 12] = [1, 2, 3, 5, 7, 8, 13, 64, 511, 4096, 65536, usize::MAX];

fn split_in_chunks(bytes: &[u8], chunk: usize) -> (Vec<Vec<u8>>, usize) {
    let mut s = PlistSplitter::new();
    let mut docs = Vec::new();
    for piece in bytes.chunks(chunk.min(bytes.len()).max(1)) {
        docs.extend(s.push(piece));
    }
    (docs, s.pending().len())
}

#[test]
fn splitter_finds_every_document_at_every_chunk_size() {
    let fixtures = all_plist_fixtures();
    assert!(fixtures.len() >= 7, "copied fixtures missing: {fixtures:?}");
    for path in fixtures {
        let bytes = std::fs::read(&path).unwrap();
        let want = independent_docs(&bytes);
        for chunk in CHUNK_SIZES {
            let (got, _pending) = split_in_chunks(&bytes, chunk);
            assert_eq!(
                got.len(),
                want.len(),
                "{}: chunk {chunk}: {} documents, expected {}",
                path.display(),
                got.len(),
                want.len()
            );
            for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    g == w,
                    "{}: chunk {chunk}: document {k} differs",
                    path.display()
                );
            }
        }
        let (_, pending) = split_in_chunks(&bytes, usize::MAX);
        assert_eq!(
            pending,
            0,
            "{}: bytes left after the last document",
            path.display()
        );
    }
}

#[test]
fn every_document_reads_as_the_independent_values() {
    let mut checked = 0;
    for path in all_plist_fixtures() {
        let bytes = std::fs::read(&path).unwrap();
        let (docs, _) = split_in_chunks(&bytes, 4096);
        for (k, doc) in docs.iter().enumerate() {
            let what = format!("{} document {k}", path.display());
            match (expected(doc), parse_document(doc)) {
                (Some(want), Ok(got)) => {
                    assert_eq!(got.elapsed_ns, want.elapsed_ns, "{what}");
                    assert_eq!(got.energy.cpu, want.cpu_mj, "{what}: cpu");
                    assert_eq!(got.energy.gpu, want.gpu_mj, "{what}: gpu");
                    assert_eq!(got.energy.ane, want.ane_mj, "{what}: ane");
                    assert_eq!(
                        got.energy.dram, None,
                        "{what}: DRAM is not measured on macOS 13+"
                    );
                    // Power = energy / elapsed agrees with powermetrics' own cpu_power up to
                    // the rounding of the integer millijoules.
                    if let (Some(mj), Some(pm_mw)) = (want.cpu_mj, want.cpu_power_mw) {
                        let elapsed_s = want.elapsed_ns as f64 / 1e9;
                        let ours = mj / elapsed_s;
                        let slack = 1.0 / elapsed_s + 0.01 * pm_mw;
                        assert!(
                            (ours - pm_mw).abs() <= slack,
                            "{what}: {ours} mW vs powermetrics' {pm_mw} mW"
                        );
                    }
                    checked += 1;
                }
                (None, Err(DocProblem::NoPowerData)) => {}
                (want, got) => panic!("{what}: independent reading {want:?}, library {got:?}"),
            }
        }
    }
    assert!(checked >= 11, "only {checked} documents checked");
}

#[test]
fn m2_ultra_energy_above_u16_is_exact() {
    let bytes = std::fs::read(common::local_fixture(
        "m2ultra_mac14-14_macos14.4_23E224_cpu_gpu_thermal.plist",
    ))
    .unwrap();
    let r = parse_document(&independent_docs(&bytes)[0]).unwrap();
    // The processor dictionary's value is used (the gpu dictionary says 73491).
    assert_eq!(r.energy.gpu, Some(72607.0));
    assert_eq!(r.hw_model.as_deref(), Some("Mac14,14"));
}

#[test]
fn truncated_capture_leaves_the_partial_document_pending() {
    let bytes = std::fs::read(common::local_fixture(common::M4PRO_GPU_5)).unwrap();
    let cut = bytes.len() - 100;
    let (docs, pending) = split_in_chunks(&bytes[..cut], 1000);
    assert_eq!(docs.len(), 4);
    assert!(pending > 0);
}
