//! The alert rules and the Grafana dashboard of `deploy/observability/` against a real cluster:
//! Debian's `prometheus` scrapes three nodes, two api instances and an indexer every second with
//! the real rules loaded; after bookings, waiting-room joins, searches and a few 429s, every
//! metric the rules and the dashboard read has series, and a node killed with SIGKILL fires
//! `BoxofficeNodeDown` within a minute.
//!
//! Prometheus is installed by `scripts/deploy-tools prometheus` when missing (Debian's package,
//! as root); the test is skipped, saying so, only where it is missing and cannot be installed.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::cluster::RunningCluster;
use common::eventually;
use serde_json::{json, Value};

/// How long every named metric may take to appear: a node samples its leader and disk gauges
/// every 15 s, and Prometheus scrapes every second.
const METRICS_TIMEOUT: Duration = Duration::from_secs(90);
/// The issue's bound: node-down fires within a minute of the kill (the rule waits 30 s).
const ALERT_TIMEOUT: Duration = Duration::from_secs(60);
const PROMETHEUS_START_TIMEOUT: Duration = Duration::from_secs(30);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn observability() -> PathBuf {
    repo().join("deploy/observability")
}

/// Debian's prometheus, installed if it is missing and can be.
fn prometheus_binary() -> Option<PathBuf> {
    let find = || {
        std::env::var_os("PATH")
            .map(|paths| std::env::split_paths(&paths).map(|p| p.join("prometheus")).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .find(|p| p.is_file())
    };
    if let Some(found) = find() {
        return Some(found);
    }
    let installed = Command::new(repo().join("scripts/deploy-tools"))
        .arg("prometheus")
        .stdin(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if installed {
        find()
    } else {
        None
    }
}

/// The metric names a PromQL expression reads (recording rules' names, with a colon, are not).
fn metrics_in(expr: &str, into: &mut BTreeSet<String>) {
    let is_start = |c: char| c.is_ascii_alphabetic() || c == '_' || c == ':';
    let is_part = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut rest = expr;
    while let Some(start) = rest.find(is_start) {
        let tail = &rest[start..];
        let end = tail.find(|c: char| !is_part(c)).unwrap_or(tail.len());
        let word = &tail[..end];
        if !word.contains(':') && ["boxoffice_", "api_", "http_"].iter().any(|p| word.starts_with(p)) {
            into.insert(word.to_owned());
        }
        rest = &tail[end..];
    }
}

/// Every metric the alert rules' expressions read: the text of each `expr:` key, with the lines
/// of a block scalar below it.
fn metrics_of_rules(text: &str, into: &mut BTreeSet<String>) {
    let mut expr_indent: Option<usize> = None;
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim_start();
        if let Some(i) = expr_indent {
            if trimmed.is_empty() || indent > i {
                metrics_in(trimmed, into);
                continue;
            }
            expr_indent = None;
        }
        if let Some(expr) = trimmed.strip_prefix("expr:") {
            metrics_in(expr, into);
            expr_indent = Some(indent);
        }
    }
}

/// Every metric the dashboard's queries read.
fn metrics_of_dashboard(value: &Value, into: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr", Value::String(expr)) => metrics_in(expr, into),
                    _ => metrics_of_dashboard(v, into),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| metrics_of_dashboard(v, into)),
        _ => {}
    }
}

/// `host:port` of a URL such as `http://127.0.0.1:8080` or `https://127.0.0.1:7100`.
fn host_port(url: &str) -> String {
    url.split("://").nth(1).unwrap_or(url).trim_end_matches('/').to_owned()
}

