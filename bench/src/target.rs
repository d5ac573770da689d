//! The server under test: `boxoffice dev` or a cluster, started by the bench as separate
//! processes, or an existing URL.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use harness::Process;

use crate::cluster::{spawn_until_announced, ClusterProcesses};
use crate::error::TargetError;

/// How long a started server may take to answer `/readyz` with 200 (every group led).
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const READY_POLL_INTERVAL: Duration = Duration::from_millis(100);

pub struct Target {
    pub url: String,
    pub http: reqwest::Client,
    server: Server,
}

/// What the bench started, and kills when the target is dropped.
enum Server {
    /// Somebody else's server: nothing to own.
    Existing,
    /// `boxoffice dev`: one node and the api in one process.
    Dev {
        process: Process,
        dir: tempfile::TempDir,
    },
    Cluster(ClusterProcesses),
}

/// The server's log filter: warnings, unless `BOXOFFICE_LOG` asks for more (for example
/// `warn,raft_store=info` shows each snapshot's timings beside the bench's figures), as for the
/// cluster's children.
fn server_log() -> String {
    std::env::var("BOXOFFICE_LOG").unwrap_or_else(|_| "warn".to_owned())
}

impl Target {
    /// Starts `boxoffice dev` (the binary at `exe`) on a free port with a fresh data directory.
    pub async fn spawn(exe: &Path, extra: &[&str]) -> Result<Target, TargetError> {
        let dir = tempfile::tempdir().map_err(|e| TargetError::Spawn(e.to_string()))?;
        let mut command = Command::new(exe);
        command
            .args(["dev", "--no-demo", "--addr", "127.0.0.1:0", "--log", &server_log(), "--data-dir"])
            .arg(dir.path())
            .args(extra)
            .stderr(Stdio::inherit());
        let (process, url) = spawn_until_announced(command, "boxoffice dev", "boxoffice: listening on ").await?;
        let target = Target { url, http: client(), server: Server::Dev { process, dir } };
        target.wait_ready().await?;
        Ok(target)
    }

    /// Starts a cluster of `nodes` `boxoffice node` processes (free ports, fresh data
    /// directories), creates it with `shards` shards and replication min(3, `nodes`), and puts
    /// one `boxoffice api` with dev tokens and `extra_api_args` in front; returns once the api
    /// is ready.
    pub async fn spawn_cluster(
        exe: &Path,
        nodes: usize,
        shards: u32,
        extra_api_args: &[&str],
    ) -> Result<Target, TargetError> {
        Target::ready_cluster(ClusterProcesses::start(exe, nodes, shards, extra_api_args).await?).await
    }

    /// As [`Target::spawn_cluster`], with a `boxoffice indexer` that the api answers
    /// `GET /v1/search` through; it is stopped with the target.
    pub async fn spawn_searchable_cluster(
        exe: &Path,
        nodes: usize,
        shards: u32,
        extra_api_args: &[&str],
    ) -> Result<Target, TargetError> {
        Target::ready_cluster(ClusterProcesses::start_searchable(exe, nodes, shards, extra_api_args).await?).await
    }

    /// The target of a started cluster, once its api is ready.
    async fn ready_cluster((cluster, url): (ClusterProcesses, String)) -> Result<Target, TargetError> {
        let target = Target { url, http: client(), server: Server::Cluster(cluster) };
        target.wait_ready().await?;
        Ok(target)
    }

    /// A server that is already running, with dev tokens on.
    pub fn existing(url: &str) -> Target {
        Target { url: url.trim_end_matches('/').to_owned(), http: client(), server: Server::Existing }
    }

    /// The cluster the bench started, for scenarios that kill and restart its nodes.
    pub fn cluster(&self) -> Option<&ClusterProcesses> {
        match &self.server {
            Server::Cluster(c) => Some(c),
            Server::Existing | Server::Dev { .. } => None,
        }
    }

    /// The process id and data directory of the `boxoffice dev` the bench started, for
    /// scenarios that watch its memory and disk.
    pub fn dev_process(&self) -> Option<(u32, &Path)> {
        match &self.server {
            Server::Dev { process, dir } => Some((process.id()?, dir.path())),
            Server::Existing | Server::Cluster(_) => None,
        }
    }

