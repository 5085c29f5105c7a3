//! What policies may know about the cluster beyond the request: the cluster view.
//!
//! Policies query the [`ClusterView`] trait. [`MemoryView`] is the real in-memory store: tests
//! and `fluxgate check` fill it from manifests, and in a cluster the reflectors in [`kube`]
//! feed it from watches. It keeps compact projections of the fields policies need, never whole
//! objects.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

pub mod agents;
pub mod kube;
pub mod lease;
mod memory;
pub mod misses;
pub mod rbac;
pub mod reservation;
pub mod secrets;

pub use agents::{AgentInstallation, AgentObject};
pub use memory::{DEFAULT_VIEW_GRACE, KindHealth, MemoryView};
pub use secrets::{FluxSecretReference, SecretFacts};

use crate::rbac::objects::{BindingFacts, NamedRoles, RoleFacts, RoleKey};
use crate::selector::LabelSelector;

use crate::gitlab::agent::AgentDetector;
use crate::gitlab::installation::InstallationId;

/// The answer to a lookup in the cluster view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup<T> {
    Found(T),
    /// The view is synced and the object does not exist.
    Missing,
    /// The view cannot tell (not synced yet, or the watch is lost).
    Unknown,
}

impl<T> Lookup<T> {
    pub fn found(self) -> Option<T> {
        match self {
            Lookup::Found(t) => Some(t),
            _ => None,
        }
    }
}

/// The fields of a Flux HelmRepository that policies read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelmRepositoryFacts {
    /// `spec.type: oci`.
    pub oci: bool,
    pub url: String,
    /// `spec.insecure: true`: charts are pulled over plain HTTP.
    pub insecure: bool,
}

/// A HelmChart, or a HelmRelease's chart template, that pulls its chart from a
/// HelmRepository: what `signed-oci-sources` judges again when the repository turns OCI.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ChartReference {
    /// `HelmChart` or `HelmRelease`.
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    /// The chart's name in the repository (`spec.chart`, or `spec.chart.spec.chart`).
    pub chart: String,
    /// Its `verify` block as JSON, when it has one.
    pub verify: Option<String>,
}

/// Identifies an object in the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub group: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

/// A kind the cluster view watches. The production reflectors watch exactly these, and
/// fluxgate's ClusterRole in `deploy/` grants list/watch on exactly these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchedKind {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
}

impl WatchedKind {
    /// Whether the view watches only the metadata of this kind: Secrets, whose values must
    /// never reach fluxgate's memory.
    pub fn metadata_only(&self) -> bool {
        self.group.is_empty() && self.kind == "Secret"
    }
}

/// Every kind the cluster view keeps a projection of.
pub const WATCHED_KINDS: &[WatchedKind] = &[
    WatchedKind {
        group: "",
        version: "v1",
        kind: "Namespace",
        plural: "namespaces",
        namespaced: false,
    },
    WatchedKind {
        group: "source.toolkit.fluxcd.io",
        version: "v1",
        kind: "HelmRepository",
        plural: "helmrepositories",
        namespaced: true,
    },
    // secret-rotation: the Secrets Flux objects reference (HelmRepository and HelmRelease
    // are listed for other policies too) ...
    WatchedKind {
        group: "source.toolkit.fluxcd.io",
        version: "v1",
        kind: "OCIRepository",
        plural: "ocirepositories",
        namespaced: true,
    },
    WatchedKind {
        group: "source.toolkit.fluxcd.io",
        version: "v1",
        kind: "GitRepository",
        plural: "gitrepositories",
        namespaced: true,
    },
    WatchedKind {
        group: "source.toolkit.fluxcd.io",
        version: "v1",
        kind: "HelmChart",
        plural: "helmcharts",
        namespaced: true,
    },
    WatchedKind {
        group: "source.toolkit.fluxcd.io",
        version: "v1",
        kind: "Bucket",
        plural: "buckets",
        namespaced: true,
    },
    WatchedKind {
        group: "kustomize.toolkit.fluxcd.io",
        version: "v1",
        kind: "Kustomization",
        plural: "kustomizations",
        namespaced: true,
    },
    // ... and the Secrets themselves, through a metadata-only watch (see `kube`): the view
    // keeps their creation and rotation times, never their data. RBAC cannot grant
    // "metadata only", so fluxgate's ClusterRole still needs get/list/watch on secrets.
    WatchedKind {
        group: "",
        version: "v1",
        kind: "Secret",
        plural: "secrets",
        namespaced: true,
    },
    // GitLab agent (agentk) workloads and HelmReleases, for `single-agent`. No selector can
    // narrow these to agents (the image is in the spec), so the view drops non-agents as
    // they arrive and keeps only agent objects (see `agents`).
    WatchedKind {
        group: "apps",
        version: "v1",
        kind: "Deployment",
        plural: "deployments",
        namespaced: true,
    },
    WatchedKind {
        group: "apps",
        version: "v1",
        kind: "StatefulSet",
        plural: "statefulsets",
        namespaced: true,
    },
    WatchedKind {
        group: "apps",
        version: "v1",
        kind: "DaemonSet",
        plural: "daemonsets",
        namespaced: true,
    },
    WatchedKind {
        group: "apps",
        version: "v1",
        kind: "ReplicaSet",
        plural: "replicasets",
        namespaced: true,
    },
    WatchedKind {
        group: "",
        version: "v1",
        kind: "ReplicationController",
        plural: "replicationcontrollers",
        namespaced: true,
    },
    WatchedKind {
        group: "batch",
        version: "v1",
        kind: "CronJob",
        plural: "cronjobs",
        namespaced: true,
    },
    WatchedKind {
        group: "batch",
        version: "v1",
        kind: "Job",
        plural: "jobs",
        namespaced: true,
    },
    WatchedKind {
        group: "",
        version: "v1",
        kind: "Pod",
        plural: "pods",
        namespaced: true,
    },
    WatchedKind {
        group: "helm.toolkit.fluxcd.io",
        version: "v2",
        kind: "HelmRelease",
        plural: "helmreleases",
        namespaced: true,
    },
    WatchedKind {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        kind: "Role",
        plural: "roles",
        namespaced: true,
    },
    WatchedKind {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        kind: "ClusterRole",
        plural: "clusterroles",
        namespaced: false,
    },
    WatchedKind {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        kind: "RoleBinding",
        plural: "rolebindings",
        namespaced: true,
    },
    WatchedKind {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        kind: "ClusterRoleBinding",
        plural: "clusterrolebindings",
        namespaced: false,
    },
];

