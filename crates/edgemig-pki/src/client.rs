//! HTTP/1.1 requests to another site's agent over mutually authenticated TLS.
//!
//! Each request opens a fresh MPTCP connection, so a client holds no state
//! that a broken path could spoil; [`crate::PeerConnection`] keeps one open
//! for a request that must not wait for handshakes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_rustls::TlsConnector;

use crate::net::mptcp_connect;
use crate::protocol::{ErrorBody, PROTOCOL_HEADER, PROTOCOL_VERSION};
use crate::tls::PeerTls;

/// How long closing a finished connection may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest error text kept from a non-JSON error answer.
const MAX_ERROR_TEXT: usize = 512;

/// Everything that can go wrong asking another site.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("Site name {0:?} is not a valid DNS name")]
    InvalidSiteName(String),
    #[error("Cannot connect to {addr}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS handshake with {site} failed")]
    Handshake {
        site: String,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP exchange with {site} failed")]
    Http {
        site: String,
        #[source]
        source: hyper::Error,
    },
    #[error("Invalid request")]
    Request(#[source] hyper::http::Error),
    #[error("No answer from {site} within {timeout:?}")]
    Timeout { site: String, timeout: Duration },
    #[error("Cannot encode the request body")]
    Encode(#[source] serde_json::Error),
    #[error("Cannot decode the answer of {site}")]
    Decode {
        site: String,
        #[source]
        source: serde_json::Error,
    },
    /// A non-2xx answer. Answers without a JSON error body get the code
    /// `http_error` and their text as message.
    #[error("{message} (HTTP {status}, {code})")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
}

/// A client of one peer site's agent.
#[derive(Clone)]
pub struct PeerClient {
    connector: TlsConnector,
    addr: SocketAddr,
    site: String,
    server_name: ServerName<'static>,
}

impl std::fmt::Debug for PeerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerClient")
            .field("addr", &self.addr)
            .field("site", &self.site)
            .finish_non_exhaustive()
    }
}

impl PeerClient {
    /// A client of the agent of `peer_site` at `addr`; the server must
    /// present a certificate for `peer_site` chained to our CA.
    pub fn new(tls: &PeerTls, addr: SocketAddr, peer_site: &str) -> Result<Self, PeerError> {
        Self::with_config(tls.client_config(), addr, peer_site)
    }

    /// Like [`PeerClient::new`] with an explicit rustls configuration.
    pub fn with_config(
        config: Arc<ClientConfig>,
        addr: SocketAddr,
        peer_site: &str,
    ) -> Result<Self, PeerError> {
        let server_name = match ServerName::try_from(peer_site.to_owned()) {
            Ok(name @ ServerName::DnsName(_)) => name,
            _ => return Err(PeerError::InvalidSiteName(peer_site.to_owned())),
        };
        Ok(Self {
            connector: TlsConnector::from(config),
            addr,
            site: peer_site.to_owned(),
            server_name,
        })
    }

    /// The peer's site name.
    pub fn site(&self) -> &str {
        &self.site
    }

