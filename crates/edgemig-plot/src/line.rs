//! Line charts: one line with markers (and optional min/max error bars) per
//! series.
//!
//! Data policy: a point whose x or y is NaN or infinite (or whose x is <= 0 on
//! a logarithmic axis) is dropped and counted in
//! [`Rendered::dropped_values`]; a non-finite error bar end is ignored (the
//! bar is drawn only when both ends are finite). A series left with no point
//! is omitted from the figure and its legend and named in
//! [`Rendered::omitted_series`]. A chart with no point at all is
//! [`PlotError::NoData`]. Points are drawn in increasing x order.

use std::path::Path;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::{
    BLACK, Cartesian2d, ChartBuilder, ChartContext, Color, DashedLineSeries, DrawingArea,
    DrawingAreaErrorKind, DrawingBackend, FontFamily, IntoLogRange, LineSeries,
    SeriesLabelPosition, WHITE,
};

use crate::error::PlotError;
use crate::model::{LineChart, RenderOptions, Rendered};
use crate::output::{Figure, write_both};
use crate::range;
use crate::style::{self, ErrorBarElement, LegendElement, MarkerElement, Sample, Sizes};

/// Renders `chart` to `out_dir/stem.png` and `out_dir/stem.svg` with
/// [`RenderOptions::default`].
pub fn render_line(chart: &LineChart, out_dir: &Path, stem: &str) -> Result<Rendered, PlotError> {
    render_line_with(chart, out_dir, stem, &RenderOptions::default())
}

/// Renders `chart` to `out_dir/stem.png` and `out_dir/stem.svg` (creating
/// `out_dir`).
///
/// Points with a NaN or infinite x or y, or x <= 0 on a logarithmic axis,
/// are dropped and counted in [`Rendered::dropped_values`]; an error bar is
/// drawn only when both its ends are finite. Series left without points are
/// omitted (also from the legend) and listed in [`Rendered::omitted_series`].
/// No point at all is [`PlotError::NoData`]; nothing is written then.
pub fn render_line_with(
    chart: &LineChart,
    out_dir: &Path,
    stem: &str,
    opts: &RenderOptions,
) -> Result<Rendered, PlotError> {
    let (prepared, dropped, omitted) = prepare(chart)?;
    write_both(&prepared, out_dir, stem, opts, dropped, omitted)
}

/// A series reduced to what is drawn.
struct Drawn<'c> {
    /// Index in the chart, which picks the color, marker and dash.
    index: usize,
    name: &'c str,
    points: Vec<(f64, f64)>,
    /// (x, low, high) of each error bar.
    bars: Vec<(f64, f64, f64)>,
}

struct Prepared<'c> {
    chart: &'c LineChart,
    series: Vec<Drawn<'c>>,
    x: (f64, f64),
    y: (f64, f64),
    legend: SeriesLabelPosition,
}

fn prepare(chart: &LineChart) -> Result<(Prepared<'_>, usize, Vec<String>), PlotError> {
    let mut dropped = 0;
    let mut omitted = Vec::new();
    let mut series = Vec::new();
    for (index, s) in chart.series.iter().enumerate() {
        let mut points = Vec::new();
        let mut bars = Vec::new();
        for p in &s.points {
            if !p.x.is_finite() || !p.y.is_finite() || (chart.log_x && p.x <= 0.0) {
                dropped += 1;
                continue;
            }
            points.push((p.x, p.y));
            if let (Some(lo), Some(hi)) = (p.y_low, p.y_high)
                && lo.is_finite()
                && hi.is_finite()
            {
                bars.push((p.x, lo.min(hi).min(p.y), hi.max(lo).max(p.y)));
            }
        }
        if points.is_empty() {
            omitted.push(s.name.clone());
            continue;
        }
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        series.push(Drawn {
            index,
            name: &s.name,
            points,
            bars,
        });
    }
    if series.is_empty() {
        return Err(PlotError::NoData {
            title: chart.title.clone(),
        });
    }
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let x = if chart.log_x {
        range::logarithmic(xs)
    } else {
        range::linear(xs)
    };
    let ys = series.iter().flat_map(|s| {
        s.points
            .iter()
            .map(|p| p.1)
            .chain(s.bars.iter().flat_map(|b| [b.1, b.2]))
    });
    let y = range::from_zero(ys);
    let legend = legend_corner(&series, x, y, chart.log_x);
    Ok((
        Prepared {
            chart,
            series,
            x,
            y,
            legend,
        },
        dropped,
        omitted,
    ))
}

