//! The public edge: the server loop `boxoffice dev` and `boxoffice api` serve the router with,
//! in place of `axum::serve`, which sets no timeout and no cap (`NOTES.md`).
//!
//! On hyper-util's connection builder (HTTP/1.1 and HTTP/2 by prior knowledge, as before) with
//! tokio's timer, each accepted connection gets:
//!
//! - a place under the connection caps (`caps.rs`), or is closed at once;
//! - a watchdog (`conn.rs`): headers within `header_timeout`, idle keep-alive waits within
//!   `idle_timeout`, writes the client does not read within `WRITE_STALL_MAX`;
//! - per request, a body deadline of `request_timeout` from the headers' first byte, and the
//!   lingering drain that makes a 413 readable (`body.rs`).
//!
//! Responses are not bounded in time: a seat stream lasts as long as its client. Graceful
//! shutdown stops accepting, lets requests in progress finish for [`SHUTDOWN_GRACE`], then
//! closes what is left (streams, mostly; their clients reconnect elsewhere).

mod body;
mod caps;
mod conn;

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::{header, HeaderValue, Request, Response, StatusCode, Version};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::ServiceExt;

use crate::config::ServeConfig;
use crate::state::ApiState;
use body::{BodyFacts, EdgeBody, Settled};
use caps::ConnectionCaps;
use conn::{Expiry, RequestGuard, Watch, WatchedIo};

pub use body::{LINGER_BYTES_MAX, LINGER_TIME_MAX};
pub use conn::WRITE_STALL_MAX;

/// How long a shutdown waits for requests in progress before it closes their connections:
/// well within the 30 s a supervisor such as Kubernetes gives a process after SIGTERM, so
/// `boxoffice dev` still has time to stop its node.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Concurrent HTTP/2 streams per connection: RFC 9113 asks for at least 100; more would let one
/// connection step around the per-address caps of connections and streams.
const H2_STREAMS_PER_CONNECTION_MAX: u32 = 100;
/// HTTP/2 pings: an unanswered ping (within hyper's default 20 s) closes a dead peer's
/// connection, and with it any stream it held.
const H2_PING_INTERVAL: Duration = Duration::from_secs(30);
/// The pause after an accept error other than a client's (file descriptors exhausted): the
/// process may free some meanwhile; hyper 0.14 and axum wait the same second.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// What the server loop tells its connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    Serving,
    /// Finish what is in progress, take nothing new.
    Graceful,
    /// Close now.
    Abort,
}

/// Serves `app` on `listener` with the edge's timeouts and caps until `shutdown` resolves, then
/// shuts down gracefully within [`SHUTDOWN_GRACE`]. Requests carry `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    config.validate().map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let config = Arc::new(config);
    let caps = ConnectionCaps::new(&config);
    let builder = Arc::new(connection_builder(&config));
    let (stop_tx, stop_rx) = watch::channel(Stop::Serving);
    let mut shutdown = pin!(shutdown);
    loop {
        let (tcp, remote) = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            },
        };
        let slot = match caps.admit(remote.ip()) {
            Ok(slot) => slot,
            Err(refusal) => {
                metrics::counter!("api_connections_refused_total", "limit" => refusal.label()).increment(1);
                continue; // dropping the stream closes it
            }
        };
        let connection = Connection { app: app.clone(), remote, config: config.clone(), builder: builder.clone() };
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            connection.run(tcp, stop).await;
            drop(slot);
        });
    }
    drop(listener);
    drop(stop_rx); // only the connections' receivers are left for `drain_connections` to wait on
    drain_connections(stop_tx).await;
    Ok(())
}

/// Tells every connection to finish, waits up to [`SHUTDOWN_GRACE`], then closes the rest.
async fn drain_connections(stop: watch::Sender<Stop>) {
    let _ = stop.send(Stop::Graceful);
    let open = stop.receiver_count();
    if open > 0 {
        tracing::info!(connections = open, "waiting for requests in progress");
    }
    if tokio::time::timeout(SHUTDOWN_GRACE, stop.closed()).await.is_err() {
        tracing::warn!(connections = stop.receiver_count(), "closing connections still open after the grace period");
        let _ = stop.send(Stop::Abort);
        stop.closed().await;
    }
}

async fn accept_error(e: io::Error) {
    use io::ErrorKind as K;
    if matches!(e.kind(), K::ConnectionRefused | K::ConnectionAborted | K::ConnectionReset) {
        return; // the client's problem, already gone
    }
    tracing::error!(error = %e, "accept failed; pausing");
    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
}

