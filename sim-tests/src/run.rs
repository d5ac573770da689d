//! One simulated run: a cluster, buyers, a payments provider, a door and faults, driven by one
//! seed, then the checks.
//!
//! A run's phases: the buyers shop for `duration` while faults go on, the provider pays (or not)
//! and the door scans; the faults heal and the cluster must come back. In some runs, time then
//! goes on past the payment deadlines of the first orders: the quiet minutes before them pass
//! frozen (`freeze_until`), then the provider's results around those deadlines arrive while
//! faults go on again, and heal again. Then the checks.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use node::{now_ms, Router};
use raft_store::planted::{self, Bug};
use raft_store::{Command, GroupId, Outcome, RequestId, Selection, UserId};
use seams::{Cluster, Submit};

use crate::check::{replicas_agree, Checker};
use crate::cluster::SimCluster;
use crate::door::Door;
use crate::history::History;
use crate::nemesis::{FaultPlan, Nemesis};
use crate::net::node_addr;
use crate::provider::Provider;
use crate::workload::{setup, Client, Shop, HOLD_TTL_MS};

#[derive(Clone, Debug)]
pub struct Scenario {
    pub nodes: u64,
    pub shards: u32,
    pub clients: usize,
    /// Simulated time the buyers (and the faults) run for.
    pub duration: Duration,
    pub faults: FaultPlan,
    /// The chance that the run goes on past the payment deadlines of its first orders
    /// ([`raft_store::PAYMENT_TIMEOUT_MS`] after their checkout), with results arriving around them.
    pub past_deadline_chance: f64,
    pub bug: Option<Bug>,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            nodes: 3,
            shards: 2,
            clients: 5,
            duration: Duration::from_secs(30),
            faults: FaultPlan::all(),
            past_deadline_chance: 0.5,
            bug: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Report {
    pub seed: u64,
    pub trace_hash: u64,
    pub ops: usize,
    pub violations: Vec<String>,
    pub faults: Vec<String>,
    /// What the workload did: payments and scans.
    pub summary: String,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }

    /// The command that replays this seed, for a failure message.
    pub fn replay_command(&self) -> String {
        format!(
            "RUSTFLAGS=\"--cfg madsim\" CARGO_TARGET_DIR=target-sim SIM_SEED={} cargo test -p sim-tests --test seeds replay -- --nocapture",
            self.seed
        )
    }
}

/// A run gives up on liveness after this much simulated time without a leader everywhere.
const LIVENESS_TIMEOUT: Duration = Duration::from_secs(60);
/// Simulated time a whole run may take before madsim stops it: a run past the payment deadlines
/// takes about twelve minutes.
const RUN_TIME_LIMIT: Duration = Duration::from_secs(1_500);
/// How long the provider is given to get its results through once the faults heal.
const SETTLE_WAIT: Duration = Duration::from_secs(120);
/// How long the door is given for its last scans once no order can be confirmed any more.
const DOOR_WAIT: Duration = Duration::from_secs(60);
/// A frozen cluster wakes this long before the first result around a deadline.
const WAKE_LEAD_MS: i64 = 5_000;
/// Faults go on this long after the last result around a deadline.
const LATE_FAULTS_TAIL_MS: i64 = 2_000;

fn lock(c: &Mutex<SimCluster>) -> std::sync::MutexGuard<'_, SimCluster> {
    c.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a seed run in a child process printed, and whether it kept every invariant.
#[derive(Debug, Clone)]
pub struct ChildRun {
    pub seed: u64,
    pub ok: bool,
    /// `(trace hash, client operations)` from the child's `SIM_TRACE` line.
    pub trace: Option<(u64, usize)>,
    pub output: String,
}

/// The line a child run prints for its parent: `SIM_TRACE <seed> <trace hash> <operations>`.
pub fn trace_line(report: &Report) -> String {
    format!("SIM_TRACE {} {:016x} {}", report.seed, report.trace_hash, report.ops)
}

