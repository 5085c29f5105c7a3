//! A real fluxgate server on ephemeral ports, with generated certificates, and a client that
//! verifies the CA and speaks HTTP/1.1 or HTTP/2 by ALPN.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fluxgate::certs::{self, CertRequest};
use fluxgate::cluster::{ClusterView, MemoryView};
use fluxgate::metrics::Metrics;
use fluxgate::server::{AppState, BoundServer, ServerOptions, ShutdownHandle};
use fluxgate::tls::TlsFiles;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

pub fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/admission")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn fixtures() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/admission");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("fixtures dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let body = fixture(&n);
            (n, body)
        })
        .collect()
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "fluxgate-test-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(&path).expect("temp dir");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes a fresh CA and localhost serving certificate into `dir`; returns the CA PEM.
pub fn write_certs(dir: &Path) -> Vec<u8> {
    let generated = certs::generate(&CertRequest {
        dns_names: vec!["localhost".into()],
        ips: vec!["127.0.0.1".parse().expect("ip")],
        valid_days: 30,
    })
    .expect("certs");
    certs::write_to(dir, &generated).expect("write certs");
    generated.ca_cert_pem.into_bytes()
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub ca_pem: Vec<u8>,
    pub dir: TempDir,
    pub state: Arc<AppState>,
    pub shutdown: ShutdownHandle,
    pub task: JoinHandle<()>,
}

pub struct ServerSetup {
    pub config_yaml: Option<String>,
    pub mode_override: Option<fluxgate::finding::Mode>,
    pub view: Arc<dyn ClusterView>,
    pub tweak: fn(&mut ServerOptions),
}

impl Default for ServerSetup {
    fn default() -> Self {
        ServerSetup {
            config_yaml: None,
            mode_override: None,
            view: Arc::new(MemoryView::new()),
            tweak: |_| {},
        }
    }
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::start_with(ServerSetup::default()).await
    }

    pub async fn start_with(setup: ServerSetup) -> TestServer {
        let dir = TempDir::new("server");
        let ca_pem = write_certs(&dir.0);
        let tls = TlsFiles {
            cert: dir.0.join("tls.crt"),
            key: dir.0.join("tls.key"),
        };
        let localhost: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let mut options = ServerOptions::new(localhost, localhost, tls);
        options.reload_interval = Duration::from_millis(50);
        options.drain_timeout = Duration::from_secs(5);
        if let Some(yaml) = &setup.config_yaml {
            let path = dir.0.join("config.yaml");
            std::fs::write(&path, yaml).expect("config");
            options.config_path = Some(path);
        }
        (setup.tweak)(&mut options);
        let server = BoundServer::bind(options, setup.mode_override, setup.view, Metrics::new())
            .await
            .expect("bind");
        let addr = server.local_addr().expect("addr");
        let metrics_addr = server.metrics_addr().expect("metrics addr");
        let state = server.state();
        let (shutdown, rx) = fluxgate::server::shutdown_channel();
        let task = tokio::spawn(server.run(rx));
        TestServer {
            addr,
            metrics_addr,
            ca_pem,
            dir,
            state,
            shutdown,
            task,
        }
    }

    pub async fn client(&self, http2: bool) -> Client {
        Client::connect(self.addr, &self.ca_pem, http2)
            .await
            .expect("TLS connection")
    }

    /// Posts an AdmissionReview on a new HTTP/1.1 connection.
    pub async fn post(&self, path: &str, body: Vec<u8>) -> Response {
        self.client(false)
            .await
            .request("POST", path, Some("application/json"), body)
            .await
            .expect("response")
    }

    pub async fn metrics(&self) -> String {
        let (status, body) = plain_get(self.metrics_addr, "/metrics").await;
        assert_eq!(status, 200);
        body
    }

    pub fn metrics_path(&self, file: &str) -> PathBuf {
        self.dir.0.join(file)
    }
}

