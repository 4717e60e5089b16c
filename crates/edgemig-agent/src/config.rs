//! The site config file (`edgemigd --config site.toml`).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use serde::Deserialize;

/// Errors while loading a site config.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("Cannot read config file {path}")]
    Read {
        /// File tried.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for a site config.
    #[error("Invalid config file {path}")]
    Parse {
        /// File tried.
        path: PathBuf,
        /// What is wrong, with line and column.
        #[source]
        source: toml::de::Error,
    },
    /// The values are inconsistent.
    #[error("Invalid config: {0}")]
    Invalid(String),
}

/// Configuration of one site's agent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    /// Name of the site, e.g. `site-a`: 1–32 of `[a-z0-9-]`.
    pub site: String,
    /// Unix socket of the local API (used by the `edgemig` CLI). Created
    /// mode 0600 (root only).
    #[serde(default = "default_api_socket")]
    pub api_socket: PathBuf,
    /// A group whose members may use the local API too (the socket is then
    /// mode 0660 with this group). Default: none.
    #[serde(default)]
    pub api_group: Option<String>,
    /// Address other sites' agents reach this agent on (mutual TLS; used by
    /// migrations).
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// Host interfaces that carry migration traffic (their byte counters
    /// give the per-path numbers of migration reports).
    #[serde(default)]
    pub migration_interfaces: Vec<String>,
    /// Bandwidth of each migration path in Mbit/s, as known to the
    /// operator; used to choose compression. Empty: unknown.
    #[serde(default)]
    pub migration_path_mbit: Vec<u64>,
    /// After a migration to this site, how long (seconds) the VM's old
    /// address stays reachable for clients that did not move (non-MPTCP);
    /// it is retired earlier once no connection uses it. Default 60.
    #[serde(default)]
    pub handoff_grace_s: Option<u64>,
    /// Whether this site takes part in migrations without TLS on the data
    /// path (`migrate --insecure`, testbeds only); both sites must allow it.
    /// Default false.
    #[serde(default)]
    pub allow_insecure: bool,
    /// Other sites' agents this site may migrate VMs to.
    #[serde(default, rename = "peer")]
    pub peers: Vec<PeerConfig>,
    /// The VM network of this site.
    pub vm_network: VmNetwork,
    /// Directory of the agent's state: the VM store and one directory per VM
    /// (QMP socket, serial log, disks).
    pub state_dir: PathBuf,
    /// Directory holding the guest image (`vmlinuz`, `initramfs.cpio`), as
    /// written by `edgemig image build --out DIR`.
    pub image_dir: PathBuf,
    /// How QEMU is run.
    #[serde(default)]
    pub qemu: QemuConfig,
    /// TLS files for agent-to-agent connections.
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    /// The site directory shared by the sites' agents (which sites exist,
    /// which VM runs where, one controller lease per VM); needed by VMs
    /// with the `follow` policy. `backend = "embedded"` with `path` (one
    /// machine), or `backend = "etcd"` with `endpoints` and `prefix`.
    #[serde(default)]
    pub directory: Option<edgemig_directory::DirectoryConfig>,
}

/// Another site's agent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// Its site name (must match the name in its certificate).
    pub site: String,
    /// Its `listen` address as reachable from here.
    pub address: SocketAddr,
}

/// The bridge VMs' nic0 is attached to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmNetwork {
    /// Bridge device name (created when missing), at most 15 characters.
    pub bridge: String,
    /// Subnet VMs take addresses from, e.g. `10.10.0.0/24`.
    pub subnet: Ipv4Net,
    /// Gateway address on the bridge; defaults to the subnet's first host.
    #[serde(default)]
    pub gateway: Option<Ipv4Addr>,
}

impl VmNetwork {
    /// The gateway address (configured, or the first host of the subnet).
    pub fn gateway(&self) -> Ipv4Addr {
        self.gateway
            .unwrap_or_else(|| Ipv4Addr::from(u32::from(self.subnet.network()) + 1))
    }
}

