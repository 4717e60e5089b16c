//! `up` and `down`: build a testbed from its plan, and remove everything it
//! made — also after `up` failed halfway (then `up` itself calls `down`).

use std::ffi::OsString;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use edgemig_mptcp::{EndpointFlags, Limits, MptcpPm, NewEndpoint};

use edgemig_linkemu::units::parse_rate;

use crate::config::DirectoryKind;
use crate::config::TestbedConfig;
use crate::nl::{NlError, NsNetlink};
use crate::plan::{LinkEnd, Plan, plan, valid_testbed_name};
use crate::process::{self, ProcessError};
use crate::state::{LinkState, ProcessRecord, SiteState, StateError, TestbedState, testbed_dir};

/// How long an agent or emulator gets to become ready.
const READY_LIMIT: Duration = Duration::from_secs(30);
/// How long a process gets to exit after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// MPTCP limits on every node: the kernel's maximum.
const MPTCP_LIMITS: Limits = Limits {
    subflows: 8,
    add_addr_accepted: 8,
};

/// Errors of `up` and `down`.
#[derive(Debug, thiserror::Error)]
pub enum TestbedError {
    /// Bad testbed name.
    #[error("Invalid testbed name {0:?}: use 1-12 of [a-z0-9-], starting with a letter")]
    InvalidName(String),
    /// Not root.
    #[error("The testbed needs root (network namespaces, TAP devices)")]
    NotRoot,
    /// A needed program is missing.
    #[error("{0}")]
    Missing(String),
    /// Already up (or left over).
    #[error("Testbed {0:?} is already up (or left over: run `edgemig testbed down --name {0}`)")]
    Exists(String),
    /// Nothing to take down.
    #[error("No testbed named {0:?} exists")]
    NotFound(String),
    /// State file problem.
    #[error(transparent)]
    State(#[from] StateError),
    /// Namespace problem.
    #[error("Namespace set-up failed")]
    Netns(#[from] edgemig_netns::NetnsError),
    /// Netlink problem.
    #[error("Network set-up failed")]
    Netlink(#[from] NlError),
    /// Certificates could not be made.
    #[error("Cannot create the testbed's certificates")]
    Pki(#[source] edgemig_pki::CertError),
    /// MPTCP problem.
    #[error("MPTCP set-up failed in {0}")]
    Mptcp(String, #[source] edgemig_mptcp::PmError),
    /// A process failed.
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// The etcd directory cannot run.
    #[error("{0}")]
    Etcd(String),
    /// File system problem.
    #[error("Cannot {what} {path}")]
    Io {
        /// What was attempted.
        what: &'static str,
        /// Path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// What `up` needs besides the config.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Testbed name (prefix of its namespaces).
    pub name: String,
    /// The topology.
    pub config: TestbedConfig,
    /// `edgemigd` binary.
    pub agent: PathBuf,
    /// `edgemig-linkemu` binary.
    pub linkemu: PathBuf,
    /// Guest image directory for the site agents.
    pub image_dir: PathBuf,
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> TestbedError {
    let path = path.to_path_buf();
    move |source| TestbedError::Io { what, path, source }
}

/// Checks everything that can be checked before anything is created.
pub fn preflight(opts: &UpOptions) -> Result<(), TestbedError> {
    if !valid_testbed_name(&opts.name) {
        return Err(TestbedError::InvalidName(opts.name.clone()));
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(TestbedError::NotRoot);
    }
    for (bin, what) in [
        (&opts.agent, "edgemigd"),
        (&opts.linkemu, "edgemig-linkemu"),
    ] {
        if !bin.is_file() {
            return Err(TestbedError::Missing(format!(
                "{what} not found at {}: run scripts/build.sh",
                bin.display()
            )));
        }
    }
    if std::process::Command::new("ip").arg("-V").output().is_err() {
        return Err(TestbedError::Missing(
            "iproute2 (`ip`) is missing: run scripts/setup.sh".into(),
        ));
    }
    for file in ["vmlinuz", "initramfs.cpio"] {
        if !opts.image_dir.join(file).is_file() {
            return Err(TestbedError::Missing(format!(
                "Guest image missing in {}: run `edgemig image build --out {}`",
                opts.image_dir.display(),
                opts.image_dir.display()
            )));
        }
    }
    let dir = testbed_dir(&opts.name);
    if dir.exists() || !edgemig_netns::list_with_prefix(&format!("{}_", opts.name)).is_empty() {
        return Err(TestbedError::Exists(opts.name.clone()));
    }
    Ok(())
}

/// Builds the testbed. On failure everything made so far is removed.
pub async fn up(opts: &UpOptions) -> Result<TestbedState, TestbedError> {
    preflight(opts)?;
    let dir = testbed_dir(&opts.name);
    std::fs::create_dir_all(dir.join("links")).map_err(io("create", &dir))?;
    let mut state = TestbedState {
        name: opts.name.clone(),
        dir: dir.clone(),
        ..Default::default()
    };
    state.save()?;
    match build(opts, &mut state).await {
        Ok(()) => Ok(state),
        Err(e) => {
            tracing::warn!(testbed = %opts.name, error = %e, "up failed; removing what was made");
            let _ = down(&opts.name);
            Err(e)
        }
    }
}

async fn build(opts: &UpOptions, state: &mut TestbedState) -> Result<(), TestbedError> {
    let plan = plan(&opts.name, &opts.config);
    let nodes = plan
        .sites
        .iter()
        .map(|s| (s.name.clone(), s.netns.clone()))
        .chain(
            plan.clients
                .iter()
                .map(|c| (c.name.clone(), c.netns.clone())),
        );
    for (node, netns) in nodes {
        edgemig_netns::create(&netns)?;
        state.namespaces.push((node, netns.clone()));
        state.save()?;
        NsNetlink::open(&netns)?.up("lo").await?;
    }
    for site in &plan.sites {
        use edgemig_netns::sysctl;
        // As on a real site host (docs/real-hosts.md): migration streams
        // keep little data queued in their sockets, so the VM's last state
        // is not queued behind earlier pages at the switchover, and the
        // migration ports are kept from ephemeral use.
        let settings = [
            ("net.ipv4.ip_forward", "1".to_string()),
            (
                "net.ipv4.tcp_notsent_lowat",
                sysctl::MIGRATION_NOTSENT_LOWAT.to_string(),
            ),
            ("net.ipv4.tcp_wmem", sysctl::TESTBED_TCP_WMEM.to_string()),
            (
                "net.ipv4.ip_local_reserved_ports",
                sysctl::migration_reserved_ports(),
            ),
        ];
        edgemig_netns::in_netns(&site.netns, || {
            settings
                .iter()
                .try_for_each(|(key, value)| sysctl::write(key, value))
        })?
        .map_err(io(
            "set up forwarding and socket buffers in",
            Path::new(&site.netns),
        ))?;
    }
    for path in &plan.paths {
        start_link(
            opts,
            state,
            &path.name,
            "path",
            &path.a,
            &path.b,
            &path.shape,
        )
        .await?;
    }
    for client in &plan.clients {
        for link in &client.links {
            start_link(
                opts,
                state,
                &link.name,
                "access",
                &link.client,
                &link.site,
                &link.shape,
            )
            .await?;
            NsNetlink::open(&client.netns)?
                .add_route(link.vm_subnet, link.site.addr.addr())
                .await?;
        }
        // Each site reaches every address of the client through its own
        // access link to it (as a real site reaches a client's address
        // across the Internet), so the follow policy's probes from a site
        // measure that site's distance whichever address the VM sees.
        for link in &client.links {
            for other in client.links.iter().filter(|o| o.name != link.name) {
                let host =
                    ipnet::Ipv4Net::new(other.client.addr.addr(), 32).unwrap_or(other.client.addr);
                NsNetlink::open(&link.site.netns)?
                    .add_route(host, link.client.addr.addr())
                    .await?;
            }
        }
    }
    setup_mptcp(&plan)?;
    let pki_dir = state.dir.join("pki");
    let sites: Vec<(String, Vec<IpAddr>)> = plan
        .sites
        .iter()
        .map(|s| {
            (
                s.name.clone(),
                path_ends(&plan, &s.name)
                    .map(|e| IpAddr::V4(e.addr.addr()))
                    .collect(),
            )
        })
        .collect();
    let certs = edgemig_pki::create_testbed_pki(&pki_dir, &sites).map_err(TestbedError::Pki)?;
    if opts.config.directory == DirectoryKind::Etcd {
        let pid = crate::etcd::start(&plan, &state.dir)?;
        state.processes.push(ProcessRecord {
            role: "etcd".into(),
            pid,
        });
    }
    for (site, files) in plan.sites.iter().zip(&certs) {
        start_agent(opts, state, &plan, site, files).await?;
    }
    state.complete = true;
    state.save()?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn start_link(
    opts: &UpOptions,
    state: &mut TestbedState,
    name: &str,
    kind: &str,
    a: &LinkEnd,
    b: &LinkEnd,
    shape: &crate::config::LinkShape,
) -> Result<(), TestbedError> {
    let control = state.dir.join("links").join(format!("{name}.sock"));
    let log = state.dir.join("links").join(format!("{name}.log"));
    let mut args: Vec<OsString> = [
        "--tap-a",
        &a.ifname,
        "--netns-a",
        &a.netns,
        "--tap-b",
        &b.ifname,
        "--netns-b",
        &b.netns,
        "--rate",
        &shape.rate,
        "--delay",
        &shape.delay,
        "--jitter",
        &shape.jitter,
        "--loss",
        &shape.loss,
    ]
    .iter()
    .map(OsString::from)
    .collect();
    if let Some(q) = shape.queue_bytes {
        args.push("--queue".into());
        args.push(q.to_string().into());
    }
    args.push("--control".into());
    args.push(control.clone().into());
    let pid = process::spawn_detached(None, &opts.linkemu, &args, &log)?;
    state.processes.push(ProcessRecord {
        role: format!("linkemu:{name}"),
        pid,
    });
    state.save()?;
    process::wait_for_log(
        &format!("link emulator {name}"),
        pid,
        &log,
        "ready",
        READY_LIMIT,
    )?;
    for end in [a, b] {
        NsNetlink::open(&end.netns)?
            .add_address(&end.ifname, end.addr)
            .await?;
    }
    state.links.push(LinkState {
        name: name.to_string(),
        kind: kind.to_string(),
        ends: [
            format!("{} {}", a.node, a.addr),
            format!("{} {}", b.node, b.addr),
        ],
        control,
        rate: shape.rate.clone(),
        delay: shape.delay.clone(),
    });
    state.save()?;
    Ok(())
}

/// MPTCP on every node: the kernel's maximum limits; on sites a `signal`
/// endpoint per path address, so a peer connecting to one path address
/// learns the others and opens a subflow over each path. The addresses
/// peers connect to (a site's end of the first path to each peer) announce
/// no port: joins reach the connection's own listener, which may bind that
/// address only (QEMU's migration listeners do). The others announce
/// [`JOIN_PORT`], where the kernel listens for joins of every connection.
fn setup_mptcp(plan: &Plan) -> Result<(), TestbedError> {
    let peer_addrs: Vec<std::net::Ipv4Addr> = plan
        .sites
        .iter()
        .flat_map(|site| {
            plan.sites
                .iter()
                .filter(move |o| o.name != site.name)
                .filter_map(move |other| {
                    plan.paths.iter().find_map(|p| {
                        if p.a.node == site.name && p.b.node == other.name {
                            Some(p.b.addr.addr())
                        } else if p.b.node == site.name && p.a.node == other.name {
                            Some(p.a.addr.addr())
                        } else {
                            None
                        }
                    })
                })
        })
        .collect();
    let site_nodes = plan.sites.iter().map(|s| (&s.name, &s.netns, true));
    let client_nodes = plan.clients.iter().map(|c| (&c.name, &c.netns, false));
    for (node, netns, is_site) in site_nodes.chain(client_nodes) {
        let ends: Vec<&LinkEnd> = plan
            .paths
            .iter()
            .flat_map(|p| [&p.a, &p.b])
            .filter(|e| &e.node == node)
            .collect();
        let configured =
            edgemig_netns::in_netns(netns, || -> Result<(), edgemig_mptcp::PmError> {
                let mut pm = MptcpPm::open()?;
                pm.set_limits(MPTCP_LIMITS)?;
                for end in &ends {
                    let ifindex = nix_ifindex(&end.ifname);
                    let mut ep =
                        NewEndpoint::new(IpAddr::V4(end.addr.addr()), EndpointFlags::SIGNAL);
                    if let Some(i) = ifindex {
                        ep = ep.with_ifindex(i);
                    }
                    if is_site && !peer_addrs.contains(&end.addr.addr()) {
                        ep.port = Some(JOIN_PORT);
                    }
                    pm.add_endpoint(&ep)?;
                }
                Ok(())
            })?;
        configured.map_err(|e| TestbedError::Mptcp(netns.clone(), e))?;
    }
    Ok(())
}

/// The path ends that belong to site `node`, in path order.
fn path_ends<'a>(plan: &'a Plan, node: &'a str) -> impl Iterator<Item = &'a LinkEnd> + 'a {
    plan.paths
        .iter()
        .flat_map(|p| [&p.a, &p.b])
        .filter(move |e| e.node == node)
}

/// Port of every site agent's peer API.
pub const PEER_PORT: u16 = 7700;
/// Port a site's secondary path addresses announce for MPTCP joins.
pub const JOIN_PORT: u16 = 7701;

/// Interface index of `name` in the calling thread's namespace.
fn nix_ifindex(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (index != 0).then_some(index)
}

/// The `[directory]` table of a site's agent config.
fn directory_section(
    opts: &UpOptions,
    plan: &Plan,
    site: &str,
    dir: &Path,
) -> Result<String, TestbedError> {
    Ok(match opts.config.directory {
        DirectoryKind::Embedded => format!(
            "[directory]\nbackend = \"embedded\"\npath = {:?}\n",
            dir.join("directory").display().to_string()
        ),
        DirectoryKind::Etcd => format!(
            "[directory]\nbackend = \"etcd\"\nendpoints = {:?}\nprefix = \"/edgemig/{}\"\n",
            crate::etcd::endpoints(plan, site)?,
            plan.name
        ),
    })
}

async fn start_agent(
    opts: &UpOptions,
    state: &mut TestbedState,
    plan: &Plan,
    site: &crate::plan::SitePlan,
    tls: &edgemig_pki::SiteFiles,
) -> Result<(), TestbedError> {
    let site_dir = state.dir.join("sites").join(&site.name);
    std::fs::create_dir_all(&site_dir).map_err(io("create", &site_dir))?;
    let api_socket = site_dir.join("api.sock");
    let config = site_dir.join("site.toml");
    let log = site_dir.join("edgemigd.log");
    let path_addrs: Vec<String> = path_ends(plan, &site.name)
        .map(|e| e.addr.addr().to_string())
        .collect();
    let ifaces: Vec<String> = path_ends(plan, &site.name)
        .map(|e| format!("{:?}", e.ifname))
        .collect();
    let rates: Vec<String> = plan
        .paths
        .iter()
        .filter(|p| p.a.node == site.name || p.b.node == site.name)
        .map(|p| (parse_rate(&p.shape.rate).unwrap_or(0) / 1_000_000).to_string())
        .collect();
    let mut text = format!(
        "# Written by `edgemig testbed up` for testbed {testbed}.\n\
         site = {name:?}\n\
         api_socket = {api:?}\n\
         listen = \"0.0.0.0:{PEER_PORT}\"\n\
         allow_insecure = true\n\
         state_dir = {state:?}\n\
         image_dir = {image:?}\n\
         migration_interfaces = [{ifaces}]\n\
         migration_path_mbit = [{rates}]\n\
         [vm_network]\n\
         bridge = {bridge:?}\n\
         subnet = \"{subnet}\"\n\
         gateway = \"{gateway}\"\n\
         [tls]\n\
         ca = {ca:?}\n\
         cert = {cert:?}\n\
         key = {key:?}\n\
         {directory}",
        testbed = plan.name,
        name = site.name,
        api = api_socket.display().to_string(),
        state = site_dir.join("state").display().to_string(),
        image = opts.image_dir.display().to_string(),
        ifaces = ifaces.join(", "),
        rates = rates.join(", "),
        bridge = site.bridge,
        subnet = site.vm_subnet,
        gateway = site.gateway,
        ca = tls.ca.display().to_string(),
        cert = tls.cert.display().to_string(),
        key = tls.key.display().to_string(),
        directory = directory_section(opts, plan, &site.name, &state.dir)?,
    );
    // Each other site is reached at its end of the first path between the two.
    for other in plan.sites.iter().filter(|o| o.name != site.name) {
        let end = plan.paths.iter().find_map(|p| {
            if p.a.node == site.name && p.b.node == other.name {
                Some(&p.b)
            } else if p.b.node == site.name && p.a.node == other.name {
                Some(&p.a)
            } else {
                None
            }
        });
        if let Some(end) = end {
            text.push_str(&format!(
                "[[peer]]\nsite = {:?}\naddress = \"{}:{PEER_PORT}\"\n",
                other.name,
                end.addr.addr()
            ));
        }
    }
    std::fs::write(&config, text).map_err(io("write", &config))?;
    let args: Vec<OsString> = vec!["--config".into(), config.clone().into()];
    let pid = process::spawn_detached(Some(&site.netns), &opts.agent, &args, &log)?;
    state.processes.push(ProcessRecord {
        role: format!("edgemigd:{}", site.name),
        pid,
    });
    state.sites.push(SiteState {
        name: site.name.clone(),
        netns: site.netns.clone(),
        api_socket: api_socket.clone(),
        config,
        log: log.clone(),
        vm_subnet: site.vm_subnet.to_string(),
        path_addrs,
    });
    state.save()?;
    process::wait_for_log(
        &format!("edgemigd of {}", site.name),
        pid,
        &log,
        "edgemigd ready",
        READY_LIMIT,
    )?;
    Ok(())
}

/// What `down` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DownReport {
    /// Processes ended.
    pub processes: usize,
    /// QEMU processes ended.
    pub vms: usize,
    /// Namespaces deleted.
    pub namespaces: usize,
}

/// Removes every namespace, process and file of testbed `name`, whatever
/// state it is in.
pub fn down(name: &str) -> Result<DownReport, TestbedError> {
    if !valid_testbed_name(name) {
        return Err(TestbedError::InvalidName(name.to_string()));
    }
    let dir = testbed_dir(name);
    let state = match TestbedState::load(name) {
        Ok(s) => Some(s),
        Err(StateError::NotFound(..)) => None,
        Err(e) => {
            tracing::warn!(error = %e, "testbed state unreadable; cleaning up by name");
            None
        }
    };
    let mut namespaces = edgemig_netns::list_with_prefix(&format!("{name}_"));
    if state.is_none() && namespaces.is_empty() && !dir.exists() {
        return Err(TestbedError::NotFound(name.to_string()));
    }
    let mut report = DownReport::default();
    let marker = dir.display().to_string();
    if let Some(state) = &state {
        // Agents first (they own VMs), then the emulators.
        let mut procs = state.processes.clone();
        procs.sort_by_key(|p| !p.role.starts_with("edgemigd"));
        for p in procs {
            if process::is_ours(p.pid, &marker) {
                process::stop(p.pid, &marker, STOP_GRACE);
                report.processes += 1;
            }
        }
        for (_, ns) in &state.namespaces {
            if !namespaces.contains(ns) {
                namespaces.push(ns.clone());
            }
        }
    }
    report.vms = stop_vms(&dir, &marker);
    for ns in &namespaces {
        if edgemig_netns::exists(ns) {
            edgemig_netns::delete(ns)?;
            report.namespaces += 1;
        }
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(io("remove", &dir))?;
    }
    Ok(report)
}

/// Ends the QEMU processes of every site of the testbed in `dir`.
fn stop_vms(dir: &Path, marker: &str) -> usize {
    let mut n = 0;
    let Ok(sites) = std::fs::read_dir(dir.join("sites")) else {
        return 0;
    };
    for site in sites.flatten() {
        let Ok(vms) = std::fs::read_dir(site.path().join("state/vms")) else {
            continue;
        };
        for vm in vms.flatten() {
            let pid = std::fs::read_to_string(vm.path().join("qemu.pid"))
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok());
            if let Some(pid) = pid
                && process::is_ours(pid, marker)
            {
                process::stop(pid, marker, STOP_GRACE);
                n += 1;
            }
        }
    }
    n
}
