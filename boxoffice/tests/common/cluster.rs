//! Starts a real cluster: `boxoffice node` processes on free loopback ports, `boxoffice cluster
//! init`, and a `boxoffice api` in front, each with its TLS credential (`tls.rs`). Dropping it
//! kills every process.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use harness::Process;
use std::time::{Duration, Instant};

use super::client;
use super::tls::tls;

pub const SECRET: &str = "test-cluster-secret-0123456789";
pub const JWT: &str = "test-jwt-key-0123456789-0123456789abcdef";
pub const QUEUE: &str = "test-queue-key-0123456789-0123456789abcdef";
const START_TIMEOUT: Duration = Duration::from_secs(60);

fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_boxoffice")
}

/// The test build that reports the next minor version (`src/next_minor.rs`).
pub fn next_minor_exe() -> &'static str {
    env!("CARGO_BIN_EXE_boxoffice-next-minor")
}

/// Spawns `boxoffice ARGS` and waits for its address line, which starts with `prefix`; returns
/// the process and the address.
fn spawn(args: &[String], prefix: &str) -> (Process, String) {
    spawn_exe(exe(), args, prefix)
}

fn spawn_exe(exe: &str, args: &[String], prefix: &str) -> (Process, String) {
    let mut command = Command::new(exe);
    command.args(args).env("BOXOFFICE_LOG", "warn,openraft=error").stderr(Stdio::inherit());
    harness::spawn_announced(command, "boxoffice", prefix, START_TIMEOUT).expect("boxoffice printed its address")
}

/// Spawns `boxoffice api` with dev tokens in front of the nodes at `node_addrs` (comma-separated);
/// returns the process and its URL.
fn spawn_api(node_addrs: &str, extra: &[&str]) -> (Process, String) {
    let tls_dir = tls().api();
    let args = [
        "api",
        "--sandbox-payments",
        "--listen",
        "127.0.0.1:0",
        "--nodes",
        node_addrs,
        "--cluster-secret",
        SECRET,
        "--jwt-secret",
        JWT,
    ]
    .iter()
    .chain(&["--queue-secret", QUEUE, "--tls-dir", &tls_dir])
    .chain(&["--dev-tokens"])
    .chain(extra)
    .map(|s| s.to_string())
    .collect::<Vec<_>>();
    spawn(&args, "boxoffice: api listening on ")
}

pub struct NodeProc {
    pub id: u64,
    pub addr: String,
    dir: PathBuf,
    process: Option<Process>,
    exe: &'static str,
}

impl NodeProc {
    fn start(id: u64, dir: PathBuf, listen: &str) -> NodeProc {
        NodeProc::start_exe(exe(), id, dir, listen)
    }

    fn start_exe(exe: &'static str, id: u64, dir: PathBuf, listen: &str) -> NodeProc {
        let args = vec![
            "node".into(),
            "--id".into(),
            id.to_string(),
            "--listen".into(),
            listen.into(),
            "--data-dir".into(),
            dir.display().to_string(),
            "--cluster-secret".into(),
            SECRET.into(),
            "--tls-dir".into(),
            tls().node(),
        ];
        let (process, addr) = spawn_exe(exe, &args, &format!("boxoffice: node {id} listening on "));
        NodeProc { id, addr, dir, process: Some(process), exe }
    }

    pub fn kill9(&mut self) {
        self.process = None;
    }

    /// SIGTERM: the node hands its leaderships over and stops.
    pub fn terminate(&self) {
        let pid = self.process.as_ref().and_then(|p| p.id()).and_then(|id| i32::try_from(id).ok());
        if let Some(pid) = pid.and_then(rustix::process::Pid::from_raw) {
            rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM sent");
        }
    }

    /// Whether the process has exited (after `terminate`).
    pub fn has_exited(&mut self) -> bool {
        self.process.as_mut().is_none_or(|p| !p.is_running())
    }

    /// Starts the node again on the same address and data directory.
    pub fn restart(&mut self) {
        self.kill9();
        let again = NodeProc::start_exe(self.exe, self.id, self.dir.clone(), &self.addr);
        *self = again;
    }

    /// Asks the node to stop (SIGTERM: it hands its leaderships over), waits for it to exit, and
    /// starts `exe` on the same address and data directory: an upgrade in place.
    pub fn upgrade(&mut self, exe: &'static str) {
        self.terminate();
        let asked = Instant::now();
        while !self.has_exited() {
            assert!(asked.elapsed() < START_TIMEOUT, "node {} did not stop", self.id);
            std::thread::sleep(Duration::from_millis(50));
        }
        *self = NodeProc::start_exe(exe, self.id, self.dir.clone(), &self.addr);
    }

    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }
}

pub struct RunningCluster {
    pub nodes: BTreeMap<u64, NodeProc>,
    pub api_url: String,
    api: Option<Process>,
    pub shards: u32,
    tmp: tempfile::TempDir,
    pub http: reqwest::Client,
    extra_apis: Vec<Process>,
}

