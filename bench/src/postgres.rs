//! The PostgreSQL baseline, as most write-ups design it: a `seats` table; a hold is one
//! transaction that locks the seats (`SELECT … FOR UPDATE`), checks that all are available,
//! marks them held and records the hold; a checkout is one transaction that marks them sold and
//! records the order. Durability is the server's default: `synchronous_commit = on`, so each
//! COMMIT waits for its WAL flush.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::{Mutex, MutexGuard};
use tokio_postgres::{Client, NoTls};

use crate::error::TargetError;
use crate::sale::{seat_ids, HoldOutcome, SaleStore};

/// Connections the baseline opens, at most: one per buyer up to this bound (the server allows
/// 200 as `scripts/baselines` starts it; on 2 cores more backends only add switching).
pub const POSTGRES_CONNECTIONS_MAX: usize = 64;

/// Seats inserted per statement at setup.
const SETUP_BATCH_SEATS: usize = 5_000;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS seats (
    event   text NOT NULL,
    seat_id text NOT NULL,
    status  text NOT NULL CHECK (status IN ('available', 'held', 'sold')),
    hold_id text,
    PRIMARY KEY (event, seat_id)
);
CREATE TABLE IF NOT EXISTS holds (
    hold_id    text PRIMARY KEY,
    event      text NOT NULL,
    buyer      integer NOT NULL,
    seats      text[] NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS orders (
    order_id   text PRIMARY KEY,
    hold_id    text NOT NULL REFERENCES holds (hold_id),
    event      text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);";

/// The browse and mixed workloads' tables, added beside the flash sale's: an `events` row per
/// event (its sections as JSON), found by a generated `tsvector` behind a GIN index and by btree
/// indexes on city, category and date; seats keep their rows in the flash sale's `seats`, left
/// as the flash sale measures it (a seat's section is the first part of its id, derived in the
/// queries); a released hold is stamped, not deleted.
pub const BROWSE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    event_id    text PRIMARY KEY,
    name        text NOT NULL,
    description text NOT NULL,
    category    text NOT NULL,
    performers  text NOT NULL,
    venue       text NOT NULL,
    city        text NOT NULL,
    starts_at   timestamptz NOT NULL,
    sections    text NOT NULL,
    search      tsvector GENERATED ALWAYS AS (to_tsvector('english',
                    name || ' ' || description || ' ' || performers || ' ' || venue || ' ' || city)) STORED
);
CREATE INDEX IF NOT EXISTS events_search ON events USING gin (search);
CREATE INDEX IF NOT EXISTS events_city ON events (city);
CREATE INDEX IF NOT EXISTS events_category ON events (category);
CREATE INDEX IF NOT EXISTS events_starts_at ON events (starts_at);
ALTER TABLE holds ADD COLUMN IF NOT EXISTS released_at timestamptz;";

/// Key of the advisory lock that makes creating the tables one at a time: `CREATE … IF NOT
/// EXISTS` from two connections at once can still collide in the catalogue.
const SCHEMA_LOCK_KEY: i64 = 0x626f_786f;

pub const LOCK_SEATS: &str = "SELECT seat_id, status FROM seats WHERE event = $1 AND seat_id = ANY($2) FOR UPDATE";
pub const MARK_HELD: &str = "UPDATE seats SET status = 'held', hold_id = $3 WHERE event = $1 AND seat_id = ANY($2)";
pub const INSERT_HOLD: &str = "INSERT INTO holds (hold_id, event, buyer, seats) VALUES ($1, $2, $3, $4)";
pub const MARK_SOLD: &str = "UPDATE seats SET status = 'sold' WHERE event = $1 AND hold_id = $2 AND status = 'held'";
pub const INSERT_ORDER: &str = "INSERT INTO orders (order_id, hold_id, event) VALUES ($1, $2, $3)";
pub const COUNT_TAKEN: &str = "SELECT count(*) FROM seats WHERE event = $1 AND status <> 'available'";
/// Everything a run wrote for its events, orders before the holds they reference.
const DELETE_EVENTS: [&str; 4] = [
    "DELETE FROM orders WHERE event = ANY($1)",
    "DELETE FROM holds WHERE event = ANY($1)",
    "DELETE FROM seats WHERE event = ANY($1)",
    "DELETE FROM events WHERE event_id = ANY($1)",
];
/// Run after the deletes: the dead rows they leave would otherwise still be scanned by the next
/// run, which autovacuum does not wait for. Not in a transaction, by itself.
const VACUUM: &str = "VACUUM (ANALYZE) seats, holds, orders, events";
const INSERT_SEATS: &str = "INSERT INTO seats (event, seat_id, status) SELECT $1, unnest($2::text[]), 'available'";

