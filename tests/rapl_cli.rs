//! The `tracing-energy` binary reading RAPL from a fake powercap tree (`common::powercap`)
//! named by `TRACING_ENERGY_POWERCAP`: `sample --source rapl`, and (feature `candle`)
//! `doctor` and `profile --power auto` picking RAPL and recording how it measured.
#![cfg(unix)]

mod common;

use std::process::Command;

use common::powercap::{both, real_range, timing, within, Fake, CPU_W, DRAM_W, MACHINE};

#[test]
fn cli_sample_reads_rapl_from_the_powercap_variable() {
    let _t = timing();
    let fake = Fake::live(&MACHINE, real_range);
    let out = Command::new(env!("CARGO_BIN_EXE_tracing-energy"))
        .args(["sample", "--source", "rapl", "--format", "jsonl"])
        .args(["--count", "3", "--interval-ms", "50"])
        .env("TRACING_ENERGY_POWERCAP", &fake.root)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", both(&out));
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    let (mut cpu_mj, mut dram_mj, mut ms) = (0.0, 0.0, 0.0);
    for v in &lines {
        assert_eq!(v["source"], "rapl", "{v}");
        assert_eq!(v["estimated"], false, "{v}");
        assert!(v["gpu_mw"].is_null() && v["ane_mw"].is_null(), "{v}");
        let number = |key: &str| v[key].as_f64().unwrap_or_else(|| panic!("{key}: {v}"));
        let (cpu, dram, elapsed) = (number("cpu_mw"), number("dram_mw"), number("elapsed_ms"));
        // One window may be long or short when the sampler waits for a busy CPU.
        assert!(within(cpu, CPU_W * 1000.0, 0.5), "cpu {cpu} mW");
        assert!(within(dram, DRAM_W * 1000.0, 0.5), "dram {dram} mW");
        cpu_mj += cpu * elapsed / 1000.0;
        dram_mj += dram * elapsed / 1000.0;
        ms += elapsed;
    }
    // Over the three windows: the known power (core, uncore, psys and the mmio zone not
    // added; any of them would add 34 % or more).
    let (cpu, dram) = (cpu_mj / ms, dram_mj / ms);
    assert!(within(cpu, CPU_W, 0.1), "cpu {cpu} W over {ms} ms");
    assert!(within(dram, DRAM_W, 0.1), "dram {dram} W over {ms} ms");
}

/// Where RAPL can be read, `doctor` says it works and `auto` takes it; a profile then records
/// the source, how it measured and its counter's update period on the run.
#[cfg(feature = "candle")]
#[test]
fn auto_picks_rapl_and_the_run_records_method_and_cadence() {
    let _t = timing();
    let fake = Fake::live(&MACHINE, real_range);
    let doctor = Command::new(env!("CARGO_BIN_EXE_tracing-energy"))
        .arg("doctor")
        .env("TRACING_ENERGY_POWERCAP", &fake.root)
        .env_remove("TRACING_ENERGY_POWERMETRICS")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&doctor.stdout);
    assert!(text.contains("rapl           works"), "{}", both(&doctor));
    assert!(text.contains("auto picks: rapl\n"), "{text}");
    let model = common::model::default_model();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let out = Command::new(env!("CARGO_BIN_EXE_tracing-energy"))
        .args(["profile", "--power", "auto", "--max-tokens", "3", "--json"])
        .args(["--requant", "q8_0", "--db", db.to_str().unwrap()])
        .arg("--model")
        .arg(&model)
        .env("TRACING_ENERGY_POWERCAP", &fake.root)
        .env_remove("TRACING_ENERGY_POWERMETRICS")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", both(&out));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["power_source"], "rapl");
    assert_eq!(s["estimated"], false);
    assert!(s["total_energy_mj"].as_f64().unwrap() > 0.0);
    let c = rusqlite::Connection::open(&db).unwrap();
    let (method, cadence): (String, f64) = c
        .query_row(
            "SELECT power_method, counter_update_ms FROM profiling_runs",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(method.contains("powercap energy_uj"), "{method}");
    assert!(cadence > 0.0 && cadence < 20.0, "{cadence} ms");
}
