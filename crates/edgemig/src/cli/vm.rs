//! `edgemig vm ...`: VM lifecycle at the local site.

use clap::Subcommand;
use edgemig_api::{ApiClient, PolicySpec, VmCreate};
use edgemig_policy::FollowPolicy;

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
        /// Boot this cached image (digest or name, see `edgemig image
        /// list`): the VM's root disk is an overlay on it, started by the
        /// image's own bootloader. Default: the site's built-in guest.
        #[arg(long)]
        image: Option<String>,
        /// Firmware for --image instead of the image's own: bios or uefi.
        #[arg(long)]
        firmware: Option<edgemig_api::images::Firmware>,
        /// Make the data disk an overlay on this cached image (digest or
        /// name); --disk defaults to its size.
        #[arg(long)]
        base_image: Option<String>,
        /// Virtual CPUs.
        #[arg(long, default_value_t = 1)]
        vcpus: u32,
        /// Which applications in the guest get MPTCP without being changed:
        /// `all`, `off`, or systemd unit names (repeat the flag or separate
        /// with commas); see docs/guest-agent.md.
        #[arg(long, value_delimiter = ',', default_value = "off")]
        mptcp_apps: Vec<String>,
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
    /// Set the VM's placement policy: `follow` keeps it at the site nearest
    /// its clients (migrating it with handoff when another site is clearly
    /// and stably better); `none` leaves it where it is. The last one set
    /// stands; `vm show` explains the last decision.
    Policy {
        /// VM name.
        name: String,
        /// `follow` or `none`.
        #[arg(value_parser = ["follow", "none"])]
        mode: String,
        /// Least relative RTT gain worth a move, e.g. 30% or 0.3.
        #[arg(long)]
        min_gain: Option<String>,
        /// How long another site must stay that much better, e.g. 20s.
        #[arg(long)]
        hold: Option<String>,
        /// Most policy migrations in any hour.
        #[arg(long)]
        max_per_hour: Option<u32>,
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
            image,
            firmware,
            base_image,
            vcpus,
            mptcp_apps,
        } => {
            let spec = VmCreate {
                name,
                memory_mib: parse_mib(&memory)?,
                vcpus,
                disk_mib: disk.as_deref().map(parse_mib).transpose()?,
                base_image,
                image,
                firmware,
                mptcp_apps: super::guest::scope_of(&mptcp_apps),
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
        VmCommand::Policy {
            name,
            mode,
            min_gain,
            hold,
            max_per_hour,
        } => {
            let spec = policy_spec(&mode, min_gain.as_deref(), hold.as_deref(), max_per_hour)?;
            client.set_policy(&name, &spec).await?
        }
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

/// The policy the `vm policy` flags ask for (defaults for what is absent).
fn policy_spec(
    mode: &str,
    min_gain: Option<&str>,
    hold: Option<&str>,
    max_per_hour: Option<u32>,
) -> anyhow::Result<PolicySpec> {
    if mode == "none" {
        anyhow::ensure!(
            min_gain.is_none() && hold.is_none() && max_per_hour.is_none(),
            "--min-gain, --hold and --max-per-hour only go with `follow`"
        );
        return Ok(PolicySpec::None);
    }
    let mut policy = FollowPolicy::default();
    if let Some(g) = min_gain {
        policy.min_gain = edgemig_policy::parse_gain(g)?;
    }
    if let Some(h) = hold {
        policy.hold_ms = edgemig_policy::parse_duration_ms(h)?;
    }
    if let Some(n) = max_per_hour {
        policy.max_per_hour = n;
    }
    policy.validate()?;
    Ok(PolicySpec::Follow(policy))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_flags_become_a_spec() {
        let PolicySpec::Follow(p) =
            policy_spec("follow", Some("50%"), Some("4s"), Some(9)).unwrap()
        else {
            panic!("not follow")
        };
        assert_eq!((p.min_gain, p.hold_ms, p.max_per_hour), (0.5, 4000, 9));
        assert_eq!(
            policy_spec("none", None, None, None).unwrap(),
            PolicySpec::None
        );
        assert!(policy_spec("none", Some("10%"), None, None).is_err());
        assert!(policy_spec("follow", Some("150%"), None, None).is_err());
        assert!(policy_spec("follow", None, Some("soon"), None).is_err());
        assert!(policy_spec("follow", None, None, Some(0)).is_err());
    }
}
