//! Policy `oci-version-pinning`: an OCIRepository's `spec.ref` must not let Flux deploy a new
//! major version by itself (GitLab: minor and patch releases automatically, majors by hand).

mod common;

#[path = "support/admission_fixtures.rs"]
mod admission_fixtures;

use std::collections::BTreeSet;

use fluxgate::admission::{self, OwnedObject};
use fluxgate::cluster::MemoryView;
use fluxgate::config::Config;
use fluxgate::engine::verdict::Verdict;
use fluxgate::engine::{Endpoint, Engine};
use fluxgate::finding::{PolicyId, Severity};
use fluxgate::flux::semver::{Constraint, Line, ParseError, Span, Version};
use fluxgate::policy::oci_version_pinning::OciVersionPinning;
use serde::Deserialize;
use serde_json::{Value, json};

use common::{Decision, TestServer, assert_decision, default_engine, engine};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/corpus");
const POLICY: PolicyId = PolicyId::OciVersionPinning;

// ---------------------------------------------------------------------------------------
// Helpers

/// An OCIRepository verified with a cosign key (so that signed-oci-sources has nothing to
/// say) with the given `spec.ref`; `Value::Null` leaves `ref` out.
fn repository(reference: Value) -> Value {
    let mut repo = json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "OCIRepository",
        "metadata": {"name": "app", "namespace": "team-a"},
        "spec": {
            "interval": "5m",
            "url": "oci://registry.gitlab.com/acme/app/manifests",
            "verify": {"provider": "cosign", "secretRef": {"name": "cosign-public-key"}},
        }
    });
    if !reference.is_null() {
        repo["spec"]["ref"] = reference;
    }
    repo
}

fn semver(range: &str) -> Value {
    repository(json!({ "semver": range }))
}

fn tag(tag: &str) -> Value {
    repository(json!({ "tag": tag }))
}

fn validate_with(engine: &Engine, object: &Value) -> Verdict {
    let owned = OwnedObject::from_value(object).expect("a Kubernetes object");
    let request = owned.as_create("uid-test");
    engine
        .review(Endpoint::Validate, &request, &MemoryView::new())
        .0
}

fn validate(object: &Value) -> Verdict {
    validate_with(&default_engine(), object)
}

#[track_caller]
fn assert_denied(verdict: &Verdict, phrases: &[&str]) -> String {
    assert!(!verdict.allowed, "expected a denial, got {verdict:#?}");
    let message = verdict.denial_message();
    assert!(
        message.starts_with("[oci-version-pinning] OCIRepository team-a/app"),
        "{message}"
    );
    for phrase in phrases {
        assert!(message.contains(phrase), "{phrase:?} not in:\n{message}");
    }
    message
}

#[track_caller]
fn assert_clean(verdict: &Verdict) {
    assert!(verdict.allowed, "{}", verdict.denial_message());
    assert!(verdict.evaluated.contains(&POLICY), "{verdict:#?}");
    assert!(verdict.outcomes.is_empty(), "{:#?}", verdict.outcomes);
}

/// The range a denial suggests (`semver: "<range>"`).
fn suggested_range(message: &str) -> String {
    let start = message.find("`semver: \"").expect("a suggested range") + "`semver: \"".len();
    let end = message[start..].find('"').expect("closing quote") + start;
    message[start..end].to_string()
}

// ---------------------------------------------------------------------------------------
// What is allowed

#[test]
fn a_digest_is_allowed() {
    assert_clean(&validate(&repository(json!({
        "digest": "sha256:2f3a1b9c0d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8"
    }))));
}

#[test]
fn a_digest_wins_over_a_range_that_crosses_majors() {
    // source-controller pulls the digest and ignores semver and tag.
    assert_clean(&validate(&repository(json!({
        "digest": "sha256:2f3a1b9c0d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8",
        "semver": "*",
        "tag": "latest",
    }))));
}

#[test]
fn a_digest_that_is_not_one_is_denied() {
    assert_denied(
        &validate(&repository(json!({"digest": "sha256:<SHA-value>"}))),
        &["spec.ref.digest `sha256:<SHA-value>` is not an OCI digest"],
    );
}

#[test]
fn a_release_tag_is_allowed() {
    // A full version, with a prerelease, with build metadata (`+`, or `_` as Helm writes it
    // in OCI tags, where `+` is not allowed).
    for release in [
        "6.5.0",
        "v1.14.4",
        "V1.14.4",
        "1.4.2-rc.1",
        "v1.4.2-rc.1",
        "1.4.2+build.7",
        "1.4.2_build.7",
        "1.25.3-alpine",
    ] {
        assert_clean(&validate(&tag(release)));
    }
}

#[test]
fn a_commit_sha_as_gitlab_ci_writes_it_is_allowed() {
    // $CI_COMMIT_SHA (40 hex digits; 64 in a SHA-256 repository) and $CI_COMMIT_SHORT_SHA (8).
    let sha = "3f2a1b9c0d4e5f60718293a4b5c6d7e8f90a1b2c";
    let sha256 = "3f2a1b9c0d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8";
    for immutable in [sha, &sha[..8], sha256] {
        assert_clean(&validate(&tag(immutable)));
    }
}

#[test]
fn a_tag_not_known_to_stay_on_one_artifact_is_denied() {
    // Nothing says these stay where they are: other SHA spellings, build numbers, branch slugs.
    for moving in [
        "sha-3f2a1b9",
        "3f2a1b9",
        "3F2A1B9C",
        "main-3f2a1b9c",
        "4711",
        "feature-login",
        "stable-alpine",
        "lts",
        "beta",
        "<tag-name>",
    ] {
        assert_denied(
            &validate(&tag(moving)),
            &[
                &format!("spec.ref.tag `{moving}` is a moving tag"),
                "only a full version",
                "$CI_COMMIT_SHORT_SHA",
                "`immutableTags`",
                "`digest: sha256:<hash>`",
                "`flux list artifacts oci://registry.gitlab.com/acme/app/manifests`",
            ],
        );
    }
}

#[test]
fn ranges_within_one_major_version_are_allowed() {
    for range in [
        "~1.2",
        "^1.2.0",
        "1.x",
        ">=1.2.0 <2.0.0",
        ">= 1.2.0, < 2.0.0",
        "1.2.0 - 1.9.9",
        "v1.x",
        "=1.4.2",
        "~>1.4",
        "^1.x",
        ">1.2 <=1.9",
        ">=1.2.0-rc.1 <2.0.0-0",
    ] {
        assert_clean(&validate(&semver(range)));
    }
}

