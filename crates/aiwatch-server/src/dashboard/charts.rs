//! The dashboard's charts, drawn as SVG on the server: the bar patterns, the per-day uptime
//! bars, the latency sparkline, the p50/p95 latency chart and the phase breakdown bar.

use aiwatch_core::observation::PhaseMs;
use chrono::{DateTime, Utc};
use maud::{html, Markup, PreEscaped};

use super::history::{Day, Mark};
use super::present;

/// Width of one day in the uptime bars' coordinates: a 3-unit bar and a 1-unit gap.
const PITCH: usize = 4;
const BAR: usize = 3;
const BARS_HEIGHT: usize = 30;

/// The bar patterns, once per page; the uptime bars of every service refer to them by id.
pub fn sprite() -> Markup {
    html! {
        svg.sprite aria-hidden="true" {
            defs {
                @for (id, class) in [("b-ok", "f-ok"), ("b-unk", "f-unk")] {
                    pattern id=(id) width=(PITCH) height=(BARS_HEIGHT) patternUnits="userSpaceOnUse" {
                        rect width=(BAR) height=(BARS_HEIGHT) class=(class) {}
                    }
                }
            }
        }
    }
}

/// Geometry of a day's bar: taller for worse days, so severity shows in the shape as well.
fn bar_geometry(mark: Mark) -> (usize, usize) {
    match mark {
        Mark::Outage => (0, BARS_HEIGHT),
        Mark::Degraded => (4, BARS_HEIGHT - 4),
        Mark::Ok | Mark::NoData => (8, BARS_HEIGHT - 8),
    }
}

/// A stretch of days drawn as one element.
struct Run<'a> {
    first: usize,
    days: &'a [Day],
}

/// Clean days and days without data are merged into runs (one element with a pattern fill);
/// every other day is its own bar. This keeps 90 days × 50 services small.
fn runs(days: &[Day]) -> Vec<Run<'_>> {
    let mergeable = |d: &Day| d.is_clean() || (d.mark == Mark::NoData && d.incidents == 0);
    let mut out: Vec<Run<'_>> = Vec::new();
    let mut i = 0;
    while i < days.len() {
        let mut j = i + 1;
        if mergeable(&days[i]) {
            while j < days.len() && mergeable(&days[j]) && days[j].mark == days[i].mark {
                j += 1;
            }
        }
        out.push(Run {
            first: i,
            days: &days[i..j],
        });
        i = j;
    }
    out
}

/// The uptime bars: one bar per day, colored and sized by the day's worst state, each with its
/// day's uptime and incidents as a tooltip; the whole as an image whose label lists the days
/// with trouble.
pub fn uptime_bars(days: &[Day], overall: Option<f64>) -> Markup {
    let width = days.len() * PITCH - (PITCH - BAR);
    let troubled: Vec<&Day> = days
        .iter()
        .filter(|d| matches!(d.mark, Mark::Degraded | Mark::Outage))
        .collect();
    let no_data = days.iter().filter(|d| d.mark == Mark::NoData).count();
    let mut label = format!(
        "Uptime, last {} days: {}.",
        days.len(),
        overall.map_or_else(|| "no data".to_owned(), present::percent)
    );
    if troubled.is_empty() {
        label.push_str(" No days with trouble.");
    } else {
        label.push_str(&format!(
            " Trouble on {}:",
            present::plural(troubled.len(), "day", "days")
        ));
        let parts: Vec<String> = troubled
            .iter()
            .map(|d| format!(" {}, {}", present::day(d.start), d.text()))
            .collect();
        label.push_str(&parts.join(";"));
        label.push('.');
    }
    if no_data > 0 {
        label.push_str(&format!(
            " No data on {}.",
            present::plural(no_data, "day", "days")
        ));
    }
    let start = days
        .first()
        .map(|d| d.start.format("%Y-%m-%d").to_string())
        .unwrap_or_default();
    html! {
        svg.bars viewBox={"0 0 " (width) " " (BARS_HEIGHT)} preserveAspectRatio="none" role="img"
            aria-label=(label) data-start=(start) {
            @for run in runs(days) {
                @let first = &run.days[0];
                @let x = run.first * PITCH;
                @let (y, h) = bar_geometry(first.mark);
                @if run.days.len() == 1 && !(first.is_clean() || first.mark == Mark::NoData) {
                    rect x=(x) y=(y) width=(BAR) height=(h) class={"f-" (first.mark.class())} {
                        title { (present::day(first.start)) ": " (first.text()) }
                    }
                } @else {
                    @let last = &run.days[run.days.len() - 1];
                    rect x=(x) y=(y) width=(run.days.len() * PITCH - (PITCH - BAR)) height=(h) fill={"url(#b-" (first.mark.class()) ")"} {
                        title {
                            (present::day(first.start))
                            @if run.days.len() > 1 { " – " (present::day(last.start)) }
                            ": " (first.text())
                        }
                    }
                }
            }
        }
    }
}

