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
use fluxgate::rbac::Reach;
use serde_json::{Value, json};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/corpus");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/admission");
const MANAGED_RESOURCES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/gitlab-managed-resources"
);

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

/// The namespace GitLab's environment template makes for environment `review` of project
/// 42 through agent 7, and that environment's identity.
const ENV_NS: &str = "review-42-7";
const PROJECT: (&str, &str) = ("Group", "gitlab:project:42");

/// Flux's own RBAC as `flux install` applies it (`manifests/rbac`): flux-view aggregates
/// into view, edit and admin; flux-edit into edit and admin.
fn flux_installed() -> Vec<Value> {
    let mut objects = Vec::new();
    for file in [
        "controller.yaml",
        "edit.yaml",
        "view.yaml",
        "reconciler.yaml",
    ] {
        objects.extend(corpus(&format!("rbac/fluxcd+flux2/manifests/rbac/{file}")));
    }
    objects
}

/// GitLab's environment template (tests/fixtures/gitlab-managed-resources/), rendered the
/// way the agent renders it: `.environment.slug`, `.project.id`, `.agent.id`.
fn environment_template(slug: &str, project: &str, agent: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(format!(
        "{MANAGED_RESOURCES}/environment-template-default.yaml"
    ))
    .expect("template")
    .replace("{{ .environment.slug }}", slug)
    .replace("{{ .project.id }}", project)
    .replace("{{ .agent.id }}", agent);
    let template = yaml(&text);
    template["objects"].as_array().expect("objects").clone()
}

/// A Deployment that runs agentk as a ServiceAccount.
fn agent_deployment(namespace: &str, account: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "gitlab-agent-v2", "namespace": namespace},
        "spec": {"template": {"spec": {
            "serviceAccountName": account,
            "containers": [{
                "name": "agent",
                "image": "registry.gitlab.com/gitlab-org/cluster-integration/gitlab-agent/agentk:v17.3.1",
                "args": ["--token-file=/etc/agentk/secrets/token"]
            }]
        }}}
    })
}

/// An engine that lets the candidate ClusterRole be bound cluster-wide, so that only its
/// breadth is judged there.
fn breadth_engine() -> Engine {
    engine_with("policies:\n  ci-impersonation:\n    allowedClusterRoles: [view, candidate]\n")
}

/// A binding of ClusterRole `candidate` at each reach, for identities judged there:
/// one environment in its own namespace; a whole project in an ordinary one, in kube-system;
/// and cluster-wide.
fn binding_at(reach: Reach) -> Value {
    match reach {
        Reach::Environment => {
            role_binding(ENV_NS, "deploy", "ClusterRole", "candidate", &[REVIEW_ENV])
        }
        Reach::Namespace => {
            role_binding("team-a", "deploy", "ClusterRole", "candidate", &[PROJECT])
        }
        Reach::Protected => role_binding(
            "kube-system",
            "deploy",
            "ClusterRole",
            "candidate",
            &[PROJECT],
        ),
        Reach::Cluster => cluster_role_binding("deploy", "candidate", &[PROJECT]),
    }
}

const REACHES: [Reach; 4] = [
    Reach::Environment,
    Reach::Namespace,
    Reach::Protected,
    Reach::Cluster,
];

