//! `single-agent`: one GitLab agent for Kubernetes installation per cluster.
//!
//! GitLab: "run a single GitLab agent for Kubernetes installation per cluster", and share its
//! connection across groups and projects with impersonation (`ci_access` / `user_access`).
//! Every extra agentk reconciles on its own and widens the attack surface.
//!
//! # The rule
//! A CREATE of an agent installation when the cluster already runs a different one is denied;
//! the message names both and explains how to share the existing agent. An UPDATE that leaves
//! an agent object in the installation it already belonged to (scaling, a rollout, an image
//! bump) is always allowed, even in a cluster that already has two installations: blocking it
//! would wedge the controllers, and the audit scan reports the duplicate. An UPDATE that turns
//! an unrelated workload into an agent, or moves an agent object to another installation, is
//! judged like a CREATE of its new installation. After the existing installation is deleted,
//! a new one is allowed.
//!
//! What counts as an agent object is in [`crate::gitlab::agent`] (the image, agentk's
//! `--kas-address` flag as the kubelet and a shell read the command line, the chart's labels,
//! a Flux HelmRelease of the chart). Which installation it belongs to is decided from facts
//! the requester cannot forge, in [`crate::gitlab::installation`]: the namespace the admission
//! request names, kinds and names; labels, annotations, `ownerReferences` and a HelmRelease's
//! naming fields are claims that join an object to an existing installation only when the
//! cluster view confirms them. A second top-level workload running agentk in the same
//! namespace is a second installation, except the chart's own `<name>` -> `<name>-v2` rename
//! on upgrade; while that rename is under way, a third Deployment is denied.
//!
//! An object that may run agentk depending on text fluxgate cannot read (`$(FLAG)` from a
//! ConfigMap key, a script from a Secret) is a possible installation: next to another
//! installation it follows `whenUnknown`, like a view that cannot tell.
//!
//! A new ReplicaSet, Pod or Job of an installation the cluster already runs adds no
//! installation and is allowed; [`Policy::prefetch`] has the view fetch the owner of a new
//! agent object first, since a controller's children often arrive before its watch event.
//!
//! The default webhook rules intercept the workload controllers (ReplicationControllers
//! too) and HelmRelease, not Pods, ReplicaSets or Jobs' Pods: a fail-closed webhook on Pods can
//! lock a cluster. This policy also judges Pods and ReplicaSets so that an opt-in webhook rule
//! for them with `failurePolicy: Ignore`, the audit scan and `fluxgate check` catch ownerless
//! ones. Of the core API's other kinds with a pod template, a PodTemplate runs nothing.
//!
//! # Settings
//! - `sanctioned: {namespace, release}` names the only installation allowed; every other one
//!   is denied. It is matched against confirmed facts only: a top-level workload in
//!   `namespace` named for `release` (the chart's `<fullname>[-v<N>]`, or `release` itself
//!   for an installation without Helm), a HelmRelease that installs `release` into
//!   `namespace`, or an object whose confirmed owner is one of those. A top-level object
//!   needs no cluster state for this; an owned one needs the view to confirm its owner.
//! - `imagePatterns`: more image repositories that count as agentk (anchored regexes).
//! - `reservationTtlSeconds`: how long an allowed installation that has not yet appeared in
//!   the cluster view keeps other installations out (default 30).
//! - `whenUnknown: deny|allow`: what to do with an agent installation while the cluster view
//!   cannot tell what runs (not synced yet, or its watch of the workloads lost for longer
//!   than `serve --view-grace-seconds`), when the cluster-wide reservation cannot be read or
//!   written, and with a possible agent next to another installation (default `deny`, fail
//!   closed like Kyverno's default `failurePolicy: Fail` for rules that need cluster data).
//!   Non-agent objects never depend on the view.
//!
//! # Exactly once, across replicas
//! The cluster view learns about a new installation only when its watch event arrives, some
//! milliseconds to seconds after the API server admitted it, and each replica has its own
//! view. So when this policy allows a new installation it also makes a claim
//! ([`Context::claim`]): the webhook reserves the installation through the API server (a
//! `coordination.k8s.io` Lease in fluxgate's namespace, created atomically, taken over with a
//! `resourceVersion` precondition) before it answers, and denies if the reservation names
//! another installation that runs or has not had its `reservationTtlSeconds` yet (see
//! [`crate::cluster::reservation`]). Dry runs (server-side dry run, `fluxgate check`, the audit
//! scan) are judged against the reservation but never write one. With `sanctioned`, the
//! verdict is a function of names that exist once per namespace, the same on every replica,
//! and needs no reservation.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{
    CREATE_UPDATE, Context, KindRule, Policy, PolicySettings, SettingError, SubresourceRule,
};
use crate::admission::Operation;
use crate::admission::Request;
use crate::cluster::reservation::{Claim, Held};
use crate::cluster::{AgentInstallation, Lookup, ObjectKey};
use crate::finding::{Finding, Mode, PolicyId};
use crate::gitlab::agent::{
    AgentDetector, AgentFacts, AgentKind, CHART_NAME, Evidence, KAS_ADDRESS_FLAG,
    agent_kind_controller, flux_origin,
};

