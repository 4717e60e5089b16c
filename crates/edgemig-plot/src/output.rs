//! Writing one figure as both PNG and SVG.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::{
    BitMapBackend, DrawingArea, DrawingAreaErrorKind, DrawingBackend, IntoDrawingArea, SVGBackend,
    WHITE,
};

use crate::error::PlotError;
use crate::font;
use crate::model::{RenderOptions, Rendered};
use crate::style::Sizes;

/// Smallest and largest accepted figure side, in pixels.
const SIDE: std::ops::RangeInclusive<u32> = 64..=10_000;

/// A chart ready to draw on any plotters backend.
pub(crate) trait Figure {
    /// Draws the whole figure on `root` (already filled white).
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        sizes: &Sizes,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>>;
}

/// Renders `figure` to `out_dir/stem.png` and `out_dir/stem.svg`.
pub(crate) fn write_both(
    figure: &impl Figure,
    out_dir: &Path,
    stem: &str,
    opts: &RenderOptions,
    dropped_values: usize,
    omitted_series: Vec<String>,
) -> Result<Rendered, PlotError> {
    check_stem(stem)?;
    if !SIDE.contains(&opts.width) || !SIDE.contains(&opts.height) {
        return Err(PlotError::InvalidSize {
            width: opts.width,
            height: opts.height,
        });
    }
    let _font = font::lease(&opts.font_path)?;
    std::fs::create_dir_all(out_dir).map_err(|source| PlotError::CreateDir {
        path: out_dir.to_path_buf(),
        source,
    })?;
    let size = (opts.width, opts.height);
    let sizes = Sizes::for_figure(opts.width, opts.height);

    let png = out_dir.join(format!("{stem}.png"));
    {
        let root = BitMapBackend::new(&png, size).into_drawing_area();
        draw_all(figure, &root, &sizes).map_err(|e| draw_error(&png, e))?;
    }

    let svg = out_dir.join(format!("{stem}.svg"));
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, size).into_drawing_area();
        draw_all(figure, &root, &sizes).map_err(|e| draw_error(&svg, e))?;
    }
    std::fs::write(&svg, text).map_err(|source| PlotError::Write {
        path: svg.clone(),
        source,
    })?;

    Ok(Rendered {
        png,
        svg,
        dropped_values,
        omitted_series,
    })
}

fn draw_all<DB: DrawingBackend>(
    figure: &impl Figure,
    root: &DrawingArea<DB, Shift>,
    sizes: &Sizes,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    figure.draw(root, sizes)?;
    root.present()
}

fn draw_error<E>(path: &Path, e: DrawingAreaErrorKind<E>) -> PlotError
where
    E: std::error::Error + Send + Sync + 'static,
{
    PlotError::Draw {
        path: PathBuf::from(path),
        source: Box::new(e),
    }
}

fn check_stem(stem: &str) -> Result<(), PlotError> {
    let ok = !stem.is_empty()
        && !stem.starts_with('.')
        && stem
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(PlotError::InvalidStem {
            stem: stem.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::check_stem;

    #[test]
    fn stems_are_plain_file_names() {
        assert!(check_stem("fig3-bandwidth_v1.2").is_ok());
        for bad in ["", ".hidden", "a/b", "../x", "a b"] {
            assert!(check_stem(bad).is_err(), "{bad:?} accepted");
        }
    }
}
