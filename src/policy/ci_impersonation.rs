//! `ci-impersonation`: no overly broad RBAC for the identities the GitLab agent impersonates.
//!
//! GitLab: "Use impersonation, and minimize the access CI/CD jobs in the cluster using regular
//! Kubernetes RBAC." A RoleBinding or ClusterRoleBinding whose subject is a GitLab identity
//! ([`crate::gitlab::identity`]), or a group every such identity carries
//! (`system:authenticated`), is judged by:
//! - **what** it grants: the effective rules of the bound role (from the cluster view, else
//!   Kubernetes' defaults, with every ClusterRole its aggregationRule picks up, recursively),
//!   against the privilege escalation paths of Kubernetes' RBAC good practices. Which rule
//!   stands for which path is the table in [`crate::rbac`];
//! - **where** it grants them, its [`Reach`]: a ClusterRoleBinding reaches every namespace; a
//!   RoleBinding in a protected namespace reaches the cluster's own workloads and tokens
//!   (kube-system, kube-public, kube-node-lease, Flux's, fluxgate's, the namespaces the GitLab
//!   agent runs in, `platformNamespaces` and `protectedNamespaces`); a RoleBinding elsewhere
//!   reaches that namespace only;
//! - **who** gets them: the catch-all groups (`gitlab:ci_job`, `gitlab:user`) and per-job
//!   users only read-only roles; production tiers no ClusterRoleBinding.
//!
//! ## One environment's own namespace
//! GitLab's managed Kubernetes resources create a namespace per environment and bind ClusterRole
//! `admin` there to `gitlab:project_env:<project>:<environment>`: one environment of one
//! project, confined to a namespace made for it, the scope GitLab intends. Such a binding is
//! judged at [`Reach::Environment`], where only the paths that escape a namespace are broad
//! (escalate, bind, impersonating users or groups, relabelling the namespace). A namespace
//! counts as made for it by facts a requester cannot set by naming things:
//! - the binding is a RoleBinding whose GitLab subjects are exactly one
//!   `gitlab:project_env:` group (no other GitLab identity, no `system:authenticated`);
//! - the namespace is not protected (above);
//! - no other RoleBinding there (in the cluster view) names another GitLab identity besides the
//!   catch-all groups: a namespace two environments or projects share is neither's own.
//!
//! The namespace's name, labels and annotations (the template's `agent.gitlab.com/*` labels
//! included) play no part. `environmentNamespaces: deny` turns this off. Every other identity,
//! a whole project or group included, keeps the narrow rules of [`Reach::Namespace`].
//!
//! Role and ClusterRole changes are judged by what they add to every role they make up: a
//! ClusterRole whose labels match `view`'s aggregationRule widens `view` and every binding of
//! it, and is denied when it is applied, as a later binding of the widened role is. Bindings
//! that hand out impersonation are judged whoever their subjects are: only the GitLab agent's
//! ServiceAccount may hold it, known from `agentServiceAccounts` or from the workloads the
//! cluster view sees running agentk, never from a binding's labels or name.
//!
//! A binding or role the API server would refuse (a malformed roleRef, a map where a list
//! belongs) that names no GitLab identity is an input error
//! ([`crate::finding::Severity::Invalid`]), not a violation; one that does name a GitLab identity stays a
//! violation (fail closed).

use std::cell::OnceCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::SettingError;
use super::{CREATE_UPDATE, Context, KindRule, Policy, PolicySettings};
use crate::admission::{Operation, Request};
use crate::budget::{Budget, Resource};
use crate::cluster::{ClusterView, Lookup, ObjectKey};
use crate::finding::{Finding, Mode, PolicyId};
use crate::gitlab::identity::Identity;
use crate::rbac::defaults::{default_cluster_role, default_cluster_roles};
use crate::rbac::objects::{
    self, BindingFacts, BindingKind, BindingObject, NamedRoles, RoleFacts, RoleKey, RoleObject,
    Subject,
};
use crate::rbac::{Reach, Reason, Reasons, RuleSummary, Targets, describe_targets};
use crate::selector::LabelSelector;
use crate::selector::selector_matches;

const ID: PolicyId = PolicyId::CiImpersonation;
const GROUP: &str = crate::rbac::GROUP;
/// How many rules and bindings a message quotes before saying "and N more".
const MAX_QUOTED: usize = 3;
/// How many ClusterRoles one review may visit through aggregation selectors. A role that
/// aggregates more cannot be resolved (fail closed): no real cluster comes near it, and it
/// keeps the work of a review bounded whatever the cluster holds.
const MAX_AGGREGATED_ROLES: usize = 4096;

const KINDS: &[KindRule] = &[
    KindRule {
        group: GROUP,
        kind: "RoleBinding",
        resource: "rolebindings",
        opt_in: false,
        operations: CREATE_UPDATE,
        judged_fields: &["/subjects", "/roleRef"],
    },
    KindRule {
        group: GROUP,
        kind: "ClusterRoleBinding",
        resource: "clusterrolebindings",
        opt_in: false,
        operations: CREATE_UPDATE,
        judged_fields: &["/subjects", "/roleRef"],
    },
    KindRule {
        group: GROUP,
        kind: "Role",
        resource: "roles",
        opt_in: false,
        operations: CREATE_UPDATE,
        judged_fields: &["/rules"],
    },
    // A ClusterRole's labels decide which aggregated ClusterRoles pick its rules up, so a
    // label change can widen a bound role as much as a rule change.
    KindRule {
        group: GROUP,
        kind: "ClusterRole",
        resource: "clusterroles",
        opt_in: false,
        operations: CREATE_UPDATE,
        judged_fields: &["/rules", "/aggregationRule", "/metadata/labels"],
    },
];

/// What a rule of this policy does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Response {
    /// A violation: denied in enforce mode.
    Deny,
    /// An advisory: allowed with a warning.
    Warn,
    /// Not reported.
    Off,
}

/// What happens to a binding for GitLab identities whose role cannot be resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UnresolvedRole {
    Deny,
    Warn,
}

/// Whether something is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Allowance {
    Allow,
    Deny,
}

