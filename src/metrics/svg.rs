//! Hand-written SVG charts (no dependencies): per-era corr bars with the cumulative corr, and a
//! generic multi-series line chart (training curves, feature weights over eras).

use super::summary::Evaluation;
use std::fmt::Write;

const W: f64 = 960.0;
const H: f64 = 420.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 80.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 70.0;
const PALETTE: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

/// Escapes text for XML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // characters XML 1.0 does not allow
            c if (c as u32) < 0x20 && c != '\t' && c != '\n' && c != '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// About `count` round tick values covering [lo, hi].
fn ticks(lo: f64, hi: f64, count: usize) -> Vec<f64> {
    let span = hi - lo;
    if !span.is_finite() || span <= 0.0 {
        return vec![lo];
    }
    let raw = span / count.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let start = (lo / step).ceil() as i64;
    let end = (hi / step).floor() as i64;
    (start..=end).map(|k| k as f64 * step).collect()
}

fn fmt_tick(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if !(1e-3..1e5).contains(&a) {
        format!("{v:.1e}")
    } else {
        let s = format!("{v:.4}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_string()
    }
}

/// Range covering the finite values (and 0 when `with_zero`), padded, never empty.
fn range(values: impl Iterator<Item = f64>, with_zero: bool) -> (f64, f64) {
    let (mut lo, mut hi) = if with_zero {
        (0.0, 0.0)
    } else {
        (f64::INFINITY, f64::NEG_INFINITY)
    };
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() || !hi.is_finite() {
        return (-1.0, 1.0);
    }
    if hi - lo <= 0.0 {
        let d = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        return (lo - d, hi + d);
    }
    let pad = (hi - lo) * 0.05;
    (
        if with_zero && lo == 0.0 {
            0.0
        } else {
            lo - pad
        },
        hi + pad,
    )
}

fn header(s: &mut String, title: &str) {
    let _ = write!(
        s,
        r##"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">
<rect x="0" y="0" width="{W}" height="{H}" fill="white"/>
<text x="{}" y="28" text-anchor="middle" font-size="16" font-weight="bold">{}</text>
"##,
        W / 2.0,
        escape(title)
    );
}

/// Era/step labels along the x axis, thinned to at most ~20; `x_of(i)` is the centre of slot i.
fn x_labels(s: &mut String, labels: &[String], x_of: impl Fn(usize) -> f64, axis_title: &str) {
    let every = labels.len().div_ceil(20).max(1);
    let y = H - BOTTOM;
    for (i, l) in labels.iter().enumerate().filter(|(i, _)| i % every == 0) {
        let x = x_of(i);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.2}" y1="{y}" x2="{x:.2}" y2="{}" stroke="#333"/><text x="{x:.2}" y="{}" text-anchor="end" transform="rotate(-45 {x:.2} {})">{}</text>"##,
            y + 4.0,
            y + 16.0,
            y + 16.0,
            escape(l)
        );
    }
    let _ = writeln!(
        s,
        r##"<text x="{}" y="{}" text-anchor="middle">{}</text>"##,
        LEFT + (W - LEFT - RIGHT) / 2.0,
        H - 8.0,
        escape(axis_title)
    );
}

/// A y axis at `x` with ticks for [lo, hi]; `right` puts labels on the right side.
fn y_axis(s: &mut String, lo: f64, hi: f64, x: f64, right: bool, title: &str, grid: bool) {
    let y_of = |v: f64| TOP + (hi - v) / (hi - lo) * (H - TOP - BOTTOM);
    let _ = writeln!(
        s,
        r##"<line x1="{x}" y1="{TOP}" x2="{x}" y2="{}" stroke="#333"/>"##,
        H - BOTTOM
    );
    for t in ticks(lo, hi, 6) {
        let y = y_of(t);
        let (x2, tx, anchor) = if right {
            (x + 4.0, x + 7.0, "start")
        } else {
            (x - 4.0, x - 7.0, "end")
        };
        if grid {
            let _ = writeln!(
                s,
                r##"<line x1="{LEFT}" y1="{y:.2}" x2="{}" y2="{y:.2}" stroke="#e5e5e5"/>"##,
                W - RIGHT
            );
        }
        let _ = writeln!(
            s,
            r##"<line x1="{x}" y1="{y:.2}" x2="{x2}" y2="{y:.2}" stroke="#333"/><text x="{tx}" y="{:.2}" text-anchor="{anchor}">{}</text>"##,
            y + 4.0,
            fmt_tick(t)
        );
    }
    let cx = if right { W - 18.0 } else { 18.0 };
    let cy = TOP + (H - TOP - BOTTOM) / 2.0;
    let _ = writeln!(
        s,
        r##"<text x="{cx}" y="{cy}" text-anchor="middle" transform="rotate(-90 {cx} {cy})">{}</text>"##,
        escape(title)
    );
}

fn legend(s: &mut String, items: &[(String, &str)]) {
    let mut x = LEFT + 10.0;
    for (name, color) in items {
        let _ = writeln!(
            s,
            r##"<rect x="{x:.1}" y="{}" width="12" height="12" fill="{color}"/><text x="{:.1}" y="{}">{}</text>"##,
            TOP - 18.0,
            x + 16.0,
            TOP - 8.0,
            escape(name)
        );
        x += 30.0 + 7.0 * name.chars().count() as f64;
    }
}

