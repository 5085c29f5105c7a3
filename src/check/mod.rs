//! `fluxgate check`: the policies the webhook enforces, run over manifests in a CI pipeline
//! before anything reaches a cluster (like `kyverno apply`, `gator test`, `kwctl run`).
//!
//! Every object is judged as a CREATE by the same [`Engine`] the webhook uses, in the mode the
//! configuration gives each policy. Cluster-state rules (one agent per cluster, RBAC bindings
//! resolved against their roles) see the whole manifest set plus the `--cluster-state` files:
//! all of them are put in a [`MemoryView`] before the first object is judged. The requests are
//! dry runs (`dryRun: true`), so no policy may remember anything from them: what the view holds
//! is all the state there is.

use std::borrow::Cow;
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;

use serde_json::value::RawValue;

use crate::admission::ObjectHead;
use crate::cluster::{ClusterView, MemoryView};
use crate::config::Config;
use crate::engine::verdict;
use crate::engine::{AnyPolicy, Endpoint, Engine, registry};
use crate::finding::{self, Mode, PolicyId, Severity};
use crate::flux::operator;
use crate::gitlab::agent_config;
use crate::policy::signed_oci_sources::ANNOTATION_VERIFY_DEFAULT;
use crate::report::codequality::Fingerprints;
use crate::report::{
    self, Action, Format, GeneratedBy, InputErrorEntry, Note, NoteType, Report, ReportFinding,
    SCHEMA_VERSION, Scope, Skipped, Subject, SubjectType, Summary,
};

#[doc(hidden)]
pub mod fast_yaml;
pub mod kustomize;
pub mod reader;
pub mod scope;
pub mod tenancy;

use kustomize::Kustomizations;
use reader::{Content, Document, Inputs, Reader};
use scope::Scopes;
use tenancy::Tenancy;

/// `fluxgate check [--config FILE] [-o FORMAT] [--cluster-state FILE]... PATH...`
#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// Policy configuration (modes, parameters, exemptions). Without it, the built-in default
    /// enforces every policy.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Output format: text for people, json (docs/check-json-schema.md), junit
    /// (artifacts:reports:junit) or codequality (artifacts:reports:codequality).
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Text)]
    pub output: Format,

    /// Objects already in the cluster, for cluster-state rules (for example the output of
    /// `kubectl get deploy,clusterroles,rolebindings -A -o yaml`). Judged against, not checked.
    /// Repeat the flag for several files; directories are read like PATHs.
    #[arg(long = "cluster-state", value_name = "FILE")]
    pub cluster_state: Vec<PathBuf>,

    /// Colour in text output: auto uses it when standard output is a terminal and NO_COLOR
    /// is not set.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,

    /// Manifests: files, directories (recursively: *.yaml, *.yml, *.json) or - for standard
    /// input (`kustomize build . | fluxgate check -`).
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    /// Whether text output is coloured. `auto` asks about the process's own standard output,
    /// which is what the binary passes to [`run`].
    pub fn enabled(self) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::io::stdout().is_terminal()
                    && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            }
        }
    }
}

/// Runs `fluxgate check` with every policy fluxgate has. Returns the exit code: 0 when nothing
/// in enforce mode failed, 1 on an enforce violation, 2 on an unreadable input or bad usage.
pub fn run(args: &CheckArgs, stdin: impl Read, stdout: impl Write, stderr: impl Write) -> i32 {
    run_with_policies(args, registry(), stdin, stdout, stderr)
}

/// [`run`] with a given set of policies.
pub fn run_with_policies(
    args: &CheckArgs,
    policies: Vec<Box<dyn AnyPolicy>>,
    mut stdin: impl Read,
    stdout: impl Write,
    mut stderr: impl Write,
) -> i32 {
    // A failed write to stderr leaves nothing better to report it on.
    let mut say = |line: String| {
        let _ = writeln!(stderr, "fluxgate check: {line}");
    };
    if args.paths.is_empty() {
        say("no PATH given; use - to read manifests from standard input".into());
        return 2;
    }
    let config = match &args.config {
        Some(path) => match Config::from_file(path) {
            Ok(config) => config,
            Err(e) => {
                say(format!("error: {e}"));
                return 2;
            }
        },
        None => Config::default(),
    };
    let engine = Engine::with_policies(policies, config, None);
    let report = check(&engine, &args.paths, &args.cluster_state, &mut stdin);
    // The report is written in small pieces, and standard output flushes at every newline:
    // a system call per line without this buffer.
    let mut stdout = std::io::BufWriter::with_capacity(64 * 1024, stdout);
    for skip in &report.skipped {
        let at = skip.line.map(|l| format!(":{l}")).unwrap_or_default();
        say(format!("note: {}{at}: skipped: {}", skip.file, skip.reason));
    }
    for error in &report.errors {
        say(format!("error: {}", error.display()));
    }
    let color = args.output == Format::Text && args.color.enabled();
    if let Err(e) =
        report::write(&report, args.output, color, &mut stdout).and_then(|()| stdout.flush())
    {
        say(format!("error: cannot write the report: {e}"));
        return 2;
    }
    report.summary.exit_code
}

