//! `fluxgate::flux::semver` reads every range as Masterminds/semver v3.4.0 does, the library
//! Flux's source-controller resolves `spec.ref.semver` with: the same refusals, word for word,
//! and, for every range it reads, exactly the same accepted versions over a grid of 1,800.
//! The table is Masterminds' own output (tests/fixtures/semver/README.md).

use std::io::{BufRead, BufReader};

use fluxgate::flux::semver::{Constraint, Line, ParseError, Span, Version};
use serde::Deserialize;

const TABLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/semver/masterminds-v3.4.0.jsonl.gz"
);

#[derive(Deserialize)]
struct Grid {
    grid: Vec<String>,
}

#[derive(Deserialize)]
struct Row {
    c: String,
    #[serde(default)]
    err: Option<String>,
    #[serde(default)]
    accepts: Option<String>,
}

fn table() -> (Vec<Version>, Vec<Row>) {
    let file = std::fs::File::open(TABLE).expect("the Masterminds table");
    let mut lines = BufReader::new(flate2::read::GzDecoder::new(file)).lines();
    let first = lines.next().expect("a grid line").expect("readable");
    let grid: Grid = serde_json::from_str(&first).expect("the grid");
    let versions = grid
        .grid
        .iter()
        .map(|v| Version::parse(v).unwrap_or_else(|| panic!("grid version {v}")))
        .collect();
    let rows = lines
        .map(|line| serde_json::from_str(&line.expect("readable")).expect("a row"))
        .collect();
    (versions, rows)
}

fn bit(mask: &[u8], i: usize) -> bool {
    mask.get(i / 8)
        .is_some_and(|byte| byte & (1 << (i % 8)) != 0)
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

#[test]
fn every_row_of_masterminds_table_gets_the_same_answer() {
    let (grid, rows) = table();
    assert_eq!(grid.len(), 1800);
    assert_eq!(rows.len(), 29_530, "the README counts 29,530 constraints");
    let mut disagreements = Vec::new();
    let (mut refused, mut read) = (0usize, 0usize);
    for row in &rows {
        match (Constraint::parse(&row.c), &row.err, &row.accepts) {
            (Err(ParseError::Refused { message, hint }), Some(theirs), None) => {
                refused += 1;
                if &message != theirs {
                    disagreements.push(format!(
                        "{:?}: we say {message:?}, Masterminds {theirs:?}",
                        row.c
                    ));
                }
                assert!(!hint.is_empty(), "{:?}: a refusal explains itself", row.c);
            }
            (Ok(constraint), None, Some(accepts)) => {
                read += 1;
                let mask = hex(accepts);
                let differing: Vec<String> = grid
                    .iter()
                    .enumerate()
                    .filter(|&(i, v)| constraint.matches(v) != bit(&mask, i))
                    .map(|(i, v)| {
                        format!(
                            "{v} ({})",
                            if bit(&mask, i) {
                                "Masterminds accepts"
                            } else {
                                "Masterminds refuses"
                            }
                        )
                    })
                    .take(5)
                    .collect();
                if !differing.is_empty() {
                    disagreements.push(format!("{:?}: {}", row.c, differing.join(", ")));
                }
            }
            (ours, theirs, _) => disagreements.push(format!(
                "{:?}: we say {:?}, Masterminds {:?}",
                row.c,
                ours.map(|_| "reads it"),
                theirs.as_deref().unwrap_or("reads it")
            )),
        }
    }
    println!(
        "{} rows: {refused} refused and {read} read over {} versions, {} disagreements",
        rows.len(),
        grid.len(),
        disagreements.len()
    );
    assert!(
        disagreements.is_empty(),
        "{} of {} rows disagree with Masterminds, for example:\n{}",
        disagreements.len(),
        rows.len(),
        disagreements[..disagreements.len().min(20)].join("\n")
    );
    assert_eq!((refused, read), (10_019, 19_511));
}

#[test]
fn the_span_of_every_row_agrees_with_the_versions_it_accepts() {
    // What the policy decides on: if every accepted version is in one line, so is every
    // accepted grid version; if two lines are named, both versions are accepted.
    let (grid, rows) = table();
    for row in rows.iter().filter(|r| r.accepts.is_some()) {
        let constraint = Constraint::parse(&row.c).expect("Masterminds reads it");
        let accepted = grid.iter().filter(|v| constraint.matches(v));
        match constraint.span() {
            Span::Empty => assert_eq!(accepted.count(), 0, "{:?}", row.c),
            Span::Within(line) => {
                for v in accepted {
                    assert_eq!(Line::of(v), line, "{:?} accepts {v}", row.c);
                }
            }
            Span::Crosses { low, other } => {
                assert!(
                    constraint.matches(&low) && constraint.matches(&other),
                    "{:?}",
                    row.c
                );
                assert_ne!(Line::of(&low), Line::of(&other), "{:?}", row.c);
                for v in accepted {
                    assert!(*v >= low, "{:?} accepts {v}, below {low}", row.c);
                }
            }
        }
    }
}

#[test]
fn the_quirks_the_issue_names_are_masterminds_reading() {
    // `|` is in Masterminds' number class and ranges are rewritten before the `||` split:
    // this reads as `>= 1` or `1.0.0 <= 1.5.0`, every version from 1.0.0 on.
    let constraint = Constraint::parse("1||1.0.0 - 1.5.0").expect("Masterminds reads it");
    for accepted in ["1.0.0", "2.0.0", "3.0.0", "10.0.0"] {
        assert!(
            constraint.matches(&Version::parse(accepted).expect("a version")),
            "{accepted}"
        );
    }
    assert!(matches!(constraint.span(), Span::Crosses { .. }));
}
