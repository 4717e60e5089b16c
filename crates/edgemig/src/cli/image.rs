//! `edgemig image build`: the guest image (kernel + initramfs with busybox,
//! the guest agent and its workload tools).

use std::path::{Path, PathBuf};

use clap::Subcommand;
use edgemig_image::ImageSpec;

use super::output;

/// Image subcommands.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build the guest kernel + initramfs.
    Build {
        /// Output directory [default: <target>/guest-image next to this binary].
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
    },
}

/// The cargo target directory this binary was built into (`target/` when
/// the binary is `target/debug/edgemig`).
pub fn target_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent()?.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("target"))
}

/// Runs an image subcommand.
pub fn run(cmd: ImageCommand, json: bool) -> anyhow::Result<()> {
    let ImageCommand::Build {
        out,
        kernel_dir,
        guest_agent,
        busybox,
    } = cmd;
    let target = target_dir();
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