/// Reads the manifests and the cluster state, judges every object and agent configuration,
/// and returns the report.
///
/// The objects are judged as the API server would receive them: the files kustomization
/// files name as patches, transformer configurations or generator inputs are set aside (see
/// [`kustomize`]); a cluster-scoped object loses the namespace its manifest gives it; the
/// objects a Flux Operator ResourceSet or FluxInstance makes the operator create are judged
/// too (see [`crate::flux::operator`]); and each object gets the changes fluxgate's own
/// mutating webhook would make before it is judged (a `verifyDefaults` block), with a note
/// that says so.
pub fn check(
    engine: &Engine,
    paths: &[PathBuf],
    cluster_state: &[PathBuf],
    stdin: &mut dyn Read,
) -> Report {
    let mut reader = Reader::new(stdin);
    let mut inputs = Inputs::default();
    reader.read_paths(paths, &mut inputs);
    let mut state = Inputs::default();
    reader.read_paths(cluster_state, &mut state);
    let config = engine.config();

    let mut skipped: Vec<Skipped> = Vec::new();
    let mut kustomizations = Kustomizations::default();
    for kustomization in inputs
        .kustomizations
        .drain(..)
        .chain(state.kustomizations.drain(..))
    {
        kustomizations.add(kustomization);
    }
    if !kustomizations.is_empty() {
        set_aside(&kustomizations, &mut inputs, &mut skipped);
        set_aside(&kustomizations, &mut state, &mut skipped);
    }
    let mut scopes = Scopes::default();
    for doc in inputs.documents.iter().chain(&state.documents) {
        if let Content::Object { json, head } = &doc.content
            && Scopes::is_crd(group_of(head.api_version()), head.kind())
        {
            scopes.learn(json);
        }
    }

    let view = MemoryView::new();
    view.set_offline(true);
    view.reconfigure(config.policies.single_agent.detector());
    let mut cluster_state_objects = 0;
    // The live state first: the manifest set replaces what it redefines, as applying it would.
    for doc in &state.documents {
        match &doc.content {
            Content::Object { json, head } => match view.apply_object(head, json) {
                Ok(()) => cluster_state_objects += 1,
                Err(e) => skipped.push(Skipped {
                    file: doc.file.to_string(),
                    line: Some(doc.line),
                    reason: format!("cluster state object not used: {e}"),
                }),
            },
            Content::AgentConfig { .. } => skipped.push(Skipped {
                file: doc.file.to_string(),
                line: Some(doc.line),
                reason: "a GitLab agent configuration is not cluster state".into(),
            }),
        }
    }

    let mut items = items(&inputs, &scopes, &mut skipped);
    let tenancy = build_tenancy(&kustomizations, &inputs, &mut items);
    if let Some(tenancy) = &tenancy {
        items = apply_appliers(items, tenancy, &scopes);
    }
    for item in &items {
        if let Item::Object(unit) = item {
            // A malformed object still gets judged below, where the policies say what is wrong.
            let _ = view.apply_object(&unit.head, &unit.json);
        }
    }
    for item in &mut items {
        if let Item::Object(unit) = item
            && mutate(engine, &view, unit)
        {
            let _ = view.apply_object(&unit.head, &unit.json);
        }
    }

    let mut prints = Fingerprints::default();
    let mut results = Vec::with_capacity(items.len());
    // Objects the API server would refuse: input errors, not findings.
    let mut malformed = Vec::new();
    // The item each subject was judged from.
    let mut judged = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let subject = match item {
            Item::Object(unit) => {
                judge_object(engine, &view, unit, index, &mut prints, &mut malformed)
            }
            Item::AgentConfig(doc) => {
                let Content::AgentConfig {
                    config,
                    agent,
                    text,
                    text_line,
                } = &doc.content
                else {
                    continue;
                };
                judge_agent_config(
                    engine,
                    &view,
                    doc,
                    config,
                    agent.as_deref(),
                    text,
                    *text_line,
                    &mut prints,
                )
            }
        };
        match subject {
            Ok(subject) => {
                results.push(subject);
                judged.push(item);
            }
            Err(reason) => skipped.push(Skipped {
                file: item.doc().file.to_string(),
                line: Some(item.doc().line),
                reason,
            }),
        }
    }
    if let Some(tenancy) = &tenancy {
        tenancy_notes(&config, tenancy, &judged, &mut results);
    }

    let skipped_inputs = inputs
        .skipped
        .iter()
        .chain(&state.skipped)
        .map(|s| Skipped {
            file: s.file.clone(),
            line: s.line,
            reason: s.reason.clone(),
        });
    let mut all_skipped: Vec<Skipped> = skipped_inputs.collect();
    all_skipped.extend(skipped);
    let mut errors: Vec<InputErrorEntry> = inputs
        .errors
        .iter()
        .chain(&state.errors)
        .map(|e| InputErrorEntry {
            file: e.file.clone(),
            line: e.line,
            column: e.column,
            message: e.message.clone(),
        })
        .collect();
    errors.extend(malformed);
    let mut report = Report {
        schema_version: SCHEMA_VERSION,
        summary: Summary {
            files: inputs.files + state.files,
            documents: inputs.parsed_documents,
            cluster_state_objects,
            ..Summary::default()
        },
        results,
        skipped: all_skipped,
        errors,
    };
    report.tally();
    report
}

fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("")
}

/// Moves the documents of files that kustomization files name as patches (or transformer
/// configurations, generator inputs) from what is checked to what is skipped.
fn set_aside(kustomizations: &Kustomizations, inputs: &mut Inputs, skipped: &mut Vec<Skipped>) {
    inputs.documents.retain(|doc| {
        let Some(why) = kustomizations.not_an_object(&doc.file) else {
            return true;
        };
        skipped.push(Skipped {
            file: doc.file.to_string(),
            line: Some(doc.line),
            reason: why.reason(),
        });
        false
    });
    // Documents of such files that were skipped already (a JSON6902 patch is a list, a
    // values file has no kind) say why they really are not objects.
    for skip in &mut inputs.skipped {
        if let Some(why) = kustomizations.not_an_object(&skip.file)
            && skip.reason.starts_with("not a Kubernetes object")
        {
            skip.reason = why.reason();
        }
    }
}

/// One thing to judge, in report order.
enum Item<'d> {
    Object(Unit<'d>),
    AgentConfig(&'d Document),
}

impl Item<'_> {
    fn doc(&self) -> &Document {
        match self {
            Item::Object(unit) => unit.doc,
            Item::AgentConfig(doc) => doc,
        }
    }
}

/// An object as the API server would receive it.
struct Unit<'d> {
    /// Where it comes from (for a generated object, the document of the one generating it).
    doc: &'d Document,
    json: Cow<'d, RawValue>,
    head: Cow<'d, ObjectHead>,
    scope: Option<Scope>,
    generated_by: Option<Box<GeneratedBy>>,
    /// The Flux Kustomization whose build this instance of the object is (see
    /// [`apply_appliers`]).
    applied_by: Option<Box<GeneratedBy>>,
    notes: Vec<Note>,
}

