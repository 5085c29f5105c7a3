//! `source.toolkit.fluxcd.io` HelmRepository: whether charts come from an OCI registry.

use std::borrow::Cow;

use serde::Deserialize;

pub const KIND: &str = "HelmRepository";
pub const RESOURCE: &str = "helmrepositories";

/// The fields of a HelmRepository that say where its charts come from.
#[derive(Debug, Deserialize)]
pub struct HelmRepository<'a> {
    /// A repository without one (a documentation snippet) is no OCI repository.
    #[serde(borrow, default)]
    pub spec: Option<HelmRepositorySpec<'a>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct HelmRepositorySpec<'a> {
    /// `default` (HTTP/S index) or `oci`.
    #[serde(borrow, default, rename = "type")]
    pub repo_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub url: Cow<'a, str>,
    #[serde(default)]
    pub insecure: Option<bool>,
}

/// Whether a HelmRepository serves charts from an OCI registry: `spec.type: oci` (the CRD
/// then requires an `oci://` URL; an `oci://` URL alone counts too, for manifests that
/// never went through the API server).
pub fn is_oci(repo_type: Option<&str>, url: &str) -> bool {
    repo_type == Some("oci") || url.starts_with("oci://")
}

/// The OCI URL of a chart in an OCI HelmRepository, as source-controller builds it:
/// `<repository url>/<chart name>`.
pub fn chart_url(repository_url: &str, chart: &str) -> String {
    format!(
        "{}/{}",
        repository_url.trim_end_matches('/'),
        chart.trim_start_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oci_repositories_are_recognised_by_type_or_url() {
        assert!(is_oci(Some("oci"), "oci://ghcr.io/stefanprodan/charts"));
        assert!(is_oci(None, "oci://ghcr.io/stefanprodan/charts"));
        assert!(!is_oci(
            Some("default"),
            "https://stefanprodan.github.io/podinfo"
        ));
        assert!(!is_oci(None, "https://charts.jetstack.io"));
    }

    #[test]
    fn chart_urls_join_repository_and_chart() {
        assert_eq!(
            chart_url("oci://ghcr.io/", "stefanprodan/charts/podinfo"),
            "oci://ghcr.io/stefanprodan/charts/podinfo"
        );
        assert_eq!(
            chart_url("oci://ghcr.io/stefanprodan/charts", "podinfo"),
            "oci://ghcr.io/stefanprodan/charts/podinfo"
        );
    }
}
