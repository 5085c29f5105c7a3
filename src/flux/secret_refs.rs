//! The Secrets a Flux object uses, where each reference sits, and what the Secret is for.
//!
//! Every reference is a `LocalObjectReference`: the Secret lives in the object's namespace.
//! The fields, per the v1 CRDs (source-controller, kustomize-controller, helm-controller):
//!
//! | field                              | kinds                                    | use |
//! |------------------------------------|------------------------------------------|-----|
//! | `spec.secretRef`                   | GitRepository, OCIRepository, HelmRepository, Bucket | flux-source-auth |
//! | `spec.certSecretRef`               | OCIRepository, HelmRepository, Bucket    | flux-source-auth |
//! | `spec.proxySecretRef`              | GitRepository, OCIRepository, Bucket     | flux-source-auth |
//! | `spec.sts.secretRef`, `spec.sts.certSecretRef` | Bucket                       | flux-source-auth |
//! | `spec.verify.secretRef`            | GitRepository, OCIRepository, HelmChart  | flux-verify |
//! | `spec.verify.trustedRootSecretRef` | OCIRepository                            | flux-verify |
//! | `spec.decryption.secretRef`        | Kustomization                            | flux-decryption |
//! | `spec.kubeConfig.secretRef`        | Kustomization, HelmRelease               | flux-kubeconfig |
//!
//! A HelmRelease's `spec.chart.spec.verify.secretRef` is not read here: helm-controller
//! copies it into the HelmChart it creates, which is read (in the namespace it lands in).
//! Fields are read whatever the kind, since the API server prunes fields a CRD does not have.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::reference::LocalObjectReference;
use super::{HELM_GROUP, KUSTOMIZE_GROUP, SOURCE_GROUP};

/// What a Secret is used for; each use has its own maximum age. The four Flux uses are read
/// here; the GitLab agent's token is found by `gitlab::agent::token_secret`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SecretUse {
    /// Credentials Flux reaches a source with (`secretRef`, `certSecretRef`,
    /// `proxySecretRef`, Bucket `sts`).
    FluxSourceAuth,
    /// Keys Flux verifies artifacts or commits with (`verify.secretRef`,
    /// `verify.trustedRootSecretRef`).
    FluxVerify,
    /// The SOPS keys a Kustomization decrypts with (`decryption.secretRef`).
    FluxDecryption,
    /// A kubeconfig Flux applies to a remote cluster with (`kubeConfig.secretRef`).
    FluxKubeconfig,
    /// The token the GitLab agent (agentk) connects to GitLab with.
    GitlabAgentToken,
}

impl SecretUse {
    pub const ALL: [SecretUse; 5] = [
        SecretUse::FluxSourceAuth,
        SecretUse::FluxVerify,
        SecretUse::FluxDecryption,
        SecretUse::FluxKubeconfig,
        SecretUse::GitlabAgentToken,
    ];

    /// The name in configuration (`maxAgeDays`), metrics (`use` label) and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            SecretUse::FluxSourceAuth => "flux-source-auth",
            SecretUse::FluxVerify => "flux-verify",
            SecretUse::FluxDecryption => "flux-decryption",
            SecretUse::FluxKubeconfig => "flux-kubeconfig",
            SecretUse::GitlabAgentToken => "gitlab-agent-token",
        }
    }
}

impl fmt::Display for SecretUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The Flux kinds that reference Secrets: (group, kind, plural resource).
pub const KINDS: &[(&str, &str, &str)] = &[
    (SOURCE_GROUP, "GitRepository", "gitrepositories"),
    (SOURCE_GROUP, "OCIRepository", "ocirepositories"),
    (SOURCE_GROUP, "HelmRepository", "helmrepositories"),
    (SOURCE_GROUP, "HelmChart", "helmcharts"),
    (SOURCE_GROUP, "Bucket", "buckets"),
    (KUSTOMIZE_GROUP, "Kustomization", "kustomizations"),
    (HELM_GROUP, "HelmRelease", "helmreleases"),
];

/// The kind as a static string, when it is one of [`KINDS`].
pub fn flux_kind(group: &str, kind: &str) -> Option<&'static str> {
    KINDS
        .iter()
        .find(|(g, k, _)| *g == group && *k == kind)
        .map(|(_, k, _)| *k)
}

/// One reference to a Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef<'a> {
    pub field: &'static str,
    pub secret: Cow<'a, str>,
    pub secret_use: SecretUse,
}

