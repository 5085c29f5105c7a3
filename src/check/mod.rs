//! `fluxgate check`: the policies the webhook enforces, run over manifests in a CI pipeline
//! before anything reaches a cluster (like `kyverno apply`, `gator test`, `kwctl run`).
//!
//! Every object is judged as a CREATE by the same [`Engine`] the webhook uses, in the mode the
//! configuration gives each policy. Cluster-state rules (one agent per cluster, RBAC bindings
//! resolved against their roles) see the whole manifest set plus the `--cluster-state` files:
//! all of them are put in a [`MemoryView`] before the first object is judged. The requests are
//! dry runs (`dryRun: true`), so no policy may remember anything from them: what the view holds
//! is all the state there is.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;

use crate::cluster::{ClusterView, MemoryView};
use crate::config::Config;
use crate::engine::verdict;
use crate::engine::{AnyPolicy, Endpoint, Engine, registry};
use crate::finding::{Mode, PolicyId, Severity};
use crate::gitlab::agent_config;
use crate::report::codequality::Fingerprints;
use crate::report::{
    self, Action, Format, InputErrorEntry, Report, ReportFinding, SCHEMA_VERSION, Skipped, Subject,
    SubjectType, Summary,
};

#[doc(hidden)]
pub mod fast_yaml;
pub mod kustomize;
pub mod reader;
mod received;
pub mod scope;
pub mod tenancy;

pub use received::MUTATED_KINDS;
use received::{Item, Unit, apply_appliers, build_tenancy, group_of, items, mutate, set_aside};

use kustomize::Kustomizations;
use reader::{Content, Document, Inputs, Reader};
use scope::Scopes;
use tenancy::Tenancy;

/// `fluxgate check [--config FILE] [-o FORMAT] [--cluster-state FILE]... PATH...`
#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// Policy configuration (modes, parameters, exemptions). Without it, the built-in default
    /// enforces every policy.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Output format: text for people, json (docs/check-json-schema.md), junit
    /// (artifacts:reports:junit) or codequality (artifacts:reports:codequality).
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Text)]
    pub output: Format,

    /// Objects already in the cluster, for cluster-state rules (for example the output of
    /// `kubectl get deploy,clusterroles,rolebindings -A -o yaml`). Judged against, not checked.
    /// Repeat the flag for several files; directories are read like PATHs.
    #[arg(long = "cluster-state", value_name = "FILE")]
    pub cluster_state: Vec<PathBuf>,

    /// Colour in text output: auto uses it when standard output is a terminal and NO_COLOR
    /// is not set.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,

    /// Manifests: files, directories (recursively: *.yaml, *.yml, *.json) or - for standard
    /// input (`kustomize build . | fluxgate check -`).
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    /// Whether text output is coloured. `auto` asks about the process's own standard output,
    /// which is what the binary passes to [`run`].
    pub fn enabled(self) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::io::stdout().is_terminal()
                    && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            }
        }
    }
}

/// Runs `fluxgate check` with every policy fluxgate has. Returns the exit code: 0 when nothing
/// in enforce mode failed, 1 on an enforce violation, 2 on an unreadable input or bad usage.
pub fn run(args: &CheckArgs, stdin: impl Read, stdout: impl Write, stderr: impl Write) -> i32 {
    run_with_policies(args, registry(), stdin, stdout, stderr)
}

/// [`run`] with a given set of policies.
pub fn run_with_policies(
    args: &CheckArgs,
    policies: Vec<Box<dyn AnyPolicy>>,
    mut stdin: impl Read,
    stdout: impl Write,
    mut stderr: impl Write,
) -> i32 {
    // A failed write to stderr leaves nothing better to report it on.
    let mut say = |line: String| {
        let _ = writeln!(stderr, "fluxgate check: {line}");
    };
    if args.paths.is_empty() {
        say("no PATH given; use - to read manifests from standard input".into());
        return 2;
    }
    let config = match &args.config {
        Some(path) => match Config::from_file(path) {
            Ok(config) => config,
            Err(e) => {
                say(format!("error: {e}"));
                return 2;
            }
        },
        None => Config::default(),
    };
    let engine = Engine::with_policies(policies, config, None);
    let report = check(&engine, &args.paths, &args.cluster_state, &mut stdin);
    // The report is written in small pieces, and standard output flushes at every newline:
    // a system call per line without this buffer.
    let mut stdout = std::io::BufWriter::with_capacity(64 * 1024, stdout);
    for skip in &report.skipped {
        let at = skip.line.map(|l| format!(":{l}")).unwrap_or_default();
        say(format!("note: {}{at}: skipped: {}", skip.file, skip.reason));
    }
    for error in &report.errors {
        say(format!("error: {}", error.display()));
    }
    let color = args.output == Format::Text && args.color.enabled();
    if let Err(e) =
        report::write(&report, args.output, color, &mut stdout).and_then(|()| stdout.flush())
    {
        say(format!("error: cannot write the report: {e}"));
        return 2;
    }
    report.summary.exit_code
}

