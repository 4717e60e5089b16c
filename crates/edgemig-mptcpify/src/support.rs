//! Whether this kernel can run the mptcpify hook, and if not, why:
//! [`Support::probe`] reads the BTF, finds the function and loads the
//! program (the verifier's verdict is the only reliable test), without
//! attaching it.

use std::path::Path;

use crate::btf;
use crate::hook::{HookError, Program};

/// Why the hook cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unavailable {
    /// No `/sys/kernel/btf/vmlinux` (kernel built without
    /// `CONFIG_DEBUG_INFO_BTF`).
    NoBtf,
    /// No `update_socket_protocol` (Linux before 6.6), or not with the
    /// expected signature.
    NoHook,
    /// The caller may not load tracing programs (needs `CAP_BPF` and
    /// `CAP_PERFMON`, or `CAP_SYS_ADMIN`).
    NoPermission,
    /// Anything else (the text says what; a verifier refusal includes its
    /// log).
    Failed(String),
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoBtf => write!(f, "the kernel has no BTF ({} is missing)", btf::VMLINUX),
            Self::NoHook => write!(
                f,
                "the kernel has no update_socket_protocol hook (Linux 6.6 or later is needed)"
            ),
            Self::NoPermission => write!(f, "no permission to load BPF tracing programs"),
            Self::Failed(why) => write!(f, "{why}"),
        }
    }
}

/// The outcome of a probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Support {
    /// The program loads: [`crate::Mptcpify::attach`] will work.
    Available,
    /// It cannot be used, and why.
    Unavailable(Unavailable),
}

impl Support {
    /// Probes the running kernel.
    pub fn probe() -> Self {
        Self::probe_with_btf(Path::new(btf::VMLINUX))
    }

    /// Probes with the kernel BTF read from `btf_path`.
    pub fn probe_with_btf(btf_path: &Path) -> Self {
        if !btf_path.exists() {
            return Self::Unavailable(Unavailable::NoBtf);
        }
        match Program::load_with_btf(btf_path) {
            Ok(_) => Self::Available,
            Err(e) => Self::Unavailable(classify(&e)),
        }
    }

    /// Whether the hook can be used.
    pub fn is_available(&self) -> bool {
        matches!(self, Self::Available)
    }
}

/// The reason behind a load failure.
fn classify(e: &HookError) -> Unavailable {
    match e {
        HookError::NoHook | HookError::BadSignature(_) => Unavailable::NoHook,
        _ if e.errno() == Some(libc::EPERM) => Unavailable::NoPermission,
        other => Unavailable::Failed(chain(other)),
    }
}

/// An error and its causes, `: `-separated.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_btf_and_missing_function_have_their_reasons() {
        let dir = std::env::temp_dir().join(format!("emmptcpify-{}", std::process::id()));
        assert_eq!(
            Support::probe_with_btf(&dir.join("vmlinux")),
            Support::Unavailable(Unavailable::NoBtf)
        );
        // A valid BTF without the function: the 6.1 kernel's case.
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("vmlinux");
        let mut blob = Vec::new();
        blob.extend_from_slice(&0xeb9fu16.to_le_bytes());
        blob.extend_from_slice(&[1, 0]);
        for v in [24u32, 0, 0, 0, 1] {
            blob.extend_from_slice(&v.to_le_bytes());
        }
        blob.push(0);
        std::fs::write(&path, &blob).unwrap();
        let got = Support::probe_with_btf(&path);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(got, Support::Unavailable(Unavailable::NoHook));
        assert!(Unavailable::NoHook.to_string().contains("6.6"));
    }

    /// The reasons behind load failures. (Whether a kernel with the hook
    /// really loads the program is checked in a VM: tests/in_vm.)
    #[test]
    fn load_failures_are_classified() {
        let eperm = || std::io::Error::from_raw_os_error(libc::EPERM);
        assert_eq!(classify(&HookError::NoHook), Unavailable::NoHook);
        assert_eq!(classify(&HookError::BadSignature(2)), Unavailable::NoHook);
        let denied = HookError::Verifier {
            log: String::new(),
            source: eperm(),
        };
        assert_eq!(classify(&denied), Unavailable::NoPermission);
        let refused = HookError::Verifier {
            log: "0: (95) exit\nR0 !read_ok".into(),
            source: std::io::Error::from_raw_os_error(libc::EACCES),
        };
        match classify(&refused) {
            Unavailable::Failed(why) => assert!(why.contains("R0 !read_ok"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            classify(&HookError::Attach(eperm())),
            Unavailable::NoPermission
        );
    }
}