#[test]
fn below_one_caret_stays_within_the_minor_version() {
    // Masterminds: ^0.2 is >=0.2.0 <0.3.0 and ^0.0.3 is >=0.0.3 <0.0.4.
    for range in ["^0.2", "^0.2.3", "^0.0.3", "~0.4", "0.4.x"] {
        assert_clean(&validate(&semver(range)));
    }
}

// ---------------------------------------------------------------------------------------
// What is denied

#[test]
fn no_ref_is_denied_because_flux_follows_latest() {
    for reference in [Value::Null, json!(null), json!({}), json!({"tag": ""})] {
        let verdict = validate(&repository(reference.clone()));
        assert_denied(
            &verdict,
            &["has no spec.ref", "`latest` tag", "manual update", "digest"],
        );
    }
}

#[test]
fn the_latest_tag_is_denied() {
    let message = assert_denied(
        &validate(&tag("latest")),
        &[
            "spec.ref.tag `latest` is a moving tag",
            "a new major version included",
            "minor and patch releases automatically",
            "`semver: \">=1.4.0 <2.0.0\"`",
        ],
    );
    assert!(message.contains("`tag: 1.4.2`"), "{message}");
}

#[test]
fn other_moving_tags_are_denied() {
    for moving in [
        "stable",
        "Latest",
        "main",
        "nightly",
        "edge",
        "local",
        "latest-alpine",
        "V1",
        "1.x",
        "1.2",
    ] {
        assert_denied(&validate(&tag(moving)), &["is a moving tag"]);
    }
}

#[test]
fn a_partial_version_tag_is_moving_and_the_message_suggests_its_line() {
    let message = assert_denied(
        &validate(&tag("v1.25")),
        &["spec.ref.tag `v1.25` is a moving tag"],
    );
    assert_eq!(suggested_range(&message), ">=1.25.0 <2.0.0");
    let message = assert_denied(&validate(&tag("16")), &["`16` is a moving tag"]);
    assert_eq!(suggested_range(&message), ">=16.0.0 <17.0.0");
    for line in ["V1", "1.x", "v1.X", "1.*"] {
        let message = assert_denied(&validate(&tag(line)), &["is a moving tag"]);
        assert_eq!(suggested_range(&message), ">=1.0.0 <2.0.0", "{line}");
    }
    // A variant names no range to suggest.
    let message = assert_denied(&validate(&tag("1.25-alpine")), &["is a moving tag"]);
    assert_eq!(
        suggested_range(&message),
        ">=1.4.0 <2.0.0",
        "the generic example"
    );
}

#[test]
fn a_range_that_crosses_majors_is_denied_with_two_of_its_versions() {
    for (range, low, other) in [
        ("*", "0.0.0", "1.0.0"),
        (">=1.0.0", "1.0.0", "2.0.0"),
        (">1", "2.0.0", "3.0.0"),
        ("1.x || 2.x", "1.0.0", "2.0.0"),
        (">= 6.0.0", "6.0.0", "7.0.0"),
        ("<3.0.0", "0.0.0", "1.0.0"),
        ("~0.0.0", "0.0.0", "1.0.0"),
    ] {
        assert_denied(
            &validate(&semver(range)),
            &[
                &format!("spec.ref.semver `{range}` accepts more than one major version"),
                &format!("for example {low} and {other}"),
                "manual update",
            ],
        );
    }
}

#[test]
fn the_suggested_range_is_derived_from_the_constraint_and_passes() {
    for (range, suggestion) in [
        (">=1.2.0", ">=1.2.0 <2.0.0"),
        (">1", ">=2.0.0 <3.0.0"),
        (">1.2", ">=1.3.0 <2.0.0"),
        ("1.x || 2.x", ">=1.0.0 <2.0.0"),
        ("<3.0.0", ">=2.0.0 <3.0.0"),
        ("<=2.4", ">=2.0.0 <2.5.0"),
        (">=1.2.0-rc.1", ">=1.2.0-rc.1 <2.0.0-0"),
    ] {
        let message = assert_denied(&validate(&semver(range)), &["Bound the range"]);
        assert_eq!(suggested_range(&message), suggestion, "{range}");
        assert_clean(&validate(&semver(suggestion)));
    }
    // No bound to start from: the message says what to write without guessing.
    let message = assert_denied(&validate(&semver("*")), &["the one you deploy today"]);
    assert!(
        message.contains("`semver: \">=1.4.0 <2.0.0\"`"),
        "{message}"
    );
}

#[test]
fn a_range_that_names_a_prerelease_reaches_the_next_majors_prereleases() {
    // With a prerelease in the range, Masterminds accepts prereleases, and 2.0.0-rc.1 < 2.0.0.
    assert_denied(
        &validate(&semver(">=1.2.0-0 <2.0.0")),
        &[
            "for example 1.2.0-0 and 2.0.0-0",
            "end it at `<2.0.0-0`, not `<2.0.0`",
        ],
    );
}

#[test]
fn below_one_a_range_over_several_minors_is_denied() {
    for range in ["^0.x", "0.x", "^0", ">=0.2.0 <1.0.0"] {
        assert_denied(
            &validate(&semver(range)),
            &[
                "more than one minor version below 1.0.0",
                "counts as a major",
            ],
        );
    }
    let message = assert_denied(
        &validate(&semver(">=0.2.0 <1.0.0")),
        &["Bound the range to one minor version"],
    );
    assert_eq!(suggested_range(&message), ">=0.2.0 <0.3.0");
    assert_denied(&validate(&semver("0.x")), &["`semver: \"~0.4\"`"]);
}

#[test]
fn semver_wins_over_tag() {
    assert_denied(
        &validate(&repository(json!({"semver": ">=1.0.0", "tag": "1.0.0"}))),
        &["spec.ref.semver `>=1.0.0`"],
    );
    assert_clean(&validate(&repository(
        json!({"semver": "~1.4", "tag": "latest"}),
    )));
}

#[test]
fn a_range_masterminds_refuses_is_denied_because_flux_cannot_reconcile_it() {
    for (range, masterminds, phrase) in [
        (
            "<semver-range>",
            "improper constraint: <semver-range>",
            "`<semver-range>` is not a comparison",
        ),
        (
            ">=1.0.0<2.0.0",
            "improper constraint: >=1.0.0<2.0.0",
            "must be separated by a space or a comma",
        ),
        ("1.0.0-01", "constraint parser error", "starts with 0"),
        (
            "1 ||",
            "improper constraint: ",
            "an alternative around `||` is empty",
        ),
        (
            "latest",
            "improper constraint: latest",
            "`latest` is not a comparison",
        ),
        (
            "1|2",
            "constraint parser error",
            "a single `|` is not an operator",
        ),
        (
            "1.0 - 2.0 - 3.0",
            "improper constraint: >= 1.0, <= 2.0 - 3.0",
            "rewrites each `A - B` range",
        ),
    ] {
        assert_denied(
            &validate(&semver(range)),
            &[
                &format!("spec.ref.semver `{range}` is not a range Flux can read"),
                &format!("refuses it with `{masterminds}`"),
                "so Flux cannot reconcile this OCIRepository",
                phrase,
            ],
        );
    }
}

