//! The settings of `signed-oci-sources`: read from the configuration file, checked and
//! precompiled once at load (regexes, globs), then shared read-only by every request.

use std::borrow::Cow;
use std::sync::Arc;

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::identity;
use super::{Judge, Site};
use crate::finding::Mode;
use crate::flux::reference::LocalObjectReference;
use crate::flux::verification::{OidcIdentityMatch, Verification};
use crate::policy::{PolicySettings, SettingError};

/// What to do with a HelmChart or HelmRelease whose HelmRepository fluxgate cannot see, so
/// that it cannot tell whether the chart comes from an OCI registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownHelmRepository {
    /// A violation: denied in enforce mode.
    #[default]
    Deny,
    /// Advice only: the request is allowed with a warning.
    Warn,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Settings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// Keyless cosign verification must name its signers (`matchOIDCIdentity`), each pinned
    /// to issuers and signers named one by one (GitLab: full project paths and branches;
    /// GitHub: owners; email: addresses or a trusted domain).
    pub require_identity: bool,
    /// Regexes of the OIDC issuers keyless signatures may come from, each matched against the
    /// whole issuer (anchored). Empty: any issuer.
    pub trusted_issuers: Vec<String>,
    /// Email domains whose every address may sign (`acme.com`: the organisation's own), for
    /// issuers that certify email addresses (Google, Sigstore's Dex). Without it, an email
    /// subject must name its addresses. Public webmail domains are refused.
    pub trusted_email_domains: Vec<String>,
    /// OCI URL prefixes (`oci://registry.gitlab.com/acme`) sources may pull from, matched at
    /// a path boundary. Empty: any registry.
    pub allowed_registries: Vec<String>,
    /// Allow `spec.insecure: true` (plain HTTP registries).
    pub allow_insecure: bool,
    pub unknown_helm_repository: UnknownHelmRepository,
    /// `verify` blocks `/mutate` adds where one is missing; the first rule whose `match`
    /// accepts the URL wins.
    pub verify_defaults: Vec<VerifyDefault>,
    #[serde(skip)]
    compiled: Option<Arc<Compiled>>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            mode: None,
            require_identity: true,
            trusted_issuers: Vec::new(),
            trusted_email_domains: Vec::new(),
            allowed_registries: Vec::new(),
            allow_insecure: false,
            unknown_helm_repository: UnknownHelmRepository::Deny,
            verify_defaults: Vec::new(),
            compiled: None,
        }
    }
}

impl PolicySettings for Settings {
    fn mode(&self) -> Option<Mode> {
        self.mode
    }

    fn validate(&mut self) -> Result<(), SettingError> {
        self.compiled = Some(Arc::new(Compiled::build(self)?));
        Ok(())
    }
}

/// One `verifyDefaults` rule.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VerifyDefault {
    /// Recorded in the `fluxgate.io/verify-default` annotation; `verifyDefaults[<index>]`
    /// when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// An OCI URL prefix (`oci://registry.gitlab.com/acme`, matched at a path boundary) or a
    /// glob (`*` within one path segment, `**` across segments, `{group}`/`{project}` capture
    /// one segment each).
    #[serde(rename = "match")]
    pub url_match: String,
    /// The block to add; `{group}` and `{project}` are filled from the URL.
    pub verify: VerifyBlock,
}

/// A `verify` block as written in the configuration (the shape of Flux's
/// `OCIRepositoryVerification`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VerifyBlock {
    #[serde(default = "cosign")]
    pub provider: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretName>,
    #[serde(
        default,
        rename = "matchOIDCIdentity",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub match_oidc_identity: Vec<IdentityPattern>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_root_secret_ref: Option<SecretName>,
}

