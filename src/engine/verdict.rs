//! The combined answer of every policy to one request, and its encoding as the answer to an
//! AdmissionReview.

use serde::Serialize;

use crate::admission::Answer;
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
}

/// Warnings longer than this are cut; the full text is in the log.
pub const MAX_WARNING_CHARS: usize = 240;

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

    /// The `status.message` of a denial: every denying finding, each prefixed by its policy.
    pub fn denial_message(&self) -> String {
        let mut message = String::new();
        for outcome in self.denials() {
            if !message.is_empty() {
                message.push('\n');
            }
            message.push('[');
            message.push_str(outcome.finding.policy.as_str());
            message.push_str("] ");
            message.push_str(&outcome.finding.message);
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
