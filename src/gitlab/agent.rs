//! Recognising a GitLab agent (agentk) object, and the facts about it that identity needs.
//!
//! An object is an agent object when it is one of the kinds that run or install agentk
//! ([`AgentKind`]) and
//! - one of its containers (regular, init or ephemeral, in the object or its pod template)
//!   runs an image whose repository ends with `gitlab-agent/agentk` (any registry or mirror,
//!   any tag or digest) or matches a configured pattern ([`AgentDetector`]), or
//! - one of its containers passes agentk's `--kas-address` flag to the program it runs, as the
//!   kubelet and a shell read its command line ([`crate::kubelet::find_flag`]: after `$(VAR)`
//!   expansion from the container's `env`, and inside `sh -c` scripts): agentk pulled by
//!   digest from a mirror under another name is still the program that connects to GitLab, or
//! - it carries the labels of GitLab's `gitlab-agent` Helm chart (`helm.sh/chart:
//!   gitlab-agent-<version>`) or of the 2021 kpt manifests (`app: gitlab-agent`), on itself or
//!   on its pod template, or
//! - it is a Flux HelmRelease of the `gitlab-agent` chart ([`chart_says_gitlab_agent`]).
//!
//! When the flag may come from text fluxgate cannot read (a ConfigMap or Secret key behind
//! `$(VAR)`, a script taken from one), the object is [`Evidence::Undecided`]: a possible agent.
//!
//! What an object says about where it belongs (its namespace in the admission request aside)
//! is kept as a claim: its controller `ownerReference`, the Helm release its annotations or
//! `app.kubernetes.io/instance` label name, the chart label. Which of these claims hold is
//! decided against the other objects the cluster runs, in [`super::installation`].

use std::borrow::Cow;
use std::fmt;

use regex::Regex;
use serde::Deserialize;

use crate::kubelet::expansion::{Budget, EnvFromSource, EnvVar, Environment};
use crate::kubelet::{FlagPlace, FlagSearch, find_flag};

/// The chart GitLab publishes for agentk.
pub const CHART_NAME: &str = "gitlab-agent";

/// The tail of the repository GitLab publishes agentk images under
/// (`registry.gitlab.com/gitlab-org/cluster-integration/gitlab-agent/agentk`). FIPS builds
/// use the same repository with a `-fips` tag.
pub const AGENTK_REPOSITORY_SUFFIX: &str = "gitlab-agent/agentk";

/// The flag every agentk is started with (the chart's `--kas-address=<url>`, the kpt
/// manifests' `--kas-address <url>`): the address of GitLab's agent server. No other
/// program takes it.
pub const KAS_ADDRESS_FLAG: &str = "--kas-address";

/// Flux's helm-controller keeps release names within Helm's limit by hashing longer ones.
const HELM_RELEASE_NAME_MAX: usize = 53;
const HELM_RELEASE_NAME_HASH_CHARS: usize = 12;

/// The kinds that can run agentk or install it. The order is the order messages list an
/// installation's objects in: what a person manages first, what controllers derive last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AgentKind {
    HelmRelease,
    Deployment,
    StatefulSet,
    DaemonSet,
    ReplicationController,
    CronJob,
    Job,
    ReplicaSet,
    Pod,
}

pub const FLUX_HELM_GROUP: &str = "helm.toolkit.fluxcd.io";

impl AgentKind {
    pub const ALL: [AgentKind; 9] = [
        AgentKind::HelmRelease,
        AgentKind::Deployment,
        AgentKind::StatefulSet,
        AgentKind::DaemonSet,
        AgentKind::ReplicationController,
        AgentKind::CronJob,
        AgentKind::Job,
        AgentKind::ReplicaSet,
        AgentKind::Pod,
    ];

    pub fn group(self) -> &'static str {
        match self {
            AgentKind::HelmRelease => FLUX_HELM_GROUP,
            AgentKind::Deployment
            | AgentKind::StatefulSet
            | AgentKind::DaemonSet
            | AgentKind::ReplicaSet => "apps",
            AgentKind::CronJob | AgentKind::Job => "batch",
            AgentKind::Pod | AgentKind::ReplicationController => "",
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            AgentKind::HelmRelease => "HelmRelease",
            AgentKind::Deployment => "Deployment",
            AgentKind::StatefulSet => "StatefulSet",
            AgentKind::DaemonSet => "DaemonSet",
            AgentKind::ReplicationController => "ReplicationController",
            AgentKind::CronJob => "CronJob",
            AgentKind::Job => "Job",
            AgentKind::ReplicaSet => "ReplicaSet",
            AgentKind::Pod => "Pod",
        }
    }

    /// The kind of an object by API group and kind, in any version.
    pub fn of(group: &str, kind: &str) -> Option<AgentKind> {
        AgentKind::ALL
            .into_iter()
            .find(|k| k.group() == group && k.kind() == kind)
    }

    /// Controllers whose pods are always represented by the controller itself: the
    /// controller's pod template is what its pods run.
    fn represents_its_pods(group: &str, kind: &str) -> bool {
        AgentKind::of(group, kind).is_some_and(|owner| owner.controls(AgentKind::Pod))
    }

    /// Whether a controller of this kind creates objects of `child`'s kind from its template,
    /// so that an `ownerReference` from such a child to such an owner can be true: a
    /// Deployment makes ReplicaSets; ReplicaSets, StatefulSets, DaemonSets, Jobs and
    /// ReplicationControllers make Pods; a CronJob makes Jobs. Nothing makes Deployments,
    /// HelmReleases or CronJobs.
    pub fn controls(self, child: AgentKind) -> bool {
        matches!(
            (self, child),
            (AgentKind::Deployment, AgentKind::ReplicaSet)
                | (
                    AgentKind::ReplicaSet
                        | AgentKind::StatefulSet
                        | AgentKind::DaemonSet
                        | AgentKind::Job
                        | AgentKind::ReplicationController,
                    AgentKind::Pod
                )
                | (AgentKind::CronJob, AgentKind::Job)
        )
    }
}

impl fmt::Display for AgentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind())
    }
}

/// The controller an object names in its `ownerReferences` (`controller: true`): a claim,
/// which holds only when that owner exists in the same namespace with that uid (see
/// [`super::installation`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerClaim {
    pub group: String,
    pub kind: String,
    pub name: String,
    pub uid: Option<String>,
}

