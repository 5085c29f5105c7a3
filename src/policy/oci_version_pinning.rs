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
//!   as in caret ranges. A range that crosses or accepts nothing is denied: the message names
//!   two versions it accepts in different majors and suggests a bounded range derived from
//!   it. A range Masterminds refuses is denied too, since Flux cannot reconcile the source;
//!   the message quotes Masterminds' error, as source-controller would report it.
//! - A tag is allowed only when it is known not to move: a full version (`1.4.2`,
//!   `v1.4.2-rc.1`, `1.4.2+build.7` or, as Helm writes build metadata in OCI tags,
//!   `1.4.2_build.7`), a commit SHA as GitLab CI writes it (`$CI_COMMIT_SHA`, 40 hex digits, or
//!   64 in a SHA-256 repository; `$CI_COMMIT_SHORT_SHA`, 8), or a tag an operator's
//!   `immutableTags` pattern matches. Anything else (`latest`, `V1`, `1.x`, `stable-alpine`,
//!   `lts`, `beta`, a branch slug such as `feature-login`) is a tag the registry can move to
//!   each new push, and is denied with the digest or range to write instead. `movingTags` and
//!   `movingTagPattern` name tags that are denied even so (by default `*-SNAPSHOT` and
//!   `*-latest` spellings of a version).
//! - No ref, or an empty one: Flux follows `latest`, denied.
//! - `semverFilter` without `semver` is ignored by Flux: an advisory, never a denial. A
//!   `semverFilter` never counts as a bound: the range alone must stay in one major.

use std::borrow::Cow;

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::{CREATE_UPDATE, Context, KindRule, Policy, PolicySettings, SettingError};
use crate::finding::{Finding, Mode, PolicyId};
use crate::flux::SOURCE_GROUP;
use crate::flux::oci_repository::{self, OciRepositoryRefOnly, OciRepositoryUrlOnly};
use std::sync::RwLock;

use crate::flux::semver::{Constraint, Line, ParseError, Span, Version};

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

/// Versions whose prerelease or build names a channel that moves by convention: Maven's
/// `-SNAPSHOT` (re-published on every build) and `-latest`.
pub const DEFAULT_MOVING_TAG_PATTERN: &str = r"(?i).+[-_.+](snapshot|latest)([-_.+].*)?";

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Settings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// Tags the operator's registries keep on one artifact, beyond full versions and commit
    /// SHAs: regexes, each matched against the whole tag.
    pub immutable_tags: Vec<String>,
    /// Tags denied even when they read as a version or match `immutable_tags`, compared
    /// ignoring case.
    pub moving_tags: Vec<String>,
    /// A regex for such tags, matched against the whole tag; empty: none.
    pub moving_tag_pattern: String,
    /// The patterns, compiled by [`PolicySettings::validate`].
    #[serde(skip)]
    compiled: Option<TagPatterns>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            mode: None,
            immutable_tags: Vec::new(),
            moving_tags: Vec::new(),
            moving_tag_pattern: DEFAULT_MOVING_TAG_PATTERN.to_string(),
            compiled: None,
        }
    }
}

#[derive(Debug, Clone)]
struct TagPatterns {
    /// Every `immutableTags` pattern in one anchored alternation.
    immutable: Option<Regex>,
    moving: Option<Regex>,
}

/// Why a tag is allowed or denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagJudgement {
    /// A full version: names one release.
    Version,
    /// A commit SHA as GitLab CI writes it.
    CommitSha,
    /// Matches an `immutableTags` pattern.
    ImmutableByConfiguration,
    /// Named by `movingTags` or `movingTagPattern`.
    MovingByConfiguration,
    /// Nothing says it stays on one artifact.
    NotKnownToStay,
}

impl TagJudgement {
    pub fn allowed(self) -> bool {
        matches!(
            self,
            TagJudgement::Version
                | TagJudgement::CommitSha
                | TagJudgement::ImmutableByConfiguration
        )
    }
}

