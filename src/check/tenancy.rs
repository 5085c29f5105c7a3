//! Who applies an object, and as whom, as far as the manifest set tells: `fluxgate check`
//! uses it to explain `tenant-lockdown` findings, never to change them.
//!
//! - **Appliers.** A Flux Kustomization applies the build of `spec.path` in its source: the
//!   directory's `kustomization.yaml` and what it includes, or, without one, every manifest
//!   under the directory (Flux generates the kustomization). A path is found in the set by
//!   its trailing directories (`./infrastructure/controllers` is
//!   `<repository>/infrastructure/controllers`). A cluster directory laid out by
//!   `flux bootstrap` (`<dir>/flux-system/gotk-components.yaml`) is applied by the
//!   Kustomization `flux-system/flux-system`, whether or not its `gotk-sync.yaml` is in the
//!   set. When a tenant object's file is applied by a Kustomization in a platform namespace,
//!   its namespace looks like the platform team's: the note suggests `platformNamespaces`.
//! - **Runs as.** An object without `spec.serviceAccountName` runs as the controller's own
//!   ServiceAccount (cluster-admin) unless the controller runs with Flux's multi-tenancy
//!   lockdown (`--default-service-account=<name>`). The set tells which when it holds the
//!   controller's Deployment, a kustomize patch that adds the flag (Flux's multi-tenancy
//!   guide patches `flux-system/kustomization.yaml`), or a FluxInstance with
//!   `spec.cluster.multitenant`.

use std::cell::{OnceCell, RefCell};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use super::kustomize::{Kustomizations, dir_of, join};
use crate::policy::tenant_lockdown::{Controller, default_service_account};
use crate::report::{Note, NoteType};

/// A Flux Kustomization of the manifest set (or the one `flux bootstrap`'s layout implies).
#[derive(Debug)]
pub struct Applier {
    pub namespace: Option<String>,
    pub name: String,
    /// `spec.path` as written.
    pub path: String,
    pub target_namespace: Option<String>,
    /// Implied by a `flux bootstrap` layout rather than read from a manifest.
    pub by_layout: bool,
    /// `spec.patches`, applied to every object of the build its targets select.
    pub patches: Vec<Value>,
    /// Its source is the cluster's own sync source (`flux-system/flux-system`, which
    /// `flux bootstrap` and a FluxInstance create): its paths name directories of the
    /// repository that holds it, most likely the one being checked.
    own_source: bool,
    /// The directories of the set that `path` may name.
    dirs: Vec<String>,
    /// The files the build of those directories includes, computed on first use.
    files: OnceCell<HashSet<String>>,
}

impl Applier {
    pub fn describe(&self) -> String {
        crate::finding::object_ref("Kustomization", self.namespace.as_deref(), &self.name)
    }

    /// Whether applying a file's objects changes them: a targetNamespace or patches.
    pub fn transforms(&self) -> bool {
        self.target_namespace.is_some() || !self.patches.is_empty()
    }
}

/// What the set says about a controller's `--default-service-account`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lockdown {
    pub controller: Controller,
    /// `None`: the controller runs without the flag.
    pub service_account: Option<String>,
    /// Where the set says so.
    pub source: String,
}

/// The object a note is for.
pub struct Subject<'a> {
    pub file: &'a str,
    pub kind: &'a str,
    pub namespace: Option<&'a str>,
    /// `spec.serviceAccountName` is set.
    pub has_service_account: bool,
    /// tenant-lockdown judged it as a tenant's (its namespace is not a platform one).
    pub judged_as_tenant: bool,
    /// tenant-lockdown reported something.
    pub has_findings: bool,
}

pub struct Tenancy<'k> {
    appliers: Vec<Applier>,
    kustomizations: &'k Kustomizations,
    /// Every file of the set that holds a document, normalised.
    files: BTreeSet<String>,
    lockdown: Vec<Lockdown>,
    /// [`Tenancy::kustomize_namespace`] by file: every object of a file asks.
    namespaces: RefCell<HashMap<String, Option<(String, String)>>>,
}

