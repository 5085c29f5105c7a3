//! The set of identities a pattern accepts, as an automaton, and what can be counted on it.
//!
//! A pattern's language L (the strings Go's `MatchString` accepts: `.*(?:P).*` matched whole,
//! so assertions see the whole identity) becomes a dense DFA over UTF-8 bytes (regex-automata).
//! Its product with a small *shape* automaton, which reads an identity as a URL
//! (`scheme://host/namespace/rest`), an email address (`local@domain`) or neither, is walked
//! once into a graph; every question the policy asks is then a count of paths in part of
//! that graph. Both automata are deterministic, so distinct paths are distinct strings, and a
//! count is exact: a cycle on a path that can still be accepted means infinitely many.
//!
//! Every step is bounded ([`LIMITS`]); a pattern whose automaton or graph would exceed a
//! bound is not analysed further, and the policy treats it as broad.

use std::collections::{HashMap, VecDeque};

use regex_automata::dfa::{Automaton, StartKind, dense};
use regex_automata::nfa::thompson;
use regex_automata::util::primitives::StateID;
use regex_automata::util::start;
use regex_automata::{Anchored, MatchKind};
use regex_syntax::hir::{Class, ClassUnicode, ClassUnicodeRange, Hir, Look, Repetition};

use super::go_syntax::fold_class;

/// The bounds of one pattern's analysis. Each is checked as the work proceeds, so a pattern
/// costs at most about this much whatever it says.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Heap of the Thompson NFA.
    pub nfa_bytes: usize,
    /// Heap of the DFA while it is determinized, and of the finished DFA.
    pub dfa_bytes: usize,
    /// Nodes of the product of the DFA with the shape automaton.
    pub nodes: usize,
    /// Edges of that product (transitions computed).
    pub edges: usize,
}

pub const LIMITS: Limits = Limits {
    nfa_bytes: 512 << 10,
    dfa_bytes: 2 << 20,
    nodes: 8192,
    edges: 262_144,
};

/// Which bound a pattern's analysis reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exceeded {
    Automaton,
    Graph,
}

/// A string's shape, as bits (a node may lead to several).
pub const URL: u8 = 1;
pub const EMAIL: u8 = 2;
pub const OTHER: u8 = 4;

/// The DFA of a pattern's language.
pub struct Language {
    dfa: dense::DFA<Vec<u32>>,
    start: StateID,
}

impl Language {
    /// The language Go's unanchored match gives `pattern`; with `fold`, of the lower-case
    /// images of its strings (`pattern` must then be lowered with folding too).
    pub fn new(pattern: Hir, fold: bool, limits: &Limits) -> Result<Language, Exceeded> {
        let mut any = ClassUnicode::new([ClassUnicodeRange::new('\0', '\u{10FFFF}')]);
        if fold {
            any = fold_class(&any);
        }
        let anything = || {
            Hir::repetition(Repetition {
                min: 0,
                max: None,
                greedy: true,
                sub: Box::new(Hir::class(Class::Unicode(any.clone()))),
            })
        };
        let whole = Hir::concat(vec![anything(), pattern, anything(), Hir::look(Look::End)]);
        let nfa = thompson::Compiler::new()
            .configure(
                thompson::Config::new()
                    .nfa_size_limit(Some(limits.nfa_bytes))
                    .which_captures(thompson::WhichCaptures::None)
                    .shrink(false),
            )
            .build_from_hir(&whole)
            .map_err(|_| Exceeded::Automaton)?;
        let dfa = dense::Builder::new()
            .configure(
                dense::Config::new()
                    .match_kind(MatchKind::All)
                    .start_kind(StartKind::Anchored)
                    .byte_classes(true)
                    .unicode_word_boundary(false)
                    .accelerate(false)
                    .specialize_start_states(false)
                    .minimize(false)
                    .determinize_size_limit(Some(limits.dfa_bytes))
                    .dfa_size_limit(Some(limits.dfa_bytes)),
            )
            .build_from_nfa(&nfa)
            .map_err(|_| Exceeded::Automaton)?;
        let start = dfa
            .start_state(&start::Config::new().anchored(Anchored::Yes))
            .map_err(|_| Exceeded::Automaton)?;
        Ok(Language { dfa, start })
    }

