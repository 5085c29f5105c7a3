//! The webhook as the API server meets it: real TLS, real HTTP/1.1 and HTTP/2, the bytes a
//! real kube-apiserver sent, and every kind of bad input.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Client, ServerSetup, TestServer, fixture, fixtures, metric_value, plain_get};
use fluxgate::cluster::{ClusterView, MemoryView};
use fluxgate::finding::Mode;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn uid_of(body: &[u8]) -> String {
    let review: serde_json::Value = serde_json::from_slice(body).expect("fixture JSON");
    review["request"]["uid"].as_str().expect("uid").to_string()
}

#[tokio::test]
async fn every_real_review_is_answered_with_its_uid_over_http1_and_http2() {
    let server = TestServer::start().await;
    for http2 in [false, true] {
        let mut client = server.client(http2).await;
        for (name, body) in fixtures() {
            let uid = uid_of(&body);
            for path in ["/validate", "/mutate"] {
                let response = client
                    .request("POST", path, Some("application/json"), body.clone())
                    .await
                    .expect("response");
                assert_eq!(response.status, 200, "{name} {path}");
                let answer = response.json();
                assert_eq!(answer["apiVersion"], "admission.k8s.io/v1", "{name}");
                assert_eq!(answer["kind"], "AdmissionReview", "{name}");
                assert_eq!(answer["response"]["uid"], uid.as_str(), "{name}");
                let allowed = answer["response"]["allowed"].as_bool().expect("allowed");
                if allowed {
                    assert!(answer["response"].get("status").is_none(), "{name}");
                } else {
                    assert_eq!(answer["response"]["status"]["code"], 403, "{name}");
                    assert!(
                        !answer["response"]["status"]["message"]
                            .as_str()
                            .unwrap_or("")
                            .is_empty(),
                        "{name}: a denial says why"
                    );
                }
                match answer["response"].get("patch") {
                    Some(_) => assert_eq!(answer["response"]["patchType"], "JSONPatch"),
                    None => assert!(answer["response"].get("patchType").is_none(), "{name}"),
                }
            }
        }
    }
}

#[tokio::test]
async fn deleting_is_never_blocked() {
    let server = TestServer::start().await;
    for name in [
        "ocirepo-delete__capture-OCIRepository-DELETE.json",
        "ocirepo-delete-dryrun-server__capture-OCIRepository-DELETE-dryrun.json",
        "v1beta2-apply-then-delete__capture-OCIRepository-DELETE.json",
    ] {
        let answer = server.post("/validate", fixture(name)).await.json();
        assert_eq!(answer["response"]["allowed"], true, "{name}");
    }
}

struct BadInput {
    what: &'static str,
    method: &'static str,
    path: &'static str,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    reason: &'static str,
}

fn review_with(request: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": request,
    }))
    .expect("json")
}

