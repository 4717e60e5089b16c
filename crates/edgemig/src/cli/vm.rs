//! `edgemig vm ...`: VM lifecycle at the local site.

use clap::Subcommand;
use edgemig_api::{ApiClient, VmCreate};

use super::guest::GuestCommand;
use super::output;
use crate::size::parse_mib;

/// VM subcommands.
#[derive(Debug, Subcommand)]
pub enum VmCommand {
    /// Define a VM (it does not start).
    Create {
        /// VM name: 1-32 of [a-z0-9-], starting with a letter.
        name: String,
        /// Guest RAM, e.g. 256M or 1G.
        #[arg(long, default_value = "256M")]
        memory: String,
        /// Size of a data disk (virtio-blk), e.g. 1G. None by default.
        #[arg(long)]
        disk: Option<String>,
        /// Make the data disk an overlay on this cached base image (digest or
        /// name, see `edgemig base-image list`); --disk defaults to its size.
        #[arg(long)]
        base_image: Option<String>,
        /// Virtual CPUs.
        #[arg(long, default_value_t = 1)]
        vcpus: u32,
    },
    /// Start a VM.
    Start {
        /// VM name.
        name: String,
    },
    /// Stop a running VM.
    Stop {
        /// VM name.
        name: String,
    },
    /// Delete a stopped VM and its disks.
    Delete {
        /// VM name.
        name: String,
    },
    /// List the site's VMs.
    List,
    /// Show one VM.
    Show {
        /// VM name.
        name: String,
    },
    /// Ask the VM's guest agent to run a workload or check one.
    Guest {
        /// VM name.
        name: String,
        /// The request.
        #[command(subcommand)]
        request: GuestCommand,
    },
}

/// Runs a VM subcommand.
pub async fn run(client: &ApiClient, cmd: VmCommand, json: bool) -> anyhow::Result<()> {
    let info = match cmd {
        VmCommand::Create {
            name,
            memory,
            disk,
            base_image,
            vcpus,
        } => {
            let spec = VmCreate {
                name,
                memory_mib: parse_mib(&memory)?,
                vcpus,
                disk_mib: disk.as_deref().map(parse_mib).transpose()?,
                base_image,
            };
            client.create_vm(&spec).await?
        }
        VmCommand::Start { name } => client.start_vm(&name).await?,
        VmCommand::Stop { name } => client.stop_vm(&name).await?,
        VmCommand::Delete { name } => {
            client.delete_vm(&name).await?;
            if json {
                return output::json(&serde_json::json!({ "deleted": name }));
            }
            println!("deleted {name}");
            return Ok(());
        }
        VmCommand::List => {
            let vms = client.list_vms().await?;
            if json {
                return output::json(&vms);
            }
            output::vm_table(&vms);
            return Ok(());
        }
        VmCommand::Show { name } => client.vm(&name).await?,
        VmCommand::Guest { name, request } => {
            return super::guest::run(client, &name, request, json).await;
        }
    };
    if json {
        output::json(&info)
    } else {
        output::vm_details(&info);
        Ok(())
    }
}