    /// What runs behind the URL, for report titles: "one node", "3 nodes", "server at URL".
    pub fn describe(&self) -> String {
        match &self.server {
            Server::Existing => format!("server at {}", self.url),
            Server::Dev { .. } => "one node".to_owned(),
            Server::Cluster(c) if c.has_indexer() => format!("{} nodes and an indexer", c.node_addrs().len()),
            Server::Cluster(c) => format!("{} nodes", c.node_addrs().len()),
        }
    }

    pub async fn wait_ready(&self) -> Result<(), TargetError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(r) = self.http.get(format!("{}/readyz", self.url)).send().await {
                if r.status() == 200 {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(TargetError::Spawn(format!("not ready after {} s", READY_TIMEOUT.as_secs())));
            }
            tokio::time::sleep(READY_POLL_INTERVAL).await;
        }
    }

    pub async fn token(&self, user: &str, role: &str) -> Result<String, TargetError> {
        let body = self.post("/v1/auth/dev-token", None, json!({"user_id": user, "role": role}), 200).await?;
        Ok(body["token"].as_str().unwrap_or_default().to_owned())
    }

    /// POSTs and insists on `want` status.
    pub async fn post(&self, path: &str, token: Option<&str>, body: Value, want: u16) -> Result<Value, TargetError> {
        let mut req = self.http.post(format!("{}{}", self.url, path)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        if status != want {
            return Err(TargetError::Answer(status, text));
        }
        serde_json::from_str(&text).map_err(|e| TargetError::Answer(status, e.to_string()))
    }

    /// The server's `/metrics` page.
    pub async fn metrics(&self) -> Result<Metrics, TargetError> {
        Ok(Metrics(self.http.get(format!("{}/metrics", self.url)).send().await?.text().await?))
    }

    pub async fn get(&self, path: &str) -> Result<Value, TargetError> {
        let resp = self.http.get(format!("{}{}", self.url, path)).send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        if status != 200 {
            return Err(TargetError::Answer(status, text));
        }
        serde_json::from_str(&text).map_err(|e| TargetError::Answer(status, e.to_string()))
    }
}

/// A Prometheus text page, as the server rendered it.
pub struct Metrics(pub String);

impl Metrics {
    /// The sum of metric `name` over every label set that contains `label` (`key="value"`), or
    /// over all of them.
    pub fn sum(&self, name: &str, label: Option<&str>) -> f64 {
        self.0
            .lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .filter(|l| label.is_none_or(|label| l.contains(label)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

/// Stops the servers `target` started (dropping it kills them), and checks that nothing else
/// still holds it: a comparison runs the next store only once Boxoffice's processes are gone.
pub fn stop(target: Arc<Target>) -> Result<(), TargetError> {
    match Arc::try_unwrap(target) {
        Ok(target) => {
            drop(target);
            Ok(())
        }
        Err(_) => Err(TargetError::Scenario("Boxoffice's servers are still in use after its run".into())),
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(30)).pool_max_idle_per_host(1024).build().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::Metrics;

    #[test]
    fn metrics_are_summed_by_exact_name_and_label() {
        let page = Metrics(
            [
                "# TYPE api_cache_requests_total counter",
                "api_cache_requests_total{cache=\"seats\",result=\"hit\"} 7",
                "api_cache_requests_total{cache=\"event\",result=\"hit\"} 3",
                "api_cache_requests_total{cache=\"event\",result=\"miss\"} 2",
                "api_cache_requests_total_other 100",
                "api_queue_leases_total 5",
            ]
            .join("\n"),
        );
        assert_eq!(page.sum("api_cache_requests_total", Some("result=\"hit\"")), 10.0);
        assert_eq!(page.sum("api_cache_requests_total", None), 12.0);
        assert_eq!(page.sum("api_queue_leases_total", None), 5.0);
        assert_eq!(page.sum("absent", None), 0.0);
    }
}
