//! Policy `tenant-lockdown`: Flux's multi-tenancy lockdown, per Kustomization and
//! HelmRelease in tenant namespaces, and a drift check of the Flux controllers' own flags.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use fluxgate::admission::{self, OwnedObject};
use fluxgate::audit;
use fluxgate::cluster::MemoryView;
use fluxgate::config::Config;
use fluxgate::engine::verdict::Verdict;
use fluxgate::engine::{Endpoint, Engine};
use fluxgate::finding::{PolicyId, Severity};
use fluxgate::policy::tenant_lockdown::TenantLockdown;
use serde::Deserialize;
use serde_json::{Value, json};

use common::{Decision, ServerSetup, TempDir, TestServer, assert_decision, default_engine, engine};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/corpus");
const POLICY: PolicyId = PolicyId::TenantLockdown;

// ---------------------------------------------------------------------------------------
// Helpers

/// Only this policy: the corpus objects break others' rules too.
fn this_policy_only() -> Engine {
    Engine::with_policies(vec![Box::new(TenantLockdown)], Config::default(), None)
}

/// The HTTP chart repository `podinfo` in every namespace the tests use, so that
/// signed-oci-sources knows their charts need no signature.
fn chart_repositories() -> MemoryView {
    let view = MemoryView::new();
    for namespace in ["team-a", "flux-system", "shared-charts", "charts", "fleet"] {
        view.apply(&json!({
            "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "HelmRepository",
            "metadata": {"name": "podinfo", "namespace": namespace},
            "spec": {"interval": "1h", "url": "https://stefanprodan.github.io/podinfo"}
        }))
        .expect("applies");
    }
    view
}

fn validate_with(engine: &Engine, object: &Value) -> Verdict {
    let owned = OwnedObject::from_value(object).expect("a Kubernetes object");
    let request = owned.as_create("uid-test");
    engine
        .review(Endpoint::Validate, &request, &chart_repositories())
        .0
}

fn validate(object: &Value) -> Verdict {
    validate_with(&default_engine(), object)
}

/// A Kustomization of a tenant's Git repository that follows every rule.
fn kustomization(namespace: &str) -> Value {
    json!({
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
        "metadata": {"name": "apps", "namespace": namespace},
        "spec": {
            "interval": "10m", "path": "./deploy", "prune": true,
            "serviceAccountName": "team-a",
            "sourceRef": {"kind": "GitRepository", "name": "apps"},
        }
    })
}

/// A HelmRelease of a chart from the tenant's own HelmRepository that follows every rule.
fn helm_release(namespace: &str) -> Value {
    json!({
        "apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
        "metadata": {"name": "podinfo", "namespace": namespace},
        "spec": {
            "interval": "10m",
            "serviceAccountName": "team-a",
            "chart": {"spec": {"chart": "podinfo", "version": "6.x",
                "sourceRef": {"kind": "HelmRepository", "name": "podinfo"}}},
        }
    })
}

fn without(mut object: Value, pointer: &str) -> Value {
    let (parent, key) = pointer.rsplit_once('/').expect("a pointer");
    if let Some(map) = object.pointer_mut(parent).and_then(Value::as_object_mut) {
        map.remove(key);
    }
    object
}

fn with(mut object: Value, pointer: &str, value: Value) -> Value {
    let (parent, key) = pointer.rsplit_once('/').expect("a pointer");
    object
        .pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .expect("parent exists")
        .insert(key.to_string(), value);
    object
}

/// This policy's findings, as `(severity, message)`.
fn findings(verdict: &Verdict) -> Vec<(Severity, String)> {
    verdict
        .outcomes
        .iter()
        .filter(|o| o.finding.policy == POLICY)
        .map(|o| (o.finding.severity, o.finding.message.clone()))
        .collect()
}

#[track_caller]
fn assert_denied(verdict: &Verdict, phrases: &[&str]) -> String {
    assert!(!verdict.allowed, "expected a denial, got {verdict:#?}");
    let message = verdict.denial_message();
    assert!(message.starts_with("[tenant-lockdown] "), "{message}");
    for phrase in phrases {
        assert!(message.contains(phrase), "{phrase:?} not in:\n{message}");
    }
    message
}

#[track_caller]
fn assert_clean(verdict: &Verdict) {
    assert!(verdict.allowed, "{}", verdict.denial_message());
    assert!(verdict.evaluated.contains(&POLICY), "{verdict:#?}");
    assert!(verdict.outcomes.is_empty(), "{:#?}", verdict.outcomes);
}

// ---------------------------------------------------------------------------------------
// The service account

#[test]
fn a_tenant_kustomization_that_names_its_service_account_and_own_source_passes() {
    assert_clean(&validate(&kustomization("team-a")));
    assert_clean(&validate(&helm_release("team-a")));
}

#[test]
fn a_tenant_kustomization_without_a_service_account_is_denied() {
    let message = assert_denied(
        &validate(&without(
            kustomization("team-a"),
            "/spec/serviceAccountName",
        )),
        &[
            "Kustomization team-a/apps has no spec.serviceAccountName",
            "without it with the controller's own cluster-admin rights",
            "tenant namespace team-a",
            "--default-service-account",
            "a ServiceAccount of namespace team-a",
        ],
    );
    assert_eq!(message.lines().count(), 1, "one finding: {message}");
}

#[test]
fn a_tenant_helm_release_without_a_service_account_is_denied() {
    for account in [Value::Null, json!(""), json!("  ")] {
        let release = with(helm_release("team-a"), "/spec/serviceAccountName", account);
        assert_denied(
            &validate(&release),
            &[
                "HelmRelease team-a/podinfo has no spec.serviceAccountName",
                "helm-controller",
            ],
        );
    }
}

#[test]
fn platform_namespaces_are_not_judged() {
    for object in [
        without(kustomization("flux-system"), "/spec/serviceAccountName"),
        with(
            helm_release("flux-system"),
            "/spec/kubeConfig",
            json!({"secretRef": {"name": "remote"}}),
        ),
    ] {
        assert_clean(&validate(&object));
    }
}

#[test]
fn platform_namespaces_are_configurable() {
    let platform =
        engine("policies:\n  tenant-lockdown:\n    platformNamespaces: [flux-system, platform]\n");
    let bare = without(kustomization("platform"), "/spec/serviceAccountName");
    assert_clean(&validate_with(&platform, &bare));
    // flux-system is a tenant namespace once the list leaves it out.
    let strict = engine("policies:\n  tenant-lockdown:\n    platformNamespaces: []\n");
    assert_denied(
        &validate_with(
            &strict,
            &without(kustomization("flux-system"), "/spec/serviceAccountName"),
        ),
        &["tenant namespace flux-system"],
    );
}

// ---------------------------------------------------------------------------------------
// Cross-namespace references

#[test]
fn a_source_in_another_namespace_is_denied() {
    let k = with(
        kustomization("team-a"),
        "/spec/sourceRef/namespace",
        json!("flux-system"),
    );
    assert_denied(
        &validate(&k),
        &[
            "Kustomization team-a/apps: spec.sourceRef.namespace is flux-system",
            "--no-cross-namespace-refs",
            "GitRepository flux-system/apps",
            "Put the GitRepository in team-a",
        ],
    );
}

