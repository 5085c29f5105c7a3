//! `fluxgate serve`: the HTTPS admission webhook and the plain-HTTP metrics listener.
//!
//! Layers, outermost first: TCP accept with a connection limit; TLS handshake with a
//! deadline; HTTP/1.1 or HTTP/2 by ALPN with a header read deadline; the axum router;
//! [`webhook`] turning a body into a verdict through the engine. Shutdown first lingers (the
//! drain linger: still serving, every HTTP/1.1 answer telling the client to close its
//! connection), then stops accepting, lets requests in flight finish (bounded by the drain
//! timeout) and returns.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use crate::cluster::ClusterView;
use crate::config::Config;
use crate::engine::Engine;
use crate::metrics::Metrics;
use crate::tls::{ReloadableCert, TlsError, TlsFiles};

mod reload;
mod webhook;

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
    pub max_connections: usize,
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
    /// Longest a review may take from a whole body to an answer; keep it below the
    /// webhook's `timeoutSeconds` so the API server gets a clear error instead of a timeout.
    pub eval_timeout: Duration,
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
            max_connections: 4096,
            tls_handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(10),
            drain_linger: Duration::from_secs(2),
            reload_interval: Duration::from_secs(5),
            eval_timeout: Duration::from_secs(8),
        }
    }
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
        view.reconfigure(&config);
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
            metrics,
            max_body_bytes: options.max_body_bytes,
            body_read_timeout: options.body_read_timeout,
            eval_timeout: options.eval_timeout,
            tls_loaded: AtomicBool::new(true),
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

        let metrics_router = webhook::metrics_router(state.clone());
        let mut metrics_shutdown = shutdown.clone();
        let metrics_server = tokio::spawn(async move {
            let served = axum::serve(metrics_listener, metrics_router)
                .with_graceful_shutdown(async move { stopped(&mut metrics_shutdown).await })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "metrics listener failed");
            }
        });

        let router = webhook::router(state.clone());
        serve_tls(listener, acceptor, router, &options, shutdown).await;
        reloader.abort();
        let _ = metrics_server.await;
    }
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
    mut shutdown: watch::Receiver<bool>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let connections = Arc::new(Semaphore::new(options.max_connections));
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
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::warn!(%peer, limit = options.max_connections, "connection limit reached; closing new connection");
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let service = service.clone();
        let watcher = graceful.watcher();
        let handshake_timeout = options.tls_handshake_timeout;
        let header_read_timeout = options.header_read_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
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
                .header_read_timeout(header_read_timeout)
                .keep_alive(true);
            builder.http2().timer(TokioTimer::new());
            let builder = if h2 {
                builder.http2_only()
            } else {
                builder.http1_only()
            };
            let connection = builder.serve_connection(TokioIo::new(tls), service);
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!(
        open = options.max_connections - connections.available_permits(),
        "no longer accepting; closing idle connections and finishing requests in flight"
    );
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections drained"),
        _ = tokio::time::sleep(options.drain_timeout) => {
            tracing::warn!(timeout = ?options.drain_timeout, "drain timeout reached; closing remaining connections");
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
