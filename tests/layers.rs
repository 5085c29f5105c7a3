//! The layer rule of ARCHITECTURE.md: every module of `src/` names only modules of the layers
//! below its own. The order is read from ARCHITECTURE.md itself (its `layers` block), so the
//! document and this check cannot drift apart; every `crate::`, `super::` and (in `main.rs`)
//! `fluxgate::` path in the code is resolved to the top-level module it names. Comments, strings
//! and character literals are not code and are left out.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A module's place in the order: layer 1 is the bottom.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Place {
    layer: usize,
    /// The modules of the layer, for messages (`cluster`, `admission flux gitlab rbac`).
    members: String,
}

/// The order from the first ```` ```layers ```` block of `markdown`: one line per module
/// (`name  what it is`), the top layer first, layers separated by a line of dashes.
fn parse_layers(markdown: &str) -> Result<BTreeMap<String, Place>, String> {
    let block = markdown
        .split("```layers")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .ok_or("ARCHITECTURE.md has no ```layers block")?;
    let mut layers: Vec<Vec<String>> = vec![Vec::new()];
    for (i, line) in block.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line.chars().all(|c| c == '-') {
            layers.push(Vec::new());
            continue;
        }
        let mut words = line.split_whitespace();
        let name = words.next().unwrap_or_default();
        if words.next().is_none() {
            return Err(format!(
                "ARCHITECTURE.md layers block, line {}: `{name}` says nothing about what it is",
                i + 1
            ));
        }
        if let Some(layer) = layers.last_mut() {
            layer.push(name.to_string());
        }
    }
    layers.retain(|l| !l.is_empty());
    let count = layers.len();
    let mut places = BTreeMap::new();
    for (from_top, modules) in layers.iter().enumerate() {
        let place = Place {
            layer: count - from_top,
            members: modules.join(" "),
        };
        for name in modules {
            if places.insert(name.clone(), place.clone()).is_some() {
                return Err(format!("ARCHITECTURE.md layers block names `{name}` twice"));
            }
        }
    }
    Ok(places)
}

/// The module path of a file under `src/` (`policy/single_agent.rs` is `policy::single_agent`;
/// `main.rs` is the binary, `main`).
fn module_path(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if let Some(last) = parts.pop() {
        let stem = last.strip_suffix(".rs").unwrap_or(&last).to_string();
        if stem != "mod" && stem != "lib" {
            parts.push(stem);
        }
    }
    parts
}

