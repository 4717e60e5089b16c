//! `struct tcp_info` (the `INET_DIAG_INFO` attribute of a TCP socket, what
//! `ss -i` prints), decoded from its raw bytes by offset so that shorter
//! structures of older kernels and longer ones of newer kernels both work.

/// Size of the oldest `struct tcp_info` accepted: up to `tcpi_total_retrans`
/// (Linux 2.6). Fields past the reported length read as 0.
pub(crate) const MIN_LEN: usize = 104;

/// The `INET_DIAG_INFO` attribute is shorter than the oldest `struct tcp_info` (104 bytes).
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "TCP info of {len} bytes is shorter than the {MIN_LEN} bytes of the oldest struct tcp_info"
)]
pub struct TcpInfoError {
    /// Length the kernel reported.
    pub len: usize,
}

/// Statistics of one TCP socket (`struct tcp_info`). Times are in
/// microseconds unless the name says otherwise; rates in bytes per second.
/// A field the running kernel does not report reads as 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct TcpStats {
    /// Congestion-avoidance state (`TCP_CA_*`: 0 open … 4 loss).
    pub ca_state: u8,
    /// Retransmission timeouts in a row for the current segment.
    pub retransmits: u8,
    /// Retransmission timeout (`tcpi_rto`).
    pub rto_us: u32,
    /// Delayed-ACK timeout (`tcpi_ato`).
    pub ato_us: u32,
    /// Sending MSS.
    pub snd_mss: u32,
    /// Receiving MSS estimate.
    pub rcv_mss: u32,
    /// Segments in flight.
    pub unacked: u32,
    /// Segments SACKed.
    pub sacked: u32,
    /// Segments considered lost.
    pub lost: u32,
    /// Segments being retransmitted.
    pub retrans: u32,
    /// Time since the last data was sent, in milliseconds.
    pub last_data_sent_ms: u32,
    /// Time since the last data was received, in milliseconds.
    pub last_data_recv_ms: u32,
    /// Time since the last ACK was received, in milliseconds.
    pub last_ack_recv_ms: u32,
    /// Path MTU.
    pub pmtu: u32,
    /// Smoothed round-trip time (`tcpi_rtt`).
    pub rtt_us: u32,
    /// Round-trip time variation (`tcpi_rttvar`).
    pub rttvar_us: u32,
    /// Slow-start threshold, in segments.
    pub snd_ssthresh: u32,
    /// Congestion window, in segments.
    pub snd_cwnd: u32,
    /// Advertised MSS.
    pub advmss: u32,
    /// Reordering metric.
    pub reordering: u32,
    /// Receiver-side RTT estimate (`tcpi_rcv_rtt`).
    pub rcv_rtt_us: u32,
    /// Receive-buffer space estimate, in bytes.
    pub rcv_space: u32,
    /// Segments retransmitted over the socket's life.
    pub total_retrans: u32,
    /// Current pacing rate.
    pub pacing_rate: u64,
    /// Maximum pacing rate (`SO_MAX_PACING_RATE`).
    pub max_pacing_rate: u64,
    /// Bytes sent and acknowledged by the peer (`tcpi_bytes_acked`).
    pub bytes_acked: u64,
    /// Bytes received and acknowledged (`tcpi_bytes_received`).
    pub bytes_received: u64,
    /// Segments sent.
    pub segs_out: u32,
    /// Segments received.
    pub segs_in: u32,
    /// Bytes written by the application but not sent yet.
    pub notsent_bytes: u32,
    /// Minimum RTT seen over the recent window (`tcpi_min_rtt`).
    pub min_rtt_us: u32,
    /// Segments with data received.
    pub data_segs_in: u32,
    /// Segments with data sent.
    pub data_segs_out: u32,
    /// Most recent goodput (`tcpi_delivery_rate`).
    pub delivery_rate: u64,
    /// Time busy sending data.
    pub busy_time_us: u64,
    /// Time limited by the peer's receive window.
    pub rwnd_limited_us: u64,
    /// Time limited by the send buffer.
    pub sndbuf_limited_us: u64,
    /// Segments delivered (acknowledged), retransmissions included.
    pub delivered: u32,
    /// Delivered segments that were ECN CE-marked.
    pub delivered_ce: u32,
    /// Data bytes sent, retransmissions included (`tcpi_bytes_sent`).
    pub bytes_sent: u64,
    /// Data bytes retransmitted (`tcpi_bytes_retrans`).
    pub bytes_retrans: u64,
    /// Duplicate segments reported by D-SACK.
    pub dsack_dups: u32,
    /// Reordering events seen.
    pub reord_seen: u32,
    /// Out-of-order packets received.
    pub rcv_ooopack: u32,
    /// Peer's advertised receive window after scaling, in bytes.
    pub snd_wnd: u32,
}

