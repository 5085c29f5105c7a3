//! References between Flux objects.

use std::borrow::Cow;

use serde::Deserialize;

/// `{name}`: a Secret or object in the same namespace.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct LocalObjectReference<'a> {
    #[serde(borrow, default)]
    pub name: Cow<'a, str>,
}

/// `{kind, name, namespace?}`: a source a chart comes from. HelmChart references omit the
/// namespace (always its own); HelmRelease chart templates may cross namespaces.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct SourceReference<'a> {
    #[serde(borrow, default)]
    pub kind: Cow<'a, str>,
    #[serde(borrow, default)]
    pub name: Cow<'a, str>,
    #[serde(borrow, default)]
    pub namespace: Cow<'a, str>,
}

impl SourceReference<'_> {
    /// The namespace the source lives in: its own, or else the referring object's.
    pub fn namespace_or<'s>(&'s self, own: &'s str) -> &'s str {
        if self.namespace.is_empty() {
            own
        } else {
            &self.namespace
        }
    }
}

/// `spec.kubeConfig` of a Kustomization or HelmRelease: the credentials of another cluster the
/// controller acts on instead of its own.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct KubeConfigReference<'a> {
    /// A Secret in the object's namespace holding a kubeconfig.
    #[serde(borrow, default)]
    pub secret_ref: Option<LocalObjectReference<'a>>,
    /// A ConfigMap in the object's namespace naming a cloud provider's cluster (workload
    /// identity).
    #[serde(borrow, default)]
    pub config_map_ref: Option<LocalObjectReference<'a>>,
}

impl KubeConfigReference<'_> {
    /// How messages name it: `Secret remote-kubeconfig`, `ConfigMap fleet-cluster`.
    pub fn describe(&self) -> String {
        match (&self.secret_ref, &self.config_map_ref) {
            (Some(secret), _) => format!("Secret {}", secret.name),
            (None, Some(map)) => format!("ConfigMap {}", map.name),
            (None, None) => "an empty reference".to_string(),
        }
    }
}