/// Whether the locked rows allow the hold: every seat asked for exists and is available.
pub fn all_available<'a>(locked: impl IntoIterator<Item = &'a str>, asked: usize) -> bool {
    let mut n = 0;
    for status in locked {
        if status != "available" {
            return false;
        }
        n += 1;
    }
    n == asked
}

pub struct PostgresStore {
    url: String,
    connections: Vec<Mutex<Client>>,
    pub(crate) next_hold: AtomicU64,
}

/// A buyer uses connection `n % connections`.
pub struct PostgresBuyer {
    n: usize,
}

pub(crate) fn db_error(e: tokio_postgres::Error) -> TargetError {
    match e.as_db_error() {
        // The server's own words: `Display` says only "db error".
        Some(db) => TargetError::Scenario(format!("postgres: {} ({})", db.message(), db.code().code())),
        None => TargetError::Scenario(format!("postgres: {e}")),
    }
}

impl PostgresStore {
    /// Opens min(`buyers`, [`POSTGRES_CONNECTIONS_MAX`]) connections and creates the tables.
    pub async fn connect(url: &str, buyers: usize) -> Result<PostgresStore, TargetError> {
        let n = buyers.clamp(1, POSTGRES_CONNECTIONS_MAX);
        let mut connections = Vec::with_capacity(n);
        for _ in 0..n {
            let (client, connection) = tokio_postgres::connect(url, NoTls).await.map_err(db_error)?;
            // The connection task ends when the client is dropped.
            tokio::spawn(connection);
            connections.push(Mutex::new(client));
        }
        let store = PostgresStore { url: url.to_owned(), connections, next_hold: AtomicU64::new(0) };
        let schema =
            format!("BEGIN; SELECT pg_advisory_xact_lock({SCHEMA_LOCK_KEY}); {SCHEMA} {BROWSE_SCHEMA} COMMIT;");
        store.connections[0].lock().await.batch_execute(&schema).await.map_err(db_error)?;
        Ok(store)
    }

    fn connection(&self, buyer: &PostgresBuyer) -> &Mutex<Client> {
        &self.connections[buyer.n % self.connections.len()]
    }

    /// A connection for one request, as a pool hands them out: the first idle one from
    /// `client`'s own, else a wait for `client`'s own.
    pub(crate) async fn pooled(&self, client: u64) -> MutexGuard<'_, Client> {
        let n = self.connections.len();
        let first = client as usize % n;
        for i in 0..n {
            if let Ok(guard) = self.connections[(first + i) % n].try_lock() {
                return guard;
            }
        }
        self.connections[first].lock().await
    }

    async fn try_hold(
        &self,
        buyer: &PostgresBuyer,
        event: &str,
        seats: &[String],
        hold_id: &str,
    ) -> Result<bool, tokio_postgres::Error> {
        let mut client = self.connection(buyer).lock().await;
        hold_on(&mut client, buyer.n as i32, event, seats, hold_id).await
    }

    async fn try_checkout(
        &self,
        buyer: &PostgresBuyer,
        event: &str,
        hold_id: &str,
        seats: usize,
    ) -> Result<bool, tokio_postgres::Error> {
        let mut client = self.connection(buyer).lock().await;
        let tx = client.transaction().await?;
        let sold = tx.execute(MARK_SOLD, &[&event, &hold_id]).await?;
        if sold != seats as u64 {
            tx.rollback().await?;
            return Ok(false);
        }
        let order_id = format!("o-{hold_id}");
        tx.execute(INSERT_ORDER, &[&order_id, &hold_id, &event]).await?;
        tx.commit().await?;
        Ok(true)
    }
}

impl SaleStore for PostgresStore {
    type Buyer = PostgresBuyer;

    fn describe(&self) -> String {
        let at = self.url.rsplit('@').next().unwrap_or(&self.url);
        format!("{at}, {} connections", self.connections.len())
    }

