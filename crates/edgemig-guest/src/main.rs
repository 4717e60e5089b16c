//! Command line of `edgemig-guest`: the guest agent, the echo/bulk service
//! and the measuring client.

use clap::{Parser, Subcommand};
use edgemig_guest::agent::{self, AgentOptions};
use edgemig_guest::client::{self, ClientConfig, Mode};
use edgemig_guest::service::Server;
use edgemig_guest_proto::SERVICE_PORT;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "edgemig-guest",
    version,
    about = "edgemig guest agent and MPTCP test service/client"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the guest agent on the virtio-serial port (never exits).
    Agent {
        /// Serve on this path (character device, fifo, pty or Unix socket)
        /// instead of searching for the virtio-serial port.
        #[arg(long)]
        port_path: Option<PathBuf>,
        /// Do not start the echo/bulk service.
        #[arg(long)]
        no_service: bool,
        /// Where to keep what must survive an agent restart (a tmpfs: it
        /// is meant to be lost on reboot).
        #[arg(long, default_value = edgemig_guest::state::DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
    },
    /// With the agent stopped, undo what agents set up to give
    /// applications MPTCP (the pinned BPF hook, mptcpize of units) and
    /// record the scope as off; for package removal.
    MptcpAppsOff {
        /// The agent's state directory.
        #[arg(long, default_value = edgemig_guest::state::DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
    },
    /// Run the echo/bulk service (MPTCP, falling back to TCP).
    Serve {
        /// Address to listen on.
        #[arg(long, default_value_t = SocketAddr::from((Ipv4Addr::UNSPECIFIED, SERVICE_PORT)))]
        listen: SocketAddr,
        /// Use plain TCP instead of MPTCP.
        #[arg(long)]
        tcp: bool,
    },
    /// Measure the service: echo RTT, bulk download or upload throughput.
    Client {
        /// Service address (IP:PORT; no name resolution).
        #[arg(long)]
        connect: SocketAddr,
        /// Use plain TCP instead of MPTCP.
        #[arg(long)]
        tcp: bool,
        /// What to measure.
        #[arg(value_enum)]
        mode: Mode,
        /// Length of the measurement in seconds.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Echo probe interval in milliseconds.
        #[arg(long, default_value_t = 100)]
        interval_ms: u64,
        /// One JSON object per line (per second, then the summary).
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Agent {
            port_path,
            no_service,
            state_dir,
        } => agent::run(&AgentOptions {
            port_path,
            service: (!no_service).then(|| SocketAddr::from((Ipv4Addr::UNSPECIFIED, SERVICE_PORT))),
            state_dir,
        }),
        Command::MptcpAppsOff { state_dir } => match agent::mptcp_apps_off(&state_dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("edgemig-guest: {}", edgemig_guest::handler::error_chain(&e));
                ExitCode::from(1)
            }
        },
        Command::Serve { listen, tcp } => match Server::bind(listen, tcp) {
            Ok(server) => {
                match server.local_addr() {
                    Ok(a) => eprintln!(
                        "edgemig-guest: listening on {a} ({})",
                        server.proto().name()
                    ),
                    Err(e) => eprintln!("edgemig-guest: {e}"),
                }
                server.run();
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("edgemig-guest: {e}");
                ExitCode::from(2)
            }
        },
        Command::Client {
            connect,
            tcp,
            mode,
            duration,
            interval_ms,
            json,
        } => {
            let Ok(duration) = Duration::try_from_secs_f64(duration) else {
                eprintln!("edgemig-guest: bad --duration {duration}");
                return ExitCode::from(2);
            };
            let cfg = ClientConfig {
                addr: connect,
                tcp_only: tcp,
                mode,
                duration,
                interval: Duration::from_millis(interval_ms.max(1)),
                json,
            };
            let mut out = std::io::stdout().lock();
            match client::run(&cfg, &mut out) {
                Ok(s) if s.errors == 0 => ExitCode::SUCCESS,
                Ok(_) => ExitCode::from(1),
                Err(e) => {
                    eprintln!("edgemig-guest: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}
