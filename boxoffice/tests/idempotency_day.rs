//! An `Idempotency-Key` is honoured for a day, whatever the write rate (API.md: the same key with
//! the same body returns the first response): a keyed hold replayed after 20,000 other
//! replicated writes on its shard (and snapshots) returns its first answer, 201 with the same
//! hold, and books once; so it does again after a `kill -9` and a restart. (The machine's own
//! test replays one after 300,000 keyed writes; this one is the real binary over HTTP.)
//!
//! The server has one shard, so that every write goes through the log, the idempotency table
//! and the snapshots of the keyed hold's own group. The other writes are general-admission holds
//! of one, each with its own key, and their releases, from many users at once.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use common::Server;
use serde_json::{json, Value};

/// Replicated writes between the first request and its replay: holds and releases, half each.
const OTHER_WRITES: u64 = 20_000;
/// Clients writing at once, each as a user of its own.
const CLIENTS: u64 = 32;
/// Admissions of the general section: the clients' holds are released as they go, so at most
/// one per client is held at a time besides the keyed hold.
const LAWN_CAPACITY: u32 = 1_000;
const KEYED_QUANTITY: u64 = 2;

/// The event's held count in `section`.
async fn held(server: &Server, event: &str, section: &str) -> u64 {
    let (status, detail) = server.get(&format!("/v1/events/{event}"), None).await;
    assert_eq!(status, 200, "{detail}");
    let sections = detail["sections"].as_array().expect("sections");
    let found = sections.iter().find(|s| s["section"] == section).expect("the section");
    found["held"].as_u64().expect("a held count")
}

/// The server's counter `name` (summed over its labels), 0 when absent.
async fn counter(server: &Server, name: &str) -> f64 {
    let page = server.http.get(format!("{}/metrics", server.url)).send().await.expect("GET /metrics");
    let text = page.text().await.expect("metrics text");
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Client `c`'s share of the other writes: holds of one admission, each with a key of its own,
/// each released at once. Returns the writes acknowledged.
async fn write_and_release(url: String, event: String, token: String, c: u64, pairs: u64, done: Arc<AtomicU64>) {
    let http = common::client();
    let holds = format!("{url}/v1/events/{event}/holds");
    for i in 0..pairs {
        let resp = http
            .post(&holds)
            .bearer_auth(&token)
            .header("Idempotency-Key", format!("other-{c}-{i}"))
            .json(&json!({"section": "LAWN", "quantity": 1}))
            .send()
            .await
            .expect("hold sent");
        let status = resp.status().as_u16();
        let hold: Value = resp.json().await.expect("hold body");
        assert_eq!(status, 201, "client {c}, hold {i}: {hold}");
        let hold_id = hold["hold_id"].as_str().expect("hold id");
        let resp = http.delete(format!("{url}/v1/holds/{hold_id}")).bearer_auth(&token).send().await.expect("sent");
        assert_eq!(resp.status().as_u16(), 204, "client {c}, release {i}");
        done.fetch_add(2, Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_keyed_hold_replayed_after_20_000_other_writes_and_a_crash_returns_its_first_answer_and_books_once() {
    let limits_off = ["--rate-limit-user-per-s", "0", "--churn-releases-max", "0"];
    // One shard: every write below shares the keyed hold's log. Holds outlast the test.
    let mut args = vec!["--shards", "1", "--hold-ttl", "1h"];
    args.extend(limits_off);
    let mut server = Server::start(&args).await;
    let admin = server.token("admin", "admin").await;
    let event = server.create_event(&admin, 1, 5, LAWN_CAPACITY, json!({})).await;
    let alice = server.token("alice", "user").await;
    let holds = format!("/v1/events/{event}/holds");
    let body = json!({"section": "LAWN", "quantity": KEYED_QUANTITY});
    let first = server.call("POST", &holds, Some(&alice), Some(body.clone()), Some("season-1")).await;
    assert_eq!(first.0, 201, "{}", first.1);
    let snapshots_before = counter(&server, "boxoffice_snapshot_copy_seconds_count").await;

    let started = Instant::now();
    let done = Arc::new(AtomicU64::new(0));
    let all_pairs = OTHER_WRITES / 2;
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let pairs = all_pairs / CLIENTS + u64::from(c < all_pairs % CLIENTS);
        let token = server.token(&format!("buyer{c}"), "user").await;
        let (url, event, done) = (server.url.clone(), event.clone(), done.clone());
        clients.push(tokio::spawn(write_and_release(url, event, token, c, pairs, done)));
    }
    for client in clients {
        client.await.expect("client finished");
    }
    let written = done.load(Ordering::Relaxed);
    assert_eq!(written, OTHER_WRITES, "every other write acknowledged");
    let snapshots = counter(&server, "boxoffice_snapshot_copy_seconds_count").await - snapshots_before;
    let entries = counter(&server, "boxoffice_entry_proposals_count").await;
    eprintln!(
        "{written} other writes in {:.1} s ({:.0}/s), {entries} log entries in all, {snapshots} snapshots meanwhile",
        started.elapsed().as_secs_f64(),
        written as f64 / started.elapsed().as_secs_f64()
    );

    let replay = server.call("POST", &holds, Some(&alice), Some(body.clone()), Some("season-1")).await;
    assert_eq!(replay, first, "the first answer, status and body");
    assert_eq!(held(&server, &event, "LAWN").await, KEYED_QUANTITY, "booked once");
    let hold_id = first.1["hold_id"].as_str().expect("hold id");
    let (status, hold) = server.get(&format!("/v1/holds/{hold_id}"), Some(&alice)).await;
    assert_eq!((status, hold["status"].as_str(), hold["quantity"].as_u64()), (200, Some("active"), Some(2)), "{hold}");

    // The outcome is on disk, not only in the process's memory.
    server.crash_and_restart().await;
    let replay = server.call("POST", &holds, Some(&alice), Some(body), Some("season-1")).await;
    assert_eq!(replay, first, "the first answer after a restart");
    assert_eq!(held(&server, &event, "LAWN").await, KEYED_QUANTITY, "still booked once");
}
