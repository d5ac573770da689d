//! Commands (writes), their outcomes, and queries (reads): the one vocabulary that the api, the
//! node and the tests share. Only the edges translate it to HTTP and JSON.

use serde::{Deserialize, Serialize};

use crate::ids::NodeId;
use crate::ids::{shard_of, EventId, GroupId, HoldId, OrderId, RequestId, TicketId, UserId, VenueId, WebhookId};
use crate::layout::Layout;
use crate::model::*;
use crate::webhook::{Webhook, WebhookEventType};

/// One entry of a group's Raft log: the proposals a leader batched together, stamped once with
/// the leader's time. Applied in order; each yields one [`Outcome`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Stamped by the leader when it proposes the entry; apply uses
    /// `max(time_ms, last applied time)` and never reads a clock.
    pub time_ms: i64,
    pub proposals: Vec<Proposal>,
}

impl Request {
    pub fn single(time_ms: i64, proposal: Proposal) -> Request {
        Request { time_ms, proposals: vec![proposal] }
    }
}

/// One client command with its idempotency identity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    /// Present on client commands: a retry with the same id gets the first outcome back.
    pub request_id: Option<RequestId>,
    /// Hash of what the client asked for; the same request id with another fingerprint is refused
    /// as `IdempotencyKeyReused`.
    pub fingerprint: u64,
    /// The id comes from the client's `Idempotency-Key`: its outcome is remembered for
    /// `DEDUP_RETAIN_MS` (24 h). Otherwise the id is one a router made for its own retries, and
    /// `RETRY_RETAIN_MS` is enough.
    pub keyed: bool,
    pub command: Command,
}

