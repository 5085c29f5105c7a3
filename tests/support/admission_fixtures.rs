//! The AdmissionReview bodies a real kube-apiserver v1.28.4 sent (copied into
//! `tests/fixtures/admission/`), and the verdict fluxgate's built-in default configuration
//! must give each on `/validate`. Shared by the engine-level replays and the HTTPS-level ones:
//! include it with `#[path = "support/admission_fixtures.rs"] mod admission_fixtures;`.

#![allow(dead_code)]

/// What `/validate` must answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// Allowed, and signed-oci-sources judged it and found nothing.
    Allowed,
    /// Allowed without judging: DELETE, or an UPDATE that leaves `spec` as it was.
    NotJudged,
    /// Denied; the message contains every one of these phrases.
    Denied(&'static [&'static str]),
}

pub const FIXTURE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/admission");

const MISSING: Expected = Expected::Denied(&[
    "OCIRepository team-a/",
    "spec.verify is missing",
    "matchOIDCIdentity",
]);

const CROSSES_MAJORS: Expected = Expected::Denied(&[
    "[oci-version-pinning] OCIRepository team-a/",
    "spec.ref.semver `>=1.0.0` accepts more than one major version",
    "`semver: \">=1.0.0 <2.0.0\"`",
]);

/// Every OCIRepository body, with its verdict under the default configuration.
pub const OCI_REPOSITORY_FIXTURES: &[(&str, Expected)] = &[
    // CREATE without spec.verify, through each path a client can take.
    (
        "deny-ocirepo-create-dryrun-server__2-validate-OCIRepository-CREATE-dryrun.json",
        MISSING,
    ),
    (
        "deny-ocirepo-create-dryrun-server__capture-OCIRepository-CREATE-dryrun.json",
        MISSING,
    ),
    (
        "deny-ocirepo-create__2-capture-OCIRepository-CREATE.json",
        MISSING,
    ),
    (
        "deny-ocirepo-create__validate-OCIRepository-CREATE.json",
        MISSING,
    ),
    (
        "ocirepo-create-as-kustomize-controller-sa-impersonated__capture-OCIRepository-CREATE.json",
        MISSING,
    ),
    (
        "ocirepo-create-client-side-apply__capture-OCIRepository-CREATE.json",
        MISSING,
    ),
    (
        "ocirepo-create-dryrun-server__capture-OCIRepository-CREATE-dryrun.json",
        MISSING,
    ),
    (
        "ocirepo-create-server-side-apply__capture-OCIRepository-CREATE.json",
        MISSING,
    ),
    // CREATE verified with a cosign public key, which signed-oci-sources accepts, but
    // following `semver: ">=1.0.0"`, which accepts every major version after 1:
    // oci-version-pinning denies them (tests/oci_version_pinning.rs replays them too).
    (
        "ocirepo-create-server-side-apply-as-real-sa-token__capture-OCIRepository-CREATE.json",
        CROSSES_MAJORS,
    ),
    (
        "ocirepo-create-with-verify-secretref__capture-OCIRepository-CREATE.json",
        CROSSES_MAJORS,
    ),
    // v1beta2 CREATE with keyless cosign and no identity: anyone's signature would pass.
    (
        "v1beta2-apply-then-delete__capture-OCIRepository-CREATE.json",
        Expected::Denied(&[
            "OCIRepository team-a/podinfo-v1beta2",
            "without matchOIDCIdentity",
        ]),
    ),
    // UPDATEs that add verification (keyless pinned to one GitHub repository, or a key).
    (
        "ocirepo-update-add-verify-client-side-apply__capture-OCIRepository-UPDATE.json",
        Expected::Allowed,
    ),
    (
        "ocirepo-update-dryrun-server__capture-OCIRepository-UPDATE-dryrun.json",
        Expected::Allowed,
    ),
    (
        "ocirepo-update-kubectl-patch-merge__capture-OCIRepository-UPDATE.json",
        Expected::Allowed,
    ),
    // An UPDATE that removes verification.
    (
        "ocirepo-update-remove-verify-client-side-apply__capture-OCIRepository-UPDATE.json",
        Expected::Denied(&["OCIRepository team-a/podinfo", "spec.verify is missing"]),
    ),
    // Label, annotation and apply UPDATEs that leave spec alone, on verified and unverified
    // objects alike: never blocked.
    (
        "deny-ocirepo-update-adding-deny-label__2-validate-OCIRepository-UPDATE.json",
        Expected::NotJudged,
    ),
    (
        "deny-ocirepo-update-adding-deny-label__capture-OCIRepository-UPDATE.json",
        Expected::NotJudged,
    ),
    (
        "ocirepo-update-as-unprivileged-user-via-token-group__capture-OCIRepository-UPDATE.json",
        Expected::NotJudged,
    ),
    (
        "ocirepo-update-as-unprivileged-user__capture-OCIRepository-UPDATE.json",
        Expected::NotJudged,
    ),
    (
        "ocirepo-update-label-only__capture-OCIRepository-UPDATE.json",
        Expected::NotJudged,
    ),
    (
        "ocirepo-update-server-side-apply-as-real-sa-token__capture-OCIRepository-UPDATE.json",
        Expected::NotJudged,
    ),
    // DELETE, including of unverified objects and dry runs.
    (
        "ocirepo-delete-dryrun-server__capture-OCIRepository-DELETE-dryrun.json",
        Expected::NotJudged,
    ),
    (
        "ocirepo-delete__capture-OCIRepository-DELETE.json",
        Expected::NotJudged,
    ),
    (
        "v1beta2-apply-then-delete__capture-OCIRepository-DELETE.json",
        Expected::NotJudged,
    ),
];

/// The verdict a fixture must get, by file name.
pub fn expected_verdict(file: &str) -> Option<Expected> {
    OCI_REPOSITORY_FIXTURES
        .iter()
        .find(|(name, _)| *name == file)
        .map(|(_, expected)| *expected)
}

/// The body of a fixture.
pub fn read_fixture(file: &str) -> Vec<u8> {
    let path = format!("{FIXTURE_DIR}/{file}");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}
