//! The policy interface: every rule fluxgate enforces is a [`Policy`], a pure function of
//! (request, configuration, cluster view) that returns findings with reasons a human can act on.
//! The webhook, the audit scan and `fluxgate check` all call policies through this module.

use std::fmt;
use std::str::FromStr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use serde_json::value::RawValue;

use std::cell::RefCell;

use crate::admission::{Operation, Request};
use crate::cluster::ClusterView;
use crate::cluster::reservation::Claim;
use crate::config::Config;
use crate::json_view::Skims;

pub mod ci_impersonation;
pub mod oci_version_pinning;
pub mod secret_rotation;
pub mod signed_oci_sources;
pub mod single_agent;
pub mod tenant_lockdown;

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
}

/// A kind a policy judges, in every version the cluster serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindRule {
    pub group: &'static str,
    pub kind: &'static str,
    /// The plural resource name, for webhook rules.
    pub resource: &'static str,
    /// Judged when the API server sends it, but left out of the default webhook rules: a
    /// fail-closed webhook on Pods (or the ReplicaSets every rollout makes) can lock a
    /// cluster. The audit scan covers these; an opt-in rule with `failurePolicy: Ignore`
    /// can send them.
    pub opt_in: bool,
    pub operations: &'static [Operation],
    /// JSON pointers of the fields the verdict depends on. An UPDATE that leaves all of them
    /// equal to `oldObject` is never blocked: controllers must be able to add finalizers and
    /// labels to objects that predate the policy.
    pub judged_fields: &'static [&'static str],
}

pub const CREATE_UPDATE: &[Operation] = &[Operation::Create, Operation::Update];

/// A subresource whose writes a policy judges. The API server sends the whole parent object
/// for these (a `pods/ephemeralcontainers` UPDATE carries the Pod), so the policy judges it
/// like an UPDATE of the parent; every other subresource (`status`, `scale`) is never judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubresourceRule {
    pub group: &'static str,
    pub kind: &'static str,
    /// The parent's plural resource name, for webhook rules (`pods`).
    pub resource: &'static str,
    /// The subresource (`ephemeralcontainers`); webhook rules name `resource/subresource`.
    pub subresource: &'static str,
    /// Left out of the default webhook rules, like [`KindRule::opt_in`].
    pub opt_in: bool,
    pub operations: &'static [Operation],
}

/// Everything a policy may read while judging one request.
pub struct Context<'a> {
    pub request: &'a Request<'a>,
    pub config: &'a Config,
    pub view: &'a dyn ClusterView,
    /// Shared by the views the policies read of this request's objects.
    skims: Skims<'a>,
    /// What the policy judging now needs reserved before its verdict stands
    /// ([`Context::claim`]).
    claims: RefCell<Vec<Claim>>,
}

impl<'a> Context<'a> {
    pub fn new(request: &'a Request<'a>, config: &'a Config, view: &'a dyn ClusterView) -> Self {
        Context {
            request,
            config,
            view,
            skims: Skims::indexed(request.index.clone()),
            claims: RefCell::new(Vec::new()),
        }
    }

    /// Asks for a new agent installation to be reserved cluster-wide before this request is
    /// allowed (see [`crate::cluster::reservation`]). The policy stays a pure function: the
    /// engine hands the claim to whoever answers the request, which makes the reservation
    /// and turns the verdict into a denial if another installation holds it.
    pub fn claim(&self, claim: Claim) {
        self.claims.borrow_mut().push(claim);
    }

    /// The claims made since the last call.
    pub fn take_claims(&self) -> Vec<Claim> {
        std::mem::take(&mut *self.claims.borrow_mut())
    }

    /// `Kind namespace/name` (or `Kind name` for cluster-scoped objects), as messages name objects.
    pub fn object_ref(&self) -> String {
        object_ref(
            &self.request.kind.kind,
            self.request.namespace(),
            self.request.name(),
        )
    }

    /// Parses `request.object` into a policy's typed view of it. A missing or malformed object
    /// is a violation with a message that says what is malformed: an object the policy cannot
    /// read is never allowed silently.
    pub fn parse_object<T: DeserializeOwned>(&self, policy: PolicyId) -> Result<T, Finding> {
        self.read_object(policy)
    }

    /// Like [`Context::parse_object`], into a typed view that borrows from the request.
    pub fn read_object<T: Deserialize<'a>>(&self, policy: PolicyId) -> Result<T, Finding> {
        let raw = self.request.object.ok_or_else(|| {
            Finding::violation(
                policy,
                format!("{} has no object in the request", self.object_ref()),
            )
        })?;
        self.view_of(raw).map_err(|e| {
            Finding::violation(
                policy,
                format!("{} is malformed: {e}; fix the manifest", self.object_ref()),
            )
        })
    }

    /// A typed view of one of the request's objects (`object` or `oldObject`), reading only
    /// the members the view declares; a malformed object is read again for a message that
    /// says where it is malformed.
    pub fn view_of<T: Deserialize<'a>>(&self, raw: &'a RawValue) -> Result<T, String> {
        crate::json_view::from_raw_with(raw, &self.skims).or_else(|_| parse_raw(raw.get()))
    }

    /// [`Context::view_of`] where a malformed object is simply not of interest.
    pub fn skim<T: Deserialize<'a>>(&self, raw: &'a RawValue) -> Option<T> {
        crate::json_view::from_raw_with(raw, &self.skims).ok()
    }
}

