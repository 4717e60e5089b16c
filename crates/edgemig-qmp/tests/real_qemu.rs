//! Integration tests against a real `qemu-system-x86_64` (TCG, no guest).
//!
//! Each test starts its own QEMU in its own tempdir and kills it by pid
//! when the guard drops, even if the test panics.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use edgemig_qmp::{
    EventStream, KnownEvent, MigrationCapability, MigrationChannel, MigrationStatus, MirrorArgs,
    MirrorSyncMode, NbdExportArgs, NbdServerArgs, Qmp, QmpConfig, QmpError, RunState,
    ShutdownCause,
};
use serde_json::json;

const T: Duration = Duration::from_secs(20);

fn qemu_binary() -> String {
    std::env::var("EDGEMIG_QEMU").unwrap_or_else(|_| "qemu-system-x86_64".into())
}

/// A QEMU process plus its tempdir; SIGKILLed and reaped on drop.
struct QemuGuard {
    child: Child,
    dir: tempfile::TempDir,
}

impl QemuGuard {
    fn spawn(extra: &[&str]) -> QemuGuard {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("qmp.sock");
        let log = File::create(dir.path().join("qemu.log")).expect("log file");
        let child = Command::new(qemu_binary())
            .args(["-machine", "none", "-nodefaults", "-display", "none", "-S"])
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", sock.display()))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", qemu_binary()));
        QemuGuard { child, dir }
    }

    fn sock(&self) -> PathBuf {
        self.dir.path().join("qmp.sock")
    }

    async fn connect(&self) -> (Qmp, EventStream) {
        Qmp::connect_when_ready(self.sock(), &QmpConfig::default(), T)
            .await
            .unwrap_or_else(|e| panic!("QMP connect failed: {e}; log: {}", self.log()))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("qemu.log")).unwrap_or_default()
    }
}

