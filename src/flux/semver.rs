//! Semantic version constraints exactly as Flux reads them. source-controller resolves
//! `OCIRepository.spec.ref.semver` (and HelmChart versions) with Masterminds/semver v3:
//! `NewConstraint` parses the range, `Constraints.Check` picks the tags it accepts. This module
//! is a port of v3.4.0's parser and predicates, quirks included, so that a range means here
//! what it means to Flux; what a range accepts is then turned into intervals of versions, so
//! that questions about *all* the versions it accepts ("do they share one major version?")
//! are answered exactly, by interval arithmetic, instead of by looking at the text.
//!
//! # Parsing, as `NewConstraint` does it
//! Masterminds parses with regular expressions; they are kept here word for word and run by
//! the `regex` crate, whose leftmost-first matching is the same as Go's `regexp` (both are
//! RE2's semantics), with Go's `\s` (`[\t\n\f\r ]`, no vertical tab) spelled out. In order:
//! 1. Hyphen ranges `A - B` are rewritten to `>= A, <= B ` by `rewriteRange`, over the whole
//!    text, *before* it is split into alternatives ([`rewrite_ranges`]).
//! 2. The text is split at every `||`; each alternative must match `validConstraintRegex`
//!    (comparisons separated by spaces or one comma), else `improper constraint: <alternative>`.
//! 3. Comparisons are found with `findConstraintRegex` and each is read by `parseConstraint`:
//!    wildcards (`x`, `X`, `*`, or a missing part) become zeros and mark the comparison
//!    "dirty", and the version is read by `NewVersion`, whose failure is `constraint parser
//!    error`.
//!
//! The quirks this keeps, each where the code does it:
//! - The version-number character class is `[0-9|x|X|\*]`: it contains `|`. Since ranges are
//!   rewritten before the `||` split, `1||1.0.0 - 1.5.0` is read as the number `1||1.0.0`
//!   up to `1.5.0`, which becomes `>= 1||1.0.0, <= 1.5.0 `, then `>= 1` or `1.0.0 <= 1.5.0`:
//!   every version from 1.0.0 on.
//! - `rewriteRange` replaces the *first occurrence* of each matched text, which may be an
//!   earlier copy than the one matched.
//! - A `|` left inside a version (`1|2`) passes the grammar and fails `NewVersion`.
//! - Leading zeros are allowed in major, minor and patch (`01.2.3` is 1.2.3), not in
//!   numeric prerelease identifiers; build metadata is ignored; a wildcard makes what follows
//!   it irrelevant (`x.1.2` is `*`), but a prerelease after a wildcard is kept (`1.x-rc`).
//! - The predicates of dirty comparisons differ from their clean forms: `>1` is `>=2.0.0`,
//!   `<=1.x` is `<2.0.0`, `^*` is `=0.0.0`, `<=*` is `<0.1.0`, `!=*` excludes only `0.0.0`,
//!   and `!=1.2.x` in an alternative that accepts prereleases excludes the releases of 1.2
//!   but none of its prereleases (see [`Shape`]).
//! - A prerelease version is accepted only by an alternative in which some comparison's
//!   version has a prerelease (`>=1.0.0-0`), and then by every comparison of it.
//!
//! Masterminds has no length limit. fluxgate reads at most [`MAX_LEN`] bytes: the rewriting
//! of step 1 searches the text once per hyphen range, which would cost time quadratic in the
//! length, and no real range comes near the limit.
//!
//! tests/semver_masterminds.rs holds this module to Masterminds v3.4.0's own decisions on
//! 29,530 constraints over 1,800 versions; its unit tests hold the intervals to a literal
//! port of Masterminds' predicates on random versions.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

/// The longest range fluxgate reads (Masterminds has no limit; see the module documentation).
pub const MAX_LEN: usize = 4096;

/// Why a constraint is not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Masterminds refuses it: Flux cannot reconcile a source with this range.
    #[error("{message}")]
    Refused {
        /// Masterminds' own error, word for word, as source-controller reports it.
        message: String,
        /// What is wrong, in words a person can act on.
        hint: String,
    },
    /// Longer than fluxgate reads ([`MAX_LEN`]); Masterminds itself has no limit.
    #[error("is longer than {MAX_LEN} bytes, more than fluxgate reads")]
    TooLong,
}

/// One dot-separated identifier of a prerelease. Masterminds compares identifiers that
/// parse as a u64 as numbers, below every other; others (a number too large included) as
/// text, byte by byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ident {
    Number(u64),
    Text(String),
}

impl Ident {
    fn parse(text: &str) -> Ident {
        if text.bytes().all(|b| b.is_ascii_digit())
            && let Ok(n) = text.parse()
        {
            return Ident::Number(n);
        }
        Ident::Text(text.to_string())
    }
}

impl Ord for Ident {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Ident::Number(a), Ident::Number(b)) => a.cmp(b),
            (Ident::Number(_), Ident::Text(_)) => Ordering::Less,
            (Ident::Text(_), Ident::Number(_)) => Ordering::Greater,
            (Ident::Text(a), Ident::Text(b)) => a.cmp(b),
        }
    }
}

impl PartialOrd for Ident {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ident::Number(n) => write!(f, "{n}"),
            Ident::Text(s) => f.write_str(s),
        }
    }
}

/// A version in semver precedence order (build metadata dropped: it never orders).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    /// Empty for a release.
    pub pre: Vec<Ident>,
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                // A release follows all of its prereleases.
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => self.pre.cmp(&other.pre),
            })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        for (i, ident) in self.pre.iter().enumerate() {
            f.write_str(if i == 0 { "-" } else { "." })?;
            write!(f, "{ident}")?;
        }
        Ok(())
    }
}

impl Version {
    pub const fn release(major: u64, minor: u64, patch: u64) -> Self {
        Version {
            major,
            minor,
            patch,
            pre: Vec::new(),
        }
    }

    /// `major.minor.patch-0`, the lowest version of that triple (`0` is the lowest
    /// identifier, and a shorter prerelease sorts before a longer one it begins).
    fn lowest(major: u64, minor: u64, patch: u64) -> Self {
        Version {
            major,
            minor,
            patch,
            pre: vec![Ident::Number(0)],
        }
    }

    pub fn is_release(&self) -> bool {
        self.pre.is_empty()
    }

    fn without_pre(&self) -> Self {
        Version::release(self.major, self.minor, self.patch)
    }

    /// Reads a version as Masterminds' `NewVersion` does (v3.4.0, `CoerceNewVersion` on, its
    /// default): an optional `v`, one to three numbers (leading zeros allowed, missing ones
    /// are 0), an optional prerelease whose numeric identifiers have no leading zero, an
    /// optional build (ignored). This is how Flux reads tags when it picks one for a range.
    pub fn parse(text: &str) -> Option<Version> {
        let grammar = GRAMMAR.as_ref()?;
        let caps = grammar.version.captures(text)?;
        let number = |i: usize| -> Option<u64> {
            match caps.get(i) {
                None => Some(0),
                Some(m) => m.as_str().trim_start_matches('.').parse().ok(),
            }
        };
        let (major, minor, patch) = (number(1)?, number(2)?, number(3)?);
        let pre = match caps.get(5) {
            None => Vec::new(),
            Some(m) => prerelease(m.as_str())?,
        };
        Some(Version {
            major,
            minor,
            patch,
            pre,
        })
    }

