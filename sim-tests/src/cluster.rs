//! A Boxoffice cluster inside the simulation: each node a madsim node running the production
//! `Node` on an in-memory store with crash semantics, talking over madsim's network.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use madsim::net::NetSim;
use madsim::runtime::{Handle, NodeHandle};
use node::{Clock, Node, NodeReply, NodeRequest, NodeSetup, RaftTuning};
use raft_store::{GroupId, Kv, LogStore, MemKv, NodeId};
use rand::seq::SliceRandom;
use rand::Rng;

use crate::net::{node_addr, node_ip, serve, SimClient};

/// Largest clock skew the nemesis gives a node, either way. The checks allow for it.
pub const MAX_SKEW_MS: i64 = 2_000;
/// Every node's clock is within `MAX_SKEW_MS` of true time, so two clocks are at most twice that
/// apart: the offset the nodes are told to allow for.
const CLOCK_OFFSET_MAX_MS: i64 = 2 * MAX_SKEW_MS;
/// Flushes take this long in the simulation, so a crash can fall between a write and its flush.
const FLUSH_DELAY_MIN: Duration = Duration::from_micros(200);
const FLUSH_DELAY_MAX: Duration = Duration::from_millis(15);
/// Slow disks' flushes take longer than the three network hops (at most 10 ms each) from a
/// leader's append to a client's acknowledgement: an acknowledgement that did not wait for its
/// flush reaches the client before the entry is durable anywhere.
const SLOW_FLUSH_DELAY_MIN: Duration = Duration::from_millis(40);
const SLOW_FLUSH_DELAY_MAX: Duration = Duration::from_millis(80);

/// Raft timing for the simulation: fast elections, frequent snapshots (so catching up by
/// snapshot is exercised), a short log behind them.
fn tuning() -> RaftTuning {
    RaftTuning {
        heartbeat_ms: 100,
        election_min_ms: 400,
        election_max_ms: 800,
        snapshot_every_logs: 300,
        logs_kept_after_snapshot: 50,
        ..RaftTuning::default()
    }
}

type Registry<T> = Arc<Mutex<BTreeMap<NodeId, T>>>;

/// A node's two stores, as in production: the Raft logs' and the state machines' (each with its
/// own flushes, so a crash can keep a state write whose log append it loses, and the reverse).
#[derive(Clone)]
struct Disks {
    log: Arc<MemKv>,
    state: Arc<MemKv>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct SimNode {
    pub id: NodeId,
    handle: NodeHandle,
    pub clock: Clock,
    pub alive: bool,
}

/// What a crash does to the node's disk besides losing what was not flushed.
#[derive(Clone, Copy, Debug, Default)]
pub struct CrashDamage {
    /// A prefix of the unflushed writes survives, the last of them torn if it was a log append.
    pub torn: bool,
    /// One bit of the newest durable log record of one of the node's groups flips.
    pub rot: bool,
}

/// One thing a crash did to a disk.
pub struct Damage {
    pub text: String,
    /// The group whose newest log record rotted.
    pub rot: Option<GroupId>,
}

pub struct SimCluster {
    handle: Handle,
    pub nodes: BTreeMap<NodeId, SimNode>,
    /// Each node's store; replaced by what survives when the node crashes.
    storage: Registry<Disks>,
    /// The running `Node` of each live node, for inspecting state.
    live: Registry<Arc<Node>>,
    /// Why a node's last start failed, until it is restarted.
    refused: Registry<String>,
    /// Bounds of every disk's flush time.
    flush_delay: (Duration, Duration),
}

impl SimCluster {
    pub fn new() -> SimCluster {
        SimCluster {
            handle: Handle::current(),
            nodes: BTreeMap::new(),
            storage: Arc::default(),
            live: Arc::default(),
            refused: Arc::default(),
            flush_delay: (FLUSH_DELAY_MIN, FLUSH_DELAY_MAX),
        }
    }

    /// A cluster whose disks flush slower than a network round trip.
    pub fn with_slow_disks() -> SimCluster {
        SimCluster { flush_delay: (SLOW_FLUSH_DELAY_MIN, SLOW_FLUSH_DELAY_MAX), ..SimCluster::new() }
    }

    /// Starts a node process (empty store), not yet part of any cluster.
    pub fn add_node(&mut self, id: NodeId) {
        let (min, max) = self.flush_delay;
        lock(&self.storage)
            .insert(id, Disks { log: MemKv::with_flush_delay(min, max), state: MemKv::with_flush_delay(min, max) });
        let (storage, live, clock) = (self.storage.clone(), self.live.clone(), Clock::new(CLOCK_OFFSET_MAX_MS));
        let refused = self.refused.clone();
        let boot_clock = clock.clone();
        let handle = self
            .handle
            .create_node()
            .name(format!("node-{id}"))
            .ip(node_ip(id))
            .init(move || {
                let (storage, live, clock) = (storage.clone(), live.clone(), boot_clock.clone());
                let refused = refused.clone();
                async move {
                    let disks = lock(&storage).get(&id).cloned().expect("stores for every node");
                    let setup = NodeSetup {
                        node_id: id,
                        advertise_addr: node_addr(id),
                        kv: disks.state,
                        log_kv: disks.log,
                        client: Arc::new(SimClient),
                        tuning: tuning(),
                        clock,
                    };
                    // A node that finds its disk damaged refuses to start, as the binary exits:
                    // it stays down until the nemesis repairs the disk and restarts it.
                    let node = match Node::start(setup).await {
                        Ok(node) => node,
                        Err(e) => {
                            lock(&refused).insert(id, e.to_string());
                            return;
                        }
                    };
                    lock(&live).insert(id, node.clone());
                    madsim::task::spawn(node::rebalance_duty(Arc::downgrade(&node)));
                    serve(node).await;
                }
            })
            .build();
        self.nodes.insert(id, SimNode { id, handle, clock, alive: true });
    }

