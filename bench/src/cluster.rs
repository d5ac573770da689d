//! A cluster the bench starts and owns: `boxoffice node` processes on free loopback ports with
//! their own data directories, created with `boxoffice cluster init`, and one `boxoffice api` in
//! front, and on request a `boxoffice indexer` that the api sends its searches to. Scenarios can
//! kill a node with SIGKILL and start it again on the same address and data.
//! Every child is killed when the cluster is dropped.
//!
//! Every connection between the processes is mutual TLS: the cluster gets its own CA and a
//! credential per role (`boxoffice certs init` and `issue`, under its directory's `tls/`), and
//! each process is started with its role's `--tls-dir`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use harness::Process;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rand::Rng;

use crate::error::TargetError;

/// Most nodes a bench cluster has: every one shares this machine's cores and disk.
pub const CLUSTER_NODES_MAX: usize = 9;
/// Replicas of each shard: a majority of three survives one lost node.
const REPLICATION_MAX: usize = 3;
/// How long a process may take to print its address line.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Length of the generated cluster secret and keys, in hex digits (the api wants ≥ 32 bytes).
const SECRET_HEX_LEN: usize = 32;
/// Log filter of the children: their logs go to files, and only trouble is worth the disk.
const CHILD_LOG_FILTER: &str = "warn";
/// The roles of the cluster's processes, each with a credential directory under `tls/`.
const ROLES: [&str; 4] = ["node", "api", "indexer", "operator"];

/// One row of `boxoffice cluster status`'s group table.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupRow {
    pub group: String,
    pub leader: Option<u64>,
    pub term: Option<u64>,
    /// (follower id, entries behind the leader).
    pub lag_entries: Vec<(u64, u64)>,
}

struct NodeProcess {
    id: u64,
    /// Where it listens and peers reach it; fixed at the first start, reused by restarts.
    addr: String,
    data_dir: PathBuf,
    log: PathBuf,
    /// `None` while the node is down.
    process: Option<Process>,
}

pub struct ClusterProcesses {
    exe: PathBuf,
    secret: String,
    shard_count: u32,
    nodes: Mutex<Vec<NodeProcess>>,
    api: Mutex<Option<Process>>,
    indexer: Mutex<Option<Process>>,
    root: Mutex<Option<tempfile::TempDir>>,
    root_path: PathBuf,
    keep_files: AtomicBool,
}

fn spawn_error(e: impl std::fmt::Display) -> TargetError {
    TargetError::Spawn(e.to_string())
}

fn random_hex(len: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..len).map(|_| char::from_digit(rng.gen_range(0..16), 16).unwrap_or('0')).collect()
}

/// Starts `command` and waits for its address line (see [`harness::spawn_announced`]), off the
/// async threads.
pub(crate) async fn spawn_until_announced(
    command: Command,
    what: &str,
    prefix: &str,
) -> Result<(Process, String), TargetError> {
    let (what, prefix) = (what.to_owned(), prefix.to_owned());
    let spawned = tokio::task::spawn_blocking(move || harness::spawn_announced(command, &what, &prefix, START_TIMEOUT));
    Ok(spawned.await.map_err(spawn_error)??)
}

/// Runs a short `boxoffice` command to completion off the async threads; returns its stdout.
async fn run_to_end(command: Command, what: &str) -> Result<String, TargetError> {
    let what = what.to_owned();
    Ok(tokio::task::spawn_blocking(move || harness::run_to_end(command, &what)).await.map_err(spawn_error)??)
}

/// Whether a started cluster answers searches.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Search {
    /// `GET /v1/search` answers 503: nothing indexes the change feed.
    Off,
    /// One `boxoffice indexer` follows the feed into its embedded index; the api asks it.
    Indexer,
}

impl ClusterProcesses {
    /// Starts `nodes` nodes, creates the cluster (`shards` shards, replication min(3, nodes)) and
    /// starts one api with dev tokens and `extra_api_args`. Returns the cluster and the api's URL;
    /// the api may not be ready yet.
    pub async fn start(
        exe: &Path,
        nodes: usize,
        shards: u32,
        extra_api_args: &[&str],
    ) -> Result<(ClusterProcesses, String), TargetError> {
        ClusterProcesses::start_with(exe, nodes, shards, extra_api_args, Search::Off).await
    }

    /// As [`ClusterProcesses::start`], plus a `boxoffice indexer` (embedded index, its own data
    /// directory) that the api answers `GET /v1/search` through (`--search-url`).
    pub async fn start_searchable(
        exe: &Path,
        nodes: usize,
        shards: u32,
        extra_api_args: &[&str],
    ) -> Result<(ClusterProcesses, String), TargetError> {
        ClusterProcesses::start_with(exe, nodes, shards, extra_api_args, Search::Indexer).await
    }

