//! `ci-impersonation`: no overly broad RBAC for GitLab CI/CD (and dashboard) identities.
//!
//! Every test builds AdmissionReview bodies the way the API server sends them and runs them
//! through `Engine::review` with a real in-memory cluster view.

use std::time::Instant;

use fluxgate::admission::{self, OwnedObject};
use fluxgate::cluster::{MemoryView, ObjectKey};
use fluxgate::config::Config;
use fluxgate::engine::verdict::Verdict;
use fluxgate::engine::{Endpoint, Engine};
use fluxgate::finding::{PolicyId, Severity};
use fluxgate::policy::Policy;
use serde_json::{Value, json};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/corpus");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/admission");

// ---------------------------------------------------------------------------------------
// Helpers

fn yaml(text: &str) -> Value {
    serde_yaml_ng::from_str(text).expect("test YAML parses")
}

fn yaml_docs(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|doc| {
            use serde::Deserialize;
            Value::deserialize(doc).expect("document parses")
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn corpus(path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(format!("{CORPUS}/{path}")).expect("corpus file");
    yaml_docs(&text)
}

fn engine() -> Engine {
    Engine::new(Config::default(), None)
}

fn engine_with(config: &str) -> Engine {
    Engine::new(
        Config::from_yaml(config, "test.yaml").expect("config parses"),
        None,
    )
}

fn review_body(operation: &str, object: &Value, old: Option<&Value>, user: &str) -> String {
    let api_version = object["apiVersion"].as_str().unwrap_or("v1");
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let kind = object["kind"].as_str().unwrap_or_default();
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "test-uid",
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": format!("{}s", kind.to_lowercase())},
            "name": object["metadata"]["name"],
            "namespace": object["metadata"]["namespace"],
            "operation": operation,
            "userInfo": {"username": user, "groups": ["system:authenticated"]},
            "object": object,
            "oldObject": old,
            "dryRun": false
        }
    })
    .to_string()
}

fn review_as(
    engine: &Engine,
    view: &MemoryView,
    operation: &str,
    object: &Value,
    old: Option<&Value>,
    user: &str,
) -> Verdict {
    let body = review_body(operation, object, old, user);
    let request = admission::decode(body.as_bytes()).expect("valid review");
    engine.review(Endpoint::Validate, &request, view).0
}

fn create(engine: &Engine, view: &MemoryView, object: &Value) -> Verdict {
    review_as(engine, view, "CREATE", object, None, "kapi-admin")
}

fn update(engine: &Engine, view: &MemoryView, old: &Value, new: &Value) -> Verdict {
    review_as(engine, view, "UPDATE", new, Some(old), "kapi-admin")
}

/// The findings of this policy: (severity, message).
fn findings(verdict: &Verdict) -> Vec<(Severity, String)> {
    verdict
        .outcomes
        .iter()
        .filter(|o| o.finding.policy == PolicyId::CiImpersonation)
        .map(|o| (o.finding.severity, o.finding.message.clone()))
        .collect()
}

#[track_caller]
fn assert_denied(verdict: &Verdict, phrases: &[&str]) -> String {
    assert!(
        !verdict.allowed,
        "expected a denial, got {:?}",
        findings(verdict)
    );
    let message = verdict.denial_message();
    for phrase in phrases {
        assert!(
            message.contains(phrase),
            "missing {phrase:?} in:\n{message}"
        );
    }
    message
}

#[track_caller]
fn assert_allowed_silently(verdict: &Verdict) {
    assert!(
        verdict.allowed && findings(verdict).is_empty(),
        "expected no finding, got {:?}",
        findings(verdict)
    );
}

#[track_caller]
fn assert_warned(verdict: &Verdict, phrases: &[&str]) {
    assert!(
        verdict.allowed,
        "expected allowed, got:\n{}",
        verdict.denial_message()
    );
    let text: String = findings(verdict)
        .into_iter()
        .map(|(_, m)| m)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(!text.is_empty(), "expected a warning");
    for phrase in phrases {
        assert!(text.contains(phrase), "missing {phrase:?} in:\n{text}");
    }
}

fn view_with(objects: &[Value]) -> MemoryView {
    let view = MemoryView::new();
    for object in objects {
        view.apply(object).expect("applies");
    }
    view
}

fn role(namespace: &str, name: &str, rules: &str) -> Value {
    let mut role = yaml(&format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: {name}, namespace: {namespace}}}\n"
    ));
    role["rules"] = yaml(rules);
    role
}

fn cluster_role(name: &str, labels: &str, rules: &str) -> Value {
    let mut role = yaml(&format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: {name}, labels: {labels}}}\n"
    ));
    role["rules"] = yaml(rules);
    role
}

fn subjects(list: &[(&str, &str)]) -> Value {
    Value::Array(
        list.iter()
            .map(|(kind, name)| match name.split_once('/') {
                Some((ns, sa)) if *kind == "ServiceAccount" => {
                    json!({"kind": kind, "name": sa, "namespace": ns})
                }
                _ => json!({"kind": kind, "name": name, "apiGroup": "rbac.authorization.k8s.io"}),
            })
            .collect(),
    )
}

fn role_binding(
    namespace: &str,
    name: &str,
    role_kind: &str,
    role: &str,
    who: &[(&str, &str)],
) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
        "subjects": subjects(who)
    })
}

fn cluster_role_binding(name: &str, role: &str, who: &[(&str, &str)]) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": subjects(who)
    })
}

const DEPLOYER_RULES: &str = "[{apiGroups: [apps], resources: [deployments], verbs: [get, list, watch, create, update, patch]}]";
const REVIEW_ENV: (&str, &str) = ("Group", "gitlab:project_env:42:review");

// ---------------------------------------------------------------------------------------
// The corpus: GitLab's, Kubernetes' and Flux's own RBAC

