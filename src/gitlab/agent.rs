//! Recognising a GitLab agent (agentk) installation, and naming the installation an object
//! belongs to.
//!
//! An object is part of an agent installation when it is one of the kinds that run or install
//! agentk ([`AgentKind`]) and
//! - one of its containers (regular, init or ephemeral, in the object or its pod template)
//!   runs an image whose repository ends with `gitlab-agent/agentk` (any registry or mirror,
//!   any tag or digest) or matches a configured pattern ([`AgentDetector`]), or
//! - one of its containers is started with agentk's `--kas-address` flag: agentk pulled by
//!   digest from a mirror under another name is still the program that connects to GitLab, or
//! - it carries the labels of GitLab's `gitlab-agent` Helm chart (`helm.sh/chart:
//!   gitlab-agent-<version>`) or of the 2021 kpt manifests (`app: gitlab-agent`), on itself or
//!   on its pod template, or
//! - it is a Flux HelmRelease of the `gitlab-agent` chart ([`chart_says_gitlab_agent`]).
//!
//! Its installation ([`InstallationId`]) is, in this order: the installation of its controller
//! owner when that owner is known to be an agent object; else its Helm release (namespace +
//! release name, from Helm's `meta.helm.sh/release-*` annotations or the
//! `app.kubernetes.io/instance` label); else its top-level owner; else itself.

use std::borrow::Cow;
use std::fmt;

use regex::Regex;
use serde::Deserialize;

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
    CronJob,
    Job,
    ReplicaSet,
    Pod,
}

pub const FLUX_HELM_GROUP: &str = "helm.toolkit.fluxcd.io";

impl AgentKind {
    pub const ALL: [AgentKind; 8] = [
        AgentKind::HelmRelease,
        AgentKind::Deployment,
        AgentKind::StatefulSet,
        AgentKind::DaemonSet,
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
            AgentKind::Pod => "",
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            AgentKind::HelmRelease => "HelmRelease",
            AgentKind::Deployment => "Deployment",
            AgentKind::StatefulSet => "StatefulSet",
            AgentKind::DaemonSet => "DaemonSet",
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
        matches!(
            AgentKind::of(group, kind),
            Some(
                AgentKind::ReplicaSet
                    | AgentKind::StatefulSet
                    | AgentKind::DaemonSet
                    | AgentKind::Job
            )
        )
    }
}

impl fmt::Display for AgentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind())
    }
}

/// Which agent installation an object belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum InstallationId {
    /// A Helm release, however it was installed (`helm install`, a Flux HelmRelease, a
    /// GitOps tool that sets `app.kubernetes.io/instance`).
    Release { namespace: String, release: String },
    /// An installation without a release, by its top-level owner. A Deployment's name is
    /// kept without the chart's epoch suffix (`-v1`, `-v2`): the chart upgrades `<name>` to
    /// `<name>-v2`, and that is the same installation.
    Workload {
        namespace: String,
        kind: String,
        name: String,
    },
}

impl InstallationId {
    pub fn namespace(&self) -> &str {
        match self {
            InstallationId::Release { namespace, .. }
            | InstallationId::Workload { namespace, .. } => namespace,
        }
    }

    /// The release name, or for an installation without one, its top-level workload's name.
    pub fn name(&self) -> &str {
        match self {
            InstallationId::Release { release, .. } => release,
            InstallationId::Workload { name, .. } => name,
        }
    }

    fn workload(namespace: &str, kind: &str, name: &str) -> Self {
        let name = if kind == "Deployment" {
            without_epoch_suffix(name)
        } else {
            name
        };
        InstallationId::Workload {
            namespace: namespace.to_string(),
            kind: kind.to_string(),
            name: name.to_string(),
        }
    }
}

impl fmt::Display for InstallationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // An empty namespace is a manifest's that sets none (fluxgate check).
            InstallationId::Release { namespace, release } if namespace.is_empty() => {
                write!(f, "Helm release {release}")
            }
            InstallationId::Release { namespace, release } => {
                write!(f, "Helm release {namespace}/{release}")
            }
            InstallationId::Workload {
                namespace,
                kind,
                name,
            } if namespace.is_empty() => write!(f, "{kind} {name}"),
            InstallationId::Workload {
                namespace,
                kind,
                name,
            } => write!(f, "{kind} {namespace}/{name}"),
        }
    }
}

