//! Every review does bounded work: a review over one of its budgets is denied (fail closed)
//! with a message naming the budget, findings and messages are capped, and an inline review
//! that needs real work asks for the evaluation pool instead of doing it.
//!
//! Reviews go through `Engine::review` (the default budget, as `fluxgate check` and the
//! audit scan judge) or `Engine::review_within` with a budget built for the test.

mod common;

use fluxgate::admission::OwnedObject;
use fluxgate::budget::{Budget, Exceeded, Limits, Resource};
use fluxgate::cluster::MemoryView;
use fluxgate::engine::verdict::{MAX_MESSAGE_BYTES, Verdict};
use fluxgate::engine::{Endpoint, Engine};
use serde_json::{Value, json};

use common::default_engine;

const GITLAB_ISSUER: &str = r"^https://gitlab\.com$";

fn judge(engine: &Engine, object: &Value, view: &MemoryView, budget: &Budget) -> Verdict {
    let owned = OwnedObject::from_value(object).expect("a Kubernetes object");
    let request = owned.as_create("uid-budget");
    engine
        .review_within(Endpoint::Validate, &request, view, budget)
        .0
}

fn validate(object: &Value) -> Verdict {
    let owned = OwnedObject::from_value(object).expect("a Kubernetes object");
    let request = owned.as_create("uid-budget");
    default_engine()
        .review(Endpoint::Validate, &request, &MemoryView::new())
        .0
}

/// An OCIRepository verified keyless by these identities.
fn keyless(identities: Vec<Value>) -> Value {
    json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1beta2",
        "kind": "OCIRepository",
        "metadata": {"name": "app", "namespace": "flux-system"},
        "spec": {
            "interval": "5m",
            "url": "oci://registry.gitlab.com/acme/app/manifests",
            "ref": {"semver": "6.5.x"},
            "verify": {"provider": "cosign", "matchOIDCIdentity": identities},
        }
    })
}

/// `n` identities of one project's pipelines, each on its own branch: every subject distinct.
fn project_branches(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({
                "issuer": GITLAB_ISSUER,
                "subject": format!(r"^https://gitlab\.com/acme/app//\.gitlab-ci\.yml@refs/heads/release-{i}$"),
            })
        })
        .collect()
}

#[track_caller]
fn assert_denied_by_budget(verdict: &Verdict, budget: &str) -> String {
    assert!(!verdict.allowed, "expected a denial: {verdict:#?}");
    let message = verdict.denial_message();
    assert!(
        message.contains(&format!("(budget {budget})")),
        "the message names the budget {budget}:\n{message}"
    );
    assert!(message.contains("fail closed"), "{message}");
    message
}

#[test]
fn distinct_identity_patterns_within_the_budget_are_judged() {
    // 63 subjects and the one issuer: 64 distinct patterns.
    let verdict = validate(&keyless(project_branches(63)));
    assert!(verdict.allowed, "{}", verdict.denial_message());
    assert!(verdict.outcomes.is_empty(), "{:#?}", verdict.outcomes);
}

#[test]
fn an_object_with_more_distinct_identity_patterns_than_the_budget_is_denied() {
    let limit = Limits::DEFAULT.get(Resource::IdentityPatterns) as usize;
    // `limit` subjects and the issuer: one more than the budget.
    let verdict = validate(&keyless(project_branches(limit)));
    let message = assert_denied_by_budget(&verdict, "identity-patterns");
    assert!(
        message.contains(&format!(
            "more than {limit} distinct matchOIDCIdentity patterns"
        )),
        "{message}"
    );
    assert_eq!(
        verdict.unjudged,
        Some(Exceeded::Limit {
            resource: Resource::IdentityPatterns,
            limit: limit as u64
        })
    );
}

#[test]
fn repeating_a_pattern_does_not_count_against_the_distinct_budget() {
    let mut identities = project_branches(1);
    let one = identities[0].clone();
    identities.extend(std::iter::repeat_n(one, 500));
    let verdict = validate(&keyless(identities));
    assert!(verdict.allowed, "{}", verdict.denial_message());
}

#[test]
fn identity_patterns_past_the_compiled_size_budget_are_denied() {
    // Each of these patterns compiles to a few KiB; the budget holds about eight of them.
    let budget = Budget::new(Limits::DEFAULT.with(Resource::RegexBytes, 48 * 1024));
    let verdict = judge(
        &default_engine(),
        &keyless(project_branches(20)),
        &MemoryView::new(),
        &budget,
    );
    assert_denied_by_budget(&verdict, "regex-bytes");
    assert!(budget.used(Resource::RegexBytes) > 48 * 1024);
    // The same patterns, now in the memo, are charged the same: the verdict does not
    // depend on what was judged before.
    let again = Budget::new(Limits::DEFAULT.with(Resource::RegexBytes, 48 * 1024));
    let verdict = judge(
        &default_engine(),
        &keyless(project_branches(20)),
        &MemoryView::new(),
        &again,
    );
    assert_denied_by_budget(&verdict, "regex-bytes");
}