/// The upper corner with fewer data points under it.
fn legend_corner(
    series: &[Drawn<'_>],
    x: (f64, f64),
    y: (f64, f64),
    log_x: bool,
) -> SeriesLabelPosition {
    let norm_x = |v: f64| {
        if log_x {
            (v.ln() - x.0.ln()) / (x.1.ln() - x.0.ln())
        } else {
            (v - x.0) / (x.1 - x.0)
        }
    };
    let (mut left, mut right) = (0, 0);
    for s in series {
        let tops = s
            .points
            .iter()
            .copied()
            .chain(s.bars.iter().map(|b| (b.0, b.2)));
        for (px, py) in tops {
            if (py - y.0) / (y.1 - y.0) < 0.55 {
                continue;
            }
            if norm_x(px) < 0.5 {
                left += 1;
            } else {
                right += 1;
            }
        }
    }
    if right <= left {
        SeriesLabelPosition::UpperRight
    } else {
        SeriesLabelPosition::UpperLeft
    }
}

impl Figure for Prepared<'_> {
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        sizes: &Sizes,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        let mut builder = ChartBuilder::on(root);
        builder
            .caption(&self.chart.title, (FontFamily::SansSerif, sizes.title))
            .margin(sizes.margin)
            .x_label_area_size(sizes.x_label_area)
            .y_label_area_size(sizes.y_label_area);
        let (x, y) = (self.x.0..self.x.1, self.y.0..self.y.1);
        if self.chart.log_x {
            let mut ctx = builder.build_cartesian_2d(x.log_scale(), y)?;
            self.draw_body(&mut ctx, sizes)
        } else {
            let mut ctx = builder.build_cartesian_2d(x, y)?;
            self.draw_body(&mut ctx, sizes)
        }
    }
}

impl Prepared<'_> {
    fn draw_body<'a, DB, X>(
        &self,
        ctx: &mut ChartContext<'a, DB, Cartesian2d<X, RangedCoordf64>>,
        sizes: &Sizes,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>>
    where
        DB: DrawingBackend + 'a,
        X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    {
        let fmt = |v: &f64| range::tick(*v);
        ctx.configure_mesh()
            .x_desc(self.chart.x_label.as_str())
            .y_desc(self.chart.y_label.as_str())
            .axis_desc_style((FontFamily::SansSerif, sizes.axis_desc))
            .label_style((FontFamily::SansSerif, sizes.tick))
            .x_label_formatter(&fmt)
            .y_label_formatter(&fmt)
            .light_line_style(WHITE.mix(0.0))
            .bold_line_style(BLACK.mix(0.12))
            .draw()?;

        for s in &self.series {
            let color = style::color(s.index);
            let line = color.stroke_width(sizes.line_width);
            let pts = s.points.iter().copied();
            match style::dash(s.index, sizes) {
                None => {
                    ctx.draw_series(LineSeries::new(pts, line))?;
                }
                Some((len, gap)) => {
                    ctx.draw_series(DashedLineSeries::new(pts, len, gap, line))?;
                }
            }
            ctx.draw_series(s.bars.iter().map(|&(x, lo, hi)| ErrorBarElement {
                ends: [(x, lo), (x, hi)],
                color,
                whisker: sizes.whisker,
            }))?;
            let (kind, size, index, sizes) =
                (style::marker_kind(s.index), sizes.marker, s.index, *sizes);
            ctx.draw_series(s.points.iter().map(|&at| MarkerElement {
                at,
                kind,
                color,
                size,
            }))?
            .label(s.name)
            .legend(move |at| LegendElement {
                at,
                sample: Sample::Line,
                index,
                sizes,
            });
        }

        ctx.configure_series_labels()
            .position(self.legend.clone())
            .margin(sizes.margin)
            .legend_area_size(sizes.legend_line + sizes.margin / 2)
            .label_font((FontFamily::SansSerif, sizes.legend_font))
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.5))
            .draw()
    }
}
