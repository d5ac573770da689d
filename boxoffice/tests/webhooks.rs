//! Outgoing webhooks through the real binary: `boxoffice dev` delivers order and ticket events to
//! a receiver in the test process, signed with the secret the registration answered; a failed
//! delivery is retried with the same id; a kill -9 loses nothing the receiver had not
//! acknowledged and re-delivers under the same ids; a deleted endpoint gets nothing more.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use common::{assert_problem, eventually, Server};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

/// How long an event may take to arrive (a retry waits up to a second).
const DEADLINE: Duration = Duration::from_secs(30);
const ALL_EVENTS: [&str; 6] = [
    "order.confirmed",
    "order.payment_failed",
    "order.cancelled",
    "order.refunded",
    "ticket.transferred",
    "ticket.checked_in",
];

/// One request the receiver answered.
#[derive(Clone, Debug)]
struct Delivery {
    endpoint: String,
    signature: String,
    body: Bytes,
    json: Value,
    status: u16,
}

impl Delivery {
    fn id(&self) -> &str {
        self.json["id"].as_str().unwrap_or_default()
    }

    fn kind(&self) -> &str {
        self.json["type"].as_str().unwrap_or_default()
    }

    /// What the event is about: the type and the order or ticket.
    fn about(&self) -> (String, String) {
        let data = &self.json["data"];
        let object = data["ticket_id"].as_str().or(data["order_id"].as_str()).unwrap_or_default();
        (self.kind().to_owned(), object.to_owned())
    }
}

#[derive(Default)]
struct Inbox {
    deliveries: Vec<Delivery>,
    /// Event types whose first attempt (per endpoint) answers 500.
    fail_first: Vec<String>,
    /// Endpoints that answer 503 to everything.
    down: Vec<String>,
}

/// An endpoint for the server to deliver to: `{url}/hooks/{name}`.
#[derive(Clone, Default)]
struct Receiver {
    inbox: Arc<Mutex<Inbox>>,
}

impl Receiver {
    async fn start(&self) -> String {
        let app = Router::new().route("/hooks/{name}", post(receive)).with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the receiver");
        let addr = listener.local_addr().expect("the receiver's address");
        tokio::spawn(async move { axum::serve(listener, app).await.expect("the receiver serves") });
        format!("http://{addr}")
    }

    fn inbox(&self) -> std::sync::MutexGuard<'_, Inbox> {
        self.inbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn all(&self, endpoint: &str) -> Vec<Delivery> {
        self.inbox().deliveries.iter().filter(|d| d.endpoint == endpoint).cloned().collect()
    }

    /// What `endpoint` acknowledged (answered 200).
    fn acknowledged(&self, endpoint: &str) -> Vec<Delivery> {
        self.all(endpoint).into_iter().filter(|d| d.status == 200).collect()
    }

    /// Waits until `endpoint` acknowledged an event of `kind` about `object`; returns it.
    async fn wait_for(&self, endpoint: &str, kind: &str, object: &str) -> Delivery {
        let what = format!("{kind} of {object} at {endpoint}");
        eventually(DEADLINE, &what, || async {
            self.acknowledged(endpoint).into_iter().find(|d| d.about() == (kind.to_owned(), object.to_owned()))
        })
        .await
    }
}

async fn receive(
    State(receiver): State<Receiver>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let signature = headers.get("boxoffice-signature").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let json_type = headers.get("content-type").and_then(|v| v.to_str().ok()) == Some("application/json");
    let mut inbox = receiver.inbox();
    let kind = json["type"].as_str().unwrap_or_default().to_owned();
    let seen_before = inbox.deliveries.iter().any(|d| d.endpoint == name && d.kind() == kind);
    let status = if !json_type || json.is_null() {
        400
    } else if inbox.down.contains(&name) {
        503
    } else if inbox.fail_first.contains(&kind) && !seen_before {
        500
    } else {
        200
    };
    inbox.deliveries.push(Delivery { endpoint: name, signature, body, json, status });
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// What a receiver checks: `t=<unix>,v1=<hex HMAC-SHA256(secret, "{t}.{body}")>`, recent.
fn signed_with(delivery: &Delivery, secret: &str) -> bool {
    let mut t = None;
    let mut v1 = Vec::new();
    for part in delivery.signature.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = value.parse::<i64>().ok(),
            Some(("v1", value)) => v1.push(value.to_owned()),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else { return false };
    mac.update(format!("{t}.").as_bytes());
    mac.update(&delivery.body);
    let expected = hex::encode(mac.finalize().into_bytes());
    (now - t).abs() <= 300 && v1.contains(&expected)
}

async fn register(server: &Server, admin: &str, url: &str, events: &[&str], key: &str) -> Value {
    let body = json!({"url": url, "events": events});
    let (status, created) = server.call("POST", "/v1/webhooks", Some(admin), Some(body), Some(key)).await;
    assert_eq!(status, 201, "{created}");
    created
}

/// Holds the seats and pays with the sandbox: the order.
async fn buy(server: &Server, token: &str, event: &str, seats: &[&str]) -> Value {
    let path = format!("/v1/events/{event}/holds");
    let (status, hold) = server.call("POST", &path, Some(token), Some(json!({"seats": seats})), None).await;
    assert_eq!(status, 201, "{hold}");
    let path = format!("/v1/holds/{}/checkout", hold["hold_id"].as_str().unwrap_or_default());
    let (status, order) =
        server.call("POST", &path, Some(token), Some(json!({"payment_method": "sandbox_ok"})), None).await;
    assert_eq!(status, 201, "{order}");
    assert_eq!(order["status"], "confirmed");
    order
}

fn id_of<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field].as_str().unwrap_or_else(|| panic!("no `{field}` in {value}"))
}

