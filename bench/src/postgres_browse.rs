//! The PostgreSQL baseline of the browse and mixed workloads, as a team would design it beside
//! the flash sale's tables (`BROWSE_SCHEMA` in `postgres.rs`): event details are the `events`
//! row plus available, held and sold counts per section aggregated from `seats`; a seat map is
//! the event's `seats` rows; a search is `@@ plainto_tsquery(…)` over the generated `tsvector`
//! (GIN) plus btree-indexed filters, `ORDER BY ts_rank DESC LIMIT 20`; a hold is the flash
//! sale's locking transaction; a release is one transaction that frees the hold's seats and
//! stamps the hold. Each request takes a connection as a pool would.

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use tokio_postgres::types::ToSql;

use crate::catalogue::{
    event_seat_ids, CatalogEvent, SearchQuery, GENERAL_CAPACITY, GENERAL_PRICE, GENERAL_SECTION, ROWS, SEARCH_RESULTS,
    SEATED_PRICE, SEATED_SECTION, SEATS_PER_ROW,
};
use crate::error::TargetError;
use crate::mix::{Answered, BrowseStore};
use crate::postgres::{count_taken, db_error, delete_events, hold_on, unique_event_id, PostgresStore};
use crate::sale::{HoldOutcome, SaleStore};

/// Rows inserted per statement while loading.
const LOAD_BATCH_ROWS: usize = 5_000;

const INSERT_EVENTS: &str = "
INSERT INTO events (event_id, name, description, category, performers, venue, city, starts_at, sections)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                     $8::timestamptz[], $9::text[])";
const INSERT_SEATS: &str =
    "INSERT INTO seats (event, seat_id, status) SELECT unnest($1::text[]), unnest($2::text[]), 'available'";
pub const EVENT_DETAILS: &str = "
SELECT e.event_id, e.name, e.description, e.category, e.performers, e.venue, e.city, e.starts_at, e.sections,
       s.section, s.available, s.held, s.sold
FROM events e
LEFT JOIN LATERAL (
    SELECT split_part(seat_id, '-', 1) AS section,
           count(*) FILTER (WHERE status = 'available') AS available,
           count(*) FILTER (WHERE status = 'held') AS held,
           count(*) FILTER (WHERE status = 'sold') AS sold
    FROM seats WHERE event = e.event_id GROUP BY 1
) s ON true
WHERE e.event_id = $1";
pub const SEAT_MAP: &str = "SELECT seat_id, split_part(seat_id, '-', 1) AS section, status FROM seats WHERE event = $1";
/// Frees the seats a hold still holds.
pub const FREE_SEATS: &str =
    "UPDATE seats SET status = 'available', hold_id = NULL WHERE event = $1 AND hold_id = $2 AND status = 'held'";
pub const MARK_RELEASED: &str = "UPDATE holds SET released_at = now() WHERE hold_id = $1 AND released_at IS NULL";

/// A value bound to a search's placeholder.
#[derive(Clone, Debug, PartialEq)]
pub enum SqlValue {
    Text(String),
    Time(SystemTime),
}

impl SqlValue {
    fn as_sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            SqlValue::Text(t) => t,
            SqlValue::Time(t) => t,
        }
    }
}

fn time(unix_s: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix_s.max(0) as u64)
}

