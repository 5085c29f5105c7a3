//! The combined answer of every policy to one request, and its encoding as the answer to an
//! AdmissionReview.

use serde::Serialize;

use crate::admission::Answer;
use crate::budget::Exceeded;
use crate::finding::{Finding, Mode, PolicyId};

/// What a finding led to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "action", content = "exemption")]
pub enum Action {
    Deny,
    Warn,
    Audit,
    /// The policy found this, but an exemption (named) let the request through.
    Exempted(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    #[serde(flatten)]
    pub finding: Finding,
    pub mode: Mode,
    #[serde(flatten)]
    pub action: Action,
}

/// Why a request was allowed without asking any policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Skip {
    /// A subresource such as `status`: policies judge the object itself.
    Subresource,
}

/// The answer to one request.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verdict {
    pub allowed: bool,
    pub outcomes: Vec<Outcome>,
    /// Short texts for the client (the API server truncates long warnings).
    pub warnings: Vec<String>,
    pub patch: Vec<json_patch::PatchOperation>,
    /// Policies that matched the request and were evaluated.
    pub evaluated: Vec<PolicyId>,
    pub skipped: Option<Skip>,
    /// The budget that stopped the review before every policy had judged it whole.
    #[serde(skip)]
    pub unjudged: Option<Exceeded>,
    /// Findings left out past [`MAX_FINDINGS`] (their actions still count: a cut denial
    /// still denies).
    pub cut_findings: usize,
    /// Bytes cut from findings' messages past [`MAX_FINDING_BYTES`].
    pub cut_message_bytes: usize,
    /// Reservations this verdict depends on: an allowed request that adds a new agent
    /// installation stands only once the installation is reserved cluster-wide
    /// ([`crate::engine::settle_claims`]). Empty for almost every request.
    #[serde(skip)]
    pub claims: Vec<PendingClaim>,
}

/// A claim a policy made, with the mode the policy ran in: a refused reservation denies
/// (enforce) or warns (warn) like the policy's own findings.
#[derive(Debug, Clone)]
pub struct PendingClaim {
    pub policy: PolicyId,
    pub mode: Mode,
    pub claim: crate::cluster::reservation::Claim,
}

/// Warnings longer than this are cut; the full text is in the log.
pub const MAX_WARNING_CHARS: usize = 240;
/// Findings kept per review (one object): the rest are counted, not kept. A hostile object
/// can make thousands; a person reads the first few.
pub const MAX_FINDINGS: usize = 32;
/// A finding's message is cut at this many bytes (its log line with it).
pub const MAX_FINDING_BYTES: usize = 8 * 1024;
/// A denial's `status.message` stops adding findings past this many bytes; the API server
/// shows it to the person who applied the object.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024;

impl Verdict {
    pub fn allow() -> Self {
        Verdict {
            allowed: true,
            ..Verdict::default()
        }
    }

    pub fn denials(&self) -> impl Iterator<Item = &Outcome> {
        self.outcomes.iter().filter(|o| o.action == Action::Deny)
    }

    /// Adds a policy's finding with what it led to. Past [`MAX_FINDINGS`] the finding is
    /// only counted; a message longer than [`MAX_FINDING_BYTES`] is cut. Either way a denial
    /// denies and a warning warns.
    pub fn record(&mut self, mut finding: Finding, mode: Mode, action: Action) {
        match action {
            Action::Deny => self.allowed = false,
            Action::Warn if self.outcomes.len() < MAX_FINDINGS => self
                .warnings
                .push(short_warning(finding.policy, &finding.message)),
            _ => {}
        }
        if self.outcomes.len() >= MAX_FINDINGS {
            self.cut_findings += 1;
            return;
        }
        self.cut_message_bytes += cut_text(&mut finding.message, MAX_FINDING_BYTES);
        self.outcomes.push(Outcome {
            finding,
            mode,
            action,
        });
    }

    /// The `status.message` of a denial: every denying finding, each prefixed by its policy,
    /// up to [`MAX_MESSAGE_BYTES`], then how many more were cut.
    pub fn denial_message(&self) -> String {
        let mut message = String::new();
        let mut left_out = 0usize;
        for outcome in self.denials() {
            let text = &outcome.finding.message;
            let policy = outcome.finding.policy.as_str();
            if !message.is_empty()
                && message.len() + text.len() + policy.len() + 4 > MAX_MESSAGE_BYTES
            {
                left_out += 1;
                continue;
            }
            if !message.is_empty() {
                message.push('\n');
            }
            message.push('[');
            message.push_str(policy);
            message.push_str("] ");
            message.push_str(text);
        }
        let cut = left_out + self.cut_findings;
        if cut > 0 && !self.allowed {
            message.push_str(&format!(
                "\n({cut} more finding{} cut; the object has too many problems to list)",
                if cut == 1 { " was" } else { "s were" }
            ));
        }
        message
    }

