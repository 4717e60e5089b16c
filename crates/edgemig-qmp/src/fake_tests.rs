//! Client tests against an in-process fake QMP server on a unix socket.

use std::future::Future;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::task::JoinHandle;

use crate::{EventStream, KnownEvent, MigrationStatus, Qmp, QmpConfig, QmpError, RunState};

const GREETING: &str = r#"{"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": "fake"}, "capabilities": ["oob"]}}"#;
const T: Duration = Duration::from_secs(5);

struct FakeConn {
    rd: BufReader<OwnedReadHalf>,
    wr: OwnedWriteHalf,
}

impl FakeConn {
    /// Next command from the client; `None` on EOF.
    async fn read_cmd(&mut self) -> Option<Value> {
        let mut line = String::new();
        let n = self.rd.read_line(&mut line).await.unwrap();
        (n > 0).then(|| serde_json::from_str(&line).unwrap())
    }

    async fn send_raw(&mut self, bytes: &[u8]) {
        self.wr.write_all(bytes).await.unwrap();
        self.wr.write_all(b"\n").await.unwrap();
    }

    async fn send(&mut self, v: Value) {
        self.send_raw(v.to_string().as_bytes()).await;
    }

    async fn reply(&mut self, cmd: &Value, ret: Value) {
        self.send(json!({"return": ret, "id": cmd["id"]})).await;
    }
}

/// Starts a fake server that greets, accepts `qmp_capabilities`, then runs
/// `script`; connects a client to it.
async fn fake<F, Fut>(
    config: QmpConfig,
    script: F,
) -> (Qmp, EventStream, JoinHandle<()>, tempfile::TempDir)
where
    F: FnOnce(FakeConn) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qmp.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let server = tokio::spawn(async move {
        let (sock, _) = listener.accept().await.unwrap();
        let (rd, wr) = sock.into_split();
        let mut conn = FakeConn {
            rd: BufReader::new(rd),
            wr,
        };
        conn.send_raw(GREETING.as_bytes()).await;
        let caps = conn.read_cmd().await.unwrap();
        assert_eq!(caps["execute"], "qmp_capabilities");
        assert!(caps.get("arguments").is_none());
        conn.reply(&caps, json!({})).await;
        script(conn).await;
    });
    let (qmp, events) = Qmp::connect_with(&path, &config).await.unwrap();
    (qmp, events, server, dir)
}

#[tokio::test]
async fn survives_unknown_events_garbage_and_unknown_enum_values() {
    let (qmp, mut events, server, _dir) = fake(QmpConfig::default(), |mut c| async move {
        let cmd = c.read_cmd().await.unwrap();
        assert_eq!(cmd["execute"], "query-status");
        c.send(
            json!({"event": "SOME_FUTURE_EVENT", "data": {"x": {"y": [1, 2]}},
                      "timestamp": {"seconds": 1, "microseconds": 2}}),
        )
        .await;
        c.send_raw(b"this is { not json").await;
        c.send_raw(b"\xff\xfe invalid utf-8").await;
        c.send_raw(b"[1, 2, 3]").await;
        c.send_raw(b"").await;
        c.send(json!({"return": {}})).await; // reply without id
        c.send(
            json!({"event": "MIGRATION", "data": {"status": "future-state"},
                      "timestamp": {"seconds": 3, "microseconds": 4}}),
        )
        .await;
        c.send(json!({"event": "STOP", "timestamp": {"seconds": 5, "microseconds": 6}}))
            .await;
        c.reply(
            &cmd,
            json!({"status": "some-new-runstate", "running": false, "extra": true}),
        )
        .await;
        let cmd = c.read_cmd().await.unwrap();
        c.reply(&cmd, json!({"status": "paused", "running": false}))
            .await;
        // Stay connected until the client hangs up.
        assert!(c.read_cmd().await.is_none());
    })
    .await;

    assert_eq!(qmp.version().major, 10);
    let st = qmp.query_status().await.unwrap();
    assert_eq!(st.status, RunState::Other("some-new-runstate".into()));
    assert_eq!(qmp.query_status().await.unwrap().status, RunState::Paused);

    let e = events.recv().await.unwrap();
    assert_eq!(e.name, "SOME_FUTURE_EVENT");
    assert_eq!(e.known(), KnownEvent::Unknown("SOME_FUTURE_EVENT".into()));
    assert_eq!(e.data["x"]["y"][1], 2);
    let e = events.recv().await.unwrap();
    assert_eq!(
        e.known(),
        KnownEvent::Migration {
            status: MigrationStatus::Other("future-state".into())
        }
    );
    assert_eq!(e.timestamp.seconds, 3);
    let e = events.recv().await.unwrap();
    assert_eq!(e.known(), KnownEvent::Stop);
    assert!(events.try_recv().is_none());

    drop(qmp);
    tokio::time::timeout(T, server).await.unwrap().unwrap();
    // Last handle gone: the stream ends.
    assert!(events.recv().await.is_none());
}

