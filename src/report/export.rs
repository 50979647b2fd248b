//! A run's rows as one JSON document or as one CSV table, for other tools.
//!
//! - [`json`]: the whole run as one pretty-printed JSON object with the members `run`,
//!   `sections`, `tokens`, `layers`, `components`, `operations` and `power`, in that order,
//!   each the store's rows as they serialize.
//! - [`csv`]: every timed row (sections, tokens, layers, components, operations, in that
//!   order) as one CSV line under the header [`CSV_COLUMNS`], its `level` saying which. An
//!   unknown value is an empty cell; a text with a comma, quote or line break is quoted,
//!   its quotes doubled.
//!
//! Both write what [`RunData`] holds: the layer, component and operation rows only when it
//! was read at [`Detail::Rows`](super::Detail::Rows) (at
//! [`Detail::Report`](super::Detail::Report) those lists are empty).

use serde::Serialize;
use serde_json::Value;

use super::run_data::{RunData, RunRows};
use crate::store::{
    ComponentRecord, LayerRecord, OperationRecord, PowerRow, Row, Run, SectionRecord, TokenRecord,
};

/// The columns of [`csv`], in order.
pub const CSV_COLUMNS: [&str; 22] = [
    "level",
    "id",
    "token_index",
    "layer_index",
    "component_index",
    "op_index",
    "name",
    "kind",
    "phase",
    "thread_id",
    "start_ns",
    "end_ns",
    "duration_ms",
    "energy_mj",
    "exclusive_energy_mj",
    "cpu_energy_mj",
    "gpu_energy_mj",
    "ane_energy_mj",
    "dram_energy_mj",
    "energy_method",
    "energy_uncertainty_mj",
    "sample_windows",
];

/// The JSON document: its members in this order.
#[derive(Serialize)]
struct FullRun<'a> {
    run: &'a Run,
    sections: &'a [Row<SectionRecord>],
    tokens: &'a [Row<TokenRecord>],
    layers: &'a [Row<LayerRecord>],
    components: &'a [Row<ComponentRecord>],
    operations: &'a [Row<OperationRecord>],
    power: &'a [PowerRow],
}

/// The run as one pretty-printed JSON object (see the [module docs](self)).
pub fn json(data: &RunData) -> serde_json::Result<Vec<u8>> {
    let RunRows {
        layers,
        components,
        operations,
    } = data.rows_or_empty();
    serde_json::to_vec_pretty(&FullRun {
        run: data.run(),
        sections: &data.sections,
        tokens: &data.tokens,
        layers,
        components,
        operations,
        power: &data.power,
    })
}

/// Every timed row of the run as CSV (see the [module docs](self)).
pub fn csv(data: &RunData) -> serde_json::Result<String> {
    let mut out = CSV_COLUMNS.join(",");
    out.push('\n');
    let mut push = |level: &str, v: Value, name_key: &str| {
        let get = |k: &str| v.get(k).cloned().unwrap_or(Value::Null);
        let cells: Vec<String> = CSV_COLUMNS
            .iter()
            .map(|c| match *c {
                "level" => level.to_string(),
                "name" => csv_cell(&get(name_key)),
                "kind" => csv_cell(&get(if level == "component" {
                    "component"
                } else {
                    "kind"
                })),
                other => csv_cell(&get(other)),
            })
            .collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    };
    let RunRows {
        layers,
        components,
        operations,
    } = data.rows_or_empty();
    for s in &data.sections {
        push("section", serde_json::to_value(s)?, "name");
    }
    for t in &data.tokens {
        push("token", serde_json::to_value(t)?, "text");
    }
    for l in layers {
        push("layer", serde_json::to_value(l)?, "layer_index");
    }
    for c in components {
        push("component", serde_json::to_value(c)?, "name");
    }
    for o in operations {
        push("operation", serde_json::to_value(o)?, "operation");
    }
    Ok(out)
}

/// One CSV cell: empty for null, a string quoted when it holds a comma, quote or line
/// break (its quotes doubled), anything else as JSON writes it.
fn csv_cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => {
            if s.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s.clone()
            }
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cells_quote_only_what_needs_it() {
        assert_eq!(csv_cell(&Value::Null), "");
        assert_eq!(csv_cell(&json!("plain")), "plain");
        assert_eq!(csv_cell(&json!("a,b")), "\"a,b\"");
        assert_eq!(csv_cell(&json!("say \"hi\"")), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell(&json!("two\nlines")), "\"two\nlines\"");
        assert_eq!(csv_cell(&json!("cr\r")), "\"cr\r\"");
        assert_eq!(csv_cell(&json!(1.5)), "1.5");
        assert_eq!(csv_cell(&json!(7)), "7");
        assert_eq!(csv_cell(&json!(true)), "true");
    }
}
