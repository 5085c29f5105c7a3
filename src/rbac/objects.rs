//! Roles and bindings: typed views of Role, ClusterRole, RoleBinding and ClusterRoleBinding
//! objects, and the facts fluxgate keeps of each ([`RoleFacts`], [`BindingFacts`]): what is
//! broad in a role, its labels and aggregation rule; whom a binding grants which role. The
//! cluster view indexes them; policies read them of the request's own object too.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::Deserialize;

use super::{GROUP, PolicyRule, RuleSummary, null_as_default};
use crate::selector::LabelSelector;

/// Labels, sorted by key.
pub type Labels = Box<[(Arc<str>, Arc<str>)]>;

/// ClusterRoles with their names, sorted by name.
pub type NamedRoles = Vec<(Arc<str>, Arc<RoleFacts>)>;

/// A Role or ClusterRole as the view keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleFacts {
    /// Its own `rules`, analysed.
    pub summary: RuleSummary,
    /// The selectors of a ClusterRole's `aggregationRule`.
    pub aggregation: Option<Vec<LabelSelector>>,
    /// A ClusterRole's labels (which aggregated ClusterRoles pick it up); empty for Roles.
    pub labels: Labels,
}

impl RoleFacts {
    pub fn from_object(object: &RoleObject, cluster_role: bool) -> RoleFacts {
        let labels = if cluster_role {
            labels_of(&object.metadata.labels)
        } else {
            Box::default()
        };
        RoleFacts {
            summary: RuleSummary::of_rules(&object.rules),
            aggregation: object
                .aggregation_rule
                .as_ref()
                .filter(|_| cluster_role)
                .map(|a| a.cluster_role_selectors.clone()),
            labels,
        }
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .binary_search_by(|(k, _)| k.as_ref().cmp(key))
            .ok()
            .map(|i| self.labels[i].1.as_ref())
    }
}

fn labels_of(labels: &BTreeMap<String, String>) -> Labels {
    labels
        .iter()
        .map(|(k, v)| (Arc::from(k.as_str()), Arc::from(v.as_str())))
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BindingKind {
    RoleBinding,
    ClusterRoleBinding,
}

impl BindingKind {
    pub fn parse(kind: &str) -> Option<BindingKind> {
        match kind {
            "RoleBinding" => Some(BindingKind::RoleBinding),
            "ClusterRoleBinding" => Some(BindingKind::ClusterRoleBinding),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BindingKind::RoleBinding => "RoleBinding",
            BindingKind::ClusterRoleBinding => "ClusterRoleBinding",
        }
    }
}

/// What a binding's `roleRef` points at.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RoleKey {
    Role { namespace: Arc<str>, name: Arc<str> },
    ClusterRole { name: Arc<str> },
}

impl RoleKey {
    pub fn name(&self) -> &str {
        match self {
            RoleKey::Role { name, .. } | RoleKey::ClusterRole { name } => name,
        }
    }
}

impl fmt::Display for RoleKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RoleKey::Role { namespace, name } => write!(f, "Role {namespace}/{name}"),
            RoleKey::ClusterRole { name } => write!(f, "ClusterRole {name}"),
        }
    }
}

/// One subject of a binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// `User`, `Group` or `ServiceAccount`.
    pub kind: Box<str>,
    pub name: Box<str>,
    /// ServiceAccounts only.
    pub namespace: Option<Box<str>>,
}

impl Subject {
    pub fn is_service_account(&self, namespace: &str, name: &str) -> bool {
        &*self.kind == "ServiceAccount"
            && &*self.name == name
            && self.namespace.as_deref() == Some(namespace)
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) if &*self.kind == "ServiceAccount" => {
                write!(f, "ServiceAccount {ns}/{}", self.name)
            }
            _ => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// A RoleBinding or ClusterRoleBinding as the view keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingFacts {
    pub kind: BindingKind,
    /// RoleBindings only.
    pub namespace: Option<Arc<str>>,
    pub name: Arc<str>,
    pub role: RoleKey,
    pub subjects: Box<[Subject]>,
}

