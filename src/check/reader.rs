//! Reads manifests the way `kubectl apply -f` would: files, directories (recursively:
//! `*.yaml`, `*.yml`, `*.json`) and standard input; multi-document YAML, JSON (one value or
//! several concatenated), `List` kinds. Each document keeps the line it starts on, so that every
//! finding and every error points at `file:line`.
//!
//! A document is parsed once, into the JSON text that the cluster view and the engine both
//! read (a `Value` tree only for the rare documents that need one: `List`s, agent
//! configurations). What is not a manifest (a Helm template, a values file, a kustomization) is skipped
//! with a note instead of failing the run; a YAML or JSON syntax error in a manifest fails it.

use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use regex::Regex;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::admission::ObjectHead;
use crate::gitlab::agent_config;
use crate::json_view::Indexed;

/// How reports name standard input.
pub const STDIN_NAME: &str = "<stdin>";

/// Lists nested deeper than this are not expanded (kubectl never nests them at all).
const MAX_LIST_DEPTH: usize = 4;

/// One thing to check, with where it came from.
#[derive(Debug, Clone)]
pub struct Document {
    /// The file as reports name it (`<stdin>` for standard input).
    pub file: Arc<str>,
    /// The line the document (or the List holding this item) starts on, 1-based.
    pub line: usize,
    /// The index in `items` when the object came from a `List`.
    pub item: Option<usize>,
    pub content: Content,
}

#[derive(Debug, Clone)]
pub enum Content {
    /// A Kubernetes object, as JSON, and its string `apiVersion`, `kind`, name and namespace.
    Object {
        json: Box<RawValue>,
        head: ObjectHead,
    },
    /// A GitLab agent configuration file (`.gitlab/agents/<name>/config.yaml`).
    AgentConfig {
        config: Value,
        /// The agent's name when the path says it.
        agent: Option<String>,
        /// The document's text, to find the lines of the entries findings point at.
        text: Arc<str>,
        /// The file line `text` starts on.
        text_line: usize,
    },
}

/// Something read but deliberately not checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    pub file: String,
    pub line: Option<usize>,
    pub reason: String,
}

/// An input that could not be read: the run exits 2.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}: {message}", location(*.line, *.column))]
pub struct InputError {
    pub file: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

fn location(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(":{l}:{c}"),
        (Some(l), None) => format!(":{l}"),
        _ => String::new(),
    }
}

/// Everything read from a set of paths.
#[derive(Debug, Default)]
pub struct Inputs {
    pub documents: Vec<Document>,
    pub skipped: Vec<Skip>,
    pub errors: Vec<InputError>,
    /// Files (and standard input) opened and read.
    pub files: usize,
    /// Non-empty YAML or JSON documents parsed, before `List`s are expanded.
    pub parsed_documents: usize,
    /// Every file read, as reports name them (empty ones too: `flux bootstrap` leaves an
    /// empty `gotk-sync.yaml` in some repositories).
    pub file_names: Vec<Arc<str>>,
    /// The kustomization files read (skipped as documents, kept for what they say of the
    /// other files).
    pub kustomizations: Vec<super::kustomize::KustomizationFile>,
}

/// Reads manifests from paths. Standard input (`-`) is read at most once per reader.
pub struct Reader<'r> {
    stdin: Option<&'r mut dyn Read>,
    stdin_used: bool,
}

impl<'r> Reader<'r> {
    pub fn new(stdin: &'r mut dyn Read) -> Self {
        Reader {
            stdin: Some(stdin),
            stdin_used: false,
        }
    }

    /// Reads every path into `inputs`.
    pub fn read_paths(&mut self, paths: &[PathBuf], inputs: &mut Inputs) {
        for path in paths {
            if path.as_os_str() == "-" {
                self.read_stdin(inputs);
            } else {
                let mut visited = HashSet::new();
                read_path(path, true, inputs, &mut visited);
            }
        }
    }

