//! rustls configurations for mutually authenticated TLS between agents.
//!
//! Both sides present their site certificate and accept only peers whose
//! certificate chains to the site CA. Clients additionally check that the
//! server is the site they meant to reach (DNS SAN = site name). Only the
//! `ring` crypto provider is used, set explicitly, so the process-wide
//! default provider does not matter.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::{ClientConfig, CommonState, RootCertStore, ServerConfig};

use crate::cert::SiteFiles;
use crate::der;

/// Everything that can go wrong loading TLS material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("Cannot read the PEM file {}", path.display())]
    Pem {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("No certificate in {}", path.display())]
    NoCertificate { path: PathBuf },
    #[error("Invalid CA certificate in {}", path.display())]
    BadCa {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("Cannot build the certificate verifier")]
    Verifier(#[source] rustls::server::VerifierBuilderError),
    #[error("Cannot build the TLS configuration")]
    Config(#[source] rustls::Error),
}

/// The TLS configurations of one site: as server and as client.
#[derive(Clone)]
pub struct PeerTls {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerTls").finish_non_exhaustive()
    }
}

impl PeerTls {
    /// Loads a site's certificate, key and CA.
    pub fn load(site: &SiteFiles) -> Result<Self, TlsError> {
        let roots = Arc::new(root_store(&site.ca)?);
        let provider = provider();
        let chain = load_certs(&site.cert)?;
        let key = load_key(&site.key)?;

        let verifier: Arc<dyn ClientCertVerifier> =
            WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .map_err(TlsError::Verifier)?;
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(TlsError::Config)?;

        let client = client_config(roots, Some((chain, key)))?;
        Ok(Self {
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }

    /// The configuration for accepting connections from other sites.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.server.clone()
    }

    /// The configuration for connecting to other sites.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.client.clone()
    }
}

/// The crypto provider of every configuration built here.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client configuration trusting `roots`, presenting `identity` (chain and
/// key) if given. Without an identity the servers of this crate refuse it.
pub fn client_config(
    roots: Arc<RootCertStore>,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<ClientConfig, TlsError> {
    let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(TlsError::Verifier)?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_webpki_verifier(verifier);
    match identity {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(TlsError::Config),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// The certificates of a PEM file (at least one).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_err = |source| TlsError::Pem {
        path: path.to_path_buf(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_err)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The private key of a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|source| TlsError::Pem {
        path: path.to_path_buf(),
        source,
    })
}

/// A root store holding the CA certificates of a PEM file.
pub fn root_store(ca: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(ca)? {
        roots.add(cert).map_err(|source| TlsError::BadCa {
            path: ca.to_path_buf(),
            source,
        })?;
    }
    Ok(roots)
}

/// The site name of the authenticated peer of a connection: the first DNS
/// SAN of its end-entity certificate, else its common name. `None` before
/// the handshake or when the peer sent no certificate.
///
/// Takes a `rustls::ServerConnection` or `ClientConnection` by deref, e.g.
/// `peer_site(tls_stream.get_ref().1)`.
pub fn peer_site(conn: &CommonState) -> Option<String> {
    let end_entity = conn.peer_certificates()?.first()?;
    let info = der::parse_cert(end_entity)?;
    info.dns_names.into_iter().next().or(info.common_name)
}
