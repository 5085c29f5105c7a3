//! Semantic version constraints as Flux evaluates them (`OCIRepository.spec.ref.semver`,
//! HelmChart versions...): the grammar and matching rules of Masterminds/semver v3, which
//! source-controller uses, turned into sets of version intervals so that questions about *all*
//! the versions a constraint accepts ("do they share one major version?") are answered by
//! interval arithmetic instead of by looking at the text.
//!
//! # Grammar (Masterminds/semver v3 `NewConstraint`)
//! - `||` separates alternatives (OR); within one, atoms are separated by spaces or by one comma
//!   with optional spaces around it (AND). At most 512 bytes and 32 alternatives.
//! - An atom is an optional operator (`=`, `!=`, `>`, `<`, `>=`, `=>`, `<=`, `=<`, `~`, `~>`,
//!   `^`; none means `=`), optional spaces, and a version: an optional `v`, one to three
//!   dot-separated parts each a number or a wildcard (`x`, `X`, `*`), an optional `-prerelease`
//!   and an optional `+build` (ignored). Missing parts are wildcards.
//! - `A - B` (spaces around the hyphen) means `>= A, <= B`.
//!
//! # Matching (what each atom accepts)
//! Wildcards make an atom "dirty" and change what the operators mean, exactly as in
//! Masterminds' predicates: `1.2.x` and `~1.2` are `>=1.2.0 <1.3.0`, `^1.2` is
//! `>=1.2.0 <2.0.0`, `^0.2` is `>=0.2.0 <0.3.0`, `^0.0.3` is `>=0.0.3 <0.0.4`, `>1` is
//! `>=2.0.0`, `<=1.x` is `<2.0.0`, `*` is everything. A prerelease version is accepted only
//! by an alternative in which some atom names a prerelease (`>=1.0.0-0`); otherwise only
//! releases are.
//!
//! Two corner cases of Masterminds' `!=` with a wildcard patch in an alternative that accepts
//! prereleases exclude isolated versions no interval can describe; they are taken to exclude
//! nothing, so the computed set may be larger than Flux's, never smaller. Every verdict built
//! on it errs on the side of "more versions".

use std::cmp::Ordering;
use std::fmt;

/// Masterminds' `MaxConstraintLen`.
pub const MAX_LEN: usize = 512;
/// Masterminds' `MaxConstraintGroups`.
pub const MAX_ALTERNATIVES: usize = 32;

/// Why a constraint does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("is empty")]
    Empty,
    #[error("is longer than {MAX_LEN} bytes")]
    TooLong,
    #[error("has more than {MAX_ALTERNATIVES} alternatives separated by ||")]
    TooManyAlternatives,
    #[error("has an empty alternative around ||")]
    EmptyAlternative,
    #[error(
        "`{0}` is not a comparison: expected an operator (=, !=, >, <, >=, <=, ~, ^) and a version such as 1.2.3, 1.2, 1.x or *"
    )]
    BadAtom(String),
    #[error("`{0}`: comparisons must be separated by a space or a comma")]
    NoSeparator(String),
    #[error("`{0}` has a number too large for a version")]
    Overflow(String),
    #[error("`{0}` has a prerelease with a numeric part that starts with 0")]
    LeadingZero(String),
}

