//! Draws the benchmark plots of `docs/BENCHMARKS.md`.
//!
//! ```sh
//! plot [--results bench/results/latest.csv] [--criterion target/criterion] [--out docs/plots]
//! ```
//!
//! - `requests_per_second.svg`, from the CSV `scripts/bench.sh` writes: requests per second
//!   by setup, for both traffic shapes.
//! - `decision_time.svg`, from criterion's `*/new/estimates.json` of the core `decisions`
//!   bench (`cargo bench -p traffik-core --bench decisions`): time per decision by strategy
//!   beside governor, in the four groups `allowed/hot_key`, `allowed/100k_keys`,
//!   `denied/hot_key`, `denied/100k_keys`. Skipped (with a note) when no estimates exist.

use std::collections::BTreeMap;
use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use plotters::prelude::*;
use serde_json::Value;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// One line of the end-to-end results.
struct Run {
    setup: String,
    shape: String,
    rps: f64,
    /// Requests per second over the bare handler's in the same run and shape.
    ratio: Option<f64>,
}

/// Reads the CSV written by `scripts/bench.sh`: a header naming the columns, then one
/// line per (setup, shape); `setup`, `shape` and `rps` are the columns used here.
fn read_results(path: &Path) -> Result<Vec<Run>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines
        .next()
        .ok_or("empty results file")?
        .split(',')
        .collect();
    let column = |name: &str| {
        header
            .iter()
            .position(|h| h.trim() == name)
            .ok_or_else(|| format!("no column {name:?} in {}", path.display()))
    };
    let (setup, shape, rps) = (column("setup")?, column("shape")?, column("rps")?);
    let ratio = column("ratio_to_bare").ok();
    let mut runs = Vec::new();
    for line in lines {
        let fields: Vec<&str> = line.split(',').collect();
        let field = |i: usize| fields.get(i).map(|f| f.trim()).unwrap_or("");
        runs.push(Run {
            setup: field(setup).to_owned(),
            shape: field(shape).to_owned(),
            rps: field(rps).parse().unwrap_or(0.0),
            ratio: ratio.and_then(|i| field(i).parse().ok()),
        });
    }
    Ok(runs)
}

/// Setups in the order of the file, each once.
fn setups_in_order(runs: &[Run]) -> Vec<String> {
    let mut setups: Vec<String> = Vec::new();
    for run in runs {
        if !setups.contains(&run.setup) {
            setups.push(run.setup.clone());
        }
    }
    setups
}

/// One series of bars: its name, its colour, and per category a value and an optional
/// note printed after the value (`None` when the category has no bar).
type Series = (String, RGBColor, Vec<Option<(f64, String)>>);

/// A horizontal grouped bar chart: one row per category, one bar per series in each row.
struct Bars<'a> {
    title: &'a str,
    x_desc: &'a str,
    categories: Vec<String>,
    /// (series name, colour, one value per category; `None` when missing).
    series: Vec<Series>,
    /// The axis ends here; longer bars are cut and labelled with their value.
    x_max: f64,
    /// Formats a value for the labels at the end of the bars.
    value_label: &'a dyn Fn(f64) -> String,
    /// Formats a value on the axis.
    axis_label: &'a dyn Fn(f64) -> String,
    /// Dashed vertical lines: (position, label).
    marks: Vec<(f64, String)>,
}