#[test]
fn gitlab_docs_examples_get_their_expected_verdicts() {
    // (file, document, allowed, phrases in the denial)
    let cases: &[(&str, usize, bool, &[&str])] = &[
        ("ci_cd_workflow__ci-job-view.yaml", 0, true, &[]),
        ("getting_started__gitlab-user-read.yaml", 0, true, &[]),
        ("user_access__my-cluster-role-binding.yaml", 0, true, &[]),
        (
            "getting_started_deployments__gitlab-ci-job-flux-reconciler.yaml",
            0,
            false,
            &[
                "ClusterRoleBinding ci-job-admin",
                "Group gitlab:ci_job",
                "ClusterRole flux-edit-flux-system cannot be resolved",
                "catch-all group",
                "in every namespace",
                "gitlab:project_env:",
            ],
        ),
        (
            "getting_started_deployments__gitlab-ci-job-flux-reconciler.yaml",
            1,
            false,
            &[
                "ClusterRoleBinding ci-job-view",
                "ClusterRole flux-view-flux-system",
            ],
        ),
        (
            "getting_started_deployments__gitlab-ci-job-secret-write.yaml",
            0,
            true,
            &[],
        ),
        (
            "getting_started_deployments__gitlab-ci-job-secret-write.yaml",
            1,
            false,
            &[
                "RoleBinding default/gitlab-ci-secrets-binding",
                "Role default/secret-manager",
                "catch-all",
            ],
        ),
    ];
    for (file, doc, allowed, phrases) in cases {
        let objects = corpus(&format!("rbac/gitlab-docs/{file}"));
        // Roles of the same file are in the cluster, as `kubectl apply -f` creates them first.
        let view = view_with(&objects[..*doc]);
        let verdict = create(&engine(), &view, &objects[*doc]);
        if *allowed {
            assert_allowed_silently(&verdict);
        } else {
            assert_denied(&verdict, phrases);
        }
    }
}

#[test]
fn the_gitlab_environment_template_binding_of_admin_is_denied() {
    let text = std::fs::read_to_string(format!(
        "{CORPUS}/rbac/gitlab-docs/managed_kubernetes_resources__environment-template-default.yaml"
    ))
    .expect("template")
    .replace("{{ .environment.slug }}", "review-app")
    .replace("{{ .project.id }}", "42")
    .replace("{{ .agent.id }}", "7");
    let template = yaml(&text);
    let objects = template["objects"].as_array().expect("objects");
    assert_allowed_silently(&create(&engine(), &MemoryView::new(), &objects[0]));
    let message = assert_denied(
        &create(&engine(), &MemoryView::new(), &objects[1]),
        &[
            "RoleBinding review-app-42-7/bind-review-app-42-7",
            "Group gitlab:project_env:42:review-app",
            "ClusterRole admin is broad in namespace review-app-42-7",
            "writes to RBAC objects",
            "from ClusterRole system:aggregate-to-admin",
            "kind: Role\n",
            "name: \"gitlab:project_env:42:review-app\"",
        ],
    );
    assert!(!message.contains("catch-all"), "{message}");
}

#[test]
fn kubernetes_default_cluster_roles_are_admitted() {
    let list = corpus("rbac/kubernetes/cluster-roles.user-facing-excerpt.yaml");
    let items = list[0]["items"].as_array().expect("items");
    assert_eq!(items.len(), 7);
    for role in items {
        assert_allowed_silently(&create(&engine(), &MemoryView::new(), role));
    }
}

#[test]
fn flux_rbac_manifests_are_admitted() {
    for file in [
        "controller.yaml",
        "edit.yaml",
        "view.yaml",
        "reconciler.yaml",
    ] {
        let objects = corpus(&format!("rbac/fluxcd+flux2/manifests/rbac/{file}"));
        let view = MemoryView::new();
        for object in &objects {
            let verdict = create(&engine(), &view, object);
            assert!(
                verdict.evaluated.contains(&PolicyId::CiImpersonation),
                "{file}"
            );
            assert_allowed_silently(&verdict);
            view.apply(object).expect("applies");
        }
    }
}

#[test]
fn the_agent_charts_cluster_admin_binding_gets_a_warning() {
    let objects = corpus("gitlab-agent/rendered/release-test__ns-gitlab-agent-test.yaml");
    let view = MemoryView::new();
    let mut warned = 0;
    for object in &objects {
        let verdict = create(&engine(), &view, object);
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        if name == "gitlab-agent-test:test-gitlab-agent-cluster-admin" {
            assert_warned(
                &verdict,
                &[
                    "ServiceAccount gitlab-agent-test/test-gitlab-agent",
                    "cluster-admin",
                    "rbac.useExistingRole",
                    "verbs: [impersonate]",
                ],
            );
            assert!(
                findings(&verdict)
                    .iter()
                    .all(|(s, _)| *s == Severity::Advisory)
            );
            warned += 1;
        } else {
            assert_allowed_silently(&verdict);
        }
        view.apply(object).expect("applies");
    }
    assert_eq!(warned, 1);
}

#[test]
fn the_agent_chart_with_an_impersonate_only_role_is_admitted() {
    let impersonate = cluster_role(
        "gitlab-agent-impersonate",
        "{}",
        "[{apiGroups: [''], resources: [users, groups, serviceaccounts], verbs: [impersonate]}]",
    );
    let mut binding = cluster_role_binding(
        "gitlab-agent:gitlab-agent-gitlab-agent-impersonate",
        "gitlab-agent-impersonate",
        &[("ServiceAccount", "gitlab-agent/gitlab-agent")],
    );
    binding["metadata"]["labels"] = json!({"app.kubernetes.io/name": "gitlab-agent"});
    let view = view_with(&[impersonate]);
    assert_allowed_silently(&create(&engine(), &view, &binding));

    // Without the chart's label and name, the same grant needs the agent to be configured.
    let plain = cluster_role_binding(
        "agent-impersonate",
        "gitlab-agent-impersonate",
        &[("ServiceAccount", "gitlab-agent/gitlab-agent")],
    );
    assert_denied(
        &create(&engine(), &view, &plain),
        &["impersonation of users, groups"],
    );
    let configured = engine_with(
        "policies:\n  ci-impersonation:\n    agentServiceAccounts: [gitlab-agent/gitlab-agent]\n",
    );
    assert_allowed_silently(&create(&configured, &view, &plain));
}

// ---------------------------------------------------------------------------------------
// What: broad roles