    /// The simulator's id of a node (for network faults).
    pub fn sim_id(&self, id: NodeId) -> madsim::task::NodeId {
        self.nodes[&id].handle.id()
    }

    /// Kills the node's process: everything not flushed is lost.
    pub fn crash(&mut self, id: NodeId) {
        self.crash_with(id, CrashDamage::default());
    }

    /// Kills the node's process, doing `damage` to its disk; says what the damage was.
    pub fn crash_with(&mut self, id: NodeId, damage: CrashDamage) -> Vec<Damage> {
        let Some(node) = self.nodes.get_mut(&id) else { return Vec::new() };
        if !node.alive {
            return Vec::new();
        }
        self.handle.kill(node.handle.id());
        node.alive = false;
        lock(&self.live).remove(&id);
        let mut storage = lock(&self.storage);
        let mut notes = Vec::new();
        let mut torn_tree = None;
        let survivor = if damage.torn {
            let (from, to) = LogStore::record_keys();
            let log_append = |tree: &str, key: &[u8]| {
                raft_store::parse_group_tree(tree).is_some() && from.as_slice() <= key && key < to.as_slice()
            };
            let (survivor, loss) = storage[&id].log.crash_torn(&mut madsim::rand::thread_rng(), &log_append);
            if let Some(t) = loss.torn {
                let text = format!(
                    "node {id}: {} of {} unflushed writes kept, then {} log key {:02x?} torn at {} of {} bytes",
                    loss.kept, loss.unflushed, t.tree, t.key, t.bytes_kept, t.bytes
                );
                notes.push(Damage { text, rot: None });
                torn_tree = Some(t.tree);
            }
            survivor
        } else {
            storage[&id].log.crash()
        };
        if damage.rot {
            notes.extend(rot_newest_log_record(id, &survivor, torn_tree.as_deref()));
        }
        let state = storage[&id].state.crash();
        storage.insert(id, Disks { log: survivor, state });
        notes
    }

    /// Starts a crashed node again on what its store kept.
    pub fn restart(&mut self, id: NodeId) {
        let Some(node) = self.nodes.get_mut(&id) else { return };
        if node.alive {
            return;
        }
        lock(&self.refused).remove(&id);
        self.handle.restart(node.handle.id());
        node.alive = true;
    }

    /// Whether the node has started (and not crashed since).
    pub fn is_running(&self, id: NodeId) -> bool {
        lock(&self.live).contains_key(&id)
    }

    /// Whether the live node runs `group` (opened it, and its Raft has not stopped).
    pub fn runs(&self, id: NodeId, group: GroupId) -> bool {
        let live = lock(&self.live);
        let Some(g) = live.get(&id).and_then(|n| n.group(group)) else { return false };
        let state = g.raft.metrics().borrow().state;
        state != openraft::ServerState::Shutdown
    }

    /// The groups the live node reports damaged (did not open at its start), and why.
    pub fn damaged(&self, id: NodeId) -> BTreeMap<GroupId, String> {
        lock(&self.live).get(&id).map(|n| n.damaged_groups()).unwrap_or_default()
    }

    /// Why the node's last start failed, if it did.
    pub fn refused(&self, id: NodeId) -> Option<String> {
        lock(&self.refused).get(&id).cloned()
    }

    /// Puts back every value rot changed on the node's disk; returns how many.
    pub fn repair(&self, id: NodeId) -> usize {
        lock(&self.storage).get(&id).map_or(0, |disks| disks.log.repair() + disks.state.repair())
    }

    /// Makes the node's disk fail its next flush and every one after, until the node crashes.
    pub fn fail_flushes(&self, id: NodeId) {
        if let Some(disks) = lock(&self.storage).get(&id) {
            disks.log.fail_flushes();
            disks.state.fail_flushes();
        }
    }

    pub fn clog(&self, id: NodeId) {
        NetSim::current().clog_node(self.sim_id(id));
    }

    pub fn unclog(&self, id: NodeId) {
        NetSim::current().unclog_node(self.sim_id(id));
    }

    /// Cuts the link between two nodes, both ways.
    pub fn cut(&self, a: NodeId, b: NodeId) {
        let net = NetSim::current();
        net.clog_link(self.sim_id(a), self.sim_id(b));
        net.clog_link(self.sim_id(b), self.sim_id(a));
    }

