//! Policy `tenant-lockdown`: Flux's multi-tenancy lockdown, enforced per object.
//!
//! Flux locks tenants down with controller flags: `--no-cross-namespace-refs=true` (an object
//! may use sources of its own namespace only), `--default-service-account=<name>` (an object
//! that names no ServiceAccount is applied with that one instead of the controller's
//! cluster-admin account) and, for kustomize-controller, `--no-remote-bases=true`. Those flags
//! are global, invisible to tenants, and easy to lose in an upgrade. This policy enforces the
//! same intent on every Kustomization and HelmRelease in a tenant namespace, at admission.
//!
//! # The rule
//! A tenant namespace is every namespace but `platformNamespaces` (default `flux-system`).
//! There, a Kustomization (`kustomize.toolkit.fluxcd.io`) or HelmRelease
//! (`helm.toolkit.fluxcd.io`), in every served version:
//! - must set `spec.serviceAccountName`, so that its controller impersonates a ServiceAccount
//!   whose RBAC the platform team grants, instead of acting as cluster-admin;
//! - may leave `spec.sourceRef.namespace`, `spec.chart.spec.sourceRef.namespace` and
//!   `spec.chartRef.namespace` out or set them to its own namespace, never to another;
//! - may set `spec.kubeConfig` (act on another cluster, with credentials of its own
//!   namespace) only in `kubeConfigNamespaces`. Platform namespaces may always.
//!
//! # An object without a namespace
//! Only `fluxgate check` sees one (the API server fills in the namespace of every request).
//! Flux applies such a manifest to the `targetNamespace` of the Kustomization that deploys it,
//! which a manifest check cannot know: it may be a tenant namespace, so the object is judged as
//! a tenant's (fail closed), and a reference that names any namespace is reported because it
//! cannot be shown to be the object's own. Setting `metadata.namespace` makes the verdict
//! exact.
//!
//! # The drift check (the controllers' own flags)
//! A Deployment whose container runs a kustomize-controller or helm-controller image (the
//! last path segment of the image repository, so registry mirrors count) without the
//! lockdown flags gets an advisory finding: a warning at admission that never blocks the Flux
//! controllers, whatever the mode, and a `warn` result in the audit scan's PolicyReports.
//! The flags are read from `command` and `args` as the controllers' flag parser reads them
//! (`--flag=value`, `--flag value` for strings, a bare `--flag` for booleans, the last one
//! wins). `controllerFlags: off` turns the check off.

mod controller_flags;

use serde::{Deserialize, Serialize};

use super::{CREATE_UPDATE, Context, KindRule, Policy, PolicySettings, SettingError};
use crate::finding::{Finding, Mode, PolicyId};
use crate::flux::helm_release::{self, HelmRelease};
use crate::flux::kustomization::{self, Kustomization};
use crate::flux::reference::{KubeConfigReference, SourceReference};
use crate::flux::{HELM_GROUP, KUSTOMIZE_GROUP};

pub use controller_flags::{Controller, default_service_account};

const ID: PolicyId = PolicyId::TenantLockdown;

const KINDS: &[KindRule] = &[
    KindRule {
        group: KUSTOMIZE_GROUP,
        kind: kustomization::KIND,
        resource: kustomization::RESOURCE,
        opt_in: false,
        operations: CREATE_UPDATE,
        judged_fields: &[
            "/spec/serviceAccountName",
            "/spec/sourceRef",
            "/spec/kubeConfig",
        ],
    },
    KindRule {
        group: HELM_GROUP,
        kind: helm_release::KIND,
        resource: helm_release::RESOURCE,
        opt_in: false,
        operations: CREATE_UPDATE,
        judged_fields: &[
            "/spec/serviceAccountName",
            "/spec/chart/spec/sourceRef",
            "/spec/chartRef",
            "/spec/kubeConfig",
        ],
    },
    // The drift check. Deployments are in the default webhook rules already (single-agent).
    KindRule {
        group: "apps",
        kind: "Deployment",
        resource: "deployments",
        opt_in: false,
        operations: CREATE_UPDATE,
        judged_fields: &["/spec/template/spec/containers"],
    },
];

