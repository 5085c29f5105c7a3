//! Stateful work at scale, on a real kube-apiserver (envtest, see tests/support/envtest),
//! counted by the API server's own `apiserver_request_total`:
//! - the request path asks the API server nothing it does not have to: the GETs of roles made
//!   while reviews of RoleBindings go through `fluxgate serve`. In these windows nobody else
//!   GETs a single Role or ClusterRole (the test creates and dry-runs through POSTs; the API
//!   server's own controllers watch), so every GET counted is fluxgate's;
//! - the audit scan lists page by page and judges every page: the LISTs of RoleBindings.
//!
//! `scripts/bench-scale.sh` measures the same at 100,000 RoleBindings.

#[path = "support/envtest/mod.rs"]
mod envtest;

use std::time::{Duration, Instant};

use envtest::{Env, FluxgateOptions};
use fluxgate::cluster::misses::MISS_TTL;
use k8s_openapi::api::rbac::v1::{ClusterRole, Role, RoleBinding};
use kube::api::{Api, PostParams};
use serde_json::json;

/// GETs of single objects of `resource` (e.g. `clusterroles`) the API server has answered
/// since it started, by its own metrics.
async fn gets_of(env: &Env, resource: &str) -> u64 {
    requests_of(env, "GET", resource).await
}

/// Requests of `verb` (`GET`, `LIST`, ...) on `resource` the API server has answered.
async fn requests_of(env: &Env, verb: &str, resource: &str) -> u64 {
    let request = axum::http::Request::get("/metrics")
        .body(Vec::new())
        .expect("a request");
    let text = env
        .client()
        .request_text(request)
        .await
        .expect("the API server's metrics");
    let (resource, verb) = (
        format!("resource=\"{resource}\""),
        format!("verb=\"{verb}\""),
    );
    text.lines()
        .filter(|line| line.starts_with("apiserver_request_total{"))
        .filter(|line| line.contains(&verb) && line.contains(&resource))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn cluster_role(name: &str) -> ClusterRole {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "rules": [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "watch", "patch"]}]
    }))
    .expect("a ClusterRole")
}

/// A RoleBinding of `role` (`ClusterRole/name` or `Role/name`) to a GitLab project
/// environment: ci-impersonation reads the role's rules for it, and denies it when the role
/// cannot be found (fail closed).
fn binding(namespace: &str, name: &str, role: &str) -> RoleBinding {
    let (kind, role) = role.split_once('/').expect("Kind/name");
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                      "name": "gitlab:project_env:42:production"}]
    }))
    .expect("a RoleBinding")
}

/// Creates the binding as a server dry run, which goes through fluxgate's webhooks.
async fn dry_run(env: &Env, binding: &RoleBinding) -> Result<(), String> {
    let namespace = binding.metadata.namespace.as_deref().expect("namespaced");
    let api: Api<RoleBinding> = Api::namespaced(env.client(), namespace);
    let params = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    api.create(&params, binding)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn once_synced_reviews_of_bindings_ask_the_api_server_nothing() {
    let Some(env) = envtest::cluster().await else {
        return;
    };
    let ns = env.namespace("synced").await;
    Api::<ClusterRole>::all(env.client())
        .create(&PostParams::default(), &cluster_role("synced-deployer"))
        .await
        .expect("ClusterRole");
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": "deployer", "namespace": ns},
        "rules": [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "patch"]}]
    }))
    .expect("a Role");
    Api::<Role>::namespaced(env.client(), &ns)
        .create(&PostParams::default(), &role)
        .await
        .expect("Role");
    // Both roles are listed when the view syncs.
    let _fluxgate = env.fluxgate(FluxgateOptions::default()).await;

    let before = (
        gets_of(&env, "clusterroles").await,
        gets_of(&env, "roles").await,
    );
    for i in 0..50 {
        for role in ["ClusterRole/synced-deployer", "Role/deployer"] {
            dry_run(&env, &binding(&ns, &format!("deployers-{i}"), role))
                .await
                .unwrap_or_else(|e| panic!("{role}: {e}"));
        }
    }
    let after = (
        gets_of(&env, "clusterroles").await,
        gets_of(&env, "roles").await,
    );
    assert_eq!(
        (after.0 - before.0, after.1 - before.1),
        (0, 0),
        "GETs of ClusterRoles and Roles during 100 reviews of bindings to roles the view holds"
    );
}

#[tokio::test]
async fn a_role_created_a_moment_before_its_binding_is_found() {
    let Some(env) = envtest::cluster().await else {
        return;
    };
    let ns = env.namespace("moment").await;
    let _fluxgate = env.fluxgate(FluxgateOptions::default()).await;
    let roles: Api<ClusterRole> = Api::all(env.client());
    let before = gets_of(&env, "clusterroles").await;
    for i in 0..10 {
        let name = format!("just-created-{i}");
        roles
            .create(&PostParams::default(), &cluster_role(&name))
            .await
            .expect("ClusterRole");
        // No wait: the binding's review may arrive before the role's watch event.
        dry_run(
            &env,
            &binding(&ns, &format!("fresh-{i}"), &format!("ClusterRole/{name}")),
        )
        .await
        .unwrap_or_else(|e| {
            panic!("a binding of a role created a moment before is judged with it: {e}")
        });
    }
    let gets = gets_of(&env, "clusterroles").await - before;
    assert!(
        gets <= 10,
        "at most one GET per role the watch had not delivered yet: {gets}"
    );
}

