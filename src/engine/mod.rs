//! The policy engine: one path from a decoded request to a [`Verdict`], shared by the
//! webhook, the audit scan and `fluxgate check`.

use std::sync::Arc;

use arc_swap::ArcSwap;
use serde_json::value::RawValue;

use crate::admission::{Operation, Request};
use crate::budget::{Budget, Exceeded};
use crate::cluster::reservation::{LocalReservations, Reservations, Reserved};
use crate::cluster::{ClusterView, ObjectKey};
use crate::config::{Config, Section};
use crate::finding::{Finding, Mode, PolicyId, Severity};
use crate::json_view::Skims;
use crate::policy::{
    Context, KindRule, Policy, SubresourceRule, ci_impersonation, oci_version_pinning,
    secret_rotation, signed_oci_sources, single_agent, tenant_lockdown,
};

pub mod exemption;
pub mod verdict;

use verdict::{Action, PendingClaim, Skip, Verdict};

/// Which endpoint a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Validate,
    Mutate,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Validate => "validate",
            Endpoint::Mutate => "mutate",
        }
    }
}

/// An exemption that let a request skip a policy, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExemptionUse {
    pub policy: PolicyId,
    pub exemption: String,
}

/// A policy as the engine holds it, whatever its settings: each call finds the policy's own
/// settings in the configuration ([`Section`]) and hands it those alone. Every [`Policy`]
/// whose settings the configuration gathers is one.
pub trait AnyPolicy: Send + Sync {
    fn id(&self) -> PolicyId;
    fn kinds(&self) -> &'static [KindRule];
    fn subresources(&self) -> &'static [SubresourceRule];
    fn prefetch(&self, request: &Request<'_>) -> Vec<ObjectKey>;
    /// [`Policy::validate`] with the policy's settings from `config`.
    fn validate<'a>(&self, ctx: &Context<'a>, config: &'a Config) -> Vec<Finding>;
    /// [`Policy::mutate`] with the policy's settings from `config`.
    fn mutate<'a>(&self, ctx: &Context<'a>, config: &'a Config) -> Vec<json_patch::PatchOperation>;
}

impl<P> AnyPolicy for P
where
    P: Policy,
    P::Settings: Section,
{
    fn id(&self) -> PolicyId {
        Policy::id(self)
    }

    fn kinds(&self) -> &'static [KindRule] {
        Policy::kinds(self)
    }

    fn subresources(&self) -> &'static [SubresourceRule] {
        Policy::subresources(self)
    }

    fn prefetch(&self, request: &Request<'_>) -> Vec<ObjectKey> {
        Policy::prefetch(self, request)
    }

    fn validate<'a>(&self, ctx: &Context<'a>, config: &'a Config) -> Vec<Finding> {
        Policy::validate(self, &ctx.with_settings(P::Settings::of(config)))
    }

    fn mutate<'a>(&self, ctx: &Context<'a>, config: &'a Config) -> Vec<json_patch::PatchOperation> {
        Policy::mutate(self, &ctx.with_settings(P::Settings::of(config)))
    }
}

/// Every policy fluxgate has, by id.
// Placeholder policies are unit structs until their issues land; `::default()` keeps this list
// unchanged when they gain state.
#[allow(clippy::default_constructed_unit_structs)]
pub fn registry() -> Vec<Box<dyn AnyPolicy>> {
    vec![
        Box::new(signed_oci_sources::SignedOciSources::default()),
        Box::new(single_agent::SingleAgent::default()),
        Box::new(ci_impersonation::CiImpersonation),
        Box::new(secret_rotation::SecretRotation),
        Box::new(tenant_lockdown::TenantLockdown::default()),
        Box::new(oci_version_pinning::OciVersionPinning::default()),
    ]
}

/// Holds the policies and the current configuration.
pub struct Engine {
    policies: Vec<Box<dyn AnyPolicy>>,
    config: ArcSwap<Config>,
    mode_override: Option<Mode>,
}

impl Engine {
    /// An engine with every policy. `mode_override` (`serve --mode audit`) replaces every
    /// policy's mode, whatever the configuration says.
    pub fn new(config: Config, mode_override: Option<Mode>) -> Self {
        Engine::with_policies(registry(), config, mode_override)
    }

