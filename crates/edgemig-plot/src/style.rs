//! Colors, marker shapes, line dashes and text sizes shared by all charts.
//!
//! Series `i` gets color `i`, marker `i` and dash `i` (each cycling), so
//! neighbouring series differ in color, shape and line pattern and stay
//! distinguishable in grayscale print.

use plotters::element::{Drawable, PointCollection};
use plotters::prelude::{BLACK, Color, DrawingBackend, RGBColor, ShapeStyle};
use plotters_backend::{BackendCoord, DrawingErrorKind};

/// Okabe–Ito colors (color-blind safe), ordered to alternate dark and light.
const PALETTE: [RGBColor; 7] = [
    RGBColor(0x00, 0x72, 0xB2), // blue
    RGBColor(0xE6, 0x9F, 0x00), // orange
    RGBColor(0x00, 0x9E, 0x73), // bluish green
    RGBColor(0xD5, 0x5E, 0x00), // vermillion
    RGBColor(0x56, 0xB4, 0xE9), // sky blue
    RGBColor(0xCC, 0x79, 0xA7), // reddish purple
    RGBColor(0x33, 0x33, 0x33), // near black
];

/// The color of series `index`.
pub(crate) fn color(index: usize) -> RGBColor {
    PALETTE[index % PALETTE.len()]
}

/// Marker shapes, in the order series use them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Marker {
    Circle,
    Triangle,
    Square,
    Diamond,
    Cross,
    HollowCircle,
    HollowSquare,
    HollowTriangle,
}

const MARKERS: [Marker; 8] = [
    Marker::Circle,
    Marker::Triangle,
    Marker::Square,
    Marker::Diamond,
    Marker::Cross,
    Marker::HollowCircle,
    Marker::HollowSquare,
    Marker::HollowTriangle,
];

/// The marker of series `index`.
pub(crate) fn marker_kind(index: usize) -> Marker {
    MARKERS[index % MARKERS.len()]
}

/// Line pattern of series `index`: (dash length, gap) in pixels, `None` = solid.
pub(crate) fn dash(index: usize, sizes: &Sizes) -> Option<(u32, u32)> {
    match index % 3 {
        0 => None,
        1 => Some((sizes.dash * 3, sizes.dash * 2)),
        _ => Some((sizes.dash, sizes.dash)),
    }
}

/// A data marker: an element anchored at one coordinate.
pub(crate) struct MarkerElement<C> {
    pub at: C,
    pub kind: Marker,
    pub color: RGBColor,
    /// Radius in pixels.
    pub size: i32,
}

impl<'a, C: 'a> PointCollection<'a, C> for &'a MarkerElement<C> {
    type Point = &'a C;
    type IntoIter = std::iter::Once<&'a C>;

    fn point_iter(self) -> Self::IntoIter {
        std::iter::once(&self.at)
    }
}

impl<C, DB: DrawingBackend> Drawable<DB> for MarkerElement<C> {
    fn draw<I: Iterator<Item = BackendCoord>>(
        &self,
        mut pos: I,
        backend: &mut DB,
        _parent: (u32, u32),
    ) -> Result<(), DrawingErrorKind<DB::ErrorType>> {
        match pos.next() {
            Some(at) => draw_marker(backend, self.kind, at, self.color, self.size),
            None => Ok(()),
        }
    }
}

/// Draws marker `kind` centred on pixel `at`.
fn draw_marker<DB: DrawingBackend>(
    backend: &mut DB,
    kind: Marker,
    (x, y): BackendCoord,
    color: RGBColor,
    r: i32,
) -> Result<(), DrawingErrorKind<DB::ErrorType>> {
    let filled: ShapeStyle = color.filled();
    let hollow: ShapeStyle = color.stroke_width(2);
    let radius = u32::try_from(r).unwrap_or(1);
    let t = r + 1;
    let h = t * 87 / 100;
    let triangle = [(x, y - t), (x + h, y + t / 2), (x - h, y + t / 2)];
    let q = r * 4 / 5;
    match kind {
        Marker::Circle => backend.draw_circle((x, y), radius, &filled, true),
        Marker::HollowCircle => backend.draw_circle((x, y), radius, &hollow, false),
        Marker::Triangle => backend.fill_polygon(triangle, &filled),
        Marker::HollowTriangle => backend.draw_path(
            triangle.iter().copied().chain(std::iter::once(triangle[0])),
            &hollow,
        ),
        Marker::Square => backend.draw_rect((x - q, y - q), (x + q, y + q), &filled, true),
        Marker::HollowSquare => backend.draw_rect((x - q, y - q), (x + q, y + q), &hollow, false),
        Marker::Diamond => {
            backend.fill_polygon([(x, y - t), (x + t, y), (x, y + t), (x - t, y)], &filled)
        }
        Marker::Cross => {
            let thick = color.stroke_width(3);
            backend.draw_line((x - q, y - q), (x + q, y + q), &thick)?;
            backend.draw_line((x - q, y + q), (x + q, y - q), &thick)
        }
    }
}

