//! Catch-up: a cluster of three with one shard holds a sold-out event — every seat and every
//! general admission sold, one order each — and a fourth node takes over a replica of it while
//! bookings go on. The new replica catches up by snapshot (the log it would need was compacted
//! long before), streamed in bounded chunks on a connection of its own. Measures the transfer's
//! size, how long the move took (from draining node 1 until its replica is on node 4, caught up,
//! voting, and node 1 removed), and what the bookings made meanwhile saw, against before.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::error::TargetError;
use crate::report::{Latencies, Report};
use crate::target::Target;

/// Seats of one row: the most a row may have.
const ROW_SEATS: u32 = raft_store::SEATS_PER_ROW_MAX;
/// How often the fill reports its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(15);
/// Bookings measured before the move, for comparison.
const BASELINE: Duration = Duration::from_secs(20);
/// Buyers booking while the replica moves, and their pause between orders.
const BUYERS_DURING: usize = 8;
const BUYER_PAUSE: Duration = Duration::from_millis(20);
/// General admissions left over for them.
const SPARE_GENERAL: u64 = 100_000;

#[derive(Clone, Debug)]
pub struct CatchUpConfig {
    /// Seated seats, a multiple of 1,000 up to 200,000.
    pub seats: u32,
    /// Orders in all: one per seat, the rest general admissions.
    pub orders: u64,
    /// Concurrent buyers filling the event.
    pub clients: usize,
}

impl Default for CatchUpConfig {
    fn default() -> Self {
        CatchUpConfig { seats: 200_000, orders: 1_000_000, clients: 256 }
    }
}

impl CatchUpConfig {
    pub fn check(&self) -> Result<(), TargetError> {
        let bad = |what: String| Err(TargetError::Scenario(what));
        if self.seats == 0 || !self.seats.is_multiple_of(ROW_SEATS) || self.seats > raft_store::SEATS_PER_VENUE_MAX {
            return bad(format!("seats are a multiple of {ROW_SEATS} up to {}", raft_store::SEATS_PER_VENUE_MAX));
        }
        let general = self.orders.saturating_sub(u64::from(self.seats)) + SPARE_GENERAL;
        if self.orders < u64::from(self.seats) || general > u64::from(raft_store::GENERAL_CAPACITY_MAX) {
            return bad(format!(
                "orders are at least the seats, and at most the seats and {} general admissions",
                u64::from(raft_store::GENERAL_CAPACITY_MAX) - SPARE_GENERAL
            ));
        }
        if self.clients == 0 {
            return bad("at least one client".into());
        }
        Ok(())
    }
}

/// Holds and checks out one seat or general admission: `Ok(true)` once the order is confirmed.
async fn order(target: &Target, token: &str, event: &str, body: Value) -> Result<bool, TargetError> {
    let url = format!("{}/v1/events/{event}/holds", target.url);
    let resp = target.http.post(url).bearer_auth(token).json(&body).send().await?;
    if resp.status() != 201 {
        return Ok(false);
    }
    let hold: Value = resp.json().await?;
    let hold_id = hold["hold_id"].as_str().unwrap_or_default();
    let url = format!("{}/v1/holds/{hold_id}/checkout", target.url);
    let resp = target.http.post(url).bearer_auth(token).json(&json!({"payment_method": "sandbox_ok"})).send().await?;
    Ok(resp.status() == 201)
}

async fn create_event(target: &Target, admin: &str, config: &CatchUpConfig) -> Result<String, TargetError> {
    let rows: Vec<Value> =
        (0..config.seats / ROW_SEATS).map(|r| json!({"id": format!("R{r}"), "seats": ROW_SEATS})).collect();
    let general = config.orders - u64::from(config.seats) + SPARE_GENERAL;
    let venue = json!({
        "name": "Stadium", "city": "Lisbon", "country": "PT", "location": {"lat": 38.7, "lon": -9.1},
        "sections": [
            {"id": "FLOOR", "name": "Floor", "kind": "seated", "rows": rows},
            {"id": "LAWN", "name": "Lawn", "kind": "general", "capacity": general}
        ]
    });
    let venue = target.post("/v1/venues", Some(admin), venue, 201).await?;
    let event = json!({
        "name": "The Final", "description": "Sold out", "category": "sports",
        "performers": [{"name": "Both Teams"}], "venue_id": venue["venue_id"],
        "starts_at": "2099-01-01T20:00:00Z",
        "prices": [
            {"section": "FLOOR", "price": {"amount": 5000, "currency": "USD"}},
            {"section": "LAWN", "price": {"amount": 2000, "currency": "USD"}}
        ]
    });
    let event = target.post("/v1/events", Some(admin), event, 201).await?;
    Ok(event["event_id"].as_str().unwrap_or_default().to_owned())
}