    fn read_stdin(&mut self, inputs: &mut Inputs) {
        if self.stdin_used {
            inputs.errors.push(InputError {
                file: STDIN_NAME.into(),
                line: None,
                column: None,
                message: "standard input (-) is given more than once".into(),
            });
            return;
        }
        self.stdin_used = true;
        let Some(stdin) = self.stdin.take() else {
            return;
        };
        let mut bytes = Vec::new();
        if let Err(e) = stdin.read_to_end(&mut bytes) {
            inputs.errors.push(InputError {
                file: STDIN_NAME.into(),
                line: None,
                column: None,
                message: format!("cannot read: {e}"),
            });
            return;
        }
        inputs.files += 1;
        let before = (
            inputs.parsed_documents,
            inputs.skipped.len(),
            inputs.errors.len(),
        );
        match String::from_utf8(bytes) {
            Ok(text) => parse_text(STDIN_NAME, None, &text, Format::Sniff, inputs),
            Err(e) => inputs.errors.push(not_utf8(STDIN_NAME, e.utf8_error())),
        }
        // `kustomize build | fluxgate check -` with a failing kustomize and no pipefail would
        // otherwise pass with nothing checked.
        if before
            == (
                inputs.parsed_documents,
                inputs.skipped.len(),
                inputs.errors.len(),
            )
        {
            inputs.errors.push(InputError {
                file: STDIN_NAME.into(),
                line: None,
                column: None,
                message: "standard input holds no document: nothing to check (did the command before the pipe fail?)".into(),
            });
        }
    }
}

fn not_utf8(file: &str, e: std::str::Utf8Error) -> InputError {
    InputError {
        file: file.into(),
        line: None,
        column: None,
        message: format!(
            "not UTF-8 text (invalid byte at offset {})",
            e.valid_up_to()
        ),
    }
}

fn has_manifest_extension(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

/// How reports name a path: as given, with `/` separators and without a leading `./`.
pub fn display_path(path: &Path) -> String {
    let text = path.to_string_lossy().replace('\\', "/");
    let mut text = text.as_str();
    while let Some(rest) = text.strip_prefix("./") {
        text = rest;
    }
    text.to_string()
}

fn read_path(path: &Path, explicit: bool, inputs: &mut Inputs, visited: &mut HashSet<PathBuf>) {
    let name = display_path(path);
    let metadata = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            inputs.errors.push(InputError {
                file: name,
                line: None,
                column: None,
                message: format!("cannot read: {e}"),
            });
            return;
        }
    };
    if metadata.is_dir() {
        // A symlink may point back up the tree.
        if let Ok(canonical) = fs::canonicalize(path)
            && !visited.insert(canonical)
        {
            return;
        }
        let mut entries: Vec<PathBuf> = match fs::read_dir(path) {
            Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(e) => {
                inputs.errors.push(InputError {
                    file: name,
                    line: None,
                    column: None,
                    message: format!("cannot read directory: {e}"),
                });
                return;
            }
        };
        // Sorted, so that reports and fingerprints do not depend on the file system's order.
        entries.sort();
        for entry in entries {
            if entry.file_name().is_some_and(|n| n == ".git") {
                continue;
            }
            let is_dir = fs::metadata(&entry).map(|m| m.is_dir()).unwrap_or(false);
            if is_dir || has_manifest_extension(&entry) {
                read_path(&entry, false, inputs, visited);
            }
        }
        return;
    }
    if !explicit && !has_manifest_extension(path) {
        return;
    }
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            inputs.errors.push(InputError {
                file: name,
                line: None,
                column: None,
                message: format!("cannot read: {e}"),
            });
            return;
        }
    };
    inputs.files += 1;
    inputs.file_names.push(Arc::from(name.as_str()));
    if is_helm_chart_template(path) {
        inputs.skipped.push(Skip {
            file: name,
            line: None,
            reason: "Helm chart template: render it first (helm template ... | fluxgate check -)"
                .into(),
        });
        return;
    }
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            inputs.errors.push(not_utf8(&name, e.utf8_error()));
            return;
        }
    };
    let format = if path.extension().is_some_and(|e| e == "json") {
        Format::Json
    } else {
        Format::Yaml
    };
    let agent = agent_config::agent_name_from_path(path);
    parse_text(&name, agent.as_deref(), &text, format, inputs);
}

