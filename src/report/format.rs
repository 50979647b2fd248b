//! Escaping, number formatting, axis ticks and colours for the HTML report.

/// Escapes text for HTML and SVG, in element content and in quoted attribute values:
/// `&`, `<`, `>`, `"` and `'` become character references, and control characters other
/// than tab, newline and carriage return (which HTML does not allow) become U+FFFD.
///
/// ```
/// use tracing_energy::report::escape_html;
/// assert_eq!(
///     escape_html("<script>alert('x & y')</script>"),
///     "&lt;script&gt;alert(&#39;x &amp; y&#39;)&lt;/script&gt;"
/// );
/// ```
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if c.is_control() => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// `1234567.8` as `1,234,568`: digits grouped by thousands.
fn group_thousands(int_part: &str) -> String {
    let (sign, digits) = match int_part.strip_prefix('-') {
        Some(d) => ("-", d),
        None => ("", int_part),
    };
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    format!("{sign}{out}")
}

/// A number with about three significant digits (all integer digits for large values,
/// grouped by thousands): `38,820`, `123`, `12.3`, `1.23`, `0.0123`.
pub(super) fn num(v: f64) -> String {
    if !v.is_finite() {
        return "?".into();
    }
    let a = v.abs();
    let s = if a >= 100.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        let digits = (-a.log10().floor()) as usize + 2;
        format!("{v:.digits$}")
    };
    let s = if s == "-0" { "0".to_string() } else { s };
    match s.split_once('.') {
        Some((i, f)) => format!("{}.{f}", group_thousands(i)),
        None => group_thousands(&s),
    }
}

/// A number with its unit, or `unknown`.
pub(super) fn with_unit(v: Option<f64>, unit: &str) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{} {unit}", num(v)),
        _ => "unknown".into(),
    }
}

/// Energy in mJ, or `unknown`.
pub(super) fn mj(v: Option<f64>) -> String {
    with_unit(v, "mJ")
}

/// A share as a percentage: `12.3 %`.
pub(super) fn pct(share: f64) -> String {
    if !share.is_finite() {
        return "?".into();
    }
    let p = share * 100.0;
    if p > 0.0 && p < 0.01 {
        "< 0.01 %".into()
    } else if p.abs() >= 10.0 {
        format!("{p:.0} %")
    } else if p.abs() >= 0.1 {
        format!("{p:.1} %")
    } else {
        format!("{p:.2} %")
    }
}

/// A value for an SVG attribute: at most two decimals, no trailing zeros.
pub(super) fn px(v: f64) -> String {
    if !v.is_finite() {
        return "0".into();
    }
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" || s.is_empty() {
        "0".into()
    } else {
        s.to_string()
    }
}

/// A "nice" step (1, 2 or 5 times a power of ten) for about `target` intervals over `span`.
pub(super) fn nice_step(span: f64, target: usize) -> f64 {
    if !(span.is_finite() && span > 0.0) {
        return 1.0;
    }
    let raw = span / target.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let nice = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

/// Ticks from 0 to at least `max` with a nice step; returns (ticks, axis maximum).
pub(super) fn ticks_from_zero(max: f64, target: usize) -> (Vec<f64>, f64) {
    let max = if max.is_finite() && max > 0.0 {
        max
    } else {
        1.0
    };
    let step = nice_step(max, target);
    let n = (max / step - 1e-9).ceil().max(1.0) as usize;
    let ticks = (0..=n).map(|i| i as f64 * step).collect();
    (ticks, n as f64 * step)
}

/// Ticks from 0 to at most `max` (the axis keeps `max` as its end).
pub(super) fn ticks_within(max: f64, target: usize) -> Vec<f64> {
    if !(max.is_finite() && max > 0.0) {
        return vec![0.0];
    }
    let step = nice_step(max, target);
    let n = (max / step + 1e-9).floor() as usize;
    (0..=n).map(|i| i as f64 * step).collect()
}

/// Colour of a power domain.
pub(super) fn domain_colour(domain: &str) -> &'static str {
    match domain {
        "cpu" => "#2f6fde",
        "gpu" => "#1b9e77",
        "ane" => "#8e44ad",
        "dram" => "#c9802e",
        _ => "#1f2937",
    }
}

/// Colour of a phase (shared by the timeline, the token bars, the sankey and the tables).
pub(super) fn phase_colour(phase: &str) -> &'static str {
    match phase {
        "prefill" => "#d1495b",
        "decode" => "#00798c",
        "tokenize" => "#8d6cab",
        "other" | "unattributed" => "#9aa3ad",
        _ => {
            const MORE: [&str; 4] = ["#edae49", "#66a182", "#3d5a80", "#b5838d"];
            MORE[hash(phase) % MORE.len()]
        }
    }
}

