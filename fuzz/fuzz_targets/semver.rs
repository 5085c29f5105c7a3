//! The semver range parser (Masterminds/semver v3.4.0's reading of `spec.ref.semver`): any
//! text is read or refused, never a panic; what is read answers every question the policy
//! asks consistently, and a refusal says what is wrong. libFuzzer's `-timeout` holds each
//! input to a bound: the parser reads at most `MAX_LEN` bytes and its work is at most
//! quadratic in them.
#![no_main]

use fluxgate::flux::semver::{Constraint, Line, MAX_LEN, ParseError, Span, Version};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let text = String::from_utf8_lossy(input);
    match Constraint::parse(&text) {
        Ok(constraint) => {
            match constraint.span() {
                Span::Empty => assert!(constraint.bounded_suggestion().is_none()),
                Span::Within(line) => assert!(constraint.bounded_suggestion().is_none(), "{line:?}"),
                Span::Crosses { low, other } => {
                    assert!(constraint.matches(&low), "{text:?}: {low}");
                    assert!(constraint.matches(&other), "{text:?}: {other}");
                    assert_ne!(Line::of(&low), Line::of(&other));
                    if let Some(suggestion) = constraint.bounded_suggestion() {
                        let bounded = Constraint::parse(&suggestion).expect("a suggestion parses");
                        assert!(matches!(bounded.span(), Span::Within(_)), "{suggestion}");
                    }
                }
            }
            // Versions named in the text are asked about too.
            for word in text.split(|c: char| c.is_ascii_whitespace() || matches!(c, ',' | '|')) {
                let word = word.trim_start_matches(['=', '!', '<', '>', '~', '^']);
                if let Some(version) = Version::parse(word) {
                    let _ = constraint.matches(&version);
                }
            }
        }
        Err(ParseError::TooLong) => assert!(text.len() > MAX_LEN),
        Err(ParseError::Refused { message, hint }) => {
            assert!(!message.is_empty() && !hint.is_empty(), "{text:?}");
        }
    }
});
