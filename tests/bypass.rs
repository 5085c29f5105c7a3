//! Attempts to get around the policies, each with the verdict fluxgate must give. SECURITY.md
//! lists every attempt with the test that covers it; attempts already covered by a policy's
//! own tests are listed there and not repeated here.
//!
//! Requests are built the way the API server sends them and go through
//! `admission::decode` and `Engine::review` with a real in-memory cluster view.

use fluxgate::admission;
use fluxgate::cluster::MemoryView;
use fluxgate::config::Config;
use fluxgate::engine::verdict::{Skip, Verdict};
use fluxgate::engine::{Endpoint, Engine};
use serde_json::{Value, json};

const AGENTK: &str = "registry.gitlab.com/gitlab-org/cluster-integration/gitlab-agent/agentk";

fn engine() -> Engine {
    Engine::new(Config::default(), None)
}

/// An AdmissionReview as the API server sends it, with `kind` and `resource` given apart
/// from the object (a client posting to the webhook directly can make them disagree).
#[allow(clippy::too_many_arguments)]
fn review_body(
    group: &str,
    version: &str,
    kind: &str,
    sub_resource: Option<&str>,
    operation: &str,
    object: &Value,
    old: Option<&Value>,
) -> String {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "bypass-uid",
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": format!("{}s", kind.to_lowercase())},
            "subResource": sub_resource,
            "name": object["metadata"]["name"],
            "namespace": object["metadata"]["namespace"],
            "operation": operation,
            "userInfo": {"username": "mallory", "groups": ["system:authenticated"]},
            "object": object,
            "oldObject": old,
            "dryRun": false
        }
    })
    .to_string()
}

fn judge(engine: &Engine, view: &MemoryView, body: &str) -> Verdict {
    let request = admission::decode(body.as_bytes()).expect("a valid review");
    engine.review(Endpoint::Validate, &request, view).0
}

/// A CREATE whose kind and group come from the object's own apiVersion and kind.
fn create(engine: &Engine, view: &MemoryView, object: &Value) -> Verdict {
    let api_version = object["apiVersion"].as_str().unwrap_or("v1");
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let kind = object["kind"].as_str().unwrap_or_default();
    judge(
        engine,
        view,
        &review_body(group, version, kind, None, "CREATE", object, None),
    )
}

#[track_caller]
fn assert_denied(verdict: &Verdict, phrases: &[&str]) -> String {
    let message = verdict.denial_message();
    assert!(!verdict.allowed, "expected a denial, got {:?}", verdict);
    for phrase in phrases {
        assert!(
            message.contains(phrase),
            "missing {phrase:?} in:\n{message}"
        );
    }
    message
}

#[track_caller]
fn assert_allowed(verdict: &Verdict) {
    assert!(
        verdict.allowed,
        "expected allowed, got:\n{}",
        verdict.denial_message()
    );
}

fn unsigned_oci_repository() -> Value {
    json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "OCIRepository",
        "metadata": {"name": "app", "namespace": "flux-system"},
        "spec": {"interval": "5m", "url": "oci://registry.gitlab.com/acme/app", "ref": {"tag": "1.0.0"}}
    })
}

fn deployment(namespace: &str, name: &str, pod_spec: Value) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-{name}")},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec}
        }
    })
}

/// A cluster that already runs the GitLab agent, installed by its Helm chart.
fn cluster_with_an_agent() -> MemoryView {
    let view = MemoryView::new();
    let mut agent = deployment(
        "gitlab-agent",
        "gitlab-agent-v2",
        json!({"containers": [{"name": "gitlab-agent", "image": format!("{AGENTK}:v17.3.1"),
            "args": ["--token-file=/etc/agentk/secrets/token", "--kas-address=wss://kas.gitlab.com"]}]}),
    );
    agent["metadata"]["labels"] = json!({"app.kubernetes.io/instance": "gitlab-agent"});
    view.apply(&agent).expect("the agent applies");
    view
}

fn cluster_role(name: &str, rules: Value) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name},
        "rules": rules
    })
}

fn binding(kind: &str, namespace: Option<&str>, role: &str, subject: Value) -> Value {
    let mut metadata = json!({"name": "bypass"});
    if let Some(ns) = namespace {
        metadata["namespace"] = json!(ns);
    }
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": kind,
        "metadata": metadata,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [subject]
    })
}

fn group(name: &str) -> Value {
    json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": name})
}

// ---------------------------------------------------------------------------------------
// Kind or group in another case

