//! Properties that must hold for any object, checked on random ones: structurally plausible
//! Flux, RBAC and workload objects of every judged kind, the same objects with a random
//! field replaced by junk, and junk alone.
//!
//! - No request panics: validate and mutate, CREATE and UPDATE, with and without a
//!   subresource, through `admission::decode` and `Engine::review`; nor does the cluster view
//!   when it is fed the same objects, nor the audit scan.
//! - OCIRepositories: whenever a `verifyDefaults` rule matches an unverified source,
//!   `/mutate` adds a block that `/validate` then allows; mutate is idempotent (a mutated
//!   object gets no further patch); an existing `verify` is never patched.
//!
//! Case counts are modest so that `cargo test` stays fast; `PROPTEST_CASES` raises them.

use fluxgate::admission;
use fluxgate::cluster::MemoryView;
use fluxgate::config::Config;
use fluxgate::engine::{Endpoint, Engine};
use fluxgate::finding::PolicyId;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Value, json};

const AGENTK: &str = "registry.gitlab.com/gitlab-org/cluster-integration/gitlab-agent/agentk";

// ---------------------------------------------------------------------------------------
// Generators

fn junk() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[a-z:/.*^$@-]{0,16}".prop_map(Value::from),
        ".{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<String, Value>>())),
        ]
    })
    .boxed()
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        select(vec![
            "app",
            "gitlab-agent",
            "gitlab-agent-v2",
            "podinfo",
            "view",
            "x"
        ])
        .prop_map(String::from),
        "[a-z][a-z0-9-]{0,70}",
    ]
}

fn namespace() -> impl Strategy<Value = Option<String>> {
    prop::option::of(
        select(vec!["team-a", "gitlab-agent", "flux-system", ""]).prop_map(String::from),
    )
}

fn metadata() -> impl Strategy<Value = Value> {
    (
        name(),
        namespace(),
        prop::option::of(prop::option::of(prop::collection::btree_map(
            "[a-z./-]{1,20}",
            "[a-z0-9-]{0,12}",
            0..3,
        ))),
        prop::option::of(select(vec![
            "gitlab-agent",
            "gitlab-agent-2.6.2",
            "podinfo-6.5.0",
        ])),
        prop::option::of("[a-z0-9-]{1,12}"),
    )
        .prop_map(|(name, namespace, annotations, chart, uid)| {
            let mut meta = json!({ "name": name });
            if let Some(ns) = namespace {
                meta["namespace"] = json!(ns);
            }
            match annotations {
                Some(Some(map)) => meta["annotations"] = json!(map),
                Some(None) => meta["annotations"] = Value::Null,
                None => {}
            }
            if let Some(chart) = chart {
                meta["labels"] =
                    json!({"helm.sh/chart": chart, "app.kubernetes.io/instance": "agent"});
            }
            if let Some(uid) = uid {
                meta["uid"] = json!(uid);
            }
            meta
        })
}

const PATTERNS: &[&str] = &[
    "",
    ".*",
    "(.*)",
    ".*?",
    r"[\s\S]*",
    "^.*$",
    r"^https://gitlab\.com$",
    r"^https://gitlab\.com/acme/app//\.gitlab-ci\.yml@refs/heads/main$",
    r"^https://gitlab\.com/acme/.*$",
    "gitlab",
    "(",
    r"\Qhttps://gitlab.com\E",
    r"^https://[^/]+$",
    "a{1000}{1000}",
    r"^https://gitlab\.example\.com$",
    "^(a|b|c|d|e)+$",
];

