//! The chart descriptions callers fill in, the render options and the result.

use std::path::PathBuf;

use crate::font::default_font_path;

/// One measured point of a line series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub x: f64,
    pub y: f64,
    /// Lower end of the error bar (e.g. the minimum of repeated runs).
    pub y_low: Option<f64>,
    /// Upper end of the error bar (e.g. the maximum of repeated runs).
    pub y_high: Option<f64>,
}

impl Point {
    /// A point without an error bar.
    pub fn new(x: f64, y: f64) -> Self {
        Self {
            x,
            y,
            y_low: None,
            y_high: None,
        }
    }

    /// A point with an error bar from `low` to `high`.
    pub fn with_range(x: f64, y: f64, low: f64, high: f64) -> Self {
        Self {
            x,
            y,
            y_low: Some(low),
            y_high: Some(high),
        }
    }
}

/// A named line with markers; its name is its legend entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<Point>,
}

/// A line chart; the y axis always includes 0.
#[derive(Debug, Clone, PartialEq)]
pub struct LineChart {
    pub title: String,
    /// X axis label, with its unit, e.g. "Bandwidth (Mbit/s)".
    pub x_label: String,
    /// Y axis label, with its unit, e.g. "Migration time (s)".
    pub y_label: String,
    pub series: Vec<Series>,
    /// Logarithmic x axis (points with x <= 0 are then dropped).
    pub log_x: bool,
}

/// One group member of a bar chart: a value per category, `None` when not
/// measured.
#[derive(Debug, Clone, PartialEq)]
pub struct BarSeries {
    pub name: String,
    pub values: Vec<Option<f64>>,
}

/// A grouped bar chart: one group per category, one bar per series; the y
/// axis always includes 0.
#[derive(Debug, Clone, PartialEq)]
pub struct BarChart {
    pub title: String,
    /// X axis label under the category names; empty for none.
    pub x_label: String,
    /// Y axis label, with its unit.
    pub y_label: String,
    pub categories: Vec<String>,
    pub series: Vec<BarSeries>,
}

/// Size and font of the rendered figures.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderOptions {
    /// Width in pixels (PNG) / user units (SVG).
    pub width: u32,
    /// Height in pixels (PNG) / user units (SVG).
    pub height: u32,
    /// TrueType font file used for all text.
    pub font_path: PathBuf,
}

impl Default for RenderOptions {
    /// 1024x640 with [`default_font_path`].
    fn default() -> Self {
        Self {
            width: 1024,
            height: 640,
            font_path: default_font_path(),
        }
    }
}

/// The files written for one figure and what was left out of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub png: PathBuf,
    pub svg: PathBuf,
    /// Points or bar values not drawn because they were NaN or infinite (or
    /// x <= 0 on a logarithmic axis).
    pub dropped_values: usize,
    /// Series left out of the figure and its legend: nothing to draw.
    pub omitted_series: Vec<String>,
}
