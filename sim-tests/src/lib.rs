//! Deterministic simulation of Boxoffice clusters (build with `RUSTFLAGS="--cfg madsim"`).
//!
//! The production code — state machine, openraft groups, storage semantics, node, router and
//! retries — runs unchanged; only the runtime, the network and the disk are simulated. One seed
//! drives time, scheduling, the network and every fault, so a failing seed replays exactly.

#![cfg(madsim)]

mod check;
mod cluster;
mod door;
mod history;
mod linearize;
mod nemesis;
mod net;
mod provider;
mod run;
mod settle;
mod workload;

pub use nemesis::FaultPlan;
pub use raft_store::planted::Bug;
pub use run::{run_seed, run_seed_in_child, trace_line, ChildRun, Report, Scenario};
