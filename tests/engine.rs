//! The engine's rules, independent of any one policy: modes, exemptions, and the requests it
//! never blocks. A small test policy flags objects labelled `bad: "true"`.

use std::sync::Arc;

use fluxgate::admission::{self, Operation};
use fluxgate::cluster::MemoryView;
use fluxgate::config::Config;
use fluxgate::engine::verdict::Action;
use fluxgate::engine::{Endpoint, Engine};
use fluxgate::finding::{Finding, Mode, PolicyId, Severity};
use fluxgate::policy::{CREATE_UPDATE, Context, KindRule, Policy};
use serde_json::{Value, json};

/// Flags `metadata.labels.bad == "true"`; advises on `labels.meh`; patches in `labels.fixed`.
struct LabelPolicy;

const RULES: &[KindRule] = &[KindRule {
    group: "example.com",
    kind: "Widget",
    resource: "widgets",
    opt_in: false,
    operations: CREATE_UPDATE,
    judged_fields: &["/metadata/labels/bad", "/metadata/labels/meh"],
}];

impl Policy for LabelPolicy {
    type Settings = ();

    fn id(&self) -> PolicyId {
        PolicyId::SignedOciSources
    }
    fn kinds(&self) -> &'static [KindRule] {
        RULES
    }
    fn validate(&self, ctx: &Context<'_>) -> Vec<Finding> {
        let object: Value = match ctx.parse_object(self.id()) {
            Ok(v) => v,
            Err(f) => return vec![f],
        };
        let mut findings = Vec::new();
        if object["metadata"]["labels"]["bad"] == "true" {
            findings.push(Finding::violation(
                self.id(),
                format!("{} is bad; remove the label", ctx.object_ref()),
            ));
        }
        if object["metadata"]["labels"]["meh"] == "true" {
            findings.push(Finding::advisory(
                self.id(),
                format!("{} is meh", ctx.object_ref()),
            ));
        }
        findings
    }
    fn mutate(&self, _ctx: &Context<'_>) -> Vec<json_patch::PatchOperation> {
        serde_json::from_value(
            json!([{"op": "add", "path": "/metadata/labels/fixed", "value": "yes"}]),
        )
        .unwrap_or_default()
    }
}

fn engine(config_yaml: &str, mode_override: Option<Mode>) -> Engine {
    let config = Config::from_yaml(config_yaml, "test.yaml").expect("config");
    Engine::with_policies(vec![Box::new(LabelPolicy)], config, mode_override)
}

fn widget(namespace: &str, labels: Value) -> Value {
    json!({"apiVersion": "example.com/v1", "kind": "Widget",
           "metadata": {"name": "w", "namespace": namespace, "labels": labels}})
}

struct Req {
    operation: Operation,
    object: Option<Value>,
    old: Option<Value>,
    user: &'static str,
    groups: Vec<&'static str>,
    dry_run: bool,
    sub_resource: Option<&'static str>,
}

impl Req {
    fn create(object: Value) -> Self {
        Req {
            operation: Operation::Create,
            object: Some(object),
            old: None,
            user: "alice",
            groups: vec!["devs"],
            dry_run: false,
            sub_resource: None,
        }
    }
    fn update(old: Value, object: Value) -> Self {
        Req {
            operation: Operation::Update,
            old: Some(old),
            ..Req::create(object)
        }
    }
    fn body(&self) -> Vec<u8> {
        let object = self
            .object
            .as_ref()
            .or(self.old.as_ref())
            .expect("an object");
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": "u-1",
                "kind": {"group": "example.com", "version": "v1", "kind": "Widget"},
                "resource": {"group": "example.com", "version": "v1", "resource": "widgets"},
                "subResource": self.sub_resource,
                "name": object["metadata"]["name"],
                "namespace": object["metadata"]["namespace"],
                "operation": self.operation,
                "userInfo": {"username": self.user, "groups": self.groups},
                "object": self.object, "oldObject": self.old, "dryRun": self.dry_run,
            }
        }))
        .expect("json")
    }
}

fn judge(engine: &Engine, req: &Req, view: &MemoryView) -> fluxgate::engine::verdict::Verdict {
    let body = req.body();
    let request = admission::decode(&body).expect("decodes");
    engine.review(Endpoint::Validate, &request, view).0
}

fn bad() -> Value {
    widget("team-a", json!({"bad": "true"}))
}

