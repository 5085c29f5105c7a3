//! Kustomize patches as Flux applies them: the `patches` of a Flux Kustomization and of a
//! FluxInstance's `spec.kustomize`, each a `patch` (a JSON6902 list of operations, or a
//! strategic-merge object) with an optional `target` selector.
//!
//! A strategic-merge patch is merged as a JSON merge patch (RFC 7386), which is how kustomize
//! merges kinds it has no schema for (Flux's own kinds among them); `$patch` directives are
//! not interpreted. A target's `name` and `namespace` are regular expressions of the whole
//! value, its `group`, `version` and `kind` exact; a target that selects by labels or
//! annotations is not guessed at.

use serde_json::Value;

/// What became of a patch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Its target does not select the object.
    NotSelected,
    Applied,
    /// Whether it selects the object cannot be told (a label selector, a bad regex).
    Unknown(String),
    /// It selects the object but cannot be applied (a path that does not exist): the build
    /// fails.
    Failed(String),
}

/// `(group, kind, namespace, name)` of an object, empty strings for what it lacks.
pub fn identity(object: &Value) -> (String, String, String, String) {
    let text = |pointer: &str| {
        object
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let group = text("/apiVersion")
        .rsplit_once('/')
        .map(|(g, _)| g.to_string())
        .unwrap_or_default();
    (
        group,
        text("/kind"),
        text("/metadata/namespace"),
        text("/metadata/name"),
    )
}

/// Whether a kustomize target selector selects an object.
fn target_matches(target: &Value, object: &Value) -> Result<bool, String> {
    let (group, kind, namespace, name) = identity(object);
    let version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .map(|v| v.rsplit('/').next().unwrap_or(v))
        .unwrap_or("");
    let field = |key: &str| target.get(key).and_then(Value::as_str).unwrap_or("");
    if !field("labelSelector").is_empty() || !field("annotationSelector").is_empty() {
        return Err(
            "selects by labels or annotations, which fluxgate does not evaluate".to_string(),
        );
    }
    let exact = |want: &str, have: &str| want.is_empty() || want == have;
    let pattern = |want: &str, have: &str| -> Result<bool, String> {
        if want.is_empty() {
            return Ok(true);
        }
        regex::Regex::new(&format!("^(?:{want})$"))
            .map(|re| re.is_match(have))
            .map_err(|e| format!("has a target regex {want:?} that does not compile: {e}"))
    };
    Ok(exact(field("group"), &group)
        && exact(field("version"), version)
        && exact(field("kind"), &kind)
        && pattern(field("name"), &name)?
        && pattern(field("namespace"), &namespace)?)
}

/// Applies a `{patch, target}` entry to an object when its target selects it.
pub fn apply(object: &mut Value, entry: &Value) -> Applied {
    let Some(text) = entry.get("patch").and_then(Value::as_str) else {
        return Applied::NotSelected;
    };
    let parsed: Value = match serde_yaml_ng::from_str(text) {
        Ok(value) => value,
        Err(e) => return Applied::Unknown(format!("does not parse ({e})")),
    };
    let selected = match entry.get("target") {
        Some(target) => target_matches(target, object),
        // A strategic-merge patch without a target selects by its own kind and name.
        None => {
            let (_, kind, _, name) = identity(&parsed);
            let (_, own_kind, _, own_name) = identity(object);
            Ok(kind == own_kind && name == own_name)
        }
    };
    match selected {
        Ok(false) => Applied::NotSelected,
        Err(why) => Applied::Unknown(why),
        Ok(true) => {
            let result = match &parsed {
                Value::Array(_) => serde_json::from_value::<json_patch::Patch>(parsed.clone())
                    .map_err(|e| e.to_string())
                    .and_then(|ops| json_patch::patch(object, &ops).map_err(|e| e.to_string())),
                Value::Object(_) => {
                    json_patch::merge(object, &parsed);
                    Ok(())
                }
                _ => Err("is neither a list of operations nor an object".into()),
            };
            match result {
                Ok(()) => Applied::Applied,
                Err(e) => Applied::Failed(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn targets_select_by_anchored_regex_and_exact_kind() {
        let object = json!({"apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
            "metadata": {"name": "cert-manager", "namespace": "prod"}, "spec": {}});
        let add_sa = |target: Value| json!({"target": target, "patch": "- op: add\n  path: /spec/serviceAccountName\n  value: flux\n"});
        for (target, selected) in [
            (json!({"kind": "HelmRelease"}), true),
            (json!({"kind": "HelmRelease", "name": "cert-.*"}), true),
            (json!({"kind": "HelmRelease", "name": "cert"}), false),
            (json!({"kind": "Kustomization"}), false),
            (
                json!({"group": "helm.toolkit.fluxcd.io", "version": "v2"}),
                true,
            ),
            (json!({"namespace": "prod|staging"}), true),
        ] {
            let mut o = object.clone();
            let outcome = apply(&mut o, &add_sa(target.clone()));
            assert_eq!(outcome == Applied::Applied, selected, "{target}");
            assert_eq!(
                o["spec"].get("serviceAccountName").is_some(),
                selected,
                "{target}"
            );
        }
        let mut o = object.clone();
        assert!(matches!(
            apply(&mut o, &add_sa(json!({"labelSelector": "a=b"}))),
            Applied::Unknown(_)
        ));
    }

    #[test]
    fn a_patch_that_does_not_apply_fails_and_changes_nothing() {
        let mut object = json!({"kind": "X", "metadata": {"name": "a"}, "spec": {}});
        let before = object.clone();
        let outcome = apply(
            &mut object,
            &json!({"target": {"kind": "X"}, "patch": "- op: replace\n  path: /spec/a/b\n  value: 1\n"}),
        );
        assert!(matches!(outcome, Applied::Failed(_)));
        assert_eq!(object, before);
    }
}
