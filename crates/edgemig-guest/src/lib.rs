//! `edgemig-guest`: the agent that runs inside an edgemig VM, plus the
//! MPTCP echo/bulk service and the client that measures it from outside.
//!
//! Everything is synchronous (std threads) so the binary stays small and
//! links statically for a busybox initramfs.

pub mod agent;
pub mod apps;
pub mod ballast;
pub mod blockgen;
pub mod client;
pub mod disk;
pub mod fnv;
pub mod handler;
pub mod info;
pub mod mempattern;
pub mod memwriter;
pub mod net;
pub mod notify;
pub mod port;
pub mod restore;
pub mod service;
pub mod sockets;
pub mod state;
pub mod stats;
pub mod sysctl;
