//! TAP devices via raw `TUNSETIFF` ioctls, plus moving them into network
//! namespaces and bringing them up with `ip(8)`. The fd keeps working after
//! the netdev moves; the device vanishes when the fd closes.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::Command;

/// Errors creating or configuring a TAP device.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error("invalid interface name {0:?} (1..15 bytes, no '/', ':', whitespace)")]
    BadName(String),
    #[error("open /dev/net/tun: {0}")]
    Open(#[source] io::Error),
    #[error("TUNSETIFF {name}: {source}")]
    SetIff {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("running `ip {args}`: {source}")]
    Spawn {
        args: String,
        #[source]
        source: io::Error,
    },
    #[error("`ip {args}` failed: {stderr}")]
    Ip { args: String, stderr: String },
}

/// An open TAP device (`IFF_TAP | IFF_NO_PI`, non-blocking fd).
#[derive(Debug)]
pub struct Tap {
    fd: OwnedFd,
    name: String,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() < libc::IFNAMSIZ
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0)
}

impl Tap {
    /// Creates (or attaches to) TAP device `name` in the current namespace.
    pub fn create(name: &str) -> Result<Self, TapError> {
        if !valid_name(name) {
            return Err(TapError::BadName(name.to_string()));
        }
        let path = CString::new("/dev/net/tun").map_err(|e| TapError::Open(io::Error::other(e)))?;
        // SAFETY: path is a valid NUL-terminated string; open has no other
        // preconditions.
        let raw = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_RDWR | libc::O_CLOEXEC | libc::O_NONBLOCK,
            )
        };
        if raw < 0 {
            return Err(TapError::Open(io::Error::last_os_error()));
        }
        // SAFETY: raw is a freshly opened fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: ifreq is plain old data; all-zero is a valid value.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
            *dst = src as libc::c_char;
        }
        ifr.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
        // SAFETY: fd is an open tun fd and ifr a valid, initialised ifreq
        // that outlives the call.
        let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut ifr) };
        if rc < 0 {
            return Err(TapError::SetIff {
                name: name.to_string(),
                source: io::Error::last_os_error(),
            });
        }
        Ok(Self {
            fd,
            name: name.to_string(),
        })
    }

    /// Interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads one frame (non-blocking: `WouldBlock` when none is pending).
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: buf is valid writable memory of buf.len() bytes.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// Writes one frame.
    pub fn write(&self, frame: &[u8]) -> io::Result<usize> {
        // SAFETY: frame is valid readable memory of frame.len() bytes.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// Creates TAP device `name` directly inside network namespace `netns`
    /// (a name under `/run/netns`; the current one with `None`) and sets it
    /// up there. Creating it in place, rather than moving it, means two
    /// testbeds never collide on a name in the root namespace.
    pub fn create_in(name: &str, netns: Option<&str>) -> Result<Self, TapError> {
        match netns {
            Some(ns) => {
                let tap = edgemig_netns::in_netns(ns, || Self::create(name))
                    .map_err(|e| TapError::Open(io::Error::other(e)))??;
                ip(&["-n", ns, "link", "set", name, "up"])?;
                Ok(tap)
            }
            None => {
                let tap = Self::create(name)?;
                ip(&["link", "set", name, "up"])?;
                Ok(tap)
            }
        }
    }
}

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

fn ip(args: &[&str]) -> Result<(), TapError> {
    let joined = args.join(" ");
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|source| TapError::Spawn {
            args: joined.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(TapError::Ip {
            args: joined,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::valid_name;

    #[test]
    fn names() {
        assert!(valid_name("emle-a0"));
        assert!(!valid_name(""));
        assert!(!valid_name("a/b"));
        assert!(!valid_name("0123456789abcdef"));
    }
}