fn verify_block() -> impl Strategy<Value = Value> {
    (
        select(vec!["", "cosign", "notation", "Cosign", "sigstore"]),
        prop::option::of(select(vec!["cosign-pub", ""])),
        prop::option::of(prop::collection::vec(
            (select(PATTERNS.to_vec()), select(PATTERNS.to_vec())),
            0..3,
        )),
        prop::option::of(select(vec!["sigstore-trusted-root", ""])),
    )
        .prop_map(|(provider, secret, identities, root)| {
            let mut verify = json!({ "provider": provider });
            if let Some(secret) = secret {
                verify["secretRef"] = json!({ "name": secret });
            }
            if let Some(identities) = identities {
                verify["matchOIDCIdentity"] = identities
                    .into_iter()
                    .map(|(issuer, subject)| json!({"issuer": issuer, "subject": subject}))
                    .collect();
            }
            if let Some(root) = root {
                verify["trustedRootSecretRef"] = json!({ "name": root });
            }
            verify
        })
}

/// Absent, null, empty, or a block.
fn verify() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        Just(Some(Value::Null)),
        Just(Some(json!({}))),
        verify_block().prop_map(Some),
    ]
}

/// OCI URLs, and whether the test configuration's verifyDefaults have a rule for them.
const URLS: &[(&str, bool)] = &[
    ("oci://registry.gitlab.com/acme/app", true),
    ("oci://registry.gitlab.com/acme/platform/manifests", true),
    ("oci://registry.gitlab.com/acme", false),
    ("oci://registry.gitlab.com/acmecorp/app", false),
    ("oci://ghcr.io/acme/charts/podinfo", true),
    ("oci://ghcr.io/acme", true),
    ("oci://ghcr.io/stefanprodan/manifests/podinfo", false),
    ("oci://registry.example.com:5000/x", false),
    ("https://example.com/not-oci", false),
    ("", false),
];

fn api_version(group: &str) -> impl Strategy<Value = String> {
    let versions = match group {
        "source.toolkit.fluxcd.io" => vec!["v1", "v1beta2"],
        "helm.toolkit.fluxcd.io" => vec!["v2", "v2beta1"],
        _ => vec!["v1"],
    };
    let group = group.to_string();
    select(versions).prop_map(move |v| {
        if group.is_empty() {
            v.to_string()
        } else {
            format!("{group}/{v}")
        }
    })
}

fn oci_repository() -> impl Strategy<Value = Value> {
    (
        api_version("source.toolkit.fluxcd.io"),
        metadata(),
        select(URLS.to_vec()),
        prop::option::of(any::<bool>()),
        verify(),
    )
        .prop_map(|(api_version, metadata, (url, _), insecure, verify)| {
            let mut spec = json!({"interval": "5m", "url": url, "ref": {"tag": "1.0.0"}});
            if let Some(insecure) = insecure {
                spec["insecure"] = json!(insecure);
            }
            if let Some(verify) = verify {
                spec["verify"] = verify;
            }
            json!({"apiVersion": api_version, "kind": "OCIRepository", "metadata": metadata, "spec": spec})
        })
}

fn source_ref() -> impl Strategy<Value = Value> {
    (
        select(vec![
            "HelmRepository",
            "GitRepository",
            "Bucket",
            "helmrepository",
        ]),
        select(vec!["oci-charts", "http-charts", "missing"]),
        prop::option::of(select(vec!["team-a", "flux-system"])),
    )
        .prop_map(|(kind, name, namespace)| {
            let mut r = json!({"kind": kind, "name": name});
            if let Some(ns) = namespace {
                r["namespace"] = json!(ns);
            }
            r
        })
}

fn helm_chart() -> impl Strategy<Value = Value> {
    (
        api_version("source.toolkit.fluxcd.io"),
        metadata(),
        select(vec!["podinfo", "gitlab-agent", "./charts/app"]),
        prop::option::of(source_ref()),
        verify(),
    )
        .prop_map(|(api_version, metadata, chart, source, verify)| {
            let mut spec = json!({"chart": chart});
            if let Some(source) = source {
                spec["sourceRef"] = source;
            }
            if let Some(verify) = verify {
                spec["verify"] = verify;
            }
            json!({"apiVersion": api_version, "kind": "HelmChart", "metadata": metadata, "spec": spec})
        })
}