impl BindingFacts {
    /// `None` when the roleRef is not a Role or ClusterRole of `rbac.authorization.k8s.io`,
    /// or a ClusterRoleBinding refers to a Role: the API server refuses such bindings.
    pub fn from_object(object: &BindingObject, kind: BindingKind) -> Option<BindingFacts> {
        let namespace = match kind {
            BindingKind::RoleBinding => Some(Arc::from(
                object.metadata.namespace.as_deref().unwrap_or_default(),
            )),
            BindingKind::ClusterRoleBinding => None,
        };
        let role = role_key(&object.role_ref, namespace.as_ref())?;
        let subjects: Box<[Subject]> = object
            .subjects
            .iter()
            .map(|s| Subject {
                kind: s.kind.as_str().into(),
                name: s.name.as_str().into(),
                // The authorizer reads a RoleBinding's ServiceAccount without a namespace
                // as one of the binding's namespace.
                namespace: match (s.namespace.as_deref(), &namespace) {
                    (Some(ns), _) if !ns.is_empty() => Some(Box::from(ns)),
                    (_, Some(binding_ns)) if s.kind == "ServiceAccount" => {
                        Some(Box::from(binding_ns.as_ref()))
                    }
                    _ => None,
                },
            })
            .collect();
        Some(BindingFacts {
            kind,
            namespace,
            name: Arc::from(object.metadata.name.as_str()),
            role,
            subjects,
        })
    }

    /// Why the API server would refuse this binding's subjects, if it would: a subject kind
    /// other than User, Group and ServiceAccount, an empty name, a ServiceAccount with an API
    /// group, a User or Group of another API group. A ServiceAccount without a namespace is
    /// not refused here: kustomize fills it in from its `namespace:` (raw bases leave it
    /// out), and in a RoleBinding the authorizer reads it as the binding's namespace.
    pub fn invalid_subject(object: &BindingObject) -> Option<String> {
        object.subjects.iter().enumerate().find_map(|(i, s)| {
            let group = s.api_group.as_deref().unwrap_or_default();
            let why = match s.kind.as_str() {
                _ if s.name.is_empty() => "has no name".to_string(),
                "User" | "Group" if !group.is_empty() && group != GROUP => {
                    format!("is a {} of apiGroup {group:?}, not {GROUP}", s.kind)
                }
                "ServiceAccount" if !group.is_empty() => {
                    format!("is a ServiceAccount with apiGroup {group:?} (it has none)")
                }
                "User" | "Group" | "ServiceAccount" => return None,
                other => format!("has kind {other:?}, not User, Group or ServiceAccount"),
            };
            Some(format!("subjects[{i}] {why}"))
        })
    }
}

impl fmt::Display for BindingFacts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A RoleBinding without metadata.namespace (a manifest fluxgate check reads) is keyed
        // by the empty namespace, which names nothing.
        match self.namespace.as_deref().filter(|ns| !ns.is_empty()) {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind.as_str(), self.name),
            None => write!(f, "{} {}", self.kind.as_str(), self.name),
        }
    }
}

fn role_key(role_ref: &RoleRefObject, namespace: Option<&Arc<str>>) -> Option<RoleKey> {
    if role_ref.api_group != GROUP || role_ref.name.is_empty() {
        return None;
    }
    match (role_ref.kind.as_str(), namespace) {
        ("ClusterRole", _) => Some(RoleKey::ClusterRole {
            name: Arc::from(role_ref.name.as_str()),
        }),
        ("Role", Some(ns)) => Some(RoleKey::Role {
            namespace: ns.clone(),
            name: Arc::from(role_ref.name.as_str()),
        }),
        _ => None,
    }
}

/// The metadata fields the RBAC projections read.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ObjectMeta {
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
}

/// A Role or ClusterRole, typed down to what is judged.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleObject {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "null_as_default")]
    pub rules: Vec<PolicyRule>,
    #[serde(default)]
    pub aggregation_rule: Option<AggregationRule>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AggregationRule {
    #[serde(default, deserialize_with = "null_as_default")]
    pub cluster_role_selectors: Vec<LabelSelector>,
}

/// A RoleBinding or ClusterRoleBinding, typed down to what is judged.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BindingObject {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "null_as_default")]
    pub subjects: Vec<SubjectObject>,
    pub role_ref: RoleRefObject,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubjectObject {
    pub kind: String,
    #[serde(default)]
    pub api_group: Option<String>,
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleRefObject {
    #[serde(default)]
    pub api_group: String,
    pub kind: String,
    pub name: String,
}
