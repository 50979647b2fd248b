//! The main job end to end: `tracing-energy profile` generates text with the real
//! SmolLM2-135M model (fetched by the test when missing) into a real database file, and the
//! database holds one consistent run.
#![cfg(feature = "candle")]

use std::path::{Path, PathBuf};
use std::process::Command;

use rusqlite::Connection;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tracing-energy"))
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/powermetrics")
        .join(name)
}

fn q<T: rusqlite::types::FromSql>(c: &Connection, sql: &str) -> T {
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}

fn profile(db: &Path, power: &str, extra: &[&str]) -> serde_json::Value {
    let out = bin()
        .args([
            "profile",
            "--db",
            db.to_str().unwrap(),
            "--power",
            power,
            "--max-tokens",
            "8",
            "--json",
            "--requant",
            "q8_0",
        ])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// Checks the run's rows: tokens, 30 layers per token, named components and operations,
/// conservation, completeness.
fn check_run(db: &Path, summary: &serde_json::Value) -> i64 {
    let c = Connection::open(db).unwrap();
    let run: i64 = summary["run_id"].as_i64().unwrap();
    assert_eq!(q::<i64>(&c, "SELECT COUNT(*) FROM profiling_runs"), 1);
    assert_eq!(
        q::<String>(&c, "SELECT status FROM profiling_runs"),
        "complete"
    );
    let generated = summary["generated_tokens"].as_i64().unwrap();
    assert!(generated >= 2, "{summary}");
    assert_eq!(
        q::<i64>(&c, "SELECT COUNT(*) FROM tokens"),
        generated,
        "one token row per generated token"
    );
    assert_eq!(
        q::<String>(&c, "SELECT phase FROM tokens WHERE token_index = 0"),
        "prefill"
    );
    assert_eq!(
        q::<i64>(&c, "SELECT COUNT(*) FROM tokens WHERE phase = 'decode'"),
        generated - 1
    );
    assert_eq!(
        q::<i64>(&c, "SELECT COUNT(*) FROM (SELECT token_index, COUNT(*) n FROM layer_metrics GROUP BY token_index HAVING n = 30)"),
        generated,
        "30 layer rows per token"
    );
    for (component, per_token) in [
        ("norm", 30),
        ("attention", 30),
        ("mlp", 30),
        ("output", 1),
        ("final_norm", 1),
    ] {
        let n: i64 = c
            .query_row(
                "SELECT COUNT(*) FROM component_metrics WHERE component = ?1",
                [component],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, per_token * generated, "{component}");
    }
    for (op, per_token) in [
        ("q_proj", 30),
        ("k_proj", 30),
        ("v_proj", 30),
        ("o_proj", 30),
        ("rope_q", 30),
        ("rope_k", 30),
        ("gate_proj", 30),
        ("up_proj", 30),
        ("down_proj", 30),
        ("ffn_norm", 30),
        ("lm_head", 1),
    ] {
        let n: i64 = c
            .query_row(
                "SELECT COUNT(*) FROM deep_operation_metrics WHERE operation = ?1",
                [op],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, per_token * generated, "{op}");
    }
    let response: String = q(&c, "SELECT response FROM profiling_runs");
    assert_eq!(response, summary["response"].as_str().unwrap());
    assert!(!response.is_empty());
    run
}

fn check_conservation(db: &Path) {
    let c = Connection::open(db).unwrap();
    let total: f64 = q(&c, "SELECT total_energy_mj FROM profiling_runs");
    let unattributed: f64 = q(&c, "SELECT unattributed_energy_mj FROM profiling_runs");
    let mut exclusive = 0.0;
    for t in [
        "pipeline_sections",
        "tokens",
        "layer_metrics",
        "component_metrics",
        "deep_operation_metrics",
    ] {
        let v: Option<f64> = q(&c, &format!("SELECT SUM(exclusive_energy_mj) FROM {t}"));
        exclusive += v.unwrap_or(0.0);
        let unknown: i64 = q(
            &c,
            &format!("SELECT COUNT(*) FROM {t} WHERE energy_mj IS NULL"),
        );
        assert_eq!(
            unknown, 0,
            "{t}: rows without energy although samples covered the run"
        );
    }
    assert!(total > 0.0);
    assert!(
        (exclusive + unattributed - total).abs() <= 1e-9 * total,
        "sum of exclusive {exclusive} + unattributed {unattributed} != measured {total}"
    );
    // Each layer's inclusive energy = its components' + its own exclusive.
    let worst: f64 = q(
        &c,
        "SELECT MAX(ABS(l.energy_mj - l.exclusive_energy_mj - s.e)) FROM layer_metrics l JOIN
           (SELECT token_index, layer_index, SUM(energy_mj) e FROM component_metrics WHERE layer_index IS NOT NULL GROUP BY 1, 2) s
           USING (token_index, layer_index)",
    );
    assert!(worst < 1e-9 * total, "{worst}");
}

#[test]
fn profiles_a_real_generation_with_the_estimate() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("profiles.db");
    let s = profile(&db, "estimate", &[]);
    assert_eq!(s["power_source"], "estimate");
    assert_eq!(s["estimated"], true);
    assert!(s["total_energy_mj"].as_f64().unwrap() > 0.0);
    assert!(s["energy_per_token_mj"].as_f64().unwrap() > 0.0);
    assert!(s["prefill_tokens_per_s"].as_f64().unwrap() > 0.0);
    check_run(&db, &s);
    check_conservation(&db);
    let c = Connection::open(&db).unwrap();
    assert_eq!(q::<i64>(&c, "SELECT estimated FROM profiling_runs"), 1);
    assert_eq!(
        q::<i64>(
            &c,
            "SELECT COUNT(*) FROM power_samples WHERE estimated = 1 AND gpu_mw IS NULL"
        ),
        q::<i64>(&c, "SELECT COUNT(*) FROM power_samples")
    );
    // Greedy decoding of the default prompt.
    assert!(s["response"].as_str().unwrap().contains("Paris"), "{s}");
}

