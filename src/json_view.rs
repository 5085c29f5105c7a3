//! Typed views of raw JSON that read only the members the view declares.
//!
//! A policy's view of an object names a handful of fields (`spec.url`, `spec.verify`...), but
//! serde_json still tokenizes every member it ignores: `managedFields`, annotations, status.
//! That costs more than the rest of a review. [`from_raw`] reads a [`RawValue`], which
//! serde_json has already checked to be valid JSON, so the members a struct does not declare
//! can be stepped over by finding where they end (strings with `memchr`, containers by
//! counting brackets) instead of being parsed. Declared members, and everything that is not a
//! struct, are handed to serde_json as before.
//!
//! The result is the one `serde_json::from_str` gives, for views that ignore unknown fields
//! (every view of a Kubernetes object must: the API gains fields over time). Views with
//! `deny_unknown_fields` must not be read this way. Errors carry no position; callers that
//! report them read the object again with serde_json for the message.

use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::rc::Rc;

use serde::Deserialize;
use serde::de::value::{BorrowedStrDeserializer, StringDeserializer};
use serde::de::{DeserializeSeed, MapAccess, Visitor};
use serde_json::Error;
use serde_json::value::RawValue;

/// Deserializes a view of `raw`, skipping the members it does not declare.
pub fn from_raw<'a, T: Deserialize<'a>>(raw: &'a RawValue) -> Result<T, Error> {
    from_raw_with(raw, &Skims::default())
}

/// [`from_raw`], remembering where the large values it steps over end, so that the next view
/// of the same object (each policy reads its own) finds them without searching.
pub fn from_raw_with<'a, T: Deserialize<'a>>(
    raw: &'a RawValue,
    skims: &Skims<'a>,
) -> Result<T, Error> {
    let json = raw.get();
    let end = Cell::new(UNKNOWN);
    T::deserialize(Skimmer {
        json,
        start: skip_ws(json.as_bytes(), 0),
        known_end: UNKNOWN,
        end: &end,
        skims,
    })
}

/// What one view learned of an object's text, for the next view of it: where large values
/// end, and the members of the objects it read. `metadata.managedFields` and
/// `last-applied-configuration` are most of a typical object, and every policy's view steps
/// over them; with this the second view of an object finds its members without searching.
///
/// Everything is keyed by address. Addresses stay meaningful because every text read with a
/// `Skims<'a>` lives for `'a`, at least as long as the memo; `'a` is invariant so that a
/// shorter-lived text (whose address could be reused) cannot be read with it.
#[derive(Default)]
pub struct Skims<'a> {
    ends: RefCell<Vec<(usize, usize)>>,
    objects: RefCell<Vec<Object>>,
    text: PhantomData<fn(&'a str) -> &'a str>,
}

/// An object's members, in order (duplicates included), all positions absolute addresses.
struct Object {
    start: usize,
    end: usize,
    members: Rc<[Member]>,
}

#[derive(Clone, Copy)]
struct Member {
    /// The quoted key.
    key: (usize, usize),
    escaped: bool,
    value: (usize, usize),
}

impl std::fmt::Debug for Skims<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Skims")
            .field("ends", &self.ends.borrow().len())
            .field("objects", &self.objects.borrow().len())
            .finish()
    }
}

/// Values shorter than this are found again faster than they are looked up.
const SKIM_WORTH_REMEMBERING: usize = 64;
/// Bounds on the memo, for objects made of many large values or many members: past them a
/// view reads the text as if it were the first.
const SKIMS_REMEMBERED: usize = 64;
const OBJECTS_REMEMBERED: usize = 32;
const MEMBERS_REMEMBERED: usize = 128;

impl<'a> Skims<'a> {
    /// [`value_end`] of the value at `json[start]`, remembered when it is large.
    fn value_end(&self, json: &'a str, start: usize) -> Option<usize> {
        let base = json.as_ptr() as usize;
        let at = base + start;
        if let Some(&(_, end)) = self.ends.borrow().iter().find(|(from, _)| *from == at) {
            return Some(end - base);
        }
        let end = value_end(json.as_bytes(), start)?;
        if end - start >= SKIM_WORTH_REMEMBERING {
            let mut ends = self.ends.borrow_mut();
            if ends.len() < SKIMS_REMEMBERED {
                ends.push((at, base + end));
            }
        }
        Some(end)
    }

