//! The checks, run after the faults have healed: I1–I5 of DESIGN.md over the clients' history and
//! the cluster's final state, I7 and I8 (`settle.rs`) over the payments provider's and the door's,
//! replica agreement, and the state machine's own invariants.
//!
//! Times: a hold's and an order's times are stamped by leaders, whose clocks are skewed by at most
//! `MAX_SKEW_MS`; the clients' times are the simulation's true time. Apply's time is never more
//! than `MAX_SKEW_MS` away from true time, and the checks allow exactly that much.

use std::collections::{BTreeMap, BTreeSet};

use node::Router;
use raft_store::{
    Actor, Answer, Command, GroupId, HoldId, HoldStatus, HoldView, OrderId, OrderStatus, OrderView, Query, SeatStatus,
    UserId, LIST_LIMIT_MAX,
};
use seams::{Cluster, Consistency};

use crate::cluster::MAX_SKEW_MS;
use crate::history::{History, Op, OpKind, OpResult};
use crate::workload::{Shop, GENERAL_CAPACITY};

/// Pages of one buyer's orders the checks read at most.
const ORDER_PAGES_MAX: usize = 100;
/// Attempts at a final read before the checks report it unreadable.
const FINAL_READ_ATTEMPTS: usize = 10;

/// A hold the store acknowledged, followed to its final state: the seats it owned, from when to
/// when (leader time; `i64::MAX` while it still owns them).
#[derive(Debug)]
struct Chain {
    hold: HoldView,
    order: Option<OrderView>,
    start_ms: i64,
    end_ms: i64,
    /// When the client first heard it acknowledged (true time).
    acked_ms: i64,
}

pub struct Checker<'a> {
    pub history: &'a History,
    pub router: &'a Router,
    pub shop: &'a Shop,
    pub violations: Vec<String>,
    /// How the buyers' orders ended, for the run's summary.
    pub summary: String,
}

impl<'a> Checker<'a> {
    fn fail(&mut self, what: String) {
        if self.violations.len() < 20 {
            self.violations.push(what);
        }
    }

    /// Retries got the first answer (I4).
    pub fn retries_answered_alike(&mut self, ops: &[Op]) {
        for op in ops {
            let OpKind::Retry { of } = op.kind else { continue };
            let Some(first) = self.history.answer_to_request(of) else { continue };
            let known = |r: &OpResult| !matches!(r, OpResult::Unknown(_));
            if known(&first) && known(&op.result) && first != op.result {
                self.fail(format!(
                    "I4: a retry of operation {of} answered {:?}, the first answer was {first:?}",
                    op.result
                ));
            }
        }
    }

    async fn final_hold(&self, id: &HoldId, user: &UserId) -> Option<HoldView> {
        let query = Query::Hold { hold_id: id.clone(), user: user.clone() };
        match self.router.query(self.shop.group(), query, Consistency::Linearizable).await {
            Ok(Answer::Hold(h)) => h,
            _ => None,
        }
    }

    async fn final_order(&self, id: &OrderId) -> Option<OrderView> {
        let admin = Actor { user: UserId::parse("checker").expect("valid"), admin: true };
        let query = Query::Order { order_id: id.clone(), actor: admin };
        match self.router.query(self.shop.group(), query, Consistency::Linearizable).await {
            Ok(Answer::Order(o)) => o,
            _ => None,
        }
    }

