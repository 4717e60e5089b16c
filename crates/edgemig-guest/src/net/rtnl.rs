//! A blocking `NETLINK_ROUTE` socket for the calling thread's network
//! namespace, over the shared [`NlSocket`]: one request at a time, replies
//! collected up to the ACK (or `NLMSG_DONE` for dumps), kernel rejections
//! turned into [`RtnlError::Kernel`] with their errno and extended-ACK text.

use edgemig_netlink::{NetlinkError, NlSocket, protocols::NETLINK_ROUTE};
use netlink_packet_core::{NLM_F_ACK, NLM_F_DUMP};
use netlink_packet_route::RouteNetlinkMessage;

/// Errors of rtnetlink requests: the shared netlink error.
pub type RtnlError = NetlinkError;

/// Treats the kernel errors in `ok` as success (e.g. `EEXIST` on add,
/// `ENOENT`/`ESRCH` on delete).
pub fn tolerate(r: Result<(), RtnlError>, ok: &[i32]) -> Result<(), RtnlError> {
    match r {
        Err(e) if e.errno().is_some_and(|n| ok.contains(&n)) => Ok(()),
        other => other,
    }
}

/// Blocking rtnetlink socket bound in the namespace of the opening thread.
#[derive(Debug)]
pub struct Rtnl {
    sock: NlSocket,
}

impl Rtnl {
    /// Opens and connects the socket.
    pub fn open() -> Result<Self, RtnlError> {
        Ok(Self {
            sock: NlSocket::open(NETLINK_ROUTE)?,
        })
    }

    /// Sends a dump request and returns every reply message.
    pub fn dump(
        &mut self,
        op: &'static str,
        msg: RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>, RtnlError> {
        self.sock.request(op, msg, NLM_F_DUMP)
    }

    /// Sends a change request with `flags` (plus `NLM_F_ACK`) and waits for
    /// the ACK; returns any replies before it (`RTM_GETLINK` answers so).
    pub fn call(
        &mut self,
        op: &'static str,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, RtnlError> {
        self.sock.request(op, msg, flags | NLM_F_ACK)
    }
}
