//! The policy interface: every rule fluxgate enforces is a [`Policy`], a pure function of
//! (request, its own settings, cluster view) that returns findings with reasons a human can act
//! on. A policy sees its own block of the configuration file and nothing else of it: the
//! configuration gathers the blocks, the engine hands each policy its own (`engine::AnyPolicy`).

use std::cell::RefCell;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use serde_json::value::RawValue;

use crate::admission::{Operation, Request};
use crate::budget::Budget;
use crate::cluster::ClusterView;
use crate::cluster::reservation::Claim;
use crate::finding::{Finding, Mode, PolicyId, object_ref};
use crate::json_view::{Skims, parse_raw};

pub mod ci_impersonation;
pub mod oci_version_pinning;
pub mod secret_rotation;
pub mod signed_oci_sources;
pub mod single_agent;
pub mod tenant_lockdown;

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
    /// JSON pointers of the fields the verdict depends on: every field the policy reads of
    /// an object of this kind (tests/judged_fields.rs holds each policy to its list). An
    /// UPDATE that leaves all of them equal to `oldObject` is never blocked: controllers must
    /// be able to add and remove finalizers and labels on objects that predate the policy. An
    /// UPDATE that changes one is judged, whether or not the object is being deleted (a
    /// finalizer keeps an object doing what it did). Empty: every UPDATE is judged, and the
    /// policy compares old and new itself.
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

/// Everything a policy may read while judging one request: the request, its own settings
/// (`S`, its block of the configuration file) and the cluster view.
pub struct Context<'a, S = ()> {
    pub request: &'a Request<'a>,
    /// The judging policy's settings.
    pub settings: &'a S,
    pub view: &'a dyn ClusterView,
    /// The review's work budget: loops over what the requester controls charge it and stop
    /// at its first error (see [`crate::budget`]); the engine turns that into a denial.
    pub budget: &'a Budget,
    /// Shared by the views the policies read of this request's objects.
    skims: &'a Skims<'a>,
    /// Where [`Context::claim`] puts what a policy needs reserved before its verdict stands;
    /// none in a context that judges without reserving.
    claims: Option<&'a RefCell<Vec<Claim>>>,
}

impl<'a> Context<'a> {
    /// A context without settings. `skims` is shared by every context made from it (see
    /// [`Context::with_settings`]): one policy's view of an object finds what another's learnt.
    pub fn new(
        request: &'a Request<'a>,
        view: &'a dyn ClusterView,
        budget: &'a Budget,
        skims: &'a Skims<'a>,
    ) -> Self {
        Context {
            request,
            settings: &(),
            view,
            budget,
            skims,
            claims: None,
        }
    }

    /// The same context, collecting the claims its policies make in `claims` (the engine
    /// hands them to whoever answers the request).
    pub fn collecting_claims(self, claims: &'a RefCell<Vec<Claim>>) -> Self {
        Context {
            claims: Some(claims),
            ..self
        }
    }
}

impl<'a, S> Context<'a, S> {
    /// The same request, view, budget and shared skims, with one policy's settings.
    pub fn with_settings<T>(&self, settings: &'a T) -> Context<'a, T> {
        Context {
            request: self.request,
            settings,
            view: self.view,
            budget: self.budget,
            skims: self.skims,
            claims: self.claims,
        }
    }

    /// Asks for a new agent installation to be reserved cluster-wide before this request is
    /// allowed (see [`crate::cluster::reservation`]). The policy stays a pure function: the
    /// engine hands the claim to whoever answers the request, which makes the reservation
    /// and turns the verdict into a denial if another installation holds it. A context that
    /// collects no claims (a judgement that reserves nothing) drops it.
    pub fn claim(&self, claim: Claim) {
        if let Some(claims) = self.claims {
            claims.borrow_mut().push(claim);
        }
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
        crate::json_view::from_raw_with(raw, self.skims).or_else(|_| parse_raw(raw.get()))
    }

    /// [`Context::view_of`] where a malformed object is simply not of interest.
    pub fn skim<T: Deserialize<'a>>(&self, raw: &'a RawValue) -> Option<T> {
        crate::json_view::from_raw_with(raw, self.skims).ok()
    }
}

/// A rule fluxgate enforces.
pub trait Policy: Send + Sync {
    /// This policy's block of the configuration file (`()` for a policy without one), the
    /// only part of the configuration it sees.
    type Settings;

    fn id(&self) -> PolicyId;

    /// The kinds this policy judges. The webhook configurations in `deploy/` are checked
    /// against this list, so code and deployment cannot drift apart.
    fn kinds(&self) -> &'static [KindRule];

    /// Judges the request. An empty list means the object follows the rule.
    fn validate(&self, ctx: &Context<'_, Self::Settings>) -> Vec<Finding>;

    /// Objects from the cluster this request will be judged against, so that the server can
    /// have the cluster view refresh them first (see [`ClusterView::refresh`]).
    fn prefetch(&self, _request: &Request<'_>) -> Vec<crate::cluster::ObjectKey> {
        Vec::new()
    }

    /// JSON Patch operations that make the object follow the rule, for `/mutate`.
    fn mutate(&self, _ctx: &Context<'_, Self::Settings>) -> Vec<json_patch::PatchOperation> {
        Vec::new()
    }

    /// Subresources whose writes can break the rule as much as a write of the object itself.
    fn subresources(&self) -> &'static [SubresourceRule] {
        &[]
    }
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
