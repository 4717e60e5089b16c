//! The figures as PNG and SVG charts (`edgemig-plot`): lines with min/max
//! error bars for numeric x, grouped bars for categories.

use std::path::Path;

use edgemig_plot::{
    BarChart, BarSeries, LineChart, PlotError, Point, Series, render_bars, render_line,
};

use super::markdown::display_factor;
use super::results::{Figure, XValue};

/// Renders `figure` to `dir/<id>.png` and `dir/<id>.svg`; returns the file
/// names written.
pub fn render(figure: &Figure, dir: &Path) -> Result<Vec<String>, PlotError> {
    let factor = display_factor(figure);
    let y_label = format!("{} ({})", y_quantity(figure), figure.display_unit);
    let rendered = if figure.kind == "line" {
        let chart = LineChart {
            title: figure.title.clone(),
            x_label: figure.x_label.clone(),
            y_label,
            series: figure
                .series
                .iter()
                .map(|s| Series {
                    name: s.label.clone(),
                    points: s
                        .points
                        .iter()
                        .map(|p| {
                            let x = match p.x {
                                XValue::Number(x) => x,
                                XValue::Category(_) => f64::NAN,
                            };
                            let y = p.median.map_or(f64::NAN, |m| m * factor);
                            match (p.min, p.max) {
                                (Some(lo), Some(hi)) if p.n > 1 => {
                                    Point::with_range(x, y, lo * factor, hi * factor)
                                }
                                _ => Point::new(x, y),
                            }
                        })
                        .collect(),
                })
                .collect(),
            log_x: false,
        };
        render_line(&chart, dir, &figure.id)?
    } else {
        let mut categories: Vec<String> = Vec::new();
        for s in &figure.series {
            for p in &s.points {
                let name = p.x.to_string();
                if !categories.contains(&name) {
                    categories.push(name);
                }
            }
        }
        let chart = BarChart {
            title: figure.title.clone(),
            x_label: figure.x_label.clone(),
            y_label,
            series: figure
                .series
                .iter()
                .map(|s| BarSeries {
                    name: s.label.clone(),
                    values: categories
                        .iter()
                        .map(|c| {
                            s.points
                                .iter()
                                .find(|p| &p.x.to_string() == c)
                                .and_then(|p| p.median)
                                .map(|m| m * factor)
                        })
                        .collect(),
                })
                .collect(),
            categories,
        };
        render_bars(&chart, dir, &figure.id)?
    };
    let name = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    Ok(vec![name(&rendered.png), name(&rendered.svg)])
}

/// What the y axis shows, from the figure's unit.
fn y_quantity(figure: &Figure) -> &'static str {
    match figure.unit.as_str() {
        "ms" if figure.display_unit == "s" => "Migration time",
        "ms" => "RTT",
        "Mbit/s" => "Throughput",
        "MiB" => "Data sent",
        _ => "Value",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paper::results::{FigurePoint, FigureSeries};

    fn figure(kind: &str, x: XValue) -> Figure {
        Figure {
            id: format!("t_{kind}"),
            title: "T".into(),
            kind: kind.into(),
            x_label: "X".into(),
            unit: "ms".into(),
            display_unit: "s".into(),
            conditions: String::new(),
            series: vec![FigureSeries {
                system: "auto".into(),
                label: "auto".into(),
                points: vec![FigurePoint::from_samples(x, vec![1000.0, 3000.0], 2)],
            }],
            notes: Vec::new(),
            plots: Vec::new(),
            plot_error: None,
        }
    }

    #[test]
    fn renders_lines_and_bars_with_a_single_point() {
        let dir = tempfile::tempdir().unwrap();
        let files = render(&figure("line", XValue::Number(100.0)), dir.path()).unwrap();
        assert_eq!(files, vec!["t_line.png", "t_line.svg"]);
        let files = render(&figure("bars", XValue::Category("a".into())), dir.path()).unwrap();
        assert_eq!(files, vec!["t_bars.png", "t_bars.svg"]);
        for f in ["t_line.png", "t_bars.png"] {
            let bytes = std::fs::read(dir.path().join(f)).unwrap();
            assert!(bytes.starts_with(b"\x89PNG"), "{f}");
        }
        let svg = std::fs::read_to_string(dir.path().join("t_line.svg")).unwrap();
        assert!(svg.contains("<svg"));
    }

    #[test]
    fn a_figure_without_any_value_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = figure("line", XValue::Number(1.0));
        f.series[0].points = vec![FigurePoint::from_samples(XValue::Number(1.0), vec![], 1)];
        assert!(matches!(
            render(&f, dir.path()),
            Err(PlotError::NoData { .. })
        ));
    }
}
