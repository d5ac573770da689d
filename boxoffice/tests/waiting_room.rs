//! The waiting room of a flash sale, through real processes: a 3-node cluster, two api instances,
//! 10,000 buyers for 500 seats. Buyers join on either instance and poll the other, so each honours
//! the other's tokens; a buyer who joins again, on the other instance, gets the same place; holds
//! need an admission; every seat is sold once; whoever is still queued at the sell-out is told so;
//! streaming clients see their position fall.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use common::cluster::{RunningCluster, JWT};
use common::{assert_problem, Server};
use rand::seq::SliceRandom;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

const BUYERS: usize = 10_000;
const ROWS: usize = 10;
const SEATS_PER_ROW: u32 = 50;
const SEATS: usize = ROWS * SEATS_PER_ROW as usize;
/// Requests in flight from the simulated buyers at most.
const IN_FLIGHT_MAX: usize = 128;
/// The sale opens this long after the event is created, so the first arrivals are early.
const OPENS_AFTER: Duration = Duration::from_secs(3);
const SALE_TIMEOUT: Duration = Duration::from_secs(240);

/// What one buyer lived through.
#[derive(Clone, Debug, Default)]
struct Buyer {
    seq: u64,
    joined_at: Option<Instant>,
    /// Joined before the sale opened (the join answered `before_sale`).
    early: bool,
    /// The access token's position and admission time (ms), once admitted.
    admission: Option<(u64, i64)>,
    seat: Option<String>,
    bought_at: Option<Instant>,
    told_sold_out: bool,
}

/// The claims of a JWT, read without verifying (the client's view).
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

async fn create_sale(api: &Server, admin: &str, opens: SystemTime) -> String {
    let rows: Vec<Value> = (0..ROWS).map(|r| json!({"id": common::row_name(r), "seats": SEATS_PER_ROW})).collect();
    let venue = json!({
        "name": "Arena", "city": "Lisbon", "country": "PT", "location": {"lat": 38.7, "lon": -9.1},
        "sections": [{"id": "FLOOR", "name": "Floor", "kind": "seated", "rows": rows}]
    });
    let (s, venue) = api.call("POST", "/v1/venues", Some(admin), Some(venue), None).await;
    assert_eq!(s, 201, "{venue}");
    let event = json!({
        "name": "The Farewell Tour", "category": "music", "venue_id": venue["venue_id"],
        "starts_at": "2099-01-01T20:00:00Z", "on_sale_at": rfc3339(opens), "high_traffic": true,
        "prices": [{"section": "FLOOR", "price": {"amount": 9000, "currency": "USD"}}]
    });
    let (s, event) = api.call("POST", "/v1/events", Some(admin), Some(event), None).await;
    assert_eq!(s, 201, "{event}");
    event["event_id"].as_str().unwrap().to_owned()
}