#[test]
fn a_range_whose_double_bar_masterminds_reads_into_a_number_is_judged_as_it_reads() {
    // The example: allowed before, as `~1 || 1.0.0 - 1.5.0`; Flux accepts 2.0.0 and up.
    assert_denied(
        &validate(&semver("1||1.0.0 - 1.5.0")),
        &[
            "accepts more than one major version (Masterminds rewrites each `A - B` range before it splits the text at `||`",
            "reads this as `>= 1||1.0.0, <= 1.5.0`",
            "for example 1.0.0 and 2.0.0",
        ],
    );
}

#[test]
fn a_range_that_accepts_nothing_is_denied() {
    assert_denied(
        &validate(&semver(">2.0.0 <1.0.0")),
        &["accepts no version at all"],
    );
}

#[test]
fn a_semver_filter_without_semver_is_reported_as_ignored() {
    let verdict = validate(&repository(
        json!({"tag": "6.5.0", "semverFilter": ".*-rc.*"}),
    ));
    assert!(verdict.allowed, "{}", verdict.denial_message());
    assert_eq!(verdict.outcomes.len(), 1, "{:#?}", verdict.outcomes);
    assert_eq!(verdict.outcomes[0].finding.severity, Severity::Advisory);
    assert!(
        verdict.warnings[0].contains("spec.ref.semverFilter `.*-rc.*` is ignored"),
        "{:?}",
        verdict.warnings
    );
    // Without anything else, Flux follows latest too.
    let verdict = validate(&repository(json!({"semverFilter": ".*-rc.*"})));
    assert_denied(&verdict, &["has no spec.ref"]);
    assert!(verdict.warnings.iter().any(|w| w.contains("is ignored")));
    // With semver it filters, and is no bound: the range alone is judged.
    assert_clean(&validate(&repository(
        json!({"semver": "~1.4", "semverFilter": ".*-rc.*"}),
    )));
    assert_denied(
        &validate(&repository(
            json!({"semver": ">=1.0.0", "semverFilter": "^1\\."}),
        )),
        &["more than one major version"],
    );
}

#[test]
fn an_operator_lists_the_tags_its_registry_keeps_immutable() {
    let custom = engine(
        "policies:\n  oci-version-pinning:\n    immutableTags: ['build-[0-9]+', '[a-z0-9-]+-[0-9a-f]{8}']\n",
    );
    for immutable in ["build-4711", "main-3f2a1b9c", "feature-login-3f2a1b9c"] {
        assert_clean(&validate_with(&custom, &tag(immutable)));
    }
    // Anchored: a pattern matches the whole tag.
    for moving in ["build-4711-rebuilt", "nightly-build-1", "latest", "main"] {
        assert_denied(&validate_with(&custom, &tag(moving)), &["is a moving tag"]);
    }
}

#[test]
fn moving_tags_and_their_pattern_still_deny_what_they_name() {
    // Kept from the denylist: they name tags denied even when they read as versions.
    let custom = engine(
        "policies:\n  oci-version-pinning:\n    movingTags: [rolling, 1.0.0]\n    movingTagPattern: 'env-.*|.*-nightly'\n    immutableTags: ['env-[a-z]+']\n",
    );
    for moving in ["Rolling", "1.0.0", "env-prod", "2.0.0-nightly"] {
        assert_denied(
            &validate_with(&custom, &tag(moving)),
            &[
                "is a moving tag (the oci-version-pinning settings `movingTags`/`movingTagPattern` name it)",
            ],
        );
    }
    assert_clean(&validate_with(&custom, &tag("2.0.0")));
    // By default, the spellings of a version that name a moving channel.
    for moving in ["1.0.0-SNAPSHOT", "2.1.0-latest"] {
        assert_denied(
            &validate(&tag(moving)),
            &["`movingTags`/`movingTagPattern` name it"],
        );
    }
    // An old file that emptied the pattern to let partial versions through loads, and
    // partial versions are moving tags all the same.
    let no_pattern = engine("policies:\n  oci-version-pinning:\n    movingTagPattern: ''\n");
    assert_denied(
        &validate_with(&no_pattern, &tag("v1.25")),
        &["is a moving tag"],
    );
    assert_clean(&validate_with(&no_pattern, &tag("1.0.0-SNAPSHOT")));
}

/// The oci-version-pinning block `fluxgate config default` printed while tags were judged by a
/// denylist: files copied from it keep loading.
const DENYLIST_DEFAULTS: &str = "policies:
  oci-version-pinning:
    movingTags: [latest, stable, edge, main, master, develop, dev, nightly, canary, next,
      head, trunk, snapshot, release, production, prod, staging, test, qa, uat, preview, local]
    movingTagPattern: 'v?[0-9]{1,3}(\\.[0-9]+)?(-[A-Za-z][0-9A-Za-z.]*)?|(.+[-_.])?(?i:latest)([-_.].+)?|.+-SNAPSHOT'
";

#[test]
fn a_file_written_for_the_denylist_still_loads_and_judges_by_the_allowlist() {
    let old = engine(DENYLIST_DEFAULTS);
    for moving in [
        "latest",
        "stable",
        "v1.25",
        "1.0.0-SNAPSHOT",
        "feature-login",
        "lts",
    ] {
        assert_denied(&validate_with(&old, &tag(moving)), &["is a moving tag"]);
    }
    for pinned in ["1.4.2", "v1.4.2-rc.1", "3f2a1b9c"] {
        assert_clean(&validate_with(&old, &tag(pinned)));
    }
}