/// Every escalation path of Kubernetes' RBAC good practices: (rule, the right the message
/// names, the narrowest reach where it is broad).
const ESCALATION_PATHS: &[(&str, &str, Reach)] = &[
    // Listing secrets.
    (
        "{apiGroups: [''], resources: [secrets], verbs: [list]}",
        "read of secrets",
        Reach::Protected,
    ),
    (
        "{apiGroups: [''], resources: [secrets], verbs: [watch]}",
        "read of secrets",
        Reach::Protected,
    ),
    // Workload creation, and the ways into running pods.
    (
        "{apiGroups: [''], resources: [pods], verbs: [create]}",
        "workload creation",
        Reach::Protected,
    ),
    (
        "{apiGroups: [apps], resources: [deployments], verbs: [patch]}",
        "workload creation",
        Reach::Protected,
    ),
    (
        "{apiGroups: [batch], resources: [cronjobs], verbs: ['*']}",
        "workload creation",
        Reach::Protected,
    ),
    (
        "{apiGroups: [kustomize.toolkit.fluxcd.io], resources: [kustomizations], verbs: [create]}",
        "writes to Flux objects",
        Reach::Protected,
    ),
    (
        "{apiGroups: [source.toolkit.fluxcd.io], resources: ['*'], verbs: [update]}",
        "writes to Flux objects",
        Reach::Protected,
    ),
    (
        "{apiGroups: [''], resources: [pods/exec], verbs: [get]}",
        "pods/exec",
        Reach::Namespace,
    ),
    (
        "{apiGroups: [''], resources: [pods/attach], verbs: [create]}",
        "pods/attach",
        Reach::Namespace,
    ),
    (
        "{apiGroups: [''], resources: [pods/ephemeralcontainers], verbs: [patch]}",
        "pods/ephemeralcontainers",
        Reach::Namespace,
    ),
    // Persistent volume creation.
    (
        "{apiGroups: [''], resources: [persistentvolumes], verbs: [create]}",
        "PersistentVolumes",
        Reach::Cluster,
    ),
    // Access to the proxy subresource of nodes: get is enough.
    (
        "{apiGroups: [''], resources: [nodes/proxy], verbs: [get]}",
        "nodes/proxy",
        Reach::Cluster,
    ),
    // Escalate, bind, impersonate.
    (
        "{apiGroups: [rbac.authorization.k8s.io], resources: [roles], verbs: [escalate]}",
        "escalate",
        Reach::Environment,
    ),
    (
        "{apiGroups: [rbac.authorization.k8s.io], resources: [clusterroles], verbs: [bind]}",
        "bind",
        Reach::Environment,
    ),
    (
        "{apiGroups: [''], resources: [users, groups], verbs: [impersonate]}",
        "impersonation of users, groups",
        Reach::Environment,
    ),
    (
        "{apiGroups: [''], resources: [serviceaccounts], verbs: [impersonate]}",
        "impersonation of serviceaccounts",
        Reach::Protected,
    ),
    // CSRs and certificate issuing.
    (
        "{apiGroups: [certificates.k8s.io], resources: [certificatesigningrequests/approval], verbs: [update]}",
        "CertificateSigningRequests",
        Reach::Cluster,
    ),
    (
        "{apiGroups: [certificates.k8s.io], resources: [signers], resourceNames: [kubernetes.io/kube-apiserver-client], verbs: [approve]}",
        "CertificateSigningRequests",
        Reach::Cluster,
    ),
    // Token request, and the Secret that gets a token.
    (
        "{apiGroups: [''], resources: [serviceaccounts/token], verbs: [create]}",
        "serviceaccounts/token",
        Reach::Protected,
    ),
    (
        "{apiGroups: [''], resources: [secrets], verbs: [create]}",
        "writes to secrets",
        Reach::Protected,
    ),
    // Control admission webhooks (and admission policies).
    (
        "{apiGroups: [admissionregistration.k8s.io], resources: [validatingwebhookconfigurations], verbs: [delete]}",
        "admission webhook",
        Reach::Cluster,
    ),
    (
        "{apiGroups: [admissionregistration.k8s.io], resources: [mutatingwebhookconfigurations], verbs: [patch]}",
        "admission webhook",
        Reach::Cluster,
    ),
    (
        "{apiGroups: [admissionregistration.k8s.io], resources: [validatingadmissionpolicies, validatingadmissionpolicybindings], verbs: [create]}",
        "admission policies",
        Reach::Cluster,
    ),
    // Namespace modification: a RoleBinding grants it on its own Namespace.
    (
        "{apiGroups: [''], resources: [namespaces], verbs: [patch]}",
        "namespaces",
        Reach::Environment,
    ),
    // RBAC itself, and extending the API.
    (
        "{apiGroups: [rbac.authorization.k8s.io], resources: [rolebindings], verbs: [create]}",
        "writes to RBAC objects",
        Reach::Namespace,
    ),
    (
        "{apiGroups: [rbac.authorization.k8s.io], resources: [clusterrolebindings], verbs: [deletecollection]}",
        "writes to RBAC objects",
        Reach::Cluster,
    ),
    (
        "{apiGroups: [apiextensions.k8s.io], resources: [customresourcedefinitions], verbs: [create]}",
        "CustomResourceDefinitions",
        Reach::Cluster,
    ),
    (
        "{apiGroups: [apiregistration.k8s.io], resources: [apiservices], verbs: [update]}",
        "APIServices",
        Reach::Cluster,
    ),
    (
        "{nonResourceURLs: ['*'], verbs: [get]}",
        "nonResourceURLs `*`",
        Reach::Cluster,
    ),
    // Wildcards reach every path.
    (
        "{apiGroups: ['*'], resources: ['*'], verbs: ['*']}",
        "the escalate verb",
        Reach::Environment,
    ),
    (
        "{apiGroups: [''], resources: ['*'], verbs: [get]}",
        "pods/exec",
        Reach::Namespace,
    ),
];

// ---------------------------------------------------------------------------------------
// What is broad, and where: the escalation paths of Kubernetes' RBAC good practices

