//! [`NetlinkError`]: what can go wrong in a netlink exchange.

use std::io;

/// Errors of a netlink request.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// A socket system call failed.
    #[error("Netlink socket {op} failed")]
    Io {
        /// What was attempted (`open`, `bind`, `send`, `recv`, …).
        op: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The kernel answered the request with an error.
    #[error("Kernel rejected {op}: {}{}", io::Error::from_raw_os_error(*errno),
        message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Kernel {
        /// The request, as named by the caller.
        op: &'static str,
        /// Positive errno value.
        errno: i32,
        /// The kernel's extended-ACK message, when it sent one.
        message: Option<String>,
    },
    /// A reply could not be decoded.
    #[error("Malformed netlink reply to {op}: {detail}")]
    Decode {
        /// The request, as named by the caller.
        op: &'static str,
        /// What is wrong with the reply.
        detail: String,
    },
}

impl NetlinkError {
    /// The errno of a kernel rejection, if this is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Self::Kernel { errno, .. } => Some(*errno),
            _ => None,
        }
    }

    /// The kernel's extended-ACK message, if it sent one.
    pub fn kernel_message(&self) -> Option<&str> {
        match self {
            Self::Kernel { message, .. } => message.as_deref(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_error_shows_errno_and_message() {
        let e = NetlinkError::Kernel {
            op: "set limits",
            errno: libc::EINVAL,
            message: Some("limit greater than maximum".into()),
        };
        assert_eq!(e.errno(), Some(libc::EINVAL));
        assert_eq!(e.kernel_message(), Some("limit greater than maximum"));
        let text = e.to_string();
        assert!(text.starts_with("Kernel rejected set limits: "), "{text}");
        assert!(text.ends_with(" (limit greater than maximum)"), "{text}");

        let io = NetlinkError::Io {
            op: "send",
            source: io::Error::from_raw_os_error(libc::EBADF),
        };
        assert_eq!(io.errno(), None);
        assert_eq!(io.kernel_message(), None);
        assert!(std::error::Error::source(&io).is_some());
    }
}
