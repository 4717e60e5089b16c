//! TAP devices opened by the agent for a QEMU that runs unprivileged: the
//! agent creates each device (`TUNSETIFF` on `/dev/net/tun`, with the
//! virtio-net header) and hands the open descriptor to QEMU (`-netdev
//! tap,fd=N`). The device lives as long as an open descriptor does, so it
//! vanishes with QEMU.

use std::fs::OpenOptions;
use std::os::fd::{AsRawFd, OwnedFd};

/// Errors opening a TAP device.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// The name does not fit an interface name.
    #[error("Invalid TAP name {0:?}")]
    Name(String),
    /// `/dev/net/tun` could not be opened or configured.
    #[error("Cannot create TAP device {name}")]
    Create {
        /// Device name.
        name: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;
/// `_IOW('T', 202, int)`.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;

#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Creates TAP device `name` (or opens it, if it exists and is free) and
/// returns its descriptor.
pub fn open(name: &str) -> Result<OwnedFd, TapError> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(TapError::Name(name.to_string()));
    }
    let fail = |source| TapError::Create {
        name: name.to_string(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .map_err(fail)?;
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: IFF_TAP | IFF_NO_PI | IFF_VNET_HDR,
        _pad: [0; 22],
    };
    for (dst, src) in req.name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: TUNSETIFF reads and writes a `struct ifreq`, which `IfReq`
    // lays out (name, then the flags union member, padded to its size);
    // `req` lives across the call.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, &mut req) };
    if rc < 0 {
        return Err(fail(std::io::Error::last_os_error()));
    }
    Ok(OwnedFd::from(file))
}