    pub fn clog_one_way(&self, from: NodeId, to: NodeId) {
        NetSim::current().clog_link(self.sim_id(from), self.sim_id(to));
    }

    /// Undoes every link and node clog between cluster nodes.
    pub fn heal(&self) {
        let net = NetSim::current();
        let ids: Vec<_> = self.nodes.keys().map(|id| self.sim_id(*id)).collect();
        for a in &ids {
            net.unclog_node(*a);
            for b in &ids {
                if a != b {
                    net.unclog_link(*a, *b);
                }
            }
        }
    }

    pub fn alive_ids(&self) -> Vec<NodeId> {
        self.nodes.values().filter(|n| n.alive).map(|n| n.id).collect()
    }

    /// The node that leads `group`, as the live nodes see it (highest term wins).
    pub fn leader_of(&self, group: GroupId) -> Option<NodeId> {
        let live = lock(&self.live);
        live.values()
            .filter_map(|n| n.group(group))
            .filter_map(|g| {
                let m = g.raft.metrics().borrow().clone();
                m.current_leader.map(|l| (m.current_term, l))
            })
            .max()
            .map(|(_, l)| l)
    }

    /// The nodes, as `cluster init` lists them.
    pub fn members(&self) -> Vec<(NodeId, String)> {
        self.nodes.keys().map(|id| (*id, node_addr(*id))).collect()
    }
}

/// Flips one bit of the newest log record of one of the groups on `kv`: the record a restarted
/// node reads first. Not in `torn_tree`: a torn record is a write that never completed, not data
/// on the disk that could rot, and the record before it is not the one start-up reads first.
fn rot_newest_log_record(id: NodeId, kv: &MemKv, torn_tree: Option<&str>) -> Option<Damage> {
    let (from, to) = LogStore::record_keys();
    let names = kv.tree_names().ok()?;
    let newest: Vec<(String, Vec<u8>, usize)> = names
        .into_iter()
        .filter(|name| raft_store::parse_group_tree(name).is_some() && Some(name.as_str()) != torn_tree)
        .filter_map(|name| {
            let (key, value) = kv.tree(&name).ok()?.last(&from, &to).ok()??;
            Some((name, key, value.len()))
        })
        .filter(|(_, _, len)| *len > 0)
        .collect();
    let mut rng = madsim::rand::thread_rng();
    let (tree, key, len) = newest.choose(&mut rng)?;
    let (at, bit) = (rng.gen_range(0..*len), rng.gen_range(0..8));
    let text = format!("node {id}: {tree} log key {key:02x?} rots (byte {at} of {len}, bit {bit})");
    kv.corrupt(tree, key, at, 1 << bit).then(|| Damage { text, rot: raft_store::parse_group_tree(tree) })
}

/// Asks the first node, through the simulated network, to create a cluster of `nodes`.
pub async fn init_cluster(nodes: Vec<(NodeId, String)>, shard_count: u32, replication: u32) -> Result<(), String> {
    {
        let first = nodes.first().map(|(_, addr)| addr.clone()).ok_or("no nodes")?;
        let request = NodeRequest::InitCluster { nodes, shard_count, replication };
        match node::NodeClient::call(&SimClient, &first, request, Duration::from_secs(60)).await {
            Ok(NodeReply::Layout(Some(_))) => Ok(()),
            Ok(other) => Err(format!("{other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }
}

impl SimCluster {
    /// Every live replica's state machine of `group`: (node, last applied index, encoded state).
    pub fn replica_states(&self, group: GroupId) -> Vec<(NodeId, u64, Vec<u8>)> {
        let live = lock(&self.live);
        live.iter()
            .filter_map(|(id, n)| n.group(group).map(|g| (*id, g)))
            .map(|(id, g)| {
                let applied = g.state.read();
                let mut bytes = applied.machine.encode().unwrap_or_default();
                // The cold records too (remembered outcomes, the archive), as a snapshot at this
                // index would hold them: every replica must have written the same ones.
                let (index, time_ms) = (applied.machine.last_index(), applied.machine.last_time_ms());
                let view = g.state.cold().view(index, time_ms);
                let mut after: Option<Vec<u8>> = None;
                loop {
                    match view.page(after.as_deref(), 1_024) {
                        Ok(Some((records, last))) => {
                            for (key, value) in records {
                                bytes.extend_from_slice(&key);
                                bytes.extend_from_slice(&value);
                            }
                            after = Some(last);
                        }
                        Ok(None) => break,
                        Err(e) => {
                            bytes.extend_from_slice(format!("unreadable cold store: {e}").as_bytes());
                            break;
                        }
                    }
                }
                (id, index, bytes)
            })
            .collect()
    }

    /// Runs the state machine's own invariant checks on every live replica of `group`.
    pub fn check_replica_invariants(&self, group: GroupId) -> Result<(), String> {
        let live = lock(&self.live);
        for (id, n) in live.iter() {
            if let Some(g) = n.group(group) {
                g.state.read().machine.check_invariants().map_err(|e| format!("node {id}, {group}: {e}"))?;
            }
        }
        Ok(())
    }
}

impl Default for SimCluster {
    fn default() -> Self {
        Self::new()
    }
}
