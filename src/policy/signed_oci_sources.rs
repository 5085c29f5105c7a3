//! Policy `signed-oci-sources`.
//!
//! GitLab: "sign generated OCI images, and deploy only images signed and verified by Flux".
//! source-controller checks a signature only when the object asks for it (`spec.verify`): an
//! OCIRepository without it is pulled silently, and one whose keyless identity matches anyone
//! accepts anyone's signature. This policy denies both, for OCIRepository and for charts pulled
//! from OCI HelmRepositories (HelmChart, HelmRelease chart templates); its `/mutate` side adds
//! the organisation's `verify` block (`verifyDefaults`) where one is missing.

pub mod identity;
mod settings;

use std::sync::{Arc, Mutex, MutexGuard};

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation};
use serde::Deserialize;
use serde_json::json;

pub use settings::{
    IdentityPattern, SecretName, Settings, UnknownHelmRepository, VerifyBlock, VerifyDefault,
};

use self::identity::{Breadth, IdentityField, IssuerKind, SubjectBreadth, SubjectRule};
use self::settings::Compiled;
use super::{CREATE_UPDATE, Context, KindRule, Policy};
use crate::admission::Operation;
use crate::admission::Request;
use crate::budget::{Budget, Exceeded, Resource};
use crate::cluster::{Lookup, ObjectKey};
use crate::finding::{Finding, PolicyId, object_ref};
use crate::flux::helm_chart::{self, HelmChart};
use crate::flux::helm_release::{self, HelmRelease};
use crate::flux::helm_repository::{self, HelmRepository};
use crate::flux::meta::ObjectMeta;
use crate::flux::oci_repository::{self, OciRepository};
use crate::flux::reference::SourceReference;
use crate::flux::verification::{OidcIdentityMatch, Provider, Verification};
use crate::flux::{self, HELM_GROUP, SOURCE_GROUP};

/// Records which `verifyDefaults` rule `/mutate` took a `verify` block from.
pub const ANNOTATION_VERIFY_DEFAULT: &str = "fluxgate.io/verify-default";

const ID: PolicyId = PolicyId::SignedOciSources;

const KINDS: &[KindRule] = &[
    KindRule {
        group: SOURCE_GROUP,
        kind: oci_repository::KIND,
        resource: oci_repository::RESOURCE,
        opt_in: false,
        operations: CREATE_UPDATE,
        judged_fields: &["/spec"],
    },
    KindRule {
        group: SOURCE_GROUP,
        kind: helm_chart::KIND,
        resource: helm_chart::RESOURCE,
        opt_in: false,
        operations: CREATE_UPDATE,
        judged_fields: &["/spec"],
    },
    // A repository that turns OCI changes what its charts pull: they must verify first.
    KindRule {
        group: SOURCE_GROUP,
        kind: helm_repository::KIND,
        resource: helm_repository::RESOURCE,
        opt_in: false,
        operations: CREATE_UPDATE,
        judged_fields: &["/spec"],
    },
    KindRule {
        group: HELM_GROUP,
        kind: helm_release::KIND,
        resource: helm_release::RESOURCE,
        opt_in: false,
        operations: CREATE_UPDATE,
        // Where the chart comes from; values, intervals and the like do not matter here.
        judged_fields: &["/spec/chart"],
    },
];

#[derive(Default)]
pub struct SignedOciSources {
    patterns: PatternCache,
}

impl Policy for SignedOciSources {
    type Settings = Settings;

    fn id(&self) -> PolicyId {
        ID
    }

    fn kinds(&self) -> &'static [KindRule] {
        KINDS
    }

    fn validate(&self, ctx: &Context<'_, Settings>) -> Vec<Finding> {
        let settings = ctx.settings;
        let compiled = match settings.compiled() {
            Ok(compiled) => compiled,
            Err(e) => {
                return vec![Finding::violation(
                    ID,
                    format!(
                        "{} cannot be judged: the signed-oci-sources configuration is invalid ({}: {})",
                        ctx.object_ref(),
                        e.key,
                        e.message
                    ),
                )];
            }
        };
        let judge = Judge {
            settings,
            compiled: &compiled,
            budget: ctx.budget,
            issuer: &|pattern| self.patterns.issuer(pattern, ctx.budget),
            subject: &|pattern, hosts| self.patterns.subject(pattern, hosts, ctx.budget),
        };
        let judged = match ctx.request.kind.kind.as_ref() {
            oci_repository::KIND => judge.oci_repository(ctx),
            helm_chart::KIND => judge.helm_chart(ctx),
            helm_release::KIND => judge.helm_release(ctx),
            helm_repository::KIND => judge.helm_repository(ctx),
            _ => Ok(Vec::new()),
        };
        judged.unwrap_or_else(|malformed| vec![malformed])
    }

    fn prefetch(&self, request: &Request<'_>) -> Vec<ObjectKey> {
        helm_repository_of(request).into_iter().collect()
    }

    fn mutate(&self, ctx: &Context<'_, Settings>) -> Vec<PatchOperation> {
        let settings = ctx.settings;
        if settings.verify_defaults.is_empty() {
            return Vec::new();
        }
        let Ok(compiled) = settings.compiled() else {
            return Vec::new();
        };
        // A malformed object gets no patch: validation denies it with the reason.
        match ctx.request.kind.kind.as_ref() {
            oci_repository::KIND => {
                let Ok(repo) = read::<OciRepository>(ctx) else {
                    return Vec::new();
                };
                if repo.spec.verify.is_some() {
                    return Vec::new();
                }
                match settings.default_for(&compiled, &repo.spec.url) {
                    Some((label, block)) => verify_patch(repo.metadata.as_ref(), &block, &label),
                    None => Vec::new(),
                }
            }
            helm_chart::KIND => {
                let Ok(chart) = read::<HelmChart>(ctx) else {
                    return Vec::new();
                };
                if chart.spec.verify.is_some() {
                    return Vec::new();
                }
                let Some(source) = chart.spec.source_ref.as_ref() else {
                    return Vec::new();
                };
                let namespace = ctx.request.namespace().unwrap_or("");
                let Some(url) = oci_chart_url(ctx, namespace, source, &chart.spec.chart) else {
                    return Vec::new();
                };
                match settings.default_for(&compiled, &url) {
                    // A HelmChart cannot hold trustedRootSecretRef: such a block would not
                    // verify, so the chart is left for validation to explain.
                    Some((label, block)) if block.trusted_root_secret_ref.is_none() => {
                        verify_patch(chart.metadata.as_ref(), &block, &label)
                    }
                    _ => Vec::new(),
                }
            }
            _ => Vec::new(),
        }
    }
}

