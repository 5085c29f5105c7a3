//! The production cluster view and the audit scan against an API server: a small fake that
//! speaks the Kubernetes REST API over plain HTTP (discovery, list, watch, get, apply, events),
//! holding objects in memory. It checks the paths, verbs and payloads fluxgate sends, which a
//! unit test of the in-memory view cannot, and it makes the faults a real API server cannot be
//! made to give on cue (a watch that lags behind, an answer slower than the deadline).
//! tests/envtest_cluster.rs runs the view against a real kube-apiserver.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use fluxgate::audit::cluster::{AuditOptions, ClusterAuditor};
use fluxgate::cluster::kube::KubeView;
use fluxgate::cluster::{ClusterView, Lookup, ObjectKey};
use fluxgate::config::Config;
use fluxgate::engine::Engine;
use fluxgate::metrics::Metrics;
use serde_json::{Value, json};

mod common;

/// A kind the fake serves.
struct Served {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
}

const SERVED: &[Served] = &[
    Served {
        group: "",
        version: "v1",
        kind: "Namespace",
        plural: "namespaces",
        namespaced: false,
    },
    Served {
        group: "",
        version: "v1",
        kind: "Pod",
        plural: "pods",
        namespaced: true,
    },
    Served {
        group: "apps",
        version: "v1",
        kind: "Deployment",
        plural: "deployments",
        namespaced: true,
    },
    Served {
        group: "apps",
        version: "v1",
        kind: "StatefulSet",
        plural: "statefulsets",
        namespaced: true,
    },
    Served {
        group: "apps",
        version: "v1",
        kind: "DaemonSet",
        plural: "daemonsets",
        namespaced: true,
    },
    Served {
        group: "apps",
        version: "v1",
        kind: "ReplicaSet",
        plural: "replicasets",
        namespaced: true,
    },
    Served {
        group: "batch",
        version: "v1",
        kind: "Job",
        plural: "jobs",
        namespaced: true,
    },
    Served {
        group: "batch",
        version: "v1",
        kind: "CronJob",
        plural: "cronjobs",
        namespaced: true,
    },
    Served {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        kind: "Role",
        plural: "roles",
        namespaced: true,
    },
    Served {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        kind: "ClusterRole",
        plural: "clusterroles",
        namespaced: false,
    },
    Served {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        kind: "RoleBinding",
        plural: "rolebindings",
        namespaced: true,
    },
    Served {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        kind: "ClusterRoleBinding",
        plural: "clusterrolebindings",
        namespaced: false,
    },
    Served {
        group: "source.toolkit.fluxcd.io",
        version: "v1",
        kind: "OCIRepository",
        plural: "ocirepositories",
        namespaced: true,
    },
    Served {
        group: "wgpolicyk8s.io",
        version: "v1alpha2",
        kind: "PolicyReport",
        plural: "policyreports",
        namespaced: true,
    },
    Served {
        group: "wgpolicyk8s.io",
        version: "v1alpha2",
        kind: "ClusterPolicyReport",
        plural: "clusterpolicyreports",
        namespaced: false,
    },
    Served {
        group: "events.k8s.io",
        version: "v1",
        kind: "Event",
        plural: "events",
        namespaced: true,
    },
];

#[derive(Default)]
struct Fake {
    /// (plural, namespace, name) -> object
    objects: BTreeMap<(String, String, String), Value>,
    /// Every request, as "METHOD path?query".
    requests: Vec<String>,
    /// Resources whose list answers 403, as for an account without the permission.
    forbidden: Vec<&'static str>,
    /// How long a GET of one object takes, as on an overloaded API server.
    get_delay: Duration,
}

type Shared = Arc<Mutex<Fake>>;

fn json_response(status: StatusCode, body: Value) -> Response {
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn not_found() -> Response {
    json_response(
        StatusCode::NOT_FOUND,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}),
    )
}

