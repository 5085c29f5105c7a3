//! `fluxgate serve`: the HTTPS admission webhook and the plain-HTTP metrics listener.
//!
//! Layers, outermost first: TCP accept with a connection limit, in all and per peer address
//! ([`connections`]); TLS handshake with a deadline; HTTP/1.1 or HTTP/2 by ALPN with a
//! header read deadline, HTTP/2 keep-alive pings and an idle timeout; the axum router;
//! [`webhook`] admitting the body against the in-flight byte budget ([`inflight`]) and
//! turning it into a verdict through the engine, inline or on the evaluation pool ([`pool`]),
//! within the review's [`crate::budget`]. `/metrics`, `/healthz` and `/readyz` are served
//! by a thread of their own, so that they answer whatever the webhook's workers are doing.
//! Shutdown first lingers (still serving, every HTTP/1.1 answer telling the client to close
//! its connection), then stops accepting, lets requests in flight finish (bounded by the
//! drain timeout) and returns.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use self::connections::{Activity, Peers, Refusal, Refusals, Tracked};
use self::inflight::BodyBudget;
use self::pool::EvalPool;

use crate::cluster::ClusterView;
use crate::cluster::reservation::{LocalReservations, Reservations};
use crate::config::Config;
use crate::engine::Engine;
use crate::metrics::Metrics;
use crate::tls::{ReloadableCert, TlsError, TlsFiles};

pub mod audit;
mod connections;
mod inflight;
pub mod leader;
mod pool;
mod reload;
mod webhook;

pub use inflight::{SMALL_BODY_BYTES, SMALL_RESERVE_BYTES};

pub use reload::{reload_config_once, reload_tls_once};
pub use webhook::log_decision;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// How the server runs; `fluxgate serve` fills it from its flags.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    pub tls: TlsFiles,
    /// When set, only clients with a certificate from this CA may connect (mutual TLS).
    pub client_ca: Option<PathBuf>,
    /// The configuration file to watch for changes; `None` runs on the built-in default.
    pub config_path: Option<PathBuf>,
    /// Largest request body accepted. An UPDATE review carries the object twice, so this is
    /// above the API server's own 3 MiB limit.
    pub max_body_bytes: usize,
    /// Request body bytes read and judged at once, across all requests; a body that finds
    /// no room within `body_admit_wait` gets a 429. Never less than `max_body_bytes` plus
    /// the small bodies' reserve ([`SMALL_RESERVE_BYTES`]).
    pub max_inflight_body_bytes: usize,
    pub body_admit_wait: Duration,
    pub max_connections: usize,
    /// Connections one peer address may hold open, so that one client cannot take them all.
    pub max_connections_per_peer: usize,
    /// A connection with no request in progress for this long is closed (HTTP/2 with a
    /// GOAWAY; HTTP/1.1 connections are closed sooner by `header_read_timeout`).
    pub idle_timeout: Duration,
    /// HTTP/2 keep-alive: a PING this often; a peer that does not answer within
    /// `http2_keepalive_timeout` is disconnected.
    pub http2_keepalive_interval: Duration,
    pub http2_keepalive_timeout: Duration,
    pub tls_handshake_timeout: Duration,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    /// How long requests in flight may take to finish after a shutdown signal.
    pub drain_timeout: Duration,
    /// How long fluxgate keeps serving after a shutdown signal, answering HTTP/1.1 requests
    /// with `Connection: close`, before it stops accepting and closes idle connections. The
    /// API server calls webhooks over HTTP/1.1 with kept-alive connections: closing one it
    /// is about to reuse loses that request (it reports `EOF`, and `failurePolicy: Fail`
    /// refuses the write), while an answer that says close retires the connection cleanly.
    pub drain_linger: Duration,
    /// How often the configuration and certificate files are checked for changes.
    pub reload_interval: Duration,
    /// Longest a review may take from its arrival (headers read) to an answer; at this
    /// deadline the answer is a 503, whatever evaluation is doing. Keep it below the
    /// webhook's `timeoutSeconds` so the API server gets a clear error instead of a timeout.
    pub eval_timeout: Duration,
    /// Threads of the evaluation pool, which judges the reviews that need real work.
    pub eval_threads: usize,
    /// Bodies larger than this are judged on the evaluation pool from the start; smaller
    /// ones inline, unless their inline budget sends them there.
    pub inline_body_bytes: usize,
    /// Where new agent installations are reserved before they are allowed: a Lease every
    /// replica shares, or (without a cluster) this process alone.
    pub reservations: Arc<dyn Reservations>,
}

