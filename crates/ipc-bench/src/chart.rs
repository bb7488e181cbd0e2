//! The chart: median round-trip latency and one-way throughput by message size, one panel per
//! metric and placement, one line per row (raw rows dashed and peer rows dotted, in their
//! family's colour), as SVG.
//! When library rows were measured with their family's raw row, a second set of panels shows
//! each library row's time per message over its raw row's, by size (1.0 = as fast as the
//! plain loop; the 1.2 line is the bound `--sweep` checks).

use std::path::Path;

use plotters::element::DashedPathElement;
use plotters::prelude::*;

use crate::engine::{Metric, Placement};
use crate::report::{Report, size_name};
use crate::row::{RowInfo, RowKind};

/// One colour per family (a raw row is dashed in its family's colour).
const COLORS: [(u8, u8, u8); 10] = [
    (0x1f, 0x77, 0xb4),
    (0xd6, 0x27, 0x28),
    (0x2c, 0xa0, 0x2c),
    (0xff, 0x7f, 0x0e),
    (0x94, 0x67, 0xbd),
    (0x8c, 0x56, 0x4b),
    (0xe3, 0x77, 0xc2),
    (0x7f, 0x7f, 0x7f),
    (0xbc, 0xbd, 0x22),
    (0x17, 0xbe, 0xcf),
];

/// Draws the chart of `report` into `path`.
pub fn draw(report: &Report, path: &Path) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| format!("chart {}: {e}", path.display());
    let metrics: Vec<Metric> = [Metric::RoundTrip, Metric::Throughput]
        .into_iter()
        .filter(|m| report.items.iter().any(|(im, _)| im == m))
        .collect();
    let cols = report.placements.len().max(1);
    let ratios = report.rows.iter().any(|r| report.raw_of(r).is_some());
    let panel_rows = metrics.len().max(1) * if ratios { 2 } else { 1 };
    let root =
        SVGBackend::new(path, (640 * cols as u32, 420 * panel_rows as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let panels = root.split_evenly((panel_rows, cols));
    let families: Vec<&str> = report.rows.iter().fold(Vec::new(), |mut v, r| {
        if !v.contains(&r.family) {
            v.push(r.family);
        }
        v
    });
    for (i, &metric) in metrics.iter().enumerate() {
        for (j, &pl) in report.placements.iter().enumerate() {
            panel(report, &panels[i * cols + j], metric, pl, &families).map_err(|e| err(&e))?;
            if ratios {
                let area = &panels[(metrics.len() + i) * cols + j];
                ratio_panel(report, area, metric, pl, &families).map_err(|e| err(&e))?;
            }
        }
    }
    root.present().map_err(|e| err(&e))
}

/// The colour of `family`.
fn family_color(families: &[&str], family: &str) -> RGBColor {
    let fam = families.iter().position(|f| *f == family).unwrap_or(0);
    let (r8, g8, b8) = COLORS[fam % COLORS.len()];
    RGBColor(r8, g8, b8)
}

/// The sizes measured for `metric`, as x values.
fn sizes_of(report: &Report, metric: Metric) -> Vec<f64> {
    report
        .items
        .iter()
        .filter(|(m, _)| *m == metric)
        .map(|&(_, s)| s as f64)
        .collect()
}

/// The x range of a log-scale size axis over `sizes`.
fn size_range(sizes: &[f64]) -> (f64, f64) {
    let xmin = sizes.iter().copied().fold(f64::INFINITY, f64::min);
    let xmax = sizes.iter().copied().fold(0.0, f64::max);
    if !xmin.is_finite() {
        (32.0, 2e6)
    } else if xmax > xmin {
        (xmin / 1.3, xmax * 1.3)
    } else {
        (xmin / 4.0, xmax * 4.0)
    }
}

/// Library rows' time per message over their raw row's, by size (one line per library row
/// that has a raw row in the report), with the 1.0 and 1.2 lines.
fn ratio_panel<DB: DrawingBackend>(
    report: &Report,
    area: &DrawingArea<DB, plotters::coord::Shift>,
    metric: Metric,
    pl: Placement,
    families: &[&str],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let sizes = sizes_of(report, metric);
    let series: Vec<(&RowInfo, Vec<(f64, f64)>)> = report
        .rows
        .iter()
        .filter_map(|r| Some((r, report.raw_ratios(r, metric, pl)?)))
        .collect();
    let hi = series
        .iter()
        .flat_map(|(_, v)| v.iter().map(|p| p.1))
        .fold(1.5f64, f64::max)
        * 1.1;
    let lo = series
        .iter()
        .flat_map(|(_, v)| v.iter().map(|p| p.1))
        .fold(0.8f64, f64::min)
        * 0.9;
    let (xmin, xmax) = size_range(&sizes);
    let what = match metric {
        Metric::RoundTrip => "round trip",
        Metric::Throughput => "throughput",
    };
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("{what}: library / raw time per message, {}", pl.as_str()),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(
            (xmin..xmax).log_scale().with_key_points(sizes.clone()),
            lo..hi,
        )?;
    chart
        .configure_mesh()
        .x_desc("message size")
        .y_desc("x raw (lower is better)")
        .x_label_formatter(&|v| size_name(v.round() as usize))
        .y_label_formatter(&|&v| format!("{v:.2}"))
        .draw()?;
    for (y, color) in [(1.0, BLACK.mix(0.6)), (1.2, RED.mix(0.6))] {
        chart.draw_series(DashedLineSeries::new(
            [(xmin, y), (xmax, y)],
            4,
            4,
            color.stroke_width(1),
        ))?;
    }
    for (r, pts) in series {
        if pts.is_empty() {
            continue;
        }
        let style = family_color(families, r.family).stroke_width(2);
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, style.filled())))?;
        chart
            .draw_series(LineSeries::new(pts, style))?
            .label(r.id)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

