//! The webhook dispatcher over real state machines (`TestCluster`) and a real HTTP receiver:
//! signed deliveries, retries with the same id, an endpoint that falls behind alone and catches
//! up, deletion, and a restart from the saved positions.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use raft_store::{Command, EventId, OrderId, Outcome, UserId, WebhookEventType, WebhookId};
use seams::TestCluster;
use serde_json::Value;

use super::catalog::Catalog;
use crate::webhooks::verify;
use crate::{Dispatcher, DispatcherConfig, POSITIONS_FILE};

const SHARDS: u32 = 2;
const DEADLINE: Duration = Duration::from_secs(20);
const SECRET: &str = "whsec_dispatcher_test";

/// One request the receiver answered.
#[derive(Clone, Debug)]
struct Received {
    path: String,
    id: String,
    event_type: String,
    body: Value,
    signed: bool,
    answered: u16,
}

#[derive(Default)]
struct Inbox {
    received: Vec<Received>,
    /// Per path: requests still to answer 500.
    fail_next: BTreeMap<String, usize>,
    /// Paths that answer 503 until released.
    down: Vec<String>,
}

#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Inbox>>);

impl Receiver {
    async fn start(&self) -> String {
        let app = Router::new().route("/hooks/{name}", post(receive)).with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}")
    }

    fn inbox(&self) -> std::sync::MutexGuard<'_, Inbox> {
        self.0.lock().unwrap()
    }

    /// What `path` acknowledged (answered 2xx), in order.
    fn acknowledged(&self, path: &str) -> Vec<Received> {
        self.inbox().received.iter().filter(|r| r.path == path && r.answered == 200).cloned().collect()
    }

    fn all(&self, path: &str) -> Vec<Received> {
        self.inbox().received.iter().filter(|r| r.path == path).cloned().collect()
    }
}

async fn receive(
    State(receiver): State<Receiver>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let path = format!("/hooks/{name}");
    let now_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let signature = headers.get("boxoffice-signature").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let signed = verify(signature, SECRET, &body, now_s);
    let json: Value = serde_json::from_slice(&body).unwrap();
    let mut inbox = receiver.inbox();
    let failing = inbox.fail_next.get_mut(&path).filter(|n| **n > 0).map(|n| *n -= 1).is_some();
    let answered = if inbox.down.contains(&path) {
        503
    } else if failing {
        500
    } else {
        200
    };
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["boxoffice-event-id"].to_str().unwrap(), json["id"].as_str().unwrap());
    inbox.received.push(Received {
        path,
        id: json["id"].as_str().unwrap().to_owned(),
        event_type: json["type"].as_str().unwrap().to_owned(),
        body: json,
        signed,
        answered,
    });
    StatusCode::from_u16(answered).unwrap()
}

fn config(dir: &std::path::Path) -> DispatcherConfig {
    DispatcherConfig {
        clock_margin: Duration::ZERO,
        retry_delay_min: Duration::from_millis(20),
        retry_delay_max: Duration::from_millis(100),
        registry_poll: Duration::from_millis(100),
        poll_wait: Duration::from_millis(200),
        page_interval_min: Duration::ZERO,
        save_interval: Duration::from_millis(20),
        ..DispatcherConfig::new(dir.to_path_buf())
    }
}

fn register(cluster: &TestCluster, id: u64, url: String, events: &[WebhookEventType]) -> WebhookId {
    let webhook_id = WebhookId::from_u64(id);
    let outcome = cluster.run(Command::RegisterWebhook {
        webhook_id: webhook_id.clone(),
        url,
        events: events.to_vec(),
        secret: SECRET.into(),
        created_by: UserId::parse("admin").unwrap(),
    });
    assert!(matches!(outcome, Outcome::Webhook(_)), "{outcome:?}");
    webhook_id
}

/// Holds one admission, checks it out and approves the payment: an `order.confirmed`.
fn buy(cluster: &TestCluster, event_id: &EventId) -> OrderId {
    let order_id = checkout(cluster, event_id);
    pay(cluster, &order_id, true);
    order_id
}

