//! Scenarios shared by both backends; `a` and `b` are two handles (two
//! agents / controllers) on the same directory.

use std::path::Path;
use std::time::{Duration, Instant};

use edgemig_directory::{Directory, DirectoryError, Lease, Renewal};

/// Upper bound for polling loops; never asserted as a duration.
const PATIENCE: Duration = Duration::from_secs(60);

fn assert_lost<T: std::fmt::Debug>(r: Result<T, DirectoryError>) {
    match r {
        Err(e @ DirectoryError::LeaseLost { .. }) => assert!(e.is_lease_lost()),
        other => panic!("expected LeaseLost, got {other:?}"),
    }
}

/// Registering, listing and removing sites; VM locations seen by both.
pub async fn sites_and_locations(a: &Directory, b: &Directory) {
    let sock = Path::new("/run/edgemig/site-a.sock");
    let ea = a
        .register_site("site-a", "10.0.0.1:7000", Some(sock))
        .await
        .unwrap();
    b.register_site("site-b", "10.0.0.2:7000", None)
        .await
        .unwrap();
    for dir in [a, b] {
        let sites = dir.sites().await.unwrap();
        let names: Vec<&str> = sites.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["site-a", "site-b"]);
        assert_eq!(sites[0], ea);
        assert_eq!(sites[0].api_socket.as_deref(), Some(sock));
        assert_eq!(sites[1].peer_addr, "10.0.0.2:7000");
        assert_eq!(sites[1].api_socket, None);
    }
    // Refresh from the other handle.
    let refreshed = b
        .register_site("site-a", "10.0.0.9:7001", None)
        .await
        .unwrap();
    assert!(refreshed.updated_ms >= ea.updated_ms);
    assert_eq!(a.site("site-a").await.unwrap(), Some(refreshed));
    assert_eq!(a.site("site-z").await.unwrap(), None);

    assert_eq!(b.location("vm1").await.unwrap(), None);
    a.set_location("vm1", "site-a").await.unwrap();
    b.set_location("vm2", "site-b").await.unwrap();
    assert_eq!(b.location("vm1").await.unwrap().as_deref(), Some("site-a"));
    let all = a.locations().await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all["vm1"], "site-a");
    assert_eq!(all["vm2"], "site-b");

    a.remove_site("site-b").await.unwrap();
    let names: Vec<String> = b
        .sites()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["site-a"]);

    for bad in ["", "../x", ".hidden", "a/b", "sp ace"] {
        let e = a.register_site(bad, "x:1", None).await.unwrap_err();
        assert!(
            matches!(e, DirectoryError::InvalidName { .. }),
            "{bad}: {e:?}"
        );
        let e = b
            .acquire(bad, "ctl", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(
            matches!(e, DirectoryError::InvalidName { .. }),
            "{bad}: {e:?}"
        );
    }
    let e = a.acquire("vm1", "ctl", Duration::ZERO).await.unwrap_err();
    assert!(matches!(e, DirectoryError::InvalidTtl), "{e:?}");
}

/// Both controllers race for each VM's lease: exactly one wins each time.
/// Returns, per VM, (winner index, lease).
async fn race(dirs: [&Directory; 2], vms: &[&str], ttl: Duration) -> Vec<(usize, Lease)> {
    let mut out = Vec::new();
    for vm in vms {
        let (ra, rb) = tokio::join!(
            dirs[0].acquire(vm, "ctl-a", ttl),
            dirs[1].acquire(vm, "ctl-b", ttl)
        );
        match (ra.unwrap(), rb.unwrap()) {
            (Some(l), None) => out.push((0, l)),
            (None, Some(l)) => out.push((1, l)),
            other => panic!("{vm}: exactly one controller must win, got {other:?}"),
        }
    }
    out
}

/// Two controllers, one lease: one wins, the other gets it after release;
/// the old holder's guarded operations fail and its stale release does not
/// disturb the new holder.
pub async fn one_lease_two_controllers(a: &Directory, b: &Directory, ttl: Duration) {
    let dirs = [a, b];
    let names = ["ctl-a", "ctl-b"];
    let sites = ["site-a", "site-b"];
    let vms = ["vm-r1", "vm-r2", "vm-r3", "vm-r4"];
    let results = race(dirs, &vms, ttl).await;

    for (w, lease) in results {
        let l = 1 - w;
        let (win, lose) = (dirs[w], dirs[l]);
        let vm = lease.vm().to_owned();
        assert_eq!(lease.holder(), names[w]);
        assert!(lease.ttl() >= Duration::from_secs(1));

        // Held: the loser cannot take it, both see the holder.
        assert!(lose.acquire(&vm, names[l], ttl).await.unwrap().is_none());
        assert!(win.acquire(&vm, names[w], ttl).await.unwrap().is_none());
        for d in dirs {
            assert_eq!(
                d.lease_holder(&vm).await.unwrap().as_deref(),
                Some(names[w])
            );
        }

        // The holder acts.
        assert!(win.renew(&lease).await.unwrap());
        win.check_lease(&lease).await.unwrap();
        assert!(lease.is_current(lose).await.unwrap());
        win.guarded_set_location(&lease, sites[w]).await.unwrap();
        assert_eq!(lose.location(&vm).await.unwrap().as_deref(), Some(sites[w]));

        // Release hands it over.
        let stale = lease.clone();
        win.release(lease).await.unwrap();
        assert_eq!(lose.lease_holder(&vm).await.unwrap(), None);
        let new = lose
            .acquire(&vm, names[l], ttl)
            .await
            .unwrap()
            .expect("free after release");

        // Fencing: the old holder is refused everything.
        assert_lost(win.check_lease(&stale).await);
        assert_lost(win.guarded_set_location(&stale, sites[w]).await);
        assert!(!stale.is_current(win).await.unwrap());
        assert!(!win.renew(&stale).await.unwrap());
        win.release(stale).await.unwrap();

        // ... and did not disturb the new holder.
        lose.check_lease(&new).await.unwrap();
        assert_eq!(
            win.lease_holder(&vm).await.unwrap().as_deref(),
            Some(names[l])
        );
        lose.guarded_set_location(&new, sites[l]).await.unwrap();
        assert_eq!(win.location(&vm).await.unwrap().as_deref(), Some(sites[l]));
        lose.release(new).await.unwrap();
    }
}

