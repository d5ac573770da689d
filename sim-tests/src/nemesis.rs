//! Faults, injected while the clients work: crashes and restarts (one node, or all at once, or
//! all at once the instant a client hears a booking acknowledged), disk faults (torn writes at a
//! crash, failed flushes, rotten log records), symmetric, asymmetric and leader-isolating
//! partitions, message loss and delay, paused nodes, clock skew and jumps, and membership changes
//! (a node added, a node drained).
//!
//! Disk faults carry their own check: a node restarted on a rotten newest log record must not
//! run that record's group (the node starts its other groups and reports that one damaged), a
//! node must never refuse to start or report a group damaged unless rot is to blame, and a
//! restarted node must start or refuse within `START_WAIT_MAX`.
//! What breaks these is reported with the run's violations.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use madsim::net::NetSim;
use node::{now_ms, NodeClient, NodeRequest, Router};
use raft_store::{Command, GroupId, NodeId, RequestId};
use rand::seq::SliceRandom;
use rand::Rng;
use seams::{Cluster, Submit};

use crate::cluster::{CrashDamage, SimCluster, MAX_SKEW_MS};
use crate::history::History;
use crate::net::{node_addr, SimClient};

/// How long a restarted node is given to open its disk (start or refuse) before it counts as
/// hung: start-up reads the disk, and flushes once per group at most (80 ms on a slow disk).
const START_WAIT_MAX: Duration = Duration::from_secs(10);
const START_POLL: Duration = Duration::from_millis(100);
/// How long a fault that waits for a client to hear an acknowledgement waits at most.
const ACK_WAIT: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
pub struct FaultPlan {
    pub crashes: bool,
    /// Whole-cluster crashes per run at most.
    pub crash_all: usize,
    /// Whole-cluster crashes per run, at most, the instant a client hears a booking acknowledged:
    /// the moment an acknowledged append is the newest write on every disk.
    pub crash_after_ack: usize,
    pub partitions: bool,
    pub network: bool,
    pub skew: bool,
    pub pauses: bool,
    pub membership: bool,
    /// A crash keeps a prefix of the unflushed writes, the last of them torn if it was a log
    /// append (otherwise a crash loses every unflushed write).
    pub torn_writes: bool,
    /// The chance that a crashed node's newest durable log record of one group rots.
    pub rot_chance: f64,
    /// One node's disk starts failing flushes; the node restarts a while later.
    pub fsync_errors: bool,
    /// Times per run, at most, that every disk starts failing flushes at once (every node
    /// restarts a while later).
    pub fsync_errors_all: usize,
    /// Disks flush slower than a network round trip.
    pub slow_disks: bool,
}

impl FaultPlan {
    pub fn all() -> FaultPlan {
        FaultPlan {
            crashes: true,
            crash_all: 1,
            crash_after_ack: 1,
            partitions: true,
            network: true,
            skew: true,
            pauses: true,
            membership: true,
            torn_writes: true,
            rot_chance: 0.25,
            fsync_errors: true,
            fsync_errors_all: 1,
            slow_disks: false,
        }
    }

    pub fn none() -> FaultPlan {
        FaultPlan {
            crashes: false,
            crash_all: 0,
            crash_after_ack: 0,
            partitions: false,
            network: false,
            skew: false,
            pauses: false,
            membership: false,
            torn_writes: false,
            rot_chance: 0.0,
            fsync_errors: false,
            fsync_errors_all: 0,
            slow_disks: false,
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    Crash,
    CrashAll,
    CrashAfterAck,
    FsyncError,
    FsyncErrorAll,
    Clog,
    IsolateLeader,
    OneWay,
    Loss,
    Pause,
    Skew,
    AddNode,
    DrainNode,
}

fn lock(c: &Mutex<SimCluster>) -> std::sync::MutexGuard<'_, SimCluster> {
    c.lock().unwrap_or_else(|e| e.into_inner())
}

fn rand_ms(lo: u64, hi: u64) -> Duration {
    Duration::from_millis(madsim::rand::thread_rng().gen_range(lo..hi))
}

/// Faults that have a budget per run: how many of each were injected.
#[derive(Default)]
struct Spent {
    added: bool,
    drained: bool,
    crashed_all: usize,
    crashed_after_ack: usize,
    failed_all: usize,
}

pub struct Nemesis {
    pub cluster: Arc<Mutex<SimCluster>>,
    pub router: Arc<Router>,
    pub history: Arc<History>,
    pub plan: FaultPlan,
    pub shard_count: u32,
    /// The group of the event the buyers fight over: where a leader's isolation matters.
    pub busy_group: GroupId,
    /// What was done, and when: printed with a failing seed.
    pub log: Arc<Mutex<Vec<String>>>,
    /// What the disk faults' own check found.
    pub violations: Arc<Mutex<Vec<String>>>,
}

impl Nemesis {
    fn note(&self, what: String) {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).push(format!("{:>8} ms  {what}", now_ms() % 100_000_000));
    }

