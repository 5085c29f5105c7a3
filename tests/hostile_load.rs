//! What keeps one client from stalling the webhook: probes on their own thread, expensive
//! reviews on the evaluation pool with an answer at the deadline, the in-flight body budget,
//! per-peer connection limits, idle and unresponsive HTTP/2 connections closed, and a 413
//! that arrives over HTTP/1.1.
//!
//! No timed assertions: every test asserts answers, codes and counts. Timeouts in the
//! tests only bound how long a broken server can make them wait.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use common::{Client, ServerSetup, TestServer, fixture, metric_value, review_of};
use fluxgate::cluster::{
    AgentInstallation, ClusterView, FluxSecretReference, HelmRepositoryFacts, Lookup, MemoryView,
    SecretFacts,
};
use fluxgate::rbac::objects::{BindingFacts, NamedRoles, RoleFacts, RoleKey};
use fluxgate::selector::LabelSelector;
use rustls_pki_types::ServerName;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// ---------------------------------------------------------------------------------------
// A cluster view whose HelmRepository lookups wait for the test to open a gate: a review of
// a HelmChart then holds whatever thread judges it.

#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
    waiting: AtomicUsize,
}

impl Gate {
    fn wait(&self) {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let mut open = self.open.lock().expect("gate");
        while !*open {
            open = self.opened.wait(open).expect("gate");
        }
    }

    fn open(&self) {
        *self.open.lock().expect("gate") = true;
        self.opened.notify_all();
    }

    /// Waits (bounded) until some review is held at the gate.
    fn wait_for_a_review(&self) {
        let started = Instant::now();
        while self.waiting.load(Ordering::SeqCst) == 0 {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "no review reached the cluster view"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Opens the gate when dropped, so that a failing test does not leave a thread waiting.
struct OpenOnDrop(Arc<Gate>);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open();
    }
}

struct GatedView {
    inner: MemoryView,
    gate: Arc<Gate>,
}

impl ClusterView for GatedView {
    fn synced(&self) -> bool {
        true
    }
    fn namespace_labels(&self, namespace: &str) -> Lookup<BTreeMap<String, String>> {
        self.inner.namespace_labels(namespace)
    }
    fn helm_repository(&self, namespace: &str, name: &str) -> Lookup<HelmRepositoryFacts> {
        self.gate.wait();
        self.inner.helm_repository(namespace, name)
    }
    fn agent_installations(&self) -> Lookup<Vec<AgentInstallation>> {
        self.inner.agent_installations()
    }
    fn agent_installation_applied_since(
        &self,
        id: &fluxgate::gitlab::installation::InstallationId,
        since: Instant,
    ) -> bool {
        self.inner.agent_installation_applied_since(id, since)
    }
    fn role(&self, namespace: &str, name: &str) -> Lookup<Arc<RoleFacts>> {
        self.inner.role(namespace, name)
    }
    fn cluster_role(&self, name: &str) -> Lookup<Arc<RoleFacts>> {
        self.inner.cluster_role(name)
    }
    fn cluster_roles_matching(&self, selector: &LabelSelector) -> Lookup<NamedRoles> {
        self.inner.cluster_roles_matching(selector)
    }
    fn cluster_roles_aggregating(&self, labels: &BTreeMap<String, String>) -> Lookup<NamedRoles> {
        self.inner.cluster_roles_aggregating(labels)
    }
    fn bindings_to(&self, role: &RoleKey) -> Lookup<Vec<Arc<BindingFacts>>> {
        self.inner.bindings_to(role)
    }
    fn other_gitlab_identity_in(
        &self,
        namespace: &str,
        except_identity: &str,
        except_binding: &str,
    ) -> Lookup<Option<(String, String)>> {
        self.inner
            .other_gitlab_identity_in(namespace, except_identity, except_binding)
    }
    fn bindings_naming(
        &self,
        kind: &str,
        name: &str,
        namespace: Option<&str>,
    ) -> Lookup<Vec<Arc<BindingFacts>>> {
        self.inner.bindings_naming(kind, name, namespace)
    }
    fn secret(&self, namespace: &str, name: &str) -> Lookup<SecretFacts> {
        self.inner.secret(namespace, name)
    }
    fn flux_secret_references(&self) -> Lookup<Vec<FluxSecretReference>> {
        self.inner.flux_secret_references()
    }
    fn reconfigure(&self, config: &fluxgate::gitlab::agent::AgentDetector) {
        self.inner.reconfigure(config)
    }
}

fn gated() -> (Arc<Gate>, Arc<dyn ClusterView>) {
    let gate = Arc::new(Gate::default());
    let view = GatedView {
        inner: MemoryView::new(),
        gate: gate.clone(),
    };
    (gate, Arc::new(view))
}

/// A HelmChart review, which looks its HelmRepository up in the cluster view; `padding`
/// bytes of annotation make it as large as wanted.
fn helm_chart_review(padding: usize) -> Vec<u8> {
    let chart = json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "HelmChart",
        "metadata": {
            "name": "podinfo",
            "namespace": "flux-system",
            "annotations": {"example.com/padding": "x".repeat(padding)},
        },
        "spec": {
            "chart": "podinfo",
            "interval": "5m",
            "sourceRef": {"kind": "HelmRepository", "name": "podinfo"},
        }
    });
    review_of(&chart, "CREATE", "uid-helmchart")
}

