//! Policy `oci-version-pinning`.
//!
//! GitLab: Flux "can deploy all the minor and patch changes automatically, while major
//! versions require a manual update". What an OCIRepository deploys next is decided by
//! `spec.ref`, which source-controller resolves in this order: `digest`, else `semver` (the
//! highest tag the range accepts), else `tag`, else the `latest` tag.
//!
//! # The rule
//! - A digest pins one artifact: allowed (it must look like `<algorithm>:<hex>`).
//! - A semver range is allowed when every version it accepts is in one major version, as the
//!   Masterminds/semver constraints Flux uses define "accepts" ([`crate::flux::semver`]:
//!   `^0.2` is `>=0.2.0 <0.3.0`, `>=1.2.0-0 <2.0.0` accepts `2.0.0-rc.1`...). Below 1.0.0,
//!   where semver lets anything change, one minor version (`0.2.x`) plays the part of a major,
//!   as in caret ranges. A range that crosses, accepts nothing, or does not parse is denied;
//!   the message names two versions it accepts in different majors and suggests a bounded
//!   range derived from it.
//! - A moving tag (`movingTags`, matched ignoring case, or `movingTagPattern`, by default
//!   partial versions like `1`, `v1.2`, `1.2-alpine`, anything `latest` and `*-SNAPSHOT`) is
//!   denied. Any other tag is allowed: a release (`1.4.2`, `v1.4.2-rc.1`) names one version,
//!   and commit SHAs or build numbers are immutable by convention. The configuration decides
//!   what moves: a tag it matches is denied even if it reads like a version.
//! - No ref, or an empty one: Flux follows `latest`, denied.
//! - `semverFilter` without `semver` is ignored by Flux: an advisory, never a denial. A
//!   `semverFilter` never counts as a bound: the range alone must stay in one major.

use std::borrow::Cow;

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::{CREATE_UPDATE, Context, KindRule, Policy, PolicySettings, SettingError};
use crate::finding::{Finding, Mode, PolicyId};
use crate::flux::SOURCE_GROUP;
use crate::flux::oci_repository::{self, OciRepositoryRefOnly};
use std::sync::RwLock;

use crate::flux::semver::{Constraint, Line, Span};

const ID: PolicyId = PolicyId::OciVersionPinning;

const KINDS: &[KindRule] = &[KindRule {
    group: SOURCE_GROUP,
    kind: oci_repository::KIND,
    resource: oci_repository::RESOURCE,
    opt_in: false,
    operations: CREATE_UPDATE,
    judged_fields: &["/spec/ref"],
}];

/// Why, in every denial.
const MAJOR_RULE: &str = "GitLab's GitOps guidance: let Flux deploy minor and patch releases \
automatically, but make a new major version, which may break compatibility, a manual update.";

/// What to write instead, in every denial.
const PIN_ADVICE: &str = "Pin the artifact: a release tag (`tag: 1.4.2`), a digest \
(`digest: sha256:<hash>`), or a semver range within one major version \
(`semver: \">=1.4.0 <2.0.0\"`)";

pub const DEFAULT_MOVING_TAGS: &[&str] = &[
    "latest",
    "stable",
    "edge",
    "main",
    "master",
    "develop",
    "dev",
    "nightly",
    "canary",
    "next",
    "head",
    "trunk",
    "snapshot",
    "release",
    "production",
    "prod",
    "staging",
    "test",
    "qa",
    "uat",
    "preview",
    "local",
];

/// Partial versions with at most three digits in the major (`16`, `v1.2`, `1.25-alpine`: the
/// registry moves them to every new patch or minor; longer numbers are more likely build
/// numbers or dates), anything `latest`, and Maven-style snapshots.
pub const DEFAULT_MOVING_TAG_PATTERN: &str =
    r"v?[0-9]{1,3}(\.[0-9]+)?(-[A-Za-z][0-9A-Za-z.]*)?|(.+[-_.])?(?i:latest)([-_.].+)?|.+-SNAPSHOT";

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Settings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// Tags that name no fixed artifact, compared ignoring case.
    pub moving_tags: Vec<String>,
    /// A regex matched against the whole tag (anchored); empty: none.
    pub moving_tag_pattern: String,
    /// `moving_tag_pattern`, compiled by [`PolicySettings::validate`].
    #[serde(skip)]
    pattern: Option<Regex>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            mode: None,
            moving_tags: DEFAULT_MOVING_TAGS.iter().map(|t| t.to_string()).collect(),
            moving_tag_pattern: DEFAULT_MOVING_TAG_PATTERN.to_string(),
            pattern: None,
        }
    }
}

