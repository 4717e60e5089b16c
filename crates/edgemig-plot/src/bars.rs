//! Grouped bar charts: one group per category, one bar per series, the value
//! written on top of each bar.
//!
//! Data policy: `None` is "not measured" and is drawn as a small "n/a" at the
//! bar's place; a NaN or infinite value is treated like `None` and counted in
//! [`Rendered::dropped_values`]. A series with no value to draw is omitted
//! from the figure and its legend and named in [`Rendered::omitted_series`].
//! A chart with no category or no value at all is [`PlotError::NoData`]; a
//! series whose value count differs from the category count is
//! [`PlotError::ShapeMismatch`].

use std::path::Path;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::{
    BLACK, ChartBuilder, Color, DrawingArea, DrawingAreaErrorKind, DrawingBackend, EmptyElement,
    FontFamily, IntoFont, Rectangle, SeriesLabelPosition, Text, TextStyle, WHITE,
};
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::PlotError;
use crate::model::{BarChart, RenderOptions, Rendered};
use crate::output::{Figure, write_both};
use crate::range;
use crate::style::{self, LegendElement, Sample, Sizes};

/// Share of a category's width taken by its group of bars.
const GROUP_WIDTH: f64 = 0.8;

/// Renders `chart` to `out_dir/stem.png` and `out_dir/stem.svg` with
/// [`RenderOptions::default`].
pub fn render_bars(chart: &BarChart, out_dir: &Path, stem: &str) -> Result<Rendered, PlotError> {
    render_bars_with(chart, out_dir, stem, &RenderOptions::default())
}

/// Renders `chart` to `out_dir/stem.png` and `out_dir/stem.svg` (creating
/// `out_dir`).
///
/// `None` values are drawn as "n/a"; NaN or infinite values likewise, and
/// are counted in [`Rendered::dropped_values`]. Series without any value are
/// omitted (also from the legend) and listed in [`Rendered::omitted_series`].
/// No category or no value at all is [`PlotError::NoData`]; a series whose
/// length differs from the categories' is [`PlotError::ShapeMismatch`].
pub fn render_bars_with(
    chart: &BarChart,
    out_dir: &Path,
    stem: &str,
    opts: &RenderOptions,
) -> Result<Rendered, PlotError> {
    let (prepared, dropped, omitted) = prepare(chart, opts)?;
    write_both(&prepared, out_dir, stem, opts, dropped, omitted)
}

struct Drawn<'c> {
    /// Index in the chart, which picks the color.
    index: usize,
    name: &'c str,
    /// Finite values; `None` where not measured (or not finite).
    values: Vec<Option<f64>>,
}

struct Prepared<'c> {
    chart: &'c BarChart,
    series: Vec<Drawn<'c>>,
    y: (f64, f64),
    legend: SeriesLabelPosition,
    /// Font size of the value labels; `None` when bars are too narrow.
    value_font: Option<f64>,
}

fn prepare<'c>(
    chart: &'c BarChart,
    opts: &RenderOptions,
) -> Result<(Prepared<'c>, usize, Vec<String>), PlotError> {
    let n = chart.categories.len();
    let mut dropped = 0;
    let mut omitted = Vec::new();
    let mut series = Vec::new();
    for (index, s) in chart.series.iter().enumerate() {
        if s.values.len() != n {
            return Err(PlotError::ShapeMismatch {
                title: chart.title.clone(),
                series: s.name.clone(),
                expected: n,
                got: s.values.len(),
            });
        }
        let values: Vec<Option<f64>> = s
            .values
            .iter()
            .map(|v| match v {
                Some(v) if v.is_finite() => Some(*v),
                Some(_) => {
                    dropped += 1;
                    None
                }
                None => None,
            })
            .collect();
        if values.iter().all(Option::is_none) {
            omitted.push(s.name.clone());
            continue;
        }
        series.push(Drawn {
            index,
            name: &s.name,
            values,
        });
    }
    if n == 0 || series.is_empty() {
        return Err(PlotError::NoData {
            title: chart.title.clone(),
        });
    }
    let y = range::from_zero(
        series
            .iter()
            .flat_map(|s| s.values.iter().flatten().copied()),
    );

    // Legend over the half whose tallest bar is lower.
    let tallest = |range: std::ops::Range<usize>| {
        series
            .iter()
            .flat_map(|s| s.values[range.clone()].iter().flatten().copied())
            .fold(f64::NEG_INFINITY, f64::max)
    };
    let legend = if tallest(n / 2..n) <= tallest(0..n.div_ceil(2)) {
        SeriesLabelPosition::UpperRight
    } else {
        SeriesLabelPosition::UpperLeft
    };

    // Shrink value labels to the bar width; drop them if unreadable.
    let sizes = Sizes::for_figure(opts.width, opts.height);
    let plot_px = f64::from(opts.width) - f64::from(sizes.y_label_area + 3 * sizes.margin);
    let bar_px = plot_px / n as f64 * GROUP_WIDTH / series.len() as f64;
    let chars = series
        .iter()
        .flat_map(|s| {
            s.values
                .iter()
                .flatten()
                .map(|v| range::value_label(*v).len())
        })
        .max()
        .unwrap_or(1)
        .max(3) as f64;
    let font = (bar_px / (0.62 * chars)).min(f64::from(sizes.tick) * 0.9);
    let value_font = (font >= 9.0).then_some(font);

    Ok((
        Prepared {
            chart,
            series,
            y,
            legend,
            value_font,
        },
        dropped,
        omitted,
    ))
}