    /// Reads a full version by semver.org's grammar, with an optional `v`: three numbers
    /// without leading zeros, an optional prerelease, an optional build (ignored). What a
    /// tag must be to name one release. Partial versions (`1.2`) and wildcards are not
    /// versions.
    pub fn parse_strict(text: &str) -> Option<Version> {
        let text = text.strip_prefix('v').unwrap_or(text);
        let (text, build) = match text.split_once('+') {
            Some((text, build)) => (text, Some(build)),
            None => (text, None),
        };
        if build.is_some_and(|b| !b.split('.').all(is_identifier)) {
            return None;
        }
        let (core, pre) = match text.split_once('-') {
            Some((core, pre)) => (core, prerelease(pre)?),
            None => (text, Vec::new()),
        };
        let mut numbers = core.split('.');
        let mut number = || -> Option<u64> {
            let digits = numbers.next()?;
            let plain = !digits.is_empty()
                && digits.bytes().all(|b| b.is_ascii_digit())
                && (digits == "0" || !digits.starts_with('0'));
            if plain { digits.parse().ok() } else { None }
        };
        let (major, minor, patch) = (number()?, number()?, number()?);
        if numbers.next().is_some() {
            return None;
        }
        Some(Version {
            major,
            minor,
            patch,
            pre,
        })
    }

    /// The next version in precedence order, if any.
    fn successor(&self) -> Option<Version> {
        if self.pre.is_empty() {
            self.successor_patch()
        } else {
            let mut pre = self.pre.clone();
            pre.push(Ident::Number(0));
            Some(Version {
                pre,
                ..self.clone()
            })
        }
    }

    fn next_minor(&self) -> Option<Version> {
        match self.minor.checked_add(1) {
            Some(minor) => Some(Version::lowest(self.major, minor, 0)),
            None => self.next_major(),
        }
    }

    fn next_line_start(&self) -> Option<Version> {
        if self.major == 0 {
            self.next_minor()
        } else {
            self.next_major()
        }
    }

    /// The lowest version of the next patch (`0.0.4-0` after `0.0.3`).
    fn successor_patch(&self) -> Option<Version> {
        match self.patch.checked_add(1) {
            Some(patch) => Some(Version::lowest(self.major, self.minor, patch)),
            None => self.next_minor(),
        }
    }

    fn next_major(&self) -> Option<Version> {
        self.major
            .checked_add(1)
            .map(|major| Version::lowest(major, 0, 0))
    }
}

/// `[0-9A-Za-z-]+`, one identifier of a prerelease or a build.
fn is_identifier(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// A prerelease as Masterminds' `validatePrerelease` accepts it: dot-separated identifiers,
/// numeric ones without a leading zero.
fn prerelease(text: &str) -> Option<Vec<Ident>> {
    text.split('.')
        .map(|ident| {
            let numeric = ident.bytes().all(|b| b.is_ascii_digit());
            let leading_zero = numeric && ident.len() > 1 && ident.starts_with('0');
            (is_identifier(ident) && !leading_zero).then(|| Ident::parse(ident))
        })
        .collect()
}
/// A run of versions Flux treats as compatible: one major version from 1 on; below 1.0.0,
/// where semver lets anything change, one minor version (0.2.x), as caret ranges do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Line {
    Major(u64),
    /// `0.<minor>.x`.
    ZeroMinor(u64),
}

impl Line {
    pub fn of(version: &Version) -> Line {
        if version.major == 0 {
            Line::ZeroMinor(version.minor)
        } else {
            Line::Major(version.major)
        }
    }

    /// The lowest version of the line.
    fn start(self) -> Version {
        match self {
            Line::Major(major) => Version::lowest(major, 0, 0),
            Line::ZeroMinor(minor) => Version::lowest(0, minor, 0),
        }
    }

    /// The lowest version of the next line, if there is one.
    fn next_start(self) -> Option<Version> {
        self.start().next_line_start()
    }

    /// `>=<start> <<next>`, the range of exactly this line (releases only).
    pub fn range(self) -> String {
        let (start, end) = match self {
            Line::Major(major) => (
                Version::release(major, 0, 0),
                major.checked_add(1).map(|m| Version::release(m, 0, 0)),
            ),
            Line::ZeroMinor(minor) => (
                Version::release(0, minor, 0),
                Some(match minor.checked_add(1) {
                    Some(m) => Version::release(0, m, 0),
                    None => Version::release(1, 0, 0),
                }),
            ),
        };
        match end {
            Some(end) => format!(">={start} <{end}"),
            None => format!(">={start}"),
        }
    }
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Line::Major(major) => write!(f, "major version {major}"),
            Line::ZeroMinor(minor) => write!(f, "0.{minor}.x"),
        }
    }
}

/// Which versions a constraint accepts, with respect to [`Line`]s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Span {
    /// No version satisfies it.
    Empty,
    /// Every version it accepts is in this line.
    Within(Line),
    /// It accepts versions of two lines at least: `low` is the lowest version it accepts,
    /// `other` the lowest it accepts outside `low`'s line.
    Crosses { low: Version, other: Version },
}

// ---------------------------------------------------------------------------------------
// Intervals

#[derive(Debug, Clone, PartialEq, Eq)]
enum Lower {
    Unbounded,
    Incl(Version),
    Excl(Version),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Upper {
    Incl(Version),
    Excl(Version),
    Unbounded,
}

fn cmp_lower(a: &Lower, b: &Lower) -> Ordering {
    match (a, b) {
        (Lower::Unbounded, Lower::Unbounded) => Ordering::Equal,
        (Lower::Unbounded, _) => Ordering::Less,
        (_, Lower::Unbounded) => Ordering::Greater,
        (Lower::Incl(x) | Lower::Excl(x), Lower::Incl(y) | Lower::Excl(y)) => {
            x.cmp(y).then_with(|| match (a, b) {
                (Lower::Incl(_), Lower::Excl(_)) => Ordering::Less,
                (Lower::Excl(_), Lower::Incl(_)) => Ordering::Greater,
                _ => Ordering::Equal,
            })
        }
    }
}

fn cmp_upper(a: &Upper, b: &Upper) -> Ordering {
    match (a, b) {
        (Upper::Unbounded, Upper::Unbounded) => Ordering::Equal,
        (Upper::Unbounded, _) => Ordering::Greater,
        (_, Upper::Unbounded) => Ordering::Less,
        (Upper::Incl(x) | Upper::Excl(x), Upper::Incl(y) | Upper::Excl(y)) => {
            x.cmp(y).then_with(|| match (a, b) {
                (Upper::Excl(_), Upper::Incl(_)) => Ordering::Less,
                (Upper::Incl(_), Upper::Excl(_)) => Ordering::Greater,
                _ => Ordering::Equal,
            })
        }
    }
}

impl Upper {
    fn admits(&self, v: &Version) -> bool {
        match self {
            Upper::Unbounded => true,
            Upper::Incl(u) => v <= u,
            Upper::Excl(u) => v < u,
        }
    }

