//! The fast path against serde_yaml_ng: what it must read (and read the same), what it must
//! leave to serde_yaml_ng, and the two compared over the corpus (tests/fixtures/corpus) and
//! over mutations of manifests.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::to_json;
use crate::check::reader::split_documents;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/corpus");

fn serde_yaml(text: &str) -> Result<Value, serde_yaml_ng::Error> {
    serde_yaml_ng::from_str::<Value>(text)
}

/// The fast path's value: the JSON it writes must read back as JSON.
fn parse(text: &str) -> Option<Value> {
    let json = to_json(text)?;
    match serde_json::from_str(&json) {
        Ok(value) => Some(value),
        Err(e) => panic!("the fast path writes {json:?} for {text:?}, which is not JSON: {e}"),
    }
}

/// The one property: a value from the fast path is serde_yaml_ng's value. Returns whether
/// the fast path took the text.
fn agrees(text: &str) -> bool {
    let Some(fast) = parse(text) else {
        return false;
    };
    match serde_yaml(text) {
        Ok(slow) => assert_eq!(fast, slow, "the fast path reads {text:?} differently"),
        Err(e) => panic!("the fast path reads {text:?} as {fast}, serde_yaml_ng fails: {e}"),
    }
    true
}

fn must_read(cases: &[&str]) {
    for text in cases {
        assert!(
            agrees(text),
            "the fast path bails on {text:?} (fast_yaml.rs line {})",
            super::LAST_BAIL.with(|b| b.get())
        );
    }
}

fn must_bail(cases: &[&str]) {
    for text in cases {
        assert_eq!(parse(text), None, "the fast path reads {text:?}");
    }
}

#[test]
fn block_mappings_and_sequences() {
    must_read(&[
        "a: b\n",
        "a: b",
        "a:\n  b: c\n  d:\n    e: f\ng: h\n",
        "  a: b\n  c: d\n",
        "- a\n- b\n",
        "- a\n-\n  b: c\n",
        "a:\n  - b\n  - c\n",
        "a:\n    - b\n    -   c\n",
        // Indentless sequences, as kubectl and kustomize write them.
        "a:\n- b\n- c\nd: e\n",
        "a:\n  b:\n  - c\n  d: e\n",
        // Compact mappings in sequence entries.
        "containers:\n- name: web\n  image: nginx\n  ports:\n  - containerPort: 80\n- name: b\n",
        "- a:\n  b: c\n",
        "- a:\n    b: c\n  d: e\n",
        "- a:\n  - b\n- c\n",
        "- a:\n- b\n",
        "-   a: b\n    c: d\n",
        "- \"q\": 1\n  'r': 2\n",
        // Empty values.
        "a:\nb: c\n",
        "a:   \nb:\n",
        "- \n- a\n-\n",
        "a: # a comment, and no value\nb: c\n",
        "a: # the value follows\n  b: c\n",
        // Keys are read as written: serde_json's Value asks for strings.
        "1: one\ntrue: yes\n~: x\nnull: y\n0x10: z\n1.5: w\n",
        "a b : c\n",
        "-a: b\n",
        "a:b: c\n",
        "a[0]: b\n",
        // A plain scalar on the line after its key.
        "a:\n  b\nc: d\n",
        "- \n  b\n",
    ]);
}

#[test]
fn plain_scalars_resolve_like_serde_yaml_ng() {
    must_read(&[
        "a: 0\nb: 1\nc: -1\nd: 18446744073709551615\ne: -9223372036854775808\n",
        "a: -0\nb: 007\nc: -007\nd: 00\ne: 0.5\nf: -0.5\ng: 1.\nh: .5\ni: 1e3\nj: 1E-3\nk: -.5\n",
        "a: 1.2.3\nb: 100m\nc: 64Mi\nd: 1_000\ne: 1e\nf: 1e999\ng: -1e999\n",
        "a: inf\nb: nan\nc: -inf\nd: NaN\ne: infinity\nf: .\ng: -a\nh: 1-2\n",
        "a: null\nb: Null\nc: NULL\nd: ~\ne: nULL\nf: ~x\n",
        "a: true\nb: True\nc: TRUE\nd: false\ne: False\nf: FALSE\ng: tRUE\n",
        "a: yes\nb: no\nc: on\nd: off\ne: y\nf: n\n",
        "a: http://example.com:8080/x\nb: a:b\nc: x#y\nd: ^https://gitlab\\.com$\n",
        "a: b c  d   \ne: f # a comment\n",
        "a: x[1]\nb: x{y}\nc: a, b\nd: x?y\ne: x&y\nf: x*y\ng: x!y\n",
        "a: -Xmx512m\nb: /path\nc: ./x\nd: ${VAR}\ne: =\nf: (x)\n",
        "a: é\nb: 日本\nc: 🙂\nd: a\u{a0}b\n",
        "a: ...\nb: -.\nc: --x\nd: ---\ne: --1\nf: -+1\ng: --sops-config=x\n",
        "- -1\n- -x\n- 2\n",
    ]);
}