#[test]
fn profiles_with_a_replayed_capture_as_measured_power() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("profiles.db");
    // 2-second windows of a real M1 capture: CPU, GPU and ANE are known, DRAM is not.
    let capture = fixture("m1_macbookpro17-1_macos13.3_22E252_cpu_gpu_thermal_a.plist");
    let s = profile(
        &db,
        &format!("replay:{}", capture.display()),
        &["--prompt", "Name a colour."],
    );
    assert_eq!(s["estimated"], false);
    check_run(&db, &s);
    check_conservation(&db);
    let c = Connection::open(&db).unwrap();
    assert!(q::<Option<f64>>(&c, "SELECT SUM(gpu_energy_mj) FROM tokens").is_some());
    assert_eq!(
        q::<i64>(
            &c,
            "SELECT COUNT(*) FROM tokens WHERE dram_energy_mj IS NOT NULL"
        ),
        0,
        "DRAM is unknown, not 0"
    );
}

#[test]
fn no_profile_runs_the_same_generation_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("profiles.db");
    let s = profile(&db, "estimate", &["--no-profile"]);
    assert!(s["run_id"].is_null());
    assert!(s["total_energy_mj"].is_null());
    assert!(s["decode_tokens_per_s"].as_f64().unwrap() > 0.0);
    assert!(s["response"].as_str().unwrap().contains("Paris"));
    assert!(!db.exists(), "--no-profile must not create a database");
}

#[test]
fn a_missing_model_file_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .args([
            "profile",
            "--db",
            dir.path().join("p.db").to_str().unwrap(),
            "--model",
            "/nonexistent/model.gguf",
            "--power",
            "none",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent/model.gguf") && err.contains("fetch-model.sh"),
        "{err}"
    );
}

/// The rows' energy methods, each with its count.
fn methods(c: &Connection) -> Vec<(Option<String>, i64)> {
    let mut st = c
        .prepare(
            "SELECT energy_method, COUNT(*) FROM (
               SELECT energy_method FROM tokens UNION ALL
               SELECT energy_method FROM layer_metrics UNION ALL
               SELECT energy_method FROM component_metrics UNION ALL
               SELECT energy_method FROM deep_operation_metrics UNION ALL
               SELECT energy_method FROM pipeline_sections) GROUP BY 1",
        )
        .unwrap();
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    rows.map(Result::unwrap).collect()
}

/// `--attribution regression` on the real model, with the estimate and with a replayed M1
/// capture: the run completes; either the fit is stored and every row is attributed by it,
/// or the run says why it fell back and every row is attributed by time shares; either way
/// conservation holds to 1e-9.
#[test]
fn regression_attribution_runs_on_the_real_model_and_conserves() {
    let capture = fixture("m1_macbookpro17-1_macos13.3_22E252_cpu_gpu_thermal_a.plist");
    for power in [
        "estimate".to_string(),
        format!("replay:{}", capture.display()),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("profiles.db");
        let s = profile(&db, &power, &["--attribution", "regression"]);
        assert_eq!(s["attribution"], "regression", "{s}");
        check_run(&db, &s);
        check_conservation(&db);
        let c = Connection::open(&db).unwrap();
        let fitted: i64 = q(&c, "SELECT COUNT(*) FROM component_power");
        let warnings: Vec<String> = s["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w.as_str().unwrap().to_string())
            .collect();
        let fell_back = warnings
            .iter()
            .find(|w| w.starts_with("regression attribution refused"));
        let rows = methods(&c);
        eprintln!("{power}: fit rows {fitted}, fell back: {fell_back:?}, row methods {rows:?}");
        match fell_back {
            Some(why) => {
                assert_eq!(fitted, 0, "{why}");
                assert!(why.contains("attributed by overlap"), "{why}");
                assert_eq!(rows.len(), 1, "{rows:?}");
                assert_eq!(rows[0].0.as_deref(), Some("overlap"));
            }
            None => {
                // The background and the five component kinds of the candle vocabulary.
                assert_eq!(fitted, 6, "{warnings:?}");
                assert_eq!(s["component_power"].as_array().unwrap().len(), 6, "{s}");
                assert_eq!(rows.len(), 1, "{rows:?}");
                assert_eq!(rows[0].0.as_deref(), Some("regression"));
            }
        }
    }
}
