use std::time::Duration;

use axum::body::{Body, BodyDataStream};
use axum::http::{header, Request, StatusCode};
use futures_util::StreamExt;
use serde_json::{json, Value};

use super::{Reply, TestApp};
use crate::config::{LimitsConfig, StreamsConfig};

/// How long a test waits for the next stream event before it fails.
const FRAME_WAIT: Duration = Duration::from_secs(10);

/// Reads server-sent events from a response body, skipping keep-alive comments.
struct SseReader {
    body: BodyDataStream,
    buffer: String,
}

#[derive(Debug)]
struct Frame {
    event: String,
    id: Option<String>,
    data: Value,
}

/// Who opens a stream: the connection's address and a bearer token, when given.
#[derive(Clone, Copy, Default)]
struct Origin<'a> {
    address: Option<&'a str>,
    token: Option<&'a str>,
}

impl SseReader {
    async fn open(app: &TestApp, event_id: &str, last_event_id: Option<&str>) -> SseReader {
        let response = SseReader::request(app, event_id, last_event_id, Origin::default()).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "text/event-stream");
        SseReader { body: response.into_body().into_data_stream(), buffer: String::new() }
    }

    async fn request(
        app: &TestApp,
        event_id: &str,
        last_event_id: Option<&str>,
        from: Origin<'_>,
    ) -> axum::response::Response {
        let mut request = Request::get(format!("/v1/events/{event_id}/seats/stream"));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        if let Some(token) = from.token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let mut request = request.body(Body::empty()).unwrap();
        if let Some(address) = from.address {
            let address: std::net::SocketAddr = address.parse().unwrap();
            request.extensions_mut().insert(axum::extract::ConnectInfo(address));
        }
        app.raw(request).await
    }

    async fn next(&mut self) -> Frame {
        tokio::time::timeout(FRAME_WAIT, self.read_frame()).await.expect("a stream event within the deadline")
    }

    async fn read_frame(&mut self) -> Frame {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(frame) = parse(&block) {
                    return frame;
                }
                continue;
            }
            let chunk = self.body.next().await.expect("the stream stays open").unwrap();
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

fn parse(block: &str) -> Option<Frame> {
    let (mut event, mut id, mut data) = (None, None, String::new());
    for line in block.lines() {
        if let Some(v) = line.strip_prefix("event: ") {
            event = Some(v.to_owned());
        } else if let Some(v) = line.strip_prefix("id: ") {
            id = Some(v.to_owned());
        } else if let Some(v) = line.strip_prefix("data: ") {
            data.push_str(v);
        }
    }
    Some(Frame { event: event?, id, data: serde_json::from_str(&data).unwrap() })
}

#[tokio::test]
async fn the_seat_stream_starts_with_a_snapshot_then_sends_each_change() {
    let app = TestApp::new();
    let event_id = app.event_id(json!({})).await;
    let mut stream = SseReader::open(&app, &event_id, None).await;
    let snapshot = stream.next().await;
    assert_eq!(snapshot.event, "snapshot");
    let seat_map = app.get(&format!("/v1/events/{event_id}/seats"), None).await.json();
    assert_eq!(snapshot.data["seats"], seat_map["seats"]);
    assert_eq!(snapshot.id, Some(snapshot.data["as_of_index"].to_string()));

    let user = app.user("u1");
    let hold = app.hold(&event_id, &user, json!({ "seats": ["FLOOR-A-1", "FLOOR-A-2"] })).await.json();
    let change = stream.next().await;
    assert_eq!(change.event, "change");
    let index = change.data["index"].as_u64().unwrap();
    assert_eq!(change.id, Some(index.to_string()));
    assert_eq!(
        change.data["seats"],
        json!([{ "id": "FLOOR-A-1", "status": "held" }, { "id": "FLOOR-A-2", "status": "held" }])
    );

    app.hold(&event_id, &user, json!({ "section": "LAWN", "quantity": 2 })).await.ok(StatusCode::CREATED);
    let change = stream.next().await;
    assert_eq!(change.data["general"], json!({ "section": "LAWN", "available": 3, "held": 2, "sold": 0 }));
    assert!(change.data["index"].as_u64().unwrap() > index);

    app.delete(&format!("/v1/holds/{}", hold["hold_id"].as_str().unwrap()), Some(&user)).await;
    let change = stream.next().await;
    assert_eq!(change.data["seats"][0], json!({ "id": "FLOOR-A-1", "status": "available" }));

    let patch = json!({ "name": "Renamed" });
    app.call(axum::http::Method::PATCH, &format!("/v1/events/{event_id}"), Some(&app.admin()), Some(&patch)).await;
    assert_eq!(stream.next().await.data["event"], "updated");
}