#[test]
fn plain_scalars_over_several_lines_fold() {
    must_read(&[
        "a: b\n  c\n",
        "a: b\n  c\n\n  d\n\n\n  e\nf: g\n",
        "a: b   \n     c   \nd: e\n",
        "a: b\n  - c\n  ? d\n  {e\n  [f\n  &g *h !i |j >k 'l \"m %n @o `p\n",
        "a: b\n  c # a comment ends it\nd: e\n",
        "a: b\n  # a comment ends it\nd: e\n",
        "a: 1\n  2\n",
        "a: true\n  false\n",
        "- a\n  b\n- c\n",
        "- a\n b\n",
        "a: b\n - c\n",
        "- k: a\n   b\n  l: c\n",
        "a:\n  b\n  c\nd: e\n",
        "a: b\n  c\n  ",
        "a: b\n  c\n\n",
        "description: ObjectMeta holds the template for metadata like labels\n  and annotations.\n",
    ]);
}

#[test]
fn quoted_scalars_are_strings() {
    must_read(&[
        "a: '1'\nb: \"true\"\nc: ''\nd: \"\"\ne: 'null'\nf: \"~\"\n",
        "a: 'it''s'\nb: ''''\nc: 'a \"b\"'\nd: 'back\\slash'\n",
        r#"a: "x\ny\tz\"q\\b\/c\ d""#,
        r#"a: "\0\a\b\v\f\r\e\N\_\L\P""#,
        r#"a: "\x41\u00e9\U0001F642\x7f\xff""#,
        "a: \"x\" # comment\nb: 'y'   \n",
        "\"a b\": 1\n'c''d': 2\n\"\": 3\n",
        "a: \"  spaced  \"\n",
        "a: 'x: y # z'\n",
        "- 'a'\n- \"b\"\n",
        // Over several lines, folded.
        "a: 'b\n  c'\n",
        "a: \"b\n  c\"\n",
        "- 'b\n c'\n- \"d\n e\"\n",
        "a:\n  'b\n   c'\n",
        "a: 'b  \n    c  \n\n  d'\ne: f\n",
        "a: \"b\\ \n  \\tc\\n\n\n\n  d\" # comment\n",
        "a: '\n  b'\n",
        "a: 'x: y\n  # not a comment\n  - z'\n",
        "- message: '''ldap'' is the only supported STS provider for the ''generic''\n    provider'\n  rule: ok\n",
    ]);
}

#[test]
fn block_scalars_follow_libyaml() {
    must_read(&[
        "a: |\n  x\n  y\nb: c\n",
        "a: |-\n  x\n  y\nb: c\n",
        "a: |+\n  x\n\n\nb: c\n",
        "a: |\n  x\n\n\nb: c\n",
        "a: >\n  x\n  y\n\n  z\nb: c\n",
        "a: >-\n  x\n  y\n",
        "a: >+\n  x\n  y\n\n",
        "a: >\n  x\n    more\n  y\n",
        "a: >\n  x\n\n    more\n\n  y\n",
        "a: |\n    deeper\n  # not a comment\nb: c\n",
        "a: |\n\n  after a blank line\n",
        "a: |\n  \n  x\n",
        "a: |\n  x\n   \n  y\n",
        "a: |\n  x\n    \n",
        "a: |\n  x\n  \n",
        "a: |\n  no newline at the end",
        "a: |\n  x\n  ",
        "a: |\n  x\n     ",
        "a: |\n  x\n# a comment\nb: c\n",
        "a: | # a comment\n  x\n",
        "a: |\n  key: value\n  - item\n  \"quoted\n  {flow\n",
        "- |\n  x\n- >-\n  y\n  z\n",
        "- a: |\n    x\n  b: c\n",
        "a:\n  b: |\n    x\n  c: d\n",
        "a: |\n  x\n\n  \nb: c\n",
        "a: >\n  x\n\n\n  y\n",
    ]);
}

