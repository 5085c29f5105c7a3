//! The drift check: do the Flux controllers run with the lockdown flags?

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;

use super::ID;
use crate::finding::Finding;
use crate::policy::Context;

/// A Flux controller that applies tenants' objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Controller {
    Kustomize,
    Helm,
}

impl Controller {
    pub fn name(self) -> &'static str {
        match self {
            Controller::Kustomize => "kustomize-controller",
            Controller::Helm => "helm-controller",
        }
    }

    /// The controller an image runs: the last path segment of its repository, so that
    /// `ghcr.io/fluxcd/kustomize-controller:v1.5.0` and a mirror's
    /// `registry.example.com/mirror/fluxcd/kustomize-controller@sha256:...` both count.
    pub fn of_image(image: &str) -> Option<Controller> {
        let repository = image.split('@').next().unwrap_or(image);
        let last = repository.rsplit('/').next().unwrap_or(repository);
        let name = last.split(':').next().unwrap_or(last);
        match name {
            "kustomize-controller" => Some(Controller::Kustomize),
            "helm-controller" => Some(Controller::Helm),
            _ => None,
        }
    }

    /// The lockdown flags this controller must run with.
    fn lockdown(self) -> &'static [Flag] {
        match self {
            Controller::Kustomize => &[
                Flag::NoCrossNamespaceRefs,
                Flag::DefaultServiceAccount,
                Flag::NoRemoteBases,
            ],
            Controller::Helm => &[Flag::NoCrossNamespaceRefs, Flag::DefaultServiceAccount],
        }
    }
}

impl fmt::Display for Controller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flag {
    NoCrossNamespaceRefs,
    DefaultServiceAccount,
    NoRemoteBases,
}

impl Flag {
    fn name(self) -> &'static str {
        match self {
            Flag::NoCrossNamespaceRefs => "no-cross-namespace-refs",
            Flag::DefaultServiceAccount => "default-service-account",
            Flag::NoRemoteBases => "no-remote-bases",
        }
    }

    /// How the flag reads when set as the lockdown wants it.
    fn wanted(self) -> &'static str {
        match self {
            Flag::NoCrossNamespaceRefs => "--no-cross-namespace-refs=true",
            Flag::DefaultServiceAccount => "--default-service-account=<name>",
            Flag::NoRemoteBases => "--no-remote-bases=true",
        }
    }

    fn is_bool(self) -> bool {
        self != Flag::DefaultServiceAccount
    }
}

/// The value the controller's flag parser (spf13/pflag) ends up with: the last occurrence
/// wins; a boolean takes `--flag` or `--flag=<bool>`, a string `--flag=value` or
/// `--flag value`; `--` ends the flags.
fn flag_value<'a>(args: &[&'a str], flag: Flag) -> Option<Cow<'a, str>> {
    let mut value = None;
    let mut i = 0;
    while i < args.len() {
        let arg = args[i];
        i += 1;
        let Some(rest) = arg.strip_prefix("--") else {
            continue;
        };
        if rest.is_empty() {
            break;
        }
        let (name, inline) = match rest.split_once('=') {
            Some((name, v)) => (name, Some(v)),
            None => (rest, None),
        };
        if name != flag.name() {
            continue;
        }
        value = match (inline, flag.is_bool()) {
            (Some(v), _) => Some(Cow::Borrowed(v)),
            (None, true) => Some(Cow::Borrowed("true")),
            (None, false) => {
                let next = args.get(i).copied();
                i += 1;
                next.map(Cow::Borrowed)
            }
        };
    }
    value
}

/// The ServiceAccount a controller's command line names with `--default-service-account`,
/// read as the controller's flag parser reads it; `None` when the flag is absent or empty.
pub fn default_service_account(args: &[&str]) -> Option<String> {
    flag_value(args, Flag::DefaultServiceAccount)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Go's `strconv.ParseBool`, which pflag uses.
fn go_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// The lockdown flags a controller's command line lacks, as they should read.
pub fn missing_lockdown_flags(controller: Controller, args: &[&str]) -> Vec<&'static str> {
    controller
        .lockdown()
        .iter()
        .filter(|flag| {
            let value = flag_value(args, **flag);
            let set = match value.as_deref() {
                None => false,
                Some(v) if flag.is_bool() => go_bool(v) == Some(true),
                Some(v) => !v.trim().is_empty(),
            };
            !set
        })
        .map(|flag| flag.wanted())
        .collect()
}

#[derive(Deserialize)]
struct Deployment<'a> {
    #[serde(borrow, default)]
    spec: Option<DeploymentSpec<'a>>,
}

#[derive(Deserialize)]
struct DeploymentSpec<'a> {
    #[serde(borrow, default)]
    template: Option<PodTemplate<'a>>,
}

#[derive(Deserialize)]
struct PodTemplate<'a> {
    #[serde(borrow, default)]
    spec: Option<PodSpec<'a>>,
}