fn pay(cluster: &TestCluster, order_id: &OrderId, approved: bool) {
    let paid = cluster.run(Command::PaymentResult { order_id: order_id.clone(), approved, reference: "r".into() });
    assert!(matches!(paid, Outcome::Order(_)), "{paid:?}");
}

/// Holds one admission and checks it out: an order awaiting payment.
fn checkout(cluster: &TestCluster, event_id: &EventId) -> OrderId {
    let user = UserId::parse("alice").unwrap();
    let hold = match cluster.run(Command::Hold {
        event_id: event_id.clone(),
        user: user.clone(),
        selection: raft_store::Selection::General { section: "GA".into(), quantity: 1 },
        ttl_ms: 600_000,
        access: None,
        held_seats_max: None,
    }) {
        Outcome::Hold(hold) => hold,
        other => panic!("{other:?}"),
    };
    match cluster.run(Command::Checkout { hold_id: hold.hold_id, user }) {
        Outcome::Order(order) => order.order_id,
        other => panic!("{other:?}"),
    }
}

fn cancel(cluster: &TestCluster, order_id: &OrderId) {
    let actor = raft_store::Actor { user: UserId::parse("alice").unwrap(), admin: false };
    let out = cluster.run(Command::CancelOrder { order_id: order_id.clone(), actor });
    assert!(matches!(out, Outcome::Order(_)), "{out:?}");
}

async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The distinct event ids among `received`, in first-seen order.
fn distinct_ids(received: &[Received]) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for r in received {
        if !ids.contains(&r.id) {
            ids.push(r.id.clone());
        }
    }
    ids
}

#[tokio::test]
async fn deliveries_are_signed_and_a_failed_one_is_retried_with_the_same_id() {
    let cluster = TestCluster::new(SHARDS);
    let receiver = Receiver::default();
    let base = receiver.start().await;
    let dir = tempfile::tempdir().unwrap();
    let event = cluster.create_event("Show", "Lisbon", 30);
    // Before the registration: not delivered.
    let before = buy(&cluster, &event);
    // Log times are in milliseconds: the registration comes in a later one.
    cluster.advance(Duration::from_millis(5));
    let order_events = &WebhookEventType::ALL[..4];
    register(&cluster, 1, format!("{base}/hooks/orders"), order_events);
    receiver.inbox().fail_next.insert("/hooks/orders".into(), 1);
    let dispatcher = Dispatcher::start(cluster.clone(), config(dir.path())).unwrap();
    let order = buy(&cluster, &event);
    cancel(&cluster, &order);
    // Declined, then approved after all: the approval is to be refunded.
    let lapsed = checkout(&cluster, &event);
    pay(&cluster, &lapsed, false);
    pay(&cluster, &lapsed, true);

    let acked = eventually("four events acknowledged", || {
        let acked = receiver.acknowledged("/hooks/orders");
        (acked.len() >= 4).then_some(acked)
    })
    .await;
    let all = receiver.all("/hooks/orders");
    assert_eq!(all[0].answered, 500);
    assert_eq!(all[1].id, all[0].id, "the retry carries the first attempt's id");
    assert!(all.iter().all(|r| r.signed), "{all:?}");
    let types: Vec<&str> = acked.iter().map(|r| r.event_type.as_str()).collect();
    assert_eq!(types, ["order.confirmed", "order.cancelled", "order.payment_failed", "order.refunded"], "in order");
    assert_eq!(acked[0].body["data"]["order_id"], order.to_string());
    assert_eq!(acked[1].body["data"]["refunded"], true);
    assert_eq!(
        (acked[3].body["data"]["status"].as_str(), acked[3].body["data"]["refunded"].as_bool()),
        (Some("payment_failed"), Some(true))
    );
    assert_eq!(distinct_ids(&acked).len(), 4);
    assert!(all.iter().all(|r| r.body["data"]["order_id"] != before.to_string()), "registered after it");
    dispatcher.stop().await;
}

