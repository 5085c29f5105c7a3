//! What the `kustomization.yaml` files of a manifest set say about the other files: which
//! ones are patches, transformer configurations or generator inputs (never cluster objects,
//! whatever they look like), and which ones a directory's build includes.
//!
//! `kubectl kustomize` reads a file named under `patches:` as a partial object merged into the
//! base it targets: judging it as a whole object (a Kustomization without the
//! `serviceAccountName` its base has) reports what the cluster never sees. `fluxgate check`
//! sets such files aside with a note and judges the base; the rendered build
//! (`kubectl kustomize <dir> | fluxgate check -`) judges the patched object.
//!
//! Paths are joined and normalised lexically (`a/b/../c` is `a/c`), the way kustomize names
//! files relative to the kustomization that mentions them; symbolic links are not followed.
//! Remote resources (URLs) are not files of the set and are left out.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::Value;

/// The file names kustomize looks for in a directory.
pub const FILE_NAMES: &[&str] = &["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// Whether a path names a kustomization file.
pub fn is_kustomization_file(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    FILE_NAMES.contains(&name)
}

/// Why a file is not a cluster object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotAnObject {
    /// The kustomization file that names it.
    pub kustomization: Arc<str>,
    /// The field that names it: `patches[0].path`, `transformers[1]`, ...
    pub field: String,
    pub role: Role,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Patch,
    Transformer,
    GeneratorInput,
}

impl NotAnObject {
    /// The note `fluxgate check` prints for a document of such a file.
    pub fn reason(&self) -> String {
        let base = self
            .kustomization
            .rsplit_once('/')
            .map(|(dir, _)| dir)
            .unwrap_or(".");
        match self.role {
            Role::Patch => format!(
                "a kustomize patch ({} {}), not a cluster object: the base it patches is judged; `kubectl kustomize {base} | fluxgate check -` judges the patched object",
                self.kustomization, self.field
            ),
            Role::Transformer => format!(
                "a kustomize transformer or generator configuration ({} {}), not a cluster object",
                self.kustomization, self.field
            ),
            Role::GeneratorInput => format!(
                "data kustomize reads into a ConfigMap or Secret ({} {}), not a cluster object",
                self.kustomization, self.field
            ),
        }
    }
}

/// A `kustomization.yaml` (or a `Component`), read for the files it names.
#[derive(Debug, Clone, Default)]
pub struct KustomizationFile {
    /// As reports name it.
    pub file: Arc<str>,
    /// Its directory, `/`-separated, `.` for the current one.
    pub dir: String,
    /// `resources:` and `components:` that are local paths (files or directories), joined to
    /// `dir`.
    pub resources: Vec<String>,
    /// Files that are not objects, with why.
    pub not_objects: Vec<(String, Role, String)>,
    /// Inline JSON6902 or strategic-merge patches with their targets, as text.
    pub inline_patches: Vec<InlinePatch>,
    /// `namespace:`, which kustomize sets on every namespaced object of the build.
    pub namespace: Option<String>,
}

/// A patch written in the kustomization file itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlinePatch {
    pub text: String,
    /// `target.kind`, empty when unset.
    pub target_kind: String,
    /// `target.name`, a regular expression (anchored), empty when unset.
    pub target_name: String,
}

