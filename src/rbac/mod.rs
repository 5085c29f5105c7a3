//! RBAC rule breadth: which rules of a Role or ClusterRole hand out power that no GitLab
//! CI/CD job or dashboard user should hold, and which hand out impersonation (the key to every
//! identity the GitLab agent impersonates).
//!
//! Matching follows the Kubernetes RBAC authorizer: `*` matches every verb, API group and
//! resource, `*/<subresource>` matches that subresource of every resource, and a
//! `nonResourceURLs` entry ending in `*` is a prefix.
//!
//! Analysis happens once per object, when it enters the cluster view or a request: a role is
//! kept as a [`RuleSummary`] (what is broad in it and an example rule for each reason), not
//! as its full rule list.

use std::fmt::{self, Write as _};
use std::marker::PhantomData;
use std::sync::Arc;

use serde::{Deserialize, Deserializer};

pub mod defaults;
pub mod objects;

/// The API group of Role, ClusterRole, RoleBinding and ClusterRoleBinding.
pub const GROUP: &str = "rbac.authorization.k8s.io";

const WRITE_VERBS: &[&str] = &["create", "update", "patch", "delete", "deletecollection"];
const READ_VERBS: &[&str] = &["get", "list", "watch"];
/// The verbs a connect subresource (exec, attach, proxy) is authorized with: the HTTP method
/// of the request (GET is `get`, POST is `create`, and so on).
const CONNECT_VERBS: &[&str] = &["get", "create", "update", "patch", "delete"];

/// One rule of a Role or ClusterRole. `null` lists read as empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRule {
    #[serde(default, deserialize_with = "null_as_default")]
    pub verbs: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub api_groups: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub resources: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub resource_names: Vec<String>,
    #[serde(
        rename = "nonResourceURLs",
        default,
        deserialize_with = "null_as_default"
    )]
    pub non_resource_urls: Vec<String>,
}

/// Reads `null` as the type's default (Kubernetes writes `rules: null` for aggregated roles).
pub fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