    /// `< v`, or no bound at all when `v` does not exist (past the largest version).
    fn below(v: Option<Version>) -> Upper {
        v.map_or(Upper::Unbounded, Upper::Excl)
    }
}

/// Which versions an alternative can accept at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layer {
    Releases,
    All,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Interval {
    lo: Lower,
    hi: Upper,
}

impl Interval {
    const EVERYTHING: Interval = Interval {
        lo: Lower::Unbounded,
        hi: Upper::Unbounded,
    };

    fn from(lo: Version) -> Interval {
        Interval {
            lo: Lower::Incl(lo),
            hi: Upper::Unbounded,
        }
    }

    fn range(lo: Version, hi: Option<Version>) -> Interval {
        Interval {
            lo: Lower::Incl(lo),
            hi: Upper::below(hi),
        }
    }

    fn intersect(&self, other: &Interval) -> Interval {
        let lo = if cmp_lower(&self.lo, &other.lo) == Ordering::Less {
            other.lo.clone()
        } else {
            self.lo.clone()
        };
        let hi = if cmp_upper(&self.hi, &other.hi) == Ordering::Greater {
            other.hi.clone()
        } else {
            self.hi.clone()
        };
        Interval { lo, hi }
    }

    /// The lowest version of the layer in the interval, if there is one.
    fn first(&self, layer: Layer) -> Option<Version> {
        let candidate = match (&self.lo, layer) {
            (Lower::Unbounded, Layer::All) => Version::lowest(0, 0, 0),
            (Lower::Unbounded, Layer::Releases) => Version::release(0, 0, 0),
            (Lower::Incl(v), Layer::All) => v.clone(),
            (Lower::Excl(v), Layer::All) => v.successor()?,
            (Lower::Incl(v), Layer::Releases) => v.without_pre(),
            (Lower::Excl(v), Layer::Releases) if v.is_release() => {
                let next = v.successor()?;
                next.without_pre()
            }
            (Lower::Excl(v), Layer::Releases) => v.without_pre(),
        };
        self.hi.admits(&candidate).then_some(candidate)
    }
}

impl Lower {
    fn admits(&self, v: &Version) -> bool {
        match self {
            Lower::Unbounded => true,
            Lower::Incl(l) => v >= l,
            Lower::Excl(l) => v > l,
        }
    }

    /// The bound just above `upper`, where what `upper` ends is followed; `None` past an
    /// unbounded one.
    fn after(upper: &Upper) -> Option<Lower> {
        match upper {
            Upper::Unbounded => None,
            Upper::Incl(v) => Some(Lower::Excl(v.clone())),
            Upper::Excl(v) => Some(Lower::Incl(v.clone())),
        }
    }
}

impl Upper {
    /// The bound just below `lower`; `None` before an unbounded one.
    fn before(lower: &Lower) -> Option<Upper> {
        match lower {
            Lower::Unbounded => None,
            Lower::Incl(v) => Some(Upper::Excl(v.clone())),
            Lower::Excl(v) => Some(Upper::Incl(v.clone())),
        }
    }
}

impl Interval {
    /// No version at all (nothing lies below `0.0.0-0`).
    fn nothing() -> Interval {
        Interval {
            lo: Lower::Unbounded,
            hi: Upper::Excl(Version::lowest(0, 0, 0)),
        }
    }

    fn point(v: &Version) -> Interval {
        Interval {
            lo: Lower::Incl(v.clone()),
            hi: Upper::Incl(v.clone()),
        }
    }

    fn below(hi: Upper) -> Interval {
        Interval {
            lo: Lower::Unbounded,
            hi,
        }
    }

    fn contains(&self, v: &Version) -> bool {
        self.lo.admits(v) && self.hi.admits(v)
    }

    fn is_empty(&self) -> bool {
        self.first(Layer::All).is_none()
    }
}

// ---------------------------------------------------------------------------------------
// Masterminds' grammar

/// Go's `\s`: RE2's Perl class, without the vertical tab that the regex crate's includes.
const WS: &str = r"[\t\n\x0C\r ]";

/// `cvRegex`: a version as a constraint writes it. Its number class `[0-9|x|X|\*]` contains
/// `|`, as in Masterminds (see the module documentation).
const CV: &str = r"v?([0-9|x|X|\*]+)(\.[0-9|x|X|\*]+)?(\.[0-9|x|X|\*]+)?(-([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?(\+([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?";

/// The operators, in Masterminds' order: leftmost-first alternation prefers earlier ones, and
/// the empty one between `=` and `!=` is the bare version.
const OPS: &str = r"=||!=|>|<|>=|=>|<=|=<|~|~>|\^";

/// Masterminds' regular expressions, compiled once.
struct Grammar {
    /// `constraintRangeRegex`: `A - B`.
    range: Regex,
    /// `validConstraintRegex`: one alternative.
    valid: Regex,
    /// `findConstraintRegex`: the comparisons of a valid alternative.
    find: Regex,
    /// `constraintRegex`: one comparison.
    comparison: Regex,
    /// `looseSemVerRegex`, anchored: what `NewVersion` reads.
    version: Regex,
}

static GRAMMAR: LazyLock<Option<Grammar>> = LazyLock::new(|| {
    let ws = WS;
    Some(Grammar {
        range: Regex::new(&format!(r"{ws}*({CV}){ws}+-{ws}+({CV}){ws}*")).ok()?,
        valid: Regex::new(&format!(
            r"^({ws}*({OPS}){ws}*({CV}){ws}*)((?:{ws}+|,{ws}*)({OPS}){ws}*({CV}){ws}*)*$"
        ))
        .ok()?,
        find: Regex::new(&format!(r"({OPS}){ws}*({CV})")).ok()?,
        comparison: Regex::new(&format!(r"^{ws}*({OPS}){ws}*({CV}){ws}*$")).ok()?,
        version: Regex::new(
            r"^v?([0-9]+)(\.[0-9]+)?(\.[0-9]+)?(-([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?(\+([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?$",
        )
        .ok()?,
    })
});

/// `rewriteRange`: every `A - B` becomes `>= A, <= B `, over the whole text, before it is
/// split into alternatives. Quirk kept: each replacement goes to the *first occurrence* of
/// the matched text (Go's `strings.Replace(o, match, t, 1)`), which may be an earlier copy of
/// it than the one matched. The flag says whether a rewritten range took a `|` into one of
/// its versions, which moves the `||` split (`1||1.0.0 - 1.5.0`).
fn rewrite_ranges<'t>(grammar: &Grammar, text: &'t str) -> (Cow<'t, str>, bool) {
    let mut rewritten: Option<String> = None;
    let mut swallowed_bar = false;
    for caps in grammar.range.captures_iter(text) {
        let whole = caps.get(0).map_or("", |m| m.as_str());
        let lower = caps.get(1).map_or("", |m| m.as_str());
        let upper = caps.get(11).map_or("", |m| m.as_str());
        swallowed_bar |= lower.contains('|') || upper.contains('|');
        let o = rewritten.get_or_insert_with(|| text.to_string());
        if let Some(at) = o.find(whole) {
            o.replace_range(at..at + whole.len(), &format!(">= {lower}, <= {upper} "));
        }
    }
    match rewritten {
        Some(o) => (Cow::Owned(o), swallowed_bar),
        None => (Cow::Borrowed(text), false),
    }
}