impl RunningCluster {
    /// `n` nodes, initialized with `shards` shards and replication min(3, n), and one api.
    pub async fn start(n: u64, shards: u32) -> RunningCluster {
        let tmp = tempfile::tempdir().expect("temp dir");
        let mut nodes = BTreeMap::new();
        for id in 1..=n {
            nodes.insert(id, NodeProc::start(id, tmp.path().join(format!("n{id}")), "127.0.0.1:0"));
        }
        let list: Vec<String> = nodes.values().map(|p| format!("{}={}", p.id, p.addr)).collect();
        let first = nodes[&1].addr.clone();
        let replication = n.min(3).to_string();
        cli(&[
            "cluster",
            "init",
            "--node",
            &first,
            "--nodes",
            &list.join(","),
            "--shards",
            &shards.to_string(),
            "--replication",
            &replication,
        ]);
        let addrs: Vec<String> = nodes.values().map(|p| p.addr.clone()).collect();
        let (api, api_url) = spawn_api(&addrs.join(","), &[]);
        let cluster =
            RunningCluster { nodes, api_url, api: Some(api), shards, tmp, http: client(), extra_apis: Vec::new() };
        cluster.wait_ready().await;
        cluster
    }

    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(r) = self.http.get(format!("{}/readyz", self.api_url)).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "cluster not ready in time");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Starts one more node process (not yet part of the cluster).
    pub fn start_node(&mut self, id: u64) -> String {
        self.start_node_of(exe(), id)
    }

    /// [`RunningCluster::start_node`] with another build of the binary.
    pub fn start_node_of(&mut self, exe: &'static str, id: u64) -> String {
        let node = NodeProc::start_exe(exe, id, self.tmp.path().join(format!("n{id}")), "127.0.0.1:0");
        let addr = node.addr.clone();
        self.nodes.insert(id, node);
        addr
    }

    /// A running node's address, to send operator commands to.
    pub fn any_node(&self) -> String {
        self.nodes.values().find(|n| n.is_running()).expect("a running node").addr.clone()
    }

    pub fn status(&self) -> String {
        cli(&["cluster", "status", "--node", &self.any_node()])
    }

    /// `cluster transfer-leader` of `group` to node `to`; insists that `to` leads it after.
    pub fn transfer_leader(&self, group: &str, to: u64) {
        let to = to.to_string();
        let out = cli(&["cluster", "transfer-leader", "--node", &self.any_node(), "--group", group, "--to", &to]);
        assert!(out.contains(&format!("node {to} leads {group}")), "{out}");
    }

    /// Leader of a group as `cluster status` shows it.
    pub fn leader_of(&self, group: &str) -> Option<u64> {
        let status = self.status();
        let line = status.lines().find(|l| l.split_whitespace().next() == Some(group))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    pub fn api(&self) -> super::Server {
        super::Server::attach(&self.api_url)
    }

    fn node_addrs(&self) -> String {
        self.nodes.values().map(|n| n.addr.clone()).collect::<Vec<_>>().join(",")
    }

    /// Starts a `boxoffice indexer` on `listen` with its own data directory.
    pub fn start_indexer(&self, listen: &str) -> IndexerProc {
        let dir = self.tmp.path().join("indexer");
        let args: Vec<String> =
            ["indexer", "--listen", listen, "--nodes", &self.node_addrs(), "--cluster-secret", SECRET, "--data-dir"]
                .iter()
                .map(|s| s.to_string())
                .chain([dir.display().to_string(), "--tls-dir".into(), tls().indexer()])
                .collect();
        let (process, url) = spawn(&args, "boxoffice: indexer listening on ");
        IndexerProc { process: Some(process), url }
    }

    /// Starts another api, with extra arguments (say `--search-url`), and waits until it is ready.
    pub async fn start_api(&mut self, extra: &[&str]) -> super::Server {
        let (process, url) = spawn_api(&self.node_addrs(), extra);
        self.extra_apis.push(process);
        let server = super::Server::attach(&url);
        let deadline = Instant::now() + START_TIMEOUT;
        while server.get("/readyz", None).await.0 != 200 {
            assert!(Instant::now() < deadline, "api not ready in time");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server
    }
}

pub struct IndexerProc {
    process: Option<Process>,
    pub url: String,
}

impl IndexerProc {
    pub fn kill9(&mut self) {
        self.process = None;
    }
}

impl Drop for RunningCluster {
    fn drop(&mut self) {
        // The apis before the nodes (fields drop in declaration order, nodes first).
        self.api = None;
        self.extra_apis.clear();
    }
}

/// Runs `boxoffice ARGS --cluster-secret SECRET` with the operator's credential, insists on
/// success, returns its stdout.
pub fn cli(args: &[&str]) -> String {
    cli_of(exe(), args)
}

/// [`cli`] with another build of the binary.
pub fn cli_of(exe: &str, args: &[&str]) -> String {
    let output = Command::new(exe)
        .args(args)
        .args(["--cluster-secret", SECRET, "--tls-dir", &tls().operator()])
        .env("BOXOFFICE_LOG", "warn,openraft=error")
        .output()
        .expect("run boxoffice cluster");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "boxoffice {args:?} failed: {stdout}{}", String::from_utf8_lossy(&output.stderr));
    stdout
}
