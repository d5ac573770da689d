//! A node whose copy of a group is damaged on disk starts its other groups, reports the damaged
//! one (cluster status, /readyz, a metric) and keeps it stopped; bookings go on through the other
//! replicas, and `boxoffice cluster repair` rebuilds the copy from them.
#![allow(clippy::unwrap_used)]

mod common;
mod seasons;

use std::time::Duration;

use common::eventually;
use raft_store::{shard_of, EventId, GroupId, Kv};
use seasons::{run, Cluster};
use serde_json::json;

const SHARDS: u32 = 2;

/// Flips a byte in the middle of `group`'s snapshot record in the node's database (the node is
/// down). Panics if the group has no snapshot there.
async fn damage_snapshot(data_dir: &std::path::Path, group: GroupId) {
    let kv = raft_store::FjallKv::open(&data_dir.join("state"), 16 << 20).unwrap();
    let tree = kv.tree(&raft_store::group_tree(group)).unwrap();
    let mut record = tree.get(&[raft_store::SNAPSHOT_KEY]).unwrap().expect("the group has a snapshot on disk");
    let at = record.len() / 2;
    record[at] ^= 0x40;
    let mut batch = raft_store::Batch::default();
    batch.put(vec![raft_store::SNAPSHOT_KEY], record);
    tree.write(batch).unwrap();
    raft_store::flushed(kv.as_ref()).await.unwrap();
}

/// The body of a GET to a node's HTTP side.
async fn get(api: &common::Server, url: &str) -> String {
    api.http.get(url).send().await.unwrap().text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_with_a_damaged_snapshot_starts_its_other_groups_reports_it_and_is_repaired() {
    common::install_crypto_provider();
    let tmp = tempfile::tempdir().unwrap();
    let shards = SHARDS.to_string();
    // Each group snapshots after 1 to 2 times this many entries (spread by group id): at most
    // 19 here, which the 40 holds below reach on either shard.
    let extra = ["--snapshot-every-logs", "10"];
    let mut cluster = Cluster::start(tmp.path(), &[1, 2, 3], &extra, &["--shards", &shards]).await;
    let api = &cluster.api;
    let admin = api.token("admin", "admin").await;
    let event = api.create_event(&admin, 4, 20, 10, json!({})).await;
    let group = GroupId::shard(shard_of(&EventId::parse(&event).unwrap(), SHARDS));
    let alice = api.token("alice", "user").await;
    // Enough entries for every replica to build a snapshot of the event's shard, from two
    // buyers (one may hold at most 20 seats at once).
    let bob = api.token("bob", "user").await;
    for n in 1..=40 {
        let buyer = if n % 2 == 0 { &alice } else { &bob };
        let (status, body) = api
            .call(
                "POST",
                &format!("/v1/events/{event}/holds"),
                Some(buyer),
                Some(json!({"seats": [format!("FLOOR-A-{}", n % 20 + 1)]})),
                None,
            )
            .await;
        assert!(status == 201 || status == 409, "{status} {body}");
    }
    eventually(Duration::from_secs(30), "the replicas to apply the holds", || async {
        let status = cluster.status();
        let row = status.lines().find(|l| l.starts_with(&group.to_string()))?.to_owned();
        (row.contains("n1:0") || row.contains("n2:0") || row.contains("n3:0")).then_some(())
    })
    .await;
    // Node 2 has built its snapshot of the event's shard (the copy damaged below).
    let node2 = cluster.nodes[&2].addr.clone();
    let snapshot_line = format!("boxoffice_raft_snapshot_index{{group=\"{group}\"}} ");
    eventually(Duration::from_secs(30), "node 2's snapshot of the event's shard", || async {
        let metrics = get(api, &format!("http://{node2}/metrics")).await;
        let index = metrics.lines().find_map(|l| l.strip_prefix(snapshot_line.as_str()))?.trim().parse::<f64>().ok()?;
        (index > 0.0).then_some(())
    })
    .await;

    // Node 2 goes down; its snapshot of the event's shard rots; it comes back.
    cluster.nodes.get_mut(&2).unwrap().kill9();
    damage_snapshot(&cluster.nodes[&2].dir.clone(), group).await;
    cluster.nodes.get_mut(&2).unwrap().restart();
    let addr = cluster.nodes[&2].addr.clone();

    let status = eventually(Duration::from_secs(30), "the damaged copy in cluster status", || async {
        let status = cluster.status();
        status.contains("DAMAGED").then_some(status)
    })
    .await;
    assert!(status.contains(&format!("node 2 {group}")), "{status}");
    let ready: serde_json::Value = get(api, &format!("http://{addr}/readyz")).await.parse().unwrap();
    assert_eq!(ready["damaged"][0]["group"], group.to_string(), "{ready}");
    let metrics = get(api, &format!("http://{addr}/metrics")).await;
    assert!(metrics.lines().any(|l| l.starts_with("boxoffice_damaged_groups 1")), "{metrics}");
    // Node 2 serves its other groups (the meta group, the other shard)…
    let other = GroupId::shard(1 - group.as_shard().unwrap());
    for g in [GroupId::META, other] {
        let row = status.lines().find(|l| l.starts_with(&format!("{g} "))).unwrap();
        assert!(row.contains("n2:") || row.split_whitespace().nth(1) == Some("2"), "node 2 runs {g}: {row}");
    }
    // …and bookings of the damaged group go on through the other two.
    let (status, body) = api
        .call("POST", &format!("/v1/events/{event}/holds"), Some(&alice), Some(json!({"seats": ["FLOOR-D-1"]})), None)
        .await;
    assert_eq!(status, 201, "{body}");

    // The operator rebuilds the copy from the other replicas.
    let group_name = group.to_string();
    let (ok, text) =
        run(&["cluster", "repair", "--node", &cluster.any_node(), "--id", "2", "--group", &group_name]).await;
    assert!(ok, "repair failed: {text}");
    eventually(Duration::from_secs(60), "node 2's copy rebuilt and caught up", || async {
        let status = cluster.status();
        let row = status.lines().find(|l| l.starts_with(&format!("{group_name} ")))?.to_owned();
        let caught_up = row.contains("n2:0") || row.split_whitespace().nth(1) == Some("2");
        (!status.contains("DAMAGED") && caught_up).then_some(())
    })
    .await;
    // Node 2 is a working voter again: with node 1 gone, the group needs it for a quorum.
    cluster.nodes.get_mut(&1).unwrap().kill9();
    let (status, seats) = eventually(Duration::from_secs(60), "the seat map with node 1 down", || async {
        let (status, seats) = api.get(&format!("/v1/events/{event}/seats"), None).await;
        (status == 200).then_some((status, seats))
    })
    .await;
    assert_eq!(status, 200);
    let held = seats["seats"].as_array().unwrap().iter().filter(|s| s["status"] == "held").count();
    assert_eq!(held, 21, "20 seats of row A and FLOOR-D-1");
}
