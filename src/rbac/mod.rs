//! RBAC rule breadth: which rules of a Role or ClusterRole open one of the privilege
//! escalation paths Kubernetes documents, and which hand out impersonation (the key to every
//! identity the GitLab agent impersonates).
//!
//! The paths are those of Kubernetes' "Role Based Access Control Good Practices"
//! (kubernetes.io/docs/concepts/security/rbac-good-practices, section "Kubernetes RBAC -
//! privilege escalation risks"), one [`Reason`] or more for each. Whether a right is broad
//! depends on where a binding hands it out, its [`Reach`]: creating a Deployment in the
//! namespace a deploy job owns is what the job is for; the same right in every namespace, or
//! in kube-system or Flux's namespace, makes the job cluster-admin.
//!
//! | Good-practice section           | Reason                               | Broad from  |
//! |---------------------------------|--------------------------------------|-------------|
//! | Listing secrets                 | `SecretsRead` (get, list, watch)     | Protected   |
//! | Workload creation               | `WorkloadWrite` (pods, controllers)  | Protected   |
//! |                                 | `FluxWrite` (what Flux applies)      | Protected   |
//! |                                 | `PodsExec`, `PodsAttach`,            | Namespace   |
//! |                                 | `EphemeralContainers` (exec by       |             |
//! |                                 | another name)                        |             |
//! | Persistent volume creation      | `PersistentVolumeWrite`              | Cluster     |
//! | Access to `proxy` of Nodes      | `NodesProxy` (`get` is enough)       | Cluster     |
//! | Escalate verb                   | `Escalate`                           | Environment |
//! | Bind verb                       | `Bind`                               | Environment |
//! | Impersonate verb                | `ImpersonateIdentity` (users,        | Environment |
//! |                                 | groups, uids)                        |             |
//! |                                 | `ImpersonateServiceAccount`          | Protected   |
//! | CSRs and certificate issuing    | `CsrApproval` (approve or sign)      | Cluster     |
//! | Token request                   | `TokenRequest` (serviceaccounts/token)| Protected  |
//! |                                 | `SecretsWrite` (a service-account-   | Protected   |
//! |                                 | token Secret gets a token)           |             |
//! | Control admission webhooks      | `AdmissionWrite` (webhooks and       | Cluster     |
//! |                                 | admission policies, and bindings)    |             |
//! | Namespace modification          | `NamespaceWrite` (update, patch)     | Environment |
//! | Least privilege (RBAC itself)   | `RbacWrite` (Roles, RoleBindings)    | Namespace   |
//! |                                 | `ClusterRbacWrite`                   | Cluster     |
//! | (extending the API)             | `CrdWrite`, `ApiServiceWrite`        | Cluster     |
//! | Least privilege (wildcards)     | `AllNonResourceUrls`                 | Cluster     |
//!
//! "Broad from" is the narrowest reach where the right is broad; it is broad at every wider
//! one. The reaches, narrowest first: [`Reach::Environment`] (a RoleBinding that gives one
//! environment of one project power in a namespace made for it, see `ci-impersonation`),
//! [`Reach::Namespace`] (a RoleBinding in any other namespace), [`Reach::Protected`] (a
//! RoleBinding in kube-system, Flux's, fluxgate's or the agent's namespace, where a workload
//! or a token is the cluster's own) and [`Reach::Cluster`] (a ClusterRoleBinding). Rights on
//! cluster-scoped resources (nodes, PersistentVolumes, CSRs, webhook configurations, CRDs,
//! APIServices, ClusterRoles) are only ever granted by a ClusterRoleBinding: a RoleBinding
//! hands them to nobody, so they are broad at [`Reach::Cluster`] only. Namespaces are the
//! exception the good practices point out: a RoleBinding grants `patch` on its own Namespace
//! object, and so its labels (Pod Security, NetworkPolicy selectors, fluxgate's exemptions).
//!
//! Wildcards are judged by what they reach, as the authorizer matches them: `*` matches every
//! verb, API group and resource, `*/<subresource>` that subresource of every resource, and a
//! `nonResourceURLs` entry ending in `*` is a prefix. `{apiGroups: ["*"], resources: ["*"],
//! verbs: ["*"]}` opens every path above; `{apiGroups: [apps], resources: [deployments],
//! verbs: ["*"]}` is workload creation, like the verbs written out. A wildcard read of named
//! API groups other than the core one (Flux's `flux-view`, which aggregates into `view`)
//! reaches no secret and no credential: it is kept apart as [`Reason::WildcardResourceRead`]
//! and judged as configured (`wildcardReads`), and [`Reason::Write`] marks any rule that
//! writes, for the roles that must stay read-only.
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

