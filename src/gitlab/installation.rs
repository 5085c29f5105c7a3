//! Which agent installation an object belongs to, decided from facts the requester cannot
//! forge.
//!
//! A requester writes an object's labels, annotations and `ownerReferences` as it likes, and
//! a HelmRelease's `releaseName` and `targetNamespace` too. Only its namespace (the one the
//! admission request names), its kind and its name (unique in that namespace) are facts. So:
//! - An object's **controller** counts only when the cluster confirms it: an agent object
//!   with the claimed uid exists, in the same namespace, of the claimed kind and name, and of
//!   a kind that creates objects of this kind ([`AgentKind::controls`]: a Deployment makes
//!   ReplicaSets, a ReplicaSet Pods...). The object then belongs to its owner's
//!   installation. Otherwise it is a **top-level** object of its own.
//! - Each top-level object is its own installation, named by its namespace, kind and name
//!   ([`InstallationId`]). A Helm release claim does not join two top-level objects, with two
//!   exceptions that follow from what the claim's confirmation needs:
//!   - **The gitlab-agent chart's own rename on upgrade.** Chart 2.6.2's
//!     `templates/deployment.yaml` names the Deployment `{{ fullname | trunc 60 }}-v2`, with
//!     the note that the `-v1` suffix "was introduced as an epoch version to be able to
//!     gracefully recreate the deployment in case there is no upgrade path otherwise, e.g.
//!     when changing an immutable field" (gitlab-org/charts/gitlab-agent issue 38). An upgrade
//!     from a chart that named it `<fullname>` or `<fullname>-v1` therefore creates
//!     `<fullname>-v2` next to it, and Helm deletes the old one afterwards. Deployments in the
//!     same namespace that carry the chart's label, claim the same release, and have the same
//!     name once the `-v<N>` suffix is removed (and cut to the chart's 60 characters) are one
//!     installation.
//!   - **A Flux HelmRelease and what helm-controller renders from it.** A workload in the
//!     namespace the HelmRelease installs into, claiming the release the HelmRelease installs
//!     there, joins the HelmRelease's installation: the HelmRelease exists (the cluster view
//!     has it), so the release is the one the view already knows there. One workload (with
//!     its renames) joins a HelmRelease; a second one claiming the same release is a second
//!     installation.
//!
//! Everything here is a pure function of the objects it is given: the cluster view groups
//! what the cluster runs, and `single-agent` groups the same objects with the one a request
//! brings.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::{Hash, Hasher};

use super::agent::{AgentFacts, AgentKind, CHART_NAME};

/// How far ownership chains are followed (Pod -> ReplicaSet -> Deployment is two); a longer
/// or cyclic chain stops here and the object counts as top-level where it stopped.
const MAX_OWNER_DEPTH: usize = 8;

/// The chart cuts its full name to this many characters before adding `-v2`.
const CHART_DEPLOYMENT_NAME_MAX: usize = 60;
/// Kubernetes names (and the chart's full name) are at most this long.
const CHART_FULLNAME_MAX: usize = 63;

/// An agent installation, named by its top-level object. Two ids are the same installation
/// when their namespace, kind, name and chart release are equal; `release` is what the
/// installation installs, for messages and `sanctioned`.
#[derive(Debug, Clone)]
pub struct InstallationId {
    /// The top-level object's namespace: for a workload, where it runs; for a HelmRelease,
    /// where the HelmRelease object is.
    pub namespace: String,
    pub kind: AgentKind,
    /// The top-level object's name; for the chart's Deployments, without the epoch suffix.
    pub name: String,
    /// For the chart's Deployments: the release they claim, which ties their renames.
    pub chart_release: Option<String>,
    /// The Helm release (namespace, name) it installs or claims to be, for messages.
    pub release: Option<(String, String)>,
}

impl InstallationId {
    fn key(&self) -> (&str, AgentKind, &str, Option<&str>) {
        (
            &self.namespace,
            self.kind,
            &self.name,
            self.chart_release.as_deref(),
        )
    }

