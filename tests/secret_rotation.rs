//! `secret-rotation`: the keys Flux uses to reach and verify manifests, and the GitLab agent's
//! token, are rotated regularly, and fluxgate says so without ever holding a Secret's value.
//!
//! The cluster is the real in-memory view, fed whole objects the way `fluxgate check` feeds
//! it (the reflectors feed it Secrets' metadata only); time is a parameter, so ages are exact.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use fluxgate::audit::cluster::record_metrics;
use fluxgate::audit::{self, AuditResult, render_rotation_table, scan_at};
use fluxgate::cluster::secrets::{format_time, parse_time};
use fluxgate::cluster::{ClusterView, Lookup, MemoryView, ObjectKey};
use fluxgate::config::Config;
use fluxgate::engine::{Endpoint, Engine};
use fluxgate::finding::{Mode, PolicyId};
use fluxgate::flux::secret_refs::SecretUse;
use fluxgate::metrics::Metrics;
use fluxgate::policy::secret_rotation::{
    RotationRow, RotationSource, RotationStatus, rotation_table,
};
use serde_json::{Value, json};

use common::{ServerSetup, TestServer, metric_value};

const DAY: i64 = 86_400;

/// The time every pure check is made at.
fn now() -> i64 {
    parse_time("2025-06-01T00:00:00Z").expect("time")
}

fn days_ago(days: i64) -> String {
    format_time(now() - days * DAY)
}

fn corpus() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/corpus"
    ))
}

/// The objects of a corpus file, as `kubectl apply -n <namespace>` would store them.
fn manifests(relative: &str, namespace: &str) -> Vec<Value> {
    let path = corpus().join(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut objects = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(&text) {
        let mut value: Value = serde::Deserialize::deserialize(document).expect("yaml");
        if value.is_null() {
            continue;
        }
        let cluster_scoped = matches!(
            value["kind"].as_str(),
            Some("ClusterRole" | "ClusterRoleBinding" | "Namespace")
        );
        if !cluster_scoped && value["metadata"]["namespace"].is_null() {
            value["metadata"]["namespace"] = json!(namespace);
        }
        objects.push(value);
    }
    objects
}

fn view_of(objects: &[Value]) -> MemoryView {
    let view = MemoryView::new();
    for object in objects {
        view.apply(object)
            .unwrap_or_else(|e| panic!("{}: {e}", object["metadata"]["name"]));
    }
    view
}

fn secret(namespace: &str, name: &str, created: Option<&str>, rotated_at: Option<&str>) -> Value {
    let mut object = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "stringData": {"key": "not-a-real-key"},
    });
    if let Some(created) = created {
        object["metadata"]["creationTimestamp"] = json!(created);
    }
    if let Some(at) = rotated_at {
        object["metadata"]["annotations"] = json!({"fluxgate.io/rotated-at": at});
    }
    object
}

fn signed_source(namespace: &str, name: &str, key: &str) -> Value {
    json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "OCIRepository",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"interval": "5m", "url": "oci://registry.gitlab.com/acme/app",
            "ref": {"semver": "1.x"},
            "verify": {"provider": "cosign", "secretRef": {"name": key}}}
    })
}

fn settings() -> fluxgate::policy::secret_rotation::Settings {
    Config::default().policies.secret_rotation
}

fn table(view: &MemoryView) -> Vec<RotationRow> {
    match rotation_table(view, &settings(), now()) {
        Lookup::Found(rows) => rows,
        other => panic!("a synced view has a table: {other:?}"),
    }
}

fn row<'r>(rows: &'r [RotationRow], namespace: &str, secret: &str) -> &'r RotationRow {
    rows.iter()
        .find(|r| r.namespace == namespace && r.secret == secret)
        .unwrap_or_else(|| panic!("no row for {namespace}/{secret} in {rows:#?}"))
}

// ---------------------------------------------------------------------------------------
// What is tracked