    /// Every acknowledged hold and order still exists, in a state its acknowledged history allows
    /// (I2); every hold has left `Active` once its time is up (I3). Returns the chains.
    async fn chains(&mut self, ops: &[Op]) -> Vec<Chain> {
        let first_decline_ms = first_declines(ops);
        let mut acked: BTreeMap<HoldId, (HoldView, i64)> = BTreeMap::new();
        let mut confirmed: BTreeSet<OrderId> = BTreeSet::new();
        let mut cancelled: BTreeSet<OrderId> = BTreeSet::new();
        for op in ops {
            match &op.result {
                OpResult::Hold(h) => {
                    acked.entry(h.hold_id.clone()).or_insert((h.clone(), op.returned_ms));
                }
                OpResult::Order(o) if o.status == OrderStatus::Confirmed => {
                    confirmed.insert(o.order_id.clone());
                }
                OpResult::Order(o) if o.status == OrderStatus::Cancelled => {
                    cancelled.insert(o.order_id.clone());
                }
                _ => {}
            }
        }
        let mut chains = Vec::new();
        for (id, (first, acked_ms)) in acked {
            let Some(hold) = self.final_hold(&id, &first.user_id).await else {
                self.fail(format!("I2: acknowledged hold {id} is gone"));
                continue;
            };
            if hold.status == HoldStatus::Active {
                self.fail(format!("I3: hold {id} is still active after its time ({} ms)", hold.expires_at_ms));
            }
            let order = match &hold.order_id {
                Some(o) => self.final_order(o).await,
                None => None,
            };
            if hold.status == HoldStatus::CheckedOut && order.is_none() {
                self.fail(format!("I2: the order of checked-out hold {id} is gone"));
            }
            let end_ms = match (&hold.status, &order) {
                (HoldStatus::CheckedOut, Some(o)) => match o.status {
                    OrderStatus::Confirmed | OrderStatus::PendingPayment => i64::MAX,
                    // A refund of a payment that came after the failure moved `updated_at_ms`:
                    // the failure came at the deadline or at a decline, whichever first.
                    OrderStatus::PaymentFailed if o.refunded => {
                        let declined = first_decline_ms.get(&o.order_id).map_or(i64::MAX, |at| at - MAX_SKEW_MS);
                        o.updated_at_ms.min(o.payment_deadline_ms).min(declined)
                    }
                    OrderStatus::Cancelled | OrderStatus::PaymentFailed => o.updated_at_ms,
                },
                (HoldStatus::CheckedOut, None) | (HoldStatus::Active, _) => i64::MAX,
                _ => hold.ended_at_ms.unwrap_or(i64::MAX),
            };
            chains.push(Chain { start_ms: hold.created_at_ms, end_ms, acked_ms, hold, order });
        }
        for id in &confirmed {
            match self.final_order(id).await {
                None => self.fail(format!("I2: acknowledged order {id} is gone")),
                Some(o) if !matches!(o.status, OrderStatus::Confirmed | OrderStatus::Cancelled) => {
                    self.fail(format!("I2: order {id} was acknowledged confirmed, now {:?}", o.status))
                }
                Some(o) if o.status == OrderStatus::Confirmed && cancelled.contains(id) => {
                    self.fail(format!("I2: order {id} was acknowledged cancelled, now confirmed"))
                }
                _ => {}
            }
        }
        chains
    }

    /// No seat is owned by two acknowledged holds at once, and general admission never goes over
    /// capacity (I1).
    fn no_seat_twice(&mut self, chains: &[Chain]) {
        let mut by_seat: BTreeMap<&str, Vec<&Chain>> = BTreeMap::new();
        for c in chains {
            for s in &c.hold.seats {
                by_seat.entry(s.as_str()).or_default().push(c);
            }
        }
        for (seat, mut owners) in by_seat {
            owners.sort_by_key(|c| (c.start_ms, c.end_ms));
            for pair in owners.windows(2) {
                if pair[0].end_ms > pair[1].start_ms {
                    self.fail(format!(
                        "I1: seat {seat} owned by {} ({}..{}) and {} from {}",
                        pair[0].hold.hold_id, pair[0].start_ms, pair[0].end_ms, pair[1].hold.hold_id, pair[1].start_ms
                    ));
                }
            }
        }
        // General admission: sweep over starts and ends, ends first at equal times.
        let mut points: Vec<(i64, i64)> = Vec::new();
        for c in chains {
            if let Some(q) = c.hold.quantity {
                points.push((c.start_ms, i64::from(q)));
                points.push((c.end_ms, -i64::from(q)));
            }
        }
        points.sort();
        let mut taken = 0;
        for (at, delta) in points {
            taken += delta;
            if taken > i64::from(GENERAL_CAPACITY) {
                self.fail(format!("I1: {taken} general admissions owned at {at} ms, capacity {GENERAL_CAPACITY}"));
                break;
            }
        }
    }

    /// A read that began after a booking was acknowledged never shows its seats free while they
    /// were certainly still owned (I5, and linearizable reads in general).
    fn reads_see_acknowledged_bookings(&mut self, ops: &[Op], chains: &[Chain]) {
        for op in ops {
            let OpResult::Seats(map) = &op.result else { continue };
            let free: BTreeSet<&str> =
                map.seats.iter().filter(|s| s.status == SeatStatus::Available).map(|s| s.id.as_str()).collect();
            for c in chains {
                let owned_during_read =
                    c.acked_ms < op.invoked_ms && c.end_ms.saturating_sub(MAX_SKEW_MS) > op.returned_ms;
                if !owned_during_read {
                    continue;
                }
                if let Some(seat) = c.hold.seats.iter().find(|s| free.contains(s.as_str())) {
                    self.fail(format!(
                        "I5: a read at {}..{} ms shows {seat} free, but {} owned it (acknowledged at {} ms, until {})",
                        op.invoked_ms, op.returned_ms, c.hold.hold_id, c.acked_ms, c.end_ms
                    ));
                    return;
                }
            }
        }
    }