/// The objects and agent configurations of the manifest set, with the objects the Flux
/// Operator would generate from them right after their generators.
fn items<'d>(inputs: &'d Inputs, scopes: &Scopes, skipped: &mut Vec<Skipped>) -> Vec<Item<'d>> {
    let mut items = Vec::with_capacity(inputs.documents.len());
    for doc in &inputs.documents {
        let (json, head) = match &doc.content {
            Content::Object { json, head } => (json, head),
            Content::AgentConfig { .. } => {
                items.push(Item::AgentConfig(doc));
                continue;
            }
        };
        let mut unit = Unit {
            doc,
            json: Cow::Borrowed(json.as_ref()),
            head: Cow::Borrowed(head),
            scope: None,
            generated_by: None,
            applied_by: None,
            notes: Vec::new(),
        };
        place(&mut unit, scopes);
        let group = group_of(head.api_version());
        if !operator::generates(group, head.kind()) {
            items.push(Item::Object(unit));
            continue;
        }
        let expansion = match serde_json::from_str::<serde_json::Value>(json.get()) {
            Ok(tree) => operator::expand(head.kind(), &tree),
            Err(_) => operator::Expansion::default(),
        };
        let generator = finding::object_ref(head.kind(), head.namespace(), head.name());
        let (made, withheld) = (expansion.generated.len(), expansion.withheld.len());
        let templated = expansion
            .withheld
            .iter()
            .filter(|w| w.reason == operator::TEMPLATED)
            .count();
        if made + withheld > 0 {
            let mut message = match made {
                0 => "The Flux Operator would create objects from it".to_string(),
                1 => "The Flux Operator would create 1 object from it, judged below as generated by it".to_string(),
                n => format!("The Flux Operator would create {n} objects from it, judged below as generated by it"),
            };
            if withheld > 0 {
                message.push_str(&format!(
                    "; {withheld} {} not judged: {}",
                    if withheld == 1 {
                        "resource is"
                    } else {
                        "resources are"
                    },
                    expansion
                        .withheld
                        .iter()
                        .map(|w| format!("{} ({}) {}", w.field, w.what, w.reason))
                        .collect::<Vec<_>>()
                        .join("; ")
                ));
            }
            message.push('.');
            if templated > 0 {
                message.push_str(&format!(
                    " What a templated resource becomes depends on the inputs: render the ResourceSet (`flux-operator build resourceset -f {}`) and check the output.",
                    doc.file
                ));
            }
            unit.notes.push(Note::new(NoteType::Generates, message));
        }
        items.push(Item::Object(unit));
        if withheld > 0 {
            // One line per generator in the skipped list, whose details the note above has.
            skipped.push(Skipped {
                file: doc.file.to_string(),
                line: Some(doc.line),
                reason: if templated == withheld {
                    format!(
                        "{generator}: {withheld} templated resource{} (`<< inputs... >>`) not judged: what {} depends on the inputs; render it (`flux-operator build resourceset -f {}`) and check the output",
                        if withheld == 1 { "" } else { "s" },
                        if withheld == 1 { "it becomes" } else { "they become" },
                        doc.file,
                    )
                } else {
                    format!(
                        "{generator}: {withheld} of the objects it makes not judged ({})",
                        expansion
                            .withheld
                            .iter()
                            .map(|w| format!("{}: {}", w.field, w.reason))
                            .collect::<Vec<_>>()
                            .join("; ")
                    )
                },
            });
        }
        for generated in expansion.generated {
            let origin = GeneratedBy {
                api_version: head.api_version().to_string(),
                kind: head.kind().to_string(),
                namespace: head.namespace().map(str::to_string),
                name: head.name().to_string(),
                field: generated.field.clone(),
            };
            let made = ObjectHead::from_value(&generated.object).and_then(|head| {
                serde_json::value::to_raw_value(&generated.object)
                    .map(|json| (json, head))
                    .map_err(|e| e.to_string())
            });
            let (json, head) = match made {
                Ok(made) => made,
                Err(reason) => {
                    skipped.push(Skipped {
                        file: doc.file.to_string(),
                        line: Some(doc.line),
                        reason: format!(
                            "{generator} {}: not a Kubernetes object ({reason})",
                            generated.field
                        ),
                    });
                    continue;
                }
            };
            let mut unit = Unit {
                doc,
                json: Cow::Owned(json),
                head: Cow::Owned(head),
                scope: None,
                generated_by: Some(Box::new(origin)),
                applied_by: None,
                notes: generated
                    .notes
                    .into_iter()
                    .map(|n| Note::new(NoteType::Generated, n))
                    .collect(),
            };
            place(&mut unit, scopes);
            items.push(Item::Object(unit));
        }
    }
    items
}

/// Reads an object's namespace as the API server would: a cluster-scoped kind has none.
fn place(unit: &mut Unit<'_>, scopes: &Scopes) {
    let scope = scopes.of(group_of(unit.head.api_version()), unit.head.kind());
    unit.scope = scope;
    if scope != Some(Scope::Cluster) {
        return;
    }
    let Some(namespace) = unit.head.namespace().map(str::to_string) else {
        return;
    };
    unit.head.to_mut().set_namespace(None);
    if let Ok(mut tree) = serde_json::from_str::<serde_json::Value>(unit.json.get()) {
        if let Some(metadata) = tree.get_mut("metadata").and_then(|m| m.as_object_mut()) {
            metadata.remove("namespace");
        }
        if let Ok(json) = serde_json::value::to_raw_value(&tree) {
            unit.json = Cow::Owned(json);
        }
    }
    unit.notes.push(Note::new(
        NoteType::ClusterScoped,
        format!(
            "metadata.namespace {namespace} is ignored: {} is cluster-scoped, so the API server drops it; judged without it",
            unit.head.kind()
        ),
    ));
}