impl ServerOptions {
    pub fn new(listen: SocketAddr, metrics_listen: SocketAddr, tls: TlsFiles) -> Self {
        ServerOptions {
            listen,
            metrics_listen,
            tls,
            client_ca: None,
            config_path: None,
            max_body_bytes: 8 * 1024 * 1024,
            max_inflight_body_bytes: DEFAULT_MAX_INFLIGHT_BODY_BYTES,
            body_admit_wait: Duration::from_secs(1),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_peer: DEFAULT_MAX_CONNECTIONS_PER_PEER,
            idle_timeout: Duration::from_secs(30),
            http2_keepalive_interval: Duration::from_secs(10),
            http2_keepalive_timeout: Duration::from_secs(10),
            tls_handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(10),
            drain_linger: Duration::from_secs(2),
            reload_interval: Duration::from_secs(5),
            eval_timeout: Duration::from_secs(8),
            eval_threads: default_eval_threads(),
            inline_body_bytes: 128 * 1024,
            reservations: Arc::new(LocalReservations::default()),
        }
    }
}

/// See docs/RELIABILITY.md for how these were chosen from measured memory.
pub const DEFAULT_MAX_INFLIGHT_BODY_BYTES: usize = 32 * 1024 * 1024;
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
pub const DEFAULT_MAX_CONNECTIONS_PER_PEER: usize = 256;

/// Half the CPUs, at least one: the other half keeps answering cheap reviews and probes.
pub fn default_eval_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get() / 2)
        .unwrap_or(1)
        .max(1)
}

/// What every request handler shares. Built once; nothing global.
pub struct AppState {
    pub engine: Engine,
    pub view: Arc<dyn ClusterView>,
    pub metrics: Metrics,
    pub max_body_bytes: usize,
    pub body_read_timeout: Duration,
    pub eval_timeout: Duration,
    pub tls_loaded: AtomicBool,
    pub(crate) bodies: BodyBudget,
    pub(crate) body_admit_wait: Duration,
    pub(crate) pool: EvalPool,
    pub(crate) inline_body_bytes: usize,
    pub reservations: Arc<dyn Reservations>,
}

/// A server with its sockets bound, ready to run.
pub struct BoundServer {
    state: Arc<AppState>,
    options: ServerOptions,
    cert: Arc<ReloadableCert>,
    cert_fingerprint: u64,
    config_fingerprint: Option<u64>,
    acceptor: TlsAcceptor,
    listener: TcpListener,
    metrics_listener: TcpListener,
}

/// Sends the shutdown signal to a running server.
#[derive(Clone)]
pub struct ShutdownHandle(watch::Sender<bool>);

impl ShutdownHandle {
    pub fn shutdown(&self) {
        let _ = self.0.send(true);
    }
}

