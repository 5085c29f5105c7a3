//! Each policy names the fields its verdict depends on (`KindRule::judged_fields`), and the
//! engine lets through every UPDATE that leaves them as they were, also on objects being
//! deleted: that is how Flux's controllers remove finalizers and labels from objects that
//! predate a policy. The list must hold what the policy reads, or an UPDATE could change the
//! verdict unjudged. This test holds every policy to its list: for objects of each kind it
//! judges, passing and failing ones, any change outside the judged fields (a finalizer, a
//! deletion timestamp, labels, annotations, status, owners, every other field removed or
//! changed) leaves its verdict on the object as it was.

mod common;

use fluxgate::admission;
use fluxgate::cluster::MemoryView;
use fluxgate::config::Config;
use fluxgate::engine::{AnyPolicy, registry};
use fluxgate::engine::{Endpoint, Engine};
use fluxgate::finding::{PolicyId, Severity};
use fluxgate::policy::KindRule;
use serde_json::{Value, json};

/// Objects of every judged kind: what a real API server sent, and objects each policy denies.
fn samples() -> Vec<Value> {
    let mut objects: Vec<Value> = common::fixtures()
        .into_iter()
        .filter_map(|(_, body)| {
            let review: Value = serde_json::from_slice(&body).ok()?;
            let object = review["request"]["object"].clone();
            object.is_object().then_some(object)
        })
        .collect();
    let meta = |kind: &str, name: &str| {
        json!({"name": name, "namespace": "team-a", "labels": {"app": kind},
               "annotations": {"note": "x"}, "finalizers": ["example.com/keep"]})
    };
    objects.extend([
        json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "OCIRepository",
               "metadata": meta("oci", "unsigned"),
               "spec": {"interval": "5m", "url": "oci://registry.gitlab.com/acme/app", "ref": {"tag": "latest"}}}),
        json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "OCIRepository",
               "metadata": meta("oci", "anyone"),
               "spec": {"interval": "5m", "url": "oci://registry.gitlab.com/acme/app", "ref": {"semver": ">=1.0.0"},
                        "verify": {"provider": "cosign", "matchOIDCIdentity": [{"issuer": ".*", "subject": ".*"}]}}}),
        json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "OCIRepository",
               "metadata": meta("oci", "pinned"),
               "spec": {"interval": "5m", "url": "oci://registry.gitlab.com/acme/app", "ref": {"tag": "1.4.2"},
                        "verify": {"provider": "cosign", "secretRef": {"name": "cosign-pub"}}}}),
        json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "HelmChart",
               "metadata": meta("chart", "podinfo"),
               "spec": {"chart": "podinfo", "version": "6.x", "interval": "5m",
                        "sourceRef": {"kind": "HelmRepository", "name": "podinfo"}}}),
        json!({"apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
               "metadata": meta("release", "podinfo"),
               "spec": {"interval": "5m", "chart": {"spec": {"chart": "podinfo", "version": "6.x",
                        "sourceRef": {"kind": "HelmRepository", "name": "podinfo", "namespace": "flux-system"}}},
                        "values": {"replicas": 2}}}),
        json!({"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
               "metadata": meta("kustomization", "apps"),
               "spec": {"interval": "5m", "path": "./apps", "prune": true,
                        "sourceRef": {"kind": "GitRepository", "name": "apps", "namespace": "flux-system"}}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": "ci-admin", "labels": {"app": "ci"}},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
               "subjects": [{"kind": "Group", "name": "gitlab:ci_job", "apiGroup": "rbac.authorization.k8s.io"}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": meta("rb", "ci-edit"),
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
               "subjects": [{"kind": "Group", "name": "gitlab:project:42", "apiGroup": "rbac.authorization.k8s.io"}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": {"name": "everything", "labels": {"rbac.authorization.k8s.io/aggregate-to-edit": "true"}},
               "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
               "metadata": meta("role", "secrets"),
               "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}]}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "kustomize-controller", "namespace": "flux-system", "labels": {"app": "kc"}},
               "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "kc"}},
                        "template": {"metadata": {"labels": {"app": "kc"}},
                                     "spec": {"serviceAccountName": "kustomize-controller",
                                              "containers": [{"name": "manager",
                                                              "image": "ghcr.io/fluxcd/kustomize-controller:v1.4.0",
                                                              "args": ["--watch-all-namespaces=true"]}]}}}}),
    ]);
    objects
}

/// Every JSON pointer of `value` up to `depth` levels, with object keys escaped.
fn pointers(value: &Value, prefix: &str, depth: usize, out: &mut Vec<String>) {
    if depth == 0 {
        return;
    }
    let children: Vec<(String, &Value)> = match value {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| (k.replace('~', "~0").replace('/', "~1"), v))
            .collect(),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), v))
            .collect(),
        _ => return,
    };
    for (token, child) in children {
        let pointer = format!("{prefix}/{token}");
        out.push(pointer.clone());
        pointers(child, &pointer, depth - 1, out);
    }
}

/// Whether changing `pointer` can change a judged field: it is one, lies under one, or holds one.
fn touches(pointer: &str, judged: &[&str]) -> bool {
    judged.iter().any(|j| {
        let under = |a: &str, b: &str| a == b || a.starts_with(&format!("{b}/"));
        under(pointer, j) || under(j, pointer)
    })
}

/// Fields that never change on an UPDATE (the API server refuses it): not perturbed.
const IDENTITY: &[&str] = &[
    "/apiVersion",
    "/kind",
    "/metadata/name",
    "/metadata/namespace",
];

