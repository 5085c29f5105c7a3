//! Policy `signed-oci-sources`: Flux OCI sources (OCIRepository, and charts from OCI
//! HelmRepositories) must be signature-verified by Flux, by a signer that is pinned down.

mod common;

#[path = "support/admission_fixtures.rs"]
mod admission_fixtures;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use fluxgate::admission::{self, Operation, OwnedObject, Request};
use fluxgate::cluster::{MemoryView, ObjectKey};
use fluxgate::config::Config;
use fluxgate::engine::verdict::Verdict;
use fluxgate::engine::{Endpoint, Engine};
use fluxgate::finding::PolicyId;
use fluxgate::policy::signed_oci_sources::SignedOciSources;
use serde::Deserialize;
use serde_json::{Value, json};

use admission_fixtures::{Expected, OCI_REPOSITORY_FIXTURES, read_fixture};
use common::{assert_decision, default_engine, engine};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/corpus");
const POLICY: PolicyId = PolicyId::SignedOciSources;

// ---------------------------------------------------------------------------------------
// Helpers

fn object(yaml: &str) -> Value {
    serde_yaml_ng::from_str(yaml).expect("valid YAML")
}

/// Reviews `object` as a CREATE, the way `fluxgate check` does.
fn review(engine: &Engine, endpoint: Endpoint, object: &Value, view: &MemoryView) -> Verdict {
    let owned = OwnedObject::from_value(object).expect("a Kubernetes object");
    let request = owned.as_create("uid-test");
    engine.review(endpoint, &request, view).0
}

fn validate_with(engine: &Engine, object: &Value, view: &MemoryView) -> Verdict {
    review(engine, Endpoint::Validate, object, view)
}

fn validate(object: &Value) -> Verdict {
    validate_with(&default_engine(), object, &MemoryView::new())
}

#[track_caller]
fn assert_denied(verdict: &Verdict, phrases: &[&str]) -> String {
    assert!(!verdict.allowed, "expected a denial, got {verdict:#?}");
    let message = verdict.denial_message();
    for phrase in phrases {
        assert!(message.contains(phrase), "{phrase:?} not in:\n{message}");
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

#[track_caller]
fn assert_clean(verdict: &Verdict) {
    assert_allowed(verdict);
    assert!(verdict.evaluated.contains(&POLICY), "{verdict:#?}");
    assert!(verdict.outcomes.is_empty(), "{:#?}", verdict.outcomes);
}

fn oci_repository(verify: &str) -> Value {
    object(&format!(
        "apiVersion: source.toolkit.fluxcd.io/v1
kind: OCIRepository
metadata: {{name: app, namespace: flux-system}}
spec:
  interval: 5m
  url: oci://registry.gitlab.com/acme/app/manifests
  ref: {{tag: 6.5.0}}
{verify}"
    ))
}

/// An OCIRepository verified keyless with one identity.
fn keyless(issuer: &str, subject: &str) -> Value {
    let mut repo = oci_repository("");
    repo["spec"]["verify"] = json!({
        "provider": "cosign",
        "matchOIDCIdentity": [{"issuer": issuer, "subject": subject}],
    });
    repo
}

const GITLAB_ISSUER: &str = r"^https://gitlab\.com$";
const APP_SUBJECT: &str = r"^https://gitlab\.com/acme/app//\.gitlab-ci\.yml@refs/heads/main$";

fn helm_repository(namespace: &str, name: &str, kind: &str, url: &str) -> Value {
    json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "HelmRepository",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"type": kind, "url": url, "interval": "10m"},
    })
}

fn view_with(objects: &[Value]) -> MemoryView {
    let view = MemoryView::new();
    for object in objects {
        view.apply(object).expect("applies");
    }
    view
}

fn oci_charts_view() -> MemoryView {
    view_with(&[
        helm_repository(
            "flux-system",
            "charts",
            "oci",
            "oci://registry.gitlab.com/acme/charts",
        ),
        helm_repository(
            "flux-system",
            "bitnami",
            "default",
            "https://charts.bitnami.com/bitnami",
        ),
    ])
}

fn helm_chart(verify: &str) -> Value {
    object(&format!(
        "apiVersion: source.toolkit.fluxcd.io/v1
kind: HelmChart
metadata: {{name: podinfo, namespace: flux-system}}
spec:
  chart: podinfo
  sourceRef: {{kind: HelmRepository, name: charts}}
  interval: 5m
{verify}"
    ))
}

fn helm_release(source: &str, verify: &str) -> Value {
    object(&format!(
        "apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata: {{name: podinfo, namespace: apps}}
spec:
  interval: 10m
  serviceAccountName: podinfo
  chart:
    spec:
      chart: podinfo
      sourceRef: {source}
{verify}"
    ))
}

/// An AdmissionReview body for an UPDATE (or a subresource UPDATE) of `new` over `old`.
fn update_body(new: &Value, old: &Value, sub_resource: Option<&str>) -> String {
    let (group, version) = new["apiVersion"]
        .as_str()
        .and_then(|v| v.rsplit_once('/'))
        .expect("apiVersion");
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "uid-update",
            "kind": {"group": group, "version": version, "kind": new["kind"]},
            "resource": {"group": group, "version": version, "resource": "x"},
            "subResource": sub_resource,
            "name": new["metadata"]["name"], "namespace": new["metadata"]["namespace"],
            "operation": "UPDATE",
            "userInfo": {"username": "system:serviceaccount:flux-system:kustomize-controller"},
            "object": new, "oldObject": old, "dryRun": false,
        }
    })
    .to_string()
}

fn review_body(engine: &Engine, endpoint: Endpoint, body: &str, view: &MemoryView) -> Verdict {
    let request = admission::decode(body.as_bytes()).expect("a valid review");
    engine.review(endpoint, &request, view).0
}

/// The `verify` block a denial suggests, parsed from its YAML snippet.
fn suggested_spec(message: &str) -> Value {
    let start = message.find("\n  spec:").expect("a YAML snippet") + 1;
    let snippet: String = message[start..]
        .lines()
        .take_while(|l| l.starts_with("  "))
        .map(|l| format!("{}\n", &l[2..]))
        .collect();
    let parsed: Value = serde_yaml_ng::from_str(&snippet).expect("the snippet is YAML");
    parsed["spec"].clone()
}

// ---------------------------------------------------------------------------------------
// Verification is required

#[test]
fn unsigned_oci_repository_is_denied() {
    let message = assert_denied(
        &validate(&oci_repository("")),
        &[
            "OCIRepository flux-system/app",
            "oci://registry.gitlab.com/acme/app/manifests",
            "spec.verify is missing",
        ],
    );
    assert!(
        message.starts_with("[signed-oci-sources] OCIRepository flux-system/app"),
        "{message}"
    );
}

#[test]
fn the_denial_suggests_gitlab_keyless_verification_without_guessing_the_project_path() {
    let message = assert_denied(
        &validate(&oci_repository("")),
        &[
            "replace <group>/<project> with the full path",
            "does not say where the project path ends",
            "`acme/app`, `acme/app/manifests`",
        ],
    );
    let spec = suggested_spec(&message);
    assert_eq!(
        spec["verify"],
        json!({
            "provider": "cosign",
            "matchOIDCIdentity": [{
                "issuer": GITLAB_ISSUER,
                "subject": r"^https://gitlab\.com/<group>/<project>//\.gitlab-ci\.yml@refs/heads/main$",
            }],
        })
    );
}

/// GitLab's own example registry path: the project is `gitlab-org/configure/examples/flux`,
/// which nothing in the path says. A subject naming `gitlab-org/configure` (a group) would
/// break the deployment of whoever copied it.
#[test]
fn a_registry_path_with_subgroups_names_every_project_path_it_may_stand_for() {
    let mut repo = oci_repository("");
    repo["spec"]["url"] =
        json!("oci://registry.gitlab.com/gitlab-org/configure/examples/flux/web-app-manifests-oci");
    let message = assert_denied(
        &validate(&repo),
        &[
            "`gitlab-org/configure`, `gitlab-org/configure/examples`, `gitlab-org/configure/examples/flux`, `gitlab-org/configure/examples/flux/web-app-manifests-oci`",
        ],
    );
    let subject = &suggested_spec(&message)["verify"]["matchOIDCIdentity"][0]["subject"];
    assert_eq!(
        subject,
        r"^https://gitlab\.com/<group>/<project>//\.gitlab-ci\.yml@refs/heads/main$"
    );
}

#[test]
fn the_suggested_verify_block_passes_validation() {
    for url in [
        "oci://registry.gitlab.com/acme/app/manifests",
        "oci://ghcr.io/stefanprodan/manifests/podinfo",
        "oci://registry.gitlab.example.com:5050/platform/deploy",
    ] {
        let mut repo = oci_repository("");
        repo["spec"]["url"] = json!(url);
        let message = assert_denied(&validate(&repo), &[]);
        repo["spec"]["verify"] = suggested_spec(&message)["verify"].clone();
        assert_clean(&validate(&repo));
    }
}

#[test]
fn without_a_gitlab_registry_the_suggestion_says_what_to_fill_in() {
    let mut repo = oci_repository("");
    repo["spec"]["url"] = json!("oci://ghcr.io/stefanprodan/manifests/podinfo");
    let message = assert_denied(&validate(&repo), &["replace <group>/<project>"]);
    let subject = &suggested_spec(&message)["verify"]["matchOIDCIdentity"][0]["subject"];
    assert_eq!(
        subject,
        r"^https://gitlab\.com/<group>/<project>//\.gitlab-ci\.yml@refs/heads/main$"
    );
}

#[test]
fn a_self_managed_gitlab_registry_gets_a_trusted_root_in_the_suggestion() {
    let mut repo = oci_repository("");
    repo["spec"]["url"] = json!("oci://registry.gitlab.example.com/platform/deploy");
    let message = assert_denied(&validate(&repo), &["its own Sigstore"]);
    let verify = &suggested_spec(&message)["verify"];
    assert_eq!(
        verify["matchOIDCIdentity"][0]["issuer"],
        r"^https://gitlab\.example\.com$"
    );
    assert_eq!(
        verify["trustedRootSecretRef"]["name"],
        "sigstore-trusted-root"
    );
}

#[test]
fn verify_null_is_the_same_as_no_verify() {
    assert_denied(
        &validate(&oci_repository("  verify: null")),
        &["spec.verify is missing"],
    );
}

#[test]
fn an_empty_verify_is_keyless_cosign_without_identity_and_is_denied() {
    assert_denied(
        &validate(&oci_repository("  verify: {}")),
        &["cosign keyless verification without matchOIDCIdentity"],
    );
}

#[test]
fn keyless_cosign_without_identity_is_denied() {
    assert_denied(
        &validate(&oci_repository("  verify: {provider: cosign}")),
        &[
            "OCIRepository flux-system/app",
            "without matchOIDCIdentity",
            "anyone",
        ],
    );
}

#[test]
fn cosign_with_a_public_key_passes() {
    assert_clean(&validate(&oci_repository(
        "  verify: {provider: cosign, secretRef: {name: cosign-pub}}",
    )));
}

#[test]
fn identities_next_to_a_public_key_are_reported_as_ignored() {
    let verdict = validate(&keyless(GITLAB_ISSUER, APP_SUBJECT));
    assert_clean(&verdict);
    let mut repo = keyless(".*", ".*");
    repo["spec"]["verify"]["secretRef"] = json!({"name": "cosign-pub"});
    let verdict = validate(&repo);
    assert_allowed(&verdict);
    assert!(
        verdict.warnings.iter().any(|w| w.contains("is ignored")),
        "{verdict:#?}"
    );
}

#[test]
fn notation_without_secret_ref_is_denied() {
    assert_denied(
        &validate(&oci_repository("  verify: {provider: notation}")),
        &["notation without secretRef", "trust policy"],
    );
}

#[test]
fn notation_with_secret_ref_passes() {
    assert_clean(&validate(&oci_repository(
        "  verify: {provider: notation, secretRef: {name: notation-config}}",
    )));
}

#[test]
fn an_unknown_provider_is_denied() {
    assert_denied(
        &validate(&oci_repository(
            "  verify: {provider: sigstore-magic, secretRef: {name: k}}",
        )),
        &[
            "spec.verify.provider is `sigstore-magic`",
            "cosign or notation",
        ],
    );
}

#[test]
fn a_malformed_verify_is_denied_with_the_path_of_the_field() {
    assert_denied(
        &validate(&oci_repository(
            "  verify: {provider: cosign, matchOIDCIdentity: [{issuer: 1}]}",
        )),
        &["is malformed", "spec.verify.matchOIDCIdentity[0].issuer"],
    );
    let mut no_spec = oci_repository("");
    no_spec.as_object_mut().expect("object").remove("spec");
    assert_denied(&validate(&no_spec), &["is malformed", "spec"]);
}

#[test]
fn the_older_v1beta2_api_is_judged_the_same() {
    let mut repo = oci_repository("");
    repo["apiVersion"] = json!("source.toolkit.fluxcd.io/v1beta2");
    assert_denied(
        &validate(&repo),
        &["OCIRepository flux-system/app", "spec.verify is missing"],
    );
    repo["spec"]["verify"] = json!({"provider": "cosign", "secretRef": {"name": "cosign-pub"}});
    assert_clean(&validate(&repo));
}

