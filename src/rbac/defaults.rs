//! Kubernetes' default user-facing ClusterRoles (`cluster-admin`, `admin`, `edit`, `view`)
//! and the `system:aggregate-to-*` roles that carry the rules of the aggregated ones, as the
//! API server bootstraps them. Bindings to these roles are judged even when the cluster view
//! does not hold them (yet), as every cluster has them.

use std::sync::{Arc, LazyLock};

use serde::Deserialize;

use super::objects::{RoleFacts, RoleObject};

/// An excerpt of the bootstrap policy golden file of kubernetes/kubernetes (see its header).
const DEFAULT_CLUSTER_ROLES_YAML: &str = include_str!("default-cluster-roles.yaml");

#[derive(Deserialize)]
struct List {
    items: Vec<RoleObject>,
}

static DEFAULT_CLUSTER_ROLES: LazyLock<Vec<(Arc<str>, Arc<RoleFacts>)>> = LazyLock::new(|| {
    // The file is part of the binary and checked by a test; an empty list would only make
    // bindings to default roles unresolvable, which fails closed.
    let list: List =
        serde_yaml_ng::from_str(DEFAULT_CLUSTER_ROLES_YAML).unwrap_or(List { items: Vec::new() });
    list.items
        .iter()
        .map(|role| {
            (
                Arc::from(role.metadata.name.as_str()),
                Arc::new(RoleFacts::from_object(role, true)),
            )
        })
        .collect()
});

/// Every default ClusterRole this module knows.
pub fn default_cluster_roles() -> &'static [(Arc<str>, Arc<RoleFacts>)] {
    &DEFAULT_CLUSTER_ROLES
}

/// A default ClusterRole by name.
pub fn default_cluster_role(name: &str) -> Option<&'static Arc<RoleFacts>> {
    DEFAULT_CLUSTER_ROLES
        .iter()
        .find(|(n, _)| n.as_ref() == name)
        .map(|(_, facts)| facts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rbac::Reason;

    #[test]
    fn the_embedded_defaults_parse() {
        let names: Vec<&str> = default_cluster_roles()
            .iter()
            .map(|(n, _)| n.as_ref())
            .collect();
        assert_eq!(
            names,
            [
                "admin",
                "cluster-admin",
                "edit",
                "system:aggregate-to-admin",
                "system:aggregate-to-edit",
                "system:aggregate-to-view",
                "view"
            ]
        );
        let admin = default_cluster_role("admin").expect("admin");
        assert!(admin.aggregation.is_some());
        assert!(
            admin.summary.reasons.is_empty(),
            "admin's own rules are null"
        );
        let cluster_admin = default_cluster_role("cluster-admin").expect("cluster-admin");
        assert!(cluster_admin.summary.reasons.contains(Reason::Escalate));
        assert!(
            cluster_admin
                .summary
                .reasons
                .contains(Reason::AllNonResourceUrls)
        );
        let edit_rules = default_cluster_role("system:aggregate-to-edit").expect("edit rules");
        assert!(edit_rules.summary.reasons.contains(Reason::PodsExec));
        assert!(
            edit_rules
                .summary
                .reasons
                .contains(Reason::ImpersonateServiceAccount)
        );
        let view_rules = default_cluster_role("system:aggregate-to-view").expect("view rules");
        assert!(view_rules.summary.reasons.is_empty(), "view only reads");
    }
}
