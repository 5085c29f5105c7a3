//! How much a keyless identity matcher accepts.
//!
//! Flux passes `matchOIDCIdentity` issuer and subject to cosign, which compiles each with Go's
//! `regexp` and calls `MatchString`: the match is unanchored (`gitlab` accepts any issuer that
//! contains "gitlab"), and an empty pattern is no constraint at all. Whether a pattern "matches
//! anything" is decided by what it matches, not by how it is spelled: the pattern is compiled
//! and tried against identities an attacker can obtain (an unrelated issuer, a project in
//! another group, the intended identity behind an attacker's host or prefix), built from
//! identities the pattern itself accepts.

use std::borrow::Cow;

use regex::{Regex, RegexBuilder};
use regex_syntax::hir::{Class, Hir, HirKind, Look};

/// Which half of an identity a pattern matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdentityField {
    /// The OIDC issuer URL (`https://gitlab.com`).
    Issuer,
    /// The certificate subject: for GitLab CI
    /// `https://gitlab.com/<group>/<project>//.gitlab-ci.yml@refs/heads/<branch>`.
    Subject,
}

impl IdentityField {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityField::Issuer => "issuer",
            IdentityField::Subject => "subject",
        }
    }
}

/// The verdict on one identity pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Breadth {
    /// Not a regular expression cosign can compile: verification always fails.
    Invalid(String),
    /// Accepts identities nobody meant to trust; `example` is one of them.
    Broad { example: String, reason: String },
    /// Pins an identity. `accepts` are identities it matches (one per alternative, at most a
    /// few), used to check issuers against the trusted and public lists.
    Specific { accepts: Vec<String> },
}

/// Longer patterns are refused rather than compiled on the request path.
pub const MAX_PATTERN_LEN: usize = 1024;
/// A compiled pattern may not grow beyond this (the regex crate's default is 10 MiB).
const MAX_COMPILED_SIZE: usize = 1 << 20;
const MAX_SAMPLES: usize = 8;
const MAX_SAMPLE_LEN: usize = 512;
/// A host nobody can own (RFC 2606), for identities an attacker controls.
const ATTACKER_HOST: &str = "attacker.invalid";
const ATTACKER_GITLAB_SUBJECT: &str = "project//.gitlab-ci.yml@refs/heads/main";

/// Judges one `matchOIDCIdentity` issuer or subject pattern.
pub fn analyze(pattern: &str, field: IdentityField) -> Breadth {
    match analyze_within(pattern, field, MAX_COMPILED_SIZE) {
        Some(analysis) => analysis.breadth,
        None => Breadth::Invalid("it compiles to a program that is too big".into()),
    }
}

/// A pattern's verdict and what judging it took.
#[derive(Debug, Clone)]
pub struct Analysis {
    pub breadth: Breadth,
    /// Bytes of the compiled program (0 when nothing was compiled; the size limit for a
    /// program that outgrew it).
    pub compiled_bytes: usize,
}