/// The kinds the API server sends to fluxgate's `/mutate`: the rules of the
/// MutatingWebhookConfiguration in `deploy/base/webhooks.yaml` (a test holds the two together).
/// Other kinds are never mutated in a cluster, so `check` does not ask.
pub const MUTATED_KINDS: &[(&str, &str)] = &[
    (crate::flux::SOURCE_GROUP, "OCIRepository"),
    (crate::flux::SOURCE_GROUP, "HelmChart"),
];

/// Applies what fluxgate's mutating webhook would change before the API server validates the
/// object. Returns whether the object changed.
fn mutate(engine: &Engine, view: &MemoryView, unit: &mut Unit<'_>) -> bool {
    let kind = (group_of(unit.head.api_version()), unit.head.kind());
    if !MUTATED_KINDS.contains(&kind) {
        return false;
    }
    let patch = {
        let request = unit.head.create(&unit.json, "fluxgate-check-mutate");
        let (verdict, _) = engine.review(Endpoint::Mutate, &request, view);
        verdict.patch
    };
    if patch.is_empty() {
        return false;
    }
    let Ok(mut tree) = serde_json::from_str::<serde_json::Value>(unit.json.get()) else {
        return false;
    };
    if json_patch::patch(&mut tree, &patch).is_err() {
        return false;
    }
    let Ok(json) = serde_json::value::to_raw_value(&tree) else {
        return false;
    };
    let rule = tree
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(ANNOTATION_VERIFY_DEFAULT))
        .and_then(|r| r.as_str())
        .map(str::to_string);
    let changes: Vec<String> = patch
        .iter()
        .filter_map(|op| {
            let (verb, path) = match op {
                json_patch::PatchOperation::Add(op) => ("adds", op.path.to_string()),
                json_patch::PatchOperation::Replace(op) => ("replaces", op.path.to_string()),
                json_patch::PatchOperation::Remove(op) => ("removes", op.path.to_string()),
                _ => return None,
            };
            // The annotation that names the rule is said in words below.
            let annotation = path.starts_with("/metadata/annotations")
                || (path == "/metadata" && verb == "adds");
            (!annotation)
                .then(|| format!("{verb} {}", path.trim_start_matches('/').replace('/', ".")))
        })
        .collect();
    let by = match &rule {
        Some(rule) => format!(
            " (signed-oci-sources verifyDefaults rule {rule}; it records that in the annotation {ANNOTATION_VERIFY_DEFAULT})"
        ),
        None => String::new(),
    };
    unit.notes.push(Note::new(
        NoteType::Mutated,
        format!(
            "fluxgate's mutating webhook (/mutate) {}{by} before the API server validates the object: judged with that change, as the cluster would judge it.",
            if changes.is_empty() {
                "changes it".to_string()
            } else {
                changes.join(", ")
            }
        ),
    ));
    if let Ok(head) = ObjectHead::from_raw(&crate::json_view::Indexed::skimmed(&json)) {
        let mut head = head;
        if unit.head.namespace().is_none() {
            head.set_namespace(None);
        }
        unit.head = Cow::Owned(head);
    }
    unit.json = Cow::Owned(json);
    true
}

/// Whether a unit tells who applies what: a Flux Kustomization, a FluxInstance, a Flux
/// controller's Deployment.
fn informs_tenancy(unit: &Unit<'_>) -> bool {
    match (group_of(unit.head.api_version()), unit.head.kind()) {
        (crate::flux::KUSTOMIZE_GROUP, "Kustomization") => true,
        (operator::GROUP, operator::FLUX_INSTANCE) => true,
        ("apps", "Deployment") => {
            let json = unit.json.get();
            json.contains("kustomize-controller") || json.contains("helm-controller")
        }
        _ => false,
    }
}