/// One dot-separated identifier of a prerelease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ident {
    Number(u64),
    Text(String),
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

    /// `major.minor.patch-0`, the lowest version of that triple (below every other prerelease).
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

    /// Parses a full version (`1.2.3`, `v1.2.3-rc.1+build`): what a tag must look like to
    /// name one release. Partial versions (`1.2`) and wildcards are not versions.
    pub fn parse_full(text: &str) -> Option<Version> {
        let mut cursor = Cursor::new(text);
        let parts = cursor.version_parts().ok()?;
        if !cursor.at_end() || parts.segments.len() != 3 {
            return None;
        }
        let mut numbers = [0u64; 3];
        for (slot, segment) in numbers.iter_mut().zip(&parts.segments) {
            match segment {
                Segment::Number(n) => *slot = *n,
                Segment::Wildcard => return None,
            }
        }
        Some(Version {
            major: numbers[0],
            minor: numbers[1],
            patch: numbers[2],
            pre: parts.pre,
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

    /// Whether the interval and `other` overlap or touch (their union is one interval).
    fn joins(&self, other: &Interval) -> bool {
        // `self` starts first.
        match (&self.hi, &other.lo) {
            (Upper::Unbounded, _) | (_, Lower::Unbounded) => true,
            (Upper::Incl(h), Lower::Incl(l))
            | (Upper::Incl(h), Lower::Excl(l))
            | (Upper::Excl(h), Lower::Incl(l)) => l <= h,
            (Upper::Excl(h), Lower::Excl(l)) => l < h,
        }
    }
}

/// A union of intervals, sorted and merged.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Set(Vec<Interval>);

impl Set {
    fn everything() -> Set {
        Set(vec![Interval::EVERYTHING])
    }

    fn of(intervals: Vec<Interval>) -> Set {
        let mut intervals: Vec<Interval> = intervals
            .into_iter()
            .filter(|i| i.first(Layer::All).is_some())
            .collect();
        intervals.sort_by(|a, b| cmp_lower(&a.lo, &b.lo));
        let mut merged: Vec<Interval> = Vec::with_capacity(intervals.len());
        for interval in intervals {
            match merged.last_mut() {
                Some(last) if last.joins(&interval) => {
                    if cmp_upper(&interval.hi, &last.hi) == Ordering::Greater {
                        last.hi = interval.hi;
                    }
                }
                _ => merged.push(interval),
            }
        }
        Set(merged)
    }

    fn intersect(&self, other: &Set) -> Set {
        let mut out = Vec::new();
        for a in &self.0 {
            for b in &other.0 {
                out.push(a.intersect(b));
            }
        }
        Set::of(out)
    }

    /// Everything but `[lo, hi)`.
    fn outside(lo: Version, hi: Option<Version>) -> Set {
        let mut parts = vec![Interval {
            lo: Lower::Unbounded,
            hi: Upper::Excl(lo),
        }];
        if let Some(hi) = hi {
            parts.push(Interval::from(hi));
        }
        Set::of(parts)
    }
}

// ---------------------------------------------------------------------------------------
// Parsing

/// The operator of one comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// `=`, or no operator.
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

/// The first part of a version that is a wildcard (or missing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wildcard {
    None,
    Major,
    Minor,
    Patch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Segment {
    Number(u64),
    Wildcard,
}

/// A version as written in a constraint.
struct Parts {
    segments: Vec<Segment>,
    pre: Vec<Ident>,
}

/// One comparison: `>=1.2.0`, `~1.x`, `!=1.4.2-rc.1`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Atom {
    op: Op,
    /// The version with wildcards as zeros, as Masterminds compares with it.
    version: Version,
    wildcard: Wildcard,
}

/// A parsed constraint: alternatives (OR) of comparisons (AND).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    alternatives: Vec<Vec<Atom>>,
}

struct Cursor<'t> {
    text: &'t str,
    pos: usize,
}

fn is_space(b: u8) -> bool {
    // Go's `\s`.
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0c' | b'\r')
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-'
}

impl<'t> Cursor<'t> {
    fn new(text: &'t str) -> Self {
        Cursor { text, pos: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.text.len()
    }

    fn skip_spaces(&mut self) -> usize {
        let start = self.pos;
        while self.peek().is_some_and(is_space) {
            self.pos += 1;
        }
        self.pos - start
    }

    fn take_while(&mut self, pred: impl Fn(u8) -> bool) -> &'t str {
        let start = self.pos;
        while self.peek().is_some_and(&pred) {
            self.pos += 1;
        }
        &self.text[start..self.pos]
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn segment(&mut self) -> Result<Segment, Fault> {
        let run = self.take_while(|b| b.is_ascii_digit() || matches!(b, b'x' | b'X' | b'*'));
        match run {
            "" => Err(Fault::NotAVersion),
            "x" | "X" | "*" => Ok(Segment::Wildcard),
            digits if digits.bytes().all(|b| b.is_ascii_digit()) => digits
                .parse()
                .map(Segment::Number)
                .map_err(|_| Fault::Overflow),
            // `1x`, `**`: Masterminds' scanner takes them and its version parser refuses them.
            _ => Err(Fault::NotAVersion),
        }
    }

    /// Dot-separated identifiers after `-` or `+`.
    fn identifiers(&mut self) -> Result<Vec<&'t str>, Fault> {
        let mut out = Vec::new();
        loop {
            let ident = self.take_while(is_ident_byte);
            if ident.is_empty() {
                return Err(Fault::NotAVersion);
            }
            out.push(ident);
            let save = self.pos;
            if !(self.eat(b'.') && self.peek().is_some_and(is_ident_byte)) {
                self.pos = save;
                return Ok(out);
            }
        }
    }