#[tokio::test]
async fn error_reply_maps_to_class_and_desc() {
    let (qmp, _events, _server, _dir) = fake(QmpConfig::default(), |mut c| async move {
        let cmd = c.read_cmd().await.unwrap();
        assert_eq!(cmd["execute"], "blockdev-del");
        assert_eq!(cmd["arguments"], json!({"node-name": "nope"}));
        c.send(json!({"id": cmd["id"],
                      "error": {"class": "DeviceNotFound", "desc": "Node 'nope' not found"}}))
            .await;
        let cmd = c.read_cmd().await.unwrap();
        c.send(json!({"id": cmd["id"],
                      "error": {"class": "CommandNotFound", "desc": "The command x has not been found"}}))
            .await;
        while c.read_cmd().await.is_some() {}
    })
    .await;
    match qmp.blockdev_del("nope").await {
        Err(QmpError::Qemu {
            command,
            class,
            desc,
        }) => {
            assert_eq!(command, "blockdev-del");
            assert_eq!(class, "DeviceNotFound");
            assert_eq!(desc, "Node 'nope' not found");
        }
        other => panic!("{other:?}"),
    }
    let err = qmp.execute("x", None).await.unwrap_err();
    assert!(err.is_command_not_found(), "{err}");
}

#[tokio::test]
async fn server_closing_fails_pending_and_later_calls() {
    let (qmp, mut events, server, _dir) = fake(QmpConfig::default(), |mut c| async move {
        let _ = c.read_cmd().await.unwrap();
        let _ = c.read_cmd().await.unwrap();
        c.send(json!({"event": "SHUTDOWN", "data": {"guest": false, "reason": "host-qmp-quit"}}))
            .await;
        // Drop the connection without answering.
    })
    .await;
    let a = tokio::spawn({
        let q = qmp.clone();
        async move { q.execute("query-status", None).await }
    });
    let b = qmp.execute("query-migrate", None);
    let (a, b) = tokio::join!(a, b);
    assert!(matches!(a.unwrap(), Err(QmpError::ConnectionClosed)));
    assert!(matches!(b, Err(QmpError::ConnectionClosed)));
    server.await.unwrap();
    tokio::time::timeout(T, qmp.closed()).await.unwrap();
    assert!(qmp.is_closed());
    assert!(matches!(qmp.stop().await, Err(QmpError::ConnectionClosed)));
    // `quit` treats a closed connection as done.
    qmp.quit().await.unwrap();
    // Buffered events are still delivered, then the stream ends.
    assert_eq!(events.recv().await.unwrap().name, "SHUTDOWN");
    assert!(events.recv().await.is_none());
    assert!(qmp.subscribe().recv().await.is_none());
    let err = events
        .wait_for(|_| true, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(err, QmpError::ConnectionClosed));
}

