//! The RBAC part of the cluster view: Roles and ClusterRoles as [`RoleFacts`] (what is broad
//! in them, their labels and aggregation rule) and bindings as [`BindingFacts`] (both drawn
//! from the objects by [`crate::rbac::objects`]), indexed so that every question a policy asks
//! on the request path is a lookup:
//! - a role by name;
//! - the ClusterRoles an aggregation selector matches (by label, not by scanning);
//! - the ClusterRoles that aggregate a set of labels (only aggregating roles are visited);
//! - the bindings of a role (by roleRef);
//! - the GitLab identities RoleBindings name in a namespace (whether a namespace is one
//!   environment's own).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use crate::json_view::Indexed;

use crate::gitlab::identity::Identity;
use crate::rbac::objects::{
    BindingFacts, BindingKind, BindingObject, NamedRoles, RoleFacts, RoleKey, RoleObject, Subject,
};
use crate::rbac::{PolicyRule, RuleSummary};
use crate::selector::{LabelSelector, SelectorOperator, selector_matches};

/// Interned values are swept once the table has grown by this factor since the last sweep.
const SWEEP_GROWTH: usize = 2;

/// label key -> label value -> names of the ClusterRoles carrying it.
type LabelIndex = HashMap<Arc<str>, HashMap<Arc<str>, BTreeSet<Arc<str>>>>;

/// An RBAC object ready for the index.
#[derive(Debug, Clone)]
pub enum Projection {
    Role {
        namespace: String,
        name: String,
        facts: RoleFacts,
    },
    ClusterRole {
        name: String,
        facts: RoleFacts,
    },
    Binding(BindingFacts),
    /// A binding whose roleRef grants nothing the API server would accept: not kept.
    Ignored,
}

pub fn is_rbac_kind(kind: &str) -> bool {
    matches!(
        kind,
        "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding"
    )
}

/// Projects an RBAC object of the given kind.
pub fn project(kind: &str, object: &Indexed<'_>) -> Result<Projection, String> {
    match kind {
        "Role" | "ClusterRole" => {
            let role: RoleObject = object.read().map_err(|e| format!("{kind}: {e}"))?;
            let cluster_role = kind == "ClusterRole";
            let facts = RoleFacts::from_object(&role, cluster_role);
            let name = role.metadata.name;
            Ok(if cluster_role {
                Projection::ClusterRole { name, facts }
            } else {
                Projection::Role {
                    namespace: role.metadata.namespace.unwrap_or_default(),
                    name,
                    facts,
                }
            })
        }
        _ => {
            let binding_kind =
                BindingKind::parse(kind).ok_or_else(|| format!("{kind} is not an RBAC kind"))?;
            let binding: BindingObject = object.read().map_err(|e| format!("{kind}: {e}"))?;
            Ok(BindingFacts::from_object(&binding, binding_kind)
                .map(Projection::Binding)
                .unwrap_or(Projection::Ignored))
        }
    }
}

type BindingId = (BindingKind, Arc<str>, Arc<str>);
/// GitLab identity -> names of the RoleBindings (of one namespace) that name it.
type IdentityBindings = HashMap<Box<str>, BTreeSet<Arc<str>>>;
type BindingSet = HashMap<BindingId, Arc<BindingFacts>>;

/// The RBAC index inside [`super::MemoryView`].
#[derive(Default)]
pub struct RbacIndex {
    /// Label keys and values, namespaces: the same few strings over and over.
    interned: HashSet<Arc<str>>,
    /// Offending rules: charts install the same rules in many roles.
    interned_rules: HashSet<Arc<PolicyRule>>,
    /// Interned entries after the last sweep.
    swept_at: usize,
    roles: HashMap<Arc<str>, HashMap<Arc<str>, Arc<RoleFacts>>>,
    cluster_roles: HashMap<Arc<str>, Arc<RoleFacts>>,
    /// label key -> label value -> ClusterRoles carrying it.
    cluster_roles_by_label: LabelIndex,
    /// ClusterRoles with an aggregationRule (a handful in any cluster).
    aggregating: BTreeSet<Arc<str>>,
    /// ClusterRole name -> bindings (of both kinds) that refer to it.
    cluster_role_bindings: HashMap<Arc<str>, BindingSet>,
    /// namespace -> Role name -> RoleBindings that refer to it.
    role_bindings: HashMap<Arc<str>, HashMap<Arc<str>, BindingSet>>,
    /// Where each binding is filed, to move or drop it.
    binding_roles: HashMap<BindingId, RoleKey>,
    /// namespace -> GitLab identity that RoleBindings there name -> those RoleBindings.
    gitlab_in_namespace: HashMap<Arc<str>, IdentityBindings>,
}