impl Proposal {
    /// A command no client retries by id: proposed by the cluster itself, or by an operator.
    pub fn internal(command: Command) -> Proposal {
        Proposal { request_id: None, fingerprint: 0, keyed: false, command }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Selection {
    /// Seat ids `SECTION-ROW-NUMBER` of seated sections.
    Seats(Vec<String>),
    /// A quantity of a general-admission section.
    General { section: String, quantity: u32 },
}

impl Selection {
    pub fn count(&self) -> u32 {
        match self {
            Selection::Seats(seats) => seats.len() as u32,
            Selection::General { quantity, .. } => *quantity,
        }
    }
}

/// A waiting-room admission, verified (signature, user, event) by the api before it is proposed.
/// Apply checks its expiry; holds on a high-traffic event need one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessPass {
    pub pass_id: [u8; 16],
    pub expires_at_ms: i64,
}

/// Who acts: a user, and whether the token carries the admin role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub user: UserId,
    pub admin: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Command {
    // Meta group.
    CreateVenue(Venue),
    /// Creates the cluster's layout; repeating it with the same arguments changes nothing.
    InitLayout {
        shard_count: u32,
        replication: u32,
        nodes: Vec<(NodeId, String)>,
    },
    /// A new node joins as active (or an active node's address changes).
    AddNode {
        id: NodeId,
        addr: String,
    },
    /// The node's replicas move elsewhere; then it can be forgotten.
    DrainNode {
        id: NodeId,
    },
    /// Records a shard's replica set after its Raft membership was changed to it.
    SetPlacement {
        shard: u32,
        replicas: Vec<NodeId>,
    },
    /// A drained node that holds no replicas is removed for good.
    ForgetNode {
        id: NodeId,
    },

    // Event shards.
    CreateEvent(EventSpec),
    UpdateEvent {
        event_id: EventId,
        patch: EventPatch,
    },
    /// A hold as logs written before the held-seat cap carry it: applied as a [`Command::Hold`]
    /// with `held_seats_max: None`, the rule of its time. Never proposed any more; it keeps its
    /// place (bincode numbers variants by position) so that existing logs decode.
    HoldUncapped {
        event_id: EventId,
        user: UserId,
        selection: Selection,
        ttl_ms: i64,
        access: Option<AccessPass>,
    },
    ReleaseHold {
        hold_id: HoldId,
        user: UserId,
    },
    Checkout {
        hold_id: HoldId,
        user: UserId,
    },
    /// The payment provider's answer for a pending order.
    PaymentResult {
        order_id: OrderId,
        approved: bool,
        reference: String,
    },
    CancelOrder {
        order_id: OrderId,
        actor: Actor,
    },
    /// Proposed periodically by each shard's leader: expires due holds and unpaid orders, so their
    /// changes reach the feed even when no other command arrives.
    Expire,
    /// Proposed by each shard's leader: moves events that started before `started_before_ms`,
    /// with their orders and tickets, from memory to the shard's archive on disk, a bounded step
    /// per command (see `ARCHIVE_ORDERS_PER_COMMAND_MAX`).
    Archive {
        started_before_ms: i64,
    },
    /// An api instance takes a block of waiting-room sequence numbers for a high-traffic event.
    LeaseQueueBlock {
        event_id: EventId,
        size: u64,
        /// The unused tail `start..end` of the instance's previous block, which it no longer
        /// hands out: positions nobody holds, which admission must not count as buyers.
        unused: Option<(u64, u64)>,
    },
    /// The admission controller lets queue positions below `to` in.
    AdvanceQueue {
        event_id: EventId,
        to: u64,
    },

    // Appended after format 2's last variant, so that the log of an existing data directory
    // decodes unchanged: new variants only ever go at the end.
    /// An api instance's batch of waiting-room joins for one high-traffic event (at most
    /// `QUEUE_JOINS_PER_COMMAND_MAX`): apply gives each user their live place, or a new one.
    JoinQueue {
        event_id: EventId,
        joins: Vec<QueueJoin>,
    },
    /// Holds seats or a general-admission quantity for `user`, all or nothing.
    Hold {
        event_id: EventId,
        user: UserId,
        selection: Selection,
        ttl_ms: i64,
        /// Required for high-traffic events.
        access: Option<AccessPass>,
        /// The most seats (and general admissions) the user may have in active holds of the event,
        /// this hold included; `None`: no cap. Carried by the command (the api's setting) so that
        /// apply decides from the log alone.
        held_seats_max: Option<u32>,
    },
    /// Admits a ticket at the door, once. The api verified the code's signature; apply checks
    /// that the code is the ticket's current one (its version and holder) and not admitted yet.
    CheckIn {
        ticket_id: TicketId,
        version: u32,
        holder: UserId,
    },
    /// Reissues a ticket held by `from` to `to`: a new code version, the old code stops working.
    TransferTicket {
        ticket_id: TicketId,
        from: UserId,
        to: UserId,
    },
    /// Sets an event's dynamic pricing rules (replacing any); none: prices stay where they are
    /// and no longer move.
    SetPricing {
        event_id: EventId,
        rules: Vec<PriceRule>,
    },
    /// Registers an outgoing webhook endpoint (meta group). The id derives from the admin's
    /// idempotency key, the secret is the api's random one; apply stamps the creation time.
    RegisterWebhook {
        webhook_id: WebhookId,
        url: String,
        events: Vec<WebhookEventType>,
        secret: String,
        created_by: UserId,
    },
    /// Deletes an outgoing webhook endpoint (meta group): nothing more is delivered to it.
    DeleteWebhook {
        webhook_id: WebhookId,
    },
}

/// One join of a [`Command::JoinQueue`] batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueJoin {
    pub user: UserId,
    /// The place (sequence number) the api found ended (admitted, and its pass expired): apply
    /// replaces it with a new one if it is still the user's place, and otherwise answers the
    /// place the user has now. `None`: a plain join.
    pub replaces: Option<u64>,
}

/// A user's place in a waiting room, as a join is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuePlace {
    /// The sequence number (the queue token's `seq`).
    pub seq: u64,
    /// Given by this join; `false`: the live place the user already had.
    pub new: bool,
}

