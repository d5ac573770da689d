//! Starts the real `boxoffice` binary on a free port with a temporary data directory, and talks to
//! it over HTTP. Each test owns its server; dropping it kills the process.

#![allow(dead_code, clippy::unwrap_used)]

pub mod cluster;
pub mod load;
pub mod stripe;
pub mod tls;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::Process;
use serde_json::{json, Value};

/// How long a server may take to start and elect its leaders.
const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Server {
    process: Option<Process>,
    pub url: String,
    dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    args: Vec<String>,
    pub http: reqwest::Client,
}

impl Server {
    /// A server without demo data, with extra `boxoffice dev` arguments.
    pub async fn start(extra: &[&str]) -> Server {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().to_path_buf();
        let mut args: Vec<String> = vec!["--no-demo".into()];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut server = Server { process: None, url: String::new(), dir, _tmp: Some(tmp), args, http: client() };
        server.spawn().await;
        server
    }

    /// A server with the demo data.
    pub async fn start_with_demo() -> Server {
        let mut s = Server::start(&[]).await;
        s.args.retain(|a| a != "--no-demo");
        s.kill9();
        s.spawn().await;
        s
    }

    /// A handle on an api that something else started (a cluster's api).
    pub fn attach(url: &str) -> Server {
        Server { process: None, url: url.to_owned(), dir: PathBuf::new(), _tmp: None, args: Vec::new(), http: client() }
    }

    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    async fn spawn(&mut self) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_boxoffice"));
        command
            .arg("dev")
            .arg("--addr")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(&self.dir)
            .args(&self.args)
            .env("BOXOFFICE_LOG", "warn,openraft=error")
            .stderr(Stdio::inherit());
        let (process, url) =
            harness::spawn_announced(command, "boxoffice dev", "boxoffice: listening on ", START_TIMEOUT)
                .expect("boxoffice printed its address");
        self.url = url;
        self.process = Some(process);
        self.wait_ready().await;
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(r) = self.http.get(format!("{}/readyz", self.url)).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "server not ready in time");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no shutdown, no final flush.
    pub fn kill9(&mut self) {
        self.process = None;
    }

    /// SIGTERM: a graceful shutdown.
    pub fn terminate(&self) {
        let pid = self.process.as_ref().and_then(|p| p.id()).and_then(|id| i32::try_from(id).ok());
        if let Some(pid) = pid.and_then(rustix::process::Pid::from_raw) {
            rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM sent");
        }
    }

    /// Whether the server process is alive.
    pub fn is_running(&mut self) -> bool {
        self.process.as_mut().is_some_and(|p| p.is_running())
    }

    /// Kills the server with SIGKILL and starts it again on the same data directory.
    pub async fn crash_and_restart(&mut self) {
        self.kill9();
        self.spawn().await;
    }

    pub async fn token(&self, user: &str, role: &str) -> String {
        let (status, body) =
            self.call("POST", "/v1/auth/dev-token", None, Some(json!({"user_id": user, "role": role})), None).await;
        assert_eq!(status, 200, "{body}");
        body["token"].as_str().expect("token").to_owned()
    }

    /// Sends a request; returns the status and the JSON body (`Null` when empty).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        key: Option<&str>,
    ) -> (u16, Value) {
        let raw = body.map(|b| b.to_string());
        self.call_raw(method, path, token, raw.as_deref(), key).await
    }

    pub async fn call_raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
        key: Option<&str>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(method, format!("{}{}", self.url, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_owned());
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        let value =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        (status, value)
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        self.call("GET", path, token, None, None).await
    }

    /// Creates a venue with one seated section (`rows` × `seats`) and one general section, and an
    /// event there on sale now. Returns the event id.
    pub async fn create_event(&self, admin: &str, rows: usize, seats: u32, general: u32, extra: Value) -> String {
        let row_ids: Vec<Value> = (0..rows).map(|r| json!({"id": row_name(r), "seats": seats})).collect();
        let venue = json!({
            "name": "Test Hall", "city": "Lisbon", "country": "PT",
            "location": {"lat": 38.7, "lon": -9.1},
            "sections": [
                {"id": "FLOOR", "name": "Floor", "kind": "seated", "rows": row_ids},
                {"id": "LAWN", "name": "Lawn", "kind": "general", "capacity": general}
            ]
        });
        let (status, venue) = self.call("POST", "/v1/venues", Some(admin), Some(venue), None).await;
        assert_eq!(status, 201, "{venue}");
        let mut event = json!({
            "name": "Test Concert", "description": "A test", "category": "music",
            "performers": [{"name": "The Testers"}],
            "venue_id": venue["venue_id"],
            "starts_at": "2099-01-01T20:00:00Z",
            "prices": [
                {"section": "FLOOR", "price": {"amount": 5000, "currency": "USD"}},
                {"section": "LAWN", "price": {"amount": 2000, "currency": "USD"}}
            ]
        });
        if let (Some(e), Some(x)) = (event.as_object_mut(), extra.as_object()) {
            for (k, v) in x {
                e.insert(k.clone(), v.clone());
            }
        }
        let (status, event) = self.call("POST", "/v1/events", Some(admin), Some(event), None).await;
        assert_eq!(status, 201, "{event}");
        event["event_id"].as_str().expect("event id").to_owned()
    }

    /// Seat id → status, from the seat map.
    pub async fn seat_statuses(&self, event: &str) -> std::collections::BTreeMap<String, String> {
        let (status, map) = self.get(&format!("/v1/events/{event}/seats"), None).await;
        assert_eq!(status, 200, "{map}");
        map["seats"]
            .as_array()
            .expect("seats")
            .iter()
            .map(|s| (s["id"].as_str().unwrap().to_owned(), s["status"].as_str().unwrap().to_owned()))
            .collect()
    }
}

pub fn row_name(r: usize) -> String {
    let letters = ["A", "B", "C", "D", "E", "F", "G", "H", "I", "J", "K", "L", "M", "N", "O", "P"];
    letters.get(r).map(|s| s.to_string()).unwrap_or_else(|| format!("R{r}"))
}

/// reqwest is built without a TLS provider of its own; the binary installs ring, and so do the
/// tests before building a client.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub fn client() -> reqwest::Client {
    install_crypto_provider();
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("http client")
}

/// Polls `check` until it returns `Some`, or panics after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts an RFC 9457 problem document with the given status and code.
pub fn assert_problem(status: u16, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["code"], want_code, "{body}");
    assert_eq!(body["status"], want_status, "{body}");
    for field in ["type", "title", "detail"] {
        assert!(body[field].is_string(), "problem lacks `{field}`: {body}");
    }
}
