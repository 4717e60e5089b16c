//! `edgemig bench paper --quick` end to end through the CLI: it exits 0 and
//! leaves a well-formed results.json (every figure, series and point, with
//! positive values and n >= 1), a Markdown table and every plot as PNG and
//! SVG in --out; its testbeds are gone afterwards. The numbers' values are
//! not checked beyond sanity (medians between min and max, downtimes within
//! their migration, the client's stall within its session).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

fn cli_path() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_edgemig"))
}

/// Namespaces the benchmark run with pid `pid` may have created.
fn bench_namespaces(pid: u32) -> Vec<String> {
    let id = pid % 100_000;
    let prefixes = [format!("bp{id}x"), format!("bh{id}0_"), format!("bh{id}1_")];
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| prefixes.iter().any(|p| n.starts_with(p)))
                .collect()
        })
        .unwrap_or_default()
}

/// Removes whatever the benchmark left behind, even when the test fails.
struct Leftovers {
    testbeds: PathBuf,
    pid: Option<u32>,
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        if let Ok(dir) = std::fs::read_dir(&self.testbeds) {
            for entry in dir.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let _ = Command::new(cli_path())
                    .env("EDGEMIG_TESTBED_DIR", &self.testbeds)
                    .args(["testbed", "down", "--name", &name])
                    .output();
            }
        }
        if let Some(pid) = self.pid {
            for ns in bench_namespaces(pid) {
                let _ = Command::new("ip").args(["netns", "del", &ns]).output();
            }
        }
    }
}

fn positive(v: &Value) -> bool {
    v.as_f64().is_some_and(|x| x.is_finite() && x > 0.0)
}

