//! What protocol does a socket get? A forked child (optionally moved into a
//! cgroup first) creates the socket and reports `SO_PROTOCOL` through a
//! pipe. The child only makes raw system calls (async-signal-safe), so
//! forking a multi-threaded process is fine.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn check(rc: libc::c_int, what: &str) -> Result<libc::c_int, String> {
    if rc < 0 {
        Err(format!("{what}: {}", std::io::Error::last_os_error()))
    } else {
        Ok(rc)
    }
}

/// `SO_PROTOCOL` of `socket(family, ty, proto)` made here, by this process.
pub fn here(family: i32, ty: i32, proto: i32) -> Result<i32, String> {
    // SAFETY: plain system calls on descriptors this function owns.
    unsafe {
        let fd = check(libc::socket(family, ty, proto), "socket")?;
        let got = protocol_of(fd);
        libc::close(fd);
        got.ok_or_else(|| "getsockopt(SO_PROTOCOL) failed".into())
    }
}

/// # Safety
/// `fd` must be an open socket.
unsafe fn protocol_of(fd: libc::c_int) -> Option<i32> {
    let mut v: libc::c_int = -1;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` are valid for writes of the sizes given.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PROTOCOL,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(v)
}

/// `SO_PROTOCOL` of `socket(family, ty, proto)` made by a child process
/// that first moved itself into `cgroup` (a cgroup v2 directory).
pub fn in_cgroup(cgroup: Option<&Path>, family: i32, ty: i32, proto: i32) -> Result<i32, String> {
    let procs = match cgroup {
        Some(dir) => {
            let p = CString::new(dir.join("cgroup.procs").as_os_str().as_bytes())
                .map_err(|e| e.to_string())?;
            // SAFETY: `p` is a valid C string.
            Some(check(
                unsafe { libc::open(p.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) },
                "open cgroup.procs",
            )?)
        }
        None => None,
    };
    let mut pipe = [0 as libc::c_int; 2];
    // SAFETY: `pipe` has room for two descriptors.
    check(unsafe { libc::pipe(pipe.as_mut_ptr()) }, "pipe")?;
    // SAFETY: the child below only makes async-signal-safe system calls and
    // ends in _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: raw system calls on valid descriptors and buffers; the
        // child never returns into Rust code.
        unsafe {
            let mut result: [i32; 1] = [-1];
            let moved = match procs {
                Some(fd) => libc::write(fd, b"0".as_ptr().cast(), 1) == 1,
                None => true,
            };
            if moved {
                let s = libc::socket(family, ty, proto);
                if s >= 0 {
                    result[0] = protocol_of(s).unwrap_or(-2);
                }
            } else {
                result[0] = -3;
            }
            libc::write(pipe[1], result.as_ptr().cast(), 4);
            libc::_exit(0);
        }
    }
    // SAFETY: closing descriptors this function opened; reading into a
    // 4-byte buffer; waiting for the child it forked.
    unsafe {
        libc::close(pipe[1]);
        if let Some(fd) = procs {
            libc::close(fd);
        }
        if pid < 0 {
            libc::close(pipe[0]);
            return Err(format!("fork: {}", std::io::Error::last_os_error()));
        }
        let mut buf = [0u8; 4];
        let n = libc::read(pipe[0], buf.as_mut_ptr().cast(), 4);
        libc::close(pipe[0]);
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
        match (n, i32::from_ne_bytes(buf)) {
            (4, -3) => Err("the child could not join the cgroup".into()),
            (4, v) if v < 0 => Err(format!("the child's socket failed ({v})")),
            (4, v) => Ok(v),
            _ => Err("no answer from the child".into()),
        }
    }
}

/// A forked child in `cgroup` listens on 127.0.0.1:`port`, accepts one
/// connection and echoes 4 bytes; this process connects with a plain TCP
/// socket (it is outside the cgroup). Returns the listener's protocol as
/// the child saw it and whether the echo came back: an MPTCP server
/// serves a TCP client.
pub fn tcp_client_to_server_in(cgroup: &Path, port: u16) -> Result<(i32, bool), String> {
    let p = CString::new(cgroup.join("cgroup.procs").as_os_str().as_bytes())
        .map_err(|e| e.to_string())?;
    // SAFETY: `p` is a valid C string.
    let procs = check(
        unsafe { libc::open(p.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) },
        "open cgroup.procs",
    )?;
    let mut pipe = [0 as libc::c_int; 2];
    // SAFETY: `pipe` has room for two descriptors.
    check(unsafe { libc::pipe(pipe.as_mut_ptr()) }, "pipe")?;
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
        },
        sin_zero: [0; 8],
    };
    let alen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: see `in_cgroup`.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: raw system calls only, then _exit.
        unsafe {
            let mut proto: [i32; 1] = [-1];
            if libc::write(procs, b"0".as_ptr().cast(), 1) == 1 {
                let l = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
                let one: libc::c_int = 1;
                libc::setsockopt(
                    l,
                    libc::SOL_SOCKET,
                    libc::SO_REUSEADDR,
                    (&one as *const libc::c_int).cast(),
                    4,
                );
                if l >= 0
                    && libc::bind(l, (&addr as *const libc::sockaddr_in).cast(), alen) == 0
                    && libc::listen(l, 1) == 0
                {
                    proto[0] = protocol_of(l).unwrap_or(-2);
                    // Listening: tell the parent, then serve one client.
                    libc::write(pipe[1], proto.as_ptr().cast(), 4);
                    let c = libc::accept(l, std::ptr::null_mut(), std::ptr::null_mut());
                    let mut buf = [0u8; 4];
                    if c >= 0 && libc::read(c, buf.as_mut_ptr().cast(), 4) == 4 {
                        libc::write(c, buf.as_ptr().cast(), 4);
                    }
                    libc::_exit(0);
                }
            }
            libc::write(pipe[1], proto.as_ptr().cast(), 4);
            libc::_exit(1);
        }
    }
    // SAFETY: descriptors and buffers owned here; waiting for our child.
    unsafe {
        libc::close(pipe[1]);
        libc::close(procs);
        if pid < 0 {
            libc::close(pipe[0]);
            return Err("fork failed".into());
        }
        let mut buf = [0u8; 4];
        let n = libc::read(pipe[0], buf.as_mut_ptr().cast(), 4);
        libc::close(pipe[0]);
        let proto = i32::from_ne_bytes(buf);
        let mut echoed = false;
        if n == 4 && proto > 0 {
            let s = libc::socket(libc::AF_INET, libc::SOCK_STREAM, libc::IPPROTO_TCP);
            if s >= 0 && libc::connect(s, (&addr as *const libc::sockaddr_in).cast(), alen) == 0 {
                let mut back = [0u8; 4];
                echoed = libc::write(s, b"ping".as_ptr().cast(), 4) == 4
                    && libc::read(s, back.as_mut_ptr().cast(), 4) == 4
                    && &back == b"ping";
            }
            libc::close(s);
        }
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
        if n != 4 || proto < 0 {
            return Err(format!("the server child failed ({proto})"));
        }
        Ok((proto, echoed))
    }
}