/// `--default-service-account=<name>` (or a space) in a patch's text.
static FLAG_IN_PATCH: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r#"--default-service-account(?:=|\s+)([A-Za-z0-9][-A-Za-z0-9.]*)"#).ok()
});

impl<'k> Tenancy<'k> {
    pub fn new(kustomizations: &'k Kustomizations) -> Self {
        Tenancy {
            appliers: Vec::new(),
            kustomizations,
            files: BTreeSet::new(),
            lockdown: Vec::new(),
            namespaces: RefCell::new(HashMap::new()),
        }
    }

    /// A file of the set (one that holds documents, or an empty one `flux bootstrap` wrote).
    pub fn add_file(&mut self, file: &str) {
        let file = join(".", file);
        // `flux bootstrap` writes gotk-components.yaml and gotk-sync.yaml there (some
        // repositories keep them empty); a rendered tree has their build under another name.
        self.bootstrap_layout(&file);
        self.files.insert(file);
    }

    /// `<root>/flux-system/` holds what `flux bootstrap --path=<root>` writes (and where a
    /// FluxInstance's repository keeps the instance): the Kustomization `flux-system/flux-system`
    /// applies `<root>`.
    fn bootstrap_layout(&mut self, file: &str) {
        let dir = dir_of(file);
        if !(dir == "flux-system" || dir.ends_with("/flux-system")) {
            return;
        }
        let root = dir_of(dir).to_string();
        if self
            .appliers
            .iter()
            .any(|a| a.by_layout && a.dirs == [root.clone()])
        {
            return;
        }
        self.appliers.push(Applier {
            namespace: Some("flux-system".into()),
            name: "flux-system".into(),
            path: format!("./{root}"),
            target_namespace: None,
            by_layout: true,
            patches: Vec::new(),
            own_source: true,
            dirs: vec![root],
            files: OnceCell::new(),
        });
    }

    /// Learns what an object of the set says: a Flux Kustomization applies a path, a Flux
    /// controller's Deployment or a FluxInstance tells the lockdown.
    pub fn learn(&mut self, kind: &str, group: &str, object: &Value, file: &str, line: usize) {
        // `Kind namespace/name` of the object, for messages.
        let named = |kind: &str, object: &Value| {
            crate::finding::object_ref(
                kind,
                object
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str),
                object
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or(""),
            )
        };
        let whence = format!("{file}:{line}");
        let text = |pointer: &str| {
            object
                .pointer(pointer)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        match (group, kind) {
            (crate::flux::KUSTOMIZE_GROUP, "Kustomization") => {
                let path = text("/spec/path").unwrap_or_default();
                let namespace = text("/metadata/namespace");
                let source_namespace = text("/spec/sourceRef/namespace").or(namespace.clone());
                let own_source = text("/spec/sourceRef/name").as_deref() == Some("flux-system")
                    && source_namespace.as_deref() == Some("flux-system");
                self.appliers.push(Applier {
                    namespace,
                    name: text("/metadata/name").unwrap_or_default(),
                    dirs: Vec::new(),
                    path,
                    target_namespace: text("/spec/targetNamespace"),
                    by_layout: false,
                    patches: object
                        .pointer("/spec/patches")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                    own_source,
                    files: OnceCell::new(),
                });
            }
            ("apps", "Deployment") => {
                let containers = object
                    .pointer("/spec/template/spec/containers")
                    .and_then(Value::as_array);
                for container in containers.into_iter().flatten() {
                    let image = container.get("image").and_then(Value::as_str).unwrap_or("");
                    let Some(controller) = Controller::of_image(image) else {
                        continue;
                    };
                    let args: Vec<&str> = ["command", "args"]
                        .iter()
                        .filter_map(|k| container.get(*k).and_then(Value::as_array))
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    let name = named("Deployment", object);
                    self.lockdown.push(Lockdown {
                        controller,
                        service_account: default_service_account(&args),
                        source: format!("{name}, {whence}"),
                    });
                    // A rendered flux-system directory (`kubectl kustomize` of what
                    // `flux bootstrap` wrote) holds the controllers under another file name.
                    self.bootstrap_layout(&join(".", file));
                }
            }
            (crate::flux::operator::GROUP, crate::flux::operator::FLUX_INSTANCE) => {
                if let Some(sa) = crate::flux::operator::tenant_default_service_account(object) {
                    let name = named("FluxInstance", object);
                    for controller in [Controller::Kustomize, Controller::Helm] {
                        self.lockdown.push(Lockdown {
                            controller,
                            service_account: Some(sa.clone()),
                            source: format!("{name} sets spec.cluster.multitenant, {whence}"),
                        });
                    }
                }
            }
            _ => {}
        }
    }