/// The label helm-controller puts on what it renders, naming the HelmRelease.
const FLUX_ORIGIN_LABEL: &str = "helm.toolkit.fluxcd.io/name";
use crate::gitlab::installation::{Grouping, InstallationId, group, named_for_release};

const ID: PolicyId = PolicyId::SingleAgent;

const DEFAULT_RESERVATION_TTL_SECONDS: u64 = 30;
const MAX_RESERVATION_TTL_SECONDS: u64 = 3600;

/// How many objects of an existing installation a message lists.
const LISTED_OBJECTS: usize = 3;

/// Why, for every denial.
const ONE_AGENT: &str = "GitLab recommends a single agent installation per cluster: every \
extra agentk reconciles on its own and widens the attack surface.";

/// How to share one agent instead of installing another, for every denial.
const SHARE_ADVICE: &str = "Share the existing agent instead: in its configuration file \
(.gitlab/agents/<agent-name>/config.yaml in the agent's project) authorize your groups or \
projects and impersonate them, for CI/CD jobs `ci_access: {groups: [{id: <group path>, \
access_as: {ci_job: {}}}]}` (or `projects: [{id: <project path>, access_as: {ci_job: {}}}]`), \
for people `user_access: {access_as: {user: {}}, projects: [{id: <project path>}]}`, then \
grant the impersonated identities (gitlab:ci_job, gitlab:project_env:<id>:<env>, gitlab:user, \
...) only the RBAC they need; see \
https://docs.gitlab.com/ee/user/clusters/agent/ci_cd_workflow.html \
(doc/user/clusters/agent/ci_cd_workflow.md) and \
https://docs.gitlab.com/ee/user/clusters/agent/user_access.html. To replace the existing \
agent, remove it first.";

/// The only installation a cluster may run.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Sanctioned {
    pub namespace: String,
    /// The Helm release name; for an installation without a release, the name of its
    /// top-level workload (a Deployment's `-v<N>` suffix is ignored).
    pub release: String,
}

impl Sanctioned {
    /// Whether an installation is the sanctioned one, by what its top-level object is: a
    /// HelmRelease that installs the release into the namespace, or a workload in the
    /// namespace named for the release.
    fn allows(&self, id: &InstallationId) -> bool {
        match id.kind {
            AgentKind::HelmRelease => {
                id.release.as_ref().map(|(ns, r)| (ns.as_str(), r.as_str()))
                    == Some((self.namespace.as_str(), self.release.as_str()))
            }
            _ => id.namespace == self.namespace && named_for_release(&id.name, &self.release),
        }
    }
}

/// What to do with an agent installation while the cluster view cannot tell what runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WhenUnknown {
    #[default]
    Deny,
    Allow,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Settings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sanctioned: Option<Sanctioned>,
    #[serde(default)]
    pub image_patterns: Vec<String>,
    #[serde(default = "default_reservation_ttl_seconds")]
    pub reservation_ttl_seconds: u64,
    #[serde(default)]
    pub when_unknown: WhenUnknown,
    /// `image_patterns`, compiled by [`PolicySettings::validate`].
    #[serde(skip)]
    detector: AgentDetector,
}

fn default_reservation_ttl_seconds() -> u64 {
    DEFAULT_RESERVATION_TTL_SECONDS
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            mode: None,
            sanctioned: None,
            image_patterns: Vec::new(),
            reservation_ttl_seconds: DEFAULT_RESERVATION_TTL_SECONDS,
            when_unknown: WhenUnknown::default(),
            detector: AgentDetector::default(),
        }
    }
}