/// The namespaces protected by default: Kubernetes' own, Flux's, fluxgate's and the agent
/// chart's default.
pub const DEFAULT_PROTECTED_NAMESPACES: &[&str] = &[
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "flux-system",
    "fluxgate-system",
    "gitlab-agent",
];

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Settings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// A role bound to a GitLab identity that opens an escalation path where it is bound.
    pub broad_roles: Response,
    /// `*` in resources with read verbs only, in named API groups other than the core one
    /// (Flux's flux-view, which aggregates into view): it reaches no secret and no
    /// credential. `off` does not report it, `warn` reports it apart, `deny` counts it as
    /// broad wherever it is bound.
    pub wildcard_reads: Response,
    /// A catch-all group or per-job user bound to a role outside `read_only_roles`, or to a
    /// listed role that grants writes.
    pub catch_all_subjects: Response,
    /// ClusterRole names, or `namespace/name` of a Role.
    pub read_only_roles: Vec<String>,
    /// A ClusterRoleBinding for a GitLab identity to a role outside `allowed_cluster_roles`.
    pub cluster_role_bindings: Response,
    pub allowed_cluster_roles: Vec<String>,
    /// A production-tier group in a ClusterRoleBinding.
    pub production_tier: Response,
    pub unresolved_role: UnresolvedRole,
    /// A binding that grants impersonation to anyone but the agent.
    pub impersonation: Response,
    /// `namespace/name` of the ServiceAccounts allowed to impersonate.
    pub agent_service_accounts: Vec<String>,
    /// The agent's own ClusterRoleBinding to `cluster-admin`.
    pub agent_cluster_admin: Response,
    /// Users whose ClusterRole updates are reported, never denied.
    pub aggregation_controller_users: Vec<String>,
    /// Namespaces where a RoleBinding reaches the cluster's own workloads and tokens.
    pub protected_namespaces: Vec<String>,
    /// A RoleBinding that gives one environment's identity power in a namespace made for it.
    pub environment_namespaces: Allowance,
    /// `tenant-lockdown`'s platform namespaces, protected too; filled in by the
    /// configuration, which gathers every policy's settings.
    #[serde(skip)]
    pub platform_namespaces: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            mode: None,
            broad_roles: Response::Deny,
            wildcard_reads: Response::Off,
            catch_all_subjects: Response::Deny,
            read_only_roles: vec!["view".into()],
            cluster_role_bindings: Response::Deny,
            allowed_cluster_roles: vec!["view".into()],
            production_tier: Response::Deny,
            unresolved_role: UnresolvedRole::Deny,
            impersonation: Response::Deny,
            agent_service_accounts: Vec::new(),
            agent_cluster_admin: Response::Warn,
            aggregation_controller_users: vec![
                "system:serviceaccount:kube-system:clusterrole-aggregation-controller".into(),
                "system:kube-controller-manager".into(),
            ],
            protected_namespaces: DEFAULT_PROTECTED_NAMESPACES
                .iter()
                .map(|n| n.to_string())
                .collect(),
            environment_namespaces: Allowance::Allow,
            platform_namespaces: Vec::new(),
        }
    }
}

impl PolicySettings for Settings {
    fn mode(&self) -> Option<Mode> {
        self.mode
    }

    fn validate(&mut self) -> Result<(), SettingError> {
        for (i, entry) in self.agent_service_accounts.iter().enumerate() {
            if split_namespaced(entry).is_none() {
                return Err(SettingError::new(
                    format!("agentServiceAccounts[{i}]"),
                    format!("{entry:?} is not namespace/name of a ServiceAccount"),
                ));
            }
        }
        for (i, entry) in self.read_only_roles.iter().enumerate() {
            if entry.is_empty() || (entry.contains('/') && split_namespaced(entry).is_none()) {
                return Err(SettingError::new(
                    format!("readOnlyRoles[{i}]"),
                    format!("{entry:?} is neither a ClusterRole name nor namespace/name of a Role"),
                ));
            }
        }
        for (i, entry) in self.allowed_cluster_roles.iter().enumerate() {
            if entry.is_empty() || entry.contains('/') {
                return Err(SettingError::new(
                    format!("allowedClusterRoles[{i}]"),
                    format!("{entry:?} is not a ClusterRole name"),
                ));
            }
        }
        for (i, entry) in self.protected_namespaces.iter().enumerate() {
            if entry.is_empty() || entry.contains('/') {
                return Err(SettingError::new(
                    format!("protectedNamespaces[{i}]"),
                    format!("{entry:?} is not a namespace name"),
                ));
            }
        }
        Ok(())
    }
}

fn split_namespaced(entry: &str) -> Option<(&str, &str)> {
    let (ns, name) = entry.split_once('/')?;
    (!ns.is_empty() && !name.is_empty() && !name.contains('/')).then_some((ns, name))
}

impl Settings {
    /// The wildcard reads of `reasons` judged as broad, and those reported on their own.
    fn split_reads(&self, reasons: Reasons) -> (Reasons, Reasons) {
        let reads = reasons.intersection(Reasons::of(&[Reason::WildcardResourceRead]));
        match self.wildcard_reads {
            Response::Deny => (reads, Reasons::default()),
            Response::Warn => (Reasons::default(), reads),
            Response::Off => (Reasons::default(), Reasons::default()),
        }
    }

    fn is_read_only(&self, role: &RoleKey) -> bool {
        self.read_only_roles.iter().any(|entry| match role {
            RoleKey::ClusterRole { name } => entry == name.as_ref(),
            RoleKey::Role { namespace, name } => {
                split_namespaced(entry) == Some((namespace.as_ref(), name.as_ref()))
            }
        })
    }

    fn allowed_cluster_wide(&self, role: &RoleKey) -> bool {
        matches!(role, RoleKey::ClusterRole { name }
            if self.allowed_cluster_roles.iter().any(|a| a == name.as_ref()))
    }

    fn is_agent_account(&self, subject: &Subject) -> bool {
        self.agent_service_accounts
            .iter()
            .filter_map(|entry| split_namespaced(entry))
            .any(|(ns, name)| subject.is_service_account(ns, name))
    }

    /// Why a namespace is protected by configuration, if it is.
    fn configured_protection(&self, namespace: &str) -> Option<&'static str> {
        if self.protected_namespaces.iter().any(|n| n == namespace) {
            Some("protectedNamespaces")
        } else if self.platform_namespaces.iter().any(|n| n == namespace) {
            Some("tenant-lockdown's platformNamespaces")
        } else if self
            .agent_service_accounts
            .iter()
            .filter_map(|entry| split_namespaced(entry))
            .any(|(ns, _)| ns == namespace)
        {
            Some("the namespace of agentServiceAccounts")
        } else {
            None
        }
    }
}

/// What one review knows of the cluster beyond the request, read once.
struct Cluster<'a> {
    view: &'a dyn ClusterView,
    settings: &'a Settings,
    /// (namespace, ServiceAccount) of every object the view sees running agentk.
    agents: OnceCell<Vec<(String, Option<String>)>>,
}

/// Where a binding grants its role, and why when it is not what its kind alone says.
struct Placement {
    reach: Reach,
    note: String,
}

impl<'a> Cluster<'a> {
    fn new(view: &'a dyn ClusterView, settings: &'a Settings) -> Self {
        Cluster {
            view,
            settings,
            agents: OnceCell::new(),
        }
    }

    fn agents(&self) -> &[(String, Option<String>)] {
        self.agents
            .get_or_init(|| match self.view.agent_installations() {
                Lookup::Found(installations) => installations
                    .into_iter()
                    .flat_map(|i| i.objects)
                    .map(|o| (o.namespace, o.service_account))
                    .collect(),
                _ => Vec::new(),
            })
    }

    /// Why a namespace is protected, if it is.
    fn protection(&self, namespace: &str) -> Option<String> {
        if let Some(why) = self.settings.configured_protection(namespace) {
            return Some(format!("listed in {why}"));
        }
        self.agents()
            .iter()
            .any(|(ns, _)| ns == namespace)
            .then(|| "the GitLab agent runs there".to_string())
    }