    /// The installation a top-level object makes on its own.
    pub fn of_top(facts: &AgentFacts) -> InstallationId {
        if facts.kind == AgentKind::HelmRelease {
            return InstallationId {
                namespace: facts.namespace.clone(),
                kind: facts.kind,
                name: facts.name.clone(),
                chart_release: None,
                release: facts.installs.clone(),
            };
        }
        let chart_release = is_chart_deployment(facts)
            .then(|| facts.release_claim.clone())
            .flatten();
        let name = match chart_release {
            Some(_) => chart_base(&facts.name).to_string(),
            None => facts.name.clone(),
        };
        InstallationId {
            namespace: facts.namespace.clone(),
            kind: facts.kind,
            name,
            chart_release,
            release: facts
                .release_claim
                .as_ref()
                .map(|r| (facts.namespace.clone(), r.clone())),
        }
    }

    /// The namespace of the top-level object.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The top-level object's name (the chart's Deployments without the epoch suffix).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A stable text form for the cluster-wide reservation: `Kind/namespace/name`, with
    /// `/release` for the chart's Deployments.
    pub fn key_text(&self) -> String {
        match &self.chart_release {
            Some(release) => format!("{}/{}/{}/{release}", self.kind, self.namespace, self.name),
            None => format!("{}/{}/{}", self.kind, self.namespace, self.name),
        }
    }

    /// The id [`InstallationId::key_text`] wrote (without the release shown in messages).
    pub fn from_key_text(text: &str) -> Option<InstallationId> {
        let mut parts = text.splitn(4, '/');
        let kind_text = parts.next()?;
        let kind = AgentKind::ALL.into_iter().find(|k| k.kind() == kind_text)?;
        let namespace = parts.next()?.to_string();
        let name = parts.next()?.to_string();
        let chart_release = parts.next().map(str::to_string);
        (!name.is_empty()).then_some(InstallationId {
            release: chart_release.clone().map(|r| (namespace.clone(), r)),
            namespace,
            kind,
            name,
            chart_release,
        })
    }
}

impl PartialEq for InstallationId {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for InstallationId {}

impl Hash for InstallationId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

impl PartialOrd for InstallationId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for InstallationId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

impl fmt::Display for InstallationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The chart's Deployments are named by their release alone: their own names change
        // with the chart's epoch suffix.
        // An empty namespace is a manifest's that sets none (`fluxgate check`).
        let qualified = |namespace: &str, name: &str| {
            if namespace.is_empty() {
                name.to_string()
            } else {
                format!("{namespace}/{name}")
            }
        };
        let top = format!("{} {}", self.kind, qualified(&self.namespace, &self.name));
        match (&self.release, &self.chart_release) {
            (Some((namespace, release)), Some(_)) => {
                write!(f, "Helm release {}", qualified(namespace, release))
            }
            (Some((namespace, release)), None) => {
                write!(f, "Helm release {} ({top})", qualified(namespace, release))
            }
            (None, _) => f.write_str(&top),
        }
    }
}

/// A Deployment of the gitlab-agent chart: carries its label and claims a release.
fn is_chart_deployment(facts: &AgentFacts) -> bool {
    facts.kind == AgentKind::Deployment && facts.chart_label && facts.release_claim.is_some()
}

/// `gitlab-agent-v2` -> `gitlab-agent`: a name without the chart's epoch suffix.
pub fn without_epoch_suffix(name: &str) -> &str {
    match name.rsplit_once("-v") {
        Some((base, epoch))
            if !base.is_empty()
                && !epoch.is_empty()
                && epoch.bytes().all(|b| b.is_ascii_digit()) =>
        {
            base
        }
        _ => name,
    }
}

