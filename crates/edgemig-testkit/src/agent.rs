//! An `edgemigd` started for one test inside its own network namespace, with
//! its own state directory; dropping it stops the agent, ends every QEMU it
//! started (by the pids in its state directory) and deletes the namespace
//! and the files.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use edgemig_api::ApiClient;

use crate::netns::NetNs;
use crate::{alive, guest_image_dir, kill, unique_prefix, wait_until};

/// A running test agent.
#[derive(Debug)]
pub struct TestAgent {
    /// Unique prefix of this agent's resources.
    pub prefix: String,
    dir: tempfile::TempDir,
    child: Option<Child>,
    binary: PathBuf,
    image_dir: PathBuf,
    netns: Option<NetNs>,
}

impl TestAgent {
    /// Starts `edgemigd` (the binary at `binary`) in a new namespace with a
    /// default config and waits until its API answers.
    pub fn start(binary: &Path) -> Self {
        Self::start_with_image(binary, &guest_image_dir())
    }

    /// Like [`TestAgent::start`], with the guest image taken from `image_dir`.
    pub fn start_with_image(binary: &Path, image_dir: &Path) -> Self {
        let prefix = unique_prefix();
        let dir = tempfile::Builder::new()
            .prefix(&format!("{prefix}-"))
            .tempdir()
            .expect("tempdir");
        crate::open_to_qemu(dir.path());
        let netns = NetNs::new(&prefix);
        let mut agent = Self {
            prefix,
            dir,
            child: None,
            binary: binary.to_path_buf(),
            image_dir: image_dir.to_path_buf(),
            netns: Some(netns),
        };
        agent.write_config();
        agent.spawn();
        agent
    }

    fn write_config(&self) {
        let config = format!(
            r#"site = "test-site"
api_socket = "{dir}/api.sock"
state_dir = "{dir}/state"
image_dir = "{image}"
[vm_network]
bridge = "{prefix}br"
subnet = "10.77.0.0/24"
"#,
            dir = self.dir.path().display(),
            image = self.image_dir.display(),
            prefix = self.prefix,
        );
        std::fs::write(self.config_path(), config).expect("write config");
    }

    /// The config file path.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("site.toml")
    }

    /// The API socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("api.sock")
    }

    /// The agent's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("edgemigd.log")
    }

    /// The namespace the agent (and its VMs) run in.
    pub fn netns(&self) -> &NetNs {
        self.netns
            .as_ref()
            .expect("netns exists while the agent lives")
    }

    /// A client of the agent's API.
    pub fn client(&self) -> ApiClient {
        ApiClient::new(self.socket())
    }

    /// Pid of the agent process.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts the agent process and waits for its socket to answer.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "agent already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open agent log");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.prefix])
            .arg(&self.binary)
            .arg("--config")
            .arg(self.config_path())
            .env("EDGEMIG_LOG", "info,edgemig_agent=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn edgemigd");
        self.child = Some(child);
        let socket = self.socket();
        let mut exited = None;
        let ready = wait_until("edgemigd API socket", Duration::from_secs(30), || {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                exited = Some(status);
                return Some(());
            }
            std::os::unix::net::UnixStream::connect(&socket)
                .ok()
                .map(|_| ())
        });
        if let Some(status) = exited {
            self.child = None;
            panic!(
                "edgemigd exited: {status}\n--- agent log ---\n{}",
                self.log()
            );
        }
        if let Err(e) = ready {
            panic!("{e}\n--- agent log ---\n{}", self.log());
        }
    }

    /// Kills the agent process with `signal` and reaps it (VMs keep running).
    pub fn kill_agent(&mut self, signal: i32) {
        if let Some(mut child) = self.child.take() {
            kill(child.id(), signal);
            let _ = child.wait();
        }
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Pids of the live QEMU processes this agent started (from their pid
    /// files, checked against the process's command line).
    pub fn qemu_pids(&self) -> Vec<u32> {
        let vms = self.dir.path().join("state/vms");
        let Ok(entries) = std::fs::read_dir(&vms) else {
            return Vec::new();
        };
        let marker = vms.to_string_lossy().into_owned();
        entries
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path().join("qemu.pid")).ok())
            .filter_map(|s| s.trim().parse().ok())
            .filter(|pid: &u32| {
                alive(*pid)
                    && std::fs::read(format!("/proc/{pid}/cmdline"))
                        .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&marker))
            })
            .collect()
    }

    /// The serial console of VM `name`.
    pub fn serial_log(&self, name: &str) -> String {
        std::fs::read_to_string(
            self.dir
                .path()
                .join("state/vms")
                .join(name)
                .join("serial.log"),
        )
        .unwrap_or_default()
    }

    /// Agent log and every VM's serial console, for failure messages.
    pub fn diagnostics(&self) -> String {
        let mut out = format!("--- edgemigd log ---\n{}", self.log());
        if let Ok(entries) = std::fs::read_dir(self.dir.path().join("state/vms")) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                out.push_str(&format!(
                    "\n--- serial console of {name} ---\n{}",
                    self.serial_log(&name)
                ));
            }
        }
        out
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.diagnostics());
        }
        self.kill_agent(libc::SIGKILL);
        for pid in self.qemu_pids() {
            kill(pid, libc::SIGKILL);
            let _ = wait_until("QEMU exit", Duration::from_secs(10), || {
                (!alive(pid)).then_some(())
            });
        }
        self.netns.take();
    }
}