    /// Whether a subject may hold impersonation: the GitLab agent's ServiceAccount, as the
    /// configuration (`agentServiceAccounts`) or the cluster view (the account the workloads
    /// running agentk run as) knows it.
    fn may_impersonate(&self, subject: &Subject) -> bool {
        self.settings.is_agent_account(subject)
            || (&*subject.kind == "ServiceAccount"
                && self.agents().iter().any(|(ns, account)| {
                    subject.namespace.as_deref() == Some(ns.as_str())
                        && account.as_deref() == Some(&*subject.name)
                }))
    }

    fn placement(&self, binding: &BindingFacts) -> Placement {
        let namespace = match (binding.kind, &binding.namespace) {
            (BindingKind::RoleBinding, Some(ns)) => ns,
            _ => {
                return Placement {
                    reach: Reach::Cluster,
                    note: String::new(),
                };
            }
        };
        if let Some(why) = self.protection(namespace) {
            return Placement {
                reach: Reach::Protected,
                note: format!(" ({why})"),
            };
        }
        let Some(identity) = environment_identity(&binding.subjects) else {
            return Placement {
                reach: Reach::Namespace,
                note: String::new(),
            };
        };
        let not_own = |why: String| Placement {
            reach: Reach::Namespace,
            note: format!(
                " (not {identity}'s own namespace, where the rules for one environment would apply: {why})"
            ),
        };
        if self.settings.environment_namespaces == Allowance::Deny {
            return not_own("environmentNamespaces: deny".into());
        }
        match self
            .view
            .other_gitlab_identity_in(namespace, identity, &binding.name)
        {
            Lookup::Found(None) | Lookup::Missing => Placement {
                reach: Reach::Environment,
                note: String::new(),
            },
            Lookup::Found(Some((other, by))) => not_own(format!(
                "RoleBinding {namespace}/{by} gives {other} power there too"
            )),
            Lookup::Unknown => {
                not_own("the cluster view cannot tell yet who else is bound there".to_string())
            }
        }
    }
}

/// The one environment identity a binding names, when it names no other GitLab identity and
/// no group every identity carries.
fn environment_identity(subjects: &[Subject]) -> Option<&str> {
    if !implicit_gitlab_subjects(subjects).is_empty() {
        return None;
    }
    let gitlab = gitlab_subjects(subjects);
    let first = gitlab.first()?;
    let one = gitlab
        .iter()
        .all(|s| s.subject.name == first.subject.name && &*s.subject.kind == "Group");
    (one && matches!(first.identity, Identity::ProjectEnv { .. })).then_some(&*first.subject.name)
}
#[derive(Default)]
pub struct CiImpersonation;

impl Policy for CiImpersonation {
    type Settings = Settings;

    fn id(&self) -> PolicyId {
        ID
    }

    fn kinds(&self) -> &'static [KindRule] {
        KINDS
    }

    fn validate(&self, ctx: &Context<'_, Settings>) -> Vec<Finding> {
        let settings = ctx.settings;
        match ctx.request.kind.kind.as_ref() {
            "RoleBinding" | "ClusterRoleBinding" => judge_binding(ctx, settings),
            "Role" | "ClusterRole" => judge_role(ctx, settings),
            _ => Vec::new(),
        }
    }

    /// The role a binding refers to, so that a role applied a moment before its binding is
    /// fetched from the API server when the watch has not delivered it yet.
    fn prefetch(&self, request: &Request<'_>) -> Vec<ObjectKey> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct RoleRefOnly {
            role_ref: objects::RoleRefObject,
        }
        let Some(kind) = BindingKind::parse(&request.kind.kind) else {
            return Vec::new();
        };
        let Some(raw) = request.object else {
            return Vec::new();
        };
        let Ok(object) = crate::json_view::from_raw::<RoleRefOnly>(raw) else {
            return Vec::new();
        };
        let key = match (object.role_ref.kind.as_str(), kind) {
            ("ClusterRole", _) => ObjectKey {
                group: GROUP.into(),
                kind: "ClusterRole".into(),
                namespace: None,
                name: object.role_ref.name,
            },
            ("Role", BindingKind::RoleBinding) => match request.namespace() {
                Some(ns) => ObjectKey {
                    group: GROUP.into(),
                    kind: "Role".into(),
                    namespace: Some(ns.to_string()),
                    name: object.role_ref.name,
                },
                None => return Vec::new(),
            },
            _ => return Vec::new(),
        };
        vec![key]
    }
}

/// A subject that is a GitLab identity.
struct GitLabSubject<'a> {
    subject: &'a Subject,
    identity: Identity<'a>,
}

impl GitLabSubject<'_> {
    fn describe(&self) -> String {
        let mut text = format!("{} ({})", self.subject, self.identity.describe());
        let expected = self.identity.kind().as_str();
        if &*self.subject.kind != expected {
            let _ = write!(
                text,
                " [the agent sends {} as a {expected}, so as a {} it matches nobody yet]",
                self.identity, self.subject.kind
            );
        }
        text
    }
}

fn gitlab_subjects(subjects: &[Subject]) -> Vec<GitLabSubject<'_>> {
    subjects
        .iter()
        .filter(|s| matches!(&*s.kind, "User" | "Group"))
        .filter_map(|subject| {
            Identity::parse(&subject.name).map(|identity| GitLabSubject { subject, identity })
        })
        .collect()
}

/// Groups the API server puts every GitLab identity in: impersonation adds
/// `system:authenticated` to every impersonated user, so a binding for that group grants
/// what it binds to every CI/CD job and dashboard user the agent serves (and to everyone
/// else who can authenticate). Only the breadth of the role is judged for it: Kubernetes'
/// own bindings give it narrow roles (system:discovery, system:basic-user).
const IMPLICIT_GITLAB_GROUPS: &[&str] = &["system:authenticated"];

fn implicit_gitlab_subjects(subjects: &[Subject]) -> Vec<&Subject> {
    subjects
        .iter()
        .filter(|s| &*s.kind == "Group" && IMPLICIT_GITLAB_GROUPS.contains(&&*s.name))
        .collect()
}

/// Every subject of a binding that GitLab identities reach, named as messages name them.
fn judged_subject_names(subjects: &[Subject]) -> Vec<String> {
    let mut names: Vec<String> = gitlab_subjects(subjects)
        .iter()
        .map(|s| s.subject.to_string())
        .collect();
    names.extend(
        implicit_gitlab_subjects(subjects)
            .iter()
            .map(|s| s.to_string()),
    );
    names
}

/// One thing wrong with an object, and whether the least-privilege alternative answers it.
struct Problem {
    text: String,
    wants_alternative: bool,
}

/// Problems found with one object, sorted by how they are reported.
#[derive(Default)]
struct Problems {
    deny: Vec<Problem>,
    warn: Vec<Problem>,
}

impl Problems {
    fn push(&mut self, response: Response, text: String) {
        self.push_problem(
            response,
            Problem {
                text,
                wants_alternative: true,
            },
        );
    }

    fn push_problem(&mut self, response: Response, problem: Problem) {
        match response {
            Response::Deny => self.deny.push(problem),
            Response::Warn => self.warn.push(problem),
            Response::Off => {}
        }
    }