/// The part of a chart Deployment's name its renames share: without the epoch suffix, cut
/// to the 60 characters the chart keeps before `-v2`.
fn chart_base(name: &str) -> &str {
    let base = without_epoch_suffix(name);
    let mut cut = base.len().min(CHART_DEPLOYMENT_NAME_MAX);
    while !base.is_char_boundary(cut) {
        cut -= 1;
    }
    base[..cut].trim_end_matches('-')
}

/// The chart's full name for a release without overrides: the release name when it contains
/// `gitlab-agent`, else `<release>-gitlab-agent`, cut to 63 characters.
pub fn chart_fullname(release: &str) -> String {
    let full = if release.contains(CHART_NAME) {
        release.to_string()
    } else {
        format!("{release}-{CHART_NAME}")
    };
    let mut cut = full.len().min(CHART_FULLNAME_MAX);
    while !full.is_char_boundary(cut) {
        cut -= 1;
    }
    full[..cut].trim_end_matches('-').to_string()
}

/// Whether a top-level workload named `name` is the Deployment (or, for an installation
/// without Helm, the workload) of `release`: its name is the release's, or the chart's name
/// for it, with any epoch suffix.
pub fn named_for_release(name: &str, release: &str) -> bool {
    without_epoch_suffix(name) == release
        || chart_base(name) == chart_base(&chart_fullname(release))
}

/// One installation: its id and its objects (indexes into the grouped slice), top-level
/// objects first.
#[derive(Debug, Clone)]
pub struct Installation {
    pub id: InstallationId,
    pub members: Vec<usize>,
    /// The top-level objects among `members`.
    pub tops: Vec<usize>,
}

/// Objects grouped into installations.
#[derive(Debug, Clone)]
pub struct Grouping {
    installations: Vec<Installation>,
    /// Object index -> installation index.
    of: Vec<usize>,
    /// Object index -> its confirmed controller's index.
    parent: Vec<Option<usize>>,
}

impl Grouping {
    pub fn installations(&self) -> &[Installation] {
        &self.installations
    }

    /// The installation an object belongs to.
    pub fn installation_of(&self, object: usize) -> &Installation {
        &self.installations[self.of[object]]
    }

    /// Whether an object's controller is confirmed (it is not top-level).
    pub fn has_confirmed_owner(&self, object: usize) -> bool {
        self.parent[object].is_some()
    }
}

/// The confirmed controller of each object.
fn confirmed_owners(objects: &[AgentFacts]) -> Vec<Option<usize>> {
    let mut by_uid: HashMap<&str, usize> = HashMap::with_capacity(objects.len());
    let mut by_name: HashMap<(AgentKind, &str, &str), usize> = HashMap::new();
    for (i, o) in objects.iter().enumerate() {
        if let Some(uid) = &o.uid {
            by_uid.insert(uid, i);
        }
        by_name.insert((o.kind, &o.namespace, &o.name), i);
    }
    objects
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let claim = o.owner.as_ref()?;
            let kind = AgentKind::of(&claim.group, &claim.kind)?;
            if !kind.controls(o.kind) {
                return None;
            }
            // By uid, as the garbage collector follows owners; an object without a uid (a
            // manifest for `fluxgate check`) by kind, namespace and name.
            let owner = claim
                .uid
                .as_deref()
                .and_then(|uid| by_uid.get(uid).copied())
                .or_else(|| {
                    by_name
                        .get(&(kind, o.namespace.as_str(), claim.name.as_str()))
                        .copied()
                        .filter(|&j| objects[j].uid.is_none() || claim.uid.is_none())
                })?;
            let candidate = &objects[owner];
            (owner != i
                && candidate.kind == kind
                && candidate.namespace == o.namespace
                && candidate.name == claim.name)
                .then_some(owner)
        })
        .collect()
}

