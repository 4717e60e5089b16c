//! A short soak with faults, the same as `edgemig bench soak --migrations
//! 4 --faults --seed 1` (through the library, on a testbed of its own in a
//! temporary state directory): the VM never runs at two sites, alice's
//! clients never lose their connections, every memory and disk
//! verification passes, nothing is left afterwards, and faults were
//! really injected.

use std::path::{Path, PathBuf};
use std::time::Duration;

use edgemig_bench::soak::{SOAK_TESTBED, SoakOptions, SoakReport, run_soak};
use edgemig_testbed::TestbedConfig;

/// Takes down whatever testbed is left in the test's state directory,
/// also when the test fails.
struct Leftovers(PathBuf);

impl Drop for Leftovers {
    fn drop(&mut self) {
        if let Ok(dir) = std::fs::read_dir(&self.0) {
            for entry in dir.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let _ = edgemig_testbed::down(&name);
            }
        }
    }
}

fn options() -> SoakOptions {
    let agent = PathBuf::from(env!("CARGO_BIN_EXE_edgemigd"));
    let bin_dir = agent.parent().map(Path::to_path_buf).unwrap_or_default();
    SoakOptions {
        config: TestbedConfig::parse(SOAK_TESTBED).expect("the soak's testbed config"),
        migrations: 4,
        faults: true,
        seed: 1,
        memory_mib: 128,
        max_cut: Duration::from_secs(15),
        limit: Duration::from_secs(300),
        logs: None,
        linkemu: bin_dir.join("edgemig-linkemu"),
        agent,
        image_dir: edgemig_testkit::guest_image_dir(),
        tool: edgemig_testkit::workspace_target()
            .join("x86_64-unknown-linux-gnu/release/edgemig-guest"),
    }
}

#[test]
fn a_short_soak_with_faults_splits_nothing_loses_nothing_and_leaves_nothing() {
    let testbeds = tempfile::tempdir().expect("tempdir");
    edgemig_testkit::open_to_qemu(testbeds.path());
    // SAFETY: this binary has this one test, which sets the variable
    // before it starts any thread that reads the environment.
    unsafe { std::env::set_var("EDGEMIG_TESTBED_DIR", testbeds.path()) };
    let _leftovers = Leftovers(testbeds.path().to_path_buf());
    let opts = options();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let report: SoakReport = rt
        .block_on(run_soak(&opts, &|run| {
            eprintln!("{}", serde_json::to_string(run).unwrap_or_default());
        }))
        .expect("the soak ran");
    let json = serde_json::to_string_pretty(&report).unwrap_or_default();
    eprintln!("{json}");

    assert_eq!(report.migrations, 4, "every migration ran: {json}");
    assert_eq!(report.stopped_early, None, "{json}");
    assert_eq!(report.unsettled, 0, "{json}");
    assert_eq!(
        report.completed + report.rolled_back + report.not_started,
        4,
        "{json}"
    );
    assert!(
        report.split_brain_watch.samples > 100,
        "the watch looked often: {json}"
    );
    assert_eq!(report.split_brain, 0, "the VM ran at two sites: {json}");
    // One probe in flight: at most one answer per round trip (and the
    // 10 ms pause between probes). The session answered throughout if it
    // got a good share of that over the whole soak; one that broke early
    // gets far less.
    let c = &report.connections;
    let possible = report.duration_s * 1000.0 / (c.echo_rtt_ms + 10.0);
    assert!(
        c.echo_answered as f64 > possible / 4.0,
        "alice's echo session ran throughout ({} answers of at most {possible:.0}): {json}",
        c.echo_answered
    );
    assert_eq!(c.echo_sessions, 1, "one echo session all along: {json}");
    assert!(report.connections.bulk_megabits > 0.0, "bulk ran: {json}");
    assert_eq!(report.lost_connections, 0, "alice lost connections: {json}");
    assert_eq!(report.verify_failures, 0, "{json}");
    for run in &report.runs {
        if run.outcome != edgemig_bench::soak::Outcome::NotStarted {
            assert_eq!(
                run.memory_ok,
                Some(true),
                "memory after #{}: {json}",
                run.index
            );
            assert_eq!(run.disk_ok, Some(true), "disk after #{}: {json}", run.index);
        }
    }
    assert_eq!(report.leaks, 0, "left behind: {:?}", report.leaked);
    assert!(report.faults_enabled);
    assert!(report.faults_injected >= 1, "faults were injected: {json}");
    let recorded: usize = report
        .runs
        .iter()
        .map(|r| r.faults.iter().filter(|f| f.injected).count())
        .sum();
    assert_eq!(
        u32::try_from(recorded).unwrap_or(0),
        report.faults_injected,
        "{json}"
    );
}
