//! GitLab Code Quality (a subset of the Code Climate issue format), for
//! `artifacts:reports:codequality`: the merge request widget shows findings that a branch adds
//! or fixes, matching issues between pipelines by `fingerprint`.
//!
//! Fingerprints hash the policy, the file, the object's identity (group, kind, namespace,
//! name, List item, or the agent configuration entry) and the message; never line numbers, so
//! an edit elsewhere in the file does not turn an old finding into a "new" one. The API
//! version is left out too: moving an object from `v1beta2` to `v1` is not a new problem.
//! Two findings with the same identity in one run (the same object twice in a file) get
//! `#2`, `#3`... appended before hashing, as GitLab keeps only one issue per fingerprint.

use std::collections::HashMap;
use std::io::{self, Write};

use serde::Serialize;

use super::{Action, Report, Subject};
use crate::finding::Severity;

/// FNV-1a, 128 bits: small, stable across platforms and releases (unlike `DefaultHasher`),
/// and wide enough that distinct findings do not collide in practice. Not for secrets.
fn fnv1a_128(bytes: impl IntoIterator<Item = u8>) -> u128 {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    bytes
        .into_iter()
        .fold(OFFSET, |hash, b| (hash ^ u128::from(b)).wrapping_mul(PRIME))
}

/// A stable 32-hex-digit fingerprint of the parts, in order. `0xFF` (never in UTF-8)
/// separates them, so `("ab", "c")` and `("a", "bc")` differ.
pub fn fingerprint(parts: &[&str]) -> String {
    let bytes = parts
        .iter()
        .enumerate()
        .flat_map(|(i, p)| (i > 0).then_some(0xFFu8).into_iter().chain(p.bytes()));
    format!("{:032x}", fnv1a_128(bytes))
}

/// Gives each fingerprint identity an occurrence number within a run.
#[derive(Default)]
pub(crate) struct Fingerprints {
    seen: HashMap<String, usize>,
}

impl Fingerprints {
    pub(crate) fn next(&mut self, parts: &[&str]) -> String {
        let base = fingerprint(parts);
        let n = self.seen.entry(base.clone()).or_insert(0);
        *n += 1;
        if *n == 1 {
            base
        } else {
            let occurrence = format!("#{n}");
            let mut with = parts.to_vec();
            with.push(&occurrence);
            fingerprint(&with)
        }
    }
}

#[derive(Serialize)]
struct Issue<'a> {
    #[serde(rename = "type")]
    issue_type: &'static str,
    check_name: &'a str,
    description: String,
    categories: [&'static str; 1],
    severity: &'static str,
    fingerprint: &'a str,
    location: Location<'a>,
}

#[derive(Serialize)]
struct Location<'a> {
    path: &'a str,
    lines: Lines,
}

#[derive(Serialize)]
struct Lines {
    begin: usize,
}

/// Denials block the object in a cluster: critical. A violation only warned about or audited
/// is still a real problem: major. Advice: minor. Exempted findings are accepted risk and left
/// out of the merge request widget.
fn severity(action: Action, severity: Severity) -> Option<&'static str> {
    match (action, severity) {
        (Action::Exempted, _) => None,
        (Action::Deny, _) => Some("critical"),
        (_, Severity::Violation | Severity::Invalid) => Some("major"),
        (_, Severity::Advisory) => Some("minor"),
    }
}

fn issues_of<'a>(subject: &'a Subject, issues: &mut Vec<Issue<'a>>) {
    for finding in &subject.findings {
        let Some(severity) = severity(finding.action, finding.severity) else {
            continue;
        };
        issues.push(Issue {
            issue_type: "issue",
            check_name: finding.policy.as_str(),
            description: format!("[{}] {}", finding.policy, finding.message),
            categories: ["Security"],
            severity,
            fingerprint: &finding.fingerprint,
            location: Location {
                path: &subject.file,
                lines: Lines {
                    begin: finding.line,
                },
            },
        });
    }
}

/// Writes the report as a Code Quality JSON array.
pub fn write(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    let mut issues = Vec::new();
    for subject in &report.results {
        issues_of(subject, &mut issues);
    }
    // The message holds line numbers; a file has at most one read error per run.
    let mut prints = Fingerprints::default();
    let error_prints: Vec<String> = report
        .errors
        .iter()
        .map(|e| prints.next(&["unreadable-input", &e.file]))
        .collect();
    for (error, print) in report.errors.iter().zip(&error_prints) {
        issues.push(Issue {
            issue_type: "issue",
            check_name: "unreadable-input",
            description: format!("fluxgate check cannot read this file: {}", error.display()),
            categories: ["Bug Risk"],
            severity: "blocker",
            fingerprint: print,
            location: Location {
                path: &error.file,
                lines: Lines {
                    begin: error.line.unwrap_or(1),
                },
            },
        });
    }
    serde_json::to_writer_pretty(&mut *out, &issues)?;
    writeln!(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_stable_and_separate_their_parts() {
        // Pinned: a change here changes every fingerprint users' merge requests compare.
        assert_eq!(fingerprint(&[]), "6c62272e07bb014262b821756295c58d");
        assert_eq!(fingerprint(&["a"]), "d228cb696f1a8caf78912b704e4a8964");
        assert_ne!(fingerprint(&["ab", "c"]), fingerprint(&["a", "bc"]));
    }

    #[test]
    fn repeated_identities_get_distinct_fingerprints() {
        let mut prints = Fingerprints::default();
        let a = prints.next(&["p", "f"]);
        let b = prints.next(&["p", "f"]);
        let c = prints.next(&["p", "g"]);
        assert_eq!(a, fingerprint(&["p", "f"]));
        assert_ne!(a, b);
        assert_ne!(b, c);
    }
}
