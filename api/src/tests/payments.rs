//! Payments: a gateway that records what it was asked, and the checkout paths around it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use axum::http::StatusCode;
use raft_store::{Command, OrderStatus, Outcome, UserId};
use serde_json::json;

use super::TestApp;
use crate::identity;
use crate::routes::booking::pay;
use crate::{Charge, Charged, PaymentError, PaymentGateway, Refund, SandboxPayments};
use seams::BoxFuture;

/// The sandbox, recording every charge and refund; it can be made to fail the next charge.
#[derive(Default)]
pub(crate) struct RecordingPayments {
    charges: Mutex<Vec<Charge>>,
    refunds: Mutex<Vec<Refund>>,
    fail_next_charge: AtomicBool,
}

impl RecordingPayments {
    pub(crate) fn charges(&self) -> usize {
        self.charges.lock().unwrap().len()
    }

    pub(crate) fn refunds(&self) -> Vec<String> {
        self.refunds.lock().unwrap().iter().map(|r| r.order_id.to_string()).collect()
    }
}

impl PaymentGateway for RecordingPayments {
    fn accepts(&self, method: &str) -> bool {
        SandboxPayments.accepts(method)
    }

    fn charge(&self, charge: Charge) -> BoxFuture<'_, Result<Charged, PaymentError>> {
        if self.fail_next_charge.swap(false, Ordering::SeqCst) {
            return Box::pin(async { Err(PaymentError::Unavailable("provider timed out".into())) });
        }
        self.charges.lock().unwrap().push(charge.clone());
        SandboxPayments.charge(charge)
    }

    fn refund(&self, refund: Refund) -> BoxFuture<'_, Result<String, PaymentError>> {
        self.refunds.lock().unwrap().push(refund.clone());
        SandboxPayments.refund(refund)
    }
}

#[tokio::test]
async fn the_sandbox_approves_ok_declines_decline_and_names_references_by_order() {
    let order_id = raft_store::OrderId { event_id: raft_store::EventId::from_u64(1), seq: 7 };
    let charge = |method: &str| Charge {
        order_id: order_id.clone(),
        amount: raft_store::Money::new(100, raft_store::Currency::USD),
        payment_method: method.into(),
    };
    let ok = SandboxPayments.charge(charge("sandbox_ok")).await.unwrap();
    assert!(ok.approved);
    assert_eq!(ok, SandboxPayments.charge(charge("sandbox_ok")).await.unwrap());
    assert!(!SandboxPayments.charge(charge("sandbox_decline")).await.unwrap().approved);
    assert!(!SandboxPayments.accepts("cash"));
}

#[tokio::test]
async fn a_replayed_checkout_never_charges_twice() {
    let app = TestApp::new();
    let event_id = app.event_id(json!({})).await;
    let user = app.user("u1");
    let hold = app.hold(&event_id, &user, json!({ "seats": ["FLOOR-A-1"] })).await.ok(StatusCode::CREATED);
    let path = format!("/v1/holds/{}/checkout", hold["hold_id"].as_str().unwrap());
    for _ in 0..3 {
        app.post_keyed(&path, &user, "pay-1", r#"{"payment_method": "sandbox_ok"}"#).await.ok(StatusCode::CREATED);
    }
    app.checkout(hold["hold_id"].as_str().unwrap(), &user, "sandbox_ok").await.ok(StatusCode::CREATED);
    assert_eq!(app.payments.charges(), 1);
}

#[tokio::test]
async fn cancelling_refunds_once_the_cancellation_is_recorded() {
    let app = TestApp::new();
    let event_id = app.event_id(json!({})).await;
    let user = app.user("u1");
    let order = app.buy(&event_id, &user, &["FLOOR-A-1"]).await;
    assert!(app.payments.refunds().is_empty());
    let path = format!("/v1/orders/{}/cancel", order["order_id"].as_str().unwrap());
    app.post(&path, Some(&user), &json!({})).await.ok(StatusCode::OK);
    assert_eq!(app.payments.refunds(), [order["order_id"].as_str().unwrap()]);
}

#[tokio::test]
async fn an_unreachable_provider_is_503_and_a_retry_pays_the_same_order() {
    let app = TestApp::new();
    let event_id = app.event_id(json!({})).await;
    let user = app.user("u1");
    let hold = app.hold(&event_id, &user, json!({ "seats": ["FLOOR-A-1"] })).await.ok(StatusCode::CREATED);
    let hold_id = hold["hold_id"].as_str().unwrap();
    app.payments.fail_next_charge.store(true, Ordering::SeqCst);
    let reply = app.checkout(hold_id, &user, "sandbox_ok").await;
    reply.problem(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    assert_eq!(app.seat_status(&event_id, "FLOOR-A-1").await, "held");
    let order = app.checkout(hold_id, &user, "sandbox_ok").await.ok(StatusCode::CREATED);
    assert_eq!(order["status"], "confirmed");
    assert_eq!(app.payments.charges(), 1);
}

/// Two payment attempts for one order (concurrent checkouts): the first result recorded wins,
/// and an approval that lost is refunded.
#[tokio::test]
async fn two_payment_attempts_record_one_result_and_refund_the_loser() {
    let app = TestApp::new();
    let event_id = app.event_id(json!({})).await;
    let user = UserId::parse("u1").unwrap();
    let hold = app.hold(&event_id, &app.user("u1"), json!({ "seats": ["FLOOR-A-1"] })).await.json();
    let hold_id = raft_store::HoldId::parse(hold["hold_id"].as_str().unwrap()).unwrap();
    let command = Command::Checkout { hold_id, user: user.clone() };
    let Outcome::Order(pending) = app.state.submit(command, identity::request_id(&user, None), 0).await.unwrap() else {
        panic!("checkout gives an order");
    };
    assert_eq!(pending.status, OrderStatus::PendingPayment);

    let declined = pay(&app.state, &pending, "sandbox_decline").await.unwrap();
    let approved_late = pay(&app.state, &pending, "sandbox_ok").await.unwrap();
    assert_eq!(declined.status, OrderStatus::PaymentFailed);
    assert_eq!(approved_late, declined, "the first recorded result stands");
    assert_eq!(app.payments.refunds(), [pending.order_id.to_string()]);
    assert_eq!(app.seat_status(&event_id, "FLOOR-A-1").await, "available");
}

#[tokio::test]
async fn an_approval_after_the_payment_deadline_is_refunded() {
    let app = TestApp::new();
    let event_id = app.event_id(json!({})).await;
    let user = UserId::parse("u1").unwrap();
    let hold = app.hold(&event_id, &app.user("u1"), json!({ "seats": ["FLOOR-A-1"] })).await.json();
    let hold_id = raft_store::HoldId::parse(hold["hold_id"].as_str().unwrap()).unwrap();
    let command = Command::Checkout { hold_id, user: user.clone() };
    let Outcome::Order(pending) = app.state.submit(command, identity::request_id(&user, None), 0).await.unwrap() else {
        panic!("checkout gives an order");
    };
    app.cluster.advance(std::time::Duration::from_millis(raft_store::PAYMENT_TIMEOUT_MS as u64 + 1));
    let recorded = pay(&app.state, &pending, "sandbox_ok").await.unwrap();
    assert_eq!(recorded.status, OrderStatus::PaymentFailed);
    assert_eq!(app.payments.refunds(), [pending.order_id.to_string()]);
}