#[test]
fn every_broad_rule_form_alone_is_denied_for_a_project_environment() {
    let cases: &[(&str, &str)] = &[
        (
            "{apiGroups: [apps], resources: [deployments], verbs: ['*']}",
            "`*` in verbs",
        ),
        (
            "{apiGroups: [apps], resources: ['*'], verbs: [get]}",
            "`*` in resources",
        ),
        (
            "{apiGroups: ['*'], resources: [deployments], verbs: [get]}",
            "`*` in apiGroups",
        ),
        (
            "{apiGroups: [rbac.authorization.k8s.io], resources: [roles], verbs: [escalate]}",
            "escalate",
        ),
        (
            "{apiGroups: [rbac.authorization.k8s.io], resources: [roles], verbs: [bind]}",
            "bind",
        ),
        (
            "{apiGroups: [''], resources: [serviceaccounts], verbs: [impersonate]}",
            "impersonate",
        ),
        (
            "{apiGroups: [rbac.authorization.k8s.io], resources: [rolebindings], verbs: [create]}",
            "writes to RBAC objects",
        ),
        (
            "{apiGroups: [rbac.authorization.k8s.io], resources: [roles], verbs: [patch]}",
            "writes to RBAC objects",
        ),
        (
            "{apiGroups: [rbac.authorization.k8s.io], resources: [clusterrolebindings], verbs: [deletecollection]}",
            "writes to RBAC objects",
        ),
        (
            "{apiGroups: [admissionregistration.k8s.io], resources: [validatingwebhookconfigurations], verbs: [update]}",
            "webhook configurations",
        ),
        (
            "{apiGroups: [admissionregistration.k8s.io], resources: [mutatingwebhookconfigurations], verbs: [delete]}",
            "webhook configurations",
        ),
        (
            "{apiGroups: [apiextensions.k8s.io], resources: [customresourcedefinitions], verbs: [create]}",
            "CustomResourceDefinitions",
        ),
        (
            "{apiGroups: [''], resources: [pods/exec], verbs: [create]}",
            "pods/exec",
        ),
        (
            "{apiGroups: [''], resources: [pods/exec], verbs: [get]}",
            "pods/exec",
        ),
        (
            "{apiGroups: [''], resources: [pods/attach], verbs: [create]}",
            "pods/attach",
        ),
        (
            "{apiGroups: [''], resources: [nodes/proxy], verbs: [get]}",
            "nodes/proxy",
        ),
    ];
    for (rule, reason) in cases {
        let role = cluster_role("candidate", "{}", &format!("[{rule}]"));
        let view = view_with(&[role]);
        let binding = role_binding(
            "review",
            "deploy",
            "ClusterRole",
            "candidate",
            &[REVIEW_ENV],
        );
        let message = assert_denied(
            &create(&engine(), &view, &binding),
            &[
                "ClusterRole candidate is broad in namespace review",
                reason,
                "gitlab:project_env:42:review",
            ],
        );
        assert!(message.contains("rule {apiGroups:"), "{message}");
    }

    // nonResourceURLs only exist in ClusterRoles, bound cluster-wide.
    let urls = cluster_role("urls", "{}", "[{nonResourceURLs: ['*'], verbs: [get]}]");
    let config = engine_with("policies:\n  ci-impersonation:\n    allowedClusterRoles: [urls]\n");
    let binding = cluster_role_binding("urls", "urls", &[REVIEW_ENV]);
    assert_denied(
        &create(&config, &view_with(&[urls]), &binding),
        &["nonResourceURLs `*`"],
    );
}

#[test]
fn secrets_read_is_broad_only_cluster_wide() {
    let reader = cluster_role(
        "secret-reader",
        "{}",
        "[{apiGroups: [''], resources: [secrets], verbs: [get, list]}]",
    );
    let view = view_with(&[reader]);
    let config = engine_with(
        "policies:\n  ci-impersonation:\n    allowedClusterRoles: [view, secret-reader]\n",
    );
    let namespaced = role_binding(
        "review",
        "read",
        "ClusterRole",
        "secret-reader",
        &[REVIEW_ENV],
    );
    assert_allowed_silently(&create(&config, &view, &namespaced));
    let cluster_wide = cluster_role_binding("read", "secret-reader", &[REVIEW_ENV]);
    assert_denied(
        &create(&config, &view, &cluster_wide),
        &[
            "broad in every namespace",
            "read of secrets in every namespace",
        ],
    );
}

#[test]
fn a_narrow_namespaced_role_for_a_project_environment_is_allowed() {
    let view = view_with(&[role("review", "deployer", DEPLOYER_RULES)]);
    for who in [
        REVIEW_ENV,
        ("Group", "gitlab:project:42"),
        ("Group", "gitlab:project_env_tier:42:production"),
        ("Group", "gitlab:group:7"),
        ("Group", "gitlab:project_role:42:developer"),
        ("User", "gitlab:user:jane"),
    ] {
        let binding = role_binding("review", "deploy", "Role", "deployer", &[who]);
        assert_allowed_silently(&create(&engine(), &view, &binding));
    }
}

#[test]
fn kubernetes_default_roles_are_resolved_without_the_cluster_having_them() {
    let view = MemoryView::new();
    let edit = role_binding("review", "edit", "ClusterRole", "edit", &[REVIEW_ENV]);
    assert_denied(
        &create(&engine(), &view, &edit),
        &[
            "ClusterRole edit is broad",
            "pods/exec",
            "from ClusterRole system:aggregate-to-edit",
        ],
    );
    let admin = cluster_role_binding("admin", "cluster-admin", &[REVIEW_ENV]);
    assert_denied(
        &create(&engine(), &view, &admin),
        &["`*` in verbs", "nonResourceURLs `*`"],
    );
    let view_role = role_binding("review", "view", "ClusterRole", "view", &[REVIEW_ENV]);
    assert_allowed_silently(&create(&engine(), &view, &view_role));
}

// ---------------------------------------------------------------------------------------
// Who and where