/// Posts from a thread of its own, with a runtime of its own: the test's runtime may be the
/// one whose worker is held.
fn post_from_a_thread(
    addr: SocketAddr,
    ca: Vec<u8>,
    body: Vec<u8>,
) -> std::thread::JoinHandle<Result<common::Response, String>> {
    post_to_from_a_thread(addr, ca, "/validate", body)
}

fn post_to_from_a_thread(
    addr: SocketAddr,
    ca: Vec<u8>,
    path: &'static str,
    body: Vec<u8>,
) -> std::thread::JoinHandle<Result<common::Response, String>> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async move {
            let mut client = Client::connect(addr, &ca, true)
                .await
                .map_err(|e| e.to_string())?;
            client
                .request("POST", path, Some("application/json"), body)
                .await
                .map_err(|e| e.to_string())
        })
    })
}

/// A GET on the metrics listener with blocking sockets: it needs nothing of any runtime.
fn blocking_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let mut stream = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| format!("no answer: {e}"))?;
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not HTTP: {answer}"))?;
    Ok((status, answer))
}

// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn probes_answer_while_the_only_worker_is_held_by_a_review() {
    let (gate, view) = gated();
    let server = TestServer::start_with(ServerSetup {
        view,
        ..ServerSetup::default()
    })
    .await;
    // A small review is judged inline: the runtime's one worker waits at the gate.
    let _open = OpenOnDrop(gate.clone());
    let held = post_from_a_thread(server.addr, server.ca_pem.clone(), helm_chart_review(0));
    gate.wait_for_a_review();
    for path in ["/healthz", "/readyz", "/metrics"] {
        let (status, answer) = blocking_get(server.metrics_addr, path)
            .unwrap_or_else(|e| panic!("{path} while the worker is held: {e}"));
        assert_eq!(status, 200, "{path}: {answer}");
    }
    gate.open();
    let answer = held.join().expect("thread").expect("the held review");
    assert_eq!(answer.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_review_held_on_the_pool_gets_a_503_at_its_deadline_while_others_are_answered() {
    let (gate, view) = gated();
    let server = TestServer::start_with(ServerSetup {
        view,
        tweak: |o| {
            o.eval_timeout = Duration::from_millis(1500);
            o.eval_threads = 1;
        },
        ..ServerSetup::default()
    })
    .await;
    // Larger than the inline limit: judged on the pool, whose one thread waits at the gate.
    let _open = OpenOnDrop(gate.clone());
    let held = post_from_a_thread(
        server.addr,
        server.ca_pem.clone(),
        helm_chart_review(200_000),
    );
    gate.wait_for_a_review();

    let normal = server
        .post(
            "/validate",
            fixture("deployment-create__capture-Deployment-CREATE.json"),
        )
        .await;
    assert_eq!(normal.status, 200, "a cheap review is answered inline");
    let (status, _) = blocking_get(server.metrics_addr, "/healthz").expect("healthz");
    assert_eq!(status, 200);

    let answer = held.join().expect("thread").expect("an answer, not a hang");
    assert_eq!(
        answer.status,
        503,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert!(
        answer.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("deadline")),
        "{}",
        answer.json()
    );
    gate.open();
    let metrics = server.metrics().await;
    assert_eq!(
        metric_value(&metrics, r#"fluxgate_pool_reviews_total{why="large-body"}"#),
        Some(1.0)
    );
    assert_eq!(
        metric_value(
            &metrics,
            r#"fluxgate_budget_exceeded_total{budget="deadline"}"#
        ),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_follows_the_timeout_the_api_server_sends() {
    let (gate, view) = gated();
    let server = TestServer::start_with(ServerSetup {
        view,
        // Far longer than the test waits: only the API server's timeout can end the review.
        tweak: |o| o.eval_timeout = Duration::from_secs(3600),
        ..ServerSetup::default()
    })
    .await;
    let _open = OpenOnDrop(gate.clone());
    // The API server adds `?timeout=` (its timeoutSeconds, as a Go duration) to every call.
    let held = post_to_from_a_thread(
        server.addr,
        server.ca_pem.clone(),
        "/validate?timeout=2s",
        helm_chart_review(200_000),
    );
    let answer = held.join().expect("thread").expect("an answer, not a hang");
    assert_eq!(
        answer.status,
        503,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    let error = answer.json()["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        error.contains("no answer within the 1s deadline"),
        "{error}"
    );
    assert!(error.contains("the API server's timeout"), "{error}");
}

#[tokio::test]
async fn over_https_a_review_over_its_budget_is_denied_naming_the_budget() {
    let server = TestServer::start().await;
    let identities: Vec<_> = (0..200)
        .map(|i| json!({"issuer": r"^https://gitlab\.com$", "subject": format!("^https://gitlab\\.com/acme/app-{i}//\\.gitlab-ci\\.yml@refs/heads/main$")}))
        .collect();
    let repo = json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1beta2",
        "kind": "OCIRepository",
        "metadata": {"name": "app", "namespace": "flux-system"},
        "spec": {
            "interval": "5m",
            "url": "oci://registry.gitlab.com/acme/app/manifests",
            "ref": {"semver": "1.x"},
            "verify": {"provider": "cosign", "matchOIDCIdentity": identities},
        }
    });
    let answer = server
        .post("/validate", review_of(&repo, "CREATE", "uid-many"))
        .await;
    assert_eq!(answer.status, 200);
    let response = &answer.json()["response"];
    assert_eq!(response["allowed"], false);
    let message = response["status"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("(budget identity-patterns)"), "{message}");
    let metrics = server.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            r#"fluxgate_budget_exceeded_total{budget="identity-patterns"}"#
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn a_denial_naming_long_patterns_is_cut_and_the_cut_is_counted() {
    let server = TestServer::start().await;
    // Ten broad subjects of 2.7 KiB each: the message quoting them would be about 25 KiB.
    let identities: Vec<_> = (0..10)
        .map(|i| {
            let words: Vec<String> = (0..400).map(|j| format!("w{i}x{j}")).collect();
            json!({"issuer": r"^https://gitlab\.com$", "subject": format!(".*(?:{})?", words.join("|"))})
        })
        .collect();
    let repo = json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1beta2",
        "kind": "OCIRepository",
        "metadata": {"name": "app", "namespace": "flux-system"},
        "spec": {
            "interval": "5m",
            "url": "oci://registry.gitlab.com/acme/app/manifests",
            "ref": {"semver": "1.x"},
            "verify": {"provider": "cosign", "matchOIDCIdentity": identities},
        }
    });
    let answer = server
        .post("/validate", review_of(&repo, "CREATE", "uid-long"))
        .await;
    assert_eq!(answer.status, 200);
    let response = &answer.json()["response"];
    assert_eq!(response["allowed"], false);
    let message = response["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.len() <= fluxgate::engine::verdict::MAX_MESSAGE_BYTES,
        "{} bytes",
        message.len()
    );
    assert!(message.contains("bytes cut)"), "{message}");
    let cut = metric_value(
        &server.metrics().await,
        r#"fluxgate_output_cut_total{what="message-bytes"}"#,
    );
    assert!(cut.is_some_and(|bytes| bytes > 10_000.0), "{cut:?}");
}

#[tokio::test]
async fn a_review_that_needs_a_regex_compiled_is_judged_on_the_pool_once() {
    let server = TestServer::start().await;
    let repo = json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1beta2",
        "kind": "OCIRepository",
        "metadata": {"name": "app", "namespace": "flux-system"},
        "spec": {
            "interval": "5m",
            "url": "oci://registry.gitlab.com/acme/app/manifests",
            "ref": {"semver": "1.x"},
            "verify": {"provider": "cosign", "matchOIDCIdentity": [{
                "issuer": r"^https://gitlab\.com$",
                "subject": r"^https://gitlab\.com/acme/pool-once//\.gitlab-ci\.yml@refs/heads/main$",
            }]},
        }
    });
    for round in 0..3 {
        let answer = server
            .post("/validate", review_of(&repo, "CREATE", "uid-pool"))
            .await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.json()["response"]["allowed"], true, "round {round}");
    }
    let metrics = server.metrics().await;
    assert_eq!(
        metric_value(&metrics, r#"fluxgate_pool_reviews_total{why="offloaded"}"#),
        Some(1.0),
        "the first review compiles on the pool; the memo answers the next ones inline"
    );
}

