//! One connection's clock: what it is doing, and when it has taken too long.
//!
//! hyper's own header timer starts when a connection begins to wait for a request, so a
//! keep-alive connection's idle wait would count against the header timeout. The watchdog here
//! keeps them apart (as Go's `ReadHeaderTimeout` and `IdleTimeout` do):
//!
//! - **Head**: from the connection's start, or from the first byte after an idle wait, until a
//!   request's headers are in. Longer than `header_timeout` closes the connection (a slowloris
//!   client trickling headers, or one that connects and sends nothing).
//! - **Busy**: requests in progress, until their responses are written (a stream stays busy).
//!   Bodies are bounded by the request deadline (`body.rs`), not here.
//! - **Idle**: no request in progress and no byte read. Longer than `idle_timeout` closes the
//!   connection gracefully.
//!
//! Whatever the phase, a write that waits for the client for longer than [`WRITE_STALL_MAX`]
//! closes the connection: a client that reads nothing holds its buffers and (for a stream) a
//! stream slot for nothing.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::config::ServeConfig;

/// How long a write may wait for the client to read before the connection is closed. A minute
/// outlasts any live client's pause (a phone switching networks, a backgrounded tab), and
/// three keep-alive intervals of a stream, which a dead peer would leave unread.
pub const WRITE_STALL_MAX: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Head { since: Instant },
    Busy { requests: usize },
    Idle { since: Instant },
}

/// Which time ran out; the metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Expiry {
    Header,
    Idle,
    WriteStall,
}

impl Expiry {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Expiry::Header => "header_timeout",
            Expiry::Idle => "idle_timeout",
            Expiry::WriteStall => "write_stalled",
        }
    }
}

struct State {
    phase: Phase,
    write_blocked_since: Option<Instant>,
}

/// Shared by the connection's task, its IO and its requests (which HTTP/2 runs on other tasks).
pub(crate) struct Watch {
    state: Mutex<State>,
    changed: Notify,
    header_timeout: Duration,
    idle_timeout: Duration,
}

impl Watch {
    pub(crate) fn new(config: &ServeConfig) -> Arc<Watch> {
        let state = State { phase: Phase::Head { since: Instant::now() }, write_blocked_since: None };
        Arc::new(Watch {
            state: Mutex::new(state),
            changed: Notify::new(),
            header_timeout: config.header_timeout,
            idle_timeout: config.idle_timeout,
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A request's headers are in: returns when they began to arrive (`None` when another
    /// request was in progress, so the start is unknown), and the guard that ends the request.
    pub(crate) fn request_started(self: &Arc<Self>) -> (Option<Instant>, RequestGuard) {
        let mut state = self.state();
        let (head_since, requests) = match state.phase {
            Phase::Head { since } => (Some(since), 0),
            Phase::Idle { .. } => (None, 0),
            Phase::Busy { requests } => (None, requests),
        };
        state.phase = Phase::Busy { requests: requests + 1 };
        (head_since, RequestGuard { watch: self.clone() })
    }

    fn request_ended(&self) {
        let mut state = self.state();
        if let Phase::Busy { requests } = state.phase {
            state.phase = match requests {
                0 | 1 => Phase::Idle { since: Instant::now() },
                n => Phase::Busy { requests: n - 1 },
            };
        }
        drop(state);
        self.changed.notify_one();
    }

    /// Bytes arrived: after an idle wait they start the next request's head.
    fn read_some(&self) {
        let mut state = self.state();
        if let Phase::Idle { .. } = state.phase {
            state.phase = Phase::Head { since: Instant::now() };
            drop(state);
            self.changed.notify_one();
        }
    }

    fn write_blocked(&self) {
        let mut state = self.state();
        if state.write_blocked_since.is_none() {
            state.write_blocked_since = Some(Instant::now());
            drop(state);
            self.changed.notify_one();
        }
    }

    fn write_done(&self) {
        let mut state = self.state();
        state.write_blocked_since = None;
    }

    /// Starts the idle wait again (after a graceful close was asked for, to bound it).
    pub(crate) fn restart_idle(&self) {
        let mut state = self.state();
        if let Phase::Idle { .. } = state.phase {
            state.phase = Phase::Idle { since: Instant::now() };
        }
    }

    /// The earliest time that runs out in the current state, if any.
    fn deadline(&self) -> Option<(Instant, Expiry)> {
        let state = self.state();
        let phase = match state.phase {
            Phase::Head { since } => Some((since + self.header_timeout, Expiry::Header)),
            Phase::Idle { since } => Some((since + self.idle_timeout, Expiry::Idle)),
            Phase::Busy { .. } => None,
        };
        let stall = state.write_blocked_since.map(|since| (since + WRITE_STALL_MAX, Expiry::WriteStall));
        match (phase, stall) {
            (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
            (a, b) => a.or(b),
        }
    }

    /// Resolves when a time runs out; state changes move the deadline.
    pub(crate) async fn expired(&self) -> Expiry {
        loop {
            match self.deadline() {
                Some((at, expiry)) if at <= Instant::now() => return expiry,
                Some((at, _)) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = self.changed.notified() => {}
                    }
                }
                None => self.changed.notified().await,
            }
        }
    }
}

/// Ends its request when dropped: with the response's body, once hyper has written it (or given
/// up on the connection).
pub(crate) struct RequestGuard {
    watch: Arc<Watch>,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.watch.request_ended();
    }
}

/// The connection's socket, telling its [`Watch`] when bytes arrive and when writes wait.
pub(crate) struct WatchedIo<T> {
    io: T,
    watch: Arc<Watch>,
}

impl<T> WatchedIo<T> {
    pub(crate) fn new(io: T, watch: Arc<Watch>) -> WatchedIo<T> {
        WatchedIo { io, watch }
    }

    fn wrote(&self, result: &Poll<io::Result<usize>>) {
        match result {
            Poll::Pending => self.watch.write_blocked(),
            Poll::Ready(Ok(n)) if *n > 0 => self.watch.write_done(),
            Poll::Ready(_) => {}
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WatchedIo<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.watch.read_some();
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WatchedIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.io).poll_write(cx, data);
        self.wrote(&result);
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.wrote(&result);
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch() -> Arc<Watch> {
        let config = ServeConfig {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            ..ServeConfig::default()
        };
        Watch::new(&config)
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_sends_no_headers_expires_after_the_header_timeout() {
        let watch = watch();
        let started = Instant::now();
        assert_eq!(watch.expired().await, Expiry::Header);
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_waits_get_the_idle_timeout_and_the_next_byte_starts_the_header_timeout() {
        let watch = watch();
        let (head_since, guard) = watch.request_started();
        assert!(head_since.is_some());
        assert_eq!(watch.deadline(), None, "a request in progress has no deadline");
        drop(guard);
        let idle_from = Instant::now();
        assert_eq!(watch.deadline(), Some((idle_from + Duration::from_secs(60), Expiry::Idle)));
        tokio::time::advance(Duration::from_secs(30)).await;
        watch.read_some();
        assert_eq!(watch.deadline(), Some((Instant::now() + Duration::from_secs(10), Expiry::Header)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_blocked_too_long_expires_even_while_busy() {
        let watch = watch();
        let (_, _guard) = watch.request_started();
        watch.write_blocked();
        let started = Instant::now();
        assert_eq!(watch.expired().await, Expiry::WriteStall);
        assert_eq!(started.elapsed(), WRITE_STALL_MAX);
        watch.write_done();
        assert_eq!(watch.deadline(), None);
    }
}