/// The compact facts about one agent object that identity needs; what the cluster view keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentFacts {
    pub kind: AgentKind,
    /// The object's namespace: in admission, the namespace of the request.
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
    /// Its controller, as the object claims it.
    pub owner: Option<OwnerClaim>,
    /// The Helm release the object claims to be part of (Helm's `meta.helm.sh/release-name`,
    /// else the `app.kubernetes.io/instance` label), always a release in `namespace`: a
    /// `meta.helm.sh/release-namespace` naming another namespace is a claim about a release
    /// elsewhere, which the object's own namespace contradicts, so it is dropped.
    pub release_claim: Option<String>,
    /// It carries the `gitlab-agent` chart's label (`helm.sh/chart: gitlab-agent-<version>`).
    pub chart_label: bool,
    /// For a HelmRelease: the (namespace, name) of the Helm release helm-controller installs.
    pub installs: Option<(String, String)>,
    /// Whether it runs agentk depends on text fluxgate cannot read ([`Evidence::Undecided`]).
    pub undecided: bool,
    /// The Secret (in `namespace`) holding agentk's token, for `secret-rotation`. Only the
    /// cluster view fills it ([`token_secret`]); admission does not need it.
    pub token_secret: Option<String>,
    /// The ServiceAccount (in `namespace`) agentk runs as, for `ci-impersonation`: the one
    /// identity that may hold `impersonate`. Only the cluster view fills it
    /// ([`service_account`]).
    pub service_account: Option<String>,
}

impl AgentFacts {
    /// `Kind namespace/name`, as messages name objects.
    pub fn object_ref(&self) -> String {
        if self.namespace.is_empty() {
            format!("{} {}", self.kind, self.name)
        } else {
            format!("{} {}/{}", self.kind, self.namespace, self.name)
        }
    }

    /// Whether two facts are about the same object: by uid when both have one, else by kind,
    /// namespace and name.
    pub fn same_object(&self, other: &AgentFacts) -> bool {
        match (&self.uid, &other.uid) {
            (Some(a), Some(b)) => a == b,
            _ => {
                self.kind == other.kind
                    && self.namespace == other.namespace
                    && self.name == other.name
            }
        }
    }
}

/// Why an object counts as an agent installation, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evidence {
    Image {
        container: String,
        image: String,
    },
    KasAddress {
        container: String,
        image: String,
        place: FlagPlace,
    },
    ChartLabel {
        chart: String,
    },
    LegacyLabel,
    HelmChart {
        chart: String,
    },
    HelmChartRef {
        kind: String,
        name: String,
    },
    /// A container may pass agentk's flag, depending on text fluxgate cannot read.
    Undecided {
        container: String,
        image: String,
        reason: String,
    },
}

impl Evidence {
    pub fn is_undecided(&self) -> bool {
        matches!(self, Evidence::Undecided { .. })
    }
}

impl fmt::Display for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Evidence::Image { container, image } => {
                write!(f, "container {container} runs {image}")
            }
            Evidence::KasAddress {
                container,
                image,
                place,
            } => {
                let how = match place {
                    FlagPlace::Argument => "",
                    FlagPlace::Expanded => " (after the kubelet's $(VAR) expansion)",
                    FlagPlace::Script => " in the shell script it runs",
                };
                write!(
                    f,
                    "container {container} runs {image} with agentk's {KAS_ADDRESS_FLAG} flag{how}"
                )
            }
            Evidence::ChartLabel { chart } => {
                write!(f, "it carries the chart label helm.sh/chart: {chart}")
            }
            Evidence::LegacyLabel => f.write_str("it carries the agent's label app: gitlab-agent"),
            Evidence::HelmChart { chart } => write!(f, "it installs the chart {chart}"),
            Evidence::HelmChartRef { kind, name } => {
                write!(f, "its chartRef names {kind} {name}")
            }
            Evidence::Undecided {
                container,
                image,
                reason,
            } => write!(
                f,
                "container {container} ({image}) may run agentk: {reason}, which fluxgate \
                 cannot read"
            ),
        }
    }
}

/// Decides which container images are agentk: the built-in repository, plus patterns from
/// the configuration (`imagePatterns`, anchored regexes over the repository).
#[derive(Debug, Clone, Default)]
pub struct AgentDetector {
    extra: Vec<Regex>,
}

impl AgentDetector {
    /// `patterns` are matched against the whole image repository (the reference without tag
    /// and digest); compile them with [`AgentDetector::compile_pattern`].
    pub fn new(patterns: Vec<Regex>) -> Self {
        AgentDetector { extra: patterns }
    }

    /// Compiles an `imagePatterns` entry so that it must match the whole repository.
    pub fn compile_pattern(pattern: &str) -> Result<Regex, regex::Error> {
        Regex::new(&format!("^(?:{pattern})$"))
    }

    pub fn is_agent_image(&self, image: &str) -> bool {
        let repository = image_repository(image.trim());
        is_agentk_repository(repository) || self.extra.iter().any(|re| re.is_match(repository))
    }

    /// Recognises an agent object in raw JSON (a request's object). `Ok(None)`: not an agent.
    /// `default_namespace` is used when the object does not say (a manifest for `check`).
    pub fn recognise_json(
        &self,
        kind: AgentKind,
        json: &str,
        default_namespace: Option<&str>,
    ) -> Result<Option<(AgentFacts, Evidence)>, String> {
        match kind {
            AgentKind::HelmRelease => {
                parse_path_aware::<HelmReleaseDoc<'_>>(json).map(|d| d.recognise(default_namespace))
            }
            _ => parse_path_aware::<WorkloadDoc<'_>>(json)
                .map(|d| d.recognise(self, kind, default_namespace)),
        }
    }

    /// [`AgentDetector::recognise_json`] for a request's object: only the fields the
    /// recognition reads are parsed (see [`crate::json_view`]).
    pub fn recognise_raw(
        &self,
        kind: AgentKind,
        raw: &serde_json::value::RawValue,
        default_namespace: Option<&str>,
    ) -> Result<Option<(AgentFacts, Evidence)>, String> {
        self.recognise_with(
            kind,
            raw,
            &crate::json_view::Skims::default(),
            default_namespace,
        )
    }

