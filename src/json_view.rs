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
//! A review body is read one step further: [`TextIndex`] checks it to be JSON and records the
//! members of every object in the same pass, so that the envelope and each policy's view of
//! `object` find their members without searching ([`from_indexed`], [`Skims::indexed`]).
//!
//! The result is the one `serde_json::from_str` gives, for views that ignore unknown fields
//! (every view of a Kubernetes object must: the API gains fields over time). Views with
//! `deny_unknown_fields` must not be read this way. Errors carry no position; callers that
//! report them read the object again with serde_json for the message.

pub mod borrowed;

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::fmt::{self, Write as _};
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;

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
    read_whole(raw.get(), skims)
}

/// A `RawValue` of JSON that fluxgate wrote itself and so need not check again (the fast YAML
/// path's, whose tests and fuzz target hold every text it writes to serde_json).
pub fn trusted_raw(json: &str) -> Result<Box<RawValue>, Error> {
    let json = json.trim_matches(|c: char| c.is_ascii_whitespace());
    debug_assert!(
        serde_json::from_str::<serde::de::IgnoredAny>(json).is_ok(),
        "not JSON: {json}"
    );
    <Box<RawValue>>::deserialize(Skimmer {
        json,
        start: 0,
        known_end: json.len(),
        end: &Cell::new(UNKNOWN),
        skims: &Skims::default(),
    })
}

/// Parses JSON into `T` (borrowing strings from it where `T` does), with the path of the
/// offending field in the error (`spec.verify.matchOIDCIdentity[0].issuer: invalid type...`).
pub fn parse_raw<'a, T: serde::Deserialize<'a>>(json: &'a str) -> Result<T, String> {
    // Tracking the path costs an allocation per key; only a malformed object needs it.
    if let Ok(parsed) = serde_json::from_str(json) {
        return Ok(parsed);
    }
    let mut de = serde_json::Deserializer::from_str(json);
    serde_path_to_error::deserialize(&mut de).map_err(|e| describe_parse_error(&e))
}

/// A parse error as findings show it: the path of the field and what is wrong with it, but
/// never the value. serde quotes the offending string (`invalid type: string "…"`), and a
/// string in the wrong place may be a token or a password: findings reach logs, warnings,
/// PolicyReports and CI reports.
pub fn describe_parse_error(e: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let path = e.path().to_string();
    let message = without_values(&e.inner().to_string());
    if path.is_empty() || path == "." {
        message
    } else {
        format!("{path}: {message}")
    }
}

/// Replaces the values serde quotes in its messages with their type.
pub fn without_values(message: &str) -> String {
    static QUOTED: std::sync::LazyLock<Option<regex::Regex>> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r#"string "(?:[^"\\]|\\.)*"|(variant|char) (?:`[^`]*`|'[^']*')"#).ok()
    });
    match QUOTED.as_ref() {
        Some(quoted) => quoted
            .replace_all(message, |caps: &regex::Captures<'_>| match caps.get(1) {
                Some(what) => what.as_str().to_string(),
                None => "a string".to_string(),
            })
            .into_owned(),
        None => "a value of the wrong type or form".to_string(),
    }
}

/// Nesting past serde_json's own recursion limit is not indexed; such a text is skimmed.
const MAX_INDEXED_DEPTH: usize = 128;

/// An object's JSON indexed once for the several views read of it (the cluster view's
/// projections, a check's judging): without the index each view searches the text again for
/// the members it steps over.
pub struct Indexed<'a> {
    raw: &'a RawValue,
    skims: Skims<'a>,
}

impl<'a> Indexed<'a> {
    /// Without the index: the views share only what each learns of the text for the next
    /// ([`Skims`]). For a few views of a small object, building the index costs more than
    /// it saves.
    pub fn skimmed(raw: &'a RawValue) -> Self {
        Indexed {
            raw,
            skims: Skims::default(),
        }
    }

    pub fn new(raw: &'a RawValue) -> Self {
        let index = TextIndex::of(raw.get(), MAX_INDEXED_DEPTH).map(Arc::new);
        Indexed {
            raw,
            skims: Skims::indexed(index),
        }
    }

    pub fn raw(&self) -> &'a RawValue {
        self.raw
    }

    /// A view of the object, or of a value inside it.
    pub fn view<T: Deserialize<'a>>(&self, raw: &'a RawValue) -> Result<T, Error> {
        from_raw_with(raw, &self.skims)
    }

    pub fn skims(&self) -> &Skims<'a> {
        &self.skims
    }

    /// A view of the whole object; a malformed object is read again ([`parse_raw`]) for a
    /// message that says where it is malformed.
    pub fn read<T: Deserialize<'a>>(&self) -> Result<T, String> {
        self.view(self.raw).or_else(|_| parse_raw(self.raw.get()))
    }
}