/// An anchored regex; `key` names the setting in the error.
fn anchored(pattern: &str, key: &str) -> Result<Regex, SettingError> {
    Regex::new(&format!("^(?:{pattern})$"))
        .map_err(|e| SettingError::new(key, format!("is not a valid regex: {e}")))
}

#[cfg(test)]
impl Settings {
    /// Whether the tag patterns are compiled: `(immutableTags, movingTagPattern)` when they
    /// are, for the configuration's tests.
    pub(crate) fn compiled_patterns(&self) -> Option<(bool, bool)> {
        self.compiled
            .as_ref()
            .map(|c| (c.immutable.is_some(), c.moving.is_some()))
    }
}

impl Settings {
    fn compile(&self) -> Result<TagPatterns, SettingError> {
        for (i, pattern) in self.immutable_tags.iter().enumerate() {
            let key = format!("immutableTags[{i}]");
            if pattern.trim().is_empty() {
                return Err(SettingError::new(key, "is empty"));
            }
            // `latest` is the tag every registry moves; a pattern that takes it in takes in
            // every moving tag (`.*`, `[a-z]+`) and would turn the rule off unseen.
            if anchored(pattern, &key)?.is_match("latest") {
                return Err(SettingError::new(
                    key,
                    format!(
                        "`{pattern}` matches `latest`, which every registry moves; list the tags your registry keeps immutable (for example `release-[0-9]+`), or set mode: off"
                    ),
                ));
            }
        }
        let immutable = if self.immutable_tags.is_empty() {
            None
        } else {
            let alternation: Vec<String> = self
                .immutable_tags
                .iter()
                .map(|p| format!("(?:{p})"))
                .collect();
            Some(anchored(&alternation.join("|"), "immutableTags")?)
        };
        let moving = if self.moving_tag_pattern.is_empty() {
            None
        } else {
            Some(anchored(&self.moving_tag_pattern, "movingTagPattern")?)
        };
        Ok(TagPatterns { immutable, moving })
    }

    /// The compiled patterns. `Config::from_yaml` validates settings; settings built in code
    /// and never validated are compiled here, on each call.
    fn patterns(&self) -> Result<Cow<'_, TagPatterns>, SettingError> {
        match &self.compiled {
            Some(patterns) => Ok(Cow::Borrowed(patterns)),
            None => self.compile().map(Cow::Owned),
        }
    }

    /// Whether the tag stays on one artifact, and why.
    pub fn judge_tag(&self, tag: &str) -> Result<TagJudgement, SettingError> {
        let patterns = self.patterns()?;
        if self.moving_tags.iter().any(|t| t.eq_ignore_ascii_case(tag))
            || patterns.moving.as_ref().is_some_and(|r| r.is_match(tag))
        {
            return Ok(TagJudgement::MovingByConfiguration);
        }
        if names_one_version(tag) {
            return Ok(TagJudgement::Version);
        }
        if is_gitlab_commit_sha(tag) {
            return Ok(TagJudgement::CommitSha);
        }
        if patterns.immutable.as_ref().is_some_and(|r| r.is_match(tag)) {
            return Ok(TagJudgement::ImmutableByConfiguration);
        }
        Ok(TagJudgement::NotKnownToStay)
    }
}

/// A full semver version with an optional `v` (or `V`: the same version), where an OCI tag
/// may write build metadata with `_` since `+` is not allowed in tags (Helm's convention).
fn names_one_version(tag: &str) -> bool {
    let tag = tag.strip_prefix('V').unwrap_or(tag);
    let version = if tag.contains('_') {
        Cow::Owned(tag.replace('_', "+"))
    } else {
        Cow::Borrowed(tag)
    };
    Version::parse_strict(&version).is_some()
}

/// `$CI_COMMIT_SHA` (40 lowercase hex digits, 64 in a SHA-256 repository) or
/// `$CI_COMMIT_SHORT_SHA` (its first 8), as GitLab CI writes them.
fn is_gitlab_commit_sha(tag: &str) -> bool {
    matches!(tag.len(), 8 | 40 | 64)
        && tag
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
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
        self.compiled = Some(self.compile()?);
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

/// The longest range [`OciVersionPinning`] remembers: with [`RANGES_REMEMBERED`], the memo
/// holds at most 256 KiB of ranges whatever the requests (a range may be 4 KiB long).
const LONGEST_RANGE_REMEMBERED: usize = 256;

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
            && range.len() <= LONGEST_RANGE_REMEMBERED
        {
            ranges.insert(range.into());
        }
        violation
    }
}

