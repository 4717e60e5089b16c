//! [`Renewal`]: keeps a lease alive in the background and says when it must
//! be considered lost, so a controller stops deciding in time.
//!
//! The lease is renewed every third of its TTL. It is lost when a renewal
//! answers `false`, or when no renewal succeeded for a whole TTL counted
//! from the start of the last successful one (directory unreachable: the
//! lease may have expired on the server, so the holder must assume it has).

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::directory::Directory;
use crate::model::Lease;

/// Shortest pause between two renewals.
const MIN_PERIOD: Duration = Duration::from_millis(50);

/// Background renewal of one lease; stops (without releasing) when dropped.
#[derive(Debug)]
pub struct Renewal {
    lease: Lease,
    held: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

impl Renewal {
    /// Starts renewing `lease` through `dir` (on the current tokio runtime).
    #[must_use]
    pub fn spawn(dir: Directory, lease: Lease) -> Self {
        let (tx, held) = watch::channel(true);
        let task = tokio::spawn(renew_loop(dir, lease.clone(), tx));
        Self { lease, held, task }
    }

    /// The lease being renewed (for guarded operations).
    #[must_use]
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// False once the lease is lost; it never comes back.
    #[must_use]
    pub fn is_held(&self) -> bool {
        *self.held.borrow()
    }

    /// Waits until the lease is lost.
    pub async fn lost(&mut self) {
        // An error means the task ended, which it only does once lost (or
        // when aborted by `stop`, which consumes `self`).
        let _ = self.held.wait_for(|held| !*held).await;
    }

    /// Stops renewing and hands the lease back (e.g. to release it).
    #[must_use]
    pub fn stop(self) -> Lease {
        self.task.abort();
        self.lease.clone()
    }
}

impl Drop for Renewal {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn renew_loop(dir: Directory, lease: Lease, held: watch::Sender<bool>) {
    let period = (lease.ttl() / 3).max(MIN_PERIOD);
    // The lease was just acquired or renewed by the caller.
    let mut valid_until = Instant::now() + lease.ttl();
    loop {
        tokio::time::sleep(period).await;
        let started = Instant::now();
        let outcome = tokio::time::timeout_at(valid_until, dir.renew(&lease)).await;
        match outcome {
            Ok(Ok(true)) => valid_until = started + lease.ttl(),
            Ok(Ok(false)) => break,
            Ok(Err(e)) => {
                tracing::warn!(vm = lease.vm(), error = %e, "lease renewal failed");
            }
            Err(_deadline) => {}
        }
        if Instant::now() >= valid_until {
            tracing::warn!(vm = lease.vm(), "lease not renewed for a whole TTL: lost");
            break;
        }
    }
    held.send_replace(false);
}
