//! Site certificates and mutually authenticated TLS between edgemig agents.
//!
//! - [`create_ca`], [`create_site_cert`], [`create_testbed_pki`]: PEM files
//!   for a site CA and one certificate per site (DNS SAN = site name).
//! - [`write_qemu_creds`]: the same material laid out for QEMU's
//!   `tls-creds-x509`.
//! - [`PeerTls`]: rustls server and client configurations requiring a peer
//!   certificate chained to the CA; [`peer_site`] names the peer.
//! - [`serve`] / [`PeerClient`]: HTTP/1.1 between agents over MPTCP + TLS,
//!   with the [`PeerSite`] extension and the protocol version header.
//!
//! See `docs/certificates.md`.

mod cert;
mod client;
mod connection;
mod der;
mod files;
mod net;
mod protocol;
mod qemu;
mod server;
mod testbed;
mod tls;

pub use cert::{
    CA_CERT, CA_DAYS, CA_KEY, CaFiles, CertError, DEFAULT_SITE_DAYS, SITE_CERT, SITE_KEY,
    SiteFiles, Validity, create_ca, create_ca_with, create_site_cert, create_site_cert_with,
};
pub use client::{PeerClient, PeerError};
pub use connection::PeerConnection;
pub use files::FileError;
pub use net::{is_mptcp, mptcp_connect, mptcp_listener};
pub use protocol::{ErrorBody, PROTOCOL_HEADER, PROTOCOL_VERSION, major_version};
pub use qemu::{
    QEMU_CA_CERT, QEMU_CLIENT_CERT, QEMU_CLIENT_KEY, QEMU_SERVER_CERT, QEMU_SERVER_KEY,
    QemuCredsError, write_qemu_creds,
};
pub use server::{PeerLocal, PeerSite, require_protocol, serve};
pub use testbed::{TESTBED_CA_NAME, create_testbed_pki};
pub use tls::{
    PeerTls, TlsError, client_config, load_certs, load_key, peer_site, provider, root_store,
};

/// rustls, re-exported so callers use the same version.
pub use rustls;
