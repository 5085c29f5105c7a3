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
//! What counts as an agent object and how installations are identified (Helm release, top
//! owner, the chart's `<name>` -> `<name>-v2` upgrade, ReplicaSets and Pods by
//! ownerReferences) is in [`crate::gitlab::agent`]. Flux HelmReleases of the `gitlab-agent`
//! chart count, by `spec.chart.spec.chart` or by a `spec.chartRef` whose name contains
//! `gitlab-agent` (the view does not know what an OCIRepository or HelmChart holds; a
//! HelmRelease whose chartRef is named otherwise is caught when helm-controller creates the
//! agent's Deployment, and the HelmRelease reports that denial in its status).
//!
//! A new ReplicaSet, Pod or Job of an installation the cluster already runs adds no
//! installation and is allowed; [`Policy::prefetch`] has the view fetch the owner of a new
//! agent object first, since a controller's children often arrive before its watch event.
//!
//! The default webhook rules should intercept the workload controllers and HelmRelease, not
//! Pods, ReplicaSets or Jobs: a fail-closed webhook on Pods can lock a cluster. This policy
//! also judges Pods, ReplicaSets and Jobs so that an opt-in webhook rule for them with
//! `failurePolicy: Ignore`, the audit scan and `fluxgate check` catch ownerless ones.
//!
//! # Settings
//! - `sanctioned: {namespace, release}` names the only installation allowed; every other one
//!   is denied. With it the rule needs no cluster state at all.
//! - `imagePatterns`: more image repositories that count as agentk (anchored regexes).
//! - `reservationTtlSeconds`: how long an allowed installation that has not yet appeared in
//!   the cluster view keeps other installations out (default 30).
//! - `whenUnknown: deny|allow`: what to do with an agent installation while the cluster view
//!   cannot tell what runs: not synced yet, or its watch of the workloads lost for longer
//!   than `serve --view-grace-seconds` (default `deny`, fail closed like Kyverno's default `failurePolicy: Fail`
//!   for rules that need cluster data). Non-agent objects never depend on the view.
//!
//! # Concurrency, and the race this policy cannot close alone
//! The cluster view learns about a new installation only when its watch event arrives, some
//! milliseconds to seconds after the API server admitted it. Within one fluxgate process the
//! gap is closed by a reservation table: the check of the view and the reservation of the
//! installation happen under one lock, so of two concurrent CREATEs of different
//! installations exactly one is allowed. A reservation ends when its installation appears in
//! the view, or after `reservationTtlSeconds` if it never does (another fluxgate policy,
//! another webhook or the API server rejected the request after this policy allowed it). Dry-run requests (server-side
//! dry run, `fluxgate check`, the audit scan) are judged against reservations but never make
//! one.
//!
//! Each webhook replica has its own view and its own reservations. Two CREATEs of different
//! installations that reach two different replicas within the watch delay can therefore both
//! be allowed. Two things close that gap:
//! - `sanctioned`: the verdict is then a pure function of the request and the configuration,
//!   identical on every replica, so there is nothing to race on;
//! - the audit scan: it judges every agent object already in the cluster against the full
//!   view and reports each installation that shares the cluster with another, so a duplicate
//!   that slipped through the race (or predates fluxgate, or is an ownerless Pod the default
//!   webhook rules do not intercept) is reported within one scan interval.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{
    CREATE_UPDATE, Context, KindRule, Policy, PolicySettings, SettingError, SubresourceRule,
};
use crate::admission::Operation;
use crate::admission::Request;
use crate::cluster::{AgentInstallation, AgentObject, Lookup, ObjectKey};
use crate::finding::{Finding, Mode, PolicyId};
use crate::gitlab::agent::{
    AgentDetector, AgentFacts, AgentKind, CHART_NAME, Evidence, InstallationId, KAS_ADDRESS_FLAG,
    agent_kind_controller,
};

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
    fn allows(&self, id: &InstallationId) -> bool {
        id.namespace() == self.namespace && id.name() == self.release
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

/// An installation this process allowed that the cluster view has not shown yet.
#[derive(Debug, Clone)]
struct Reservation {
    id: InstallationId,
    /// The object whose request made it, as messages name it.
    object: String,
    made: Instant,
    expires: Instant,
}

/// The policy. It holds the reservations of this process (see the module documentation).
#[derive(Default)]
pub struct SingleAgent {
    reservations: Mutex<Vec<Reservation>>,
}

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
    /// event: have the view fetch the owner of a new agent object so that the object joins
    /// its owner's installation. A substring test keeps this free for every other workload
    /// (agents by a configured image pattern fall back to their labels and owner names).
    fn prefetch(&self, request: &Request<'_>) -> Vec<ObjectKey> {
        let (Operation::Create, Some(raw)) = (request.operation, request.object) else {
            return Vec::new();
        };
        let Some(kind) = AgentKind::of(&request.kind.group, &request.kind.kind) else {
            return Vec::new();
        };
        let is_agent = (raw.get().contains(CHART_NAME) || raw.get().contains(KAS_ADDRESS_FLAG))
            && matches!(
                AgentDetector::default().recognise_raw(kind, raw, request.namespace()),
                Ok(Some(_))
            );
        if !is_agent {
            return Vec::new();
        }
        agent_kind_controller(raw.get())
            .map(|(kind, name)| ObjectKey {
                group: kind.group().to_string(),
                kind: kind.kind().to_string(),
                namespace: request.namespace().map(str::to_string),
                name,
            })
            .into_iter()
            .collect()
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
        let (facts, evidence) = match detector.recognise_raw(kind, raw, request.namespace()) {
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
            (Operation::Update, Some(raw)) => detector
                .recognise_raw(kind, raw, request.namespace())
                .ok()
                .flatten()
                .map(|(facts, _)| facts),
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
            None => self.judge_against_cluster(&candidate, ctx),
        }
    }
}