/// [`analyze`], compiling the pattern into at most `size_limit` bytes: `None` when its
/// program would need more than that but no more than any pattern may take (the review's
/// budget is spent, not the pattern wrong).
pub fn analyze_within(pattern: &str, field: IdentityField, size_limit: usize) -> Option<Analysis> {
    let done = |breadth| {
        Some(Analysis {
            breadth,
            compiled_bytes: 0,
        })
    };
    if pattern.is_empty() {
        return done(Breadth::Broad {
            example: match field {
                IdentityField::Issuer => format!("https://{ATTACKER_HOST}"),
                IdentityField::Subject => {
                    format!("https://{ATTACKER_HOST}/attacker/{ATTACKER_GITLAB_SUBJECT}")
                }
            },
            reason: "it is empty, and cosign treats an empty pattern as no constraint".into(),
        });
    }
    if pattern.len() > MAX_PATTERN_LEN {
        return done(Breadth::Invalid(format!(
            "it is longer than {MAX_PATTERN_LEN} characters"
        )));
    }
    let limit = size_limit.min(MAX_COMPILED_SIZE);
    let (regex, hir) = match compile_measured(pattern, limit) {
        Ok(compiled) => compiled,
        Err(CompileError::TooBig) if limit < MAX_COMPILED_SIZE => return None,
        Err(CompileError::TooBig) => {
            // Building up to the limit took the work of a program that size.
            return Some(Analysis {
                breadth: Breadth::Invalid("it compiles to a program that is too big".into()),
                compiled_bytes: MAX_COMPILED_SIZE,
            });
        }
        Err(CompileError::Invalid(e)) => return done(Breadth::Invalid(e)),
    };
    let compiled_bytes = regex.memory_usage();
    let anchored_start = hir.properties().look_set_prefix().contains(Look::Start);
    let anchored_end = hir.properties().look_set_suffix().contains(Look::End);
    // The empty identity is no certificate's: a pattern accepting only that never verifies,
    // which is Flux's error to report, not a trust question.
    let accepts: Vec<String> = samples(&hir)
        .into_iter()
        .filter(|s| !s.is_empty() && regex.is_match(s))
        .collect();
    let mut breadth = None;
    for probe in probes(field, &accepts) {
        if regex.is_match(&probe.identity) {
            breadth = Some(Breadth::Broad {
                reason: probe.why.explain(field, anchored_start, anchored_end),
                example: probe.identity,
            });
            break;
        }
    }
    Some(Analysis {
        breadth: breadth.unwrap_or(Breadth::Specific { accepts }),
        compiled_bytes,
    })
}

enum CompileError {
    Invalid(String),
    TooBig,
}

/// [`compile`] into regex's own engine, whose heap size is known: what a review's
/// `regex-bytes` budget is charged. The same configuration as `regex::Regex`.
fn compile_measured(
    pattern: &str,
    size_limit: usize,
) -> Result<(regex_automata::meta::Regex, Hir), CompileError> {
    use regex_automata::{MatchKind, meta, util::syntax};
    let translated = translate_go_quotes(pattern);
    let hir = regex_syntax::ParserBuilder::new()
        .build()
        .parse(&translated)
        .map_err(|e| CompileError::Invalid(syntax_error(&e)))?;
    let config = meta::Config::new()
        .nfa_size_limit(Some(size_limit))
        .hybrid_cache_capacity(2 * (1 << 20))
        .match_kind(MatchKind::LeftmostFirst)
        .utf8_empty(true);
    let regex = meta::Builder::new()
        .configure(config)
        .syntax(syntax::Config::new().utf8(true))
        .build_from_hir(&hir)
        .map_err(|e| {
            if e.size_limit().is_some() {
                CompileError::TooBig
            } else {
                CompileError::Invalid(e.to_string())
            }
        })?;
    Ok((regex, hir))
}

/// Compiles a Go (RE2) pattern with the regex crate, whose syntax is RE2's with few
/// differences; Go's `\Q...\E` quoting, which the regex crate lacks, is translated.
pub fn compile(pattern: &str) -> Result<(Regex, Hir), String> {
    let translated = translate_go_quotes(pattern);
    let hir = regex_syntax::ParserBuilder::new()
        .build()
        .parse(&translated)
        .map_err(|e| syntax_error(&e))?;
    let regex = RegexBuilder::new(&translated)
        .size_limit(MAX_COMPILED_SIZE)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(_) => "it compiles to a program that is too big".into(),
            other => other.to_string(),
        })?;
    Ok((regex, hir))
}

/// The short description of a syntax error, without the multi-line pattern excerpt.
fn syntax_error(e: &regex_syntax::Error) -> String {
    match e {
        regex_syntax::Error::Parse(e) => e.kind().to_string(),
        regex_syntax::Error::Translate(e) => e.kind().to_string(),
        other => other.to_string(),
    }
}