#[tokio::test]
async fn an_endpoint_that_falls_behind_holds_back_nobody_and_catches_up_in_order() {
    let cluster = TestCluster::new(SHARDS);
    let receiver = Receiver::default();
    let base = receiver.start().await;
    let dir = tempfile::tempdir().unwrap();
    let event = cluster.create_event("Show", "Lisbon", 30);
    register(&cluster, 1, format!("{base}/hooks/slow"), &[WebhookEventType::OrderConfirmed]);
    register(&cluster, 2, format!("{base}/hooks/fast"), &[WebhookEventType::OrderConfirmed]);
    receiver.inbox().down.push("/hooks/slow".into());
    let dispatcher = Dispatcher::start(
        cluster.clone(),
        DispatcherConfig {
            queue_per_endpoint_max: 2,
            attempts_max: 1_000,
            retry_delay_max: Duration::from_millis(40),
            ..config(dir.path())
        },
    )
    .unwrap();
    let orders: Vec<String> = (0..12).map(|_| buy(&cluster, &event).to_string()).collect();
    // The healthy endpoint gets everything while the other is down.
    eventually("the fast endpoint to get every order", || {
        (receiver.acknowledged("/hooks/fast").len() == orders.len()).then_some(())
    })
    .await;
    assert!(receiver.acknowledged("/hooks/slow").is_empty());
    receiver.inbox().down.clear();
    let slow = eventually("the slow endpoint to catch up", || {
        let acked = receiver.acknowledged("/hooks/slow");
        let ids = distinct_ids(&acked);
        (ids.len() == orders.len()).then_some(acked)
    })
    .await;
    // In feed order, each order once (a re-read may repeat one, under the same id).
    let mut seen: Vec<String> = Vec::new();
    for r in &slow {
        let order = r.body["data"]["order_id"].as_str().unwrap().to_owned();
        if seen.last() != Some(&order) {
            assert!(!seen.contains(&order), "{order} again after later ones: {slow:?}");
            seen.push(order);
        }
    }
    assert_eq!(seen, orders);
    let fast_ids = distinct_ids(&receiver.acknowledged("/hooks/fast"));
    assert_eq!(distinct_ids(&slow), fast_ids, "the same events carry the same ids for every endpoint");
    dispatcher.stop().await;
}

#[tokio::test]
async fn a_restart_resumes_from_the_saved_position_and_a_deleted_endpoint_gets_nothing_more() {
    let cluster = TestCluster::new(SHARDS);
    let receiver = Receiver::default();
    let base = receiver.start().await;
    let dir = tempfile::tempdir().unwrap();
    let event = cluster.create_event("Show", "Lisbon", 30);
    let kept = register(&cluster, 1, format!("{base}/hooks/kept"), &[WebhookEventType::OrderConfirmed]);
    let deleted = register(&cluster, 2, format!("{base}/hooks/deleted"), &[WebhookEventType::OrderConfirmed]);
    let _ = kept;
    let dispatcher = Dispatcher::start(cluster.clone(), config(dir.path())).unwrap();
    buy(&cluster, &event);
    eventually("the first order at both", || {
        (receiver.acknowledged("/hooks/kept").len() == 1 && receiver.acknowledged("/hooks/deleted").len() == 1)
            .then_some(())
    })
    .await;
    dispatcher.stop().await;
    assert!(dir.path().join(POSITIONS_FILE).exists());

    let out = cluster.run(Command::DeleteWebhook { webhook_id: deleted });
    assert!(matches!(out, Outcome::Webhook(_)), "{out:?}");
    buy(&cluster, &event);
    let dispatcher = Dispatcher::start(cluster.clone(), config(dir.path())).unwrap();
    eventually("the second order at the kept endpoint", || {
        (receiver.acknowledged("/hooks/kept").len() == 2).then_some(())
    })
    .await;
    // The first was acknowledged before the stop: not delivered again.
    assert_eq!(distinct_ids(&receiver.all("/hooks/kept")).len(), 2);
    assert_eq!(receiver.all("/hooks/kept").len(), 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.all("/hooks/deleted").len(), 1, "nothing after the deletion");
    dispatcher.stop().await;
}

#[tokio::test]
async fn a_damaged_positions_file_stops_the_start() {
    let cluster = TestCluster::new(SHARDS);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(POSITIONS_FILE), b"{not json").unwrap();
    let err = Dispatcher::start(cluster, config(dir.path())).err().expect("refused");
    assert!(err.to_string().contains("damaged"), "{err}");
}
