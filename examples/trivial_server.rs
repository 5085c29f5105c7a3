//! The physical limit fluxgate is measured against: an allow-all admission webhook on the same
//! stack (axum, hyper, rustls with ring, the same certificate) that reads only `request.uid`.
//! Used by `scripts/bench-load.sh`; see docs/BENCHMARKS.md.
//!
//! Usage: trivial_server LISTEN_ADDR CERT_PEM KEY_PEM [WORKER_THREADS]

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use serde::Deserialize;

#[derive(Deserialize)]
struct Review<'a> {
    #[serde(borrow)]
    request: Uid<'a>,
}

#[derive(Deserialize)]
struct Uid<'a> {
    #[serde(borrow)]
    uid: std::borrow::Cow<'a, str>,
}

async fn allow(body: Bytes) -> Response {
    let uid = serde_json::from_slice::<Review<'_>>(&body)
        .map(|r| r.request.uid.into_owned())
        .unwrap_or_default();
    let answer = format!(
        r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{{"uid":"{uid}","allowed":true}}}}"#
    );
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        answer,
    )
        .into_response()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        return Err("usage: trivial_server LISTEN_ADDR CERT_PEM KEY_PEM [WORKER_THREADS]".into());
    }
    let addr: SocketAddr = args[1].parse()?;
    let files = fluxgate::tls::TlsFiles {
        cert: args[2].clone().into(),
        key: args[3].clone().into(),
    };
    let workers: usize = args.get(4).map(|w| w.parse()).transpose()?.unwrap_or(1);
    let loaded = files.load()?;
    let cert = Arc::new(fluxgate::tls::ReloadableCert::new(loaded.key));
    let acceptor = tokio_rustls::TlsAcceptor::from(fluxgate::tls::server_config(cert, None)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        eprintln!("trivial server on https://{addr}");
        // The same body limit as fluxgate's default --max-body-bytes (axum's own is 2 MB,
        // below a 3 MiB UPDATE review).
        let router = Router::new()
            .route("/validate", post(allow))
            .layer(DefaultBodyLimit::max(8 * 1024 * 1024));
        let service = TowerToHyperService::new(router);
        loop {
            let (tcp, _) = listener.accept().await?;
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let service = service.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                let builder = auto::Builder::new(TokioExecutor::new());
                let builder = if h2 {
                    builder.http2_only()
                } else {
                    builder.http1_only()
                };
                let _ = builder.serve_connection(TokioIo::new(tls), service).await;
            });
        }
    })
}