#[test]
fn each_escalation_path_is_denied_where_it_is_broad_and_allowed_where_it_is_not() {
    let engine = breadth_engine();
    for (rule, right, broad_from) in ESCALATION_PATHS {
        let view = view_with(&[cluster_role("candidate", "{}", &format!("[{rule}]"))]);
        for reach in REACHES {
            let verdict = create(&engine, &view, &binding_at(reach));
            if reach >= *broad_from {
                let message = assert_denied(&verdict, &["ClusterRole candidate is broad", right]);
                assert!(message.contains("rule {"), "{rule}: {message}");
            } else {
                assert!(
                    verdict.allowed && findings(&verdict).is_empty(),
                    "{rule} at {reach:?}: {:?}",
                    findings(&verdict)
                );
            }
        }
    }
}

#[test]
fn the_message_says_where_the_binding_reaches() {
    let engine = breadth_engine();
    let view = view_with(&[cluster_role(
        "candidate",
        "{}",
        "[{apiGroups: [''], resources: [serviceaccounts/token], verbs: [create]}]",
    )]);
    assert_denied(
        &create(&engine, &view, &binding_at(Reach::Protected)),
        &["is broad in the protected namespace kube-system (listed in protectedNamespaces)"],
    );
    assert_denied(
        &create(&engine, &view, &binding_at(Reach::Cluster)),
        &["is broad in every namespace"],
    );
    let exec = view_with(&[cluster_role(
        "candidate",
        "{}",
        "[{apiGroups: [''], resources: [pods/exec], verbs: [create]}]",
    )]);
    assert_denied(
        &create(&engine, &exec, &binding_at(Reach::Namespace)),
        &[
            "is broad in namespace team-a:",
            "pods/exec (commands in running pods)",
        ],
    );
}

#[test]
fn every_escalation_path_reaching_a_gitlab_identity_through_view_aggregation_is_denied() {
    let engine = engine();
    let ci_job_view = corpus("rbac/gitlab-docs/ci_cd_workflow__ci-job-view.yaml").remove(0);
    for (rule, right, _) in ESCALATION_PATHS {
        let widening = cluster_role("widening", TO_VIEW, &format!("[{rule}]"));
        // When the aggregated role is applied, with GitLab's binding of view in place.
        let view = view_with(std::slice::from_ref(&ci_job_view));
        assert_denied(
            &create(&engine, &view, &widening),
            &[
                "ClusterRole view, which aggregates ClusterRole widening",
                "ClusterRoleBinding ci-job-view (Group gitlab:ci_job)",
                right,
            ],
        );
        // And a binding of view once the aggregated role is there.
        let view = view_with(&[widening]);
        assert_denied(
            &create(&engine, &view, &ci_job_view),
            &[
                "ClusterRole view is broad in every namespace",
                "(from ClusterRole widening)",
                right,
            ],
        );
    }
}

#[test]
fn every_escalation_path_reaching_every_identity_through_system_authenticated_is_denied() {
    let engine = engine();
    for (rule, right, _) in ESCALATION_PATHS {
        let view = view_with(&[cluster_role("candidate", "{}", &format!("[{rule}]"))]);
        let everyone = cluster_role_binding(
            "everyone",
            "candidate",
            &[("Group", "system:authenticated")],
        );
        assert_denied(
            &create(&engine, &view, &everyone),
            &[
                "Group system:authenticated includes every identity the GitLab agent impersonates",
                right,
            ],
        );
    }
    // Kubernetes' own bindings for that group are narrow.
    let discovery = cluster_role_binding(
        "system:discovery",
        "system:discovery",
        &[("Group", "system:authenticated")],
    );
    let role = cluster_role(
        "system:discovery",
        "{}",
        "[{nonResourceURLs: [/api, /api/*, /apis, /apis/*, /healthz, /livez, /openapi, /openapi/*, /readyz, /version, /version/], verbs: [get]}]",
    );
    assert_allowed_silently(&create(&engine, &view_with(&[role]), &discovery));
}

#[test]
fn rights_that_mean_the_same_get_the_same_verdict() {
    let engine = breadth_engine();
    let spelled = [
        "[{apiGroups: [apps], resources: [deployments], verbs: ['*']}]",
        "[{apiGroups: [apps], resources: [deployments], verbs: [get, list, watch, create, update, patch, delete, deletecollection]}]",
        "[{apiGroups: ['*'], resources: [deployments], verbs: [create]}]",
    ];
    for reach in REACHES {
        let verdicts: Vec<bool> = spelled
            .iter()
            .map(|rules| {
                let view = view_with(&[cluster_role("candidate", "{}", rules)]);
                create(&engine, &view, &binding_at(reach)).allowed
            })
            .collect();
        assert!(
            verdicts.iter().all(|v| *v == verdicts[0]),
            "{reach:?}: {verdicts:?}"
        );
        assert_eq!(verdicts[0], reach < Reach::Protected, "{reach:?}");
    }
}