/// The line under the uptime bars: the uptime in figures (the ends are labelled by the stylesheet).
pub fn bars_axis(uptime: Option<f64>) -> Markup {
    html! {
        p.axis aria-hidden="true" {
            span { (uptime.map_or_else(|| "no data".to_owned(), |u| format!("{} uptime", present::percent(u)))) }
        }
    }
}

/// A latency sparkline (values oldest first), beside the figure it shows. Coordinates are whole
/// pixels and the path uses implicit line-tos, so 48 points cost ~250 bytes.
pub fn sparkline(values: &[f32], label: &str) -> Markup {
    const W: f32 = 96.0;
    const H: f32 = 28.0;
    let max = values.iter().copied().fold(0.0f32, f32::max).max(1.0);
    let step = if values.len() > 1 {
        W / (values.len() - 1) as f32
    } else {
        0.0
    };
    let mut d = String::with_capacity(values.len() * 6);
    let mut last = None;
    for (i, v) in values.iter().enumerate() {
        let x = (i as f32 * step).round();
        let y = (H - 3.0 - (v / max) * (H - 6.0)).round();
        d.push_str(&format!("{}{x} {y}", if i == 0 { "M" } else { " " }));
        last = Some((x, y));
    }
    html! {
        svg.spark viewBox="0 0 96 28" role="img" aria-label=(label) {
            @if values.len() > 1 {
                path d=(d) {}
            }
            @if let Some((x, y)) = last {
                circle cx=(x) cy=(y) r="2.5" {}
            }
        }
    }
}

/// One bucket of the latency chart.
#[derive(Clone, Debug, PartialEq)]
pub struct LatencyPoint {
    pub start: DateTime<Utc>,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub count: u64,
}

/// A "nice" upper bound for an axis: 1, 2 or 5 times a power of ten.
fn nice_ceiling(max: f64) -> f64 {
    if max <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|v| *v >= max)
        .unwrap_or(10.0 * magnitude)
}

/// The p50/p95 latency chart over a range: p50 solid, p95 dashed (not told apart by color
/// alone), gaps where there was no data, and a grid labelled in milliseconds.
pub fn latency_chart(points: &[LatencyPoint], label: &str, now: DateTime<Utc>) -> Markup {
    const W: f64 = 720.0;
    const H: f64 = 200.0;
    const LEFT: f64 = 56.0;
    const BOTTOM: f64 = 22.0;
    const TOP: f64 = 8.0;
    let max = points
        .iter()
        .filter_map(|p| p.p95.or(p.p50))
        .fold(0.0, f64::max);
    let ceiling = nice_ceiling(max);
    let plot_w = W - LEFT - 8.0;
    let plot_h = H - BOTTOM - TOP;
    let x_of = |i: usize| {
        LEFT + if points.len() > 1 {
            i as f64 * plot_w / (points.len() - 1) as f64
        } else {
            plot_w / 2.0
        }
    };
    let y_of = |v: f64| TOP + plot_h - (v / ceiling).min(1.0) * plot_h;
    let line = |pick: &dyn Fn(&LatencyPoint) -> Option<f64>| {
        let mut d = String::new();
        let mut pen_down = false;
        for (i, p) in points.iter().enumerate() {
            match pick(p) {
                Some(v) => {
                    d.push_str(&format!(
                        "{}{:.1} {:.1}",
                        if pen_down { "L" } else { "M" },
                        x_of(i),
                        y_of(v)
                    ));
                    pen_down = true;
                }
                None => pen_down = false,
            }
        }
        d
    };
    let dots = |pick: &dyn Fn(&LatencyPoint) -> Option<f64>| -> Vec<(f64, f64)> {
        // Isolated points (no neighbour with data) would be invisible as a line.
        points
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                let v = pick(p)?;
                let before = i.checked_sub(1).and_then(|j| points.get(j)).and_then(pick);
                let after = points.get(i + 1).and_then(pick);
                (before.is_none() && after.is_none()).then(|| (x_of(i), y_of(v)))
            })
            .collect()
    };
    let p50 = |p: &LatencyPoint| p.p50;
    let p95 = |p: &LatencyPoint| p.p95;
    // Fifths of a 1-, 2- or 5-based ceiling are round numbers too.
    let ticks = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0];
    let labels: Vec<(f64, String, &str)> = match (points.first(), points.last()) {
        (Some(first), Some(last)) if points.len() > 1 => {
            let mid = &points[points.len() / 2];
            [
                (0, first, "start"),
                (points.len() / 2, mid, "middle"),
                (points.len() - 1, last, "end"),
            ]
            .into_iter()
            .map(|(i, p, anchor)| {
                (
                    x_of(i),
                    axis_time(p.start, first.start, last.start, now),
                    anchor,
                )
            })
            .collect()
        }
        _ => Vec::new(),
    };
    html! {
        svg.chart viewBox={"0 0 " (W) " " (H)} role="img" aria-label=(label) {
            @for t in ticks {
                @let y = y_of(t * ceiling);
                line.grid x1=(LEFT) x2=(W - 8.0) y1=(format!("{y:.1}")) y2=(format!("{y:.1}")) {}
                text.ylabel x=(LEFT - 6.0) y=(format!("{:.1}", y + 4.0)) text-anchor="end" { (present::ms(t * ceiling)) }
            }
            @for (x, text, anchor) in &labels {
                text.xlabel x=(format!("{x:.1}")) y=(H - 6.0) text-anchor=(anchor) { (text) }
            }
            path.p95 d=(line(&p95)) {}
            path.p50 d=(line(&p50)) {}
            @for (x, y) in dots(&p95) { circle.p95dot cx=(format!("{x:.1}")) cy=(format!("{y:.1}")) r="2.5" {} }
            @for (x, y) in dots(&p50) { circle.p50dot cx=(format!("{x:.1}")) cy=(format!("{y:.1}")) r="2.5" {} }
        }
    }
}

