//! The testbed config file (TOML). Its format is a contract: tests,
//! benchmarks and users write against it, so fields are only ever added.

use std::collections::HashSet;
use std::path::Path;

use ipnet::Ipv4Net;
use serde::Deserialize;

use edgemig_linkemu::units::{UnitsError, parse_duration, parse_loss, parse_rate};

/// Errors of a testbed config; all are found before anything is created.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("Cannot read testbed config {path}")]
    Read {
        /// File.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Not valid TOML for this format.
    #[error("Invalid testbed config")]
    Parse(#[source] toml::de::Error),
    /// A rate, delay or loss could not be parsed.
    #[error("Invalid testbed config: {context}")]
    Unit {
        /// Where.
        context: String,
        /// What.
        #[source]
        source: UnitsError,
    },
    /// Inconsistent values.
    #[error("Invalid testbed config: {0}")]
    Invalid(String),
}

/// A whole testbed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestbedConfig {
    /// Edge sites; each runs an `edgemigd` in its own namespace.
    #[serde(rename = "site")]
    pub sites: Vec<SiteSpec>,
    /// WAN paths between two sites; each adds one interface on each end.
    #[serde(rename = "path", default)]
    pub paths: Vec<PathSpec>,
    /// Clients with access links to sites.
    #[serde(rename = "client", default)]
    pub clients: Vec<ClientSpec>,
    /// The site directory the agents share (for the follow policy):
    /// `"embedded"` (default: files in the testbed's directory) or
    /// `"etcd"` (the testbed runs a real etcd in the first site's
    /// namespace; the other sites reach it over the paths).
    #[serde(default)]
    pub directory: DirectoryKind,
}

/// Backend of the testbed's site directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DirectoryKind {
    /// Shared files on this machine.
    #[default]
    Embedded,
    /// A real etcd (Debian package etcd-server) started by the testbed.
    Etcd,
}

/// One edge site.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteSpec {
    /// Site name: 1–16 of `[a-z0-9-]`, starting with a letter.
    pub name: String,
    /// Subnet of the site's VM network (bridge in the site namespace).
    pub vm_subnet: Ipv4Net,
}

/// Shape of an emulated link.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkShape {
    /// Rate in each direction, e.g. `50mbit`.
    pub rate: String,
    /// One-way delay, e.g. `10ms`.
    #[serde(default = "zero_ms")]
    pub delay: String,
    /// Delay variation added on top of `delay`, e.g. `1ms`.
    #[serde(default = "zero_ms")]
    pub jitter: String,
    /// Random loss, e.g. `0.1%`.
    #[serde(default = "zero_loss")]
    pub loss: String,
    /// Queue limit in bytes per direction; default about two
    /// bandwidth-delay products.
    #[serde(default)]
    pub queue_bytes: Option<u64>,
}

fn zero_ms() -> String {
    "0ms".into()
}

fn zero_loss() -> String {
    "0%".into()
}

/// A WAN path between two sites.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathSpec {
    /// The two sites it joins.
    pub between: [String; 2],
    /// Its shape.
    #[serde(flatten)]
    pub shape: LinkShape,
}

/// A client node.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSpec {
    /// Client name: 1–16 of `[a-z0-9-]`, starting with a letter.
    pub name: String,
    /// Access links, at most one per site.
    pub links: Vec<ClientLink>,
}

/// A client's access link to one site.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientLink {
    /// The site at the other end.
    pub site: String,
    /// Its shape.
    #[serde(flatten)]
    pub shape: LinkShape,
}

/// The subnet the testbed uses for its own links; VM subnets must not
/// overlap it.
pub const INTERNAL_RANGE: &str = "172.30.0.0/15";

/// The default testbed: two sites, two 50 Mbit/s 10 ms paths, and alice far
/// from site-a (20 Mbit/s, 25 ms) and near site-b (100 Mbit/s, 2 ms).
pub const DEFAULT_CONFIG: &str = r#"
[[site]]
name = "site-a"
vm_subnet = "10.10.0.0/24"

[[site]]
name = "site-b"
vm_subnet = "10.20.0.0/24"

[[path]]
between = ["site-a", "site-b"]
rate = "50mbit"
delay = "10ms"

[[path]]
between = ["site-a", "site-b"]
rate = "50mbit"
delay = "10ms"

[[client]]
name = "alice"
links = [ { site = "site-a", rate = "20mbit", delay = "25ms" },
          { site = "site-b", rate = "100mbit", delay = "2ms" } ]
"#;

fn valid_node_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 16
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

impl LinkShape {
    /// Checks every value parses.
    fn check(&self, context: &str) -> Result<(), ConfigError> {
        let wrap = |field: &str| {
            let context = format!("{context}: {field}");
            move |source| ConfigError::Unit { context, source }
        };
        parse_rate(&self.rate).map_err(wrap("rate"))?;
        parse_duration(&self.delay).map_err(wrap("delay"))?;
        parse_duration(&self.jitter).map_err(wrap("jitter"))?;
        parse_loss(&self.loss).map_err(wrap("loss"))?;
        Ok(())
    }
}