/// The API groups whose objects Flux applies or builds on: writing one is deploying, as
/// whatever Flux applies with (cluster-admin in Flux's own namespace).
const FLUX_WRITES: &[(&str, &[&str])] = &[
    (
        "source.toolkit.fluxcd.io",
        &[
            "gitrepositories",
            "ocirepositories",
            "helmrepositories",
            "helmcharts",
            "buckets",
            "externalartifacts",
        ],
    ),
    ("source.extensions.fluxcd.io", &["*"]),
    ("kustomize.toolkit.fluxcd.io", &["kustomizations"]),
    ("helm.toolkit.fluxcd.io", &["helmreleases"]),
    (
        "image.toolkit.fluxcd.io",
        &[
            "imagepolicies",
            "imagerepositories",
            "imageupdateautomations",
        ],
    ),
];

/// Pods and the controllers that make them, by API group.
const WORKLOADS: &[(&str, &[&str])] = &[
    ("", &["pods", "replicationcontrollers"]),
    (
        "apps",
        &["deployments", "replicasets", "statefulsets", "daemonsets"],
    ),
    ("batch", &["jobs", "cronjobs"]),
    ("extensions", &["deployments", "replicasets", "daemonsets"]),
];

/// The verbs that create or change an object (not delete it).
const CREATE_VERBS: &[&str] = &["create", "update", "patch"];

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

    /// `resource` is `name` or `name/subresource`, as the authorizer combines them; `*`
    /// asks whether the rule covers some resource of the group it is asked with.
    fn resource(&self, resource: &str) -> bool {
        if resource == "*" {
            return !self.resources.is_empty();
        }
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

    fn has_wildcard(&self) -> bool {
        let star = |list: &[String]| list.iter().any(|x| x == "*" || x.starts_with("*/"));
        star(&self.verbs) || star(&self.api_groups) || star(&self.resources)
    }

    /// Which escalation paths this rule opens, and what else a judgement needs to know of it
    /// ([`Reason::Write`], [`Reason::WildcardResourceRead`]), whatever the reach it is bound
    /// with: [`Reach::broad`] keeps those that are broad where it is bound.
    pub fn reasons(&self) -> Reasons {
        let mut reasons = Reasons::default();
        if self.verbs.is_empty() {
            return reasons;
        }
        if self.verbs.iter().any(|v| !READ_VERBS.contains(&v.as_str())) {
            reasons.insert(Reason::Write);
        }
        if self.all_non_resource_urls() {
            reasons.insert(Reason::AllNonResourceUrls);
        }
        if self.resources.is_empty() {
            return reasons;
        }
        let read_only = self.verbs.iter().all(|v| READ_VERBS.contains(&v.as_str()));
        let named_groups = !self.api_groups.is_empty()
            && self.api_groups.iter().all(|g| !g.is_empty() && g != "*");
        if read_only && named_groups && self.resources.iter().any(|r| r == "*") {
            reasons.insert(Reason::WildcardResourceRead);
        }

        let writes = self.any_verb(WRITE_VERBS);
        let creates = self.any_verb(CREATE_VERBS);
        let connects = self.any_verb(CONNECT_VERBS);
        let rbac_kinds = ["roles", "clusterroles"];
        let mut add = |yes: bool, reason: Reason| {
            if yes {
                reasons.insert(reason);
            }
        };
        // Listing secrets; a service-account-token Secret is given a token for its account.
        add(
            self.any_verb(READ_VERBS) && self.any_resource("", &["secrets"]),
            Reason::SecretsRead,
        );
        add(
            creates && self.any_resource("", &["secrets"]),
            Reason::SecretsWrite,
        );
        // Workload creation, and Flux's objects, which deploy whatever they point at.
        add(
            creates
                && WORKLOADS
                    .iter()
                    .any(|(group, kinds)| self.any_resource(group, kinds)),
            Reason::WorkloadWrite,
        );
        add(
            creates
                && FLUX_WRITES
                    .iter()
                    .any(|(group, kinds)| self.any_resource(group, kinds)),
            Reason::FluxWrite,
        );
        add(
            connects && self.any_resource("", &["pods/exec"]),
            Reason::PodsExec,
        );
        add(
            connects && self.any_resource("", &["pods/attach"]),
            Reason::PodsAttach,
        );
        add(
            self.any_verb(&["update", "patch"])
                && self.any_resource("", &["pods/ephemeralcontainers"]),
            Reason::EphemeralContainers,
        );
        // Persistent volume creation (hostPath), and the kubelet API.
        add(
            creates && self.any_resource("", &["persistentvolumes"]),
            Reason::PersistentVolumeWrite,
        );
        add(
            connects && self.any_resource("", &["nodes/proxy"]),
            Reason::NodesProxy,
        );
        // The escalate, bind and impersonate verbs.
        add(
            self.verb("escalate") && self.any_resource(GROUP, &rbac_kinds),
            Reason::Escalate,
        );
        add(
            self.verb("bind") && self.any_resource(GROUP, &rbac_kinds),
            Reason::Bind,
        );
        let impersonates = self.verb("impersonate");
        add(
            impersonates
                && (self.any_resource("", &["users", "groups"])
                    || self.any_resource("authentication.k8s.io", &["uids"])),
            Reason::ImpersonateIdentity,
        );
        add(
            impersonates && self.any_resource("", &["serviceaccounts"]),
            Reason::ImpersonateServiceAccount,
        );
        // CSRs and certificate issuing: approving (or signing) a request for a client signer
        // mints a certificate with any name.
        add(
            (self.any_verb(&["update", "patch"])
                && self.any_resource(
                    "certificates.k8s.io",
                    &[
                        "certificatesigningrequests/approval",
                        "certificatesigningrequests/status",
                    ],
                ))
                || (self.any_verb(&["approve", "sign"])
                    && self.any_resource("certificates.k8s.io", &["signers"])),
            Reason::CsrApproval,
        );
        // Token request.
        add(
            self.verb("create") && self.any_resource("", &["serviceaccounts/token"]),
            Reason::TokenRequest,
        );
        // Control admission webhooks (and the admission policies that replace them).
        add(
            writes
                && self.any_resource(
                    "admissionregistration.k8s.io",
                    &[
                        "validatingwebhookconfigurations",
                        "mutatingwebhookconfigurations",
                        "validatingadmissionpolicies",
                        "validatingadmissionpolicybindings",
                        "mutatingadmissionpolicies",
                        "mutatingadmissionpolicybindings",
                    ],
                ),
            Reason::AdmissionWrite,
        );
        // Namespace modification: labels decide Pod Security and fluxgate's exemptions.
        add(
            self.any_verb(&["update", "patch"]) && self.any_resource("", &["namespaces"]),
            Reason::NamespaceWrite,
        );
        add(
            writes && self.any_resource(GROUP, &["roles", "rolebindings"]),
            Reason::RbacWrite,
        );
        add(
            writes && self.any_resource(GROUP, &["clusterroles", "clusterrolebindings"]),
            Reason::ClusterRbacWrite,
        );
        add(
            writes && self.any_resource("apiextensions.k8s.io", &["customresourcedefinitions"]),
            Reason::CrdWrite,
        );
        add(
            writes && self.any_resource("apiregistration.k8s.io", &["apiservices"]),
            Reason::ApiServiceWrite,
        );
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

/// Why a rule is broad: the escalation path it opens (see the table in the module doc), or
/// what else a judgement needs to know of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    SecretsRead,
    SecretsWrite,
    WorkloadWrite,
    FluxWrite,
    PodsExec,
    PodsAttach,
    EphemeralContainers,
    PersistentVolumeWrite,
    NodesProxy,
    Escalate,
    Bind,
    ImpersonateIdentity,
    ImpersonateServiceAccount,
    CsrApproval,
    TokenRequest,
    AdmissionWrite,
    NamespaceWrite,
    RbacWrite,
    ClusterRbacWrite,
    CrdWrite,
    ApiServiceWrite,
    AllNonResourceUrls,
    /// `*` in resources with read verbs only, in named API groups other than the core one:
    /// no secret, no credential; judged as `wildcardReads` says.
    WildcardResourceRead,
    /// Any verb but get, list and watch: not broad, but a read-only role must not have it.
    Write,
}

impl Flag for Reason {
    const ALL: &'static [Reason] = &[
        Reason::SecretsRead,
        Reason::SecretsWrite,
        Reason::WorkloadWrite,
        Reason::FluxWrite,
        Reason::PodsExec,
        Reason::PodsAttach,
        Reason::EphemeralContainers,
        Reason::PersistentVolumeWrite,
        Reason::NodesProxy,
        Reason::Escalate,
        Reason::Bind,
        Reason::ImpersonateIdentity,
        Reason::ImpersonateServiceAccount,
        Reason::CsrApproval,
        Reason::TokenRequest,
        Reason::AdmissionWrite,
        Reason::NamespaceWrite,
        Reason::RbacWrite,
        Reason::ClusterRbacWrite,
        Reason::CrdWrite,
        Reason::ApiServiceWrite,
        Reason::AllNonResourceUrls,
        Reason::WildcardResourceRead,
        Reason::Write,
    ];
    fn index(self) -> u8 {
        self as u8
    }
}