impl Settings {
    /// Which images count as agentk; give it to the cluster view too
    /// ([`crate::cluster::MemoryView::set_agent_detector`]).
    pub fn detector(&self) -> &AgentDetector {
        &self.detector
    }
}

impl PolicySettings for Settings {
    fn mode(&self) -> Option<Mode> {
        self.mode
    }

    fn validate(&mut self) -> Result<(), SettingError> {
        let mut patterns = Vec::with_capacity(self.image_patterns.len());
        for (i, pattern) in self.image_patterns.iter().enumerate() {
            let key = format!("imagePatterns[{i}]");
            if pattern.trim().is_empty() {
                return Err(SettingError::new(
                    key,
                    "an empty pattern would match every image",
                ));
            }
            let compiled = AgentDetector::compile_pattern(pattern)
                .map_err(|e| SettingError::new(key, format!("not a valid regex: {e}")))?;
            patterns.push(compiled);
        }
        self.detector = AgentDetector::new(patterns);
        if !(1..=MAX_RESERVATION_TTL_SECONDS).contains(&self.reservation_ttl_seconds) {
            return Err(SettingError::new(
                "reservationTtlSeconds",
                format!("must be between 1 and {MAX_RESERVATION_TTL_SECONDS} seconds"),
            ));
        }
        if let Some(sanctioned) = &self.sanctioned {
            if sanctioned.namespace.trim().is_empty() {
                return Err(SettingError::new(
                    "sanctioned.namespace",
                    "must not be empty",
                ));
            }
            if sanctioned.release.trim().is_empty() {
                return Err(SettingError::new("sanctioned.release", "must not be empty"));
            }
        }
        Ok(())
    }
}

/// The policy. It keeps no state: what it allows across replicas is settled by the
/// reservation its claims make (see the module documentation).
#[derive(Default)]
pub struct SingleAgent;

const fn rule(
    group: &'static str,
    kind: &'static str,
    resource: &'static str,
    opt_in: bool,
) -> KindRule {
    KindRule {
        group,
        kind,
        resource,
        opt_in,
        operations: CREATE_UPDATE,
        // Identity depends on labels, annotations, owners and every container list; the
        // policy compares old and new itself, which costs one typed parse instead of a
        // pointer walk per field, and never blocks an update that keeps the installation.
        judged_fields: &[],
    }
}

// The workload controllers and HelmRelease are in the default webhook rules; ownerless
// ReplicaSets and Pods are left to the audit scan and an opt-in rule.
const KINDS: &[KindRule] = &[
    rule("apps", "Deployment", "deployments", false),
    rule("apps", "StatefulSet", "statefulsets", false),
    rule("apps", "DaemonSet", "daemonsets", false),
    rule("apps", "ReplicaSet", "replicasets", true),
    rule("", "ReplicationController", "replicationcontrollers", false),
    rule("batch", "CronJob", "cronjobs", false),
    rule("batch", "Job", "jobs", false),
    rule("", "Pod", "pods", true),
    rule(
        "helm.toolkit.fluxcd.io",
        "HelmRelease",
        "helmreleases",
        false,
    ),
];

/// `kubectl debug` adds ephemeral containers through this subresource, never through an
/// UPDATE of the Pod itself: without it an agentk ephemeral container would never be judged
/// at admission. Opt-in like Pods themselves.
const SUBRESOURCES: &[SubresourceRule] = &[SubresourceRule {
    group: "",
    kind: "Pod",
    resource: "pods",
    subresource: "ephemeralcontainers",
    opt_in: true,
    operations: &[Operation::Update],
}];

/// The agent object a request brings, judged.
struct Candidate<'a> {
    facts: AgentFacts,
    evidence: Evidence,
    object_ref: String,
    old: Option<AgentFacts>,
    operation: Operation,
    dry_run: bool,
    settings: &'a Settings,
}

impl Policy for SingleAgent {
    type Settings = Settings;

    fn id(&self) -> PolicyId {
        ID
    }

