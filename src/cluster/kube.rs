//! The production cluster view: one kube-runtime watcher per watched kind feeds a
//! [`MemoryView`]; policies read the memory view, never the API server, on the request path.
//! The one exception is [`ClusterView::refresh`], which asks the API server for objects a
//! request names but the watch has not delivered yet.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};

use super::rbac::{BindingFacts, NamedRoles, RoleFacts, RoleKey};
use super::{
    AgentInstallation, ClusterView, HelmRepositoryFacts, Lookup, MemoryView, ObjectKey, Refresh,
    WATCHED_KINDS, WatchedKind,
};
use crate::config::LabelSelector;
use crate::gitlab::agent::InstallationId;

/// How long a request may wait for the API server when it refreshes an object.
const REFRESH_TIMEOUT: Duration = Duration::from_secs(2);

pub struct KubeView {
    store: Arc<MemoryView>,
    client: Client,
}

fn api_resource(kind: &WatchedKind) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(kind.group, kind.version, kind.kind),
        kind.plural,
    )
}

fn api_version(kind: &WatchedKind) -> String {
    if kind.group.is_empty() {
        kind.version.to_string()
    } else {
        format!("{}/{}", kind.group, kind.version)
    }
}

fn key_of(kind: &WatchedKind, object: &DynamicObject) -> ObjectKey {
    ObjectKey {
        group: kind.group.to_string(),
        kind: kind.kind.to_string(),
        namespace: object.metadata.namespace.clone(),
        name: object.metadata.name.clone().unwrap_or_default(),
    }
}

/// List items from the API server carry no apiVersion and kind; the projections need them.
fn to_value(kind: &WatchedKind, object: &DynamicObject) -> Option<serde_json::Value> {
    let mut value = serde_json::to_value(object).ok()?;
    if let Some(map) = value.as_object_mut() {
        map.insert("apiVersion".into(), api_version(kind).into());
        map.insert("kind".into(), kind.kind.into());
    }
    Some(value)
}

impl KubeView {
    /// Starts one watcher per watched kind. The view reports synced once every kind has
    /// been listed (kinds the cluster does not serve, such as Flux kinds without Flux,
    /// count as listed and empty).
    pub fn start(client: Client) -> Arc<KubeView> {
        let store = Arc::new(MemoryView::new());
        store.set_synced(false);
        let remaining = Arc::new(AtomicUsize::new(WATCHED_KINDS.len()));
        for kind in WATCHED_KINDS {
            tokio::spawn(reflect(
                client.clone(),
                *kind,
                store.clone(),
                remaining.clone(),
            ));
        }
        Arc::new(KubeView { store, client })
    }
}

fn mark_listed(store: &MemoryView, remaining: &AtomicUsize, first: &mut bool) {
    if std::mem::take(first) && remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
        store.set_synced(true);
        tracing::info!("cluster view synced");
    }
}

async fn reflect(
    client: Client,
    kind: WatchedKind,
    store: Arc<MemoryView>,
    remaining: Arc<AtomicUsize>,
) {
    let api: Api<DynamicObject> = Api::all_with(client, &api_resource(&kind));
    let mut first_listing = true;
    // A kind the cluster does not serve can never be listed; waiting for it would keep
    // fluxgate unready forever.
    if let Err(kube::Error::Api(status)) = api.list(&ListParams::default().limit(1)).await
        && status.code == 404
    {
        tracing::warn!(
            kind = kind.kind,
            group = kind.group,
            "not served by this cluster; the view holds none"
        );
        mark_listed(&store, &remaining, &mut first_listing);
        return;
    }
    let mut known: HashSet<ObjectKey> = HashSet::new();
    let mut listing: HashSet<ObjectKey> = HashSet::new();
    let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
    futures_util::pin_mut!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Init) => listing.clear(),
            Ok(Event::InitApply(object)) => {
                let key = key_of(&kind, &object);
                apply(&store, &kind, &object);
                listing.insert(key);
            }
            Ok(Event::InitDone) => {
                // Objects deleted while the watch was down are absent from the new listing.
                for gone in known.difference(&listing) {
                    store.delete(gone);
                }
                known = std::mem::take(&mut listing);
                mark_listed(&store, &remaining, &mut first_listing);
            }
            Ok(Event::Apply(object)) => {
                known.insert(key_of(&kind, &object));
                apply(&store, &kind, &object);
            }
            Ok(Event::Delete(object)) => {
                let key = key_of(&kind, &object);
                store.delete(&key);
                known.remove(&key);
            }
            Err(e) => {
                tracing::warn!(kind = kind.kind, error = %e, "watch failed; retrying with backoff");
            }
        }
    }
}

