//! The checks can fail: each planted bug (a test-only switch in the production code) is caught
//! within a few seeds. A suite that passes with these bugs in would prove nothing.
#![cfg(madsim)]

use std::time::Duration;

use sim_tests::{run_seed, Bug, FaultPlan, Scenario};

/// Seeds each planted bug may take to be caught; the CI budget. Seeds are deterministic, so this
/// bounds how unlucky a code change (which reshuffles every random stream) can make a catch: the
/// rarest catch here, a lost unflushed write, happens in about a third of seeds.
const SEEDS_TO_CATCH_MAX: u64 = 20;

/// Runs seeds until one reports a violation; returns the seed and what was found.
fn first_catch(bug: Bug, faults: FaultPlan, clients: usize) -> Option<(u64, Vec<String>)> {
    let scenario =
        Scenario { bug: Some(bug), faults, clients, duration: Duration::from_secs(20), ..Scenario::default() };
    (1..=SEEDS_TO_CATCH_MAX).find_map(|seed| {
        let report = run_seed(seed, &scenario);
        (!report.ok()).then_some((seed, report.violations))
    })
}

fn assert_caught(bug: Bug, faults: FaultPlan, clients: usize) {
    match first_catch(bug, faults, clients) {
        Some((seed, found)) => eprintln!("{bug:?} caught at seed {seed}: {}", found[0]),
        None => panic!("{bug:?} was not caught in {SEEDS_TO_CATCH_MAX} seeds"),
    }
}

#[test]
fn acknowledging_before_a_durable_flush_is_caught() {
    // Lost writes show only when every replica crashes inside an unflushed window: crash the
    // whole cluster a few times, under more buyers.
    let faults = FaultPlan { crash_all: 8, crashes: true, ..FaultPlan::none() };
    assert_caught(Bug::AckBeforeFlush, faults, 12);
}

#[test]
fn skipping_the_availability_check_is_caught() {
    assert_caught(Bug::SkipAvailabilityCheck, FaultPlan::none(), 5);
}

#[test]
fn applying_a_retry_twice_is_caught() {
    assert_caught(Bug::ApplyRetriesTwice, FaultPlan::none(), 5);
}

#[test]
fn trusting_a_stale_leader_is_caught() {
    let faults = FaultPlan { partitions: true, ..FaultPlan::none() };
    assert_caught(Bug::TrustStaleLeader, faults, 5);
}

#[test]
fn trusting_an_expired_read_lease_is_caught() {
    // A lease trusted past its time answers stale reads only while the api still routes to the
    // cut-off leader, which it stops doing soon after: more buyers make a read land in that window.
    let faults = FaultPlan { partitions: true, ..FaultPlan::none() };
    assert_caught(Bug::LeaseNeverExpires, faults, 24);
}
