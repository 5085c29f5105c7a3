//! `kustomize.toolkit.fluxcd.io` Kustomization (served as `v1`, earlier `v1beta2`): where its
//! manifests come from and whose rights kustomize-controller applies them with.

use std::borrow::Cow;

use serde::Deserialize;

use super::reference::{KubeConfigReference, SourceReference};

pub const KIND: &str = "Kustomization";
pub const RESOURCE: &str = "kustomizations";

#[derive(Debug, Deserialize)]
pub struct Kustomization<'a> {
    /// Required: a Kustomization without a spec is malformed.
    #[serde(borrow)]
    pub spec: KustomizationSpec<'a>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KustomizationSpec<'a> {
    /// The GitRepository, OCIRepository, Bucket or ExternalArtifact to build from; its
    /// namespace defaults to the Kustomization's.
    #[serde(borrow, default)]
    pub source_ref: Option<SourceReference<'a>>,
    /// The ServiceAccount kustomize-controller impersonates; without it (and without the
    /// controller's `--default-service-account`), kustomize-controller's own cluster-admin
    /// account.
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::json_view::borrowed::option"
    )]
    pub service_account_name: Option<Cow<'a, str>>,
    /// Apply to another cluster.
    #[serde(borrow, default)]
    pub kube_config: Option<KubeConfigReference<'a>>,
}