#[test]
fn a_kind_or_group_in_another_case_is_judged_as_the_kind_it_spells() {
    let repo = unsigned_oci_repository();
    for (group, kind) in [
        ("source.toolkit.fluxcd.io", "ocirepository"),
        ("source.toolkit.fluxcd.io", "OciRepository"),
        ("Source.Toolkit.FluxCD.io", "OCIRepository"),
        ("SOURCE.TOOLKIT.FLUXCD.IO", "OCIREPOSITORY"),
    ] {
        let verdict = judge(
            &engine(),
            &MemoryView::new(),
            &review_body(group, "v1", kind, None, "CREATE", &repo, None),
        );
        let message = assert_denied(&verdict, &["spec.verify is missing"]);
        assert!(
            message.contains("OCIRepository flux-system/app"),
            "{group}/{kind}: the message names the canonical kind: {message}"
        );
    }

    let cluster_admin = binding(
        "ClusterRoleBinding",
        None,
        "cluster-admin",
        group("gitlab:ci_job"),
    );
    let verdict = judge(
        &engine(),
        &MemoryView::new(),
        &review_body(
            "RBAC.authorization.k8s.io",
            "v1",
            "clusterrolebinding",
            None,
            "CREATE",
            &cluster_admin,
            None,
        ),
    );
    assert_denied(&verdict, &["ClusterRole cluster-admin"]);

    let second_agent = deployment(
        "team-a",
        "agent",
        json!({"containers": [{"name": "agent", "image": format!("{AGENTK}:v17.3.1")}]}),
    );
    let verdict = judge(
        &engine(),
        &cluster_with_an_agent(),
        &review_body(
            "APPS",
            "v1",
            "deployment",
            None,
            "CREATE",
            &second_agent,
            None,
        ),
    );
    assert_denied(&verdict, &["second GitLab agent"]);
}

#[test]
fn a_role_ref_in_another_case_is_denied_as_malformed() {
    // The API server accepts only `ClusterRole`/`Role` of rbac.authorization.k8s.io; a
    // binding fluxgate cannot resolve is never waved through.
    let mut object = binding(
        "RoleBinding",
        Some("team-a"),
        "cluster-admin",
        group("gitlab:ci_job"),
    );
    object["roleRef"]["kind"] = json!("clusterrole");
    assert_denied(
        &create(&engine(), &MemoryView::new(), &object),
        &["a roleRef must be a Role or ClusterRole"],
    );
}

// ---------------------------------------------------------------------------------------
// A RoleBinding to a ClusterRole whose name looks like `view`

#[test]
fn a_cluster_role_named_like_view_is_judged_by_its_own_rules() {
    let everything = json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]);
    for name in ["View", "view ", " view", "VIEW", "view\t"] {
        let view = MemoryView::new();
        view.apply(&cluster_role(name, everything.clone()))
            .expect("applies");
        // Bound to every CI/CD job: only read-only roles may be, and `view` is one, but the
        // look-alike is judged by what it grants.
        let catch_all = binding("RoleBinding", Some("team-a"), name, group("gitlab:ci_job"));
        assert_denied(
            &create(&engine(), &view, &catch_all),
            &[
                "is broad",
                "catch-all group may only be bound to read-only roles",
            ],
        );
        // Cluster-wide for one project: only `view` may be bound cluster-wide.
        let cluster_wide = binding(
            "ClusterRoleBinding",
            None,
            name,
            group("gitlab:project_env:42:production-eu"),
        );
        assert_denied(
            &create(&engine(), &view, &cluster_wide),
            &["GitLab identities may be bound cluster-wide only to ClusterRoles view"],
        );
    }
}

#[test]
fn a_look_alike_of_view_that_does_not_exist_is_not_the_default_view() {
    for name in ["View", "view "] {
        let object = binding("RoleBinding", Some("team-a"), name, group("gitlab:ci_job"));
        assert_denied(
            &create(&engine(), &MemoryView::new(), &object),
            &["cannot be resolved", "not a Kubernetes default role"],
        );
    }
    // The real one passes: what the look-alikes are measured against.
    let object = binding(
        "RoleBinding",
        Some("team-a"),
        "view",
        group("gitlab:ci_job"),
    );
    assert_allowed(&create(&engine(), &MemoryView::new(), &object));
}

// ---------------------------------------------------------------------------------------
// system:masters-style subjects

#[test]
fn a_broad_role_for_system_authenticated_reaches_every_gitlab_identity_and_is_denied() {
    for (kind, namespace) in [
        ("ClusterRoleBinding", None),
        ("RoleBinding", Some("team-a")),
    ] {
        let object = binding(
            kind,
            namespace,
            "cluster-admin",
            group("system:authenticated"),
        );
        assert_denied(
            &create(&engine(), &MemoryView::new(), &object),
            &[
                "ClusterRole cluster-admin is broad",
                "Group system:authenticated includes every identity the GitLab agent impersonates",
            ],
        );
    }
}

