//! Node-to-node calls over TCP: length-prefixed frames multiplexed on one connection per peer.
//!
//! Every call between processes of a cluster (replication, proposals from api instances, the
//! operator's CLI) is a [`NodeRequest`] answered by a [`NodeReply`]. They used to travel as
//! HTTP/2 requests; profiles of the flash sale put half of a shard leader's CPU in HTTP/2 framing,
//! header compression and the HTTP client's per-request work. Here a call is one frame each way:
//!
//! ```text
//! connection: PREAMBLE, then frames both ways
//! frame:      u32 length (big-endian) | u64 call id (big-endian) | body (length - 8 bytes)
//! ```
//!
//! A client keeps two connections per peer: the control connection carries heartbeats, appends,
//! votes, proposals and reads; the bulk connection carries snapshots' chunks
//! ([`NodeClient::call_bulk`]), so a large transfer never delays a heartbeat in a queue or a
//! socket buffer. The server serves every connection alike.
//!
//! The client's first frame (id 0) carries the cluster secret; a server that does not accept it
//! answers with frame 0 and closes. Request bodies are `raft_store::encode(NodeRequest)`, reply
//! bodies `raft_store::encode(NodeReply)`, under the request's id. Replies come in any order, so
//! a slow call (a change-feed poll, a snapshot) never holds up the others. Writes are buffered and
//! flushed when a side has nothing more queued: a burst of calls costs few system calls.
//!
//! The node's port serves both this protocol and HTTP (`/healthz`, `/readyz`, `/metrics`): a
//! connection that starts with [`PREAMBLE`] is ours, anything else goes to the HTTP server.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use seams::BoxFuture;
use subtle::ConstantTimeEq;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use crate::wire::{NodeClient, NodeReply, NodeRequest, TransportError, WireError};

/// The first bytes of every connection of this protocol. No HTTP request starts with them.
pub const PREAMBLE: &[u8; 16] = b"BOXOFFICE-RPC/1\n";
/// Largest frame. A snapshot travels in chunks of at most `raft_store::SNAPSHOT_CHUNK_BYTES_MAX`;
/// this bounds whatever else a peer sends.
const FRAME_BYTES_MAX: usize = (1 << 30) + 8;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a new connection may take to show which protocol it speaks.
const SNIFF_TIMEOUT: Duration = Duration::from_secs(10);
/// The id of the secret frame, and of the server's refusal.
const HELLO: u64 = 0;
const REFUSED: &[u8] = b"cluster secret missing or wrong";
/// Read and write buffer of each connection.
const BUFFER_BYTES: usize = 64 * 1024;

/// A frame this protocol cannot carry, or a length no peer of it sends.
#[derive(Debug, thiserror::Error)]
enum FrameError {
    #[error("frame too large")]
    TooLarge { body_bytes: usize },
    #[error("bad frame length {len_bytes}")]
    BadLength { len_bytes: usize },
}

async fn write_frame<W: AsyncWriteExt + Unpin>(w: &mut W, id: u64, body: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(body.len() + 8)
        .map_err(|_| std::io::Error::other(FrameError::TooLarge { body_bytes: body.len() }))?;
    w.write_all(&len.to_be_bytes()).await?;
    w.write_all(&id.to_be_bytes()).await?;
    w.write_all(body).await
}

async fn read_frame<R: AsyncReadExt + Unpin>(r: &mut R) -> std::io::Result<(u64, Vec<u8>)> {
    let len = r.read_u32().await? as usize;
    if !(8..=FRAME_BYTES_MAX).contains(&len) {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, FrameError::BadLength { len_bytes: len }));
    }
    let id = r.read_u64().await?;
    let mut body = vec![0; len - 8];
    r.read_exact(&mut body).await?;
    Ok((id, body))
}

