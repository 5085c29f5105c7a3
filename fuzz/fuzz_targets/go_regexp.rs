//! The reader of Go's `regexp/syntax` behind `signed-oci-sources`' identity analysis.
//!
//! Input: a pattern, then texts, separated by NUL bytes (read as UTF-8, lossily). Any pattern
//! is read or refused, never a panic, within bounded work (libFuzzer's `-timeout`), and:
//! - what is read agrees with itself: `(?:P)` matches exactly the texts `P` matches;
//! - the identity analysis calls a pattern invalid exactly when the reader refuses it as Go
//!   would (patterns within the length bound);
//! - every example a denial shows is a subject or issuer the pattern accepts, and every rule's
//!   message can be formed (issuers of every kind: GitLab, GitHub, email, other).
#![no_main]

use fluxgate::policy::signed_oci_sources::identity::{
    Breadth, GoRegexp, GoRegexpError, SubjectBreadth, SubjectRule, analyze_issuer,
    analyze_subject,
};
use libfuzzer_sys::fuzz_target;

/// `MAX_PATTERN_LEN` of the analysis: longer patterns are broad before they are read.
const ANALYSED_LEN: usize = 1024;

fuzz_target!(|input: &[u8]| {
    let text = String::from_utf8_lossy(input);
    let mut parts = text.split('\0');
    let pattern = parts.next().unwrap_or_default();
    let texts: Vec<&str> = parts.take(16).collect();

    let read = GoRegexp::new(pattern);
    if let Ok(re) = &read {
        let grouped = match GoRegexp::new(&format!("(?:{pattern})")) {
            // `\Q` without `\E` quotes to the end of the pattern, the closing `)` too (as in
            // Go: `(?:\Qa)` is "missing closing )"); end the quote before closing the group.
            Err(GoRegexpError::Go(_)) if pattern.contains("\\Q") => {
                GoRegexp::new(&format!("(?:{pattern}\\E)"))
            }
            other => other,
        };
        match &grouped {
            Ok(grouped) => {
                for t in &texts {
                    assert_eq!(re.is_match(t), grouped.is_match(t), "{pattern:?} on {t:?}");
                }
            }
            Err(GoRegexpError::Bound) => {}
            Err(GoRegexpError::Go(e)) => panic!("{pattern:?} reads, (?:{pattern}) does not: {e}"),
        }
    }
    let refused = matches!(read, Err(GoRegexpError::Go(_)));
    let accepts = |example: &str| match &read {
        Ok(re) => example.is_empty() || pattern.is_empty() || re.is_match(example),
        Err(_) => true,
    };

    match analyze_issuer(pattern) {
        Breadth::Invalid(e) => assert!(refused, "{pattern:?}: invalid ({e}), yet it reads"),
        Breadth::Broad(broad) => {
            assert!(!refused || pattern.len() > ANALYSED_LEN, "{pattern:?}");
            assert!(!broad.reason.is_empty());
            assert!(accepts(&broad.example), "{pattern:?}: {broad:?}");
        }
        Breadth::Specific(_) => assert!(!refused, "{pattern:?}"),
    }

    let hosts = ["gitlab.com", "github.com", "gitlab.example.com"];
    match analyze_subject(pattern, &hosts) {
        SubjectBreadth::Invalid(e) => assert!(refused, "{pattern:?}: invalid ({e}), yet it reads"),
        SubjectBreadth::Judged(subjects) => {
            assert!(!refused || pattern.len() > ANALYSED_LEN, "{pattern:?}");
            let trusted = |domain: &str| domain == "acme.com";
            for rule in [
                SubjectRule::GitLab { host: "gitlab.com" },
                SubjectRule::GitLab {
                    host: "gitlab.example.com",
                },
                SubjectRule::Namespaces { host: "github.com" },
                SubjectRule::Emails,
                SubjectRule::Whole,
                SubjectRule::AnyIssuer,
            ] {
                if let Some(broad) = subjects.broad(rule, &trusted) {
                    assert!(!broad.reason.is_empty(), "{pattern:?} {rule:?}");
                    assert!(accepts(&broad.example), "{pattern:?} {rule:?}: {broad:?}");
                }
            }
        }
    }
});
