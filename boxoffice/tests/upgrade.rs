//! Nodes one minor version apart run in one cluster: under bookings, a node is upgraded in
//! place to the next minor version (`boxoffice-next-minor`, this release reporting 0.(n+1).0),
//! a node of that version joins and leads a shard, and a node of the older one is drained, with
//! no failed booking; `cluster status` from either version reads every node.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::cluster::{cli, cli_of, next_minor_exe, RunningCluster};
use common::load::Buyers;
use serde_json::{json, Value};

fn status_json(exe: &str, node: &str) -> Value {
    let text = cli_of(exe, &["cluster", "status", "--json", "--node", node]);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn version_of(status: &Value, id: u64) -> Option<String> {
    let node = status["nodes"].as_array()?.iter().find(|n| n["id"] == id)?;
    node["version"].as_str().map(str::to_owned)
}

fn replicas_of(status: &Value, group: &str) -> Vec<u64> {
    let group = status["groups"].as_array().unwrap().iter().find(|g| g["group"] == group).unwrap();
    group["replicas"].as_array().unwrap().iter().filter_map(Value::as_u64).collect()
}

fn version(exe: &str) -> String {
    let out = std::process::Command::new(exe).arg("--version").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().trim_start_matches("boxoffice ").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_one_minor_version_apart_share_a_cluster_without_failed_bookings() {
    let this = version(env!("CARGO_BIN_EXE_boxoffice"));
    let next = version(next_minor_exe());
    let minor = |v: &str| v.split('.').nth(1).unwrap().parse::<u32>().unwrap();
    assert_eq!(minor(&next), minor(&this) + 1, "the test build is one minor ahead: {this} → {next}");

    let mut cluster = RunningCluster::start(3, 2).await;
    let api = Arc::new(cluster.api());
    let admin = api.token("admin", "admin").await;
    let event = api.create_event(&admin, 1, 10, 100_000, json!({})).await;
    let buyers = Buyers::start(&api, &event, 6).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Node 3 is upgraded in place: the newer version opens the older one's data directory.
    cluster.nodes.get_mut(&3).unwrap().upgrade(next_minor_exe());
    cli(&["cluster", "status", "--node", &cluster.any_node(), "--wait-healthy", "60s"]);

    // A node of the newer version joins; replicas move onto it from leaders of both versions.
    let addr = cluster.start_node_of(next_minor_exe(), 4);
    let out = cli(&["cluster", "add-node", "--node", &cluster.any_node(), "--id", "4", "--addr", &addr, "--wait"]);
    assert!(out.contains('4'), "{out}");
    cli(&["cluster", "status", "--node", &cluster.any_node(), "--wait-healthy", "60s"]);

    // Both versions' CLIs read every node; the report names each node's version.
    for exe in [env!("CARGO_BIN_EXE_boxoffice"), next_minor_exe()] {
        let status = status_json(exe, &cluster.any_node());
        assert_eq!(status["versions"], json!([this, next]), "{status}");
        assert_eq!(version_of(&status, 1).as_deref(), Some(this.as_str()), "{status}");
        assert_eq!(version_of(&status, 3).as_deref(), Some(next.as_str()), "{status}");
        assert_eq!(version_of(&status, 4).as_deref(), Some(next.as_str()), "{status}");
    }

    // A newer node leads shard-0, with followers of the older version.
    let status = status_json(next_minor_exe(), &cluster.any_node());
    let to = [4, 3].into_iter().find(|n| replicas_of(&status, "shard-0").contains(n)).unwrap();
    cluster.transfer_leader("shard-0", to);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // An older node is drained: its replicas move to the others, whatever version leads.
    let node_2 = cluster.nodes[&2].addr.clone();
    cli(&["cluster", "remove-node", "--node", &node_2, "--id", "1", "--wait"]);
    let status = status_json(next_minor_exe(), &node_2);
    for group in ["shard-0", "shard-1"] {
        assert!(!replicas_of(&status, group).contains(&1), "{group} still on node 1: {status}");
    }
    cli(&["cluster", "status", "--node", &node_2, "--wait-healthy", "60s"]);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let (confirmed, failures) = buyers.finish().await;
    assert!(confirmed > 0, "no booking was confirmed");
    assert!(failures.is_empty(), "{} bookings failed across versions: {failures:?}", failures.len());
}
