//! The database schema and its forward migrations.
//!
//! `PRAGMA user_version` holds the schema version: the number of migrations applied. A
//! database with a higher version than [`SCHEMA_VERSION`] was written by a newer
//! tracing-energy and is refused, untouched.

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The tables this crate owns (a database holding other tables is not ours).
pub const TABLES: [&str; 11] = [
    "profiling_runs",
    "run_tags",
    "power_samples",
    "pipeline_sections",
    "tokens",
    "layer_metrics",
    "component_metrics",
    "component_rollup",
    "deep_operation_metrics",
    "span_rollup",
    "component_power",
];

/// Columns shared by every timed row: the section's window on the run's monotonic timeline
/// and its attributed energy (the `attribution` module defines it).
macro_rules! timed_columns {
    () => {
        "start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    duration_ms REAL NOT NULL,
    thread_id INTEGER,
    energy_mj REAL,
    exclusive_energy_mj REAL,
    cpu_energy_mj REAL,
    gpu_energy_mj REAL,
    ane_energy_mj REAL,
    dram_energy_mj REAL,
    energy_method TEXT,
    energy_uncertainty_mj REAL,
    sample_windows INTEGER"
    };
}

/// Migration `k` takes a database from version `k` to `k + 1`.
pub const MIGRATIONS: &[&str] = &[V1, V2, V3, V4, V5, V6, V7];

/// Every run gets a universally unique id, `run_uuid`, so that a run copied into another
/// database (`Store::merge_from`) is known there, whatever its `run_id` became: a random
/// UUID version 4 as lowercase hyphenated text (`xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx`, `y`
/// one of `89ab`). Existing runs get one here, each from its own `randomblob` calls; new
/// runs get one when created. Unique where set (NULL only for a row inserted by hand).
const V7: &str = "
ALTER TABLE profiling_runs ADD COLUMN run_uuid TEXT;
UPDATE profiling_runs SET run_uuid =
    lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))) || '-4' ||
    substr(lower(hex(randomblob(2))), 2) || '-' ||
    substr('89ab', 1 + (abs(random()) % 4), 1) || substr(lower(hex(randomblob(2))), 2) ||
    '-' || lower(hex(randomblob(6)))
WHERE run_uuid IS NULL;
CREATE UNIQUE INDEX idx_run_uuid ON profiling_runs(run_uuid) WHERE run_uuid IS NOT NULL;
";

/// Each component kind's power fitted over a run's windows (`attribution::regression`): one
/// row per kind, and one for the background (`(background)`).
const V6: &str = "
CREATE TABLE component_power (
    run_id INTEGER NOT NULL REFERENCES profiling_runs(run_id) ON DELETE CASCADE,
    component TEXT NOT NULL,
    power_mw REAL NOT NULL,
    stderr_mw REAL NOT NULL,
    windows INTEGER NOT NULL,
    method TEXT NOT NULL,
    PRIMARY KEY (run_id, component)
) WITHOUT ROWID;
";

/// The profiler's own cost over the run: its threads' CPU time together and per thread (a
/// JSON object), the hot path's estimated time and the calibrated cost of one enter/exit
/// pair behind it, and the whole process's CPU time (NULL where not measured).
const V5: &str = "
ALTER TABLE profiling_runs ADD COLUMN profiler_cpu_ms REAL;
ALTER TABLE profiling_runs ADD COLUMN profiler_threads TEXT;
ALTER TABLE profiling_runs ADD COLUMN hot_path_ms REAL;
ALTER TABLE profiling_runs ADD COLUMN hot_path_ns_per_pair REAL;
ALTER TABLE profiling_runs ADD COLUMN process_cpu_ms REAL;
";

