//! PNG and SVG figures for `edgemig bench paper`: line charts (migration
//! time against bandwidth or memory size, throughput and RTT after
//! migration) with optional min/max error bars, and grouped bar charts (disk
//! migration with and without a cached base image).
//!
//! Every figure is written twice, `stem.png` and `stem.svg`, with title, axis
//! labels and a legend; series differ in color, marker shape and line
//! pattern so they read in grayscale too. Text is drawn with a TrueType font
//! loaded at run time ([`default_font_path`]: `$EDGEMIG_PLOT_FONT` or DejaVu
//! Sans from the Debian package `fonts-dejavu-core`), without system font
//! libraries. NaN, infinite and missing values are skipped and counted, never
//! a panic (see [`render_line_with`] and [`render_bars_with`]); a chart with
//! nothing to draw is [`PlotError::NoData`].

mod bars;
mod error;
mod font;
mod line;
mod model;
mod output;
mod range;
mod style;

pub use bars::{render_bars, render_bars_with};
pub use error::PlotError;
pub use font::{DEFAULT_FONT_PATH, FONT_ENV, FONT_PACKAGE, FontError, default_font_path};
pub use line::{render_line, render_line_with};
pub use model::{BarChart, BarSeries, LineChart, Point, RenderOptions, Rendered, Series};
