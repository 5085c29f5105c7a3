//! `source.toolkit.fluxcd.io` OCIRepository (served as `v1`, earlier `v1beta2`).

use std::borrow::Cow;

use serde::Deserialize;

use super::meta::ObjectMeta;
use super::verification::Verification;

pub const KIND: &str = "OCIRepository";
pub const RESOURCE: &str = "ocirepositories";

#[derive(Debug, Deserialize)]
pub struct OciRepository<'a> {
    #[serde(borrow, default)]
    pub metadata: Option<ObjectMeta<'a>>,
    /// Required: an OCIRepository without a spec is malformed.
    #[serde(borrow)]
    pub spec: OciRepositorySpec<'a>,
}

#[derive(Debug, Default, Deserialize)]
pub struct OciRepositorySpec<'a> {
    /// `oci://<registry>/<repository>`.
    #[serde(borrow, default)]
    pub url: Cow<'a, str>,
    /// Pull over plain HTTP.
    #[serde(default)]
    pub insecure: Option<bool>,
    #[serde(borrow, default)]
    pub verify: Option<Verification<'a>>,
}