    fn kinds(&self) -> &'static [KindRule] {
        KINDS
    }

    fn subresources(&self) -> &'static [SubresourceRule] {
        SUBRESOURCES
    }

    /// A ReplicaSet's or Job's Pods are created milliseconds after it, often before its watch
    /// event, and helm-controller creates a HelmRelease's Deployment soon after the
    /// HelmRelease: have the view fetch the owner (or the HelmRelease the object names as its
    /// origin) of a new agent object first, so that the object joins that installation. A
    /// substring test keeps this free for every other workload (an agent by a configured
    /// image pattern is judged with what the view has).
    fn prefetch(&self, request: &Request<'_>) -> Vec<ObjectKey> {
        let (Operation::Create, Some(raw)) = (request.operation, request.object) else {
            return Vec::new();
        };
        let Some(kind) = AgentKind::of(&request.kind.group, &request.kind.kind) else {
            return Vec::new();
        };
        let text = raw.get();
        let owned = text.contains("ownerReferences");
        let rendered = text.contains(FLUX_ORIGIN_LABEL);
        let is_agent = (owned || rendered)
            && (text.contains(CHART_NAME) || text.contains(KAS_ADDRESS_FLAG))
            && matches!(
                AgentDetector::default().recognise_raw(kind, raw, request.namespace()),
                Ok(Some(_))
            );
        if !is_agent {
            return Vec::new();
        }
        let owner = owned
            .then(|| agent_kind_controller(text))
            .flatten()
            .map(|(kind, name)| ObjectKey {
                group: kind.group().to_string(),
                kind: kind.kind().to_string(),
                namespace: request.namespace().map(str::to_string),
                name,
            });
        let origin = rendered
            .then(|| flux_origin(text))
            .flatten()
            .map(|(namespace, name)| ObjectKey {
                group: AgentKind::HelmRelease.group().to_string(),
                kind: AgentKind::HelmRelease.kind().to_string(),
                namespace: Some(namespace),
                name,
            });
        owner.into_iter().chain(origin).collect()
    }

    fn validate(&self, ctx: &Context<'_, Settings>) -> Vec<Finding> {
        let request = ctx.request;
        let Some(kind) = AgentKind::of(&request.kind.group, &request.kind.kind) else {
            return Vec::new();
        };
        let settings = ctx.settings;
        let detector = settings.detector();
        let Some(raw) = request.object else {
            return vec![Finding::violation(
                ID,
                format!("{} has no object in the request", ctx.object_ref()),
            )];
        };
        let recognise = |raw| {
            detector
                .recognise_raw(kind, raw, request.namespace())
                .map(|found| {
                    found.map(|(facts, evidence)| (in_request_namespace(facts, request), evidence))
                })
        };
        let (facts, evidence) = match recognise(raw) {
            Ok(Some(found)) => found,
            // The common case, and the whole cost for workloads that are not agents.
            Ok(None) => return Vec::new(),
            Err(e) => {
                return vec![Finding::violation(
                    ID,
                    format!("{} is malformed: {e}; fix the manifest", ctx.object_ref()),
                )];
            }
        };
        let old = match (request.operation, request.old_object) {
            (Operation::Update, Some(raw)) => recognise(raw).ok().flatten().map(|(facts, _)| facts),
            _ => None,
        };
        let candidate = Candidate {
            object_ref: facts.object_ref(),
            facts,
            evidence,
            old,
            operation: request.operation,
            dry_run: request.is_dry_run(),
            settings,
        };
        match &settings.sanctioned {
            Some(sanctioned) => judge_sanctioned(&candidate, sanctioned, ctx),
            None => judge_against_cluster(&candidate, ctx),
        }
    }
}

/// The namespace of an object under review is the one the admission request names: the
/// API server refuses an object whose own `metadata.namespace` says otherwise, and fills it
/// in when it is empty.
fn in_request_namespace(mut facts: AgentFacts, request: &Request<'_>) -> AgentFacts {
    if let Some(namespace) = request.namespace().filter(|ns| !ns.is_empty())
        && facts.namespace != namespace
    {
        facts.namespace = namespace.to_string();
        if let Some((release_ns, _)) = facts.installs.as_mut()
            && facts.kind == AgentKind::HelmRelease
            && release_ns.is_empty()
        {
            *release_ns = namespace.to_string();
        }
    }
    facts
}

/// The cluster's agent objects with the one under review in place of its stored version
/// (if any), grouped into installations.
struct Placement {
    objects: Vec<AgentFacts>,
    /// The object under review: the last one.
    candidate: usize,
    /// The object is already in the cluster (`fluxgate check`, the audit scan).
    already_stored: bool,
    grouping: Grouping,
}

