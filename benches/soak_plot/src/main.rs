//! Render the soak CSV as one PNG with three panels over time: RSS of each
//! node (with maxmemory and the RSS bar), ops/s, and p50/p99 latency.
//!
//! ```text
//! soak-plot CSV PNG [MAXMEMORY_MIB] [BASE_MIB]
//! ```
//! Text needs a TrueType font: `SOAK_FONT` or the first of a few usual
//! Debian paths (DejaVu Sans, Liberation Sans).

use std::error::Error;
use std::path::Path;

use plotters::prelude::*;

/// Image size in pixels.
const SIZE: (u32, u32) = (1200, 1000);

/// Fonts tried when `SOAK_FONT` is unset.
const FONTS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

/// The CSV: column names and rows of numbers.
struct Table {
    /// Column names.
    head: Vec<String>,
    /// Rows.
    rows: Vec<Vec<f64>>,
}

impl Table {
    fn read(path: &Path) -> Result<Table, Box<dyn Error>> {
        let text = std::fs::read_to_string(path)?;
        let mut lines = text.lines();
        let head: Vec<String> = lines
            .next()
            .ok_or("empty CSV")?
            .split(',')
            .map(String::from)
            .collect();
        let rows = lines
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.split(',').map(|v| v.parse().unwrap_or(0.0)).collect())
            .collect();
        Ok(Table { head, rows })
    }

    /// (t, value) points of column `name`.
    fn series(&self, name: &str) -> Vec<(f64, f64)> {
        let Some(i) = self.head.iter().position(|h| h == name) else {
            return Vec::new();
        };
        self.rows
            .iter()
            .map(|r| (r[0], r.get(i).copied().unwrap_or(0.0)))
            .collect()
    }

    /// Columns whose names start with `prefix`.
    fn columns(&self, prefix: &str) -> Vec<String> {
        self.head
            .iter()
            .filter(|h| h.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// Largest value of the named columns.
    fn max_of(&self, names: &[String]) -> f64 {
        names
            .iter()
            .flat_map(|n| self.series(n))
            .map(|(_, v)| v)
            .fold(0.0, f64::max)
    }

    fn t_max(&self) -> f64 {
        self.rows.last().map_or(1.0, |r| r[0].max(1.0))
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        return Err("usage: soak-plot CSV PNG [MAXMEMORY_MIB] [BASE_MIB]".into());
    }
    let maxmemory: f64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(64.0);
    let base: f64 = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(0.0);
    load_font()?;
    let table = Table::read(Path::new(&args[1]))?;
    let mut buf = vec![0u8; (SIZE.0 * SIZE.1 * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let panels = root.split_evenly((3, 1));
        rss_panel(&panels[0], &table, maxmemory, base)?;
        ops_panel(&panels[1], &table)?;
        latency_panel(&panels[2], &table)?;
        root.present()?;
    }
    write_png(Path::new(&args[2]), &buf)?;
    println!("wrote {}", args[2]);
    Ok(())
}

/// Register the first font found as "sans-serif".
fn load_font() -> Result<(), Box<dyn Error>> {
    let candidates: Vec<String> = std::env::var("SOAK_FONT")
        .map(|f| vec![f])
        .unwrap_or_else(|_| FONTS.iter().map(|s| s.to_string()).collect());
    for path in candidates {
        if let Ok(bytes) = std::fs::read(&path) {
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                return Ok(());
            }
        }
    }
    Err("no TrueType font found; set SOAK_FONT=/path/to/font.ttf".into())
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

/// A panel: title, axes, one line per (label, colour, points).
fn panel(
    area: &Area<'_>,
    legend: SeriesLabelPosition,
    title: &str,
    y_label: &str,
    t_max: f64,
    y_max: f64,
    lines: Vec<(String, RGBColor, Vec<(f64, f64)>)>,
) -> Result<(), Box<dyn Error>> {
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 22))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..t_max, 0.0..y_max.max(1e-9) * 1.1)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc(y_label)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style(("sans-serif", 15))
        .draw()?;
    for (label, colour, points) in lines {
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(legend)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()?;
    Ok(())
}

const COLOURS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

fn rss_panel(area: &Area<'_>, t: &Table, maxmemory: f64, base: f64) -> Result<(), Box<dyn Error>> {
    let cols = t.columns("rss_mib_");
    let bar = maxmemory * 1.1 + base;
    let mut lines: Vec<_> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let name = c.trim_start_matches("rss_mib_").to_string();
            (
                format!("RSS {name}"),
                COLOURS[i % COLOURS.len()],
                t.series(c),
            )
        })
        .collect();
    let used = t.columns("used_mib_");
    for (i, c) in used.iter().enumerate() {
        let name = c.trim_start_matches("used_mib_").to_string();
        let faded = COLOURS[i % COLOURS.len()].mix(0.5);
        let RGBAColor(r, g, b, _) = faded;
        let light = RGBColor(r / 2 + 127, g / 2 + 127, b / 2 + 127);
        lines.push((format!("used_memory {name}"), light, t.series(c)));
    }
    let span = |v: f64| vec![(0.0, v), (t.t_max(), v)];
    lines.push((
        format!("maxmemory {maxmemory:.0} MiB"),
        RGBColor(120, 120, 120),
        span(maxmemory),
    ));
    lines.push((
        format!("bar 110% + base = {bar:.0} MiB"),
        RGBColor(214, 39, 40),
        span(bar),
    ));
    let y_max = t.max_of(&cols).max(bar);
    panel(
        area,
        SeriesLabelPosition::LowerRight,
        "Resident memory (RSS) and store used_memory per node",
        "MiB",
        t.t_max(),
        y_max,
        lines,
    )
}

fn ops_panel(area: &Area<'_>, t: &Table) -> Result<(), Box<dyn Error>> {
    let y_max = t.max_of(&["ops_per_s".to_string()]);
    let lines = vec![(
        "ops/s (all clients)".to_string(),
        COLOURS[0],
        t.series("ops_per_s"),
    )];
    panel(
        area,
        SeriesLabelPosition::LowerLeft,
        "Throughput",
        "ops/s",
        t.t_max(),
        y_max,
        lines,
    )
}

fn latency_panel(area: &Area<'_>, t: &Table) -> Result<(), Box<dyn Error>> {
    let y_max = t.max_of(&["p99_ms".to_string(), "p50_ms".to_string()]);
    let lines = vec![
        ("p99".to_string(), RGBColor(214, 39, 40), t.series("p99_ms")),
        ("p50".to_string(), COLOURS[0], t.series("p50_ms")),
    ];
    panel(
        area,
        SeriesLabelPosition::UpperLeft,
        "Latency (per 10 s interval)",
        "ms",
        t.t_max(),
        y_max,
        lines,
    )
}

/// Encode the RGB buffer as PNG.
fn write_png(path: &Path, rgb: &[u8]) -> Result<(), Box<dyn Error>> {
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut enc = png::Encoder::new(file, SIZE.0, SIZE.1);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header()?;
    w.write_image_data(rgb)?;
    w.finish()?;
    Ok(())
}
