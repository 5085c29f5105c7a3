//! The deploy/ tree as kubectl and Flux apply it: every overlay rendered with
//! `kubectl kustomize` and checked against the code it deploys (the kinds the policies judge,
//! the kinds the cluster view watches), against what a webhook install must get right to be
//! safe, and against the Kubernetes schema without a cluster: built-in kinds through the
//! typed k8s-openapi structs with a round trip that catches unknown and misspelled fields,
//! custom resources through their CRDs' OpenAPI schemas (tests/fixtures/crds and the Flux CRDs in
//! tests/fixtures/corpus/crds).

use std::any::TypeId;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use base64::Engine as _;
use fluxgate::cluster::WATCHED_KINDS;
use fluxgate::config::Config;
use fluxgate::engine::Engine;
use serde::Deserialize;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const NAMESPACE: &str = "fluxgate-system";
const CA_BUNDLE_VARIABLE: &str = "${FLUXGATE_CA_BUNDLE}";
/// The kinds no webhook of fluxgate may ever intercept by default: what keeps a cluster
/// alive (and, for Pods, what would put fluxgate in every workload's path).
const NEVER_INTERCEPTED: &[(&str, &str)] = &[
    ("", "pods"),
    ("coordination.k8s.io", "leases"),
    ("", "events"),
    ("events.k8s.io", "events"),
    ("", "nodes"),
];

fn deploy_dir(path: &str) -> PathBuf {
    Path::new(ROOT).join("deploy").join(path)
}

// ---------------------------------------------------------------------------------------
// Rendering

/// `kubectl kustomize DIR`: how users, CI and (through the same library) Flux build the tree.
/// Without kubectl nothing here can be checked, so a missing kubectl fails, never skips.
fn kustomize(dir: &Path) -> Result<String, String> {
    let kubectl = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".to_string());
    let output = Command::new(&kubectl)
        .arg("kustomize")
        .arg(dir)
        .output()
        .map_err(|e| {
            format!(
                "cannot run `{kubectl} kustomize` ({e}): the deploy tests need kubectl on PATH \
                 (CI installs it; set KUBECTL to use another binary)"
            )
        })?;
    if !output.status.success() {
        return Err(format!(
            "`kubectl kustomize {}` failed: {}",
            dir.display(),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    String::from_utf8(output.stdout).map_err(|e| e.to_string())
}

fn render(dir: &Path) -> String {
    kustomize(dir).unwrap_or_else(|e| panic!("{e}"))
}

fn parse_documents(yaml: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("rendered YAML: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum RolloutMode {
    Audit,
    Enforce,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum CertSource {
    CertManager,
    FluxgateCerts,
}

struct Overlay {
    name: String,
    mode: RolloutMode,
    certs: CertSource,
    /// The output of `kubectl kustomize`, before any post-build substitution.
    raw: String,
    /// The objects as applied: for fluxgate-certs overlays after the caBundle substitution
    /// Flux (postBuild) or envsubst does.
    objects: Vec<Value>,
}

/// A CA certificate standing in for the one make-certs.sh creates.
fn test_ca_bundle() -> &'static str {
    static BUNDLE: OnceLock<String> = OnceLock::new();
    BUNDLE.get_or_init(|| {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("self-signed CA");
        base64::engine::general_purpose::STANDARD.encode(cert.pem())
    })
}

/// Every directory in deploy/overlays, rendered once for all tests. The rollout mode and
/// certificate source are read from the name, so a new overlay is checked as soon as it
/// exists, and one whose name says neither fails.
fn overlays() -> &'static [Overlay] {
    static OVERLAYS: OnceLock<Vec<Overlay>> = OnceLock::new();
    OVERLAYS.get_or_init(|| {
        let mut names: Vec<String> = std::fs::read_dir(deploy_dir("overlays"))
            .expect("deploy/overlays")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|name| {
                let mode = if name.starts_with("audit") {
                    RolloutMode::Audit
                } else if name.starts_with("enforce") {
                    RolloutMode::Enforce
                } else {
                    panic!("overlay {name}: its name must start with audit or enforce")
                };
                let certs = if name.ends_with("fluxgate-certs") {
                    CertSource::FluxgateCerts
                } else {
                    CertSource::CertManager
                };
                let raw = render(&deploy_dir(&format!("overlays/{name}")));
                let applied = raw.replace(CA_BUNDLE_VARIABLE, test_ca_bundle());
                Overlay {
                    objects: parse_documents(&applied),
                    name,
                    mode,
                    certs,
                    raw,
                }
            })
            .collect()
    })
}

fn flux_bundle() -> &'static [Value] {
    static FLUX: OnceLock<Vec<Value>> = OnceLock::new();
    FLUX.get_or_init(|| parse_documents(&render(&deploy_dir("flux"))))
}

fn observability() -> &'static [Value] {
    static OBSERVABILITY: OnceLock<Vec<Value>> = OnceLock::new();
    OBSERVABILITY.get_or_init(|| parse_documents(&render(&deploy_dir("observability"))))
}

// ---------------------------------------------------------------------------------------
// Looking things up in rendered objects

fn kind_of(obj: &Value) -> &str {
    obj["kind"].as_str().unwrap_or("")
}

fn name_of(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().unwrap_or("")
}

fn namespace_of(obj: &Value) -> Option<&str> {
    obj["metadata"]["namespace"].as_str()
}

fn describe(obj: &Value) -> String {
    match namespace_of(obj) {
        Some(ns) => format!("{} {ns}/{}", kind_of(obj), name_of(obj)),
        None => format!("{} {}", kind_of(obj), name_of(obj)),
    }
}

fn all_of<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| kind_of(o) == kind).collect()
}

fn the<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| kind_of(o) == kind && name_of(o) == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in the rendered objects"))
}

fn at<'a>(obj: &'a Value, pointer: &str) -> &'a Value {
    obj.pointer(pointer)
        .unwrap_or_else(|| panic!("{}: no {pointer}", describe(obj)))
}

fn str_at<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    at(obj, pointer)
        .as_str()
        .unwrap_or_else(|| panic!("{}: {pointer} is not a string", describe(obj)))
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn deployment(objects: &[Value]) -> &Value {
    the(objects, "Deployment", "fluxgate")
}

fn container(objects: &[Value]) -> &Value {
    let containers = at(deployment(objects), "/spec/template/spec/containers");
    assert_eq!(
        containers.as_array().map(Vec::len),
        Some(1),
        "one container"
    );
    &containers[0]
}

fn args(objects: &[Value]) -> Vec<&str> {
    strings(&container(objects)["args"])
}

/// The value of `--flag=value` in the container's arguments.
fn flag<'a>(objects: &'a [Value], name: &str) -> Option<&'a str> {
    let prefix = format!("--{name}=");
    args(objects)
        .into_iter()
        .find_map(|a| a.strip_prefix(&prefix))
}

fn webhooks<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    all_of(objects, kind)
        .into_iter()
        .flat_map(|c| c["webhooks"].as_array().into_iter().flatten())
        .collect()
}

fn all_webhooks(objects: &[Value]) -> Vec<&Value> {
    let mut all = webhooks(objects, "ValidatingWebhookConfiguration");
    all.extend(webhooks(objects, "MutatingWebhookConfiguration"));
    all
}

type GroupResourceOp = (String, String, String);

/// What a webhook configuration sends to fluxgate, one (group, resource, operation) at a time.
fn intercepted(objects: &[Value], kind: &str) -> BTreeSet<GroupResourceOp> {
    let mut sent = BTreeSet::new();
    for webhook in webhooks(objects, kind) {
        for rule in webhook["rules"].as_array().into_iter().flatten() {
            for group in strings(&rule["apiGroups"]) {
                for resource in strings(&rule["resources"]) {
                    for op in strings(&rule["operations"]) {
                        sent.insert((group.to_string(), resource.to_string(), op.to_string()));
                    }
                }
            }
        }
    }
    sent
}

fn engine_kinds() -> BTreeSet<GroupResourceOp> {
    let engine = Engine::new(Config::default(), None);
    engine
        .kinds()
        .into_iter()
        .filter(|(_, rule)| !rule.opt_in)
        .flat_map(|(_, rule)| {
            rule.operations.iter().map(|op| {
                (
                    rule.group.to_string(),
                    rule.resource.to_string(),
                    op.as_str().to_string(),
                )
            })
        })
        .collect()
}

fn create_update(group: &str, resources: &[&str]) -> Vec<GroupResourceOp> {
    resources
        .iter()
        .flat_map(|r| {
            ["CREATE", "UPDATE"].map(|op| (group.to_string(), r.to_string(), op.to_string()))
        })
        .collect()
}

/// The kinds the policies of this release judge, as their authors specified them (every
/// version, CREATE and UPDATE). `Engine::kinds()` is the authority and the drift test holds
/// deploy/ to it; this list shows that the rules are right while the policies are written.
fn documented_policy_kinds() -> BTreeSet<GroupResourceOp> {
    let mut kinds = Vec::new();
    // signed-oci-sources (a HelmRepository too, when it turns OCI)
    kinds.extend(create_update(
        "source.toolkit.fluxcd.io",
        &["ocirepositories", "helmcharts", "helmrepositories"],
    ));
    kinds.extend(create_update("helm.toolkit.fluxcd.io", &["helmreleases"]));
    // tenant-lockdown (also HelmRelease, and Deployments of the Flux controllers)
    kinds.extend(create_update(
        "kustomize.toolkit.fluxcd.io",
        &["kustomizations"],
    ));
    // oci-version-pinning: OCIRepository, listed above
    // single-agent (ownerless ReplicaSets and Pods: audit scan and components/agent-pods)
    kinds.extend(create_update(
        "apps",
        &["deployments", "statefulsets", "daemonsets"],
    ));
    kinds.extend(create_update("batch", &["cronjobs", "jobs"]));
    kinds.extend(create_update("", &["replicationcontrollers"]));
    // secret-rotation (warnings only; ocirepositories, helmcharts and helmreleases above)
    kinds.extend(create_update(
        "source.toolkit.fluxcd.io",
        &["gitrepositories", "helmrepositories", "buckets"],
    ));
    kinds.extend(create_update(
        "kustomize.toolkit.fluxcd.io",
        &["kustomizations"],
    ));
    // ci-impersonation
    kinds.extend(create_update(
        "rbac.authorization.k8s.io",
        &[
            "rolebindings",
            "clusterrolebindings",
            "roles",
            "clusterroles",
        ],
    ));
    kinds.into_iter().collect()
}

/// What the mutating webhook sends: the kinds a policy patches. The Policy trait does not
/// say which policies mutate, so this one list is written down; the drift test still
/// requires every one of them to be a kind some policy judges.
fn documented_mutated_kinds() -> BTreeSet<GroupResourceOp> {
    create_update(
        "source.toolkit.fluxcd.io",
        &["ocirepositories", "helmcharts"],
    )
    .into_iter()
    .collect()
}