    /// The members of the object at `json[start]`, and where it ends, if a view read it before.
    fn object(&self, json: &'a str, start: usize) -> Option<(usize, Rc<[Member]>)> {
        let at = json.as_ptr() as usize + start;
        self.objects
            .borrow()
            .iter()
            .find(|o| o.start == at)
            .map(|o| (o.end, Rc::clone(&o.members)))
    }

    fn remember_object(&self, json: &'a str, start: usize, end: usize, members: Vec<Member>) {
        let mut objects = self.objects.borrow_mut();
        if objects.len() < OBJECTS_REMEMBERED {
            let base = json.as_ptr() as usize;
            objects.push(Object {
                start: base + start,
                end: base + end,
                members: members.into(),
            });
        }
    }
}

/// The raw value of member `key` of the object `raw`: `None` when `raw` is not an object or
/// has no such member. Of duplicate keys the last wins, as in a map.
pub fn member<'a>(raw: &'a RawValue, key: &str) -> Option<&'a RawValue> {
    let json = raw.get();
    let bytes = json.as_bytes();
    let mut pos = skip_ws(bytes, 0);
    if bytes.get(pos) != Some(&b'{') {
        return None;
    }
    pos += 1;
    let mut found = None;
    while let Some(entry) = next_key(json, &mut pos).ok()? {
        let end = value_end(bytes, entry.value_start)?;
        if entry.key_is(key) {
            found = Some(&json[entry.value_start..end]);
        }
        pos = end;
    }
    // A sub-slice of valid JSON: serde_json reads only this member to wrap it.
    found.and_then(|value| serde_json::from_str(value).ok())
}

/// An end not found yet.
const UNKNOWN: usize = usize::MAX;

/// Past this many bytes a string is searched with memchr.
const LONG_STRING: usize = 32;

fn skip_ws(bytes: &[u8], mut pos: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = bytes.get(pos) {
        pos += 1;
    }
    pos
}

fn truncated() -> Error {
    serde::de::Error::custom("truncated JSON")
}

pub(crate) const ONES: u64 = 0x0101_0101_0101_0101;
pub(crate) const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Marks (high bit) the bytes of `word` equal to `byte`; the lowest mark is exact.
pub(crate) fn marks(word: u64, byte: u8) -> u64 {
    let x = word ^ (ONES * u64::from(byte));
    x.wrapping_sub(ONES) & !x & HIGHS
}

/// Eight bytes at `pos`, if there are eight.
fn word_at(bytes: &[u8], pos: usize) -> Option<u64> {
    let chunk: [u8; 8] = bytes.get(pos..pos + 8)?.try_into().ok()?;
    Some(u64::from_le_bytes(chunk))
}

/// The first byte at or after `pos` that `wanted` accepts, eight bytes at a time where
/// `marked` (the same test on a word) finds none.
pub(crate) fn find(
    bytes: &[u8],
    mut pos: usize,
    marked: impl Fn(u64) -> u64,
    wanted: impl Fn(u8) -> bool,
) -> Option<usize> {
    while let Some(word) = word_at(bytes, pos) {
        let found = marked(word);
        if found != 0 {
            return Some(pos + (found.trailing_zeros() / 8) as usize);
        }
        pos += 8;
    }
    while pos < bytes.len() {
        if wanted(bytes[pos]) {
            return Some(pos);
        }
        pos += 1;
    }
    None
}

/// Where the string starting at `bytes[start]` (a quote) ends: the index after its closing
/// quote, and whether it holds escapes.
pub(crate) fn string_end(bytes: &[u8], start: usize) -> Option<(usize, bool)> {
    let mut pos = start + 1;
    let mut escaped = false;
    loop {
        // Most strings (keys, names) end within a few words; long ones (annotations, certificates,
        // embedded documents) are searched with memchr's wider steps.
        let near = &bytes[..(pos + LONG_STRING).min(bytes.len())];
        pos = match find(
            near,
            pos,
            |w| marks(w, b'"') | marks(w, b'\\'),
            |b| b == b'"' || b == b'\\',
        ) {
            Some(at) => at,
            None => near.len() + memchr::memchr2(b'"', b'\\', bytes.get(near.len()..)?)?,
        };
        if bytes[pos] == b'"' {
            return Some((pos + 1, escaped));
        }
        // A backslash escapes the byte after it (a quote included).
        escaped = true;
        pos += 2;
    }
}