/// Groups objects into installations (see the module documentation).
pub fn group(objects: &[AgentFacts]) -> Grouping {
    let parent = confirmed_owners(objects);
    let top_of = |mut i: usize| {
        for _ in 0..MAX_OWNER_DEPTH {
            match parent[i] {
                Some(p) => i = p,
                None => break,
            }
        }
        i
    };
    let tops: Vec<usize> = (0..objects.len()).map(top_of).collect();
    // A cycle of confirmed owners has no top-level object: the object where the walk
    // stopped stands for it.
    let parent: Vec<Option<usize>> = parent
        .iter()
        .enumerate()
        .map(|(i, p)| p.filter(|_| tops[i] != i))
        .collect();

    // Each top-level object's own installation; the chart's renames share one.
    let mut units: BTreeMap<InstallationId, Vec<usize>> = BTreeMap::new();
    for (i, &top) in tops.iter().enumerate() {
        if top == i {
            units
                .entry(InstallationId::of_top(&objects[i]))
                .or_default()
                .push(i);
        }
    }

    // A HelmRelease takes the workload that claims the release it installs and comes first
    // in `objects`: callers list what the cluster already has before an object under review,
    // so a newcomer never displaces the workload a HelmRelease already has.
    let mut joined: HashMap<InstallationId, InstallationId> = HashMap::new();
    for (id, _) in units
        .iter()
        .filter(|(id, _)| id.kind == AgentKind::HelmRelease)
    {
        let Some((namespace, release)) = &id.release else {
            continue;
        };
        let workload = units
            .iter()
            .filter(|(other, members)| {
                other.kind != AgentKind::HelmRelease
                    && !joined.contains_key(*other)
                    && other.namespace == *namespace
                    && members
                        .iter()
                        .any(|&m| objects[m].release_claim.as_deref() == Some(release.as_str()))
            })
            .min_by_key(|(_, members)| members.iter().min().copied());
        if let Some((workload, _)) = workload {
            joined.insert(workload.clone(), id.clone());
        }
    }

    let mut index: BTreeMap<InstallationId, usize> = BTreeMap::new();
    let mut installations: Vec<Installation> = Vec::new();
    let mut unit_installation: HashMap<&InstallationId, usize> = HashMap::new();
    for id in units.keys() {
        let anchor = joined.get(id).unwrap_or(id);
        let at = *index.entry(anchor.clone()).or_insert_with(|| {
            installations.push(Installation {
                id: anchor.clone(),
                members: Vec::new(),
                tops: Vec::new(),
            });
            installations.len() - 1
        });
        unit_installation.insert(id, at);
    }
    let mut of = vec![0; objects.len()];
    for (id, members) in &units {
        let at = unit_installation[id];
        installations[at].tops.extend(members);
    }
    for (i, &top) in tops.iter().enumerate() {
        let at = installations
            .iter()
            .position(|inst| inst.tops.contains(&top))
            .unwrap_or(0);
        of[i] = at;
        installations[at].members.push(i);
    }
    for installation in &mut installations {
        let order = |&i: &usize| {
            let o = &objects[i];
            (o.kind, o.namespace.clone(), o.name.clone())
        };
        installation.members.sort_by_key(order);
        installation.tops.sort_by_key(order);
    }
    Grouping {
        installations,
        of,
        parent,
    }
}

#[cfg(test)]
mod tests {
    use super::super::agent::OwnerClaim;
    use super::*;

    fn facts(kind: AgentKind, namespace: &str, name: &str, uid: &str) -> AgentFacts {
        AgentFacts {
            kind,
            namespace: namespace.into(),
            name: name.into(),
            uid: Some(uid.into()),
            owner: None,
            release_claim: None,
            chart_label: false,
            installs: None,
            undecided: false,
            token_secret: None,
            service_account: None,
        }
    }

    fn owned(mut f: AgentFacts, kind: &str, name: &str, uid: &str) -> AgentFacts {
        let group = AgentKind::ALL
            .into_iter()
            .find(|k| k.kind() == kind)
            .map_or("", |k| k.group());
        f.owner = Some(OwnerClaim {
            group: group.into(),
            kind: kind.into(),
            name: name.into(),
            uid: Some(uid.into()),
        });
        f
    }

