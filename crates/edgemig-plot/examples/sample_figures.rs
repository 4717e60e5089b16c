//! Renders sample figures shaped like the paper's evaluation (made-up
//! numbers) into the directory given as first argument, to eyeball the style.

use std::path::PathBuf;

use edgemig_plot::{
    BarChart, BarSeries, LineChart, Point, RenderOptions, Series, render_bars, render_line,
    render_line_with,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "figures".into()));
    let bandwidths = [10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0];
    let series = |name: &str, factor: f64| Series {
        name: name.to_string(),
        points: bandwidths
            .iter()
            .map(|&b| {
                let t = factor * 8.0 * 1024.0 / b + 1.5;
                Point::with_range(b, t, t * 0.93, t * 1.08)
            })
            .collect(),
    };
    let line = LineChart {
        title: "Migration time vs. bandwidth (1 GiB VM)".into(),
        x_label: "Bandwidth (Mbit/s)".into(),
        y_label: "Migration time (s)".into(),
        series: vec![
            series("QEMU (1 TCP)", 1.0),
            series("edgemig MPTCP", 0.55),
            series("edgemig MPTCP+zstd", 0.3),
        ],
        log_x: true,
    };
    let r = render_line(&line, &out, "bandwidth")?;
    println!("{} {}", r.png.display(), r.svg.display());

    let rtt = |name: &str, base: f64, after: f64| Series {
        name: name.to_string(),
        points: (0..=20)
            .map(|t| {
                let t = f64::from(t);
                Point::new(t, if t < 5.0 { base } else { after })
            })
            .collect(),
    };
    let small = RenderOptions {
        width: 640,
        height: 400,
        ..RenderOptions::default()
    };
    let rtt_chart = LineChart {
        title: "Client RTT after migration".into(),
        x_label: "Time (s)".into(),
        y_label: "RTT (ms)".into(),
        series: vec![
            rtt("without handoff", 12.0, 48.0),
            rtt("with handoff", 12.5, 11.0),
        ],
        log_x: false,
    };
    let r = render_line_with(&rtt_chart, &out, "rtt", &small)?;
    println!("{} {}", r.png.display(), r.svg.display());

    let bars = BarChart {
        title: "Disk migration with and without a cached base image".into(),
        x_label: "VM image".into(),
        y_label: "Disk transfer time (s)".into(),
        categories: vec![
            "Debian 12".into(),
            "Ubuntu 24.04".into(),
            "Alpine 3.20".into(),
        ],
        series: vec![
            BarSeries {
                name: "Full image".into(),
                values: vec![Some(182.0), Some(240.5), Some(12.4)],
            },
            BarSeries {
                name: "Cached base image (overlay only)".into(),
                values: vec![Some(9.8), Some(14.2), None],
            },
        ],
    };
    let r = render_bars(&bars, &out, "disk")?;
    println!("{} {}", r.png.display(), r.svg.display());
    Ok(())
}
