//! One inline SVG line chart of the report: a value per region over the run, y ticks at
//! round values with gridlines, axis titles with units, a labelled marker at every step
//! and the hold shaded. The legend is HTML beside the SVG, never over the lines.
//!
//! Stable attributes for scripts and the browser tests: `svg.chart[data-chart]`,
//! `rect.plot` (the plot area), `polyline[data-region][data-series]` with `data-values`
//! (one figure per sample in the series' own unit, `-` where there is none) and
//! `data-times` (seconds), `g.marker[data-kind][data-at][data-label]`,
//! `rect.hold[data-from][data-to]`, `line.grid[data-value]`, `.legend span[data-region]`.

use std::fmt::Write;

use super::series::{Marker, Series};
use crate::vocab::html::esc;

const COLORS: [&str; 6] = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2"];
const W: f64 = 760.0;
const H: f64 = 280.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
/// Room above the plot for the title and three rows of marker labels.
const TOP: f64 = 62.0;
const BOTTOM: f64 = 44.0;
const LABEL_ROW: f64 = 12.0;

/// How one chart reads its series.
pub(super) struct Spec<'a> {
    /// `share`, `rps` or `errors`: the `data-chart` and `data-series` names.
    pub(super) name: &'a str,
    pub(super) title: &'a str,
    pub(super) y_title: &'a str,
    /// Data value → drawn value (a ratio drawn as a percentage).
    pub(super) scale: f64,
    /// The smallest top of the y axis, in drawn units.
    pub(super) min_top: f64,
    /// A fixed top (shares: 100 %), else round above the largest value.
    pub(super) fixed_top: Option<f64>,
    /// The evacuated region: drawn thicker and named so in the legend.
    pub(super) region: &'a str,
}

/// A round tick step for `top` in about five ticks, and the axis top it gives.
pub(super) fn ticks(top: f64) -> (f64, f64) {
    let top = if top.is_finite() && top > 0.0 { top } else { 1.0 };
    let raw = top / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step =
        [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw * 0.999).unwrap_or(10.0 * mag);
    (step, (top / step - 1e-9).ceil().max(1.0) * step)
}

/// A tick's value with no more decimals than its step needs.
pub(super) fn tick_label(v: f64, step: f64) -> String {
    let decimals = (0..6)
        .find(|d| {
            let m = step * 10f64.powi(*d as i32);
            (m - m.round()).abs() < 1e-6 * m.max(1.0)
        })
        .unwrap_or(6);
    let s = format!("{v:.decimals$}");
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_owned() } else { s }
}

fn values_attr(values: &[Option<f64>]) -> String {
    let v: Vec<String> =
        values.iter().map(|v| v.map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into())).collect();
    v.join(" ")
}