struct Prometheus {
    url: String,
    _process: harness::Process,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus on a free port, scraping the given jobs every second and evaluating the
    /// real rules every second.
    async fn start(binary: &Path, jobs: &[(&str, Vec<String>)]) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let rules = observability().join("rules/boxoffice.yml");
        let mut config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {:?}\nscrape_configs:\n",
            rules.display().to_string()
        );
        for (job, targets) in jobs {
            let targets: Vec<String> = targets.iter().map(|t| format!("{t:?}")).collect();
            config.push_str(&format!(
                "  - job_name: {job}\n    static_configs:\n      - targets: [{}]\n",
                targets.join(", ")
            ));
        }
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, &config).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("prometheus starts");
        let prometheus =
            Prometheus { url: format!("http://127.0.0.1:{port}"), _process: harness::Process::own(child), _dir: dir };
        let http = common::client();
        let ready = format!("{}/-/ready", prometheus.url);
        eventually(PROMETHEUS_START_TIMEOUT, "prometheus ready", || {
            let (http, ready) = (http.clone(), ready.clone());
            async move { http.get(&ready).send().await.ok().filter(|r| r.status() == 200).map(|_| ()) }
        })
        .await;
        prometheus
    }

    async fn api(&self, path: &str) -> Option<Value> {
        let response = common::client().get(format!("{}{path}", self.url)).send().await.ok()?;
        let body: Value = response.json().await.ok()?;
        (body["status"] == "success").then(|| body["data"].clone())
    }

    /// Every metric name with at least one series.
    async fn names(&self) -> BTreeSet<String> {
        let data = self.api("/api/v1/label/__name__/values").await.unwrap_or(Value::Null);
        data.as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned)).collect()
    }

    /// The alerts firing now, as (name, instance).
    async fn firing(&self) -> Vec<(String, String)> {
        let data = self.api("/api/v1/alerts").await.unwrap_or(Value::Null);
        data["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["state"] == "firing")
            .map(|a| {
                let label = |k: &str| a["labels"][k].as_str().unwrap_or_default().to_owned();
                (label("alertname"), label("instance"))
            })
            .collect()
    }
}

