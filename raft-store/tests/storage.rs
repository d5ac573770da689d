//! The log and state machine stores against openraft's own storage suite, on the memory twin and
//! on production's pair (the log in segment files, the state machine on fjall), recovery from
//! snapshot plus log after a restart on that pair, and a data directory of an older version
//! (everything in sled) carried over.
#![cfg(not(madsim))]
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{Entry, EntryPayload, LogId, RaftLogReader, RaftSnapshotBuilder};
use raft_store::*;

const GROUP: GroupId = GroupId(1);

fn stores(log_kv: Arc<dyn Kv>, kv: Arc<dyn Kv>) -> Result<(LogStore, StateMachineStore), StorageError> {
    let err = |e: KvError| openraft::StorageIOError::write(&e);
    let log_tree = log_kv.tree(&group_tree(GROUP)).map_err(err)?;
    let tree = kv.tree(&group_tree(GROUP)).map_err(err)?;
    Ok((LogStore::new(log_kv, log_tree), StateMachineStore::open(kv, tree, GROUP, 1)?))
}

/// Production's pair, as a node opens them in its data directory `dir`.
async fn open_pair(dir: &std::path::Path) -> Result<(Arc<SegmentKv>, Arc<FjallKv>), KvError> {
    let (state, log) = open_node_stores(dir, 8 << 20).await?;
    Ok((log, state))
}

struct MemBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, ()> for MemBuilder {
    async fn build(&self) -> Result<((), LogStore, StateMachineStore), StorageError> {
        let kv = MemKv::new();
        let (log, sm) = stores(kv.clone(), kv)?;
        Ok(((), log, sm))
    }
}

struct DiskBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for DiskBuilder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let (log_kv, kv) = open_pair(dir.path()).await.map_err(|e| openraft::StorageIOError::write(&e))?;
        let (log, sm) = stores(log_kv, kv)?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite_passes_on_the_memory_twin() {
    Suite::test_all(MemBuilder).expect("suite");
}

#[test]
fn openraft_storage_suite_passes_on_segments_and_fjall() {
    Suite::test_all(DiskBuilder).expect("suite");
}

fn request(time_ms: i64, command: Command) -> Request {
    Request::single(time_ms, Proposal::internal(command))
}

fn venue(n: u64) -> Venue {
    Venue {
        venue_id: VenueId::from_u64(n),
        name: format!("Venue {n}"),
        city: "Porto".into(),
        country: "PT".into(),
        location: GeoPoint { lat: 41.1, lon: -8.6 },
        sections: vec![Section {
            id: "GA".into(),
            name: "Standing".into(),
            kind: SectionKind::General { capacity: 10 },
        }],
    }
}

fn entry(index: u64, req: Request) -> Entry<TypeConfig> {
    Entry { log_id: LogId::new(openraft::CommittedLeaderId::new(1, 1), index), payload: EntryPayload::Normal(req) }
}

async fn append(log: &mut LogStore, entries: Vec<Entry<TypeConfig>>) {
    // Waits for the flush callback, as openraft does before counting the entries.
    let last = entries.last().map(|e| e.log_id.index);
    log.blocking_append(entries).await.expect("append");
    assert_eq!(log.get_log_state().await.expect("state").last_log_id.map(|l| l.index), last);
}