    async fn setup(&self, seats: u32) -> Result<String, TargetError> {
        let event = unique_event_id();
        let ids = seat_ids(seats);
        let client = self.connections[0].lock().await;
        for batch in ids.chunks(SETUP_BATCH_SEATS) {
            client.execute(INSERT_SEATS, &[&event, &batch]).await.map_err(db_error)?;
        }
        // Fresh statistics, so that the planner picks the primary key for `= ANY($2)`.
        client.batch_execute("ANALYZE seats").await.map_err(db_error)?;
        Ok(event)
    }

    async fn buyer(&self, n: usize) -> Result<PostgresBuyer, TargetError> {
        Ok(PostgresBuyer { n })
    }

    async fn hold(&self, buyer: &mut PostgresBuyer, event: &str, seats: &[String]) -> HoldOutcome {
        let hold_id = format!("{event}-h{}", self.next_hold.fetch_add(1, Ordering::Relaxed));
        match self.try_hold(buyer, event, seats, &hold_id).await {
            Ok(true) => HoldOutcome::Held(hold_id),
            Ok(false) => HoldOutcome::Conflict,
            Err(_) => HoldOutcome::Error,
        }
    }

    async fn checkout(&self, buyer: &mut PostgresBuyer, event: &str, hold_id: &str, seats: &[String]) -> bool {
        matches!(self.try_checkout(buyer, event, hold_id, seats.len()).await, Ok(true))
    }

    async fn taken(&self, event: &str) -> Result<usize, TargetError> {
        count_taken(&*self.connections[0].lock().await, event).await
    }

    async fn teardown(&self, event: &str) -> Result<(), TargetError> {
        delete_events(&*self.connections[0].lock().await, &[event.to_owned()]).await
    }
}

/// Deletes the rows of `events` in every table and vacuums, so that the next run starts from
/// the state this one did.
pub(crate) async fn delete_events(client: &Client, events: &[String]) -> Result<(), TargetError> {
    for statement in DELETE_EVENTS {
        client.execute(statement, &[&events]).await.map_err(db_error)?;
    }
    client.batch_execute(VACUUM).await.map_err(db_error)
}

/// The flash sale's hold transaction on `client`: lock the seats, check that all are available,
/// mark them held, record the hold, commit.
pub(crate) async fn hold_on(
    client: &mut Client,
    buyer: i32,
    event: &str,
    seats: &[String],
    hold_id: &str,
) -> Result<bool, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let locked = tx.query(LOCK_SEATS, &[&event, &seats]).await?;
    let statuses: Vec<&str> = locked.iter().map(|row| row.get::<_, &str>(1)).collect();
    if !all_available(statuses.iter().copied(), seats.len()) {
        tx.rollback().await?;
        return Ok(false);
    }
    tx.execute(MARK_HELD, &[&event, &seats, &hold_id]).await?;
    tx.execute(INSERT_HOLD, &[&hold_id, &event, &buyer, &seats]).await?;
    tx.commit().await?;
    Ok(true)
}

/// Seats of `event` held or sold.
pub(crate) async fn count_taken(client: &Client, event: &str) -> Result<usize, TargetError> {
    let row = client.query_one(COUNT_TAKEN, &[&event]).await.map_err(db_error)?;
    Ok(row.get::<_, i64>(0) as usize)
}

/// An event id no earlier run used: the baselines' servers outlive a run.
pub fn unique_event_id() -> String {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("e{nanos}-{}", CALLS.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_needs_every_seat_found_and_available() {
        assert!(all_available(["available", "available"], 2));
        assert!(!all_available(["available", "held"], 2));
        assert!(!all_available(["sold"], 1));
        // A seat that does not exist locks no row.
        assert!(!all_available(["available"], 2));
    }

    #[test]
    fn the_hold_locks_its_seats_before_it_changes_them() {
        assert!(LOCK_SEATS.ends_with("FOR UPDATE"));
        assert!(LOCK_SEATS.contains("seat_id = ANY($2)"));
        assert!(MARK_HELD.contains("status = 'held'"));
        assert!(MARK_SOLD.contains("status = 'held'"), "only a held seat can be sold");
        assert!(!SCHEMA.to_lowercase().contains("synchronous_commit"), "durability stays the server's default");
    }

    #[test]
    fn event_ids_differ_between_calls() {
        assert_ne!(unique_event_id(), unique_event_id());
    }
}
