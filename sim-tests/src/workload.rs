//! Simulated buyers. Each runs through the production router (as an api instance would), on a
//! small event so buyers collide all the time: holds of overlapping seats and general-admission
//! quantities, checkouts (the payments provider, `provider.rs`, then pays or declines them, late,
//! twice or never), releases, cancellations, linearizable reads of the seat map, and retries of
//! earlier requests with the same request id.

use std::sync::Arc;
use std::time::Duration;

use node::{now_ms, NodeClient, NodeReply, NodeRequest, Router};
use raft_store::{
    fnv1a64, shard_of, Actor, Answer, Command, Currency, EventId, EventSpec, GeoPoint, GroupId, HoldId, HoldStatus,
    Money, OrderId, OrderStatus, Outcome, Query, Refusal, RequestId, Row, Section, SectionKind, SectionPrice,
    Selection, UserId, Venue, VenueId,
};
use rand::seq::SliceRandom;
use rand::Rng;
use seams::{Cluster, Consistency, Submit};

use crate::history::{History, Op, OpKind, OpResult};
use crate::net::SimClient;
use crate::provider::Provider;

pub const ROWS: &[&str] = &["A", "B"];
pub const SEATS_PER_ROW: u32 = 6;
pub const GENERAL_CAPACITY: u32 = 10;
/// Holds last this long in the simulation, so expiry happens during a run.
pub const HOLD_TTL_MS: i64 = 10_000;
/// The cap on a buyer's seats in active holds that holds carry, as the api's default: buyers hold
/// 1 to 3 seats at a time, so it rarely refuses, but every hold, release, expiry and checkout
/// moves the count the cap is judged by, on every replica.
const HELD_SEATS_MAX: u32 = 20;

pub struct Shop {
    pub event: EventId,
    pub seats: Vec<String>,
    pub shard_count: u32,
}

impl Shop {
    pub fn group(&self) -> GroupId {
        GroupId::shard(shard_of(&self.event, self.shard_count))
    }
}

fn random_request_id() -> RequestId {
    let mut id = [0u8; 16];
    madsim::rand::thread_rng().fill(&mut id[..]);
    RequestId(id)
}

/// Submits until the store answers: for set-up, where a refusal is a bug.
async fn submit_until_done(router: &Router, key: &str, command: Command) -> Result<Outcome, String> {
    let submit = Submit {
        command,
        request_id: RequestId([fnv1a64(key.as_bytes()) as u8; 16]),
        fingerprint: fnv1a64(key.as_bytes()),
        keyed: true,
    };
    for _ in 0..60 {
        match router.submit(submit.clone()).await {
            Ok(outcome) => return Ok(outcome),
            Err(_) => madsim::time::sleep(Duration::from_millis(500)).await,
        }
    }
    Err(format!("{key} never answered"))
}

/// Creates the venue and the event everyone fights over.
pub async fn setup(router: &Router) -> Result<Shop, String> {
    let venue = Venue {
        venue_id: VenueId::from_u64(1),
        name: "Sim Hall".into(),
        city: "Lisbon".into(),
        country: "PT".into(),
        location: GeoPoint { lat: 38.7, lon: -9.1 },
        sections: vec![
            Section {
                id: "FLOOR".into(),
                name: "Floor".into(),
                kind: SectionKind::Seated {
                    rows: ROWS.iter().map(|r| Row { id: r.to_string(), seats: SEATS_PER_ROW }).collect(),
                },
            },
            Section {
                id: "LAWN".into(),
                name: "Lawn".into(),
                kind: SectionKind::General { capacity: GENERAL_CAPACITY },
            },
        ],
    };
    match submit_until_done(router, "venue", Command::CreateVenue(venue.clone())).await? {
        Outcome::Venue(_) | Outcome::Refused(Refusal::Conflict { .. }) => {}
        other => return Err(format!("venue: {other:?}")),
    }
    let now = now_ms();
    let spec = EventSpec {
        event_id: EventId::from_u64(7),
        name: "Sim Show".into(),
        description: String::new(),
        category: "music".into(),
        performers: vec!["The Simulated".into()],
        venue,
        starts_at_ms: now + 365 * 86_400_000,
        on_sale_at_ms: now - 1_000,
        prices: vec![
            SectionPrice { section: "FLOOR".into(), price: Money::new(5_000, Currency::USD) },
            SectionPrice { section: "LAWN".into(), price: Money::new(2_000, Currency::USD) },
        ],
        per_user_limit: None,
        high_traffic: false,
    };
    match submit_until_done(router, "event", Command::CreateEvent(spec.clone())).await? {
        Outcome::Event(_) | Outcome::Refused(Refusal::Conflict { .. }) => {}
        other => return Err(format!("event: {other:?}")),
    }
    let seats = ROWS.iter().flat_map(|r| (1..=SEATS_PER_ROW).map(move |n| format!("FLOOR-{r}-{n}"))).collect();
    Ok(Shop { event: spec.event_id, seats, shard_count: router.shard_count() })
}