/// `gitlab-agent-v2` -> `gitlab-agent`: the chart's Deployment name epochs.
fn without_epoch_suffix(name: &str) -> &str {
    match name.rsplit_once("-v") {
        Some((base, epoch))
            if !base.is_empty()
                && !epoch.is_empty()
                && epoch.bytes().all(|b| b.is_ascii_digit()) =>
        {
            base
        }
        _ => name,
    }
}

/// The controller that owns an object, as far as the object itself can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The uid of the direct controller (`ownerReferences[controller=true].uid`).
    pub uid: Option<String>,
    /// The top-level owner's kind and name, as far as the object can tell: a Pod of a
    /// Deployment's ReplicaSet names its Deployment (the ReplicaSet is `<deployment>-<hash>`
    /// and the Pod carries the hash as `pod-template-hash`).
    pub top_kind: String,
    pub top_name: String,
}

/// The compact facts about one agent object that identity needs; what the cluster view keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentFacts {
    pub kind: AgentKind,
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
    pub owner: Option<Owner>,
    /// (namespace, release name) of the Helm release it belongs to, if any.
    pub release: Option<(String, String)>,
    /// The Secret (in `namespace`) holding agentk's token, for `secret-rotation`. Only the
    /// cluster view fills it ([`token_secret`]); admission does not need it.
    pub token_secret: Option<String>,
    /// The ServiceAccount (in `namespace`) agentk runs as, for `ci-impersonation`: the one
    /// identity that may hold `impersonate`. Only the cluster view fills it
    /// ([`service_account`]).
    pub service_account: Option<String>,
}

impl AgentFacts {
    /// The installation this object belongs to. `owner_installation` answers with the
    /// installation of a known agent object by uid (from the cluster view).
    pub fn installation(
        &self,
        owner_installation: impl Fn(&str) -> Option<InstallationId>,
    ) -> InstallationId {
        if let Some(id) = self
            .owner
            .as_ref()
            .and_then(|o| o.uid.as_deref())
            .filter(|uid| self.uid.as_deref() != Some(*uid))
            .and_then(owner_installation)
        {
            return id;
        }
        if let Some((namespace, release)) = &self.release {
            return InstallationId::Release {
                namespace: namespace.clone(),
                release: release.clone(),
            };
        }
        match &self.owner {
            Some(owner) => {
                InstallationId::workload(&self.namespace, &owner.top_kind, &owner.top_name)
            }
            None => InstallationId::workload(&self.namespace, self.kind.kind(), &self.name),
        }
    }

    /// `Kind namespace/name`, as messages name objects (`Kind name` without a namespace).
    pub fn object_ref(&self) -> String {
        if self.namespace.is_empty() {
            format!("{} {}", self.kind, self.name)
        } else {
            format!("{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// Why an object counts as an agent installation, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evidence {
    Image { container: String, image: String },
    KasAddress { container: String, image: String },
    ChartLabel { chart: String },
    LegacyLabel,
    HelmChart { chart: String },
    HelmChartRef { kind: String, name: String },
}

impl fmt::Display for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Evidence::Image { container, image } => {
                write!(f, "container {container} runs {image}")
            }
            Evidence::KasAddress { container, image } => write!(
                f,
                "container {container} runs {image} with agentk's {KAS_ADDRESS_FLAG} flag"
            ),
            Evidence::ChartLabel { chart } => {
                write!(f, "it carries the chart label helm.sh/chart: {chart}")
            }
            Evidence::LegacyLabel => f.write_str("it carries the agent's label app: gitlab-agent"),
            Evidence::HelmChart { chart } => write!(f, "it installs the chart {chart}"),
            Evidence::HelmChartRef { kind, name } => {
                write!(f, "its chartRef names {kind} {name}")
            }
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
    #[serde(
        rename = "pod-template-hash",
        borrow,
        default,
        deserialize_with = "crate::json_view::borrowed::option"
    )]
    pod_template_hash: Option<Cow<'a, str>>,
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
}