impl PolicyRule {
    fn verb(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == "*" || v == verb)
    }

    fn any_verb(&self, verbs: &[&str]) -> bool {
        verbs.iter().any(|v| self.verb(v))
    }

    fn group(&self, group: &str) -> bool {
        self.api_groups.iter().any(|g| g == "*" || g == group)
    }

    /// `resource` is `name` or `name/subresource`, as the authorizer combines them.
    fn resource(&self, resource: &str) -> bool {
        let subresource = resource.split_once('/').map(|(_, sub)| sub);
        self.resources.iter().any(|r| {
            r == "*"
                || r == resource
                || subresource.is_some_and(|sub| r.strip_prefix("*/") == Some(sub))
        })
    }

    fn any_resource(&self, group: &str, resources: &[&str]) -> bool {
        self.group(group) && resources.iter().any(|r| self.resource(r))
    }

    fn all_non_resource_urls(&self) -> bool {
        self.non_resource_urls.iter().any(|u| u == "*" || u == "/*")
    }

    /// What is broad in this rule, whatever the scope it is bound in.
    pub fn reasons(&self) -> Reasons {
        let mut reasons = Reasons::default();
        if self.verbs.is_empty() {
            return reasons;
        }
        let has = |list: &[String], s: &str| list.iter().any(|x| x == s);
        if has(&self.verbs, "*") {
            reasons.insert(Reason::WildcardVerb);
        }
        if self
            .resources
            .iter()
            .any(|r| r == "*" || r.starts_with("*/"))
        {
            // Reading every resource of named API groups other than the core one (where
            // secrets and pod subresources live) is what Flux's flux-view grants, and it
            // reaches view through aggregation: kept apart so it can be judged apart.
            let read_only = self.verbs.iter().all(|v| READ_VERBS.contains(&v.as_str()));
            let named_groups = !self.api_groups.is_empty()
                && self.api_groups.iter().all(|g| !g.is_empty() && g != "*");
            reasons.insert(if read_only && named_groups {
                Reason::WildcardResourceRead
            } else {
                Reason::WildcardResource
            });
        }
        if has(&self.api_groups, "*") {
            reasons.insert(Reason::WildcardGroup);
        }
        for (verb, reason) in [
            ("escalate", Reason::Escalate),
            ("bind", Reason::Bind),
            ("impersonate", Reason::Impersonate),
        ] {
            if has(&self.verbs, verb) {
                reasons.insert(reason);
            }
        }
        if !self.resources.is_empty() {
            let writes = self.any_verb(WRITE_VERBS);
            if writes
                && self.any_resource(
                    GROUP,
                    &[
                        "roles",
                        "rolebindings",
                        "clusterroles",
                        "clusterrolebindings",
                    ],
                )
            {
                reasons.insert(Reason::RbacWrite);
            }
            if writes
                && self.any_resource(
                    "admissionregistration.k8s.io",
                    &[
                        "validatingwebhookconfigurations",
                        "mutatingwebhookconfigurations",
                    ],
                )
            {
                reasons.insert(Reason::WebhookWrite);
            }
            if writes && self.any_resource("apiextensions.k8s.io", &["customresourcedefinitions"]) {
                reasons.insert(Reason::CrdWrite);
            }
            if self.any_verb(READ_VERBS) && self.any_resource("", &["secrets"]) {
                reasons.insert(Reason::SecretsRead);
            }
            let connects = self.any_verb(CONNECT_VERBS);
            for (resource, reason) in [
                ("pods/exec", Reason::PodsExec),
                ("pods/attach", Reason::PodsAttach),
                ("nodes/proxy", Reason::NodesProxy),
            ] {
                if connects && self.any_resource("", &[resource]) {
                    reasons.insert(reason);
                }
            }
        }
        if self.all_non_resource_urls() {
            reasons.insert(Reason::AllNonResourceUrls);
        }
        reasons
    }

    /// Whom this rule lets its holder impersonate. Only grants that name the verb
    /// `impersonate` or name the identity resource count: a rule of all wildcards
    /// (`cluster-admin`) is full administration, judged as broad, not as a deliberate grant
    /// of impersonation (Flux's controllers hold it by design).
    pub fn impersonates(&self) -> Targets {
        let mut targets = Targets::default();
        if !self.verb("impersonate") {
            return targets;
        }
        let names_verb = self.verbs.iter().any(|v| v == "impersonate");
        for target in Target::ALL {
            let (group, resource) = target.resource();
            let names_resource = self.resources.iter().any(|r| r == resource);
            if self.group(group) && self.resource(resource) && (names_verb || names_resource) {
                targets.insert(*target);
            }
        }
        targets
    }
}

/// A small set of flags.
pub trait Flag: Copy + Eq + fmt::Debug + 'static {
    const ALL: &'static [Self];
    fn index(self) -> u8;
}

pub struct FlagSet<T>(u32, PhantomData<T>);

impl<T> Clone for FlagSet<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for FlagSet<T> {}
impl<T> Default for FlagSet<T> {
    fn default() -> Self {
        FlagSet(0, PhantomData)
    }
}
impl<T> PartialEq for FlagSet<T> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl<T> Eq for FlagSet<T> {}

impl<T: Flag> FlagSet<T> {
    pub fn insert(&mut self, flag: T) {
        self.0 |= 1 << flag.index();
    }
    pub fn remove(&mut self, flag: T) {
        self.0 &= !(1 << flag.index());
    }
    pub fn contains(self, flag: T) -> bool {
        self.0 & (1 << flag.index()) != 0
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn union(self, other: Self) -> Self {
        FlagSet(self.0 | other.0, PhantomData)
    }
    pub fn intersection(self, other: Self) -> Self {
        FlagSet(self.0 & other.0, PhantomData)
    }
    /// The flags of `self` that `other` does not have.
    pub fn minus(self, other: Self) -> Self {
        FlagSet(self.0 & !other.0, PhantomData)
    }
    pub fn iter(self) -> impl Iterator<Item = T> {
        T::ALL.iter().copied().filter(move |f| self.contains(*f))
    }
    pub fn of(flags: &[T]) -> Self {
        let mut set = Self::default();
        for f in flags {
            set.insert(*f);
        }
        set
    }
}

impl<T: Flag> fmt::Debug for FlagSet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// Why a rule is broad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    WildcardVerb,
    WildcardResource,
    /// `*` in resources with only read verbs, in named non-core API groups.
    WildcardResourceRead,
    WildcardGroup,
    Escalate,
    Bind,
    Impersonate,
    RbacWrite,
    WebhookWrite,
    CrdWrite,
    /// Broad only where the role is bound cluster-wide.
    SecretsRead,
    PodsExec,
    PodsAttach,
    NodesProxy,
    AllNonResourceUrls,
}