/// Writes queued frames, flushing whenever the queue runs dry.
async fn run_writer(half: OwnedWriteHalf, mut queue: mpsc::UnboundedReceiver<(u64, Vec<u8>)>) {
    let mut w = BufWriter::with_capacity(BUFFER_BYTES, half);
    while let Some((id, body)) = queue.recv().await {
        if write_frame(&mut w, id, &body).await.is_err() {
            return;
        }
        while let Ok((id, body)) = queue.try_recv() {
            if write_frame(&mut w, id, &body).await.is_err() {
                return;
            }
        }
        if w.flush().await.is_err() {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Client

type Waiter = oneshot::Sender<Result<Vec<u8>, TransportError>>;

/// One connection to a peer and the calls waiting for their replies on it.
struct Conn {
    addr: String,
    frames: mpsc::UnboundedSender<(u64, Vec<u8>)>,
    waiting: Mutex<HashMap<u64, Waiter>>,
    next_id: AtomicU64,
    closed: AtomicBool,
}

impl Conn {
    async fn open(addr: &str, secret: &str) -> Result<Arc<Conn>, TransportError> {
        let unreachable = |e: String| TransportError::Unreachable(addr.to_owned(), e);
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| unreachable("connect timed out".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        stream.set_nodelay(true).map_err(|e| unreachable(e.to_string()))?;
        let (read, mut write) = stream.into_split();
        write.write_all(PREAMBLE).await.map_err(|e| unreachable(e.to_string()))?;
        let (frames, queue) = mpsc::unbounded_channel();
        let conn = Arc::new(Conn {
            addr: addr.to_owned(),
            frames,
            waiting: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(HELLO + 1),
            closed: AtomicBool::new(false),
        });
        // Queued first, so the secret precedes every call.
        let _ = conn.frames.send((HELLO, secret.as_bytes().to_vec()));
        tokio::spawn(run_writer(write, queue));
        tokio::spawn(run_client_reader(read, conn.clone()));
        Ok(conn)
    }

    fn is_open(&self) -> bool {
        !self.closed.load(Ordering::Acquire) && !self.frames.is_closed()
    }

    async fn call(&self, body: Vec<u8>, timeout: Duration) -> Result<Vec<u8>, TransportError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        self.waiting_calls().insert(id, reply);
        // Checked after registering: a reader that closed meanwhile has failed every waiter it
        // saw, and this one is failed here.
        if !self.is_open() || self.frames.send((id, body)).is_err() {
            self.waiting_calls().remove(&id);
            return Err(TransportError::Unreachable(self.addr.clone(), "connection closed".into()));
        }
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(TransportError::Unreachable(self.addr.clone(), "connection closed".into())),
            Err(_) => {
                self.waiting_calls().remove(&id);
                Err(TransportError::Timeout(self.addr.clone()))
            }
        }
    }

    fn waiting_calls(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Waiter>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks the connection closed and fails every call still waiting on it.
    fn close(&self, why: TransportError) {
        self.closed.store(true, Ordering::Release);
        let waiting: Vec<Waiter> = self.waiting_calls().drain().map(|(_, w)| w).collect();
        for waiter in waiting {
            let _ = waiter.send(Err(why.clone()));
        }
    }
}

async fn run_client_reader(half: OwnedReadHalf, conn: Arc<Conn>) {
    let mut r = BufReader::with_capacity(BUFFER_BYTES, half);
    let why = loop {
        match read_frame(&mut r).await {
            Ok((HELLO, body)) => {
                break TransportError::BadReply(conn.addr.clone(), String::from_utf8_lossy(&body).into_owned());
            }
            Ok((id, body)) => {
                if let Some(waiter) = conn.waiting_calls().remove(&id) {
                    let _ = waiter.send(Ok(body));
                }
            }
            Err(e) => break TransportError::Unreachable(conn.addr.clone(), e.to_string()),
        }
    };
    conn.close(why);
}

/// Which of a peer's two connections a call travels on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Lane {
    /// Heartbeats, appends, votes, proposals, reads: small frames, answered fast.
    Control,
    /// Snapshots' chunks: a megabyte each. On a connection of their own, so a transfer's frames
    /// never queue in front of a heartbeat in a writer or a socket buffer.
    Bulk,
}

/// A [`NodeClient`] over this protocol: two connections per peer address (control and bulk),
/// each opened on first use and again after it breaks.
pub struct RpcNodeClient {
    secret: String,
    conns: Mutex<HashMap<(String, Lane), ConnSlot>>,
}

/// A peer's connection, if open; locked while one is being opened.
type ConnSlot = Arc<tokio::sync::Mutex<Option<Arc<Conn>>>>;

impl RpcNodeClient {
    pub fn new(secret: &str) -> RpcNodeClient {
        RpcNodeClient { secret: secret.to_owned(), conns: Mutex::new(HashMap::new()) }
    }

    async fn conn(&self, addr: &str, lane: Lane) -> Result<Arc<Conn>, TransportError> {
        let slot = {
            let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
            conns.entry((addr.to_owned(), lane)).or_default().clone()
        };
        // One connection attempt per address at a time; calls to other peers do not wait.
        let mut slot = slot.lock().await;
        if let Some(conn) = slot.as_ref().filter(|c| c.is_open()) {
            return Ok(conn.clone());
        }
        let conn = Conn::open(addr, &self.secret).await?;
        *slot = Some(conn.clone());
        Ok(conn)
    }
}

impl RpcNodeClient {
    async fn call_on(
        &self,
        lane: Lane,
        addr: String,
        request: NodeRequest,
        timeout: Duration,
    ) -> Result<NodeReply, TransportError> {
        let body = raft_store::encode(&request).map_err(|e| TransportError::BadReply(addr.clone(), e.to_string()))?;
        let deadline = tokio::time::Instant::now() + timeout;
        let conn = tokio::time::timeout(timeout, self.conn(&addr, lane))
            .await
            .map_err(|_| TransportError::Timeout(addr.clone()))??;
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let reply = conn.call(body, remaining).await?;
        raft_store::decode(&reply).map_err(|e| TransportError::BadReply(addr, e.to_string()))
    }
}

impl NodeClient for RpcNodeClient {
    fn call(
        &self,
        addr: &str,
        request: NodeRequest,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<NodeReply, TransportError>> {
        Box::pin(self.call_on(Lane::Control, addr.to_owned(), request, timeout))
    }

    fn call_bulk(
        &self,
        addr: &str,
        request: NodeRequest,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<NodeReply, TransportError>> {
        Box::pin(self.call_on(Lane::Bulk, addr.to_owned(), request, timeout))
    }
}

// ---------------------------------------------------------------------------------------------
// Server

/// What answers the calls arriving on a node's port.
pub type Handler = Arc<dyn Fn(NodeRequest) -> BoxFuture<'static, NodeReply> + Send + Sync>;

/// Serves one connection that has sent [`PREAMBLE`]: checks the secret, then answers every
/// call in its own task.
async fn serve_connection(stream: TcpStream, secret: Arc<[u8]>, handler: Handler) {
    let (read, write) = stream.into_split();
    let mut r = BufReader::with_capacity(BUFFER_BYTES, read);
    let (frames, queue) = mpsc::unbounded_channel();
    let writer = tokio::spawn(run_writer(write, queue));
    match read_frame(&mut r).await {
        Ok((HELLO, given)) if bool::from(given.ct_eq(&secret)) => {}
        Ok(_) => {
            metrics::counter!("boxoffice_internal_rejected_total").increment(1);
            let _ = frames.send((HELLO, REFUSED.to_vec()));
            drop(frames);
            let _ = writer.await;
            return;
        }
        Err(_) => return,
    }
    while let Ok((id, body)) = read_frame(&mut r).await {
        let (handler, frames) = (handler.clone(), frames.clone());
        tokio::spawn(async move {
            let reply = match raft_store::decode::<NodeRequest>(&body) {
                Ok(request) => {
                    let kind = request.kind();
                    let started = std::time::Instant::now();
                    let reply = handler(request).await;
                    metrics::histogram!("boxoffice_internal_seconds", "kind" => kind)
                        .record(started.elapsed().as_secs_f64());
                    reply
                }
                Err(e) => NodeReply::Error(WireError::Invalid(format!("undecodable request: {e}"))),
            };
            match raft_store::encode(&reply) {
                Ok(bytes) => {
                    let _ = frames.send((id, bytes));
                }
                Err(e) => tracing::error!(error = %e, "reply not encodable"),
            }
        });
    }
}

/// Whether a new connection speaks this protocol: it does if its first bytes are [`PREAMBLE`]
/// (consumed), it does not if its first byte differs (nothing consumed). `None`: neither, close it.
async fn speaks_rpc(stream: &mut TcpStream) -> Option<bool> {
    let mut first = [0u8; 1];
    let n = tokio::time::timeout(SNIFF_TIMEOUT, stream.peek(&mut first)).await.ok()?.ok()?;
    if n == 0 {
        return None;
    }
    if first[0] != PREAMBLE[0] {
        return Some(false);
    }
    let mut preamble = [0u8; PREAMBLE.len()];
    tokio::time::timeout(SNIFF_TIMEOUT, stream.read_exact(&mut preamble)).await.ok()?.ok()?;
    (&preamble == PREAMBLE).then_some(true)
}

/// The node's listener: connections that speak this protocol are served here, the others are
/// handed to the HTTP server through [`SplitListener::accept_http`].
pub struct SplitListener {
    http: mpsc::Receiver<(TcpStream, SocketAddr)>,
    local: SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
}

impl SplitListener {
    pub fn new(listener: TcpListener, secret: &str, handler: Handler) -> std::io::Result<SplitListener> {
        let local = listener.local_addr()?;
        let secret: Arc<[u8]> = secret.as_bytes().into();
        let (to_http, http) = mpsc::channel(256);
        let accepting = tokio::spawn(async move {
            loop {
                let (mut stream, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: wait rather than spin.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(error = %e, "TCP_NODELAY not set");
                }
                let (secret, handler, to_http) = (secret.clone(), handler.clone(), to_http.clone());
                tokio::spawn(async move {
                    match speaks_rpc(&mut stream).await {
                        Some(true) => serve_connection(stream, secret, handler).await,
                        Some(false) => {
                            let _ = to_http.send((stream, peer)).await;
                        }
                        None => {}
                    }
                });
            }
        });
        Ok(SplitListener { http, local, accepting })
    }
}

impl Drop for SplitListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl SplitListener {
    /// The next connection that does not speak this protocol, for the HTTP server.
    pub async fn accept_http(&mut self) -> (TcpStream, SocketAddr) {
        match self.http.recv().await {
            Some(accepted) => accepted,
            // The accept loop never ends while the listener lives.
            None => std::future::pending().await,
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::RoutingReply;

    const SECRET: &str = "rpc-test-secret-0123456789";

    /// A server whose handler answers `Routing` with its own "node id", after `delay_ms` for
    /// `Join { shard_count: delay_ms }`.
    async fn server(node_id: u64) -> (SplitListener, String) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let handler: Handler = Arc::new(move |request| {
            Box::pin(async move {
                match request {
                    NodeRequest::Join { shard_count } => {
                        tokio::time::sleep(Duration::from_millis(u64::from(shard_count))).await;
                        NodeReply::Done
                    }
                    _ => NodeReply::Routing(RoutingReply { node_id, ..RoutingReply::default() }),
                }
            })
        });
        let split = SplitListener::new(listener, SECRET, handler).unwrap();
        let addr = split.local.to_string();
        (split, addr)
    }

    fn node_id(reply: NodeReply) -> u64 {
        match reply {
            NodeReply::Routing(r) => r.node_id,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn many_calls_share_one_connection_and_a_slow_one_holds_up_none() {
        let (_server, addr) = server(7).await;
        let client = Arc::new(RpcNodeClient::new(SECRET));
        let slow = {
            let (client, addr) = (client.clone(), addr.clone());
            tokio::spawn(async move {
                client.call(&addr, NodeRequest::Join { shard_count: 500 }, Duration::from_secs(5)).await
            })
        };
        let started = std::time::Instant::now();
        let calls: Vec<_> = (0..200)
            .map(|_| {
                let (client, addr) = (client.clone(), addr.clone());
                tokio::spawn(async move { client.call(&addr, NodeRequest::Routing, Duration::from_secs(5)).await })
            })
            .collect();
        for call in calls {
            assert_eq!(node_id(call.await.unwrap().unwrap()), 7);
        }
        assert!(started.elapsed() < Duration::from_millis(500), "the fast calls waited for the slow one");
        assert!(matches!(slow.await.unwrap(), Ok(NodeReply::Done)));
        assert_eq!(client.conns.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn bulk_calls_travel_on_a_connection_of_their_own() {
        let (_server, addr) = server(3).await;
        let client = Arc::new(RpcNodeClient::new(SECRET));
        // A bulk call still in progress (the handler takes 300 ms) while control calls come and go.
        let bulk = {
            let (client, addr) = (client.clone(), addr.clone());
            tokio::spawn(async move {
                client.call_bulk(&addr, NodeRequest::Join { shard_count: 300 }, Duration::from_secs(5)).await
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = std::time::Instant::now();
        for _ in 0..20 {
            assert_eq!(node_id(client.call(&addr, NodeRequest::Routing, Duration::from_secs(5)).await.unwrap()), 3);
        }
        assert!(started.elapsed() < Duration::from_millis(250), "control calls waited for the bulk one");
        assert!(matches!(bulk.await.unwrap(), Ok(NodeReply::Done)));
        let lanes: Vec<Lane> = client.conns.lock().unwrap().keys().map(|(_, lane)| *lane).collect();
        assert_eq!(lanes.len(), 2, "one control and one bulk connection: {lanes:?}");
    }

    #[tokio::test]
    async fn a_wrong_secret_is_refused_and_http_still_reaches_the_http_side() {
        let (mut server, addr) = server(1).await;
        let intruder = RpcNodeClient::new("not-the-cluster-secret");
        let err = intruder.call(&addr, NodeRequest::Routing, Duration::from_secs(2)).await.unwrap_err();
        assert!(err.to_string().contains("cluster secret"), "{err}");
        // A connection that does not start with the preamble is handed to the HTTP side.
        let mut http = TcpStream::connect(&addr).await.unwrap();
        http.write_all(b"GET /healthz HTTP/1.1\r\n\r\n").await.unwrap();
        let (mut handed, _) = tokio::time::timeout(Duration::from_secs(2), server.accept_http())
            .await
            .expect("the HTTP connection reaches the HTTP server");
        let mut start = [0u8; 4];
        handed.read_exact(&mut start).await.unwrap();
        assert_eq!(&start, b"GET ", "nothing of the HTTP request was consumed");
    }

    /// A server in a runtime of its own, so that shutting the runtime down closes its sockets as
    /// a crashed process would.
    fn server_in_own_runtime(node_id: u64, addr: &str) -> tokio::runtime::Runtime {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let addr = addr.to_owned();
        runtime.block_on(async move {
            let listener = loop {
                match TcpListener::bind(&addr).await {
                    Ok(l) => break l,
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            };
            let handler: Handler = Arc::new(move |_| {
                Box::pin(async move { NodeReply::Routing(RoutingReply { node_id, ..RoutingReply::default() }) })
            });
            // Kept alive by the runtime's tasks until it shuts down.
            std::mem::forget(SplitListener::new(listener, SECRET, handler).unwrap());
        });
        runtime
    }

    #[test]
    fn calls_fail_fast_when_the_peer_goes_and_reconnect_when_it_is_back() {
        let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
        let first = server_in_own_runtime(1, &addr);
        let client_runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let client = RpcNodeClient::new(SECRET);
        let call = |timeout| client_runtime.block_on(client.call(&addr, NodeRequest::Routing, timeout));
        assert_eq!(node_id(call(Duration::from_secs(2)).unwrap()), 1);
        first.shutdown_background();
        // The peer is gone: a call fails well before its timeout.
        let started = std::time::Instant::now();
        let failed = call(Duration::from_secs(5));
        assert!(failed.is_err(), "{failed:?}");
        assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
        // Back on the same address: the next call connects anew.
        let _second = server_in_own_runtime(2, &addr);
        assert_eq!(node_id(call(Duration::from_secs(2)).unwrap()), 2);
    }

    #[tokio::test]
    async fn a_call_that_outlives_its_timeout_says_so() {
        let (_server, addr) = server(1).await;
        let client = RpcNodeClient::new(SECRET);
        let err = client.call(&addr, NodeRequest::Join { shard_count: 300 }, Duration::from_millis(50)).await;
        assert!(matches!(err, Err(TransportError::Timeout(_))), "{err:?}");
        // The connection is still good for the next call.
        assert_eq!(node_id(client.call(&addr, NodeRequest::Routing, Duration::from_secs(2)).await.unwrap()), 1);
    }
}