#[test]
fn every_reference_path_in_the_corpus_is_tracked_with_its_use() {
    use SecretUse::*;
    let source = "flux/docs-extracted/fluxcd+source-controller";
    let kustomize = "flux/docs-extracted/fluxcd+kustomize-controller";
    // (file, kind, namespace/name, field, Secret, use)
    let cases: &[(&str, &str, &str, &str, &str, SecretUse)] = &[
        (
            "flux/docs-extracted/fluxcd+website/content__en__flux__cheatsheets__oci-artifacts__L318-328__OCIRepository.yaml",
            "OCIRepository",
            "flux-system/podinfo",
            "spec.secretRef",
            "ghcr-auth",
            FluxSourceAuth,
        ),
        (
            &format!(
                "{source}/docs__spec__v1__ocirepositories__L317-339__OCIRepository-Secret.yaml"
            ),
            "OCIRepository",
            "default/example",
            "spec.certSecretRef",
            "example-tls",
            FluxSourceAuth,
        ),
        (
            "flux/fluxcd+source-controller/config/testdata/ocirepository/signed-with-cosign-v2-key.yaml",
            "OCIRepository",
            "flux-system/podinfo-deploy-signed-with-v2-key",
            "spec.verify.secretRef",
            "cosign-key",
            FluxVerify,
        ),
        (
            // v1beta2, as clusters with source-controller before v1.8 still send it.
            "flux/fluxcd+source-controller@v1.5.0/config/testdata/ocirepository/signed-with-key.yaml",
            "OCIRepository",
            "flux-system/podinfo-deploy-signed-with-key",
            "spec.verify.secretRef",
            "cosign-key",
            FluxVerify,
        ),
        (
            &format!("{source}/docs__spec__v1__ocirepositories__L687-700__OCIRepository.yaml"),
            "OCIRepository",
            "flux-system/podinfo",
            "spec.verify.trustedRootSecretRef",
            "sigstore-trusted-root",
            FluxVerify,
        ),
        (
            &format!(
                "{kustomize}/docs__spec__v1__kustomizations__L1542-1577__GitRepository-Kustomization.yaml"
            ),
            "GitRepository",
            "apps/webapp",
            "spec.secretRef",
            "webapp-git-token",
            FluxSourceAuth,
        ),
        (
            &format!("{source}/docs__spec__v1__gitrepositories__L648-662__GitRepository.yaml"),
            "GitRepository",
            "default/podinfo",
            "spec.verify.secretRef",
            "pgp-public-keys",
            FluxVerify,
        ),
        (
            &format!(
                "{source}/docs__spec__v1__helmrepositories__L382-401__HelmRepository-Secret.yaml"
            ),
            "HelmRepository",
            "default/example",
            "spec.secretRef",
            "example-user",
            FluxSourceAuth,
        ),
        (
            &format!(
                "{source}/docs__spec__v1__helmrepositories__L473-495__HelmRepository-Secret.yaml"
            ),
            "HelmRepository",
            "default/example",
            "spec.certSecretRef",
            "example-tls",
            FluxSourceAuth,
        ),
        (
            &format!("{source}/docs__spec__v1__helmcharts__L280-289__HelmChart.yaml"),
            "HelmChart",
            "flux-system/podinfo",
            "spec.verify.secretRef",
            "cosign-public-keys",
            FluxVerify,
        ),
        (
            "flux/fluxcd+source-controller/config/testdata/bucket/source.yaml",
            "Bucket",
            "flux-system/podinfo",
            "spec.secretRef",
            "minio-credentials",
            FluxSourceAuth,
        ),
        (
            &format!("{kustomize}/docs__spec__v1__kustomizations__L1208-1223__Kustomization.yaml"),
            "Kustomization",
            "default/sops-encrypted",
            "spec.decryption.secretRef",
            "sops-keys-and-credentials",
            FluxDecryption,
        ),
        (
            &format!(
                "{kustomize}/docs__spec__v1__kustomizations__L1797-1838__Cluster-Kustomization.yaml"
            ),
            "Kustomization",
            "capi-stage/cluster-addons",
            "spec.kubeConfig.secretRef",
            "stage-kubeconfig",
            FluxKubeconfig,
        ),
        (
            "flux/docs-extracted/fluxcd+helm-controller/docs__spec__v2__helmreleases__L1534-1580__Cluster-HelmRelease.yaml",
            "HelmRelease",
            "capi-stage/kube-prometheus-stack",
            "spec.kubeConfig.secretRef",
            "stage-kubeconfig",
            FluxKubeconfig,
        ),
    ];
    for (file, kind, object, field, secret_name, secret_use) in cases {
        let view = view_of(&manifests(file, "flux-system"));
        let (namespace, name) = object.split_once('/').expect("namespace/name");
        let references = view.flux_secret_references().found().expect("synced");
        assert!(
            references.iter().any(|r| r.kind == *kind
                && r.namespace == namespace
                && r.name == name
                && r.field == *field
                && r.secret == *secret_name
                && r.secret_use == *secret_use),
            "{file}: expected {kind} {object} {field} -> {secret_name} ({secret_use}), got {references:#?}"
        );
        let rows = table(&view);
        let row = row(&rows, namespace, secret_name);
        assert_eq!(row.secret_use, *secret_use, "{file}");
        assert!(
            row.used_by.contains(&format!("{kind} {object} ({field})")),
            "{file}: {row:?}"
        );
    }
}

#[test]
fn sources_without_secret_references_track_nothing() {
    let view = view_of(&manifests(
        "flux/fluxcd+flux2/cmd/flux/testdata/oci/export.golden",
        "flux-system",
    ));
    assert_eq!(view.flux_secret_references(), Lookup::Found(vec![]));
    assert!(table(&view).is_empty());
}