/// The operator of one comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// `=`, or no operator: `constraintTildeOrEqual`.
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    /// `~` or `~>`.
    Tilde,
    Caret,
}

impl Op {
    fn parse(text: &str) -> Option<Op> {
        Some(match text {
            "" | "=" => Op::Eq,
            "!=" => Op::Ne,
            ">" => Op::Gt,
            "<" => Op::Lt,
            ">=" | "=>" => Op::Ge,
            "<=" | "=<" => Op::Le,
            "~" | "~>" => Op::Tilde,
            "^" => Op::Caret,
            _ => return None,
        })
    }
}

/// The first part of a comparison's version that is a wildcard or missing, which makes the
/// comparison "dirty" in Masterminds' terms (`dirty`, `minorDirty`, `patchDirty`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wildcard {
    None,
    /// `*`, `x.1.2`: only `dirty`; the version is `0.0.0` (with the prerelease, if any).
    Major,
    /// `1`, `1.x`: `minorDirty`.
    Minor,
    /// `1.2`, `1.2.x`: `patchDirty`.
    Patch,
}

/// One comparison: `>=1.2.0`, `~1.x`, `!=1.4.2-rc.1`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Atom {
    op: Op,
    /// Masterminds' `con`: the version with wildcards as zeros.
    version: Version,
    wildcard: Wildcard,
}

fn is_x(text: &str) -> bool {
    matches!(text, "x" | "X" | "*")
}

/// `parseConstraint`.
fn parse_atom(grammar: &Grammar, text: &str) -> Result<Atom, ParseError> {
    if text.is_empty() {
        // Unreachable from `NewConstraint` (a valid alternative always holds a comparison),
        // kept as Masterminds has it: the empty string is `*`.
        return Ok(Atom {
            op: Op::Eq,
            version: Version::release(0, 0, 0),
            wildcard: Wildcard::Major,
        });
    }
    let caps = grammar
        .comparison
        .captures(text)
        .ok_or_else(|| improper(text, text, false))?;
    let group = |i: usize| caps.get(i).map_or("", |m| m.as_str());
    let op = Op::parse(group(1)).ok_or_else(|| improper(text, text, false))?;
    let (major, minor, patch, pre) = (group(3), group(4), group(5), group(6));
    let minor_digits = minor.strip_prefix('.').unwrap_or(minor);
    let patch_digits = patch.strip_prefix('.').unwrap_or(patch);
    // The first wildcard or missing part zeroes itself and what follows; the prerelease stays
    // and the build goes (it is only in the clean form, which `NewVersion` ignores anyway).
    let (wildcard, version): (Wildcard, Cow<'_, str>) = if is_x(major) || major.is_empty() {
        (Wildcard::Major, format!("0.0.0{pre}").into())
    } else if is_x(minor_digits) || minor.is_empty() {
        (Wildcard::Minor, format!("{major}.0.0{pre}").into())
    } else if is_x(patch_digits) || patch.is_empty() {
        (Wildcard::Patch, format!("{major}{minor}.0{pre}").into())
    } else {
        (Wildcard::None, group(2).into())
    };
    let version = Version::parse(&version).ok_or_else(|| ParseError::Refused {
        message: "constraint parser error".to_string(),
        hint: version_hint(group(2)),
    })?;
    Ok(Atom {
        op,
        version,
        wildcard,
    })
}

fn improper(what: &str, text: &str, rewritten: bool) -> ParseError {
    ParseError::Refused {
        message: format!("improper constraint: {what}"),
        hint: alternative_hint(what, text, rewritten),
    }
}

// ---------------------------------------------------------------------------------------
// What a comparison accepts

/// The versions one comparison accepts, before the prerelease rule of its alternative.
enum Shape {
    /// The versions in the interval.
    Within(Interval),
    /// The versions outside it.
    Outside(Interval),
    /// Every version but those of this kind, in every patch.
    Excludes(Excluded),
}

/// Versions `major.minor.<any patch>` with exactly this prerelease (empty: the releases):
/// what `!=1.2.x` excludes in an alternative that accepts prereleases. Masterminds'
/// `constraintNotEqual` compares only the prereleases once major and minor are equal, so
/// `!=1.2.x` excludes 1.2.0, 1.2.1... and none of 1.2.0-rc.1, 1.2.1-0..., and `!=1.2.x-rc`
/// excludes 1.2.0-rc, 1.2.1-rc... and nothing else: isolated versions, no interval.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Excluded {
    major: u64,
    minor: u64,
    pre: Vec<Ident>,
}

impl Excluded {
    fn key(&self) -> (u64, u64, &[Ident]) {
        (self.major, self.minor, &self.pre)
    }
}

