//! The agent and the real MPTCP hook, in a VM whose kernel has it (Linux
//! 6.12 under QEMU): `MptcpApps all` makes the sockets of a process that
//! knows nothing of MPTCP MPTCP ones; the hook is pinned, so it stays while
//! the agent is killed and no agent runs; the next agent adopts it and
//! reports the scope; `off` removes it and its pin; a units scope without
//! systemd is refused. (The cgroup-scoped hook is checked by
//! `edgemig-mptcpify`'s own `in_vm` test, the units logic by `apps.rs`.)
//!
//! One binary, two roles (`harness = false`): run by `cargo test` it packs
//! itself and the agent into an initramfs and boots it ([`host`]); booted
//! as PID 1 it runs the checks ([`guest`]).

mod guest;
mod host;

fn main() -> std::process::ExitCode {
    if std::process::id() == 1 {
        guest::run()
    } else {
        host::run()
    }
}
