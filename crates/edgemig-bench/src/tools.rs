//! Running edgemig's traffic tool (`edgemig-guest serve|client`) inside
//! testbed namespaces.

use std::path::{Path, PathBuf};

use edgemig_testbed::process::{self, ProcessError};
use serde_json::Value;

/// Errors of a measurement.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The tool could not run.
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// It failed.
    #[error("Traffic tool failed in {netns}: {stderr}")]
    Failed {
        /// Namespace.
        netns: String,
        /// What it printed.
        stderr: String,
    },
    /// Its summary was not understood.
    #[error("Traffic tool printed no summary: {0:?}")]
    Summary(String),
}

/// The traffic tool binary.
#[derive(Debug, Clone)]
pub struct TrafficTool {
    /// Path of `edgemig-guest`.
    pub binary: PathBuf,
}

impl TrafficTool {
    /// The tool at `binary`.
    pub fn new(binary: &Path) -> Self {
        Self {
            binary: binary.to_path_buf(),
        }
    }

    /// Starts a server (echo + bulk, MPTCP with TCP fallback) in `netns`.
    pub fn serve(&self, netns: &str, port: u16, log: &Path) -> Result<u32, ToolError> {
        let args = [
            "serve".to_string(),
            "--listen".into(),
            format!("0.0.0.0:{port}"),
        ];
        Ok(process::spawn_detached(
            Some(netns),
            &self.binary,
            &args,
            log,
        )?)
    }

    /// Runs the client in `netns` and returns its JSON summary.
    pub fn client(
        &self,
        netns: &str,
        target: &str,
        mode: &str,
        seconds: f64,
        tcp: bool,
    ) -> Result<Value, ToolError> {
        let mut argv = vec![
            self.binary.display().to_string(),
            "client".into(),
            "--connect".into(),
            target.into(),
        ];
        if tcp {
            argv.push("--tcp".into());
        }
        argv.extend([
            mode.to_string(),
            "--duration".into(),
            format!("{seconds}"),
            "--json".into(),
        ]);
        let out = process::output_in(netns, &argv)?;
        if !out.status.success() {
            return Err(ToolError::Failed {
                netns: netns.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let last = text.lines().last().unwrap_or_default();
        serde_json::from_str(last).map_err(|_| ToolError::Summary(last.to_string()))
    }
}
