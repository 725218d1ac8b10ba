//! `mediarelay-plot`: PNG plots of the benchmark scripts' CSV files.
//!
//! ```text
//! mediarelay-plot --rtmp target/bench/rtmp_fanout.csv --hls target/bench/hls_serve.csv --out target/bench
//! ```
//!
//! `--rtmp` (from `scripts/bench/rtmp_fanout.sh`) gives `rtmp_fanout.png`:
//! server CPU (CPU-seconds per second) and RSS against RTMP viewers, one
//! line per server. `--hls` (from `scripts/bench/hls_serve.sh`) gives
//! `hls_serve.png`: requests per second and CPU per 1000 requests (whole
//! runs) against connections, one line per server, the mean of the rounds
//! at each count. `--soak` (from `scripts/soak.sh`)
//! gives `soak.png`: the server's RSS and open fds over time. Text is drawn
//! with DejaVu Sans, read at run time (`--font`).
//!
//! Built only with the `bench` feature:
//! `cargo run --release --features bench --bin mediarelay-plot -- …`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Parser;
use plotters::prelude::*;

#[derive(Parser)]
#[command(about = "PNG plots of the benchmark CSV files")]
struct Args {
    /// `rtmp_fanout.csv` of `scripts/bench/rtmp_fanout.sh`.
    #[arg(long)]
    rtmp: Option<PathBuf>,
    /// `hls_serve.csv` of `scripts/bench/hls_serve.sh`.
    #[arg(long)]
    hls: Option<PathBuf>,
    /// `soak.csv` of `scripts/soak.sh`.
    #[arg(long)]
    soak: Option<PathBuf>,
    /// Directory the PNG files are written to.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// A TrueType font for the text.
    #[arg(
        long,
        default_value = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
    )]
    font: PathBuf,
}

/// A CSV file with a header line and plain comma-separated fields (what the
/// scripts write: no quoting).
struct Table {
    path: PathBuf,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn read(path: &Path) -> Result<Table> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let header: Vec<String> = lines
            .next()
            .with_context(|| format!("{} is empty", path.display()))?
            .split(',')
            .map(|s| s.trim().to_string())
            .collect();
        let rows: Vec<Vec<String>> = lines
            .map(|l| l.split(',').map(|s| s.trim().to_string()).collect())
            .collect();
        for (i, r) in rows.iter().enumerate() {
            if r.len() != header.len() {
                bail!(
                    "{} line {}: {} fields, the header has {}",
                    path.display(),
                    i + 2,
                    r.len(),
                    header.len()
                );
            }
        }
        Ok(Table {
            path: path.to_path_buf(),
            header,
            rows,
        })
    }

    fn column(&self, name: &str) -> Result<usize> {
        self.header
            .iter()
            .position(|h| h == name)
            .with_context(|| format!("{} has no column {name:?}", self.path.display()))
    }

    /// One series per value of `group`: (x, y) points sorted by x, where
    /// `y` is computed from the row by `f` (given the row's fields by name).
    fn series(
        &self,
        group: &str,
        x: &str,
        f: impl Fn(&dyn Fn(&str) -> Result<f64>) -> Result<f64>,
    ) -> Result<Vec<Series>> {
        let g = self.column(group)?;
        let xi = self.column(x)?;
        let mut by: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for (i, row) in self.rows.iter().enumerate() {
            let field = |name: &str| -> Result<f64> {
                let c = self.column(name)?;
                let v = row.get(c).map(String::as_str).unwrap_or_default();
                v.parse::<f64>().with_context(|| {
                    format!(
                        "{} line {}: {name} = {v:?} is not a number",
                        self.path.display(),
                        i + 2
                    )
                })
            };
            let xv = field(&self.header[xi])?;
            let yv = f(&field)?;
            let name = row.get(g).cloned().unwrap_or_default();
            by.entry(name).or_default().push((xv, yv));
        }
        Ok(by
            .into_iter()
            .map(|(name, mut points)| {
                points.sort_by(|a, b| a.0.total_cmp(&b.0));
                Series { name, points }
            })
            .collect())
    }
}

struct Series {
    name: String,
    points: Vec<(f64, f64)>,
}