#[test]
fn bad_settings_are_refused_with_the_key() {
    for (yaml, key) in [
        (
            "policies:\n  oci-version-pinning:\n    movingTagPattern: '(['\n",
            "policies.oci-version-pinning.movingTagPattern",
        ),
        (
            "policies:\n  oci-version-pinning:\n    movingTags: [latest, '']\n",
            "policies.oci-version-pinning.movingTags[1]",
        ),
        (
            "policies:\n  oci-version-pinning:\n    pinned: true\n",
            "pinned",
        ),
        (
            "policies:\n  oci-version-pinning:\n    immutableTags: ['release-.*', '(']\n",
            "policies.oci-version-pinning.immutableTags[1]",
        ),
        (
            "policies:\n  oci-version-pinning:\n    immutableTags: ['']\n",
            "policies.oci-version-pinning.immutableTags[0]",
        ),
        (
            "policies:\n  oci-version-pinning:\n    immutableTags: ['.*']\n",
            "immutableTags[0]: `.*` matches `latest`",
        ),
    ] {
        let err = Config::from_yaml(yaml, "c.yaml")
            .expect_err(yaml)
            .to_string();
        assert!(err.contains(key), "{key} not in {err}");
    }
}

#[test]
fn a_malformed_object_is_denied_with_the_path_of_the_field() {
    let mut repo = tag("6.5.0");
    repo["spec"]["ref"] = json!({"semver": 7});
    let verdict = validate(&repo);
    assert!(!verdict.allowed);
    // signed-oci-sources reads the same typed view, so it says so too.
    assert!(
        verdict.denial_message().contains(
            "[oci-version-pinning] OCIRepository team-a/app is malformed: spec.ref.semver: invalid type"
        ),
        "{}",
        verdict.denial_message()
    );
}

// ---------------------------------------------------------------------------------------
// How the engine applies it

#[test]
fn the_older_v1beta2_api_is_judged_the_same() {
    let mut repo = tag("latest");
    repo["apiVersion"] = json!("source.toolkit.fluxcd.io/v1beta2");
    assert_denied(&validate(&repo), &["is a moving tag"]);
}

fn update_body(new: &Value, old: &Value) -> String {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "uid-update",
            "kind": {"group": "source.toolkit.fluxcd.io", "version": "v1", "kind": "OCIRepository"},
            "resource": {"group": "source.toolkit.fluxcd.io", "version": "v1", "resource": "ocirepositories"},
            "name": "app", "namespace": "team-a", "operation": "UPDATE",
            "userInfo": {"username": "system:serviceaccount:flux-system:kustomize-controller"},
            "object": new, "oldObject": old, "dryRun": false,
        }
    })
    .to_string()
}

fn review_update(new: &Value, old: &Value) -> Verdict {
    let body = update_body(new, old);
    let request = admission::decode(body.as_bytes()).expect("review");
    default_engine()
        .review(Endpoint::Validate, &request, &MemoryView::new())
        .0
}

#[test]
fn an_update_that_leaves_the_ref_alone_is_never_blocked() {
    let old = tag("latest");
    let mut new = old.clone();
    new["metadata"]["labels"] = json!({"team": "a"});
    new["spec"]["interval"] = json!("10m");
    let verdict = review_update(&new, &old);
    assert!(verdict.allowed, "{}", verdict.denial_message());
    assert!(!verdict.evaluated.contains(&POLICY));
}

#[test]
fn an_update_of_the_ref_is_judged() {
    let verdict = review_update(&semver(">=1.0.0"), &tag("1.0.0"));
    assert_denied(&verdict, &["more than one major version"]);
    assert_clean(&review_update(&semver("~1.4"), &tag("latest")));
}

#[test]
fn warn_and_audit_modes_do_not_deny() {
    let warn = engine("policies:\n  oci-version-pinning:\n    mode: warn\n");
    let verdict = validate_with(&warn, &tag("latest"));
    assert!(verdict.allowed);
    assert!(
        verdict
            .warnings
            .iter()
            .any(|w| w.contains("[oci-version-pinning]"))
    );
    let audit = engine("policies:\n  oci-version-pinning:\n    mode: audit\n");
    let verdict = validate_with(&audit, &tag("latest"));
    assert!(verdict.allowed && verdict.warnings.is_empty());
    assert_eq!(verdict.outcomes.len(), 1);
}

// ---------------------------------------------------------------------------------------
// The constraint parser

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bounded {
    Major(u64),
    /// A `0.<minor>` line.
    Zero(u64),
    Crosses,
    Nothing,
    Invalid,
}

fn bounded(text: &str) -> Bounded {
    match Constraint::parse(text) {
        Err(_) => Bounded::Invalid,
        Ok(c) => match c.span() {
            Span::Within(Line::Major(m)) => Bounded::Major(m),
            Span::Within(Line::ZeroMinor(m)) => Bounded::Zero(m),
            Span::Crosses { .. } => Bounded::Crosses,
            Span::Empty => Bounded::Nothing,
        },
    }
}

