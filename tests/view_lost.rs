//! The cluster view with a lost watch (API server unreachable, watch errors): after the grace
//! period, readiness is false, the policies that need the lost kinds follow their fail-open
//! or fail-closed setting, and everything else keeps working.
//!
//! A watch is marked lost the way the reflectors mark it (`MemoryView::watch_failed`), with a
//! failure time already older than the grace period: no test waits for a clock.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{ServerSetup, TestServer, plain_get, review_of};
use fluxgate::admission;
use fluxgate::cluster::{ClusterView, Lookup, MemoryView};
use fluxgate::config::Config;
use fluxgate::engine::verdict::Verdict;
use fluxgate::engine::{Endpoint, Engine};
use fluxgate::finding::{PolicyId, Severity};
use serde_json::{Value, json};

const AGENTK: &str = "registry.gitlab.com/gitlab-org/cluster-integration/gitlab-agent/agentk";
const GRACE: Duration = Duration::from_secs(60);

/// A moment the grace period has long run out since.
fn long_ago() -> Instant {
    Instant::now()
        .checked_sub(GRACE * 2)
        .expect("the machine has been up for two minutes")
}

fn engine_with(yaml: &str) -> Engine {
    Engine::new(
        Config::from_yaml(yaml, "test.yaml").expect("config parses"),
        None,
    )
}

fn engine() -> Engine {
    engine_with("{}")
}

fn create(engine: &Engine, view: &dyn ClusterView, object: &Value) -> Verdict {
    let body = review_of(object, "CREATE", "lost-uid");
    let request = admission::decode(&body).expect("valid review");
    engine.review(Endpoint::Validate, &request, view).0
}

fn findings(verdict: &Verdict, policy: PolicyId) -> Vec<(Severity, String)> {
    verdict
        .outcomes
        .iter()
        .filter(|o| o.finding.policy == policy)
        .map(|o| (o.finding.severity, o.finding.message.clone()))
        .collect()
}

fn agent_deployment(namespace: &str, name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-{name}"),
            "labels": {"app.kubernetes.io/instance": name}},
        "spec": {"template": {"spec": {"containers": [
            {"name": "agent", "image": format!("{AGENTK}:v17.3.1")}]}}}
    })
}

fn plain_deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "team-a"},
        "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]}}}
    })
}

fn oci_repository(verify: Value) -> Value {
    json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "OCIRepository",
        "metadata": {"name": "app", "namespace": "team-a"},
        // Pinned, so that oci-version-pinning has nothing to say.
        "spec": {"url": "oci://registry.gitlab.com/acme/app", "ref": {"tag": "1.4.2"}, "verify": verify}
    })
}

fn helm_chart() -> Value {
    json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "HelmChart",
        "metadata": {"name": "podinfo", "namespace": "team-a"},
        "spec": {"chart": "podinfo", "sourceRef": {"kind": "HelmRepository", "name": "charts"}}
    })
}

fn http_helm_repository() -> Value {
    json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "HelmRepository",
        "metadata": {"name": "charts", "namespace": "team-a"},
        "spec": {"url": "https://stefanprodan.github.io/podinfo"}
    })
}

fn deployer_role_binding() -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "deployer", "namespace": "team-a"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "deployer"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "gitlab:project_env:42:review"}]
    })
}

fn deployer_cluster_role() -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "deployer"},
        "rules": [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "create", "update"]}]
    })
}

fn view_losing(kinds: &[&str]) -> MemoryView {
    let view = MemoryView::new();
    view.set_view_grace(GRACE);
    view.apply(&agent_deployment("gitlab-agent", "gitlab-agent"))
        .expect("applies");
    view.apply(&http_helm_repository()).expect("applies");
    view.apply(&deployer_cluster_role()).expect("applies");
    for kind in kinds {
        view.watch_failed(kind, long_ago());
    }
    view
}

// ---------------------------------------------------------------------------------------
// Health and readiness

#[test]
fn a_watch_failing_within_the_grace_period_keeps_the_view_answering() {
    let view = view_losing(&[]);
    view.watch_failed("HelmRepository", Instant::now());
    assert!(view.synced());
    assert!(view.watch_failing("HelmRepository"));
    assert!(view.lost_kinds().is_empty());
    assert!(matches!(
        view.helm_repository("team-a", "charts"),
        Lookup::Found(_)
    ));
}

#[test]
fn a_watch_failing_past_the_grace_period_is_lost_until_it_works_again() {
    let view = view_losing(&["HelmRepository"]);
    assert!(!view.synced(), "readiness turns false");
    assert_eq!(view.lost_kinds(), vec!["HelmRepository".to_string()]);
    // What the lost watch left behind may be stale: not vouched for, found or not.
    assert_eq!(view.helm_repository("team-a", "charts"), Lookup::Unknown);
    assert_eq!(view.helm_repository("team-a", "gone"), Lookup::Unknown);
    // Kinds whose watches work keep answering.
    assert!(matches!(view.cluster_role("deployer"), Lookup::Found(_)));
    assert!(matches!(view.agent_installations(), Lookup::Found(_)));

    // Later failures do not restart the grace period; recovery ends it.
    view.watch_failed("HelmRepository", Instant::now());
    assert!(!view.synced());
    view.watch_healthy("HelmRepository");
    assert!(view.synced());
    assert!(!view.watch_failing("HelmRepository"));
    assert!(matches!(
        view.helm_repository("team-a", "charts"),
        Lookup::Found(_)
    ));
    let health = view.watch_health();
    let helm = health
        .iter()
        .find(|h| h.kind == "HelmRepository")
        .expect("reported");
    assert!(helm.last_healthy.is_some() && helm.failing_since.is_none() && !helm.lost);
}

