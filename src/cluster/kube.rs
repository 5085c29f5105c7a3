//! The production cluster view: one kube-runtime watcher per watched kind feeds a
//! [`MemoryView`]; policies read the memory view, never the API server, on the request path.
//! The one exception is [`ClusterView::refresh`], for an object a request names that the view
//! does not hold: one created a moment before the request (a Role applied just before its
//! RoleBinding) whose watch event has not arrived, or any while its kind's watch has not
//! listed yet or is failing. An object the view holds costs no request, whatever the number
//! of reviews naming it; an absent one is asked once at a time and its miss remembered
//! briefly ([`super::misses`]).
//!
//! Secrets are watched through their metadata only: kube-runtime's `metadata_watcher`, which
//! kube 3.1 folded into [`watcher::watcher`] over an `Api<PartialObjectMeta<Secret>>` (every
//! request through that `Api` -- the watch, its lists, the probe and the refresh below -- asks
//! the API server for `PartialObjectMetadata`, so a Secret's data is never sent to fluxgate).
//! Of that metadata only the name, namespace, creation time and `fluxgate.io/rotated-at` are
//! passed on ([`secret_value`]); the other annotations, which for a `kubectl apply`-created
//! Secret include its data in `last-applied-configuration`, are dropped as they arrive.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, PartialObjectMeta, WatchParams,
};
use kube::runtime::WatchStreamExt;
use kube::runtime::utils::Backoff;
use kube::runtime::watcher::{self, Event};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;

use super::misses::{Fetched, Misses};
use super::secrets::{FluxSecretReference, ROTATED_AT_ANNOTATION, SecretFacts};
use super::{
    AgentInstallation, ChartReference, ClusterView, HelmRepositoryFacts, Lookup, MemoryView,
    ObjectKey, Refresh, WATCHED_KINDS, WatchedKind,
};
use crate::gitlab::agent::AgentDetector;
use crate::gitlab::installation::InstallationId;
use crate::rbac::objects::{BindingFacts, NamedRoles, RoleFacts, RoleKey};
use crate::selector::LabelSelector;

/// How long a request may wait for the API server when it refreshes an object.
const REFRESH_TIMEOUT: Duration = Duration::from_secs(2);

/// How often a failing watch's kind is probed. The watcher retries on its own, but a watch
/// that resumes quietly delivers no event to say so: the probe does.
const PROBE_INTERVAL: Duration = Duration::from_secs(5);
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

pub struct KubeView {
    shared: Arc<Shared>,
}

/// kube-runtime's default watcher backoff (client-go's: 0.8 s doubling to 30 s, reset by an
/// event), also reset when the probe finds the API server answering again. During an outage
/// the backoff grows; without this, a watcher whose next attempt finds its resourceVersion
/// expired (410, usual after an API server restart) would wait that long again before it
/// lists anew, and its kind would be lost a second time after the API server came back.
struct ProbedBackoff {
    inner: watcher::DefaultBackoff,
    answering: Arc<AtomicBool>,
}

impl Iterator for ProbedBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        if self.answering.swap(false, Ordering::AcqRel) {
            self.inner.reset();
        }
        self.inner.next()
    }
}

impl Backoff for ProbedBackoff {
    fn reset(&mut self) {
        self.answering.store(false, Ordering::Release);
        self.inner.reset();
    }
}

/// A 410 (the resourceVersion the watcher resumes from is too old, usual after an API server
/// restart): the API server answers, and the watcher lists anew after its backoff. The watch
/// is not failing for that.
fn is_expired(error: &watcher::Error) -> bool {
    matches!(error, watcher::Error::WatchError(status) if status.code == 410)
}

/// What the reflectors and the fetches of [`ClusterView::refresh`] share.
struct Shared {
    store: MemoryView,
    client: Client,
    /// One per [`WATCHED_KINDS`] entry, in its order.
    kinds: Vec<Delivered>,
    misses: Arc<Misses>,
}

impl Shared {
    fn delivered(&self, kind: &WatchedKind) -> &Delivered {
        let index = WATCHED_KINDS
            .iter()
            .position(|k| k == kind)
            .expect("a watched kind");
        &self.kinds[index]
    }
}

/// The objects of one kind the view has been delivered (by its watch, or by a refresh) and
/// not seen deleted, whether or not the view keeps anything of them (it drops workloads that
/// are not agents): what the view "holds" for [`ClusterView::refresh`]. Keys are
/// `namespace/name` (`/name` when cluster-scoped), each with the listing that last saw it, so
/// that a re-list forgets the ones it no longer sees without a second set of every key.
#[derive(Default)]
struct Delivered {
    objects: RwLock<Objects>,
}