impl Atom {
    /// Masterminds' predicate of this comparison, as a set. `prereleases`: whether its
    /// alternative accepts prereleases at all.
    fn shape(&self, prereleases: bool) -> Shape {
        let c = &self.version;
        let (major, minor) = (c.major, c.minor);
        let next_major = || c.next_major();
        let next_minor = || Version::lowest(major, minor, 0).next_minor();
        let from = |lo: Option<Version>| lo.map_or_else(Interval::nothing, Interval::from);
        match (self.op, self.wildcard) {
            (Op::Eq, Wildcard::None) => Shape::Within(Interval::point(c)),
            // `constraintTildeOrEqual` is `~` for a dirty version: `1.2.x` is `~1.2`.
            (Op::Eq, _) | (Op::Tilde, _) => Shape::Within(self.tilde()),
            // `!=*` compares the zeroed version: it excludes 0.0.0 alone.
            (Op::Ne, Wildcard::None | Wildcard::Major) => Shape::Outside(Interval::point(c)),
            (Op::Ne, Wildcard::Minor) => {
                Shape::Outside(Interval::range(Version::lowest(major, 0, 0), next_major()))
            }
            // Without prereleases in play, "the releases of 1.2" is the interval of 1.2.
            (Op::Ne, Wildcard::Patch) if !prereleases => Shape::Outside(Interval::range(
                Version::lowest(major, minor, 0),
                next_minor(),
            )),
            (Op::Ne, Wildcard::Patch) => Shape::Excludes(Excluded {
                major,
                minor,
                pre: c.pre.clone(),
            }),
            (Op::Gt, Wildcard::None | Wildcard::Major) => Shape::Within(Interval {
                lo: Lower::Excl(c.clone()),
                hi: Upper::Unbounded,
            }),
            // `>1` is "a major above 1", `>1.2` "a minor above 1.2".
            (Op::Gt, Wildcard::Minor) => Shape::Within(from(next_major())),
            (Op::Gt, Wildcard::Patch) => Shape::Within(from(next_minor())),
            (Op::Lt, _) => Shape::Within(Interval::below(Upper::Excl(c.clone()))),
            (Op::Ge, _) => Shape::Within(Interval::from(c.clone())),
            (Op::Le, Wildcard::None) => Shape::Within(Interval::below(Upper::Incl(c.clone()))),
            // `<=*` keeps the zeroed major and minor: 0.0.x only.
            (Op::Le, Wildcard::Major) => {
                Shape::Within(Interval::below(Upper::Excl(Version::lowest(0, 1, 0))))
            }
            (Op::Le, Wildcard::Minor) => Shape::Within(Interval::below(Upper::below(next_major()))),
            (Op::Le, Wildcard::Patch) => Shape::Within(Interval::below(Upper::below(next_minor()))),
            (Op::Caret, wildcard) => {
                let upper = if major > 0 || wildcard == Wildcard::Minor {
                    next_major()
                } else if minor > 0 || wildcard == Wildcard::Patch {
                    next_minor()
                } else {
                    // ^0.0.3 (and `^*`, zeroed to ^0.0.0): that patch only.
                    Version::lowest(0, 0, c.patch).successor_patch()
                };
                Shape::Within(Interval::range(c.clone(), upper))
            }
        }
    }

    /// `constraintTilde`: from the version, within its minor (or its major when the minor is
    /// a wildcard); `~0.0.0` and `~*` (not `~0.0`, `~0`) accept everything from it on.
    fn tilde(&self) -> Interval {
        let c = &self.version;
        let zero = c.major == 0 && c.minor == 0 && c.patch == 0;
        let upper = match self.wildcard {
            Wildcard::None | Wildcard::Major if zero => return Interval::from(c.clone()),
            Wildcard::Minor => c.next_major(),
            _ => Version::lowest(c.major, c.minor, 0).next_minor(),
        };
        Interval::range(c.clone(), upper)
    }
}

/// What one alternative (its comparisons, all of which must accept) accepts: the versions of
/// its layer in `pieces`, but those `excluded` names.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Region {
    layer: Layer,
    /// Sorted, disjoint, none empty.
    pieces: Vec<Interval>,
    /// Sorted, for binary search.
    excluded: Vec<Excluded>,
}

impl Region {
    fn of(atoms: &[Atom], prereleases: bool) -> Region {
        let mut within = Interval::EVERYTHING;
        let mut holes = Vec::new();
        let mut excluded = Vec::new();
        for atom in atoms {
            match atom.shape(prereleases) {
                Shape::Within(interval) => within = within.intersect(&interval),
                Shape::Outside(hole) => holes.push(hole),
                Shape::Excludes(e) => excluded.push(e),
            }
        }
        excluded.sort();
        excluded.dedup();
        Region {
            layer: if prereleases {
                Layer::All
            } else {
                Layer::Releases
            },
            pieces: subtract(&within, holes),
            excluded,
        }
    }

    fn excludes(&self, v: &Version) -> bool {
        let key = (v.major, v.minor, v.pre.as_slice());
        self.excluded
            .binary_search_by(|e| e.key().cmp(&key))
            .is_ok()
    }

    fn contains(&self, v: &Version) -> bool {
        (self.layer == Layer::All || v.is_release())
            && self.pieces.iter().any(|p| p.contains(v))
            && !self.excludes(v)
    }

    /// The lowest version it accepts at or above `from`. Each step past an excluded version
    /// needs another, longer exclusion (`1.2.3`, then `1.2.4-0`, then `1.2.4-0.0`...), so
    /// the steps are bounded by the number of exclusions.
    fn lowest_from(&self, from: &Lower) -> Option<Version> {
        let rest = Interval {
            lo: from.clone(),
            hi: Upper::Unbounded,
        };
        for piece in &self.pieces {
            let part = piece.intersect(&rest);
            let mut candidate = part.first(self.layer);
            while let Some(v) = candidate {
                if !self.excludes(&v) {
                    return Some(v);
                }
                candidate = match self.layer {
                    Layer::All => v.successor(),
                    Layer::Releases => v.successor().map(|next| next.without_pre()),
                }
                .filter(|next| part.hi.admits(next));
            }
        }
        None
    }
}

/// `within` without the holes, as sorted disjoint intervals.
fn subtract(within: &Interval, mut holes: Vec<Interval>) -> Vec<Interval> {
    if within.is_empty() {
        return Vec::new();
    }
    holes.sort_by(|a, b| cmp_lower(&a.lo, &b.lo));
    let mut pieces = Vec::new();
    let mut rest = Some(within.lo.clone());
    for hole in &holes {
        let Some(lo) = rest.take() else { break };
        if let Some(hi) = Upper::before(&hole.lo) {
            pieces.push(Interval { lo: lo.clone(), hi }.intersect(within));
        }
        rest = Lower::after(&hole.hi).map(|after| {
            if cmp_lower(&after, &lo) == Ordering::Greater {
                after
            } else {
                lo
            }
        });
    }
    if let Some(lo) = rest {
        pieces.push(Interval {
            lo,
            hi: within.hi.clone(),
        });
    }
    pieces.retain(|p| !p.is_empty());
    pieces
}

// ---------------------------------------------------------------------------------------
// Constraints

/// A parsed constraint: alternatives (OR) of comparisons (AND).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    alternatives: Vec<Alternative>,
    /// What Masterminds read after rewriting `A - B` ranges, when that moved a `||` into a
    /// version (`1||1.0.0 - 1.5.0`): the range then means something else than it shows.
    reread: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Alternative {
    atoms: Vec<Atom>,
    /// Masterminds' `containsPre`: some comparison's version has a prerelease.
    prereleases: bool,
    region: Region,
}