/// Runs one seed in a child process: this test binary again, running only `test` with
/// `SIM_SEED=seed`. A run's history must depend on its seed alone, and in one process it does
/// not quite: dependencies keep process-wide state that earlier runs moved (tokio's `select!`
/// draws its fairness from a process-wide counter, and openraft's core loop uses it). A child
/// per seed makes every run what a replay of that seed is, so a failure found among many seeds
/// replays exactly.
pub fn run_seed_in_child(test: &str, seed: u64) -> ChildRun {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return ChildRun { seed, ok: false, trace: None, output: format!("no test binary: {e}") },
    };
    let output = std::process::Command::new(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env("SIM_SEED", seed.to_string())
        .output();
    let output = match output {
        Ok(o) => o,
        Err(e) => return ChildRun { seed, ok: false, trace: None, output: format!("cannot run the child: {e}") },
    };
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    let trace = text.lines().find_map(|line| {
        // The test harness may print its own text before it on the same line.
        let mut parts = line.split_once("SIM_TRACE ")?.1.split_whitespace();
        let _seed = parts.next()?;
        let hash = u64::from_str_radix(parts.next()?, 16).ok()?;
        let ops = parts.next()?.parse().ok()?;
        Some((hash, ops))
    });
    ChildRun { seed, ok: output.status.success() && trace.is_some(), trace, output: text }
}

/// Runs one seed on a fresh OS thread (so nothing thread-local leaks between runs) and reports.
/// Process-wide state still does: see [`run_seed_in_child`].
pub fn run_seed(seed: u64, scenario: &Scenario) -> Report {
    let scenario = scenario.clone();
    let fault_log: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = fault_log.clone();
    let outcome = std::thread::spawn(move || {
        if std::env::var("SIM_LOG").is_ok() {
            madsim::runtime::init_logger();
        }
        let mut runtime = madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
        runtime.set_time_limit(RUN_TIME_LIMIT);
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runtime.block_on(simulate(seed, scenario, log))));
        planted::clear();
        result
    })
    .join();
    match outcome {
        Ok(Ok(report)) => report,
        Ok(Err(panic)) | Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic".into());
            let faults = fault_log.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let violations = vec![format!("the run panicked: {message}")];
            Report { seed, trace_hash: 0, ops: 0, violations, faults, summary: String::new() }
        }
    }
}

async fn routers(count: usize, nodes: u64) -> Vec<Arc<Router>> {
    let seeds: Vec<String> = (1..=nodes).map(node_addr).collect();
    let mut out = Vec::new();
    for _ in 0..count {
        let router = Router::new(Arc::new(crate::net::SimClient), seeds.clone());
        for _ in 0..120 {
            if router.refresh().await.is_ok() && router.layout().is_some() {
                break;
            }
            madsim::time::sleep(Duration::from_millis(500)).await;
        }
        router.spawn_refresher();
        out.push(router);
    }
    out
}

async fn simulate(seed: u64, scenario: Scenario, fault_log: Arc<Mutex<Vec<String>>>) -> Report {
    if let Some(bug) = scenario.bug {
        planted::plant(bug, true);
    }
    let cluster = Arc::new(Mutex::new(if scenario.faults.slow_disks {
        SimCluster::with_slow_disks()
    } else {
        SimCluster::new()
    }));
    for id in 1..=scenario.nodes {
        lock(&cluster).add_node(id);
    }

    // Buyers and the fault injector live on a client machine of their own.
    let clients_node = madsim::runtime::Handle::current()
        .create_node()
        .name("clients")
        .ip(IpAddr::V4(Ipv4Addr::new(10, 0, 1, 1)))
        .build();
    let history = Arc::new(History::default());
    let (c, h, f) = (cluster.clone(), history.clone(), fault_log.clone());
    let clients = clients_node.id();
    let work = clients_node.spawn(async move { drive(scenario, c, h, f, clients).await });
    let (violations, summary) = match work.await {
        Ok(v) => v,
        Err(e) => (vec![format!("the client machine failed: {e}")], String::new()),
    };
    let faults = fault_log.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Report { seed, trace_hash: history.trace_hash(), ops: history.ops().len(), violations, faults, summary }
}

