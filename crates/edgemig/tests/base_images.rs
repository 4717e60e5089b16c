//! Base images: a VM's data disk as an overlay on a content-addressed base
//! image; a migration to a site holding the same base sends only the top
//! layer (`sync: top`), to a site without it the whole disk; a destination
//! without room for the disk refuses before anything moves; the follow
//! policy's cost of a move counts the base image while the destination
//! lacks it.

use std::process::Output;
use std::time::Duration;

use edgemig::exit;
use edgemig_bench::base_image::{BaseImageSpec, write_base_image};
use edgemig_testkit::{SmallTmpfs, TestTestbed, two_sites, wait_until};
use serde_json::Value;

fn cli_path() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_edgemig"))
}

const MIB: u64 = 1 << 20;

/// Imports a base image holding 8 MiB of seeded data at offset 16 MiB of
/// a 64 MiB disk; returns its digest.
fn import_base(tb: &TestTestbed, sites: &[&str], name: &str, seed: u64) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(format!("{name}.raw"));
    let spec = BaseImageSpec {
        virtual_mib: 64,
        offset_mib: 16,
        data_mib: 8,
        seed,
    };
    write_base_image(&file, &spec).unwrap();
    let digests: Vec<String> = sites
        .iter()
        .map(|site| {
            let image = tb.site_json(
                site,
                &[
                    "base-image",
                    "import",
                    file.to_str().unwrap(),
                    "--name",
                    name,
                ],
            );
            assert_eq!(image["virtual_bytes"], 64 * MIB, "{image}");
            image["digest"].as_str().unwrap().to_string()
        })
        .collect();
    assert!(
        digests.windows(2).all(|w| w[0] == w[1]),
        "same content, same digest: {digests:?}"
    );
    digests[0].clone()
}

fn disk_vm(tb: &TestTestbed, name: &str, base: &str) {
    let vm = tb.site_json(
        "site-a",
        &[
            "vm",
            "create",
            name,
            "--memory",
            "128M",
            "--base-image",
            base,
        ],
    );
    assert_eq!(vm["disk_mib"], 64, "the disk takes the base's size: {vm}");
    tb.site_json("site-a", &["vm", "start", name]);
    tb.site_json("site-a", &["vm", "guest", name, "hello"]);
    tb.site_json(
        "site-a",
        &[
            "vm",
            "guest",
            name,
            "disk-write",
            "--mib",
            "8",
            "--seed",
            "9",
        ],
    );
}

fn verify(tb: &TestTestbed, site: &str, name: &str, offset: &str, seed: &str) {
    let report = tb.site_json(
        site,
        &[
            "vm",
            "guest",
            name,
            "disk-verify",
            "--mib",
            "8",
            "--offset-mib",
            offset,
            "--seed",
            seed,
        ],
    );
    assert_eq!(
        report["ok"], true,
        "{name} at {site}, offset {offset} MiB: {report}"
    );
}

fn migrate(tb: &TestTestbed, vm: &str) -> (Output, Value) {
    let out = tb.site_cli("site-a", &["--json", "migrate", vm, "--to", "site-b"]);
    let report = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out, report)
}

