//! The scenarios on a real etcd, two clients as two controllers; plus etcd
//! going away.

use std::time::Duration;

use edgemig_directory::{Directory, DirectoryError, EmbeddedDirectory, EtcdDirectory, Renewal};

use crate::etcd_server::EtcdServer;
use crate::scenarios;

async fn pair(server: &EtcdServer) -> (Directory, Directory) {
    (
        server.client("/edgemig-test").await,
        server.client("/edgemig-test/").await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_sites_and_locations() {
    let server = EtcdServer::start().await;
    let (a, b) = pair(&server).await;
    scenarios::sites_and_locations(&a, &b).await;
    // Another prefix sees none of it.
    let other = server.client("/other").await;
    assert!(other.sites().await.unwrap().is_empty());
    assert!(other.locations().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_one_lease_two_controllers() {
    let server = EtcdServer::start().await;
    let (a, b) = pair(&server).await;
    scenarios::one_lease_two_controllers(&a, &b, Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_ttl_expiry_hands_over() {
    let server = EtcdServer::start().await;
    let (a, b) = pair(&server).await;
    scenarios::ttl_expiry_hands_over(&a, &b, Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_renew_keeps_lease() {
    let server = EtcdServer::start().await;
    let (a, b) = pair(&server).await;
    scenarios::renew_keeps_lease(&a, &b, Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_stale_copy_of_same_holder() {
    let server = EtcdServer::start().await;
    let (a, b) = pair(&server).await;
    scenarios::stale_copy_of_same_holder(&a, &b, Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_renewal_keeps_then_reports_loss() {
    let server = EtcdServer::start().await;
    let (a, b) = pair(&server).await;
    scenarios::renewal_keeps_then_reports_loss(&a, &b, Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_down_makes_renewal_report_loss() {
    let mut server = EtcdServer::start().await;
    let (a, _b) = pair(&server).await;
    let lease = a
        .acquire("vm1", "ctl-a", Duration::from_secs(2))
        .await
        .unwrap()
        .expect("free");
    let mut renewal = Renewal::spawn(a.clone(), lease);
    assert!(renewal.is_held());
    server.kill();
    scenarios::wait_lost(&mut renewal).await;
    assert_unavailable("check_lease", a.check_lease(renewal.lease()).await);
}

fn assert_unavailable<T: std::fmt::Debug>(what: &str, r: Result<T, DirectoryError>) {
    match r {
        Err(e) => assert!(
            e.is_unavailable(),
            "{what}: expected Unavailable, got {e:?}"
        ),
        Ok(v) => panic!("{what}: expected Unavailable, got Ok({v:?})"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_down_gives_unavailable() {
    let mut server = EtcdServer::start().await;
    let (a, _b) = pair(&server).await;
    a.register_site("site-a", "10.0.0.1:7000", None)
        .await
        .unwrap();
    let lease = a
        .acquire("vm1", "ctl-a", Duration::from_secs(30))
        .await
        .unwrap()
        .expect("free");

    server.kill();
    assert_unavailable("health", a.health().await);
    assert_unavailable("sites", a.sites().await);
    assert_unavailable("location", a.location("vm1").await);
    assert_unavailable("set_location", a.set_location("vm1", "site-a").await);
    assert_unavailable(
        "acquire",
        a.acquire("vm2", "ctl-a", Duration::from_secs(5)).await,
    );
    assert_unavailable("renew", a.renew(&lease).await);
    assert_unavailable("check_lease", a.check_lease(&lease).await);
    assert_unavailable("guarded", a.guarded_set_location(&lease, "site-a").await);
    assert_unavailable("is_current", lease.is_current(&a).await);

    // A client created while etcd is down connects lazily and reports it.
    let endpoint = server.endpoint.clone();
    let late = EtcdDirectory::connect(&[endpoint], "/edgemig-test")
        .await
        .unwrap();
    assert_unavailable("late health", late.health().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_do_not_cross_backends() {
    let server = EtcdServer::start().await;
    let etcd = server.client("/edgemig-test").await;
    let tmp = tempfile::tempdir().unwrap();
    let embedded: Directory = EmbeddedDirectory::open(tmp.path()).unwrap().into();
    let ttl = Duration::from_secs(30);
    let le = embedded.acquire("vm1", "ctl", ttl).await.unwrap().unwrap();
    let lx = etcd.acquire("vm1", "ctl", ttl).await.unwrap().unwrap();
    for (dir, foreign) in [(&etcd, &le), (&embedded, &lx)] {
        let e = dir.check_lease(foreign).await.unwrap_err();
        assert!(matches!(e, DirectoryError::ForeignLease { .. }), "{e:?}");
        let e = dir.guarded_set_location(foreign, "s").await.unwrap_err();
        assert!(e.is_lease_lost(), "{e:?}");
    }
}
