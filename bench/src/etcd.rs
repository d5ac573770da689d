//! The etcd baseline: a key per seat, `/seats/{event}/{seat}`. A hold is one transaction that
//! compares every seat key's version with 0 (the key was never written) and puts them all with
//! the hold id, plus a hold record, else changes nothing; a checkout is one transaction that
//! compares every seat key with the hold's value and puts `sold:{order}`, plus an order record.
//! etcd fsyncs its log before it answers (its default, kept). The bench talks to etcd 3.4's
//! JSON gateway (`/v3/kv/txn`, `/v3/kv/range`; keys and values base64) with reqwest, and spreads
//! buyers over the members given.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde_json::{json, Value};

use crate::error::TargetError;
use crate::postgres::unique_event_id;
use crate::sale::{HoldOutcome, SaleStore};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub fn b64(s: &str) -> String {
    BASE64.encode(s.as_bytes())
}

pub fn seat_key(event: &str, seat: &str) -> String {
    format!("/seats/{event}/{seat}")
}

/// The end of the range of every key that starts with `prefix`: its last byte plus one.
pub fn prefix_end(prefix: &str) -> String {
    let mut bytes = prefix.as_bytes().to_vec();
    if let Some(last) = bytes.last_mut() {
        *last = last.saturating_add(1);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The range of every seat key of `event`.
pub fn seat_range(event: &str) -> (String, String) {
    let prefix = format!("/seats/{event}/");
    let end = prefix_end(&prefix);
    (prefix, end)
}

pub fn held_value(hold_id: &str) -> String {
    format!("held:{hold_id}")
}

/// The hold's transaction: if no seat key exists, create them all with the hold's value.
pub fn hold_txn(event: &str, seats: &[String], hold_id: &str) -> Value {
    let compare: Vec<Value> = seats
        .iter()
        .map(|s| json!({"key": b64(&seat_key(event, s)), "result": "EQUAL", "target": "VERSION", "version": "0"}))
        .collect();
    let mut success: Vec<Value> = seats
        .iter()
        .map(|s| json!({"request_put": {"key": b64(&seat_key(event, s)), "value": b64(&held_value(hold_id))}}))
        .collect();
    success.push(
        json!({"request_put": {"key": b64(&format!("/holds/{event}/{hold_id}")), "value": b64(&seats.join(","))}}),
    );
    json!({"compare": compare, "success": success, "failure": []})
}

/// The checkout's transaction: if every seat key still holds this hold, mark them sold.
pub fn checkout_txn(event: &str, seats: &[String], hold_id: &str) -> Value {
    let order_id = format!("o-{hold_id}");
    let compare: Vec<Value> = seats
        .iter()
        .map(|s| json!({"key": b64(&seat_key(event, s)), "result": "EQUAL", "target": "VALUE", "value": b64(&held_value(hold_id))}))
        .collect();
    let mut success: Vec<Value> = seats
        .iter()
        .map(|s| json!({"request_put": {"key": b64(&seat_key(event, s)), "value": b64(&format!("sold:{order_id}"))}}))
        .collect();
    success.push(json!({"request_put": {"key": b64(&format!("/orders/{event}/{order_id}")), "value": b64(hold_id)}}));
    json!({"compare": compare, "success": success, "failure": []})
}

/// Whether a transaction's answer says its comparisons held. The gateway leaves `succeeded` out
/// when it is false (proto3 JSON omits default values).
pub fn txn_succeeded(answer: &Value) -> Option<bool> {
    answer.get("header")?;
    Some(answer.get("succeeded").and_then(Value::as_bool).unwrap_or(false))
}

/// A range's `count` (an int64, which the gateway writes as a string and leaves out when 0).
pub fn range_count(answer: &Value) -> Option<usize> {
    answer.get("header")?;
    match answer.get("count") {
        None => Some(0),
        Some(Value::String(s)) => s.parse().ok(),
        Some(v) => v.as_u64().map(|n| n as usize),
    }
}

pub struct EtcdStore {
    urls: Vec<String>,
    http: reqwest::Client,
    pub(crate) next_hold: AtomicU64,
}

/// A buyer talks to member `n % members`.
pub struct EtcdBuyer {
    n: usize,
}

impl EtcdStore {
    pub fn new(urls: &[String]) -> Result<EtcdStore, TargetError> {
        if urls.is_empty() {
            return Err(TargetError::Scenario("etcd: no member URL".into()));
        }
        let http = reqwest::Client::builder().timeout(REQUEST_TIMEOUT).pool_max_idle_per_host(1024).build()?;
        let urls = urls.iter().map(|u| u.trim_end_matches('/').to_owned()).collect();
        Ok(EtcdStore { urls, http, next_hold: AtomicU64::new(0) })
    }

    pub(crate) async fn call(&self, member: usize, path: &str, body: &Value) -> Result<Value, TargetError> {
        let url = format!("{}{path}", self.urls[member % self.urls.len()]);
        let resp = self.http.post(url).json(body).send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        if status != 200 {
            return Err(TargetError::Answer(status, text));
        }
        serde_json::from_str(&text).map_err(|e| TargetError::Answer(status, e.to_string()))
    }

    /// Deletes every key that starts with `prefix`.
    pub(crate) async fn delete_prefix(&self, prefix: &str) -> Result<(), TargetError> {
        let body = json!({"key": b64(prefix), "range_end": b64(&prefix_end(prefix))});
        self.call(0, "/v3/kv/deleterange", &body).await.map(drop)
    }

    pub(crate) async fn txn(&self, member: usize, body: &Value) -> Option<bool> {
        txn_succeeded(&self.call(member, "/v3/kv/txn", body).await.ok()?)
    }
}

impl SaleStore for EtcdStore {
    type Buyer = EtcdBuyer;

    fn describe(&self) -> String {
        format!("{} members", self.urls.len())
    }

    /// Seat keys are created by the holds: a seat is free while its key does not exist.
    async fn setup(&self, _seats: u32) -> Result<String, TargetError> {
        self.call(0, "/v3/kv/range", &json!({"key": b64("/"), "count_only": true})).await?;
        Ok(unique_event_id())
    }

    async fn buyer(&self, n: usize) -> Result<EtcdBuyer, TargetError> {
        Ok(EtcdBuyer { n })
    }

    async fn hold(&self, buyer: &mut EtcdBuyer, event: &str, seats: &[String]) -> HoldOutcome {
        let hold_id = format!("h{}", self.next_hold.fetch_add(1, Ordering::Relaxed));
        match self.txn(buyer.n, &hold_txn(event, seats, &hold_id)).await {
            Some(true) => HoldOutcome::Held(hold_id),
            Some(false) => HoldOutcome::Conflict,
            None => HoldOutcome::Error,
        }
    }

    async fn checkout(&self, buyer: &mut EtcdBuyer, event: &str, hold_id: &str, seats: &[String]) -> bool {
        self.txn(buyer.n, &checkout_txn(event, seats, hold_id)).await == Some(true)
    }

    async fn taken(&self, event: &str) -> Result<usize, TargetError> {
        let (key, end) = seat_range(event);
        let body = json!({"key": b64(&key), "range_end": b64(&end), "count_only": true});
        let answer = self.call(0, "/v3/kv/range", &body).await?;
        range_count(&answer).ok_or_else(|| TargetError::Scenario(format!("etcd: unexpected range answer {answer}")))
    }

    async fn teardown(&self, event: &str) -> Result<(), TargetError> {
        for space in ["/seats/", "/holds/", "/orders/"] {
            self.delete_prefix(&format!("{space}{event}/")).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A base64 field of a request, as text.
    pub(crate) fn decode(v: &Value) -> String {
        String::from_utf8(BASE64.decode(v.as_str().unwrap_or_default()).unwrap_or_default()).unwrap_or_default()
    }

    #[test]
    fn keys_and_values_are_base64() {
        assert_eq!(b64("/seats/e1/MAIN-R0-1"), "L3NlYXRzL2UxL01BSU4tUjAtMQ==");
        assert_eq!(seat_range("e1"), ("/seats/e1/".to_owned(), "/seats/e10".to_owned()));
    }

    #[test]
    fn a_hold_puts_every_seat_only_if_none_exists() {
        let seats = vec!["MAIN-R0-1".to_owned(), "MAIN-R0-2".to_owned()];
        let txn = hold_txn("e1", &seats, "h7");
        let compare = txn["compare"].as_array().map(Vec::len);
        assert_eq!(compare, Some(2));
        assert_eq!(txn["compare"][1]["target"], "VERSION");
        assert_eq!(txn["compare"][1]["version"], "0");
        assert_eq!(decode(&txn["compare"][1]["key"]), "/seats/e1/MAIN-R0-2");
        assert_eq!(txn["success"].as_array().map(Vec::len), Some(3), "two seats and the hold record");
        assert_eq!(decode(&txn["success"][0]["request_put"]["value"]), "held:h7");
        assert_eq!(decode(&txn["success"][2]["request_put"]["key"]), "/holds/e1/h7");
        assert_eq!(txn["failure"], json!([]));
    }

    #[test]
    fn a_checkout_sells_only_seats_still_held_by_its_hold() {
        let seats = vec!["MAIN-R3-9".to_owned()];
        let txn = checkout_txn("e1", &seats, "h7");
        assert_eq!(txn["compare"][0]["target"], "VALUE");
        assert_eq!(decode(&txn["compare"][0]["value"]), "held:h7");
        assert_eq!(decode(&txn["success"][0]["request_put"]["value"]), "sold:o-h7");
        assert_eq!(decode(&txn["success"][1]["request_put"]["key"]), "/orders/e1/o-h7");
    }

    #[test]
    fn answers_are_classified_with_proto3_defaults_left_out() {
        let header = json!({"revision": "2"});
        assert_eq!(txn_succeeded(&json!({"header": header, "succeeded": true})), Some(true));
        assert_eq!(txn_succeeded(&json!({"header": header})), Some(false));
        assert_eq!(txn_succeeded(&json!({"error": "etcdserver: too many operations", "code": 3})), None);
        assert_eq!(range_count(&json!({"header": header, "count": "42"})), Some(42));
        assert_eq!(range_count(&json!({"header": header})), Some(0));
        assert_eq!(range_count(&json!({"code": 14})), None);
    }
}