/// The code of a Rust file with comments, string literals and character literals replaced by
/// spaces (newlines kept, so that offsets still give line numbers).
fn code_only(source: &str) -> String {
    let bytes = source.as_bytes();
    let mut out = bytes.to_vec();
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for b in &mut out[from..to.min(bytes.len())] {
            if *b != b'\n' {
                *b = b' ';
            }
        }
    };
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < bytes.len() {
        let rest = &bytes[i..];
        if rest.starts_with(b"//") {
            let end = memchr_from(bytes, i, b'\n');
            blank(&mut out, i, end);
            i = end;
        } else if rest.starts_with(b"/*") {
            // Block comments nest.
            let (mut depth, mut j) = (0usize, i);
            while j < bytes.len() {
                if bytes[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if bytes[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            blank(&mut out, i, j);
            i = j;
        } else if let Some(end) =
            raw_string_end(bytes, i).filter(|_| i == 0 || !ident(bytes[i - 1]))
        {
            blank(&mut out, i, end);
            i = end;
        } else if bytes[i] == b'"' {
            let mut j = i + 1;
            while j < bytes.len() && bytes[j] != b'"' {
                j += if bytes[j] == b'\\' { 2 } else { 1 };
            }
            blank(&mut out, i, j + 1);
            i = j + 1;
        } else if bytes[i] == b'\'' {
            // A character literal ('x', '\n', '\'', 'é'), or a lifetime ('a, 'static).
            let end = if rest.get(1) == Some(&b'\\') {
                let mut j = i + 2;
                while j < bytes.len() && bytes[j] != b'\'' {
                    j += if bytes[j] == b'\\' { 2 } else { 1 };
                }
                Some(j + 1)
            } else {
                source[i + 1..]
                    .chars()
                    .next()
                    .map(|c| i + 1 + c.len_utf8())
                    .filter(|&after| bytes.get(after) == Some(&b'\''))
                    .map(|after| after + 1)
            };
            match end {
                Some(end) => {
                    blank(&mut out, i, end);
                    i = end;
                }
                None => i += 1,
            }
        } else {
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn memchr_from(bytes: &[u8], from: usize, byte: u8) -> usize {
    bytes[from..]
        .iter()
        .position(|&b| b == byte)
        .map_or(bytes.len(), |p| from + p)
}

/// Where a raw string literal (`r"…"`, `r#"…"#`, `br"…"`) starting at `i` ends.
fn raw_string_end(bytes: &[u8], i: usize) -> Option<usize> {
    let mut j = i;
    if bytes.get(j) == Some(&b'b') {
        j += 1;
    }
    if bytes.get(j) != Some(&b'r') {
        return None;
    }
    j += 1;
    let hashes = bytes[j..].iter().take_while(|&&b| b == b'#').count();
    j += hashes;
    if bytes.get(j) != Some(&b'"') {
        return None;
    }
    let mut closing = vec![b'"'];
    closing.extend(std::iter::repeat_n(b'#', hashes));
    let body = j + 1;
    bytes[body..]
        .windows(closing.len())
        .position(|w| w == closing.as_slice())
        .map(|p| body + p + closing.len())
}

/// One path in the code that names a top-level module.
#[derive(Debug, PartialEq, Eq)]
struct Reference {
    line: usize,
    module: String,
}

/// Every top-level module the code of one file names, with the line it is named on. `path` is
/// the file's module path (see [`module_path`]).
fn references(source: &str, path: &[String]) -> Vec<Reference> {
    let code = code_only(source);
    let bytes = code.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let line_of = |at: usize| code[..at].matches('\n').count() + 1;
    let word_at = |at: usize| -> &str {
        let end = at + bytes[at..].iter().take_while(|&&b| ident(b)).count();
        &code[at..end]
    };
    let skip_ws = |mut at: usize| {
        while at < bytes.len() && bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        at
    };
    // `::` after `at` (with spaces around it), and where the next segment starts.
    let after_colons = |at: usize| -> Option<usize> {
        let at = skip_ws(at);
        bytes[at..].starts_with(b"::").then(|| skip_ws(at + 2))
    };
    let mut found = Vec::new();
    // Inline modules (`mod tests { … }`) and the brace depth each opened at.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'{' {
            depth += 1;
            i += 1;
            continue;
        }
        if b == b'}' {
            depth = depth.saturating_sub(1);
            if inline.last().is_some_and(|(_, d)| *d == depth) {
                inline.pop();
            }
            i += 1;
            continue;
        }
        if !ident(b) || (i > 0 && (ident(bytes[i - 1]) || bytes[i - 1] == b'$')) {
            i += 1;
            continue;
        }
        let word = word_at(i);
        let next = i + word.len();
        match word {
            "mod" => {
                let name_at = skip_ws(next);
                let name = word_at(name_at).to_string();
                let after = skip_ws(name_at + name.len());
                if !name.is_empty() && bytes.get(after) == Some(&b'{') {
                    inline.push((name, depth));
                }
            }
            "crate" | "super" | "fluxgate" => {
                // `fluxgate::` names the library from the binary only.
                let root_path = word == "crate" || (word == "fluxgate" && path == ["main"]);
                let mut here: Vec<String> = path.to_vec();
                here.extend(inline.iter().map(|(n, _)| n.clone()));
                let mut at = next;
                let mut resume = next;
                let mut base: Option<Vec<String>> = if root_path { Some(Vec::new()) } else { None };
                if word == "super" {
                    // A chain of `super::super::…`.
                    here.pop();
                    let mut cursor = next;
                    loop {
                        match after_colons(cursor) {
                            Some(seg) if word_at(seg) == "super" => {
                                if here.pop().is_none() {
                                    break;
                                }
                                cursor = seg + 5;
                            }
                            _ => break,
                        }
                    }
                    base = Some(here.clone());
                    at = cursor;
                    // The rest of the chain is read here, not as chains of its own.
                    resume = cursor;
                }
                if let (Some(base), Some(seg)) = (base, after_colons(at)) {
                    let line = line_of(i);
                    let mut named: Vec<String> = Vec::new();
                    if bytes.get(seg) == Some(&b'{') {
                        // `use crate::{a::X, b::{Y, Z}}`: the first segment of each item.
                        let mut level = 0;
                        let mut item_start = true;
                        let mut j = seg;
                        while j < bytes.len() {
                            match bytes[j] {
                                b'{' => {
                                    level += 1;
                                    if level == 1 {
                                        item_start = true;
                                    }
                                }
                                b'}' => {
                                    level -= 1;
                                    if level == 0 {
                                        break;
                                    }
                                }
                                b',' if level == 1 => item_start = true,
                                c if ident(c) && level == 1 && item_start => {
                                    named.push(word_at(j).to_string());
                                    item_start = false;
                                    j += word_at(j).len();
                                    continue;
                                }
                                _ => {}
                            }
                            j += 1;
                        }
                    } else {
                        named.push(word_at(seg).to_string());
                    }
                    for first in named {
                        // From the crate root the first segment is a top-level module; below
                        // it the path stays inside the module it started from.
                        let top = match base.first() {
                            None => first,
                            Some(top) => top.clone(),
                        };
                        if top.is_empty() || top == "self" {
                            continue;
                        }
                        found.push(Reference { line, module: top });
                    }
                }
                i = resume;
                continue;
            }
            _ => {}
        }
        i = next;
    }
    found
}

/// Every place a file under `src/` names a module of its own layer or of a layer above it.
fn violations(places: &BTreeMap<String, Place>, files: &[(PathBuf, String)]) -> Vec<String> {
    let mut out = Vec::new();
    for (relative, source) in files {
        let path = module_path(relative);
        let Some(own) = path.first() else { continue };
        let shown = Path::new("src").join(relative).display().to_string();
        let Some(from) = places.get(own) else {
            out.push(format!(
                "{shown}: module `{own}` is not in ARCHITECTURE.md's layers block; add it to the layer it belongs to"
            ));
            continue;
        };
        for r in references(source, &path) {
            if &r.module == own {
                continue;
            }
            let Some(to) = places.get(&r.module) else {
                out.push(format!(
                    "{shown}:{}: `{}` is not in ARCHITECTURE.md's layers block",
                    r.line, r.module
                ));
                continue;
            };
            if to.layer >= from.layer {
                let relation = if to.layer == from.layer {
                    "its own layer"
                } else {
                    "a layer above it"
                };
                out.push(format!(
                    "{shown}:{}: `{own}` (layer {} of {}: {}) names `{}` (layer {}: {}), {relation}; a module may use only the layers below its own (ARCHITECTURE.md): move the shared part down, or pass it in from above",
                    r.line,
                    from.layer,
                    places.values().map(|p| p.layer).max().unwrap_or(0),
                    from.members,
                    r.module,
                    to.layer,
                    to.members,
                ));
            }
        }
    }
    out
}

fn rust_files(dir: &Path, root: &Path, out: &mut Vec<(PathBuf, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, root, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let source = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            let relative = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
            out.push((relative, source));
        }
    }
}

#[test]
fn every_module_names_only_the_layers_below_its_own() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let markdown = std::fs::read_to_string(repo.join("ARCHITECTURE.md"))
        .expect("ARCHITECTURE.md at the top of the repository");
    let places = parse_layers(&markdown).unwrap_or_else(|e| panic!("{e}"));
    let src = repo.join("src");
    let mut files = Vec::new();
    rust_files(&src, &src, &mut files);
    let files: Vec<_> = files
        .into_iter()
        .filter(|(relative, _)| relative != Path::new("lib.rs"))
        .collect();
    assert!(
        files.len() > 50,
        "found only {} files under src/",
        files.len()
    );
    // A reader that stopped seeing paths would pass every tree: it must see the crate's.
    let named: usize = files
        .iter()
        .map(|(relative, source)| references(source, &module_path(relative)).len())
        .sum();
    assert!(
        named > 200,
        "only {named} paths to other modules found under src/"
    );
    let found = violations(&places, &files);
    assert!(
        found.is_empty(),
        "{} upward or sideways imports:\n{}",
        found.len(),
        found.join("\n")
    );
    // Every layer entry is a module that exists, so the block stays the list of modules.
    for name in places.keys() {
        let exists = src.join(format!("{name}.rs")).exists() || src.join(name).is_dir();
        assert!(
            exists,
            "ARCHITECTURE.md's layers block names `{name}`, which is not a module under src/"
        );
    }
}

const SAMPLE: &str = "
```layers
cli        the command line
---
engine     judges
config     the file
---
cluster    the cluster view
---
json_view  JSON views
finding    findings
```
";

fn check(file: &str, source: &str) -> Vec<String> {
    let places = parse_layers(SAMPLE).expect("sample parses");
    violations(&places, &[(PathBuf::from(file), source.to_string())])
}

#[test]
fn the_order_is_read_top_first_and_numbered_from_the_bottom() {
    let places = parse_layers(SAMPLE).expect("parses");
    assert_eq!(places["json_view"].layer, 1);
    assert_eq!(places["cluster"].layer, 2);
    assert_eq!(places["config"].layer, 3);
    assert_eq!(places["engine"].members, "engine config");
    assert_eq!(places["cli"].layer, 4);
    assert!(parse_layers("no block").is_err());
    assert!(
        parse_layers("```layers\ncli\n```").is_err(),
        "a module needs a description"
    );
    assert!(
        parse_layers("```layers\ncli a\n---\ncli b\n```").is_err(),
        "named twice"
    );
}

#[test]
fn an_upward_import_fails_with_the_file_line_and_both_layers() {
    let found = check(
        "cluster/mod.rs",
        "//! The view.\n\nuse crate::json_view::Indexed;\nuse crate::config::Config;\n",
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("src/cluster/mod.rs:4: `cluster` (layer 2 of 4: cluster) names `config` (layer 3: engine config), a layer above it"), "{}", found[0]);
}

#[test]
fn downward_imports_pass_and_a_layer_mate_does_not() {
    assert!(
        check(
            "engine.rs",
            "use crate::cluster::View;\nuse crate::finding::Mode;\n"
        )
        .is_empty()
    );
    let found = check("engine.rs", "fn f(c: &crate::config::Config) {}\n");
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("`engine` (layer 3 of 4: engine config) names `config` (layer 3: engine config), its own layer"), "{}", found[0]);
}