impl Placement {
    fn new(installations: &[AgentInstallation], facts: &AgentFacts) -> Self {
        let mut objects: Vec<AgentFacts> = Vec::new();
        let mut already_stored = false;
        for object in installations.iter().flat_map(|i| i.objects.iter()) {
            if object.same_object(facts) {
                already_stored = true;
            } else {
                objects.push(object.clone());
            }
        }
        objects.push(facts.clone());
        let grouping = group(&objects);
        Placement {
            candidate: objects.len() - 1,
            objects,
            already_stored,
            grouping,
        }
    }

    fn id(&self) -> &InstallationId {
        &self.grouping.installation_of(self.candidate).id
    }

    /// The other installations, each with its objects.
    fn others(&self) -> Vec<(&InstallationId, Vec<&AgentFacts>)> {
        let own = self.id();
        self.grouping
            .installations()
            .iter()
            .filter(|i| i.id != *own)
            .map(|i| (&i.id, i.members.iter().map(|&m| &self.objects[m]).collect()))
            .collect()
    }

    /// The other top-level workloads of the object's own installation (a HelmRelease aside).
    fn sibling_tops(&self) -> Vec<&AgentFacts> {
        self.grouping
            .installation_of(self.candidate)
            .tops
            .iter()
            .filter(|&&t| t != self.candidate && self.objects[t].kind != AgentKind::HelmRelease)
            .map(|&t| &self.objects[t])
            .collect()
    }

    /// Whether the object joins objects the cluster already has.
    fn joins_others(&self) -> bool {
        self.grouping.installation_of(self.candidate).members.len() > 1
    }
}

fn judge_sanctioned(
    candidate: &Candidate<'_>,
    sanctioned: &Sanctioned,
    ctx: &Context<'_, Settings>,
) -> Vec<Finding> {
    let view = ctx.view.agent_installations();
    let installations = match &view {
        Lookup::Found(installations) => Some(installations.as_slice()),
        Lookup::Missing => Some(&[][..]),
        Lookup::Unknown => None,
    };
    let Some(installations) = installations else {
        // A top-level object is judged by its own namespace, kind and name; whether an
        // owner it claims exists needs the view.
        if candidate.facts.owner.is_some() {
            return when_unknown(
                candidate,
                &InstallationId::of_top(&candidate.facts),
                "its owner",
            );
        }
        let id = InstallationId::of_top(&candidate.facts);
        return sanctioned_verdict(candidate, sanctioned, &id, None);
    };
    let placement = Placement::new(installations, &candidate.facts);
    if keeps_its_installation(candidate, installations, placement.id()) {
        return Vec::new();
    }
    let id = placement.id().clone();
    // Another object that also takes itself for the sanctioned installation.
    let impostor = placement
        .others()
        .into_iter()
        .find(|(other, _)| sanctioned.allows(other))
        .map(|(other, objects)| (other.clone(), list_objects(&objects)));
    sanctioned_verdict(candidate, sanctioned, &id, impostor)
}

fn sanctioned_verdict(
    candidate: &Candidate<'_>,
    sanctioned: &Sanctioned,
    id: &InstallationId,
    impostor: Option<(InstallationId, String)>,
) -> Vec<Finding> {
    if sanctioned.allows(id) {
        return match impostor {
            None => Vec::new(),
            Some((other, objects)) => vec![Finding::violation(
                ID,
                format!(
                    "{} would install a GitLab agent for Kubernetes ({}) as {id}, a second \
                     installation named like the one policies.single-agent.sanctioned allows \
                     ({}/{}), next to {other} ({objects}). {ONE_AGENT} {SHARE_ADVICE}",
                    candidate.object_ref,
                    candidate.evidence,
                    sanctioned.namespace,
                    sanctioned.release
                ),
            )],
        };
    }
    if candidate.facts.undecided {
        return when_unknown(candidate, id, "whether it runs agentk");
    }
    vec![Finding::violation(
        ID,
        format!(
            "{} would install a GitLab agent for Kubernetes ({}) as {id}, but this cluster \
             allows only the agent installation {}/{} named by \
             policies.single-agent.sanctioned. {SHARE_ADVICE}",
            candidate.object_ref, candidate.evidence, sanctioned.namespace, sanctioned.release
        ),
    )]
}

/// An UPDATE of an object that already belonged to this installation changes nothing about
/// how many agents the cluster runs.
fn keeps_its_installation(
    candidate: &Candidate<'_>,
    installations: &[AgentInstallation],
    id: &InstallationId,
) -> bool {
    candidate
        .old
        .as_ref()
        .is_some_and(|old| Placement::new(installations, old).id() == id)
}