#[derive(Default)]
struct Objects {
    keys: HashMap<Box<str>, u32>,
    /// Counts the watch's listings; an object applied outside a listing gets the current one.
    listing: u32,
    /// Counts the deletions the watch delivered: a fetch that saw a deletion happen while it
    /// waited for the API server does not put its (possibly older) answer in the view.
    deletions: u64,
}

impl Delivered {
    fn read(&self) -> RwLockReadGuard<'_, Objects> {
        // Plain keys and counters: still whole after a panic elsewhere.
        self.objects.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Objects> {
        self.objects.write().unwrap_or_else(|p| p.into_inner())
    }

    fn holds(&self, key: &ObjectKey) -> bool {
        self.read().keys.contains_key(path_of(key).as_str())
    }
}

fn path_of(key: &ObjectKey) -> String {
    format!("{}/{}", key.namespace.as_deref().unwrap_or(""), key.name)
}

fn key_from_path(kind: &WatchedKind, path: &str) -> ObjectKey {
    let (namespace, name) = path.split_once('/').unwrap_or(("", path));
    ObjectKey {
        group: kind.group.to_string(),
        kind: kind.kind.to_string(),
        namespace: (!namespace.is_empty()).then(|| namespace.to_string()),
        name: name.to_string(),
    }
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

fn key_of<K: Resource>(kind: &WatchedKind, object: &K) -> ObjectKey {
    ObjectKey {
        group: kind.group.to_string(),
        kind: kind.kind.to_string(),
        namespace: object.meta().namespace.clone(),
        name: object.meta().name.clone().unwrap_or_default(),
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

/// The part of a Secret's metadata the view keeps, and nothing else of it.
fn secret_value(
    _kind: &WatchedKind,
    object: &PartialObjectMeta<Secret>,
) -> Option<serde_json::Value> {
    Some(secret_metadata_value(&object.metadata))
}

fn secret_metadata_value(meta: &ObjectMeta) -> serde_json::Value {
    let mut metadata = serde_json::json!({
        "name": meta.name,
        "namespace": meta.namespace,
        "creationTimestamp": meta.creation_timestamp,
    });
    if let Some(rotated_at) = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(ROTATED_AT_ANNOTATION))
    {
        metadata["annotations"] = serde_json::json!({ ROTATED_AT_ANNOTATION: rotated_at });
    }
    serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": metadata})
}

impl KubeView {
    /// Starts one watcher per watched kind. The view reports synced once every kind has
    /// been listed (kinds the cluster does not serve, such as Flux kinds without Flux,
    /// count as listed and empty).
    pub fn start(client: Client) -> Arc<KubeView> {
        KubeView::start_with_grace(client, super::DEFAULT_VIEW_GRACE)
    }

    /// [`KubeView::start`], with how long a watch may fail before its kind is lost: lookups
    /// of a lost kind answer `Unknown` (each policy's fail-open or fail-closed setting
    /// decides) and readiness turns false until the watch works again.
    pub fn start_with_grace(client: Client, grace: Duration) -> Arc<KubeView> {
        let store = MemoryView::new();
        store.set_synced(false);
        store.set_view_grace(grace);
        let shared = Arc::new(Shared {
            store,
            client: client.clone(),
            kinds: WATCHED_KINDS.iter().map(|_| Delivered::default()).collect(),
            misses: Arc::new(Misses::default()),
        });
        let remaining = Arc::new(AtomicUsize::new(WATCHED_KINDS.len()));
        for kind in WATCHED_KINDS {
            if kind.metadata_only() {
                tokio::spawn(reflect(
                    Api::<PartialObjectMeta<Secret>>::all(client.clone()),
                    *kind,
                    secret_value,
                    shared.clone(),
                    remaining.clone(),
                ));
            } else {
                tokio::spawn(reflect(
                    Api::<DynamicObject>::all_with(client.clone(), &api_resource(kind)),
                    *kind,
                    to_value,
                    shared.clone(),
                    remaining.clone(),
                ));
            }
        }
        Arc::new(KubeView { shared })
    }
}

fn mark_listed(store: &MemoryView, remaining: &AtomicUsize, first: &mut bool) {
    if std::mem::take(first) && remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
        store.set_synced(true);
        tracing::info!("cluster view synced");
    }
}

/// Turns a watched object into what [`MemoryView::apply`] reads.
type Project<K> = fn(&WatchedKind, &K) -> Option<serde_json::Value>;

async fn reflect<K>(
    api: Api<K>,
    kind: WatchedKind,
    project: Project<K>,
    shared: Arc<Shared>,
    remaining: Arc<AtomicUsize>,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let store = &shared.store;
    let delivered = shared.delivered(&kind);
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
        mark_listed(store, &remaining, &mut first_listing);
        return;
    }
    let answering = Arc::new(AtomicBool::new(false));
    let stream = watcher::watcher(api.clone(), watcher::Config::default()).backoff(ProbedBackoff {
        inner: watcher::DefaultBackoff::default(),
        answering: answering.clone(),
    });
    futures_util::pin_mut!(stream);
    let mut probe = tokio::time::interval(PROBE_INTERVAL);
    probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut said_lost = false;
    loop {
        let event = tokio::select! {
            event = stream.next() => match event {
                Some(event) => event,
                None => break,
            },
            _ = probe.tick(), if store.watch_failing(kind.kind) => {
                if probe_watch(&api).await {
                    store.watch_healthy(kind.kind);
                    answering.store(true, Ordering::Release);
                    if std::mem::take(&mut said_lost) {
                        tracing::info!(kind = kind.kind, "watch works again; the cluster view answers for this kind");
                    }
                } else if !said_lost && store.lost_kinds().iter().any(|k| k == kind.kind) {
                    said_lost = true;
                    tracing::error!(kind = kind.kind, "watch failing for longer than the grace period: lookups of this kind answer unknown and readiness is false until it works again");
                }
                continue;
            }
        };
        if event.is_ok() {
            store.watch_healthy(kind.kind);
            // The watch may come back before a probe notices: say so here too, or the next
            // loss would go unreported.
            if std::mem::take(&mut said_lost) {
                tracing::info!(
                    kind = kind.kind,
                    "watch works again; the cluster view answers for this kind"
                );
            }
        }
        match event {
            Ok(Event::Init) => {
                let mut objects = delivered.write();
                objects.listing = objects.listing.wrapping_add(1);
            }
            Ok(Event::InitApply(object)) | Ok(Event::Apply(object)) => {
                let key = key_of(&kind, &object);
                let value = project(&kind, &object);
                drop(object);
                let mut objects = delivered.write();
                apply(store, &kind, value, &key);
                let listing = objects.listing;
                objects.keys.insert(path_of(&key).into_boxed_str(), listing);
            }
            Ok(Event::InitDone) => {
                // Objects deleted while the watch was down are absent from the new listing.
                let mut objects = delivered.write();
                let listing = objects.listing;
                let mut gone = Vec::new();
                objects.keys.retain(|path, seen| {
                    let kept = *seen == listing;
                    if !kept {
                        gone.push(key_from_path(&kind, path));
                    }
                    kept
                });
                if !gone.is_empty() {
                    objects.deletions += 1;
                }
                for key in &gone {
                    store.delete(key);
                }
                drop(objects);
                mark_listed(store, &remaining, &mut first_listing);
            }
            Ok(Event::Delete(object)) => {
                let key = key_of(&kind, &object);
                let mut objects = delivered.write();
                store.delete(&key);
                objects.keys.remove(path_of(&key).as_str());
                objects.deletions += 1;
            }
            Err(e) if is_expired(&e) => {
                tracing::info!(kind = kind.kind, error = %e, "watch expired; listing again");
            }
            Err(e) => {
                store.watch_failed(kind.kind, Instant::now());
                tracing::warn!(kind = kind.kind, error = %e, "watch failed; retrying with backoff");
            }
        }
    }
}