impl Command {
    /// The event whose shard owns this command, or `None` for a meta command.
    pub fn event_id(&self) -> Option<&EventId> {
        match self {
            Command::CreateVenue(_)
            | Command::InitLayout { .. }
            | Command::AddNode { .. }
            | Command::DrainNode { .. }
            | Command::SetPlacement { .. }
            | Command::ForgetNode { .. }
            | Command::Expire
            | Command::Archive { .. }
            | Command::RegisterWebhook { .. }
            | Command::DeleteWebhook { .. } => None,
            Command::CreateEvent(spec) => Some(&spec.event_id),
            Command::UpdateEvent { event_id, .. }
            | Command::Hold { event_id, .. }
            | Command::HoldUncapped { event_id, .. }
            | Command::JoinQueue { event_id, .. }
            | Command::LeaseQueueBlock { event_id, .. }
            | Command::AdvanceQueue { event_id, .. } => Some(event_id),
            Command::ReleaseHold { hold_id, .. } | Command::Checkout { hold_id, .. } => Some(&hold_id.event_id),
            Command::PaymentResult { order_id, .. } | Command::CancelOrder { order_id, .. } => Some(&order_id.event_id),
            Command::SetPricing { event_id, .. } => Some(event_id),
            Command::CheckIn { ticket_id, .. } | Command::TransferTicket { ticket_id, .. } => {
                Some(&ticket_id.order.event_id)
            }
        }
    }

    /// The group a client command goes to. `Expire` and `Archive` are proposed by each shard to
    /// itself.
    pub fn group(&self, shard_count: u32) -> GroupId {
        match self.event_id() {
            Some(event) => GroupId::shard(shard_of(event, shard_count)),
            None => GroupId::META,
        }
    }

    /// Short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Command::CreateVenue(_) => "create_venue",
            Command::InitLayout { .. } => "init_layout",
            Command::AddNode { .. } => "add_node",
            Command::DrainNode { .. } => "drain_node",
            Command::SetPlacement { .. } => "set_placement",
            Command::ForgetNode { .. } => "forget_node",
            Command::CreateEvent(_) => "create_event",
            Command::UpdateEvent { .. } => "update_event",
            Command::Hold { .. } | Command::HoldUncapped { .. } => "hold",
            Command::ReleaseHold { .. } => "release_hold",
            Command::Checkout { .. } => "checkout",
            Command::PaymentResult { .. } => "payment_result",
            Command::CancelOrder { .. } => "cancel_order",
            Command::Expire => "expire",
            Command::Archive { .. } => "archive",
            Command::LeaseQueueBlock { .. } => "lease_queue_block",
            Command::AdvanceQueue { .. } => "advance_queue",
            Command::JoinQueue { .. } => "join_queue",
            Command::CheckIn { .. } => "check_in",
            Command::TransferTicket { .. } => "transfer_ticket",
            Command::SetPricing { .. } => "set_pricing",
            Command::RegisterWebhook { .. } => "register_webhook",
            Command::DeleteWebhook { .. } => "delete_webhook",
        }
    }
}