fn connection_builder(config: &ServeConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // The watchdog enforces the header and idle timeouts; hyper's header timer, which counts an
    // idle wait as header time, only backs it up.
    builder.http1().timer(TokioTimer::new()).header_read_timeout(config.header_timeout + config.idle_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_STREAMS_PER_CONNECTION_MAX)
        .keep_alive_interval(H2_PING_INTERVAL);
    builder
}

/// One accepted connection.
struct Connection {
    app: Router,
    remote: SocketAddr,
    config: Arc<ServeConfig>,
    builder: Arc<auto::Builder<TokioExecutor>>,
}

impl Connection {
    async fn run(self, tcp: TcpStream, mut stop: watch::Receiver<Stop>) {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
        let watch = Watch::new(&self.config);
        let io = TokioIo::new(WatchedIo::new(tcp, watch.clone()));
        let requests = Requests { app: self.app, remote: self.remote, config: self.config, watch: watch.clone() };
        let service = hyper::service::service_fn(move |req| requests.clone().handle(req));
        let mut conn = pin!(self.builder.serve_connection(io, service));
        let mut closing = false;
        loop {
            tokio::select! {
                _ = conn.as_mut() => return,
                expiry = watch.expired() => {
                    metrics::counter!("api_connections_closed_total", "reason" => expiry.label()).increment(1);
                    if expiry != Expiry::Idle || closing {
                        return; // dropped mid-request or mid-head: closed at once
                    }
                    // Idle: a request may be arriving; hyper closes at once if none is.
                    conn.as_mut().graceful_shutdown();
                    watch.restart_idle();
                    closing = true;
                }
                changed = stop.changed() => {
                    let now = if changed.is_ok() { *stop.borrow_and_update() } else { Stop::Abort };
                    match now {
                        Stop::Serving => {}
                        Stop::Graceful if !closing => {
                            conn.as_mut().graceful_shutdown();
                            closing = true;
                        }
                        Stop::Graceful => {}
                        Stop::Abort => return,
                    }
                }
            }
        }
    }
}

/// What each request of a connection needs.
#[derive(Clone)]
struct Requests {
    app: Router,
    remote: SocketAddr,
    config: Arc<ServeConfig>,
    watch: Arc<Watch>,
}

type BoxFuture<T> = std::pin::Pin<Box<dyn Future<Output = T> + Send>>;

impl Requests {
    fn handle(self, req: Request<Incoming>) -> BoxFuture<Result<Response<Counted>, Infallible>> {
        Box::pin(async move {
            let (head_since, guard) = self.watch.request_started();
            let spent = head_since.map(|since| since.elapsed()).unwrap_or_default();
            let deadline_in = self.config.request_timeout.saturating_sub(spent);
            let facts = BodyFacts::of(req.headers());
            let http1 = req.version() <= Version::HTTP_11;
            let (mut parts, incoming) = req.into_parts();
            parts.extensions.insert(ConnectInfo(self.remote));
            let (body, ledger) = EdgeBody::new(incoming, deadline_in);
            let request = Request::from_parts(parts, axum::body::Body::new(body));
            let Ok(mut response) = self.app.oneshot(request).await;
            let settled = body::settle(&ledger, facts).await;
            if settled != Settled::Read {
                metrics::counter!("api_request_bodies_total", "outcome" => settled.label()).increment(1);
            }
            let close = !settled.keeps_connection() || response.status() == StatusCode::PAYLOAD_TOO_LARGE;
            if close && http1 {
                response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok(response.map(|body| Counted { body, _guard: guard }))
        })
    }
}

/// A response body that ends its request (for the watchdog) when hyper drops it.
struct Counted {
    body: axum::body::Body,
    _guard: RequestGuard,
}

impl http_body::Body for Counted {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Serves the api: the public router on `public` and, when given, `/metrics` alone on
/// `metrics` (an internal address; the public router then answers 404 there), both with the
/// configuration's edge settings, until `shutdown` resolves.
pub async fn serve_api(
    state: ApiState,
    public: TcpListener,
    metrics: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let config = state.config().serve.clone();
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let streams_state = state.clone();
    let signal = async move {
        shutdown.await;
        let _ = stop_tx.send(true);
        // Streams never finish on their own: end them, so graceful shutdown need not wait out
        // its grace period for them.
        streams_state.seat_feeds().close();
    };
    let public_app = crate::router(state.clone());
    let public = serve(public, public_app, config.clone(), stopped(stop_rx.clone()));
    let internal = async {
        match metrics {
            Some(listener) => serve(listener, crate::app::metrics_router(state), config, stopped(stop_rx)).await,
            None => Ok(()),
        }
    };
    let (public, internal, ()) = tokio::join!(public, internal, signal);
    public.and(internal)
}
