//! `edgemigd`, the host agent of one edge site: it reads the site config,
//! runs VMs as supervised QEMU processes (driven over QMP), keeps their
//! definitions in an embedded store, and serves the HTTP/JSON API.

pub mod api_socket;
pub mod arp_probe;
pub mod config;
pub mod follow;
pub mod guest_channel;
pub mod host;
pub mod http;
pub mod images;
pub mod manager;
pub mod metrics;
pub mod migration;
pub mod netdev;
pub mod qemu;
pub mod server;
pub mod store;
pub mod vm;

pub use config::SiteConfig;
pub use server::run;
