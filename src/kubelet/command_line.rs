//! Whether a container passes a flag to the program it runs, reading its command line as the
//! kubelet and a shell make of it.
//!
//! The kubelet runs `command` + `args` after `$(VAR)` expansion ([`super::expansion`]). Each
//! entry is one argument: the flag counts when an entry starts with it (`--flag` or
//! `--flag=...`). When an entry holds a shell script, the flag counts when a word of the script
//! is the flag, after the shell's quote removal and expansion of `$NAME` / `${NAME...}` from the
//! container's environment and the script's own assignments and `for` loops. An entry is read
//! as a script when it follows a shell option that takes one (`sh -c`, `bash -lc`, `/bin/sh
//! -ec`, `node -e`), and, for a flag written out in full, whenever it looks like shell text (an
//! image whose entrypoint is `sh -c` passes `args[0]` as the script). `eval`, `sh -c` inside a
//! script and `$(...)` are read as scripts too, to a bounded depth.
//!
//! A flag may also come from text fluxgate cannot read: `$(FLAG)` from a ConfigMap key, a
//! script that expands `$ARGS` from a Secret unquoted, or a script whose very text comes from
//! one. Then the answer is [`FlagSearch::Undecided`], with the source, unless the flag is also
//! there for certain. What a script computes when it runs (`$(cat /etc/args)`, a script file
//! from a volume) is not followed: fluxgate judges the object, not the files of the image.
//!
//! Work is bounded: every entry and script costs budget from one [`Budget`] per container,
//! scripts nest at most [`MAX_DEPTH`] deep, and `for` loops and assignments keep at most
//! [`MAX_ALTERNATIVES`] values per variable.

use std::borrow::Cow;
use std::collections::HashMap;

use super::expansion::{Budget, Class, Environment, Part, Unknown, Value};

/// How deep scripts inside scripts are read (`sh -c "bash -c '...'"`, `eval`, `$(...)`).
pub const MAX_DEPTH: usize = 4;
/// How many values a variable may have at once (from `for` loops and assignments).
pub const MAX_ALTERNATIVES: usize = 64;

/// Where the flag was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlagPlace {
    /// An entry of `command` or `args`, as written.
    Argument,
    /// An entry of `command` or `args` after the kubelet's `$(VAR)` expansion.
    Expanded,
    /// A word of a shell script passed in `command` or `args`.
    Script,
}

/// The answer of [`find_flag`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlagSearch {
    Found(FlagPlace),
    /// The flag may be passed, depending on text fluxgate cannot read; the reason names it.
    Undecided(String),
    Absent,
}