impl RbacIndex {
    fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(existing) = self.interned.get(s) {
            return existing.clone();
        }
        let arc: Arc<str> = Arc::from(s);
        self.interned.insert(arc.clone());
        arc
    }

    fn intern_rules(&mut self, summary: &mut RuleSummary) {
        for example in &mut summary.examples {
            match self.interned_rules.get(&example.rule) {
                Some(existing) => example.rule = existing.clone(),
                None => {
                    self.interned_rules.insert(example.rule.clone());
                }
            }
        }
    }

    /// Drops interned values nothing refers to any more, so that churn (roles and
    /// namespaces coming and going) does not grow the tables forever.
    fn sweep(&mut self) {
        let size = self.interned.len() + self.interned_rules.len();
        if size > SWEEP_GROWTH * self.swept_at.max(1024) {
            self.interned.retain(|s| Arc::strong_count(s) > 1);
            self.interned_rules.retain(|r| Arc::strong_count(r) > 1);
            self.swept_at = self.interned.len() + self.interned_rules.len();
        }
    }

    pub fn apply(&mut self, projection: Projection) {
        self.sweep();
        match projection {
            Projection::Role {
                namespace,
                name,
                mut facts,
            } => {
                self.intern_rules(&mut facts.summary);
                let namespace = self.intern(&namespace);
                self.roles
                    .entry(namespace)
                    .or_default()
                    .insert(Arc::from(name.as_str()), Arc::new(facts));
            }
            Projection::ClusterRole { name, mut facts } => {
                let name: Arc<str> = Arc::from(name.as_str());
                self.remove_cluster_role(&name);
                self.intern_rules(&mut facts.summary);
                facts.labels = facts
                    .labels
                    .iter()
                    .map(|(k, v)| (self.intern(k), self.intern(v)))
                    .collect();
                for (k, v) in facts.labels.iter() {
                    self.cluster_roles_by_label
                        .entry(k.clone())
                        .or_default()
                        .entry(v.clone())
                        .or_default()
                        .insert(name.clone());
                }
                if facts.aggregation.is_some() {
                    self.aggregating.insert(name.clone());
                }
                self.cluster_roles.insert(name, Arc::new(facts));
            }
            Projection::Binding(mut facts) => {
                if let Some(ns) = &facts.namespace {
                    facts.namespace = Some(self.intern(ns));
                }
                if let RoleKey::Role { namespace, name } = &facts.role {
                    facts.role = RoleKey::Role {
                        namespace: self.intern(namespace),
                        name: name.clone(),
                    };
                }
                let id: BindingId = (
                    facts.kind,
                    facts.namespace.clone().unwrap_or_else(|| self.intern("")),
                    facts.name.clone(),
                );
                self.remove_binding(&id);
                self.binding_roles.insert(id.clone(), facts.role.clone());
                if let Some(ns) = &facts.namespace {
                    for subject in gitlab_names(&facts.subjects) {
                        self.gitlab_in_namespace
                            .entry(ns.clone())
                            .or_default()
                            .entry(subject.into())
                            .or_default()
                            .insert(facts.name.clone());
                    }
                }
                let set = match &facts.role {
                    RoleKey::ClusterRole { name } => {
                        self.cluster_role_bindings.entry(name.clone()).or_default()
                    }
                    RoleKey::Role { namespace, name } => self
                        .role_bindings
                        .entry(namespace.clone())
                        .or_default()
                        .entry(name.clone())
                        .or_default(),
                };
                set.insert(id, Arc::new(facts));
            }
            Projection::Ignored => {}
        }
    }

    /// Forgets an object; `kind` is one of the four RBAC kinds.
    pub fn delete(&mut self, kind: &str, namespace: Option<&str>, name: &str) {
        match kind {
            "Role" => {
                let ns = namespace.unwrap_or_default();
                if let Some(by_name) = self.roles.get_mut(ns) {
                    by_name.remove(name);
                    if by_name.is_empty() {
                        self.roles.remove(ns);
                    }
                }
            }
            "ClusterRole" => self.remove_cluster_role(name),
            _ => {
                if let Some(kind) = BindingKind::parse(kind) {
                    let namespace = match kind {
                        BindingKind::RoleBinding => namespace,
                        BindingKind::ClusterRoleBinding => None,
                    };
                    self.remove_binding(&binding_id(kind, namespace, name));
                }
            }
        }
    }

    fn remove_cluster_role(&mut self, name: &str) {
        let Some(old) = self.cluster_roles.remove(name) else {
            return;
        };
        for (k, v) in old.labels.iter() {
            if let Some(values) = self.cluster_roles_by_label.get_mut(k) {
                if let Some(names) = values.get_mut(v) {
                    names.remove(name);
                    if names.is_empty() {
                        values.remove(v);
                    }
                }
                if values.is_empty() {
                    self.cluster_roles_by_label.remove(k);
                }
            }
        }
        self.aggregating.remove(name);
    }

    fn remove_binding(&mut self, id: &BindingId) {
        let Some(role) = self.binding_roles.remove(id) else {
            return;
        };
        let removed = match &role {
            RoleKey::ClusterRole { name } => self
                .cluster_role_bindings
                .get(name)
                .and_then(|set| set.get(id)),
            RoleKey::Role { namespace, name } => self
                .role_bindings
                .get(namespace)
                .and_then(|by_name| by_name.get(name))
                .and_then(|set| set.get(id)),
        }
        .cloned();
        if let Some(facts) = removed
            && let Some(ns) = &facts.namespace
            && let Some(by_subject) = self.gitlab_in_namespace.get_mut(ns)
        {
            for subject in gitlab_names(&facts.subjects) {
                if let Some(bindings) = by_subject.get_mut(subject) {
                    bindings.remove(&facts.name);
                    if bindings.is_empty() {
                        by_subject.remove(subject);
                    }
                }
            }
            if by_subject.is_empty() {
                self.gitlab_in_namespace.remove(ns);
            }
        }
        match role {
            RoleKey::ClusterRole { name } => {
                if let Some(set) = self.cluster_role_bindings.get_mut(&name) {
                    set.remove(id);
                    if set.is_empty() {
                        self.cluster_role_bindings.remove(&name);
                    }
                }
            }
            RoleKey::Role { namespace, name } => {
                if let Some(by_name) = self.role_bindings.get_mut(&namespace) {
                    if let Some(set) = by_name.get_mut(&name) {
                        set.remove(id);
                        if set.is_empty() {
                            by_name.remove(&name);
                        }
                    }
                    if by_name.is_empty() {
                        self.role_bindings.remove(&namespace);
                    }
                }
            }
        }
    }

    pub fn role(&self, namespace: &str, name: &str) -> Option<Arc<RoleFacts>> {
        self.roles.get(namespace)?.get(name).cloned()
    }

    pub fn cluster_role(&self, name: &str) -> Option<Arc<RoleFacts>> {
        self.cluster_roles.get(name).cloned()
    }

    /// The ClusterRoles a selector matches, by name. Candidates come from the label index
    /// of the selector's most selective positive requirement; only a selector without any
    /// (empty, or made of NotIn / DoesNotExist alone, which no aggregated role in practice
    /// uses) walks every ClusterRole.
    pub fn cluster_roles_matching(&self, selector: &LabelSelector) -> NamedRoles {
        let mut candidates: Option<BTreeSet<Arc<str>>> = None;
        let mut narrow = |set: BTreeSet<Arc<str>>| {
            if candidates.as_ref().is_none_or(|c| set.len() < c.len()) {
                candidates = Some(set);
            }
        };
        for (k, v) in &selector.match_labels {
            narrow(self.with_label(k, |value| value == v.as_str()));
        }
        for req in &selector.match_expressions {
            match req.operator {
                SelectorOperator::In => {
                    narrow(self.with_label(&req.key, |value| req.values.iter().any(|x| x == value)))
                }
                SelectorOperator::Exists => narrow(self.with_label(&req.key, |_| true)),
                SelectorOperator::NotIn | SelectorOperator::DoesNotExist => {}
            }
        }
        let mut found = Vec::new();
        let mut check = |name: &Arc<str>, facts: &Arc<RoleFacts>| {
            if selector_matches(selector, |k| facts.label(k)) {
                found.push((name.clone(), facts.clone()));
            }
        };
        match candidates {
            Some(names) => {
                for name in &names {
                    if let Some(facts) = self.cluster_roles.get(name) {
                        check(name, facts);
                    }
                }
            }
            None => {
                for (name, facts) in &self.cluster_roles {
                    check(name, facts);
                }
                found.sort_by(|a, b| a.0.cmp(&b.0));
            }
        }
        found
    }

    fn with_label(&self, key: &str, value_ok: impl Fn(&str) -> bool) -> BTreeSet<Arc<str>> {
        self.cluster_roles_by_label
            .get(key)
            .map(|values| {
                values
                    .iter()
                    .filter(|(v, _)| value_ok(v))
                    .flat_map(|(_, names)| names.iter().cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The ClusterRoles whose aggregationRule picks up a ClusterRole with these labels.
    pub fn cluster_roles_aggregating(&self, labels: &BTreeMap<String, String>) -> NamedRoles {
        self.aggregating
            .iter()
            .filter_map(|name| Some((name, self.cluster_roles.get(name)?)))
            .filter(|(_, facts)| {
                facts.aggregation.as_ref().is_some_and(|selectors| {
                    selectors
                        .iter()
                        .any(|s| selector_matches(s, |k| labels.get(k).map(String::as_str)))
                })
            })
            .map(|(name, facts)| (name.clone(), facts.clone()))
            .collect()
    }

    /// The bindings whose roleRef is `role`.
    pub fn bindings_to(&self, role: &RoleKey) -> Vec<Arc<BindingFacts>> {
        let set = match role {
            RoleKey::ClusterRole { name } => self.cluster_role_bindings.get(name),
            RoleKey::Role { namespace, name } => self
                .role_bindings
                .get(namespace)
                .and_then(|by_name| by_name.get(name)),
        };
        let mut bindings: Vec<Arc<BindingFacts>> = set
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default();
        bindings
            .sort_by(|a, b| (a.kind, &a.namespace, &a.name).cmp(&(b.kind, &b.namespace, &b.name)));
        bindings
    }

    /// Every binding that names this subject, sorted; scans every binding.
    pub fn bindings_naming(
        &self,
        kind: &str,
        name: &str,
        namespace: Option<&str>,
    ) -> Vec<Arc<BindingFacts>> {
        let mut found: Vec<Arc<BindingFacts>> = self
            .cluster_role_bindings
            .values()
            .chain(
                self.role_bindings
                    .values()
                    .flat_map(|by_name| by_name.values()),
            )
            .flat_map(|set| set.values())
            .filter(|b| {
                b.subjects.iter().any(|s| {
                    &*s.kind == kind
                        && &*s.name == name
                        && (kind != "ServiceAccount" || s.namespace.as_deref() == namespace)
                })
            })
            .cloned()
            .collect();
        found.sort_by(|a, b| (a.kind, &a.namespace, &a.name).cmp(&(b.kind, &b.namespace, &b.name)));
        found
    }

    /// A GitLab identity that a RoleBinding in `namespace` other than `except_binding` names,
    /// other than `except_identity` and the catch-all groups every job or user carries:
    /// `(identity, binding)`, or `None` when the namespace is that identity's alone.
    pub fn other_gitlab_identity_in(
        &self,
        namespace: &str,
        except_identity: &str,
        except_binding: &str,
    ) -> Option<(String, String)> {
        let by_subject = self.gitlab_in_namespace.get(namespace)?;
        by_subject.iter().find_map(|(subject, bindings)| {
            if &**subject == except_identity
                || Identity::parse(subject).is_some_and(|i| i.is_catch_all())
            {
                return None;
            }
            bindings
                .iter()
                .find(|b| b.as_ref() != except_binding)
                .map(|b| (subject.to_string(), b.to_string()))
        })
    }
}

/// The names of a binding's subjects that are GitLab identities (as User or Group).
fn gitlab_names(subjects: &[Subject]) -> impl Iterator<Item = &str> {
    subjects
        .iter()
        .filter(|s| matches!(&*s.kind, "User" | "Group") && Identity::parse(&s.name).is_some())
        .map(|s| &*s.name)
}

fn binding_id(kind: BindingKind, namespace: Option<&str>, name: &str) -> BindingId {
    (
        kind,
        Arc::from(namespace.unwrap_or_default()),
        Arc::from(name),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rbac::GROUP;
    use serde_json::{Value, json};

    /// [`super::project`] of an object written as a value.
    fn project(kind: &str, object: &Value) -> Result<Projection, String> {
        let json = serde_json::value::to_raw_value(object).expect("a value is JSON");
        super::project(kind, &Indexed::new(&json))
    }

    fn cluster_role(name: &str, labels: Value, rules: Value) -> Projection {
        project(
            "ClusterRole",
            &json!({"metadata": {"name": name, "labels": labels}, "rules": rules}),
        )
        .expect("projects")
    }

    fn binding(
        kind: &str,
        ns: Option<&str>,
        name: &str,
        role_kind: &str,
        role: &str,
    ) -> Projection {
        project(
            kind,
            &json!({
                "metadata": {"name": name, "namespace": ns},
                "roleRef": {"apiGroup": GROUP, "kind": role_kind, "name": role},
                "subjects": [{"kind": "Group", "name": "gitlab:ci_job"}]
            }),
        )
        .expect("projects")
    }

    fn selector(yaml: &str) -> LabelSelector {
        serde_yaml_ng::from_str(yaml).expect("selector")
    }

    #[test]
    fn bindings_are_found_by_the_role_they_refer_to() {
        let mut index = RbacIndex::default();
        index.apply(binding(
            "ClusterRoleBinding",
            None,
            "a",
            "ClusterRole",
            "view",
        ));
        index.apply(binding(
            "RoleBinding",
            Some("team"),
            "b",
            "ClusterRole",
            "view",
        ));
        index.apply(binding(
            "RoleBinding",
            Some("team"),
            "c",
            "Role",
            "deployer",
        ));
        let view = RoleKey::ClusterRole {
            name: "view".into(),
        };
        let deployer = RoleKey::Role {
            namespace: "team".into(),
            name: "deployer".into(),
        };
        assert_eq!(index.bindings_to(&view).len(), 2);
        assert_eq!(index.bindings_to(&deployer).len(), 1);

        // A binding that moves to another role is filed under the new one only.
        index.apply(binding(
            "RoleBinding",
            Some("team"),
            "b",
            "Role",
            "deployer",
        ));
        assert_eq!(index.bindings_to(&view).len(), 1);
        assert_eq!(index.bindings_to(&deployer).len(), 2);

        index.delete("RoleBinding", Some("team"), "b");
        index.delete("ClusterRoleBinding", None, "a");
        assert!(index.bindings_to(&view).is_empty());
        assert_eq!(index.bindings_to(&deployer).len(), 1);
    }

    #[test]
    fn aggregation_selectors_are_answered_from_the_label_index() {
        let mut index = RbacIndex::default();
        let to_view = json!({"rbac.authorization.k8s.io/aggregate-to-view": "true"});
        index.apply(cluster_role("flux-view", to_view.clone(), json!([])));
        index.apply(cluster_role("other", json!({"team": "a"}), json!([])));
        let agg = selector("matchLabels: {rbac.authorization.k8s.io/aggregate-to-view: 'true'}");
        let names: Vec<String> = index
            .cluster_roles_matching(&agg)
            .into_iter()
            .map(|(n, _)| n.to_string())
            .collect();
        assert_eq!(names, ["flux-view"]);

        let expr = selector("matchExpressions: [{key: team, operator: In, values: [a, b]}]");
        assert_eq!(index.cluster_roles_matching(&expr).len(), 1);
        let negative = selector("matchExpressions: [{key: team, operator: DoesNotExist}]");
        assert_eq!(index.cluster_roles_matching(&negative).len(), 1);

        // Relabelling removes the role from its old label.
        index.apply(cluster_role("flux-view", json!({}), json!([])));
        assert!(index.cluster_roles_matching(&agg).is_empty());
        index.delete("ClusterRole", None, "other");
        assert!(index.cluster_roles_matching(&expr).is_empty());
        assert!(index.cluster_roles_by_label.is_empty());
    }

    #[test]
    fn aggregating_roles_are_found_by_the_labels_they_pick_up() {
        let mut index = RbacIndex::default();
        index.apply(
            project(
                "ClusterRole",
                &json!({
                    "metadata": {"name": "view"},
                    "aggregationRule": {"clusterRoleSelectors": [
                        {"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}}
                    ]},
                    "rules": null
                }),
            )
            .expect("projects"),
        );
        let labels: BTreeMap<String, String> = [(
            "rbac.authorization.k8s.io/aggregate-to-view".to_string(),
            "true".to_string(),
        )]
        .into();
        let found = index.cluster_roles_aggregating(&labels);
        assert_eq!(found.len(), 1);
        assert!(index.cluster_roles_aggregating(&BTreeMap::new()).is_empty());
    }

    #[test]
    fn churn_does_not_grow_the_interned_tables_forever() {
        let mut index = RbacIndex::default();
        for i in 0..20_000 {
            let name = format!("role-{i}");
            index.apply(
                project(
                    "Role",
                    &json!({
                        "metadata": {"name": name, "namespace": format!("ns-{i}")},
                        "rules": [{"apiGroups": [""], "resources": ["pods/exec"], "verbs": [format!("verb-{i}"), "create"]}]
                    }),
                )
                .expect("projects"),
            );
            index.delete("Role", Some(&format!("ns-{i}")), &name);
        }
        assert!(index.roles.is_empty());
        assert!(index.interned.len() + index.interned_rules.len() <= 2 * 1024 + 1);
    }

    #[test]
    fn the_gitlab_identities_of_a_namespace_are_indexed() {
        let named = |ns: &str, name: &str, who: &[&str]| {
            let subjects: Vec<Value> = who
                .iter()
                .map(|w| json!({"kind": "Group", "name": w}))
                .collect();
            project(
                "RoleBinding",
                &json!({
                    "metadata": {"name": name, "namespace": ns},
                    "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": "admin"},
                    "subjects": subjects
                }),
            )
            .expect("projects")
        };
        let mut index = RbacIndex::default();
        let env = "gitlab:project_env:42:review";
        index.apply(named("review-42", "bind", &[env, "devs"]));
        index.apply(named("review-42", "jobs-view", &["gitlab:ci_job"]));
        assert_eq!(
            index.other_gitlab_identity_in("review-42", env, "bind"),
            None
        );
        index.apply(named("review-42", "other", &["gitlab:project_env:7:prod"]));
        assert_eq!(
            index.other_gitlab_identity_in("review-42", env, "bind"),
            Some(("gitlab:project_env:7:prod".into(), "other".into()))
        );
        // The binding being judged does not count against itself.
        assert_eq!(
            index.other_gitlab_identity_in("review-42", "gitlab:project_env:7:prod", "bind"),
            None
        );
        index.delete("RoleBinding", Some("review-42"), "other");
        assert_eq!(
            index.other_gitlab_identity_in("review-42", env, "bind"),
            None
        );
        // A binding that moves to other subjects is filed under the new ones only.
        index.apply(named("review-42", "bind", &["devs"]));
        index.apply(named("review-42", "jobs-view", &["devs"]));
        assert!(index.gitlab_in_namespace.is_empty());
    }
}
