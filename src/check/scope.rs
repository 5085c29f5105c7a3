//! Whether a kind lives in a namespace: the API server drops `metadata.namespace` from a
//! cluster-scoped object (a ClusterRoleBinding is the same binding whatever namespace its
//! manifest names), and puts a namespaced object without one in the namespace of the request
//! (kubectl's context, or the `targetNamespace` of the Flux Kustomization that applies it).
//! `fluxgate check` reads manifests the same way, so that names and messages say what the
//! cluster would hold.
//!
//! Built-in kinds are known here; custom kinds from the CustomResourceDefinitions of the
//! manifest set and the cluster state. Anything else is left as its manifest says.

use std::collections::HashMap;

use crate::report::Scope;

/// Built-in and well-known cluster-scoped kinds, by API group.
const CLUSTER_SCOPED: &[(&str, &str)] = &[
    ("", "Namespace"),
    ("", "Node"),
    ("", "PersistentVolume"),
    ("", "ComponentStatus"),
    ("rbac.authorization.k8s.io", "ClusterRole"),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
    ("apiextensions.k8s.io", "CustomResourceDefinition"),
    ("apiregistration.k8s.io", "APIService"),
    (
        "admissionregistration.k8s.io",
        "MutatingWebhookConfiguration",
    ),
    (
        "admissionregistration.k8s.io",
        "ValidatingWebhookConfiguration",
    ),
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"),
    (
        "admissionregistration.k8s.io",
        "ValidatingAdmissionPolicyBinding",
    ),
    ("admissionregistration.k8s.io", "MutatingAdmissionPolicy"),
    (
        "admissionregistration.k8s.io",
        "MutatingAdmissionPolicyBinding",
    ),
    ("storage.k8s.io", "StorageClass"),
    ("storage.k8s.io", "CSIDriver"),
    ("storage.k8s.io", "CSINode"),
    ("storage.k8s.io", "VolumeAttachment"),
    ("storage.k8s.io", "VolumeAttributesClass"),
    ("scheduling.k8s.io", "PriorityClass"),
    ("node.k8s.io", "RuntimeClass"),
    ("networking.k8s.io", "IngressClass"),
    ("networking.k8s.io", "IPAddress"),
    ("networking.k8s.io", "ServiceCIDR"),
    ("certificates.k8s.io", "CertificateSigningRequest"),
    ("certificates.k8s.io", "ClusterTrustBundle"),
    ("flowcontrol.apiserver.k8s.io", "FlowSchema"),
    ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration"),
    ("policy", "PodSecurityPolicy"),
    ("gateway.networking.k8s.io", "GatewayClass"),
    ("cert-manager.io", "ClusterIssuer"),
    ("kyverno.io", "ClusterPolicy"),
    ("wgpolicyk8s.io", "ClusterPolicyReport"),
    ("templates.gatekeeper.sh", "ConstraintTemplate"),
];

/// Groups whose every kind is cluster-scoped (Gatekeeper's generated constraint kinds).
const CLUSTER_SCOPED_GROUPS: &[&str] = &["constraints.gatekeeper.sh", "mutations.gatekeeper.sh"];

/// Groups whose every kind is namespaced (Flux's toolkit and its operator).
const NAMESPACED_GROUPS: &[&str] = &[
    "source.toolkit.fluxcd.io",
    "kustomize.toolkit.fluxcd.io",
    "helm.toolkit.fluxcd.io",
    "notification.toolkit.fluxcd.io",
    "image.toolkit.fluxcd.io",
    "fluxcd.controlplane.io",
];

/// Built-in namespaced groups: every kind in them is namespaced but those listed above.
const BUILTIN_GROUPS: &[&str] = &[
    "",
    "apps",
    "batch",
    "autoscaling",
    "policy",
    "rbac.authorization.k8s.io",
    "networking.k8s.io",
    "discovery.k8s.io",
    "coordination.k8s.io",
    "events.k8s.io",
    "storage.k8s.io",
];

/// Kinds whose scope is known: the built-in table and the CustomResourceDefinitions read.
#[derive(Debug, Default)]
pub struct Scopes {
    /// Group, then kind: looked up with borrowed strings.
    custom: HashMap<String, HashMap<String, Scope>>,
}

impl Scopes {
    /// Learns a CustomResourceDefinition's kind and scope from its JSON; malformed ones are
    /// left to the API server to refuse.
    pub fn learn(&mut self, crd: &serde_json::value::RawValue) {
        #[derive(serde::Deserialize)]
        struct Crd {
            spec: Spec,
        }
        #[derive(serde::Deserialize)]
        struct Spec {
            group: String,
            names: Names,
            scope: String,
        }
        #[derive(serde::Deserialize)]
        struct Names {
            kind: String,
        }
        let Ok(crd) = serde_json::from_str::<Crd>(crd.get()) else {
            return;
        };
        let scope = match crd.spec.scope.as_str() {
            "Cluster" => Scope::Cluster,
            "Namespaced" => Scope::Namespaced,
            _ => return,
        };
        self.custom
            .entry(crd.spec.group)
            .or_default()
            .insert(crd.spec.names.kind, scope);
    }

    /// Whether an object is a CustomResourceDefinition [`Scopes::learn`] reads.
    pub fn is_crd(group: &str, kind: &str) -> bool {
        group == "apiextensions.k8s.io" && kind == "CustomResourceDefinition"
    }

    /// The scope of a kind, when known.
    pub fn of(&self, group: &str, kind: &str) -> Option<Scope> {
        if let Some(scope) = self.custom.get(group).and_then(|kinds| kinds.get(kind)) {
            return Some(*scope);
        }
        if CLUSTER_SCOPED.contains(&(group, kind)) || CLUSTER_SCOPED_GROUPS.contains(&group) {
            return Some(Scope::Cluster);
        }
        if NAMESPACED_GROUPS.contains(&group) || BUILTIN_GROUPS.contains(&group) {
            return Some(Scope::Namespaced);
        }
        match (group, kind) {
            ("cert-manager.io", _) | ("monitoring.coreos.com", _) => Some(Scope::Namespaced),
            ("kyverno.io", "Policy") | ("wgpolicyk8s.io", "PolicyReport") => {
                Some(Scope::Namespaced)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_kinds_and_learned_crds_have_their_scope() {
        let mut scopes = Scopes::default();
        assert_eq!(
            scopes.of("rbac.authorization.k8s.io", "ClusterRoleBinding"),
            Some(Scope::Cluster)
        );
        assert_eq!(
            scopes.of("rbac.authorization.k8s.io", "RoleBinding"),
            Some(Scope::Namespaced)
        );
        assert_eq!(scopes.of("", "ConfigMap"), Some(Scope::Namespaced));
        assert_eq!(scopes.of("", "Namespace"), Some(Scope::Cluster));
        assert_eq!(
            scopes.of("source.toolkit.fluxcd.io", "OCIRepository"),
            Some(Scope::Namespaced)
        );
        assert_eq!(scopes.of("example.com", "Widget"), None);
        let crd = serde_json::value::to_raw_value(&serde_json::json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "spec": {"group": "example.com", "names": {"kind": "Widget"}, "scope": "Cluster"}
        }))
        .expect("JSON");
        scopes.learn(&crd);
        assert_eq!(scopes.of("example.com", "Widget"), Some(Scope::Cluster));
    }
}