fn judge_against_cluster(candidate: &Candidate<'_>, ctx: &Context<'_, Settings>) -> Vec<Finding> {
    let view = ctx.view.agent_installations();
    let mut findings = Vec::new();
    let installations = match &view {
        Lookup::Found(installations) => installations.as_slice(),
        Lookup::Missing => &[][..],
        Lookup::Unknown => {
            let id = InstallationId::of_top(&candidate.facts);
            match candidate.settings.when_unknown {
                WhenUnknown::Deny => return vec![unknown_view_denial(candidate, &id)],
                WhenUnknown::Allow => {
                    findings.push(unknown_view_advisory(candidate, &id));
                    &[][..]
                }
            }
        }
    };
    let placement = Placement::new(installations, &candidate.facts);
    let id = placement.id().clone();
    if keeps_its_installation(candidate, installations, &id) {
        return findings;
    }
    let others = placement.others();

    // `fluxgate check` and the audit scan judge objects that are already in the cluster:
    // such an object is a finding when its installation shares the cluster.
    if placement.already_stored && candidate.operation == Operation::Create {
        if let Some(finding) = second_installation(candidate, &id, &others, true) {
            findings.push(finding);
        }
        return findings;
    }

    if placement.joins_others() {
        // A new ReplicaSet, Pod or Job of an installation the cluster runs (a rollout, a
        // scale-up, a scheduled run), the Deployment helm-controller renders for a
        // HelmRelease, or the chart's rename: no new installation. A third top-level
        // Deployment while a rename is under way is not the chart's doing.
        let siblings = placement.sibling_tops();
        if !placement.grouping.has_confirmed_owner(placement.candidate) && siblings.len() >= 2 {
            findings.push(Finding::violation(
                ID,
                format!(
                    "{} would be a third agentk Deployment of {id} next to {}: the \
                     gitlab-agent chart's upgrade renames its Deployment once (<name> -> \
                     <name>-v2) and Helm then deletes the old one, so a third is a second \
                     installation. {ONE_AGENT} {SHARE_ADVICE}",
                    candidate.object_ref,
                    list_objects(&siblings),
                ),
            ));
        }
        return findings;
    }

    if let Some(finding) = second_installation(candidate, &id, &others, false) {
        findings.push(finding);
        return findings;
    }
    // A new installation in a cluster that runs none: reserve it cluster-wide first.
    ctx.claim(Claim {
        installation: id,
        object: candidate.object_ref.clone(),
        ttl: Duration::from_secs(candidate.settings.reservation_ttl_seconds),
        dry_run: candidate.dry_run,
        allow_when_unknown: candidate.settings.when_unknown == WhenUnknown::Allow,
        refused_text: reservation_refused,
        unknown_text: reservation_unknown,
    });
    findings
}

/// The finding for an installation next to others: a violation when both run agentk for
/// certain; `whenUnknown` when one of them only may.
fn second_installation(
    candidate: &Candidate<'_>,
    id: &InstallationId,
    others: &[(&InstallationId, Vec<&AgentFacts>)],
    stored: bool,
) -> Option<Finding> {
    let decided = others
        .iter()
        .find(|(_, objects)| objects.iter().any(|o| !o.undecided));
    let (existing, objects) = match (candidate.facts.undecided, decided) {
        (false, Some(found)) => found,
        _ => {
            let (other, objects) = others.first()?;
            let possible = objects
                .iter()
                .find(|o| o.undecided)
                .map(|o| format!("{} may run agentk", o.object_ref()))
                .unwrap_or_else(|| candidate.evidence.to_string());
            let text = format!(
                "fluxgate cannot tell whether {} {} a second GitLab agent for Kubernetes ({id}) \
                 next to {other} ({}): {possible}. Set the flags literally (not from a ConfigMap, \
                 Secret or annotation), or add the image to policies.single-agent.imagePatterns \
                 if it is agentk (policies.single-agent.whenUnknown).",
                candidate.object_ref,
                if stored { "is" } else { "would add" },
                list_objects(objects)
            );
            return Some(match candidate.settings.when_unknown {
                WhenUnknown::Deny => Finding::violation(ID, text),
                WhenUnknown::Allow => Finding::advisory(ID, text),
            });
        }
    };
    Some(Finding::violation(
        ID,
        if stored {
            format!(
                "{} belongs to {id} ({}), a second GitLab agent for Kubernetes in a cluster \
                 that also runs {existing} ({}). {ONE_AGENT} {SHARE_ADVICE}",
                candidate.object_ref,
                candidate.evidence,
                list_objects(objects)
            )
        } else {
            format!(
                "{} would add a second GitLab agent for Kubernetes to this cluster ({}), while \
                 the cluster already runs {existing} ({}). {ONE_AGENT} {SHARE_ADVICE}",
                named(&candidate.object_ref, id),
                candidate.evidence,
                list_objects(objects)
            )
        },
    ))
}