    fn violation(&self, what: String) {
        self.note(format!("VIOLATION {what}"));
        self.violations.lock().unwrap_or_else(|e| e.into_inner()).push(what);
    }

    fn menu(&self, spent: &Spent) -> Vec<Fault> {
        let p = &self.plan;
        let mut menu = Vec::new();
        if p.crashes {
            menu.extend([Fault::Crash, Fault::Crash]);
        }
        if spent.crashed_all < p.crash_all {
            menu.push(Fault::CrashAll);
        }
        if spent.crashed_after_ack < p.crash_after_ack {
            menu.push(Fault::CrashAfterAck);
        }
        if p.fsync_errors {
            menu.push(Fault::FsyncError);
        }
        if spent.failed_all < p.fsync_errors_all {
            menu.push(Fault::FsyncErrorAll);
        }
        if p.partitions {
            menu.extend([Fault::Clog, Fault::IsolateLeader, Fault::IsolateLeader, Fault::OneWay]);
        }
        if p.network {
            menu.push(Fault::Loss);
        }
        if p.pauses {
            menu.push(Fault::Pause);
        }
        if p.skew {
            menu.push(Fault::Skew);
        }
        if p.membership && !spent.added {
            menu.push(Fault::AddNode);
        }
        if p.membership && spent.added && !spent.drained {
            menu.push(Fault::DrainNode);
        }
        menu
    }

    /// Injects faults until `until_ms`, each healing itself after a while.
    pub async fn run(&self, until_ms: i64) {
        let mut spent = Spent::default();
        while now_ms() < until_ms {
            madsim::time::sleep(rand_ms(300, 2_000)).await;
            let menu = self.menu(&spent);
            let Some(&fault) = menu.choose(&mut madsim::rand::thread_rng()) else { continue };
            match fault {
                Fault::Crash => self.crash_one().await,
                Fault::CrashAll => {
                    spent.crashed_all += 1;
                    self.crash_all().await;
                }
                Fault::CrashAfterAck => {
                    spent.crashed_after_ack += 1;
                    self.crash_after_ack().await;
                }
                Fault::FsyncError => self.fsync_error().await,
                Fault::FsyncErrorAll => {
                    spent.failed_all += 1;
                    self.fsync_error_all().await;
                }
                Fault::Clog => self.clog().await,
                Fault::IsolateLeader => self.isolate_leader().await,
                Fault::OneWay => self.one_way().await,
                Fault::Loss => self.loss().await,
                Fault::Pause => self.pause().await,
                Fault::Skew => self.skew(),
                Fault::AddNode => spent.added = self.add_node(4).await,
                Fault::DrainNode => spent.drained = self.drain().await,
            }
        }
    }

    /// A live node to crash while every node is up (never more than a minority down at once).
    fn one_victim(&self) -> Option<NodeId> {
        let c = lock(&self.cluster);
        let alive = c.alive_ids();
        if alive.len() < c.nodes.len() || alive.len() < 3 {
            return None;
        }
        alive.choose(&mut madsim::rand::thread_rng()).copied()
    }