impl Reason {
    /// The right, as messages name it.
    pub fn describe(self) -> &'static str {
        match self {
            Reason::SecretsRead => "read of secrets (get, list or watch reveal their values)",
            Reason::SecretsWrite => {
                "writes to secrets (a service-account-token Secret is given a token for its ServiceAccount)"
            }
            Reason::WorkloadWrite => {
                "workload creation (a pod runs as any ServiceAccount and mounts any Secret of its namespace)"
            }
            Reason::FluxWrite => {
                "writes to Flux objects (Flux applies what they point at, as its controllers)"
            }
            Reason::PodsExec => "pods/exec (commands in running pods)",
            Reason::PodsAttach => "pods/attach (the terminals of running pods)",
            Reason::EphemeralContainers => {
                "pods/ephemeralcontainers (a container added to a running pod: exec by another name)"
            }
            Reason::PersistentVolumeWrite => {
                "creation of PersistentVolumes (hostPath: the node's filesystem)"
            }
            Reason::NodesProxy => "nodes/proxy (the kubelet API: commands in every pod of a node)",
            Reason::Escalate => "the escalate verb (grant permissions one does not hold)",
            Reason::Bind => "the bind verb (bind roles one does not hold)",
            Reason::ImpersonateIdentity => "impersonation of users, groups or uids",
            Reason::ImpersonateServiceAccount => "impersonation of serviceaccounts",
            Reason::CsrApproval => {
                "approval or signing of CertificateSigningRequests (client certificates with any name)"
            }
            Reason::TokenRequest => {
                "create on serviceaccounts/token (a token for any ServiceAccount)"
            }
            Reason::AdmissionWrite => {
                "writes to admission webhook configurations or admission policies"
            }
            Reason::NamespaceWrite => {
                "update or patch of namespaces (their Pod Security and exemption labels)"
            }
            Reason::RbacWrite => "writes to RBAC objects (Roles, RoleBindings)",
            Reason::ClusterRbacWrite => {
                "writes to RBAC objects (ClusterRoles, ClusterRoleBindings)"
            }
            Reason::CrdWrite => "writes to CustomResourceDefinitions (conversion webhooks)",
            Reason::ApiServiceWrite => "writes to APIServices (an API group served by any Service)",
            Reason::AllNonResourceUrls => "nonResourceURLs `*`",
            Reason::WildcardResourceRead => {
                "`*` in resources (read of every resource of its API groups)"
            }
            Reason::Write => "writes",
        }
    }

    /// The narrowest reach at which this right is broad; `None` for what is never broad by
    /// itself ([`Reason::Write`], [`Reason::WildcardResourceRead`]).
    pub fn broad_from(self) -> Option<Reach> {
        Some(match self {
            Reason::Escalate
            | Reason::Bind
            | Reason::ImpersonateIdentity
            | Reason::NamespaceWrite => Reach::Environment,
            Reason::PodsExec
            | Reason::PodsAttach
            | Reason::EphemeralContainers
            | Reason::RbacWrite => Reach::Namespace,
            Reason::SecretsRead
            | Reason::SecretsWrite
            | Reason::WorkloadWrite
            | Reason::FluxWrite
            | Reason::ImpersonateServiceAccount
            | Reason::TokenRequest => Reach::Protected,
            Reason::PersistentVolumeWrite
            | Reason::NodesProxy
            | Reason::CsrApproval
            | Reason::AdmissionWrite
            | Reason::ClusterRbacWrite
            | Reason::CrdWrite
            | Reason::ApiServiceWrite
            | Reason::AllNonResourceUrls => Reach::Cluster,
            Reason::WildcardResourceRead | Reason::Write => return None,
        })
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

/// Where a binding hands out its role's rules, narrowest first (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reach {
    /// A RoleBinding that gives one environment's identity power in a namespace made for it.
    Environment,
    /// A RoleBinding in any other namespace that is not protected.
    Namespace,
    /// A RoleBinding in a protected namespace (kube-system, Flux's, fluxgate's, the agent's).
    Protected,
    /// A ClusterRoleBinding: every namespace and the cluster-scoped resources.
    Cluster,
}

