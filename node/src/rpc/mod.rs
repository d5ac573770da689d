//! Calls between processes: length-prefixed frames multiplexed on one mutual-TLS connection per
//! peer and lane.
//!
//! Every call between processes of a cluster (replication, proposals from api instances, the
//! operator's CLI) is a [`NodeRequest`] answered by a [`NodeReply`]. They used to travel as
//! HTTP/2 requests; profiles of the flash sale put half of a shard leader's CPU in HTTP/2 framing,
//! header compression and the HTTP client's per-request work. Here a call is one frame each way:
//!
//! ```text
//! connection: TLS (both sides present a certificate of the cluster CA), then inside it
//!             PREAMBLE, the hello frame (the cluster secret), then frames both ways
//! frame:      u32 length | u64 call id | u8 kind tag | body      (see `frame.rs`)
//! ```
//!
//! The server learns the caller's role from its certificate (`pki::role_of`) and judges every
//! request by it (`authz.rs`); the cluster secret in the hello is a second factor. Request bodies
//! are `raft_store::encode(NodeRequest)`, reply bodies `raft_store::encode(NodeReply)`, under the
//! request's id and tag. Replies come in any order, so a slow call (a change-feed poll, a
//! snapshot) never holds up the others. Writes are buffered and flushed when a side has nothing
//! more queued: a burst of calls costs few system calls.
//!
//! A client keeps two connections per peer: the control connection carries heartbeats, appends,
//! votes, proposals and reads; the bulk connection carries snapshots' chunks
//! ([`NodeClient::call_bulk`]), so a large transfer never delays a heartbeat in a queue or a
//! socket buffer. The server serves every connection alike.
//!
//! The node's port also serves plain HTTP for operators (`/healthz`, `/readyz`, `/metrics`): a
//! connection whose first byte opens a TLS handshake is ours, one that starts with the retired
//! plaintext protocol's preamble is refused with a reason, anything else goes to the HTTP server
//! (`listener.rs`). Limits on connections, handshakes, idleness, frame sizes and calls in flight
//! are in `limits.rs` and `frame.rs`.
//!
//! [`NodeClient::call_bulk`]: crate::NodeClient::call_bulk

mod client;
mod frame;
mod limits;
mod listener;
mod server;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use seams::BoxFuture;
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::{mpsc, OwnedSemaphorePermit};

use crate::wire::{NodeReply, NodeRequest};

pub use client::RpcNodeClient;
pub use frame::{PREAMBLE, PREAMBLE_V1};
pub use limits::{
    PortLimits, PortLimitsError, CONNECTIONS_MAX_DEFAULT, CONNECTIONS_PER_ADDRESS_MAX_DEFAULT,
    HANDSHAKE_TIMEOUT_DEFAULT, IDLE_TIMEOUT_DEFAULT,
};
pub use listener::{HttpStream, PortConfig, SplitListener, HTTP_LIFETIME};

/// What answers the calls arriving on a node's port (already authorized).
pub type Handler = Arc<dyn Fn(NodeRequest) -> BoxFuture<'static, NodeReply> + Send + Sync>;

/// Read and write buffer of each connection.
const BUFFER_BYTES: usize = 64 * 1024;

/// A frame queued for a connection's writer, with what it holds until it is written: on the
/// server, its call's places among the connection's calls and bytes in flight.
struct Outgoing {
    id: u64,
    tag: u8,
    body: Vec<u8>,
    _in_flight: Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)>,
}

impl Outgoing {
    fn new(id: u64, tag: u8, body: Vec<u8>) -> Outgoing {
        Outgoing { id, tag, body, _in_flight: None }
    }
}

/// Writes queued frames, flushing whenever the queue runs dry; `written` is told after each
/// flush (the server's idle clock).
async fn run_writer<W: AsyncWrite + Unpin>(
    half: W,
    mut queue: mpsc::UnboundedReceiver<Outgoing>,
    written: Option<Arc<server::Activity>>,
) {
    let mut w = BufWriter::with_capacity(BUFFER_BYTES, half);
    while let Some(first) = queue.recv().await {
        let mut next = Some(first);
        while let Some(frame) = next.take() {
            if frame::write_frame(&mut w, frame.id, frame.tag, &frame.body).await.is_err() {
                return;
            }
            next = queue.try_recv().ok();
        }
        if w.flush().await.is_err() {
            return;
        }
        if let Some(activity) = &written {
            activity.touch();
        }
    }
    let _ = w.shutdown().await;
}