fn panel<DB: DrawingBackend>(
    report: &Report,
    area: &DrawingArea<DB, plotters::coord::Shift>,
    metric: Metric,
    pl: Placement,
    families: &[&str],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let sizes = sizes_of(report, metric);
    let value = |p: &crate::stats::Point| match metric {
        Metric::RoundTrip => p.median_ns() / 1e3,
        Metric::Throughput => p.bytes_per_sec() / (1u64 << 30) as f64,
    };
    let series: Vec<(usize, Vec<(f64, f64)>)> = report
        .rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let pts = report
                .points
                .iter()
                .filter(|p| p.row == r.id && p.metric == metric && p.placement == pl)
                .map(|p| (p.size as f64, value(p)))
                .filter(|(_, v)| v.is_finite() && *v > 0.0)
                .collect();
            (i, pts)
        })
        .collect();
    let all = series.iter().flat_map(|(_, v)| v.iter().map(|p| p.1));
    let (lo, hi) = all.fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let (lo, hi) = if lo.is_finite() {
        (lo / 1.5, hi * 1.5)
    } else {
        (0.1, 10.0)
    };
    let (xmin, xmax) = size_range(&sizes);
    let (title, ylabel) = match metric {
        Metric::RoundTrip => ("round-trip latency (median)", "microseconds"),
        Metric::Throughput => ("one-way throughput", "GiB/s"),
    };
    let mut chart = ChartBuilder::on(area)
        .caption(format!("{title}, {}", pl.as_str()), ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(
            (xmin..xmax).log_scale().with_key_points(sizes.clone()),
            (lo..hi).log_scale(),
        )?;
    chart
        .configure_mesh()
        .x_desc("message size")
        .y_desc(ylabel)
        .x_label_formatter(&|v| size_name(v.round() as usize))
        .y_label_formatter(&|&v| match v {
            v if v >= 10.0 => format!("{v:.0}"),
            v if v >= 1.0 => format!("{v:.1}"),
            v => format!("{v:.2}"),
        })
        .draw()?;
    for (i, pts) in series {
        if pts.is_empty() {
            continue;
        }
        let r = &report.rows[i];
        let style = family_color(families, r.family).stroke_width(2);
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, style.filled())))?;
        if matches!(r.kind, RowKind::Raw | RowKind::Peer) {
            // Raw rows dashed, peer rows dotted.
            let (dash, gap) = if r.kind == RowKind::Raw {
                (6, 4)
            } else {
                (2, 3)
            };
            chart
                .draw_series(DashedLineSeries::new(pts, dash, gap, style))?
                .label(r.id)
                .legend(move |(x, y)| {
                    DashedPathElement::new(vec![(x, y), (x + 18, y)], dash, gap, style)
                });
        } else {
            chart
                .draw_series(LineSeries::new(pts, style))?
                .label(r.id)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}
