//! A run's rows as one JSON document or as one CSV table, for other tools.
//!
//! - [`json`] / [`write_json`]: the run as one pretty-printed JSON object with the members
//!   `run`, `detail`, `sections`, `tokens`, `layers`, `components`, `operations` and
//!   `power`, in that order, each the store's rows as they serialize. `detail` is the level
//!   the run was read at ([`Detail::name`]); the row lists below the level are left out
//!   (not read, which is not the same as none), e.g. `layers`, `components` and
//!   `operations` at [`Detail::Tokens`].
//! - [`csv`] / [`write_csv`]: every timed row the level holds (sections, tokens, layers,
//!   components, operations, in that order) as one CSV line under the header
//!   [`CSV_COLUMNS`], its `level` saying which. An unknown value is an empty cell; a text
//!   with a comma, quote or line break is quoted, its quotes doubled.
//!
//! Both write what [`RunData`] holds, down to [`RunData::detail`]. The `write_` forms stream
//! into any writer (a file, a gzip encoder); the others return the whole text.

use std::io::{self, Write};

use serde::Serialize;
use serde_json::Value;

use super::run_data::{Detail, RunData, RunRows};
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

/// The JSON document: its members in this order; the row lists below the level left out.
#[derive(Serialize)]
struct FullRun<'a> {
    run: &'a Run,
    detail: &'static str,
    sections: &'a [Row<SectionRecord>],
    #[serde(skip_serializing_if = "Option::is_none")]
    tokens: Option<&'a [Row<TokenRecord>]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    layers: Option<&'a [Row<LayerRecord>]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    components: Option<&'a [Row<ComponentRecord>]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    operations: Option<&'a [Row<OperationRecord>]>,
    power: &'a [PowerRow],
}

impl<'a> FullRun<'a> {
    fn new(data: &'a RunData) -> FullRun<'a> {
        let RunRows {
            layers,
            components,
            operations,
        } = data.rows_or_empty();
        let d: Detail = data.detail;
        FullRun {
            run: data.run(),
            detail: d.name(),
            sections: &data.sections,
            tokens: d.has_tokens().then_some(&data.tokens[..]),
            layers: d.has_layers().then_some(&layers[..]),
            components: d.has_components().then_some(&components[..]),
            operations: d.has_operations().then_some(&operations[..]),
            power: &data.power,
        }
    }
}

/// The run as one pretty-printed JSON object (see the [module docs](self)).
pub fn json(data: &RunData) -> serde_json::Result<Vec<u8>> {
    serde_json::to_vec_pretty(&FullRun::new(data))
}

/// [`json`], streamed into `out` through a buffer. Fails with `out`'s errors.
pub fn write_json<W: Write>(data: &RunData, out: W) -> io::Result<()> {
    let mut out = io::BufWriter::with_capacity(1 << 16, out);
    serde_json::to_writer_pretty(&mut out, &FullRun::new(data))?;
    out.flush()
}

/// Every timed row of the run as CSV (see the [module docs](self)).
pub fn csv(data: &RunData) -> serde_json::Result<String> {
    let mut out = Vec::new();
    write_csv(data, &mut out).map_err(serde_json::Error::io)?;
    // Every cell is a JSON string's or number's text: UTF-8.
    Ok(String::from_utf8(out).expect("CSV cells are UTF-8"))
}

/// [`csv`], streamed into `out` a line at a time through a buffer. Fails with `out`'s
/// errors.
pub fn write_csv<W: Write>(data: &RunData, out: W) -> io::Result<()> {
    let mut out = io::BufWriter::with_capacity(1 << 16, out);
    out.write_all(CSV_COLUMNS.join(",").as_bytes())?;
    out.write_all(b"\n")?;
    let mut line = String::new();
    let mut push = |level: &str, v: Value, name_key: &str| -> io::Result<()> {
        let get = |k: &str| v.get(k).unwrap_or(&Value::Null);
        line.clear();
        for (i, c) in CSV_COLUMNS.iter().enumerate() {
            if i > 0 {
                line.push(',');
            }
            let cell = match *c {
                "level" => level.to_string(),
                "name" => csv_cell(get(name_key)),
                "kind" => csv_cell(get(if level == "component" {
                    "component"
                } else {
                    "kind"
                })),
                other => csv_cell(get(other)),
            };
            line.push_str(&cell);
        }
        line.push('\n');
        out.write_all(line.as_bytes())
    };
    let RunRows {
        layers,
        components,
        operations,
    } = data.rows_or_empty();
    let value = |v: serde_json::Result<Value>| v.map_err(io::Error::from);
    for s in &data.sections {
        push("section", value(serde_json::to_value(s))?, "name")?;
    }
    if data.detail.has_tokens() {
        for t in &data.tokens {
            push("token", value(serde_json::to_value(t))?, "text")?;
        }
    }
    for l in layers {
        push("layer", value(serde_json::to_value(l))?, "layer_index")?;
    }
    for c in components {
        push("component", value(serde_json::to_value(c))?, "name")?;
    }
    for o in operations {
        push("operation", value(serde_json::to_value(o))?, "operation")?;
    }
    out.flush()
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
