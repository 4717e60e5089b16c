//! Disk writer and verifier: writes a region of seeded data (see
//! [`crate::blockgen`]; each block's content depends on its absolute
//! position) to a device, and reads it back after dropping the page cache,
//! counting mismatching 4 KiB blocks.

use crate::blockgen::{BLOCK_SIZE, fill_block};
use crate::fnv::Fnv1a64;
use edgemig_guest_proto::DiskReport;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// Bytes per I/O call (256 blocks).
const IO_CHUNK: usize = 1 << 20;
/// Bytes in a MiB.
const MIB: u64 = 1 << 20;
/// `BLKFLSBUF` ioctl number (`_IO(0x12, 97)`).
const BLKFLSBUF: libc::c_ulong = 0x1261;

/// Errors of disk writes and verifications.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// Zero MiB asked for.
    #[error("size must be at least 1 MiB")]
    ZeroSize,
    /// The device could not be opened.
    #[error("opening {device}: {source}")]
    Open {
        /// Device path.
        device: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Writing failed (for example: device smaller than asked).
    #[error("writing {device} at byte {offset}: {source}")]
    Write {
        /// Device path.
        device: String,
        /// Offset of the failed chunk.
        offset: u64,
        /// Cause.
        source: std::io::Error,
    },
    /// fsync failed.
    #[error("syncing {device}: {source}")]
    Sync {
        /// Device path.
        device: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Reading failed (for example: device smaller than asked).
    #[error("reading {device} at byte {offset}: {source}")]
    Read {
        /// Device path.
        device: String,
        /// Offset of the failed chunk.
        offset: u64,
        /// Cause.
        source: std::io::Error,
    },
}

/// A stretch of a device, in whole MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// Start, MiB from the device's start.
    pub offset_mib: u32,
    /// Length in MiB.
    pub mib: u32,
}

impl Region {
    /// `mib` MiB from `offset_mib`.
    pub fn new(offset_mib: u32, mib: u32) -> Self {
        Self { offset_mib, mib }
    }

    /// The first `mib` MiB.
    pub fn start(mib: u32) -> Self {
        Self::new(0, mib)
    }

    fn bytes(self) -> (u64, u64) {
        let start = u64::from(self.offset_mib) * MIB;
        (start, start + u64::from(self.mib) * MIB)
    }
}

/// Writes the seeded data of `region` to `device` (a block device, or a
/// file, created when missing), then fsyncs. The checksum is FNV-1a 64 of
/// the bytes written.
pub fn write(device: &str, region: Region, seed: u64) -> Result<DiskReport, DiskError> {
    if region.mib == 0 {
        return Err(DiskError::ZeroSize);
    }
    // A block device, or a file (created when missing: data on a root
    // file system).
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(device)
        .map_err(|source| DiskError::Open {
            device: device.to_string(),
            source,
        })?;
    let (mut offset, end) = region.bytes();
    seek(&mut file, device, offset)?;
    let total = end - offset;
    let mut buf = vec![0u8; IO_CHUNK];
    let mut hash = Fnv1a64::new();
    while offset < end {
        fill_chunk(seed, offset, &mut buf);
        hash.update(&buf);
        file.write_all(&buf).map_err(|source| DiskError::Write {
            device: device.to_string(),
            offset,
            source,
        })?;
        offset += IO_CHUNK as u64;
    }
    file.sync_all().map_err(|source| DiskError::Sync {
        device: device.to_string(),
        source,
    })?;
    Ok(DiskReport {
        device: device.to_string(),
        bytes: total,
        checksum: hash.finish(),
        ok: true,
        bad_blocks: 0,
    })
}

/// Reads `region` of `device` back (after dropping caches so the data
/// comes from the disk) and compares with the data derived from `seed`.
pub fn verify(device: &str, region: Region, seed: u64) -> Result<DiskReport, DiskError> {
    if region.mib == 0 {
        return Err(DiskError::ZeroSize);
    }
    let mut file = File::open(device).map_err(|source| DiskError::Open {
        device: device.to_string(),
        source,
    })?;
    drop_caches(&file);
    let (mut offset, end) = region.bytes();
    seek(&mut file, device, offset)?;
    let total = end - offset;
    let mut expected = vec![0u8; IO_CHUNK];
    let mut actual = vec![0u8; IO_CHUNK];
    let mut hash = Fnv1a64::new();
    let mut bad_blocks = 0u64;
    while offset < end {
        file.read_exact(&mut actual)
            .map_err(|source| DiskError::Read {
                device: device.to_string(),
                offset,
                source,
            })?;
        hash.update(&actual);
        fill_chunk(seed, offset, &mut expected);
        bad_blocks += expected
            .chunks_exact(BLOCK_SIZE)
            .zip(actual.chunks_exact(BLOCK_SIZE))
            .filter(|(e, a)| e != a)
            .count() as u64;
        offset += IO_CHUNK as u64;
    }
    Ok(DiskReport {
        device: device.to_string(),
        bytes: total,
        checksum: hash.finish(),
        ok: bad_blocks == 0,
        bad_blocks,
    })
}

