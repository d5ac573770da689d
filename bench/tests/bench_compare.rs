//! `boxoffice-bench compare` as a user runs it: the real binary starts its own Boxoffice (a
//! cluster of three, and an indexer for the mixed scenario) from the `boxoffice` binary built
//! beside it (`cargo test --workspace` builds both) and prints a table per scenario.
//! No baselines here: `bench/tests/baselines.rs` runs those against real servers.
#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Three scenarios of two 1 s runs each, plus starting three clusters and loading 20 events twice.
const COMPARE_TIMEOUT: Duration = Duration::from_secs(180);

/// Runs `boxoffice-bench compare` with `args`; its exit success and stdout.
fn compare(args: &[&str]) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_boxoffice-bench"))
        .arg("compare")
        .args(args)
        .env("BOXOFFICE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start boxoffice-bench compare");
    let mut stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        let _ = tx.send(out);
    });
    let Ok(out) = rx.recv_timeout(COMPARE_TIMEOUT) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("bench compare did not finish in {COMPARE_TIMEOUT:?}");
    };
    (child.wait().expect("wait").success(), out)
}

#[test]
fn bench_compare_prints_a_table_per_scenario_in_one_run_with_i1_ok() {
    let (ok, out) = compare(&[
        "--scenarios",
        "mixed,browse,flash-sale",
        "--duration",
        "1s",
        "--seats",
        "300",
        "--buyers",
        "4",
        "--events",
        "20",
        "--clients",
        "2",
        "--reads-per-write",
        "10",
    ]);
    assert!(ok, "{out}");
    let sale = out.find("== flash sale, compared").expect("the flash sale table");
    let browse = out.find("== browse, compared").expect("the browse table");
    let mixed = out.find("== mixed with search, compared").expect("the mixed table");
    assert!(sale < browse && browse < mixed, "scenarios run in a fixed order: {out}");
    assert!(
        out.contains("Boxoffice (3 nodes and an indexer)"),
        "the mixed scenario searches through an indexer: {out}"
    );
    // The flash sale's peak table, its latency table, browse and mixed: a Boxoffice row each.
    let rows: Vec<&str> = out.lines().filter(|l| l.trim_start().starts_with("Boxoffice ")).collect();
    assert_eq!(rows.len(), 4, "{out}");
    for row in rows {
        assert!(row.split_whitespace().any(|cell| cell == "ok") && !row.contains("VIOLATED"), "I1: {row}");
    }
    assert!(out.contains("search p50"), "the mixed table has search latency: {out}");
}

#[test]
fn bench_compare_refuses_an_unknown_scenario() {
    let (ok, out) = compare(&["--scenarios", "browse,checkout"]);
    assert!(!ok, "{out}");
}