/// Every delivery of one event carries one id, and each id is one event: what lets a receiver
/// deduplicate.
fn assert_ids_name_events(deliveries: &[Delivery]) {
    let mut ids: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut bodies: BTreeMap<String, Bytes> = BTreeMap::new();
    for d in deliveries {
        let id = ids.entry(d.about()).or_insert_with(|| d.id().to_owned());
        assert_eq!(id, d.id(), "{:?} came under two ids", d.about());
        let body = bodies.entry(d.id().to_owned()).or_insert_with(|| d.body.clone());
        assert_eq!(*body, d.body, "id {} came with two bodies", d.id());
    }
    assert_eq!(ids.len(), bodies.len(), "an id named two events");
}

#[tokio::test]
async fn order_and_ticket_events_arrive_signed_retried_and_deduplicable_across_a_crash() {
    let receiver = Receiver::default();
    let base = receiver.start().await;
    let mut server = Server::start(&[]).await;
    let admin = server.token("admin", "admin").await;
    let (alice, bob) = (server.token("alice", "user").await, server.token("bob", "user").await);
    let scanner = server.token("door-1", "scanner").await;

    // Admins only.
    let body = json!({"url": format!("{base}/hooks/all"), "events": ["order.confirmed"]});
    let (status, problem) = server.call("POST", "/v1/webhooks", Some(&alice), Some(body), None).await;
    assert_problem(status, &problem, 403, "forbidden");
    let (status, problem) = server.get("/v1/webhooks", Some(&alice)).await;
    assert_problem(status, &problem, 403, "forbidden");

    // Two endpoints: every event, and confirmations only.
    let all = register(&server, &admin, &format!("{base}/hooks/all"), &ALL_EVENTS, "hook-all").await;
    let again = register(&server, &admin, &format!("{base}/hooks/all"), &ALL_EVENTS, "hook-all").await;
    assert_eq!(again, all, "a retried registration answers the same endpoint and secret");
    let orders = register(&server, &admin, &format!("{base}/hooks/orders"), &["order.confirmed"], "hook-orders").await;
    let (all_secret, orders_secret) = (id_of(&all, "secret").to_owned(), id_of(&orders, "secret").to_owned());
    assert!(all_secret.starts_with("whsec_"), "{all}");
    let (status, list) = server.get("/v1/webhooks", Some(&admin)).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(2), "{list}");
    assert!(list["items"].as_array().into_iter().flatten().all(|w| w.get("secret").is_none()), "{list}");

    // A purchase, a transfer whose first delivery fails, a check-in, a cancellation.
    receiver.inbox().fail_first.push("ticket.transferred".into());
    let event = server.create_event(&admin, 1, 10, 10, json!({})).await;
    let order = buy(&server, &alice, &event, &["FLOOR-A-1", "FLOOR-A-2"]).await;
    let order_id = id_of(&order, "order_id").to_owned();
    let confirmed = receiver.wait_for("all", "order.confirmed", &order_id).await;
    assert_eq!(confirmed.json["data"]["user_id"], "alice");
    assert_eq!(confirmed.json["data"]["event_id"], event.as_str());
    receiver.wait_for("orders", "order.confirmed", &order_id).await;

    let (status, page) = server.get("/v1/me/tickets", Some(&alice)).await;
    assert_eq!(status, 200, "{page}");
    let tickets = page["items"].as_array().cloned().unwrap_or_default();
    let first = tickets.iter().find(|t| t["seat"] == "FLOOR-A-1").cloned().expect("the first ticket");
    let second = tickets.iter().find(|t| t["seat"] == "FLOOR-A-2").cloned().expect("the second ticket");
    let path = format!("/v1/tickets/{}/transfer", id_of(&second, "ticket_id"));
    let (status, given) = server.call("POST", &path, Some(&alice), Some(json!({"to_user": "bob"})), None).await;
    assert_eq!(status, 200, "{given}");
    let transferred = receiver.wait_for("all", "ticket.transferred", id_of(&second, "ticket_id")).await;
    assert_eq!(
        (transferred.json["data"]["user_id"].as_str(), transferred.json["data"]["version"].as_u64()),
        (Some("bob"), Some(1))
    );
    let attempts: Vec<Delivery> =
        receiver.all("all").into_iter().filter(|d| d.kind() == "ticket.transferred").collect();
    assert_eq!(attempts.iter().map(|d| d.status).collect::<Vec<_>>(), [500, 200], "retried once");
    assert_eq!(attempts[0].id(), attempts[1].id(), "the retry carries the first attempt's id");

    let (status, admitted) =
        server.call("POST", "/v1/checkin", Some(&scanner), Some(json!({"code": first["code"]})), None).await;
    assert_eq!(status, 200, "{admitted}");
    let checked_in = receiver.wait_for("all", "ticket.checked_in", id_of(&first, "ticket_id")).await;
    assert_eq!(checked_in.json["data"]["status"], "checked_in");
    assert!(checked_in.json["data"]["admitted_at"].is_string(), "{}", checked_in.json);

    let refundable = buy(&server, &alice, &event, &["FLOOR-A-3"]).await;
    let refundable_id = id_of(&refundable, "order_id").to_owned();
    let (status, cancelled) =
        server.call("POST", &format!("/v1/orders/{refundable_id}/cancel"), Some(&alice), None, None).await;
    assert_eq!(status, 200, "{cancelled}");
    receiver.wait_for("all", "order.cancelled", &refundable_id).await;

    // A crash while an endpoint is down: the delivery it refused is made after the restart,
    // under the same id.
    receiver.inbox().down.push("all".into());
    let pending = buy(&server, &bob, &event, &["FLOOR-A-5"]).await;
    let pending_id = id_of(&pending, "order_id").to_owned();
    let refused = eventually(DEADLINE, "a refused attempt", || async {
        receiver.all("all").into_iter().find(|d| d.status == 503 && d.about().1 == pending_id)
    })
    .await;
    let acknowledged_before: Vec<Delivery> = receiver.acknowledged("all");
    server.crash_and_restart().await;
    receiver.inbox().down.clear();
    let redelivered = receiver.wait_for("all", "order.confirmed", &pending_id).await;
    assert_eq!(redelivered.id(), refused.id(), "the same event, the same id, after a crash");
    // Everything acknowledged before the crash is still what was acknowledged, and whatever was
    // delivered again came under the id it had.
    let after = receiver.acknowledged("all");
    for before in &acknowledged_before {
        assert!(after.iter().any(|d| d.id() == before.id()), "{:?} lost", before.about());
    }

    // Deleted: nothing more for it, while the other endpoint goes on.
    let path = format!("/v1/webhooks/{}", id_of(&orders, "webhook_id"));
    let (status, body) = server.call("DELETE", &path, Some(&admin), None, None).await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = server.call("DELETE", &path, Some(&admin), None, None).await;
    assert_problem(status, &body, 404, "not_found");
    let last = buy(&server, &alice, &event, &["FLOOR-A-7"]).await;
    let last_id = id_of(&last, "order_id").to_owned();
    receiver.wait_for("all", "order.confirmed", &last_id).await;
    assert!(receiver.all("orders").iter().all(|d| d.about().1 != last_id), "delivered after its deletion");

    // Every delivery was signed with its endpoint's secret; ids name events one to one.
    for d in receiver.all("all") {
        assert!(signed_with(&d, &all_secret), "{d:?}");
        assert!(!signed_with(&d, &orders_secret));
    }
    for d in receiver.all("orders") {
        assert!(signed_with(&d, &orders_secret), "{d:?}");
    }
    assert_ids_name_events(&receiver.all("all"));
    let kinds: std::collections::BTreeSet<String> =
        receiver.acknowledged("all").iter().map(|d| d.kind().to_owned()).collect();
    for kind in ["order.confirmed", "ticket.transferred", "ticket.checked_in", "order.cancelled"] {
        assert!(kinds.contains(kind), "no {kind}: {kinds:?}");
    }
    // The same event reaches both endpoints under one id.
    let both = receiver.acknowledged("orders").into_iter().find(|d| d.about().1 == order_id).expect("at both");
    assert_eq!(both.id(), confirmed.id());

    let (status, metrics) = server.get("/metrics", None).await;
    assert_eq!(status, 200);
    let text = metrics.as_str().unwrap_or_default();
    assert!(text.contains("boxoffice_webhook_deliveries_total{result=\"delivered\"}"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_a_cluster_the_indexer_process_delivers() {
    let receiver = Receiver::default();
    let base = receiver.start().await;
    let cluster = common::cluster::RunningCluster::start(1, 2).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").map(|l| l.local_addr().map(|a| a.port()));
    let listen = format!("127.0.0.1:{}", port.expect("a free port").expect("its address"));
    let _indexer = cluster.start_indexer(&listen);
    let api = cluster.api();
    let admin = api.token("admin", "admin").await;
    let alice = api.token("alice", "user").await;
    let hook = register(&api, &admin, &format!("{base}/hooks/cluster"), &["order.confirmed"], "hook-cluster").await;
    let event = api.create_event(&admin, 1, 4, 4, json!({})).await;
    let order = buy(&api, &alice, &event, &["FLOOR-A-1"]).await;
    let delivered = receiver.wait_for("cluster", "order.confirmed", id_of(&order, "order_id")).await;
    assert!(signed_with(&delivered, id_of(&hook, "secret")), "{delivered:?}");
}