#[test]
fn disks_over_base_images_move_their_top_layer_only_where_the_base_is_cached() {
    let tb = TestTestbed::new(cli_path());
    tb.up(Some(&two_sites("200mbit", "1ms", None, false)));
    let shared = import_base(&tb, &["site-a", "site-b"], "shared", 2);
    import_base(&tb, &["site-a"], "only-a", 3);

    // Bad input: unknown base, disk smaller than the base.
    let out = tb.site_cli("site-a", &["vm", "create", "x", "--base-image", "nope"]);
    assert_eq!(out.status.code(), Some(i32::from(exit::NOT_FOUND)));
    let out = tb.site_cli(
        "site-a",
        &[
            "vm",
            "create",
            "x",
            "--base-image",
            "shared",
            "--disk",
            "32M",
        ],
    );
    assert_eq!(out.status.code(), Some(i32::from(exit::INVALID)));

    disk_vm(&tb, "top", "shared");
    disk_vm(&tb, "full", "only-a");

    // A destination without room for the disk refuses before anything moves.
    {
        let _small = SmallTmpfs::mount(&tb.site_state_dir("site-b").join("vms"), 16);
        let (out, report) = migrate(&tb, "full");
        assert!(
            !out.status.success(),
            "migration into a full disk succeeded"
        );
        let error = report["error"].as_str().unwrap_or_default().to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(error.contains("no room for the disk"), "{error}");
        let vm = tb.site_json("site-a", &["vm", "show", "full"]);
        assert_eq!(vm["state"], "running", "{vm}");
        verify(&tb, "site-a", "full", "0", "9");
    }

    // The base is cached at site-b: only the 8 MiB written on top travel.
    let (out, report) = migrate(&tb, "top");
    assert!(
        out.status.success(),
        "{report} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent = report["disk_bytes"].as_u64().unwrap();
    assert!(
        (8 * MIB..16 * MIB).contains(&sent),
        "sync top sent {sent} bytes"
    );
    let vm = tb.site_json("site-b", &["vm", "show", "top"]);
    assert_eq!(vm["base_image"], shared.as_str(), "{vm}");
    verify(&tb, "site-b", "top", "0", "9");
    verify(&tb, "site-b", "top", "16", "2");
    let images = tb.site_json("site-b", &["base-image", "list"]);
    assert_eq!(images[0]["used_by"][0], "top", "{images}");
    let out = tb.site_cli("site-b", &["base-image", "remove", "shared"]);
    assert_eq!(
        out.status.code(),
        Some(i32::from(exit::CONFLICT)),
        "an image in use was removed"
    );

    // Site-b lacks "only-a": the whole disk travels and stands alone there.
    let (out, report) = migrate(&tb, "full");
    assert!(
        out.status.success(),
        "{report} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent = report["disk_bytes"].as_u64().unwrap();
    assert!(sent >= 16 * MIB, "sync full sent only {sent} bytes");
    let vm = tb.site_json("site-b", &["vm", "show", "full"]);
    assert!(vm["base_image"].is_null(), "{vm}");
    verify(&tb, "site-b", "full", "0", "9");
    verify(&tb, "site-b", "full", "16", "3");
}

/// The last cost estimate for moving `vm` to `site` that the follow
/// controller of site-a recorded, and how many decisions it recorded.
fn recorded_cost(tb: &TestTestbed, vm: &str, site: &str) -> Option<(u64, usize)> {
    let path = tb
        .site_state_dir("site-a")
        .join("follow")
        .join(format!("{vm}.jsonl"));
    let text = std::fs::read_to_string(path).ok()?;
    let lines: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let bytes = lines.last()?["observation"]["migration_cost"][site]["bytes"].as_u64()?;
    Some((bytes, lines.len()))
}

#[test]
fn the_follow_cost_counts_a_base_image_only_while_the_destination_lacks_it() {
    let tb = TestTestbed::new(cli_path());
    let config = format!(
        "directory = \"embedded\"\n{}",
        two_sites("200mbit", "1ms", None, false)
    );
    tb.up(Some(&config));
    import_base(&tb, &["site-a"], "staged", 4);
    disk_vm(&tb, "mover", "staged");
    let shown = tb.site_json(
        "site-a",
        &["vm", "policy", "mover", "follow", "--hold", "1h"],
    );
    assert_eq!(shown["policy"]["spec"]["mode"], "follow", "{shown}");

    let (lacking, decisions) =
        wait_until("a first follow decision", Duration::from_secs(60), || {
            recorded_cost(&tb, "mover", "site-b")
        })
        .unwrap();

    let pushed = tb.site_json("site-a", &["image", "push", "staged", "--to", "site-b"]);
    assert_eq!(pushed["already_present"], false, "{pushed}");
    // The decision after the next one surely began after the push.
    let (holding, _) = wait_until("a decision after the push", Duration::from_secs(60), || {
        recorded_cost(&tb, "mover", "site-b").filter(|(_, n)| *n > decisions + 1)
    })
    .unwrap();
    assert!(
        holding >= 128 * MIB,
        "the cost leaves out the VM's memory: {holding} bytes"
    );
    assert!(
        lacking >= holding + 8 * MIB,
        "the image's 8 MiB of data should count only while site-b lacks it: \
         {lacking} bytes before the push, {holding} after"
    );
    let vm = tb.site_json("site-a", &["vm", "show", "mover"]);
    assert_eq!(vm["state"], "running", "the VM moved: {vm}");
}
