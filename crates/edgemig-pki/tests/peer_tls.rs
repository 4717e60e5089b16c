//! Real mutual TLS over loopback: who gets in, who does not, and what a
//! refused peer can (not) do.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::routing::get;
use axum::{Extension, Json, Router};
use bytes::Bytes;
use edgemig_pki::{
    PeerClient, PeerError, PeerSite, PeerTls, SiteFiles, Validity, client_config, create_ca,
    create_site_cert, create_site_cert_with, load_certs, load_key, mptcp_listener,
    require_protocol, root_store, serve, write_qemu_creds,
};
use http_body_util::Full;
use hyper::{Method, Request};
use serde_json::{Value, json};
use tokio::sync::oneshot;

const TIMEOUT: Duration = Duration::from_secs(10);

struct Server {
    addr: SocketAddr,
    calls: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<String>>>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(site: &SiteFiles) -> Self {
        let tls = PeerTls::load(site).expect("load server TLS");
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (c, s) = (calls.clone(), seen.clone());
        let router = Router::new()
            .route(
                "/v1/hello",
                get(
                    move |Extension(PeerSite(peer)): Extension<PeerSite>| async move {
                        c.fetch_add(1, Ordering::SeqCst);
                        s.lock().expect("lock").push(peer.clone());
                        Json(json!({ "peer": peer }))
                    },
                ),
            )
            .layer(axum::middleware::from_fn(require_protocol));
        let listener = mptcp_listener("127.0.0.1:0".parse().expect("addr")).expect("listen");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, tls, router, async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            calls,
            seen,
            stop,
            task,
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(TIMEOUT, self.task)
            .await
            .expect("server stops in time")
            .expect("server task")
            .expect("serve result");
    }
}

struct Pki {
    dir: tempfile::TempDir,
    a: SiteFiles,
    b: SiteFiles,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca");
    create_ca(&ca, "edgemig test CA").expect("CA");
    let lo: IpAddr = "127.0.0.1".parse().expect("ip");
    let a = create_site_cert(&ca, &dir.path().join("site-a"), "site-a", &[lo]).expect("site-a");
    let b = create_site_cert(&ca, &dir.path().join("site-b"), "site-b", &[lo]).expect("site-b");
    Pki { dir, a, b }
}

async fn hello(client: &PeerClient) -> Result<Value, PeerError> {
    client
        .request_json::<(), Value>(Method::GET, "/v1/hello", None, TIMEOUT)
        .await
}

/// The server refused the handshake with the TLS alert `alert`.
fn assert_refused(err: &PeerError, alert: &str) {
    assert!(
        matches!(err, PeerError::Handshake { .. } | PeerError::Http { .. }),
        "{err:?}"
    );
    assert!(format!("{err:?}").contains(alert), "{err:?}");
}

/// A good client still gets through, so a refused peer did not hurt the
/// server.
async fn assert_still_serving(server: &Server, pki: &Pki) {
    let tls = PeerTls::load(&pki.a).expect("site-a TLS");
    let client = PeerClient::new(&tls, server.addr, "site-b").expect("client");
    hello(&client).await.expect("good client served");
}

#[tokio::test]
async fn authenticated_peer_is_served_and_named() {
    let pki = pki();
    let server = Server::start(&pki.b).await;
    let tls = PeerTls::load(&pki.a).expect("site-a TLS");
    let client = PeerClient::new(&tls, server.addr, "site-b").expect("client");
    let answer = hello(&client).await.expect("hello");
    assert_eq!(answer, json!({ "peer": "site-a" }));
    assert_eq!(server.calls(), 1);
    assert_eq!(
        *server.seen.lock().expect("lock"),
        vec!["site-a".to_owned()]
    );
    server.stop().await;
}

#[tokio::test]
async fn client_without_certificate_is_refused() {
    let pki = pki();
    let server = Server::start(&pki.b).await;
    let roots = Arc::new(root_store(&pki.a.ca).expect("roots"));
    let config = client_config(roots, None).expect("config");
    let client = PeerClient::with_config(Arc::new(config), server.addr, "site-b").expect("client");
    let err = hello(&client).await.expect_err("no client cert");
    assert_refused(&err, "CertificateRequired");
    assert_eq!(server.calls(), 0);
    assert_still_serving(&server, &pki).await;
    assert_eq!(server.calls(), 1);
    server.stop().await;
}

#[tokio::test]
async fn client_from_another_ca_is_refused() {
    let pki = pki();
    let other_ca = pki.dir.path().join("other-ca");
    create_ca(&other_ca, "edgemig test CA").expect("other CA");
    let rogue = create_site_cert(&other_ca, &pki.dir.path().join("rogue"), "site-a", &[])
        .expect("rogue cert");
    let server = Server::start(&pki.b).await;
    // Trusts the right CA (so it accepts the server) but presents a
    // certificate from the other one, with the same CA name.
    let roots = Arc::new(root_store(&pki.a.ca).expect("roots"));
    let identity = (
        load_certs(&rogue.cert).expect("cert"),
        load_key(&rogue.key).expect("key"),
    );
    let config = client_config(roots, Some(identity)).expect("config");
    let client = PeerClient::with_config(Arc::new(config), server.addr, "site-b").expect("client");
    let err = hello(&client).await.expect_err("foreign client cert");
    assert_refused(&err, "DecryptError");
    assert_eq!(server.calls(), 0);
    assert_still_serving(&server, &pki).await;
    server.stop().await;
}

