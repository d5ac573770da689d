//! The public edge from a hostile client's side, against the real binary: idle connections,
//! slowloris clients, trickled bodies, oversized bodies, stream caps, the shared seat feed and
//! the internal metrics address.
//!
//! Idle-connection tests open thousands of sockets from loopback addresses other than
//! 127.0.0.1 (Linux routes all of 127.0.0.0/8 to the loopback interface), so the "normal"
//! client on 127.0.0.1 is a different client address. They raise this process's open-files
//! limit to its hard limit first and size themselves to it.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::{assert_problem, eventually, Server};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Idle connections the caps tests open (the figure).
const IDLE_CONNECTIONS: usize = 5_000;
/// Connections opened at once while building the idle crowd. The kernel completes handshakes
/// faster than a debug build accepts them; with too many at once the accept queue overflows,
/// and the kernel drops handshakes that then complete only on retransmission, seconds later.
const CONNECTS_IN_FLIGHT: usize = 64;
/// File descriptors this process keeps for everything else (the server's pipes, reqwest).
const FDS_SPARE: usize = 512;
/// Slack on measured timeouts: a loaded two-core machine answers late, never early.
const TIMING_SLACK: Duration = Duration::from_secs(2);
/// How long a test waits for the server to reach a state it reports in its metrics.
const SETTLE_WAIT: Duration = Duration::from_secs(30);
/// Tries of each oversized-body case: every one must get a readable answer.
const OVERSIZED_TRIES: usize = 20;

/// Held by the tests that open thousands of sockets, so that together they stay within the
/// open-files limit each sizes itself to.
static FD_HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn server_addr(server: &Server) -> SocketAddr {
    server.url.trim_start_matches("http://").parse().expect("the server's address")
}

/// Raises this process's open-files limit to the hard limit; returns the limit in force.
fn raise_fd_limit() -> usize {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    let _ = setrlimit(Resource::Nofile, Rlimit { current: limit.maximum, maximum: limit.maximum });
    getrlimit(Resource::Nofile).current.map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX))
}

/// `n` TCP connections to `to` from `from` (port chosen by the kernel) that send nothing.
async fn open_idle(to: SocketAddr, from: IpAddr, n: usize) -> Vec<TcpStream> {
    let mut open = Vec::with_capacity(n);
    while open.len() < n {
        let mut batch = tokio::task::JoinSet::new();
        for _ in 0..CONNECTS_IN_FLIGHT.min(n - open.len()) {
            batch.spawn(async move {
                let socket = TcpSocket::new_v4().expect("socket");
                socket.bind(SocketAddr::new(from, 0)).expect("bind a loopback source address");
                socket.connect(to).await.expect("connect")
            });
        }
        while let Some(stream) = batch.join_next().await {
            open.push(stream.expect("connect task"));
        }
    }
    open
}