    /// [`AgentDetector::recognise_raw`] with what other views learned of the object.
    pub fn recognise_with<'a>(
        &self,
        kind: AgentKind,
        raw: &'a serde_json::value::RawValue,
        skims: &crate::json_view::Skims<'a>,
        default_namespace: Option<&str>,
    ) -> Result<Option<(AgentFacts, Evidence)>, String> {
        let skimmed = match kind {
            AgentKind::HelmRelease => {
                crate::json_view::from_raw_with::<HelmReleaseDoc<'_>>(raw, skims)
                    .map(|d| d.recognise(default_namespace))
            }
            _ => crate::json_view::from_raw_with::<WorkloadDoc<'_>>(raw, skims)
                .map(|d| d.recognise(self, kind, default_namespace)),
        };
        // A malformed object: read again for the message that says where.
        skimmed.or_else(|_| self.recognise_json(kind, raw.get(), default_namespace))
    }
}

fn parse_path_aware<'a, T: Deserialize<'a>>(json: &'a str) -> Result<T, String> {
    crate::json_view::parse_raw(json)
}

/// The repository of an image reference: without `@digest` and without `:tag` (a `:` before
/// the last `/` is a registry port, not a tag).
pub fn image_repository(image: &str) -> &str {
    let name = image.split_once('@').map_or(image, |(name, _digest)| name);
    match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => &name[..i],
        _ => name,
    }
}

fn is_agentk_repository(repository: &str) -> bool {
    let suffix = AGENTK_REPOSITORY_SUFFIX;
    let Some(split) = repository.len().checked_sub(suffix.len()) else {
        return false;
    };
    repository.is_char_boundary(split)
        && repository[split..].eq_ignore_ascii_case(suffix)
        && (split == 0 || repository.as_bytes()[split - 1] == b'/')
}

/// Whether a Helm chart reference names GitLab's agent chart: `gitlab-agent` (a
/// HelmRepository chart), a path ending in it (a GitRepository or Bucket chart directory), or
/// a packaged `gitlab-agent-<version>.tgz`.
pub fn chart_says_gitlab_agent(chart: &str) -> bool {
    let last = chart.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    last == CHART_NAME
        || last.strip_prefix("gitlab-agent-").is_some_and(|rest| {
            rest.starts_with(|c: char| c.is_ascii_digit()) && rest.ends_with(".tgz")
        })
}

/// Whether a chart label (`helm.sh/chart`) is the gitlab-agent chart's: `gitlab-agent-<version>`.
fn is_agent_chart_label(value: &str) -> bool {
    value
        .strip_prefix("gitlab-agent-")
        .is_some_and(|version| version.starts_with(|c: char| c.is_ascii_digit()))
}

/// The release name Flux's helm-controller gives a HelmRelease: `spec.releaseName`, else
/// `[<targetNamespace>-]<name>`, shortened like helm-controller does when longer than Helm's
/// 53 characters (the first 40 characters, `-`, the first 12 hex digits of its SHA-256).
pub fn flux_release_name(
    name: &str,
    target_namespace: Option<&str>,
    release_name: Option<&str>,
) -> String {
    let full = match (release_name, target_namespace) {
        (Some(release), _) => release.to_string(),
        (None, Some(target)) => format!("{target}-{name}"),
        (None, None) => name.to_string(),
    };
    if full.len() <= HELM_RELEASE_NAME_MAX {
        return full;
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, full.as_bytes());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let keep = HELM_RELEASE_NAME_MAX - HELM_RELEASE_NAME_HASH_CHARS - 1;
    // Kubernetes names are ASCII; a non-ASCII name is cut at a character boundary.
    let mut cut = keep.min(full.len());
    while !full.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}-{}", &full[..cut], &hex[..HELM_RELEASE_NAME_HASH_CHARS])
}

// ---- The typed views of the objects: only the fields identity and detection read. ----

#[derive(Deserialize, Default)]
struct Labels<'a> {
    #[serde(
        rename = "app.kubernetes.io/instance",
        borrow,
        default,
        deserialize_with = "crate::json_view::borrowed::option"
    )]
    instance: Option<Cow<'a, str>>,
    #[serde(
        rename = "helm.sh/chart",
        borrow,
        default,
        deserialize_with = "crate::json_view::borrowed::option"
    )]
    chart: Option<Cow<'a, str>>,
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::json_view::borrowed::option"
    )]
    app: Option<Cow<'a, str>>,
    /// The HelmRelease helm-controller rendered the object from.
    #[serde(
        rename = "helm.toolkit.fluxcd.io/name",
        borrow,
        default,
        deserialize_with = "crate::json_view::borrowed::option"
    )]
    flux_name: Option<Cow<'a, str>>,
    #[serde(
        rename = "helm.toolkit.fluxcd.io/namespace",
        borrow,
        default,
        deserialize_with = "crate::json_view::borrowed::option"
    )]
    flux_namespace: Option<Cow<'a, str>>,
}

#[derive(Deserialize, Default)]
struct Annotations<'a> {
    #[serde(
        rename = "meta.helm.sh/release-name",
        borrow,
        default,
        deserialize_with = "crate::json_view::borrowed::option"
    )]
    release_name: Option<Cow<'a, str>>,
    #[serde(
        rename = "meta.helm.sh/release-namespace",
        borrow,
        default,
        deserialize_with = "crate::json_view::borrowed::option"
    )]
    release_namespace: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OwnerReference<'a> {
    #[serde(borrow, default)]
    api_version: Cow<'a, str>,
    #[serde(borrow, default)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    name: Cow<'a, str>,
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::json_view::borrowed::option"
    )]
    uid: Option<Cow<'a, str>>,
    #[serde(default)]
    controller: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Meta<'a> {
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::json_view::borrowed::option"
    )]
    name: Option<Cow<'a, str>>,
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::json_view::borrowed::option"
    )]
    generate_name: Option<Cow<'a, str>>,
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::json_view::borrowed::option"
    )]
    namespace: Option<Cow<'a, str>>,
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::json_view::borrowed::option"
    )]
    uid: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    labels: Option<Labels<'a>>,
    #[serde(borrow, default)]
    annotations: Option<Annotations<'a>>,
    #[serde(borrow, default)]
    owner_references: Option<Vec<OwnerReference<'a>>>,
}

