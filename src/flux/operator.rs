//! The Flux Operator's kinds (`fluxcd.controlplane.io`): the objects a `ResourceSet` and a
//! `FluxInstance` make the operator create, so that they can be judged like the objects a
//! manifest holds. Read from the operator's public API documentation
//! (`docs/api/v1/resourceset.md`, `docs/api/v1/fluxinstance.md` in
//! controlplaneio-fluxcd/flux-operator); no code of the operator is used.
//!
//! - A **ResourceSet** applies `spec.resources`, the documents of `spec.resourcesTemplate` and
//!   the resources of each of `spec.steps`, each rendered as a Go template with `<< >>`
//!   delimiters once per input set. A resource without template actions renders to itself
//!   for every input set (the operator deduplicates the copies), so it is known without the
//!   inputs; a templated one is not, and is reported as withheld. `spec.commonMetadata`
//!   labels and annotations are set on every resource; a resource annotated
//!   `fluxcd.controlplane.io/reconcile: disabled` is not applied.
//! - A **FluxInstance** with `spec.sync` makes a Flux source (`GitRepository`,
//!   `OCIRepository` or `Bucket`) and a `Kustomization` named after `spec.sync.name` (default:
//!   the FluxInstance's namespace) in the FluxInstance's namespace, then applies
//!   `spec.kustomize.patches` to everything it builds, those two included.

use std::collections::HashSet;

use serde_json::{Map, Value, json};

use super::patch::{Applied, identity};

/// The Flux Operator's API group.
pub const GROUP: &str = "fluxcd.controlplane.io";
pub const RESOURCE_SET: &str = "ResourceSet";
pub const FLUX_INSTANCE: &str = "FluxInstance";

/// [`Withheld::reason`] of a resource that depends on the inputs.
pub const TEMPLATED: &str = "is templated (`<< ... >>`)";

/// The annotation that keeps a ResourceSet resource from being applied.
const RECONCILE_ANNOTATION: &str = "fluxcd.controlplane.io/reconcile";

/// At most this many objects are taken from one generating object: a bound on the work a
/// single manifest can cause (the operator itself allows 20 steps).
pub const MAX_GENERATED: usize = 1000;

/// An object the operator would create.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// Where it comes from in the generating object: `spec.resources[2]`, `spec.sync`.
    pub field: String,
    pub object: Value,
    /// What a reader should know about how it was made (a patch that did not apply).
    pub notes: Vec<String>,
}

/// A resource the operator would create that cannot be known from the manifest alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Withheld {
    pub field: String,
    /// `OCIRepository apps` as far as the template says, or what the field holds.
    pub what: String,
    pub reason: String,
}

/// What a generating object makes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Expansion {
    pub generated: Vec<Generated>,
    pub withheld: Vec<Withheld>,
}

/// Whether a kind of this API group generates objects.
pub fn generates(group: &str, kind: &str) -> bool {
    group == GROUP && matches!(kind, RESOURCE_SET | FLUX_INSTANCE)
}

/// The objects a ResourceSet or FluxInstance makes; empty for other kinds.
pub fn expand(kind: &str, object: &Value) -> Expansion {
    match kind {
        RESOURCE_SET => resource_set(object),
        FLUX_INSTANCE => flux_instance(object),
        _ => Expansion::default(),
    }
}

// ---------------------------------------------------------------------------------------------
// ResourceSet

/// Whether a value holds a template action anywhere (a key or a string).
fn templated(value: &Value) -> bool {
    match value {
        Value::String(s) => is_template(s),
        Value::Array(items) => items.iter().any(templated),
        Value::Object(map) => map.iter().any(|(k, v)| is_template(k) || templated(v)),
        _ => false,
    }
}

fn is_template(text: &str) -> bool {
    text.find("<<")
        .is_some_and(|open| text[open..].contains(">>"))
}

/// `Kind name` of a resource, as far as its text says (a templated name stays as written).
fn describe(resource: &Value) -> String {
    let kind = resource
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("object");
    let name = resource
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    match resource
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
    {
        Some(ns) if !ns.is_empty() => format!("{kind} {ns}/{name}"),
        _ => format!("{kind} {name}").trim_end().to_string(),
    }
}

struct ResourceSetBuild<'a> {
    common_labels: Option<&'a Map<String, Value>>,
    common_annotations: Option<&'a Map<String, Value>>,
    seen: HashSet<(String, String, String, String)>,
    out: Expansion,
}

