//! The serving side of an established connection: reads frames within their kind's bound and the
//! connection's budget of calls and bytes in flight, judges each request by the peer's role, and
//! answers it in a task of its own.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pki::Role;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, BufReader};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use super::frame::{read_body, read_header, request_bytes_max, skip_body, Header, HELLO_TAG, UNKNOWN_KIND_BYTES_MAX};
use super::limits::{Refusal, BYTES_IN_FLIGHT_MAX, CALLS_IN_FLIGHT_MAX};
use super::{run_writer, Handler, Outgoing, BUFFER_BYTES};
use crate::authz::{authorize, may_send};
use crate::wire::{NodeReply, NodeRequest, RequestKind, WireError, UNKNOWN_KIND_REFUSAL};

/// When a connection last read a frame or wrote a reply.
pub(super) struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Arc<Activity> {
        Arc::new(Activity { start: Instant::now(), last_ms: AtomicU64::new(0) })
    }

    pub(super) fn touch(&self) {
        let now_ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(now_ms, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        self.start.elapsed().saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// Who is on the other end of an established connection.
#[derive(Clone, Copy, Debug)]
pub(super) struct Peer {
    pub role: Role,
    pub addr: SocketAddr,
}

/// A connection's calls and bytes in flight: the server stops reading it while either is used up.
struct InFlight {
    calls: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
}

impl InFlight {
    fn new() -> InFlight {
        InFlight {
            calls: Arc::new(Semaphore::new(CALLS_IN_FLIGHT_MAX)),
            bytes: Arc::new(Semaphore::new(BYTES_IN_FLIGHT_MAX)),
        }
    }

    fn is_empty(&self) -> bool {
        self.calls.available_permits() == CALLS_IN_FLIGHT_MAX
    }

    /// Waits for room for one more call of `body_bytes`.
    async fn enter(&self, body_bytes: usize) -> Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)> {
        let call = self.calls.clone().acquire_owned().await.ok()?;
        let bytes = u32::try_from(body_bytes.clamp(1, BYTES_IN_FLIGHT_MAX)).ok()?;
        let budget = self.bytes.clone().acquire_many_owned(bytes).await.ok()?;
        Some((call, budget))
    }
}

/// What ended the wait for a frame.
enum Next {
    Frame,
    Closed,
    Idle,
}

/// Serves an established connection until the peer closes it, idles out, or breaks the protocol.
pub(super) async fn serve_connection<R, W>(read: R, write: W, peer: Peer, handler: Handler, idle_timeout: Duration)
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let mut r = BufReader::with_capacity(BUFFER_BYTES, read);
    let activity = Activity::new();
    let (frames, queue) = mpsc::unbounded_channel();
    tokio::spawn(run_writer(write, queue, Some(activity.clone())));
    let in_flight = InFlight::new();
    loop {
        match next_frame(&mut r, &activity, &in_flight, idle_timeout).await {
            Next::Frame => {}
            Next::Closed => return,
            Next::Idle => {
                metrics::counter!("boxoffice_rpc_idle_closed_total").increment(1);
                return;
            }
        }
        let served = read_and_answer(&mut r, peer, &handler, &frames, &in_flight, idle_timeout).await;
        match served {
            Ok(()) => activity.touch(),
            Err(Some(refusal)) => {
                refusal.count();
                tracing::debug!(peer = %peer.addr, role = %peer.role, reason = refusal.label(), "connection closed");
                return;
            }
            Err(None) => return,
        }
    }
}

/// A read of a frame that has begun: due within the idle timeout too. `Err(None)`: it broke.
async fn timed<T>(
    limit: Duration,
    read: impl std::future::Future<Output = std::io::Result<T>>,
) -> Result<T, Option<Refusal>> {
    match tokio::time::timeout(limit, read).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(_)) | Err(_) => Err(None),
    }
}

/// Waits for a frame's first byte; idles out after `idle_timeout` without a frame read or a reply
/// written while no call is in flight.
async fn next_frame<R: AsyncRead + Unpin>(
    r: &mut BufReader<R>,
    activity: &Activity,
    in_flight: &InFlight,
    idle_timeout: Duration,
) -> Next {
    let idle = async {
        loop {
            let idle_for = activity.idle_for();
            if idle_for >= idle_timeout && in_flight.is_empty() {
                return;
            }
            // While calls are in flight, look again now and then: their replies restart the clock.
            let wait = idle_timeout.checked_sub(idle_for).unwrap_or(idle_timeout.min(Duration::from_secs(1)));
            tokio::time::sleep(wait).await;
        }
    };
    tokio::select! {
        // `fill_buf` consumes nothing: dropping it for the idle branch loses no byte.
        filled = r.fill_buf() => match filled {
            Ok(bytes) if !bytes.is_empty() => Next::Frame,
            _ => Next::Closed,
        },
        () = idle => Next::Idle,
    }
}

