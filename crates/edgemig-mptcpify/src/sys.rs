//! The `bpf(2)` commands this crate uses, with the `union bpf_attr` layouts
//! of `include/uapi/linux/bpf.h` written out as `#[repr(C)]` structs:
//! map create / update / delete / next key / lookup, program load (with
//! the verifier log), link create, object pin and get.

use std::ffi::CString;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;

// Commands.
const BPF_MAP_CREATE: u32 = 0;
const BPF_MAP_LOOKUP_ELEM: u32 = 1;
const BPF_MAP_UPDATE_ELEM: u32 = 2;
const BPF_MAP_DELETE_ELEM: u32 = 3;
const BPF_MAP_GET_NEXT_KEY: u32 = 4;
const BPF_PROG_LOAD: u32 = 5;
const BPF_OBJ_PIN: u32 = 6;
const BPF_OBJ_GET: u32 = 7;
const BPF_LINK_CREATE: u32 = 28;

/// `BPF_MAP_TYPE_HASH`.
pub const MAP_HASH: u32 = 1;
/// `BPF_MAP_TYPE_ARRAY`.
pub const MAP_ARRAY: u32 = 2;
/// `BPF_PROG_TYPE_TRACING`.
pub const PROG_TRACING: u32 = 26;
/// `BPF_MODIFY_RETURN` (`fmod_ret`).
pub const ATTACH_MODIFY_RETURN: u32 = 26;
/// `BPF_ANY`: create or update.
pub const UPDATE_ANY: u64 = 0;

/// `union bpf_attr` for `BPF_MAP_CREATE` (up to `map_name`).
#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

/// `union bpf_attr` for the `BPF_MAP_*_ELEM` and `BPF_MAP_GET_NEXT_KEY`
/// commands (`value` is `next_key` for the latter).
#[repr(C)]
#[derive(Default)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// `union bpf_attr` for `BPF_PROG_LOAD` (up to `log_true_size`).
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
    prog_btf_fd: u32,
    func_info_rec_size: u32,
    func_info: u64,
    func_info_cnt: u32,
    line_info_rec_size: u32,
    line_info: u64,
    line_info_cnt: u32,
    attach_btf_id: u32,
    attach_prog_fd: u32,
    core_relo_cnt: u32,
    fd_array: u64,
    core_relos: u64,
    core_relo_rec_size: u32,
    log_true_size: u32,
}

const _: () = assert!(size_of::<ProgLoadAttr>() == 144);
const _: () = assert!(std::mem::offset_of!(ProgLoadAttr, attach_btf_id) == 108);

/// `union bpf_attr` for `BPF_LINK_CREATE` (the tracing variant: target
/// BTF id 0 means "the program's own `attach_btf_id`").
#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_fd: u32,
    attach_type: u32,
    flags: u32,
    target_btf_id: u32,
    _pad: u32,
    cookie: u64,
}

/// `union bpf_attr` for `BPF_OBJ_PIN` / `BPF_OBJ_GET`.
#[repr(C)]
#[derive(Default)]
struct ObjAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
}

/// Runs `bpf(cmd, attr, sizeof attr)`.
fn bpf<T>(cmd: u32, attr: &mut T) -> io::Result<i64> {
    // SAFETY: `attr` is a live, exclusively borrowed #[repr(C)] struct of
    // the layout the kernel expects for `cmd`, and the size passed is its
    // size; every pointer inside it was set by the caller to memory that
    // outlives this call. The kernel reports failure through the return
    // value and errno.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            size_of::<T>() as u32,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Takes ownership of a file descriptor the kernel returned.
fn owned(fd: i64) -> io::Result<OwnedFd> {
    let fd = i32::try_from(fd).map_err(|_| io::Error::other("file descriptor out of range"))?;
    // SAFETY: `fd` was just returned by bpf(2) as a new descriptor that
    // nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn name16(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (o, b) in out.iter_mut().zip(name.bytes().take(15)) {
        *o = b;
    }
    out
}