fn resource_list(group: &str, version: &str) -> Value {
    let resources: Vec<Value> = SERVED
        .iter()
        .filter(|s| s.group == group && s.version == version)
        .map(|s| {
            json!({"name": s.plural, "singularName": "", "namespaced": s.namespaced, "kind": s.kind,
                   "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]})
        })
        .collect();
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources})
}

fn api_groups() -> Value {
    let mut groups: BTreeMap<&str, &str> = BTreeMap::new();
    for s in SERVED.iter().filter(|s| !s.group.is_empty()) {
        groups.insert(s.group, s.version);
    }
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(g, v)| {
            let gv = json!({"groupVersion": format!("{g}/{v}"), "version": v});
            json!({"name": g, "versions": [gv.clone()], "preferredVersion": gv})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// Splits a resource path into (served kind, namespace, name).
fn route(path: &str) -> Option<(&'static Served, Option<String>, Option<String>)> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
        _ => (None, rest),
    };
    let (plural, name) = match rest {
        [plural] => (*plural, None),
        [plural, name] => (*plural, Some(name.to_string())),
        _ => return None,
    };
    let served = SERVED
        .iter()
        .find(|s| s.group == group && s.version == version && s.plural == plural)?;
    Some((served, namespace, name))
}

async fn handle(State(fake): State<Shared>, request: Request) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    let body: Bytes = axum::body::to_bytes(request.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    fake.lock()
        .expect("lock")
        .requests
        .push(format!("{method} {path}?{query}"));

    match path.as_str() {
        "/api" => {
            return json_response(
                StatusCode::OK,
                json!({"kind": "APIVersions", "versions": ["v1"]}),
            );
        }
        "/apis" => return json_response(StatusCode::OK, api_groups()),
        _ => {}
    }
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["api", v] => return json_response(StatusCode::OK, resource_list("", v)),
        ["apis", g, v] => return json_response(StatusCode::OK, resource_list(g, v)),
        _ => {}
    }
    let Some((served, namespace, name)) = route(&path) else {
        return not_found();
    };
    let api_version = if served.group.is_empty() {
        served.version.to_string()
    } else {
        format!("{}/{}", served.group, served.version)
    };
    match (method, name) {
        (Method::GET, None) if query.contains("watch=true") || query.contains("watch=1") => {
            // A watch that stays open with no events: the view is what the list said.
            let stream = futures_util::stream::pending::<Result<Bytes, std::io::Error>>();
            (
                StatusCode::OK,
                [("content-type", "application/json")],
                Body::from_stream(stream),
            )
                .into_response()
        }
        (Method::GET, None)
            if fake
                .lock()
                .expect("lock")
                .forbidden
                .contains(&served.plural) =>
        {
            json_response(
                StatusCode::FORBIDDEN,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403,
                       "message": format!("{} is forbidden", served.plural)}),
            )
        }
        (Method::GET, None) => {
            let items: Vec<Value> = fake
                .lock()
                .expect("lock")
                .objects
                .iter()
                .filter(|((plural, ns, _), _)| {
                    plural == served.plural && namespace.as_ref().is_none_or(|n| n == ns)
                })
                .map(|(_, o)| {
                    // Like the API server, list items carry no apiVersion or kind.
                    let mut o = o.clone();
                    if let Some(map) = o.as_object_mut() {
                        map.remove("apiVersion");
                        map.remove("kind");
                    }
                    o
                })
                .collect();
            json_response(
                StatusCode::OK,
                json!({"kind": format!("{}List", served.kind), "apiVersion": api_version,
                       "metadata": {"resourceVersion": "100"}, "items": items}),
            )
        }
        (Method::GET, Some(name)) => {
            let delay = fake.lock().expect("lock").get_delay;
            tokio::time::sleep(delay).await;
            let key = (
                served.plural.to_string(),
                namespace.unwrap_or_default(),
                name,
            );
            match fake.lock().expect("lock").objects.get(&key) {
                Some(object) => json_response(StatusCode::OK, object.clone()),
                None => not_found(),
            }
        }
        (Method::PATCH, Some(name)) | (Method::POST, Some(name)) => {
            let object: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let key = (
                served.plural.to_string(),
                namespace.unwrap_or_default(),
                name,
            );
            fake.lock()
                .expect("lock")
                .objects
                .insert(key, object.clone());
            json_response(StatusCode::OK, object)
        }
        (Method::POST, None) => {
            let object: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let name = object["metadata"]["name"]
                .as_str()
                .unwrap_or("generated")
                .to_string();
            let key = (
                served.plural.to_string(),
                namespace.unwrap_or_default(),
                name,
            );
            fake.lock()
                .expect("lock")
                .objects
                .insert(key, object.clone());
            json_response(StatusCode::CREATED, object)
        }
        _ => not_found(),
    }
}