// ---------------------------------------------------------------------------------------
// GitLab's documented setups, Kubernetes' default roles and Flux's own install

#[test]
fn gitlabs_ci_job_view_binding_passes_with_flux_installed() {
    let engine = engine();
    let view = view_with(&flux_installed());
    for file in [
        "ci_cd_workflow__ci-job-view.yaml",
        "getting_started__gitlab-user-read.yaml",
        "user_access__my-cluster-role-binding.yaml",
    ] {
        let binding = corpus(&format!("rbac/gitlab-docs/{file}")).remove(0);
        assert_allowed_silently(&create(&engine, &view, &binding));
    }
    // Flux's roles are applied after the binding just as well.
    let view = view_with(&[corpus("rbac/gitlab-docs/ci_cd_workflow__ci-job-view.yaml").remove(0)]);
    for object in flux_installed() {
        assert_allowed_silently(&create(&engine, &view, &object));
        view.apply(&object).expect("applies");
    }
}

#[test]
fn the_wildcard_read_flux_view_adds_to_view_is_reported_only_when_configured() {
    let view = view_with(&flux_installed());
    let binding = corpus("rbac/gitlab-docs/ci_cd_workflow__ci-job-view.yaml").remove(0);
    let warn = engine_with("policies:\n  ci-impersonation:\n    wildcardReads: warn\n");
    assert_warned(
        &create(&warn, &view, &binding),
        &[
            "reads every resource of some API groups",
            "(from ClusterRole flux-view)",
        ],
    );
    let deny = engine_with("policies:\n  ci-impersonation:\n    wildcardReads: deny\n");
    assert_denied(
        &create(&deny, &view, &binding),
        &["`*` in resources (read of every resource of its API groups)"],
    );
    // Whatever the setting, a wildcard read that reaches secrets is broad.
    let core = cluster_role(
        "core-reader",
        TO_VIEW,
        "[{apiGroups: [''], resources: ['*'], verbs: [get]}]",
    );
    view.apply(&core).expect("applies");
    assert_denied(
        &create(&engine(), &view, &binding),
        &["read of secrets", "(from ClusterRole core-reader)"],
    );
}

#[test]
fn gitlabs_environment_template_passes_with_flux_installed() {
    let engine = engine();
    for flux in [false, true] {
        let view = view_with(&if flux { flux_installed() } else { Vec::new() });
        // The agent applies the objects in order, as its CI job identity.
        for object in environment_template("review", "42", "7") {
            let verdict = review_as(
                &engine,
                &view,
                "CREATE",
                &object,
                None,
                "gitlab:ci_job:4711",
            );
            assert_allowed_silently(&verdict);
            view.apply(&object).expect("applies");
        }
        // And again when the environment is restarted: the binding already in the cluster
        // does not count as another one in its namespace.
        let binding = environment_template("review", "42", "7").remove(1);
        let mut old = binding.clone();
        old["subjects"]
            .as_array_mut()
            .expect("subjects")
            .push(json!({"kind": "ServiceAccount", "name": "deployer", "namespace": ENV_NS}));
        let verdict = update(&engine, &view, &old, &binding);
        assert!(verdict.evaluated.contains(&PolicyId::CiImpersonation));
        assert_allowed_silently(&verdict);
    }
    // Several environments and projects, each in its own namespace.
    let view = view_with(&flux_installed());
    for (slug, project) in [("review", "42"), ("staging", "42"), ("production", "43")] {
        for object in environment_template(slug, project, "7") {
            assert_allowed_silently(&create(&engine, &view, &object));
            view.apply(&object).expect("applies");
        }
    }
}

#[test]
fn the_environment_binding_is_still_judged_for_what_escapes_its_namespace() {
    let engine = engine();
    let binding = environment_template("review", "42", "7").remove(1);
    let ns = binding["metadata"]["namespace"]
        .as_str()
        .expect("ns")
        .to_string();
    // A ClusterRole aggregated into admin that relabels the namespace (Pod Security) or
    // binds any role widens every environment's admin.
    for (rule, right) in [
        (
            "{apiGroups: [''], resources: [namespaces], verbs: [patch]}",
            "namespaces",
        ),
        (
            "{apiGroups: [rbac.authorization.k8s.io], resources: [clusterroles], verbs: [bind]}",
            "bind",
        ),
    ] {
        let widening = cluster_role(
            "widening",
            "{rbac.authorization.k8s.io/aggregate-to-admin: 'true'}",
            &format!("[{rule}]"),
        );
        let view = view_with(std::slice::from_ref(&widening));
        assert_denied(
            &create(&engine, &view, &binding),
            &[
                &format!("ClusterRole admin is broad in namespace {ns}, the environment's own"),
                right,
            ],
        );
        let view = view_with(std::slice::from_ref(&binding));
        assert_denied(
            &create(&engine, &view, &widening),
            &[
                "ClusterRole admin, which aggregates ClusterRole widening",
                right,
            ],
        );
    }
}