#[test]
fn proxy_and_sts_credentials_of_a_bucket_are_source_auth() {
    let view = view_of(&[json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "Bucket",
        "metadata": {"name": "artifacts", "namespace": "flux-system"},
        "spec": {"interval": "5m", "bucketName": "artifacts", "endpoint": "minio.example.com",
            "provider": "generic",
            "proxySecretRef": {"name": "corp-proxy"},
            "sts": {"provider": "ldap", "endpoint": "https://minio.example.com",
                "secretRef": {"name": "ldap-credentials"}, "certSecretRef": {"name": "ldap-tls"}}}
    })]);
    let fields: Vec<(&str, String, SecretUse)> = view
        .flux_secret_references()
        .found()
        .expect("synced")
        .into_iter()
        .map(|r| (r.field, r.secret, r.secret_use))
        .collect();
    for (field, secret) in [
        ("spec.proxySecretRef", "corp-proxy"),
        ("spec.sts.secretRef", "ldap-credentials"),
        ("spec.sts.certSecretRef", "ldap-tls"),
    ] {
        assert!(
            fields.contains(&(field, secret.to_string(), SecretUse::FluxSourceAuth)),
            "{field}: {fields:?}"
        );
    }
}

#[test]
fn a_deleted_or_changed_source_stops_using_its_secret() {
    let view = view_of(&[signed_source("flux-system", "app", "old-key")]);
    view.apply(&signed_source("flux-system", "app", "new-key"))
        .expect("update");
    let rows = table(&view);
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0].secret, "new-key");
    view.delete(&ObjectKey {
        group: "source.toolkit.fluxcd.io".into(),
        kind: "OCIRepository".into(),
        namespace: Some("flux-system".into()),
        name: "app".into(),
    });
    assert!(table(&view).is_empty());
}

/// The token Secret each corpus install mounts at agentk's --token-file.
#[test]
fn the_agent_token_of_every_corpus_install_is_tracked() {
    let installs = [
        (
            "gitlab-agent/rendered/release-gitlab-agent__ns-gitlab-agent.yaml",
            "gitlab-agent",
            "gitlab-agent-token",
            "Deployment gitlab-agent/gitlab-agent-v2",
        ),
        (
            "gitlab-agent/rendered/release-test__ns-gitlab-agent-test.yaml",
            "gitlab-agent-test",
            "test-gitlab-agent-token",
            "Deployment gitlab-agent-test/test-gitlab-agent-v2",
        ),
        (
            "gitlab-agent/rendered/release-second-gitlab-agent__ns-gitlab-agent.yaml",
            "gitlab-agent",
            "second-gitlab-agent-token",
            "Deployment gitlab-agent/second-gitlab-agent-v2",
        ),
        (
            "gitlab-agent/legacy-kpt-abaer123+gitlab-agent/build/deployment/gitlab-agent/base/base.yaml",
            "gitlab-agent-legacy",
            "gitlab-agent-token",
            "Deployment gitlab-agent-legacy/gitlab-agent",
        ),
    ];
    for (file, namespace, token, deployment) in installs {
        let view = view_of(&manifests(file, namespace));
        let rows = table(&view);
        let tokens: Vec<&RotationRow> = rows
            .iter()
            .filter(|r| r.secret_use == SecretUse::GitlabAgentToken)
            .collect();
        assert_eq!(tokens.len(), 1, "{file}: {rows:#?}");
        assert_eq!(
            (tokens[0].namespace.as_str(), tokens[0].secret.as_str()),
            (namespace, token)
        );
        assert_eq!(
            tokens[0].used_by,
            vec![format!("{deployment} (agentk --token-file)")],
            "{file}"
        );
        // The rendered chart ships its token Secret; a manifest has no creation time.
        let expected = if file.contains("rendered") {
            RotationStatus::Unknown
        } else {
            RotationStatus::Missing
        };
        assert_eq!(tokens[0].status, expected, "{file}");
    }
}

fn agentk(name: &str, containers: Value, volumes: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "agents", "uid": format!("uid-{name}")},
        "spec": {"template": {"spec": {"containers": containers, "volumes": volumes}}}
    })
}

const AGENTK: &str =
    "registry.gitlab.com/gitlab-org/cluster-integration/gitlab-agent/agentk:v17.3.1";

fn token_of(deployment: Value) -> Option<String> {
    let view = view_of(&[deployment]);
    table(&view)
        .into_iter()
        .find(|r| r.secret_use == SecretUse::GitlabAgentToken)
        .map(|r| r.secret)
}