async fn start_fake(objects: Vec<(&str, Value)>) -> (SocketAddr, Shared) {
    let fake: Shared = Arc::new(Mutex::new(Fake::default()));
    for (plural, object) in objects {
        let ns = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or("")
            .to_string();
        fake.lock()
            .expect("lock")
            .objects
            .insert((plural.to_string(), ns, name), object);
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = Router::new().fallback(handle).with_state(fake.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, fake)
}

fn client(addr: SocketAddr) -> kube::Client {
    let config = kube::Config::new(format!("http://{addr}").parse().expect("url"));
    kube::Client::try_from(config).expect("client")
}

async fn wait_synced(view: &KubeView) {
    for _ in 0..200 {
        if view.synced() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the view never synced");
}

fn agent(namespace: &str, release: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": format!("{release}-v2"), "namespace": namespace, "uid": format!("uid-{release}"),
            "labels": {"app.kubernetes.io/name": "gitlab-agent", "app.kubernetes.io/instance": release}},
        "spec": {"selector": {"matchLabels": {"app": release}}, "template": {
            "metadata": {"labels": {"app": release}},
            "spec": {"containers": [{"name": "agent",
                "image": "registry.gitlab.com/gitlab-org/cluster-integration/gitlab-agent/agentk:v17.3.1"}]}}}
    })
}

#[tokio::test]
async fn a_role_applied_a_moment_ago_is_fetched_on_a_miss() {
    let (addr, fake) = start_fake(vec![]).await;
    let view = KubeView::start(client(addr));
    wait_synced(&view).await;
    assert_eq!(view.cluster_role("ci-deployer"), Lookup::Missing);

    // The role reaches the API server, but not (yet) the watch.
    fake.lock().expect("lock").objects.insert(
        ("clusterroles".into(), String::new(), "ci-deployer".into()),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": {"name": "ci-deployer"},
               "rules": [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "update"]}]}),
    );
    let key = ObjectKey {
        group: "rbac.authorization.k8s.io".into(),
        kind: "ClusterRole".into(),
        namespace: None,
        name: "ci-deployer".into(),
    };
    view.refresh(std::slice::from_ref(&key)).await;
    assert!(matches!(view.cluster_role("ci-deployer"), Lookup::Found(_)));
    assert!(
        fake.lock()
            .expect("lock")
            .requests
            .iter()
            .any(|r| r
                .starts_with("GET /apis/rbac.authorization.k8s.io/v1/clusterroles/ci-deployer"))
    );
}

#[tokio::test]
async fn a_kind_fluxgate_may_not_list_is_reported_and_the_scan_goes_on() {
    let (addr, fake) = start_fake(vec![
        ("deployments", agent("gitlab-agent", "gitlab-agent")),
        (
            "ocirepositories",
            json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "OCIRepository",
                   "metadata": {"name": "app", "namespace": "team-b", "uid": "uid-app"},
                   "spec": {"interval": "5m", "url": "oci://ghcr.io/acme/app", "ref": {"tag": "1.0.0"}}}),
        ),
    ])
    .await;
    fake.lock().expect("lock").forbidden.push("rolebindings");
    let engine = Engine::new(Config::default(), None);
    let view = fluxgate::cluster::MemoryView::new();
    let auditor = ClusterAuditor::new(client(addr), AuditOptions::default());
    let report = auditor
        .run_once(&engine, &view, &Metrics::new())
        .await
        .report;
    assert!(
        report.unreadable.iter().any(|u| u.contains("RoleBinding")),
        "{:?}",
        report.unreadable
    );
    assert!(
        report.findings.iter().any(|f| f.name == "app"),
        "the other kinds are still judged"
    );
}

