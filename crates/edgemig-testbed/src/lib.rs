//! The edge testbed: sites, WAN paths and clients as network namespaces on
//! one machine. This crate holds the config format (the contract tests,
//! benchmarks and users write against), its validation, and the topology
//! plan derived from it without I/O.

pub mod config;
pub mod plan;
pub mod units;

pub use config::{ConfigError, TestbedConfig};
pub use plan::{Plan, plan};
