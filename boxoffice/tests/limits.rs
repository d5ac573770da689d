//! Abuse limits through the real binary: a tiny per-user rate, and the hold/release churn budget.

mod common;

use common::{assert_problem, Server};
use serde_json::json;

#[tokio::test]
async fn a_user_over_a_tiny_rate_gets_429_with_retry_after() {
    let server = Server::start(&["--rate-limit-user-per-s", "1", "--rate-limit-user-burst", "2"]).await;
    let alice = server.token("alice", "user").await;
    let url = format!("{}/v1/me/orders", server.url);
    let mut refused = None;
    for _ in 0..5 {
        let resp = server.http.get(&url).bearer_auth(&alice).send().await.unwrap();
        if resp.status() == 429 {
            refused = Some(resp);
            break;
        }
        assert_eq!(resp.status(), 200);
    }
    let refused = refused.expect("the third request in a second is refused");
    let retry_after: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry_after >= 1);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_problem(429, &body, 429, "rate_limited");
    // Another user is not affected.
    let bob = server.token("bob", "user").await;
    assert_eq!(server.get("/v1/me/orders", Some(&bob)).await.0, 200);
}

#[tokio::test]
async fn releasing_holds_over_and_over_pauses_a_users_new_holds() {
    let server = Server::start(&["--churn-releases-max", "2", "--churn-window", "10m"]).await;
    let admin = server.token("ops", "admin").await;
    let churner = server.token("churner", "user").await;
    let event = server.create_event(&admin, 1, 4, 10, json!({})).await;
    let path = format!("/v1/events/{event}/holds");
    for _ in 0..2 {
        let (status, hold) =
            server.call("POST", &path, Some(&churner), Some(json!({"seats": ["FLOOR-A-1"]})), None).await;
        assert_eq!(status, 201, "{hold}");
        let hold_id = hold["hold_id"].as_str().unwrap();
        assert_eq!(server.call("DELETE", &format!("/v1/holds/{hold_id}"), Some(&churner), None, None).await.0, 204);
    }
    let resp = server
        .http
        .post(format!("{}{path}", server.url))
        .bearer_auth(&churner)
        .json(&json!({"seats": ["FLOOR-A-1"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    let retry_after: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert_eq!(retry_after, 300, "one release's worth refills in 10 min / 2");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_problem(429, &body, 429, "rate_limited");
    let other = server.token("other", "user").await;
    assert_eq!(server.call("POST", &path, Some(&other), Some(json!({"seats": ["FLOOR-A-1"]})), None).await.0, 201);
}