/// How QEMU is run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QemuConfig {
    /// QEMU binary (name on `PATH` or absolute path); version 10 or newer.
    #[serde(default = "default_qemu_binary")]
    pub binary: PathBuf,
    /// Accelerator passed as `-accel`: `tcg` (default, works everywhere) or `kvm`.
    #[serde(default = "default_accel")]
    pub accel: String,
    /// The unprivileged user QEMU runs as (created by `scripts/setup.sh`
    /// and the package); `""` runs QEMU as root (not recommended). It must
    /// be able to reach `state_dir` (every parent directory traversable).
    #[serde(default = "default_qemu_user")]
    pub user: String,
    /// OVMF's code image, for VMs booting an image with `uefi` firmware
    /// (Debian package `ovmf`).
    #[serde(default = "default_ovmf_code")]
    pub ovmf_code: PathBuf,
    /// OVMF's variable store template; every UEFI VM gets its own copy.
    #[serde(default = "default_ovmf_vars")]
    pub ovmf_vars: PathBuf,
}

impl Default for QemuConfig {
    fn default() -> Self {
        Self {
            binary: default_qemu_binary(),
            accel: default_accel(),
            user: default_qemu_user(),
            ovmf_code: default_ovmf_code(),
            ovmf_vars: default_ovmf_vars(),
        }
    }
}

fn default_qemu_user() -> String {
    "edgemig-qemu".into()
}

fn default_ovmf_code() -> PathBuf {
    PathBuf::from("/usr/share/OVMF/OVMF_CODE_4M.fd")
}

fn default_ovmf_vars() -> PathBuf {
    PathBuf::from("/usr/share/OVMF/OVMF_VARS_4M.fd")
}

/// Certificate files of this site (PEM).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The site CA certificate that signs every site's certificate.
    pub ca: PathBuf,
    /// This site's certificate.
    pub cert: PathBuf,
    /// This site's private key.
    pub key: PathBuf,
}

fn default_api_socket() -> PathBuf {
    PathBuf::from(edgemig_api::DEFAULT_SOCKET)
}

fn default_qemu_binary() -> PathBuf {
    PathBuf::from("qemu-system-x86_64")
}

fn default_accel() -> String {
    "tcg".to_string()
}

impl SiteConfig {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let config: Self = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that TOML types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !crate::vm::is_valid_name(&self.site) {
            return Err(ConfigError::Invalid(format!(
                "site name {:?} must be 1-32 of [a-z0-9-] starting with a letter",
                self.site
            )));
        }
        let bridge = &self.vm_network.bridge;
        if bridge.is_empty() || bridge.len() > 15 || bridge.contains(['/', ' ']) {
            return Err(ConfigError::Invalid(format!(
                "vm_network.bridge {bridge:?} is not a valid interface name (1-15 characters)"
            )));
        }
        let net = self.vm_network.subnet;
        if net.prefix_len() > 29 {
            return Err(ConfigError::Invalid(format!(
                "vm_network.subnet {net} is too small for VMs (at most /29)"
            )));
        }
        let gw = self.vm_network.gateway();
        if !net.contains(&gw) || gw == net.network() || gw == net.broadcast() {
            return Err(ConfigError::Invalid(format!(
                "vm_network.gateway {gw} is not a host address of {net}"
            )));
        }
        if !matches!(self.qemu.accel.as_str(), "tcg" | "kvm") {
            return Err(ConfigError::Invalid(format!(
                "qemu.accel {:?} must be \"tcg\" or \"kvm\"",
                self.qemu.accel
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
site = "site-a"
api_socket = "/tmp/a.sock"
state_dir = "/tmp/state"
image_dir = "/tmp/image"
[vm_network]
bridge = "embr0"
subnet = "10.10.0.0/24"
"#;

    #[test]
    fn parses_and_defaults() {
        let c: SiteConfig = toml::from_str(GOOD).unwrap();
        c.validate().unwrap();
        assert_eq!(c.vm_network.gateway(), Ipv4Addr::new(10, 10, 0, 1));
        assert_eq!(c.qemu.accel, "tcg");
        assert!(c.listen.is_none());
    }

    #[test]
    fn rejects_unknown_fields() {
        let text = format!("{GOOD}\ncolour = \"blue\"\n");
        let err = toml::from_str::<SiteConfig>(&text).unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
    }

    #[test]
    fn rejects_gateway_outside_subnet_and_bad_names() {
        let mut c: SiteConfig = toml::from_str(GOOD).unwrap();
        c.vm_network.gateway = Some(Ipv4Addr::new(10, 20, 0, 1));
        assert!(c.validate().is_err());
        let mut c: SiteConfig = toml::from_str(GOOD).unwrap();
        c.site = "Site A".into();
        assert!(c.validate().is_err());
        let mut c: SiteConfig = toml::from_str(GOOD).unwrap();
        c.vm_network.bridge = "a-very-long-bridge-name".into();
        assert!(c.validate().is_err());
    }
}
