//! `edgemig image import|list|remove|push`: the site's content-addressed
//! image cache, which VMs boot from (`vm create --image`) and data disks
//! are overlays on (`vm create --base-image`); and the Debian 12 image the
//! demo and `bench migrate --image debian12` import, built once and then
//! taken from the build cache under the target directory (as `edgemig
//! image build --distro debian12` does).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use edgemig_api::images::{Firmware, ImagePush};
use edgemig_api::{ApiClient, ImageImport, ImageInfo};
use edgemig_image::distro::{self, Agent, DistroImage, DistroSpec, PackageName};

use super::image::{default_agent_deb, target_dir};
use super::output;

/// The Debian packages of the demo's and the bench's Debian guest besides
/// the base set (one list, so both hit the same cache entry).
pub const DEBIAN_PACKAGES: &[&str] = &["nginx-light"];

/// A directory of this run under `<target>/tmp`, removed when dropped
/// (the image copy a run imports; the sites keep their own).
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// `<target>/tmp/<prefix>-<pid>`, created.
    pub fn new(target: &Path, prefix: &str) -> anyhow::Result<Self> {
        let dir = target
            .join("tmp")
            .join(format!("{prefix}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("Cannot create {}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Builds (or takes from the cache) the Debian 12 image with
/// [`DEBIAN_PACKAGES`] into `dir`; progress lines start with `who`.
fn debian_image(dir: &Path, who: &str) -> anyhow::Result<DistroImage> {
    let target = target_dir();
    let packages = DEBIAN_PACKAGES
        .iter()
        .map(|p| p.parse::<PackageName>())
        .collect::<Result<Vec<_>, _>>()?;
    let spec = DistroSpec::debian12(
        packages,
        Agent::Deb(default_agent_deb(&target)),
        target.join("distro-cache"),
    );
    let mut progress = |step| eprintln!("{who}: image: {step}");
    let out = dir.join("debian12.qcow2");
    distro::build(&spec, &out, &mut progress)
        .with_context(|| format!("Cannot build the {who}'s Debian image"))
}

/// The Debian 12 image in a fresh scratch directory (built, or copied
/// from the cache), with progress and the outcome on stderr; the image
/// lives as long as the returned [`Scratch`].
pub async fn debian12(who: &'static str) -> anyhow::Result<(Scratch, DistroImage)> {
    let scratch = Scratch::new(&target_dir(), who)?;
    eprintln!(
        "{who}: the Debian 12 image with {} (cached after the first build)",
        DEBIAN_PACKAGES.join(", ")
    );
    let dir = scratch.0.clone();
    let image = tokio::task::spawn_blocking(move || debian_image(&dir, who)).await??;
    eprintln!(
        "{who}: image ready in {:.1} s ({}, kernel {})",
        image.seconds,
        if image.cache_hit {
            "from the cache"
        } else {
            "built"
        },
        image.kernel
    );
    Ok((scratch, image))
}

/// Longest an image push may take.
const PUSH_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

/// Image-cache subcommands (agent side).
#[derive(Debug, Subcommand)]
pub enum ImageCacheCommand {
    /// Copy a raw or qcow2 disk image into the site's cache (named by its
    /// SHA-256). Refused: files with a backing file, encrypted images,
    /// files a running process writes, and files that are no disk image.
    Import {
        /// The image file (read by the agent, on its host).
        file: PathBuf,
        /// Name to show [default: the file name].
        #[arg(long)]
        name: Option<String>,
        /// Firmware of VMs booting it: bios (SeaBIOS) or uefi (OVMF).
        #[arg(long, default_value = "bios")]
        firmware: Firmware,
    },
    /// List the site's cached images.
    List,
    /// Remove a cached image no VM uses (digest or name).
    Remove {
        /// Digest (`sha256:…`) or name.
        image: String,
    },
    /// Copy a cached image to another site ahead of its VMs: over every
    /// path (MPTCP), compressed, checked against its digest on arrival; a
    /// push that was cut resumes where it stopped.
    Push {
        /// Digest (`sha256:…`) or name.
        image: String,
        /// Destination site (one of this site's peers).
        #[arg(long)]
        to: String,
    },
}

/// Runs an image-cache subcommand.
pub async fn run(client: &ApiClient, cmd: ImageCacheCommand, json: bool) -> anyhow::Result<()> {
    match cmd {
        ImageCacheCommand::Import {
            file,
            name,
            firmware,
        } => {
            let path = std::path::absolute(&file)
                .with_context(|| format!("Cannot resolve {}", file.display()))?;
            let import = ImageImport {
                path: path.display().to_string(),
                name,
                firmware: Some(firmware),
            };
            let image = client.import_image(&import).await?;
            if json {
                return output::json(&image);
            }
            table(std::slice::from_ref(&image));
        }
        ImageCacheCommand::List => {
            let images = client.list_images().await?;
            if json {
                return output::json(&images);
            }
            table(&images);
        }
        ImageCacheCommand::Remove { image } => {
            client.remove_image(&image).await?;
            if json {
                return output::json(&serde_json::json!({ "removed": image }));
            }
            println!("removed {image}");
        }
        ImageCacheCommand::Push { image, to } => {
            let report = client
                .clone()
                .with_timeout(PUSH_TIMEOUT)
                .push_image(&image, &ImagePush { to })
                .await?;
            if json {
                return output::json(&report);
            }
            if report.already_present {
                println!("{} is already at {}", report.digest, report.to);
            } else {
                println!(
                    "pushed {} to {}: {:.1} MiB in {:.1} s ({:.1} MiB on the wire{}{})",
                    report.digest,
                    report.to,
                    report.file_bytes as f64 / f64::from(1 << 20),
                    report.total_ms as f64 / 1000.0,
                    report.wire_bytes as f64 / f64::from(1 << 20),
                    if report.resumed_from > 0 {
                        format!(", resumed at {} MiB", report.resumed_from >> 20)
                    } else {
                        String::new()
                    },
                    if report.attempts > 1 {
                        format!(", {} attempts", report.attempts)
                    } else {
                        String::new()
                    }
                );
            }
        }
    }
    Ok(())
}

fn table(images: &[ImageInfo]) {
    println!(
        "{:<20} {:<6} {:<5} {:>9} {:>9}  {:<16} DIGEST",
        "NAME", "FORMAT", "BOOT", "VIRTUAL", "ON DISK", "USED BY"
    );
    for i in images {
        let used = if i.used_by.is_empty() {
            "-".to_string()
        } else {
            i.used_by.join(",")
        };
        println!(
            "{:<20} {:<6} {:<5} {:>6} MiB {:>6} MiB  {:<16} {}",
            i.name,
            i.format,
            i.firmware,
            i.virtual_bytes >> 20,
            i.file_bytes >> 20,
            used,
            i.digest
        );
    }
}