fn cosign() -> String {
    "cosign".into()
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SecretName {
    pub name: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct IdentityPattern {
    pub issuer: String,
    pub subject: String,
}

/// Values for the `{group}` and `{project}` placeholders of a `verify` block.
#[derive(Debug, Clone, Copy, Default)]
pub struct Placeholders<'u> {
    pub group: Option<&'u str>,
    pub project: Option<&'u str>,
}

impl VerifyBlock {
    /// The block as Flux's typed view, to judge it with the same rules as objects.
    pub fn as_verification(&self) -> Verification<'_> {
        fn name(secret: &Option<SecretName>) -> Option<LocalObjectReference<'_>> {
            secret.as_ref().map(|s| LocalObjectReference {
                name: Cow::Borrowed(&s.name),
            })
        }
        Verification {
            provider: Cow::Borrowed(&self.provider),
            secret_ref: name(&self.secret_ref),
            match_oidc_identity: (!self.match_oidc_identity.is_empty()).then(|| {
                self.match_oidc_identity
                    .iter()
                    .map(|m| OidcIdentityMatch {
                        issuer: Cow::Borrowed(&m.issuer),
                        subject: Cow::Borrowed(&m.subject),
                    })
                    .collect()
            }),
            trusted_root_secret_ref: name(&self.trusted_root_secret_ref),
        }
    }

    fn strings(&self) -> impl Iterator<Item = &str> {
        [
            Some(self.provider.as_str()),
            self.secret_ref.as_ref().map(|s| s.name.as_str()),
            self.trusted_root_secret_ref
                .as_ref()
                .map(|s| s.name.as_str()),
        ]
        .into_iter()
        .flatten()
        .chain(
            self.match_oidc_identity
                .iter()
                .flat_map(|m| [m.issuer.as_str(), m.subject.as_str()]),
        )
    }

    fn uses(&self, placeholder: &str) -> bool {
        self.strings().any(|s| s.contains(placeholder))
    }

    /// The block with its placeholders filled, or `None` when one it uses has no value.
    /// Values go into regexes escaped (a project named `my.app` must not match `myxapp`).
    pub fn fill(&self, values: Placeholders<'_>) -> Option<VerifyBlock> {
        let mut filled = self.clone();
        for (placeholder, value) in [("{group}", values.group), ("{project}", values.project)] {
            if !self.uses(placeholder) {
                continue;
            }
            let value = value.filter(|v| !v.is_empty())?;
            let escaped = regex::escape(value);
            let plain = |s: &mut String| *s = s.replace(placeholder, value);
            if let Some(secret) = filled.secret_ref.as_mut() {
                plain(&mut secret.name);
            }
            if let Some(secret) = filled.trusted_root_secret_ref.as_mut() {
                plain(&mut secret.name);
            }
            for m in &mut filled.match_oidc_identity {
                m.issuer = m.issuer.replace(placeholder, &escaped);
                m.subject = m.subject.replace(placeholder, &escaped);
            }
        }
        Some(filled)
    }

    /// The block as YAML under `spec.verify` (or deeper), every line indented by `indent`
    /// spaces. Patterns are single-quoted, so backslashes stay as written.
    pub fn to_yaml(&self, parents: &[&str], indent: usize) -> String {
        let mut out = String::new();
        let mut depth = indent;
        let mut line = |depth: usize, text: &str| {
            out.push_str(&" ".repeat(depth));
            out.push_str(text);
            out.push('\n');
        };
        for parent in parents.iter().chain(["verify"].iter()) {
            line(depth, &format!("{parent}:"));
            depth += 2;
        }
        line(depth, &format!("provider: {}", self.provider));
        if let Some(secret) = &self.secret_ref {
            line(depth, "secretRef:");
            line(depth + 2, &format!("name: {}", secret.name));
        }
        if !self.match_oidc_identity.is_empty() {
            line(depth, "matchOIDCIdentity:");
            for m in &self.match_oidc_identity {
                line(
                    depth + 2,
                    &format!("- issuer: {}", single_quoted(&m.issuer)),
                );
                line(
                    depth + 4,
                    &format!("subject: {}", single_quoted(&m.subject)),
                );
            }
        }
        if let Some(secret) = &self.trusted_root_secret_ref {
            line(depth, "trustedRootSecretRef:");
            line(depth + 2, &format!("name: {}", secret.name));
        }
        out.pop();
        out
    }
}