#[test]
fn catch_all_groups_are_limited_to_read_only_roles() {
    let view = view_with(&[role("review", "deployer", DEPLOYER_RULES)]);
    for group in ["gitlab:ci_job", "gitlab:user"] {
        let narrow = role_binding("review", "deploy", "Role", "deployer", &[("Group", group)]);
        assert_denied(
            &create(&engine(), &view, &narrow),
            &[
                &format!("Group {group} covers every"),
                "read-only roles (view)",
                "Role review/deployer",
            ],
        );
        let read_only = role_binding("review", "view", "ClusterRole", "view", &[("Group", group)]);
        assert_allowed_silently(&create(&engine(), &view, &read_only));
    }
    let config =
        engine_with("policies:\n  ci-impersonation:\n    readOnlyRoles: [view, review/deployer]\n");
    let narrow = role_binding(
        "review",
        "deploy",
        "Role",
        "deployer",
        &[("Group", "gitlab:ci_job")],
    );
    assert_allowed_silently(&create(&config, &view, &narrow));
}

#[test]
fn a_per_job_user_is_limited_to_read_only_roles() {
    let view = view_with(&[role("review", "deployer", DEPLOYER_RULES)]);
    let narrow = role_binding(
        "review",
        "deploy",
        "Role",
        "deployer",
        &[("User", "gitlab:ci_job:4711")],
    );
    assert_denied(
        &create(&engine(), &view, &narrow),
        &[
            "User gitlab:ci_job:4711 is the single CI/CD job 4711",
            "outlives the job",
        ],
    );
    let read_only = role_binding(
        "review",
        "view",
        "ClusterRole",
        "view",
        &[("User", "gitlab:ci_job:4711")],
    );
    assert_allowed_silently(&create(&engine(), &view, &read_only));
}

#[test]
fn a_cluster_role_binding_for_gitlab_identities_is_limited_to_allowed_cluster_roles() {
    let deployer = cluster_role("deployer", "{}", DEPLOYER_RULES);
    let view = view_with(&[deployer]);
    let binding = cluster_role_binding("deploy", "deployer", &[("Group", "gitlab:project:42")]);
    assert_denied(
        &create(&engine(), &view, &binding),
        &[
            "a ClusterRoleBinding gives ClusterRole deployer to Group gitlab:project:42 in every namespace",
            "only to ClusterRoles view",
        ],
    );
    let config =
        engine_with("policies:\n  ci-impersonation:\n    allowedClusterRoles: [view, deployer]\n");
    assert_allowed_silently(&create(&config, &view, &binding));
    let viewer = cluster_role_binding("view", "view", &[("Group", "gitlab:project:42")]);
    assert_allowed_silently(&create(&engine(), &view, &viewer));
}

#[test]
fn production_tier_groups_get_namespaced_role_bindings_only() {
    for group in [
        "gitlab:project_env_tier:42:production",
        "gitlab:group_env_tier:7:production",
    ] {
        let cluster_wide = cluster_role_binding("prod-view", "view", &[("Group", group)]);
        let message = assert_denied(
            &create(&engine(), &MemoryView::new(), &cluster_wide),
            &[group, "namespaced RoleBindings only"],
        );
        assert!(!message.contains("only to ClusterRoles"), "{message}");
        let namespaced = role_binding(
            "prod",
            "prod-view",
            "ClusterRole",
            "view",
            &[("Group", group)],
        );
        assert_allowed_silently(&create(&engine(), &MemoryView::new(), &namespaced));
    }
    let staging = cluster_role_binding(
        "staging-view",
        "view",
        &[("Group", "gitlab:project_env_tier:42:staging")],
    );
    assert_allowed_silently(&create(&engine(), &MemoryView::new(), &staging));
}

#[test]
fn each_default_verdict_can_be_configured() {
    let binding = cluster_role_binding("admin", "cluster-admin", &[("Group", "gitlab:ci_job")]);
    let warn_all = engine_with(
        "policies:\n  ci-impersonation:\n    broadRoles: warn\n    catchAllSubjects: warn\n    clusterRoleBindings: warn\n",
    );
    assert_warned(
        &create(&warn_all, &MemoryView::new(), &binding),
        &[
            "ClusterRole cluster-admin is broad",
            "catch-all group",
            "in every namespace",
        ],
    );
    let off = engine_with(
        "policies:\n  ci-impersonation:\n    broadRoles: off\n    catchAllSubjects: off\n    clusterRoleBindings: off\n",
    );
    assert_allowed_silently(&create(&off, &MemoryView::new(), &binding));
    // Rules are independent: turning one off leaves the others.
    let broad_off = engine_with("policies:\n  ci-impersonation:\n    broadRoles: off\n");
    let message = assert_denied(
        &create(&broad_off, &MemoryView::new(), &binding),
        &["catch-all"],
    );
    assert!(!message.contains("is broad"), "{message}");
    let bad = Config::from_yaml(
        "policies:\n  ci-impersonation:\n    broadRoles: maybe\n",
        "c.yaml",
    );
    assert!(
        bad.expect_err("bad value")
            .to_string()
            .contains("broadRoles")
    );
    let bad = Config::from_yaml(
        "policies:\n  ci-impersonation:\n    agentServiceAccounts: [agent]\n",
        "c.yaml",
    );
    assert!(
        bad.expect_err("bad account")
            .to_string()
            .contains("agentServiceAccounts[0]")
    );
}

#[test]
fn identities_that_only_look_like_gitlabs_are_not_judged() {
    for name in [
        "gitlab-ci",
        "xgitlab:ci_job",
        "gitlab:ci_jobs",
        "gitlab:project:abc",
        "system:masters",
    ] {
        for kind in ["Group", "User"] {
            let binding = cluster_role_binding("admin", "cluster-admin", &[(kind, name)]);
            assert_allowed_silently(&create(&engine(), &MemoryView::new(), &binding));
        }
    }
}

#[test]
fn a_user_subject_named_like_a_gitlab_group_is_judged_and_flagged() {
    let binding = cluster_role_binding("admin", "cluster-admin", &[("User", "gitlab:ci_job")]);
    assert_denied(
        &create(&engine(), &MemoryView::new(), &binding),
        &[
            "User gitlab:ci_job",
            "the agent sends gitlab:ci_job as a Group",
        ],
    );
}

// ---------------------------------------------------------------------------------------
// Aggregated ClusterRoles