impl Policy for OciVersionPinning {
    type Settings = Settings;

    fn id(&self) -> PolicyId {
        ID
    }

    fn kinds(&self) -> &'static [KindRule] {
        KINDS
    }

    fn validate(&self, ctx: &Context<'_, Settings>) -> Vec<Finding> {
        let repo: OciRepositoryRefOnly = match ctx.read_object(ID) {
            Ok(repo) => repo,
            Err(malformed) => return vec![malformed],
        };
        let settings = ctx.settings;
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
            match settings.judge_tag(tag) {
                Ok(judgement) if judgement.allowed() => None,
                Ok(judgement) => {
                    let url = ctx
                        .request
                        .object
                        .and_then(|raw| ctx.skim::<OciRepositoryUrlOnly>(raw))
                        .map(|repo| repo.spec.url.into_owned())
                        .unwrap_or_default();
                    Some(moving_tag(&subject(), tag, judgement, &url))
                }
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

/// Why a tag is denied, and what to write instead: the digest it points to now, or, when the
/// tag spells a line of versions (`v1.25`, `16`, `1.x`, `V1`), a range within that line.
fn moving_tag(subject: &str, tag: &str, judgement: TagJudgement, url: &str) -> String {
    let number = tag.strip_prefix(['v', 'V']).unwrap_or(tag);
    let spells_a_line = number.starts_with(|c: char| c.is_ascii_digit())
        && number
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'x' | b'X' | b'*'));
    let suggestion = spells_a_line
        .then(|| Constraint::parse(&format!(">={number}")).ok())
        .flatten()
        .and_then(|c| c.bounded_suggestion());
    let where_digests_are = if url.is_empty() {
        "`flux list artifacts <spec.url>` lists each tag's digest".to_string()
    } else {
        format!("`flux list artifacts {url}` lists each tag's digest")
    };
    let advice = match suggestion {
        Some(range) => format!(
            "To follow the releases of that line, use a range within one major version: `semver: \"{range}\"`; or pin the artifact the tag points to now with `digest: sha256:<hash>` ({where_digests_are}), or a release tag (`tag: 1.4.2`)"
        ),
        None => format!(
            "Pin the artifact the tag points to now with `digest: sha256:<hash>` ({where_digests_are}), or use a release tag (`tag: 1.4.2`) or a semver range within one major version (`semver: \">=1.4.0 <2.0.0\"`)"
        ),
    };
    let why = match judgement {
        TagJudgement::MovingByConfiguration => "is a moving tag (the oci-version-pinning settings `movingTags`/`movingTagPattern` name it)".to_string(),
        _ => "is a moving tag: only a full version (`1.4.2`, `v1.4.2-rc.1`), a commit SHA as GitLab CI writes it ($CI_COMMIT_SHA, or the 8 hex digits of $CI_COMMIT_SHORT_SHA) or a tag the operator lists in `immutableTags` is known to stay on one artifact".to_string(),
    };
    format!(
        "{subject}: spec.ref.tag `{tag}` {why}. The registry can point it at each new push, so Flux deploys whatever comes next, a new major version included. {MAJOR_RULE} {advice}."
    )
}

