//! Just enough ELF parsing to tell whether an executable is statically
//! linked: a dynamically linked executable has a `PT_INTERP` program header
//! naming its loader (e.g. `/lib64/ld-linux-x86-64.so.2`); a static one (or
//! a static-pie, as Rust's `+crt-static` produces) has none.

use std::fmt;

const PT_INTERP: u32 = 3;
const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;
/// `e_machine` of x86_64.
pub const EM_X86_64: u16 = 62;

/// What the ELF headers say about an executable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElfInfo {
    /// 64-bit (`ELFCLASS64`).
    pub is_64: bool,
    /// `e_machine` (62 = x86_64).
    pub machine: u16,
    /// Has a `PT_INTERP` program header, i.e. is dynamically linked.
    pub has_interp: bool,
}

impl ElfInfo {
    pub fn is_static(&self) -> bool {
        !self.has_interp
    }
}

/// Why a file is not an ELF executable we can read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotElf(pub &'static str);

impl fmt::Display for NotElf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for NotElf {}

/// Parses the ELF file header and program headers of an executable.
pub fn inspect(buf: &[u8]) -> Result<ElfInfo, NotElf> {
    if buf.get(..4) != Some(b"\x7fELF") {
        return Err(NotElf("No ELF magic"));
    }
    let is_64 = match buf.get(4) {
        Some(1) => false,
        Some(2) => true,
        _ => return Err(NotElf("Unknown ELF class")),
    };
    let le = match buf.get(5) {
        Some(1) => true,
        Some(2) => false,
        _ => return Err(NotElf("Unknown ELF byte order")),
    };
    let int = |off: usize, len: usize| -> Result<u64, NotElf> {
        let b = buf
            .get(off..off + len)
            .ok_or(NotElf("Truncated ELF headers"))?;
        let mut v = 0u64;
        for i in 0..len {
            let byte = if le { b[len - 1 - i] } else { b[i] };
            v = (v << 8) | u64::from(byte);
        }
        Ok(v)
    };
    let e_type = int(16, 2)? as u16;
    if e_type != ET_EXEC && e_type != ET_DYN {
        return Err(NotElf("ELF file is not an executable"));
    }
    let machine = int(18, 2)? as u16;
    // Offsets of e_phoff, e_phentsize, e_phnum and the width of an address.
    let (phoff, phentsize, phnum, word) = if is_64 {
        (int(32, 8)?, int(54, 2)?, int(56, 2)?, 8)
    } else {
        (int(28, 4)?, int(42, 2)?, int(44, 2)?, 4)
    };
    if phnum > 0 && (phentsize as usize) < word {
        return Err(NotElf("Bad ELF program header size"));
    }
    let mut has_interp = false;
    for i in 0..phnum {
        let off = usize::try_from(phoff + i * phentsize).map_err(|_| NotElf("Bad e_phoff"))?;
        if int(off, 4)? as u32 == PT_INTERP {
            has_interp = true;
        }
    }
    Ok(ElfInfo {
        is_64,
        machine,
        has_interp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busybox_is_static() {
        let info = inspect(&std::fs::read("/bin/busybox").unwrap()).unwrap();
        assert!(info.is_64);
        assert_eq!(info.machine, EM_X86_64);
        assert!(info.is_static());
    }

    #[test]
    fn ls_is_dynamic() {
        let info = inspect(&std::fs::read("/bin/ls").unwrap()).unwrap();
        assert_eq!(info.machine, EM_X86_64);
        assert!(!info.is_static());
    }

    #[test]
    fn rejects_non_elf_and_truncated() {
        assert_eq!(inspect(b"#!/bin/sh\n"), Err(NotElf("No ELF magic")));
        assert!(inspect(b"\x7fELF\x02\x01\x01").is_err());
        let busybox = std::fs::read("/bin/busybox").unwrap();
        assert!(inspect(&busybox[..40]).is_err());
    }

    #[test]
    fn rejects_relocatable_object() {
        // A kernel module is ET_REL.
        let mut hdr = std::fs::read("/bin/busybox").unwrap();
        hdr[16] = 1;
        assert_eq!(inspect(&hdr), Err(NotElf("ELF file is not an executable")));
    }
}
