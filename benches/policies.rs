//! Each policy alone, on an object it admits and one it denies: the evaluation only (the
//! request is decoded once, outside the loop). Figures: docs/BENCHMARKS.md.

mod support;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use fluxgate::admission;
use fluxgate::cluster::MemoryView;
use fluxgate::config::Config;
use fluxgate::engine::AnyPolicy;
use fluxgate::engine::{Endpoint, Engine};
use fluxgate::policy::{
    ci_impersonation, oci_version_pinning, secret_rotation, signed_oci_sources, single_agent,
    tenant_lockdown,
};
use serde_json::{Value, json};

const AGENTK: &str =
    "registry.gitlab.com/gitlab-org/cluster-integration/gitlab-agent/agentk:v17.3.1";

fn agent_deployment(namespace: &str, release: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": format!("{release}-gitlab-agent-v2"), "namespace": namespace,
            "labels": {"app.kubernetes.io/name": "gitlab-agent", "app.kubernetes.io/instance": release,
                "app.kubernetes.io/managed-by": "Helm", "helm.sh/chart": "gitlab-agent-2.6.2"},
            "annotations": {"meta.helm.sh/release-name": release, "meta.helm.sh/release-namespace": namespace}},
        "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "gitlab-agent", "image": AGENTK}]}}}
    })
}

fn web_deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "team-a", "labels": {"app": "web"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "registry.example.com/web:1.2.3"}]}}}
    })
}

fn role_binding(role_kind: &str, role: &str, group: &str) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "deployers", "namespace": "review"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
        "subjects": [{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": group}]
    })
}

fn cluster_role_binding(role: &str, group: &str) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "ci-jobs"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": group}]
    })
}

/// Times one policy's verdict on `body` and checks, once, that it is the expected one.
fn bench_case(
    c: &mut Criterion,
    name: &str,
    policy: Box<dyn AnyPolicy>,
    view: &MemoryView,
    body: &[u8],
    allowed: bool,
) {
    let engine = Engine::with_policies(vec![policy], Config::default(), None);
    let request = admission::decode(body).expect("decodes");
    let (verdict, _) = engine.review(Endpoint::Validate, &request, view);
    assert_eq!(verdict.allowed, allowed, "{name}: {verdict:?}");
    assert_eq!(
        verdict.evaluated.len(),
        1,
        "{name}: the policy must judge it"
    );
    c.bench_function(name, |b| {
        b.iter(|| {
            engine
                .review(Endpoint::Validate, black_box(&request), view)
                .0
                .allowed
        })
    });
}