/// Where the JSON value starting at `bytes[start]` ends (exclusive). The JSON is valid, so
/// only strings and brackets need attention.
fn value_end(bytes: &[u8], start: usize) -> Option<usize> {
    match *bytes.get(start)? {
        b'"' => string_end(bytes, start).map(|(end, _)| end),
        b'{' | b'[' => container_end(bytes, start),
        _ => {
            let mut pos = start;
            while let Some(&byte) = bytes.get(pos) {
                if matches!(byte, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                    break;
                }
                pos += 1;
            }
            Some(pos)
        }
    }
}

/// Where the object or array starting at `bytes[start]` ends: its brackets are counted a word
/// at a time, strings stepped over whole.
fn container_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut pos = start;
    while let Some(word) = word_at(bytes, pos) {
        // `[` and `{`, `]` and `}` differ only in the 0x20 bit. Marks above the lowest may be
        // false, so each is checked against its byte.
        let folded = word | (ONES * 0x20);
        let mut candidates = marks(word, b'"') | marks(folded, b'{') | marks(folded, b'}');
        let mut next = pos + 8;
        while candidates != 0 {
            let at = pos + (candidates.trailing_zeros() / 8) as usize;
            candidates &= candidates - 1;
            match bytes[at] {
                b'"' => {
                    // What follows in this word may be inside the string.
                    next = string_end(bytes, at)?.0;
                    break;
                }
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth = depth.checked_sub(1)?;
                    if depth == 0 {
                        return Some(at + 1);
                    }
                }
                _ => {}
            }
        }
        pos = next;
    }
    // The last few bytes, one at a time.
    while let Some(&byte) = bytes.get(pos) {
        match byte {
            b'"' => {
                pos = string_end(bytes, pos)?.0;
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(pos + 1);
                }
            }
            _ => {}
        }
        pos += 1;
    }
    None
}

/// A member's key (still quoted and escaped) and where its value starts.
struct Key<'a> {
    quoted: &'a str,
    escaped: bool,
    value_start: usize,
}

impl Key<'_> {
    fn key_is(&self, wanted: &str) -> bool {
        if self.escaped {
            serde_json::from_str::<String>(self.quoted).is_ok_and(|key| key == wanted)
        } else {
            &self.quoted[1..self.quoted.len() - 1] == wanted
        }
    }
}

/// The key of the member at `pos` (just inside the object's brace, or after the previous
/// member's value); `None`, with `pos` past the brace, at the end of the object.
fn next_key<'a>(json: &'a str, pos: &mut usize) -> Result<Option<Key<'a>>, Error> {
    let bytes = json.as_bytes();
    let mut at = skip_ws(bytes, *pos);
    if bytes.get(at) == Some(&b',') {
        at = skip_ws(bytes, at + 1);
    }
    match bytes.get(at) {
        Some(b'}') => {
            *pos = at + 1;
            return Ok(None);
        }
        Some(b'"') => {}
        _ => return Err(truncated()),
    }
    let (key_end, escaped) = string_end(bytes, at).ok_or_else(truncated)?;
    let colon = skip_ws(bytes, key_end);
    if bytes.get(colon) != Some(&b':') {
        return Err(truncated());
    }
    Ok(Some(Key {
        quoted: &json[at..key_end],
        escaped,
        value_start: skip_ws(bytes, colon + 1),
    }))
}

/// A deserializer over the JSON value at `start`, in one pass: a struct is read member by
/// member from the text itself, and `end` tells the enclosing object where the value ended.
struct Skimmer<'a, 'c> {
    json: &'a str,
    start: usize,
    /// Where the value ends, when the object around it was read before.
    known_end: usize,
    end: &'c Cell<usize>,
    skims: &'c Skims<'a>,
}

impl<'a> Skimmer<'a, '_> {
    /// The value's text, for serde_json.
    fn text(&self) -> Result<&'a str, Error> {
        let end = match self.known_end {
            UNKNOWN => self
                .skims
                .value_end(self.json, self.start)
                .ok_or_else(truncated)?,
            known => known,
        };
        self.end.set(end);
        Ok(&self.json[self.start..end])
    }
}

macro_rules! to_serde_json {
    ($($method:ident($($arg:ident: $ty:ty),*)),* $(,)?) => {
        $(
            fn $method<V: Visitor<'a>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, Error> {
                let mut de = serde_json::Deserializer::from_str(self.text()?);
                let value = serde::Deserializer::$method(&mut de, $($arg,)* visitor)?;
                de.end()?;
                Ok(value)
            }
        )*
    };
}

