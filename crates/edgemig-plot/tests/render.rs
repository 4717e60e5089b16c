//! Renders real charts into temporary directories and checks the PNG and SVG
//! files that come out, plus the documented handling of bad input.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use edgemig_plot::{
    BarChart, BarSeries, DEFAULT_FONT_PATH, FONT_ENV, FontError, LineChart, PlotError, Point,
    RenderOptions, Series, render_bars_with, render_line, render_line_with,
};

const PNG_SIGNATURE: [u8; 8] = [137, 80, 78, 71, 13, 10, 26, 10];

fn opts(width: u32, height: u32) -> RenderOptions {
    RenderOptions {
        width,
        height,
        font_path: PathBuf::from(DEFAULT_FONT_PATH),
    }
}

/// Decodes `path` and returns (width, height, distinct RGB colors).
fn decode_png(path: &Path) -> (u32, u32, HashSet<[u8; 3]>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(bytes[..8], PNG_SIGNATURE, "{} is not a PNG", path.display());
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => panic!("unexpected PNG color type {other:?}"),
    };
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    let colors = buf[..info.buffer_size()]
        .chunks_exact(channels)
        .map(|p| [p[0], p[1], p[2]])
        .collect();
    (info.width, info.height, colors)
}

/// Reads `path` and checks it is a well-formed-looking SVG document.
fn read_svg(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(
        text.starts_with("<svg"),
        "no <svg root in {}",
        path.display()
    );
    assert!(text.trim_end().ends_with("</svg>"), "unterminated SVG");
    assert_eq!(
        text.matches("<text").count(),
        text.matches("</text>").count()
    );
    assert_eq!(text.matches('<').count(), text.matches('>').count());
    text
}

fn bandwidth_chart() -> LineChart {
    let bandwidths = [10.0, 25.0, 50.0, 100.0, 250.0, 1000.0];
    let series = |name: &str, factor: f64| Series {
        name: name.to_string(),
        points: bandwidths
            .iter()
            .map(|&b| {
                let t = factor * 8192.0 / b + 1.0;
                Point::with_range(b, t, t * 0.9, t * 1.1)
            })
            .collect(),
    };
    LineChart {
        title: "Migration time vs. bandwidth".into(),
        x_label: "Bandwidth (Mbit/s)".into(),
        y_label: "Migration time (s)".into(),
        series: vec![
            series("QEMU (1 TCP)", 1.0),
            series("edgemig MPTCP", 0.55),
            series("edgemig MPTCP+zstd", 0.3),
        ],
        log_x: true,
    }
}

fn disk_chart() -> BarChart {
    BarChart {
        title: "Disk migration & base image cache".into(),
        x_label: "VM image".into(),
        y_label: "Transfer time (s)".into(),
        categories: vec!["Debian 12".into(), "Ubuntu 24.04".into(), "Alpine".into()],
        series: vec![
            BarSeries {
                name: "Full image".into(),
                values: vec![Some(180.0), Some(240.0), Some(12.0)],
            },
            BarSeries {
                name: "Cached base image".into(),
                values: vec![Some(10.0), Some(14.0), None],
            },
        ],
    }
}