    /// One finding per severity: the header, each problem on its own line, then the
    /// alternative when a problem calls for it.
    fn into_findings(self, header: &str, alternative: &str) -> Vec<Finding> {
        let render = |problems: &[Problem]| {
            let mut text = header.to_string();
            for problem in problems {
                let _ = write!(text, "\n- {}", problem.text);
            }
            if !alternative.is_empty() && problems.iter().any(|p| p.wants_alternative) {
                text.push('\n');
                text.push_str(alternative);
            }
            text
        };
        let mut findings = Vec::new();
        if !self.deny.is_empty() {
            findings.push(Finding::violation(ID, render(&self.deny)));
        }
        if !self.warn.is_empty() {
            findings.push(Finding::advisory(ID, render(&self.warn)));
        }
        findings
    }
}

/// The finding for an object the API server would refuse: an input error when it names no
/// GitLab identity, else a violation (it is meant for a GitLab identity: fail closed).
fn malformed(ctx: &Context<'_, Settings>, what: &str) -> Finding {
    let object = ctx.object_ref();
    if ctx.request.object.is_some_and(names_gitlab_identity) {
        Finding::violation(
            ID,
            format!(
                "{object} is malformed: {what}. It names a GitLab identity, and fluxgate cannot tell what it would grant (fail closed); fix the manifest"
            ),
        )
    } else {
        Finding::invalid(
            ID,
            format!(
                "{object} is malformed: {what}. The API server refuses it (an input error, not a policy violation); fix the manifest"
            ),
        )
    }
}

/// Whether any string under an object's `subjects`, however malformed they are, is a GitLab
/// identity or a group every GitLab identity carries.
fn names_gitlab_identity(raw: &RawValue) -> bool {
    fn any_identity(value: &serde_json::Value) -> bool {
        match value {
            serde_json::Value::String(s) => {
                Identity::parse(s).is_some() || IMPLICIT_GITLAB_GROUPS.contains(&s.as_str())
            }
            serde_json::Value::Array(items) => items.iter().any(any_identity),
            serde_json::Value::Object(members) => members.values().any(any_identity),
            _ => false,
        }
    }
    #[derive(Deserialize)]
    struct SubjectsOnly {
        #[serde(default)]
        subjects: serde_json::Value,
    }
    match serde_json::from_str::<SubjectsOnly>(raw.get()) {
        Ok(object) => any_identity(&object.subjects),
        // Not even an object: nothing says whom it is for.
        Err(_) => false,
    }
}