#[test]
fn enforce_mode_denies_with_the_policy_named_in_the_message() {
    let verdict = judge(
        &engine("mode: enforce", None),
        &Req::create(bad()),
        &MemoryView::new(),
    );
    assert!(!verdict.allowed);
    assert_eq!(
        verdict.denial_message(),
        "[signed-oci-sources] Widget team-a/w is bad; remove the label"
    );
}

#[test]
fn warn_mode_allows_and_tells_the_client() {
    let verdict = judge(
        &engine("mode: warn", None),
        &Req::create(bad()),
        &MemoryView::new(),
    );
    assert!(verdict.allowed);
    assert_eq!(
        verdict.warnings,
        vec!["[signed-oci-sources] Widget team-a/w is bad; remove the label"]
    );
    assert_eq!(verdict.outcomes[0].action, Action::Warn);
}

#[test]
fn audit_mode_allows_silently_but_records_the_finding() {
    let verdict = judge(
        &engine("mode: audit", None),
        &Req::create(bad()),
        &MemoryView::new(),
    );
    assert!(verdict.allowed);
    assert!(verdict.warnings.is_empty());
    assert_eq!(verdict.outcomes.len(), 1);
    assert_eq!(verdict.outcomes[0].action, Action::Audit);
}

#[test]
fn off_mode_does_not_evaluate() {
    let verdict = judge(
        &engine("mode: off", None),
        &Req::create(bad()),
        &MemoryView::new(),
    );
    assert!(verdict.allowed);
    assert!(verdict.evaluated.is_empty());
}

#[test]
fn the_mode_flag_overrides_the_file() {
    let verdict = judge(
        &engine("mode: enforce", Some(Mode::Audit)),
        &Req::create(bad()),
        &MemoryView::new(),
    );
    assert!(verdict.allowed);
    assert_eq!(verdict.outcomes[0].mode, Mode::Audit);
}

#[test]
fn an_advisory_never_denies() {
    let verdict = judge(
        &engine("mode: enforce", None),
        &Req::create(widget("team-a", json!({"meh": "true"}))),
        &MemoryView::new(),
    );
    assert!(verdict.allowed);
    assert_eq!(verdict.outcomes[0].finding.severity, Severity::Advisory);
    assert_eq!(verdict.warnings.len(), 1);
}

#[test]
fn long_warnings_are_cut_for_the_api_server() {
    struct Verbose;
    impl Policy for Verbose {
        type Settings = ();

        fn id(&self) -> PolicyId {
            PolicyId::SingleAgent
        }
        fn kinds(&self) -> &'static [KindRule] {
            RULES
        }
        fn validate(&self, _ctx: &Context<'_>) -> Vec<Finding> {
            vec![Finding::violation(self.id(), "x".repeat(5000))]
        }
    }
    let config = Config::from_yaml("mode: warn", "t").expect("config");
    let engine = Engine::with_policies(vec![Box::new(Verbose)], config, None);
    let verdict = judge(&engine, &Req::create(bad()), &MemoryView::new());
    assert!(verdict.warnings[0].chars().count() <= fluxgate::engine::verdict::MAX_WARNING_CHARS);
    assert_eq!(
        verdict.outcomes[0].finding.message.len(),
        5000,
        "the full text is kept for the log"
    );
}

#[test]
fn exemptions_by_namespace_object_user_and_group_let_the_request_through_and_say_so() {
    let config = r#"
exemptions:
  - name: legacy-namespace
    namespaces: [legacy]
  - name: one-widget
    objects: [{kind: Widget, namespace: team-b, name: w}]
  - name: robot
    users: [system:serviceaccount:ci:robot]
  - name: break-glass
    groups: [platform:break-glass]
"#;
    let engine = engine(config, None);
    let view = MemoryView::new();
    let cases: Vec<(&str, Req)> = vec![
        (
            "legacy-namespace",
            Req::create(widget("legacy", json!({"bad": "true"}))),
        ),
        (
            "one-widget",
            Req::create(widget("team-b", json!({"bad": "true"}))),
        ),
        (
            "robot",
            Req {
                user: "system:serviceaccount:ci:robot",
                ..Req::create(bad())
            },
        ),
        (
            "break-glass",
            Req {
                groups: vec!["devs", "platform:break-glass"],
                ..Req::create(bad())
            },
        ),
    ];
    for (name, req) in cases {
        let body = req.body();
        let request = admission::decode(&body).expect("decodes");
        let (verdict, used) = engine.review(Endpoint::Validate, &request, &view);
        assert!(verdict.allowed, "{name}");
        assert_eq!(used.len(), 1, "{name}");
        assert_eq!(used[0].exemption, name);
        assert_eq!(
            verdict.outcomes[0].action,
            Action::Exempted(name.to_string()),
            "the finding is still recorded: {name}"
        );
    }
    let verdict = judge(&engine, &Req::create(bad()), &view);
    assert!(!verdict.allowed, "no exemption matches alice in team-a");
}