impl KustomizationFile {
    /// Reads a kustomization from its document. Fields of the wrong type are ignored:
    /// kustomize itself reports them, and nothing here decides a verdict.
    pub fn read(file: Arc<str>, document: &Value) -> Self {
        let dir = match file.rsplit_once('/') {
            Some((dir, _)) => dir.to_string(),
            None => ".".to_string(),
        };
        let mut out = KustomizationFile {
            file,
            dir,
            ..Default::default()
        };
        out.namespace = document
            .get("namespace")
            .and_then(Value::as_str)
            .filter(|ns| !ns.is_empty())
            .map(str::to_string);
        let strings = |key: &str| -> Vec<(usize, String)> {
            document
                .get(key)
                .and_then(Value::as_array)
                .map(|items| {
                    items
                        .iter()
                        .enumerate()
                        .filter_map(|(i, v)| v.as_str().map(|s| (i, s.to_string())))
                        .collect()
                })
                .unwrap_or_default()
        };
        for key in ["resources", "components", "bases"] {
            for (_, entry) in strings(key) {
                if let Some(path) = out.local(&entry) {
                    out.resources.push(path);
                }
            }
        }
        for key in ["transformers", "generators", "validators"] {
            for (i, entry) in strings(key) {
                // An entry is a file of configurations or a directory with a kustomization;
                // only files are set aside (a directory holds no document of its own).
                if looks_like_file(&entry)
                    && let Some(path) = out.local(&entry)
                {
                    out.not_objects
                        .push((path, Role::Transformer, format!("{key}[{i}]")));
                }
            }
        }
        for (i, entry) in strings("patchesStrategicMerge") {
            // An entry is a file name or the patch itself.
            if looks_like_file(&entry) {
                if let Some(path) = out.local(&entry) {
                    out.not_objects.push((
                        path,
                        Role::Patch,
                        format!("patchesStrategicMerge[{i}]"),
                    ));
                }
            } else {
                out.inline_patches.push(InlinePatch {
                    text: entry,
                    target_kind: String::new(),
                    target_name: String::new(),
                });
            }
        }
        for key in ["patches", "patchesJson6902"] {
            let Some(items) = document.get(key).and_then(Value::as_array) else {
                continue;
            };
            for (i, item) in items.iter().enumerate() {
                if let Some(path) = item.get("path").and_then(Value::as_str)
                    && let Some(path) = out.local(path)
                {
                    out.not_objects
                        .push((path, Role::Patch, format!("{key}[{i}].path")));
                }
                if let Some(text) = item.get("patch").and_then(Value::as_str) {
                    let target = item.get("target");
                    let field = |name: &str| {
                        target
                            .and_then(|t| t.get(name))
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string()
                    };
                    out.inline_patches.push(InlinePatch {
                        text: text.to_string(),
                        target_kind: field("kind"),
                        target_name: field("name"),
                    });
                }
            }
        }
        for key in ["configMapGenerator", "secretGenerator"] {
            let Some(items) = document.get(key).and_then(Value::as_array) else {
                continue;
            };
            for (i, item) in items.iter().enumerate() {
                for list in ["files", "envs"] {
                    let Some(entries) = item.get(list).and_then(Value::as_array) else {
                        continue;
                    };
                    for (j, entry) in entries.iter().enumerate() {
                        let Some(entry) = entry.as_str() else {
                            continue;
                        };
                        // `key=path` names the key the file's content is stored under.
                        let path = entry.split_once('=').map_or(entry, |(_, p)| p);
                        if let Some(path) = out.local(path) {
                            out.not_objects.push((
                                path,
                                Role::GeneratorInput,
                                format!("{key}[{i}].{list}[{j}]"),
                            ));
                        }
                    }
                }
                if let Some(env) = item.get("env").and_then(Value::as_str)
                    && let Some(path) = out.local(env)
                {
                    out.not_objects
                        .push((path, Role::GeneratorInput, format!("{key}[{i}].env")));
                }
            }
        }
        if let Some(charts) = document.get("helmCharts").and_then(Value::as_array) {
            for (i, chart) in charts.iter().enumerate() {
                if let Some(values) = chart.get("valuesFile").and_then(Value::as_str)
                    && let Some(path) = out.local(values)
                {
                    out.not_objects.push((
                        path,
                        Role::GeneratorInput,
                        format!("helmCharts[{i}].valuesFile"),
                    ));
                }
            }
        }
        out
    }

    /// A path of the set for an entry of this kustomization, or `None` for a remote one.
    fn local(&self, entry: &str) -> Option<String> {
        let entry = entry.trim();
        if entry.is_empty() || entry.contains("://") || entry.starts_with("git@") {
            return None;
        }
        // github.com/org/repo//path?ref=v1 and friends.
        if entry.contains("?ref=") || entry.starts_with("github.com/") {
            return None;
        }
        Some(join(&self.dir, entry))
    }
}

/// Whether a kustomization entry names a file rather than holding inline YAML or naming a
/// directory.
fn looks_like_file(entry: &str) -> bool {
    !entry.contains('\n')
        && [".yaml", ".yml", ".json"]
            .iter()
            .any(|ext| entry.trim_end().ends_with(ext))
}