/// Runs the buyers, the provider, the door and the faults, then the checks; returns the
/// violations and a summary of the workload.
async fn drive(
    scenario: Scenario,
    cluster: Arc<Mutex<SimCluster>>,
    history: Arc<History>,
    fault_log: Arc<Mutex<Vec<String>>>,
    clients_machine: madsim::task::NodeId,
) -> (Vec<String>, String) {
    madsim::time::sleep(Duration::from_millis(500)).await;
    let replication = scenario.nodes.min(3) as u32;
    let members = lock(&cluster).members();
    if let Err(e) = crate::cluster::init_cluster(members, scenario.shards, replication).await {
        return (vec![format!("cluster init failed: {e}")], String::new());
    }
    // Routers: set-up and checks, one per buyer (the door's scanners use these too), the
    // nemesis's, the provider's.
    let routers = routers(scenario.clients + 3, scenario.nodes).await;
    let shop = match setup(&routers[0]).await {
        Ok(shop) => shop,
        Err(e) => return (vec![format!("set-up failed: {e}")], String::new()),
    };
    let shop = Arc::new(shop);
    let past_deadline = rand::Rng::gen_bool(&mut madsim::rand::thread_rng(), scenario.past_deadline_chance);
    let provider = Provider::new(routers[scenario.clients + 2].clone(), history.clone(), past_deadline);
    let door = Door::new(routers[1..=scenario.clients].to_vec(), history.clone(), provider.clone());
    let door_task = madsim::task::spawn(door.clone().run());
    let until_ms = now_ms() + scenario.duration.as_millis() as i64;

    let mut tasks = Vec::new();
    for n in 0..scenario.clients {
        let mut client = Client::new(n, routers[n + 1].clone(), history.clone(), provider.clone());
        let shop = shop.clone();
        tasks.push(madsim::task::spawn(async move {
            while now_ms() < until_ms {
                client.step(&shop).await;
                let pause = rand::Rng::gen_range(&mut madsim::rand::thread_rng(), 10..250);
                madsim::time::sleep(Duration::from_millis(pause)).await;
            }
        }));
    }
    let nemesis = Nemesis {
        cluster: cluster.clone(),
        router: routers[scenario.clients + 1].clone(),
        history: history.clone(),
        plan: scenario.faults.clone(),
        shard_count: scenario.shards,
        busy_group: shop.group(),
        log: fault_log.clone(),
        violations: Arc::default(),
    };
    nemesis.run(until_ms).await;
    for t in tasks {
        let _ = t.await;
    }
    let buyers_done_ms = now_ms();

    // Heal everything, then the cluster must come back by itself.
    heal(&cluster);
    let mut violations = Vec::new();
    if let Err(e) = liveness(&cluster, &routers[0], &shop, scenario.shards).await {
        violations.push(e);
    }
    if let Some((from_ms, last_ms)) = provider.deadline_span() {
        let span = format!("{}..{} ms", from_ms % 100_000_000, last_ms % 100_000_000);
        note(&fault_log, format!("time goes on past the payment deadlines: results around them at {span}"));
        freeze_until(&cluster, clients_machine, from_ms - WAKE_LEAD_MS, &fault_log).await;
        // Membership changes are spent: the late faults are the others.
        let plan = FaultPlan { membership: false, ..scenario.faults.clone() };
        let late = Nemesis {
            cluster: cluster.clone(),
            router: nemesis.router.clone(),
            history: history.clone(),
            plan,
            shard_count: scenario.shards,
            busy_group: shop.group(),
            log: fault_log.clone(),
            violations: nemesis.violations.clone(),
        };
        late.run(last_ms + LATE_FAULTS_TAIL_MS).await;
        heal(&cluster);
        if let Err(e) = liveness(&cluster, &routers[0], &shop, scenario.shards).await {
            violations.push(format!("after the payment deadlines: {e}"));
        }
    }
    // Let every hold run out and be compacted, while the provider's last results and the door's
    // last scans go through; then look at what is left.
    let holds_out_ms = buyers_done_ms + HOLD_TTL_MS + 3 * crate::cluster::MAX_SKEW_MS + 3_000 - now_ms();
    let holds_out = Duration::from_millis(holds_out_ms.max(0) as u64);
    let settled = async {
        provider.settle(SETTLE_WAIT).await;
        door.stop();
        let _ = madsim::time::timeout(DOOR_WAIT, door_task).await;
    };
    futures_util::future::join(madsim::time::sleep(holds_out), settled).await;
    violations
        .extend(nemesis.violations.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|v| format!("disk: {v}")));
    let mut checker =
        Checker { history: &history, router: &routers[0], shop: &shop, violations: Vec::new(), summary: String::new() };
    checker.run().await;
    violations.extend(checker.violations);
    let summary = format!(
        "{}; {}; past the payment deadlines: {}; {}",
        provider.summary(),
        door.summary(),
        provider.deadline_span().is_some(),
        checker.summary
    );
    // Give followers a moment to apply the last entries, then compare replicas.
    madsim::time::sleep(Duration::from_secs(3)).await;
    let groups: Vec<GroupId> = std::iter::once(GroupId::META).chain((0..scenario.shards).map(GroupId::shard)).collect();
    violations.extend(replicas_agree(&lock(&cluster), &groups));
    (violations, summary)
}