    /// Reads the lockdown flags the kustomization files' inline patches add to the
    /// controllers, and finds the directories every applier's path names. Call once, after
    /// every file and object is known.
    pub fn finish(&mut self) {
        for kustomization in self.kustomizations.iter() {
            for patch in &kustomization.inline_patches {
                let Some(sa) = FLAG_IN_PATCH
                    .as_ref()
                    .and_then(|re| re.captures(&patch.text))
                    .and_then(|c| c.get(1))
                else {
                    continue;
                };
                if !(patch.target_kind.is_empty() || patch.target_kind == "Deployment") {
                    continue;
                }
                for controller in [Controller::Kustomize, Controller::Helm] {
                    let selected = patch.target_name.is_empty()
                        || Regex::new(&format!("^(?:{})$", patch.target_name))
                            .is_ok_and(|re| re.is_match(controller.name()));
                    if selected {
                        self.lockdown.push(Lockdown {
                            controller,
                            service_account: Some(sa.as_str().to_string()),
                            source: format!("a patch in {}", kustomization.file),
                        });
                    }
                }
            }
        }
        let mut dirs: BTreeSet<String> = BTreeSet::new();
        for file in &self.files {
            let mut dir = dir_of(file);
            while dir != "." && !dir.is_empty() && dirs.insert(dir.to_string()) {
                dir = dir_of(dir);
            }
        }
        for k in self.kustomizations.iter() {
            dirs.insert(join(".", &k.dir));
        }
        for applier in &mut self.appliers {
            if applier.by_layout {
                continue;
            }
            let wanted = join(".", &applier.path);
            if wanted == "." || wanted.starts_with("..") {
                continue;
            }
            let suffix = format!("/{wanted}");
            applier.dirs = dirs
                .iter()
                .filter(|d| **d == wanted || d.ends_with(&suffix))
                .cloned()
                .collect();
        }
    }

    /// The appliers whose build includes a file, those read from manifests first.
    pub fn appliers_of(&self, file: &str) -> Vec<&Applier> {
        let file = join(".", file);
        let mut found: Vec<&Applier> = self
            .appliers
            .iter()
            .filter(|a| {
                a.files
                    .get_or_init(|| self.build_of(&a.dirs))
                    .contains(&file)
            })
            .collect();
        found.sort_by_key(|a| a.by_layout);
        found
    }

    /// The Kustomizations that apply a file's objects changed (a targetNamespace, patches),
    /// when the file is theirs beyond doubt: they sync from the cluster's own source.
    pub fn transforming_appliers_of(&self, file: &str) -> Vec<&Applier> {
        self.appliers_of(file)
            .into_iter()
            .filter(|a| !a.by_layout && a.own_source && a.transforms())
            .collect()
    }

    /// Whether the set holds anything that can apply or place an object: without it, the
    /// rest of this module has nothing to say.
    pub fn is_empty(&self) -> bool {
        self.appliers.is_empty() && self.lockdown.is_empty() && self.kustomizations.is_empty()
    }

    fn build_of(&self, dirs: &[String]) -> HashSet<String> {
        let mut out = HashSet::new();
        let mut visited = HashSet::new();
        for dir in dirs {
            self.build_dir(dir, &mut visited, &mut out, 0);
        }
        out
    }