#[test]
fn comments_blank_lines_and_the_document_marker() {
    must_read(&[
        "# a comment\n\napiVersion: v1   # trailing\n\n  # indented comment\nkind: ConfigMap\n",
        "---\na: b\n",
        "--- # the first document\na: b\n",
        "---   \na: b\n",
        "# before the marker\n---\na: b\n",
        "a:\n  # between a key and its value\n  b: c\n",
        "a:\n# less indented\n  b: c\n",
        "- a\n  # deeper\n- b\n",
        "a: b\n\n\n",
        "a: b\n   # more indented comment after a plain scalar\nc: d\n",
    ]);
}

#[test]
fn one_line_flow_collections() {
    must_read(&[
        "labels: {app: web-1}\n",
        "requests: {cpu: 100m, memory: 64Mi}\n",
        "a: [a, b]\nb: []\nc: {}\nd: [ ]\ne: { }\n",
        "a: [1, -2, 0.5, true, null, ~, 007, x y]\n",
        "a: [\"x\", 'y', {k: v}, [1, [2]]]\n",
        "a: {k: [1, 2], 'q': \"v\", n: {m: o}}\n",
        "a: {k: v} # comment\n",
        "a: { k : v ,  l: w }\n",
        "- [a, b]\n- {c: d}\n",
        "a: {url: \"http://x:1\"}\n",
        "a: [a#b]\n",
    ]);
}

#[test]
fn what_the_fast_path_leaves_to_serde_yaml_ng() {
    must_bail(&[
        // A repeated key: serde_yaml_ng keeps the last value; JSON text would hold both.
        "a: 1\nb: 2\na: 3\n",
        "a: {x: 1}\na: [2]\n",
        "a: {x: 1, y: 2, x: 3}\n",
        "a: {k: v, k: w}\n",
        "- a: 1\n  b:\n    c: 1\n    c: 2\n",
        // Empty documents and documents that are a scalar.
        "",
        "# only a comment\n",
        "---\n",
        "just a string\n",
        "'quoted'\n",
        "{a: b}\n",
        "[a]\n",
        // Anchors, aliases, tags, directives, complex keys, merge keys.
        "a: &x b\nc: *x\n",
        "a: *x\n",
        "&x a: b\n",
        "a: !!str 1\n",
        "a: !Ref b\n",
        "%YAML 1.2\n---\na: b\n",
        "? a\n: b\n",
        "?a: b\n",
        "base: {a: 1}\nb:\n  <<: {c: 2}\n",
        "a: '<<'\n",
        // Tabs, carriage returns, other control characters, byte-order marks, NEL.
        "a:\tb\n",
        "a:\n\tb: c\n",
        "a: b\r\n",
        "a: b\u{7}\n",
        "\u{feff}a: b\n",
        "a: b\u{85}c\n",
        "a: b\u{2028}c\n",
        // Reserved indicators.
        "a: @b\n",
        "a: `b`\n",
        "a: %b\n",
        // Another document, or a marker with content.
        "a: b\n---\nc: d\n",
        "a: b\n...\n",
        "--- a: b\n",
        "--- {a: b}\n",
        "---x\na: b\n",
        // Quoted and flow scalars over several lines.
        "a: \"b\\\n  c\"\n",
        "a: 'b\nc'\n",
        "a: 'b\n\n",
        "a: 'b\n  ",
        "a: [b,\n  c]\n",
        "a: {b: c\n  }\n",
        // Block scalars with an indentation indicator, alone on a line, or empty.
        "a: |2\n  x\n",
        "a: |-1\n x\n",
        "a:\n  |\n   x\n",
        "a: |\nb: c\n",
        "a: |\n",
        "a: |\n     \n  x\n",
        // Numbers outside the subset.
        "a: 0x1F\n",
        "a: -0x1F\n",
        "a: 0o17\n",
        "a: 0b101\n",
        "a: +1\n",
        "a: +.5\n",
        "a: .inf\n",
        "a: -.inf\n",
        "a: .nan\n",
        "a: 18446744073709551616\n",
        "a: -9223372036854775809\n",
        // Flow forms not needed by manifests.
        "a: [a, b, ]\n",
        "a: {b: , c: d}\n",
        "a: {b}\n",
        "a: [b: c]\n",
        "a: {b:c}\n",
        "a: {\"b\":c}\n",
        "a: {url: http://x}\n",
        "a: [-]\n",
        "a: [a] b\n",
        "a: {b: c}: d\n",
        // serde_json's raw-value marker.
        "$serde_json::private::RawValue: x\n",
        // Syntax errors.
        "a: b: c\n",
        "a: b\n  c: d\n",
        "a: b\n  c:\n",
        "a: b # comment\n  c\n",
        "a: b:\n",
        "a: - b\n",
        "- - a\n",
        "a:\n  - b\n  c: d\n",
        "a: [b\n",
        "a: 'b\n",
        "a: \"\\q\"\n",
        "a: \"\\uD800\"\n",
        "a: \"\\x4\"\n",
        "a:b\n",
        "a: b\nc\n",
        "- a\nb: c\n",
        "a: ,b\n",
        "a: ]\n",
        "a: \"b\"c\n",
        "a: \"b\"#c\n",
        "\"a\" : b\n",
    ]);
}