#[test]
fn kubernetes_own_bindings_for_system_authenticated_are_allowed() {
    for role in [
        "system:basic-user",
        "system:discovery",
        "system:public-info-viewer",
    ] {
        let mut object = binding(
            "ClusterRoleBinding",
            None,
            role,
            group("system:authenticated"),
        );
        object["metadata"]["name"] = json!(role);
        let verdict = create(&engine(), &MemoryView::new(), &object);
        assert!(
            verdict.allowed && verdict.outcomes.is_empty(),
            "{role}: {:?}",
            verdict.outcomes
        );
    }
}

#[test]
fn widening_a_role_bound_to_system_authenticated_is_denied() {
    let view = MemoryView::new();
    view.apply(&cluster_role(
        "everyone-reads-pods",
        json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]),
    ))
    .expect("applies");
    let mut bound = binding(
        "ClusterRoleBinding",
        None,
        "everyone-reads-pods",
        group("system:authenticated"),
    );
    bound["metadata"]["name"] = json!("everyone-reads-pods");
    view.apply(&bound).expect("applies");
    let widened = cluster_role(
        "everyone-reads-pods",
        json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]),
    );
    assert_denied(
        &create(&engine(), &view, &widened),
        &["Group system:authenticated", "broad"],
    );
}

#[test]
fn system_masters_is_not_a_gitlab_identity_and_its_bindings_grant_nothing_new() {
    // Members of system:masters bypass RBAC: a binding for the group changes nothing, and
    // the agent puts jobs in it only when its configuration impersonates it, which
    // `fluxgate check` reports (gitlab::agent_config tests).
    let object = binding(
        "ClusterRoleBinding",
        None,
        "cluster-admin",
        group("system:masters"),
    );
    let verdict = create(&engine(), &MemoryView::new(), &object);
    assert!(
        verdict.allowed && verdict.outcomes.is_empty(),
        "{verdict:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Objects a finalizer holds while they are being deleted

/// The object as it is while a finalizer holds it: the API server has set its deletion
/// timestamp, and it keeps granting until the finalizer goes.
fn held_by_a_finalizer(mut object: Value) -> Value {
    object["metadata"]["deletionTimestamp"] = json!("2026-11-21T10:00:00Z");
    object["metadata"]["deletionGracePeriodSeconds"] = json!(0);
    object["metadata"]["finalizers"] = json!(["example.com/hold"]);
    object
}

/// An UPDATE whose kind and group come from the object's own apiVersion and kind.
fn update(engine: &Engine, view: &MemoryView, old: &Value, new: &Value) -> Verdict {
    let api_version = new["apiVersion"].as_str().unwrap_or("v1");
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let kind = new["kind"].as_str().unwrap_or_default();
    judge(
        engine,
        view,
        &review_body(group, version, kind, None, "UPDATE", new, Some(old)),
    )
}

#[test]
fn widening_rbac_that_a_finalizer_holds_is_denied() {
    // Fixed: an UPDATE of an object being deleted was never judged.
    let view = MemoryView::new();
    let mut binding = held_by_a_finalizer(binding(
        "ClusterRoleBinding",
        None,
        "cluster-admin",
        group("platform-admins"),
    ));
    let mut with_ci_jobs = binding.clone();
    with_ci_jobs["subjects"]
        .as_array_mut()
        .expect("subjects")
        .push(group("gitlab:ci_job"));
    assert_denied(
        &update(&engine(), &view, &binding, &with_ci_jobs),
        &["gitlab:ci_job", "cluster-admin"],
    );

    // A ClusterRole bound to the CI jobs, widened to everything while it is held.
    let role = held_by_a_finalizer(cluster_role(
        "ci-deployer",
        json!([{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "patch"]}]),
    ));
    view.apply(&role).expect("applies");
    binding["roleRef"]["name"] = json!("ci-deployer");
    binding["subjects"] = json!([group("gitlab:ci_job")]);
    view.apply(&binding).expect("applies");
    let mut everything = role.clone();
    everything["rules"] = json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]);
    assert_denied(
        &update(&engine(), &view, &role, &everything),
        &["gitlab:ci_job"],
    );
}

#[test]
fn removing_the_finalizer_of_a_broad_binding_is_allowed() {
    // The binding predates fluxgate and breaks the rule; whoever holds it lets it go.
    let held = held_by_a_finalizer(binding(
        "ClusterRoleBinding",
        None,
        "cluster-admin",
        group("gitlab:ci_job"),
    ));
    assert_denied(
        &create(&engine(), &MemoryView::new(), &held),
        &["gitlab:ci_job"],
    );
    let mut released = held.clone();
    released["metadata"]["finalizers"] = json!([]);
    let verdict = update(&engine(), &MemoryView::new(), &held, &released);
    assert_allowed(&verdict);
    assert!(verdict.evaluated.is_empty(), "{verdict:?}");
}