fn helm_release() -> impl Strategy<Value = Value> {
    (
        api_version("helm.toolkit.fluxcd.io"),
        metadata(),
        select(vec!["podinfo", "gitlab-agent", "charts/gitlab-agent-2.6.2.tgz"]),
        prop::option::of(source_ref()),
        verify(),
        prop::option::of(select(vec!["gitlab-agent-chart", "podinfo"])),
        prop::option::of("[a-z-]{1,80}"),
    )
        .prop_map(
            |(api_version, metadata, chart, source, verify, chart_ref, target)| {
                let mut template = json!({"chart": chart});
                if let Some(source) = source {
                    template["sourceRef"] = source;
                }
                if let Some(verify) = verify {
                    template["verify"] = verify;
                }
                let mut spec = json!({"chart": {"spec": template}});
                if let Some(name) = chart_ref {
                    spec["chartRef"] = json!({"kind": "OCIRepository", "name": name});
                }
                if let Some(target) = target {
                    spec["targetNamespace"] = json!(target);
                }
                json!({"apiVersion": api_version, "kind": "HelmRelease", "metadata": metadata, "spec": spec})
            },
        )
}

fn container() -> impl Strategy<Value = Value> {
    (
        name(),
        select(vec![
            format!("{AGENTK}:v17.3.1"),
            format!("{AGENTK}@sha256:0123abcd"),
            "mirror.internal:5000/gitlab-agent/agentk".to_string(),
            "nginx:1.25".to_string(),
            "ghcr.io/stefanprodan/podinfo:6.5.0".to_string(),
            "example.com/not-gitlab-agent/agentk:1".to_string(),
            String::new(),
        ]),
        prop::option::of(select(vec![
            vec!["--kas-address=wss://kas.gitlab.com"],
            vec!["--kas-address", "grpc://x"],
            vec!["--listen=:8080"],
        ])),
    )
        .prop_map(|(name, image, args)| {
            let mut c = json!({"name": name, "image": image});
            if let Some(args) = args {
                c["args"] = json!(args);
            }
            c
        })
}

fn pod_spec() -> impl Strategy<Value = Value> {
    (
        prop::collection::vec(container(), 0..3),
        prop::option::of(prop::collection::vec(container(), 0..2)),
        prop::option::of(prop::collection::vec(container(), 0..2)),
    )
        .prop_map(|(containers, init, ephemeral)| {
            let mut spec = json!({ "containers": containers });
            if let Some(init) = init {
                spec["initContainers"] = json!(init);
            }
            if let Some(ephemeral) = ephemeral {
                spec["ephemeralContainers"] = json!(ephemeral);
            }
            spec
        })
}

fn owner() -> impl Strategy<Value = Option<Value>> {
    prop::option::of(
        (
            select(vec![
                ("apps/v1", "ReplicaSet"),
                ("apps/v1", "Deployment"),
                ("batch/v1", "Job"),
                ("batch/v1", "CronJob"),
                ("v1", "Node"),
            ]),
            name(),
            prop::option::of("[a-z0-9-]{1,12}"),
        )
            .prop_map(|((api_version, kind), name, uid)| {
                json!([{"apiVersion": api_version, "kind": kind, "name": name, "uid": uid, "controller": true}])
            }),
    )
}

fn workload() -> impl Strategy<Value = Value> {
    (
        select(vec![
            ("apps/v1", "Deployment"),
            ("apps/v1", "StatefulSet"),
            ("apps/v1", "DaemonSet"),
            ("apps/v1", "ReplicaSet"),
            ("batch/v1", "Job"),
            ("batch/v1", "CronJob"),
            ("v1", "Pod"),
        ]),
        metadata(),
        pod_spec(),
        owner(),
    )
        .prop_map(|((api_version, kind), mut metadata, pod, owners)| {
            if let Some(owners) = owners {
                metadata["ownerReferences"] = owners;
            }
            let template = json!({"metadata": {"labels": {"app": "x"}}, "spec": pod});
            let spec = match kind {
                "Pod" => template["spec"].clone(),
                "CronJob" => json!({"jobTemplate": {"spec": {"template": template}}}),
                _ => json!({ "template": template }),
            };
            json!({"apiVersion": api_version, "kind": kind, "metadata": metadata, "spec": spec})
        })
}

