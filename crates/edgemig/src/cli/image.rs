//! `edgemig image build`: the guest image (kernel + initramfs with busybox,
//! the guest agent and its workload tools), or with `--distro` a bootable
//! qcow2 disk of a real distribution built from its packages.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use edgemig_image::ImageSpec;
use edgemig_image::distro::{self, Agent, Distro, DistroImage, DistroSpec, PackageName};

use super::output;

/// Image subcommands.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build the guest kernel + initramfs, or with --distro a disk image.
    Build {
        /// Output directory [default: <target>/guest-image next to this
        /// binary]; with --distro, the qcow2 file to write (required).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Directory with vmlinuz and modules from scripts/setup.sh
        /// [default: $EDGEMIG_KERNEL_DIR or <target>/guest-kernel].
        #[arg(long, env = "EDGEMIG_KERNEL_DIR")]
        kernel_dir: Option<PathBuf>,
        /// Statically linked edgemig-guest binary
        /// [default: <target>/x86_64-unknown-linux-gnu/release/edgemig-guest].
        #[arg(long, env = "EDGEMIG_GUEST_AGENT")]
        guest_agent: Option<PathBuf>,
        /// Static busybox binary.
        #[arg(long, default_value = "/bin/busybox")]
        busybox: PathBuf,
        /// Build a bootable qcow2 disk of this distribution from its
        /// packages (BIOS and UEFI; needs root): `debian12`.
        #[arg(long, value_parser = parse_distro)]
        distro: Option<Distro>,
        /// Extra packages of the disk image, comma-separated
        /// (e.g. nginx-light,redis-server).
        #[arg(long, value_delimiter = ',', requires = "distro", value_parser = parse_package)]
        packages: Vec<PackageName>,
        /// Leave the guest agent out; systemd-networkd then runs DHCP on
        /// every Ethernet NIC.
        #[arg(long, requires = "distro", conflicts_with = "agent_deb")]
        no_agent: bool,
        /// The edgemig-guest package to install
        /// [default: <target>/debian/edgemig-guest_<version>_amd64.deb].
        #[arg(long, requires = "distro")]
        agent_deb: Option<PathBuf>,
        /// Virtual size of the disk (e.g. 2G, 4096M; a bare number is MiB).
        #[arg(long, default_value = "2G", requires = "distro")]
        size: String,
        /// Where built images and root file systems are cached
        /// [default: <target>/distro-cache].
        #[arg(long, requires = "distro")]
        cache_dir: Option<PathBuf>,
    },
}

fn parse_distro(s: &str) -> Result<Distro, distro::DistroError> {
    s.parse()
}

fn parse_package(s: &str) -> Result<PackageName, distro::DistroError> {
    s.trim().parse()
}

/// The cargo target directory this binary was built into (`target/` when
/// the binary is `target/debug/edgemig`).
pub fn target_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent()?.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("target"))
}

/// Default path of the guest agent package written by
/// scripts/package-debs.sh.
pub fn default_agent_deb(target: &Path) -> PathBuf {
    target.join(format!(
        "debian/edgemig-guest_{}_amd64.deb",
        env!("CARGO_PKG_VERSION")
    ))
}

/// Runs an image subcommand.
pub fn run(cmd: ImageCommand, json: bool) -> anyhow::Result<()> {
    let ImageCommand::Build {
        out,
        kernel_dir,
        guest_agent,
        busybox,
        distro,
        packages,
        no_agent,
        agent_deb,
        size,
        cache_dir,
    } = cmd;
    let target = target_dir();
    if let Some(distro) = distro {
        let out = out.context("--out FILE.qcow2 is required with --distro")?;
        let agent = if no_agent {
            Agent::None
        } else {
            Agent::Deb(agent_deb.unwrap_or_else(|| default_agent_deb(&target)))
        };
        let mut spec = DistroSpec::debian12(
            packages,
            agent,
            cache_dir.unwrap_or_else(|| target.join("distro-cache")),
        );
        spec.distro = distro;
        spec.size_bytes = crate::size::parse_mib(&size)? << 20;
        return build_distro(&spec, &out, json);
    }
    let spec = ImageSpec {
        kernel_dir: kernel_dir.unwrap_or_else(|| target.join("guest-kernel")),
        guest_agent: guest_agent
            .unwrap_or_else(|| target.join("x86_64-unknown-linux-gnu/release/edgemig-guest")),
        busybox,
        out_dir: out.unwrap_or_else(|| target.join("guest-image")),
    };
    let built = edgemig_image::build(&spec)?;
    if json {
        output::json(&built)
    } else {
        println!(
            "wrote {} and {} ({:.1} MiB)",
            built.kernel.display(),
            built.initramfs.display(),
            built.initramfs_bytes as f64 / (1024.0 * 1024.0)
        );
        Ok(())
    }
}

fn build_distro(spec: &DistroSpec, out: &Path, json: bool) -> anyhow::Result<()> {
    let mut progress = |step| eprintln!("image: {step}");
    let image: DistroImage = distro::build(spec, out, &mut progress)?;
    if json {
        return output::json(&image);
    }
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!(
        "wrote {} ({:.0} MiB, virtual {:.0} MiB, kernel {}, {}) {} in {:.1} s\nsha256 {}",
        image.path.display(),
        mib(image.file_bytes),
        mib(image.virtual_bytes),
        image.kernel,
        if image.agent {
            "guest agent"
        } else {
            "no agent, DHCP"
        },
        if image.cache_hit {
            "from the cache"
        } else {
            "built"
        },
        image.seconds,
        image.sha256,
    );
    Ok(())
}