#[tokio::test]
async fn a_burst_of_reviews_naming_a_missing_role_makes_at_most_one_get_per_ttl() {
    let Some(env) = envtest::cluster().await else {
        return;
    };
    let ns = env.namespace("burst").await;
    let _fluxgate = env.fluxgate(FluxgateOptions::default()).await;
    let before = gets_of(&env, "clusterroles").await;
    let started = Instant::now();
    let reviews = (0..40).map(|i| {
        let binding = binding(&ns, &format!("burst-{i}"), "ClusterRole/no-such-role");
        let env = &env;
        async move { dry_run(env, &binding).await }
    });
    let answers = futures_util::future::join_all(reviews).await;
    let elapsed = started.elapsed();
    let gets = gets_of(&env, "clusterroles").await - before;
    for answer in &answers {
        let err = answer
            .as_ref()
            .expect_err("a binding of a missing role is denied");
        assert!(err.contains("cannot be resolved"), "{err}");
    }
    // The first miss is asked once; the TTL lets one more through per period.
    let allowed = 1 + (elapsed.as_secs_f64() / MISS_TTL.as_secs_f64()).floor() as u64;
    assert!(
        gets <= allowed,
        "{gets} GETs of ClusterRoles for 40 reviews in {elapsed:?} (TTL {MISS_TTL:?})"
    );
    assert!(gets >= 1, "the API server was asked for the missing role");
    // After the TTL the role is asked for again: it may have been created since.
    tokio::time::sleep(MISS_TTL + Duration::from_millis(200)).await;
    let again = gets_of(&env, "clusterroles").await;
    let err = dry_run(&env, &binding(&ns, "after-ttl", "ClusterRole/no-such-role"))
        .await
        .expect_err("still missing");
    assert!(err.contains("cannot be resolved"), "{err}");
    assert_eq!(gets_of(&env, "clusterroles").await - again, 1);
}

#[tokio::test]
async fn the_audit_scan_lists_page_by_page_and_judges_every_page() {
    let Some(env) = envtest::cluster().await else {
        return;
    };
    let ns = env.namespace("paged").await;
    let bindings: Api<RoleBinding> = Api::namespaced(env.client(), &ns);
    for i in 0..25 {
        // One in five hands every CI job cluster-admin in the namespace.
        let object = if i % 5 == 0 {
            serde_json::from_value(json!({
                "metadata": {"name": format!("ci-admin-{i}"), "namespace": ns},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "gitlab:ci_job"}]
            }))
            .expect("a RoleBinding")
        } else {
            binding(&ns, &format!("app-{i}"), "ClusterRole/view")
        };
        bindings
            .create(&PostParams::default(), &object)
            .await
            .expect("RoleBinding");
    }
    let in_cluster = Api::<RoleBinding>::all(env.client())
        .list(&Default::default())
        .await
        .expect("RoleBindings")
        .items
        .len() as u64;
    let view = fluxgate::cluster::kube::KubeView::start(env.client());
    let config = fluxgate::config::Config::default();
    fluxgate::cluster::ClusterView::reconfigure(
        view.as_ref(),
        config.policies.single_agent.detector(),
    );
    let started = Instant::now();
    while !fluxgate::cluster::ClusterView::synced(view.as_ref()) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the view synced"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let engine = fluxgate::engine::Engine::new(config, None);

    let lists = requests_of(&env, "LIST", "rolebindings").await;
    let mut scan = fluxgate::audit::Scan::new(&engine, view.as_ref());
    fluxgate::audit::cluster::scan_covered_objects_in_pages(&env.client(), &engine, &mut scan, 10)
        .await;
    let report = scan.finish();
    let pages = requests_of(&env, "LIST", "rolebindings").await - lists;

    // A page of 10 at a time (the last page may come back empty when the one before was full).
    let least = in_cluster.div_ceil(10);
    assert!(
        (least..=least + 1).contains(&pages),
        "{pages} LISTs for {in_cluster} RoleBindings in pages of 10"
    );
    let mut denied: Vec<&str> = report
        .findings
        .iter()
        .filter(|f| f.kind == "RoleBinding" && f.namespace.as_deref() == Some(ns.as_str()))
        .filter(|f| f.policy.as_str() == "ci-impersonation")
        .map(|f| f.name.as_str())
        .collect();
    denied.sort();
    assert_eq!(
        denied,
        [
            "ci-admin-0",
            "ci-admin-10",
            "ci-admin-15",
            "ci-admin-20",
            "ci-admin-5"
        ],
        "every page judged, and only the broad bindings found"
    );
    assert!(report.objects_scanned as u64 >= in_cluster);
}
