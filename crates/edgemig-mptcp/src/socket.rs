//! Generic netlink over the shared [`NlSocket`]: requests carrying a
//! [`GenlMessage`], and family ids resolved with `CTRL_CMD_GETFAMILY`.

use std::fmt::Debug;

use edgemig_netlink::{NetlinkError, NlSocket, protocols::NETLINK_GENERIC};
use netlink_packet_core::{Emitable, NLM_F_ACK, NLM_F_DUMP, ParseableParametrized};
use netlink_packet_generic::{
    GenlFamily, GenlHeader, GenlMessage,
    ctrl::{GenlCtrl, GenlCtrlCmd, nlas::GenlCtrlAttrs},
};

use crate::pm::PmError;

/// Blocking `NETLINK_GENERIC` socket bound in the namespace of the thread
/// that opened it.
#[derive(Debug)]
pub(crate) struct GenlSocket {
    sock: NlSocket,
}

impl GenlSocket {
    pub fn open() -> Result<Self, NetlinkError> {
        Ok(Self {
            sock: NlSocket::open(NETLINK_GENERIC)?,
        })
    }

    /// Id of the generic netlink family `name`.
    pub fn resolve_family(&mut self, name: &'static str) -> Result<u16, PmError> {
        let msg = GenlMessage::from_payload(GenlCtrl {
            cmd: GenlCtrlCmd::GetFamily,
            nlas: vec![GenlCtrlAttrs::FamilyName(name.to_owned())],
        });
        let replies = match self.request("CTRL_CMD_GETFAMILY", msg, false) {
            Err(e) if e.errno() == Some(libc::ENOENT) => {
                return Err(PmError::FamilyNotFound(name));
            }
            other => other?,
        };
        replies
            .iter()
            .flat_map(|r| r.nlas.iter())
            .find_map(|nla| match nla {
                GenlCtrlAttrs::FamilyId(id) => Some(*id),
                _ => None,
            })
            .ok_or(PmError::FamilyNotFound(name))
    }

    /// Sends `msg` and returns the payloads of the replies. A `dump` request
    /// ends with `NLMSG_DONE`, any other with the ACK.
    pub fn request<F>(
        &mut self,
        op: &'static str,
        mut msg: GenlMessage<F>,
        dump: bool,
    ) -> Result<Vec<F>, NetlinkError>
    where
        F: GenlFamily + Emitable + ParseableParametrized<[u8], GenlHeader> + Debug,
    {
        msg.finalize();
        let flags = if dump { NLM_F_DUMP } else { NLM_F_ACK };
        Ok(self
            .sock
            .request(op, msg, flags)?
            .into_iter()
            .map(|m| m.payload)
            .collect())
    }
}
