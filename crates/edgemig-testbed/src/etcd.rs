//! A real etcd for a testbed whose config asks for `directory = "etcd"`:
//! one member in the first site's namespace, reached by that site on
//! loopback and by every other site at the first site's end of a path
//! between them (so the directory lives on the emulated network, like a
//! real deployment's).

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::lifecycle::TestbedError;
use crate::plan::Plan;
use crate::process;

/// etcd's client port inside the first site's namespace.
pub const CLIENT_PORT: u16 = 2379;
/// The etcd binary (Debian package etcd-server).
pub const ETCD: &str = "/usr/bin/etcd";

/// The directory endpoints site `site` uses.
pub fn endpoints(plan: &Plan, site: &str) -> Result<Vec<String>, TestbedError> {
    let first = &plan.sites[0].name;
    if site == first {
        return Ok(vec![format!("http://127.0.0.1:{CLIENT_PORT}")]);
    }
    let ends: Vec<String> = plan
        .paths
        .iter()
        .filter_map(|p| {
            if p.a.node == *first && p.b.node == site {
                Some(p.a.addr.addr())
            } else if p.b.node == *first && p.a.node == site {
                Some(p.b.addr.addr())
            } else {
                None
            }
        })
        .map(|ip| format!("http://{ip}:{CLIENT_PORT}"))
        .collect();
    if ends.is_empty() {
        return Err(TestbedError::Etcd(format!(
            "directory = \"etcd\" runs etcd at site {first}: site {site} needs a path to it"
        )));
    }
    Ok(ends)
}

/// Starts etcd in the first site's namespace with its data under `dir`;
/// returns its pid once it accepts connections.
pub fn start(plan: &Plan, dir: &Path) -> Result<u32, TestbedError> {
    if !Path::new(ETCD).is_file() {
        return Err(TestbedError::Missing(format!(
            "{ETCD} is missing (Debian package etcd-server): run scripts/setup.sh"
        )));
    }
    let site = &plan.sites[0];
    let peer = "http://127.0.0.1:2380";
    let args: Vec<OsString> = [
        "--name",
        "edgemig",
        "--data-dir",
        &dir.join("etcd").display().to_string(),
        "--listen-client-urls",
        &format!("http://0.0.0.0:{CLIENT_PORT}"),
        "--advertise-client-urls",
        &format!("http://127.0.0.1:{CLIENT_PORT}"),
        "--listen-peer-urls",
        peer,
        "--initial-advertise-peer-urls",
        peer,
        "--initial-cluster",
        &format!("edgemig={peer}"),
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    let pid = process::spawn_detached(
        Some(&site.netns),
        Path::new(ETCD),
        &args,
        &dir.join("etcd.log"),
    )?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, CLIENT_PORT));
    loop {
        let up = edgemig_netns::in_netns(&site.netns, move || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        })
        .unwrap_or(false);
        if up {
            return Ok(pid);
        }
        if Instant::now() > deadline {
            return Err(TestbedError::Etcd(format!(
                "etcd did not start within 20 s (see {})",
                dir.join("etcd.log").display()
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