const COLORS: [RGBColor; 6] = [
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
];

/// A label for 1, 2 and 5 times a power of ten only: a log axis's other
/// ticks would print their labels over each other.
fn log_label(x: &f64) -> String {
    let magnitude = 10f64.powf(x.log10().floor());
    let lead = (x / magnitude).round();
    if [1.0, 2.0, 5.0].contains(&lead) && ((x / magnitude) - lead).abs() < 1e-6 {
        format!("{x:.0}")
    } else {
        String::new()
    }
}

/// Draws one panel: lines with points, a log x axis (the counts span
/// decades) or a linear one, a linear y axis from 0, a legend.
fn panel_scaled(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    log_x: bool,
) -> Result<()> {
    if !log_x {
        return linear_panel(area, title, x_label, y_label, series);
    }
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let ys = series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
    let (x_min, x_max) = xs.fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x), b.max(x)));
    let y_max = ys.fold(0.0f64, f64::max);
    if !(x_min > 0.0 && x_max.is_finite()) {
        bail!("{title}: no positive x values to plot");
    }
    let y_top = if y_max > 0.0 { y_max * 1.15 } else { 1.0 };
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 26))
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d((x_min * 0.8..x_max * 1.25).log_scale(), 0.0..y_top)
        .map_err(|e| anyhow::anyhow!("{title}: {e}"))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 18))
        .x_label_formatter(&log_label)
        .y_label_formatter(&|y| {
            if y_top >= 100.0 {
                format!("{y:.0}")
            } else {
                // Tick values come from float steps (0.15000000000000002):
                // six significant digits, trailing zeros trimmed.
                let s = format!("{y:.6}");
                s.trim_end_matches('0').trim_end_matches('.').to_string()
            }
        })
        .light_line_style(BLACK.mix(0.04))
        .draw()
        .map_err(|e| anyhow::anyhow!("{title}: {e}"))?;
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(
                s.points.iter().copied(),
                color.stroke_width(3),
            ))
            .map_err(|e| anyhow::anyhow!("{title}: {e}"))?
            .label(s.name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3))
            });
        chart
            .draw_series(s.points.iter().map(|&p| Circle::new(p, 5, color.filled())))
            .map_err(|e| anyhow::anyhow!("{title}: {e}"))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 18))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow::anyhow!("{title}: {e}"))?;
    Ok(())
}

/// A panel with a linear x axis from 0 (time), lines only.
fn linear_panel(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> Result<()> {
    let x_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(0.0f64, f64::max);
    let y_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0f64, f64::max);
    let x_right = if x_max > 0.0 { x_max } else { 1.0 };
    let y_top = if y_max > 0.0 { y_max * 1.15 } else { 1.0 };
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 26))
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..x_right, 0.0..y_top)
        .map_err(|e| anyhow::anyhow!("{title}: {e}"))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 18))
        .light_line_style(BLACK.mix(0.04))
        .draw()
        .map_err(|e| anyhow::anyhow!("{title}: {e}"))?;
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(
                s.points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| anyhow::anyhow!("{title}: {e}"))?;
    }
    Ok(())
}

/// Two panels side by side in one PNG.
fn two_panels(
    out: &Path,
    left: (&str, &str, &str, &[Series]),
    right: (&str, &str, &str, &[Series]),
) -> Result<()> {
    two_panels_scaled(out, left, right, true)
}

fn two_panels_scaled(
    out: &Path,
    left: (&str, &str, &str, &[Series]),
    right: (&str, &str, &str, &[Series]),
    log_x: bool,
) -> Result<()> {
    let root = BitMapBackend::new(out, (1600, 640)).into_drawing_area();
    root.fill(&WHITE)
        .map_err(|e| anyhow::anyhow!("{}: {e}", out.display()))?;
    let areas = root.split_evenly((1, 2));
    for (area, (title, x, y, series)) in areas.iter().zip([left, right]) {
        panel_scaled(area, title, x, y, series, log_x)?;
    }
    root.present()
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", out.display()))?;
    println!("wrote {}", out.display());
    Ok(())
}