/// Parses JSON into `T` (borrowing strings from it where `T` does), with the path of the
/// offending field in the error (`spec.verify.matchOIDCIdentity[0].issuer: invalid type...`).
pub fn parse_raw<'a, T: serde::Deserialize<'a>>(json: &'a str) -> Result<T, String> {
    // Tracking the path costs an allocation per key; only a malformed object needs it.
    if let Ok(parsed) = serde_json::from_str(json) {
        return Ok(parsed);
    }
    let mut de = serde_json::Deserializer::from_str(json);
    serde_path_to_error::deserialize(&mut de).map_err(|e| describe_parse_error(&e))
}

/// A parse error as findings show it: the path of the field and what is wrong with it, but
/// never the value. serde quotes the offending string (`invalid type: string "…"`), and a
/// string in the wrong place may be a token or a password: findings reach logs, warnings,
/// PolicyReports and CI reports.
pub fn describe_parse_error(e: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let path = e.path().to_string();
    let message = without_values(&e.inner().to_string());
    if path.is_empty() || path == "." {
        message
    } else {
        format!("{path}: {message}")
    }
}

/// Replaces the values serde quotes in its messages with their type.
pub fn without_values(message: &str) -> String {
    static QUOTED: std::sync::LazyLock<Option<regex::Regex>> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r#"string "(?:[^"\\]|\\.)*"|(variant|char) (?:`[^`]*`|'[^']*')"#).ok()
    });
    match QUOTED.as_ref() {
        Some(quoted) => quoted
            .replace_all(message, |caps: &regex::Captures<'_>| match caps.get(1) {
                Some(what) => what.as_str().to_string(),
                None => "a string".to_string(),
            })
            .into_owned(),
        None => "a value of the wrong type or form".to_string(),
    }
}

pub fn object_ref(kind: &str, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) if !ns.is_empty() => format!("{kind} {ns}/{name}"),
        _ => format!("{kind} {name}"),
    }
}

/// A rule fluxgate enforces.
pub trait Policy: Send + Sync {
    fn id(&self) -> PolicyId;

    /// The kinds this policy judges. The webhook configurations in `deploy/` are checked
    /// against this list, so code and deployment cannot drift apart.
    fn kinds(&self) -> &'static [KindRule];

    /// Judges the request. An empty list means the object follows the rule.
    fn validate(&self, ctx: &Context<'_>) -> Vec<Finding>;

    /// Objects from the cluster this request will be judged against, so that the server can
    /// have the cluster view refresh them first (see [`ClusterView::refresh`]).
    fn prefetch(&self, _request: &Request<'_>) -> Vec<crate::cluster::ObjectKey> {
        Vec::new()
    }

    /// JSON Patch operations that make the object follow the rule, for `/mutate`.
    fn mutate(&self, _ctx: &Context<'_>) -> Vec<json_patch::PatchOperation> {
        Vec::new()
    }

    /// Subresources whose writes can break the rule as much as a write of the object itself.
    fn subresources(&self) -> &'static [SubresourceRule] {
        &[]
    }
}

/// Every policy fluxgate has, by id.
// Placeholder policies are unit structs until their issues land; `::default()` keeps this list
// unchanged when they gain state.
#[allow(clippy::default_constructed_unit_structs)]
pub fn registry() -> Vec<Box<dyn Policy>> {
    vec![
        Box::new(signed_oci_sources::SignedOciSources::default()),
        Box::new(single_agent::SingleAgent::default()),
        Box::new(ci_impersonation::CiImpersonation),
        Box::new(secret_rotation::SecretRotation),
        Box::new(tenant_lockdown::TenantLockdown::default()),
        Box::new(oci_version_pinning::OciVersionPinning::default()),
    ]
}

/// The settings block of one policy in the configuration file. Every policy has a `mode`;
/// the rest is its own.
pub trait PolicySettings: DeserializeOwned + Default {
    fn mode(&self) -> Option<Mode>;
    /// Checks values serde cannot (regexes, ranges) and precompiles them.
    fn validate(&mut self) -> Result<(), SettingError> {
        Ok(())
    }
}

/// A bad value in a policy's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingError {
    /// The key relative to the policy's block, e.g. `allowedRegistries[2]`; empty for the block.
    pub key: String,
    pub message: String,
}

impl SettingError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        SettingError {
            key: key.into(),
            message: message.into(),
        }
    }
}