/// A vertical min/max error bar with whiskers, in data coordinates.
pub(crate) struct ErrorBarElement {
    /// Lower and upper end, (x, y) each.
    pub ends: [(f64, f64); 2],
    pub color: RGBColor,
    /// Whisker width in pixels.
    pub whisker: i32,
}

impl<'a> PointCollection<'a, (f64, f64)> for &'a ErrorBarElement {
    type Point = &'a (f64, f64);
    type IntoIter = &'a [(f64, f64); 2];

    fn point_iter(self) -> Self::IntoIter {
        &self.ends
    }
}

impl<DB: DrawingBackend> Drawable<DB> for ErrorBarElement {
    fn draw<I: Iterator<Item = BackendCoord>>(
        &self,
        mut pos: I,
        backend: &mut DB,
        _parent: (u32, u32),
    ) -> Result<(), DrawingErrorKind<DB::ErrorType>> {
        let (Some(low), Some(high)) = (pos.next(), pos.next()) else {
            return Ok(());
        };
        let style = self.color.stroke_width(2);
        let w = self.whisker / 2;
        backend.draw_line(low, high, &style)?;
        for (x, y) in [low, high] {
            backend.draw_line((x - w, y), (x + w, y), &style)?;
        }
        Ok(())
    }
}

/// What a legend entry shows.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Sample {
    /// A short line in the series' pattern with its marker in the middle.
    Line,
    /// An outlined color swatch.
    Bar,
}

/// The legend sample of series `index`, anchored at a legend pixel.
pub(crate) struct LegendElement {
    pub at: BackendCoord,
    pub sample: Sample,
    pub index: usize,
    pub sizes: Sizes,
}

impl<'a> PointCollection<'a, BackendCoord> for &'a LegendElement {
    type Point = &'a BackendCoord;
    type IntoIter = std::iter::Once<&'a BackendCoord>;

    fn point_iter(self) -> Self::IntoIter {
        std::iter::once(&self.at)
    }
}

impl<DB: DrawingBackend> Drawable<DB> for LegendElement {
    fn draw<I: Iterator<Item = BackendCoord>>(
        &self,
        mut pos: I,
        backend: &mut DB,
        _parent: (u32, u32),
    ) -> Result<(), DrawingErrorKind<DB::ErrorType>> {
        let Some((x, y)) = pos.next() else {
            return Ok(());
        };
        let c = color(self.index);
        match self.sample {
            Sample::Line => {
                let style = c.stroke_width(self.sizes.line_width);
                let half = self.sizes.legend_line / 2;
                match dash(self.index, &self.sizes) {
                    None => backend.draw_line((x - half, y), (x + half, y), &style)?,
                    Some((len, gap)) => {
                        let (len, gap) = (len as i32, gap as i32);
                        let mut from = x - half;
                        while from < x + half {
                            let to = (from + len).min(x + half);
                            backend.draw_line((from, y), (to, y), &style)?;
                            from = to + gap;
                        }
                    }
                }
                draw_marker(
                    backend,
                    marker_kind(self.index),
                    (x, y),
                    c,
                    self.sizes.marker,
                )
            }
            Sample::Bar => {
                let r = self.sizes.legend_font / 2;
                let (ul, br) = ((x - r, y - r), (x + r, y + r));
                backend.draw_rect(ul, br, &c.filled(), true)?;
                backend.draw_rect(ul, br, &BLACK.stroke_width(1), false)
            }
        }
    }
}

/// Pixel sizes scaled to the figure.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sizes {
    pub title: i32,
    pub axis_desc: i32,
    pub tick: i32,
    pub legend_font: i32,
    pub marker: i32,
    pub line_width: u32,
    pub dash: u32,
    pub legend_line: i32,
    pub whisker: i32,
    pub margin: i32,
    pub x_label_area: i32,
    pub y_label_area: i32,
}

impl Sizes {
    /// Sizes for a `width` x `height` figure (tuned at 1024x640).
    pub(crate) fn for_figure(width: u32, height: u32) -> Self {
        let scale = (f64::from(width) / 1024.0).min(f64::from(height) / 640.0);
        let px = |v: f64| ((v * scale).round() as i32).max(1);
        Self {
            title: px(30.0),
            axis_desc: px(22.0),
            tick: px(18.0),
            legend_font: px(18.0),
            marker: px(7.0),
            line_width: px(2.5) as u32,
            dash: px(4.0) as u32,
            legend_line: px(40.0),
            whisker: px(12.0),
            margin: px(18.0),
            x_label_area: px(64.0),
            y_label_area: px(86.0),
        }
    }
}
