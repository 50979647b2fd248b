//! The text of `summary` (and the hottest table `hot` shares): a run's totals, gross and
//! above its idle baseline, and its phases, layers and components.

use tracing_energy::store::{RunSummary, NO_BASELINE};

use crate::table::{num, printable, Table};

pub fn summary_text(s: &RunSummary) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "run {} ({}), {} tokens, {} power samples, source {}{}\n",
        s.run.run_id,
        format!("{:?}", s.run.status).to_lowercase(),
        s.tokens,
        s.power_samples,
        printable(s.run.power_source.as_deref().unwrap_or("none")),
        if s.run.estimated { " (ESTIMATED)" } else { "" }
    ));
    if let Some(method) = &s.run.power_method {
        out.push_str(&format!("power method: {}\n", printable(method)));
    }
    out.push_str(&format!(
        "energy: total {} mJ, attributed {} mJ, unattributed {} mJ\n",
        num(s.run.total_energy_mj, 1),
        num(s.run.attributed_energy_mj, 1),
        num(s.run.unattributed_energy_mj, 1)
    ));
    match &s.run.baseline {
        Some(b) => out.push_str(&format!(
            "idle baseline: {}\nabove idle (dynamic): total {} mJ (may be negative where a part drew less than idle)\n",
            b.describe(),
            num(s.run.dynamic_total_energy_mj, 1)
        )),
        None if s.run.power_source.is_some() => out.push_str(&format!(
            "idle baseline: none ({}: figures are gross)\n",
            NO_BASELINE
        )),
        None => {}
    }
    out.push_str(&format!(
        "profiler: {}\n",
        s.run
            .profiler
            .as_ref()
            .map_or_else(|| "not measured".to_string(), |c| c.describe())
    ));
    if let Some(p) = s.run.profiler.as_ref().and_then(|c| c.sampler_process) {
        out.push_str(&format!(
            "{}: {}\n",
            tracing_energy::store::SamplerProcessCost::LABEL,
            p.describe()
        ));
    }
    out.push_str("\nphases\n");
    if let Some(note) = s.run.coverage_note() {
        out.insert_str(
            out.len() - "\nphases\n".len(),
            &format!(
                "WARNING: {note}: the rest of the run is unmeasured, and shares are of the measured part\n"
            ),
        );
    }
    for w in &s.run.warnings {
        out.insert_str(
            out.len() - "\nphases\n".len(),
            &format!("warning: {}\n", printable(w)),
        );
    }
    let mut t = Table::new([
        "phase",
        "sections",
        "duration_ms",
        "energy_mJ",
        "dynamic_mJ",
        "mean_power_mW",
    ]);
    for p in &s.phases {
        t.row([
            p.phase.clone(),
            p.sections.to_string(),
            num(Some(p.duration_ms), 2),
            num(p.energy_mj, 1),
            num(p.dynamic_energy_mj, 1),
            num(p.mean_power_mw, 0),
        ]);
    }
    out.push_str(&t.render());
    out.push_str("\nlayers (mean per token)\n");
    let mut t = Table::new(["layer", "tokens", "duration_ms", "energy_mJ"]);
    for l in &s.layers {
        t.row([
            l.layer_index.to_string(),
            l.tokens.to_string(),
            num(Some(l.mean_duration_ms), 3),
            num(l.mean_energy_mj, 2),
        ]);
    }
    out.push_str(&t.render());
    out.push_str("\ncomponents (mean per row)\n");
    let mut t = Table::new(["component", "rows", "duration_ms", "energy_mJ", "total_mJ"]);
    for c in &s.components {
        t.row([
            c.component.clone(),
            c.count.to_string(),
            num(Some(c.mean_duration_ms), 3),
            num(c.mean_energy_mj, 3),
            num(c.total_energy_mj, 1),
        ]);
    }
    out.push_str(&t.render());
    out.push_str("\nhottest\n");
    out.push_str(&hot_table(s, 10));
    out
}

pub fn hot_table(s: &RunSummary, limit: usize) -> String {
    let mut t = Table::new([
        "layer",
        "component",
        "tokens",
        "duration_ms",
        "energy_mJ",
        "share",
    ]);
    for h in s.hottest.iter().take(limit) {
        t.row([
            h.layer_index
                .map_or_else(|| "model".to_string(), |l| l.to_string()),
            h.component.clone(),
            h.count.to_string(),
            num(Some(h.duration_ms), 2),
            num(Some(h.energy_mj), 1),
            h.share_of_run
                .map_or_else(|| "-".to_string(), |f| format!("{:.1}%", f * 100.0)),
        ]);
    }
    t.render()
}
