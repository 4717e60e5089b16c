//! A real etcd (`/usr/bin/etcd`, Debian etcd-server) per test, on free
//! loopback ports and a temp data dir; killed by pid on drop.

use std::fs::File;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use edgemig_directory::{Directory, EtcdDirectory};
use tempfile::TempDir;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A running etcd; dropping it kills exactly that process and removes its
/// data dir.
pub struct EtcdServer {
    child: Option<Child>,
    dir: TempDir,
    /// Client URL, `http://127.0.0.1:<port>`.
    pub endpoint: String,
}

/// Two distinct free loopback ports (both bound at once, then released).
fn free_ports() -> (u16, u16) {
    let a = TcpListener::bind("127.0.0.1:0").unwrap();
    let b = TcpListener::bind("127.0.0.1:0").unwrap();
    (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    )
}

impl EtcdServer {
    /// Starts etcd and waits until it answers.
    pub async fn start() -> Self {
        let name = format!(
            "emdir{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let dir = tempfile::Builder::new()
            .prefix(&format!("{name}-"))
            .tempdir()
            .unwrap();
        let (client_port, peer_port) = free_ports();
        let client_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let log = File::create(dir.path().join("etcd.log")).unwrap();
        let child = Command::new("/usr/bin/etcd")
            .arg("--name")
            .arg(&name)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("{name}={peer_url}")])
            .args(["--initial-cluster-token", &name])
            .args(["--initial-cluster-state", "new"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut server = Self {
            child: Some(child),
            dir,
            endpoint: client_url,
        };
        server.wait_ready().await;
        server
    }

    async fn wait_ready(&mut self) {
        let probe = EtcdDirectory::connect_with_timeout(
            std::slice::from_ref(&self.endpoint),
            "/probe",
            Duration::from_secs(1),
        )
        .await
        .unwrap();
        let start = Instant::now();
        loop {
            if probe.health().await.is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("etcd exited with {status}:\n{}", self.log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "etcd never answered:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
    }

    /// A new client (one controller) on this etcd, under `prefix`.
    pub async fn client(&self, prefix: &str) -> Directory {
        EtcdDirectory::connect(std::slice::from_ref(&self.endpoint), prefix)
            .await
            .unwrap()
            .into()
    }

    /// Kills etcd now (SIGKILL to the pid we started) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
    }
}
