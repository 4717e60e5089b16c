//! HTTP/1.1 client for the agent's local Unix socket.

use std::path::{Path, PathBuf};
use std::time::Duration;

use edgemig_guest_proto::{GuestReply, GuestRequest};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;

use crate::API_PREFIX;
use crate::images::{ImageImport, ImageInfo, ImagePush, ImagePushReport};
use crate::migration::{MigrateRequest, MigrationView};
use crate::policy::PolicySpec;
use crate::types::{ApiErrorBody, ErrorCode, SiteInfo, VmCreate, VmInfo};

/// Errors of [`ApiClient`].
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The agent's socket could not be reached.
    #[error("Cannot reach edgemigd at {path}; is the agent running?")]
    Unreachable {
        /// Socket path tried.
        path: PathBuf,
        /// Why connecting failed.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP exchange failed.
    #[error("HTTP exchange with edgemigd failed")]
    Http(#[source] hyper::Error),
    /// The agent answered with an error.
    #[error("{}", .0.message)]
    Api(ApiErrorBody),
    /// The agent's answer was not the expected JSON.
    #[error("Unexpected answer from edgemigd")]
    Decode(#[source] serde_json::Error),
    /// No answer in time.
    #[error("edgemigd did not answer within {0:?}")]
    Timeout(Duration),
}

impl ClientError {
    /// The API error code, when the agent answered with an error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Api(body) => Some(body.code),
            _ => None,
        }
    }
}

/// A client of one agent's local API socket.
#[derive(Debug, Clone)]
pub struct ApiClient {
    socket: PathBuf,
    timeout: Duration,
}

impl ApiClient {
    /// A client for the agent listening on `socket`.
    pub fn new(socket: impl AsRef<Path>) -> Self {
        Self {
            socket: socket.as_ref().to_path_buf(),
            timeout: Duration::from_secs(120),
        }
    }

    /// Sets the limit for one request.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Socket path of the agent.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `GET /v1/site`.
    pub async fn site(&self) -> Result<SiteInfo, ClientError> {
        self.call(Method::GET, "/site", None::<&()>).await
    }

    /// `GET /v1/images`: the site's image cache.
    pub async fn list_images(&self) -> Result<Vec<ImageInfo>, ClientError> {
        self.call(Method::GET, "/images", None::<&()>).await
    }

    /// `POST /v1/images`: import a file into the cache (idempotent by digest).
    pub async fn import_image(&self, import: &ImageImport) -> Result<ImageInfo, ClientError> {
        self.call(Method::POST, "/images", Some(import)).await
    }

    /// `POST /v1/images/{digest-or-name}/push`: copy a cached image to
    /// another site; answers when it arrived (give the client a timeout
    /// long enough for the image, see [`ApiClient::with_timeout`]).
    pub async fn push_image(
        &self,
        image: &str,
        push: &ImagePush,
    ) -> Result<ImagePushReport, ClientError> {
        self.call(Method::POST, &format!("/images/{image}/push"), Some(push))
            .await
    }

    /// `DELETE /v1/images/{digest-or-name}`.
    pub async fn remove_image(&self, image: &str) -> Result<(), ClientError> {
        let _: serde_json::Value = self
            .call(Method::DELETE, &format!("/images/{image}"), None::<&()>)
            .await?;
        Ok(())
    }

    /// `GET /v1/vms`.
    pub async fn list_vms(&self) -> Result<Vec<VmInfo>, ClientError> {
        self.call(Method::GET, "/vms", None::<&()>).await
    }

    /// `POST /v1/vms`.
    pub async fn create_vm(&self, spec: &VmCreate) -> Result<VmInfo, ClientError> {
        self.call(Method::POST, "/vms", Some(spec)).await
    }

    /// `GET /v1/vms/{name}`.
    pub async fn vm(&self, name: &str) -> Result<VmInfo, ClientError> {
        self.call(Method::GET, &format!("/vms/{name}"), None::<&()>)
            .await
    }

    /// `POST /v1/vms/{name}/start`.
    pub async fn start_vm(&self, name: &str) -> Result<VmInfo, ClientError> {
        self.call(Method::POST, &format!("/vms/{name}/start"), None::<&()>)
            .await
    }