/// Parses the request's object into a typed view; a malformed one is a violation.
fn read<'a, T: Deserialize<'a>>(ctx: &Context<'a, Settings>) -> Result<T, Finding> {
    ctx.read_object(ID)
}

/// The HelmRepository a HelmChart or HelmRelease chart template pulls from, if any.
fn helm_repository_of(request: &Request<'_>) -> Option<ObjectKey> {
    let raw = request.object?;
    let own = request.namespace().unwrap_or("");
    let (namespace, name) = match request.kind.kind.as_ref() {
        helm_chart::KIND => {
            let chart: HelmChart = flux::parse_raw(raw).ok()?;
            let source = chart.spec.source_ref?;
            if source.kind != helm_repository::KIND {
                return None;
            }
            (own.to_string(), source.name.into_owned())
        }
        helm_release::KIND => {
            let release: HelmRelease = flux::parse_raw(raw).ok()?;
            let source = release.spec.chart?.spec.source_ref?;
            if source.kind != helm_repository::KIND {
                return None;
            }
            (
                source.namespace_or(own).to_string(),
                source.name.into_owned(),
            )
        }
        _ => return None,
    };
    Some(ObjectKey {
        group: SOURCE_GROUP.into(),
        kind: helm_repository::KIND.into(),
        namespace: Some(namespace),
        name,
    })
}

/// The chart's OCI URL when its HelmRepository is known to be OCI.
fn oci_chart_url(
    ctx: &Context<'_, Settings>,
    namespace: &str,
    source: &SourceReference<'_>,
    chart: &str,
) -> Option<String> {
    if source.kind != helm_repository::KIND {
        return None;
    }
    match ctx.view.helm_repository(namespace, &source.name) {
        Lookup::Found(repo) if helm_repository::is_oci(repo.oci.then_some("oci"), &repo.url) => {
            Some(helm_repository::chart_url(&repo.url, chart))
        }
        _ => None,
    }
}

/// Adds `block` as `spec.verify` and records the rule in an annotation, creating
/// `metadata.annotations` when the object has none.
fn verify_patch(
    metadata: Option<&ObjectMeta<'_>>,
    block: &VerifyBlock,
    label: &str,
) -> Vec<PatchOperation> {
    let Ok(verify) = serde_json::to_value(block) else {
        return Vec::new();
    };
    let (path, value) = match metadata {
        None => (
            PointerBuf::from_tokens(["metadata"]),
            json!({ "annotations": { ANNOTATION_VERIFY_DEFAULT: label } }),
        ),
        Some(meta) if !meta.has_annotations() => (
            PointerBuf::from_tokens(["metadata", "annotations"]),
            json!({ ANNOTATION_VERIFY_DEFAULT: label }),
        ),
        Some(_) => (
            PointerBuf::from_tokens(["metadata", "annotations", ANNOTATION_VERIFY_DEFAULT]),
            json!(label),
        ),
    };
    vec![
        PatchOperation::Add(AddOperation {
            path: PointerBuf::from_tokens(["spec", "verify"]),
            value: verify,
        }),
        PatchOperation::Add(AddOperation { path, value }),
    ]
}

/// Where a `verify` block sits and what that kind's API lets it say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Site {
    OciRepository,
    HelmChart,
    HelmReleaseTemplate,
}

impl Site {
    fn path(self) -> &'static str {
        match self {
            Site::OciRepository | Site::HelmChart => "spec.verify",
            Site::HelmReleaseTemplate => "spec.chart.spec.verify",
        }
    }

    fn parents(self) -> &'static [&'static str] {
        match self {
            Site::OciRepository | Site::HelmChart => &["spec"],
            Site::HelmReleaseTemplate => &["spec", "chart", "spec"],
        }
    }

    /// Chart templates carry only `provider` and `secretRef`.
    fn has_identities(self) -> bool {
        self != Site::HelmReleaseTemplate
    }

    /// Only OCIRepository can name another Sigstore trust root.
    fn has_trusted_root(self) -> bool {
        self == Site::OciRepository
    }
}

/// What is wrong with a `verify` block: violations deny, advisories only inform.
#[derive(Debug, Default)]
struct Judgement {
    violations: Vec<String>,
    advisories: Vec<String>,
    /// `matchOIDCIdentity` entries left unjudged once [`MAX_VIOLATIONS`] were found.
    unjudged_identities: usize,
}

/// Violations listed for one `verify` block: past this the object is denied anyway, and a
/// hostile list of thousands of broad patterns would make a message of megabytes.
const MAX_VIOLATIONS: usize = 8;

/// Judges one request with the settings in force.
struct Judge<'j> {
    settings: &'j Settings,
    compiled: &'j Compiled,
    /// Stops the identity loop of a hostile object (see [`crate::budget`]).
    budget: &'j Budget,
    issuer: &'j AnalyzeIssuer<'j>,
    subject: &'j AnalyzeSubject<'j>,
}