    async fn start_with(
        exe: &Path,
        nodes: usize,
        shards: u32,
        extra_api_args: &[&str],
        search: Search,
    ) -> Result<(ClusterProcesses, String), TargetError> {
        if !(1..=CLUSTER_NODES_MAX).contains(&nodes) {
            return Err(spawn_error(format!("a bench cluster has 1 to {CLUSTER_NODES_MAX} nodes, not {nodes}")));
        }
        let root = tempfile::Builder::new().prefix("boxoffice-bench-").tempdir().map_err(spawn_error)?;
        let cluster = ClusterProcesses {
            exe: exe.to_owned(),
            secret: random_hex(SECRET_HEX_LEN),
            shard_count: shards,
            nodes: Mutex::new(Vec::new()),
            api: Mutex::new(None),
            indexer: Mutex::new(None),
            root_path: root.path().to_owned(),
            root: Mutex::new(Some(root)),
            keep_files: AtomicBool::new(false),
        };
        cluster.make_credentials().await?;
        // Ids start at 1; each node is started on port 0 and keeps the port it was given.
        for id in 1..=nodes as u64 {
            let data_dir = cluster.root_path.join(format!("node-{id}"));
            let log = cluster.root_path.join(format!("node-{id}.log"));
            let (process, addr) = cluster.spawn_node(id, "127.0.0.1:0", &data_dir, &log).await?;
            lock(&cluster.nodes).push(NodeProcess { id, addr, data_dir, log, process: Some(process) });
        }
        let addrs = cluster.node_addrs();
        let members: Vec<String> = addrs.iter().map(|(id, addr)| format!("{id}={addr}")).collect();
        let mut init = cluster.operator_command();
        init.args(["cluster", "init", "--node", &addrs[0].1, "--nodes", &members.join(",")]).args([
            "--shards",
            &shards.to_string(),
            "--replication",
            &nodes.min(REPLICATION_MAX).to_string(),
        ]);
        run_to_end(init, "boxoffice cluster init").await?;

        let mut api_args = extra_api_args.to_vec();
        let search_url = match search {
            Search::Off => None,
            Search::Indexer => Some(cluster.spawn_indexer(&addrs).await?),
        };
        if let Some(url) = &search_url {
            api_args.extend(["--search-url", url]);
        }
        let url = cluster.spawn_api(&addrs, &api_args).await?;
        Ok((cluster, url))
    }

    /// The cluster's CA and a credential for each role (nodes and the indexer on loopback).
    async fn make_credentials(&self) -> Result<(), TargetError> {
        let mut init = self.command();
        init.args(["certs", "init", "--ca-dir"]).arg(self.root_path.join("tls").join("ca"));
        run_to_end(init, "boxoffice certs init").await?;
        for role in ROLES {
            let mut issue = self.command();
            issue
                .args(["certs", "issue", "--ca-dir"])
                .arg(self.root_path.join("tls").join("ca"))
                .args(["--role", role, "--name", &format!("bench-{role}"), "--host", "127.0.0.1", "--out"])
                .arg(self.tls_dir(role));
            run_to_end(issue, "boxoffice certs issue").await?;
        }
        Ok(())
    }

    /// The `--tls-dir` of the cluster's processes of `role`.
    fn tls_dir(&self, role: &str) -> PathBuf {
        self.root_path.join("tls").join(role)
    }

    /// An operator's `boxoffice` command: the cluster secret and the operator's credential.
    fn operator_command(&self) -> Command {
        let mut command = self.command();
        command.env("BOXOFFICE_TLS_DIR", self.tls_dir("operator"));
        command
    }

    /// Starts the indexer; returns the URL it answers the api's searches on.
    async fn spawn_indexer(&self, addrs: &[(u64, String)]) -> Result<String, TargetError> {
        let nodes: Vec<&str> = addrs.iter().map(|(_, a)| a.as_str()).collect();
        let stderr = File::create(self.root_path.join("indexer.log")).map_err(spawn_error)?;
        let mut command = self.command();
        command
            .args(["indexer", "--listen", "127.0.0.1:0", "--nodes", &nodes.join(","), "--data-dir"])
            .arg(self.root_path.join("indexer"))
            .arg("--tls-dir")
            .arg(self.tls_dir("indexer"))
            .stderr(stderr);
        let (process, url) = spawn_until_announced(command, "the indexer", "boxoffice: indexer listening on ").await?;
        *lock(&self.indexer) = Some(process);
        Ok(url)
    }