#[tokio::test]
async fn readiness_is_false_while_a_watch_is_lost_and_reviews_still_get_answers() {
    let view = Arc::new(view_losing(&["Deployment"]));
    let server = TestServer::start_with(ServerSetup {
        view: view.clone(),
        ..ServerSetup::default()
    })
    .await;
    let (status, body) = plain_get(server.metrics_addr, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"clusterView\":false"), "{body}");

    // Not ready is for the Service endpoints; a request that still arrives gets its answer.
    let response = server
        .post(
            "/validate",
            review_of(&oci_repository(Value::Null), "CREATE", "u-1"),
        )
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(response.json()["response"]["allowed"], false);

    view.watch_healthy("Deployment");
    let (status, body) = plain_get(server.metrics_addr, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    server.shutdown.shutdown();
}

// ---------------------------------------------------------------------------------------
// Policies that need the lost kinds follow their setting

#[test]
fn single_agent_follows_when_unknown_with_the_workload_watches_lost() {
    let view = view_losing(&["Deployment"]);
    let new_agent = agent_deployment("team-a", "second-agent");

    let verdict = create(&engine(), &view, &new_agent);
    assert!(!verdict.allowed, "whenUnknown: deny fails closed");
    assert!(
        verdict
            .denial_message()
            .contains("has lost its watch of the API server"),
        "{}",
        verdict.denial_message()
    );

    let allow = engine_with("policies:\n  single-agent:\n    whenUnknown: allow\n");
    let verdict = create(&allow, &view, &new_agent);
    assert!(verdict.allowed, "whenUnknown: allow fails open");
    let found = findings(&verdict, PolicyId::SingleAgent);
    assert!(
        found.len() == 1 && found[0].0 == Severity::Advisory,
        "{found:?}"
    );

    // The same view answers a request that needs no cluster state.
    let verdict = create(&engine(), &view, &plain_deployment());
    assert!(verdict.allowed && verdict.outcomes.is_empty());
}

#[test]
fn signed_oci_sources_follows_unknown_helm_repository_with_that_watch_lost() {
    let view = view_losing(&["HelmRepository"]);
    // The repository is in the view, plain HTTP: with its watch working the chart needs
    // no verify block.
    let working = view_losing(&[]);
    assert!(create(&engine(), &working, &helm_chart()).allowed);

    let verdict = create(&engine(), &view, &helm_chart());
    assert!(!verdict.allowed, "unknownHelmRepository: deny fails closed");
    assert!(
        verdict
            .denial_message()
            .contains("watch of the API server is lost"),
        "{}",
        verdict.denial_message()
    );
    let warn = engine_with("policies:\n  signed-oci-sources:\n    unknownHelmRepository: warn\n");
    let verdict = create(&warn, &view, &helm_chart());
    assert!(verdict.allowed, "unknownHelmRepository: warn fails open");
    assert_eq!(
        findings(&verdict, PolicyId::SignedOciSources)[0].0,
        Severity::Advisory
    );

    // OCIRepositories never need the view: judged as always.
    let signed = oci_repository(json!({"provider": "cosign", "secretRef": {"name": "cosign-pub"}}));
    assert!(create(&engine(), &view, &signed).allowed);
    assert!(!create(&engine(), &view, &oci_repository(Value::Null)).allowed);
}

#[test]
fn ci_impersonation_follows_unresolved_role_with_the_rbac_watches_lost() {
    let view = view_losing(&["ClusterRole"]);
    let working = view_losing(&[]);
    assert!(create(&engine(), &working, &deployer_role_binding()).allowed);

    let verdict = create(&engine(), &view, &deployer_role_binding());
    assert!(!verdict.allowed, "unresolvedRole: deny fails closed");
    assert!(
        verdict
            .denial_message()
            .contains("cannot tell whether it exists"),
        "{}",
        verdict.denial_message()
    );
    let warn = engine_with("policies:\n  ci-impersonation:\n    unresolvedRole: warn\n");
    let verdict = create(&warn, &view, &deployer_role_binding());
    assert!(verdict.allowed, "unresolvedRole: warn fails open");

    // Bindings for nobody GitLab impersonates never depend on the view.
    let mut others = deployer_role_binding();
    others["subjects"] = json!([{"kind": "ServiceAccount", "name": "ci", "namespace": "team-a"}]);
    let verdict = create(&engine(), &view, &others);
    assert!(verdict.allowed && verdict.outcomes.is_empty());
}

#[test]
fn losing_every_watch_leaves_view_free_rules_working() {
    let every = [
        "Namespace",
        "HelmRepository",
        "Deployment",
        "StatefulSet",
        "DaemonSet",
        "ReplicaSet",
        "CronJob",
        "Job",
        "Pod",
        "HelmRelease",
        "Role",
        "ClusterRole",
        "RoleBinding",
        "ClusterRoleBinding",
    ];
    let view = view_losing(&every);
    assert_eq!(view.lost_kinds().len(), every.len());
    let unsigned = create(&engine(), &view, &oci_repository(Value::Null));
    assert!(!unsigned.allowed);
    assert!(unsigned.denial_message().contains("spec.verify is missing"));
    let verdict = create(&engine(), &view, &plain_deployment());
    assert!(verdict.allowed && verdict.outcomes.is_empty());
    // With `sanctioned`, single-agent needs no cluster state either.
    let sanctioned = engine_with(
        "policies:\n  single-agent:\n    sanctioned: {namespace: gitlab-agent, release: gitlab-agent}\n",
    );
    let verdict = create(
        &sanctioned,
        &view,
        &agent_deployment("team-a", "second-agent"),
    );
    assert!(!verdict.allowed);
    assert!(
        verdict.denial_message().contains("sanctioned"),
        "{}",
        verdict.denial_message()
    );
}