#[tokio::test]
async fn bad_input_gets_a_clear_json_4xx_and_is_counted() {
    let server = TestServer::start_with(ServerSetup {
        tweak: |o| o.max_body_bytes = 64 * 1024,
        ..ServerSetup::default()
    })
    .await;
    let cases = vec![
        BadInput {
            what: "not JSON",
            method: "POST",
            path: "/validate",
            content_type: Some("application/json"),
            body: b"{not json".to_vec(),
            status: 400,
            reason: "not-a-review",
        },
        BadInput {
            what: "JSON that is not an AdmissionReview",
            method: "POST",
            path: "/validate",
            content_type: Some("application/json"),
            body: br#"{"apiVersion":"v1","kind":"Pod"}"#.to_vec(),
            status: 400,
            reason: "not-a-review",
        },
        BadInput {
            what: "an AdmissionReview v1beta1",
            method: "POST",
            path: "/mutate",
            content_type: Some("application/json"),
            body: br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"x"}}"#.to_vec(),
            status: 400,
            reason: "not-a-review",
        },
        BadInput {
            what: "no request",
            method: "POST",
            path: "/validate",
            content_type: Some("application/json"),
            body: br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(),
            status: 400,
            reason: "not-a-review",
        },
        BadInput {
            what: "no uid",
            method: "POST",
            path: "/validate",
            content_type: Some("application/json"),
            body: review_with(serde_json::json!({
                "kind": {"group": "", "version": "v1", "kind": "Pod"}, "operation": "CREATE"
            })),
            status: 400,
            reason: "not-a-review",
        },
        BadInput {
            what: "a request of the wrong shape",
            method: "POST",
            path: "/validate",
            content_type: Some("application/json"),
            body: review_with(serde_json::json!({"uid": "u", "kind": "Pod", "operation": 7})),
            status: 400,
            reason: "not-a-review",
        },
        BadInput {
            what: "a body over the limit",
            method: "POST",
            path: "/validate",
            content_type: Some("application/json"),
            body: vec![b' '; 64 * 1024 + 1],
            status: 413,
            reason: "too-large",
        },
        BadInput {
            what: "a wrong method",
            method: "GET",
            path: "/validate",
            content_type: None,
            body: Vec::new(),
            status: 405,
            reason: "method-not-allowed",
        },
        BadInput {
            what: "a wrong path",
            method: "POST",
            path: "/admit",
            content_type: Some("application/json"),
            body: fixture("deployment-create__capture-Deployment-CREATE.json"),
            status: 404,
            reason: "not-found",
        },
        BadInput {
            what: "a wrong content type",
            method: "POST",
            path: "/validate",
            content_type: Some("text/plain"),
            body: fixture("deployment-create__capture-Deployment-CREATE.json"),
            status: 415,
            reason: "content-type",
        },
        BadInput {
            what: "no content type",
            method: "POST",
            path: "/validate",
            content_type: None,
            body: fixture("deployment-create__capture-Deployment-CREATE.json"),
            status: 415,
            reason: "content-type",
        },
    ];
    for http2 in [false, true] {
        for case in &cases {
            // A fresh connection each time: after a 413 the server may close the connection,
            // as it has not read the whole body.
            let mut client = server.client(http2).await;
            let before = metric_value(
                &server.metrics().await,
                &format!(
                    "fluxgate_rejected_requests_total{{reason=\"{}\"}}",
                    case.reason
                ),
            )
            .unwrap_or(0.0);
            let response = client
                .request(case.method, case.path, case.content_type, case.body.clone())
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", case.what));
            assert_eq!(response.status, case.status, "{}", case.what);
            let answer = response.json();
            assert_eq!(answer["code"], case.status, "{}", case.what);
            assert!(
                answer["error"].as_str().is_some_and(|m| m.len() > 10),
                "{}: {answer}",
                case.what
            );
            let after = metric_value(
                &server.metrics().await,
                &format!(
                    "fluxgate_rejected_requests_total{{reason=\"{}\"}}",
                    case.reason
                ),
            )
            .unwrap_or(0.0);
            assert_eq!(after, before + 1.0, "{} is counted", case.what);
        }
        // The server keeps answering after bad input.
        let good = server
            .client(http2)
            .await
            .request(
                "POST",
                "/validate",
                Some("application/json"),
                fixture("deployment-create__capture-Deployment-CREATE.json"),
            )
            .await
            .expect("good request after bad ones");
        assert_eq!(good.status, 200);
    }
}

