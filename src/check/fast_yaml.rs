//! A fast path for the YAML that manifests are written in: block mappings and sequences,
//! plain, quoted and block scalars, comments and one-line flow collections.
//!
//! [`to_json`] writes the document as JSON text that reads as exactly the value
//! `serde_yaml_ng::from_str::<serde_json::Value>` gives, or gives `None`: anything outside that
//! subset, or anything it is not sure of, is left to serde_yaml_ng, which then also reports the
//! errors with their positions. Bailing out is always correct; a different value is a bug,
//! which the differential tests and the `fast_yaml` fuzz target look for.
//!
//! It writes text rather than building a `Value` because text is what the engine judges: a
//! tree would be built, serialized and dropped again for every object, which cost more than
//! reading the YAML.
//!
//! The rules below follow libyaml's scanner (`unsafe-libyaml`) and serde_yaml_ng's scalar
//! resolution (`visit_untagged_scalar` in its `de.rs`); where a rule is narrower than
//! theirs, the narrowing is deliberate.

use std::borrow::Cow;

use serde_json::Number;

#[cfg(test)]
mod tests;

/// serde_yaml_ng stops at 128 nested collections; staying well below it means its recursion
/// error never has to be reproduced.
const MAX_DEPTH: usize = 64;

/// libyaml gives up on a simple key that does not find its `:` within 1024 characters.
/// Counted in bytes here, which are never fewer than characters.
const MAX_KEY_BYTES: usize = 1000;

/// serde_json's `Value` reads a mapping whose first key is this as a `RawValue`.
const RAW_VALUE_KEY: &str = "$serde_json::private::RawValue";

/// Not the subset: serde_yaml_ng decides.
struct Bail;

#[cfg(test)]
thread_local! {
    /// Which rule bailed last, for the tests that explain a bail-out.
    static LAST_BAIL: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

#[track_caller]
fn bail() -> Bail {
    #[cfg(test)]
    {
        let line = std::panic::Location::caller().line();
        LAST_BAIL.with(|b| b.set(line));
    }
    Bail
}

type Res<T> = Result<T, Bail>;

/// What follows an item of a flow collection.
enum FlowStep {
    /// Another item, starting here.
    Item(usize),
    /// The collection closed; it ends here.
    Closed(usize),
}

/// The document as JSON text, when the text is in the subset this module reads. Members keep
/// the order they are written in; a mapping that repeats a key bails (serde_yaml_ng keeps the
/// last value, which the text could only say by holding the key twice).
pub fn to_json(text: &str) -> Option<String> {
    #[cfg(test)]
    LAST_BAIL.with(|b| b.set(0));
    if !plain_text(text) {
        return None;
    }
    let mut parser = Parser {
        text,
        bytes: text.as_bytes(),
        depth: 0,
        // JSON is about as long as the YAML it comes from.
        out: String::with_capacity(text.len() + text.len() / 4),
        keys: Vec::with_capacity(32),
    };
    parser.document().ok()?;
    Some(parser.out)
}

/// Rules out, before anything is parsed, what the subset never holds: tabs, carriage
/// returns and other control characters (libyaml refuses some and treats others as
/// whitespace or line breaks), the Unicode line breaks and byte-order marks libyaml reads
/// specially, and merge keys (`<<`), which the caller resolves on the slow path.
fn plain_text(text: &str) -> bool {
    let bytes = text.as_bytes();
    if memchr::memmem::find(bytes, b"<<").is_some() {
        return false;
    }
    // Printable ASCII and line feeds, tested without a branch a byte so that it vectorises.
    let ascii = bytes.chunks(64).all(|chunk| {
        chunk.iter().fold(true, |ok, &b| {
            ok & ((b.wrapping_sub(0x20) < 0x5f) | (b == b'\n'))
        })
    });
    ascii
        || text.chars().all(|c| {
            let c = c as u32;
            (0x20..0x7f).contains(&c)
                || c == 0x0a
                || ((0xa0..=0xd7ff).contains(&c) && c != 0x2028 && c != 0x2029)
                || ((0xe000..=0xfffd).contains(&c) && c != 0xfeff)
                || c >= 0x1_0000
        })
}

/// One line of the text, or the part of it after a `- ` that starts a compact mapping.
#[derive(Clone, Copy, Debug)]
struct Line {
    /// Where the physical line starts.
    start: usize,
    /// Where the content starts; `content - start` is its column (only spaces and `- `
    /// precede it, so bytes and columns agree).
    content: usize,
    /// Where the line ends, before its `\n`.
    end: usize,
    /// Where the next line starts (the text's length at the end).
    next: usize,
}

impl Line {
    fn indent(&self) -> usize {
        self.content - self.start
    }
}

struct Parser<'t> {
    text: &'t str,
    bytes: &'t [u8],
    depth: usize,
    /// The JSON written so far.
    out: String,
    /// Where the keys of the mappings being written are in `out`, innermost last, to find a
    /// repeated key.
    keys: Vec<(usize, usize)>,
}