    /// The heap the DFA takes.
    pub fn memory_usage(&self) -> usize {
        self.dfa.memory_usage()
    }

    /// Whether the pattern accepts `text`.
    pub fn accepts(&self, text: &[u8]) -> bool {
        let mut state = self.start;
        for &b in text {
            state = self.dfa.next_state(state, b);
            if self.dfa.is_dead_state(state) {
                return false;
            }
        }
        self.dfa.is_match_state(self.dfa.next_eoi_state(state))
    }

    /// The state after `text`, if any string starting with it can still be accepted by the
    /// DFA alone.
    pub fn walk(&self, from: StateID, text: &[u8]) -> Option<StateID> {
        let mut state = from;
        for &b in text {
            state = self.dfa.next_state(state, b);
            if self.dfa.is_dead_state(state) {
                return None;
            }
        }
        Some(state)
    }

    /// The state after one byte, unless the DFA can no longer accept.
    pub fn next(&self, from: StateID, b: u8) -> Option<StateID> {
        let state = self.dfa.next_state(from, b);
        (!self.dfa.is_dead_state(state)).then_some(state)
    }

    pub fn start(&self) -> StateID {
        self.start
    }

    pub fn accepting(&self, state: StateID) -> bool {
        self.dfa.is_match_state(self.dfa.next_eoi_state(state))
    }
}

// ---------------------------------------------------------------------------------------
// The shape automaton.
//
// S reads a URL: `scheme "://" host "/" namespace "/" rest`, where scheme is
// `[A-Za-z][A-Za-z0-9+.-]*` and host and namespace are printable ASCII without `/`. Anything
// that starts like a URL but breaks that form is still URL-shaped (UrlOther), with no
// namespace. E reads an email address when the string is not a URL: `local "@" domain` with
// no other `@`, and a domain of letters, digits, `-` and `.`.

/// S's states.
pub mod s {
    pub const START: u8 = 0;
    pub const SCHEME: u8 = 1;
    pub const COLON: u8 = 2;
    pub const SLASH: u8 = 3;
    pub const HOST_START: u8 = 4;
    pub const HOST: u8 = 5;
    pub const NS_START: u8 = 6;
    pub const NS: u8 = 7;
    pub const REST: u8 = 8;
    pub const URL_OTHER: u8 = 9;
    pub const NOT_URL: u8 = 10;

    pub fn is_url(s: u8) -> bool {
        (HOST_START..=URL_OTHER).contains(&s)
    }
}

/// E's states.
pub mod e {
    pub const START: u8 = 0;
    pub const LOCAL: u8 = 1;
    pub const DOMAIN_START: u8 = 2;
    pub const DOMAIN: u8 = 3;
    pub const OTHER: u8 = 4;
}

/// A shape state: S and E.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shape {
    pub s: u8,
    pub e: u8,
}

/// A small deterministic automaton read beside a pattern's DFA: the graph's nodes are pairs of
/// a DFA state and a reader's state ([`Shape`], whose two bytes each reader reads its own way).
pub trait Reader {
    fn start(&self) -> Shape;
    fn step(&self, state: Shape, b: u8) -> Shape;
    /// Bytes of one category take every state to the same next state.
    fn category(&self, b: u8) -> u8;
    /// The bits of a string that ends in `state` (0: not counted).
    fn at_end(&self, state: Shape) -> u8;
}

/// Reads an identity as a URL, an email address or neither ([`URL`], [`EMAIL`], [`OTHER`]).
pub struct Shapes;

impl Reader for Shapes {
    fn start(&self) -> Shape {
        Shape::START
    }

    fn step(&self, state: Shape, b: u8) -> Shape {
        state.step(b)
    }

    fn category(&self, b: u8) -> u8 {
        Shape::category(b)
    }

    fn at_end(&self, state: Shape) -> u8 {
        state.at_end()
    }
}

impl Shape {
    pub const START: Shape = Shape {
        s: s::START,
        e: e::START,
    };

