//! Gauges a node samples on a timer rather than as things happen: the disk under its data
//! directory (free and total bytes from `statvfs`, the directory's own size from a bounded walk)
//! and what only a group's leader knows — how far each replica is behind it and, for every
//! waiting room of a shard it leads, how many buyers wait and how many seats remain. Operators
//! alert on them: a disk nearly full, a replica lagging, a room that stopped admitting while it
//! could (`deploy/observability/`). Also, for every group this node hosts, the records its state
//! keeps in memory, to which the node's resident memory can be attributed.
//!
//! Not in simulation builds: it reads the real file system, and only `boxoffice node` starts it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use openraft::ServerState;
use raft_store::{Answer, EventId, NodeId, Query};

use super::Node;
use crate::wire::DiskUsage;

/// How often the gauges are sampled.
const SAMPLE_TICK: Duration = Duration::from_secs(15);
/// The data directory is walked every this many ticks (at most every 30 s): sled's files are few,
/// but a walk still touches every one of them.
const WALK_EVERY_TICKS: u64 = 2;
/// A walk stops after this many directory entries: a data directory that holds more is not
/// sled's, and a partial sum is still a lower bound worth showing.
const WALK_ENTRIES_MAX: usize = 100_000;
/// Bytes per block in `st_blocks`, whatever the file system's block size.
const STAT_BLOCK_BYTES: u64 = 512;

impl Node {
    /// Samples the gauges of this module every `SAMPLE_TICK` while the node lives, the first time
    /// at once; `data_dir` is the directory the node's database lives in.
    pub fn spawn_sampled_gauges(self: &Arc<Self>, data_dir: PathBuf) {
        let task = tokio::spawn(sample_duty(Arc::downgrade(self), data_dir));
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.push(task);
        }
    }
}

async fn sample_duty(node: Weak<Node>, data_dir: PathBuf) {
    let mut exported = Exported::default();
    for tick in 0u64.. {
        let walk = tick % WALK_EVERY_TICKS == 0;
        let dir = data_dir.clone();
        let sampled = match tokio::task::spawn_blocking(move || sample_disk(&dir, walk)).await {
            Ok(Ok(usage)) => Some(usage),
            Ok(Err(e)) => {
                tracing::warn!(dir = %data_dir.display(), error = %e, "disk gauges not sampled");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "disk sampling task failed");
                None
            }
        };
        let Some(n) = node.upgrade() else { return };
        if let (Some(mut usage), Ok(mut disk)) = (sampled, n.disk.lock()) {
            // The directory is measured every few ticks: keep the last measure between.
            usage.data_bytes = usage.data_bytes.or(disk.and_then(|d| d.data_bytes));
            *disk = Some(usage);
        }
        let machines = std::mem::take(&mut exported.machines);
        exported = n.record_leader_gauges(exported);
        exported.machines = n.record_machine_gauges(machines);
        drop(n);
        tokio::time::sleep(SAMPLE_TICK).await;
    }
}

/// `boxoffice_disk_free_bytes` (available to the node's unprivileged user) and
/// `boxoffice_disk_total_bytes` of the file system holding `dir`; with `walk`, also
/// `boxoffice_data_bytes`, the space `dir`'s files take on disk.
fn sample_disk(dir: &Path, walk: bool) -> std::io::Result<DiskUsage> {
    let fs = rustix::fs::statvfs(dir)?;
    let free = fs.f_bavail.saturating_mul(fs.f_frsize);
    let total = fs.f_blocks.saturating_mul(fs.f_frsize);
    debug_assert!(free <= total, "statvfs: {free} bytes free of {total}");
    metrics::gauge!("boxoffice_disk_free_bytes").set(free as f64);
    metrics::gauge!("boxoffice_disk_total_bytes").set(total as f64);
    let data = walk.then(|| allocated_bytes(dir, WALK_ENTRIES_MAX));
    if let Some(bytes) = data {
        metrics::gauge!("boxoffice_data_bytes").set(bytes as f64);
    }
    Ok(DiskUsage { free_bytes: free, total_bytes: total, data_bytes: data })
}

/// The bytes allocated to the files under `root`, following no symbolic link, after at most
/// `entries_max` entries. Entries that vanish mid-walk (sled replaces files) are skipped.
fn allocated_bytes(root: &Path, entries_max: usize) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0u64;
    let mut seen = 0usize;
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            seen += 1;
            if seen > entries_max {
                return total;
            }
            let Ok(meta) = entry.path().symlink_metadata() else { continue };
            if meta.is_dir() {
                dirs.push(entry.path());
            } else if meta.is_file() {
                total = total.saturating_add(meta.blocks().saturating_mul(STAT_BLOCK_BYTES));
            }
        }
    }
    total
}

/// The labelled gauges this node set on its last sample, to zero those it no longer leads.
#[derive(Default)]
struct Exported {
    rooms: BTreeSet<EventId>,
    /// (group, replica)
    replicas: BTreeSet<(String, NodeId)>,
    /// Groups whose machine records were exported.
    machines: BTreeSet<String>,
}