/// Whether the audit scan and admission report Flux controllers without the lockdown flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ControllerFlags {
    /// An advisory finding: a warning, never a denial.
    #[default]
    Warn,
    Off,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Settings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// Namespaces of the platform team, where the tenant rules do not apply.
    pub platform_namespaces: Vec<String>,
    /// Tenant namespaces whose objects may set `spec.kubeConfig`.
    pub kube_config_namespaces: Vec<String>,
    pub controller_flags: ControllerFlags,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            mode: None,
            platform_namespaces: vec!["flux-system".to_string()],
            kube_config_namespaces: Vec::new(),
            controller_flags: ControllerFlags::Warn,
        }
    }
}

impl PolicySettings for Settings {
    fn mode(&self) -> Option<Mode> {
        self.mode
    }

    fn validate(&mut self) -> Result<(), SettingError> {
        for (key, names) in [
            ("platformNamespaces", &self.platform_namespaces),
            ("kubeConfigNamespaces", &self.kube_config_namespaces),
        ] {
            for (i, name) in names.iter().enumerate() {
                if name.trim().is_empty() {
                    return Err(SettingError::new(format!("{key}[{i}]"), "is empty"));
                }
            }
        }
        Ok(())
    }
}

impl Settings {
    pub fn is_platform(&self, namespace: &str) -> bool {
        self.platform_namespaces.iter().any(|n| n == namespace)
    }
}

#[derive(Default)]
pub struct TenantLockdown;

impl Policy for TenantLockdown {
    type Settings = Settings;

    fn id(&self) -> PolicyId {
        ID
    }

    fn kinds(&self) -> &'static [KindRule] {
        KINDS
    }

    fn validate(&self, ctx: &Context<'_, Settings>) -> Vec<Finding> {
        let settings = ctx.settings;
        let request = ctx.request;
        if (request.kind.group.as_ref(), request.kind.kind.as_ref()) == ("apps", "Deployment") {
            return match settings.controller_flags {
                ControllerFlags::Warn => controller_flags::judge(ctx),
                ControllerFlags::Off => Vec::new(),
            };
        }
        let namespace = request.namespace();
        if namespace.is_some_and(|ns| settings.is_platform(ns)) {
            return Vec::new();
        }
        let tenant = Tenant {
            subject: ctx.object_ref(),
            namespace,
            settings,
        };
        let judged = match (request.kind.group.as_ref(), request.kind.kind.as_ref()) {
            (KUSTOMIZE_GROUP, kustomization::KIND) => {
                ctx.read_object::<Kustomization>(ID).map(|k| {
                    let spec = k.spec;
                    tenant.judge(
                        Controller::Kustomize,
                        spec.service_account_name.as_deref(),
                        &[("spec.sourceRef", spec.source_ref.as_ref())],
                        spec.kube_config.as_ref(),
                    )
                })
            }
            (HELM_GROUP, helm_release::KIND) => ctx.read_object::<HelmRelease>(ID).map(|r| {
                let spec = r.spec;
                let template_source = spec.chart.as_ref().and_then(|c| c.spec.source_ref.as_ref());
                tenant.judge(
                    Controller::Helm,
                    spec.service_account_name.as_deref(),
                    &[
                        ("spec.chart.spec.sourceRef", template_source),
                        ("spec.chartRef", spec.chart_ref.as_ref()),
                    ],
                    spec.kube_config.as_ref(),
                )
            }),
            _ => Ok(Vec::new()),
        };
        judged.unwrap_or_else(|malformed| vec![malformed])
    }
}

/// A Kustomization or HelmRelease outside the platform namespaces.
struct Tenant<'t> {
    subject: String,
    /// `None` for a manifest without `metadata.namespace` (see the module documentation).
    namespace: Option<&'t str>,
    settings: &'t Settings,
}

