//! The soak's view of its testbed: the two sites (agent API, namespace,
//! state directory, log), the paths between them (link emulators' control
//! sockets) and alice's namespace.

use std::path::PathBuf;
use std::time::Duration;

use edgemig_api::ApiClient;
use edgemig_testbed::TestbedState;

use super::watch::SiteWatch;

/// Longest wait for an ordinary agent request.
const API_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a guest request (verifications read the whole area).
const GUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// One site.
#[derive(Debug, Clone)]
pub struct Site {
    /// Name.
    pub name: String,
    /// Its agent, for short requests.
    pub api: ApiClient,
    /// Its agent, for guest requests.
    pub guest: ApiClient,
    /// API socket.
    pub api_socket: PathBuf,
    /// Namespace.
    pub netns: String,
    /// The agent's state directory.
    pub state_dir: PathBuf,
    /// The agent's log.
    pub log: PathBuf,
}

/// The testbed.
#[derive(Debug, Clone)]
pub struct Bed {
    /// Testbed name.
    pub testbed: String,
    /// Its directory.
    pub dir: PathBuf,
    /// The first two sites.
    pub sites: [Site; 2],
    /// The paths between them: name and emulator control socket.
    pub paths: Vec<(String, PathBuf)>,
    /// Alice's namespace.
    pub client_netns: String,
    /// `edgemigd`, to start a killed agent again.
    pub agent: PathBuf,
}

impl Bed {
    /// The soak's view of `state`; `client` is the measuring client's
    /// node. `None` when the testbed lacks two sites, a path between them
    /// or the client.
    pub fn new(state: &TestbedState, client: &str, agent: PathBuf) -> Option<Self> {
        let site = |i: usize| -> Option<Site> {
            let s = state.sites.get(i)?;
            Some(Site {
                name: s.name.clone(),
                api: ApiClient::new(&s.api_socket).with_timeout(API_TIMEOUT),
                guest: ApiClient::new(&s.api_socket).with_timeout(GUEST_TIMEOUT),
                api_socket: s.api_socket.clone(),
                netns: s.netns.clone(),
                state_dir: s.config.parent()?.join("state"),
                log: s.log.clone(),
            })
        };
        let sites = [site(0)?, site(1)?];
        let paths: Vec<_> = state
            .links
            .iter()
            .filter(|l| {
                l.kind == "path"
                    && sites.iter().all(|s| {
                        l.ends
                            .iter()
                            .any(|e| e.split(' ').next() == Some(s.name.as_str()))
                    })
            })
            .map(|l| (l.name.clone(), l.control.clone()))
            .collect();
        if paths.is_empty() {
            return None;
        }
        Some(Self {
            testbed: state.name.clone(),
            dir: state.dir.clone(),
            sites,
            paths,
            client_netns: state.netns_of(client)?.to_string(),
            agent,
        })
    }

    /// The sites as the split-brain watch sees them.
    pub fn watch_sites(&self) -> [SiteWatch; 2] {
        self.sites.clone().map(|s| SiteWatch {
            name: s.name,
            api_socket: s.api_socket,
            state_dir: s.state_dir,
        })
    }
}
