//! The scenarios on the embedded backend: two handles on one temp dir.

use std::time::Duration;

use edgemig_directory::{Directory, EmbeddedDirectory};
use tempfile::TempDir;

use crate::scenarios;

/// Two independent handles (two agents) on a fresh directory.
fn pair() -> (TempDir, Directory, Directory) {
    let tmp = tempfile::Builder::new()
        .prefix(&format!("emdir{}-", std::process::id()))
        .tempdir()
        .unwrap();
    let root = tmp.path().join("directory");
    let a = EmbeddedDirectory::open(&root).unwrap().into();
    let b = EmbeddedDirectory::open(&root).unwrap().into();
    (tmp, a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_sites_and_locations() {
    let (_tmp, a, b) = pair();
    a.health().await.unwrap();
    scenarios::sites_and_locations(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_one_lease_two_controllers() {
    let (_tmp, a, b) = pair();
    scenarios::one_lease_two_controllers(&a, &b, Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_ttl_expiry_hands_over() {
    let (_tmp, a, b) = pair();
    scenarios::ttl_expiry_hands_over(&a, &b, Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_renew_keeps_lease() {
    let (_tmp, a, b) = pair();
    scenarios::renew_keeps_lease(&a, &b, Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_many_contenders_one_winner() {
    // Eight handles race for one VM at once: exactly one lease.
    let (_tmp, a, _b) = pair();
    let Directory::Embedded(e) = &a else {
        unreachable!()
    };
    let root = e.root().to_path_buf();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let dir: Directory = EmbeddedDirectory::open(&root).unwrap().into();
        tasks.push(tokio::spawn(async move {
            dir.acquire("vm-many", &format!("ctl-{i}"), Duration::from_secs(30))
                .await
                .unwrap()
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        if let Some(l) = t.await.unwrap() {
            winners.push(l);
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let holder = a.lease_holder("vm-many").await.unwrap();
    assert_eq!(holder.as_deref(), Some(winners[0].holder()));
    // Records are whole files; no temp files are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(root.join("leases"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(leftovers, ["vm-many.json"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_stale_copy_of_same_holder() {
    let (_tmp, a, b) = pair();
    scenarios::stale_copy_of_same_holder(&a, &b, Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_renewal_keeps_then_reports_loss() {
    let (_tmp, a, b) = pair();
    scenarios::renewal_keeps_then_reports_loss(&a, &b, Duration::from_secs(3)).await;
}
