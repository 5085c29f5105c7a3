//! The policy configuration file: per-policy mode and parameters, and exemptions. It gathers
//! each policy's block of settings ([`Policies`]); a policy is handed its own block only
//! ([`Section`]).
//!
//! It is parsed, validated and precompiled once (regexes, selectors) and then shared
//! read-only; a reload builds a whole new [`Config`] and swaps it in, so a broken file never
//! replaces a working one halfway.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::finding::{Mode, PolicyId};
use crate::policy::{
    PolicySettings, SettingError, ci_impersonation, oci_version_pinning, secret_rotation,
    signed_oci_sources, single_agent, tenant_lockdown,
};
use crate::selector::{LabelSelector, SelectorOperator};

/// A configuration error that points at the offending key.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}{location}: {key}{message}")]
pub struct ConfigError {
    pub source_name: String,
    /// `:line:column` when known.
    pub location: String,
    /// The dotted path of the key, followed by `: `, or empty.
    pub key: String,
    pub message: String,
}

impl ConfigError {
    pub fn unreadable(source_name: &str, e: &std::io::Error) -> Self {
        ConfigError::at_key(source_name, "", format!("cannot read: {e}"))
    }

    fn at_key(source_name: &str, key: impl AsRef<str>, message: impl Into<String>) -> Self {
        let key = key.as_ref();
        ConfigError {
            source_name: source_name.to_string(),
            location: String::new(),
            key: if key.is_empty() {
                String::new()
            } else {
                format!("{key}: ")
            },
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// The mode of every policy that does not set its own.
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub policies: Policies,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exemptions: Vec<Exemption>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Policies {
    #[serde(rename = "signed-oci-sources", default)]
    pub signed_oci_sources: signed_oci_sources::Settings,
    #[serde(rename = "single-agent", default)]
    pub single_agent: single_agent::Settings,
    #[serde(rename = "ci-impersonation", default)]
    pub ci_impersonation: ci_impersonation::Settings,
    /// Its own default mode is audit (see [`secret_rotation`]).
    #[serde(rename = "secret-rotation", default)]
    pub secret_rotation: secret_rotation::Settings,
    #[serde(rename = "tenant-lockdown", default)]
    pub tenant_lockdown: tenant_lockdown::Settings,
    #[serde(rename = "oci-version-pinning", default)]
    pub oci_version_pinning: oci_version_pinning::Settings,
}

/// Where a policy's settings are in the configuration: the engine hands each policy its own
/// block ([`crate::policy::Context::settings`]) and never the whole file.
pub trait Section: Sync + 'static {
    fn of(config: &Config) -> &Self;
}

/// A policy without settings of its own.
impl Section for () {
    fn of(_: &Config) -> &Self {
        &()
    }
}

impl Section for signed_oci_sources::Settings {
    fn of(config: &Config) -> &Self {
        &config.policies.signed_oci_sources
    }
}

impl Section for single_agent::Settings {
    fn of(config: &Config) -> &Self {
        &config.policies.single_agent
    }
}

impl Section for ci_impersonation::Settings {
    fn of(config: &Config) -> &Self {
        &config.policies.ci_impersonation
    }
}

impl Section for secret_rotation::Settings {
    fn of(config: &Config) -> &Self {
        &config.policies.secret_rotation
    }
}

impl Section for tenant_lockdown::Settings {
    fn of(config: &Config) -> &Self {
        &config.policies.tenant_lockdown
    }
}

impl Section for oci_version_pinning::Settings {
    fn of(config: &Config) -> &Self {
        &config.policies.oci_version_pinning
    }
}

impl Policies {
    /// Validates one policy's settings and compiles what they hold (regexes, URL patterns).
    /// The match is exhaustive so that a new policy cannot be left out of validation, nor out
    /// of [`Config::precompile`].
    pub fn validate(&mut self, id: PolicyId) -> Result<(), SettingError> {
        // ci-impersonation protects the platform's namespaces too.
        self.ci_impersonation.platform_namespaces =
            self.tenant_lockdown.platform_namespaces.clone();
        match id {
            PolicyId::SignedOciSources => self.signed_oci_sources.validate(),
            PolicyId::SingleAgent => self.single_agent.validate(),
            PolicyId::CiImpersonation => self.ci_impersonation.validate(),
            PolicyId::SecretRotation => self.secret_rotation.validate(),
            PolicyId::TenantLockdown => self.tenant_lockdown.validate(),
            PolicyId::OciVersionPinning => self.oci_version_pinning.validate(),
        }
    }
}

/// Requests a policy does not judge. Every criterion an entry sets must match (a list matches
/// when any of its items does); entries are alternatives. Annotations on the object itself
/// can never exempt it: exemptions live only here, reviewed in Git.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Exemption {
    /// Why the exemption exists; logged whenever it is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The policies it applies to; all when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<PolicyId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<ObjectMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

/// An object by kind, namespace and name; an absent field matches any value.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ObjectMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A namespace selector of an exemption: an empty one would exempt every namespace.
fn validate_selector(selector: &LabelSelector) -> Result<(), String> {
    if selector.match_labels.is_empty() && selector.match_expressions.is_empty() {
        return Err("an empty selector would match every namespace".into());
    }
    for (i, req) in selector.match_expressions.iter().enumerate() {
        let needs_values = matches!(req.operator, SelectorOperator::In | SelectorOperator::NotIn);
        if needs_values == req.values.is_empty() {
            return Err(format!(
                "matchExpressions[{i}]: operator {:?} {} values",
                req.operator,
                if needs_values { "needs" } else { "takes no" }
            ));
        }
    }
    Ok(())
}

impl Exemption {
    fn validate(&self) -> Result<(), String> {
        let sets_anything = !self.namespaces.is_empty()
            || self.namespace_selector.is_some()
            || !self.objects.is_empty()
            || !self.users.is_empty()
            || !self.groups.is_empty();
        if !sets_anything {
            return Err(
                "sets no namespaces, namespaceSelector, objects, users or groups, so it would exempt everything; use mode: off to turn a policy off"
                    .into(),
            );
        }
        if let Some(selector) = &self.namespace_selector {
            validate_selector(selector).map_err(|e| format!("namespaceSelector: {e}"))?;
        }
        Ok(())
    }

    pub fn applies_to(&self, policy: PolicyId) -> bool {
        self.policies.is_empty() || self.policies.contains(&policy)
    }

    /// How logs and metrics name this exemption.
    pub fn label(&self, index: usize) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("exemptions[{index}]"))
    }
}