fn axis_time(
    at: DateTime<Utc>,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
    now: DateTime<Utc>,
) -> String {
    if last - first <= chrono::Duration::days(2) {
        if at.date_naive() == now.date_naive() {
            at.format("%H:%M").to_string()
        } else {
            at.format("%-d %b %H:%M").to_string()
        }
    } else {
        at.format("%-d %b").to_string()
    }
}

/// The phases of one check, in order, with their CSS class.
pub fn phases(p: &PhaseMs) -> Vec<(&'static str, &'static str, f64)> {
    let mut out = Vec::new();
    let mut sum = 0.0;
    for (name, class, value) in [
        ("DNS", "ph-dns", p.dns),
        ("connect", "ph-tcp", p.connect),
        ("TLS", "ph-tls", p.tls),
        ("first byte", "ph-fb", p.first_byte),
    ] {
        if let Some(v) = value {
            out.push((name, class, f64::from(v)));
            sum += f64::from(v);
        }
    }
    if let Some(total) = p.total {
        let rest = f64::from(total) - sum;
        if rest > 0.05 {
            out.push(("transfer", "ph-rest", rest));
        }
    }
    out
}

/// One check's time split by phase, as a stacked bar; the legend beside it carries the figures.
pub fn phase_bar(p: &PhaseMs) -> Markup {
    let parts = phases(p);
    let total: f64 = parts.iter().map(|(_, _, v)| v).sum();
    if total <= 0.0 {
        return html! {};
    }
    let mut x = 0.0;
    let mut rects = Vec::new();
    for (name, class, v) in &parts {
        let w = v / total * 1000.0;
        rects.push((x, w, *name, *class, *v));
        x += w;
    }
    html! {
        svg.phasebar viewBox="0 0 1000 14" preserveAspectRatio="none" aria-hidden="true" {
            @for (x, w, name, class, v) in rects {
                rect class=(class) x=(format!("{x:.1}")) width=(format!("{w:.1}")) height="14" {
                    title { (name) " " (present::ms(v)) }
                }
            }
        }
    }
}

/// The aiwatch mark: an eye with a pulse line.
pub fn logo() -> Markup {
    PreEscaped(LOGO.to_owned())
}

const LOGO: &str = r##"<svg class="logo" viewBox="0 0 32 32" aria-hidden="true" focusable="false"><rect width="32" height="32" rx="8" fill="currentColor"/><path d="M5 16.5h5.2l2.3-5.5 4 11 2.6-7.2 1.6 1.7H27" fill="none" stroke="#fff" stroke-width="2.4" stroke-linecap="round" stroke-linejoin="round"/></svg>"##;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_ceilings_are_round() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(87.0), 100.0);
        assert_eq!(nice_ceiling(120.0), 200.0);
        assert_eq!(nice_ceiling(420.0), 500.0);
    }
}