/// What the manifest set tells about who applies which file, and into which namespace (see
/// [`tenancy`]); `None` for a set with no kustomization file and nothing of Flux's, where
/// there is nothing to tell. Objects without a namespace of their own get the one their
/// kustomization builds set, with a note.
fn build_tenancy<'k>(
    kustomizations: &'k Kustomizations,
    inputs: &Inputs,
    items: &mut [Item<'_>],
) -> Option<Tenancy<'k>> {
    let units = || {
        items.iter().filter_map(|item| match item {
            Item::Object(unit) => Some(unit),
            Item::AgentConfig(_) => None,
        })
    };
    let bootstrap = inputs
        .file_names
        .iter()
        .any(|f| f.ends_with("/gotk-sync.yaml") || f.ends_with("/gotk-components.yaml"));
    if kustomizations.is_empty() && !bootstrap && !units().any(informs_tenancy) {
        return None;
    }
    let mut tenancy = Tenancy::new(kustomizations);
    for file in &inputs.file_names {
        tenancy.add_file(file);
    }
    if !kustomizations.is_empty() {
        for item in items.iter_mut() {
            let Item::Object(unit) = item else { continue };
            if unit.generated_by.is_some() || unit.scope == Some(Scope::Cluster) {
                continue;
            }
            let Some((namespace, set_by)) = tenancy.kustomize_namespace(&unit.doc.file) else {
                continue;
            };
            if unit.head.namespace() == Some(namespace.as_str()) {
                continue;
            }
            let was = unit.head.namespace().map(str::to_string);
            set_namespace(unit, Some(&namespace));
            unit.notes.push(Note::new(
                NoteType::Namespace,
                match was {
                    Some(was) => format!(
                        "In namespace {namespace}, not {was}: {set_by} sets `namespace: {namespace}` on every object of its build, as `kubectl kustomize` does"
                    ),
                    None => format!(
                        "In namespace {namespace}: {set_by} sets `namespace: {namespace}` on every object of its build, as `kubectl kustomize` does"
                    ),
                },
            ));
        }
    }
    for item in items.iter() {
        let Item::Object(unit) = item else { continue };
        if !informs_tenancy(unit) {
            continue;
        }
        if let Ok(tree) = serde_json::from_str::<serde_json::Value>(unit.json.get()) {
            let group = group_of(unit.head.api_version());
            tenancy.learn(
                unit.head.kind(),
                group,
                &tree,
                &unit.doc.file,
                unit.doc.line,
            );
        }
    }
    tenancy.finish();
    Some(tenancy)
}

/// Sets an object's namespace in its head and its JSON.
fn set_namespace(unit: &mut Unit<'_>, namespace: Option<&str>) {
    unit.head
        .to_mut()
        .set_namespace(namespace.map(str::to_string));
    if let Ok(mut tree) = serde_json::from_str::<serde_json::Value>(unit.json.get()) {
        if let Some(metadata) = tree
            .as_object_mut()
            .map(|o| o.entry("metadata").or_insert_with(|| serde_json::json!({})))
            .and_then(|m| m.as_object_mut())
        {
            match namespace {
                Some(ns) => {
                    metadata.insert("namespace".into(), serde_json::json!(ns));
                }
                None => {
                    metadata.remove("namespace");
                }
            }
        }
        if let Ok(json) = serde_json::value::to_raw_value(&tree) {
            unit.json = Cow::Owned(json);
        }
    }
}

/// The most Kustomizations an object is judged as applied by.
const MAX_INSTANCES: usize = 16;

/// Replaces each object that Flux Kustomizations of the set apply changed (into their
/// `targetNamespace`, with their `spec.patches`) with what each of them applies: the cluster
/// never holds the manifest as written. Only Kustomizations that sync from the cluster's own
/// source count (see [`Tenancy::transforming_appliers_of`]).
fn apply_appliers<'d>(
    items: Vec<Item<'d>>,
    tenancy: &Tenancy<'_>,
    scopes: &Scopes,
) -> Vec<Item<'d>> {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let unit = match item {
            Item::Object(unit) if unit.generated_by.is_none() => unit,
            other => {
                out.push(other);
                continue;
            }
        };
        let appliers = tenancy.transforming_appliers_of(&unit.doc.file);
        if appliers.is_empty() {
            out.push(Item::Object(unit));
            continue;
        }
        // Each applier makes a copy: a bound keeps a set of many Kustomizations of one path
        // from multiplying the work.
        let beyond = appliers.len().saturating_sub(MAX_INSTANCES);
        for (n, applier) in appliers.into_iter().take(MAX_INSTANCES).enumerate() {
            let Ok(mut tree) = serde_json::from_str::<serde_json::Value>(unit.json.get()) else {
                continue;
            };
            let mut said = Vec::new();
            let scope = unit.scope;
            if let Some(target) = &applier.target_namespace
                && scope != Some(Scope::Cluster)
                && let Some(metadata) = tree
                    .as_object_mut()
                    .map(|o| o.entry("metadata").or_insert_with(|| serde_json::json!({})))
                    .and_then(|m| m.as_object_mut())
            {
                metadata.insert("namespace".into(), serde_json::json!(target));
                said.push(format!("in namespace {target}, its targetNamespace"));
            }
            for (i, patch) in applier.patches.iter().enumerate() {
                match crate::flux::patch::apply(&mut tree, patch) {
                    crate::flux::patch::Applied::NotSelected => {}
                    crate::flux::patch::Applied::Applied => {
                        said.push(format!("with its spec.patches[{i}]"));
                    }
                    crate::flux::patch::Applied::Unknown(why) => {
                        said.push(format!("without its spec.patches[{i}], which {why}"));
                    }
                    crate::flux::patch::Applied::Failed(why) => said.push(format!(
                        "without its spec.patches[{i}], which cannot be applied ({why}: the Kustomization would fail)"
                    )),
                }
            }
            let made = ObjectHead::from_value(&tree).and_then(|head| {
                serde_json::value::to_raw_value(&tree)
                    .map(|json| (json, head))
                    .map_err(|e| e.to_string())
            });
            let Ok((json, head)) = made else { continue };
            let mut notes = unit.notes.clone();
            let mut message = format!(
                "Judged as {} (spec.path {}) applies it: {}.",
                applier.describe(),
                applier.path,
                if said.is_empty() {
                    "unchanged".to_string()
                } else {
                    said.join(", ")
                }
            );
            if beyond > 0 && n == 0 {
                message.push_str(&format!(
                    " {beyond} more Kustomizations apply it; only the first {MAX_INSTANCES} are judged."
                ));
            }
            notes.push(Note::new(NoteType::AppliedBy, message));
            let mut instance = Unit {
                doc: unit.doc,
                json: Cow::Owned(json),
                head: Cow::Owned(head),
                scope: None,
                generated_by: None,
                applied_by: Some(Box::new(GeneratedBy {
                    api_version: "kustomize.toolkit.fluxcd.io/v1".into(),
                    kind: "Kustomization".into(),
                    namespace: applier.namespace.clone(),
                    name: applier.name.clone(),
                    field: format!("spec.path {}", applier.path),
                })),
                notes,
            };
            place(&mut instance, scopes);
            out.push(Item::Object(instance));
        }
    }
    out
}

