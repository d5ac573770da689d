//! The log store under disk faults, on the memory twin: a torn last record is dropped at start-up
//! (it was never flushed), a damaged record anywhere stops the group, a failed flush is never an
//! acknowledgement, and a long truncation cut short by a crash leaves no hole.
#![cfg(not(madsim))]
#![allow(clippy::result_large_err)]

use std::sync::{Arc, Mutex};

use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::{Entry, EntryPayload, LogId, RaftLogReader};
use raft_store::*;

const TREE: &str = "group/00000001";

/// Blank entries: the log store stores every payload alike, and these do not change with the
/// commands.
fn entry(index: u64) -> Entry<TypeConfig> {
    Entry { log_id: LogId::new(openraft::CommittedLeaderId::new(1, 1), index), payload: EntryPayload::Blank }
}

fn key(index: u64) -> Vec<u8> {
    let (from, _) = LogStore::record_keys();
    let mut key = from[..1].to_vec();
    key.extend(index.to_be_bytes());
    key
}

fn store(kv: &Arc<MemKv>) -> LogStore {
    let kv_dyn: Arc<dyn Kv> = kv.clone();
    LogStore::new(kv_dyn, kv.tree(TREE).expect("tree"))
}

/// A store holding entries `1..=count`, flushed.
async fn log_of(count: u64) -> Arc<MemKv> {
    let kv = MemKv::new();
    store(&kv).blocking_append((1..=count).map(entry)).await.expect("append");
    kv
}

/// Writes `bytes` at the log key of `index` and flushes: what a disk fault leaves there.
async fn put_raw(kv: &Arc<MemKv>, index: u64, bytes: Vec<u8>) {
    let mut batch = Batch::default();
    batch.put(key(index), bytes);
    kv.tree(TREE).expect("tree").write(batch).expect("write");
    flushed(kv.as_ref()).await.expect("flush");
}

async fn last_index(log: &mut LogStore) -> Result<Option<u64>, StorageError> {
    Ok(log.get_log_state().await?.last_log_id.map(|l| l.index))
}

#[tokio::test]
async fn a_torn_last_record_is_dropped_at_start_up() {
    let whole = encode(&entry(4)).expect("encode");
    for kept in [0, 1, 12, 13, 14, whole.len() / 2, whole.len() - 1] {
        let kv = log_of(3).await;
        put_raw(&kv, 4, whole[..kept].to_vec()).await;
        let restarted = kv.crash();
        let mut log = store(&restarted);
        assert_eq!(last_index(&mut log).await.expect("a torn tail is not an error"), Some(3), "{kept} bytes kept");
        assert_eq!(restarted.tree(TREE).expect("tree").get(&key(4)).expect("get"), None);
        assert_eq!(last_index(&mut store(&restarted.crash())).await.expect("state"), Some(3), "the drop is durable");
        assert_eq!(log.try_get_log_entries(1..=3).await.expect("entries").len(), 3);
    }
}

#[tokio::test]
async fn a_damaged_last_record_stops_the_group() {
    let whole = encode(&entry(3)).expect("encode");
    for at in [0, 2, 6, 10, 13, whole.len() - 1] {
        let kv = log_of(3).await;
        assert!(kv.corrupt(TREE, &key(3), at, 0x10));
        let err = last_index(&mut store(&kv.crash())).await.expect_err("rot is not a torn tail");
        assert!(err.to_string().contains("corrupt log record"), "byte {at}: {err}");
    }
    // Longer than its header says: no crash makes that.
    let kv = log_of(2).await;
    let mut longer = whole.clone();
    longer.push(0);
    put_raw(&kv, 3, longer).await;
    assert!(last_index(&mut store(&kv.crash())).await.is_err());
}

