//! PostgreSQL's row of the write-path table: the same uncontended hold as one transaction
//! (`SELECT … FOR UPDATE` on the seat, `INSERT` a hold, `UPDATE` the seat; `bench/pgbench/hold.sql`)
//! driven by `pgbench`, PostgreSQL's own C client, with no HTTP in front and its default
//! durability (`fsync` and `synchronous_commit` on). The same two runs as Boxoffice's: a closed
//! loop of the same clients for the peak, then `pgbench --rate` at [`OPEN_LOOP_SHARE`] of it. Each
//! transaction's latency comes from pgbench's per-transaction log, from when it was due (its
//! schedule lag added), so the two stores' tails and stall episodes are measured alike.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio_postgres::NoTls;

use crate::error::TargetError;
use crate::pace::Paced;
use crate::postgres::db_error;
use crate::report::Latencies;
use crate::write_path::{
    episodes, Answer, ClosedFigures, Gap, OpenFigures, WritePathConfig, WritePathRow, OPEN_LOOP_SHARE, STALL_THRESHOLD,
};

/// The transaction, written next to pgbench's logs for each run.
const SCRIPT: &str = include_str!("../pgbench/hold.sql");
/// pgbench threads: one per core of the machine the figures come from.
const PGBENCH_THREADS_MAX: usize = 2;
/// Seats of the table, in events' worth (the Boxoffice run has one event per shard, 8 shards).
const SEAT_EVENTS: u64 = 8;

/// Where PostgreSQL is and which pgbench drives it.
#[derive(Clone, Debug)]
pub struct PgbenchConfig {
    /// e.g. `postgresql://bench@127.0.0.1:55432/bench` (`scripts/baselines start`).
    pub url: String,
    /// The `pgbench` executable.
    pub exe: PathBuf,
}

/// Creates the tables, then runs both loops; returns PostgreSQL's row.
pub async fn run(pg: &PgbenchConfig, cfg: &WritePathConfig) -> Result<WritePathRow, TargetError> {
    cfg.check()?;
    let seats = u64::from(cfg.seats_per_event) * SEAT_EVENTS;
    setup(&pg.url, seats).await?;
    let dir = tempfile::tempdir().map_err(|e| TargetError::Scenario(format!("temp dir: {e}")))?;
    let script = dir.path().join("hold.sql");
    std::fs::write(&script, SCRIPT).map_err(|e| TargetError::Scenario(format!("{}: {e}", script.display())))?;
    let run = |rate: Option<f64>, name: &'static str| pgbench(pg, cfg, &script, seats, rate, dir.path(), name);
    let closed = run(None, "closed").await?;
    let peak = closed.closed(cfg);
    let rate = peak.held_per_s() * OPEN_LOOP_SHARE;
    if rate < 1.0 {
        return Err(TargetError::Scenario(format!("pgbench's peak was {:.1} holds/s", peak.held_per_s())));
    }
    let open = run(Some(rate), "open").await?.open(cfg, rate);
    Ok(WritePathRow {
        store: format!("PostgreSQL (pgbench, {} clients)", cfg.clients),
        peak,
        open,
        cycle: None,
        baseline: true,
    })
}

/// Fresh tables: `seats` free seats and no holds.
async fn setup(url: &str, seats: u64) -> Result<(), TargetError> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.map_err(db_error)?;
    tokio::spawn(connection);
    client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS wp_holds, wp_seats;
             CREATE TABLE wp_seats (id bigint PRIMARY KEY, status smallint NOT NULL DEFAULT 0, held_until timestamptz);
             CREATE TABLE wp_holds (id bigserial PRIMARY KEY, seat_id bigint NOT NULL, user_id integer NOT NULL,
                                    expires_at timestamptz NOT NULL);
             INSERT INTO wp_seats (id) SELECT generate_series(1, {seats});"
        ))
        .await
        .map_err(db_error)?;
    // On its own: VACUUM cannot run in the transaction a multi-statement query is.
    client.batch_execute("VACUUM ANALYZE wp_seats").await.map_err(db_error)
}

/// One pgbench run's transactions, from its per-transaction log.
struct Transactions {
    answers: Vec<Answer>,
    failed: u64,
    skipped: u64,
}

