//! The cluster of the scale benchmark (`scripts/bench-scale.sh`), created in a real API server,
//! and the reviews the benchmark sends.
//!
//!     KUBECONFIG=... scale_cluster load [ROLEBINDINGS] [CLUSTERROLES] [WORKLOADS]
//!     scale_cluster reviews OUT_DIR
//!
//! `load` creates, with 64 creates in flight: one Namespace per 100 RoleBindings
//! (`scale-<n>`), CLUSTERROLES ClusterRoles (`scale-reader-<c>`, narrow reads of one API
//! group each; one in 50 aggregated into `view`), ROLEBINDINGS RoleBindings (each binds one
//! of the ClusterRoles to a ServiceAccount, a GitLab project environment and a user, as a
//! tenant's deploy pipeline would), WORKLOADS Deployments of ordinary images, and the GitLab
//! agent's Deployment. Defaults: 100,000, 2,000 and 10,000, the figures. Objects that
//! exist already are left as they are, so that a second run only fills in what is missing.
//!
//! `reviews` writes `rolebinding-review.json`: a RoleBinding CREATE whose ClusterRole the
//! loaded cluster has (the cluster view is consulted; the API server must not be).

use std::time::Instant;

use futures_util::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use serde_json::{Value, json};

const IN_FLIGHT: usize = 64;
const BINDINGS_PER_NAMESPACE: usize = 100;

const AGENTK: &str =
    "registry.gitlab.com/gitlab-org/cluster-integration/gitlab-agent/agentk:v17.3.1";

fn namespace(i: usize) -> String {
    format!("scale-{i}")
}

fn cluster_role(c: usize) -> Value {
    let mut labels = json!({"app.kubernetes.io/part-of": format!("operator-{}", c % 40)});
    if c.is_multiple_of(50) {
        labels["rbac.authorization.k8s.io/aggregate-to-view"] = json!("true");
    }
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": format!("scale-reader-{c}"), "labels": labels},
        "rules": [
            {"apiGroups": [format!("operator-{c}.example.com")], "resources": ["widgets", "widgets/status"],
             "verbs": ["get", "list", "watch"]},
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]}
        ]
    })
}

fn role_binding(b: usize, cluster_roles: usize) -> Value {
    let block = b / BINDINGS_PER_NAMESPACE;
    let ns = namespace(block);
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": format!("app-{}", b % BINDINGS_PER_NAMESPACE), "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
            "name": format!("scale-reader-{}", b % cluster_roles.max(1))},
        "subjects": [
            {"kind": "ServiceAccount", "name": format!("app-{}", b % 10), "namespace": ns},
            {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io",
             "name": format!("gitlab:project_env:{}:review", 1000 + block)},
            {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": format!("dev-{}@example.com", b % 7)}
        ]
    })
}