#[tokio::test]
async fn the_seat_stream_skips_other_events_and_resumes_after_last_event_id() {
    let app = TestApp::new();
    let event_id = app.event_id(json!({})).await;
    let user = app.user("u1");
    app.hold(&event_id, &user, json!({ "seats": ["FLOOR-A-1"] })).await.ok(StatusCode::CREATED);
    let mut first = SseReader::open(&app, &event_id, None).await;
    let resume_at = first.next().await.id.unwrap();
    app.hold(&event_id, &user, json!({ "seats": ["FLOOR-A-3"] })).await.ok(StatusCode::CREATED);

    let mut resumed = SseReader::open(&app, &event_id, Some(&resume_at)).await;
    let frame = resumed.next().await;
    assert_eq!(frame.event, "change", "a resumed stream sends no snapshot");
    assert_eq!(frame.data["seats"], json!([{ "id": "FLOOR-A-3", "status": "held" }]));
}

#[tokio::test]
async fn a_seat_stream_behind_the_feed_gets_a_fresh_snapshot() {
    let app = TestApp::new();
    let event_id = app.event_id(json!({})).await;
    let mut stream = SseReader::open(&app, &event_id, None).await;
    assert_eq!(stream.next().await.event, "snapshot");
    // The stream reads the feed only when polled: the hold's record is gone before it asks.
    app.hold(&event_id, &app.user("u1"), json!({ "seats": ["FLOOR-B-2"] })).await.ok(StatusCode::CREATED);
    app.cluster.drop_records();
    let frame = stream.next().await;
    assert_eq!(frame.event, "snapshot");
    let seat = frame.data["seats"].as_array().unwrap().iter().find(|s| s["id"] == "FLOOR-B-2").unwrap().clone();
    assert_eq!(seat["status"], "held");
}

#[tokio::test]
async fn many_streams_of_an_event_share_one_map_read_and_one_feed() {
    const STREAMS: usize = 20;
    const HOLDS: usize = 3;
    let app = TestApp::with(|c| c.limits = LimitsConfig::off());
    let event_id = app.event_id(json!({})).await;
    let shard = app.state.shard_of(&raft_store::EventId::parse(&event_id).unwrap());
    let reads_before = app.cluster.browsing_reads();
    let mut streams = Vec::new();
    for _ in 0..STREAMS {
        let mut stream = SseReader::open(&app, &event_id, None).await;
        assert_eq!(stream.next().await.event, "snapshot");
        streams.push(stream);
    }
    assert_eq!(app.cluster.browsing_reads() - reads_before, 1, "every stream starts from the cached map");
    assert_eq!(app.state.seat_feeds().followed_shards(), 1);

    let feed_reads_before = app.cluster.feed_reads(shard).len();
    let user = app.user("u1");
    for seat in 1..=HOLDS {
        app.hold(&event_id, &user, json!({ "seats": [format!("FLOOR-A-{seat}")] })).await.ok(StatusCode::CREATED);
        for stream in &mut streams {
            let change = stream.next().await;
            assert_eq!(change.data["seats"][0]["id"], format!("FLOOR-A-{seat}"));
        }
    }
    let feed_reads = app.cluster.feed_reads(shard).len() - feed_reads_before;
    assert!(feed_reads <= 2 * HOLDS + 2, "{feed_reads} feed reads for {HOLDS} changes and {STREAMS} streams");
}