// ---------------------------------------------------------------------------------------
// Keyless identities must pin the signer

#[test]
fn a_pinned_gitlab_identity_passes() {
    assert_clean(&validate(&keyless(GITLAB_ISSUER, APP_SUBJECT)));
}

#[test]
fn pinned_identities_in_their_usual_spellings_pass() {
    for (issuer, subject) in [
        // The Flux documentation's example, with unescaped dots.
        (
            "^https://token.actions.githubusercontent.com$",
            "^https://github.com/stefanprodan/podinfo.*$",
        ),
        // Any tag of one workflow.
        (
            r"^https://token\.actions\.githubusercontent\.com$",
            r"^https://github\.com/fluxcd-testing/cosign-testing/\.github/workflows/release\.yml@refs/tags/.*",
        ),
        // GitLab's documented keyless setup ("Use Sigstore for keyless signing"): one project's
        // `.gitlab-ci.yml` on main, written as a literal with its dots unescaped.
        (
            "^https://gitlab.com$",
            "^https://gitlab.com/acme/app//.gitlab-ci.yml@refs/heads/main$",
        ),
        // A project in nested subgroups, any of its tags.
        (
            GITLAB_ISSUER,
            r"^https://gitlab\.com/acme/platform/deploy/app//\.gitlab-ci\.yml@refs/tags/.*$",
        ),
        // A protected branch or any release tag.
        (
            GITLAB_ISSUER,
            r"^https://gitlab\.com/acme/app//\.gitlab-ci\.yml@refs/(heads/main|tags/v.*)$",
        ),
        // A person, by email.
        (
            "^https://accounts\\.google\\.com$",
            r"^release-bot@acme\.com$",
        ),
        // Go's \Q...\E quoting.
        (
            r"^\Qhttps://gitlab.com\E$",
            r"^\Qhttps://gitlab.com/acme/app//.gitlab-ci.yml@refs/heads/main\E$",
        ),
    ] {
        let verdict = validate(&keyless(issuer, subject));
        assert!(
            verdict.allowed && verdict.outcomes.is_empty(),
            "{issuer} / {subject}: {}",
            verdict.denial_message()
        );
    }
}

/// Every spelling of "anyone" seen in the wild, as issuer and as subject: each must be denied,
/// with the reason.
#[test]
fn every_weak_identity_form_is_denied() {
    // (pattern, why as an issuer, why as a subject)
    let anything = [
        ("", "empty", "empty"),
        (".*", "unrelated", "unrelated"),
        ("^.*$", "unrelated", "unrelated"),
        (".+", "unrelated", "unrelated"),
        ("(.*)", "unrelated", "unrelated"),
        (".*?", "unrelated", "unrelated"),
        (r"[\s\S]*", "unrelated", "unrelated"),
        ("^https://.*", "unrelated", "unrelated"),
        // Every GitLab CI subject contains "gitlab" (.gitlab-ci.yml).
        (".*gitlab.*", "not anchored with ^", "unrelated"),
    ];
    for (pattern, as_issuer, as_subject) in anything {
        for (field, reason) in [("issuer", as_issuer), ("subject", as_subject)] {
            let repo = if field == "issuer" {
                keyless(pattern, APP_SUBJECT)
            } else {
                keyless(GITLAB_ISSUER, pattern)
            };
            let at = format!("spec.verify.matchOIDCIdentity[0].{field} `{pattern}` is too broad");
            assert_denied(&validate(&repo), &[&at, reason]);
        }
    }
    let weak_issuers = [
        ("gitlab", "not anchored with ^"),
        (r"https://gitlab\.com", "not anchored with ^"),
        (r"^https://gitlab\.com", "not anchored with $"),
        (
            r"^https://token\.actions\.githubusercontent\.com",
            "not anchored with $",
        ),
        (r"^https://[^/]+$", "unrelated"),
    ];
    for (pattern, reason) in weak_issuers {
        assert_denied(
            &validate(&keyless(pattern, APP_SUBJECT)),
            &["too broad", reason],
        );
    }
    let weak_subjects = [
        ("stefanprodan", "not anchored with ^"),
        (
            r"acme/app//\.gitlab-ci\.yml@refs/heads/main$",
            "not anchored with ^",
        ),
        (r"^https://gitlab\.com/.*$", "projects of any group"),
        (
            r"^https://gitlab\.com/[^/]+/app//\.gitlab-ci\.yml@refs/heads/main$",
            "does not pin the full project path",
        ),
        (
            r"^https://gitlab\.com/acme",
            "does not pin the full project path",
        ),
        (
            r"^https://gitlab\.com/acme/.*$",
            "does not pin the full project path",
        ),
        (
            r"^https://gitlab\.com/acme/app//\.gitlab-ci\.yml@refs/heads/.*$",
            "does not pin the branch",
        ),
        (
            r"^https://[^/]+/acme/app//\.gitlab-ci\.yml@refs/heads/main$",
            "does not pin the host",
        ),
        (r"^release-bot@.*$", "email domain"),
    ];
    for (pattern, reason) in weak_subjects {
        assert_denied(
            &validate(&keyless(GITLAB_ISSUER, pattern)),
            &["too broad", reason],
        );
    }
}

#[test]
fn an_empty_issuer_is_no_constraint() {
    assert_denied(
        &validate(&keyless("", APP_SUBJECT)),
        &[
            "issuer `` is too broad",
            "cosign treats an empty pattern as no constraint",
        ],
    );
}

#[test]
fn an_unanchored_substring_is_too_broad_and_the_message_shows_an_identity_it_accepts() {
    assert_denied(
        &validate(&keyless(".*gitlab.*", APP_SUBJECT)),
        &[
            "not anchored with ^",
            "anywhere in the issuer",
            "https://attacker.invalid/",
        ],
    );
}

#[test]
fn one_broad_identity_among_pinned_ones_is_enough_to_deny() {
    let mut repo = keyless(GITLAB_ISSUER, APP_SUBJECT);
    repo["spec"]["verify"]["matchOIDCIdentity"]
        .as_array_mut()
        .expect("list")
        .push(json!({"issuer": GITLAB_ISSUER, "subject": ".*"}));
    assert_denied(
        &validate(&repo),
        &["matchOIDCIdentity[1].subject `.*` is too broad"],
    );
}

#[test]
fn a_regex_that_does_not_compile_is_denied() {
    assert_denied(
        &validate(&keyless(GITLAB_ISSUER, r"^https://gitlab\.com/(acme")),
        &[
            "subject",
            "is not a valid Go regular expression",
            "unclosed group",
        ],
    );
}

#[test]
fn a_self_managed_issuer_needs_a_trusted_root() {
    let issuer = r"^https://gitlab\.example\.com$";
    let subject =
        r"^https://gitlab\.example\.com/platform/deploy//\.gitlab-ci\.yml@refs/heads/main$";
    assert_denied(
        &validate(&keyless(issuer, subject)),
        &[
            "accepts https://gitlab.example.com",
            "public Sigstore",
            "trustedRootSecretRef",
        ],
    );
    let mut repo = keyless(issuer, subject);
    repo["spec"]["verify"]["trustedRootSecretRef"] = json!({"name": "sigstore-trusted-root"});
    assert_clean(&validate(&repo));
}

#[test]
fn without_require_identity_keyless_verification_may_accept_any_signer() {
    let lenient = engine("policies:\n  signed-oci-sources:\n    requireIdentity: false\n");
    let view = MemoryView::new();
    assert_clean(&validate_with(
        &lenient,
        &oci_repository("  verify: {provider: cosign}"),
        &view,
    ));
    assert_clean(&validate_with(&lenient, &keyless(".*", ".*"), &view));
    // Flux still cannot use a pattern that does not compile.
    assert_denied(
        &validate_with(&lenient, &keyless("(", APP_SUBJECT), &view),
        &["not a valid Go regular expression"],
    );
    // And an unverified source is still denied.
    assert_denied(
        &validate_with(&lenient, &oci_repository(""), &view),
        &["spec.verify is missing"],
    );
}

// ---------------------------------------------------------------------------------------
// A HelmRepository that turns OCI takes its charts with it

/// A HelmChart of `charts` without verify, and a HelmRelease in another namespace pulling
/// from it with `release_verify`.
fn charts_of_the_repository(chart_verify: &str, release_verify: &str) -> MemoryView {
    let mut chart = helm_chart(chart_verify);
    chart["metadata"]["name"] = json!("podinfo");
    let release = helm_release(
        "{kind: HelmRepository, name: charts, namespace: flux-system}",
        release_verify,
    );
    view_with(&[chart, release])
}

fn https_repository() -> Value {
    helm_repository(
        "flux-system",
        "charts",
        "default",
        "https://charts.example.com",
    )
}

fn oci_repository_of_charts() -> Value {
    helm_repository(
        "flux-system",
        "charts",
        "oci",
        "oci://registry.gitlab.com/acme/charts",
    )
}

#[test]
fn a_helm_repository_turning_oci_is_denied_while_its_charts_do_not_verify() {
    let view = charts_of_the_repository("", "");
    let body = update_body(&oci_repository_of_charts(), &https_repository(), None);
    let verdict = review_body(&default_engine(), Endpoint::Validate, &body, &view);
    assert_denied(
        &verdict,
        &[
            "HelmRepository flux-system/charts (oci://registry.gitlab.com/acme/charts) becomes an OCI repository",
            "HelmChart flux-system/podinfo (spec.verify is missing)",
            "HelmRelease apps/podinfo (spec.chart.spec.verify is missing)",
            "then change the repository",
        ],
    );
    // Created as OCI, the same.
    assert_denied(
        &validate_with(&default_engine(), &oci_repository_of_charts(), &view),
        &["is an OCI repository", "HelmChart flux-system/podinfo"],
    );
}

#[test]
fn a_helm_repository_turning_oci_passes_once_its_charts_verify() {
    let view = charts_of_the_repository(
        &format!(
            "  verify:\n    provider: cosign\n    matchOIDCIdentity:\n      - issuer: '{GITLAB_ISSUER}'\n        subject: '{APP_SUBJECT}'"
        ),
        "      verify: {provider: cosign, secretRef: {name: cosign-pub}}",
    );
    let body = update_body(&oci_repository_of_charts(), &https_repository(), None);
    let verdict = review_body(&default_engine(), Endpoint::Validate, &body, &view);
    assert!(verdict.allowed, "{}", verdict.denial_message());
    // A chart whose keyless identity is broad still holds the repository back.
    let broad = charts_of_the_repository(
        "  verify:\n    provider: cosign\n    matchOIDCIdentity:\n      - {issuer: '.*', subject: '.*'}",
        "      verify: {provider: cosign, secretRef: {name: cosign-pub}}",
    );
    assert_denied(
        &review_body(&default_engine(), Endpoint::Validate, &body, &broad),
        &[
            "HelmChart flux-system/podinfo (spec.verify.matchOIDCIdentity[0].issuer `.*` is too broad",
        ],
    );
}

#[test]
fn a_helm_repository_that_stays_http_or_has_no_charts_passes() {
    let view = charts_of_the_repository("", "");
    assert_clean(&validate_with(
        &default_engine(),
        &https_repository(),
        &view,
    ));
    assert_clean(&validate_with(
        &default_engine(),
        &oci_repository_of_charts(),
        &MemoryView::new(),
    ));
    // Charts of another repository do not count.
    let mut other = oci_repository_of_charts();
    other["metadata"]["name"] = json!("other");
    assert_clean(&validate_with(&default_engine(), &other, &view));
}

#[test]
fn a_helm_repository_whose_charts_cannot_be_told_follows_unknown_helm_repository() {
    let view = charts_of_the_repository("", "");
    view.set_synced(false);
    assert_denied(
        &validate_with(&default_engine(), &oci_repository_of_charts(), &view),
        &[
            "cannot tell which HelmCharts and HelmReleases pull from it",
            "unknownHelmRepository: deny",
        ],
    );
    let lenient = engine("policies:\n  signed-oci-sources:\n    unknownHelmRepository: warn\n");
    let verdict = validate_with(&lenient, &oci_repository_of_charts(), &view);
    assert!(verdict.allowed, "{}", verdict.denial_message());
}

