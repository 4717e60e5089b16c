//! Minimal writer (and reader, for checks) of the `newc` cpio format, the
//! format the Linux kernel unpacks as an initramfs.
//!
//! Layout of one entry: a 110-byte ASCII header (`070701` + 13 fields of 8
//! hex digits), the NUL-terminated name padded to a multiple of 4 bytes
//! (counting the header), then the data padded to a multiple of 4 bytes. The
//! archive ends with an entry named `TRAILER!!!`.

use std::io::{self, Write};

/// File type bits (`st_mode & S_IFMT`).
pub const S_IFMT: u32 = 0o170000;
/// Directory.
pub const S_IFDIR: u32 = 0o040000;
/// Regular file.
pub const S_IFREG: u32 = 0o100000;
/// Symbolic link.
pub const S_IFLNK: u32 = 0o120000;
/// Character device.
pub const S_IFCHR: u32 = 0o020000;

const MAGIC: &[u8; 6] = b"070701";
const HEADER_LEN: usize = 110;
const TRAILER: &str = "TRAILER!!!";

/// Writes a `newc` archive. Entries get sequential inode numbers, uid/gid 0
/// and mtime 0 (the archive is reproducible: same inputs, same bytes).
pub struct NewcWriter<W: Write> {
    out: W,
    next_ino: u32,
    written: u64,
}

impl<W: Write> NewcWriter<W> {
    pub fn new(out: W) -> Self {
        NewcWriter {
            out,
            next_ino: 1,
            written: 0,
        }
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    /// A directory (`name` without leading `/`, e.g. `lib/modules`).
    pub fn dir(&mut self, name: &str, perm: u32) -> io::Result<()> {
        self.entry(name, S_IFDIR | (perm & 0o7777), 2, (0, 0), &[])
    }

    /// A regular file.
    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) -> io::Result<()> {
        self.entry(name, S_IFREG | (perm & 0o7777), 1, (0, 0), data)
    }

    /// A symbolic link `name -> target`.
    pub fn symlink(&mut self, name: &str, target: &str) -> io::Result<()> {
        self.entry(name, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes())
    }

    /// A character device node.
    pub fn char_dev(&mut self, name: &str, perm: u32, major: u32, minor: u32) -> io::Result<()> {
        self.entry(name, S_IFCHR | (perm & 0o7777), 1, (major, minor), &[])
    }

    /// Writes the trailer and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.header(0, 0, 1, 0, (0, 0), TRAILER)?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn entry(
        &mut self,
        name: &str,
        mode: u32,
        nlink: u32,
        rdev: (u32, u32),
        data: &[u8],
    ) -> io::Result<()> {
        if name.is_empty() || name.starts_with('/') || name.contains('\0') || name == TRAILER {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("Invalid cpio entry name {name:?}"),
            ));
        }
        let size = u32::try_from(data.len()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("Entry {name} is larger than 4 GiB"),
            )
        })?;
        let ino = self.next_ino;
        self.next_ino += 1;
        self.header(ino, mode, nlink, size, rdev, name)?;
        self.put(data)?;
        self.pad()
    }

    fn header(
        &mut self,
        ino: u32,
        mode: u32,
        nlink: u32,
        size: u32,
        rdev: (u32, u32),
        name: &str,
    ) -> io::Result<()> {
        let namesize = name.len() + 1;
        let fields: [u32; 13] = [
            ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            size,
            0, // devmajor
            0, // devminor
            rdev.0,
            rdev.1,
            namesize as u32,
            0, // check
        ];
        let mut header = Vec::with_capacity(HEADER_LEN + namesize + 3);
        header.extend_from_slice(MAGIC);
        for f in fields {
            header.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        header.extend_from_slice(name.as_bytes());
        header.push(0);
        self.put(&header)?;
        self.pad()
    }

    fn put(&mut self, buf: &[u8]) -> io::Result<()> {
        self.out.write_all(buf)?;
        self.written += buf.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let n = (4 - (self.written % 4) as usize) % 4;
        self.put(&[0u8; 3][..n])
    }
}

/// One entry read back from a `newc` archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub ino: u32,
    pub mode: u32,
    pub nlink: u32,
    pub rdev_major: u32,
    pub rdev_minor: u32,
    pub data: Vec<u8>,
}

