//! The cluster view's index of GitLab agent objects: only objects that run or install agentk
//! (or may: [`AgentFacts::undecided`]) are kept (a few dozen in a cluster with one agent),
//! each as a projection of a few strings, so that the `single-agent` policy never scans the
//! cluster's workloads.
//!
//! Non-agent workloads are dropped when they are applied, and a workload that stops being an
//! agent (an image bump away from agentk, a label removed) is dropped on that update. A Pod
//! whose controller is already in the index with the uid, namespace and name it claims (and
//! of a kind that makes Pods) is represented by that controller and not kept, so a DaemonSet
//! on a thousand nodes is one entry; a Pod whose claimed owner is not there is kept, and
//! counts as an installation of its own until the owner arrives (see
//! [`crate::gitlab::installation`]).

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use crate::gitlab::agent::{AgentDetector, AgentFacts, AgentKind};
use crate::gitlab::installation::{self, InstallationId};
use crate::json_view::Indexed;

/// How long the index remembers when an installation was last applied: at least the longest
/// reservation `single-agent` allows.
const APPLIED_MEMORY: Duration = Duration::from_secs(3600);
/// Below this many remembered installations, none are forgotten.
const APPLIED_PRUNE_ABOVE: usize = 64;

/// An object of an agent installation: the facts identity needs.
pub type AgentObject = AgentFacts;

/// One installation the cluster runs, with its objects (top-level kinds first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentInstallation {
    pub id: InstallationId,
    pub objects: Vec<AgentObject>,
}

impl AgentInstallation {
    pub fn contains_uid(&self, uid: &str) -> bool {
        self.objects.iter().any(|o| o.uid.as_deref() == Some(uid))
    }

    /// Whether every object of it only may run agentk ([`AgentFacts::undecided`]).
    pub fn undecided(&self) -> bool {
        self.objects.iter().all(|o| o.undecided)
    }
}

/// Groups agent objects into installations (see [`crate::gitlab::installation`]).
pub fn installations_of(objects: &[AgentFacts]) -> Vec<AgentInstallation> {
    let grouping = installation::group(objects);
    grouping
        .installations()
        .iter()
        .map(|i| AgentInstallation {
            id: i.id.clone(),
            objects: i.members.iter().map(|&m| objects[m].clone()).collect(),
        })
        .collect()
}

type EntryKey = (AgentKind, String, String);

#[derive(Default)]
struct Entries {
    by_key: HashMap<EntryKey, AgentFacts>,
    by_uid: HashMap<String, EntryKey>,
    /// When an object of each installation was last applied, by the installation the
    /// object makes on its own ([`InstallationId::of_top`]): what a reservation names.
    applied: HashMap<InstallationId, Instant>,
}

impl Entries {
    fn remove(&mut self, key: &EntryKey) {
        if let Some(old) = self.by_key.remove(key)
            && let Some(uid) = old.uid
            && self.by_uid.get(&uid) == Some(key)
        {
            self.by_uid.remove(&uid);
        }
    }

    fn insert(&mut self, facts: AgentFacts) {
        let key = (facts.kind, facts.namespace.clone(), facts.name.clone());
        self.remove(&key);
        if let Some(uid) = &facts.uid {
            self.by_uid.insert(uid.clone(), key.clone());
            // Pods kept before their controller arrived are represented by it now.
            if facts.kind.controls(AgentKind::Pod) {
                let represented: Vec<EntryKey> = self
                    .by_key
                    .iter()
                    .filter(|(_, pod)| pod.kind == AgentKind::Pod && self.represents(&facts, pod))
                    .map(|(k, _)| k.clone())
                    .collect();
                for pod in represented {
                    self.remove(&pod);
                }
            }
        }
        let now = Instant::now();
        if self.applied.len() > APPLIED_PRUNE_ABOVE {
            self.applied
                .retain(|_, at| now.saturating_duration_since(*at) < APPLIED_MEMORY);
        }
        self.applied.insert(InstallationId::of_top(&facts), now);
        self.by_key.insert(key, facts);
    }