impl ResourceSetBuild<'_> {
    fn resource(&mut self, field: String, resource: &Value) {
        if self.out.generated.len() >= MAX_GENERATED {
            if self.out.withheld.len() <= MAX_GENERATED {
                self.out.withheld.push(Withheld {
                    field,
                    what: describe(resource),
                    reason: format!("is beyond the first {MAX_GENERATED} resources"),
                });
            }
            return;
        }
        if !resource.is_object() {
            self.out.withheld.push(Withheld {
                field,
                what: "a resource".into(),
                reason: "is not an object".into(),
            });
            return;
        }
        if templated(resource) {
            self.out.withheld.push(Withheld {
                field,
                what: describe(resource),
                reason: TEMPLATED.into(),
            });
            return;
        }
        let mut object = resource.clone();
        if let Some(metadata) = object
            .as_object_mut()
            .map(|o| o.entry("metadata").or_insert_with(|| json!({})))
            .and_then(Value::as_object_mut)
        {
            for (key, common) in [
                ("labels", self.common_labels),
                ("annotations", self.common_annotations),
            ] {
                let Some(common) = common else { continue };
                if let Some(map) = metadata
                    .entry(key)
                    .or_insert_with(|| json!({}))
                    .as_object_mut()
                {
                    for (k, v) in common {
                        map.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        if object
            .pointer(&format!(
                "/metadata/annotations/{}",
                RECONCILE_ANNOTATION.replace('/', "~1")
            ))
            .and_then(Value::as_str)
            == Some("disabled")
        {
            self.out.withheld.push(Withheld {
                field,
                what: describe(resource),
                reason: format!("is not applied ({RECONCILE_ANNOTATION}: disabled)"),
            });
            return;
        }
        // The operator applies one object per identity.
        if !self.seen.insert(identity(&object)) {
            return;
        }
        self.out.generated.push(Generated {
            field,
            object,
            notes: Vec::new(),
        });
    }

    fn template(&mut self, field: &str, template: &str) {
        if is_template(template) {
            self.out.withheld.push(Withheld {
                field: field.to_string(),
                what: "its documents".into(),
                reason: TEMPLATED.into(),
            });
            return;
        }
        for (i, document) in serde_yaml_ng::Deserializer::from_str(template).enumerate() {
            let field = format!("{field}[{i}]");
            match <Value as serde::Deserialize>::deserialize(document) {
                Ok(Value::Null) => {}
                Ok(value) => self.resource(field, &value),
                Err(e) => {
                    self.out.withheld.push(Withheld {
                        field,
                        what: "a document".into(),
                        reason: format!("does not parse as YAML ({e}): the operator would fail to build the ResourceSet"),
                    });
                    return;
                }
            }
        }
    }

    fn resources_of(&mut self, field: &str, holder: &Value) {
        if let Some(resources) = holder.get("resources").and_then(Value::as_array) {
            for (i, resource) in resources.iter().enumerate() {
                self.resource(format!("{field}resources[{i}]"), resource);
            }
        }
        if let Some(template) = holder.get("resourcesTemplate").and_then(Value::as_str) {
            self.template(&format!("{field}resourcesTemplate"), template);
        }
    }
}

fn resource_set(object: &Value) -> Expansion {
    let spec = object.get("spec").unwrap_or(&Value::Null);
    let common = spec.get("commonMetadata");
    let mut build = ResourceSetBuild {
        common_labels: common
            .and_then(|c| c.get("labels"))
            .and_then(Value::as_object),
        common_annotations: common
            .and_then(|c| c.get("annotations"))
            .and_then(Value::as_object),
        seen: HashSet::new(),
        out: Expansion::default(),
    };
    build.resources_of("spec.", spec);
    if let Some(steps) = spec.get("steps").and_then(Value::as_array) {
        for (i, step) in steps.iter().enumerate() {
            build.resources_of(&format!("spec.steps[{i}]."), step);
        }
    }
    build.out
}

// ---------------------------------------------------------------------------------------------
// FluxInstance

/// The ServiceAccount Flux's lockdown makes kustomize-controller and helm-controller use for
/// objects that name none, when the FluxInstance turns the lockdown on
/// (`spec.cluster.multitenant`): `spec.cluster.tenantDefaultServiceAccount`, default `default`.
pub fn tenant_default_service_account(flux_instance: &Value) -> Option<String> {
    let cluster = flux_instance.pointer("/spec/cluster")?;
    if cluster.get("multitenant").and_then(Value::as_bool) != Some(true) {
        return None;
    }
    Some(
        cluster
            .get("tenantDefaultServiceAccount")
            .and_then(Value::as_str)
            .filter(|sa| !sa.is_empty())
            .unwrap_or("default")
            .to_string(),
    )
}

fn flux_instance(object: &Value) -> Expansion {
    let mut out = Expansion::default();
    let Some(sync) = object.pointer("/spec/sync").filter(|s| s.is_object()) else {
        return out;
    };
    let text = |key: &str| sync.get(key).and_then(Value::as_str).unwrap_or("");
    let namespace = object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .filter(|ns| !ns.is_empty());
    let name = match (text("name"), namespace) {
        ("", Some(ns)) => ns.to_string(),
        ("", None) => "flux-system".to_string(),
        (name, _) => name.to_string(),
    };
    let kind = text("kind");
    let interval = match text("interval") {
        "" => "1m",
        other => other,
    };
    let mut metadata = json!({ "name": name });
    if let Some(ns) = namespace {
        metadata["namespace"] = json!(ns);
    }
    let mut spec = Map::new();
    spec.insert("interval".into(), json!(interval));
    match kind {
        "GitRepository" => {
            spec.insert("ref".into(), json!({ "name": text("ref") }));
        }
        "OCIRepository" => {
            spec.insert("ref".into(), json!({ "tag": text("ref") }));
        }
        "Bucket" => {
            spec.insert("bucketName".into(), json!(text("ref")));
        }
        other => {
            out.withheld.push(Withheld {
                field: "spec.sync".into(),
                what: format!("a source of kind {other:?}"),
                reason:
                    "is not a kind the operator syncs from (GitRepository, OCIRepository or Bucket)"
                        .into(),
            });
            return out;
        }
    }
    if !text("pullSecret").is_empty() {
        spec.insert("secretRef".into(), json!({ "name": text("pullSecret") }));
    }
    if !text("provider").is_empty() {
        spec.insert("provider".into(), json!(text("provider")));
    }
    let url_key = if kind == "Bucket" { "endpoint" } else { "url" };
    spec.insert(url_key.into(), json!(text("url")));
    let source = json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": kind,
        "metadata": metadata.clone(),
        "spec": spec,
    });
    let kustomization = json!({
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": metadata,
        "spec": {
            "interval": "10m0s",
            "path": text("path"),
            "prune": true,
            "sourceRef": { "kind": kind, "name": name },
        },
    });
    let patches = object
        .pointer("/spec/kustomize/patches")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    for (field, object) in [
        ("spec.sync (source)", source),
        ("spec.sync (Kustomization)", kustomization),
    ] {
        let mut generated = Generated {
            field: field.to_string(),
            object,
            notes: Vec::new(),
        };
        for (i, patch) in patches.iter().enumerate() {
            apply_patch(&mut generated, i, patch);
        }
        out.generated.push(generated);
    }
    out
}

/// Applies one of `spec.kustomize.patches` to a generated object when its target selects it
/// (see [`super::patch`]).
fn apply_patch(generated: &mut Generated, index: usize, patch: &Value) {
    match super::patch::apply(&mut generated.object, patch) {
        Applied::NotSelected => {}
        Applied::Applied => generated
            .notes
            .push(format!("spec.kustomize.patches[{index}] applied")),
        Applied::Unknown(why) => generated.notes.push(format!(
            "spec.kustomize.patches[{index}] {why}; judged without it"
        )),
        Applied::Failed(why) => generated.notes.push(format!(
            "spec.kustomize.patches[{index}] cannot be applied ({why}): the operator would fail to build the instance; judged without it"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Value {
        serde_yaml_ng::from_str(text).expect("YAML")
    }

    #[test]
    fn a_resource_set_without_templates_generates_its_resources() {
        let set = yaml(
            r#"
apiVersion: fluxcd.controlplane.io/v1
kind: ResourceSet
metadata: {name: op, namespace: flux-system}
spec:
  commonMetadata: {labels: {team: platform}}
  resources:
  - apiVersion: source.toolkit.fluxcd.io/v1
    kind: OCIRepository
    metadata: {name: op, namespace: flux-system}
    spec: {url: 'oci://ghcr.io/x/y', ref: {semver: '*'}}
  - apiVersion: v1
    kind: Namespace
    metadata: {name: "<< inputs.tenant >>"}
  - apiVersion: v1
    kind: ConfigMap
    metadata: {name: off, annotations: {fluxcd.controlplane.io/reconcile: disabled}}
"#,
        );
        let out = expand(RESOURCE_SET, &set);
        assert_eq!(out.generated.len(), 1);
        let oci = &out.generated[0];
        assert_eq!(oci.field, "spec.resources[0]");
        assert_eq!(oci.object["spec"]["ref"]["semver"], "*");
        assert_eq!(oci.object["metadata"]["labels"]["team"], "platform");
        assert_eq!(out.withheld.len(), 2);
        assert_eq!(out.withheld[0].field, "spec.resources[1]");
        assert_eq!(out.withheld[0].reason, TEMPLATED);
        assert_eq!(out.withheld[0].what, "Namespace << inputs.tenant >>");
        assert!(out.withheld[1].reason.contains("disabled"));
    }

    #[test]
    fn templates_and_steps_are_read_and_copies_deduplicated() {
        let set = yaml(
            r#"
kind: ResourceSet
spec:
  inputs: [{a: 1}, {a: 2}]
  resourcesTemplate: |
    apiVersion: v1
    kind: ConfigMap
    metadata: {name: a}
    ---
    apiVersion: v1
    kind: ConfigMap
    metadata: {name: a}
  steps:
  - name: one
    resources:
    - {apiVersion: v1, kind: ConfigMap, metadata: {name: b}}
  - name: two
    resourcesTemplate: |
      kind: ConfigMap
      metadata: {name: << inputs.a >>}
"#,
        );
        let out = expand(RESOURCE_SET, &set);
        let fields: Vec<&str> = out.generated.iter().map(|g| g.field.as_str()).collect();
        assert_eq!(
            fields,
            ["spec.resourcesTemplate[0]", "spec.steps[0].resources[0]"]
        );
        assert_eq!(out.withheld.len(), 1);
        assert_eq!(out.withheld[0].field, "spec.steps[1].resourcesTemplate");
    }

    #[test]
    fn a_flux_instance_sync_makes_its_source_and_kustomization_with_the_patches_applied() {
        let instance = yaml(
            r#"
apiVersion: fluxcd.controlplane.io/v1
kind: FluxInstance
metadata: {name: flux, namespace: flux-system}
spec:
  cluster: {multitenant: true}
  sync: {kind: OCIRepository, url: 'oci://ghcr.io/acme/fleet', ref: latest, path: clusters/prod, pullSecret: ghcr}
  kustomize:
    patches:
    - target: {kind: OCIRepository, name: flux-system}
      patch: |
        - op: add
          path: /spec/verify
          value: {provider: cosign}
    - target: {kind: Deployment, name: '(kustomize|helm)-controller'}
      patch: |
        - op: add
          path: /spec/x
          value: 1
"#,
        );
        let out = expand(FLUX_INSTANCE, &instance);
        assert_eq!(out.generated.len(), 2);
        let source = &out.generated[0].object;
        assert_eq!(source["kind"], "OCIRepository");
        assert_eq!(source["metadata"]["name"], "flux-system");
        assert_eq!(source["metadata"]["namespace"], "flux-system");
        assert_eq!(source["spec"]["ref"]["tag"], "latest");
        assert_eq!(source["spec"]["secretRef"]["name"], "ghcr");
        assert_eq!(source["spec"]["verify"]["provider"], "cosign");
        assert_eq!(
            out.generated[0].notes,
            ["spec.kustomize.patches[0] applied"]
        );
        let kustomization = &out.generated[1].object;
        assert_eq!(kustomization["spec"]["path"], "clusters/prod");
        assert!(kustomization["spec"].get("verify").is_none());
        assert_eq!(
            tenant_default_service_account(&instance).as_deref(),
            Some("default")
        );
    }

    #[test]
    fn a_patch_that_cannot_apply_is_noted_and_left_out() {
        let instance = yaml(
            r#"
kind: FluxInstance
metadata: {namespace: fleet}
spec:
  sync: {kind: GitRepository, url: 'https://gitlab.com/a/b.git', ref: refs/heads/main, path: x, name: mine}
  kustomize:
    patches:
    - target: {kind: GitRepository}
      patch: |
        - op: replace
          path: /spec/missing/deep
          value: 1
"#,
        );
        let out = expand(FLUX_INSTANCE, &instance);
        assert_eq!(out.generated[0].object["metadata"]["name"], "mine");
        assert_eq!(
            out.generated[0].object["spec"]["ref"]["name"],
            "refs/heads/main"
        );
        assert!(out.generated[0].notes[0].contains("cannot be applied"));
        assert!(tenant_default_service_account(&instance).is_none());
    }

    #[test]
    fn a_strategic_merge_patch_merges_and_a_label_selector_is_not_guessed() {
        let instance = yaml(
            r#"
kind: FluxInstance
metadata: {namespace: flux-system}
spec:
  sync: {kind: OCIRepository, url: 'oci://ghcr.io/a/b', ref: '1.0.0', path: x}
  kustomize:
    patches:
    - patch: |
        apiVersion: source.toolkit.fluxcd.io/v1
        kind: OCIRepository
        metadata: {name: flux-system}
        spec: {ref: {tag: null, semver: '~1.0'}}
    - target: {labelSelector: 'a=b'}
      patch: |
        - op: remove
          path: /spec
"#,
        );
        let out = expand(FLUX_INSTANCE, &instance);
        let source = &out.generated[0];
        assert_eq!(source.object["spec"]["ref"], json!({"semver": "~1.0"}));
        assert!(source.notes[1].contains("labels"), "{:?}", source.notes);
        assert!(source.object["spec"].is_object());
    }
}