#[derive(Deserialize, Default)]
struct TemplateMeta<'a> {
    #[serde(borrow, default)]
    labels: Option<Labels<'a>>,
}

#[derive(Deserialize)]
struct Container<'a> {
    #[serde(borrow, default)]
    name: Cow<'a, str>,
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::json_view::borrowed::option"
    )]
    image: Option<Cow<'a, str>>,
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::json_view::borrowed::option_vec"
    )]
    command: Option<Vec<Cow<'a, str>>>,
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::json_view::borrowed::option_vec"
    )]
    args: Option<Vec<Cow<'a, str>>>,
    #[serde(borrow, default)]
    env: Option<Vec<EnvVar<'a>>>,
    // The only field of two words: the kubelet reads `envFrom`.
    #[serde(borrow, default, rename = "envFrom")]
    env_from: Option<Vec<EnvFromSource<'a>>>,
}

impl Container<'_> {
    /// Whether the container passes agentk's `--kas-address` flag to what it runs, as the
    /// kubelet expands its command line in a Pod of `namespace` and a shell reads it.
    fn kas_address(&self, namespace: &str) -> FlagSearch {
        find_flag(
            self.command.as_deref().unwrap_or_default(),
            self.args.as_deref().unwrap_or_default(),
            |budget: &mut Budget| {
                Environment::new(
                    self.env.as_deref().unwrap_or_default(),
                    self.env_from.as_deref().unwrap_or_default(),
                    namespace,
                    budget,
                )
            },
            KAS_ADDRESS_FLAG,
        )
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PodSpec<'a> {
    #[serde(borrow, default)]
    containers: Option<Vec<Container<'a>>>,
    #[serde(borrow, default)]
    init_containers: Option<Vec<Container<'a>>>,
    #[serde(borrow, default)]
    ephemeral_containers: Option<Vec<Container<'a>>>,
}

#[derive(Deserialize, Default)]
struct PodTemplate<'a> {
    #[serde(borrow, default)]
    metadata: Option<TemplateMeta<'a>>,
    #[serde(borrow, default)]
    spec: Option<PodSpec<'a>>,
}

#[derive(Deserialize, Default)]
struct JobSpec<'a> {
    #[serde(borrow, default)]
    template: Option<PodTemplate<'a>>,
}

#[derive(Deserialize, Default)]
struct JobTemplate<'a> {
    #[serde(borrow, default)]
    metadata: Option<TemplateMeta<'a>>,
    #[serde(borrow, default)]
    spec: Option<JobSpec<'a>>,
}

/// The spec of every workload kind at once: a Pod's containers are at the top, the
/// controllers' in `template`, a CronJob's in `jobTemplate`.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct WorkloadSpec<'a> {
    #[serde(borrow, default)]
    containers: Option<Vec<Container<'a>>>,
    #[serde(borrow, default)]
    init_containers: Option<Vec<Container<'a>>>,
    #[serde(borrow, default)]
    ephemeral_containers: Option<Vec<Container<'a>>>,
    #[serde(borrow, default)]
    template: Option<PodTemplate<'a>>,
    #[serde(borrow, default)]
    job_template: Option<JobTemplate<'a>>,
}

#[derive(Deserialize)]
struct WorkloadDoc<'a> {
    #[serde(borrow, default)]
    metadata: Option<Meta<'a>>,
    #[serde(borrow, default)]
    spec: Option<WorkloadSpec<'a>>,
}

#[derive(Deserialize, Default)]
struct HelmChartTemplateSpec<'a> {
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::json_view::borrowed::option"
    )]
    chart: Option<Cow<'a, str>>,
}

#[derive(Deserialize, Default)]
struct HelmChartTemplate<'a> {
    #[serde(borrow, default)]
    spec: Option<HelmChartTemplateSpec<'a>>,
}

#[derive(Deserialize)]
struct ChartRef<'a> {
    #[serde(borrow, default)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    name: Cow<'a, str>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct HelmReleaseSpec<'a> {
    #[serde(borrow, default)]
    chart: Option<HelmChartTemplate<'a>>,
    #[serde(borrow, default)]
    chart_ref: Option<ChartRef<'a>>,
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::json_view::borrowed::option"
    )]
    release_name: Option<Cow<'a, str>>,
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::json_view::borrowed::option"
    )]
    target_namespace: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct HelmReleaseDoc<'a> {
    #[serde(borrow, default)]
    metadata: Option<Meta<'a>>,
    #[serde(borrow, default)]
    spec: Option<HelmReleaseSpec<'a>>,
}

fn non_empty<'s>(value: &'s Option<Cow<'_, str>>) -> Option<&'s str> {
    value.as_deref().filter(|v| !v.is_empty())
}

impl<'a> Meta<'a> {
    fn name(&self) -> String {
        non_empty(&self.name)
            .or(non_empty(&self.generate_name))
            .unwrap_or("")
            .to_string()
    }

    fn namespace(&self, default_namespace: Option<&str>) -> String {
        non_empty(&self.namespace)
            .or(default_namespace)
            .unwrap_or("")
            .to_string()
    }

    fn controller(&self) -> Option<&OwnerReference<'a>> {
        self.owner_references
            .as_deref()
            .unwrap_or_default()
            .iter()
            .find(|o| o.controller == Some(true))
    }

    fn owner_claim(&self) -> Option<OwnerClaim> {
        self.controller().map(|o| OwnerClaim {
            group: group_of(&o.api_version).to_string(),
            kind: o.kind.to_string(),
            name: o.name.to_string(),
            uid: o
                .uid
                .as_deref()
                .filter(|u| !u.is_empty())
                .map(str::to_string),
        })
    }
}

fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(group, _)| group)
}

fn collect_template<'t, 'a>(
    template: Option<&'t PodTemplate<'a>>,
    label_sets: &mut Vec<&'t Labels<'a>>,
    container_lists: &mut Vec<&'t [Container<'a>]>,
) {
    let Some(template) = template else { return };
    label_sets.extend(template.metadata.as_ref().and_then(|m| m.labels.as_ref()));
    if let Some(pod) = &template.spec {
        for list in [
            &pod.containers,
            &pod.init_containers,
            &pod.ephemeral_containers,
        ] {
            container_lists.extend(list.as_deref());
        }
    }
}