#[test]
fn a_namespace_is_an_environments_own_only_by_facts_a_requester_cannot_name() {
    let engine = engine();
    let env =
        |ns: &str, who: &[(&str, &str)]| role_binding(ns, "bind", "ClusterRole", "admin", who);
    // The environment's own namespace: admin passes.
    assert_allowed_silently(&create(
        &engine,
        &MemoryView::new(),
        &env(ENV_NS, &[REVIEW_ENV]),
    ));
    // Protected namespaces, whatever they are called.
    for ns in [
        "kube-system",
        "kube-public",
        "flux-system",
        "fluxgate-system",
        "gitlab-agent",
    ] {
        assert_denied(
            &create(&engine, &MemoryView::new(), &env(ns, &[REVIEW_ENV])),
            &["in the protected namespace", "pods/exec"],
        );
    }
    let platform = engine_with(
        "policies:\n  tenant-lockdown:\n    platformNamespaces: [flux-system, platform]\n",
    );
    assert_denied(
        &create(
            &platform,
            &MemoryView::new(),
            &env("platform", &[REVIEW_ENV]),
        ),
        &["tenant-lockdown's platformNamespaces"],
    );
    let agent_ns = engine_with(
        "policies:\n  ci-impersonation:\n    agentServiceAccounts: [agents/gitlab-agent]\n",
    );
    assert_denied(
        &create(&agent_ns, &MemoryView::new(), &env("agents", &[REVIEW_ENV])),
        &["the namespace of agentServiceAccounts"],
    );
    // The namespace the cluster view sees agentk run in.
    let agent = agent_deployment("ops", "gitlab-agent");
    assert_denied(
        &create(&engine, &view_with(&[agent]), &env("ops", &[REVIEW_ENV])),
        &["the GitLab agent runs there"],
    );
    // A namespace another environment or project is bound in is neither's own.
    let shared = view_with(&[role_binding(
        ENV_NS,
        "other",
        "ClusterRole",
        "view",
        &[("Group", "gitlab:project_env:43:production")],
    )]);
    assert_denied(
        &create(&engine, &shared, &env(ENV_NS, &[REVIEW_ENV])),
        &[
            "not gitlab:project_env:42:review's own namespace",
            "RoleBinding review-42-7/other gives gitlab:project_env:43:production power there too",
        ],
    );
    // The catch-all groups every job carries do not make it shared.
    let viewers = view_with(&[role_binding(
        ENV_NS,
        "jobs",
        "ClusterRole",
        "view",
        &[("Group", "gitlab:ci_job")],
    )]);
    assert_allowed_silently(&create(&engine, &viewers, &env(ENV_NS, &[REVIEW_ENV])));
    // One environment identity only: two, a whole project, or every identity are not one
    // environment.
    for who in [
        vec![REVIEW_ENV, ("Group", "gitlab:project_env:42:production")],
        vec![REVIEW_ENV, PROJECT],
        vec![REVIEW_ENV, ("Group", "system:authenticated")],
        vec![PROJECT],
        vec![("Group", "gitlab:group:7")],
        vec![("User", "gitlab:project_env:42:review")],
    ] {
        assert_denied(
            &create(&engine, &MemoryView::new(), &env(ENV_NS, &who)),
            &["pods/exec"],
        );
    }
    // Names and labels play no part: the template's own labels on a shared namespace do not
    // make it the environment's.
    let mut labelled = env(ENV_NS, &[REVIEW_ENV]);
    labelled["metadata"]["labels"] = json!({"agent.gitlab.com/env-review-42-7": ""});
    assert_denied(
        &create(&engine, &shared, &labelled),
        &["not gitlab:project_env:42:review's own"],
    );
    // The setting turns the environment's own namespace off.
    let narrow = engine_with("policies:\n  ci-impersonation:\n    environmentNamespaces: deny\n");
    assert_denied(
        &create(&narrow, &MemoryView::new(), &env(ENV_NS, &[REVIEW_ENV])),
        &["environmentNamespaces: deny", "pods/exec"],
    );
}

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

/// The chart's objects as Helm applies them: namespaced objects in the release namespace.
fn agent_chart(file: &str, namespace: &str) -> Vec<Value> {
    let mut objects = corpus(&format!("gitlab-agent/rendered/{file}"));
    for object in &mut objects {
        let kind = object["kind"].as_str().unwrap_or_default();
        if !matches!(kind, "ClusterRole" | "ClusterRoleBinding")
            && object["metadata"]["namespace"].is_null()
        {
            object["metadata"]["namespace"] = json!(namespace);
        }
    }
    objects
}