/// The object with the member at `pointer` removed.
fn removed(object: &Value, pointer: &str) -> Option<Value> {
    let (parent, token) = pointer.rsplit_once('/')?;
    let mut copy = object.clone();
    let token = token.replace("~1", "/").replace("~0", "~");
    match copy.pointer_mut(parent)? {
        Value::Object(map) => {
            map.remove(&token);
        }
        Value::Array(items) => {
            let i: usize = token.parse().ok()?;
            items.remove(i);
        }
        _ => return None,
    }
    Some(copy)
}

/// The object with the value at `pointer` changed, keeping its type.
fn changed(object: &Value, pointer: &str) -> Option<Value> {
    let mut copy = object.clone();
    let slot = copy.pointer_mut(pointer)?;
    *slot = match slot.take() {
        Value::String(s) => Value::String(format!("{s}-changed")),
        Value::Number(n) => json!(n.as_i64().map_or(1, |n| n + 1)),
        Value::Bool(b) => Value::Bool(!b),
        Value::Null => json!("changed"),
        Value::Array(_) => json!([]),
        Value::Object(_) => json!({}),
    };
    Some(copy)
}

/// What Flux's controllers, the API server and other writers add to an object.
fn with_member(object: &Value, pointer: &str, value: Value) -> Option<Value> {
    let mut copy = object.clone();
    let (parent, key) = pointer.rsplit_once('/')?;
    let parent = if parent.is_empty() {
        Some(&mut copy)
    } else {
        copy.pointer_mut(parent)
    }?;
    if !parent.is_object() {
        *parent = json!({});
    }
    parent
        .as_object_mut()?
        .insert(key.replace("~1", "/"), value);
    Some(copy)
}

fn additions(object: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (pointer, value) in [
        ("/metadata/finalizers", json!(["finalizers.fluxcd.io"])),
        ("/metadata/deletionTimestamp", json!("2026-11-21T10:00:00Z")),
        ("/metadata/deletionGracePeriodSeconds", json!(0)),
        (
            "/metadata/labels/kustomize.toolkit.fluxcd.io~1name",
            json!("apps"),
        ),
        ("/metadata/annotations/fluxgate.io~1exempt", json!("true")),
        (
            "/metadata/ownerReferences",
            json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "o", "uid": "u"}]),
        ),
        (
            "/metadata/managedFields",
            json!([{"manager": "kubectl", "operation": "Update"}]),
        ),
        (
            "/status",
            json!({"conditions": [{"type": "Ready", "status": "True"}]}),
        ),
    ] {
        if let Some(with) = with_member(object, pointer, value) {
            out.push((pointer.to_string(), with));
        }
    }
    out
}

/// A policy's verdict on a CREATE of the object: allowed or not, and its findings' severities.
fn verdict(engine: &Engine, object: &Value) -> (bool, Vec<(PolicyId, Severity)>) {
    let body = common::review_of(object, "CREATE", "judged-fields");
    let request = admission::decode(&body).expect("a review");
    let (verdict, _) = engine.review(Endpoint::Validate, &request, &MemoryView::new());
    let mut findings: Vec<(PolicyId, Severity)> = verdict
        .outcomes
        .iter()
        .map(|o| (o.finding.policy, o.finding.severity))
        .collect();
    findings.sort_by_key(|(p, s)| (*p, *s == Severity::Violation));
    (verdict.allowed, findings)
}

fn rule_for<'p>(policy: &'p dyn AnyPolicy, object: &Value) -> Option<&'p KindRule> {
    let api_version = object["apiVersion"].as_str().unwrap_or("");
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    let kind = object["kind"].as_str().unwrap_or("");
    policy
        .kinds()
        .iter()
        .find(|rule| rule.group == group && rule.kind == kind)
}

#[test]
fn no_policy_reads_a_field_it_does_not_name_as_judged() {
    let samples = samples();
    let mut checked = 0usize;
    let mut drift = Vec::new();
    for index in 0..registry().len() {
        let id = registry()[index].id();
        for object in &samples {
            // A fresh policy per object: single-agent keeps reservations.
            let mut policies = registry();
            let policy = policies.swap_remove(index);
            let Some(rule) = rule_for(policy.as_ref(), object) else {
                continue;
            };
            // No list: the policy is asked on every UPDATE and compares old and new itself.
            if rule.judged_fields.is_empty() {
                continue;
            }
            let judged = rule.judged_fields;
            let engine = Engine::with_policies(vec![policy], Config::default(), None);
            let expected = verdict(&engine, object);
            let mut variants = additions(object);
            let mut all = Vec::new();
            pointers(object, "", 5, &mut all);
            for pointer in all {
                if IDENTITY.iter().any(|i| touches(&pointer, &[*i])) {
                    continue;
                }
                if let Some(v) = removed(object, &pointer) {
                    variants.push((format!("without {pointer}"), v));
                }
                if let Some(v) = changed(object, &pointer) {
                    variants.push((format!("{pointer} changed"), v));
                }
            }
            for (what, variant) in variants {
                let pointer = what
                    .trim_start_matches("without ")
                    .trim_end_matches(" changed");
                if touches(pointer, judged) {
                    continue;
                }
                checked += 1;
                let got = verdict(&engine, &variant);
                if got != expected {
                    drift.push(format!(
                        "{id} on {} {}: {what} turns {expected:?} into {got:?}, but {judged:?} are its judged fields",
                        object["kind"], object["metadata"]["name"]
                    ));
                }
            }
        }
    }
    println!(
        "{checked} changes outside the judged fields, {} changed a verdict",
        drift.len()
    );
    assert!(checked > 1000, "only {checked} changes were tried");
    assert!(drift.is_empty(), "{}", drift.join("\n"));
}
