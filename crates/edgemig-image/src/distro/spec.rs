//! What to build: the distribution, extra packages, the guest agent, the
//! virtual size; and the cache keys derived from all of it.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::error::DistroError;

/// Version of the recipe (package set, configuration, disk layout). Part of
/// every cache key: bump it whenever the builder makes a different image
/// from the same inputs.
pub const BUILDER_VERSION: u32 = 1;

/// Default virtual size of the disk: 2 GiB.
pub const DEFAULT_SIZE_BYTES: u64 = 2 << 30;

/// Smallest virtual size accepted: 1 GiB (the root file system of the
/// base package set takes about 600 MiB).
pub const MIN_SIZE_BYTES: u64 = 1 << 30;

/// Largest virtual size accepted: 2 TiB.
pub const MAX_SIZE_BYTES: u64 = 2 << 40;

/// Debian archive the root file system comes from.
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

/// Debian security archive.
pub const DEFAULT_SECURITY_MIRROR: &str = "http://deb.debian.org/debian-security";

/// A distribution the builder knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Distro {
    /// Debian 12 (bookworm) with the bookworm-backports cloud kernel.
    Debian12,
}

impl Distro {
    /// The name used on the command line and in cache keys.
    pub fn name(self) -> &'static str {
        match self {
            Distro::Debian12 => "debian12",
        }
    }

    /// The release's code name (mmdebstrap's suite).
    pub fn suite(self) -> &'static str {
        match self {
            Distro::Debian12 => "bookworm",
        }
    }
}

impl fmt::Display for Distro {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Distro {
    type Err = DistroError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "debian12" | "bookworm" => Ok(Distro::Debian12),
            other => Err(DistroError::UnknownDistro(other.to_string())),
        }
    }
}

/// Whether the image carries the edgemig guest agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Agent {
    /// Install this `edgemig-guest` .deb and enable its unit; the agent
    /// owns the NICs, nothing else configures them.
    Deb(PathBuf),
    /// No agent: systemd-networkd runs DHCP on every Ethernet NIC.
    None,
}

/// A Debian package name (`[a-z0-9][a-z0-9+.-]+`), checked.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PackageName(String);

impl PackageName {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PackageName {
    type Error = DistroError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        let mut chars = s.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let rest_ok = chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.'));
        if first_ok && rest_ok && s.len() >= 2 {
            Ok(PackageName(s))
        } else {
            Err(DistroError::BadPackage(s))
        }
    }
}

impl FromStr for PackageName {
    type Err = DistroError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PackageName::try_from(s.to_string())
    }
}

impl From<PackageName> for String {
    fn from(p: PackageName) -> String {
        p.0
    }
}

impl fmt::Display for PackageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Inputs of [`build`](super::build).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DistroSpec {
    /// The distribution.
    pub distro: Distro,
    /// Packages installed on top of the base set (see
    /// [`BASE_PACKAGES`](super::rootfs::BASE_PACKAGES)).
    pub packages: Vec<PackageName>,
    /// The guest agent, or none.
    pub agent: Agent,
    /// Virtual size of the disk in bytes (rounded up to a MiB).
    pub size_bytes: u64,
    /// Debian archive (`deb` URI) for the release, its updates and backports.
    pub mirror: String,
    /// Debian security archive (`deb` URI).
    pub security_mirror: String,
    /// Where finished images and root file system tarballs are kept.
    pub cache_dir: PathBuf,
}

impl DistroSpec {
    /// Debian 12 with the given packages and agent, default size and
    /// mirrors.
    pub fn debian12(packages: Vec<PackageName>, agent: Agent, cache_dir: PathBuf) -> DistroSpec {
        DistroSpec {
            distro: Distro::Debian12,
            packages,
            agent,
            size_bytes: DEFAULT_SIZE_BYTES,
            mirror: DEFAULT_MIRROR.to_string(),
            security_mirror: DEFAULT_SECURITY_MIRROR.to_string(),
            cache_dir,
        }
    }

    /// The requested packages, sorted and without duplicates.
    pub fn package_set(&self) -> Vec<PackageName> {
        let mut p = self.packages.clone();
        p.sort();
        p.dedup();
        p
    }