impl TestbedConfig {
    /// The default testbed.
    pub fn default_config() -> Self {
        Self::parse(DEFAULT_CONFIG).unwrap_or_else(|e| unreachable!("default config is valid: {e}"))
    }

    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(ConfigError::Parse)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks names, references, subnets and link shapes.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.sites.is_empty() {
            return invalid("at least one [[site]] is needed".into());
        }
        let mut names = HashSet::new();
        for name in self
            .sites
            .iter()
            .map(|s| &s.name)
            .chain(self.clients.iter().map(|c| &c.name))
        {
            if !valid_node_name(name) {
                return invalid(format!(
                    "name {name:?} must be 1-16 of [a-z0-9-] starting with a letter"
                ));
            }
            if !names.insert(name.as_str()) {
                return invalid(format!("name {name:?} is used twice"));
            }
        }
        let internal: Ipv4Net = INTERNAL_RANGE
            .parse()
            .map_err(|_| ConfigError::Invalid("internal range".into()))?;
        for (i, a) in self.sites.iter().enumerate() {
            if a.vm_subnet.prefix_len() > 29 {
                return invalid(format!(
                    "vm_subnet {} of {} is smaller than /29",
                    a.vm_subnet, a.name
                ));
            }
            if overlaps(a.vm_subnet, internal) {
                return invalid(format!(
                    "vm_subnet {} of {} overlaps {INTERNAL_RANGE}, which the testbed uses for its links",
                    a.vm_subnet, a.name
                ));
            }
            for b in &self.sites[i + 1..] {
                if overlaps(a.vm_subnet, b.vm_subnet) {
                    return invalid(format!(
                        "vm_subnet {} of {} overlaps {} of {}",
                        a.vm_subnet, a.name, b.vm_subnet, b.name
                    ));
                }
            }
        }
        let site_exists = |s: &str| self.sites.iter().any(|site| site.name == s);
        for (i, p) in self.paths.iter().enumerate() {
            let [a, b] = &p.between;
            for s in [a, b] {
                if !site_exists(s) {
                    return invalid(format!("path {} refers to unknown site {s:?}", i + 1));
                }
            }
            if a == b {
                return invalid(format!("path {} joins site {a:?} to itself", i + 1));
            }
            p.shape.check(&format!("path {} ({a} - {b})", i + 1))?;
        }
        if self.paths.len() > 200 {
            return invalid("at most 200 paths".into());
        }
        let mut link_count = 0;
        for c in &self.clients {
            let mut seen = HashSet::new();
            for l in &c.links {
                if !site_exists(&l.site) {
                    return invalid(format!(
                        "client {} links to unknown site {:?}",
                        c.name, l.site
                    ));
                }
                if !seen.insert(&l.site) {
                    return invalid(format!(
                        "client {} has two links to site {:?}",
                        c.name, l.site
                    ));
                }
                l.shape
                    .check(&format!("client {} link to {}", c.name, l.site))?;
                link_count += 1;
            }
        }
        if link_count > 200 {
            return invalid("at most 200 client links".into());
        }
        Ok(())
    }
}

fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_the_documented_one() {
        let c = TestbedConfig::default_config();
        assert_eq!(c.sites.len(), 2);
        assert_eq!(c.paths.len(), 2);
        assert!(
            c.paths
                .iter()
                .all(|p| p.shape.rate == "50mbit" && p.shape.delay == "10ms")
        );
        let alice = &c.clients[0];
        assert_eq!(alice.name, "alice");
        assert_eq!(alice.links[0].shape.delay, "25ms");
        assert_eq!(alice.links[1].shape.rate, "100mbit");
    }

    fn err(text: &str) -> String {
        let e = TestbedConfig::parse(text).unwrap_err();
        let mut s = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(x) = src {
            s.push_str(": ");
            s.push_str(&x.to_string());
            src = x.source();
        }
        s
    }

    const TWO_SITES: &str = "[[site]]\nname = \"a\"\nvm_subnet = \"10.1.0.0/24\"\n[[site]]\nname = \"b\"\nvm_subnet = \"10.2.0.0/24\"\n";

    #[test]
    fn rejects_bad_configs_with_reasons() {
        assert!(
            err(&format!(
                "{TWO_SITES}[[path]]\nbetween = [\"a\", \"c\"]\nrate = \"1mbit\"\n"
            ))
            .contains("unknown site \"c\"")
        );
        assert!(
            err(&format!(
                "{TWO_SITES}[[path]]\nbetween = [\"a\", \"a\"]\nrate = \"1mbit\"\n"
            ))
            .contains("to itself")
        );
        assert!(
            err(&format!(
                "{TWO_SITES}[[path]]\nbetween = [\"a\", \"b\"]\nrate = \"fast\"\n"
            ))
            .contains("rate: invalid number in \"fast\"")
        );
        assert!(
            err(&format!(
                "{TWO_SITES}[[path]]\nbetween = [\"a\", \"b\"]\nrate = \"1mbit\"\ndelay = \"10\"\n"
            ))
            .contains("delay: ")
        );
        assert!(err("[[site]]\nname = \"a\"\nvm_subnet = \"10.1.0.0/16\"\n[[site]]\nname = \"b\"\nvm_subnet = \"10.1.2.0/24\"\n").contains("overlaps"));
        assert!(
            err("[[site]]\nname = \"a\"\nvm_subnet = \"172.30.1.0/24\"\n")
                .contains("uses for its links")
        );
        assert!(
            err(&format!(
                "{TWO_SITES}[[client]]\nname = \"a\"\nlinks = []\n"
            ))
            .contains("used twice")
        );
        assert!(err(&format!("{TWO_SITES}[[client]]\nname = \"c\"\nlinks = [{{ site = \"x\", rate = \"1mbit\" }}]\n")).contains("unknown site \"x\""));
        assert!(err(&format!("{TWO_SITES}colour = 1\n")).contains("colour"));
        assert!(err("").contains("site"));
    }
}