impl Settings {
    fn compile(pattern: &str) -> Result<Option<Regex>, SettingError> {
        if pattern.is_empty() {
            return Ok(None);
        }
        Regex::new(&format!("^(?:{pattern})$"))
            .map(Some)
            .map_err(|e| {
                SettingError::new("movingTagPattern", format!("is not a valid regex: {e}"))
            })
    }

    /// The compiled pattern. `Config::from_yaml` validates settings; settings built in code
    /// and never validated are compiled here, on each call.
    fn pattern(&self) -> Result<Option<Cow<'_, Regex>>, SettingError> {
        match &self.pattern {
            Some(regex) => Ok(Some(Cow::Borrowed(regex))),
            None => Settings::compile(&self.moving_tag_pattern).map(|r| r.map(Cow::Owned)),
        }
    }

    /// Whether the tag is one the registry moves.
    pub fn is_moving(&self, tag: &str) -> Result<bool, SettingError> {
        if self.moving_tags.iter().any(|t| t.eq_ignore_ascii_case(tag)) {
            return Ok(true);
        }
        Ok(self.pattern()?.is_some_and(|regex| regex.is_match(tag)))
    }
}

impl PolicySettings for Settings {
    fn mode(&self) -> Option<Mode> {
        self.mode
    }

    fn validate(&mut self) -> Result<(), SettingError> {
        for (i, tag) in self.moving_tags.iter().enumerate() {
            if tag.trim().is_empty() {
                return Err(SettingError::new(format!("movingTags[{i}]"), "is empty"));
            }
        }
        self.pattern = Settings::compile(&self.moving_tag_pattern)?;
        Ok(())
    }
}

#[derive(Default)]
pub struct OciVersionPinning {
    /// Ranges already found to stay within one major version. Judging a range costs about
    /// as much as the rest of a review, and a cluster's sources share a handful of ranges;
    /// the answer depends on the text alone, so it is remembered (up to a bound). foldhash,
    /// not SipHash: the set never grows past [`RANGES_REMEMBERED`], so chosen collisions cost
    /// comparisons within that bound.
    ranges_within_a_major: RwLock<foldhash::HashSet<Box<str>>>,
}

/// How many distinct ranges [`OciVersionPinning`] remembers; past it ranges are judged anew.
const RANGES_REMEMBERED: usize = 1024;

impl OciVersionPinning {
    fn judge_range(&self, subject: &dyn Fn() -> String, range: &str) -> Option<String> {
        let known = self
            .ranges_within_a_major
            .read()
            .is_ok_and(|ranges| ranges.contains(range));
        if known {
            return None;
        }
        let violation = judge_range(&subject(), range);
        if violation.is_none()
            && let Ok(mut ranges) = self.ranges_within_a_major.write()
            && ranges.len() < RANGES_REMEMBERED
        {
            ranges.insert(range.into());
        }
        violation
    }
}

impl Policy for OciVersionPinning {
    fn id(&self) -> PolicyId {
        ID
    }

