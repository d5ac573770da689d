//! One seed, one history: two runs of the same seed, each in a fresh process as a replay is,
//! give the same trace.
#![cfg(madsim)]

use sim_tests::{run_seed, run_seed_in_child, trace_line, Scenario};

#[test]
fn the_same_seed_gives_the_same_history() {
    if std::env::var("SIM_SEED").is_ok() {
        return; // a child: `child_run` does the work
    }
    for seed in [7, 1234] {
        let (a, b) = (run_seed_in_child("child_run", seed), run_seed_in_child("child_run", seed));
        assert!(a.ok && b.ok, "seed {seed} failed:\n{}\n{}", a.output, b.output);
        let (Some(a), Some(b)) = (a.trace, b.trace) else { unreachable!("ok runs print their trace") };
        assert!(a.1 > 100, "seed {seed} did some work");
        assert_eq!(a, b, "seed {seed} diverged");
    }
}

/// The child side: runs `SIM_SEED` and prints its trace line.
#[test]
fn child_run() {
    let Ok(seed) = std::env::var("SIM_SEED") else { return };
    let report = run_seed(seed.parse().expect("SIM_SEED is a number"), &Scenario::default());
    assert!(report.ok(), "{:?}", report.violations);
    println!("{}", trace_line(&report));
}
