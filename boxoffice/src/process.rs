//! What every long-running command shares: its listener's socket options, its file-descriptor
//! limit, the signal that stops it, and the address line scripts read from its stdout.

/// File descriptors kept for everything but the api's client connections (sled's files, the
/// search index, connections to nodes and peers, the metrics listener), or half the limit when
/// that is smaller.
const FDS_RESERVED: u64 = 1024;

/// Raises the soft limit on open files to the hard limit (a default soft limit of 1,024 would
/// refuse connections long before the connection cap); returns the limit now in force, or
/// `None` when there is none or it is unknown.
pub fn raise_fd_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        use rustix::process::{getrlimit, setrlimit, Resource};
        let mut limit = getrlimit(Resource::Nofile);
        if limit.current != limit.maximum {
            let raised = rustix::process::Rlimit { current: limit.maximum, ..limit };
            match setrlimit(Resource::Nofile, raised) {
                Ok(()) => limit = getrlimit(Resource::Nofile),
                Err(e) => tracing::warn!(error = %e, "the open-files limit could not be raised"),
            }
        }
        limit.current
    }
    #[cfg(not(unix))]
    None
}

/// Keeps the api's connection cap within the file-descriptor limit (raised first): past it,
/// accepting would fail for every client instead of the cap refusing the excess.
pub fn fit_connections_to_fd_limit(config: &mut api::ApiConfig) {
    let Some(limit) = raise_fd_limit() else { return };
    let room = limit - FDS_RESERVED.min(limit / 2);
    let room = usize::try_from(room).unwrap_or(usize::MAX).max(1);
    if config.serve.connections_max > room {
        tracing::warn!(
            connections_max = config.serve.connections_max,
            open_files_limit = limit,
            lowered_to = room,
            "the connection cap is lowered to what the open-files limit allows"
        );
        config.serve.connections_max = room;
    }
}

/// Keeps a node port's connection cap within the file-descriptor limit (raised first), as
/// [`fit_connections_to_fd_limit`] does for the api's.
pub fn fit_port_to_fd_limit(limits: &mut node::PortLimits) {
    let Some(limit) = raise_fd_limit() else { return };
    let room = limit - FDS_RESERVED.min(limit / 2);
    let room = usize::try_from(room).unwrap_or(usize::MAX).max(1);
    if limits.connections_max > room {
        tracing::warn!(
            connections_max = limits.connections_max,
            open_files_limit = limit,
            lowered_to = room,
            "the node port's connection cap is lowered to what the open-files limit allows"
        );
        limits.connections_max = room;
    }
}

/// The accept queue of the api's public listener. tokio's default (1,024) overflows when a
/// burst of connections arrives faster than they are accepted: the kernel then drops
/// handshakes and the clients hang on retransmissions. Linux caps it at `net.core.somaxconn`
/// (4,096 by default since 5.4).
const PUBLIC_LISTEN_BACKLOG: u32 = 4_096;

/// The api's public listener, with a deep accept queue.
pub fn bind_public(addr: std::net::SocketAddr) -> Result<tokio::net::TcpListener, crate::error::ServeError> {
    let listen = || {
        let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
        #[cfg(unix)]
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(PUBLIC_LISTEN_BACKLOG)
    };
    listen().map_err(crate::error::ServeError::listen(addr))
}

/// Binds the internal metrics address, when one is configured.
pub async fn bind_metrics(
    config: &api::ApiConfig,
) -> Result<Option<tokio::net::TcpListener>, crate::error::ServeError> {
    let Some(addr) = config.metrics_addr else { return Ok(None) };
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(crate::error::ServeError::listen(addr))?;
    Ok(Some(listener))
}

/// Pushes the lines printed so far out: a parent process reads the address line before the
/// server has anything else to say.
pub fn flush_stdout() {
    use std::io::Write;
    let _ = std::io::stdout().flush();
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
}

/// Waits for a shutdown signal (`None`), or for the node's storage to fail a flush (its error):
/// the storage then refuses every later flush, and the process must stop so that its supervisor
/// restarts it on what was durable.
pub async fn shutdown_or_storage_failure(node: &node::Node) -> Option<String> {
    tokio::select! {
        () = shutdown_signal() => None,
        e = node.storage_failure() => {
            tracing::error!(error = %e, "the storage failed a flush; stopping");
            Some(e)
        }
    }
}