pub struct Response {
    pub status: u16,
    pub body: Bytes,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

pub enum Client {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

pub fn tls_connector(ca_pem: &[u8], alpn: Vec<Vec<u8>>) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.expect("CA PEM")).expect("CA cert");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn;
    TlsConnector::from(Arc::new(config))
}

impl Client {
    pub async fn connect(addr: SocketAddr, ca_pem: &[u8], http2: bool) -> std::io::Result<Client> {
        let alpn = if http2 {
            vec![b"h2".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let tls = tls_connector(ca_pem, alpn)
            .connect(ServerName::try_from("localhost").expect("name"), tcp)
            .await?;
        let negotiated_h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        assert_eq!(
            negotiated_h2, http2,
            "ALPN must pick what the client asked for"
        );
        let io = TokioIo::new(tls);
        if http2 {
            let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(std::io::Error::other)?;
            tokio::spawn(conn);
            Ok(Client::H2(sender))
        } else {
            let (sender, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(std::io::Error::other)?;
            tokio::spawn(conn);
            Ok(Client::H1(sender))
        }
    }

    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<Response, hyper::Error> {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("https://localhost{path}"));
        if let Client::H1(_) = self {
            builder = builder.header("host", "localhost");
        }
        if let Some(ct) = content_type {
            builder = builder.header("content-type", ct);
        }
        let request = builder.body(Full::new(Bytes::from(body))).expect("request");
        let response = match self {
            Client::H1(sender) => sender.send_request(request).await?,
            Client::H2(sender) => sender.send_request(request).await?,
        };
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Response { status, body })
    }
}

/// A plain-HTTP GET on the metrics listener.
pub async fn plain_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let request = Request::builder()
        .uri(path)
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The value of a metric line with exactly these labels (in the order Prometheus prints them).
pub fn metric_value(metrics: &str, name_and_labels: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(name_and_labels) && l[name_and_labels.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// An AdmissionReview v1 request for `object`, as the API server would send it.
pub fn review_of(object: &serde_json::Value, operation: &str, uid: &str) -> Vec<u8> {
    let api_version = object["apiVersion"].as_str().unwrap_or("");
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    serde_json::to_vec(&serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": group, "version": version, "kind": object["kind"]},
            "resource": {"group": group, "version": version, "resource": ""},
            "name": object["metadata"]["name"],
            "namespace": object["metadata"]["namespace"],
            "operation": operation,
            "userInfo": {"username": "alice", "groups": ["devs", "system:authenticated"]},
            "object": object,
            "oldObject": null,
            "dryRun": false,
        }
    }))
    .expect("json")
}

/// What a policy's corpus table expects of one object.
#[derive(Debug, Clone, Copy)]
pub enum Decision {
    /// Allowed, with no finding at all.
    Allow,
    /// Denied, with each phrase in the denial message.
    Deny(&'static [&'static str]),
}

/// Asserts that `verdict` is the `decision` a corpus table lists for the object `context` names.
#[track_caller]
pub fn assert_decision(
    context: &str,
    verdict: &fluxgate::engine::verdict::Verdict,
    decision: Decision,
) {
    match decision {
        Decision::Allow => assert!(
            verdict.allowed && verdict.outcomes.is_empty(),
            "{context}: {:#?}",
            verdict.outcomes
        ),
        Decision::Deny(phrases) => {
            assert!(!verdict.allowed, "{context}: expected a denial");
            let message = verdict.denial_message();
            for phrase in phrases {
                assert!(
                    message.contains(phrase),
                    "{context}: {phrase:?} not in\n{message}"
                );
            }
        }
    }
}

/// An engine with every built-in policy, configured by `yaml` (the defaults when empty).
pub fn engine(yaml: &str) -> fluxgate::engine::Engine {
    let config =
        fluxgate::config::Config::from_yaml(yaml, "test.yaml").unwrap_or_else(|e| panic!("{e}"));
    fluxgate::engine::Engine::new(config, None)
}

/// An engine with every built-in policy in its default configuration.
pub fn default_engine() -> fluxgate::engine::Engine {
    engine("")
}
