//! Time from exec to accepting TLS connections, for `scripts/bench-load.sh`.
//!
//!     startup_time ADDR CA_PEM BODY RUNS -- COMMAND [ARGS...]
//!
//! Runs COMMAND RUNS times. Each time it notes the instant before the spawn, then tries a TCP
//! connection to ADDR every 100 µs; once one is accepted it completes a TLS handshake
//! (verifying the certificate against CA_PEM) and POSTs BODY to /validate. It prints, per run,
//! the milliseconds to the first completed handshake and to the first answered review, then
//! kills the server, and at the end the median of each.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

fn client_config(ca_pem: &[u8]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.expect("CA PEM")).expect("CA certificate");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// One attempt: `None` while the server is not accepting yet.
fn attempt(
    addr: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
    body: &[u8],
    started: Instant,
) -> Option<(Duration, Duration)> {
    let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_millis(50)).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    tcp.set_nodelay(true).ok()?;
    let name = ServerName::try_from("localhost").ok()?;
    let mut tls = rustls::ClientConnection::new(config.clone(), name).ok()?;
    while tls.is_handshaking() {
        tls.complete_io(&mut tcp).ok()?;
    }
    let handshake = started.elapsed();
    let mut stream = rustls::Stream::new(&mut tls, &mut tcp);
    let head = format!(
        "POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).ok()?;
    stream.write_all(body).ok()?;
    let mut answer = [0u8; 12];
    stream.read_exact(&mut answer).ok()?;
    if !answer.starts_with(b"HTTP/1.1 200") {
        eprintln!(
            "unexpected answer: {}",
            String::from_utf8_lossy(&answer).trim_end()
        );
        return None;
    }
    Some((handshake, started.elapsed()))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let split = args.iter().position(|a| a == "--");
    let (Some(split), true) = (split, args.len() > 6) else {
        eprintln!("usage: startup_time ADDR CA_PEM BODY RUNS -- COMMAND [ARGS...]");
        std::process::exit(2);
    };
    let addr: SocketAddr = args[1].parse().expect("ADDR");
    let config = client_config(&std::fs::read(&args[2]).expect("CA_PEM"));
    let body = std::fs::read(&args[3]).expect("BODY");
    let runs: usize = args[4].parse().expect("RUNS");
    let command = &args[split + 1..];

    let (mut handshakes, mut answers) = (Vec::new(), Vec::new());
    for run in 1..=runs {
        let started = Instant::now();
        let mut child = Command::new(&command[0])
            .args(&command[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawns the server");
        let deadline = started + Duration::from_secs(10);
        let measured = loop {
            if let Some(times) = attempt(addr, &config, &body, started) {
                break Some(times);
            }
            if Instant::now() > deadline {
                break None;
            }
            std::thread::sleep(Duration::from_micros(100));
        };
        let _ = child.kill();
        let _ = child.wait();
        let Some((handshake, answer)) = measured else {
            eprintln!("run {run}: the server did not answer within 10 s");
            std::process::exit(1);
        };
        let (h, a) = (handshake.as_secs_f64() * 1e3, answer.as_secs_f64() * 1e3);
        println!(
            "run {run}: TLS handshake done after {h:.2} ms, first review answered after {a:.2} ms"
        );
        handshakes.push(h);
        answers.push(a);
        // Let the port be released before the next run binds it.
        std::thread::sleep(Duration::from_millis(200));
    }
    println!(
        "median of {runs}: exec to TLS accepted {:.2} ms, to first review answered {:.2} ms",
        median(handshakes),
        median(answers)
    );
}