/// Whether the program a container runs is passed `flag` (`--name`, as `--name` or
/// `--name=value`). `environment` is built only when an entry refers to a variable.
pub fn find_flag(
    command: &[Cow<'_, str>],
    args: &[Cow<'_, str>],
    environment: impl FnOnce(&mut Budget) -> Environment,
    flag: &str,
) -> FlagSearch {
    debug_assert!(flag.len() < 60 && flag.is_ascii());
    let entries = || command.iter().chain(args.iter()).map(|e| e.as_ref());
    // The common case: no quoting, no variables, and the flag nowhere in the text.
    let tricky = |e: &str| {
        e.bytes()
            .any(|b| matches!(b, b'$' | b'\\' | b'\'' | b'"' | b'`' | b'{'))
    };
    if !entries().any(|e| tricky(e) || e.contains(flag)) {
        return FlagSearch::Absent;
    }
    let mut budget = Budget::default();
    let environment = if entries().any(|e| e.contains('$')) {
        environment(&mut budget)
    } else {
        Environment::default()
    };
    let mut undecided: Option<String> = None;
    let mut previous: Option<String> = None;
    for entry in entries() {
        let value = if entry.contains("$(") {
            environment.expand(entry, &mut budget)
        } else {
            Value::text(entry)
        };
        match match_field(value.parts(), flag) {
            Match::Sure => {
                return FlagSearch::Found(if value.as_text() == Some(entry) {
                    FlagPlace::Argument
                } else {
                    FlagPlace::Expanded
                });
            }
            Match::Maybe(source) => {
                undecided.get_or_insert_with(|| {
                    format!("an argument is `{entry}`, and {source} may make it {flag}")
                });
            }
            Match::No => {}
        }
        let strict = previous.as_deref().is_some_and(takes_a_script);
        if strict || looks_like_shell(entry) {
            let mut shell = Shell {
                environment: &environment,
                vars: HashMap::new(),
                strict,
                flag,
                budget: &mut budget,
            };
            match shell.script(&value, 0) {
                Outcome::Found => return FlagSearch::Found(FlagPlace::Script),
                Outcome::Maybe(reason) if strict => {
                    undecided.get_or_insert(reason);
                }
                _ => {}
            }
        }
        previous = Some(value.as_text().unwrap_or("").to_string());
    }
    match undecided {
        Some(reason) => FlagSearch::Undecided(reason),
        None => FlagSearch::Absent,
    }
}

/// Options after which a shell or interpreter takes a script: `-c` in any cluster (`-c`,
/// `-ec`, `-lc`, `-xc`), `-e` (`node -e`, `perl -e`; for `sh -e` the next word is a file,
/// read harmlessly), and the long forms.
fn takes_a_script(word: &str) -> bool {
    if matches!(word, "--command" | "--eval" | "--exec") {
        return true;
    }
    word.strip_prefix('-').is_some_and(|cluster| {
        !cluster.is_empty()
            && cluster.bytes().all(|b| b.is_ascii_alphabetic())
            && cluster.bytes().any(|b| matches!(b, b'c' | b'e'))
    })
}

/// Text a shell would read differently from a single argument.
fn looks_like_shell(entry: &str) -> bool {
    entry.bytes().any(|b| {
        matches!(
            b,
            b' ' | b'\t' | b'\n' | b';' | b'|' | b'&' | b'$' | b'\\' | b'\'' | b'"' | b'`'
        )
    })
}

// ---- Matching one argument against the flag, with unknown pieces. ----

#[derive(Debug, Clone, PartialEq, Eq)]
enum Match {
    /// The argument is the flag whatever the unknown pieces hold.
    Sure,
    /// It is the flag for some values of the unknown pieces; names the first one.
    Maybe(String),
    No,
}

/// Whether one argument is `flag` or `flag=...`: a small automaton over the flag's characters
/// (state `i`: the first `i` characters matched; `accept`: the flag and `=` matched), run over
/// the known text and, for each unknown piece, over every string its class allows. States
/// reached through known text only are certain; the others are possible.
fn match_field(parts: &[Part], flag: &str) -> Match {
    let flag = flag.as_bytes();
    let len = flag.len();
    let accept = len + 1;
    let bit = |s: usize| 1u64 << s;
    let (mut sure, mut maybe) = (bit(0), 0u64);
    let mut first_unknown: Option<&Unknown> = None;
    let step_char = |states: u64, c: u8| -> u64 {
        let mut next = 0;
        if states & bit(accept) != 0 {
            next |= bit(accept);
        }
        for (s, &expected) in flag.iter().enumerate() {
            if states & bit(s) != 0 && expected == c {
                next |= bit(s + 1);
            }
        }
        if states & bit(len) != 0 && c == b'=' {
            next |= bit(accept);
        }
        next
    };
    for part in parts {
        match part {
            Part::Text(text) => {
                for &c in text.as_bytes() {
                    sure = step_char(sure, c);
                    maybe = step_char(maybe, c);
                    if sure | maybe == 0 {
                        return Match::No;
                    }
                }
            }
            Part::Unknown(unknown) => {
                first_unknown.get_or_insert(unknown);
                let from = sure | maybe;
                let mut reach = 0u64;
                for s in 0..=accept {
                    if from & bit(s) == 0 {
                        continue;
                    }
                    reach |= bit(s);
                    if s == accept {
                        continue;
                    }
                    match unknown.class {
                        Class::Any => {
                            for t in s..=len {
                                reach |= bit(t);
                            }
                            reach |= bit(accept);
                        }
                        Class::Word => {
                            let word_char =
                                |b: u8| b.is_ascii_alphanumeric() || b".-_:".contains(&b);
                            if s < len && flag[s].is_ascii_alphanumeric() {
                                let mut t = s;
                                while t < len && word_char(flag[t]) {
                                    t += 1;
                                    reach |= bit(t);
                                }
                            }
                        }
                        Class::Runtime => {}
                    }
                }
                // Certain states survive an unknown piece only once the flag is complete.
                sure &= bit(accept);
                maybe = reach & !sure;
            }
        }
    }
    let done = bit(len) | bit(accept);
    if sure & done != 0 {
        Match::Sure
    } else if maybe & done != 0 {
        Match::Maybe(
            first_unknown
                .map(|u| u.source.to_string())
                .unwrap_or_default(),
        )
    } else {
        Match::No
    }
}

// ---- Shell scripts. ----

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Found,
    Maybe(String),
    None,
}

/// A character of a script, or a piece of it fluxgate cannot read (from `$(VAR)` expansion).
#[derive(Debug, Clone)]
enum Unit {
    C(char),
    U(Unknown),
}

#[derive(Debug, Clone)]
enum ParamOp {
    Plain,
    /// `:-`, `-`, `:=`, `=`: the word when the variable is unset (or, with `:`, empty).
    Default(Vec<Seg>),
    /// `:+`, `+`: the word when the variable is set.
    Alternative(Vec<Seg>),
    /// Anything else (`#`, `%`, `/`, offsets, case changes): computed when the script runs.
    Other,
}

#[derive(Debug, Clone)]
enum Seg {
    Lit(String),
    Opaque(Unknown),
    Param {
        name: String,
        quoted: bool,
        op: ParamOp,
    },
    Runtime(&'static str),
    /// bash's brace expansion (`pre{a,b}post`, `{a..c}`): the word once for each option.
    /// bash runs it before every other expansion, also when started as `sh`.
    Brace(Vec<Vec<Seg>>),
}

#[derive(Debug, Clone)]
enum Tok {
    Word(Vec<Seg>),
    /// `;`, `&`, `|`, newline, `(`, `)`: the next word starts a command.
    Sep,
}

struct Shell<'s, 'e> {
    environment: &'e Environment,
    /// Variables the script assigns, each with every value it may have.
    vars: HashMap<String, Vec<Value>>,
    /// A script for certain (after `sh -c`): text fluxgate cannot read makes it undecided.
    /// Otherwise (text that only looks like shell) only a flag found for certain counts.
    strict: bool,
    flag: &'s str,
    budget: &'s mut Budget,
}

fn unit_char(units: &[Unit], i: usize) -> Option<char> {
    match units.get(i) {
        Some(Unit::C(c)) => Some(*c),
        _ => None,
    }
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The index of the `close` that ends a construct opened just before `start`, skipping quoted
/// text and escapes and counting nested `open`s.
fn find_close(units: &[Unit], start: usize, open: char, close: char) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = start;
    while i < units.len() {
        match unit_char(units, i) {
            Some('\\') => i += 1,
            Some('\'') if open != '\'' => {
                i += 1;
                while i < units.len() && unit_char(units, i) != Some('\'') {
                    i += 1;
                }
            }
            Some('"') if open != '"' => {
                i += 1;
                while i < units.len() && unit_char(units, i) != Some('"') {
                    if unit_char(units, i) == Some('\\') {
                        i += 1;
                    }
                    i += 1;
                }
            }
            Some(c) if c == close => {
                if depth == 0 {
                    return Some(i);
                }
                depth -= 1;
            }
            Some(c) if c == open => depth += 1,
            _ => {}
        }
        i += 1;
    }
    None
}

/// The words of a brace sequence `{x..y}` or `{x..y..step}` (integers, or single letters),
/// at most [`MAX_ALTERNATIVES`] of them; `None` when the text is no sequence.
fn sequence(text: &str) -> Option<Vec<String>> {
    let mut pieces = text.split("..");
    let (from, to) = (pieces.next()?, pieces.next()?);
    // i128: no bound or step an i64 holds overflows below.
    let step = match pieces.next() {
        Some(step) => i128::from(step.parse::<i64>().ok()?).abs().max(1),
        None => 1,
    };
    if pieces.next().is_some() {
        return None;
    }
    let letter = |t: &str| {
        let mut it = t.chars();
        match (it.next(), it.next()) {
            (Some(c), None) if c.is_ascii_alphabetic() => Some(i128::from(u32::from(c))),
            _ => None,
        }
    };
    let (a, b, letters) = match (from.parse::<i64>(), to.parse::<i64>()) {
        (Ok(a), Ok(b)) => (i128::from(a), i128::from(b), false),
        _ => (letter(from)?, letter(to)?, true),
    };
    let count = (a - b).abs() / step + 1;
    if count > MAX_ALTERNATIVES as i128 {
        return None;
    }
    let step = if b < a { -step } else { step };
    Some(
        (0..count)
            .map(|n| {
                let v = a + n * step;
                if letters {
                    u32::try_from(v)
                        .ok()
                        .and_then(char::from_u32)
                        .map(String::from)
                        .unwrap_or_default()
                } else {
                    v.to_string()
                }
            })
            .collect(),
    )
}

fn text_of(units: &[Unit]) -> Option<String> {
    units
        .iter()
        .map(|u| match u {
            Unit::C(c) => Some(*c),
            Unit::U(_) => None,
        })
        .collect()
}

/// The ANSI-C escapes of bash's `$'...'`.
fn ansi_c(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let radix = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>, radix: u32, max: usize| {
        let mut value = 0u32;
        let mut n = 0;
        while n < max {
            match chars.peek().and_then(|c| c.to_digit(radix)) {
                Some(d) => {
                    value = value * radix + d;
                    chars.next();
                    n += 1;
                }
                None => break,
            }
        }
        (n > 0).then(|| char::from_u32(value)).flatten()
    };
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some(e) = chars.next() else {
            out.push('\\');
            break;
        };
        let decoded = match e {
            'n' => Some('\n'),
            't' => Some('\t'),
            'r' => Some('\r'),
            'a' => Some('\x07'),
            'b' => Some('\x08'),
            'e' | 'E' => Some('\x1b'),
            'f' => Some('\x0c'),
            'v' => Some('\x0b'),
            '\\' | '\'' | '"' | '?' => Some(e),
            'x' => radix(&mut chars, 16, 2),
            'u' => radix(&mut chars, 16, 4),
            'U' => radix(&mut chars, 16, 8),
            '0'..='7' => {
                let mut value = e.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    match chars.peek().and_then(|c| c.to_digit(8)) {
                        Some(d) => {
                            value = value * 8 + d;
                            chars.next();
                        }
                        None => break,
                    }
                }
                char::from_u32(value)
            }
            _ => None,
        };
        match decoded {
            Some(d) => out.push(d),
            None => {
                out.push('\\');
                out.push(e);
            }
        }
    }
    out
}