    /// Whether `owner` is the controller `object` claims, confirmed.
    fn represents(&self, owner: &AgentFacts, object: &AgentFacts) -> bool {
        object.owner.as_ref().is_some_and(|claim| {
            AgentKind::of(&claim.group, &claim.kind) == Some(owner.kind)
                && owner.kind.controls(object.kind)
                && claim.name == owner.name
                && object.namespace == owner.namespace
                && claim.uid.is_some()
                && claim.uid == owner.uid
        })
    }

    /// Whether the index already has the controller that stands for this Pod.
    fn has_owner_of(&self, pod: &AgentFacts) -> bool {
        pod.owner
            .as_ref()
            .and_then(|claim| claim.uid.as_ref())
            .and_then(|uid| self.by_key.get(self.by_uid.get(uid)?))
            .is_some_and(|owner| self.represents(owner, pod))
    }
}

/// The agent index kept by [`super::MemoryView`].
#[derive(Default)]
pub struct AgentIndex {
    detector: RwLock<AgentDetector>,
    entries: RwLock<Entries>,
}

impl AgentIndex {
    /// Whether objects of this group and kind go to this index.
    pub fn indexes(group: &str, kind: &str) -> bool {
        AgentKind::of(group, kind).is_some()
    }

    /// Sets which images count as agentk (the policy's `imagePatterns`). Objects applied
    /// before keep the verdict they got: set it before the first sync, and resync after a
    /// change.
    pub fn set_detector(&self, detector: AgentDetector) {
        *self.detector.write().unwrap_or_else(|p| p.into_inner()) = detector;
    }

    /// Adds, replaces or (when it is not, or no longer, an agent) drops an object.
    pub fn apply(
        &self,
        group: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        object: &Indexed<'_>,
    ) -> Result<(), String> {
        let Some(kind) = AgentKind::of(group, kind) else {
            return Ok(());
        };
        let recognised = self
            .detector
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .recognise_with(kind, object.raw(), object.skims(), None)?;
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        let kept = recognised
            .map(|(facts, _evidence)| facts)
            .filter(|facts| !(kind == AgentKind::Pod && entries.has_owner_of(facts)))
            .map(|facts| AgentFacts {
                token_secret: crate::gitlab::agent::token_secret(object),
                service_account: crate::gitlab::agent::service_account(object),
                ..facts
            });
        match kept {
            Some(facts) => entries.insert(facts),
            None => {
                entries.remove(&(kind, namespace.unwrap_or("").to_string(), name.to_string()));
            }
        }
        Ok(())
    }