    fn kinds(&self) -> &'static [KindRule] {
        KINDS
    }

    fn validate(&self, ctx: &Context<'_>) -> Vec<Finding> {
        let repo: OciRepositoryRefOnly = match ctx.read_object(ID) {
            Ok(repo) => repo,
            Err(malformed) => return vec![malformed],
        };
        let settings = &ctx.config.policies.oci_version_pinning;
        // Named only in a finding: formatting the name is most of a passing review's cost here.
        let subject = || ctx.object_ref();
        let reference = repo.spec.reference.unwrap_or_default();
        let mut findings = Vec::new();
        if reference.semver().is_none()
            && let Some(filter) = reference.semver_filter()
        {
            let subject = subject();
            findings.push(Finding::advisory(
                ID,
                format!(
                    "{subject}: spec.ref.semverFilter `{filter}` is ignored: Flux applies it only together with spec.ref.semver. Add a semver range, or remove the filter."
                ),
            ));
        }
        let violation = if let Some(digest) = reference.digest() {
            (!is_digest(digest)).then(|| {
                let subject = subject();
                format!(
                    "{subject}: spec.ref.digest `{digest}` is not an OCI digest (`<algorithm>:<hex>`, for example `sha256:` and 64 hex digits), so Flux cannot pull it"
                )
            })
        } else if let Some(range) = reference.semver() {
            self.judge_range(&subject, range)
        } else if let Some(tag) = reference.tag() {
            match settings.is_moving(tag) {
                Ok(true) => Some(moving_tag(&subject(), tag)),
                Ok(false) => None,
                Err(e) => Some(format!(
                    "{} cannot be judged: the oci-version-pinning configuration is invalid ({}: {})",
                    subject(),
                    e.key,
                    e.message
                )),
            }
        } else {
            let subject = subject();
            Some(format!(
                "{subject} has no spec.ref (or an empty one), so Flux pulls the `latest` tag: whatever is pushed next, a new major version included, is deployed. {MAJOR_RULE} {PIN_ADVICE}."
            ))
        };
        findings.extend(violation.map(|message| Finding::violation(ID, message)));
        findings
    }
}

/// `<algorithm>:<encoded>` as the OCI image spec defines digests.
fn is_digest(text: &str) -> bool {
    let Some((algorithm, encoded)) = text.split_once(':') else {
        return false;
    };
    let algorithm_ok = !algorithm.is_empty()
        && algorithm.split(['+', '.', '_', '-']).all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
    let encoded_ok = !encoded.is_empty()
        && encoded
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b'_' | b'-'));
    algorithm_ok && encoded_ok
}

fn moving_tag(subject: &str, tag: &str) -> String {
    // A partial version (`v1.2`, `16`) says which line the user meant: suggest that line.
    let number = tag.strip_prefix('v').unwrap_or(tag);
    let partial_version = number.starts_with(|c: char| c.is_ascii_digit())
        && number.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    let suggestion = partial_version
        .then(|| Constraint::parse(&format!(">={number}")).ok())
        .flatten()
        .and_then(|c| c.bounded_suggestion());
    let advice = match suggestion {
        Some(range) => format!(
            "To follow the releases of that line, use a range within one major version: `semver: \"{range}\"`; or pin a release tag or a digest"
        ),
        None => PIN_ADVICE.to_string(),
    };
    format!(
        "{subject}: spec.ref.tag `{tag}` is a moving tag: the registry points it at each new push, so Flux deploys whatever comes next, a new major version included. {MAJOR_RULE} {advice}."
    )
}