#[test]
fn grouped_and_inline_paths_are_resolved() {
    let found = check(
        "cluster/memory.rs",
        "use crate::{json_view::X, engine::{Engine, Endpoint}};\nfn f() { let _ = crate::cli::main(); }\n",
    );
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].contains(":1: `cluster`") && found[0].contains("names `engine`"));
    assert!(found[1].contains(":2: `cluster`") && found[1].contains("names `cli`"));
    let spaced = check(
        "cluster/memory.rs",
        "use crate :: {\n    finding::Mode,\n    config::Config,\n};\n",
    );
    assert_eq!(spaced.len(), 1, "{spaced:?}");
    assert!(spaced[0].contains("names `config`"));
}

#[test]
fn super_paths_are_resolved_from_the_module_they_are_written_in() {
    // Inside `cluster::memory::tests`, two `super`s are still `cluster`; three reach the root.
    let source = "mod tests {\n    use super::super::WATCHED;\n    use super::super::super::engine::Engine;\n}\n";
    let found = check("cluster/memory.rs", source);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("src/cluster/memory.rs:3:"),
        "{}",
        found[0]
    );
    // From a top-level file, `super` is the crate root.
    let found = check(
        "cluster.rs",
        "use super::config::Config;\nuse super::{finding::Mode, engine::Engine};\n",
    );
    assert_eq!(found.len(), 2, "{found:?}");
    // After an inline module closes, `super` is the file's parent again.
    let found = check(
        "cluster/memory.rs",
        "mod a { fn f() {} }\nuse super::Lookup;\n",
    );
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn comments_strings_and_characters_are_not_code() {
    let source = r###"
//! See [`crate::engine::Engine`] for who calls this.
/* crate::config::Config /* nested crate::cli */ */
const A: &str = "crate::config::Config";
const B: &str = r#"use crate::engine::Engine; "quoted""#;
const C: char = '"';
const D: char = '\'';
fn f<'a>(x: &'a str) -> &'a str { x }
const E: &str = "escaped \" crate::engine::X";
"###;
    assert!(check("cluster.rs", source).is_empty());
    // ... and code after them is still read.
    let found = check(
        "cluster.rs",
        &format!("{source}use crate::engine::Engine;\n"),
    );
    assert_eq!(found.len(), 1, "{found:?}");
}

#[test]
fn a_module_missing_from_the_order_is_named() {
    let found = check("metrics.rs", "use crate::finding::Mode;\n");
    assert_eq!(found.len(), 1);
    assert!(
        found[0].contains("module `metrics` is not in ARCHITECTURE.md"),
        "{}",
        found[0]
    );
    let found = check("cluster.rs", "use crate::nowhere::X;\n");
    assert!(
        found[0].contains("`nowhere` is not in ARCHITECTURE.md"),
        "{}",
        found[0]
    );
}

#[test]
fn the_binary_names_the_library_by_its_crate_name() {
    let places = parse_layers(
        "```layers\nmain the binary\n---\ncli the command line\n---\nengine judges\n```",
    )
    .expect("parses");
    let files = [(
        PathBuf::from("main.rs"),
        "fn main() { fluxgate::cli::main() }\n".to_string(),
    )];
    assert!(violations(&places, &files).is_empty());
    let files = [(
        PathBuf::from("engine.rs"),
        "use crate::cli::Args;\n".to_string(),
    )];
    assert_eq!(violations(&places, &files).len(), 1);
}
