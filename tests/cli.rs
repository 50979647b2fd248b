//! The `tracing-energy` binary: `sample` and `doctor`.

mod common;

use std::process::Command;

use common::{expected, fake_with_env, independent_docs, local_fixture, shared_fixture};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tracing-energy"))
}

#[test]
fn sample_jsonl_through_the_powermetrics_env_override() {
    let Some(capture) = shared_fixture(common::M1PRO_29) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let fake = fake_with_env(
        dir.path(),
        &[("FAKE_POWERMETRICS_CAPTURE", capture.to_str().unwrap())],
    );
    let out = bin()
        .args([
            "sample",
            "--source",
            "powermetrics",
            "--interval-ms",
            "125",
            "--count",
            "4",
            "--format",
            "jsonl",
        ])
        .env("TRACING_ENERGY_POWERMETRICS", &fake)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want: Vec<_> = independent_docs(&std::fs::read(&capture).unwrap())
        .iter()
        .filter_map(|d| expected(d))
        .collect();
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    for (line, w) in lines.iter().zip(&want) {
        for key in [
            "source",
            "start_ns",
            "end_ns",
            "elapsed_ms",
            "cpu_mw",
            "gpu_mw",
            "ane_mw",
            "dram_mw",
            "total_mw",
            "energy_mj",
            "estimated",
        ] {
            assert!(line.get(key).is_some(), "missing {key} in {line}");
        }
        assert_eq!(line["source"], "powermetrics");
        assert_eq!(line["estimated"], false);
        assert!(line["dram_mw"].is_null(), "unknown DRAM is null: {line}");
        let total = w.cpu_mj.unwrap() + w.gpu_mj.unwrap() + w.ane_mj.unwrap();
        assert_eq!(line["energy_mj"].as_f64().unwrap(), total);
        let elapsed_ms = line["elapsed_ms"].as_f64().unwrap();
        let cpu_mw = line["cpu_mw"].as_f64().unwrap();
        assert!((cpu_mw - w.cpu_mj.unwrap() / elapsed_ms * 1000.0).abs() < 1e-6);
    }
}

#[test]
fn sample_table_from_a_replay() {
    let path = local_fixture("m1_macbookpro17-1_macos13.3_22E252_cpu_gpu_thermal_b.plist");
    let out = bin()
        .args(["sample", "--source", &format!("replay:{}", path.display())])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[0].contains("cpu_mW") && lines[0].contains("dram_mW"));
    assert!(lines[1].contains("replay:"), "{stdout}");
    // DRAM is shown as unknown, not 0.
    assert!(lines[1].split_whitespace().any(|c| c == "-"), "{stdout}");
}

#[test]
fn sample_estimate_is_marked_estimated() {
    let out = bin()
        .args([
            "sample",
            "--source",
            "estimate",
            "--interval-ms",
            "20",
            "--count",
            "3",
            "--format",
            "jsonl",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ESTIMATE"));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 3);
    for l in stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert_eq!(v["estimated"], true);
        assert!(v["gpu_mw"].is_null() && v["ane_mw"].is_null() && v["dram_mw"].is_null());
    }
}

#[test]
fn sample_failures_exit_nonzero_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let fake = fake_with_env(dir.path(), &[("FAKE_POWERMETRICS_MODE", "superuser")]);
    let out = bin()
        .args(["sample", "--source", "powermetrics"])
        .env("TRACING_ENERGY_POWERMETRICS", &fake)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("must be invoked as the superuser"),
        "{stderr}"
    );

    let out = bin()
        .args(["sample", "--source", "bogus"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown power source `bogus`"));
}

#[test]
fn doctor_lists_every_source_with_a_reason() {
    let out = bin()
        .arg("doctor")
        .env_remove("TRACING_ENERGY_POWERMETRICS")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("powermetrics")
            && stdout.contains("estimate")
            && stdout.contains("replay:PATH"),
        "{stdout}"
    );
    if cfg!(not(target_os = "macos")) {
        assert!(stdout.contains("only on macOS"), "{stdout}");
        assert!(stdout.contains("fix:"), "{stdout}");
        assert!(stdout.contains("auto picks: estimate"), "{stdout}");
    }
}