/// The bytes that cannot start a plain scalar (libyaml's indicators), `-` aside.
fn is_indicator(b: u8) -> bool {
    matches!(
        b,
        b'-' | b'?'
            | b':'
            | b','
            | b'['
            | b']'
            | b'{'
            | b'}'
            | b'#'
            | b'&'
            | b'*'
            | b'!'
            | b'|'
            | b'>'
            | b'\''
            | b'"'
            | b'%'
            | b'@'
            | b'`'
            | b' '
    )
}

impl<'t> Parser<'t> {
    fn byte(&self, at: usize) -> Option<u8> {
        self.bytes.get(at).copied()
    }

    fn line_at(&self, start: usize) -> Line {
        let (end, next) = match memchr::memchr(b'\n', &self.bytes[start..]) {
            Some(i) => (start + i, start + i + 1),
            None => (self.bytes.len(), self.bytes.len()),
        };
        let mut content = start;
        while content < end && self.bytes[content] == b' ' {
            content += 1;
        }
        Line {
            start,
            content,
            end,
            next,
        }
    }

    /// The first line from `from` on that holds content: blank and comment lines are
    /// skipped. Document markers and directives end the subset: a chunk holds one document.
    fn next_content(&self, mut from: usize) -> Res<Option<Line>> {
        while from < self.bytes.len() {
            let line = self.line_at(from);
            if line.content < line.end && self.bytes[line.content] != b'#' {
                let head = &self.bytes[line.start..line.end];
                if head.starts_with(b"---") || head.starts_with(b"...") || head[0] == b'%' {
                    return Err(bail());
                }
                return Ok(Some(line));
            }
            from = line.next;
        }
        Ok(None)
    }

    fn document(&mut self) -> Res<()> {
        let mut from = 0;
        // One leading `---`, alone on its line or with a comment.
        while from < self.bytes.len() {
            let line = self.line_at(from);
            let head = &self.bytes[line.start..line.end];
            if let Some(rest) = head.strip_prefix(b"---") {
                let rest = trim_start_spaces(rest);
                let spaced = rest.len() < head.len() - 3;
                if !(rest.is_empty() || (spaced && rest[0] == b'#')) {
                    return Err(bail());
                }
                from = line.next;
                break;
            }
            if line.content < line.end && self.bytes[line.content] != b'#' {
                break;
            }
            from = line.next;
        }
        let Some(line) = self.next_content(from)? else {
            return Err(bail());
        };
        let next = if self.is_seq_item(&line) {
            self.block_seq(line)?
        } else if let Some(key) = self.map_key(&line)? {
            self.block_map(line, key)?
        } else {
            return Err(bail());
        };
        match next {
            None => Ok(()),
            Some(_) => Err(bail()),
        }
    }

    /// Where a flow collection goes on after an item that ends at `after`: the next item,
    /// past a comma, or past the collection's closing `close`, leaving its depth.
    fn after_flow_item(&mut self, after: usize, end: usize, close: u8) -> Res<FlowStep> {
        let i = self.skip_spaces(after, end);
        match self.byte(i).filter(|_| i < end) {
            Some(b',') => {
                let next = self.skip_spaces(i + 1, end);
                // A trailing comma is valid YAML; not needed here.
                if self.byte(next) == Some(close) {
                    return Err(bail());
                }
                Ok(FlowStep::Item(next))
            }
            Some(b) if b == close => {
                self.depth -= 1;
                Ok(FlowStep::Closed(i + 1))
            }
            _ => Err(bail()),
        }
    }