fn judge_binding(ctx: &Context<'_, Settings>, settings: &Settings) -> Vec<Finding> {
    let Some(raw) = ctx.request.object else {
        return vec![Finding::violation(
            ID,
            format!("{} has no object in the request", ctx.object_ref()),
        )];
    };
    let mut object: BindingObject = match ctx.view_of(raw) {
        Ok(object) => object,
        Err(e) => return vec![malformed(ctx, &e)],
    };
    let Some(kind) = BindingKind::parse(&ctx.request.kind.kind) else {
        return Vec::new();
    };
    if object.metadata.namespace.is_none() {
        object.metadata.namespace = ctx.request.namespace().map(str::to_string);
    }
    if object.metadata.name.is_empty() {
        object.metadata.name = ctx.request.name().to_string();
    }
    let Some(binding) = BindingFacts::from_object(&object, kind) else {
        return vec![malformed(
            ctx,
            &format!(
                "it refers to {} {:?} of apiGroup {:?}, and a roleRef must be a Role or ClusterRole of {GROUP} (a ClusterRoleBinding only a ClusterRole)",
                object.role_ref.kind, object.role_ref.name, object.role_ref.api_group
            ),
        )];
    };
    if let Some(why) = BindingFacts::invalid_subject(&object) {
        return vec![malformed(ctx, &why)];
    }
    // Subjects are judged one by one below; a stopped budget is the engine's to report.
    if ctx
        .budget
        .charge(Resource::RbacSubjects, binding.subjects.len() as u64)
        .is_err()
    {
        return Vec::new();
    }
    let cluster = Cluster::new(ctx.view, settings);
    let gitlab = gitlab_subjects(&binding.subjects);
    let everyone = implicit_gitlab_subjects(&binding.subjects);
    let mut resolver = Resolver::new(ctx.view).within(ctx.budget);
    let resolved = resolver.role(&binding.role);
    if ctx.budget.exceeded().is_some() {
        // Not "cannot be resolved": the engine denies with the budget's own reason.
        return Vec::new();
    }
    let role = &binding.role;
    let mut problems = Problems::default();
    let judged = !gitlab.is_empty() || !everyone.is_empty();
    // Where it reaches matters only for what is judged: most bindings in a cluster name no
    // GitLab identity and hand out no impersonation, and cost no more lookups.
    let placement = if judged || resolved.as_ref().is_ok_and(|s| !s.impersonates.is_empty()) {
        cluster.placement(&binding)
    } else {
        Placement {
            reach: Reach::Namespace,
            note: String::new(),
        }
    };
    let reach = placement.reach;

    if judged {
        let implicit = if everyone.is_empty() {
            String::new()
        } else {
            format!(
                " ({} includes every identity the GitLab agent impersonates: the API server adds it to every impersonated user)",
                quote(everyone.iter().map(|s| s.to_string()))
            )
        };
        let place = format!(
            "{}{}",
            reach.describe(binding.namespace.as_deref()),
            placement.note
        );
        match &resolved {
            // Kubernetes binds its own system: roles to system:authenticated; a role that
            // cannot be resolved is judged for explicit GitLab identities only.
            Err(_) if gitlab.is_empty() => {}
            Err(why) => {
                let response = match settings.unresolved_role {
                    UnresolvedRole::Deny => Response::Deny,
                    UnresolvedRole::Warn => Response::Warn,
                };
                let fix = if ctx.view.offline() {
                    "give fluxgate check the cluster's roles with --cluster-state (for example the output of kubectl get clusterroles,roles -A -o yaml), or set unresolvedRole: warn"
                } else {
                    "create the role before the binding, or set unresolvedRole: warn"
                };
                problems.push_problem(
                    response,
                    Problem {
                        text: format!(
                            "{role} cannot be resolved: {why}. fluxgate cannot tell what it grants and does not allow it for GitLab identities (fail closed); {fix}"
                        ),
                        wants_alternative: false,
                    },
                );
            }
            Ok(summary) => {
                let (reads_denied, reads_warned) = settings.split_reads(summary.reasons);
                let broad = reach.broad(summary.reasons).union(reads_denied);
                if !broad.is_empty() {
                    problems.push(
                        settings.broad_roles,
                        format!(
                            "{role} is broad {place}{implicit}: {}",
                            summary.explain(broad, Targets::default(), MAX_QUOTED)
                        ),
                    );
                }
                if !reads_warned.is_empty() {
                    problems.push(
                        Response::Warn,
                        format!(
                            "{role} reads every resource of some API groups {place}{implicit}: {}",
                            summary.explain(reads_warned, Targets::default(), MAX_QUOTED)
                        ),
                    );
                }
            }
        }
    }
    if !gitlab.is_empty() {
        let narrow: Vec<&GitLabSubject> = gitlab
            .iter()
            .filter(|s| s.identity.is_catch_all() || s.identity.is_per_job())
            .collect();
        if !settings.is_read_only(role) {
            for s in &narrow {
                let text = if s.identity.is_per_job() {
                    format!(
                        "{} is {}: the binding outlives the job, and a per-job user may only be bound to read-only roles ({}), not {role}; bind the project or environment group instead",
                        s.subject,
                        s.identity.describe(),
                        list_or_none(&settings.read_only_roles)
                    )
                } else {
                    format!(
                        "{} covers {}: a catch-all group may only be bound to read-only roles ({}), not {role}",
                        s.subject,
                        s.identity.describe(),
                        list_or_none(&settings.read_only_roles)
                    )
                };
                problems.push(settings.catch_all_subjects, text);
            }
        } else if let Ok(summary) = &resolved
            && summary.reasons.contains(Reason::Write)
            && !narrow.is_empty()
        {
            // readOnlyRoles names roles; what they grant is what counts (aggregation can
            // add writes to view).
            problems.push(
                settings.catch_all_subjects,
                format!(
                    "{role} is listed in readOnlyRoles, but it grants writes, which {} may not hold: {}",
                    join_subjects(&narrow),
                    summary.explain(Reasons::of(&[Reason::Write]), Targets::default(), MAX_QUOTED)
                ),
            );
        }
        if kind == BindingKind::ClusterRoleBinding {
            let (production, others): (Vec<&GitLabSubject>, Vec<&GitLabSubject>) =
                gitlab.iter().partition(|s| s.identity.is_production());
            if !others.is_empty() && !settings.allowed_cluster_wide(role) {
                problems.push(
                    settings.cluster_role_bindings,
                    format!(
                        "a ClusterRoleBinding gives {role} to {} in every namespace; GitLab identities may be bound cluster-wide only to ClusterRoles {}",
                        join_subjects(&others),
                        list_or_none(&settings.allowed_cluster_roles)
                    ),
                );
            }
            for s in production {
                problems.push(
                    settings.production_tier,
                    format!(
                        "{} is {}: production deploy jobs get namespaced RoleBindings only, never a ClusterRoleBinding",
                        s.subject,
                        s.identity.describe()
                    ),
                );
            }
        }
    }

    if let Ok(summary) = &resolved {
        let targets = reach.impersonation(summary.impersonates);
        if !targets.is_empty() {
            let offenders: Vec<String> = binding
                .subjects
                .iter()
                .filter(|s| !cluster.may_impersonate(s))
                .map(|s| s.to_string())
                .collect();
            if !offenders.is_empty() {
                problems.push_problem(
                    settings.impersonation,
                    Problem { wants_alternative: false, text: format!(
                        "{role} grants impersonation of {} to {}: {}. That is the key to every identity the GitLab agent impersonates; only the agent's ServiceAccount may hold it (list it in agentServiceAccounts: fluxgate knows it by itself only once a workload running agentk as that account is in the cluster)",
                        describe_targets(targets),
                        offenders.join(", "),
                        summary.explain(Reasons::default(), targets, MAX_QUOTED)
                    ) },
                );
            }
        }
    }

    let agents_own = kind == BindingKind::ClusterRoleBinding
        && matches!(role, RoleKey::ClusterRole { name } if name.as_ref() == "cluster-admin")
        && !binding.subjects.is_empty()
        && binding.subjects.iter().all(|s| cluster.may_impersonate(s));
    if agents_own {
        problems.push_problem(
            settings.agent_cluster_admin,
            Problem {
                text: agent_cluster_admin_text(&binding),
                wants_alternative: false,
            },
        );
    }

    let header = if gitlab.is_empty() {
        format!(
            "{binding} binds {role} to {}:",
            quote(binding.subjects.iter().map(|s| s.to_string()))
        )
    } else {
        format!(
            "{binding} binds {role} to GitLab {} {}:",
            if gitlab.len() == 1 {
                "identity"
            } else {
                "identities"
            },
            quote(gitlab.iter().map(GitLabSubject::describe))
        )
    };
    let alternative = if !gitlab.is_empty() {
        least_privilege(&binding, &gitlab)
    } else if !everyone.is_empty() {
        "Bind system:authenticated only to narrow roles such as system:discovery; give GitLab identities what their jobs deploy with a namespaced Role bound to gitlab:project_env:<project id>:<environment slug>.".to_string()
    } else {
        String::new()
    };
    problems.into_findings(&header, &alternative)
}

/// Whether `username` with `groups` (a static identity an agent configuration impersonates)
/// is privileged: a group or user Kubernetes itself makes powerful (see
/// [`crate::rbac::well_known_privileged`]), or one that a binding in the cluster view (in
/// `fluxgate check`, the manifests and `--cluster-state`) gives a role that is broad where
/// it is bound. Returns why, for the message. Scans the bindings: not for the request path.
pub fn privileged_identity(
    view: &dyn ClusterView,
    settings: &Settings,
    username: &str,
    groups: &[String],
) -> Option<String> {
    if let Some(why) = crate::rbac::well_known_privileged(username, groups) {
        return Some(why);
    }
    let mut subjects: Vec<(&str, &str, Option<&str>)> = Vec::new();
    match username
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'))
    {
        Some((ns, name)) => subjects.push(("ServiceAccount", name, Some(ns))),
        None if !username.is_empty() => subjects.push(("User", username, None)),
        None => {}
    }
    subjects.extend(groups.iter().map(|g| ("Group", g.as_str(), None)));
    let cluster = Cluster::new(view, settings);
    let mut resolver = Resolver::new(view);
    for (kind, name, namespace) in subjects {
        let Lookup::Found(bindings) = view.bindings_naming(kind, name, namespace) else {
            continue;
        };
        for binding in bindings {
            let Ok(summary) = resolver.role(&binding.role) else {
                continue;
            };
            // Judged as for any identity but one environment's own.
            let reach = cluster.placement(&binding).reach.max(Reach::Namespace);
            let broad = reach.broad(summary.reasons);
            if !broad.is_empty() {
                let subject = match namespace {
                    Some(ns) => format!("{kind} {ns}/{name}"),
                    None => format!("{kind} {name}"),
                };
                return Some(format!(
                    "{binding} gives {subject} {}, which is broad {}: {}",
                    binding.role,
                    reach.describe(binding.namespace.as_deref()),
                    summary.explain(broad, Targets::default(), 1)
                ));
            }
        }
    }
    None
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none configured".into()
    } else {
        items.join(", ")
    }
}

fn join_subjects(subjects: &[&GitLabSubject]) -> String {
    quote(subjects.iter().map(|s| s.subject.to_string()))
}