    /// Whether the request is refused because its object is malformed (an input error: the
    /// answer is a 400, not a 403).
    pub fn bad_request(&self) -> bool {
        self.denials()
            .any(|o| o.finding.severity == crate::finding::Severity::Invalid)
    }

    /// The policies that fired, for logs.
    pub fn fired(&self) -> Vec<PolicyId> {
        let mut ids: Vec<PolicyId> = self.outcomes.iter().map(|o| o.finding.policy).collect();
        ids.sort();
        ids.dedup();
        ids
    }

    pub fn decision(&self) -> &'static str {
        if !self.allowed {
            "deny"
        } else if !self.warnings.is_empty() {
            "warn"
        } else {
            "allow"
        }
    }
}

/// A warning short enough for the API server, pointing at the log for the rest.
pub fn short_warning(policy: PolicyId, message: &str) -> String {
    let mut text = format!("[{policy}] {message}");
    if text.chars().count() > MAX_WARNING_CHARS {
        let cut: String = text.chars().take(MAX_WARNING_CHARS - 1).collect();
        text = format!("{cut}…");
    }
    text
}

/// Encodes the answer to a request: the uid echoed, allowed or denied with every denying
/// finding in the message, the warnings, and the patch.
pub fn encode(uid: &str, verdict: &Verdict) -> Vec<u8> {
    let message = verdict.denial_message();
    Answer {
        uid,
        allowed: verdict.allowed,
        bad_request: verdict.bad_request(),
        message: &message,
        warnings: &verdict.warnings,
        patch: &verdict.patch,
    }
    .encode()
}

/// Cuts `text` to at most `max` bytes (on a character boundary), saying so at the end;
/// returns how many bytes of the original were cut.
pub fn cut_text(text: &mut String, max: usize) -> usize {
    if text.len() <= max {
        return 0;
    }
    const NOTE: usize = 40;
    let mut end = max.saturating_sub(NOTE);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let cut = text.len() - end;
    text.truncate(end);
    text.push_str(&format!("… ({cut} bytes cut)"));
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denial(message: &str) -> Finding {
        Finding::violation(PolicyId::SignedOciSources, message)
    }

    #[test]
    fn findings_past_the_cap_are_counted_and_still_deny() {
        let mut verdict = Verdict::allow();
        for i in 0..MAX_FINDINGS + 10 {
            let action = if i == MAX_FINDINGS + 5 {
                Action::Deny
            } else {
                Action::Audit
            };
            verdict.record(denial(&format!("problem {i}")), Mode::Enforce, action);
        }
        assert_eq!(verdict.outcomes.len(), MAX_FINDINGS);
        assert_eq!(verdict.cut_findings, 10);
        assert!(!verdict.allowed, "a cut denial still denies");
        assert!(
            verdict
                .denial_message()
                .ends_with("(10 more findings were cut; the object has too many problems to list)"),
            "{}",
            verdict.denial_message()
        );
    }

    #[test]
    fn long_messages_are_cut_at_a_character_boundary() {
        let mut verdict = Verdict::allow();
        let long = "é".repeat(MAX_FINDING_BYTES);
        verdict.record(denial(&long), Mode::Enforce, Action::Deny);
        let kept = &verdict.outcomes[0].finding.message;
        assert!(kept.len() <= MAX_FINDING_BYTES, "{}", kept.len());
        assert!(kept.ends_with("bytes cut)"), "{kept}");
        let prefix = &kept[..kept.rfind('…').expect("the note")];
        assert!(long.starts_with(prefix));
        assert_eq!(verdict.cut_message_bytes, long.len() - prefix.len());
    }

    #[test]
    fn the_denial_message_stays_under_its_cap() {
        let mut verdict = Verdict::allow();
        for i in 0..MAX_FINDINGS {
            verdict.record(
                denial(&format!("{i} {}", "x".repeat(MAX_FINDING_BYTES / 2))),
                Mode::Enforce,
                Action::Deny,
            );
        }
        let message = verdict.denial_message();
        assert!(
            message.len() <= MAX_MESSAGE_BYTES + 100,
            "{}",
            message.len()
        );
        assert!(message.contains("more findings were cut"), "{message}");
    }
}