/// Bookings, refusals, cache hits, a waiting room, searches and 429s: something for every
/// panel and rule to read.
async fn exercise(cluster: &RunningCluster, search_api: &common::Server) {
    let api = cluster.api();
    let admin = api.token("ops", "admin").await;
    let alice = api.token("alice", "user").await;
    let bob = api.token("bob", "user").await;
    let event = api.create_event(&admin, 2, 10, 50, json!({"name": "Monitored Night"})).await;
    for seat in 1..=4 {
        let body = json!({"seats": [format!("FLOOR-A-{seat}")]});
        let key = format!("monitoring-hold-{seat}");
        let (status, hold) =
            api.call("POST", &format!("/v1/events/{event}/holds"), Some(&alice), Some(body), Some(&key)).await;
        assert_eq!(status, 201, "{hold}");
    }
    // Unkeyed holds of taken seats: refused, some by the leader without a log entry.
    for seat in 1..=4 {
        let body = json!({"seats": [format!("FLOOR-A-{seat}")]});
        let (status, _) = api.call("POST", &format!("/v1/events/{event}/holds"), Some(&bob), Some(body), None).await;
        assert_eq!(status, 409);
    }
    for _ in 0..5 {
        assert_eq!(api.get(&format!("/v1/events/{event}"), None).await.0, 200);
        assert_eq!(api.get(&format!("/v1/events/{event}/seats"), None).await.0, 200);
    }
    // A waiting room, on sale now: its shard's leader admits, and reports the room.
    let room = api.create_event(&admin, 1, 10, 10, json!({"name": "Monitored Rush", "high_traffic": true})).await;
    for user in ["carol", "dave", "erin"] {
        let token = api.token(user, "user").await;
        let (status, joined) = api.call("POST", &format!("/v1/events/{room}/queue"), Some(&token), None, None).await;
        assert_eq!(status, 201, "{joined}");
    }
    // Searches through the api that has the indexer behind it, once the index has the event.
    eventually(Duration::from_secs(30), "a search answered", || async {
        let (status, page) = search_api.get("/v1/search?q=monitored", None).await;
        (status == 200 && page["items"].as_array().is_some_and(|items| !items.is_empty())).then_some(())
    })
    .await;
    // That api allows one request per second per user, with bursts of two.
    let frank = search_api.token("frank", "user").await;
    let mut limited = 0;
    for _ in 0..6 {
        if search_api.get("/v1/me/orders", Some(&frank)).await.0 == 429 {
            limited += 1;
        }
    }
    assert!(limited > 0, "six requests at once past a burst of two were never refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prometheus_finds_every_metric_of_the_rules_and_dashboard_and_a_killed_node_fires_node_down() {
    let Some(binary) = prometheus_binary() else {
        eprintln!(
            "SKIPPED: Debian's prometheus is not installed and could not be (scripts/deploy-tools prometheus, as root)"
        );
        return;
    };
    let mut wanted = BTreeSet::new();
    metrics_of_rules(&std::fs::read_to_string(observability().join("rules/boxoffice.yml")).unwrap(), &mut wanted);
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(observability().join("grafana/boxoffice.json")).unwrap())
            .unwrap();
    metrics_of_dashboard(&dashboard, &mut wanted);
    assert!(wanted.len() >= 15, "too few metrics found in the rules and the dashboard: {wanted:?}");

    let mut cluster = RunningCluster::start(3, 4).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let indexer = cluster.start_indexer(&format!("127.0.0.1:{port}"));
    let search_api = cluster
        .start_api(&["--search-url", &indexer.url, "--rate-limit-user-per-s", "1", "--rate-limit-user-burst", "2"])
        .await;
    let nodes: Vec<String> = cluster.nodes.values().map(|n| n.addr.clone()).collect();
    let prometheus = Prometheus::start(
        &binary,
        &[
            ("boxoffice-node", nodes),
            ("boxoffice-api", vec![host_port(&cluster.api_url), host_port(&search_api.url)]),
            ("boxoffice-indexer", vec![host_port(&indexer.url)]),
        ],
    )
    .await;

    exercise(&cluster, &search_api).await;

    let deadline = Instant::now() + METRICS_TIMEOUT;
    loop {
        let have = prometheus.names().await;
        let missing: Vec<&String> = wanted.iter().filter(|m| !have.contains(*m)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "no series in Prometheus for {missing:?} (of {wanted:?})");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("every metric of the rules and the dashboard has series: {wanted:?}");
    assert!(prometheus.firing().await.iter().all(|(name, _)| name != "BoxofficeNodeDown"), "a node is down already");

    let victim = cluster.nodes.get_mut(&3).unwrap();
    let victim_addr = victim.addr.clone();
    victim.kill9();
    let killed = Instant::now();
    let fired = eventually(ALERT_TIMEOUT, "BoxofficeNodeDown firing for the killed node", || async {
        let firing = prometheus.firing().await;
        firing.iter().any(|(name, instance)| name == "BoxofficeNodeDown" && *instance == victim_addr).then_some(firing)
    })
    .await;
    eprintln!("BoxofficeNodeDown fired {:?} after the kill; firing: {fired:?}", killed.elapsed());
    assert!(
        fired.iter().all(|(name, instance)| name != "BoxofficeNodeDown" || *instance == victim_addr),
        "only the killed node is down: {fired:?}"
    );
    drop(indexer);
}

#[test]
fn metric_names_are_read_from_queries_not_from_recording_rules_or_labels() {
    let mut names = BTreeSet::new();
    metrics_in(
        r#"boxoffice:http_5xx_ratio:rate5m > 0.01 and on () sum(rate(http_requests_total{route!="/readyz", job="boxoffice-api"}[5m])) > histogram_quantile(0.99, boxoffice_storage_flush_seconds_bucket)"#,
        &mut names,
    );
    let want: BTreeSet<String> =
        ["http_requests_total", "boxoffice_storage_flush_seconds_bucket"].iter().map(|s| s.to_string()).collect();
    assert_eq!(names, want);
    let mut from_rules = BTreeSet::new();
    metrics_of_rules(
        "      - alert: X\n        expr: |\n          max by (group) (boxoffice_raft_is_leader)\n            < 1\n        annotations:\n          summary: boxoffice_not_a_query\n",
        &mut from_rules,
    );
    assert_eq!(from_rules, ["boxoffice_raft_is_leader".to_string()].into_iter().collect());
}