    fn step(self, b: u8) -> Shape {
        let graphic = (0x21..=0x7e).contains(&b);
        let ns = match self.s {
            s::START if b.is_ascii_alphabetic() => s::SCHEME,
            s::SCHEME if b.is_ascii_alphanumeric() || matches!(b, b'+' | b'.' | b'-') => s::SCHEME,
            s::SCHEME if b == b':' => s::COLON,
            s::COLON if b == b'/' => s::SLASH,
            s::SLASH if b == b'/' => s::HOST_START,
            s::START | s::SCHEME | s::COLON | s::SLASH | s::NOT_URL => s::NOT_URL,
            s::HOST_START | s::HOST if graphic && b != b'/' => s::HOST,
            s::HOST if b == b'/' => s::NS_START,
            s::NS_START | s::NS if graphic && b != b'/' => s::NS,
            s::NS if b == b'/' => s::REST,
            s::REST => s::REST,
            _ => s::URL_OTHER,
        };
        if s::is_url(ns) {
            return Shape { s: ns, e: e::OTHER };
        }
        let domain = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.');
        let ne = match self.e {
            e::START if b == b'@' => e::OTHER,
            e::START | e::LOCAL if b != b'@' => e::LOCAL,
            e::LOCAL => e::DOMAIN_START,
            e::DOMAIN_START | e::DOMAIN if domain => e::DOMAIN,
            _ => e::OTHER,
        };
        Shape { s: ns, e: ne }
    }

    /// The shape of a string that ends here (0 for the empty string).
    pub fn at_end(self) -> u8 {
        if self == Shape::START {
            0
        } else if s::is_url(self.s) {
            URL
        } else if self.e == e::DOMAIN {
            EMAIL
        } else {
            OTHER
        }
    }

    /// What the shape automaton does with a byte depends only on this category.
    fn category(b: u8) -> u8 {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' => 0,
            b'0'..=b'9' => 1,
            b'+' => 2,
            b'.' => 3,
            b'-' => 4,
            b':' => 5,
            b'/' => 6,
            b'@' => 7,
            0x21..=0x7e => 8,
            0x80..=0xff => 9,
            _ => 10,
        }
    }
}

// ---------------------------------------------------------------------------------------
// The product graph.

/// The product of a pattern's DFA with the shape automaton, from the start, over the states
/// from which the DFA can still accept.
pub struct Graph {
    pub shape: Vec<Shape>,
    /// Shape bits of the strings that end at a node (0: not accepted there).
    pub accept: Vec<u8>,
    /// Shape bits of the strings accepted at or after a node.
    pub live: Vec<u8>,
    /// `edges[first[n]..first[n + 1]]` are node n's edges: (byte class, target).
    first: Vec<u32>,
    edges: Vec<(u16, u32)>,
    /// The bytes of each class: all of them take a node to the same target.
    members: Vec<Vec<u8>>,
    /// Predecessors, for walking backwards: `back[back_first[n]..back_first[n + 1]]`.
    back_first: Vec<u32>,
    back: Vec<u32>,
}

pub const START: u32 = 0;

impl Graph {
    /// The product with the shape automaton, from the DFA's start.
    pub fn new(language: &Language, limits: &Limits) -> Result<Graph, Exceeded> {
        Graph::build(language, language.start, &Shapes, limits)
    }