#[test]
fn the_agent_charts_cluster_admin_binding_gets_a_warning_once_the_agent_is_known() {
    let objects = agent_chart(
        "release-test__ns-gitlab-agent-test.yaml",
        "gitlab-agent-test",
    );
    let is_admin =
        |o: &Value| o["metadata"]["name"] == "gitlab-agent-test:test-gitlab-agent-cluster-admin";
    let admin = objects
        .iter()
        .find(|o| is_admin(o))
        .expect("binding")
        .clone();
    // In the order Helm applies them, the binding comes before the Deployment: fluxgate
    // cannot tell yet whose account it is, and cluster-admin for a ServiceAccount is not this
    // policy's call.
    let view = MemoryView::new();
    for object in &objects {
        assert_allowed_silently(&create(&engine(), &view, object));
        view.apply(object).expect("applies");
    }
    // Once the Deployment runs agentk as that account (an upgrade, the audit scan), the
    // binding is the agent's, and its cluster-admin is worth a warning.
    let verdict = create(&engine(), &view, &admin);
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
}

#[test]
fn the_agents_impersonation_binding_is_recognised_by_the_agents_service_account() {
    let impersonate = cluster_role(
        "gitlab-agent-impersonate",
        "{}",
        "[{apiGroups: [''], resources: [users, groups, serviceaccounts], verbs: [impersonate]}]",
    );
    let chart_binding = |name: &str, account: &str| {
        let mut binding = cluster_role_binding(
            name,
            "gitlab-agent-impersonate",
            &[("ServiceAccount", account)],
        );
        binding["metadata"]["labels"] = json!({"app.kubernetes.io/name": "gitlab-agent"});
        binding
    };
    let chart = chart_binding(
        "gitlab-agent:gitlab-agent-gitlab-agent-impersonate",
        "gitlab-agent/gitlab-agent",
    );
    // The cluster view knows the account the agent runs as.
    let view = view_with(&[
        impersonate.clone(),
        agent_deployment("gitlab-agent", "gitlab-agent"),
    ]);
    assert_allowed_silently(&create(&engine(), &view, &chart));
    let plain = cluster_role_binding(
        "agent-impersonate",
        "gitlab-agent-impersonate",
        &[("ServiceAccount", "gitlab-agent/gitlab-agent")],
    );
    assert_allowed_silently(&create(&engine(), &view, &plain));

    // The chart's label and name pattern are claims anyone can write: another account
    // labelled and named like the chart's binding gets nothing.
    let spoof = chart_binding(
        "team-a:intruder-gitlab-agent-impersonate",
        "team-a/intruder",
    );
    assert_denied(
        &create(&engine(), &view, &spoof),
        &["impersonation of users, groups, serviceaccounts to ServiceAccount team-a/intruder"],
    );
    // Before the agent runs (a first Helm install), the account must be configured.
    let empty = view_with(&[impersonate]);
    assert_denied(
        &create(&engine(), &empty, &chart),
        &["list it in agentServiceAccounts"],
    );
    let configured = engine_with(
        "policies:\n  ci-impersonation:\n    agentServiceAccounts: [gitlab-agent/gitlab-agent]\n",
    );
    assert_allowed_silently(&create(&configured, &empty, &chart));
    // A workload that only claims to be the agent by its labels is not running agentk.
    let mut pretender = agent_deployment("team-a", "intruder");
    pretender["spec"]["template"]["spec"]["containers"][0]["image"] = json!("busybox");
    pretender["metadata"]["labels"] = json!({"app.kubernetes.io/name": "gitlab-agent-fake"});
    let view = view_with(&[pretender]);
    view.apply(&cluster_role(
        "gitlab-agent-impersonate",
        "{}",
        "[{apiGroups: [''], resources: [users, groups, serviceaccounts], verbs: [impersonate]}]",
    ))
    .expect("applies");
    assert!(!create(&engine(), &view, &spoof).allowed);
}