/// A view of the whole of `json`, which is valid JSON (a `RawValue`'s, or an indexed text).
fn read_whole<'a, T: Deserialize<'a>>(json: &'a str, skims: &Skims<'a>) -> Result<T, Error> {
    // Nothing follows the value, so where it ends is not needed.
    T::deserialize(Skimmer {
        json,
        start: skip_ws(json.as_bytes(), 0),
        known_end: UNKNOWN,
        end: &Cell::new(UNKNOWN),
        skims,
    })
}

/// Reads the value at `json[start]` with `seed`, and where it ends: `known_end` when the
/// caller knows it, else what reading it found (or a search, when the reader stopped short).
#[inline]
fn read_value<'a, T: DeserializeSeed<'a>>(
    json: &'a str,
    start: usize,
    known_end: usize,
    skims: &Skims<'a>,
    seed: T,
) -> Result<(T::Value, usize), Error> {
    let end = Cell::new(UNKNOWN);
    let value = seed.deserialize(Skimmer {
        json,
        start,
        known_end,
        end: &end,
        skims,
    })?;
    let end = match (known_end, end.get()) {
        (UNKNOWN, UNKNOWN) => skims.value_end(json, start).ok_or_else(truncated)?,
        (UNKNOWN, found) => found,
        (known, _) => known,
    };
    Ok((value, end))
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
    /// Every object of the text, when the text was indexed while it was checked to be JSON.
    index: Option<Arc<TextIndex<'a>>>,
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
    /// Where the object's next member is in the same list ([`NO_MEMBER`] after the last).
    /// In the index an object's members are interleaved with those of the objects inside it.
    next: u32,
}

/// The end of a list of members.
const NO_MEMBER: u32 = u32::MAX;

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
    /// A memo that starts out knowing every object of an indexed text.
    pub fn indexed(index: Option<Arc<TextIndex<'a>>>) -> Self {
        Skims {
            index,
            ..Skims::default()
        }
    }

    /// The indexed object at `json[start]`: where it ends, and the list holding its members
    /// with where the first is.
    fn indexed_object(&self, json: &'a str, start: usize) -> Option<(usize, &[Member], u32)> {
        let index = self.index.as_deref()?;
        let at = json.as_ptr() as usize + start;
        let found = index
            .objects
            .binary_search_by_key(&at, |object| object.start)
            .ok()?;
        let object = index.objects.get(found)?;
        Some((object.end, &index.members, object.first_member))
    }

    /// [`value_end`] of the value at `json[start]`, remembered when it is large.
    fn value_end(&self, json: &'a str, start: usize) -> Option<usize> {
        let base = json.as_ptr() as usize;
        if let Some((end, _, _)) = self.indexed_object(json, start) {
            return Some(end - base);
        }
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

    fn remember_object(&self, json: &'a str, start: usize, end: usize, mut members: Vec<Member>) {
        if let Some(last) = members.last_mut() {
            last.next = NO_MEMBER;
        }
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

/// A JSON text checked to be JSON, with every object's members found in the same pass.
///
/// serde_json checks a review's objects by reading them whole as [`RawValue`]s, and each
/// policy's first view then searches the same text again for its members. Indexing while
/// checking makes the text read once: every view of every object finds its members in the
/// index. What the index accepts is what serde_json accepts, down to the escapes and control
/// bytes inside strings that serde_json refuses even in values it skips.
pub struct TextIndex<'a> {
    text: &'a str,
    /// Sorted by start (objects are recorded when they open).
    objects: Vec<IndexedObject>,
    /// Every member in the order of the text; an object's own members are chained by
    /// [`Member::next`] past those of the objects inside it.
    members: Vec<Member>,
}

/// An object's extent (absolute addresses) and where its first member is in the index.
#[derive(Clone, Copy)]
struct IndexedObject {
    start: usize,
    end: usize,
    first_member: u32,
}

/// A container still open while indexing: an object (its entry in the index, and its member
/// being read) or an array.
enum Open {
    Object { at: usize, member: usize },
    Array,
}

impl std::fmt::Debug for TextIndex<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextIndex")
            .field("bytes", &self.text.len())
            .field("objects", &self.objects.len())
            .field("members", &self.members.len())
            .finish()
    }
}