/// The installation of an agent object, resolving its owner through the view's installations.
fn installation_of(facts: &AgentFacts, known: Option<&[AgentInstallation]>) -> InstallationId {
    facts.installation(|owner_uid| {
        known?
            .iter()
            .find(|i| i.contains_uid(owner_uid))
            .map(|i| i.id.clone())
    })
}

fn judge_sanctioned(
    candidate: &Candidate<'_>,
    sanctioned: &Sanctioned,
    ctx: &Context<'_, Settings>,
) -> Vec<Finding> {
    // The view only helps to follow owners; without it, the object's own labels and owner
    // references decide, so this path never waits for a sync.
    let view = ctx.view.agent_installations();
    let known = match &view {
        Lookup::Found(installations) => Some(installations.as_slice()),
        _ => None,
    };
    let id = installation_of(&candidate.facts, known);
    if sanctioned.allows(&id) || keeps_its_installation(candidate, &id, known) {
        return Vec::new();
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
    id: &InstallationId,
    known: Option<&[AgentInstallation]>,
) -> bool {
    candidate
        .old
        .as_ref()
        .is_some_and(|old| installation_of(old, known) == *id)
}

impl SingleAgent {
    fn judge_against_cluster(
        &self,
        candidate: &Candidate<'_>,
        ctx: &Context<'_, Settings>,
    ) -> Vec<Finding> {
        // One lock around reading the view and reserving: a second request sees either the
        // first one's reservation or its installation in the view, never neither.
        let mut reservations = self.reservations.lock().unwrap_or_else(|p| p.into_inner());
        let view = ctx.view.agent_installations();
        let known = match &view {
            Lookup::Found(installations) => Some(installations.as_slice()),
            Lookup::Missing => Some(&[][..]),
            Lookup::Unknown => None,
        };
        let id = installation_of(&candidate.facts, known);
        if keeps_its_installation(candidate, &id, known) {
            return Vec::new();
        }
        let old_id = candidate
            .old
            .as_ref()
            .map(|old| installation_of(old, known));
        let is_own = |other: &InstallationId| *other == id || old_id.as_ref() == Some(other);

        let mut findings = Vec::new();
        let installations = match known {
            Some(installations) => installations,
            None => match candidate.settings.when_unknown {
                WhenUnknown::Deny => return vec![unknown_view_denial(candidate, &id)],
                WhenUnknown::Allow => {
                    findings.push(unknown_view_advisory(candidate, &id));
                    &[][..]
                }
            },
        };

        let now = Instant::now();
        // A reservation has done its job once its installation reached the view, even if it
        // has left it again since.
        reservations.retain(|r| {
            now < r.expires
                && !installations.iter().any(|i| i.id == r.id)
                && !ctx.view.agent_installation_applied_since(&r.id, r.made)
        });

        let is_this_object = |o: &AgentObject| candidate.is(o);
        let others: Vec<(&InstallationId, Vec<&AgentObject>)> = installations
            .iter()
            .filter(|i| !is_own(&i.id))
            .filter_map(|i| {
                let objects: Vec<&AgentObject> =
                    i.objects.iter().filter(|o| !is_this_object(o)).collect();
                (!objects.is_empty()).then_some((&i.id, objects))
            })
            .collect();
        let mine = installations.iter().find(|i| i.id == id);

        // `fluxgate check` and the audit scan judge objects that are already in the cluster:
        // such an object is a finding when its installation shares the cluster.
        let already_stored = candidate.operation == Operation::Create
            && mine.is_some_and(|i| i.objects.iter().any(is_this_object));
        if already_stored {
            if let Some((existing, objects)) = others.first() {
                findings.push(Finding::violation(
                    ID,
                    format!(
                        "{} belongs to {id} ({}), a second GitLab agent for Kubernetes in a \
                         cluster that also runs {existing} ({}). {ONE_AGENT} {SHARE_ADVICE}",
                        candidate.object_ref,
                        candidate.evidence,
                        list_objects(objects)
                    ),
                ));
            }
            return findings;
        }

        // A new ReplicaSet, Pod or Job of an installation the cluster already runs (a
        // rollout, a scale-up, a scheduled run) adds no installation.
        if mine.is_some_and(|i| i.objects.iter().any(|o| !is_this_object(o))) {
            return findings;
        }

        if let Some((existing, objects)) = others.first() {
            findings.push(Finding::violation(
                ID,
                format!(
                    "{} would add a second GitLab agent for Kubernetes to this cluster: {id} \
                     ({}), while the cluster already runs {existing} ({}). {ONE_AGENT} \
                     {SHARE_ADVICE}",
                    candidate.object_ref,
                    candidate.evidence,
                    list_objects(objects)
                ),
            ));
            return findings;
        }
        if let Some(r) = reservations.iter().find(|r| !is_own(&r.id)) {
            let age = now.saturating_duration_since(r.made).as_secs();
            let left = r.expires.saturating_duration_since(now).as_secs().max(1);
            findings.push(Finding::violation(
                ID,
                format!(
                    "{} would add a second GitLab agent for Kubernetes to this cluster: {id} \
                     ({}), while {} ({}) was allowed {age}s ago and has not appeared in the \
                     cluster yet. If that request failed, retry in {left}s. {ONE_AGENT} \
                     {SHARE_ADVICE}",
                    candidate.object_ref, candidate.evidence, r.object, r.id
                ),
            ));
            return findings;
        }
        if !candidate.dry_run {
            let ttl = Duration::from_secs(candidate.settings.reservation_ttl_seconds);
            reservations.retain(|r| r.id != id);
            reservations.push(Reservation {
                id,
                object: candidate.object_ref.clone(),
                made: now,
                expires: now + ttl,
            });
        }
        findings
    }
}

impl Candidate<'_> {
    /// Whether a view object is the object this request is about.
    fn is(&self, o: &AgentObject) -> bool {
        match (&o.uid, &self.facts.uid) {
            (Some(a), Some(b)) => a == b,
            _ => {
                o.kind == self.facts.kind
                    && o.namespace == self.facts.namespace
                    && o.name == self.facts.name
            }
        }
    }
}

fn list_objects(objects: &[&AgentObject]) -> String {
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