/// Reads the manifests and the cluster state, judges every object and agent configuration,
/// and returns the report.
///
/// The objects are judged as the API server would receive them (see `received`): the files
/// kustomization files name as patches, transformer configurations or generator inputs are
/// set aside (see [`kustomize`]); a cluster-scoped object loses the namespace its manifest
/// gives it; the objects a Flux Operator ResourceSet or FluxInstance makes the operator create
/// are judged too (see [`crate::flux::operator`]); namespaces and the set's Flux
/// Kustomizations are applied (see [`tenancy`]); and each object gets the changes fluxgate's
/// own mutating webhook would make before it is judged (a `verifyDefaults` block), with a note
/// that says so. Tenant Kustomizations and HelmReleases get notes on what they run as.
pub fn check(
    engine: &Engine,
    paths: &[PathBuf],
    cluster_state: &[PathBuf],
    stdin: &mut dyn Read,
) -> Report {
    let mut reader = Reader::new(stdin);
    let mut inputs = Inputs::default();
    reader.read_paths(paths, &mut inputs);
    let mut state = Inputs::default();
    reader.read_paths(cluster_state, &mut state);
    let config = engine.config();

    let mut skipped: Vec<Skipped> = Vec::new();
    let mut kustomizations = Kustomizations::default();
    for kustomization in inputs
        .kustomizations
        .drain(..)
        .chain(state.kustomizations.drain(..))
    {
        kustomizations.add(kustomization);
    }
    if !kustomizations.is_empty() {
        set_aside(&kustomizations, &mut inputs, &mut skipped);
        set_aside(&kustomizations, &mut state, &mut skipped);
    }
    let mut scopes = Scopes::default();
    for doc in inputs.documents.iter().chain(&state.documents) {
        if let Content::Object { json, head } = &doc.content
            && Scopes::is_crd(group_of(head.api_version()), head.kind())
        {
            scopes.learn(json);
        }
    }

    let view = MemoryView::new();
    view.set_offline(true);
    view.reconfigure(config.policies.single_agent.detector());
    let mut cluster_state_objects = 0;
    // The live state first: the manifest set replaces what it redefines, as applying it would.
    for doc in &state.documents {
        match &doc.content {
            Content::Object { json, head } => match view.apply_object(head, json) {
                Ok(()) => cluster_state_objects += 1,
                Err(e) => skipped.push(Skipped {
                    file: doc.file.to_string(),
                    line: Some(doc.line),
                    reason: format!("cluster state object not used: {e}"),
                }),
            },
            Content::AgentConfig { .. } => skipped.push(Skipped {
                file: doc.file.to_string(),
                line: Some(doc.line),
                reason: "a GitLab agent configuration is not cluster state".into(),
            }),
        }
    }

    let mut items = items(&inputs, &scopes, &mut skipped);
    let tenancy = build_tenancy(&kustomizations, &inputs, &mut items);
    if let Some(tenancy) = &tenancy {
        items = apply_appliers(items, tenancy, &scopes);
    }
    for item in &items {
        if let Item::Object(unit) = item {
            // A malformed object still gets judged below, where the policies say what is wrong.
            let _ = view.apply_object(&unit.head, &unit.json);
        }
    }
    for item in &mut items {
        if let Item::Object(unit) = item
            && mutate(engine, &view, unit)
        {
            let _ = view.apply_object(&unit.head, &unit.json);
        }
    }

    let mut prints = Fingerprints::default();
    let mut results = Vec::with_capacity(items.len());
    // Objects the API server would refuse: input errors, not findings.
    let mut malformed = Vec::new();
    // The item each subject was judged from.
    let mut judged = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let subject = match item {
            Item::Object(unit) => {
                judge_object(engine, &view, unit, index, &mut prints, &mut malformed)
            }
            Item::AgentConfig(doc) => {
                let Content::AgentConfig {
                    config,
                    agent,
                    text,
                    text_line,
                } = &doc.content
                else {
                    continue;
                };
                judge_agent_config(
                    engine,
                    &view,
                    doc,
                    config,
                    agent.as_deref(),
                    text,
                    *text_line,
                    &mut prints,
                )
            }
        };
        match subject {
            Ok(subject) => {
                results.push(subject);
                judged.push(item);
            }
            Err(reason) => skipped.push(Skipped {
                file: item.doc().file.to_string(),
                line: Some(item.doc().line),
                reason,
            }),
        }
    }
    if let Some(tenancy) = &tenancy {
        tenancy_notes(&config, tenancy, &judged, &mut results);
    }

    let skipped_inputs = inputs
        .skipped
        .iter()
        .chain(&state.skipped)
        .map(|s| Skipped {
            file: s.file.clone(),
            line: s.line,
            reason: s.reason.clone(),
        });
    let mut all_skipped: Vec<Skipped> = skipped_inputs.collect();
    all_skipped.extend(skipped);
    let mut errors: Vec<InputErrorEntry> = inputs
        .errors
        .iter()
        .chain(&state.errors)
        .map(|e| InputErrorEntry {
            file: e.file.clone(),
            line: e.line,
            column: e.column,
            message: e.message.clone(),
        })
        .collect();
    errors.extend(malformed);
    let mut report = Report {
        schema_version: SCHEMA_VERSION,
        summary: Summary {
            files: inputs.files + state.files,
            documents: inputs.parsed_documents,
            cluster_state_objects,
            ..Summary::default()
        },
        results,
        skipped: all_skipped,
        errors,
    };
    report.tally();
    report
}

