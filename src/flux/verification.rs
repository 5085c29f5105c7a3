//! The `verify` block of OCIRepository, HelmChart and HelmRelease chart templates
//! (`OCIRepositoryVerification` in source-controller's API).

use std::borrow::Cow;

use serde::Deserialize;

use super::reference::LocalObjectReference;

/// How source-controller checks an OCI artifact's signature.
///
/// Provider semantics, as source-controller implements them: cosign with `secretRef` checks
/// against the public keys in that Secret; cosign without it is keyless (Sigstore/Fulcio) and
/// accepts any signer matched by one of `matchOIDCIdentity` (all signers when the list is
/// empty); notation reads its trust policy and certificates from `secretRef`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Verification<'a> {
    /// `cosign` (the CRD default, also when empty) or `notation`.
    #[serde(borrow, default)]
    pub provider: Cow<'a, str>,
    #[serde(borrow, default)]
    pub secret_ref: Option<LocalObjectReference<'a>>,
    #[serde(borrow, default, rename = "matchOIDCIdentity")]
    pub match_oidc_identity: Option<Vec<OidcIdentityMatch<'a>>>,
    /// A Secret with a Sigstore `trusted_root.json`, for self-hosted Sigstore (OCIRepository
    /// only, source-controller after v1.9).
    #[serde(borrow, default)]
    pub trusted_root_secret_ref: Option<LocalObjectReference<'a>>,
}

/// The signature technology of a `verify` block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider<'v> {
    Cosign,
    Notation,
    Unknown(&'v str),
}

impl Verification<'_> {
    pub fn provider(&self) -> Provider<'_> {
        match self.provider.as_ref() {
            "" | "cosign" => Provider::Cosign,
            "notation" => Provider::Notation,
            other => Provider::Unknown(other),
        }
    }

    /// The identity matchers; empty when the list is absent or null.
    pub fn identities(&self) -> &[OidcIdentityMatch<'_>] {
        self.match_oidc_identity.as_deref().unwrap_or(&[])
    }

    pub fn has_secret_ref(&self) -> bool {
        self.secret_ref.as_ref().is_some_and(|r| !r.name.is_empty())
    }

    pub fn has_trusted_root(&self) -> bool {
        self.trusted_root_secret_ref
            .as_ref()
            .is_some_and(|r| !r.name.is_empty())
    }
}

/// One accepted signer of a keyless signature: Go regular expressions matched (unanchored,
/// like Go's `regexp.MatchString`) against the certificate's OIDC issuer and subject.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct OidcIdentityMatch<'a> {
    #[serde(borrow, default)]
    pub issuer: Cow<'a, str>,
    #[serde(borrow, default)]
    pub subject: Cow<'a, str>,
}