// ---------------------------------------------------------------------------------------
// What: broad roles

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
    let edit = role_binding("team-a", "edit", "ClusterRole", "edit", &[PROJECT]);
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
        &["the escalate verb", "through `*`", "more"],
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
    // A role listed as read-only must be: what it grants counts, not its name.
    view.apply(&role(
        "review",
        "pod-reader",
        "[{apiGroups: [''], resources: [pods, pods/log], verbs: [get, list, watch]}]",
    ))
    .expect("applies");
    let config = engine_with(
        "policies:\n  ci-impersonation:\n    readOnlyRoles: [view, review/pod-reader, review/deployer]\n",
    );
    let reader = role_binding(
        "review",
        "read",
        "Role",
        "pod-reader",
        &[("Group", "gitlab:ci_job")],
    );
    assert_allowed_silently(&create(&config, &view, &reader));
    let narrow = role_binding(
        "review",
        "deploy",
        "Role",
        "deployer",
        &[("Group", "gitlab:ci_job")],
    );
    assert_denied(
        &create(&config, &view, &narrow),
        &[
            "Role review/deployer is listed in readOnlyRoles, but it grants writes",
            "Group gitlab:ci_job",
        ],
    );
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
    // Listed, it is judged by what it grants in every namespace: workload creation there.
    let config = engine_with(
        "policies:\n  ci-impersonation:\n    allowedClusterRoles: [view, deployer, lister]\n",
    );
    let message = assert_denied(
        &create(&config, &view, &binding),
        &[
            "ClusterRole deployer is broad in every namespace",
            "workload creation",
        ],
    );
    assert!(!message.contains("only to ClusterRoles"), "{message}");
    view.apply(&cluster_role(
        "lister",
        "{}",
        "[{apiGroups: [apps], resources: [deployments], verbs: [get, list, watch]}]",
    ))
    .expect("applies");
    let lister = cluster_role_binding("list", "lister", &[("Group", "gitlab:project:42")]);
    assert_allowed_silently(&create(&config, &view, &lister));
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
    let binding = role_binding("team-a", "ci", "ClusterRole", "ci-deployer", &[PROJECT]);
    assert_denied(
        &create(&engine(), &view, &binding),
        &["pods/exec", "from ClusterRole ci-deployer-exec"],
    );
}