#[test]
fn the_agent_token_is_the_secret_mounted_deepest_over_the_token_file() {
    // --token-file PATH as two words, and a Secret mounted over a parent directory too.
    let split_flag = agentk(
        "agent",
        json!([{"name": "agent", "image": AGENTK,
            "args": ["--token-file", "/etc/agentk/secrets/token", "--kas-address=wss://kas.gitlab.com"],
            "volumeMounts": [{"name": "all", "mountPath": "/etc/agentk"},
                             {"name": "token", "mountPath": "/etc/agentk/secrets/"}]}]),
        json!([{"name": "all", "secret": {"secretName": "agent-config"}},
               {"name": "token", "secret": {"secretName": "agent-token-2025"}}]),
    );
    assert_eq!(token_of(split_flag).as_deref(), Some("agent-token-2025"));

    // A projected volume with several Secrets: the one that provides the file.
    let projected = agentk(
        "agent",
        json!([{"name": "agent", "image": AGENTK,
            "args": ["-token-file=/var/agent/token"],
            "volumeMounts": [{"name": "creds", "mountPath": "/var/agent"}]}]),
        json!([{"name": "creds", "projected": {"sources": [
            {"secret": {"name": "kas-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"secret": {"name": "agent-token", "items": [{"key": "token", "path": "token"}]}}]}}]),
    );
    assert_eq!(token_of(projected).as_deref(), Some("agent-token"));

    // The token on an emptyDir (filled by an init container from a vault) is no Secret.
    let empty_dir = agentk(
        "agent",
        json!([{"name": "agent", "image": AGENTK, "args": ["--token-file=/tokens/token"],
            "volumeMounts": [{"name": "tokens", "mountPath": "/tokens"}]}]),
        json!([{"name": "tokens", "emptyDir": {}}]),
    );
    assert_eq!(token_of(empty_dir), None);
}

#[test]
fn an_old_replicaset_does_not_keep_a_replaced_token_in_use() {
    let mount = |secret: &str| {
        (
            json!([{"name": "agent", "image": AGENTK, "args": ["--token-file=/etc/agentk/secrets/token"],
                "volumeMounts": [{"name": "token", "mountPath": "/etc/agentk/secrets"}]}]),
            json!([{"name": "token", "secret": {"secretName": secret}}]),
        )
    };
    let (containers, volumes) = mount("agent-token-2025");
    let deployment = agentk("agent", containers, volumes);
    let (containers, volumes) = mount("agent-token-2024");
    let old_replica_set = json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "agent-5d4f8b", "namespace": "agents", "uid": "uid-rs",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "agent",
                "uid": "uid-agent", "controller": true}]},
        "spec": {"replicas": 0, "template": {"spec": {"containers": containers, "volumes": volumes}}}
    });
    let view = view_of(&[old_replica_set, deployment]);
    let tokens: Vec<String> = table(&view)
        .into_iter()
        .filter(|r| r.secret_use == SecretUse::GitlabAgentToken)
        .map(|r| r.secret)
        .collect();
    assert_eq!(tokens, vec!["agent-token-2025".to_string()]);
}

// ---------------------------------------------------------------------------------------
// When a Secret was last rotated

#[test]
fn age_comes_from_the_rotated_at_annotation() {
    let view = view_of(&[
        signed_source("flux-system", "app", "cosign-pub"),
        secret(
            "flux-system",
            "cosign-pub",
            Some("2020-01-01T00:00:00Z"),
            Some(&days_ago(30)),
        ),
    ]);
    let rows = table(&view);
    let row = row(&rows, "flux-system", "cosign-pub");
    assert_eq!(row.rotated_from, Some(RotationSource::Annotation));
    assert_eq!(row.age_seconds, Some(30 * DAY));
    assert_eq!(row.status, RotationStatus::Current);
}

#[test]
fn age_comes_from_the_creation_time_without_an_annotation() {
    let view = view_of(&[
        signed_source("flux-system", "app", "cosign-pub"),
        secret("flux-system", "cosign-pub", Some(&days_ago(120)), None),
    ]);
    let rows = table(&view);
    let row = row(&rows, "flux-system", "cosign-pub");
    assert_eq!(row.rotated_from, Some(RotationSource::CreationTimestamp));
    assert_eq!(row.age_seconds, Some(120 * DAY));
    assert_eq!(row.status, RotationStatus::Overdue);
}

#[test]
fn age_is_unknown_without_annotation_or_creation_time() {
    let view = view_of(&[
        signed_source("flux-system", "app", "cosign-pub"),
        secret("flux-system", "cosign-pub", None, None),
    ]);
    let rows = table(&view);
    let row = row(&rows, "flux-system", "cosign-pub");
    assert_eq!(row.status, RotationStatus::Unknown);
    assert_eq!((row.age_seconds, row.rotated_at), (None, None));
}

#[test]
fn replacing_the_secret_counts_as_a_rotation() {
    let view = view_of(&[
        signed_source("flux-system", "app", "cosign-pub"),
        secret("flux-system", "cosign-pub", Some(&days_ago(120)), None),
    ]);
    view.apply(&secret(
        "flux-system",
        "cosign-pub",
        Some(&days_ago(1)),
        None,
    ))
    .expect("recreated");
    assert_eq!(
        row(&table(&view), "flux-system", "cosign-pub").status,
        RotationStatus::Current
    );
}

#[test]
fn a_malformed_rotated_at_is_its_own_finding_and_age_falls_back_to_creation() {
    let engine = Engine::new(Config::default(), None);
    for annotation in ["last tuesday", "2025-05-01", "2999-01-01T00:00:00Z"] {
        let view = view_of(&[
            signed_source("flux-system", "app", "cosign-pub"),
            secret(
                "flux-system",
                "cosign-pub",
                Some(&days_ago(10)),
                Some(annotation),
            ),
        ]);
        let rows = table(&view);
        let row = row(&rows, "flux-system", "cosign-pub");
        assert!(row.annotation_problem.is_some(), "{annotation}: {row:?}");
        assert_eq!(row.rotated_from, Some(RotationSource::CreationTimestamp));
        assert_eq!(row.age_seconds, Some(10 * DAY));

        let report = scan_at(&engine, &view, &[], now());
        let findings: Vec<&str> = report.findings.iter().map(|f| f.message.as_str()).collect();
        assert_eq!(findings.len(), 1, "{annotation}: {findings:#?}");
        assert!(
            findings[0].starts_with("Secret flux-system/cosign-pub has fluxgate.io/rotated-at:"),
            "{}",
            findings[0]
        );
    }
}

#[test]
fn the_limit_is_per_use_and_configurable() {
    // 100 days: over the 90 days keys get, within the 365 days agent tokens get.
    let mount = json!([{"name": "agent", "image": AGENTK, "args": ["--token-file=/t/token"],
        "volumeMounts": [{"name": "t", "mountPath": "/t"}]}]);
    let view = view_of(&[
        signed_source("agents", "app", "shared"),
        agentk(
            "agent",
            mount,
            json!([{"name": "t", "secret": {"secretName": "shared"}}]),
        ),
        secret("agents", "shared", Some(&days_ago(100)), None),
    ]);
    let rows = table(&view);
    let status = |secret_use| {
        rows.iter()
            .find(|r| r.secret_use == secret_use)
            .map(|r| r.status)
    };
    assert_eq!(status(SecretUse::FluxVerify), Some(RotationStatus::Overdue));
    assert_eq!(
        status(SecretUse::GitlabAgentToken),
        Some(RotationStatus::Current)
    );

    let config = Config::from_yaml(
        "policies:\n  secret-rotation:\n    maxAgeDays: {gitlab-agent-token: 30, flux-verify: 120}\n",
        "c.yaml",
    )
    .expect("config");
    let rows = rotation_table(&view, &config.policies.secret_rotation, now())
        .found()
        .expect("synced");
    let status = |secret_use| {
        rows.iter()
            .find(|r| r.secret_use == secret_use)
            .map(|r| r.status)
    };
    assert_eq!(status(SecretUse::FluxVerify), Some(RotationStatus::Current));
    assert_eq!(
        status(SecretUse::GitlabAgentToken),
        Some(RotationStatus::Overdue)
    );
}

// ---------------------------------------------------------------------------------------
// Values never leave the Secret

/// The Secret's value, as it sits in `data`, `stringData` and kubectl's
/// last-applied-configuration annotation.
const MARKER: &str = "MARKER-4f1d-never-leaves-the-secret";

#[test]
fn secret_values_never_reach_the_view_metrics_reports_findings_or_debug_output() {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(MARKER);
    let mut overdue = secret(
        "flux-system",
        "cosign-pub",
        Some("2020-01-01T00:00:00Z"),
        None,
    );
    overdue["data"] = json!({"cosign.pub": encoded, "plain": MARKER});
    overdue["stringData"] = json!({"cosign.key": MARKER});
    overdue["metadata"]["annotations"] = json!({
        "kubectl.kubernetes.io/last-applied-configuration":
            json!({"apiVersion": "v1", "kind": "Secret", "stringData": {"cosign.key": MARKER}}).to_string(),
        "fluxgate.io/rotated-at": "not a time",
    });
    overdue["metadata"]["labels"] = json!({"team": "platform"});
    let source = signed_source("flux-system", "app", "cosign-pub");
    assert!(
        overdue.to_string().contains(MARKER),
        "the input holds the marker"
    );

    let view = view_of(&[source.clone(), overdue]);
    let config = Config::from_yaml("policies:\n  secret-rotation:\n    mode: warn\n", "c.yaml")
        .expect("config");
    let engine = Engine::new(config, None);
    let report = scan_at(&engine, &view, std::slice::from_ref(&source), now());
    let metrics = Metrics::new();
    record_metrics(&report, &metrics);
    let admission = common::review_of(&source, "UPDATE", "u1");
    let request = fluxgate::admission::decode(&admission).expect("review");
    let (verdict, _) = engine.review(Endpoint::Validate, &request, &view);

    let outputs = [
        (
            "metrics",
            String::from_utf8_lossy(&metrics.encode()).into_owned(),
        ),
        ("report JSON", serde_json::to_string(&report).expect("json")),
        ("report Debug", format!("{report:?}")),
        (
            "PolicyReports",
            serde_json::to_string(&audit::policy_reports(&report, &[], 100, now())).expect("json"),
        ),
        ("findings table", audit::render_table(&report)),
        ("rotation table", render_rotation_table(&report.rotation)),
        (
            "view Debug",
            format!(
                "{:?} {:?}",
                view.secret("flux-system", "cosign-pub"),
                view.flux_secret_references()
            ),
        ),
        ("admission verdict", format!("{verdict:?}")),
    ];
    for (what, text) in &outputs {
        // Each output does talk about the Secret, so the check below has something to miss.
        assert!(
            text.contains("cosign-pub"),
            "{what} names the Secret:\n{text}"
        );
        for needle in [MARKER, encoded.as_str()] {
            assert!(!text.contains(needle), "{what} holds the value:\n{text}");
        }
    }
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.message.contains("not a time")),
        "the broken annotation is quoted, since it is no secret"
    );
}