    fn enter(&mut self) -> Res<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(bail());
        }
        Ok(())
    }

    fn is_seq_item(&self, line: &Line) -> bool {
        self.byte(line.content) == Some(b'-')
            && (line.content + 1 == line.end || self.byte(line.content + 1) == Some(b' '))
    }

    /// A node that starts on a line of its own, more indented than the collection holding
    /// it (whose indentation is `parent`).
    fn block_node(&mut self, line: Line, parent: usize) -> Res<Option<Line>> {
        if self.is_seq_item(&line) {
            return self.block_seq(line);
        }
        if let Some(key) = self.map_key(&line)? {
            return self.block_map(line, key);
        }
        // A block scalar header alone on its line is rare; the rest are one-line values.
        if matches!(self.byte(line.content), Some(b'|' | b'>')) {
            return Err(bail());
        }
        self.inline_value(line, line.content, parent)
    }

    /// A block mapping whose first key starts `first`.
    fn block_map(&mut self, first: Line, first_key: (Cow<'t, str>, usize)) -> Res<Option<Line>> {
        self.enter()?;
        let indent = first.indent();
        let keys_from = self.open_map();
        let mut line = first;
        let (mut key, mut after) = first_key;
        loop {
            self.write_key(&key, keys_from);
            let next = self.map_value(line, after, indent)?;
            match next {
                Some(l) if l.indent() == indent => {
                    line = l;
                    (key, after) = self.map_key(&line)?.ok_or_else(|| bail())?;
                }
                Some(l) if l.indent() > indent => return Err(bail()),
                _ => {
                    self.close_map(keys_from)?;
                    self.depth -= 1;
                    return Ok(next);
                }
            }
        }
    }

    /// Opens a JSON object; returns where its keys start in `keys`.
    fn open_map(&mut self) -> usize {
        self.out.push('{');
        self.keys.len()
    }

    /// Writes `"key":`, after a comma unless it is the object's first key.
    fn write_key(&mut self, key: &str, keys_from: usize) {
        if self.keys.len() > keys_from {
            self.out.push(',');
        }
        let start = self.out.len();
        write_string(&mut self.out, key);
        self.keys.push((start, self.out.len()));
        self.out.push(':');
    }

    /// Closes the JSON object whose keys start at `keys_from`, bailing on a repeated key.
    fn close_map(&mut self, keys_from: usize) -> Res<()> {
        let keys = &self.keys[keys_from..];
        let written = |&(start, end): &(usize, usize)| &self.out[start..end];
        // Escaping is one-to-one, so the written keys repeat exactly when the keys do.
        let repeated = if keys.len() <= 16 {
            keys.iter()
                .enumerate()
                .any(|(i, a)| keys[..i].iter().any(|b| written(a) == written(b)))
        } else {
            let mut sorted: Vec<&str> = keys.iter().map(written).collect();
            sorted.sort_unstable();
            sorted.windows(2).any(|w| w[0] == w[1])
        };
        if repeated {
            return Err(bail());
        }
        self.keys.truncate(keys_from);
        self.out.push('}');
        Ok(())
    }

    /// The key of a `key: value` or `key:` line, and where the value may start.
    fn map_key(&self, line: &Line) -> Res<Option<(Cow<'t, str>, usize)>> {
        let p = line.content;
        let (key, colon) = match self.byte(p) {
            Some(q @ (b'"' | b'\'')) => {
                // A key closes on its line; a quoted scalar that does not is a value.
                let Ok((key, after)) = self.quoted(p, line.end, q) else {
                    return Ok(None);
                };
                if self.byte(after) != Some(b':') {
                    return Ok(None);
                }
                (Cow::Owned(key), after)
            }
            Some(b) if self.plain_can_start(b, p + 1, line.end) => {
                let Some(colon) = self.plain_stop(p, line.end) else {
                    return Ok(None);
                };
                if self.bytes[colon] == b'#' {
                    return Ok(None);
                }
                (Cow::Borrowed(trim_end_spaces(&self.text[p..colon])), colon)
            }
            _ => return Ok(None),
        };
        if colon + 1 < line.end && self.bytes[colon + 1] != b' ' {
            return Ok(None);
        }
        if colon - p > MAX_KEY_BYTES || key == RAW_VALUE_KEY {
            return Err(bail());
        }
        Ok(Some((key, colon + 1)))
    }

    /// The value after `key:` in a mapping indented by `indent`; `after` follows the colon.
    fn map_value(&mut self, line: Line, after: usize, indent: usize) -> Res<Option<Line>> {
        let p = self.skip_spaces(after, line.end);
        if p == line.end || self.bytes[p] == b'#' {
            let next = self.next_content(line.next)?;
            return match next {
                Some(l) if l.indent() > indent => self.block_node(l, indent),
                // The indentless sequence kubectl and kustomize write: `key:` then `- item`
                // at the key's own indentation.
                Some(l) if l.indent() == indent && self.is_seq_item(&l) => self.block_seq(l),
                _ => {
                    self.out.push_str("null");
                    Ok(next)
                }
            };
        }
        self.inline_value(line, p, indent)
    }

    /// A block sequence whose first `-` starts `first`.
    fn block_seq(&mut self, first: Line) -> Res<Option<Line>> {
        self.enter()?;
        let indent = first.indent();
        self.out.push('[');
        let mut line = first;
        loop {
            let p = self.skip_spaces(line.content + 1, line.end);
            let next = if p == line.end || self.bytes[p] == b'#' {
                let next = self.next_content(line.next)?;
                match next {
                    Some(l) if l.indent() > indent => self.block_node(l, indent)?,
                    _ => {
                        self.out.push_str("null");
                        next
                    }
                }
            } else if self.bytes[p] == b'-' && (p + 1 == line.end || self.bytes[p + 1] == b' ') {
                // `- - item`: a sequence in a sequence on one line.
                return Err(bail());
            } else {
                let rest = Line { content: p, ..line };
                if let Some(key) = self.map_key(&rest)? {
                    self.block_map(rest, key)?
                } else {
                    self.inline_value(line, p, indent)?
                }
            };
            match next {
                Some(l) if l.indent() == indent && self.is_seq_item(&l) => {
                    self.out.push(',');
                    line = l;
                }
                Some(l) if l.indent() > indent => return Err(bail()),
                _ => {
                    self.out.push(']');
                    self.depth -= 1;
                    return Ok(next);
                }
            }
        }
    }

    /// A value that starts at `p` on `line`, in a collection indented by `parent`: a block
    /// scalar, or a quoted scalar, flow collection or plain scalar that ends on this line.
    fn inline_value(&mut self, line: Line, p: usize, parent: usize) -> Res<Option<Line>> {
        let end = match self.bytes[p] {
            b'|' | b'>' => return self.block_scalar(line, p, parent),
            q @ (b'"' | b'\'') => {
                let (s, last, end) = self.quoted_lines(line, p, q, parent)?;
                self.rest_is_comment(end, last.end)?;
                write_string(&mut self.out, &s);
                return self.next_content(last.next);
            }
            b'{' | b'[' => self.flow_node(p, line.end)?,
            b => {
                if !self.plain_can_start(b, p + 1, line.end) {
                    return Err(bail());
                }
                return self.plain_block(line, p, parent);
            }
        };
        self.rest_is_comment(end, line.end)?;
        // The callers bail on a line more indented than their collection after the value.
        self.next_content(line.next)
    }

    /// A plain scalar in block context that starts at `p` on `line`, in a collection indented
    /// by `parent`. It goes on over the following lines indented past `parent`, until a
    /// comment, as libyaml's `yaml_parser_scan_plain_scalar` reads it: a line break between
    /// two lines folds to a space, and each empty line between them to a line break.
    fn plain_block(&mut self, line: Line, p: usize, parent: usize) -> Res<Option<Line>> {
        let end = self.plain_block_end(p, line.end)?;
        let first = trim_end_spaces(&self.text[p..end]);
        let mut folded: Option<String> = None;
        let mut at = line.next;
        if end == line.end {
            let len = self.bytes.len();
            let mut empty_lines = 0;
            while at < len {
                let l = self.line_at(at);
                if l.content == l.end {
                    if l.next == l.end {
                        // Spaces at the very end, with no line break: nothing more.
                        at = len;
                        break;
                    }
                    empty_lines += 1;
                    at = l.next;
                    continue;
                }
                if l.indent() <= parent || self.bytes[l.content] == b'#' {
                    break;
                }
                let e = self.plain_block_end(l.content, l.end)?;
                let s = folded.get_or_insert_with(|| first.to_string());
                if empty_lines == 0 {
                    s.push(' ');
                }
                for _ in 0..empty_lines {
                    s.push('\n');
                }
                empty_lines = 0;
                s.push_str(trim_end_spaces(&self.text[l.content..e]));
                at = l.next;
                if e < l.end {
                    // A comment ends the scalar.
                    break;
                }
            }
        }
        match folded {
            Some(s) => write_plain(&mut self.out, &s)?,
            None => write_plain(&mut self.out, first)?,
        }
        self.next_content(at)
    }

    /// Where a plain scalar in block context ends: the line's end or a comment. A `: ` in it
    /// would be a second mapping value on the line, an error.
    fn plain_block_end(&self, p: usize, end: usize) -> Res<usize> {
        match self.plain_stop(p, end) {
            None => Ok(end),
            Some(i) if self.bytes[i] == b'#' => Ok(i),
            Some(_) => Err(bail()),
        }
    }

    /// The first `: ` (or `:` ending the line) or ` #` in `p..end`, where a plain scalar in
    /// block context stops: at the `:` or the `#`.
    fn plain_stop(&self, p: usize, end: usize) -> Option<usize> {
        memchr::memchr2_iter(b':', b'#', &self.bytes[p..end])
            .map(|i| p + i)
            .find(|&i| {
                if self.bytes[i] == b':' {
                    i + 1 == end || self.bytes[i + 1] == b' '
                } else {
                    i > p && self.bytes[i - 1] == b' '
                }
            })
    }

    /// Whether a plain scalar may start with `b`, followed by the byte at `next`.
    fn plain_can_start(&self, b: u8, next: usize, end: usize) -> bool {
        if b == b'-' {
            // `-x` is a plain scalar; `- ` and a lone `-` start a sequence entry.
            return next < end
                && !matches!(self.bytes[next], b' ' | b',' | b'[' | b']' | b'{' | b'}');
        }
        !is_indicator(b)
    }

    /// Nothing but spaces and a comment may follow a value on its line.
    fn rest_is_comment(&self, from: usize, end: usize) -> Res<()> {
        let p = self.skip_spaces(from, end);
        if p == end || (self.bytes[p] == b'#' && self.bytes[p - 1] == b' ') {
            Ok(())
        } else {
            Err(bail())
        }
    }

    fn skip_spaces(&self, mut p: usize, end: usize) -> usize {
        while p < end && self.bytes[p] == b' ' {
            p += 1;
        }
        p
    }

    /// A quoted scalar that closes on its line: the string and where the closing quote ends.
    fn quoted(&self, p: usize, end: usize, quote: u8) -> Res<(String, usize)> {
        let mut out = String::new();
        let mut i = p + 1;
        let mut run = i;
        loop {
            if i >= end {
                // Multi-line quoted scalars fold their line breaks; not in the subset.
                return Err(bail());
            }
            let b = self.bytes[i];
            if b == quote {
                if quote == b'\'' && self.byte(i + 1) == Some(b'\'') && i + 1 < end {
                    out.push_str(&self.text[run..=i]);
                    i += 2;
                    run = i;
                    continue;
                }
                out.push_str(&self.text[run..i]);
                return Ok((out, i + 1));
            }
            if b == b'\\' && quote == b'"' {
                out.push_str(&self.text[run..i]);
                i = self.escape(i + 1, end, &mut out)?;
                run = i;
                continue;
            }
            i += 1;
        }
    }

    /// A quoted scalar in block context, which may go on over the following lines, as
    /// libyaml's `yaml_parser_scan_flow_scalar` folds them: spaces around a line break go, the
    /// break becomes a space, and each empty line a line break. Continuation lines must be
    /// indented past `parent` (libyaml does not ask it; the subset does). A `\` that escapes
    /// a line break bails. Returns the string, the line it ends on and where it ends.
    fn quoted_lines(
        &self,
        line: Line,
        p: usize,
        quote: u8,
        parent: usize,
    ) -> Res<(String, Line, usize)> {
        let mut out = String::new();
        let mut line = line;
        let mut i = p + 1;
        loop {
            let mut run = i;
            while i < line.end {
                let b = self.bytes[i];
                if b == quote {
                    if quote == b'\'' && i + 1 < line.end && self.bytes[i + 1] == b'\'' {
                        out.push_str(&self.text[run..=i]);
                        i += 2;
                        run = i;
                        continue;
                    }
                    out.push_str(&self.text[run..i]);
                    return Ok((out, line, i + 1));
                }
                if b == b'\\' && quote == b'"' {
                    out.push_str(&self.text[run..i]);
                    i = self.escape(i + 1, line.end, &mut out)?;
                    run = i;
                    continue;
                }
                i += 1;
            }
            // Spaces before a line break are dropped; escaped ones were written already.
            out.push_str(trim_end_spaces(&self.text[run..line.end]));
            let mut empty_lines = 0;
            let mut at = line.next;
            line = loop {
                if at >= self.bytes.len() {
                    return Err(bail());
                }
                let l = self.line_at(at);
                if l.content < l.end {
                    break l;
                }
                if l.next == l.end {
                    return Err(bail());
                }
                empty_lines += 1;
                at = l.next;
            };
            if line.indent() <= parent {
                return Err(bail());
            }
            if empty_lines == 0 {
                out.push(' ');
            }
            for _ in 0..empty_lines {
                out.push('\n');
            }
            i = line.content;
        }
    }

    /// One escape of a double-quoted scalar, the ones libyaml knows; `at` follows the `\`.
    fn escape(&self, at: usize, end: usize, out: &mut String) -> Res<usize> {
        if at >= end {
            // `\` at the end of the line joins the next one.
            return Err(bail());
        }
        let c = match self.bytes[at] {
            b'0' => '\0',
            b'a' => '\x07',
            b'b' => '\x08',
            b't' => '\t',
            b'n' => '\n',
            b'v' => '\x0b',
            b'f' => '\x0c',
            b'r' => '\r',
            b'e' => '\x1b',
            b' ' => ' ',
            b'"' => '"',
            b'/' => '/',
            b'\\' => '\\',
            b'N' => '\u{85}',
            b'_' => '\u{a0}',
            b'L' => '\u{2028}',
            b'P' => '\u{2029}',
            b'x' | b'u' | b'U' => {
                let digits = match self.bytes[at] {
                    b'x' => 2,
                    b'u' => 4,
                    _ => 8,
                };
                let hex = self
                    .bytes
                    .get(at + 1..at + 1 + digits)
                    .ok_or_else(|| bail())?;
                if at + 1 + digits > end || !hex.iter().all(u8::is_ascii_hexdigit) {
                    return Err(bail());
                }
                let code = hex
                    .iter()
                    .try_fold(0u32, |acc, &h| {
                        let d = (h as char).to_digit(16)?;
                        acc.checked_mul(16)?.checked_add(d)
                    })
                    .ok_or_else(|| bail())?;
                // libyaml refuses surrogates and values past U+10FFFF.
                let c = char::from_u32(code).ok_or_else(|| bail())?;
                out.push(c);
                return Ok(at + 1 + digits);
            }
            _ => return Err(bail()),
        };
        out.push(c);
        Ok(at + 1)
    }

    /// A flow collection, or a scalar inside one, that ends before `end` (the line's end):
    /// the value and where it ends.
    fn flow_node(&mut self, p: usize, end: usize) -> Res<usize> {
        match self.byte(p).filter(|_| p < end).ok_or_else(|| bail())? {
            b'[' => {
                self.enter()?;
                self.out.push('[');
                let mut i = self.skip_spaces(p + 1, end);
                if self.byte(i) == Some(b']') && i < end {
                    self.out.push(']');
                    self.depth -= 1;
                    return Ok(i + 1);
                }
                loop {
                    let after = self.flow_node(i, end)?;
                    match self.after_flow_item(after, end, b']')? {
                        FlowStep::Item(next) => {
                            self.out.push(',');
                            i = next;
                        }
                        FlowStep::Closed(past) => {
                            self.out.push(']');
                            return Ok(past);
                        }
                    }
                }
            }
            b'{' => {
                self.enter()?;
                let keys_from = self.open_map();
                let mut i = self.skip_spaces(p + 1, end);
                if self.byte(i) == Some(b'}') && i < end {
                    self.close_map(keys_from)?;
                    self.depth -= 1;
                    return Ok(i + 1);
                }
                loop {
                    let (key, after) =
                        match self.byte(i).filter(|_| i < end).ok_or_else(|| bail())? {
                            q @ (b'"' | b'\'') => {
                                let (key, after) = self.quoted(i, end, q)?;
                                (Cow::Owned(key), after)
                            }
                            b => {
                                if !self.plain_can_start(b, i + 1, end) {
                                    return Err(bail());
                                }
                                let stop = self.plain_flow_end(i, end)?;
                                (Cow::Borrowed(trim_end_spaces(&self.text[i..stop])), stop)
                            }
                        };
                    if after + 1 >= end
                        || self.bytes[after] != b':'
                        || self.bytes[after + 1] != b' '
                        || key == RAW_VALUE_KEY
                    {
                        return Err(bail());
                    }
                    let v = self.skip_spaces(after + 1, end);
                    if matches!(self.byte(v), Some(b',' | b'}')) {
                        // `{a: }`: an empty value.
                        return Err(bail());
                    }
                    self.write_key(&key, keys_from);
                    let after = self.flow_node(v, end)?;
                    match self.after_flow_item(after, end, b'}')? {
                        FlowStep::Item(next) => i = next,
                        FlowStep::Closed(past) => {
                            self.close_map(keys_from)?;
                            return Ok(past);
                        }
                    }
                }
            }
            q @ (b'"' | b'\'') => {
                let (s, after) = self.quoted(p, end, q)?;
                write_string(&mut self.out, &s);
                Ok(after)
            }
            b => {
                if !self.plain_can_start(b, p + 1, end) {
                    return Err(bail());
                }
                let stop = self.plain_flow_end(p, end)?;
                write_plain(&mut self.out, trim_end_spaces(&self.text[p..stop]))?;
                Ok(stop)
            }
        }
    }

    /// Where a plain scalar inside a flow collection ends: at a flow indicator or a `: `.
    /// Any other `:`, a comment, or the line's end (a flow over several lines) bails.
    fn plain_flow_end(&self, p: usize, end: usize) -> Res<usize> {
        let mut i = p;
        while i < end {
            match self.bytes[i] {
                b',' | b'[' | b']' | b'{' | b'}' => return Ok(i),
                b':' => {
                    return if i + 1 < end && self.bytes[i + 1] == b' ' {
                        Ok(i)
                    } else {
                        Err(bail())
                    };
                }
                b'#' if self.bytes[i - 1] == b' ' => return Err(bail()),
                _ => i += 1,
            }
        }
        Err(bail())
    }

    /// A literal (`|`) or folded (`>`) block scalar whose header starts at `p` on `line`, in
    /// a collection indented by `parent`. Mirrors libyaml's `yaml_parser_scan_block_scalar`
    /// for auto-detected indentation; explicit indentation indicators bail.
    fn block_scalar(&mut self, line: Line, p: usize, parent: usize) -> Res<Option<Line>> {
        let literal = self.bytes[p] == b'|';
        let mut h = p + 1;
        // -1 strips the final line break, 0 keeps one, 1 keeps them all.
        let chomping: i8 = match self.byte(h).filter(|_| h < line.end) {
            Some(b'-') => {
                h += 1;
                -1
            }
            Some(b'+') => {
                h += 1;
                1
            }
            _ => 0,
        };
        self.rest_is_comment(h, line.end)?;

        let len = self.bytes.len();
        let mut string = String::new();
        let mut trailing_breaks = String::new();
        // The leading empty lines, and the indentation they and the first content line set.
        let mut max_indent = 0;
        let mut at = line.next;
        let first = loop {
            if at >= len {
                return Err(bail());
            }
            let l = self.line_at(at);
            max_indent = max_indent.max(l.indent());
            if l.content < l.end {
                break l;
            }
            if l.next == l.end {
                // A last line of spaces with no line break: the stream ends, empty.
                return Err(bail());
            }
            trailing_breaks.push('\n');
            at = l.next;
        };
        let indent = max_indent.max(parent + 1);
        if first.indent() < indent {
            // An empty scalar, or an error: serde_yaml_ng decides.
            return Err(bail());
        }

        let mut leading_break = "";
        let mut leading_blank = false;
        let mut current = Some(first);
        let mut resume = len;
        while let Some(l) = current {
            let body = &self.text[l.start + indent..l.end];
            let trailing_blank = body.starts_with(' ');
            if !literal && leading_break == "\n" && !leading_blank && !trailing_blank {
                if trailing_breaks.is_empty() {
                    string.push(' ');
                }
            } else {
                string.push_str(leading_break);
            }
            leading_break = "";
            string.push_str(&trailing_breaks);
            trailing_breaks.clear();
            leading_blank = trailing_blank;
            string.push_str(body);
            if l.next == l.end {
                // The stream ends without a line break.
                break;
            }
            leading_break = "\n";
            // The empty lines that follow, up to the next content line or the end.
            current = None;
            let mut at = l.next;
            while at < len {
                let n = self.line_at(at);
                let spaces = n.indent();
                if n.content == n.end && spaces <= indent {
                    if n.next == n.end {
                        // A last line of spaces with no line break adds nothing.
                        at = len;
                        break;
                    }
                    trailing_breaks.push('\n');
                    at = n.next;
                    continue;
                }
                if spaces >= indent {
                    // Spaces past the indentation are content, even on an otherwise blank line.
                    current = Some(n);
                } else {
                    resume = at;
                }
                break;
            }
            if current.is_none() && at >= len {
                resume = len;
            }
        }
        if chomping != -1 {
            string.push_str(leading_break);
        }
        if chomping == 1 {
            string.push_str(&trailing_breaks);
        }
        write_string(&mut self.out, &string);
        self.next_content(resume)
    }
}