impl Reach {
    /// The reasons that make a role broad at this reach.
    pub fn broad(self, reasons: Reasons) -> Reasons {
        let mut broad = Reasons::default();
        for reason in reasons.iter() {
            if reason.broad_from().is_some_and(|from| from <= self) {
                broad.insert(reason);
            }
        }
        broad
    }

    /// The impersonation a binding with this reach actually hands out. The API server
    /// authorizes impersonation of users, groups and uids without a namespace, which only
    /// ClusterRoleBindings grant; a RoleBinding lets its subjects impersonate the service
    /// accounts of its own namespace (what `edit` and `admin` grant by design), which in a
    /// protected namespace are the cluster's own. A RoleBinding that names users, groups or
    /// uids is still reported: it shows someone meant to hand identity impersonation out.
    pub fn impersonation(self, targets: Targets) -> Targets {
        let mut targets = targets;
        if self < Reach::Protected {
            targets.remove(Target::ServiceAccounts);
        }
        targets
    }

    /// Where, as messages say it.
    pub fn describe(self, namespace: Option<&str>) -> String {
        match (self, namespace) {
            (Reach::Cluster, _) | (_, None) => "in every namespace".into(),
            // A RoleBinding without metadata.namespace (a manifest fluxgate check reads).
            (_, Some("")) => {
                "in the namespace it is applied to (the RoleBinding sets no metadata.namespace)"
                    .into()
            }
            (Reach::Protected, Some(ns)) => format!("in the protected namespace {ns}"),
            (Reach::Environment, Some(ns)) => {
                format!("in namespace {ns}, the environment's own")
            }
            (Reach::Namespace, Some(ns)) => format!("in namespace {ns}"),
        }
    }
}

