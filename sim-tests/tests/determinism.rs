//! One seed, one history: two runs of the same seed give the same trace.
#![cfg(madsim)]

use sim_tests::{run_seed, Scenario};

#[test]
fn the_same_seed_gives_the_same_history() {
    let scenario = Scenario::default();
    for seed in [7, 1234] {
        let (a, b) = (run_seed(seed, &scenario), run_seed(seed, &scenario));
        assert!(a.ops > 100, "seed {seed} did some work");
        assert_eq!(
            (a.trace_hash, a.ops),
            (b.trace_hash, b.ops),
            "seed {seed} diverged:\n{:?}\n{:?}",
            a.faults,
            b.faults
        );
        assert_eq!(a.faults, b.faults);
    }
}