/// What applying a command produced. Business refusals are outcomes, not errors: they are
/// deterministic, replicated and remembered for retries like any other result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    /// Blank and membership entries, and commands with nothing to report.
    Done,
    Venue(Venue),
    Layout(Box<Layout>),
    Event(Box<EventView>),
    Hold(HoldView),
    Order(OrderView),
    Expired {
        holds: u32,
        orders: u32,
    },
    /// What one `Archive` moved to the cold store: orders, and events whose last order left.
    Archived {
        orders: u32,
        events: u32,
    },
    QueueBlock(QueueBlock),
    Queue(QueueView),
    Refused(Refusal),
    // Appended after format 2's last variant (see `Command`).
    /// The places of a `JoinQueue`'s joins, in order.
    QueuePlaces(Vec<QueuePlace>),
    /// A ticket checked in or transferred, as its holder sees it now.
    Ticket(TicketCard),
    Pricing(PricingView),
    /// A webhook endpoint registered (with its secret) or deleted.
    Webhook(Webhook),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Refusal {
    /// An id that does not exist, or belongs to another user.
    NotFound {
        what: String,
    },
    /// Input that passed the api's checks but not apply's.
    Invalid {
        detail: String,
    },
    /// The same id already exists (a create with a colliding id).
    Conflict {
        detail: String,
    },
    SeatsUnavailable {
        seats: Vec<String>,
    },
    SoldOut {
        section: String,
        available: u32,
    },
    LimitExceeded {
        limit: u32,
        current: u32,
        requested: u32,
    },
    NotOnSale {
        on_sale_at_ms: i64,
        starts_at_ms: i64,
    },
    /// A high-traffic event's hold without a valid waiting-room pass.
    QueueRequired,
    /// The waiting-room pass already bought its hold.
    AccessUsed,
    HoldExpired,
    HoldNotActive {
        status: HoldStatus,
    },
    OrderNotCancellable {
        status: OrderStatus,
        reason: String,
    },
    IdempotencyKeyReused,
    /// A command sent to a group that does not own it.
    WrongGroup,
    // Appended after format 2's last variant (see `Command`).
    /// The hold would take the user's seats in active holds of the event past the cap the hold
    /// carries (`Command::Hold::held_seats_max`): `current` held now, `requested` more.
    HeldSeatsExceeded {
        limit: u32,
        current: u32,
        requested: u32,
    },
    /// A ticket code that is not the ticket's current one: replaced by a transfer, of a
    /// cancelled ticket, or of no ticket.
    InvalidTicketCode {
        reason: String,
    },
    /// The ticket was admitted already, at this time.
    AlreadyCheckedIn {
        admitted_at_ms: i64,
    },
    /// A checked-in ticket cannot be transferred.
    TicketCheckedIn,
    /// The ticket cannot be transferred now (cancelled, its event started, or transferred too
    /// often).
    TicketNotTransferable {
        reason: String,
    },
}

impl Refusal {
    pub fn not_found(what: impl Into<String>) -> Refusal {
        Refusal::NotFound { what: what.into() }
    }
}

/// A waiting room as readers see it: the queue's counters and what is left to sell.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueueView {
    pub event_id: EventId,
    pub high_traffic: bool,
    pub on_sale_at_ms: i64,
    pub starts_at_ms: i64,
    pub queue: QueueCounters,
    /// Admissions available now, over every section.
    pub available: u32,
    /// Admissions in active holds and in orders awaiting payment: buyers in the middle of buying.
    pub held: u32,
    /// Everything is sold: the queue is closed for good.
    pub sold_out: bool,
}

/// The queue part of [`QueueView`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueCounters {
    pub next_seq: u64,
    pub early_bound: Option<u64>,
    pub watermark: u64,
    /// Positions admitted within the admission window.
    pub admitted_recently: u64,
    /// Of those, how many redeemed their pass.
    pub redeemed_recently: u64,
}

/// A leased block of queue sequence numbers: `start..end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueBlock {
    pub start: u64,
    pub end: u64,
    /// Leased before the sale opened: its positions are shuffled among the early ones.
    pub early: bool,
}

/// Which change records a feed read continues from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedPosition {
    pub after_index: u64,
}