#[test]
fn line_chart_is_written_as_png_and_svg() {
    let dir = tempfile::tempdir().unwrap();
    let chart = bandwidth_chart();
    let r = render_line_with(&chart, dir.path(), "fig-bandwidth", &opts(900, 560)).unwrap();
    assert_eq!(r.png, dir.path().join("fig-bandwidth.png"));
    assert_eq!(r.svg, dir.path().join("fig-bandwidth.svg"));
    assert_eq!(r.dropped_values, 0);
    assert!(r.omitted_series.is_empty());

    let (w, h, colors) = decode_png(&r.png);
    assert_eq!((w, h), (900, 560));
    // Anti-aliased text and lines give many shades; a blank or failed
    // drawing gives one or two.
    assert!(colors.len() > 50, "only {} colors", colors.len());
    // Each series is drawn in its own palette color (Okabe-Ito blue, orange,
    // bluish green).
    for c in [[0x00, 0x72, 0xB2], [0xE6, 0x9F, 0x00], [0x00, 0x9E, 0x73]] {
        assert!(colors.contains(&c), "series color {c:02X?} missing");
    }

    let svg = read_svg(&r.svg);
    for text in [&chart.title, &chart.x_label, &chart.y_label] {
        assert!(svg.contains(text.as_str()), "SVG lacks {text:?}");
    }
    for s in &chart.series {
        assert!(svg.contains(&s.name), "SVG legend lacks {:?}", s.name);
    }
    assert!(svg.contains(r#"width="900" height="560""#));
}

#[test]
fn grouped_bar_chart_is_written_as_png_and_svg() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("nested").join("figures");
    let chart = disk_chart();
    let r = render_bars_with(&chart, &out, "fig-disk", &opts(800, 500)).unwrap();
    assert_eq!(r.dropped_values, 0);

    let (w, h, colors) = decode_png(&r.png);
    assert_eq!((w, h), (800, 500));
    assert!(colors.len() > 50, "only {} colors", colors.len());
    for c in [[0x00, 0x72, 0xB2], [0xE6, 0x9F, 0x00]] {
        assert!(colors.contains(&c), "bar color {c:02X?} missing");
    }

    let svg = read_svg(&r.svg);
    // '&' is escaped in the SVG text.
    assert!(svg.contains("Disk migration &amp; base image cache"));
    for text in [
        "VM image",
        "Transfer time (s)",
        "Full image",
        "Cached base image",
    ] {
        assert!(svg.contains(text), "SVG lacks {text:?}");
    }
    for c in &chart.categories {
        assert!(svg.contains(c.as_str()), "SVG lacks category {c:?}");
    }
    // Values on top of the bars, "n/a" where not measured.
    assert!(svg.contains("240"));
    assert!(svg.contains("n/a"));
}

#[test]
fn missing_font_is_a_typed_error_naming_path_and_package() {
    let dir = tempfile::tempdir().unwrap();
    let font = dir.path().join("no-such-font.ttf");
    let options = RenderOptions {
        font_path: font.clone(),
        ..opts(640, 400)
    };
    let out = dir.path().join("out");
    let err = render_line_with(&bandwidth_chart(), &out, "x", &options).unwrap_err();
    match &err {
        PlotError::Font(FontError::Read { path, source }) => {
            assert_eq!(path, &font);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("unexpected error {other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains(&font.display().to_string()), "{message}");
    assert!(message.contains("fonts-dejavu-core"), "{message}");
    assert!(!out.exists(), "nothing is written without a font");
}

#[test]
fn a_file_that_is_not_a_font_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let font = dir.path().join("fake.ttf");
    std::fs::write(&font, b"this is not a TrueType font").unwrap();
    let options = RenderOptions {
        font_path: font.clone(),
        ..opts(640, 400)
    };
    let err = render_bars_with(&disk_chart(), dir.path(), "x", &options).unwrap_err();
    assert!(
        matches!(&err, PlotError::Font(FontError::Invalid { path, .. }) if path == &font),
        "{err:?}"
    );
}

/// Child half of `env_override_selects_the_font`: does nothing unless
/// spawned by it.
#[test]
fn child_renders_with_default_options() {
    let Some(out) = std::env::var_os("EDGEMIG_PLOT_TEST_CHILD_OUT") else {
        return;
    };
    let font = std::env::var_os(FONT_ENV).unwrap();
    let err = render_line(&bandwidth_chart(), Path::new(&out), "x").unwrap_err();
    assert!(
        matches!(&err, PlotError::Font(FontError::Read { path, .. }) if path.as_os_str() == font),
        "{err:?}"
    );
    println!("CHILD-CHECKED");
}

#[test]
fn env_override_selects_the_font() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_renders_with_default_options",
            "--nocapture",
        ])
        .env(FONT_ENV, dir.path().join("override.ttf"))
        .env("EDGEMIG_PLOT_TEST_CHILD_OUT", dir.path().join("out"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("CHILD-CHECKED"), "{stdout}");
}

#[test]
fn non_finite_points_are_dropped_and_empty_series_omitted() {
    let dir = tempfile::tempdir().unwrap();
    let mut chart = bandwidth_chart();
    // Two bad points in a kept series, an error bar with an infinite end
    // (the point stays, the bar goes), and x = 0 on the log axis.
    chart.series[0].points.push(Point::new(f64::NAN, 3.0));
    chart.series[0].points.push(Point::new(30.0, f64::INFINITY));
    chart.series[1]
        .points
        .push(Point::with_range(40.0, 50.0, 45.0, f64::INFINITY));
    chart.series[2].points.push(Point::new(0.0, 7.0));
    chart.series.push(Series {
        name: "never measured".into(),
        points: vec![Point::new(10.0, f64::NAN)],
    });
    chart.series.push(Series {
        name: "no points".into(),
        points: vec![],
    });
    let r = render_line_with(&chart, dir.path(), "nan", &opts(640, 400)).unwrap();
    assert_eq!(r.dropped_values, 4);
    assert_eq!(r.omitted_series, ["never measured", "no points"]);
    let svg = read_svg(&r.svg);
    assert!(svg.contains("QEMU (1 TCP)"));
    assert!(!svg.contains("never measured"));
    let (_, _, colors) = decode_png(&r.png);
    assert!(colors.len() > 50);
}

#[test]
fn a_chart_without_finite_data_is_no_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut chart = bandwidth_chart();
    for s in &mut chart.series {
        s.points = vec![Point::new(1.0, f64::NAN)];
    }
    let err = render_line_with(&chart, dir.path(), "x", &opts(640, 400)).unwrap_err();
    assert!(
        matches!(err, PlotError::NoData { ref title } if title == &chart.title),
        "{err:?}"
    );
    chart.series.clear();
    let err = render_line_with(&chart, dir.path(), "x", &opts(640, 400)).unwrap_err();
    assert!(matches!(err, PlotError::NoData { .. }), "{err:?}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn bar_charts_skip_non_finite_values_and_reject_bad_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let mut chart = disk_chart();
    chart.series[1].values[0] = Some(f64::NAN);
    chart.series.push(BarSeries {
        name: "not measured".into(),
        values: vec![None, None, None],
    });
    let r = render_bars_with(&chart, dir.path(), "bars", &opts(640, 400)).unwrap();
    assert_eq!(r.dropped_values, 1);
    assert_eq!(r.omitted_series, ["not measured"]);
    assert!(!read_svg(&r.svg).contains("not measured"));

    let mut all_none = disk_chart();
    for s in &mut all_none.series {
        s.values = vec![None; 3];
    }
    let err = render_bars_with(&all_none, dir.path(), "x", &opts(640, 400)).unwrap_err();
    assert!(matches!(err, PlotError::NoData { .. }), "{err:?}");

    let mut no_categories = disk_chart();
    no_categories.categories.clear();
    for s in &mut no_categories.series {
        s.values.clear();
    }
    let err = render_bars_with(&no_categories, dir.path(), "x", &opts(640, 400)).unwrap_err();
    assert!(matches!(err, PlotError::NoData { .. }), "{err:?}");

    let mut short = disk_chart();
    short.series[0].values.pop();
    let err = render_bars_with(&short, dir.path(), "x", &opts(640, 400)).unwrap_err();
    assert!(
        matches!(err, PlotError::ShapeMismatch { expected: 3, got: 2, ref series, .. } if series == "Full image"),
        "{err:?}"
    );
}

#[test]
fn bad_stems_and_sizes_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let chart = bandwidth_chart();
    for stem in ["", "../escape", "a/b", ".hidden"] {
        let err = render_line_with(&chart, dir.path(), stem, &opts(640, 400)).unwrap_err();
        assert!(
            matches!(err, PlotError::InvalidStem { .. }),
            "{stem:?}: {err:?}"
        );
    }
    for (w, h) in [(0, 400), (640, 10), (20_000, 400)] {
        let err = render_line_with(&chart, dir.path(), "x", &opts(w, h)).unwrap_err();
        assert!(
            matches!(err, PlotError::InvalidSize { .. }),
            "{w}x{h}: {err:?}"
        );
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn linear_axis_with_a_single_point_renders() {
    let dir = tempfile::tempdir().unwrap();
    let chart = LineChart {
        title: "RTT after migration".into(),
        x_label: "Time after migration (s)".into(),
        y_label: "RTT (ms)".into(),
        series: vec![Series {
            name: "with handoff".into(),
            points: vec![Point::new(0.0, 0.0)],
        }],
        log_x: false,
    };
    let r = render_line_with(&chart, dir.path(), "one", &opts(640, 400)).unwrap();
    let (w, h, _) = decode_png(&r.png);
    assert_eq!((w, h), (640, 400));
    assert!(read_svg(&r.svg).contains("with handoff"));
}
