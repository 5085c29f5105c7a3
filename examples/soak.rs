//! Soak test driver (run by `scripts/soak.sh`, not by `cargo test`): starts a real `fluxgate
//! serve` on loopback, holds a steady request rate over TLS for a bounded time while it
//! rotates the serving certificate, reloads a good and then a broken configuration, and
//! finally sends SIGTERM; then checks that no request failed, no answer was wrong, memory
//! stayed flat and shutdown drained. Prints the figures; exits 1 when a check fails.
//!
//!   soak <fluxgate binary> [seconds] [requests per second]
//!
//! Expected answers come from the library's own engine on the same configuration, so a
//! wrong answer is one the server gave differently from the engine it embeds.

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fluxgate::admission;
use fluxgate::certs::{self, CertRequest};
use fluxgate::cluster::MemoryView;
use fluxgate::config::Config;
use fluxgate::engine::{Endpoint, Engine};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::sync::Mutex;
use tokio_rustls::TlsConnector;

const GOOD_CONFIG: &str = "policies:\n  single-agent:\n    reservationTtlSeconds: 30\n";
const GOOD_CONFIG_2: &str =
    "# reloaded\npolicies:\n  single-agent:\n    reservationTtlSeconds: 45\n";
const BROKEN_CONFIG: &str =
    "policies:\n  single-agent:\n    reservationTtlSeconds: [not, a, number\n";
const WORKERS: usize = 16;
/// A worker opens a new connection after this many requests, so that connections made
/// after the rotation see the new certificate.
const REQUESTS_PER_CONNECTION: u64 = 50;
/// Requests whose bodies are half sent when SIGTERM arrives: they must still be answered.
const SLOW_REQUESTS: usize = 8;

struct Case {
    body: Bytes,
    uid: String,
    endpoint: &'static str,
    allowed: bool,
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    wrong: AtomicU64,
    failed: AtomicU64,
    bad_status: AtomicU64,
    connect_failed: AtomicU64,
    in_flight: AtomicU64,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(binary) = args.get(1).map(PathBuf::from) else {
        eprintln!("usage: soak <fluxgate binary> [seconds] [requests per second]");
        std::process::exit(2);
    };
    let seconds: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(180);
    let rate: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(200);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let passed = runtime.block_on(soak(&binary, Duration::from_secs(seconds), rate));
    std::process::exit(if passed { 0 } else { 1 });
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Writes a CA and serving certificate into `dir/<name>`; returns the CA PEM.
fn write_cert_version(dir: &Path, name: &str) -> Vec<u8> {
    let generated = certs::generate(&CertRequest {
        dns_names: vec!["localhost".into()],
        ips: vec!["127.0.0.1".parse().expect("ip")],
        valid_days: 2,
    })
    .expect("certificates");
    certs::write_to(&dir.join(name), &generated).expect("write certificates");
    generated.ca_cert_pem.into_bytes()
}

/// Points `dir/current` at `dir/<name>` atomically, as Kubernetes updates a mounted Secret.
fn switch_certs(dir: &Path, name: &str) {
    let tmp = dir.join("current.tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(name, &tmp).expect("symlink");
    std::fs::rename(&tmp, dir.join("current")).expect("swap symlink");
}

fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write config");
    std::fs::rename(&tmp, path).expect("swap config");
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The fixture reviews, each with the answer the engine gives on the soak configuration.
fn cases() -> Vec<Case> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/admission");
    let engine = Engine::new(
        Config::from_yaml(GOOD_CONFIG, "soak.yaml").expect("config"),
        None,
    );
    let view = MemoryView::new();
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fixtures")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    names.sort();
    let mut cases = Vec::new();
    for path in names {
        let body = std::fs::read(&path).expect("fixture");
        let Ok(request) = admission::decode(&body) else {
            continue;
        };
        for endpoint in [Endpoint::Validate, Endpoint::Mutate] {
            let (verdict, _) = engine.review(endpoint, &request, &view);
            cases.push(Case {
                body: Bytes::from(body.clone()),
                uid: request.uid.to_string(),
                endpoint: if endpoint == Endpoint::Validate {
                    "/validate"
                } else {
                    "/mutate"
                },
                allowed: verdict.allowed,
            });
        }
    }
    cases
}

fn connector(ca_pems: &[Vec<u8>]) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for pem in ca_pems {
        for cert in CertificateDer::pem_slice_iter(pem) {
            roots.add(cert.expect("CA PEM")).expect("CA");
        }
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Like the API server's webhook client (client-go sets no session cache): every new
    // connection is a full handshake and sees the certificate served now. A resumed session
    // would report the certificate of the session it resumes.
    config.resumption = rustls::client::Resumption::disabled();
    TlsConnector::from(Arc::new(config))
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(
    addr: SocketAddr,
    tls: &TlsConnector,
    seen_certs: &Mutex<BTreeSet<Vec<u8>>>,
) -> Result<Sender, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").expect("name");
    let stream = tls.connect(name, tcp).await.map_err(|e| e.to_string())?;
    if let Some(leaf) = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
    {
        seen_certs.lock().await.insert(leaf.as_ref().to_vec());
    }
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok(sender)
}

async fn send(sender: &mut Sender, case: &Case) -> Result<(u16, Bytes), String> {
    sender.ready().await.map_err(|e| e.to_string())?;
    let request = hyper::Request::post(case.endpoint)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(case.body.clone()))
        .expect("request");
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body))
}

