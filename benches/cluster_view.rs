//! Cluster-view lookups and the reviews that use them, with 0, 10k and 100k RBAC objects (and
//! a tenth as many workloads) in the view: every lookup is indexed, so the figures should not
//! grow with the cluster. Figures: docs/BENCHMARKS.md.

mod support;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use fluxgate::admission;
use fluxgate::cluster::{ClusterView, MemoryView};
use fluxgate::config::Config;
use fluxgate::engine::{Endpoint, Engine};
use fluxgate::rbac::objects::RoleKey;
use serde_json::json;

const SIZES: &[usize] = &[0, 10_000, 100_000];

fn cluster_view(c: &mut Criterion) {
    let engine = Engine::new(Config::default(), None);
    // The objects every size has (namespace team-0 and its roles exist from 100 objects on),
    // so that lookups hit at every size but the empty one.
    let role_binding = support::review(
        "CREATE",
        &json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "deployers", "namespace": "team-0"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "app-3"},
            "subjects": [{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io",
                "name": "gitlab:project_env:1000:review"}]
        }),
        None,
    );
    let view_binding = support::review(
        "CREATE",
        &json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "readers", "namespace": "team-0"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "gitlab:ci_job"}]
        }),
        None,
    );
    let old_role = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "app-3", "namespace": "team-0"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]
    });
    let mut new_role = old_role.clone();
    new_role["rules"][0]["verbs"] = json!(["get", "list", "watch"]);
    let role_update = support::review("UPDATE", &new_role, Some(&old_role));
    let agent = support::review(
        "CREATE",
        &json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "team-0"},
            "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}
        }),
        None,
    );
    let passing = support::read(support::PASSING_REVIEW);

    let mut group = c.benchmark_group("cluster_view");
    for &size in SIZES {
        let view = support::view(size, size / 10);
        let role_key = RoleKey::Role {
            namespace: Arc::from("team-0"),
            name: Arc::from("app-3"),
        };
        let aggregated_labels: BTreeMap<String, String> = [(
            "rbac.authorization.k8s.io/aggregate-to-view".to_string(),
            "true".to_string(),
        )]
        .into();
        group.bench_with_input(BenchmarkId::new("role", size), &view, |b, view| {
            b.iter(|| view.role(black_box("team-0"), black_box("app-3")))
        });
        group.bench_with_input(BenchmarkId::new("cluster_role", size), &view, |b, view| {
            b.iter(|| view.cluster_role(black_box("operator-0-reader")))
        });
        group.bench_with_input(BenchmarkId::new("bindings_to", size), &view, |b, view| {
            b.iter(|| view.bindings_to(black_box(&role_key)))
        });
        group.bench_with_input(
            BenchmarkId::new("cluster_roles_aggregating", size),
            &view,
            |b, view| b.iter(|| view.cluster_roles_aggregating(black_box(&aggregated_labels))),
        );
        group.bench_with_input(
            BenchmarkId::new("agent_installations", size),
            &view,
            |b, view| b.iter(|| view.agent_installations()),
        );
        group.bench_with_input(
            BenchmarkId::new("namespace_labels", size),
            &view,
            |b, view| b.iter(|| view.namespace_labels(black_box("team-0"))),
        );
        for (name, body) in [
            ("review RoleBinding to a Role", &role_binding),
            ("review RoleBinding to ClusterRole view", &view_binding),
            ("review Role UPDATE (bound roles)", &role_update),
            ("review Deployment", &agent),
            ("review OCIRepository 4 KiB", &passing),
        ] {
            group.bench_with_input(BenchmarkId::new(name, size), &view, |b, view| {
                b.iter(|| review(&engine, view, black_box(body)))
            });
        }
    }
    group.finish();
}

fn review(engine: &Engine, view: &MemoryView, body: &[u8]) -> bool {
    let request = admission::decode(body).expect("decodes");
    engine.review(Endpoint::Validate, &request, view).0.allowed
}

criterion_group!(benches, cluster_view);
criterion_main!(benches);
