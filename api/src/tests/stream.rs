use std::time::Duration;

use axum::body::{Body, BodyDataStream};
use axum::http::{header, Request, StatusCode};
use futures_util::StreamExt;
use serde_json::{json, Value};

use super::TestApp;

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

impl SseReader {
    async fn open(app: &TestApp, event_id: &str, last_event_id: Option<&str>) -> SseReader {
        let mut request = Request::get(format!("/v1/events/{event_id}/seats/stream"));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = app.raw(request.body(Body::empty()).unwrap()).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "text/event-stream");
        SseReader { body: response.into_body().into_data_stream(), buffer: String::new() }
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