    /// `v? seg(.seg(.seg)?)? (-pre)? (+build)?`. On error the cursor is where it started.
    fn version_parts(&mut self) -> Result<Parts, Fault> {
        let start = self.pos;
        let parsed = self.version_parts_inner();
        if parsed.is_err() {
            self.pos = start;
        }
        parsed
    }

    fn version_parts_inner(&mut self) -> Result<Parts, Fault> {
        self.eat(b'v');
        let mut segments = vec![self.segment()?];
        for _ in 0..2 {
            let save = self.pos;
            if !self.eat(b'.') {
                break;
            }
            match self.segment() {
                Ok(segment) => segments.push(segment),
                Err(Fault::NotAVersion) => {
                    self.pos = save;
                    return Err(Fault::NotAVersion);
                }
                Err(fault) => return Err(fault),
            }
        }
        let mut pre = Vec::new();
        if self.eat(b'-') {
            for ident in self.identifiers()? {
                pre.push(prerelease_ident(ident)?);
            }
        }
        if self.eat(b'+') {
            self.identifiers()?;
        }
        Ok(Parts { segments, pre })
    }
}

/// Why the text at some place is not a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    NotAVersion,
    Overflow,
    LeadingZero,
}

/// A prerelease identifier. Masterminds refuses numeric ones with a leading zero; a number
/// too large for u64 compares as text, as in Masterminds.
fn prerelease_ident(text: &str) -> Result<Ident, Fault> {
    if text.bytes().all(|b| b.is_ascii_digit()) {
        if text.len() > 1 && text.starts_with('0') {
            return Err(Fault::LeadingZero);
        }
        return Ok(text
            .parse()
            .map(Ident::Number)
            .unwrap_or_else(|_| Ident::Text(text.to_string())));
    }
    Ok(Ident::Text(text.to_string()))
}

impl Atom {
    fn new(op: Op, parts: Parts) -> Atom {
        let number = |i: usize| match parts.segments.get(i) {
            Some(Segment::Number(n)) => Some(*n),
            _ => None,
        };
        let (wildcard, major, minor, patch) = match (number(0), number(1), number(2)) {
            (None, _, _) => (Wildcard::Major, 0, 0, 0),
            (Some(major), None, _) => (Wildcard::Minor, major, 0, 0),
            (Some(major), Some(minor), None) => (Wildcard::Patch, major, minor, 0),
            (Some(major), Some(minor), Some(patch)) => (Wildcard::None, major, minor, patch),
        };
        Atom {
            op,
            version: Version {
                major,
                minor,
                patch,
                pre: parts.pre,
            },
            wildcard,
        }
    }

    /// The versions this comparison accepts, before the prerelease rule of its alternative.
    fn set(&self, prereleases: bool) -> Set {
        let c = &self.version;
        let (major, minor) = (c.major, c.minor);
        let next_major = || c.next_major();
        let next_minor = || Version::lowest(major, minor, 0).next_minor();
        let everything_from = |v: Version| Set(vec![Interval::from(v)]);
        match (self.op, self.wildcard) {
            (Op::Eq, Wildcard::None) => Set(vec![Interval {
                lo: Lower::Incl(c.clone()),
                hi: Upper::Incl(c.clone()),
            }]),
            (Op::Eq, _) | (Op::Tilde, _) => self.tilde(),
            // `!=*` excludes only 0.0.0: Masterminds compares the zeroed version.
            (Op::Ne, Wildcard::None | Wildcard::Major) => Set::of(vec![
                Interval {
                    lo: Lower::Unbounded,
                    hi: Upper::Excl(c.clone()),
                },
                Interval {
                    lo: Lower::Excl(c.clone()),
                    hi: Upper::Unbounded,
                },
            ]),
            (Op::Ne, Wildcard::Minor) => Set::outside(Version::lowest(major, 0, 0), next_major()),
            (Op::Ne, Wildcard::Patch) if !prereleases => {
                Set::outside(Version::lowest(major, minor, 0), next_minor())
            }
            // Excludes the releases of the minor version but not its prereleases: no interval
            // says that, so nothing is excluded (see the module documentation).
            (Op::Ne, Wildcard::Patch) => Set::everything(),
            (Op::Gt, Wildcard::None | Wildcard::Major) => Set(vec![Interval {
                lo: Lower::Excl(c.clone()),
                hi: Upper::Unbounded,
            }]),
            (Op::Gt, Wildcard::Minor) => next_major().map_or(Set(Vec::new()), everything_from),
            (Op::Gt, Wildcard::Patch) => next_minor().map_or(Set(Vec::new()), everything_from),
            (Op::Lt, _) => Set(vec![Interval {
                lo: Lower::Unbounded,
                hi: Upper::Excl(c.clone()),
            }]),
            (Op::Ge, _) => everything_from(c.clone()),
            (Op::Le, Wildcard::None) => Set(vec![Interval {
                lo: Lower::Unbounded,
                hi: Upper::Incl(c.clone()),
            }]),
            // `<=*` accepts only 0.0.x: Masterminds' dirty `<=` keeps the zeroed major and minor.
            (Op::Le, Wildcard::Major) => Set(vec![Interval {
                lo: Lower::Unbounded,
                hi: Upper::Excl(Version::lowest(0, 1, 0)),
            }]),
            (Op::Le, Wildcard::Minor) => Set(vec![Interval {
                lo: Lower::Unbounded,
                hi: Upper::below(next_major()),
            }]),
            (Op::Le, Wildcard::Patch) => Set(vec![Interval {
                lo: Lower::Unbounded,
                hi: Upper::below(next_minor()),
            }]),
            (Op::Caret, wildcard) => {
                let upper = if major > 0 || wildcard == Wildcard::Minor {
                    next_major()
                } else if minor > 0 || wildcard == Wildcard::Patch {
                    next_minor()
                } else {
                    // ^0.0.3 (and Masterminds' ^*, zeroed to ^0.0.0): that patch only.
                    Version::lowest(0, 0, c.patch).successor_patch()
                };
                Set::of(vec![Interval::range(c.clone(), upper)])
            }
        }
    }