/// `dir` joined with `relative`, normalised lexically; `/`-separated, `.` for nothing.
pub fn join(dir: &str, relative: &str) -> String {
    let relative = relative.replace('\\', "/");
    let mut parts: Vec<&str> = Vec::new();
    let absolute = relative.starts_with('/') || dir.starts_with('/');
    let start: &str = if relative.starts_with('/') { "" } else { dir };
    // Leading `..` of a relative path stay: they name something above the first directory
    // given, which is still a path the reader may have read.
    for part in start.split('/').chain(relative.split('/')) {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !absolute {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (absolute, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// The directory a file name is in, `.` for none.
pub fn dir_of(file: &str) -> &str {
    file.rsplit_once('/').map(|(dir, _)| dir).unwrap_or(".")
}

/// Every kustomization file of a manifest set, by directory, and the files they say are not
/// objects.
#[derive(Debug, Default)]
pub struct Kustomizations {
    by_dir: BTreeMap<String, KustomizationFile>,
    not_objects: HashMap<String, NotAnObject>,
    /// Files some kustomization lists as a resource: a resource is an object even when
    /// another kustomization also uses it as a patch.
    resources: HashMap<String, ()>,
    /// Resource path -> the directories of the kustomizations that list it.
    included_by: HashMap<String, Vec<String>>,
}

impl Kustomizations {
    pub fn add(&mut self, kustomization: KustomizationFile) {
        let dir = normalise(&kustomization.dir);
        if self.by_dir.contains_key(&dir) {
            // kustomize refuses a directory with two kustomization files; the first is kept.
            return;
        }
        for path in &kustomization.resources {
            let path = normalise(path);
            self.included_by
                .entry(path.clone())
                .or_default()
                .push(dir.clone());
            self.resources.insert(path, ());
        }
        for (path, role, field) in &kustomization.not_objects {
            self.not_objects
                .entry(normalise(path))
                .or_insert_with(|| NotAnObject {
                    kustomization: kustomization.file.clone(),
                    field: field.clone(),
                    role: *role,
                });
        }
        self.by_dir.insert(dir, kustomization);
    }

    /// The kustomizations whose `resources` (or `components`) list a path.
    pub fn includers(&self, path: &str) -> impl Iterator<Item = &KustomizationFile> {
        self.included_by
            .get(&normalise(path))
            .into_iter()
            .flatten()
            .filter_map(|dir| self.by_dir.get(dir))
    }

    pub fn is_empty(&self) -> bool {
        self.by_dir.is_empty()
    }

    /// Why a file of the set is not a cluster object, if a kustomization says so.
    pub fn not_an_object(&self, file: &str) -> Option<&NotAnObject> {
        let file = normalise(file);
        if self.resources.contains_key(&file) {
            return None;
        }
        self.not_objects.get(&file)
    }

    /// The kustomization of a directory.
    pub fn in_dir(&self, dir: &str) -> Option<&KustomizationFile> {
        self.by_dir.get(&normalise(dir))
    }

    pub fn iter(&self) -> impl Iterator<Item = &KustomizationFile> {
        self.by_dir.values()
    }
}

/// A path as [`Kustomizations`] keys it.
fn normalise(path: &str) -> String {
    join(".", path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(file: &str, yaml: &str) -> KustomizationFile {
        let value: Value = serde_yaml_ng::from_str(yaml).expect("YAML");
        KustomizationFile::read(Arc::from(file), &value)
    }

    #[test]
    fn paths_join_lexically() {
        assert_eq!(join("a/b", "c.yaml"), "a/b/c.yaml");
        assert_eq!(join("a/b", "../c.yaml"), "a/c.yaml");
        assert_eq!(join("a/b", "./../../c"), "c");
        assert_eq!(join("a", "../../c"), "../c");
        assert_eq!(join(".", "x"), "x");
        assert_eq!(
            join("repo/tenants/production", "../base/dev-team"),
            "repo/tenants/base/dev-team"
        );
        assert_eq!(join("/abs/dir", "../x.yaml"), "/abs/x.yaml");
        assert_eq!(join("a/b", ""), "a/b");
    }

    #[test]
    fn patch_files_of_every_spelling_are_not_objects() {
        let k = read(
            "repo/overlay/kustomization.yaml",
            r#"
resources: [../base, https://example.com/x.yaml, github.com/org/repo//dir?ref=v1]
patches:
- path: sa-patch.yaml
  target: {kind: Kustomization}
- patch: |
    - op: add
      path: /spec/x
      value: 1
  target: {kind: Deployment, name: "(a|b)"}
patchesStrategicMerge:
- legacy.yaml
- |
  apiVersion: v1
  kind: ConfigMap
patchesJson6902:
- target: {kind: Deployment, name: x}
  path: ops.yaml
transformers: [labels.yaml, ../transformers]
configMapGenerator:
- name: values
  files: [values.yaml=values/prod.yaml, raw.json]
"#,
        );
        assert_eq!(k.resources, vec!["repo/base".to_string()]);
        let mut set = Kustomizations::default();
        set.add(k.clone());
        for file in [
            "repo/overlay/sa-patch.yaml",
            "repo/overlay/legacy.yaml",
            "repo/overlay/ops.yaml",
        ] {
            let why = set.not_an_object(file).expect(file);
            assert_eq!(why.role, Role::Patch, "{file}");
            assert!(
                why.reason().contains("kubectl kustomize repo/overlay"),
                "{}",
                why.reason()
            );
        }
        assert_eq!(
            set.not_an_object("repo/overlay/labels.yaml")
                .map(|w| w.role),
            Some(Role::Transformer)
        );
        assert_eq!(
            set.not_an_object("./repo/overlay/values/prod.yaml")
                .map(|w| w.role),
            Some(Role::GeneratorInput)
        );
        assert!(set.not_an_object("repo/overlay/raw.json").is_some());
        assert!(set.not_an_object("repo/base/x.yaml").is_none());
        // The inline strategic-merge patch and the inline JSON6902 one.
        assert_eq!(k.inline_patches.len(), 2);
        assert!(
            k.inline_patches
                .iter()
                .any(|p| p.target_name == "(a|b)" && p.target_kind == "Deployment")
        );
    }

    #[test]
    fn a_file_listed_as_a_resource_stays_an_object() {
        let mut set = Kustomizations::default();
        set.add(read(
            "r/a/kustomization.yaml",
            "patches: [{path: ../platform/x.yaml}]\n",
        ));
        set.add(read(
            "r/b/kustomization.yaml",
            "resources: [../platform/x.yaml]\n",
        ));
        assert!(set.not_an_object("r/platform/x.yaml").is_none());
    }
}