/// A nested block with references (`verify`, `sts`, `decryption`, `kubeConfig`).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Refs<'a> {
    #[serde(borrow, default)]
    secret_ref: Option<LocalObjectReference<'a>>,
    #[serde(borrow, default)]
    cert_secret_ref: Option<LocalObjectReference<'a>>,
    #[serde(borrow, default)]
    trusted_root_secret_ref: Option<LocalObjectReference<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Spec<'a> {
    #[serde(borrow, default)]
    secret_ref: Option<LocalObjectReference<'a>>,
    #[serde(borrow, default)]
    cert_secret_ref: Option<LocalObjectReference<'a>>,
    #[serde(borrow, default)]
    proxy_secret_ref: Option<LocalObjectReference<'a>>,
    #[serde(borrow, default)]
    verify: Option<Refs<'a>>,
    #[serde(borrow, default)]
    sts: Option<Refs<'a>>,
    #[serde(borrow, default)]
    decryption: Option<Refs<'a>>,
    #[serde(borrow, default)]
    kube_config: Option<Refs<'a>>,
}

/// The part of a Flux object its Secret references are in; [`Doc::references`] lists them.
#[derive(Deserialize)]
pub struct Doc<'a> {
    #[serde(borrow, default)]
    spec: Option<Spec<'a>>,
}

fn push<'a>(
    out: &mut Vec<SecretRef<'a>>,
    reference: Option<LocalObjectReference<'a>>,
    field: &'static str,
    secret_use: SecretUse,
) {
    if let Some(reference) = reference.filter(|r| !r.name.is_empty()) {
        out.push(SecretRef {
            field,
            secret: reference.name,
            secret_use,
        });
    }
}

impl<'a> Doc<'a> {
    pub fn references(self) -> Vec<SecretRef<'a>> {
        collect(self)
    }
}

fn collect(doc: Doc<'_>) -> Vec<SecretRef<'_>> {
    let mut out = Vec::new();
    let Some(spec) = doc.spec else {
        return out;
    };
    use SecretUse::*;
    push(&mut out, spec.secret_ref, "spec.secretRef", FluxSourceAuth);
    push(
        &mut out,
        spec.cert_secret_ref,
        "spec.certSecretRef",
        FluxSourceAuth,
    );
    push(
        &mut out,
        spec.proxy_secret_ref,
        "spec.proxySecretRef",
        FluxSourceAuth,
    );
    if let Some(sts) = spec.sts {
        push(
            &mut out,
            sts.secret_ref,
            "spec.sts.secretRef",
            FluxSourceAuth,
        );
        push(
            &mut out,
            sts.cert_secret_ref,
            "spec.sts.certSecretRef",
            FluxSourceAuth,
        );
    }
    if let Some(verify) = spec.verify {
        push(
            &mut out,
            verify.secret_ref,
            "spec.verify.secretRef",
            FluxVerify,
        );
        push(
            &mut out,
            verify.trusted_root_secret_ref,
            "spec.verify.trustedRootSecretRef",
            FluxVerify,
        );
    }
    if let Some(decryption) = spec.decryption {
        push(
            &mut out,
            decryption.secret_ref,
            "spec.decryption.secretRef",
            FluxDecryption,
        );
    }
    if let Some(kube_config) = spec.kube_config {
        push(
            &mut out,
            kube_config.secret_ref,
            "spec.kubeConfig.secretRef",
            FluxKubeconfig,
        );
    }
    out
}

/// The Secret references of a Flux object's JSON (what the cluster view is fed).
pub fn from_indexed<'a>(
    object: &crate::json_view::Indexed<'a>,
) -> Result<Vec<SecretRef<'a>>, String> {
    object.read::<Doc<'a>>().map(collect)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As secret-rotation reads a request's object (through `Context::view_of`).
    fn from_json(json: &str) -> Result<Vec<SecretRef<'_>>, String> {
        crate::flux::parse::<Doc<'_>>(json).map(Doc::references)
    }

    #[test]
    fn empty_names_and_absent_specs_reference_nothing() {
        assert!(
            from_json(r#"{"spec":{"secretRef":{"name":""}}}"#)
                .expect("parses")
                .is_empty()
        );
        assert!(
            from_json(r#"{"metadata":{"name":"x"}}"#)
                .expect("parses")
                .is_empty()
        );
        assert!(
            from_json(r#"{"spec":{"verify":null}}"#)
                .expect("parses")
                .is_empty()
        );
    }

    #[test]
    fn a_malformed_reference_says_where() {
        let err = from_json(r#"{"spec":{"verify":{"secretRef":"cosign-pub"}}}"#)
            .expect_err("a string is not a reference");
        assert!(err.contains("spec.verify.secretRef"), "{err}");
    }
}