    /// The product with `reader`, from the DFA state `start` (node [`START`]).
    pub fn build(
        language: &Language,
        start: StateID,
        reader: &dyn Reader,
        limits: &Limits,
    ) -> Result<Graph, Exceeded> {
        let dfa = &language.dfa;
        // Byte classes of the DFA refined by the reader's categories.
        let mut class_of = [0u16; 256];
        let mut keys: HashMap<(u8, u8), u16> = HashMap::new();
        let mut members: Vec<Vec<u8>> = Vec::new();
        for b in 0..=255u8 {
            let key = (dfa.byte_classes().get(b), reader.category(b));
            let next = u16::try_from(members.len()).unwrap_or(u16::MAX);
            let class = *keys.entry(key).or_insert(next);
            if usize::from(class) == members.len() {
                members.push(Vec::new());
            }
            members[usize::from(class)].push(b);
            class_of[usize::from(b)] = class;
        }
        let mut ids: HashMap<(StateID, Shape), u32> = HashMap::new();
        let first_state = (start, reader.start());
        let mut states: Vec<(StateID, Shape)> = vec![first_state];
        ids.insert(first_state, START);
        let mut first = vec![0u32];
        let mut edges: Vec<(u16, u32)> = Vec::new();
        let mut n = 0;
        while n < states.len() {
            let (d, f) = states[n];
            for (class, bytes) in members.iter().enumerate() {
                let b = bytes[0];
                let next = dfa.next_state(d, b);
                if dfa.is_dead_state(next) || dfa.is_quit_state(next) {
                    continue;
                }
                let key = (next, reader.step(f, b));
                let target = match ids.get(&key) {
                    Some(&id) => id,
                    None => {
                        if states.len() >= limits.nodes {
                            return Err(Exceeded::Graph);
                        }
                        let id = states.len() as u32;
                        ids.insert(key, id);
                        states.push(key);
                        id
                    }
                };
                if edges.len() >= limits.edges {
                    return Err(Exceeded::Graph);
                }
                edges.push((class as u16, target));
            }
            first.push(edges.len() as u32);
            n += 1;
        }
        let accept: Vec<u8> = states
            .iter()
            .map(|&(d, f)| {
                if language.accepting(d) {
                    reader.at_end(f)
                } else {
                    0
                }
            })
            .collect();
        let count = states.len();
        // Predecessor lists.
        let mut back_count = vec![0u32; count + 1];
        for &(_, to) in &edges {
            back_count[to as usize + 1] += 1;
        }
        for i in 0..count {
            back_count[i + 1] += back_count[i];
        }
        let back_first = back_count.clone();
        let mut fill = back_count;
        let mut back = vec![0u32; edges.len()];
        for from in 0..count {
            for &(_, to) in &edges[first[from] as usize..first[from + 1] as usize] {
                back[fill[to as usize] as usize] = from as u32;
                fill[to as usize] += 1;
            }
        }
        let mut graph = Graph {
            shape: states.iter().map(|&(_, f)| f).collect(),
            accept,
            live: Vec::new(),
            first,
            edges,
            members,
            back_first,
            back,
        };
        graph.live = graph.liveness();
        Ok(graph)
    }

    pub fn len(&self) -> usize {
        self.shape.len()
    }

    /// The heap the graph takes, roughly.
    pub fn memory_usage(&self) -> usize {
        self.shape.len() * (std::mem::size_of::<Shape>() + 2 + 8)
            + self.edges.len() * (std::mem::size_of::<(u16, u32)>() + 4)
            + self.members.iter().map(Vec::len).sum::<usize>()
    }

    pub fn edges(&self, node: u32) -> &[(u16, u32)] {
        let n = node as usize;
        &self.edges[self.first[n] as usize..self.first[n + 1] as usize]
    }

    fn predecessors(&self, node: u32) -> &[u32] {
        let n = node as usize;
        &self.back[self.back_first[n] as usize..self.back_first[n + 1] as usize]
    }

    pub fn members(&self, class: u16) -> &[u8] {
        &self.members[usize::from(class)]
    }

    /// The node a string leads to from `from`, if it stays in the graph.
    pub fn walk(&self, from: u32, text: &[u8]) -> Option<u32> {
        let mut node = from;
        for &b in text {
            node = self
                .edges(node)
                .iter()
                .find(|&&(class, _)| self.members(class).contains(&b))?
                .1;
        }
        Some(node)
    }

