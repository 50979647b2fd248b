//! (f) The flame graph card: the energy per span path, drawn by the report's `flame`
//! module, or a note saying why there is none.
//!
//! Data: the run's span rollup ([`SpanRollup`](crate::store::SpanRollup)s) and its total
//! energy.

use super::{card_open, Page};

impl Page<'_> {
    pub(super) fn flame_graph(&self, h: &mut String) {
        card_open(
            h,
            "flame-graph",
            "(f) Energy by span path",
            crate::report::flame::DESCRIPTION,
        );
        crate::report::flame::draw(h, self.rollup, self.run.total_energy_mj);
        h.push_str("</figure>\n</section>\n");
    }
}