/// Sells every seat and general admissions up to `config.orders`, one order each.
async fn fill(target: &Arc<Target>, event: &str, config: &CatchUpConfig) -> Result<u64, TargetError> {
    let sold = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let general = config.orders - u64::from(config.seats);
    let mut tasks = Vec::new();
    for c in 0..config.clients {
        let (target, event, sold, clients) = (target.clone(), event.to_owned(), sold.clone(), config.clients as u64);
        let rows: Vec<u32> = (0..config.seats / ROW_SEATS).filter(|r| *r as usize % config.clients == c).collect();
        let share = general / clients + u64::from((c as u64) < general % clients);
        tasks.push(tokio::spawn(async move {
            let token = target.token(&format!("filler-{c}"), "user").await?;
            for row in rows {
                for n in 1..=ROW_SEATS {
                    if order(&target, &token, &event, json!({"seats": [format!("FLOOR-R{row}-{n}")]})).await? {
                        sold.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            for _ in 0..share {
                if order(&target, &token, &event, json!({"section": "LAWN", "quantity": 1})).await? {
                    sold.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok::<(), TargetError>(())
        }));
    }
    let progress = {
        let sold = sold.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(PROGRESS_EVERY).await;
                let n = sold.load(Ordering::Relaxed);
                let s = started.elapsed().as_secs_f64();
                eprintln!("  filled {n} orders in {s:.0} s ({:.0}/s)", n as f64 / s);
            }
        })
    };
    for t in tasks {
        t.await.map_err(|e| TargetError::Scenario(e.to_string()))??;
    }
    progress.abort();
    Ok(sold.load(Ordering::Relaxed))
}

/// One booking made around the move: when it was sent, how long it took, whether it succeeded.
type Booked = (Instant, Duration, bool);

/// Buyers ordering general admissions without pause, until stopped.
fn spawn_buyers(
    target: &Arc<Target>,
    event: &str,
    stop: &Arc<AtomicBool>,
    log: &Arc<Mutex<Vec<Booked>>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..BUYERS_DURING)
        .map(|b| {
            let (target, event, stop, log) = (target.clone(), event.to_owned(), stop.clone(), log.clone());
            tokio::spawn(async move {
                let Ok(token) = target.token(&format!("buyer-{b}"), "user").await else { return };
                while !stop.load(Ordering::Relaxed) {
                    let sent = Instant::now();
                    let ok = order(&target, &token, &event, json!({"section": "LAWN", "quantity": 1}))
                        .await
                        .unwrap_or(false);
                    log.lock().unwrap_or_else(|p| p.into_inner()).push((sent, sent.elapsed(), ok));
                    tokio::time::sleep(BUYER_PAUSE).await;
                }
            })
        })
        .collect()
}

fn window(log: &[Booked], from: Instant, to: Instant) -> (Latencies, usize, usize) {
    let mut latencies = Latencies::default();
    let (mut ok, mut failed) = (0, 0);
    for (sent, took, success) in log.iter().filter(|(sent, _, _)| *sent >= from && *sent < to) {
        let _ = sent;
        if *success {
            latencies.record(*took);
            ok += 1;
        } else {
            failed += 1;
        }
    }
    (latencies, ok, failed)
}

/// Runs the scenario on a cluster it starts from `exe`, and prints its figures.
pub async fn run(exe: &std::path::Path, config: CatchUpConfig) -> Result<(), TargetError> {
    config.check()?;
    let target = Arc::new(Target::spawn_cluster(exe, 3, 1, crate::SERVER_ARGS_NO_LIMITS).await?);
    let cluster = target.cluster().ok_or_else(|| TargetError::Scenario("no cluster".into()))?;
    let admin = target.token("admin", "admin").await?;
    let event = create_event(&target, &admin, &config).await?;
    eprintln!("catch-up: filling {} seats and {} orders with {} clients", config.seats, config.orders, config.clients);
    let filling = Instant::now();
    let sold = fill(&target, &event, &config).await?;
    let fill_time = filling.elapsed();

    let (stop, log) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Vec::new())));
    let buyers = spawn_buyers(&target, &event, &stop, &log);
    let baseline_from = Instant::now();
    tokio::time::sleep(BASELINE).await;

    let (id, addr) = cluster.start_node().await?;
    let seed = cluster.node_addrs().into_iter().find(|(n, _)| *n == 2).map(|(_, a)| a).unwrap_or_default();
    cluster.cli(&["cluster", "add-node", "--node", &seed, "--id", &id.to_string(), "--addr", &addr]).await?;
    let moving = Instant::now();
    cluster.cli(&["cluster", "remove-node", "--node", &seed, "--id", "1", "--wait"]).await?;
    let moved = moving.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for b in buyers {
        let _ = b.await;
    }

    let page = target.http.get(format!("http://{addr}/metrics")).send().await?.text().await?;
    let page = crate::target::Metrics(page);
    let received = page.sum("boxoffice_snapshot_received_bytes_total", None);
    let installs = page.sum("boxoffice_snapshot_installs_total", Some("outcome=\"installed\""));
    let log = log.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let (mut before, before_ok, before_failed) = window(&log, baseline_from, moving);
    let (mut during, during_ok, during_failed) = window(&log, moving, moving + moved);

    let mut report = Report::new("catch-up: a replica moves onto a new node, by snapshot, while bookings go on");
    report.line("seats (sold out)", config.seats);
    report.line("orders", sold);
    report.line(
        "fill",
        format!("{:.0} s ({:.0} orders/s)", fill_time.as_secs_f64(), sold as f64 / fill_time.as_secs_f64()),
    );
    report.line("snapshot received by the new node", format!("{:.1} MB in {installs} install(s)", received / 1e6));
    report.line("catch-up (drain node 1 → replica on the new node, voting)", format!("{:.1} s", moved.as_secs_f64()));
    let rate = |n: usize, d: Duration| n as f64 / d.as_secs_f64().max(0.001);
    report.line(
        "orders/s before (8 buyers)",
        format!("{:.0} ({before_failed} failed)", rate(before_ok, moving - baseline_from)),
    );
    report.latencies("order latency before", &mut before);
    report.line("orders/s during the catch-up", format!("{:.0} ({during_failed} failed)", rate(during_ok, moved)));
    report.latencies("order latency during", &mut during);
    report.print();
    Ok(())
}