/// The least-privilege alternative: a namespaced Role and one RoleBinding per project
/// environment (or per project role, for dashboard users).
fn least_privilege(binding: &BindingFacts, gitlab: &[GitLabSubject<'_>]) -> String {
    let namespace = match binding.namespace.as_deref() {
        Some(ns) if !ns.is_empty() => ns.to_string(),
        _ => "<namespace>".into(),
    };
    let user_access = gitlab.iter().all(|s| {
        matches!(
            s.identity,
            Identity::AllUsers
                | Identity::User { .. }
                | Identity::ProjectRole { .. }
                | Identity::GroupRole { .. }
        )
    });
    let project = gitlab.iter().find_map(|s| match s.identity {
        Identity::Project { project_id }
        | Identity::ProjectEnv { project_id, .. }
        | Identity::ProjectEnvTier { project_id, .. }
        | Identity::ProjectRole { project_id, .. } => Some(project_id.to_string()),
        _ => None,
    });
    let project = project.unwrap_or_else(|| "<project id>".into());
    let (intro, subject, binding_name) = if user_access {
        (
            "Least privilege: bind a namespaced Role with only what the users need to a project role, one RoleBinding per project:",
            format!("gitlab:project_role:{project}:developer"),
            format!("gitlab-{project}-developers"),
        )
    } else {
        let environment = gitlab
            .iter()
            .find_map(|s| match s.identity {
                Identity::ProjectEnv { environment, .. } => Some(environment.to_string()),
                _ => None,
            })
            .unwrap_or_else(|| "<environment slug>".into());
        (
            "Least privilege: bind a namespaced Role with only what the job deploys to the job's project environment, one RoleBinding per project environment:",
            format!("gitlab:project_env:{project}:{environment}"),
            format!("gitlab-{project}-{environment}"),
        )
    };
    format!(
        "{intro}\n\
         apiVersion: rbac.authorization.k8s.io/v1\n\
         kind: Role\n\
         metadata: {{name: deployer, namespace: {namespace}}}\n\
         rules:\n\
         - {{apiGroups: [apps], resources: [deployments], verbs: [get, list, watch, create, update, patch]}}\n\
         ---\n\
         apiVersion: rbac.authorization.k8s.io/v1\n\
         kind: RoleBinding\n\
         metadata: {{name: {binding_name}, namespace: {namespace}}}\n\
         roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: deployer}}\n\
         subjects:\n\
         - {{apiGroup: rbac.authorization.k8s.io, kind: Group, name: \"{subject}\"}}"
    )
}

fn agent_cluster_admin_text(binding: &BindingFacts) -> String {
    let account = binding
        .subjects
        .first()
        .map(|s| s.to_string())
        .unwrap_or_default();
    format!(
        "the GitLab agent's {account} is cluster-admin (the agent chart's default, which GitLab advises against in production). With ci_access / user_access impersonation the agent needs only impersonate: install the chart with --set rbac.useExistingRole=gitlab-agent-impersonate and create:\n\
         apiVersion: rbac.authorization.k8s.io/v1\n\
         kind: ClusterRole\n\
         metadata: {{name: gitlab-agent-impersonate}}\n\
         rules:\n\
         - {{apiGroups: [\"\"], resources: [users, groups, serviceaccounts], verbs: [impersonate]}}\n\
         - {{apiGroups: [authentication.k8s.io], resources: [uids, userextras/agent.gitlab.com/id, userextras/agent.gitlab.com/config_project_id, userextras/agent.gitlab.com/project_id, userextras/agent.gitlab.com/ci_pipeline_id, userextras/agent.gitlab.com/ci_job_id, userextras/agent.gitlab.com/username, userextras/agent.gitlab.com/environment_slug, userextras/agent.gitlab.com/environment_tier], verbs: [impersonate]}}"
    )
}

/// Resolves roles to the summary of what they grant: the role in the cluster view, else the
/// Kubernetes default of that name; a ClusterRole with an aggregationRule also grants what
/// every ClusterRole its selectors match grants (from the view, plus the defaults the view
/// does not override), recursively. Every role is resolved once per review, and the walk
/// visits at most [`MAX_AGGREGATED_ROLES`] ClusterRoles.
struct Resolver<'v> {
    view: &'v dyn ClusterView,
    done: HashMap<Arc<str>, RuleSummary>,
    /// ClusterRoles the aggregation walk may still visit.
    budget: usize,
    /// Whether the walk ran out of budget: what it resolved since is incomplete.
    exhausted: bool,
    /// The review's budget, charged an aggregation step for every role visited (none when
    /// the resolver serves the agent configuration lint).
    work: Option<&'v Budget>,
}

impl<'v> Resolver<'v> {
    fn new(view: &'v dyn ClusterView) -> Self {
        Resolver {
            view,
            done: HashMap::new(),
            budget: MAX_AGGREGATED_ROLES,
            exhausted: false,
            work: None,
        }
    }

    /// This resolver, charging the review's budget as it walks.
    fn within(mut self, work: &'v Budget) -> Self {
        self.work = Some(work);
        self
    }

    fn missing(&self, default_too: bool) -> String {
        let not_default = if default_too {
            " and is not a Kubernetes default role"
        } else {
            ""
        };
        if self.view.offline() {
            format!(
                "it is neither among the manifests checked nor in a --cluster-state file{not_default}"
            )
        } else {
            format!("it does not exist in the cluster{not_default}")
        }
    }

    fn role(&mut self, key: &RoleKey) -> Result<RuleSummary, String> {
        match key {
            RoleKey::Role { namespace, name } => match self.view.role(namespace, name) {
                Lookup::Found(facts) => Ok(facts.summary.clone()),
                Lookup::Missing => Err(self.missing(false)),
                Lookup::Unknown => Err("the cluster view cannot tell whether it exists (not synced yet, or its watch of the API server is lost)".into()),
            },
            RoleKey::ClusterRole { name } => {
                let facts = self.cluster_role(name)?;
                let mut visiting = vec![name.clone()];
                self.effective(name, &facts, &mut visiting)
            }
        }
    }

    fn cluster_role(&self, name: &str) -> Result<Arc<RoleFacts>, String> {
        match self.view.cluster_role(name) {
            Lookup::Found(facts) => Ok(facts),
            lookup => match default_cluster_role(name) {
                Some(facts) => Ok(facts.clone()),
                None if lookup == Lookup::Missing => Err(self.missing(true)),
                None => Err("the cluster view cannot tell whether it exists (not synced yet, or its watch of the API server is lost)".into()),
            },
        }
    }

    /// `visiting` holds the aggregated roles being resolved, so cycles end.
    fn effective(
        &mut self,
        name: &Arc<str>,
        facts: &RoleFacts,
        visiting: &mut Vec<Arc<str>>,
    ) -> Result<RuleSummary, String> {
        let Some(selectors) = &facts.aggregation else {
            return Ok(facts.summary.clone());
        };
        if let Some(done) = self.done.get(name) {
            return Ok(done.clone());
        }
        let mut summary = facts.summary.clone();
        self.aggregate_into(&mut summary, name, selectors, visiting)?;
        self.done.insert(name.clone(), summary.clone());
        Ok(summary)
    }