#[tokio::test]
async fn expired_client_certificate_is_refused() {
    let pki = pki();
    let day = Duration::from_secs(86_400);
    let now = SystemTime::now();
    let expired = Validity {
        not_before: now - 10 * day,
        not_after: now - day,
    };
    let old = create_site_cert_with(
        &pki.dir.path().join("ca"),
        &pki.dir.path().join("old-a"),
        "site-a",
        &[],
        expired,
    )
    .expect("expired cert");
    let server = Server::start(&pki.b).await;
    let tls = PeerTls::load(&old).expect("expired TLS still loads");
    let client = PeerClient::new(&tls, server.addr, "site-b").expect("client");
    let err = hello(&client).await.expect_err("expired client cert");
    assert_refused(&err, "CertificateExpired");
    assert_eq!(server.calls(), 0);
    assert_still_serving(&server, &pki).await;
    server.stop().await;
}

#[tokio::test]
async fn client_refuses_server_with_other_site_name() {
    let pki = pki();
    let server = Server::start(&pki.b).await;
    let tls = PeerTls::load(&pki.a).expect("site-a TLS");
    let client = PeerClient::new(&tls, server.addr, "site-c").expect("client");
    let err = hello(&client)
        .await
        .expect_err("server is site-b, not site-c");
    assert!(matches!(err, PeerError::Handshake { .. }), "{err:?}");
    assert_eq!(server.calls(), 0);
    server.stop().await;
}

#[tokio::test]
async fn protocol_header_is_required() {
    let pki = pki();
    let server = Server::start(&pki.b).await;
    let tls = PeerTls::load(&pki.a).expect("site-a TLS");
    let client = PeerClient::new(&tls, server.addr, "site-b").expect("client");
    let ours = edgemig_pki::PROTOCOL_VERSION;
    let next = (ours + 1).to_string();
    let next_minor = format!("{next}.1");
    let prev = (ours - 1).to_string();
    for (header, theirs) in [
        (None, "none"),
        (Some(next.as_str()), next.as_str()),
        (Some(next_minor.as_str()), next_minor.as_str()),
        (Some(prev.as_str()), prev.as_str()),
    ] {
        let mut request = Request::get("/v1/hello");
        if let Some(value) = header {
            request = request.header("x-edgemig-protocol", value);
        }
        let request = request.body(Full::new(Bytes::new())).expect("request");
        let response = client.send(request, TIMEOUT).await.expect("answer");
        assert_eq!(response.status(), 400);
        let body: Value = serde_json::from_slice(response.body()).expect("JSON body");
        assert_eq!(
            body,
            json!({
                "code": "bad_request",
                "message": format!("Peer speaks protocol {theirs}, this agent speaks {ours}"),
            })
        );
    }
    let request = Request::get("/v1/hello")
        .header("x-edgemig-protocol", format!("{ours}.4"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let response = client.send(request, TIMEOUT).await.expect("answer");
    assert_eq!(response.status(), 200);
    assert_eq!(server.calls(), 1);

    let err = client
        .request_json::<(), Value>(Method::GET, "/v1/nope", None, TIMEOUT)
        .await
        .expect_err("404");
    assert!(
        matches!(err, PeerError::Api { status: 404, ref code, .. } if code == "http_error"),
        "{err:?}"
    );
    server.stop().await;
}

#[test]
fn qemu_creds_directory() {
    use std::os::unix::fs::PermissionsExt;
    let pki = pki();
    let dir = pki.dir.path().join("qemu");
    write_qemu_creds(&pki.a, &dir).expect("qemu creds");
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    for name in ["ca-cert.pem", "server-cert.pem", "client-cert.pem"] {
        let certs = load_certs(&dir.join(name)).expect("certificate PEM");
        assert_eq!(certs.len(), 1, "{name}");
    }
    for name in ["server-key.pem", "client-key.pem"] {
        load_key(&dir.join(name)).expect("key PEM");
        assert_eq!(mode(&dir.join(name)), 0o600, "{name}");
    }
    assert_eq!(std::fs::read_dir(&dir).expect("list").count(), 5);
    assert_eq!(
        std::fs::read(dir.join("server-cert.pem")).expect("read"),
        std::fs::read(&pki.a.cert).expect("read")
    );
}

#[tokio::test]
async fn a_connection_opened_ahead_carries_requests_until_the_peer_closes_it() {
    let pki = pki();
    let server = Server::start(&pki.b).await;
    let tls = PeerTls::load(&pki.a).expect("site-a TLS");
    let client = PeerClient::new(&tls, server.addr, "site-b").expect("client");
    let connection = client.connect_ahead(TIMEOUT).await.expect("connect ahead");
    assert_eq!(server.calls(), 0, "opening sends no request");
    tokio::time::sleep(Duration::from_millis(300)).await;
    for n in 1..=3 {
        let answer: Value = connection
            .request_json::<(), Value>(Method::GET, "/v1/hello", None, TIMEOUT)
            .await
            .expect("hello over the open connection");
        assert_eq!(answer, json!({ "peer": "site-a" }));
        assert_eq!(server.calls(), n);
    }
    assert!(connection.is_open());
    server.stop().await;
    let closed = async {
        while connection.is_open() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(TIMEOUT, closed)
        .await
        .expect("the connection ends with the server");
    let after = connection
        .request_json::<(), Value>(Method::GET, "/v1/hello", None, TIMEOUT)
        .await;
    assert!(
        after.is_err(),
        "answered after the server stopped: {after:?}"
    );
}
