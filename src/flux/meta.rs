//! The part of `metadata` policies read.

use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::IgnoredAny;

/// Object metadata. Of `annotations` policies only need to know whether the map exists (a
/// JSON Patch must create it before adding a key to it), so its content is stepped over.
#[derive(Debug, Default, Deserialize)]
pub struct ObjectMeta<'a> {
    #[serde(default)]
    pub annotations: Option<IgnoredAny>,
    #[serde(skip)]
    borrowed: PhantomData<&'a str>,
}

impl ObjectMeta<'_> {
    /// Whether `metadata.annotations` is present and not null.
    pub fn has_annotations(&self) -> bool {
        self.annotations.is_some()
    }
}