const TO_VIEW: &str = "{rbac.authorization.k8s.io/aggregate-to-view: 'true'}";
const SECRETS_READ: &str = "[{apiGroups: [''], resources: [secrets], verbs: [get, list, watch]}]";

#[test]
fn aggregated_cluster_roles_are_resolved_through_their_selectors() {
    let binding = cluster_role_binding("ci-job-view", "view", &[("Group", "gitlab:ci_job")]);
    assert_allowed_silently(&create(&engine(), &MemoryView::new(), &binding));

    let leaky = cluster_role("secrets-viewer", TO_VIEW, SECRETS_READ);
    let view = view_with(&[leaky]);
    assert_denied(
        &create(&engine(), &view, &binding),
        &[
            "ClusterRole view is broad",
            "read of secrets",
            "(from ClusterRole secrets-viewer)",
        ],
    );

    // A custom aggregated role with its own selector, in the cluster.
    let custom = yaml(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: ci-deployer}\n\
         aggregationRule:\n  clusterRoleSelectors:\n  - matchExpressions: [{key: example.com/ci, operator: In, values: [deploy]}]\nrules: null\n",
    );
    let part = cluster_role(
        "ci-deployer-exec",
        "{example.com/ci: deploy}",
        "[{apiGroups: [''], resources: [pods/exec], verbs: [create]}]",
    );
    let view = view_with(&[custom, part]);
    let binding = role_binding("review", "ci", "ClusterRole", "ci-deployer", &[REVIEW_ENV]);
    assert_denied(
        &create(&engine(), &view, &binding),
        &["pods/exec", "from ClusterRole ci-deployer-exec"],
    );
}

#[test]
fn flux_view_aggregated_into_view_is_a_wildcard_read_judged_as_configured() {
    let flux_view = corpus("rbac/fluxcd+flux2/manifests/rbac/view.yaml").remove(0);
    let view = view_with(&[flux_view]);
    let binding = corpus("rbac/gitlab-docs/ci_cd_workflow__ci-job-view.yaml").remove(0);
    assert_denied(
        &create(&engine(), &view, &binding),
        &[
            "ClusterRole view is broad in every namespace",
            "`*` in resources (read of every resource of its API groups)",
            "(from ClusterRole flux-view)",
        ],
    );
    let warn = engine_with("policies:\n  ci-impersonation:\n    wildcardReads: warn\n");
    assert_warned(
        &create(&warn, &view, &binding),
        &["reads every resource of some API groups"],
    );
    let off = engine_with("policies:\n  ci-impersonation:\n    wildcardReads: off\n");
    assert_allowed_silently(&create(&off, &view, &binding));
    // Whatever the setting, a wildcard that writes or reaches the core group is broad.
    let core = cluster_role(
        "core-reader",
        TO_VIEW,
        "[{apiGroups: [''], resources: ['*'], verbs: [get]}]",
    );
    view.apply(&core).expect("applies");
    assert_denied(
        &create(&off, &view, &binding),
        &["`*` in resources", "read of secrets"],
    );
}

#[test]
fn aggregation_cycles_end() {
    let a = yaml(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: a, labels: {ring: 'true'}}\n\
         aggregationRule: {clusterRoleSelectors: [{matchLabels: {ring: 'true'}}]}\n",
    );
    let mut b = a.clone();
    b["metadata"]["name"] = json!("b");
    let view = view_with(&[a, b]);
    let binding = role_binding("review", "ring", "ClusterRole", "a", &[REVIEW_ENV]);
    assert_allowed_silently(&create(&engine(), &view, &binding));
}

#[test]
fn a_cluster_role_that_aggregates_into_a_bound_role_is_judged_by_what_it_adds() {
    let bound = cluster_role_binding("ci-job-view", "view", &[("Group", "gitlab:ci_job")]);
    let view = view_with(&[bound]);
    let leaky = cluster_role("secrets-viewer", TO_VIEW, SECRETS_READ);
    assert_denied(
        &create(&engine(), &view, &leaky),
        &[
            "ClusterRole secrets-viewer",
            "ClusterRole view, which aggregates ClusterRole secrets-viewer",
            "ClusterRoleBinding ci-job-view (Group gitlab:ci_job)",
            "read of secrets",
        ],
    );
    // Unbound, nobody is widened.
    assert_allowed_silently(&create(&engine(), &MemoryView::new(), &leaky));

    // Through two levels: aggregate-to-edit reaches edit, and edit aggregates into admin.
    let admin_bound = role_binding(
        "review",
        "admin",
        "ClusterRole",
        "admin",
        &[("Group", "gitlab:group:7")],
    );
    let view = view_with(&[admin_bound]);
    let crds = cluster_role(
        "crd-writer",
        "{rbac.authorization.k8s.io/aggregate-to-edit: 'true'}",
        "[{apiGroups: [apiextensions.k8s.io], resources: [customresourcedefinitions], verbs: [create]}]",
    );
    assert_denied(
        &create(&engine(), &view, &crds),
        &[
            "ClusterRole admin, which aggregates",
            "CustomResourceDefinitions",
        ],
    );

    // A label added to an existing broad role widens view just the same.
    let view = view_with(&[cluster_role_binding(
        "ci-job-view",
        "view",
        &[("Group", "gitlab:ci_job")],
    )]);
    let unlabelled = cluster_role("secrets-viewer", "{}", SECRETS_READ);
    view.apply(&unlabelled).expect("applies");
    let labelled = cluster_role("secrets-viewer", TO_VIEW, SECRETS_READ);
    assert_denied(
        &update(&engine(), &view, &unlabelled, &labelled),
        &["ClusterRole view, which aggregates"],
    );

    // A label bump on a role already aggregated adds nothing.
    let narrow_to_view = cluster_role(
        "extra-view",
        TO_VIEW,
        "[{apiGroups: [example.com], resources: [widgets], verbs: [get]}]",
    );
    view.apply(&narrow_to_view).expect("applies");
    let mut bumped = narrow_to_view.clone();
    bumped["metadata"]["labels"]["app.kubernetes.io/version"] = json!("2");
    assert_allowed_silently(&update(&engine(), &view, &narrow_to_view, &bumped));
}