#[test]
fn a_source_in_its_own_namespace_may_be_named() {
    assert_clean(&validate(&with(
        kustomization("team-a"),
        "/spec/sourceRef/namespace",
        json!("team-a"),
    )));
    assert_clean(&validate(&with(
        helm_release("team-a"),
        "/spec/chart/spec/sourceRef/namespace",
        json!("team-a"),
    )));
}

#[test]
fn a_chart_from_another_namespace_is_denied() {
    let release = with(
        helm_release("team-a"),
        "/spec/chart/spec/sourceRef/namespace",
        json!("shared-charts"),
    );
    assert_denied(
        &validate(&release),
        &[
            "spec.chart.spec.sourceRef.namespace is shared-charts",
            "HelmRepository shared-charts/podinfo",
        ],
    );
}

#[test]
fn a_chart_ref_to_another_namespace_is_denied() {
    let release = json!({
        "apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
        "metadata": {"name": "podinfo", "namespace": "team-a"},
        "spec": {"interval": "10m", "serviceAccountName": "team-a",
            "chartRef": {"kind": "OCIRepository", "name": "podinfo", "namespace": "flux-system"}}
    });
    assert_denied(
        &validate(&release),
        &[
            "spec.chartRef.namespace is flux-system",
            "OCIRepository flux-system/podinfo",
        ],
    );
    let local = with(release, "/spec/chartRef/namespace", json!("team-a"));
    assert_clean(&validate(&local));
}

// ---------------------------------------------------------------------------------------
// Other clusters

#[test]
fn a_kube_config_in_a_tenant_namespace_is_denied() {
    let k = with(
        kustomization("team-a"),
        "/spec/kubeConfig",
        json!({"secretRef": {"name": "prod-kubeconfig"}}),
    );
    assert_denied(
        &validate(&k),
        &[
            "spec.kubeConfig (Secret prod-kubeconfig)",
            "act on another cluster",
            "kubeConfigNamespaces",
            "none is listed",
        ],
    );
    let release = with(
        helm_release("team-a"),
        "/spec/kubeConfig",
        json!({"configMapRef": {"name": "fleet-cluster"}}),
    );
    assert_denied(
        &validate(&release),
        &[
            "spec.kubeConfig (ConfigMap fleet-cluster)",
            "helm-controller",
        ],
    );
}

#[test]
fn a_kube_config_in_an_allowed_namespace_passes() {
    let fleet = engine("policies:\n  tenant-lockdown:\n    kubeConfigNamespaces: [fleet]\n");
    let k = with(
        kustomization("fleet"),
        "/spec/kubeConfig",
        json!({"secretRef": {"name": "prod-kubeconfig"}}),
    );
    assert_clean(&validate_with(&fleet, &k));
    let elsewhere = with(k, "/metadata/namespace", json!("team-a"));
    assert_denied(&validate_with(&fleet, &elsewhere), &["listed: fleet"]);
    // null is no kubeConfig.
    assert_clean(&validate(&with(
        kustomization("team-a"),
        "/spec/kubeConfig",
        Value::Null,
    )));
}

// ---------------------------------------------------------------------------------------
// Manifests without a namespace (`fluxgate check`)

#[test]
fn a_manifest_without_a_namespace_is_judged_as_a_tenants() {
    let bare = without(
        without(kustomization("x"), "/metadata/namespace"),
        "/spec/serviceAccountName",
    );
    assert_denied(
        &validate(&bare),
        &[
            "Kustomization apps has no spec.serviceAccountName",
            "metadata.namespace is not set",
            "targetNamespace of the Kustomization that deploys it",
        ],
    );
    // With its own account and source it passes: there is nothing namespace-dependent left.
    assert_clean(&validate(&without(
        kustomization("x"),
        "/metadata/namespace",
    )));
}

#[test]
fn without_a_namespace_no_reference_to_a_namespace_can_be_shown_to_be_its_own() {
    let k = with(
        without(kustomization("x"), "/metadata/namespace"),
        "/spec/sourceRef/namespace",
        json!("team-a"),
    );
    assert_denied(
        &validate(&k),
        &[
            "spec.sourceRef.namespace is team-a, and the object has no metadata.namespace",
            "Set metadata.namespace, or drop spec.sourceRef.namespace",
        ],
    );
    let remote = with(
        without(kustomization("x"), "/metadata/namespace"),
        "/spec/kubeConfig",
        json!({"secretRef": {"name": "remote"}}),
    );
    assert_denied(
        &validate(&remote),
        &["spec.kubeConfig", "metadata.namespace is not set"],
    );
}

// ---------------------------------------------------------------------------------------
// Every finding at once, malformed objects, versions, updates, modes

#[test]
fn every_broken_rule_is_reported() {
    let k = json!({
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
        "metadata": {"name": "tenants", "namespace": "staging"},
        "spec": {"interval": "1h", "path": "./clusters/staging/tenants", "prune": true,
            "sourceRef": {"kind": "GitRepository", "name": "flux-system", "namespace": "flux-system"},
            "kubeConfig": {"secretRef": {"name": "cluster-kubeconfig"}}}
    });
    let verdict = validate(&k);
    assert_eq!(findings(&verdict).len(), 3, "{:#?}", verdict.outcomes);
    assert_denied(
        &verdict,
        &[
            "no spec.serviceAccountName",
            "spec.sourceRef.namespace is flux-system",
            "spec.kubeConfig",
        ],
    );
}

#[test]
fn a_malformed_object_is_denied_with_the_path_of_the_field() {
    let k = with(
        kustomization("team-a"),
        "/spec/serviceAccountName",
        json!(["team-a"]),
    );
    assert_denied(&validate(&k), &["is malformed", "spec.serviceAccountName"]);
    let no_spec = without(kustomization("team-a"), "/spec");
    assert_denied(&validate(&no_spec), &["is malformed", "spec"]);
}

#[test]
fn every_served_version_is_judged_the_same() {
    for (api_version, object) in [
        (
            "kustomize.toolkit.fluxcd.io/v1beta2",
            kustomization("team-a"),
        ),
        ("helm.toolkit.fluxcd.io/v2beta1", helm_release("team-a")),
        ("helm.toolkit.fluxcd.io/v2beta2", helm_release("team-a")),
    ] {
        let old = with(
            without(object, "/spec/serviceAccountName"),
            "/apiVersion",
            json!(api_version),
        );
        assert_denied(&validate(&old), &["no spec.serviceAccountName"]);
    }
}

#[test]
fn kustomize_own_kustomization_files_are_not_judged() {
    let file = json!({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "metadata": {"name": "x", "namespace": "team-a"},
        "resources": ["sync.yaml"]
    });
    let verdict = validate(&file);
    assert!(
        verdict.allowed && verdict.evaluated.is_empty(),
        "{verdict:#?}"
    );
}

