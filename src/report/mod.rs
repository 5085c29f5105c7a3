//! What `fluxgate check` found, and how it is written: text for people, JSON (the schema in
//! `docs/check-json-schema.md`), JUnit XML and GitLab Code Quality for merge requests.
//!
//! [`Report`] is the one model every format is written from; its JSON form is the stable,
//! documented schema (field names change only with `schemaVersion`). Reading ignores fields it
//! does not know, as newer versions may add optional ones.

use std::io::{self, Write};

use serde::{Deserialize, Serialize};

use crate::finding::{Mode, PolicyId, Severity};

pub mod codequality;
pub mod junit;
pub mod text;
mod xml;

pub use codequality::fingerprint;

/// Bumped when a field changes meaning or disappears; new optional fields do not bump it.
pub const SCHEMA_VERSION: u32 = 1;

/// The result of one `fluxgate check` run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub schema_version: u32,
    pub summary: Summary,
    /// Every object and agent configuration checked, in input order (files sorted within
    /// directories), with or without findings.
    pub results: Vec<Subject>,
    /// Files and documents read but not checked, and why.
    pub skipped: Vec<Skipped>,
    /// Inputs that could not be read or parsed; any makes the exit code 2.
    pub errors: Vec<InputErrorEntry>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Files (and standard input) read.
    pub files: usize,
    /// YAML or JSON documents parsed (a `List` counts once).
    pub documents: usize,
    /// Kubernetes objects checked (`List` items counted one by one, and every generated object
    /// and applied instance).
    pub objects: usize,
    /// GitLab agent configuration files checked.
    pub agent_configs: usize,
    /// Objects read from `--cluster-state` files (known to the policies, not checked).
    pub cluster_state_objects: usize,
    pub skipped: usize,
    pub errors: usize,
    /// Findings by what they led to.
    pub denied: usize,
    pub warned: usize,
    pub audited: usize,
    pub exempted: usize,
    /// 0 nothing in enforce mode failed, 1 an enforce violation, 2 an unreadable input.
    pub exit_code: i32,
}

/// What was checked: a Kubernetes object or a GitLab agent configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SubjectType {
    Object,
    GitlabAgentConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subject {
    #[serde(rename = "type")]
    pub subject_type: SubjectType,
    /// As given on the command line, `/`-separated; `<stdin>` for standard input.
    pub file: String,
    /// 1-based line where the document starts.
    pub line: usize,
    /// Index in the `List`'s `items` when the object came from one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<usize>,
    /// Empty for agent configurations.
    pub api_version: String,
    /// `GitLabAgentConfig` for agent configurations.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The object's name; the agent's name (from the path) or empty for agent configurations.
    pub name: String,
    /// Policies that judged this subject.
    pub evaluated: Vec<PolicyId>,
    pub findings: Vec<ReportFinding>,
    /// Whether the kind lives in a namespace, when fluxgate knows the kind (built-in kinds,
    /// Flux's, and CustomResourceDefinitions in the manifest set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
    /// For an object no manifest holds but another object makes the cluster create (a Flux
    /// Operator ResourceSet's resources, a FluxInstance's sync source): that object. `file`
    /// and `line` are then the generating object's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated_by: Option<GeneratedBy>,
    /// For an object a Flux Kustomization of the set applies changed (into its
    /// `targetNamespace`, with its `spec.patches`): that Kustomization (`field` is its
    /// `spec.path`). The subject is the object as that Kustomization applies it; an object
    /// several Kustomizations apply is a subject once for each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_by: Option<GeneratedBy>,
    /// What fluxgate did or found out beyond the findings: the mutations it applied before
    /// judging, what the object would run as, a configuration to consider.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<Note>,
}

/// Whether a kind is namespaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Scope {
    Namespaced,
    Cluster,
}

/// The object that makes the cluster create a generated subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GeneratedBy {
    pub api_version: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    /// Where in that object: `spec.resources[2]`, `spec.sync`.
    pub field: String,
}

impl GeneratedBy {
    /// `ResourceSet flux-system/apps spec.resources[2]`.
    pub fn display(&self) -> String {
        format!(
            "{} {}",
            crate::finding::object_ref(&self.kind, self.namespace.as_deref(), &self.name),
            self.field
        )
    }
}

/// What a note is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum NoteType {
    /// fluxgate's mutating webhook changes the object before the API server validates it;
    /// the findings are for the mutated object, as the cluster would judge it.
    Mutated,
    /// The manifest sets `metadata.namespace` on a cluster-scoped kind: the API server
    /// drops it.
    ClusterScoped,
    /// The identity a Flux controller would apply the object with, as far as the manifest
    /// set tells.
    RunsAs,
    /// The namespace looks like the platform team's: a configuration to consider.
    PlatformNamespace,
    /// How a generated object was made (a FluxInstance patch applied to it).
    Generated,
    /// The namespace a kustomization build sets on the object.
    Namespace,
    /// How a Flux Kustomization of the set applies the object (its targetNamespace and
    /// patches).
    AppliedBy,
    /// A generating object (ResourceSet, FluxInstance): what it makes, judged or not.
    Generates,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Note {
    #[serde(rename = "type")]
    pub note_type: NoteType,
    pub message: String,
}