/// Reads scripts into words. Command substitutions and backquotes are collected in `nested`
/// to be read as scripts of their own.
struct Lexer<'u> {
    units: &'u [Unit],
    i: usize,
    nested: Vec<Vec<Unit>>,
    /// How deep this lexer reads inside brace options (each option is lexed on its own).
    brace_depth: usize,
    /// Units scanned looking for the end of a brace expansion, shared with the option lexers
    /// (an unmatched `{` scans to the end of its word: bounded, so that `{{{{...` costs
    /// linear work).
    brace_work: std::rc::Rc<std::cell::Cell<usize>>,
}

/// How deep brace expansions nest before fluxgate stops following them.
const MAX_BRACE_DEPTH: usize = 8;
/// Units all brace expansions of one script may scan.
const MAX_BRACE_WORK: usize = 1 << 16;

impl<'u> Lexer<'u> {
    fn new(units: &'u [Unit]) -> Self {
        Lexer {
            units,
            i: 0,
            nested: Vec::new(),
            brace_depth: 0,
            brace_work: Default::default(),
        }
    }

    fn peek(&self, ahead: usize) -> Option<char> {
        unit_char(self.units, self.i + ahead)
    }

    fn tokens(&mut self) -> Vec<Tok> {
        let mut tokens = Vec::new();
        let mut word: Vec<Seg> = Vec::new();
        let mut in_word = false;
        let end_word = |tokens: &mut Vec<Tok>, word: &mut Vec<Seg>, in_word: &mut bool| {
            if std::mem::take(in_word) {
                tokens.push(Tok::Word(std::mem::take(word)));
            }
        };
        while self.i < self.units.len() {
            let c = match &self.units[self.i] {
                Unit::U(u) => {
                    word.push(Seg::Opaque(u.clone()));
                    in_word = true;
                    self.i += 1;
                    continue;
                }
                Unit::C(c) => *c,
            };
            match c {
                ' ' | '\t' | '\r' => {
                    end_word(&mut tokens, &mut word, &mut in_word);
                    self.i += 1;
                }
                '\n' | ';' | '&' | '|' | '(' | ')' => {
                    end_word(&mut tokens, &mut word, &mut in_word);
                    tokens.push(Tok::Sep);
                    self.i += 1;
                }
                '<' | '>' => {
                    end_word(&mut tokens, &mut word, &mut in_word);
                    self.i += 1;
                }
                '#' if !in_word => {
                    while self.i < self.units.len() && self.peek(0) != Some('\n') {
                        self.i += 1;
                    }
                }
                '\\' => {
                    match self.units.get(self.i + 1) {
                        Some(Unit::C('\n')) => {}
                        Some(Unit::C(next)) => {
                            push_lit(&mut word, next.encode_utf8(&mut [0; 4]));
                            in_word = true;
                        }
                        Some(Unit::U(u)) => {
                            word.push(Seg::Opaque(u.clone()));
                            in_word = true;
                        }
                        None => {}
                    }
                    self.i += 2;
                }
                '\'' => {
                    self.i += 1;
                    let start = self.i;
                    while self.i < self.units.len() && self.peek(0) != Some('\'') {
                        self.i += 1;
                    }
                    self.literal_units(start, self.i, &mut word);
                    in_word = true;
                    self.i += 1;
                }
                '"' => {
                    self.i += 1;
                    self.double_quoted(&mut word);
                    in_word = true;
                }
                '$' => {
                    in_word = true;
                    self.dollar(false, &mut word);
                }
                '`' => {
                    in_word = true;
                    self.backquote(&mut word);
                }
                '{' => {
                    in_word = true;
                    match self.brace() {
                        Some((seg, end)) => {
                            word.push(seg);
                            self.i = end + 1;
                        }
                        None => {
                            push_lit(&mut word, "{");
                            self.i += 1;
                        }
                    }
                }
                other => {
                    push_lit(&mut word, other.encode_utf8(&mut [0; 4]));
                    in_word = true;
                    self.i += 1;
                }
            }
        }
        end_word(&mut tokens, &mut word, &mut in_word);
        tokens
    }

    /// At an unquoted `{`: a brace expansion and the index of its `}`, or `None` for a
    /// literal brace (no `,` or `..` between it and a `}` of the same word: `{}`, `{ cmd; }`).
    fn brace(&mut self) -> Option<(Seg, usize)> {
        let start = self.i + 1;
        let mut depth = 0usize;
        let mut commas = Vec::new();
        let mut i = start;
        let end = loop {
            let work = self.brace_work.get() + 1;
            self.brace_work.set(work);
            if work > MAX_BRACE_WORK || self.brace_depth >= MAX_BRACE_DEPTH {
                return Some((
                    Seg::Opaque(Unknown::new(
                        Class::Any,
                        "a brace expansion larger than fluxgate follows",
                    )),
                    self.i,
                ));
            }
            match self.units.get(i) {
                None => return None,
                Some(Unit::U(_)) => {}
                Some(Unit::C(c)) => match c {
                    ' ' | '\t' | '\r' | '\n' | ';' | '&' | '|' | '(' | ')' | '<' | '>' => {
                        return None;
                    }
                    '\\' => i += 1,
                    '\'' | '"' => {
                        let quote = *c;
                        i += 1;
                        while i < self.units.len() && unit_char(self.units, i) != Some(quote) {
                            if quote == '"' && unit_char(self.units, i) == Some('\\') {
                                i += 1;
                            }
                            i += 1;
                        }
                    }
                    '$' if unit_char(self.units, i + 1) == Some('{') => {
                        i = find_close(self.units, i + 2, '{', '}')?;
                    }
                    '{' => depth += 1,
                    '}' if depth == 0 => break i,
                    '}' => depth -= 1,
                    ',' if depth == 0 => commas.push(i),
                    _ => {}
                },
            }
            i += 1;
        };
        let options = if commas.is_empty() {
            sequence(&text_of(&self.units[start..end])?)?
                .into_iter()
                .map(|text| vec![Seg::Lit(text)])
                .collect()
        } else {
            let mut bounds = vec![start];
            bounds.extend(commas.iter().map(|c| c + 1));
            let mut ends = commas.clone();
            ends.push(end);
            bounds
                .into_iter()
                .zip(ends)
                .map(|(from, to)| self.option(from, to))
                .collect()
        };
        Some((Seg::Brace(options), end))
    }

