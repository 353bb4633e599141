//! `--plot FILE.svg`: latency percentiles over time (`fanout`, `chat`), or delivered rate and
//! p99 against the offered rate (`sweep`). SVG only, so no font or system library is needed.

use std::path::Path;

use plotters::prelude::*;

use crate::report::Outcome;

type Result<T> = std::result::Result<T, String>;

/// Axis labels: `1.6M`, `250k`, `45`.
fn human(v: &f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn err(e: impl std::fmt::Display) -> String {
    format!("--plot: {e}")
}

/// Draws the plot that fits the outcome's scenario.
pub fn draw(path: &Path, o: &Outcome) -> Result<()> {
    if !o.steps.is_empty() {
        sweep(path, o)
    } else if !o.timeline.is_empty() {
        timeline(path, o)
    } else {
        Err(format!(
            "--plot: `{}` has nothing to plot over time",
            o.scenario
        ))
    }
}

/// A named percentile series of the timeline.
type Series = (&'static str, RGBColor, fn(&crate::engine::Point) -> f64);

fn timeline(path: &Path, o: &Outcome) -> Result<()> {
    let root = SVGBackend::new(path, (960, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let t_max = o.timeline.iter().map(|p| p.t_s).fold(1.0, f64::max);
    let y_max = o
        .timeline
        .iter()
        .map(|p| p.latency_us.max)
        .fold(1.0, f64::max)
        * 1.05;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("loadgen {}: latency over time", o.scenario),
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..t_max, 0.0..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the trial began")
        .y_label_formatter(&human)
        .y_desc("latency (µs, from scheduled send time)")
        .draw()
        .map_err(err)?;
    let series: [Series; 4] = [
        ("p50", BLUE, |p| p.latency_us.p50),
        ("p90", GREEN, |p| p.latency_us.p90),
        ("p99", RGBColor(230, 120, 0), |p| p.latency_us.p99),
        ("max", RED, |p| p.latency_us.max),
    ];
    for (name, color, f) in series {
        let points = o
            .timeline
            .iter()
            .filter(|p| p.delivered > 0)
            .map(|p| (p.t_s, f(p)));
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(err)?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

fn sweep(path: &Path, o: &Outcome) -> Result<()> {
    let root = SVGBackend::new(path, (1200, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (left, right) = root.split_horizontally(600);
    let x_max = o
        .steps
        .iter()
        .map(|s| s.offered_deliveries_per_sec)
        .fold(1.0, f64::max)
        * 1.05;
    let y_max = o
        .steps
        .iter()
        .map(|s| s.delivered_per_sec)
        .fold(x_max, f64::max);
    let mut rate = ChartBuilder::on(&left)
        .caption("delivered vs offered deliveries/s", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(err)?;
    rate.configure_mesh()
        .x_label_formatter(&human)
        .y_label_formatter(&human)
        .x_desc("offered deliveries/s")
        .y_desc("delivered/s")
        .draw()
        .map_err(err)?;
    rate.draw_series(LineSeries::new(
        [(0.0, 0.0), (x_max, x_max)],
        BLACK.mix(0.3),
    ))
    .map_err(err)?;
    let mut by_x = o.steps.clone();
    by_x.sort_by(|a, b| a.offered_rate.total_cmp(&b.offered_rate));
    let pts: Vec<(f64, f64)> = by_x
        .iter()
        .map(|s| (s.offered_deliveries_per_sec, s.delivered_per_sec))
        .collect();
    rate.draw_series(LineSeries::new(pts.clone(), BLUE.stroke_width(2)))
        .map_err(err)?;
    rate.draw_series(by_x.iter().map(|s| {
        let style = if s.pass { GREEN.filled() } else { RED.filled() };
        Circle::new(
            (s.offered_deliveries_per_sec, s.delivered_per_sec),
            4,
            style,
        )
    }))
    .map_err(err)?;
    let p_max = by_x.iter().map(|s| s.p99_us).fold(1.0, f64::max) * 1.05;
    let mut lat = ChartBuilder::on(&right)
        .caption("p99 latency vs offered deliveries/s", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..x_max, 0.0..p_max)
        .map_err(err)?;
    lat.configure_mesh()
        .x_label_formatter(&human)
        .y_label_formatter(&human)
        .x_desc("offered deliveries/s")
        .y_desc("p99 (µs)")
        .draw()
        .map_err(err)?;
    let pts = by_x
        .iter()
        .map(|s| (s.offered_deliveries_per_sec, s.p99_us));
    lat.draw_series(LineSeries::new(pts, RGBColor(230, 120, 0).stroke_width(2)))
        .map_err(err)?;
    root.present().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Point;
    use crate::report::Step;
    use crate::stats::Percentiles;

    #[test]
    fn both_plots_render_to_svg() {
        let dir = std::env::temp_dir();
        let pid = std::process::id();
        let lat = |x: f64| Percentiles {
            p50: x,
            p90: 2.0 * x,
            p99: 3.0 * x,
            p999: 4.0 * x,
            max: 5.0 * x,
        };
        let timeline = (1..=5)
            .map(|i| Point {
                t_s: i as f64,
                delivered: 100,
                per_sec: 100.0,
                latency_us: lat(i as f64),
            })
            .collect();
        let o = Outcome {
            scenario: "fanout".into(),
            timeline,
            ..Outcome::default()
        };
        let path = dir.join(format!("loadgen-plot-{pid}-t.svg"));
        draw(&path, &o).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("p99"));
        let steps = [(100.0, true), (200.0, true), (400.0, false), (300.0, true)]
            .map(|(r, pass)| Step {
                offered_rate: r,
                offered_deliveries_per_sec: r * 10.0,
                delivered_per_sec: if pass { r * 10.0 } else { 2500.0 },
                p99_us: r,
                lost: u64::from(!pass),
                pass,
            })
            .to_vec();
        let o = Outcome {
            scenario: "sweep".into(),
            steps,
            ..Outcome::default()
        };
        let path2 = dir.join(format!("loadgen-plot-{pid}-s.svg"));
        draw(&path2, &o).unwrap();
        assert!(
            std::fs::read_to_string(&path2)
                .unwrap()
                .contains("p99 latency")
        );
        let _ = (std::fs::remove_file(path), std::fs::remove_file(path2));
        assert!(draw(Path::new("x.svg"), &Outcome::default()).is_err());
    }
}
