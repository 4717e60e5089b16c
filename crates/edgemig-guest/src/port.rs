//! Finding and opening the agent's virtio-serial port. There is no udev in
//! the guest: the port is found by scanning `/sys/class/virtio-ports/*/name`
//! for [`PORT_NAME`](edgemig_guest_proto::PORT_NAME) and opening
//! `/dev/<vportXpY>` (creating the node from `dev` if devtmpfs did not),
//! falling back to `/dev/virtio-ports/<name>`. A Unix socket path may be
//! given instead (tests, host-side debugging).

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// Errors finding or opening the port.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// No port with that name exists (yet).
    #[error("no virtio-serial port named {0:?}")]
    NotFound(String),
    /// Opening the port failed.
    #[error("opening {path}: {source}")]
    Open {
        /// Path.
        path: String,
        /// Cause.
        source: io::Error,
    },
    /// A sysfs `dev` file did not hold `major:minor`.
    #[error("bad device number {0:?}")]
    BadDevNumber(String),
    /// Creating the device node failed.
    #[error("mknod {path}: {source}")]
    Mknod {
        /// Path.
        path: String,
        /// Cause.
        source: io::Error,
    },
}

/// Whether the opened port is a device (virtio-serial, pty, fifo, file) or
/// a Unix socket (which must be reconnected after EOF).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortKind {
    /// A character device or other file.
    Device,
    /// A connected Unix stream socket.
    Socket,
}

/// The two halves of an opened port.
pub struct OpenPort {
    /// What was opened.
    pub kind: PortKind,
    /// Reading half.
    pub reader: Box<dyn Read + Send>,
    /// Writing half.
    pub writer: Box<dyn Write + Send>,
}

/// Parses a sysfs `dev` file ("252:1").
pub fn parse_dev_number(text: &str) -> Result<(u32, u32), PortError> {
    let bad = || PortError::BadDevNumber(text.trim().to_string());
    let (major, minor) = text.trim().split_once(':').ok_or_else(bad)?;
    Ok((
        major.parse().map_err(|_| bad())?,
        minor.parse().map_err(|_| bad())?,
    ))
}

/// Creates the character device node `path` for `major:minor`.
fn mknod_char(path: &Path, major: u32, minor: u32) -> Result<(), PortError> {
    let err = |source| PortError::Mknod {
        path: path.display().to_string(),
        source,
    };
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| err(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
    let dev = libc::makedev(major, minor);
    // SAFETY: `c_path` is a valid NUL-terminated string that outlives the
    // call; mknod only reads it and reports failure through its return value.
    let rc = unsafe { libc::mknod(c_path.as_ptr(), libc::S_IFCHR | 0o600, dev) };
    if rc != 0 {
        return Err(err(io::Error::last_os_error()));
    }
    Ok(())
}

/// Finds the port called `name`: scans `sys_dir` (normally
/// `/sys/class/virtio-ports`) and returns `dev_dir/<vportXpY>`, creating the
/// node if missing; else `dev_dir/virtio-ports/<name>` if it exists.
pub fn find_port(sys_dir: &Path, dev_dir: &Path, name: &str) -> Result<PathBuf, PortError> {
    if let Ok(entries) = std::fs::read_dir(sys_dir) {
        for entry in entries.flatten() {
            let dir = entry.path();
            let Ok(found) = std::fs::read_to_string(dir.join("name")) else {
                continue;
            };
            if found.trim() != name {
                continue;
            }
            let node = dev_dir.join(entry.file_name());
            if node.exists() {
                return Ok(node);
            }
            if let Ok(dev) = std::fs::read_to_string(dir.join("dev")) {
                let (major, minor) = parse_dev_number(&dev)?;
                match mknod_char(&node, major, minor) {
                    Ok(()) => return Ok(node),
                    Err(e) => eprintln!("edgemig-guest: {e}"),
                }
            }
        }
    }
    let by_name = dev_dir.join("virtio-ports").join(name);
    if by_name.exists() {
        return Ok(by_name);
    }
    Err(PortError::NotFound(name.to_string()))
}

/// Opens `path` for reading and writing: a Unix socket is connected, any
/// other file opened read-write.
pub fn open(path: &Path) -> Result<OpenPort, PortError> {
    let err = |source| PortError::Open {
        path: path.display().to_string(),
        source,
    };
    let is_socket = std::fs::metadata(path)
        .map(|m| m.file_type().is_socket())
        .unwrap_or(false);
    if is_socket {
        let stream = UnixStream::connect(path).map_err(err)?;
        let writer = stream.try_clone().map_err(err)?;
        return Ok(OpenPort {
            kind: PortKind::Socket,
            reader: Box::new(stream),
            writer: Box::new(writer),
        });
    }
    let file: File = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(err)?;
    let writer = file.try_clone().map_err(err)?;
    Ok(OpenPort {
        kind: PortKind::Device,
        reader: Box::new(file),
        writer: Box::new(writer),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_port_by_sysfs_name() {
        let root = tempfile::tempdir().unwrap();
        let sys = root.path().join("sys");
        let dev = root.path().join("dev");
        for (port, name) in [
            ("vport0p0", "org.qemu.guest_agent.0"),
            ("vport0p1", "org.edgemig.agent"),
        ] {
            std::fs::create_dir_all(sys.join(port)).unwrap();
            std::fs::write(sys.join(port).join("name"), format!("{name}\n")).unwrap();
        }
        std::fs::create_dir_all(&dev).unwrap();
        std::fs::write(dev.join("vport0p1"), "").unwrap();
        let p = find_port(&sys, &dev, "org.edgemig.agent").unwrap();
        assert_eq!(p, dev.join("vport0p1"));
        assert!(matches!(
            find_port(&sys, &dev, "nope"),
            Err(PortError::NotFound(_))
        ));
    }

    #[test]
    fn falls_back_to_virtio_ports_dir() {
        let root = tempfile::tempdir().unwrap();
        let dev = root.path().join("dev");
        std::fs::create_dir_all(dev.join("virtio-ports")).unwrap();
        std::fs::write(dev.join("virtio-ports").join("org.edgemig.agent"), "").unwrap();
        let p = find_port(&root.path().join("nosys"), &dev, "org.edgemig.agent").unwrap();
        assert_eq!(p, dev.join("virtio-ports").join("org.edgemig.agent"));
    }

    #[test]
    fn parses_dev_numbers() {
        assert_eq!(parse_dev_number("252:1\n").unwrap(), (252, 1));
        assert!(parse_dev_number("252").is_err());
        assert!(parse_dev_number("a:b").is_err());
    }

    #[test]
    fn opens_unix_socket_and_file() {
        let root = tempfile::tempdir().unwrap();
        let sock = root.path().join("agent.sock");
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let port = open(&sock).unwrap();
        assert_eq!(port.kind, PortKind::Socket);
        drop(listener);
        let file = root.path().join("f");
        std::fs::write(&file, "").unwrap();
        assert_eq!(open(&file).unwrap().kind, PortKind::Device);
        assert!(open(&root.path().join("missing")).is_err());
    }
}