    pub fn with_policies(
        policies: Vec<Box<dyn AnyPolicy>>,
        mut config: Config,
        mode_override: Option<Mode>,
    ) -> Self {
        config.precompile();
        Engine {
            policies,
            config: ArcSwap::from_pointee(config),
            mode_override,
        }
    }

    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// Swaps in a new configuration; requests in flight finish with the one they started with.
    pub fn set_config(&self, mut config: Config) {
        config.precompile();
        self.config.store(Arc::new(config));
    }

    pub fn policies(&self) -> &[Box<dyn AnyPolicy>] {
        &self.policies
    }

    /// The mode a policy runs in now.
    pub fn mode_of(&self, config: &Config, policy: PolicyId) -> Mode {
        self.mode_override.unwrap_or_else(|| config.mode_of(policy))
    }

    /// Every kind some policy judges, for webhook rules and the cluster view.
    pub fn kinds(&self) -> Vec<(PolicyId, &'static KindRule)> {
        self.policies
            .iter()
            .flat_map(|p| p.kinds().iter().map(move |k| (p.id(), k)))
            .collect()
    }

    /// The kind as a policy spells it, if some policy judges it: a bounded set of names for
    /// metric labels, whatever kinds clients send.
    pub fn known_kind(&self, group: &str, kind: &str) -> Option<&'static str> {
        self.policies
            .iter()
            .flat_map(|p| p.kinds().iter())
            .find(|rule| {
                rule.group.eq_ignore_ascii_case(group) && rule.kind.eq_ignore_ascii_case(kind)
            })
            .map(|rule| rule.kind)
    }

    /// Every subresource some policy judges, for webhook rules.
    pub fn subresources(&self) -> Vec<(PolicyId, &'static SubresourceRule)> {
        self.policies
            .iter()
            .flat_map(|p| p.subresources().iter().map(move |s| (p.id(), s)))
            .collect()
    }

    /// The objects the matching policies want refreshed in the cluster view before
    /// [`Engine::review`] (see [`ClusterView::refresh`]).
    pub fn prefetch(&self, request: &Request<'_>) -> Vec<ObjectKey> {
        let canonical = self.canonical_kind(request);
        let request = canonical.as_ref().unwrap_or(request);
        self.policies
            .iter()
            .filter(|p| matching_rule(p.kinds(), request).is_some())
            .flat_map(|p| p.prefetch(request))
            .collect()
    }

    /// The request with its group and kind spelled as a policy's rule spells them, when they
    /// differ only in case. The API server always sends the canonical spelling (it resolves
    /// kinds case-sensitively, and webhook rules match plural resource names), but `fluxgate
    /// check` reads hand-written manifests and any client can post to the webhook: an object
    /// that looks like a judged kind is judged as that kind rather than waved through.
    fn canonical_kind<'r>(&self, request: &Request<'r>) -> Option<Request<'r>> {
        let (group, kind) = (&request.kind.group, &request.kind.kind);
        let rules = self.policies.iter().flat_map(|p| p.kinds().iter());
        let mut exact = false;
        let mut folded = None;
        for rule in rules {
            if rule.group == group && rule.kind == kind {
                exact = true;
                break;
            }
            if folded.is_none()
                && rule.group.eq_ignore_ascii_case(group)
                && rule.kind.eq_ignore_ascii_case(kind)
            {
                folded = Some(rule);
            }
        }
        let rule = folded.filter(|_| !exact)?;
        let mut canonical = request.clone();
        canonical.kind.group = std::borrow::Cow::Borrowed(rule.group);
        canonical.kind.kind = std::borrow::Cow::Borrowed(rule.kind);
        Some(canonical)
    }

    /// Judges a request on one endpoint, within the default [`Budget`] and no deadline
    /// (`fluxgate check`, the audit scan, tests).
    pub fn review(
        &self,
        endpoint: Endpoint,
        request: &Request<'_>,
        view: &dyn ClusterView,
    ) -> (Verdict, Vec<ExemptionUse>) {
        self.review_within(endpoint, request, view, &Budget::default())
    }

    /// Judges a request on one endpoint within `budget`. A policy stopped by the budget
    /// keeps the findings it made and gets one more, a violation naming the budget, and so
    /// does every policy after it, unjudged: what fluxgate cannot judge within its budgets is
    /// denied wherever the policy enforces (fail closed). An inline budget that asks for the
    /// pool ([`Exceeded::Offload`]) ends the review at once with `verdict.unjudged` set, for
    /// the webhook to judge it again.
    pub fn review_within(
        &self,
        endpoint: Endpoint,
        request: &Request<'_>,
        view: &dyn ClusterView,
        budget: &Budget,
    ) -> (Verdict, Vec<ExemptionUse>) {
        let config = self.config.load();
        let mut verdict = Verdict::allow();
        let mut exemptions_used = Vec::new();
        let canonical = self.canonical_kind(request);
        let request = canonical.as_ref().unwrap_or(request);

        let subresource = request.sub_resource.as_deref().filter(|s| !s.is_empty());
        if let Some(sub) = subresource
            && !self
                .policies
                .iter()
                .any(|p| judges_subresource(p.subresources(), request, sub))
        {
            verdict.skipped = Some(Skip::Subresource);
            return (verdict, exemptions_used);
        }
        let skims = Skims::indexed(request.index.clone());
        let claims = std::cell::RefCell::new(Vec::new());
        let ctx = Context::new(request, view, budget, &skims).collecting_claims(&claims);

        // An UPDATE is judged by each policy only when it changes a field that policy's verdict
        // depends on (its kind rule's `judged_fields`), whatever the object's deletion state:
        // an object held by a finalizer still does all it did (a RoleBinding keeps granting
        // until it is gone), so a change to what it grants is judged like any other; and
        // Flux's controllers removing finalizers or labels from an object that predates a
        // policy change no judged field, so they are never blocked.
        let mut update_fields = UpdateFields::default();
        for policy in &self.policies {
            let Some(rule) = matching_rule(policy.kinds(), request) else {
                continue;
            };
            if subresource
                .is_some_and(|sub| !judges_subresource(policy.subresources(), request, sub))
            {
                continue;
            }
            let mode = self.mode_of(&config, policy.id());
            if mode == Mode::Off {
                continue;
            }
            if request.operation == Operation::Update
                && !rule.judged_fields.is_empty()
                && update_fields.unchanged(request, rule.judged_fields)
            {
                continue;
            }
            verdict.evaluated.push(policy.id());

            let exemption = config
                .exemptions
                .iter()
                .enumerate()
                .find(|(_, e)| {
                    e.applies_to(policy.id())
                        && exemption::matches(e, request, |ns| view.namespace_labels(ns).found())
                })
                .map(|(i, e)| e.label(i));
            if let Some(label) = &exemption {
                exemptions_used.push(ExemptionUse {
                    policy: policy.id(),
                    exemption: label.clone(),
                });
            }

            let action_of = |severity: Severity| match (&exemption, mode, severity) {
                (Some(label), _, _) => Action::Exempted(label.clone()),
                (None, Mode::Enforce, Severity::Violation | Severity::Invalid) => Action::Deny,
                (None, Mode::Enforce | Mode::Warn, _) => Action::Warn,
                (None, _, _) => Action::Audit,
            };
            // A review stopped by an earlier policy is not judged further.
            let before = budget.exceeded();
            match endpoint {
                Endpoint::Validate => {
                    let findings = if before.is_none() {
                        policy.validate(&ctx, &config)
                    } else {
                        Vec::new()
                    };
                    // Almost no review claims anything: nothing to move then.
                    let mut claimed = claims.borrow_mut();
                    if !claimed.is_empty() {
                        let claimed = std::mem::take(&mut *claimed);
                        if exemption.is_none() && matches!(mode, Mode::Enforce | Mode::Warn) {
                            verdict
                                .claims
                                .extend(claimed.into_iter().map(|claim| PendingClaim {
                                    policy: policy.id(),
                                    mode,
                                    claim,
                                }));
                        }
                    }
                    drop(claimed);
                    if let Some(Exceeded::Offload { .. }) = budget.exceeded() {
                        verdict.unjudged = budget.exceeded();
                        return (verdict, exemptions_used);
                    }
                    for finding in findings {
                        let action = action_of(finding.severity);
                        verdict.record(finding, mode, action);
                    }
                    if let Some(exceeded) = budget.exceeded() {
                        let finding = Finding::violation(
                            policy.id(),
                            format!(
                                "{} was not judged whole: {exceeded}. fluxgate denies what it cannot judge within its budgets (fail closed); split the object or simplify it",
                                ctx.object_ref()
                            ),
                        );
                        verdict.record(finding, mode, action_of(Severity::Violation));
                    }
                }
                Endpoint::Mutate => {
                    // Audit mode is a dry run: it must not change what gets stored.
                    if before.is_none()
                        && exemption.is_none()
                        && matches!(mode, Mode::Enforce | Mode::Warn)
                    {
                        let patch = policy.mutate(&ctx, &config);
                        if let Some(Exceeded::Offload { .. }) = budget.exceeded() {
                            verdict.unjudged = budget.exceeded();
                            return (verdict, exemptions_used);
                        }
                        // A patch from a policy cut short may be partial: none is better.
                        if budget.exceeded().is_none() {
                            verdict.patch.extend(patch);
                        }
                    }
                }
            }
        }
        verdict.unjudged = budget.exceeded();
        (verdict, exemptions_used)
    }
}