#[tokio::test]
async fn an_update_review_larger_than_the_api_server_limit_is_accepted() {
    // An UPDATE review carries object and oldObject; each may be near the API server's 3 MiB.
    let server = TestServer::start().await;
    let mut review: serde_json::Value = serde_json::from_slice(&fixture(
        "ocirepo-update-label-only__capture-OCIRepository-UPDATE.json",
    ))
    .expect("fixture");
    let filler = "x".repeat(3 * 1024 * 1024);
    review["request"]["object"]["metadata"]["annotations"] = serde_json::json!({"big": filler});
    review["request"]["oldObject"]["metadata"]["annotations"] = serde_json::json!({"big": filler});
    let body = serde_json::to_vec(&review).expect("json");
    assert!(body.len() > 6 * 1024 * 1024);
    let response = server.post("/validate", body).await;
    assert_eq!(response.status, 200);
    assert_eq!(
        response.json()["response"]["uid"],
        uid_of(&fixture(
            "ocirepo-update-label-only__capture-OCIRepository-UPDATE.json"
        ))
        .as_str()
    );
}

#[tokio::test]
async fn metrics_health_and_readiness_are_served_on_the_plain_listener() {
    let view = Arc::new(MemoryView::new());
    view.set_synced(false);
    let server = TestServer::start_with(ServerSetup {
        view: view.clone() as Arc<dyn ClusterView>,
        ..ServerSetup::default()
    })
    .await;
    let (status, _) = plain_get(server.metrics_addr, "/healthz").await;
    assert_eq!(status, 200);
    let (status, body) = plain_get(server.metrics_addr, "/readyz").await;
    assert_eq!(
        status, 503,
        "not ready before the cluster view syncs: {body}"
    );
    assert!(body.contains("\"clusterView\":false"), "{body}");
    view.set_synced(true);
    let (status, _) = plain_get(server.metrics_addr, "/readyz").await;
    assert_eq!(status, 200);

    server
        .post(
            "/validate",
            fixture("deployment-create__capture-Deployment-CREATE.json"),
        )
        .await;
    let metrics = server.metrics().await;
    for name in [
        "fluxgate_admission_requests_total{decision=\"allow\",endpoint=\"validate\",kind=\"Deployment\",operation=\"CREATE\"}",
        "fluxgate_admission_duration_seconds_count{endpoint=\"validate\"}",
        "fluxgate_tls_cert_expiry_timestamp_seconds",
    ] {
        assert!(
            metric_value(&metrics, name).is_some_and(|v| v > 0.0),
            "{name} in\n{metrics}"
        );
    }
    assert!(metrics.contains(&format!(
        "fluxgate_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    )));
}

async fn wait_for(mut check: impl FnMut() -> bool) -> bool {
    for _ in 0..100 {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn the_configuration_reloads_and_a_broken_file_keeps_the_old_one() {
    let server = TestServer::start_with(ServerSetup {
        config_yaml: Some("mode: enforce\n".into()),
        ..ServerSetup::default()
    })
    .await;
    let path = server.dir.0.join("config.yaml");
    assert_eq!(server.state.engine.config().mode, Mode::Enforce);

    std::fs::write(&path, "mode: audit\n").expect("write");
    assert!(
        wait_for(|| server.state.engine.config().mode == Mode::Audit).await,
        "a good file is picked up"
    );
    let metrics = server.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            "fluxgate_config_reloads_total{result=\"success\"}"
        ),
        Some(1.0)
    );

    std::fs::write(&path, "mode: sometimes\n").expect("write");
    let state = server.state.clone();
    assert!(
        wait_for(|| {
            let m = state
                .metrics
                .config_reloads
                .with_label_values(&["error"])
                .get();
            m == 1
        })
        .await,
        "a broken file is counted"
    );
    assert_eq!(
        server.state.engine.config().mode,
        Mode::Audit,
        "and the old one stays"
    );
    let response = server
        .post(
            "/validate",
            fixture("deployment-create__capture-Deployment-CREATE.json"),
        )
        .await;
    assert_eq!(response.status, 200, "the server keeps answering");
}

#[tokio::test]
async fn a_rotated_certificate_is_served_to_new_connections_without_dropping_old_ones() {
    let server = TestServer::start().await;
    let mut old_client = server.client(true).await;

    // cert-manager writes a new pair, under a new CA here so that the change is visible.
    let new_ca = common::write_certs(&server.dir.0);
    let state = server.state.clone();
    assert!(
        wait_for(|| state
            .metrics
            .tls_reloads
            .with_label_values(&["success"])
            .get()
            == 1)
        .await,
        "the new certificate is loaded"
    );
    assert!(
        Client::connect(server.addr, &new_ca, false).await.is_ok(),
        "new connections get the new certificate"
    );
    assert!(
        Client::connect(server.addr, &server.ca_pem, false)
            .await
            .is_err(),
        "and no longer the old one"
    );
    let response = old_client
        .request(
            "POST",
            "/validate",
            Some("application/json"),
            fixture("deployment-create__capture-Deployment-CREATE.json"),
        )
        .await
        .expect("the connection opened before the rotation still works");
    assert_eq!(response.status, 200);

    // A half-written or broken pair is refused and the working one stays.
    std::fs::write(server.dir.0.join("tls.key"), "not a key").expect("write");
    assert!(
        wait_for(|| state
            .metrics
            .tls_reloads
            .with_label_values(&["error"])
            .get()
            == 1)
        .await,
        "the broken pair is counted"
    );
    assert!(Client::connect(server.addr, &new_ca, true).await.is_ok());
}

#[tokio::test]
async fn only_tls_12_and_13_are_offered() {
    let server = TestServer::start().await;
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let mut roots = rustls::RootCertStore::empty();
        for cert in
            <rustls_pki_types::CertificateDer as rustls_pki_types::pem::PemObject>::pem_slice_iter(
                &server.ca_pem,
            )
        {
            roots.add(cert.expect("pem")).expect("root");
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[version])
        .expect("version")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(server.addr)
            .await
            .expect("tcp");
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost").expect("name"), tcp)
            .await
            .expect("handshake");
        assert_eq!(tls.get_ref().1.protocol_version(), Some(version.version));
    }
}

#[tokio::test]
async fn shutdown_finishes_requests_in_flight_and_then_stops_accepting() {
    let server = TestServer::start().await;
    let body = fixture("deployment-create__capture-Deployment-CREATE.json");
    let uid = uid_of(&body);

    let tcp = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("tcp");
    let mut tls = common::tls_connector(&server.ca_pem, vec![b"http/1.1".to_vec()])
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("tls");
    let head = format!(
        "POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.expect("head");
    let (first, rest) = body.split_at(body.len() / 2);
    tls.write_all(first).await.expect("first half");
    tls.flush().await.expect("flush");
    tokio::time::sleep(Duration::from_millis(100)).await;

    server.shutdown.shutdown();
    tokio::time::sleep(Duration::from_millis(200)).await;
    tls.write_all(rest)
        .await
        .expect("the rest arrives after the signal");
    tls.flush().await.expect("flush");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.contains(&uid),
        "the request in flight got its answer: {text}"
    );

    tokio::time::timeout(Duration::from_secs(5), server.task)
        .await
        .expect("the server stops after draining")
        .expect("no panic");
    assert!(
        tokio::net::TcpStream::connect(server.addr).await.is_err(),
        "no new connections after shutdown"
    );
}

#[path = "support/admission_fixtures.rs"]
mod admission_fixtures;

#[tokio::test]
async fn real_reviews_get_the_policies_verdicts_over_https() {
    use admission_fixtures::{Expected, OCI_REPOSITORY_FIXTURES};
    let server = TestServer::start().await;
    for http2 in [false, true] {
        let mut client = server.client(http2).await;
        for (file, expected) in OCI_REPOSITORY_FIXTURES {
            let response = client
                .request("POST", "/validate", Some("application/json"), fixture(file))
                .await
                .expect("response");
            let answer = response.json();
            let allowed = answer["response"]["allowed"] == true;
            match expected {
                Expected::Allowed | Expected::NotJudged => assert!(allowed, "{file}: {answer}"),
                Expected::Denied(phrases) => {
                    assert!(!allowed, "{file}");
                    assert_eq!(answer["response"]["status"]["code"], 403, "{file}");
                    let message = answer["response"]["status"]["message"]
                        .as_str()
                        .unwrap_or("");
                    for phrase in *phrases {
                        assert!(
                            message.contains(phrase),
                            "{file}: {phrase:?} not in {message}"
                        );
                    }
                }
            }
        }
        // The other kinds the API server sent: plain Deployments and RBAC without GitLab
        // identities break no rule.
        for (file, body) in fixtures() {
            if file.contains("OCIRepository") {
                continue;
            }
            let answer = client
                .request("POST", "/validate", Some("application/json"), body)
                .await
                .expect("response")
                .json();
            assert_eq!(answer["response"]["allowed"], true, "{file}: {answer}");
        }
    }
}

fn agent_deployment(namespace: &str, release: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": format!("{release}-v2"), "namespace": namespace,
            "labels": {"app.kubernetes.io/name": "gitlab-agent", "app.kubernetes.io/instance": release}},
        "spec": {"selector": {"matchLabels": {"app": release}}, "template": {
            "metadata": {"labels": {"app": release}},
            "spec": {"containers": [{"name": "agent",
                "image": "registry.gitlab.com/gitlab-org/cluster-integration/gitlab-agent/agentk:v17.3.1"}]}}}
    })
}

