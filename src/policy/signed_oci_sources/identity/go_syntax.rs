//! Go's regular expression syntax (`regexp/syntax` with the `Perl` flags `regexp.Compile`
//! uses), read into a small tree that lowers to regex-syntax's HIR.
//!
//! cosign compiles `matchOIDCIdentity` patterns with Go's `regexp`, whose syntax differs from
//! the Rust regex crate's in ways that change what a pattern accepts: `\d \w \s \b` are ASCII
//! in Go and Unicode in Rust; `[[a]]` is a class followed by `]` in Go and a nested class in
//! Rust, `[a&&b]` is three characters in Go and an intersection in Rust; `a{,3}` and a lone
//! `{` are literal text in Go; `\Q...\E` and octal escapes exist only in Go; `(?x)`, `(?u)`
//! and `(?R)` exist only in Rust; Go refuses `a**` and repeat counts over 1000. Reading the
//! pattern with Rust's parser would judge a different language from the one cosign matches,
//! so this module follows Go's parser (parse.go) rule for rule; the differential test in
//! `tests/go_regexp.rs` holds it to Go itself.
//!
//! The Unicode tables are regex-syntax's (Unicode 16.0.0); Go 1.27 has 17.0.0. A script Go
//! knows and regex-syntax does not (new in 17.0.0) is read as every non-ASCII character: a
//! larger language, so never a more lenient verdict.

use std::ops::Range;

use regex_syntax::hir::{
    Capture, Class, ClassUnicode, ClassUnicodeRange, Hir, HirKind, Look, Repetition,
};

use super::go_unicode_names::{CATEGORIES, CATEGORY_ALIASES, SCRIPTS};

/// Go's largest repeat count (`{1001}` is an error).
const MAX_REPEAT: u32 = 1000;
/// Groups nested deeper than this are not analysed (Go itself allows about 1000). The bound
/// keeps the recursive lowering and regex-automata's compiler far from the stack's end.
pub const MAX_NESTING: usize = 100;

/// Why Go's `regexp.Compile` refuses a pattern: Go's own error text and the part of the
/// pattern it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoError {
    pub code: &'static str,
    pub expr: String,
}

impl std::fmt::Display for GoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: `{}`", self.code, self.expr)
    }
}

/// What reading a pattern can end in besides a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Go refuses the pattern: cosign cannot compile it.
    Go(GoError),
    /// Nested deeper than [`MAX_NESTING`]: not analysed.
    TooDeep,
}

const ERR_INVALID_CHAR_RANGE: &str = "invalid character class range";
const ERR_INVALID_ESCAPE: &str = "invalid escape sequence";
const ERR_INVALID_NAMED_CAPTURE: &str = "invalid named capture";
const ERR_INVALID_PERL_OP: &str = "invalid or unsupported Perl syntax";
const ERR_INVALID_REPEAT_OP: &str = "invalid nested repetition operator";
const ERR_INVALID_REPEAT_SIZE: &str = "invalid repeat count";
const ERR_MISSING_BRACKET: &str = "missing closing ]";
const ERR_MISSING_PAREN: &str = "missing closing )";
const ERR_MISSING_REPEAT_ARGUMENT: &str = "missing argument to repetition operator";
const ERR_TRAILING_BACKSLASH: &str = "trailing backslash at end of expression";
const ERR_UNEXPECTED_PAREN: &str = "unexpected )";

/// A parsed pattern. Classes hold their final set of characters (case folding and negation
/// applied, as Go's parser does); `span` is where a node was written, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Empty,
    Literal(char),
    Class {
        class: ClassUnicode,
        span: Range<usize>,
    },
    Look(Look),
    Repeat {
        sub: Box<Node>,
        min: u32,
        max: Option<u32>,
        /// Written with braces (`{n,m}`): Go limits nested counted repeats.
        counted: bool,
        span: Range<usize>,
    },
    Concat(Vec<Node>),
    Alternate {
        alternatives: Vec<Node>,
        span: Range<usize>,
    },
}

#[derive(Debug, Clone, Copy)]
struct Flags {
    fold: bool,
    dot_nl: bool,
    one_line: bool,
}

/// Reads a pattern as Go's `regexp.Compile` does.
pub fn parse(pattern: &str) -> Result<Node, ParseError> {
    let mut parser = Parser {
        src: pattern,
        pos: 0,
        flags: Flags {
            fold: false,
            dot_nl: false,
            one_line: true,
        },
        depth: 0,
    };
    let node = parser.alternation(0)?;
    match parser.peek() {
        None => Ok(node),
        // Only a `)` stops the top-level alternation early.
        Some(_) => Err(go(ERR_UNEXPECTED_PAREN, pattern)),
    }
}

fn go(code: &'static str, expr: &str) -> ParseError {
    ParseError::Go(GoError {
        code,
        expr: expr.to_string(),
    })
}

struct Parser<'p> {
    src: &'p str,
    pos: usize,
    flags: Flags,
    depth: usize,
}