fn update(new: &Value, old: &Value) -> Verdict {
    let (group, version) = new["apiVersion"]
        .as_str()
        .and_then(|v| v.rsplit_once('/'))
        .expect("apiVersion");
    let body = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "uid-update",
            "kind": {"group": group, "version": version, "kind": new["kind"]},
            "resource": {"group": group, "version": version, "resource": "x"},
            "name": new["metadata"]["name"], "namespace": new["metadata"]["namespace"],
            "operation": "UPDATE",
            "userInfo": {"username": "system:serviceaccount:flux-system:kustomize-controller"},
            "object": new, "oldObject": old, "dryRun": false,
        }
    })
    .to_string();
    let request = admission::decode(body.as_bytes()).expect("review");
    default_engine()
        .review(Endpoint::Validate, &request, &chart_repositories())
        .0
}

#[test]
fn an_update_that_leaves_the_judged_fields_alone_is_never_blocked() {
    // An object that predates the policy: the controller still adds finalizers and status.
    let old = without(kustomization("team-a"), "/spec/serviceAccountName");
    let mut new = old.clone();
    new["metadata"]["finalizers"] = json!(["finalizers.fluxcd.io"]);
    new["spec"]["path"] = json!("./other");
    let verdict = update(&new, &old);
    assert!(verdict.allowed, "{}", verdict.denial_message());
    assert!(!verdict.evaluated.contains(&POLICY));
}

#[test]
fn an_update_that_drops_the_service_account_is_denied() {
    let old = kustomization("team-a");
    let new = without(old.clone(), "/spec/serviceAccountName");
    assert_denied(&update(&new, &old), &["no spec.serviceAccountName"]);
    let moved = with(
        old.clone(),
        "/spec/sourceRef/namespace",
        json!("flux-system"),
    );
    assert_denied(
        &update(&moved, &old),
        &["spec.sourceRef.namespace is flux-system"],
    );
}

#[test]
fn warn_and_audit_modes_do_not_deny() {
    let object = without(kustomization("team-a"), "/spec/serviceAccountName");
    let warn = validate_with(
        &engine("policies:\n  tenant-lockdown:\n    mode: warn\n"),
        &object,
    );
    assert!(warn.allowed);
    assert!(
        warn.warnings
            .iter()
            .any(|w| w.starts_with("[tenant-lockdown]"))
    );
    let audit = validate_with(
        &engine("policies:\n  tenant-lockdown:\n    mode: audit\n"),
        &object,
    );
    assert!(audit.allowed && audit.warnings.is_empty());
    assert_eq!(findings(&audit).len(), 1);
}

#[test]
fn bad_settings_are_refused_with_the_key() {
    for (yaml, key) in [
        (
            "policies:\n  tenant-lockdown:\n    platformNamespaces: ['']\n",
            "policies.tenant-lockdown.platformNamespaces[0]",
        ),
        (
            "policies:\n  tenant-lockdown:\n    kubeConfigNamespaces: [fleet, ' ']\n",
            "policies.tenant-lockdown.kubeConfigNamespaces[1]",
        ),
        (
            "policies:\n  tenant-lockdown:\n    controllerFlags: deny\n",
            "controllerFlags",
        ),
        (
            "policies:\n  tenant-lockdown:\n    tenants: [a]\n",
            "tenants",
        ),
    ] {
        let err = Config::from_yaml(yaml, "c.yaml")
            .expect_err(yaml)
            .to_string();
        assert!(err.contains(key), "{key} not in {err}");
    }
}

// ---------------------------------------------------------------------------------------
// The drift check: the Flux controllers' own flags

/// A Flux controller Deployment as `flux install` renders it (container `manager`).
fn controller(name: &str, extra_args: &[&str]) -> Value {
    let mut args = vec![
        "--events-addr=http://notification-controller.flux-system.svc.cluster.local./",
        "--watch-all-namespaces=true",
        "--log-level=info",
        "--log-encoding=json",
        "--enable-leader-election",
    ];
    args.extend_from_slice(extra_args);
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "flux-system",
            "labels": {"app.kubernetes.io/component": name, "app.kubernetes.io/part-of": "flux"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}}, "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"serviceAccountName": name, "containers": [{
                "name": "manager",
                "image": format!("ghcr.io/fluxcd/{name}:v1.5.1"),
                "args": args,
            }]}}}
    })
}

const LOCKED: &[&str] = &[
    "--no-cross-namespace-refs=true",
    "--default-service-account=default",
    "--no-remote-bases=true",
];

#[test]
fn a_flux_controller_without_the_lockdown_flags_gets_a_warning_never_a_denial() {
    for mode in ["enforce", "warn"] {
        let engine = engine(&format!(
            "policies:\n  tenant-lockdown:\n    mode: {mode}\n"
        ));
        let verdict = validate_with(&engine, &controller("kustomize-controller", &[]));
        assert!(verdict.allowed, "{mode}: {}", verdict.denial_message());
        let ours = findings(&verdict);
        assert_eq!(ours.len(), 1, "{ours:#?}");
        assert_eq!(ours[0].0, Severity::Advisory);
        for phrase in [
            "Deployment flux-system/kustomize-controller runs kustomize-controller (container manager)",
            "--no-cross-namespace-refs=true, --default-service-account=<name>, --no-remote-bases=true",
            "never blocks the Flux controllers",
        ] {
            assert!(
                ours[0].1.contains(phrase),
                "{phrase:?} not in {}",
                ours[0].1
            );
        }
        assert!(
            verdict
                .warnings
                .iter()
                .any(|w| w.starts_with("[tenant-lockdown] Deployment"))
        );
    }
}

#[test]
fn a_locked_down_controller_passes() {
    assert!(findings(&validate(&controller("kustomize-controller", LOCKED))).is_empty());
    assert!(findings(&validate(&controller("helm-controller", &LOCKED[..2]))).is_empty());
}

#[test]
fn only_the_missing_flags_are_named() {
    let verdict = validate(&controller(
        "helm-controller",
        &["--no-cross-namespace-refs=true"],
    ));
    let ours = findings(&verdict);
    assert_eq!(ours.len(), 1);
    assert!(
        ours[0]
            .1
            .contains("flags --default-service-account=<name>:"),
        "{}",
        ours[0].1
    );
    assert!(!ours[0].1.contains("--no-remote-bases"), "{}", ours[0].1);
    let disabled = controller(
        "kustomize-controller",
        &[
            "--no-cross-namespace-refs=true",
            "--default-service-account=default",
            "--no-remote-bases=false",
        ],
    );
    let ours = findings(&validate(&disabled));
    assert!(
        ours[0].1.contains("flags --no-remote-bases=true:"),
        "{}",
        ours[0].1
    );
}

#[test]
fn other_deployments_are_left_alone() {
    let source = controller("source-controller", &[]);
    assert!(findings(&validate(&source)).is_empty());
    let app = with(
        controller("web", &[]),
        "/spec/template/spec/containers/0/image",
        json!("ghcr.io/stefanprodan/podinfo:6.5.0"),
    );
    assert!(findings(&validate(&app)).is_empty());
}