    /// One option of a brace expansion, lexed as a word of its own.
    fn option(&mut self, from: usize, to: usize) -> Vec<Seg> {
        let mut lexer = Lexer {
            units: &self.units[from..to],
            i: 0,
            nested: Vec::new(),
            brace_depth: self.brace_depth + 1,
            brace_work: self.brace_work.clone(),
        };
        let mut segs = Vec::new();
        for tok in lexer.tokens() {
            if let Tok::Word(word) = tok {
                segs.extend(word);
            }
        }
        self.nested.append(&mut lexer.nested);
        segs
    }

    fn literal_units(&self, from: usize, to: usize, word: &mut Vec<Seg>) {
        let mut text = String::new();
        for unit in &self.units[from.min(self.units.len())..to.min(self.units.len())] {
            match unit {
                Unit::C(c) => text.push(*c),
                Unit::U(u) => {
                    push_lit(word, &std::mem::take(&mut text));
                    word.push(Seg::Opaque(u.clone()));
                }
            }
        }
        push_lit(word, &text);
    }

    /// After an opening `"`; stops after the closing one.
    fn double_quoted(&mut self, word: &mut Vec<Seg>) {
        while self.i < self.units.len() {
            let c = match &self.units[self.i] {
                Unit::U(u) => {
                    word.push(Seg::Opaque(u.clone()));
                    self.i += 1;
                    continue;
                }
                Unit::C(c) => *c,
            };
            match c {
                '"' => {
                    self.i += 1;
                    return;
                }
                '\\' => {
                    match self.peek(1) {
                        Some(e @ ('$' | '`' | '"' | '\\')) => {
                            push_lit(word, e.encode_utf8(&mut [0; 4]))
                        }
                        Some('\n') => {}
                        Some(other) => push_lit(word, &format!("\\{other}")),
                        None => push_lit(word, "\\"),
                    }
                    self.i += 2;
                }
                '$' => self.dollar(true, word),
                '`' => self.backquote(word),
                other => {
                    push_lit(word, other.encode_utf8(&mut [0; 4]));
                    self.i += 1;
                }
            }
        }
    }

    fn backquote(&mut self, word: &mut Vec<Seg>) {
        let start = self.i + 1;
        let mut end = start;
        let mut inner = Vec::new();
        while end < self.units.len() && unit_char(self.units, end) != Some('`') {
            if unit_char(self.units, end) == Some('\\')
                && matches!(unit_char(self.units, end + 1), Some('`' | '\\' | '$'))
            {
                end += 1;
            }
            inner.push(self.units[end].clone());
            end += 1;
        }
        self.nested.push(inner);
        word.push(Seg::Runtime("the output of a `...` command"));
        self.i = end + 1;
    }

    /// At a `$`.
    fn dollar(&mut self, quoted: bool, word: &mut Vec<Seg>) {
        let next = self.peek(1);
        match next {
            Some('{') => {
                let start = self.i + 2;
                match find_close(self.units, start, '{', '}') {
                    Some(end) => {
                        word.push(self.parameter(&self.units[start..end], quoted));
                        self.i = end + 1;
                    }
                    None => {
                        word.push(Seg::Lit("${".into()));
                        self.i += 2;
                    }
                }
            }
            Some('(') if self.peek(2) == Some('(') => {
                let start = self.i + 3;
                let end = find_close(self.units, start, '(', ')').unwrap_or(self.units.len());
                word.push(Seg::Runtime("the result of $((...))"));
                // `))`: the second parenthesis closes the outer one.
                self.i = (end + 2).min(self.units.len());
            }
            Some('(') => {
                let start = self.i + 2;
                let end = find_close(self.units, start, '(', ')').unwrap_or(self.units.len());
                self.nested.push(self.units[start..end].to_vec());
                word.push(Seg::Runtime("the output of a $(...) command"));
                self.i = end + 1;
            }
            Some('\'') if !quoted => {
                let start = self.i + 2;
                let mut end = start;
                while end < self.units.len() && unit_char(self.units, end) != Some('\'') {
                    if unit_char(self.units, end) == Some('\\') {
                        end += 1;
                    }
                    end += 1;
                }
                let end = end.min(self.units.len());
                match text_of(&self.units[start..end]) {
                    Some(text) => word.push(Seg::Lit(ansi_c(&text))),
                    None => self.literal_units(start, end, word),
                }
                self.i = end + 1;
            }
            Some('"') if !quoted => {
                self.i += 2;
                self.double_quoted(word);
            }
            Some(c) if is_name_start(c) => {
                let start = self.i + 1;
                let mut end = start;
                while unit_char(self.units, end).is_some_and(is_name_char) {
                    end += 1;
                }
                let name = text_of(&self.units[start..end]).unwrap_or_default();
                word.push(Seg::Param {
                    name,
                    quoted,
                    op: ParamOp::Plain,
                });
                self.i = end;
            }
            Some(c) if c.is_ascii_digit() || "@*#?$!-".contains(c) => {
                word.push(Seg::Runtime("a positional or special parameter"));
                self.i += 2;
            }
            _ => {
                word.push(Seg::Lit("$".into()));
                self.i += 1;
            }
        }
    }

    /// The inside of `${...}`.
    fn parameter(&self, inside: &[Unit], quoted: bool) -> Seg {
        let Some(text) = text_of(inside) else {
            return Seg::Runtime("a ${...} expansion");
        };
        if text.starts_with('#') && text.len() > 1 || text.starts_with('!') {
            return Seg::Runtime("a ${...} expansion");
        }
        let name_len = if text.starts_with(is_name_start) {
            text.find(|c: char| !is_name_char(c)).unwrap_or(text.len())
        } else {
            return Seg::Runtime("a positional or special parameter");
        };
        let (name, rest) = text.split_at(name_len);
        let word = |op_len: usize| {
            let units: Vec<Unit> = inside[name_len + op_len..].to_vec();
            let mut lexer = Lexer::new(&units);
            let mut segs = Vec::new();
            for (n, tok) in lexer.tokens().into_iter().enumerate() {
                if let Tok::Word(w) = tok {
                    if n > 0 {
                        segs.push(Seg::Lit(" ".into()));
                    }
                    segs.extend(w);
                }
            }
            segs
        };
        let op = if rest.is_empty() || rest.starts_with(":?") || rest.starts_with('?') {
            ParamOp::Plain
        } else if rest.starts_with(":-") || rest.starts_with(":=") {
            ParamOp::Default(word(2))
        } else if rest.starts_with('-') || rest.starts_with('=') {
            ParamOp::Default(word(1))
        } else if rest.starts_with(":+") {
            ParamOp::Alternative(word(2))
        } else if rest.starts_with('+') {
            ParamOp::Alternative(word(1))
        } else {
            ParamOp::Other
        };
        Seg::Param {
            name: name.to_string(),
            quoted,
            op,
        }
    }
}