/// Whether the API server lists and watches this kind now: what the watcher needs to work.
async fn probe_watch<K>(api: &Api<K>) -> bool
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let check = async {
        let list = api
            .list_metadata(&ListParams::default().limit(1))
            .await
            .ok()?;
        let version = list.metadata.resource_version.unwrap_or_default();
        // Opening the watch is the test; its events are the watcher's business.
        api.watch_metadata(&WatchParams::default().timeout(1), &version)
            .await
            .ok()
    };
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, check).await,
        Ok(Some(_))
    )
}

fn apply(
    store: &MemoryView,
    kind: &WatchedKind,
    value: Option<serde_json::Value>,
    key: &ObjectKey,
) {
    let Some(value) = value else {
        return;
    };
    if let Err(e) = store.apply(&value) {
        let e = crate::json_view::without_values(&e);
        tracing::warn!(kind = kind.kind, namespace = ?key.namespace, name = %key.name, error = %e, "object not understood; left out of the cluster view");
    }
}

/// Gets one object for a refresh: `None` when the API server did not answer in time (logged).
async fn fetch<K>(api: &Api<K>, key: &ObjectKey) -> Option<Option<K>>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    match tokio::time::timeout(REFRESH_TIMEOUT, api.get_opt(&key.name)).await {
        Ok(Ok(found)) => Some(found),
        Ok(Err(e)) => {
            tracing::warn!(?key, error = %e, "refresh from the API server failed");
            None
        }
        Err(_) => {
            tracing::warn!(?key, "refresh from the API server timed out");
            None
        }
    }
}

