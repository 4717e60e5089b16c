//! The hook against a real kernel that has it (Linux 6.12 under QEMU): a
//! program attached with `Scope::Cgroups` turns the TCP sockets of
//! processes in a test cgroup (and below it) into MPTCP ones and leaves
//! everyone else's alone; narrowing the scope, detaching, dropping an
//! unpinned handle and detaching a pinned hook all turn them back to TCP;
//! a pinned hook outlives its handle; `Scope::All` (inside that VM only)
//! reaches every process; an MPTCP server still serves a plain TCP client.
//!
//! One binary, two roles (`harness = false`): run by `cargo test` it packs
//! itself into an initramfs and boots it ([`host`]); booted as PID 1 it
//! runs the checks ([`guest`]).

mod guest;
mod host;
mod probe;

fn main() -> std::process::ExitCode {
    if std::process::id() == 1 {
        guest::run()
    } else {
        host::run()
    }
}