fn judge(case: &Case, status: u16, body: &[u8], tally: &Tally) {
    if status != 200 {
        tally.bad_status.fetch_add(1, Ordering::Relaxed);
        eprintln!("status {status}: {}", String::from_utf8_lossy(body));
        return;
    }
    let answer: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let right = answer["response"]["uid"] == case.uid.as_str()
        && answer["response"]["allowed"] == case.allowed;
    if right {
        tally.ok.fetch_add(1, Ordering::Relaxed);
    } else {
        tally.wrong.fetch_add(1, Ordering::Relaxed);
        eprintln!("wrong answer for {}: {answer}", case.uid);
    }
}

#[allow(clippy::too_many_arguments)]
async fn worker(
    id: usize,
    addr: SocketAddr,
    tls: TlsConnector,
    cases: Arc<Vec<Case>>,
    interval: Duration,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
    seen_certs: Arc<Mutex<BTreeSet<Vec<u8>>>>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sender: Option<Sender> = None;
    let mut on_connection = 0u64;
    let mut next = id;
    loop {
        ticker.tick().await;
        // SIGTERM is sent once the load balancer would have stopped sending (preStop): no
        // new request after it, and every request started before it must be answered.
        if stop.load(Ordering::Acquire) {
            return;
        }
        if sender.is_none() || on_connection >= REQUESTS_PER_CONNECTION {
            match connect(addr, &tls, &seen_certs).await {
                Ok(s) => {
                    sender = Some(s);
                    on_connection = 0;
                }
                Err(e) => {
                    tally.connect_failed.fetch_add(1, Ordering::Relaxed);
                    eprintln!("connect: {e}");
                    sender = None;
                    continue;
                }
            }
        }
        let Some(s) = sender.as_mut() else { continue };
        let case = &cases[next % cases.len()];
        next += WORKERS;
        on_connection += 1;
        tally.in_flight.fetch_add(1, Ordering::AcqRel);
        let result = send(s, case).await;
        tally.in_flight.fetch_sub(1, Ordering::AcqRel);
        match result {
            Ok((status, body)) => judge(case, status, &body, &tally),
            Err(e) => {
                tally.failed.fetch_add(1, Ordering::Relaxed);
                eprintln!("request failed: {e}");
                sender = None;
            }
        }
    }
}

type Chunks = tokio::sync::mpsc::Receiver<Bytes>;

/// A request whose body arrives in two halves: the first now, the second when `rest` fires.
async fn slow_request(
    addr: SocketAddr,
    tls: TlsConnector,
    case: &Case,
    rest: tokio::sync::oneshot::Receiver<()>,
    started: tokio::sync::oneshot::Sender<()>,
) -> Result<(u16, Bytes), String> {
    use http_body_util::StreamBody;
    use hyper::body::Frame;
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").expect("name");
    let stream = tls.connect(name, tcp).await.map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let (tx, rx): (_, Chunks) = tokio::sync::mpsc::channel(2);
    let frames = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, std::convert::Infallible>(Frame::data(chunk)), rx))
    });
    let half = case.body.len() / 2;
    let request = hyper::Request::post(case.endpoint)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .header("content-length", case.body.len())
        .body(StreamBody::new(frames))
        .expect("request");
    tx.send(case.body.slice(..half))
        .await
        .map_err(|e| e.to_string())?;
    let second = case.body.slice(half..);
    tokio::spawn(async move {
        let _ = rest.await;
        let _ = tx.send(second).await;
    });
    let response = sender.send_request(request);
    let _ = started.send(());
    let response = response.await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body))
}

