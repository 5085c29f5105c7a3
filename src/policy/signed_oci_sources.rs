//! Policy `signed-oci-sources`.
//!
//! GitLab: "sign generated OCI images, and deploy only images signed and verified by Flux".
//! source-controller checks a signature only when the object asks for it (`spec.verify`): an
//! OCIRepository without it is pulled silently, and one whose keyless identity matches anyone
//! accepts anyone's signature. This policy denies both, for OCIRepository and for charts pulled
//! from OCI HelmRepositories (HelmChart, HelmRelease chart templates); its `/mutate` side adds
//! the organisation's `verify` block (`verifyDefaults`) where one is missing.

mod identity;
mod settings;

use std::sync::{Arc, Mutex, MutexGuard};

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation};
use serde::Deserialize;
use serde_json::json;

pub use settings::{
    IdentityPattern, SecretName, Settings, UnknownHelmRepository, VerifyBlock, VerifyDefault,
};

use self::identity::{Breadth, IdentityField};
use self::settings::Compiled;
use super::{CREATE_UPDATE, Context, KindRule, Policy};
use crate::admission::Request;
use crate::budget::{Budget, Exceeded, Resource};
use crate::cluster::{Lookup, ObjectKey};
use crate::finding::{Finding, PolicyId, object_ref};
use crate::flux::helm_chart::{self, HelmChart};
use crate::flux::helm_release::{self, HelmRelease};
use crate::flux::helm_repository;
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
            analyze: &|pattern, field| self.patterns.analyze(pattern, field, ctx.budget),
        };
        let judged = match ctx.request.kind.kind.as_ref() {
            oci_repository::KIND => judge.oci_repository(ctx),
            helm_chart::KIND => judge.helm_chart(ctx),
            helm_release::KIND => judge.helm_release(ctx),
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
    analyze: &'j Analyze<'j>,
}

