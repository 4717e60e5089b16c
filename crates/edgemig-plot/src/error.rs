//! The error every render function returns.

use std::path::PathBuf;

use crate::font::FontError;

/// Why a figure could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error(transparent)]
    Font(#[from] FontError),
    #[error("Chart {title:?} has no finite value to draw")]
    NoData { title: String },
    #[error("Bar series {series:?} of chart {title:?} has {got} values for {expected} categories")]
    ShapeMismatch {
        title: String,
        series: String,
        expected: usize,
        got: usize,
    },
    #[error("Invalid file stem {stem:?}: use letters, digits, '-', '_' and '.', not first")]
    InvalidStem { stem: String },
    #[error("Invalid figure size {width}x{height}: both must be between 64 and 10000")]
    InvalidSize { width: u32, height: u32 },
    #[error("Cannot create the output directory {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Cannot draw {path}")]
    Draw {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("Cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