// ---------------------------------------------------------------------------------------
// How it is reported

fn reported_cluster() -> MemoryView {
    let agent_mount = json!([{"name": "agent", "image": AGENTK,
        "args": ["--token-file=/etc/agentk/secrets/token"],
        "volumeMounts": [{"name": "token", "mountPath": "/etc/agentk/secrets"}]}]);
    view_of(&[
        // Overdue by 30 days.
        signed_source("flux-system", "app", "cosign-pub"),
        signed_source("flux-system", "app-canary", "cosign-pub"),
        secret("flux-system", "cosign-pub", Some(&days_ago(120)), None),
        // Rotated in place 10 days ago.
        json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
            "metadata": {"name": "fleet", "namespace": "flux-system"},
            "spec": {"url": "https://gitlab.com/acme/fleet.git", "secretRef": {"name": "deploy-token"}}}),
        secret(
            "flux-system",
            "deploy-token",
            Some(&days_ago(400)),
            Some(&days_ago(10)),
        ),
        // Referenced, never created.
        json!({"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
            "metadata": {"name": "apps", "namespace": "flux-system"},
            "spec": {"path": "./apps", "sourceRef": {"kind": "GitRepository", "name": "fleet"},
                "decryption": {"provider": "sops", "secretRef": {"name": "sops-age"}}}}),
        // The agent token, 200 days old: within its 365 days.
        agentk(
            "gitlab-agent-v2",
            agent_mount,
            json!([{"name": "token", "secret": {"secretName": "gitlab-agent-token"}}]),
        ),
        secret("agents", "gitlab-agent-token", Some(&days_ago(200)), None),
    ])
}