fn u8_at(b: &[u8], off: usize) -> u8 {
    b.get(off).copied().unwrap_or(0)
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 4)
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map_or(0, u32::from_ne_bytes)
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    b.get(off..off + 8)
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map_or(0, u64::from_ne_bytes)
}

impl TcpStats {
    /// Decodes the value of an `INET_DIAG_INFO` attribute. Offsets are those
    /// of `struct tcp_info` in `<linux/tcp.h>`.
    pub(crate) fn parse(b: &[u8]) -> Result<Self, TcpInfoError> {
        if b.len() < MIN_LEN {
            return Err(TcpInfoError { len: b.len() });
        }
        Ok(Self {
            ca_state: u8_at(b, 1),
            retransmits: u8_at(b, 2),
            rto_us: u32_at(b, 8),
            ato_us: u32_at(b, 12),
            snd_mss: u32_at(b, 16),
            rcv_mss: u32_at(b, 20),
            unacked: u32_at(b, 24),
            sacked: u32_at(b, 28),
            lost: u32_at(b, 32),
            retrans: u32_at(b, 36),
            last_data_sent_ms: u32_at(b, 44),
            last_data_recv_ms: u32_at(b, 52),
            last_ack_recv_ms: u32_at(b, 56),
            pmtu: u32_at(b, 60),
            rtt_us: u32_at(b, 68),
            rttvar_us: u32_at(b, 72),
            snd_ssthresh: u32_at(b, 76),
            snd_cwnd: u32_at(b, 80),
            advmss: u32_at(b, 84),
            reordering: u32_at(b, 88),
            rcv_rtt_us: u32_at(b, 92),
            rcv_space: u32_at(b, 96),
            total_retrans: u32_at(b, 100),
            pacing_rate: u64_at(b, 104),
            max_pacing_rate: u64_at(b, 112),
            bytes_acked: u64_at(b, 120),
            bytes_received: u64_at(b, 128),
            segs_out: u32_at(b, 136),
            segs_in: u32_at(b, 140),
            notsent_bytes: u32_at(b, 144),
            min_rtt_us: u32_at(b, 148),
            data_segs_in: u32_at(b, 152),
            data_segs_out: u32_at(b, 156),
            delivery_rate: u64_at(b, 160),
            busy_time_us: u64_at(b, 168),
            rwnd_limited_us: u64_at(b, 176),
            sndbuf_limited_us: u64_at(b, 184),
            delivered: u32_at(b, 192),
            delivered_ce: u32_at(b, 196),
            bytes_sent: u64_at(b, 200),
            bytes_retrans: u64_at(b, 208),
            dsack_dups: u32_at(b, 216),
            reord_seen: u32_at(b, 220),
            rcv_ooopack: u32_at(b, 224),
            snd_wnd: u32_at(b, 228),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_at_their_offsets() {
        let mut b = vec![0u8; 232];
        b[68..72].copy_from_slice(&1234u32.to_ne_bytes());
        b[120..128].copy_from_slice(&(5u64 << 32).to_ne_bytes());
        b[128..136].copy_from_slice(&77u64.to_ne_bytes());
        b[148..152].copy_from_slice(&99u32.to_ne_bytes());
        b[228..232].copy_from_slice(&65535u32.to_ne_bytes());
        let s = TcpStats::parse(&b).unwrap();
        assert_eq!(s.rtt_us, 1234);
        assert_eq!(s.bytes_acked, 5 << 32);
        assert_eq!(s.bytes_received, 77);
        assert_eq!(s.min_rtt_us, 99);
        assert_eq!(s.snd_wnd, 65535);
    }

    #[test]
    fn short_structures_read_missing_fields_as_zero() {
        let mut b = vec![0u8; 124];
        b[120..124].copy_from_slice(&7u32.to_ne_bytes());
        let s = TcpStats::parse(&b).unwrap();
        assert_eq!(s.bytes_acked, 0, "a partial u64 is not read");
        assert_eq!(s.min_rtt_us, 0);
        assert_eq!(TcpStats::parse(&b[..50]).unwrap_err().len, 50);
    }
}