    /// The virtual size rounded up to a whole MiB, checked against
    /// [`MIN_SIZE_BYTES`] and [`MAX_SIZE_BYTES`].
    pub fn checked_size(&self) -> Result<u64, DistroError> {
        let mib = 1 << 20;
        let size = self.size_bytes.div_ceil(mib).saturating_mul(mib);
        if (MIN_SIZE_BYTES..=MAX_SIZE_BYTES).contains(&size) {
            Ok(size)
        } else {
            Err(DistroError::BadSize {
                bytes: self.size_bytes,
                min: MIN_SIZE_BYTES,
                max: MAX_SIZE_BYTES,
            })
        }
    }
}

/// SHA-256 in lower-case hex.
pub(crate) fn hex_sha256(data: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, data).as_ref())
}

/// Lower-case hex of bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Cache key of the root file system tarball: distribution, mirrors,
/// package set (base and requested), the files and options given to
/// mmdebstrap, recipe version. The agent and the size are not part of it,
/// so images that differ only there share one mmdebstrap run.
pub fn rootfs_key(spec: &DistroSpec) -> String {
    let packages: Vec<String> = spec.package_set().into_iter().map(String::from).collect();
    let packages = packages.join(",");
    let text = format!(
        "edgemig-rootfs\nbuilder={BUILDER_VERSION}\ndistro={}\nmirror={}\nsecurity={}\npackages={packages}\nrecipe={}\n",
        spec.distro,
        spec.mirror,
        spec.security_mirror,
        super::rootfs::recipe(),
    );
    hex_sha256(text.as_bytes())[..32].to_string()
}

/// Cache key of the finished image: the root file system key, the agent
/// package's SHA-256 (or `none`), the virtual size, and the configuration
/// the builder writes (units masked, network, GRUB settings, layout).
pub fn image_key(spec: &DistroSpec, agent_sha256: Option<&str>, size_bytes: u64) -> String {
    let text = format!(
        "edgemig-image\nrootfs={}\nagent={}\nsize={size_bytes}\nrecipe={}\n",
        rootfs_key(spec),
        agent_sha256.unwrap_or("none"),
        super::configure::recipe(),
    );
    hex_sha256(text.as_bytes())[..32].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(packages: &[&str]) -> DistroSpec {
        DistroSpec::debian12(
            packages.iter().map(|p| p.parse().unwrap()).collect(),
            Agent::None,
            PathBuf::from("/cache"),
        )
    }

    #[test]
    fn sizes_round_up_to_mib_and_stay_in_range() {
        let mut s = spec(&[]);
        s.size_bytes = (1 << 30) + 1;
        assert_eq!(s.checked_size().unwrap(), (1 << 30) + (1 << 20));
        s.size_bytes = 512 << 20;
        assert!(matches!(s.checked_size(), Err(DistroError::BadSize { .. })));
        s.size_bytes = u64::MAX;
        assert!(s.checked_size().is_err());
    }

    #[test]
    fn package_names_are_checked() {
        for good in ["nginx-light", "redis-server", "libc6", "g++", "0ad"] {
            assert!(good.parse::<PackageName>().is_ok(), "{good}");
        }
        for bad in [
            "",
            "a",
            "Nginx",
            "-x",
            "pkg/bookworm",
            "a b",
            "x;rm",
            "pkg=1.0",
        ] {
            assert!(bad.parse::<PackageName>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn keys_ignore_package_order_and_duplicates_but_not_content() {
        let a = spec(&["redis-server", "nginx-light"]);
        let b = spec(&["nginx-light", "redis-server", "nginx-light"]);
        assert_eq!(rootfs_key(&a), rootfs_key(&b));
        assert_ne!(rootfs_key(&a), rootfs_key(&spec(&["nginx-light"])));
        let mut other_mirror = a.clone();
        other_mirror.mirror = "http://mirror.example/debian".into();
        assert_ne!(rootfs_key(&a), rootfs_key(&other_mirror));

        let size = DEFAULT_SIZE_BYTES;
        assert_eq!(
            image_key(&a, Some("ab"), size),
            image_key(&b, Some("ab"), size)
        );
        assert_ne!(
            image_key(&a, Some("ab"), size),
            image_key(&a, Some("cd"), size)
        );
        assert_ne!(image_key(&a, Some("ab"), size), image_key(&a, None, size));
        assert_ne!(image_key(&a, None, size), image_key(&a, None, size * 2));
        assert_eq!(rootfs_key(&a).len(), 32);
    }

    #[test]
    fn distro_names_round_trip() {
        assert_eq!("debian12".parse::<Distro>().unwrap(), Distro::Debian12);
        assert_eq!(Distro::Debian12.to_string(), "debian12");
        assert!("ubuntu24".parse::<Distro>().is_err());
    }
}