fn trim_start_spaces(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|&&c| c == b' ').count();
    &b[n..]
}

fn trim_end_spaces(s: &str) -> &str {
    s.trim_end_matches(' ')
}

/// What a plain scalar resolves to, as serde_yaml_ng's `visit_untagged_scalar` decides it
/// and serde_json's `Value` visitor stores it. Spellings whose value this does not
/// reproduce (hexadecimal, octal and binary integers, a leading `+`, `.inf` and `.nan`,
/// integers past 64 bits) bail.
fn resolve(s: &str) -> Res<Plain<'_>> {
    let Some(&first) = s.as_bytes().first() else {
        return Ok(Plain::Null);
    };
    match s {
        "~" | "null" | "Null" | "NULL" => return Ok(Plain::Null),
        "true" | "True" | "TRUE" => return Ok(Plain::Bool(true)),
        "false" | "False" | "FALSE" => return Ok(Plain::Bool(false)),
        _ => {}
    }
    // No integer or float spelling starts otherwise: Rust's float parser reads words only
    // as `inf`, `infinity` and `nan`, which serde_yaml_ng refuses as not finite.
    if !(first.is_ascii_digit() || first == b'-' || first == b'.' || first == b'+') {
        return Ok(Plain::Str(s));
    }
    if first == b'+' {
        return Err(bail());
    }
    let unsigned = s.strip_prefix('-').unwrap_or(s);
    if unsigned.starts_with(['+', '-']) {
        // Integer and float parsers take one sign at most: `--flag` is a string.
        return Ok(Plain::Str(s));
    }
    if unsigned.starts_with("0x")
        || unsigned.starts_with("0o")
        || unsigned.starts_with("0b")
        || matches!(
            unsigned,
            ".inf" | ".Inf" | ".INF" | ".nan" | ".NaN" | ".NAN"
        )
    {
        return Err(bail());
    }
    if !unsigned.is_empty() && unsigned.bytes().all(|b| b.is_ascii_digit()) {
        // YAML 1.2: leading zeros make a string (serde_yaml_ng's `digits_but_not_number`).
        if unsigned.len() > 1 && unsigned.starts_with('0') {
            return Ok(Plain::Str(s));
        }
        return if first == b'-' {
            s.parse::<i64>()
                .map(|n| Plain::Number(n.into()))
                .map_err(|_| bail())
        } else {
            s.parse::<u64>()
                .map(|n| Plain::Number(n.into()))
                .map_err(|_| bail())
        };
    }
    // Not an integer, so serde_yaml_ng tries a float, and keeps the text when it is not one
    // or is not finite.
    Ok(match s.parse::<f64>() {
        Ok(f) if f.is_finite() => Number::from_f64(f).map_or(Plain::Null, Plain::Number),
        _ => Plain::Str(s),
    })
}

/// A plain scalar's value.
enum Plain<'s> {
    Null,
    Bool(bool),
    Number(Number),
    Str(&'s str),
}

/// Writes the JSON of a plain scalar.
fn write_plain(out: &mut String, s: &str) -> Res<()> {
    match resolve(s)? {
        Plain::Null => out.push_str("null"),
        Plain::Bool(true) => out.push_str("true"),
        Plain::Bool(false) => out.push_str("false"),
        // `Number` displays itself as serde_json writes it (itoa and ryu).
        Plain::Number(n) => {
            use std::fmt::Write as _;
            // Writing to a String cannot fail.
            let _ = write!(out, "{n}");
        }
        Plain::Str(s) => write_string(out, s),
    }
    Ok(())
}

/// Writes `s` as a JSON string, escaped as serde_json escapes it.
fn write_string(out: &mut String, s: &str) {
    // Writing to a String cannot fail.
    let _ = crate::json_view::write_json_str(out, s);
}