    /// The files a kustomize build of `dir` includes (Flux's generated kustomization when it
    /// has none).
    fn build_dir(
        &self,
        dir: &str,
        visited: &mut HashSet<String>,
        out: &mut HashSet<String>,
        depth: usize,
    ) {
        if depth > 32 || !visited.insert(dir.to_string()) {
            return;
        }
        if let Some(kustomization) = self.kustomizations.in_dir(dir) {
            for resource in &kustomization.resources {
                let resource = join(".", resource);
                if self.files.contains(&resource) {
                    out.insert(resource);
                } else {
                    self.build_dir(&resource, visited, out, depth + 1);
                }
            }
            return;
        }
        let prefix = format!("{dir}/");
        let under: Vec<&String> = self
            .files
            .range(prefix.clone()..)
            .take_while(|f| f.starts_with(&prefix))
            .collect();
        for file in under {
            // The shallowest directory between `dir` and the file with a kustomization of its
            // own is built as such, as Flux's generated kustomization includes it.
            let rest = &file[prefix.len()..];
            let mut sub = dir.to_string();
            let mut nested = None;
            let parts: Vec<&str> = rest.split('/').collect();
            for part in &parts[..parts.len().saturating_sub(1)] {
                sub = format!("{sub}/{part}");
                if self.kustomizations.in_dir(&sub).is_some() {
                    nested = Some(sub.clone());
                    break;
                }
            }
            match nested {
                Some(nested) => self.build_dir(&nested, visited, out, depth + 1),
                None => {
                    out.insert(file.clone());
                }
            }
        }
    }

    /// The namespace a kustomize build sets on a file's objects, when every build that
    /// includes the file sets the same one: along each chain of kustomizations from the file
    /// out to a root, the outermost `namespace:` wins (kustomize's namespace transformer runs
    /// after the inner builds). Returns it with the kustomization file that sets it.
    pub fn kustomize_namespace(&self, file: &str) -> Option<(String, String)> {
        let file = join(".", file);
        if let Some(known) = self.namespaces.borrow().get(&file) {
            return known.clone();
        }
        let mut outcomes: Vec<Option<(String, String)>> = Vec::new();
        self.chains(&file, None, 0, &mut outcomes);
        let found = outcomes.first().cloned().flatten().filter(|first| {
            outcomes
                .iter()
                .all(|o| o.as_ref().is_some_and(|(ns, _)| *ns == first.0))
        });
        self.namespaces.borrow_mut().insert(file, found.clone());
        found
    }

    /// Follows the kustomizations that include `path` outwards, recording for each chain the
    /// namespace its outermost setter gives.
    fn chains(
        &self,
        path: &str,
        set: Option<(String, String)>,
        depth: usize,
        outcomes: &mut Vec<Option<(String, String)>>,
    ) {
        if outcomes.len() >= 64 {
            return;
        }
        let includers: Vec<_> = self.kustomizations.includers(path).collect();
        if includers.is_empty() || depth >= 16 {
            if depth > 0 {
                outcomes.push(set);
            }
            return;
        }
        for k in includers {
            let set = match &k.namespace {
                Some(ns) => Some((ns.clone(), k.file.to_string())),
                None => set.clone(),
            };
            self.chains(&join(".", &k.dir), set, depth + 1, outcomes);
        }
    }

    fn lockdown_of(&self, controller: Controller) -> Option<&Lockdown> {
        let facts = self.lockdown.iter().filter(|l| l.controller == controller);
        let mut without = None;
        for fact in facts {
            if fact.service_account.is_some() {
                return Some(fact);
            }
            without.get_or_insert(fact);
        }
        without
    }

