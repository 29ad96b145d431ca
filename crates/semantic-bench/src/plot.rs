//! PNG plots of a run (plotters, bitmap backend, glyphs rendered with ab_glyph from a TTF file
//! found on the machine): TTFT by context per mode, multi-agent TTFT per turn, throughput by
//! concurrency.

use std::path::Path;

use anyhow::{bail, Context, Result};
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
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
        let caption = "Multi-agent workload: median TTFT per turn (restart in the middle)";
        multi_agent(&results.multi_agent, caption, &dir.join("multi_agent.png")).context("multi_agent.png")?;
        written.push("multi_agent.png".to_string());
    }
    if !results.shared_prefix.is_empty() {
        let caption = "Shared prefix, agents arriving together: median TTFT per turn";
        multi_agent(&results.shared_prefix, caption, &dir.join("shared_prefix.png")).context("shared_prefix.png")?;
        written.push("shared_prefix.png".to_string());
    }
    if !results.throughput.is_empty() {
        throughput(results, &dir.join("throughput.png")).context("throughput.png")?;
        written.push("throughput.png".to_string());
    }
    if let Some(s) = results.soak.as_ref().filter(|s| !s.samples.is_empty()) {
        soak(s, &dir.join("soak.png")).context("soak.png")?;
        written.push("soak.png".to_string());
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

type Chart<'a, 'b, Y> = ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, Y>>;

/// A chart with a caption, integer tick labels and axis names, on `area`.
fn chart<'a, 'b, Y>(
    area: &DrawingArea<BitMapBackend<'b>, plotters::coord::Shift>,
    caption: &str,
    x: std::ops::Range<f64>,
    y: Y,
    (x_desc, y_desc): (&str, &str),
) -> Result<Chart<'a, 'b, Y::CoordDescType>>
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
    'b: 'a,
{
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x, y)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        // Only whole values: a turn axis ticks at halves, which would print as repeated numbers.
        .x_label_formatter(&|v| if (v - v.round()).abs() < 1e-6 { format!("{v:.0}") } else { String::new() })
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(plot_err)?;
    Ok(chart)
}

/// One target's line with point markers and its legend entry.
fn line<'a, 'b: 'a, Y: Ranged<ValueType = f64>>(
    chart: &mut Chart<'a, 'b, Y>,
    points: Vec<(f64, f64)>,
    kind: Kind,
) -> Result<()> {
    if points.is_empty() {
        return Ok(());
    }
    let c = color(kind);
    chart.draw_series(points.iter().map(|p| Circle::new(*p, 4, c.filled()))).map_err(plot_err)?;
    chart
        .draw_series(LineSeries::new(points, c.stroke_width(2)))
        .map_err(plot_err)?
        .label(kind.name())
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    Ok(())
}

fn legend<'a, 'b: 'a, Y: Ranged<ValueType = f64>>(
    chart: &mut Chart<'a, 'b, Y>,
    position: SeriesLabelPosition,
) -> Result<()> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(plot_err)
}

fn ttft(results: &Results, path: &Path) -> Result<()> {
    let root = BitMapBackend::new(path, (1500, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let x_max = results.ttft.iter().map(|r| r.context).max().unwrap_or(1) as f64 * 1.1;
    let y = log_range(results.ttft.iter().filter_map(|r| r.summary.map(|s| s.median)));
    for (panel, mode) in root.split_evenly((1, 3)).iter().zip(["cold", "warm-after-restart", "hot"]) {
        let axes = ("context tokens", "ms (log)");
        let mut chart = chart(panel, &format!("TTFT, {mode}"), 0.0..x_max, y.clone().log_scale(), axes)?;
        for kind in &results.targets {
            let points = results
                .ttft
                .iter()
                .filter(|r| r.target == *kind && r.mode == mode)
                .filter_map(|r| r.summary.map(|s| (r.context as f64, s.median)))
                .collect();
            line(&mut chart, points, *kind)?;
        }
        legend(&mut chart, SeriesLabelPosition::MiddleRight)?;
    }
    root.present().map_err(plot_err)
}

fn multi_agent(runs: &[crate::scenario::MultiResult], caption: &str, path: &Path) -> Result<()> {
    let root = BitMapBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let turns = runs.iter().map(|r| r.turns.len()).max().unwrap_or(1) as f64;
    let y = log_range(runs.iter().flat_map(|r| r.turns.iter().filter_map(|t| t.summary.map(|s| s.median))));
    let mut chart = chart(&root, caption, 0.5..turns + 0.5, y.log_scale(), ("turn", "ms (log)"))?;
    for r in runs {
        let points = r.turns.iter().filter_map(|t| t.summary.map(|s| (t.turn as f64, s.median))).collect();
        line(&mut chart, points, r.target)?;
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight)?;
    root.present().map_err(plot_err)
}

fn throughput(results: &Results, path: &Path) -> Result<()> {
    let root = BitMapBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let x_max = results.throughput.iter().map(|r| r.concurrency).max().unwrap_or(1) as f64 + 0.5;
    let y_max = results.throughput.iter().map(|r| r.aggregate_tok_s).fold(1.0, f64::max) * 1.15;
    let caption = "Aggregate throughput by concurrent agents";
    let mut chart = chart(&root, caption, 0.0..x_max, 0.0..y_max, ("concurrent agents", "tokens/s (all agents)"))?;
    for kind in &results.targets {
        let points = results
            .throughput
            .iter()
            .filter(|r| r.target == *kind)
            .map(|r| (r.concurrency as f64, r.aggregate_tok_s))
            .collect();
        line(&mut chart, points, *kind)?;
    }
    legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
    root.present().map_err(plot_err)
}

/// The soak curves: RSS, open files, KV cells and disk use over time, one panel each, the end of
/// warm-up marked.
fn soak(result: &crate::soak::SoakResult, path: &Path) -> Result<()> {
    let root = BitMapBackend::new(path, (1200, 800)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let x_max = result.samples.iter().map(|s| s.t_s).fold(1.0, f64::max);
    let panels: [(&str, &str, crate::soak::SampleField); 4] = [
        ("Resident set size", "MiB", |s| s.rss_bytes / 1048576.0),
        ("Open file descriptors", "fds", |s| s.open_fds),
        ("KV cells reserved", "cells", |s| s.kv_cells),
        ("Agent files on disk", "MiB", |s| s.disk_bytes / 1048576.0),
    ];
    for (area, (caption, unit, f)) in root.split_evenly((2, 2)).iter().zip(panels) {
        let points: Vec<(f64, f64)> = result.samples.iter().map(|s| (s.t_s, f(s))).collect();
        let y_max = points.iter().map(|p| p.1).fold(1.0, f64::max) * 1.15;
        let mut chart = chart(area, caption, 0.0..x_max, 0.0..y_max, ("seconds", unit))?;
        let warmup = vec![(result.warmup_s, 0.0), (result.warmup_s, y_max)];
        chart.draw_series(LineSeries::new(warmup, BLACK.mix(0.4).stroke_width(1))).map_err(plot_err)?;
        line(&mut chart, points, Kind::Semantic)?;
    }
    root.present().map_err(plot_err)
}