fn draw_bars(path: &Path, bars: &Bars<'_>) -> Result<()> {
    let rows = bars.categories.len();
    let per_row = bars.series.len().max(1);
    let height = 120 + (rows * (per_row * 16 + 10)) as u32;
    let root = SVGBackend::new(path, (960, height + 24)).into_drawing_area();
    root.fill(&WHITE)?;
    // The title, then the legend as one line of coloured keys, above the chart.
    let (head, body) = root.split_vertically(58);
    head.draw(&Text::new(
        bars.title,
        (14, 8),
        ("sans-serif", 19).into_font().color(&BLACK),
    ))?;
    let mut x = 262;
    for (name, colour, _) in &bars.series {
        head.draw(&Rectangle::new([(x, 38), (x + 12, 50)], colour.filled()))?;
        head.draw(&Text::new(
            name.as_str(),
            (x + 18, 37),
            ("sans-serif", 13).into_font().color(&BLACK),
        ))?;
        x += 30 + 7 * name.chars().count() as i32;
    }
    let mut chart = ChartBuilder::on(&body)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(250)
        .build_cartesian_2d(0f64..bars.x_max, -0.5f64..rows as f64 - 0.5)?;
    let names = bars.categories.clone();
    let label = move |y: &f64| {
        let i = y.round();
        if (y - i).abs() < 1e-6 && i >= 0.0 {
            // Row 0 is drawn at the top.
            names
                .get(rows.wrapping_sub(1).wrapping_sub(i as usize))
                .cloned()
                .unwrap_or_default()
        } else {
            String::new()
        }
    };
    let x_label = |x: &f64| (bars.axis_label)(*x);
    chart
        .configure_mesh()
        .disable_y_mesh()
        .light_line_style(WHITE)
        .y_labels(rows)
        .y_label_formatter(&label)
        .x_label_formatter(&x_label)
        .x_desc(bars.x_desc)
        .label_style(("sans-serif", 13))
        .draw()?;

    // The marks first, so that bars and their labels are drawn over them.
    for (x, text) in &bars.marks {
        let bottom = -0.42;
        let dashes = (0..rows * 4).map(|i| {
            let y0 = -0.5 + i as f64 * 0.25;
            PathElement::new(vec![(*x, y0), (*x, y0 + 0.15)], BLACK.stroke_width(1))
        });
        chart.draw_series(dashes)?;
        chart.draw_series(std::iter::once(Text::new(
            text.clone(),
            (*x, bottom),
            ("sans-serif", 11).into_font().color(&BLACK),
        )))?;
    }
    let slot = 0.8 / per_row as f64;
    for (s, (_, colour, values)) in bars.series.iter().enumerate() {
        let mut rects = Vec::new();
        let mut texts = Vec::new();
        for (row, value) in values.iter().enumerate() {
            let Some((value, note)) = value else { continue };
            let value = *value;
            let centre = (rows - 1 - row) as f64;
            let top = centre + 0.4 - s as f64 * slot;
            let bottom = top - slot * 0.9;
            let end = value.min(bars.x_max);
            rects.push(Rectangle::new([(0.0, bottom), (end, top)], colour.filled()));
            let text = if value > bars.x_max {
                format!("{}{note} (bar cut)", (bars.value_label)(value))
            } else {
                format!("{}{note}", (bars.value_label)(value))
            };
            let at = if value > bars.x_max * 0.75 {
                end - bars.x_max * 0.25
            } else {
                end + bars.x_max * 0.005
            };
            // Inside a cut bar, white on the bar's colour; elsewhere black.
            let ink = if value > bars.x_max { &WHITE } else { &BLACK };
            texts.push(Text::new(
                text,
                (at, (top + bottom) / 2.0 + slot * 0.3),
                ("sans-serif", 11).into_font().color(ink),
            ));
        }
        chart.draw_series(rects)?;
        chart.draw_series(texts)?;
    }
    root.present()?;
    Ok(())
}

fn plot_requests(results: &Path, out: &Path) -> Result<PathBuf> {
    let runs = read_results(results)?;
    let setups = setups_in_order(&runs);
    let value = |setup: &str, shape: &str| {
        runs.iter()
            .find(|r| r.setup == setup && r.shape == shape)
            .map(|r| {
                let note = r.ratio.map(|x| format!("  {x:.2}x")).unwrap_or_default();
                (r.rps, note)
            })
    };
    let series: Vec<Series> = [
        (
            "many clients, under their limits",
            "under",
            RGBColor(31, 119, 180),
        ),
        (
            "one hot client, over its limit (429s)",
            "over",
            RGBColor(255, 127, 14),
        ),
    ]
    .into_iter()
    .map(|(name, shape, colour)| {
        let values = setups.iter().map(|s| value(s, shape)).collect();
        (name.to_owned(), colour, values)
    })
    .collect();
    let max = runs.iter().map(|r| r.rps).fold(0.0, f64::max);
    // The targets, as fractions of the bare handler's rate (mean of the two shapes).
    let bare: Vec<f64> = runs
        .iter()
        .filter(|r| r.setup == "bare")
        .map(|r| r.rps / r.ratio.filter(|x| *x > 0.0).unwrap_or(1.0))
        .collect();
    let marks = if bare.is_empty() {
        Vec::new()
    } else {
        let bare = bare.iter().sum::<f64>() / bare.len() as f64;
        vec![
            (bare * 0.5, " 0.5x bare".to_owned()),
            (bare * 0.9, " 0.9x bare".to_owned()),
        ]
    };
    let path = out.join("requests_per_second.svg");
    draw_bars(
        &path,
        &Bars {
            title: "End to end: requests per second by setup (wrk, loopback, one run; ratio to bare)",
            x_desc: "requests per second (higher is better)",
            categories: setups,
            series,
            x_max: (max * 1.2).max(1.0),
            value_label: &|v| format!("{:.1}k", v / 1000.0),
            axis_label: &|v| format!("{:.0}k", v / 1000.0),
            marks,
        },
    )?;
    Ok(path)
}

/// Criterion's point estimates of the mean, by (group, bench), in nanoseconds.
fn read_criterion(dir: &Path) -> BTreeMap<(String, String), f64> {
    let mut found = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            if path.file_name().is_some_and(|n| n == "new") {
                if let Some((key, mean)) = read_estimate(&path) {
                    found.insert(key, mean);
                }
            } else {
                stack.push(path);
            }
        }
    }
    found
}