impl Container<'_> {
    /// Whether the container starts a program with agentk's `--kas-address` flag.
    fn passes_kas_address(&self) -> bool {
        [&self.command, &self.args]
            .into_iter()
            .flat_map(|list| list.as_deref().unwrap_or_default())
            .any(|arg| {
                arg.strip_prefix(KAS_ADDRESS_FLAG)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('='))
            })
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

        let evidence = container_lists
            .iter()
            .flat_map(|list| list.iter())
            .find_map(|c| {
                let image = c.image.as_deref()?;
                detector.is_agent_image(image).then(|| Evidence::Image {
                    container: c.name.to_string(),
                    image: image.to_string(),
                })
            })
            .or_else(|| {
                container_lists
                    .iter()
                    .flat_map(|list| list.iter())
                    .find(|c| c.passes_kas_address())
                    .map(|c| Evidence::KasAddress {
                        container: c.name.to_string(),
                        image: c.image.as_deref().unwrap_or("").to_string(),
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
            })?;

        let namespace = meta.namespace(default_namespace);
        let annotations = meta.annotations.as_ref();
        let release = annotations
            .and_then(|a| non_empty(&a.release_name))
            .map(|release| {
                let ns = annotations
                    .and_then(|a| non_empty(&a.release_namespace))
                    .unwrap_or(&namespace);
                (ns.to_string(), release.to_string())
            })
            .or_else(|| {
                label_sets
                    .iter()
                    .find_map(|labels| non_empty(&labels.instance))
                    .map(|release| (namespace.clone(), release.to_string()))
            });

        let own_hash = meta
            .labels
            .as_ref()
            .and_then(|l| non_empty(&l.pod_template_hash));
        let owner = meta.controller().map(|o| {
            let group = group_of(&o.api_version);
            let deployment = (group == "apps" && o.kind == "ReplicaSet")
                .then(|| own_hash.and_then(|hash| o.name.strip_suffix(&format!("-{hash}"))))
                .flatten()
                .filter(|name| !name.is_empty());
            let (top_kind, top_name) = match deployment {
                Some(name) => ("Deployment".to_string(), name.to_string()),
                None => (o.kind.to_string(), o.name.to_string()),
            };
            Owner {
                uid: o
                    .uid
                    .as_deref()
                    .filter(|u| !u.is_empty())
                    .map(str::to_string),
                top_kind,
                top_name,
            }
        });

        Some((
            AgentFacts {
                kind,
                name: meta.name(),
                namespace,
                uid: non_empty(&meta.uid).map(str::to_string),
                owner,
                release,
                token_secret: None,
                service_account: None,
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
        let owner = meta.controller().map(|o| Owner {
            uid: o
                .uid
                .as_deref()
                .filter(|u| !u.is_empty())
                .map(str::to_string),
            top_kind: o.kind.to_string(),
            top_name: o.name.to_string(),
        });
        Some((
            AgentFacts {
                kind: AgentKind::HelmRelease,
                uid: non_empty(&meta.uid).map(str::to_string),
                name,
                namespace,
                owner,
                release: Some((release_namespace, release)),
                token_secret: None,
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

/// Whether a Pod's controller owner is a kind that stands for its Pods
/// ([`owner_represents_pod`]). A malformed list of owners names none.
pub fn pod_represented_by_owner(pod: &crate::json_view::Indexed<'_>) -> bool {
    let Ok(owners) = pod.view::<OwnersOnly<'_>>(pod.raw()) else {
        return false;
    };
    owners
        .metadata
        .and_then(|m| m.owner_references)
        .into_iter()
        .flatten()
        .filter(|o| o.controller == Some(true))
        .any(|o| owner_represents_pod(group_of(&o.api_version), &o.kind))
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
    fn epoch_suffixes_are_one_installation() {
        assert_eq!(without_epoch_suffix("gitlab-agent-v2"), "gitlab-agent");
        assert_eq!(without_epoch_suffix("gitlab-agent-v10"), "gitlab-agent");
        assert_eq!(without_epoch_suffix("gitlab-agent"), "gitlab-agent");
        assert_eq!(without_epoch_suffix("agent-vx"), "agent-vx");
        assert_eq!(without_epoch_suffix("-v2"), "-v2");
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

    #[test]
    fn a_pod_of_a_deployment_names_its_deployment_as_top_owner() {
        let pod = r#"{"metadata":{"name":"gitlab-agent-7d9f8-abcde","namespace":"gitlab-agent",
          "labels":{"app":"gitlab-agent","pod-template-hash":"7d9f8"},
          "ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"gitlab-agent-7d9f8","uid":"rs-1","controller":true}]},
          "spec":{"containers":[{"name":"agent","image":"registry.gitlab.com/gitlab-org/cluster-integration/gitlab-agent/agentk:latest"}]}}"#;
        let (facts, _) = AgentDetector::default()
            .recognise_json(AgentKind::Pod, pod, None)
            .expect("parses")
            .expect("agent");
        assert_eq!(
            facts.installation(|_| None),
            InstallationId::Workload {
                namespace: "gitlab-agent".into(),
                kind: "Deployment".into(),
                name: "gitlab-agent".into()
            }
        );
    }
}