impl<'a> TextIndex<'a> {
    /// Indexes `text` if it is one JSON value (whitespace around it allowed) with containers
    /// nested at most `max_depth` deep; `None` if it is not, for serde_json to say why.
    pub fn of(text: &'a str, max_depth: usize) -> Option<TextIndex<'a>> {
        let bytes = text.as_bytes();
        let base = text.as_ptr() as usize;
        // Control bytes are allowed only as whitespace between tokens. A text with none at
        // all (the API server sends compact JSON) needs no check inside its strings.
        let check_controls = has_control_bytes(bytes);
        let mut index = TextIndex {
            text,
            objects: Vec::with_capacity(bytes.len() / 64),
            members: Vec::with_capacity(bytes.len() / 16),
        };
        let mut open: Vec<Open> = Vec::with_capacity(16);
        let mut pos = skip_ws(bytes, 0);
        'value: loop {
            let start = pos;
            let mut end = match *bytes.get(pos)? {
                opening @ (b'{' | b'[') => {
                    if open.len() >= max_depth {
                        return None;
                    }
                    pos = skip_ws(bytes, pos + 1);
                    if opening == b'{' {
                        let at = index.objects.len();
                        index.objects.push(IndexedObject {
                            start: base + start,
                            end: 0,
                            first_member: NO_MEMBER,
                        });
                        if bytes.get(pos) == Some(&b'}') {
                            index.objects[at].end = base + pos + 1;
                            pos + 1
                        } else {
                            let member = index.members.len();
                            index.objects[at].first_member = u32::try_from(member).ok()?;
                            pos = index.key(pos, check_controls)?;
                            open.push(Open::Object { at, member });
                            continue 'value;
                        }
                    } else if bytes.get(pos) == Some(&b']') {
                        pos + 1
                    } else {
                        open.push(Open::Array);
                        continue 'value;
                    }
                }
                b'"' => checked_string_end(bytes, pos, check_controls)?.0,
                b't' => literal_end(bytes, pos, b"true")?,
                b'f' => literal_end(bytes, pos, b"false")?,
                b'n' => literal_end(bytes, pos, b"null")?,
                b'-' | b'0'..=b'9' => number_end(bytes, pos)?,
                _ => return None,
            };
            // The value ended: close the containers it ends, up to the next value.
            loop {
                let Some(container) = open.last_mut() else {
                    return (skip_ws(bytes, end) == bytes.len()).then_some(index);
                };
                pos = skip_ws(bytes, end);
                match (container, bytes.get(pos)) {
                    (Open::Object { member, .. }, Some(b',')) => {
                        let next = index.members.len();
                        let current = index.members.get_mut(*member)?;
                        current.value.1 = base + end;
                        current.next = u32::try_from(next).ok()?;
                        *member = next;
                        pos = index.key(skip_ws(bytes, pos + 1), check_controls)?;
                        continue 'value;
                    }
                    (Open::Array, Some(b',')) => {
                        pos = skip_ws(bytes, pos + 1);
                        continue 'value;
                    }
                    (&mut Open::Object { at, member }, Some(b'}')) => {
                        index.members.get_mut(member)?.value.1 = base + end;
                        index.objects.get_mut(at)?.end = base + pos + 1;
                    }
                    (Open::Array, Some(b']')) => {}
                    _ => return None,
                }
                open.pop();
                end = pos + 1;
            }
        }
    }

    /// Reads the key at `pos` (a quote), the colon and the whitespace after it, and records
    /// the member, its value's end and the next member still unknown. Returns where the
    /// value starts.
    // Called for every member, with the string search inlined into it: as calls, saving and
    // restoring registers cost more than the search of a short key (6k of 79k instructions a
    // review, callgrind).
    #[inline(always)]
    fn key(&mut self, pos: usize, check_controls: bool) -> Option<usize> {
        let bytes = self.text.as_bytes();
        let base = self.text.as_ptr() as usize;
        if bytes.get(pos) != Some(&b'"') {
            return None;
        }
        let (key_end, escaped) = checked_string_end(bytes, pos, check_controls)?;
        let colon = skip_ws(bytes, key_end);
        if bytes.get(colon) != Some(&b':') {
            return None;
        }
        let value_start = skip_ws(bytes, colon + 1);
        self.members.push(Member {
            key: (base + pos, base + key_end),
            escaped,
            value: (base + value_start, 0),
            next: NO_MEMBER,
        });
        Some(value_start)
    }
}

impl<'a> TextIndex<'a> {
    /// The text's one value (without the whitespace around it).
    pub(crate) fn root(&self) -> &'a str {
        let text = self.text;
        text.get(skip_ws(text.as_bytes(), 0)..).unwrap_or(text)
    }

    /// Calls `each` with every member of the object `value` (a value of this text, as
    /// [`TextIndex::root`] or an earlier call handed it out), in order, duplicates included:
    /// the key between its quotes (`None` when it holds escapes) and the value's text. `None`
    /// when `value` is not an object of the text, or as soon as `each` says `None`.
    pub(crate) fn each_member(
        &self,
        value: &'a str,
        mut each: impl FnMut(Option<&'a str>, &'a str) -> Option<()>,
    ) -> Option<()> {
        let text = self.text;
        let base = text.as_ptr() as usize;
        let at = value.as_ptr() as usize;
        let found = self
            .objects
            .binary_search_by_key(&at, |object| object.start)
            .ok()?;
        let mut next = self.objects.get(found)?.first_member;
        while let Some(member) = self.members.get(next as usize) {
            let key = match member.escaped {
                true => None,
                false => Some(text.get(member.key.0 - base + 1..member.key.1 - base - 1)?),
            };
            each(key, text.get(member.value.0 - base..member.value.1 - base)?)?;
            next = member.next;
        }
        Some(())
    }
}