impl Tenant<'_> {
    fn place(&self) -> String {
        match self.namespace {
            Some(ns) => format!("tenant namespace {ns}"),
            None => "a namespace fluxgate cannot see (metadata.namespace is not set, so Flux applies it to the targetNamespace of the Kustomization that deploys it, which may be a tenant's)".to_string(),
        }
    }

    fn judge(
        &self,
        controller: Controller,
        service_account: Option<&str>,
        sources: &[(&str, Option<&SourceReference<'_>>)],
        kube_config: Option<&KubeConfigReference<'_>>,
    ) -> Vec<Finding> {
        let subject = &self.subject;
        let mut findings = Vec::new();
        if service_account.is_none_or(|sa| sa.trim().is_empty()) {
            let own = self.namespace.unwrap_or("<namespace>");
            // What it runs as depends on a flag of the controller this object cannot show:
            // say both, so that the message is true on a locked-down cluster too.
            findings.push(Finding::violation(
                ID,
                format!(
                    "{subject} has no spec.serviceAccountName, so what {controller} applies it as depends on the controller's flags: with Flux's multi-tenancy lockdown (--default-service-account=<name>) as ServiceAccount {own}/<name>, without it with the controller's own cluster-admin rights. In {}, every Kustomization and HelmRelease must name the ServiceAccount the controller impersonates (Flux's --default-service-account lockdown, per object), so that a lost flag cannot turn it into cluster-admin. Set `spec.serviceAccountName` to a ServiceAccount of namespace {own} bound to the rights the tenant may use.",
                    self.place(),
                    controller = controller.name(),
                ),
            ));
        }
        for (path, source) in sources {
            let Some(source) = source else { continue };
            let target = source.namespace.as_ref();
            if target.is_empty() || self.namespace == Some(target) {
                continue;
            }
            let what = format!("{} {}/{}", source.kind, target, source.name);
            findings.push(Finding::violation(
                ID,
                match self.namespace {
                    Some(own) => format!(
                        "{subject}: {path}.namespace is {target}, but an object in {} may only use sources of its own namespace (Flux's --no-cross-namespace-refs lockdown): {what} belongs to another namespace. Put the {} in {own} and drop {path}.namespace.",
                        self.place(),
                        if source.kind.is_empty() { "source" } else { &source.kind },
                    ),
                    None => format!(
                        "{subject}: {path}.namespace is {target}, and the object has no metadata.namespace, so fluxgate cannot tell whether {what} is in its own namespace; Flux applies the object to the targetNamespace of the Kustomization that deploys it, and a tenant may only use sources of its own namespace (--no-cross-namespace-refs). Set metadata.namespace, or drop {path}.namespace so the source is looked up next to the object."
                    ),
                },
            ));
        }
        if let Some(kube_config) = kube_config {
            let allowed = self
                .namespace
                .is_some_and(|ns| self.settings.kube_config_namespaces.iter().any(|k| k == ns));
            if !allowed {
                let allow_list = if self.settings.kube_config_namespaces.is_empty() {
                    "none is listed".to_string()
                } else {
                    format!(
                        "listed: {}",
                        self.settings.kube_config_namespaces.join(", ")
                    )
                };
                findings.push(Finding::violation(
                    ID,
                    format!(
                        "{subject}: spec.kubeConfig ({}) makes {} act on another cluster with those credentials, beyond this cluster's tenant RBAC; in {}, only namespaces in tenant-lockdown's kubeConfigNamespaces may do that ({allow_list}). Remove spec.kubeConfig, let the platform team deploy to other clusters from a platform namespace{}, or add the namespace to kubeConfigNamespaces in fluxgate's configuration.",
                        kube_config.describe(),
                        controller.name(),
                        self.place(),
                        if self.settings.platform_namespaces.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", self.settings.platform_namespaces.join(", "))
                        },
                    ),
                ));
            }
        }
        findings
    }
}
