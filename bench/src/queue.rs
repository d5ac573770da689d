//! The waiting room's front door: how many buyers one api instance lets join a high-traffic
//! event's queue per second, and how many status polls it answers, with every join durable (its
//! place is decided in apply, one per buyer: the api sends the joins of a room in batches).
//!
//! Two closed-loop runs against one api: joiners `POST /v1/events/{id}/queue` as fast as they are
//! answered, each client as a new buyer per join until its buyers run out (then its joins are
//! repeats, answered with the place the buyer has); then pollers `GET` the status with the tokens
//! the first run got. The sale is not open during the runs (the event opens in the far future),
//! so what is measured is the join path alone, not admission.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::error::TargetError;
use crate::report::{Latencies, Report};
use crate::target::Target;

#[derive(Clone, Debug)]
pub struct QueueBenchConfig {
    /// Concurrent clients in each run.
    pub clients: usize,
    /// Length of each run.
    pub duration: Duration,
}

impl Default for QueueBenchConfig {
    fn default() -> Self {
        QueueBenchConfig { clients: 64, duration: Duration::from_secs(10) }
    }
}

/// Queue tokens kept for the polling run at most.
const TOKENS_KEPT_MAX: usize = 100_000;
/// Buyers (users) each client joins as, one after another; their tokens are minted before the
/// runs.
const BUYERS_PER_CLIENT: usize = 256;

/// Bearer tokens of each client's buyers.
async fn buyer_tokens(target: &Arc<Target>, clients: usize) -> Result<Vec<Vec<String>>, TargetError> {
    let mut tasks = Vec::with_capacity(clients);
    for c in 0..clients {
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            let mut tokens = Vec::with_capacity(BUYERS_PER_CLIENT);
            for b in 0..BUYERS_PER_CLIENT {
                tokens.push(target.token(&format!("queue-bench-{c}-{b}"), "user").await?);
            }
            Ok::<_, TargetError>(tokens)
        }));
    }
    let mut out = Vec::with_capacity(clients);
    for task in tasks {
        out.push(task.await.map_err(|e| TargetError::Scenario(format!("a token task failed: {e}")))??);
    }
    Ok(out)
}

async fn setup(target: &Target) -> Result<String, TargetError> {
    let admin = target.token("bench-admin", "admin").await?;
    let venue = json!({
        "name": "Bench Arena", "city": "Lisbon", "country": "PT", "location": {"lat": 38.7, "lon": -9.1},
        "sections": [{"id": "GA", "name": "Floor", "kind": "general", "capacity": 50_000}]
    });
    let venue = target.post("/v1/venues", Some(&admin), venue, 201).await?;
    let event = json!({
        "name": "Queue Bench", "category": "music", "venue_id": venue["venue_id"],
        "starts_at": "2099-01-01T20:00:00Z", "on_sale_at": "2098-12-01T10:00:00Z", "high_traffic": true,
        "prices": [{"section": "GA", "price": {"amount": 5000, "currency": "USD"}}]
    });
    let event = target.post("/v1/events", Some(&admin), event, 201).await?;
    Ok(event["event_id"].as_str().unwrap_or_default().to_owned())
}

struct Run {
    done: u64,
    errors: u64,
    latencies: Latencies,
    elapsed: Duration,
}