#[test]
fn a_read_only_role_that_aggregation_gives_writes_is_no_longer_read_only() {
    let engine = engine();
    let ci_job_view = corpus("rbac/gitlab-docs/ci_cd_workflow__ci-job-view.yaml").remove(0);
    // Writing ConfigMaps opens no escalation path, but view is what the catch-all group may
    // hold because it only reads.
    let writer = cluster_role(
        "configmap-writer",
        TO_VIEW,
        "[{apiGroups: [''], resources: [configmaps], verbs: [create, patch]}]",
    );
    assert_denied(
        &create(
            &engine,
            &view_with(std::slice::from_ref(&ci_job_view)),
            &writer,
        ),
        &[
            "this change makes ClusterRole view, which aggregates ClusterRole configmap-writer",
            "grant writes, but it is listed in readOnlyRoles",
            "ClusterRoleBinding ci-job-view (Group gitlab:ci_job)",
        ],
    );
    assert_denied(
        &create(
            &engine,
            &view_with(std::slice::from_ref(&writer)),
            &ci_job_view,
        ),
        &[
            "ClusterRole view is listed in readOnlyRoles, but it grants writes",
            "(from ClusterRole configmap-writer)",
        ],
    );
    // For a project's own binding of view, writing ConfigMaps is no escalation.
    let project_view = cluster_role_binding("project-view", "view", &[PROJECT]);
    assert_allowed_silently(&create(&engine, &view_with(&[writer]), &project_view));
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
    let ephemeral = cluster_role(
        "debugger",
        "{rbac.authorization.k8s.io/aggregate-to-edit: 'true'}",
        "[{apiGroups: [''], resources: [pods/ephemeralcontainers], verbs: [patch]}]",
    );
    assert_denied(
        &create(&engine(), &view, &ephemeral),
        &[
            "ClusterRole admin, which aggregates",
            "pods/ephemeralcontainers",
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
    let binding = role_binding("review", "deploy", "Role", "deployer", &[PROJECT]);
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
            "RoleBinding review/deploy (Group gitlab:project:42)",
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
        role_binding("review", "read", "ClusterRole", "reader", &[PROJECT]),
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

/// The status code of the answer fluxgate's webhook would send for a verdict.
fn answer_code(verdict: &Verdict) -> Option<u64> {
    let body: Value =
        serde_json::from_slice(&fluxgate::engine::verdict::encode("u", verdict)).expect("json");
    body["response"]["status"]["code"].as_u64()
}

#[test]
fn malformed_rbac_that_names_no_gitlab_identity_is_an_input_error() {
    let malformed = |edit: &dyn Fn(&mut Value)| {
        let mut binding = role_binding(
            "team-a",
            "broken",
            "ClusterRole",
            "view",
            &[("Group", "devs")],
        );
        edit(&mut binding);
        binding
    };
    let cases: Vec<(Value, &str)> = vec![
        (
            malformed(&|b| {
                b.as_object_mut().expect("object").remove("roleRef");
            }),
            "roleRef",
        ),
        (
            malformed(&|b| b["roleRef"]["apiGroup"] = json!("example.com")),
            "a roleRef must be a Role or ClusterRole",
        ),
        (
            malformed(&|b| b["roleRef"]["kind"] = json!("Deployment")),
            "a roleRef must be",
        ),
        (
            malformed(&|b| b["subjects"] = json!({"kind": "Group", "name": "devs"})),
            "subjects",
        ),
        (
            malformed(&|b| b["subjects"][0]["kind"] = json!("Team")),
            "subjects[0] has kind \"Team\"",
        ),
        (
            malformed(
                &|b| b["subjects"] = json!([{"kind": "ServiceAccount", "name": "x", "apiGroup": "rbac.authorization.k8s.io"}]),
            ),
            "ServiceAccount with apiGroup",
        ),
        (
            role(
                "team-a",
                "broken",
                "{apiGroups: [''], resources: [pods], verbs: [get]}",
            ),
            "rules",
        ),
    ];
    for (object, phrase) in cases {
        let verdict = create(&engine(), &MemoryView::new(), &object);
        let found = findings(&verdict);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, Severity::Invalid, "{found:?}");
        let message = assert_denied(
            &verdict,
            &["is malformed", phrase, "The API server refuses it"],
        );
        assert!(!message.contains("broad"), "{message}");
        assert_eq!(answer_code(&verdict), Some(400), "{message}");
    }
    // In audit mode an input error is recorded, not denied, like any finding.
    let audit = engine_with("mode: audit\n");
    let object = malformed(&|b| b["roleRef"]["kind"] = json!("Deployment"));
    assert!(create(&audit, &MemoryView::new(), &object).allowed);
}

#[test]
fn malformed_rbac_that_names_a_gitlab_identity_is_a_violation() {
    for who in [
        "gitlab:ci_job",
        "gitlab:project_env:42:review",
        "system:authenticated",
    ] {
        let mut binding = cluster_role_binding("broken", "view", &[("Group", who)]);
        binding.as_object_mut().expect("object").remove("roleRef");
        let verdict = create(&engine(), &MemoryView::new(), &binding);
        assert_eq!(findings(&verdict)[0].0, Severity::Violation);
        assert_denied(
            &verdict,
            &[
                "malformed",
                "roleRef",
                "names a GitLab identity",
                "fail closed",
            ],
        );
        assert_eq!(answer_code(&verdict), Some(403));
        // However malformed the subjects are.
        let mut binding = cluster_role_binding("broken", "cluster-admin", &[("Group", who)]);
        binding["subjects"] = json!({"first": {"kind": "Group", "name": who}});
        assert_eq!(
            findings(&create(&engine(), &MemoryView::new(), &binding))[0].0,
            Severity::Violation
        );
    }
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

/// However many ClusterRoles a selector matches, a review visits a bounded number of them,
/// and a role it cannot resolve within that is not allowed (fail closed).
#[test]
fn the_aggregation_walk_is_bounded() {
    let view = MemoryView::new();
    for i in 0..5_000 {
        view.apply(&cluster_role(
            &format!("piece-{i}"),
            TO_VIEW,
            "[{apiGroups: [example.com], resources: [widgets], verbs: [get]}]",
        ))
        .expect("applies");
    }
    let binding = cluster_role_binding("ci-job-view", "view", &[("Group", "gitlab:ci_job")]);
    let started = Instant::now();
    let verdict = create(&engine(), &view, &binding);
    println!(
        "a binding of view with 5,000 aggregated ClusterRoles: {:?}",
        started.elapsed()
    );
    assert_denied(
        &verdict,
        &[
            "ClusterRole view cannot be resolved",
            "more than 4096 ClusterRoles",
            "fail closed",
        ],
    );
    // A new piece is judged against view all the same, within the same bound.
    let leaky = cluster_role("secrets-viewer", TO_VIEW, SECRETS_READ);
    view.apply(&binding).expect("applies");
    assert_denied(&create(&engine(), &view, &leaky), &["read of secrets"]);
    // Also when the GitLab identity is bound to a role past the bound (edit aggregates
    // view): fluxgate cannot tell, and fails closed.
    let view = MemoryView::new();
    for i in 0..5_000 {
        view.apply(&cluster_role(
            &format!("piece-{i}"),
            TO_VIEW,
            "[{apiGroups: [example.com], resources: [widgets], verbs: [get]}]",
        ))
        .expect("applies");
    }
    view.apply(&role_binding(
        "team-a",
        "edit",
        "ClusterRole",
        "edit",
        &[PROJECT],
    ))
    .expect("applies");
    assert_denied(
        &create(&engine(), &view, &leaky),
        &[
            "cannot tell which bindings of GitLab identities this change widens",
            "read of secrets",
        ],
    );
    let harmless = cluster_role(
        "widget-viewer",
        TO_VIEW,
        "[{apiGroups: [example.com], resources: [gadgets], verbs: [get]}]",
    );
    assert_allowed_silently(&create(&engine(), &view, &harmless));
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
