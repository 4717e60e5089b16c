//! `results.md`: one Markdown table per figure, with each point's median
//! and run count, the speedups over the plain-QEMU baseline and over QEMU's
//! best single-path setup where the figure has them, and the figure's
//! conditions.

use std::fmt::Write;

use super::results::{Figure, FigurePoint, PaperResults, XValue};

/// The whole Markdown report.
pub fn render(results: &PaperResults) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# edgemig — the paper's evaluation{}\n",
        if results.quick { " (quick subset)" } else { "" }
    );
    let m = &results.machine;
    let _ = writeln!(
        out,
        "Run {} on {} ({} CPUs, {} MiB, Linux {}, {}), edgemig {}{}; each point is the median of up to {} run(s) (n = runs that completed); a migration running over {} s was cancelled (shown as -).\n",
        results.date,
        m.cpu_model.as_deref().unwrap_or("unknown CPU"),
        m.cpus,
        m.memory_mib.map_or_else(|| "?".into(), |v| v.to_string()),
        m.kernel.as_deref().unwrap_or("?"),
        m.qemu.as_deref().unwrap_or("QEMU ?"),
        results.edgemig_version,
        results
            .git
            .as_deref()
            .map(|g| format!(" ({g})"))
            .unwrap_or_default(),
        results.repeat,
        results.limit_s
    );
    let _ = writeln!(out, "{}\n", results.conditions);
    for figure in &results.figures {
        figure_table(&mut out, figure);
    }
    if !results.failures.is_empty() {
        let _ = writeln!(out, "## Failed measurements\n");
        for f in &results.failures {
            let _ = writeln!(out, "- {f}");
        }
        out.push('\n');
    }
    out
}

/// Display factor from the figure's unit to its display unit.
pub fn display_factor(figure: &Figure) -> f64 {
    if figure.unit == "ms" && figure.display_unit == "s" {
        1e-3
    } else {
        1.0
    }
}

fn cell(point: Option<&FigurePoint>, factor: f64, unit: &str) -> String {
    let Some(p) = point else {
        return "-".into();
    };
    let Some(median) = p.median else {
        return format!("- (0/{})", p.attempted);
    };
    let mut s = format!("{:.1} {unit}", median * factor);
    if p.n > 1
        && let (Some(lo), Some(hi)) = (p.min, p.max)
    {
        let _ = write!(s, " [{:.1}–{:.1}]", lo * factor, hi * factor);
    }
    let _ = write!(s, " (n={})", p.n);
    s
}

fn find<'f>(figure: &'f Figure, system: &str, x: &XValue) -> Option<&'f FigurePoint> {
    figure
        .series
        .iter()
        .find(|s| s.system == system)?
        .points
        .iter()
        .find(|p| &p.x == x)
}