impl<'a> serde::Deserializer<'a> for Skimmer<'a, '_> {
    type Error = Error;

    fn deserialize_struct<V: Visitor<'a>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        if self.json.as_bytes().get(self.start) != Some(&b'{') {
            // A struct from an array, or the wrong type: serde_json says which.
            let mut de = serde_json::Deserializer::from_str(self.text()?);
            return serde::Deserializer::deserialize_struct(&mut de, name, fields, visitor);
        }
        if let Some((end, members)) = self.skims.object(self.json, self.start) {
            let base = self.json.as_ptr() as usize;
            let value = visitor.visit_map(Remembered {
                json: self.json,
                base,
                members: &members,
                next: 0,
                fields,
                pending: None,
                skims: self.skims,
            })?;
            self.end.set(end - base);
            return Ok(value);
        }
        let mut record = Some(Vec::new());
        let value = visitor.visit_map(Members {
            json: self.json,
            pos: self.start + 1,
            fields,
            pending: None,
            pending_key: None,
            end: self.end,
            skims: self.skims,
            record: &mut record,
        })?;
        match self.end.get() {
            // The visitor stopped before the closing brace.
            UNKNOWN => {
                self.text()?;
            }
            end => {
                if let Some(members) = record {
                    self.skims
                        .remember_object(self.json, self.start, end, members);
                }
            }
        }
        Ok(value)
    }

    fn deserialize_option<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.json.as_bytes().get(self.start) == Some(&b'n') {
            // Valid JSON starting with `n` is `null`.
            self.end.set(self.start + 4);
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_ignored_any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        // What serde_json does once it has stepped over the value.
        self.text()?;
        visitor.visit_unit()
    }

    to_serde_json! {
        deserialize_any(),
        deserialize_bool(),
        deserialize_i8(),
        deserialize_i16(),
        deserialize_i32(),
        deserialize_i64(),
        deserialize_i128(),
        deserialize_u8(),
        deserialize_u16(),
        deserialize_u32(),
        deserialize_u64(),
        deserialize_u128(),
        deserialize_f32(),
        deserialize_f64(),
        deserialize_char(),
        deserialize_str(),
        deserialize_string(),
        deserialize_bytes(),
        deserialize_byte_buf(),
        deserialize_unit(),
        deserialize_unit_struct(name: &'static str),
        deserialize_newtype_struct(name: &'static str),
        deserialize_seq(),
        deserialize_tuple(len: usize),
        deserialize_tuple_struct(name: &'static str, len: usize),
        deserialize_map(),
        deserialize_enum(name: &'static str, variants: &'static [&'static str]),
        deserialize_identifier(),
    }
}

/// The declared members of an object, in order (duplicates included, for serde to refuse).
struct Members<'a, 'c> {
    json: &'a str,
    pos: usize,
    fields: &'static [&'static str],
    /// Where the value of the key just returned starts.
    pending: Option<usize>,
    /// The key just returned, to remember with its value's end.
    pending_key: Option<Key<'a>>,
    /// Set to the index after the closing brace once it is reached.
    end: &'c Cell<usize>,
    skims: &'c Skims<'a>,
    /// The members read so far, for the next view; `None` past [`MEMBERS_REMEMBERED`].
    record: &'c mut Option<Vec<Member>>,
}

impl Members<'_, '_> {
    fn remember(&mut self, key: &Key<'_>, value_end: usize) {
        let base = self.json.as_ptr() as usize;
        let key_start = key.quoted.as_ptr() as usize;
        if let Some(members) = self.record {
            if members.len() >= MEMBERS_REMEMBERED {
                *self.record = None;
                return;
            }
            members.push(Member {
                key: (key_start, key_start + key.quoted.len()),
                escaped: key.escaped,
                value: (base + key.value_start, base + value_end),
            });
        }
    }
}

impl<'a> MapAccess<'a> for Members<'a, '_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'a>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        loop {
            let Some(key) = next_key(self.json, &mut self.pos)? else {
                self.end.set(self.pos);
                return Ok(None);
            };
            if !self.fields.iter().any(|field| key.key_is(field)) {
                self.pos = self
                    .skims
                    .value_end(self.json, key.value_start)
                    .ok_or_else(truncated)?;
                self.remember(&key, self.pos);
                continue;
            }
            self.pending = Some(key.value_start);
            let named = declared_key(key.quoted, key.escaped, seed).map(Some);
            self.pending_key = Some(key);
            return named;
        }
    }

    fn next_value_seed<V: DeserializeSeed<'a>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let start = self.pending.take().ok_or_else(truncated)?;
        let end = Cell::new(UNKNOWN);
        let value = seed.deserialize(Skimmer {
            json: self.json,
            start,
            known_end: UNKNOWN,
            end: &end,
            skims: self.skims,
        })?;
        self.pos = match end.get() {
            UNKNOWN => self
                .skims
                .value_end(self.json, start)
                .ok_or_else(truncated)?,
            end => end,
        };
        if let Some(key) = self.pending_key.take() {
            self.remember(&key, self.pos);
        }
        Ok(value)
    }
}