#[tokio::test]
async fn a_damaged_or_short_record_inside_the_log_stops_reads() {
    let kv = log_of(3).await;
    assert!(kv.corrupt(TREE, &key(2), 14, 0x01));
    let mut log = store(&kv.crash());
    assert_eq!(last_index(&mut log).await.expect("the last record is whole"), Some(3));
    assert!(log.try_get_log_entries(1..=3).await.is_err());

    // A torn-looking record that is not the last was not torn by a crash: damage.
    let kv = log_of(3).await;
    let whole = encode(&entry(2)).expect("encode");
    put_raw(&kv, 2, whole[..whole.len() / 2].to_vec()).await;
    let mut log = store(&kv.crash());
    assert_eq!(last_index(&mut log).await.expect("state"), Some(3));
    assert!(log.try_get_log_entries(2..=2).await.is_err());
}

#[tokio::test]
async fn a_record_holding_another_index_stops_the_group() {
    let kv = log_of(2).await;
    put_raw(&kv, 3, encode(&entry(5)).expect("encode")).await;
    assert!(last_index(&mut store(&kv.crash())).await.is_err());
}

#[tokio::test]
async fn a_failed_flush_is_never_an_acknowledgement() {
    let kv = log_of(2).await;
    kv.fail_flushes();
    let mut log = store(&kv);
    assert!(log.blocking_append([entry(3)]).await.is_err(), "the append fails with its flush");
    assert!(log.blocking_append([entry(4)]).await.is_err(), "and so does every later one");
    assert!(log.save_vote(&openraft::Vote::new(2, 1)).await.is_err());
    let restarted = kv.crash();
    assert_eq!(last_index(&mut store(&restarted)).await.expect("state"), Some(2));
}

/// Records the keys of every batch written through it.
struct Recording {
    inner: Arc<dyn KvTree>,
    batches: Mutex<Vec<Vec<Vec<u8>>>>,
}

impl KvTree for Recording {
    fn get(&self, key: &[u8]) -> KvResult<Option<Vec<u8>>> {
        self.inner.get(key)
    }
    /// A truncation only deletes: the keys a batch removed are the ones no longer found.
    fn write(&self, batch: Batch) -> KvResult<()> {
        let before: Vec<Vec<u8>> = self.inner.scan(&[0], &[0xff], usize::MAX)?.into_iter().map(|(k, _)| k).collect();
        self.inner.write(batch)?;
        let after: std::collections::BTreeSet<Vec<u8>> =
            self.inner.scan(&[0], &[0xff], usize::MAX)?.into_iter().map(|(k, _)| k).collect();
        let gone = before.into_iter().filter(|k| !after.contains(k)).collect();
        self.batches.lock().expect("lock").push(gone);
        Ok(())
    }
    fn scan(&self, from: &[u8], to: &[u8], limit: usize) -> KvResult<Vec<(Vec<u8>, Vec<u8>)>> {
        self.inner.scan(from, to, limit)
    }
    fn last(&self, from: &[u8], to: &[u8]) -> KvResult<Option<(Vec<u8>, Vec<u8>)>> {
        self.inner.last(from, to)
    }
}

#[tokio::test]
async fn a_long_truncation_deletes_from_the_end() {
    let count = 25_000;
    let kv = log_of(count).await;
    let recording = Arc::new(Recording { inner: kv.tree(TREE).expect("tree"), batches: Mutex::default() });
    let kv_dyn: Arc<dyn Kv> = kv.clone();
    let mut log = LogStore::new(kv_dyn, recording.clone());
    log.truncate(LogId::new(openraft::CommittedLeaderId::new(1, 1), 11)).await.expect("truncate");
    let batches = recording.batches.lock().expect("lock").clone();
    assert!(batches.len() > 1, "a long truncation takes several batches");
    // A crash after any number of these batches leaves entries 1..k: every batch deletes keys
    // above all the keys later batches delete.
    for pair in batches.windows(2) {
        assert!(pair[0].iter().min() > pair[1].iter().max());
    }
    assert_eq!(batches.iter().map(Vec::len).sum::<usize>() as u64, count - 10);
    assert_eq!(last_index(&mut log).await.expect("state"), Some(10));
}
