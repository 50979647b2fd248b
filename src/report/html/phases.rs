//! The table of the phases: per phase section, its time, energy and share of the run.
//!
//! Data: the run's pipeline sections of kind `phase`, its token rows and its total
//! energy.

use std::fmt::Write as _;

use super::{sum_known, Page};
use crate::report::format::{escape_html as esc, num, pct, phase_colour};
use crate::store::{Row, TokenRecord};

impl Page<'_> {
    pub(super) fn phase_table(&self, h: &mut String) {
        h.push_str(
            "<section class=\"card\" id=\"phases\">\n<h2>Phases</h2>\n\
             <p class=\"desc\">Sections of kind <i>phase</i>, summed per phase; tokens and \
             energy per token from the token rows of that phase. Above idle: the energy less \
             the run's idle baseline power over the phase's time (negative where it drew less).</p>\n",
        );
        if self.summary.phases.is_empty() {
            h.push_str("<p class=\"unknown\">No phase sections in this run.</p>\n</section>\n");
            return;
        }
        h.push_str(
            "<table class=\"num\"><thead><tr><th>phase</th><th class=\"n\">sections</th>\
             <th class=\"n\">duration (ms)</th><th class=\"n\">energy (mJ)</th>\
             <th class=\"n\">above idle (mJ)</th><th class=\"n\">mean power (mW)</th><th class=\"n\">share of the run</th>\
             <th class=\"n\">tokens</th><th class=\"n\">energy per token (mJ)</th></tr></thead>\n<tbody>\n",
        );
        let total = self.run.total_energy_mj.filter(|t| *t > 0.0);
        for p in &self.summary.phases {
            let toks: Vec<&Row<TokenRecord>> = self
                .tokens
                .iter()
                .filter(|t| t.record.phase == p.phase)
                .collect();
            let n_tokens: u64 = toks.iter().map(|t| t.record.n_tokens as u64).sum();
            let tok_energy = sum_known(toks.iter().map(|t| t.record.measured.energy_mj));
            let cell = |v: Option<f64>| match v {
                Some(v) if v.is_finite() => num(v),
                _ => "<span class=\"unknown\">unknown</span>".into(),
            };
            let dynamic = |v: Option<f64>| match (&self.run.baseline, v) {
                (None, _) => format!(
                    "<span class=\"unknown\">{}</span>",
                    crate::store::NO_BASELINE
                ),
                (Some(_), v) => cell(v),
            };
            w!(
                h,
                "<tr><td><span class=\"legend\" style=\"display:inline\"><span class=\"sw\" style=\"background:{}\"></span></span>{}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>\n",
                phase_colour(&p.phase),
                esc(&p.phase),
                p.sections,
                num(p.duration_ms),
                cell(p.energy_mj),
                dynamic(p.dynamic_energy_mj),
                cell(p.mean_power_mw),
                match (p.energy_mj, total) {
                    (Some(e), Some(t)) => pct(e / t),
                    _ => "<span class=\"unknown\">unknown</span>".into(),
                },
                if toks.is_empty() { "–".to_string() } else { n_tokens.to_string() },
                if toks.is_empty() {
                    "–".to_string()
                } else {
                    cell(tok_energy.map(|e| e / n_tokens.max(1) as f64))
                },
            );
        }
        w!(
            h,
            "</tbody><tfoot><tr><th>run</th><td></td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td></td><td></td></tr></tfoot></table>\n</section>\n",
            num(self.rel_ms(self.t_end)),
            match self.run.total_energy_mj {
                Some(t) => num(t),
                None => "<span class=\"unknown\">unknown</span>".into(),
            },
            match (&self.run.baseline, self.run.dynamic_total_energy_mj) {
                (Some(_), Some(d)) => num(d),
                (Some(_), None) => "<span class=\"unknown\">unknown</span>".into(),
                (None, _) => format!("<span class=\"unknown\">{}</span>", crate::store::NO_BASELINE),
            },
            match self.run.total_energy_mj {
                Some(t) if self.t_end > self.t0 => num(t / self.rel_ms(self.t_end) * 1000.0),
                _ => "<span class=\"unknown\">unknown</span>".into(),
            },
            if total.is_some() { "100 %" } else { "" }
        );
    }
}
