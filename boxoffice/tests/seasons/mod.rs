//! What the tests of data that lasts a season share: node processes started with extra flags
//! (so a test can make snapshots frequent), `cluster init` with or without `--restore`, an api in
//! front, and a ledger of bookings with the times their attempts were sent and answered.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harness::Process;
use serde_json::{json, Value};

use crate::common::cluster::{JWT, QUEUE, SECRET};
use crate::common::tls::tls;
use crate::common::Server;

const START_TIMEOUT: Duration = Duration::from_secs(60);

fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_boxoffice")
}

fn spawn(args: &[String], prefix: &str) -> (Process, String) {
    let mut command = Command::new(exe());
    command.args(args).env("BOXOFFICE_LOG", "warn,openraft=error").stderr(Stdio::inherit());
    harness::spawn_announced(command, "boxoffice", prefix, START_TIMEOUT).expect("boxoffice printed its address")
}

/// A `boxoffice node` process.
pub struct NodeProc {
    pub id: u64,
    pub addr: String,
    pub dir: PathBuf,
    extra: Vec<String>,
    process: Option<Process>,
}

impl NodeProc {
    /// Starts node `id` on a free port with its data in `dir`, with `extra` flags.
    pub fn start(id: u64, dir: &Path, extra: &[&str]) -> NodeProc {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let (process, addr) = Self::spawn(id, dir, "127.0.0.1:0", &extra);
        NodeProc { id, addr, dir: dir.to_owned(), extra, process: Some(process) }
    }

    fn spawn(id: u64, dir: &Path, listen: &str, extra: &[String]) -> (Process, String) {
        let mut args: Vec<String> =
            ["node", "--id", &id.to_string(), "--listen", listen, "--data-dir"].iter().map(|s| s.to_string()).collect();
        args.extend([dir.display().to_string(), "--cluster-secret".into(), SECRET.into()]);
        args.extend(["--tls-dir".into(), tls().node()]);
        args.extend(extra.iter().cloned());
        spawn(&args, &format!("boxoffice: node {id} listening on "))
    }

    pub fn kill9(&mut self) {
        self.process = None;
    }

    /// Starts the node again on its address and data directory.
    pub fn restart(&mut self) {
        self.kill9();
        let (process, addr) = Self::spawn(self.id, &self.dir, &self.addr, &self.extra);
        assert_eq!(addr, self.addr, "node {} came back on another address", self.id);
        self.process = Some(process);
    }
}

/// Node processes, a cluster made of them, and an api in front.
pub struct Cluster {
    pub nodes: BTreeMap<u64, NodeProc>,
    pub api: Server,
    api_process: Option<Process>,
}

impl Cluster {
    /// Starts nodes `ids` (data under `root`, with `extra` flags) and makes them a cluster with
    /// `cluster init` and `init_args` (`--shards 4`, `--restore DIR`, …); then an api.
    pub async fn start(root: &Path, ids: &[u64], extra: &[&str], init_args: &[&str]) -> Cluster {
        let nodes: BTreeMap<u64, NodeProc> =
            ids.iter().map(|id| (*id, NodeProc::start(*id, &root.join(format!("n{id}")), extra))).collect();
        let list: Vec<String> = nodes.values().map(|n| format!("{}={}", n.id, n.addr)).collect();
        let first = nodes.values().next().unwrap().addr.clone();
        let replication = ids.len().min(3).to_string();
        let mut args = vec!["cluster", "init", "--node", &first, "--nodes"];
        let list = list.join(",");
        args.extend([list.as_str(), "--replication", &replication]);
        args.extend(init_args);
        crate::common::cluster::cli(&args);
        let (api_process, api) = start_api(&nodes);
        let cluster = Cluster { nodes, api, api_process: Some(api_process) };
        cluster.wait_ready().await;
        cluster
    }

    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        while self.api.get("/readyz", None).await.0 != 200 {
            assert!(Instant::now() < deadline, "cluster not ready in time");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn any_node(&self) -> String {
        self.nodes.values().find(|n| n.process.is_some()).expect("a running node").addr.clone()
    }

    pub fn status(&self) -> String {
        crate::common::cluster::cli(&["cluster", "status", "--node", &self.any_node()])
    }

    /// Kills every process: the cluster is gone (its data directories stay where they were).
    pub fn destroy(mut self) {
        self.api_process = None;
        for node in self.nodes.values_mut() {
            node.kill9();
        }
    }
}

/// Starts an api with dev tokens in front of `nodes`.
pub fn start_api(nodes: &BTreeMap<u64, NodeProc>) -> (Process, Server) {
    let addrs: Vec<String> = nodes.values().map(|n| n.addr.clone()).collect();
    let args: Vec<String> = [
        "api",
        "--sandbox-payments",
        "--listen",
        "127.0.0.1:0",
        "--nodes",
        &addrs.join(","),
        "--cluster-secret",
        SECRET,
        "--jwt-secret",
        JWT,
        "--queue-secret",
        QUEUE,
        "--dev-tokens",
        "--hold-ttl",
        "1h",
        "--tls-dir",
        &tls().api(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (process, url) = spawn(&args, "boxoffice: api listening on ");
    (process, Server::attach(&url))
}

/// Runs `boxoffice ARGS` (with the cluster secret and the operator's credential, in the
/// environment: commands that need neither ignore them) off the async threads; returns its
/// status and output.
pub async fn run(args: &[&str]) -> (bool, String) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let out = Command::new(exe())
            .args(&args)
            .env("BOXOFFICE_CLUSTER_SECRET", SECRET)
            .env("BOXOFFICE_TLS_DIR", tls().operator())
            .env("BOXOFFICE_LOG", "warn,openraft=error")
            .output()
            .expect("run boxoffice");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    })
    .await
    .unwrap()
}