#[test]
fn deep_nesting_bails_before_serde_yaml_ngs_limit() {
    let mut text = String::new();
    for depth in 0..100 {
        text.push_str(&" ".repeat(depth * 2));
        text.push_str("a:\n");
    }
    assert_eq!(parse(&text), None);
    let flow = format!("a: {}{}\n", "[".repeat(100), "]".repeat(100));
    assert_eq!(parse(&flow), None);
    let shallow = format!("a: {}{}\n", "[".repeat(10), "]".repeat(10));
    assert!(agrees(&shallow));
}

#[test]
fn a_key_past_libyamls_simple_key_limit_bails() {
    let long = format!("{}: b\n", "k".repeat(1100));
    assert_eq!(parse(&long), None);
    let fine = format!("{}: b\n", "k".repeat(900));
    assert!(agrees(&fine));
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

/// Every document of the corpus (tests/fixtures/corpus): what the fast path reads, it reads as serde_yaml_ng
/// does, and it reads most of them.
#[test]
fn the_corpus_reads_the_same_and_mostly_on_the_fast_path() {
    let mut files = Vec::new();
    yaml_files(Path::new(CORPUS), &mut files);
    files.sort();
    assert!(files.len() > 100, "the corpus is missing: {CORPUS}");
    let (mut documents, mut fast, mut bytes, mut fast_bytes) = (0usize, 0usize, 0usize, 0usize);
    let mut missed = Vec::new();
    for file in &files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        for chunk in split_documents(text) {
            // Only the documents serde_yaml_ng reads into something are worth counting.
            if !serde_yaml(chunk.text).is_ok_and(|v| !v.is_null()) {
                assert!(!agrees(chunk.text));
                continue;
            }
            documents += 1;
            bytes += chunk.text.len();
            if agrees(chunk.text) {
                fast += 1;
                fast_bytes += chunk.text.len();
            } else {
                missed.push(format!("{}:{}", file.display(), chunk.first_line));
            }
        }
    }
    let share = fast as f64 / documents as f64;
    eprintln!(
        "fast path: {fast} of {documents} corpus documents ({:.1}%), {:.1}% of their bytes; \
         first ones left to serde_yaml_ng: {:?}",
        share * 100.0,
        fast_bytes as f64 * 100.0 / bytes as f64,
        &missed[..missed.len().min(10)],
    );
    assert!(share >= 0.95, "only {fast} of {documents} on the fast path");
}

/// The manifests the mutation test starts from: each construct of the subset, and each
/// mutation of them something near the subset's edge.
const SEEDS: &[&str] = &[
    "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web-1\n  labels: {app: web-1}\nspec:\n  replicas: 2\n  template:\n    spec:\n      containers:\n      - name: web\n        image: registry.example.com/web:1.1\n        ports:\n        - containerPort: 8080\n        resources:\n          requests: {cpu: 100m, memory: 64Mi}\n",
    "---\napiVersion: v1\nkind: ConfigMap\ndata:\n  LOG_LEVEL: info\n  FEATURE_FLAGS: \"a,b,c\"\n  config.yaml: |\n    server:\n      port: 8080\n\n    x: 1\n  folded: >-\n    a\n    b\n\n    c\n",
    "# c\nsubjects:\n- apiGroup: rbac.authorization.k8s.io\n  kind: Group # trailing\n  name: 'gitlab:project_env:1:production'\n- {kind: User, name: \"a\\tb\\u00e9\"}\nlist: [1, -2.5, true, ~, 007, \"x\"]\nempty:\nnested:\n  -\n    - a\n",
    "a: 'it''s'\nb: \"q\\\"\"\nc: |+\n  keep\n\nd: x # y\ne: 1e3\nf: [a, {b: c}]\ng: -7\n",
];

const INTERESTING: &[u8] = b": -#'\"|>{}[],&*!\t\n0.x\\~%@?+\r";