/// The idle baseline: how long it was sampled and the mean power per domain while nothing
/// was profiled (NULL without a baseline, or for a domain the source does not measure).
const V4: &str = "
ALTER TABLE profiling_runs ADD COLUMN baseline_ms REAL;
ALTER TABLE profiling_runs ADD COLUMN baseline_cpu_mw REAL;
ALTER TABLE profiling_runs ADD COLUMN baseline_gpu_mw REAL;
ALTER TABLE profiling_runs ADD COLUMN baseline_ane_mw REAL;
ALTER TABLE profiling_runs ADD COLUMN baseline_dram_mw REAL;
ALTER TABLE profiling_runs ADD COLUMN baseline_total_mw REAL;
";

/// Runs can end `interrupted` (Ctrl-C, SIGTERM), and say how much of their time the power
/// samples covered, what went wrong with the source, how the source measured and how often
/// its counter really updates. SQLite cannot change a CHECK
/// constraint in place, so `profiling_runs` is rebuilt (the documented 12-step procedure;
/// `migrate` turns foreign keys off around it) keeping every run and its AUTOINCREMENT
/// sequence.
const V3: &str = "
CREATE TABLE profiling_runs_v3 (
    run_id INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at_ms INTEGER NOT NULL,
    ended_at_ms INTEGER,
    model TEXT,
    prompt TEXT,
    response TEXT,
    experiment TEXT,
    power_source TEXT,
    estimated INTEGER NOT NULL DEFAULT 0,
    sample_interval_ms REAL,
    host_name TEXT,
    host_os TEXT,
    host_cpu TEXT,
    crate_version TEXT NOT NULL,
    writer_pid INTEGER,
    status TEXT NOT NULL DEFAULT 'running'
        CHECK (status IN ('running', 'complete', 'incomplete', 'interrupted', 'failed')),
    error TEXT,
    total_energy_mj REAL,
    attributed_energy_mj REAL,
    unattributed_energy_mj REAL,
    dropped_records INTEGER NOT NULL DEFAULT 0,
    -- The run's length on the monotonic clock, and how much of it power samples covered.
    duration_ms REAL,
    measured_ms REAL,
    -- What went wrong with the measurement (a JSON array of messages), NULL when nothing.
    warnings TEXT,
    -- How the source measures (e.g. `nvml: power x time`), and its counter's measured
    -- update period; NULL where the source does not say.
    power_method TEXT,
    counter_update_ms REAL
);
INSERT INTO profiling_runs_v3 (run_id, started_at_ms, ended_at_ms, model, prompt, response,
    experiment, power_source, estimated, sample_interval_ms, host_name, host_os, host_cpu,
    crate_version, writer_pid, status, error, total_energy_mj, attributed_energy_mj,
    unattributed_energy_mj, dropped_records)
SELECT run_id, started_at_ms, ended_at_ms, model, prompt, response,
    experiment, power_source, estimated, sample_interval_ms, host_name, host_os, host_cpu,
    crate_version, writer_pid, status, error, total_energy_mj, attributed_energy_mj,
    unattributed_energy_mj, dropped_records
FROM profiling_runs;
DELETE FROM sqlite_sequence WHERE name = 'profiling_runs_v3';
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'profiling_runs_v3', seq FROM sqlite_sequence WHERE name = 'profiling_runs';
DROP TABLE profiling_runs;
ALTER TABLE profiling_runs_v3 RENAME TO profiling_runs;
CREATE INDEX idx_runs_started ON profiling_runs(started_at_ms);
CREATE INDEX idx_runs_model ON profiling_runs(model, started_at_ms);
CREATE INDEX idx_runs_experiment ON profiling_runs(experiment, started_at_ms);
CREATE INDEX idx_runs_status ON profiling_runs(status);
";

/// Span instances: every timed row says which span it came from; a generic span's row sums
/// its polls; energy per span path.
const V2: &str = "
ALTER TABLE pipeline_sections ADD COLUMN span_id INTEGER;
ALTER TABLE pipeline_sections ADD COLUMN path TEXT;
ALTER TABLE pipeline_sections ADD COLUMN polls INTEGER;
ALTER TABLE pipeline_sections ADD COLUMN busy_ms REAL;
ALTER TABLE tokens ADD COLUMN span_id INTEGER;
ALTER TABLE layer_metrics ADD COLUMN span_id INTEGER;
ALTER TABLE component_metrics ADD COLUMN span_id INTEGER;
ALTER TABLE deep_operation_metrics ADD COLUMN span_id INTEGER;
CREATE INDEX idx_sections_span ON pipeline_sections(run_id, span_id);

