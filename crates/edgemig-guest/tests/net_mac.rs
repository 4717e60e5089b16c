//! NICs named by MAC (protocol 3), in a throwaway namespace: a request
//! whose name matches no interface (`eth1` on a guest that calls its NICs
//! otherwise) acts on the interface with the MAC, and the reports say
//! that interface's real name; a MAC nobody has is an error; without a
//! MAC the name decides, as before.

mod common;

use common::{Ns, assert_up, is_root};
use edgemig_guest::net::{self, NicRef, Planner};
use edgemig_guest::state::Store;
use edgemig_guest_proto::{MacAddr, NicPlanState};
use std::sync::{Arc, Mutex};

fn mac(s: &str) -> MacAddr {
    s.parse().unwrap()
}

#[test]
fn requests_by_mac_act_on_the_interface_that_has_it() {
    if !is_root() {
        return;
    }
    let ns = Ns::new();
    ns.veth("enx0");
    ns.veth_down("enx1");
    ns.ip(&["link", "set", "enx0", "address", "52:54:00:00:00:09"]);
    ns.ip(&["link", "set", "enx1", "address", "52:54:01:00:00:09"]);
    let nic0 = NicRef {
        name: "eth0",
        mac: Some(mac("52:54:00:00:00:09")),
    };
    let nic1 = NicRef {
        name: "eth1",
        mac: Some(mac("52:54:01:00:00:09")),
    };

    let rep = ns
        .run(|| net::nic_up(nic0, "10.10.0.5/24", "10.10.0.1"))
        .unwrap();
    assert_eq!(rep.nic, "enx0");
    assert_eq!(rep.mac, nic0.mac);
    assert_up(&ns, "enx0", "10.10.0.5", "10.10.0.1");
    // The name alone finds nothing here.
    let err = ns
        .run(|| net::nic_up(NicRef::name("eth0"), "10.10.0.5/24", "10.10.0.1"))
        .unwrap_err();
    assert!(err.to_string().contains("eth0"), "{err}");
    let nobody = NicRef {
        name: "enx0",
        mac: Some(mac("52:54:07:00:00:01")),
    };
    let err = ns
        .run(|| net::nic_up(nobody, "10.10.0.5/24", "10.10.0.1"))
        .unwrap_err();
    let text = edgemig_guest::handler::error_chain(&err);
    assert!(
        text.contains("no interface has MAC 52:54:07:00:00:01"),
        "{text}"
    );

    // A plan by MAC is kept under the real name and applied on carrier.
    let planner = Planner::new(Arc::new(Mutex::new(())), Arc::new(Store::ephemeral()), 0);
    let staged = ns
        .run(|| planner.stage(nic1, "10.20.0.5/24", "10.20.0.1"))
        .unwrap();
    assert_eq!(staged.nic, "enx1");
    assert_eq!(staged.mac, nic1.mac);
    assert_eq!(staged.state, NicPlanState::Pending);
    ns.ip(&["link", "set", "enx1p", "up"]);
    assert_eq!(ns.run(|| planner.apply_pending()), 1);
    let applied = planner.status("enx1").unwrap();
    assert_eq!(applied.state, NicPlanState::Applied, "{applied:?}");
    assert_eq!(applied.report.as_ref().unwrap().nic, "enx1");
    assert_up(&ns, "enx1", "10.20.0.5", "10.20.0.1");

    let retired = ns.run(|| net::nic_retire(nic0)).unwrap();
    assert_eq!(retired.nic, "enx0");
    assert_eq!(retired.mac, nic0.mac);
    assert!(retired.addresses.is_empty());
    let addrs = ns.ip(&["-4", "addr", "show", "dev", "enx0"]);
    assert!(!addrs.contains("inet "), "{addrs}");
}