pub struct Client {
    pub n: usize,
    pub router: Arc<Router>,
    pub history: Arc<History>,
    pub user: UserId,
    provider: Arc<Provider>,
    holds: Vec<HoldId>,
    orders: Vec<OrderId>,
    /// Indexes of this client's operations that carried a request.
    sent: Vec<usize>,
}

impl Client {
    pub fn new(n: usize, router: Arc<Router>, history: Arc<History>, provider: Arc<Provider>) -> Client {
        let user = UserId::parse(&format!("buyer-{n}")).expect("a valid user id");
        Client { n, router, history, user, provider, holds: Vec::new(), orders: Vec::new(), sent: Vec::new() }
    }

    /// Sends a new request. Half of them (by a bit of the random request id, so the run draws no
    /// more random numbers) are sent as without an `Idempotency-Key`: the leader may then refuse
    /// them without a log entry, and they are never retried.
    async fn send(&mut self, kind: OpKind, command: Command) -> (usize, OpResult) {
        let request_id = random_request_id();
        let fingerprint = madsim::rand::thread_rng().gen::<u64>();
        let keyed = request_id.0[0] & 1 == 0;
        self.send_as(kind, request_id, fingerprint, command, keyed).await
    }

    async fn send_as(
        &mut self,
        kind: OpKind,
        request_id: RequestId,
        fingerprint: u64,
        command: Command,
        keyed: bool,
    ) -> (usize, OpResult) {
        let invoked_ms = now_ms();
        let submit = Submit { command: command.clone(), request_id, fingerprint, keyed };
        let result = match self.router.submit(submit).await {
            Ok(outcome) => OpResult::from(outcome),
            Err(e) => OpResult::Unknown(e.to_string()),
        };
        let op = Op {
            client: self.n,
            kind,
            request: Some((request_id, fingerprint, command)),
            invoked_ms,
            returned_ms: now_ms(),
            result: result.clone(),
        };
        let index = self.history.record(op);
        if keyed {
            self.sent.push(index);
        }
        (index, result)
    }

    /// One random operation.
    pub async fn step(&mut self, shop: &Shop) {
        let pick = madsim::rand::thread_rng().gen_range(0..100);
        match pick {
            0..=29 => self.hold_seats(shop).await,
            30..=39 => self.hold_general(shop).await,
            40..=54 => self.checkout().await,
            55..=64 => self.release().await,
            65..=69 => self.cancel().await,
            70..=87 => self.read(shop).await,
            _ => self.retry().await,
        }
    }

    async fn hold_seats(&mut self, shop: &Shop) {
        let count = madsim::rand::thread_rng().gen_range(1..=3);
        let seats: Vec<String> = shop.seats.choose_multiple(&mut madsim::rand::thread_rng(), count).cloned().collect();
        let command = Command::Hold {
            event_id: shop.event.clone(),
            user: self.user.clone(),
            selection: Selection::Seats(seats.clone()),
            ttl_ms: HOLD_TTL_MS,
            access: None,
            held_seats_max: Some(HELD_SEATS_MAX),
        };
        if let (_, OpResult::Hold(h)) = self.send(OpKind::HoldSeats { seats }, command).await {
            self.holds.push(h.hold_id);
        }
    }