    /// Forgets an object.
    pub fn delete(&self, group: &str, kind: &str, namespace: Option<&str>, name: &str) {
        if let Some(kind) = AgentKind::of(group, kind) {
            self.entries
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&(kind, namespace.unwrap_or("").to_string(), name.to_string()));
        }
    }

    /// Every installation, each with its objects; ordered by installation.
    pub fn installations(&self) -> Vec<AgentInstallation> {
        let objects: Vec<AgentFacts> = {
            let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
            let mut objects: Vec<AgentFacts> = entries.by_key.values().cloned().collect();
            objects.sort_by(|a, b| {
                (a.kind, &a.namespace, &a.name).cmp(&(b.kind, &b.namespace, &b.name))
            });
            objects
        };
        installations_of(&objects)
    }

    /// Whether an object of this installation was applied at or after `since`.
    pub fn applied_since(&self, id: &InstallationId, since: Instant) -> bool {
        self.entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .applied
            .get(id)
            .is_some_and(|at| *at >= since)
    }

    /// How many objects the index keeps (for tests and metrics).
    pub fn len(&self) -> usize {
        self.entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .by_key
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// The index is fed JSON text; the tests write objects as values.
    trait ApplyValue {
        fn apply_value(&self, group: &str, kind: &str, object: &Value) -> Result<(), String>;
    }

    impl ApplyValue for AgentIndex {
        fn apply_value(&self, group: &str, kind: &str, object: &Value) -> Result<(), String> {
            let json = serde_json::value::to_raw_value(object).expect("a value is JSON");
            let meta = |field: &str| object["metadata"][field].as_str();
            let name = meta("name").unwrap_or("");
            self.apply(group, kind, meta("namespace"), name, &Indexed::new(&json))
        }
    }

    fn agentk_deployment(name: &str, image: &str) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "agents", "uid": format!("uid-{name}")},
            "spec": {"template": {"spec": {"containers": [{"name": "agent", "image": image}]}}}
        })
    }

    const AGENTK: &str =
        "registry.gitlab.com/gitlab-org/cluster-integration/gitlab-agent/agentk:v17.3.1";

    #[test]
    fn non_agent_workloads_are_not_kept() {
        let index = AgentIndex::default();
        index
            .apply_value(
                "apps",
                "Deployment",
                &agentk_deployment("web", "nginx:1.25"),
            )
            .expect("applies");
        assert!(index.is_empty());
    }

    #[test]
    fn a_workload_that_stops_running_agentk_is_dropped() {
        let index = AgentIndex::default();
        index
            .apply_value("apps", "Deployment", &agentk_deployment("agent", AGENTK))
            .expect("applies");
        assert_eq!(index.len(), 1);
        index
            .apply_value(
                "apps",
                "Deployment",
                &agentk_deployment("agent", "nginx:1.25"),
            )
            .expect("applies");
        assert!(index.is_empty());
        assert!(index.installations().is_empty());
    }

    #[test]
    fn pods_of_a_replicaset_are_represented_by_it() {
        let index = AgentIndex::default();
        let rs = json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "agent-5d4", "namespace": "agents", "uid": "rs-1"},
            "spec": {"template": {"spec": {"containers": [{"name": "agent", "image": AGENTK}]}}}
        });
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "agent-5d4-x", "namespace": "agents", "uid": "pod-1",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "agent-5d4", "uid": "rs-1", "controller": true}]},
            "spec": {"containers": [{"name": "agent", "image": AGENTK}]}
        });
        // Listed before its ReplicaSet: kept until the ReplicaSet arrives.
        index.apply_value("", "Pod", &pod).expect("applies");
        assert_eq!(index.len(), 1);
        index
            .apply_value("apps", "ReplicaSet", &rs)
            .expect("applies");
        assert_eq!(index.len(), 1);
        index.apply_value("", "Pod", &pod).expect("applies");
        assert_eq!(index.len(), 1);
        assert_eq!(index.installations().len(), 1);
    }

    #[test]
    fn a_pod_claiming_an_owner_that_is_not_there_is_its_own_installation() {
        let index = AgentIndex::default();
        index
            .apply_value("apps", "Deployment", &agentk_deployment("agent", AGENTK))
            .expect("applies");
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "sneaky", "namespace": "agents", "uid": "pod-2",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "agent", "uid": "uid-agent", "controller": true}]},
            "spec": {"containers": [{"name": "agent", "image": AGENTK}]}
        });
        index.apply_value("", "Pod", &pod).expect("applies");
        assert_eq!(index.installations().len(), 2);
    }

    #[test]
    fn owned_objects_join_their_owners_installation() {
        let index = AgentIndex::default();
        let rs = json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "agent-5d4", "namespace": "agents", "uid": "rs-1",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "agent-v2", "uid": "uid-agent-v2", "controller": true}]},
            "spec": {"template": {"spec": {"containers": [{"name": "agent", "image": AGENTK}]}}}
        });
        // The ReplicaSet may be listed before its Deployment.
        index
            .apply_value("apps", "ReplicaSet", &rs)
            .expect("applies");
        index
            .apply_value("apps", "Deployment", &agentk_deployment("agent-v2", AGENTK))
            .expect("applies");
        let installations = index.installations();
        assert_eq!(installations.len(), 1, "{installations:?}");
        assert_eq!(installations[0].objects.len(), 2);
        assert_eq!(installations[0].objects[0].kind, AgentKind::Deployment);
    }

    #[test]
    fn an_ownership_cycle_still_counts_as_an_installation() {
        let index = AgentIndex::default();
        for (name, owner) in [("a", "uid-b"), ("b", "uid-a")] {
            let mut object = agentk_deployment(name, AGENTK);
            object["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "Deployment", "name": "x", "uid": owner, "controller": true}]);
            index
                .apply_value("apps", "Deployment", &object)
                .expect("applies");
        }
        assert!(!index.installations().is_empty());
    }
}