/// One request per policy that breaks it.
fn violations() -> Vec<(&'static str, Vec<u8>)> {
    let tenant_kustomization_without_account = serde_json::json!({
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
        "metadata": {"name": "apps", "namespace": "team-a"},
        "spec": {"interval": "10m", "path": "./deploy", "prune": true,
            "sourceRef": {"kind": "GitRepository", "name": "apps"}}
    });
    // Verified with a cosign key (signed-oci-sources passes it), following `latest`.
    let signed_latest = serde_json::json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "OCIRepository",
        "metadata": {"name": "app", "namespace": "team-a"},
        "spec": {"interval": "5m", "url": "oci://registry.gitlab.com/acme/app/manifests",
            "ref": {"tag": "latest"},
            "verify": {"provider": "cosign", "secretRef": {"name": "cosign-public-key"}}}
    });
    let ci_admin = serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "ci-admin"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "gitlab:ci_job"}]
    });
    // Pinned to a release tag, unsigned: breaks signed-oci-sources only.
    vec![
        (
            "signed-oci-sources",
            fixture(
                "ocirepo-create-as-kustomize-controller-sa-impersonated__capture-OCIRepository-CREATE.json",
            ),
        ),
        (
            "single-agent",
            common::review_of(
                &agent_deployment("second", "second-agent"),
                "CREATE",
                "u-agent",
            ),
        ),
        (
            "ci-impersonation",
            common::review_of(&ci_admin, "CREATE", "u-rbac"),
        ),
        (
            "tenant-lockdown",
            common::review_of(&tenant_kustomization_without_account, "CREATE", "u-tenant"),
        ),
        (
            "oci-version-pinning",
            common::review_of(&signed_latest, "CREATE", "u-latest"),
        ),
    ]
}