/// The statement of a search and its values: only the filters asked for appear, so that the
/// planner sees plain predicates it can match to the btree indexes. Without a start of the date
/// range only events yet to start are found, as Boxoffice's search does.
pub fn search_sql(query: &SearchQuery) -> (String, Vec<SqlValue>) {
    let mut values = vec![SqlValue::Text(query.text())];
    let mut filters = String::new();
    let mut bind = |column_and_op: &str, value: SqlValue| {
        values.push(value);
        filters.push_str(&format!(" AND {column_and_op} ${}", values.len()));
    };
    if let Some(city) = query.city {
        bind("city =", SqlValue::Text(city.to_owned()));
    }
    if let Some(category) = query.category {
        bind("category =", SqlValue::Text(category.to_owned()));
    }
    if let Some(from) = query.from_s {
        bind("starts_at >=", SqlValue::Time(time(from)));
    }
    if let Some(to) = query.to_s {
        bind("starts_at <", SqlValue::Time(time(to)));
    }
    if query.from_s.is_none() {
        filters.push_str(" AND starts_at >= now()");
    }
    let sql = format!(
        "SELECT event_id, name, city, category, starts_at, ts_rank(search, query) AS rank \
         FROM events, plainto_tsquery('english', $1) AS query \
         WHERE search @@ query{filters} ORDER BY rank DESC LIMIT {SEARCH_RESULTS}"
    );
    (sql, values)
}

/// The event's sections as the `sections` column keeps them.
fn sections_json() -> String {
    json!([
        {"section": SEATED_SECTION, "kind": "seated", "rows": ROWS, "seats_per_row": SEATS_PER_ROW, "price": SEATED_PRICE},
        {"section": GENERAL_SECTION, "kind": "general", "capacity": GENERAL_CAPACITY, "price": GENERAL_PRICE}
    ])
    .to_string()
}

impl PostgresStore {
    async fn try_release(&self, client: u64, event: &str, hold_id: &str) -> Result<bool, tokio_postgres::Error> {
        let mut connection = self.pooled(client).await;
        let tx = connection.transaction().await?;
        if tx.execute(FREE_SEATS, &[&event, &hold_id]).await? != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        tx.execute(MARK_RELEASED, &[&hold_id]).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn insert_events(&self, ids: &[String], catalogue: &[CatalogEvent]) -> Result<(), TargetError> {
        let connection = self.pooled(0).await;
        let sections = sections_json();
        for (ids, specs) in ids.chunks(LOAD_BATCH_ROWS).zip(catalogue.chunks(LOAD_BATCH_ROWS)) {
            let column = |f: fn(&CatalogEvent) -> String| specs.iter().map(f).collect::<Vec<String>>();
            let names = column(|e| e.name.clone());
            let descriptions = column(|e| e.description.clone());
            let categories = column(|e| e.category.to_owned());
            let performers = column(|e| e.performer.to_owned());
            let venues = column(|e| e.venue.clone());
            let cities = column(|e| e.city.to_owned());
            let starts: Vec<SystemTime> = specs.iter().map(|e| time(e.starts_at_s)).collect();
            let sections = vec![sections.clone(); specs.len()];
            let ids = ids.to_vec();
            let values: [&(dyn ToSql + Sync); 9] =
                [&ids, &names, &descriptions, &categories, &performers, &venues, &cities, &starts, &sections];
            connection.execute(INSERT_EVENTS, &values).await.map_err(db_error)?;
        }
        let seats = event_seat_ids();
        let rows: Vec<(&String, &String)> = ids.iter().flat_map(|id| seats.iter().map(move |s| (id, s))).collect();
        for batch in rows.chunks(LOAD_BATCH_ROWS) {
            let (events, seat_ids): (Vec<&String>, Vec<&String>) = batch.iter().copied().unzip();
            connection.execute(INSERT_SEATS, &[&events, &seat_ids]).await.map_err(db_error)?;
        }
        // Fresh statistics, so that the planner picks the indexes.
        connection.batch_execute("ANALYZE events; ANALYZE seats").await.map_err(db_error)
    }
}

impl BrowseStore for PostgresStore {
    fn describe(&self) -> String {
        SaleStore::describe(self)
    }

    fn searches(&self) -> bool {
        true
    }

    async fn load(&self, catalogue: &[CatalogEvent]) -> Result<Vec<String>, TargetError> {
        let run = unique_event_id();
        let ids: Vec<String> = (0..catalogue.len()).map(|n| format!("{run}-{n}")).collect();
        self.insert_events(&ids, catalogue).await?;
        Ok(ids)
    }