/// Runs `clients` loops of `request` for `duration`; `request(client, n)` answers success.
async fn closed_loop<F, Fut>(clients: usize, duration: Duration, request: F) -> Run
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let request = Arc::new(request);
    let stop = Arc::new(AtomicBool::new(false));
    let (done, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..clients {
        let (request, stop, done, errors) = (request.clone(), stop.clone(), done.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Latencies::default();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                if request(client, n).await {
                    latencies.record(t.elapsed());
                    done.fetch_add(1, Ordering::Relaxed);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                n += 1;
            }
            latencies
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Latencies::default();
    for task in tasks {
        if let Ok(l) = task.await {
            latencies.merge(l);
        }
    }
    Run {
        done: done.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        latencies,
        elapsed: started.elapsed(),
    }
}

pub async fn run(target: Arc<Target>, cfg: QueueBenchConfig) -> Result<Report, TargetError> {
    let event = Arc::new(setup(&target).await?);
    let tokens = Arc::new(buyer_tokens(&target, cfg.clients).await?);
    let before = target.metrics().await?;
    let (batches_before, repeats_before) =
        (before.sum("api_queue_join_batches_total", None), before.sum("api_queue_rejoins_total", None));

    // (client, buyer, queue token) of joins answered.
    let kept: Arc<Mutex<Vec<(usize, usize, String)>>> = Arc::new(Mutex::new(Vec::new()));
    let joins = {
        let (target, event, tokens, kept) = (target.clone(), event.clone(), tokens.clone(), kept.clone());
        closed_loop(cfg.clients, cfg.duration, move |client, n| {
            let (target, event, tokens, kept) = (target.clone(), event.clone(), tokens.clone(), kept.clone());
            async move {
                let path = format!("/v1/events/{event}/queue");
                let buyer = n as usize % BUYERS_PER_CLIENT;
                match target.post(&path, Some(&tokens[client][buyer]), Value::Null, 201).await {
                    Ok(joined) => {
                        if let (Some(t), Ok(mut kept)) = (joined["queue_token"].as_str(), kept.lock()) {
                            if kept.len() < TOKENS_KEPT_MAX {
                                kept.push((client, buyer, t.to_owned()));
                            }
                        }
                        true
                    }
                    Err(_) => false,
                }
            }
        })
        .await
    };
    let after = target.metrics().await?;
    let batches = after.sum("api_queue_join_batches_total", None) - batches_before;
    let repeats = after.sum("api_queue_rejoins_total", None) - repeats_before;

    let kept = std::mem::take(&mut *kept.lock().map_err(|_| TargetError::Scenario("poisoned".into()))?);
    // Each client polls the tokens its buyers got (a queue token is bound to its user).
    let mut by_client: Vec<Vec<(usize, String)>> = vec![Vec::new(); cfg.clients];
    for (client, buyer, token) in kept {
        by_client[client].push((buyer, token));
    }
    if by_client.iter().any(Vec::is_empty) {
        return Err(TargetError::Scenario("a client joined no queue".into()));
    }
    let kept = Arc::new(by_client);
    let polls = {
        let (target, event, tokens, kept) = (target.clone(), event.clone(), tokens.clone(), kept.clone());
        closed_loop(cfg.clients, cfg.duration, move |client, n| {
            let (target, event, tokens, kept) = (target.clone(), event.clone(), tokens.clone(), kept.clone());
            async move {
                let mine = &kept[client];
                let Some((buyer, token)) = mine.get(n as usize % mine.len().max(1)) else { return false };
                let resp = target
                    .http
                    .get(format!("{}/v1/events/{event}/queue", target.url))
                    .bearer_auth(&tokens[client][*buyer])
                    .header("x-queue-token", token.as_str())
                    .send()
                    .await;
                matches!(resp, Ok(r) if r.status() == 200)
            }
        })
        .await
    };

    let mut report = Report::new(&format!("queue ({}, one api instance)", target.describe()));
    let mut joins = joins;
    let per_s = |run: &Run| run.done as f64 / run.elapsed.as_secs_f64();
    report
        .line("joins per second", format!("{:.0} by {} clients ({} errors)", per_s(&joins), cfg.clients, joins.errors));
    report.latencies("join latency", &mut joins.latencies);
    report.line(
        "join batches",
        format!(
            "{batches:.0} Raft writes for {} joins ({:.0} joins per batch; {repeats:.0} repeats answered with the \
             place the buyer had)",
            joins.done,
            joins.done as f64 / batches.max(1.0)
        ),
    );
    let mut polls = polls;
    report.line("status polls per second", format!("{:.0} ({} errors)", per_s(&polls), polls.errors));
    report.latencies("poll latency", &mut polls.latencies);
    Ok(report)
}
