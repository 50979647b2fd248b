//! Every real capture, fed to the streaming splitter at many chunk sizes, gives exactly the
//! documents and values that an independent reading (NUL split + regular expressions) finds.

mod common;

use common::{all_plist_fixtures, expected, expected_powermetrics_task, independent_docs};
use tracing_energy::power::plist_stream::{parse_document, DocProblem, PlistSplitter};
use tracing_energy::power::powermetrics_tasks::SamplerTask;

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

/// powermetrics' own task in real task lists: found in every document (the flat `tasks[]`
/// of macOS 26 and the `coalitions[].tasks[]` of `--show-process-coalition`), with its CPU
/// time and all tasks' as the document says, and the window's figure = that share of the
/// measured CPU energy, computed here from the document's own numbers.
#[test]
fn powermetrics_task_and_its_share_of_cpu_energy() {
    let mut captures = vec![common::local_fixture(
        "m4max_mac16-5_macos26.2_25C56_cpu_gpu_thermal_tasks_disk.plist",
    )];
    captures.extend(common::shared_fixture(common::M1PRO_29));
    let mut checked = 0;
    for path in captures {
        let (mut energy_mj, mut window_ns) = (0.0, 0u64);
        for doc in independent_docs(&std::fs::read(&path).unwrap()) {
            let (own_ns, all_ns) = expected_powermetrics_task(&doc).expect("a powermetrics task");
            let want = expected(&doc).unwrap();
            let r = parse_document(&doc).unwrap();
            assert_eq!(
                r.sampler_task,
                Some(SamplerTask::Found {
                    cpu_ns: own_ns,
                    all_tasks_cpu_ns: all_ns
                }),
                "{}",
                path.display()
            );
            let cpu_mj = want.cpu_mj.unwrap();
            let w = r
                .sampler_task
                .unwrap()
                .window(r.energy.cpu, want.elapsed_ns)
                .unwrap();
            let share = own_ns as f64 / all_ns as f64;
            assert!((w.energy_mj - share * cpu_mj).abs() < 1e-9);
            assert_eq!((w.cpu_ns, w.cpu_energy_mj), (own_ns, cpu_mj));
            assert!(share > 0.01 && share < 0.5, "share {share}");
            energy_mj += share * cpu_mj;
            window_ns += want.elapsed_ns;
            checked += 1;
        }
        let mw = energy_mj / (window_ns as f64 / 1e9);
        eprintln!("{}: powermetrics itself {mw:.1} mW", path.display());
        assert!(mw > 1.0 && mw < 2_000.0, "{mw} mW");
    }
    assert!(checked >= 1);
    // The single M4 Max document, by hand: 22,811,666 of 1,578,744,583 ns of CPU time,
    // 3,049 mJ of CPU energy over 1,023,685,416 ns.
    let doc = independent_docs(
        &std::fs::read(common::local_fixture(
            "m4max_mac16-5_macos26.2_25C56_cpu_gpu_thermal_tasks_disk.plist",
        ))
        .unwrap(),
    )
    .remove(0);
    let r = parse_document(&doc).unwrap();
    let w = r
        .sampler_task
        .unwrap()
        .window(r.energy.cpu, r.elapsed_ns)
        .unwrap();
    let mw = w.energy_mj / (w.window_ns as f64 / 1e9);
    assert!((mw - 43.04).abs() < 0.01, "{mw} mW");
}

/// A capture without the `tasks` sampler tells nothing about powermetrics itself.
#[test]
fn no_task_list_no_figure() {
    for name in [
        "m2ultra_mac14-14_macos14.4_23E224_cpu_gpu_thermal.plist",
        common::M4PRO_GPU_5,
    ] {
        let bytes = std::fs::read(common::local_fixture(name)).unwrap();
        for doc in independent_docs(&bytes) {
            assert_eq!(parse_document(&doc).unwrap().sampler_task, None, "{name}");
        }
    }
}