/// Per-era corr bars (green above 0, red below; none for eras without a corr) and the cumulative
/// corr over scored eras as a line on a second (right) axis.
pub fn corr_chart(eval: &Evaluation) -> String {
    let n = eval.eras.len();
    let labels: Vec<String> = eval.eras.iter().map(|e| e.era.clone()).collect();
    let corrs: Vec<Option<f64>> = eval.eras.iter().map(|e| e.corr).collect();
    let mut cum = Vec::with_capacity(n);
    let mut acc = 0.0;
    for c in &corrs {
        acc += c.unwrap_or(0.0);
        cum.push(acc);
    }
    let m = corrs
        .iter()
        .flatten()
        .fold(0.0f64, |a, c| a.max(c.abs()))
        .max(1e-6)
        * 1.1;
    let (lo, hi) = (-m, m);
    let (clo, chi) = range(cum.iter().cloned(), true);
    let plot_w = W - LEFT - RIGHT;
    let slot = plot_w / n.max(1) as f64;
    let x_of = |i: usize| LEFT + (i as f64 + 0.5) * slot;
    let y_of = |v: f64| TOP + (hi - v) / (hi - lo) * (H - TOP - BOTTOM);
    let yc_of = |v: f64| TOP + (chi - v) / (chi - clo) * (H - TOP - BOTTOM);

    let mut s = String::new();
    let title = match (eval.mean, eval.sharpe) {
        (Some(mn), Some(sh)) => format!("Per-era numerai_corr (mean {mn:.4}, sharpe {sh:.2})"),
        (Some(mn), None) => format!("Per-era numerai_corr (mean {mn:.4})"),
        _ => "Per-era numerai_corr".to_string(),
    };
    header(&mut s, &title);
    y_axis(&mut s, lo, hi, LEFT, false, "corr", true);
    y_axis(&mut s, clo, chi, W - RIGHT, true, "cumulative corr", false);
    let _ = writeln!(
        s,
        r##"<line x1="{LEFT}" y1="{:.2}" x2="{}" y2="{:.2}" stroke="#333"/>"##,
        y_of(0.0),
        W - RIGHT,
        y_of(0.0)
    );
    let bw = (slot * 0.8).max(0.5);
    for (i, c) in corrs.iter().enumerate() {
        let Some(c) = c else { continue };
        let (y0, y1) = (y_of(c.max(0.0)), y_of(c.min(0.0)));
        let color = if *c >= 0.0 { "#2ca02c" } else { "#d62728" };
        let _ = writeln!(
            s,
            r##"<rect x="{:.2}" y="{y0:.2}" width="{bw:.2}" height="{:.2}" fill="{color}"><title>{}: {c:.5}</title></rect>"##,
            x_of(i) - bw / 2.0,
            (y1 - y0).max(0.5),
            escape(&labels[i])
        );
    }
    if n > 0 {
        let pts: Vec<String> = cum
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{:.2},{:.2}", x_of(i), yc_of(*v)))
            .collect();
        let _ = writeln!(
            s,
            r##"<polyline points="{}" fill="none" stroke="#1f3a93" stroke-width="2"/>"##,
            pts.join(" ")
        );
    }
    x_labels(&mut s, &labels, x_of, "era");
    legend(
        &mut s,
        &[
            ("corr > 0".to_string(), "#2ca02c"),
            ("corr < 0".to_string(), "#d62728"),
            ("cumulative corr (right axis)".to_string(), "#1f3a93"),
        ],
    );
    s.push_str("</svg>\n");
    s
}

/// A line per series over the x labels (series shorter than the labels stop early; NaN breaks a
/// line), with a y axis, thinned x labels, a legend and a title.
pub fn line_chart(title: &str, x_labels_: &[String], series: &[(String, Vec<f64>)]) -> String {
    let n = x_labels_
        .len()
        .max(series.iter().map(|s| s.1.len()).max().unwrap_or(0));
    let (lo, hi) = range(series.iter().flat_map(|s| s.1.iter().cloned()), false);
    let plot_w = W - LEFT - RIGHT;
    let x_of = |i: usize| {
        if n <= 1 {
            LEFT + plot_w / 2.0
        } else {
            LEFT + i as f64 / (n - 1) as f64 * plot_w
        }
    };
    let y_of = |v: f64| TOP + (hi - v) / (hi - lo) * (H - TOP - BOTTOM);
    let mut s = String::new();
    header(&mut s, title);
    y_axis(&mut s, lo, hi, LEFT, false, "", true);
    let _ = writeln!(
        s,
        r##"<line x1="{LEFT}" y1="{}" x2="{}" y2="{}" stroke="#333"/>"##,
        H - BOTTOM,
        W - RIGHT,
        H - BOTTOM
    );
    let mut legend_items = Vec::new();
    for (k, (name, ys)) in series.iter().enumerate() {
        let color = PALETTE[k % PALETTE.len()];
        legend_items.push((name.clone(), color));
        let mut segment: Vec<String> = Vec::new();
        let flush = |seg: &mut Vec<String>, s: &mut String| {
            if seg.len() == 1 {
                if let Some((x, y)) = seg[0].split_once(',') {
                    let _ = writeln!(s, r##"<circle cx="{x}" cy="{y}" r="2" fill="{color}"/>"##);
                }
            } else if seg.len() > 1 {
                let _ = writeln!(
                    s,
                    r##"<polyline points="{}" fill="none" stroke="{color}" stroke-width="1.5"/>"##,
                    seg.join(" ")
                );
            }
            seg.clear();
        };
        for (i, y) in ys.iter().enumerate() {
            if y.is_finite() {
                segment.push(format!("{:.2},{:.2}", x_of(i), y_of(*y)));
            } else {
                flush(&mut segment, &mut s);
            }
        }
        flush(&mut segment, &mut s);
    }
    let labels: Vec<String> = (0..n)
        .map(|i| x_labels_.get(i).cloned().unwrap_or_else(|| i.to_string()))
        .collect();
    x_labels(&mut s, &labels, x_of, "");
    legend(&mut s, &legend_items);
    s.push_str("</svg>\n");
    s
}
