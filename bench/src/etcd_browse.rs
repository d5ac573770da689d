//! The etcd baseline of the browse workload, as a team would design it on a key-value store:
//! an event key `/events/{event}` holding the event's JSON; seat keys `/seats/{event}/{seat}` as
//! the flash sale has them (a seat is free while its key is absent). Event details are one
//! read-only transaction of two ranges, the event key and a count of its seat keys; a seat map is
//! one range read of the event's seat prefix, merged with the layout; a hold is the flash sale's
//! compare-and-put transaction; a release is a transaction that compares the seat key with the
//! hold's value and deletes it and the hold record. Reads are etcd's default, linearizable.
//! etcd has no query language: the mixed workload's searches are not supported here.

use std::sync::atomic::Ordering;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde_json::{json, Value};

use crate::catalogue::{
    CatalogEvent, GENERAL_CAPACITY, GENERAL_PRICE, GENERAL_SECTION, ROWS, SEATED_PRICE, SEATED_SECTION,
    SEATS_PER_EVENT, SEATS_PER_ROW,
};
use crate::error::TargetError;
use crate::etcd::{b64, held_value, hold_txn, range_count, seat_range, txn_succeeded, EtcdStore};
use crate::mix::{Answered, BrowseStore};
use crate::postgres::unique_event_id;
use crate::sale::{HoldOutcome, SaleStore};

/// Puts per load transaction: etcd refuses transactions of more than 128 operations (its
/// `--max-txn-ops` default).
const LOAD_TXN_PUTS: usize = 100;

pub fn event_key(event: &str) -> String {
    format!("/events/{event}")
}

/// The event's JSON, as its key keeps it.
pub fn event_value(event: &str, spec: &CatalogEvent) -> String {
    json!({
        "event_id": event, "name": spec.name, "description": spec.description, "category": spec.category,
        "performers": [spec.performer], "venue": spec.venue, "city": spec.city, "starts_at": spec.starts_at(),
        "sections": [
            {"section": SEATED_SECTION, "kind": "seated", "rows": ROWS, "seats_per_row": SEATS_PER_ROW, "price": SEATED_PRICE},
            {"section": GENERAL_SECTION, "kind": "general", "capacity": GENERAL_CAPACITY, "price": GENERAL_PRICE}
        ]
    })
    .to_string()
}

/// Event details in one round trip: a transaction without comparisons whose operations are
/// ranges is read-only, served by etcd's linearizable read path without a log entry.
pub fn details_txn(event: &str) -> Value {
    let (start, end) = seat_range(event);
    json!({"success": [
        {"request_range": {"key": b64(&event_key(event))}},
        {"request_range": {"key": b64(&start), "range_end": b64(&end), "count_only": true}}
    ]})
}

/// The release's transaction: if the seat key still holds this hold, delete it and the hold
/// record, else change nothing.
pub fn release_txn(event: &str, seat: &str, hold_id: &str) -> Value {
    let key = b64(&crate::etcd::seat_key(event, seat));
    json!({
        "compare": [{"key": key, "result": "EQUAL", "target": "VALUE", "value": b64(&held_value(hold_id))}],
        "success": [
            {"request_delete_range": {"key": key}},
            {"request_delete_range": {"key": b64(&format!("/holds/{event}/{hold_id}"))}}
        ],
        "failure": []
    })
}

/// The sections of an event's details: the event's JSON (the first range's value), with the
/// seated section's taken seats (the second range's count).
pub fn details_sections(answer: &Value) -> Option<usize> {
    let responses = answer.get("responses")?.as_array()?;
    let value = responses.first()?["response_range"]["kvs"][0]["value"].as_str()?;
    let event: Value = serde_json::from_slice(&BASE64.decode(value).ok()?).ok()?;
    let taken = range_count(&responses.get(1)?["response_range"])?;
    (taken <= SEATS_PER_EVENT).then_some(())?;
    event["sections"].as_array().map(Vec::len)
}

/// The seats of a seat map: the layout's seats, of which the range's keys are taken.
pub fn seat_map_seats(answer: &Value) -> Option<usize> {
    answer.get("header")?;
    let taken = answer.get("kvs").and_then(Value::as_array).map_or(0, Vec::len);
    (taken <= SEATS_PER_EVENT).then_some(SEATS_PER_EVENT)
}

/// What every event id of a run begins with (`e…-0-` of `e…-0-17`), for deleting them by range.
fn run_prefix(events: &[String]) -> Option<String> {
    let prefix = format!("{}-", events.first()?.rsplit_once('-')?.0);
    events.iter().all(|e| e.starts_with(&prefix)).then_some(prefix)
}

impl BrowseStore for EtcdStore {
    fn describe(&self) -> String {
        SaleStore::describe(self)
    }