    /// Sends `body` as JSON (if any) and decodes a JSON answer; non-2xx
    /// answers become [`PeerError::Api`]. An empty answer decodes as `null`.
    pub async fn request_json<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        timeout: Duration,
    ) -> Result<T, PeerError> {
        let request = json_request(method, path, body)?;
        let response = self.send(request, timeout).await?;
        decode_json(&self.site, response)
    }

    /// Streams `body` (of `content_type`) and decodes a JSON answer, like
    /// [`PeerClient::request_json`]. `timeout` bounds the whole exchange,
    /// upload included; a body that fails ends the request with an error.
    pub async fn request_body<B, T>(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: B,
        timeout: Duration,
    ) -> Result<T, PeerError>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        T: DeserializeOwned,
    {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(PROTOCOL_HEADER, PROTOCOL_VERSION.to_string())
            .header(CONTENT_TYPE, content_type)
            .body(body)
            .map_err(PeerError::Request)?;
        let response = self.send(request, timeout).await?;
        decode_json(&self.site, response)
    }

    /// Sends `request` as it is (no protocol header is added) over a fresh
    /// connection and returns the whole answer, whatever its status.
    pub async fn send<B>(
        &self,
        mut request: Request<B>,
        timeout: Duration,
    ) -> Result<Response<Bytes>, PeerError>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.host_header(&mut request);
        tokio::time::timeout(timeout, self.exchange(request))
            .await
            .map_err(|_| PeerError::Timeout {
                site: self.site.clone(),
                timeout,
            })?
    }

    /// Opens an MPTCP connection, runs the TLS and HTTP/1.1 handshakes and
    /// returns the request sender with the task that drives the connection.
    pub(crate) async fn open<B>(
        &self,
    ) -> Result<(SendRequest<B>, tokio::task::JoinHandle<()>), PeerError>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let tcp = mptcp_connect(self.addr)
            .await
            .map_err(|source| PeerError::Connect {
                addr: self.addr,
                source,
            })?;
        let tls = self
            .connector
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|source| PeerError::Handshake {
                site: self.site.clone(),
                source,
            })?;
        let http_err = |source| PeerError::Http {
            site: self.site.clone(),
            source,
        };
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(http_err)?;
        let driver = tokio::spawn(async move {
            if let Err(err) = conn.await {
                tracing::debug!(error = %err, "peer connection ended with an error");
            }
        });
        Ok((sender, driver))
    }

    /// Adds the `Host` header the peer routes by.
    pub(crate) fn host_header<B>(&self, request: &mut Request<B>) {
        if let Ok(host) = HeaderValue::from_str(&self.site) {
            request.headers_mut().entry(HOST).or_insert(host);
        }
    }

    async fn exchange<B>(&self, request: Request<B>) -> Result<Response<Bytes>, PeerError>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (mut sender, mut driver) = self.open().await?;
        let http_err = |source| PeerError::Http {
            site: self.site.clone(),
            source,
        };
        let result = async {
            let response = sender.send_request(request).await.map_err(http_err)?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await.map_err(http_err)?.to_bytes();
            Ok(Response::from_parts(parts, body))
        }
        .await;
        // Dropping the sender lets the connection close cleanly (TLS
        // close_notify); a peer that does not cooperate is cut off.
        drop(sender);
        if tokio::time::timeout(CLOSE_TIMEOUT, &mut driver)
            .await
            .is_err()
        {
            driver.abort();
        }
        result
    }
}

/// A JSON request with the protocol header (`body` as JSON, if any).
pub(crate) fn json_request<B: Serialize>(
    method: Method,
    path: &str,
    body: Option<&B>,
) -> Result<Request<Full<Bytes>>, PeerError> {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(PROTOCOL_HEADER, PROTOCOL_VERSION.to_string());
    let payload = match body {
        Some(body) => {
            builder = builder.header(CONTENT_TYPE, "application/json");
            Bytes::from(serde_json::to_vec(body).map_err(PeerError::Encode)?)
        }
        None => Bytes::new(),
    };
    builder.body(Full::new(payload)).map_err(PeerError::Request)
}

/// Decodes a JSON answer of `site`; non-2xx answers become
/// [`PeerError::Api`], an empty answer decodes as `null`.
pub(crate) fn decode_json<T: DeserializeOwned>(
    site: &str,
    response: Response<Bytes>,
) -> Result<T, PeerError> {
    let status = response.status();
    let body = response.into_body();
    if !status.is_success() {
        return Err(api_error(status, &body));
    }
    let json: &[u8] = if body.is_empty() { b"null" } else { &body };
    serde_json::from_slice(json).map_err(|source| PeerError::Decode {
        site: site.to_owned(),
        source,
    })
}

fn api_error(status: StatusCode, body: &[u8]) -> PeerError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody { code, message }) => PeerError::Api {
            status: status.as_u16(),
            code,
            message,
        },
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let mut message: String = text.trim().chars().take(MAX_ERROR_TEXT).collect();
            if message.is_empty() {
                message = status.canonical_reason().unwrap_or("No reason").to_owned();
            }
            PeerError::Api {
                status: status.as_u16(),
                code: "http_error".to_owned(),
                message,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_error_bodies() {
        let err = api_error(
            StatusCode::NOT_FOUND,
            br#"{"code":"not_found","message":"No VM web1"}"#,
        );
        assert!(matches!(
            err,
            PeerError::Api { status: 404, ref code, ref message }
                if code == "not_found" && message == "No VM web1"
        ));
        let err = api_error(StatusCode::BAD_GATEWAY, b"");
        assert_eq!(err.to_string(), "Bad Gateway (HTTP 502, http_error)");
    }
}
