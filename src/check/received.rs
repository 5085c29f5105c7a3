//! What the API server would receive from a manifest set: the objects `fluxgate check`
//! judges, as opposed to the documents it reads. Files kustomization files name as patches,
//! transformer configurations or generator inputs are set aside ([`set_aside`]); a
//! cluster-scoped kind loses its manifest's namespace ([`place`]); the Flux Operator's
//! ResourceSets and FluxInstances add the objects the operator creates ([`items`]); the
//! namespace kustomize builds set, and what the set's Flux Kustomizations do to the files they
//! apply, are applied ([`build_tenancy`], [`apply_appliers`]); and fluxgate's own `/mutate`
//! comes first ([`mutate`]).

use std::borrow::Cow;

use serde_json::value::RawValue;

use super::kustomize::Kustomizations;
use super::reader::{Content, Document, Inputs};
use super::scope::Scopes;
use super::tenancy::Tenancy;
use crate::admission::ObjectHead;
use crate::cluster::MemoryView;
use crate::engine::{Endpoint, Engine};
use crate::finding;
use crate::flux::operator;
use crate::policy::signed_oci_sources::ANNOTATION_VERIFY_DEFAULT;
use crate::report::{GeneratedBy, Note, NoteType, Scope, Skipped};

pub(super) fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("")
}

/// Moves the documents of files that kustomization files name as patches (or transformer
/// configurations, generator inputs) from what is checked to what is skipped.
pub(super) fn set_aside(
    kustomizations: &Kustomizations,
    inputs: &mut Inputs,
    skipped: &mut Vec<Skipped>,
) {
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
pub(super) enum Item<'d> {
    Object(Unit<'d>),
    AgentConfig(&'d Document),
}

impl Item<'_> {
    pub(super) fn doc(&self) -> &Document {
        match self {
            Item::Object(unit) => unit.doc,
            Item::AgentConfig(doc) => doc,
        }
    }
}

/// An object as the API server would receive it.
pub(super) struct Unit<'d> {
    /// Where it comes from (for a generated object, the document of the one generating it).
    pub(super) doc: &'d Document,
    pub(super) json: Cow<'d, RawValue>,
    pub(super) head: Cow<'d, ObjectHead>,
    pub(super) scope: Option<Scope>,
    pub(super) generated_by: Option<Box<GeneratedBy>>,
    /// The Flux Kustomization whose build this instance of the object is (see
    /// [`apply_appliers`]).
    pub(super) applied_by: Option<Box<GeneratedBy>>,
    pub(super) notes: Vec<Note>,
}

/// The objects and agent configurations of the manifest set, with the objects the Flux
/// Operator would generate from them right after their generators.
pub(super) fn items<'d>(
    inputs: &'d Inputs,
    scopes: &Scopes,
    skipped: &mut Vec<Skipped>,
) -> Vec<Item<'d>> {
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
pub(super) fn place(unit: &mut Unit<'_>, scopes: &Scopes) {
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
pub(super) fn mutate(engine: &Engine, view: &MemoryView, unit: &mut Unit<'_>) -> bool {
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
pub(super) fn informs_tenancy(unit: &Unit<'_>) -> bool {
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
pub(super) fn build_tenancy<'k>(
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
pub(super) fn set_namespace(unit: &mut Unit<'_>, namespace: Option<&str>) {
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
pub(super) fn apply_appliers<'d>(
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