#[test]
fn an_exemption_must_match_every_criterion_it_sets() {
    let engine = engine(
        "exemptions:\n- {namespaces: [team-a], users: [bob]}\n",
        None,
    );
    let verdict = judge(&engine, &Req::create(bad()), &MemoryView::new());
    assert!(!verdict.allowed, "team-a matches but alice is not bob");
}

#[test]
fn an_exemption_for_another_policy_does_not_apply() {
    let engine = engine(
        "exemptions:\n- {policies: [single-agent], namespaces: [team-a]}\n",
        None,
    );
    assert!(!judge(&engine, &Req::create(bad()), &MemoryView::new()).allowed);
}

#[test]
fn a_namespace_selector_exempts_by_the_namespace_labels_in_the_cluster_view() {
    let engine = engine(
        "exemptions:\n- namespaceSelector: {matchLabels: {fluxgate.io/legacy: \"true\"}}\n",
        None,
    );
    let view = MemoryView::new();
    view.apply(&json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "team-a", "labels": {"fluxgate.io/legacy": "true"}}}))
        .expect("namespace");
    view.apply(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-b"}}))
        .expect("namespace");
    assert!(judge(&engine, &Req::create(bad()), &view).allowed);
    assert!(
        !judge(
            &engine,
            &Req::create(widget("team-b", json!({"bad": "true"}))),
            &view
        )
        .allowed
    );
    assert!(
        !judge(
            &engine,
            &Req::create(widget("unknown", json!({"bad": "true"}))),
            &view
        )
        .allowed,
        "a namespace the view does not know is not exempt"
    );
}

#[test]
fn an_annotation_on_the_object_cannot_exempt_it() {
    let mut object = bad();
    object["metadata"]["annotations"] = json!({
        "fluxgate.io/exempt": "true", "policies.kyverno.io/exclude": "true"
    });
    assert!(!judge(&engine("", None), &Req::create(object), &MemoryView::new()).allowed);
}

#[test]
fn an_update_that_leaves_the_judged_fields_unchanged_is_not_blocked() {
    let engine = engine("", None);
    let view = MemoryView::new();
    let mut with_finalizer = bad();
    with_finalizer["metadata"]["finalizers"] = json!(["finalizers.fluxcd.io"]);
    let verdict = judge(&engine, &Req::update(bad(), with_finalizer), &view);
    assert!(
        verdict.allowed,
        "a controller adding a finalizer to an old object is not blocked"
    );
    assert!(verdict.evaluated.is_empty());

    let became_bad = judge(
        &engine,
        &Req::update(widget("team-a", json!({})), bad()),
        &view,
    );
    assert!(
        !became_bad.allowed,
        "an update that changes a judged field is judged"
    );
}

fn terminating(mut object: Value) -> Value {
    object["metadata"]["deletionTimestamp"] = json!("2026-11-21T10:00:00Z");
    object["metadata"]["finalizers"] = json!(["finalizers.fluxcd.io"]);
    object
}

#[test]
fn removing_a_finalizer_from_an_object_being_deleted_is_not_blocked() {
    // Flux's controllers clean up objects that may predate the policy: the judged fields
    // stay as they were, so the policy is not asked.
    let old = terminating(bad());
    let mut new = old.clone();
    new["metadata"]["finalizers"] = json!([]);
    new["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/name"] = json!("apps");
    let verdict = judge(
        &engine("", None),
        &Req::update(old, new),
        &MemoryView::new(),
    );
    assert!(verdict.allowed, "{}", verdict.denial_message());
    assert!(verdict.evaluated.is_empty());
    assert_eq!(verdict.skipped, None);
}

