//! `profiling_runs`: one row per run, created from a [`NewRun`], ended by a [`RunEnd`],
//! read as a [`Run`]. `run_tags`: one row per (run, tag).

use rusqlite::Transaction;

use super::{insert_one, Binder, Column, Key, Read, Reader, Table, Write};
use crate::store::records::{Host, NewRun, Run, RunEnd, RunId, RunStatus};
use crate::store::run_uuid::new_run_uuid;
use crate::store::{rfc3339, unix_ms_now};
use crate::store::{Baseline, ProfilerCost};

/// The `profiling_runs` table.
pub(crate) struct Runs;

impl Table for Runs {
    const NAME: &'static str = "profiling_runs";
    const KEY: Key = Key::Run;
    const COLUMNS: &'static [Column] = &[
        Column::integer("started_at_ms").not_null(),
        Column::integer("ended_at_ms"),
        Column::text("model"),
        Column::text("prompt"),
        Column::text("response"),
        Column::text("experiment"),
        Column::text("power_source"),
        Column::integer("estimated").not_null().default("0"),
        Column::real("sample_interval_ms"),
        Column::text("host_name"),
        Column::text("host_os"),
        Column::text("host_cpu"),
        Column::text("crate_version").not_null(),
        Column::integer("writer_pid"),
        // CHECK (status IN ('running', 'complete', 'incomplete', 'interrupted', 'failed'))
        Column::text("status").not_null().default("'running'"),
        Column::text("error"),
        Column::real("total_energy_mj"),
        Column::real("attributed_energy_mj"),
        Column::real("unattributed_energy_mj"),
        Column::integer("dropped_records").not_null().default("0"),
        Column::real("duration_ms"),
        Column::real("measured_ms"),
        // A JSON array of messages; NULL when there are none.
        Column::text("warnings"),
        Column::text("power_method"),
        Column::real("counter_update_ms"),
        // The idle baseline (V4): NULL without one, a domain's NULL where not measured.
        Column::real("baseline_ms"),
        Column::real("baseline_cpu_mw"),
        Column::real("baseline_gpu_mw"),
        Column::real("baseline_ane_mw"),
        Column::real("baseline_dram_mw"),
        Column::real("baseline_total_mw"),
        // The profiler's own cost over the run (V5; see `ProfilerCost`), NULL where not
        // measured: its threads' CPU time together (ms), per thread (a JSON object of ms,
        // `sampler`, `processor`, `writer`, `null` for a thread not measured), the hot
        // path's estimated time (ms), the calibrated ns per enter/exit pair behind it, and
        // the whole process's CPU time over the run (ms).
        Column::real("profiler_cpu_ms"),
        Column::text("profiler_threads"),
        Column::real("hot_path_ms"),
        Column::real("hot_path_ns_per_pair"),
        Column::real("process_cpu_ms"),
        // The run's uuid (V7; see `run_uuid.rs`): unique where set, kept when the run is
        // merged into another database.
        Column::text("run_uuid"),
    ];
    const TIMED: bool = false;
}

/// A new run: `running`, owned by this process, nothing ended yet, with a new uuid.
impl Write<NewRun> for Runs {
    fn bind(b: &mut Binder<'_, '_>, m: &NewRun) -> rusqlite::Result<()> {
        b.put(m.started_at_ms.unwrap_or_else(unix_ms_now))?;
        b.put(None::<i64>)?; // ended_at_ms
        b.put(m.model.as_deref())?;
        b.put(m.prompt.as_deref())?;
        b.put(None::<&str>)?; // response
        b.put(m.experiment.as_deref())?;
        b.put(m.power_source.as_deref())?;
        b.put(m.estimated)?;
        b.put(m.sample_interval_ms)?;
        b.put(m.host.name.as_deref())?;
        b.put(m.host.os.as_deref())?;
        b.put(m.host.cpu.as_deref())?;
        b.put(env!("CARGO_PKG_VERSION"))?;
        b.put(std::process::id() as i64)?;
        b.put(RunStatus::Running.as_str())?;
        b.put(None::<&str>)?; // error
        b.put(None::<f64>)?; // total_energy_mj
        b.put(None::<f64>)?; // attributed_energy_mj
        b.put(None::<f64>)?; // unattributed_energy_mj
        b.put(0_i64)?; // dropped_records
        b.put(None::<f64>)?; // duration_ms
        b.put(None::<f64>)?; // measured_ms
        b.put(None::<&str>)?; // warnings
        b.put(m.power_method.as_deref())?;
        b.put(m.counter_update_ms)?;
        let base = m.baseline.as_ref();
        b.put(base.map(|x| x.duration_ms))?;
        b.put(base.and_then(|x| x.cpu_mw))?;
        b.put(base.and_then(|x| x.gpu_mw))?;
        b.put(base.and_then(|x| x.ane_mw))?;
        b.put(base.and_then(|x| x.dram_mw))?;
        b.put(base.map(|x| x.total_mw))?;
        // The profiler's cost is known when the run ends.
        b.put(None::<f64>)?; // profiler_cpu_ms
        b.put(None::<&str>)?; // profiler_threads
        b.put(None::<f64>)?; // hot_path_ms
        b.put(None::<f64>)?; // hot_path_ns_per_pair
        b.put(None::<f64>)?; // process_cpu_ms
        b.put(new_run_uuid()?)
    }
}

impl Read for Runs {
    type Row = Run;