fn view_with_an_agent() -> Arc<dyn ClusterView> {
    let view = MemoryView::new();
    view.apply(&agent_deployment("gitlab-agent", "gitlab-agent"))
        .expect("agent");
    Arc::new(view)
}

#[tokio::test]
async fn every_mode_of_every_policy_through_https() {
    for (policy, body) in violations() {
        for mode in ["enforce", "warn", "audit", "off"] {
            let server = TestServer::start_with(ServerSetup {
                config_yaml: Some(format!("policies:\n  {policy}:\n    mode: {mode}\n")),
                view: view_with_an_agent(),
                ..ServerSetup::default()
            })
            .await;
            let answer = server.post("/validate", body.clone()).await.json();
            let response = &answer["response"];
            let warnings = response["warnings"].as_array().cloned().unwrap_or_default();
            let named = |w: &serde_json::Value| {
                w.as_str()
                    .is_some_and(|w| w.contains(&format!("[{policy}]")))
            };
            match mode {
                "enforce" => {
                    assert_eq!(response["allowed"], false, "{policy} {mode}");
                    let message = response["status"]["message"].as_str().unwrap_or("");
                    assert!(
                        message.contains(&format!("[{policy}]")),
                        "{policy}: {message}"
                    );
                }
                "warn" => {
                    assert_eq!(response["allowed"], true, "{policy} {mode}");
                    assert!(warnings.iter().any(named), "{policy} warns: {answer}");
                }
                "audit" | "off" => {
                    assert_eq!(response["allowed"], true, "{policy} {mode}");
                    assert!(
                        !warnings.iter().any(named),
                        "{policy} {mode} tells the client nothing"
                    );
                }
                _ => unreachable!(),
            }
            let metrics = server.metrics().await;
            let counted = metric_value(
                &metrics,
                &format!("fluxgate_policy_violations_total{{mode=\"{mode}\",policy=\"{policy}\"}}"),
            );
            if mode == "off" {
                assert_eq!(counted, None, "{policy}: off does not evaluate");
            } else {
                assert!(
                    counted.is_some_and(|c| c >= 1.0),
                    "{policy} {mode} is counted:\n{metrics}"
                );
            }
        }
    }
}