impl Config {
    /// The mode a policy runs in: its own, else the global default. `secret-rotation` has its
    /// own by default (audit), so the global default reaches it only through `mode: null`.
    pub fn mode_of(&self, policy: PolicyId) -> Mode {
        let own = match policy {
            PolicyId::SignedOciSources => self.policies.signed_oci_sources.mode(),
            PolicyId::SingleAgent => self.policies.single_agent.mode(),
            PolicyId::CiImpersonation => self.policies.ci_impersonation.mode(),
            PolicyId::SecretRotation => self.policies.secret_rotation.mode(),
            PolicyId::TenantLockdown => self.policies.tenant_lockdown.mode(),
            PolicyId::OciVersionPinning => self.policies.oci_version_pinning.mode(),
        };
        own.unwrap_or(self.mode)
    }

    /// Precompiles the policies' settings (regexes, URL patterns) of a configuration built in
    /// code, such as `Config::default()`, as `from_yaml` does for a file; without it a policy
    /// compiles them again on every request. Settings that do not validate are left as they
    /// are: their policy reports the error on each request, as before.
    pub fn precompile(&mut self) {
        for &id in PolicyId::ALL {
            let _ = self.policies.validate(id);
        }
    }

    /// Parses and validates a configuration. `source_name` is used in error messages.
    pub fn from_yaml(text: &str, source_name: &str) -> Result<Config, ConfigError> {
        let is_empty = text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#') || l.trim() == "---");
        let mut config: Config = if is_empty {
            Config::default()
        } else {
            let de = serde_yaml_ng::Deserializer::from_str(text);
            serde_path_to_error::deserialize(de).map_err(|e| {
                let key = e.path().to_string();
                let inner = e.into_inner();
                let location = inner
                    .location()
                    .map(|l| format!(":{}:{}", l.line(), l.column()))
                    .unwrap_or_default();
                // serde_yaml_ng prefixes the path again at the start of its message.
                let message = inner.to_string();
                let message = message
                    .strip_prefix(&format!("{key}: "))
                    .map(str::to_string)
                    .unwrap_or(message);
                let mut err =
                    ConfigError::at_key(source_name, if key == "." { "" } else { &key }, message);
                err.location = location;
                err
            })?
        };
        config.validate(source_name)?;
        Ok(config)
    }

    /// Reads and validates a configuration file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::unreadable(&name, &e))?;
        Config::from_yaml(&text, &name)
    }

    fn validate(&mut self, source_name: &str) -> Result<(), ConfigError> {
        let policy_error = |id: PolicyId, e: SettingError| {
            let key = if e.key.is_empty() {
                format!("policies.{id}")
            } else {
                format!("policies.{id}.{}", e.key)
            };
            ConfigError::at_key(source_name, key, e.message)
        };
        for &id in PolicyId::ALL {
            self.policies
                .validate(id)
                .map_err(|e| policy_error(id, e))?;
        }
        for (i, exemption) in self.exemptions.iter().enumerate() {
            exemption
                .validate()
                .map_err(|e| ConfigError::at_key(source_name, format!("exemptions[{i}]"), e))?;
        }
        Ok(())
    }
}