#[test]
fn metrics_say_each_secrets_age_and_whether_it_is_overdue() {
    let view = reported_cluster();
    let engine = Engine::new(Config::default(), None);
    let metrics = Metrics::new();
    record_metrics(&scan_at(&engine, &view, &[], now()), &metrics);
    let text = String::from_utf8_lossy(&metrics.encode()).into_owned();
    let value = |name: &str, namespace: &str, secret: &str, secret_use: &str| {
        metric_value(
            &text,
            &format!(
                "{name}{{namespace=\"{namespace}\",secret=\"{secret}\",use=\"{secret_use}\"}}"
            ),
        )
    };
    let age = "fluxgate_secret_age_seconds";
    let overdue = "fluxgate_secret_rotation_overdue";
    assert_eq!(
        value(age, "flux-system", "cosign-pub", "flux-verify"),
        Some((120 * DAY) as f64)
    );
    assert_eq!(
        value(overdue, "flux-system", "cosign-pub", "flux-verify"),
        Some(1.0)
    );
    assert_eq!(
        value(age, "flux-system", "deploy-token", "flux-source-auth"),
        Some((10 * DAY) as f64)
    );
    assert_eq!(
        value(overdue, "flux-system", "deploy-token", "flux-source-auth"),
        Some(0.0)
    );
    assert_eq!(
        value(age, "agents", "gitlab-agent-token", "gitlab-agent-token"),
        Some((200 * DAY) as f64)
    );
    assert_eq!(
        value(
            overdue,
            "agents",
            "gitlab-agent-token",
            "gitlab-agent-token"
        ),
        Some(0.0)
    );
    assert_eq!(
        value(age, "flux-system", "sops-age", "flux-decryption"),
        None,
        "a missing Secret has no age"
    );
    assert_eq!(
        metric_value(
            &text,
            "fluxgate_audit_violations{kind=\"Secret\",namespace=\"flux-system\",policy=\"secret-rotation\"}"
        ),
        Some(2.0),
        "the overdue key and the missing Secret:\n{text}"
    );

    // After a rotation the next scan replaces the series: nothing stale stays behind.
    view.apply(&secret(
        "flux-system",
        "cosign-pub",
        Some(&days_ago(0)),
        None,
    ))
    .expect("rotated");
    view.delete(&ObjectKey {
        group: "apps".into(),
        kind: "Deployment".into(),
        namespace: Some("agents".into()),
        name: "gitlab-agent-v2".into(),
    });
    record_metrics(&scan_at(&engine, &view, &[], now()), &metrics);
    let text = String::from_utf8_lossy(&metrics.encode()).into_owned();
    let value = |name: &str, namespace: &str, secret: &str, secret_use: &str| {
        metric_value(
            &text,
            &format!(
                "{name}{{namespace=\"{namespace}\",secret=\"{secret}\",use=\"{secret_use}\"}}"
            ),
        )
    };
    assert_eq!(
        value(overdue, "flux-system", "cosign-pub", "flux-verify"),
        Some(0.0)
    );
    assert_eq!(
        value(age, "agents", "gitlab-agent-token", "gitlab-agent-token"),
        None,
        "a token no agent uses any more is not reported:\n{text}"
    );
}