/// Creates a map.
pub fn map_create(
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    name: &str,
) -> io::Result<OwnedFd> {
    let mut attr = MapCreateAttr {
        map_type,
        key_size,
        value_size,
        max_entries,
        map_name: name16(name),
        ..MapCreateAttr::default()
    };
    owned(bpf(BPF_MAP_CREATE, &mut attr)?)
}

/// Sets `key` to `value` in map `fd`.
pub fn map_update(fd: i32, key: &[u8], value: &[u8], flags: u64) -> io::Result<()> {
    let mut attr = ElemAttr {
        map_fd: fd as u32,
        key: key.as_ptr() as u64,
        value: value.as_ptr() as u64,
        flags,
        ..ElemAttr::default()
    };
    bpf(BPF_MAP_UPDATE_ELEM, &mut attr).map(drop)
}

/// Deletes `key` from map `fd`; `ENOENT` when absent.
pub fn map_delete(fd: i32, key: &[u8]) -> io::Result<()> {
    let mut attr = ElemAttr {
        map_fd: fd as u32,
        key: key.as_ptr() as u64,
        ..ElemAttr::default()
    };
    bpf(BPF_MAP_DELETE_ELEM, &mut attr).map(drop)
}

/// Reads `key` of map `fd` into `value`; `ENOENT` when absent.
pub fn map_lookup(fd: i32, key: &[u8], value: &mut [u8]) -> io::Result<()> {
    let mut attr = ElemAttr {
        map_fd: fd as u32,
        key: key.as_ptr() as u64,
        value: value.as_mut_ptr() as u64,
        ..ElemAttr::default()
    };
    bpf(BPF_MAP_LOOKUP_ELEM, &mut attr).map(drop)
}

/// Writes the key after `key` (the first key when `None`) into `next`;
/// `Ok(false)` at the end of the map.
pub fn map_next_key(fd: i32, key: Option<&[u8]>, next: &mut [u8]) -> io::Result<bool> {
    let mut attr = ElemAttr {
        map_fd: fd as u32,
        key: key.map_or(0, |k| k.as_ptr() as u64),
        value: next.as_mut_ptr() as u64,
        ..ElemAttr::default()
    };
    match bpf(BPF_MAP_GET_NEXT_KEY, &mut attr) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// What [`prog_load`] loads.
pub struct ProgLoad<'a> {
    /// Program type.
    pub prog_type: u32,
    /// Expected attach type.
    pub expected_attach_type: u32,
    /// BTF id of the kernel function to attach to.
    pub attach_btf_id: u32,
    /// Encoded instructions.
    pub insns: &'a [u8],
    /// License (tracing programs need a GPL-compatible one).
    pub license: &'a str,
    /// Program name (at most 15 bytes are kept).
    pub name: &'a str,
}

/// A failed program load: the errno and the verifier's log.
#[derive(Debug)]
pub struct LoadFailure {
    /// The error of the load.
    pub error: io::Error,
    /// The verifier log of a second load with logging on (empty when the
    /// kernel wrote none).
    pub log: String,
}

/// Size of the verifier log buffer on the logged retry.
const LOG_SIZE: usize = 1 << 20;

fn load_once(p: &ProgLoad<'_>, log: Option<&mut Vec<u8>>) -> io::Result<OwnedFd> {
    let license = CString::new(p.license).map_err(io::Error::other)?;
    let mut attr = ProgLoadAttr {
        prog_type: p.prog_type,
        insn_cnt: (p.insns.len() / 8) as u32,
        insns: p.insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name: name16(p.name),
        expected_attach_type: p.expected_attach_type,
        attach_btf_id: p.attach_btf_id,
        ..ProgLoadAttr::default()
    };
    if let Some(buf) = log {
        attr.log_level = 1;
        attr.log_size = buf.len() as u32;
        attr.log_buf = buf.as_mut_ptr() as u64;
    }
    owned(bpf(BPF_PROG_LOAD, &mut attr)?)
}

