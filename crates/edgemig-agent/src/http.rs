//! The HTTP/JSON routes of the agent API (see `docs/api/openapi.yaml`).

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use edgemig_api::images::{ImagePush, ImagePushReport};
use edgemig_api::migration::ResolveRequest;
use edgemig_api::peer::{
    AbortReply, CommitReply, IncomingReady, IncomingRequest, IncomingStatus, PeerImageStatus,
    PeerImageUpload,
};
use edgemig_api::policy::{PolicySpec, ProbeReply, ProbeRequest};
use edgemig_api::{
    ApiErrorBody, ErrorCode, ImageImport, ImageInfo, MigrateRequest, MigrationView, SiteInfo,
    VmCreate, VmInfo,
};
use edgemig_guest_proto::{GuestReply, GuestRequest};

use crate::guest_channel::GuestChannelError;
use crate::manager::{Manager, ManagerError};
use crate::migration::id::MigrationId;

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
            ManagerError::NotFound(_) | ManagerError::Missing(_) => ErrorCode::NotFound,
            ManagerError::Conflict(_) => ErrorCode::Conflict,
            ManagerError::Unavailable(_) => ErrorCode::Unavailable,
            ManagerError::Forbidden(_) => ErrorCode::Forbidden,
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
        .route("/metrics", get(metrics))
        .route("/v1/images", get(list_images).post(import_image))
        .route("/v1/images/{image}", axum::routing::delete(remove_image))
        .route("/v1/images/{image}/push", post(push_image))
        .route("/v1/vms", get(list).post(create))
        .route("/v1/vms/{name}", get(show).delete(delete))
        .route("/v1/vms/{name}/start", post(start))
        .route("/v1/vms/{name}/stop", post(stop))
        .route("/v1/vms/{name}/guest", post(guest))
        .route("/v1/vms/{name}/policy", axum::routing::put(set_policy))
        .route("/v1/vms/{name}/migrate", post(migrate))
        .route("/v1/vms/{name}/migrate/cancel", post(cancel_migration))
        .route("/v1/vms/{name}/migrate/resolve", post(resolve_migration))
        .route("/v1/migrations", get(migrations))
        .route("/v1/migrations/{name}", get(migration))
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "No such route".into()) })
        .with_state(manager)
}

async fn site(State(m): Shared) -> ApiResult<SiteInfo> {
    Ok(Json(m.site().await?))
}

async fn list_images(State(m): Shared) -> ApiResult<Vec<ImageInfo>> {
    Ok(Json(m.list_images()?))
}

async fn import_image(
    State(m): Shared,
    body: Result<Json<ImageImport>, JsonRejection>,
) -> Result<(StatusCode, Json<ImageInfo>), ApiError> {
    let Json(import) = body?;
    Ok((StatusCode::CREATED, Json(m.import_image(import).await?)))
}

async fn push_image(
    State(m): Shared,
    Path(image): Path<String>,
    body: Result<Json<ImagePush>, JsonRejection>,
) -> ApiResult<ImagePushReport> {
    let Json(push) = body?;
    Ok(Json(m.push_image(&image, push).await?))
}

async fn peer_image_status(
    State(m): Shared,
    Path(digest): Path<String>,
) -> ApiResult<PeerImageStatus> {
    Ok(Json(m.peer_image_status(&digest)?))
}

async fn peer_image_upload(
    State(m): Shared,
    Path(digest): Path<String>,
    query: Result<axum::extract::Query<PeerImageUpload>, axum::extract::rejection::QueryRejection>,
    body: axum::body::Body,
) -> ApiResult<ImageInfo> {
    let axum::extract::Query(upload) = query.map_err(|e| {
        ApiError::new(
            ErrorCode::BadRequest,
            format!("Invalid upload query: {}", e.body_text()),
        )
    })?;
    Ok(Json(
        m.receive_image(&digest, upload, body.into_data_stream())
            .await?,
    ))
}