impl Flag for Reason {
    const ALL: &'static [Reason] = &[
        Reason::WildcardVerb,
        Reason::WildcardResource,
        Reason::WildcardResourceRead,
        Reason::WildcardGroup,
        Reason::Escalate,
        Reason::Bind,
        Reason::Impersonate,
        Reason::RbacWrite,
        Reason::WebhookWrite,
        Reason::CrdWrite,
        Reason::SecretsRead,
        Reason::PodsExec,
        Reason::PodsAttach,
        Reason::NodesProxy,
        Reason::AllNonResourceUrls,
    ];
    fn index(self) -> u8 {
        self as u8
    }
}

impl Reason {
    pub fn describe(self) -> &'static str {
        match self {
            Reason::WildcardVerb => "`*` in verbs",
            Reason::WildcardResource => "`*` in resources",
            Reason::WildcardResourceRead => {
                "`*` in resources (read of every resource of its API groups)"
            }
            Reason::WildcardGroup => "`*` in apiGroups",
            Reason::Escalate => "the escalate verb (grant permissions one does not hold)",
            Reason::Bind => "the bind verb (bind roles one does not hold)",
            Reason::Impersonate => "the impersonate verb",
            Reason::RbacWrite => "writes to RBAC objects",
            Reason::WebhookWrite => "writes to admission webhook configurations",
            Reason::CrdWrite => "writes to CustomResourceDefinitions",
            Reason::SecretsRead => "read of secrets in every namespace",
            Reason::PodsExec => "pods/exec",
            Reason::PodsAttach => "pods/attach",
            Reason::NodesProxy => "nodes/proxy",
            Reason::AllNonResourceUrls => "nonResourceURLs `*`",
        }
    }
}

pub type Reasons = FlagSet<Reason>;

/// Whom an `impersonate` grant covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    Users,
    Groups,
    ServiceAccounts,
    Uids,
}

impl Flag for Target {
    const ALL: &'static [Target] = &[
        Target::Users,
        Target::Groups,
        Target::ServiceAccounts,
        Target::Uids,
    ];
    fn index(self) -> u8 {
        self as u8
    }
}

impl Target {
    /// The (API group, resource) the impersonation filter authorizes against.
    pub fn resource(self) -> (&'static str, &'static str) {
        match self {
            Target::Users => ("", "users"),
            Target::Groups => ("", "groups"),
            Target::ServiceAccounts => ("", "serviceaccounts"),
            Target::Uids => ("authentication.k8s.io", "uids"),
        }
    }
}

pub type Targets = FlagSet<Target>;

/// Where a binding gives its role's power.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// A RoleBinding: one namespace.
    Namespaced,
    /// A ClusterRoleBinding: every namespace and the cluster-scoped resources.
    ClusterWide,
}

impl Scope {
    /// The reasons that make a role broad in this scope.
    pub fn broad(self, reasons: Reasons) -> Reasons {
        let mut reasons = reasons;
        if self == Scope::Namespaced {
            reasons.remove(Reason::SecretsRead);
        }
        reasons
    }

    /// The impersonation a binding in this scope actually hands out. The API server
    /// authorizes impersonation of users, groups and uids without a namespace, which only
    /// ClusterRoleBindings grant; a RoleBinding lets its subjects impersonate the service
    /// accounts of its own namespace (what `edit` and `admin` grant by design). A RoleBinding
    /// that names users, groups or uids is still reported: it shows someone meant to hand
    /// identity impersonation out.
    pub fn impersonation(self, targets: Targets) -> Targets {
        let mut targets = targets;
        if self == Scope::Namespaced {
            targets.remove(Target::ServiceAccounts);
        }
        targets
    }
}