    fn tilde(&self) -> Set {
        let c = &self.version;
        let zero = c.major == 0 && c.minor == 0 && c.patch == 0;
        let upper = match self.wildcard {
            // `~0.0.0`, `~*`, `*`: from 0.0.0 on, without end.
            Wildcard::None | Wildcard::Major if zero => {
                return Set::of(vec![Interval::from(c.clone())]);
            }
            Wildcard::Minor => c.next_major(),
            _ => Version::lowest(c.major, c.minor, 0).next_minor(),
        };
        Set::of(vec![Interval::range(c.clone(), upper)])
    }
}

impl Constraint {
    /// Parses a constraint as Masterminds/semver v3 `NewConstraint` does.
    pub fn parse(text: &str) -> Result<Constraint, ParseError> {
        if text.len() > MAX_LEN {
            return Err(ParseError::TooLong);
        }
        if text.trim().is_empty() {
            return Err(ParseError::Empty);
        }
        let groups: Vec<&str> = text.split("||").collect();
        if groups.len() > MAX_ALTERNATIVES {
            return Err(ParseError::TooManyAlternatives);
        }
        let alternatives = groups
            .into_iter()
            .map(parse_alternative)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Constraint { alternatives })
    }

    /// The intervals each alternative accepts, with the layer it draws from.
    fn pieces(&self) -> Vec<(Interval, Layer)> {
        let mut pieces = Vec::new();
        for atoms in &self.alternatives {
            let prereleases = atoms.iter().any(|a| !a.version.is_release());
            let layer = if prereleases {
                Layer::All
            } else {
                Layer::Releases
            };
            let set = atoms.iter().fold(Set::everything(), |set, atom| {
                set.intersect(&atom.set(prereleases))
            });
            pieces.extend(set.0.into_iter().map(|interval| (interval, layer)));
        }
        pieces
    }

    /// The intervals each alternative accepts with their first version, in the layer the
    /// alternative draws from.
    fn accepted(&self) -> Vec<(Interval, Layer, Version)> {
        self.pieces()
            .into_iter()
            .filter_map(|(interval, layer)| {
                let first = interval.first(layer)?;
                Some((interval, layer, first))
            })
            .collect()
    }

    /// Whether Flux would pick `version` from the tags: some alternative accepts it, and
    /// if it is a prerelease, that alternative names a prerelease.
    pub fn matches(&self, version: &Version) -> bool {
        let point = Interval {
            lo: Lower::Incl(version.clone()),
            hi: Upper::Incl(version.clone()),
        };
        self.pieces().into_iter().any(|(interval, layer)| {
            (layer == Layer::All || version.is_release())
                && interval.intersect(&point).first(layer).is_some()
        })
    }

    /// Which versions the constraint accepts, by [`Line`].
    pub fn span(&self) -> Span {
        let accepted = self.accepted();
        let Some(low) = accepted.iter().map(|(_, _, first)| first).min().cloned() else {
            return Span::Empty;
        };
        // Every accepted version is at or above `low`: the lowest one in another line is
        // the lowest one at or above the next line's start.
        let lowest_from = |from: Option<Version>| {
            let from = from?;
            let rest = Interval {
                lo: Lower::Incl(from),
                hi: Upper::Unbounded,
            };
            accepted
                .iter()
                .filter_map(|(interval, layer, _)| interval.intersect(&rest).first(*layer))
                .min()
        };
        let line = Line::of(&low);
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
            .accepted()
            .into_iter()
            .map(|(interval, _, _)| interval.hi)
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

fn parse_alternative(group: &str) -> Result<Vec<Atom>, ParseError> {
    if group.bytes().all(is_space) {
        return Err(ParseError::EmptyAlternative);
    }
    let mut cursor = Cursor::new(group);
    let mut atoms = Vec::new();
    cursor.skip_spaces();
    loop {
        let (op_text, op, parts) = atom(&mut cursor, group)?;
        // `A - B` is a hyphen range: two bare versions, spaces around the hyphen.
        let after = cursor.pos;
        if op_text.is_empty() && cursor.skip_spaces() > 0 && cursor.eat(b'-') {
            if cursor.skip_spaces() == 0 {
                return Err(bad_atom(group, after));
            }
            let upper_start = cursor.pos;
            let upper = cursor
                .version_parts()
                .map_err(|fault| fault.error(group, upper_start))?;
            atoms.push(Atom::new(Op::Ge, parts));
            atoms.push(Atom::new(Op::Le, upper));
        } else {
            cursor.pos = after;
            atoms.push(Atom::new(op, parts));
        }
        if !separator(&mut cursor, group)? {
            break;
        }
    }
    Ok(atoms)
}

/// Consumes what separates two comparisons; `false` at the end of the alternative.
fn separator(cursor: &mut Cursor<'_>, group: &str) -> Result<bool, ParseError> {
    let before = cursor.pos;
    let spaces = cursor.skip_spaces();
    if cursor.at_end() {
        return Ok(false);
    }
    if cursor.eat(b',') {
        cursor.skip_spaces();
        return Ok(true);
    }
    if spaces == 0 {
        return Err(ParseError::NoSeparator(group[before..].trim().to_string()));
    }
    Ok(true)
}

/// The token starting at `start`, for messages.
fn token_at(group: &str, start: usize) -> String {
    let rest = group[start..].trim_start_matches(|c: char| c.is_ascii() && is_space(c as u8));
    let token = rest
        .split(|c: char| c == ',' || (c.is_ascii() && is_space(c as u8)))
        .next()
        .unwrap_or(rest);
    if token.is_empty() { rest } else { token }.to_string()
}

fn bad_atom(group: &str, start: usize) -> ParseError {
    ParseError::BadAtom(token_at(group, start))
}

impl Fault {
    fn error(self, group: &str, start: usize) -> ParseError {
        let token = token_at(group, start);
        match self {
            Fault::NotAVersion => ParseError::BadAtom(token),
            Fault::Overflow => ParseError::Overflow(token),
            Fault::LeadingZero => ParseError::LeadingZero(token),
        }
    }
}

/// An operator and a version; the cursor is left after the version.
fn atom<'g>(cursor: &mut Cursor<'g>, group: &'g str) -> Result<(&'g str, Op, Parts), ParseError> {
    let start = cursor.pos;
    let op_text = cursor.take_while(|b| matches!(b, b'=' | b'!' | b'<' | b'>' | b'~' | b'^'));
    let op = Op::parse(op_text).ok_or_else(|| bad_atom(group, start))?;
    cursor.skip_spaces();
    let version_start = cursor.pos;
    let parts = cursor.version_parts().map_err(|fault| match fault {
        Fault::NotAVersion => bad_atom(group, start),
        other => other.error(group, version_start),
    })?;
    Ok((op_text, op, parts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Version {
        Version::parse_full(text).expect("full version")
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
    fn full_versions_need_three_numbers() {
        assert!(Version::parse_full("v1.2.3-rc.1+build.5").is_some());
        assert!(Version::parse_full("1.2").is_none());
        assert!(Version::parse_full("1.2.x").is_none());
        assert!(Version::parse_full("1.2.3.4").is_none());
        assert!(Version::parse_full("1.2.3-01").is_none());
        assert!(Version::parse_full("latest").is_none());
    }
}