/// Colour of a component kind (shared by the heatmap headers, the sankey and the hottest
/// components).
pub(super) fn component_colour(component: &str) -> &'static str {
    match component {
        "attention" => "#4e79a7",
        "mlp" => "#f28e2b",
        "norm" => "#59a14f",
        "final_norm" => "#8cd17d",
        "output" => "#b07aa1",
        "embedding" => "#9c755f",
        "rest" | "other" => "#bab0ac",
        _ => {
            const MORE: [&str; 5] = ["#e15759", "#76b7b2", "#edc948", "#ff9da7", "#9d7660"];
            MORE[hash(component) % MORE.len()]
        }
    }
}

/// A stable hash of a name (FNV-1a), for picking colours.
pub(super) fn hash(s: &str) -> usize {
    s.bytes()
        .fold(2166136261u32, |h, b| (h ^ b as u32).wrapping_mul(16777619)) as usize
}

/// The sequential scale of the heatmap (light to dark, like ColorBrewer's OrRd), at
/// `t` in [0, 1].
pub(super) fn heat_colour(t: f64) -> String {
    const STOPS: [(u8, u8, u8); 6] = [
        (255, 247, 236),
        (253, 212, 158),
        (252, 141, 89),
        (227, 74, 51),
        (179, 0, 0),
        (110, 0, 0),
    ];
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let pos = t * (STOPS.len() - 1) as f64;
    let i = (pos.floor() as usize).min(STOPS.len() - 2);
    let f = pos - i as f64;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    let mix = |x: u8, y: u8| (x as f64 + (y as f64 - x as f64) * f).round() as u8;
    format!(
        "#{:02x}{:02x}{:02x}",
        mix(a.0, b.0),
        mix(a.1, b.1),
        mix(a.2, b.2)
    )
}

/// Whether text on the heat colour at `t` should be white.
pub(super) fn heat_text_light(t: f64) -> bool {
    t > 0.55
}

/// A rough width of `text` in SVG pixels at font size `size` (for layout only).
pub(super) fn text_width(text: &str, size: f64) -> f64 {
    text.chars().count() as f64 * size * 0.56
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_quotes_and_controls() {
        assert_eq!(
            escape_html(r#"<script>alert("1")</script> & 'x'"#),
            "&lt;script&gt;alert(&quot;1&quot;)&lt;/script&gt; &amp; &#39;x&#39;"
        );
        assert_eq!(
            escape_html("a\tb\nc\u{0}d\u{1b}"),
            "a\tb\nc\u{FFFD}d\u{FFFD}"
        );
        assert_eq!(escape_html("é → ✓"), "é → ✓");
        assert_eq!(escape_html("&amp;"), "&amp;amp;");
        // Nothing that could open a tag or end an attribute survives.
        let nasty = "\"><img src=x onerror=alert(1)><!-- ]]> </title></svg>";
        let e = escape_html(nasty);
        assert!(!e.contains('<') && !e.contains('>') && !e.contains('"') && !e.contains('\''));
    }

    #[test]
    fn numbers() {
        assert_eq!(num(38820.11), "38,820");
        assert_eq!(num(1234567.0), "1,234,567");
        assert_eq!(num(-1234.0), "-1,234");
        assert_eq!(num(123.4), "123");
        assert_eq!(num(12.34), "12.3");
        assert_eq!(num(1.234), "1.23");
        assert_eq!(num(0.01234), "0.0123");
        assert_eq!(num(0.0), "0");
        assert_eq!(num(-0.0001), "-0.000100");
        assert_eq!(mj(None), "unknown");
        assert_eq!(mj(Some(2.5)), "2.50 mJ");
        assert_eq!(pct(0.1234), "12 %");
        assert_eq!(pct(0.01234), "1.2 %");
        assert_eq!(pct(0.00000123), "< 0.01 %");
        assert_eq!(pct(0.0), "0.00 %");
        assert_eq!(px(1.0), "1");
        assert_eq!(px(1.256), "1.26");
        assert_eq!(px(-0.001), "0");
    }

    #[test]
    fn ticks() {
        let (t, max) = ticks_from_zero(33000.0, 5);
        assert_eq!(max, 40000.0);
        assert_eq!(t, vec![0.0, 10000.0, 20000.0, 30000.0, 40000.0]);
        let (t, max) = ticks_from_zero(2.3, 5);
        assert_eq!((t.len(), max), (6, 2.5));
        let (t, max) = ticks_from_zero(0.0, 5);
        assert_eq!((t.len(), max), (6, 1.0));
        assert_eq!(
            ticks_within(5400.0, 6),
            vec![0.0, 1000.0, 2000.0, 3000.0, 4000.0, 5000.0]
        );
        assert_eq!(nice_step(7.0, 7), 1.0);
    }

    #[test]
    fn colours() {
        assert_eq!(heat_colour(0.0), "#fff7ec");
        assert_eq!(heat_colour(1.0), "#6e0000");
        assert_eq!(heat_colour(f64::NAN), "#fff7ec");
        assert_eq!(component_colour("x"), component_colour("x"));
    }
}