/// A hold (and maybe an order) a buyer asked for, and when.
#[derive(Clone, Debug)]
pub struct Booking {
    pub user: String,
    pub seat: String,
    pub key: String,
    /// When the first attempt was sent.
    pub first_sent: Instant,
    /// When the api acknowledged it (`None`: never answered 201).
    pub acked: Option<Instant>,
    pub hold_id: Option<String>,
    pub order: Option<OrderAsk>,
}

#[derive(Clone, Debug)]
pub struct OrderAsk {
    pub key: String,
    pub first_sent: Instant,
    pub acked: Option<Instant>,
    pub order_id: Option<String>,
}

#[derive(Default)]
pub struct Ledger {
    pub bookings: Mutex<Vec<Booking>>,
}

impl Ledger {
    pub fn all(&self) -> Vec<Booking> {
        self.bookings.lock().unwrap().clone()
    }

    pub fn acked_count(&self) -> usize {
        self.bookings.lock().unwrap().iter().filter(|b| b.acked.is_some()).count()
    }
}

/// POSTs with an idempotency key until the api answers below 500 or `stop` is set; returns the
/// answer (`None` if stopped first).
async fn post_until_answered(
    api: &Server,
    path: &str,
    token: &str,
    body: &Value,
    key: &str,
    stop: &AtomicBool,
) -> Option<(u16, Value)> {
    loop {
        let sent = api
            .http
            .post(format!("{}{}", api.url, path))
            .bearer_auth(token)
            .header("Idempotency-Key", key)
            .json(body)
            .timeout(Duration::from_secs(15))
            .send()
            .await;
        if let Ok(resp) = sent {
            if resp.status().as_u16() < 500 {
                let status = resp.status().as_u16();
                return Some((status, resp.json().await.unwrap_or(Value::Null)));
            }
        }
        if stop.load(Ordering::Relaxed) {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Books the seats of one row of `event`, one at a time, checking out every other hold, until
/// stopped; records every attempt in `ledger`.
pub async fn buyer(
    api: Arc<Server>,
    event: String,
    row: String,
    seats: u32,
    ledger: Arc<Ledger>,
    stop: Arc<AtomicBool>,
) {
    let user = format!("buyer-{event}-{row}");
    let token = api.token(&user, "user").await;
    for n in 1..=seats {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let seat = format!("FLOOR-{row}-{n}");
        let key = format!("{user}-hold-{n}");
        let first_sent = Instant::now();
        let booking = Booking {
            user: user.clone(),
            seat: seat.clone(),
            key: key.clone(),
            first_sent,
            acked: None,
            hold_id: None,
            order: None,
        };
        // The place and the push under one lock: another buyer's push between them would give
        // this booking's answers to theirs (whose user then does not own the hold: a 404).
        let at = {
            let mut bookings = ledger.bookings.lock().unwrap();
            bookings.push(booking);
            bookings.len() - 1
        };
        let path = format!("/v1/events/{event}/holds");
        let Some((status, hold)) =
            post_until_answered(&api, &path, &token, &json!({"seats": [seat]}), &key, &stop).await
        else {
            return;
        };
        assert_eq!(status, 201, "hold {seat}: {hold}");
        let hold_id = hold["hold_id"].as_str().unwrap().to_owned();
        {
            let mut bookings = ledger.bookings.lock().unwrap();
            bookings[at].acked = Some(Instant::now());
            bookings[at].hold_id = Some(hold_id.clone());
        }
        if n % 2 == 1 {
            continue;
        }
        let key = format!("{user}-pay-{n}");
        let order = OrderAsk { key: key.clone(), first_sent: Instant::now(), acked: None, order_id: None };
        ledger.bookings.lock().unwrap()[at].order = Some(order);
        let path = format!("/v1/holds/{hold_id}/checkout");
        let body = json!({"payment_method": "sandbox_ok"});
        let Some((status, order)) = post_until_answered(&api, &path, &token, &body, &key, &stop).await else { return };
        assert_eq!(status, 201, "checkout {seat}: {order}");
        let mut bookings = ledger.bookings.lock().unwrap();
        if let Some(o) = bookings[at].order.as_mut() {
            o.acked = Some(Instant::now());
            o.order_id = order["order_id"].as_str().map(str::to_owned);
        }
    }
}