/// Reads a queue stream until it ends; returns every status it carried.
async fn follow_stream(
    http: reqwest::Client,
    api: String,
    token: String,
    queue_token: String,
    event: String,
) -> Vec<Value> {
    let mut resp = http
        .get(format!("{api}/v1/events/{event}/queue"))
        .bearer_auth(token)
        .header("x-queue-token", queue_token)
        .header("accept", "text/event-stream")
        .timeout(SALE_TIMEOUT)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (mut seen, mut buffer) = (Vec::new(), String::new());
    while let Ok(Some(chunk)) = resp.chunk().await {
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let message: String = buffer.drain(..end + 2).collect();
            for line in message.lines() {
                if let Some(data) = line.strip_prefix("data:") {
                    seen.push(serde_json::from_str(data.trim()).unwrap());
                }
            }
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_buyers_queue_for_five_hundred_seats_on_two_api_instances() {
    let mut cluster = RunningCluster::start(3, 2).await;
    let apis = [cluster.api(), cluster.start_api(&[]).await];
    let admin = apis[0].token("boss", "admin").await;
    let opens = SystemTime::now() + OPENS_AFTER;
    let event = create_sale(&apis[0], &admin, opens).await;

    let buyers = Arc::new(Mutex::new(vec![Buyer::default(); BUYERS]));
    let gate = Arc::new(Semaphore::new(IN_FLIGHT_MAX));
    let started = Instant::now();
    // The second half of the buyers arrives after the opening, however fast the first half joins
    // (on a quiet machine all 10,000 joins could otherwise land before it).
    let late_from = started + opens.duration_since(SystemTime::now()).unwrap_or_default() + Duration::from_millis(200);
    common::install_crypto_provider();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
    let mut tasks = Vec::new();
    let mut streams = Vec::new();
    for i in 0..BUYERS {
        let (join_api, poll_api) = (apis[i % 2].url.clone(), apis[(i + 1) % 2].url.clone());
        let (buyers, gate, event, http) = (buyers.clone(), gate.clone(), event.clone(), http.clone());
        let token = api::mint_token(JWT, &format!("buyer{i}"), "user", Duration::from_secs(3600));
        // Streamers among the first thousand arrivals, who join before the opening (joins are
        // replicated, a few hundred a second here): the queue moves while they wait (it stops
        // moving once the admitted buyers can take every seat left). Later ones could join after
        // it stopped, on a loaded machine, and see no position fall. Early arrivals' places are
        // shuffled, so a streamer may draw one in the first admitted batch and rightly see no
        // fall either; on a loaded machine, whose streams connect late, more of them do (2 of 10
        // saw one in a CI run beside two builds): 25 streamers leave the check below a margin.
        let stream_this_one = i < 1_000 && i % 40 == 0;
        let (tx, rx) = tokio::sync::oneshot::channel();
        if stream_this_one {
            streams.push(rx);
        }
        tasks.push(tokio::spawn(async move {
            if i >= BUYERS / 2 {
                tokio::time::sleep_until(late_from.into()).await;
            }
            let permit = gate.acquire().await.unwrap();
            let resp =
                http.post(format!("{join_api}/v1/events/{event}/queue")).bearer_auth(&token).send().await.unwrap();
            let status = resp.status();
            let joined: Value = resp.json().await.unwrap();
            drop(permit);
            if status == 409 && joined["code"] == "sold_out" {
                // Arrived after the sell-out: the closed room says so.
                buyers.lock().unwrap()[i].told_sold_out = true;
                return;
            }
            assert_eq!(status, 201, "{joined}");
            let queue_token = joined["queue_token"].as_str().unwrap().to_owned();
            let seq = claims(&queue_token)["seq"].as_u64().unwrap();
            if i % 50 == 0 {
                // One place per buyer: joining again, on the other instance, answers the same one.
                let permit = gate.acquire().await.unwrap();
                let again: Value = http
                    .post(format!("{poll_api}/v1/events/{event}/queue"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                drop(permit);
                // Unless the room closed in between.
                if again["code"] != "sold_out" {
                    let again_token = again["queue_token"].as_str().unwrap_or_else(|| panic!("buyer {i}: {again}"));
                    let again_seq = claims(again_token)["seq"].as_u64().unwrap();
                    assert_eq!(again_seq, seq, "buyer {i} joined again and got another place: {again}");
                }
            }
            {
                let mut all = buyers.lock().unwrap();
                all[i].seq = seq;
                all[i].joined_at = Some(Instant::now());
                all[i].early = joined["status"] == "before_sale";
            }
            if stream_this_one {
                let statuses =
                    follow_stream(http.clone(), poll_api.clone(), token.clone(), queue_token.clone(), event.clone())
                        .await;
                let _ = tx.send(statuses);
            }
            // Poll (on the other instance) until admitted or told it is over.
            let access = loop {
                let _permit = gate.acquire().await.unwrap();
                let resp = http
                    .get(format!("{poll_api}/v1/events/{event}/queue"))
                    .bearer_auth(&token)
                    .header("x-queue-token", &queue_token)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200);
                let status: Value = resp.json().await.unwrap();
                drop(_permit);
                match status["status"].as_str().unwrap() {
                    "admitted" => break status["access_token"].as_str().unwrap().to_owned(),
                    "sold_out" => {
                        buyers.lock().unwrap()[i].told_sold_out = true;
                        return;
                    }
                    "waiting" | "before_sale" => {
                        // Far back, poll rarely; near the front, often.
                        let wait = status["estimated_wait_s"].as_f64().unwrap() / 2.0;
                        tokio::time::sleep(Duration::from_secs_f64(wait.clamp(0.3, 10.0))).await;
                    }
                    other => panic!("buyer {i}: unexpected queue status {other}: {status}"),
                }
            };
            let pass = claims(&access);
            buyers.lock().unwrap()[i].admission =
                Some((pass["pos"].as_u64().unwrap(), pass["exp_ms"].as_i64().unwrap()));
            // Admitted: hold one seat the seat map shows free (another if it is taken), then pay.
            // Admitted buyers are few at a time: they do not wait behind the pollers.
            loop {
                let map: Value =
                    http.get(format!("{poll_api}/v1/events/{event}/seats")).send().await.unwrap().json().await.unwrap();
                let seats = map["seats"].as_array().unwrap();
                let free: Vec<&str> =
                    seats.iter().filter(|s| s["status"] == "available").map(|s| s["id"].as_str().unwrap()).collect();
                let Some(seat) = free.choose(&mut rand::thread_rng()).map(|s| s.to_string()) else {
                    if seats.iter().all(|s| s["status"] == "sold") {
                        // Admitted as the last seats went: the seat map says it is over.
                        buyers.lock().unwrap()[i].told_sold_out = true;
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                let resp = http
                    .post(format!("{join_api}/v1/events/{event}/holds"))
                    .bearer_auth(&token)
                    .header("x-queue-access", &access)
                    .json(&json!({"seats": [seat]}))
                    .send()
                    .await
                    .unwrap();
                let status = resp.status().as_u16();
                let body: Value = resp.json().await.unwrap();
                match (status, body["code"].as_str()) {
                    (201, _) => {
                        let hold_id = body["hold_id"].as_str().unwrap();
                        let resp = http
                            .post(format!("{poll_api}/v1/holds/{hold_id}/checkout"))
                            .bearer_auth(&token)
                            .json(&json!({"payment_method": "sandbox_ok"}))
                            .send()
                            .await
                            .unwrap();
                        assert_eq!(resp.status(), 201);
                        // The pass bought its hold: it buys nothing more, for anyone.
                        let again = http
                            .post(format!("{poll_api}/v1/events/{event}/holds"))
                            .bearer_auth(&token)
                            .header("x-queue-access", &access)
                            .json(&json!({"seats": ["FLOOR-A-1"]}))
                            .send()
                            .await
                            .unwrap();
                        assert_eq!(again.status(), 403, "a used access token is refused");
                        let mut all = buyers.lock().unwrap();
                        all[i].seat = Some(seat);
                        all[i].bought_at = Some(Instant::now());
                        return;
                    }
                    (409, Some("seats_unavailable")) => continue,
                    _ => panic!("buyer {i}: hold answered {status}: {body}"),
                }
            }
        }));
    }
    for task in tasks {
        tokio::time::timeout(SALE_TIMEOUT, task).await.expect("the sale ends in time").unwrap();
    }
    let elapsed = started.elapsed();
    let buyers = buyers.lock().unwrap().clone();

    // Every seat sold exactly once, to an admitted buyer, and the seat map agrees.
    let sold: Vec<&String> = buyers.iter().filter_map(|b| b.seat.as_ref()).collect();
    let unique: BTreeSet<&String> = sold.iter().copied().collect();
    assert_eq!((sold.len(), unique.len()), (SEATS, SEATS), "each seat sold once");
    let map = apis[1].seat_statuses(&event).await;
    assert!(map.values().all(|s| s == "sold"), "the seat map shows every seat sold");
    // Everyone else was told the sale is over.
    for (i, b) in buyers.iter().enumerate() {
        assert!(b.seat.is_some() || b.told_sold_out, "buyer {i} was left waiting: {b:?}");
    }

    // Admission went in batches, in queue order: a later position never before an earlier one.
    let mut admitted: Vec<(u64, i64)> = buyers.iter().filter_map(|b| b.admission).collect();
    admitted.sort();
    assert!(admitted.windows(2).all(|w| w[0].1 <= w[1].1), "positions admitted out of order");
    let batches: BTreeMap<i64, usize> = admitted.iter().fold(BTreeMap::new(), |mut m, (_, at)| {
        *m.entry(*at).or_insert(0) += 1;
        m
    });
    assert!(batches.len() >= 3 && batches.values().any(|n| *n > 1), "admitted in batches: {batches:?}");
    assert!(admitted.len() < SEATS * 2, "admission was tied to what was left: {} admitted", admitted.len());

    // Every buyer had one place: the places given are the buyers, with no number skipped or
    // given twice (a second join takes none).
    let joined: Vec<u64> = buyers.iter().filter(|b| b.joined_at.is_some()).map(|b| b.seq).collect();
    let seqs: BTreeSet<u64> = joined.iter().copied().collect();
    assert_eq!(seqs, (0..joined.len() as u64).collect(), "one place per buyer");

    // The early arrivals were shuffled among themselves; later ones kept their order (within a
    // join batch's granularity).
    let early = buyers.iter().filter(|b| b.early).count();
    let shuffled = buyers.iter().filter(|b| b.early && b.admission.is_some_and(|(pos, _)| pos != b.seq)).count();
    assert!(early > 0 && shuffled > 0, "{early} early arrivals, {shuffled} of them admitted out of arrival order");
    let mut late: Vec<&Buyer> =
        buyers.iter().filter(|b| !b.early && b.admission.is_none_or(|(pos, _)| pos == b.seq)).collect();
    assert!(late.len() > BUYERS / 10, "{} arrivals after the opening", late.len());
    late.sort_by_key(|b| b.joined_at);
    for pair in late.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let apart = b.joined_at.unwrap().duration_since(a.joined_at.unwrap());
        if apart > Duration::from_millis(1_500) {
            assert!(a.seq < b.seq, "a later arrival got an earlier place: {a:?} {b:?}");
        }
    }

    // Streaming clients saw their position fall, then learned the outcome.
    let mut fell = 0;
    for rx in streams {
        let statuses = rx.await.unwrap();
        let positions: Vec<u64> =
            statuses.iter().filter(|s| s["status"] == "waiting").map(|s| s["position"].as_u64().unwrap()).collect();
        assert!(positions.windows(2).all(|w| w[1] <= w[0]), "positions never rise: {positions:?}");
        if positions.len() >= 2 && positions.last() < positions.first() {
            fell += 1;
        }
        let last = statuses.last().unwrap();
        assert!(last["status"] == "sold_out" || last["status"] == "admitted", "{statuses:?}");
    }
    assert!(fell >= 3, "only {fell} streaming clients saw their position fall");
    // Without an access token, holds are refused (before any seat is looked at); so are forged and foreign tokens.
    let alice = api::mint_token(JWT, "alice", "user", Duration::from_secs(3600));
    let hold = json!({"seats": ["FLOOR-A-1"]});
    let (s, body) =
        apis[1].call("POST", &format!("/v1/events/{event}/holds"), Some(&alice), Some(hold.clone()), None).await;
    assert_problem(s, &body, 403, "queue_required");
    let forged = apis[1]
        .http
        .post(format!("{}/v1/events/{event}/holds", apis[1].url))
        .bearer_auth(&alice)
        .header("x-queue-access", alice.clone())
        .json(&hold)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403, "a bearer token is not an access token");

    // A late joiner finds the room closed.
    let late = api::mint_token(JWT, "latecomer", "user", Duration::from_secs(3600));
    let (s, body) = apis[0].call("POST", &format!("/v1/events/{event}/queue"), Some(&late), None, None).await;
    assert_problem(s, &body, 409, "sold_out");
    let first_admit = admitted.iter().map(|(_, at)| *at).min().unwrap_or(0);
    let mut hist: BTreeMap<i64, (usize, usize)> = BTreeMap::new();
    for (_, at) in &admitted {
        hist.entry((at - first_admit) / 5_000).or_default().0 += 1;
    }
    let first_buy = buyers.iter().filter_map(|b| b.bought_at).min().unwrap();
    for b in buyers.iter().filter_map(|b| b.bought_at) {
        hist.entry(b.duration_since(first_buy).as_millis() as i64 / 5_000).or_default().1 += 1;
    }
    eprintln!("per 5 s from the first admission / first purchase: (admitted, bought) {hist:?}");
    let joined = buyers.iter().filter_map(|b| b.joined_at).max().unwrap().duration_since(started);
    let sold_out = buyers.iter().filter_map(|b| b.bought_at).max().unwrap().duration_since(started);
    eprintln!(
        "{BUYERS} buyers ({early} early), {SEATS} seats: all joined after {joined:?}, sold out after {sold_out:?}, \
         everyone told after {elapsed:?}; {} admitted",
        admitted.len()
    );
}

#[tokio::test]
async fn the_waiting_room_refuses_what_it_cannot_honour() {
    let server = Server::start(&[]).await;
    let admin = server.token("boss", "admin").await;
    let alice = server.token("alice", "user").await;
    let bob = server.token("bob", "user").await;
    let plain = server.create_event(&admin, 1, 5, 10, json!({})).await;
    let hot = server.create_event(&admin, 1, 5, 10, json!({"high_traffic": true})).await;

    // No waiting room on an ordinary event, nor on an unknown one; joining needs a user.
    let (s, body) = server.call("POST", &format!("/v1/events/{plain}/queue"), Some(&alice), None, None).await;
    assert_problem(s, &body, 404, "not_found");
    let (s, body) = server.call("POST", "/v1/events/ev0000000000000001/queue", Some(&alice), None, None).await;
    assert_problem(s, &body, 404, "not_found");
    let (s, body) = server.call("POST", &format!("/v1/events/{hot}/queue"), None, None, None).await;
    assert_problem(s, &body, 401, "unauthorized");

    let (s, joined) = server.call("POST", &format!("/v1/events/{hot}/queue"), Some(&alice), None, None).await;
    assert_eq!(s, 201, "{joined}");
    let queue_token = joined["queue_token"].as_str().unwrap().to_owned();
    assert!(joined["position"].as_u64().is_some() && joined["estimated_wait_s"].as_u64().is_some(), "{joined}");
    // Joining twice gives one place, and so do two joins at once.
    let (srv, path) = (&server, format!("/v1/events/{hot}/queue"));
    let path = &path;
    let join = |token: String| async move {
        let (s, body) = srv.call("POST", path, Some(&token), None, None).await;
        assert_eq!(s, 201, "{body}");
        claims(body["queue_token"].as_str().unwrap())["seq"].as_u64().unwrap()
    };
    let alice_seq = claims(&queue_token)["seq"].as_u64().unwrap();
    assert_eq!(join(alice.clone()).await, alice_seq);
    let (bob_1, bob_2) = tokio::join!(join(bob.clone()), join(bob.clone()));
    assert_eq!(bob_1, bob_2, "two joins at once, one place");
    assert_ne!(bob_1, alice_seq);

    // Status needs the token, and only its owner can use it.
    let status = |token: String, queue_token: Option<String>| {
        let mut req = server.http.get(format!("{}/v1/events/{hot}/queue", server.url)).bearer_auth(token);
        if let Some(q) = queue_token {
            req = req.header("x-queue-token", q);
        }
        async move {
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    let (s, body) = status(alice.clone(), None).await;
    assert_problem(s, &body, 403, "queue_required");
    let (s, body) = status(alice.clone(), Some("not-a-token".into())).await;
    assert_problem(s, &body, 403, "queue_required");
    let (s, body) = status(bob.clone(), Some(queue_token.clone())).await;
    assert_problem(s, &body, 403, "queue_required");

    // The sale is open and nobody else waits: alice is let in within a few admission ticks.
    let access = common::eventually(Duration::from_secs(10), "admission", || {
        let status = status(alice.clone(), Some(queue_token.clone()));
        async move {
            let (s, body) = status.await;
            assert_eq!(s, 200, "{body}");
            body["access_token"].as_str().map(str::to_owned)
        }
    })
    .await;
    let hold = |token: &str, access: &str, seat: &str| {
        server
            .http
            .post(format!("{}/v1/events/{hot}/holds", server.url))
            .bearer_auth(token)
            .header("x-queue-access", access)
            .json(&json!({"seats": [seat]}))
            .send()
    };
    // Bob cannot use alice's access token; alice can, once.
    let resp = hold(&bob, &access, "FLOOR-A-1").await.unwrap();
    assert_eq!(resp.status(), 403);
    let resp = hold(&alice, &access, "FLOOR-A-1").await.unwrap();
    assert_eq!(resp.status(), 201);
    let resp = hold(&alice, &access, "FLOOR-A-2").await.unwrap();
    let (s, body) = (resp.status().as_u16(), resp.json::<Value>().await.unwrap());
    assert_problem(s, &body, 403, "queue_required");
    // Her pass bought its hold, so her place has ended: joining again gives a new one.
    let next = join(alice.clone()).await;
    assert!(next != alice_seq && next != bob_1, "a new place after the pass was used: {next}");
    assert_eq!(join(alice.clone()).await, next);
}