fn judge_range(subject: &str, range: &str) -> Option<String> {
    let constraint = match Constraint::parse(range) {
        Ok(constraint) => constraint,
        Err(ParseError::Refused { message, hint }) => {
            return Some(format!(
                "{subject}: spec.ref.semver `{range}` is not a range Flux can read: Masterminds/semver, which source-controller parses it with, refuses it with `{message}` ({hint}), so Flux cannot reconcile this OCIRepository. Write a range in that syntax, within one major version, for example `semver: \">=1.4.0 <2.0.0\"` or `semver: \"~1.4\"`"
            ));
        }
        Err(ParseError::TooLong) => {
            return Some(format!(
                "{subject}: spec.ref.semver is {} bytes long, more than the {} fluxgate reads (a real range is a few dozen). Write a range within one major version, for example `semver: \">=1.4.0 <2.0.0\"` or `semver: \"~1.4\"`",
                range.len(),
                crate::flux::semver::MAX_LEN
            ));
        }
    };
    // `1||1.0.0 - 1.5.0` means something else to Masterminds than it shows: say how it reads.
    let reread = constraint.reread().map_or(String::new(), |reread| {
        format!(
            " (Masterminds rewrites each `A - B` range before it splits the text at `||`, and its version numbers may contain `|`, so it reads this as `{}`)",
            reread.trim_end()
        )
    });
    match constraint.span() {
        Span::Within(_) => None,
        Span::Empty => Some(format!(
            "{subject}: spec.ref.semver `{range}` accepts no version at all{reread}, so Flux can never pick a tag. Fix the range, for example `semver: \">=1.4.0 <2.0.0\"`"
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
                "{subject}: spec.ref.semver `{range}` accepts {what}{reread}, for example {low} and {other}, so Flux deploys {next} as soon as it is pushed. {MAJOR_RULE}{prerelease_note} {suggestion}."
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
    fn a_remembered_range_is_a_short_one() {
        let policy = OciVersionPinning::default();
        let subject = || "OCIRepository flux-system/app".to_string();
        let long = format!(">=2.4.0 <3.0.0{}", " >=2.4.0".repeat(40));
        assert_eq!(policy.judge_range(&subject, &long), None);
        let remembered = policy.ranges_within_a_major.read().expect("not poisoned");
        assert!(remembered.is_empty());
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
    fn tags_that_stay_on_one_artifact_are_versions_commit_shas_and_listed_ones() {
        let settings = Settings::default();
        let judge = |tag: &str| settings.judge_tag(tag).expect("valid");
        for tag in [
            "1.25.3",
            "v1.14.4",
            "V1.14.4",
            "1.25.3-alpine",
            "1.4.2+build.7",
            "1.4.2_build.7",
            "0.0.0",
        ] {
            assert_eq!(judge(tag), TagJudgement::Version, "{tag}");
        }
        let sha = "3f2a1b9c0d4e5f60718293a4b5c6d7e8f90a1b2c";
        for tag in [
            sha,
            &sha[..8],
            &"3f2a1b9c0d4e5f60718293a4b5c6d7e8".repeat(2),
        ] {
            assert_eq!(judge(tag), TagJudgement::CommitSha, "{tag}");
        }
        for tag in [
            "latest",
            "1",
            "v2",
            "V1",
            "16",
            "1.25",
            "1.x",
            "1.25-alpine3.19",
            "stable-alpine",
            "lts",
            "beta",
            "feature-login",
            "sha-3f2a1b9",
            "3f2a1b9",
            "3F2A1B9C",
            "main-3f2a1b9c",
            "4711",
            "01.2.3",
            "1.2.3.4",
            "1.4.2_a_b",
        ] {
            assert_eq!(judge(tag), TagJudgement::NotKnownToStay, "{tag}");
        }
        for tag in [
            "1.0.0-SNAPSHOT",
            "2.1.0-latest",
            "1.0.0-rc.1.snapshot",
            "3.2.1_latest",
        ] {
            assert_eq!(judge(tag), TagJudgement::MovingByConfiguration, "{tag}");
        }
    }

    #[test]
    fn an_immutable_tags_pattern_that_takes_in_latest_is_refused() {
        for pattern in [".*", "[a-z]+", "lat.st|build-[0-9]+"] {
            let mut settings = Settings {
                immutable_tags: vec![pattern.to_string()],
                ..Settings::default()
            };
            let err = settings.validate().expect_err(pattern);
            assert_eq!(err.key, "immutableTags[0]");
            assert!(err.message.contains("matches `latest`"), "{}", err.message);
        }
    }
}
