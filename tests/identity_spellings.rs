//! Property: an identity pattern's verdict depends on the language it accepts, not on how it
//! is spelled. Patterns are generated as a structure, then written out twice with different
//! spellings of the same language (classes written out, `(?:...)` groups, `{1,}` for `+`,
//! `[.]` for `\.`, redundant anchors, hex escapes...); both must get the same verdict.

use fluxgate::policy::signed_oci_sources::identity::{self, Breadth, SubjectBreadth, SubjectRule};
use proptest::prelude::*;

/// A piece of a pattern, spelled later.
#[derive(Debug, Clone)]
enum Piece {
    Char(char),
    /// A class of characters, at most five, written out or as ranges.
    Class(Vec<char>),
    /// Any character but `/`.
    NotSlash,
    Alternation(Vec<Vec<Piece>>),
    Repeat(Box<Piece>, u32, Option<u32>),
}

/// The name characters a group may be made of.
fn name_char() -> impl Strategy<Value = char> {
    prop::sample::select(vec!['a', 'b', 'c', 'e', 'm', 'z', '0', '7', '-', '.', '_'])
}

fn piece() -> impl Strategy<Value = Piece> {
    let leaf = prop_oneof![
        4 => name_char().prop_map(Piece::Char),
        2 => prop::collection::vec(name_char(), 1..5).prop_map(|mut chars| {
            chars.sort_unstable();
            chars.dedup();
            Piece::Class(chars)
        }),
        1 => Just(Piece::NotSlash),
    ];
    leaf.prop_recursive(2, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(prop::collection::vec(inner.clone(), 1..3), 2..4)
                .prop_map(Piece::Alternation),
            (inner, 0u32..3, prop::option::of(0u32..3)).prop_map(|(p, min, extra)| {
                Piece::Repeat(Box::new(p), min, extra.map(|e| min + e))
            }),
        ]
    })
}

/// Writes pieces out; `choice` picks among equivalent spellings.
struct Speller<'c> {
    choices: &'c [u8],
    at: usize,
}

impl Speller<'_> {
    fn choose(&mut self, n: u8) -> u8 {
        let c = self
            .choices
            .get(self.at % self.choices.len().max(1))
            .copied()
            .unwrap_or(0);
        self.at += 1;
        c % n
    }

    fn char(&mut self, c: char) -> String {
        let escaped = regex_escape(c);
        match self.choose(4) {
            0 => escaped,
            1 => format!("[{}]", class_char(c)),
            2 => format!("\\x{{{:x}}}", c as u32),
            _ => format!("(?:{escaped})"),
        }
    }

    fn class(&mut self, chars: &[char]) -> String {
        match self.choose(3) {
            0 => format!(
                "[{}]",
                chars.iter().map(|&c| class_char(c)).collect::<String>()
            ),
            1 => format!(
                "(?:{})",
                chars
                    .iter()
                    .map(|&c| regex_escape(c))
                    .collect::<Vec<_>>()
                    .join("|")
            ),
            _ => format!(
                "[{}]",
                chars
                    .iter()
                    .rev()
                    .map(|&c| class_char(c))
                    .collect::<String>()
            ),
        }
    }

    fn pieces(&mut self, pieces: &[Piece]) -> String {
        pieces.iter().map(|p| self.piece(p)).collect()
    }

    fn piece(&mut self, piece: &Piece) -> String {
        match piece {
            Piece::Char(c) => self.char(*c),
            Piece::Class(chars) => self.class(chars),
            Piece::NotSlash => {
                [r"[^/]", r"[^\x2f]", r"(?:[^/\n]|\n)"][self.choose(3) as usize].to_string()
            }
            Piece::Alternation(alternatives) => {
                let spelled: Vec<String> = alternatives.iter().map(|a| self.pieces(a)).collect();
                let open = ["(?:", "(", "(?P<g>"][self.choose(3) as usize];
                format!("{open}{})", spelled.join("|"))
            }
            Piece::Repeat(sub, min, max) => {
                let sub = format!("(?:{})", self.piece(sub));
                let op = match (min, max) {
                    (0, None) => ["*", "{0,}"][self.choose(2) as usize].to_string(),
                    (1, None) => ["+", "{1,}", "{1,}?"][self.choose(3) as usize].to_string(),
                    (0, Some(1)) => ["?", "{0,1}"][self.choose(2) as usize].to_string(),
                    (n, Some(m)) if n == m => [format!("{{{n}}}"), format!("{{{n},{n}}}")]
                        [self.choose(2) as usize]
                        .clone(),
                    (n, None) => format!("{{{n},}}"),
                    (n, Some(m)) => format!("{{{n},{m}}}"),
                };
                format!("{sub}{op}")
            }
        }
    }

    fn start(&mut self) -> &'static str {
        ["^", r"\A", "^^", "(?:^)", r"^\A"][self.choose(5) as usize]
    }

    fn end(&mut self) -> &'static str {
        ["$", r"\z", "$$", "(?:$)", r"$\z"][self.choose(5) as usize]
    }

    fn dot(&mut self) -> &'static str {
        [r"\.", "[.]", r"\x2e", r"\Q.\E"][self.choose(4) as usize]
    }
}