#[test]
fn an_object_being_deleted_is_judged_when_a_judged_field_changes() {
    // A finalizer holds the object, and it does all it did until it is gone: a change to
    // what it does is judged as on any other object.
    let engine = engine("", None);
    let view = MemoryView::new();
    let old = terminating(widget("team-a", json!({})));
    let mut became_bad = old.clone();
    became_bad["metadata"]["labels"]["bad"] = json!("true");
    let verdict = judge(&engine, &Req::update(old.clone(), became_bad), &view);
    assert!(!verdict.allowed, "the widening update is denied");
    assert!(verdict.denial_message().contains("is bad"));

    // Only the new object being deleted, or only the old one: the same.
    let mut new_terminating = terminating(bad());
    new_terminating["metadata"]["labels"]["bad"] = json!("true");
    let verdict = judge(
        &engine,
        &Req::update(widget("team-a", json!({})), new_terminating),
        &view,
    );
    assert!(!verdict.allowed);
    let verdict = judge(&engine, &Req::update(old, bad()), &view);
    assert!(!verdict.allowed);

    // A change that makes the object follow the rule is judged, and passes.
    let mut fixed = terminating(bad());
    fixed["metadata"]["labels"]["bad"] = json!("false");
    let verdict = judge(&engine, &Req::update(terminating(bad()), fixed), &view);
    assert!(verdict.allowed);
    assert_eq!(verdict.evaluated, vec![PolicyId::SignedOciSources]);
}

#[test]
fn deletes_and_subresource_updates_are_never_judged() {
    let engine = engine("", None);
    let view = MemoryView::new();
    let delete = Req {
        operation: Operation::Delete,
        object: None,
        old: Some(bad()),
        ..Req::create(bad())
    };
    assert!(judge(&engine, &delete, &view).allowed);
    let status = Req {
        sub_resource: Some("status"),
        ..Req::update(widget("team-a", json!({})), bad())
    };
    assert!(judge(&engine, &status, &view).allowed);
}

#[test]
fn a_dry_run_gets_the_same_verdict_as_the_real_request() {
    let engine = engine("", None);
    let view = MemoryView::new();
    let real = judge(&engine, &Req::create(bad()), &view);
    let dry = judge(
        &engine,
        &Req {
            dry_run: true,
            ..Req::create(bad())
        },
        &view,
    );
    assert_eq!(real.allowed, dry.allowed);
    assert_eq!(real.denial_message(), dry.denial_message());
}

#[test]
fn a_malformed_object_is_denied_with_what_is_malformed() {
    let req = Req::create(json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w", "namespace": "team-a", "labels": "not a map"}}));
    // The test policy reads the object as a JSON tree, so give it something it cannot read.
    struct Typed;
    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Shape {
        metadata: Meta,
    }
    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Meta {
        labels: std::collections::BTreeMap<String, String>,
    }
    impl Policy for Typed {
        type Settings = ();

        fn id(&self) -> PolicyId {
            PolicyId::CiImpersonation
        }
        fn kinds(&self) -> &'static [KindRule] {
            RULES
        }
        fn validate(&self, ctx: &Context<'_>) -> Vec<Finding> {
            match ctx.parse_object::<Shape>(self.id()) {
                Ok(_) => vec![],
                Err(f) => vec![f],
            }
        }
    }
    let typed = Engine::with_policies(vec![Box::new(Typed)], Config::default(), None);
    let verdict = judge(&typed, &req, &MemoryView::new());
    assert!(!verdict.allowed);
    let message = verdict.denial_message();
    assert!(
        message.contains("Widget team-a/w is malformed"),
        "{message}"
    );
    assert!(
        message.contains("metadata.labels"),
        "names the field: {message}"
    );
}

#[test]
fn mutation_happens_in_enforce_and_warn_but_not_in_audit() {
    let view = Arc::new(MemoryView::new());
    for (mode, patched) in [
        ("enforce", true),
        ("warn", true),
        ("audit", false),
        ("off", false),
    ] {
        let engine = engine(&format!("mode: {mode}"), None);
        let req = Req::create(widget("team-a", json!({})));
        let body = req.body();
        let request = admission::decode(&body).expect("decodes");
        let (verdict, _) = engine.review(Endpoint::Mutate, &request, view.as_ref());
        assert_eq!(!verdict.patch.is_empty(), patched, "{mode}");
        assert!(verdict.allowed);
    }
}
