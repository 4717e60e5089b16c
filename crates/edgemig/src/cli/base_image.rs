//! `edgemig base-image import|list|remove`: the site's cache of base images
//! (content-addressed), which VM data disks can be overlays on.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use edgemig_api::{ApiClient, ImageImport, ImageInfo};

use super::output;

/// Base-image subcommands.
#[derive(Debug, Subcommand)]
pub enum BaseImageCommand {
    /// Copy a raw or qcow2 file into the site's cache (named by its SHA-256).
    Import {
        /// The image file (read by the agent, on its host).
        file: PathBuf,
        /// Name to show [default: the file name].
        #[arg(long)]
        name: Option<String>,
    },
    /// List the site's cached base images.
    List,
    /// Remove a cached base image no VM uses (digest or name).
    Remove {
        /// Digest (`sha256:…`) or name.
        image: String,
    },
}

/// Runs a base-image subcommand.
pub async fn run(client: &ApiClient, cmd: BaseImageCommand, json: bool) -> anyhow::Result<()> {
    match cmd {
        BaseImageCommand::Import { file, name } => {
            let path = std::path::absolute(&file)
                .with_context(|| format!("Cannot resolve {}", file.display()))?;
            let import = ImageImport {
                path: path.display().to_string(),
                name,
            };
            let image = client.import_image(&import).await?;
            if json {
                return output::json(&image);
            }
            table(std::slice::from_ref(&image));
        }
        BaseImageCommand::List => {
            let images = client.list_images().await?;
            if json {
                return output::json(&images);
            }
            table(&images);
        }
        BaseImageCommand::Remove { image } => {
            client.remove_image(&image).await?;
            if json {
                return output::json(&serde_json::json!({ "removed": image }));
            }
            println!("removed {image}");
        }
    }
    Ok(())
}

fn table(images: &[ImageInfo]) {
    println!(
        "{:<20} {:<6} {:>9} {:>9}  {:<16} DIGEST",
        "NAME", "FORMAT", "VIRTUAL", "ON DISK", "USED BY"
    );
    for i in images {
        let used = if i.used_by.is_empty() {
            "-".to_string()
        } else {
            i.used_by.join(",")
        };
        println!(
            "{:<20} {:<6} {:>6} MiB {:>6} MiB  {:<16} {}",
            i.name,
            i.format,
            i.virtual_bytes >> 20,
            i.file_bytes >> 20,
            used,
            i.digest
        );
    }
}