fn single_quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// What `Settings::validate` precompiles.
#[derive(Debug)]
pub struct Compiled {
    pub trusted_issuers: Vec<Regex>,
    /// An issuer each trusted pattern accepts, for suggestions.
    pub trusted_issuer_examples: Vec<String>,
    /// `trustedEmailDomains`, lower case.
    pub trusted_email_domains: Vec<String>,
    pub registries: Vec<RegistryPrefix>,
    pub defaults: Vec<UrlGlob>,
}

impl Compiled {
    fn build(settings: &Settings) -> Result<Compiled, SettingError> {
        let mut trusted_issuers = Vec::with_capacity(settings.trusted_issuers.len());
        let mut trusted_issuer_examples = Vec::new();
        for (i, pattern) in settings.trusted_issuers.iter().enumerate() {
            let key = format!("trustedIssuers[{i}]");
            if pattern.trim().is_empty() {
                return Err(SettingError::new(key, "is empty: it would trust no issuer"));
            }
            let anchored = format!("^(?:{pattern})$");
            let regex = Regex::new(&anchored)
                .map_err(|e| SettingError::new(&key, format!("is not a valid regex: {e}")))?;
            let hir = regex_syntax::parse(&anchored)
                .map_err(|e| SettingError::new(&key, format!("is not a valid regex: {e}")))?;
            trusted_issuer_examples.extend(identity::an_accepted_string(&hir));
            trusted_issuers.push(regex);
        }
        let trusted_email_domains = settings
            .trusted_email_domains
            .iter()
            .enumerate()
            .map(|(i, domain)| {
                email_domain(domain)
                    .map_err(|e| SettingError::new(format!("trustedEmailDomains[{i}]"), e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let registries = settings
            .allowed_registries
            .iter()
            .enumerate()
            .map(|(i, prefix)| {
                RegistryPrefix::parse(prefix)
                    .map_err(|e| SettingError::new(format!("allowedRegistries[{i}]"), e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let defaults = settings
            .verify_defaults
            .iter()
            .enumerate()
            .map(|(i, rule)| {
                UrlGlob::parse(&rule.url_match)
                    .map_err(|e| SettingError::new(format!("verifyDefaults[{i}].match"), e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let compiled = Compiled {
            trusted_issuers,
            trusted_issuer_examples,
            trusted_email_domains,
            registries,
            defaults,
        };
        // A mutated object must pass validation: judge every default block by the rules it
        // will be judged by, with sample placeholder values.
        let budget = crate::budget::Budget::default();
        let judge = Judge {
            settings,
            compiled: &compiled,
            budget: &budget,
            issuer: &|pattern| Ok(Arc::new(identity::analyze_issuer(pattern))),
            subject: &|pattern, hosts| Ok(Arc::new(identity::analyze_subject(pattern, hosts))),
        };
        let samples = Placeholders {
            group: Some("group"),
            project: Some("project"),
        };
        for (i, rule) in settings.verify_defaults.iter().enumerate() {
            let key = format!("verifyDefaults[{i}].verify");
            let block = rule.verify.fill(samples).ok_or_else(|| {
                SettingError::new(&key, "uses a placeholder that cannot be filled")
            })?;
            let judgement = judge.verification(&block.as_verification(), Site::OciRepository);
            if let Some(problem) = judgement.violations.first() {
                return Err(SettingError::new(
                    key,
                    format!("would be denied by this policy: {problem}"),
                ));
            }
        }
        Ok(compiled)
    }

    /// Whether an issuer is one of the trusted ones (a trailing slash and the case of scheme
    /// and host aside).
    pub fn trusts_issuer(&self, issuer: &str) -> bool {
        let bare = issuer.trim_end_matches('/');
        let lower = bare.to_ascii_lowercase();
        self.trusted_issuers
            .iter()
            .any(|re| re.is_match(issuer) || re.is_match(bare) || re.is_match(&lower))
    }

    /// Whether every address at `domain` may sign (`trustedEmailDomains`).
    pub fn trusts_email_domain(&self, domain: &str) -> bool {
        let domain = domain.trim_end_matches('.');
        self.trusted_email_domains
            .iter()
            .any(|trusted| trusted.eq_ignore_ascii_case(domain))
    }

    pub fn registry_allowed(&self, url: &str) -> bool {
        self.registries.is_empty() || self.registries.iter().any(|p| p.accepts(url))
    }
}

impl Settings {
    /// The precompiled settings. `Config::from_yaml` validates every policy's settings; a
    /// `Settings` built in code and never validated is compiled here, on each call.
    pub fn compiled(&self) -> Result<Arc<Compiled>, SettingError> {
        match &self.compiled {
            Some(compiled) => Ok(Arc::clone(compiled)),
            None => Compiled::build(self).map(Arc::new),
        }
    }

    /// How the annotation and messages name a rule.
    pub fn rule_label(&self, index: usize) -> String {
        self.verify_defaults
            .get(index)
            .and_then(|rule| rule.name.clone())
            .unwrap_or_else(|| format!("verifyDefaults[{index}]"))
    }

    /// The first `verifyDefaults` rule that accepts `url` and whose placeholders the URL
    /// fills: its label and its filled block.
    pub fn default_for(&self, compiled: &Compiled, url: &str) -> Option<(String, VerifyBlock)> {
        let path = strip_oci(url);
        self.verify_defaults
            .iter()
            .zip(&compiled.defaults)
            .enumerate()
            .find_map(|(i, (rule, glob))| {
                let values = glob.matches(path)?;
                let block = rule.verify.fill(values)?;
                Some((self.rule_label(i), block))
            })
    }
}

/// A `trustedEmailDomains` entry: a domain name (lower-cased), never a public one.
fn email_domain(text: &str) -> Result<String, String> {
    let domain = text.trim().trim_end_matches('.').to_ascii_lowercase();
    if domain.is_empty() {
        return Err("is empty".into());
    }
    if let Some(at) = domain.find('@') {
        return Err(format!(
            "is an address, not a domain: write {}",
            &domain[at + 1..]
        ));
    }
    let labels: Vec<&str> = domain.split('.').collect();
    let valid = labels.len() >= 2
        && labels.iter().all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !valid {
        return Err(format!(
            "`{text}` is not a domain name (such as acme.com; no wildcards, schemes or paths)"
        ));
    }
    if identity::is_public_email_domain(&domain) {
        return Err(format!(
            "{domain} is a public email domain, where anyone can register an address: it would let anyone sign; name the addresses in matchOIDCIdentity instead"
        ));
    }
    Ok(domain)
}

fn strip_oci(url: &str) -> &str {
    url.strip_prefix("oci://").unwrap_or(url)
}

fn check_oci_location(text: &str) -> Result<&str, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("is empty".into());
    }
    if trimmed.chars().any(char::is_whitespace) {
        return Err("contains whitespace".into());
    }
    let path = strip_oci(trimmed);
    if path.contains("://") {
        return Err("must be an oci:// URL (or a registry path without scheme)".into());
    }
    if path.is_empty() || path.starts_with('/') {
        return Err("names no registry host".into());
    }
    Ok(path)
}

/// An `allowedRegistries` entry.
#[derive(Debug, Clone)]
pub struct RegistryPrefix {
    /// Without `oci://`.
    prefix: String,
}

impl RegistryPrefix {
    fn parse(text: &str) -> Result<Self, String> {
        Ok(RegistryPrefix {
            prefix: check_oci_location(text)?.to_string(),
        })
    }

    /// Whether `url` is the prefix or below it: `registry.gitlab.com/acme` accepts
    /// `registry.gitlab.com/acme/app` but not `registry.gitlab.com/acme-evil`. Hosts and
    /// OCI repository paths are case-insensitive (paths are lowercase by the OCI spec).
    pub fn accepts(&self, url: &str) -> bool {
        let path = strip_oci(url);
        let prefix = self.prefix.as_str();
        let Some(head) = path.get(..prefix.len()) else {
            return false;
        };
        head.eq_ignore_ascii_case(prefix)
            && (prefix.ends_with('/')
                || path.len() == prefix.len()
                || path.as_bytes().get(prefix.len()) == Some(&b'/'))
    }
}

/// A `verifyDefaults[].match`, compiled.
#[derive(Debug, Clone)]
pub struct UrlGlob {
    regex: Regex,
}

impl UrlGlob {
    fn parse(text: &str) -> Result<Self, String> {
        let path = check_oci_location(text)?;
        let is_glob = path.contains('*') || path.contains('{');
        let mut pattern = String::from("(?i)^");
        if !is_glob {
            pattern.push_str(&regex::escape(path.trim_end_matches('/')));
            pattern.push_str("(?:/.*)?$");
        } else {
            let mut rest = path;
            while !rest.is_empty() {
                if rest == "/**" {
                    // `acme/**` covers `acme` itself too.
                    pattern.push_str("(?:/.*)?");
                    break;
                } else if let Some(after) = rest.strip_prefix("**") {
                    pattern.push_str(".*");
                    rest = after;
                } else if let Some(after) = rest.strip_prefix('*') {
                    pattern.push_str("[^/]*");
                    rest = after;
                } else if let Some(after) = rest.strip_prefix('{') {
                    let Some((name, tail)) = after.split_once('}') else {
                        return Err("has an unclosed {".into());
                    };
                    if name != "group" && name != "project" {
                        return Err(format!(
                            "has an unknown placeholder {{{name}}}: use {{group}} or {{project}}"
                        ));
                    }
                    if pattern.contains(&format!("(?P<{name}>")) {
                        return Err(format!("uses {{{name}}} twice"));
                    }
                    pattern.push_str(&format!("(?P<{name}>[^/]+)"));
                    rest = tail;
                } else if rest.starts_with('}') {
                    return Err("has a } without {".into());
                } else {
                    // A literal run up to the next special character; a final `/**` is left
                    // to its own branch.
                    let mut end = rest.find(['*', '{', '}']).unwrap_or(rest.len());
                    if &rest[end..] == "**" && rest[..end].ends_with('/') {
                        end -= 1;
                    }
                    pattern.push_str(&regex::escape(&rest[..end]));
                    rest = &rest[end..];
                }
            }
            pattern.push('$');
        }
        let regex = Regex::new(&pattern).map_err(|e| format!("is not a valid glob: {e}"))?;
        Ok(UrlGlob { regex })
    }

    /// The placeholder values when the glob accepts the URL path (without `oci://`). Values
    /// the glob does not capture come from the path: `{group}` the first segment after the
    /// host, `{project}` the second (GitLab's `registry/<group>/<project>/...` layout).
    pub fn matches<'u>(&self, path: &'u str) -> Option<Placeholders<'u>> {
        let captures = self.regex.captures(path)?;
        let mut segments = path.split('/').skip(1).filter(|s| !s.is_empty());
        let (first, second) = (segments.next(), segments.next());
        Some(Placeholders {
            group: captures.name("group").map(|m| m.as_str()).or(first),
            project: captures.name("project").map(|m| m.as_str()).or(second),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(text: &str) -> UrlGlob {
        UrlGlob::parse(text).expect("valid glob")
    }

    #[test]
    fn registry_prefixes_match_at_a_path_boundary() {
        let prefix = RegistryPrefix::parse("oci://registry.gitlab.com/acme").expect("valid");
        assert!(prefix.accepts("oci://registry.gitlab.com/acme"));
        assert!(prefix.accepts("oci://registry.gitlab.com/acme/app/manifests"));
        assert!(prefix.accepts("oci://Registry.GitLab.com/acme/app"));
        assert!(!prefix.accepts("oci://registry.gitlab.com/acme-evil/app"));
        assert!(!prefix.accepts("oci://registry.gitlab.com"));
        let host = RegistryPrefix::parse("ghcr.io").expect("valid");
        assert!(host.accepts("oci://ghcr.io/stefanprodan/manifests/podinfo"));
        assert!(!host.accepts("oci://ghcr.io.evil.example/x"));
    }

    #[test]
    fn bad_registry_prefixes_are_refused() {
        assert!(RegistryPrefix::parse("").is_err());
        assert!(RegistryPrefix::parse("https://ghcr.io").is_err());
        assert!(RegistryPrefix::parse("oci:///x").is_err());
        assert!(RegistryPrefix::parse("ghcr.io/a b").is_err());
    }

    #[test]
    fn globs_follow_path_segments() {
        let g = glob("oci://registry.gitlab.com/acme/**");
        assert!(g.matches("registry.gitlab.com/acme").is_some());
        assert!(
            g.matches("registry.gitlab.com/acme/app/manifests")
                .is_some()
        );
        assert!(g.matches("registry.gitlab.com/acme-evil/app").is_none());
        let g = glob("oci://registry.gitlab.com/*/app");
        assert!(g.matches("registry.gitlab.com/acme/app").is_some());
        assert!(g.matches("registry.gitlab.com/acme/sub/app").is_none());
        let prefix = glob("oci://ghcr.io/stefanprodan");
        assert!(
            prefix
                .matches("ghcr.io/stefanprodan/manifests/podinfo")
                .is_some()
        );
        assert!(prefix.matches("ghcr.io/stefanprodan-x").is_none());
    }

    #[test]
    fn placeholders_come_from_captures_or_path_segments() {
        let values = glob("oci://registry.gitlab.com/acme/**")
            .matches("registry.gitlab.com/acme/app/manifests")
            .expect("matches");
        assert_eq!((values.group, values.project), (Some("acme"), Some("app")));
        let values = glob("oci://registry.gitlab.com/acme/platform/{project}/**")
            .matches("registry.gitlab.com/acme/platform/deploy/manifests")
            .expect("matches");
        assert_eq!(values.project, Some("deploy"));
    }

    #[test]
    fn bad_globs_are_refused() {
        assert!(UrlGlob::parse("oci://registry.gitlab.com/{team}/**").is_err());
        assert!(UrlGlob::parse("oci://registry.gitlab.com/{group/**").is_err());
        assert!(UrlGlob::parse("oci://registry.gitlab.com/{group}/{group}").is_err());
        assert!(UrlGlob::parse("https://registry.gitlab.com/**").is_err());
    }

    #[test]
    fn filled_placeholders_are_escaped_in_patterns_only() {
        let block = VerifyBlock {
            provider: "cosign".into(),
            secret_ref: None,
            match_oidc_identity: vec![IdentityPattern {
                issuer: r"^https://gitlab\.com$".into(),
                subject:
                    r"^https://gitlab\.com/{group}/{project}//\.gitlab-ci\.yml@refs/heads/main$"
                        .into(),
            }],
            trusted_root_secret_ref: Some(SecretName {
                name: "{project}-root".into(),
            }),
        };
        let filled = block
            .fill(Placeholders {
                group: Some("acme"),
                project: Some("my.app"),
            })
            .expect("filled");
        assert_eq!(
            filled.match_oidc_identity[0].subject,
            r"^https://gitlab\.com/acme/my\.app//\.gitlab-ci\.yml@refs/heads/main$"
        );
        assert_eq!(
            filled.trusted_root_secret_ref.expect("set").name,
            "my.app-root"
        );
        assert!(block.fill(Placeholders::default()).is_none());
    }
}
