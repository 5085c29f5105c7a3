//! `deserialize_with` functions that borrow strings inside an `Option` or a `Vec`.
//!
//! `#[serde(borrow)]` borrows a field only when its whole type is `Cow<str>`: an
//! `Option<Cow<str>>` or a `Vec<Cow<str>>` goes through `Cow`'s own `Deserialize`, which
//! always copies the text into a `String`. Views read names, namespaces and groups of every
//! review, so each copy is an allocation on the request path. With these, a string without
//! escapes is borrowed from the body, as a bare `Cow<str>` field is; a string with escapes is
//! still unescaped into a `String`.
//!
//! Use them with `#[serde(borrow, default, deserialize_with = "...")]`: `default` keeps a
//! missing field `None` (or empty), as it is without `deserialize_with`.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, Error, Visitor};

/// A string, borrowed when the deserializer can lend it.
struct CowStr<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for CowStr<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CowStrVisitor;

        impl<'de> Visitor<'de> for CowStrVisitor {
            type Value = CowStr<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Borrowed(v)))
            }

            fn visit_str<E: Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v.to_owned())))
            }

            fn visit_string<E: Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v)))
            }
        }

        deserializer.deserialize_str(CowStrVisitor)
    }
}

fn into_cows(strings: Vec<CowStr<'_>>) -> Vec<Cow<'_, str>> {
    strings.into_iter().map(|s| s.0).collect()
}

/// For `Option<Cow<'a, str>>` fields.
pub fn option<'de: 'a, 'a, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Cow<'a, str>>, D::Error> {
    Ok(Option::<CowStr<'a>>::deserialize(deserializer)?.map(|s| s.0))
}

/// For `Vec<Cow<'a, str>>` fields.
pub fn vec<'de: 'a, 'a, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<Cow<'a, str>>, D::Error> {
    Ok(into_cows(Vec::<CowStr<'a>>::deserialize(deserializer)?))
}

/// For `Option<Vec<Cow<'a, str>>>` fields.
pub fn option_vec<'de: 'a, 'a, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<Cow<'a, str>>>, D::Error> {
    Ok(Option::<Vec<CowStr<'a>>>::deserialize(deserializer)?.map(into_cows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct View<'a> {
        #[serde(borrow, default, deserialize_with = "option")]
        name: Option<Cow<'a, str>>,
        #[serde(borrow, default, deserialize_with = "vec")]
        groups: Vec<Cow<'a, str>>,
        #[serde(borrow, default, deserialize_with = "option_vec")]
        args: Option<Vec<Cow<'a, str>>>,
    }

    #[test]
    fn strings_without_escapes_are_borrowed_from_the_text() {
        let json = r#"{"name":"app","groups":["a","b"],"args":["--x"]}"#;
        let is_borrowed = |s: &Cow<'_, str>| matches!(s, Cow::Borrowed(_));
        let view: View<'_> = serde_json::from_str(json).expect("a view");
        assert_eq!(view.name.as_deref(), Some("app"));
        assert!(view.name.as_ref().is_some_and(&is_borrowed));
        assert_eq!(view.groups, ["a", "b"]);
        assert!(view.groups.iter().all(&is_borrowed));
        assert!(view.args.iter().flatten().all(&is_borrowed));
    }

    #[test]
    fn strings_with_escapes_are_unescaped_and_missing_or_null_fields_are_empty() {
        let view: View<'_> =
            serde_json::from_str(r#"{"name":"a\"b","groups":["\u0041"],"args":null}"#)
                .expect("a view");
        assert_eq!(view.name.as_deref(), Some("a\"b"));
        assert_eq!(view.groups, ["A"]);
        assert_eq!(view.args, None);
        let empty: View<'_> = serde_json::from_str("{}").expect("a view");
        assert_eq!((empty.name, empty.groups, empty.args), (None, vec![], None));
    }

    #[test]
    fn what_is_not_a_string_is_refused() {
        for json in [r#"{"name":1}"#, r#"{"groups":[true]}"#, r#"{"args":"x"}"#] {
            assert!(
                serde_json::from_str::<View<'_>>(json).is_err(),
                "{json} read as a view"
            );
        }
    }
}