/// Judges one pattern (through the memo, within the review's budget).
type Analyze<'a> = dyn Fn(&str, IdentityField) -> Result<Arc<Breadth>, Exceeded> + 'a;

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
        // Every distinct pattern is compiled: their number is bounded before any is.
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
        for (i, matcher) in identities.iter().enumerate() {
            if judgement.violations.len() >= MAX_VIOLATIONS {
                judgement.unjudged_identities = identities.len() - i;
                return;
            }
            // A stopped budget ends the loop; the engine denies with the budget's reason.
            let Ok(issuer) = (self.analyze)(&matcher.issuer, IdentityField::Issuer) else {
                return;
            };
            let Ok(subject) = (self.analyze)(&matcher.subject, IdentityField::Subject) else {
                return;
            };
            for (field, pattern, breadth) in [
                (IdentityField::Issuer, &matcher.issuer, &issuer),
                (IdentityField::Subject, &matcher.subject, &subject),
            ] {
                // Named only in a finding: most requests have none.
                let at = || format!("{path}.matchOIDCIdentity[{i}].{}", field.as_str());
                match breadth.as_ref() {
                    Breadth::Invalid(e) => judgement.violations.push(format!(
                        "{} `{pattern}` is not a valid Go regular expression ({e}), so every verification fails",
                        at()
                    )),
                    Breadth::Broad { example, reason }
                        if require || (field == IdentityField::Issuer && trusted_issuers) =>
                    {
                        judgement.violations.push(format!(
                            "{} `{pattern}` is too broad: {reason} (it accepts `{example}`)",
                            at()
                        ))
                    }
                    _ => {}
                }
            }
            let Breadth::Specific { accepts } = issuer.as_ref() else {
                continue;
            };
            let at = || format!("{path}.matchOIDCIdentity[{i}].issuer `{}`", matcher.issuer);
            if trusted_issuers {
                let trusted = self.settings.trusted_issuers.join(", ");
                if accepts.is_empty() {
                    judgement.violations.push(format!(
                        "{} accepts issuers fluxgate cannot tell apart from untrusted ones; spell out one of the trusted issuers ({trusted})",
 at()
                    ));
                } else if let Some(untrusted) =
                    accepts.iter().find(|a| !self.compiled.trusts_issuer(a))
                {
                    judgement.violations.push(format!(
                        "{} accepts {untrusted}, which is not a trusted issuer ({trusted})",
                        at()
                    ));
                }
            }
            // Only an OCIRepository can name another trust root; elsewhere the field is
            // pruned by the API server and ignored by Flux.
            let trusted_root = site.has_trusted_root() && verify.has_trusted_root();
            if !trusted_root
                && let Some(private) = accepts
                    .iter()
                    .find(|a| !identity::is_public_sigstore_issuer(a))
            {
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

/// The GitLab project that probably signs an artifact, from its registry URL: GitLab's
/// container registry lays images out as `<registry>/<group>/<project>[/<image>]`.
struct KeylessGuess {
    /// `https://gitlab.com` or a self-managed instance.
    server: String,
    project: Option<(String, String)>,
    public: bool,
}

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
        let mut segments = parts.filter(|s| !s.is_empty());
        let project = match (&gitlab_host, segments.next(), segments.next()) {
            (Some(_), Some(group), Some(project)) => Some((group.to_string(), project.to_string())),
            _ => None,
        };
        let mut server = format!("https://{}", gitlab_host.as_deref().unwrap_or("gitlab.com"));
        let mut project = project;
        if !compiled.trusted_issuers.is_empty()
            && !compiled.trusts_issuer(&server)
            && let Some(trusted) = compiled.trusted_issuer_examples.first()
        {
            server = trusted.clone();
            project = None;
        }
        let public = identity::is_public_sigstore_issuer(&server);
        KeylessGuess {
            server,
            project,
            public,
        }
    }

    fn note(&self) -> String {
        let mut note = match &self.project {
            Some(_) => "main being the branch whose pipeline signs".to_string(),
            None => "replace <group>/<project> with the GitLab project whose pipeline signs the artifact, and main with its signing branch".to_string(),
        };
        if !self.public {
            note.push_str(
                "; a self-managed GitLab signs through its own Sigstore, whose trusted_root.json goes in the Secret sigstore-trusted-root",
            );
        }
        note
    }

    fn block(&self) -> VerifyBlock {
        let server = regex::escape(&self.server);
        let project = match &self.project {
            Some((group, project)) => {
                format!("{}/{}", regex::escape(group), regex::escape(project))
            }
            None => "<group>/<project>".into(),
        };
        VerifyBlock {
            provider: "cosign".into(),
            secret_ref: None,
            match_oidc_identity: vec![IdentityPattern {
                issuer: format!("^{server}$"),
                subject: format!("^{server}/{project}//\\.gitlab-ci\\.yml@refs/heads/main$"),
            }],
            trusted_root_secret_ref: (!self.public).then(|| SecretName {
                name: "sigstore-trusted-root".into(),
            }),
        }
    }
}

/// Identity patterns repeat across requests (the same objects are applied again at every
/// Flux reconciliation), and compiling one costs far more than the rest of a review: their
/// verdicts are kept, up to a bound.
///
/// Hashed with foldhash, four lookups a review: SipHash's resistance to chosen collisions
/// is not needed where the map never holds more than [`PATTERN_CACHE_CAPACITY`] patterns (a
/// flood of colliding ones costs comparisons within that bound), and foldhash is still
/// seeded per map.
#[derive(Default)]
struct PatternCache {
    issuers: Mutex<foldhash::HashMap<Box<str>, Memo>>,
    subjects: Mutex<foldhash::HashMap<Box<str>, Memo>>,
}

/// A pattern's verdict and the size of its compiled program, which every review that judges
/// the pattern is charged, found in the memo or not; and how often it was found.
struct Memo {
    breadth: Arc<Breadth>,
    bytes: u64,
    hits: u32,
}

const PATTERN_CACHE_CAPACITY: usize = 1024;