#[tokio::test]
async fn the_mode_flag_turns_every_denial_into_an_audit_finding() {
    let server = TestServer::start_with(ServerSetup {
        mode_override: Some(Mode::Audit),
        view: view_with_an_agent(),
        ..ServerSetup::default()
    })
    .await;
    for (policy, body) in violations() {
        let answer = server.post("/validate", body).await.json();
        assert_eq!(answer["response"]["allowed"], true, "{policy}");
    }
}

#[tokio::test]
async fn an_exempted_group_gets_through_and_the_exemption_is_counted() {
    let server = TestServer::start_with(ServerSetup {
        config_yaml: Some("exemptions:\n- name: break-glass\n  groups: [devs]\n".into()),
        view: view_with_an_agent(),
        ..ServerSetup::default()
    })
    .await;
    let (_, body) = violations().remove(2);
    let answer = server.post("/validate", body).await.json();
    assert_eq!(answer["response"]["allowed"], true);
    let metrics = server.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            "fluxgate_exemptions_total{exemption=\"break-glass\",policy=\"ci-impersonation\"}"
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn a_dry_run_gets_the_real_answer_and_reserves_nothing() {
    let server = TestServer::start().await;
    let first = agent_deployment("team-a", "agent-a");
    let second = agent_deployment("team-b", "agent-b");
    let dry = |object: &serde_json::Value, uid: &str| {
        let mut review: serde_json::Value =
            serde_json::from_slice(&common::review_of(object, "CREATE", uid)).expect("json");
        review["request"]["dryRun"] = serde_json::json!(true);
        serde_json::to_vec(&review).expect("json")
    };
    // A dry run of the first install is allowed and leaves no reservation behind...
    let answer = server.post("/validate", dry(&first, "d1")).await.json();
    assert_eq!(answer["response"]["allowed"], true);
    // ...so a real CREATE of a different install is still allowed...
    let answer = server
        .post("/validate", common::review_of(&second, "CREATE", "r1"))
        .await
        .json();
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    // ...and after that real one, a dry run of another install gets the real answer: denied.
    let answer = server.post("/validate", dry(&first, "d2")).await.json();
    assert_eq!(answer["response"]["allowed"], false, "{answer}");
    let metrics = server.metrics().await;
    for (result, count) in [("granted", 2.0), ("refused", 1.0)] {
        assert_eq!(
            metric_value(
                &metrics,
                &format!("fluxgate_agent_reservations_total{{result=\"{result}\"}}")
            ),
            Some(count),
            "{result}"
        );
    }
}