    async fn load(&self, catalogue: &[CatalogEvent]) -> Result<Vec<String>, TargetError> {
        let run = unique_event_id();
        let ids: Vec<String> = (0..catalogue.len()).map(|n| format!("{run}-{n}")).collect();
        for (ids, specs) in ids.chunks(LOAD_TXN_PUTS).zip(catalogue.chunks(LOAD_TXN_PUTS)) {
            let puts: Vec<Value> = ids
                .iter()
                .zip(specs)
                .map(|(id, spec)| json!({"request_put": {"key": b64(&event_key(id)), "value": b64(&event_value(id, spec))}}))
                .collect();
            let answer = self.call(0, "/v3/kv/txn", &json!({"success": puts})).await?;
            if txn_succeeded(&answer) != Some(true) {
                return Err(TargetError::Scenario(format!("etcd: loading events: {answer}")));
            }
        }
        Ok(ids)
    }

    async fn details(&self, client: u64, event: &str) -> Option<Answered> {
        let answer = self.call(client as usize, "/v3/kv/txn", &details_txn(event)).await.ok()?;
        details_sections(&answer).map(Answered::from)
    }

    async fn seat_map(&self, client: u64, event: &str) -> Option<Answered> {
        let (start, end) = seat_range(event);
        let body = json!({"key": b64(&start), "range_end": b64(&end)});
        seat_map_seats(&self.call(client as usize, "/v3/kv/range", &body).await.ok()?).map(Answered::from)
    }

    async fn hold(&self, client: u64, event: &str, seat: &str) -> HoldOutcome {
        let hold_id = format!("h{}", self.next_hold.fetch_add(1, Ordering::Relaxed));
        match self.txn(client as usize, &hold_txn(event, &[seat.to_owned()], &hold_id)).await {
            Some(true) => HoldOutcome::Held(hold_id),
            Some(false) => HoldOutcome::Conflict,
            None => HoldOutcome::Error,
        }
    }

    async fn release(&self, client: u64, event: &str, hold_id: &str, seat: &str) -> bool {
        self.txn(client as usize, &release_txn(event, seat, hold_id)).await == Some(true)
    }

    async fn taken(&self, event: &str) -> Result<usize, TargetError> {
        SaleStore::taken(self, event).await
    }

    /// Three range deletes when the ids share their run's prefix, as `load` names them.
    async fn unload(&self, events: &[String]) -> Result<(), TargetError> {
        let Some(run) = run_prefix(events) else { return Ok(()) };
        for space in ["/events/", "/seats/", "/holds/"] {
            self.delete_prefix(&format!("{space}{run}")).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::etcd::prefix_end;
    use crate::etcd::tests::decode;

    #[test]
    fn details_are_one_read_only_transaction() {
        let txn = details_txn("e1-0");
        assert!(txn.get("compare").is_none());
        assert_eq!(decode(&txn["success"][0]["request_range"]["key"]), "/events/e1-0");
        assert_eq!(decode(&txn["success"][1]["request_range"]["key"]), "/seats/e1-0/");
        assert_eq!(decode(&txn["success"][1]["request_range"]["range_end"]), "/seats/e1-00");
        assert_eq!(txn["success"][1]["request_range"]["count_only"], true);
    }

    #[test]
    fn a_release_deletes_the_seat_only_while_its_hold_has_it() {
        let txn = release_txn("e1", "FLOOR-A-1", "h7");
        assert_eq!(txn["compare"][0]["target"], "VALUE");
        assert_eq!(decode(&txn["compare"][0]["value"]), "held:h7");
        assert_eq!(decode(&txn["success"][0]["request_delete_range"]["key"]), "/seats/e1/FLOOR-A-1");
        assert_eq!(decode(&txn["success"][1]["request_delete_range"]["key"]), "/holds/e1/h7");
        assert_eq!(txn["failure"], json!([]));
    }

    #[test]
    fn answers_become_sections_and_seats() {
        let spec = crate::catalogue::catalogue(1, 0).remove(0);
        let event = b64(&event_value("e1", &spec));
        let answer = json!({"header": {}, "succeeded": true, "responses": [
            {"response_range": {"header": {}, "kvs": [{"key": b64("/events/e1"), "value": event}], "count": "1"}},
            {"response_range": {"header": {}, "count": "3"}}
        ]});
        assert_eq!(details_sections(&answer), Some(2));
        assert_eq!(details_sections(&json!({"error": "x"})), None);
        assert_eq!(seat_map_seats(&json!({"header": {}})), Some(SEATS_PER_EVENT));
        assert_eq!(seat_map_seats(&json!({"header": {}, "kvs": [{}, {}]})), Some(SEATS_PER_EVENT));
        assert_eq!(seat_map_seats(&json!({"code": 14})), None);
    }

    #[test]
    fn a_runs_keys_are_deleted_by_prefix() {
        assert_eq!(prefix_end("/seats/e1-0-"), "/seats/e1-0.");
        let events = vec!["e1-0-0".to_owned(), "e1-0-11".to_owned()];
        assert_eq!(run_prefix(&events), Some("e1-0-".to_owned()));
        assert_eq!(run_prefix(&["e1-0-0".to_owned(), "e2-0-1".to_owned()]), None);
        assert_eq!(run_prefix(&[]), None);
    }
}
