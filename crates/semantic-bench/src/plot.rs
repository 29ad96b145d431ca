//! PNG plots of a run (plotters, bitmap backend, glyphs rendered with ab_glyph from a TTF file
//! found on the machine): TTFT by context per mode, multi-agent TTFT per turn, throughput by
//! concurrency.

use std::path::Path;

use anyhow::{bail, Context, Result};
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use crate::report::Results;
use crate::target::Kind;

/// Fonts tried in order (Debian's fonts-dejavu-core first; scripts/setup installs it).
const FONTS: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

/// Registers a sans-serif font once per process (plotters' font registry is process-wide, so this
/// mirrors it rather than adding state of our own).
fn ensure_font() -> Result<()> {
    static REGISTERED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        for path in FONTS {
            if let Ok(bytes) = std::fs::read(path) {
                // Leaked once per process: plotters keeps registered fonts for the program's life.
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    });
    if !ok {
        bail!("no TTF font found for plots (tried {FONTS:?}); install fonts-dejavu-core");
    }
    Ok(())
}

fn color(kind: Kind) -> RGBColor {
    match kind {
        Kind::Semantic => RGBColor(0x1f, 0x77, 0xb4),
        Kind::LlamaServer => RGBColor(0xd6, 0x27, 0x28),
        Kind::Hearth => RGBColor(0xff, 0x7f, 0x0e),
    }
}

fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("plotting: {e:?}")
}

/// Writes every plot that has data; returns the file names written.
pub fn write_all(results: &Results, dir: &Path) -> Result<Vec<String>> {
    ensure_font()?;
    let mut written = Vec::new();
    if !results.ttft.is_empty() {
        ttft(results, &dir.join("ttft.png")).context("ttft.png")?;
        written.push("ttft.png".to_string());
    }
    if !results.multi_agent.is_empty() {
        multi_agent(results, &dir.join("multi_agent.png")).context("multi_agent.png")?;
        written.push("multi_agent.png".to_string());
    }
    if !results.throughput.is_empty() {
        throughput(results, &dir.join("throughput.png")).context("throughput.png")?;
        written.push("throughput.png".to_string());
    }
    Ok(written)
}

/// Log-scale y range covering `values` (milliseconds).
fn log_range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return 1.0..10.0;
    }
    (lo / 2.0).max(0.1)..hi * 2.0
}

fn ttft(results: &Results, path: &Path) -> Result<()> {
    let root = BitMapBackend::new(path, (1500, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let panels = root.split_evenly((1, 3));
    let mut contexts: Vec<usize> = results.ttft.iter().map(|r| r.context).collect();
    contexts.sort_unstable();
    contexts.dedup();
    let x_max = *contexts.last().unwrap_or(&1) as f64 * 1.1;
    let y = log_range(results.ttft.iter().filter_map(|r| r.summary.map(|s| s.median)));
    for (panel, mode) in panels.iter().zip(["cold", "warm-after-restart", "hot"]) {
        let mut chart = ChartBuilder::on(panel)
            .caption(format!("TTFT, {mode}"), ("sans-serif", 22))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..x_max, y.clone().log_scale())
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc("context tokens")
            .y_desc("ms (log)")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(plot_err)?;
        for kind in &results.targets {
            let points: Vec<(f64, f64)> = results
                .ttft
                .iter()
                .filter(|r| r.target == *kind && r.mode == mode)
                .filter_map(|r| r.summary.map(|s| (r.context as f64, s.median)))
                .collect();
            let c = color(*kind);
            chart
                .draw_series(LineSeries::new(points.clone(), c.stroke_width(2)))
                .map_err(plot_err)?
                .label(kind.name())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
            chart.draw_series(points.iter().map(|p| Circle::new(*p, 4, c.filled()))).map_err(plot_err)?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(plot_err)?;
    }
    root.present().map_err(plot_err)?;
    Ok(())
}

fn multi_agent(results: &Results, path: &Path) -> Result<()> {
    let root = BitMapBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let turns = results.multi_agent.iter().map(|r| r.turns.len()).max().unwrap_or(1);
    let y =
        log_range(results.multi_agent.iter().flat_map(|r| r.turns.iter().filter_map(|t| t.summary.map(|s| s.median))));
    let mut chart = ChartBuilder::on(&root)
        .caption("Multi-agent workload: median TTFT per turn (restart in the middle)", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.5f64..turns as f64 + 0.5, y.log_scale())
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("turn")
        .y_desc("ms (log)")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(plot_err)?;
    for r in &results.multi_agent {
        let points: Vec<(f64, f64)> =
            r.turns.iter().filter_map(|t| t.summary.map(|s| (t.turn as f64, s.median))).collect();
        let c = color(r.target);
        chart
            .draw_series(LineSeries::new(points.clone(), c.stroke_width(2)))
            .map_err(plot_err)?
            .label(r.target.name())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart.draw_series(points.iter().map(|p| Circle::new(*p, 4, c.filled()))).map_err(plot_err)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(plot_err)?;
    root.present().map_err(plot_err)?;
    Ok(())
}

fn throughput(results: &Results, path: &Path) -> Result<()> {
    let root = BitMapBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let x_max = results.throughput.iter().map(|r| r.concurrency).max().unwrap_or(1) as f64 + 0.5;
    let y_max = results.throughput.iter().map(|r| r.aggregate_tok_s).fold(1.0, f64::max) * 1.15;
    let mut chart = ChartBuilder::on(&root)
        .caption("Aggregate throughput by concurrent agents", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("concurrent agents")
        .y_desc("tokens/s (all agents)")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(plot_err)?;
    for kind in &results.targets {
        let points: Vec<(f64, f64)> = results
            .throughput
            .iter()
            .filter(|r| r.target == *kind)
            .map(|r| (r.concurrency as f64, r.aggregate_tok_s))
            .collect();
        if points.is_empty() {
            continue;
        }
        let c = color(*kind);
        chart
            .draw_series(LineSeries::new(points.clone(), c.stroke_width(2)))
            .map_err(plot_err)?
            .label(kind.name())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart.draw_series(points.iter().map(|p| Circle::new(*p, 4, c.filled()))).map_err(plot_err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(plot_err)?;
    root.present().map_err(plot_err)?;
    Ok(())
}
