//! The vocabulary of judgements: which policy ([`PolicyId`]), how it acts on what it finds
//! ([`Mode`]), and what it found ([`Finding`], with its [`Severity`]). Every layer from the
//! policies up speaks it; it knows nothing of any one policy.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The stable ids users write in configuration and scripts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicyId {
    SignedOciSources,
    SingleAgent,
    CiImpersonation,
    SecretRotation,
    TenantLockdown,
    OciVersionPinning,
}

impl PolicyId {
    pub const ALL: &'static [PolicyId] = &[
        PolicyId::SignedOciSources,
        PolicyId::SingleAgent,
        PolicyId::CiImpersonation,
        PolicyId::SecretRotation,
        PolicyId::TenantLockdown,
        PolicyId::OciVersionPinning,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PolicyId::SignedOciSources => "signed-oci-sources",
            PolicyId::SingleAgent => "single-agent",
            PolicyId::CiImpersonation => "ci-impersonation",
            PolicyId::SecretRotation => "secret-rotation",
            PolicyId::TenantLockdown => "tenant-lockdown",
            PolicyId::OciVersionPinning => "oci-version-pinning",
        }
    }
}

impl fmt::Display for PolicyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PolicyId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PolicyId::ALL
            .iter()
            .copied()
            .find(|id| id.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = PolicyId::ALL.iter().map(|id| id.as_str()).collect();
                format!("unknown policy id {s:?}; known: {}", known.join(", "))
            })
    }
}

impl Serialize for PolicyId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for PolicyId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What happens when a policy finds a violation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Deny the request.
    #[default]
    Enforce,
    /// Allow, and tell the client with an AdmissionResponse warning.
    Warn,
    /// Allow; log, count and report only.
    Audit,
    /// Do not evaluate.
    Off,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Warn => "warn",
            Mode::Audit => "audit",
            Mode::Off => "off",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "enforce" => Ok(Mode::Enforce),
            "warn" => Ok(Mode::Warn),
            "audit" => Ok(Mode::Audit),
            "off" => Ok(Mode::Off),
            other => Err(format!(
                "unknown mode {other:?}; expected enforce, warn, audit or off"
            )),
        }
    }
}

/// How serious a finding is, independent of the policy's mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Breaks the rule: denied in enforce mode.
    Violation,
    /// Advice that never denies, whatever the mode (for example, a setting Flux ignores).
    Advisory,
    /// The object is malformed: the API server would refuse it. An input error, not a policy
    /// violation: denied in enforce mode with a 400 (Bad Request) answer, and an input error
    /// (exit code 2) in `fluxgate check`.
    Invalid,
}

/// One reason a policy gives about one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub policy: PolicyId,
    pub severity: Severity,
    /// The full text: names the object, says what is wrong and how to fix it.
    pub message: String,
}

impl Finding {
    pub fn violation(policy: PolicyId, message: impl Into<String>) -> Self {
        Finding {
            policy,
            severity: Severity::Violation,
            message: message.into(),
        }
    }

    pub fn advisory(policy: PolicyId, message: impl Into<String>) -> Self {
        Finding {
            policy,
            severity: Severity::Advisory,
            message: message.into(),
        }
    }

    /// An object the API server would refuse (see [`Severity::Invalid`]).
    pub fn invalid(policy: PolicyId, message: impl Into<String>) -> Self {
        Finding {
            policy,
            severity: Severity::Invalid,
            message: message.into(),
        }
    }
}

/// `Kind namespace/name` (or `Kind name` for cluster-scoped objects), as messages name objects.
pub fn object_ref(kind: &str, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) if !ns.is_empty() => format!("{kind} {ns}/{name}"),
        _ => format!("{kind} {name}"),
    }
}