/// Constraints as Flux users write them, with what every version they accept shares.
const CONSTRAINTS: &[(&str, Bounded)] = &[
    // Operators and wildcards inside one major.
    ("1.2.3", Bounded::Major(1)),
    ("=1.2.3", Bounded::Major(1)),
    ("v1.2.3", Bounded::Major(1)),
    ("1.2", Bounded::Major(1)),
    ("1", Bounded::Major(1)),
    ("1.x", Bounded::Major(1)),
    ("1.X.x", Bounded::Major(1)),
    ("1.*", Bounded::Major(1)),
    ("~1.2", Bounded::Major(1)),
    ("~>1.2.3", Bounded::Major(1)),
    ("~1", Bounded::Major(1)),
    ("^1.2.0", Bounded::Major(1)),
    ("^1.x", Bounded::Major(1)),
    ("^2", Bounded::Major(2)),
    (">=1.2.0 <2.0.0", Bounded::Major(1)),
    (">=1.2.0, <2.0.0", Bounded::Major(1)),
    ("=>1.2.0,<2", Bounded::Major(1)),
    (">= 1.2.0 ,  < 2.0.0", Bounded::Major(1)),
    (">=1.2 <=1.x", Bounded::Major(1)),
    (">1.2 =<1.9", Bounded::Major(1)),
    ("1.2.0 - 1.9.9", Bounded::Major(1)),
    ("1.2 - 1.x", Bounded::Major(1)),
    (">=1.0.0 <3.0.0 !=2.x", Bounded::Major(1)),
    ("1.x || 1.2.3", Bounded::Major(1)),
    (">=6.9.0 <7.0.0-0", Bounded::Major(6)),
    ("^6.9.0", Bounded::Major(6)),
    ("6.2.x", Bounded::Major(6)),
    // Caret below 1.0.0 (Masterminds): the minor, or for 0.0.z the patch, is the limit.
    ("^0.2", Bounded::Zero(2)),
    ("^0.2.3", Bounded::Zero(2)),
    ("^0.0.3", Bounded::Zero(0)),
    ("^0.0", Bounded::Zero(0)),
    ("~0.2.3", Bounded::Zero(2)),
    ("0.2.x", Bounded::Zero(2)),
    // Masterminds quirks, kept: `^*` is `^0.0.0`, `<=*` is `<=0.0.x`.
    ("^*", Bounded::Zero(0)),
    ("<=*", Bounded::Zero(0)),
    // Across majors.
    ("*", Bounded::Crosses),
    ("x", Bounded::Crosses),
    ("~*", Bounded::Crosses),
    ("~0.0.0", Bounded::Crosses),
    (">=1.0.0", Bounded::Crosses),
    (">1", Bounded::Crosses),
    (">1.x", Bounded::Crosses),
    (">=1.2.0 <=2.0.0", Bounded::Crosses),
    (">=1.2.0 <2.0.1", Bounded::Crosses),
    ("<2.0.0", Bounded::Crosses),
    ("1.x || 2.x", Bounded::Crosses),
    ("^1 || ^2", Bounded::Crosses),
    ("!=1.2.3", Bounded::Crosses),
    ("1.2 - 2", Bounded::Crosses),
    ("<=2.x", Bounded::Crosses),
    (">=1.2.0-0 <2.0.0", Bounded::Crosses),
    (">= 1.8.0-rc.0", Bounded::Crosses),
    // Below 1.0.0 across minors, and 0.x into 1.0.0.
    ("^0", Bounded::Crosses),
    ("^0.x", Bounded::Crosses),
    ("0.x", Bounded::Crosses),
    (">=0.2.0 <1.0.0", Bounded::Crosses),
    (">=0.9.0 <1.1.0", Bounded::Crosses),
    // Nothing.
    (">2 <1", Bounded::Nothing),
    ("1.2.3 !=1.2.3", Bounded::Nothing),
    (">1.0.0 <1.0.1", Bounded::Nothing),
    // Not constraints.
    ("", Bounded::Invalid),
    ("   ", Bounded::Invalid),
    ("latest", Bounded::Invalid),
    ("<semver-range>", Bounded::Invalid),
    (">=1.0.0<2.0.0", Bounded::Invalid),
    ("1.2.3.4", Bounded::Invalid),
    ("1.2.3-", Bounded::Invalid),
    ("1.2.3-01", Bounded::Invalid),
    ("1x", Bounded::Invalid),
    ("==1.2.3", Bounded::Invalid),
    ("1 - ", Bounded::Invalid),
    (">=1.0 - 2.0", Bounded::Invalid),
    ("1.0.0,", Bounded::Invalid),
    ("|| 1.0.0", Bounded::Invalid),
    ("99999999999999999999.0.0", Bounded::Invalid),
];

#[test]
fn the_parser_tells_bounded_ranges_from_those_that_cross_majors() {
    for (text, expected) in CONSTRAINTS {
        assert_eq!(bounded(text), *expected, "{text:?}");
    }
}

#[test]
fn masterminds_has_no_limits_and_fluxgate_reads_4_kib() {
    // Masterminds v3.4.0 reads any number of alternatives of any length.
    assert!(Constraint::parse(&vec!["1"; 200].join("||")).is_ok());
    assert!(Constraint::parse(&"1.2.3 ".repeat(120)).is_ok());
    // fluxgate reads 4 KiB and denies longer ranges without quoting them.
    let long = ">=1.2.3 ".repeat(600);
    assert_eq!(
        Constraint::parse(&long).map(|_| ()),
        Err(ParseError::TooLong)
    );
    let message = assert_denied(
        &validate(&semver(&long)),
        &["spec.ref.semver is 4800 bytes long, more than the 4096 fluxgate reads"],
    );
    assert!(message.len() < 1000, "{message}");
}

fn version(text: &str) -> Version {
    Version::parse(text).expect("a version")
}

/// Which versions a constraint accepts, by Masterminds' rules (its README and predicates).
const MATCHES: &[(&str, &str, bool)] = &[
    ("1.2.x", "1.2.9", true),
    ("1.2.x", "1.3.0", false),
    ("~1.2.3", "1.2.2", false),
    ("~1.2.3", "1.2.9", true),
    ("~1.2.3", "1.3.0", false),
    ("^1.2.3", "1.9.0", true),
    ("^1.2.3", "2.0.0", false),
    ("^0.2.3", "0.2.9", true),
    ("^0.2.3", "0.3.0", false),
    ("^0.0.3", "0.0.3", true),
    ("^0.0.3", "0.0.4", false),
    ("^0", "0.9.9", true),
    ("^0", "1.0.0", false),
    ("^*", "0.0.0", true),
    ("^*", "0.0.1", false),
    (">1", "1.9.9", false),
    (">1", "2.0.0", true),
    (">1.2", "1.2.9", false),
    (">1.2", "1.3.0", true),
    ("<=1.2", "1.2.9", true),
    ("<=1.2", "1.3.0", false),
    ("<=*", "0.0.9", true),
    ("<=*", "0.1.0", false),
    ("<1.x", "0.9.9", true),
    ("<1.x", "1.0.0", false),
    ("!=1.x", "1.5.0", false),
    ("!=1.x", "2.0.0", true),
    ("!=*", "0.0.0", false),
    ("!=*", "0.0.1", true),
    ("*", "1.2.3", true),
    ("*", "1.2.3-rc.1", false),
    ("*-0", "1.2.3-rc.1", true),
    (">=1.0.0", "2.0.0-rc.1", false),
    (">=1.0.0-0", "2.0.0-rc.1", true),
    (">=1.0.0-0 <2.0.0", "2.0.0-rc.1", true),
    (">=1.0.0-0 <2.0.0-0", "2.0.0-rc.1", false),
    ("~1.2.3-beta.2", "1.2.4-beta.2", true),
    ("^1.2.0-alpha.0", "1.2.1-alpha.1", true),
    ("1.0 - 2", "2.9.9", true),
    ("1.0 - 2", "3.0.0", false),
    (">=1.1 <2 !=1.2.3 || >3", "1.2.3", false),
    // `>3` is "a major above 3": 3.0.1 is not greater than 3.
    (">=1.1 <2 !=1.2.3 || >3", "3.0.1", false),
    (">=1.1 <2 !=1.2.3 || >3", "4.0.0", true),
    ("v1.x", "1.4.0", true),
];

#[test]
fn the_intervals_accept_what_masterminds_accepts() {
    for (text, v, expected) in MATCHES {
        let constraint = Constraint::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(constraint.matches(&version(v)), *expected, "{text} ~ {v}");
    }
}

