//! The checks can fail: each planted bug (a test-only switch in the production code) is caught
//! within a few seeds. A suite that passes with these bugs in would prove nothing.
#![cfg(madsim)]

use std::time::Duration;

use sim_tests::{run_seed, Bug, FaultPlan, Scenario};

/// Seeds each planted bug may take to be caught; the CI budget, in debug and release builds
/// alike (`scripts/test` runs both). Seeds are deterministic, but a code change reshuffles every
/// random stream, so a catch must not hang on luck: each plan makes the nemesis open the window
/// its bug needs (every node crashed the instant an acknowledgement arrives, every disk failing,
/// rot in the record a restart reads first, a cut-off leader held until a write is acknowledged
/// without it) rather than wait for a fault to fall into it by chance.
const SEEDS_TO_CATCH_MAX: u64 = 20;

/// The first seed whose violations include one that starts with `by` ("" for any), with them.
fn first_catch(scenario: &Scenario, by: &str) -> Option<(u64, Vec<String>)> {
    (1..=SEEDS_TO_CATCH_MAX).find_map(|seed| {
        let report = run_seed(seed, scenario);
        report.violations.iter().any(|v| v.starts_with(by)).then_some((seed, report.violations))
    })
}

/// The bug is caught within the budget, and the seed that catches it keeps every invariant with
/// the bug taken out: what was found is the bug's doing, not the fault plan's.
fn assert_caught_by(bug: Bug, faults: FaultPlan, clients: usize, by: &str) {
    let scenario =
        Scenario { bug: Some(bug), faults, clients, duration: Duration::from_secs(20), ..Scenario::default() };
    let Some((seed, found)) = first_catch(&scenario, by) else {
        let by = if by.is_empty() { String::new() } else { format!(" by {by}") };
        panic!("{bug:?} was not caught{by} in {SEEDS_TO_CATCH_MAX} seeds");
    };
    let first = found.iter().find(|v| v.starts_with(by)).unwrap_or(&found[0]);
    let checks: Vec<&str> = found.iter().map(|v| v.split(':').next().unwrap_or(v)).collect();
    eprintln!("{bug:?} caught at seed {seed}: {}\n  every check that failed: {checks:?}", short(first));
    let without = run_seed(seed, &Scenario { bug: None, ..scenario });
    assert!(without.ok(), "seed {seed} fails without {bug:?} too: {:?}", without.violations);
}

fn short(text: &str) -> String {
    text.chars().take(200).collect()
}

fn assert_caught(bug: Bug, faults: FaultPlan, clients: usize) {
    assert_caught_by(bug, faults, clients, "");
}

#[test]
fn acknowledging_before_a_durable_flush_loses_an_acknowledged_booking() {
    // Every node crashes the instant a client hears a booking acknowledged, on disks slower than
    // the acknowledgement's three network hops: an append acknowledged before its flush is then
    // durable nowhere, and the booking is gone after the restart.
    let faults = FaultPlan { crash_after_ack: 4, slow_disks: true, ..FaultPlan::none() };
    assert_caught_by(Bug::AckBeforeFlush, faults, 12, "I2:");
}

#[test]
fn acknowledging_despite_a_failed_flush_loses_an_acknowledged_booking() {
    // Every disk fails its flushes for a while, then every node restarts: whatever was
    // acknowledged meanwhile was durable nowhere.
    let faults = FaultPlan { fsync_errors_all: 3, ..FaultPlan::none() };
    assert_caught_by(Bug::AckDespiteFailedFlush, faults, 12, "I2:");
}

#[test]
fn trusting_a_record_without_its_checksum_is_caught() {
    // Every crashed node restarts on a rotten newest log record.
    let faults = FaultPlan { crashes: true, rot_chance: 1.0, ..FaultPlan::none() };
    assert_caught(Bug::TrustUncheckedRecord, faults, 5);
}

#[test]
fn discarding_a_rotten_last_record_as_torn_is_caught() {
    // Every node crashes the instant a booking is acknowledged (its entry the newest durable
    // record on a majority) and restarts on a rotten newest log record.
    let faults = FaultPlan { crash_after_ack: 4, rot_chance: 1.0, ..FaultPlan::none() };
    assert_caught(Bug::DiscardCorruptTail, faults, 12);
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
fn admitting_a_ticket_twice_is_caught() {
    // The door scans every ticket with its current code by two or three scanners at once: a store
    // that admits a ticket it admitted already answers more than one of them with the ticket.
    // Any seed with a confirmed order catches it, faults or none.
    assert_caught_by(Bug::CheckInTwice, FaultPlan::none(), 5, "I8:");
}

#[test]
fn trusting_a_stale_leader_is_caught() {
    let faults = FaultPlan { partitions: true, ..FaultPlan::none() };
    assert_caught(Bug::TrustStaleLeader, faults, 5);
}

#[test]
fn trusting_an_expired_read_lease_is_caught() {
    // A lease trusted past its time answers stale reads only while reads still reach the cut-off
    // leader after the others have acknowledged a write: the nemesis holds a cut of the busy
    // group's leader until a write is acknowledged without it, and more buyers make a read land
    // in that window.
    let faults = FaultPlan { partitions: true, ..FaultPlan::none() };
    assert_caught(Bug::LeaseNeverExpires, faults, 24);
}
