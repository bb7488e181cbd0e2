//! The synchronisation chart: one panel per placement (and one for the uncontended rows), a
//! horizontal bar per row, labelled with its id and median time per operation, on a log scale;
//! library rows blue, raw futex rows grey. SVG.

use std::path::Path;

use plotters::prelude::*;

use super::report::SyncReport;
use crate::engine::Placement;
use crate::report::ns;
use crate::row::RowKind;

const LIBRARY: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const RAW: RGBColor = RGBColor(0x7f, 0x7f, 0x7f);

/// Draws the chart of `report` into `path`; nothing if it has no points.
pub fn draw(report: &SyncReport, path: &Path) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| format!("chart {}: {e}", path.display());
    let mut panels: Vec<Option<Placement>> = Vec::new();
    if report.points.iter().any(|p| p.placement.is_none()) {
        panels.push(None);
    }
    panels.extend(
        report
            .placements
            .iter()
            .filter(|&&pl| report.points.iter().any(|p| p.placement == Some(pl)))
            .map(|&pl| Some(pl)),
    );
    if panels.is_empty() {
        return Ok(());
    }
    let root = SVGBackend::new(path, (620 * panels.len() as u32, 460)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let areas = root.split_evenly((1, panels.len()));
    for (area, &pl) in areas.iter().zip(&panels) {
        panel(report, area, pl).map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))
}

fn panel<DB: DrawingBackend>(
    report: &SyncReport,
    area: &DrawingArea<DB, plotters::coord::Shift>,
    pl: Option<Placement>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    // Top to bottom in table order.
    let bars: Vec<(&str, bool, f64)> = report
        .rows
        .iter()
        .filter_map(|r| {
            let v = report.point(r.id, pl)?.median_ns();
            (v.is_finite() && v > 0.0).then_some((r.id, r.kind == RowKind::Raw, v))
        })
        .collect();
    let n = bars.len().max(1);
    let lo = bars.iter().map(|b| b.2).fold(f64::INFINITY, f64::min);
    let hi = bars.iter().map(|b| b.2).fold(0.0, f64::max);
    // Whole decades, with room for the labels right of the longest bar.
    let (lo, hi) = if lo.is_finite() {
        (
            10f64.powf((lo / 1.5).log10().floor()),
            10f64.powf((hi * 6.0).log10().ceil()),
        )
    } else {
        (1.0, 1e6)
    };
    let title = match pl {
        None => "one lock+unlock, one process".to_owned(),
        Some(pl) => format!("one hand-off, {}", pl.as_str()),
    };
    let mut chart = ChartBuilder::on(area)
        .caption(format!("{title} (median)"), ("sans-serif", 18))
        .margin(12)
        .margin_right(40)
        .x_label_area_size(36)
        .y_label_area_size(8)
        .build_cartesian_2d((lo..hi).log_scale(), -0.6..n as f64 - 0.4)?;
    chart
        .configure_mesh()
        .x_desc("per operation (log scale)")
        .x_label_formatter(&|&v| ns(v))
        .y_labels(0)
        .disable_y_mesh()
        .draw()?;
    for (i, &(id, raw, v)) in bars.iter().enumerate() {
        // The first row at the top.
        let y = (n - 1 - i) as f64;
        let color = if raw { RAW } else { LIBRARY };
        chart.draw_series(std::iter::once(Rectangle::new(
            [(lo, y - 0.35), (v, y + 0.35)],
            color.filled(),
        )))?;
        chart.draw_series(std::iter::once(Text::new(
            format!("{id}  {}", ns(v)),
            (v * 1.08, y + 0.15),
            ("sans-serif", 12),
        )))?;
    }
    Ok(())
}