    /// Crashes the nodes, with the damage the plan asks for; returns the groups whose newest log
    /// record rotted on each node.
    fn crash(&self, ids: &[NodeId]) -> Vec<(NodeId, GroupId)> {
        let mut rotten = Vec::new();
        for &id in ids {
            let damage = CrashDamage {
                torn: self.plan.torn_writes,
                rot: madsim::rand::thread_rng().gen_bool(self.plan.rot_chance),
            };
            let done = lock(&self.cluster).crash_with(id, damage);
            for what in done {
                if let Some(group) = what.rot {
                    rotten.push((id, group));
                }
                self.note(what.text);
            }
        }
        rotten
    }

    /// Restarts crashed nodes and checks how they took their disks: a node whose newest log
    /// record of a group rotted must not run that group, and no node may refuse to start unless
    /// rot is to blame. A node that refused is repaired (its rotten records put back, as
    /// restoring the replica from a good copy would) and started again.
    async fn restart(&self, ids: &[NodeId], rotten: &[(NodeId, GroupId)]) {
        for &id in ids {
            lock(&self.cluster).restart(id);
        }
        self.wait_started(ids).await;
        let mut repaired = Vec::new();
        for &id in ids {
            let rotted: Vec<GroupId> = rotten.iter().filter(|(n, _)| *n == id).map(|(_, g)| *g).collect();
            let refused = lock(&self.cluster).refused(id);
            let damaged = lock(&self.cluster).damaged(id);
            for (group, why) in damaged.iter().filter(|(g, _)| !rotted.contains(g)) {
                self.violation(format!("node {id} reports {group} damaged although nothing of it rotted: {why}"));
            }
            match refused {
                Some(why) if rotted.is_empty() => self.violation(format!("node {id} refused to start: {why}")),
                Some(why) => {
                    let count = lock(&self.cluster).repair(id);
                    self.note(format!("node {id} refused to start ({why}); {count} rotten values put back"));
                    let mut c = lock(&self.cluster);
                    c.crash(id);
                    c.restart(id);
                    repaired.push(id);
                }
                None => {
                    for group in rotted.iter().filter(|g| lock(&self.cluster).runs(id, **g)) {
                        self.violation(format!("node {id} runs {group} although its newest log record rotted"));
                    }
                    let count = lock(&self.cluster).repair(id);
                    if !damaged.is_empty() {
                        // The node started its other groups and keeps the damaged ones stopped; its
                        // supervisor puts the rotten records back, as restoring the copy would, and
                        // restarts it.
                        let groups: Vec<String> = damaged.keys().map(|g| g.to_string()).collect();
                        self.note(format!("node {id} reports {groups:?} damaged; {count} rotten values put back"));
                        let mut c = lock(&self.cluster);
                        c.crash(id);
                        c.restart(id);
                        repaired.push(id);
                    }
                }
            }
        }
        if repaired.is_empty() {
            return;
        }
        self.wait_started(&repaired).await;
        for id in repaired {
            if let Some(why) = lock(&self.cluster).refused(id) {
                self.violation(format!("node {id} refused to start on a repaired disk: {why}"));
            }
            if let Some((group, why)) = lock(&self.cluster).damaged(id).into_iter().next() {
                self.violation(format!("node {id} reports {group} damaged on a repaired disk: {why}"));
            }
        }
    }

    /// Waits until each node has started or refused to.
    async fn wait_started(&self, ids: &[NodeId]) {
        let deadline = madsim::time::Instant::now() + START_WAIT_MAX;
        loop {
            madsim::time::sleep(START_POLL).await;
            let pending: Vec<NodeId> = {
                let c = lock(&self.cluster);
                ids.iter().copied().filter(|id| !c.is_running(*id) && c.refused(*id).is_none()).collect()
            };
            if pending.is_empty() {
                return;
            }
            if madsim::time::Instant::now() > deadline {
                self.violation(format!("nodes {pending:?} neither started nor refused to in {START_WAIT_MAX:?}"));
                return;
            }
        }
    }

    /// Crashes one live node and restarts it a little later.
    async fn crash_one(&self) {
        let Some(victim) = self.one_victim() else { return };
        self.note(format!("crash node {victim}"));
        let rotten = self.crash(&[victim]);
        madsim::time::sleep(rand_ms(500, 4_000)).await;
        self.note(format!("restart node {victim}"));
        self.restart(&[victim], &rotten).await;
    }

