//! The in-memory cluster view: compact projections of the objects policies ask about.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::admission::ObjectHead;
use crate::json_view::Indexed;

use super::agents::AgentIndex;
use super::rbac::{self, RbacIndex};
use super::secrets::{self, FluxSecretReference, SecretFacts};
use super::{
    AgentInstallation, ChartReference, ClusterView, HelmRepositoryFacts, Lookup, ObjectKey,
};
use crate::flux::secret_refs;
use crate::flux::secret_refs::SecretUse;
use crate::gitlab::agent::AgentDetector;
use crate::gitlab::installation::InstallationId;
use crate::rbac::objects::{BindingFacts, NamedRoles, RoleFacts, RoleKey};
use crate::selector::LabelSelector;

const FLUX_SOURCE_GROUP: &str = "source.toolkit.fluxcd.io";

/// A Flux object that references Secrets: (kind, namespace, name).
type FluxObjectKey = (&'static str, String, String);

/// One Secret reference of a Flux object: (field, Secret name, use).
type SecretReference = (&'static str, String, SecretUse);

#[derive(Default)]
struct Store {
    namespaces: HashMap<String, BTreeMap<String, String>>,
    helm_repositories: ByNamespace<HelmRepositoryFacts>,
    rbac: RbacIndex,
    /// Secrets by (namespace, name): times only, never data.
    secrets: ByNamespace<SecretFacts>,
    /// The Secret references of Flux objects; objects without any are not kept.
    secret_references: HashMap<FluxObjectKey, Vec<SecretReference>>,
    /// HelmCharts and HelmRelease chart templates by the HelmRepository they pull from
    /// (namespace, name), and each chart object's repository, to move or drop it.
    charts: HashMap<(String, String), Vec<ChartReference>>,
    chart_sources: HashMap<FluxObjectKey, (String, String)>,
}

impl Store {
    fn forget_chart(&mut self, key: &FluxObjectKey) {
        let Some(repository) = self.chart_sources.remove(key) else {
            return;
        };
        if let Some(list) = self.charts.get_mut(&repository) {
            list.retain(|c| !(c.kind == key.0 && c.namespace == key.1 && c.name == key.2));
            if list.is_empty() {
                self.charts.remove(&repository);
            }
        }
    }
}

/// Facts by namespace and name, found with borrowed strings: the webhook looks a Secret or
/// HelmRepository up on every review of a Flux source, and a `(String, String)` key cost two
/// allocations per lookup.
struct ByNamespace<T>(HashMap<String, HashMap<String, T>>);

impl<T> Default for ByNamespace<T> {
    fn default() -> Self {
        ByNamespace(HashMap::new())
    }
}

impl<T> ByNamespace<T> {
    fn get(&self, namespace: &str, name: &str) -> Option<&T> {
        self.0.get(namespace)?.get(name)
    }

    fn insert(&mut self, namespace: String, name: String, facts: T) {
        self.0.entry(namespace).or_default().insert(name, facts);
    }

    fn remove(&mut self, namespace: &str, name: &str) {
        if let Some(names) = self.0.get_mut(namespace) {
            names.remove(name);
            if names.is_empty() {
                self.0.remove(namespace);
            }
        }
    }
}

/// The in-memory view. Writers (tests, `fluxgate check`, the reflectors) call [`MemoryView::apply`]
/// and [`MemoryView::delete`]; policies read through [`ClusterView`].
pub struct MemoryView {
    store: RwLock<Store>,
    synced: AtomicBool,
    /// Holds manifests, not a cluster (see [`ClusterView::offline`]).
    offline: AtomicBool,
    agents: AgentIndex,
    health: WatchHealth,
}

/// How long a watch may fail before the view stops vouching for its kind (`serve
/// --view-grace-seconds`).
pub const DEFAULT_VIEW_GRACE: Duration = Duration::from_secs(60);

/// The kinds each lookup answers from, as [`super::WATCHED_KINDS`] names them.
const NAMESPACE_KINDS: &[&str] = &["Namespace"];
const HELM_REPOSITORY_KINDS: &[&str] = &["HelmRepository"];
const AGENT_KINDS: &[&str] = &[
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "CronJob",
    "Job",
    "Pod",
    "HelmRelease",
];
const ROLE_KINDS: &[&str] = &["Role"];
const CLUSTER_ROLE_KINDS: &[&str] = &["ClusterRole"];
const BINDING_KINDS: &[&str] = &["RoleBinding", "ClusterRoleBinding"];
const SECRET_KINDS: &[&str] = &["Secret"];
const CHART_KINDS: &[&str] = &["HelmChart", "HelmRelease"];
const HELM_GROUP: &str = "helm.toolkit.fluxcd.io";
/// The Flux kinds whose Secret references the view keeps (`flux::secret_refs::KINDS`).
const SECRET_REFERENCE_KINDS: &[&str] = &[
    "GitRepository",
    "OCIRepository",
    "HelmRepository",
    "HelmChart",
    "Bucket",
    "Kustomization",
    "HelmRelease",
];

/// Whether the watches that feed the view are working. A watch that keeps failing (API server
/// unreachable, RBAC revoked, watch errors) leaves the view with what it had when the watch
/// broke; after the grace period the view stops answering for that kind (lookups say
/// `Unknown`, so each policy's fail-open or fail-closed setting decides) and readiness turns
/// false. Kinds whose watches work keep answering.
struct WatchHealth {
    /// Set while any watch is failing, so that lookups pay for the lock only then.
    any_failing: AtomicBool,
    state: Mutex<HealthState>,
}

struct HealthState {
    grace: Duration,
    /// Kind -> when its watch started failing (the end of its last healthy moment).
    failing_since: HashMap<String, Instant>,
    /// Kind -> when its watch last delivered an event or passed a probe.
    last_healthy: HashMap<String, Instant>,
}

/// One watched kind's health, for logs and `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindHealth {
    pub kind: String,
    pub last_healthy: Option<Instant>,
    pub failing_since: Option<Instant>,
    /// Failing for longer than the grace period: lookups of this kind say `Unknown`.
    pub lost: bool,
}

impl WatchHealth {
    fn new() -> Self {
        WatchHealth {
            any_failing: AtomicBool::new(false),
            state: Mutex::new(HealthState {
                grace: DEFAULT_VIEW_GRACE,
                failing_since: HashMap::new(),
                last_healthy: HashMap::new(),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, HealthState> {
        // Only timestamps live here: a map left by a panicking thread is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a watch of one of `kinds` (any kind when empty) has failed for longer than
    /// the grace period. Every lookup asks, so the clock is read only when a watch is failing.
    fn lost_among(&self, kinds: &[&str]) -> bool {
        if !self.any_failing.load(Ordering::Acquire) {
            return false;
        }
        let now = Instant::now();
        let state = self.state();
        state.failing_since.iter().any(|(kind, since)| {
            (kinds.is_empty() || kinds.contains(&kind.as_str()))
                && now.saturating_duration_since(*since) > state.grace
        })
    }
}

impl Default for MemoryView {
    fn default() -> Self {
        MemoryView::new()
    }
}

#[derive(Deserialize, Default)]
struct Meta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Head {
    #[serde(rename = "apiVersion", default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    metadata: Meta,
}

/// Whether the view keeps anything of objects of this kind.
fn keeps(group: &str, kind: &str) -> bool {
    matches!(
        (group, kind),
        ("", "Namespace" | "Secret") | (FLUX_SOURCE_GROUP, "HelmRepository")
    ) || (group == crate::rbac::GROUP && rbac::is_rbac_kind(kind))
        || AgentIndex::indexes(group, kind)
        || secret_refs::flux_kind(group, kind).is_some()
}

#[derive(Deserialize)]
struct HelmRepositoryDoc {
    #[serde(default)]
    spec: Option<HelmRepositorySpec>,
}

#[derive(Deserialize, Default)]
struct HelmRepositorySpec {
    #[serde(default, rename = "type")]
    repo_type: Option<String>,
    #[serde(default)]
    url: String,
    #[serde(default)]
    insecure: Option<bool>,
}

/// The fields of a HelmChart or HelmRelease that say where its chart comes from.
#[derive(Deserialize, Default)]
struct ChartDoc {
    #[serde(default)]
    spec: Option<ChartSpecDoc>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ChartSpecDoc {
    /// HelmChart: the chart name; HelmRelease: the chart template.
    #[serde(default)]
    chart: Option<Value>,
    #[serde(default)]
    source_ref: Option<SourceRefDoc>,
    #[serde(default)]
    verify: Option<Value>,
}

#[derive(Deserialize, Default)]
struct SourceRefDoc {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
}

/// The HelmRepository (namespace, name) a chart object pulls from, and its reference.
fn chart_reference(
    kind: &'static str,
    namespace: &str,
    name: &str,
    doc: ChartDoc,
) -> Option<((String, String), ChartReference)> {
    let spec = doc.spec?;
    let (chart, source, verify, own_namespace_only) = if kind == "HelmChart" {
        let chart = spec.chart.as_ref()?.as_str()?.to_string();
        (chart, spec.source_ref?, spec.verify, true)
    } else {
        let template: ChartSpecDoc =
            serde_json::from_value(spec.chart?.get("spec")?.clone()).ok()?;
        let chart = template.chart.as_ref()?.as_str()?.to_string();
        (chart, template.source_ref?, template.verify, false)
    };
    if source.kind != "HelmRepository" {
        return None;
    }
    let repo_namespace = if own_namespace_only || source.namespace.is_empty() {
        namespace.to_string()
    } else {
        source.namespace
    };
    Some((
        (repo_namespace, source.name),
        ChartReference {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
            chart,
            verify: verify.filter(|v| !v.is_null()).map(|v| v.to_string()),
        },
    ))
}

impl MemoryView {
    /// An empty view that counts as synced: what it holds is all there is.
    pub fn new() -> Self {
        MemoryView {
            store: RwLock::new(Store::default()),
            synced: AtomicBool::new(true),
            offline: AtomicBool::new(false),
            agents: AgentIndex::default(),
            health: WatchHealth::new(),
        }
    }

    /// How long a kind's watch may fail before the view stops answering for that kind.
    pub fn set_view_grace(&self, grace: Duration) {
        self.health.state().grace = grace;
    }

    /// The watch of `kind` works: it delivered an event, or a probe of the API server for
    /// that kind succeeded.
    pub fn watch_healthy(&self, kind: &str) {
        let mut state = self.health.state();
        state.last_healthy.insert(kind.to_string(), Instant::now());
        if state.failing_since.remove(kind).is_some() {
            self.health
                .any_failing
                .store(!state.failing_since.is_empty(), Ordering::Release);
        }
    }

    /// The watch of `kind` failed at `at`. The first failure since it was last healthy
    /// starts the grace period; later ones do not extend it.
    pub fn watch_failed(&self, kind: &str, at: Instant) {
        let mut state = self.health.state();
        state.failing_since.entry(kind.to_string()).or_insert(at);
        self.health.any_failing.store(true, Ordering::Release);
    }

    /// Whether the watch of `kind` is failing now (within the grace period or past it).
    pub fn watch_failing(&self, kind: &str) -> bool {
        self.health.any_failing.load(Ordering::Acquire)
            && self.health.state().failing_since.contains_key(kind)
    }

    /// The health of every kind that has reported any, sorted by kind.
    pub fn watch_health(&self) -> Vec<KindHealth> {
        let now = Instant::now();
        let state = self.health.state();
        let mut kinds: Vec<&String> = state
            .last_healthy
            .keys()
            .chain(state.failing_since.keys())
            .collect();
        kinds.sort();
        kinds.dedup();
        kinds
            .into_iter()
            .map(|kind| {
                let failing_since = state.failing_since.get(kind).copied();
                KindHealth {
                    kind: kind.clone(),
                    last_healthy: state.last_healthy.get(kind).copied(),
                    failing_since,
                    lost: failing_since
                        .is_some_and(|since| now.saturating_duration_since(since) > state.grace),
                }
            })
            .collect()
    }

    /// The kinds whose watches have failed for longer than the grace period.
    pub fn lost_kinds(&self) -> Vec<String> {
        self.watch_health()
            .into_iter()
            .filter(|h| h.lost)
            .map(|h| h.kind)
            .collect()
    }

    /// Whether lookups answered from these kinds can be trusted: the first sync is done and
    /// none of their watches is lost.
    fn knows(&self, kinds: &[&str]) -> bool {
        self.synced.load(Ordering::Acquire) && !self.health.lost_among(kinds)
    }

    /// Which images count as agentk for the agent index: the `single-agent` policy's
    /// `imagePatterns` (`config.policies.single_agent.detector()`). Set it before the first
    /// sync; objects already applied keep the verdict they got until they change.
    pub fn set_agent_detector(&self, detector: AgentDetector) {
        self.agents.set_detector(detector);
    }

    pub fn set_synced(&self, synced: bool) {
        self.synced.store(synced, Ordering::Release);
    }

    /// Marks the view as holding manifests rather than a cluster (`fluxgate check`).
    pub fn set_offline(&self, offline: bool) {
        self.offline.store(offline, Ordering::Relaxed);
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Store> {
        // A panic while holding the lock leaves projections that are each still whole.
        self.store.write().unwrap_or_else(|p| p.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Store> {
        self.store.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds or replaces an object. Kinds no policy asks about are ignored.
    pub fn apply(&self, object: &Value) -> Result<(), String> {
        let json = serde_json::value::to_raw_value(object)
            .map_err(|e| format!("not a Kubernetes object: {e}"))?;
        self.apply_raw(&json)
    }

    /// [`MemoryView::apply_raw`] for an object whose head was read already: an object of a kind
    /// the view does not keep is passed over unread.
    pub fn apply_object(&self, head: &ObjectHead, object: &RawValue) -> Result<(), String> {
        let group = head
            .api_version()
            .rsplit_once('/')
            .map(|(g, _)| g)
            .unwrap_or("");
        if !keeps(group, head.kind()) {
            return Ok(());
        }
        self.apply_raw(object)
    }

    /// [`MemoryView::apply`] for an object's JSON text, which is what `fluxgate check` reads
    /// manifests into: each projection reads only its fields, and no tree is built.
    pub fn apply_raw(&self, object: &RawValue) -> Result<(), String> {
        // Several projections read the object: indexing it once spares each a search.
        let object = &Indexed::new(object);
        let head: Head = object
            .read()
            .map_err(|e| format!("not a Kubernetes object: {e}"))?;
        let group = head
            .api_version
            .rsplit_once('/')
            .map(|(g, _)| g)
            .unwrap_or("");
        let references = self.apply_secret_references(group, &head, object);
        let charts = self.apply_chart_reference(group, &head, object);
        let references = references.and(charts);
        if AgentIndex::indexes(group, &head.kind) {
            let meta = &head.metadata;
            return self
                .agents
                .apply(
                    group,
                    &head.kind,
                    meta.namespace.as_deref(),
                    &meta.name,
                    object,
                )
                .and(references);
        }
        let meta = head.metadata;
        match (group, head.kind.as_str()) {
            ("", "Namespace") => {
                self.write().namespaces.insert(meta.name, meta.labels);
            }
            ("", "Secret") => {
                let (namespace, name, facts) = secrets::project(object)?;
                self.write().secrets.insert(namespace, name, facts);
            }
            (FLUX_SOURCE_GROUP, "HelmRepository") => {
                let spec = object
                    .read::<HelmRepositoryDoc>()
                    .map_err(|e| format!("HelmRepository {e}"))?
                    .spec
                    .unwrap_or_default();
                let facts = HelmRepositoryFacts {
                    oci: spec.repo_type.as_deref() == Some("oci"),
                    url: spec.url,
                    insecure: spec.insecure.unwrap_or(false),
                };
                self.write().helm_repositories.insert(
                    meta.namespace.unwrap_or_default(),
                    meta.name,
                    facts,
                );
            }
            (crate::rbac::GROUP, kind) if rbac::is_rbac_kind(kind) => {
                let projection = rbac::project(kind, object)?;
                self.write().rbac.apply(projection);
            }
            _ => {}
        }
        references
    }

    /// Keeps where a HelmChart or HelmRelease pulls its chart from. One that cannot be read
    /// is dropped (its own review explains it).
    fn apply_chart_reference(
        &self,
        group: &str,
        head: &Head,
        object: &Indexed<'_>,
    ) -> Result<(), String> {
        let kind = match (group, head.kind.as_str()) {
            (FLUX_SOURCE_GROUP, "HelmChart") => "HelmChart",
            (HELM_GROUP, "HelmRelease") => "HelmRelease",
            _ => return Ok(()),
        };
        let namespace = head.metadata.namespace.clone().unwrap_or_default();
        let name = head.metadata.name.clone();
        let found = match object.read::<ChartDoc>() {
            Ok(doc) => chart_reference(kind, &namespace, &name, doc),
            Err(_) => None,
        };
        let mut store = self.write();
        store.forget_chart(&(kind, namespace.clone(), name.clone()));
        if let Some((repository, reference)) = found {
            store
                .chart_sources
                .insert((kind, namespace, name), repository.clone());
            let list = store.charts.entry(repository).or_default();
            list.push(reference);
            list.sort();
        }
        Ok(())
    }

    /// Keeps the Secret references of a Flux object (see [`secret_refs`]). An object whose
    /// references cannot be read keeps none.
    fn apply_secret_references(
        &self,
        group: &str,
        head: &Head,
        object: &Indexed<'_>,
    ) -> Result<(), String> {
        let Some(kind) = secret_refs::flux_kind(group, &head.kind) else {
            return Ok(());
        };
        let key = (
            kind,
            head.metadata.namespace.clone().unwrap_or_default(),
            head.metadata.name.clone(),
        );
        let parsed = secret_refs::from_indexed(object);
        let mut store = self.write();
        match parsed {
            Ok(references) if !references.is_empty() => {
                let kept = references
                    .into_iter()
                    .map(|r| (r.field, r.secret.into_owned(), r.secret_use))
                    .collect();
                store.secret_references.insert(key, kept);
                Ok(())
            }
            Ok(_) => {
                store.secret_references.remove(&key);
                Ok(())
            }
            Err(e) => {
                store.secret_references.remove(&key);
                Err(format!("{kind} Secret references: {e}"))
            }
        }
    }

    /// Forgets an object.
    pub fn delete(&self, key: &ObjectKey) {
        let chart_kind = match (key.group.as_str(), key.kind.as_str()) {
            (FLUX_SOURCE_GROUP, "HelmChart") => Some("HelmChart"),
            (HELM_GROUP, "HelmRelease") => Some("HelmRelease"),
            _ => None,
        };
        if let Some(kind) = chart_kind {
            self.write().forget_chart(&(
                kind,
                key.namespace.clone().unwrap_or_default(),
                key.name.clone(),
            ));
        }
        if let Some(kind) = secret_refs::flux_kind(&key.group, &key.kind) {
            self.write().secret_references.remove(&(
                kind,
                key.namespace.clone().unwrap_or_default(),
                key.name.clone(),
            ));
        }
        if AgentIndex::indexes(&key.group, &key.kind) {
            self.agents
                .delete(&key.group, &key.kind, key.namespace.as_deref(), &key.name);
            return;
        }
        let mut store = self.write();
        match (key.group.as_str(), key.kind.as_str()) {
            ("", "Namespace") => {
                store.namespaces.remove(&key.name);
            }
            ("", "Secret") => {
                store
                    .secrets
                    .remove(key.namespace.as_deref().unwrap_or(""), &key.name);
            }
            (FLUX_SOURCE_GROUP, "HelmRepository") => {
                store
                    .helm_repositories
                    .remove(key.namespace.as_deref().unwrap_or(""), &key.name);
            }
            (crate::rbac::GROUP, kind) => {
                store.rbac.delete(kind, key.namespace.as_deref(), &key.name)
            }
            _ => {}
        }
    }

    /// A list is only whole once the view is synced, and while its watches work.
    fn listing<T>(&self, kinds: &[&str], list: impl FnOnce(&Store) -> T) -> Lookup<T> {
        if !self.knows(kinds) {
            return Lookup::Unknown;
        }
        Lookup::Found(list(&self.read()))
    }

    /// What a lost watch left behind may be stale (deleted or changed since): it is not
    /// vouched for, found or not.
    fn lookup<T: Clone>(&self, kinds: &[&str], found: Option<&T>) -> Lookup<T> {
        if self.health.lost_among(kinds) {
            return Lookup::Unknown;
        }
        match found {
            Some(t) => Lookup::Found(t.clone()),
            None if self.synced.load(Ordering::Acquire) => Lookup::Missing,
            None => Lookup::Unknown,
        }
    }
}

impl ClusterView for MemoryView {
    /// Synced, and no watch lost: `/readyz` turns false when any watch has failed for
    /// longer than the grace period.
    fn synced(&self) -> bool {
        self.knows(&[])
    }

    fn namespace_labels(&self, namespace: &str) -> Lookup<BTreeMap<String, String>> {
        let store = self.read();
        self.lookup(NAMESPACE_KINDS, store.namespaces.get(namespace))
    }

    fn helm_repository(&self, namespace: &str, name: &str) -> Lookup<HelmRepositoryFacts> {
        let store = self.read();
        self.lookup(
            HELM_REPOSITORY_KINDS,
            store.helm_repositories.get(namespace, name),
        )
    }

    fn charts_of(&self, namespace: &str, name: &str) -> Lookup<Vec<ChartReference>> {
        self.listing(CHART_KINDS, |store| {
            store
                .charts
                .get(&(namespace.to_string(), name.to_string()))
                .cloned()
                .unwrap_or_default()
        })
    }

    fn secret(&self, namespace: &str, name: &str) -> Lookup<SecretFacts> {
        let store = self.read();
        self.lookup(SECRET_KINDS, store.secrets.get(namespace, name))
    }

    fn flux_secret_references(&self) -> Lookup<Vec<FluxSecretReference>> {
        self.listing(SECRET_REFERENCE_KINDS, |store| {
            let mut all: Vec<FluxSecretReference> = store
                .secret_references
                .iter()
                .flat_map(|((kind, namespace, name), references)| {
                    references
                        .iter()
                        .map(move |(field, secret, secret_use)| FluxSecretReference {
                            kind,
                            namespace: namespace.clone(),
                            name: name.clone(),
                            field,
                            secret: secret.clone(),
                            secret_use: *secret_use,
                        })
                })
                .collect();
            all.sort();
            all
        })
    }

    fn reconfigure(&self, agents: &AgentDetector) {
        self.set_agent_detector(agents.clone());
    }

    fn agent_installations(&self) -> Lookup<Vec<AgentInstallation>> {
        if self.knows(AGENT_KINDS) {
            Lookup::Found(self.agents.installations())
        } else {
            Lookup::Unknown
        }
    }

    fn agent_installation_applied_since(&self, id: &InstallationId, since: Instant) -> bool {
        self.agents.applied_since(id, since)
    }

    fn role(&self, namespace: &str, name: &str) -> Lookup<Arc<RoleFacts>> {
        let found = self.read().rbac.role(namespace, name);
        self.lookup(ROLE_KINDS, found.as_ref())
    }

    fn cluster_role(&self, name: &str) -> Lookup<Arc<RoleFacts>> {
        let found = self.read().rbac.cluster_role(name);
        self.lookup(CLUSTER_ROLE_KINDS, found.as_ref())
    }

    fn cluster_roles_matching(&self, selector: &LabelSelector) -> Lookup<NamedRoles> {
        self.listing(CLUSTER_ROLE_KINDS, |store| {
            store.rbac.cluster_roles_matching(selector)
        })
    }

    fn cluster_roles_aggregating(&self, labels: &BTreeMap<String, String>) -> Lookup<NamedRoles> {
        self.listing(CLUSTER_ROLE_KINDS, |store| {
            store.rbac.cluster_roles_aggregating(labels)
        })
    }

    fn bindings_to(&self, role: &RoleKey) -> Lookup<Vec<Arc<BindingFacts>>> {
        self.listing(BINDING_KINDS, |store| store.rbac.bindings_to(role))
    }

    fn other_gitlab_identity_in(
        &self,
        namespace: &str,
        except_identity: &str,
        except_binding: &str,
    ) -> Lookup<Option<(String, String)>> {
        self.listing(BINDING_KINDS, |store| {
            store
                .rbac
                .other_gitlab_identity_in(namespace, except_identity, except_binding)
        })
    }

    fn bindings_naming(
        &self,
        kind: &str,
        name: &str,
        namespace: Option<&str>,
    ) -> Lookup<Vec<Arc<BindingFacts>>> {
        self.listing(BINDING_KINDS, |store| {
            store.rbac.bindings_naming(kind, name, namespace)
        })
    }

    fn offline(&self) -> bool {
        self.offline.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_kind_a_lookup_answers_from_is_watched() {
        let flux: Vec<&str> = crate::flux::secret_refs::KINDS
            .iter()
            .map(|(_, kind, _)| *kind)
            .collect();
        assert_eq!(flux, SECRET_REFERENCE_KINDS);
        for kinds in [
            NAMESPACE_KINDS,
            HELM_REPOSITORY_KINDS,
            AGENT_KINDS,
            ROLE_KINDS,
            CLUSTER_ROLE_KINDS,
            BINDING_KINDS,
            SECRET_KINDS,
            SECRET_REFERENCE_KINDS,
            CHART_KINDS,
        ] {
            for kind in kinds {
                assert!(
                    super::super::WATCHED_KINDS.iter().any(|w| w.kind == *kind),
                    "{kind} is not watched"
                );
            }
        }
    }

    #[test]
    fn a_helm_repository_is_found_until_deleted() {
        let view = MemoryView::new();
        view.apply(&json!({
            "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "HelmRepository",
            "metadata": {"name": "podinfo", "namespace": "flux-system"},
            "spec": {"type": "oci", "url": "oci://ghcr.io/stefanprodan/charts"}
        }))
        .expect("applies");
        let found = view
            .helm_repository("flux-system", "podinfo")
            .found()
            .expect("found");
        assert!(found.oci);
        view.delete(&ObjectKey {
            group: FLUX_SOURCE_GROUP.into(),
            kind: "HelmRepository".into(),
            namespace: Some("flux-system".into()),
            name: "podinfo".into(),
        });
        assert_eq!(
            view.helm_repository("flux-system", "podinfo"),
            Lookup::Missing
        );
    }

    #[test]
    fn a_secret_is_found_by_namespace_and_name_until_deleted() {
        let view = MemoryView::new();
        for namespace in ["flux-system", "team-a"] {
            view.apply(&json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "cosign-pub", "namespace": namespace,
                             "creationTimestamp": "2026-01-01T00:00:00Z"},
                "data": {"cosign.pub": "c2VjcmV0"}
            }))
            .expect("applies");
        }
        view.delete(&ObjectKey {
            group: String::new(),
            kind: "Secret".into(),
            namespace: Some("flux-system".into()),
            name: "cosign-pub".into(),
        });
        assert_eq!(view.secret("flux-system", "cosign-pub"), Lookup::Missing);
        assert!(view.secret("team-a", "cosign-pub").found().is_some());
        assert_eq!(view.secret("team-a", "cosign"), Lookup::Missing);
        assert_eq!(view.secret("team-b", "cosign-pub"), Lookup::Missing);
    }

    #[test]
    fn an_unsynced_view_cannot_tell_missing_from_unknown() {
        let view = MemoryView::new();
        view.set_synced(false);
        assert_eq!(view.namespace_labels("team-a"), Lookup::Unknown);
    }
}