    /// The strings accepted both here and by `other` (whose strings must be spelled as the
    /// graph's are): up to `cap`, or how many there are past that. `steps` bounds the walk;
    /// reaching it counts as too many.
    pub fn intersection(
        &self,
        other: &Language,
        cap: usize,
        steps: usize,
    ) -> Result<Vec<Vec<u8>>, Count> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            Open,
            Done(u64),
        }
        let mut marks: HashMap<(u32, StateID), Mark> = HashMap::new();
        let mut walked = 0usize;
        // Depth-first, counting the common strings from each pair.
        let mut stack: Vec<((u32, StateID), usize, usize, u64)> = Vec::new();
        let start = (START, other.start());
        marks.insert(start, Mark::Open);
        stack.push((start, 0, 0, 0));
        let mut result = 0u64;
        while let Some(top) = stack.len().checked_sub(1) {
            let ((node, state), edge, member, _) = stack[top];
            walked += 1;
            if walked > steps {
                return Err(Count::TooMany);
            }
            let edges = self.edges(node);
            if edge < edges.len() {
                let (class, to) = edges[edge];
                let bytes = self.members(class);
                if member >= bytes.len() || self.live[to as usize] == 0 {
                    stack[top].1 += 1;
                    stack[top].2 = 0;
                    continue;
                }
                stack[top].2 += 1;
                let Some(next) = other.next(state, bytes[member]) else {
                    continue;
                };
                let pair = (to, next);
                match marks.get(&pair) {
                    Some(Mark::Open) => return Err(Count::Infinite),
                    Some(Mark::Done(n)) => stack[top].3 = stack[top].3.saturating_add(*n),
                    None => {
                        marks.insert(pair, Mark::Open);
                        stack.push((pair, 0, 0, 0));
                    }
                }
                continue;
            }
            let (pair, _, _, below) = stack[top];
            let here = u64::from(self.accept[node as usize] != 0 && other.accepting(state));
            let total = below.saturating_add(here);
            marks.insert(pair, Mark::Done(total));
            stack.pop();
            match stack.last_mut() {
                Some(parent) => parent.3 = parent.3.saturating_add(total),
                None => result = total,
            }
        }
        if result > cap as u64 {
            return Err(Count::TooMany);
        }
        // Few enough: list them, following only pairs that lead to one.
        let leads = |pair: &(u32, StateID)| !matches!(marks.get(pair), Some(Mark::Done(0)) | None);
        let mut out = Vec::new();
        let mut text: Vec<u8> = Vec::new();
        let mut stack: Vec<((u32, StateID), usize, usize)> = vec![(start, 0, 0)];
        if self.accept[START as usize] != 0 && other.accepting(start.1) {
            out.push(Vec::new());
        }
        while let Some(top) = stack.len().checked_sub(1) {
            let ((node, state), edge, member) = stack[top];
            let edges = self.edges(node);
            if edge >= edges.len() {
                stack.pop();
                text.pop();
                continue;
            }
            let (class, to) = edges[edge];
            let bytes = self.members(class);
            if member >= bytes.len() {
                stack[top].1 += 1;
                stack[top].2 = 0;
                continue;
            }
            stack[top].2 += 1;
            let b = bytes[member];
            let Some(next) = other.next(state, b) else {
                continue;
            };
            if !leads(&(to, next)) {
                continue;
            }
            text.push(b);
            if self.accept[to as usize] != 0 && other.accepting(next) {
                out.push(text.clone());
            }
            stack.push(((to, next), 0, 0));
        }
        Ok(out)
    }

    fn liveness(&self) -> Vec<u8> {
        let mut live = self.accept.clone();
        let mut queue: VecDeque<u32> = (0..self.len() as u32)
            .filter(|&n| live[n as usize] != 0)
            .collect();
        while let Some(v) = queue.pop_front() {
            let bits = live[v as usize];
            for &u in self.predecessors(v) {
                let before = live[u as usize];
                if before | bits != before {
                    live[u as usize] = before | bits;
                    queue.push_back(u);
                }
            }
        }
        live
    }
}

/// A part of the graph to count strings in: walks from `start` through nodes `inside`
/// accepts; a string is counted where it ends at a node `ends_at` accepts, or where it takes
/// an edge `ends_by` accepts (the string then ends with that edge's byte).
pub struct Part<'g> {
    pub graph: &'g Graph,
    pub start: u32,
    pub inside: Box<dyn Fn(u32) -> bool + 'g>,
    pub ends_at: Box<dyn Fn(u32) -> bool + 'g>,
    pub ends_by: Box<dyn Fn(u32, u32) -> bool + 'g>,
}

/// How many strings a part holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    Finite(u64),
    /// More than the bound asked for.
    TooMany,
    Infinite,
}