impl<'p> Parser<'p> {
    fn rest(&self) -> &'p str {
        &self.src[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    /// `concat ('|' concat)*`, up to the `)` that closes the group opened at `open` (or the
    /// end of the pattern at depth 0).
    fn alternation(&mut self, open: usize) -> Result<Node, ParseError> {
        let mut alternatives = vec![self.concat()?];
        while self.peek() == Some('|') {
            self.pos += 1;
            alternatives.push(self.concat()?);
        }
        if alternatives.len() == 1 {
            return Ok(alternatives.pop().unwrap_or(Node::Empty));
        }
        Ok(Node::Alternate {
            alternatives,
            span: open..self.pos,
        })
    }

    fn concat(&mut self) -> Result<Node, ParseError> {
        let mut items: Vec<Node> = Vec::new();
        // The text of the repetition operator just read, if the last token was one.
        let mut last_repeat: Option<usize> = None;
        // Where each item started, for the span of a repetition applied to it.
        let mut starts: Vec<usize> = Vec::new();
        loop {
            let start = self.pos;
            let Some(c) = self.peek() else { break };
            let mut repeat_at = None;
            match c {
                '|' | ')' => break,
                '(' => {
                    if self.rest().starts_with("(?") {
                        // Flags alone push nothing.
                        if let Some(node) = self.perl_flags()? {
                            items.push(node);
                            starts.push(start);
                        }
                    } else {
                        self.pos += 1;
                        let node = self.group(start)?;
                        items.push(node);
                        starts.push(start);
                    }
                }
                '^' => {
                    self.pos += 1;
                    items.push(Node::Look(if self.flags.one_line {
                        Look::Start
                    } else {
                        Look::StartLF
                    }));
                    starts.push(start);
                }
                '$' => {
                    self.pos += 1;
                    items.push(Node::Look(if self.flags.one_line {
                        Look::End
                    } else {
                        Look::EndLF
                    }));
                    starts.push(start);
                }
                '.' => {
                    self.pos += 1;
                    let class = if self.flags.dot_nl {
                        any_char()
                    } else {
                        let mut class = any_char();
                        class.difference(&single('\n'));
                        class
                    };
                    items.push(Node::Class {
                        class,
                        span: start..self.pos,
                    });
                    starts.push(start);
                }
                '[' => {
                    let node = self.class()?;
                    items.push(node);
                    starts.push(start);
                }
                '*' | '+' | '?' => {
                    self.pos += 1;
                    let (min, max) = match c {
                        '*' => (0, None),
                        '+' => (1, None),
                        _ => (0, Some(1)),
                    };
                    self.repeat(&mut items, &starts, last_repeat, start, min, max, false)?;
                    repeat_at = Some(start);
                }
                '{' => match parse_repeat(self.rest()) {
                    None => {
                        // Not a repeat: `{` is a literal.
                        self.pos += 1;
                        self.literal(&mut items, '{');
                        starts.push(start);
                    }
                    Some((min, max, len)) => {
                        self.pos += len;
                        let valid = min.is_some_and(|min| {
                            min <= MAX_REPEAT
                                && match max {
                                    Bound::Unbounded => true,
                                    Bound::At(max) => max <= MAX_REPEAT && min <= max,
                                    Bound::TooBig => false,
                                }
                        });
                        if !valid {
                            return Err(go(ERR_INVALID_REPEAT_SIZE, &self.src[start..self.pos]));
                        }
                        let min = min.unwrap_or(0);
                        let max = match max {
                            Bound::At(max) => Some(max),
                            _ => None,
                        };
                        self.repeat(&mut items, &starts, last_repeat, start, min, max, true)?;
                        repeat_at = Some(start);
                    }
                },
                '\\' => self.escape(&mut items, &mut starts)?,
                _ => {
                    self.pos += c.len_utf8();
                    self.literal(&mut items, c);
                    starts.push(start);
                }
            }
            last_repeat = repeat_at;
        }
        Ok(match items.len() {
            0 => Node::Empty,
            1 => items.pop().unwrap_or(Node::Empty),
            _ => Node::Concat(items),
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn repeat(
        &mut self,
        items: &mut [Node],
        starts: &[usize],
        last_repeat: Option<usize>,
        op_start: usize,
        min: u32,
        max: Option<u32>,
        counted: bool,
    ) -> Result<(), ParseError> {
        // A `?` after the operator makes it non-greedy, which changes no language.
        if self.peek() == Some('?') {
            self.pos += 1;
        }
        if let Some(previous) = last_repeat {
            return Err(go(ERR_INVALID_REPEAT_OP, &self.src[previous..self.pos]));
        }
        let (Some(last), Some(&atom_start)) = (items.last_mut(), starts.last()) else {
            return Err(go(
                ERR_MISSING_REPEAT_ARGUMENT,
                &self.src[op_start..self.pos],
            ));
        };
        let sub = std::mem::replace(last, Node::Empty);
        let node = Node::Repeat {
            sub: Box::new(sub),
            min,
            max,
            counted,
            span: atom_start..self.pos,
        };
        if counted
            && (min >= 2 || max.is_some_and(|m| m >= 2))
            && !repeat_is_valid(&node, MAX_REPEAT)
        {
            return Err(go(ERR_INVALID_REPEAT_SIZE, &self.src[op_start..self.pos]));
        }
        *last = node;
        Ok(())
    }

    fn literal(&self, items: &mut Vec<Node>, c: char) {
        items.push(if self.flags.fold {
            let mut class = single(c);
            class.case_fold_simple();
            if class.ranges().len() == 1 && class.ranges()[0].start() == class.ranges()[0].end() {
                Node::Literal(c)
            } else {
                Node::Class {
                    class,
                    span: self.pos - c.len_utf8()..self.pos,
                }
            }
        } else {
            Node::Literal(c)
        });
    }

    /// A capturing group; the `(` is read.
    fn group(&mut self, open: usize) -> Result<Node, ParseError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(ParseError::TooDeep);
        }
        let saved = self.flags;
        let node = self.alternation(open)?;
        if self.peek() != Some(')') {
            return Err(go(ERR_MISSING_PAREN, self.src));
        }
        self.pos += 1;
        self.flags = saved;
        self.depth -= 1;
        // An alternation's span takes in its group's `)`, so that a message shows the group
        // as written.
        Ok(match node {
            Node::Alternate { alternatives, span } => Node::Alternate {
                alternatives,
                span: span.start..self.pos,
            },
            node => node,
        })
    }

    /// `(?...`: a named capture, a non-capturing group with or without flags (returned), or
    /// flags for the rest of the current group (`None`).
    fn perl_flags(&mut self) -> Result<Option<Node>, ParseError> {
        let open = self.pos;
        let t = self.rest();
        let starts_with_p = t.len() > 4 && t.as_bytes()[2] == b'P' && t.as_bytes()[3] == b'<';
        let starts_with_name = t.len() > 3 && t.as_bytes()[2] == b'<';
        if starts_with_p || starts_with_name {
            let name_start = if starts_with_p { 4 } else { 3 };
            let Some(end) = t.find('>') else {
                return Err(go(ERR_INVALID_NAMED_CAPTURE, t));
            };
            let name = &t[name_start..end];
            if name.is_empty() || !name.bytes().all(|b| b == b'_' || b.is_ascii_alphanumeric()) {
                return Err(go(ERR_INVALID_NAMED_CAPTURE, &t[..end + 1]));
            }
            self.pos += end + 1;
            return self.group(open).map(Some);
        }
        // Flags, then `)` (flags for the rest of this group) or `:` (a group).
        let mut flags = self.flags;
        let mut negated = false;
        let mut saw_flag = false;
        self.pos += 2;
        while let Some(c) = self.bump() {
            let on = !negated;
            match c {
                'i' => {
                    flags.fold = on;
                    saw_flag = true;
                }
                'm' => {
                    flags.one_line = !on;
                    saw_flag = true;
                }
                's' => {
                    flags.dot_nl = on;
                    saw_flag = true;
                }
                'U' => saw_flag = true,
                '-' => {
                    if negated {
                        break;
                    }
                    negated = true;
                    saw_flag = false;
                }
                ':' | ')' => {
                    if negated && !saw_flag {
                        break;
                    }
                    if c == ')' {
                        self.flags = flags;
                        return Ok(None);
                    }
                    // `(?flags:...)`: the flags hold inside the group only.
                    let saved = self.flags;
                    self.flags = flags;
                    let node = self.group(open);
                    self.flags = saved;
                    return node.map(Some);
                }
                _ => break,
            }
        }
        Err(go(ERR_INVALID_PERL_OP, &self.src[open..self.pos]))
    }

    /// A backslash outside a class.
    fn escape(&mut self, items: &mut Vec<Node>, starts: &mut Vec<usize>) -> Result<(), ParseError> {
        let start = self.pos;
        let t = self.rest();
        if let Some(c) = t[1..].chars().next() {
            let look = match c {
                'A' => Some(Look::Start),
                'b' => Some(Look::WordAscii),
                'B' => Some(Look::WordAsciiNegate),
                'z' => Some(Look::End),
                _ => None,
            };
            if let Some(look) = look {
                self.pos += 2;
                items.push(Node::Look(look));
                starts.push(start);
                return Ok(());
            }
            if c == 'C' {
                return Err(go(ERR_INVALID_ESCAPE, &t[..2]));
            }
            if c == 'Q' {
                // `\Q...\E`: literal text up to `\E` or the end.
                let quoted = &t[2..];
                let (literal, consumed) = match quoted.find("\\E") {
                    Some(end) => (&quoted[..end], 2 + end + 2),
                    None => (quoted, t.len()),
                };
                let mut at = self.pos + 2;
                for c in literal.chars() {
                    let here = at;
                    at += c.len_utf8();
                    self.pos = at;
                    self.literal(items, c);
                    starts.push(here);
                }
                self.pos = start + consumed;
                return Ok(());
            }
            if c == 'p' || c == 'P' {
                let (class, len) = self.unicode_class(t)?;
                self.pos += len;
                items.push(Node::Class {
                    class,
                    span: start..self.pos,
                });
                starts.push(start);
                return Ok(());
            }
            if let Some(class) = self.perl_class(c) {
                self.pos += 2;
                items.push(Node::Class {
                    class,
                    span: start..self.pos,
                });
                starts.push(start);
                return Ok(());
            }
        }
        let (c, len) = parse_escape(t)?;
        self.pos += len;
        self.literal(items, c);
        starts.push(start);
        Ok(())
    }

    /// `\d \D \s \S \w \W`, ASCII as in Go.
    fn perl_class(&self, c: char) -> Option<ClassUnicode> {
        let (negated, ranges): (bool, &[(char, char)]) = match c {
            'd' => (false, DIGIT),
            'D' => (true, DIGIT),
            's' => (false, PERL_SPACE),
            'S' => (true, PERL_SPACE),
            'w' => (false, WORD),
            'W' => (true, WORD),
            _ => return None,
        };
        Some(self.group_class(ranges, negated))
    }

    /// A Perl or POSIX group: folded first when case-insensitive, then negated (Go's
    /// `appendGroup`).
    fn group_class(&self, ranges: &[(char, char)], negated: bool) -> ClassUnicode {
        let mut class =
            ClassUnicode::new(ranges.iter().map(|&(a, b)| ClassUnicodeRange::new(a, b)));
        if self.flags.fold {
            class.case_fold_simple();
        }
        if negated {
            class.negate();
        }
        class
    }

    /// `\pN`, `\p{Name}`, `\p{^Name}`, `\PN`...: the class and the length read.
    fn unicode_class(&self, t: &str) -> Result<(ClassUnicode, usize), ParseError> {
        let mut negated = t.as_bytes()[1] == b'P';
        let after = &t[2..];
        let (name, len) = match after.chars().next() {
            Some('{') => {
                let Some(end) = t.find('}') else {
                    return Err(go(ERR_INVALID_CHAR_RANGE, t));
                };
                (&t[3..end], end + 1)
            }
            Some(c) => (&after[..c.len_utf8()], 2 + c.len_utf8()),
            None => ("", 2),
        };
        let seq = &t[..len];
        let mut name = name;
        if let Some(rest) = name.strip_prefix('^') {
            negated = !negated;
            name = rest;
        }
        let Some((mut class, inverted)) = unicode_table(name) else {
            return Err(go(ERR_INVALID_CHAR_RANGE, seq));
        };
        if inverted {
            negated = !negated;
        }
        if self.flags.fold {
            class.case_fold_simple();
        }
        if negated {
            class.negate();
        }
        Ok((class, len))
    }

    /// A bracketed class, as Go's `parseClass` reads it.
    fn class(&mut self) -> Result<Node, ParseError> {
        let start = self.pos;
        let whole = self.rest();
        let mut t = &whole[1..];
        let mut negated = false;
        if let Some(rest) = t.strip_prefix('^') {
            negated = true;
            t = rest;
        }
        let mut class = ClassUnicode::empty();
        let mut first = true;
        while t.is_empty() || !t.starts_with(']') || first {
            first = false;
            // POSIX `[:alpha:]` and friends.
            if t.len() > 2
                && t.starts_with("[:")
                && let Some(i) = t[2..].find(":]")
            {
                let name = &t[..i + 4];
                let Some((ranges, negated_group)) = posix_group(name) else {
                    return Err(go(ERR_INVALID_CHAR_RANGE, name));
                };
                class.union(&self.group_class(ranges, negated_group));
                t = &t[i + 4..];
                continue;
            }
            if t.len() >= 2 && t.starts_with('\\') {
                let c = t[1..].chars().next().unwrap_or('\\');
                if c == 'p' || c == 'P' {
                    let (unicode, len) = self.unicode_class(t)?;
                    class.union(&unicode);
                    t = &t[len..];
                    continue;
                }
                if let Some(perl) = self.perl_class(c) {
                    class.union(&perl);
                    t = &t[2..];
                    continue;
                }
            }
            let (lo, rest) = class_char(t, whole)?;
            let range_text = t;
            t = rest;
            let mut hi = lo;
            if t.len() >= 2 && t.starts_with('-') && !t[1..].starts_with(']') {
                let (h, rest) = class_char(&t[1..], whole)?;
                hi = h;
                t = rest;
                if hi < lo {
                    let used = range_text.len() - t.len();
                    return Err(go(ERR_INVALID_CHAR_RANGE, &range_text[..used]));
                }
            }
            let mut range = ClassUnicode::new([ClassUnicodeRange::new(lo, hi)]);
            if self.flags.fold {
                range.case_fold_simple();
            }
            class.union(&range);
        }
        t = &t[1..]; // the closing `]`
        if negated {
            class.negate();
        }
        self.pos = start + (whole.len() - t.len());
        Ok(Node::Class {
            class,
            span: start..self.pos,
        })
    }
}

/// One character of a class (`]` included when first), or an escape.
fn class_char<'t>(t: &'t str, whole: &str) -> Result<(char, &'t str), ParseError> {
    let Some(c) = t.chars().next() else {
        return Err(go(ERR_MISSING_BRACKET, whole));
    };
    if c == '\\' {
        let (c, len) = parse_escape(t)?;
        return Ok((c, &t[len..]));
    }
    Ok((c, &t[c.len_utf8()..]))
}

/// A single-character escape (Go's `parseEscape`): the character and the length read.
fn parse_escape(s: &str) -> Result<(char, usize), ParseError> {
    let t = &s[1..];
    let Some(c) = t.chars().next() else {
        return Err(go(ERR_TRAILING_BACKSLASH, ""));
    };
    let after = &t[c.len_utf8()..];
    let invalid = |len: usize| go(ERR_INVALID_ESCAPE, &s[..len.min(s.len())]);
    match c {
        '1'..='7' if !after.starts_with(|d: char| ('0'..='7').contains(&d)) => {
            // A single non-zero digit would be a backreference, which Go does not have.
            Err(invalid(1 + c.len_utf8()))
        }
        '0'..='7' => {
            let mut value = c as u32 - '0' as u32;
            let mut len = 2;
            for d in after.bytes().take(2) {
                if !(b'0'..=b'7').contains(&d) {
                    break;
                }
                value = value * 8 + u32::from(d - b'0');
                len += 1;
            }
            Ok((char::from_u32(value).unwrap_or('\u{FFFD}'), len))
        }
        'x' => {
            let Some(first) = after.chars().next() else {
                return Err(invalid(2));
            };
            if first == '{' {
                // Any number of hex digits in braces, at least one, up to U+10FFFF.
                let mut value: u32 = 0;
                let mut len = 3;
                for (digits, c) in after[1..].chars().enumerate() {
                    len += c.len_utf8();
                    if c == '}' {
                        if digits == 0 {
                            return Err(invalid(len));
                        }
                        // Go accepts surrogate code points here; no string contains one.
                        return Ok((char::from_u32(value).unwrap_or('\u{FFFD}'), len));
                    }
                    let Some(v) = c.to_digit(16) else {
                        return Err(invalid(len));
                    };
                    value = value * 16 + v;
                    if value > 0x10FFFF {
                        return Err(invalid(len));
                    }
                }
                return Err(invalid(len));
            }
            // Two hex digits; Go reads both before judging them.
            let mut chars = after.chars();
            let x = chars.next();
            let y = chars.next();
            match (
                x.and_then(|c| c.to_digit(16)),
                y.and_then(|c| c.to_digit(16)),
            ) {
                (Some(x), Some(y)) => Ok((char::from_u32(x * 16 + y).unwrap_or('\0'), 4)),
                _ => Err(invalid(
                    2 + x.map_or(0, char::len_utf8) + y.map_or(0, char::len_utf8),
                )),
            }
        }
        'a' => Ok(('\u{7}', 2)),
        'f' => Ok(('\u{c}', 2)),
        'n' => Ok(('\n', 2)),
        'r' => Ok(('\r', 2)),
        't' => Ok(('\t', 2)),
        'v' => Ok(('\u{b}', 2)),
        c if c.is_ascii() && !c.is_ascii_alphanumeric() => Ok((c, 2)),
        c => Err(invalid(1 + c.len_utf8())),
    }
}

#[derive(Debug, Clone, Copy)]
enum Bound {
    At(u32),
    Unbounded,
    TooBig,
}

/// `{n}`, `{n,}` or `{n,m}` at the start of `s` (Go's `parseRepeat`): min (`None` when too
/// big), max, and the length; `None` when `s` does not start with one (then `{` is literal).
fn parse_repeat(s: &str) -> Option<(Option<u32>, Bound, usize)> {
    let b = s.as_bytes();
    let mut i = 1;
    let (min, len) = parse_int(&b[i..])?;
    i += len;
    let max = match b.get(i)? {
        b',' => {
            i += 1;
            match b.get(i)? {
                b'}' => Bound::Unbounded,
                _ => {
                    let (max, len) = parse_int(&b[i..])?;
                    i += len;
                    match max {
                        Some(max) => Bound::At(max),
                        None => Bound::TooBig,
                    }
                }
            }
        }
        _ => match min {
            Some(min) => Bound::At(min),
            None => Bound::TooBig,
        },
    };
    if b.get(i) != Some(&b'}') {
        return None;
    }
    Some((min, max, i + 1))
}

/// Decimal digits without a leading zero; the value (`None` past 10^8) and the length.
fn parse_int(b: &[u8]) -> Option<(Option<u32>, usize)> {
    let len = b.iter().take_while(|d| d.is_ascii_digit()).count();
    if len == 0 || (len >= 2 && b[0] == b'0') {
        return None;
    }
    let mut n: u32 = 0;
    for &d in &b[..len] {
        if n >= 100_000_000 {
            return Some((None, len));
        }
        n = n * 10 + u32::from(d - b'0');
    }
    Some((Some(n), len))
}

/// Go's `repeatIsValid`: nested counted repeats may not multiply past `n` copies.
fn repeat_is_valid(node: &Node, mut n: u32) -> bool {
    if let Node::Repeat {
        min,
        max,
        counted: true,
        ..
    } = node
    {
        let m = match max {
            Some(0) => return true,
            Some(max) => *max,
            None => *min,
        };
        if m > n {
            return false;
        }
        n = n.checked_div(m).unwrap_or(n);
    }
    match node {
        Node::Repeat { sub, .. } => repeat_is_valid(sub, n),
        Node::Concat(items) => items.iter().all(|i| repeat_is_valid(i, n)),
        Node::Alternate { alternatives, .. } => alternatives.iter().all(|a| repeat_is_valid(a, n)),
        _ => true,
    }
}

const DIGIT: &[(char, char)] = &[('0', '9')];
/// Go's `\s`: no vertical tab.
const PERL_SPACE: &[(char, char)] = &[('\t', '\n'), ('\u{c}', '\r'), (' ', ' ')];
const WORD: &[(char, char)] = &[('0', '9'), ('A', 'Z'), ('_', '_'), ('a', 'z')];

/// Go's POSIX groups (`perl_groups.go`).
fn posix_group(name: &str) -> Option<(&'static [(char, char)], bool)> {
    let (negated, bare) = match name.strip_prefix("[:^") {
        Some(rest) => (true, rest),
        None => (false, name.strip_prefix("[:")?),
    };
    let ranges: &'static [(char, char)] = match bare.strip_suffix(":]")? {
        "alnum" => &[('0', '9'), ('A', 'Z'), ('a', 'z')],
        "alpha" => &[('A', 'Z'), ('a', 'z')],
        "ascii" => &[('\0', '\u{7f}')],
        "blank" => &[('\t', '\t'), (' ', ' ')],
        "cntrl" => &[('\0', '\u{1f}'), ('\u{7f}', '\u{7f}')],
        "digit" => DIGIT,
        "graph" => &[('!', '~')],
        "lower" => &[('a', 'z')],
        "print" => &[(' ', '~')],
        "punct" => &[('!', '/'), (':', '@'), ('[', '`'), ('{', '~')],
        "space" => &[('\t', '\r'), (' ', ' ')],
        "upper" => &[('A', 'Z')],
        "word" => WORD,
        "xdigit" => &[('0', '9'), ('A', 'F'), ('a', 'f')],
        _ => return None,
    };
    Some((ranges, negated))
}

