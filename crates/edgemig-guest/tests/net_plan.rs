//! Staged NIC plans against the real kernel in a throwaway namespace: the
//! link watcher applies a plan the moment the NIC gets carrier, with no
//! further request; a NicUp with the same values afterwards changes
//! nothing; a plan that cannot be applied is reported as failed and the
//! watcher carries on; a plan for a NIC that already has carrier is
//! applied at staging.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Ns, assert_policy, assert_up, is_root, link_flags, main_defaults, snapshot};
use edgemig_guest::net::{self, NicRef, Planner, watch};
use edgemig_guest::state::Store;
use edgemig_guest_proto::{NicPlanState, NicPlanStatus};

/// Upper bound for the watcher to react (it takes milliseconds; the bound
/// only keeps a broken kernel from hanging the test).
const DEADLINE: Duration = Duration::from_secs(30);

/// Polls `nic`'s plan until it leaves `Pending`.
fn settled(planner: &Planner, nic: &str) -> NicPlanStatus {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let status = planner.status(nic).expect("plan staged");
        if status.state != NicPlanState::Pending || Instant::now() > deadline {
            return status;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn plans_apply_on_carrier_from_link_events() {
    if !is_root() {
        return;
    }
    let ns = Ns::new();
    // The NIC of the current site, configured as the guest's init does it.
    ns.veth("tg0");
    ns.ip(&["addr", "add", "10.10.0.5/24", "dev", "tg0"]);
    ns.ip(&["link", "set", "tg0", "up"]);
    ns.ip(&["route", "add", "default", "via", "10.10.0.1", "dev", "tg0"]);
    // The handoff NIC: no carrier (its peer is down), itself down too.
    ns.veth_down("tg1");

    let (planner, watcher) = ns.run(|| {
        net::set_mptcp_limits().unwrap();
        let planner = Arc::new(Planner::new(
            Arc::new(Mutex::new(())),
            Arc::new(Store::ephemeral()),
            0,
        ));
        let watcher = watch::spawn(Arc::clone(&planner)).unwrap();
        (planner, watcher)
    });

    // Unknown NIC and bad input: errors, nothing staged.
    assert!(
        ns.run(|| planner.stage(NicRef::name("nope0"), "10.20.0.5/24", "10.20.0.1"))
            .is_err()
    );
    assert!(
        ns.run(|| planner.stage(NicRef::name("tg1"), "10.20.0.5", "10.20.0.1"))
            .is_err()
    );
    assert!(planner.report().plans.is_empty());

    let staged = ns
        .run(|| planner.stage(NicRef::name("tg1"), "10.20.0.5/24", "10.20.0.1"))
        .unwrap();
    assert_eq!(staged.state, NicPlanState::Pending, "{staged:?}");
    assert_eq!(staged.applied_ms, None);
    // Staging set it administratively up (so its carrier can show), nothing
    // else: no carrier, no address.
    let flags = link_flags(&ns, "tg1");
    assert!(flags.iter().any(|f| f == "UP"), "{flags:?}");
    assert!(!flags.iter().any(|f| f == "LOWER_UP"), "{flags:?}");
    let addrs = ns.ip(&["-4", "addr", "show", "dev", "tg1"]);
    assert!(!addrs.contains("inet "), "{addrs}");
    assert_eq!(main_defaults(&ns), vec!["default via 10.10.0.1 dev tg0 "]);

    // Carrier comes up from the other side: the watcher applies the plan.
    let t0 = Instant::now();
    ns.ip(&["link", "set", "tg1p", "up"]);
    let applied = settled(&planner, "tg1");
    eprintln!("applied {:?} after the carrier came up", t0.elapsed());
    assert_eq!(applied.state, NicPlanState::Applied, "{applied:?}");
    let at = applied.applied_ms.expect("applied_ms");
    assert!(at >= applied.staged_ms, "{applied:?}");
    assert!(applied.applied_ago_ms.is_some());
    let report = applied.report.clone().expect("report");
    assert_eq!(report.addresses, vec!["10.20.0.5/24".to_string()]);
    assert_eq!(report.endpoints.len(), 1);
    assert_up(&ns, "tg1", "10.20.0.5", "10.20.0.1");
    // The old NIC got its own table and rule first, gateway from its route.
    assert_policy(&ns, "tg0", "10.10.0.5", "10.10.0.1");
    assert_eq!(
        main_defaults(&ns),
        vec!["default via 10.20.0.1 dev tg1 proto static "]
    );
    let before = snapshot(&ns);
    eprintln!("{before}");

    // The host's confirming NicUp with the same values changes nothing.
    let confirm = ns
        .run(|| net::nic_up(NicRef::name("tg1"), "10.20.0.5/24", "10.20.0.1"))
        .unwrap();
    assert_eq!(confirm, report);
    assert_eq!(snapshot(&ns), before);
    // Later link events leave an applied plan alone.
    ns.ip(&["link", "set", "tg1p", "down"]);
    ns.ip(&["link", "set", "tg1p", "up"]);
    let again = planner.status("tg1").unwrap();
    assert_eq!(again.state, NicPlanState::Applied);
    assert_eq!(again.applied_ms, Some(at));

    // A plan that cannot work (gateway off the subnet) fails, is reported,
    // and the watcher keeps going.
    ns.veth_down("tg2");
    let bad = ns
        .run(|| planner.stage(NicRef::name("tg2"), "10.30.0.5/24", "10.99.0.1"))
        .unwrap();
    assert_eq!(bad.state, NicPlanState::Pending);
    ns.ip(&["link", "set", "tg2p", "up"]);
    let failed = settled(&planner, "tg2");
    match &failed.state {
        NicPlanState::Failed(reason) => assert!(reason.contains("tg2"), "{reason}"),
        other => panic!("expected a failure: {other:?}"),
    }
    assert!(failed.applied_ms.is_some() && failed.report.is_none());

    // Re-staged right, with the carrier already up: applied at once.
    let fixed = ns
        .run(|| planner.stage(NicRef::name("tg2"), "10.30.0.5/24", "10.30.0.1"))
        .unwrap();
    assert_eq!(fixed.state, NicPlanState::Applied, "{fixed:?}");
    assert_up(&ns, "tg2", "10.30.0.5", "10.30.0.1");
    assert_policy(&ns, "tg1", "10.20.0.5", "10.20.0.1");
    assert_policy(&ns, "tg0", "10.10.0.5", "10.10.0.1");

    let all = planner.report().plans;
    let nics: Vec<&str> = all.iter().map(|p| p.nic.as_str()).collect();
    assert_eq!(nics, ["tg1", "tg2"]);
    planner.forget("tg1");
    assert!(planner.status("tg1").is_none());
    drop(watcher);
}

/// The same over the agent's request loop, served from inside the
/// namespace: NicPlan, NicPlans, the confirming NicUp, and NicRetire
/// dropping the plan.
#[test]
fn plans_over_the_request_loop() {
    use edgemig_guest::handler::{self, Agent};
    use edgemig_guest_proto::v3::{
        AgentInfo, GuestMessage, GuestOutcome, GuestReply, GuestRequest, HostMessage,
    };
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixStream;

    if !is_root() {
        return;
    }
    let ns = Ns::new();
    ns.veth("tg0");
    let (mut host, guest) = UnixStream::pair().unwrap();
    host.set_read_timeout(Some(DEADLINE)).unwrap();
    let server = ns.run(move || {
        std::thread::spawn(move || {
            let agent = Agent::new(AgentInfo {
                version: "test".into(),
                protocol: edgemig_guest_proto::PROTOCOL_VERSION,
                boot_ms: 1000,
                kernel: "test".into(),
                systemd: false,
                mptcp_apps: Default::default(),
            });
            let _watcher = watch::spawn(Arc::clone(agent.planner())).unwrap();
            let writer = handler::shared_writer(Box::new(guest.try_clone().unwrap()));
            handler::serve(&mut BufReader::new(guest), &writer, &agent).unwrap();
        })
    });
    let mut reader = BufReader::new(host.try_clone().unwrap());
    let mut request = |id: u64, request: GuestRequest| -> GuestOutcome {
        let line = serde_json::to_string(&HostMessage { id, request }).unwrap();
        writeln!(host, "{line}").unwrap();
        let mut answer = String::new();
        reader.read_line(&mut answer).unwrap();
        match serde_json::from_str(&answer).unwrap() {
            GuestMessage::Response { id: got, outcome } if got == id => outcome,
            other => panic!("unexpected {other:?}"),
        }
    };
    let plan = GuestRequest::NicPlan {
        nic: "tg0".into(),
        mac: None,
        address: "10.40.0.5/24".into(),
        gateway: "10.40.0.1".into(),
    };
    // The peer is up: carrier is there, the plan applies at staging.
    let staged = match request(1, plan) {
        GuestOutcome::Ok(GuestReply::NicPlan(s)) => s,
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(staged.state, NicPlanState::Applied, "{staged:?}");
    assert!(staged.staged_ms >= 1000, "on the guest's uptime clock");
    assert_up(&ns, "tg0", "10.40.0.5", "10.40.0.1");
    let before = snapshot(&ns);
    let up = GuestRequest::NicUp {
        nic: "tg0".into(),
        mac: None,
        address: "10.40.0.5/24".into(),
        gateway: "10.40.0.1".into(),
    };
    match request(2, up) {
        GuestOutcome::Ok(GuestReply::Nic(n)) => assert_eq!(Some(n), staged.report),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(snapshot(&ns), before);
    match request(3, GuestRequest::NicPlans) {
        GuestOutcome::Ok(GuestReply::NicPlans(r)) => assert_eq!(r.plans.len(), 1),
        other => panic!("unexpected {other:?}"),
    }
    let retire = GuestRequest::NicRetire {
        nic: "tg0".into(),
        mac: None,
    };
    assert!(matches!(
        request(4, retire),
        GuestOutcome::Ok(GuestReply::Nic(_))
    ));
    match request(5, GuestRequest::NicPlans) {
        GuestOutcome::Ok(GuestReply::NicPlans(r)) => assert!(r.plans.is_empty(), "{r:?}"),
        other => panic!("unexpected {other:?}"),
    }
    drop(reader);
    host.shutdown(std::net::Shutdown::Both).unwrap();
    server.join().unwrap();
}