/// A lease not renewed expires: the other controller gets it, and every
/// guarded operation of the expired holder fails.
pub async fn ttl_expiry_hands_over(a: &Directory, b: &Directory, ttl: Duration) {
    let vm = "vm-ttl";
    a.set_location(vm, "site-a").await.unwrap();
    let old = a.acquire(vm, "ctl-a", ttl).await.unwrap().expect("free");
    let start = Instant::now();
    let new = loop {
        if let Some(l) = b.acquire(vm, "ctl-b", ttl).await.unwrap() {
            break l;
        }
        assert!(start.elapsed() < PATIENCE, "lease never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(new.holder(), "ctl-b");

    assert!(!a.renew(&old).await.unwrap());
    assert_lost(a.check_lease(&old).await);
    assert_lost(a.guarded_set_location(&old, "site-x").await);
    assert_eq!(a.location(vm).await.unwrap().as_deref(), Some("site-a"));

    b.guarded_set_location(&new, "site-b").await.unwrap();
    assert_eq!(a.location(vm).await.unwrap().as_deref(), Some("site-b"));
    assert_eq!(a.lease_holder(vm).await.unwrap().as_deref(), Some("ctl-b"));
    b.release(new).await.unwrap();
}

/// Renewing well within the TTL keeps the lease past several TTLs.
pub async fn renew_keeps_lease(a: &Directory, b: &Directory, ttl: Duration) {
    let vm = "vm-renew";
    let lease = a.acquire(vm, "ctl-a", ttl).await.unwrap().expect("free");
    let start = Instant::now();
    while start.elapsed() < 2 * ttl {
        tokio::time::sleep(ttl / 8).await;
        assert!(a.renew(&lease).await.unwrap(), "renewed lease lost");
        assert!(b.acquire(vm, "ctl-b", ttl).await.unwrap().is_none());
    }
    a.guarded_set_location(&lease, "site-a").await.unwrap();
    a.release(lease).await.unwrap();
}

/// A holder that re-acquires after releasing gets a new lease; a copy of
/// the old one stays refused (fencing is per acquisition, not per name).
pub async fn stale_copy_of_same_holder(a: &Directory, b: &Directory, ttl: Duration) {
    let vm = "vm-again";
    let first = a.acquire(vm, "ctl-a", ttl).await.unwrap().expect("free");
    let stale = first.clone();
    a.release(first).await.unwrap();
    let second = b.acquire(vm, "ctl-a", ttl).await.unwrap().expect("free");
    assert_ne!(stale, second);
    assert_lost(a.check_lease(&stale).await);
    assert_lost(a.guarded_set_location(&stale, "site-x").await);
    assert!(!a.renew(&stale).await.unwrap());
    a.release(stale).await.unwrap();
    b.check_lease(&second).await.unwrap();
    b.guarded_set_location(&second, "site-b").await.unwrap();
    assert_eq!(a.location(vm).await.unwrap().as_deref(), Some("site-b"));
}

/// Waits (bounded) until a renewal reports its lease lost.
pub async fn wait_lost(renewal: &mut Renewal) {
    tokio::time::timeout(PATIENCE, renewal.lost())
        .await
        .expect("renewal never reported the lease lost");
    assert!(!renewal.is_held());
}

/// A background renewal keeps the lease over several TTLs, then reports it
/// lost once the lease is gone from the directory.
pub async fn renewal_keeps_then_reports_loss(a: &Directory, b: &Directory, ttl: Duration) {
    let vm = "vm-bg";
    let lease = a.acquire(vm, "ctl-a", ttl).await.unwrap().expect("free");
    let mut renewal = Renewal::spawn(a.clone(), lease);
    let start = Instant::now();
    while start.elapsed() < 2 * ttl {
        tokio::time::sleep(ttl / 4).await;
        assert!(renewal.is_held());
        assert!(b.acquire(vm, "ctl-b", ttl).await.unwrap().is_none());
    }
    a.guarded_set_location(renewal.lease(), "site-a")
        .await
        .unwrap();
    // Someone (here: a copy of the lease) releases it behind the renewal's back.
    b.release(renewal.lease().clone()).await.unwrap();
    wait_lost(&mut renewal).await;
    assert!(b.acquire(vm, "ctl-b", ttl).await.unwrap().is_some());
}
