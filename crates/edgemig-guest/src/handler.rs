//! Request handling of the guest agent over any reader/writer pair: reads
//! [`HostMessage`] lines and answers each with a [`GuestMessage::Response`]
//! of the same id. Slow requests (memory verification, disk I/O) run on
//! their own thread so quick ones (Hello, MemStatus) are answered meanwhile;
//! disk requests are serialized among themselves, and so are network
//! changes (NicUp, NicRetire, NicPlan and the plans the link watcher
//! applies). The agent speaks protocol 3 ([`edgemig_guest_proto::v3`]).

use crate::apps::{self, Apps};
use crate::ballast::Ballast;
use crate::disk::{self, Region};
use crate::memwriter::MemWriter;
use crate::net::{self, NicRef, Planner, link};
use crate::state::{SavedNic, Store};
use edgemig_guest_proto::DEFAULT_DATA_DISK;
use edgemig_guest_proto::v3::{
    AgentInfo, GuestEvent, GuestMessage, GuestOutcome, GuestReply, GuestRequest, HostMessage,
};
use std::io::{self, BufRead, Read, Write};
use std::sync::{Arc, Mutex};

/// Longest accepted request line; longer lines are dropped.
const MAX_LINE: u64 = 1 << 20;

/// The writing half of the port, shared with request threads.
pub type SharedWriter = Arc<Mutex<Box<dyn Write + Send>>>;

/// Errors of the request loop.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Reading from the port failed.
    #[error("reading from the port: {0}")]
    Read(io::Error),
    /// Writing to the port failed.
    #[error("writing to the port: {0}")]
    Write(io::Error),
    /// A message could not be encoded.
    #[error("encoding a message: {0}")]
    Encode(serde_json::Error),
}

/// State of the agent shared by all requests.
pub struct Agent {
    info: AgentInfo,
    mem: Arc<MemWriter>,
    disk: Arc<Mutex<()>>,
    ballast: Arc<Ballast>,
    net: Arc<Mutex<()>>,
    planner: Arc<Planner>,
    store: Arc<Store>,
    apps: Arc<Apps>,
}

impl Agent {
    /// An agent announcing `info` that keeps nothing across restarts and
    /// cannot give applications MPTCP (tests).
    pub fn new(info: AgentInfo) -> Self {
        let store = Arc::new(Store::ephemeral());
        let env = apps::Env {
            systemd: None,
            mptcpize: false,
            bpf: info.mptcp_apps.bpf.clone(),
            cgroup_root: apps::cgroup_root(),
        };
        let apps = Arc::new(Apps::new(
            env,
            Box::new(apps::hook::NoHook),
            Arc::clone(&store),
        ));
        Self::with_parts(info, store, apps)
    }

    /// An agent announcing `info`, saving in `store`, with `apps` for
    /// MptcpApps. Staged NIC plans are applied at staging when the carrier
    /// is up; to apply them on later carrier changes, start the link
    /// watcher with [`Agent::planner`] ([`net::watch::spawn`]); to take
    /// back what an earlier run saved, [`Planner::restore`].
    pub fn with_parts(info: AgentInfo, store: Arc<Store>, apps: Arc<Apps>) -> Self {
        let net = Arc::new(Mutex::new(()));
        let planner = Arc::new(Planner::new(
            Arc::clone(&net),
            Arc::clone(&store),
            info.boot_ms,
        ));
        Self {
            info,
            mem: Arc::new(MemWriter::new()),
            disk: Arc::new(Mutex::new(())),
            ballast: Arc::new(Ballast::default()),
            net,
            planner,
            store,
            apps,
        }
    }

    /// The agent's identity.
    pub fn info(&self) -> &AgentInfo {
        &self.info
    }

    /// The agent's staged NIC plans.
    pub fn planner(&self) -> &Arc<Planner> {
        &self.planner
    }

    /// What the agent saves across restarts.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// MPTCP for applications.
    pub fn apps(&self) -> &Arc<Apps> {
        &self.apps
    }

    /// The lock that serializes network changes.
    pub fn net_lock(&self) -> &Arc<Mutex<()>> {
        &self.net
    }
}

