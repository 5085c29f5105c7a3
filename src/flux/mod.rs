//! Typed views of Flux objects: only the fields policies read, borrowed from the request body
//! where serde can. One file per kind; pieces several kinds share (the OCI `verify` block,
//! references, metadata) have their own files.
//!
//! Unknown fields are ignored and absent ones take their defaults, so every served version of
//! a kind (`v1`, the older `v1beta2`, `v2beta1`...) reads through the same view.

use serde::Deserialize;
use serde_json::value::RawValue;

pub mod helm_chart;
pub mod helm_release;
pub mod helm_repository;
pub mod kustomization;
pub mod meta;
pub mod oci_repository;
pub mod operator;
pub mod patch;
pub mod reference;
pub mod secret_refs;
pub mod semver;
pub mod verification;

/// The API group of Flux sources (OCIRepository, HelmRepository, HelmChart...).
pub const SOURCE_GROUP: &str = "source.toolkit.fluxcd.io";
/// The API group of HelmRelease.
pub const HELM_GROUP: &str = "helm.toolkit.fluxcd.io";
/// The API group of Kustomization (not to be confused with kustomize's own
/// `kustomize.config.k8s.io` Kustomization, the `kustomization.yaml` file).
pub const KUSTOMIZE_GROUP: &str = "kustomize.toolkit.fluxcd.io";

/// Parses a Flux object from raw JSON, borrowing strings from it, with the path of the
/// offending field in the error (`spec.verify.matchOIDCIdentity[0].issuer: invalid type...`).
pub fn parse<'a, T: Deserialize<'a>>(json: &'a str) -> Result<T, String> {
    crate::json_view::parse_raw(json)
}

/// [`parse`] for an object of a request: only the fields the view declares are read (see
/// [`crate::json_view`]); a malformed object is read again by [`parse`] for the message.
pub fn parse_raw<'a, T: Deserialize<'a>>(raw: &'a RawValue) -> Result<T, String> {
    crate::json_view::from_raw(raw).or_else(|_| parse(raw.get()))
}