impl BoundServer {
    /// Loads the configuration (the file in `options.config_path`, else the built-in
    /// default) and the certificate, and binds both listeners. Errors here stop
    /// `fluxgate serve` before it claims to be up.
    pub async fn bind(
        options: ServerOptions,
        mode_override: Option<crate::finding::Mode>,
        view: Arc<dyn ClusterView>,
        metrics: Metrics,
    ) -> Result<BoundServer, ServerError> {
        let (config, config_fingerprint) = match &options.config_path {
            Some(path) => {
                let (config, fingerprint) = reload::load_config(path)?;
                (config, Some(fingerprint))
            }
            None => (Config::default(), None),
        };
        view.reconfigure(config.policies.single_agent.detector());
        let loaded = options.tls.load()?;
        if let Some(not_after) = loaded.not_after {
            metrics.tls_cert_expiry.set(not_after as f64);
        }
        let cert = Arc::new(ReloadableCert::new(loaded.key));
        let client_ca = options
            .client_ca
            .as_deref()
            .map(crate::tls::load_client_ca)
            .transpose()?;
        let acceptor = TlsAcceptor::from(crate::tls::server_config(cert.clone(), client_ca)?);
        let listener = bind(options.listen).await?;
        let metrics_listener = bind(options.metrics_listen).await?;
        let state = Arc::new(AppState {
            engine: Engine::new(config, mode_override),
            view,
            bodies: BodyBudget::new(
                options.max_inflight_body_bytes,
                options.max_body_bytes,
                metrics.inflight_body_bytes.clone(),
            ),
            metrics,
            max_body_bytes: options.max_body_bytes,
            body_read_timeout: options.body_read_timeout,
            eval_timeout: options.eval_timeout,
            tls_loaded: AtomicBool::new(true),
            body_admit_wait: options.body_admit_wait,
            pool: EvalPool::new(options.eval_threads),
            inline_body_bytes: options.inline_body_bytes,
            reservations: options.reservations.clone(),
        });
        Ok(BoundServer {
            state,
            options,
            cert,
            cert_fingerprint: loaded.fingerprint,
            config_fingerprint,
            acceptor,
            listener,
            metrics_listener,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn metrics_addr(&self) -> std::io::Result<SocketAddr> {
        self.metrics_listener.local_addr()
    }

    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    /// Serves until `shutdown` fires, then drains and returns.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let BoundServer {
            state,
            options,
            cert,
            cert_fingerprint,
            config_fingerprint,
            acceptor,
            listener,
            metrics_listener,
        } = self;

        let reloader = tokio::spawn(reload::watch_files(
            state.clone(),
            options.clone(),
            cert,
            cert_fingerprint,
            config_fingerprint,
            shutdown.clone(),
        ));

        let metrics_server = serve_probes(state.clone(), metrics_listener, shutdown.clone());

        let router = webhook::router(state.clone());
        serve_tls(listener, acceptor, router, &options, &state, shutdown).await;
        reloader.abort();
        if let Some(done) = metrics_server {
            let _ = done.await;
        }
    }
}

/// `/metrics`, `/healthz` and `/readyz` on a thread and runtime of their own: a liveness
/// probe must not fail because every webhook worker is busy. Resolves when that listener
/// has stopped (after shutdown).
fn serve_probes(
    state: Arc<AppState>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) -> Option<tokio::sync::oneshot::Receiver<()>> {
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let std_listener = match listener.into_std() {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!(error = %e, "metrics listener cannot be moved to its thread");
            return None;
        }
    };
    let spawned = std::thread::Builder::new()
        .name("fluxgate-probes".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    tracing::error!(error = %e, "metrics listener cannot start its runtime");
                    return;
                }
            };
            runtime.block_on(async move {
                let served = match TcpListener::from_std(std_listener) {
                    Ok(listener) => {
                        axum::serve(listener, webhook::metrics_router(state))
                            .with_graceful_shutdown(async move { stopped(&mut shutdown).await })
                            .await
                    }
                    Err(e) => Err(e),
                };
                if let Err(e) = served {
                    tracing::error!(error = %e, "metrics listener failed");
                }
            });
            let _ = done_tx.send(());
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "metrics listener thread cannot start");
        return None;
    }
    Some(done_rx)
}

/// Resolves at `deadline`; never without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Resolves once shutdown is signalled (or the signal's sender is gone).
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })
}

