//! Command-line structure of `edgemig` and dispatch to the subcommands.

mod bench;
mod bench_follow;
mod bench_soak;
mod demo;
mod guest;
mod image;
mod image_cache;
mod migrate;
mod output;
mod testbed;
mod vm;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use edgemig_api::ApiClient;

/// edgemig: live-migrate VMs between edge sites over all paths, keeping
/// their clients connected.
#[derive(Debug, Parser)]
#[command(name = "edgemig", version, about, long_about = None)]
pub struct Cli {
    /// API socket of the local edgemigd.
    #[arg(long, global = true, env = "EDGEMIG_SOCKET", default_value = edgemig_api::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Talk to the agent of this testbed site (with --testbed) instead of --socket.
    #[arg(long, global = true, requires = "testbed")]
    pub site: Option<String>,
    /// Testbed whose site --site names.
    #[arg(long, global = true, requires = "site")]
    pub testbed: Option<String>,
    /// Print results as JSON.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `edgemig image ...`: building images (on this host) and the site's
/// image cache (through the agent).
#[derive(Debug, Subcommand)]
pub enum ImageCommands {
    /// Building images.
    #[command(flatten)]
    Build(image::ImageCommand),
    /// The site's image cache.
    #[command(flatten)]
    Cache(image_cache::ImageCacheCommand),
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage VMs at the local site.
    #[command(subcommand)]
    Vm(vm::VmCommand),
    /// Build guest images; import, list, remove and push the site's cached
    /// images (which VMs boot from and data disks are overlays on).
    #[command(subcommand)]
    Image(ImageCommands),
    /// The same as `edgemig image import|list|remove|push` (older name).
    #[command(subcommand, hide = true)]
    BaseImage(image_cache::ImageCacheCommand),
    /// The paper's story with real parts: alice's VM follows her to the near site.
    Demo(demo::DemoArgs),
    /// Live-migrate a VM to another site (`migrate cancel VM` stops one).
    Migrate(migrate::MigrateArgs),
    /// Running and recent migrations driven from this site.
    Migrations,
    /// Build, inspect, change and remove an edge testbed on this machine.
    #[command(subcommand)]
    Testbed(testbed::TestbedCommand),
    /// Run a benchmark (against its baseline, in the same run).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Show the local agent's site.
    Site,
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let socket = match (&cli.testbed, &cli.site) {
        (Some(testbed), Some(site)) => {
            let state = edgemig_testbed::TestbedState::load(testbed)?;
            state
                .sites
                .iter()
                .find(|s| &s.name == site)
                .map(|s| s.api_socket.clone())
                .ok_or_else(|| anyhow::anyhow!("Testbed {testbed:?} has no site {site:?}"))?
        }
        _ => cli.socket.clone(),
    };
    let client = ApiClient::new(&socket);
    match cli.command {
        Command::Vm(cmd) => vm::run(&client, cmd, cli.json).await,
        Command::Image(ImageCommands::Build(cmd)) => image::run(cmd, cli.json),
        Command::Image(ImageCommands::Cache(cmd)) | Command::BaseImage(cmd) => {
            image_cache::run(&client, cmd, cli.json).await
        }
        Command::Testbed(cmd) => testbed::run(cmd, cli.json).await,
        Command::Bench(cmd) => bench::run(cmd, cli.json).await,
        Command::Migrate(args) => migrate::run(&client, args, cli.json).await,
        Command::Migrations => migrate::list(&client, cli.json).await,
        Command::Demo(args) => demo::run(args, cli.json).await,
        Command::Site => {
            let site = client.site().await?;
            if cli.json {
                output::json(&site)
            } else {
                println!(
                    "site {}  edgemigd {}  QEMU {}  VM subnet {}  {} VMs",
                    site.site, site.version, site.qemu_version, site.vm_subnet, site.vms
                );
                Ok(())
            }
        }
    }
}
