//! A real cluster on loopback — node processes, the operator CLI and an api — under the faults and
//! changes an operator meets: the hot shard's leader killed with `kill -9` while buyers book, a
//! node added, a node removed. Every acknowledged booking must survive (I2), no seat may be
//! acknowledged twice (I1), and bookings must go on.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::{cli, RunningCluster};
use common::{eventually, Server};
use raft_store::{shard_of, EventId};
use serde_json::{json, Value};

const SHARDS: u32 = 4;

/// A booking the api acknowledged.
#[derive(Clone, Debug)]
struct Acked {
    token: String,
    seat: String,
    hold_id: String,
    order_id: Option<String>,
}

#[derive(Default)]
struct Ledger {
    acked: Mutex<Vec<Acked>>,
    /// For each acknowledged hold: when the attempt that succeeded was sent, and when it was
    /// answered.
    times: Mutex<Vec<(Instant, Instant)>>,
    /// Answers that were neither 201 nor a retryable failure.
    unexpected: Mutex<Vec<String>>,
    /// 5xx answers and transport errors, retried with the same key.
    retried: AtomicUsize,
}

/// POSTs with an idempotency key until the api answers something other than 5xx or a transport
/// error. Retrying with the same key is what makes this safe. Also returns when the answered
/// attempt was sent.
async fn post_until_answered(
    api: &Server,
    path: &str,
    token: &str,
    body: Value,
    key: &str,
    ledger: &Ledger,
) -> (u16, Value, Instant) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let sent_at = Instant::now();
        let sent = api
            .http
            .post(format!("{}{}", api.url, path))
            .bearer_auth(token)
            .header("Idempotency-Key", key)
            .json(&body)
            .timeout(Duration::from_secs(15))
            .send()
            .await;
        match sent {
            Ok(resp) if resp.status().as_u16() < 500 => {
                let status = resp.status().as_u16();
                return (status, resp.json().await.unwrap_or(Value::Null), sent_at);
            }
            _ => {
                ledger.retried.fetch_add(1, Ordering::Relaxed);
                assert!(Instant::now() < deadline, "{path} never answered");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Books the seats of one row, one at a time, checking out every other hold, until stopped.
async fn buyer(api: Arc<Server>, event: String, row: String, ledger: Arc<Ledger>, stop: Arc<AtomicBool>) {
    let user = format!("buyer-{row}");
    let token = api.token(&user, "user").await;
    for n in 1..=20 {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let seat = format!("FLOOR-{row}-{n}");
        let holds = format!("/v1/events/{event}/holds");
        let (status, hold, sent_at) =
            post_until_answered(&api, &holds, &token, json!({"seats": [seat]}), &format!("{user}-hold-{n}"), &ledger)
                .await;
        let answered_at = Instant::now();
        if status != 201 {
            ledger.unexpected.lock().unwrap().push(format!("hold {seat}: {status} {hold}"));
            continue;
        }
        let hold_id = hold["hold_id"].as_str().unwrap().to_owned();
        let mut order_id = None;
        if n % 2 == 0 {
            let path = format!("/v1/holds/{hold_id}/checkout");
            let body = json!({"payment_method": "sandbox_ok"});
            let (status, order, _) =
                post_until_answered(&api, &path, &token, body, &format!("{user}-pay-{n}"), &ledger).await;
            if status == 201 {
                order_id = Some(order["order_id"].as_str().unwrap().to_owned());
            } else {
                ledger.unexpected.lock().unwrap().push(format!("checkout {seat}: {status} {order}"));
            }
        }
        ledger.acked.lock().unwrap().push(Acked { token: token.clone(), seat, hold_id, order_id });
        ledger.times.lock().unwrap().push((sent_at, answered_at));
    }
}

fn spawn_buyers(
    api: &Arc<Server>,
    event: &str,
    rows: &[&str],
    ledger: &Arc<Ledger>,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    rows.iter()
        .map(|row| tokio::spawn(buyer(api.clone(), event.to_owned(), row.to_string(), ledger.clone(), stop.clone())))
        .collect()
}

/// Every acknowledged hold and order is still there, and the seat map agrees, seat by seat.
async fn assert_every_booking_survived(api: &Server, event: &str, ledger: &Ledger) {
    let acked = ledger.acked.lock().unwrap().clone();
    let mut owners: BTreeMap<String, String> = BTreeMap::new();
    for a in &acked {
        assert!(owners.insert(a.seat.clone(), a.hold_id.clone()).is_none(), "seat {} acknowledged twice (I1)", a.seat);
        let (s, hold) = api.get(&format!("/v1/holds/{}", a.hold_id), Some(&a.token)).await;
        assert_eq!(s, 200, "acknowledged hold {} lost (I2): {hold}", a.hold_id);
        if let Some(order) = &a.order_id {
            let (s, o) = api.get(&format!("/v1/orders/{order}"), Some(&a.token)).await;
            assert_eq!(
                (s, o["status"].as_str()),
                (200, Some("confirmed")),
                "acknowledged order {order} lost (I2): {o}"
            );
        }
    }
    let statuses = api.seat_statuses(event).await;
    for a in &acked {
        let want = if a.order_id.is_some() { "sold" } else { "held" };
        assert_eq!(statuses[&a.seat], want, "seat {}", a.seat);
    }
    let unexpected = ledger.unexpected.lock().unwrap();
    assert!(unexpected.is_empty(), "unexpected answers: {unexpected:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_hot_shards_leader_loses_no_booking_and_bookings_resume_within_seconds() {
    let mut cluster = RunningCluster::start(3, SHARDS).await;
    let api = Arc::new(cluster.api());
    let admin = api.token("admin", "admin").await;
    let event = api.create_event(&admin, 8, 20, 50, json!({})).await;
    let group = format!("shard-{}", shard_of(&EventId::parse(&event).unwrap(), SHARDS));
    let (ledger, stop) = (Arc::new(Ledger::default()), Arc::new(AtomicBool::new(false)));
    let buyers = spawn_buyers(&api, &event, &["A", "B", "C", "D", "E", "F", "G", "H"], &ledger, &stop);

    eventually(Duration::from_secs(60), "bookings before the kill", || async {
        (ledger.acked.lock().unwrap().len() >= 30).then_some(())
    })
    .await;
    let leader = cluster.leader_of(&group).expect("the hot shard has a leader");
    let killed_at = Instant::now();
    cluster.nodes.get_mut(&leader).unwrap().kill9();
    // Bookings asked for after the kill: the first one answered says when the cluster was back.
    let resumed = eventually(Duration::from_secs(60), "bookings after the kill", || async {
        let times = ledger.times.lock().unwrap();
        let after: Vec<Instant> =
            times.iter().filter(|(sent, _)| *sent > killed_at).map(|(_, answered)| *answered).collect();
        (after.len() >= 10).then(|| after.into_iter().min().expect("ten of them"))
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for b in buyers {
        b.await.unwrap();
    }
    let failover = resumed - killed_at;
    eprintln!(
        "failover: {:.2} s from kill -9 of node {leader} (leader of {group}) to the next acknowledged booking",
        failover.as_secs_f64()
    );
    assert!(failover < Duration::from_secs(10), "bookings resumed after {failover:?}");

    assert_every_booking_survived(&api, &event, &ledger).await;

    // The killed node comes back on its address and catches up.
    cluster.nodes.get_mut(&leader).unwrap().restart();
    eventually(Duration::from_secs(60), "the restarted node to catch up", || async {
        let status = cluster.status();
        let row = status.lines().find(|l| l.split_whitespace().next() == Some(group.as_str()))?.to_owned();
        let caught_up = row.contains(&format!("n{leader}:0")) || cluster.leader_of(&group) == Some(leader);
        caught_up.then_some(())
    })
    .await;
    let alice = api.token("alice", "user").await;
    let (s, hold) = api
        .call(
            "POST",
            &format!("/v1/events/{event}/holds"),
            Some(&alice),
            Some(json!({"section": "LAWN", "quantity": 1})),
            None,
        )
        .await;
    assert_eq!(s, 201, "bookings work with the node back: {hold}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_node_receives_replicas_and_a_removed_node_is_drained_while_bookings_go_on() {
    let mut cluster = RunningCluster::start(3, SHARDS).await;
    let api = Arc::new(cluster.api());
    let admin = api.token("admin", "admin").await;
    let event = api.create_event(&admin, 4, 20, 50, json!({})).await;
    let (ledger, stop) = (Arc::new(Ledger::default()), Arc::new(AtomicBool::new(false)));
    let buyers = spawn_buyers(&api, &event, &["A", "B", "C", "D"], &ledger, &stop);

    let addr4 = cluster.start_node(4);
    cli(&["cluster", "add-node", "--node", &cluster.any_node(), "--id", "4", "--addr", &addr4, "--wait"]);
    let groups_on = |status: &str, id: &str| -> usize {
        let row =
            status.lines().find(|l| l.split_whitespace().next() == Some(id) && l.contains("127.0.0.1")).unwrap_or("");
        row.split_whitespace().nth(4).and_then(|g| g.parse().ok()).unwrap_or(0)
    };
    let status = cluster.status();
    assert!(groups_on(&status, "4") >= 3, "node 4 holds replicas:\n{status}");

    // Node 1 started the cluster and leads the meta group: the hardest one to take out.
    cli(&["cluster", "remove-node", "--node", &cluster.nodes[&2].addr, "--id", "1", "--wait"]);
    let status = cli(&["cluster", "status", "--node", &cluster.nodes[&3].addr]);
    let row = status.lines().find(|l| l.starts_with("1 ")).unwrap_or("");
    assert!(row.contains("removed"), "node 1 removed:\n{status}");
    assert!(status.contains("placement: balanced"), "{status}");
    cluster.nodes.get_mut(&1).unwrap().kill9();

    eventually(Duration::from_secs(60), "bookings after the changes", || async {
        (ledger.acked.lock().unwrap().len() >= 40).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for b in buyers {
        b.await.unwrap();
    }
    eprintln!(
        "{} bookings acknowledged, {} answers retried during the membership changes",
        ledger.acked.lock().unwrap().len(),
        ledger.retried.load(Ordering::Relaxed)
    );
    assert_every_booking_survived(&api, &event, &ledger).await;
}
