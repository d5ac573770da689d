//! The HTTP servers behind the cluster's internal ports, on hyper's connection builder (not
//! `axum::serve`, which sets no timeout):
//!
//! - a node's port: `node::SplitListener` serves calls over mutual TLS and hands the plain HTTP
//!   connections here, for `/healthz`, `/readyz` and `/metrics`. Each serves one request
//!   (keep-alive off) and lives at most `node::HTTP_LIFETIME`.
//! - an indexer's port: a connection whose first byte opens a TLS handshake must present an api's
//!   or an operator's certificate of the cluster CA and may search (`/internal/search`);
//!   anything else is plain HTTP and gets the operator endpoints alone, one request per
//!   connection. Connections are capped in all and per address, closing at once beyond.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// How long a connection may take to send its request's head (plain HTTP), or its TLS
/// handshake (the indexer's port).
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// An api's kept-alive connection to an indexer is closed after this long without a request.
const TLS_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Open connections of an indexer's port, in all and per remote address.
const INDEXER_CONNECTIONS_MAX: usize = 1_024;
const INDEXER_CONNECTIONS_PER_ADDRESS_MAX: usize = 128;
/// The pause after an accept error (file descriptors exhausted): wait rather than spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// Whether a connection serves one request or many.
#[derive(Clone, Copy, PartialEq, Eq)]
enum KeepAlive {
    /// Probes, scrapes: one request, then the connection closes.
    Off,
    /// An api instance's pooled connection, closed after [`TLS_IDLE_TIMEOUT`] without a request.
    On,
}

/// Serves `app` on one connection.
async fn serve_connection<I>(io: I, app: Router, keep_alive: KeepAlive)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper's header timer also runs while a kept-alive connection waits for its next request.
    let head_timeout = if keep_alive == KeepAlive::On { TLS_IDLE_TIMEOUT } else { HEAD_TIMEOUT };
    builder.http1().timer(TokioTimer::new()).keep_alive(keep_alive == KeepAlive::On).header_read_timeout(head_timeout);
    builder.http2().timer(TokioTimer::new());
    if let Err(e) = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(app)).await {
        tracing::debug!(error = %e, "internal HTTP connection ended");
    }
}

/// Serves the plain HTTP connections of a node's port until `stop` resolves.
pub async fn serve_node_http(mut listener: node::SplitListener, app: Router, stop: impl Future<Output = ()>) {
    let mut stop = pin!(stop);
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept_http() => accepted,
        };
        tokio::spawn(serve_connection(stream, app.clone(), KeepAlive::Off));
    }
}

/// An indexer's port: TLS (search, for api and operator certificates) or plain HTTP (operator
/// endpoints), until `stop` resolves.
pub struct IndexerPort {
    pub tls: Arc<rustls::ServerConfig>,
    /// `/internal/search` and the operator endpoints.
    pub search: Router,
    /// The operator endpoints.
    pub ops: Router,
}

impl IndexerPort {
    pub async fn serve(self, listener: TcpListener, stop: impl Future<Output = ()>) {
        let port = Arc::new(self);
        let caps = Arc::new(Caps::default());
        let mut stop = pin!(stop);
        loop {
            let (stream, peer) = tokio::select! {
                _ = &mut stop => return,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                        continue;
                    }
                },
            };
            let Some(slot) = caps.admit(peer.ip()) else {
                metrics::counter!("boxoffice_indexer_connections_refused_total").increment(1);
                continue;
            };
            tokio::spawn(port.clone().serve_connection(stream, peer, slot));
        }
    }

    async fn serve_connection(self: Arc<Self>, stream: TcpStream, peer: SocketAddr, slot: CapSlot) {
        let _ = stream.set_nodelay(true);
        let mut first = [0u8; 1];
        match tokio::time::timeout(HEAD_TIMEOUT, stream.peek(&mut first)).await {
            Ok(Ok(1)) if first[0] == TLS_HANDSHAKE => self.serve_tls(stream, peer).await,
            Ok(Ok(1)) => serve_connection(stream, self.ops.clone(), KeepAlive::Off).await,
            _ => {}
        }
        drop(slot);
    }

    async fn serve_tls(&self, stream: TcpStream, peer: SocketAddr) {
        let acceptor = TlsAcceptor::from(self.tls.clone());
        let tls = match tokio::time::timeout(HEAD_TIMEOUT, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "TLS handshake refused"),
            Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
        };
        let role = tls.get_ref().1.peer_certificates().and_then(|certs| certs.first()).and_then(pki::role_of);
        match role {
            Some(pki::Role::Api | pki::Role::Operator) => {
                serve_connection(tls, self.search.clone(), KeepAlive::On).await
            }
            other => {
                metrics::counter!("boxoffice_indexer_forbidden_total").increment(1);
                tracing::warn!(%peer, role = ?other, "a certificate of this role may not search; connection closed");
            }
        }
    }
}

/// Open connections of an indexer's port, in all and per address.
#[derive(Default)]
struct Caps {
    open: std::sync::Mutex<(usize, std::collections::HashMap<IpAddr, usize>)>,
}

struct CapSlot {
    caps: Arc<Caps>,
    ip: IpAddr,
}

impl Caps {
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<CapSlot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let from_ip = open.1.get(&ip).copied().unwrap_or(0);
        if open.0 >= INDEXER_CONNECTIONS_MAX || from_ip >= INDEXER_CONNECTIONS_PER_ADDRESS_MAX {
            return None;
        }
        open.0 += 1;
        open.1.insert(ip, from_ip + 1);
        Some(CapSlot { caps: self.clone(), ip })
    }
}

impl Drop for CapSlot {
    fn drop(&mut self) {
        let mut open = self.caps.open.lock().unwrap_or_else(|e| e.into_inner());
        open.0 -= 1;
        if let Some(n) = open.1.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.1.remove(&self.ip);
            }
        }
    }
}