fn deployment(i: usize, namespaces: usize) -> Value {
    let ns = namespace(i % namespaces.max(1));
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": format!("web-{i}"), "namespace": ns,
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

/// The cluster's GitLab agent, as its Helm chart installs it.
fn agent_deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "gitlab-agent-v2", "namespace": "gitlab-agent",
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

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

/// Creates `objects` of one kind, `IN_FLIGHT` at a time; prints how many and how fast.
async fn create_all(
    client: &kube::Client,
    what: &str,
    resource: &ApiResource,
    objects: impl Iterator<Item = Value>,
) -> Result<(), String> {
    let started = Instant::now();
    let results: Vec<Result<bool, String>> = futures_util::stream::iter(objects)
        .map(|object| {
            let client = client.clone();
            async move {
                let namespace = object["metadata"]["namespace"].as_str().map(str::to_string);
                let api: Api<DynamicObject> = match &namespace {
                    Some(ns) => Api::namespaced_with(client, ns, resource),
                    None => Api::all_with(client, resource),
                };
                let object: DynamicObject =
                    serde_json::from_value(object).map_err(|e| e.to_string())?;
                match api.create(&PostParams::default(), &object).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
                    Err(e) => Err(format!("{what}: {e}")),
                }
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let created = results.iter().filter(|r| matches!(r, Ok(true))).count();
    let existed = results.iter().filter(|r| matches!(r, Ok(false))).count();
    if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
        return Err(e.clone());
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{what}: {created} created, {existed} there already, {seconds:.1} s ({:.0}/s)",
        created as f64 / seconds.max(0.001)
    );
    Ok(())
}

async fn load(bindings: usize, cluster_roles: usize, workloads: usize) -> Result<(), String> {
    let config = kube::Config::infer().await.map_err(|e| e.to_string())?;
    let client = kube::Client::try_from(config).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let namespaces = bindings.div_ceil(BINDINGS_PER_NAMESPACE).max(1);
    let ns_resource = resource("", "v1", "Namespace", "namespaces");
    let names = (0..namespaces)
        .map(namespace)
        .chain(std::iter::once("gitlab-agent".to_string()));
    create_all(
        &client,
        "Namespaces",
        &ns_resource,
        names.map(
            |name| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
        ),
    )
    .await?;
    create_all(
        &client,
        "ClusterRoles",
        &resource(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRole",
            "clusterroles",
        ),
        (0..cluster_roles).map(cluster_role),
    )
    .await?;
    create_all(
        &client,
        "RoleBindings",
        &resource(
            "rbac.authorization.k8s.io",
            "v1",
            "RoleBinding",
            "rolebindings",
        ),
        (0..bindings).map(|b| role_binding(b, cluster_roles)),
    )
    .await?;
    create_all(
        &client,
        "Deployments",
        &resource("apps", "v1", "Deployment", "deployments"),
        (0..workloads)
            .map(|i| deployment(i, namespaces))
            .chain(std::iter::once(agent_deployment())),
    )
    .await?;
    println!("loaded in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// An AdmissionReview as the API server sends it for creating `object`.
fn review(object: &Value) -> Value {
    let (group, version) = object["apiVersion"]
        .as_str()
        .and_then(|v| v.rsplit_once('/'))
        .unwrap_or(("", "v1"));
    let kind = object["kind"].as_str().unwrap_or("");
    json!({
        "kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": "6f1f3a52-3f7e-4d0e-a1b5-2f5d2e8c9b10",
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": format!("{}s", kind.to_lowercase())},
            "name": object["metadata"]["name"],
            "namespace": object["metadata"]["namespace"],
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:flux-system:kustomize-controller",
                "groups": ["system:serviceaccounts", "system:serviceaccounts:flux-system", "system:authenticated"]},
            "object": object,
            "oldObject": null,
            "dryRun": false
        }
    })
}

fn reviews(out: &std::path::Path) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    // A new binding in a loaded namespace, of a ClusterRole the cluster has: judged against
    // the role's rules, which the view holds.
    let mut binding = role_binding(4_242, 2_000);
    binding["metadata"]["name"] = json!("deployers-new");
    let path = out.join("rolebinding-review.json");
    let body = serde_json::to_vec(&review(&binding)).map_err(|e| e.to_string())?;
    std::fs::write(&path, body).map_err(|e| format!("{}: {e}", path.display()))?;
    println!("{}", path.display());
    Ok(())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize, default: usize| {
        args.get(i)
            .map(|a| a.parse().unwrap_or_else(|e| panic!("{a}: {e}")))
            .unwrap_or(default)
    };
    let result = match args.first().map(String::as_str) {
        Some("load") => load(number(1, 100_000), number(2, 2_000), number(3, 10_000)).await,
        Some("reviews") => match args.get(1) {
            Some(out) => reviews(std::path::Path::new(out)),
            None => Err("reviews OUT_DIR".into()),
        },
        _ => Err(
            "usage: scale_cluster load [ROLEBINDINGS] [CLUSTERROLES] [WORKLOADS] | reviews OUT_DIR"
                .into(),
        ),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}