/// A committed change to an event, in log order. Several records may share one log index.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub index: u64,
    pub time_ms: i64,
    pub event_id: EventId,
    pub kind: ChangeKind,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ChangeKind {
    /// Created or updated: consumers re-read the event.
    Event,
    /// These seats now have this status.
    Seats { seats: Vec<String>, status: SeatStatus },
    /// The counts of a general-admission section changed.
    General { section: String, available: u32, held: u32, sold: u32 },
    // Appended after format 2's last variant (see `Command`).
    /// An order was settled: confirmed, failed, cancelled, or marked refunded (an approval after
    /// it lapsed). For outgoing webhooks; not shown on the public seat streams.
    Order { order_id: OrderId, user: UserId, status: OrderStatus, refunded: bool },
    /// A ticket was transferred (to `holder`, at `version`) or checked in (`admitted_at_ms`).
    /// For outgoing webhooks; not shown on the public seat streams.
    Ticket { ticket_id: TicketId, holder: UserId, version: u32, admitted_at_ms: Option<i64> },
}

impl ChangeKind {
    /// Whether the record changes what anyone may read of the event (its details, seats or
    /// counts), as opposed to one buyer's order or ticket.
    pub fn is_public(&self) -> bool {
        matches!(self, ChangeKind::Event | ChangeKind::Seats { .. } | ChangeKind::General { .. })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Query {
    Venue(VenueId),
    /// The cluster's layout (meta group).
    Layout,
    Event(EventId),
    Seats(EventId),
    /// Events with `from_ms <= starts_at < to_ms`, soonest first, after the cursor.
    Events {
        from_ms: i64,
        to_ms: i64,
        after: Option<(i64, EventId)>,
        limit: usize,
    },
    Hold {
        hold_id: HoldId,
        user: UserId,
    },
    Order {
        order_id: OrderId,
        actor: Actor,
    },
    /// A user's orders, newest first, after the cursor `(created_at_ms, order id)`.
    UserOrders {
        user: UserId,
        before: Option<(i64, OrderId)>,
        limit: usize,
    },
    /// A user's tickets, newest order first, after the cursor `(created_at_ms, order id, ticket n)`.
    UserTickets {
        user: UserId,
        before: Option<(i64, OrderId, u32)>,
        limit: usize,
    },
    /// Change records with `index > after_index`, oldest first.
    Changes {
        after_index: u64,
        limit: usize,
    },
    /// Every event of the shard in full, by id after the cursor: what a change-feed consumer
    /// re-reads when it fell behind the retained records.
    AllEvents {
        after: Option<EventId>,
        limit: usize,
    },
    /// The waiting room of a high-traffic event.
    Queue(EventId),
    /// The waiting rooms of the shard's high-traffic events that have not started: what its
    /// admission controller paces.
    Queues,
    /// When a queue position was admitted (to date its access pass).
    QueueAdmission {
        event_id: EventId,
        position: u64,
    },
    /// An event's pricing rules and current prices.
    Pricing(EventId),
    /// Every outgoing webhook endpoint, with its secret (meta group): for the dispatchers, and
    /// for the api, which shows them without.
    Webhooks,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Answer {
    Venue(Option<Venue>),
    Layout(Option<Box<Layout>>),
    Event(Option<Box<EventView>>),
    Seats(Option<SeatMap>),
    Events(Vec<EventSummary>),
    Hold(Option<HoldView>),
    Order(Option<OrderView>),
    Orders(Vec<OrderView>),
    /// Tickets with the creation time of their order, for the cursor.
    Tickets(Vec<(i64, TicketCard)>),
    Changes(ChangesPage),
    Queue(Option<QueueView>),
    Queues(Vec<QueueView>),
    /// When the position was admitted; `None` while it waits.
    Admission(Option<i64>),
    /// A page of whole events, and the log index the page was read at.
    AllEvents {
        events: Vec<EventView>,
        last_index: u64,
    },
    /// The query does not belong to this group.
    WrongGroup,
    /// `None`: no such event.
    Pricing(Option<PricingView>),
    Webhooks(Vec<Webhook>),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ChangesPage {
    Records {
        changes: Vec<Change>,
        last_index: u64,
    },
    /// Records after `after_index` are no longer retained: re-read the shard in full.
    Compacted {
        oldest_retained_index: u64,
        last_index: u64,
    },
}
