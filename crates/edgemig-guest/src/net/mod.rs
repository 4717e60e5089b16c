//! Guest networking over netlink, no `ip` binary needed: finding a NIC by
//! name or MAC, bringing a NIC up at a new site with per-interface policy
//! routing and an MPTCP `signal` endpoint (on request, or on its own from
//! a staged plan when the NIC gets carrier), retiring the old one, and
//! accounting for TCP and MPTCP connections through sock_diag.

pub mod conns;
pub mod link;
pub mod nic;
pub mod ops;
pub mod plan;
pub mod rtnl;
pub mod watch;

pub use conns::{ConnsError, has_net_admin, net_status};
pub use link::NicRef;
pub use nic::{NicError, nic_reannounce, nic_retire, nic_up};
pub use plan::{PlanError, Planner};

use edgemig_mptcp::{Limits, MptcpPm, PmError};

/// Path-manager limits the agent sets at start: enough subflows and
/// accepted ADD_ADDRs for announcements and joins.
pub const MPTCP_LIMITS: Limits = Limits {
    subflows: 8,
    add_addr_accepted: 8,
};

/// Sets [`MPTCP_LIMITS`] in the calling thread's namespace.
pub fn set_mptcp_limits() -> Result<(), PmError> {
    MptcpPm::open()?.set_limits(MPTCP_LIMITS)
}