/// A file under `templates/` of a directory that holds a `Chart.yaml`.
fn is_helm_chart_template(path: &Path) -> bool {
    path.ancestors().skip(1).any(|dir| {
        dir.file_name().is_some_and(|n| n == "templates")
            && dir
                .parent()
                .is_some_and(|chart| chart.join("Chart.yaml").is_file())
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Yaml,
    Json,
    /// Standard input: JSON when it starts like JSON, else YAML.
    Sniff,
}

/// A document parsed from the text, before it is classified.
struct Parsed<'t> {
    line: usize,
    value: Box<RawValue>,
    /// The document's text and the line it starts on, for agent configurations.
    text: (&'t str, usize),
}

/// Parses one file's text and classifies its documents.
fn parse_text(name: &str, agent: Option<&str>, text: &str, format: Format, inputs: &mut Inputs) {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let format = match format {
        Format::Sniff if text.trim_start().starts_with(['{', '[']) => Format::Json,
        Format::Sniff => Format::Yaml,
        other => other,
    };
    let parsed = match format {
        Format::Json => parse_json(name, text),
        _ => parse_yaml(name, text),
    };
    let documents = match parsed {
        Ok(docs) => docs,
        Err(error) => {
            if looks_like_go_template(text) {
                inputs.skipped.push(Skip {
                    file: name.into(),
                    line: error.line,
                    reason: "a Go or Helm template, not a manifest ({{ ... }} does not parse as YAML): render it first".into(),
                });
            } else {
                inputs.errors.push(error);
            }
            return;
        }
    };
    let file: Arc<str> = Arc::from(name);
    for doc in documents {
        inputs.parsed_documents += 1;
        classify(&file, agent, doc, inputs);
    }
}

fn looks_like_go_template(text: &str) -> bool {
    text.contains("{{")
}

fn classify(file: &Arc<str>, agent: Option<&str>, doc: Parsed, inputs: &mut Inputs) {
    let Parsed { line, value, text } = doc;
    let skip = |reason: String, inputs: &mut Inputs| {
        inputs.skipped.push(Skip {
            file: file.to_string(),
            line: Some(line),
            reason,
        })
    };
    // Most documents are objects: their text goes on as it is, and only the rest become trees.
    if agent.is_none()
        && value.get().starts_with('{')
        && let Ok(head) = ObjectHead::from_raw(&Indexed::skimmed(&value))
    {
        if let Some(reason) = not_a_cluster_object(head.api_version(), head.kind()) {
            if is_kustomization(file, head.api_version(), head.kind())
                && let Ok(tree) = tree(&value)
            {
                inputs
                    .kustomizations
                    .push(super::kustomize::KustomizationFile::read(
                        file.clone(),
                        &tree,
                    ));
            }
            skip(reason, inputs);
        } else if is_list(head.kind(), &value) {
            match tree(&value) {
                Ok(tree) => push_object(file, line, None, tree, 0, inputs),
                Err(reason) => skip(reason, inputs),
            }
        } else {
            inputs.documents.push(Document {
                file: file.clone(),
                line,
                item: None,
                content: Content::Object { json: value, head },
            });
        }
        return;
    }
    let value = match tree(&value) {
        Ok(value) => value,
        Err(reason) => return skip(reason, inputs),
    };
    if let Some(agent) = agent {
        inputs.documents.push(Document {
            file: file.clone(),
            line,
            item: None,
            content: Content::AgentConfig {
                config: value,
                agent: Some(agent.to_string()),
                text: Arc::from(text.0),
                text_line: text.1,
            },
        });
        return;
    }
    let Value::Object(map) = value else {
        skip(
            format!(
                "not a Kubernetes object (the document is {}, not a mapping)",
                json_type(&value)
            ),
            inputs,
        );
        return;
    };
    let api_version = map.get("apiVersion").and_then(Value::as_str);
    let kind = map.get("kind").and_then(Value::as_str);
    match (api_version, kind) {
        (Some(api_version), Some(kind)) => {
            if let Some(reason) = not_a_cluster_object(api_version, kind) {
                if is_kustomization(file, api_version, kind) {
                    inputs
                        .kustomizations
                        .push(super::kustomize::KustomizationFile::read(
                            file.clone(),
                            &Value::Object(map),
                        ));
                }
                skip(reason, inputs);
                return;
            }
            push_object(file, line, None, Value::Object(map), 0, inputs);
        }
        _ if agent_config::looks_like_agent_config(&map) => {
            inputs.documents.push(Document {
                file: file.clone(),
                line,
                item: None,
                content: Content::AgentConfig {
                    config: Value::Object(map),
                    agent: None,
                    text: Arc::from(text.0),
                    text_line: text.1,
                },
            });
        }
        // kustomize reads a kustomization file without apiVersion and kind too.
        _ if super::kustomize::is_kustomization_file(file) => {
            inputs
                .kustomizations
                .push(super::kustomize::KustomizationFile::read(
                    file.clone(),
                    &Value::Object(map),
                ));
            skip(
                "kustomization file, not a cluster object (check `kustomize build` output to judge patched objects)".to_string(),
                inputs,
            )
        }
        _ => skip(
            "not a Kubernetes object (no apiVersion and kind)".to_string(),
            inputs,
        ),
    }
}

/// A kustomization (or kustomize Component) document: by its kind, or by the file name
/// kustomize reads for a directory.
fn is_kustomization(file: &str, api_version: &str, kind: &str) -> bool {
    let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
    (group == "kustomize.config.k8s.io" && matches!(kind, "Kustomization" | "Component"))
        || super::kustomize::is_kustomization_file(file)
}

/// A `List` to expand: as [`push_object`] tells one from a tree.
fn is_list(kind: &str, object: &RawValue) -> bool {
    kind == "List"
        || (kind.ends_with("List")
            && crate::json_view::member(object, "items")
                .is_some_and(|items| items.get().starts_with('[')))
}

/// The document as a tree, for the documents read as more than text.
fn tree(raw: &RawValue) -> Result<Value, String> {
    serde_json::from_str(raw.get()).map_err(|e| format!("cannot be read: {e}"))
}

/// Build-tool files that look like objects but never reach a cluster.
fn not_a_cluster_object(api_version: &str, kind: &str) -> Option<String> {
    let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
    match group {
        "kustomize.config.k8s.io" => Some(format!(
            "kustomize {kind} file, not a cluster object (check `kustomize build` output to judge patched objects)"
        )),
        "admission.k8s.io" => Some(format!("{kind} is a webhook message, not a manifest")),
        "kpt.dev" | "config.kubernetes.io" => Some(format!(
            "{api_version} {kind} is a kpt/KRM tool file, not applied to a cluster"
        )),
        _ => None,
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Adds an object, expanding `List`s (`kubectl get -o yaml` output).
fn push_object(
    file: &Arc<str>,
    line: usize,
    item: Option<usize>,
    value: Value,
    depth: usize,
    inputs: &mut Inputs,
) {
    let list_kind = value
        .get("kind")
        .and_then(Value::as_str)
        .filter(|k| {
            *k == "List" || (k.ends_with("List") && value.get("items").is_some_and(Value::is_array))
        })
        .map(str::to_string);
    let Some(list_kind) = list_kind.filter(|_| depth < MAX_LIST_DEPTH) else {
        let object = ObjectHead::from_value(&value).and_then(|head| {
            serde_json::value::to_raw_value(&value)
                .map(|json| (json, head))
                .map_err(|e| format!("cannot be written as JSON: {e}"))
        });
        match object {
            Ok((json, head)) => inputs.documents.push(Document {
                file: file.clone(),
                line,
                item,
                content: Content::Object { json, head },
            }),
            Err(reason) => inputs.skipped.push(Skip {
                file: file.to_string(),
                line: Some(line),
                reason: format!("not a Kubernetes object: {reason}"),
            }),
        }
        return;
    };
    let api_version = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let Value::Object(mut map) = value else {
        return;
    };
    let items = match map.remove("items") {
        Some(Value::Array(items)) => items,
        Some(Value::Null) | None => Vec::new(),
        Some(other) => {
            inputs.skipped.push(Skip {
                file: file.to_string(),
                line: Some(line),
                reason: format!(
                    "{list_kind} has items that are {}, not a list",
                    json_type(&other)
                ),
            });
            return;
        }
    };
    // Typed lists from the API (`RoleBindingList`) may leave kind and apiVersion off items.
    let item_kind = list_kind.strip_suffix("List").filter(|k| !k.is_empty());
    for (index, item_value) in items.into_iter().enumerate() {
        let Value::Object(mut object) = item_value else {
            inputs.skipped.push(Skip {
                file: file.to_string(),
                line: Some(line),
                reason: format!("{list_kind} items[{index}] is not an object"),
            });
            continue;
        };
        if let Some(kind) = item_kind {
            object
                .entry("kind")
                .or_insert_with(|| Value::String(kind.to_string()));
            object
                .entry("apiVersion")
                .or_insert_with(|| Value::String(api_version.clone()));
        }
        let has_identity = object.get("apiVersion").is_some_and(Value::is_string)
            && object.get("kind").is_some_and(Value::is_string);
        if !has_identity {
            inputs.skipped.push(Skip {
                file: file.to_string(),
                line: Some(line),
                reason: format!("{list_kind} items[{index}] has no apiVersion and kind"),
            });
            continue;
        }
        // The index of the outermost list is the one a reader can find.
        push_object(
            file,
            line,
            Some(item.unwrap_or(index)),
            Value::Object(object),
            depth + 1,
            inputs,
        );
    }
}

// ---------------------------------------------------------------------------------------------
// YAML

/// A document's text in a multi-document stream and the line it starts on.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Chunk<'t> {
    /// 1-based line of the chunk's first line.
    pub(super) first_line: usize,
    pub(super) text: &'t str,
}

fn is_marker(line: &str, marker: &str) -> bool {
    line.strip_prefix(marker)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n']))
}

/// The lines of `text` with their line ends, as `text.split_inclusive('\n')` gives them, found
/// with memchr: str's char searcher cost as much per object as a fifth of the fast YAML path.
fn lines_inclusive(text: &str) -> impl Iterator<Item = &str> {
    let mut start = 0;
    let mut ends = memchr::memchr_iter(b'\n', text.as_bytes());
    std::iter::from_fn(move || {
        let end = ends.next().map_or(text.len(), |at| at + 1);
        // `\n` is ASCII, so every `end` is a character boundary.
        let line = text.get(start..end).filter(|line| !line.is_empty())?;
        start = end;
        Some(line)
    })
}

/// Splits a YAML stream at its document markers. YAML forbids `---` and `...` at the start
/// of a line inside a document's content, so a line scan finds exactly the parser's
/// boundaries, and each document can be parsed alone with its own line offset.
pub(super) fn split_documents(text: &str) -> Vec<Chunk<'_>> {
    let mut chunks = Vec::new();
    let mut start = 0usize;
    let mut start_line = 1usize;
    let mut in_directives = false;
    let mut offset = 0usize;
    for (index, line) in lines_inclusive(text).enumerate() {
        let line_no = index + 1;
        if is_marker(line, "---") {
            if in_directives {
                // `%YAML 1.2` directives belong to the document this marker starts.
                in_directives = false;
            } else {
                chunks.push(Chunk {
                    first_line: start_line,
                    text: &text[start..offset],
                });
                start = offset;
                start_line = line_no;
            }
        } else if is_marker(line, "...") {
            chunks.push(Chunk {
                first_line: start_line,
                text: &text[start..offset],
            });
            start = offset + line.len();
            start_line = line_no + 1;
            in_directives = false;
        } else if line.starts_with('%') && !in_directives {
            chunks.push(Chunk {
                first_line: start_line,
                text: &text[start..offset],
            });
            start = offset;
            start_line = line_no;
            in_directives = true;
        }
        offset += line.len();
    }
    chunks.push(Chunk {
        first_line: start_line,
        text: &text[start..],
    });
    chunks
}

/// The first line of a chunk that holds content (not blank, a comment or a bare `---`).
fn content_line(chunk: &Chunk<'_>) -> Option<usize> {
    chunk.text.lines().enumerate().find_map(|(i, line)| {
        let body = line.strip_prefix("---").unwrap_or(line).trim();
        (!body.is_empty() && !body.starts_with('#') && !line.starts_with('%'))
            .then_some(chunk.first_line + i)
    })
}

fn parse_yaml<'t>(name: &str, text: &'t str) -> Result<Vec<Parsed<'t>>, InputError> {
    let mut documents = Vec::new();
    for chunk in split_documents(text) {
        let Some(line) = content_line(&chunk) else {
            continue;
        };
        let value = parse_yaml_document(chunk.text).map_err(|e| yaml_error(name, &chunk, e))?;
        if value.get() == "null" {
            // `--- ~` and friends: an empty document, as kubectl treats it.
            continue;
        }
        documents.push(Parsed {
            line,
            value,
            text: (chunk.text, chunk.first_line),
        });
    }
    Ok(documents)
}