/// The chart and its legend, as one `<figure>`.
pub(super) fn render(
    spec: &Spec<'_>,
    times: &[f64],
    series: &[Series],
    markers: &[Marker],
    hold: Option<(f64, f64)>,
) -> String {
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let t_max = times.last().copied().unwrap_or(1.0).max(1.0);
    let v_max =
        series.iter().flat_map(|s| s.values.iter().flatten()).fold(0.0f64, |a, v| a.max(v * spec.scale));
    let (y_step, y_top) = match spec.fixed_top {
        Some(top) => (top / 4.0, top),
        None => ticks(v_max.max(spec.min_top)),
    };
    let (x_step, _) = ticks(t_max);
    let x = |t: f64| LEFT + t / t_max * pw;
    let y = |v: f64| TOP + ph - (v / y_top).clamp(0.0, 1.0) * ph;
    let (name, title) = (spec.name, esc(spec.title));
    let mut svg = format!(
        r##"<svg class="chart" data-chart="{name}" viewBox="0 0 {W} {H}" role="img" aria-label="{title}"><title>{title}</title>
<text class="chart-title" x="{LEFT}" y="14" font-size="13" font-weight="600">{title}</text>
<rect class="plot" x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#9ca3af"/>"##
    );
    if let Some((from, to)) = hold {
        let _ = write!(
            svg,
            r##"<rect class="hold" data-from="{from:.1}" data-to="{to:.1}" x="{:.1}" y="{TOP}" width="{:.1}" height="{ph}" fill="#fef3c7" opacity="0.6"><title>hold: {from:.0} s to {to:.0} s</title></rect>"##,
            x(from),
            (x(to) - x(from)).max(0.0)
        );
    }
    let mut k = 0.0;
    while k * y_step <= y_top + 1e-9 {
        let v = k * y_step;
        let yy = y(v);
        let _ = write!(
            svg,
            r##"<line class="grid" data-value="{v}" x1="{LEFT}" x2="{:.1}" y1="{yy:.1}" y2="{yy:.1}" stroke="#e5e7eb"/><text class="tick" x="{:.1}" y="{:.1}" font-size="10" text-anchor="end">{}</text>"##,
            LEFT + pw,
            LEFT - 6.0,
            yy + 3.5,
            tick_label(v, y_step)
        );
        k += 1.0;
    }
    let mut k = 0.0;
    while k * x_step <= t_max + 1e-9 {
        let t = k * x_step;
        let _ = write!(
            svg,
            r##"<text class="tick" x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle">{}</text>"##,
            x(t),
            TOP + ph + 14.0,
            tick_label(t, x_step)
        );
        k += 1.0;
    }
    let _ = write!(
        svg,
        r##"<text class="axis-title" x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle">time since the exercise started (s)</text><text class="axis-title" transform="translate(14 {:.1}) rotate(-90)" font-size="11" text-anchor="middle">{}</text>"##,
        LEFT + pw / 2.0,
        H - 6.0,
        TOP + ph / 2.0,
        esc(spec.y_title)
    );
    // Marker labels in rows above the plot: a label goes to the first row where it does
    // not run into the one before it.
    let mut row_end = [f64::NEG_INFINITY; 3];
    for m in markers {
        let mx = x(m.at);
        let width = 6.0 * m.label.chars().count() as f64 + 6.0;
        let row = row_end.iter().position(|end| *end < mx - width / 2.0).unwrap_or(0);
        row_end[row] = mx + width / 2.0;
        let ly = TOP - 4.0 - LABEL_ROW * row as f64;
        let _ = write!(
            svg,
            r##"<g class="marker" data-kind="{kind}" data-at="{at:.1}" data-label="{label}"><line x1="{mx:.1}" x2="{mx:.1}" y1="{:.1}" y2="{:.1}" stroke="{color}" stroke-dasharray="3,3"/><text x="{mx:.1}" y="{ly:.1}" font-size="10" text-anchor="middle" fill="{color}">{label}</text></g>"##,
            ly + 2.0,
            TOP + ph,
            kind = esc(&m.kind),
            at = m.at,
            label = esc(&m.label),
            color = if m.kind == "hold" { "#b45309" } else { "#6b7280" },
        );
    }
    let mut legend = String::new();
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points: Vec<String> = times
            .iter()
            .zip(&s.values)
            .filter_map(|(t, v)| v.map(|v| format!("{:.1},{:.1}", x(*t), y(v * spec.scale))))
            .collect();
        let evacuated = s.region == spec.region;
        let times_attr: Vec<String> = times.iter().map(|t| format!("{t:.1}")).collect();
        let _ = write!(
            svg,
            r#"<polyline data-region="{r}" data-series="{name}" data-values="{}" data-times="{}" fill="none" stroke="{color}" stroke-width="{}" stroke-linejoin="round" points="{}"><title>{r}</title></polyline>"#,
            values_attr(&s.values),
            times_attr.join(" "),
            if evacuated { 3 } else { 2 },
            points.join(" "),
            r = esc(&s.region),
        );
        let _ = write!(
            legend,
            r#"<span data-region="{r}"><i class="sw" style="background:{color}"></i>{r}{}</span>"#,
            if evacuated { " (evacuated)" } else { "" },
            r = esc(&s.region),
        );
    }
    svg.push_str("</svg>");
    format!(
        r#"<figure class="chart-box">{svg}<div class="legend" data-chart="{name}">{legend}</div></figure>"#
    )
}