    async fn crash_all(&self) {
        self.note("crash every node".into());
        let ids: Vec<NodeId> = lock(&self.cluster).alive_ids();
        let rotten = self.crash(&ids);
        madsim::time::sleep(rand_ms(500, 3_000)).await;
        self.note("restart every node".into());
        self.restart(&ids, &rotten).await;
    }

    /// Crashes every node the instant a client hears a hold or an order acknowledged: a store
    /// that acknowledged before its write was durable loses it everywhere at once.
    async fn crash_after_ack(&self) {
        self.note("crash every node at the next acknowledgement".into());
        if madsim::time::timeout(ACK_WAIT, self.history.next_acknowledgement()).await.is_err() {
            self.note("no acknowledgement came".into());
            return;
        }
        self.crash_all().await;
    }

    /// One node's disk fails its flushes from now on; its groups stop as they next flush, and
    /// the node is restarted a while later, as its supervisor would.
    async fn fsync_error(&self) {
        let Some(victim) = self.one_victim() else { return };
        self.note(format!("node {victim}'s disk fails every flush from now on"));
        lock(&self.cluster).fail_flushes(victim);
        madsim::time::sleep(rand_ms(300, 3_000)).await;
        self.note(format!("crash node {victim} (failed disk)"));
        let rotten = self.crash(&[victim]);
        madsim::time::sleep(rand_ms(200, 1_000)).await;
        self.restart(&[victim], &rotten).await;
    }

    /// Every disk fails its flushes from now on; every node restarts a while later. Nothing
    /// written meanwhile was durable, so nothing acknowledged meanwhile may be lost.
    async fn fsync_error_all(&self) {
        self.note("every disk fails every flush from now on".into());
        let ids: Vec<NodeId> = lock(&self.cluster).alive_ids();
        for id in &ids {
            lock(&self.cluster).fail_flushes(*id);
        }
        madsim::time::sleep(rand_ms(1_000, 3_000)).await;
        self.crash_all().await;
    }

    fn random_node(&self) -> Option<NodeId> {
        let c = lock(&self.cluster);
        c.alive_ids().choose(&mut madsim::rand::thread_rng()).copied()
    }

    async fn clog(&self) {
        let Some(id) = self.random_node() else { return };
        self.note(format!("partition node {id} from everything"));
        lock(&self.cluster).clog(id);
        madsim::time::sleep(rand_ms(500, 4_000)).await;
        lock(&self.cluster).unclog(id);
        self.note(format!("heal node {id}"));
    }

    /// Cuts a group's leader off from the other nodes, but not from the clients: it may go on
    /// believing it leads while the others elect a new leader.
    async fn isolate_leader(&self) {
        // Mostly the busy group's leader: the one clients read from and write to.
        let group = match madsim::rand::thread_rng().gen_range(0..10) {
            0..=5 => self.busy_group,
            6..=7 => GroupId::shard(madsim::rand::thread_rng().gen_range(0..self.shard_count)),
            _ => GroupId::META,
        };
        let (leader, others) = {
            let c = lock(&self.cluster);
            let Some(leader) = c.leader_of(group) else { return };
            let others: Vec<NodeId> = c.nodes.keys().copied().filter(|id| *id != leader).collect();
            (leader, others)
        };
        self.note(format!("isolate node {leader} (leader of {group}) from the other nodes"));
        for o in &others {
            lock(&self.cluster).cut(leader, *o);
        }
        if group == self.busy_group {
            // The window a stale leader's reads need: the others elect a leader and acknowledge
            // a write while the cut-off one may still answer reads. Hold the cut until a client
            // hears an acknowledgement well after the cut, then a while longer.
            madsim::time::sleep(rand_ms(1_000, 3_000)).await;
            let acknowledged = madsim::time::timeout(ACK_WAIT, self.history.next_acknowledgement()).await.is_ok();
            self.note(format!("a client heard an acknowledgement while node {leader} was cut off: {acknowledged}"));
            madsim::time::sleep(rand_ms(1_000, 2_000)).await;
        } else {
            madsim::time::sleep(rand_ms(1_000, 5_000)).await;
        }
        lock(&self.cluster).heal();
        self.note(format!("heal node {leader}"));
    }