/// Adds what the manifest set tells about who applies a tenant's Kustomization or
/// HelmRelease and as whom (see [`tenancy`]).
fn tenancy_notes(
    config: &Config,
    tenancy: &Tenancy<'_>,
    items: &[&Item<'_>],
    results: &mut [Subject],
) {
    let platform = &config.policies.tenant_lockdown.platform_namespaces;
    let wanted = |subject: &Subject| {
        subject.evaluated.contains(&PolicyId::TenantLockdown)
            && matches!(subject.kind.as_str(), "Kustomization" | "HelmRelease")
            && matches!(
                group_of(&subject.api_version),
                crate::flux::KUSTOMIZE_GROUP | crate::flux::HELM_GROUP
            )
    };
    for (subject, item) in results.iter_mut().zip(items) {
        if !wanted(subject) {
            continue;
        }
        let Item::Object(unit) = item else { continue };
        #[derive(serde::Deserialize)]
        struct Spec {
            #[serde(default, rename = "serviceAccountName")]
            service_account_name: Option<String>,
        }
        #[derive(serde::Deserialize)]
        struct Object {
            #[serde(default)]
            spec: Option<Spec>,
        }
        let has_service_account = serde_json::from_str::<Object>(unit.json.get())
            .ok()
            .and_then(|o| o.spec)
            .and_then(|s| s.service_account_name)
            .is_some_and(|sa| !sa.trim().is_empty());
        let namespace = subject.namespace.clone();
        let judged_as_tenant = namespace
            .as_deref()
            .is_none_or(|ns| !platform.iter().any(|p| p == ns));
        let notes = tenancy.notes(
            &tenancy::Subject {
                file: &subject.file,
                kind: &subject.kind,
                namespace: namespace.as_deref(),
                has_service_account,
                judged_as_tenant,
                has_findings: subject
                    .findings
                    .iter()
                    .any(|f| f.policy == PolicyId::TenantLockdown),
            },
            platform,
        );
        subject.notes.extend(notes);
    }
}

fn report_action(action: &verdict::Action) -> (Action, Option<String>) {
    match action {
        verdict::Action::Deny => (Action::Deny, None),
        verdict::Action::Warn => (Action::Warn, None),
        verdict::Action::Audit => (Action::Audit, None),
        verdict::Action::Exempted(name) => (Action::Exempted, Some(name.clone())),
    }
}

/// Judges one object; a finding that the object is malformed ([`Severity::Invalid`]) goes to
/// `malformed` as an input error, as an unparsable file would.
#[allow(clippy::too_many_arguments)]
fn judge_object(
    engine: &Engine,
    view: &MemoryView,
    unit: &Unit<'_>,
    index: usize,
    prints: &mut Fingerprints,
    malformed: &mut Vec<InputErrorEntry>,
) -> Result<Subject, String> {
    let doc = unit.doc;
    let object = &unit.head;
    let uid = format!("fluxgate-check-{index}");
    let request = object.create(&unit.json, &uid);
    let (mut verdict, _exemptions) = engine.review(Endpoint::Validate, &request, view);
    verdict.outcomes.retain(|outcome| {
        if outcome.finding.severity != Severity::Invalid {
            return true;
        }
        malformed.push(InputErrorEntry {
            file: doc.file.to_string(),
            line: Some(doc.line),
            column: None,
            message: format!("[{}] {}", outcome.finding.policy, outcome.finding.message),
        });
        false
    });

    let api_version = object.api_version().to_string();
    let group = request.kind.group.to_string();
    let namespace = object.namespace().map(str::to_string);
    let mut item = doc.item.map(|i| i.to_string()).unwrap_or_default();
    // Generated objects share their generator's file and line, and instances of an object
    // applied by several Kustomizations their file and line: the origin tells them apart.
    for origin in [&unit.generated_by, &unit.applied_by].into_iter().flatten() {
        item.push_str(&origin.display());
    }
    let findings = verdict
        .outcomes
        .iter()
        .map(|outcome| {
            let (action, exemption) = report_action(&outcome.action);
            let policy = outcome.finding.policy;
            let fingerprint = prints.next(&[
                policy.as_str(),
                &doc.file,
                &group,
                object.kind(),
                namespace.as_deref().unwrap_or(""),
                object.name(),
                &item,
                &outcome.finding.message,
            ]);
            ReportFinding {
                policy,
                severity: outcome.finding.severity,
                mode: outcome.mode,
                action,
                exemption,
                line: doc.line,
                entry: None,
                message: outcome.finding.message.clone(),
                fingerprint,
            }
        })
        .collect();
    Ok(Subject {
        subject_type: SubjectType::Object,
        file: doc.file.to_string(),
        line: doc.line,
        item: doc.item,
        api_version,
        kind: object.kind().to_string(),
        namespace,
        name: object.name().to_string(),
        evaluated: verdict.evaluated.clone(),
        findings,
        scope: unit.scope,
        generated_by: unit.generated_by.as_deref().cloned(),
        applied_by: unit.applied_by.as_deref().cloned(),
        notes: unit.notes.clone(),
    })
}

/// The agent configuration lint runs as part of `ci-impersonation`, in its mode. Exemptions
/// describe cluster requests (namespaces, users, objects) and do not apply to this file.
#[allow(clippy::too_many_arguments)]
fn judge_agent_config(
    engine: &Engine,
    view: &MemoryView,
    doc: &Document,
    config: &serde_json::Value,
    agent: Option<&str>,
    text: &str,
    text_line: usize,
    prints: &mut Fingerprints,
) -> Result<Subject, String> {
    let policy = PolicyId::CiImpersonation;
    let mode = engine.mode_of(&engine.config(), policy);
    let name_in_messages = match agent {
        Some(name) => format!("GitLab agent {name} ({})", doc.file),
        None => format!("GitLab agent configuration {}", doc.file),
    };
    let lint = if mode == Mode::Off {
        Vec::new()
    } else {
        let config_now = engine.config();
        let settings = &config_now.policies.ci_impersonation;
        let privileged = |user: &str, groups: &[String]| {
            crate::policy::ci_impersonation::privileged_identity(view, settings, user, groups)
        };
        agent_config::lint(config, text, &name_in_messages, &privileged)
    };
    let findings = lint
        .into_iter()
        .map(|f| {
            let action = match (mode, f.severity) {
                (Mode::Enforce, Severity::Violation | Severity::Invalid) => Action::Deny,
                (Mode::Enforce | Mode::Warn, _) => Action::Warn,
                _ => Action::Audit,
            };
            let fingerprint = prints.next(&[policy.as_str(), &doc.file, &f.entry, &f.message]);
            ReportFinding {
                policy,
                severity: f.severity,
                mode,
                action,
                exemption: None,
                line: f.line_offset.map(|o| text_line + o).unwrap_or(doc.line),
                entry: Some(f.entry),
                message: f.message,
                fingerprint,
            }
        })
        .collect();
    Ok(Subject {
        subject_type: SubjectType::GitlabAgentConfig,
        file: doc.file.to_string(),
        line: doc.line,
        item: None,
        api_version: String::new(),
        kind: "GitLabAgentConfig".to_string(),
        namespace: None,
        name: agent.unwrap_or("").to_string(),
        evaluated: if mode == Mode::Off {
            Vec::new()
        } else {
            vec![policy]
        },
        findings,
        scope: None,
        generated_by: None,
        applied_by: None,
        notes: Vec::new(),
    })
}