    /// The run as stored: its tags are not read here, and its status is the stored one.
    fn read(r: &mut Reader<'_, '_>) -> rusqlite::Result<Run> {
        let run_id = r.next()?;
        let started_at_ms: i64 = r.next()?;
        let mut run = Run {
            run_id,
            started_at_ms,
            started_at: rfc3339(started_at_ms),
            ended_at_ms: r.next()?,
            model: r.next()?,
            prompt: r.next()?,
            response: r.next()?,
            tags: Vec::new(),
            experiment: r.next()?,
            power_source: r.next()?,
            estimated: r.next()?,
            sample_interval_ms: r.next()?,
            host: Host {
                name: r.next()?,
                os: r.next()?,
                cpu: r.next()?,
            },
            crate_version: r.next()?,
            writer_pid: r.next()?,
            status: RunStatus::parse(&r.next::<String>()?).unwrap_or(RunStatus::Incomplete),
            error: r.next()?,
            total_energy_mj: r.next()?,
            attributed_energy_mj: r.next()?,
            unattributed_energy_mj: r.next()?,
            dropped_records: r.next_u64()?,
            duration_ms: r.next()?,
            measured_ms: r.next()?,
            warnings: r
                .next::<Option<String>>()?
                .map(|w| serde_json::from_str(&w).unwrap_or_else(|_| vec![w]))
                .unwrap_or_default(),
            power_method: r.next()?,
            counter_update_ms: r.next()?,
            baseline: None,
            dynamic_total_energy_mj: None,
            profiler: None,
            run_uuid: None,
        };
        let duration_ms: Option<f64> = r.next()?;
        let (cpu_mw, gpu_mw, ane_mw, dram_mw) = (r.next()?, r.next()?, r.next()?, r.next()?);
        let total_mw: Option<f64> = r.next()?;
        if let (Some(duration_ms), Some(total_mw)) = (duration_ms, total_mw) {
            run.baseline = Some(Baseline {
                duration_ms,
                cpu_mw,
                gpu_mw,
                ane_mw,
                dram_mw,
                total_mw,
            });
        }
        run.dynamic_total_energy_mj = run.dynamic_total();
        r.skip(); // profiler_cpu_ms: the sum of `profiler_threads`
        let threads: Option<String> = r.next()?;
        let (hot_ms, hot_ns, process_ms) = (r.next()?, r.next()?, r.next()?);
        run.profiler = ProfilerCost::from_columns(threads.as_deref(), hot_ms, hot_ns, process_ms);
        run.run_uuid = r.next()?;
        Ok(run)
    }
}

/// Creates a run and its tags (trimmed, sorted, without empty ones and duplicates).
pub(crate) fn create(tx: &Transaction, m: &NewRun) -> rusqlite::Result<RunId> {
    insert_one::<Runs, _>(tx, 0, m)?;
    let id = tx.last_insert_rowid();
    // Trimmed before de-duplication: `a` and ` a ` are one tag.
    let mut tags: Vec<&str> = m
        .tags
        .iter()
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())
        .collect();
    tags.sort_unstable();
    tags.dedup();
    for t in tags {
        insert_one::<RunTags, _>(tx, id, t)?;
    }
    Ok(id)
}

/// Records how a run ended. Its `dropped_records` grows by the caller's count and
/// `store_dropped`. [`rusqlite::Error::QueryReturnedNoRows`] when there is no such run.
pub(crate) fn finish(
    tx: &Transaction,
    run: RunId,
    end: &RunEnd,
    store_dropped: u64,
) -> rusqlite::Result<()> {
    let mut st = tx.prepare_cached(
        "UPDATE profiling_runs SET ended_at_ms = ?, status = ?, response = COALESCE(?, response),
            total_energy_mj = ?, attributed_energy_mj = ?, unattributed_energy_mj = ?,
            dropped_records = dropped_records + ?, error = ?, duration_ms = ?,
            measured_ms = ?, warnings = ?, profiler_cpu_ms = ?, profiler_threads = ?,
            hot_path_ms = ?, hot_path_ns_per_pair = ?, process_cpu_ms = ?
         WHERE run_id = ?",
    )?;
    let mut b = Binder::new(&mut st);
    b.put(unix_ms_now())?;
    b.put(end.status.as_str())?;
    b.put(end.response.as_deref())?;
    b.put(end.total_energy_mj)?;
    b.put(end.attributed_energy_mj)?;
    b.put(end.unattributed_energy_mj)?;
    b.put((end.dropped_records + store_dropped) as i64)?;
    b.put(end.error.as_deref())?;
    b.put(end.duration_ms)?;
    b.put(end.measured_ms)?;
    b.put(
        (!end.warnings.is_empty())
            .then(|| serde_json::to_string(&end.warnings).unwrap_or_default()),
    )?;
    let cost = end.profiler.as_ref();
    b.put(cost.and_then(ProfilerCost::threads_cpu_ms))?;
    b.put(cost.and_then(ProfilerCost::threads_json))?;
    b.put(cost.and_then(|c| c.hot_path_ms))?;
    b.put(cost.and_then(|c| c.hot_path_ns_per_pair))?;
    b.put(cost.and_then(|c| c.process_cpu_ms))?;
    b.put(run)?;
    if b.execute()? == 0 {
        return Err(rusqlite::Error::QueryReturnedNoRows);
    }
    Ok(())
}

/// The `run_tags` table.
pub(crate) struct RunTags;

impl Table for RunTags {
    const NAME: &'static str = "run_tags";
    const KEY: Key = Key::RunAnd;
    const COLUMNS: &'static [Column] = &[Column::text("tag").not_null().key()];
    const TIMED: bool = false;
}

impl Write<str> for RunTags {
    fn bind(b: &mut Binder<'_, '_>, tag: &str) -> rusqlite::Result<()> {
        b.put(tag)
    }
}

impl Read for RunTags {
    type Row = String;

    fn read(r: &mut Reader<'_, '_>) -> rusqlite::Result<String> {
        r.skip();
        r.next()
    }
}