    fn chart(mut f: AgentFacts, release: &str) -> AgentFacts {
        f.chart_label = true;
        f.release_claim = Some(release.into());
        f
    }

    fn count(objects: &[AgentFacts]) -> usize {
        group(objects).installations().len()
    }

    #[test]
    fn a_confirmed_controller_chain_is_one_installation() {
        let d = facts(AgentKind::Deployment, "agents", "agent", "d");
        let rs = owned(
            facts(AgentKind::ReplicaSet, "agents", "agent-5d4", "rs"),
            "Deployment",
            "agent",
            "d",
        );
        let pod = owned(
            facts(AgentKind::Pod, "agents", "agent-5d4-x", "p"),
            "ReplicaSet",
            "agent-5d4",
            "rs",
        );
        assert_eq!(count(&[pod.clone(), rs.clone(), d.clone()]), 1);
        let grouping = group(&[pod, rs, d]);
        assert_eq!(grouping.installations()[0].tops.len(), 1);
    }

    #[test]
    fn an_owner_claim_that_the_objects_do_not_confirm_is_ignored() {
        let d = facts(AgentKind::Deployment, "agents", "agent", "d");
        for (what, claimant) in [
            // Another namespace, with the real uid.
            (
                "other namespace",
                owned(
                    facts(AgentKind::ReplicaSet, "team-a", "x", "x"),
                    "Deployment",
                    "agent",
                    "d",
                ),
            ),
            // A kind the owner never makes.
            (
                "pod of a deployment",
                owned(
                    facts(AgentKind::Pod, "agents", "x", "x"),
                    "Deployment",
                    "agent",
                    "d",
                ),
            ),
            (
                "deployment of a deployment",
                owned(
                    facts(AgentKind::Deployment, "agents", "x", "x"),
                    "Deployment",
                    "agent",
                    "d",
                ),
            ),
            // The uid, but another name.
            (
                "other name",
                owned(
                    facts(AgentKind::ReplicaSet, "agents", "x", "x"),
                    "Deployment",
                    "other",
                    "d",
                ),
            ),
            // A uid nobody has.
            (
                "unknown uid",
                owned(
                    facts(AgentKind::ReplicaSet, "agents", "x", "x"),
                    "Deployment",
                    "agent",
                    "nope",
                ),
            ),
        ] {
            assert_eq!(count(&[d.clone(), claimant]), 2, "{what}");
        }
    }

    #[test]
    fn release_claims_do_not_join_top_level_workloads() {
        let a = chart(
            facts(AgentKind::Deployment, "agents", "gitlab-agent-v2", "a"),
            "gitlab-agent",
        );
        let evil = chart(
            facts(AgentKind::Deployment, "agents", "evil", "b"),
            "gitlab-agent",
        );
        assert_eq!(count(&[a.clone(), evil]), 2);
        let elsewhere = chart(
            facts(AgentKind::Deployment, "team-a", "gitlab-agent-v2", "c"),
            "gitlab-agent",
        );
        assert_eq!(count(&[a, elsewhere]), 2);
    }

    #[test]
    fn the_charts_rename_is_one_installation() {
        let v2 = chart(
            facts(AgentKind::Deployment, "agents", "gitlab-agent-v2", "a"),
            "gitlab-agent",
        );
        for old in ["gitlab-agent", "gitlab-agent-v1"] {
            let old = chart(
                facts(AgentKind::Deployment, "agents", old, "b"),
                "gitlab-agent",
            );
            assert_eq!(count(&[old, v2.clone()]), 1);
        }
        // Without the chart's label, or for another release, a second installation.
        let mut plain = facts(AgentKind::Deployment, "agents", "gitlab-agent", "b");
        plain.release_claim = Some("gitlab-agent".into());
        assert_eq!(count(&[plain, v2.clone()]), 2);
        let other = chart(
            facts(AgentKind::Deployment, "agents", "gitlab-agent", "b"),
            "other",
        );
        assert_eq!(count(&[other, v2]), 2);
        // The chart cuts a long full name to 60 characters before `-v2`.
        let long = "a".repeat(50) + "-gitlab-agent";
        let old = chart(facts(AgentKind::Deployment, "agents", &long, "b"), &long);
        let new = chart(
            facts(
                AgentKind::Deployment,
                "agents",
                &format!("{}-v2", &long[..60]),
                "a",
            ),
            &long,
        );
        assert_eq!(count(&[old, new]), 1);
    }