fn apply(store: &MemoryView, kind: &WatchedKind, object: &DynamicObject) {
    let Some(value) = to_value(kind, object) else {
        return;
    };
    if let Err(e) = store.apply(&value) {
        tracing::warn!(kind = kind.kind, name = ?object.metadata.name, error = %e, "object not understood; left out of the cluster view");
    }
}

impl KubeView {
    async fn refresh_one(&self, key: &ObjectKey) {
        let Some(kind) = WATCHED_KINDS
            .iter()
            .find(|k| k.group == key.group && k.kind == key.kind)
        else {
            return;
        };
        let resource = api_resource(kind);
        let api: Api<DynamicObject> = match (&key.namespace, kind.namespaced) {
            (Some(ns), true) => Api::namespaced_with(self.client.clone(), ns, &resource),
            _ => Api::all_with(self.client.clone(), &resource),
        };
        match tokio::time::timeout(REFRESH_TIMEOUT, api.get_opt(&key.name)).await {
            Ok(Ok(Some(object))) => apply(&self.store, kind, &object),
            Ok(Ok(None)) => self.store.delete(key),
            Ok(Err(e)) => tracing::warn!(?key, error = %e, "refresh from the API server failed"),
            Err(_) => tracing::warn!(?key, "refresh from the API server timed out"),
        }
    }
}

impl ClusterView for KubeView {
    fn synced(&self) -> bool {
        self.store.synced()
    }

    fn namespace_labels(&self, namespace: &str) -> Lookup<BTreeMap<String, String>> {
        self.store.namespace_labels(namespace)
    }

    fn helm_repository(&self, namespace: &str, name: &str) -> Lookup<HelmRepositoryFacts> {
        self.store.helm_repository(namespace, name)
    }

    fn agent_installations(&self) -> Lookup<Vec<AgentInstallation>> {
        self.store.agent_installations()
    }

    fn agent_installation_applied_since(&self, id: &InstallationId, since: Instant) -> bool {
        self.store.agent_installation_applied_since(id, since)
    }

    fn role(&self, namespace: &str, name: &str) -> Lookup<Arc<RoleFacts>> {
        self.store.role(namespace, name)
    }

    fn cluster_role(&self, name: &str) -> Lookup<Arc<RoleFacts>> {
        self.store.cluster_role(name)
    }

    fn cluster_roles_matching(&self, selector: &LabelSelector) -> Lookup<NamedRoles> {
        self.store.cluster_roles_matching(selector)
    }

    fn cluster_roles_aggregating(&self, labels: &BTreeMap<String, String>) -> Lookup<NamedRoles> {
        self.store.cluster_roles_aggregating(labels)
    }

    fn bindings_to(&self, role: &RoleKey) -> Lookup<Vec<Arc<BindingFacts>>> {
        self.store.bindings_to(role)
    }

    fn reconfigure(&self, config: &crate::config::Config) {
        self.store.reconfigure(config);
    }

    fn refresh<'a>(&'a self, keys: &'a [ObjectKey]) -> Refresh<'a> {
        Box::pin(async move {
            for key in keys {
                self.refresh_one(key).await;
            }
        })
    }
}
