//! The output directory: created empty at the start (an existing non-empty
//! one only with `force`), then `results.json`, `results.md` and each
//! figure's plots, rewritten after every figure so an interrupted run keeps
//! what it measured.

use std::path::{Path, PathBuf};

use super::figures::error_chain;
use super::markdown;
use super::plots;
use super::results::PaperResults;

/// Errors of the output directory.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The directory exists and holds files.
    #[error("Output directory {0} is not empty (use --force to write into it anyway)")]
    NotEmpty(PathBuf),
    /// It is a file.
    #[error("Output path {0} is not a directory")]
    NotADirectory(PathBuf),
    /// Creating or reading it failed.
    #[error("Cannot create the output directory {path}")]
    Create {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Writing a file failed.
    #[error("Cannot write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The results did not serialize.
    #[error("Cannot serialize the results")]
    Json(#[source] serde_json::Error),
}

/// Creates `dir`; an existing non-empty one is refused unless `force`.
pub fn prepare(dir: &Path, force: bool) -> Result<(), OutputError> {
    let create = |source| OutputError::Create {
        path: dir.to_path_buf(),
        source,
    };
    if dir.exists() {
        if !dir.is_dir() {
            return Err(OutputError::NotADirectory(dir.to_path_buf()));
        }
        let mut entries = std::fs::read_dir(dir).map_err(create)?;
        if entries.next().is_some() && !force {
            return Err(OutputError::NotEmpty(dir.to_path_buf()));
        }
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(create)
}

/// Renders the plots of figures that have none yet, then writes
/// `results.json` and `results.md`; returns the Markdown. A plot that cannot
/// be rendered is noted in its figure (`plot_error`), not an error.
pub fn write_all(dir: &Path, results: &mut PaperResults) -> Result<String, OutputError> {
    for figure in &mut results.figures {
        if !figure.plots.is_empty() || figure.plot_error.is_some() {
            continue;
        }
        match plots::render(figure, dir) {
            Ok(files) => figure.plots = files,
            Err(error) => {
                tracing::warn!(figure = %figure.id, %error, "plot not rendered");
                figure.plot_error = Some(error_chain(&error));
            }
        }
    }
    let json = serde_json::to_string_pretty(results).map_err(OutputError::Json)?;
    write(&dir.join("results.json"), &json)?;
    let md = markdown::render(results);
    write(&dir.join("results.md"), &md)?;
    Ok(md)
}

fn write(path: &Path, text: &str) -> Result<(), OutputError> {
    std::fs::write(path, text).map_err(|source| OutputError::Write {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_non_empty_directory_unless_forced() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("a/b");
        prepare(&out, false).unwrap();
        assert!(out.is_dir());
        prepare(&out, false).unwrap();
        std::fs::write(out.join("x"), "x").unwrap();
        assert!(matches!(
            prepare(&out, false),
            Err(OutputError::NotEmpty(_))
        ));
        prepare(&out, true).unwrap();
        assert!(matches!(
            prepare(&out.join("x"), true),
            Err(OutputError::NotADirectory(_))
        ));
    }
}
