//! Restoring a group from a backup into a new cluster.
//!
//! A backup holds each group's snapshot as the old cluster took it, and its Raft metadata (log
//! ids and their terms, the membership) belongs to the old cluster's logs, which the new cluster
//! does not have. A restored group starts a new log, and its state is *rebased* onto it:
//!
//! - It stands at [`RESTORED_INDEX`]. Every replica installs the same snapshot, at log id
//!   (term 0, index 1) with the new cluster's membership; the first leader's term is 1 and the
//!   new log goes on from index 2. The log before it does not exist anywhere, so a replica added
//!   later catches up from a snapshot, never by replaying entries onto an empty state.
//! - The change feed restarts there: the old log's change records go, and a reader from before
//!   index 1 (a fresh indexer, an api's seat feed) hears `Compacted` and re-reads the shard.
//! - Every cold record is re-stamped with index 1, so the new log's entries see it
//!   ([`ColdRecord::visible_to`]: written strictly before them) and a snapshot at 1 holds it.
//!   Remembered outcomes keep their expiry (apply time goes on from the backup's: the machine's
//!   time never runs backwards), so a retry within 24 hours of its first attempt still gets its
//!   first answer; the archive stays for good.
//! - The meta group keeps its catalog (venues) and takes the new cluster's layout (its nodes,
//!   their addresses and the placement); the shard count must be the backup's, since it is part of
//!   the event → shard map.
//!
//! The rebased stream is made once, from the backup, and sent to every replica, which installs
//! it as it is ([`crate::StateMachineStore::seed`]): replicas agree from the first entry on.

use std::collections::{BTreeMap, BTreeSet};

use openraft::{CommittedLeaderId, Membership};

use crate::codec::{self, CodecError};
use crate::cold::ColdError;
use crate::ids::{GroupId, NodeId};
use crate::layout::Layout;
use crate::machine::Machine;
use crate::raft_types::{LogId, NodeAddr, SnapshotMeta, StoredMembership};
use crate::snapshot::{SnapshotChunk, SnapshotError, StreamCheck, StreamDigest, SNAPSHOT_CHUNK_BYTES_MAX};