    /// Whether a `boxoffice indexer` answers the api's searches.
    pub fn has_indexer(&self) -> bool {
        lock(&self.indexer).is_some()
    }

    /// A `boxoffice` command that knows the cluster secret (through the environment, not argv).
    /// Children log at `CHILD_LOG_FILTER` unless `BOXOFFICE_LOG` asks for more.
    fn command(&self) -> Command {
        let mut command = Command::new(&self.exe);
        command.env("BOXOFFICE_CLUSTER_SECRET", &self.secret);
        if std::env::var_os("BOXOFFICE_LOG").is_none() {
            command.env("BOXOFFICE_LOG", CHILD_LOG_FILTER);
        }
        command
    }

    async fn spawn_node(
        &self,
        id: u64,
        listen: &str,
        data_dir: &Path,
        log: &Path,
    ) -> Result<(Process, String), TargetError> {
        // Appending: a restarted node's log follows its first life's.
        let stderr = File::options().create(true).append(true).open(log).map_err(spawn_error)?;
        let mut command = self.command();
        command
            .args(["node", "--id", &id.to_string(), "--listen", listen, "--data-dir"])
            .arg(data_dir)
            .arg("--tls-dir")
            .arg(self.tls_dir("node"))
            .stderr(stderr);
        let what = format!("node {id}");
        spawn_until_announced(command, &what, &format!("boxoffice: node {id} listening on ")).await
    }

    async fn spawn_api(&self, addrs: &[(u64, String)], extra_api_args: &[&str]) -> Result<String, TargetError> {
        let nodes: Vec<&str> = addrs.iter().map(|(_, a)| a.as_str()).collect();
        let stderr = File::create(self.root_path.join("api.log")).map_err(spawn_error)?;
        let mut command = self.command();
        command
            .env("BOXOFFICE_JWT_SECRET", random_hex(SECRET_HEX_LEN))
            .env("BOXOFFICE_QUEUE_SECRET", random_hex(SECRET_HEX_LEN))
            .args(["api", "--sandbox-payments", "--listen", "127.0.0.1:0", "--dev-tokens", "--nodes", &nodes.join(",")])
            .arg("--tls-dir")
            .arg(self.tls_dir("api"))
            .args(extra_api_args)
            .stderr(stderr);
        let (process, url) = spawn_until_announced(command, "the api", "boxoffice: api listening on ").await?;
        *lock(&self.api) = Some(process);
        Ok(url)
    }

    pub fn shard_count(&self) -> u32 {
        self.shard_count
    }

    /// (id, address) of every node, running or not.
    pub fn node_addrs(&self) -> Vec<(u64, String)> {
        lock(&self.nodes).iter().map(|n| (n.id, n.addr.clone())).collect()
    }

    /// The directory holding the nodes' data and every child's log.
    pub fn files(&self) -> &Path {
        &self.root_path
    }

    /// Keeps the data and logs on disk when the cluster is dropped (to look at after a failure).
    pub fn keep_files(&self) {
        self.keep_files.store(true, Ordering::Relaxed);
    }

    /// SIGKILL: no shutdown, no final flush, as a power cut would leave it.
    pub fn kill9(&self, id: u64) -> Result<(), TargetError> {
        let mut nodes = lock(&self.nodes);
        let node = nodes.iter_mut().find(|n| n.id == id).ok_or_else(|| spawn_error(format!("no node {id}")))?;
        let mut process = node.process.take().ok_or_else(|| spawn_error(format!("node {id} is not running")))?;
        process.kill();
        Ok(())
    }

    /// Starts a node that was killed again, on its address and data directory.
    pub async fn restart(&self, id: u64) -> Result<(), TargetError> {
        let (addr, data_dir, log) = {
            let nodes = lock(&self.nodes);
            let node = nodes.iter().find(|n| n.id == id).ok_or_else(|| spawn_error(format!("no node {id}")))?;
            if node.process.is_some() {
                return Err(spawn_error(format!("node {id} is running")));
            }
            (node.addr.clone(), node.data_dir.clone(), node.log.clone())
        };
        // The address was given by the kernel for port 0; binding it again works because the old
        // listener died with its process. Linux prefers odd ports for port-0 binds and even ones
        // for outgoing connections, so a client socket is unlikely to have taken it meanwhile; if
        // one has, the node cannot listen and this says so.
        let (process, bound) = self.spawn_node(id, &addr, &data_dir, &log).await?;
        if bound != addr {
            return Err(spawn_error(format!("node {id} came back on {bound}, not {addr}")));
        }
        if let Some(node) = lock(&self.nodes).iter_mut().find(|n| n.id == id) {
            node.process = Some(process);
        }
        Ok(())
    }

