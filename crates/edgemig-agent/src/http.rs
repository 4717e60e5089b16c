//! The HTTP/JSON routes of the agent API (see `docs/api/openapi.yaml`).

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use edgemig_api::{ApiErrorBody, ErrorCode, SiteInfo, VmCreate, VmInfo};
use edgemig_guest_proto::{GuestReply, GuestRequest};

use crate::guest_channel::GuestChannelError;
use crate::manager::{Manager, ManagerError};

/// An API error: code plus the message chain.
#[derive(Debug)]
pub struct ApiError(ApiErrorBody);

impl ApiError {
    fn new(code: ErrorCode, message: String) -> Self {
        Self(ApiErrorBody { code, message })
    }
}

/// Joins an error and its sources: "outer: inner: root".
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

impl From<ManagerError> for ApiError {
    fn from(e: ManagerError) -> Self {
        let code = match &e {
            ManagerError::Invalid(_) => ErrorCode::BadRequest,
            ManagerError::NotFound(_) => ErrorCode::NotFound,
            ManagerError::Conflict(_) => ErrorCode::Conflict,
            ManagerError::Unavailable(_) => ErrorCode::Unavailable,
            ManagerError::Guest(GuestChannelError::Guest(_)) => ErrorCode::BadRequest,
            ManagerError::Guest(_) => ErrorCode::Unavailable,
            ManagerError::Launch(_)
            | ManagerError::Qmp(_)
            | ManagerError::Netdev(_)
            | ManagerError::Store(_)
            | ManagerError::Io { .. } => ErrorCode::Internal,
        };
        if code == ErrorCode::Internal {
            tracing::error!(error = %chain(&e), "request failed");
        }
        Self::new(code, chain(&e))
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        Self::new(
            ErrorCode::BadRequest,
            format!("Invalid request body: {}", e.body_text()),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.0)).into_response()
    }
}

type Shared = State<Arc<Manager>>;
type ApiResult<T> = Result<Json<T>, ApiError>;

/// The router with every route of API version 1.
pub fn router(manager: Arc<Manager>) -> Router {
    Router::new()
        .route("/v1/site", get(site))
        .route("/v1/vms", get(list).post(create))
        .route("/v1/vms/{name}", get(show).delete(delete))
        .route("/v1/vms/{name}/start", post(start))
        .route("/v1/vms/{name}/stop", post(stop))
        .route("/v1/vms/{name}/guest", post(guest))
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "No such route".into()) })
        .with_state(manager)
}

async fn site(State(m): Shared) -> ApiResult<SiteInfo> {
    Ok(Json(m.site().await?))
}

async fn list(State(m): Shared) -> ApiResult<Vec<VmInfo>> {
    Ok(Json(m.list().await?))
}

async fn create(
    State(m): Shared,
    body: Result<Json<VmCreate>, JsonRejection>,
) -> Result<(StatusCode, Json<VmInfo>), ApiError> {
    let Json(spec) = body?;
    Ok((StatusCode::CREATED, Json(m.create(spec).await?)))
}

async fn show(State(m): Shared, Path(name): Path<String>) -> ApiResult<VmInfo> {
    Ok(Json(m.get(&name).await?))
}

async fn delete(State(m): Shared, Path(name): Path<String>) -> ApiResult<serde_json::Value> {
    m.delete(&name).await?;
    Ok(Json(serde_json::json!({ "deleted": name })))
}

async fn start(State(m): Shared, Path(name): Path<String>) -> ApiResult<VmInfo> {
    Ok(Json(m.start(&name).await?))
}

async fn stop(State(m): Shared, Path(name): Path<String>) -> ApiResult<VmInfo> {
    Ok(Json(m.stop(&name).await?))
}

async fn guest(
    State(m): Shared,
    Path(name): Path<String>,
    body: Result<Json<GuestRequest>, JsonRejection>,
) -> ApiResult<GuestReply> {
    let Json(request) = body?;
    Ok(Json(m.guest(&name, request).await?))
}
