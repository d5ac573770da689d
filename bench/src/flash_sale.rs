//! Flash sale: one hot event, many buyers racing for seats, each hold durable before it is
//! acknowledged. Reports holds per second and latency, and checks I1 on the final state.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::report::{Latencies, Report};
use crate::target::{Target, TargetError};

#[derive(Clone, Debug)]
pub struct FlashSaleConfig {
    /// Seats of the hot event: `rows` rows of 200 (the last row may be shorter).
    pub seats: u32,
    pub buyers: usize,
    pub duration: Duration,
    /// Fraction of successful holds that go on to checkout.
    pub checkout_ratio: f64,
}

impl Default for FlashSaleConfig {
    fn default() -> Self {
        FlashSaleConfig { seats: 20_000, buyers: 128, duration: Duration::from_secs(20), checkout_ratio: 0.5 }
    }
}

const ROW_SEATS: u32 = 200;

/// Consecutive conflicts after which a buyer asks whether the event has sold out.
const CONFLICTS_BEFORE_CHECK: u32 = 16;

#[derive(Default)]
struct BuyerResult {
    /// When this buyer's last hold succeeded, from the start of the sale.
    last_success: Duration,
    /// (time from the start, seats won) of every successful hold.
    successes: Vec<(Duration, usize)>,
    holds: u64,
    conflicts: u64,
    errors: u64,
    checkouts: u64,
    hold_latency: Latencies,
    checkout_latency: Latencies,
    /// Seat id → buyer, for the I1 check.
    won: Vec<String>,
}

fn row_id(r: u32) -> String {
    format!("R{r}")
}

async fn setup(target: &Target, seats: u32) -> Result<String, TargetError> {
    let admin = target.token("bench-admin", "admin").await?;
    let rows: Vec<Value> = (0..seats.div_ceil(ROW_SEATS))
        .map(|r| json!({"id": row_id(r), "seats": ROW_SEATS.min(seats - r * ROW_SEATS)}))
        .collect();
    let venue = json!({
        "name": "Bench Stadium", "city": "Lisbon", "country": "PT", "location": {"lat": 38.7, "lon": -9.1},
        "sections": [{"id": "MAIN", "name": "Main", "kind": "seated", "rows": rows}]
    });
    let venue = target.post("/v1/venues", Some(&admin), venue, 201).await?;
    let event = json!({
        "name": "Flash Sale", "description": "bench", "category": "music", "performers": [{"name": "Bench"}],
        "venue_id": venue["venue_id"], "starts_at": "2099-01-01T20:00:00Z",
        "prices": [{"section": "MAIN", "price": {"amount": 5000, "currency": "USD"}}]
    });
    let event = target.post("/v1/events", Some(&admin), event, 201).await?;
    Ok(event["event_id"].as_str().unwrap_or_default().to_owned())
}

async fn sold_out(target: &Target, event: &str) -> bool {
    match target.get(&format!("/v1/events/{event}")).await {
        Ok(e) => e["sections"].as_array().is_some_and(|s| s.iter().all(|s| s["available"] == 0)),
        Err(_) => false,
    }
}

async fn buyer(
    target: Arc<Target>,
    event: String,
    n: usize,
    cfg: FlashSaleConfig,
    started: Instant,
    deadline: Instant,
) -> Result<BuyerResult, TargetError> {
    let token = target.token(&format!("buyer{n}"), "user").await?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(n as u64);
    let mut seats: Vec<String> =
        (0..cfg.seats).map(|i| format!("MAIN-{}-{}", row_id(i / ROW_SEATS), i % ROW_SEATS + 1)).collect();
    seats.shuffle(&mut rng);
    let mut next = 0;
    let mut r = BuyerResult::default();
    let mut conflicts_in_a_row = 0;
    let holds_path = format!("{}/v1/events/{event}/holds", target.url);
    while Instant::now() < deadline && next < seats.len() {
        let want = rng.gen_range(1..=4).min(seats.len() - next);
        let pick = &seats[next..next + want];
        next += want;
        let started_hold = Instant::now();
        let resp = target.http.post(&holds_path).bearer_auth(&token).json(&json!({"seats": pick})).send().await;
        let Ok(resp) = resp else {
            r.errors += 1;
            continue;
        };
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        match status {
            201 => {
                r.hold_latency.record(started_hold.elapsed());
                r.last_success = started.elapsed();
                r.successes.push((r.last_success, pick.len()));
                conflicts_in_a_row = 0;
                r.holds += 1;
                r.won.extend(pick.iter().cloned());
                if rng.gen_bool(cfg.checkout_ratio) {
                    let started = Instant::now();
                    let path =
                        format!("{}/v1/holds/{}/checkout", target.url, body["hold_id"].as_str().unwrap_or_default());
                    let resp = target
                        .http
                        .post(path)
                        .bearer_auth(&token)
                        .json(&json!({"payment_method": "sandbox_ok"}))
                        .send()
                        .await;
                    match resp.map(|r| r.status().as_u16()) {
                        Ok(201) => {
                            r.checkouts += 1;
                            r.checkout_latency.record(started.elapsed());
                        }
                        _ => r.errors += 1,
                    }
                }
            }
            409 => {
                r.conflicts += 1;
                conflicts_in_a_row += 1;
                if conflicts_in_a_row >= CONFLICTS_BEFORE_CHECK {
                    if sold_out(&target, &event).await {
                        break;
                    }
                    conflicts_in_a_row = 0;
                }
            }
            _ => r.errors += 1,
        }
    }
    Ok(r)
}