    /// `boxoffice cluster status`, asked of the first node that runs.
    pub async fn status(&self) -> Result<String, TargetError> {
        let addr = lock(&self.nodes).iter().find(|n| n.process.is_some()).map(|n| n.addr.clone());
        let addr = addr.ok_or_else(|| spawn_error("no node is running"))?;
        let mut command = self.operator_command();
        command.args(["cluster", "status", "--node", &addr]);
        run_to_end(command, "boxoffice cluster status").await
    }

    /// Starts one more node (the next id, a free port, a fresh data directory), not yet part of
    /// the cluster; returns its id and address.
    pub async fn start_node(&self) -> Result<(u64, String), TargetError> {
        let id = lock(&self.nodes).iter().map(|n| n.id).max().unwrap_or(0) + 1;
        let data_dir = self.root_path.join(format!("node-{id}"));
        let log = self.root_path.join(format!("node-{id}.log"));
        let (process, addr) = self.spawn_node(id, "127.0.0.1:0", &data_dir, &log).await?;
        lock(&self.nodes).push(NodeProcess { id, addr: addr.clone(), data_dir, log, process: Some(process) });
        Ok((id, addr))
    }

    /// Runs `boxoffice ARGS` as the operator (the cluster's secret and the operator's
    /// credential) to completion; returns its stdout.
    pub async fn cli(&self, args: &[&str]) -> Result<String, TargetError> {
        let mut command = self.operator_command();
        command.args(args);
        run_to_end(command, &format!("boxoffice {}", args.iter().take(2).copied().collect::<Vec<_>>().join(" "))).await
    }

    /// The status table's row of `group` (`meta`, `shard-3`).
    pub async fn group_row(&self, group: &str) -> Result<GroupRow, TargetError> {
        let status = self.status().await?;
        status
            .lines()
            .find_map(|line| parse_group_row(line).filter(|row| row.group == group))
            .ok_or_else(|| spawn_error(format!("cluster status has no row for {group}:\n{status}")))
    }
}

/// Parses `shard-3    2       1       [1, 2, 3]                 5 n1:0 n3:0`; `None` for any
/// other line. The leader and term are `-` while a group has none.
pub fn parse_group_row(line: &str) -> Option<GroupRow> {
    let mut words = line.split_whitespace();
    let group = words.next()?;
    if group != "meta" && !group.starts_with("shard-") {
        return None;
    }
    let leader = words.next()?;
    let term = words.next()?;
    // The replica list is `[1, 2, 3]`: skip to the word that closes it, then the applied index.
    words.by_ref().find(|w| w.ends_with(']'))?;
    words.next()?;
    let lag_entries = words
        .filter_map(|w| {
            let (id, lag) = w.strip_prefix('n')?.split_once(':')?;
            Some((id.parse().ok()?, lag.parse().ok()?))
        })
        .collect();
    Some(GroupRow { group: group.to_owned(), leader: leader.parse().ok(), term: term.parse().ok(), lag_entries })
}

/// A poisoned lock only means another thread panicked mid-update of a child handle; the handles
/// themselves are still the ones to kill, so carry on with them.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Drop for ClusterProcesses {
    fn drop(&mut self) {
        // The api and the indexer first, so they see no node vanish under them.
        drop(lock(&self.api).take());
        drop(lock(&self.indexer).take());
        for node in lock(&self.nodes).iter_mut() {
            drop(node.process.take());
        }
        if self.keep_files.load(Ordering::Relaxed) {
            if let Some(root) = lock(&self.root).take() {
                let _ = root.keep();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_rows_parse_with_and_without_a_leader() {
        let row = parse_group_row("shard-3    2       1       [1, 2, 3]                 5 n1:0 n3:12").unwrap();
        assert_eq!(
            row,
            GroupRow { group: "shard-3".into(), leader: Some(2), term: Some(1), lag_entries: vec![(1, 0), (3, 12)] }
        );
        let row = parse_group_row("shard-0    -       -       [1, 2, 3]                 - n1:0 NO LEADER").unwrap();
        assert_eq!((row.leader, row.term, row.lag_entries), (None, None, vec![(1, 0)]));
        let row = parse_group_row("meta       1       4       [1, 2, 3]                 3 n2:0 n3:0").unwrap();
        assert_eq!(row.leader, Some(1));
        assert_eq!(parse_group_row("NODE   ADDRESS   STATUS"), None);
        assert_eq!(parse_group_row("1      127.0.0.1:7001   active    up   9   4"), None);
    }
}