/// The words a word may become: each alternative is a list of fields (arguments).
type Alternatives = Vec<Vec<Value>>;

fn runtime(what: &'static str) -> Unknown {
    Unknown::new(Class::Runtime, what)
}

/// Words after which the next word starts a command again.
fn is_keyword(word: &str) -> bool {
    matches!(
        word,
        "if" | "then"
            | "else"
            | "elif"
            | "fi"
            | "do"
            | "done"
            | "while"
            | "until"
            | "{"
            | "}"
            | "!"
            | "time"
            | "case"
            | "esac"
            | "in"
    )
}

fn push_lit(word: &mut Vec<Seg>, text: &str) {
    if text.is_empty() {
        return;
    }
    match word.last_mut() {
        Some(Seg::Lit(last)) => last.push_str(text),
        _ => word.push(Seg::Lit(text.to_string())),
    }
}

/// `NAME=value`: the name and the segments of the value.
fn assignment(segs: &[Seg]) -> Option<(String, Vec<Seg>)> {
    let Some(Seg::Lit(first)) = segs.first() else {
        return None;
    };
    let (name, rest) = first.split_once('=')?;
    if !name.starts_with(is_name_start) || !name.chars().all(is_name_char) {
        return None;
    }
    let mut value = Vec::with_capacity(segs.len());
    push_lit(&mut value, rest);
    value.extend_from_slice(&segs[1..]);
    Some((name.to_string(), value))
}

impl Shell<'_, '_> {
    fn units_of(value: &Value) -> Vec<Unit> {
        let mut units = Vec::new();
        for part in value.parts() {
            match part {
                Part::Text(t) => units.extend(t.chars().map(Unit::C)),
                Part::Unknown(u) => units.push(Unit::U(u.clone())),
            }
        }
        units
    }

    /// Reads `value` as a script.
    fn script(&mut self, value: &Value, depth: usize) -> Outcome {
        if self.strict
            && let Some(unknown) = value.first_unknown(Class::Any)
        {
            return Outcome::Maybe(format!(
                "a shell script it runs takes text from {}, which may start agentk with {}",
                unknown.source, self.flag
            ));
        }
        if depth > MAX_DEPTH {
            return self.maybe("scripts nested deeper than fluxgate follows");
        }
        let units = Self::units_of(value);
        if !self.budget.spend(units.len()) {
            return self.maybe("a script longer than fluxgate follows");
        }
        let mut lexer = Lexer::new(&units);
        let tokens = lexer.tokens();
        let nested = std::mem::take(&mut lexer.nested);
        let mut result = self.commands(&tokens, depth);
        if result == Outcome::Found {
            return result;
        }
        for inner in nested {
            let inner_value = {
                let mut v = Value::default();
                for unit in inner {
                    match unit {
                        Unit::C(c) => v.push_text(c.encode_utf8(&mut [0; 4])),
                        Unit::U(u) => v.push_unknown(u),
                    }
                }
                v
            };
            let strict = std::mem::replace(&mut self.strict, true);
            let outcome = self.script(&inner_value, depth + 1);
            self.strict = strict;
            match outcome {
                Outcome::Found => return Outcome::Found,
                Outcome::Maybe(_) if matches!(result, Outcome::None) => result = outcome,
                _ => {}
            }
        }
        result
    }

    fn maybe(&self, why: &str) -> Outcome {
        if self.strict {
            Outcome::Maybe(format!("{why}; it may start agentk with {}", self.flag))
        } else {
            Outcome::None
        }
    }

    /// Walks the words of a script command by command.
    fn commands(&mut self, tokens: &[Tok], depth: usize) -> Outcome {
        let mut result = Outcome::None;
        let mut at_start = true;
        let mut command: Option<String> = None;
        let mut previous: Option<String> = None;
        let mut i = 0;
        while i < tokens.len() {
            let segs = match &tokens[i] {
                Tok::Sep => {
                    at_start = true;
                    command = None;
                    previous = None;
                    i += 1;
                    continue;
                }
                Tok::Word(segs) => segs,
            };
            i += 1;
            let declares = matches!(
                command.as_deref(),
                Some("export" | "local" | "readonly" | "declare" | "typeset")
            );
            if (at_start || declares)
                && let Some((name, value_segs)) = assignment(segs)
            {
                let values = match self.alternatives(&value_segs, true) {
                    Ok(alternatives) => alternatives
                        .into_iter()
                        .map(|fields| fields.into_iter().next().unwrap_or_default())
                        .collect(),
                    Err(outcome) => return outcome,
                };
                for value in &values {
                    if let Some(found) = self.check(std::slice::from_ref(value), &mut result) {
                        return found;
                    }
                }
                self.vars.insert(name, values);
                continue;
            }
            let literal = Self::literal(segs);
            if at_start && literal.as_deref() == Some("for") {
                i = self.for_loop(tokens, i, &mut result);
                continue;
            }
            if at_start && literal.as_deref().is_some_and(is_keyword) {
                continue;
            }
            let alternatives = match self.alternatives(segs, false) {
                Ok(alternatives) => alternatives,
                Err(outcome) => return outcome,
            };
            for fields in &alternatives {
                if let Some(found) = self.check(fields, &mut result) {
                    return found;
                }
            }
            let script_follows = previous.as_deref().is_some_and(takes_a_script)
                || command.as_deref() == Some("eval");
            if script_follows {
                for fields in &alternatives {
                    let mut script = Value::default();
                    for (n, field) in fields.iter().enumerate() {
                        if n > 0 {
                            script.push_text(" ");
                        }
                        script.append(field);
                    }
                    let strict = std::mem::replace(&mut self.strict, true);
                    let outcome = self.script(&script, depth + 1);
                    self.strict = strict;
                    match outcome {
                        Outcome::Found => return Outcome::Found,
                        Outcome::Maybe(_) if result == Outcome::None => result = outcome,
                        _ => {}
                    }
                }
            }
            if at_start {
                command = literal
                    .as_deref()
                    .map(|w| w.rsplit('/').next().unwrap_or(w).to_string());
                at_start = false;
            }
            previous = literal;
        }
        result
    }