impl KubeView {
    /// The health of each watched kind's watch (see [`MemoryView::watch_health`]).
    pub fn watch_health(&self) -> Vec<super::KindHealth> {
        self.shared.store.watch_health()
    }

    /// Misses the API server could not answer that are remembered now.
    pub fn remembered_misses(&self) -> usize {
        self.shared.misses.remembered()
    }

    /// Makes sure the view has what the API server has of `key`, unless it holds it already
    /// (then the watch keeps it current, and nothing is asked).
    async fn refresh_one(&self, key: &ObjectKey) {
        let Some(kind) = WATCHED_KINDS
            .iter()
            .find(|k| k.group == key.group && k.kind == key.kind)
        else {
            return;
        };
        if self.shared.delivered(kind).holds(key) {
            return;
        }
        let shared = Arc::clone(&self.shared);
        let owned = key.clone();
        self.shared
            .misses
            .resolve(key, move || fetch_into_view(shared, *kind, owned))
            .await;
    }
}

/// Asks the API server for one object the view does not hold, and puts what it answers in the
/// view, unless the watch delivered a deletion of this kind meanwhile (the answer may predate
/// it; the watch delivers the object again if it still exists).
async fn fetch_into_view(shared: Arc<Shared>, kind: WatchedKind, key: ObjectKey) -> Fetched {
    let delivered = shared.delivered(&kind);
    let deletions = delivered.read().deletions;
    let fetched = if kind.metadata_only() {
        let api: Api<PartialObjectMeta<Secret>> = match &key.namespace {
            Some(ns) => Api::namespaced(shared.client.clone(), ns),
            None => Api::all(shared.client.clone()),
        };
        fetch(&api, &key)
            .await
            .map(|found| found.map(|o| secret_value(&kind, &o)))
    } else {
        let resource = api_resource(&kind);
        let api: Api<DynamicObject> = match (&key.namespace, kind.namespaced) {
            (Some(ns), true) => Api::namespaced_with(shared.client.clone(), ns, &resource),
            _ => Api::all_with(shared.client.clone(), &resource),
        };
        fetch(&api, &key)
            .await
            .map(|found| found.map(|o| to_value(&kind, &o)))
    };
    match fetched {
        Some(Some(value)) => {
            let mut objects = delivered.write();
            if objects.deletions != deletions {
                return Fetched::Failed;
            }
            apply(&shared.store, &kind, value, &key);
            let listing = objects.listing;
            objects.keys.insert(path_of(&key).into_boxed_str(), listing);
            tracing::debug!(
                ?key,
                "fetched from the API server: the watch had not delivered it yet"
            );
            Fetched::Found
        }
        Some(None) => Fetched::Missing,
        None => Fetched::Failed,
    }
}

impl ClusterView for KubeView {
    fn synced(&self) -> bool {
        self.shared.store.synced()
    }

    fn namespace_labels(&self, namespace: &str) -> Lookup<BTreeMap<String, String>> {
        self.shared.store.namespace_labels(namespace)
    }

    fn helm_repository(&self, namespace: &str, name: &str) -> Lookup<HelmRepositoryFacts> {
        self.shared.store.helm_repository(namespace, name)
    }

    fn charts_of(&self, namespace: &str, name: &str) -> Lookup<Vec<ChartReference>> {
        self.shared.store.charts_of(namespace, name)
    }

    fn agent_installations(&self) -> Lookup<Vec<AgentInstallation>> {
        self.shared.store.agent_installations()
    }

    fn agent_installation_applied_since(&self, id: &InstallationId, since: Instant) -> bool {
        self.shared
            .store
            .agent_installation_applied_since(id, since)
    }

    fn role(&self, namespace: &str, name: &str) -> Lookup<Arc<RoleFacts>> {
        self.shared.store.role(namespace, name)
    }

