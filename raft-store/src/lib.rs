//! The booking state machine and its openraft storage.
//!
//! - [`Machine`] applies [`Request`]s deterministically: no clock, no randomness, no I/O.
//! - [`LogStore`] and [`StateMachineStore`] give openraft a durable log, vote and snapshots on any
//!   [`Kv`] backend: in production the log on [`SegmentKv`] and the state on [`FjallKv`]
//!   ([`open_node_stores`]), [`MemKv`] (with crash semantics) in tests and the simulation.

// openraft's `StorageError` is large and is the error type its traits require.
#![allow(clippy::result_large_err)]

mod blocking;
mod cautious;
mod codec;
mod cold;
mod command;
#[cfg(any(test, feature = "fuzz"))]
pub mod fuzz;
mod ids;
mod keys;
mod kv;
mod layout;
mod limits;
mod log_store;
mod machine;
mod model;
#[cfg(madsim)]
pub mod planted;
mod raft_types;
mod restore;
#[cfg(madsim)]
mod sim_runtime;
mod sm_store;
mod snapshot;
mod webhook;

pub use codec::{decode, encode, CodecError, FORMAT_VERSION, FORMAT_VERSION_MIN};
pub use cold::{
    prefix_end, ColdError, ColdRead, ColdRecord, ColdStage, ColdStore, ColdView, ColdWrites, MemCold, NoCold,
    WithPending,
};
pub use command::*;
pub use ids::*;
/// The key of a group's tree that holds its snapshot record (tests damage it).
pub use keys::SNAPSHOT as SNAPSHOT_KEY;
pub use keys::{group_tree, parse_group_tree, NODE_IDENTITY, NODE_TREE};
pub use kv::{copy_trees, flushed, Batch, FlushStats, Kv, KvError, KvResult, KvTree, MemKv};
#[cfg(not(madsim))]
pub use kv::{open_node_stores, FjallKv, SegmentKv, SegmentLimits, SledKv};
pub use layout::{Layout, Move, NodeRecord, NodeStatus, META_VOTERS_MAX, REPLICATION_MAX, SHARDS_MAX};
pub use limits::*;
pub use log_store::{move_logs, LogStore};
pub use machine::{EntryApplied, InvariantViolation, Machine, MachineRecords};
pub use model::*;
pub use raft_types::*;
pub use restore::{Rebaser, RestoreError, RestoreTarget, RESTORED_INDEX};
pub use sm_store::{Applied, GroupState, SnapshotBuilder, StateMachineStore};
pub use snapshot::{
    GroupSnapshot, SnapshotChunk, SnapshotError, SnapshotReader, SnapshotWriter, StreamCheck, StreamSummary,
    SNAPSHOT_CHUNK_BYTES_MAX,
};
pub use webhook::{check_webhook_secret, check_webhook_url, Webhook, WebhookEventType};
