//! The node's port: every accepted connection takes a place under the caps (or is closed at
//! once), shows within the handshake timeout which protocol it speaks, and is then served: ours
//! over mutual TLS, the retired plaintext protocol refused with a reason, anything else handed to
//! the HTTP server as an [`HttpStream`] that lives at most [`HTTP_LIFETIME`].

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use subtle::ConstantTimeEq;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::frame::{read_body, read_header, write_frame, HELLO_BYTES_MAX, HELLO_ID, HELLO_TAG, PREAMBLE, PREAMBLE_V1};
use super::limits::{ConnectionCaps, PortLimits, Refusal, Slot};
use super::server::{serve_connection, Peer};
use super::Handler;

/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;
/// What a client of the retired plaintext protocol reads, as that protocol's refusal frame.
const PLAINTEXT_REFUSED: &[u8] = b"plaintext RPC is refused: nodes speak BOXOFFICE-RPC/2 over mutual TLS (--tls-dir)";
/// What a client whose hello names another cluster secret reads.
const SECRET_REFUSED: &[u8] = b"cluster secret missing or wrong";
/// The longest an HTTP connection of the port lives: it serves one probe or scrape
/// (keep-alive is off), so a client that stops reading or trickles its request is cut off.
pub const HTTP_LIFETIME: Duration = Duration::from_secs(30);
/// HTTP connections waiting for the HTTP server to take them.
const HTTP_QUEUE_MAX: usize = 256;
/// The pause after an accept error (file descriptors exhausted): wait rather than spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// What the node's port serves with.
#[derive(Clone)]
pub struct PortConfig {
    /// The node's credential as a server: client certificates of the cluster CA required.
    pub tls: Arc<rustls::ServerConfig>,
    /// The cluster secret every hello must carry.
    pub secret: String,
    pub limits: PortLimits,
}

impl std::fmt::Debug for PortConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortConfig").field("secret", &"****").field("limits", &self.limits).finish_non_exhaustive()
    }
}

/// The node's listener: connections that speak this protocol are served here, the others are
/// handed to the HTTP server through [`SplitListener::accept_http`].
pub struct SplitListener {
    http: mpsc::Receiver<(HttpStream, SocketAddr)>,
    local: SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
}

/// What every connection's task shares.
struct Port {
    acceptor: TlsAcceptor,
    secret: Arc<[u8]>,
    limits: PortLimits,
    handler: Handler,
    to_http: mpsc::Sender<(HttpStream, SocketAddr)>,
}

/// The protocol a connection's first bytes show.
enum Protocol {
    Tls,
    Http,
}

impl SplitListener {
    pub fn new(listener: TcpListener, config: PortConfig, handler: Handler) -> std::io::Result<SplitListener> {
        config.limits.validate().map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let local = listener.local_addr()?;
        let (to_http, http) = mpsc::channel(HTTP_QUEUE_MAX);
        let caps = ConnectionCaps::new(config.limits.clone());
        let port = Arc::new(Port {
            acceptor: TlsAcceptor::from(config.tls),
            secret: config.secret.as_bytes().into(),
            limits: config.limits,
            handler,
            to_http,
        });
        let accepting = tokio::spawn(accept_loop(listener, caps, port));
        Ok(SplitListener { http, local, accepting })
    }

    /// The next connection that does not speak this protocol, for the HTTP server.
    pub async fn accept_http(&mut self) -> (HttpStream, SocketAddr) {
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

impl Drop for SplitListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

async fn accept_loop(listener: TcpListener, caps: Arc<ConnectionCaps>, port: Arc<Port>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        // Beyond a cap the connection is closed before a byte of it is read.
        let slot = match caps.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(refusal) => {
                refusal.count();
                continue;
            }
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
        tokio::spawn(port.clone().serve(stream, peer, slot));
    }
}

impl Port {
    async fn serve(self: Arc<Self>, mut stream: TcpStream, peer: SocketAddr, mut slot: Slot) {
        let deadline = Instant::now() + self.limits.handshake_timeout;
        let protocol = match tokio::time::timeout_at(deadline, sniff(&mut stream)).await {
            Ok(Ok(protocol)) => protocol,
            Ok(Err(Some(refusal))) => return refusal.count(),
            Ok(Err(None)) => return,
            Err(_) => return Refusal::HandshakeTimeout.count(),
        };
        match protocol {
            Protocol::Http => {
                slot.establish();
                let _ = self.to_http.send((HttpStream::new(stream, slot), peer)).await;
            }
            Protocol::Tls => {
                let (tls, role) = match tokio::time::timeout_at(deadline, self.handshake(stream)).await {
                    Ok(Ok(done)) => done,
                    Ok(Err(refusal)) => {
                        tracing::debug!(%peer, reason = refusal.label(), "connection refused");
                        return refusal.count();
                    }
                    Err(_) => return Refusal::HandshakeTimeout.count(),
                };
                slot.establish();
                let (read, write) = tokio::io::split(tls);
                let peer = Peer { role, addr: peer };
                serve_connection(read, write, peer, self.handler.clone(), self.limits.idle_timeout).await;
                drop(slot);
            }
        }
    }

