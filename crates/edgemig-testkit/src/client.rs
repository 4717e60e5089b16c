//! A traffic client (the guest tool's `client` mode: MPTCP echo probes or
//! bulk transfer) running in a testbed client's namespace; killed on drop.

use std::process::{Child, Command, Output, Stdio};

use crate::{TestTestbed, kill, workspace_target};

/// A running client.
#[derive(Debug)]
pub struct TrafficClient(Option<Child>);

impl TrafficClient {
    /// Starts `edgemig-guest client --connect TARGET MODE --duration S`
    /// in `node`'s namespace (`--tcp` for plain TCP).
    pub fn start(
        tb: &TestTestbed,
        node: &str,
        target: &str,
        mode: &str,
        tcp: bool,
        seconds: u32,
    ) -> Self {
        let tool = workspace_target().join("x86_64-unknown-linux-gnu/release/edgemig-guest");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &tb.netns(node)]).arg(tool);
        cmd.args(["client", "--connect", target]);
        if tcp {
            cmd.arg("--tcp");
        }
        cmd.args([mode, "--duration", &seconds.to_string(), "--json"]);
        let child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start client");
        Self(Some(child))
    }

    /// Waits for the client's end and returns its JSON summary.
    pub fn summary(mut self) -> serde_json::Value {
        let out: Output = self
            .0
            .take()
            .expect("client")
            .wait_with_output()
            .expect("client output");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        serde_json::from_str(text.lines().last().unwrap_or_default()).unwrap_or_else(|_| {
            panic!(
                "no summary: {text} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }
}

impl Drop for TrafficClient {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            kill(c.id(), libc::SIGKILL);
            let _ = c.wait();
        }
    }
}