/// Whether an identity (a user name and its groups) is one that Kubernetes itself makes
/// powerful, whatever the RBAC objects say; returns why. `system:masters` bypasses RBAC
/// altogether; kubeadm binds `kubeadm:cluster-admins` to cluster-admin; a node's identity
/// reads the Secrets of every pod on the node; the control plane's users and kube-system's
/// ServiceAccounts (the controllers') hold what the controllers need, which includes
/// creating tokens and pods anywhere.
pub fn well_known_privileged(username: &str, groups: &[String]) -> Option<String> {
    const GROUPS: &[(&str, &str)] = &[
        (
            "system:masters",
            "bypasses RBAC and every authorization webhook",
        ),
        (
            "kubeadm:cluster-admins",
            "is bound to cluster-admin by kubeadm",
        ),
        ("system:nodes", "is every node's identity"),
        (
            "system:serviceaccounts:kube-system",
            "holds what every kube-system ServiceAccount holds",
        ),
    ];
    const USERS: &[(&str, &str)] = &[
        (
            "system:kube-controller-manager",
            "is the controller manager's identity",
        ),
        ("system:kube-scheduler", "is the scheduler's identity"),
        ("system:admin", "is the API server's loopback administrator"),
    ];
    for group in groups {
        if let Some((_, why)) = GROUPS.iter().find(|(g, _)| g == group) {
            return Some(format!("the group {group} {why}"));
        }
    }
    if let Some((_, why)) = USERS.iter().find(|(u, _)| *u == username) {
        return Some(format!("the user {username} {why}"));
    }
    if username.starts_with("system:node:") {
        return Some(format!("the user {username} is a node's identity"));
    }
    if let Some(account) = username.strip_prefix("system:serviceaccount:kube-system:") {
        return Some(format!(
            "the user {username} is kube-system's ServiceAccount {account}, a controller's identity"
        ));
    }
    None
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

/// How many rights of one example rule a message names before saying "and N more".
const MAX_RIGHTS_QUOTED: usize = 6;

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
            // The rights that escape the furthest first.
            let mut named: Vec<Reason> = example.reasons.intersection(reasons).iter().collect();
            named.sort_by_key(|r| r.broad_from().unwrap_or(Reach::Cluster));
            let mut what: Vec<String> = named.iter().map(|r| r.describe().to_string()).collect();
            let impersonates = example.impersonates.intersection(targets);
            if !impersonates.is_empty() {
                what.push(format!(
                    "impersonation of {}",
                    describe_targets(impersonates)
                ));
            }
            let more = what.len().saturating_sub(MAX_RIGHTS_QUOTED);
            what.truncate(MAX_RIGHTS_QUOTED);
            if more > 0 {
                what.push(format!("and {more} more"));
            }
            let through = if example.rule.has_wildcard() {
                " (through `*`, which also matches what later releases and CRDs add)"
            } else {
                ""
            };
            let _ = write!(text, " grants {}{through}", what.join(", "));
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

    /// The reasons that make a rule broad somewhere (not `Write` or wildcard reads).
    fn paths(rule: &PolicyRule) -> Reasons {
        Reach::Cluster.broad(rule.reasons())
    }

    #[test]
    fn each_escalation_path_is_recognised_alone() {
        let cases = [
            (rule(&[""], &["secrets"], &["list"]), Reason::SecretsRead),
            (rule(&[""], &["secrets"], &["create"]), Reason::SecretsWrite),
            (rule(&[""], &["pods"], &["create"]), Reason::WorkloadWrite),
            (
                rule(&["apps"], &["deployments"], &["patch"]),
                Reason::WorkloadWrite,
            ),
            (
                rule(&["batch"], &["cronjobs"], &["update"]),
                Reason::WorkloadWrite,
            ),
            (
                rule(
                    &["kustomize.toolkit.fluxcd.io"],
                    &["kustomizations"],
                    &["create"],
                ),
                Reason::FluxWrite,
            ),
            (
                rule(
                    &["source.toolkit.fluxcd.io"],
                    &["gitrepositories"],
                    &["patch"],
                ),
                Reason::FluxWrite,
            ),
            (rule(&[""], &["pods/exec"], &["create"]), Reason::PodsExec),
            (rule(&[""], &["pods/exec"], &["get"]), Reason::PodsExec),
            (
                rule(&[""], &["pods/attach"], &["create"]),
                Reason::PodsAttach,
            ),
            (
                rule(&[""], &["pods/ephemeralcontainers"], &["patch"]),
                Reason::EphemeralContainers,
            ),
            (
                rule(&[""], &["persistentvolumes"], &["create"]),
                Reason::PersistentVolumeWrite,
            ),
            (rule(&[""], &["nodes/proxy"], &["get"]), Reason::NodesProxy),
            (
                rule(&[GROUP], &["clusterroles"], &["escalate"]),
                Reason::Escalate,
            ),
            (rule(&[GROUP], &["roles"], &["bind"]), Reason::Bind),
            (
                rule(&[""], &["users"], &["impersonate"]),
                Reason::ImpersonateIdentity,
            ),
            (
                rule(&["authentication.k8s.io"], &["uids"], &["impersonate"]),
                Reason::ImpersonateIdentity,
            ),
            (
                rule(&[""], &["serviceaccounts"], &["impersonate"]),
                Reason::ImpersonateServiceAccount,
            ),
            (
                rule(
                    &["certificates.k8s.io"],
                    &["certificatesigningrequests/approval"],
                    &["update"],
                ),
                Reason::CsrApproval,
            ),
            (
                rule(&["certificates.k8s.io"], &["signers"], &["approve"]),
                Reason::CsrApproval,
            ),
            (
                rule(&[""], &["serviceaccounts/token"], &["create"]),
                Reason::TokenRequest,
            ),
            (
                rule(
                    &["admissionregistration.k8s.io"],
                    &["validatingwebhookconfigurations"],
                    &["delete"],
                ),
                Reason::AdmissionWrite,
            ),
            (
                rule(
                    &["admissionregistration.k8s.io"],
                    &["validatingadmissionpolicybindings"],
                    &["create"],
                ),
                Reason::AdmissionWrite,
            ),
            (
                rule(&[""], &["namespaces"], &["patch"]),
                Reason::NamespaceWrite,
            ),
            (
                rule(&[GROUP], &["rolebindings"], &["create"]),
                Reason::RbacWrite,
            ),
            (
                rule(&[GROUP], &["clusterrolebindings"], &["deletecollection"]),
                Reason::ClusterRbacWrite,
            ),
            (
                rule(
                    &["apiextensions.k8s.io"],
                    &["customresourcedefinitions"],
                    &["create"],
                ),
                Reason::CrdWrite,
            ),
            (
                rule(&["apiregistration.k8s.io"], &["apiservices"], &["update"]),
                Reason::ApiServiceWrite,
            ),
        ];
        for (rule, expected) in cases {
            assert_eq!(
                paths(&rule),
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
        assert_eq!(paths(&urls), Reasons::of(&[Reason::AllNonResourceUrls]));
    }

    #[test]
    fn wildcards_are_judged_by_what_they_reach() {
        // `*` verbs on deployments are the verbs written out: workload creation.
        let star_verbs = rule(&["apps"], &["deployments"], &["*"]);
        let written = rule(
            &["apps"],
            &["deployments"],
            &[
                "get", "list", "watch", "create", "update", "patch", "delete",
            ],
        );
        assert_eq!(paths(&star_verbs), paths(&written));
        // `*/*/*` opens every path.
        let everything = paths(&rule(&["*"], &["*"], &["*"]));
        for reason in Reason::ALL {
            if reason.broad_from().is_some() && *reason != Reason::AllNonResourceUrls {
                assert!(everything.contains(*reason), "{reason:?}");
            }
        }
        // `*/exec` is exec on pods; `*` in apiGroups reaches the core group.
        assert!(paths(&rule(&[""], &["*/exec"], &["get"])).contains(Reason::PodsExec));
        assert!(paths(&rule(&["*"], &["secrets"], &["get"])).contains(Reason::SecretsRead));
        // A read of `*` in the core group reaches secrets and exec (get is enough).
        let core = paths(&rule(&[""], &["*"], &["get"]));
        assert!(core.contains(Reason::SecretsRead) && core.contains(Reason::PodsExec));
    }

    #[test]
    fn wildcard_reads_of_named_groups_reach_no_credential() {
        let flux_view = rule(
            &["source.toolkit.fluxcd.io", "kustomize.toolkit.fluxcd.io"],
            &["*"],
            &["get", "list", "watch"],
        );
        assert_eq!(
            flux_view.reasons(),
            Reasons::of(&[Reason::WildcardResourceRead])
        );
        assert!(paths(&flux_view).is_empty());
        // The same wildcard with writes is writing Flux objects: deploying.
        let flux_edit = rule(
            &["source.toolkit.fluxcd.io", "kustomize.toolkit.fluxcd.io"],
            &["*"],
            &["create", "patch"],
        );
        assert_eq!(paths(&flux_edit), Reasons::of(&[Reason::FluxWrite]));
        assert!(flux_edit.reasons().contains(Reason::Write));
        // Writes to every resource of some other group open no documented path.
        assert!(paths(&rule(&["example.com"], &["*"], &["get", "patch"])).is_empty());
    }

    #[test]
    fn narrow_rules_open_no_path() {
        for rule in [
            rule(&["apps"], &["deployments"], &["get", "list", "delete"]),
            rule(&[""], &["secrets"], &["delete"]),
            rule(&[GROUP], &["roles"], &["get", "list", "watch"]),
            rule(&[""], &["pods", "pods/log"], &["get"]),
            rule(&[""], &["pods/exec"], &["list"]),
            rule(&["example.com"], &["secrets"], &["get"]),
            rule(&[""], &["namespaces"], &["get", "create"]),
            rule(
                &["apiextensions.k8s.io"],
                &["customresourcedefinitions"],
                &["get"],
            ),
            rule(
                &["certificates.k8s.io"],
                &["certificatesigningrequests"],
                &["create"],
            ),
            rule(&["apps"], &["deployments"], &[]),
        ] {
            assert!(paths(&rule).is_empty(), "{}", render_rule(&rule));
        }
        let health = PolicyRule {
            non_resource_urls: vec!["/healthz".into(), "/livez/*".into()],
            verbs: vec!["get".into()],
            ..PolicyRule::default()
        };
        assert!(paths(&health).is_empty());
    }

    #[test]
    fn reach_decides_what_is_broad() {
        let workload = rule(&["apps"], &["deployments"], &["create"]).reasons();
        assert!(Reach::Namespace.broad(workload).is_empty());
        assert!(!Reach::Protected.broad(workload).is_empty());
        let exec = rule(&[""], &["pods/exec"], &["create"]).reasons();
        assert!(Reach::Environment.broad(exec).is_empty());
        assert!(!Reach::Namespace.broad(exec).is_empty());
        let label = rule(&[""], &["namespaces"], &["patch"]).reasons();
        assert!(!Reach::Environment.broad(label).is_empty());
        // Cluster-scoped resources: a RoleBinding hands them to nobody.
        let webhooks = rule(
            &["admissionregistration.k8s.io"],
            &["mutatingwebhookconfigurations"],
            &["create"],
        )
        .reasons();
        assert!(Reach::Protected.broad(webhooks).is_empty());
        assert!(!Reach::Cluster.broad(webhooks).is_empty());
        // Every reason broad at a reach is broad at every wider one.
        let all = Reasons::of(Reason::ALL);
        for pair in [
            Reach::Environment,
            Reach::Namespace,
            Reach::Protected,
            Reach::Cluster,
        ]
        .windows(2)
        {
            let (narrow, wide) = (pair[0].broad(all), pair[1].broad(all));
            assert!(narrow.minus(wide).is_empty(), "{pair:?}");
            assert_ne!(narrow, wide, "{pair:?}");
        }
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
        assert!(paths(&rule(&["*"], &["*"], &["*"])).contains(Reason::ImpersonateIdentity));
        // A RoleBinding's service account impersonation is its own namespace's.
        let accounts = Targets::of(&[Target::ServiceAccounts]);
        assert!(Reach::Namespace.impersonation(accounts).is_empty());
        assert_eq!(Reach::Protected.impersonation(accounts), accounts);
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
            Reach::Cluster.broad(summary.reasons),
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
    fn a_wildcard_rule_is_explained_by_what_it_reaches() {
        let summary = RuleSummary::of_rules(&[rule(&["*"], &["*"], &["*"])]);
        let text = summary.explain(Reach::Cluster.broad(summary.reasons), Targets::default(), 3);
        // The rights that escape furthest come first.
        assert!(text.contains("grants the escalate verb"), "{text}");
        assert!(text.contains("and 15 more"), "{text}");
        assert!(text.contains("through `*`"), "{text}");
    }
}