fn rtmp(csv: &Path, out: &Path) -> Result<()> {
    let t = Table::read(csv)?;
    let cpu = t.series("server", "viewers", |f| {
        let secs = f("seconds")?;
        if secs <= 0.0 {
            bail!("{}: a run of {secs} seconds", csv.display());
        }
        Ok(f("cpu_seconds")? / secs)
    })?;
    let rss = t.series("server", "viewers", |f| {
        Ok(f("rss_max_bytes")? / f64::from(1 << 20))
    })?;
    two_panels(
        &out.join("rtmp_fanout.png"),
        (
            "RTMP fan-out: server CPU",
            "RTMP viewers (log)",
            "CPU-seconds per second",
            &cpu,
        ),
        (
            "RTMP fan-out: server memory",
            "RTMP viewers (log)",
            "RSS, MiB (max)",
            &rss,
        ),
    )
}

/// Each x's points of a series made one, their mean: a count measured in
/// several rounds (`ROUNDS`) is one point, not a zigzag.
fn mean_per_x(series: Vec<Series>) -> Vec<Series> {
    series
        .into_iter()
        .map(|s| {
            let mut points: Vec<(f64, f64, usize)> = Vec::new();
            for (x, y) in s.points {
                match points.iter_mut().find(|p| p.0 == x) {
                    Some(p) => {
                        p.1 += y;
                        p.2 += 1;
                    }
                    None => points.push((x, y, 1)),
                }
            }
            Series {
                name: s.name,
                points: points
                    .into_iter()
                    .map(|(x, y, n)| (x, y / n as f64))
                    .collect(),
            }
        })
        .collect()
}

fn hls(csv: &Path, out: &Path) -> Result<()> {
    let t = Table::read(csv)?;
    let rps = mean_per_x(t.series("server", "connections", |f| f("requests_per_second"))?);
    let cpu = mean_per_x(t.series("server", "connections", |f| f("cpu_ms_per_1000_requests"))?);
    two_panels(
        &out.join("hls_serve.png"),
        (
            "HLS parts and segments: throughput",
            "wrk connections (log)",
            "requests per second",
            &rps,
        ),
        (
            "HLS parts and segments: server CPU",
            "wrk connections (log)",
            "CPU ms per 1000 requests",
            &cpu,
        ),
    )
}

fn soak(csv: &Path, out: &Path) -> Result<()> {
    let t = Table::read(csv)?;
    let rss = t.series("phase", "seconds", |f| Ok(f("rss_kib")? / 1024.0))?;
    let fds = t.series("phase", "seconds", |f| f("fds"))?;
    // One line over the whole run, x in minutes.
    let whole = |series: Vec<Series>, name: &str| {
        let mut points: Vec<(f64, f64)> = series
            .into_iter()
            .flat_map(|s| s.points)
            .map(|(x, y)| (x / 60.0, y))
            .collect();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        vec![Series {
            name: name.to_string(),
            points,
        }]
    };
    two_panels_scaled(
        &out.join("soak.png"),
        (
            "Soak: server memory",
            "minutes",
            "RSS, MiB",
            &whole(rss, "RSS"),
        ),
        (
            "Soak: server open file descriptors",
            "minutes",
            "fds",
            &whole(fds, "fds"),
        ),
        false,
    )
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.rtmp.is_none() && args.hls.is_none() && args.soak.is_none() {
        bail!("nothing to plot: give --rtmp, --hls and/or --soak");
    }
    let font = std::fs::read(&args.font).with_context(|| {
        format!(
            "cannot read the font {} (Debian: apt install fonts-dejavu-core; or pass --font FILE.ttf)",
            args.font.display()
        )
    })?;
    // plotters keeps registered fonts for the process's life.
    let font: &'static [u8] = Box::leak(font.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, font)
        .map_err(|_| anyhow::anyhow!("{} is not a usable TrueType font", args.font.display()))?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    if let Some(csv) = &args.rtmp {
        rtmp(csv, &args.out)?;
    }
    if let Some(csv) = &args.hls {
        hls(csv, &args.out)?;
    }
    if let Some(csv) = &args.soak {
        soak(csv, &args.out)?;
    }
    Ok(())
}