/// The log index a restored group's state stands at in its new cluster.
pub const RESTORED_INDEX: u64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("the backup's machine does not decode: {0}")]
    Machine(#[source] CodecError),
    #[error("the backup holds {found}, not {expected}")]
    WrongGroup { expected: GroupId, found: GroupId },
    #[error("the backup's cluster has {found} shards, the new one {expected}: the shard count is part of the event → shard map")]
    ShardCount { expected: u32, found: u32 },
    #[error("encode: {0}")]
    Encode(#[source] CodecError),
    #[error(transparent)]
    Cold(#[from] ColdError),
    #[error("{group} has no replicas in the new layout")]
    NoReplicas { group: GroupId },
}

/// Where a restored group starts in its new cluster.
#[derive(Clone, Debug)]
pub struct RestoreTarget {
    pub group: GroupId,
    pub shard_count: u32,
    /// The group's voters and learners, with their addresses.
    pub voters: BTreeMap<NodeId, String>,
    pub learners: BTreeMap<NodeId, String>,
    /// The new cluster's layout, which the meta group takes (`None` for a shard).
    pub layout: Option<Layout>,
}

impl RestoreTarget {
    /// `group` as the new cluster's `layout` places it.
    pub fn new(group: GroupId, layout: &Layout) -> Result<RestoreTarget, RestoreError> {
        let addrs = |ids: &mut dyn Iterator<Item = NodeId>| -> BTreeMap<NodeId, String> {
            ids.filter_map(|id| layout.addr(id).map(|a| (id, a.to_owned()))).collect()
        };
        let (voters, learners, meta_layout) = match group.as_shard() {
            None => {
                let (voters, learners) = layout.meta_members();
                (addrs(&mut voters.into_iter()), addrs(&mut learners.into_iter()), Some(layout.clone()))
            }
            Some(shard) => {
                let replicas = layout.placement.get(shard as usize).cloned().unwrap_or_default();
                (addrs(&mut replicas.into_iter()), BTreeMap::new(), None)
            }
        };
        if voters.is_empty() {
            return Err(RestoreError::NoReplicas { group });
        }
        Ok(RestoreTarget { group, shard_count: layout.shard_count, voters, learners, layout: meta_layout })
    }

    /// Every member: where the restored stream goes.
    pub fn members(&self) -> impl Iterator<Item = (&NodeId, &String)> {
        self.voters.iter().chain(&self.learners)
    }

    /// The restored snapshot's metadata: the same on every replica.
    fn meta(&self, old: &SnapshotMeta) -> SnapshotMeta {
        let log_id = LogId::new(CommittedLeaderId::new(0, 0), RESTORED_INDEX);
        let voters: BTreeSet<NodeId> = self.voters.keys().copied().collect();
        let nodes: BTreeMap<NodeId, NodeAddr> =
            self.members().map(|(id, addr)| (*id, NodeAddr { addr: addr.clone() })).collect();
        SnapshotMeta {
            last_log_id: Some(log_id),
            last_membership: StoredMembership::new(Some(log_id), Membership::new(vec![voters], nodes)),
            snapshot_id: format!("restored-{}", old.snapshot_id),
        }
    }
}

/// Turns a backup's snapshot stream into the stream every replica of the restored group
/// installs. It checks the backup's stream as it goes (order, lengths, records, digest) and
/// emits a stream of its own, with its own digest.
pub struct Rebaser {
    target: RestoreTarget,
    check: StreamCheck,
    hot: Vec<u8>,
    /// The rebased stream's digest, from when its beginning and hot part are out.
    out: Option<StreamDigest>,
    started: bool,
}

impl Rebaser {
    /// Starts from the backup stream's first chunk.
    pub fn new(first: &SnapshotChunk, target: RestoreTarget) -> Result<Rebaser, RestoreError> {
        Ok(Rebaser { target, check: StreamCheck::begin(first)?, hot: Vec::new(), out: None, started: false })
    }

    /// Takes the backup's next chunk; returns the chunks of the restored stream it completes
    /// (none while the hot part is still arriving; its last chunk answers the backup's end).
    pub fn push(&mut self, chunk: &SnapshotChunk) -> Result<Vec<SnapshotChunk>, RestoreError> {
        let records = self.check.push(chunk)?;
        let mut out = Vec::new();
        match chunk {
            SnapshotChunk::Begin { .. } => {}
            SnapshotChunk::Hot(bytes) => self.hot.extend_from_slice(bytes),
            SnapshotChunk::Cold(_) => {
                self.start(&mut out)?;
                let digest = self.out.as_mut().ok_or(SnapshotError::Stream("no beginning"))?;
                let mut rebased = Vec::with_capacity(records.len());
                for (key, mut record) in records {
                    record.index = RESTORED_INDEX;
                    let value = codec::encode(&record).map_err(RestoreError::Encode)?;
                    digest.record(&key, &value);
                    rebased.push((key, value));
                }
                out.push(SnapshotChunk::Cold(rebased));
            }
            SnapshotChunk::End { .. } => {
                self.start(&mut out)?;
                let digest = self.out.take().ok_or(SnapshotError::Stream("no beginning"))?;
                out.push(digest.end());
            }
        }
        Ok(out)
    }

    /// Whether the backup's stream ended, checked, and the restored one with it.
    pub fn ended(&self) -> bool {
        self.check.ended()
    }

    /// The rebased machine's beginning and hot part, once the backup's hot part is complete.
    fn start(&mut self, out: &mut Vec<SnapshotChunk>) -> Result<(), RestoreError> {
        if self.started {
            return Ok(());
        }
        self.started = true;
        let mut machine = Machine::decode(&std::mem::take(&mut self.hot)).map_err(RestoreError::Machine)?;
        if machine.group() != self.target.group {
            return Err(RestoreError::WrongGroup { expected: self.target.group, found: machine.group() });
        }
        if machine.shard_count() != self.target.shard_count {
            return Err(RestoreError::ShardCount { expected: self.target.shard_count, found: machine.shard_count() });
        }
        machine.rebase(RESTORED_INDEX, self.target.layout.clone());
        let hot = machine.encode().map_err(RestoreError::Encode)?;
        let meta = self.target.meta(self.check.meta());
        out.push(SnapshotChunk::Begin { meta, time_ms: self.check.time_ms(), hot_bytes: hot.len() as u64 });
        let mut digest = StreamDigest::default();
        for piece in hot.chunks(SNAPSHOT_CHUNK_BYTES_MAX) {
            digest.hot(piece);
            out.push(SnapshotChunk::Hot(piece.to_vec()));
        }
        self.out = Some(digest);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::cold::{ColdRead, ColdStore};
    use crate::command::{Actor, Answer, ChangesPage, Command, Outcome, Proposal, Query, Request, Selection};
    use crate::ids::{shard_of, EventId, OrderId, RequestId, UserId, VenueId};
    use crate::keys;
    use crate::kv::{Kv, MemKv};
    use crate::model::*;
    use crate::sm_store::StateMachineStore;
    use crate::snapshot::{GroupSnapshot, SnapshotWriter};

    const SHARDS: u32 = 4;
    const T0: i64 = 1_000_000;
    const DAY_MS: i64 = 86_400_000;

    fn venue() -> Venue {
        let rows = vec![Row { id: "A".into(), seats: 10 }];
        Venue {
            venue_id: VenueId::from_u64(1),
            name: "Arena".into(),
            city: "Lisbon".into(),
            country: "PT".into(),
            location: GeoPoint { lat: 38.7, lon: -9.1 },
            sections: vec![Section { id: "FLOOR".into(), name: "Floor".into(), kind: SectionKind::Seated { rows } }],
        }
    }

    fn event(id: u64) -> EventSpec {
        EventSpec {
            event_id: EventId::from_u64(id),
            name: "Concert".into(),
            description: "A night".into(),
            category: "music".into(),
            performers: vec!["Band".into()],
            venue: venue(),
            starts_at_ms: T0 + DAY_MS,
            on_sale_at_ms: T0,
            prices: vec![SectionPrice { section: "FLOOR".into(), price: Money::new(5_000, Currency::USD) }],
            per_user_limit: None,
            high_traffic: false,
        }
    }

    /// A machine and its cold store on `kv`, applying entries in order.
    struct Group {
        machine: Machine,
        cold: ColdStore,
        index: u64,
        time_ms: i64,
    }

    impl Group {
        fn new(kv: &Arc<MemKv>, group: GroupId) -> Group {
            let tree = kv.tree(&keys::group_tree(group)).unwrap();
            let cold = ColdStore::open(kv.clone(), tree.as_ref(), group).unwrap();
            Group { machine: Machine::new(group, SHARDS), cold, index: 0, time_ms: T0 }
        }

        fn run(&mut self, request_id: Option<u8>, command: Command) -> Outcome {
            self.index += 1;
            self.time_ms += 1_000;
            let request_id = request_id.map(|n| RequestId([n; 16]));
            let proposal = Proposal { request_id, fingerprint: 7, keyed: request_id.is_some(), command };
            let done = self.machine.apply(self.index, &Request::single(self.time_ms, proposal), &self.cold).unwrap();
            self.cold.write(&done.writes).unwrap();
            done.outcomes.into_iter().next().unwrap()
        }

        fn snapshot(&self) -> Vec<SnapshotChunk> {
            let meta = SnapshotMeta { snapshot_id: format!("3-{}", self.index), ..SnapshotMeta::default() };
            let hot = Arc::new(self.machine.encode().unwrap());
            let view = self.cold.view(self.index, self.time_ms);
            let mut reader = GroupSnapshot::new(meta, self.time_ms, hot, view).reader();
            std::iter::from_fn(|| reader.next_chunk().unwrap()).collect()
        }
    }

    fn layout() -> Layout {
        Layout::initial(SHARDS, 3, &[(7, "n7:1".into()), (8, "n8:1".into()), (9, "n9:1".into())]).unwrap()
    }

    fn rebase(stream: &[SnapshotChunk], target: RestoreTarget) -> Result<Vec<SnapshotChunk>, RestoreError> {
        let mut rebaser = Rebaser::new(&stream[0], target)?;
        let mut out = Vec::new();
        for chunk in &stream[1..] {
            out.extend(rebaser.push(chunk)?);
        }
        assert!(rebaser.ended());
        Ok(out)
    }

    /// Installs a restored stream into a fresh tree of `group` on `kv`, then opens the group.
    fn install(kv: &Arc<MemKv>, group: GroupId, stream: Vec<SnapshotChunk>) -> StateMachineStore {
        let tree = kv.tree(&keys::group_tree(group)).unwrap();
        let cold = ColdStore::open(kv.clone(), tree.as_ref(), group).unwrap();
        let mut stream = stream.into_iter();
        let mut writer = SnapshotWriter::begin(&cold, stream.next().unwrap()).unwrap();
        for chunk in stream {
            writer.push(chunk).unwrap();
        }
        let snapshot = writer.finish().unwrap();
        futures_block_on(StateMachineStore::seed(kv.as_ref(), tree.as_ref(), &cold, &snapshot)).unwrap();
        drop(cold);
        StateMachineStore::open(kv.clone(), tree, group, SHARDS).unwrap()
    }

    fn futures_block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
    }

    #[test]
    fn a_restored_shard_keeps_its_bookings_outcomes_and_archive_at_index_one() {
        let source = MemKv::new();
        let ended = EventId::from_u64(1);
        let shard = shard_of(&ended, SHARDS);
        let live_n = (2..).find(|n| shard_of(&EventId::from_u64(*n), SHARDS) == shard).unwrap();
        let live = EventId::from_u64(live_n);
        let group = GroupId::shard(shard);
        let mut g = Group::new(&source, group);
        let alice = UserId::parse("alice").unwrap();
        g.run(None, Command::CreateEvent(event(1)));
        g.run(None, Command::CreateEvent(EventSpec { starts_at_ms: T0 + 30 * DAY_MS, ..event(live_n) }));
        let seat = |n: u32| Selection::Seats(vec![format!("FLOOR-A-{n}")]);
        let hold = |event_id: &EventId, n| Command::Hold {
            event_id: event_id.clone(),
            user: alice.clone(),
            selection: seat(n),
            ttl_ms: DAY_MS,
            access: None,
            held_seats_max: None,
        };
        let Outcome::Hold(first) = g.run(Some(1), hold(&ended, 1)) else { panic!("held") };
        let Outcome::Order(order) =
            g.run(None, Command::Checkout { hold_id: first.hold_id.clone(), user: alice.clone() })
        else {
            panic!("checked out")
        };
        let paid = Command::PaymentResult { order_id: order.order_id.clone(), approved: true, reference: "p".into() };
        g.run(None, paid);
        // The first event ends and moves to the archive.
        g.time_ms = T0 + 2 * DAY_MS;
        g.run(None, Command::Archive { started_before_ms: T0 + DAY_MS + 1 });
        let kept = g.run(Some(2), hold(&live, 3));
        let stream = g.snapshot();

        let target = RestoreTarget::new(group, &layout()).unwrap();
        let restored = rebase(&stream, target.clone()).unwrap();
        assert_eq!(restored, rebase(&stream, target).unwrap(), "every replica gets the same bytes");
        let SnapshotChunk::Begin { meta, .. } = &restored[0] else { panic!("a beginning") };
        assert_eq!(meta.last_log_id.map(|l| (l.leader_id.term, l.index)), Some((0, RESTORED_INDEX)));
        let voters: Vec<NodeId> = meta.last_membership.membership().voter_ids().collect();
        let mut placed = layout().placement[group.as_shard().unwrap() as usize].clone();
        placed.sort();
        assert_eq!(voters, placed);

        let target_kv = MemKv::new();
        let store = install(&target_kv, group, restored);
        let state = store.state();
        assert_eq!(state.read().machine.last_index(), RESTORED_INDEX);
        assert_eq!(state.read().last_applied.map(|l| l.index), Some(RESTORED_INDEX));
        let actor = Actor { user: alice.clone(), admin: false };
        let archived = state.query(&Query::Order { order_id: order.order_id.clone(), actor }, g.time_ms).unwrap();
        assert!(matches!(&archived, Answer::Order(Some(o)) if o.status == OrderStatus::Confirmed), "{archived:?}");
        let changes = state.query(&Query::Changes { after_index: 0, limit: 10 }, g.time_ms).unwrap();
        assert!(matches!(changes, Answer::Changes(ChangesPage::Compacted { .. })), "{changes:?}");

        // The new log's first entries see the remembered outcome and the archive.
        let mut machine = state.read().machine.clone();
        let retry =
            Proposal { request_id: Some(RequestId([2; 16])), fingerprint: 7, keyed: true, command: hold(&live, 3) };
        let done = machine.apply(2, &Request::single(g.time_ms + 1_000, retry), state.cold().as_ref()).unwrap();
        assert_eq!(done.outcomes, vec![kept], "a retry after the restore gets its first answer");
        let record = state.cold().scan(&[0], &[0xf0], 100).unwrap();
        assert!(!record.is_empty() && record.iter().all(|(_, r)| r.index == RESTORED_INDEX));
        let unknown = OrderId { event_id: live, seq: 999 };
        let gone = state.query(&Query::Order { order_id: unknown, actor: Actor { user: alice, admin: true } }, 0);
        assert!(matches!(gone.unwrap(), Answer::Order(None)));
    }

    #[test]
    fn a_restored_meta_group_keeps_its_venues_and_takes_the_new_layout() {
        let source = MemKv::new();
        let mut g = Group::new(&source, GroupId::META);
        g.run(None, Command::CreateVenue(venue()));
        let old_nodes = vec![(1, "old1:1".to_string()), (2, "old2:1".to_string())];
        g.run(None, Command::InitLayout { shard_count: SHARDS, replication: 2, nodes: old_nodes });
        let restored = rebase(&g.snapshot(), RestoreTarget::new(GroupId::META, &layout()).unwrap()).unwrap();
        let store = install(&MemKv::new(), GroupId::META, restored);
        let state = store.state();
        assert!(matches!(state.query(&Query::Venue(VenueId::from_u64(1)), 0).unwrap(), Answer::Venue(Some(_))));
        let Answer::Layout(Some(new)) = state.query(&Query::Layout, 0).unwrap() else { panic!("a layout") };
        assert_eq!(*new, layout());
    }

    #[test]
    fn a_damaged_backup_or_another_shard_count_is_refused() {
        let n = (1..).find(|n| shard_of(&EventId::from_u64(*n), SHARDS) == 0).unwrap();
        let mut g = Group::new(&MemKv::new(), GroupId::shard(0));
        g.run(None, Command::CreateEvent(event(n)));
        let stream = g.snapshot();
        let mut damaged = stream.clone();
        if let SnapshotChunk::Hot(bytes) = &mut damaged[1] {
            bytes[20] ^= 1;
        }
        let target = RestoreTarget::new(GroupId::shard(0), &layout()).unwrap();
        assert!(rebase(&damaged, target.clone()).is_err());
        let other = Layout::initial(SHARDS * 2, 3, &[(7, "n7:1".into())]).unwrap();
        let err = rebase(&stream, RestoreTarget::new(GroupId::shard(0), &other).unwrap()).unwrap_err();
        assert!(matches!(err, RestoreError::ShardCount { expected: 8, found: 4 }), "{err}");
        let err = rebase(&stream, RestoreTarget { group: GroupId::shard(2), ..target }).unwrap_err();
        assert!(matches!(err, RestoreError::WrongGroup { .. }), "{err}");
    }
}
