//! Site directory and coordination for edgemig controllers.
//!
//! Which sites exist and how to reach their agents ([`SiteEntry`]), which
//! VM runs where, and per-VM leases so that only one controller acts on a
//! VM at a time. One interface, [`Directory`], over two backends chosen by
//! [`DirectoryConfig`]:
//!
//! - [`EmbeddedDirectory`]: JSON files under a directory shared by the
//!   agents of one machine (the testbed), `flock` + atomic renames.
//! - [`EtcdDirectory`]: an etcd v3 cluster (etcd leases and transactions).
//!
//! Using a lease: `acquire` it, `renew` it well within its TTL, and make
//! every decision through [`Directory::check_lease`] or
//! [`Directory::guarded_set_location`], which fail with
//! [`DirectoryError::LeaseLost`] once it expired or was taken over. A
//! holder whose `renew` returns `false` (or fails for longer than the TTL)
//! must stop deciding; [`Renewal`] does the renewing and tells when. When
//! the directory is unreachable, operations fail with
//! [`DirectoryError::Unavailable`]: decide nothing, leave VMs running.

mod config;
mod directory;
mod embedded;
mod error;
mod etcd;
mod model;
mod renewal;

pub use config::DirectoryConfig;
pub use directory::Directory;
pub use embedded::EmbeddedDirectory;
pub use error::DirectoryError;
pub use etcd::{DEFAULT_TIMEOUT, EtcdDirectory};
pub use model::{Lease, MAX_NAME_LEN, SiteEntry};
pub use renewal::Renewal;
