//! Signed tickets through the real binary: codes a scanner verifies offline, admission once (also
//! across a crash), transfers that replace the code, and the limits around them.

#![allow(clippy::unwrap_used)]

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::Server;
use ed25519_dalek::{Signature, VerifyingKey};
use serde_json::{json, Value};

/// Holds the seats for `user` and pays with the sandbox: the order's tickets.
async fn buy(server: &Server, token: &str, event: &str, seats: &[&str]) -> Value {
    let path = format!("/v1/events/{event}/holds");
    let (status, hold) = server.call("POST", &path, Some(token), Some(json!({"seats": seats})), None).await;
    assert_eq!(status, 201, "{hold}");
    let path = format!("/v1/holds/{}/checkout", hold["hold_id"].as_str().unwrap());
    let (status, order) =
        server.call("POST", &path, Some(token), Some(json!({"payment_method": "sandbox_ok"})), None).await;
    assert_eq!(status, 201, "{order}");
    assert_eq!(order["status"], "confirmed");
    order
}

async fn my_tickets(server: &Server, token: &str) -> Vec<Value> {
    let (status, page) = server.get("/v1/me/tickets", Some(token)).await;
    assert_eq!(status, 200, "{page}");
    page["items"].as_array().unwrap().clone()
}

/// What a scanner without a network does: checks the signature with the event's public key, and
/// reads the claims.
fn verify_offline(public_key: &str, code: &str) -> Option<Value> {
    let key: [u8; 32] = URL_SAFE_NO_PAD.decode(public_key).ok()?.try_into().ok()?;
    let key = VerifyingKey::from_bytes(&key).ok()?;
    let (signed, signature) = code.rsplit_once('.')?;
    let signature: [u8; 64] = URL_SAFE_NO_PAD.decode(signature).ok()?.try_into().ok()?;
    key.verify_strict(signed.as_bytes(), &Signature::from_bytes(&signature)).ok()?;
    let payload = signed.strip_prefix("BX1.")?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
}

async fn check_in(server: &Server, scanner: &str, code: &str) -> (u16, Value) {
    server.call("POST", "/v1/checkin", Some(scanner), Some(json!({"code": code})), None).await
}

