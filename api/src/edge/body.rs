//! The request body as the router sees it, and what happens to the part nobody read.
//!
//! **The deadline.** The body must arrive within what is left of `request_timeout` once the
//! headers are in (tower-http's `DeadlineBody`, a hard deadline, not a per-frame one): a client
//! trickling a body one byte at a time cannot hold a connection and a handler for long. A
//! handler reading past it gets an error that `extract.rs` answers with 408.
//!
//! **Lingering.** hyper answers a request whose handler did not read the whole body (a 413 on
//! its declared length, a 401 before the body is looked at) and closes the connection without
//! reading the rest. The client is still sending; the kernel, holding unread bytes on a closed
//! socket, resets the connection, and a client that writes its whole body before it reads (most
//! do) gets a broken pipe instead of the answer — more often the larger the body. So, before the
//! answer leaves, the rest is read and thrown away (nginx's "lingering close"), up to
//! [`LINGER_BYTES_MAX`] and [`LINGER_TIME_MAX`] and within the request's deadline; then a 413
//! (or an answer whose body could not be drained) goes out with `Connection: close`.
//!
//! The router owns the body; [`EdgeBody`] gives the unread rest back to the edge when the
//! router drops it, through the shared [`BodyLedger`].

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{header, HeaderMap};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tower_http::timeout::DeadlineBody;

use crate::error::is_timeout;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Inner = Pin<Box<DeadlineBody<Incoming>>>;

/// The most of a body read and thrown away after its answer is decided. Bodies up to the
/// largest any client of the api sends by mistake (an upload to the wrong path, a runaway JSON
/// array) get a readable answer; beyond it the connection is closed and the client may see a
/// reset, which is cheaper than reading an unbounded stream for it.
pub const LINGER_BYTES_MAX: u64 = 64 << 20;
/// The longest a body is drained, within the request's own deadline: 64 MiB at about 2 MB/s.
/// nginx's `lingering_time` is the same thirty seconds.
pub const LINGER_TIME_MAX: Duration = Duration::from_secs(30);

/// What the router did with the body, for the edge to settle after the answer.
#[derive(Default)]
pub(crate) struct BodyLedger {
    /// The body, if the router dropped it before its end without an error.
    rest: Option<Inner>,
    /// Data bytes the router read.
    read_bytes: u64,
    /// Whether the router asked for a frame at all (hyper sends `100 Continue` on the first).
    polled: bool,
    /// The request deadline passed while the router read.
    timed_out: bool,
}

/// The request body, with the request deadline, that hands its unread rest to the ledger.
pub(crate) struct EdgeBody {
    inner: Option<Inner>,
    ended: bool,
    ledger: Arc<Mutex<BodyLedger>>,
}

fn lock(ledger: &Mutex<BodyLedger>) -> MutexGuard<'_, BodyLedger> {
    ledger.lock().unwrap_or_else(PoisonError::into_inner)
}

impl EdgeBody {
    /// `incoming` must be complete within `deadline_in`.
    pub(crate) fn new(incoming: Incoming, deadline_in: Duration) -> (EdgeBody, Arc<Mutex<BodyLedger>>) {
        let ledger = Arc::new(Mutex::new(BodyLedger::default()));
        let inner = Box::pin(DeadlineBody::new(deadline_in, incoming));
        (EdgeBody { inner: Some(inner), ended: false, ledger: ledger.clone() }, ledger)
    }
}

impl Body for EdgeBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let Some(inner) = self.inner.as_mut() else { return Poll::Ready(None) };
        let polled = inner.as_mut().poll_frame(cx);
        let mut ledger = lock(&self.ledger);
        ledger.polled = true;
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                ledger.read_bytes += frame.data_ref().map_or(0, |d| d.len() as u64);
            }
            Poll::Ready(Some(Err(e))) => {
                ledger.timed_out |= is_timeout(e.as_ref());
                drop(ledger);
                // A failed body cannot be read further: nothing to give back.
                self.inner = None;
            }
            Poll::Ready(None) => {
                drop(ledger);
                self.ended = true;
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|inner| inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map_or_else(|| SizeHint::with_exact(0), |inner| inner.size_hint())
    }
}

impl Drop for EdgeBody {
    fn drop(&mut self) {
        let Some(inner) = self.inner.take() else { return };
        if !self.ended && !inner.is_end_stream() {
            lock(&self.ledger).rest = Some(inner);
        }
    }
}

/// What the request said about its body, read before the router takes it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BodyFacts {
    declared_bytes: Option<u64>,
    expects_continue: bool,
}

impl BodyFacts {
    pub(crate) fn of(headers: &HeaderMap) -> BodyFacts {
        let declared_bytes =
            headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
        let expects_continue = headers
            .get(header::EXPECT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"));
        BodyFacts { declared_bytes, expects_continue }
    }
}

/// How a request's body ended, once its answer was decided; the metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Settled {
    /// The router read it all, or there was none.
    Read,
    /// The router read past the request deadline.
    TimedOut,
    /// The rest was read and thrown away.
    Drained,
    /// The client was waiting for `100 Continue` and sent nothing: nothing to drain.
    NotSent,
    /// Too large, too slow or broken to drain: the connection must close.
    Abandoned,
}

impl Settled {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Settled::Read => "read",
            Settled::TimedOut => "timed_out",
            Settled::Drained => "drained",
            Settled::NotSent => "not_sent",
            Settled::Abandoned => "abandoned",
        }
    }

    /// Whether the connection can carry another request after this one.
    pub(crate) fn keeps_connection(self) -> bool {
        matches!(self, Settled::Read | Settled::Drained)
    }
}

/// Settles the body after the router answered: drains what it left unread, within bounds.
pub(crate) async fn settle(ledger: &Mutex<BodyLedger>, facts: BodyFacts) -> Settled {
    let (rest, read_bytes, polled, timed_out) = {
        let mut ledger = lock(ledger);
        (ledger.rest.take(), ledger.read_bytes, ledger.polled, ledger.timed_out)
    };
    if timed_out {
        return Settled::TimedOut;
    }
    let Some(rest) = rest else { return Settled::Read };
    if facts.expects_continue && !polled {
        return Settled::NotSent;
    }
    let unread_declared = facts.declared_bytes.map(|n| n.saturating_sub(read_bytes));
    if unread_declared.is_some_and(|n| n > LINGER_BYTES_MAX) {
        return Settled::Abandoned;
    }
    match tokio::time::timeout(LINGER_TIME_MAX, drain(rest, LINGER_BYTES_MAX)).await {
        Ok(true) => Settled::Drained,
        Ok(false) | Err(_) => Settled::Abandoned,
    }
}

/// Reads `body` to its end, at most `budget_bytes` of data; whether it ended within them.
async fn drain(mut body: Inner, budget_bytes: u64) -> bool {
    let mut drained_bytes = 0u64;
    loop {
        match std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
            None => return true,
            Some(Ok(frame)) => {
                drained_bytes += frame.data_ref().map_or(0, |d| d.len() as u64);
                if drained_bytes > budget_bytes {
                    return false;
                }
            }
            Some(Err(_)) => return false,
        }
    }
}
