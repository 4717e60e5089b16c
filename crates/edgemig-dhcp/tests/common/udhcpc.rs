//! busybox's DHCP client in the client namespace, with an event script
//! that records what it was given (and, if asked, configures the address
//! as a real client would, so that renewals go out by unicast).

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use edgemig_testkit::wait_until;

use super::Site;

/// Hang guard of a client run (udhcpc gives up by itself much earlier).
const RUN_LIMIT: Duration = Duration::from_secs(90);

const SCRIPT: &str = r#"#!/bin/sh
# udhcpc event script of the edgemig-dhcp tests.
echo "$1 ip=$ip subnet=$subnet mask=$mask router=$router lease=$lease serverid=$serverid dns=$dns" >> "$EDGEMIG_DHCP_RECORD"
if [ -n "$EDGEMIG_DHCP_CONFIGURE" ]; then
  case "$1" in
    bound) ip -4 addr flush dev "$interface"; ip addr add "$ip/$mask" dev "$interface" ;;
    renew) ip addr replace "$ip/$mask" dev "$interface" ;;
    deconfig) ip -4 addr flush dev "$interface" ;;
  esac
fi
exit 0
"#;

/// One line of the record: the event and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `bound`, `renew`, `deconfig`, `nak`, `leasefail`.
    pub kind: String,
    /// `ip`, `subnet`, `mask`, `router`, `lease`, `serverid`, `dns`.
    pub params: HashMap<String, String>,
}

impl Event {
    /// Parameter `key` ("" when unset).
    pub fn get(&self, key: &str) -> &str {
        self.params.get(key).map_or("", String::as_str)
    }
}

/// A udhcpc process the test started; dropping it ends it (by pid) and
/// reaps it.
pub struct Udhcpc {
    child: Child,
    record: PathBuf,
    name: String,
    log: PathBuf,
}

impl Udhcpc {
    /// Starts `busybox udhcpc -f -i IFACE -s SCRIPT ARGS...` in the
    /// client namespace, recording into a fresh file named `name`;
    /// `configure` makes the script put the address on the interface.
    pub fn spawn(site: &Site, name: &str, args: &[&str], configure: bool) -> Self {
        let script = site.dir.path().join("udhcpc.script");
        if !script.exists() {
            std::fs::write(&script, SCRIPT).expect("write script");
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
                .expect("chmod script");
        }
        let record = site.dir.path().join(format!("{name}.record"));
        let log = site.dir.path().join(format!("{name}.log"));
        let out = File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", site.client.name()])
            .args(["busybox", "udhcpc", "-f", "-i", &site.client_if, "-s"])
            .arg(&script)
            .args(args)
            .env("EDGEMIG_DHCP_RECORD", &record)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        if configure {
            cmd.env("EDGEMIG_DHCP_CONFIGURE", "1");
        }
        // `ip netns exec` execs the client: the pid is udhcpc's.
        let child = cmd.spawn().expect("spawn udhcpc (busybox-static needed)");
        Self {
            child,
            record,
            name: name.to_string(),
            log,
        }
    }

    /// Runs a client to the end: `-q -n` (quit once bound, fail when no
    /// lease comes) and ARGS. Returns the exit status and the record.
    pub fn run(site: &Site, name: &str, args: &[&str]) -> (ExitStatus, Vec<Event>) {
        let mut all = vec!["-q", "-n"];
        all.extend_from_slice(args);
        let mut client = Self::spawn(site, name, &all, false);
        let status = client.wait();
        (status, client.events())
    }

    /// Waits for the client to exit.
    pub fn wait(&mut self) -> ExitStatus {
        let child = &mut self.child;
        match wait_until("udhcpc to exit", RUN_LIMIT, || {
            child.try_wait().ok().flatten()
        }) {
            Ok(status) => status,
            Err(e) => panic!("{e}\n{}", self.log()),
        }
    }

    /// The client's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The events recorded so far.
    pub fn events(&self) -> Vec<Event> {
        read_record(&self.record)
    }

    /// Waits until an event satisfies `pred` and returns it.
    pub fn wait_for(&self, what: &str, pred: impl Fn(&Event) -> bool) -> Event {
        let found = wait_until(what, RUN_LIMIT, || self.events().into_iter().find(&pred));
        match found {
            Ok(event) => event,
            Err(e) => panic!(
                "{e} ({}): events {:?}\n{}",
                self.name,
                self.events(),
                self.log()
            ),
        }
    }

    /// What the client printed.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Udhcpc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            edgemig_testkit::kill(self.child.id(), libc::SIGTERM);
            let _ = self.child.wait();
        }
    }
}

fn read_record(path: &Path) -> Vec<Event> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let kind = words.next()?.to_string();
            let params = words
                .filter_map(|w| w.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            Some(Event { kind, params })
        })
        .collect()
}