fn figure_table(out: &mut String, figure: &Figure) {
    let _ = writeln!(out, "## {} (`{}`)\n", figure.title, figure.id);
    let _ = writeln!(out, "Conditions: {}.\n", figure.conditions);
    let mut xs: Vec<&XValue> = Vec::new();
    for s in &figure.series {
        for p in &s.points {
            if !xs.contains(&&p.x) {
                xs.push(&p.x);
            }
        }
    }
    // Speedups over each reference present: every other system over plain
    // QEMU, edgemig's systems over QEMU's best single-path setup.
    let references = ["baseline", "best_single_path"];
    let mut speedups: Vec<(&str, &str)> = Vec::new();
    for (i, reference) in references.iter().enumerate() {
        if figure.series.iter().any(|s| s.system == *reference) {
            for s in &figure.series {
                if !references[..=i].contains(&s.system.as_str()) {
                    speedups.push((s.system.as_str(), reference));
                }
            }
        }
    }
    let mut header = format!("| {} |", figure.x_label);
    for s in &figure.series {
        let _ = write!(header, " {} |", s.label);
    }
    for (system, reference) in &speedups {
        let _ = write!(header, " {system} / {reference} speedup |");
    }
    let _ = writeln!(out, "{header}");
    let columns = 1 + figure.series.len() + speedups.len();
    let _ = writeln!(out, "|{}", "---|".repeat(columns));
    let factor = display_factor(figure);
    for x in xs {
        let mut row = format!("| {x} |");
        for s in &figure.series {
            let _ = write!(
                row,
                " {} |",
                cell(find(figure, &s.system, x), factor, &figure.display_unit)
            );
        }
        for (system, reference) in &speedups {
            let base = find(figure, reference, x).and_then(|p| p.median);
            let value = find(figure, system, x).and_then(|p| p.median);
            let speedup = match (base, value) {
                (Some(b), Some(v)) if v > 0.0 => format!("**{:.2}x**", b / v),
                _ => "-".into(),
            };
            let _ = write!(row, " {speedup} |");
        }
        let _ = writeln!(out, "{row}");
    }
    out.push('\n');
    for note in &figure.notes {
        let _ = writeln!(out, "- {note}");
    }
    if !figure.notes.is_empty() {
        out.push('\n');
    }
    if !figure.plots.is_empty() {
        let _ = writeln!(out, "Plots: {}\n", figure.plots.join(", "));
    }
    if let Some(error) = &figure.plot_error {
        let _ = writeln!(out, "Plot not rendered: {error}\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paper::results::{FigureSeries, Machine};

    fn point(x: f64, samples: Vec<f64>) -> FigurePoint {
        let n = u32::try_from(samples.len()).unwrap();
        FigurePoint::from_samples(XValue::Number(x), samples, n)
    }

    #[test]
    fn table_has_medians_counts_and_speedups() {
        let figure = Figure {
            id: "time_vs_bandwidth".into(),
            title: "T".into(),
            kind: "line".into(),
            x_label: "Bandwidth per path (Mbit/s)".into(),
            unit: "ms".into(),
            display_unit: "s".into(),
            conditions: "c".into(),
            series: vec![
                FigureSeries {
                    system: "baseline".into(),
                    label: "plain".into(),
                    points: vec![point(10.0, vec![20_000.0, 22_000.0, 21_000.0])],
                },
                FigureSeries {
                    system: "auto".into(),
                    label: "auto".into(),
                    points: vec![point(10.0, vec![f64::NAN, 10_500.0])],
                },
            ],
            notes: vec!["a note".into()],
            plots: vec!["time_vs_bandwidth.png".into()],
            plot_error: None,
        };
        let results = PaperResults {
            bench: "paper".into(),
            edgemig_version: "0.1.0".into(),
            date: "2025-01-01T00:00:00Z".into(),
            git: None,
            machine: Machine {
                cpu_model: None,
                cpus: 2,
                memory_mib: None,
                kernel: None,
                qemu: None,
            },
            quick: true,
            repeat: 3,
            limit_s: 600,
            conditions: "all".into(),
            figures: vec![figure],
            failures: Vec::new(),
        };
        let md = render(&results);
        assert!(
            md.contains("| Bandwidth per path (Mbit/s) | plain | auto | auto / baseline speedup |"),
            "{md}"
        );
        assert!(md.contains("|---|---|---|---|"), "{md}");
        assert!(
            md.contains("| 10 | 21.0 s [20.0–22.0] (n=3) | 10.5 s (n=1) | **2.00x** |"),
            "{md}"
        );
        assert!(md.contains("- a note"), "{md}");
    }

    #[test]
    fn speedups_over_the_best_single_path_setup_too() {
        let series = |system: &str, ms: f64| FigureSeries {
            system: system.into(),
            label: system.into(),
            points: vec![point(50.0, vec![ms])],
        };
        let figure = Figure {
            id: "time_vs_bandwidth".into(),
            title: "T".into(),
            kind: "line".into(),
            x_label: "x".into(),
            unit: "ms".into(),
            display_unit: "s".into(),
            conditions: "c".into(),
            series: vec![
                series("baseline", 40_000.0),
                series("best_single_path", 30_000.0),
                series("auto", 10_000.0),
            ],
            notes: vec![],
            plots: vec![],
            plot_error: None,
        };
        let mut out = String::new();
        figure_table(&mut out, &figure);
        assert!(
            out.contains("| x | baseline | best_single_path | auto | best_single_path / baseline speedup | auto / baseline speedup | auto / best_single_path speedup |"),
            "{out}"
        );
        assert!(
            out.contains("| **1.33x** | **4.00x** | **3.00x** |"),
            "{out}"
        );
    }
}
