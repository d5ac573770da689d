//! The Raft logs' segment files: what a restart finds after flushed writes, torn tails and damage,
//! and segments that are deleted once their values are dead (an idle tree's copied forward).
#![cfg(not(madsim))]
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use raft_store::{flushed, Batch, Kv, KvTree, SegmentKv, SegmentLimits};

fn put(tree: &dyn KvTree, key: u32, value: &[u8]) {
    let mut batch = Batch::default();
    batch.put(key.to_be_bytes().to_vec(), value.to_vec());
    tree.write(batch).unwrap();
}

fn delete_below(tree: &dyn KvTree, below: u32) {
    let mut batch = Batch::default();
    for (key, _) in tree.scan(&0u32.to_be_bytes(), &below.to_be_bytes(), usize::MAX).unwrap() {
        batch.delete(key);
    }
    if !batch.is_empty() {
        tree.write(batch).unwrap();
    }
}

fn keys(tree: &dyn KvTree) -> Vec<u32> {
    tree.scan(&[], &[0xff; 8], usize::MAX)
        .unwrap()
        .into_iter()
        .map(|(k, _)| u32::from_be_bytes(k.try_into().unwrap()))
        .collect()
}

fn value(n: u32) -> Vec<u8> {
    format!("value {n} ").repeat(1 + n as usize % 7).into_bytes()
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

fn small() -> SegmentLimits {
    SegmentLimits { segment_bytes: 4_096, segments_before_copying: 3 }
}

#[tokio::test]
async fn flushed_puts_deletes_and_dropped_trees_are_found_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let kv = SegmentKv::open(dir.path()).unwrap();
        let (a, b, c) = (kv.tree("a").unwrap(), kv.tree("b").unwrap(), kv.tree("c").unwrap());
        for n in 0..100 {
            put(a.as_ref(), n, &value(n));
            put(b.as_ref(), n, &value(n + 1));
        }
        put(c.as_ref(), 7, b"dropped");
        put(a.as_ref(), 5, b"overwritten");
        delete_below(a.as_ref(), 3);
        kv.drop_tree("c").unwrap();
        assert_eq!(a.get(&5u32.to_be_bytes()).unwrap().unwrap(), b"overwritten", "visible before any flush");
        flushed(kv.as_ref()).await.unwrap();
    }
    let kv = SegmentKv::open(dir.path()).unwrap();
    assert_eq!(kv.tree_names().unwrap(), vec!["a".to_owned(), "b".to_owned()]);
    let (a, b) = (kv.tree("a").unwrap(), kv.tree("b").unwrap());
    assert_eq!(keys(a.as_ref()), (3..100).collect::<Vec<_>>());
    assert_eq!(a.get(&5u32.to_be_bytes()).unwrap().unwrap(), b"overwritten");
    let all = b.scan(&[], &[0xff; 8], usize::MAX).unwrap();
    assert_eq!(all.len(), 100);
    for (n, (_, v)) in all.iter().enumerate() {
        assert_eq!(v, &value(n as u32 + 1), "value {n} read back in one run with its neighbours");
    }
    let (k, v) = a.last(&0u32.to_be_bytes(), &50u32.to_be_bytes()).unwrap().unwrap();
    assert_eq!((k, v), (49u32.to_be_bytes().to_vec(), value(49)));
    assert!(kv.tree("c").unwrap().get(&7u32.to_be_bytes()).unwrap().is_none());
}

/// Writes 20 records to tree "t" and flushes; returns the segment file's length after each.
async fn twenty_records(dir: &Path) -> Vec<u64> {
    let kv = SegmentKv::open(dir).unwrap();
    let t = kv.tree("t").unwrap();
    let file = &segment_files(dir)[0];
    let mut ends = Vec::new();
    for n in 0..20 {
        put(t.as_ref(), n, &value(n));
        ends.push(std::fs::metadata(file).unwrap().len());
    }
    flushed(kv.as_ref()).await.unwrap();
    ends
}

#[tokio::test]
async fn a_record_cut_short_at_the_end_is_dropped_and_writing_goes_on() {
    for cut in [3u64, 11, 20] {
        let dir = tempfile::tempdir().unwrap();
        let ends = twenty_records(dir.path()).await;
        let file = &segment_files(dir.path())[0];
        // The last record loses its end: a header cut short (3, 11 bytes kept) or a body (20).
        let f = std::fs::OpenOptions::new().write(true).open(file).unwrap();
        f.set_len(ends[18] + cut).unwrap();
        drop(f);
        let kv = SegmentKv::open(dir.path()).unwrap();
        let t = kv.tree("t").unwrap();
        assert_eq!(keys(t.as_ref()), (0..19).collect::<Vec<_>>(), "cut at {cut}");
        put(t.as_ref(), 100, b"after");
        flushed(kv.as_ref()).await.unwrap();
        drop((t, kv));
        let kv = SegmentKv::open(dir.path()).unwrap();
        let t = kv.tree("t").unwrap();
        assert_eq!(t.get(&100u32.to_be_bytes()).unwrap().unwrap(), b"after");
        assert_eq!(keys(t.as_ref()).len(), 20);
    }
}