#[tokio::test]
async fn a_client_over_its_stream_cap_gets_429_and_a_full_instance_503() {
    let app = TestApp::with(|c| c.streams = StreamsConfig { max: 4, per_address_max: 2, per_user_max: 1 });
    let event_id = app.event_id(json!({})).await;
    let alice = app.user("alice");
    let from = |address, token| Origin { address: Some(address), token };
    let first = SseReader::request(&app, &event_id, None, from("10.0.0.1:5000", None)).await;
    let second = SseReader::request(&app, &event_id, None, from("10.0.0.1:5001", Some(&alice))).await;
    assert_eq!((first.status(), second.status()), (StatusCode::OK, StatusCode::OK));
    let refused = send(SseReader::request(&app, &event_id, None, from("10.0.0.1:5002", None)).await).await;
    let problem = refused.problem(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert!(problem["detail"].as_str().unwrap().contains("address"), "{problem}");
    assert!(refused.headers.contains_key(header::RETRY_AFTER));
    let refused = send(SseReader::request(&app, &event_id, None, from("10.0.0.2:5000", Some(&alice))).await).await;
    assert!(refused.problem(StatusCode::TOO_MANY_REQUESTS, "rate_limited")["detail"]
        .as_str()
        .unwrap()
        .contains("user"));

    let third = SseReader::request(&app, &event_id, None, from("10.0.0.2:5001", None)).await;
    let fourth = SseReader::request(&app, &event_id, None, Origin::default()).await;
    assert_eq!((third.status(), fourth.status()), (StatusCode::OK, StatusCode::OK));
    let full = send(SseReader::request(&app, &event_id, None, from("10.0.0.3:5000", None)).await).await;
    full.problem(StatusCode::SERVICE_UNAVAILABLE, "unavailable");

    drop(first); // the client goes: its places are free again
    let again = SseReader::request(&app, &event_id, None, from("10.0.0.1:5003", None)).await;
    assert_eq!(again.status(), StatusCode::OK);
}

async fn send(response: axum::response::Response) -> Reply {
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    Reply { status: parts.status, headers: parts.headers, body }
}

#[tokio::test]
async fn a_stream_that_falls_behind_gets_a_fresh_snapshot_instead_of_a_backlog() {
    let app = TestApp::new();
    let event_id = app.event_id(json!({})).await;
    let mut stream = SseReader::open(&app, &event_id, None).await;
    assert_eq!(stream.next().await.event, "snapshot");
    let user = app.user("u1");
    app.hold(&event_id, &user, json!({ "seats": ["FLOOR-B-7"] })).await.ok(StatusCode::CREATED);
    // Far more changes than the event's channel holds, while the client reads nothing.
    let admin = app.admin();
    for n in 0..300 {
        let patch = json!({ "name": format!("Renamed {n}") });
        app.call(axum::http::Method::PATCH, &format!("/v1/events/{event_id}"), Some(&admin), Some(&patch)).await;
        tokio::task::yield_now().await; // lets the follower publish as the changes come
    }
    let frame = stream.next().await;
    assert_eq!(frame.event, "snapshot", "a lagging stream starts again from a snapshot");
    let seat = frame.data["seats"].as_array().unwrap().iter().find(|s| s["id"] == "FLOOR-B-7").unwrap().clone();
    assert_eq!(seat["status"], "held");
}

#[tokio::test]
async fn a_shard_is_followed_only_while_it_has_streams() {
    let app = TestApp::new();
    let event_id = app.event_id(json!({})).await;
    let mut stream = SseReader::open(&app, &event_id, None).await;
    assert_eq!(stream.next().await.event, "snapshot");
    assert_eq!(app.state.seat_feeds().followed_shards(), 1);
    drop(stream);
    // The follower notices at its next page: a change wakes it.
    app.hold(&event_id, &app.user("u1"), json!({ "seats": ["FLOOR-A-9"] })).await.ok(StatusCode::CREATED);
    let deadline = tokio::time::Instant::now() + FRAME_WAIT;
    while app.state.seat_feeds().followed_shards() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "the follower of a shard without streams stops");
        tokio::task::yield_now().await;
    }
}
