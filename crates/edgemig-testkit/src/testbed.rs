//! A testbed brought up for one test through the `edgemig` CLI, in its own
//! state directory, with a unique name; dropping it runs `testbed down` and
//! then deletes any namespace still carrying its prefix.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::unique_prefix;

/// A running test testbed.
#[derive(Debug)]
pub struct TestTestbed {
    /// Testbed name (prefix of its namespaces, `<name>_<node>`).
    pub name: String,
    cli: PathBuf,
    dir: tempfile::TempDir,
}

impl TestTestbed {
    /// A testbed handle with a fresh name and state directory; nothing is
    /// created until [`TestTestbed::up`].
    pub fn new(cli: &Path) -> Self {
        let name = unique_prefix().replacen("emt", "tb", 1);
        let dir = tempfile::Builder::new()
            .prefix(&format!("{name}-"))
            .tempdir()
            .expect("tempdir");
        crate::open_to_qemu(dir.path());
        Self {
            name,
            cli: cli.to_path_buf(),
            dir,
        }
    }

    /// Runs `edgemig ARGS...` with this testbed's state directory.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(&self.cli)
            .env("EDGEMIG_TESTBED_DIR", self.dir.path())
            .args(args)
            .output()
            .expect("run edgemig")
    }

    /// `edgemig testbed up --name NAME [--config FILE]`; panics on failure.
    pub fn up(&self, config: Option<&str>) -> Output {
        let out = self.try_up(config);
        assert!(
            out.status.success(),
            "testbed up failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Like [`TestTestbed::up`] but returns the output whatever happened.
    pub fn try_up(&self, config: Option<&str>) -> Output {
        let mut args = vec!["testbed", "up", "--name", &self.name];
        let path = self.dir.path().join("testbed.toml");
        if let Some(text) = config {
            std::fs::write(&path, text).expect("write testbed config");
            args.push("--config");
            args.push(path.to_str().expect("utf-8 path"));
        }
        self.cli(&args)
    }

    /// Runs `edgemig testbed ARGS... --name NAME`.
    pub fn testbed(&self, args: &[&str]) -> Output {
        let mut all = vec!["testbed"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--name", &self.name]);
        self.cli(&all)
    }

    /// Runs `edgemig --testbed NAME --site SITE ARGS...`.
    pub fn site_cli(&self, site: &str, args: &[&str]) -> Output {
        let mut all = vec!["--testbed", self.name.as_str(), "--site", site];
        all.extend_from_slice(args);
        self.cli(&all)
    }

    /// Runs `edgemig --json ... ARGS...` at `site`; panics unless it
    /// succeeds with JSON on stdout.
    pub fn site_json(&self, site: &str, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.site_cli(site, &all);
        assert!(
            out.status.success(),
            "edgemig {args:?} at {site} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON on stdout")
    }

    /// Creates and starts VM `name` at `site` (192 MiB, a data disk of
    /// `disk`, e.g. `64M`), starts its memory writer (32 MiB at 4 MiB/s)
    /// and writes `written_mib` MiB to its disk with seed 9: the workload
    /// the migration tests verify after each move.
    pub fn busy_vm(&self, site: &str, name: &str, disk: &str, written_mib: &str) {
        self.site_json(
            site,
            &["vm", "create", name, "--memory", "192M", "--disk", disk],
        );
        self.site_json(site, &["vm", "start", name]);
        self.site_json(site, &["vm", "guest", name, "hello"]);
        self.site_json(
            site,
            &[
                "vm",
                "guest",
                name,
                "mem-write",
                "--mib",
                "32",
                "--rate",
                "4",
            ],
        );
        self.site_json(
            site,
            &[
                "vm",
                "guest",
                name,
                "disk-write",
                "--mib",
                written_mib,
                "--seed",
                "9",
            ],
        );
    }

    /// State directory of the agent of `site` (`state_dir` in its config).
    pub fn site_state_dir(&self, site: &str) -> PathBuf {
        self.dir
            .path()
            .join(&self.name)
            .join("sites")
            .join(site)
            .join("state")
    }

    /// Namespace of `node`.
    pub fn netns(&self, node: &str) -> String {
        format!("{}_{node}", self.name)
    }

    /// Namespaces that exist now with this testbed's prefix.
    pub fn namespaces(&self) -> Vec<String> {
        let prefix = format!("{}_", self.name);
        std::fs::read_dir("/run/netns")
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(&prefix))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The testbed's own directory (inside the test's state directory).
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join(&self.name)
    }

    /// Runs `argv` inside `node`'s namespace (`ip netns exec`).
    pub fn exec(&self, node: &str, argv: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.netns(node)])
            .args(argv)
            .output()
            .expect("run ip netns exec")
    }
}

impl Drop for TestTestbed {
    fn drop(&mut self) {
        let _ = self.testbed(&["down"]);
        for ns in self.namespaces() {
            let _ = Command::new("ip").args(["netns", "delete", &ns]).status();
        }
    }
}
