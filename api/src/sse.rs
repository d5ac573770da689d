//! The server-sent-events wire format, written by hand so a frame is built once and shared, as
//! `Bytes`, by every stream that sends it (axum's `Sse` renders each event per stream).

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;

/// How soon a disconnected client should reconnect.
pub(crate) const STREAM_RETRY: Duration = Duration::from_secs(2);
/// A comment line: keeps proxies from closing a quiet stream.
pub(crate) const KEEP_ALIVE_FRAME: &[u8] = b":\n\n";

/// One event: `event`, `id` and `retry` lines when given, then `data` (JSON, one line: serde_json
/// writes no newlines).
pub(crate) fn frame(event: &str, id: Option<u64>, retry: Option<Duration>, data: &[u8]) -> Vec<u8> {
    debug_assert!(!data.contains(&b'\n'), "an SSE data line holds no newline");
    let mut out = Vec::with_capacity(data.len() + 64);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(event.as_bytes());
    out.push(b'\n');
    if let Some(id) = id {
        out.extend_from_slice(format!("id: {id}\n").as_bytes());
    }
    if let Some(retry) = retry {
        out.extend_from_slice(format!("retry: {}\n", retry.as_millis()).as_bytes());
    }
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
    out
}

/// A seat map as the stream's first event.
pub(crate) fn snapshot_frame(index: u64, map_json: &[u8]) -> Bytes {
    Bytes::from(frame("snapshot", Some(index), Some(STREAM_RETRY), map_json))
}

/// The 200 answer of a stream of frames.
pub(crate) fn response(frames: impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static) -> Response {
    let mut response = Body::from_stream(frames).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // nginx buffers responses unless told not to; a buffered stream is no stream.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_has_its_fields_then_a_blank_line() {
        let frame = frame("change", Some(7), Some(Duration::from_secs(2)), br#"{"a":1}"#);
        assert_eq!(frame, b"event: change\nid: 7\nretry: 2000\ndata: {\"a\":1}\n\n");
    }
}