/// Settles the claims an allowed verdict depends on (see [`crate::cluster::reservation`]):
/// reserves each, and turns a refused reservation into the claiming policy's denial (or
/// warning, in `warn`), like one of its findings. A reservation that cannot be read or
/// written does the same unless the claim says to allow then (with a warning). A verdict
/// that denies anyway reserves nothing. Answers each reservation's result, for metrics.
pub async fn settle_claims(
    verdict: &mut Verdict,
    reservations: &dyn Reservations,
    view: &dyn ClusterView,
) -> Vec<&'static str> {
    let pending = std::mem::take(&mut verdict.claims);
    let mut results = Vec::new();
    for claim in pending {
        if !verdict.allowed {
            break;
        }
        let reserved = reservations.reserve(&claim.claim, view).await;
        results.push(apply_reservation(verdict, &claim, reserved));
    }
    results
}

/// [`settle_claims`] with the reservation of a single process, which answers at once: for
/// callers without an async runtime (tests, embedding).
pub fn settle_claims_locally(
    verdict: &mut Verdict,
    reservations: &LocalReservations,
    view: &dyn ClusterView,
) -> Vec<&'static str> {
    use futures_util::FutureExt as _;
    settle_claims(verdict, reservations, view)
        .now_or_never()
        .unwrap_or_default()
}

