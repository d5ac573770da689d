//! Backups and restores with the real binary: a backup taken while buyers book, more bookings,
//! the whole cluster destroyed, a new cluster (other node ids, other addresses) started from the
//! backup — and every booking acknowledged before `backup create` started is there, none asked
//! for after it finished is. The same backup starts a dev data directory, and `backup verify`
//! finds a flipped byte.
#![allow(clippy::unwrap_used)]

mod common;
mod seasons;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{eventually, Server};
use seasons::{buyer, run, Booking, Cluster, Ledger};
use serde_json::json;

const SHARDS: u32 = 4;
const ROWS: [&str; 6] = ["A", "B", "C", "D", "E", "F"];
const SEATS_PER_ROW: u32 = 30;

/// Checks the restored cluster (or dev server) behind `api` against what the buyers were told:
/// `before` (acknowledged before the backup started) is all there, `after` (first asked for after
/// it finished) is not. Returns how many of each were checked.
async fn assert_restored(
    api: &Server,
    events: &[String],
    before: &[Booking],
    after: &[Booking],
    (backup_started, backup_finished): (Instant, Instant),
) -> (usize, usize) {
    let mut tokens: BTreeMap<String, String> = BTreeMap::new();
    for b in before.iter().chain(after) {
        if !tokens.contains_key(&b.user) {
            tokens.insert(b.user.clone(), api.token(&b.user, "user").await);
        }
    }
    let mut seats: BTreeMap<String, String> = BTreeMap::new();
    for event in events {
        for (seat, status) in api.seat_statuses(event).await {
            seats.insert(format!("{event}/{seat}"), status);
        }
    }
    let seat_of = |b: &Booking| {
        let hold = b.hold_id.as_deref().unwrap_or("");
        let event = events.iter().find(|e| hold.contains(e.as_str())).cloned().unwrap_or_default();
        seats.get(&format!("{event}/{}", b.seat)).cloned().unwrap_or_default()
    };
    let mut orders = 0;
    for b in before {
        let token = &tokens[&b.user];
        let hold_id = b.hold_id.as_ref().unwrap();
        let (status, hold) = api.get(&format!("/v1/holds/{hold_id}"), Some(token)).await;
        assert_eq!(status, 200, "hold {hold_id} (acknowledged before the backup) is missing: {hold}");
        assert_eq!(hold["seats"], json!([b.seat]), "{hold}");
        let paid = b.order.as_ref().filter(|o| o.acked.is_some_and(|t| t < backup_started));
        if let Some(order) = paid {
            let id = order.order_id.as_ref().unwrap();
            let (status, o) = api.get(&format!("/v1/orders/{id}"), Some(token)).await;
            assert_eq!((status, o["status"].as_str()), (200, Some("confirmed")), "order {id}: {o}");
            assert_eq!(seat_of(b), "sold", "{}", b.seat);
            orders += 1;
        } else if b.order.as_ref().is_some_and(|o| o.first_sent > backup_finished) {
            assert_eq!(seat_of(b), "held", "{} was checked out only after the backup", b.seat);
        } else {
            // Checked out while the backup ran, or not at all: either way, still the buyer's.
            assert!(["held", "sold"].contains(&seat_of(b).as_str()), "{}: {}", b.seat, seat_of(b));
        }
    }
    for b in after {
        if let Some(hold_id) = &b.hold_id {
            let (status, hold) = api.get(&format!("/v1/holds/{hold_id}"), Some(&tokens[&b.user])).await;
            assert_eq!(status, 404, "hold {hold_id} (asked for after the backup) is there: {hold}");
            assert_eq!(seat_of(b), "available", "{} was booked only after the backup", b.seat);
        }
    }
    eprintln!(
        "restored: {} holds ({orders} orders) from before the backup, {} from after it absent",
        before.len(),
        after.len()
    );
    (before.len(), after.len())
}