#[test]
fn the_drift_check_can_be_turned_off() {
    let off = engine("policies:\n  tenant-lockdown:\n    controllerFlags: off\n");
    assert!(
        findings(&validate_with(
            &off,
            &controller("kustomize-controller", &[])
        ))
        .is_empty()
    );
}

#[test]
fn the_audit_scan_reports_an_unlocked_controller_as_a_warning() {
    let engine = default_engine();
    let view = MemoryView::new();
    let objects = [
        controller("kustomize-controller", &[]),
        controller("helm-controller", &LOCKED[..2]),
        without(kustomization("team-a"), "/spec/serviceAccountName"),
    ];
    let report = audit::scan(&engine, &view, objects.iter());
    let ours: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.policy == POLICY)
        .collect();
    assert_eq!(ours.len(), 2, "{ours:#?}");
    let drift = ours
        .iter()
        .find(|f| f.kind == "Deployment")
        .expect("the controller");
    assert_eq!(drift.name, "kustomize-controller");
    assert_eq!(drift.result, audit::AuditResult::Warn);
    let tenant = ours
        .iter()
        .find(|f| f.kind == "Kustomization")
        .expect("the tenant");
    assert_eq!(tenant.result, audit::AuditResult::Fail);
}

/// `kubectl kustomize DIR`; without kubectl nothing here can be checked, so it fails.
fn kustomize(dir: &Path) -> Vec<Value> {
    let kubectl = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".to_string());
    let output = Command::new(&kubectl)
        .arg("kustomize")
        .arg(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run `{kubectl} kustomize` ({e}): these tests need kubectl")
        });
    assert!(
        output.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("UTF-8");
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).expect("rendered YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

fn multi_tenancy() -> PathBuf {
    Path::new(CORPUS).join("flux/fluxcd+flux2-multi-tenancy")
}

#[test]
fn the_multi_tenancy_examples_patches_lock_the_controllers_down() {
    // The example's flux-system kustomization.yaml, applied to controllers as `flux install`
    // renders them (gotk-components.yaml is generated at bootstrap, so not in the corpus).
    let dir = TempDir::new("multi-tenancy-flux-system");
    for cluster in ["staging", "production"] {
        let source = multi_tenancy().join(format!("clusters/{cluster}/flux-system"));
        std::fs::copy(
            source.join("kustomization.yaml"),
            dir.0.join("kustomization.yaml"),
        )
        .expect("copy");
        std::fs::copy(source.join("gotk-sync.yaml"), dir.0.join("gotk-sync.yaml")).expect("copy");
        let components: Vec<String> = [
            "source-controller",
            "kustomize-controller",
            "helm-controller",
            "notification-controller",
        ]
        .iter()
        .map(|name| serde_yaml_ng::to_string(&controller(name, &[])).expect("yaml"))
        .collect();
        std::fs::write(dir.0.join("gotk-components.yaml"), components.join("---\n"))
            .expect("write");
        let unpatched: Vec<Value> = components
            .iter()
            .map(|c| serde_yaml_ng::from_str(c).expect("yaml"))
            .collect();
        let warned = |objects: &[Value]| -> BTreeSet<String> {
            objects
                .iter()
                .filter(|o| !findings(&validate(o)).is_empty())
                .map(|o| o["metadata"]["name"].as_str().unwrap_or("").to_string())
                .collect()
        };
        assert_eq!(
            warned(&unpatched),
            BTreeSet::from([
                "helm-controller".to_string(),
                "kustomize-controller".to_string()
            ]),
            "{cluster}: without the patches"
        );
        assert!(
            warned(&kustomize(&dir.0)).is_empty(),
            "{cluster}: with the example's patches"
        );
    }
}

#[test]
fn the_multi_tenancy_example_is_lockdown_clean() {
    // What Flux applies: the cluster-level Kustomizations as they are, and the tenant and
    // infrastructure directories as kustomize builds them (the dev-team patches included).
    let mut objects = Vec::new();
    for file in [
        "clusters/staging/infrastructure.yaml",
        "clusters/staging/tenants.yaml",
        "clusters/production/infrastructure.yaml",
        "clusters/production/tenants.yaml",
    ] {
        let text = std::fs::read_to_string(multi_tenancy().join(file)).expect("corpus file");
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            objects.push(Value::deserialize(doc).expect("YAML"));
        }
    }
    for dir in [
        "tenants/staging",
        "tenants/production",
        "infrastructure/kyverno",
    ] {
        objects.extend(kustomize(&multi_tenancy().join(dir)));
    }
    let engine = default_engine();
    let mut judged = BTreeSet::new();
    for object in &objects {
        let verdict = validate_with(&engine, object);
        let what = format!(
            "{} {}/{}",
            object["kind"].as_str().unwrap_or(""),
            object["metadata"]["namespace"].as_str().unwrap_or(""),
            object["metadata"]["name"].as_str().unwrap_or("")
        );
        assert!(
            findings(&verdict).is_empty(),
            "{what}: {:#?}",
            verdict.outcomes
        );
        if verdict.evaluated.contains(&POLICY) {
            judged.insert(what);
        }
    }
    // The tenant's own Kustomization is judged as a tenant's, in both environments.
    assert!(judged.contains("Kustomization apps/dev-team"), "{judged:?}");
    assert_eq!(judged.len(), 5, "{judged:?}");
    // And the rendered tenant Kustomization carries its path from the patch.
    let tenant = objects
        .iter()
        .find(|o| o["kind"] == "Kustomization" && o["metadata"]["namespace"] == "apps")
        .expect("the tenant Kustomization");
    assert_eq!(tenant["spec"]["serviceAccountName"], "dev-team");
}

// ---------------------------------------------------------------------------------------
// The corpus

use Decision::Allow as ALLOW;
const NO_ACCOUNT: Decision = Decision::Deny(&["has no spec.serviceAccountName"]);
const NO_ACCOUNT_CROSS_NS: Decision = Decision::Deny(&[
    "has no spec.serviceAccountName",
    ".namespace is flux-system, but an object in tenant namespace",
]);
const NO_ACCOUNT_REMOTE: Decision =
    Decision::Deny(&["has no spec.serviceAccountName", "spec.kubeConfig"]);
const HUB_REMOTE: Decision = Decision::Deny(&[
    "has no spec.serviceAccountName",
    "spec.sourceRef.namespace is flux-system",
    "spec.kubeConfig (Secret cluster-kubeconfig)",
]);
const UNKNOWN_NS_CROSS: Decision = Decision::Deny(&[
    "has no spec.serviceAccountName",
    "spec.chartRef.namespace is flux-system, and the object has no metadata.namespace",
]);
/// Documentation snippets with `spec:` elided, outside the platform namespace.
const MALFORMED: Decision = Decision::Deny(&["is malformed", "spec"]);

