//! The limits that keep one bad client from hurting the webhook: nesting depth, slow
//! clients, connection count, and mutual TLS.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{ServerSetup, TestServer, fixture};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn deeply_nested_json_is_refused_without_a_crash() {
    let server = TestServer::start().await;
    for depth in [200usize, 100_000] {
        let review =
            String::from_utf8(fixture("deployment-create__capture-Deployment-CREATE.json"))
                .expect("utf-8");
        let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let body = review.replacen("\"spec\":{", &format!("\"deep\":{nested},\"spec\":{{"), 1);
        assert_ne!(
            body, review,
            "the fixture has a spec to put the nesting beside"
        );
        let response = server.post("/validate", body.into_bytes()).await;
        assert_eq!(response.status, 400, "depth {depth}");
        assert!(
            response.json()["error"]
                .as_str()
                .unwrap_or("")
                .contains("nesting deeper than"),
            "{}",
            response.json()
        );
    }
    let response = server
        .post(
            "/validate",
            fixture("deployment-create__capture-Deployment-CREATE.json"),
        )
        .await;
    assert_eq!(response.status, 200, "the server is still up");
}

async fn tls_stream(server: &TestServer) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("tcp");
    common::tls_connector(&server.ca_pem, vec![b"http/1.1".to_vec()])
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("tls")
}

/// Writes one byte a `pace` until the server closes the connection; returns how long it took.
async fn trickle(
    stream: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    bytes: &[u8],
    pace: Duration,
) -> Option<Duration> {
    let started = std::time::Instant::now();
    for byte in bytes {
        if stream.write_all(&[*byte]).await.is_err() || stream.flush().await.is_err() {
            return Some(started.elapsed());
        }
        let mut buf = [0u8; 512];
        match tokio::time::timeout(pace, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => return Some(started.elapsed()),
            Err(_) => {}
        }
    }
    None
}

#[tokio::test]
async fn a_client_that_sends_headers_one_byte_at_a_time_is_cut_off() {
    let server = TestServer::start_with(ServerSetup {
        tweak: |o| o.header_read_timeout = Duration::from_millis(800),
        ..ServerSetup::default()
    })
    .await;
    let mut stream = tls_stream(&server).await;
    let head = b"POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\nx-padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let cut = trickle(&mut stream, head, Duration::from_millis(100)).await;
    let cut = cut.expect("the server closes the connection before the headers are complete");
    assert!(cut < Duration::from_secs(5), "cut off after {cut:?}");
}

#[tokio::test]
async fn a_client_that_sends_the_body_one_byte_at_a_time_gets_a_408() {
    let server = TestServer::start_with(ServerSetup {
        tweak: |o| o.body_read_timeout = Duration::from_millis(800),
        ..ServerSetup::default()
    })
    .await;
    let mut stream = tls_stream(&server).await;
    let body = fixture("deployment-create__capture-Deployment-CREATE.json");
    let head = format!(
        "POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    for byte in &body {
        if stream.write_all(&[*byte]).await.is_err() {
            break;
        }
        let _ = stream.flush().await;
        let mut buf = [0u8; 1024];
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await
        {
            answer.extend_from_slice(&buf[..n]);
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the server never gave up"
        );
    }
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
}

#[tokio::test]
async fn connections_over_the_limit_are_closed() {
    let server = TestServer::start_with(ServerSetup {
        tweak: |o| o.max_connections = 2,
        ..ServerSetup::default()
    })
    .await;
    let _first = server.client(false).await;
    let _second = server.client(true).await;
    let third = common::Client::connect(server.addr, &server.ca_pem, false).await;
    assert!(
        third.is_err(),
        "the third connection is refused while two are open"
    );
    drop(_first);
    let mut fourth = None;
    for _ in 0..50 {
        if let Ok(client) = common::Client::connect(server.addr, &server.ca_pem, false).await {
            fourth = Some(client);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(fourth.is_some(), "a closed connection frees its place");
}

#[tokio::test]
async fn with_a_client_ca_only_clients_with_its_certificates_get_in() {
    // The client CA and a client certificate signed by it.
    let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let mut ca_params = rcgen::CertificateParams::default();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let client_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let mut client_params =
        rcgen::CertificateParams::new(vec!["kube-apiserver".to_string()]).expect("params");
    client_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = client_params
        .signed_by(&client_key, &issuer)
        .expect("client cert");

    let dir = common::TempDir::new("client-ca");
    let ca_path = dir.0.join("client-ca.crt");
    std::fs::write(&ca_path, ca_cert.pem()).expect("write");
    // `tweak` is a plain fn; pass the path through the environment of this test process.
    // SAFETY: set before the server starts, read once in the tweak, in this test only.
    unsafe { std::env::set_var("FLUXGATE_TEST_CLIENT_CA", &ca_path) };
    let server = TestServer::start_with(ServerSetup {
        tweak: |o| o.client_ca = std::env::var_os("FLUXGATE_TEST_CLIENT_CA").map(Into::into),
        ..ServerSetup::default()
    })
    .await;

    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&server.ca_pem) {
        roots.add(cert.expect("pem")).expect("root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let with_cert = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots.clone())
        .with_client_auth_cert(
            vec![client_cert.der().clone()],
            PrivateKeyDer::from_pem_slice(client_key.serialize_pem().as_bytes()).expect("key"),
        )
        .expect("client auth");

    let request = fixture("deployment-create__capture-Deployment-CREATE.json");
    let head = format!(
        "POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        request.len()
    );
    let tcp = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("tcp");
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(with_cert))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("a client with a certificate from the CA gets in");
    tls.write_all(head.as_bytes()).await.expect("head");
    tls.write_all(&request).await.expect("body");
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));

    let without = common::Client::connect(server.addr, &server.ca_pem, false).await;
    let refused = match without {
        Err(_) => true,
        Ok(mut client) => client
            .request(
                "POST",
                "/validate",
                Some("application/json"),
                request.clone(),
            )
            .await
            .is_err(),
    };
    assert!(refused, "a client without a certificate is refused");
}