fn show(set: &BTreeSet<GroupResourceOp>) -> String {
    set.iter()
        .map(|(g, r, o)| format!("  {g}/{r} {o}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn assert_same_kinds(
    what: &str,
    rendered: &BTreeSet<GroupResourceOp>,
    expected: &BTreeSet<GroupResourceOp>,
    remedy: &str,
) {
    let missing: BTreeSet<_> = expected.difference(rendered).cloned().collect();
    let extra: BTreeSet<_> = rendered.difference(expected).cloned().collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}:\njudged but not sent (the policy never sees them):\n{}\nsent but not judged \
         (latency and failure risk for nothing):\n{}\n{remedy}",
        show(&missing),
        show(&extra),
    );
}

// ---------------------------------------------------------------------------------------
// Webhook rules against the code

#[test]
fn every_overlay_renders_and_names_its_rollout_mode() {
    let found: BTreeSet<(RolloutMode, CertSource)> =
        overlays().iter().map(|o| (o.mode, o.certs)).collect();
    for mode in [RolloutMode::Audit, RolloutMode::Enforce] {
        for certs in [CertSource::CertManager, CertSource::FluxgateCerts] {
            assert!(
                found.contains(&(mode, certs)),
                "no overlay for {mode:?} with {certs:?}"
            );
        }
    }
    for overlay in overlays() {
        assert!(
            !overlay.objects.is_empty(),
            "{} renders nothing",
            overlay.name
        );
    }
}

#[test]
fn webhook_rules_cover_exactly_the_kinds_the_policies_judge() {
    let judged = engine_kinds();
    for overlay in overlays() {
        let validated = intercepted(&overlay.objects, "ValidatingWebhookConfiguration");
        assert_same_kinds(
            &format!(
                "{}: ValidatingWebhookConfiguration rules against Engine::kinds()",
                overlay.name
            ),
            &validated,
            &judged,
            "Make deploy/base/webhooks.yaml list exactly the kinds of the policies' kinds().",
        );
        let mutated = intercepted(&overlay.objects, "MutatingWebhookConfiguration");
        let unjudged: BTreeSet<_> = mutated.difference(&judged).cloned().collect();
        assert!(
            unjudged.is_empty(),
            "{}: the mutating webhook sends kinds no policy judges:\n{}",
            overlay.name,
            show(&unjudged)
        );
    }
}

#[test]
fn webhook_rules_match_the_documented_policy_kinds() {
    for overlay in overlays() {
        assert_same_kinds(
            &format!("{}: validating rules", overlay.name),
            &intercepted(&overlay.objects, "ValidatingWebhookConfiguration"),
            &documented_policy_kinds(),
            "",
        );
        assert_same_kinds(
            &format!("{}: mutating rules", overlay.name),
            &intercepted(&overlay.objects, "MutatingWebhookConfiguration"),
            &documented_mutated_kinds(),
            "",
        );
    }
}

#[test]
fn webhooks_never_intercept_pods_leases_events_or_nodes_and_use_no_wildcards() {
    for overlay in overlays() {
        for webhook in all_webhooks(&overlay.objects) {
            let name = webhook["name"].as_str().unwrap_or("?");
            for rule in webhook["rules"].as_array().into_iter().flatten() {
                for field in ["apiGroups", "resources", "operations"] {
                    let values = strings(&rule[field]);
                    assert!(
                        !values.is_empty() && !values.iter().any(|v| v.contains('*')),
                        "{}: webhook {name}: {field} must list names, not {values:?}",
                        overlay.name
                    );
                }
                for group in strings(&rule["apiGroups"]) {
                    for resource in strings(&rule["resources"]) {
                        assert!(
                            !NEVER_INTERCEPTED.contains(&(group, resource)),
                            "{}: webhook {name} intercepts {group}/{resource}",
                            overlay.name
                        );
                        assert!(
                            !resource.contains('/'),
                            "{}: webhook {name} intercepts the subresource {resource}",
                            overlay.name
                        );
                    }
                }
                assert_eq!(
                    strings(&rule["apiVersions"]),
                    ["*"],
                    "{}: webhook {name}: policies judge every version of their kinds",
                    overlay.name
                );
            }
        }
    }
}

/// Whether a webhook sends a kind `single-agent` judges (the one policy that writes: it
/// reserves new agent installations through a Lease).
fn sends_claiming_kinds(webhook: &Value) -> bool {
    let engine = Engine::new(Config::default(), None);
    let claiming: BTreeSet<(String, String)> = engine
        .kinds()
        .into_iter()
        .filter(|(policy, _)| *policy == fluxgate::finding::PolicyId::SingleAgent)
        .map(|(_, rule)| (rule.group.to_string(), rule.resource.to_string()))
        .collect();
    webhook["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|rule| {
            strings(&rule["apiGroups"]).iter().any(|group| {
                strings(&rule["resources"])
                    .iter()
                    .any(|resource| claiming.contains(&(group.to_string(), resource.to_string())))
            })
        })
}

#[test]
fn webhooks_are_safe_to_call() {
    for overlay in overlays() {
        let objects = &overlay.objects;
        let service = the(objects, "Service", "fluxgate");
        let https_port = service["spec"]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == "https")
            .unwrap_or_else(|| panic!("{}: the Service has no https port", overlay.name));
        for (kind, path) in [
            ("ValidatingWebhookConfiguration", "/validate"),
            ("MutatingWebhookConfiguration", "/mutate"),
        ] {
            let hooks = webhooks(objects, kind);
            let everywhere_else: Vec<&&Value> = hooks
                .iter()
                .filter(|w| !selects_protected_namespaces(w))
                .collect();
            assert_eq!(
                everywhere_else.len(),
                1,
                "{}: one {kind} webhook outside kube-system and fluxgate's namespace: two matching one request would judge it twice",
                overlay.name
            );
            for webhook in hooks {
                let name = webhook["name"].as_str().unwrap_or("?");
                let context = format!("{}: {kind} webhook {name}", overlay.name);
                // A webhook that sends single-agent a kind it judges may reserve a new agent
                // installation (a Lease write), never for a dry run; the others write nothing.
                let side_effects = if sends_claiming_kinds(webhook) {
                    "NoneOnDryRun"
                } else {
                    "None"
                };
                assert_eq!(
                    webhook["sideEffects"], side_effects,
                    "{context}: sideEffects"
                );
                assert_eq!(
                    strings(&webhook["admissionReviewVersions"]),
                    ["v1"],
                    "{context}: admissionReviewVersions"
                );
                assert_eq!(
                    webhook["matchPolicy"], "Equivalent",
                    "{context}: matchPolicy"
                );
                let timeout = webhook["timeoutSeconds"].as_u64().unwrap_or(10);
                assert!(
                    (1..=5).contains(&timeout),
                    "{context}: timeoutSeconds {timeout}: a slow webhook blocks every write it sees"
                );
                assert!(
                    webhook.get("objectSelector").is_none(),
                    "{context}: an objectSelector would let an object's own labels skip the policies"
                );
                let selector = &webhook["namespaceSelector"];
                let operator = if selects_protected_namespaces(webhook) {
                    "In"
                } else {
                    "NotIn"
                };
                let by_name = selector["matchExpressions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|e| {
                        e["key"] == "kubernetes.io/metadata.name" && e["operator"] == operator
                    })
                    .unwrap_or_else(|| {
                        panic!("{context}: namespaceSelector must select namespaces by name")
                    });
                let named: BTreeSet<&str> = strings(&by_name["values"]).into_iter().collect();
                assert_eq!(
                    named,
                    BTreeSet::from(["kube-system", NAMESPACE]),
                    "{context}: namespaces {operator}"
                );
                assert!(
                    selector.get("matchLabels").is_none(),
                    "{context}: a matchLabels would make judging opt-in"
                );
                let target = &webhook["clientConfig"]["service"];
                assert!(
                    webhook["clientConfig"].get("url").is_none(),
                    "{context}: the API server must reach fluxgate through its Service"
                );
                assert_eq!(target["name"], "fluxgate", "{context}: service name");
                assert_eq!(
                    target["namespace"], NAMESPACE,
                    "{context}: service namespace"
                );
                assert_eq!(target["path"], path, "{context}: path");
                assert_eq!(
                    target["port"], https_port["port"],
                    "{context}: service port"
                );
            }
        }
    }
}

