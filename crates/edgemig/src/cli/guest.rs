//! `edgemig vm guest NAME ...`: requests to the guest agent (workloads and
//! their verification).

use clap::Subcommand;
use edgemig_api::ApiClient;
use edgemig_guest_proto::{GuestReply, GuestRequest};

use super::output;

/// Guest agent requests.
#[derive(Debug, Subcommand)]
pub enum GuestCommand {
    /// Show the guest agent's identity.
    Hello,
    /// Start the memory writer over a working set.
    MemWrite {
        /// Working set in MiB.
        #[arg(long)]
        mib: u32,
        /// Dirty rate in MiB/s; as fast as possible when absent.
        #[arg(long)]
        rate: Option<u32>,
    },
    /// Stop the memory writer (memory stays for verification).
    MemStop,
    /// Show the memory writer's progress.
    MemStatus,
    /// Verify every page the memory writer wrote.
    MemVerify,
    /// Hold N MiB of mixed data (half random, half text) in guest memory.
    MemFill {
        /// Amount in MiB.
        #[arg(long)]
        mib: u32,
    },
    /// Count the guest's TCP connections (MPTCP subflows included) by local address.
    NetStatus,
    /// The NIC plans staged for handoffs and what became of them.
    NicPlans,
    /// Make unmodified applications' TCP sockets MPTCP (see
    /// docs/guest-agent.md): `all`, `off`, or systemd unit names.
    MptcpApps {
        /// `all`, `off`, or one or more unit names (`nginx.service`).
        #[arg(required = true)]
        scope: Vec<String>,
        /// Restart the units whose processes predate the change (closes
        /// their open connections).
        #[arg(long)]
        restart: bool,
    },
    /// The MPTCP scope in force in the guest.
    MptcpAppsStatus,
    /// Misbehave for a test of the host's limits: the guest agent writes
    /// one line of N MiB to the host (which drops it), then answers.
    Babble {
        /// Length of the line in MiB.
        #[arg(long)]
        mib: u32,
    },
    /// Write seeded data to the data disk.
    DiskWrite {
        /// Amount in MiB.
        #[arg(long)]
        mib: u32,
        /// Seed of the data.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Start, in MiB from the start of the device.
        #[arg(long, default_value_t = 0)]
        offset_mib: u32,
        /// Block device or file in the guest [default: the data disk,
        /// /dev/vda in the built-in guest, /dev/vdb in a VM booting its
        /// own root disk].
        #[arg(long)]
        device: Option<String>,
    },
    /// Verify data written by disk-write.
    DiskVerify {
        /// Amount in MiB.
        #[arg(long)]
        mib: u32,
        /// Seed the data was written with.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Start, in MiB from the start of the device.
        #[arg(long, default_value_t = 0)]
        offset_mib: u32,
        /// Block device or file in the guest [default: the data disk,
        /// /dev/vda in the built-in guest, /dev/vdb in a VM booting its
        /// own root disk].
        #[arg(long)]
        device: Option<String>,
    },
}

/// The scope named on the command line: `all`, `off`, or unit names.
pub fn scope_of(words: &[String]) -> edgemig_guest_proto::mptcp_apps::MptcpScope {
    use edgemig_guest_proto::mptcp_apps::MptcpScope;
    match words {
        [one] if one == "all" => MptcpScope::All,
        [one] if one == "off" => MptcpScope::Off,
        units => MptcpScope::Units(units.to_vec()),
    }
}

/// A verification that found damage.
#[derive(Debug, thiserror::Error)]
#[error("Verification failed: {0}")]
pub struct VerifyFailed(String);

impl From<GuestCommand> for GuestRequest {
    fn from(cmd: GuestCommand) -> Self {
        match cmd {
            GuestCommand::Hello => Self::Hello,
            GuestCommand::MemWrite { mib, rate } => Self::MemWrite {
                mib,
                rate_mib_s: rate,
            },
            GuestCommand::MemStop => Self::MemStop,
            GuestCommand::MemStatus => Self::MemStatus,
            GuestCommand::MemVerify => Self::MemVerify,
            GuestCommand::MemFill { mib } => Self::MemFill { mib },
            GuestCommand::NetStatus => Self::NetStatus,
            GuestCommand::NicPlans => Self::NicPlans,
            GuestCommand::MptcpApps { scope, restart } => Self::MptcpApps {
                scope: scope_of(&scope),
                restart,
            },
            GuestCommand::MptcpAppsStatus => Self::MptcpAppsStatus,
            GuestCommand::Babble { mib } => Self::Babble { mib },
            GuestCommand::DiskWrite {
                mib,
                seed,
                offset_mib,
                device,
            } => Self::DiskWrite {
                device,
                mib,
                offset_mib,
                seed,
            },
            GuestCommand::DiskVerify {
                mib,
                seed,
                offset_mib,
                device,
            } => Self::DiskVerify {
                device,
                mib,
                offset_mib,
                seed,
            },
        }
    }
}

/// Sends the request and prints the reply; a failed verification is an error.
pub async fn run(
    client: &ApiClient,
    name: &str,
    cmd: GuestCommand,
    json: bool,
) -> anyhow::Result<()> {
    let reply = client.guest(name, &cmd.into()).await?;
    if json {
        output::json(&reply)?;
    } else {
        match &reply {
            GuestReply::Hello(a) => println!(
                "edgemig-guest {} (protocol {}), ready {} ms after boot",
                a.version, a.protocol, a.boot_ms
            ),
            GuestReply::Mem(m) => println!(
                "memory writer: {} MiB, {}, {} passes, {} pages written, rate {}",
                m.mib,
                if m.running { "running" } else { "stopped" },
                m.passes,
                m.pages_written,
                m.rate_mib_s
                    .map_or_else(|| "max".to_string(), |r| format!("{r} MiB/s"))
            ),
            GuestReply::MemVerify(v) => {
                println!("memory verify: {} pages, {} bad", v.pages, v.bad_pages)
            }
            GuestReply::Nic(n) => println!(
                "{}: addresses [{}], MPTCP endpoints {:?}",
                n.nic,
                n.addresses.join(", "),
                n.endpoints
            ),
            GuestReply::Net(n) => {
                for (addr, count) in &n.by_address {
                    println!("{addr}: {count} established");
                }
            }
            GuestReply::NicPlan(p) => println!("{}: plan {:?}", p.nic, p.state),
            GuestReply::NicPlans(r) => {
                for p in &r.plans {
                    println!("{}: plan {:?}", p.nic, p.state);
                }
            }
            GuestReply::Filled(f) => println!(
                "memory fill: {} MiB random, {} MiB text",
                f.random_mib, f.text_mib
            ),
            GuestReply::Disk(d) => println!(
                "disk {}: {} bytes, checksum {:016x}, {}",
                d.device,
                d.bytes,
                d.checksum,
                if d.ok { "ok" } else { "MISMATCH" }
            ),
            GuestReply::MptcpApps(r) => {
                println!(
                    "MPTCP for applications: {:?} via {:?}",
                    r.scope, r.mechanism
                );
                for u in &r.units {
                    println!("  {}: {:?}", u.unit, u.state);
                }
            }
        }
    }
    match reply {
        GuestReply::MemVerify(v) if v.bad_pages > 0 => Err(VerifyFailed(format!(
            "{} of {} pages differ (first: {:?})",
            v.bad_pages, v.pages, v.first_bad_page
        ))
        .into()),
        GuestReply::Disk(d) if !d.ok => {
            Err(VerifyFailed(format!("{} bad blocks on {}", d.bad_blocks, d.device)).into())
        }
        _ => Ok(()),
    }
}