impl<'a> WorkloadDoc<'a> {
    fn recognise(
        self,
        detector: &AgentDetector,
        kind: AgentKind,
        default_namespace: Option<&str>,
    ) -> Option<(AgentFacts, Evidence)> {
        let meta = self.metadata.unwrap_or_default();
        let spec = self.spec.unwrap_or_default();

        let mut label_sets: Vec<&Labels<'_>> = Vec::with_capacity(4);
        let mut container_lists: Vec<&[Container<'_>]> = Vec::with_capacity(6);
        label_sets.extend(meta.labels.as_ref());
        for list in [
            &spec.containers,
            &spec.init_containers,
            &spec.ephemeral_containers,
        ] {
            container_lists.extend(list.as_deref());
        }
        collect_template(
            spec.template.as_ref(),
            &mut label_sets,
            &mut container_lists,
        );
        if let Some(job_template) = &spec.job_template {
            label_sets.extend(
                job_template
                    .metadata
                    .as_ref()
                    .and_then(|m| m.labels.as_ref()),
            );
            collect_template(
                job_template.spec.as_ref().and_then(|s| s.template.as_ref()),
                &mut label_sets,
                &mut container_lists,
            );
        }

        let namespace = meta.namespace(default_namespace);
        let containers = || container_lists.iter().flat_map(|list| list.iter());
        let image_of = |c: &Container<'_>| c.image.as_deref().unwrap_or("").to_string();
        let mut undecided: Option<Evidence> = None;
        let evidence = containers()
            .find_map(|c| {
                let image = c.image.as_deref()?;
                detector.is_agent_image(image).then(|| Evidence::Image {
                    container: c.name.to_string(),
                    image: image.to_string(),
                })
            })
            .or_else(|| {
                containers().find_map(|c| match c.kas_address(&namespace) {
                    FlagSearch::Found(place) => Some(Evidence::KasAddress {
                        container: c.name.to_string(),
                        image: image_of(c),
                        place,
                    }),
                    FlagSearch::Undecided(reason) => {
                        undecided.get_or_insert(Evidence::Undecided {
                            container: c.name.to_string(),
                            image: image_of(c),
                            reason,
                        });
                        None
                    }
                    FlagSearch::Absent => None,
                })
            })
            .or_else(|| {
                label_sets.iter().find_map(|labels| {
                    let chart = labels
                        .chart
                        .as_deref()
                        .filter(|c| is_agent_chart_label(c))?;
                    Some(Evidence::ChartLabel {
                        chart: chart.to_string(),
                    })
                })
            })
            .or_else(|| {
                label_sets
                    .iter()
                    .any(|labels| labels.app.as_deref() == Some(CHART_NAME))
                    .then_some(Evidence::LegacyLabel)
            })
            .or(undecided)?;

        let annotations = meta.annotations.as_ref();
        let release_claim = match annotations.and_then(|a| non_empty(&a.release_name)) {
            Some(release) => annotations
                .and_then(|a| non_empty(&a.release_namespace))
                .is_none_or(|ns| ns == namespace)
                .then(|| release.to_string()),
            None => label_sets
                .iter()
                .find_map(|labels| non_empty(&labels.instance))
                .map(str::to_string),
        };
        let chart_label = label_sets
            .iter()
            .any(|labels| labels.chart.as_deref().is_some_and(is_agent_chart_label));

        Some((
            AgentFacts {
                kind,
                name: meta.name(),
                uid: non_empty(&meta.uid).map(str::to_string),
                owner: meta.owner_claim(),
                release_claim,
                chart_label,
                installs: None,
                undecided: evidence.is_undecided(),
                token_secret: None,
                service_account: None,
                namespace,
            },
            evidence,
        ))
    }
}

impl HelmReleaseDoc<'_> {
    fn recognise(self, default_namespace: Option<&str>) -> Option<(AgentFacts, Evidence)> {
        let meta = self.metadata.unwrap_or_default();
        let spec = self.spec.unwrap_or_default();
        let from_chart = spec
            .chart
            .as_ref()
            .and_then(|c| c.spec.as_ref())
            .and_then(|s| non_empty(&s.chart))
            .filter(|chart| chart_says_gitlab_agent(chart))
            .map(|chart| Evidence::HelmChart {
                chart: chart.to_string(),
            });
        // A chartRef names an OCIRepository or HelmChart whose contents the view does not
        // know; its name is the only hint. A chartRef named otherwise is still caught when
        // helm-controller creates the agent's Deployment.
        let from_ref = spec
            .chart_ref
            .as_ref()
            .filter(|r| r.name.contains(CHART_NAME))
            .map(|r| Evidence::HelmChartRef {
                kind: r.kind.to_string(),
                name: r.name.to_string(),
            });
        let evidence = from_chart.or(from_ref)?;

        let name = meta.name();
        let namespace = meta.namespace(default_namespace);
        let target = non_empty(&spec.target_namespace);
        let release = flux_release_name(&name, target, non_empty(&spec.release_name));
        let release_namespace = target.unwrap_or(&namespace).to_string();
        Some((
            AgentFacts {
                kind: AgentKind::HelmRelease,
                uid: non_empty(&meta.uid).map(str::to_string),
                owner: meta.owner_claim(),
                release_claim: None,
                chart_label: false,
                installs: Some((release_namespace, release)),
                undecided: false,
                token_secret: None,
                name,
                namespace,
                service_account: None,
            },
            evidence,
        ))
    }
}

#[derive(Deserialize)]
struct OwnersOnly<'a> {
    #[serde(borrow, default)]
    metadata: Option<OwnersMeta<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OwnersMeta<'a> {
    #[serde(borrow, default)]
    owner_references: Option<Vec<OwnerReference<'a>>>,
}

/// The controller owner of an object in raw JSON, if it is a kind that runs agentk:
/// `(kind, name)`. Owner references point into the object's own namespace.
pub fn agent_kind_controller(json: &str) -> Option<(AgentKind, String)> {
    let owners: OwnersOnly<'_> = serde_json::from_str(json).ok()?;
    owners
        .metadata?
        .owner_references?
        .into_iter()
        .find(|o| o.controller == Some(true))
        .and_then(|o| {
            let kind = AgentKind::of(group_of(&o.api_version), &o.kind)?;
            Some((kind, o.name.into_owned()))
        })
}