/// A future the cluster view returns from [`ClusterView::refresh`].
pub type Refresh<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Read access to cluster state for policies. Implementations must answer from memory: this
/// is called on the request path.
pub trait ClusterView: Send + Sync {
    /// Whether the first sync is complete; `/readyz` waits for it.
    fn synced(&self) -> bool;

    /// The labels of a namespace, for exemptions by namespace selector.
    fn namespace_labels(&self, namespace: &str) -> Lookup<BTreeMap<String, String>>;

    /// A Flux HelmRepository (any served version).
    fn helm_repository(&self, namespace: &str, name: &str) -> Lookup<HelmRepositoryFacts>;

    /// The HelmCharts and HelmRelease chart templates that pull from a HelmRepository,
    /// sorted. `Unknown` when the view cannot tell (not synced, watch lost), and from
    /// views that keep no chart references.
    fn charts_of(&self, _namespace: &str, _name: &str) -> Lookup<Vec<ChartReference>> {
        Lookup::Unknown
    }

    /// The GitLab agent installations the cluster runs, each with its objects (see
    /// [`crate::gitlab::agent`] for what counts); `Unknown` until the view is synced.
    fn agent_installations(&self) -> Lookup<Vec<AgentInstallation>>;

    /// Whether an object of this installation was applied to the view at or after `since`
    /// (it may have been deleted again). `single-agent` ends the reservation of an
    /// installation it allowed once the installation has reached the view.
    fn agent_installation_applied_since(&self, id: &InstallationId, since: Instant) -> bool;

    /// A namespaced Role.
    fn role(&self, namespace: &str, name: &str) -> Lookup<Arc<RoleFacts>>;

    /// A ClusterRole.
    fn cluster_role(&self, name: &str) -> Lookup<Arc<RoleFacts>>;

    /// The ClusterRoles an aggregation selector matches, sorted by name.
    fn cluster_roles_matching(&self, selector: &LabelSelector) -> Lookup<NamedRoles>;

    /// The ClusterRoles whose aggregationRule picks up a ClusterRole with these labels.
    fn cluster_roles_aggregating(&self, labels: &BTreeMap<String, String>) -> Lookup<NamedRoles>;

    /// The RoleBindings and ClusterRoleBindings whose roleRef is `role`.
    fn bindings_to(&self, role: &RoleKey) -> Lookup<Vec<Arc<BindingFacts>>>;

    /// A GitLab identity that a RoleBinding in `namespace` other than `except_binding` names,
    /// besides `except_identity` and the catch-all groups: `(identity, binding name)`, or
    /// `None` when `except_identity` is the only one there.
    fn other_gitlab_identity_in(
        &self,
        namespace: &str,
        except_identity: &str,
        except_binding: &str,
    ) -> Lookup<Option<(String, String)>>;

    /// Every binding that names a subject of this kind and name (and namespace, for a
    /// ServiceAccount). This scans every binding: for `fluxgate check` and the audit scan,
    /// not for the request path.
    fn bindings_naming(
        &self,
        kind: &str,
        name: &str,
        namespace: Option<&str>,
    ) -> Lookup<Vec<Arc<BindingFacts>>>;

    /// Whether the view holds manifests rather than a cluster (`fluxgate check`): what it
    /// misses may simply not have been given, and messages say how to give it.
    fn offline(&self) -> bool {
        false
    }

    /// The creation and rotation times of a Secret (never its data), for `secret-rotation`.
    fn secret(&self, namespace: &str, name: &str) -> Lookup<SecretFacts>;

    /// Every Secret reference of the Flux objects in the view, sorted. This lists the whole
    /// projection: for the audit scan and metrics, not for the request path.
    fn flux_secret_references(&self) -> Lookup<Vec<FluxSecretReference>>;

    /// Applies the parts of the configuration that shape the projections: which workloads
    /// count as agentk (single-agent's `agentImages` and the rest of its detector). Called at
    /// start and on every configuration reload.
    fn reconfigure(&self, agents: &AgentDetector);

    /// Makes sure the view knows these objects before a policy asks, for objects that often
    /// arrive just before the request that needs them (a Role applied together with its
    /// RoleBinding may not have reached the watch yet). The production view asks the API
    /// server only for keys it does not hold, one request at a time per key, and remembers
    /// for a moment what the API server does not have either (see [`misses`]); an object it
    /// holds costs nothing. The in-memory view already knows all it can.
    fn refresh<'a>(&'a self, _keys: &'a [ObjectKey]) -> Refresh<'a> {
        Box::pin(async {})
    }
}