/// Go's `canonicalName`: the first letter upper case, the rest lower case, without `_`, `-`
/// and spaces.
fn canonical_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if matches!(c, '_' | '-' | ' ') {
            continue;
        }
        if out.is_empty() {
            out.push(c.to_ascii_uppercase());
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// The class a `\p{...}` name stands for in Go, and whether Go inverts it (`Assigned`).
fn unicode_table(name: &str) -> Option<(ClassUnicode, bool)> {
    let canonical = canonical_name(name);
    match canonical.as_str() {
        "Any" => return Some((any_char(), false)),
        "Assigned" => return Some((regex_syntax_class("gc=Cn"), true)),
        "Ascii" => {
            return Some((
                ClassUnicode::new([ClassUnicodeRange::new('\0', '\u{7f}')]),
                false,
            ));
        }
        "Lc" => return Some((regex_syntax_class("gc=LC"), false)),
        _ => {}
    }
    if let Some(category) = CATEGORIES.iter().find(|c| canonical_name(c) == canonical) {
        return Some((regex_syntax_class(&format!("gc={category}")), false));
    }
    if let Some((_, category)) = CATEGORY_ALIASES
        .iter()
        .find(|(alias, _)| canonical_name(alias) == canonical)
    {
        return Some((regex_syntax_class(&format!("gc={category}")), false));
    }
    if let Some(script) = SCRIPTS.iter().find(|s| canonical_name(s) == canonical) {
        return Some((regex_syntax_class(&format!("sc={script}")), false));
    }
    None
}

/// A Unicode class from regex-syntax's tables; every non-ASCII character for a name it does
/// not know (a script new in Go's Unicode version): more, never fewer, characters.
fn regex_syntax_class(query: &str) -> ClassUnicode {
    let parsed = regex_syntax::ParserBuilder::new()
        .build()
        .parse(&format!("\\p{{{query}}}"));
    match parsed.as_ref().map(Hir::kind) {
        Ok(HirKind::Class(Class::Unicode(class))) => class.clone(),
        _ => ClassUnicode::new([ClassUnicodeRange::new('\u{80}', '\u{10FFFF}')]),
    }
}

fn any_char() -> ClassUnicode {
    ClassUnicode::new([ClassUnicodeRange::new('\0', '\u{10FFFF}')])
}

fn single(c: char) -> ClassUnicode {
    ClassUnicode::new([ClassUnicodeRange::new(c, c)])
}

/// How a tree becomes HIR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lowering {
    /// Map every string to its ASCII-lower-case image (`A-Z` to `a-z`, `ſ` to `s`, the
    /// Kelvin sign to `k`): the HIR then accepts the images of the pattern's strings, so
    /// that spellings differing only in letter case count once.
    pub fold: bool,
    /// Wrap classes, repetitions and alternations in capture groups, numbered from 1 in
    /// the order [`lower`] returns their spans, to tell which part of the pattern matched
    /// which text.
    pub captures: bool,
}

