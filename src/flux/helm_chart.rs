//! `source.toolkit.fluxcd.io` HelmChart (served as `v1`, earlier `v1beta2`).

use std::borrow::Cow;

use serde::Deserialize;

use super::meta::ObjectMeta;
use super::reference::SourceReference;
use super::verification::Verification;

pub const KIND: &str = "HelmChart";
pub const RESOURCE: &str = "helmcharts";

#[derive(Debug, Deserialize)]
pub struct HelmChart<'a> {
    #[serde(borrow, default)]
    pub metadata: Option<ObjectMeta<'a>>,
    /// Required: a HelmChart without a spec is malformed.
    #[serde(borrow)]
    pub spec: HelmChartSpec<'a>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HelmChartSpec<'a> {
    /// The chart name (or path, for Git and Bucket sources).
    #[serde(borrow, default)]
    pub chart: Cow<'a, str>,
    /// The source, in the HelmChart's own namespace.
    #[serde(borrow, default)]
    pub source_ref: Option<SourceReference<'a>>,
    /// Honoured only for charts from an OCI HelmRepository.
    #[serde(borrow, default)]
    pub verify: Option<Verification<'a>>,
}