async fn metric(addr: SocketAddr, name_and_labels: &str) -> Option<f64> {
    let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .ok()?;
    tokio::spawn(conn);
    let request = hyper::Request::get("/metrics")
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .ok()?;
    let response = sender.send_request(request).await.ok()?;
    let body = response.into_body().collect().await.ok()?.to_bytes();
    let text = String::from_utf8_lossy(&body).into_owned();
    text.lines()
        .find(|l| l.starts_with(name_and_labels) && l[name_and_labels.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn wait_ready(metrics: SocketAddr, child: &mut Child) -> bool {
    for _ in 0..300 {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if tokio::net::TcpStream::connect(metrics).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

async fn soak(binary: &Path, duration: Duration, rate: u64) -> bool {
    let dir = std::env::temp_dir().join(format!("fluxgate-soak-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("work dir");
    let first_ca = write_cert_version(&dir, "v1");
    let second_ca = write_cert_version(&dir, "v2");
    switch_certs(&dir, "v1");
    let config = dir.join("config.yaml");
    write_atomically(&config, GOOD_CONFIG);

    let port = free_port();
    let metrics_port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let metrics: SocketAddr = ([127, 0, 0, 1], metrics_port).into();
    let log = std::fs::File::create(dir.join("server.log")).expect("log file");
    let mut child = Command::new(binary)
        .args(["serve", "--no-cluster", "--listen"])
        .arg(addr.to_string())
        .arg("--metrics-listen")
        .arg(metrics.to_string())
        .arg("--tls-cert")
        .arg(dir.join("current/tls.crt"))
        .arg("--tls-key")
        .arg(dir.join("current/tls.key"))
        .arg("--config")
        .arg(&config)
        .args(["--reload-interval-ms", "500", "--drain-timeout", "10"])
        .args(["--audit-interval", "0"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start fluxgate");
    let pid = child.id();
    if !wait_ready(metrics, &mut child).await {
        eprintln!(
            "fluxgate did not start; see {}",
            dir.join("server.log").display()
        );
        let _ = child.kill();
        return false;
    }

    let cases = Arc::new(cases());
    let tls = connector(&[first_ca, second_ca]);
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let seen_certs = Arc::new(Mutex::new(BTreeSet::new()));
    let interval = Duration::from_micros(1_000_000 * WORKERS as u64 / rate.max(1));
    let workers: Vec<_> = (0..WORKERS)
        .map(|id| {
            tokio::spawn(worker(
                id,
                addr,
                tls.clone(),
                cases.clone(),
                interval,
                stop.clone(),
                tally.clone(),
                seen_certs.clone(),
            ))
        })
        .collect();

    let started = Instant::now();
    let at = |fraction: f64| started + duration.mul_f64(fraction);
    let mut events = vec![
        (at(0.25), "rotate the certificate"),
        (at(0.45), "reload a good configuration"),
        (at(0.60), "reload a broken configuration"),
        (at(0.75), "restore a good configuration"),
    ];
    let mut rss = Vec::new();
    let mut sampler = tokio::time::interval(Duration::from_secs(1));
    while Instant::now() < started + duration {
        sampler.tick().await;
        if let Some(kib) = rss_kib(pid) {
            rss.push((started.elapsed().as_secs_f64(), kib));
        }
        while let Some((when, what)) = events.first().copied()
            && Instant::now() >= when
        {
            events.remove(0);
            println!("{:>6.1}s  {what}", started.elapsed().as_secs_f64());
            match what {
                "rotate the certificate" => switch_certs(&dir, "v2"),
                "reload a good configuration" => write_atomically(&config, GOOD_CONFIG_2),
                "reload a broken configuration" => write_atomically(&config, BROKEN_CONFIG),
                _ => write_atomically(&config, GOOD_CONFIG),
            }
        }
    }
    let config_ok = metric(metrics, "fluxgate_config_reloads_total{result=\"success\"}").await;
    let config_err = metric(metrics, "fluxgate_config_reloads_total{result=\"error\"}").await;
    let tls_ok = metric(metrics, "fluxgate_tls_reloads_total{result=\"success\"}").await;

    // The steady load stops as the API servers stop sending once the endpoint is gone
    // (preStop); then requests with half their body sent are in flight at SIGTERM.
    stop.store(true, Ordering::Release);
    for w in workers {
        let _ = w.await;
    }
    let mut slow = Vec::new();
    let mut finish = Vec::new();
    for i in 0..SLOW_REQUESTS {
        let (rest_tx, rest_rx) = tokio::sync::oneshot::channel();
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let cases = cases.clone();
        let tls = tls.clone();
        slow.push(tokio::spawn(async move {
            let case = &cases[i * 7 % cases.len()];
            let result = slow_request(addr, tls, case, rest_rx, started_tx).await;
            (i * 7 % cases.len(), result)
        }));
        finish.push(rest_tx);
        let _ = started_rx.await;
    }
    // Let the first halves reach the server before the signal.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let in_flight_at_sigterm = SLOW_REQUESTS as u64 + tally.in_flight.load(Ordering::Acquire);
    let sigterm = Instant::now();
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    for rest in finish {
        let _ = rest.send(());
    }
    let mut drained_requests = 0u64;
    for request in slow {
        match request.await {
            Ok((index, Ok((status, body)))) => {
                let before = tally.ok.load(Ordering::Relaxed);
                judge(&cases[index], status, &body, &tally);
                if tally.ok.load(Ordering::Relaxed) > before {
                    drained_requests += 1;
                }
            }
            Ok((_, Err(e))) => {
                tally.failed.fetch_add(1, Ordering::Relaxed);
                eprintln!("request in flight at SIGTERM failed: {e}");
            }
            Err(e) => {
                tally.failed.fetch_add(1, Ordering::Relaxed);
                eprintln!("request task: {e}");
            }
        }
    }
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break Some(status);
        }
        if sigterm.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let stopped_in = sigterm.elapsed();
    let server_log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
    let drained = server_log.contains("all connections drained");

    let ok = tally.ok.load(Ordering::Relaxed);
    let wrong = tally.wrong.load(Ordering::Relaxed);
    let failed = tally.failed.load(Ordering::Relaxed);
    let bad_status = tally.bad_status.load(Ordering::Relaxed);
    let connect_failed = tally.connect_failed.load(Ordering::Relaxed);
    let elapsed = duration.as_secs_f64();
    let minute = rss.len().min(60);
    let avg =
        |s: &[(f64, u64)]| s.iter().map(|(_, k)| *k as f64).sum::<f64>() / s.len().max(1) as f64;
    let (first, last) = if rss.len() >= 2 * minute && minute > 0 {
        (avg(&rss[..minute]), avg(&rss[rss.len() - minute..]))
    } else {
        let half = rss.len() / 2;
        (avg(&rss[..half]), avg(&rss[half..]))
    };
    let max_rss = rss.iter().map(|(_, k)| *k).max().unwrap_or(0);
    let certs_seen = seen_certs.lock().await.len();

    println!(
        "duration            {elapsed:.0}s at {rate} requests/s target, {WORKERS} connections"
    );
    println!("answered right      {ok} ({:.1}/s)", ok as f64 / elapsed);
    println!("wrong answers       {wrong}");
    println!("non-200 answers     {bad_status}");
    println!("failed requests     {failed}");
    println!("failed connections  {connect_failed}");
    println!(
        "in flight at SIGTERM {in_flight_at_sigterm} (bodies half sent), answered right after it: {drained_requests}"
    );
    println!(
        "serving certs seen  {certs_seen} (rotation reached new connections: {})",
        certs_seen >= 2
    );
    println!(
        "reloads             config ok {} / error {}, certificate ok {}",
        config_ok.unwrap_or(0.0),
        config_err.unwrap_or(0.0),
        tls_ok.unwrap_or(0.0)
    );
    println!(
        "RSS                 first minute {:.1} MiB, last minute {:.1} MiB, max {:.1} MiB ({} samples)",
        first / 1024.0,
        last / 1024.0,
        max_rss as f64 / 1024.0,
        rss.len()
    );
    println!(
        "shutdown            exit {:?} {:.2}s after SIGTERM, drained: {drained}",
        status.map(|s| s.code()),
        stopped_in.as_secs_f64()
    );

    let flat = last <= first * 1.25 + 4096.0;
    let passed = wrong == 0
        && failed == 0
        && bad_status == 0
        && connect_failed == 0
        && drained_requests == SLOW_REQUESTS as u64
        && certs_seen >= 2
        && config_ok.unwrap_or(0.0) >= 2.0
        && config_err.unwrap_or(0.0) >= 1.0
        && flat
        && drained
        && status.is_some_and(|s| s.success());
    println!(
        "result              {}",
        if passed { "PASS" } else { "FAIL" }
    );
    if passed {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        println!("server log          {}", dir.join("server.log").display());
    }
    passed
}