#[derive(Deserialize)]
struct PodSpec<'a> {
    #[serde(borrow, default)]
    containers: Vec<Container<'a>>,
}

#[derive(Deserialize)]
struct Container<'a> {
    #[serde(borrow, default)]
    name: Cow<'a, str>,
    #[serde(borrow, default)]
    image: Cow<'a, str>,
    #[serde(borrow, default, deserialize_with = "crate::json_view::borrowed::vec")]
    command: Vec<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "crate::json_view::borrowed::vec")]
    args: Vec<Cow<'a, str>>,
}

/// Advisory findings for a Deployment that runs a Flux controller without the lockdown
/// flags. Never a violation: blocking the Flux controllers would stop every reconciliation.
pub fn judge(ctx: &Context<'_, super::Settings>) -> Vec<Finding> {
    // Every Deployment write passes here: skip the parse unless a controller image may be
    // in it (the API server and `fluxgate check` send plain, unescaped JSON strings).
    let may_run_a_controller = ctx.request.object.is_some_and(|raw| {
        let json = raw.get();
        json.contains(Controller::Kustomize.name()) || json.contains(Controller::Helm.name())
    });
    if !may_run_a_controller {
        return Vec::new();
    }
    // A Deployment fluxgate cannot read is single-agent's to report; this check only ever
    // advises.
    let Ok(deployment) = ctx.read_object::<Deployment>(ID) else {
        return Vec::new();
    };
    let containers = deployment
        .spec
        .and_then(|s| s.template)
        .and_then(|t| t.spec)
        .map(|s| s.containers)
        .unwrap_or_default();
    let mut findings = Vec::new();
    for container in &containers {
        let Some(controller) = Controller::of_image(&container.image) else {
            continue;
        };
        let args: Vec<&str> = container
            .command
            .iter()
            .chain(&container.args)
            .map(|a| a.as_ref())
            .collect();
        let missing = missing_lockdown_flags(controller, &args);
        if missing.is_empty() {
            continue;
        }
        findings.push(Finding::advisory(
            ID,
            format!(
                "{} runs {controller} (container {}) without Flux's multi-tenancy lockdown flags {}: objects fluxgate never judged (created before it, exempted, or in a namespace its webhook skips) may still use other namespaces' sources or act with the controller's cluster-admin rights. Add the flags to the container's args, for example with the patches of Flux's multi-tenancy guide in the flux-system kustomization.yaml (https://fluxcd.io/flux/installation/configuration/multitenancy/). This is a warning only: fluxgate never blocks the Flux controllers.",
                ctx.object_ref(),
                container.name,
                missing.join(", "),
            ),
        ));
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controllers_are_recognised_by_the_last_segment_of_their_image_repository() {
        for image in [
            "ghcr.io/fluxcd/kustomize-controller:v1.5.1",
            "docker.io/fluxcd/kustomize-controller",
            "registry.example.com/mirror/fluxcd/kustomize-controller@sha256:abc",
            "localhost:5000/kustomize-controller:v1",
        ] {
            assert_eq!(
                Controller::of_image(image),
                Some(Controller::Kustomize),
                "{image}"
            );
        }
        assert_eq!(
            Controller::of_image("ghcr.io/fluxcd/helm-controller:v1.2.0"),
            Some(Controller::Helm)
        );
        for image in [
            "ghcr.io/fluxcd/source-controller:v1.5.0",
            "ghcr.io/acme/kustomize-controller-fork:v1",
            "kustomize-controller-proxy",
        ] {
            assert_eq!(Controller::of_image(image), None, "{image}");
        }
    }

    #[test]
    fn flags_are_read_like_pflag_reads_them() {
        let locked = [
            "--events-addr=http://notification-controller.flux-system.svc.cluster.local./",
            "--no-cross-namespace-refs",
            "--default-service-account",
            "default",
            "--no-remote-bases=True",
        ];
        assert!(missing_lockdown_flags(Controller::Kustomize, &locked).is_empty());
        let overridden = [
            "--no-cross-namespace-refs=true",
            "--no-cross-namespace-refs=false",
        ];
        assert!(
            missing_lockdown_flags(Controller::Helm, &overridden)
                .contains(&"--no-cross-namespace-refs=true")
        );
        let after_terminator = ["--", "--no-cross-namespace-refs=true"];
        assert!(
            missing_lockdown_flags(Controller::Helm, &after_terminator)
                .contains(&"--no-cross-namespace-refs=true")
        );
        let empty_account = ["--default-service-account="];
        assert!(
            missing_lockdown_flags(Controller::Helm, &empty_account)
                .contains(&"--default-service-account=<name>")
        );
        assert_eq!(
            missing_lockdown_flags(Controller::Helm, &["--no-remote-bases=true"]).len(),
            2,
            "helm-controller has no --no-remote-bases to ask for"
        );
    }
}