#[tokio::test]
async fn restart_recovers_vote_log_and_snapshot_from_segments_and_fjall() {
    let dir = tempfile::tempdir().expect("temp dir");
    // The meta group: venues are the simplest commands to count after recovery.
    let meta_tree = group_tree(GroupId::META);
    {
        let (log_kv, kv) = open_pair(dir.path()).await.expect("open");
        let tree = kv.tree(&meta_tree).expect("tree");
        let mut log = LogStore::new(log_kv.clone(), log_kv.tree(&meta_tree).expect("log tree"));
        let mut sm = StateMachineStore::open(kv.clone(), tree, GroupId::META, 1).expect("sm");
        log.save_vote(&openraft::Vote::new_committed(1, 1)).await.expect("vote");
        let entries: Vec<_> = (1..=10).map(|i| entry(i, request(i as i64, Command::CreateVenue(venue(i))))).collect();
        append(&mut log, entries.clone()).await;
        sm.apply(entries[..6].to_vec()).await.expect("apply");
        let mut builder = sm.get_snapshot_builder().await;
        let snapshot = builder.build_snapshot().await.expect("snapshot");
        assert_eq!(snapshot.meta.last_log_id.map(|l| l.index), Some(6));
        log.purge(snapshot.meta.last_log_id.expect("id")).await.expect("purge");
        sm.apply(entries[6..].to_vec()).await.expect("apply");
    }
    let (log_kv, kv) = open_pair(dir.path()).await.expect("reopen");
    let tree = kv.tree(&meta_tree).expect("tree");
    let mut log = LogStore::new(log_kv.clone(), log_kv.tree(&meta_tree).expect("log tree"));
    let mut sm = StateMachineStore::open(kv, tree, GroupId::META, 1).expect("sm");
    assert_eq!(log.read_vote().await.expect("vote"), Some(openraft::Vote::new_committed(1, 1)));
    let state = log.get_log_state().await.expect("log state");
    assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(6));
    assert_eq!(state.last_log_id.map(|l| l.index), Some(10));
    let (applied, _) = sm.applied_state().await.expect("applied");
    assert_eq!(applied.map(|l| l.index), Some(6), "restarts from the snapshot");
    let rest = log.try_get_log_entries(7..=10).await.expect("entries");
    assert_eq!(rest.len(), 4);
    sm.apply(rest).await.expect("re-apply");
    let state = sm.state();
    let applied = state.read();
    for i in 1..=10 {
        let answer = applied.machine.query(&Query::Venue(VenueId::from_u64(i)), 0, &raft_store::NoCold).unwrap();
        assert!(matches!(answer, Answer::Venue(Some(_))), "venue {i} recovered");
    }
}

/// Flushes call back in the order they were requested, whatever thread asks: openraft counts on
/// it (the simulation found what a late callback of a truncated append does when they do not).
#[tokio::test]
async fn flush_callbacks_arrive_in_request_order_on_every_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (segments, fjall) = open_pair(dir.path()).await.expect("open");
    let sled = SledKv::open(&dir.path().join("sled"), 8 << 20).expect("open");
    for kv in [fjall as Arc<dyn Kv>, segments, sled] {
        tokio::task::spawn_blocking(move || flush_callbacks_arrive_in_request_order(kv)).await.expect("ran");
    }
}

fn flush_callbacks_arrive_in_request_order(kv: Arc<dyn Kv>) {
    let tree = kv.tree("t").expect("tree");
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    for i in 0..500u32 {
        let mut batch = Batch::default();
        batch.put(i.to_be_bytes().to_vec(), vec![0; 64]);
        tree.write(batch).expect("write");
        let (order, tx) = (order.clone(), tx.clone());
        kv.flush(Box::new(move |r| {
            r.expect("flushed");
            order.lock().expect("lock").push(i);
            let _ = tx.send(());
        }));
    }
    for _ in 0..500 {
        rx.recv_timeout(std::time::Duration::from_secs(30)).expect("every flush calls back");
    }
    let order = order.lock().expect("lock").clone();
    assert_eq!(order, (0..500).collect::<Vec<_>>());
    assert!(kv.flush_stats().flushes < 500, "flushes were batched: {:?}", kv.flush_stats());
}