/// Applies one reservation's answer; its result for the metric (`granted`, `refused`,
/// `unknown`).
fn apply_reservation(
    verdict: &mut Verdict,
    pending: &PendingClaim,
    reserved: Reserved,
) -> &'static str {
    let claim = &pending.claim;
    let result = reserved.result();
    let finding = match reserved {
        Reserved::Granted => return result,
        Reserved::Refused(held) => Finding::violation(
            pending.policy,
            (claim.refused_text)(claim, &held, std::time::SystemTime::now()),
        ),
        Reserved::Unknown(why) => {
            let text = (claim.unknown_text)(claim, &why);
            if claim.allow_when_unknown {
                Finding::advisory(pending.policy, text)
            } else {
                Finding::violation(pending.policy, text)
            }
        }
    };
    let action = match (pending.mode, finding.severity) {
        (Mode::Enforce, Severity::Violation) => Action::Deny,
        _ => Action::Warn,
    };
    verdict.record(finding, pending.mode, action);
    result
}

fn matching_rule<'r>(rules: &'r [KindRule], request: &Request<'_>) -> Option<&'r KindRule> {
    rules.iter().find(|rule| {
        rule.group == request.kind.group
            && rule.kind == request.kind.kind
            && rule.operations.contains(&request.operation)
    })
}