/// Reads one request frame and starts answering it. `Err(Some)`: close the connection for that
/// reason; `Err(None)`: it broke.
async fn read_and_answer<R: AsyncRead + Unpin>(
    r: &mut R,
    peer: Peer,
    handler: &Handler,
    frames: &mpsc::UnboundedSender<Outgoing>,
    in_flight: &InFlight,
    idle_timeout: Duration,
) -> Result<(), Option<Refusal>> {
    let header = timed(idle_timeout, read_header(r)).await?;
    let Some(kind) = RequestKind::from_tag(header.tag) else {
        // A kind a newer version added: refused, the connection kept (nodes one version apart
        // share it), unless its body is larger than any this version would accept.
        if header.tag == HELLO_TAG || header.body_bytes > UNKNOWN_KIND_BYTES_MAX {
            return Err(Some(Refusal::BadFrame));
        }
        let permits = in_flight.enter(header.body_bytes).await.ok_or(None)?;
        timed(idle_timeout, skip_body(r, header.body_bytes)).await?;
        let refusal = WireError::Invalid(format!(
            "request kind {} {UNKNOWN_KIND_REFUSAL}: it runs an older version than its caller",
            header.tag
        ));
        tracing::info!(peer = %peer.addr, tag = header.tag, "a request of an unknown kind was refused");
        send_reply(header, NodeReply::Error(refusal), frames, permits);
        return Ok(());
    };
    if header.body_bytes > request_bytes_max(kind) {
        return Err(Some(Refusal::FrameTooLarge));
    }
    // Backpressure: while the connection's budget is used up, its next body stays unread.
    let permits = in_flight.enter(header.body_bytes).await.ok_or(None)?;
    if !may_send(peer.role, kind) {
        // Refused on its tag alone: the body is read past, never held.
        timed(idle_timeout, skip_body(r, header.body_bytes)).await?;
        let refusal = WireError::Forbidden { role: peer.role.to_string(), what: kind.to_string() };
        refuse(peer, kind, refusal, header, frames, permits);
        return Ok(());
    }
    let body = timed(idle_timeout, read_body(r, header.body_bytes)).await?;
    let (handler, frames) = (handler.clone(), frames.clone());
    tokio::spawn(async move {
        let reply = answer(peer, kind, &body, &handler).await;
        send_reply(header, reply, &frames, permits);
    });
    Ok(())
}

/// Decodes, authorizes and handles one request.
async fn answer(peer: Peer, tagged: RequestKind, body: &[u8], handler: &Handler) -> NodeReply {
    let request = match raft_store::decode::<NodeRequest>(body) {
        Ok(request) => request,
        Err(e) => return NodeReply::Error(WireError::Invalid(format!("undecodable request: {e}"))),
    };
    let kind = request.kind();
    if kind != tagged {
        return NodeReply::Error(WireError::Invalid(format!("a {kind} request in a frame tagged {tagged}")));
    }
    if let Err(refusal) = authorize(peer.role, &request) {
        count_forbidden(peer, kind, &refusal);
        return NodeReply::Error(refusal);
    }
    let started = Instant::now();
    let reply = handler(request).await;
    metrics::histogram!("boxoffice_internal_seconds", "kind" => kind.as_str()).record(started.elapsed().as_secs_f64());
    reply
}

fn refuse(
    peer: Peer,
    kind: RequestKind,
    refusal: WireError,
    header: Header,
    frames: &mpsc::UnboundedSender<Outgoing>,
    permits: (OwnedSemaphorePermit, OwnedSemaphorePermit),
) {
    count_forbidden(peer, kind, &refusal);
    send_reply(header, NodeReply::Error(refusal), frames, permits);
}

fn count_forbidden(peer: Peer, kind: RequestKind, refusal: &WireError) {
    metrics::counter!("boxoffice_rpc_forbidden_total", "kind" => kind.as_str(), "role" => peer.role.as_str())
        .increment(1);
    tracing::warn!(peer = %peer.addr, role = %peer.role, %kind, error = %refusal, "request refused");
}

fn send_reply(
    header: Header,
    reply: NodeReply,
    frames: &mpsc::UnboundedSender<Outgoing>,
    permits: (OwnedSemaphorePermit, OwnedSemaphorePermit),
) {
    match raft_store::encode(&reply) {
        Ok(body) => {
            let _ = frames.send(Outgoing { id: header.id, tag: header.tag, body, _in_flight: Some(permits) });
        }
        Err(e) => tracing::error!(error = %e, "reply not encodable"),
    }
}
