//! `deploy/local-cluster.sh rolling-restart` restarts every node of a running cluster in turn
//! while buyers book: no booking fails.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::load::Buyers;
use common::Server;
use serde_json::json;

/// A port with the next `n - 1` free too (the script numbers node ports from the first).
fn free_ports(n: u16) -> u16 {
    loop {
        let first = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if first > u16::MAX - n {
            continue;
        }
        let held: Vec<_> = (first..first + n).filter_map(|p| TcpListener::bind(("127.0.0.1", p)).ok()).collect();
        if held.len() == usize::from(n) {
            return first;
        }
    }
}

struct LocalCluster<'a> {
    dir: &'a Path,
    node_port: u16,
    api_port: u16,
}

impl LocalCluster<'_> {
    fn run(&self, command: &str, extra: &[&str]) -> String {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/local-cluster.sh");
        let output = Command::new("bash")
            .arg(script)
            .arg(command)
            .args(["--dir", &self.dir.display().to_string()])
            .args(extra)
            .env("BOXOFFICE", env!("CARGO_BIN_EXE_boxoffice"))
            .env("BOXOFFICE_NODE_PORT", self.node_port.to_string())
            .env("BOXOFFICE_API_PORT", self.api_port.to_string())
            .env("BOXOFFICE_LOG", "warn,openraft=error")
            .output()
            .expect("run local-cluster.sh");
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "local-cluster.sh {command} failed:\n{text}");
        text
    }
}

impl Drop for LocalCluster<'_> {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(|| self.run("stop", &[]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_restart_under_bookings_fails_none() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cluster");
    let node_port = free_ports(3);
    let api_port = free_ports(1);
    let cluster = LocalCluster { dir: &dir, node_port, api_port };
    cluster.run("start", &["--nodes", "3", "--shards", "2"]);
    let api = Arc::new(Server::attach(&format!("http://127.0.0.1:{api_port}")));
    let admin = api.token("admin", "admin").await;
    let event = api.create_event(&admin, 1, 10, 100_000, json!({})).await;

    let buyers = Buyers::start(&api, &event, 6).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let out = cluster.run("rolling-restart", &[]);
    assert!(out.contains("every node restarted"), "{out}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (confirmed, failures) = buyers.finish().await;
    assert!(confirmed > 0, "no booking was confirmed");
    assert!(failures.is_empty(), "{} bookings failed during the rolling restart: {failures:?}", failures.len());
}