impl Constraint {
    /// Parses a constraint as Masterminds/semver v3.4.0 `NewConstraint` does.
    pub fn parse(text: &str) -> Result<Constraint, ParseError> {
        if text.len() > MAX_LEN {
            return Err(ParseError::TooLong);
        }
        let Some(grammar) = GRAMMAR.as_ref() else {
            // The patterns are constants, compiled by every test run; fail closed all the same.
            return Err(ParseError::Refused {
                message: "fluxgate could not compile Masterminds' grammar".to_string(),
                hint: "this is a bug in fluxgate".to_string(),
            });
        };
        let (rewritten, swallowed_bar) = rewrite_ranges(grammar, text);
        let was_rewritten = matches!(rewritten, Cow::Owned(_));
        let mut alternatives = Vec::new();
        for alternative in rewritten.split("||") {
            if !grammar.valid.is_match(alternative) {
                return Err(improper(alternative, text, was_rewritten));
            }
            let mut found: Vec<&str> = grammar
                .find
                .find_iter(alternative)
                .map(|m| m.as_str())
                .collect();
            if found.is_empty() {
                found.push(alternative);
            }
            let atoms = found
                .into_iter()
                .map(|comparison| parse_atom(grammar, comparison))
                .collect::<Result<Vec<_>, _>>()?;
            let prereleases = atoms.iter().any(|a| !a.version.is_release());
            let region = Region::of(&atoms, prereleases);
            alternatives.push(Alternative {
                atoms,
                prereleases,
                region,
            });
        }
        Ok(Constraint {
            alternatives,
            reread: swallowed_bar.then(|| rewritten.into_owned()),
        })
    }

    /// The text Masterminds actually reads when its `A - B` rewriting moved a `||` into a
    /// version, so that the range means something else than it shows (see the module
    /// documentation); `None` otherwise.
    pub fn reread(&self) -> Option<&str> {
        self.reread.as_deref()
    }

    /// Whether Flux would pick `version` from the tags (`Constraints.Check`).
    pub fn matches(&self, version: &Version) -> bool {
        self.alternatives.iter().any(|a| a.region.contains(version))
    }

    /// The lowest version the constraint accepts at or above `from`.
    fn lowest_from(&self, from: &Lower) -> Option<Version> {
        self.alternatives
            .iter()
            .filter_map(|a| a.region.lowest_from(from))
            .min()
    }

    /// Which versions the constraint accepts, by [`Line`].
    pub fn span(&self) -> Span {
        let Some(low) = self.lowest_from(&Lower::Unbounded) else {
            return Span::Empty;
        };
        let line = Line::of(&low);
        let lowest_from = |from: Option<Version>| self.lowest_from(&Lower::Incl(from?));
        let Some(other_line) = lowest_from(line.next_start()) else {
            return Span::Within(line);
        };
        // Show a version of another major when there is one: that is what the rule is about.
        let other = lowest_from(low.next_major()).unwrap_or(other_line);
        Span::Crosses { low, other }
    }

    /// A range in one line derived from this constraint: from its lowest accepted version to
    /// the end of that line, or, for a constraint without a lower bound, the end of the line
    /// just below its upper bound. `None` when the constraint gives no hint (`*`, `>=0.0.0`).
    pub fn bounded_suggestion(&self) -> Option<String> {
        let low = match self.span() {
            Span::Crosses { low, .. } => low,
            Span::Within(_) | Span::Empty => return None,
        };
        let unbounded_below = low == Version::release(0, 0, 0) || low == Version::lowest(0, 0, 0);
        let candidate = if unbounded_below {
            self.below_upper_bound()?
        } else {
            match Line::of(&low).next_start() {
                Some(end) if low.is_release() => format!(">={low} <{}", end.without_pre()),
                // With a prerelease bound, prereleases of the next line would match `<end`.
                Some(end) => format!(">={low} <{end}"),
                None => format!(">={low}"),
            }
        };
        // Only ever suggest what this module itself finds bounded.
        Constraint::parse(&candidate)
            .is_ok_and(|c| matches!(c.span(), Span::Within(_)))
            .then_some(candidate)
    }

    /// A range covering the top of the constraint: its highest upper bound, cut to the line
    /// below it.
    fn below_upper_bound(&self) -> Option<String> {
        let highest = self
            .alternatives
            .iter()
            .flat_map(|a| a.region.pieces.iter())
            .map(|piece| piece.hi.clone())
            .max_by(cmp_upper)?;
        let (bound, inclusive) = match highest {
            Upper::Unbounded => return None,
            Upper::Incl(v) => (v, true),
            Upper::Excl(v) => (v, false),
        };
        let at_line_start = bound.patch == 0
            && (bound.major == 0 || bound.minor == 0)
            && (bound.pre.is_empty() || bound.pre == [Ident::Number(0)]);
        if inclusive || !at_line_start {
            let start = Line::of(&bound).start().without_pre();
            let op = if inclusive { "<=" } else { "<" };
            let bound = if bound.pre == [Ident::Number(0)] {
                bound.without_pre()
            } else {
                bound
            };
            return Some(format!(">={start} {op}{bound}"));
        }
        let below = match Line::of(&bound) {
            Line::Major(major) if major >= 2 => Line::Major(major - 1),
            Line::ZeroMinor(minor) if minor >= 1 => Line::ZeroMinor(minor - 1),
            // Below 1.0.0 lie all the 0.x lines: no single one to suggest.
            _ => return None,
        };
        Some(below.range())
    }
}

// ---------------------------------------------------------------------------------------
// Explanations of refusals: Masterminds says only "improper constraint: <alternative>" or
// "constraint parser error"; these say what is wrong. They never decide anything.

const COMPARISON: &str = "a comparison is an operator (=, !=, >, <, >=, <=, ~, ^ or none) and a version such as 1.2.3, 1.2, 1.x or *";

/// Why an alternative does not follow the grammar.
fn alternative_hint(alternative: &str, text: &str, rewritten: bool) -> String {
    let note = if rewritten {
        format!(
            " (Masterminds first rewrites each `A - B` range of `{text}` into `>= A, <= B `, then splits the text at `||`)"
        )
    } else {
        String::new()
    };
    if text
        .trim_matches(|c: char| c.is_ascii_whitespace())
        .is_empty()
    {
        return "the range is empty".to_string();
    }
    if alternative
        .trim_matches(|c: char| c.is_ascii_whitespace())
        .is_empty()
    {
        return format!("an alternative around `||` is empty{note}");
    }
    let tokens = alternative
        .split(|c: char| c == ',' || c.is_ascii_whitespace())
        .filter(|t| !t.is_empty());
    let op_chars = |c: char| matches!(c, '=' | '!' | '<' | '>' | '~' | '^');
    for token in tokens {
        let version = token.trim_start_matches(op_chars);
        if (version.is_empty() && Op::parse(token).is_some()) || token == "-" {
            continue; // an operator, its version after a space; a hyphen range's `-`
        }
        let op = &token[..token.len() - version.len()];
        if Op::parse(op).is_none() {
            return format!("`{token}`: `{op}` is not an operator; {COMPARISON}{note}");
        }
        let is_version = |text: &str| {
            GRAMMAR
                .as_ref()
                .is_some_and(|g| g.comparison.is_match(text))
        };
        if let Some(at) = version.find(op_chars)
            && at > 0
            && is_version(&version[..at])
        {
            return format!("`{token}`: comparisons must be separated by a space or a comma{note}");
        }
        if version.contains('|') {
            return format!(
                "`{token}`: a single `|` is not an operator; alternatives are separated by `||`{note}"
            );
        }
        if version.starts_with('V') && is_version(&version[1..]) {
            return format!("`{token}`: only a lower-case `v` may come before a version{note}");
        }
        if !is_version(version) {
            return format!("`{token}` is not a comparison: {COMPARISON}{note}");
        }
    }
    if alternative.contains(",,") || alternative.trim_end().ends_with(',') {
        return format!("comparisons are separated by a space or by one comma{note}");
    }
    format!(
        "it does not follow Masterminds' grammar: {COMPARISON}; comparisons are separated by spaces or a comma, alternatives by `||`{note}"
    )
}