/// A rule kept as an example of why a role is broad.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffendingRule {
    pub rule: Arc<PolicyRule>,
    pub reasons: Reasons,
    pub impersonates: Targets,
    /// The ClusterRole it comes from, when it reached the role through aggregation.
    pub source: Option<Arc<str>>,
}

/// What is broad in a set of rules, with one example rule per reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleSummary {
    pub reasons: Reasons,
    pub impersonates: Targets,
    /// At most one rule per reason or target beyond the ones already covered, so the
    /// summary stays small whatever the role holds.
    pub examples: Vec<OffendingRule>,
}

impl RuleSummary {
    pub fn of_rules<'a>(rules: impl IntoIterator<Item = &'a PolicyRule>) -> Self {
        let mut summary = RuleSummary::default();
        for rule in rules {
            let reasons = rule.reasons();
            let impersonates = rule.impersonates();
            if reasons.is_empty() && impersonates.is_empty() {
                continue;
            }
            summary.add(OffendingRule {
                rule: Arc::new(rule.clone()),
                reasons,
                impersonates,
                source: None,
            });
        }
        summary
    }

    fn add(&mut self, example: OffendingRule) {
        let new_reasons = example.reasons.minus(self.reasons);
        let new_targets = example.impersonates.minus(self.impersonates);
        if new_reasons.is_empty() && new_targets.is_empty() {
            return;
        }
        self.reasons = self.reasons.union(example.reasons);
        self.impersonates = self.impersonates.union(example.impersonates);
        self.examples.push(example);
    }

    /// Adds the rules of a role aggregated into this one.
    pub fn merge(&mut self, other: &RuleSummary, source: &Arc<str>) {
        for example in &other.examples {
            let mut example = example.clone();
            if example.source.is_none() {
                example.source = Some(source.clone());
            }
            self.add(example);
        }
    }

    /// What `self` has that `before` had not.
    pub fn added_since(&self, before: &RuleSummary) -> (Reasons, Targets) {
        (
            self.reasons.minus(before.reasons),
            self.impersonates.minus(before.impersonates),
        )
    }

    /// The example rules for these reasons and targets, each with what it grants, e.g.
    /// `{apiGroups: ["*"], resources: ["*"], verbs: ["*"]} grants `*` in verbs`.
    pub fn explain(&self, reasons: Reasons, targets: Targets, max_rules: usize) -> String {
        let relevant: Vec<&OffendingRule> = self
            .examples
            .iter()
            .filter(|e| {
                !e.reasons.intersection(reasons).is_empty()
                    || !e.impersonates.intersection(targets).is_empty()
            })
            .collect();
        let mut text = String::new();
        for (i, example) in relevant.iter().take(max_rules).enumerate() {
            if i > 0 {
                text.push_str("; ");
            }
            let _ = write!(text, "rule {}", render_rule(&example.rule));
            if let Some(source) = &example.source {
                let _ = write!(text, " (from ClusterRole {source})");
            }
            let mut what: Vec<String> = example
                .reasons
                .intersection(reasons)
                .iter()
                .map(|r| r.describe().to_string())
                .collect();
            let impersonates = example.impersonates.intersection(targets);
            if !impersonates.is_empty() {
                what.push(format!(
                    "impersonation of {}",
                    describe_targets(impersonates)
                ));
            }
            let _ = write!(text, " grants {}", what.join(", "));
        }
        if relevant.len() > max_rules {
            let _ = write!(text, "; and {} more", relevant.len() - max_rules);
        }
        text
    }
}