    /// `for NAME in WORDS; do`: NAME takes each of the words' fields. Returns where to go on.
    fn for_loop(&mut self, tokens: &[Tok], mut i: usize, result: &mut Outcome) -> usize {
        let Some(Tok::Word(name_segs)) = tokens.get(i) else {
            return i;
        };
        let Some(name) = Self::literal(name_segs) else {
            return i;
        };
        i += 1;
        let mut values = Vec::new();
        if matches!(tokens.get(i), Some(Tok::Word(w)) if Self::literal(w).as_deref() == Some("in"))
        {
            i += 1;
            while let Some(Tok::Word(segs)) = tokens.get(i) {
                if let Ok(alternatives) = self.alternatives(segs, false) {
                    for fields in alternatives {
                        if let Some(Outcome::Found) = self.check(&fields, result) {
                            *result = Outcome::Found;
                        }
                        values.extend(fields);
                    }
                }
                i += 1;
            }
        } else {
            values.push(Value::unknown(runtime("a positional parameter")));
        }
        if values.len() > MAX_ALTERNATIVES {
            values = vec![Value::unknown(runtime(
                "a loop over more words than fluxgate follows",
            ))];
        }
        self.vars.insert(name, values);
        i
    }

    /// The word as written, when it is plain text.
    fn literal(segs: &[Seg]) -> Option<String> {
        let mut text = String::new();
        for seg in segs {
            match seg {
                Seg::Lit(t) => text.push_str(t),
                _ => return None,
            }
        }
        Some(text)
    }

    /// Checks each field against the flag; `Some` to stop with that outcome.
    fn check(&self, fields: &[Value], result: &mut Outcome) -> Option<Outcome> {
        for field in fields {
            match match_field(field.parts(), self.flag) {
                Match::Sure => return Some(Outcome::Found),
                Match::Maybe(source) if *result == Outcome::None => {
                    if let Outcome::Maybe(reason) = self.maybe(&format!(
                        "a shell script it runs passes `{field}`, which {source} may make {}",
                        self.flag
                    )) {
                        *result = Outcome::Maybe(reason);
                    }
                }
                _ => {}
            }
        }
        None
    }

    /// The values of a variable.
    fn variable(&self, name: &str) -> Option<Vec<Value>> {
        if let Some(values) = self.vars.get(name) {
            return Some(values.clone());
        }
        self.environment.lookup(name).map(|v| vec![v])
    }

    fn parameter_values(&mut self, name: &str, op: &ParamOp) -> Result<Vec<Value>, Outcome> {
        let base = self.variable(name);
        Ok(match op {
            ParamOp::Plain => base.unwrap_or_else(|| vec![Value::default()]),
            ParamOp::Default(word) => match base {
                Some(values) => {
                    let mut values = values;
                    if values.iter().any(|v| v.as_text() == Some("")) {
                        values.extend(self.joined(word)?);
                    }
                    values
                }
                None => self.joined(word)?,
            },
            ParamOp::Alternative(word) => match base {
                Some(_) => self.joined(word)?,
                None => vec![Value::default()],
            },
            ParamOp::Other => vec![Value::unknown(runtime("a ${...} operation"))],
        })
    }

    /// A word's values without field splitting (as in an assignment or inside quotes).
    fn joined(&mut self, segs: &[Seg]) -> Result<Vec<Value>, Outcome> {
        Ok(self
            .alternatives(segs, true)?
            .into_iter()
            .map(|fields| {
                let mut v = Value::default();
                for (n, field) in fields.iter().enumerate() {
                    if n > 0 {
                        v.push_text(" ");
                    }
                    v.append(field);
                }
                v
            })
            .collect())
    }

    /// Every way a word may expand, each as its list of fields. `no_split`: an assignment's
    /// value, where unquoted expansions are not split.
    fn alternatives(&mut self, segs: &[Seg], no_split: bool) -> Result<Alternatives, Outcome> {
        let mut alternatives: Alternatives = vec![vec![Value::default()]];
        for seg in segs {
            match seg {
                Seg::Lit(text) => {
                    for fields in &mut alternatives {
                        if let Some(last) = fields.last_mut() {
                            last.push_text(text);
                        }
                    }
                }
                Seg::Opaque(u) => {
                    for fields in &mut alternatives {
                        if let Some(last) = fields.last_mut() {
                            last.push_unknown(u.clone());
                        }
                    }
                }
                Seg::Runtime(what) => {
                    for fields in &mut alternatives {
                        if let Some(last) = fields.last_mut() {
                            last.push_unknown(runtime(what));
                        }
                    }
                }
                Seg::Brace(options) => {
                    let mut next: Alternatives = Vec::new();
                    for option in options {
                        let expanded = self.alternatives(option, no_split)?;
                        for fields in &alternatives {
                            for more in &expanded {
                                if next.len() >= MAX_ALTERNATIVES {
                                    return Err(self.maybe(
                                        "a brace expansion with more words than fluxgate follows",
                                    ));
                                }
                                let cost: usize = more.iter().map(Value::cost).sum();
                                if !self.budget.spend(cost.max(1)) {
                                    return Err(self.maybe(
                                        "a script that expands to more text than fluxgate follows",
                                    ));
                                }
                                let mut fields = fields.clone();
                                let mut more = more.iter();
                                if let (Some(last), Some(first)) = (fields.last_mut(), more.next())
                                {
                                    last.append(first);
                                }
                                fields.extend(more.cloned());
                                next.push(fields);
                            }
                        }
                    }
                    alternatives = next;
                }
                Seg::Param { name, quoted, op } => {
                    let values = self.parameter_values(name, op)?;
                    let split = !quoted && !no_split;
                    if split
                        && self.strict
                        && let Some(unknown) =
                            values.iter().find_map(|v| v.first_unknown(Class::Any))
                    {
                        return Err(Outcome::Maybe(format!(
                            "a shell script it runs expands ${name} unquoted, and {} may \
                             split into {}",
                            unknown.source, self.flag
                        )));
                    }
                    let size: usize = values.iter().map(Value::cost).sum();
                    if !self.budget.spend(size.saturating_mul(alternatives.len())) {
                        return Err(
                            self.maybe("a script that expands to more text than fluxgate follows")
                        );
                    }
                    if let [value] = values.as_slice() {
                        for fields in &mut alternatives {
                            append_to(fields, value, split);
                        }
                        continue;
                    }
                    if alternatives.len().saturating_mul(values.len()) > MAX_ALTERNATIVES {
                        return Err(self.maybe(
                            "a script whose variables take more values than fluxgate follows",
                        ));
                    }
                    let mut next: Alternatives =
                        Vec::with_capacity(alternatives.len() * values.len());
                    for fields in &alternatives {
                        for value in &values {
                            let mut fields = fields.clone();
                            append_to(&mut fields, value, split);
                            next.push(fields);
                        }
                    }
                    alternatives = next;
                }
            }
        }
        Ok(alternatives)
    }
}

fn append_to(fields: &mut Vec<Value>, value: &Value, split: bool) {
    if split {
        append_split(fields, value);
    } else if let Some(last) = fields.last_mut() {
        last.append(value);
    }
}

