//! Kubernetes label selectors (`matchLabels` and `matchExpressions`), as the configuration's
//! exemptions and ClusterRoles' aggregation rules write them, with the API server's semantics.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A Kubernetes label selector (`matchLabels` and `matchExpressions`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LabelSelectorRequirement {
    pub key: String,
    pub operator: SelectorOperator,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
pub enum SelectorOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl LabelSelector {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|req| {
                let value = labels.get(&req.key);
                match req.operator {
                    SelectorOperator::In => value.is_some_and(|v| req.values.contains(v)),
                    SelectorOperator::NotIn => !value.is_some_and(|v| req.values.contains(v)),
                    SelectorOperator::Exists => value.is_some(),
                    SelectorOperator::DoesNotExist => value.is_none(),
                }
            })
    }
}

/// Whether a label selector matches labels read through `get`, with Kubernetes semantics
/// (an empty selector matches everything).
pub fn selector_matches<'a>(
    selector: &LabelSelector,
    get: impl Fn(&str) -> Option<&'a str>,
) -> bool {
    selector
        .match_labels
        .iter()
        .all(|(k, v)| get(k) == Some(v.as_str()))
        && selector.match_expressions.iter().all(|req| {
            let value = get(&req.key);
            match req.operator {
                SelectorOperator::In => value.is_some_and(|v| req.values.iter().any(|x| x == v)),
                SelectorOperator::NotIn => {
                    !value.is_some_and(|v| req.values.iter().any(|x| x == v))
                }
                SelectorOperator::Exists => value.is_some(),
                SelectorOperator::DoesNotExist => value.is_none(),
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_selectors_follow_kubernetes_semantics() {
        let selector: LabelSelector = serde_yaml_ng::from_str(
            "matchLabels: {team: a}\nmatchExpressions:\n- {key: env, operator: NotIn, values: [prod]}\n- {key: owner, operator: Exists}\n",
        )
        .expect("selector");
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(selector.matches(&labels(&[("team", "a"), ("owner", "x")])));
        assert!(!selector.matches(&labels(&[("team", "a"), ("owner", "x"), ("env", "prod")])));
        assert!(!selector.matches(&labels(&[("team", "a")])));
    }
}