#[test]
fn every_suggestion_is_bounded() {
    for (text, expected) in CONSTRAINTS {
        if *expected != Bounded::Crosses {
            continue;
        }
        let constraint = Constraint::parse(text).expect("parses");
        if let Some(suggestion) = constraint.bounded_suggestion() {
            assert!(
                matches!(bounded(&suggestion), Bounded::Major(_) | Bounded::Zero(_)),
                "{text} -> {suggestion}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// The corpus

use Decision::Allow as ALLOW;
const LATEST: Decision = Decision::Deny(&["has no spec.ref", "`latest` tag"]);
const MOVING: Decision = Decision::Deny(&["is a moving tag"]);
const CROSSES: Decision = Decision::Deny(&["accepts more than one major version"]);
const UNREADABLE: Decision =
    Decision::Deny(&["is not a range Flux can read", "Flux cannot reconcile"]);
const NOT_A_DIGEST: Decision = Decision::Deny(&["is not an OCI digest"]);
/// Documentation snippets that show only `status`, or `spec:` with nothing under it.
const MALFORMED: Decision = Decision::Deny(&["is malformed", "spec"]);

/// Every OCIRepository under `corpus/flux/` (path, name), with the decision under the default
/// configuration, checked by hand against the rule. Reading guide: the Flux docs mostly
/// show `latest`, `*` and `>=X` (denied) and the examples' own sources mostly pin a release
/// or a `1.x`-style range (allowed); snippets that show one other field have no ref (Flux
/// follows latest); placeholders like `<semver-range>` are not ranges and `sha256:<SHA-value>`
/// is not a digest; flux-local-dev re-pushes its `local` tag on every change.
const CORPUS_TABLE: &[(&str, &str, Decision)] = &[
    (
        "docs-extracted/fluxcd+helm-controller/docs__spec__v2__helmreleases__L1282-1326__HelmRelease-OCIRepository.yaml",
        "webapp-chart",
        CROSSES,
    ),
    (
        "docs-extracted/fluxcd+helm-controller/docs__spec__v2__helmreleases__L241-267__HelmRelease-OCIRepository.yaml",
        "podinfo",
        CROSSES,
    ),
    (
        "docs-extracted/fluxcd+source-controller/docs__spec__v1__ocirepositories__L15-25__OCIRepository.yaml",
        "podinfo",
        MOVING,
    ),
    (
        "docs-extracted/fluxcd+source-controller/docs__spec__v1__ocirepositories__L317-339__OCIRepository-Secret.yaml",
        "example",
        LATEST,
    ),
    // `<tag-name>` is a placeholder, not a version, a commit SHA or a listed tag: nothing
    // says it stays on one artifact (allowed while tags were judged by a denylist).
    (
        "docs-extracted/fluxcd+source-controller/docs__spec__v1__ocirepositories__L428-435__OCIRepository.yaml",
        "<repository-name>",
        MOVING,
    ),
    (
        "docs-extracted/fluxcd+source-controller/docs__spec__v1__ocirepositories__L445-453__OCIRepository.yaml",
        "<repository-name>",
        UNREADABLE,
    ),
    // `>= 6.1.x-0` with a semverFilter for release candidates: still every major from 6.
    (
        "docs-extracted/fluxcd+source-controller/docs__spec__v1__ocirepositories__L469-482__OCIRepository.yaml",
        "podinfo",
        CROSSES,
    ),
    (
        "docs-extracted/fluxcd+source-controller/docs__spec__v1__ocirepositories__L494-501__OCIRepository.yaml",
        "<repository-name>",
        NOT_A_DIGEST,
    ),
    (
        "docs-extracted/fluxcd+source-controller/docs__spec__v1__ocirepositories__L515-523__OCIRepository.yaml",
        "<repository-name>",
        LATEST,
    ),
    (
        "docs-extracted/fluxcd+source-controller/docs__spec__v1__ocirepositories__L567-576__OCIRepository.yaml",
        "<repository-name>",
        LATEST,
    ),
    (
        "docs-extracted/fluxcd+source-controller/docs__spec__v1__ocirepositories__L630-641__OCIRepository.yaml",
        "podinfo",
        LATEST,
    ),
    (
        "docs-extracted/fluxcd+source-controller/docs__spec__v1__ocirepositories__L687-700__OCIRepository.yaml",
        "podinfo",
        LATEST,
    ),
    (
        "docs-extracted/fluxcd+source-controller/docs__spec__v1__ocirepositories__L709-718__OCIRepository.yaml",
        "<repository-name>",
        LATEST,
    ),
    (
        "docs-extracted/fluxcd+source-controller/docs__spec__v1__ocirepositories__L770-783__OCIRepository.yaml",
        "<repository-name>",
        LATEST,
    ),
    (
        "docs-extracted/fluxcd+source-controller/docs__spec__v1__ocirepositories__L837-843__OCIRepository.yaml",
        "<repository-name>",
        LATEST,
    ),
    (
        "docs-extracted/fluxcd+source-controller/docs__spec__v1__ocirepositories__L868-874__OCIRepository.yaml",
        "<repository-name>",
        MALFORMED,
    ),
    (
        "docs-extracted/fluxcd+source-controller/docs__spec__v1__ocirepositories__L984-999__OCIRepository.yaml",
        "<repository-name>",
        MALFORMED,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__blog__2022-09-01-manage-kyverno-policies-as-ocirepositories__index__L119-156__Kustomization-OCIRepository.yaml",
        "kyverno-policies",
        ALLOW,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__blog__2024-05-13-announcing-flux-v2.3.0__index__L55-81__HelmRelease-OCIRepository.yaml",
        "metrics-server",
        CROSSES,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__cheatsheets__oci-artifacts__L198-207__OCIRepository.yaml",
        "podinfo",
        MOVING,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__cheatsheets__oci-artifacts__L261-270__OCIRepository.yaml",
        "podinfo",
        MOVING,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__cheatsheets__oci-artifacts__L276-285__OCIRepository.yaml",
        "podinfo",
        CROSSES,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__cheatsheets__oci-artifacts__L318-328__OCIRepository.yaml",
        "podinfo",
        LATEST,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__cheatsheets__oci-artifacts__L376-389__OCIRepository.yaml",
        "podinfo",
        CROSSES,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__cheatsheets__oci-artifacts__L501-514__OCIRepository.yaml",
        "app-manifests",
        CROSSES,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__cheatsheets__oci-artifacts__L65-88__Kustomization-OCIRepository.yaml",
        "podinfo",
        MOVING,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__cheatsheets__oci-artifacts__L732-741__OCIRepository.yaml",
        "podinfo",
        ALLOW,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__cheatsheets__oci-artifacts__L778-790__OCIRepository.yaml",
        "podinfo",
        ALLOW,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__cheatsheets__oci-artifacts__L99-125__HelmRelease-OCIRepository.yaml",
        "podinfo",
        CROSSES,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__faq__L257-266__OCIRepository.yaml",
        "podinfo",
        CROSSES,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__faq__L317-343__HelmRelease-OCIRepository.yaml",
        "metrics-server",
        ALLOW,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__guides__helmreleases__L167-178__OCIRepository.yaml",
        "podinfo",
        ALLOW,
    ),
    (
        "docs-extracted/fluxcd+website/content__en__flux__use-cases__helm__L259-279__GitRepository-OCIRepository.yaml",
        "podinfo-chart",
        CROSSES,
    ),
    (
        "fluxcd+flux2-kustomize-helm-example/infrastructure/controllers/cert-manager.yaml",
        "cert-manager",
        ALLOW,
    ),
    // `>= 1.8.0-rc.0`: prereleases included, every major from 1.
    (
        "fluxcd+flux2-kustomize-helm-example/infrastructure/controllers/envoy-gateway.yaml",
        "gateway-helm",
        CROSSES,
    ),
    (
        "fluxcd+flux2-multi-tenancy/infrastructure/kyverno/source.yaml",
        "kyverno-controller",
        ALLOW,
    ),
    (
        "fluxcd+flux2/cmd/flux/testdata/oci/export.golden",
        "podinfo",
        ALLOW,
    ),
    (
        "fluxcd+flux2/cmd/flux/testdata/oci/export_with_complete_verification.golden",
        "podinfo",
        ALLOW,
    ),
    (
        "fluxcd+flux2/cmd/flux/testdata/oci/export_with_issuer.golden",
        "podinfo",
        ALLOW,
    ),
    (
        "fluxcd+flux2/cmd/flux/testdata/oci/export_with_layer_selector.golden",
        "podinfo",
        ALLOW,
    ),
    (
        "fluxcd+flux2/cmd/flux/testdata/oci/export_with_secret.golden",
        "podinfo",
        ALLOW,
    ),
    (
        "fluxcd+flux2/cmd/flux/testdata/oci/export_with_subject.golden",
        "podinfo",
        ALLOW,
    ),
    (
        "fluxcd+flux2/cmd/flux/testdata/oci/export_with_verify_secret.golden",
        "podinfo",
        ALLOW,
    ),
    (
        "fluxcd+source-controller/config/samples/source_v1_ocirepository.yaml",
        "ocirepository-sample",
        ALLOW,
    ),
    (
        "fluxcd+source-controller/config/testdata/ocirepository/signed-with-cosign-v2-key.yaml",
        "podinfo-deploy-signed-with-v2-key",
        ALLOW,
    ),
    (
        "fluxcd+source-controller/config/testdata/ocirepository/signed-with-cosign-v2-keyless.yaml",
        "podinfo-deploy-signed-with-v2-keyless",
        ALLOW,
    ),
    (
        "fluxcd+source-controller/config/testdata/ocirepository/signed-with-cosign-v3-key.yaml",
        "podinfo-deploy-signed-with-v3-key",
        ALLOW,
    ),
    (
        "fluxcd+source-controller/config/testdata/ocirepository/signed-with-cosign-v3-keyless.yaml",
        "podinfo-deploy-signed-with-v3-keyless",
        ALLOW,
    ),
    (
        "fluxcd+source-controller/config/testdata/ocirepository/signed-with-notation.yaml",
        "podinfo-deploy-signed-with-notation",
        ALLOW,
    ),
    (
        "fluxcd+source-controller@v1.5.0/config/samples/source_v1beta2_ocirepository.yaml",
        "ocirepository-sample",
        ALLOW,
    ),
    (
        "fluxcd+source-controller@v1.5.0/config/testdata/ocirepository/signed-with-key.yaml",
        "podinfo-deploy-signed-with-key",
        ALLOW,
    ),
    (
        "fluxcd+source-controller@v1.5.0/config/testdata/ocirepository/signed-with-keyless.yaml",
        "podinfo-deploy-signed-with-keyless",
        ALLOW,
    ),
    (
        "fluxcd+source-controller@v1.5.0/config/testdata/ocirepository/signed-with-notation.yaml",
        "podinfo-deploy-signed-with-notation",
        ALLOW,
    ),
    (
        "stefanprodan+flux-local-dev/kubernetes/clusters/local/apps.yaml",
        "apps-source",
        MOVING,
    ),
    (
        "stefanprodan+flux-local-dev/kubernetes/clusters/local/flux-system/cluster-source.yaml",
        "cluster-source",
        MOVING,
    ),
    (
        "stefanprodan+flux-local-dev/kubernetes/clusters/local/flux-system/flux-source.yaml",
        "flux-source",
        MOVING,
    ),
    (
        "stefanprodan+flux-local-dev/kubernetes/clusters/local/infra.yaml",
        "infra-source",
        MOVING,
    ),
];

/// Every object of the given kinds in the corpus's `flux/` folder, by path relative to it,
/// found through INDEX.tsv.
fn corpus_objects(kinds: &[&str]) -> Vec<(String, Value)> {
    let index = std::fs::read_to_string(format!("{CORPUS}/INDEX.tsv")).expect("corpus INDEX.tsv");
    let mut out = Vec::new();
    for row in index.lines().skip(1) {
        let columns: Vec<&str> = row.split('\t').collect();
        let (path, objects) = (columns[0], columns.get(2).copied().unwrap_or(""));
        let Some(relative) = path.strip_prefix("flux/") else {
            continue;
        };
        if !kinds
            .iter()
            .any(|kind| objects.contains(&format!("/{kind}")))
        {
            continue;
        }
        let text = std::fs::read_to_string(format!("{CORPUS}/{path}")).expect("corpus file");
        for document in serde_yaml_ng::Deserializer::from_str(&text) {
            let value = Value::deserialize(document).expect("corpus YAML parses");
            if kinds.contains(&value["kind"].as_str().unwrap_or("")) {
                out.push((relative.to_string(), value));
            }
        }
    }
    out
}

#[test]
fn every_oci_repository_of_the_corpus_gets_its_hand_checked_decision() {
    // This policy's decisions; signed-oci-sources has a table of its own for the same objects.
    let engine = Engine::with_policies(
        vec![Box::new(OciVersionPinning::default())],
        Config::default(),
        None,
    );
    let mut seen = BTreeSet::new();
    for (path, object) in corpus_objects(&["OCIRepository"]) {
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let Some(&(_, _, decision)) = CORPUS_TABLE
            .iter()
            .find(|(p, n, _)| *p == path && *n == name)
        else {
            panic!("no decision listed for OCIRepository {name} in {path}");
        };
        assert!(
            seen.insert((path.clone(), name.clone())),
            "{name} twice in {path}"
        );
        let verdict = validate_with(&engine, &object);
        let context = format!("OCIRepository {name} in {path}");
        assert_decision(&context, &verdict, decision);
    }
    assert_eq!(
        seen.len(),
        CORPUS_TABLE.len(),
        "the table lists objects the corpus no longer has"
    );
    assert_eq!(
        seen.len(),
        57,
        "the corpus README counts 57 OCIRepositories"
    );
}

// ---------------------------------------------------------------------------------------
// Requests a real kube-apiserver sent

#[test]
fn api_server_creates_are_judged_by_their_ref() {
    let engine = default_engine();
    let view = MemoryView::new();
    for (file, expected) in [
        // `tag: 6.5.0`: a release.
        (
            "ocirepo-create-server-side-apply__capture-OCIRepository-CREATE.json",
            None,
        ),
        (
            "ocirepo-create-dryrun-server__capture-OCIRepository-CREATE-dryrun.json",
            None,
        ),
        // `tag: latest`.
        (
            "ocirepo-create-client-side-apply__capture-OCIRepository-CREATE.json",
            Some("is a moving tag"),
        ),
        (
            "v1beta2-apply-then-delete__capture-OCIRepository-CREATE.json",
            Some("is a moving tag"),
        ),
        // `semver: ">=1.0.0"`, verified with a key: signed-oci-sources passes them.
        (
            "ocirepo-create-with-verify-secretref__capture-OCIRepository-CREATE.json",
            Some("more than one major version"),
        ),
        (
            "ocirepo-create-server-side-apply-as-real-sa-token__capture-OCIRepository-CREATE.json",
            Some("more than one major version"),
        ),
    ] {
        let body = admission_fixtures::read_fixture(file);
        let request = admission::decode(&body).expect("review");
        let (verdict, _) = engine.review(Endpoint::Validate, &request, &view);
        let ours: Vec<_> = verdict
            .outcomes
            .iter()
            .filter(|o| o.finding.policy == POLICY)
            .collect();
        match expected {
            None => assert!(ours.is_empty(), "{file}: {ours:#?}"),
            Some(phrase) => {
                assert_eq!(ours.len(), 1, "{file}: {ours:#?}");
                assert!(
                    ours[0].finding.message.contains(phrase),
                    "{file}: {}",
                    ours[0].finding.message
                );
            }
        }
        if file.contains("verify-secretref") || file.contains("real-sa-token") {
            assert!(
                verdict.outcomes.iter().all(|o| o.finding.policy == POLICY),
                "{file}: only the ref is wrong: {:#?}",
                verdict.outcomes
            );
        }
    }
}

#[test]
fn api_server_updates_that_keep_the_ref_are_not_judged() {
    let engine = default_engine();
    let view = MemoryView::new();
    for (file, _) in admission_fixtures::OCI_REPOSITORY_FIXTURES {
        if !file.contains("UPDATE") {
            continue;
        }
        let body = admission_fixtures::read_fixture(file);
        let request = admission::decode(&body).expect("review");
        let (verdict, _) = engine.review(Endpoint::Validate, &request, &view);
        assert!(
            !verdict.evaluated.contains(&POLICY),
            "{file}: the ref did not change"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Through the HTTPS server

#[tokio::test]
async fn each_case_gets_its_answer_over_https() {
    let server = TestServer::start().await;
    let digest = "sha256:2f3a1b9c0d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8";
    let cases: Vec<(&str, Value, Option<&str>)> = vec![
        ("digest", repository(json!({ "digest": digest })), None),
        ("release tag", tag("1.4.2"), None),
        ("~1.2", semver("~1.2"), None),
        ("^1.2.0", semver("^1.2.0"), None),
        ("1.x", semver("1.x"), None),
        (">=1.2.0 <2.0.0", semver(">=1.2.0 <2.0.0"), None),
        ("^0.2", semver("^0.2"), None),
        ("no ref", repository(Value::Null), Some("has no spec.ref")),
        ("latest", tag("latest"), Some("`latest` is a moving tag")),
        ("stable", tag("stable"), Some("`stable` is a moving tag")),
        (
            "*",
            semver("*"),
            Some("accepts more than one major version"),
        ),
        (
            ">=1.0.0",
            semver(">=1.0.0"),
            Some("`semver: \">=1.0.0 <2.0.0\"`"),
        ),
        (">1", semver(">1"), Some("`semver: \">=2.0.0 <3.0.0\"`")),
        (
            "1.x || 2.x",
            semver("1.x || 2.x"),
            Some("for example 1.0.0 and 2.0.0"),
        ),
        ("^0.x", semver("^0.x"), Some("below 1.0.0")),
        (
            "unreadable",
            semver("newest"),
            Some("is not a range Flux can read"),
        ),
    ];
    let mut client = server.client(true).await;
    for (i, (name, object, denial)) in cases.into_iter().enumerate() {
        let answer = client
            .request(
                "POST",
                "/validate",
                Some("application/json"),
                common::review_of(&object, "CREATE", &format!("u-{i}")),
            )
            .await
            .expect("response")
            .json();
        let response = &answer["response"];
        assert_eq!(response["uid"], format!("u-{i}"));
        match denial {
            None => {
                assert_eq!(response["allowed"], true, "{name}: {answer}");
                assert!(response.get("warnings").is_none(), "{name}: {answer}");
            }
            Some(phrase) => {
                assert_eq!(response["allowed"], false, "{name}: {answer}");
                assert_eq!(response["status"]["code"], 403);
                let message = response["status"]["message"].as_str().unwrap_or("");
                assert!(
                    message.starts_with("[oci-version-pinning] OCIRepository team-a/app"),
                    "{name}: {message}"
                );
                assert!(
                    message.contains(phrase),
                    "{name}: {phrase:?} not in {message}"
                );
            }
        }
    }
    // The advisory travels as a warning on an allowed answer.
    let answer = server
        .post(
            "/validate",
            common::review_of(
                &repository(json!({"tag": "1.4.2", "semverFilter": "^1\\."})),
                "CREATE",
                "u-filter",
            ),
        )
        .await
        .json();
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    let warnings = answer["response"]["warnings"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().is_some_and(|w| w.contains("semverFilter"))),
        "{answer}"
    );
}
