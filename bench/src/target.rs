//! The server under test: started by the bench as a separate process, or an existing URL.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("cannot start the server: {0}")]
    Spawn(String),
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    #[error("unexpected answer {0}: {1}")]
    Answer(u16, String),
}

pub struct Target {
    pub url: String,
    pub http: reqwest::Client,
    child: Option<Child>,
    _dir: Option<tempfile::TempDir>,
}

impl Target {
    /// Starts `boxoffice dev` (the binary at `exe`) on a free port with a fresh data directory.
    pub async fn spawn(exe: &Path, extra: &[&str]) -> Result<Target, TargetError> {
        let dir = tempfile::tempdir().map_err(|e| TargetError::Spawn(e.to_string()))?;
        let mut child = Command::new(exe)
            .args(["dev", "--no-demo", "--addr", "127.0.0.1:0", "--log", "warn", "--data-dir"])
            .arg(dir.path())
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| TargetError::Spawn(e.to_string()))?;
        let stdout = child.stdout.take().ok_or_else(|| TargetError::Spawn("no stdout".into()))?;
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().and_then(Result::ok).ok_or_else(|| TargetError::Spawn("server exited".into()))?;
        std::thread::spawn(move || for _ in lines {});
        let url = first
            .strip_prefix("boxoffice: listening on ")
            .ok_or_else(|| TargetError::Spawn(format!("unexpected first line {first:?}")))?
            .trim()
            .to_owned();
        let target = Target { url, http: client(), child: Some(child), _dir: Some(dir) };
        target.wait_ready().await?;
        Ok(target)
    }

    /// A server that is already running, with dev tokens on.
    pub fn existing(url: &str) -> Target {
        Target { url: url.trim_end_matches('/').to_owned(), http: client(), child: None, _dir: None }
    }

    async fn wait_ready(&self) -> Result<(), TargetError> {
        for _ in 0..600 {
            if let Ok(r) = self.http.get(format!("{}/readyz", self.url)).send().await {
                if r.status() == 200 {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(TargetError::Spawn("not ready after 60 s".into()))
    }

    pub async fn token(&self, user: &str, role: &str) -> Result<String, TargetError> {
        let body = self.post("/v1/auth/dev-token", None, json!({"user_id": user, "role": role}), 200).await?;
        Ok(body["token"].as_str().unwrap_or_default().to_owned())
    }

    /// POSTs and insists on `want` status.
    pub async fn post(&self, path: &str, token: Option<&str>, body: Value, want: u16) -> Result<Value, TargetError> {
        let mut req = self.http.post(format!("{}{}", self.url, path)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        if status != want {
            return Err(TargetError::Answer(status, text));
        }
        serde_json::from_str(&text).map_err(|e| TargetError::Answer(status, e.to_string()))
    }

    pub async fn get(&self, path: &str) -> Result<Value, TargetError> {
        let resp = self.http.get(format!("{}{}", self.url, path)).send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        if status != 200 {
            return Err(TargetError::Answer(status, text));
        }
        serde_json::from_str(&text).map_err(|e| TargetError::Answer(status, e.to_string()))
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(30)).pool_max_idle_per_host(1024).build().unwrap_or_default()
}
