//! No secret value ever reaches logs, metrics or reports.
//!
//! A marker string stands for a secret value. It is put where secrets live: a Secret's
//! `data` and `stringData`, a container's env and args, a last-applied annotation, and a
//! field of the wrong type (serde quotes such values in its errors). The objects go through
//! the HTTPS webhook (validate and mutate, CREATE and UPDATE, denied and allowed), the audit
//! scan with its PolicyReports, and `fluxgate check` in every output format; the marker must
//! appear in none of the logs (captured at debug level, fluxgate at trace), metrics, answers
//! or reports. Each object is also checked to have produced findings, so that the test
//! cannot pass by judging nothing.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use common::{ServerSetup, TestServer};
use fluxgate::cluster::MemoryView;
use fluxgate::config::Config;
use fluxgate::engine::Engine;
use fluxgate::report::Format;
use serde_json::{Value, json};

const MARKER: &str = "s3cr3t-MARKER-7f1c9a";
const AGENTK: &str = "registry.gitlab.com/gitlab-org/cluster-integration/gitlab-agent/agentk";

/// Every spelling of the marker a leak could take.
fn spellings() -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    vec![
        MARKER.to_string(),
        b64.encode(MARKER),
        b64.encode(format!("--token={MARKER}")),
        "7f1c9a".to_string(),
    ]
}

#[track_caller]
fn assert_no_marker(what: &str, text: &str) {
    for spelling in spellings() {
        assert!(
            !text.contains(&spelling),
            "{what} contains the secret {spelling:?}:\n{text}"
        );
    }
}

/// A log sink every test in this binary shares.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

fn capture_logs() -> Captured {
    let sink = Captured::default();
    let writer = sink.clone();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("debug,fluxgate=trace"))
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();
    sink
}

fn secret() -> Value {
    let b64 = base64::engine::general_purpose::STANDARD;
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "registry-token", "namespace": "team-a",
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration":
                format!("{{\"stringData\":{{\"password\":\"{MARKER}\"}}}}")}},
        "type": "Opaque",
        "data": {"token": b64.encode(MARKER)},
        "stringData": {"password": MARKER}
    })
}

/// A second agent installation (denied): its secrets in env, args and an annotation.
fn agent_with_secrets() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "second-agent", "namespace": "team-a",
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration":
                format!("{{\"env\":\"{MARKER}\"}}")}},
        "spec": {"template": {"spec": {"containers": [{
            "name": "agent", "image": format!("{AGENTK}:v17.3.1"),
            "args": [format!("--token={MARKER}"), "--kas-address=wss://kas.gitlab.com"],
            "env": [{"name": "TOKEN", "value": MARKER}]
        }]}}}
    })
}

/// An unsigned OCIRepository (denied) whose annotation holds a secret.
fn unsigned_source_with_secret() -> Value {
    json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "OCIRepository",
        "metadata": {"name": "app", "namespace": "team-a",
            "annotations": {"note": MARKER}},
        "spec": {"url": "oci://registry.gitlab.com/acme/app"}
    })
}

/// A secret pasted into a field of the wrong type: malformed, so the finding quotes the
/// parser's error, which must not quote the value.
fn malformed_source_with_secret() -> Value {
    json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "OCIRepository",
        "metadata": {"name": "pasted", "namespace": "team-a"},
        "spec": {"url": "oci://registry.gitlab.com/acme/app", "insecure": MARKER,
            "verify": {"provider": "cosign", "secretRef": {"name": "cosign-pub"}}}
    })
}

fn malformed_agent_with_secret() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "pasted-agent", "namespace": "team-a"},
        "spec": {"template": {"spec": {"containers": [{
            "name": "agent", "image": format!("{AGENTK}:v17.3.1"),
            "args": format!("--token={MARKER}")
        }]}}}
    })
}

fn objects() -> Vec<Value> {
    vec![
        secret(),
        agent_with_secrets(),
        unsigned_source_with_secret(),
        malformed_source_with_secret(),
        malformed_agent_with_secret(),
    ]
}

fn existing_agent() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "gitlab-agent", "namespace": "gitlab-agent", "uid": "uid-agent",
            "labels": {"app.kubernetes.io/instance": "gitlab-agent"}},
        "spec": {"template": {"spec": {"containers": [
            {"name": "agent", "image": format!("{AGENTK}:v17.3.1")}]}}}
    })
}

