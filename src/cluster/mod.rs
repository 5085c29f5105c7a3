//! What policies may know about the cluster beyond the request: the cluster view.
//!
//! Policies query the [`ClusterView`] trait. [`MemoryView`] is the real in-memory store: tests
//! and `fluxgate check` fill it from manifests, and in a cluster the reflectors in [`kube`]
//! feed it from watches. It keeps compact projections of the fields policies need, never whole
//! objects.

use std::collections::BTreeMap;

pub mod kube;
mod memory;

pub use memory::MemoryView;

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
}

/// Identifies an object in the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub group: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

/// Read access to cluster state for policies. Implementations must answer from memory: this
/// is called on the request path.
pub trait ClusterView: Send + Sync {
    /// Whether the first sync is complete; `/readyz` waits for it.
    fn synced(&self) -> bool;

    /// The labels of a namespace, for exemptions by namespace selector.
    fn namespace_labels(&self, namespace: &str) -> Lookup<BTreeMap<String, String>>;

    /// A Flux HelmRepository (any served version).
    fn helm_repository(&self, namespace: &str, name: &str) -> Lookup<HelmRepositoryFacts>;
}
