//! edgemig-linkemu: a user-space WAN link emulator for the edgemig testbed.
//!
//! Two TAP devices (one per network namespace) are joined by two
//! [`shaper::Direction`]s that apply rate, delay, jitter, loss, a drop-tail
//! queue limit and up/down state. Parameters change at run time through a
//! JSON-lines Unix socket ([`control`]). The packet logic is pure and tested
//! without devices; [`units`] parses human units (`50mbit`, `10ms`, `0.1%`).

pub mod shaper;
pub mod units;

pub use shaper::{DirStats, Direction, LinkParams, Verdict};
pub use units::{UnitsError, parse_duration, parse_loss, parse_rate};
pub mod app;
pub mod control;
pub mod forward;
pub mod tap;
pub mod waker;