impl Drop for QemuGuard {
    fn drop(&mut self) {
        // Already gone after `quit`: errors are expected and harmless.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

#[tokio::test]
async fn lifecycle_status_stop_cont_quit() {
    let mut qemu = QemuGuard::spawn(&["-name", "edgemig-test"]);
    let (qmp, mut events) = qemu.connect().await;

    assert!(qmp.version().major >= 10, "{:?}", qmp.version());
    let v = qmp.query_version().await.unwrap();
    assert_eq!(v.qemu, qmp.version());
    assert_eq!(
        qmp.query_name().await.unwrap().as_deref(),
        Some("edgemig-test")
    );

    let st = qmp.query_status().await.unwrap();
    assert!(!st.running);
    assert!(
        matches!(st.status, RunState::Prelaunch | RunState::Paused),
        "{:?}",
        st.status
    );

    qmp.cont().await.unwrap();
    events
        .wait_for(|e| e.known() == KnownEvent::Resume, T)
        .await
        .unwrap();
    let st = qmp.query_status().await.unwrap();
    assert!(st.running);
    assert_eq!(st.status, RunState::Running);

    qmp.stop().await.unwrap();
    events
        .wait_for(|e| e.known() == KnownEvent::Stop, T)
        .await
        .unwrap();
    assert_eq!(qmp.query_status().await.unwrap().status, RunState::Paused);

    let err = qmp.execute("no-such-command", None).await.unwrap_err();
    assert!(err.is_command_not_found(), "{err}");

    qmp.quit().await.unwrap();
    let e = events
        .wait_for(|e| matches!(e.known(), KnownEvent::Shutdown { .. }), T)
        .await
        .unwrap();
    assert_eq!(
        e.known(),
        KnownEvent::Shutdown {
            guest: false,
            reason: ShutdownCause::HostQmpQuit
        }
    );
    tokio::time::timeout(T, qmp.closed()).await.unwrap();
    assert!(events.recv().await.is_none());
    assert!(matches!(
        qmp.query_status().await,
        Err(QmpError::ConnectionClosed)
    ));
    let status = qemu.child.wait().unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn concurrent_callers_on_real_qemu() {
    let qemu = QemuGuard::spawn(&[]);
    let (qmp, _events) = qemu.connect().await;
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let q = qmp.clone();
            tokio::spawn(async move {
                for _ in 0..25 {
                    assert!(!q.query_status().await.unwrap().running);
                    q.query_migrate().await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn migration_over_mptcp_channel() {
    let src = QemuGuard::spawn(&[]);
    let dst = QemuGuard::spawn(&["-incoming", "defer"]);
    let (sq, mut sev) = src.connect().await;
    let (dq, mut dev) = dst.connect().await;

    for q in [&sq, &dq] {
        q.migrate_set_capabilities(&[(MigrationCapability::Events, true)])
            .await
            .unwrap();
        q.migrate_set_parameters(json!({"downtime-limit": 300}))
            .await
            .unwrap();
    }
    let params = sq.query_migrate_parameters().await.unwrap();
    assert_eq!(params["downtime-limit"], 300);

    let port = free_port();
    dq.migrate_incoming(
        &[MigrationChannel::main_inet("127.0.0.1", port, true)],
        false,
    )
    .await
    .unwrap();
    let info = dq.query_migrate().await.unwrap();
    let addrs = info.socket_address.unwrap_or_default();
    let port_str = port.to_string();
    assert!(
        addrs.iter().any(|a| a["port"] == port_str.as_str()),
        "{addrs:?}"
    );

    sq.migrate(&[MigrationChannel::main_inet("127.0.0.1", port, true)])
        .await
        .unwrap();
    for ev in [&mut sev, &mut dev] {
        ev.wait_for(
            |e| {
                matches!(e.known(), KnownEvent::Migration { status }
                    if status == MigrationStatus::Completed || status == MigrationStatus::Failed)
            },
            T,
        )
        .await
        .unwrap();
    }
    let info = sq.query_migrate().await.unwrap();
    assert_eq!(
        info.status,
        Some(MigrationStatus::Completed),
        "{info:?}; src log: {}; dst log: {}",
        src.log(),
        dst.log()
    );
    assert!(info.ram.is_some());
    // The source switches its run state to `postmigrate` just after the
    // `completed` event; poll briefly.
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let st = sq.query_status().await.unwrap().status;
        if st == RunState::PostMigrate {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "source state {st}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A second migrate-cancel after completion is harmless.
    sq.migrate_cancel().await.unwrap();
}

#[tokio::test]
async fn mirror_to_nbd_export_over_mptcp() {
    let src = QemuGuard::spawn(&[]);
    let dst = QemuGuard::spawn(&[]);
    let (sq, mut sev) = src.connect().await;
    let (dq, _dev) = dst.connect().await;
    let size = 4 << 20;

    dq.blockdev_add(json!({"driver": "null-co", "node-name": "disk0", "size": size}))
        .await
        .unwrap();
    let port = free_port();
    dq.nbd_server_start(&NbdServerArgs::inet("127.0.0.1", port, true))
        .await
        .unwrap();
    dq.block_export_add(&NbdExportArgs::new("exp0", "disk0", "disk0", true))
        .await
        .unwrap();

    sq.blockdev_add(
        json!({"driver": "null-co", "node-name": "src0", "size": size, "read-zeroes": true}),
    )
    .await
    .unwrap();
    sq.blockdev_add(
        json!({"driver": "nbd", "node-name": "tgt0", "export": "disk0",
        "server": {"type": "inet", "host": "127.0.0.1", "port": port.to_string(), "mptcp": true}}),
    )
    .await
    .unwrap();
    let mut args = MirrorArgs::new("src0", "tgt0", MirrorSyncMode::Full);
    args.job_id = Some("mirror0".into());
    sq.blockdev_mirror(&args).await.unwrap();
    sev.wait_for(|e| matches!(e.known(), KnownEvent::BlockJobReady(_)), T)
        .await
        .unwrap();
    let jobs = sq.query_block_jobs().await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert!(jobs[0].ready);
    assert_eq!(jobs[0].device, "mirror0");
    assert_eq!(jobs[0].len, size);

    sq.block_job_complete("mirror0").await.unwrap();
    let done = sev
        .wait_for(|e| matches!(e.known(), KnownEvent::BlockJobCompleted(_)), T)
        .await
        .unwrap();
    match done.known() {
        KnownEvent::BlockJobCompleted(b) => assert_eq!(b.error, None),
        other => panic!("{other:?}"),
    }
    assert!(sq.query_block_jobs().await.unwrap().is_empty());

    // After the pivot the NBD node is the active one; tear down cleanly.
    sq.blockdev_del("tgt0").await.unwrap();
    let err = sq.blockdev_del("no-such-node").await.unwrap_err();
    assert!(err.qemu_class().is_some(), "{err}");
    dq.block_export_del("exp0", true).await.unwrap();
    dq.nbd_server_stop().await.unwrap();
}