impl Part<'_> {
    /// The nodes from which a counted string can still be completed inside the part.
    fn relevant(&self) -> Vec<bool> {
        let g = self.graph;
        let mut relevant = vec![false; g.len()];
        let mut queue = VecDeque::new();
        for n in 0..g.len() as u32 {
            if !(self.inside)(n) {
                continue;
            }
            if (self.ends_at)(n) || g.edges(n).iter().any(|&(_, to)| (self.ends_by)(n, to)) {
                relevant[n as usize] = true;
                queue.push_back(n);
            }
        }
        while let Some(v) = queue.pop_front() {
            for &u in g.predecessors(v) {
                if !relevant[u as usize] && (self.inside)(u) && self.continues(u, v) {
                    relevant[u as usize] = true;
                    queue.push_back(u);
                }
            }
        }
        relevant
    }

    fn continues(&self, from: u32, to: u32) -> bool {
        (self.inside)(to) && !(self.ends_by)(from, to)
    }

    /// The number of strings, up to `cap`.
    pub fn count(&self, cap: u64) -> Count {
        let g = self.graph;
        let relevant = self.relevant();
        if !relevant[self.start as usize] {
            return Count::Finite(0);
        }
        const WHITE: u8 = 0;
        const GREY: u8 = 1;
        const BLACK: u8 = 2;
        let mut colour = vec![WHITE; g.len()];
        let mut count = vec![0u64; g.len()];
        // (node, next edge to look at)
        let mut stack: Vec<(u32, usize)> = vec![(self.start, 0)];
        colour[self.start as usize] = GREY;
        while let Some(&mut (node, ref mut at)) = stack.last_mut() {
            let edges = g.edges(node);
            if *at < edges.len() {
                let (_, to) = edges[*at];
                *at += 1;
                if !relevant[to as usize] || !self.continues(node, to) {
                    continue;
                }
                match colour[to as usize] {
                    GREY => return Count::Infinite,
                    WHITE => {
                        colour[to as usize] = GREY;
                        stack.push((to, 0));
                    }
                    _ => {}
                }
                continue;
            }
            // All successors done: count the strings from here.
            let mut total: u64 = u64::from((self.ends_at)(node));
            for &(class, to) in edges {
                let weight = g.members(class).len() as u64;
                if (self.ends_by)(node, to) {
                    total = total.saturating_add(weight);
                } else if relevant[to as usize] && self.continues(node, to) {
                    total = total.saturating_add(weight.saturating_mul(count[to as usize]));
                }
            }
            count[node as usize] = total;
            colour[node as usize] = BLACK;
            stack.pop();
        }
        match count[self.start as usize] {
            n if n > cap => Count::TooMany,
            n => Count::Finite(n),
        }
    }

    /// Every string of a part whose [`Part::count`] is finite and at most `cap`, each with the
    /// node it ends at (for an edge, the edge's target).
    pub fn strings(&self, cap: usize) -> Vec<(Vec<u8>, u32)> {
        let g = self.graph;
        let relevant = self.relevant();
        let mut out = Vec::new();
        if !relevant[self.start as usize] {
            return out;
        }
        let mut text: Vec<u8> = Vec::new();
        // (node, edge index, member index): a depth-first walk over bytes.
        let mut stack: Vec<(u32, usize, usize)> = vec![(self.start, 0, 0)];
        if (self.ends_at)(self.start) {
            out.push((Vec::new(), self.start));
        }
        while let Some(&mut (node, ref mut edge, ref mut member)) = stack.last_mut() {
            if out.len() >= cap {
                break;
            }
            let edges = g.edges(node);
            if *edge >= edges.len() {
                stack.pop();
                text.pop();
                continue;
            }
            let (class, to) = edges[*edge];
            let bytes = g.members(class);
            if *member >= bytes.len() {
                *edge += 1;
                *member = 0;
                continue;
            }
            let b = bytes[*member];
            *member += 1;
            if (self.ends_by)(node, to) {
                let mut s = text.clone();
                s.push(b);
                out.push((s, to));
            } else if relevant[to as usize] && self.continues(node, to) {
                text.push(b);
                if (self.ends_at)(to) {
                    out.push((text.clone(), to));
                }
                stack.push((to, 0, 0));
            }
        }
        out.truncate(cap);
        out
    }

    /// Up to `k` strings of the part, shortest first, spelled with the most readable bytes
    /// of each class (for messages): the shortest string to the nearest end, then the same
    /// with the first class that has several bytes spelled otherwise, then further ends.
    /// Each node is visited once; `steps` bounds the walk.
    pub fn first_strings(&self, k: usize, steps: usize) -> Vec<(Vec<u8>, u32)> {
        let g = self.graph;
        let relevant = self.relevant();
        let mut out: Vec<(Vec<u8>, u32)> = Vec::new();
        if !relevant[self.start as usize] {
            return out;
        }
        if (self.ends_at)(self.start) {
            out.push((Vec::new(), self.start));
        }
        // Shortest paths: the edge (parent, class) each node was first reached by.
        let mut parent: HashMap<u32, (u32, u16)> = HashMap::new();
        let mut queue = VecDeque::from([self.start]);
        let mut visited = 0;
        // The steps to a node: (from, to) pairs.
        let path = |parent: &HashMap<u32, (u32, u16)>, mut node: u32| {
            let mut steps = Vec::new();
            while node != self.start {
                let (from, _) = parent[&node];
                steps.push((from, node));
                node = from;
            }
            steps.reverse();
            steps
        };
        // Every byte that takes `from` to `to`, most readable first.
        let bytes_between = |from: u32, to: u32| {
            let all: Vec<u8> = g
                .edges(from)
                .iter()
                .filter(|&&(_, t)| t == to)
                .flat_map(|&(class, _)| g.members(class).iter().copied())
                .collect();
            readable(&all)
        };
        let spell = |steps: &[(u32, u32)], variant: usize| -> Option<Vec<u8>> {
            let mut varied = variant == 0;
            let mut text = Vec::with_capacity(steps.len());
            for &(from, to) in steps {
                let bytes = bytes_between(from, to);
                if !varied && bytes.len() > variant {
                    text.push(bytes[variant]);
                    varied = true;
                } else {
                    text.push(bytes[0]);
                }
            }
            varied.then_some(text)
        };
        while let Some(node) = queue.pop_front() {
            visited += 1;
            if out.len() >= k || visited > steps {
                break;
            }
            for &(class, to) in g.edges(node) {
                let ends_by = (self.ends_by)(node, to);
                let ends_at = !ends_by
                    && relevant[to as usize]
                    && self.continues(node, to)
                    && (self.ends_at)(to);
                if ends_by || ends_at {
                    let mut steps = path(&parent, node);
                    steps.push((node, to));
                    for variant in 0..k {
                        if out.len() >= k {
                            break;
                        }
                        let Some(text) = spell(&steps, variant) else {
                            break;
                        };
                        if !out.iter().any(|(t, _)| *t == text) {
                            out.push((text, to));
                        }
                    }
                }
                if !ends_by
                    && relevant[to as usize]
                    && self.continues(node, to)
                    && to != self.start
                    && !parent.contains_key(&to)
                {
                    parent.insert(to, (node, class));
                    queue.push_back(to);
                }
            }
        }
        out.truncate(k);
        out
    }
}