/// Judges one issuer pattern (through the memo, within the review's budget).
type AnalyzeIssuer<'a> = dyn Fn(&str) -> Result<Arc<Breadth>, Exceeded> + 'a;
/// Judges one subject pattern for the GitLab/GitHub hosts of its issuers.
type AnalyzeSubject<'a> = dyn Fn(&str, &[&str]) -> Result<Arc<SubjectBreadth>, Exceeded> + 'a;

impl Judge<'_> {
    fn oci_repository(&self, ctx: &Context<'_, Settings>) -> Result<Vec<Finding>, Finding> {
        let repo: OciRepository = read(ctx)?;
        let url = repo.spec.url.as_ref();
        // Named only in a finding: most requests have none.
        let subject = || format!("{} ({url})", ctx.object_ref());
        let mut findings = Vec::new();
        self.verified(
            &mut findings,
            &subject,
            repo.spec.verify.as_ref(),
            Site::OciRepository,
            Some(url),
        );
        let insecure =
            (repo.spec.insecure == Some(true)).then(|| "spec.insecure: true".to_string());
        self.transport(&mut findings, &subject, url, insecure);
        Ok(findings)
    }

    fn helm_chart(&self, ctx: &Context<'_, Settings>) -> Result<Vec<Finding>, Finding> {
        let chart: HelmChart = read(ctx)?;
        let Some(source) = chart.spec.source_ref.as_ref() else {
            return Ok(Vec::new());
        };
        // A HelmChart's source is always in its own namespace.
        let namespace = ctx.request.namespace().unwrap_or("");
        Ok(self.helm_source(
            ctx,
            Site::HelmChart,
            namespace,
            source,
            &chart.spec.chart,
            chart.spec.verify.as_ref(),
        ))
    }

    fn helm_release(&self, ctx: &Context<'_, Settings>) -> Result<Vec<Finding>, Finding> {
        let release: HelmRelease = read(ctx)?;
        // A chartRef names an OCIRepository, HelmChart or ExternalArtifact, judged on its own.
        let Some(template) = release.spec.chart.as_ref() else {
            return Ok(Vec::new());
        };
        let Some(source) = template.spec.source_ref.as_ref() else {
            return Ok(Vec::new());
        };
        let namespace = source.namespace_or(ctx.request.namespace().unwrap_or(""));
        Ok(self.helm_source(
            ctx,
            Site::HelmReleaseTemplate,
            namespace,
            source,
            &template.spec.chart,
            template.spec.verify.as_ref(),
        ))
    }

    /// A HelmRepository that is (or becomes) OCI: every HelmChart and HelmRelease chart
    /// template that pulls from it must then pass this policy, or it would pull unverified
    /// charts, and with its own `spec` unchanged, its later updates would not be judged.
    fn helm_repository(&self, ctx: &Context<'_, Settings>) -> Result<Vec<Finding>, Finding> {
        let repo: HelmRepository = read(ctx)?;
        let Some(spec) = repo.spec else {
            return Ok(Vec::new());
        };
        let url = spec.url.as_ref();
        if !helm_repository::is_oci(spec.repo_type.as_deref(), url) {
            return Ok(Vec::new());
        }
        let namespace = ctx.request.namespace().unwrap_or("");
        let name = ctx.request.name();
        let becomes = match ctx.request.operation {
            Operation::Update => {
                let was_oci = ctx
                    .request
                    .old_object
                    .and_then(|old| flux::parse_raw::<HelmRepository>(old).ok())
                    .and_then(|old| old.spec)
                    .is_some_and(|old| helm_repository::is_oci(old.repo_type.as_deref(), &old.url));
                if was_oci {
                    "is an OCI repository"
                } else {
                    "becomes an OCI repository"
                }
            }
            _ => "is an OCI repository",
        };
        let charts = match ctx.view.charts_of(namespace, name) {
            Lookup::Found(charts) => charts,
            Lookup::Missing => Vec::new(),
            Lookup::Unknown => {
                let message = format!(
                    "{} ({url}) {becomes}, whose charts must be verified by Flux, and fluxgate cannot tell which HelmCharts and HelmReleases pull from it (its view of the cluster is not synced yet, or its watch of the API server is lost; unknownHelmRepository: {})",
                    ctx.object_ref(),
                    match self.settings.unknown_helm_repository {
                        UnknownHelmRepository::Deny => "deny",
                        UnknownHelmRepository::Warn => "warn",
                    }
                );
                return Ok(vec![match self.settings.unknown_helm_repository {
                    UnknownHelmRepository::Deny => Finding::violation(ID, message),
                    UnknownHelmRepository::Warn => Finding::advisory(ID, message),
                }]);
            }
        };
        let insecure = spec.insecure == Some(true) && !self.settings.allow_insecure;
        let mut failing = Vec::new();
        for chart in &charts {
            let site = if chart.kind == helm_chart::KIND {
                Site::HelmChart
            } else {
                Site::HelmReleaseTemplate
            };
            let verify: Option<Verification<'_>> = match chart.verify.as_deref() {
                None => None,
                Some(json) => match serde_json::from_str(json) {
                    Ok(verify) => Some(verify),
                    Err(_) => {
                        failing.push(format!(
                            "{} ({} is malformed)",
                            object_ref(chart.kind, Some(&chart.namespace), &chart.name),
                            site.path()
                        ));
                        continue;
                    }
                },
            };
            let mut problems = match &verify {
                None => vec![format!("{} is missing", site.path())],
                Some(verify) => self.verification(verify, site).violations,
            };
            let chart_url = helm_repository::chart_url(url, &chart.chart);
            if insecure {
                problems.push("the repository has spec.insecure: true".into());
            }
            if !self.compiled.registry_allowed(&chart_url) {
                problems.push(format!("{chart_url} is outside allowedRegistries"));
            }
            if !problems.is_empty() {
                failing.push(format!(
                    "{} ({})",
                    object_ref(chart.kind, Some(&chart.namespace), &chart.name),
                    problems.join("; ")
                ));
            }
        }
        if failing.is_empty() {
            return Ok(Vec::new());
        }
        Ok(vec![Finding::violation(
            ID,
            format!(
                "{} ({url}) {becomes}, whose charts must be verified by Flux, but {} that pull{} from it would not pass signed-oci-sources: {}. Give each a passing verify first (a HelmRelease's chart template can only verify with a cosign public key, spec.chart.spec.verify.secretRef), then change the repository",
                ctx.object_ref(),
                if failing.len() == 1 {
                    "a chart"
                } else {
                    "charts"
                },
                if failing.len() == 1 { "s" } else { "" },
                failing.join(", ")
            ),
        )])
    }

    /// A chart from a source: only charts from OCI HelmRepositories can be (and must be)
    /// verified.
    fn helm_source(
        &self,
        ctx: &Context<'_, Settings>,
        site: Site,
        namespace: &str,
        source: &SourceReference<'_>,
        chart: &str,
        verify: Option<&Verification<'_>>,
    ) -> Vec<Finding> {
        let mut findings = Vec::new();
        if source.kind != helm_repository::KIND {
            return findings;
        }
        let repo_ref = object_ref(helm_repository::KIND, Some(namespace), &source.name);
        match ctx.view.helm_repository(namespace, &source.name) {
            Lookup::Found(repo) => {
                if !helm_repository::is_oci(repo.oci.then_some("oci"), &repo.url) {
                    return findings;
                }
                let url = helm_repository::chart_url(&repo.url, chart);
                let subject = || format!("{} (chart {url} from {repo_ref})", ctx.object_ref());
                self.verified(&mut findings, &subject, verify, site, Some(&url));
                let insecure = repo
                    .insecure
                    .then(|| format!("{repo_ref} has spec.insecure: true"));
                self.transport(&mut findings, &subject, &url, insecure);
            }
            lookup => {
                let subject = || format!("{} (chart {chart} from {repo_ref})", ctx.object_ref());
                match verify {
                    // Whatever the repository, a verify block that is there must hold.
                    Some(verify) => {
                        self.verified(&mut findings, &subject, Some(verify), site, None)
                    }
                    None => {
                        findings.push(self.unknown_repository(&subject(), &repo_ref, &lookup, site))
                    }
                }
            }
        }
        findings
    }

    fn unknown_repository<T>(
        &self,
        subject: &str,
        repo_ref: &str,
        lookup: &Lookup<T>,
        site: Site,
    ) -> Finding {
        let why = match lookup {
            Lookup::Missing => "it does not exist",
            _ => {
                "fluxgate's view of the cluster cannot tell (not synced yet, or its watch of the API server is lost)"
            }
        };
        let choice = self.settings.unknown_helm_repository;
        let message = format!(
            "{subject}: fluxgate cannot tell whether {repo_ref} is an OCI repository, whose charts must be verified by Flux, because {why} (unknownHelmRepository: {}). Create the HelmRepository first, or, if it is an OCI repository, add {}. {}",
            match choice {
                UnknownHelmRepository::Deny => "deny",
                UnknownHelmRepository::Warn => "warn",
            },
            site.path(),
            self.suggestion(site, None)
        );
        match choice {
            UnknownHelmRepository::Deny => Finding::violation(ID, message),
            UnknownHelmRepository::Warn => Finding::advisory(ID, message),
        }
    }

    /// Whether the source is verified in a way Flux can rely on.
    fn verified(
        &self,
        findings: &mut Vec<Finding>,
        subject: &dyn Fn() -> String,
        verify: Option<&Verification<'_>>,
        site: Site,
        url: Option<&str>,
    ) {
        let judgement = match verify {
            None => Judgement {
                violations: vec![format!(
                    "{} is missing, so source-controller pulls the artifact without checking any signature",
                    site.path()
                )],
                advisories: Vec::new(),
                unjudged_identities: 0,
            },
            Some(verify) => self.verification(verify, site),
        };
        if judgement.advisories.is_empty() && judgement.violations.is_empty() {
            return;
        }
        let subject = subject();
        for advisory in judgement.advisories {
            findings.push(Finding::advisory(ID, format!("{subject}: {advisory}")));
        }
        if !judgement.violations.is_empty() {
            let unjudged = match judgement.unjudged_identities {
                0 => String::new(),
                n => format!(
                    "; {n} more matchOIDCIdentity entries were not judged one by one (the ones above already deny it)"
                ),
            };
            findings.push(Finding::violation(
                ID,
                format!(
                    "{subject} must be signature-verified by Flux: {}{unjudged}. {}",
                    judgement.violations.join("; "),
                    self.suggestion(site, url)
                ),
            ));
        }
    }

    /// Plain HTTP and registries outside the allow-list.
    fn transport(
        &self,
        findings: &mut Vec<Finding>,
        subject: &dyn Fn() -> String,
        url: &str,
        insecure: Option<String>,
    ) {
        if let Some(field) = insecure.filter(|_| !self.settings.allow_insecure) {
            let subject = subject();
            findings.push(Finding::violation(
                ID,
                format!(
                    "{subject} is pulled over plain HTTP ({field}), where the artifact and its signature can be replaced in transit: serve the registry over TLS and drop insecure (allowInsecure in fluxgate's configuration permits it, e.g. for a local development registry)"
                ),
            ));
        }
        if !self.compiled.registry_allowed(url) {
            let subject = subject();
            findings.push(Finding::violation(
                ID,
                format!(
                    "{subject} is outside the allowed registries ({}): push the artifact to one of them, or add its registry to allowedRegistries in fluxgate's configuration",
                    self.settings.allowed_registries.join(", ")
                ),
            ));
        }
    }

    /// Judges a `verify` block by what source-controller does with it.
    fn verification(&self, verify: &Verification<'_>, site: Site) -> Judgement {
        let mut judgement = Judgement::default();
        let path = site.path();
        match verify.provider() {
            Provider::Unknown(provider) => judgement.violations.push(format!(
                "{path}.provider is `{provider}`, which Flux cannot verify with (use cosign or notation)"
            )),
            Provider::Notation => {
                if !verify.has_secret_ref() {
                    judgement.violations.push(format!(
                        "{path} uses notation without secretRef, and Flux reads notation's trust policy and certificates from that Secret"
                    ));
                }
                if !verify.identities().is_empty() {
                    judgement.advisories.push(format!(
                        "{path}.matchOIDCIdentity is ignored with notation: the trust policy in secretRef decides whose signatures pass"
                    ));
                }
            }
            Provider::Cosign if verify.has_secret_ref() => {
                if !verify.identities().is_empty() {
                    judgement.advisories.push(format!(
                        "{path}.matchOIDCIdentity is ignored: with secretRef, Flux checks signatures against the public keys in that Secret"
                    ));
                }
            }
            Provider::Cosign => self.keyless(verify, site, &mut judgement),
        }
        judgement
    }

    /// Cosign keyless: who may sign is all that stands between anyone's signature and the
    /// cluster.
    fn keyless(&self, verify: &Verification<'_>, site: Site, judgement: &mut Judgement) {
        let path = site.path();
        let require = self.settings.require_identity;
        if !site.has_identities() {
            if require {
                judgement.violations.push(format!(
                    "{path} uses cosign keyless verification, but a HelmRelease chart template cannot name the signer (it has no matchOIDCIdentity), so a signature from anyone with a Sigstore certificate passes"
                ));
            }
            return;
        }
        let identities = verify.identities();
        if identities.is_empty() {
            if require {
                judgement.violations.push(format!(
                    "{path} uses cosign keyless verification without matchOIDCIdentity, so a signature from anyone with a Sigstore certificate (any GitLab.com or GitHub user) passes"
                ));
            }
            return;
        }
        let trusted_issuers = !self.compiled.trusted_issuers.is_empty();
        // Only an OCIRepository can name another trust root; elsewhere the field is pruned
        // by the API server and ignored by Flux.
        let trusted_root = site.has_trusted_root() && verify.has_trusted_root();
        // Every distinct pattern is analysed: their number is bounded before any is.
        let room = self.budget.limit(Resource::IdentityPatterns);
        if self
            .budget
            .charge(
                Resource::IdentityPatterns,
                distinct_patterns(identities, room),
            )
            .is_err()
        {
            return;
        }
        // An identity repeated says nothing new: judged (and charged) once.
        let mut seen: foldhash::HashSet<(&str, &str)> = foldhash::HashSet::default();
        for (i, matcher) in identities.iter().enumerate() {
            if judgement.violations.len() >= MAX_VIOLATIONS {
                judgement.unjudged_identities += identities.len() - i;
                return;
            }
            let repeated = if identities.len() <= 16 {
                identities[..i]
                    .iter()
                    .any(|m| m.issuer == matcher.issuer && m.subject == matcher.subject)
            } else {
                !seen.insert((&matcher.issuer, &matcher.subject))
            };
            if repeated {
                // Listed with the entries past the violation cap, when any deny.
                judgement.unjudged_identities += 1;
                continue;
            }
            // Named only in a finding: most requests have none.
            let at =
                |field: IdentityField| format!("{path}.matchOIDCIdentity[{i}].{}", field.as_str());
            let invalid = |field: IdentityField, pattern: &str, e: &str| {
                format!(
                    "{} `{pattern}` is not a valid Go regular expression ({e}), so every verification fails",
                    at(field)
                )
            };
            // A stopped budget ends the loop; the engine denies with the budget's reason.
            let Ok(issuer) = (self.issuer)(&matcher.issuer) else {
                return;
            };
            // The issuers whose certificates can reach the subject check: the public
            // Sigstore instance's, or with a trusted root every issuer the pattern accepts
            // (`None`: more than fluxgate lists).
            let certifiable: Option<&[String]> = match issuer.as_ref() {
                Breadth::Invalid(e) => {
                    judgement
                        .violations
                        .push(invalid(IdentityField::Issuer, &matcher.issuer, e));
                    Some(&[])
                }
                Breadth::Broad(broad) => {
                    if require || trusted_issuers {
                        judgement.violations.push(format!(
                            "{} `{}` is too broad: {}{}",
                            at(IdentityField::Issuer),
                            matcher.issuer,
                            broad.reason,
                            accepts_example(&broad.example)
                        ));
                    }
                    Some(&[])
                }
                Breadth::Specific(issuers) => {
                    let at = || format!("{} `{}`", at(IdentityField::Issuer), matcher.issuer);
                    if !trusted_root && issuers.public.is_empty() && !issuers.example.is_empty() {
                        let private = &issuers.example;
                        judgement.violations.push(if site.has_trusted_root() {
                            format!(
                                "{} accepts {private}, which the public Sigstore instance does not certify (a self-managed GitLab signs through its own Sigstore): set {path}.trustedRootSecretRef to a Secret holding that Sigstore's trusted_root.json",
                                at()
                            )
                        } else {
                            format!(
                                "{} accepts {private}, which the public Sigstore instance does not certify, and a HelmChart cannot name another Sigstore trust root: verify with a public key (secretRef), or pull the chart through an OCIRepository with trustedRootSecretRef",
                                at()
                            )
                        });
                    }
                    let certifiable = if trusted_root {
                        issuers.listed.as_deref()
                    } else {
                        Some(issuers.public.as_slice())
                    };
                    if trusted_issuers {
                        let trusted = self.settings.trusted_issuers.join(", ");
                        // Every issuer the pattern names must be trusted, certifiable or not;
                        // past the listing bound, those the configured Sigstore certifies.
                        let named = match (&issuers.listed, trusted_root) {
                            (Some(listed), _) => Some(listed.as_slice()),
                            (None, true) => None,
                            (None, false) => Some(issuers.public.as_slice()),
                        };
                        match &named {
                            None => judgement.violations.push(format!(
                                "{} accepts more than {} issuers (an unescaped `.` accepts any character), which fluxgate cannot tell apart from untrusted ones; spell out one of the trusted issuers ({trusted})",
                                at(),
                                identity::MAX_LISTED
                            )),
                            Some(list) if list.is_empty() && issuers.example.is_empty() => {
                                judgement.violations.push(format!(
                                    "{} accepts no issuer, so no signature verifies; spell out one of the trusted issuers ({trusted})",
                                    at()
                                ))
                            }
                            Some(list) => {
                                if let Some(untrusted) =
                                    list.iter().find(|a| !self.compiled.trusts_issuer(a))
                                {
                                    judgement.violations.push(format!(
                                        "{} accepts {untrusted}, which is not a trusted issuer ({trusted})",
                                        at()
                                    ));
                                }
                            }
                        }
                    }
                    certifiable
                }
            };
            if !require {
                let Ok(subject) = (self.subject)(&matcher.subject, &[]) else {
                    return;
                };
                if let SubjectBreadth::Invalid(e) = subject.as_ref() {
                    judgement
                        .violations
                        .push(invalid(IdentityField::Subject, &matcher.subject, e));
                }
                continue;
            }
            // How each issuer's subjects are read.
            let rules: Vec<(Option<&str>, SubjectRule<'_>)> = match certifiable {
                None => vec![(None, SubjectRule::Whole)],
                Some([]) => vec![(None, SubjectRule::AnyIssuer)],
                Some(list) => list
                    .iter()
                    .map(|issuer| (Some(issuer.as_str()), self.subject_rule(issuer)))
                    .collect(),
            };
            let mut hosts: Vec<&str> = rules
                .iter()
                .filter_map(|(_, rule)| match rule {
                    SubjectRule::GitLab { host } | SubjectRule::Namespaces { host } => Some(*host),
                    _ => None,
                })
                .collect();
            hosts.sort_unstable();
            hosts.dedup();
            let Ok(subject) = (self.subject)(&matcher.subject, &hosts) else {
                return;
            };
            match subject.as_ref() {
                SubjectBreadth::Invalid(e) => {
                    judgement
                        .violations
                        .push(invalid(IdentityField::Subject, &matcher.subject, e))
                }
                SubjectBreadth::Judged(subjects) => {
                    let trusted_domain = |domain: &str| self.compiled.trusts_email_domain(domain);
                    let several = rules.len() > 1;
                    for (issuer, rule) in &rules {
                        let Some(mut broad) = subjects.broad(*rule, &trusted_domain) else {
                            continue;
                        };
                        if let (Some(issuer), SubjectRule::Whole) = (issuer, rule)
                            && identity::issuer_kind(issuer) == IssuerKind::Other
                            && !identity::is_public_sigstore_issuer(issuer)
                        {
                            broad.reason.push_str(&format!(
                                "; fluxgate reads the subjects of {issuer} whole, as it knows nothing of their format (a self-managed GitLab's are read by full project path and branch once its issuer is listed in trustedIssuers)"
                            ));
                        }
                        let for_issuer = match issuer {
                            Some(issuer) if several => format!(" for issuer {issuer}"),
                            _ => String::new(),
                        };
                        judgement.violations.push(format!(
                            "{} `{}` is too broad{for_issuer}: {}{}",
                            at(IdentityField::Subject),
                            matcher.subject,
                            broad.reason,
                            accepts_example(&broad.example)
                        ));
                        break;
                    }
                }
            }
        }
    }

    /// How an issuer's subjects are read: by full project path and branch for GitLab (and a
    /// self-managed GitLab the operator lists in `trustedIssuers`), by owner for GitHub, as
    /// email addresses for email issuers, whole for the rest.
    fn subject_rule<'i>(&self, issuer: &'i str) -> SubjectRule<'i> {
        let host = || {
            let rest = issuer.strip_prefix("https://").unwrap_or(issuer);
            rest.split('/').next().unwrap_or(rest)
        };
        match identity::issuer_kind(issuer) {
            IssuerKind::GitLab => SubjectRule::GitLab { host: host() },
            IssuerKind::GitHub => SubjectRule::Namespaces {
                host: identity::GITHUB_HOST,
            },
            IssuerKind::Email => SubjectRule::Emails,
            IssuerKind::Other
                if !identity::is_public_sigstore_issuer(issuer)
                    && self.compiled.trusts_issuer(issuer) =>
            {
                SubjectRule::GitLab { host: host() }
            }
            IssuerKind::Other => SubjectRule::Whole,
        }
    }

    /// A `verify` block that would pass, as YAML, with a sentence saying where it comes from.
    fn suggestion(&self, site: Site, url: Option<&str>) -> String {
        if site != Site::HelmReleaseTemplate
            && let Some((label, block)) =
                url.and_then(|url| self.settings.default_for(self.compiled, url))
            && (site.has_trusted_root() || block.trusted_root_secret_ref.is_none())
        {
            return format!(
                "Use the block of fluxgate's verifyDefaults rule `{label}` (its mutating webhook adds it where {} is absent):\n{}",
                site.path(),
                block.to_yaml(site.parents(), 2)
            );
        }
        if site == Site::HelmReleaseTemplate {
            return format!(
                "Verify the chart with a cosign public key, or pull it through an OCIRepository (spec.chartRef) verified with matchOIDCIdentity:\n{}",
                key_block().to_yaml(site.parents(), 2)
            );
        }
        let guess = KeylessGuess::new(url, self.compiled);
        if !guess.public && !site.has_trusted_root() {
            return format!(
                "{} is a self-managed GitLab, whose keyless signatures a HelmChart cannot verify; verify with a cosign public key:\n{}",
                guess.server,
                key_block().to_yaml(site.parents(), 2)
            );
        }
        format!(
            "For example, for cosign keyless signing in GitLab CI ({}):\n{}",
            guess.note(),
            guess.block().to_yaml(site.parents(), 2)
        )
    }
}