fn seek(file: &mut File, device: &str, offset: u64) -> Result<(), DiskError> {
    use std::io::Seek;
    file.seek(std::io::SeekFrom::Start(offset))
        .map(drop)
        .map_err(|source| DiskError::Read {
            device: device.to_string(),
            offset,
            source,
        })
}

/// Fills `buf` with the blocks starting at byte `offset`.
pub fn fill_chunk(seed: u64, offset: u64, buf: &mut [u8]) {
    let first = offset / BLOCK_SIZE as u64;
    for (i, block) in buf.chunks_mut(BLOCK_SIZE).enumerate() {
        fill_block(seed, first + i as u64, block);
    }
}

/// Drops cached data of `file` so reads really hit the disk. For a block
/// device: the whole page cache (`/proc/sys/vm/drop_caches`) and the
/// device's buffer cache (`BLKFLSBUF`); for a regular file (tests) only
/// that file's pages, so the host's cache is left alone. Failures (not
/// root, unsupported) are logged and ignored.
fn drop_caches(file: &File) {
    let is_block = file
        .metadata()
        .map(|m| m.file_type().is_block_device())
        .unwrap_or(false);
    if is_block {
        if let Err(e) = std::fs::write(Path::new("/proc/sys/vm/drop_caches"), "3") {
            eprintln!("edgemig-guest: drop_caches not possible ({e}); continuing");
        }
        // SAFETY: BLKFLSBUF takes no argument; the fd is valid for the
        // lifetime of `file`, and failure is reported via the return value.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), BLKFLSBUF as _, 0) };
        if rc != 0 {
            eprintln!(
                "edgemig-guest: BLKFLSBUF failed ({}); continuing",
                std::io::Error::last_os_error()
            );
        }
    }
    // SAFETY: plain advice on a valid fd over the whole file (len 0); it
    // touches no memory of ours and reports failure via the return value.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if rc != 0 {
        eprintln!("edgemig-guest: posix_fadvise(DONTNEED) failed ({rc}); continuing");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom};

    fn device(mib: u64) -> (tempfile::NamedTempFile, String) {
        let f = tempfile::NamedTempFile::new().unwrap();
        f.as_file().set_len(mib * MIB).unwrap();
        let path = f.path().to_str().unwrap().to_string();
        (f, path)
    }

    #[test]
    fn write_then_verify_ok() {
        let (_f, path) = device(3);
        let w = write(&path, Region::start(2), 42).unwrap();
        assert!(w.ok);
        assert_eq!(w.bytes, 2 * MIB);
        let v = verify(&path, Region::start(2), 42).unwrap();
        assert!(v.ok, "{v:?}");
        assert_eq!(v.bad_blocks, 0);
        assert_eq!(v.checksum, w.checksum);
    }

    #[test]
    fn corrupt_block_is_found() {
        let (f, path) = device(2);
        let w = write(&path, Region::start(2), 7).unwrap();
        let mut file = f.reopen().unwrap();
        file.seek(SeekFrom::Start(5 * BLOCK_SIZE as u64 + 17))
            .unwrap();
        file.write_all(&[0xAA, 0x55]).unwrap();
        file.sync_all().unwrap();
        let v = verify(&path, Region::start(2), 7).unwrap();
        assert!(!v.ok);
        assert_eq!(v.bad_blocks, 1);
        assert_ne!(v.checksum, w.checksum);
    }

    #[test]
    fn regions_carry_their_absolute_blocks() {
        let (_f, path) = device(4);
        write(&path, Region::new(2, 1), 9).unwrap();
        assert!(verify(&path, Region::new(2, 1), 9).unwrap().ok);
        // Block content depends on the position: the same data elsewhere
        // does not verify.
        assert!(!verify(&path, Region::new(1, 1), 9).unwrap().ok);
        // A file made on the host with fill_chunk at that offset matches.
        let mut host = vec![0u8; IO_CHUNK];
        fill_chunk(9, 2 * MIB, &mut host);
        let mut on_disk = vec![0u8; IO_CHUNK];
        let mut file = File::open(&path).unwrap();
        file.seek(SeekFrom::Start(2 * MIB)).unwrap();
        file.read_exact(&mut on_disk).unwrap();
        assert_eq!(host, on_disk);
    }

    #[test]
    fn wrong_seed_fails() {
        let (_f, path) = device(1);
        write(&path, Region::start(1), 1).unwrap();
        let v = verify(&path, Region::start(1), 2).unwrap();
        assert!(!v.ok);
        assert_eq!(v.bad_blocks, 256);
    }

    #[test]
    fn short_device_and_missing_device_are_errors() {
        let (_f, path) = device(1);
        write(&path, Region::start(1), 1).unwrap();
        assert!(matches!(
            verify(&path, Region::start(2), 1),
            Err(DiskError::Read { .. })
        ));
        assert!(matches!(
            write("/nonexistent/dev/vdz", Region::start(1), 1),
            Err(DiskError::Open { .. })
        ));
        assert!(matches!(
            write(&path, Region::start(0), 1),
            Err(DiskError::ZeroSize)
        ));
    }
}
