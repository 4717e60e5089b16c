//! Prints the established TCP sockets and MPTCP connections of the current
//! network namespace, like a small `ss -tiM`:
//! `cargo run -p edgemig-sockdiag --example tcpdiag [PORT]` (PORT filters
//! on either end).

use edgemig_sockdiag::{Query, group_mptcp, tcp_sockets};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: Option<u16> = std::env::args().nth(1).map(|p| p.parse()).transpose()?;
    let sockets: Vec<_> = tcp_sockets(&Query::established())?
        .into_iter()
        .filter(|s| port.is_none_or(|p| s.local.port() == p || s.remote.port() == p))
        .collect();
    for s in &sockets {
        print!("{} {} -> {}", s.state, s.local, s.remote);
        if let Some(st) = s.stats {
            print!(
                " rtt:{}/{} min_rtt:{} bytes_acked:{} bytes_received:{}",
                st.rtt_us, st.rttvar_us, st.min_rtt_us, st.bytes_acked, st.bytes_received
            );
        }
        if let Some(m) = s.mptcp {
            print!(
                " mptcp token:{:08x}/{:08x} id:{}/{} flags:{}",
                m.token_local, m.token_remote, m.id_local, m.id_remote, m.flags
            );
        }
        println!();
    }
    for c in group_mptcp(&sockets) {
        println!(
            "mptcp {:08x}: {} subflows from {:?}",
            c.token,
            c.subflows.len(),
            c.local_ips()
        );
    }
    Ok(())
}