#[tokio::test]
async fn zeros_after_the_last_record_are_space_never_written() {
    let dir = tempfile::tempdir().unwrap();
    let ends = twenty_records(dir.path()).await;
    let file = &segment_files(dir.path())[0];
    let f = std::fs::OpenOptions::new().write(true).open(file).unwrap();
    f.set_len(ends[19] + 4_096).unwrap();
    drop(f);
    let kv = SegmentKv::open(dir.path()).unwrap();
    assert_eq!(keys(kv.tree("t").unwrap().as_ref()), (0..20).collect::<Vec<_>>());
    assert_eq!(std::fs::metadata(file).unwrap().len(), ends[19], "the zeros were cut off");
}

#[tokio::test]
async fn a_damaged_record_keeps_the_store_from_opening() {
    // A bit flipped in a record's body, in its header's length, and in the last record (which a
    // crash cannot damage this way: rot never changes a file's length).
    for (record, at) in [(5usize, 20u64), (5, 1), (19, 14)] {
        let dir = tempfile::tempdir().unwrap();
        let ends = twenty_records(dir.path()).await;
        let file = &segment_files(dir.path())[0];
        let mut bytes = std::fs::read(file).unwrap();
        let start = if record == 0 { 0 } else { ends[record - 1] };
        bytes[(start + at) as usize] ^= 0x10;
        std::fs::write(file, &bytes).unwrap();
        let err = SegmentKv::open(dir.path()).err().expect("a damaged log does not open");
        assert!(err.to_string().contains("damaged"), "{err}");
    }
}

#[tokio::test]
async fn dead_segments_are_deleted_and_an_idle_trees_records_move_forward() {
    let dir = tempfile::tempdir().unwrap();
    let mut most = 0;
    {
        let kv = SegmentKv::open_with(dir.path(), small()).unwrap();
        let (busy, idle) = (kv.tree("busy").unwrap(), kv.tree("idle").unwrap());
        put(idle.as_ref(), 1, b"the vote of a group that does nothing else");
        for n in 0..2_000 {
            put(busy.as_ref(), n, &value(n));
            if n % 50 == 49 {
                // Like a log purged behind its snapshot.
                delete_below(busy.as_ref(), n - 20);
                flushed(kv.as_ref()).await.unwrap();
                most = most.max(kv.segment_count());
            }
        }
        assert!(most <= 6, "segments pile up: {most}");
        assert!(segment_files(dir.path()).len() <= 6);
        assert_eq!(idle.get(&1u32.to_be_bytes()).unwrap().unwrap(), b"the vote of a group that does nothing else");
    }
    let kv = SegmentKv::open_with(dir.path(), small()).unwrap();
    let idle = kv.tree("idle").unwrap();
    assert_eq!(idle.get(&1u32.to_be_bytes()).unwrap().unwrap(), b"the vote of a group that does nothing else");
    assert_eq!(keys(kv.tree("busy").unwrap().as_ref()), (1_979..2_000).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_torn_segment_drops_the_segments_written_after_it() {
    let dir = tempfile::tempdir().unwrap();
    {
        let kv = SegmentKv::open_with(dir.path(), SegmentLimits { segment_bytes: 4_096, segments_before_copying: 100 })
            .unwrap();
        let t = kv.tree("t").unwrap();
        for n in 0..200 {
            put(t.as_ref(), n, &value(n));
        }
        flushed(kv.as_ref()).await.unwrap();
    }
    let files = segment_files(dir.path());
    assert!(files.len() >= 3, "{files:?}");
    // The second segment's last write never completed (a crash before any sync covered it):
    // nothing written after it was acknowledged.
    let second = &files[1];
    let len = std::fs::metadata(second).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(second).unwrap();
    f.set_len(len - 5).unwrap();
    drop(f);
    let kv =
        SegmentKv::open_with(dir.path(), SegmentLimits { segment_bytes: 4_096, segments_before_copying: 100 }).unwrap();
    let found = keys(kv.tree("t").unwrap().as_ref());
    assert!(!found.is_empty() && found.len() < 200, "{}", found.len());
    assert_eq!(found, (0..found.len() as u32).collect::<Vec<_>>(), "a prefix of the writes");
    assert_eq!(segment_files(dir.path()).len(), 2);
}

#[test]
fn writes_from_many_threads_share_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let kv: Arc<SegmentKv> = SegmentKv::open(dir.path()).unwrap();
    let threads: Vec<_> = (0..8u32)
        .map(|t| {
            let kv = kv.clone();
            std::thread::spawn(move || {
                let tree = kv.tree(&format!("group/{t}")).unwrap();
                for n in 0..200 {
                    put(tree.as_ref(), n, &value(n));
                    let (tx, rx) = std::sync::mpsc::channel();
                    kv.flush(Box::new(move |r| tx.send(r.map_err(|e| e.to_string())).unwrap()));
                    rx.recv().unwrap().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let stats = kv.flush_stats();
    assert_eq!(stats.requests, 1_600);
    assert!(stats.flushes < stats.requests, "{stats:?}");
}
