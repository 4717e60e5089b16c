//! `edgemig-policy`: where a VM marked `follow` should run, without
//! moving it.
//!
//! `edgemig vm policy VM follow [--min-gain 30%] [--hold 20s]
//! [--max-per-hour N]` keeps a VM at the site with the lowest latency to
//! the clients that use it. This crate is the pure, deterministic decision
//! behind it: no I/O, no clock, no threads; time comes in the inputs as
//! milliseconds, so the same inputs always give the same decisions and
//! every rule is unit-tested on traces.
//!
//! - [`policy`]: what the operator asked for ([`FollowPolicy`]), with
//!   defaults and validation; [`units`] parses the CLI spellings.
//! - [`observation`]: the inputs at one instant ([`Observation`]): the
//!   clients, the RTT each site would give them, the migration cost.
//! - [`score`]: the weighted mean RTT per site and its gain.
//! - [`history`]: the bounded record of recent moves.
//! - [`follower`]: the state machine ([`Follower::observe`]) with minimum
//!   gain, hold time (hysteresis), cost rule, hourly cap and ping-pong
//!   guard; its module documentation is the reference for the rules.
//! - [`decision`]: the output ([`Decision`]) and its explanation for
//!   `edgemig vm show`.

pub mod decision;
pub mod follower;
pub mod history;
pub mod observation;
pub mod policy;
pub mod score;
pub mod units;

#[cfg(test)]
mod testtrace;

pub use decision::{Action, Decision, Reason};
pub use follower::{Follower, Pending};
pub use history::{HISTORY_LEN, History, MigrationRecord};
pub use observation::{
    ClientSample, CostEstimate, MAX_CLIENTS, MAX_SITES, Observation, ObservationError,
};
pub use policy::{FollowPolicy, PolicyError};
pub use score::{Exclusion, SiteScore};
pub use units::{UnitsError, format_duration_ms, parse_duration_ms, parse_gain};