/// Every Kustomization and HelmRelease under `corpus/flux/` (path, kind, name), judged alone
/// under the default configuration (platform namespace: flux-system), checked by hand.
///
/// Reading guide: the Flux docs and the single-tenant examples apply as cluster-admin
/// (no serviceAccountName), which is right in flux-system and denied anywhere else;
/// flux2-hub-spoke-example keeps its hub's cluster Kustomizations in namespaces named after
/// the clusters, which a hub lists in platformNamespaces (here they are tenants'); kustomize
/// patch files (`*-patch.yaml`, `podinfo-values.yaml`) are judged as the objects they would
/// be alone, without the fields of what they patch (the rendered multi-tenancy overlay is
/// clean, see above); manifests without a namespace are judged as a tenant's.
const CORPUS_TABLE: &[(&str, &str, &str, Decision)] = &[
    (
        "docs-extracted/fluxcd+helm-controller/docs__spec__v2__helmreleases__L1048-1063__HelmRelease.yaml",
        "HelmRelease",
        "sealed-secrets",
        NO_ACCOUNT,
    ),
    (
        "docs-extracted/fluxcd+helm-controller/docs__spec__v2__helmreleases__L1282-1326__HelmRelease-OCIRepository.yaml",
        "HelmRelease",
        "webapp",
        NO_ACCOUNT,
    ),
    (
        "docs-extracted/fluxcd+helm-controller/docs__spec__v2__helmreleases__L1400-1419__HelmRelease.yaml",
        "HelmRelease",
        "my-operator",
        NO_ACCOUNT,
    ),
    (
        "docs-extracted/fluxcd+helm-controller/docs__spec__v2__helmreleases__L1487-1501__HelmRelease.yaml",
        "HelmRelease",
        "podinfo",
        ALLOW,
    ),
    (
        "docs-extracted/fluxcd+helm-controller/docs__spec__v2__helmreleases__L1534-1580__Cluster-HelmRelease.yaml",
        "HelmRelease",
        "kube-prometheus-stack",
        NO_ACCOUNT_REMOTE,
    ),
    (
        "docs-extracted/fluxcd+helm-controller/docs__spec__v2__helmreleases__L16-58__HelmRelease-HelmRepository.yaml",
        "HelmRelease",
        "podinfo",
        NO_ACCOUNT,
    ),
    (
        "docs-extracted/fluxcd+helm-controller/docs__spec__v2__helmreleases__L1749-1755__HelmRelease.yaml",
        "HelmRelease",
        "<helmrelease-name>",
        NO_ACCOUNT,
    ),
    (
        "docs-extracted/fluxcd+helm-controller/docs__spec__v2__helmreleases__L1775-1781__HelmRelease.yaml",
        "HelmRelease",
        "<helmrelease-name>",
        MALFORMED,
    ),
    (
        "docs-extracted/fluxcd+helm-controller/docs__spec__v2__helmreleases__L1990-2032__HelmRelease.yaml",
        "HelmRelease",
        "<release-name>",
        MALFORMED,
    ),
    (
        "docs-extracted/fluxcd+helm-controller/docs__spec__v2__helmreleases__L2049-2062__HelmRelease.yaml",
        "HelmRelease",
        "<release-name>",
        MALFORMED,
    ),
    // chartRef.namespace: default, its own.
    (
        "docs-extracted/fluxcd+helm-controller/docs__spec__v2__helmreleases__L241-267__HelmRelease-OCIRepository.yaml",
        "HelmRelease",
        "podinfo",
        NO_ACCOUNT,
    ),
    (
        "docs-extracted/fluxcd+helm-controller/docs__spec__v2__helmreleases__L273-300__HelmChart-HelmRelease.yaml",
        "HelmRelease",
        "podinfo",
        NO_ACCOUNT,
    ),
    (
        "docs-extracted/fluxcd+helm-controller/docs__spec__v2__helmreleases__L385-402__HelmRelease.yaml",
        "HelmRelease",
        "backend",
        MALFORMED,
    ),
    (
        "docs-extracted/fluxcd+helm-controller/docs__spec__v2__helmreleases__L385-402__HelmRelease.yaml",
        "HelmRelease",
        "frontend",
        NO_ACCOUNT,
    ),
    (
        "docs-extracted/fluxcd+helm-controller/docs__spec__v2__helmreleases__L419-445__HelmRelease.yaml",
        "HelmRelease",
        "backend",
        NO_ACCOUNT,
    ),
    (
        "docs-extracted/fluxcd+helm-controller/docs__spec__v2__helmreleases__L419-445__HelmRelease.yaml",
        "HelmRelease",
        "frontend",
        NO_ACCOUNT,
    ),
    (
        "docs-extracted/fluxcd+kustomize-controller/docs__spec__v1__kustomizations__L1208-1223__Kustomization.yaml",
        "Kustomization",
        "sops-encrypted",
        NO_ACCOUNT,
    ),
    (
        "docs-extracted/fluxcd+kustomize-controller/docs__spec__v1__kustomizations__L130-142__Kustomization.yaml",
        "Kustomization",
        "webapp",
        Decision::Deny(&[
            "has no spec.serviceAccountName",
            "spec.sourceRef.namespace is shared",
            "GitRepository shared/webapp",
        ]),
    ),
    // sourceRef.namespace: apps, its own.
    (
        "docs-extracted/fluxcd+kustomize-controller/docs__spec__v1__kustomizations__L1542-1577__GitRepository-Kustomization.yaml",
        "Kustomization",
        "webapp",
        NO_ACCOUNT,
    ),
    (
        "docs-extracted/fluxcd+kustomize-controller/docs__spec__v1__kustomizations__L16-40__GitRepository-Kustomization.yaml",
        "Kustomization",
        "podinfo",
        NO_ACCOUNT,
    ),
    (
        "docs-extracted/fluxcd+kustomize-controller/docs__spec__v1__kustomizations__L1753-1768__Kustomization.yaml",
        "Kustomization",
        "backend",
        ALLOW,
    ),
    (
        "docs-extracted/fluxcd+kustomize-controller/docs__spec__v1__kustomizations__L1797-1838__Cluster-Kustomization.yaml",
        "Kustomization",
        "cluster-addons",
        NO_ACCOUNT_REMOTE,
    ),
    (
        "docs-extracted/fluxcd+kustomize-controller/docs__spec__v1__kustomizations__L201-211__Kustomization.yaml",
        "Kustomization",
        "app",
        NO_ACCOUNT,
    ),
    (
        "docs-extracted/fluxcd+kustomize-controller/docs__spec__v1__kustomizations__L2059-2068__Kustomization.yaml",
        "Kustomization",
        "app",
        NO_ACCOUNT,
    ),
    (
        "docs-extracted/fluxcd+kustomize-controller/docs__spec__v1__kustomizations__L2123-2129__Kustomization.yaml",
        "Kustomization",
        "<kustomization-name>",
        NO_ACCOUNT,
    ),
    (
        "docs-extracted/fluxcd+kustomize-controller/docs__spec__v1__kustomizations__L2149-2155__Kustomization.yaml",
        "Kustomization",
        "<kustomization-name>",
        MALFORMED,
    ),
    (
        "docs-extracted/fluxcd+kustomize-controller/docs__spec__v1__kustomizations__L292-308__Kustomization.yaml",
        "Kustomization",
        "backend",
        NO_ACCOUNT,
    ),
    (
        "docs-extracted/fluxcd+kustomize-controller/docs__spec__v1__kustomizations__L323-345__Kustomization.yaml",
        "Kustomization",
        "webapp",
        NO_ACCOUNT,
    ),
    (
        "docs-extracted/fluxcd+kustomize-controller/docs__spec__v1__kustomizations__L383-401__Kustomization.yaml",
        "Kustomization",
        "sealed-secrets",
        ALLOW,
    ),
    (
        "docs-extracted/fluxcd+kustomize-controller/docs__spec__v1__kustomizations__L452-484__Kustomization.yaml",
        "Kustomization",
        "cert-manager",
        ALLOW,
    ),
    (
        "docs-extracted/fluxcd+kustomize-controller/docs__spec__v1__kustomizations__L452-484__Kustomization.yaml",
        "Kustomization",
        "certs",
        ALLOW,
    ),
    (
        "docs-extracted/fluxcd+kustomize-controller/docs__spec__v1__kustomizations__L506-527__Kustomization.yaml",
        "Kustomization",
        "app-backend",
        MALFORMED,
    ),
    (
        "docs-extracted/fluxcd+kustomize-controller/docs__spec__v1__kustomizations__L506-527__Kustomization.yaml",
        "Kustomization",
        "app-frontend",
        NO_ACCOUNT,
    ),
    (
        "docs-extracted/fluxcd+kustomize-controller/docs__spec__v1__kustomizations__L564-571__Kustomization.yaml",
        "Kustomization",
        "app",
        NO_ACCOUNT,
    ),
    (
        "docs-extracted/fluxcd+kustomize-controller/docs__spec__v1__kustomizations__L587-627__Kustomization.yaml",
        "Kustomization",
        "podinfo",
        ALLOW,
    ),
    (
        "docs-extracted/fluxcd+kustomize-controller/docs__spec__v1__kustomizations__L637-653__Kustomization.yaml",
        "Kustomization",
        "podinfo",
        ALLOW,
    ),
    (
        "docs-extracted/fluxcd+kustomize-controller/docs__spec__v1__kustomizations__L668-676__Kustomization.yaml",
        "Kustomization",
        "podinfo",
        ALLOW,
    ),
    (
        "docs-extracted/fluxcd+kustomize-controller/docs__spec__v1__kustomizations__L699-709__Kustomization.yaml",
        "Kustomization",
        "podinfo",
        ALLOW,
    ),
    (
        "docs-extracted/fluxcd+kustomize-controller/docs__spec__v1__kustomizations__L776-794__Kustomization.yaml",
        "Kustomization",
        "apps",
        NO_ACCOUNT,
    ),
    (
        "docs-extracted/fluxcd+kustomize-controller/docs__spec__v1__kustomizations__L845-852__Kustomization.yaml",
        "Kustomization",
        "apps",
        NO_ACCOUNT,
    ),
    (
        "docs-extracted/fluxcd+kustomize-controller/docs__spec__v1__kustomizations__L955-977__Kustomization.yaml",
        "Kustomization",
        "app",
        ALLOW,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__blog__2022-09-01-manage-kyverno-policies-as-ocirepositories__index__L119-156__Kustomization-OCIRepository.yaml",
        "Kustomization",
        "kyverno-policies",
        ALLOW,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__blog__2022-09-01-manage-kyverno-policies-as-ocirepositories__index__L55-84__GitRepository-Kustomization.yaml",
        "Kustomization",
        "kyverno-controller",
        ALLOW,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__blog__2024-05-13-announcing-flux-v2.3.0__index__L55-81__HelmRelease-OCIRepository.yaml",
        "HelmRelease",
        "metrics-server",
        NO_ACCOUNT,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__blog__2025-09-29-announcing-flux-v2.7.0__index__L201-237__ArtifactGenerator-HelmRelease.yaml",
        "HelmRelease",
        "podinfo",
        NO_ACCOUNT,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__blog__2025-09-29-announcing-flux-v2.7.0__index__L246-292__ArtifactGenerator-Kustomization.yaml",
        "Kustomization",
        "frontend-service",
        NO_ACCOUNT,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__blog__2025-09-29-announcing-flux-v2.7.0__index__L246-292__ArtifactGenerator-Kustomization.yaml",
        "Kustomization",
        "backend-service",
        NO_ACCOUNT,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__cheatsheets__oci-artifacts__L213-235__Kustomization.yaml",
        "Kustomization",
        "podinfo",
        ALLOW,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__cheatsheets__oci-artifacts__L65-88__Kustomization-OCIRepository.yaml",
        "Kustomization",
        "podinfo",
        ALLOW,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__cheatsheets__oci-artifacts__L99-125__HelmRelease-OCIRepository.yaml",
        "HelmRelease",
        "podinfo",
        NO_ACCOUNT,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__faq__L155-166__Kustomization.yaml",
        "Kustomization",
        "my-app",
        NO_ACCOUNT,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__faq__L272-286__Kustomization.yaml",
        "Kustomization",
        "podinfo",
        NO_ACCOUNT,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__faq__L317-343__HelmRelease-OCIRepository.yaml",
        "HelmRelease",
        "metrics-server",
        NO_ACCOUNT,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__faq__L475-491__HelmRelease.yaml",
        "HelmRelease",
        "podinfo",
        NO_ACCOUNT,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__faq__L499-523__Kustomization.yaml",
        "Kustomization",
        "apps",
        ALLOW,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__faq__L529-546__HelmRelease.yaml",
        "HelmRelease",
        "podinfo",
        NO_ACCOUNT,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__faq__L553-570__Kustomization.yaml",
        "Kustomization",
        "apps",
        ALLOW,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__faq__L74-85__Kustomization.yaml",
        "Kustomization",
        "my-app",
        NO_ACCOUNT,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__guides__helmreleases__L212-229__HelmRelease.yaml",
        "HelmRelease",
        "podinfo",
        NO_ACCOUNT_CROSS_NS,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__guides__helmreleases__L264-275__HelmRelease.yaml",
        "HelmRelease",
        "podinfo",
        UNKNOWN_NS_CROSS,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__guides__helmreleases__L281-292__HelmRelease.yaml",
        "HelmRelease",
        "podinfo",
        UNKNOWN_NS_CROSS,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__guides__helmreleases__L355-371__HelmRelease.yaml",
        "HelmRelease",
        "podinfo",
        NO_ACCOUNT,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__guides__helmreleases__L462-479__HelmRelease.yaml",
        "HelmRelease",
        "mongodb",
        NO_ACCOUNT,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__use-cases__helm__L192-210__HelmRelease.yaml",
        "HelmRelease",
        "my-release",
        NO_ACCOUNT,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__use-cases__helm__L217-238__HelmRelease.yaml",
        "HelmRelease",
        "my-release",
        NO_ACCOUNT,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__use-cases__helm__L323-333__HelmRelease.yaml",
        "HelmRelease",
        "podinfo",
        NO_ACCOUNT,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__use-cases__helm__L81-95__HelmRelease.yaml",
        "HelmRelease",
        "my-traefik",
        NO_ACCOUNT,
    ),
    (
        "fluxcd+flux2-hub-spoke-example/clusters/production/apps/podinfo-values.yaml",
        "HelmRelease",
        "podinfo",
        NO_ACCOUNT,
    ),
    (
        "fluxcd+flux2-hub-spoke-example/clusters/staging/apps/podinfo-values.yaml",
        "HelmRelease",
        "podinfo",
        NO_ACCOUNT,
    ),
    (
        "fluxcd+flux2-hub-spoke-example/deploy/apps/podinfo.yaml",
        "HelmRelease",
        "podinfo",
        NO_ACCOUNT,
    ),
    (
        "fluxcd+flux2-hub-spoke-example/deploy/infra-controllers/cert-manager.yaml",
        "HelmRelease",
        "cert-manager",
        NO_ACCOUNT,
    ),
    (
        "fluxcd+flux2-hub-spoke-example/deploy/infra-controllers/ingress-nginx.yaml",
        "HelmRelease",
        "ingress-nginx",
        NO_ACCOUNT,
    ),
    (
        "fluxcd+flux2-hub-spoke-example/hub/production.yaml",
        "Kustomization",
        "tenants",
        HUB_REMOTE,
    ),
    (
        "fluxcd+flux2-hub-spoke-example/hub/production.yaml",
        "Kustomization",
        "infra-controllers",
        NO_ACCOUNT_CROSS_NS,
    ),
    (
        "fluxcd+flux2-hub-spoke-example/hub/production.yaml",
        "Kustomization",
        "infra-configs",
        HUB_REMOTE,
    ),
    (
        "fluxcd+flux2-hub-spoke-example/hub/production.yaml",
        "Kustomization",
        "apps",
        NO_ACCOUNT_CROSS_NS,
    ),
    (
        "fluxcd+flux2-hub-spoke-example/hub/staging.yaml",
        "Kustomization",
        "tenants",
        HUB_REMOTE,
    ),
    (
        "fluxcd+flux2-hub-spoke-example/hub/staging.yaml",
        "Kustomization",
        "infra-controllers",
        NO_ACCOUNT_CROSS_NS,
    ),
    (
        "fluxcd+flux2-hub-spoke-example/hub/staging.yaml",
        "Kustomization",
        "infra-configs",
        HUB_REMOTE,
    ),
    (
        "fluxcd+flux2-hub-spoke-example/hub/staging.yaml",
        "Kustomization",
        "apps",
        NO_ACCOUNT_CROSS_NS,
    ),
    (
        "fluxcd+flux2-kustomize-helm-example/apps/base/podinfo/release.yaml",
        "HelmRelease",
        "podinfo",
        NO_ACCOUNT,
    ),
    (
        "fluxcd+flux2-kustomize-helm-example/apps/production/podinfo-values.yaml",
        "HelmRelease",
        "podinfo",
        NO_ACCOUNT,
    ),
    (
        "fluxcd+flux2-kustomize-helm-example/apps/staging/podinfo-values.yaml",
        "HelmRelease",
        "podinfo",
        NO_ACCOUNT,
    ),
    (
        "fluxcd+flux2-kustomize-helm-example/clusters/production/apps.yaml",
        "Kustomization",
        "apps",
        ALLOW,
    ),
    (
        "fluxcd+flux2-kustomize-helm-example/clusters/production/infrastructure.yaml",
        "Kustomization",
        "infra-controllers",
        ALLOW,
    ),
    (
        "fluxcd+flux2-kustomize-helm-example/clusters/production/infrastructure.yaml",
        "Kustomization",
        "infra-configs",
        ALLOW,
    ),
    (
        "fluxcd+flux2-kustomize-helm-example/clusters/staging/apps.yaml",
        "Kustomization",
        "apps",
        ALLOW,
    ),
    (
        "fluxcd+flux2-kustomize-helm-example/clusters/staging/infrastructure.yaml",
        "Kustomization",
        "infra-controllers",
        ALLOW,
    ),
    (
        "fluxcd+flux2-kustomize-helm-example/clusters/staging/infrastructure.yaml",
        "Kustomization",
        "infra-configs",
        ALLOW,
    ),
    (
        "fluxcd+flux2-kustomize-helm-example/infrastructure/controllers/cert-manager.yaml",
        "HelmRelease",
        "cert-manager",
        NO_ACCOUNT,
    ),
    (
        "fluxcd+flux2-kustomize-helm-example/infrastructure/controllers/envoy-gateway.yaml",
        "HelmRelease",
        "envoy-gateway",
        NO_ACCOUNT,
    ),
    (
        "fluxcd+flux2-multi-tenancy/clusters/production/infrastructure.yaml",
        "Kustomization",
        "kyverno",
        ALLOW,
    ),
    (
        "fluxcd+flux2-multi-tenancy/clusters/production/infrastructure.yaml",
        "Kustomization",
        "kyverno-policies",
        ALLOW,
    ),
    (
        "fluxcd+flux2-multi-tenancy/clusters/production/tenants.yaml",
        "Kustomization",
        "tenants",
        ALLOW,
    ),
    (
        "fluxcd+flux2-multi-tenancy/clusters/staging/infrastructure.yaml",
        "Kustomization",
        "kyverno",
        ALLOW,
    ),
    (
        "fluxcd+flux2-multi-tenancy/clusters/staging/infrastructure.yaml",
        "Kustomization",
        "kyverno-policies",
        ALLOW,
    ),
    (
        "fluxcd+flux2-multi-tenancy/clusters/staging/tenants.yaml",
        "Kustomization",
        "tenants",
        ALLOW,
    ),
    (
        "fluxcd+flux2-multi-tenancy/infrastructure/kyverno/sync.yaml",
        "Kustomization",
        "kyverno-controller",
        ALLOW,
    ),
    (
        "fluxcd+flux2-multi-tenancy/tenants/base/dev-team/sync.yaml",
        "Kustomization",
        "dev-team",
        ALLOW,
    ),
    // Patches of the base above: alone they lack its serviceAccountName.
    (
        "fluxcd+flux2-multi-tenancy/tenants/production/dev-team-patch.yaml",
        "Kustomization",
        "dev-team",
        NO_ACCOUNT,
    ),
    (
        "fluxcd+flux2-multi-tenancy/tenants/staging/dev-team-patch.yaml",
        "Kustomization",
        "dev-team",
        NO_ACCOUNT,
    ),
    (
        "stefanprodan+flux-local-dev/kubernetes/apps/podinfo.yaml",
        "HelmRelease",
        "podinfo",
        ALLOW,
    ),
    (
        "stefanprodan+flux-local-dev/kubernetes/clusters/local/apps.yaml",
        "Kustomization",
        "apps-sync",
        ALLOW,
    ),
    (
        "stefanprodan+flux-local-dev/kubernetes/clusters/local/flux-system/cluster-sync.yaml",
        "Kustomization",
        "cluster-sync",
        ALLOW,
    ),
    (
        "stefanprodan+flux-local-dev/kubernetes/clusters/local/flux-system/flux-sync.yaml",
        "Kustomization",
        "flux-sync",
        ALLOW,
    ),
    (
        "stefanprodan+flux-local-dev/kubernetes/clusters/local/infra.yaml",
        "Kustomization",
        "infra-controllers",
        ALLOW,
    ),
    (
        "stefanprodan+flux-local-dev/kubernetes/clusters/local/infra.yaml",
        "Kustomization",
        "infra-config",
        ALLOW,
    ),
    (
        "stefanprodan+flux-local-dev/kubernetes/infra/config/flux-monitoring.yaml",
        "Kustomization",
        "flux-monitoring",
        ALLOW,
    ),
    // sourceRef.namespace: its own (cert-manager, ingress-nginx).
    (
        "stefanprodan+flux-local-dev/kubernetes/infra/controllers/cert-manager.yaml",
        "HelmRelease",
        "cert-manager",
        NO_ACCOUNT,
    ),
    (
        "stefanprodan+flux-local-dev/kubernetes/infra/controllers/ingress-nginx.yaml",
        "HelmRelease",
        "ingress-nginx",
        NO_ACCOUNT,
    ),
    (
        "stefanprodan+flux-local-dev/kubernetes/infra/controllers/metrics-server.yaml",
        "HelmRelease",
        "metrics-server",
        NO_ACCOUNT,
    ),
    (
        "stefanprodan+flux-local-dev/kubernetes/infra/controllers/prometheus-operator.yaml",
        "HelmRelease",
        "kube-prometheus-stack",
        NO_ACCOUNT,
    ),
    (
        "stefanprodan+flux-local-dev/kubernetes/infra/controllers/weave-gitops.yaml",
        "HelmRelease",
        "weave-gitops",
        ALLOW,
    ),
];