async fn remove_image(State(m): Shared, Path(image): Path<String>) -> ApiResult<serde_json::Value> {
    m.remove_image(&image).await?;
    Ok(Json(serde_json::json!({ "removed": image })))
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

async fn set_policy(
    State(m): Shared,
    Path(name): Path<String>,
    body: Result<Json<PolicySpec>, JsonRejection>,
) -> ApiResult<VmInfo> {
    let Json(spec) = body?;
    Ok(Json(m.set_policy(&name, spec).await?))
}

async fn migrate(
    State(m): Shared,
    Path(name): Path<String>,
    body: Result<Json<MigrateRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<MigrationView>), ApiError> {
    let Json(req) = body?;
    Ok((StatusCode::ACCEPTED, Json(m.migrate(&name, req).await?)))
}

async fn cancel_migration(State(m): Shared, Path(name): Path<String>) -> ApiResult<MigrationView> {
    Ok(Json(m.cancel_migration(&name)?))
}

async fn resolve_migration(
    State(m): Shared,
    Path(name): Path<String>,
    body: Result<Json<ResolveRequest>, JsonRejection>,
) -> ApiResult<MigrationView> {
    let Json(req) = body?;
    Ok(Json(m.resolve_migration(&name, req)?))
}

async fn migrations(State(m): Shared) -> ApiResult<Vec<MigrationView>> {
    Ok(Json(m.migrations()))
}

async fn migration(State(m): Shared, Path(name): Path<String>) -> ApiResult<MigrationView> {
    Ok(Json(m.migration(&name)?))
}

/// The agent-to-agent routes (served over mutual TLS only).
pub fn peer_router(manager: Arc<Manager>) -> Router {
    Router::new()
        .route("/v1/peer/migrations", post(peer_prepare))
        .route("/v1/peer/migrations/{id}", get(peer_status))
        .route("/v1/peer/migrations/{id}/commit", post(peer_commit))
        .route("/v1/peer/migrations/{id}/abort", post(peer_abort))
        .route(
            "/v1/peer/migrations/{id}/tunnel/close",
            post(peer_close_tunnel),
        )
        .route("/v1/peer/probe", post(peer_probe))
        .route(
            "/v1/peer/images/{digest}",
            get(peer_image_status).put(peer_image_upload),
        )
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "No such route".into()) })
        .layer(axum::middleware::from_fn(edgemig_pki::require_protocol))
        .with_state(manager)
}

type Peer = axum::Extension<edgemig_pki::PeerSite>;

fn migration_id(id: &str) -> Result<MigrationId, ApiError> {
    id.parse().map_err(|e: crate::migration::id::InvalidId| {
        ApiError::new(ErrorCode::BadRequest, e.to_string())
    })
}

async fn peer_prepare(
    State(m): Shared,
    axum::Extension(peer): Peer,
    local: Option<axum::Extension<edgemig_pki::PeerLocal>>,
    body: Result<Json<IncomingRequest>, JsonRejection>,
) -> ApiResult<IncomingReady> {
    let Json(req) = body?;
    if req.source_site != peer.0 {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("Peer {} claims to be site {}", peer.0, req.source_site),
        ));
    }
    let bind = local.map(|axum::Extension(l)| l.0.ip());
    Ok(Json(m.prepare_incoming(req, bind).await?))
}

async fn peer_status(
    State(m): Shared,
    axum::Extension(peer): Peer,
    Path(id): Path<String>,
) -> ApiResult<IncomingStatus> {
    Ok(Json(m.incoming_status(&migration_id(&id)?, &peer.0).await?))
}

async fn peer_commit(
    State(m): Shared,
    axum::Extension(peer): Peer,
    Path(id): Path<String>,
) -> ApiResult<CommitReply> {
    Ok(Json(m.commit_incoming(&migration_id(&id)?, &peer.0).await?))
}

async fn peer_abort(
    State(m): Shared,
    axum::Extension(peer): Peer,
    Path(id): Path<String>,
) -> ApiResult<AbortReply> {
    Ok(Json(m.abort_incoming(&migration_id(&id)?, &peer.0).await?))
}

async fn peer_close_tunnel(
    State(m): Shared,
    axum::Extension(peer): Peer,
    Path(id): Path<String>,
) -> ApiResult<serde_json::Value> {
    let id = migration_id(&id)?;
    m.close_tunnel_of(&id, &peer.0).await?;
    Ok(Json(serde_json::json!({ "closed": id.to_string() })))
}

async fn peer_probe(
    State(m): Shared,
    body: Result<Json<ProbeRequest>, JsonRejection>,
) -> ApiResult<ProbeReply> {
    let Json(req) = body?;
    Ok(Json(m.probe(req).await?))
}

async fn metrics(
    State(m): Shared,
) -> Result<([(axum::http::header::HeaderName, &'static str); 1], String), ApiError> {
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        m.metrics().await?,
    ))
}
