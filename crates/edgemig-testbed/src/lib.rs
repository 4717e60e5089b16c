//! The edge testbed: sites, WAN paths and clients as network namespaces on
//! one machine. The config format (the contract tests, benchmarks and users
//! write against), its validation, the topology plan derived from it, and
//! the lifecycle that builds and removes it with real namespaces, link
//! emulators, MPTCP settings and site agents.

pub mod agents;
pub mod config;
pub mod control;
pub mod etcd;
pub mod lifecycle;
pub mod nl;
pub mod plan;
pub mod process;
pub mod state;

pub use config::{ConfigError, DirectoryKind, TestbedConfig};
pub use edgemig_linkemu::units;
pub use lifecycle::{DownReport, TestbedError, UpOptions, down, up};
pub use plan::{Plan, plan};
pub use state::TestbedState;