    async fn one_way(&self) {
        let pair = {
            let c = lock(&self.cluster);
            let ids: Vec<NodeId> = c.nodes.keys().copied().collect();
            let mut two = ids.choose_multiple(&mut madsim::rand::thread_rng(), 2).copied();
            two.next().zip(two.next())
        };
        let Some((from, to)) = pair else { return };
        self.note(format!("drop messages from node {from} to node {to}"));
        lock(&self.cluster).clog_one_way(from, to);
        madsim::time::sleep(rand_ms(500, 3_000)).await;
        lock(&self.cluster).heal();
        self.note("heal links".into());
    }

    async fn loss(&self) {
        let rate = madsim::rand::thread_rng().gen_range(0.02..0.15);
        let lo = madsim::rand::thread_rng().gen_range(1..5);
        let hi = lo + madsim::rand::thread_rng().gen_range(1..40);
        self.note(format!("lose {:.0}% of messages, delay {lo}..{hi} ms", rate * 100.0));
        NetSim::current().update_config(|c| {
            c.packet_loss_rate = rate;
            c.send_latency = Duration::from_millis(lo)..Duration::from_millis(hi);
        });
        madsim::time::sleep(rand_ms(1_000, 4_000)).await;
        NetSim::current().update_config(|c| {
            c.packet_loss_rate = 0.0;
            c.send_latency = Duration::from_millis(1)..Duration::from_millis(10);
        });
        self.note("network back to normal".into());
    }

    async fn pause(&self) {
        let Some(id) = self.random_node() else { return };
        let sim_id = lock(&self.cluster).sim_id(id);
        self.note(format!("pause node {id}"));
        madsim::runtime::Handle::current().pause(sim_id);
        madsim::time::sleep(rand_ms(300, 3_000)).await;
        madsim::runtime::Handle::current().resume(sim_id);
        self.note(format!("resume node {id}"));
    }

    /// Skews a node's clock, or makes it jump forward.
    fn skew(&self) {
        let Some(id) = self.random_node() else { return };
        let skew = madsim::rand::thread_rng().gen_range(-MAX_SKEW_MS..=MAX_SKEW_MS);
        self.note(format!("node {id}'s clock is now {skew:+} ms off"));
        if let Some(n) = lock(&self.cluster).nodes.get(&id) {
            n.clock.set_skew_ms(skew);
        }
    }

    async fn add_node(&self, id: NodeId) -> bool {
        self.note(format!("add node {id}"));
        lock(&self.cluster).add_node(id);
        madsim::time::sleep(Duration::from_millis(300)).await;
        let join = NodeRequest::Join { shard_count: self.shard_count };
        if SimClient.call(&node_addr(id), join, Duration::from_secs(5)).await.is_err() {
            self.note(format!("node {id} did not join"));
            return true;
        }
        let command = Command::AddNode { id, addr: node_addr(id) };
        let submit = Submit { command, request_id: RequestId([id as u8; 16]), fingerprint: 1, keyed: true };
        match self.router.submit(submit).await {
            Ok(o) => self.note(format!("node {id} added: {}", short(&o))),
            Err(e) => self.note(format!("adding node {id} failed: {e}")),
        }
        true
    }

    async fn drain(&self) -> bool {
        let victim = *[1, 2, 3].choose(&mut madsim::rand::thread_rng()).expect("three nodes");
        self.note(format!("drain node {victim}"));
        let submit = Submit {
            command: Command::DrainNode { id: victim },
            request_id: RequestId([200; 16]),
            fingerprint: 2,
            keyed: true,
        };
        match self.router.submit(submit).await {
            Ok(o) => self.note(format!("drain of node {victim}: {}", short(&o))),
            Err(e) => self.note(format!("drain of node {victim} failed: {e}")),
        }
        true
    }
}

fn short(o: &raft_store::Outcome) -> String {
    let text = format!("{o:?}");
    text.chars().take(80).collect()
}