    /// One row per seated section with its counts.
    async fn details(&self, client: u64, event: &str) -> Option<Answered> {
        let connection = self.pooled(client).await;
        let rows = connection.query(EVENT_DETAILS, &[&event]).await.ok()?;
        Some(rows.iter().filter(|row| row.get::<_, Option<&str>>(9).is_some()).count().into())
    }

    async fn seat_map(&self, client: u64, event: &str) -> Option<Answered> {
        let connection = self.pooled(client).await;
        connection.query(SEAT_MAP, &[&event]).await.ok().map(|rows| rows.len().into())
    }

    async fn search(&self, client: u64, query: &SearchQuery) -> Option<usize> {
        let (sql, values) = search_sql(query);
        let values: Vec<&(dyn ToSql + Sync)> = values.iter().map(SqlValue::as_sql).collect();
        let connection = self.pooled(client).await;
        connection.query(sql.as_str(), &values).await.ok().map(|rows| rows.len())
    }

    async fn hold(&self, client: u64, event: &str, seat: &str) -> HoldOutcome {
        let hold_id = format!("{event}-h{}", self.next_hold.fetch_add(1, Ordering::Relaxed));
        let mut connection = self.pooled(client).await;
        match hold_on(&mut connection, client as i32, event, &[seat.to_owned()], &hold_id).await {
            Ok(true) => HoldOutcome::Held(hold_id),
            Ok(false) => HoldOutcome::Conflict,
            Err(_) => HoldOutcome::Error,
        }
    }

    async fn release(&self, client: u64, event: &str, hold_id: &str, _seat: &str) -> bool {
        matches!(self.try_release(client, event, hold_id).await, Ok(true))
    }

    async fn taken(&self, event: &str) -> Result<usize, TargetError> {
        count_taken(&*self.pooled(0).await, event).await
    }

    async fn unload(&self, events: &[String]) -> Result<(), TargetError> {
        delete_events(&*self.pooled(0).await, events).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_search_binds_only_the_filters_it_has() {
        let query = SearchQuery { words: vec!["Golden"], city: None, category: None, from_s: None, to_s: None };
        let (sql, values) = search_sql(&query);
        assert_eq!(values, vec![SqlValue::Text("Golden".into())]);
        assert!(sql.contains("search @@ query AND starts_at >= now() ORDER BY rank DESC LIMIT 20"), "{sql}");
        assert!(sql.contains("plainto_tsquery('english', $1)"));

        let query = SearchQuery {
            words: vec!["Neon", "Opera"],
            city: Some("Porto"),
            category: Some("music"),
            from_s: Some(86_400),
            to_s: Some(2 * 86_400),
        };
        let (sql, values) = search_sql(&query);
        assert!(
            sql.contains("AND city = $2 AND category = $3 AND starts_at >= $4 AND starts_at < $5 ORDER BY"),
            "{sql}"
        );
        assert_eq!(values.len(), 5);
        assert_eq!(values[0], SqlValue::Text("Neon Opera".into()));
        assert_eq!(values[3], SqlValue::Time(UNIX_EPOCH + Duration::from_secs(86_400)));
        assert!(!sql.contains("now()"), "a range's start replaces the default");
    }

    #[test]
    fn details_aggregate_per_section_and_a_release_frees_only_its_holds_seats() {
        assert!(EVENT_DETAILS.contains("split_part(seat_id, '-', 1) AS section"));
        assert!(EVENT_DETAILS.contains("WHERE e.event_id = $1"));
        assert!(FREE_SEATS.contains("hold_id = $2 AND status = 'held'"));
        assert!(MARK_RELEASED.contains("released_at IS NULL"));
    }

    #[test]
    fn the_search_column_is_generated_and_indexed() {
        let schema = crate::postgres::BROWSE_SCHEMA;
        assert!(schema.contains("tsvector GENERATED ALWAYS AS"));
        assert!(schema.contains("USING gin (search)"));
        for column in ["city", "category", "starts_at"] {
            assert!(schema.contains(&format!("ON events ({column})")), "{column}");
        }
    }
}