    /// The notes for a Kustomization or HelmRelease tenant-lockdown judged.
    pub fn notes(&self, subject: &Subject<'_>, platform: &[String]) -> Vec<Note> {
        let mut notes = Vec::new();
        let controller = match subject.kind {
            "Kustomization" => Controller::Kustomize,
            "HelmRelease" => Controller::Helm,
            _ => return notes,
        };
        let appliers = if subject.has_findings || !subject.has_service_account {
            self.appliers_of(subject.file)
        } else {
            Vec::new()
        };
        // Where the object lands: its own namespace, else the applier's targetNamespace,
        // else the namespace its kustomization sets.
        let landing = subject
            .namespace
            .map(|ns| (ns.to_string(), String::new()))
            .or_else(|| {
                appliers.iter().find_map(|a| {
                    a.target_namespace.as_ref().map(|ns| {
                        (
                            ns.clone(),
                            format!(" (the targetNamespace of {})", a.describe()),
                        )
                    })
                })
            })
            .or_else(|| {
                self.kustomize_namespace(subject.file)
                    .map(|(ns, file)| (ns, format!(" (the namespace {file} sets)")))
            });
        if subject.judged_as_tenant && !subject.has_service_account {
            let account_ns = landing
                .as_ref()
                .map_or("<namespace>", |(ns, _)| ns.as_str())
                .to_string();
            match self.lockdown_of(controller) {
                Some(Lockdown {
                    service_account: Some(sa),
                    source,
                    ..
                }) => notes.push(Note::new(
                    NoteType::RunsAs,
                    format!(
                        "In this manifest set {controller} runs with Flux's multi-tenancy lockdown (--default-service-account={sa}: {source}), so it would apply this {kind} as ServiceAccount {account_ns}/{sa}, not with its own cluster-admin rights. Setting `spec.serviceAccountName: {sa}` says so in the object, and keeps it so if the flag is ever lost.",
                        kind = subject.kind,
                    ),
                )),
                Some(Lockdown { source, .. }) => notes.push(Note::new(
                    NoteType::RunsAs,
                    format!(
                        "In this manifest set {controller} runs without --default-service-account ({source}), so it would apply this {kind} with its own cluster-admin rights.",
                        kind = subject.kind,
                    ),
                )),
                None => {}
            }
        }
        if subject.has_findings
            && subject.judged_as_tenant
            && let Some(applier) = appliers.iter().find(|a| {
                a.namespace
                    .as_deref()
                    .is_some_and(|ns| platform.iter().any(|p| p == ns))
            })
        {
            let from = applier.namespace.as_deref().unwrap_or_default();
            let how = if applier.by_layout {
                format!(
                    "{} (the Kustomization `flux bootstrap` makes for {})",
                    applier.describe(),
                    applier.path
                )
            } else {
                format!("{} (spec.path {})", applier.describe(), applier.path)
            };
            let message = match &landing {
                Some((ns, why)) => {
                    let mut list: Vec<&str> = platform.iter().map(String::as_str).collect();
                    list.push(ns);
                    format!(
                        "Namespace {ns}{why} looks like platform infrastructure: {} is applied by {how}, from platform namespace {from}. If the platform team owns {ns}, add it to tenant-lockdown's platformNamespaces in fluxgate's configuration (`platformNamespaces: [{}]`); if a tenant owns it, give the object a ServiceAccount of its own.",
                        subject.file,
                        list.join(", "),
                    )
                }
                None => format!(
                    "{} is applied by {how}, from platform namespace {from}, but neither it nor what applies it names a namespace: set metadata.namespace (or the Kustomization's targetNamespace); if that namespace is the platform team's, add it to tenant-lockdown's platformNamespaces in fluxgate's configuration.",
                    subject.file,
                ),
            };
            notes.push(Note::new(NoteType::PlatformNamespace, message));
        }
        notes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use crate::check::kustomize::KustomizationFile;

    fn kustomization(file: &str, yaml: &str) -> KustomizationFile {
        let value: Value = serde_yaml_ng::from_str(yaml).expect("YAML");
        KustomizationFile::read(Arc::from(file), &value)
    }

    fn subject<'a>(file: &'a str, kind: &'a str, namespace: Option<&'a str>) -> Subject<'a> {
        Subject {
            file,
            kind,
            namespace,
            has_service_account: false,
            judged_as_tenant: true,
            has_findings: true,
        }
    }

    fn flux_kustomization(ns: &str, name: &str, path: &str) -> Value {
        serde_json::json!({
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"path": path, "sourceRef": {"kind": "GitRepository", "name": "flux-system"}}
        })
    }

    #[test]
    fn an_infrastructure_release_applied_from_flux_system_is_suggested_as_platform() {
        let mut set = Kustomizations::default();
        set.add(kustomization(
            "repo/infrastructure/controllers/kustomization.yaml",
            "resources: [cert-manager.yaml]\n",
        ));
        let mut tenancy = Tenancy::new(&set);
        for file in [
            "repo/infrastructure/controllers/cert-manager.yaml",
            "repo/clusters/prod/infrastructure.yaml",
        ] {
            tenancy.add_file(file);
        }
        tenancy.learn(
            "Kustomization",
            "kustomize.toolkit.fluxcd.io",
            &flux_kustomization(
                "flux-system",
                "infra-controllers",
                "./infrastructure/controllers",
            ),
            "repo/clusters/prod/infrastructure.yaml",
            1,
        );
        tenancy.finish();
        let platform = vec!["flux-system".to_string()];
        let notes = tenancy.notes(
            &subject(
                "repo/infrastructure/controllers/cert-manager.yaml",
                "HelmRelease",
                Some("cert-manager"),
            ),
            &platform,
        );
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert_eq!(notes[0].note_type, NoteType::PlatformNamespace);
        assert!(
            notes[0]
                .message
                .contains("platformNamespaces: [flux-system, cert-manager]")
        );
        assert!(
            notes[0]
                .message
                .contains("Kustomization flux-system/infra-controllers")
        );
        // A file no platform Kustomization applies gets no suggestion.
        let other = tenancy.notes(
            &subject("repo/apps/x.yaml", "HelmRelease", Some("apps")),
            &platform,
        );
        assert!(other.is_empty(), "{other:?}");
    }

    #[test]
    fn a_bootstrap_layout_applies_its_cluster_directory() {
        let set = Kustomizations::default();
        let mut tenancy = Tenancy::new(&set);
        tenancy.add_file("hub/flux-system/gotk-components.yaml");
        tenancy.add_file("hub/production.yaml");
        tenancy.finish();
        let appliers = tenancy.appliers_of("hub/production.yaml");
        assert_eq!(appliers.len(), 1);
        assert!(appliers[0].by_layout);
        let notes = tenancy.notes(
            &subject("hub/production.yaml", "Kustomization", Some("production")),
            &["flux-system".to_string()],
        );
        assert!(notes[0].message.contains("`flux bootstrap`"), "{notes:?}");
    }

    #[test]
    fn the_lockdown_a_patch_adds_says_what_the_object_runs_as() {
        let mut set = Kustomizations::default();
        set.add(kustomization(
            "repo/clusters/prod/flux-system/kustomization.yaml",
            "resources: [gotk-components.yaml]\npatches:\n- patch: |\n    - op: add\n      path: /spec/template/spec/containers/0/args/-\n      value: --default-service-account=default\n  target:\n    kind: Deployment\n    name: \"(kustomize-controller|helm-controller)\"\n",
        ));
        set.add(kustomization(
            "repo/tenants/base/kustomization.yaml",
            "namespace: apps\nresources: [release.yaml]\n",
        ));
        let mut tenancy = Tenancy::new(&set);
        tenancy.add_file("repo/tenants/base/release.yaml");
        tenancy.finish();
        let notes = tenancy.notes(
            &subject("repo/tenants/base/release.yaml", "HelmRelease", None),
            &["flux-system".to_string()],
        );
        assert_eq!(notes[0].note_type, NoteType::RunsAs);
        assert!(
            notes[0].message.contains("as ServiceAccount apps/default"),
            "{}",
            notes[0].message
        );
    }

    #[test]
    fn a_controller_without_the_flag_applies_as_cluster_admin() {
        let set = Kustomizations::default();
        let mut tenancy = Tenancy::new(&set);
        tenancy.learn(
            "Deployment",
            "apps",
            &serde_json::json!({"metadata": {"name": "helm-controller", "namespace": "flux-system"},
                "spec": {"template": {"spec": {"containers": [{"name": "manager",
                "image": "ghcr.io/fluxcd/helm-controller:v1.2.0", "args": ["--watch-all-namespaces"]}]}}}}),
            "gotk.yaml",
            10,
        );
        tenancy.finish();
        let notes = tenancy.notes(&subject("x.yaml", "HelmRelease", Some("team")), &[]);
        assert!(notes[0].message.contains("cluster-admin"), "{notes:?}");
    }
}