#[test]
fn check_judges_a_helm_repository_by_the_charts_of_its_manifest_set() {
    let dir = std::env::temp_dir().join(format!("fluxgate-i21-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a directory");
    let file = dir.join("charts.yaml");
    let manifests = format!(
        "{}---\n{}",
        serde_yaml_ng::to_string(&oci_repository_of_charts()).expect("yaml"),
        serde_yaml_ng::to_string(&helm_chart("")).expect("yaml"),
    );
    std::fs::write(&file, manifests).expect("writes");
    let report = fluxgate::check::check(
        &default_engine(),
        std::slice::from_ref(&file),
        &[],
        &mut std::io::empty(),
    );
    let text = serde_json::to_string(&report).expect("json");
    assert!(
        text.contains("is an OCI repository") && text.contains("HelmChart flux-system/podinfo"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------
// Identities are judged by the language of their patterns (issue 21's families)

const GITHUB_ISSUER: &str = r"^https://token\.actions\.githubusercontent\.com$";
const GOOGLE_ISSUER: &str = r"^https://accounts\.google\.com$";

/// `<group>` in a GitLab CI subject of project `app`, branch main.
fn gitlab_subject(group: &str) -> String {
    format!(r"^https://gitlab\.com/{group}/app//\.gitlab-ci\.yml@refs/heads/main$")
}

#[track_caller]
fn assert_identity_denied(issuer: &str, subject: &str, phrases: &[&str]) -> String {
    let mut all = vec!["is too broad"];
    all.extend_from_slice(phrases);
    assert_denied(&validate(&keyless(issuer, subject)), &all)
}

#[track_caller]
fn assert_identity_passes(issuer: &str, subject: &str) {
    let verdict = validate(&keyless(issuer, subject));
    assert!(
        verdict.allowed && verdict.outcomes.is_empty(),
        "{issuer} / {subject}: {}",
        verdict.denial_message()
    );
}

/// The issue's example: anyone can create a group whose name is made of the letters b to z.
#[test]
fn a_group_spelled_as_a_class_anyone_can_register_is_denied_and_named() {
    let message = assert_identity_denied(
        GITLAB_ISSUER,
        &gitlab_subject("[b-z]+"),
        &[
            "does not pin the full project path",
            "`[b-z]+`",
            "https://gitlab.com/b",
        ],
    );
    assert!(message.contains("subject"), "{message}");
    assert_identity_passes(GITLAB_ISSUER, &gitlab_subject("acme"));
}

/// Classes, ranges and bounded repetitions: finite is not enough, the groups must be few
/// enough to be written out; their twins name the same one or two groups in other
/// spellings.
#[test]
fn classes_ranges_and_bounded_repetitions_name_groups_only_when_few() {
    for open in [
        "[b-z]",
        "[a-z]{1,3}",
        r"\w{2}",
        "[[:alpha:]][[:digit:]]",
        r"\pL",
        "acme[0-9]?",
        "(?:a|b|c|d|e|f|g|h|i)",
        "[^/]{1,64}",
    ] {
        assert_identity_denied(
            GITLAB_ISSUER,
            &gitlab_subject(open),
            &["does not pin the full project path"],
        );
    }
    for named in [
        "acme",
        "[a]cme",
        "ac{1}me",
        "(?:acme)",
        "(?:acme|web)",
        "(?i:ACME)",
        "[Aa]cme",
        r"\x61cme",
        r"\Qacme\E",
    ] {
        assert_identity_passes(GITLAB_ISSUER, &gitlab_subject(named));
    }
}

#[test]
fn a_word_boundary_does_not_end_a_group_name() {
    // `\b` holds between `acme` and `-evil`: project acme-evil/app signs.
    assert_identity_denied(
        GITLAB_ISSUER,
        &gitlab_subject(r"acme\b.*"),
        &["does not pin the full project path"],
    );
    assert_identity_passes(GITLAB_ISSUER, &gitlab_subject(r"acme\b"));
}

#[test]
fn an_alternative_past_the_eighth_is_judged_too() {
    let eight = "(?:t1|t2|t3|t4|t5|t6|t7|t8)";
    assert_identity_passes(GITLAB_ISSUER, &gitlab_subject(eight));
    let opened = "(?:t1|t2|t3|t4|t5|t6|t7|t8|[^/]+)";
    assert_identity_denied(
        GITLAB_ISSUER,
        &gitlab_subject(opened),
        &["does not pin the full project path", "`[^/]+`"],
    );
}

#[test]
fn github_owners_must_be_named() {
    let subject = |owner: &str| {
        format!(r"^https://github\.com/{owner}/app/\.github/workflows/release\.yml@refs/tags/v.*$")
    };
    for (open, fragment) in [
        ("[a-z]+", "`[a-z]+`"),
        ("[^/]+", "`[^/]+`"),
        ("acme.*", "`.*`"),
        ("acme-?[a-z]?", "group or owner"),
    ] {
        assert_identity_denied(GITHUB_ISSUER, &subject(open), &["group or owner", fragment]);
    }
    assert_identity_passes(GITHUB_ISSUER, &subject("acme"));
    // Flux's documented example, unescaped dots and an open repository name included.
    assert_identity_passes(
        "^https://token.actions.githubusercontent.com$",
        "^https://github.com/stefanprodan/podinfo.*$",
    );
}

#[test]
fn a_google_subject_at_a_public_webmail_domain_is_denied() {
    assert_identity_denied(
        GOOGLE_ISSUER,
        r"^[a-z0-9.]+@gmail\.com$",
        &["every address at gmail.com", "public email domain"],
    );
    // One named person is specific, wherever their mailbox is.
    assert_identity_passes(GOOGLE_ISSUER, r"^jane\.doe@gmail\.com$");
    // Listing a public webmail domain is refused outright.
    let error = config_error(
        "policies:\n  signed-oci-sources:\n    trustedEmailDomains: [acme.com, gmail.com]\n",
    );
    assert!(
        error.contains("policies.signed-oci-sources.trustedEmailDomains[1]")
            && error.contains("public email domain"),
        "{error}"
    );
}

/// The opposite error: two spellings of "every address at acme.com" got two verdicts.
#[test]
fn every_address_of_a_domain_is_one_verdict_however_spelled() {
    let spellings = [r"^[^@]+@acme\.com$", r"^[a-z0-9._-]+@acme\.com$"];
    for subject in spellings {
        assert_identity_denied(
            GOOGLE_ISSUER,
            subject,
            &["every address at acme.com", "trustedEmailDomains"],
        );
    }
    let trusting =
        engine("policies:\n  signed-oci-sources:\n    trustedEmailDomains: [acme.com]\n");
    for subject in spellings {
        assert_clean(&validate_with(
            &trusting,
            &keyless(GOOGLE_ISSUER, subject),
            &MemoryView::new(),
        ));
    }
    // A trusted domain does not open another one.
    assert_denied(
        &validate_with(
            &trusting,
            &keyless(GOOGLE_ISSUER, r"^[^@]+@acme\.com\.evil$"),
            &MemoryView::new(),
        ),
        &["every address at acme.com.evil"],
    );
}

#[test]
fn bad_trusted_email_domains_are_refused() {
    for (domain, phrase) in [
        ("''", "is empty"),
        ("'*.acme.com'", "not a domain name"),
        ("release@acme.com", "is an address"),
        ("users.noreply.github.com", "public email domain"),
        ("localhost", "not a domain name"),
    ] {
        let error = config_error(&format!(
            "policies:\n  signed-oci-sources:\n    trustedEmailDomains: [{domain}]\n"
        ));
        assert!(
            error.contains("trustedEmailDomains[0]") && error.contains(phrase),
            "{domain}: {error}"
        );
    }
}

/// cosign compiles with Go's regexp: what Go refuses never verifies, and what Go reads
/// differently from Rust is judged as Go reads it.
#[test]
fn patterns_are_read_as_go_reads_them() {
    for (subject, go_error) in [
        (
            r"(?x)^https://gitlab\.com/acme/",
            "invalid or unsupported Perl syntax",
        ),
        (
            r"^https://gitlab\.com/\p{Alphabetic}/",
            "invalid character class range",
        ),
        (
            r"^https://gitlab\.com/acme/.**",
            "invalid nested repetition operator",
        ),
        (r"^https://gitlab\.com/a{1001}/", "invalid repeat count"),
    ] {
        assert_denied(
            &validate(&keyless(GITLAB_ISSUER, subject)),
            &["is not a valid Go regular expression", go_error],
        );
    }
    // Go reads `{` that starts no repeat as a literal, where Rust refuses the pattern.
    assert_identity_passes(
        GITLAB_ISSUER,
        r"^https://gitlab\.com/acme/{app}//\.gitlab-ci\.yml@refs/heads/main$",
    );
    // Go's \w is ASCII: `\w+` is still infinitely many groups.
    assert_identity_denied(
        GITLAB_ISSUER,
        &gitlab_subject(r"\w+"),
        &["does not pin the full project path", r"`\w+`"],
    );
    // In Go `[[:word:]]` is a POSIX class, `[[a]]` a class followed by `]`.
    assert_identity_passes(GITLAB_ISSUER, &gitlab_subject("acm[[e]]"));
}

#[test]
fn a_self_managed_gitlab_listed_in_trusted_issuers_is_read_by_project() {
    let issuer = r"^https://gitlab\.example\.com$";
    let subject = r"^https://gitlab\.example\.com/platform/app//\.gitlab-ci\.yml@refs/tags/.*$";
    let mut repo = keyless(issuer, subject);
    repo["spec"]["verify"]["trustedRootSecretRef"] = json!({"name": "sigstore-trusted-root"});
    // Unknown to fluxgate, its subjects must be written out whole.
    let message = assert_denied(
        &validate(&repo),
        &["subject", "is too broad", "trustedIssuers"],
    );
    assert!(
        message.contains("reads the subjects of https://gitlab.example.com whole"),
        "{message}"
    );
    let trusting = engine(
        "policies:\n  signed-oci-sources:\n    trustedIssuers: ['https://gitlab\\.example\\.com']\n",
    );
    assert_clean(&validate_with(&trusting, &repo, &MemoryView::new()));
    repo["spec"]["verify"]["matchOIDCIdentity"][0]["subject"] =
        json!(r"^https://gitlab\.example\.com/[a-z]+/app//\.gitlab-ci\.yml@refs/tags/.*$");
    assert_denied(
        &validate_with(&trusting, &repo, &MemoryView::new()),
        &["does not pin the full project path", "`[a-z]+`"],
    );
    // A group of the self-managed instance is no principal either.
    repo["spec"]["verify"]["matchOIDCIdentity"][0]["subject"] =
        json!(r"^https://gitlab\.example\.com/platform/.*$");
    assert_denied(
        &validate_with(&trusting, &repo, &MemoryView::new()),
        &["does not pin the full project path", "`platform/attacker`"],
    );
}

// ---------------------------------------------------------------------------------------
// Trusted issuers, registries, plain HTTP

const TRUSTED: &str = r#"
policies:
  signed-oci-sources:
    trustedIssuers:
      - 'https://gitlab\.com'
      - '^https://gitlab\.example\.com$'
"#;

#[test]
fn a_trusted_issuer_passes() {
    let trusted = engine(TRUSTED);
    assert_clean(&validate_with(
        &trusted,
        &keyless(GITLAB_ISSUER, APP_SUBJECT),
        &MemoryView::new(),
    ));
}

#[test]
fn an_issuer_outside_the_trusted_list_is_denied() {
    let trusted = engine(TRUSTED);
    assert_denied(
        &validate_with(
            &trusted,
            &keyless(
                r"^https://token\.actions\.githubusercontent\.com$",
                r"^https://github\.com/acme/app/\.github/workflows/release\.yml@refs/heads/main$",
            ),
            &MemoryView::new(),
        ),
        &[
            "accepts https://token.actions.githubusercontent.com",
            "not a trusted issuer",
            r"https://gitlab\.com",
        ],
    );
}

#[test]
fn an_alternative_outside_the_trusted_list_is_denied() {
    let trusted = engine(TRUSTED);
    assert_denied(
        &validate_with(
            &trusted,
            &keyless(r"^https://(gitlab\.com|evil\.example)$", APP_SUBJECT),
            &MemoryView::new(),
        ),
        &["accepts https://evil.example", "not a trusted issuer"],
    );
}

#[test]
fn with_trusted_issuers_a_broad_issuer_is_denied_even_without_require_identity() {
    let config = format!("{TRUSTED}    requireIdentity: false\n");
    let verdict = validate_with(&engine(&config), &keyless(".*", ".*"), &MemoryView::new());
    let message = assert_denied(&verdict, &["issuer `.*` is too broad"]);
    assert!(!message.contains("subject `.*`"), "{message}");
}

#[test]
fn a_source_outside_the_allowed_registries_is_denied() {
    let allow = engine(
        "policies:\n  signed-oci-sources:\n    allowedRegistries: [oci://registry.gitlab.com/acme, ghcr.io/acme/]\n",
    );
    let view = MemoryView::new();
    let mut repo = keyless(GITLAB_ISSUER, APP_SUBJECT);
    assert_clean(&validate_with(&allow, &repo, &view));
    repo["spec"]["url"] = json!("oci://ghcr.io/acme/app");
    assert_clean(&validate_with(&allow, &repo, &view));
    for outside in [
        "oci://registry.gitlab.com/acme-evil/app",
        "oci://docker.io/acme/app",
    ] {
        repo["spec"]["url"] = json!(outside);
        assert_denied(
            &validate_with(&allow, &repo, &view),
            &[
                outside,
                "outside the allowed registries",
                "oci://registry.gitlab.com/acme",
            ],
        );
    }
}

#[test]
fn an_insecure_registry_is_denied() {
    let mut repo = oci_repository("  verify: {provider: cosign, secretRef: {name: cosign-pub}}");
    repo["spec"]["insecure"] = json!(true);
    assert_denied(
        &validate(&repo),
        &["plain HTTP", "spec.insecure: true", "allowInsecure"],
    );
}

#[test]
fn allow_insecure_permits_plain_http_but_not_unsigned_sources() {
    let lenient = engine("policies:\n  signed-oci-sources:\n    allowInsecure: true\n");
    let view = MemoryView::new();
    let mut repo = oci_repository("  verify: {provider: cosign, secretRef: {name: cosign-pub}}");
    repo["spec"]["insecure"] = json!(true);
    assert_clean(&validate_with(&lenient, &repo, &view));
    repo["spec"].as_object_mut().expect("spec").remove("verify");
    assert_denied(
        &validate_with(&lenient, &repo, &view),
        &["spec.verify is missing"],
    );
}

// ---------------------------------------------------------------------------------------
// Charts from OCI HelmRepositories

#[test]
fn a_helm_chart_from_an_oci_repository_without_verify_is_denied() {
    let verdict = validate_with(&default_engine(), &helm_chart(""), &oci_charts_view());
    assert_denied(
        &verdict,
        &[
            "HelmChart flux-system/podinfo",
            "oci://registry.gitlab.com/acme/charts/podinfo",
            "HelmRepository flux-system/charts",
            "spec.verify is missing",
        ],
    );
}

#[test]
fn a_verified_helm_chart_from_an_oci_repository_passes() {
    let chart = helm_chart(
        r"  verify:
    provider: cosign
    matchOIDCIdentity:
      - issuer: '^https://gitlab\.com$'
        subject: '^https://gitlab\.com/acme/charts//\.gitlab-ci\.yml@refs/tags/v.*$'",
    );
    assert_clean(&validate_with(
        &default_engine(),
        &chart,
        &oci_charts_view(),
    ));
}

#[test]
fn a_helm_chart_with_a_weak_identity_is_denied() {
    let chart = helm_chart(
        "  verify: {provider: cosign, matchOIDCIdentity: [{issuer: '.*', subject: '.*'}]}",
    );
    assert_denied(
        &validate_with(&default_engine(), &chart, &oci_charts_view()),
        &["HelmChart flux-system/podinfo", "too broad"],
    );
}

#[test]
fn a_helm_chart_from_an_http_repository_needs_no_verify() {
    let mut chart = helm_chart("");
    chart["spec"]["sourceRef"]["name"] = json!("bitnami");
    assert_clean(&validate_with(
        &default_engine(),
        &chart,
        &oci_charts_view(),
    ));
}

#[test]
fn a_helm_chart_from_git_needs_no_verify() {
    let mut chart = helm_chart("");
    chart["spec"]["sourceRef"] = json!({"kind": "GitRepository", "name": "charts"});
    assert_clean(&validate_with(
        &default_engine(),
        &chart,
        &MemoryView::new(),
    ));
}

#[test]
fn a_helm_chart_whose_repository_does_not_exist_is_denied_by_default() {
    assert_denied(
        &validate_with(&default_engine(), &helm_chart(""), &MemoryView::new()),
        &[
            "HelmChart flux-system/podinfo",
            "cannot tell whether HelmRepository flux-system/charts is an OCI repository",
            "it does not exist",
            "unknownHelmRepository: deny",
        ],
    );
}

#[test]
fn a_helm_chart_whose_repository_is_not_synced_yet_is_denied_by_default() {
    let view = MemoryView::new();
    view.set_synced(false);
    assert_denied(
        &validate_with(&default_engine(), &helm_chart(""), &view),
        &["not synced yet", "unknownHelmRepository: deny"],
    );
}

#[test]
fn an_unknown_helm_repository_only_warns_when_configured_so() {
    let warn = engine("policies:\n  signed-oci-sources:\n    unknownHelmRepository: warn\n");
    let verdict = validate_with(&warn, &helm_chart(""), &MemoryView::new());
    assert_allowed(&verdict);
    assert!(
        verdict
            .warnings
            .iter()
            .any(|w| w.contains("HelmChart flux-system/podinfo")),
        "{verdict:#?}"
    );
    assert!(
        verdict.outcomes[0]
            .finding
            .message
            .contains("unknownHelmRepository: warn"),
        "{verdict:#?}"
    );
}

#[test]
fn a_verify_block_on_a_chart_of_an_unknown_repository_is_still_judged() {
    let good = helm_chart("  verify: {provider: cosign, secretRef: {name: cosign-pub}}");
    assert_clean(&validate_with(&default_engine(), &good, &MemoryView::new()));
    let weak = helm_chart("  verify: {provider: cosign}");
    assert_denied(
        &validate_with(&default_engine(), &weak, &MemoryView::new()),
        &["without matchOIDCIdentity"],
    );
}

#[test]
fn a_helm_chart_cannot_verify_a_self_managed_issuer() {
    let chart = helm_chart(
        r"  verify:
    provider: cosign
    matchOIDCIdentity:
      - issuer: '^https://gitlab\.example\.com$'
        subject: '^https://gitlab\.example\.com/acme/charts//\.gitlab-ci\.yml@refs/heads/main$'",
    );
    assert_denied(
        &validate_with(&default_engine(), &chart, &oci_charts_view()),
        &[
            "HelmChart cannot name another Sigstore trust root",
            "secretRef",
        ],
    );
}

#[test]
fn a_chart_from_an_insecure_oci_repository_is_denied() {
    let mut repo = helm_repository(
        "flux-system",
        "charts",
        "oci",
        "oci://registry.local:5000/charts",
    );
    repo["spec"]["insecure"] = json!(true);
    let chart = helm_chart("  verify: {provider: cosign, secretRef: {name: cosign-pub}}");
    assert_denied(
        &validate_with(&default_engine(), &chart, &view_with(&[repo])),
        &[
            "plain HTTP",
            "HelmRepository flux-system/charts has spec.insecure: true",
        ],
    );
}

#[test]
fn a_helm_release_pulling_from_an_oci_repository_without_verify_is_denied() {
    let view = view_with(&[helm_repository(
        "apps",
        "charts",
        "oci",
        "oci://ghcr.io/acme/charts",
    )]);
    assert_denied(
        &validate_with(
            &default_engine(),
            &helm_release("{kind: HelmRepository, name: charts}", ""),
            &view,
        ),
        &[
            "HelmRelease apps/podinfo",
            "oci://ghcr.io/acme/charts/podinfo",
            "spec.chart.spec.verify is missing",
            "secretRef",
        ],
    );
}

#[test]
fn a_helm_release_template_verified_with_a_key_passes() {
    let view = view_with(&[helm_repository(
        "apps",
        "charts",
        "oci",
        "oci://ghcr.io/acme/charts",
    )]);
    let release = helm_release(
        "{kind: HelmRepository, name: charts}",
        "      verify: {provider: cosign, secretRef: {name: cosign-pub}}",
    );
    assert_clean(&validate_with(&default_engine(), &release, &view));
}

#[test]
fn a_helm_release_template_cannot_pin_a_keyless_signer() {
    let view = view_with(&[helm_repository(
        "apps",
        "charts",
        "oci",
        "oci://ghcr.io/acme/charts",
    )]);
    let release = helm_release(
        "{kind: HelmRepository, name: charts}",
        "      verify: {provider: cosign}",
    );
    assert_denied(
        &validate_with(&default_engine(), &release, &view),
        &["cannot name the signer", "spec.chartRef"],
    );
}

#[test]
fn a_helm_release_looks_its_repository_up_in_the_namespace_it_names() {
    let view = view_with(&[
        helm_repository("flux-system", "charts", "oci", "oci://ghcr.io/acme/charts"),
        helm_repository("apps", "charts", "default", "https://charts.example.com"),
    ]);
    let same_namespace = helm_release("{kind: HelmRepository, name: charts}", "");
    assert_clean(&validate_with(&default_engine(), &same_namespace, &view));
    let other_namespace = helm_release(
        "{kind: HelmRepository, name: charts, namespace: flux-system}",
        "",
    );
    assert_denied(
        &validate_with(&default_engine(), &other_namespace, &view),
        &[
            "HelmRepository flux-system/charts",
            "spec.chart.spec.verify is missing",
        ],
    );
}

#[test]
fn a_helm_release_with_a_chart_ref_is_left_to_the_referenced_source() {
    let release = object(
        "apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata: {name: podinfo, namespace: apps}
spec:
  interval: 10m
  serviceAccountName: podinfo
  chartRef: {kind: OCIRepository, name: podinfo}",
    );
    assert_clean(&validate_with(
        &default_engine(),
        &release,
        &MemoryView::new(),
    ));
}

#[test]
fn a_helm_release_whose_repository_is_missing_is_denied_by_default() {
    assert_denied(
        &validate_with(
            &default_engine(),
            &helm_release("{kind: HelmRepository, name: charts}", ""),
            &MemoryView::new(),
        ),
        &[
            "HelmRelease apps/podinfo",
            "HelmRepository apps/charts",
            "does not exist",
        ],
    );
}

#[test]
fn the_helm_repository_is_prefetched_before_judging_charts() {
    let engine = default_engine();
    let key = |namespace: &str| ObjectKey {
        group: "source.toolkit.fluxcd.io".into(),
        kind: "HelmRepository".into(),
        namespace: Some(namespace.into()),
        name: "charts".into(),
    };
    for (object, namespace) in [
        (helm_chart(""), "flux-system"),
        (
            helm_release("{kind: HelmRepository, name: charts}", ""),
            "apps",
        ),
        (
            helm_release(
                "{kind: HelmRepository, name: charts, namespace: shared}",
                "",
            ),
            "shared",
        ),
    ] {
        let owned = OwnedObject::from_value(&object).expect("object");
        assert_eq!(engine.prefetch(&owned.as_create("u")), vec![key(namespace)]);
    }
    let owned = OwnedObject::from_value(&oci_repository("")).expect("object");
    assert!(engine.prefetch(&owned.as_create("u")).is_empty());
}

// ---------------------------------------------------------------------------------------
// What is never blocked

#[test]
fn an_update_that_leaves_spec_alone_is_never_blocked() {
    let old = oci_repository("");
    let mut new = old.clone();
    new["metadata"]["finalizers"] = json!(["finalizers.fluxcd.io"]);
    new["metadata"]["labels"] = json!({"team": "a"});
    let verdict = review_body(
        &default_engine(),
        Endpoint::Validate,
        &update_body(&new, &old, None),
        &MemoryView::new(),
    );
    assert_allowed(&verdict);
    assert!(!verdict.evaluated.contains(&POLICY), "{verdict:#?}");
}

#[test]
fn an_update_of_spec_is_judged() {
    let old = oci_repository("");
    let mut new = old.clone();
    new["spec"]["interval"] = json!("10m");
    let verdict = review_body(
        &default_engine(),
        Endpoint::Validate,
        &update_body(&new, &old, None),
        &MemoryView::new(),
    );
    assert_denied(&verdict, &["spec.verify is missing"]);
}

#[test]
fn a_status_update_is_never_blocked() {
    let old = oci_repository("");
    let mut new = old.clone();
    new["status"] = json!({"conditions": [{"type": "Ready", "status": "False"}]});
    let verdict = review_body(
        &default_engine(),
        Endpoint::Validate,
        &update_body(&new, &old, Some("status")),
        &MemoryView::new(),
    );
    assert_allowed(&verdict);
    assert!(verdict.evaluated.is_empty(), "{verdict:#?}");
}

#[test]
fn a_helm_release_update_of_values_only_is_never_blocked() {
    let old = helm_release("{kind: HelmRepository, name: charts}", "");
    let mut new = old.clone();
    new["spec"]["values"] = json!({"replicaCount": 2});
    let verdict = review_body(
        &default_engine(),
        Endpoint::Validate,
        &update_body(&new, &old, None),
        &MemoryView::new(),
    );
    assert_allowed(&verdict);
    assert!(!verdict.evaluated.contains(&POLICY), "{verdict:#?}");
}

#[test]
fn the_policy_judges_creates_and_updates_of_its_kinds_in_every_version() {
    let engine = default_engine();
    let kinds: BTreeSet<(&str, &str, &str)> = engine
        .kinds()
        .into_iter()
        .filter(|(id, _)| *id == POLICY)
        .map(|(_, rule)| {
            assert_eq!(rule.operations, &[Operation::Create, Operation::Update]);
            (rule.group, rule.kind, rule.resource)
        })
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from([
            ("helm.toolkit.fluxcd.io", "HelmRelease", "helmreleases"),
            (
                "source.toolkit.fluxcd.io",
                "HelmRepository",
                "helmrepositories"
            ),
            ("source.toolkit.fluxcd.io", "HelmChart", "helmcharts"),
            (
                "source.toolkit.fluxcd.io",
                "OCIRepository",
                "ocirepositories"
            ),
        ])
    );
}

#[test]
fn warn_and_audit_modes_do_not_deny() {
    let warn = engine("policies:\n  signed-oci-sources:\n    mode: warn\n");
    let verdict = validate_with(&warn, &oci_repository(""), &MemoryView::new());
    assert_allowed(&verdict);
    assert!(verdict.warnings[0].starts_with("[signed-oci-sources] OCIRepository flux-system/app"));
    let audit = engine("policies:\n  signed-oci-sources:\n    mode: audit\n");
    let verdict = validate_with(&audit, &oci_repository(""), &MemoryView::new());
    assert_allowed(&verdict);
    assert!(verdict.warnings.is_empty());
    assert_eq!(verdict.outcomes.len(), 1);
}

// ---------------------------------------------------------------------------------------
// Mutation: verifyDefaults

const DEFAULTS: &str = r#"
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
      - match: oci://ghcr.io/stefanprodan
        verify:
          provider: cosign
          secretRef: {name: stefanprodan-cosign}
      - name: catch-all
        match: oci://**
        verify:
          provider: cosign
          secretRef: {name: cosign-public-key}
"#;

fn mutate(engine: &Engine, object: &Value, view: &MemoryView) -> Vec<json_patch::PatchOperation> {
    review(engine, Endpoint::Mutate, object, view).patch
}

fn apply(object: &Value, patch: &[json_patch::PatchOperation]) -> Value {
    let mut patched = object.clone();
    json_patch::patch(&mut patched, patch).expect("the patch applies");
    patched
}

#[test]
fn mutation_adds_the_first_matching_default_and_round_trips() {
    let engine = engine(DEFAULTS);
    let view = MemoryView::new();
    let repo = oci_repository("");
    let patch = mutate(&engine, &repo, &view);
    assert_eq!(patch.len(), 2, "{patch:?}");
    let patched = apply(&repo, &patch);
    assert_eq!(
        patched["spec"]["verify"],
        json!({
            "provider": "cosign",
            "matchOIDCIdentity": [{"issuer": GITLAB_ISSUER, "subject": APP_SUBJECT}],
        })
    );
    assert_eq!(
        patched["metadata"]["annotations"]["fluxgate.io/verify-default"],
        "acme-gitlab"
    );
    // The mutated object passes validation, and mutating it again changes nothing.
    assert_clean(&validate_with(&engine, &patched, &view));
    assert!(mutate(&engine, &patched, &view).is_empty());
}

#[test]
fn the_annotation_key_is_escaped_in_the_patch_path() {
    let engine = engine(DEFAULTS);
    let mut repo = oci_repository("");
    repo["metadata"]["annotations"] = json!({"team": "a"});
    let patch = mutate(&engine, &repo, &MemoryView::new());
    let paths: Vec<String> = serde_json::to_value(&patch)
        .expect("serializes")
        .as_array()
        .expect("list")
        .iter()
        .map(|op| op["path"].as_str().expect("path").to_string())
        .collect();
    assert_eq!(
        paths,
        [
            "/spec/verify",
            "/metadata/annotations/fluxgate.io~1verify-default"
        ]
    );
    let patched = apply(&repo, &patch);
    assert_eq!(patched["metadata"]["annotations"]["team"], "a");
    assert_eq!(
        patched["metadata"]["annotations"]["fluxgate.io/verify-default"],
        "acme-gitlab"
    );
}

#[test]
fn rules_are_tried_in_order_and_unnamed_ones_are_labelled_by_index() {
    let engine = engine(DEFAULTS);
    let view = MemoryView::new();
    let mut repo = oci_repository("");
    repo["spec"]["url"] = json!("oci://ghcr.io/stefanprodan/manifests/podinfo");
    let patched = apply(&repo, &mutate(&engine, &repo, &view));
    assert_eq!(
        patched["spec"]["verify"]["secretRef"]["name"],
        "stefanprodan-cosign"
    );
    assert_eq!(
        patched["metadata"]["annotations"]["fluxgate.io/verify-default"],
        "verifyDefaults[1]"
    );
    repo["spec"]["url"] = json!("oci://docker.io/library/app");
    let patched = apply(&repo, &mutate(&engine, &repo, &view));
    assert_eq!(
        patched["metadata"]["annotations"]["fluxgate.io/verify-default"],
        "catch-all"
    );
}

#[test]
fn an_existing_verify_is_never_changed() {
    let engine = engine(DEFAULTS);
    let view = MemoryView::new();
    for verify in [
        "  verify: {provider: cosign, matchOIDCIdentity: [{issuer: '.*', subject: '.*'}]}",
        "  verify: {provider: notation}",
        "  verify: {}",
    ] {
        assert!(
            mutate(&engine, &oci_repository(verify), &view).is_empty(),
            "{verify}"
        );
    }
}

#[test]
fn without_a_matching_rule_nothing_is_added() {
    let engine = engine(
        "policies:\n  signed-oci-sources:\n    verifyDefaults:\n      - match: oci://registry.gitlab.com/other/**\n        verify: {provider: cosign, secretRef: {name: k}}\n",
    );
    assert!(mutate(&engine, &oci_repository(""), &MemoryView::new()).is_empty());
}

#[test]
fn the_denial_points_at_the_matching_default() {
    let message = assert_denied(
        &validate_with(&engine(DEFAULTS), &oci_repository(""), &MemoryView::new()),
        &["verifyDefaults rule `acme-gitlab`", "mutating webhook"],
    );
    assert_eq!(
        suggested_spec(&message)["verify"]["matchOIDCIdentity"][0]["subject"],
        APP_SUBJECT
    );
}

#[test]
fn an_oci_helm_chart_gets_the_default_too() {
    let engine = engine(DEFAULTS);
    let view = oci_charts_view();
    let chart = helm_chart("");
    let patched = apply(&chart, &mutate(&engine, &chart, &view));
    // oci://registry.gitlab.com/acme/charts/podinfo: group acme, project charts.
    assert_eq!(
        patched["spec"]["verify"]["matchOIDCIdentity"][0]["subject"],
        r"^https://gitlab\.com/acme/charts//\.gitlab-ci\.yml@refs/heads/main$"
    );
    assert_clean(&validate_with(&engine, &patched, &view));
    assert!(mutate(&engine, &patched, &view).is_empty());
    // Unless fluxgate cannot tell that its repository is OCI.
    assert!(mutate(&engine, &chart, &MemoryView::new()).is_empty());
    let mut http = chart.clone();
    http["spec"]["sourceRef"]["name"] = json!("bitnami");
    assert!(mutate(&engine, &http, &view).is_empty());
}

#[test]
fn audit_mode_never_mutates() {
    let config = format!("{DEFAULTS}    mode: audit\n");
    assert!(mutate(&engine(&config), &oci_repository(""), &MemoryView::new()).is_empty());
}

// ---------------------------------------------------------------------------------------
// Settings are checked at load

#[track_caller]
fn config_error(yaml: &str) -> String {
    Config::from_yaml(yaml, "c.yaml")
        .expect_err("invalid")
        .to_string()
}

#[test]
fn bad_settings_are_refused_with_the_key() {
    let block = "policies:\n  signed-oci-sources:\n";
    let cases = [
        (
            "    trustedIssuers: ['https://gitlab\\.com', '(']\n",
            "policies.signed-oci-sources.trustedIssuers[1]",
        ),
        (
            "    allowedRegistries: ['https://ghcr.io']\n",
            "policies.signed-oci-sources.allowedRegistries[0]",
        ),
        (
            "    unknownHelmRepository: ignore\n",
            "unknownHelmRepository",
        ),
        ("    requireIdenity: false\n", "requireIdenity"),
        (
            "    verifyDefaults:\n      - {match: 'oci://a/**', verify: {provider: cosign, secretRef: {name: k}}}\n      - {match: 'oci://b/{team}/**', verify: {provider: cosign, secretRef: {name: k}}}\n",
            "policies.signed-oci-sources.verifyDefaults[1].match",
        ),
        (
            "    verifyDefaults:\n      - {match: 'oci://a/**', verify: {provider: cosign}}\n",
            "policies.signed-oci-sources.verifyDefaults[0].verify",
        ),
        (
            "    verifyDefaults:\n      - {match: 'oci://a/**', verify: {provider: cosign, matchOIDCIdentity: [{issuer: '.*', subject: '.*'}]}}\n",
            "policies.signed-oci-sources.verifyDefaults[0].verify",
        ),
        (
            "    verifyDefaults:\n      - {match: 'oci://a/**', verify: {provider: cosign, secretRef: {name: k}, extra: 1}}\n",
            "extra",
        ),
    ];
    for (settings, key) in cases {
        let error = config_error(&format!("{block}{settings}"));
        assert!(error.contains(key), "{key} not in: {error}");
    }
}

#[test]
fn a_default_that_would_be_denied_says_why() {
    let error = config_error(
        "policies:\n  signed-oci-sources:\n    trustedIssuers: ['https://gitlab\\.com']\n    verifyDefaults:\n      - match: oci://registry.gitlab.com/**\n        verify:\n          matchOIDCIdentity: [{issuer: '^https://token\\.actions\\.githubusercontent\\.com$', subject: '^https://github\\.com/acme/app/'}]\n",
    );
    assert!(error.contains("would be denied by this policy"), "{error}");
    assert!(error.contains("not a trusted issuer"), "{error}");
}

#[test]
fn the_examples_in_the_default_configuration_are_valid() {
    // The commented examples of src/default-config.yaml, uncommented.
    let config = Config::from_yaml(
        r#"
policies:
  signed-oci-sources:
    trustedIssuers:
      - 'https://gitlab\.com'
      - 'https://gitlab\.example\.com'
    trustedEmailDomains: [acme.com]
    allowedRegistries: [oci://registry.gitlab.com/acme, oci://ghcr.io/acme]
    verifyDefaults:
      - name: acme-gitlab
        match: oci://registry.gitlab.com/acme/**
        verify:
          provider: cosign
          matchOIDCIdentity:
            - issuer: '^https://gitlab\.com$'
              subject: '^https://gitlab\.com/{group}/{project}//\.gitlab-ci\.yml@refs/heads/main$'
"#,
        "example.yaml",
    );
    config.expect("the documented example is valid");
    let default = fluxgate::config::DEFAULT_CONFIG_YAML;
    for line in [
        r"#     - 'https://gitlab\.com'",
        "#   trustedEmailDomains: [acme.com]",
        "#   allowedRegistries: [oci://registry.gitlab.com/acme, oci://ghcr.io/acme]",
        "#       match: oci://registry.gitlab.com/acme/**",
        r"#             subject: '^https://gitlab\.com/{group}/{project}//\.gitlab-ci\.yml@refs/heads/main$'",
    ] {
        assert!(
            default.contains(line),
            "default-config.yaml no longer shows {line}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Every Flux object of the corpus

#[derive(Debug, Clone, Copy)]
enum Decision {
    Allow,
    /// A HelmRepository none of whose charts (in its scope) would pull unverified.
    NotJudged,
    Deny(&'static [&'static str]),
}

use Decision::{Allow as ALLOW, NotJudged as NOT_JUDGED};
const MISSING: Decision = Decision::Deny(&["spec.verify is missing"]);
const TEMPLATE_MISSING: Decision = Decision::Deny(&["spec.chart.spec.verify is missing"]);
const NO_IDENTITY: Decision = Decision::Deny(&["without matchOIDCIdentity"]);
const BROAD: Decision = Decision::Deny(&["too broad"]);
/// An OCI HelmRepository whose charts in the same scope pull unverified.
const OCI_CHARTS_UNVERIFIED: Decision =
    Decision::Deny(&["is an OCI repository", "would not pass signed-oci-sources"]);
const INSECURE_UNVERIFIED: Decision = Decision::Deny(&["spec.verify is missing", "plain HTTP"]);
/// Documentation snippets that show only `status`, or `spec:` with nothing under it.
const MALFORMED: Decision = Decision::Deny(&["is malformed", "spec"]);
const UNKNOWN_REPO: Decision = Decision::Deny(&[
    "cannot tell whether",
    "it does not exist",
    "unknownHelmRepository: deny",
]);

/// Every OCIRepository, HelmChart, HelmRepository and HelmRelease under `corpus/flux/`
/// (path, kind, name), with the decision under the default configuration, checked by hand.
/// Objects are judged as `fluxgate check` would judge their directory: the cluster view holds
/// the HelmRepositories, HelmCharts and HelmReleases of the same directory (of the same file for `docs-extracted/`, whose
/// snippets are unrelated to each other).
///
/// HelmRepositories are judged too: an OCI one is denied while charts of its scope pull from
/// it unverified (OCI_CHARTS_UNVERIFIED).
///
/// Reading guide: chartRef releases and kustomize patches without a chart are left to their
/// source (ALLOW); charts from Git, Bucket or HTTP repositories need no verify (ALLOW); the
/// flux2 golden files use `github`/`stefanprodan`/empty identities (BROAD); the docs' custom
/// Sigstore example pins its subject only to a host (BROAD); flux-local-dev pulls unsigned
/// artifacts from a plain-HTTP kind registry (INSECURE_UNVERIFIED); charts and releases whose
/// HelmRepository is elsewhere cannot be told apart from OCI ones (UNKNOWN_REPO).
const CORPUS_TABLE: &[(&str, &str, &str, Decision)] = &[
    (
        "docs-extracted/fluxcd+helm-controller/docs__spec__v2__helmreleases__L1048-1063__HelmRelease.yaml",
        "HelmRelease",
        "sealed-secrets",
        ALLOW,
    ),
    (
        "docs-extracted/fluxcd+helm-controller/docs__spec__v2__helmreleases__L1282-1326__HelmRelease-OCIRepository.yaml",
        "OCIRepository",
        "webapp-chart",
        MISSING,
    ),
    (
        "docs-extracted/fluxcd+helm-controller/docs__spec__v2__helmreleases__L1282-1326__HelmRelease-OCIRepository.yaml",
        "HelmRelease",
        "webapp",
        ALLOW,
    ),
    (
        "docs-extracted/fluxcd+helm-controller/docs__spec__v2__helmreleases__L1400-1419__HelmRelease.yaml",
        "HelmRelease",
        "my-operator",
        UNKNOWN_REPO,
    ),
    (
        "docs-extracted/fluxcd+helm-controller/docs__spec__v2__helmreleases__L1487-1501__HelmRelease.yaml",
        "HelmRelease",
        "podinfo",
        UNKNOWN_REPO,
    ),
    (
        "docs-extracted/fluxcd+helm-controller/docs__spec__v2__helmreleases__L1534-1580__Cluster-HelmRelease.yaml",
        "HelmRelease",
        "kube-prometheus-stack",
        UNKNOWN_REPO,
    ),
    (
        "docs-extracted/fluxcd+helm-controller/docs__spec__v2__helmreleases__L16-58__HelmRelease-HelmRepository.yaml",
        "HelmRepository",
        "podinfo",
        NOT_JUDGED,
    ),
    (
        "docs-extracted/fluxcd+helm-controller/docs__spec__v2__helmreleases__L16-58__HelmRelease-HelmRepository.yaml",
        "HelmRelease",
        "podinfo",
        ALLOW,
    ),
    (
        "docs-extracted/fluxcd+helm-controller/docs__spec__v2__helmreleases__L1749-1755__HelmRelease.yaml",
        "HelmRelease",
        "<helmrelease-name>",
        ALLOW,
    ),
    (
        "docs-extracted/fluxcd+helm-controller/docs__spec__v2__helmreleases__L1775-1781__HelmRelease.yaml",
        "HelmRelease",
        "<helmrelease-name>",
        MALFORMED,
    ),
    (
        "docs-extracted/fluxcd+helm-controller/docs__spec__v2__helmreleases__L1990-2032__HelmRelease.yaml",
        "HelmRelease",
        "<release-name>",
        MALFORMED,
    ),
    (
        "docs-extracted/fluxcd+helm-controller/docs__spec__v2__helmreleases__L2049-2062__HelmRelease.yaml",
        "HelmRelease",
        "<release-name>",
        MALFORMED,
    ),
    (
        "docs-extracted/fluxcd+helm-controller/docs__spec__v2__helmreleases__L241-267__HelmRelease-OCIRepository.yaml",
        "OCIRepository",
        "podinfo",
        MISSING,
    ),
    (
        "docs-extracted/fluxcd+helm-controller/docs__spec__v2__helmreleases__L241-267__HelmRelease-OCIRepository.yaml",
        "HelmRelease",
        "podinfo",
        ALLOW,
    ),
    (
        "docs-extracted/fluxcd+helm-controller/docs__spec__v2__helmreleases__L273-300__HelmChart-HelmRelease.yaml",
        "HelmChart",
        "podinfo",
        UNKNOWN_REPO,
    ),
    (
        "docs-extracted/fluxcd+helm-controller/docs__spec__v2__helmreleases__L273-300__HelmChart-HelmRelease.yaml",
        "HelmRelease",
        "podinfo",
        ALLOW,
    ),
    (
        "docs-extracted/fluxcd+helm-controller/docs__spec__v2__helmreleases__L385-402__HelmRelease.yaml",
        "HelmRelease",
        "backend",
        MALFORMED,
    ),
    (
        "docs-extracted/fluxcd+helm-controller/docs__spec__v2__helmreleases__L385-402__HelmRelease.yaml",
        "HelmRelease",
        "frontend",
        ALLOW,
    ),
    (
        "docs-extracted/fluxcd+helm-controller/docs__spec__v2__helmreleases__L419-445__HelmRelease.yaml",
        "HelmRelease",
        "backend",
        ALLOW,
    ),
    (
        "docs-extracted/fluxcd+helm-controller/docs__spec__v2__helmreleases__L419-445__HelmRelease.yaml",
        "HelmRelease",
        "frontend",
        ALLOW,
    ),
    (
        "docs-extracted/fluxcd+source-controller/docs__spec__v1__helmcharts__L15-28__HelmChart.yaml",
        "HelmChart",
        "podinfo",
        UNKNOWN_REPO,
    ),
    (
        "docs-extracted/fluxcd+source-controller/docs__spec__v1__helmcharts__L280-289__HelmChart.yaml",
        "HelmChart",
        "podinfo",
        ALLOW,
    ),
    (
        "docs-extracted/fluxcd+source-controller/docs__spec__v1__helmcharts__L343-359__HelmChart.yaml",
        "HelmChart",
        "podinfo",
        ALLOW,
    ),
    (
        "docs-extracted/fluxcd+source-controller/docs__spec__v1__helmcharts__L363-371__HelmRepository.yaml",
        "HelmRepository",
        "podinfo",
        NOT_JUDGED,
    ),
    (
        "docs-extracted/fluxcd+source-controller/docs__spec__v1__helmcharts__L386-395__HelmChart.yaml",
        "HelmChart",
        "podinfo",
        ALLOW,
    ),
    (
        "docs-extracted/fluxcd+source-controller/docs__spec__v1__helmcharts__L466-472__HelmChart.yaml",
        "HelmChart",
        "<chart-name>",
        ALLOW,
    ),
    (
        "docs-extracted/fluxcd+source-controller/docs__spec__v1__helmcharts__L491-497__HelmChart.yaml",
        "HelmChart",
        "<chart-name>",
        MALFORMED,
    ),
    (
        "docs-extracted/fluxcd+source-controller/docs__spec__v1__helmcharts__L639-651__HelmChart.yaml",
        "HelmChart",
        "<chart-name>",
        MALFORMED,
    ),
    (
        "docs-extracted/fluxcd+source-controller/docs__spec__v1__helmcharts__L686-698__HelmChart.yaml",
        "HelmChart",
        "<chart-name>",
        MALFORMED,
    ),
    (
        "docs-extracted/fluxcd+source-controller/docs__spec__v1__helmrepositories__L100-109__HelmRepository.yaml",
        "HelmRepository",
        "podinfo",
        NOT_JUDGED,
    ),
    (
        "docs-extracted/fluxcd+source-controller/docs__spec__v1__helmrepositories__L21-29__HelmRepository.yaml",
        "HelmRepository",
        "podinfo",
        NOT_JUDGED,
    ),
    (
        "docs-extracted/fluxcd+source-controller/docs__spec__v1__helmrepositories__L382-401__HelmRepository-Secret.yaml",
        "HelmRepository",
        "example",
        NOT_JUDGED,
    ),
    (
        "docs-extracted/fluxcd+source-controller/docs__spec__v1__helmrepositories__L407-427__HelmRepository-Secret.yaml",
        "HelmRepository",
        "podinfo",
        NOT_JUDGED,
    ),
    (
        "docs-extracted/fluxcd+source-controller/docs__spec__v1__helmrepositories__L473-495__HelmRepository-Secret.yaml",
        "HelmRepository",
        "example",
        NOT_JUDGED,
    ),
    (
        "docs-extracted/fluxcd+source-controller/docs__spec__v1__helmrepositories__L570-576__HelmRepository.yaml",
        "HelmRepository",
        "<repository-name>",
        NOT_JUDGED,
    ),
    (
        "docs-extracted/fluxcd+source-controller/docs__spec__v1__helmrepositories__L601-607__HelmRepository.yaml",
        "HelmRepository",
        "<repository-name>",
        NOT_JUDGED,
    ),
    (
        "docs-extracted/fluxcd+source-controller/docs__spec__v1__helmrepositories__L714-726__HelmRepository.yaml",
        "HelmRepository",
        "<repository-name>",
        NOT_JUDGED,
    ),
    (
        "docs-extracted/fluxcd+source-controller/docs__spec__v1__ocirepositories__L15-25__OCIRepository.yaml",
        "OCIRepository",
        "podinfo",
        MISSING,
    ),
    (
        "docs-extracted/fluxcd+source-controller/docs__spec__v1__ocirepositories__L317-339__OCIRepository-Secret.yaml",
        "OCIRepository",
        "example",
        MISSING,
    ),
    (
        "docs-extracted/fluxcd+source-controller/docs__spec__v1__ocirepositories__L428-435__OCIRepository.yaml",
        "OCIRepository",
        "<repository-name>",
        MISSING,
    ),
    (
        "docs-extracted/fluxcd+source-controller/docs__spec__v1__ocirepositories__L445-453__OCIRepository.yaml",
        "OCIRepository",
        "<repository-name>",
        MISSING,
    ),
    (
        "docs-extracted/fluxcd+source-controller/docs__spec__v1__ocirepositories__L469-482__OCIRepository.yaml",
        "OCIRepository",
        "podinfo",
        MISSING,
    ),
    (
        "docs-extracted/fluxcd+source-controller/docs__spec__v1__ocirepositories__L494-501__OCIRepository.yaml",
        "OCIRepository",
        "<repository-name>",
        MISSING,
    ),
    (
        "docs-extracted/fluxcd+source-controller/docs__spec__v1__ocirepositories__L515-523__OCIRepository.yaml",
        "OCIRepository",
        "<repository-name>",
        MISSING,
    ),
    (
        "docs-extracted/fluxcd+source-controller/docs__spec__v1__ocirepositories__L567-576__OCIRepository.yaml",
        "OCIRepository",
        "<repository-name>",
        ALLOW,
    ),
    (
        "docs-extracted/fluxcd+source-controller/docs__spec__v1__ocirepositories__L630-641__OCIRepository.yaml",
        "OCIRepository",
        "podinfo",
        ALLOW,
    ),
    (
        "docs-extracted/fluxcd+source-controller/docs__spec__v1__ocirepositories__L687-700__OCIRepository.yaml",
        "OCIRepository",
        "podinfo",
        BROAD,
    ),
    (
        "docs-extracted/fluxcd+source-controller/docs__spec__v1__ocirepositories__L709-718__OCIRepository.yaml",
        "OCIRepository",
        "<repository-name>",
        ALLOW,
    ),
    (
        "docs-extracted/fluxcd+source-controller/docs__spec__v1__ocirepositories__L770-783__OCIRepository.yaml",
        "OCIRepository",
        "<repository-name>",
        MISSING,
    ),
    (
        "docs-extracted/fluxcd+source-controller/docs__spec__v1__ocirepositories__L837-843__OCIRepository.yaml",
        "OCIRepository",
        "<repository-name>",
        MISSING,
    ),
    (
        "docs-extracted/fluxcd+source-controller/docs__spec__v1__ocirepositories__L868-874__OCIRepository.yaml",
        "OCIRepository",
        "<repository-name>",
        MALFORMED,
    ),
    (
        "docs-extracted/fluxcd+source-controller/docs__spec__v1__ocirepositories__L984-999__OCIRepository.yaml",
        "OCIRepository",
        "<repository-name>",
        MALFORMED,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__blog__2022-09-01-manage-kyverno-policies-as-ocirepositories__index__L119-156__Kustomization-OCIRepository.yaml",
        "OCIRepository",
        "kyverno-policies",
        MISSING,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__blog__2022-11-11-prove-the-authenticity-of-helm-charts__index__L31-40__HelmRepository.yaml",
        "HelmRepository",
        "podinfo",
        NOT_JUDGED,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__blog__2024-05-13-announcing-flux-v2.3.0__index__L55-81__HelmRelease-OCIRepository.yaml",
        "HelmRelease",
        "metrics-server",
        ALLOW,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__blog__2024-05-13-announcing-flux-v2.3.0__index__L55-81__HelmRelease-OCIRepository.yaml",
        "OCIRepository",
        "metrics-server",
        MISSING,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__blog__2025-09-29-announcing-flux-v2.7.0__index__L201-237__ArtifactGenerator-HelmRelease.yaml",
        "HelmRelease",
        "podinfo",
        ALLOW,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__cheatsheets__oci-artifacts__L198-207__OCIRepository.yaml",
        "OCIRepository",
        "podinfo",
        MISSING,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__cheatsheets__oci-artifacts__L261-270__OCIRepository.yaml",
        "OCIRepository",
        "podinfo",
        MISSING,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__cheatsheets__oci-artifacts__L276-285__OCIRepository.yaml",
        "OCIRepository",
        "podinfo",
        MISSING,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__cheatsheets__oci-artifacts__L318-328__OCIRepository.yaml",
        "OCIRepository",
        "podinfo",
        MISSING,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__cheatsheets__oci-artifacts__L376-389__OCIRepository.yaml",
        "OCIRepository",
        "podinfo",
        ALLOW,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__cheatsheets__oci-artifacts__L501-514__OCIRepository.yaml",
        "OCIRepository",
        "app-manifests",
        ALLOW,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__cheatsheets__oci-artifacts__L65-88__Kustomization-OCIRepository.yaml",
        "OCIRepository",
        "podinfo",
        MISSING,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__cheatsheets__oci-artifacts__L732-741__OCIRepository.yaml",
        "OCIRepository",
        "podinfo",
        MISSING,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__cheatsheets__oci-artifacts__L778-790__OCIRepository.yaml",
        "OCIRepository",
        "podinfo",
        MISSING,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__cheatsheets__oci-artifacts__L99-125__HelmRelease-OCIRepository.yaml",
        "OCIRepository",
        "podinfo",
        MISSING,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__cheatsheets__oci-artifacts__L99-125__HelmRelease-OCIRepository.yaml",
        "HelmRelease",
        "podinfo",
        ALLOW,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__faq__L257-266__OCIRepository.yaml",
        "OCIRepository",
        "podinfo",
        MISSING,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__faq__L317-343__HelmRelease-OCIRepository.yaml",
        "OCIRepository",
        "metrics-server",
        MISSING,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__faq__L317-343__HelmRelease-OCIRepository.yaml",
        "HelmRelease",
        "metrics-server",
        ALLOW,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__faq__L475-491__HelmRelease.yaml",
        "HelmRelease",
        "podinfo",
        UNKNOWN_REPO,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__faq__L529-546__HelmRelease.yaml",
        "HelmRelease",
        "podinfo",
        UNKNOWN_REPO,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__guides__helmreleases__L167-178__OCIRepository.yaml",
        "OCIRepository",
        "podinfo",
        MISSING,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__guides__helmreleases__L212-229__HelmRelease.yaml",
        "HelmRelease",
        "podinfo",
        ALLOW,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__guides__helmreleases__L264-275__HelmRelease.yaml",
        "HelmRelease",
        "podinfo",
        ALLOW,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__guides__helmreleases__L281-292__HelmRelease.yaml",
        "HelmRelease",
        "podinfo",
        ALLOW,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__guides__helmreleases__L355-371__HelmRelease.yaml",
        "HelmRelease",
        "podinfo",
        UNKNOWN_REPO,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__guides__helmreleases__L462-479__HelmRelease.yaml",
        "HelmRelease",
        "mongodb",
        UNKNOWN_REPO,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__guides__helmreleases__L47-54__HelmRepository.yaml",
        "HelmRepository",
        "podinfo",
        NOT_JUDGED,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__guides__helmreleases__L599-610__HelmChart.yaml",
        "HelmChart",
        "podinfo",
        ALLOW,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__guides__helmreleases__L78-96__HelmRepository-Secret.yaml",
        "HelmRepository",
        "podinfo",
        NOT_JUDGED,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__use-cases__helm__L192-210__HelmRelease.yaml",
        "HelmRelease",
        "my-release",
        ALLOW,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__use-cases__helm__L217-238__HelmRelease.yaml",
        "HelmRelease",
        "my-release",
        ALLOW,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__use-cases__helm__L259-279__GitRepository-OCIRepository.yaml",
        "OCIRepository",
        "podinfo-chart",
        MISSING,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__use-cases__helm__L323-333__HelmRelease.yaml",
        "HelmRelease",
        "podinfo",
        ALLOW,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__use-cases__helm__L69-77__HelmRepository.yaml",
        "HelmRepository",
        "traefik",
        NOT_JUDGED,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__use-cases__helm__L81-95__HelmRelease.yaml",
        "HelmRelease",
        "my-traefik",
        UNKNOWN_REPO,
    ),
    (
        "fluxcd+flux2-hub-spoke-example/clusters/production/apps/podinfo-values.yaml",
        "HelmRelease",
        "podinfo",
        ALLOW,
    ),
    (
        "fluxcd+flux2-hub-spoke-example/clusters/staging/apps/podinfo-values.yaml",
        "HelmRelease",
        "podinfo",
        ALLOW,
    ),
    (
        "fluxcd+flux2-hub-spoke-example/deploy/apps/podinfo.yaml",
        "HelmRepository",
        "podinfo",
        OCI_CHARTS_UNVERIFIED,
    ),
    (
        "fluxcd+flux2-hub-spoke-example/deploy/apps/podinfo.yaml",
        "HelmRelease",
        "podinfo",
        TEMPLATE_MISSING,
    ),
    (
        "fluxcd+flux2-hub-spoke-example/deploy/infra-controllers/cert-manager.yaml",
        "HelmRepository",
        "cert-manager",
        NOT_JUDGED,
    ),
    (
        "fluxcd+flux2-hub-spoke-example/deploy/infra-controllers/cert-manager.yaml",
        "HelmRelease",
        "cert-manager",
        ALLOW,
    ),
    (
        "fluxcd+flux2-hub-spoke-example/deploy/infra-controllers/ingress-nginx.yaml",
        "HelmRepository",
        "ingress-nginx",
        NOT_JUDGED,
    ),
    (
        "fluxcd+flux2-hub-spoke-example/deploy/infra-controllers/ingress-nginx.yaml",
        "HelmRelease",
        "ingress-nginx",
        ALLOW,
    ),
    (
        "fluxcd+flux2-kustomize-helm-example/apps/base/podinfo/release.yaml",
        "HelmRelease",
        "podinfo",
        ALLOW,
    ),
    (
        "fluxcd+flux2-kustomize-helm-example/apps/base/podinfo/repository.yaml",
        "HelmRepository",
        "podinfo",
        NOT_JUDGED,
    ),
    (
        "fluxcd+flux2-kustomize-helm-example/apps/production/podinfo-values.yaml",
        "HelmRelease",
        "podinfo",
        ALLOW,
    ),
    (
        "fluxcd+flux2-kustomize-helm-example/apps/staging/podinfo-values.yaml",
        "HelmRelease",
        "podinfo",
        ALLOW,
    ),
    (
        "fluxcd+flux2-kustomize-helm-example/infrastructure/controllers/cert-manager.yaml",
        "OCIRepository",
        "cert-manager",
        MISSING,
    ),
    (
        "fluxcd+flux2-kustomize-helm-example/infrastructure/controllers/cert-manager.yaml",
        "HelmRelease",
        "cert-manager",
        ALLOW,
    ),
    (
        "fluxcd+flux2-kustomize-helm-example/infrastructure/controllers/envoy-gateway.yaml",
        "OCIRepository",
        "gateway-helm",
        MISSING,
    ),
    (
        "fluxcd+flux2-kustomize-helm-example/infrastructure/controllers/envoy-gateway.yaml",
        "HelmRelease",
        "envoy-gateway",
        ALLOW,
    ),
    (
        "fluxcd+flux2-multi-tenancy/infrastructure/kyverno/source.yaml",
        "OCIRepository",
        "kyverno-controller",
        NO_IDENTITY,
    ),
    (
        "fluxcd+flux2/cmd/flux/testdata/oci/export.golden",
        "OCIRepository",
        "podinfo",
        MISSING,
    ),
    (
        "fluxcd+flux2/cmd/flux/testdata/oci/export_with_complete_verification.golden",
        "OCIRepository",
        "podinfo",
        BROAD,
    ),
    (
        "fluxcd+flux2/cmd/flux/testdata/oci/export_with_issuer.golden",
        "OCIRepository",
        "podinfo",
        BROAD,
    ),
    (
        "fluxcd+flux2/cmd/flux/testdata/oci/export_with_layer_selector.golden",
        "OCIRepository",
        "podinfo",
        MISSING,
    ),
    (
        "fluxcd+flux2/cmd/flux/testdata/oci/export_with_secret.golden",
        "OCIRepository",
        "podinfo",
        MISSING,
    ),
    (
        "fluxcd+flux2/cmd/flux/testdata/oci/export_with_subject.golden",
        "OCIRepository",
        "podinfo",
        BROAD,
    ),
    (
        "fluxcd+flux2/cmd/flux/testdata/oci/export_with_verify_secret.golden",
        "OCIRepository",
        "podinfo",
        ALLOW,
    ),
    (
        "fluxcd+source-controller/config/samples/source_v1_helmchart_gitrepository.yaml",
        "HelmChart",
        "helmchart-git-sample",
        ALLOW,
    ),
    (
        "fluxcd+source-controller/config/samples/source_v1_helmchart_helmrepository-oci.yaml",
        "HelmChart",
        "helmchart-sample-oci",
        MISSING,
    ),
    (
        "fluxcd+source-controller/config/samples/source_v1_helmchart_helmrepository.yaml",
        "HelmChart",
        "helmchart-sample",
        ALLOW,
    ),
    (
        "fluxcd+source-controller/config/samples/source_v1_helmrepository-oci.yaml",
        "HelmRepository",
        "helmrepository-sample-oci",
        OCI_CHARTS_UNVERIFIED,
    ),
    (
        "fluxcd+source-controller/config/samples/source_v1_helmrepository.yaml",
        "HelmRepository",
        "helmrepository-sample",
        NOT_JUDGED,
    ),
    (
        "fluxcd+source-controller/config/samples/source_v1_ocirepository.yaml",
        "OCIRepository",
        "ocirepository-sample",
        MISSING,
    ),
    (
        "fluxcd+source-controller/config/testdata/helmchart-from-bucket/source.yaml",
        "HelmChart",
        "helmchart-bucket",
        ALLOW,
    ),
    (
        "fluxcd+source-controller/config/testdata/helmchart-from-oci/cosign-v3.yaml",
        "HelmRepository",
        "podinfo-cosign-v3",
        NOT_JUDGED,
    ),
    (
        "fluxcd+source-controller/config/testdata/helmchart-from-oci/cosign-v3.yaml",
        "HelmChart",
        "podinfo-cosign-v3-keyless",
        ALLOW,
    ),
    (
        "fluxcd+source-controller/config/testdata/helmchart-from-oci/notation.yaml",
        "HelmRepository",
        "podinfo-notation",
        NOT_JUDGED,
    ),
    (
        "fluxcd+source-controller/config/testdata/helmchart-from-oci/notation.yaml",
        "HelmChart",
        "podinfo-notation",
        ALLOW,
    ),
    (
        "fluxcd+source-controller/config/testdata/helmchart-from-oci/source.yaml",
        "HelmRepository",
        "podinfo",
        OCI_CHARTS_UNVERIFIED,
    ),
    (
        "fluxcd+source-controller/config/testdata/helmchart-from-oci/source.yaml",
        "HelmChart",
        "podinfo",
        MISSING,
    ),
    (
        "fluxcd+source-controller/config/testdata/helmchart-from-oci/source.yaml",
        "HelmChart",
        "podinfo-keyless",
        NO_IDENTITY,
    ),
    (
        "fluxcd+source-controller/config/testdata/helmchart-valuesfile/helmchart_gitrepository.yaml",
        "HelmChart",
        "podinfo-git",
        ALLOW,
    ),
    (
        "fluxcd+source-controller/config/testdata/helmchart-valuesfile/helmchart_helmrepository.yaml",
        "HelmChart",
        "podinfo",
        ALLOW,
    ),
    (
        "fluxcd+source-controller/config/testdata/helmchart-valuesfile/helmrepository.yaml",
        "HelmRepository",
        "podinfo",
        NOT_JUDGED,
    ),
    (
        "fluxcd+source-controller/config/testdata/ocirepository/signed-with-cosign-v2-key.yaml",
        "OCIRepository",
        "podinfo-deploy-signed-with-v2-key",
        ALLOW,
    ),
    (
        "fluxcd+source-controller/config/testdata/ocirepository/signed-with-cosign-v2-keyless.yaml",
        "OCIRepository",
        "podinfo-deploy-signed-with-v2-keyless",
        NO_IDENTITY,
    ),
    (
        "fluxcd+source-controller/config/testdata/ocirepository/signed-with-cosign-v3-key.yaml",
        "OCIRepository",
        "podinfo-deploy-signed-with-v3-key",
        ALLOW,
    ),
    (
        "fluxcd+source-controller/config/testdata/ocirepository/signed-with-cosign-v3-keyless.yaml",
        "OCIRepository",
        "podinfo-deploy-signed-with-v3-keyless",
        ALLOW,
    ),
    (
        "fluxcd+source-controller/config/testdata/ocirepository/signed-with-notation.yaml",
        "OCIRepository",
        "podinfo-deploy-signed-with-notation",
        ALLOW,
    ),
    (
        "fluxcd+source-controller@v1.5.0/config/samples/source_v1beta2_ocirepository.yaml",
        "OCIRepository",
        "ocirepository-sample",
        MISSING,
    ),
    (
        "fluxcd+source-controller@v1.5.0/config/testdata/ocirepository/signed-with-key.yaml",
        "OCIRepository",
        "podinfo-deploy-signed-with-key",
        ALLOW,
    ),
    (
        "fluxcd+source-controller@v1.5.0/config/testdata/ocirepository/signed-with-keyless.yaml",
        "OCIRepository",
        "podinfo-deploy-signed-with-keyless",
        NO_IDENTITY,
    ),
    (
        "fluxcd+source-controller@v1.5.0/config/testdata/ocirepository/signed-with-notation.yaml",
        "OCIRepository",
        "podinfo-deploy-signed-with-notation",
        ALLOW,
    ),
    (
        "stefanprodan+flux-local-dev/kubernetes/apps/podinfo.yaml",
        "HelmRepository",
        "podinfo",
        OCI_CHARTS_UNVERIFIED,
    ),
    (
        "stefanprodan+flux-local-dev/kubernetes/apps/podinfo.yaml",
        "HelmRelease",
        "podinfo",
        TEMPLATE_MISSING,
    ),
    (
        "stefanprodan+flux-local-dev/kubernetes/clusters/local/apps.yaml",
        "OCIRepository",
        "apps-source",
        INSECURE_UNVERIFIED,
    ),
    (
        "stefanprodan+flux-local-dev/kubernetes/clusters/local/flux-system/cluster-source.yaml",
        "OCIRepository",
        "cluster-source",
        INSECURE_UNVERIFIED,
    ),
    (
        "stefanprodan+flux-local-dev/kubernetes/clusters/local/flux-system/flux-source.yaml",
        "OCIRepository",
        "flux-source",
        NO_IDENTITY,
    ),
    (
        "stefanprodan+flux-local-dev/kubernetes/clusters/local/infra.yaml",
        "OCIRepository",
        "infra-source",
        INSECURE_UNVERIFIED,
    ),
    (
        "stefanprodan+flux-local-dev/kubernetes/infra/controllers/cert-manager.yaml",
        "HelmRepository",
        "cert-manager",
        NOT_JUDGED,
    ),
    (
        "stefanprodan+flux-local-dev/kubernetes/infra/controllers/cert-manager.yaml",
        "HelmRelease",
        "cert-manager",
        ALLOW,
    ),
    (
        "stefanprodan+flux-local-dev/kubernetes/infra/controllers/ingress-nginx.yaml",
        "HelmRepository",
        "ingress-nginx",
        NOT_JUDGED,
    ),
    (
        "stefanprodan+flux-local-dev/kubernetes/infra/controllers/ingress-nginx.yaml",
        "HelmRelease",
        "ingress-nginx",
        ALLOW,
    ),
    (
        "stefanprodan+flux-local-dev/kubernetes/infra/controllers/metrics-server.yaml",
        "HelmRepository",
        "metrics-server",
        NOT_JUDGED,
    ),
    (
        "stefanprodan+flux-local-dev/kubernetes/infra/controllers/metrics-server.yaml",
        "HelmRelease",
        "metrics-server",
        ALLOW,
    ),
    (
        "stefanprodan+flux-local-dev/kubernetes/infra/controllers/prometheus-operator.yaml",
        "HelmRepository",
        "prometheus-community",
        NOT_JUDGED,
    ),
    (
        "stefanprodan+flux-local-dev/kubernetes/infra/controllers/prometheus-operator.yaml",
        "HelmRelease",
        "kube-prometheus-stack",
        ALLOW,
    ),
    (
        "stefanprodan+flux-local-dev/kubernetes/infra/controllers/weave-gitops.yaml",
        "HelmRepository",
        "weave-gitops",
        OCI_CHARTS_UNVERIFIED,
    ),
    (
        "stefanprodan+flux-local-dev/kubernetes/infra/controllers/weave-gitops.yaml",
        "HelmRelease",
        "weave-gitops",
        TEMPLATE_MISSING,
    ),
];

fn corpus_objects() -> Vec<(String, Value)> {
    let index = std::fs::read_to_string(format!("{CORPUS}/INDEX.tsv")).expect("corpus INDEX.tsv");
    let mut out = Vec::new();
    for row in index.lines().skip(1) {
        let columns: Vec<&str> = row.split('\t').collect();
        let (path, objects) = (columns[0], columns.get(2).copied().unwrap_or(""));
        // Go-template files have no objects listed in the index.
        let relevant = [
            "OCIRepository",
            "HelmChart",
            "HelmRepository",
            "HelmRelease",
        ]
        .iter()
        .any(|kind| objects.contains(kind));
        let Some(relative) = path.strip_prefix("flux/") else {
            continue;
        };
        if !relevant {
            continue;
        }
        let text = std::fs::read_to_string(format!("{CORPUS}/{path}")).expect("corpus file");
        for document in serde_yaml_ng::Deserializer::from_str(&text) {
            let value = Value::deserialize(document).expect("corpus YAML parses");
            out.push((relative.to_string(), value));
        }
    }
    out
}

fn scope_of(path: &str) -> String {
    if path.starts_with("docs-extracted/") {
        path.to_string()
    } else {
        Path::new(path)
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    }
}

/// The table holds this policy's decisions: the other policies judge the same objects with
/// tables of their own (tests/tenant_lockdown.rs, tests/oci_version_pinning.rs).
fn this_policy_only() -> Engine {
    Engine::with_policies(
        vec![Box::new(SignedOciSources::default())],
        Config::default(),
        None,
    )
}

#[test]
fn every_flux_object_of_the_corpus_gets_its_hand_checked_decision() {
    let objects = corpus_objects();
    let kind_of = |v: &Value| v["kind"].as_str().unwrap_or("").to_string();
    let judged_kinds = [
        "OCIRepository",
        "HelmChart",
        "HelmRepository",
        "HelmRelease",
    ];
    // The cluster view of each scope: its HelmRepositories, HelmCharts and HelmReleases.
    let mut views: BTreeMap<String, MemoryView> = BTreeMap::new();
    for (path, object) in &objects {
        // Two documentation snippets elide the spec (`spec:` with nothing under it): they
        // describe no repository a chart could come from.
        let kind = kind_of(object);
        if ["HelmRepository", "HelmChart", "HelmRelease"].contains(&kind.as_str())
            && object["spec"].is_object()
        {
            views
                .entry(scope_of(path))
                .or_default()
                .apply(object)
                .expect("applies");
        }
    }
    let engine = this_policy_only();
    let empty = MemoryView::new();
    let mut seen = BTreeSet::new();
    for (path, object) in &objects {
        let kind = kind_of(object);
        if !judged_kinds.contains(&kind.as_str()) {
            continue;
        }
        let name = object["metadata"]["name"].as_str().unwrap_or("");
        let Some(&(_, _, _, decision)) = CORPUS_TABLE
            .iter()
            .find(|(p, k, n, _)| *p == path && *k == kind && *n == name)
        else {
            panic!("no decision listed for {kind} {name} in {path}");
        };
        assert!(
            seen.insert((path.clone(), kind.clone(), name.to_string())),
            "{kind} {name} twice in {path}"
        );
        let view = views.get(&scope_of(path)).unwrap_or(&empty);
        let verdict = validate_with(&engine, object, view);
        let context = format!("{kind} {name} in {path}");
        match decision {
            Decision::NotJudged => {
                // A HelmRepository: judged, and clean unless it is OCI and charts of its
                // scope pull from it unverified.
                assert!(
                    verdict.allowed && verdict.outcomes.is_empty(),
                    "{context}: {verdict:#?}"
                );
            }
            Decision::Allow => {
                assert!(
                    verdict.allowed && verdict.outcomes.is_empty(),
                    "{context}: {}",
                    verdict.denial_message()
                );
            }
            Decision::Deny(phrases) => {
                assert!(!verdict.allowed, "{context}: expected a denial");
                let message = verdict.denial_message();
                let namespace = object["metadata"]["namespace"].as_str().unwrap_or("");
                let named = if namespace.is_empty() {
                    format!("{kind} {name}")
                } else {
                    format!("{kind} {namespace}/{name}")
                };
                for phrase in phrases.iter().copied().chain([named.as_str()]) {
                    assert!(
                        message.contains(phrase),
                        "{context}: {phrase:?} not in\n{message}"
                    );
                }
            }
        }
    }
    assert_eq!(
        seen.len(),
        CORPUS_TABLE.len(),
        "the table lists objects the corpus no longer has"
    );
    let oci_repositories = seen.iter().filter(|(_, k, _)| k == "OCIRepository").count();
    assert_eq!(
        oci_repositories, 57,
        "the corpus README counts 57 OCIRepositories"
    );
}

// ---------------------------------------------------------------------------------------
// Requests a real kube-apiserver sent

#[track_caller]
fn check_replay(file: &str, expected: Expected, verdict: &Verdict) {
    match expected {
        Expected::Allowed => {
            assert!(verdict.evaluated.contains(&POLICY), "{file}: not judged");
            assert_decision(file, verdict, common::Decision::Allow);
        }
        Expected::NotJudged => {
            assert!(verdict.allowed, "{file}: {}", verdict.denial_message());
            assert!(!verdict.evaluated.contains(&POLICY), "{file}: judged");
        }
        Expected::Denied(phrases) => {
            assert_decision(file, verdict, common::Decision::Deny(phrases))
        }
    }
}

#[test]
fn api_server_requests_get_their_expected_verdicts() {
    let engine = default_engine();
    let view = MemoryView::new();
    let on_disk: BTreeSet<String> = std::fs::read_dir(admission_fixtures::FIXTURE_DIR)
        .expect("fixtures")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".json") && name.contains("OCIRepository"))
        .collect();
    let listed: BTreeSet<String> = OCI_REPOSITORY_FIXTURES
        .iter()
        .map(|(f, _)| f.to_string())
        .collect();
    assert_eq!(on_disk, listed, "every fixture has an expected verdict");
    for (file, expected) in OCI_REPOSITORY_FIXTURES {
        assert_eq!(admission_fixtures::expected_verdict(file), Some(*expected));
        let body = read_fixture(file);
        let request = admission::decode(&body).expect("a valid review");
        let (verdict, _) = engine.review(Endpoint::Validate, &request, &view);
        check_replay(file, *expected, &verdict);
        // The answer on the wire carries the same decision.
        let response: Value =
            serde_json::from_slice(&fluxgate::engine::verdict::encode(&request.uid, &verdict))
                .expect("json");
        assert_eq!(response["response"]["uid"], request.uid.as_ref());
        assert_eq!(response["response"]["allowed"], verdict.allowed, "{file}");
    }
}

#[test]
fn dry_run_requests_get_the_same_answer() {
    let engine = default_engine();
    let view = MemoryView::new();
    let pairs = [(
        "deny-ocirepo-create__validate-OCIRepository-CREATE.json",
        "deny-ocirepo-create-dryrun-server__2-validate-OCIRepository-CREATE-dryrun.json",
    )];
    for (real, dry) in pairs {
        let (real, dry) = (read_fixture(real), read_fixture(dry));
        let real = admission::decode(&real).expect("review");
        let dry = admission::decode(&dry).expect("review");
        assert!(dry.is_dry_run() && !real.is_dry_run());
        let (a, _) = engine.review(Endpoint::Validate, &real, &view);
        let (b, _) = engine.review(Endpoint::Validate, &dry, &view);
        assert_eq!(
            (a.allowed, a.denial_message()),
            (b.allowed, b.denial_message())
        );
    }
}

/// A CREATE the API server sent, through /mutate and back through /validate with the patched
/// object, as the API server chains them.
#[test]
fn api_server_create_is_mutated_into_an_object_that_passes() {
    let engine = engine(
        r#"
policies:
  signed-oci-sources:
    verifyDefaults:
      - name: podinfo
        match: oci://ghcr.io/stefanprodan/manifests/*
        verify:
          provider: cosign
          matchOIDCIdentity:
            - issuer: '^https://token\.actions\.githubusercontent\.com$'
              subject: '^https://github\.com/stefanprodan/podinfo/\.github/workflows/release\.yml@refs/tags/.*$'
"#,
    );
    let view = MemoryView::new();
    // The first one follows `tag: latest`, which oci-version-pinning denies whatever the
    // signature: the patch can only make it pass this policy.
    for (file, pinned) in [
        (
            "ocirepo-create-client-side-apply__capture-OCIRepository-CREATE.json",
            false,
        ),
        (
            "ocirepo-create-dryrun-server__capture-OCIRepository-CREATE-dryrun.json",
            true,
        ),
        (
            "ocirepo-create-server-side-apply__capture-OCIRepository-CREATE.json",
            true,
        ),
    ] {
        let body = read_fixture(file);
        let request = admission::decode(&body).expect("review");
        let (mutated, _) = engine.review(Endpoint::Mutate, &request, &view);
        assert!(!mutated.patch.is_empty(), "{file}: no patch");
        let mut review: Value = serde_json::from_slice(&body).expect("json");
        json_patch::patch(&mut review["request"]["object"], &mutated.patch).expect("applies");
        assert_eq!(
            review["request"]["object"]["metadata"]["annotations"]["fluxgate.io/verify-default"],
            "podinfo"
        );
        let patched_body = review.to_string();
        let patched: Request<'_> = admission::decode(patched_body.as_bytes()).expect("review");
        let (validated, _) = engine.review(Endpoint::Validate, &patched, &view);
        if pinned {
            check_replay(file, Expected::Allowed, &validated);
        } else {
            assert!(
                validated
                    .outcomes
                    .iter()
                    .all(|o| o.finding.policy != POLICY),
                "{file}: {:#?}",
                validated.outcomes
            );
            assert_denied(&validated, &["[oci-version-pinning]", "`latest`"]);
        }
        let (again, _) = engine.review(Endpoint::Mutate, &patched, &view);
        assert!(
            again.patch.is_empty(),
            "{file}: mutating twice patched again"
        );
    }
}