#[test]
fn the_audit_reports_overdue_and_missing_secrets_as_findings_on_the_secret() {
    let view = reported_cluster();
    let engine = Engine::new(Config::default(), None);
    let objects = vec![signed_source("flux-system", "app", "cosign-pub")];
    let report = scan_at(&engine, &view, &objects, now());
    let rotation: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.policy == PolicyId::SecretRotation)
        .collect();
    assert_eq!(rotation.len(), 2, "{rotation:#?}");
    for finding in &rotation {
        assert_eq!(
            (finding.api_version.as_str(), finding.kind.as_str()),
            ("v1", "Secret"),
            "findings are on the Secret, not once per object that uses it"
        );
        assert_eq!(finding.mode, Mode::Audit, "audit is the built-in default");
        assert_eq!(finding.result, AuditResult::Fail);
    }
    let overdue = rotation
        .iter()
        .find(|f| f.name == "cosign-pub")
        .expect("overdue key");
    for words in [
        "Secret flux-system/cosign-pub",
        "OCIRepository flux-system/app (spec.verify.secretRef)",
        "OCIRepository flux-system/app-canary (spec.verify.secretRef)",
        "120 days ago",
        "90-day limit for flux-verify",
        "cosign generate-key-pair",
        "kubectl -n flux-system annotate secret cosign-pub fluxgate.io/rotated-at=",
    ] {
        assert!(
            overdue.message.contains(words),
            "{words}: {}",
            overdue.message
        );
    }
    let missing = rotation
        .iter()
        .find(|f| f.name == "sops-age")
        .expect("missing Secret");
    assert!(
        missing
            .message
            .starts_with("Secret flux-system/sops-age does not exist")
            && missing
                .message
                .contains("Kustomization flux-system/apps (spec.decryption.secretRef)"),
        "{}",
        missing.message
    );
    assert!(
        !report.findings.iter().any(|f| f.kind == "OCIRepository"),
        "the listed OCIRepository is not reported again: {:#?}",
        report.findings
    );

    let reports = audit::policy_reports(&report, &[], 100, now());
    let flux_system = reports
        .iter()
        .find(|r| r["metadata"]["namespace"] == "flux-system")
        .expect("a PolicyReport for flux-system");
    assert_eq!(flux_system["summary"]["fail"], 2);
    assert_eq!(flux_system["results"][0]["policy"], "secret-rotation");
    assert_eq!(flux_system["results"][0]["resources"][0]["kind"], "Secret");
}

#[test]
fn the_rotation_table_lists_secrets_by_urgency() {
    let report = scan_at(
        &Engine::new(Config::default(), None),
        &reported_cluster(),
        &[],
        now(),
    );
    let rendered = render_rotation_table(&report.rotation);
    let expected = "\
SECRET                     USE                 USED BY                                                                                                              AGE   LIMIT  OVERDUE
flux-system/sops-age       flux-decryption     Kustomization flux-system/apps (spec.decryption.secretRef)                                                           -     90d    missing
flux-system/cosign-pub     flux-verify         OCIRepository flux-system/app (spec.verify.secretRef), OCIRepository flux-system/app-canary (spec.verify.secretRef)  120d  90d    yes, by 30d
flux-system/deploy-token   flux-source-auth    GitRepository flux-system/fleet (spec.secretRef)                                                                     10d   90d    no, 80d left
agents/gitlab-agent-token  gitlab-agent-token  Deployment agents/gitlab-agent-v2 (agentk --token-file)                                                              200d  365d   no, 165d left

4 Secrets in use, 1 overdue for rotation, 1 missing
";
    assert_eq!(rendered, expected, "\n{rendered}");
}