#[derive(Deserialize)]
struct MetaOnly<'a> {
    #[serde(borrow, default)]
    metadata: Option<Meta<'a>>,
}

/// The HelmRelease helm-controller names as the origin of an object it rendered (its
/// `helm.toolkit.fluxcd.io/name` and `/namespace` labels): `(namespace, name)`. A claim, used
/// only to have the cluster view fetch that HelmRelease before the object is judged.
pub fn flux_origin(json: &str) -> Option<(String, String)> {
    let head: MetaOnly<'_> = serde_json::from_str(json).ok()?;
    let labels = head.metadata?.labels?;
    Some((
        non_empty(&labels.flux_namespace)?.to_string(),
        non_empty(&labels.flux_name)?.to_string(),
    ))
}

/// Whether a controller owner of this kind always stands for the object: a Pod of a
/// ReplicaSet, StatefulSet, DaemonSet or Job runs its owner's pod template, so the cluster
/// view keeps the owner and not each of its (possibly thousands of) Pods.
pub fn owner_represents_pod(owner_group: &str, owner_kind: &str) -> bool {
    AgentKind::represents_its_pods(owner_group, owner_kind)
}

// ---- The agent token: the Secret mounted where agentk's --token-file points. ----

/// The flag agentk reads its GitLab token from.
const TOKEN_FILE_FLAG: &str = "token-file";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenMount<'a> {
    #[serde(borrow, default)]
    name: Cow<'a, str>,
    #[serde(borrow, default)]
    mount_path: Cow<'a, str>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenContainer<'a> {
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::json_view::borrowed::option_vec"
    )]
    command: Option<Vec<Cow<'a, str>>>,
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::json_view::borrowed::option_vec"
    )]
    args: Option<Vec<Cow<'a, str>>>,
    #[serde(borrow, default)]
    volume_mounts: Option<Vec<TokenMount<'a>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SecretVolumeSource<'a> {
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::json_view::borrowed::option"
    )]
    secret_name: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct KeyPath<'a> {
    #[serde(borrow, default)]
    path: Cow<'a, str>,
}

#[derive(Deserialize)]
struct SecretProjection<'a> {
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::json_view::borrowed::option"
    )]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    items: Option<Vec<KeyPath<'a>>>,
}

#[derive(Deserialize)]
struct ProjectionSource<'a> {
    #[serde(borrow, default)]
    secret: Option<SecretProjection<'a>>,
}

#[derive(Deserialize)]
struct ProjectedVolumeSource<'a> {
    #[serde(borrow, default)]
    sources: Option<Vec<ProjectionSource<'a>>>,
}

#[derive(Deserialize)]
struct TokenVolume<'a> {
    #[serde(borrow, default)]
    name: Cow<'a, str>,
    #[serde(borrow, default)]
    secret: Option<SecretVolumeSource<'a>>,
    #[serde(borrow, default)]
    projected: Option<ProjectedVolumeSource<'a>>,
}

#[derive(Deserialize, Default)]
struct TokenPodSpec<'a> {
    #[serde(borrow, default)]
    containers: Option<Vec<TokenContainer<'a>>>,
    #[serde(borrow, default)]
    volumes: Option<Vec<TokenVolume<'a>>>,
}

#[derive(Deserialize, Default)]
struct TokenPodTemplate<'a> {
    #[serde(borrow, default)]
    spec: Option<TokenPodSpec<'a>>,
}

#[derive(Deserialize, Default)]
struct TokenJobSpec<'a> {
    #[serde(borrow, default)]
    template: Option<TokenPodTemplate<'a>>,
}

#[derive(Deserialize, Default)]
struct TokenJobTemplate<'a> {
    #[serde(borrow, default)]
    spec: Option<TokenJobSpec<'a>>,
}

/// A Pod's spec (containers, volumes) and the controllers' (`template`, `jobTemplate`) at once.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct TokenWorkloadSpec<'a> {
    #[serde(borrow, default)]
    containers: Option<Vec<TokenContainer<'a>>>,
    #[serde(borrow, default)]
    volumes: Option<Vec<TokenVolume<'a>>>,
    #[serde(borrow, default)]
    template: Option<TokenPodTemplate<'a>>,
    #[serde(borrow, default)]
    job_template: Option<TokenJobTemplate<'a>>,
}

#[derive(Deserialize)]
struct TokenDoc<'a> {
    #[serde(borrow, default)]
    spec: Option<TokenWorkloadSpec<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct AccountPodSpec<'a> {
    #[serde(borrow, default)]
    service_account_name: Option<Cow<'a, str>>,
    /// The deprecated alias, read by the API server when the name is unset.
    #[serde(borrow, default)]
    service_account: Option<Cow<'a, str>>,
    #[serde(default)]
    containers: Option<Vec<serde::de::IgnoredAny>>,
    #[serde(borrow, default)]
    template: Option<Box<AccountTemplate<'a>>>,
    #[serde(borrow, default)]
    job_template: Option<Box<AccountTemplate<'a>>>,
}

#[derive(Deserialize, Default)]
struct AccountTemplate<'a> {
    #[serde(borrow, default)]
    spec: Option<AccountPodSpec<'a>>,
}

#[derive(Deserialize)]
struct AccountDoc<'a> {
    #[serde(borrow, default)]
    spec: Option<AccountPodSpec<'a>>,
}

/// The ServiceAccount a workload's pods run as: `serviceAccountName` (or the deprecated
/// `serviceAccount`) of its pod spec (a Pod's own, a controller's `template`, a CronJob's
/// `jobTemplate`), `default` when the pod spec names none. `None` for objects without a pod
/// spec (a HelmRelease).
pub fn service_account(object: &crate::json_view::Indexed<'_>) -> Option<String> {
    let doc: AccountDoc<'_> = object.view(object.raw()).ok()?;
    let mut spec = doc.spec?;
    // Pod <- template <- jobTemplate: at most two levels down.
    for _ in 0..2 {
        let inner = spec
            .template
            .take()
            .or_else(|| spec.job_template.take())
            .and_then(|t| t.spec);
        match inner {
            Some(inner) => spec = inner,
            None => break,
        }
    }
    spec.containers.as_ref()?;
    let named =
        |n: &Option<Cow<'_, str>>| n.as_deref().filter(|n| !n.is_empty()).map(str::to_string);
    Some(
        named(&spec.service_account_name)
            .or_else(|| named(&spec.service_account))
            .unwrap_or_else(|| "default".to_string()),
    )
}