/// A node of an older version kept everything in sled under `db/`, each group's log in its tree
/// beside the state machine: opening the data directory copies it into the state store, and
/// `move_logs` carries vote, entries and purge point into the segment files, leaving the state.
#[tokio::test]
async fn a_data_directory_kept_in_sled_is_carried_over() {
    let dir = tempfile::tempdir().expect("temp dir");
    let meta_tree = group_tree(GroupId::META);
    {
        let kv = SledKv::open(&dir.path().join("db"), 8 << 20).expect("open");
        let tree = kv.tree(&meta_tree).expect("tree");
        let mut log = LogStore::new(kv.clone(), tree.clone());
        let mut sm = StateMachineStore::open(kv.clone(), tree, GroupId::META, 1).expect("sm");
        log.save_vote(&openraft::Vote::new_committed(2, 1)).await.expect("vote");
        let entries: Vec<_> = (1..=10).map(|i| entry(i, request(i as i64, Command::CreateVenue(venue(i))))).collect();
        append(&mut log, entries.clone()).await;
        sm.apply(entries[..4].to_vec()).await.expect("apply");
        let snapshot = sm.get_snapshot_builder().await.build_snapshot().await.expect("snapshot");
        log.purge(snapshot.meta.last_log_id.expect("id")).await.expect("purge");
    }
    let (log_kv, kv) = open_pair(dir.path()).await.expect("open");
    assert!(!dir.path().join("db").exists() && !dir.path().join("db.copied").exists(), "sled's copy is gone");
    assert_eq!(move_logs(kv.as_ref(), log_kv.as_ref()).await.expect("move"), 8, "6 entries, vote, purge point");
    assert_eq!(move_logs(kv.as_ref(), log_kv.as_ref()).await.expect("again"), 0, "nothing left to move");
    drop((log_kv, kv));
    let (log_kv, kv) = open_pair(dir.path()).await.expect("reopen");
    let tree = kv.tree(&meta_tree).expect("tree");
    assert!(tree.scan(&[0x01], &[0x05], 10).expect("scan").is_empty(), "no log records left in the state store");
    let mut log = LogStore::new(log_kv.clone(), log_kv.tree(&meta_tree).expect("log tree"));
    assert_eq!(log.read_vote().await.expect("vote"), Some(openraft::Vote::new_committed(2, 1)));
    let state = log.get_log_state().await.expect("log state");
    assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(4));
    assert_eq!(state.last_log_id.map(|l| l.index), Some(10));
    assert_eq!(log.try_get_log_entries(5..=10).await.expect("entries").len(), 6);
    let mut sm = StateMachineStore::open(kv, tree, GroupId::META, 1).expect("sm");
    assert_eq!(sm.applied_state().await.expect("applied").0.map(|l| l.index), Some(4), "the snapshot stayed");
}

/// Groups sharing one build slot build one snapshot at a time: while the slot is taken, a build
/// waits, and it goes on (at the state it then finds) once the slot is free.
#[tokio::test]
async fn a_shared_build_slot_holds_a_build_back_until_it_is_free() {
    let kv: Arc<dyn Kv> = MemKv::new();
    let tree = kv.tree(&group_tree(GroupId::META)).expect("tree");
    let slots = Arc::new(tokio::sync::Semaphore::new(1));
    let mut sm = StateMachineStore::open(kv, tree, GroupId::META, 1).expect("sm").sharing_builds(slots.clone());
    let entries: Vec<_> = (1..=4).map(|i| entry(i, request(i as i64, Command::CreateVenue(venue(i))))).collect();
    sm.apply(entries[..2].to_vec()).await.expect("apply");
    let taken = slots.clone().acquire_owned().await.expect("slot");
    let mut builder = sm.get_snapshot_builder().await;
    let build = tokio::spawn(async move { builder.build_snapshot().await });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!build.is_finished(), "a build waits while another group holds the slot");
    // Applied meanwhile: the build copies the state when it gets the slot, not when it was asked.
    sm.apply(entries[2..].to_vec()).await.expect("apply");
    drop(taken);
    let snapshot = build.await.expect("build task").expect("snapshot");
    assert_eq!(snapshot.meta.last_log_id.map(|l| l.index), Some(4));
    assert_eq!(slots.available_permits(), 1, "the slot is given back");
}
