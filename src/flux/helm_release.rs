//! `helm.toolkit.fluxcd.io` HelmRelease (served as `v2`, earlier `v2beta1`/`v2beta2`): where
//! its chart comes from and whose rights helm-controller uses to install it.

use std::borrow::Cow;

use serde::Deserialize;

use super::reference::{KubeConfigReference, SourceReference};
use super::verification::Verification;

pub const KIND: &str = "HelmRelease";
pub const RESOURCE: &str = "helmreleases";

#[derive(Debug, Deserialize)]
pub struct HelmRelease<'a> {
    /// Required: a HelmRelease without a spec is malformed.
    #[serde(borrow)]
    pub spec: HelmReleaseSpec<'a>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HelmReleaseSpec<'a> {
    /// The template of the HelmChart helm-controller creates for this release.
    #[serde(borrow, default)]
    pub chart: Option<HelmChartTemplate<'a>>,
    /// A chart artifact another source object produces (OCIRepository, HelmChart,
    /// ExternalArtifact); that object carries its own verification.
    #[serde(borrow, default)]
    pub chart_ref: Option<SourceReference<'a>>,
    /// The ServiceAccount helm-controller impersonates; without it (and without the
    /// controller's `--default-service-account`), helm-controller's own cluster-admin account.
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::json_view::borrowed::option"
    )]
    pub service_account_name: Option<Cow<'a, str>>,
    /// Install on another cluster.
    #[serde(borrow, default)]
    pub kube_config: Option<KubeConfigReference<'a>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct HelmChartTemplate<'a> {
    #[serde(borrow, default)]
    pub spec: HelmChartTemplateSpec<'a>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HelmChartTemplateSpec<'a> {
    #[serde(borrow, default)]
    pub chart: Cow<'a, str>,
    /// May name a source in another namespace.
    #[serde(borrow, default)]
    pub source_ref: Option<SourceReference<'a>>,
    /// Copied into the HelmChart. The CRD accepts only `provider` and `secretRef` here
    /// (`matchOIDCIdentity` is pruned by the API server).
    #[serde(borrow, default)]
    pub verify: Option<Verification<'a>>,
}