pub async fn run(target: Arc<Target>, cfg: FlashSaleConfig) -> Result<Report, TargetError> {
    let event = setup(&target, cfg.seats).await?;
    let started = Instant::now();
    let deadline = started + cfg.duration;
    let tasks: Vec<_> = (0..cfg.buyers)
        .map(|n| tokio::spawn(buyer(target.clone(), event.clone(), n, cfg.clone(), started, deadline)))
        .collect();
    let mut total = BuyerResult::default();
    let mut owners: BTreeMap<String, usize> = BTreeMap::new();
    let mut double_sold = 0u64;
    for (n, t) in tasks.into_iter().enumerate() {
        let r = t.await.map_err(|e| TargetError::Spawn(e.to_string()))??;
        total.last_success = total.last_success.max(r.last_success);
        total.successes.extend(r.successes);
        total.holds += r.holds;
        total.conflicts += r.conflicts;
        total.errors += r.errors;
        total.checkouts += r.checkouts;
        total.hold_latency.merge(r.hold_latency);
        total.checkout_latency.merge(r.checkout_latency);
        for seat in r.won {
            if owners.insert(seat, n).is_some() {
                double_sold += 1;
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    // Throughput over the sale proper, until 90% of the seats are taken: after that, the last few
    // free seats are found only by chance and the rate measures luck, not the store.
    total.successes.sort();
    let ninety_percent = cfg.seats as usize * 9 / 10;
    let mut seats_so_far = 0;
    let mut holds_to_90 = 0usize;
    let mut t90 = total.last_success;
    for (at, seats) in &total.successes {
        seats_so_far += seats;
        holds_to_90 += 1;
        if seats_so_far >= ninety_percent {
            t90 = *at;
            break;
        }
    }
    let sale_s = t90.as_secs_f64().max(0.001);

    // I1 on the final state: the store shows exactly the seats clients were told they got.
    let map = target.get(&format!("/v1/events/{event}/seats")).await?;
    let taken = map["seats"].as_array().map_or(0, |s| s.iter().filter(|s| s["status"] != "available").count());
    let i1 = double_sold == 0 && taken == owners.len();

    let mut report = Report::new(&format!("flash sale ({})", target.describe()));
    report.line("seats / buyers", format!("{} / {}", cfg.seats, cfg.buyers));
    report.line("90% of seats sold in", format!("{sale_s:.2} s (run {elapsed:.2} s)"));
    report.line("durable holds/s", format!("{:.0} (until 90% sold)", holds_to_90 as f64 / sale_s));
    report.line(
        "hold commands/s",
        format!("{:.0} (successes and 409s alike are replicated)", (total.holds + total.conflicts) as f64 / elapsed),
    );
    report.line("checkouts/s", format!("{:.0}", total.checkouts as f64 / elapsed));
    report.latencies("hold latency", &mut total.hold_latency);
    report.latencies("checkout latency", &mut total.checkout_latency);
    report.line("conflicts (409)", total.conflicts);
    report.line("errors", total.errors);
    report.line("seats taken", format!("{taken} of {}", cfg.seats));
    report.line(
        "I1 (no seat twice)",
        if i1 {
            "ok".to_owned()
        } else {
            format!("VIOLATED ({double_sold} double, {taken} taken vs {} acknowledged)", owners.len())
        },
    );
    Ok(report)
}
