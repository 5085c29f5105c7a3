//! Lint of the GitLab agent configuration file (`.gitlab/agents/<name>/config.yaml`).
//!
//! GitLab: "By default, your CI/CD job inherits all the permissions from the service account
//! used to install the agent in the cluster. To restrict access to your cluster, you can use
//! impersonation." The agent's service account is cluster-admin with the default Helm install,
//! so a `ci_access` entry without `access_as` (or with `access_as: agent`) hands every CI job
//! of the authorized projects the whole cluster. `access_as: ci_job` makes each job act as
//! `gitlab:ci_job:<id>` with groups `gitlab:ci_job`, `gitlab:project:<id>`,
//! `gitlab:project_env:<id>:<env>`..., which RBAC can then restrict: the form GitLab
//! recommends. `user_access` is judged alike: `access_as: agent` gives every user of the
//! authorized projects and groups the agent's service account, `access_as: user` impersonates
//! each user (`gitlab:user:<username>`, `gitlab:project_role:<id>:<role>`, ...). A static
//! `access_as: impersonate` identity is judged by whom it names: a privileged identity
//! (`system:masters`, `kubeadm:cluster-admins`, a node or a kube-system ServiceAccount, or one
//! the cluster state binds to a broad role, which the caller decides) hands every job that.
//! Findings are reported under the `ci-impersonation` policy, which judges the RBAC side of
//! the same identities; its fixes bind the environment-scoped group
//! `gitlab:project_env:<project id>:<environment slug>`, which `ci-impersonation` allows
//! where the catch-all `gitlab:ci_job` may only read.
//!
//! No admission request ever carries this file: only `fluxgate check` reads it.

use std::path::{Component, Path};

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::finding::Severity;

/// Top-level keys that make a YAML mapping without `apiVersion`/`kind` an agent configuration.
pub const RECOGNISED_KEYS: &[&str] = &["ci_access", "user_access", "gitops", "observability"];

/// The agent's name when `path` is `.../.gitlab/agents/<name>/config.yaml`, the only file
/// GitLab reads an agent's configuration from.
pub fn agent_name_from_path(path: &Path) -> Option<String> {
    let parts: Vec<&str> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => s.to_str(),
            _ => None,
        })
        .collect();
    match parts.as_slice() {
        [.., ".gitlab", "agents", name, "config.yaml"] => Some((*name).to_string()),
        _ => None,
    }
}

/// Whether a document that is not a Kubernetes object is an agent configuration.
pub fn looks_like_agent_config(document: &Map<String, Value>) -> bool {
    !document.contains_key("apiVersion")
        && !document.contains_key("kind")
        && RECOGNISED_KEYS.iter().any(|k| document.contains_key(*k))
}

/// One problem in an agent configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfigFinding {
    pub severity: Severity,
    /// Where in the file, as a path of keys: `ci_access.projects[1]`.
    pub entry: String,
    /// The entry's line, counted from the first line of `text` given to [`lint`] (0-based),
    /// when the file is in block style.
    pub line_offset: Option<usize>,
    pub message: String,
}

#[derive(Deserialize)]
struct ConfigFile {
    #[serde(default)]
    ci_access: Option<CiAccess>,
    #[serde(default)]
    user_access: Option<UserAccess>,
}

/// `user_access`: which projects' and groups' members may use the agent (the dashboard and
/// `kubectl` through GitLab), and as whom: one `access_as` for all of them.
#[derive(Deserialize)]
struct UserAccess {
    #[serde(default)]
    access_as: Option<Value>,
    #[serde(default)]
    projects: Option<Vec<UserAccessEntry>>,
    #[serde(default)]
    groups: Option<Vec<UserAccessEntry>>,
}

#[derive(Deserialize)]
struct UserAccessEntry {
    #[serde(default)]
    id: Option<Value>,
}