/// The shortest continuation from `node` to a string accepted with one of the `shapes`,
/// spelled readably.
pub fn completion(graph: &Graph, node: u32, shapes: u8) -> Option<Vec<u8>> {
    shortest(
        graph,
        node,
        |n| graph.accept[n as usize] & shapes != 0,
        shapes,
    )
}

/// The shortest string from `node` to a node `target` accepts, through nodes from which a
/// string of one of the `shapes` can still be accepted, spelled readably.
pub fn shortest(
    graph: &Graph,
    node: u32,
    target: impl Fn(u32) -> bool,
    shapes: u8,
) -> Option<Vec<u8>> {
    let mut parent: HashMap<u32, (u32, u8)> = HashMap::new();
    let mut queue = VecDeque::from([node]);
    let mut seen = vec![false; graph.len()];
    seen[node as usize] = true;
    while let Some(v) = queue.pop_front() {
        if target(v) {
            let mut text = Vec::new();
            let mut at = v;
            while at != node {
                let (from, b) = parent[&at];
                text.push(b);
                at = from;
            }
            text.reverse();
            return Some(text);
        }
        // Each new node by the most readable byte of every class that leads there.
        let mut found: Vec<(u32, u8)> = Vec::new();
        for &(class, to) in graph.edges(v) {
            if seen[to as usize] || graph.live[to as usize] & shapes == 0 {
                continue;
            }
            let b = readable(graph.members(class))[0];
            match found.iter_mut().find(|(t, _)| *t == to) {
                Some(held) if readable_rank(b) < readable_rank(held.1) => held.1 = b,
                Some(_) => {}
                None => found.push((to, b)),
            }
        }
        for (to, b) in found {
            seen[to as usize] = true;
            parent.insert(to, (v, b));
            queue.push_back(to);
        }
    }
    None
}