    /// `POST /v1/vms/{name}/stop`.
    pub async fn stop_vm(&self, name: &str) -> Result<VmInfo, ClientError> {
        self.call(Method::POST, &format!("/vms/{name}/stop"), None::<&()>)
            .await
    }

    /// `DELETE /v1/vms/{name}`.
    pub async fn delete_vm(&self, name: &str) -> Result<(), ClientError> {
        let _: serde_json::Value = self
            .call(Method::DELETE, &format!("/vms/{name}"), None::<&()>)
            .await?;
        Ok(())
    }

    /// `POST /v1/vms/{name}/guest`: one request to the guest agent.
    pub async fn guest(
        &self,
        name: &str,
        request: &GuestRequest,
    ) -> Result<GuestReply, ClientError> {
        self.call(Method::POST, &format!("/vms/{name}/guest"), Some(request))
            .await
    }

    /// `PUT /v1/vms/{name}/policy`: sets (replaces) the VM's policy.
    pub async fn set_policy(&self, name: &str, spec: &PolicySpec) -> Result<VmInfo, ClientError> {
        self.call(Method::PUT, &format!("/vms/{name}/policy"), Some(spec))
            .await
    }

    /// `POST /v1/vms/{name}/migrate`: starts a migration (returns at once).
    pub async fn migrate(
        &self,
        name: &str,
        request: &MigrateRequest,
    ) -> Result<MigrationView, ClientError> {
        self.call(Method::POST, &format!("/vms/{name}/migrate"), Some(request))
            .await
    }

    /// `POST /v1/vms/{name}/migrate/cancel`.
    pub async fn cancel_migration(&self, name: &str) -> Result<MigrationView, ClientError> {
        self.call(
            Method::POST,
            &format!("/vms/{name}/migrate/cancel"),
            None::<&()>,
        )
        .await
    }

    /// `POST /v1/vms/{name}/migrate/resolve`: settle an unknown outcome.
    pub async fn resolve_migration(
        &self,
        name: &str,
        req: &crate::migration::ResolveRequest,
    ) -> Result<MigrationView, ClientError> {
        self.call(
            Method::POST,
            &format!("/vms/{name}/migrate/resolve"),
            Some(req),
        )
        .await
    }

    /// `GET /v1/migrations/{name}`: the running (else latest) migration of a VM.
    pub async fn migration(&self, name: &str) -> Result<MigrationView, ClientError> {
        self.call(Method::GET, &format!("/migrations/{name}"), None::<&()>)
            .await
    }

    /// `GET /v1/migrations`.
    pub async fn migrations(&self) -> Result<Vec<MigrationView>, ClientError> {
        self.call(Method::GET, "/migrations", None::<&()>).await
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        tokio::time::timeout(self.timeout, self.call_inner(method, path, body))
            .await
            .map_err(|_| ClientError::Timeout(self.timeout))?
    }

    async fn call_inner<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let stream =
            UnixStream::connect(&self.socket)
                .await
                .map_err(|source| ClientError::Unreachable {
                    path: self.socket.clone(),
                    source,
                })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(ClientError::Http)?;
        tokio::spawn(conn);
        let bytes = match body {
            Some(body) => serde_json::to_vec(body).map_err(ClientError::Decode)?,
            None => Vec::new(),
        };
        let request = Request::builder()
            .method(method)
            .uri(format!("{API_PREFIX}{path}"))
            .header("host", "edgemigd")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(bytes)))
            .map_err(|e| {
                ClientError::Api(ApiErrorBody {
                    code: ErrorCode::BadRequest,
                    message: format!("Invalid request: {e}"),
                })
            })?;
        let response = sender
            .send_request(request)
            .await
            .map_err(ClientError::Http)?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(ClientError::Http)?
            .to_bytes();
        if status.is_success() {
            serde_json::from_slice(&body).map_err(ClientError::Decode)
        } else {
            let error =
                serde_json::from_slice::<ApiErrorBody>(&body).unwrap_or_else(|_| ApiErrorBody {
                    code: ErrorCode::Internal,
                    message: format!(
                        "edgemigd answered {status}: {}",
                        String::from_utf8_lossy(&body)
                    ),
                });
            Err(ClientError::Api(error))
        }
    }
}