#[test]
fn an_exempted_secret_is_reported_as_skipped() {
    let config = Config::from_yaml(
        "exemptions:\n- name: legacy-key\n  policies: [secret-rotation]\n  objects:\n  - {kind: Secret, namespace: flux-system, name: cosign-pub}\n",
        "c.yaml",
    )
    .expect("config");
    let report = scan_at(&Engine::new(config, None), &reported_cluster(), &[], now());
    let result = |name: &str| {
        report
            .findings
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.result)
    };
    assert_eq!(result("cosign-pub"), Some(AuditResult::Skip));
    assert_eq!(result("sops-age"), Some(AuditResult::Fail));
}

#[test]
fn off_reports_nothing_and_an_unsynced_view_is_not_judged() {
    let config = Config::from_yaml("policies:\n  secret-rotation:\n    mode: off\n", "c.yaml")
        .expect("config");
    let report = scan_at(&Engine::new(config, None), &reported_cluster(), &[], now());
    assert!(report.rotation.is_empty() && report.findings.is_empty());

    let view = reported_cluster();
    view.set_synced(false);
    assert_eq!(rotation_table(&view, &settings(), now()), Lookup::Unknown);
    let report = scan_at(&Engine::new(Config::default(), None), &view, &[], now());
    assert!(report.findings.is_empty(), "{:#?}", report.findings);
}

// ---------------------------------------------------------------------------------------
// Admission: warnings only, through the HTTPS server

fn real_days_ago(days: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    format_time(now - days * DAY)
}

fn admission_view() -> Arc<dyn ClusterView> {
    Arc::new(view_of(&[
        secret("flux-system", "stale-key", Some(&real_days_ago(200)), None),
        secret("flux-system", "fresh-key", Some(&real_days_ago(1)), None),
    ]))
}

async fn answer(config_yaml: Option<&str>, object: &Value) -> Value {
    let server = TestServer::start_with(ServerSetup {
        config_yaml: config_yaml.map(str::to_string),
        view: admission_view(),
        ..ServerSetup::default()
    })
    .await;
    let answer = server
        .post(
            "/validate",
            common::review_of(object, "UPDATE", "u-rotation"),
        )
        .await
        .json();
    answer["response"].clone()
}

fn rotation_warnings(response: &Value) -> Vec<String> {
    response["warnings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(|w| w.starts_with("[secret-rotation]"))
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn warn_mode_warns_when_a_flux_object_uses_an_overdue_secret() {
    let warn = "policies:\n  secret-rotation:\n    mode: warn\n";
    let kustomization = json!({"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
        "metadata": {"name": "apps", "namespace": "flux-system"},
        "spec": {"interval": "10m", "path": "./apps", "prune": true,
            "sourceRef": {"kind": "GitRepository", "name": "fleet"},
            "decryption": {"provider": "sops", "secretRef": {"name": "stale-key"}}}});
    let response = answer(Some(warn), &kustomization).await;
    assert_eq!(response["allowed"], true);
    let warnings = rotation_warnings(&response);
    assert_eq!(warnings.len(), 1, "{response}");
    for words in [
        "Kustomization flux-system/apps uses Secret flux-system/stale-key",
        "spec.decryption.secretRef",
        "200 days ago",
    ] {
        assert!(warnings[0].contains(words), "{words}: {}", warnings[0]);
    }

    let fresh = signed_source("flux-system", "app", "fresh-key");
    let response = answer(Some(warn), &fresh).await;
    assert!(rotation_warnings(&response).is_empty(), "{response}");
}

#[tokio::test]
async fn enforce_mode_warns_and_never_denies_and_audit_mode_stays_quiet() {
    // A Bucket: judged by no other policy, so the answer is this policy's alone.
    let bucket = json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "Bucket",
        "metadata": {"name": "artifacts", "namespace": "flux-system"},
        "spec": {"interval": "5m", "bucketName": "artifacts", "endpoint": "minio.example.com",
            "secretRef": {"name": "stale-key"}}});
    let enforce = answer(
        Some("policies:\n  secret-rotation:\n    mode: enforce\n"),
        &bucket,
    )
    .await;
    assert_eq!(enforce["allowed"], true, "{enforce}");
    assert_eq!(rotation_warnings(&enforce).len(), 1, "{enforce}");

    let default = answer(None, &bucket).await;
    assert_eq!(default["allowed"], true);
    assert!(
        rotation_warnings(&default).is_empty(),
        "audit, the default, tells the client nothing: {default}"
    );
}
