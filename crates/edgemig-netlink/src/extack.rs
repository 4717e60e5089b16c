//! Extended-ACK (`NETLINK_EXT_ACK`) decoding: the text message the kernel
//! attaches to an `NLMSG_ERROR`, or to the `NLMSG_DONE` ending a dump.

use netlink_packet_core::{NLM_F_ACK_TLVS, NLM_F_CAPPED, NlasIterator};

/// `NLMSGERR_ATTR_MSG`: extended-ACK attribute carrying a text message.
const NLMSGERR_ATTR_MSG: u16 = 1;
/// Size of `struct nlmsghdr`.
pub(crate) const NLMSG_HDRLEN: usize = 16;

/// The extended-ACK message of an `NLMSG_ERROR` with header flags `flags`
/// whose payload after the error code is `rest` (echoed request, whole or
/// only its header when `NLM_F_CAPPED`, then the TLVs).
pub(crate) fn error_text(flags: u16, rest: &[u8]) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 || rest.len() < NLMSG_HDRLEN {
        return None;
    }
    let skip = if flags & NLM_F_CAPPED != 0 {
        NLMSG_HDRLEN
    } else {
        let orig = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        orig.next_multiple_of(4)
    };
    ext_ack_msg(rest.get(skip..)?)
}

/// The `NLMSGERR_ATTR_MSG` text among the extended-ACK TLVs `tlvs`.
pub(crate) fn ext_ack_msg(tlvs: &[u8]) -> Option<String> {
    NlasIterator::new(tlvs)
        .map_while(Result::ok)
        .find(|nla| nla.kind() == NLMSGERR_ATTR_MSG)
        .map(|nla| {
            let v = nla.value();
            let end = v.iter().position(|b| *b == 0).unwrap_or(v.len());
            String::from_utf8_lossy(&v[..end]).into_owned()
        })
}

#[cfg(test)]
mod tests {
    use netlink_packet_core::{DefaultNla, Emitable};

    use super::*;

    /// `NLMSGERR_ATTR_MSG` TLV carrying `text` (NUL-terminated, padded).
    fn msg_tlv(text: &[u8]) -> Vec<u8> {
        let nla = DefaultNla::new(NLMSGERR_ATTR_MSG, text.to_vec());
        let mut tlv = vec![0u8; nla.buffer_len()];
        nla.emit(&mut tlv);
        tlv
    }

    #[test]
    fn capped_error_message_is_extracted() {
        // Capped echo of the request header (which claims 40 bytes), then
        // NLMSGERR_ATTR_MSG.
        let mut rest = vec![0u8; NLMSG_HDRLEN];
        rest[0] = 40;
        rest.extend(msg_tlv(b"limit greater than maximum\0"));
        let flags = NLM_F_CAPPED | NLM_F_ACK_TLVS;
        assert_eq!(
            error_text(flags, &rest).as_deref(),
            Some("limit greater than maximum")
        );
        // Without NLM_F_ACK_TLVS there are no TLVs to read.
        assert_eq!(error_text(NLM_F_CAPPED, &rest), None);
    }

    #[test]
    fn uncapped_error_skips_the_whole_echoed_request() {
        // Full echo of a 22-byte request (padded to 24), then the TLV.
        let mut rest = vec![0u8; 24];
        rest[0] = 22;
        rest.extend(msg_tlv(b"no handler\0"));
        assert_eq!(
            error_text(NLM_F_ACK_TLVS, &rest).as_deref(),
            Some("no handler")
        );
        // Read as capped, the TLVs would start inside the echo: no message.
        assert_eq!(error_text(NLM_F_ACK_TLVS | NLM_F_CAPPED, &rest), None);
    }

    #[test]
    fn short_or_truncated_payloads_have_no_message() {
        assert_eq!(error_text(NLM_F_ACK_TLVS | NLM_F_CAPPED, &[0u8; 8]), None);
        // The echo claims more bytes than there are.
        let mut rest = vec![0u8; NLMSG_HDRLEN];
        rest[0] = 200;
        assert_eq!(error_text(NLM_F_ACK_TLVS, &rest), None);
    }

    #[test]
    fn done_tlvs_message_without_nul_is_whole() {
        let mut tlvs = msg_tlv(b"dump interrupted");
        assert_eq!(ext_ack_msg(&tlvs).as_deref(), Some("dump interrupted"));
        // Other attributes before the message are skipped.
        let mut other = vec![8, 0, 2, 0, 0, 0, 0, 0];
        other.append(&mut tlvs);
        assert_eq!(ext_ack_msg(&other).as_deref(), Some("dump interrupted"));
        assert_eq!(ext_ack_msg(&[]), None);
    }
}