    async fn hold_general(&mut self, shop: &Shop) {
        let quantity = madsim::rand::thread_rng().gen_range(1..=3);
        let command = Command::Hold {
            event_id: shop.event.clone(),
            user: self.user.clone(),
            selection: Selection::General { section: "LAWN".into(), quantity },
            ttl_ms: HOLD_TTL_MS,
            access: None,
            held_seats_max: Some(HELD_SEATS_MAX),
        };
        if let (_, OpResult::Hold(h)) = self.send(OpKind::HoldGeneral { quantity }, command).await {
            self.holds.push(h.hold_id);
        }
    }

    /// Checkout: the order then awaits the provider's result, which the provider sends on its own.
    async fn checkout(&mut self) {
        let Some(hold) = self.holds.choose(&mut madsim::rand::thread_rng()).cloned() else { return };
        let kind = OpKind::Checkout { hold: hold.clone() };
        let command = Command::Checkout { hold_id: hold, user: self.user.clone() };
        let (_, result) = self.send_as(kind, random_request_id(), 1, command, true).await;
        self.learn(&result);
    }

    /// What an answer tells this buyer about an order: awaiting payment (the provider is told), or
    /// confirmed (it may be cancelled).
    fn learn(&mut self, result: &OpResult) {
        let OpResult::Order(o) = result else { return };
        match o.status {
            OrderStatus::PendingPayment => self.provider.checked_out(o),
            OrderStatus::Confirmed if !self.orders.contains(&o.order_id) => self.orders.push(o.order_id.clone()),
            _ => {}
        }
    }

    async fn release(&mut self) {
        let Some(hold) = self.holds.choose(&mut madsim::rand::thread_rng()).cloned() else { return };
        let command = Command::ReleaseHold { hold_id: hold.clone(), user: self.user.clone() };
        if let (_, OpResult::Hold(h)) = self.send(OpKind::Release { hold }, command).await {
            if h.status != HoldStatus::Active {
                self.holds.retain(|x| *x != h.hold_id);
            }
        }
    }

    async fn cancel(&mut self) {
        for order in self.provider.confirmed_of(&self.user) {
            if !self.orders.contains(&order) {
                self.orders.push(order);
            }
        }
        let Some(order) = self.orders.choose(&mut madsim::rand::thread_rng()).cloned() else { return };
        let command =
            Command::CancelOrder { order_id: order.clone(), actor: Actor { user: self.user.clone(), admin: false } };
        self.send(OpKind::Cancel { order }, command).await;
    }

    /// A linearizable read of the seat map: through the router, or — as an api instance whose
    /// leader hint is out of date does — straight to any node. A correct node answers "not the
    /// leader" or confirms its leadership before answering.
    async fn read(&mut self, shop: &Shop) {
        let invoked_ms = now_ms();
        let query = Query::Seats(shop.event.clone());
        let answer = if madsim::rand::thread_rng().gen_bool(0.5) {
            self.router.query(shop.group(), query, Consistency::Linearizable).await.map_err(|e| e.to_string())
        } else {
            let nodes = self
                .router
                .layout()
                .map(|l| l.nodes.values().map(|n| n.addr.clone()).collect::<Vec<_>>())
                .unwrap_or_default();
            let Some(addr) = nodes.choose(&mut madsim::rand::thread_rng()).cloned() else { return };
            let request = NodeRequest::Read { group: shop.group(), query, linearizable: true };
            match SimClient.call(&addr, request, Duration::from_secs(2)).await {
                Ok(NodeReply::Answer(answer)) => Ok(answer),
                Ok(other) => Err(format!("{other:?}")),
                Err(e) => Err(e.to_string()),
            }
        };
        let result = match answer {
            Ok(Answer::Seats(Some(map))) => OpResult::Seats(map),
            Ok(other) => OpResult::Other(format!("{other:?}")),
            Err(e) => OpResult::Unknown(e),
        };
        let op =
            Op { client: self.n, kind: OpKind::ReadSeats, request: None, invoked_ms, returned_ms: now_ms(), result };
        self.history.record(op);
    }

    /// Sends one of this client's earlier requests again, unchanged.
    async fn retry(&mut self) {
        let Some(&of) = self.sent.choose(&mut madsim::rand::thread_rng()) else { return };
        let Some((request_id, fingerprint, command)) = self.history.op(of).and_then(|op| op.request) else { return };
        let (_, result) = self.send_as(OpKind::Retry { of }, request_id, fingerprint, command, true).await;
        self.learn(&result);
    }
}