/// The HIR of a tree, and the span of each capture group added (group `i` at index `i-1`).
pub fn lower(node: &Node, how: Lowering) -> (Hir, Vec<Range<usize>>) {
    let mut spans = Vec::new();
    let hir = lower_node(node, how, &mut spans);
    (hir, spans)
}

fn lower_node(node: &Node, how: Lowering, spans: &mut Vec<Range<usize>>) -> Hir {
    match node {
        Node::Empty => Hir::empty(),
        Node::Literal(c) => {
            let c = if how.fold { fold_char(*c) } else { *c };
            let mut buf = [0u8; 4];
            Hir::literal(c.encode_utf8(&mut buf).as_bytes())
        }
        Node::Class { class, span } => {
            let class = if how.fold {
                fold_class(class)
            } else {
                class.clone()
            };
            captured(Hir::class(Class::Unicode(class)), span, how, spans)
        }
        Node::Look(look) => Hir::look(*look),
        Node::Repeat {
            sub,
            min,
            max,
            span,
            ..
        } => {
            let index = reserve(span, how, spans);
            let hir = Hir::repetition(Repetition {
                min: *min,
                max: *max,
                greedy: true,
                sub: Box::new(lower_node(sub, how, spans)),
            });
            wrap(hir, index)
        }
        Node::Concat(items) => {
            Hir::concat(items.iter().map(|i| lower_node(i, how, spans)).collect())
        }
        Node::Alternate { alternatives, span } => {
            let index = reserve(span, how, spans);
            let hir = Hir::alternation(
                alternatives
                    .iter()
                    .map(|a| lower_node(a, how, spans))
                    .collect(),
            );
            wrap(hir, index)
        }
    }
}