/// The built-in configuration as a commented file, printed by `fluxgate config default`.
/// A test checks that it parses to exactly [`Config::default()`].
pub const DEFAULT_CONFIG_YAML: &str = include_str!("default-config.yaml");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commented_default_file_is_the_built_in_default() {
        let parsed = Config::from_yaml(DEFAULT_CONFIG_YAML, "default").expect("default parses");
        assert_eq!(
            serde_json::to_value(&parsed).expect("serializes"),
            serde_json::to_value(Config::default()).expect("serializes")
        );
    }

    #[test]
    fn the_built_in_default_enforces_every_policy_but_audits_secret_rotation() {
        for config in [
            Config::default(),
            Config::from_yaml(DEFAULT_CONFIG_YAML, "default").expect("default parses"),
        ] {
            for id in PolicyId::ALL {
                let expected = match id {
                    PolicyId::SecretRotation => Mode::Audit,
                    _ => Mode::Enforce,
                };
                assert_eq!(config.mode_of(*id), expected, "{id}");
            }
        }
    }

    #[test]
    fn secret_rotation_keeps_its_audit_default_under_another_global_mode() {
        let config = Config::from_yaml(
            "mode: warn
policies:
  secret-rotation:
    maxAgeDays: {flux-verify: 30}
",
            "c.yaml",
        )
        .expect("parses");
        assert_eq!(config.mode_of(PolicyId::SecretRotation), Mode::Audit);
        assert_eq!(config.policies.secret_rotation.max_age_days.flux_verify, 30);
        assert_eq!(
            config
                .policies
                .secret_rotation
                .max_age_days
                .gitlab_agent_token,
            365,
            "unset limits keep their defaults"
        );
        let follows_global = Config::from_yaml(
            "mode: warn
policies:
  secret-rotation:
    mode: null
",
            "c.yaml",
        )
        .expect("parses");
        assert_eq!(follows_global.mode_of(PolicyId::SecretRotation), Mode::Warn);
        let err = Config::from_yaml(
            "policies:
  secret-rotation:
    maxAgeDays: {gitlab-agent-token: 0}
",
            "c.yaml",
        )
        .expect_err("zero days");
        assert!(
            err.to_string()
                .contains("policies.secret-rotation.maxAgeDays.gitlab-agent-token"),
            "{err}"
        );
    }

    #[test]
    fn an_empty_file_is_the_default() {
        let config = Config::from_yaml("# nothing\n", "empty").expect("empty parses");
        assert_eq!(config.mode, Mode::Enforce);
    }

    #[test]
    fn a_policy_mode_overrides_the_global_one() {
        let config = Config::from_yaml(
            "mode: audit\npolicies:\n  single-agent:\n    mode: warn\n",
            "c.yaml",
        )
        .expect("parses");
        assert_eq!(config.mode_of(PolicyId::SingleAgent), Mode::Warn);
        assert_eq!(config.mode_of(PolicyId::SignedOciSources), Mode::Audit);
    }

    #[test]
    fn errors_point_at_the_key() {
        let err = Config::from_yaml(
            "mode: enforce\npolicies:\n  single-agent:\n    mode: loud\n",
            "c.yaml",
        )
        .expect_err("bad mode");
        let text = err.to_string();
        assert!(text.starts_with("c.yaml:4:"), "{text}");
        assert!(text.contains("policies.single-agent.mode"), "{text}");

        let err = Config::from_yaml("mdoe: audit\n", "c.yaml").expect_err("unknown key");
        assert!(err.to_string().contains("mdoe"), "{err}");

        let err = Config::from_yaml("policies:\n  no-such-policy: {}\n", "c.yaml")
            .expect_err("unknown policy");
        assert!(err.to_string().contains("no-such-policy"), "{err}");
    }

    #[test]
    fn an_exemption_that_sets_nothing_is_refused() {
        let err = Config::from_yaml("exemptions:\n- name: oops\n", "c.yaml")
            .expect_err("empty exemption");
        assert!(err.to_string().contains("exemptions[0]"), "{err}");
    }

    #[test]
    fn oci_version_pinnings_tag_patterns_are_compiled_once_not_per_request() {
        // Compiling them costs about as much as 100 reviews; the engine precompiles a
        // configuration built in code, as Config::from_yaml does for a file.
        let mut config = Config::default();
        assert!(
            config
                .policies
                .oci_version_pinning
                .compiled_patterns()
                .is_none()
        );
        config.precompile();
        assert!(
            config
                .policies
                .oci_version_pinning
                .compiled_patterns()
                .is_some()
        );
        let from_file = Config::from_yaml(
            "policies:\n  oci-version-pinning:\n    immutableTags: ['build-[0-9]+']\n    movingTagPattern: 'nightly-.*'\n",
            "test",
        )
        .expect("valid");
        let compiled = from_file.policies.oci_version_pinning.compiled_patterns();
        assert!(compiled.is_some_and(|(immutable, moving)| immutable && moving));
    }
}
