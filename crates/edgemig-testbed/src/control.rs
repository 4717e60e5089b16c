//! Talking to a running link emulator over its control socket: one JSON
//! line per request, one JSON line back.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

/// Errors of a control request.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The emulator could not be reached.
    #[error("Cannot reach the link emulator at {0}")]
    Io(String, #[source] std::io::Error),
    /// Its answer was not JSON.
    #[error("Unexpected answer from the link emulator: {0:?}")]
    Answer(String),
    /// It refused the request.
    #[error("Link emulator refused: {0}")]
    Refused(String),
}

/// Sends `request` to the emulator at `socket` and returns its answer.
pub fn request(socket: &Path, request: &Value) -> Result<Value, ControlError> {
    let where_ = socket.display().to_string();
    let io = |e| ControlError::Io(where_.clone(), e);
    let mut stream = UnixStream::connect(socket).map_err(io)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(io)?;
    let mut line = request.to_string();
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(io)?;
    let mut answer = String::new();
    BufReader::new(&stream).read_line(&mut answer).map_err(io)?;
    let value: Value =
        serde_json::from_str(answer.trim()).map_err(|_| ControlError::Answer(answer.clone()))?;
    if value["ok"] == Value::Bool(false) {
        return Err(ControlError::Refused(
            value["error"]
                .as_str()
                .unwrap_or("unknown error")
                .to_string(),
        ));
    }
    Ok(value)
}