/// Appends an unquoted expansion: its text is split into fields at blanks.
fn append_split(fields: &mut Vec<Value>, value: &Value) {
    for part in value.parts() {
        match part {
            Part::Text(text) => {
                let mut pieces = text.split([' ', '\t', '\n']);
                if let Some(first) = pieces.next()
                    && let Some(last) = fields.last_mut()
                {
                    last.push_text(first);
                }
                for piece in pieces {
                    let starts_empty = fields.last().is_some_and(|f| f.parts().is_empty());
                    if !starts_empty {
                        fields.push(Value::default());
                    }
                    if let Some(last) = fields.last_mut() {
                        last.push_text(piece);
                    }
                }
            }
            Part::Unknown(u) => {
                if let Some(last) = fields.last_mut() {
                    last.push_unknown(u.clone());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::expansion::EnvVar;
    use super::*;

    const FLAG: &str = "--kas-address";

    fn search_with(command: &[&str], args: &[&str], env_json: &str) -> FlagSearch {
        let env: Vec<EnvVar<'_>> = serde_json::from_str(env_json).expect("env");
        let command: Vec<Cow<'_, str>> = command.iter().map(|s| Cow::Borrowed(*s)).collect();
        let args: Vec<Cow<'_, str>> = args.iter().map(|s| Cow::Borrowed(*s)).collect();
        find_flag(
            &command,
            &args,
            |budget| Environment::new(&env, &[], "team-a", budget),
            FLAG,
        )
    }

    fn search(command: &[&str], args: &[&str]) -> FlagSearch {
        search_with(command, args, "[]")
    }

    fn found(s: FlagSearch) -> bool {
        matches!(s, FlagSearch::Found(_))
    }

    fn undecided(s: FlagSearch) -> bool {
        matches!(s, FlagSearch::Undecided(_))
    }

    #[test]
    fn the_flag_as_an_argument_in_both_forms() {
        assert_eq!(
            search(&["/usr/bin/agentk"], &["--kas-address=wss://kas"]),
            FlagSearch::Found(FlagPlace::Argument)
        );
        assert!(found(search(&[], &["--kas-address", "wss://kas"])));
        for other in [
            "--kas-addresses=x",
            "--kas-address-file=x",
            "-kas-address=x",
            "kas-address",
            "--kas",
        ] {
            assert_eq!(search(&[], &[other]), FlagSearch::Absent, "{other}");
        }
    }

    #[test]
    fn kubelet_expansion_is_followed() {
        let env = r#"[{"name": "F", "value": "--kas-address"}, {"name": "KAS", "value": "$(F)=wss://kas"}]"#;
        assert_eq!(
            search_with(&[], &["$(F)=wss://kas"], env),
            FlagSearch::Found(FlagPlace::Expanded)
        );
        assert!(found(search_with(&[], &["$(KAS)"], env)));
        assert!(found(search_with(
            &[],
            &["--kas-$(A)"],
            r#"[{"name": "A", "value": "address"}]"#
        )));
        // `$$` escapes: the kubelet passes `$(F)` itself.
        assert_eq!(search_with(&[], &["$$(F)=x"], env), FlagSearch::Absent);
        // An undefined variable stays as written.
        assert_eq!(search_with(&[], &["$(NOPE)=x"], env), FlagSearch::Absent);
        // Defined after the entry that uses it: not expanded in env, but expanded in args.
        let later =
            r#"[{"name": "A", "value": "$(F)=x"}, {"name": "F", "value": "--kas-address"}]"#;
        assert_eq!(search_with(&[], &["$(A)"], later), FlagSearch::Absent);
        assert!(found(search_with(&[], &["$(F)"], later)));
    }

    #[test]
    fn values_fluxgate_cannot_read_leave_the_flag_undecided_only_where_it_could_be() {
        let env = r#"[
            {"name": "CM", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "flag"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "LABEL", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['x']"}}}
        ]"#;
        let s = search_with(&[], &["$(CM)=wss://kas"], env);
        assert!(undecided(s.clone()), "{s:?}");
        if let FlagSearch::Undecided(reason) = s {
            assert!(reason.contains("ConfigMap settings key flag"), "{reason}");
        }
        assert!(undecided(search_with(&[], &["--kas-$(LABEL)"], env)));
        for benign in [
            "--namespace=$(NS)",
            "--name=$(POD)",
            "--cfg=$(CM)",
            "$(POD)",
            "$(LABEL)",
        ] {
            assert_eq!(
                search_with(&[], &[benign], env),
                FlagSearch::Absent,
                "{benign}"
            );
        }
    }

    #[test]
    fn shell_entrypoints_are_read() {
        for (command, args) in [
            (
                &["sh", "-c"][..],
                &["exec agentk --kas-address=wss://kas"][..],
            ),
            (
                &[
                    "/bin/bash",
                    "-c",
                    "exec /usr/bin/agentk --kas-address wss://kas",
                ][..],
                &[][..],
            ),
            (
                &["/bin/sh", "-ec"][..],
                &["set -x\nexec agentk \\\n  --kas-address=wss://kas"][..],
            ),
            (
                &["bash", "-lc"][..],
                &["agentk --kas-'address'=wss://kas"][..],
            ),
            (&["sh", "-c"][..], &["agentk --kas-add\"\"ress=x"][..]),
            (&["sh", "-c"][..], &["agentk \\-\\-kas-address=x"][..]),
            (
                &["bash", "-c"][..],
                &["agentk $'\\x2d\\x2dkas-address'=x"][..],
            ),
            (
                &["/usr/bin/env", "sh", "-c"][..],
                &["env A=1 agentk --kas-address=x"][..],
            ),
            (
                &["sh", "-c"][..],
                &["F=--kas-address; exec agentk $F=wss://kas"][..],
            ),
            (
                &["sh", "-c"][..],
                &["A=--kas; B=-address; exec agentk \"$A$B\"=x"][..],
            ),
            (
                &["sh", "-c"][..],
                &["for f in --kas-address=x; do exec agentk $f; done"][..],
            ),
            (
                &["sh", "-c"][..],
                &["exec agentk ${NOPE:---kas-address}=x"][..],
            ),
            (
                &["sh", "-c"][..],
                &["sh -c 'bash -c \"agentk --kas-address=x\"'"][..],
            ),
            (&["sh", "-c"][..], &["eval 'agentk --kas-address=x'"][..]),
            (&["sh", "-c"][..], &["echo $(agentk --kas-address=x)"][..]),
            // An image whose entrypoint is a shell: args[0] is the script.
            (&[][..], &["exec agentk --kas-address=wss://kas"][..]),
        ] {
            assert!(found(search(command, args)), "{command:?} {args:?}");
        }
    }

    #[test]
    fn a_shell_reads_the_containers_environment() {
        let env = r#"[{"name": "FLAGS", "value": "--token-file=/t --kas-address=wss://kas"}]"#;
        assert!(found(search_with(
            &["sh", "-c"],
            &["exec agentk $FLAGS"],
            env
        )));
        // The kubelet expands $(FLAGS) into the script before the shell reads it.
        assert!(found(search_with(
            &["sh", "-c"],
            &["exec agentk $(FLAGS)"],
            env
        )));
        // $$ leaves $(...) to the shell: a command substitution, whose output is not followed.
        assert_eq!(
            search_with(&["sh", "-c"], &["exec agentk $$(FLAGS)"], env),
            FlagSearch::Absent
        );
    }

    #[test]
    fn a_script_from_text_fluxgate_cannot_read_is_undecided() {
        let env = r#"[
            {"name": "SCRIPT", "valueFrom": {"configMapKeyRef": {"name": "s", "key": "run"}}},
            {"name": "ARGS", "valueFrom": {"secretKeyRef": {"name": "s", "key": "args"}}}
        ]"#;
        assert!(undecided(search_with(&["sh", "-c"], &["$(SCRIPT)"], env)));
        assert!(undecided(search_with(
            &["sh", "-c"],
            &["exec app $ARGS"],
            env
        )));
        assert!(undecided(search_with(&["sh", "-c", "$SCRIPT"], &[], env)));
        // Quoted, the value is one argument: it cannot become the flag after `--password=`.
        assert_eq!(
            search_with(&["sh", "-c"], &["exec app --password=\"$ARGS\""], env),
            FlagSearch::Absent
        );
    }

    #[test]
    fn bash_brace_expansion_is_followed() {
        // bash expands braces before anything else, also when it runs as `sh`.
        for script in [
            "exec agentk {--kas-address=wss://kas,--token-file=/t}",
            "exec agentk --kas-{address,x}=wss://kas",
            "exec agentk --kas-{x,{y,address}}=wss://kas",
            "exec agentk --kas-addres{s..s}=wss://kas",
            "exec agentk --kas-address{,}=wss://kas",
            "exec agentk --{kas,'x y'}-address=wss://kas",
            "K=kas; exec agentk --{$K,x}-address=wss://kas",
        ] {
            assert!(found(search(&["bash", "-c"], &[script])), "{script}");
        }
        // Braces that expand to nothing else, and words that are no brace expansion.
        for script in [
            "exec agentk-exporter --kas-{addresses,x}=y",
            "find / -name x -exec rm {} \\;",
            "{ echo a; echo b; } > /tmp/out; exec nginx",
            "for i in {1..5}; do echo $i; done; exec app '--kas-{address,x}=y'",
            "exec app --kas-{address}=y",
        ] {
            assert_eq!(
                search(&["bash", "-c"], &[script]),
                FlagSearch::Absent,
                "{script}"
            );
        }
    }

    #[test]
    fn brace_expansions_cost_bounded_work() {
        let unmatched = format!("exec agentk {}", "{".repeat(200_000));
        assert!(!found(search(&["sh", "-c"], &[&unmatched])));
        let nested = format!(
            "exec agentk {}--kas-address=x{}",
            "{a,".repeat(50),
            "}".repeat(50)
        );
        assert!(!matches!(
            search(&["sh", "-c"], &[&nested]),
            FlagSearch::Absent
        ));
        let wide = format!("exec app {}", "{a,b}".repeat(40));
        let _ = search(&["sh", "-c"], &[&wide]);
        for sequence in [
            "exec app {1..100000000}",
            "exec app {-9223372036854775808..9223372036854775807}",
            "exec app {0..10..-9223372036854775808}",
            "exec app {z..a..9223372036854775807}",
        ] {
            assert_eq!(search(&["sh", "-c"], &[sequence]), FlagSearch::Absent);
        }
    }

    #[test]
    fn ordinary_scripts_and_arguments_are_not_agentk() {
        for (command, args) in [
            (
                &["sh", "-c"][..],
                &["for f in /sql/*.sql; do psql -f $f; done"][..],
            ),
            (
                &["sh", "-c"][..],
                &["echo \"started at $(date)\"; exec nginx -g 'daemon off;'"][..],
            ),
            (
                &["sh", "-c"][..],
                &["kill $(cat /run/pid) && sleep $((RANDOM % 10))"][..],
            ),
            (
                &["sh", "-c"][..],
                &["exec app --namespace=$POD_NAMESPACE # --kas-address"][..],
            ),
            (&["python3", "-c"][..], &["print('hello')"][..]),
            (
                &[][..],
                &["--message=connect with the agent", "--port=8080"][..],
            ),
            (
                &["sh", "-c"][..],
                &["exec agentk-exporter --kas-addresses=x"][..],
            ),
        ] {
            assert_eq!(
                search(command, args),
                FlagSearch::Absent,
                "{command:?} {args:?}"
            );
        }
    }

    #[test]
    fn text_a_script_computes_may_hide_the_flag_only_undecided() {
        // `$(true)` prints nothing: the word may be the flag.
        assert!(undecided(search(
            &["sh", "-c"],
            &["exec agentk --kas$(true)-address=x"]
        )));
    }

    #[test]
    fn hostile_scripts_cost_bounded_work() {
        let deep = format!(
            "{}agentk --kas-address=x{}",
            "sh -c '".repeat(50),
            "'".repeat(50)
        );
        let _ = search(&["sh", "-c"], &[&deep]);
        let wide = "$A".repeat(10_000);
        let env = r#"[{"name": "A", "value": "x y"}]"#;
        let _ = search_with(
            &["sh", "-c"],
            &[&format!("for A in a b c d e f g h; do echo {wide}; done")],
            env,
        );
        let unbalanced = "$((((((((((${{{{{{{{{ '\"`".repeat(1000);
        let _ = search(&["sh", "-c"], &[&unbalanced]);
    }

    #[test]
    fn any_text_is_read_without_a_panic() {
        // A fixed pseudo-random walk over the characters that steer the lexer.
        const ALPHABET: &[&str] = &[
            "$",
            "(",
            ")",
            "{",
            "}",
            "'",
            "\"",
            "`",
            "\\",
            " ",
            "\n",
            ";",
            "|",
            "&",
            "#",
            "=",
            ":-",
            "--kas-address",
            "-c",
            "sh",
            "eval",
            "for",
            "in",
            "do",
            "A",
            "é",
            "$'",
            "\\x2d",
            ",",
            "..",
            "{a,",
            "1..3}",
        ];
        let mut state = 0x2545_f491_u64;
        let env = r#"[{"name": "A", "value": "$(A) x"}, {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]"#;
        for _ in 0..2000 {
            let mut text = String::new();
            for _ in 0..24 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                text.push_str(ALPHABET[(state % ALPHABET.len() as u64) as usize]);
            }
            let _ = search_with(&["sh", "-c"], &[&text], env);
            let _ = search_with(&[], &[&text], env);
        }
    }

    #[test]
    fn ansi_c_quoting_decodes_escapes() {
        assert_eq!(ansi_c(r"\x2d\055\u002dk\tz\q"), "---k\tz\\q");
    }

    #[test]
    fn script_options_are_recognised() {
        for yes in ["-c", "-ec", "-lc", "-xec", "-e", "--command"] {
            assert!(takes_a_script(yes), "{yes}");
        }
        for no in ["-x", "--", "-", "--config", "-c1"] {
            assert!(!takes_a_script(no), "{no}");
        }
    }
}
