//! Failover: a cluster of three, one event, buyers booking distinct seats without pause. Mid-sale
//! the leader of the event's shard is killed with SIGKILL, and later started again on its address
//! and data. Measures how long bookings stop, and checks on the final state that every
//! acknowledged hold survived (I2), that no seat was acknowledged twice (I1) and that no retry
//! applied twice (I4).
//!
//! Each buyer owns a section of its own and asks for its seats one at a time, in order, each with
//! its own Idempotency-Key, so nobody else ever competes for them: any refusal is an anomaly, not
//! a lost race. A request that fails transiently (a 5xx, a timeout, a dropped connection) is sent
//! again with the same key and body until it is answered or given up.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cluster::{ClusterProcesses, GroupRow};
use crate::error::TargetError;
use crate::report::{Latencies, Report};
use crate::target::Target;

/// Nodes of the cluster the scenario runs on: the fewest that keep a majority after one dies.
pub const FAILOVER_NODES: usize = 3;
/// Seats per row: the most a row may have, so a buyer's section has few rows.
const ROW_SEATS: u32 = raft_store::SEATS_PER_ROW_MAX;
/// Timeout of one attempt: longer than the api's own wait for a leader (10 s), so that its 503,
/// not this timeout, ends an attempt that finds no leader.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);
/// Pause before a request is sent again after a transient failure.
const RETRY_PAUSE: Duration = Duration::from_millis(20);
/// A request still failing after this long is given up: whether its seat is held is then unknown.
const REQUEST_GIVE_UP: Duration = Duration::from_secs(60);
/// How long to look for the leader of the event's shard before the kill.
const LEADER_WAIT: Duration = Duration::from_secs(10);
const STATUS_POLL_INTERVAL: Duration = Duration::from_millis(250);
/// A restarted follower at most this many entries behind the leader has caught up.
const CAUGHT_UP_LAG_ENTRIES_MAX: u64 = 10;
/// How long to wait, once the buyers stop, for the restarted node to catch up.
const CATCH_UP_WAIT: Duration = Duration::from_secs(30);

#[derive(Clone, Debug)]
pub struct FailoverConfig {
    pub buyers: usize,
    /// Seats each buyer owns (a section of its own); a buyer that has held them all stops.
    pub seats_per_buyer: u32,
    /// Booking before the kill.
    pub warmup: Duration,
    /// Booking between the kill and the restart.
    pub after_kill: Duration,
    /// Booking after the restart.
    pub after_restart: Duration,
}

impl Default for FailoverConfig {
    fn default() -> Self {
        FailoverConfig {
            buyers: 16,
            seats_per_buyer: 4_000,
            warmup: Duration::from_secs(3),
            after_kill: Duration::from_secs(5),
            after_restart: Duration::from_secs(3),
        }
    }
}