#[test]
fn quick_paper_bench_writes_results_tables_and_plots() {
    let testbeds = tempfile::tempdir().unwrap();
    edgemig_testkit::open_to_qemu(testbeds.path());
    let work = tempfile::tempdir().unwrap();
    let out_dir = work.path().join("paper");
    let mut leftovers = Leftovers {
        testbeds: testbeds.path().to_path_buf(),
        pid: None,
    };
    let child = Command::new(cli_path())
        .env("EDGEMIG_TESTBED_DIR", testbeds.path())
        .args(["bench", "paper", "--quick", "--limit-s", "300", "--out"])
        .arg(&out_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run edgemig bench paper");
    let pid = child.id();
    leftovers.pid = Some(pid);
    let out = child.wait_with_output().expect("bench output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed: {stderr}\n{stdout}");
    assert!(stdout.contains("|---|"), "no table printed: {stdout}");
    assert!(stdout.contains(&out_dir.display().to_string()), "{stdout}");

    // results.json: every figure with its series and points.
    let text = std::fs::read_to_string(out_dir.join("results.json")).expect("results.json");
    let results: Value = serde_json::from_str(&text).expect("results.json is JSON");
    assert_eq!(results["bench"], "paper");
    assert_eq!(results["quick"], true);
    assert_eq!(results["repeat"], 1);
    assert!(results["date"].as_str().is_some_and(|d| d.ends_with('Z')));
    assert!(results["machine"]["cpus"].as_u64() >= Some(1));
    assert_eq!(
        results["failures"],
        serde_json::json!([]),
        "{}",
        results["failures"]
    );
    let figures = results["figures"].as_array().expect("figures");
    let systems: &[&str] = &["baseline", "best_single_path", "mptcp", "auto"];
    let expected: [(&str, &[&str], usize); 6] = [
        ("time_vs_bandwidth", systems, 1),
        ("time_vs_memory", systems, 1),
        ("handoff", &["client"], 5),
        ("handoff_rtt", &["client"], 5),
        ("disk", &["auto"], 2),
        ("disk_bytes", &["disk", "memory"], 2),
    ];
    let ids: Vec<&str> = figures.iter().filter_map(|f| f["id"].as_str()).collect();
    assert_eq!(
        ids,
        expected.iter().map(|e| e.0).collect::<Vec<_>>(),
        "{text}"
    );
    for (figure, (id, systems, points)) in figures.iter().zip(expected) {
        assert!(!figure["conditions"].as_str().unwrap_or("").is_empty());
        let series = figure["series"].as_array().expect("series");
        let names: Vec<&str> = series.iter().filter_map(|s| s["system"].as_str()).collect();
        assert_eq!(names, systems, "{id}");
        // A point is either measured (n >= 1, sane numbers, completed runs)
        // or says why not (its attempted runs with their status and error):
        // a measurement that fails on a loaded machine leaves a null point,
        // not a broken file. Every figure has measured points.
        let mut measured = 0;
        for s in series {
            let ps = s["points"].as_array().expect("points");
            assert_eq!(ps.len(), points, "{id}: {s}");
            for p in ps {
                assert!(!p["x"].is_null(), "{id}: {p}");
                assert_eq!(p["attempted"], 1, "{id}: {p}");
                let runs = p["runs"].as_array().cloned().unwrap_or_default();
                if p["n"].as_u64() < Some(1) {
                    eprintln!("warning: {id}: a point was not measured: {p}");
                    assert!(p["median"].is_null(), "{id}: {p}");
                    continue;
                }
                measured += 1;
                // Only the memory share of a migration may be 0 (a disk
                // migration could in principle send nothing of one kind).
                if id != "disk_bytes" {
                    assert!(positive(&p["median"]), "{id}: {p}");
                }
                assert!(p["min"].as_f64() <= p["median"].as_f64(), "{id}: {p}");
                assert!(p["median"].as_f64() <= p["max"].as_f64(), "{id}: {p}");
                if figure["unit"] == "ms" && id != "handoff_rtt" {
                    assert_eq!(runs.len(), 1, "{id}: {p}");
                    assert_eq!(runs[0]["status"], "completed", "{id}: {p}");
                    assert!(positive(&runs[0]["total_ms"]), "{id}: {p}");
                    assert!(runs[0]["memory_bytes"].as_u64() > Some(0), "{id}: {p}");
                    let downtime = runs[0]["downtime_ms"].as_u64().expect("downtime_ms");
                    assert!(
                        downtime <= runs[0]["total_ms"].as_u64().unwrap(),
                        "{id}: {p}"
                    );
                }
            }
        }
        assert!(measured > 0, "{id}: nothing was measured: {figure}");
        // Plots: PNG and SVG, listed and present.
        let plots: Vec<&str> = figure["plots"]
            .as_array()
            .expect("plots")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(plots, [format!("{id}.png"), format!("{id}.svg")], "{id}");
        let png = std::fs::read(out_dir.join(format!("{id}.png"))).expect("png");
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{id}.png");
        let svg = std::fs::read_to_string(out_dir.join(format!("{id}.svg"))).expect("svg");
        assert!(svg.contains("<svg"), "{id}.svg");
    }
    // QEMU's best single-path setup compressed (zstd over multifd).
    for id in [0, 1] {
        let best = &figures[id]["series"][1]["points"][0]["runs"];
        for run in best
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["status"] == "completed")
        {
            assert!(
                run["compression"]
                    .as_str()
                    .is_some_and(|c| c.starts_with("zstd")),
                "{run}"
            );
        }
    }
    // The client's stall (ms resolution, 10 ms probes) is within its
    // session: a few seconds at most, far less than the whole run.
    let note = figures[2]["notes"][0]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let stall: u64 = note
        .split("longest stall ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no stall in {note:?}"));
    assert!(stall < 120_000, "{note}");

    // The disk runs mirrored disk data.
    let disk_bytes = &figures[5]["series"][0]["points"];
    for p in disk_bytes.as_array().unwrap() {
        assert!(p["median"].is_null() || positive(&p["median"]), "{p}");
    }

    // results.md: a table per figure.
    let md = std::fs::read_to_string(out_dir.join("results.md")).expect("results.md");
    assert!(md.contains("|---|"), "{md}");
    assert_eq!(md.matches("\n## ").count(), expected.len(), "{md}");
    assert!(md.contains("speedup"), "{md}");
    assert!(md.contains("auto / best_single_path speedup"), "{md}");

    // Its testbeds are gone: no state directory, no namespace.
    let remaining: Vec<_> = std::fs::read_dir(testbeds.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(remaining.is_empty(), "testbeds left: {remaining:?}");
    assert_eq!(bench_namespaces(pid), Vec::<String>::new());

    // A second run into the same, now non-empty, directory is refused.
    let again = Command::new(cli_path())
        .env("EDGEMIG_TESTBED_DIR", testbeds.path())
        .args(["bench", "paper", "--quick", "--out"])
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("not empty"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}