/// `ci_access`: which projects' and groups' CI jobs may use the agent, and as whom.
#[derive(Deserialize)]
struct CiAccess {
    #[serde(default)]
    projects: Option<Vec<CiAccessEntry>>,
    #[serde(default)]
    groups: Option<Vec<CiAccessEntry>>,
    /// Every project of the instance (self-managed, when the administrator allows it).
    #[serde(default)]
    instance: Option<CiAccessEntry>,
}

#[derive(Deserialize)]
struct CiAccessEntry {
    /// A path (`group/project`); numbers are shown as written.
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    access_as: Option<Value>,
    #[serde(default)]
    environments: Option<Vec<String>>,
}

/// Who the agent acts as for a CI job, as `access_as` says.
enum AccessAs {
    /// Not set, or `{}`: the agent's own service account.
    Missing,
    Agent,
    /// `ci_job` or `ci_user`: an identity per job that RBAC can restrict.
    PerJob,
    /// `user` (user_access): an identity per user that RBAC can restrict.
    PerUser,
    /// A static identity, judged by whom it names.
    Impersonate {
        username: String,
        groups: Vec<String>,
    },
    Unknown(String),
    Malformed(String),
}

fn access_as(value: Option<&Value>) -> AccessAs {
    let map = match value {
        None | Some(Value::Null) => return AccessAs::Missing,
        Some(Value::Object(map)) => map,
        Some(other) => {
            return AccessAs::Malformed(format!(
                "access_as must be a mapping such as `ci_job: {{}}`, not {other}"
            ));
        }
    };
    let keys: Vec<&str> = map.keys().map(String::as_str).collect();
    match keys.as_slice() {
        [] => AccessAs::Missing,
        ["agent"] => AccessAs::Agent,
        ["ci_job"] | ["ci_user"] => AccessAs::PerJob,
        ["user"] => AccessAs::PerUser,
        ["impersonate"] => {
            let impersonate = map.get("impersonate");
            let username = impersonate
                .and_then(|i| i.get("username"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let groups = impersonate
                .and_then(|i| i.get("groups"))
                .and_then(Value::as_array)
                .map(|groups| {
                    groups
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            AccessAs::Impersonate { username, groups }
        }
        [other] => AccessAs::Unknown((*other).to_string()),
        several => AccessAs::Malformed(format!(
            "access_as sets {}; GitLab takes exactly one of agent, ci_job, ci_user or impersonate",
            several.join(" and ")
        )),
    }
}

#[derive(Clone, Copy)]
enum Scope {
    Project,
    Group,
    Instance,
}

impl Scope {
    fn key(self) -> &'static str {
        match self {
            Scope::Project => "projects",
            Scope::Group => "groups",
            Scope::Instance => "instance",
        }
    }
}

fn id_text(id: Option<&Value>) -> String {
    match id {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// Whose CI jobs an entry authorizes, for messages.
fn jobs_of(scope: Scope, entry: &CiAccessEntry) -> String {
    let id = id_text(entry.id.as_ref());
    let mut text = match scope {
        Scope::Project => format!("CI jobs of project {id}"),
        Scope::Group => format!("CI jobs of every project in group {id} and its subgroups"),
        Scope::Instance => "CI jobs of every project on the GitLab instance".to_string(),
    };
    if let Some(envs) = entry.environments.as_ref().filter(|e| !e.is_empty()) {
        text.push_str(&format!(" (environments {})", envs.join(", ")));
    }
    text
}

/// A YAML scalar for an id, quoted when a plain scalar would change its meaning.
fn yaml_scalar(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '<' | '>'))
        && !text.starts_with('-');
    if plain {
        text.to_string()
    } else {
        serde_json::to_string(text).unwrap_or_else(|_| format!("\"{text}\""))
    }
}

/// The entry rewritten with `ci_job` impersonation, as a snippet to paste.
fn fixed_snippet(scope: Scope, entry: &CiAccessEntry) -> String {
    let mut snippet = String::from("  ci_access:\n");
    match scope {
        Scope::Instance => {
            snippet.push_str("    instance:\n      access_as:\n        ci_job: {}\n");
            return snippet;
        }
        Scope::Project | Scope::Group => {
            snippet.push_str(&format!("    {}:\n", scope.key()));
            snippet.push_str(&format!(
                "      - id: {}\n",
                yaml_scalar(&id_text(entry.id.as_ref()))
            ));
        }
    }
    if let Some(envs) = entry.environments.as_ref().filter(|e| !e.is_empty()) {
        snippet.push_str("        environments:\n");
        for env in envs {
            snippet.push_str(&format!("          - {}\n", yaml_scalar(env)));
        }
    }
    snippet.push_str("        access_as:\n          ci_job: {}\n");
    snippet
}

const RBAC_HINT: &str = "then grant each environment's jobs only what they deploy, in that environment's namespace: a RoleBinding to the group gitlab:project_env:<project id>:<environment slug> (the catch-all gitlab:ci_job may only read)";

const USER_RBAC_HINT: &str = "then grant the users only what they need with RoleBindings to gitlab:project_role:<project id>:<role> or gitlab:group_role:<group id>:<role> (the catch-all gitlab:user may only read)";

/// Decides whether a static identity an agent impersonates (user name, groups) is
/// privileged, and says why.
pub type PrivilegedIdentity<'a> = &'a dyn Fn(&str, &[String]) -> Option<String>;

/// Lints one agent configuration. `subject` names it in messages (`GitLab agent prod
/// (.gitlab/agents/prod/config.yaml)`); `text` is the document's YAML, used to find the line
/// of each entry; `privileged` says whether a static identity it impersonates is privileged
/// (see [`crate::rbac::well_known_privileged`] for the identities that are whatever RBAC
/// says).
pub fn lint(
    config: &Value,
    text: &str,
    subject: &str,
    privileged: PrivilegedIdentity<'_>,
) -> Vec<AgentConfigFinding> {
    let mut findings = Vec::new();
    let parsed: ConfigFile = match serde_path_to_error::deserialize(config) {
        Ok(parsed) => parsed,
        Err(e) => {
            let path = e.path().to_string();
            let entry = if path == "." { String::new() } else { path };
            let line_offset = if entry.starts_with("ci_access") {
                locate(text, &["ci_access"])
            } else {
                None
            };
            findings.push(AgentConfigFinding {
                severity: Severity::Violation,
                message: format!(
                    "{subject} is malformed{}: {}; GitLab rejects it, fix the file",
                    if entry.is_empty() {
                        String::new()
                    } else {
                        format!(" at {entry}")
                    },
                    e.into_inner()
                ),
                entry,
                line_offset,
            });
            return findings;
        }
    };
    if let Some(user_access) = &parsed.user_access {
        findings.extend(lint_user_access(user_access, text, subject, privileged));
    }
    let Some(ci_access) = parsed.ci_access else {
        return findings;
    };
    let mut entries: Vec<(Scope, Option<usize>, &CiAccessEntry)> = Vec::new();
    for (i, e) in ci_access.projects.iter().flatten().enumerate() {
        entries.push((Scope::Project, Some(i), e));
    }
    for (i, e) in ci_access.groups.iter().flatten().enumerate() {
        entries.push((Scope::Group, Some(i), e));
    }
    if let Some(e) = &ci_access.instance {
        entries.push((Scope::Instance, None, e));
    }
    for (scope, index, entry) in entries {
        let key = match index {
            Some(i) => format!("ci_access.{}[{i}]", scope.key()),
            None => format!("ci_access.{}", scope.key()),
        };
        let id = id_text(entry.id.as_ref());
        let named = if id.is_empty() {
            key.clone()
        } else {
            format!("{key} ({id})")
        };
        let jobs = jobs_of(scope, entry);
        let line_offset = match index {
            Some(i) => locate_item(text, scope.key(), i),
            None => locate(text, &["ci_access", scope.key()]),
        };
        let (severity, message) = match access_as(entry.access_as.as_ref()) {
            AccessAs::PerJob => continue,
            AccessAs::Impersonate { username, groups } => {
                let Some(why) = privileged(&username, &groups) else {
                    continue;
                };
                (
                    Severity::Violation,
                    format!(
                        "{subject}: {named} impersonates {}: {why}, so {jobs} hold that. Impersonate the CI job instead:\n{}{RBAC_HINT}",
                        describe_identity(&username, &groups),
                        fixed_snippet(scope, entry)
                    ),
                )
            }
            AccessAs::PerUser => (
                Severity::Violation,
                format!(
                    "{subject}: {named} sets access_as: user, which only user_access takes; GitLab rejects it. Impersonate the CI job:\n{}",
                    fixed_snippet(scope, entry)
                ),
            ),
            AccessAs::Missing => (
                Severity::Violation,
                format!(
                    "{subject}: {named} has no access_as, so {jobs} reach the cluster as the agent's own service account (cluster-admin with the default Helm chart), which RBAC cannot narrow per job. Impersonate the CI job instead:\n{}{RBAC_HINT}",
                    fixed_snippet(scope, entry)
                ),
            ),
            AccessAs::Agent => (
                Severity::Violation,
                format!(
                    "{subject}: {named} sets access_as: agent, so {jobs} reach the cluster as the agent's own service account (cluster-admin with the default Helm chart), which RBAC cannot narrow per job. Impersonate the CI job instead:\n{}{RBAC_HINT}",
                    fixed_snippet(scope, entry)
                ),
            ),
            AccessAs::Unknown(mode) => (
                Severity::Advisory,
                format!(
                    "{subject}: {named} uses access_as: {mode}, which fluxgate does not know; make sure it impersonates the CI job (access_as: ci_job) rather than using the agent's service account"
                ),
            ),
            AccessAs::Malformed(why) => (
                Severity::Violation,
                format!(
                    "{subject}: {named} is malformed: {why}. GitLab rejects it; impersonate the CI job:\n{}",
                    fixed_snippet(scope, entry)
                ),
            ),
        };
        findings.push(AgentConfigFinding {
            severity,
            entry: key,
            line_offset,
            message,
        });
    }
    findings
}

/// `user NAME and groups A, B`, as messages name a static identity.
fn describe_identity(username: &str, groups: &[String]) -> String {
    let mut parts = Vec::new();
    if !username.is_empty() {
        parts.push(format!("user {username}"));
    }
    if !groups.is_empty() {
        parts.push(format!("groups {}", groups.join(", ")));
    }
    if parts.is_empty() {
        "an identity without a name".to_string()
    } else {
        parts.join(" with ")
    }
}

/// Whose users a `user_access` block authorizes, for messages.
fn users_of(user_access: &UserAccess) -> String {
    let ids = |entries: &Option<Vec<UserAccessEntry>>| -> Vec<String> {
        entries
            .iter()
            .flatten()
            .map(|e| id_text(e.id.as_ref()))
            .filter(|id| !id.is_empty())
            .collect()
    };
    let (projects, groups) = (ids(&user_access.projects), ids(&user_access.groups));
    let mut text = String::from("the members of");
    if !projects.is_empty() {
        text.push_str(&format!(" projects {}", projects.join(", ")));
    }
    if !groups.is_empty() {
        if !projects.is_empty() {
            text.push_str(" and");
        }
        text.push_str(&format!(
            " groups {} (and their subgroups)",
            groups.join(", ")
        ));
    }
    if projects.is_empty() && groups.is_empty() {
        text.push_str(" the authorized projects and groups");
    }
    text
}

const USER_ACCESS_FIX: &str = "  user_access:\n    access_as:\n      user: {}\n";

fn lint_user_access(
    user_access: &UserAccess,
    text: &str,
    subject: &str,
    privileged: PrivilegedIdentity<'_>,
) -> Option<AgentConfigFinding> {
    let users = users_of(user_access);
    let (severity, message) = match access_as(user_access.access_as.as_ref()) {
        AccessAs::PerUser => return None,
        AccessAs::Missing => (
            Severity::Violation,
            format!(
                "{subject}: user_access has no access_as (GitLab requires one), and the plain form, access_as: agent, gives {users} the agent's own service account (cluster-admin with the default Helm chart), which RBAC cannot narrow per user. Impersonate each user instead:\n{USER_ACCESS_FIX}{USER_RBAC_HINT}"
            ),
        ),
        AccessAs::Agent => (
            Severity::Violation,
            format!(
                "{subject}: user_access sets access_as: agent, so {users} reach the cluster as the agent's own service account (cluster-admin with the default Helm chart), which RBAC cannot narrow per user. Impersonate each user instead:\n{USER_ACCESS_FIX}{USER_RBAC_HINT}"
            ),
        ),
        AccessAs::Impersonate { username, groups } => match privileged(&username, &groups) {
            Some(why) => (
                Severity::Violation,
                format!(
                    "{subject}: user_access impersonates {}: {why}, so {users} hold that. Impersonate each user instead:\n{USER_ACCESS_FIX}{USER_RBAC_HINT}",
                    describe_identity(&username, &groups)
                ),
            ),
            None => return None,
        },
        AccessAs::PerJob => (
            Severity::Violation,
            format!(
                "{subject}: user_access sets a CI job identity, which only ci_access takes; GitLab rejects it. Impersonate each user:\n{USER_ACCESS_FIX}"
            ),
        ),
        AccessAs::Unknown(mode) => (
            Severity::Advisory,
            format!(
                "{subject}: user_access uses access_as: {mode}, which fluxgate does not know; make sure it impersonates the user (access_as: user) rather than using the agent's service account"
            ),
        ),
        AccessAs::Malformed(why) => (
            Severity::Violation,
            format!(
                "{subject}: user_access is malformed: {why}. GitLab rejects it; impersonate each user:\n{USER_ACCESS_FIX}"
            ),
        ),
    };
    let line_offset =
        locate(text, &["user_access", "access_as"]).or_else(|| locate(text, &["user_access"]));
    Some(AgentConfigFinding {
        severity,
        entry: "user_access".to_string(),
        line_offset,
        message,
    })
}

// ---------------------------------------------------------------------------------------------
// Finding the line of an entry in block-style YAML. Values carry no positions once parsed, so
// this follows indentation the way the file is written; flow style falls back to the nearest
// key found.

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_content(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && !t.starts_with('#') && !is_document_marker(line)
}

fn is_document_marker(line: &str) -> bool {
    ["---", "..."].iter().any(|m| {
        line.strip_prefix(m)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r']))
    })
}

/// Whether the line (without indentation or a leading `- `) is `key:`.
fn is_key(content: &str, key: &str) -> bool {
    [key.to_string(), format!("\"{key}\""), format!("'{key}'")]
        .iter()
        .any(|k| {
            content
                .strip_prefix(k.as_str())
                .is_some_and(|rest| rest.trim_start().starts_with(':'))
        })
}

/// The 0-based line of a nested key such as `ci_access` / `projects`.
fn locate(text: &str, keys: &[&str]) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let mut from = 0;
    let mut parent_indent: Option<usize> = None;
    let mut found = None;
    for key in keys {
        let mut hit = None;
        for (i, line) in lines.iter().enumerate().skip(from) {
            if !is_content(line) {
                continue;
            }
            let ind = indent(line);
            if parent_indent.is_some_and(|p| ind <= p) {
                break;
            }
            if is_key(line.trim_start(), key) {
                hit = Some((i, ind));
                break;
            }
        }
        let (i, ind) = hit?;
        found = Some(i);
        from = i + 1;
        parent_indent = Some(ind);
    }
    found
}

/// The 0-based line of item `index` of `ci_access.<key>`, or of the key itself.
fn locate_item(text: &str, key: &str, index: usize) -> Option<usize> {
    let key_line = locate(text, &["ci_access", key])?;
    let lines: Vec<&str> = text.lines().collect();
    let key_indent = indent(lines[key_line]);
    let mut item_indent = None;
    let mut seen = 0usize;
    for (i, line) in lines.iter().enumerate().skip(key_line + 1) {
        if !is_content(line) {
            continue;
        }
        let ind = indent(line);
        let is_item = line.trim_start().starts_with('-');
        // Items may sit at the key's own indentation (`projects:\n- id: a`).
        if ind < key_indent || (ind == key_indent && !is_item) {
            break;
        }
        let item_ind = *item_indent.get_or_insert(ind);
        if ind < item_ind || (ind == item_ind && !is_item) {
            break;
        }
        if ind == item_ind && is_item {
            if seen == index {
                return Some(i);
            }
            seen += 1;
        }
    }
    Some(key_line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lint_yaml(text: &str) -> Vec<AgentConfigFinding> {
        let value: Value = serde_yaml_ng::from_str(text).expect("yaml");
        lint(
            &value,
            text,
            "GitLab agent configuration c.yaml",
            &crate::rbac::well_known_privileged,
        )
    }

    #[test]
    fn the_agent_name_comes_from_the_path() {
        assert_eq!(
            agent_name_from_path(Path::new("repo/.gitlab/agents/prod/config.yaml")),
            Some("prod".into())
        );
        assert_eq!(
            agent_name_from_path(Path::new(".gitlab/agents/prod/other.yaml")),
            None
        );
    }

    #[test]
    fn an_entry_without_access_as_is_a_violation_with_a_fix() {
        let findings = lint_yaml(
            "ci_access:\n  projects:\n    - id: a/b\n    - id: a/c\n      access_as:\n        ci_job: {}\n",
        );
        assert_eq!(findings.len(), 1);
        let f = &findings[0];
        assert_eq!(f.severity, Severity::Violation);
        assert_eq!(f.entry, "ci_access.projects[0]");
        assert_eq!(f.line_offset, Some(2));
        assert!(f.message.contains("a/b"), "{}", f.message);
        assert!(f.message.contains("ci_job: {}"), "{}", f.message);
    }

    #[test]
    fn access_as_agent_and_empty_access_as_are_violations() {
        let findings = lint_yaml(
            "ci_access:\n  groups:\n  - id: g\n    access_as:\n      agent: {}\n  - id: h\n    access_as: {}\n",
        );
        let lines: Vec<_> = findings.iter().map(|f| f.line_offset).collect();
        assert_eq!(lines, vec![Some(2), Some(5)]);
        assert!(findings[0].message.contains("access_as: agent"));
        assert!(findings[1].message.contains("has no access_as"));
    }

    #[test]
    fn ci_job_ci_user_and_plain_impersonation_pass() {
        assert!(lint_yaml("ci_access:\n  projects:\n  - id: a\n    access_as: {ci_user: {}}\n  - id: b\n    access_as:\n      impersonate: {username: deployer, groups: [deployers]}\n").is_empty());
    }

    #[test]
    fn impersonating_system_masters_is_a_violation() {
        let findings = lint_yaml(
            "ci_access:\n  instance:\n    access_as:\n      impersonate:\n        username: x\n        groups: [system:masters]\n",
        );
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].entry, "ci_access.instance");
        assert_eq!(findings[0].line_offset, Some(1));
    }

    #[test]
    fn the_instance_entry_without_access_as_is_a_violation() {
        let findings = lint_yaml("ci_access:\n  instance: {}\n");
        assert_eq!(findings.len(), 1);
        assert!(
            findings[0]
                .message
                .contains("every project on the GitLab instance")
        );
    }

    #[test]
    fn a_malformed_ci_access_is_a_violation_not_a_crash() {
        let findings = lint_yaml("ci_access:\n  projects:\n    id: a\n");
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].severity, Severity::Violation);
        assert!(
            findings[0].message.contains("malformed"),
            "{}",
            findings[0].message
        );
        let findings = lint_yaml("ci_access:\n  projects:\n  - id: a\n    access_as: agent\n");
        assert!(
            findings[0].message.contains("must be a mapping"),
            "{}",
            findings[0].message
        );
    }

    #[test]
    fn an_unknown_access_mode_is_advice() {
        let findings =
            lint_yaml("ci_access:\n  projects:\n  - id: a\n    access_as: {robot: {}}\n");
        assert_eq!(findings[0].severity, Severity::Advisory);
    }

    #[test]
    fn user_access_as_the_agent_is_a_violation_with_a_fix() {
        let text = "user_access:\n  access_as:\n    agent: {}\n  projects:\n  - id: a/b\n  groups:\n  - id: g\n";
        let findings = lint_yaml(text);
        assert_eq!(findings.len(), 1);
        let f = &findings[0];
        assert_eq!(f.severity, Severity::Violation);
        assert_eq!(f.entry, "user_access");
        assert_eq!(f.line_offset, Some(1));
        for phrase in [
            "access_as: agent",
            "projects a/b and groups g",
            "user: {}",
            "gitlab:project_role:",
        ] {
            assert!(f.message.contains(phrase), "{phrase}: {}", f.message);
        }
        // Without access_as the users would be the agent too.
        let missing = lint_yaml("user_access:\n  projects:\n  - id: a/b\n");
        assert!(
            missing[0].message.contains("has no access_as"),
            "{}",
            missing[0].message
        );
    }

    #[test]
    fn user_access_as_the_user_passes() {
        assert!(
            lint_yaml("user_access:\n  access_as:\n    user: {}\n  projects:\n  - id: a\n")
                .is_empty()
        );
    }

    #[test]
    fn impersonating_any_privileged_identity_is_a_violation() {
        for (identity, phrase) in [
            ("groups: [kubeadm:cluster-admins]", "kubeadm:cluster-admins"),
            (
                "username: 'system:serviceaccount:kube-system:replicaset-controller'",
                "kube-system's ServiceAccount",
            ),
            ("username: 'system:node:worker-1'", "a node's identity"),
            ("groups: [system:nodes]", "system:nodes"),
        ] {
            let text = format!(
                "ci_access:\n  projects:\n  - id: a\n    access_as:\n      impersonate: {{{identity}}}\n"
            );
            let findings = lint_yaml(&text);
            assert_eq!(findings.len(), 1, "{identity}");
            assert!(
                findings[0].message.contains(phrase),
                "{}",
                findings[0].message
            );
            let users = format!(
                "user_access:\n  access_as:\n    impersonate: {{{identity}}}\n  projects:\n  - id: a\n"
            );
            assert_eq!(lint_yaml(&users).len(), 1, "{identity}");
        }
        // Whatever else the caller knows is privileged (the cluster state) counts too.
        let value: Value = serde_yaml_ng::from_str(
            "ci_access:\n  projects:\n  - id: a\n    access_as:\n      impersonate: {username: ops-admin}\n",
        )
        .expect("yaml");
        let bound = |user: &str, _: &[String]| {
            (user == "ops-admin").then(|| "bound to cluster-admin".to_string())
        };
        let findings = lint(&value, "", "c.yaml", &bound);
        assert!(
            findings[0].message.contains("bound to cluster-admin"),
            "{}",
            findings[0].message
        );
    }

    #[test]
    fn the_fix_recommends_the_environment_scoped_identity() {
        let findings = lint_yaml("ci_access:\n  projects:\n  - id: a/b\n");
        assert!(
            findings[0]
                .message
                .contains("gitlab:project_env:<project id>:<environment slug>"),
            "{}",
            findings[0].message
        );
        assert!(
            !findings[0]
                .message
                .contains("RoleBinding to the group gitlab:ci_job")
        );
    }

    #[test]
    fn ids_that_need_quotes_are_quoted_in_the_snippet() {
        let findings = lint_yaml("ci_access:\n  projects:\n  - id: 'a: b'\n");
        assert!(
            findings[0].message.contains("- id: \"a: b\""),
            "{}",
            findings[0].message
        );
    }
}