/// How readable a byte is: lower is better.
pub(super) fn readable_rank(b: u8) -> (u8, u8) {
    let group = match b {
        b'a'..=b'z' => 0,
        b'0'..=b'9' => 1,
        b'A'..=b'Z' => 2,
        b'-' | b'.' | b'_' => 3,
        0x21..=0x7e => 4,
        0x80..=0xff => 5,
        _ => 6,
    };
    (group, b)
}

/// The bytes of a class, the most readable first: letters, digits, then `-._`, other
/// printable ASCII, and the rest.
fn readable(bytes: &[u8]) -> Vec<u8> {
    let mut sorted = bytes.to_vec();
    sorted.sort_by_key(|&b| readable_rank(b));
    sorted
}

#[cfg(test)]
mod tests {
    use super::super::go_syntax::{self, Lowering};
    use super::*;

    fn graph(pattern: &str) -> Graph {
        let node = go_syntax::parse(pattern).expect("parses");
        let (hir, _) = go_syntax::lower(
            &node,
            Lowering {
                fold: true,
                captures: false,
            },
        );
        let language = Language::new(hir, true, &LIMITS).expect("builds");
        Graph::new(&language, &LIMITS).expect("walks")
    }

    fn whole(g: &Graph, shapes: u8) -> Count {
        Part {
            graph: g,
            start: START,
            inside: Box::new(move |_| true),
            ends_at: Box::new(move |n| g.accept[n as usize] & shapes != 0),
            ends_by: Box::new(move |_, _| false),
        }
        .count(8)
    }

    #[test]
    fn counts_are_exact_and_cycles_are_infinite() {
        assert_eq!(
            whole(&graph("^https://gitlab\\.com$"), URL),
            Count::Finite(1)
        );
        assert_eq!(
            whole(&graph("(?i)^https://GitLab\\.com/?$"), URL),
            Count::Finite(2)
        );
        assert_eq!(whole(&graph("^[a-c]$"), OTHER), Count::Finite(3));
        assert_eq!(whole(&graph("^[b-z]$"), OTHER), Count::TooMany);
        assert_eq!(whole(&graph("^[a-z]{1,3}$"), OTHER), Count::TooMany);
        assert_eq!(whole(&graph("^a+$"), OTHER), Count::Infinite);
        assert_eq!(whole(&graph("^a"), OTHER), Count::Infinite);
        assert_eq!(whole(&graph("^bob@acme\\.com$"), EMAIL), Count::Finite(1));
        assert_eq!(
            whole(&graph("^bob@acme\\.com$"), URL | OTHER),
            Count::Finite(0)
        );
    }

    #[test]
    fn strings_are_listed_with_every_member_of_a_class() {
        let built = graph("^(?:app|w[eE]b)$");
        let g = &built;
        let part = Part {
            graph: g,
            start: START,
            inside: Box::new(move |_| true),
            ends_at: Box::new(move |n| g.accept[n as usize] != 0),
            ends_by: Box::new(move |_, _| false),
        };
        let mut strings: Vec<String> = part
            .strings(8)
            .into_iter()
            .map(|(s, _)| String::from_utf8(s).expect("utf-8"))
            .collect();
        strings.sort();
        assert_eq!(strings, ["app", "web"]);
    }
}