    fn aggregate_into(
        &mut self,
        summary: &mut RuleSummary,
        name: &str,
        selectors: &[LabelSelector],
        visiting: &mut Vec<Arc<str>>,
    ) -> Result<(), String> {
        for selector in selectors {
            for (source, source_facts) in self.matching(selector, name)? {
                if visiting.contains(&source) {
                    continue;
                }
                self.spend(name)?;
                visiting.push(source.clone());
                let inner = self.effective(&source, &source_facts, visiting);
                visiting.pop();
                summary.merge(&inner?, &source);
            }
        }
        Ok(())
    }

    fn spend(&mut self, name: &str) -> Result<(), String> {
        if let Some(work) = self.work {
            // A stopped review budget is the engine's to report, with its own reason.
            work.charge(Resource::AggregationSteps, 1)
                .map_err(|e| e.to_string())?;
        }
        match self.budget.checked_sub(1) {
            Some(left) => {
                self.budget = left;
                Ok(())
            }
            None => {
                self.exhausted = true;
                Err(format!(
                    "ClusterRole {name} aggregates more than {MAX_AGGREGATED_ROLES} ClusterRoles, more than fluxgate resolves in one review"
                ))
            }
        }
    }

    /// The ClusterRoles a selector aggregates into `into`, which never aggregates itself.
    fn matching(&self, selector: &LabelSelector, into: &str) -> Result<NamedRoles, String> {
        let mut found = match self.view.cluster_roles_matching(selector) {
            Lookup::Found(found) => found,
            Lookup::Missing => Vec::new(),
            Lookup::Unknown => {
                return Err(format!(
                    "the cluster view cannot list the ClusterRoles aggregated into ClusterRole {into} yet"
                ));
            }
        };
        for (name, facts) in default_cluster_roles() {
            if found.iter().any(|(n, _)| n == name)
                || !selector_matches(selector, |k| facts.label(k))
                || matches!(self.view.cluster_role(name), Lookup::Found(_))
            {
                continue;
            }
            found.push((name.clone(), facts.clone()));
        }
        found.retain(|(n, _)| n.as_ref() != into);
        Ok(found)
    }

    /// The ClusterRoles (in the view, or defaults it does not override) whose
    /// aggregationRule picks up a ClusterRole with these labels.
    fn aggregators_of(&self, labels: &BTreeMap<String, String>) -> NamedRoles {
        let mut found = match self.view.cluster_roles_aggregating(labels) {
            Lookup::Found(found) => found,
            _ => Vec::new(),
        };
        for (name, facts) in default_cluster_roles() {
            let picks_up = facts.aggregation.as_ref().is_some_and(|selectors| {
                selectors
                    .iter()
                    .any(|s| selector_matches(s, |k| labels.get(k).map(String::as_str)))
            });
            if picks_up
                && !found.iter().any(|(n, _)| n == name)
                && !matches!(self.view.cluster_role(name), Lookup::Found(_))
            {
                found.push((name.clone(), facts.clone()));
            }
        }
        found
    }
}

/// A role whose change would widen what bindings of GitLab identities (or impersonators)
/// hold, with the bindings concerned.
struct Widened {
    /// How the changed role reaches the bound one: `None` when it is the bound role itself.
    through: Option<Arc<str>>,
    broad: Vec<(Arc<BindingFacts>, Reasons)>,
    impersonation: Vec<(Arc<BindingFacts>, Targets, Vec<String>)>,
}

fn judge_role(ctx: &Context<'_, Settings>, settings: &Settings) -> Vec<Finding> {
    let Some(raw) = ctx.request.object else {
        return vec![Finding::violation(
            ID,
            format!("{} has no object in the request", ctx.object_ref()),
        )];
    };
    let new: RoleObject = match ctx.view_of(raw) {
        Ok(object) => object,
        // A role names no identity: whatever binds it is judged on its own.
        Err(e) => return vec![malformed(ctx, &e)],
    };
    let cluster_role = ctx.request.kind.kind == "ClusterRole";
    let old: Option<RoleObject> = match (ctx.request.operation, ctx.request.old_object) {
        (Operation::Update, Some(raw)) => ctx.view_of(raw).ok(),
        _ => None,
    };
    let name: Arc<str> = Arc::from(if new.metadata.name.is_empty() {
        ctx.request.name()
    } else {
        new.metadata.name.as_str()
    });
    let key = if cluster_role {
        RoleKey::ClusterRole { name: name.clone() }
    } else {
        let namespace = new
            .metadata
            .namespace
            .as_deref()
            .or(ctx.request.namespace())
            .unwrap_or_default();
        RoleKey::Role {
            namespace: Arc::from(namespace),
            name: name.clone(),
        }
    };
    let by_controller = settings
        .aggregation_controller_users
        .iter()
        .any(|u| u == &ctx.request.user_info.username);

    // Every rule of the object (and of the one it replaces) is summarized below.
    let rules = new.rules.len() + old.as_ref().map_or(0, |o| o.rules.len());
    if ctx
        .budget
        .charge(Resource::RbacRules, rules as u64)
        .is_err()
    {
        return Vec::new();
    }
    let cluster = Cluster::new(ctx.view, settings);
    let mut resolver = Resolver::new(ctx.view).within(ctx.budget);
    // The aggregation controller only copies rules: what it writes is judged as written.
    // Anyone else's change is judged by what the role will grant once aggregated.
    let summarize = |resolver: &mut Resolver<'_>, object: &RoleObject| {
        let mut summary = RuleSummary::of_rules(&object.rules);
        if cluster_role
            && !by_controller
            && let Some(aggregation) = &object.aggregation_rule
        {
            let mut visiting = vec![name.clone()];
            // A selector the view cannot answer yet adds nothing here; the bindings are
            // judged again when they change.
            let _ = resolver.aggregate_into(
                &mut summary,
                &name,
                &aggregation.cluster_role_selectors,
                &mut visiting,
            );
        }
        summary
    };
    let new_summary = summarize(&mut resolver, &new);
    let old_summary = old
        .as_ref()
        .map(|o| summarize(&mut resolver, o))
        .unwrap_or_default();

    let mut widened = Vec::new();
    let (reasons, targets) = new_summary.added_since(&old_summary);
    if !reasons.is_empty() || !targets.is_empty() {
        widened.extend(widen(&cluster, ctx.budget, None, &key, reasons, targets));
    }
    let grants_anything = !new_summary.reasons.is_empty() || !new_summary.impersonates.is_empty();
    if cluster_role && !by_controller && grants_anything {
        // Every ClusterRole that aggregates this one, and those that aggregate them.
        let mut queue = resolver.aggregators_of(&new.metadata.labels);
        let mut seen: HashSet<Arc<str>> = HashSet::from([name.clone()]);
        while let Some((target, facts)) = queue.pop() {
            if !seen.insert(target.clone()) {
                continue;
            }
            if resolver.spend(&name).is_err() {
                break;
            }
            let mut visiting = vec![target.clone()];
            let current = resolver
                .effective(&target, &facts, &mut visiting)
                .unwrap_or_else(|_| facts.summary.clone());
            let (reasons, targets) = new_summary.added_since(&current);
            if !reasons.is_empty() || !targets.is_empty() {
                let target_key = RoleKey::ClusterRole {
                    name: target.clone(),
                };
                if let Some(w) = widen(
                    &cluster,
                    ctx.budget,
                    Some(target.clone()),
                    &target_key,
                    reasons,
                    targets,
                ) {
                    widened.push(w);
                }
            }
            let labels: BTreeMap<String, String> = facts
                .labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            queue.extend(resolver.aggregators_of(&labels));
        }
    }

    let mut findings = Vec::new();
    let object = ctx.object_ref();
    if resolver.exhausted && grants_anything && !by_controller {
        // The roles this change widens were not all resolved: fail closed.
        findings.push(Finding::violation(
            ID,
            format!(
                "{object} grants {} and aggregates into ClusterRoles that aggregate more than {MAX_AGGREGATED_ROLES} ClusterRoles between them, more than fluxgate resolves in one review: it cannot tell which bindings of GitLab identities this change widens (fail closed). Remove the rule or the aggregation label, or the ClusterRoles that make the aggregation this large",
                describe_reasons(new_summary.reasons)
            ),
        ));
    }
    for w in widened {
        findings.extend(role_findings(
            &object,
            &key,
            &new_summary,
            settings,
            by_controller,
            w,
        ));
    }
    findings
}