fn reserve(span: &Range<usize>, how: Lowering, spans: &mut Vec<Range<usize>>) -> Option<u32> {
    if !how.captures {
        return None;
    }
    spans.push(span.clone());
    u32::try_from(spans.len()).ok()
}

fn wrap(hir: Hir, index: Option<u32>) -> Hir {
    match index {
        Some(index) => Hir::capture(Capture {
            index,
            name: None,
            sub: Box::new(hir),
        }),
        None => hir,
    }
}

fn captured(hir: Hir, span: &Range<usize>, how: Lowering, spans: &mut Vec<Range<usize>>) -> Hir {
    let index = reserve(span, how, spans);
    wrap(hir, index)
}

/// The lower-case image of a character, for the letters whose case fold orbit has an ASCII
/// member.
pub fn fold_char(c: char) -> char {
    match c {
        'A'..='Z' => c.to_ascii_lowercase(),
        '\u{17F}' => 's',
        '\u{212A}' => 'k',
        _ => c,
    }
}

/// The image of a class under [`fold_char`].
pub fn fold_class(class: &ClassUnicode) -> ClassUnicode {
    let folding = ClassUnicode::new([
        ClassUnicodeRange::new('A', 'Z'),
        ClassUnicodeRange::new('\u{17F}', '\u{17F}'),
        ClassUnicodeRange::new('\u{212A}', '\u{212A}'),
    ]);
    let mut present = class.clone();
    present.intersect(&folding);
    if present.ranges().is_empty() {
        return class.clone();
    }
    let mut out = class.clone();
    out.difference(&folding);
    let images = present
        .iter()
        .flat_map(|r| r.start()..=r.end())
        .map(fold_char)
        .map(|c| ClassUnicodeRange::new(c, c));
    out.union(&ClassUnicode::new(images));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(pattern: &str) -> &'static str {
        match parse(pattern) {
            Err(ParseError::Go(e)) => e.code,
            other => panic!("{pattern}: expected a Go error, got {other:?}"),
        }
    }

    fn ok(pattern: &str) -> Node {
        parse(pattern).unwrap_or_else(|e| panic!("{pattern}: {e:?}"))
    }

    #[test]
    fn go_refuses_what_go_refuses() {
        assert_eq!(err("("), ERR_MISSING_PAREN);
        assert_eq!(err(")"), ERR_UNEXPECTED_PAREN);
        assert_eq!(err("a)"), ERR_UNEXPECTED_PAREN);
        assert_eq!(err("[a"), ERR_MISSING_BRACKET);
        assert_eq!(err("a**"), ERR_INVALID_REPEAT_OP);
        assert_eq!(err("a*??"), ERR_INVALID_REPEAT_OP);
        assert_eq!(err("a{2}{3}"), ERR_INVALID_REPEAT_OP);
        assert_eq!(err("*"), ERR_MISSING_REPEAT_ARGUMENT);
        assert_eq!(err("a|*"), ERR_MISSING_REPEAT_ARGUMENT);
        assert_eq!(err("(?i)*"), ERR_MISSING_REPEAT_ARGUMENT);
        assert_eq!(err("a{1001}"), ERR_INVALID_REPEAT_SIZE);
        assert_eq!(err("a{2,1}"), ERR_INVALID_REPEAT_SIZE);
        assert_eq!(err("(a{100}){100}"), ERR_INVALID_REPEAT_SIZE);
        assert_eq!(err("(?x)a"), ERR_INVALID_PERL_OP);
        assert_eq!(err("(?u)a"), ERR_INVALID_PERL_OP);
        assert_eq!(err("(?-)a"), ERR_INVALID_PERL_OP);
        assert_eq!(err("(?P=n)"), ERR_INVALID_PERL_OP);
        assert_eq!(err("(?P<a-b>x)"), ERR_INVALID_NAMED_CAPTURE);
        assert_eq!(err(r"\C"), ERR_INVALID_ESCAPE);
        assert_eq!(err(r"\1"), ERR_INVALID_ESCAPE);
        assert_eq!(err(r"\8"), ERR_INVALID_ESCAPE);
        assert_eq!(err(r"\Z"), ERR_INVALID_ESCAPE);
        assert_eq!(err(r"[\b]"), ERR_INVALID_ESCAPE);
        assert_eq!(err(r"\pX"), ERR_INVALID_CHAR_RANGE);
        assert_eq!(err(r"\p{Alphabetic}"), ERR_INVALID_CHAR_RANGE);
        assert_eq!(err("[[:foo:]]"), ERR_INVALID_CHAR_RANGE);
        assert_eq!(err("[z-a]"), ERR_INVALID_CHAR_RANGE);
        assert_eq!(err("a\\"), ERR_TRAILING_BACKSLASH);
    }

    #[test]
    fn go_accepts_what_rust_refuses() {
        for pattern in [
            "a{",
            "a{,3}",
            "x{2,",
            "{",
            "a{01}",
            r"\Qa.b",
            r"\Qa\E*",
            "^*",
            r"\b+",
            "()*",
            "(?)",
            "(?i-s:a)",
            r"\012",
            r"\0",
            "[[a]",
            "[a&&b]",
            "[a-]",
            "[]a]",
            "[^]a]",
            r"\x{10FFFF}",
            r"\_",
            "(?<n>a)(?P<n>b)",
            r"\p{Greek}",
            r"\p{^greek}",
            r"\p{letter}",
            r"\pL",
            "a*(?i)*",
        ] {
            ok(pattern);
        }
    }

    fn accepts(pattern: &str, text: &str) -> bool {
        let (hir, _) = lower(
            &ok(pattern),
            Lowering {
                fold: false,
                captures: false,
            },
        );
        let re = regex_automata::meta::Regex::builder()
            .build_from_hir(&hir)
            .expect("builds");
        re.is_match(text)
    }

    #[test]
    fn perl_classes_and_word_boundaries_are_ascii() {
        assert!(accepts(r"^\d$", "7"));
        assert!(!accepts(r"^\d$", "٧"));
        assert!(!accepts(r"^\w$", "é"));
        assert!(accepts(r"^\W$", "é"));
        assert!(!accepts(r"^\s$", "\u{b}"));
        assert!(accepts(r"a\b", "aé"));
        assert!(accepts(r"^[\d_]+$", "1_2"));
    }

    #[test]
    fn classes_read_as_go_reads_them() {
        assert!(accepts("^[[a]]$", "[]"));
        assert!(accepts("^[a&&b]$", "&"));
        assert!(accepts("^a{,3}$", "a{,3}"));
        assert!(!accepts("^a{,3}$", "aa"));
        assert!(accepts(r"^\Qa.b\E$", "a.b"));
        assert!(!accepts(r"^\Qa.b\E$", "axb"));
        assert!(accepts(r"^\101$", "A"));
        assert!(accepts("(?i)^k$", "\u{212A}"));
        assert!(accepts("(?i)^[^k]$", "x"));
        assert!(!accepts("(?i)^[^k]$", "K"));
        assert!(accepts("^(?i:a)b$", "Ab"));
        assert!(!accepts("^(?i:a)b$", "AB"));
        assert!(accepts("^a(?i)b|c$", "C"));
        assert!(accepts("(?m)^b$", "a\nb"));
        assert!(!accepts("^b$", "a\nb"));
    }

    #[test]
    fn folding_maps_every_case_spelling_to_one() {
        assert_eq!(fold_char('Q'), 'q');
        assert_eq!(fold_char('\u{212A}'), 'k');
        let class = ClassUnicode::new([ClassUnicodeRange::new('A', 'c')]);
        let folded = fold_class(&class);
        assert!(folded.iter().all(|r| !(r.start()..=r.end()).contains(&'B')));
        assert!(folded.iter().any(|r| (r.start()..=r.end()).contains(&'b')));
        assert!(folded.iter().any(|r| (r.start()..=r.end()).contains(&'[')));
    }
}