/// Ends every fault: links healed, crashed nodes restarted, clocks true, the network clean.
fn heal(cluster: &Arc<Mutex<SimCluster>>) {
    {
        let mut c = lock(cluster);
        c.heal();
        for id in c.nodes.keys().copied().collect::<Vec<_>>() {
            c.restart(id);
            if let Some(n) = c.nodes.get(&id) {
                n.clock.set_skew_ms(0);
            }
        }
    }
    madsim::net::NetSim::current().update_config(|c| {
        c.packet_loss_rate = 0.0;
        c.send_latency = Duration::from_millis(1)..Duration::from_millis(10);
    });
}

fn note(log: &Mutex<Vec<String>>, what: String) {
    log.lock().unwrap_or_else(|e| e.into_inner()).push(format!("{:>8} ms  {what}", now_ms() % 100_000_000));
}

/// Freezes every machine of the simulation, the nodes and the clients' alike, until `until_ms`.
/// Simulated time is free only while nothing runs: the heartbeats and routing refreshes of an
/// idle cluster through ten simulated minutes cost about ten seconds of CPU per run, frozen they
/// cost nothing. Nothing is lost by it: nothing was due in those minutes, and the cluster wakes
/// with every election timer expired, a fault of its own. A machine of its own keeps the time.
async fn freeze_until(
    cluster: &Arc<Mutex<SimCluster>>,
    clients_machine: madsim::task::NodeId,
    until_ms: i64,
    log: &Mutex<Vec<String>>,
) {
    let wait_ms = until_ms - now_ms();
    if wait_ms <= 0 {
        return;
    }
    note(log, format!("every machine frozen for {} s", wait_ms / 1_000));
    let mut frozen: Vec<madsim::task::NodeId> = {
        let c = lock(cluster);
        c.nodes.keys().map(|id| c.sim_id(*id)).collect()
    };
    frozen.push(clients_machine);
    let handle = madsim::runtime::Handle::current();
    let keeper = handle.create_node().name("timekeeper").build();
    let (woken, wake) = tokio::sync::oneshot::channel();
    let _detached = keeper.spawn(async move {
        let handle = madsim::runtime::Handle::current();
        for id in &frozen {
            handle.pause(*id);
        }
        madsim::time::sleep(Duration::from_millis(wait_ms as u64)).await;
        for id in &frozen {
            handle.resume(*id);
        }
        let _ = woken.send(());
    });
    let _ = wake.await;
    note(log, "every machine woken".into());
}

/// After the faults heal, every group elects a leader and a booking is answered, within bounds.
async fn liveness(cluster: &Arc<Mutex<SimCluster>>, router: &Router, shop: &Shop, shards: u32) -> Result<(), String> {
    let started = now_ms();
    let deadline = started + LIVENESS_TIMEOUT.as_millis() as i64;
    let groups: Vec<GroupId> = std::iter::once(GroupId::META).chain((0..shards).map(GroupId::shard)).collect();
    loop {
        let leaderless: Vec<GroupId> =
            groups.iter().copied().filter(|g| lock(cluster).leader_of(*g).is_none()).collect();
        if leaderless.is_empty() {
            break;
        }
        if now_ms() > deadline {
            return Err(format!(
                "liveness: {leaderless:?} had no leader {} s after the faults healed",
                LIVENESS_TIMEOUT.as_secs()
            ));
        }
        madsim::time::sleep(Duration::from_millis(200)).await;
    }
    let command = Command::Hold {
        event_id: shop.event.clone(),
        user: UserId::parse("liveness").expect("valid"),
        selection: Selection::General { section: "LAWN".into(), quantity: 1 },
        ttl_ms: 1_000,
        access: None,
        held_seats_max: None,
    };
    loop {
        let submit =
            Submit { command: command.clone(), request_id: RequestId([0xee; 16]), fingerprint: 9, keyed: true };
        match router.submit(submit).await {
            Ok(Outcome::Hold(_) | Outcome::Refused(_)) => return Ok(()),
            Ok(other) => return Err(format!("liveness: a booking answered {other:?}")),
            Err(e) if now_ms() > deadline => return Err(format!("liveness: no booking answered after healing: {e}")),
            Err(_) => madsim::time::sleep(Duration::from_millis(200)).await,
        }
    }
}
