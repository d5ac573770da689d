//! A replica added to a three-node cluster catches up by snapshot on a shard that holds a
//! sold-out event and many orders, while bookings go on: the snapshot streams in bounded chunks
//! on its own connection, and the cluster keeps answering. (`boxoffice-bench catch-up` is the
//! full-sized version: 200,000 seats and 1,000,000 orders.)
#![allow(clippy::unwrap_used)]

mod common;
mod seasons;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{eventually, Server};
use seasons::{run, Cluster, NodeProc};
use serde_json::{json, Value};

/// Seated seats (rows of 1,000) and general admissions of the event: one order each.
/// Sized for a debug build on two cores (about a minute to fill); the bench has the full size.
const ROWS: usize = 4;
const SEATS_PER_ROW: u32 = 1_000;
const GENERAL: u32 = 4_000;
/// General admissions left for the bookings made while the new replica catches up.
const GENERAL_SPARE: u32 = 5_000;
/// Concurrent buyers filling the event.
const BUYERS: usize = 16;

/// Holds and checks out one seat (or one general admission); `true` once the order is confirmed.
async fn order(api: &Server, token: &str, event: &str, body: Value) -> bool {
    order_or_5xx(api, token, event, body).await.unwrap_or(false)
}

/// As [`order`], but a 5xx answer is an error carrying the status and problem document.
async fn order_or_5xx(api: &Server, token: &str, event: &str, body: Value) -> Result<bool, (u16, Value)> {
    let (status, hold) = patiently(api, &format!("/v1/events/{event}/holds"), token, body).await;
    if status >= 500 {
        return Err((status, hold));
    }
    if status != 201 {
        return Ok(false);
    }
    let path = format!("/v1/holds/{}/checkout", hold["hold_id"].as_str().unwrap());
    let (status, body) = patiently(api, &path, token, json!({"payment_method": "sandbox_ok"})).await;
    if status >= 500 {
        return Err((status, body));
    }
    Ok(status == 201)
}

/// A POST as a well-behaved client makes it: after a 429 (which changed nothing) it waits the
/// `retry_after_s` it was told and asks again. A buyer here asks as fast as the cluster answers,
/// which on a fast write path is faster than the api lets one user ask.
async fn patiently(api: &Server, path: &str, token: &str, body: Value) -> (u16, Value) {
    loop {
        let (status, answer) = api.call("POST", path, Some(token), Some(body.clone()), None).await;
        if status != 429 {
            return (status, answer);
        }
        let wait = answer["retry_after_s"].as_u64().unwrap_or(1);
        tokio::time::sleep(Duration::from_secs(wait)).await;
    }
}

