//! The in-memory cluster view: compact projections of the objects policies ask about.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use serde::Deserialize;
use serde_json::Value;

use super::agents::AgentIndex;
use super::rbac::{self, BindingFacts, NamedRoles, RbacIndex, RoleFacts, RoleKey};
use super::secrets::{self, FluxSecretReference, SecretFacts, SecretUse};
use super::{AgentInstallation, ClusterView, HelmRepositoryFacts, Lookup, ObjectKey};
use crate::config::LabelSelector;
use crate::flux::secret_refs;
use crate::gitlab::agent::{AgentDetector, InstallationId};

const FLUX_SOURCE_GROUP: &str = "source.toolkit.fluxcd.io";

/// A Flux object that references Secrets: (kind, namespace, name).
type FluxObjectKey = (&'static str, String, String);

/// One Secret reference of a Flux object: (field, Secret name, use).
type SecretReference = (&'static str, String, SecretUse);

#[derive(Default)]
struct Store {
    namespaces: HashMap<String, BTreeMap<String, String>>,
    helm_repositories: HashMap<(String, String), HelmRepositoryFacts>,
    rbac: RbacIndex,
    /// Secrets by (namespace, name): times only, never data.
    secrets: HashMap<(String, String), SecretFacts>,
    /// The Secret references of Flux objects; objects without any are not kept.
    secret_references: HashMap<FluxObjectKey, Vec<SecretReference>>,
}

/// The in-memory view. Writers (tests, `fluxgate check`, the reflectors) call [`MemoryView::apply`]
/// and [`MemoryView::delete`]; policies read through [`ClusterView`].
pub struct MemoryView {
    store: RwLock<Store>,
    synced: AtomicBool,
    agents: AgentIndex,
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

#[derive(Deserialize, Default)]
struct HelmRepositorySpec {
    #[serde(default, rename = "type")]
    repo_type: Option<String>,
    #[serde(default)]
    url: String,
    #[serde(default)]
    insecure: Option<bool>,
}

impl MemoryView {
    /// An empty view that counts as synced: what it holds is all there is.
    pub fn new() -> Self {
        MemoryView {
            store: RwLock::new(Store::default()),
            synced: AtomicBool::new(true),
            agents: AgentIndex::default(),
        }
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

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Store> {
        // A panic while holding the lock leaves projections that are each still whole.
        self.store.write().unwrap_or_else(|p| p.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Store> {
        self.store.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds or replaces an object. Kinds no policy asks about are ignored.
    pub fn apply(&self, object: &Value) -> Result<(), String> {
        let head =
            Head::deserialize(object).map_err(|e| format!("not a Kubernetes object: {e}"))?;
        let group = head
            .api_version
            .rsplit_once('/')
            .map(|(g, _)| g)
            .unwrap_or("");
        let references = self.apply_secret_references(group, &head, object);
        if AgentIndex::indexes(group, &head.kind) {
            return self.agents.apply(group, &head.kind, object).and(references);
        }
        let meta = head.metadata;
        match (group, head.kind.as_str()) {
            ("", "Namespace") => {
                self.write().namespaces.insert(meta.name, meta.labels);
            }
            ("", "Secret") => {
                let (namespace, name, facts) = secrets::project(object)?;
                self.write().secrets.insert((namespace, name), facts);
            }
            (FLUX_SOURCE_GROUP, "HelmRepository") => {
                let spec = object
                    .get("spec")
                    .map(HelmRepositorySpec::deserialize)
                    .transpose()
                    .map_err(|e| format!("HelmRepository spec: {e}"))?
                    .unwrap_or_default();
                let facts = HelmRepositoryFacts {
                    oci: spec.repo_type.as_deref() == Some("oci"),
                    url: spec.url,
                    insecure: spec.insecure.unwrap_or(false),
                };
                self.write()
                    .helm_repositories
                    .insert((meta.namespace.unwrap_or_default(), meta.name), facts);
            }
            (rbac::GROUP, kind) if rbac::is_rbac_kind(kind) => {
                let projection = rbac::project(kind, object)?;
                self.write().rbac.apply(projection);
            }
            _ => {}
        }
        references
    }

    /// Keeps the Secret references of a Flux object (see [`secret_refs`]). An object whose
    /// references cannot be read keeps none.
    fn apply_secret_references(
        &self,
        group: &str,
        head: &Head,
        object: &Value,
    ) -> Result<(), String> {
        let Some(kind) = secret_refs::flux_kind(group, &head.kind) else {
            return Ok(());
        };
        let key = (
            kind,
            head.metadata.namespace.clone().unwrap_or_default(),
            head.metadata.name.clone(),
        );
        let parsed = secret_refs::from_value(object);
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
                    .remove(&(key.namespace.clone().unwrap_or_default(), key.name.clone()));
            }
            (FLUX_SOURCE_GROUP, "HelmRepository") => {
                store
                    .helm_repositories
                    .remove(&(key.namespace.clone().unwrap_or_default(), key.name.clone()));
            }
            (rbac::GROUP, kind) => store.rbac.delete(kind, key.namespace.as_deref(), &key.name),
            _ => {}
        }
    }

    /// A list is only whole once the view is synced.
    fn listing<T>(&self, list: impl FnOnce(&Store) -> T) -> Lookup<T> {
        if !self.synced() {
            return Lookup::Unknown;
        }
        Lookup::Found(list(&self.read()))
    }

    fn lookup<T: Clone>(&self, found: Option<&T>) -> Lookup<T> {
        match found {
            Some(t) => Lookup::Found(t.clone()),
            None if self.synced() => Lookup::Missing,
            None => Lookup::Unknown,
        }
    }
}

impl ClusterView for MemoryView {
    fn synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    fn namespace_labels(&self, namespace: &str) -> Lookup<BTreeMap<String, String>> {
        let store = self.read();
        self.lookup(store.namespaces.get(namespace))
    }

    fn helm_repository(&self, namespace: &str, name: &str) -> Lookup<HelmRepositoryFacts> {
        let store = self.read();
        self.lookup(
            store
                .helm_repositories
                .get(&(namespace.to_string(), name.to_string())),
        )
    }

    fn secret(&self, namespace: &str, name: &str) -> Lookup<SecretFacts> {
        let store = self.read();
        self.lookup(
            store
                .secrets
                .get(&(namespace.to_string(), name.to_string())),
        )
    }

    fn flux_secret_references(&self) -> Lookup<Vec<FluxSecretReference>> {
        self.listing(|store| {
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

    fn reconfigure(&self, config: &crate::config::Config) {
        self.set_agent_detector(config.policies.single_agent.detector().clone());
    }

    fn agent_installations(&self) -> Lookup<Vec<AgentInstallation>> {
        if self.synced() {
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
        self.lookup(found.as_ref())
    }

    fn cluster_role(&self, name: &str) -> Lookup<Arc<RoleFacts>> {
        let found = self.read().rbac.cluster_role(name);
        self.lookup(found.as_ref())
    }

    fn cluster_roles_matching(&self, selector: &LabelSelector) -> Lookup<NamedRoles> {
        self.listing(|store| store.rbac.cluster_roles_matching(selector))
    }

    fn cluster_roles_aggregating(&self, labels: &BTreeMap<String, String>) -> Lookup<NamedRoles> {
        self.listing(|store| store.rbac.cluster_roles_aggregating(labels))
    }

    fn bindings_to(&self, role: &RoleKey) -> Lookup<Vec<Arc<BindingFacts>>> {
        self.listing(|store| store.rbac.bindings_to(role))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
    fn an_unsynced_view_cannot_tell_missing_from_unknown() {
        let view = MemoryView::new();
        view.set_synced(false);
        assert_eq!(view.namespace_labels("team-a"), Lookup::Unknown);
    }
}