impl NoteType {
    /// Notes that explain findings rather than stand on their own: the text report shows
    /// them only beside a finding or another note.
    pub fn is_context(self) -> bool {
        matches!(
            self,
            NoteType::Generated | NoteType::Namespace | NoteType::AppliedBy
        )
    }
}

impl Note {
    pub fn new(note_type: NoteType, message: impl Into<String>) -> Self {
        Note {
            note_type,
            message: message.into(),
        }
    }
}

impl Subject {
    /// `Kind namespace/name`, as policy messages name objects.
    pub fn display_name(&self) -> String {
        match self.subject_type {
            SubjectType::Object => {
                let mut name =
                    crate::finding::object_ref(&self.kind, self.namespace.as_deref(), &self.name);
                if self.namespace.is_none() && self.scope == Some(Scope::Namespaced) {
                    name.push_str(" (no namespace set)");
                }
                if let Some(origin) = &self.generated_by {
                    name.push_str(&format!(" (generated by {})", origin.display()));
                }
                if let Some(applier) = &self.applied_by {
                    name.push_str(&format!(
                        " (as {} applies it)",
                        crate::finding::object_ref(
                            &applier.kind,
                            applier.namespace.as_deref(),
                            &applier.name
                        )
                    ));
                }
                name
            }
            SubjectType::GitlabAgentConfig if self.name.is_empty() => {
                "GitLab agent configuration".to_string()
            }
            SubjectType::GitlabAgentConfig => format!("GitLab agent {}", self.name),
        }
    }

    pub fn denied(&self) -> bool {
        self.findings.iter().any(|f| f.action == Action::Deny)
    }
}

/// What a finding led to under the policy's mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Enforce mode, a violation: the API server would refuse the object. Exit code 1.
    Deny,
    /// Warn mode, or advice in enforce mode: the API server would warn.
    Warn,
    /// Audit mode: recorded only.
    Audit,
    /// An exemption in the configuration lets the object through.
    Exempted,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportFinding {
    pub policy: PolicyId,
    pub severity: Severity,
    pub mode: Mode,
    pub action: Action,
    /// The exemption's name when `action` is `exempted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exemption: Option<String>,
    /// 1-based line the finding points at (the document's, or an agent configuration entry's).
    pub line: usize,
    /// For agent configurations, the entry: `ci_access.projects[0]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<String>,
    pub message: String,
    /// Stable across runs: see [`fingerprint`].
    pub fingerprint: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Skipped {
    pub file: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InputErrorEntry {
    pub file: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    pub message: String,
}

impl InputErrorEntry {
    /// `file:line:column: message`.
    pub fn display(&self) -> String {
        let mut text = self.file.clone();
        if let Some(line) = self.line {
            text.push_str(&format!(":{line}"));
            if let Some(column) = self.column {
                text.push_str(&format!(":{column}"));
            }
        }
        format!("{text}: {}", self.message)
    }
}

impl Report {
    /// 2 when an input was unreadable, else 1 when something in enforce mode failed, else 0.
    pub fn exit_code(&self) -> i32 {
        if !self.errors.is_empty() {
            2
        } else if self.results.iter().any(Subject::denied) {
            1
        } else {
            0
        }
    }

    /// Fills the counters of the summary from the results.
    pub fn tally(&mut self) {
        let mut summary = Summary {
            files: self.summary.files,
            documents: self.summary.documents,
            cluster_state_objects: self.summary.cluster_state_objects,
            skipped: self.skipped.len(),
            errors: self.errors.len(),
            ..Summary::default()
        };
        for subject in &self.results {
            match subject.subject_type {
                SubjectType::Object => summary.objects += 1,
                SubjectType::GitlabAgentConfig => summary.agent_configs += 1,
            }
            for finding in &subject.findings {
                match finding.action {
                    Action::Deny => summary.denied += 1,
                    Action::Warn => summary.warned += 1,
                    Action::Audit => summary.audited += 1,
                    Action::Exempted => summary.exempted += 1,
                }
            }
        }
        summary.exit_code = self.exit_code();
        self.summary = summary;
    }
}

/// The output formats of `fluxgate check -o`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// For people: findings grouped by file.
    Text,
    /// The report model, see docs/check-json-schema.md.
    Json,
    /// JUnit XML, for GitLab's `artifacts:reports:junit`.
    Junit,
    /// GitLab Code Quality, for `artifacts:reports:codequality`.
    Codequality,
}

/// Writes the report in a format. `color` applies to text only.
pub fn write(report: &Report, format: Format, color: bool, out: &mut dyn Write) -> io::Result<()> {
    match format {
        Format::Text => text::write(report, color, out),
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, report)?;
            writeln!(out)
        }
        Format::Junit => junit::write(report, out),
        Format::Codequality => codequality::write(report, out),
    }
}