const SUBJECT_NAMES: &[&str] = &[
    "gitlab:ci_job",
    "gitlab:user",
    "gitlab:ci_job:4711",
    "gitlab:project_env:42:review",
    "gitlab:project_env_tier:42:production",
    "gitlab:group_role:12:developer",
    "system:authenticated",
    "system:masters",
    "gitlab-agent",
    "alice",
];

fn rule() -> impl Strategy<Value = Value> {
    (
        prop::collection::vec(
            select(vec!["", "apps", "*", "rbac.authorization.k8s.io"]),
            0..3,
        ),
        prop::collection::vec(
            select(vec![
                "pods",
                "secrets",
                "*",
                "deployments",
                "users",
                "clusterroles",
                "pods/exec",
            ]),
            0..3,
        ),
        prop::collection::vec(
            select(vec![
                "get",
                "list",
                "*",
                "create",
                "impersonate",
                "escalate",
                "bind",
            ]),
            0..3,
        ),
        prop::option::of(prop::collection::vec(select(vec!["/healthz", "*"]), 0..2)),
    )
        .prop_map(|(groups, resources, verbs, urls)| {
            let mut rule = json!({"apiGroups": groups, "resources": resources, "verbs": verbs});
            if let Some(urls) = urls {
                rule["nonResourceURLs"] = json!(urls);
            }
            rule
        })
}

fn role() -> impl Strategy<Value = Value> {
    (
        select(vec!["Role", "ClusterRole"]),
        metadata(),
        prop::collection::vec(rule(), 0..3),
        prop::option::of(select(vec![
            "rbac.authorization.k8s.io/aggregate-to-view",
            "example.com/aggregate",
        ])),
    )
        .prop_map(|(kind, metadata, rules, aggregate)| {
            let mut role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind,
                "metadata": metadata, "rules": rules});
            if let (Some(label), "ClusterRole") = (aggregate, kind) {
                role["aggregationRule"] =
                    json!({"clusterRoleSelectors": [{"matchLabels": {label: "true"}}]});
            }
            role
        })
}

fn binding() -> impl Strategy<Value = Value> {
    (
        select(vec!["RoleBinding", "ClusterRoleBinding"]),
        metadata(),
        (
            select(vec!["Role", "ClusterRole", "clusterrole"]),
            select(vec![
                "view",
                "edit",
                "admin",
                "cluster-admin",
                "View",
                "deployer",
                "missing",
            ]),
            select(vec!["rbac.authorization.k8s.io", ""]),
        ),
        prop::collection::vec(
            (
                select(vec!["User", "Group", "ServiceAccount", "group"]),
                select(SUBJECT_NAMES.to_vec()),
            ),
            0..4,
        ),
    )
        .prop_map(|(kind, metadata, (ref_kind, ref_name, ref_group), subjects)| {
            let subjects: Vec<Value> = subjects
                .into_iter()
                .map(|(kind, name)| {
                    if kind == "ServiceAccount" {
                        json!({"kind": kind, "name": name, "namespace": "gitlab-agent"})
                    } else {
                        json!({"kind": kind, "name": name, "apiGroup": "rbac.authorization.k8s.io"})
                    }
                })
                .collect();
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": metadata,
                "roleRef": {"apiGroup": ref_group, "kind": ref_kind, "name": ref_name},
                "subjects": subjects})
        })
}

// Boxed: the nested strategy types are large enough to overflow a test thread's stack in
// debug builds when proptest builds their value trees.
fn plausible() -> BoxedStrategy<Value> {
    prop_oneof![
        oci_repository().boxed(),
        helm_chart().boxed(),
        helm_release().boxed(),
        workload().boxed(),
        role().boxed(),
        binding().boxed(),
    ]
    .boxed()
}