pub fn describe_targets(targets: Targets) -> String {
    targets
        .iter()
        .map(|t| t.resource().1)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A rule in YAML flow style, lists cut short: `{apiGroups: [""], resources: ["secrets"], verbs: ["get"]}`.
pub fn render_rule(rule: &PolicyRule) -> String {
    const MAX_ITEMS: usize = 6;
    let list = |items: &[String]| {
        let mut shown: Vec<String> = items
            .iter()
            .take(MAX_ITEMS)
            .map(|s| format!("{s:?}"))
            .collect();
        if items.len() > MAX_ITEMS {
            shown.push(format!("…{} more", items.len() - MAX_ITEMS));
        }
        format!("[{}]", shown.join(", "))
    };
    let mut parts = Vec::new();
    if !rule.non_resource_urls.is_empty() {
        parts.push(format!(
            "nonResourceURLs: {}",
            list(&rule.non_resource_urls)
        ));
    } else {
        parts.push(format!("apiGroups: {}", list(&rule.api_groups)));
        parts.push(format!("resources: {}", list(&rule.resources)));
        if !rule.resource_names.is_empty() {
            parts.push(format!("resourceNames: {}", list(&rule.resource_names)));
        }
    }
    parts.push(format!("verbs: {}", list(&rule.verbs)));
    format!("{{{}}}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
        let owned = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        PolicyRule {
            api_groups: owned(groups),
            resources: owned(resources),
            verbs: owned(verbs),
            ..PolicyRule::default()
        }
    }

    #[test]
    fn each_broad_form_is_recognised_alone() {
        let cases = [
            (
                rule(&["apps"], &["deployments"], &["*"]),
                Reason::WildcardVerb,
            ),
            (
                rule(&["apps"], &["*"], &["get"]),
                Reason::WildcardResourceRead,
            ),
            (
                rule(&["apps"], &["*"], &["create"]),
                Reason::WildcardResource,
            ),
            (
                rule(&["apps"], &["*/scale"], &["update"]),
                Reason::WildcardResource,
            ),
            (
                rule(&["*"], &["deployments"], &["get"]),
                Reason::WildcardGroup,
            ),
            (
                rule(&[GROUP], &["clusterroles"], &["escalate"]),
                Reason::Escalate,
            ),
            (rule(&[GROUP], &["clusterroles"], &["bind"]), Reason::Bind),
            (
                rule(&[""], &["users"], &["impersonate"]),
                Reason::Impersonate,
            ),
            (
                rule(&[GROUP], &["rolebindings"], &["create"]),
                Reason::RbacWrite,
            ),
            (
                rule(&[GROUP], &["clusterroles"], &["patch"]),
                Reason::RbacWrite,
            ),
            (
                rule(
                    &["admissionregistration.k8s.io"],
                    &["validatingwebhookconfigurations"],
                    &["update"],
                ),
                Reason::WebhookWrite,
            ),
            (
                rule(
                    &["admissionregistration.k8s.io"],
                    &["mutatingwebhookconfigurations"],
                    &["delete"],
                ),
                Reason::WebhookWrite,
            ),
            (
                rule(
                    &["apiextensions.k8s.io"],
                    &["customresourcedefinitions"],
                    &["create"],
                ),
                Reason::CrdWrite,
            ),
            (rule(&[""], &["secrets"], &["list"]), Reason::SecretsRead),
            (rule(&[""], &["pods/exec"], &["create"]), Reason::PodsExec),
            (rule(&[""], &["pods/exec"], &["get"]), Reason::PodsExec),
            (
                rule(&[""], &["pods/attach"], &["create"]),
                Reason::PodsAttach,
            ),
            (rule(&[""], &["nodes/proxy"], &["get"]), Reason::NodesProxy),
        ];
        for (rule, expected) in cases {
            assert_eq!(
                rule.reasons(),
                Reasons::of(&[expected]),
                "{}",
                render_rule(&rule)
            );
        }
        let urls = PolicyRule {
            non_resource_urls: vec!["*".into()],
            verbs: vec!["get".into()],
            ..PolicyRule::default()
        };
        assert_eq!(urls.reasons(), Reasons::of(&[Reason::AllNonResourceUrls]));
    }

    #[test]
    fn wildcard_reads_of_named_groups_are_told_apart() {
        let flux_view = rule(
            &["source.toolkit.fluxcd.io", "kustomize.toolkit.fluxcd.io"],
            &["*"],
            &["get", "list", "watch"],
        );
        assert_eq!(
            flux_view.reasons(),
            Reasons::of(&[Reason::WildcardResourceRead])
        );
        // In the core group `*` covers secrets and pod subresources.
        let core = rule(&[""], &["*"], &["get"]).reasons();
        assert!(core.contains(Reason::WildcardResource));
        assert!(core.contains(Reason::SecretsRead));
        assert!(!core.contains(Reason::WildcardResourceRead));
        let any_group = rule(&["*"], &["*"], &["list"]).reasons();
        assert!(any_group.contains(Reason::WildcardResource));
        let writes = rule(&["example.com"], &["*"], &["get", "patch"]).reasons();
        assert_eq!(writes, Reasons::of(&[Reason::WildcardResource]));
    }

    #[test]
    fn narrow_rules_are_not_broad() {
        for rule in [
            rule(
                &["apps"],
                &["deployments"],
                &["get", "list", "create", "update", "patch", "delete"],
            ),
            rule(&[""], &["secrets"], &["create", "delete"]),
            rule(&[GROUP], &["roles"], &["get", "list", "watch"]),
            rule(&[""], &["pods", "pods/log"], &["get"]),
            rule(&[""], &["pods/exec"], &["list"]),
            rule(&["example.com"], &["secrets"], &["get"]),
            rule(
                &["apiextensions.k8s.io"],
                &["customresourcedefinitions"],
                &["get"],
            ),
            rule(&["apps"], &["deployments"], &[]),
        ] {
            assert!(rule.reasons().is_empty(), "{}", render_rule(&rule));
        }
        let health = PolicyRule {
            non_resource_urls: vec!["/healthz".into(), "/livez/*".into()],
            verbs: vec!["get".into()],
            ..PolicyRule::default()
        };
        assert!(health.reasons().is_empty());
    }

    #[test]
    fn impersonation_counts_only_deliberate_grants() {
        assert_eq!(
            rule(&[""], &["users", "groups"], &["impersonate"]).impersonates(),
            Targets::of(&[Target::Users, Target::Groups])
        );
        assert_eq!(
            rule(&[""], &["*"], &["impersonate"]).impersonates(),
            Targets::of(&[Target::Users, Target::Groups, Target::ServiceAccounts])
        );
        assert_eq!(
            rule(&["authentication.k8s.io"], &["uids"], &["impersonate"]).impersonates(),
            Targets::of(&[Target::Uids])
        );
        assert_eq!(
            rule(&[""], &["serviceaccounts"], &["*"]).impersonates(),
            Targets::of(&[Target::ServiceAccounts])
        );
        // The wrong group grants nothing; full wildcards are administration, judged as broad.
        assert!(
            rule(&["apps"], &["users"], &["impersonate"])
                .impersonates()
                .is_empty()
        );
        assert!(rule(&["*"], &["*"], &["*"]).impersonates().is_empty());
    }

    #[test]
    fn a_summary_keeps_one_example_per_reason() {
        let rules = [
            rule(&[""], &["pods/exec"], &["create"]),
            rule(&[""], &["pods/exec", "pods/attach"], &["create"]),
            rule(&["apps"], &["deployments"], &["get"]),
            rule(&[""], &["pods/attach"], &["get"]),
        ];
        let summary = RuleSummary::of_rules(&rules);
        assert_eq!(summary.examples.len(), 2);
        assert_eq!(
            summary.reasons,
            Reasons::of(&[Reason::PodsExec, Reason::PodsAttach])
        );
        let text = summary.explain(Reasons::of(&[Reason::PodsAttach]), Targets::default(), 3);
        assert!(
            text.contains(r#"resources: ["pods/exec", "pods/attach"]"#),
            "{text}"
        );
        assert!(text.contains("grants pods/attach"), "{text}");
    }

    #[test]
    fn secrets_read_is_broad_only_cluster_wide() {
        let reasons = rule(&[""], &["secrets"], &["get"]).reasons();
        assert!(Scope::Namespaced.broad(reasons).is_empty());
        assert!(!Scope::ClusterWide.broad(reasons).is_empty());
    }
}