// ---------------------------------------------------------------------------------------
// Connections

async fn tls_from(
    server: &TestServer,
    from: IpAddr,
    alpn: &[u8],
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    let tcp = socket.connect(server.addr).await?;
    common::tls_connector(&server.ca_pem, vec![alpn.to_vec()])
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
}

/// Whether the server talks on this connection: a request gets an answer.
async fn answers(stream: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> bool {
    let request = b"GET /nowhere HTTP/1.1\r\nhost: localhost\r\n\r\n";
    if stream.write_all(request).await.is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await,
        Ok(Ok(n)) if n > 0 && buf.starts_with(b"HTTP/1.1 404")
    )
}

#[tokio::test]
async fn one_peer_address_cannot_take_every_connection() {
    let server = TestServer::start_with(ServerSetup {
        tweak: |o| {
            o.max_connections = 4;
            o.max_connections_per_peer = 2;
        },
        ..ServerSetup::default()
    })
    .await;
    let here: IpAddr = [127, 0, 0, 1].into();
    let elsewhere: IpAddr = [127, 0, 0, 2].into();
    let mut first = tls_from(&server, here, b"http/1.1").await.expect("first");
    let mut second = tls_from(&server, here, b"http/1.1").await.expect("second");
    assert!(answers(&mut first).await && answers(&mut second).await);
    let third = match tls_from(&server, here, b"http/1.1").await {
        Ok(mut stream) => answers(&mut stream).await,
        Err(_) => false,
    };
    assert!(
        !third,
        "a third connection from the same address is refused"
    );
    let mut other = tls_from(&server, elsewhere, b"http/1.1")
        .await
        .expect("another address still gets in");
    assert!(answers(&mut other).await);
    let metrics = server.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            r#"fluxgate_connections_refused_total{reason="peer-limit"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        metric_value(&metrics, "fluxgate_connections_open"),
        Some(3.0)
    );
}