fn parse_yaml_document(text: &str) -> Result<Box<RawValue>, serde_yaml_ng::Error> {
    // Most manifests are in the subset the fast path reads, at a tenth of the cost; it
    // writes only what serde_yaml_ng would read, and leaves everything else (errors included)
    // to it.
    if let Some(json) = super::fast_yaml::to_json(text)
        && let Ok(raw) = crate::json_view::trusted_raw(&json)
    {
        return Ok(raw);
    }
    let value = parse_yaml_value(text)?;
    serde_json::value::to_raw_value(&value).map_err(serde::de::Error::custom)
}

fn parse_yaml_value(text: &str) -> Result<Value, serde_yaml_ng::Error> {
    // The direct path covers nearly every manifest. Merge keys (`<<`), non-string keys and
    // tags need the generic YAML value first, converted the way kubectl converts YAML to JSON.
    if !text.contains("<<")
        && let Ok(value) = serde_yaml_ng::from_str::<Value>(text)
    {
        return Ok(value);
    }
    let mut yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(text)?;
    yaml.apply_merge()?;
    yaml_to_json(yaml).map_err(serde::de::Error::custom)
}

fn yaml_to_json(value: serde_yaml_ng::Value) -> Result<Value, String> {
    use serde_yaml_ng::Value as Y;
    Ok(match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => serde_json::to_value(&n).map_err(|e| e.to_string())?,
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(
            items
                .into_iter()
                .map(yaml_to_json)
                .collect::<Result<_, _>>()?,
        ),
        Y::Mapping(mapping) => {
            let mut map = Map::with_capacity(mapping.len());
            for (key, value) in mapping {
                let key = match key {
                    Y::String(s) => s,
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    Y::Null => "null".to_string(),
                    Y::Tagged(t) => match t.value {
                        Y::String(s) => s,
                        _ => return Err("a mapping key is not a scalar".into()),
                    },
                    Y::Sequence(_) | Y::Mapping(_) => {
                        return Err(
                            "a mapping key is a list or a mapping, which JSON cannot hold".into(),
                        );
                    }
                };
                map.insert(key, yaml_to_json(value)?);
            }
            Value::Object(map)
        }
        Y::Tagged(tagged) => yaml_to_json(tagged.value)?,
    })
}

