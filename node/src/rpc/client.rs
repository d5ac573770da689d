//! The calling side: [`RpcNodeClient`], two TLS connections per peer (control and bulk), each
//! opened on first use and again after it breaks, with calls multiplexed on it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use seams::BoxFuture;
use tokio::io::{AsyncWriteExt, BufReader, ReadHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::frame::{
    read_body, read_header, reply_bytes_max, skip_body, FRAME_BYTES_MAX, HELLO_BYTES_MAX, HELLO_ID, HELLO_TAG, PREAMBLE,
};
use super::{run_writer, Outgoing, BUFFER_BYTES};
use crate::wire::{NodeClient, NodeReply, NodeRequest, RequestKind, TransportError};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The client's side of the TLS handshake; the server allows its own (`handshake_timeout`).
const TLS_TIMEOUT: Duration = Duration::from_secs(5);

/// A call waiting for its reply, and the largest reply it takes.
struct Waiter {
    reply: oneshot::Sender<Result<Vec<u8>, TransportError>>,
    reply_bytes_max: usize,
}

/// One connection to a peer and the calls waiting for their replies on it.
pub(super) struct Conn {
    addr: String,
    frames: mpsc::UnboundedSender<Outgoing>,
    waiting: Mutex<HashMap<u64, Waiter>>,
    next_id: AtomicU64,
    closed: AtomicBool,
}

/// What a client proves itself with: its TLS configuration (its credential, the cluster CA, a
/// node's role expected of the server) and the cluster secret, a second factor in the hello.
#[derive(Clone)]
struct Identity {
    tls: TlsConnector,
    secret: Arc<str>,
}

impl Conn {
    async fn open(addr: &str, identity: &Identity) -> Result<Arc<Conn>, TransportError> {
        let unreachable = |e: String| TransportError::Unreachable(addr.to_owned(), e);
        let name = pki::server_name(addr).map_err(|e| unreachable(e.to_string()))?;
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| unreachable("connect timed out".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        tcp.set_nodelay(true).map_err(|e| unreachable(e.to_string()))?;
        let mut tls = tokio::time::timeout(TLS_TIMEOUT, identity.tls.connect(name, tcp))
            .await
            .map_err(|_| unreachable("TLS handshake timed out".into()))?
            .map_err(|e| unreachable(format!("TLS: {e}")))?;
        tls.write_all(PREAMBLE).await.map_err(|e| unreachable(e.to_string()))?;
        let (read, write) = tokio::io::split(tls);
        let (frames, queue) = mpsc::unbounded_channel();
        let conn = Arc::new(Conn {
            addr: addr.to_owned(),
            frames,
            waiting: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(HELLO_ID + 1),
            closed: AtomicBool::new(false),
        });
        // Queued first, so the secret precedes every call.
        let _ = conn.frames.send(Outgoing::new(HELLO_ID, HELLO_TAG, identity.secret.as_bytes().to_vec()));
        tokio::spawn(run_writer(write, queue, None));
        tokio::spawn(run_reader(read, conn.clone()));
        Ok(conn)
    }

    fn is_open(&self) -> bool {
        !self.closed.load(Ordering::Acquire) && !self.frames.is_closed()
    }

    async fn call(&self, kind: RequestKind, body: Vec<u8>, timeout: Duration) -> Result<Vec<u8>, TransportError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        self.waiting_calls().insert(id, Waiter { reply, reply_bytes_max: reply_bytes_max(kind) });
        // Checked after registering: a reader that closed meanwhile has failed every waiter it
        // saw, and this one is failed here.
        if !self.is_open() || self.frames.send(Outgoing::new(id, kind.tag(), body)).is_err() {
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
            let _ = waiter.reply.send(Err(why.clone()));
        }
    }

    /// Reads one reply and hands it to its call; `Err` ends the connection.
    async fn take_reply(&self, r: &mut BufReader<ReadHalf<TlsStream<TcpStream>>>) -> Result<(), TransportError> {
        let lost = |e: std::io::Error| TransportError::Unreachable(self.addr.clone(), e.to_string());
        let header = read_header(r).await.map_err(lost)?;
        if header.id == HELLO_ID {
            // The server refused the hello, and says why.
            let why = read_body(r, header.body_bytes.min(HELLO_BYTES_MAX)).await.map_err(lost)?;
            return Err(TransportError::BadReply(self.addr.clone(), String::from_utf8_lossy(&why).into_owned()));
        }
        // A call that timed out is no longer waiting: its reply is read past, within any bound.
        let bound = self.waiting_calls().get(&header.id).map_or(FRAME_BYTES_MAX, |w| w.reply_bytes_max);
        if header.body_bytes > bound {
            let why = format!("a reply of {} bytes, above the {bound} its call allows", header.body_bytes);
            return Err(TransportError::BadReply(self.addr.clone(), why));
        }
        if !self.waiting_calls().contains_key(&header.id) {
            return skip_body(r, header.body_bytes).await.map_err(lost);
        }
        let body = read_body(r, header.body_bytes).await.map_err(lost)?;
        if let Some(waiter) = self.waiting_calls().remove(&header.id) {
            let _ = waiter.reply.send(Ok(body));
        }
        Ok(())
    }
}

async fn run_reader(half: ReadHalf<TlsStream<TcpStream>>, conn: Arc<Conn>) {
    let mut r = BufReader::with_capacity(BUFFER_BYTES, half);
    let why = loop {
        if let Err(why) = conn.take_reply(&mut r).await {
            break why;
        }
    };
    conn.close(why);
}

/// Which of a peer's two connections a call travels on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Lane {
    /// Heartbeats, appends, votes, proposals, reads: small frames, answered fast.
    Control,
    /// Snapshots' chunks: a megabyte each. On a connection of their own, so a transfer's frames
    /// never queue in front of a heartbeat in a writer or a socket buffer.
    Bulk,
}

/// A [`NodeClient`] over this protocol: two connections per peer address (control and bulk),
/// each opened on first use and again after it breaks.
pub struct RpcNodeClient {
    identity: Identity,
    pub(super) conns: Mutex<HashMap<(String, Lane), ConnSlot>>,
}

/// A peer's connection, if open; locked while one is being opened.
type ConnSlot = Arc<tokio::sync::Mutex<Option<Arc<Conn>>>>;

impl RpcNodeClient {
    /// A client that presents `credential`, expects a node's certificate of its CA at every
    /// address it calls, and says the cluster `secret` in its hello.
    pub fn new(credential: &pki::Credential, secret: &str) -> Result<RpcNodeClient, pki::PkiError> {
        let tls = TlsConnector::from(credential.client_config_for(pki::Role::Node)?);
        Ok(RpcNodeClient { identity: Identity { tls, secret: secret.into() }, conns: Mutex::new(HashMap::new()) })
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
        let conn = Conn::open(addr, &self.identity).await?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    async fn call_on(
        &self,
        lane: Lane,
        addr: String,
        request: NodeRequest,
        timeout: Duration,
    ) -> Result<NodeReply, TransportError> {
        let kind = request.kind();
        let body = raft_store::encode(&request).map_err(|e| TransportError::BadReply(addr.clone(), e.to_string()))?;
        let deadline = tokio::time::Instant::now() + timeout;
        let conn = tokio::time::timeout(timeout, self.conn(&addr, lane))
            .await
            .map_err(|_| TransportError::Timeout(addr.clone()))??;
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let reply = conn.call(kind, body, remaining).await?;
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
