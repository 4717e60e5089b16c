//! Running QEMU: checking the binary, building its command line, starting
//! and ending the process.

mod binary;
mod cmdline;
mod process;
pub mod spawn;
pub mod tap;

pub use binary::{MIN_MAJOR, QemuBinaryError, QemuVersion, check_binary};
pub use cmdline::{BootMedia, VmFiles, VmLaunch, build_args, nic_id};
pub use process::{LaunchError, kill, running_from_pidfile, wait_gone};