// ---------------------------------------------------------------------------------------
// agentk behind an image digest only

#[test]
fn agentk_pulled_by_digest_under_another_name_is_caught_by_its_flags() {
    let digest = "sha256:3b0c1d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c";
    for args in [
        json!([
            "--token-file=/etc/agentk/secrets/token",
            "--kas-address=wss://kas.gitlab.com"
        ]),
        json!([
            "--token-file=/config/token",
            "--kas-address",
            "grpc://kas.internal:8150"
        ]),
    ] {
        let sneaky = deployment(
            "team-a",
            "metrics-helper",
            json!({"containers": [{"name": "helper",
                "image": format!("registry.example.com/tools/helper@{digest}"),
                "args": args}]}),
        );
        let message = assert_denied(
            &create(&engine(), &cluster_with_an_agent(), &sneaky),
            &["second GitLab agent", "--kas-address"],
        );
        assert!(
            message.contains("Deployment team-a/metrics-helper"),
            "{message}"
        );
    }
    // The flag in `command` counts the same.
    let in_command = deployment(
        "team-a",
        "cmd",
        json!({"containers": [{"name": "c", "image": format!("registry.example.com/x@{digest}"),
            "command": ["/usr/bin/agentk", "--kas-address=wss://kas.gitlab.com"]}]}),
    );
    assert_denied(
        &create(&engine(), &cluster_with_an_agent(), &in_command),
        &["second GitLab agent"],
    );
}

#[test]
fn look_alike_flags_are_not_agentk() {
    let not_agent = deployment(
        "team-a",
        "proxy",
        json!({"containers": [{"name": "proxy", "image": "envoyproxy/envoy:v1.30",
            "args": ["--kas-address-file=/x", "--my-kas-address=y", "kas-address"]}]}),
    );
    let verdict = create(&engine(), &cluster_with_an_agent(), &not_agent);
    assert!(
        verdict.allowed && verdict.outcomes.is_empty(),
        "{verdict:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Ephemeral containers running agentk

fn pod(name: &str, ephemeral: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name, "namespace": "team-a", "uid": format!("uid-{name}"),
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d8f7",
                "uid": "uid-rs-web", "controller": true}],
            "labels": {"pod-template-hash": "5d8f7"}
        },
        "spec": {
            "containers": [{"name": "web", "image": "nginx:1.25"}],
            "ephemeralContainers": ephemeral
        }
    })
}

#[test]
fn an_agentk_ephemeral_container_added_through_the_subresource_is_denied() {
    let old = pod("web-5d8f7-abcde", json!([]));
    let new = pod(
        "web-5d8f7-abcde",
        json!([{"name": "debugger", "image": format!("{AGENTK}:v17.3.1"),
            "targetContainerName": "web"}]),
    );
    let body = review_body(
        "",
        "v1",
        "Pod",
        Some("ephemeralcontainers"),
        "UPDATE",
        &new,
        Some(&old),
    );
    let message = assert_denied(
        &judge(&engine(), &cluster_with_an_agent(), &body),
        &["second GitLab agent", "container debugger runs"],
    );
    assert!(message.contains("Pod team-a/web-5d8f7-abcde"), "{message}");

    // A debugging container that is not agentk is the everyday case.
    let harmless = pod(
        "web-5d8f7-abcde",
        json!([{"name": "debugger", "image": "busybox:1.36"}]),
    );
    let body = review_body(
        "",
        "v1",
        "Pod",
        Some("ephemeralcontainers"),
        "UPDATE",
        &harmless,
        Some(&old),
    );
    let verdict = judge(&engine(), &cluster_with_an_agent(), &body);
    assert!(
        verdict.allowed && verdict.outcomes.is_empty(),
        "{verdict:?}"
    );
}

#[test]
fn other_subresources_are_still_never_judged() {
    let new = pod(
        "web-5d8f7-abcde",
        json!([{"name": "debugger", "image": format!("{AGENTK}:v17.3.1")}]),
    );
    for sub in ["status", "binding", "eviction"] {
        let body = review_body("", "v1", "Pod", Some(sub), "UPDATE", &new, Some(&new));
        let verdict = judge(&engine(), &cluster_with_an_agent(), &body);
        assert!(verdict.allowed, "{sub}");
        assert_eq!(verdict.skipped, Some(Skip::Subresource), "{sub}");
    }
}