impl FailoverConfig {
    /// The venue's limits bound the scenario: a section per buyer, all seats in one venue.
    pub fn check(&self) -> Result<(), FailoverConfigError> {
        if !(1..=raft_store::SECTIONS_PER_VENUE_MAX).contains(&self.buyers) {
            return Err(FailoverConfigError::Buyers(self.buyers));
        }
        let seats = self.buyers as u64 * u64::from(self.seats_per_buyer);
        if self.seats_per_buyer == 0 || seats > u64::from(raft_store::SEATS_PER_VENUE_MAX) {
            return Err(FailoverConfigError::Seats(seats));
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FailoverConfigError {
    #[error("buyers are between 1 and {max}, not {0}", max = raft_store::SECTIONS_PER_VENUE_MAX)]
    Buyers(usize),
    #[error("buyers × seats per buyer is between 1 and {max} (the seats of one venue), not {0}", max = raft_store::SEATS_PER_VENUE_MAX)]
    Seats(u64),
}

/// One 201: a hold the client was told it has.
struct Ack {
    seat: u32,
    hold_id: String,
    answered: Instant,
    /// When the attempt that got the 201 was sent.
    last_attempt: Instant,
}

#[derive(Default)]
struct BuyerLog {
    acks: Vec<Ack>,
    /// Seats whose request was given up: held or not, nobody knows.
    unknown: Vec<u32>,
    /// Seats refused with a 4xx, with the kind of refusal.
    refused: Vec<(u32, String)>,
    /// Failed attempts by kind (`503 unavailable`, `timeout`, `409 seats_unavailable`, …).
    errors: BTreeMap<String, u64>,
    /// From the first attempt to the 201.
    latency: Latencies,
    out_of_seats: bool,
}

enum HoldAnswer {
    Held { hold_id: String, last_attempt: Instant },
    Refused(String),
    GaveUp,
}

fn section_id(buyer: usize) -> String {
    format!("B{buyer}")
}

fn seat_id(buyer: usize, seat: u32) -> String {
    format!("{}-R{}-{}", section_id(buyer), seat / ROW_SEATS, seat % ROW_SEATS + 1)
}

fn scenario_error(what: impl Into<String>) -> TargetError {
    TargetError::Scenario(what.into())
}

async fn setup(target: &Target, cfg: &FailoverConfig) -> Result<String, TargetError> {
    let admin = target.token("failover-admin", "admin").await?;
    let sections: Vec<Value> = (0..cfg.buyers)
        .map(|b| {
            let rows: Vec<Value> = (0..cfg.seats_per_buyer.div_ceil(ROW_SEATS))
                .map(|r| json!({"id": format!("R{r}"), "seats": ROW_SEATS.min(cfg.seats_per_buyer - r * ROW_SEATS)}))
                .collect();
            json!({"id": section_id(b), "name": format!("Buyer {b}"), "kind": "seated", "rows": rows})
        })
        .collect();
    let prices: Vec<Value> = (0..cfg.buyers)
        .map(|b| json!({"section": section_id(b), "price": {"amount": 5000, "currency": "USD"}}))
        .collect();
    let venue = json!({
        "name": "Failover Arena", "city": "Lisbon", "country": "PT", "location": {"lat": 38.7, "lon": -9.1},
        "sections": sections
    });
    let venue = target.post("/v1/venues", Some(&admin), venue, 201).await?;
    let event = json!({
        "name": "Failover", "description": "bench", "category": "music", "performers": [{"name": "Bench"}],
        "venue_id": venue["venue_id"], "starts_at": "2099-01-01T20:00:00Z", "prices": prices
    });
    let event = target.post("/v1/events", Some(&admin), event, 201).await?;
    event["event_id"].as_str().map(str::to_owned).ok_or_else(|| scenario_error("the new event has no id"))
}

fn transport_kind(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "transport"
    }
}

fn count(errors: &mut BTreeMap<String, u64>, kind: String) {
    *errors.entry(kind).or_default() += 1;
}

/// Holds one seat, sending the same key and body again after every transient failure.
async fn hold_with_retries(
    target: &Target,
    path: &str,
    token: &str,
    seat: &str,
    key: &str,
    errors: &mut BTreeMap<String, u64>,
) -> HoldAnswer {
    let body = json!({ "seats": [seat] });
    let give_up = Instant::now() + REQUEST_GIVE_UP;
    loop {
        let attempt = Instant::now();
        let sent = target
            .http
            .post(path)
            .bearer_auth(token)
            .header("Idempotency-Key", key)
            .json(&body)
            .timeout(ATTEMPT_TIMEOUT)
            .send()
            .await;
        let kind = match sent {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let answer: Value = resp.json().await.unwrap_or(Value::Null);
                let kind = format!("{status} {}", answer["code"].as_str().unwrap_or("-"));
                match (status, answer["hold_id"].as_str()) {
                    (201, Some(id)) => return HoldAnswer::Held { hold_id: id.to_owned(), last_attempt: attempt },
                    // A 201 whose body was cut off: the same key brings the same answer again.
                    (201, None) => "201 unreadable".to_owned(),
                    (429 | 500.., _) => kind,
                    _ => {
                        count(errors, kind.clone());
                        return HoldAnswer::Refused(kind);
                    }
                }
            }
            Err(e) => transport_kind(&e).to_owned(),
        };
        count(errors, kind);
        if Instant::now() + RETRY_PAUSE >= give_up {
            return HoldAnswer::GaveUp;
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

async fn buyer(
    target: Arc<Target>,
    event: String,
    n: usize,
    token: String,
    seats: u32,
    stop: Arc<AtomicBool>,
) -> BuyerLog {
    let path = format!("{}/v1/events/{event}/holds", target.url);
    let mut log = BuyerLog::default();
    let mut next = 0;
    while !stop.load(Ordering::Relaxed) {
        if next == seats {
            log.out_of_seats = true;
            break;
        }
        let seat = next;
        next += 1;
        let started = Instant::now();
        // Keys are unique per event, and every run makes a new event.
        let key = format!("{event}-b{n}-s{seat}");
        match hold_with_retries(&target, &path, &token, &seat_id(n, seat), &key, &mut log.errors).await {
            HoldAnswer::Held { hold_id, last_attempt } => {
                log.latency.record(started.elapsed());
                log.acks.push(Ack { seat, hold_id, answered: Instant::now(), last_attempt });
            }
            HoldAnswer::Refused(kind) => log.refused.push((seat, kind)),
            HoldAnswer::GaveUp => log.unknown.push(seat),
        }
    }
    log
}

/// The status row of `group` once it has a leader.
async fn wait_for_leader(cluster: &ClusterProcesses, group: &str) -> Result<GroupRow, TargetError> {
    let deadline = Instant::now() + LEADER_WAIT;
    loop {
        let row = cluster.group_row(group).await?;
        if row.leader.is_some() {
            return Ok(row);
        }
        if Instant::now() >= deadline {
            return Err(scenario_error(format!("{group} has no leader after {} s", LEADER_WAIT.as_secs())));
        }
        tokio::time::sleep(STATUS_POLL_INTERVAL).await;
    }
}

/// When `node` was first seen at most `CAUGHT_UP_LAG_ENTRIES_MAX` entries behind the leader of
/// `group`, polling until `deadline`.
async fn wait_caught_up(cluster: &ClusterProcesses, group: &str, node: u64, deadline: Instant) -> Option<Instant> {
    loop {
        if let Ok(row) = cluster.group_row(group).await {
            let lag = row.lag_entries.iter().find(|(id, _)| *id == node).map(|(_, lag)| *lag);
            if row.leader == Some(node) || lag.is_some_and(|lag| lag <= CAUGHT_UP_LAG_ENTRIES_MAX) {
                return Some(Instant::now());
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(STATUS_POLL_INTERVAL).await;
    }
}

/// What the run saw, in the order it happened.
struct Timeline {
    started: Instant,
    killed_at: Instant,
    restarted_at: Instant,
    stopped_at: Instant,
    /// Seconds from asking for the restart to the node listening again.
    restart_s: f64,
    caught_up_at: Option<Instant>,
    victim: u64,
    before: GroupRow,
    during: Option<GroupRow>,
    after: Option<GroupRow>,
}

/// Runs the scenario on a cluster the bench started (`Target::spawn_cluster`).
pub async fn run(target: Arc<Target>, cfg: FailoverConfig) -> Result<Report, TargetError> {
    cfg.check().map_err(|e| scenario_error(e.to_string()))?;
    let cluster = target.cluster().ok_or_else(|| scenario_error("failover needs a cluster the bench started"))?;
    let event = setup(&target, &cfg).await?;
    let event_id = raft_store::EventId::parse(&event).ok_or_else(|| scenario_error(format!("bad event id {event}")))?;
    let group = raft_store::GroupId::shard(raft_store::shard_of(&event_id, cluster.shard_count())).to_string();
    let mut tokens = Vec::with_capacity(cfg.buyers);
    for n in 0..cfg.buyers {
        tokens.push(target.token(&format!("failover-buyer{n}"), "user").await?);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = tokens
        .iter()
        .enumerate()
        .map(|(n, token)| {
            let buyer = buyer(target.clone(), event.clone(), n, token.clone(), cfg.seats_per_buyer, stop.clone());
            tokio::spawn(buyer)
        })
        .collect();
    tokio::time::sleep(cfg.warmup).await;

    let before = wait_for_leader(cluster, &group).await?;
    let victim = before.leader.ok_or_else(|| scenario_error(format!("{group} lost its leader")))?;
    cluster.kill9(victim)?;
    let killed_at = Instant::now();
    tokio::time::sleep(cfg.after_kill).await;
    let during = cluster.group_row(&group).await.ok();

    let restart_began = Instant::now();
    cluster.restart(victim).await?;
    let restarted_at = Instant::now();
    let booking_ends = restarted_at + cfg.after_restart;
    let mut caught_up_at = wait_caught_up(cluster, &group, victim, booking_ends).await;
    tokio::time::sleep_until(booking_ends.into()).await;
    stop.store(true, Ordering::Relaxed);
    let stopped_at = Instant::now();

    let mut logs = Vec::with_capacity(tasks.len());
    for task in tasks {
        logs.push(task.await.map_err(|e| scenario_error(format!("a buyer failed: {e}")))?);
    }
    if caught_up_at.is_none() {
        caught_up_at = wait_caught_up(cluster, &group, victim, Instant::now() + CATCH_UP_WAIT).await;
    }
    let after = cluster.group_row(&group).await.ok();

    let timeline = Timeline {
        started,
        killed_at,
        restarted_at,
        stopped_at,
        restart_s: (restarted_at - restart_began).as_secs_f64(),
        caught_up_at,
        victim,
        before,
        during,
        after,
    };
    let checks = check_final_state(&target, &event, &tokens, &logs).await?;
    if !checks.all_ok() {
        cluster.keep_files();
    }
    Ok(report(&cfg, &group, &timeline, &mut logs, &checks, cluster))
}

/// What the final state says about the acknowledged holds.
#[derive(Default)]
struct Checks {
    acknowledged: usize,
    /// GET /v1/holds/{id} answered 200 with the seat and status `active`.
    found: usize,
    /// (hold id, what was wrong).
    not_found: Vec<(String, String)>,
    /// Seats acknowledged in two different holds.
    seats_twice: usize,
    /// Hold ids given to two different requests.
    hold_ids_twice: usize,
    /// Acknowledged seats the seat map shows available.
    acked_but_free: usize,
    taken: usize,
    unknown: usize,
    refused: usize,
    /// Seats the map shows taken that no answer accounts for.
    unexplained: usize,
}

impl Checks {
    fn i1(&self) -> bool {
        self.seats_twice == 0 && self.hold_ids_twice == 0 && self.unexplained == 0
    }

    fn i2(&self) -> bool {
        self.not_found.is_empty() && self.acked_but_free == 0
    }

    /// A seat only its own buyer asks for can only be refused if an earlier attempt with the same
    /// key took it and the retry was answered afresh instead of with the first outcome.
    fn i4(&self) -> bool {
        self.refused == 0
    }

    fn all_ok(&self) -> bool {
        self.i1() && self.i2() && self.i4()
    }
}

/// Reads one acknowledged hold back, retrying transient failures; `Err` says what was wrong.
async fn read_hold(target: &Target, token: &str, hold_id: &str, seat: &str) -> Result<(), String> {
    let path = format!("{}/v1/holds/{hold_id}", target.url);
    let give_up = Instant::now() + REQUEST_GIVE_UP;
    loop {
        let sent = target.http.get(&path).bearer_auth(token).timeout(ATTEMPT_TIMEOUT).send().await;
        let transient = match sent {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let hold: Value = resp.json().await.unwrap_or(Value::Null);
                match status {
                    200 if hold["seats"] == json!([seat]) && hold["status"] == "active" => return Ok(()),
                    200 => return Err(format!("answered {hold}")),
                    429 | 500.. => format!("{status} {}", hold["code"].as_str().unwrap_or("-")),
                    _ => return Err(format!("{status} {}", hold["code"].as_str().unwrap_or("-"))),
                }
            }
            Err(e) => transport_kind(&e).to_owned(),
        };
        if Instant::now() + RETRY_PAUSE >= give_up {
            return Err(format!("unreadable: {transient}"));
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

async fn check_final_state(
    target: &Arc<Target>,
    event: &str,
    tokens: &[String],
    logs: &[BuyerLog],
) -> Result<Checks, TargetError> {
    let mut checks = Checks::default();
    // I2: every acknowledged hold reads back, one reader per buyer.
    let readers: Vec<_> = logs
        .iter()
        .zip(tokens)
        .enumerate()
        .map(|(n, (log, token))| {
            let target = target.clone();
            let token = token.clone();
            let holds: Vec<(String, String)> =
                log.acks.iter().map(|a| (a.hold_id.clone(), seat_id(n, a.seat))).collect();
            tokio::spawn(async move {
                let mut wrong = Vec::new();
                for (hold_id, seat) in &holds {
                    if let Err(what) = read_hold(&target, &token, hold_id, seat).await {
                        wrong.push((hold_id.clone(), what));
                    }
                }
                (holds.len(), wrong)
            })
        })
        .collect();
    for reader in readers {
        let (read, wrong) = reader.await.map_err(|e| scenario_error(format!("a reader failed: {e}")))?;
        checks.acknowledged += read;
        checks.found += read - wrong.len();
        checks.not_found.extend(wrong);
    }

    // I1: no seat in two acknowledged holds, no hold id given twice, and the seat map agrees
    // with what the clients were told.
    let mut acked: BTreeMap<String, &str> = BTreeMap::new();
    let mut hold_ids = BTreeSet::new();
    let mut unsure = BTreeSet::new();
    for (n, log) in logs.iter().enumerate() {
        for ack in &log.acks {
            if acked.insert(seat_id(n, ack.seat), &ack.hold_id).is_some_and(|first| first != ack.hold_id) {
                checks.seats_twice += 1;
            }
            if !hold_ids.insert(ack.hold_id.as_str()) {
                checks.hold_ids_twice += 1;
            }
        }
        unsure.extend(log.unknown.iter().map(|s| seat_id(n, *s)));
        unsure.extend(log.refused.iter().map(|(s, _)| seat_id(n, *s)));
        checks.unknown += log.unknown.len();
        checks.refused += log.refused.len();
    }
    let map = target.get(&format!("/v1/events/{event}/seats")).await?;
    let taken: BTreeSet<&str> = map["seats"]
        .as_array()
        .map(|seats| seats.iter().filter(|s| s["status"] != "available").filter_map(|s| s["id"].as_str()).collect())
        .unwrap_or_default();
    checks.taken = taken.len();
    checks.acked_but_free = acked.keys().filter(|seat| !taken.contains(seat.as_str())).count();
    checks.unexplained = taken.iter().filter(|seat| !acked.contains_key(**seat) && !unsure.contains(**seat)).count();
    Ok(checks)
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn verdict(ok: bool, detail: String) -> String {
    if ok {
        "ok".to_owned()
    } else {
        format!("VIOLATED ({detail})")
    }
}

/// The longest stretch without a 201 in `answered` (sorted), counted from `from`.
fn longest_gap(from: Instant, answered: &[Instant]) -> Duration {
    let mut last = from;
    let mut gap = Duration::ZERO;
    for &at in answered.iter().filter(|at| **at >= from) {
        gap = gap.max(at - last);
        last = at;
    }
    gap
}

fn leader_text(row: &Option<GroupRow>) -> String {
    match row {
        Some(GroupRow { leader: Some(l), term: Some(t), .. }) => format!("n{l} (term {t})"),
        Some(_) => "none".to_owned(),
        None => "unknown (no status)".to_owned(),
    }
}

fn report(
    cfg: &FailoverConfig,
    group: &str,
    t: &Timeline,
    logs: &mut [BuyerLog],
    checks: &Checks,
    cluster: &ClusterProcesses,
) -> Report {
    let mut latency = Latencies::default();
    for log in logs.iter_mut() {
        latency.merge(std::mem::take(&mut log.latency));
    }
    let mut r = Report::new(&format!("failover ({FAILOVER_NODES} nodes; kill -9 the leader of {group})"));
    r.line("buyers", format!("{}, one seat per hold, {} seats each", cfg.buyers, cfg.seats_per_buyer));
    report_timeline(&mut r, group, t, logs);
    r.latencies("hold latency (with retries)", &mut latency);
    report_checks(&mut r, logs, checks);
    if !checks.all_ok() {
        r.line("cluster files kept", cluster.files().display());
    }
    r
}

/// The kill, the failover, the restart, and bookings around them.
fn report_timeline(r: &mut Report, group: &str, t: &Timeline, logs: &[BuyerLog]) {
    let at = |i: Instant| format!("{:.2} s", (i - t.started).as_secs_f64());
    let all: Vec<&Ack> = logs.iter().flat_map(|l| &l.acks).collect();
    r.line(
        "killed",
        format!("n{} at {}, leader of {group}: {}", t.victim, at(t.killed_at), leader_text(&Some(t.before.clone()))),
    );
    r.line("leader after the kill", leader_text(&t.during));

    // The failover ends with the first 201 to an attempt sent after the kill: an answer to an
    // earlier attempt may have been committed by the old leader before it died.
    let failover = all.iter().filter(|a| a.last_attempt >= t.killed_at).map(|a| a.answered - t.killed_at).min();
    let failover = failover
        .map_or("no booking after the kill".to_owned(), |d| format!("{} from the kill to the next 201", secs(d)));
    r.line("failover", failover);
    let mut gaps: Vec<(Duration, usize)> = logs
        .iter()
        .enumerate()
        .map(|(n, l)| {
            let answered: Vec<Instant> = l.acks.iter().map(|a| a.answered).collect();
            (longest_gap(answered.first().copied().unwrap_or(t.started), &answered), n)
        })
        .collect();
    gaps.sort();
    let (max_gap, max_buyer) = gaps.last().copied().unwrap_or_default();
    let median_gap = gaps.get(gaps.len() / 2).map_or(Duration::ZERO, |g| g.0);
    r.line("longest gap, one buyer", format!("max {} (buyer {max_buyer}), median {}", secs(max_gap), secs(median_gap)));

    let caught_up = t.caught_up_at.map_or("not within the wait".to_owned(), |c| {
        format!("caught up (≤ {CAUGHT_UP_LAG_ENTRIES_MAX} entries behind) {} later", secs(c - t.restarted_at))
    });
    r.line(
        "restart",
        format!(
            "n{} listening again at {} ({:.2} s to listen); {caught_up}",
            t.victim,
            at(t.restarted_at),
            t.restart_s
        ),
    );
    r.line("leader at the end", leader_text(&t.after));
    let mut after_restart: Vec<Instant> = all.iter().map(|a| a.answered).filter(|a| *a >= t.restarted_at).collect();
    after_restart.sort();
    r.line(
        "longest gap after restart",
        format!("{} (all buyers together)", secs(longest_gap(t.restarted_at, &after_restart))),
    );

    let phase = |from: Instant, to: Instant| all.iter().filter(|a| a.answered >= from && a.answered < to).count();
    let before_kill = phase(t.started, t.killed_at);
    let kill_to_restart = phase(t.killed_at, t.restarted_at);
    let since_restart = all.len() - before_kill - kill_to_restart;
    let rate = |n: usize, from: Instant, to: Instant| n as f64 / (to - from).as_secs_f64().max(0.001);
    r.line(
        "holds/s",
        format!(
            "{:.0} before the kill, {:.0} kill → restart, {:.0} after the restart",
            rate(before_kill, t.started, t.killed_at),
            rate(kill_to_restart, t.killed_at, t.restarted_at),
            rate(since_restart, t.restarted_at, t.stopped_at)
        ),
    );
    r.line(
        "holds acknowledged",
        format!(
            "{} = {before_kill} before the kill + {kill_to_restart} kill → restart + {since_restart} after",
            all.len()
        ),
    );
}

/// What the final state says, failed attempts by kind, and the invariants' verdicts.
fn report_checks(r: &mut Report, logs: &[BuyerLog], checks: &Checks) {
    r.line(
        "holds found after",
        format!("{} of {} (GET /v1/holds/{{id}}: 200, same seat, active)", checks.found, checks.acknowledged),
    );
    r.line(
        "seat map",
        format!(
            "{} taken: {} acknowledged, {} of unknown outcome, {} refused, {} unexplained",
            checks.taken,
            checks.acknowledged - checks.acked_but_free,
            checks.unknown,
            checks.refused,
            checks.unexplained
        ),
    );
    let mut errors: BTreeMap<&str, u64> = BTreeMap::new();
    for log in logs {
        for (kind, n) in &log.errors {
            *errors.entry(kind).or_default() += n;
        }
    }
    let errors: Vec<String> = errors.iter().map(|(kind, n)| format!("{kind}: {n}")).collect();
    r.line("errors by kind", if errors.is_empty() { "none".to_owned() } else { errors.join(", ") });
    let out_of_seats = logs.iter().filter(|l| l.out_of_seats).count();
    if out_of_seats > 0 {
        r.line("buyers out of seats", format!("{out_of_seats} (raise --seats-per-buyer)"));
    }
    r.line(
        "I1 (no seat twice)",
        verdict(
            checks.i1(),
            format!(
                "{} seats in two holds, {} hold ids given twice, {} taken seats nobody was told of",
                checks.seats_twice, checks.hold_ids_twice, checks.unexplained
            ),
        ),
    );
    let first_lost = checks.not_found.first().map_or(String::new(), |(id, what)| format!("; first: {id} {what}"));
    r.line(
        "I2 (acknowledged holds kept)",
        verdict(
            checks.i2(),
            format!(
                "{} holds not read back, {} acknowledged seats free{first_lost}",
                checks.not_found.len(),
                checks.acked_but_free
            ),
        ),
    );
    let refusals: Vec<String> =
        logs.iter().flat_map(|l| &l.refused).take(3).map(|(seat, kind)| format!("seat #{seat}: {kind}")).collect();
    r.line(
        "I4 (a retry applies once)",
        verdict(checks.i4(), format!("{} own seats refused, e.g. {}", checks.refused, refusals.join(", "))),
    );
}