static YAML_POSITION: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"line (\d+) column (\d+)").ok());

fn yaml_error(name: &str, chunk: &Chunk<'_>, error: serde_yaml_ng::Error) -> InputError {
    let offset = chunk.first_line - 1;
    let (line, column) = match error.location() {
        Some(l) => (Some(l.line() + offset), Some(l.column())),
        None => (content_line(chunk), None),
    };
    // The parser counts lines from the start of the document; the report counts from the
    // start of the file.
    let message = error.to_string();
    let message = match YAML_POSITION.as_ref() {
        Some(re) => re
            .replace_all(&message, |c: &regex::Captures<'_>| {
                let l: usize = c[1].parse().unwrap_or(0);
                format!("line {} column {}", l + offset, &c[2])
            })
            .into_owned(),
        None => message,
    };
    InputError {
        file: name.into(),
        line,
        column,
        message: format!("YAML syntax error: {message}"),
    }
}

// ---------------------------------------------------------------------------------------------
// JSON

fn parse_json<'t>(name: &str, text: &'t str) -> Result<Vec<Parsed<'t>>, InputError> {
    let mut documents = Vec::new();
    // Read as trees, not text: a tree keeps the last of repeated keys, as kubectl's decoding
    // into a map does, and the text written from it has each key once.
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    loop {
        let start = stream.byte_offset();
        match stream.next() {
            None => break,
            Some(Ok(value)) => {
                let skipped_ws = text[start..]
                    .find(|c: char| !c.is_whitespace())
                    .unwrap_or(0);
                let line = text[..start + skipped_ws].matches('\n').count() + 1;
                if value.is_null() {
                    continue;
                }
                let value = match serde_json::value::to_raw_value(&value) {
                    Ok(raw) => raw,
                    Err(e) => {
                        return Err(InputError {
                            file: name.into(),
                            line: Some(line),
                            column: None,
                            message: format!("JSON value cannot be written back: {e}"),
                        });
                    }
                };
                documents.push(Parsed {
                    line,
                    value,
                    text: (text, 1),
                });
            }
            Some(Err(e)) => {
                return Err(InputError {
                    file: name.into(),
                    line: Some(e.line()),
                    column: Some(e.column()),
                    message: format!("JSON syntax error: {e}"),
                });
            }
        }
    }
    Ok(documents)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_text(text: &str) -> Inputs {
        let mut inputs = Inputs::default();
        parse_text("t.yaml", None, text, Format::Yaml, &mut inputs);
        inputs
    }

    fn lines(inputs: &Inputs) -> Vec<usize> {
        inputs.documents.iter().map(|d| d.line).collect()
    }

    #[test]
    fn lines_are_split_as_str_splits_them() {
        for text in [
            "",
            "\n",
            "a",
            "a\n",
            "a\nb",
            "a\n\nb\n",
            "\r\n--- x\r\n",
            "é\nü",
        ] {
            let ours: Vec<&str> = lines_inclusive(text).collect();
            let std: Vec<&str> = text.split_inclusive('\n').collect();
            assert_eq!(ours, std, "{text:?}");
        }
    }

    #[test]
    fn each_document_keeps_the_line_it_starts_on() {
        let text = "# header\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n\n# c\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n--- {apiVersion: v1, kind: ConfigMap, metadata: {name: c}}\n---\n---\n";
        let inputs = read_text(text);
        assert!(inputs.errors.is_empty(), "{:?}", inputs.errors);
        assert_eq!(lines(&inputs), vec![2, 8, 11]);
    }

    #[test]
    fn document_end_markers_and_directives_split_documents() {
        let text = "%YAML 1.2\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: a}\n...\n%YAML 1.2\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: b}\n";
        let inputs = read_text(text);
        assert!(inputs.errors.is_empty(), "{:?}", inputs.errors);
        assert_eq!(lines(&inputs), vec![3, 9]);
    }

    #[test]
    fn a_syntax_error_points_at_the_file_line() {
        let text = "apiVersion: v1\nkind: ConfigMap\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [unclosed\n";
        let inputs = read_text(text);
        let error = inputs.errors.first().expect("an error");
        assert_eq!(error.file, "t.yaml");
        let line = error.line.expect("a line");
        assert!((7..=8).contains(&line), "{error}");
        assert!(
            error.to_string().starts_with(&format!("t.yaml:{line}:")),
            "{error}"
        );
        assert!(!error.message.contains("line 4 "), "{error}");
    }

    #[test]
    fn lists_are_expanded_and_typed_lists_name_their_items() {
        let text = "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBindingList\nitems:\n- metadata: {name: a, namespace: x}\n- metadata: {name: b, namespace: x}\n";
        let inputs = read_text(text);
        let kinds: Vec<_> = inputs
            .documents
            .iter()
            .map(|d| match &d.content {
                Content::Object { json, .. } => {
                    let v = tree(json).expect("JSON");
                    (
                        v["kind"].as_str().unwrap_or_default().to_string(),
                        v["apiVersion"].as_str().unwrap_or_default().to_string(),
                        d.item,
                    )
                }
                Content::AgentConfig { .. } => panic!("not an agent config"),
            })
            .collect();
        assert_eq!(
            kinds,
            vec![
                (
                    "RoleBinding".into(),
                    "rbac.authorization.k8s.io/v1".into(),
                    Some(0)
                ),
                (
                    "RoleBinding".into(),
                    "rbac.authorization.k8s.io/v1".into(),
                    Some(1)
                ),
            ]
        );
    }

    #[test]
    fn merge_keys_and_numeric_keys_convert_like_kubectl() {
        let text = "base: &b {app: x}\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: m\n  labels:\n    <<: *b\ndata:\n  1: one\n";
        let inputs = read_text(text);
        assert!(inputs.errors.is_empty(), "{:?}", inputs.errors);
        let Content::Object { json, .. } = &inputs.documents[0].content else {
            panic!("an object")
        };
        let value = tree(json).expect("JSON");
        assert_eq!(value["metadata"]["labels"]["app"], "x");
        assert_eq!(value["data"]["1"], "one");
    }

    #[test]
    fn templates_are_skipped_not_failed() {
        let text = "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: {{ include \"x\" . }}\n  namespace: {{ .Release.Namespace }}\n";
        let inputs = read_text(text);
        assert!(inputs.errors.is_empty(), "{:?}", inputs.errors);
        assert_eq!(inputs.skipped.len(), 1);
        assert!(inputs.skipped[0].reason.contains("template"));
    }

    #[test]
    fn json_streams_keep_lines() {
        let mut inputs = Inputs::default();
        let text = "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"a\"}}\n\n{\"apiVersion\":\"v1\",\n\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"b\"}}\n";
        parse_text("x.json", None, text, Format::Json, &mut inputs);
        assert_eq!(lines(&inputs), vec![1, 3]);
        let mut inputs = Inputs::default();
        parse_text("x.json", None, "{\"a\": }", Format::Json, &mut inputs);
        assert_eq!(inputs.errors[0].line, Some(1));
    }

    #[test]
    fn paths_are_named_as_given_with_forward_slashes() {
        assert_eq!(display_path(Path::new("./a/b.yaml")), "a/b.yaml");
        assert_eq!(display_path(Path::new("a/./b.yaml")), "a/./b.yaml");
    }
}
