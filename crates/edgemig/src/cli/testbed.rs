//! `edgemig testbed ...`: an edge cloud on one machine (sites, WAN paths,
//! clients as network namespaces with emulated links and real agents).

use std::path::PathBuf;

use clap::Subcommand;
use edgemig_api::ApiClient;
use edgemig_testbed::state::TestbedState;
use edgemig_testbed::units::{parse_duration, parse_loss, parse_rate};
use edgemig_testbed::{TestbedConfig, UpOptions};
use serde_json::{Value, json};

use super::image::target_dir;
use super::output;

/// Default testbed name.
pub const DEFAULT_NAME: &str = "edgemig";

/// Testbed subcommands.
#[derive(Debug, Subcommand)]
pub enum TestbedCommand {
    /// Build a testbed (default: two sites, two paths, client alice).
    Up {
        /// Testbed config (TOML, see docs/testbed.md); the default topology when absent.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Testbed name: prefix of its namespaces.
        #[arg(long, default_value = DEFAULT_NAME)]
        name: String,
        /// Guest image for the site agents [default: <target>/guest-image].
        #[arg(long)]
        image_dir: Option<PathBuf>,
    },
    /// Show a testbed: sites, agents, links and their counters.
    Status {
        /// Testbed name.
        #[arg(long, default_value = DEFAULT_NAME)]
        name: String,
    },
    /// Change an emulated link at run time.
    Link {
        /// Link name: `path1`, `path2`, ... or `<client>-<site>`.
        link: String,
        /// Only `set` is supported.
        #[arg(value_parser = ["set"])]
        action: String,
        /// Settings: `rate=50mbit`, `delay=10ms`, `jitter=1ms`, `loss=0.1%`, `up`, `down`.
        #[arg(required = true)]
        settings: Vec<String>,
        /// Testbed name.
        #[arg(long, default_value = DEFAULT_NAME)]
        name: String,
    },
    /// Run a command inside a site or client namespace.
    Exec {
        /// Node: a site or client name.
        node: String,
        /// Testbed name.
        #[arg(long, default_value = DEFAULT_NAME)]
        name: String,
        /// The command (after `--`).
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Kill a site's agent (as a crash would) or start it again with its
    /// config and state (as systemd's Restart=on-failure would).
    Agent {
        /// `kill` (SIGKILL) or `start`.
        #[arg(value_parser = ["kill", "start"])]
        action: String,
        /// The site.
        site: String,
        /// Testbed name.
        #[arg(long, default_value = DEFAULT_NAME)]
        name: String,
    },
    /// Remove a testbed: every namespace, process and file it made.
    Down {
        /// Testbed name.
        #[arg(long, default_value = DEFAULT_NAME)]
        name: String,
    },
}

/// A bad `link set` argument.
#[derive(Debug, thiserror::Error)]
pub enum LinkArgError {
    /// Unknown setting.
    #[error("Unknown link setting {0:?}: use rate=, delay=, jitter=, loss=, up or down")]
    Unknown(String),
    /// Bad value.
    #[error(transparent)]
    Unit(#[from] edgemig_testbed::units::UnitsError),
    /// No such link.
    #[error("Testbed has no link {0:?} (links: {1})")]
    NoLink(String, String),
    /// No such node.
    #[error("Testbed has no node {0:?} (nodes: {1})")]
    NoNode(String, String),
}

/// The `link set` settings as the emulator's control request.
pub fn link_request(settings: &[String]) -> Result<Value, LinkArgError> {
    let mut req = serde_json::Map::new();
    for s in settings {
        match s.split_once('=') {
            Some(("rate", v)) => {
                parse_rate(v)?;
                req.insert("rate".into(), json!(v));
            }
            Some(("delay", v)) => {
                parse_duration(v)?;
                req.insert("delay".into(), json!(v));
            }
            Some(("jitter", v)) => {
                parse_duration(v)?;
                req.insert("jitter".into(), json!(v));
            }
            Some(("loss", v)) => {
                parse_loss(v)?;
                req.insert("loss".into(), json!(v));
            }
            None if s == "up" => {
                req.insert("up".into(), json!(true));
            }
            None if s == "down" => {
                req.insert("up".into(), json!(false));
            }
            _ => return Err(LinkArgError::Unknown(s.clone())),
        }
    }
    Ok(Value::Object(req))
}

/// Runs a testbed subcommand.
pub async fn run(cmd: TestbedCommand, json_out: bool) -> anyhow::Result<()> {
    match cmd {
        TestbedCommand::Up {
            config,
            name,
            image_dir,
        } => {
            let config = match config {
                Some(path) => TestbedConfig::load(&path)?,
                None => TestbedConfig::default_config(),
            };
            let exe_dir = std::env::current_exe()?
                .parent()
                .map(PathBuf::from)
                .unwrap_or_default();
            let opts = UpOptions {
                name,
                config,
                agent: exe_dir.join("edgemigd"),
                linkemu: exe_dir.join("edgemig-linkemu"),
                image_dir: image_dir.unwrap_or_else(|| target_dir().join("guest-image")),
            };
            let state = edgemig_testbed::up(&opts).await?;
            if json_out {
                return output::json(&state);
            }
            println!("testbed {} is up", state.name);
            print_state(&state);
            Ok(())
        }
        TestbedCommand::Status { name } => {
            let state = TestbedState::load(&name)?;
            let status = status(&state).await;
            if json_out {
                return output::json(&status);
            }
            print_state(&state);
            for site in status["sites"].as_array().into_iter().flatten() {
                println!(
                    "  agent {}: {} ({} VMs)",
                    site["name"].as_str().unwrap_or_default(),
                    if site["agent_running"] == json!(true) {
                        "running"
                    } else {
                        "NOT RUNNING"
                    },
                    site["vms"]
                );
            }
            for link in status["links"].as_array().into_iter().flatten() {
                println!(
                    "  link {}: {}",
                    link["name"].as_str().unwrap_or_default(),
                    link["stats"]
                );
            }
            Ok(())
        }
        TestbedCommand::Link {
            link,
            settings,
            name,
            ..
        } => {
            let state = TestbedState::load(&name)?;
            let request = link_request(&settings)?;
            let entry = state.links.iter().find(|l| l.name == link).ok_or_else(|| {
                let names: Vec<_> = state.links.iter().map(|l| l.name.as_str()).collect();
                LinkArgError::NoLink(link.clone(), names.join(", "))
            })?;
            let answer = edgemig_testbed::control::request(&entry.control, &request)?;
            if json_out {
                return output::json(&answer);
            }
            println!("{link}: {}", answer["params"]);
            Ok(())
        }
        TestbedCommand::Exec {
            node,
            name,
            command,
        } => {
            let state = TestbedState::load(&name)?;
            let netns = state.netns_of(&node).ok_or_else(|| {
                let names: Vec<_> = state.namespaces.iter().map(|(n, _)| n.as_str()).collect();
                LinkArgError::NoNode(node.clone(), names.join(", "))
            })?;
            let status = edgemig_testbed::process::run_in(netns, &command)?;
            std::process::exit(status.code().unwrap_or(1));
        }
        TestbedCommand::Agent { action, site, name } => {
            let pid = if action == "kill" {
                edgemig_testbed::agents::kill_agent(&name, &site)?
            } else {
                let exe_dir = std::env::current_exe()?
                    .parent()
                    .map(std::path::Path::to_path_buf)
                    .unwrap_or_default();
                edgemig_testbed::agents::start_agent(&name, &site, &exe_dir.join("edgemigd"))?
            };
            if json_out {
                return output::json(
                    &serde_json::json!({ "site": site, "action": action, "pid": pid }),
                );
            }
            println!("agent of {site}: {action} (pid {pid})");
            Ok(())
        }
        TestbedCommand::Down { name } => {
            let report = edgemig_testbed::down(&name)?;
            if json_out {
                return output::json(&report);
            }
            println!(
                "testbed {name} removed: {} processes, {} VMs, {} namespaces",
                report.processes, report.vms, report.namespaces
            );
            Ok(())
        }
    }
}

fn print_state(state: &TestbedState) {
    for site in &state.sites {
        println!(
            "  site {:<10} netns {:<20} VM subnet {:<15} paths {:<30} API {}",
            site.name,
            site.netns,
            site.vm_subnet,
            site.path_addrs.join(","),
            site.api_socket.display()
        );
    }
    for link in &state.links {
        println!(
            "  {} {:<16} {} <-> {}  {} {}",
            link.kind, link.name, link.ends[0], link.ends[1], link.rate, link.delay
        );
    }
}

/// Live status: agents' answers and link counters.
async fn status(state: &TestbedState) -> Value {
    let mut sites = Vec::new();
    for site in &state.sites {
        let client =
            ApiClient::new(&site.api_socket).with_timeout(std::time::Duration::from_secs(5));
        let info = client.site().await.ok();
        sites.push(json!({
            "name": site.name,
            "netns": site.netns,
            "api_socket": site.api_socket,
            "agent_running": info.is_some(),
            "vms": info.map(|i| i.vms),
            "path_addrs": site.path_addrs,
        }));
    }
    let links: Vec<Value> = state
        .links
        .iter()
        .map(|l| {
            let stats = edgemig_testbed::control::request(&l.control, &json!({"stats": true}))
                .unwrap_or_else(|e| json!({"error": e.to_string()}));
            json!({"name": l.name, "kind": l.kind, "ends": l.ends, "rate": l.rate, "delay": l.delay, "stats": stats})
        })
        .collect();
    json!({"name": state.name, "complete": state.complete, "sites": sites, "links": links, "namespaces": state.namespaces})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_settings_parse_and_reject() {
        let req = link_request(&["rate=20mbit".into(), "delay=5ms".into(), "down".into()]).unwrap();
        assert_eq!(req, json!({"rate": "20mbit", "delay": "5ms", "up": false}));
        assert!(link_request(&["rate=fast".into()]).is_err());
        assert!(link_request(&["colour=red".into()]).is_err());
    }
}