    #[test]
    fn a_helm_release_joins_the_first_workload_that_claims_its_release() {
        let mut hr = facts(AgentKind::HelmRelease, "flux-system", "gitlab-agent", "h");
        hr.installs = Some(("gitlab-agent".into(), "gitlab-agent".into()));
        let d = chart(
            facts(
                AgentKind::Deployment,
                "gitlab-agent",
                "gitlab-agent-v2",
                "d",
            ),
            "gitlab-agent",
        );
        let grouping = group(&[hr.clone(), d.clone()]);
        assert_eq!(grouping.installations().len(), 1);
        assert_eq!(grouping.installations()[0].id.kind, AgentKind::HelmRelease);
        // A second workload claiming the same release is not the HelmRelease's, even with a
        // name that sorts first.
        let evil = chart(
            facts(AgentKind::Deployment, "gitlab-agent", "a-evil-v2", "e"),
            "gitlab-agent",
        );
        let grouping = group(&[hr.clone(), d.clone(), evil]);
        assert_eq!(grouping.installations().len(), 2);
        assert_eq!(grouping.installation_of(1).id.kind, AgentKind::HelmRelease);
        // Nor is one in another namespace.
        let elsewhere = chart(
            facts(AgentKind::Deployment, "team-a", "gitlab-agent-v2", "f"),
            "gitlab-agent",
        );
        assert_eq!(count(&[hr, elsewhere]), 2);
    }

    #[test]
    fn ownership_cycles_end() {
        let a = owned(
            facts(AgentKind::ReplicaSet, "ns", "a", "a"),
            "Deployment",
            "b",
            "b",
        );
        let b = owned(
            facts(AgentKind::Deployment, "ns", "b", "b"),
            "ReplicaSet",
            "a",
            "a",
        );
        assert!(count(&[a, b]) >= 1);
        let p = owned(facts(AgentKind::Pod, "ns", "p", "p"), "Pod", "p", "p");
        assert_eq!(count(&[p]), 1);
    }

    #[test]
    fn ids_survive_their_text_form() {
        let d = chart(
            facts(AgentKind::Deployment, "agents", "gitlab-agent-v2", "a"),
            "gitlab-agent",
        );
        let id = InstallationId::of_top(&d);
        assert_eq!(id.key_text(), "Deployment/agents/gitlab-agent/gitlab-agent");
        assert_eq!(InstallationId::from_key_text(&id.key_text()), Some(id));
        let hr = facts(AgentKind::HelmRelease, "flux-system", "agent", "h");
        let id = InstallationId::of_top(&hr);
        assert_eq!(InstallationId::from_key_text(&id.key_text()), Some(id));
        assert_eq!(InstallationId::from_key_text("Nope/a/b"), None);
    }

    #[test]
    fn names_for_a_release() {
        assert!(named_for_release("gitlab-agent-v2", "gitlab-agent"));
        assert!(named_for_release("gitlab-agent", "gitlab-agent"));
        assert!(named_for_release("test-gitlab-agent-v2", "test"));
        assert!(!named_for_release("evil-v2", "gitlab-agent"));
        assert!(!named_for_release("test-v2", "gitlab-agent"));
        assert_eq!(without_epoch_suffix("gitlab-agent-v10"), "gitlab-agent");
        assert_eq!(without_epoch_suffix("agent-vx"), "agent-vx");
        assert_eq!(without_epoch_suffix("-v2"), "-v2");
    }
}
