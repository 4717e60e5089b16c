//! The error type of every QMP operation.

use std::time::Duration;

/// Result alias used throughout the crate.
pub type Result<T, E = QmpError> = std::result::Result<T, E>;

/// Everything that can go wrong talking to QEMU over QMP.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// The socket could not be opened, read or written.
    #[error("QMP socket I/O error: {0}")]
    Io(#[from] std::io::Error),

    /// QEMU sent something that breaks the protocol (bad greeting, ...).
    #[error("QMP protocol error: {0}")]
    Protocol(String),

    /// A reply arrived but did not have the shape the caller asked for.
    #[error("cannot decode the reply to {command}: {source}")]
    Decode {
        command: String,
        #[source]
        source: serde_json::Error,
    },

    /// QEMU answered the command with an error object.
    #[error("QEMU refused {command}: {class}: {desc}")]
    Qemu {
        command: String,
        /// QAPI error class, e.g. `GenericError`, `CommandNotFound`,
        /// `DeviceNotFound`, `DeviceNotActive`.
        class: String,
        /// Human readable description.
        desc: String,
    },

    /// The connection is gone (QEMU exited, socket closed). Pending and
    /// later calls all get this.
    #[error("QMP connection closed")]
    ConnectionClosed,

    /// No answer (or no matching event) in time. For commands, QEMU may
    /// still execute the command later; its reply is then discarded.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout { what: String, after: Duration },
}

impl QmpError {
    /// The QAPI error class if this is an error reply from QEMU.
    pub fn qemu_class(&self) -> Option<&str> {
        match self {
            QmpError::Qemu { class, .. } => Some(class),
            _ => None,
        }
    }

    /// True when QEMU does not know the command (older/newer QEMU).
    pub fn is_command_not_found(&self) -> bool {
        self.qemu_class() == Some("CommandNotFound")
    }
}
