//! MPTCP for unmodified applications: a BPF `fmod_ret` program on the
//! kernel's `update_socket_protocol` hook (Linux ≥ 6.6, needs BTF) makes
//! `socket(AF_INET | AF_INET6, SOCK_STREAM, 0 | IPPROTO_TCP)` create an
//! MPTCP socket (`IPPROTO_MPTCP`, 262), as the kernel selftest `mptcpify`
//! does. MPTCP sockets fall back to plain TCP with peers that do not speak
//! it, so this breaks nobody.
//!
//! No libbpf and no clang: the BTF id of the hook comes from a minimal
//! BTF reader ([`btf`]), the program is hand-assembled ([`program`], every
//! instruction documented) and loaded with raw `bpf(2)` calls ([`sys`]), so
//! the static guest agent needs nothing but libc.
//!
//! The [`Scope`] lives in two maps the program reads on every call: every
//! process ([`Scope::All`]), or only tasks in given cgroups v2 and below
//! them ([`Scope::Cgroups`], ids from [`cgroup::cgroup_id`]). It can be
//! changed while the hook is attached.
//!
//! ```no_run
//! use edgemig_mptcpify::{Mptcpify, Scope, Support, cgroup};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! if Support::probe().is_available() {
//!     let id = cgroup::cgroup_id("/sys/fs/cgroup/system.slice/nginx.service".as_ref())?;
//!     let hook = Mptcpify::attach(&Scope::Cgroups([id].into()))?;
//!     // ... nginx's new sockets are MPTCP while `hook` lives.
//!     hook.detach()?;
//! }
//! # Ok(()) }
//! ```
//!
//! [`Mptcpify::attach_pinned`] keeps the hook in a bpffs so it outlives
//! the process (see [`hook`] for why the guest agent does that).

pub mod btf;
pub mod cgroup;
pub mod hook;
pub mod insn;
pub mod maps;
pub mod program;
pub mod support;
pub mod sys;

pub use hook::{HookError, Mptcpify, PIN_VERSION, Program};
pub use maps::{MAX_CGROUPS, MapError, Scope};
pub use program::IPPROTO_MPTCP;
pub use support::{Support, Unavailable};
