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
    /// Which artifact to pull; absent, the `latest` tag.
    #[serde(borrow, default, rename = "ref")]
    pub reference: Option<OciRepositoryRef<'a>>,
}

/// Only `spec.ref` of an OCIRepository, for a policy that judges nothing else: `spec.verify`
/// holds regular expressions whose escapes serde_json must copy out to read.
#[derive(Debug, Deserialize)]
pub struct OciRepositoryRefOnly<'a> {
    #[serde(borrow)]
    pub spec: RefOnlySpec<'a>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RefOnlySpec<'a> {
    #[serde(borrow, default, rename = "ref")]
    pub reference: Option<OciRepositoryRef<'a>>,
}

/// `spec.ref`. Precedence, as source-controller resolves it: digest, then semver, then tag.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OciRepositoryRef<'a> {
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::json_view::borrowed::option"
    )]
    pub digest: Option<Cow<'a, str>>,
    /// A Masterminds/semver constraint; the highest matching tag wins.
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::json_view::borrowed::option"
    )]
    pub semver: Option<Cow<'a, str>>,
    /// A regex the tags must match before `semver` picks one; ignored without `semver`.
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::json_view::borrowed::option"
    )]
    pub semver_filter: Option<Cow<'a, str>>,
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::json_view::borrowed::option"
    )]
    pub tag: Option<Cow<'a, str>>,
}

impl OciRepositoryRef<'_> {
    pub fn digest(&self) -> Option<&str> {
        non_empty(&self.digest)
    }

    pub fn semver(&self) -> Option<&str> {
        non_empty(&self.semver)
    }

    pub fn semver_filter(&self) -> Option<&str> {
        non_empty(&self.semver_filter)
    }

    pub fn tag(&self) -> Option<&str> {
        non_empty(&self.tag)
    }
}

/// Flux treats an empty string like an absent field.
fn non_empty<'s>(field: &'s Option<Cow<'_, str>>) -> Option<&'s str> {
    field.as_deref().filter(|s| !s.is_empty())
}

/// Only `spec.url` of an OCIRepository, for a message that names where to look.
#[derive(Debug, Deserialize)]
pub struct OciRepositoryUrlOnly<'a> {
    #[serde(borrow)]
    pub spec: UrlOnlySpec<'a>,
}

#[derive(Debug, Default, Deserialize)]
pub struct UrlOnlySpec<'a> {
    #[serde(borrow, default)]
    pub url: Cow<'a, str>,
}