/// Wraps a writer for [`serve`].
pub fn shared_writer(w: Box<dyn Write + Send>) -> SharedWriter {
    Arc::new(Mutex::new(w))
}

/// Writes one message as a JSON line.
pub fn send(writer: &SharedWriter, msg: &GuestMessage) -> Result<(), HandlerError> {
    let mut line = serde_json::to_vec(msg).map_err(HandlerError::Encode)?;
    line.push(b'\n');
    // A poisoned lock only means another thread panicked mid-write; the
    // writer itself is still usable.
    let mut w = writer.lock().unwrap_or_else(|p| p.into_inner());
    w.write_all(&line)
        .and_then(|()| w.flush())
        .map_err(HandlerError::Write)
}

/// Sends the `Ready` event.
pub fn send_ready(writer: &SharedWriter, info: &AgentInfo) -> Result<(), HandlerError> {
    send(
        writer,
        &GuestMessage::Event {
            event: GuestEvent::Ready(info.clone()),
        },
    )
}

/// Reads one line of at most [`MAX_LINE`] bytes (without the newline).
/// `Ok(None)` on EOF; over-long lines come back empty.
fn read_line<R: BufRead>(reader: &mut R, buf: &mut Vec<u8>) -> io::Result<Option<()>> {
    buf.clear();
    let mut too_long = false;
    loop {
        let n = match reader.by_ref().take(MAX_LINE).read_until(b'\n', buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.last() == Some(&b'\n') {
            buf.pop();
        } else if n == 0 && buf.is_empty() && !too_long {
            return Ok(None);
        } else if (n as u64) == MAX_LINE {
            // Hit the length cap: discard and keep reading to the newline.
            too_long = true;
            buf.clear();
            continue;
        }
        // A whole line, or a partial one cut by EOF.
        if too_long {
            eprintln!("edgemig-guest: dropped a request line longer than {MAX_LINE} bytes");
            buf.clear();
        }
        return Ok(Some(()));
    }
}

/// Serves requests from `reader` until EOF (`Ok`) or a read/write error.
pub fn serve<R: BufRead>(
    reader: &mut R,
    writer: &SharedWriter,
    agent: &Agent,
) -> Result<(), HandlerError> {
    let mut buf = Vec::new();
    while read_line(reader, &mut buf)
        .map_err(HandlerError::Read)?
        .is_some()
    {
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<HostMessage>(&buf) {
            Ok(msg) => handle(msg, writer, agent)?,
            Err(e) => reject(&buf, &e, writer)?,
        }
    }
    Ok(())
}

/// Answers an unparseable line: an error response if it carries an id,
/// otherwise just a log line.
fn reject(line: &[u8], err: &serde_json::Error, writer: &SharedWriter) -> Result<(), HandlerError> {
    let text = String::from_utf8_lossy(line);
    eprintln!("edgemig-guest: ignoring bad request line ({err}): {text:.200}");
    let id = serde_json::from_slice::<serde_json::Value>(line)
        .ok()
        .and_then(|v| v.get("id").and_then(serde_json::Value::as_u64));
    match id {
        Some(id) => send(
            writer,
            &GuestMessage::Response {
                id,
                outcome: GuestOutcome::Error(format!("unsupported request: {err}")),
            },
        ),
        None => Ok(()),
    }
}

fn respond(writer: &SharedWriter, id: u64, outcome: GuestOutcome) -> Result<(), HandlerError> {
    send(writer, &GuestMessage::Response { id, outcome })
}

fn outcome<T, E: std::error::Error>(
    r: Result<T, E>,
    ok: impl FnOnce(T) -> GuestReply,
) -> GuestOutcome {
    match r {
        Ok(v) => GuestOutcome::Ok(ok(v)),
        Err(e) => GuestOutcome::Error(error_chain(&e)),
    }
}

/// An error and its causes, `: `-separated; a cause an outer message
/// already spells out is not repeated.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

/// Handles one request: quick ones inline, slow ones on a thread.
fn handle(msg: HostMessage, writer: &SharedWriter, agent: &Agent) -> Result<(), HandlerError> {
    let id = msg.id;
    match msg.request {
        GuestRequest::Hello => respond(
            writer,
            id,
            GuestOutcome::Ok(GuestReply::Hello(agent.info.clone())),
        ),
        GuestRequest::MemWrite { mib, rate_mib_s } => respond(
            writer,
            id,
            outcome(agent.mem.start(mib, rate_mib_s), GuestReply::Mem),
        ),
        GuestRequest::MemStop => respond(writer, id, outcome(agent.mem.stop(), GuestReply::Mem)),
        GuestRequest::MemStatus => {
            respond(writer, id, outcome(agent.mem.status(), GuestReply::Mem))
        }
        GuestRequest::MemVerify => {
            let mem = Arc::clone(&agent.mem);
            background(writer, id, move || {
                outcome(mem.verify(), GuestReply::MemVerify)
            })
        }
        GuestRequest::MemFill { mib } => {
            let ballast = Arc::clone(&agent.ballast);
            background(writer, id, move || {
                outcome(ballast.fill(mib), GuestReply::Filled)
            })
        }
        GuestRequest::DiskWrite {
            device,
            mib,
            offset_mib,
            seed,
        } => {
            let lock = Arc::clone(&agent.disk);
            let device = device.unwrap_or_else(|| DEFAULT_DATA_DISK.to_string());
            background(writer, id, move || {
                let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
                outcome(
                    disk::write(&device, Region::new(offset_mib, mib), seed),
                    GuestReply::Disk,
                )
            })
        }
        GuestRequest::DiskVerify {
            device,
            mib,
            offset_mib,
            seed,
        } => {
            let lock = Arc::clone(&agent.disk);
            let device = device.unwrap_or_else(|| DEFAULT_DATA_DISK.to_string());
            background(writer, id, move || {
                let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
                outcome(
                    disk::verify(&device, Region::new(offset_mib, mib), seed),
                    GuestReply::Disk,
                )
            })
        }
        GuestRequest::NicUp {
            nic,
            mac,
            address,
            gateway,
        } => {
            let lock = Arc::clone(&agent.net);
            let store = Arc::clone(&agent.store);
            background(writer, id, move || {
                let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
                let done = net::nic_up(NicRef { name: &nic, mac }, &address, &gateway);
                if let Ok(report) = &done {
                    store.update(|s| {
                        s.nic_applied(SavedNic {
                            nic: report.nic.clone(),
                            mac: report.mac,
                            address,
                            gateway,
                        })
                    });
                }
                outcome(done, GuestReply::Nic)
            })
        }
        GuestRequest::NicRetire { nic, mac } => {
            let lock = Arc::clone(&agent.net);
            let planner = Arc::clone(&agent.planner);
            let store = Arc::clone(&agent.store);
            background(writer, id, move || {
                let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
                let target = NicRef { name: &nic, mac };
                // The plan goes whatever happens to the NIC.
                let name = link::resolve_name(target).unwrap_or_else(|_| nic.clone());
                planner.forget(&name);
                let done = net::nic_retire(target);
                if done.is_ok() {
                    store.update(|s| s.nic_retired(&name));
                }
                outcome(done, GuestReply::Nic)
            })
        }
        GuestRequest::NicReannounce { nic, mac, address } => {
            let lock = Arc::clone(&agent.net);
            background(writer, id, move || {
                let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
                outcome(
                    net::nic_reannounce(NicRef { name: &nic, mac }, &address),
                    GuestReply::Nic,
                )
            })
        }
        GuestRequest::NicPlan {
            nic,
            mac,
            address,
            gateway,
        } => {
            let planner = Arc::clone(&agent.planner);
            background(writer, id, move || {
                outcome(
                    planner.stage(NicRef { name: &nic, mac }, &address, &gateway),
                    GuestReply::NicPlan,
                )
            })
        }
        GuestRequest::NicPlans => respond(
            writer,
            id,
            GuestOutcome::Ok(GuestReply::NicPlans(agent.planner.report())),
        ),
        GuestRequest::NetStatus => respond(writer, id, outcome(net::net_status(), GuestReply::Net)),
        GuestRequest::MptcpApps { scope, restart } => {
            let apps = Arc::clone(&agent.apps);
            background(writer, id, move || {
                outcome(apps.apply(scope, restart), GuestReply::MptcpApps)
            })
        }
        GuestRequest::MptcpAppsStatus => {
            let apps = Arc::clone(&agent.apps);
            background(writer, id, move || {
                GuestOutcome::Ok(GuestReply::MptcpApps(apps.report()))
            })
        }
        GuestRequest::Babble { mib } => {
            babble(writer, mib)?;
            respond(
                writer,
                id,
                GuestOutcome::Ok(GuestReply::Hello(agent.info.clone())),
            )
        }
    }
}

/// Writes one line of `mib` MiB of junk, in pieces, holding the writer.
fn babble(writer: &SharedWriter, mib: u32) -> Result<(), HandlerError> {
    let piece = vec![b'x'; 1 << 20];
    let mut w = writer.lock().unwrap_or_else(|p| p.into_inner());
    for _ in 0..mib {
        w.write_all(&piece).map_err(HandlerError::Write)?;
    }
    w.write_all(b"\n")
        .and_then(|()| w.flush())
        .map_err(HandlerError::Write)
}

/// Runs `work` on a thread and sends its outcome as the response to `id`.
fn background(
    writer: &SharedWriter,
    id: u64,
    work: impl FnOnce() -> GuestOutcome + Send + 'static,
) -> Result<(), HandlerError> {
    let w = Arc::clone(writer);
    let spawned = std::thread::Builder::new()
        .name(format!("request-{id}"))
        .spawn(move || {
            if let Err(e) = respond(&w, id, work()) {
                eprintln!("edgemig-guest: answering request {id}: {e}");
            }
        });
    match spawned {
        Ok(_) => Ok(()),
        Err(e) => respond(
            writer,
            id,
            GuestOutcome::Error(format!("cannot start worker thread: {e}")),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgemig_guest_proto::PROTOCOL_VERSION;
    use std::io::BufReader;
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    fn info() -> AgentInfo {
        AgentInfo {
            version: "test".into(),
            protocol: PROTOCOL_VERSION,
            boot_ms: 42,
            kernel: "test".into(),
            systemd: false,
            mptcp_apps: Default::default(),
        }
    }

    /// Starts `serve` on one end of a socket pair; returns the host end.
    fn start() -> (
        UnixStream,
        BufReader<UnixStream>,
        std::thread::JoinHandle<()>,
    ) {
        let (host, guest) = UnixStream::pair().unwrap();
        let guest_w = guest.try_clone().unwrap();
        let t = std::thread::spawn(move || {
            let agent = Agent::new(info());
            let writer = shared_writer(Box::new(guest_w));
            send_ready(&writer, agent.info()).unwrap();
            let mut reader = BufReader::new(guest);
            serve(&mut reader, &writer, &agent).unwrap();
        });
        let reader = BufReader::new(host.try_clone().unwrap());
        host.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        (host, reader, t)
    }

    fn recv(r: &mut BufReader<UnixStream>) -> GuestMessage {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap()
    }

    fn request(
        w: &mut UnixStream,
        r: &mut BufReader<UnixStream>,
        id: u64,
        req: GuestRequest,
    ) -> GuestOutcome {
        let line = serde_json::to_string(&HostMessage { id, request: req }).unwrap();
        writeln!(w, "{line}").unwrap();
        match recv(r) {
            GuestMessage::Response { id: got, outcome } => {
                assert_eq!(got, id);
                outcome
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn ready_hello_garbage_and_mem_cycle() {
        let (mut w, mut r, t) = start();
        assert_eq!(
            recv(&mut r),
            GuestMessage::Event {
                event: GuestEvent::Ready(info())
            }
        );
        // Garbage without an id is ignored; the loop survives.
        w.write_all(b"not json\n\xff\xfe\n\n").unwrap();
        assert_eq!(
            request(&mut w, &mut r, 1, GuestRequest::Hello),
            GuestOutcome::Ok(GuestReply::Hello(info()))
        );
        // Unknown op with an id gets an error response.
        w.write_all(b"{\"id\":9,\"request\":{\"op\":\"reboot\"}}\n")
            .unwrap();
        match recv(&mut r) {
            GuestMessage::Response {
                id: 9,
                outcome: GuestOutcome::Error(_),
            } => {}
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            request(&mut w, &mut r, 2, GuestRequest::MemVerify),
            GuestOutcome::Error(_)
        ));
        let out = request(
            &mut w,
            &mut r,
            3,
            GuestRequest::MemWrite {
                mib: 2,
                rate_mib_s: None,
            },
        );
        assert!(
            matches!(out, GuestOutcome::Ok(GuestReply::Mem(ref s)) if s.mib == 2),
            "{out:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
        let out = request(&mut w, &mut r, 4, GuestRequest::MemStop);
        assert!(
            matches!(out, GuestOutcome::Ok(GuestReply::Mem(ref s)) if !s.running),
            "{out:?}"
        );
        match request(&mut w, &mut r, 5, GuestRequest::MemVerify) {
            GuestOutcome::Ok(GuestReply::MemVerify(rep)) => {
                assert_eq!(rep.pages, 512);
                assert_eq!(rep.bad_pages, 0);
            }
            other => panic!("unexpected {other:?}"),
        }
        drop(w);
        drop(r);
        t.join().unwrap();
    }

    #[test]
    fn net_requests_over_the_port() {
        let (mut w, mut r, t) = start();
        recv(&mut r);
        assert!(matches!(
            request(&mut w, &mut r, 1, GuestRequest::NetStatus),
            GuestOutcome::Ok(GuestReply::Net(_))
        ));
        let bad = GuestRequest::NicUp {
            nic: "eth9".into(),
            mac: None,
            address: "10.0.0.1".into(),
            gateway: "10.0.0.254".into(),
        };
        match request(&mut w, &mut r, 2, bad) {
            GuestOutcome::Error(e) => assert!(e.contains("address"), "{e}"),
            other => panic!("unexpected {other:?}"),
        }
        let missing = format!("nope{}", std::process::id() % 100_000);
        let plan = GuestRequest::NicPlan {
            nic: missing,
            mac: None,
            address: "10.0.0.1/24".into(),
            gateway: "10.0.0.254".into(),
        };
        match request(&mut w, &mut r, 3, plan) {
            GuestOutcome::Error(e) => assert!(e.contains("no such network interface"), "{e}"),
            other => panic!("unexpected {other:?}"),
        }
        match request(&mut w, &mut r, 4, GuestRequest::NicPlans) {
            GuestOutcome::Ok(GuestReply::NicPlans(rep)) => assert!(rep.plans.is_empty()),
            other => panic!("unexpected {other:?}"),
        }
        drop(w);
        drop(r);
        t.join().unwrap();
    }

    #[test]
    fn disk_requests_over_the_port() {
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path().join("disk.img");
        std::fs::write(&dev, vec![0u8; 1 << 20]).unwrap();
        let device = Some(dev.to_str().unwrap().to_string());
        let (mut w, mut r, t) = start();
        recv(&mut r);
        let written = match request(
            &mut w,
            &mut r,
            1,
            GuestRequest::DiskWrite {
                device: device.clone(),
                mib: 1,
                offset_mib: 0,
                seed: 5,
            },
        ) {
            GuestOutcome::Ok(GuestReply::Disk(rep)) => rep,
            other => panic!("unexpected {other:?}"),
        };
        match request(
            &mut w,
            &mut r,
            2,
            GuestRequest::DiskVerify {
                device: device.clone(),
                mib: 1,
                offset_mib: 0,
                seed: 5,
            },
        ) {
            GuestOutcome::Ok(GuestReply::Disk(rep)) => {
                assert!(rep.ok);
                assert_eq!(rep.checksum, written.checksum);
            }
            other => panic!("unexpected {other:?}"),
        }
        let missing = Some(dir.path().join("nope").to_str().unwrap().to_string());
        assert!(matches!(
            request(
                &mut w,
                &mut r,
                3,
                GuestRequest::DiskVerify {
                    device: missing,
                    mib: 1,
                    offset_mib: 0,
                    seed: 5
                }
            ),
            GuestOutcome::Error(_)
        ));
        drop(w);
        drop(r);
        t.join().unwrap();
    }
}