#[tokio::test]
async fn codes_verify_offline_admit_once_and_a_transfer_replaces_them() {
    let mut server = Server::start(&[]).await;
    let admin = server.token("admin", "admin").await;
    let event = server.create_event(&admin, 1, 10, 10, json!({"per_user_limit": 2})).await;
    let (alice, bob, carol) =
        (server.token("alice", "user").await, server.token("bob", "user").await, server.token("carol", "user").await);
    let scanner = server.token("door-1", "scanner").await;
    let order = buy(&server, &alice, &event, &["FLOOR-A-1", "FLOOR-A-2"]).await;
    // An order lists its tickets without codes: a ticket may since belong to someone else.
    assert!(order["tickets"].as_array().unwrap().iter().all(|t| t.get("code").is_none()), "{order}");

    // The holder's tickets carry a code and its QR image; the code verifies with the published key.
    let tickets = my_tickets(&server, &alice).await;
    assert_eq!(tickets.len(), 2, "{tickets:?}");
    let (status, key) = server.get(&format!("/v1/events/{event}/checkin-key"), None).await;
    assert_eq!(status, 200, "{key}");
    assert_eq!(key["algorithm"], "Ed25519");
    let public_key = key["public_key"].as_str().unwrap();
    let first = tickets.iter().find(|t| t["seat"] == "FLOOR-A-1").unwrap().clone();
    let second = tickets.iter().find(|t| t["seat"] == "FLOOR-A-2").unwrap().clone();
    let code = first["code"].as_str().unwrap();
    let claims = verify_offline(public_key, code).expect("the code verifies offline");
    assert_eq!(
        (claims["t"].as_str(), claims["h"].as_str(), claims["v"].as_u64()),
        (first["ticket_id"].as_str(), Some("alice"), Some(0))
    );
    let qr = first["qr_svg"].as_str().unwrap();
    assert!(qr.contains("<svg") && qr.contains("<title>"), "{qr}");
    // Another event's key does not verify it; an unknown event has no key.
    let other = server.create_event(&admin, 1, 1, 1, json!({})).await;
    let (_, other_key) = server.get(&format!("/v1/events/{other}/checkin-key"), None).await;
    assert!(verify_offline(other_key["public_key"].as_str().unwrap(), code).is_none());
    let (status, _) = server.get("/v1/events/ev0000000000000001/checkin-key", None).await;
    assert_eq!(status, 404);

    // Only a scanner (or an admin) checks in; a forged code is refused and admits nothing.
    let (status, body) = check_in(&server, &alice, code).await;
    assert_eq!(status, 403, "{body}");
    let mut forged = code.to_owned();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let (status, body) = check_in(&server, &scanner, &forged).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_ticket_code")), "{body}");
    let (status, body) = check_in(&server, &scanner, "not a code").await;
    assert_eq!(status, 400, "{body}");

    // Admitted once; the second scan answers the first admission's time.
    let (status, admitted) = check_in(&server, &scanner, code).await;
    assert_eq!(status, 200, "{admitted}");
    assert_eq!(admitted["ticket"]["status"], "checked_in");
    let (status, again) = check_in(&server, &scanner, code).await;
    assert_eq!((status, again["code"].as_str()), (409, Some("already_checked_in")), "{again}");
    assert_eq!(again["admitted_at"], admitted["admitted_at"]);

    // Transfer the second ticket to bob: a new code; alice's old one no longer opens the door.
    let path = format!("/v1/tickets/{}/transfer", second["ticket_id"].as_str().unwrap());
    let (status, given) = server.call("POST", &path, Some(&alice), Some(json!({"to_user": "bob"})), None).await;
    assert_eq!(status, 200, "{given}");
    assert_eq!(given["user_id"], "bob");
    let new_code = given["code"].as_str().unwrap();
    assert_ne!(new_code, second["code"].as_str().unwrap());
    assert_eq!(verify_offline(public_key, new_code).unwrap()["v"], 1);
    let bobs = my_tickets(&server, &bob).await;
    assert_eq!(bobs.len(), 1);
    assert_eq!(bobs[0]["code"].as_str(), Some(new_code));
    assert_eq!(my_tickets(&server, &alice).await.len(), 1, "alice keeps the admitted one only");
    // The giver cannot give it again, nor cancel the order it came from.
    let (status, body) = server.call("POST", &path, Some(&alice), Some(json!({"to_user": "carol"})), None).await;
    assert_eq!(status, 404, "{body}");
    let cancel = format!("/v1/orders/{}/cancel", order["order_id"].as_str().unwrap());
    let (status, body) = server.call("POST", &cancel, Some(&alice), None, None).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("order_not_cancellable")), "{body}");
    // The receiver's per-user limit counts what they were given.
    buy(&server, &carol, &event, &["FLOOR-A-5", "FLOOR-A-6"]).await;
    let (status, body) = server.call("POST", &path, Some(&bob), Some(json!({"to_user": "carol"})), None).await;
    assert_eq!((status, body["code"].as_str()), (422, Some("limit_exceeded")), "{body}");
    // A checked-in ticket stays where it is; a bad receiver is a 400.
    let first_path = format!("/v1/tickets/{}/transfer", first["ticket_id"].as_str().unwrap());
    let (status, body) = server.call("POST", &first_path, Some(&alice), Some(json!({"to_user": "bob"})), None).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("ticket_checked_in")), "{body}");
    let (status, _) = server.call("POST", &first_path, Some(&alice), Some(json!({"to_user": ""})), None).await;
    assert_eq!(status, 400);

    let (status, body) = check_in(&server, &scanner, second["code"].as_str().unwrap()).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_ticket_code")), "{body}");

    // After a crash: the admission holds, and codes issued before still verify and admit.
    server.crash_and_restart().await;
    let (status, body) = check_in(&server, &scanner, code).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("already_checked_in")), "{body}");
    let (status, body) = check_in(&server, &scanner, new_code).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ticket"]["user_id"], "bob");
}