/// The content of a string value of an indexed text (between its quotes) when it has no
/// escapes, which makes it exactly the string.
pub(crate) fn plain_string(value: &str) -> Option<&str> {
    let content = value.strip_prefix('"')?.strip_suffix('"')?;
    memchr::memchr(b'\\', content.as_bytes())
        .is_none()
        .then_some(content)
}

/// The elements of an array value of an indexed text when every one is a string without
/// escapes (see [`plain_string`]).
pub(crate) fn plain_strings(value: &str) -> Option<Vec<&str>> {
    let bytes = value.as_bytes();
    if bytes.first() != Some(&b'[') {
        return None;
    }
    let mut strings = Vec::new();
    let mut pos = skip_ws(bytes, 1);
    if bytes.get(pos) == Some(&b']') {
        return Some(strings);
    }
    loop {
        if bytes.get(pos) != Some(&b'"') {
            return None;
        }
        let (end, escaped) = string_end(bytes, pos)?;
        if escaped {
            return None;
        }
        strings.push(value.get(pos + 1..end - 1)?);
        pos = skip_ws(bytes, end);
        match bytes.get(pos) {
            Some(b',') => pos = skip_ws(bytes, pos + 1),
            Some(b']') => return Some(strings),
            _ => return None,
        }
    }
}

/// `text` (one JSON value, already checked) as a `RawValue`, handed over as serde_json hands
/// over its own, without reading it again.
pub(crate) fn raw_value(text: &str) -> Option<&RawValue> {
    <&RawValue>::deserialize(serde::de::value::MapAccessDeserializer::new(RawValueOf(
        Some(text),
    )))
    .ok()
}

/// Deserializes a view of a whole indexed text; its objects' members are found in the index.
pub fn from_indexed<'a, T: Deserialize<'a>>(index: &Arc<TextIndex<'a>>) -> Result<T, Error> {
    read_whole(index.text, &Skims::indexed(Some(Arc::clone(index))))
}

/// Whether any byte is below 0x20, eight at a time.
fn has_control_bytes(bytes: &[u8]) -> bool {
    let mut words = bytes.chunks_exact(8);
    // A byte below 0x20 borrows in the subtraction with its high bit clear; a borrow can mark
    // a byte above it only when there is such a byte, so any mark means there is one.
    let below = |word: u64| word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    let mut marked = 0;
    for word in words.by_ref() {
        marked |= below(u64::from_le_bytes(word.try_into().unwrap_or_default()));
    }
    marked != 0 || words.remainder().iter().any(|&b| b < 0x20)
}

/// [`string_end`] for text not yet known to be JSON: every escape must be one JSON has, and
/// with `check_controls` no byte of the string may be below 0x20.
// Inlined into the index's two callers for the same reason as `TextIndex::key`.
#[inline(always)]
fn checked_string_end(bytes: &[u8], start: usize, check_controls: bool) -> Option<(usize, bool)> {
    let mut pos = start + 1;
    let mut escaped = false;
    loop {
        pos = quote_or_backslash(bytes, pos)?;
        if bytes[pos] == b'"' {
            break;
        }
        escaped = true;
        pos = match *bytes.get(pos + 1)? {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => pos + 2,
            b'u' => {
                let digits = bytes.get(pos + 2..pos + 6)?;
                if !digits.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                pos + 6
            }
            _ => return None,
        };
    }
    if check_controls && bytes[start + 1..pos].iter().any(|&b| b < 0x20) {
        return None;
    }
    Some((pos + 1, escaped))
}

/// Where the literal `word` at `pos` ends, if it is there.
fn literal_end(bytes: &[u8], pos: usize, word: &[u8]) -> Option<usize> {
    let end = pos + word.len();
    (bytes.get(pos..end)? == word).then_some(end)
}

/// Where the JSON number at `pos` ends: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
fn number_end(bytes: &[u8], mut pos: usize) -> Option<usize> {
    let digits_from = |mut pos: usize| {
        while bytes.get(pos).is_some_and(u8::is_ascii_digit) {
            pos += 1;
        }
        pos
    };
    if bytes.get(pos) == Some(&b'-') {
        pos += 1;
    }
    pos = match *bytes.get(pos)? {
        b'0' => pos + 1,
        b'1'..=b'9' => digits_from(pos + 1),
        _ => return None,
    };
    if bytes.get(pos) == Some(&b'.') {
        let after = digits_from(pos + 1);
        if after == pos + 1 {
            return None;
        }
        pos = after;
    }
    if let Some(b'e' | b'E') = bytes.get(pos) {
        pos += 1;
        if let Some(b'+' | b'-') = bytes.get(pos) {
            pos += 1;
        }
        let after = digits_from(pos);
        if after == pos {
            return None;
        }
        pos = after;
    }
    Some(pos)
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

#[inline(always)]
fn skip_ws(bytes: &[u8], mut pos: usize) -> usize {
    // Compact JSON (what the API server sends) has no whitespace: one compare says so.
    if bytes.get(pos).is_none_or(|&b| b > b' ') {
        return pos;
    }
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = bytes.get(pos) {
        pos += 1;
    }
    pos
}

fn truncated() -> Error {
    serde::de::Error::custom("truncated JSON")
}

// ---- Writing: JSON strings, as the decision log and the fast YAML path write them. ----

/// A JSON string, escaped as serde_json escapes it.
pub(crate) fn write_json_str(out: &mut impl fmt::Write, text: &str) -> fmt::Result {
    out.write_char('"')?;
    Escaping(out).write_str(text)?;
    out.write_char('"')
}

/// Escapes what is written through it as the inside of a JSON string: quote, backslash and
/// control characters, with serde_json's short forms.
pub(crate) struct Escaping<'a, W: fmt::Write>(pub(crate) &'a mut W);