const JUNK_SITES: &[&str] = &[
    "",
    "/metadata",
    "/metadata/name",
    "/metadata/namespace",
    "/metadata/annotations",
    "/metadata/labels",
    "/metadata/ownerReferences",
    "/spec",
    "/spec/url",
    "/spec/insecure",
    "/spec/verify",
    "/spec/verify/provider",
    "/spec/verify/matchOIDCIdentity",
    "/spec/chart",
    "/spec/chart/spec/sourceRef",
    "/spec/chartRef",
    "/spec/template/spec/containers",
    "/spec/containers",
    "/rules",
    "/aggregationRule",
    "/roleRef",
    "/roleRef/name",
    "/subjects",
];

/// Replaces the value at `site` (or adds it to its parent) with `junk`.
fn mutilate(mut object: Value, site: &str, junk: Value) -> Value {
    if site.is_empty() {
        return junk;
    }
    let (parent, key) = site.rsplit_once('/').unwrap_or(("", site));
    if let Some(Value::Object(map)) = object.pointer_mut(parent) {
        map.insert(key.to_string(), junk);
    }
    object
}

/// What a judged request may carry: a plausible object, one with junk somewhere, or junk.
fn object() -> BoxedStrategy<Value> {
    prop_oneof![
        4 => plausible(),
        2 => (plausible(), select(JUNK_SITES.to_vec()), junk().boxed())
            .prop_map(|(object, site, junk)| mutilate(object, site, junk))
            .boxed(),
        1 => junk().boxed(),
    ]
    .boxed()
}

// ---------------------------------------------------------------------------------------
// The system under test

const CONFIG: &str = r#"
policies:
  signed-oci-sources:
    verifyDefaults:
      - name: acme-gitlab
        match: oci://registry.gitlab.com/acme/**
        verify:
          provider: cosign
          matchOIDCIdentity:
            - issuer: '^https://gitlab\.com$'
              subject: '^https://gitlab\.com/{group}/{project}//\.gitlab-ci\.yml@refs/heads/main$'
      - match: oci://ghcr.io/acme
        verify:
          provider: cosign
          secretRef: {name: cosign-pub}
"#;

fn engine() -> Engine {
    Engine::new(
        Config::from_yaml(CONFIG, "properties.yaml").expect("config parses"),
        None,
    )
}

/// A cluster with an agent, OCI and HTTP chart repositories and a few roles.
fn view() -> MemoryView {
    let view = MemoryView::new();
    for object in [
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "gitlab-agent-v2", "namespace": "gitlab-agent", "uid": "uid-agent",
                "labels": {"app.kubernetes.io/instance": "gitlab-agent"}},
            "spec": {"template": {"spec": {"containers": [{"name": "a", "image": format!("{AGENTK}:v17.3.1")}]}}}}),
        json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "HelmRepository",
            "metadata": {"name": "oci-charts", "namespace": "team-a"},
            "spec": {"type": "oci", "url": "oci://ghcr.io/acme/charts"}}),
        json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "HelmRepository",
            "metadata": {"name": "http-charts", "namespace": "team-a"},
            "spec": {"url": "https://stefanprodan.github.io/podinfo"}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "deployer"},
            "rules": [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "create"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "ci-deployer"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "deployer"},
            "subjects": [{"kind": "Group", "name": "gitlab:ci_job", "apiGroup": "rbac.authorization.k8s.io"}]}),
    ] {
        view.apply(&object).expect("fixture applies");
    }
    view
}

fn group_version_kind(object: &Value) -> (String, String, String) {
    let api_version = object["apiVersion"].as_str().unwrap_or("v1");
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let kind = object["kind"].as_str().unwrap_or("OCIRepository");
    (group.to_string(), version.to_string(), kind.to_string())
}

/// An AdmissionReview for `object` as the API server sends one; `like` gives the kind when
/// the object is junk without one.
fn review_body(
    object: &Value,
    like: &Value,
    operation: &str,
    old: Option<&Value>,
    sub_resource: Option<&str>,
    dry_run: bool,
) -> Vec<u8> {
    let (group, version, kind) = if object["kind"].is_string() {
        group_version_kind(object)
    } else {
        group_version_kind(like)
    };
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "prop",
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": "x"},
            "subResource": sub_resource,
            "name": object.pointer("/metadata/name").filter(|v| v.is_string()),
            "namespace": object.pointer("/metadata/namespace").filter(|v| v.is_string()),
            "operation": operation,
            "userInfo": {"username": "prop", "groups": ["system:authenticated"]},
            "object": object,
            "oldObject": old,
            "dryRun": dry_run
        }
    }))
    .expect("json")
}