/// ` (it accepts `…`)` after a reason, when there is an example to show.
fn accepts_example(example: &str) -> String {
    if example.is_empty() {
        String::new()
    } else {
        format!(" (it accepts `{example}`)")
    }
}

fn key_block() -> VerifyBlock {
    VerifyBlock {
        provider: "cosign".into(),
        secret_ref: Some(SecretName {
            name: "cosign-public-key".into(),
        }),
        match_oidc_identity: Vec::new(),
        trusted_root_secret_ref: None,
    }
}

/// The GitLab instance that probably signs an artifact, from its registry URL, and the
/// project paths the URL may stand for. GitLab's container registry lays images out as
/// `<registry>/<project path>[/<image name>]`, with up to three segments of image name after
/// a project path that may itself have any number of subgroups: the URL does not say where
/// the project path ends, so the suggestion never fills it in.
struct KeylessGuess {
    /// `https://gitlab.com` or a self-managed instance.
    server: String,
    /// Every project path the registry path can stand for (GitLab registries only).
    candidates: Vec<String>,
    public: bool,
}

/// Segments of image name GitLab allows after a project path.
const MAX_IMAGE_SEGMENTS: usize = 3;

impl KeylessGuess {
    fn new(url: Option<&str>, compiled: &Compiled) -> Self {
        let path = url
            .map(|u| u.strip_prefix("oci://").unwrap_or(u))
            .unwrap_or("");
        let mut parts = path.split('/');
        let host = parts.next().unwrap_or("");
        let host = host.split(':').next().unwrap_or(host).to_ascii_lowercase();
        let gitlab_host = if host == "registry.gitlab.com" {
            Some("gitlab.com".to_string())
        } else if host.contains("gitlab") {
            Some(host.strip_prefix("registry.").unwrap_or(&host).to_string())
        } else {
            None
        };
        let segments: Vec<&str> = parts.filter(|s| !s.is_empty()).collect();
        let mut candidates = Vec::new();
        if gitlab_host.is_some() && segments.len() >= 2 {
            let shortest = segments.len().saturating_sub(MAX_IMAGE_SEGMENTS).max(2);
            for end in shortest..=segments.len() {
                candidates.push(segments[..end].join("/"));
            }
        }
        let mut server = format!("https://{}", gitlab_host.as_deref().unwrap_or("gitlab.com"));
        if !compiled.trusted_issuers.is_empty()
            && !compiled.trusts_issuer(&server)
            && let Some(trusted) = compiled.trusted_issuer_examples.first()
        {
            server = trusted.clone();
            candidates.clear();
        }
        let public = identity::is_public_sigstore_issuer(&server);
        KeylessGuess {
            server,
            candidates,
            public,
        }
    }