#[test]
fn an_inline_review_that_needs_a_compilation_asks_for_the_pool() {
    let engine = default_engine();
    let object = keyless(project_branches(1));
    let inline = Budget::default().inline(Limits::INLINE);
    let verdict = judge(&engine, &object, &MemoryView::new(), &inline);
    assert_eq!(
        verdict.unjudged,
        Some(Exceeded::Offload {
            resource: Resource::RegexCompilations
        })
    );
    assert!(verdict.outcomes.is_empty(), "nothing is decided inline");
    // On the pool the same review is judged whole, and its patterns are memoised...
    let verdict = judge(&engine, &object, &MemoryView::new(), &Budget::default());
    assert!(verdict.allowed && verdict.unjudged.is_none());
    // ... so that the next inline review of them needs no compilation.
    let inline = Budget::default().inline(Limits::INLINE);
    let verdict = judge(&engine, &object, &MemoryView::new(), &inline);
    assert!(
        verdict.allowed && verdict.unjudged.is_none(),
        "{:?}",
        verdict.unjudged
    );
}

#[test]
fn a_review_past_its_deadline_is_denied_naming_the_deadline() {
    let started = std::time::Instant::now() - std::time::Duration::from_secs(10);
    let budget = Budget::default().with_deadline(started, std::time::Duration::from_secs(1));
    let verdict = judge(
        &default_engine(),
        &keyless(project_branches(3)),
        &MemoryView::new(),
        &budget,
    );
    let message = assert_denied_by_budget_or_deadline(&verdict);
    assert!(message.contains("deadline"), "{message}");
}

fn assert_denied_by_budget_or_deadline(verdict: &Verdict) -> String {
    assert!(!verdict.allowed, "{verdict:#?}");
    assert!(matches!(verdict.unjudged, Some(Exceeded::Deadline { .. })));
    verdict.denial_message()
}

#[test]
fn thousands_of_broad_identities_make_a_short_denial() {
    let broad = json!({"issuer": GITLAB_ISSUER, "subject": ".*"});
    let verdict = validate(&keyless(vec![broad; 5_000]));
    assert!(!verdict.allowed);
    let message = verdict.denial_message();
    assert!(
        message.len() < MAX_MESSAGE_BYTES,
        "{} bytes of message",
        message.len()
    );
    assert!(
        message.contains("more matchOIDCIdentity entries were not judged one by one"),
        "{message}"
    );
}

fn cluster_role(name: &str, rules: Vec<Value>) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name},
        "rules": rules,
    })
}

#[test]
fn a_role_with_more_rules_than_the_budget_is_denied() {
    let limit = Limits::DEFAULT.get(Resource::RbacRules) as usize;
    let rule = json!({"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]});
    let within = validate(&cluster_role("reader", vec![rule.clone(); 100]));
    assert!(within.allowed, "{}", within.denial_message());
    let verdict = validate(&cluster_role("reader", vec![rule; limit + 1]));
    assert_denied_by_budget(&verdict, "rbac-rules");
}

fn role_binding(subjects: Vec<Value>) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "deployers", "namespace": "apps"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": subjects,
    })
}

fn users(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": format!("user-{i}")}))
        .collect()
}

#[test]
fn a_binding_with_more_subjects_than_the_budget_is_denied() {
    let limit = Limits::DEFAULT.get(Resource::RbacSubjects) as usize;
    let within = validate(&role_binding(users(50)));
    assert!(within.allowed, "{}", within.denial_message());
    let verdict = validate(&role_binding(users(limit + 1)));
    assert_denied_by_budget(&verdict, "rbac-subjects");
}

#[test]
fn aggregation_past_the_budget_is_denied() {
    let view = MemoryView::new();
    view.set_synced(true);
    for i in 0..6 {
        let mut role = cluster_role(
            &format!("piece-{i}"),
            vec![json!({"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]})],
        );
        role["metadata"]["labels"] = json!({"example.com/aggregate-to-deployer": "true"});
        view.apply(&role).expect("applies");
    }
    let mut aggregated = cluster_role("deployer", Vec::new());
    aggregated["aggregationRule"] = json!({
        "clusterRoleSelectors": [{"matchLabels": {"example.com/aggregate-to-deployer": "true"}}]
    });
    view.apply(&aggregated).expect("applies");
    let mut binding = role_binding(vec![json!({
        "apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "gitlab:ci_job"
    })]);
    binding["roleRef"]["name"] = json!("deployer");
    let engine = default_engine();

    let enough = Budget::default();
    let verdict = judge(&engine, &binding, &view, &enough);
    assert!(verdict.unjudged.is_none(), "{:?}", verdict.unjudged);
    assert_eq!(enough.used(Resource::AggregationSteps), 6);

    let budget = Budget::new(Limits::DEFAULT.with(Resource::AggregationSteps, 5));
    let verdict = judge(&engine, &binding, &view, &budget);
    let message = assert_denied_by_budget(&verdict, "aggregation-steps");
    assert!(
        !message.contains("cannot be resolved"),
        "a stopped budget is not an unresolvable role: {message}"
    );
}