fn read_estimate(new: &Path) -> Option<((String, String), f64)> {
    let read = |name: &str| -> Option<Value> {
        serde_json::from_str(&std::fs::read_to_string(new.join(name)).ok()?).ok()
    };
    let benchmark = read("benchmark.json")?;
    let estimates = read("estimates.json")?;
    let group = benchmark.get("group_id")?.as_str()?.to_owned();
    let function = benchmark.get("function_id")?.as_str()?.to_owned();
    let mean = estimates.get("mean")?.get("point_estimate")?.as_f64()?;
    Some(((group, function), mean))
}

fn plot_decisions(criterion: &Path, out: &Path) -> Result<Option<PathBuf>> {
    const GROUPS: [&str; 4] = [
        "allowed/hot_key",
        "allowed/100k_keys",
        "denied/hot_key",
        "denied/100k_keys",
    ];
    const LIMITERS: [&str; 9] = [
        "fixed_window",
        "sliding_window_log",
        "sliding_window_counter",
        "token_bucket",
        "token_bucket_with_debt",
        "leaky_bucket",
        "leaky_bucket_with_queue",
        "gcra",
        "governor_dashmap",
    ];
    const COLOURS: [RGBColor; 4] = [
        RGBColor(31, 119, 180),
        RGBColor(174, 199, 232),
        RGBColor(214, 39, 40),
        RGBColor(255, 152, 150),
    ];
    let estimates = read_criterion(criterion);
    let get = |group: &str, limiter: &str| {
        estimates
            .get(&(group.to_owned(), limiter.to_owned()))
            .copied()
    };
    if !GROUPS
        .iter()
        .any(|g| LIMITERS.iter().any(|l| get(g, l).is_some()))
    {
        return Ok(None);
    }
    let series: Vec<Series> = GROUPS
        .iter()
        .zip(COLOURS)
        .map(|(group, colour)| {
            let values = LIMITERS
                .iter()
                .map(|l| {
                    let governor = get(group, "governor_dashmap");
                    get(group, l).map(|v| {
                        let note = match governor {
                            Some(g) if g > 0.0 && *l != "governor_dashmap" => {
                                format!("  {:.2}x", v / g)
                            }
                            _ => String::new(),
                        };
                        (v, note)
                    })
                })
                .collect();
            (group.replace('_', " "), colour, values)
        })
        .collect();
    // The sliding log on an allowed hot key keeps up to 1000 entries (several µs): the
    // axis is set by the others, and that bar is cut and labelled.
    let mut values: Vec<f64> = series
        .iter()
        .flat_map(|(_, _, v)| v.iter().flatten().map(|(value, _)| *value))
        .collect();
    values.sort_by(f64::total_cmp);
    let typical = values
        .get(values.len().saturating_sub(2))
        .copied()
        .unwrap_or(1.0);
    let path = out.join("decision_time.svg");
    draw_bars(
        &path,
        &Bars {
            title: "Time per in-memory decision by strategy, beside governor (criterion mean; ratio to governor)",
            x_desc: "nanoseconds per decision (lower is better)",
            categories: LIMITERS.iter().map(|l| (*l).to_owned()).collect(),
            series,
            x_max: typical * 1.25,
            value_label: &|v| {
                if v >= 1000.0 {
                    format!("{:.2} µs", v / 1000.0)
                } else {
                    format!("{v:.0} ns")
                }
            },
            axis_label: &|v| format!("{v:.0}"),
            marks: Vec::new(),
        },
    )?;
    Ok(Some(path))
}

fn run() -> Result<()> {
    let mut results = PathBuf::from("bench/results/latest.csv");
    let mut criterion = PathBuf::from("target/criterion");
    let mut out = PathBuf::from("docs/plots");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--results" => results = value()?.into(),
            "--criterion" => criterion = value()?.into(),
            "--out" => out = value()?.into(),
            _ => {
                return Err(format!(
                    "unknown argument {arg:?}\nusage: plot [--results CSV] [--criterion DIR] [--out DIR]"
                )
                .into());
            }
        }
    }
    std::fs::create_dir_all(&out)?;
    if results.exists() {
        println!("wrote {}", plot_requests(&results, &out)?.display());
    } else {
        println!(
            "no {}: requests_per_second.svg not drawn",
            results.display()
        );
    }
    match plot_decisions(&criterion, &out)? {
        Some(path) => println!("wrote {}", path.display()),
        None => println!(
            "no criterion estimates of the decisions bench under {}: decision_time.svg not drawn \
             (run `cargo bench -p traffik-core --bench decisions`, or scripts/bench.sh --with-core)",
            criterion.display()
        ),
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("plot: {error}");
            ExitCode::FAILURE
        }
    }
}