#[test]
fn updates_by_the_aggregation_controller_are_reported_not_denied() {
    let view = view_with(&[cluster_role_binding(
        "ci-job-view",
        "view",
        &[("Group", "gitlab:ci_job")],
    )]);
    let old = yaml(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: view}\n\
         aggregationRule: {clusterRoleSelectors: [{matchLabels: {rbac.authorization.k8s.io/aggregate-to-view: 'true'}}]}\n\
         rules: [{apiGroups: [''], resources: [pods], verbs: [get]}]\n",
    );
    let mut new = old.clone();
    new["rules"] = yaml(
        "[{apiGroups: [''], resources: [pods], verbs: [get]}, {apiGroups: [''], resources: [secrets], verbs: [get]}]",
    );
    for controller in [
        "system:serviceaccount:kube-system:clusterrole-aggregation-controller",
        "system:kube-controller-manager",
    ] {
        let verdict = review_as(&engine(), &view, "UPDATE", &new, Some(&old), controller);
        assert_warned(
            &verdict,
            &[
                "clusterrole-aggregation controller",
                "never denied",
                "read of secrets",
            ],
        );
    }
    assert_denied(
        &update(&engine(), &view, &old, &new),
        &["this change makes ClusterRole view broad"],
    );
}

// ---------------------------------------------------------------------------------------
// Roles that change while bound

#[test]
fn a_role_made_broad_after_binding_is_denied() {
    let narrow = role("review", "deployer", DEPLOYER_RULES);
    let binding = role_binding("review", "deploy", "Role", "deployer", &[REVIEW_ENV]);
    let view = view_with(&[narrow.clone(), binding]);
    let broad = role(
        "review",
        "deployer",
        "[{apiGroups: [apps], resources: [deployments], verbs: [get, list, watch, create, update, patch]}, {apiGroups: [''], resources: [pods/exec], verbs: [create]}]",
    );
    assert_denied(
        &update(&engine(), &view, &narrow, &broad),
        &[
            "Role review/deployer:",
            "this change makes Role review/deployer broad",
            "RoleBinding review/deploy (Group gitlab:project_env:42:review)",
            "pods/exec",
        ],
    );

    // Narrowing a role that is already broad is not blocked, even if it stays broad.
    let broader = role(
        "review",
        "deployer",
        "[{apiGroups: [''], resources: [pods/exec, pods/attach], verbs: [create]}]",
    );
    let less = role(
        "review",
        "deployer",
        "[{apiGroups: [''], resources: [pods/exec], verbs: [create]}]",
    );
    assert_allowed_silently(&update(&engine(), &view, &broader, &less));

    // Bound to nobody from GitLab, a Role may hold what it likes.
    let other = view_with(&[
        narrow.clone(),
        role_binding("review", "ops", "Role", "deployer", &[("Group", "ops")]),
    ]);
    assert_allowed_silently(&update(&engine(), &other, &narrow, &broad));

    // The same for a ClusterRole bound in one namespace: secrets read is no breadth there.
    let reader = cluster_role("reader", "{}", DEPLOYER_RULES);
    let view = view_with(&[
        reader.clone(),
        role_binding("review", "read", "ClusterRole", "reader", &[REVIEW_ENV]),
    ]);
    let secrets = cluster_role("reader", "{}", SECRETS_READ);
    assert_allowed_silently(&update(&engine(), &view, &reader, &secrets));
    let exec = cluster_role(
        "reader",
        "{}",
        "[{apiGroups: [''], resources: [pods/exec], verbs: [create]}]",
    );
    assert_denied(
        &update(&engine(), &view, &reader, &exec),
        &["ClusterRole reader broad"],
    );
}

#[test]
fn binding_before_its_role_exists_fails_closed_until_the_view_has_the_role() {
    let view = MemoryView::new();
    let binding = role_binding("review", "deploy", "Role", "deployer", &[REVIEW_ENV]);
    assert_denied(
        &create(&engine(), &view, &binding),
        &[
            "Role review/deployer cannot be resolved",
            "does not exist",
            "fail closed",
            "unresolvedRole: warn",
        ],
    );
    // The server asks the API server for exactly this role before judging.
    let policy = fluxgate::policy::ci_impersonation::CiImpersonation;
    let body = review_body("CREATE", &binding, None, "kapi-admin");
    let request = admission::decode(body.as_bytes()).expect("review");
    assert_eq!(
        policy.prefetch(&request),
        [ObjectKey {
            group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            namespace: Some("review".into()),
            name: "deployer".into(),
        }]
    );

    view.set_synced(false);
    assert_denied(
        &create(&engine(), &view, &binding),
        &["cannot tell whether it exists"],
    );
    view.set_synced(true);

    view.apply(&role("review", "deployer", DEPLOYER_RULES))
        .expect("applies");
    assert_allowed_silently(&create(&engine(), &view, &binding));

    let warn = engine_with("policies:\n  ci-impersonation:\n    unresolvedRole: warn\n");
    let missing = role_binding("review", "deploy", "Role", "not-yet", &[REVIEW_ENV]);
    assert_warned(&create(&warn, &view, &missing), &["cannot be resolved"]);
}

#[test]
fn a_role_created_after_its_binding_is_judged_against_the_binding() {
    let view = view_with(&[role_binding(
        "review",
        "deploy",
        "Role",
        "deployer",
        &[REVIEW_ENV],
    )]);
    assert_allowed_silently(&create(
        &engine(),
        &view,
        &role("review", "deployer", DEPLOYER_RULES),
    ));
    let broad = role(
        "review",
        "deployer",
        "[{apiGroups: ['*'], resources: ['*'], verbs: ['*']}]",
    );
    assert_denied(
        &create(&engine(), &view, &broad),
        &[
            "makes Role review/deployer broad",
            "RoleBinding review/deploy",
        ],
    );
}