/// The bindings of `role` that a change adding `reasons` and `targets` would widen: those
/// where an added right is broad, and those of catch-all groups to a read-only role that
/// gains writes.
fn widen(
    cluster: &Cluster<'_>,
    budget: &Budget,
    through: Option<Arc<str>>,
    role: &RoleKey,
    reasons: Reasons,
    targets: Targets,
) -> Option<Widened> {
    let settings = cluster.settings;
    let Lookup::Found(bindings) = cluster.view.bindings_to(role) else {
        return None;
    };
    let mut widened = Widened {
        through,
        broad: Vec::new(),
        impersonation: Vec::new(),
    };
    for binding in bindings {
        if budget
            .charge(Resource::RbacSubjects, binding.subjects.len() as u64)
            .is_err()
        {
            break;
        }
        let reach = cluster.placement(&binding).reach;
        let (reads_denied, reads_warned) = settings.split_reads(reasons);
        let mut broad = reach.broad(reasons).union(reads_denied).union(reads_warned);
        let narrow_subjects = gitlab_subjects(&binding.subjects)
            .iter()
            .any(|s| s.identity.is_catch_all() || s.identity.is_per_job());
        if reasons.contains(Reason::Write) && narrow_subjects && settings.is_read_only(role) {
            broad.insert(Reason::Write);
        }
        if !broad.is_empty() && !judged_subject_names(&binding.subjects).is_empty() {
            widened.broad.push((binding.clone(), broad));
        }
        let imp = reach.impersonation(targets);
        if !imp.is_empty() {
            let offenders: Vec<String> = binding
                .subjects
                .iter()
                .filter(|s| !cluster.may_impersonate(s))
                .map(|s| s.to_string())
                .collect();
            if !offenders.is_empty() {
                widened
                    .impersonation
                    .push((binding.clone(), imp, offenders));
            }
        }
    }
    (!widened.broad.is_empty() || !widened.impersonation.is_empty()).then_some(widened)
}

fn role_findings(
    object: &str,
    key: &RoleKey,
    summary: &RuleSummary,
    settings: &Settings,
    by_controller: bool,
    widened: Widened,
) -> Vec<Finding> {
    let how = match &widened.through {
        None => format!("{key}"),
        Some(target) => format!(
            "ClusterRole {target}, which aggregates {key} (its labels match {target}'s aggregationRule),"
        ),
    };
    let mut problems = Problems::default();
    if !widened.broad.is_empty() {
        let reasons = widened
            .broad
            .iter()
            .fold(Reasons::default(), |acc, (_, r)| acc.union(*r));
        let bindings = quote(widened.broad.iter().map(|(b, _)| {
            let subjects = judged_subject_names(&b.subjects);
            format!("{b} ({})", subjects.join(", "))
        }));
        let only_reads = reasons
            .minus(Reasons::of(&[Reason::WildcardResourceRead]))
            .is_empty();
        let what = if reasons == Reasons::of(&[Reason::Write]) {
            format!(
                "this change makes {how} grant writes, but it is listed in readOnlyRoles for the catch-all groups bound to it by {bindings}"
            )
        } else {
            format!(
                "this change makes {how} broad while GitLab identities are bound to it by {bindings}"
            )
        };
        problems.push(
            if by_controller || (only_reads && settings.wildcard_reads == Response::Warn) {
                Response::Warn
            } else if reasons == Reasons::of(&[Reason::Write]) {
                settings.catch_all_subjects
            } else {
                settings.broad_roles
            },
            format!(
                "{what}: {}",
                summary.explain(reasons, Targets::default(), MAX_QUOTED)
            ),
        );
    }
    if !widened.impersonation.is_empty() {
        let targets = widened
            .impersonation
            .iter()
            .fold(Targets::default(), |acc, (_, t, _)| acc.union(*t));
        let bindings = quote(
            widened
                .impersonation
                .iter()
                .map(|(b, _, offenders)| format!("{b} ({})", offenders.join(", "))),
        );
        problems.push(
            if by_controller { Response::Warn } else { settings.impersonation },
            format!(
                "this change makes {how} grant impersonation of {} to {bindings}: {}. That is the key to every identity the GitLab agent impersonates; only the agent's ServiceAccount may hold it (agentServiceAccounts)",
                describe_targets(targets),
                summary.explain(Reasons::default(), targets, MAX_QUOTED)
            ),
        );
    }
    let header = if by_controller {
        format!(
            "{object} was updated by the clusterrole-aggregation controller, which copies the rules of the ClusterRoles labelled to aggregate into it (reported, never denied):"
        )
    } else {
        format!("{object}:")
    };
    let alternative = if by_controller {
        "Find the ClusterRole that carries these rules and aggregates into it (its rbac.authorization.k8s.io/aggregate-to-* label) and remove the rule or the label."
    } else if widened.through.is_some() {
        "Remove the rule, or the label that aggregates this ClusterRole; bind GitLab identities to a namespaced Role with only what their jobs deploy."
    } else {
        "Remove or narrow the rule, or bind GitLab identities to a narrower namespaced Role, one RoleBinding per project environment (gitlab:project_env:<project id>:<environment slug>)."
    };
    problems.into_findings(&header, alternative)
}

/// The rights a summary names, for a message that quotes no rule.
fn describe_reasons(reasons: Reasons) -> String {
    let named: Vec<&str> = Reach::Cluster
        .broad(reasons)
        .iter()
        .map(|r| r.describe())
        .collect();
    if named.is_empty() {
        "what it grants".to_string()
    } else {
        quote(named.into_iter().map(str::to_string))
    }
}

/// The first few items, then how many more there are.
fn quote(items: impl Iterator<Item = String>) -> String {
    let all: Vec<String> = items.collect();
    let mut text = all
        .iter()
        .take(MAX_QUOTED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if all.len() > MAX_QUOTED {
        let _ = write!(text, " and {} more", all.len() - MAX_QUOTED);
    }
    text
}
