//! One connection to a peer's agent, opened ahead of the moment a request
//! must be quick: the migration's commit leaves while the VM is paused, and
//! a fresh connection would add the MPTCP and TLS handshakes (two round
//! trips and the certificate checks) to the VM's pause.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::client::{PeerClient, PeerError, decode_json, json_request};

/// An open HTTP/1.1 connection to one peer; requests go one at a time.
/// Dropping it closes the connection.
pub struct PeerConnection {
    client: PeerClient,
    sender: Mutex<SendRequest<Full<Bytes>>>,
    driver: JoinHandle<()>,
}

impl std::fmt::Debug for PeerConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerConnection")
            .field("site", &self.client.site())
            .finish_non_exhaustive()
    }
}

impl PeerClient {
    /// Opens a connection for later requests, within `timeout`.
    pub async fn connect_ahead(&self, timeout: Duration) -> Result<PeerConnection, PeerError> {
        let (sender, driver) =
            tokio::time::timeout(timeout, self.open())
                .await
                .map_err(|_| PeerError::Timeout {
                    site: self.site().to_owned(),
                    timeout,
                })??;
        Ok(PeerConnection {
            client: self.clone(),
            sender: Mutex::new(sender),
            driver,
        })
    }
}

impl PeerConnection {
    /// Whether the connection can still carry a request (the peer has not
    /// closed it). A path that died silently is only noticed by a request
    /// that times out.
    pub fn is_open(&self) -> bool {
        !self.driver.is_finished()
    }

    /// Like [`PeerClient::request_json`], over this connection.
    pub async fn request_json<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        timeout: Duration,
    ) -> Result<T, PeerError> {
        let mut request = json_request(method, path, body)?;
        self.client.host_header(&mut request);
        let site = self.client.site().to_owned();
        let http_err = |source| PeerError::Http {
            site: site.clone(),
            source,
        };
        let exchange = async {
            let mut sender = self.sender.lock().await;
            sender.ready().await.map_err(http_err)?;
            let response = sender.send_request(request).await.map_err(http_err)?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await.map_err(http_err)?.to_bytes();
            Ok::<_, PeerError>(Response::from_parts(parts, body))
        };
        let response = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| PeerError::Timeout {
                site: site.clone(),
                timeout,
            })??;
        decode_json(&site, response)
    }
}

impl Drop for PeerConnection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}