/// The first byte JSON escapes (a quote, a backslash or a control character), eight bytes
/// at a time.
fn first_escape(bytes: &[u8], from: usize) -> Option<usize> {
    find(
        bytes,
        from,
        // A byte below 0x20 borrows when 0x20 is taken from it, like a zero byte.
        |w| marks(w, b'"') | marks(w, b'\\') | (w.wrapping_sub(ONES * 0x20) & !w & HIGHS),
        |b| b == b'"' || b == b'\\' || b < 0x20,
    )
}

impl<W: fmt::Write> fmt::Write for Escaping<'_, W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let bytes = text.as_bytes();
        let Some(first) = first_escape(bytes, 0) else {
            // What log fields hold almost always: nothing to escape.
            return self.0.write_str(text);
        };
        let mut start = 0;
        for (i, &byte) in bytes.iter().enumerate().skip(first) {
            let escape = match byte {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0x08 => "\\b",
                0x0c => "\\f",
                0x00..=0x1f => "",
                _ => continue,
            };
            // Only ASCII bytes are escaped, so `start..i` ends on a character boundary.
            self.0.write_str(&text[start..i])?;
            if escape.is_empty() {
                write!(self.0, "\\u00{byte:02x}")?;
            } else {
                self.0.write_str(escape)?;
            }
            start = i + 1;
        }
        self.0.write_str(&text[start..])
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Marks (high bit) the bytes of `word` equal to `byte`; the lowest mark is exact.
fn marks(word: u64, byte: u8) -> u64 {
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
fn find(
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
        pos = quote_or_backslash(bytes, pos)?;
        if bytes[pos] == b'"' {
            return Some((pos + 1, escaped));
        }
        // A backslash escapes the byte after it (a quote included).
        escaped = true;
        pos += 2;
    }
}

/// The first quote or backslash at or after `pos`, sixteen bytes a step: strings are most of
/// a Kubernetes object's bytes, and every one of them is searched once for its end.
#[cfg(target_arch = "x86_64")]
fn quote_or_backslash(bytes: &[u8], pos: usize) -> Option<usize> {
    // SSE2 is part of x86_64: no detection, no dispatch through a function pointer, which
    // matters when most strings are a few words long.
    let searcher = memchr::arch::x86_64::sse2::memchr::Two::new(b'"', b'\\')?;
    Some(pos + searcher.find(bytes.get(pos..)?)?)
}