/// The value of `--token-file=PATH`, `--token-file PATH` (or with one dash, as Go flags
/// allow) in a container's command line.
fn token_file<'c>(container: &'c TokenContainer<'_>) -> Option<&'c str> {
    let mut words = container
        .command
        .iter()
        .chain(container.args.iter())
        .flatten()
        .map(|w| -> &'c str { w });
    while let Some(word) = words.next() {
        let Some(flag) = word.strip_prefix("--").or_else(|| word.strip_prefix('-')) else {
            continue;
        };
        match flag.split_once('=') {
            Some((TOKEN_FILE_FLAG, path)) => return Some(path),
            None if flag == TOKEN_FILE_FLAG => return words.next(),
            _ => {}
        }
    }
    None
}

/// The part of `path` below `mount` (`""` when they are equal), if `mount` contains it.
fn below_mount<'p>(path: &'p str, mount: &str) -> Option<&'p str> {
    let mount = mount.trim_end_matches('/');
    let rest = path.strip_prefix(mount)?;
    if rest.is_empty() {
        Some("")
    } else {
        rest.strip_prefix('/')
    }
}

/// The Secret agentk reads its token from: the Secret volume (or the Secret source of a
/// projected volume) mounted deepest over the `--token-file` path of the container that has
/// that flag. GitLab's chart mounts `<fullname>-token` (or `config.secretName`) at
/// `/etc/agentk/secrets` and passes `--token-file=/etc/agentk/secrets/token`; the 2021 kpt
/// manifests mount `gitlab-agent-token` at `/config`. `None` for objects without a pod
/// spec (a HelmRelease) or when the path is not on a Secret volume.
pub fn token_secret(object: &crate::json_view::Indexed<'_>) -> Option<String> {
    let doc: TokenDoc<'_> = object.view(object.raw()).ok()?;
    let spec = doc.spec?;
    let pod = match (spec.template, spec.job_template) {
        (Some(template), _) => template.spec.unwrap_or_default(),
        (None, Some(job)) => job
            .spec
            .and_then(|s| s.template)
            .and_then(|t| t.spec)
            .unwrap_or_default(),
        (None, None) => TokenPodSpec {
            containers: spec.containers,
            volumes: spec.volumes,
        },
    };
    let containers = pod.containers.unwrap_or_default();
    let (container, path) = containers
        .iter()
        .find_map(|c| token_file(c).map(|path| (c, path)))?;
    let (mount, within) = container
        .volume_mounts
        .iter()
        .flatten()
        .filter_map(|m| below_mount(path, &m.mount_path).map(|within| (m, within)))
        .max_by_key(|(m, _)| m.mount_path.trim_end_matches('/').len())?;
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == mount.name)?;
    if let Some(secret) = &volume.secret {
        return non_empty(&secret.secret_name).map(str::to_string);
    }
    let sources: Vec<&SecretProjection<'_>> = volume
        .projected
        .as_ref()?
        .sources
        .iter()
        .flatten()
        .filter_map(|s| s.secret.as_ref())
        .collect();
    let holding_file = sources.iter().find(|s| {
        s.items
            .iter()
            .flatten()
            .any(|item| item.path.trim_start_matches("./") == within)
    });
    let source = match (holding_file, sources.as_slice()) {
        (Some(source), _) => source,
        (None, [only]) => only,
        _ => return None,
    };
    non_empty(&source.name).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_repository_drops_tag_digest_and_keeps_registry_port() {
        assert_eq!(
            image_repository(
                "registry.gitlab.com/gitlab-org/cluster-integration/gitlab-agent/agentk:v17.3.1"
            ),
            "registry.gitlab.com/gitlab-org/cluster-integration/gitlab-agent/agentk"
        );
        assert_eq!(
            image_repository("mirror:5000/gitlab-agent/agentk@sha256:0123abcd"),
            "mirror:5000/gitlab-agent/agentk"
        );
        assert_eq!(
            image_repository("mirror:5000/gitlab-agent/agentk:v1@sha256:0123abcd"),
            "mirror:5000/gitlab-agent/agentk"
        );
        assert_eq!(image_repository("mirror:5000/agentk"), "mirror:5000/agentk");
    }

    #[test]
    fn agentk_is_recognised_under_any_registry_tag_or_digest() {
        let detector = AgentDetector::default();
        for image in [
            "registry.gitlab.com/gitlab-org/cluster-integration/gitlab-agent/agentk:v17.3.1",
            "registry.gitlab.com/gitlab-org/cluster-integration/gitlab-agent/agentk:v17.3.1-fips",
            "harbor.example.com/proxy/gitlab-org/cluster-integration/gitlab-agent/agentk:latest",
            "mirror.internal:5000/gitlab-agent/agentk@sha256:4f2a7c1e",
            "gitlab-agent/agentk",
        ] {
            assert!(detector.is_agent_image(image), "{image}");
        }
        for image in [
            "ghcr.io/stefanprodan/podinfo:6.5.0",
            "example.com/my-gitlab-agent/agentk-exporter:1",
            "example.com/not-gitlab-agent/agentk:1",
            "example.com/gitlab-agent/agentk/sidecar:1",
            "agentk:latest",
        ] {
            assert!(!detector.is_agent_image(image), "{image}");
        }
    }

    #[test]
    fn configured_patterns_match_the_whole_repository() {
        let pattern =
            AgentDetector::compile_pattern(r"registry\.corp/platform/agentk").expect("regex");
        let detector = AgentDetector::new(vec![pattern]);
        assert!(detector.is_agent_image("registry.corp/platform/agentk:v17.3.1"));
        assert!(!detector.is_agent_image("registry.corp/platform/agentk-tools:v1"));
    }

    #[test]
    fn chart_references_to_the_agent_chart() {
        assert!(chart_says_gitlab_agent("gitlab-agent"));
        assert!(chart_says_gitlab_agent("./charts/gitlab-agent/"));
        assert!(chart_says_gitlab_agent("charts/gitlab-agent-2.6.2.tgz"));
        assert!(!chart_says_gitlab_agent("gitlab-agent-exporter"));
        assert!(!chart_says_gitlab_agent("podinfo"));
    }

    #[test]
    fn flux_release_names_follow_helm_controller() {
        assert_eq!(flux_release_name("agent", None, None), "agent");
        assert_eq!(
            flux_release_name("agent", Some("gitlab"), None),
            "gitlab-agent"
        );
        assert_eq!(
            flux_release_name("agent", Some("gitlab"), Some("kas")),
            "kas"
        );
        // 69 characters: the first 40, then 12 hex digits of the SHA-256 of all 69
        // (computed independently with Python's hashlib).
        let long = flux_release_name(
            "gitlab-agent-for-the-production-platform",
            Some("a-very-long-target-namespace"),
            None,
        );
        assert_eq!(
            long,
            "a-very-long-target-namespace-gitlab-agen-7fdda4e631e4"
        );
    }

    #[test]
    fn a_mount_contains_a_path_only_at_a_directory_boundary() {
        assert_eq!(
            below_mount("/etc/agentk/secrets/token", "/etc/agentk/secrets"),
            Some("token")
        );
        assert_eq!(below_mount("/config/token", "/config/token"), Some(""));
        assert_eq!(
            below_mount("/etc/agentk/secrets-old/token", "/etc/agentk/secrets"),
            None
        );
        assert_eq!(below_mount("/config/token", "/"), Some("config/token"));
    }

    #[test]
    fn the_token_file_flag_is_read_in_every_form_go_accepts() {
        fn container(command: &[&'static str], args: &[&'static str]) -> TokenContainer<'static> {
            TokenContainer {
                command: Some(command.iter().map(|w| Cow::Borrowed(*w)).collect()),
                args: Some(args.iter().map(|w| Cow::Borrowed(*w)).collect()),
                volume_mounts: None,
            }
        }
        for (command, args) in [
            (&["/usr/bin/agentk", "--token-file=/t"][..], &[][..]),
            (&["/usr/bin/agentk"][..], &["--token-file", "/t"][..]),
            (&[][..], &["--kas-address=wss://kas", "-token-file=/t"][..]),
        ] {
            assert_eq!(token_file(&container(command, args)), Some("/t"));
        }
        assert_eq!(
            token_file(&container(&[], &["--token-file-watch=/x"])),
            None
        );
    }

    fn recognise(kind: AgentKind, json: &str) -> Option<(AgentFacts, Evidence)> {
        AgentDetector::default()
            .recognise_json(kind, json, None)
            .expect("parses")
    }

    #[test]
    fn claims_are_kept_as_claims_in_the_objects_own_namespace() {
        let deployment = r#"{"metadata":{"name":"evil","namespace":"team-a",
          "annotations":{"meta.helm.sh/release-name":"gitlab-agent","meta.helm.sh/release-namespace":"gitlab-agent"},
          "labels":{"app.kubernetes.io/instance":"gitlab-agent","helm.sh/chart":"gitlab-agent-2.6.2"},
          "ownerReferences":[{"apiVersion":"apps/v1","kind":"Deployment","name":"gitlab-agent-v2","uid":"u-1","controller":true}]},
          "spec":{"template":{"spec":{"containers":[{"name":"a","image":"registry.gitlab.com/gitlab-org/cluster-integration/gitlab-agent/agentk:v17.3.1"}]}}}}"#;
        let (facts, _) = recognise(AgentKind::Deployment, deployment).expect("agent");
        assert_eq!(facts.namespace, "team-a");
        // The release annotations name a release in another namespace: not this object's.
        assert_eq!(facts.release_claim, None);
        assert!(facts.chart_label);
        assert_eq!(
            facts.owner,
            Some(OwnerClaim {
                group: "apps".into(),
                kind: "Deployment".into(),
                name: "gitlab-agent-v2".into(),
                uid: Some("u-1".into())
            })
        );
        // Without the annotations, the instance label is the claim.
        let labelled = deployment.replace("meta.helm.sh/release", "x-release");
        let (facts, _) = recognise(AgentKind::Deployment, &labelled).expect("agent");
        assert_eq!(facts.release_claim.as_deref(), Some("gitlab-agent"));
    }

    #[test]
    fn a_replication_controller_is_a_workload_like_a_replicaset() {
        let rc = r#"{"metadata":{"name":"agent","namespace":"team-a"},
          "spec":{"replicas":1,"template":{"spec":{"containers":[{"name":"a","image":"mirror.example/x/agent:1","args":["--kas-address=wss://kas.example"]}]}}}}"#;
        let (facts, evidence) = recognise(AgentKind::ReplicationController, rc).expect("agent");
        assert_eq!(facts.kind.kind(), "ReplicationController");
        assert_eq!(facts.kind.group(), "");
        assert!(
            matches!(evidence, Evidence::KasAddress { .. }),
            "{evidence:?}"
        );
        assert!(AgentKind::ReplicationController.controls(AgentKind::Pod));
        assert!(!AgentKind::Deployment.controls(AgentKind::Pod));
        assert!(!AgentKind::Deployment.controls(AgentKind::Deployment));
    }

    #[test]
    fn a_flag_from_a_config_map_makes_the_object_a_possible_agent() {
        let pod = r#"{"metadata":{"name":"p","namespace":"team-a"},
          "spec":{"containers":[{"name":"a","image":"mirror.example/x/agent:1","args":["$(FLAG)=wss://kas.example"],
            "env":[{"name":"FLAG","valueFrom":{"configMapKeyRef":{"name":"cfg","key":"flag"}}}]}]}}"#;
        let (facts, evidence) = recognise(AgentKind::Pod, pod).expect("possible agent");
        assert!(facts.undecided);
        assert!(
            evidence.to_string().contains("ConfigMap cfg key flag"),
            "{evidence}"
        );
        // With the flag literally in env, it is agentk for certain.
        let literal = pod.replace(
            r#""valueFrom":{"configMapKeyRef":{"name":"cfg","key":"flag"}}"#,
            r#""value":"--kas-address""#,
        );
        let (facts, evidence) = recognise(AgentKind::Pod, &literal).expect("agent");
        assert!(!facts.undecided);
        assert!(evidence.to_string().contains("expansion"), "{evidence}");
    }
}