/// Sells every seat and `GENERAL` general admissions, one order each, with `BUYERS` buyers.
async fn sell_out(api: &Arc<Server>, event: &str) -> usize {
    let sold = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for b in 0..BUYERS {
        let (api, event, sold) = (api.clone(), event.to_owned(), sold.clone());
        tasks.push(tokio::spawn(async move {
            let token = api.token(&format!("filler-{b}"), "user").await;
            let rows = (0..ROWS).filter(|r| r % BUYERS == b);
            for row in rows {
                for n in 1..=SEATS_PER_ROW {
                    let seat = format!("FLOOR-{}-{n}", common::row_name(row));
                    if order(&api, &token, &event, json!({"seats": [seat]})).await {
                        sold.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            let share = GENERAL as usize / BUYERS + usize::from(b < GENERAL as usize % BUYERS);
            for _ in 0..share {
                if order(&api, &token, &event, json!({"section": "LAWN", "quantity": 1})).await {
                    sold.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    // Rows that do not divide among the buyers are still sold: each buyer takes rows r ≡ b.
    for t in tasks {
        t.await.unwrap();
    }
    sold.load(Ordering::Relaxed)
}

/// A sample from a node's `/metrics`.
/// `name` may end inside the labels (`…{outcome="installed"`); a longer metric name that starts
/// with the same text is another metric and does not count.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with([' ', '{', ',', '}'])))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_added_to_a_cluster_catches_up_by_snapshot_on_a_full_shard_while_bookings_go_on() {
    common::install_crypto_provider();
    let tmp = tempfile::tempdir().unwrap();
    let extra = ["--snapshot-every-logs", "5000"];
    let mut cluster = Cluster::start(tmp.path(), &[1, 2, 3], &extra, &["--shards", "1"]).await;
    let api = Arc::new(Server::attach(&cluster.api.url));
    let admin = api.token("admin", "admin").await;
    let event = api.create_event(&admin, ROWS, SEATS_PER_ROW, GENERAL + GENERAL_SPARE, json!({})).await;
    let filled = Instant::now();
    let sold = sell_out(&api, &event).await;
    let orders = ROWS * SEATS_PER_ROW as usize + GENERAL as usize;
    assert_eq!(sold, orders);
    eprintln!("{orders} orders in {:.1} s", filled.elapsed().as_secs_f64());

    // Bookings go on while the new replica catches up.
    let stop = Arc::new(AtomicBool::new(false));
    let during: Arc<std::sync::Mutex<Vec<(Instant, Duration)>>> = Arc::default();
    let failed: Arc<std::sync::Mutex<Vec<(u16, Value)>>> = Arc::default();
    let mut buyers = Vec::new();
    for b in 0..8 {
        let (api, event, stop, during, failed) =
            (api.clone(), event.clone(), stop.clone(), during.clone(), failed.clone());
        buyers.push(tokio::spawn(async move {
            let token = api.token(&format!("during-{b}"), "user").await;
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                match order_or_5xx(&api, &token, &event, json!({"section": "LAWN", "quantity": 1})).await {
                    Ok(true) => during.lock().unwrap().push((sent, sent.elapsed())),
                    Ok(false) => {}
                    Err(answer) => failed.lock().unwrap().push(answer),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }

    // Node 4 joins; node 1 is drained, so the shard's replica moves to node 4.
    let node4 = NodeProc::start(4, &tmp.path().join("n4"), &extra);
    let addr4 = node4.addr.clone();
    cluster.nodes.insert(4, node4);
    let target = cluster.nodes[&2].addr.clone();
    let (ok, text) = run(&["cluster", "add-node", "--node", &target, "--id", "4", "--addr", &addr4]).await;
    assert!(ok, "{text}");
    let moving = Instant::now();
    let (ok, text) = run(&["cluster", "remove-node", "--node", &target, "--id", "1", "--wait"]).await;
    assert!(ok, "{text}");
    let caught_up = moving.elapsed();
    stop.store(true, Ordering::Relaxed);
    for b in buyers {
        b.await.unwrap();
    }

    let metrics = api.http.get(format!("http://{addr4}/metrics")).send().await.unwrap().text().await.unwrap();
    let installed = metric(&metrics, "boxoffice_snapshot_installs_total{outcome=\"installed\"");
    let bytes = metric(&metrics, "boxoffice_snapshot_received_bytes_total");
    let during = during.lock().unwrap().clone();
    let in_window: Vec<Duration> = during
        .iter()
        .filter(|(sent, _)| *sent >= moving && *sent <= moving + caught_up)
        .map(|(_, took)| *took)
        .collect();
    let slowest = in_window.iter().max().copied().unwrap_or_default();
    eprintln!(
        "node 4 caught up in {:.1} s by {installed} snapshot(s), {:.1} MB received; {} orders confirmed meanwhile, the slowest in {:.2} s",
        caught_up.as_secs_f64(),
        bytes / 1e6,
        in_window.len(),
        slowest.as_secs_f64()
    );
    assert!(installed >= 1.0, "node 4 caught up without a snapshot:\n{metrics}");
    assert!(bytes > 1e6, "the snapshot was {bytes} bytes");
    assert!(!in_window.is_empty(), "no booking was confirmed while node 4 caught up");
    // A proposal caught by the replica's removal is retried where the shard now lives: clients
    // see no server error while replicas move.
    let failed = failed.lock().unwrap().clone();
    assert!(failed.is_empty(), "{} bookings answered 5xx while the replica moved: {failed:?}", failed.len());

    // Node 4's copy is whole: with node 2 gone, the shard needs it for a quorum, and it counts
    // what the full cluster counted (read from the cluster: at least what was confirmed).
    let sold_now = || async {
        let (status, details) = api.get(&format!("/v1/events/{event}"), None).await;
        let sections = details["sections"].as_array()?;
        (status == 200).then(|| sections.iter().filter_map(|s| s["sold"].as_u64()).sum::<u64>())
    };
    let before = eventually(Duration::from_secs(30), "the sold count settles", || async {
        let now = sold_now().await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        (sold_now().await? == now).then_some(now)
    })
    .await;
    assert!(before >= (orders + during.len()) as u64, "{before} sold, fewer than were confirmed");
    cluster.nodes.get_mut(&1).unwrap().kill9();
    cluster.nodes.get_mut(&2).unwrap().kill9();
    // One more booking commits only on a quorum of nodes 3 and 4, and the count read after it
    // comes from the group's state, not from a cached copy of the event.
    let token = api.token("after", "user").await;
    eventually(Duration::from_secs(60), "a booking on the shard's new replicas", || async {
        order(&api, &token, &event, json!({"section": "LAWN", "quantity": 1})).await.then_some(())
    })
    .await;
    eventually(Duration::from_secs(30), "every order on the shard's new replicas", || async {
        (sold_now().await? == before + 1).then_some(())
    })
    .await;
}