#[tokio::test]
async fn a_review_that_waits_on_a_slow_api_server_past_the_deadline_gets_a_clear_503() {
    let (addr, fake) = start_fake(vec![]).await;
    let view = KubeView::start(client(addr));
    wait_synced(&view).await;
    // A RoleBinding to a role the watch has not seen makes fluxgate ask the API server,
    // which now takes longer than the evaluation deadline.
    fake.lock().expect("lock").get_delay = Duration::from_secs(3);
    let server = common::TestServer::start_with(common::ServerSetup {
        view: view.clone() as Arc<dyn ClusterView>,
        tweak: |o| o.eval_timeout = Duration::from_millis(300),
        ..common::ServerSetup::default()
    })
    .await;
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "deployers", "namespace": "team-a"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "deployer"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                      "name": "gitlab:project_env:42:production"}]
    });
    let response = server
        .post("/validate", common::review_of(&binding, "CREATE", "slow-1"))
        .await;
    assert_eq!(
        response.status,
        503,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    let error = response.json()["error"].as_str().unwrap_or("").to_string();
    assert!(error.contains("deadline"), "{error}");
}

/// GETs of one object the fake has answered whose path ends with `suffix`.
fn gets_ending(fake: &Shared, suffix: &str) -> usize {
    fake.lock()
        .expect("lock")
        .requests
        .iter()
        .filter(|r| {
            r.starts_with("GET ") && r.split('?').next().is_some_and(|p| p.ends_with(suffix))
        })
        .count()
}

fn cluster_role_key(name: &str) -> ObjectKey {
    ObjectKey {
        group: "rbac.authorization.k8s.io".into(),
        kind: "ClusterRole".into(),
        namespace: None,
        name: name.into(),
    }
}

#[tokio::test]
async fn an_object_the_view_holds_costs_no_request_however_many_reviews_name_it() {
    let (addr, fake) = start_fake(vec![
        (
            "clusterroles",
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                   "metadata": {"name": "ci-deployer"},
                   "rules": [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]}]}),
        ),
        // Not an agent: the view keeps nothing of it, but its watch delivered it.
        (
            "deployments",
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                   "metadata": {"name": "web", "namespace": "team-a"},
                   "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}}),
        ),
    ])
    .await;
    let view = KubeView::start(client(addr));
    wait_synced(&view).await;
    let web = ObjectKey {
        group: "apps".into(),
        kind: "Deployment".into(),
        namespace: Some("team-a".into()),
        name: "web".into(),
    };
    for _ in 0..100 {
        view.refresh(&[cluster_role_key("ci-deployer"), web.clone()])
            .await;
    }
    assert_eq!(gets_ending(&fake, "/clusterroles/ci-deployer"), 0);
    assert_eq!(gets_ending(&fake, "/deployments/web"), 0);
    assert!(matches!(view.cluster_role("ci-deployer"), Lookup::Found(_)));
}

#[tokio::test]
async fn a_burst_of_reviews_naming_an_absent_role_makes_one_request() {
    let (addr, fake) = start_fake(vec![]).await;
    let view = KubeView::start(client(addr));
    wait_synced(&view).await;
    fake.lock().expect("lock").get_delay = Duration::from_millis(100);
    let key = cluster_role_key("absent");
    let burst = (0..50).map(|_| view.refresh(std::slice::from_ref(&key)));
    futures_util::future::join_all(burst).await;
    // And the same again, one after another, within the TTL.
    for _ in 0..20 {
        view.refresh(std::slice::from_ref(&key)).await;
    }
    assert_eq!(gets_ending(&fake, "/clusterroles/absent"), 1);
    assert_eq!(view.cluster_role("absent"), Lookup::Missing);
    assert_eq!(view.remembered_misses(), 1);
}