    fn cluster_role(&self, name: &str) -> Lookup<Arc<RoleFacts>> {
        self.shared.store.cluster_role(name)
    }

    fn cluster_roles_matching(&self, selector: &LabelSelector) -> Lookup<NamedRoles> {
        self.shared.store.cluster_roles_matching(selector)
    }

    fn cluster_roles_aggregating(&self, labels: &BTreeMap<String, String>) -> Lookup<NamedRoles> {
        self.shared.store.cluster_roles_aggregating(labels)
    }

    fn bindings_to(&self, role: &RoleKey) -> Lookup<Vec<Arc<BindingFacts>>> {
        self.shared.store.bindings_to(role)
    }

    fn other_gitlab_identity_in(
        &self,
        namespace: &str,
        except_identity: &str,
        except_binding: &str,
    ) -> Lookup<Option<(String, String)>> {
        self.shared
            .store
            .other_gitlab_identity_in(namespace, except_identity, except_binding)
    }

    fn bindings_naming(
        &self,
        kind: &str,
        name: &str,
        namespace: Option<&str>,
    ) -> Lookup<Vec<Arc<BindingFacts>>> {
        self.shared.store.bindings_naming(kind, name, namespace)
    }

    fn secret(&self, namespace: &str, name: &str) -> Lookup<SecretFacts> {
        self.shared.store.secret(namespace, name)
    }

    fn flux_secret_references(&self) -> Lookup<Vec<FluxSecretReference>> {
        self.shared.store.flux_secret_references()
    }

    fn reconfigure(&self, agents: &AgentDetector) {
        self.shared.store.reconfigure(agents);
    }

    fn refresh<'a>(&'a self, keys: &'a [ObjectKey]) -> Refresh<'a> {
        Box::pin(async move {
            match keys {
                [] => {}
                [key] => self.refresh_one(key).await,
                keys => {
                    futures_util::future::join_all(keys.iter().map(|key| self.refresh_one(key)))
                        .await;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn of_a_secrets_metadata_only_the_rotation_times_are_passed_on() {
        let meta: ObjectMeta = serde_json::from_value(serde_json::json!({
            "name": "key", "namespace": "flux-system",
            "creationTimestamp": "2025-01-01T00:00:00Z",
            "annotations": {
                "fluxgate.io/rotated-at": "2025-02-01T00:00:00Z",
                "kubectl.kubernetes.io/last-applied-configuration":
                    "{\"data\":{\"key\":\"TUFSS0VSLXZhbHVl\"}}"
            },
            "managedFields": [{"manager": "kubectl", "operation": "Apply"}]
        }))
        .expect("metadata");
        let value = secret_metadata_value(&meta);
        assert!(!value.to_string().contains("TUFSS0VSLXZhbHVl"), "{value}");
        assert!(!value.to_string().contains("managedFields"), "{value}");
        assert_eq!(
            value["metadata"]["creationTimestamp"],
            "2025-01-01T00:00:00Z"
        );
        assert_eq!(
            value["metadata"]["annotations"]["fluxgate.io/rotated-at"],
            "2025-02-01T00:00:00Z"
        );
    }

    #[test]
    fn the_probe_finding_the_api_server_answering_restarts_the_backoff_from_its_minimum() {
        let answering = Arc::new(AtomicBool::new(false));
        let mut backoff = ProbedBackoff {
            inner: watcher::DefaultBackoff::default(),
            answering: answering.clone(),
        };
        // An outage: 0.8, 1.6, 3.2, 6.4, 12.8 s (each plus up to as much jitter).
        let grown: Vec<Duration> = (0..5).filter_map(|_| backoff.next()).collect();
        assert!(grown[4] >= Duration::from_secs(12), "{grown:?}");
        answering.store(true, Ordering::Release);
        let after_probe = backoff.next().expect("a delay");
        assert!(after_probe < Duration::from_millis(1601), "{after_probe:?}");
        // Once: the flag is taken, and the backoff grows again from there.
        assert!(!answering.load(Ordering::Acquire));
    }

    #[test]
    fn an_expired_resource_version_is_not_a_failing_watch() {
        let status = |code: u16| {
            let mut status = kube::core::Status::failure("too old resource version", "Expired");
            status.code = code;
            Box::new(status)
        };
        assert!(is_expired(&watcher::Error::WatchError(status(410))));
        assert!(!is_expired(&watcher::Error::WatchError(status(500))));
        assert!(!is_expired(&watcher::Error::NoResourceVersion));
    }
}