/// Reads until the server closes the connection (or the test's patience ends).
async fn closed_by_server(
    stream: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    patience: Duration,
) -> bool {
    let mut buf = vec![0u8; 4096];
    tokio::time::timeout(patience, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

const H2_PREFACE_AND_SETTINGS: &[u8] =
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

#[tokio::test]
async fn an_http2_connection_without_a_stream_is_closed_after_the_idle_timeout() {
    let server = TestServer::start_with(ServerSetup {
        tweak: |o| {
            o.idle_timeout = Duration::from_millis(300);
            // Pings alone would not close it: this client answers them.
            o.http2_keepalive_interval = Duration::from_secs(3600);
        },
        ..ServerSetup::default()
    })
    .await;
    let tcp = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("tcp");
    let tls = common::tls_connector(&server.ca_pem, vec![b"h2".to_vec()])
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("tls");
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .expect("h2 handshake");
    let connection = tokio::spawn(connection);
    // One request, then nothing: the connection is idle from the end of the request.
    let request = hyper::Request::builder()
        .method("GET")
        .uri("https://localhost/nowhere")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .expect("request");
    let response = sender.send_request(request).await.expect("an answer");
    assert_eq!(response.status(), 404);
    let ended = tokio::time::timeout(Duration::from_secs(20), connection).await;
    assert!(
        matches!(ended, Ok(Ok(Ok(())))),
        "the server closes the idle connection with a GOAWAY: {ended:?}"
    );
    assert_eq!(
        metric_value(&server.metrics().await, "fluxgate_connections_open"),
        Some(0.0)
    );
}

#[tokio::test]
async fn an_http2_peer_that_sends_its_preface_and_nothing_else_is_dropped() {
    let server = TestServer::start_with(ServerSetup {
        tweak: |o| {
            // Long enough that only the unanswered pings can close the connection.
            o.idle_timeout = Duration::from_secs(3600);
            o.http2_keepalive_interval = Duration::from_millis(200);
            o.http2_keepalive_timeout = Duration::from_millis(200);
        },
        ..ServerSetup::default()
    })
    .await;
    let mut stream = tls_from(&server, [127, 0, 0, 1].into(), b"h2")
        .await
        .expect("tls");
    stream
        .write_all(H2_PREFACE_AND_SETTINGS)
        .await
        .expect("preface");
    // Reading does not answer the server's PINGs: only an HTTP/2 client would.
    assert!(
        closed_by_server(&mut stream, Duration::from_secs(20)).await,
        "a peer that answers no PING is disconnected"
    );
}

#[tokio::test]
async fn a_silent_http2_peer_is_closed_after_the_idle_timeout_too() {
    let server = TestServer::start_with(ServerSetup {
        tweak: |o| {
            o.idle_timeout = Duration::from_millis(300);
            o.http2_keepalive_interval = Duration::from_secs(3600);
        },
        ..ServerSetup::default()
    })
    .await;
    let mut stream = tls_from(&server, [127, 0, 0, 1].into(), b"h2")
        .await
        .expect("tls");
    stream
        .write_all(H2_PREFACE_AND_SETTINGS)
        .await
        .expect("preface");
    assert!(closed_by_server(&mut stream, Duration::from_secs(20)).await);
}

// ---------------------------------------------------------------------------------------
// Bodies

/// Sends a whole HTTP/1.1 request, without `Expect: 100-continue`, then reads the answer to
/// its end, as most clients do: they read once the request is written, and curl or Go's
/// net/http give up at a write error (a reset, a broken pipe) without reading at all.
async fn raw_http1(server: &TestServer, head: String, body: &[u8]) -> String {
    let mut stream = tls_from(server, [127, 0, 0, 1].into(), b"http/1.1")
        .await
        .expect("tls");
    let sent = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body).await?;
        stream.flush().await
    };
    if let Err(e) = sent.await {
        return format!("the request could not be sent whole: {e}");
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn an_http1_body_over_the_limit_gets_its_413_without_expect_continue() {
    let server = TestServer::start_with(ServerSetup {
        tweak: |o| o.max_body_bytes = 64 * 1024,
        ..ServerSetup::default()
    })
    .await;
    let body = vec![b' '; 12 << 20];
    let declared = format!(
        "POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let answer = raw_http1(&server, declared, &body).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer:.200}");
    assert!(answer.contains("--max-body-bytes"), "{answer:.400}");

    // Without a declared length the limit is found while reading; the answer is the same.
    let mut chunked = Vec::new();
    for _ in 0..192 {
        chunked.extend_from_slice(format!("{:x}\r\n", 65536).as_bytes());
        chunked.extend_from_slice(&[b' '; 65536]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let head = "POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n".to_string();
    let answer = raw_http1(&server, head, &chunked).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer:.200}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_past_the_inflight_budget_wait_then_get_a_429_while_small_ones_pass() {
    let server = TestServer::start_with(ServerSetup {
        tweak: |o| {
            o.max_body_bytes = 1 << 20;
            // The smallest budget there is: one largest body, plus the small bodies' reserve.
            o.max_inflight_body_bytes = 0;
            o.body_admit_wait = Duration::from_millis(200);
        },
        ..ServerSetup::default()
    })
    .await;
    // A client that declares a large body and sends only part of it holds its share.
    let mut holder = tls_from(&server, [127, 0, 0, 1].into(), b"http/1.1")
        .await
        .expect("tls");
    let head = format!(
        "POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{{",
        1 << 20
    );
    holder.write_all(head.as_bytes()).await.expect("head");
    holder.flush().await.expect("flush");
    let started = Instant::now();
    loop {
        let metrics = server.metrics().await;
        if metric_value(&metrics, "fluxgate_inflight_body_bytes") == Some(f64::from(1 << 20)) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{metrics}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let mut large = json!({"padding": "x".repeat(200_000)})
        .to_string()
        .into_bytes();
    large.truncate(200_000);
    let refused = server.post("/validate", large).await;
    assert_eq!(
        refused.status,
        429,
        "{}",
        String::from_utf8_lossy(&refused.body)
    );
    assert!(
        refused.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("--max-inflight-body-bytes")),
        "{}",
        refused.json()
    );
    let small = server
        .post(
            "/validate",
            fixture("deployment-create__capture-Deployment-CREATE.json"),
        )
        .await;
    assert_eq!(small.status, 200, "the small bodies' reserve is theirs");
    drop(holder);
    let metrics = server.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            r#"fluxgate_rejected_requests_total{reason="inflight-budget"}"#
        ),
        Some(1.0)
    );
}