/// The sum of a metric's samples whose labels contain `labels` (all of them, with `None`).
fn metric(text: &str, name: &str, labels: Option<&str>) -> f64 {
    text.lines()
        .filter(|line| {
            line.strip_prefix(name).is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
                && labels.is_none_or(|l| line.contains(l))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn metrics_text(url: &str) -> String {
    let resp = common::client().get(format!("{url}/metrics")).send().await.expect("metrics answer");
    assert_eq!(resp.status(), 200);
    resp.text().await.expect("metrics text")
}

/// Waits until the server's metrics satisfy `check`; returns them.
async fn metrics_until(url: &str, what: &str, check: impl Fn(&str) -> bool) -> String {
    eventually(SETTLE_WAIT, what, || async {
        let text = metrics_text(url).await;
        check(&text).then_some(text)
    })
    .await
}

/// A normal request on a new connection from 127.0.0.1 is answered at once.
async fn healthz_answers(server: &Server) {
    let started = Instant::now();
    let fresh = common::client(); // not the pool's connection, opened before the crowd
    let resp = fresh.get(format!("{}/healthz", server.url)).send().await.expect("a normal request is answered");
    assert_eq!(resp.status(), 200);
    assert!(started.elapsed() < TIMING_SLACK, "answered in {:?}", started.elapsed());
}

#[tokio::test]
async fn thousands_of_idle_connections_do_not_stop_a_normal_request() {
    let _fds = FD_HEAVY.lock().await;
    let fds = raise_fd_limit();
    let spread = IDLE_CONNECTIONS.min(fds.saturating_sub(FDS_SPARE) / 2);
    let one_address = (IDLE_CONNECTIONS / 2).min(fds.saturating_sub(FDS_SPARE + spread));
    assert!(spread >= 1_000 && one_address > 1_024, "open-files limit {fds} is too low for this test");
    // Headers are never due during the test: the caps, not the timeouts, are what it shows.
    let server = Server::start(&["--header-timeout", "10m", "--idle-timeout", "10m"]).await;
    let addr = server_addr(&server);

    // Spread over five client addresses, under every cap: all are accepted and kept.
    let mut crowd = Vec::new();
    for i in 0..5u8 {
        let share = spread / 5 + usize::from(usize::from(i) < spread % 5);
        crowd.extend(open_idle(addr, IpAddr::from([127, 0, 0, 2 + i]), share).await);
    }
    let opened = Instant::now();
    let text =
        metrics_until(&server.url, "the crowd accepted", |t| metric(t, "api_connections_open", None) >= spread as f64)
            .await;
    healthz_answers(&server).await;
    eprintln!(
        "{spread} idle connections from 5 addresses: all open ({}), a normal request answered {:?} later",
        metric(&text, "api_connections_open", None),
        opened.elapsed()
    );

    // From one address, beyond its cap (1,024): the excess is closed at once.
    let crowd_one = open_idle(addr, IpAddr::from([127, 0, 0, 9]), one_address).await;
    let refused = (one_address - api::CONNECTIONS_PER_ADDRESS_MAX_DEFAULT) as f64;
    let text = metrics_until(&server.url, "the excess refused", |t| {
        metric(t, "api_connections_refused_total", Some("limit=\"address\"")) >= refused
    })
    .await;
    healthz_answers(&server).await;
    let open = metric(&text, "api_connections_open", None);
    assert!(open <= (spread + api::CONNECTIONS_PER_ADDRESS_MAX_DEFAULT + 2) as f64, "{open} open");
    eprintln!("{one_address} more from one address: {refused} refused, {open} open; a normal request still answered");
    drop((crowd, crowd_one));
}

#[tokio::test]
async fn at_the_connection_cap_new_connections_are_closed_at_once_until_idle_ones_time_out() {
    const CAP: usize = 1_000;
    const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
    let _fds = FD_HEAVY.lock().await;
    let fds = raise_fd_limit();
    let crowd_size = (CAP + CAP / 2).min(fds.saturating_sub(FDS_SPARE));
    let args = ["--connections-max", "1000", "--connections-per-address-max", "0", "--header-timeout", "5s"];
    let server = Server::start(&args).await;
    let addr = server_addr(&server);
    let started = Instant::now();
    let crowd = open_idle(addr, IpAddr::from([127, 0, 0, 20]), crowd_size).await;
    // The excess is closed without a byte: a read ends at once with EOF or a reset; the
    // accepted ones stay open (their header timeout is seconds away).
    let mut reads = tokio::task::JoinSet::new();
    for mut stream in crowd {
        reads.spawn(async move {
            let mut byte = [0u8; 1];
            let closed = matches!(
                tokio::time::timeout(Duration::from_secs(1), stream.read(&mut byte)).await,
                Ok(Ok(0) | Err(_))
            );
            (closed, stream)
        });
    }
    let mut closed = 0;
    let mut crowd = Vec::new();
    while let Some(read) = reads.join_next().await {
        let (was_closed, stream) = read.expect("read task");
        closed += usize::from(was_closed);
        crowd.push(stream);
    }
    // The test's own pooled connection (opened at start-up) holds a slot or two.
    let excess = crowd_size - CAP;
    assert!(
        (excess..=excess + 4).contains(&closed),
        "{closed} of {crowd_size} closed at once; {excess} beyond the cap"
    );
    // The idle ones are cut at the header timeout, and the cap has room again.
    let answered = eventually(SETTLE_WAIT, "a normal request answered", || async {
        let resp = common::client().get(format!("{}/healthz", server.url)).send().await.ok()?;
        (resp.status() == 200).then(|| started.elapsed())
    })
    .await;
    eprintln!("cap {CAP}, {crowd_size} idle: {closed} closed at once; a new client answered after {answered:?}");
    assert!(answered <= HEADER_TIMEOUT + TIMING_SLACK * 2, "answered after {answered:?}");
    drop(crowd);
}

/// Reads until the peer closes (EOF or reset) or `limit` passes; returns what was read and
/// whether the peer closed.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf = [0u8; 64 << 10];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (got, true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (got, false),
        }
    }
}

