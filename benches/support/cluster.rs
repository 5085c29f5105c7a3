//! A synthetic cluster for the benchmarks: RBAC objects and workloads shaped like a
//! multi-tenant cluster's, generated deterministically so that every run measures the same
//! view. Used by the criterion benches and by `examples/bench_data.rs`, which writes it to
//! files for `fluxgate serve --cluster-state` in `scripts/bench-load.sh`.
//!
//! For `rbac` objects: one Namespace per 100 RBAC objects; per namespace 40 Roles and 55
//! RoleBindings (subjects: the tenant's ServiceAccount, a GitLab project environment, a user);
//! the other 5 of each 100 are 3 ClusterRoles (one in 50 aggregated into `view`) and 2
//! ClusterRoleBindings. Workloads are Deployments of ordinary images, plus one GitLab agent
//! installation (its Deployment), which is all the view keeps of workloads.

#![allow(dead_code)]

use serde_json::{Value, json};

/// Namespaced RBAC objects per namespace (40 Roles + 55 RoleBindings).
const PER_NAMESPACE: usize = 95;
const ROLES_PER_NAMESPACE: usize = 40;
/// Out of every 100 RBAC objects, 95 are namespaced and 5 cluster-scoped.
const BLOCK: usize = 100;

const AGENTK: &str =
    "registry.gitlab.com/gitlab-org/cluster-integration/gitlab-agent/agentk:v17.3.1";

/// `rbac` RBAC objects (and their namespaces) and `workloads` Deployments, in apply order.
pub fn objects(rbac: usize, workloads: usize) -> impl Iterator<Item = Value> {
    let namespaces = rbac.div_ceil(BLOCK);
    let namespaced = (0..rbac).map(rbac_object);
    let ns = (0..namespaces).map(namespace);
    let deployments = (0..workloads).map(move |i| deployment(i, namespaces.max(1)));
    let agent = (workloads > 0).then(agent_deployment);
    ns.chain(namespaced).chain(deployments).chain(agent)
}

pub fn namespace_name(i: usize) -> String {
    format!("team-{i}")
}

fn namespace(i: usize) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": namespace_name(i), "labels": {
            "kubernetes.io/metadata.name": namespace_name(i),
            "toolkit.fluxcd.io/tenant": format!("tenant-{}", i % 50)
        }}
    })
}

/// The `i`th RBAC object: blocks of 100, the first 95 in namespace `i / 100`.
fn rbac_object(i: usize) -> Value {
    let block = i / BLOCK;
    let at = i % BLOCK;
    let ns = namespace_name(block);
    if at < ROLES_PER_NAMESPACE {
        role(&ns, at)
    } else if at < PER_NAMESPACE {
        role_binding(&ns, block, at - ROLES_PER_NAMESPACE)
    } else if at < PER_NAMESPACE + 3 {
        cluster_role(block * 3 + (at - PER_NAMESPACE))
    } else {
        cluster_role_binding(block * 2 + (at - PER_NAMESPACE - 3))
    }
}

fn role(ns: &str, r: usize) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": format!("app-{r}"), "namespace": ns,
            "labels": {"app.kubernetes.io/managed-by": "flux"}},
        "rules": [
            {"apiGroups": [""], "resources": ["configmaps", "services"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "watch", "patch"]},
            {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}
        ]
    })
}

fn role_binding(ns: &str, block: usize, b: usize) -> Value {
    let role = b % ROLES_PER_NAMESPACE;
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": format!("app-{b}"), "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": format!("app-{role}")},
        "subjects": [
            {"kind": "ServiceAccount", "name": format!("app-{b}"), "namespace": ns},
            {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io",
             "name": format!("gitlab:project_env:{}:review", 1000 + block)},
            {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": format!("dev-{}@example.com", b % 7)}
        ]
    })
}

fn cluster_role(c: usize) -> Value {
    let mut labels = json!({"app.kubernetes.io/part-of": format!("operator-{}", c % 40)});
    if c.is_multiple_of(50) {
        labels["rbac.authorization.k8s.io/aggregate-to-view"] = json!("true");
    }
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": format!("operator-{c}-reader"), "labels": labels},
        "rules": [
            {"apiGroups": [format!("operator-{c}.example.com")], "resources": ["widgets", "widgets/status"],
             "verbs": ["get", "list", "watch"]}
        ]
    })
}

fn cluster_role_binding(c: usize) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": format!("operator-{c}-reader")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
            "name": format!("operator-{}-reader", c * 3 / 2)},
        "subjects": [{"kind": "ServiceAccount", "name": format!("operator-{c}"), "namespace": "operators"}]
    })
}

fn deployment(i: usize, namespaces: usize) -> Value {
    let ns = namespace_name(i % namespaces);
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": format!("web-{i}"), "namespace": ns, "uid": format!("deploy-{i}"),
            "labels": {"app.kubernetes.io/name": format!("web-{i}")}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app.kubernetes.io/name": format!("web-{i}")}},
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": format!("web-{i}")}},
                "spec": {"containers": [{"name": "web", "image": format!("registry.example.com/web:1.{i}"),
                    "ports": [{"containerPort": 8080}]}]}
            }
        }
    })
}

/// The cluster's GitLab agent, as the Helm chart installs it.
fn agent_deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "gitlab-agent-v2", "namespace": "gitlab-agent", "uid": "agent-deploy",
            "labels": {"app.kubernetes.io/name": "gitlab-agent", "app.kubernetes.io/instance": "gitlab-agent",
                "app.kubernetes.io/managed-by": "Helm", "helm.sh/chart": "gitlab-agent-2.6.2"},
            "annotations": {"meta.helm.sh/release-name": "gitlab-agent", "meta.helm.sh/release-namespace": "gitlab-agent"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app.kubernetes.io/name": "gitlab-agent", "app.kubernetes.io/instance": "gitlab-agent"}},
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": "gitlab-agent", "app.kubernetes.io/instance": "gitlab-agent"}},
                "spec": {"serviceAccountName": "gitlab-agent", "containers": [{"name": "gitlab-agent", "image": AGENTK,
                    "args": ["--token-file=/etc/agentk/secrets/token", "--kas-address=wss://kas.gitlab.com"]}]}
            }
        }
    })
}
