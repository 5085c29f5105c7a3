//! What the cluster view knows about Secrets: when each was created and last rotated, and
//! nothing else.
//!
//! In a cluster, Secrets reach the view through a metadata-only watch (see [`super::kube`]):
//! the API server sends `PartialObjectMetadata`, never `data`. A Secret applied from a whole
//! object (tests, `fluxgate check`) is read through [`project`], whose typed view of the object
//! has no `data` or `stringData` field and keeps one annotation, so a value is never copied
//! into the view, and from there never into logs, metrics or reports. The other annotations
//! are skipped unread: `kubectl.kubernetes.io/last-applied-configuration` holds the whole
//! Secret, data included, when it was created with `kubectl apply`.

use std::borrow::Cow;

use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::flux::secret_refs::SecretUse;

/// The annotation operators set when they rotate a Secret in place (RFC 3339).
pub const ROTATED_AT_ANNOTATION: &str = "fluxgate.io/rotated-at";

/// A malformed annotation is kept this long at most, for the message that quotes it.
const MAX_KEPT_ANNOTATION_CHARS: usize = 64;

/// The `fluxgate.io/rotated-at` annotation of a Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotatedAt {
    /// A valid RFC 3339 time, as Unix seconds.
    At(i64),
    /// Not an RFC 3339 time: the text (shortened), for the message that asks to fix it.
    Malformed(String),
}

/// The projection of a Secret: its times, never its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretFacts {
    /// `metadata.creationTimestamp` as Unix seconds; absent in manifests that never went
    /// through the API server.
    pub created: Option<i64>,
    pub rotated_at: Option<RotatedAt>,
}

/// A reference from a Flux object to a Secret in the object's namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FluxSecretReference {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    /// Where the reference sits, e.g. `spec.verify.secretRef`.
    pub field: &'static str,
    pub secret: String,
    pub secret_use: SecretUse,
}

/// Unix seconds of an RFC 3339 time.
pub fn parse_time(text: &str) -> Option<i64> {
    OffsetDateTime::parse(text.trim(), &Rfc3339)
        .ok()
        .map(OffsetDateTime::unix_timestamp)
}

/// RFC 3339 in UTC, as Kubernetes writes times (`2025-01-31T12:00:00Z`).
pub fn format_time(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("@{unix}"))
}

#[derive(Deserialize)]
struct SecretDoc<'a> {
    #[serde(borrow, default)]
    metadata: Option<SecretMeta<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SecretMeta<'a> {
    #[serde(borrow, default)]
    name: Cow<'a, str>,
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::json_view::borrowed::option"
    )]
    namespace: Option<Cow<'a, str>>,
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::json_view::borrowed::option"
    )]
    creation_timestamp: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    annotations: Option<RotationAnnotation<'a>>,
}

/// The one annotation read; serde skips the others without keeping them.
#[derive(Deserialize)]
struct RotationAnnotation<'a> {
    #[serde(
        rename = "fluxgate.io/rotated-at",
        borrow,
        default,
        deserialize_with = "crate::json_view::borrowed::option"
    )]
    rotated_at: Option<Cow<'a, str>>,
}

/// Reads `(namespace, name, facts)` from a Secret (a whole object or its metadata).
pub(crate) fn project(
    object: &crate::json_view::Indexed<'_>,
) -> Result<(String, String, SecretFacts), String> {
    let doc: SecretDoc<'_> = object.read().map_err(|e| format!("Secret metadata: {e}"))?;
    let Some(meta) = doc.metadata else {
        return Err("Secret without metadata".into());
    };
    let rotated_at =
        meta.annotations
            .and_then(|a| a.rotated_at)
            .map(|text| match parse_time(&text) {
                Some(at) => RotatedAt::At(at),
                None => {
                    RotatedAt::Malformed(text.chars().take(MAX_KEPT_ANNOTATION_CHARS).collect())
                }
            });
    let facts = SecretFacts {
        created: meta.creation_timestamp.as_deref().and_then(parse_time),
        rotated_at,
    };
    Ok((
        meta.namespace.map(Cow::into_owned).unwrap_or_default(),
        meta.name.into_owned(),
        facts,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// [`super::project`] of a Secret written as a value.
    fn project(object: &Value) -> Result<(String, String, SecretFacts), String> {
        let json = serde_json::value::to_raw_value(object).expect("a value is JSON");
        super::project(&crate::json_view::Indexed::new(&json))
    }

    #[test]
    fn rfc3339_times_with_offsets_and_fractions_parse() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_time("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_time("1970-01-01T00:00:01.5Z"), Some(1));
        assert_eq!(parse_time("2025-01-31"), None);
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn only_times_are_projected() {
        let (namespace, name, facts) = project(&json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "key", "namespace": "flux-system",
                "creationTimestamp": "2025-01-01T00:00:00Z",
                "annotations": {"fluxgate.io/rotated-at": "not a time", "other": "x"}},
            "data": {"key": "c2VjcmV0"}
        }))
        .expect("projects");
        assert_eq!((namespace.as_str(), name.as_str()), ("flux-system", "key"));
        assert_eq!(facts.created, parse_time("2025-01-01T00:00:00Z"));
        assert_eq!(
            facts.rotated_at,
            Some(RotatedAt::Malformed("not a time".into()))
        );
    }
}
