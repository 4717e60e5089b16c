//! Serving an axum router to other sites over mutually authenticated TLS.
//!
//! Every accepted connection must complete a TLS handshake with a client
//! certificate chained to the site CA before any byte of HTTP is read, so a
//! request from an unauthenticated peer never reaches a handler. Handlers
//! learn who is calling from the [`PeerSite`] request extension.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::protocol::{ErrorBody, PROTOCOL_HEADER, PROTOCOL_VERSION, major_version};
use crate::tls::{PeerTls, peer_site};

/// How long a peer may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open connections get to finish after shutdown was asked.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed `accept` (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The authenticated site name of the peer that sent a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSite(pub String);

/// The local address the peer's connection arrived at: the address of this
/// site that the peer reaches it by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerLocal(pub SocketAddr);

/// Serves `router` on `listener` over mutual TLS until `shutdown` resolves,
/// then lets open connections finish (for a bounded time).
///
/// Failed handshakes are logged at debug level and dropped; they never stop
/// the server.
pub async fn serve(
    listener: TcpListener,
    tls: PeerTls,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let acceptor = TlsAcceptor::from(tls.server_config());
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, remote) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let watcher = graceful.watcher();
        let acceptor = acceptor.clone();
        let router = router.clone();
        let local = tcp.local_addr().ok();
        tokio::spawn(async move {
            let Some((tls, site)) = handshake(&acceptor, tcp, remote).await else {
                return;
            };
            let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(PeerSite(site.clone()));
                if let Some(local) = local {
                    req.extensions_mut().insert(PeerLocal(local));
                }
                router.clone().oneshot(req)
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service);
            if let Err(err) = watcher.watch(conn).await {
                tracing::debug!(%remote, error = %err, "peer connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("peer connections still open after the drain timeout");
    }
    Ok(())
}

/// Runs the TLS handshake; `None` (logged) when the peer is not a site.
async fn handshake(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    remote: SocketAddr,
) -> Option<(tokio_rustls::server::TlsStream<TcpStream>, String)> {
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(err)) => {
            tracing::debug!(%remote, error = %err, "TLS handshake refused");
            return None;
        }
        Err(_) => {
            tracing::debug!(%remote, "TLS handshake timed out");
            return None;
        }
    };
    let Some(site) = peer_site(tls.get_ref().1) else {
        tracing::debug!(%remote, "peer certificate names no site");
        return None;
    };
    tracing::debug!(%remote, peer_site = %site, "peer authenticated");
    Some((tls, site))
}

/// axum middleware (`axum::middleware::from_fn(require_protocol)`) refusing
/// requests whose `x-edgemig-protocol` major version is not ours with 400
/// `{"code":"bad_request","message":"Peer speaks protocol X, this agent speaks 1"}`.
pub async fn require_protocol(req: Request, next: Next) -> Response {
    let theirs = req
        .headers()
        .get(PROTOCOL_HEADER)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    if theirs.as_deref().and_then(major_version) == Some(PROTOCOL_VERSION) {
        return next.run(req).await;
    }
    let theirs = theirs.unwrap_or_else(|| "none".to_owned());
    let body = ErrorBody {
        code: "bad_request".to_owned(),
        message: format!("Peer speaks protocol {theirs}, this agent speaks {PROTOCOL_VERSION}"),
    };
    (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
}
