//! The `edgemigd` API: the types exchanged as JSON over HTTP/1.1 and a
//! client for the agent's local Unix socket. The routes are described in
//! `docs/api/openapi.yaml`; every path starts with [`API_PREFIX`].

pub mod client;
pub mod images;
pub mod migration;
pub mod peer;
pub mod policy;
pub mod types;

pub use client::{ApiClient, ClientError};
pub use images::{ImageImport, ImageInfo};
pub use migration::{MigrateRequest, MigrationView};
pub use policy::{PolicySpec, PolicyView};
pub use types::*;

/// Prefix of every route; bumped when a change breaks clients.
pub const API_PREFIX: &str = "/v1";

/// Default path of the agent's local API socket.
pub const DEFAULT_SOCKET: &str = "/run/edgemig/edgemigd.sock";
