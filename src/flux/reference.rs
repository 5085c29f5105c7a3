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
