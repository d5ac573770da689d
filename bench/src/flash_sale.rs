//! Flash sale against Boxoffice: one hot event, many buyers racing for seats, each hold durable
//! before it is acknowledged. Reports holds per second and latency, and checks I1 on the final
//! state. The workload itself is in `sale.rs`, shared with the peer baselines.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::error::TargetError;
use crate::report::Report;
use crate::sale::{row_id, run_paced_sale, run_sale, FlashSaleConfig, HoldOutcome, SaleFigures, SaleStore, ROW_SEATS};
use crate::target::Target;

/// Boxoffice over its public HTTP api.
pub struct BoxofficeStore {
    target: Arc<Target>,
}

impl BoxofficeStore {
    pub fn new(target: Arc<Target>) -> BoxofficeStore {
        BoxofficeStore { target }
    }
}

/// The part of a 201 hold the buyer keeps.
#[derive(serde::Deserialize)]
struct Held {
    hold_id: String,
}

impl SaleStore for BoxofficeStore {
    /// The buyer's bearer token.
    type Buyer = String;

    fn describe(&self) -> String {
        self.target.describe()
    }

    async fn setup(&self, seats: u32) -> Result<String, TargetError> {
        let target = &self.target;
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

    async fn buyer(&self, n: usize) -> Result<String, TargetError> {
        self.target.token(&format!("buyer{n}"), "user").await
    }

    async fn hold(&self, token: &mut String, event: &str, seats: &[String]) -> HoldOutcome {
        let path = format!("{}/v1/events/{event}/holds", self.target.url);
        let resp = self.target.http.post(&path).bearer_auth(&*token).json(&json!({"seats": seats})).send().await;
        let Ok(resp) = resp else {
            return HoldOutcome::Error;
        };
        // A refusal's body is read and dropped, as a client that only retries would.
        match resp.status().as_u16() {
            201 => match resp.json::<Held>().await {
                Ok(held) => HoldOutcome::Held(held.hold_id),
                Err(_) => HoldOutcome::Error,
            },
            409 => match resp.bytes().await {
                Ok(_) => HoldOutcome::Conflict,
                Err(_) => HoldOutcome::Error,
            },
            _ => HoldOutcome::Error,
        }
    }

    async fn checkout(&self, token: &mut String, _event: &str, hold_id: &str, _seats: &[String]) -> bool {
        let path = format!("{}/v1/holds/{hold_id}/checkout", self.target.url);
        let resp = self
            .target
            .http
            .post(path)
            .bearer_auth(&*token)
            .json(&json!({"payment_method": "sandbox_ok"}))
            .send()
            .await;
        matches!(resp.map(|r| r.status().as_u16()), Ok(201))
    }

    async fn taken(&self, event: &str) -> Result<usize, TargetError> {
        let map = self.target.get(&format!("/v1/events/{event}/seats")).await?;
        Ok(map["seats"].as_array().map_or(0, |s| s.iter().filter(|s| s["status"] != "available").count()))
    }

    /// The event's details carry the available count: cheaper than the whole seat map.
    async fn sold_out(&self, event: &str, _seats: u32) -> bool {
        match self.target.get(&format!("/v1/events/{event}")).await {
            Ok(e) => e["sections"].as_array().is_some_and(|s| s.iter().all(|s| s["available"] == 0)),
            Err(_) => false,
        }
    }
}

pub async fn run(target: Arc<Target>, cfg: FlashSaleConfig) -> Result<Report, TargetError> {
    let store = Arc::new(BoxofficeStore::new(target));
    let figures = run_sale(store, &cfg).await?;
    Ok(report(figures, &cfg))
}

/// The sale at a fixed offered rate of hold commands (an open loop), for latency below the peak.
pub async fn run_paced(target: Arc<Target>, cfg: FlashSaleConfig, rate: f64) -> Result<Report, TargetError> {
    let store = Arc::new(BoxofficeStore::new(target));
    let mut f = run_paced_sale(store, &cfg, move |_| rate).await?;
    let mut report = Report::new(&format!("flash sale at {rate:.0} hold commands/s (open loop)"));
    report.line("seats / sessions", format!("{} / {}", cfg.seats, crate::sale::paced_sessions(&cfg)));
    report.latencies("answered (from when due)", &mut f.answered.latencies);
    report.latencies("held (from when due)", &mut f.held_latency);
    report.line("holds / checkouts", format!("{} / {}", f.holds, f.checkouts));
    let skipped = crate::pace::skipped_line(f.answered.skipped, f.answered.skipped_span);
    report.line("not started", format!("{skipped}: in flight at the bound, the server fell behind"));
    report.line("errors", f.answered.errors + f.checkout_errors);
    seats_and_i1(&mut report, cfg.seats, f.taken, f.acknowledged, f.double_sold);
    Ok(report)
}

/// The final state's lines: seats taken, and I1 (taken = acknowledged, none twice).
fn seats_and_i1(report: &mut Report, seats: u32, taken: usize, acknowledged: usize, double_sold: u64) {
    report.line("seats taken", format!("{taken} of {seats}"));
    let i1 = if double_sold == 0 && taken == acknowledged {
        "ok".to_owned()
    } else {
        format!("VIOLATED ({double_sold} double, {taken} taken vs {acknowledged} acknowledged)")
    };
    report.line("I1 (no seat twice)", i1);
}

fn report(mut f: SaleFigures, cfg: &FlashSaleConfig) -> Report {
    let mut report = Report::new(&format!("flash sale ({})", f.store));
    report.line("seats / buyers", format!("{} / {}", cfg.seats, cfg.buyers));
    report.line("90% of seats sold in", format!("{:.2} s (run {:.2} s)", f.sale_s, f.elapsed_s));
    report.line("durable holds/s", format!("{:.0} (until 90% sold)", f.holds_per_s));
    report.line(
        "hold commands/s",
        format!("{:.0} (successes and 409s alike are replicated)", (f.holds + f.conflicts) as f64 / f.elapsed_s),
    );
    report.line("checkouts/s", format!("{:.0}", f.checkouts as f64 / f.elapsed_s));
    report.latencies("hold latency", &mut f.hold_latency);
    report.latencies("checkout latency", &mut f.checkout_latency);
    report.line("conflicts (409)", f.conflicts);
    report.line("errors", f.errors);
    seats_and_i1(&mut report, cfg.seats, f.taken, f.acknowledged, f.double_sold);
    report
}