/// Flips one byte in the middle of `file`.
fn flip_byte(file: &Path) {
    let mut bytes = std::fs::read(file).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(file, bytes).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_under_load_restores_every_booking_acknowledged_before_it_and_none_after() {
    common::install_crypto_provider();
    let tmp = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let shards = SHARDS.to_string();
    let old =
        Cluster::start(&tmp.path().join("old"), &[1, 2, 3], &["--snapshot-every-logs", "200"], &["--shards", &shards])
            .await;
    let api = Arc::new(Server::attach(&old.api.url));
    let admin = api.token("admin", "admin").await;
    let mut events = Vec::new();
    for _ in 0..2 {
        events.push(api.create_event(&admin, ROWS.len(), SEATS_PER_ROW, 100, json!({})).await);
    }
    let (ledger, stop) = (Arc::new(Ledger::default()), Arc::new(AtomicBool::new(false)));
    let mut buyers = Vec::new();
    for event in &events {
        for row in ROWS {
            let args = (api.clone(), event.clone(), row.to_owned(), SEATS_PER_ROW, ledger.clone(), stop.clone());
            buyers.push(tokio::spawn(buyer(args.0, args.1, args.2, args.3, args.4, args.5)));
        }
    }
    eventually(Duration::from_secs(60), "bookings before the backup", || async {
        (ledger.acked_count() >= 60).then_some(())
    })
    .await;

    // The backup, while the buyers go on.
    let backup = tmp.path().join("backup");
    let backup_started = Instant::now();
    let out = backup.display().to_string();
    let (ok, text) = run(&["backup", "create", "--node", &old.any_node(), "--out", &out]).await;
    let backup_finished = Instant::now();
    assert!(ok, "backup create failed: {text}");
    eprintln!("backup create took {:?}:\n{text}", backup_finished - backup_started);
    let acked_during =
        ledger.all().iter().filter(|b| b.acked.is_some_and(|t| t > backup_started && t < backup_finished)).count();
    assert!(acked_during > 0, "no booking was acknowledged while the backup ran");

    // More bookings after it, then the whole cluster goes.
    let after_count = ledger.acked_count();
    eventually(Duration::from_secs(60), "bookings after the backup", || async {
        (ledger.acked_count() >= after_count + 40).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for b in buyers {
        b.await.unwrap();
    }
    old.destroy();

    let (ok, text) = run(&["backup", "verify", &out]).await;
    assert!(ok && text.contains("ok:"), "backup verify failed: {text}");
    let all = ledger.all();
    let before: Vec<Booking> = all.iter().filter(|b| b.acked.is_some_and(|t| t < backup_started)).cloned().collect();
    let after: Vec<Booking> = all.iter().filter(|b| b.first_sent > backup_finished).cloned().collect();
    assert!(!before.is_empty() && after.iter().any(|b| b.hold_id.is_some()), "both sides of the backup have bookings");

    // A new cluster, other ids and addresses, from the backup.
    let new = Cluster::start(&tmp.path().join("new"), &[11, 12, 13], &[], &["--restore", &out]).await;
    assert_restored(&new.api, &events, &before, &after, (backup_started, backup_finished)).await;
    // A retry of a booking acknowledged before the backup gets its first answer (I4 survives).
    let first = &before[0];
    let token = new.api.token(&first.user, "user").await;
    let event = events.iter().find(|e| first.hold_id.as_deref().unwrap().contains(e.as_str())).unwrap();
    let retry = new
        .api
        .http
        .post(format!("{}/v1/events/{event}/holds", new.api.url))
        .bearer_auth(&token)
        .header("Idempotency-Key", &first.key)
        .json(&json!({"seats": [first.seat]}))
        .send()
        .await
        .unwrap();
    assert_eq!(retry.status().as_u16(), 201);
    let retried: serde_json::Value = retry.json().await.unwrap();
    assert_eq!(retried["hold_id"].as_str(), first.hold_id.as_deref(), "{retried}");
    // The restored cluster takes new bookings.
    let buyer_token = new.api.token("after-restore", "user").await;
    let (status, hold) = new
        .api
        .call(
            "POST",
            &format!("/v1/events/{}/holds", events[1]),
            Some(&buyer_token),
            Some(json!({"quantity": 2, "section": "LAWN"})),
            None,
        )
        .await;
    assert_eq!(status, 201, "{hold}");
    let status = new.status();
    assert!(!status.contains("NO LEADER") && status.contains("balanced"), "{status}");
    new.destroy();

    // The same backup starts a dev data directory; a non-empty one is refused.
    let dev = Server::start(&["--restore", &out]).await;
    assert_restored(&dev, &events, &before, &after, (backup_started, backup_finished)).await;
    let occupied = dev.data_dir().display().to_string();
    let (ok, text) = run(&["dev", "--addr", "127.0.0.1:0", "--data-dir", &occupied, "--restore", &out]).await;
    assert!(!ok && text.contains("not empty"), "{text}");
    drop(dev);

    // A flipped byte is found, and the group named.
    let damaged = tmp.path().join("damaged");
    copy_dir(&backup, &damaged);
    flip_byte(&damaged.join("shard-1.chunks"));
    let (ok, text) = run(&["backup", "verify", &damaged.display().to_string()]).await;
    assert!(!ok && text.contains("shard-1"), "a damaged backup passed: {text}");
    eprintln!("verify of the damaged copy: {}", text.trim());
    eprintln!("backup test took {:?}", started.elapsed());
}