/// Adds what the manifest set tells about who applies a tenant's Kustomization or
/// HelmRelease and as whom (see [`tenancy`]).
fn tenancy_notes(
    config: &Config,
    tenancy: &Tenancy<'_>,
    items: &[&Item<'_>],
    results: &mut [Subject],
) {
    let platform = &config.policies.tenant_lockdown.platform_namespaces;
    let wanted = |subject: &Subject| {
        subject.evaluated.contains(&PolicyId::TenantLockdown)
            && matches!(subject.kind.as_str(), "Kustomization" | "HelmRelease")
            && matches!(
                group_of(&subject.api_version),
                crate::flux::KUSTOMIZE_GROUP | crate::flux::HELM_GROUP
            )
    };
    for (subject, item) in results.iter_mut().zip(items) {
        if !wanted(subject) {
            continue;
        }
        let Item::Object(unit) = item else { continue };
        #[derive(serde::Deserialize)]
        struct Spec {
            #[serde(default, rename = "serviceAccountName")]
            service_account_name: Option<String>,
        }
        #[derive(serde::Deserialize)]
        struct Object {
            #[serde(default)]
            spec: Option<Spec>,
        }
        let has_service_account = serde_json::from_str::<Object>(unit.json.get())
            .ok()
            .and_then(|o| o.spec)
            .and_then(|s| s.service_account_name)
            .is_some_and(|sa| !sa.trim().is_empty());
        let namespace = subject.namespace.clone();
        let judged_as_tenant = namespace
            .as_deref()
            .is_none_or(|ns| !platform.iter().any(|p| p == ns));
        let notes = tenancy.notes(
            &tenancy::Subject {
                file: &subject.file,
                kind: &subject.kind,
                namespace: namespace.as_deref(),
                has_service_account,
                judged_as_tenant,
                has_findings: subject
                    .findings
                    .iter()
                    .any(|f| f.policy == PolicyId::TenantLockdown),
            },
            platform,
        );
        subject.notes.extend(notes);
    }
}

fn report_action(action: &verdict::Action) -> (Action, Option<String>) {
    match action {
        verdict::Action::Deny => (Action::Deny, None),
        verdict::Action::Warn => (Action::Warn, None),
        verdict::Action::Audit => (Action::Audit, None),
        verdict::Action::Exempted(name) => (Action::Exempted, Some(name.clone())),
    }
}

/// Judges one object; a finding that the object is malformed ([`Severity::Invalid`]) goes to
/// `malformed` as an input error, as an unparsable file would.
#[allow(clippy::too_many_arguments)]
fn judge_object(
    engine: &Engine,
    view: &MemoryView,
    unit: &Unit<'_>,
    index: usize,
    prints: &mut Fingerprints,
    malformed: &mut Vec<InputErrorEntry>,
) -> Result<Subject, String> {
    let doc = unit.doc;
    let object = &unit.head;
    let uid = format!("fluxgate-check-{index}");
    let request = object.create(&unit.json, &uid);
    let (mut verdict, _exemptions) = engine.review(Endpoint::Validate, &request, view);
    verdict.outcomes.retain(|outcome| {
        if outcome.finding.severity != Severity::Invalid {
            return true;
        }
        malformed.push(InputErrorEntry {
            file: doc.file.to_string(),
            line: Some(doc.line),
            column: None,
            message: format!("[{}] {}", outcome.finding.policy, outcome.finding.message),
        });
        false
    });

    let api_version = object.api_version().to_string();
    let group = request.kind.group.to_string();
    let namespace = object.namespace().map(str::to_string);
    let mut item = doc.item.map(|i| i.to_string()).unwrap_or_default();
    // Generated objects share their generator's file and line, and instances of an object
    // applied by several Kustomizations their file and line: the origin tells them apart.
    for origin in [&unit.generated_by, &unit.applied_by].into_iter().flatten() {
        item.push_str(&origin.display());
    }
    let findings = verdict
        .outcomes
        .iter()
        .map(|outcome| {
            let (action, exemption) = report_action(&outcome.action);
            let policy = outcome.finding.policy;
            let fingerprint = prints.next(&[
                policy.as_str(),
                &doc.file,
                &group,
                object.kind(),
                namespace.as_deref().unwrap_or(""),
                object.name(),
                &item,
                &outcome.finding.message,
            ]);
            ReportFinding {
                policy,
                severity: outcome.finding.severity,
                mode: outcome.mode,
                action,
                exemption,
                line: doc.line,
                entry: None,
                message: outcome.finding.message.clone(),
                fingerprint,
            }
        })
        .collect();
    Ok(Subject {
        subject_type: SubjectType::Object,
        file: doc.file.to_string(),
        line: doc.line,
        item: doc.item,
        api_version,
        kind: object.kind().to_string(),
        namespace,
        name: object.name().to_string(),
        evaluated: verdict.evaluated.clone(),
        findings,
        scope: unit.scope,
        generated_by: unit.generated_by.as_deref().cloned(),
        applied_by: unit.applied_by.as_deref().cloned(),
        notes: unit.notes.clone(),
    })
}

/// The agent configuration lint runs as part of `ci-impersonation`, in its mode. Exemptions
/// describe cluster requests (namespaces, users, objects) and do not apply to this file.
#[allow(clippy::too_many_arguments)]
fn judge_agent_config(
    engine: &Engine,
    view: &MemoryView,
    doc: &Document,
    config: &serde_json::Value,
    agent: Option<&str>,
    text: &str,
    text_line: usize,
    prints: &mut Fingerprints,
) -> Result<Subject, String> {
    let policy = PolicyId::CiImpersonation;
    let mode = engine.mode_of(&engine.config(), policy);
    let name_in_messages = match agent {
        Some(name) => format!("GitLab agent {name} ({})", doc.file),
        None => format!("GitLab agent configuration {}", doc.file),
    };
    let lint = if mode == Mode::Off {
        Vec::new()
    } else {
        let config_now = engine.config();
        let settings = &config_now.policies.ci_impersonation;
        let privileged = |user: &str, groups: &[String]| {
            crate::policy::ci_impersonation::privileged_identity(view, settings, user, groups)
        };
        agent_config::lint(config, text, &name_in_messages, &privileged)
    };
    let findings = lint
        .into_iter()
        .map(|f| {
            let action = match (mode, f.severity) {
                (Mode::Enforce, Severity::Violation | Severity::Invalid) => Action::Deny,
                (Mode::Enforce | Mode::Warn, _) => Action::Warn,
                _ => Action::Audit,
            };
            let fingerprint = prints.next(&[policy.as_str(), &doc.file, &f.entry, &f.message]);
            ReportFinding {
                policy,
                severity: f.severity,
                mode,
                action,
                exemption: None,
                line: f.line_offset.map(|o| text_line + o).unwrap_or(doc.line),
                entry: Some(f.entry),
                message: f.message,
                fingerprint,
            }
        })
        .collect();
    Ok(Subject {
        subject_type: SubjectType::GitlabAgentConfig,
        file: doc.file.to_string(),
        line: doc.line,
        item: None,
        api_version: String::new(),
        kind: "GitLabAgentConfig".to_string(),
        namespace: None,
        name: agent.unwrap_or("").to_string(),
        evaluated: if mode == Mode::Off {
            Vec::new()
        } else {
            vec![policy]
        },
        findings,
        scope: None,
        generated_by: None,
        applied_by: None,
        notes: Vec::new(),
    })
}
