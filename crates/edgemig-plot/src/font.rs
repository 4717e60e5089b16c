//! The TrueType font the charts are drawn with, read from a file at run time.
//!
//! Plotters' `ab_glyph` text backend only knows fonts registered by name with
//! `'static` bytes, so each distinct font file is read once, checked, leaked
//! once and registered as the `sans-serif` family (the family name also ends
//! up in the SVG `font-family` attribute, where viewers resolve it to their own
//! sans-serif font). The font is process-wide: a [`FontLease`] keeps it
//! selected while one chart is drawn, so concurrent renders are serialized.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use plotters::style::{FontStyle, register_font};

/// The font used when [`FONT_ENV`] is not set.
pub const DEFAULT_FONT_PATH: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
/// Environment variable overriding the font file.
pub const FONT_ENV: &str = "EDGEMIG_PLOT_FONT";
/// Debian package that ships [`DEFAULT_FONT_PATH`].
pub const FONT_PACKAGE: &str = "fonts-dejavu-core";

/// Errors loading the chart font.
#[derive(Debug, thiserror::Error)]
pub enum FontError {
    #[error(
        "Cannot read the chart font {path} (install the Debian package {FONT_PACKAGE} or point {FONT_ENV} to a .ttf file)"
    )]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("The chart font {path} is not a TrueType/OpenType font")]
    Invalid {
        path: PathBuf,
        #[source]
        source: ab_glyph::InvalidFont,
    },
    #[error("Plotters refused to register the chart font {path}")]
    Register { path: PathBuf },
}

/// The font file charts use: `$EDGEMIG_PLOT_FONT` if set and non-empty,
/// else [`DEFAULT_FONT_PATH`].
pub fn default_font_path() -> PathBuf {
    match std::env::var_os(FONT_ENV) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(DEFAULT_FONT_PATH),
    }
}

#[derive(Default)]
struct Registry {
    /// Bytes of every font file read so far, leaked once each.
    loaded: HashMap<PathBuf, &'static [u8]>,
    /// The file currently registered as `sans-serif`.
    active: Option<PathBuf>,
}

static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);

/// Keeps the requested font registered while a chart is drawn.
pub(crate) struct FontLease {
    _guard: MutexGuard<'static, Option<Registry>>,
}

/// Makes `path` the `sans-serif` font and holds it until the lease drops.
pub(crate) fn lease(path: &Path) -> Result<FontLease, FontError> {
    // A panic while holding the lock leaves the registry consistent (every
    // step below either completes or returns early), so poisoning is ignored.
    let mut guard = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    let registry = guard.get_or_insert_with(Registry::default);
    if registry.active.as_deref() != Some(path) {
        let bytes = match registry.loaded.get(path) {
            Some(bytes) => *bytes,
            None => {
                let data = std::fs::read(path).map_err(|source| FontError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                ab_glyph::FontRef::try_from_slice(&data).map_err(|source| FontError::Invalid {
                    path: path.to_path_buf(),
                    source,
                })?;
                let bytes: &'static [u8] = Box::leak(data.into_boxed_slice());
                registry.loaded.insert(path.to_path_buf(), bytes);
                bytes
            }
        };
        register_font("sans-serif", FontStyle::Normal, bytes).map_err(|_| FontError::Register {
            path: path.to_path_buf(),
        })?;
        registry.active = Some(path.to_path_buf());
    }
    Ok(FontLease { _guard: guard })
}