/// Whether a webhook selects kube-system and fluxgate's namespace by name (the ones every
/// other webhook leaves out).
fn selects_protected_namespaces(webhook: &Value) -> bool {
    webhook["namespaceSelector"]["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|e| e["key"] == "kubernetes.io/metadata.name" && e["operator"] == "In")
}

/// The namespaces a webhook sends requests from, out of `candidates`.
fn namespaces_sent(webhook: &Value, candidates: &[&'static str]) -> BTreeSet<&'static str> {
    let expressions: Vec<&Value> = webhook["namespaceSelector"]["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    candidates
        .iter()
        .copied()
        .filter(|ns| {
            expressions.iter().all(|e| {
                let values = strings(&e["values"]);
                match (e["key"].as_str(), e["operator"].as_str()) {
                    (Some("kubernetes.io/metadata.name"), Some("In")) => values.contains(ns),
                    (Some("kubernetes.io/metadata.name"), Some("NotIn")) => !values.contains(ns),
                    other => panic!("unexpected selector expression {other:?}"),
                }
            })
        })
        .collect()
}

#[test]
fn rbac_in_kube_system_and_fluxgates_namespace_is_judged_by_a_webhook_that_fails_open() {
    let namespaces = ["kube-system", NAMESPACE, "flux-system", "team-a", "default"];
    let rbac = "rbac.authorization.k8s.io";
    for overlay in overlays() {
        let hooks = webhooks(&overlay.objects, "ValidatingWebhookConfiguration");
        // Every namespaced RBAC write, in every namespace, reaches exactly one webhook.
        for resource in ["roles", "rolebindings"] {
            for op in ["CREATE", "UPDATE"] {
                for ns in namespaces {
                    let sending: Vec<&str> = hooks
                        .iter()
                        .filter(|w| {
                            w["rules"].as_array().into_iter().flatten().any(|r| {
                                strings(&r["apiGroups"]).contains(&rbac)
                                    && strings(&r["resources"]).contains(&resource)
                                    && strings(&r["operations"]).contains(&op)
                            }) && namespaces_sent(w, &namespaces).contains(ns)
                        })
                        .map(|w| w["name"].as_str().unwrap_or("?"))
                        .collect();
                    assert_eq!(
                        sending.len(),
                        1,
                        "{}: {op} {resource} in {ns} goes to {sending:?}",
                        overlay.name
                    );
                }
            }
        }
        // The one for kube-system sends nothing but RBAC, and never blocks when fluxgate is
        // down, whatever the rollout mode.
        let protected: Vec<&&Value> = hooks
            .iter()
            .filter(|w| selects_protected_namespaces(w))
            .collect();
        assert_eq!(protected.len(), 1, "{}", overlay.name);
        let webhook = protected[0];
        assert_eq!(webhook["failurePolicy"], "Ignore", "{}", overlay.name);
        for rule in webhook["rules"].as_array().into_iter().flatten() {
            assert_eq!(strings(&rule["apiGroups"]), [rbac], "{}", overlay.name);
            for resource in strings(&rule["resources"]) {
                assert!(
                    matches!(resource, "roles" | "rolebindings"),
                    "{}: {resource}",
                    overlay.name
                );
            }
            assert_eq!(rule["scope"], "Namespaced", "{}", overlay.name);
        }
        assert_eq!(
            namespaces_sent(webhook, &namespaces),
            BTreeSet::from(["kube-system", NAMESPACE]),
            "{}",
            overlay.name
        );
    }
}

#[test]
fn failure_policy_and_policy_modes_follow_the_overlay() {
    for overlay in overlays() {
        let (failure_policy, mode_flag) = match overlay.mode {
            RolloutMode::Audit => ("Ignore", Some("audit")),
            RolloutMode::Enforce => ("Fail", None),
        };
        for webhook in all_webhooks(&overlay.objects) {
            // In kube-system a webhook fails open whatever the mode (see below).
            let expected = if selects_protected_namespaces(webhook) {
                "Ignore"
            } else {
                failure_policy
            };
            assert_eq!(
                webhook["failurePolicy"], expected,
                "{}: webhook {}",
                overlay.name, webhook["name"]
            );
        }
        assert_eq!(
            flag(&overlay.objects, "mode"),
            mode_flag,
            "{}: --mode (audit overrides every policy's configured mode)",
            overlay.name
        );
        let modes = args(&overlay.objects)
            .iter()
            .filter(|a| a.starts_with("--mode"))
            .count();
        assert!(modes <= 1, "{}: --mode given {modes} times", overlay.name);
    }
}

// ---------------------------------------------------------------------------------------
// RBAC

type GroupResourceVerb = (String, String, String);

/// Every (group, resource, verb) a set of PolicyRules grants, failing on grants a
/// least-privilege role never needs.
fn grants(role: &Value) -> BTreeSet<GroupResourceVerb> {
    let mut granted = BTreeSet::new();
    for rule in role["rules"].as_array().into_iter().flatten() {
        assert!(
            rule.get("nonResourceURLs").is_none(),
            "{}: nonResourceURLs",
            describe(role)
        );
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    granted.insert((group.to_string(), resource.to_string(), verb.to_string()));
                }
            }
        }
    }
    granted
}

fn fluxgate_role_expected() -> BTreeSet<GroupResourceVerb> {
    let mut expected = BTreeSet::new();
    for watched in WATCHED_KINDS {
        // get: the cluster view refreshes objects that race their watch from the API server.
        for verb in ["get", "list", "watch"] {
            expected.insert((
                watched.group.to_string(),
                watched.plural.to_string(),
                verb.to_string(),
            ));
        }
    }
    // The audit scan's reports: server-side apply (patch, create), its own listed, those of
    // the report API it no longer writes deleted.
    for (group, resource) in [
        ("wgpolicyk8s.io", "policyreports"),
        ("wgpolicyk8s.io", "clusterpolicyreports"),
        ("openreports.io", "reports"),
        ("openreports.io", "clusterreports"),
    ] {
        for verb in ["list", "create", "patch", "delete"] {
            expected.insert((group.to_string(), resource.to_string(), verb.to_string()));
        }
    }
    for verb in ["create", "patch"] {
        expected.insert((
            "events.k8s.io".to_string(),
            "events".to_string(),
            verb.to_string(),
        ));
    }
    expected
}

fn show_grants(set: &BTreeSet<GroupResourceVerb>) -> String {
    set.iter()
        .map(|(g, r, v)| format!("  {g}/{r} {v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn cluster_role_grants_exactly_reads_of_the_watched_kinds_and_report_and_event_writes() {
    let expected = fluxgate_role_expected();
    for overlay in overlays() {
        let role = the(&overlay.objects, "ClusterRole", "fluxgate");
        let granted = grants(role);
        let missing: BTreeSet<_> = expected.difference(&granted).cloned().collect();
        let extra: BTreeSet<_> = granted.difference(&expected).cloned().collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{}: ClusterRole fluxgate against cluster::WATCHED_KINDS\nmissing (the reflectors \
             would fail):\n{}\nbeyond least privilege:\n{}",
            overlay.name,
            show_grants(&missing),
            show_grants(&extra)
        );
        for rule in role["rules"].as_array().into_iter().flatten() {
            assert!(
                rule.get("resourceNames").is_none(),
                "{}: reads of watched kinds are cluster-wide lists, resourceNames cannot apply",
                overlay.name
            );
        }
        let binding = the(&overlay.objects, "ClusterRoleBinding", "fluxgate");
        assert_binds_fluxgate(overlay, binding, "ClusterRole", "fluxgate");
        assert_eq!(
            all_of(&overlay.objects, "ClusterRoleBinding").len(),
            1,
            "{}: fluxgate's only cluster-wide binding is to its own ClusterRole",
            overlay.name
        );
    }
}

/// What `single-agent`'s reservation does with Leases (cluster::reservation): read, create
/// and replace one Lease in fluxgate's namespace; and the election of the audit writer
/// (server::leader, kube-lease-manager): read, create and patch another. RBAC cannot
/// restrict a create by name, so create is namespace-wide; the others name their Lease.
/// Nothing else, nowhere else.
#[test]
fn the_lease_role_grants_exactly_the_reservation_and_only_in_fluxgates_namespace() {
    use fluxgate::cluster::reservation::LEASE_NAME;
    for overlay in overlays() {
        let role = the(&overlay.objects, "Role", "fluxgate-leases");
        assert_eq!(namespace_of(role), Some(NAMESPACE), "{}", overlay.name);
        let mut granted: BTreeSet<(Vec<&str>, &str)> = BTreeSet::new();
        for rule in role["rules"].as_array().into_iter().flatten() {
            assert_eq!(
                strings(&rule["apiGroups"]),
                ["coordination.k8s.io"],
                "{}",
                overlay.name
            );
            assert_eq!(strings(&rule["resources"]), ["leases"], "{}", overlay.name);
            let names = strings(&rule["resourceNames"]);
            for verb in strings(&rule["verbs"]) {
                granted.insert((names.clone(), verb));
            }
        }
        let expected: BTreeSet<(Vec<&str>, &str)> = BTreeSet::from([
            (vec![], "create"),
            (vec![LEASE_NAME], "get"),
            (vec![LEASE_NAME], "update"),
            (vec![fluxgate::server::leader::LEASE_NAME], "get"),
            (vec![fluxgate::server::leader::LEASE_NAME], "patch"),
        ]);
        assert_eq!(granted, expected, "{}: Role fluxgate-leases", overlay.name);

        let bindings = all_of(&overlay.objects, "RoleBinding");
        assert_eq!(bindings.len(), 1, "{}: one RoleBinding", overlay.name);
        let binding = bindings[0];
        assert_eq!(namespace_of(binding), Some(NAMESPACE));
        assert_binds_fluxgate(overlay, binding, "Role", "fluxgate-leases");
        assert_eq!(
            all_of(&overlay.objects, "Role").len(),
            1,
            "{}",
            overlay.name
        );
    }
}

/// The binding gives `role` to fluxgate's ServiceAccount (the one its Deployment runs as), and
/// to nobody else.
fn assert_binds_fluxgate(overlay: &Overlay, binding: &Value, kind: &str, role: &str) {
    assert_eq!(binding["roleRef"]["kind"], kind, "{}", overlay.name);
    assert_eq!(binding["roleRef"]["name"], role, "{}", overlay.name);
    let subjects = binding["subjects"].as_array().expect("subjects");
    assert_eq!(subjects.len(), 1, "{}: one subject", overlay.name);
    assert_eq!(subjects[0]["kind"], "ServiceAccount");
    assert_eq!(subjects[0]["namespace"], NAMESPACE);
    assert_eq!(
        subjects[0]["name"],
        *at(
            deployment(&overlay.objects),
            "/spec/template/spec/serviceAccountName"
        )
    );
}

/// What fluxgate may do with Secrets: exactly get, list and watch. secret-rotation watches
/// their metadata only (PartialObjectMetadata: the API server never sends a value), but
/// RBAC has no metadata-only verb, so that watch needs the same list/watch as reading
/// values, and get for the view's refresh. Never a write.
const SECRET_VERBS: &[&str] = &["get", "list", "watch"];

#[test]
fn cluster_role_reads_only_secret_metadata_and_writes_nothing_the_policies_judge() {
    let judged: BTreeSet<(String, String)> = engine_kinds()
        .into_iter()
        .chain(documented_policy_kinds())
        .map(|(g, r, _)| (g, r))
        .collect();
    for overlay in overlays() {
        let granted = grants(the(&overlay.objects, "ClusterRole", "fluxgate"));
        let secret_verbs: BTreeSet<&str> = granted
            .iter()
            .filter(|(g, r, _)| g.is_empty() && r == "secrets")
            .map(|(_, _, v)| v.as_str())
            .collect();
        assert_eq!(
            secret_verbs,
            SECRET_VERBS.iter().copied().collect(),
            "{}: fluxgate may only get, list and watch Secrets (for their metadata)",
            overlay.name
        );
        for (group, resource, verb) in granted {
            assert!(
                !["*", "escalate", "bind", "impersonate"].contains(&verb.as_str())
                    && resource != "*"
                    && group != "*",
                "{}: {group}/{resource} {verb}",
                overlay.name
            );
            if judged.contains(&(group.clone(), resource.clone())) {
                assert!(
                    ["get", "list", "watch"].contains(&verb.as_str()),
                    "{}: fluxgate judges {group}/{resource} and must not {verb} it",
                    overlay.name
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The Deployment

#[test]
fn deployment_runs_hardened() {
    for overlay in overlays() {
        let objects = &overlay.objects;
        let pod = at(deployment(objects), "/spec/template/spec");
        let container = container(objects);
        let context = &overlay.name;
        for field in ["hostNetwork", "hostPID", "hostIPC"] {
            assert_ne!(pod[field], true, "{context}: {field}");
        }
        assert_eq!(
            pod["securityContext"]["runAsNonRoot"], true,
            "{context}: pod runAsNonRoot"
        );
        let security = &container["securityContext"];
        assert_eq!(security["runAsNonRoot"], true, "{context}: runAsNonRoot");
        assert_eq!(
            security["readOnlyRootFilesystem"], true,
            "{context}: readOnlyRootFilesystem"
        );
        assert_eq!(
            security["allowPrivilegeEscalation"], false,
            "{context}: allowPrivilegeEscalation"
        );
        assert_ne!(security["privileged"], true, "{context}: privileged");
        assert_eq!(
            strings(&security["capabilities"]["drop"]),
            ["ALL"],
            "{context}: capabilities"
        );
        assert!(
            security["capabilities"].get("add").is_none(),
            "{context}: added capabilities"
        );
        for seccomp in [
            &pod["securityContext"]["seccompProfile"],
            &security["seccompProfile"],
        ] {
            assert_eq!(seccomp["type"], "RuntimeDefault", "{context}: seccomp");
        }
        for (bound, resource) in [
            ("requests", "cpu"),
            ("requests", "memory"),
            ("limits", "cpu"),
            ("limits", "memory"),
        ] {
            assert!(
                container["resources"][bound][resource].is_string(),
                "{context}: resources.{bound}.{resource}"
            );
        }
        let namespace = the(objects, "Namespace", NAMESPACE);
        assert_eq!(
            namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"], "restricted",
            "{context}: the namespace enforces the restricted Pod Security Standard"
        );
    }
}

#[test]
fn deployment_stays_available_through_disruptions() {
    for overlay in overlays() {
        let objects = &overlay.objects;
        let deployment = deployment(objects);
        let context = &overlay.name;
        let replicas = deployment["spec"]["replicas"].as_u64().unwrap_or(1);
        assert!(replicas >= 2, "{context}: {replicas} replica(s)");
        let selector = at(deployment, "/spec/selector/matchLabels");
        let pod_labels = at(deployment, "/spec/template/metadata/labels");
        let selects_pods = |labels: &Value| {
            labels
                .as_object()
                .is_some_and(|m| !m.is_empty() && m.iter().all(|(k, v)| pod_labels[k] == *v))
        };
        assert!(selects_pods(selector), "{context}: selector");

        let anti_affinity = at(deployment, "/spec/template/spec/affinity/podAntiAffinity");
        let terms: Vec<&Value> = anti_affinity["preferredDuringSchedulingIgnoredDuringExecution"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| &t["podAffinityTerm"])
            .chain(
                anti_affinity["requiredDuringSchedulingIgnoredDuringExecution"]
                    .as_array()
                    .into_iter()
                    .flatten(),
            )
            .collect();
        assert!(
            terms
                .iter()
                .any(|t| t["topologyKey"] == "kubernetes.io/hostname"
                    && selects_pods(&t["labelSelector"]["matchLabels"])),
            "{context}: replicas spread over nodes"
        );

        let pdbs: Vec<&Value> = all_of(objects, "PodDisruptionBudget")
            .into_iter()
            .filter(|p| selects_pods(&p["spec"]["selector"]["matchLabels"]))
            .collect();
        assert_eq!(
            pdbs.len(),
            1,
            "{context}: a PodDisruptionBudget for the pods"
        );
        let min_available = pdbs[0]["spec"]["minAvailable"].as_u64().unwrap_or(0);
        assert!(
            (1..replicas).contains(&min_available),
            "{context}: minAvailable {min_available} must keep one replica and allow drains"
        );

        let strategy = &deployment["spec"]["strategy"]["rollingUpdate"];
        assert_eq!(
            strategy["maxUnavailable"], 0,
            "{context}: rollouts never remove a ready replica first"
        );
        let priority_class = str_at(deployment, "/spec/template/spec/priorityClassName");
        let class = the(objects, "PriorityClass", priority_class);
        assert!(
            class["value"].as_i64().unwrap_or(0) >= 1_000_000,
            "{context}: priority class {priority_class} is not high"
        );
        assert_ne!(class["globalDefault"], true, "{context}: globalDefault");
    }
}

fn http_probe<'a>(container: &'a Value, probe: &str) -> (&'a str, &'a Value) {
    let get = &container[probe]["httpGet"];
    (
        get["path"]
            .as_str()
            .unwrap_or_else(|| panic!("{probe} without httpGet.path")),
        &get["port"],
    )
}

fn container_port(container: &Value, port: &Value) -> u64 {
    if let Some(number) = port.as_u64() {
        return number;
    }
    container["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == *port)
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("no container port named {port}"))
}

fn listen_port(objects: &[Value], flag_name: &str) -> u64 {
    let address = flag(objects, flag_name).unwrap_or_else(|| panic!("no --{flag_name}"));
    address
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("--{flag_name}={address}"))
}

/// The deadline fluxgate answers a call by: `--eval-timeout-ms`, or a second before the
/// timeout the API server sends with the call (half of it for one second), whichever comes
/// first (`server::webhook::Clock`).
fn answer_deadline_ms(eval_timeout_ms: u64, timeout_seconds: u64) -> u64 {
    let waits = timeout_seconds * 1000;
    eval_timeout_ms.min(waits - 1000.min(waits / 2))
}

#[test]
fn the_evaluation_deadline_is_derived_from_the_webhook_timeouts() {
    for overlay in overlays() {
        let objects = &overlay.objects;
        let context = &overlay.name;
        let eval: u64 = flag(objects, "eval-timeout-ms")
            .unwrap_or_else(|| panic!("{context}: the Deployment sets --eval-timeout-ms"))
            .parse()
            .expect("--eval-timeout-ms is milliseconds");
        let timeouts: Vec<u64> = all_webhooks(objects)
            .iter()
            .map(|w| w["timeoutSeconds"].as_u64().expect("timeoutSeconds"))
            .collect();
        let longest = timeouts.iter().copied().max().expect("webhooks");
        assert_eq!(
            eval,
            longest * 1000 - 1000,
            "{context}: --eval-timeout-ms is one second under the longest timeoutSeconds ({longest} s)"
        );
        for timeout in timeouts {
            let deadline = answer_deadline_ms(eval, timeout);
            assert!(
                deadline < timeout * 1000 && deadline >= timeout * 1000 / 2,
                "{context}: a {timeout} s webhook is answered by {deadline} ms"
            );
        }
    }
}

#[test]
fn probes_ports_and_shutdown_fit_the_server() {
    for overlay in overlays() {
        let objects = &overlay.objects;
        let container = container(objects);
        let context = &overlay.name;
        let metrics_port = listen_port(objects, "metrics-listen");
        let webhook_port = listen_port(objects, "listen");
        for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
            let (probe_path, port) = http_probe(container, probe);
            assert_eq!(probe_path, path, "{context}: {probe}");
            assert_eq!(
                container_port(container, port),
                metrics_port,
                "{context}: {probe} goes to the plain-HTTP metrics listener"
            );
        }
        assert_eq!(
            container_port(container, &Value::from("https")),
            webhook_port,
            "{context}: the https container port is --listen's"
        );

        // The kubelet kills the pod at the end of the grace period: it must cover the preStop
        // pause (endpoint removal reaching the API servers) and the server's drain.
        let pod = at(deployment(objects), "/spec/template/spec");
        let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap_or(30);
        let pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
            .as_u64()
            .unwrap_or(0);
        let drain: u64 = flag(objects, "drain-timeout")
            .map(|d| d.parse().expect("--drain-timeout is seconds"))
            .unwrap_or(10);
        let linger: u64 = flag(objects, "drain-linger")
            .map(|d| d.parse().expect("--drain-linger is seconds"))
            .unwrap_or(2);
        assert!(
            grace > pre_stop + linger + drain,
            "{context}: terminationGracePeriodSeconds {grace} must exceed preStop {pre_stop} s + linger {linger} s + drain {drain} s"
        );
        assert!(pre_stop > 0, "{context}: no preStop pause before the drain");
    }
}

fn mount_of<'a>(objects: &'a [Value], file: &str) -> (&'a Value, &'a Value) {
    let container = container(objects);
    let mount = container["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| {
            m["mountPath"]
                .as_str()
                .is_some_and(|p| Path::new(file).starts_with(p))
        })
        .unwrap_or_else(|| panic!("no volume is mounted where {file} is"));
    let volume = at(deployment(objects), "/spec/template/spec/volumes")
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["name"] == mount["name"])
        .unwrap_or_else(|| panic!("no volume {}", mount["name"]));
    (mount, volume)
}

#[test]
fn configuration_and_certificates_are_mounted_where_the_flags_point() {
    for overlay in overlays() {
        let objects = &overlay.objects;
        let context = &overlay.name;

        let config = flag(objects, "config").expect("--config");
        let (mount, volume) = mount_of(objects, config);
        assert!(
            mount.get("subPath").is_none(),
            "{context}: a subPath mount never sees the ConfigMap change, so nothing would reload"
        );
        assert_eq!(mount["readOnly"], true, "{context}: config mount read-only");
        let config_map = the(objects, "ConfigMap", str_at(volume, "/configMap/name"));
        let file = Path::new(config)
            .strip_prefix(str_at(mount, "/mountPath"))
            .expect("under the mount")
            .to_string_lossy()
            .into_owned();
        assert!(
            config_map["data"][&file].is_string(),
            "{context}: ConfigMap {} has no key {file}",
            name_of(config_map)
        );

        let certificate = flag(objects, "tls-cert").expect("--tls-cert");
        let key = flag(objects, "tls-key").expect("--tls-key");
        let (cert_mount, cert_volume) = mount_of(objects, certificate);
        let (key_mount, _) = mount_of(objects, key);
        assert_eq!(
            cert_mount["name"], key_mount["name"],
            "{context}: one Secret"
        );
        assert!(cert_mount.get("subPath").is_none(), "{context}: no subPath");
        assert!(
            certificate.ends_with("/tls.crt") && key.ends_with("/tls.key"),
            "{context}: kubernetes.io/tls Secret keys"
        );
        let secret_name = str_at(cert_volume, "/secret/secretName");
        match overlay.certs {
            CertSource::CertManager => {
                let issued = all_of(objects, "Certificate")
                    .into_iter()
                    .any(|c| c["spec"]["secretName"] == secret_name);
                assert!(
                    issued,
                    "{context}: no Certificate writes the Secret {secret_name}"
                );
            }
            CertSource::FluxgateCerts => {
                let script =
                    std::fs::read_to_string(deploy_dir("components/fluxgate-certs/make-certs.sh"))
                        .expect("make-certs.sh");
                assert!(
                    script.contains(&format!("create secret tls {secret_name}")),
                    "{context}: make-certs.sh does not create the Secret {secret_name}"
                );
            }
        }
    }
}

#[test]
fn the_policy_config_map_is_a_valid_configuration() {
    for overlay in overlays() {
        let config = flag(&overlay.objects, "config").expect("--config");
        let (_, volume) = mount_of(&overlay.objects, config);
        let config_map = the(
            &overlay.objects,
            "ConfigMap",
            str_at(volume, "/configMap/name"),
        );
        let file = Path::new(config)
            .file_name()
            .expect("file")
            .to_string_lossy()
            .into_owned();
        let text = config_map["data"][&file].as_str().expect("config text");
        if let Err(e) = Config::from_yaml(text, &format!("ConfigMap {}", name_of(config_map))) {
            panic!("{}: {e}", overlay.name);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Service, NetworkPolicy

#[test]
fn service_and_network_policy_expose_only_the_webhook_and_metrics_ports() {
    for overlay in overlays() {
        let objects = &overlay.objects;
        let context = &overlay.name;
        let container = container(objects);
        let service = the(objects, "Service", "fluxgate");
        let pod_labels = at(deployment(objects), "/spec/template/metadata/labels");
        let selects_pods = |selector: &Value| {
            selector
                .as_object()
                .is_some_and(|m| !m.is_empty() && m.iter().all(|(k, v)| pod_labels[k] == *v))
        };
        assert!(
            selects_pods(&service["spec"]["selector"]),
            "{context}: Service selector"
        );
        let ports: BTreeMap<u64, u64> = service["spec"]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                (
                    p["port"].as_u64().expect("port"),
                    container_port(container, &p["targetPort"]),
                )
            })
            .collect();
        let webhook = listen_port(objects, "listen");
        let metrics = listen_port(objects, "metrics-listen");
        assert_eq!(
            ports,
            BTreeMap::from([(443, webhook), (metrics, metrics)]),
            "{context}: Service ports (port -> container port)"
        );

        let policies = all_of(objects, "NetworkPolicy");
        assert_eq!(policies.len(), 1, "{context}: one NetworkPolicy");
        let policy = policies[0];
        assert!(selects_pods(&policy["spec"]["podSelector"]["matchLabels"]));
        assert_eq!(strings(&policy["spec"]["policyTypes"]), ["Ingress"]);
        let mut opened = BTreeMap::new();
        for rule in policy["spec"]["ingress"].as_array().into_iter().flatten() {
            for port in rule["ports"]
                .as_array()
                .expect("every rule names its ports")
            {
                opened.insert(container_port(container, &port["port"]), rule.get("from"));
            }
        }
        assert_eq!(
            opened.keys().copied().collect::<Vec<_>>(),
            {
                let mut v = vec![webhook, metrics];
                v.sort();
                v
            },
            "{context}: NetworkPolicy ports"
        );
        let metrics_from = opened[&metrics]
            .and_then(Value::as_array)
            .unwrap_or_else(|| panic!("{context}: the metrics port is open to every pod"));
        assert!(
            metrics_from
                .iter()
                .all(|peer| peer.get("namespaceSelector").is_some()
                    && peer.get("podSelector").is_some()),
            "{context}: metrics are for Prometheus pods only"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Certificates

fn decode_bundle(b64: &str) -> String {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("caBundle is base64");
    String::from_utf8(bytes).expect("PEM text")
}

#[test]
fn cert_manager_overlays_inject_the_ca_of_the_serving_certificate() {
    for overlay in overlays()
        .iter()
        .filter(|o| o.certs == CertSource::CertManager)
    {
        let objects = &overlay.objects;
        let context = &overlay.name;
        let (_, volume) = mount_of(objects, flag(objects, "tls-cert").expect("--tls-cert"));
        let secret = str_at(volume, "/secret/secretName");
        let serving = all_of(objects, "Certificate")
            .into_iter()
            .find(|c| c["spec"]["secretName"] == secret)
            .expect("serving Certificate");
        let dns: Vec<&str> = strings(&serving["spec"]["dnsNames"]);
        assert!(
            dns.contains(&"fluxgate.fluxgate-system.svc"),
            "{context}: the API server connects to <service>.<namespace>.svc, not in {dns:?}"
        );
        assert_eq!(
            serving["spec"]["privateKey"]["algorithm"], "ECDSA",
            "{context}: ECDSA keeps TLS handshakes cheap"
        );
        let issuer = the(objects, "Issuer", str_at(serving, "/spec/issuerRef/name"));
        let ca_secret = str_at(issuer, "/spec/ca/secretName");
        let ca = all_of(objects, "Certificate")
            .into_iter()
            .find(|c| c["spec"]["secretName"] == ca_secret)
            .expect("CA Certificate");
        assert_eq!(ca["spec"]["isCA"], true, "{context}: CA certificate");
        let inject_from = format!("{NAMESPACE}/{}", name_of(serving));
        for kind in [
            "ValidatingWebhookConfiguration",
            "MutatingWebhookConfiguration",
        ] {
            for config in all_of(objects, kind) {
                assert_eq!(
                    config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
                    inject_from.as_str(),
                    "{context}: {kind}"
                );
            }
        }
        for webhook in all_webhooks(objects) {
            assert!(
                webhook["clientConfig"].get("caBundle").is_none(),
                "{context}: cainjector owns caBundle"
            );
        }
    }
}

#[test]
fn fluxgate_certs_overlays_take_the_ca_bundle_from_a_post_build_variable() {
    for overlay in overlays()
        .iter()
        .filter(|o| o.certs == CertSource::FluxgateCerts)
    {
        let context = &overlay.name;
        assert!(
            !overlay.raw.replace(CA_BUNDLE_VARIABLE, "").contains('$'),
            "{context}: Flux and envsubst would also substitute other $ expressions"
        );
        let raw_objects = parse_documents(&overlay.raw);
        for webhook in all_webhooks(&raw_objects) {
            assert_eq!(
                webhook["clientConfig"]["caBundle"], CA_BUNDLE_VARIABLE,
                "{context}: webhook {}",
                webhook["name"]
            );
        }
        for webhook in all_webhooks(&overlay.objects) {
            let pem = decode_bundle(
                webhook["clientConfig"]["caBundle"]
                    .as_str()
                    .expect("caBundle"),
            );
            assert!(
                pem.starts_with("-----BEGIN CERTIFICATE-----"),
                "{context}: PEM"
            );
        }
        // Forgetting the substitution must fail loudly: the API server refuses the
        // configuration rather than register a webhook it cannot verify.
        let unsubstituted = the(&raw_objects, "ValidatingWebhookConfiguration", "fluxgate");
        let refused = validate_object(unsubstituted).expect_err("must not validate");
        assert!(refused.contains("caBundle"), "{context}: {refused}");
        for kind in ["Certificate", "Issuer"] {
            assert!(
                all_of(&overlay.objects, kind).is_empty(),
                "{context}: {kind}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Kubernetes schema, without a cluster

/// Checks one object of a known kind and says how RBAC and namespaces see it.
type Validator = fn(&Value) -> Result<KindInfo, String>;

#[derive(Debug)]
struct KindInfo {
    plural: String,
    namespaced: bool,
}

/// Deserializes into the typed k8s-openapi struct (types, required fields, the path of the
/// first error) and serializes back: k8s-openapi ignores unknown fields, so a field that does
/// not survive the round trip is one the API server's strict validation would refuse.
fn strict_typed<K>(obj: &Value) -> Result<KindInfo, String>
where
    K: k8s_openapi::Resource + DeserializeOwned + Serialize + 'static,
{
    round_trip::<K>(obj)?;
    Ok(KindInfo {
        plural: K::URL_PATH_SEGMENT.to_string(),
        namespaced: TypeId::of::<K::Scope>() == TypeId::of::<k8s_openapi::NamespaceResourceScope>(),
    })
}

fn round_trip<T: DeserializeOwned + Serialize>(value: &Value) -> Result<(), String> {
    let typed: T = serde_path_to_error::deserialize(value.clone())
        .map_err(|e| format!("{}: {}", e.path(), e.inner()))?;
    let back = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    let mut problems = Vec::new();
    compare_round_trip("", &without_nulls(value), &back, &mut problems);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

fn compare_round_trip(path: &str, input: &Value, typed: &Value, problems: &mut Vec<String>) {
    match (input, typed) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                let here = format!("{path}.{key}");
                match b.get(key) {
                    Some(other) => compare_round_trip(&here, value, other, problems),
                    None => problems.push(format!("{here}: unknown field (misspelled?)")),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                compare_round_trip(&format!("{path}[{i}]"), x, y, problems);
            }
        }
        (a, b) if a == b => {}
        (a, b) => problems.push(format!("{path}: {a} reads back as {b}")),
    }
}

fn builtin_validator(api_version: &str, kind: &str) -> Option<Validator> {
    use k8s_openapi::api::admissionregistration::v1::{
        MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
    };
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service, ServiceAccount};
    use k8s_openapi::api::networking::v1::NetworkPolicy;
    use k8s_openapi::api::policy::v1::PodDisruptionBudget;
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
    use k8s_openapi::api::scheduling::v1::PriorityClass;
    macro_rules! dispatch {
        ($($t:ty),* $(,)?) => {
            $(
                if <$t as k8s_openapi::Resource>::API_VERSION == api_version
                    && <$t as k8s_openapi::Resource>::KIND == kind
                {
                    return Some(strict_typed::<$t>);
                }
            )*
        };
    }
    dispatch!(
        Namespace,
        ServiceAccount,
        ConfigMap,
        Secret,
        Service,
        Deployment,
        PodDisruptionBudget,
        NetworkPolicy,
        ClusterRole,
        ClusterRoleBinding,
        Role,
        RoleBinding,
        PriorityClass,
        ValidatingWebhookConfiguration,
        MutatingWebhookConfiguration,
    );
    None
}

struct Crd {
    group: String,
    kind: String,
    plural: String,
    namespaced: bool,
    /// Served versions and their schemas.
    versions: BTreeMap<String, Value>,
}

fn crds() -> &'static [Crd] {
    static CRDS: OnceLock<Vec<Crd>> = OnceLock::new();
    CRDS.get_or_init(|| {
        // The excerpts made for these tests, and the Flux CRDs of the corpus.
        let entries = ["tests/fixtures/crds", "tests/fixtures/corpus/crds"]
            .into_iter()
            .flat_map(|dir| std::fs::read_dir(Path::new(ROOT).join(dir)).expect(dir));
        let mut crds = Vec::new();
        for entry in entries {
            let path = entry.expect("entry").path();
            if path.extension().is_none_or(|e| e != "yaml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("CRD");
            for crd in parse_documents(&text) {
                let spec = &crd["spec"];
                let versions = spec["versions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|v| v["served"] == true)
                    .map(|v| {
                        (
                            v["name"].as_str().expect("version").to_string(),
                            v["schema"]["openAPIV3Schema"].clone(),
                        )
                    })
                    .collect();
                crds.push(Crd {
                    group: spec["group"].as_str().expect("group").to_string(),
                    kind: spec["names"]["kind"].as_str().expect("kind").to_string(),
                    plural: spec["names"]["plural"]
                        .as_str()
                        .expect("plural")
                        .to_string(),
                    namespaced: spec["scope"] == "Namespaced",
                    versions,
                });
            }
        }
        crds
    })
}

/// Validates one value against a structural OpenAPI v3 schema the way the API server prunes
/// and validates custom resources: unknown fields, types, enums, patterns, lengths, required
/// fields. (CEL rules are not evaluated.)
fn validate_schema(path: &str, value: &Value, schema: &Value, problems: &mut Vec<String>) {
    if value.is_null() {
        if schema["nullable"] != true {
            problems.push(format!("{path}: null"));
        }
        return;
    }
    if schema["x-kubernetes-int-or-string"] == true {
        if !(value.is_i64() || value.is_u64() || value.is_string()) {
            problems.push(format!(
                "{path}: {value} is neither an integer nor a string"
            ));
        }
        if let (Some(text), Some(pattern)) = (value.as_str(), schema["pattern"].as_str()) {
            check_pattern(path, text, pattern, problems);
        }
        return;
    }
    let preserve_unknown = schema["x-kubernetes-preserve-unknown-fields"] == true;
    match schema["type"].as_str() {
        Some("object") => {
            let Some(map) = value.as_object() else {
                problems.push(format!("{path}: {value} is not an object"));
                return;
            };
            let properties = schema["properties"].as_object();
            for (key, item) in map {
                let here = format!("{path}.{key}");
                if let Some(sub) = properties.and_then(|p| p.get(key)) {
                    validate_schema(&here, item, sub, problems);
                } else if schema["additionalProperties"].is_object() {
                    validate_schema(&here, item, &schema["additionalProperties"], problems);
                } else if !(preserve_unknown || schema["additionalProperties"] == true) {
                    problems.push(format!("{here}: unknown field (misspelled?)"));
                }
            }
            for required in strings(&schema["required"]) {
                if !map.contains_key(required) {
                    problems.push(format!("{path}.{required}: required"));
                }
            }
        }
        Some("array") => match value.as_array() {
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    validate_schema(&format!("{path}[{i}]"), item, &schema["items"], problems);
                }
            }
            None => problems.push(format!("{path}: {value} is not an array")),
        },
        Some("string") => match value.as_str() {
            Some(text) => {
                if let Some(pattern) = schema["pattern"].as_str() {
                    check_pattern(path, text, pattern, problems);
                }
                let length = text.chars().count() as u64;
                if schema["minLength"].as_u64().is_some_and(|min| length < min)
                    || schema["maxLength"].as_u64().is_some_and(|max| length > max)
                {
                    problems.push(format!("{path}: length {length} out of bounds"));
                }
            }
            None => problems.push(format!("{path}: {value} is not a string")),
        },
        Some("integer") if !(value.is_i64() || value.is_u64()) => {
            problems.push(format!("{path}: {value} is not an integer"));
        }
        Some("number") if !value.is_number() => {
            problems.push(format!("{path}: {value} is not a number"));
        }
        Some("boolean") if !value.is_boolean() => {
            problems.push(format!("{path}: {value} is not a boolean"));
        }
        Some("integer" | "number" | "boolean") => {}
        None if preserve_unknown => {}
        other => problems.push(format!("{path}: schema type {other:?} not understood")),
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        problems.push(format!("{path}: {value} is not one of {allowed:?}"));
    }
}

fn check_pattern(path: &str, text: &str, pattern: &str, problems: &mut Vec<String>) {
    match regex::Regex::new(pattern) {
        Ok(re) if re.is_match(text) => {}
        Ok(_) => problems.push(format!("{path}: {text:?} does not match {pattern}")),
        Err(e) => problems.push(format!("{path}: schema pattern {pattern}: {e}")),
    }
}

fn validate_custom(obj: &Value, crd: &Crd, version: &str) -> Result<KindInfo, String> {
    let schema = crd.versions.get(version).ok_or_else(|| {
        format!(
            "{}/{version} is not a served version of {} (served: {:?})",
            crd.group,
            crd.kind,
            crd.versions.keys().collect::<Vec<_>>()
        )
    })?;
    let mut problems = Vec::new();
    // The API server validates metadata as ObjectMeta whatever the CRD says.
    if let Err(e) =
        round_trip::<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>(&obj["metadata"])
    {
        problems.push(format!(".metadata: {e}"));
    }
    let mut rest = obj.clone();
    if let Some(map) = rest.as_object_mut() {
        map.remove("metadata");
    }
    let mut body_schema = schema.clone();
    if let Some(properties) = body_schema["properties"].as_object_mut() {
        properties.remove("metadata");
    }
    validate_schema("", &rest, &body_schema, &mut problems);
    if problems.is_empty() {
        Ok(KindInfo {
            plural: crd.plural.clone(),
            namespaced: crd.namespaced,
        })
    } else {
        Err(problems.join("; "))
    }
}

/// Validates any object fluxgate deploys; an object of a kind with no known schema fails.
fn validate_object(obj: &Value) -> Result<KindInfo, String> {
    let api_version = obj["apiVersion"].as_str().ok_or("no apiVersion")?;
    let kind = kind_of(obj);
    if name_of(obj).is_empty() {
        return Err("no metadata.name".into());
    }
    let info = if let Some(validator) = builtin_validator(api_version, kind) {
        validator(obj)?
    } else {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let crd = crds()
            .iter()
            .find(|c| c.group == group && c.kind == kind)
            .ok_or_else(|| {
                format!(
                    "no schema for {api_version} {kind}: add its k8s-openapi type to \
                     builtin_validator or its CRD to tests/fixtures/crds"
                )
            })?;
        validate_custom(obj, crd, version)?
    };
    match (info.namespaced, namespace_of(obj)) {
        (true, None) => Err(
            "namespaced, but no metadata.namespace: it would land in whatever \
                             namespace the applier defaults to"
                .into(),
        ),
        (false, Some(ns)) => Err(format!("cluster-scoped, but metadata.namespace is {ns}")),
        _ => Ok(info),
    }
}

fn every_deployed_object() -> Vec<(String, &'static Value)> {
    let mut all = Vec::new();
    for overlay in overlays() {
        all.extend(
            overlay
                .objects
                .iter()
                .map(|o| (format!("overlays/{}", overlay.name), o)),
        );
    }
    all.extend(flux_bundle().iter().map(|o| ("flux".to_string(), o)));
    all.extend(
        observability()
            .iter()
            .map(|o| ("observability".to_string(), o)),
    );
    all
}

#[test]
fn every_rendered_object_is_valid_against_the_kubernetes_schema() {
    let mut failures = Vec::new();
    let mut seen = BTreeSet::new();
    for (source, obj) in every_deployed_object() {
        match validate_object(obj) {
            Ok(_) => {
                seen.insert(kind_of(obj).to_string());
            }
            Err(e) => failures.push(format!("{source}: {}: {e}", describe(obj))),
        }
    }
    assert!(
        failures.is_empty(),
        "invalid objects:\n{}",
        failures.join("\n")
    );
    for kind in [
        "Deployment",
        "ValidatingWebhookConfiguration",
        "Certificate",
        "OCIRepository",
        "Kustomization",
        "PrometheusRule",
        "ServiceMonitor",
    ] {
        assert!(seen.contains(kind), "no {kind} was validated");
    }
}

#[test]
fn schema_validation_catches_misspelled_mistyped_and_unknown_values() {
    let objects = &overlays()[0].objects;
    let mutate = |obj: &Value, pointer: &str, key: &str, value: Value| {
        let mut copy = obj.clone();
        copy.pointer_mut(pointer)
            .and_then(Value::as_object_mut)
            .unwrap_or_else(|| panic!("{pointer}"))
            .insert(key.to_string(), value);
        copy
    };
    let refused = |obj: Value, expected: &str| {
        let error = match validate_object(&obj) {
            Ok(_) => panic!("{} with a broken {expected} was accepted", describe(&obj)),
            Err(e) => e,
        };
        assert!(error.contains(expected), "{expected}: {error}");
    };
    let deployment = deployment(objects);
    refused(
        mutate(deployment, "/spec", "replica", 2.into()),
        ".spec.replica",
    );
    refused(
        mutate(
            deployment,
            "/spec/template/spec/containers/0/securityContext",
            "readOnlyRootFileSystem",
            true.into(),
        ),
        "readOnlyRootFileSystem",
    );
    refused(
        mutate(deployment, "/spec", "replicas", "two".into()),
        "spec.replicas",
    );
    refused(
        mutate(
            the(objects, "ValidatingWebhookConfiguration", "fluxgate"),
            "/webhooks/0",
            "timeoutSecond",
            5.into(),
        ),
        "timeoutSecond",
    );
    let oci = the(flux_bundle(), "OCIRepository", "fluxgate");
    refused(mutate(oci, "/spec", "verfy", Value::Null), "verfy");
    refused(
        mutate(oci, "/spec/verify", "provider", "gpg".into()),
        ".spec.verify.provider",
    );
    refused(
        mutate(
            oci,
            "/metadata",
            "lables",
            Value::Object(Default::default()),
        ),
        "lables",
    );
    let certificate = all_of(objects, "Certificate")
        .into_iter()
        .next()
        .or_else(|| {
            all_of(&overlays()[1].objects, "Certificate")
                .into_iter()
                .next()
        })
        .expect("a Certificate");
    refused(
        mutate(certificate, "/spec/privateKey", "algorithm", "DSA".into()),
        ".spec.privateKey.algorithm",
    );
    let monitor = the(observability(), "ServiceMonitor", "fluxgate");
    refused(
        mutate(
            monitor,
            "/spec/endpoints/0",
            "interval",
            "30 seconds".into(),
        ),
        ".spec.endpoints[0].interval",
    );
    let mut unknown = deployment.clone();
    unknown["kind"] = "Deploymnet".into();
    refused(unknown, "no schema");
}

// ---------------------------------------------------------------------------------------
// Flux install

#[test]
fn flux_source_verifies_the_release_pipeline_signature() {
    let oci = the(flux_bundle(), "OCIRepository", "fluxgate");
    let verify = at(oci, "/spec/verify");
    assert_eq!(verify["provider"], "cosign");
    assert!(
        verify.get("secretRef").is_none(),
        "keyless: no key to keep or rotate"
    );
    let identities = verify["matchOIDCIdentity"]
        .as_array()
        .expect("matchOIDCIdentity: keyless signatures from anyone would pass without it");
    assert!(!identities.is_empty());
    let accepted = |issuer: &str, subject: &str| {
        identities.iter().any(|id| {
            let matches = |field: &str, text: &str| {
                regex::Regex::new(id[field].as_str().expect(field))
                    .expect("Go-compatible regex")
                    .is_match(text)
            };
            matches("issuer", issuer) && matches("subject", subject)
        })
    };
    let project = "https://gitlab.com/fluxgate/fluxgate";
    assert!(accepted(
        "https://gitlab.com",
        &format!("{project}//.gitlab-ci.yml@refs/tags/v1.2.3")
    ));
    for (issuer, subject) in [
        // another branch than a release tag
        (
            "https://gitlab.com",
            format!("{project}//.gitlab-ci.yml@refs/heads/main"),
        ),
        // a fork, or a project whose path only starts the same
        (
            "https://gitlab.com",
            "https://gitlab.com/someone/fluxgate//.gitlab-ci.yml@refs/tags/v1.2.3".to_string(),
        ),
        (
            "https://gitlab.com",
            format!("{project}-fork//.gitlab-ci.yml@refs/tags/v1.2.3"),
        ),
        // another CI file of the project
        (
            "https://gitlab.com",
            format!("{project}//other.yml@refs/tags/v1.2.3"),
        ),
        // another issuer claiming the same identity
        (
            "https://gitlab.example.com",
            format!("{project}//.gitlab-ci.yml@refs/tags/v1.2.3"),
        ),
        (
            "https://token.actions.githubusercontent.com",
            format!("{project}//.gitlab-ci.yml@refs/tags/v1.2.3"),
        ),
    ] {
        assert!(!accepted(issuer, &subject), "accepted {issuer} {subject}");
    }
    assert!(
        oci["spec"]["ref"]["semver"].is_string(),
        "the source follows release tags, which the pipeline only sets after signing"
    );
    assert!(str_at(oci, "/spec/url").starts_with("oci://"));
}

#[test]
fn flux_kustomization_applies_an_overlay_as_a_least_privilege_service_account() {
    let objects = flux_bundle();
    let kustomization = the(objects, "Kustomization", "fluxgate");
    let account = str_at(kustomization, "/spec/serviceAccountName");
    let namespace = namespace_of(kustomization).expect("namespace");
    the(objects, "ServiceAccount", account);
    let source = &kustomization["spec"]["sourceRef"];
    assert_eq!(source["kind"], "OCIRepository");
    let oci = the(
        objects,
        "OCIRepository",
        source["name"].as_str().expect("name"),
    );
    assert_eq!(namespace_of(oci), Some(namespace), "same-namespace source");
    let path = str_at(kustomization, "/spec/path").trim_start_matches("./");
    let overlay = overlays()
        .iter()
        .find(|o| format!("overlays/{}", o.name) == path)
        .unwrap_or_else(|| panic!("the Kustomization path {path} is not an overlay"));
    assert_eq!(overlay.mode, RolloutMode::Audit, "the first rollout audits");
    assert_eq!(kustomization["spec"]["prune"], true);
    assert_eq!(kustomization["spec"]["wait"], true);

    // What the installer may do, cluster-wide and in fluxgate's namespace.
    let is_installer = |binding: &Value| {
        binding["subjects"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| {
                s["kind"] == "ServiceAccount" && s["name"] == account && s["namespace"] == namespace
            })
    };
    let mut cluster_rules = Vec::new();
    let mut namespaced_rules: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for binding in all_of(objects, "ClusterRoleBinding")
        .into_iter()
        .chain(all_of(objects, "RoleBinding"))
        .filter(|b| is_installer(b))
    {
        let role_name = str_at(binding, "/roleRef/name");
        assert!(
            !["cluster-admin", "admin", "edit"].contains(&role_name),
            "{} binds the built-in {role_name}",
            describe(binding)
        );
        let role_kind = str_at(binding, "/roleRef/kind");
        let role = match role_kind {
            "ClusterRole" => the(objects, "ClusterRole", role_name),
            _ => objects
                .iter()
                .find(|o| {
                    kind_of(o) == "Role"
                        && name_of(o) == role_name
                        && namespace_of(o) == namespace_of(binding)
                })
                .expect("bound Role"),
        };
        let rules = role["rules"].as_array().cloned().unwrap_or_default();
        match (kind_of(binding), namespace_of(binding)) {
            ("ClusterRoleBinding", _) => cluster_rules.extend(rules),
            (_, Some(ns)) => namespaced_rules
                .entry(ns.to_string())
                .or_default()
                .extend(rules),
            _ => unreachable!(),
        }
    }
    let allows = |rules: &[Value], group: &str, resource: &str, name: &str, verb: &str| {
        rules.iter().any(|r| {
            strings(&r["apiGroups"]).contains(&group)
                && strings(&r["resources"]).contains(&resource)
                && strings(&r["verbs"]).contains(&verb)
                && (r.get("resourceNames").is_none()
                    || strings(&r["resourceNames"]).contains(&name))
        })
    };
    for rule in cluster_rules
        .iter()
        .chain(namespaced_rules.values().flatten())
    {
        for verb in strings(&rule["verbs"]) {
            assert!(
                !["*", "escalate", "bind", "impersonate"].contains(&verb),
                "installer: {verb}"
            );
        }
        assert!(
            !strings(&rule["resources"]).contains(&"*"),
            "installer: {rule}"
        );
        // The installer holds fluxgate's reads of Secrets (to be allowed to grant them),
        // never more: Flux does not write the serving certificate or any other Secret.
        if strings(&rule["resources"]).contains(&"secrets") {
            for verb in strings(&rule["verbs"]) {
                assert!(SECRET_VERBS.contains(&verb), "installer: {verb} on secrets");
            }
        }
    }

    // The installer can apply every object of every overlay (server-side apply is a patch;
    // the first apply of a cluster-scoped object is a create, which RBAC cannot limit by name).
    for overlay in overlays() {
        for obj in &overlay.objects {
            let info = validate_object(obj).expect("valid");
            let group = obj["apiVersion"]
                .as_str()
                .and_then(|v| v.split_once('/'))
                .map(|(g, _)| g)
                .unwrap_or("");
            let name = name_of(obj);
            let ok = match namespace_of(obj) {
                None => {
                    let existing = kind_of(obj) == "Namespace"
                        && objects
                            .iter()
                            .any(|o| kind_of(o) == "Namespace" && name_of(o) == name);
                    allows(&cluster_rules, group, &info.plural, name, "patch")
                        && (existing || allows(&cluster_rules, group, &info.plural, name, "create"))
                }
                Some(ns) => {
                    let rules: Vec<Value> = cluster_rules
                        .iter()
                        .cloned()
                        .chain(namespaced_rules.get(ns).cloned().unwrap_or_default())
                        .collect();
                    ["create", "patch", "get", "delete"]
                        .iter()
                        .all(|verb| allows(&rules, group, &info.plural, name, verb))
                }
            };
            assert!(
                ok,
                "{}: the installer cannot apply {} ({group}/{})",
                overlay.name,
                describe(obj),
                info.plural
            );
        }
        // RBAC refuses to create a role granting rights its creator lacks: the installer
        // must hold everything fluxgate's ClusterRole grants.
        for (group, resource, verb) in grants(the(&overlay.objects, "ClusterRole", "fluxgate")) {
            assert!(
                allows(&cluster_rules, &group, &resource, "", &verb),
                "the installer cannot grant {group}/{resource} {verb} to fluxgate"
            );
        }
        // The same for fluxgate's namespaced Role, rule by rule (names included).
        let leases = the(&overlay.objects, "Role", "fluxgate-leases");
        let in_namespace: Vec<Value> = cluster_rules
            .iter()
            .cloned()
            .chain(namespaced_rules.get(NAMESPACE).cloned().unwrap_or_default())
            .collect();
        for rule in leases["rules"].as_array().into_iter().flatten() {
            let names = strings(&rule["resourceNames"]);
            for group in strings(&rule["apiGroups"]) {
                for resource in strings(&rule["resources"]) {
                    for verb in strings(&rule["verbs"]) {
                        let held = if names.is_empty() {
                            in_namespace.iter().any(|r| {
                                strings(&r["apiGroups"]).contains(&group)
                                    && strings(&r["resources"]).contains(&resource)
                                    && strings(&r["verbs"]).contains(&verb)
                                    && r.get("resourceNames").is_none()
                            })
                        } else {
                            names
                                .iter()
                                .all(|n| allows(&in_namespace, group, resource, n, verb))
                        };
                        assert!(
                            held,
                            "the installer cannot grant {group}/{resource} {verb} {names:?} to fluxgate"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn the_release_pipeline_holds_no_rights_in_the_cluster() {
    // Asking Flux to reconcile means patching Flux objects in flux-system, which lets a job
    // rewrite what Flux applies there: ci-impersonation denies it to GitLab identities, and
    // the release needs none (Flux picks it up within its interval).
    for binding in all_of(flux_bundle(), "RoleBinding")
        .into_iter()
        .chain(all_of(flux_bundle(), "ClusterRoleBinding"))
    {
        for subject in binding["subjects"].as_array().into_iter().flatten() {
            let name = subject["name"].as_str().unwrap_or("");
            assert!(
                !name.starts_with("gitlab:"),
                "{}: {subject}",
                describe(binding)
            );
        }
    }
    let text = std::fs::read_to_string(deploy_dir("flux/gitlab-ci.yml")).expect("gitlab-ci.yml");
    assert!(
        !text.contains("kubectl") && !text.contains("flux reconcile"),
        "{text}"
    );
}

#[test]
fn release_pipeline_signs_before_it_tags() {
    let text = std::fs::read_to_string(deploy_dir("flux/gitlab-ci.yml")).expect("gitlab-ci.yml");
    let pipeline: Value = serde_yaml_ng::from_str(&text).expect("valid YAML");
    let script = |job: &str| -> String { strings(&pipeline[job]["script"]).join("\n") };
    let needs = |job: &str| -> Vec<&str> { strings(&pipeline[job]["needs"]) };
    let signs = |job: &str| {
        let extends = strings(&pipeline[job]["extends"]);
        assert!(
            extends.contains(&".sigstore"),
            "{job} signs without the sigstore ID token"
        );
        assert!(script(job).contains("cosign sign"), "{job}: cosign sign");
    };
    assert_eq!(
        pipeline[".sigstore"]["id_tokens"]["SIGSTORE_ID_TOKEN"]["aud"],
        "sigstore"
    );
    signs("image");
    signs("sign-manifests");
    assert!(script("manifests").contains("flux push artifact"));
    assert!(script("manifests").contains("--path=./deploy"));
    assert!(
        needs("manifests").contains(&"image"),
        "the artifact pins the signed image"
    );
    assert!(needs("sign-manifests").contains(&"manifests"));
    assert!(
        needs("tag-manifests").contains(&"sign-manifests"),
        "tag only after signing"
    );
    assert!(script("tag-manifests").contains("flux tag artifact"));

    // The pipeline rewrites these lines of the base kustomization to pin the image digest.
    let base = std::fs::read_to_string(deploy_dir("base/kustomization.yaml")).expect("base");
    for prefix in ["    newName: ", "    newTag: "] {
        assert_eq!(
            base.lines().filter(|l| l.starts_with(prefix)).count(),
            1,
            "the pipeline's sed expects one line starting with {prefix:?}"
        );
    }
}

#[test]
fn the_default_image_is_the_crate_version() {
    for overlay in overlays() {
        let image = container(&overlay.objects)["image"]
            .as_str()
            .expect("image");
        assert!(
            image.ends_with(&format!(":{}", env!("CARGO_PKG_VERSION"))),
            "{}: {image}",
            overlay.name
        );
    }
}

// ---------------------------------------------------------------------------------------
// Observability

/// The metrics fluxgate exports (src/metrics.rs).
const METRICS: &[&str] = &[
    "fluxgate_admission_requests_total",
    "fluxgate_admission_duration_seconds",
    "fluxgate_policy_violations_total",
    "fluxgate_exemptions_total",
    "fluxgate_rejected_requests_total",
    "fluxgate_config_reloads_total",
    "fluxgate_tls_reloads_total",
    "fluxgate_tls_cert_expiry_timestamp_seconds",
    "fluxgate_build_info",
    "fluxgate_audit_violations",
    "fluxgate_secret_age_seconds",
    "fluxgate_secret_rotation_overdue",
    "fluxgate_agent_reservations_total",
];

fn metric_names(expr: &str) -> BTreeSet<String> {
    let re = regex::Regex::new(r"\bfluxgate_[a-z_]+").expect("regex");
    re.find_iter(expr).map(|m| m.as_str().to_string()).collect()
}

fn is_known_metric(name: &str) -> bool {
    METRICS.contains(&name)
        || ["_bucket", "_sum", "_count"].iter().any(|suffix| {
            name.strip_suffix(suffix)
                .is_some_and(|base| base == "fluxgate_admission_duration_seconds")
        })
}

fn dashboard() -> Value {
    let text =
        std::fs::read_to_string(deploy_dir("observability/dashboard.json")).expect("dashboard");
    serde_json::from_str(&text).expect("dashboard JSON")
}

fn dashboard_exprs(dashboard: &Value) -> Vec<(String, String)> {
    dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .filter(|p| p["type"] != "row")
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap_or("?").to_string();
            p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |t| (title.clone(), t["expr"].as_str().unwrap_or("").to_string()))
        })
        .collect()
}

fn alerts() -> Vec<Value> {
    let rule = the(observability(), "PrometheusRule", "fluxgate");
    rule["spec"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .collect()
}

#[test]
fn dashboard_and_alerts_use_only_metrics_fluxgate_exports() {
    let mut exprs = dashboard_exprs(&dashboard());
    exprs.extend(alerts().iter().map(|a| {
        (
            a["alert"].as_str().unwrap_or("?").to_string(),
            a["expr"].as_str().unwrap_or("").to_string(),
        )
    }));
    for (owner, expr) in exprs {
        assert!(!expr.trim().is_empty(), "{owner}: empty expression");
        for name in metric_names(&expr) {
            assert!(
                is_known_metric(&name),
                "{owner}: unknown metric {name} in {expr}"
            );
        }
        let opens = expr.matches('(').count();
        assert_eq!(
            opens,
            expr.matches(')').count(),
            "{owner}: parentheses in {expr}"
        );
        assert_eq!(
            expr.matches('{').count(),
            expr.matches('}').count(),
            "{owner}: braces in {expr}"
        );
    }
}

#[test]
fn dashboard_shows_requests_denials_latency_certificates_reloads_and_audit() {
    let dashboard = dashboard();
    let exprs = dashboard_exprs(&dashboard);
    let panel_using = |needle: &str| exprs.iter().any(|(_, e)| e.contains(needle));
    for needle in [
        "fluxgate_admission_requests_total",
        "fluxgate_policy_violations_total{namespace=~\"$namespace\",mode=\"enforce\"}",
        "histogram_quantile(0.5,",
        "histogram_quantile(0.9,",
        "histogram_quantile(0.99,",
        "fluxgate_admission_duration_seconds_bucket",
        "fluxgate_tls_cert_expiry_timestamp_seconds",
        "fluxgate_config_reloads_total",
        "fluxgate_audit_violations",
    ] {
        assert!(panel_using(needle), "no dashboard panel uses {needle}");
    }
    let panels = dashboard["panels"].as_array().expect("panels");
    let ids: BTreeSet<u64> = panels.iter().filter_map(|p| p["id"].as_u64()).collect();
    assert_eq!(ids.len(), panels.len(), "panel ids are unique");
    for panel in panels {
        assert!(
            panel["gridPos"]["w"].as_u64().is_some(),
            "{}: gridPos",
            panel["title"]
        );
    }
    assert_eq!(dashboard["uid"], "fluxgate");
    let dashboard_map = the(observability(), "ConfigMap", "fluxgate-dashboard");
    assert_eq!(
        dashboard_map["metadata"]["labels"]["grafana_dashboard"],
        "1"
    );
}

#[test]
fn alerts_cover_errors_latency_certificates_reloads_and_audit_violations() {
    let alerts = alerts();
    let alert = |name: &str| -> &Value {
        alerts
            .iter()
            .find(|a| a["alert"] == name)
            .unwrap_or_else(|| panic!("no alert {name}"))
    };
    let expr = |name: &str| alert(name)["expr"].as_str().unwrap_or("").to_string();
    assert!(expr("FluxgateWebhookErrors").contains("apiserver_admission_webhook_rejection_count"));
    assert!(expr("FluxgateWebhookErrors").contains("apiserver_admission_webhook_fail_open_count"));

    // "Near the timeout": the threshold sits below every webhook's timeoutSeconds.
    let latency = expr("FluxgateLatencyNearTimeout");
    assert!(latency.contains("histogram_quantile(0.99"), "{latency}");
    let threshold: f64 = latency
        .rsplit(">=")
        .next()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or_else(|| panic!("threshold in {latency}"));
    for overlay in overlays() {
        for webhook in all_webhooks(&overlay.objects) {
            let timeout = webhook["timeoutSeconds"].as_f64().expect("timeoutSeconds");
            assert!(
                threshold < timeout && threshold >= timeout / 4.0,
                "latency alert at {threshold} s against a {timeout} s timeout"
            );
        }
    }
    assert!(expr("FluxgateCertificateExpiringSoon").contains("14 * 24 * 3600"));
    assert!(expr("FluxgateConfigReloadFailing").contains("result=\"error\""));
    assert!(expr("FluxgateAuditViolations").contains("fluxgate_audit_violations"));
    assert!(expr("FluxgateSecretRotationOverdue").contains("fluxgate_secret_rotation_overdue"));
    for a in &alerts {
        assert!(
            a["labels"]["severity"].is_string(),
            "{}: severity",
            a["alert"]
        );
        assert!(
            a["annotations"]["summary"].is_string(),
            "{}: summary",
            a["alert"]
        );
    }
    let monitor = the(observability(), "ServiceMonitor", "fluxgate");
    let service = the(&overlays()[0].objects, "Service", "fluxgate");
    assert!(
        service["spec"]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p["name"] == monitor["spec"]["endpoints"][0]["port"]),
        "the ServiceMonitor scrapes a port the Service has"
    );
}

// ---------------------------------------------------------------------------------------
// Against the binary

fn fluxgate_binary() -> &'static str {
    env!("CARGO_BIN_EXE_fluxgate")
}

#[test]
fn deployment_flags_are_flags_fluxgate_serve_accepts() {
    let output = Command::new(fluxgate_binary())
        .args(["serve", "--help"])
        .output()
        .expect("run fluxgate serve --help");
    let help = String::from_utf8_lossy(&output.stdout);
    let mut used = BTreeSet::new();
    for overlay in overlays() {
        let args = args(&overlay.objects);
        assert_eq!(args.first(), Some(&"serve"), "{}: subcommand", overlay.name);
        for arg in &args[1..] {
            let name = arg.split('=').next().unwrap_or(arg);
            assert!(name.starts_with("--"), "{}: {arg}", overlay.name);
            used.insert(name.to_string());
        }
    }
    let listed = |flag: &str| {
        regex::Regex::new(&format!(r"(^|\s){}([\s=,<\[]|$)", regex::escape(flag)))
            .expect("regex")
            .is_match(&help)
    };
    let unknown: Vec<&String> = used.iter().filter(|flag| !listed(flag)).collect();
    assert!(
        unknown.is_empty(),
        "the Deployment passes flags `fluxgate serve --help` does not list: {unknown:?}\n{help}"
    );
}

#[test]
fn make_certs_script_makes_a_bundle_the_overlays_accept() {
    let out = std::env::temp_dir().join(format!("fluxgate-make-certs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let status = Command::new("bash")
        .arg(deploy_dir("components/fluxgate-certs/make-certs.sh"))
        .args(["--no-apply", "--out"])
        .arg(&out)
        .env("FLUXGATE", fluxgate_binary())
        .output()
        .expect("run make-certs.sh");
    assert!(
        status.status.success(),
        "make-certs.sh --no-apply failed: {}{}",
        String::from_utf8_lossy(&status.stdout),
        String::from_utf8_lossy(&status.stderr)
    );
    let bundle = std::fs::read_to_string(out.join("ca-bundle.b64")).expect("ca-bundle.b64");
    let ca = std::fs::read_to_string(out.join("ca.crt")).expect("ca.crt");
    assert_eq!(
        decode_bundle(bundle.trim()),
        ca,
        "the bundle is the CA certificate"
    );
    let overlay = overlays()
        .iter()
        .find(|o| o.certs == CertSource::FluxgateCerts && o.mode == RolloutMode::Enforce)
        .expect("enforce-fluxgate-certs");
    for obj in parse_documents(&overlay.raw.replace(CA_BUNDLE_VARIABLE, bundle.trim())) {
        if let Err(e) = validate_object(&obj) {
            panic!("{}: {e}", describe(&obj));
        }
    }
    for key in ["tls.crt", "tls.key"] {
        assert!(out.join(key).is_file(), "{key}");
    }
    let _ = std::fs::remove_dir_all(&out);
}

/// The opt-in webhook for ownerless ReplicaSets and Pods sends exactly the kinds the policies
/// mark opt-in, and fails open: a webhook on every Pod must never lock a cluster.
#[test]
fn the_agent_pods_component_sends_exactly_the_opt_in_kinds_and_fails_open() {
    // kustomize takes relative paths only: the overlay lives two levels below the crate.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join(format!("agent-pods-overlay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp overlay");
    std::fs::write(
        dir.join("kustomization.yaml"),
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../../deploy/base\ncomponents:\n  - ../../deploy/components/enforce\n  - ../../deploy/components/cert-manager\n  - ../../deploy/components/agent-pods\n",
    )
    .expect("write overlay");
    let rendered = kustomize(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    let objects = parse_documents(&rendered.unwrap_or_else(|e| panic!("{e}")));
    let webhook = objects
        .iter()
        .find(|o| {
            o["kind"] == "ValidatingWebhookConfiguration"
                && o["metadata"]["name"] == "fluxgate-agent-pods"
        })
        .expect("the component adds the fluxgate-agent-pods webhook");
    let hooks = webhook["webhooks"].as_array().expect("webhooks");
    assert_eq!(hooks.len(), 1);
    assert_eq!(hooks[0]["failurePolicy"], "Ignore");
    assert_eq!(hooks[0]["sideEffects"], "NoneOnDryRun");
    assert_eq!(hooks[0]["clientConfig"]["service"]["path"], "/validate");
    assert!(
        webhook["metadata"]["annotations"]["cert-manager.io/inject-ca-from"].is_string(),
        "cert-manager injects the CA here too"
    );
    let mut sent = BTreeSet::new();
    for rule in hooks[0]["rules"].as_array().expect("rules") {
        for group in rule["apiGroups"].as_array().expect("groups") {
            for resource in rule["resources"].as_array().expect("resources") {
                for op in rule["operations"].as_array().expect("operations") {
                    sent.insert((
                        group.as_str().unwrap_or("").to_string(),
                        resource.as_str().unwrap_or("").to_string(),
                        op.as_str().unwrap_or("").to_string(),
                    ));
                }
            }
        }
    }
    let opt_in: BTreeSet<GroupResourceOp> = Engine::new(Config::default(), None)
        .kinds()
        .into_iter()
        .filter(|(_, rule)| rule.opt_in)
        .flat_map(|(_, rule)| {
            rule.operations.iter().map(|op| {
                (
                    rule.group.to_string(),
                    rule.resource.to_string(),
                    op.as_str().to_string(),
                )
            })
        })
        .collect();
    assert!(!opt_in.is_empty());
    let mut opt_in = opt_in;
    let engine = Engine::new(Config::default(), None);
    for (_, rule) in engine.subresources().into_iter().filter(|(_, r)| r.opt_in) {
        for op in rule.operations {
            opt_in.insert((
                rule.group.to_string(),
                format!("{}/{}", rule.resource, rule.subresource),
                op.as_str().to_string(),
            ));
        }
    }
    assert_eq!(sent, opt_in);
}

/// fluxgate's own install obeys its own policies: the raw tree and every rendered overlay
/// pass `fluxgate check` as a user would run it.
#[test]
fn fluxgate_check_finds_nothing_wrong_in_its_own_install() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let fluxgate = env!("CARGO_BIN_EXE_fluxgate");
    let out = Command::new(fluxgate)
        .arg("check")
        .arg(deploy_dir(""))
        .output()
        .expect("fluxgate check runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "fluxgate check deploy/:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let overlays = std::fs::read_dir(deploy_dir("overlays")).expect("overlays");
    for overlay in overlays.filter_map(|e| e.ok()) {
        let rendered = render(&overlay.path()).replace(CA_BUNDLE_VARIABLE, test_ca_bundle());
        let mut child = Command::new(fluxgate)
            .args(["check", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("fluxgate check runs");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(rendered.as_bytes())
            .expect("write");
        let out = child.wait_with_output().expect("exits");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}:\n{}\n{}",
            overlay.path().display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
