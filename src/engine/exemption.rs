//! Exemptions at work: whether an entry of the configuration's `exemptions` matches a request.
//! The entries themselves (and their validation) are the configuration's; matching them
//! against a request is the engine's.

use std::collections::BTreeMap;

use crate::admission::Request;
use crate::config::Exemption;

/// Whether the request matches every criterion this entry sets. `namespace_labels` is
/// asked only when a selector is set; an unknown namespace never matches (fail closed).
pub fn matches(
    exemption: &Exemption,
    request: &Request<'_>,
    namespace_labels: impl FnOnce(&str) -> Option<BTreeMap<String, String>>,
) -> bool {
    let namespace = request.namespace().unwrap_or("");
    if !exemption.namespaces.is_empty() && !exemption.namespaces.iter().any(|n| n == namespace) {
        return false;
    }
    if !exemption.objects.is_empty()
        && !exemption.objects.iter().any(|o| {
            o.kind.as_deref().is_none_or(|k| k == request.kind.kind)
                && o.namespace.as_deref().is_none_or(|n| n == namespace)
                && o.name.as_deref().is_none_or(|n| n == request.name())
        })
    {
        return false;
    }
    if !exemption.users.is_empty()
        && !exemption
            .users
            .iter()
            .any(|u| u == &request.user_info.username)
    {
        return false;
    }
    if !exemption.groups.is_empty()
        && !request
            .user_info
            .groups
            .iter()
            .any(|g| exemption.groups.iter().any(|e| e == g))
    {
        return false;
    }
    if let Some(selector) = &exemption.namespace_selector {
        if namespace.is_empty() {
            return false;
        }
        match namespace_labels(namespace) {
            Some(labels) if selector.matches(&labels) => {}
            _ => return false,
        }
    }
    true
}
