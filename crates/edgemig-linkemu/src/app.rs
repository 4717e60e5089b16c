//! Wiring of the emulator: command-line options, TAP setup, forwarding
//! threads, control socket, and shutdown on SIGTERM/SIGINT.

use std::io::{self, Write};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;

use crate::control::{self, Controller};
use crate::forward::{self, DirShared, ForwardError};
use crate::shaper::LinkParams;
use crate::tap::{Tap, TapError};
use crate::units::{parse_duration, parse_loss, parse_rate};

/// Command-line options of `edgemig-linkemu`.
#[derive(Debug, Parser)]
#[command(
    name = "edgemig-linkemu",
    about = "User-space WAN link emulator between two TAP devices"
)]
pub struct Args {
    /// Name of TAP device A.
    #[arg(long)]
    pub tap_a: String,
    /// Network namespace to move TAP A into (default: stay here).
    #[arg(long)]
    pub netns_a: Option<String>,
    /// Name of TAP device B.
    #[arg(long)]
    pub tap_b: String,
    /// Network namespace to move TAP B into (default: stay here).
    #[arg(long)]
    pub netns_b: Option<String>,
    /// Rate per direction (`50mbit`, `1gbit`; 0 = unlimited).
    #[arg(long, default_value = "0", value_parser = parse_rate)]
    pub rate: u64,
    /// One-way delay per direction (`10ms`).
    #[arg(long, default_value = "0ms", value_parser = parse_duration)]
    pub delay: Duration,
    /// Jitter: each frame gets delay ± jitter, without reordering.
    #[arg(long, default_value = "0ms", value_parser = parse_duration)]
    pub jitter: Duration,
    /// Random loss (`0.1%` or a fraction).
    #[arg(long, default_value = "0%", value_parser = parse_loss)]
    pub loss: f64,
    /// Queue limit in bytes per direction (default: 2 × BDP, >= 64 KiB).
    #[arg(long)]
    pub queue: Option<u64>,
    /// Start with the link down.
    #[arg(long)]
    pub down: bool,
    /// Seed for loss and jitter decisions.
    #[arg(long, default_value_t = 0x5eed)]
    pub seed: u64,
    /// Unix socket for run-time control (JSON lines).
    #[arg(long)]
    pub control: PathBuf,
}

/// Errors of the emulator process.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Tap(#[from] TapError),
    #[error(transparent)]
    Forward(#[from] ForwardError),
    #[error("control socket {path}: {source}")]
    Control {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("signal setup: {0}")]
    Signal(#[source] io::Error),
    #[error("spawning a thread: {0}")]
    Thread(#[source] io::Error),
    #[error("forwarding stopped: {0}")]
    Stopped(String),
}

impl Args {
    fn params(&self) -> LinkParams {
        LinkParams {
            rate_bps: self.rate,
            delay: self.delay,
            jitter: self.jitter,
            loss: self.loss,
            queue_limit_bytes: self.queue,
            up: !self.down,
        }
    }
}

fn term_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it fully.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: set is a valid sigset_t; the signal numbers are valid.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
    }
    set
}

/// Blocks SIGTERM/SIGINT in this thread (and every thread spawned later) so
/// that [`wait_signal`] receives them.
fn block_signals() -> Result<(), AppError> {
    let set = term_signals();
    // SAFETY: set is a valid sigset_t; a null old-mask pointer is allowed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(AppError::Signal(io::Error::from_raw_os_error(rc)));
    }
    Ok(())
}

fn wait_signal() {
    let set = term_signals();
    let mut sig: libc::c_int = 0;
    // SAFETY: set and sig are valid for the duration of the call.
    while unsafe { libc::sigwait(&set, &mut sig) } != 0 {}
}

fn raise_term() {
    // SAFETY: kill on our own pid with a valid signal has no preconditions.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGTERM);
    }
}

/// Runs the emulator until SIGTERM/SIGINT (or a forwarding failure).
pub fn run(args: Args) -> Result<(), AppError> {
    block_signals()?;
    let params = args.params();
    let a2b = Arc::new(DirShared::new("a_to_b", params, args.seed)?);
    let b2a = Arc::new(DirShared::new(
        "b_to_a",
        params,
        args.seed.rotate_left(17) ^ 1,
    )?);

    let tap_a = Arc::new(Tap::create_in(&args.tap_a, args.netns_a.as_deref())?);
    let tap_b = Arc::new(Tap::create_in(&args.tap_b, args.netns_b.as_deref())?);

    let ctl_err = |source| AppError::Control {
        path: args.control.display().to_string(),
        source,
    };
    if args.control.exists() {
        std::fs::remove_file(&args.control).map_err(ctl_err)?;
    }
    let listener = UnixListener::bind(&args.control).map_err(ctl_err)?;
    let controller = Arc::new(Controller::new(Arc::clone(&a2b), Arc::clone(&b2a)));
    std::thread::Builder::new()
        .name("linkemu-control".into())
        .spawn(move || control::serve(listener, controller))
        .map_err(AppError::Thread)?;

    let stop = Arc::new(AtomicBool::new(false));
    let failure: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let mut workers = Vec::new();
    for (name, input, output, shared) in [
        ("linkemu-a2b", &tap_a, &tap_b, &a2b),
        ("linkemu-b2a", &tap_b, &tap_a, &b2a),
    ] {
        let (input, output, shared) = (Arc::clone(input), Arc::clone(output), Arc::clone(shared));
        let (stop, failure) = (Arc::clone(&stop), Arc::clone(&failure));
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                if let Err(e) = forward::run(&input, &output, &shared, &stop) {
                    let mut f = failure.lock().unwrap_or_else(|p| p.into_inner());
                    *f = Some(e.to_string());
                    raise_term();
                }
            })
            .map_err(AppError::Thread)?;
        workers.push(handle);
    }

    let mut out = io::stdout().lock();
    // A parent that went away must not stop the emulator.
    let _ = writeln!(out, "ready").and_then(|()| out.flush());
    drop(out);

    wait_signal();
    stop.store(true, Ordering::Release);
    a2b.wake();
    b2a.wake();
    for w in workers {
        let _ = w.join();
    }
    let _ = std::fs::remove_file(&args.control);
    let failed = failure.lock().unwrap_or_else(|p| p.into_inner()).take();
    match failed {
        Some(msg) => Err(AppError::Stopped(msg)),
        None => Ok(()),
    }
}