fn judges_subresource(rules: &[SubresourceRule], request: &Request<'_>, sub: &str) -> bool {
    rules.iter().any(|rule| {
        rule.subresource == sub
            && rule.group == request.kind.group
            && rule.kind == request.kind.kind
            && rule.operations.contains(&request.operation)
    })
}

/// Compares the judged fields of `object` and `oldObject`, caching per pointer list so that
/// two policies judging the same fields compare them once.
#[derive(Default)]
struct UpdateFields {
    /// A handful of entries at most (one per distinct pointer list of the matching policies).
    cache: Vec<(&'static [&'static str], bool)>,
}

impl UpdateFields {
    fn unchanged(&mut self, request: &Request<'_>, pointers: &'static [&'static str]) -> bool {
        if let Some(&(_, same)) = self.cache.iter().find(|(p, _)| *p == pointers) {
            return same;
        }
        let same = match (request.object, request.old_object) {
            (Some(new), Some(old)) => pointers
                .iter()
                .all(|p| raw_equal(raw_pointer(new, p), raw_pointer(old, p))),
            _ => false,
        };
        self.cache.push((pointers, same));
        same
    }
}

/// Follows a JSON pointer through raw JSON without building the whole tree: at each level the
/// members of the object are stepped over until the wanted one (see
/// [`crate::json_view::member`]); nothing is parsed but the value found. Only objects are
/// walked, and of duplicate keys the last wins, as in a map.
fn raw_pointer<'a>(raw: &'a RawValue, pointer: &str) -> Option<&'a RawValue> {
    let mut current = raw;
    for token in pointer.split('/').skip(1) {
        current = if token.contains('~') {
            crate::json_view::member(current, &token.replace("~1", "/").replace("~0", "~"))
        } else {
            crate::json_view::member(current, token)
        }?;
    }
    Some(current)
}

fn raw_equal(a: Option<&RawValue>, b: Option<&RawValue>) -> bool {
    let is_null = |v: Option<&RawValue>| v.is_none_or(|r| r.get() == "null");
    match (a, b) {
        _ if is_null(a) && is_null(b) => true,
        (Some(a), Some(b)) if a.get() == b.get() => true,
        (Some(a), Some(b)) => {
            // Same content, other key order or spacing (clients other than the API server).
            let a: Result<serde_json::Value, _> = serde_json::from_str(a.get());
            let b: Result<serde_json::Value, _> = serde_json::from_str(b.get());
            matches!((a, b), (Ok(a), Ok(b)) if a == b)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_string()).expect("valid json")
    }

    #[test]
    fn pointers_walk_raw_json() {
        let doc = raw(r#"{"spec":{"verify":{"provider":"cosign"}},"a/b":1}"#);
        assert_eq!(
            raw_pointer(&doc, "/spec/verify/provider").map(|r| r.get()),
            Some("\"cosign\"")
        );
        assert_eq!(raw_pointer(&doc, "/a~1b").map(|r| r.get()), Some("1"));
        assert!(raw_pointer(&doc, "/spec/missing").is_none());
    }

    #[test]
    fn pointers_read_members_as_a_map_would() {
        // Of duplicate keys the last wins; escaped keys match their text; arrays and scalars
        // have no members.
        let doc =
            raw(r#"{"spec":{"a":1},"spec":{"a":2},"\u0073tatus":{"x":[1]},"list":[{"a":1}]}"#);
        assert_eq!(raw_pointer(&doc, "/spec/a").map(|r| r.get()), Some("2"));
        assert_eq!(raw_pointer(&doc, "/status/x").map(|r| r.get()), Some("[1]"));
        assert!(raw_pointer(&doc, "/list/0").is_none());
        assert!(raw_pointer(&doc, "/spec/a/b").is_none());
        assert_eq!(raw_pointer(&doc, "").map(|r| r.get()), Some(doc.get()));
    }

    #[test]
    fn equal_content_in_another_order_is_unchanged() {
        let a = raw(r#"{"x":1,"y":[1,2]}"#);
        let b = raw(r#"{ "y": [1, 2], "x": 1 }"#);
        assert!(raw_equal(Some(&a), Some(&b)));
        let null = raw("null");
        assert!(raw_equal(None, Some(&null)));
        assert!(!raw_equal(Some(&a), None));
    }
}