#[test]
fn prefetch_names_the_cluster_role_a_binding_refers_to() {
    let policy = fluxgate::policy::ci_impersonation::CiImpersonation;
    let binding =
        cluster_role_binding("ci", "flux-edit-flux-system", &[("Group", "gitlab:ci_job")]);
    let body = review_body("CREATE", &binding, None, "kapi-admin");
    let request = admission::decode(body.as_bytes()).expect("review");
    assert_eq!(
        policy.prefetch(&request),
        [ObjectKey {
            group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            namespace: None,
            name: "flux-edit-flux-system".into(),
        }]
    );
    let role = role("review", "deployer", DEPLOYER_RULES);
    let body = review_body("CREATE", &role, None, "kapi-admin");
    assert!(
        policy
            .prefetch(&admission::decode(body.as_bytes()).expect("review"))
            .is_empty()
    );
}

// ---------------------------------------------------------------------------------------
// Impersonation power

#[test]
fn impersonation_is_denied_to_anyone_but_the_agent() {
    let impersonator = cluster_role(
        "impersonator",
        "{}",
        "[{apiGroups: [''], resources: [users, groups], verbs: [impersonate]}]",
    );
    let view = view_with(&[impersonator]);
    let to_alice = cluster_role_binding("alice", "impersonator", &[("User", "alice")]);
    assert_denied(
        &create(&engine(), &view, &to_alice),
        &[
            "ClusterRole impersonator grants impersonation of users, groups to User alice",
            "key to every identity",
            "verbs: [\"impersonate\"]",
        ],
    );
    // A RoleBinding cannot hand out user impersonation, but naming it shows the intent.
    let namespaced = role_binding(
        "default",
        "alice",
        "ClusterRole",
        "impersonator",
        &[("User", "alice")],
    );
    assert_denied(
        &create(&engine(), &view, &namespaced),
        &["impersonation of users, groups"],
    );

    let agent = cluster_role_binding(
        "agent",
        "impersonator",
        &[("ServiceAccount", "gitlab-agent/gitlab-agent")],
    );
    assert_denied(
        &create(&engine(), &view, &agent),
        &["ServiceAccount gitlab-agent/gitlab-agent"],
    );
    let configured = engine_with(
        "policies:\n  ci-impersonation:\n    agentServiceAccounts: [gitlab-agent/gitlab-agent]\n",
    );
    assert_allowed_silently(&create(&configured, &view, &agent));
    let both = cluster_role_binding(
        "agent",
        "impersonator",
        &[
            ("ServiceAccount", "gitlab-agent/gitlab-agent"),
            ("User", "bob"),
        ],
    );
    let message = assert_denied(&create(&configured, &view, &both), &["to User bob"]);
    assert!(!message.contains("groups to ServiceAccount"), "{message}");

    // edit lets its holders impersonate the service accounts of its namespace by design;
    // cluster-wide that reaches the agent's service account.
    let edit_ns = role_binding(
        "team-a",
        "devs",
        "ClusterRole",
        "edit",
        &[("Group", "devs")],
    );
    assert_allowed_silently(&create(&engine(), &MemoryView::new(), &edit_ns));
    let edit_all = cluster_role_binding("devs", "edit", &[("Group", "devs")]);
    assert_denied(
        &create(&engine(), &MemoryView::new(), &edit_all),
        &[
            "impersonation of serviceaccounts",
            "system:aggregate-to-edit",
        ],
    );

    // Who may be cluster-admin is not this policy's call (Flux's controllers are).
    let admin = cluster_role_binding("alice-admin", "cluster-admin", &[("User", "alice")]);
    assert_allowed_silently(&create(&engine(), &MemoryView::new(), &admin));
}

#[test]
fn a_role_update_that_adds_impersonation_is_denied_while_bound() {
    let narrow = cluster_role("helper", "{}", DEPLOYER_RULES);
    let view = view_with(&[
        narrow.clone(),
        cluster_role_binding("helper", "helper", &[("User", "alice")]),
    ]);
    let widened = cluster_role(
        "helper",
        "{}",
        "[{apiGroups: [''], resources: [users], verbs: [impersonate]}]",
    );
    assert_denied(
        &update(&engine(), &view, &narrow, &widened),
        &[
            "this change makes ClusterRole helper grant impersonation of users",
            "ClusterRoleBinding helper (User alice)",
        ],
    );
}

// ---------------------------------------------------------------------------------------
// Requests as the API server sends them