/// Makes room in a full memo: keeps the half found most often (halving their counts, so that
/// old popularity fades), drops the rest. The patterns of the objects Flux applies again and
/// again stay; a flood of new patterns, each judged once, replaces only its own kind.
fn make_room(map: &mut foldhash::HashMap<Box<str>, Memo>) {
    let mut hits: Vec<u32> = map.values().map(|m| m.hits).collect();
    let keep = map.len() / 2;
    let (_, &mut threshold, _) = hits.select_nth_unstable_by(keep, |a, b| b.cmp(a));
    let mut kept = 0;
    map.retain(|_, memo| {
        let stays =
            memo.hits > threshold || (memo.hits == threshold && memo.hits > 0 && kept < keep);
        if stays {
            kept += 1;
            memo.hits /= 2;
        }
        stays
    });
}

impl PatternCache {
    fn analyze(
        &self,
        pattern: &str,
        field: IdentityField,
        budget: &Budget,
    ) -> Result<Arc<Breadth>, Exceeded> {
        let map = match field {
            IdentityField::Issuer => &self.issuers,
            IdentityField::Subject => &self.subjects,
        };
        let hit = lock(map).get_mut(pattern).map(|memo| {
            memo.hits = memo.hits.saturating_add(1);
            (Arc::clone(&memo.breadth), memo.bytes)
        });
        if let Some((breadth, bytes)) = hit {
            budget.charge(Resource::RegexBytes, bytes)?;
            return Ok(breadth);
        }
        // Inline reviews stop here and are judged again on the evaluation pool.
        budget.charge(Resource::RegexCompilations, 1)?;
        let left = budget
            .limit(Resource::RegexBytes)
            .saturating_sub(budget.used(Resource::RegexBytes));
        let limit = usize::try_from(left).unwrap_or(usize::MAX);
        let Some(analysis) = identity::analyze_within(pattern, field, limit) else {
            // Bigger than what the review has left: that is the budget's failure.
            return Err(budget
                .charge(Resource::RegexBytes, left.saturating_add(1))
                .err()
                .unwrap_or(Exceeded::Limit {
                    resource: Resource::RegexBytes,
                    limit: budget.limit(Resource::RegexBytes),
                }));
        };
        let bytes = analysis.compiled_bytes as u64;
        let breadth = Arc::new(analysis.breadth);
        {
            let mut map = lock(map);
            // A flood of distinct patterns costs compilations, never unbounded memory.
            if map.len() >= PATTERN_CACHE_CAPACITY {
                make_room(&mut map);
            }
            map.insert(
                pattern.into(),
                Memo {
                    breadth: Arc::clone(&breadth),
                    bytes,
                    hits: 0,
                },
            );
        }
        budget.charge(Resource::RegexBytes, bytes)?;
        Ok(breadth)
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
mod tests {
    use super::*;

    fn memo(hits: u32) -> Memo {
        Memo {
            breadth: Arc::new(Breadth::Specific {
                accepts: Vec::new(),
            }),
            bytes: 1,
            hits,
        }
    }

    #[test]
    fn a_full_memo_keeps_the_patterns_found_again_and_again() {
        let mut map = foldhash::HashMap::default();
        map.insert(Box::from("hot"), memo(40));
        map.insert(Box::from("warm"), memo(3));
        for i in 0..PATTERN_CACHE_CAPACITY - 2 {
            map.insert(format!("flood-{i}").into_boxed_str(), memo(0));
        }
        make_room(&mut map);
        assert_eq!(map.len(), 2, "patterns never found again are dropped");
        assert_eq!(map.get("hot").map(|m| m.hits), Some(20), "counts fade");
        assert!(map.contains_key("warm"));

        // A flood of patterns found as often as the real ones still leaves half the room.
        let mut map = foldhash::HashMap::default();
        for i in 0..PATTERN_CACHE_CAPACITY {
            map.insert(format!("busy-{i}").into_boxed_str(), memo(5));
        }
        make_room(&mut map);
        assert_eq!(map.len(), PATTERN_CACHE_CAPACITY / 2);
    }
}