fn mutate_patch(
    engine: &Engine,
    view: &MemoryView,
    object: &Value,
) -> Vec<json_patch::PatchOperation> {
    let body = review_body(object, object, "CREATE", None, None, false);
    let request = admission::decode(&body).expect("a review");
    engine.review(Endpoint::Mutate, &request, view).0.patch
}

fn apply(object: &Value, patch: &[json_patch::PatchOperation]) -> Value {
    let mut patched = object.clone();
    json_patch::patch(&mut patched, patch)
        .expect("the patch applies to the object it was made for");
    patched
}

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(96);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn no_request_panics(
        object in object(),
        like in plausible(),
        old in prop::option::of(object()),
        operation in select(vec!["CREATE", "UPDATE", "DELETE", "CONNECT"]),
        sub_resource in prop::option::of(select(vec!["status", "ephemeralcontainers", "scale", ""])),
        dry_run in any::<bool>(),
    ) {
        let engine = engine();
        let view = view();
        // What the reflectors and `fluxgate check` feed the view must not panic it either.
        let _ = view.apply(&object);
        let body = review_body(&object, &like, operation, old.as_ref(), sub_resource, dry_run);
        let request = admission::decode(&body).expect("the body is a review");
        for endpoint in [Endpoint::Validate, Endpoint::Mutate] {
            let (verdict, _) = engine.review(endpoint, &request, &view);
            let answer = fluxgate::engine::verdict::encode(&request.uid, &verdict);
            prop_assert!(serde_json::from_slice::<Value>(&answer).is_ok());
            if !verdict.allowed {
                prop_assert!(!verdict.denial_message().is_empty());
            }
        }
        let _ = engine.prefetch(&request);
        let _ = fluxgate::audit::scan(&engine, &view, [&object]);
    }

    #[test]
    fn oci_repository_mutation_is_allowed_by_validation_and_idempotent(
        repo in oci_repository(),
    ) {
        let engine = engine();
        let view = view();
        let url = repo["spec"]["url"].as_str().unwrap_or("");
        let has_rule = URLS.iter().any(|(u, matches)| *u == url && *matches);
        let unverified = repo["spec"].get("verify").is_none_or(Value::is_null);

        let patch = mutate_patch(&engine, &view, &repo);
        if !unverified {
            prop_assert!(patch.is_empty(), "an existing verify is never patched: {patch:?}");
            return Ok(());
        }
        prop_assert_eq!(!patch.is_empty(), has_rule, "a patch exactly when a rule matches {}", url);
        if patch.is_empty() {
            return Ok(());
        }
        let mutated = apply(&repo, &patch);
        prop_assert!(
            mutate_patch(&engine, &view, &mutated).is_empty(),
            "mutate is idempotent"
        );
        let body = review_body(&mutated, &mutated, "CREATE", None, None, false);
        let request = admission::decode(&body).expect("a review");
        let (verdict, _) = engine.review(Endpoint::Validate, &request, &view);
        let violations: Vec<&str> = verdict
            .outcomes
            .iter()
            .filter(|o| o.finding.policy == PolicyId::SignedOciSources)
            .filter(|o| o.finding.severity == fluxgate::finding::Severity::Violation)
            .map(|o| o.finding.message.as_str())
            .collect();
        // Plain HTTP is a transport problem the verify block cannot fix.
        if repo["spec"]["insecure"] != json!(true) {
            prop_assert!(verdict.allowed, "mutated object denied: {violations:?}");
        } else {
            prop_assert!(violations.iter().all(|m| m.contains("plain HTTP")), "{violations:?}");
        }
    }
}