/// Runs pgbench for `cfg.duration` (whole seconds), closed loop or at `rate` per second, and
/// reads back its per-transaction log.
async fn pgbench(
    pg: &PgbenchConfig,
    cfg: &WritePathConfig,
    script: &Path,
    seats: u64,
    rate: Option<f64>,
    dir: &Path,
    name: &str,
) -> Result<Transactions, TargetError> {
    let prefix = dir.join(name);
    let mut command = std::process::Command::new(&pg.exe);
    command
        .arg("--no-vacuum")
        .args(["--protocol", "prepared"])
        .args(["--client", &cfg.clients.to_string()])
        .args(["--jobs", &cfg.clients.min(PGBENCH_THREADS_MAX).to_string()])
        .args(["--time", &cfg.duration.as_secs().max(1).to_string()])
        .arg("--file")
        .arg(script)
        .args(["--define", "n=0", "--define", &format!("seats={seats}")])
        .args(["--define", &format!("clients={}", cfg.clients)])
        .arg("--log")
        .arg(format!("--log-prefix={}", prefix.display()))
        .arg(&pg.url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(rate) = rate {
        command.args(["--rate", &format!("{rate:.0}")]);
    }
    // pgbench runs for the whole duration: waited for on a blocking thread.
    let out = tokio::task::spawn_blocking(move || command.output())
        .await
        .map_err(|e| TargetError::Scenario(e.to_string()))?
        .map_err(|e| TargetError::Spawn(format!("{}: {e}", pg.exe.display())))?;
    if !out.status.success() {
        let e = String::from_utf8_lossy(&out.stderr);
        return Err(TargetError::Scenario(format!("pgbench {name} run failed: {}", e.trim())));
    }
    let mut lines = String::new();
    let logs = std::fs::read_dir(dir).map_err(|e| TargetError::Scenario(format!("{}: {e}", dir.display())))?;
    for entry in logs.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&format!("{name}.")) {
            let text = std::fs::read_to_string(entry.path()).map_err(|e| TargetError::Scenario(e.to_string()))?;
            lines.push_str(&text);
        }
    }
    parse_log(&lines)
}

/// Reads pgbench's per-transaction log lines: `client transaction latency_us script epoch_s
/// epoch_us [schedule_lag_us]`, where the epoch is when the transaction ended and the latency
/// reads `failed` or `skipped` for those. Each answer is placed from the earliest due time.
fn parse_log(text: &str) -> Result<Transactions, TargetError> {
    let bad = |line: &str| TargetError::Scenario(format!("pgbench log line not understood: {line:?}"));
    // (due, latency from due), in microseconds since the epoch.
    let mut done: Vec<(u64, u64)> = Vec::new();
    let (mut failed, mut skipped) = (0, 0);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 6 {
            return Err(bad(line));
        }
        match f[2] {
            "failed" => failed += 1,
            "skipped" => skipped += 1,
            latency => {
                let num = |s: &str| s.parse::<u64>().map_err(|_| bad(line));
                let latency = num(latency)?;
                let ended = num(f[4])? * 1_000_000 + num(f[5])?;
                let lag = f.get(6).map(|s| num(s)).transpose()?.unwrap_or(0);
                let started = ended.checked_sub(latency).ok_or_else(|| bad(line))?;
                done.push((started.saturating_sub(lag), latency + lag));
            }
        }
    }
    let start = done.iter().map(|d| d.0).min().unwrap_or(0);
    let answers = done
        .into_iter()
        .map(|(due, latency)| Answer {
            due: Duration::from_micros(due - start),
            latency: Duration::from_micros(latency),
        })
        .collect();
    Ok(Transactions { answers, failed, skipped })
}

impl Transactions {
    fn latencies(&self) -> Latencies {
        let mut l = Latencies::default();
        for a in &self.answers {
            l.record(a.latency);
        }
        l
    }

    fn answered(&self) -> Vec<Duration> {
        self.answers.iter().map(|a| a.due + a.latency).collect()
    }

    fn closed(&self, cfg: &WritePathConfig) -> ClosedFigures {
        ClosedFigures {
            clients: cfg.clients,
            elapsed: cfg.duration,
            held: self.answers.len() as u64,
            refused: 0,
            errors: self.failed,
            latency: self.latencies(),
            longest_gap: Gap::longest(self.answered(), cfg.duration),
            housekeeping: None,
        }
    }

    fn open(&self, cfg: &WritePathConfig, rate: f64) -> OpenFigures {
        let found = episodes(&self.answers, STALL_THRESHOLD);
        OpenFigures {
            rate,
            duration: cfg.duration,
            in_flight_max: cfg.clients,
            paced: Paced {
                latencies: self.latencies(),
                errors: self.failed,
                skipped: self.skipped,
                skipped_span: None,
            },
            refused: 0,
            longest_gap: Gap::longest(self.answered(), cfg.duration),
            late: found.iter().map(|e| e.late).sum(),
            episodes: found,
            housekeeping: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgbench_log_lines_become_answers_from_when_each_was_due() {
        let log = "0 1 2000 0 1796672297 10000 500\n\
                   1 1 failed 0 1796672297 11000 0\n\
                   1 2 skipped 0 1796672297 12000 0\n\
                   0 2 30000 0 1796672297 50000\n";
        let t = parse_log(log).expect("parsed");
        assert_eq!((t.failed, t.skipped), (1, 1));
        // First: ended at 10.000 ms, took 2 ms, started 0.5 ms late: due at 7.5 ms.
        // Second: ended at 50 ms, took 30 ms: due at 20 ms, 12.5 ms after the first.
        let got: Vec<(u128, u128)> = t.answers.iter().map(|a| (a.due.as_micros(), a.latency.as_micros())).collect();
        assert_eq!(got, vec![(0, 2_500), (12_500, 30_000)]);
        assert!(parse_log("0 1 12x 0 1 2").is_err(), "a number that is not one is refused");
        assert!(parse_log("0 1 12").is_err(), "a short line is refused");
    }
}