fn review(object: &Value, operation: &str, old: Option<&Value>, uid: &str) -> Vec<u8> {
    let mut body: Value =
        serde_json::from_slice(&common::review_of(object, operation, uid)).expect("json");
    body["request"]["oldObject"] = old.cloned().unwrap_or(Value::Null);
    serde_json::to_vec(&body).expect("json")
}

#[tokio::test]
async fn a_secret_value_reaches_no_log_metric_answer_or_report() {
    let logs = capture_logs();
    let view = Arc::new(MemoryView::new());
    view.apply(&existing_agent()).expect("applies");
    let server = TestServer::start_with(ServerSetup {
        view: view.clone(),
        config_yaml: Some(
            "policies:\n  signed-oci-sources:\n    verifyDefaults:\n    - name: gitlab\n      match: oci://registry.gitlab.com/acme\n      verify: {provider: cosign, secretRef: {name: cosign-pub}}\n"
                .into(),
        ),
        ..ServerSetup::default()
    })
    .await;

    let mut answers = String::new();
    let mut denied = 0;
    for (i, object) in objects().iter().enumerate() {
        // The UPDATE's old object has no spec: the judged fields change.
        let before = json!({"apiVersion": object["apiVersion"], "kind": object["kind"],
            "metadata": object["metadata"]});
        for (operation, old) in [("CREATE", None), ("UPDATE", Some(&before))] {
            for path in ["/validate", "/mutate"] {
                let response = server
                    .post(path, review(object, operation, old, &format!("uid-{i}")))
                    .await;
                assert_eq!(response.status, 200);
                let json = response.json();
                if json["response"]["allowed"] == false {
                    denied += 1;
                }
                answers.push_str(&String::from_utf8_lossy(&response.body));
            }
        }
    }
    // Every object but the Secret is denied on /validate, for CREATE and UPDATE.
    assert_eq!(denied, 8, "{answers}");
    // A body that is not a review, quoting the secret where the envelope expects an enum.
    let broken = format!(
        r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{"uid":"u","kind":{{"kind":"Pod"}},"operation":"{MARKER}"}}}}"#
    );
    let response = server.post("/validate", broken.into_bytes()).await;
    assert_eq!(response.status, 400);
    answers.push_str(&String::from_utf8_lossy(&response.body));

    let metrics = server.metrics().await;
    server.shutdown.shutdown();

    let engine = Engine::new(Config::default(), None);
    let audit_view = MemoryView::new();
    let mut everything = objects();
    everything.push(existing_agent());
    for object in &everything {
        let _ = audit_view.apply(object);
    }
    let report = fluxgate::audit::scan(&engine, &audit_view, &everything);
    assert!(report.findings.len() >= 4, "{:?}", report.findings);
    let reports = fluxgate::audit::policy_reports(&report, &[], 100, 0);
    let audit_text = format!(
        "{}\n{}\n{}",
        serde_json::to_string(&report).expect("json"),
        serde_json::to_string(&reports).expect("json"),
        fluxgate::audit::render_table(&report)
    );

    let manifests: String = everything
        .iter()
        .map(|o| format!("---\n{}", serde_yaml_ng::to_string(o).expect("yaml")))
        .collect();
    let mut check_text = String::new();
    for format in [
        Format::Text,
        Format::Json,
        Format::Junit,
        Format::Codequality,
    ] {
        let report = fluxgate::check::check(
            &engine,
            &[PathBuf::from("-")],
            &[],
            &mut manifests.as_bytes(),
        );
        assert!(report.summary.exit_code == 1, "the objects are denied");
        let mut out = Vec::new();
        fluxgate::report::write(&report, format, false, &mut out).expect("report");
        check_text.push_str(&String::from_utf8_lossy(&out));
    }

    let logs = logs.text();
    assert!(
        logs.contains("second-agent") && logs.contains("malformed"),
        "the logs hold the findings: {logs}"
    );
    assert!(
        answers.contains("malformed") && audit_text.contains("malformed"),
        "the malformed objects were judged: {answers}"
    );
    assert_no_marker("the logs", &logs);
    assert_no_marker("the metrics", &metrics);
    assert_no_marker("the answers", &answers);
    assert_no_marker("the audit report", &audit_text);
    assert_no_marker("the check reports", &check_text);
}