/// The kinds of `boxoffice_machine_records`.
const MACHINE_RECORD_KINDS: [&str; 4] = ["holds_active", "holds_ended", "orders", "changes"];

impl Node {
    /// `boxoffice_machine_records{group, kind}`: the records each group's state keeps in memory
    /// on this node (`raft_store::MachineRecords`) — active holds, ended holds still in memory (a
    /// state from before ended holds went to the cold store), orders, change records. Set for
    /// every replica, leader or not: each keeps its own copy, so a node's resident memory follows
    /// the sum over the groups it hosts. Cheap: sizes the collections keep, under the group's
    /// read lock. Groups exported last time and gone now are set to 0.
    fn record_machine_gauges(&self, before: BTreeSet<String>) -> BTreeSet<String> {
        let mut now = BTreeSet::new();
        for id in self.group_ids() {
            let Some(group) = self.group(id) else { continue };
            let r = group.state.read().machine.records();
            let name = id.to_string();
            for (kind, n) in MACHINE_RECORD_KINDS.into_iter().zip([r.holds_active, r.holds_ended, r.orders, r.changes])
            {
                metrics::gauge!("boxoffice_machine_records", "group" => name.clone(), "kind" => kind).set(n as f64);
            }
            now.insert(name);
        }
        for gone in before.difference(&now) {
            for kind in MACHINE_RECORD_KINDS {
                metrics::gauge!("boxoffice_machine_records", "group" => gone.clone(), "kind" => kind).set(0.0);
            }
        }
        now
    }
}

impl Node {
    /// The gauges only a group's leader knows, for every shard and the meta group this node
    /// leads. Those exported last time and not led here now are set to 0, so that the maximum
    /// over the nodes is the current leader's.
    ///
    /// - `boxoffice_raft_replica_lag_entries{group, replica}`: how many entries of the leader's
    ///   log the replica has not matched yet (its voters and learners, from the leader's
    ///   replication state; the leader itself is not listed).
    /// - `boxoffice_queue_waiting{event}`: buyers who joined a waiting room and are not admitted
    ///   yet, while the room is on sale and not sold out (0 otherwise);
    ///   `boxoffice_queue_available{event}`: seats and admissions still for sale.
    fn record_leader_gauges(&self, before: Exported) -> Exported {
        let now_ms = self.clock.now_ms();
        let mut now = Exported::default();
        for id in self.group_ids() {
            let Some(group) = self.group(id) else { continue };
            let m = group.raft.metrics().borrow().clone();
            if m.state != ServerState::Leader {
                continue;
            }
            let name = id.to_string();
            let last = m.last_log_index.unwrap_or(0);
            for (replica, matched) in m.replication.iter().flatten().filter(|(r, _)| **r != self.id) {
                let behind = last.saturating_sub(matched.as_ref().map_or(0, |l| l.index));
                let labels = [("group", name.clone()), ("replica", replica.to_string())];
                metrics::gauge!("boxoffice_raft_replica_lag_entries", &labels).set(behind as f64);
                now.replicas.insert((name.clone(), *replica));
            }
            if id.as_shard().is_none() {
                continue;
            }
            let Ok(Answer::Queues(views)) = group.state.query(&Query::Queues, now_ms) else { continue };
            for view in views.into_iter().filter(|v| v.high_traffic) {
                let open = !view.sold_out && now_ms >= view.on_sale_at_ms && now_ms < view.starts_at_ms;
                let waiting = if open { view.queue.next_seq.saturating_sub(view.queue.watermark) } else { 0 };
                let event = view.event_id.to_string();
                metrics::gauge!("boxoffice_queue_waiting", "event" => event.clone()).set(waiting as f64);
                metrics::gauge!("boxoffice_queue_available", "event" => event).set(f64::from(view.available));
                now.rooms.insert(view.event_id);
            }
        }
        for (group, replica) in before.replicas.difference(&now.replicas) {
            let labels = [("group", group.clone()), ("replica", replica.to_string())];
            metrics::gauge!("boxoffice_raft_replica_lag_entries", &labels).set(0.0);
        }
        for gone in before.rooms.difference(&now.rooms) {
            metrics::gauge!("boxoffice_queue_waiting", "event" => gone.to_string()).set(0.0);
            metrics::gauge!("boxoffice_queue_available", "event" => gone.to_string()).set(0.0);
        }
        now
    }
}

#[cfg(test)]
mod tests {
    use super::allocated_bytes;

    #[test]
    fn a_walk_sums_the_files_below_and_stops_at_its_bound() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("db")).expect("subdirectory");
        std::fs::write(dir.path().join("a"), vec![1u8; 64 * 1024]).expect("file a");
        std::fs::write(dir.path().join("db").join("b"), vec![2u8; 64 * 1024]).expect("file b");
        let all = allocated_bytes(dir.path(), 100);
        assert!(all >= 128 * 1024, "two files of 64 KiB take {all} bytes");
        assert!(allocated_bytes(dir.path(), 1) < all, "the bound stops the walk early");
        assert_eq!(allocated_bytes(&dir.path().join("missing"), 100), 0);
    }
}