#[test]
fn real_api_server_rbac_requests_get_their_expected_verdicts() {
    let read = |file: &str| std::fs::read(format!("{FIXTURES}/{file}")).expect("fixture");
    let view = MemoryView::new();
    let cases = [
        "role-create-imperative__capture-Role-CREATE.json",
        "rbac-create-clusterrole-clusterrolebinding-rolebinding__capture-ClusterRole-CREATE.json",
        "rbac-create-clusterrole-clusterrolebinding-rolebinding__capture-ClusterRoleBinding-CREATE.json",
        "rbac-create-clusterrole-clusterrolebinding-rolebinding__capture-RoleBinding-CREATE.json",
        "rolebinding-create-imperative-sa-subject__capture-RoleBinding-CREATE.json",
    ];
    for file in cases {
        let body = read(file);
        let request = admission::decode(&body).expect("real review decodes");
        let (verdict, _) = engine().review(Endpoint::Validate, &request, &view);
        assert!(
            verdict.evaluated.contains(&PolicyId::CiImpersonation),
            "{file}"
        );
        assert_allowed_silently(&verdict);
        let object: Value =
            serde_json::from_str(request.object.expect("object").get()).expect("json");
        view.apply(&object).expect("applies");
    }

    // The same requests with a GitLab identity among the subjects.
    let mut body: Value = serde_json::from_slice(&read(
        "rolebinding-create-imperative-sa-subject__capture-RoleBinding-CREATE.json",
    ))
    .expect("json");
    body["request"]["object"]["subjects"]
        .as_array_mut()
        .expect("subjects")
        .push(json!({"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "gitlab:ci_job"}));
    let bytes = serde_json::to_vec(&body).expect("json");
    let request = admission::decode(&bytes).expect("review");
    let (verdict, _) = engine().review(Endpoint::Validate, &request, &view);
    assert_denied(
        &verdict,
        &[
            "RoleBinding team-a/flux-reconciler",
            "ClusterRole cluster-admin is broad in namespace team-a",
            "Group gitlab:ci_job",
        ],
    );

    let mut body: Value = serde_json::from_slice(&read(
        "rbac-create-clusterrole-clusterrolebinding-rolebinding__capture-ClusterRoleBinding-CREATE.json",
    ))
    .expect("json");
    body["request"]["object"]["subjects"][0] = json!({"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "gitlab:project:42"});
    let bytes = serde_json::to_vec(&body).expect("json");
    let request = admission::decode(&bytes).expect("review");
    let (verdict, _) = engine().review(Endpoint::Validate, &request, &view);
    assert_denied(
        &verdict,
        &[
            "ClusterRoleBinding kapi-test-ocirepo-editor",
            "ClusterRole kapi-test-ocirepo-editor",
            "in every namespace",
        ],
    );
}

#[test]
fn an_update_that_leaves_subjects_and_role_ref_alone_is_not_judged() {
    let old = cluster_role_binding("legacy", "cluster-admin", &[("Group", "gitlab:ci_job")]);
    let mut new = old.clone();
    new["metadata"]["labels"] = json!({"team": "platform"});
    let verdict = update(&engine(), &MemoryView::new(), &old, &new);
    assert!(verdict.allowed && verdict.evaluated.is_empty());
    new["subjects"][0]["name"] = json!("gitlab:project:42");
    assert_denied(
        &update(&engine(), &MemoryView::new(), &old, &new),
        &["gitlab:project:42"],
    );
}

#[test]
fn a_malformed_binding_is_a_violation() {
    let mut binding = cluster_role_binding("broken", "view", &[("Group", "gitlab:ci_job")]);
    binding.as_object_mut().expect("object").remove("roleRef");
    assert_denied(
        &create(&engine(), &MemoryView::new(), &binding),
        &["malformed", "roleRef"],
    );
    let mut binding = cluster_role_binding("broken", "view", &[("Group", "gitlab:ci_job")]);
    binding["roleRef"]["kind"] = json!("Role");
    assert_denied(
        &create(&engine(), &MemoryView::new(), &binding),
        &["a roleRef must be a Role or ClusterRole"],
    );
}

#[test]
fn fluxgate_check_objects_are_judged_like_requests() {
    let binding = cluster_role_binding("admin", "cluster-admin", &[("Group", "gitlab:ci_job")]);
    let owned = OwnedObject::from_value(&binding).expect("object");
    let request = owned.as_create("check");
    let (verdict, _) = engine().review(Endpoint::Validate, &request, &MemoryView::new());
    assert_denied(
        &verdict,
        &["ClusterRoleBinding admin binds ClusterRole cluster-admin"],
    );
}

// ---------------------------------------------------------------------------------------
// Performance

/// Fills a view with `n` RBAC objects in the shapes a large cluster has: a quarter each of
/// Roles, RoleBindings, labelled ClusterRoles and ClusterRoleBindings.
fn fill(view: &MemoryView, n: usize) {
    let rules = yaml(DEPLOYER_RULES);
    for i in 0..n / 4 {
        let ns = format!("team-{}", i % 500);
        let mut role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": format!("role-{i}"), "namespace": ns}});
        role["rules"] = rules.clone();
        let mut cluster_role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": format!("cr-{i}"), "labels": {"team": format!("t{}", i % 500)}}});
        cluster_role["rules"] = rules.clone();
        for object in [
            role,
            role_binding(
                &ns,
                &format!("rb-{i}"),
                "Role",
                &format!("role-{i}"),
                &[("Group", "devs")],
            ),
            cluster_role,
            cluster_role_binding(
                &format!("crb-{i}"),
                &format!("cr-{i}"),
                &[("User", "someone")],
            ),
        ] {
            view.apply(&object).expect("applies");
        }
    }
    view.apply(&cluster_role_binding(
        "ci-job-view",
        "view",
        &[("Group", "gitlab:ci_job")],
    ))
    .expect("applies");
}

/// The time one review takes, averaged over the request shapes that touch the RBAC index:
/// a RoleBinding (role lookup), a ClusterRoleBinding of an aggregated role (selector
/// lookups) and a ClusterRole labelled to aggregate (aggregators and bindings lookups).
fn time_per_review(engine: &Engine, view: &MemoryView) -> std::time::Duration {
    let leaky = cluster_role("secrets-viewer", TO_VIEW, SECRETS_READ);
    let bodies = [
        review_body(
            "CREATE",
            &role_binding("team-7", "deploy", "Role", "role-7", &[REVIEW_ENV]),
            None,
            "u",
        ),
        review_body(
            "CREATE",
            &cluster_role_binding("ci-job-view", "view", &[("Group", "gitlab:ci_job")]),
            None,
            "u",
        ),
        review_body("CREATE", &leaky, None, "u"),
    ];
    let rounds = 100;
    let started = Instant::now();
    for _ in 0..rounds {
        for body in &bodies {
            let request = admission::decode(body.as_bytes()).expect("review");
            let (verdict, _) = engine.review(Endpoint::Validate, &request, view);
            assert!(verdict.evaluated.contains(&PolicyId::CiImpersonation));
        }
    }
    started.elapsed() / (rounds * bodies.len() as u32)
}

/// 100k RBAC objects must not slow the request path: every lookup is indexed, so a review
/// costs about what it costs in a small cluster. A scan would make it ~100 times slower.
#[test]
fn a_hundred_thousand_rbac_objects_do_not_slow_reviews() {
    let engine = engine();
    let small = MemoryView::new();
    fill(&small, 1_000);
    let large = MemoryView::new();
    let started = Instant::now();
    fill(&large, 100_000);
    let filled = started.elapsed();
    // The leaky ClusterRole is denied in both: the lookups found the bound view.
    let leaky = cluster_role("secrets-viewer", TO_VIEW, SECRETS_READ);
    assert!(!create(&engine, &large, &leaky).allowed);

    let _warm_up = time_per_review(&engine, &small);
    let small_time = time_per_review(&engine, &small);
    let large_time = time_per_review(&engine, &large);
    println!(
        "filled 100k RBAC objects in {filled:?}; per review: {small_time:?} with 1k objects, {large_time:?} with 100k"
    );
    assert!(
        large_time < small_time * 5 + std::time::Duration::from_micros(500),
        "{large_time:?} with 100k objects vs {small_time:?} with 1k"
    );
}
