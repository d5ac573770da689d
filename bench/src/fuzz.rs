//! `boxoffice-bench fuzz`: the decoders of what a node reads from disk and from peers, fed
//! mutated and random bytes for as long as asked (`raft_store::fuzz` has the targets and the
//! case generator; CI runs a few hundred cases of each as unit tests). A decoder may refuse any
//! input; a panic is a bug, reported with the bytes that caused it.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use raft_store::fuzz::{case, Target};

/// Bytes of a failing input printed, in hex.
const SHOWN_BYTES_MAX: usize = 256;

#[derive(Clone, Debug)]
pub struct FuzzConfig {
    pub duration: Duration,
    /// The generator's seed: the same seed draws the same cases.
    pub seed: u64,
}

/// What one target saw.
#[derive(Clone, Debug)]
pub struct FuzzRow {
    pub target: Target,
    pub cases: u64,
    pub accepted: u64,
    pub panics: u64,
    /// The first input that panicked, in hex (truncated).
    pub first_panic: Option<String>,
}

impl FuzzRow {
    fn new(target: Target) -> FuzzRow {
        FuzzRow { target, cases: 0, accepted: 0, panics: 0, first_panic: None }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the case generator failed: {0}")]
pub struct FuzzError(String);

/// Runs every target in turn, one case each, until `config.duration` has passed.
pub fn fuzz(config: &FuzzConfig) -> Result<Vec<FuzzRow>, FuzzError> {
    let seeds: Vec<(Target, Vec<Vec<u8>>)> = Target::ALL.iter().map(|t| (*t, t.seeds())).collect();
    let mut rows: Vec<FuzzRow> = Target::ALL.iter().map(|t| FuzzRow::new(*t)).collect();
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&config.seed.to_le_bytes());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    let strategy = case();
    // The default hook prints each panic with its message and place; that is the report.
    let started = Instant::now();
    while started.elapsed() < config.duration {
        let drawn = strategy.new_tree(&mut runner).map_err(|e| FuzzError(e.to_string()))?.current();
        for ((target, target_seeds), row) in seeds.iter().zip(rows.iter_mut()) {
            let bytes = drawn.bytes(target_seeds);
            row.cases += 1;
            match catch_unwind(AssertUnwindSafe(|| target.decode(&bytes))) {
                Ok(true) => row.accepted += 1,
                Ok(false) => {}
                Err(_) => {
                    row.panics += 1;
                    row.first_panic.get_or_insert_with(|| hex(&bytes));
                }
            }
        }
    }
    Ok(rows)
}

fn hex(bytes: &[u8]) -> String {
    let shown: String = bytes.iter().take(SHOWN_BYTES_MAX).map(|b| format!("{b:02x}")).collect();
    if bytes.len() > SHOWN_BYTES_MAX {
        format!("{shown}… ({} bytes)", bytes.len())
    } else {
        shown
    }
}

pub fn print_fuzz(config: &FuzzConfig, rows: &[FuzzRow]) {
    println!("fuzz: {:.0} s, seed {}", config.duration.as_secs_f64(), config.seed);
    println!("{:<16} {:>12} {:>12} {:>8}", "target", "cases", "accepted", "panics");
    for row in rows {
        println!("{:<16} {:>12} {:>12} {:>8}", row.target.name(), row.cases, row.accepted, row.panics);
    }
    for row in rows {
        if let Some(bytes) = &row.first_panic {
            println!("{} panicked first on: {bytes}", row.target.name());
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_short_run_reaches_every_target_and_some_cases_are_accepted() {
        let config = FuzzConfig { duration: Duration::from_millis(300), seed: 1 };
        let rows = fuzz(&config).unwrap();
        assert_eq!(rows.len(), Target::ALL.len());
        for row in &rows {
            assert!(row.cases > 0, "{row:?}");
            assert_eq!(row.panics, 0, "{row:?}");
        }
        // Mutations get past the framing: some decoders accept some of them.
        assert!(rows.iter().any(|r| r.accepted > 0), "{rows:?}");
    }
}
