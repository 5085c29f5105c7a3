//! The part of `metadata` policies read.

use serde::Deserialize;
use serde_json::value::RawValue;

/// Object metadata. `annotations` stays raw: policies only need to know whether the map
/// exists (a JSON Patch must create it before adding a key to it).
#[derive(Debug, Default, Deserialize)]
pub struct ObjectMeta<'a> {
    #[serde(borrow, default)]
    pub annotations: Option<&'a RawValue>,
}

impl ObjectMeta<'_> {
    /// Whether `metadata.annotations` is present and not null.
    pub fn has_annotations(&self) -> bool {
        self.annotations.is_some_and(|raw| raw.get() != "null")
    }
}