    /// TLS with a client certificate of the cluster CA that names a role, then the preamble and
    /// the hello with the cluster secret.
    async fn handshake(&self, stream: TcpStream) -> Result<(TlsStream<TcpStream>, pki::Role), Refusal> {
        let mut tls = self.acceptor.accept(stream).await.map_err(|_| Refusal::Tls)?;
        let role = tls.get_ref().1.peer_certificates().and_then(|certs| certs.first()).and_then(pki::role_of);
        let role = role.ok_or(Refusal::NoRole)?;
        let mut preamble = [0u8; PREAMBLE.len()];
        tls.read_exact(&mut preamble).await.map_err(|_| Refusal::Preamble)?;
        if &preamble != PREAMBLE {
            return Err(Refusal::Preamble);
        }
        let hello = read_header(&mut tls).await.map_err(|_| Refusal::BadFrame)?;
        if hello.id != HELLO_ID || hello.tag != HELLO_TAG || hello.body_bytes > HELLO_BYTES_MAX {
            return Err(Refusal::BadFrame);
        }
        let given = read_body(&mut tls, hello.body_bytes).await.map_err(|_| Refusal::BadFrame)?;
        if !bool::from(given.ct_eq(&self.secret)) {
            let _ = write_frame(&mut tls, HELLO_ID, HELLO_TAG, SECRET_REFUSED).await;
            let _ = tls.shutdown().await;
            return Err(Refusal::Secret);
        }
        Ok((tls, role))
    }
}

/// Which protocol a new connection speaks, from its first byte: TLS and HTTP consume nothing; a
/// plaintext RPC preamble is read and refused (`Err(Some)`); `Err(None)`: it closed.
async fn sniff(stream: &mut TcpStream) -> Result<Protocol, Option<Refusal>> {
    let mut first = [0u8; 1];
    match stream.peek(&mut first).await {
        Ok(0) | Err(_) => return Err(None),
        Ok(_) => {}
    }
    if first[0] == TLS_HANDSHAKE {
        return Ok(Protocol::Tls);
    }
    if first[0] != PREAMBLE_V1[0] {
        return Ok(Protocol::Http);
    }
    let mut preamble = [0u8; PREAMBLE_V1.len()];
    stream.read_exact(&mut preamble).await.map_err(|_| None)?;
    if &preamble != PREAMBLE_V1 && &preamble != PREAMBLE {
        return Err(Some(Refusal::Preamble));
    }
    // In the retired protocol's own words (a refusal frame), so that an old client says why.
    let mut refusal = Vec::with_capacity(12 + PLAINTEXT_REFUSED.len());
    refusal.extend_from_slice(&u32::try_from(8 + PLAINTEXT_REFUSED.len()).unwrap_or(u32::MAX).to_be_bytes());
    refusal.extend_from_slice(&HELLO_ID.to_be_bytes());
    refusal.extend_from_slice(PLAINTEXT_REFUSED);
    let _ = stream.write_all(&refusal).await;
    let _ = stream.shutdown().await;
    Err(Some(Refusal::PlaintextRpc))
}

/// An HTTP connection of the node's port: its place under the caps, and a lifetime of
/// [`HTTP_LIFETIME`], after which reads and writes fail and the HTTP server drops it.
pub struct HttpStream {
    tcp: TcpStream,
    deadline: Pin<Box<tokio::time::Sleep>>,
    _slot: Slot,
}

impl HttpStream {
    fn new(tcp: TcpStream, slot: Slot) -> HttpStream {
        HttpStream { tcp, deadline: Box::pin(tokio::time::sleep(HTTP_LIFETIME)), _slot: slot }
    }

    /// `Some(error)` once the connection has outlived its lifetime (and registers the wake-up).
    fn expired(&mut self, cx: &mut Context<'_>) -> Option<std::io::Error> {
        self.deadline.as_mut().poll(cx).is_ready().then(|| std::io::ErrorKind::TimedOut.into())
    }
}

impl AsyncRead for HttpStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if let Some(e) = self.expired(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for HttpStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        if let Some(e) = self.expired(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if let Some(e) = self.expired(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}