fn regex_escape(c: char) -> String {
    if c.is_ascii_alphanumeric() || c == '_' {
        c.to_string()
    } else {
        format!("\\{c}")
    }
}

fn class_char(c: char) -> String {
    match c {
        '-' | ']' | '\\' | '^' | '[' => format!("\\{c}"),
        _ => c.to_string(),
    }
}

/// A GitLab CI subject whose group is `group`, spelled by `speller`.
fn subject(speller: &mut Speller<'_>, group: &[Piece], anchored_end: bool) -> String {
    let mut s = speller.start().to_string();
    s.push_str("https://gitlab");
    s.push_str(speller.dot());
    s.push_str("com/");
    s.push_str(&speller.pieces(group));
    s.push_str("/app//");
    s.push_str(speller.dot());
    s.push_str("gitlab-ci");
    s.push_str(speller.dot());
    s.push_str("yml@refs/heads/main");
    if anchored_end {
        s.push_str(speller.end());
    }
    s
}

/// Whether a subject is broad for the GitLab.com issuer.
fn subject_verdict(pattern: &str) -> Result<bool, String> {
    match identity::analyze_subject(pattern, &["gitlab.com"]) {
        SubjectBreadth::Invalid(e) => Err(e),
        SubjectBreadth::Judged(subjects) => Ok(subjects
            .broad(SubjectRule::Namespaces { host: "gitlab.com" }, &|_| false)
            .is_some()),
    }
}

fn issuer_verdict(pattern: &str) -> String {
    match identity::analyze_issuer(pattern) {
        Breadth::Invalid(_) => "invalid".into(),
        Breadth::Broad(_) => "broad".into(),
        Breadth::Specific(issuers) => format!("specific {:?}", issuers.public),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn equivalent_subject_spellings_get_one_verdict(
        group in prop::collection::vec(piece(), 1..4),
        anchored_end in any::<bool>(),
        first in prop::collection::vec(any::<u8>(), 1..16),
        second in prop::collection::vec(any::<u8>(), 1..16),
    ) {
        let a = subject(&mut Speller { choices: &first, at: 0 }, &group, anchored_end);
        let b = subject(&mut Speller { choices: &second, at: 0 }, &group, anchored_end);
        let (va, vb) = (subject_verdict(&a), subject_verdict(&b));
        prop_assert!(va.is_ok(), "{a} does not parse: {va:?}");
        prop_assert_eq!(va, vb, "{} and {} differ", a, b);
    }

    #[test]
    fn equivalent_issuer_spellings_get_one_verdict(
        host in prop::collection::vec(piece(), 1..3),
        first in prop::collection::vec(any::<u8>(), 1..16),
        second in prop::collection::vec(any::<u8>(), 1..16),
    ) {
        let spell = |choices: &[u8]| {
            let mut speller = Speller { choices, at: 0 };
            let mut s = speller.start().to_string();
            s.push_str("https://");
            s.push_str(&speller.pieces(&host));
            s.push_str(speller.dot());
            s.push_str("example");
            s.push_str(speller.end());
            s
        };
        let (a, b) = (spell(&first), spell(&second));
        prop_assert_eq!(issuer_verdict(&a), issuer_verdict(&b), "{} and {} differ", a, b);
    }
}

#[test]
fn the_spellings_the_issue_names_agree() {
    let pairs = [
        (
            r"^https://gitlab\.com/[a-c]+/",
            r"^https://gitlab\.com/(?:a|b|c){1,}/",
        ),
        (
            r"^https://gitlab\.com/acme/",
            r"^^\Ahttps://gitlab[.]com/(?:acme)\b/",
        ),
        (
            r"^https://gitlab\.com/ac?me/",
            r"^https://gitlab\.com/a(?:c|)me/",
        ),
        (
            r"^https://gitlab\.com/\d+/",
            r"^https://gitlab\.com/[0-9][0-9]*/",
        ),
    ];
    for (a, b) in pairs {
        assert_eq!(subject_verdict(a), subject_verdict(b), "{a} / {b}");
    }
}