/// Hands a declared key to serde: borrowed, or unescaped into a `String`.
fn declared_key<'a, K: DeserializeSeed<'a>>(
    quoted: &'a str,
    escaped: bool,
    seed: K,
) -> Result<K::Value, Error> {
    if escaped {
        let name: String = serde_json::from_str(quoted)?;
        seed.deserialize(StringDeserializer::<Error>::new(name))
    } else {
        let name = &quoted[1..quoted.len() - 1];
        seed.deserialize(BorrowedStrDeserializer::<Error>::new(name))
    }
}

/// The declared members of an object another view read before, from its remembered members.
struct Remembered<'a, 'c> {
    json: &'a str,
    base: usize,
    members: &'c [Member],
    next: usize,
    fields: &'static [&'static str],
    pending: Option<Member>,
    skims: &'c Skims<'a>,
}

impl<'a> MapAccess<'a> for Remembered<'a, '_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'a>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        while let Some(&member) = self.members.get(self.next) {
            self.next += 1;
            let quoted = self
                .json
                .get(member.key.0 - self.base..member.key.1 - self.base)
                .ok_or_else(truncated)?;
            let key = Key {
                quoted,
                escaped: member.escaped,
                value_start: member.value.0 - self.base,
            };
            if self.fields.iter().any(|field| key.key_is(field)) {
                self.pending = Some(member);
                return declared_key(quoted, member.escaped, seed).map(Some);
            }
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'a>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let member = self.pending.take().ok_or_else(truncated)?;
        let end = Cell::new(UNKNOWN);
        seed.deserialize(Skimmer {
            json: self.json,
            start: member.value.0 - self.base,
            known_end: member.value.1 - self.base,
            end: &end,
            skims: self.skims,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::collections::BTreeMap;

    use serde::de::DeserializeOwned;

    use super::*;

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_string()).expect("valid JSON")
    }

    // Compared through Debug: RawValue has no PartialEq.
    #[allow(dead_code)]
    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct View<'a> {
        #[serde(borrow, default)]
        name: Option<Cow<'a, str>>,
        #[serde(default)]
        spec: Option<Spec<'a>>,
        #[serde(default, alias = "count")]
        replicas: Option<u32>,
        #[serde(default)]
        labels: BTreeMap<String, String>,
        #[serde(borrow, default)]
        annotations: Option<&'a RawValue>,
    }

    #[allow(dead_code)]
    #[derive(Debug, Deserialize)]
    struct Spec<'a> {
        #[serde(borrow, default)]
        url: Cow<'a, str>,
        #[serde(default)]
        tags: Vec<String>,
        #[serde(default)]
        insecure: Option<bool>,
    }

    /// `from_raw` and serde_json agree, on success and on failure.
    fn same<T: DeserializeOwned + PartialEq + std::fmt::Debug>(json: &str) {
        let raw = raw(json);
        let skimmed: Result<T, _> = from_raw(&raw);
        let parsed: Result<T, _> = serde_json::from_str(json);
        match (&skimmed, &parsed) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{json}"),
            (Err(_), Err(_)) => {}
            _ => panic!("{json}: skimmed {skimmed:?}, parsed {parsed:?}"),
        }
    }

    fn same_view(json: &str) {
        let raw = raw(json);
        let skimmed = from_raw::<View<'_>>(&raw).map(|v| format!("{v:?}"));
        let parsed = serde_json::from_str::<View<'_>>(json).map(|v| format!("{v:?}"));
        match (&skimmed, &parsed) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{json}"),
            (Err(_), Err(_)) => {}
            _ => panic!("{json}: skimmed {skimmed:?}, parsed {parsed:?}"),
        }
    }

    /// A second view of the same text through one [`Skims`], after a first view of another
    /// shape, reads what serde_json reads.
    fn same_again(json: &str) {
        #[allow(dead_code)]
        #[derive(Debug, Deserialize)]
        struct Other<'a> {
            #[serde(borrow, default)]
            annotations: Option<&'a RawValue>,
            #[serde(default)]
            spec: Option<BTreeMap<String, serde_json::Value>>,
            #[serde(default)]
            deep: Option<serde_json::Value>,
        }
        let raw = raw(json);
        let skims = Skims::default();
        let expected = serde_json::from_str::<View<'_>>(json).map(|v| format!("{v:?}"));
        let expected_other = serde_json::from_str::<Other<'_>>(json).map(|v| format!("{v:?}"));
        for _ in 0..3 {
            let other = from_raw_with::<Other<'_>>(&raw, &skims).map(|v| format!("{v:?}"));
            let view = from_raw_with::<View<'_>>(&raw, &skims).map(|v| format!("{v:?}"));
            for (got, want) in [(&view, &expected), (&other, &expected_other)] {
                match (got, want) {
                    (Ok(a), Ok(b)) => assert_eq!(a, b, "{json}"),
                    (Err(_), Err(_)) => {}
                    _ => panic!("{json}: skimmed {got:?}, parsed {want:?}"),
                }
            }
        }
    }

    #[test]
    fn views_read_what_serde_json_reads() {
        for json in [
            r#"{"name":"app","spec":{"url":"oci://x","tags":["a","b"],"insecure":true}}"#,
            r#" { "managedFields" : [ {"f:spec":{"f:url":{}}}, "}]{[\"" ] , "name" : "a\"b\\c\u00e9" , "x": -1.5e3 , "y":null,"z":true} "#,
            r#"{"count":3,"labels":{"a":"1","b":"2"},"annotations":{"k":"v [}"}}"#,
            r#"{"n\u0061me":"escaped key","spec":null,"replicas":null}"#,
            r#"{"name":"dup","name":"again"}"#,
            r#"{"spec":{"url":"u","url":"twice"}}"#,
            r#"{"spec":{"url":5}}"#,
            r#"{"spec":["oci://from-an-array", [], null]}"#,
            r#"{"replicas":-1}"#,
            r#"{"labels":{"a":1}}"#,
            r#"{}"#,
            r#"[]"#,
            r#""a string""#,
            r#"{"deep":[[[[[[{"name":"not this one"}]]]]]],"name":"this one"}"#,
            r#"{"text":"\\\\","name":"after backslashes"}"#,
            r#"{"long":"0123456789abcdef0123456789 \" still in the string","name":"n"}"#,
        ] {
            same_view(json);
            same_again(json);
        }
        same::<BTreeMap<String, u32>>(r#"{"a":1,"b":2}"#);
        same::<Vec<Option<u8>>>(r#"[1,null,3]"#);
        same::<Option<String>>("null");
        same::<(u8, bool)>("[1,true]");
    }

    #[test]
    fn strings_and_brackets_are_found_at_every_offset_of_a_word() {
        // Quotes, backslashes and brackets at each position around the eight-byte steps.
        for len in 0..40 {
            for at in 0..len {
                for special in [r#"\""#, r"\\", "[", "]", "{", "}", "é"] {
                    let mut text: String = "x".repeat(len);
                    text.insert_str(at, special);
                    let json = format!(
                        r#"{{"pad":"{text}","deep":[{{"a":"{text}"}},["{text}"]],"name":"{text}","spec":{{"url":"{text}"}}}}"#
                    );
                    same_view(&json);
                    same_again(&json);
                }
            }
        }
    }

    #[test]
    fn members_are_found_without_parsing_the_rest() {
        let doc = raw(
            r#"{"metadata":{"managedFields":[{"a":"}"}]},"spec":{"a":1},"spec":{"a":2},"\u0073tatus":[1],"n":null}"#,
        );
        assert_eq!(member(&doc, "spec").map(|r| r.get()), Some(r#"{"a":2}"#));
        assert_eq!(member(&doc, "status").map(|r| r.get()), Some("[1]"));
        assert_eq!(member(&doc, "n").map(|r| r.get()), Some("null"));
        assert!(member(&doc, "missing").is_none());
        assert!(member(&raw("[1,2]"), "0").is_none());
        assert!(member(&raw(r#""text""#), "x").is_none());
    }
}