fn policies(c: &mut Criterion) {
    let empty = MemoryView::new();

    let passing = support::read(support::PASSING_REVIEW);
    let unsigned = support::read(
        "tests/fixtures/admission/deny-ocirepo-create__validate-OCIRepository-CREATE.json",
    );
    bench_case(
        c,
        "signed-oci-sources/pass (OCIRepository keyless, 4 KiB)",
        Box::new(signed_oci_sources::SignedOciSources::default()),
        &empty,
        &passing,
        true,
    );
    bench_case(
        c,
        "signed-oci-sources/fail (OCIRepository without verify)",
        Box::new(signed_oci_sources::SignedOciSources::default()),
        &empty,
        &unsigned,
        false,
    );

    let with_agent = MemoryView::new();
    with_agent
        .apply(&agent_deployment("gitlab-agent", "gitlab-agent"))
        .expect("applies");
    bench_case(
        c,
        "single-agent/pass (ordinary Deployment)",
        Box::new(single_agent::SingleAgent),
        &with_agent,
        &support::review("CREATE", &web_deployment(), None),
        true,
    );
    let same = agent_deployment("gitlab-agent", "gitlab-agent");
    let mut scaled = same.clone();
    scaled["spec"]["replicas"] = json!(3);
    bench_case(
        c,
        "single-agent/pass (the installed agent scaled)",
        Box::new(single_agent::SingleAgent),
        &with_agent,
        &support::review("UPDATE", &scaled, Some(&same)),
        true,
    );
    bench_case(
        c,
        "single-agent/fail (a second agent installation)",
        Box::new(single_agent::SingleAgent),
        &with_agent,
        &support::review("CREATE", &agent_deployment("agent-two", "second"), None),
        false,
    );

    let deployer = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "deployer", "namespace": "review"},
        "rules": [{"apiGroups": ["apps"], "resources": ["deployments"],
            "verbs": ["get", "list", "watch", "create", "update", "patch"]}]
    });
    let rbac = MemoryView::new();
    rbac.apply(&deployer).expect("applies");
    bench_case(
        c,
        "ci-impersonation/pass (RoleBinding of a narrow Role to a project environment)",
        Box::new(ci_impersonation::CiImpersonation),
        &rbac,
        &support::review(
            "CREATE",
            &role_binding("Role", "deployer", "gitlab:project_env:42:review"),
            None,
        ),
        true,
    );
    bench_case(
        c,
        "ci-impersonation/fail (cluster-admin for every CI job)",
        Box::new(ci_impersonation::CiImpersonation),
        &rbac,
        &support::review(
            "CREATE",
            &cluster_role_binding("cluster-admin", "gitlab:ci_job"),
            None,
        ),
        false,
    );

    let oci = |reference: Value| {
        json!({
            "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "OCIRepository",
            "metadata": {"name": "app", "namespace": "team-a"},
            "spec": {"interval": "5m", "url": "oci://registry.gitlab.com/acme/app",
                "ref": reference, "secretRef": {"name": "registry-pull"}}
        })
    };
    for (name, reference, allowed) in [
        (
            "oci-version-pinning/pass (semver within one major)",
            json!({"semver": ">=2.4.0 <3.0.0"}),
            true,
        ),
        (
            "oci-version-pinning/pass (release tag)",
            json!({"tag": "2.4.1"}),
            true,
        ),
        (
            "oci-version-pinning/fail (moving tag)",
            json!({"tag": "latest"}),
            false,
        ),
        (
            "oci-version-pinning/pass (commit SHA tag)",
            json!({"tag": "3f2a1b9c"}),
            true,
        ),
        // The most work a range can cost: 4 KiB of hyphen ranges, each rewritten by a search
        // of the whole text (Masterminds' rewriting), judged anew on every review since a
        // range that crosses majors is never remembered.
        (
            "oci-version-pinning/fail (4 KiB of hyphen ranges, the worst case)",
            json!({"semver": worst_case_range()}),
            false,
        ),
    ] {
        bench_case(
            c,
            name,
            Box::new(oci_version_pinning::OciVersionPinning::default()),
            &empty,
            &support::review("CREATE", &oci(reference), None),
            allowed,
        );
    }

    let kustomization = |source_namespace: &str| {
        json!({
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
            "metadata": {"name": "apps", "namespace": "team-a"},
            "spec": {"interval": "10m", "path": "./deploy", "prune": true,
                "serviceAccountName": "team-a-reconciler",
                "sourceRef": {"kind": "OCIRepository", "name": "app", "namespace": source_namespace}}
        })
    };
    bench_case(
        c,
        "tenant-lockdown/pass (Kustomization with its own service account and source)",
        Box::new(tenant_lockdown::TenantLockdown),
        &empty,
        &support::review("CREATE", &kustomization("team-a"), None),
        true,
    );
    bench_case(
        c,
        "tenant-lockdown/fail (a source in another namespace)",
        Box::new(tenant_lockdown::TenantLockdown),
        &empty,
        &support::review("CREATE", &kustomization("flux-system"), None),
        false,
    );

    // secret-rotation only ever warns: the "fail" case is a warning about an old Secret.
    let secrets = MemoryView::new();
    secrets
        .apply(&json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "registry-pull", "namespace": "team-a",
                "creationTimestamp": "2020-01-01T00:00:00Z"},
            "type": "kubernetes.io/dockerconfigjson"
        }))
        .expect("applies");
    let source = oci(json!({"semver": ">=2.4.0 <3.0.0"}));
    bench_case(
        c,
        "secret-rotation/pass (no Secret known)",
        Box::new(secret_rotation::SecretRotation),
        &empty,
        &support::review("CREATE", &source, None),
        true,
    );
    bench_case(
        c,
        "secret-rotation/warn (the pull Secret is years old)",
        Box::new(secret_rotation::SecretRotation),
        &secrets,
        &support::review("CREATE", &source, None),
        true,
    );
}

criterion_group!(benches, policies);
criterion_main!(benches);

/// As many distinct hyphen ranges as fit in the longest range fluxgate reads: each rewriting
/// searches the text up to its own place (the ranges differ, so no earlier copy stops it).
fn worst_case_range() -> String {
    let mut text = String::new();
    for i in 0.. {
        let range = format!("{i} - {i} ");
        if text.len() + range.len() > fluxgate::flux::semver::MAX_LEN {
            break;
        }
        text.push_str(&range);
    }
    text
}
