//! Live migration between sites. The decisions (phases, the fence around
//! the commit, recovery) live without I/O in `edgemig-migration`; this
//! module does them with QEMU, the peer API and the store. Where each step
//! lives (forward action and rollback, source and destination side by
//! side; `docs/migration.md` has the whole protocol):
//!
//! | step | file |
//! |---|---|
//! | prepare (destination checks, incoming QEMU, exports) | `steps/prepare.rs` |
//! | disks (mirrors; the verified hand-over) | `steps/disk.rs` |
//! | memory (stream until QEMU pauses before its final pass) | `steps/memory.rs` |
//! | switchover (last state, the fenced commit / abort) | `steps/switchover.rs` |
//! | network (tunnel, NIC plan, handoff, tunnel close) | `steps/network.rs` |
//!
//! `source.rs` drives the steps at the source; `destination.rs` holds the
//! destination's record, authorization and abort; `jobs.rs` is the
//! persisted record; `recovery.rs` applies the recovery table after a
//! restart; `context.rs` is what every source step works with.

pub mod context;
pub mod destination;
pub mod id;
pub mod jobs;
pub mod path_meter;
pub mod qmp_steps;
pub mod recovery;
pub mod registry;
pub mod source;
pub mod steps;