/// Every Flux Kustomization and HelmRelease in the corpus's `flux/` folder (kustomize's own
/// `kustomization.yaml` files are another API group), found through INDEX.tsv.
fn corpus_objects() -> Vec<(String, Value)> {
    let index = std::fs::read_to_string(format!("{CORPUS}/INDEX.tsv")).expect("corpus INDEX.tsv");
    let mut out = Vec::new();
    for row in index.lines().skip(1) {
        let columns: Vec<&str> = row.split('\t').collect();
        let (path, objects) = (columns[0], columns.get(2).copied().unwrap_or(""));
        let Some(relative) = path.strip_prefix("flux/") else {
            continue;
        };
        if !objects.contains("kustomize.toolkit.fluxcd.io/")
            && !objects.contains("helm.toolkit.fluxcd.io/")
        {
            continue;
        }
        let text = std::fs::read_to_string(format!("{CORPUS}/{path}")).expect("corpus file");
        for document in serde_yaml_ng::Deserializer::from_str(&text) {
            let value = Value::deserialize(document).expect("corpus YAML parses");
            let api_version = value["apiVersion"].as_str().unwrap_or("");
            if api_version.starts_with("kustomize.toolkit.fluxcd.io/")
                || api_version.starts_with("helm.toolkit.fluxcd.io/")
            {
                out.push((relative.to_string(), value));
            }
        }
    }
    out
}