/// Loads a program. On failure it loads once more with the verifier log
/// on (as libbpf does) and returns that log with the error.
pub fn prog_load(p: &ProgLoad<'_>) -> Result<OwnedFd, LoadFailure> {
    match load_once(p, None) {
        Ok(fd) => Ok(fd),
        Err(error) => {
            let mut buf = vec![0u8; LOG_SIZE];
            let log = match load_once(p, Some(&mut buf)) {
                // Loaded with logging on (a transient failure): keep it.
                Ok(fd) => return Ok(fd),
                Err(_) => {
                    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
                    String::from_utf8_lossy(&buf[..end]).trim().to_string()
                }
            };
            Err(LoadFailure { error, log })
        }
    }
}

/// Attaches a tracing program to its `attach_btf_id` (`BPF_LINK_CREATE`);
/// the link lives as long as its descriptor (or a pin).
pub fn link_create(prog_fd: i32, attach_type: u32) -> io::Result<OwnedFd> {
    let mut attr = LinkCreateAttr {
        prog_fd: prog_fd as u32,
        attach_type,
        ..LinkCreateAttr::default()
    };
    owned(bpf(BPF_LINK_CREATE, &mut attr)?)
}

fn c_path(path: &Path) -> io::Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)
}

/// Pins object `fd` at `path` (on a bpffs).
pub fn obj_pin(fd: i32, path: &Path) -> io::Result<()> {
    let p = c_path(path)?;
    let mut attr = ObjAttr {
        pathname: p.as_ptr() as u64,
        bpf_fd: fd as u32,
        ..ObjAttr::default()
    };
    bpf(BPF_OBJ_PIN, &mut attr).map(drop)
}

/// Opens the object pinned at `path`.
pub fn obj_get(path: &Path) -> io::Result<OwnedFd> {
    let p = c_path(path)?;
    let mut attr = ObjAttr {
        pathname: p.as_ptr() as u64,
        ..ObjAttr::default()
    };
    owned(bpf(BPF_OBJ_GET, &mut attr)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn is_root() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    #[test]
    fn hash_map_round_trip() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let map = map_create(MAP_HASH, 8, 1, 4, "em_test").unwrap();
        let fd = map.as_raw_fd();
        let mut next = [0u8; 8];
        assert!(!map_next_key(fd, None, &mut next).unwrap());
        for k in [5u64, 9] {
            map_update(fd, &k.to_le_bytes(), &[1], UPDATE_ANY).unwrap();
        }
        let mut keys = Vec::new();
        let mut cur: Option<[u8; 8]> = None;
        while map_next_key(fd, cur.as_ref().map(|c| &c[..]), &mut next).unwrap() {
            keys.push(u64::from_le_bytes(next));
            cur = Some(next);
        }
        keys.sort();
        assert_eq!(keys, [5, 9]);
        let mut v = [0u8; 1];
        map_lookup(fd, &5u64.to_le_bytes(), &mut v).unwrap();
        assert_eq!(v, [1]);
        map_delete(fd, &5u64.to_le_bytes()).unwrap();
        let gone = map_lookup(fd, &5u64.to_le_bytes(), &mut v).unwrap_err();
        assert_eq!(gone.raw_os_error(), Some(libc::ENOENT));
        let gone = map_delete(fd, &5u64.to_le_bytes()).unwrap_err();
        assert_eq!(gone.raw_os_error(), Some(libc::ENOENT));
    }

    #[test]
    fn a_rejected_program_comes_back_with_the_verifier_log() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        // `exit` without setting r0: "R0 !read_ok".
        let insns = [0x95u8, 0, 0, 0, 0, 0, 0, 0];
        let err = prog_load(&ProgLoad {
            prog_type: 1, // BPF_PROG_TYPE_SOCKET_FILTER
            expected_attach_type: 0,
            attach_btf_id: 0,
            insns: &insns,
            license: "GPL",
            name: "em_bad",
        })
        .unwrap_err();
        assert_eq!(err.error.raw_os_error(), Some(libc::EACCES), "{err:?}");
        assert!(err.log.contains("R0"), "{}", err.log);
    }
}
