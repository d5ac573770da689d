//! Faults, injected while the clients work: crashes and restarts (one node, or all at once),
//! symmetric, asymmetric and leader-isolating partitions, message loss and delay, paused nodes,
//! clock skew and jumps, and membership changes (a node added, a node drained).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use madsim::net::NetSim;
use node::{now_ms, NodeClient, NodeRequest, Router};
use raft_store::{Command, GroupId, NodeId, RequestId};
use rand::seq::SliceRandom;
use rand::Rng;
use seams::{Cluster, Submit};

use crate::cluster::{SimCluster, MAX_SKEW_MS};
use crate::net::{node_addr, SimClient};

#[derive(Clone, Debug)]
pub struct FaultPlan {
    pub crashes: bool,
    /// Whole-cluster crashes per run at most.
    pub crash_all: usize,
    pub partitions: bool,
    pub network: bool,
    pub skew: bool,
    pub pauses: bool,
    pub membership: bool,
}

impl FaultPlan {
    pub fn all() -> FaultPlan {
        FaultPlan {
            crashes: true,
            crash_all: 1,
            partitions: true,
            network: true,
            skew: true,
            pauses: true,
            membership: true,
        }
    }

    pub fn none() -> FaultPlan {
        FaultPlan {
            crashes: false,
            crash_all: 0,
            partitions: false,
            network: false,
            skew: false,
            pauses: false,
            membership: false,
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    Crash,
    CrashAll,
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

pub struct Nemesis {
    pub cluster: Arc<Mutex<SimCluster>>,
    pub router: Arc<Router>,
    pub plan: FaultPlan,
    pub shard_count: u32,
    /// What was done, and when: printed with a failing seed.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Nemesis {
    fn note(&self, what: String) {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).push(format!("{:>8} ms  {what}", now_ms() % 100_000_000));
    }

    fn menu(&self, added: bool, drained: bool, crashed_all: usize) -> Vec<Fault> {
        let p = &self.plan;
        let mut menu = Vec::new();
        if p.crashes {
            menu.extend([Fault::Crash, Fault::Crash]);
        }
        if crashed_all < p.crash_all {
            menu.push(Fault::CrashAll);
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
        if p.membership && !added {
            menu.push(Fault::AddNode);
        }
        if p.membership && added && !drained {
            menu.push(Fault::DrainNode);
        }
        menu
    }

    /// Injects faults until `until_ms`, each healing itself after a while.
    pub async fn run(&self, until_ms: i64) {
        let (mut added, mut drained, mut crashed_all) = (false, false, 0);
        while now_ms() < until_ms {
            madsim::time::sleep(rand_ms(300, 2_000)).await;
            let menu = self.menu(added, drained, crashed_all);
            let Some(&fault) = menu.choose(&mut madsim::rand::thread_rng()) else { continue };
            match fault {
                Fault::Crash => self.crash_one().await,
                Fault::CrashAll => {
                    crashed_all += 1;
                    self.crash_all().await;
                }
                Fault::Clog => self.clog().await,
                Fault::IsolateLeader => self.isolate_leader().await,
                Fault::OneWay => self.one_way().await,
                Fault::Loss => self.loss().await,
                Fault::Pause => self.pause().await,
                Fault::Skew => self.skew(),
                Fault::AddNode => added = self.add_node(4).await,
                Fault::DrainNode => drained = self.drain().await,
            }
        }
    }

    /// Crashes one live node (never more than a minority at once) and restarts it a little later.
    async fn crash_one(&self) {
        let victim = {
            let c = lock(&self.cluster);
            let alive = c.alive_ids();
            if alive.len() < c.nodes.len() || alive.len() < 3 {
                return;
            }
            *alive.choose(&mut madsim::rand::thread_rng()).expect("live nodes")
        };
        self.note(format!("crash node {victim}"));
        lock(&self.cluster).crash(victim);
        madsim::time::sleep(rand_ms(500, 4_000)).await;
        self.note(format!("restart node {victim}"));
        lock(&self.cluster).restart(victim);
    }

    async fn crash_all(&self) {
        self.note("crash every node".into());
        let ids: Vec<NodeId> = lock(&self.cluster).alive_ids();
        for id in &ids {
            lock(&self.cluster).crash(*id);
        }
        madsim::time::sleep(rand_ms(500, 3_000)).await;
        self.note("restart every node".into());
        for id in &ids {
            lock(&self.cluster).restart(*id);
        }
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
        let group = if madsim::rand::thread_rng().gen_bool(0.8) {
            GroupId::shard(madsim::rand::thread_rng().gen_range(0..self.shard_count))
        } else {
            GroupId::META
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
        madsim::time::sleep(rand_ms(1_000, 5_000)).await;
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