/// The first quote or backslash at or after `pos`, a word at a time.
#[cfg(not(target_arch = "x86_64"))]
fn quote_or_backslash(bytes: &[u8], pos: usize) -> Option<usize> {
    find(
        bytes,
        pos,
        |w| marks(w, b'"') | marks(w, b'\\'),
        |b| b == b'"' || b == b'\\',
    )
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
    /// Whether the key is one of `fields`. An escaped key is unescaped first; one serde_json
    /// cannot unescape (a lone surrogate) is an error, as serde_json reports it whether the
    /// member is declared or not.
    // Inlined into each object's member loop: called once per member of every view, it is
    // among the hottest code of a review.
    #[inline(always)]
    fn is_one_of(&self, fields: &[&str]) -> Result<bool, Error> {
        if self.escaped {
            let key: String = serde_json::from_str(self.quoted)?;
            Ok(fields.contains(&key.as_str()))
        } else {
            let key = &self.quoted[1..self.quoted.len() - 1];
            Ok(fields.contains(&key))
        }
    }

    /// Whether the key is `wanted`; a key that cannot be unescaped is not.
    fn key_is(&self, wanted: &str) -> bool {
        self.is_one_of(&[wanted]).unwrap_or(false)
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
    /// The value when it is a string: borrowed when it has no escapes (valid JSON, so exactly
    /// the text between its quotes), unescaped when its escapes are single characters.
    /// `None` for anything else, `\u` escapes included, which serde_json reads.
    fn string(&self) -> Result<Option<Cow<'a, str>>, Error> {
        if self.json.as_bytes().get(self.start) != Some(&b'"') {
            return Ok(None);
        }
        let text = self.text()?;
        let content = text.get(1..text.len() - 1).ok_or_else(truncated)?;
        Ok(unescape(content))
    }

    /// Reads a struct from members found before (by the index, or by another view): the
    /// object ends at the absolute address `end`, its first member is `members[first]`.
    #[inline]
    fn read_remembered<V: Visitor<'a>>(
        &self,
        visitor: V,
        fields: &'static [&'static str],
        end: usize,
        members: &[Member],
        first: u32,
    ) -> Result<V::Value, Error> {
        let base = self.json.as_ptr() as usize;
        let value = visitor.visit_map(Remembered {
            json: self.json,
            base,
            members,
            next: first,
            fields,
            pending: None,
            skims: self.skims,
        })?;
        self.end.set(end - base);
        Ok(value)
    }

    /// Reads the value with serde_json, which has the last word on anything unusual.
    #[inline]
    fn by_serde_json<T>(
        &self,
        read: impl FnOnce(
            &mut serde_json::Deserializer<serde_json::de::StrRead<'a>>,
        ) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut de = serde_json::Deserializer::from_str(self.text()?);
        let value = read(&mut de)?;
        de.end()?;
        Ok(value)
    }

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
                self.by_serde_json(|de| serde::Deserializer::$method(de, $($arg,)* visitor))
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
            return self.by_serde_json(|de| {
                serde::Deserializer::deserialize_struct(de, name, fields, visitor)
            });
        }
        if let Some((end, members, first)) = self.skims.indexed_object(self.json, self.start) {
            return self.read_remembered(visitor, fields, end, members, first);
        }
        if let Some((end, members)) = self.skims.object(self.json, self.start) {
            return self.read_remembered(visitor, fields, end, &members, 0);
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

    fn deserialize_str<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.string()? {
            Some(Cow::Borrowed(content)) => visitor.visit_borrowed_str(content),
            Some(Cow::Owned(unescaped)) => visitor.visit_string(unescaped),
            None => self.by_serde_json(|de| serde::Deserializer::deserialize_str(de, visitor)),
        }
    }

    fn deserialize_string<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_seq<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.json.as_bytes().get(self.start) != Some(&b'[') {
            // The wrong type: serde_json says which.
            return self.by_serde_json(|de| serde::Deserializer::deserialize_seq(de, visitor));
        }
        let value = visitor.visit_seq(Elements {
            json: self.json,
            pos: self.start + 1,
            end: self.end,
            skims: self.skims,
        })?;
        if self.end.get() == UNKNOWN {
            // The visitor stopped before the closing bracket.
            self.text()?;
        }
        Ok(value)
    }

    fn deserialize_bool<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.text()? {
            "true" => visitor.visit_bool(true),
            "false" => visitor.visit_bool(false),
            // The wrong type: serde_json says which.
            _ => self.by_serde_json(|de| serde::Deserializer::deserialize_bool(de, visitor)),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'a>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        if name == RAW_VALUE_TOKEN {
            // A `&RawValue` of text already checked to be JSON: handed over as serde_json
            // hands over its own, without reading it again. (Were serde_json to rename its
            // token, raw values would take the general path below: slower, not wrong.)
            let text = self.text()?;
            return visitor.visit_map(RawValueOf(Some(text)));
        }
        self.by_serde_json(|de| serde::Deserializer::deserialize_newtype_struct(de, name, visitor))
    }

    fn deserialize_ignored_any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        // What serde_json does once it has stepped over the value.
        self.text()?;
        visitor.visit_unit()
    }

    to_serde_json! {
        deserialize_any(),
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
        deserialize_bytes(),
        deserialize_byte_buf(),
        deserialize_unit(),
        deserialize_unit_struct(name: &'static str),
        deserialize_tuple(len: usize),
        deserialize_tuple_struct(name: &'static str, len: usize),
        deserialize_map(),
        deserialize_enum(name: &'static str, variants: &'static [&'static str]),
        deserialize_identifier(),
    }
}

/// The content of a valid JSON string (between its quotes) as text: borrowed when it has no
/// escapes, unescaped when every escape is a single character; `None` when it has a `\u`
/// escape (surrogate pairs and their errors are serde_json's to read).
fn unescape(content: &str) -> Option<Cow<'_, str>> {
    let bytes = content.as_bytes();
    let Some(first) = memchr::memchr(b'\\', bytes) else {
        return Some(Cow::Borrowed(content));
    };
    let mut unescaped = String::with_capacity(content.len());
    let mut from = 0;
    let mut at = first;
    loop {
        unescaped.push_str(content.get(from..at)?);
        unescaped.push(match *bytes.get(at + 1)? {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            _ => return None,
        });
        from = at + 2;
        match memchr::memchr(b'\\', bytes.get(from..)?) {
            Some(next) => at = from + next,
            None => break,
        }
    }
    unescaped.push_str(content.get(from..)?);
    Some(Cow::Owned(unescaped))
}

/// The elements of an array, each read as a value of its own (so that objects among them are
/// found in the index, and plain strings are borrowed without serde_json).
struct Elements<'a, 'c> {
    json: &'a str,
    /// Just inside the bracket, or just after the previous element.
    pos: usize,
    /// Set to the index after the closing bracket once it is reached.
    end: &'c Cell<usize>,
    skims: &'c Skims<'a>,
}

impl<'a> serde::de::SeqAccess<'a> for Elements<'a, '_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'a>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        let bytes = self.json.as_bytes();
        let mut at = skip_ws(bytes, self.pos);
        if bytes.get(at) == Some(&b',') {
            at = skip_ws(bytes, at + 1);
        }
        match bytes.get(at) {
            Some(b']') => {
                self.end.set(at + 1);
                return Ok(None);
            }
            Some(_) => {}
            None => return Err(truncated()),
        }
        let (value, end) = read_value(self.json, at, UNKNOWN, self.skims, seed)?;
        self.pos = end;
        Ok(Some(value))
    }
}