fn judge_range(subject: &str, range: &str) -> Option<String> {
    let constraint = match Constraint::parse(range) {
        Ok(constraint) => constraint,
        Err(e) => {
            return Some(format!(
                "{subject}: spec.ref.semver `{range}` is not a semver range Flux can read: it {e}. Write a range in the Masterminds/semver syntax Flux uses, within one major version, for example `semver: \">=1.4.0 <2.0.0\"` or `semver: \"~1.4\"`"
            ));
        }
    };
    match constraint.span() {
        Span::Within(_) => None,
        Span::Empty => Some(format!(
            "{subject}: spec.ref.semver `{range}` accepts no version at all, so Flux can never pick a tag. Fix the range, for example `semver: \">=1.4.0 <2.0.0\"`"
        )),
        Span::Crosses { low, other } => {
            let zero_minors = low.major == other.major;
            let (what, next) = if zero_minors {
                (
                    format!(
                        "more than one minor version below 1.0.0 ({} and {}; before 1.0.0 each minor version may break compatibility, so it counts as a major, as in Flux's own ^0.y ranges)",
                        Line::of(&low),
                        Line::of(&other)
                    ),
                    "the next minor release, which may break compatibility,",
                )
            } else {
                (
                    "more than one major version".to_string(),
                    "the next major release",
                )
            };
            let prerelease_note = if other.is_release() {
                String::new()
            } else {
                format!(
                    " A range that names a prerelease also accepts the prereleases of the next major version, which sort below its release: end it at `<{}.0.0-0`, not `<{}.0.0`.",
                    other.major, other.major
                )
            };
            let unit = match Line::of(&low) {
                Line::Major(_) => "major",
                Line::ZeroMinor(_) => "minor",
            };
            let suggestion = match constraint.bounded_suggestion() {
                Some(bounded) => format!(
                    "Bound the range to one {unit} version: `semver: \"{bounded}\"`; moving to the next {unit} is then an edit of the range"
                ),
                None if zero_minors => "Bound the range to the minor version you deploy today, for example `semver: \"~0.4\"` (>=0.4.0 <0.5.0)".to_string(),
                None => "Bound the range to one major version, the one you deploy today, for example `semver: \">=1.4.0 <2.0.0\"` or `semver: \"~1.4\"`".to_string(),
            };
            Some(format!(
                "{subject}: spec.ref.semver `{range}` accepts {what}, for example {low} and {other}, so Flux deploys {next} as soon as it is pushed. {MAJOR_RULE}{prerelease_note} {suggestion}."
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ranges_within_one_major_are_remembered_and_they_stay_allowed() {
        let policy = OciVersionPinning::default();
        let subject = || "OCIRepository flux-system/app".to_string();
        for _ in 0..2 {
            assert_eq!(policy.judge_range(&subject, ">=2.4.0 <3.0.0"), None);
            let crossing = policy.judge_range(&subject, ">=2.4.0");
            assert!(crossing.is_some_and(|m| m.contains("more than one major version")));
        }
        let remembered = policy.ranges_within_a_major.read().expect("not poisoned");
        assert!(remembered.contains(">=2.4.0 <3.0.0"));
        assert_eq!(remembered.len(), 1);
    }

    #[test]
    fn the_moving_tag_pattern_is_compiled_once_not_per_request() {
        // Compiling it costs about as much as 100 reviews; the engine precompiles a
        // configuration built in code, as Config::from_yaml does for a file.
        let mut config = crate::config::Config::default();
        assert!(config.policies.oci_version_pinning.pattern.is_none());
        config.precompile();
        assert!(config.policies.oci_version_pinning.pattern.is_some());
        let from_file = crate::config::Config::from_yaml(
            "policies:\n  oci-version-pinning:\n    movingTagPattern: 'nightly-.*'\n",
            "test",
        )
        .expect("valid");
        assert!(from_file.policies.oci_version_pinning.pattern.is_some());
    }

    #[test]
    fn digests_follow_the_oci_grammar() {
        assert!(is_digest(
            "sha256:2cf3ec0c5bd0bd9d9b6e4c6e4c6bb0de2a2a3cf9ea5ecd5e4e6c4b2a1f0e9d8c"
        ));
        assert!(is_digest(
            "sha512+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564"
        ));
        assert!(!is_digest("sha256"));
        assert!(!is_digest(":abc"));
        assert!(!is_digest("SHA256:abc"));
        assert!(!is_digest("sha256:"));
        assert!(!is_digest("sha256:abc/def"));
    }

    #[test]
    fn the_default_pattern_catches_partial_versions_but_not_releases() {
        let settings = Settings::default();
        for tag in [
            "1",
            "v2",
            "16",
            "1.25",
            "1.25-alpine3.19",
            "stable-latest",
            "latest-debian",
            "2.0-SNAPSHOT",
            "LATEST",
            "Stable",
        ] {
            assert!(settings.is_moving(tag).expect("valid"), "{tag}");
        }
        for tag in [
            "1.25.3",
            "v1.14.4",
            "1.25.3-alpine",
            "sha-3f2a1b",
            "20240101",
            "4711",
            "main-3f2a1b",
        ] {
            assert!(!settings.is_moving(tag).expect("valid"), "{tag}");
        }
    }
}