#[tokio::test]
async fn concurrent_callers_get_their_own_replies_out_of_order() {
    const N: usize = 16;
    let (qmp, _events, _server, _dir) = fake(QmpConfig::default(), |mut c| async move {
        let mut cmds = Vec::new();
        for _ in 0..N {
            cmds.push(c.read_cmd().await.unwrap());
        }
        for cmd in cmds.iter().rev() {
            let echo = cmd["arguments"]["n"].clone();
            c.reply(cmd, json!({ "n": echo })).await;
        }
        while c.read_cmd().await.is_some() {}
    })
    .await;
    let tasks: Vec<_> = (0..N)
        .map(|n| {
            let q = qmp.clone();
            tokio::spawn(async move { (n, q.execute("echo", Some(json!({ "n": n }))).await) })
        })
        .collect();
    for t in tasks {
        let (n, r) = t.await.unwrap();
        assert_eq!(r.unwrap()["n"], json!(n));
    }
}

#[tokio::test]
async fn timeout_then_late_reply_is_discarded() {
    let (qmp, _events, _server, _dir) = fake(QmpConfig::default(), |mut c| async move {
        let slow = c.read_cmd().await.unwrap();
        let next = c.read_cmd().await.unwrap();
        c.reply(&slow, json!({"which": "slow"})).await;
        c.reply(&next, json!({"which": "next"})).await;
        while c.read_cmd().await.is_some() {}
    })
    .await;
    let err = qmp
        .execute_timeout("slow", None, Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(matches!(err, QmpError::Timeout { .. }), "{err}");
    let short = qmp.with_timeout(Duration::from_secs(3));
    assert_eq!(short.timeout(), Duration::from_secs(3));
    let v = short.execute("next", None).await.unwrap();
    assert_eq!(v["which"], "next");
}

#[tokio::test]
async fn lagging_subscriber_does_not_block_replies() {
    let config = QmpConfig {
        event_capacity: 4,
        ..QmpConfig::default()
    };
    let (qmp, mut events, _server, _dir) = fake(config, |mut c| async move {
        let cmd = c.read_cmd().await.unwrap();
        for pass in 0..200 {
            c.send(json!({"event": "MIGRATION_PASS", "data": {"pass": pass}}))
                .await;
        }
        c.reply(&cmd, json!({})).await;
        while c.read_cmd().await.is_some() {}
    })
    .await;
    qmp.execute("query-migrate", None).await.unwrap();
    let e = events
        .wait_for(|e| e.known() == KnownEvent::MigrationPass { pass: 199 }, T)
        .await
        .unwrap();
    assert_eq!(e.name, "MIGRATION_PASS");
    assert!(events.lagged() >= 190, "lagged {}", events.lagged());
}

#[tokio::test]
async fn bad_greeting_is_a_protocol_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qmp.sock");
    let listener = UnixListener::bind(&path).unwrap();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        sock.write_all(b"{\"hello\": 1}\n").await.unwrap();
        tokio::time::sleep(T).await;
    });
    let err = Qmp::connect(&path).await.unwrap_err();
    assert!(matches!(err, QmpError::Protocol(_)), "{err}");
}

#[tokio::test]
async fn connect_when_ready_waits_for_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("late.sock");
    let err = Qmp::connect_when_ready(&path, &QmpConfig::default(), Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(matches!(err, QmpError::Timeout { .. }), "{err}");

    let server_path = path.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let listener = UnixListener::bind(&server_path).unwrap();
        let (sock, _) = listener.accept().await.unwrap();
        let (rd, wr) = sock.into_split();
        let mut c = FakeConn {
            rd: BufReader::new(rd),
            wr,
        };
        c.send_raw(GREETING.as_bytes()).await;
        let caps = c.read_cmd().await.unwrap();
        c.reply(&caps, json!({})).await;
        while c.read_cmd().await.is_some() {}
    });
    let (qmp, _events) = Qmp::connect_when_ready(&path, &QmpConfig::default(), T)
        .await
        .unwrap();
    assert_eq!(qmp.greeting().package, "fake");
}