/// Replaces Go's `\Q...\E` (literal text up to `\E` or the end) with escaped text.
fn translate_go_quotes(pattern: &str) -> Cow<'_, str> {
    if !pattern.contains("\\Q") {
        return Cow::Borrowed(pattern);
    }
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut rest = pattern;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        match after.chars().next() {
            Some('Q') => {
                let quoted = &after[1..];
                let (literal, tail) = match quoted.find("\\E") {
                    Some(end) => (&quoted[..end], &quoted[end + 2..]),
                    None => (quoted, ""),
                };
                out.push_str(&regex::escape(literal));
                rest = tail;
            }
            Some(c) => {
                out.push('\\');
                out.push(c);
                rest = &after[c.len_utf8()..];
            }
            None => {
                out.push('\\');
                rest = "";
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Some strings the pattern matches: for each alternative, the shortest spelling (optional
/// parts both left out and taken once, classes by a representative character).
pub fn samples(hir: &Hir) -> Vec<String> {
    let mut out = sample(hir);
    out.retain(|s| s.len() <= MAX_SAMPLE_LEN);
    out
}

fn sample(hir: &Hir) -> Vec<String> {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => vec![String::new()],
        HirKind::Literal(literal) => vec![String::from_utf8_lossy(&literal.0).into_owned()],
        HirKind::Class(class) => class_representatives(class)
            .into_iter()
            .map(String::from)
            .collect(),
        HirKind::Capture(capture) => sample(&capture.sub),
        HirKind::Repetition(repetition) => {
            let once = sample(&repetition.sub);
            let mut out = Vec::new();
            if repetition.min == 0 {
                out.push(String::new());
                out.extend(once);
            } else {
                let times = repetition.min.min(64) as usize;
                out.extend(once.iter().map(|s| s.repeat(times)));
            }
            out.truncate(MAX_SAMPLES);
            out
        }
        HirKind::Concat(parts) => {
            let mut acc = vec![String::new()];
            for part in parts {
                let tails = sample(part);
                let mut next = Vec::with_capacity(MAX_SAMPLES);
                'product: for head in &acc {
                    for tail in &tails {
                        if next.len() == MAX_SAMPLES {
                            break 'product;
                        }
                        if head.len() + tail.len() <= MAX_SAMPLE_LEN {
                            next.push(format!("{head}{tail}"));
                        }
                    }
                }
                acc = next;
                if acc.is_empty() {
                    break;
                }
            }
            acc
        }
        HirKind::Alternation(alternatives) => {
            let mut out = Vec::new();
            for alternative in alternatives {
                out.extend(sample(alternative));
                if out.len() >= MAX_SAMPLES {
                    break;
                }
            }
            out.truncate(MAX_SAMPLES);
            out
        }
    }
}

/// Every member of a class of up to three characters (`[ce]vil` names two hosts), case pairs
/// from `(?i)` counted once; otherwise one typical member. `.` comes first so that
/// `gitlab.com` spelled with an unescaped dot still reads as the host it names.
fn class_representatives(class: &Class) -> Vec<char> {
    const PREFERRED: [char; 6] = ['.', 'a', '0', '-', '_', '/'];
    let ranges: Vec<(char, char)> = match class {
        Class::Unicode(unicode) => unicode
            .ranges()
            .iter()
            .map(|r| (r.start(), r.end()))
            .collect(),
        Class::Bytes(bytes) => bytes
            .ranges()
            .iter()
            .filter(|r| r.start().is_ascii())
            .map(|r| (char::from(r.start()), char::from(r.end().min(0x7f))))
            .collect(),
    };
    let size: u64 = ranges
        .iter()
        .map(|&(start, end)| u64::from(end) - u64::from(start) + 1)
        .sum();
    if size <= 3 {
        let mut members: Vec<char> = ranges
            .iter()
            .flat_map(|&(start, end)| start..=end)
            .collect();
        // One member per letter, the ASCII lowercase one first (`(?i)s` is [Ssſ]).
        members.sort_by_key(|c| (!c.is_ascii_lowercase(), !c.is_ascii(), *c));
        let mut distinct: Vec<char> = Vec::with_capacity(members.len());
        for c in members {
            if !distinct
                .iter()
                .any(|d| d.to_uppercase().eq(c.to_uppercase()))
            {
                distinct.push(c);
            }
        }
        return distinct;
    }
    let contains = |c: char| ranges.iter().any(|&(start, end)| start <= c && c <= end);
    PREFERRED
        .iter()
        .copied()
        .find(|&c| contains(c))
        .or_else(|| ranges.first().map(|&(start, _)| start))
        .into_iter()
        .collect()
}

/// Why an identity a pattern accepts should not have been accepted.
#[derive(Debug, Clone, Copy)]
enum Why {
    Unrelated,
    Prefix,
    Suffix,
    Host,
    Owner,
    OwnerName,
    IssuerPath,
    EmailDomain,
}

impl Why {
    fn explain(self, field: IdentityField, anchored_start: bool, anchored_end: bool) -> String {
        let noun = field.as_str();
        match self {
            Why::Unrelated => format!("it matches unrelated {noun}s"),
            Why::Prefix if !anchored_start => format!(
                "it is not anchored with ^, and cosign matches the pattern anywhere in the {noun}"
            ),
            Why::Prefix => format!("it accepts any text in front of the {noun} it names"),
            Why::Suffix if !anchored_end => {
                format!("it is not anchored with $, so longer {noun}s match too")
            }
            Why::Suffix => format!("it accepts any text after the {noun} it names"),
            Why::Host => "it does not pin the host".into(),
            Why::Owner => "it accepts projects of any group or owner".into(),
            Why::OwnerName => {
                "it does not pin the group or owner (other groups whose name starts the same match too)"
                    .into()
            }
            Why::IssuerPath if !anchored_end => {
                "it is not anchored with $, and issuers differing only in their path match too (GitHub Enterprise issuers are https://token.actions.githubusercontent.com/<enterprise>)".into()
            }
            Why::IssuerPath => "it accepts other issuers on the same host".into(),
            Why::EmailDomain => "it does not pin the email domain".into(),
        }
    }
}

struct Probe {
    identity: String,
    why: Why,
}

/// Identities an attacker can get a certificate for, most telling first.
fn probes(field: IdentityField, accepts: &[String]) -> Vec<Probe> {
    let mut out = Vec::new();
    let mut push = |identity: String, why: Why| out.push(Probe { identity, why });
    match field {
        IdentityField::Issuer => push(format!("https://{ATTACKER_HOST}"), Why::Unrelated),
        IdentityField::Subject => {
            push(
                format!("https://{ATTACKER_HOST}/attacker/{ATTACKER_GITLAB_SUBJECT}"),
                Why::Unrelated,
            );
            push(format!("attacker@{ATTACKER_HOST}"), Why::Unrelated);
        }
    }
    for accepted in accepts {
        push(format!("https://{ATTACKER_HOST}/{accepted}"), Why::Prefix);
        if let Some((scheme, host, path)) = split_url(accepted) {
            push(format!("{scheme}://{ATTACKER_HOST}{path}"), Why::Host);
            if let Some((_, tld)) = host.rsplit_once('.').filter(|(_, tld)| !tld.is_empty()) {
                push(format!("{scheme}://attacker.{tld}{path}"), Why::Host);
            }
            let extended_host = format!("{scheme}://{host}.{ATTACKER_HOST}{path}");
            push(
                extended_host,
                if path.is_empty() {
                    Why::Suffix
                } else {
                    Why::Host
                },
            );
            match field {
                IdentityField::Issuer => push(
                    format!("{}/attacker", accepted.trim_end_matches('/')),
                    Why::IssuerPath,
                ),
                IdentityField::Subject => {
                    push(
                        format!("{scheme}://{host}/attacker/{ATTACKER_GITLAB_SUBJECT}"),
                        Why::Owner,
                    );
                    let path = path.trim_start_matches('/');
                    if !path.is_empty() {
                        let (owner, rest) = match path.split_once('/') {
                            Some((owner, rest)) => (owner, Some(rest)),
                            None => (path, None),
                        };
                        let rest = rest.map(|r| format!("/{r}")).unwrap_or_default();
                        push(format!("{scheme}://{host}/attacker{rest}"), Why::Owner);
                        push(
                            format!("{scheme}://{host}/{owner}-attacker{rest}"),
                            Why::OwnerName,
                        );
                    }
                }
            }
        } else if field == IdentityField::Subject
            && let Some((local, _)) = accepted.rsplit_once('@')
        {
            push(format!("{local}@{ATTACKER_HOST}"), Why::EmailDomain);
            push(format!("{accepted}.{ATTACKER_HOST}"), Why::Suffix);
        } else {
            push(format!("{accepted}.{ATTACKER_HOST}"), Why::Suffix);
        }
    }
    out
}

/// `scheme://host/path` → (scheme, host, `/path` or empty).
fn split_url(text: &str) -> Option<(&str, &str, &str)> {
    let (scheme, rest) = text.split_once("://")?;
    if scheme.is_empty()
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+')
    {
        return None;
    }
    let (host, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    (!host.is_empty()).then_some((scheme, host, path))
}

/// The issuers the public Sigstore instance (Fulcio at sigstore.dev) certifies, from Fulcio's
/// `config/identity/config.yaml`. Of GitLab instances it serves only gitlab.com and a few
/// run by GitLab and Arch Linux: a self-managed GitLab needs its own Sigstore, which Flux
/// trusts through `verify.trustedRootSecretRef`.
const PUBLIC_SIGSTORE_ISSUERS: &[&str] = &[
    "https://accounts.google.com",
    "https://agent.buildkite.com",
    "https://auth.eclipse.org/auth/realms/foundation-service-accounts",
    "https://dev.gitlab.org",
    "https://gitlab.archlinux.org",
    "https://gitlab.com",
    "https://issuer.chainops.dev",
    "https://issuer.enforce.dev",
    "https://issuer.hello.coop",
    "https://oauth2.sigstore.dev/auth",
    "https://oidc.circleci.com",
    "https://oidc.codefresh.io",
    "https://ops.gitlab.net",
    "https://sigstore.verify.ibm.com/oauth2",
    "https://token.actions.githubusercontent.com",
    "https://www.kaggle.com/api/v1/models/signing",
];

/// Fulcio's meta-issuers: `*` stands for one or more of `[-_a-zA-Z0-9]`.
const PUBLIC_SIGSTORE_META_ISSUERS: &[&str] = &[
    "https://*.oic.prod-aks.azure.com/*",
    "https://container.googleapis.com/v1/projects/*/locations/*/clusters/*",
    "https://oidc.circleci.com/org/*",
    "https://oidc.eks.*.amazonaws.com/id/*",
    "https://oidc.prod-aks.azure.com/*",
    "https://token.actions.githubusercontent.com/*",
];

/// Whether the public Sigstore instance issues certificates for this OIDC issuer.
pub fn is_public_sigstore_issuer(issuer: &str) -> bool {
    let issuer = issuer.trim_end_matches('/');
    // Issuers are written in lower case; a copy is made only for one that is not.
    let lowered;
    let issuer = if issuer.bytes().any(|b| b.is_ascii_uppercase()) {
        lowered = issuer.to_ascii_lowercase();
        lowered.as_str()
    } else {
        issuer
    };
    PUBLIC_SIGSTORE_ISSUERS.contains(&issuer)
        || PUBLIC_SIGSTORE_META_ISSUERS
            .iter()
            .any(|meta| meta_issuer_matches(meta, issuer))
}

fn meta_issuer_matches(meta: &str, issuer: &str) -> bool {
    match meta.split_once('*') {
        None => meta == issuer,
        Some((literal, rest)) => {
            let Some(tail) = issuer.strip_prefix(literal) else {
                return false;
            };
            let run = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
                .unwrap_or(tail.len());
            (1..=run).any(|n| meta_issuer_matches(rest, &tail[n..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broad(pattern: &str, field: IdentityField) -> Option<(String, String)> {
        match analyze(pattern, field) {
            Breadth::Broad { example, reason } => Some((example, reason)),
            _ => None,
        }
    }

    #[test]
    fn go_quoting_is_translated() {
        assert_eq!(translate_go_quotes(r"^\Qa.b\E$"), r"^a\.b$");
        assert_eq!(translate_go_quotes(r"\\Q"), r"\\Q");
        assert_eq!(translate_go_quotes(r"x\Q+"), r"x\+");
        assert!(matches!(
            analyze(r"^\Qhttps://gitlab.com\E$", IdentityField::Issuer),
            Breadth::Specific { .. }
        ));
    }

    #[test]
    fn samples_cover_each_alternative_and_optional_part() {
        let hir =
            regex_syntax::parse(r"^https://(gitlab\.com|gitlab\.example\.com)/?$").expect("parses");
        let found = samples(&hir);
        for expected in [
            "https://gitlab.com",
            "https://gitlab.com/",
            "https://gitlab.example.com",
            "https://gitlab.example.com/",
        ] {
            assert!(
                found.iter().any(|s| s == expected),
                "{expected} in {found:?}"
            );
        }
    }

    #[test]
    fn an_unescaped_dot_reads_as_the_host_it_names() {
        let Breadth::Specific { accepts } = analyze(
            "^https://token.actions.githubusercontent.com$",
            IdentityField::Issuer,
        ) else {
            panic!("specific");
        };
        assert_eq!(accepts, vec!["https://token.actions.githubusercontent.com"]);
    }

    #[test]
    fn case_insensitive_patterns_read_as_the_lowercase_identity() {
        let Breadth::Specific { accepts } =
            analyze(r"(?i)^https://GitLab\.com$", IdentityField::Issuer)
        else {
            panic!("specific");
        };
        assert_eq!(accepts, vec!["https://gitlab.com"]);
        assert!(is_public_sigstore_issuer("HTTPS://GITLAB.COM"));
    }

    #[test]
    fn host_extension_of_an_issuer_is_broad() {
        let (example, reason) =
            broad(r"^https://gitlab\.com", IdentityField::Issuer).expect("broad");
        assert_eq!(example, "https://gitlab.com.attacker.invalid");
        assert!(reason.contains("not anchored with $"), "{reason}");
    }

    #[test]
    fn a_group_prefix_without_a_slash_is_broad() {
        let (example, _) =
            broad(r"^https://gitlab\.com/acme", IdentityField::Subject).expect("broad");
        assert!(example.contains("acme-attacker"), "{example}");
        assert!(broad(r"^https://gitlab\.com/acme/", IdentityField::Subject).is_none());
    }

    #[test]
    fn any_group_with_a_fixed_project_name_is_broad() {
        let (example, reason) = broad(
            r"^https://gitlab\.com/[^/]+/app//\.gitlab-ci\.yml@refs/heads/main$",
            IdentityField::Subject,
        )
        .expect("broad");
        assert_eq!(
            example,
            "https://gitlab.com/attacker/app//.gitlab-ci.yml@refs/heads/main"
        );
        assert!(reason.contains("any group"), "{reason}");
    }

    #[test]
    fn email_subjects_must_pin_the_domain() {
        assert!(broad(r"^release@acme\.com$", IdentityField::Subject).is_none());
        assert!(broad(r"^release@.*$", IdentityField::Subject).is_some());
        assert!(broad(r"^release@acme\.com", IdentityField::Subject).is_some());
    }

    #[test]
    fn oversized_and_invalid_patterns_are_invalid() {
        assert!(matches!(
            analyze("(", IdentityField::Issuer),
            Breadth::Invalid(_)
        ));
        let long = "a".repeat(MAX_PATTERN_LEN + 1);
        assert!(matches!(
            analyze(&long, IdentityField::Subject),
            Breadth::Invalid(_)
        ));
    }

    #[test]
    fn public_sigstore_issuers_include_meta_issuers() {
        assert!(is_public_sigstore_issuer("https://gitlab.com"));
        assert!(is_public_sigstore_issuer("https://gitlab.com/"));
        assert!(is_public_sigstore_issuer(
            "https://token.actions.githubusercontent.com/acme"
        ));
        assert!(is_public_sigstore_issuer(
            "https://oidc.eks.eu-west-1.amazonaws.com/id/ABC123"
        ));
        assert!(!is_public_sigstore_issuer("https://gitlab.example.com"));
        assert!(!is_public_sigstore_issuer(
            "https://oidc.eks..amazonaws.com/id/x"
        ));
        assert!(!is_public_sigstore_issuer(
            "https://token.actions.githubusercontent.com/a/b"
        ));
    }
}