/// A shutdown channel that fires on SIGTERM or SIGINT. The handlers are installed before
/// this returns, so a signal that arrives right after start-up is never the default (fatal)
/// one. Must be called inside the runtime.
pub fn shutdown_on_signals() -> (ShutdownHandle, watch::Receiver<bool>) {
    let (tx, rx) = watch::channel(false);
    let handle = ShutdownHandle(tx);
    let signal_handle = handle.clone();
    let signals = Signals::install();
    tokio::spawn(async move {
        signals.wait().await;
        tracing::info!("shutdown signal received; draining requests in flight");
        signal_handle.shutdown();
    });
    (handle, rx)
}

/// A shutdown channel fired only through the handle (tests, embedding).
pub fn shutdown_channel() -> (ShutdownHandle, watch::Receiver<bool>) {
    let (tx, rx) = watch::channel(false);
    (ShutdownHandle(tx), rx)
}

#[cfg(unix)]
struct Signals(Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>);

#[cfg(unix)]
impl Signals {
    fn install() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => Signals(Some((term, int))),
            _ => Signals(None),
        }
    }

    async fn wait(self) {
        match self.0 {
            Some((mut term, mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn install() -> Self {
        Signals
    }

    async fn wait(self) {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn serve_tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: Router,
    options: &ServerOptions,
    state: &AppState,
    mut shutdown: watch::Receiver<bool>,
) {
    let max_connections = options.max_connections.max(1);
    let connections = Arc::new(Semaphore::new(max_connections));
    let peers = Peers::new(options.max_connections_per_peer);
    let refusals = Refusals::new(state.metrics.clone(), Duration::from_secs(1));
    // Set when the shutdown signal comes: from then on every answer says `Connection: close`
    // (hyper closes an HTTP/1.1 connection after such an answer; HTTP/2 drops the header).
    let lingering = Arc::new(AtomicBool::new(false));
    let closing = lingering.clone();
    let service = TowerToHyperService::new(tower::ServiceExt::<
        axum::http::Request<hyper::body::Incoming>,
    >::map_response(
        router,
        move |mut response: axum::response::Response| {
            if closing.load(Ordering::Relaxed) {
                response.headers_mut().insert(
                    axum::http::header::CONNECTION,
                    axum::http::HeaderValue::from_static("close"),
                );
            }
            response
        },
    ));
    // What the connections watch: the end of the linger, not the signal itself.
    let (drain, draining) = watch::channel(false);
    let mut linger_until: Option<tokio::time::Instant> = None;
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut shutdown), if linger_until.is_none() => {
                if options.drain_linger.is_zero() {
                    break;
                }
                lingering.store(true, Ordering::Relaxed);
                linger_until = Some(tokio::time::Instant::now() + options.drain_linger);
                tracing::info!(linger = ?options.drain_linger, "still answering, each answer closing its connection, before the drain");
                continue;
            }
            _ = sleep_until(linger_until) => break,
        };
        let admitted = match connections.clone().try_acquire_owned() {
            Ok(permit) => peers
                .admit(peer.ip())
                .map(|slot| (permit, slot))
                .ok_or(Refusal::PeerLimit),
            Err(_) => Err(Refusal::Limit),
        };
        let (permit, peer_slot) = match admitted {
            Ok(admitted) => admitted,
            Err(why) => {
                drop(tcp);
                if let Some(count) = refusals.refuse(why, Instant::now()) {
                    tracing::warn!(
                        %peer,
                        reason = why.as_str(),
                        limit = options.max_connections,
                        per_peer = options.max_connections_per_peer,
                        refused = count,
                        "connection limit reached; closing new connections (logged at most once a second; fluxgate_connections_refused_total counts each)"
                    );
                }
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let service = service.clone();
        let draining = draining.clone();
        let settings = ConnectionSettings::of(options);
        let open = state.metrics.connections_open.clone();
        open.inc();
        tokio::spawn(async move {
            let _held = (permit, peer_slot);
            serve_connection(tcp, peer, acceptor, service, settings, draining).await;
            open.dec();
        });
    }
    let _ = drain.send(true);
    drop(listener);
    tracing::info!(
        open = max_connections - connections.available_permits(),
        "no longer accepting; closing idle connections and finishing requests in flight"
    );
    // Every connection gives its permit back when it ends: all of them back means drained.
    let all = u32::try_from(max_connections).unwrap_or(u32::MAX);
    tokio::select! {
        _ = connections.acquire_many(all) => tracing::info!("all connections drained"),
        _ = tokio::time::sleep(options.drain_timeout) => {
            tracing::warn!(timeout = ?options.drain_timeout, "drain timeout reached; closing remaining connections");
        }
    }
}

/// What each connection task needs of the options.
#[derive(Clone, Copy)]
struct ConnectionSettings {
    handshake_timeout: Duration,
    header_read_timeout: Duration,
    idle_timeout: Duration,
    keepalive_interval: Duration,
    keepalive_timeout: Duration,
    drain_timeout: Duration,
}

impl ConnectionSettings {
    fn of(options: &ServerOptions) -> Self {
        ConnectionSettings {
            handshake_timeout: options.tls_handshake_timeout,
            header_read_timeout: options.header_read_timeout,
            idle_timeout: options.idle_timeout,
            keepalive_interval: options.http2_keepalive_interval,
            keepalive_timeout: options.http2_keepalive_timeout,
            drain_timeout: options.drain_timeout,
        }
    }
}

/// HTTP/2 flow-control windows: how much a peer may send that nobody has read yet. hyper's
/// default of 1 MiB per connection would let every connection park a megabyte in memory
/// while its body waits for the in-flight budget.
const H2_WINDOW: u32 = 256 * 1024;

async fn serve_connection<S>(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    service: S,
    settings: ConnectionSettings,
    mut shutdown: watch::Receiver<bool>,
) where
    S: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = hyper::Response<axum::body::Body>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let tls = match tokio::time::timeout(settings.handshake_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(settings.keepalive_interval)
        .keep_alive_timeout(settings.keepalive_timeout)
        .initial_connection_window_size(H2_WINDOW)
        .initial_stream_window_size(H2_WINDOW);
    let builder = if h2 {
        builder.http2_only()
    } else {
        builder.http1_only()
    };
    let activity = Activity::new();
    let connection =
        builder.serve_connection(TokioIo::new(tls), Tracked::new(service, activity.clone()));
    tokio::pin!(connection);
    let mut closing: Option<tokio::time::Instant> = None;
    loop {
        // When to look at the connection's idleness next.
        let wake = match (closing, activity.idle_for(Instant::now())) {
            (Some(at), _) => at,
            (None, Some(idle)) => {
                tokio::time::Instant::now() + settings.idle_timeout.saturating_sub(idle)
            }
            (None, None) => tokio::time::Instant::now() + settings.idle_timeout,
        };
        tokio::select! {
            ended = connection.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = stopped(&mut shutdown), if closing.is_none() => {
                connection.as_mut().graceful_shutdown();
                closing = Some(tokio::time::Instant::now() + settings.drain_timeout);
            }
            _ = tokio::time::sleep_until(wake) => {
                if closing.is_some() {
                    // A peer that neither finishes its requests nor reads the GOAWAY.
                    tracing::debug!(%peer, "connection did not close in time; dropping it");
                    return;
                }
                if activity
                    .idle_for(Instant::now())
                    .is_some_and(|idle| idle >= settings.idle_timeout)
                {
                    tracing::debug!(%peer, "closing idle connection");
                    connection.as_mut().graceful_shutdown();
                    closing = Some(tokio::time::Instant::now() + settings.drain_timeout);
                }
            }
        }
    }
}

impl AppState {
    pub fn ready(&self) -> Readiness {
        Readiness {
            tls: self.tls_loaded.load(Ordering::Acquire),
            // A broken new file never replaces the one in use, so the configuration in use
            // is always a valid one.
            config: true,
            cluster_view: self.view.synced(),
        }
    }
}

/// What `/readyz` reports.
#[derive(Debug, Clone, Copy, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Readiness {
    pub tls: bool,
    pub config: bool,
    pub cluster_view: bool,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.tls && self.config && self.cluster_view
    }
}