/// What `whenUnknown` answers when a fact cannot be confirmed.
fn when_unknown(candidate: &Candidate<'_>, id: &InstallationId, what: &str) -> Vec<Finding> {
    let text = format!(
        "{} installs a GitLab agent for Kubernetes ({}) as {id}, and fluxgate cannot confirm \
         {what}: its cluster view is not synced or has lost its watch of the API server, or \
         the object's flags come from text fluxgate cannot read. Retry in a few seconds; if \
         this persists, check fluxgate's /readyz and logs (policies.single-agent.whenUnknown).",
        candidate.object_ref, candidate.evidence
    );
    vec![match candidate.settings.when_unknown {
        WhenUnknown::Deny => Finding::violation(ID, text),
        WhenUnknown::Allow => Finding::advisory(ID, text),
    }]
}

fn list_objects(objects: &[&AgentFacts]) -> String {
    let mut listed: Vec<String> = objects
        .iter()
        .take(LISTED_OBJECTS)
        .map(|o| o.object_ref())
        .collect();
    if objects.len() > LISTED_OBJECTS {
        listed.push(format!("{} more", objects.len() - LISTED_OBJECTS));
    }
    listed.join(", ")
}

fn unknown_view_denial(candidate: &Candidate<'_>, id: &InstallationId) -> Finding {
    Finding::violation(
        ID,
        format!(
            "{} would install a GitLab agent for Kubernetes ({}) as {id}, and fluxgate cannot \
             tell whether the cluster already runs one: its cluster view is not synced yet, \
             or has lost its watch of the API server. Retry in a few seconds; if this \
             persists, check fluxgate's /readyz and logs. \
             Setting policies.single-agent.sanctioned makes this check independent of the \
             cluster view.",
            candidate.object_ref, candidate.evidence
        ),
    )
}

fn unknown_view_advisory(candidate: &Candidate<'_>, id: &InstallationId) -> Finding {
    Finding::advisory(
        ID,
        format!(
            "{} installs a GitLab agent for Kubernetes as {id} and was not checked against the \
             agents the cluster runs: fluxgate's cluster view is not synced or has lost its \
             watch (policies.single-agent.whenUnknown: allow); the audit scan reports a second \
             installation",
            candidate.object_ref
        ),
    )
}

/// The denial when another installation holds the cluster-wide reservation.
fn reservation_refused(claim: &Claim, held: &Held, now: std::time::SystemTime) -> String {
    let age = now.duration_since(held.renewed).unwrap_or_default();
    let left = held.ttl.saturating_sub(age).as_secs().max(1);
    format!(
        "{} would add a second GitLab agent for Kubernetes to this cluster, while {} was \
         allowed {}s ago (by this or another fluxgate replica) and has not appeared in the \
         cluster yet, or still runs. If that request failed, retry in {left}s. {ONE_AGENT} \
         {SHARE_ADVICE}",
        named(&claim.object, &claim.installation),
        named(&held.object, &held.installation),
        age.as_secs()
    )
}

/// The answer when the cluster-wide reservation cannot be read or written.
fn reservation_unknown(claim: &Claim, why: &str) -> String {
    format!(
        "{} would install a GitLab agent for Kubernetes as {}, and fluxgate cannot reserve it \
         against a concurrent installation through another replica: {why}. Retry in a few \
         seconds; if this persists, check fluxgate's logs and its rights on Leases in its \
         namespace (policies.single-agent.whenUnknown).",
        claim.object, claim.installation
    )
}

/// An object and, when it says more, the installation it makes: `Deployment a/b (Helm
/// release a/r)`.
fn named(object: &str, id: &InstallationId) -> String {
    let id = id.to_string();
    if id == object {
        id
    } else {
        format!("{object} ({id})")
    }
}