/// The name under which serde_json's `RawValue` asks a deserializer for its text.
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

/// The one-entry map through which serde_json's own deserializer gives a `RawValue` its
/// text: the token as key, the text as a borrowed string.
struct RawValueOf<'a>(Option<&'a str>);

impl<'a> MapAccess<'a> for RawValueOf<'a> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'a>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        if self.0.is_none() {
            return Ok(None);
        }
        seed.deserialize(BorrowedStrDeserializer::<Error>::new(RAW_VALUE_TOKEN))
            .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'a>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let text = self.0.take().ok_or_else(truncated)?;
        seed.deserialize(BorrowedStrDeserializer::<Error>::new(text))
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
            // Followed by the next one recorded (the last is marked when the object ends).
            let next = u32::try_from(members.len() + 1).unwrap_or(NO_MEMBER);
            members.push(Member {
                key: (key_start, key_start + key.quoted.len()),
                escaped: key.escaped,
                value: (base + key.value_start, base + value_end),
                next,
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
            if !key.is_one_of(self.fields)? {
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
        let (value, end) = read_value(self.json, start, UNKNOWN, self.skims, seed)?;
        self.pos = end;
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
    next: u32,
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
        while let Some(&member) = self.members.get(self.next as usize) {
            self.next = member.next;
            let quoted = self
                .json
                .get(member.key.0 - self.base..member.key.1 - self.base)
                .ok_or_else(truncated)?;
            let key = Key {
                quoted,
                escaped: member.escaped,
                value_start: member.value.0 - self.base,
            };
            if key.is_one_of(self.fields)? {
                self.pending = Some(member);
                return declared_key(quoted, member.escaped, seed).map(Some);
            }
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'a>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let member = self.pending.take().ok_or_else(truncated)?;
        let (start, end) = (member.value.0 - self.base, member.value.1 - self.base);
        read_value(self.json, start, end, self.skims, seed).map(|(value, _)| value)
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
        #[serde(borrow, default)]
        items: Vec<Spec<'a>>,
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
        let index = Arc::new(TextIndex::of(json, 100).expect("indexes valid JSON"));
        let indexed = from_indexed::<View<'_>>(&index).map(|v| format!("{v:?}"));
        for got in [&skimmed, &indexed] {
            match (got, &parsed) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{json}"),
                (Err(_), Err(_)) => {}
                _ => panic!("{json}: read {got:?}, parsed {parsed:?}"),
            }
        }
    }

    /// Whether the index takes `text` for JSON exactly when serde_json does.
    fn index_agrees(text: &str) {
        let indexed = TextIndex::of(text, 100).is_some();
        let parsed = serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok();
        assert_eq!(indexed, parsed, "{text:?}");
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
        let owned = raw(json);
        // The same text, borrowed where the index finds it.
        let borrowed: &RawValue = serde_json::from_str(json).expect("valid JSON");
        let index = Arc::new(TextIndex::of(json, 100).expect("indexes valid JSON"));
        let expected = serde_json::from_str::<View<'_>>(json).map(|v| format!("{v:?}"));
        let expected_other = serde_json::from_str::<Other<'_>>(json).map(|v| format!("{v:?}"));
        for (raw, skims) in [
            (&*owned, Skims::default()),
            (borrowed, Skims::indexed(Some(Arc::clone(&index)))),
        ] {
            for _ in 0..3 {
                let other = from_raw_with::<Other<'_>>(raw, &skims).map(|v| format!("{v:?}"));
                let view = from_raw_with::<View<'_>>(raw, &skims).map(|v| format!("{v:?}"));
                for (got, want) in [(&view, &expected), (&other, &expected_other)] {
                    match (got, want) {
                        (Ok(a), Ok(b)) => assert_eq!(a, b, "{json}"),
                        (Err(_), Err(_)) => {}
                        _ => panic!("{json}: skimmed {got:?}, parsed {want:?}"),
                    }
                }
            }
        }
    }

    #[test]
    fn the_index_takes_for_json_what_serde_json_takes() {
        for text in [
            "{}",
            "[]",
            " { } ",
            "\t[\n]\r ",
            "",
            " ",
            "{",
            "}",
            "[",
            "]",
            "{]",
            "[}",
            "null",
            "nul",
            "nulll",
            "true",
            "tru",
            "false",
            "falsey",
            "True",
            "0",
            "-0",
            "01",
            "-01",
            "1.",
            "1.5",
            ".5",
            "-",
            "+1",
            "1e5",
            "1E+5",
            "1e-5",
            "1e",
            "1e+",
            "2.5e3",
            "-12.34E-56",
            "1.e3",
            "0x10",
            "00",
            "1 2",
            "[1,]",
            "[,1]",
            "[1,,2]",
            r#"{"a":1,}"#,
            r#"{,"a":1}"#,
            r#"{"a" 1}"#,
            r#"{"a":}"#,
            r#"{a:1}"#,
            r#"{"a":1 "b":2}"#,
            r#"{"a":1}x"#,
            r#"{"a":1} "#,
            r#"{"a":[1,{"b":[]}],"c":{}}"#,
            r#"{"":""}"#,
            r#""\u00e9\n\t\/\b\f\r\"\\""#,
            r#""\u00g9""#,
            r#""\u12""#,
            r#""\x41""#,
            r#""\ud800""#,
            r#""\'""#,
            "\"tab\tinside\"",
            "\"nl\ninside\"",
            "\"\u{1}\"",
            "\"\u{7f}\"",
            "\"é ✓ \u{10000}\"",
            r#""unterminated"#,
            r#""ends in \""#,
            r#"{"a":"\\"}"#,
            r#"{"k\"ey":"v"}"#,
            "[\"a\"\n,\n\"b\"]",
            "{\"a\"\t:\r1}",
        ] {
            index_agrees(text);
        }
        // Every single-byte change of a few texts: deleted, replaced or inserted.
        let seeds = [
            r#"{"a":[1,-2.5e3,true,null],"b\n":{"c":"d\u0041"},"e":{}}"#,
            r#"[{"k":"v"},[],"x",0]"#,
        ];
        let specials = b"\"\\{}[],: \n\t\x01\x1f0-+.eEuxnt/";
        for seed in seeds {
            let seed = seed.as_bytes();
            for at in 0..=seed.len() {
                let mut variants = Vec::new();
                if at < seed.len() {
                    let mut deleted = seed.to_vec();
                    deleted.remove(at);
                    variants.push(deleted);
                }
                for &special in specials {
                    let mut inserted = seed.to_vec();
                    inserted.insert(at, special);
                    variants.push(inserted);
                    if at < seed.len() {
                        let mut replaced = seed.to_vec();
                        replaced[at] = special;
                        variants.push(replaced);
                    }
                }
                for variant in variants {
                    if let Ok(text) = std::str::from_utf8(&variant) {
                        index_agrees(text);
                    }
                }
            }
        }
    }

    #[test]
    fn the_index_refuses_what_nests_deeper_than_its_bound() {
        let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert!(TextIndex::of(&nested(4), 4).is_some());
        assert!(TextIndex::of(&nested(5), 4).is_none());
        assert!(TextIndex::of(r#"{"a":{"b":{"c":{}}}}"#, 4).is_some());
        assert!(TextIndex::of(r#"{"a":{"b":{"c":{"d":{}}}}}"#, 4).is_none());
        // Brackets inside strings are not nesting.
        assert!(TextIndex::of(r#"["[[[[[[[[{{{{{{"]"#, 1).is_some());
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
            r#"{"name":true}"#,
            r#"{"name":"tab\there\/slash\\back\"q\b\f\n\r","spec":{"url":"\\"}}"#,
            r#"{"name":"\n","spec":{"url":"x\t","tags":["\"","a\\b","\u00e9\n"]}}"#,
            r#"{"name":"\ud83d\ude00 and \n"}"#,
            r#"{"name":"\ud83d alone"}"#,
            r#"{"\uda0e":"an unknown key serde_json cannot unescape"}"#,
            r#"{"n\u0061me":"a declared key, escaped","\u0078":1}"#,
            r#"{"spec":{"tags":[]}}"#,
            r#"{"spec":{"tags":[ "a" , "b\"c" ,"\u0041"] }}"#,
            r#"{"spec":{"tags":["a",1]}}"#,
            r#"{"spec":{"tags":"a"}}"#,
            r#"{"spec":{"tags":[["a"]]}}"#,
            r#"{"items":[{"url":"a"},{"url":"b","tags":["x"],"z":[{}]}, {} ]}"#,
            r#"{"items":[{"url":"a"}, 5]}"#,
            r#"{"items":[null]}"#,
            r#"{"items":[],"name":"after"}"#,
            r#"{"items":{"url":"a"}}"#,
            r#"{"name":""}"#,
            r#"{"name":["a"]}"#,
            r#"{"spec":{"insecure":"true"}}"#,
            r#"{"spec":{"insecure":false,"url":"a\u0041"}}"#,
            r#"{"spec":{"insecure":null}}"#,
            r#"{"spec":{"url":null}}"#,
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