    fn note(&self) -> String {
        let mut note = "replace <group>/<project> with the full path (subgroups included) of the GitLab project whose pipeline signs the artifact, and main with its signing branch".to_string();
        match self.candidates.as_slice() {
            [] => {}
            [only] => note.push_str(&format!(" (`{only}`, by the registry path)")),
            candidates => note.push_str(&format!(
                "; the registry path does not say where the project path ends, so it is one of {}",
                candidates
                    .iter()
                    .map(|c| format!("`{c}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
        if !self.public {
            note.push_str(
                "; a self-managed GitLab signs through its own Sigstore, whose trusted_root.json goes in the Secret sigstore-trusted-root",
            );
        }
        note
    }

    fn block(&self) -> VerifyBlock {
        let server = regex::escape(&self.server);
        VerifyBlock {
            provider: "cosign".into(),
            secret_ref: None,
            match_oidc_identity: vec![IdentityPattern {
                issuer: format!("^{server}$"),
                subject: format!(
                    "^{server}/<group>/<project>//\\.gitlab-ci\\.yml@refs/heads/main$"
                ),
            }],
            trusted_root_secret_ref: (!self.public).then(|| SecretName {
                name: "sigstore-trusted-root".into(),
            }),
        }
    }
}

/// Identity patterns repeat across requests (the same objects are applied again at every
/// Flux reconciliation), and analysing one costs far more than the rest of a review: their
/// verdicts are kept, up to a bound.
///
/// Hashed with foldhash, two lookups per identity: SipHash's resistance to chosen collisions
/// is not needed where the map never holds more than [`PATTERN_CACHE_CAPACITY`] patterns (a
/// flood of colliding ones costs comparisons within that bound), and foldhash is still
/// seeded per map.
#[derive(Default)]
struct PatternCache {
    issuers: Memo<Breadth>,
    subjects: Memo<SubjectBreadth>,
}

const PATTERN_CACHE_CAPACITY: usize = 1024;

impl PatternCache {
    fn issuer(&self, pattern: &str, budget: &Budget) -> Result<Arc<Breadth>, Exceeded> {
        self.issuers
            .get("", pattern, budget, identity::analyze_issuer_costed)
    }

    /// Keyed by the hosts whose namespaces are counted too (usually just `gitlab.com`).
    fn subject(
        &self,
        pattern: &str,
        hosts: &[&str],
        budget: &Budget,
    ) -> Result<Arc<SubjectBreadth>, Exceeded> {
        // One host, the common case, is its own key: no key is built per review.
        let joined;
        let key = match hosts {
            [] => "",
            [host] => host,
            _ => {
                joined = hosts.join(",");
                &joined
            }
        };
        self.subjects.get(key, pattern, budget, |p| {
            identity::analyze_subject_costed(p, hosts)
        })
    }
}

/// Verdicts by host set (empty for issuers), then by pattern, each with the bytes its
/// analysis took: every review that judges the pattern is charged them, found in the memo or
/// not, so that a verdict does not depend on what the memo holds.
struct Memo<T>(Mutex<MemoMaps<T>>);

type MemoMaps<T> = foldhash::HashMap<Box<str>, foldhash::HashMap<Box<str>, Entry<T>>>;

/// A verdict, the bytes its analysis took, and how often it was found again.
struct Entry<T> {
    verdict: Arc<T>,
    bytes: u64,
    hits: u32,
}

/// Makes room in a full memo: keeps the half of its entries found most often (halving their
/// counts, so that old popularity fades) and drops the rest. The patterns of the objects Flux
/// applies again and again stay; a flood of new patterns, each judged once, replaces only its
/// own kind, so that the reviews of real objects stay inline (and off the evaluation pool
/// the flood is queued on).
fn make_room<T>(maps: &mut MemoMaps<T>) {
    let mut hits: Vec<u32> = maps
        .values()
        .flat_map(|m| m.values().map(|e| e.hits))
        .collect();
    let keep = hits.len() / 2;
    if keep == 0 {
        maps.clear();
        return;
    }
    let (_, &mut threshold, _) = hits.select_nth_unstable_by(keep, |a, b| b.cmp(a));
    let mut kept = 0;
    for map in maps.values_mut() {
        map.retain(|_, entry| {
            let stays = entry.hits > threshold
                || (entry.hits == threshold && entry.hits > 0 && kept < keep);
            if stays {
                kept += 1;
                entry.hits /= 2;
            }
            stays
        });
    }
    maps.retain(|_, map| !map.is_empty());
}

impl<T> Default for Memo<T> {
    fn default() -> Self {
        Memo(Mutex::default())
    }
}

impl<T> Memo<T> {
    fn get(
        &self,
        hosts: &str,
        pattern: &str,
        budget: &Budget,
        analyze: impl FnOnce(&str) -> (T, usize),
    ) -> Result<Arc<T>, Exceeded> {
        let hit = lock(&self.0)
            .get_mut(hosts)
            .and_then(|m| m.get_mut(pattern))
            .map(|entry| {
                entry.hits = entry.hits.saturating_add(1);
                (Arc::clone(&entry.verdict), entry.bytes)
            });
        if let Some((verdict, bytes)) = hit {
            budget.charge(Resource::RegexBytes, bytes)?;
            return Ok(verdict);
        }
        // Inline reviews stop here and are judged again on the evaluation pool. One
        // analysis is bounded by identity::LIMITS whatever the budget has left.
        budget.charge(Resource::RegexCompilations, 1)?;
        let (verdict, bytes) = analyze(pattern);
        let verdict = Arc::new(verdict);
        let bytes = bytes as u64;
        {
            let mut maps = lock(&self.0);
            // A flood of distinct patterns costs analyses, never unbounded memory.
            if maps.values().map(|m| m.len()).sum::<usize>() >= PATTERN_CACHE_CAPACITY {
                make_room(&mut maps);
            }
            maps.entry(hosts.into()).or_default().insert(
                pattern.into(),
                Entry {
                    verdict: Arc::clone(&verdict),
                    bytes,
                    hits: 0,
                },
            );
        }
        budget.charge(Resource::RegexBytes, bytes)?;
        Ok(verdict)
    }
}

/// How many distinct issuer and subject patterns a list of identities has, counted up to one
/// past `room` (a hostile list of thousands is over the budget, however many more it has);
/// short lists (all real ones) are compared pairwise, without a set.
fn distinct_patterns(identities: &[OidcIdentityMatch<'_>], room: u64) -> u64 {
    fn field<'m>(m: &'m OidcIdentityMatch<'_>, subject: bool) -> &'m str {
        if subject { &m.subject } else { &m.issuer }
    }
    if identities.len() <= 8 {
        let mut distinct = 0;
        for subject in [false, true] {
            for (i, m) in identities.iter().enumerate() {
                let pattern = field(m, subject);
                if !identities[..i].iter().any(|e| field(e, subject) == pattern) {
                    distinct += 1;
                }
            }
        }
        return distinct;
    }
    let mut seen = foldhash::HashSet::default();
    for m in identities {
        seen.insert((false, field(m, false)));
        seen.insert((true, field(m, true)));
        if seen.len() as u64 > room {
            break;
        }
    }
    seen.len() as u64
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The map holds only finished verdicts: one left by a panicking thread is still whole.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod memo_tests {
    use super::*;

    fn entry(hits: u32) -> Entry<()> {
        Entry {
            verdict: Arc::new(()),
            bytes: 1,
            hits,
        }
    }

    #[test]
    fn a_full_memo_keeps_the_patterns_found_again_and_again() {
        let mut maps: MemoMaps<()> = foldhash::HashMap::default();
        let gitlab = maps.entry("gitlab.com".into()).or_default();
        gitlab.insert("hot".into(), entry(40));
        gitlab.insert("warm".into(), entry(3));
        for i in 0..PATTERN_CACHE_CAPACITY - 2 {
            gitlab.insert(format!("flood-{i}").into_boxed_str(), entry(0));
        }
        make_room(&mut maps);
        let gitlab = &maps["gitlab.com"];
        assert_eq!(gitlab.len(), 2, "patterns never found again are dropped");
        assert_eq!(gitlab.get("hot").map(|e| e.hits), Some(20), "counts fade");
        assert!(gitlab.contains_key("warm"));

        // A flood of patterns found as often as the real ones still leaves half the room.
        let mut maps: MemoMaps<()> = foldhash::HashMap::default();
        for i in 0..PATTERN_CACHE_CAPACITY {
            maps.entry(format!("host-{}", i % 3).into_boxed_str())
                .or_default()
                .insert(format!("busy-{i}").into_boxed_str(), entry(5));
        }
        make_room(&mut maps);
        let left: usize = maps.values().map(|m| m.len()).sum();
        assert_eq!(left, PATTERN_CACHE_CAPACITY / 2);
    }
}