#[test]
fn every_kustomization_and_helm_release_of_the_corpus_gets_its_hand_checked_decision() {
    let engine = this_policy_only();
    let mut seen = BTreeSet::new();
    for (path, object) in corpus_objects() {
        let kind = object["kind"].as_str().unwrap_or("").to_string();
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let Some(&(_, _, _, decision)) = CORPUS_TABLE
            .iter()
            .find(|(p, k, n, _)| *p == path && *k == kind && *n == name)
        else {
            panic!("no decision listed for {kind} {name} in {path}");
        };
        assert!(
            seen.insert((path.clone(), kind.clone(), name.clone())),
            "{kind} {name} twice in {path}"
        );
        let verdict = validate_with(&engine, &object);
        let context = format!("{kind} {name} in {path}");
        assert!(verdict.evaluated.contains(&POLICY), "{context}: not judged");
        assert_decision(&context, &verdict, decision);
    }
    assert_eq!(
        seen.len(),
        CORPUS_TABLE.len(),
        "the table lists objects the corpus no longer has"
    );
}

// ---------------------------------------------------------------------------------------
// Through the HTTPS server

#[tokio::test]
async fn each_case_gets_its_answer_over_https() {
    let server = TestServer::start_with(ServerSetup {
        view: Arc::new(chart_repositories()),
        ..ServerSetup::default()
    })
    .await;
    let cases: Vec<(&str, Value, Option<&str>)> = vec![
        ("tenant Kustomization", kustomization("team-a"), None),
        ("tenant HelmRelease", helm_release("team-a"), None),
        (
            "platform Kustomization without account",
            without(kustomization("flux-system"), "/spec/serviceAccountName"),
            None,
        ),
        (
            "no account",
            without(kustomization("team-a"), "/spec/serviceAccountName"),
            Some("has no spec.serviceAccountName"),
        ),
        (
            "cross-namespace source",
            with(
                kustomization("team-a"),
                "/spec/sourceRef/namespace",
                json!("flux-system"),
            ),
            Some("spec.sourceRef.namespace is flux-system"),
        ),
        (
            "cross-namespace chart",
            with(
                helm_release("team-a"),
                "/spec/chart/spec/sourceRef/namespace",
                json!("charts"),
            ),
            Some("spec.chart.spec.sourceRef.namespace is charts"),
        ),
        (
            "kubeConfig",
            with(
                helm_release("team-a"),
                "/spec/kubeConfig",
                json!({"secretRef": {"name": "remote"}}),
            ),
            Some("spec.kubeConfig (Secret remote)"),
        ),
    ];
    let mut client = server.client(false).await;
    for (i, (name, object, denial)) in cases.into_iter().enumerate() {
        let body = common::review_of(&object, "CREATE", &format!("u-{i}"));
        let answer = client
            .request("POST", "/validate", Some("application/json"), body)
            .await
            .expect("response")
            .json();
        let response = &answer["response"];
        match denial {
            None => assert_eq!(response["allowed"], true, "{name}: {answer}"),
            Some(phrase) => {
                assert_eq!(response["allowed"], false, "{name}: {answer}");
                assert_eq!(response["status"]["code"], 403);
                let message = response["status"]["message"].as_str().unwrap_or("");
                assert!(
                    message.starts_with("[tenant-lockdown] "),
                    "{name}: {message}"
                );
                assert!(
                    message.contains(phrase),
                    "{name}: {phrase:?} not in {message}"
                );
            }
        }
    }
    // The Flux controllers are never blocked: an unlocked one is allowed with a warning.
    let answer = server
        .post(
            "/validate",
            common::review_of(&controller("helm-controller", &[]), "CREATE", "u-ctl"),
        )
        .await
        .json();
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    let warnings = answer["response"]["warnings"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        warnings.iter().any(|w| w.as_str().is_some_and(
            |w| w.starts_with("[tenant-lockdown] Deployment flux-system/helm-controller")
        )),
        "{answer}"
    );
}