/// A small deterministic generator, so that a failure reproduces.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn mutate(seed: &[u8], rng: &mut XorShift) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for _ in 0..1 + rng.below(3) {
        let at = rng.below(bytes.len() + 1);
        let byte = INTERESTING[rng.below(INTERESTING.len())];
        match rng.below(3) {
            0 if at < bytes.len() => {
                bytes.remove(at);
            }
            1 if at < bytes.len() => bytes[at] = byte,
            _ => bytes.insert(at, byte),
        }
    }
    bytes
}

/// Texts one to three edits away from real manifests: the fast path never reads one
/// differently from serde_yaml_ng, nor reads one serde_yaml_ng refuses.
#[test]
fn mutated_manifests_never_read_differently() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let (mut tried, mut taken) = (0usize, 0usize);
    for seed in SEEDS {
        assert!(agrees(seed), "the seed is not in the subset: {seed:?}");
        // Every single-byte deletion and every interesting replacement.
        for at in 0..seed.len() {
            let mut deleted = seed.as_bytes().to_vec();
            deleted.remove(at);
            for &byte in INTERESTING {
                let mut replaced = seed.as_bytes().to_vec();
                replaced[at] = byte;
                for text in [&deleted, &replaced] {
                    if let Ok(text) = std::str::from_utf8(text) {
                        tried += 1;
                        taken += usize::from(agrees(text));
                    }
                }
            }
        }
        for _ in 0..3000 {
            let mutated = mutate(seed.as_bytes(), &mut rng);
            if let Ok(text) = std::str::from_utf8(&mutated) {
                tried += 1;
                taken += usize::from(agrees(text));
            }
        }
    }
    eprintln!("{taken} of {tried} mutated texts on the fast path");
    // The mutations must exercise the fast path, not only its bail-outs.
    assert!(taken * 4 > tried, "{taken} of {tried}");
}

/// Not a check: `FAST_YAML_FILE=path cargo test --lib explain_bail_outs -- --ignored
/// --nocapture` shrinks each document of the file that serde_yaml_ng reads and the fast path
/// does not to the fewest lines that still bail by the same rule, and prints them with the
/// rule's line in fast_yaml.rs.
#[test]
#[ignore]
fn explain_bail_outs() {
    let file = std::env::var("FAST_YAML_FILE").unwrap_or_default();
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    let rule = |lines: &[&str]| {
        let t = lines.concat();
        (serde_yaml(&t).is_ok_and(|v| !v.is_null()) && parse(&t).is_none())
            .then(|| super::LAST_BAIL.with(|b| b.get()))
    };
    for chunk in split_documents(&text) {
        let mut lines: Vec<&str> = chunk.text.split_inclusive('\n').collect();
        let Some(first) = rule(&lines) else {
            continue;
        };
        let bails = |lines: &[&str]| rule(lines) == Some(first);
        let mut size = lines.len() / 2;
        while size >= 1 {
            let mut at = 0;
            while at + size <= lines.len() {
                let mut fewer = lines.clone();
                fewer.drain(at..at + size);
                if bails(&fewer) {
                    lines = fewer;
                } else {
                    at += size;
                }
            }
            size /= 2;
        }
        eprintln!(
            "{}: rule at line {first}: {:?}",
            chunk.first_line,
            lines.concat()
        );
    }
}

#[test]
fn a_key_repeated_among_many_bails() {
    let mut text: String = (0..40).map(|i| format!("key{i}: {i}\n")).collect();
    assert!(agrees(&text));
    text.push_str("key7: again\n");
    assert_eq!(parse(&text), None);
}

#[test]
fn strings_are_escaped_as_serde_json_escapes_them() {
    for s in [
        "plain",
        "q\"uote",
        "back\\slash",
        "tab\tnew\nline\r",
        "\u{1}\u{8}\u{c}\u{1f}\u{7f}",
        "é ✓ 𝄞",
    ] {
        let mut out = String::new();
        super::write_string(&mut out, s);
        assert_eq!(out, serde_json::to_string(s).expect("a string serializes"));
    }
}

#[test]
fn numbers_are_written_as_serde_json_writes_them() {
    for (yaml, json) in [
        ("a: 1\n", r#"{"a":1}"#),
        ("a: -12\n", r#"{"a":-12}"#),
        ("a: 1.5\n", r#"{"a":1.5}"#),
        ("a: 1e3\n", r#"{"a":1000.0}"#),
        ("a: 18446744073709551615\n", r#"{"a":18446744073709551615}"#),
        // Read back exactly only with serde_json's float_roundtrip (found by the fuzz target).
        ("a: -67441e75\n", r#"{"a":-6.7441e+79}"#),
    ] {
        assert_eq!(to_json(yaml).as_deref(), Some(json), "{yaml:?}");
        assert!(agrees(yaml));
    }
}