-- Per (run, span path) totals, kept by the writer as rows are written.
CREATE TABLE span_rollup (
    run_id INTEGER NOT NULL REFERENCES profiling_runs(run_id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    calls INTEGER NOT NULL,
    busy_ms REAL NOT NULL,
    energy_mj REAL,
    exclusive_energy_mj REAL,
    PRIMARY KEY (run_id, path)
) WITHOUT ROWID;
";

const V1: &str = concat!(
    "
CREATE TABLE profiling_runs (
    run_id INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at_ms INTEGER NOT NULL,
    ended_at_ms INTEGER,
    model TEXT,
    prompt TEXT,
    response TEXT,
    experiment TEXT,
    power_source TEXT,
    estimated INTEGER NOT NULL DEFAULT 0,
    sample_interval_ms REAL,
    host_name TEXT,
    host_os TEXT,
    host_cpu TEXT,
    crate_version TEXT NOT NULL,
    writer_pid INTEGER,
    status TEXT NOT NULL DEFAULT 'running'
        CHECK (status IN ('running', 'complete', 'incomplete', 'failed')),
    error TEXT,
    total_energy_mj REAL,
    attributed_energy_mj REAL,
    unattributed_energy_mj REAL,
    dropped_records INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX idx_runs_started ON profiling_runs(started_at_ms);
CREATE INDEX idx_runs_model ON profiling_runs(model, started_at_ms);
CREATE INDEX idx_runs_experiment ON profiling_runs(experiment, started_at_ms);
CREATE INDEX idx_runs_status ON profiling_runs(status);

CREATE TABLE run_tags (
    run_id INTEGER NOT NULL REFERENCES profiling_runs(run_id) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    PRIMARY KEY (run_id, tag)
) WITHOUT ROWID;
CREATE INDEX idx_run_tags_tag ON run_tags(tag, run_id);

CREATE TABLE power_samples (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES profiling_runs(run_id) ON DELETE CASCADE,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    duration_ms REAL NOT NULL,
    cpu_mw REAL,
    gpu_mw REAL,
    ane_mw REAL,
    dram_mw REAL,
    total_mw REAL NOT NULL,
    cpu_mj REAL,
    gpu_mj REAL,
    ane_mj REAL,
    dram_mj REAL,
    total_mj REAL NOT NULL,
    source TEXT NOT NULL,
    estimated INTEGER NOT NULL
);
CREATE INDEX idx_power_samples_run_time ON power_samples(run_id, start_ns);

CREATE TABLE pipeline_sections (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES profiling_runs(run_id) ON DELETE CASCADE,
    section_index INTEGER NOT NULL,
    parent_index INTEGER,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    phase TEXT,
    depth INTEGER NOT NULL,
    fields TEXT,
    ",
    timed_columns!(),
    ",
    UNIQUE (run_id, section_index)
);
CREATE INDEX idx_sections_run_time ON pipeline_sections(run_id, start_ns);

CREATE TABLE tokens (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES profiling_runs(run_id) ON DELETE CASCADE,
    token_index INTEGER NOT NULL,
    phase TEXT NOT NULL,
    n_tokens INTEGER NOT NULL DEFAULT 1,
    token_id INTEGER,
    text TEXT,
    ",
    timed_columns!(),
    ",
    UNIQUE (run_id, token_index)
);

CREATE TABLE layer_metrics (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES profiling_runs(run_id) ON DELETE CASCADE,
    token_index INTEGER NOT NULL,
    layer_index INTEGER NOT NULL,
    ",
    timed_columns!(),
    ",
    UNIQUE (run_id, token_index, layer_index),
    FOREIGN KEY (run_id, token_index) REFERENCES tokens(run_id, token_index) ON DELETE CASCADE
);
CREATE INDEX idx_layers_summary ON layer_metrics(run_id, layer_index, duration_ms, energy_mj);

CREATE TABLE component_metrics (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES profiling_runs(run_id) ON DELETE CASCADE,
    token_index INTEGER NOT NULL,
    layer_index INTEGER,
    component_index INTEGER NOT NULL,
    component TEXT NOT NULL,
    name TEXT NOT NULL,
    ",
    timed_columns!(),
    ",
    UNIQUE (run_id, token_index, layer_index, component_index),
    FOREIGN KEY (run_id, token_index, layer_index)
        REFERENCES layer_metrics(run_id, token_index, layer_index) ON DELETE CASCADE
);

-- Per (run, layer, component) running totals, kept by the writer as component rows are
-- inserted, so that a run summary does not scan every component row. layer_key is the
-- layer index, or -1 for model-level components.
CREATE TABLE component_rollup (
    run_id INTEGER NOT NULL REFERENCES profiling_runs(run_id) ON DELETE CASCADE,
    layer_key INTEGER NOT NULL,
    component TEXT NOT NULL,
    row_count INTEGER NOT NULL,
    duration_ms REAL NOT NULL,
    energy_mj REAL NOT NULL,
    energy_rows INTEGER NOT NULL,
    PRIMARY KEY (run_id, layer_key, component)
) WITHOUT ROWID;

CREATE TABLE deep_operation_metrics (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES profiling_runs(run_id) ON DELETE CASCADE,
    token_index INTEGER NOT NULL,
    layer_index INTEGER,
    component_index INTEGER NOT NULL,
    op_index INTEGER NOT NULL,
    operation TEXT NOT NULL,
    name TEXT NOT NULL,
    ",
    timed_columns!(),
    ",
    UNIQUE (run_id, token_index, layer_index, component_index, op_index),
    FOREIGN KEY (run_id, token_index, layer_index, component_index)
        REFERENCES component_metrics(run_id, token_index, layer_index, component_index)
        ON DELETE CASCADE
);
"
);

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::*;

    fn q(c: &Connection, sql: &str) -> i64 {
        c.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// A version-2 database keeps every run, child row and id through the V3 rebuild, and
    /// its foreign keys still cascade afterwards.
    #[test]
    fn v3_rebuild_keeps_runs_rows_and_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let c = Connection::open(dir.path().join("v2.db")).unwrap();
        c.pragma_update(None, "foreign_keys", "ON").unwrap();
        for step in &MIGRATIONS[..2] {
            c.execute_batch(step).unwrap();
        }
        c.pragma_update(None, "user_version", 2).unwrap();
        for id in 1..=3 {
            c.execute(
                "INSERT INTO profiling_runs (run_id, started_at_ms, crate_version, status)
                 VALUES (?1, 0, '0.1.0', 'complete')",
                [id],
            )
            .unwrap();
            c.execute(
                "INSERT INTO tokens (run_id, token_index, phase, start_ns, end_ns, duration_ms)
                 VALUES (?1, 0, 'prefill', 0, 1, 0.0)",
                [id],
            )
            .unwrap();
        }
        c.execute("DELETE FROM profiling_runs WHERE run_id = 3", [])
            .unwrap();
        assert_eq!(q(&c, "SELECT COUNT(*) FROM tokens"), 2);

        super::super::open::migrate(&c).unwrap();

        assert_eq!(q(&c, "PRAGMA user_version"), SCHEMA_VERSION);
        assert_eq!(q(&c, "SELECT COUNT(*) FROM profiling_runs"), 2);
        assert_eq!(q(&c, "SELECT COUNT(*) FROM tokens"), 2, "no cascade");
        c.execute(
            "INSERT INTO profiling_runs (started_at_ms, crate_version, status)
             VALUES (0, '0.1.0', 'interrupted')",
            [],
        )
        .unwrap();
        assert_eq!(
            q(&c, "SELECT MAX(run_id) FROM profiling_runs"),
            4,
            "a deleted run's id is not reused"
        );
        assert!(c
            .execute(
                "INSERT INTO profiling_runs (started_at_ms, crate_version, status)
                 VALUES (0, '0.1.0', 'bogus')",
                [],
            )
            .is_err());
        assert_eq!(q(&c, "PRAGMA foreign_keys"), 1);
        c.execute("DELETE FROM profiling_runs WHERE run_id = 1", [])
            .unwrap();
        assert_eq!(q(&c, "SELECT COUNT(*) FROM tokens"), 1, "cascades again");
        let names = q(
            &c,
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name LIKE 'idx_runs_%'",
        );
        assert_eq!(names, 4);
    }

    /// A version-3 database keeps its runs through V4, with no baseline (NULL columns),
    /// and a baseline can be stored afterwards.
    #[test]
    fn v4_adds_baseline_columns_null_for_existing_runs() {
        let dir = tempfile::tempdir().unwrap();
        let c = Connection::open(dir.path().join("v3.db")).unwrap();
        for step in &MIGRATIONS[..3] {
            c.execute_batch(step).unwrap();
        }
        c.pragma_update(None, "user_version", 3).unwrap();
        for id in 1..=2 {
            c.execute(
                "INSERT INTO profiling_runs (run_id, started_at_ms, crate_version, status,
                    total_energy_mj, duration_ms)
                 VALUES (?1, 0, '0.1.0', 'complete', 12.5, 100.0)",
                [id],
            )
            .unwrap();
        }

        super::super::open::migrate(&c).unwrap();

        assert_eq!(q(&c, "PRAGMA user_version"), SCHEMA_VERSION);
        assert_eq!(q(&c, "SELECT COUNT(*) FROM profiling_runs"), 2);
        assert_eq!(
            q(
                &c,
                "SELECT COUNT(*) FROM profiling_runs WHERE baseline_ms IS NULL
                   AND baseline_cpu_mw IS NULL AND baseline_gpu_mw IS NULL
                   AND baseline_ane_mw IS NULL AND baseline_dram_mw IS NULL
                   AND baseline_total_mw IS NULL AND total_energy_mj = 12.5"
            ),
            2
        );
        c.execute(
            "UPDATE profiling_runs SET baseline_ms = 2000, baseline_total_mw = 1500 WHERE run_id = 2",
            [],
        )
        .unwrap();
        assert_eq!(
            q(
                &c,
                "SELECT CAST(baseline_total_mw AS INTEGER) FROM profiling_runs WHERE run_id = 2"
            ),
            1500
        );
    }

    /// A version-4 database keeps its runs through V5, with no profiler cost (NULL
    /// columns, read back as none), and a cost can be stored afterwards.
    #[test]
    fn v5_adds_profiler_cost_columns_null_for_existing_runs() {
        let dir = tempfile::tempdir().unwrap();
        let c = Connection::open(dir.path().join("v4.db")).unwrap();
        for step in &MIGRATIONS[..4] {
            c.execute_batch(step).unwrap();
        }
        c.pragma_update(None, "user_version", 4).unwrap();
        for id in 1..=2 {
            c.execute(
                "INSERT INTO profiling_runs (run_id, started_at_ms, crate_version, status,
                    total_energy_mj, baseline_ms, baseline_total_mw)
                 VALUES (?1, 0, '0.1.0', 'complete', 12.5, 2000.0, 1500.0)",
                [id],
            )
            .unwrap();
        }

        super::super::open::migrate(&c).unwrap();

        assert_eq!(q(&c, "PRAGMA user_version"), SCHEMA_VERSION);
        assert_eq!(
            q(
                &c,
                "SELECT COUNT(*) FROM profiling_runs WHERE profiler_cpu_ms IS NULL
                   AND profiler_threads IS NULL AND hot_path_ms IS NULL
                   AND hot_path_ns_per_pair IS NULL AND process_cpu_ms IS NULL
                   AND total_energy_mj = 12.5 AND baseline_total_mw = 1500.0"
            ),
            2
        );
        c.execute(
            "UPDATE profiling_runs SET profiler_cpu_ms = 210, process_cpu_ms = 52000 WHERE run_id = 2",
            [],
        )
        .unwrap();
        assert_eq!(
            q(
                &c,
                "SELECT CAST(profiler_cpu_ms AS INTEGER) FROM profiling_runs WHERE run_id = 2"
            ),
            210
        );
    }

    #[test]
    fn v6_adds_an_empty_component_power_table_that_follows_its_run() {
        let dir = tempfile::tempdir().unwrap();
        let c = Connection::open(dir.path().join("v5.db")).unwrap();
        for step in &MIGRATIONS[..5] {
            c.execute_batch(step).unwrap();
        }
        c.pragma_update(None, "user_version", 5).unwrap();
        c.execute(
            "INSERT INTO profiling_runs (run_id, started_at_ms, crate_version, status)
             VALUES (1, 0, '0.1.0', 'complete')",
            [],
        )
        .unwrap();

        super::super::open::migrate(&c).unwrap();

        assert_eq!(q(&c, "PRAGMA user_version"), SCHEMA_VERSION);
        assert_eq!(q(&c, "SELECT COUNT(*) FROM profiling_runs"), 1);
        assert_eq!(q(&c, "SELECT COUNT(*) FROM component_power"), 0);
        c.execute(
            "INSERT INTO component_power VALUES (1, 'mlp', 10000.0, 25.0, 140, 'regression')",
            [],
        )
        .unwrap();
        c.execute_batch("PRAGMA foreign_keys = ON; DELETE FROM profiling_runs WHERE run_id = 1")
            .unwrap();
        assert_eq!(q(&c, "SELECT COUNT(*) FROM component_power"), 0, "cascades");
    }

    /// A version-6 database keeps its runs through V7, each given its own well-formed
    /// `run_uuid`, and two runs cannot share one afterwards.
    #[test]
    fn v7_gives_every_existing_run_its_own_uuid() {
        let dir = tempfile::tempdir().unwrap();
        let c = Connection::open(dir.path().join("v6.db")).unwrap();
        for step in &MIGRATIONS[..6] {
            c.execute_batch(step).unwrap();
        }
        c.pragma_update(None, "user_version", 6).unwrap();
        for id in 1..=50 {
            c.execute(
                "INSERT INTO profiling_runs (run_id, started_at_ms, crate_version, status,
                    total_energy_mj)
                 VALUES (?1, 0, '0.1.0', 'complete', 12.5)",
                [id],
            )
            .unwrap();
        }

        super::super::open::migrate(&c).unwrap();

        assert_eq!(q(&c, "PRAGMA user_version"), SCHEMA_VERSION);
        assert_eq!(
            q(
                &c,
                "SELECT COUNT(*) FROM profiling_runs WHERE total_energy_mj = 12.5"
            ),
            50
        );
        assert_eq!(
            q(&c, "SELECT COUNT(DISTINCT run_uuid) FROM profiling_runs"),
            50,
            "each run its own uuid"
        );
        let mut st = c
            .prepare("SELECT run_uuid FROM profiling_runs ORDER BY run_id")
            .unwrap();
        let uuids: Vec<String> = st.query_map([], |r| r.get(0)).unwrap().flatten().collect();
        assert!(
            uuids.iter().all(|u| crate::store::is_run_uuid(u)),
            "{uuids:?}"
        );
        assert!(c
            .execute(
                "UPDATE profiling_runs SET run_uuid = ?1 WHERE run_id = 2",
                [&uuids[0]],
            )
            .is_err());
        c.execute_batch(
            "INSERT INTO profiling_runs (started_at_ms, crate_version) VALUES (0, '0.1.0');
             INSERT INTO profiling_runs (started_at_ms, crate_version) VALUES (0, '0.1.0');",
        )
        .unwrap();
        assert_eq!(
            q(
                &c,
                "SELECT COUNT(*) FROM profiling_runs WHERE run_uuid IS NULL"
            ),
            2,
            "unique only where set"
        );
    }
}