/// Parses a `newc` archive (up to its trailer). Used to check what was
/// written.
pub fn read_newc(buf: &[u8]) -> io::Result<Vec<Entry>> {
    fn bad(msg: String) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, msg)
    }
    let align = |n: usize| n.div_ceil(4) * 4;
    let mut pos = 0;
    let mut entries = Vec::new();
    loop {
        let header = buf
            .get(pos..pos + HEADER_LEN)
            .ok_or_else(|| bad(format!("Truncated header at offset {pos}")))?;
        if &header[..6] != MAGIC {
            return Err(bad(format!("Bad magic at offset {pos}")));
        }
        let mut f = [0u32; 13];
        for (i, field) in f.iter_mut().enumerate() {
            let s = std::str::from_utf8(&header[6 + i * 8..14 + i * 8])
                .map_err(|_| bad(format!("Non-ASCII header field at offset {pos}")))?;
            *field = u32::from_str_radix(s, 16)
                .map_err(|_| bad(format!("Bad hex field {s:?} at offset {pos}")))?;
        }
        let namesize = f[11] as usize;
        let name_start = pos + HEADER_LEN;
        let name_bytes = buf
            .get(name_start..name_start + namesize)
            .ok_or_else(|| bad(format!("Truncated name at offset {pos}")))?;
        let name = std::str::from_utf8(name_bytes.strip_suffix(&[0]).unwrap_or(name_bytes))
            .map_err(|_| bad(format!("Non-UTF-8 name at offset {pos}")))?
            .to_string();
        let data_start = align(name_start + namesize);
        let size = f[6] as usize;
        let data = buf
            .get(data_start..data_start + size)
            .ok_or_else(|| bad(format!("Truncated data of {name}")))?
            .to_vec();
        pos = align(data_start + size);
        if name == TRAILER {
            return Ok(entries);
        }
        entries.push(Entry {
            name,
            ino: f[0],
            mode: f[1],
            nlink: f[4],
            rdev_major: f[9],
            rdev_minor: f[10],
            data,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut w = NewcWriter::new(Vec::new());
        w.dir("bin", 0o755).unwrap();
        w.dir("dev", 0o755).unwrap();
        w.file("bin/hello", 0o755, b"hello, world\n").unwrap();
        w.file("empty", 0o644, b"").unwrap();
        w.file("odd", 0o600, b"abc").unwrap();
        w.symlink("bin/sh", "busybox").unwrap();
        w.char_dev("dev/console", 0o600, 5, 1).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn round_trip() {
        let buf = sample();
        assert_eq!(buf.len() % 4, 0);
        let entries = read_newc(&buf).unwrap();
        let names: Vec<_> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "bin",
                "dev",
                "bin/hello",
                "empty",
                "odd",
                "bin/sh",
                "dev/console"
            ]
        );
        assert_eq!(entries[0].mode, S_IFDIR | 0o755);
        assert_eq!(entries[2].mode, S_IFREG | 0o755);
        assert_eq!(entries[2].data, b"hello, world\n");
        assert_eq!(entries[3].data, b"");
        assert_eq!(entries[4].data, b"abc");
        assert_eq!(entries[5].mode & S_IFMT, S_IFLNK);
        assert_eq!(entries[5].data, b"busybox");
        let console = &entries[6];
        assert_eq!(console.mode, S_IFCHR | 0o600);
        assert_eq!((console.rdev_major, console.rdev_minor), (5, 1));
        // Inode numbers are unique.
        let mut inos: Vec<_> = entries.iter().map(|e| e.ino).collect();
        inos.dedup();
        assert_eq!(inos.len(), entries.len());
    }

    #[test]
    fn bytes_written_matches_output() {
        let mut w = NewcWriter::new(Vec::new());
        w.file("a", 0o644, b"12345").unwrap();
        let before = w.bytes_written();
        let out = w.finish().unwrap();
        assert!(before < out.len() as u64);
        assert_eq!(before % 4, 0);
    }

    #[test]
    fn rejects_bad_names() {
        let mut w = NewcWriter::new(Vec::new());
        assert!(w.file("/abs", 0o644, b"").is_err());
        assert!(w.file("", 0o644, b"").is_err());
        assert!(w.file("TRAILER!!!", 0o644, b"").is_err());
    }

    /// The system `cpio` (GNU cpio) agrees with our idea of the format.
    #[test]
    fn system_cpio_lists_archive() {
        use std::process::{Command, Stdio};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.cpio");
        std::fs::write(&path, sample()).unwrap();
        let out = Command::new("cpio")
            .args(["-t", "-v", "--quiet", "-F"])
            .arg(&path)
            .stdin(Stdio::null())
            .output()
            .expect("run cpio (installed by scripts/setup.sh)");
        assert!(out.status.success(), "cpio -t failed: {out:?}");
        let listing = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = listing.lines().collect();
        assert_eq!(lines.len(), 7, "{listing}");
        assert!(lines[2].starts_with("-rwxr-xr-x") && lines[2].ends_with("bin/hello"));
        assert!(lines[5].starts_with("lrwxrwxrwx") && lines[5].ends_with("bin/sh -> busybox"));
        assert!(lines[6].starts_with("crw-------"), "{}", lines[6]);
        assert!(lines[6].contains("5,") && lines[6].ends_with("dev/console"));
    }
}
