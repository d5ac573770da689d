//! Leadership moves without failed bookings: an operator's `cluster transfer-leader`, and a node
//! that is asked to stop (SIGTERM) handing its groups over before it exits; `cluster status
//! --json` shows where everything is.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::{cli, RunningCluster};
use common::load::Buyers;
use serde_json::{json, Value};

fn status_json(cluster: &RunningCluster) -> Value {
    let text = cli(&["cluster", "status", "--json", "--node", &cluster.any_node()]);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn leader_in(status: &Value, group: &str) -> Option<u64> {
    status["groups"].as_array()?.iter().find(|g| g["group"] == group)?["leader"].as_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leadership_moves_by_command_and_at_shutdown_without_failed_bookings() {
    let mut cluster = RunningCluster::start(3, 1).await;
    let api = Arc::new(cluster.api());
    let admin = api.token("admin", "admin").await;
    let event = api.create_event(&admin, 1, 10, 100_000, json!({})).await;

    // The report names every node (with its disk, once sampled) and each group's leader.
    let status = status_json(&cluster);
    assert_eq!(status["nodes"].as_array().unwrap().len(), 3, "{status}");
    assert!(status["nodes"].as_array().unwrap().iter().all(|n| n["reachable"] == true), "{status}");
    let disk = &status["nodes"][0]["disk"];
    assert!(disk["total_bytes"].as_u64().unwrap_or(0) > 0 && disk["free_bytes"].is_u64(), "{status}");
    let leader = leader_in(&status, "shard-0").expect("shard-0 has a leader");

    let buyers = Buyers::start(&api, &event, 6).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The operator moves shard-0's leadership to another replica.
    let to = if leader == 1 { 2 } else { 1 };
    cluster.transfer_leader("shard-0", to);
    assert_eq!(leader_in(&status_json(&cluster), "shard-0"), Some(to));
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The node leading shard-0 now is asked to stop: it hands its groups over, then exits.
    let stopping = to;
    let asked = Instant::now();
    cluster.nodes[&stopping].terminate();
    let node = cluster.nodes.get_mut(&stopping).unwrap();
    while !node.has_exited() {
        assert!(asked.elapsed() < Duration::from_secs(30), "node {stopping} did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = status_json(&cluster);
    let new_leader = leader_in(&status, "shard-0");
    assert!(
        new_leader.is_some_and(|l| l != stopping),
        "shard-0 led by {new_leader:?} after node {stopping} stopped: {status}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    let (confirmed, failures) = buyers.finish().await;
    assert!(confirmed > 0, "no booking was confirmed");
    assert!(failures.is_empty(), "{} bookings failed while leadership moved: {failures:?}", failures.len());
}