impl Figure for Prepared<'_> {
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        sizes: &Sizes,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        let n = self.chart.categories.len();
        let x = CategoryAxis {
            inner: (-0.5..n as f64 - 0.5).into(),
            count: n,
        };
        let mut ctx = ChartBuilder::on(root)
            .caption(&self.chart.title, (FontFamily::SansSerif, sizes.title))
            .margin(sizes.margin)
            .x_label_area_size(sizes.x_label_area)
            .y_label_area_size(sizes.y_label_area)
            .build_cartesian_2d(x, self.y.0..self.y.1)?;

        let categories = &self.chart.categories;
        let x_fmt = |v: &f64| {
            let i = v.round();
            if (v - i).abs() < 1e-6 && i >= 0.0 {
                categories.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        };
        let y_fmt = |v: &f64| range::tick(*v);
        ctx.configure_mesh()
            .disable_x_mesh()
            .x_desc(self.chart.x_label.as_str())
            .y_desc(self.chart.y_label.as_str())
            .axis_desc_style((FontFamily::SansSerif, sizes.axis_desc))
            .label_style((FontFamily::SansSerif, sizes.tick))
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&y_fmt)
            .light_line_style(WHITE.mix(0.0))
            .bold_line_style(BLACK.mix(0.12))
            .draw()?;

        let m = self.series.len() as f64;
        let width = GROUP_WIDTH / m;
        let inset = width * 0.06;
        let label_style = self.value_font.map(|size| {
            TextStyle::from((FontFamily::SansSerif, size).into_font())
                .pos(Pos::new(HPos::Center, VPos::Bottom))
        });
        let gray = BLACK.mix(0.6);
        let na_style = TextStyle::from((FontFamily::SansSerif, f64::from(sizes.tick) * 0.8))
            .color(&gray)
            .pos(Pos::new(HPos::Center, VPos::Bottom));
        let lift = sizes.marker / 2;

        for (j, s) in self.series.iter().enumerate() {
            let color = style::color(s.index);
            let left = |i: usize| i as f64 - GROUP_WIDTH / 2.0 + j as f64 * width;
            let bars = s.values.iter().enumerate().filter_map(|(i, v)| {
                v.map(|v| ([(left(i) + inset, 0.0), (left(i) + width - inset, v)], v))
            });
            ctx.draw_series(
                bars.clone()
                    .map(|(rect, _)| Rectangle::new(rect, color.filled())),
            )?
            .label(s.name)
            .legend({
                let (index, sizes) = (s.index, *sizes);
                move |at| LegendElement {
                    at,
                    sample: Sample::Bar,
                    index,
                    sizes,
                }
            });
            ctx.draw_series(
                bars.clone()
                    .map(|(rect, _)| Rectangle::new(rect, BLACK.stroke_width(1))),
            )?;
            if let Some(label) = &label_style {
                ctx.draw_series(bars.map(|(rect, v)| {
                    let centre = (rect[0].0 + rect[1].0) / 2.0;
                    EmptyElement::at((centre, v.max(0.0)))
                        + Text::new(range::value_label(v), (0, -lift), label.clone())
                }))?;
            }
            ctx.draw_series(
                s.values
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| v.is_none())
                    .map(|(i, _)| {
                        let centre = left(i) + width / 2.0;
                        EmptyElement::at((centre, 0.0))
                            + Text::new("n/a", (0, -lift), na_style.clone())
                    }),
            )?;
        }

        ctx.configure_series_labels()
            .position(self.legend.clone())
            .margin(sizes.margin)
            .legend_area_size(sizes.legend_font + sizes.margin / 2)
            .label_font((FontFamily::SansSerif, sizes.legend_font))
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.5))
            .draw()
    }
}

/// The x axis of a bar chart: category `i` is centred on `i`, and the tick
/// labels sit exactly on the categories.
struct CategoryAxis {
    inner: RangedCoordf64,
    count: usize,
}

impl Ranged for CategoryAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.inner.map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, _hint: Hint) -> Vec<f64> {
        (0..self.count).map(|i| i as f64).collect()
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.inner.range()
    }
}