    /// The final seat map agrees with the bookings: every seat shown sold belongs to a confirmed
    /// order, and no seat of a confirmed order is shown free.
    async fn seat_map_agrees(&mut self, chains: &[Chain]) {
        let map = match self
            .router
            .query(self.shop.group(), Query::Seats(self.shop.event.clone()), Consistency::Linearizable)
            .await
        {
            Ok(Answer::Seats(Some(map))) => map,
            other => {
                self.fail(format!("the final seat map could not be read: {other:?}"));
                return;
            }
        };
        let sold: BTreeSet<&str> = chains
            .iter()
            .filter(|c| c.order.as_ref().is_some_and(|o| o.status == OrderStatus::Confirmed))
            .flat_map(|c| c.hold.seats.iter().map(String::as_str))
            .collect();
        for seat in &map.seats {
            if sold.contains(seat.id.as_str()) && seat.status != SeatStatus::Sold {
                self.fail(format!("I2: seat {} of a confirmed order shows {:?}", seat.id, seat.status));
            }
        }
    }

    /// Every order of every buyer in the history, as it ended.
    async fn final_orders(&mut self, ops: &[Op]) -> BTreeMap<OrderId, OrderView> {
        let buyers: BTreeSet<&UserId> = ops
            .iter()
            .filter_map(|op| match &op.request {
                Some((_, _, Command::Checkout { user, .. })) => Some(user),
                _ => None,
            })
            .collect();
        let mut orders = BTreeMap::new();
        for user in buyers {
            let mut before = None;
            for _ in 0..ORDER_PAGES_MAX {
                let query = Query::UserOrders { user: user.clone(), before: before.clone(), limit: LIST_LIMIT_MAX };
                let Some(page) = self.final_read(query).await else {
                    self.fail(format!("the final orders of {user} could not be read"));
                    break;
                };
                let Answer::Orders(page) = page else {
                    self.fail(format!("the final orders of {user} read as {page:?}"));
                    break;
                };
                before = page.last().map(|o| (o.created_at_ms, o.order_id.clone()));
                let full = page.len() == LIST_LIMIT_MAX;
                orders.extend(page.into_iter().map(|o| (o.order_id.clone(), o)));
                if !full {
                    break;
                }
            }
        }
        orders
    }

    /// A linearizable read of the shop's group, retried a few times: the faults have healed.
    async fn final_read(&self, query: Query) -> Option<Answer> {
        for _ in 0..FINAL_READ_ATTEMPTS {
            match self.router.query(self.shop.group(), query.clone(), Consistency::Linearizable).await {
                Ok(answer) => return Some(answer),
                Err(_) => madsim::time::sleep(std::time::Duration::from_millis(500)).await,
            }
        }
        None
    }

    pub async fn run(&mut self) {
        let ops = self.history.ops();
        let (found, inconclusive) = crate::linearize::check_all(&ops, &self.shop.seats);
        for v in found {
            self.fail(v);
        }
        if inconclusive > 0 {
            tracing::warn!(inconclusive, "linearizability search ran out of budget on some seats");
        }
        self.retries_answered_alike(&ops);
        let chains = self.chains(&ops).await;
        self.no_seat_twice(&chains);
        self.reads_see_acknowledged_bookings(&ops, &chains);
        self.seat_map_agrees(&chains).await;
        let orders = self.final_orders(&ops).await;
        self.summary = crate::settle::outcomes(&orders);
        for v in crate::settle::payments(&ops, &orders).into_iter().chain(crate::settle::tickets(&ops, &orders)) {
            self.fail(v);
        }
    }
}

/// When the provider first sent a decline for each order (true time).
fn first_declines(ops: &[Op]) -> BTreeMap<OrderId, i64> {
    let mut first: BTreeMap<OrderId, i64> = BTreeMap::new();
    for op in ops {
        if let OpKind::Payment { order, approved: false, .. } = &op.kind {
            let at = first.entry(order.clone()).or_insert(op.invoked_ms);
            *at = (*at).min(op.invoked_ms);
        }
    }
    first
}

/// Replicas that applied the same log agree byte for byte, and each satisfies the state machine's
/// invariants.
pub fn replicas_agree(cluster: &crate::cluster::SimCluster, groups: &[GroupId]) -> Vec<String> {
    let mut found = Vec::new();
    for group in groups {
        if let Err(e) = cluster.check_replica_invariants(*group) {
            found.push(format!("invariant: {e}"));
        }
        let states = cluster.replica_states(*group);
        let mut by_index: BTreeMap<u64, (u64, Vec<u8>)> = BTreeMap::new();
        for (node, index, bytes) in states {
            match by_index.get(&index) {
                Some((other, theirs)) if *theirs != bytes => {
                    found
                        .push(format!("{group}: nodes {other} and {node} applied the log to index {index} and differ"));
                }
                Some(_) => {}
                None => {
                    by_index.insert(index, (node, bytes));
                }
            }
        }
    }
    found
}