/// Why a version that follows the grammar is not one.
fn version_hint(version: &str) -> String {
    if version.contains('|') {
        return format!(
            "`{version}`: a single `|` is not an operator; alternatives are separated by `||`"
        );
    }
    let numbers = version.split(['-', '+']).next().unwrap_or(version);
    let numbers = numbers.strip_prefix('v').unwrap_or(numbers);
    for part in numbers.split('.') {
        // A wildcard ends the version: Masterminds ignores what follows it.
        if is_x(part) {
            break;
        }
        if part.bytes().all(|b| b.is_ascii_digit()) {
            if part.parse::<u64>().is_err() {
                return format!("`{version}`: `{part}` is too large for a version number");
            }
        } else {
            return format!(
                "`{version}`: `{part}` is not a number or a wildcard (x, X or * alone)"
            );
        }
    }
    if let Some((_, pre)) = version.split_once('-') {
        let pre = pre.split('+').next().unwrap_or(pre);
        if let Some(ident) = pre
            .split('.')
            .find(|i| i.len() > 1 && i.starts_with('0') && i.bytes().all(|b| b.is_ascii_digit()))
        {
            return format!(
                "`{version}`: the prerelease identifier `{ident}` is a number that starts with 0"
            );
        }
    }
    format!("`{version}` is not a version")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::sample::select;

    fn v(text: &str) -> Version {
        Version::parse(text).expect("a version")
    }

    /// Masterminds' predicates, translated line by line from constraints.go (v3.4.0): the
    /// reference the intervals are held to on versions the table's grid does not have.
    fn masterminds_check(atom: &Atom, v: &Version, include_pre: bool) -> bool {
        let c = &atom.version;
        let dirty = atom.wildcard != Wildcard::None;
        let minor_dirty = atom.wildcard == Wildcard::Minor;
        let patch_dirty = atom.wildcard == Wildcard::Patch;
        if !v.pre.is_empty() && !include_pre {
            return false;
        }
        let tilde = || {
            if v < c {
                return false;
            }
            if c.major == 0 && c.minor == 0 && c.patch == 0 && !minor_dirty && !patch_dirty {
                return true;
            }
            if v.major != c.major {
                return false;
            }
            if v.minor != c.minor && !minor_dirty {
                return false;
            }
            true
        };
        match atom.op {
            Op::Eq if dirty => tilde(),
            Op::Eq => v == c,
            Op::Tilde => tilde(),
            Op::Ne => {
                if dirty {
                    if c.major != v.major {
                        return true;
                    }
                    if c.minor != v.minor && !minor_dirty {
                        return true;
                    } else if minor_dirty {
                        return false;
                    } else if c.patch != v.patch && !patch_dirty {
                        return true;
                    } else if patch_dirty {
                        if !v.pre.is_empty() || !c.pre.is_empty() {
                            return v.pre != c.pre;
                        }
                        return false;
                    }
                }
                v != c
            }
            Op::Gt => {
                if !dirty {
                    return v > c;
                }
                if v.major > c.major {
                    true
                } else if v.major < c.major || minor_dirty {
                    false
                } else if patch_dirty {
                    v.minor > c.minor
                } else {
                    v > c
                }
            }
            Op::Lt => v < c,
            Op::Ge => v >= c,
            Op::Le => {
                if !dirty {
                    return v <= c;
                }
                !(v.major > c.major || (v.major == c.major && v.minor > c.minor && !minor_dirty))
            }
            Op::Caret => {
                if v < c {
                    return false;
                }
                if c.major > 0 || minor_dirty {
                    return v.major == c.major;
                }
                if v.major > 0 {
                    return false;
                }
                if c.minor > 0 || patch_dirty {
                    return v.minor == c.minor;
                }
                if v.minor > 0 {
                    return false;
                }
                c.patch == v.patch
            }
        }
    }

    fn masterminds_accepts(constraint: &Constraint, v: &Version) -> bool {
        constraint.alternatives.iter().any(|a| {
            a.atoms
                .iter()
                .all(|atom| masterminds_check(atom, v, a.prereleases))
        })
    }

    #[test]
    fn the_grammar_compiles() {
        assert!(GRAMMAR.is_some());
    }

    #[test]
    fn precedence_follows_semver() {
        let ordered = [
            "0.0.0-0",
            "0.0.0",
            "1.0.0-0",
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.0.1-0",
            "1.0.1",
            "2.0.0",
        ];
        for pair in ordered.windows(2) {
            assert!(v(pair[0]) < v(pair[1]), "{} < {}", pair[0], pair[1]);
        }
    }

    #[test]
    fn successors_leave_no_gap() {
        assert_eq!(v("1.2.3").successor(), Some(v("1.2.4-0")));
        assert_eq!(v("1.2.3-rc").successor(), Some(v("1.2.3-rc.0")));
        assert_eq!(
            Version::release(1, 2, u64::MAX).successor(),
            Some(v("1.3.0-0"))
        );
    }

    #[test]
    fn versions_read_as_new_version_reads_them() {
        assert_eq!(Version::parse("v01.2"), Some(Version::release(1, 2, 0)));
        assert_eq!(
            Version::parse("1.2.3+build.5"),
            Some(Version::release(1, 2, 3))
        );
        for refused in [
            "1.2.3-01",
            "1.2.3.4",
            "V1",
            "1.x",
            "",
            "18446744073709551616",
        ] {
            assert_eq!(Version::parse(refused), None, "{refused}");
        }
    }

    #[test]
    fn strict_versions_need_three_numbers_without_leading_zeros() {
        assert!(Version::parse_strict("v1.2.3-rc.1+build.5").is_some());
        for refused in [
            "1.2", "1.2.x", "1.2.3.4", "1.2.3-01", "01.2.3", "latest", "1.2.3+", "V1.2.3",
        ] {
            assert!(Version::parse_strict(refused).is_none(), "{refused}");
        }
    }

    #[test]
    fn hyphen_ranges_are_rewritten_before_the_split_at_double_bars() {
        let grammar = GRAMMAR.as_ref().expect("compiles");
        let (text, swallowed) = rewrite_ranges(grammar, "1||1.0.0 - 1.5.0");
        assert_eq!(text, ">= 1||1.0.0, <= 1.5.0 ");
        assert!(swallowed);
        let constraint = Constraint::parse("1||1.0.0 - 1.5.0").expect("Masterminds reads it");
        assert!(constraint.matches(&v("10.0.0")));
        assert_eq!(constraint.reread(), Some(">= 1||1.0.0, <= 1.5.0 "));
        // The replacement goes to the first copy of the matched text.
        let (text, _) = rewrite_ranges(grammar, "0 - 1 - 2 1 - 2");
        assert_eq!(text, ">= 0, <=>= 1, <= 2  1 - 2");
    }

    #[test]
    fn an_excluded_minor_in_a_prerelease_alternative_keeps_its_prereleases() {
        let constraint = Constraint::parse(">=1.2.0-0 <1.3.0 !=1.2.x").expect("parses");
        assert!(!constraint.matches(&v("1.2.5")));
        assert!(constraint.matches(&v("1.2.5-rc.1")));
        assert_eq!(
            constraint.lowest_from(&Lower::Unbounded),
            Some(v("1.2.0-0"))
        );
        // Every release of 1.2 excluded, and the prereleases named: the next one is found.
        let constraint = Constraint::parse("1.2.3 - 1.2.4 !=1.2.x !=1.2.x-0").expect("parses");
        assert_eq!(constraint.span(), Span::Within(Line::Major(1)));
        assert_eq!(
            constraint.lowest_from(&Lower::Unbounded),
            Some(v("1.2.4-0.0"))
        );
    }

    #[test]
    fn the_longest_range_read_is_judged_and_a_longer_one_is_refused() {
        // The worst case for the rewriting: as many distinct hyphen ranges as fit, each
        // searched for from the start of the text.
        let mut ranges = String::new();
        for i in 0.. {
            let range = format!("{i} - {i} ");
            if ranges.len() + range.len() > MAX_LEN {
                break;
            }
            ranges.push_str(&range);
        }
        // `>= 0, <= 0 >= 1, <= 1 ...`, all in one alternative: nothing.
        assert!(Constraint::parse(&ranges).is_ok_and(|c| c.span() == Span::Empty));
        let exclusions = format!(
            ">=1.2.3-0 <1.2.4 {}",
            "!=1.2.x-0.0.0.0.0.0.0.0 ".repeat(160)
        );
        assert!(exclusions.len() <= MAX_LEN);
        assert!(Constraint::parse(&exclusions).is_ok_and(|c| c.span() != Span::Empty));
        assert_eq!(
            Constraint::parse(&"1 ".repeat(MAX_LEN)).map(|_| ()),
            Err(ParseError::TooLong)
        );
    }

    // Random constraints in the style of the oracle's generator (gen.py), and random versions
    // around their numbers.

    fn part() -> impl Strategy<Value = &'static str> {
        select(vec![
            "0",
            "1",
            "2",
            "3",
            "10",
            "x",
            "X",
            "*",
            "01",
            "5",
            "18446744073709551615",
        ])
    }

    fn version_text() -> impl Strategy<Value = String> {
        (
            prop::collection::vec(part(), 1..=3),
            select(vec!["", "", "", "v", "V"]),
            select(vec![
                "", "", "", "-0", "-rc.1", "-alpha", "-1", "-beta.2", "-a-b", "-01", "-0.0",
            ]),
            select(vec!["", "", "", "+build.1"]),
        )
            .prop_map(|(parts, v, pre, build)| format!("{v}{}{pre}{build}", parts.join(".")))
    }

    fn atom_text() -> impl Strategy<Value = String> {
        (
            select(vec![
                "", "=", "!=", ">", "<", ">=", "=>", "<=", "=<", "~", "~>", "^", "==", "!",
            ]),
            select(vec!["", "", " "]),
            version_text(),
        )
            .prop_map(|(op, space, version)| format!("{op}{space}{version}"))
    }

    fn group_text() -> impl Strategy<Value = String> {
        prop_oneof![
            (
                version_text(),
                select(vec![" - ", " -  ", "-", " -"]),
                version_text()
            )
                .prop_map(|(a, sep, b)| format!("{a}{sep}{b}")),
            (
                atom_text(),
                prop::collection::vec(
                    (
                        select(vec![" ", ", ", ",", "  ", "\t", ",,", ""]),
                        atom_text()
                    ),
                    0..3
                )
            )
                .prop_map(|(first, rest)| {
                    rest.into_iter()
                        .fold(first, |out, (sep, atom)| out + sep + &atom)
                }),
        ]
    }

    fn constraint_text() -> impl Strategy<Value = String> {
        (
            group_text(),
            prop::collection::vec(
                (
                    select(vec!["||", " || ", "|| ", " ||", "|", "|||"]),
                    group_text(),
                ),
                0..3,
            ),
        )
            .prop_map(|(first, rest)| {
                rest.into_iter()
                    .fold(first, |out, (sep, group)| out + sep + &group)
            })
    }

    fn any_version() -> impl Strategy<Value = Version> {
        (
            select(vec![0u64, 1, 2, 3, 4, 5, 9, 10, 11, u64::MAX]),
            select(vec![0u64, 1, 2, 3, 5, 10, u64::MAX]),
            select(vec![0u64, 1, 2, 3, 4, 5, u64::MAX]),
            select(vec![
                "", "", "0", "0.0", "1", "alpha", "rc.1", "beta.2", "a-b", "rc.1.0",
            ]),
        )
            .prop_map(|(major, minor, patch, pre)| Version {
                major,
                minor,
                patch,
                pre: if pre.is_empty() {
                    Vec::new()
                } else {
                    pre.split('.').map(Ident::parse).collect()
                },
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// The intervals accept exactly what Masterminds' predicates accept.
        #[test]
        fn the_intervals_are_masterminds_predicates(
            text in constraint_text(),
            versions in prop::collection::vec(any_version(), 16),
        ) {
            if let Ok(constraint) = Constraint::parse(&text) {
                for version in &versions {
                    prop_assert_eq!(
                        constraint.matches(version),
                        masterminds_accepts(&constraint, version),
                        "{:?} ~ {}", text, version
                    );
                }
                // The lowest version found is accepted, and nothing below it is.
                if let Some(low) = constraint.lowest_from(&Lower::Unbounded) {
                    prop_assert!(masterminds_accepts(&constraint, &low), "{:?}: {}", text, low);
                    for version in versions.iter().filter(|v| **v < low) {
                        prop_assert!(!masterminds_accepts(&constraint, version), "{:?}: {} < {}", text, version, low);
                    }
                }
            }
        }

        /// Any text: an answer, never a panic.
        #[test]
        fn any_text_is_read_or_refused(text in ".{0,64}|[0-9|xX*v .,<>=!~^+-]{0,64}") {
            if let Ok(constraint) = Constraint::parse(&text) {
                let _ = constraint.span();
                let _ = constraint.bounded_suggestion();
            }
        }
    }
}
