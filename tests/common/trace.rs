//! Chrome traces altered the way a writer can get nesting wrong, so that the tests show
//! their checks catch it.

use serde_json::Value;

/// The complete (X) events of a trace, in trace order.
pub fn x_events(trace: &mut Value) -> Vec<&mut Value> {
    trace["traceEvents"]
        .as_array_mut()
        .expect("traceEvents")
        .iter_mut()
        .filter(|e| e["ph"] == "X")
        .collect()
}

/// The trace with times as they were written before they were put on a grid: `ts` and `dur`
/// in µs with nanosecond decimals, `dur` the plain (end - start) / 1000 from the event's
/// `duration_ms`. Summed in `f64`, some children then end after their parent.
pub fn with_plain_times(trace: &Value) -> Value {
    let mut plain = trace.clone();
    for e in x_events(&mut plain) {
        let ns = (e["args"]["duration_ms"].as_f64().unwrap() * 1e6).round();
        e["ts"] = ((e["ts"].as_f64().unwrap() * 1000.0).round() / 1000.0).into();
        e["dur"] = (ns / 1000.0).into();
    }
    plain
}