#[tokio::test]
async fn a_slowloris_client_is_cut_off_within_the_header_timeout() {
    const HEADER_TIMEOUT: Duration = Duration::from_secs(3);
    let server = Server::start(&["--header-timeout", "3s"]).await;
    let addr = server_addr(&server);

    // Headers trickled one byte a second.
    let (mut reader, mut writer) = TcpStream::connect(addr).await.expect("connect").into_split();
    let started = Instant::now();
    let trickle = tokio::spawn(async move {
        let head = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        for byte in head {
            if writer.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await; // the attack's pace
        }
    });
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let closed = loop {
        match tokio::time::timeout(HEADER_TIMEOUT + TIMING_SLACK * 3, reader.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    let lasted = started.elapsed();
    trickle.abort();
    assert!(closed, "the slowloris connection is still open after {lasted:?}");
    assert!(got.is_empty(), "a trickled head is never answered: {}", String::from_utf8_lossy(&got));
    assert!(lasted >= HEADER_TIMEOUT - Duration::from_millis(100), "cut after {lasted:?}, before the header timeout");
    assert!(lasted <= HEADER_TIMEOUT + TIMING_SLACK, "cut after {lasted:?}");
    eprintln!("slowloris (one header byte a second) cut off after {lasted:?} ({} bytes sent)", lasted.as_secs() + 1);

    // A connection that sends nothing at all is cut the same way.
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    let started = Instant::now();
    let (got, closed) = read_until_closed(&mut silent, HEADER_TIMEOUT + TIMING_SLACK * 3).await;
    assert!(closed && got.is_empty());
    assert!(started.elapsed() <= HEADER_TIMEOUT + TIMING_SLACK, "silent connection cut after {:?}", started.elapsed());
    healthz_answers(&server).await;
}

/// Sends one request on a fresh connection and reads the answer up to the end of its body
/// (by `Content-Length`); returns the connection, the head and the body.
async fn exchange(addr: SocketAddr, request: &[u8]) -> (TcpStream, String, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("request written");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).into_owned();
            let length = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                let body = got[end + 4..end + 4 + length].to_vec();
                return (stream, head, body);
            }
        }
        let n = tokio::time::timeout(SETTLE_WAIT, stream.read(&mut buf)).await.expect("an answer").expect("read");
        assert!(n > 0, "closed before the answer ended: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_after_the_idle_timeout_not_the_header_timeout() {
    const IDLE_TIMEOUT: Duration = Duration::from_secs(5);
    let server = Server::start(&["--header-timeout", "2s", "--idle-timeout", "5s"]).await;
    let (mut stream, head, _) = exchange(server_addr(&server), b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let idle_from = Instant::now();
    let (got, closed) = read_until_closed(&mut stream, IDLE_TIMEOUT + TIMING_SLACK * 3).await;
    let lasted = idle_from.elapsed();
    assert!(closed && got.is_empty(), "closed: {closed}, got {}", String::from_utf8_lossy(&got));
    assert!(
        lasted >= IDLE_TIMEOUT - Duration::from_millis(100),
        "closed after {lasted:?}: that is not the idle timeout"
    );
    assert!(lasted <= IDLE_TIMEOUT + TIMING_SLACK, "closed after {lasted:?}");
    eprintln!("an idle keep-alive connection closed after {lasted:?}");
}

#[tokio::test]
async fn a_trickled_body_gets_408_within_the_request_timeout() {
    const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
    let server = Server::start(&["--request-timeout", "3s"]).await;
    let admin = server.token("ops", "admin").await;
    let mut stream = TcpStream::connect(server_addr(&server)).await.expect("connect");
    let head = format!(
        "POST /v1/venues HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    let started = Instant::now();
    let (mut reader, mut writer) = stream.into_split();
    let trickle = tokio::spawn(async move {
        for _ in 0..100 {
            if writer.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await; // the attack's pace
        }
    });
    let mut got = Vec::new();
    let _ = tokio::time::timeout(REQUEST_TIMEOUT + TIMING_SLACK * 3, reader.read_to_end(&mut got)).await;
    let lasted = started.elapsed();
    trickle.abort();
    let text = String::from_utf8_lossy(&got).to_lowercase();
    assert!(text.starts_with("http/1.1 408"), "{text}");
    assert!(text.contains("connection: close") && text.contains("application/problem+json"), "{text}");
    assert!(lasted <= REQUEST_TIMEOUT + TIMING_SLACK, "answered after {lasted:?}");
    eprintln!("a body trickled at 2 bytes/s answered 408 after {lasted:?}");
}

/// Whether a raw answer is a readable 413 problem document that closes the connection.
fn assert_readable_413(raw: &[u8], what: &str) {
    let text = String::from_utf8_lossy(raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else { panic!("{what}: no answer, got {text:?}") };
    let head = head.to_lowercase();
    assert!(head.starts_with("http/1.1 413"), "{what}: {head}");
    assert!(head.contains("content-type: application/problem+json"), "{what}: {head}");
    assert!(head.contains("connection: close"), "{what}: {head}");
    let problem: Value = serde_json::from_str(body.trim()).unwrap_or_else(|e| panic!("{what}: {e}: {body}"));
    assert_problem(413, &problem, 413, "payload_too_large");
}

/// Writes the whole request before reading anything (as Python's http.client does), then reads
/// to the end.
async fn send_whole_then_read(addr: SocketAddr, head: &str, body: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(head.as_bytes()).await.unwrap_or_else(|e| panic!("head not written: {e}"));
    stream.write_all(body).await.unwrap_or_else(|e| panic!("body not written ({} bytes): {e}", body.len()));
    let mut got = Vec::new();
    match tokio::time::timeout(SETTLE_WAIT, stream.read_to_end(&mut got)).await {
        Ok(Ok(_)) => got,
        Ok(Err(e)) => panic!("reading the answer failed after {} bytes: {e}", got.len()),
        Err(_) => panic!("no end of answer within {SETTLE_WAIT:?}"),
    }
}

fn chunked(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 1000 + 16);
    for chunk in body.chunks(64 << 10) {
        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

#[tokio::test]
async fn oversized_bodies_get_a_readable_413_every_time() {
    let server = Server::start(&[]).await; // the default 1 MiB body limit
    let addr = server_addr(&server);
    let admin = server.token("ops", "admin").await;
    for size in [2_000_000usize, 20_000_000] {
        let mut body = vec![b' '; size];
        body[0] = b'{';
        let declared = format!(
            "POST /v1/venues HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin}\r\nContent-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
        );
        let streamed = format!(
            "POST /v1/venues HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        let chunked_body = chunked(&body);
        for try_n in 1..=OVERSIZED_TRIES {
            let raw = send_whole_then_read(addr, &declared, &body).await;
            assert_readable_413(&raw, &format!("{size} bytes by Content-Length, try {try_n}"));
            let raw = send_whole_then_read(addr, &streamed, &chunked_body).await;
            assert_readable_413(&raw, &format!("{size} bytes chunked, try {try_n}"));
        }
        eprintln!("{size} bytes: a readable 413 in {OVERSIZED_TRIES} of {OVERSIZED_TRIES} tries, declared and chunked");
    }
    let text = metrics_text(&server.url).await;
    let drained = metric(&text, "api_request_bodies_total", Some("outcome=\"drained\""));
    assert!(drained >= (4 * OVERSIZED_TRIES) as f64, "{drained} bodies drained");
    // An unauthenticated upload is answered readably too (401 before the body is looked at).
    let anonymous = "POST /v1/venues HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 2000000\r\n\r\n";
    let raw = send_whole_then_read(addr, anonymous, &vec![b' '; 2_000_000]).await;
    assert!(String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 401"), "{}", String::from_utf8_lossy(&raw[..200]));
}

/// Reads server-sent events from a streaming response.
struct Events {
    resp: reqwest::Response,
    buffer: String,
}

impl Events {
    async fn open(http: &reqwest::Client, url: &str) -> Result<Events, (u16, Value)> {
        let resp = http.get(url).send().await.expect("stream request");
        if resp.status() != 200 {
            let status = resp.status().as_u16();
            return Err((status, resp.json().await.unwrap_or(Value::Null)));
        }
        Ok(Events { resp, buffer: String::new() })
    }

    /// The next event's name and data.
    async fn next(&mut self) -> (String, Value) {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let event = block.lines().find_map(|l| l.strip_prefix("event: "));
                let data = block.lines().find_map(|l| l.strip_prefix("data: "));
                if let (Some(event), Some(data)) = (event, data) {
                    return (event.to_owned(), serde_json::from_str(data).expect("JSON data"));
                }
                continue;
            }
            let chunk = tokio::time::timeout(SETTLE_WAIT, self.resp.chunk()).await.expect("an event in time");
            let chunk = chunk.expect("stream read").expect("the stream stays open");
            self.buffer.push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        }
    }
}

fn stream_client() -> reqwest::Client {
    // No overall timeout: a stream is read for as long as the test needs.
    common::install_crypto_provider();
    reqwest::Client::builder().build().expect("http client")
}

#[tokio::test]
async fn streams_beyond_one_address_cap_are_refused_with_429() {
    const CAP: usize = 4;
    let server = Server::start(&["--streams-per-address-max", "4"]).await;
    let admin = server.token("ops", "admin").await;
    let event = server.create_event(&admin, 1, 5, 5, json!({})).await;
    let url = format!("{}/v1/events/{event}/seats/stream", server.url);
    let http = stream_client();
    let mut open = Vec::new();
    for _ in 0..CAP {
        let mut events = Events::open(&http, &url).await.expect("within the cap");
        assert_eq!(events.next().await.0, "snapshot");
        open.push(events);
    }
    for _ in 0..3 {
        let (status, problem) = Events::open(&http, &url).await.err().expect("beyond the cap");
        assert_problem(status, &problem, 429, "rate_limited");
    }
    drop(open.pop()); // one closes: one more may open
    let reopened =
        eventually(SETTLE_WAIT, "a freed stream slot", || async { Events::open(&http, &url).await.ok() }).await;
    drop((open, reopened));
}

#[tokio::test]
async fn many_streams_of_one_event_share_one_feed() {
    const STREAMS: usize = 50;
    const HOLDS: usize = 5;
    let server = Server::start(&[]).await;
    let admin = server.token("ops", "admin").await;
    let user = server.token("alice", "user").await;
    let event = server.create_event(&admin, 1, 10, 5, json!({})).await;
    let url = format!("{}/v1/events/{event}/seats/stream", server.url);
    let http = stream_client();
    let mut streams = Vec::new();
    for _ in 0..STREAMS {
        let mut events = Events::open(&http, &url).await.expect("a stream");
        assert_eq!(events.next().await.0, "snapshot");
        streams.push(events);
    }
    let before = metrics_text(&server.url).await;
    assert_eq!(metric(&before, "api_streams_open", None), STREAMS as f64);
    assert_eq!(metric(&before, "api_seat_feed_followers", None), 1.0);
    for seat in 1..=HOLDS {
        let body = json!({"seats": [format!("FLOOR-A-{seat}")]});
        let (status, hold) =
            server.call("POST", &format!("/v1/events/{event}/holds"), Some(&user), Some(body), None).await;
        assert_eq!(status, 201, "{hold}");
        for events in &mut streams {
            let (name, data) = events.next().await;
            assert_eq!((name.as_str(), &data["seats"][0]["id"]), ("change", &json!(format!("FLOOR-A-{seat}"))));
        }
    }
    let after = metrics_text(&server.url).await;
    let reads = metric(&after, "api_seat_feed_reads_total", None) - metric(&before, "api_seat_feed_reads_total", None);
    eprintln!("{STREAMS} streams, {HOLDS} holds: {reads} change-feed reads");
    assert!(reads <= (2 * HOLDS + 2) as f64, "{reads} feed reads: the streams do not share one feed");
}

#[tokio::test]
async fn metrics_move_to_the_internal_address_and_methods_are_bounded_labels() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("addr").port();
    let internal = format!("127.0.0.1:{port}");
    let server = Server::start(&["--metrics-addr", &internal]).await;
    let (status, problem) = server.get("/metrics", None).await;
    assert_problem(status, &problem, 404, "not_found");
    for method in ["FOO", "BREW", "PROPFIND"] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let resp = server.http.request(method, format!("{}/v1/events", server.url)).send().await.expect("sent");
        assert_eq!(resp.status(), 405);
    }
    let text = metrics_until(&format!("http://{internal}"), "the invented methods counted", |t| {
        metric(t, "http_requests_total", Some("method=\"other\"")) >= 3.0
    })
    .await;
    for invented in ["FOO", "BREW", "PROPFIND"] {
        assert!(!text.contains(&format!("method=\"{invented}\"")), "{invented} became a label");
    }
}

#[tokio::test]
async fn a_graceful_shutdown_ends_streams_and_idle_connections_and_exits_promptly() {
    let mut server = Server::start(&[]).await;
    let admin = server.token("ops", "admin").await;
    let event = server.create_event(&admin, 1, 5, 5, json!({})).await;
    let http = stream_client();
    let mut events =
        Events::open(&http, &format!("{}/v1/events/{event}/seats/stream", server.url)).await.expect("a stream");
    assert_eq!(events.next().await.0, "snapshot");
    let mut idle = TcpStream::connect(server_addr(&server)).await.expect("connect");
    let started = Instant::now();
    server.terminate();
    let ended = tokio::time::timeout(SETTLE_WAIT, async {
        loop {
            match events.resp.chunk().await {
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => return,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the stream did not end on shutdown");
    let (_, closed) = read_until_closed(&mut idle, SETTLE_WAIT).await;
    assert!(closed, "an idle connection outlived the shutdown");
    eventually(SETTLE_WAIT, "the process exits", || {
        let running = server.is_running();
        async move { (!running).then_some(()) }
    })
    .await;
    let took = started.elapsed();
    eprintln!("SIGTERM with a stream and an idle connection open: exited after {took:?}");
    assert!(took < api::SHUTDOWN_GRACE, "exited after {took:?}: the stream was waited out, not ended");
}
