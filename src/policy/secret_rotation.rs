//! `secret-rotation`: the keys and tokens Flux and the GitLab agent use are rotated regularly.
//!
//! GitLab: "regularly rotate the keys used by Flux to access the manifests. You should also
//! regularly rotate your agent-registration token." Nothing in a cluster says how old those
//! Secrets are; this policy does, without ever reading a Secret's value (the cluster view
//! watches Secrets' metadata only, see [`crate::cluster::secrets`]).
//!
//! # What is tracked
//! - The Secrets Flux objects reference (the fields and their uses are listed in
//!   [`crate::flux::secret_refs`]): `flux-source-auth`, `flux-verify`, `flux-decryption`,
//!   `flux-kubeconfig`.
//! - The agentk token Secret of every GitLab agent installation `single-agent` finds: the
//!   Secret mounted where the agentk container's `--token-file` points (the chart's
//!   `<fullname>-token`, or its `config.secretName`), use `gitlab-agent-token`.
//!
//! # When a Secret was last rotated
//! The `fluxgate.io/rotated-at` annotation (RFC 3339), which operators set when they rotate a
//! Secret in place; else its `creationTimestamp` (rotating by replacing the Secret resets it);
//! else unknown (a manifest that never went through the API server). An annotation that is
//! not RFC 3339, or lies in the future, is its own finding and the creation time is used
//! instead: the Secret is at most that old only if nobody rotated it since, so the age errs
//! towards asking.
//!
//! # How it is reported
//! - The audit scan ([`crate::audit::scan`]) has one row per Secret and use
//!   ([`rotation_table`]), exported as `fluxgate_secret_age_seconds` and
//!   `fluxgate_secret_rotation_overdue`, printed by `fluxgate audit` sorted by urgency, and
//!   turned into findings on the Secret ([`rotation_findings`]): an overdue Secret, a Secret
//!   referenced but missing, a malformed annotation. Findings name the Secret, not each object
//!   that uses it, so one stale key used by ten sources is one finding.
//! - At admission, a Flux object that references an overdue Secret gets a warning naming the
//!   Secret, its age and how to rotate it. A missing Secret is not warned about at admission:
//!   the Secret is often created moments after (or before the watch delivers it), and Flux
//!   reports it on the object anyway.
//!
//! # Modes
//! The built-in default is `audit`, unlike the other policies, and the global `mode` does not
//! change it (set `policies.secret-rotation.mode`): rotation is hygiene to report, not a
//! reason to stop a write. `warn` adds the admission warnings.
//!
//! `enforce` behaves like `warn`: this policy never denies. Kyverno users would expect
//! enforce to deny, but what is wrong is the Secret, not the object being written, and
//! denying it cannot rotate anything. Worse, kustomize-controller re-applies every source and
//! Kustomization on each reconciliation: denying an old key's OCIRepository would fail the
//! whole Kustomization that carries it, including the change that rolls out the new key, and
//! wedge GitOps until someone edits the cluster by hand. Findings are advisories, which the
//! engine never turns into denials.
//!
//! # Settings
//! `maxAgeDays` per use: 90 days for `flux-source-auth`, `flux-verify`, `flux-decryption` and
//! `flux-kubeconfig`, 365 for `gitlab-agent-token` (GitLab agent tokens can be given a
//! shorter lifetime; set the limit to match).

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize, Serializer};

use super::{CREATE_UPDATE, Context, KindRule, Policy, PolicySettings, SettingError};
use crate::cluster::secrets::{ROTATED_AT_ANNOTATION, RotatedAt, SecretFacts, format_time};
use crate::cluster::{AgentInstallation, ClusterView, Lookup};
use crate::finding::{Finding, Mode, PolicyId, object_ref};
use crate::flux::secret_refs;
use crate::flux::secret_refs::SecretUse;
use crate::flux::{HELM_GROUP, KUSTOMIZE_GROUP, SOURCE_GROUP};

const ID: PolicyId = PolicyId::SecretRotation;

const DAY: i64 = 86_400;
const HOUR: i64 = 3_600;
const MINUTE: i64 = 60;

/// A `rotated-at` this far ahead of fluxgate's clock is clock skew, not a mistake.
const FUTURE_TOLERANCE_SECONDS: i64 = 5 * MINUTE;

/// How many users of a Secret a message names.
const LISTED_USERS: usize = 3;

/// Every UPDATE is judged (no `judged_fields`): the warning is a reminder, and it never
/// denies, so it cannot wedge a controller.
const fn rule(group: &'static str, kind: &'static str, resource: &'static str) -> KindRule {
    KindRule {
        group,
        kind,
        resource,
        opt_in: false,
        operations: CREATE_UPDATE,
        judged_fields: &[],
    }
}

/// The kinds of [`secret_refs::KINDS`].
const KINDS: &[KindRule] = &[
    rule(SOURCE_GROUP, "GitRepository", "gitrepositories"),
    rule(SOURCE_GROUP, "OCIRepository", "ocirepositories"),
    rule(SOURCE_GROUP, "HelmRepository", "helmrepositories"),
    rule(SOURCE_GROUP, "HelmChart", "helmcharts"),
    rule(SOURCE_GROUP, "Bucket", "buckets"),
    rule(KUSTOMIZE_GROUP, "Kustomization", "kustomizations"),
    rule(HELM_GROUP, "HelmRelease", "helmreleases"),
];

// ---- Settings ----

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Settings {
    /// `Some(Audit)` by default, unlike the other policies; `null` follows the global mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    pub max_age_days: MaxAgeDays,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            mode: Some(Mode::Audit),
            max_age_days: MaxAgeDays::default(),
        }
    }
}

/// The longest a Secret may go without rotation, per use, in days.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct MaxAgeDays {
    pub flux_source_auth: u32,
    pub flux_verify: u32,
    pub flux_decryption: u32,
    pub flux_kubeconfig: u32,
    pub gitlab_agent_token: u32,
}

impl Default for MaxAgeDays {
    fn default() -> Self {
        MaxAgeDays {
            flux_source_auth: 90,
            flux_verify: 90,
            flux_decryption: 90,
            flux_kubeconfig: 90,
            gitlab_agent_token: 365,
        }
    }
}

impl MaxAgeDays {
    pub fn of(&self, secret_use: SecretUse) -> u32 {
        match secret_use {
            SecretUse::FluxSourceAuth => self.flux_source_auth,
            SecretUse::FluxVerify => self.flux_verify,
            SecretUse::FluxDecryption => self.flux_decryption,
            SecretUse::FluxKubeconfig => self.flux_kubeconfig,
            SecretUse::GitlabAgentToken => self.gitlab_agent_token,
        }
    }
}

/// A hundred years: beyond it a limit is a typo, and seconds stay far from overflowing.
const MAX_AGE_DAYS_LIMIT: u32 = 36_500;

impl PolicySettings for Settings {
    fn mode(&self) -> Option<Mode> {
        self.mode
    }

    fn validate(&mut self) -> Result<(), SettingError> {
        for secret_use in SecretUse::ALL {
            let days = self.max_age_days.of(secret_use);
            if !(1..=MAX_AGE_DAYS_LIMIT).contains(&days) {
                return Err(SettingError::new(
                    format!("maxAgeDays.{secret_use}"),
                    format!("must be between 1 and {MAX_AGE_DAYS_LIMIT} days, not {days}"),
                ));
            }
        }
        Ok(())
    }
}

impl Settings {
    pub fn max_age_seconds(&self, secret_use: SecretUse) -> i64 {
        i64::from(self.max_age_days.of(secret_use)) * DAY
    }
}

// ---- When a Secret was last rotated ----

/// Where a rotation time comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum RotationSource {
    /// `fluxgate.io/rotated-at`.
    Annotation,
    CreationTimestamp,
}

impl RotationSource {
    fn describe(self) -> &'static str {
        match self {
            RotationSource::Annotation => "its fluxgate.io/rotated-at annotation",
            RotationSource::CreationTimestamp => "its creationTimestamp",
        }
    }
}

/// When a Secret was last rotated (Unix seconds), as far as its metadata says, and what is
/// wrong with its `rotated-at` annotation, if anything.
pub fn last_rotation(
    facts: &SecretFacts,
    now: i64,
) -> (Option<(i64, RotationSource)>, Option<AnnotationProblem>) {
    let from_creation = facts
        .created
        .map(|at| (at, RotationSource::CreationTimestamp));
    match &facts.rotated_at {
        None => (from_creation, None),
        Some(RotatedAt::At(at)) if *at > now + FUTURE_TOLERANCE_SECONDS => (
            from_creation,
            Some(AnnotationProblem::InTheFuture(format_time(*at))),
        ),
        Some(RotatedAt::At(at)) => (Some((*at, RotationSource::Annotation)), None),
        Some(RotatedAt::Malformed(text)) => (
            from_creation,
            Some(AnnotationProblem::NotRfc3339(text.clone())),
        ),
    }
}

/// What is wrong with a `fluxgate.io/rotated-at` annotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "problem", content = "value")]
pub enum AnnotationProblem {
    NotRfc3339(String),
    InTheFuture(String),
}

impl AnnotationProblem {
    fn describe(&self) -> String {
        match self {
            AnnotationProblem::NotRfc3339(text) => format!(
                "{ROTATED_AT_ANNOTATION}: {text:?}, which is not an RFC 3339 time (like 2025-01-31T12:00:00Z)"
            ),
            AnnotationProblem::InTheFuture(at) => {
                format!("{ROTATED_AT_ANNOTATION}: {at}, which is in the future")
            }
        }
    }
}

/// `400 days`, `1 day`, `5 hours`, `12 minutes`.
pub fn describe_age(seconds: i64) -> String {
    let plural = |n: i64, unit: &str| {
        if n == 1 {
            format!("1 {unit}")
        } else {
            format!("{n} {unit}s")
        }
    };
    if seconds >= DAY {
        plural(seconds / DAY, "day")
    } else if seconds >= HOUR {
        plural(seconds / HOUR, "hour")
    } else {
        plural(seconds.max(0) / MINUTE, "minute")
    }
}

/// `400d`, `5h`, `12m`: for tables.
pub fn short_age(seconds: i64) -> String {
    if seconds >= DAY {
        format!("{}d", seconds / DAY)
    } else if seconds >= HOUR {
        format!("{}h", seconds / HOUR)
    } else {
        format!("{}m", seconds.max(0) / MINUTE)
    }
}

fn advice(secret_use: SecretUse) -> &'static str {
    match secret_use {
        SecretUse::FluxSourceAuth => {
            "Rotate it: issue new credentials for the source (in GitLab, a new deploy token or \
             deploy key), put them in the Secret, then revoke the old ones"
        }
        SecretUse::FluxVerify => {
            "Rotate it: sign new artifacts with a new key pair (cosign generate-key-pair), add \
             the new public key to the Secret, and remove the old key once nothing signed with \
             it is deployed"
        }
        SecretUse::FluxDecryption => {
            "Rotate it: create a new SOPS key (age-keygen), re-encrypt the manifests with it \
             (sops updatekeys), put it in the Secret, then remove the old key"
        }
        SecretUse::FluxKubeconfig => {
            "Rotate it: issue new credentials for the remote cluster, put the new kubeconfig in \
             the Secret, then revoke the old credentials"
        }
        SecretUse::GitlabAgentToken => {
            "Rotate it: create a new token for the agent in GitLab (the agent's project, \
             Operate > Kubernetes clusters > the agent > Access tokens), put it in the Secret \
             and restart agentk, then revoke the old token"
        }
    }
}

/// `kubectl [-n NAMESPACE] annotate secret NAME`.
fn annotate_command(namespace: &str, secret: &str) -> String {
    if namespace.is_empty() {
        format!("kubectl annotate secret {secret}")
    } else {
        format!("kubectl -n {namespace} annotate secret {secret}")
    }
}

fn record_rotation(namespace: &str, secret: &str) -> String {
    format!(
        "record the rotation with `{} {ROTATED_AT_ANNOTATION}=$(date -u +%Y-%m-%dT%H:%M:%SZ) \
         --overwrite` (replacing the Secret resets its creationTimestamp instead)",
        annotate_command(namespace, secret)
    )
}

fn overdue_sentence(
    age: i64,
    at: i64,
    source: RotationSource,
    max_age_days: u32,
    secret_use: SecretUse,
) -> String {
    format!(
        "last rotated {} ago ({}, from {}), over the {max_age_days}-day limit for {secret_use}",
        describe_age(age),
        format_time(at),
        source.describe(),
    )
}

// ---- The rotation table ----

/// Where a Secret stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum RotationStatus {
    /// Referenced, but the Secret does not exist.
    Missing,
    /// Older than its use allows.
    Overdue,
    Current,
    /// Neither an annotation nor a creation time says when.
    Unknown,
}

impl RotationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RotationStatus::Missing => "missing",
            RotationStatus::Overdue => "overdue",
            RotationStatus::Current => "current",
            RotationStatus::Unknown => "unknown",
        }
    }
}

fn rfc3339<S: Serializer>(at: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => s.serialize_str(&format_time(*at)),
        None => s.serialize_none(),
    }
}

/// One Secret in one use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RotationRow {
    pub namespace: String,
    pub secret: String,
    #[serde(rename = "use")]
    pub secret_use: SecretUse,
    /// The objects that use it, as `Kind namespace/name (field)`.
    pub used_by: Vec<String>,
    pub status: RotationStatus,
    #[serde(serialize_with = "rfc3339")]
    pub rotated_at: Option<i64>,
    pub rotated_from: Option<RotationSource>,
    pub age_seconds: Option<i64>,
    pub max_age_seconds: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotation_problem: Option<AnnotationProblem>,
}

impl RotationRow {
    pub fn overdue(&self) -> bool {
        self.status == RotationStatus::Overdue
    }

    /// Most urgent first: missing Secrets (Flux is failing already), then by time left
    /// (overdue ones have less than none), then Secrets of unknown age.
    fn urgency(&self) -> (u8, i64) {
        match (self.status, self.age_seconds) {
            (RotationStatus::Missing, _) => (0, 0),
            (_, Some(age)) => (1, self.max_age_seconds - age),
            _ => (2, 0),
        }
    }

    /// The first users, and how many more there are.
    pub fn users(&self) -> String {
        let mut text = self
            .used_by
            .iter()
            .take(LISTED_USERS)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if self.used_by.len() > LISTED_USERS {
            text.push_str(&format!(" and {} more", self.used_by.len() - LISTED_USERS));
        }
        text
    }
}

type UsageKey = (String, String, SecretUse);

/// Which Secrets are used, how and by what; `Unknown` until the view is synced.
fn usages(view: &dyn ClusterView) -> Lookup<BTreeMap<UsageKey, Vec<String>>> {
    let (references, installations) =
        match (view.flux_secret_references(), view.agent_installations()) {
            (Lookup::Found(r), Lookup::Found(i)) => (r, i),
            _ => return Lookup::Unknown,
        };
    let mut used: BTreeMap<UsageKey, Vec<String>> = BTreeMap::new();
    for r in references {
        used.entry((r.namespace.clone(), r.secret, r.secret_use))
            .or_default()
            .push(format!(
                "{} ({})",
                object_ref(r.kind, Some(&r.namespace), &r.name),
                r.field
            ));
    }
    for installation in &installations {
        for (namespace, secret, user) in agent_tokens(installation) {
            used.entry((namespace, secret, SecretUse::GitlabAgentToken))
                .or_default()
                .push(user);
        }
    }
    Lookup::Found(used)
}

/// The token Secrets of an installation, from its top-most objects that mount one: a
/// Deployment speaks for its ReplicaSets, whose old generations may still name a token
/// Secret that was replaced since.
fn agent_tokens(installation: &AgentInstallation) -> Vec<(String, String, String)> {
    let Some(top_kind) = installation
        .objects
        .iter()
        .find(|o| o.token_secret.is_some())
        .map(|o| o.kind)
    else {
        return Vec::new();
    };
    installation
        .objects
        .iter()
        .filter(|o| o.kind == top_kind)
        .filter_map(|o| {
            let secret = o.token_secret.clone()?;
            Some((
                o.namespace.clone(),
                secret,
                format!("{} (agentk --token-file)", o.object_ref()),
            ))
        })
        .collect()
}

/// Every used Secret in every use, most urgent first. `now` is Unix seconds.
pub fn rotation_table(
    view: &dyn ClusterView,
    settings: &Settings,
    now: i64,
) -> Lookup<Vec<RotationRow>> {
    let used = match usages(view) {
        Lookup::Found(used) => used,
        _ => return Lookup::Unknown,
    };
    let mut rows: Vec<RotationRow> = used
        .into_iter()
        .map(|((namespace, secret, secret_use), mut used_by)| {
            used_by.sort();
            used_by.dedup();
            let max_age_seconds = settings.max_age_seconds(secret_use);
            let facts = view.secret(&namespace, &secret);
            let (last, annotation_problem) = match &facts {
                Lookup::Found(facts) => last_rotation(facts, now),
                _ => (None, None),
            };
            let age_seconds = last.map(|(at, _)| (now - at).max(0));
            let status = match (&facts, age_seconds) {
                (Lookup::Missing, _) => RotationStatus::Missing,
                (_, Some(age)) if age > max_age_seconds => RotationStatus::Overdue,
                (_, Some(_)) => RotationStatus::Current,
                (_, None) => RotationStatus::Unknown,
            };
            RotationRow {
                namespace,
                secret,
                secret_use,
                used_by,
                status,
                rotated_at: last.map(|(at, _)| at),
                rotated_from: last.map(|(_, source)| source),
                age_seconds,
                max_age_seconds,
                annotation_problem,
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        (a.urgency(), &a.namespace, &a.secret, a.secret_use).cmp(&(
            b.urgency(),
            &b.namespace,
            &b.secret,
            b.secret_use,
        ))
    });
    Lookup::Found(rows)
}

/// A finding about one Secret, for the audit scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretFinding {
    pub namespace: String,
    pub secret: String,
    pub message: String,
}

/// The findings of a rotation table: each overdue Secret (per use), each missing Secret and
/// each Secret with a broken annotation (once per Secret).
pub fn rotation_findings(rows: &[RotationRow]) -> Vec<SecretFinding> {
    let mut by_secret: BTreeMap<(&str, &str), Vec<&RotationRow>> = BTreeMap::new();
    for row in rows {
        by_secret
            .entry((&row.namespace, &row.secret))
            .or_default()
            .push(row);
    }
    let mut findings = Vec::new();
    for ((namespace, secret), rows) in by_secret {
        let subject = object_ref("Secret", Some(namespace), secret);
        let finding = |message: String| SecretFinding {
            namespace: namespace.to_string(),
            secret: secret.to_string(),
            message,
        };
        if rows.iter().any(|r| r.status == RotationStatus::Missing) {
            let uses: Vec<String> = rows
                .iter()
                .map(|r| format!("as {} by {}", r.secret_use, r.users()))
                .collect();
            findings.push(finding(format!(
                "{subject} does not exist, but it is used {}: Flux cannot reconcile those \
                 objects (or agentk cannot start). Create the Secret, or fix the reference.",
                uses.join("; ")
            )));
            continue;
        }
        for row in rows.iter().filter(|r| r.overdue()) {
            let (Some(age), Some(at), Some(source)) =
                (row.age_seconds, row.rotated_at, row.rotated_from)
            else {
                continue;
            };
            findings.push(finding(format!(
                "{subject}, used as {} by {}, was {}. {}, then {}.",
                row.secret_use,
                row.users(),
                overdue_sentence(
                    age,
                    at,
                    source,
                    u32::try_from(row.max_age_seconds / DAY).unwrap_or(u32::MAX),
                    row.secret_use
                ),
                advice(row.secret_use),
                record_rotation(namespace, secret),
            )));
        }
        if let Some(problem) = rows.iter().find_map(|r| r.annotation_problem.as_ref()) {
            findings.push(finding(format!(
                "{subject} has {}; its age is taken from its creationTimestamp instead. Set \
                 the annotation to the time of the last rotation: `{} \
                 {ROTATED_AT_ANNOTATION}=<RFC 3339 time> --overwrite`.",
                problem.describe(),
                annotate_command(namespace, secret),
            )));
        }
    }
    findings
}

// ---- Admission ----

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The warnings for a Flux object, given its raw JSON, at `now` (Unix seconds).
pub fn judge_object(
    object_ref: &dyn Fn() -> String,
    namespace: &str,
    references: &[secret_refs::SecretRef<'_>],
    view: &dyn ClusterView,
    settings: &Settings,
    now: i64,
) -> Vec<Finding> {
    references
        .iter()
        .filter_map(|r| {
            let Lookup::Found(facts) = view.secret(namespace, &r.secret) else {
                return None;
            };
            let (Some((at, source)), _) = last_rotation(&facts, now) else {
                return None;
            };
            let age = (now - at).max(0);
            let max_age_days = settings.max_age_days.of(r.secret_use);
            if age <= settings.max_age_seconds(r.secret_use) {
                return None;
            }
            Some(Finding::advisory(
                ID,
                format!(
                    "{} uses {} ({}), {}. {}, then {}.",
                    object_ref(),
                    crate::finding::object_ref("Secret", Some(namespace), &r.secret),
                    r.field,
                    overdue_sentence(age, at, source, max_age_days, r.secret_use),
                    advice(r.secret_use),
                    record_rotation(namespace, &r.secret),
                ),
            ))
        })
        .collect()
}

pub struct SecretRotation;

impl Policy for SecretRotation {
    type Settings = Settings;

    fn id(&self) -> PolicyId {
        ID
    }

    fn kinds(&self) -> &'static [KindRule] {
        KINDS
    }

    fn validate(&self, ctx: &Context<'_, Settings>) -> Vec<Finding> {
        let Some(object) = ctx.request.object else {
            return Vec::new();
        };
        // A reference of the wrong shape is the API server's schema's to refuse; a policy that
        // only reminds has nothing to say about it.
        let Ok(doc) = ctx.view_of::<secret_refs::Doc<'_>>(object) else {
            return Vec::new();
        };
        let references = doc.references();
        judge_object(
            &|| ctx.object_ref(),
            ctx.request.namespace().unwrap_or(""),
            &references,
            ctx.view,
            ctx.settings,
            unix_now(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_people_say_them() {
        assert_eq!(describe_age(400 * DAY + 5), "400 days");
        assert_eq!(describe_age(DAY), "1 day");
        assert_eq!(describe_age(5 * HOUR), "5 hours");
        assert_eq!(describe_age(90), "1 minute");
        assert_eq!(short_age(91 * DAY), "91d");
    }

    #[test]
    fn the_annotation_wins_over_the_creation_time_unless_it_is_broken() {
        let created = Some(1_000);
        let at = |rotated_at| SecretFacts {
            created,
            rotated_at,
        };
        assert_eq!(
            last_rotation(&at(Some(RotatedAt::At(5_000))), 10_000),
            (Some((5_000, RotationSource::Annotation)), None)
        );
        assert_eq!(
            last_rotation(&at(None), 10_000),
            (Some((1_000, RotationSource::CreationTimestamp)), None)
        );
        let (last, problem) = last_rotation(&at(Some(RotatedAt::At(10_000 + DAY))), 10_000);
        assert_eq!(last, Some((1_000, RotationSource::CreationTimestamp)));
        assert!(matches!(problem, Some(AnnotationProblem::InTheFuture(_))));
        // A minute of clock skew is not a problem.
        assert_eq!(
            last_rotation(&at(Some(RotatedAt::At(10_060))), 10_000).1,
            None
        );
    }

    #[test]
    fn a_limit_of_zero_days_is_refused() {
        let mut settings = Settings::default();
        settings.max_age_days.flux_verify = 0;
        let err = settings.validate().expect_err("zero");
        assert_eq!(err.key, "maxAgeDays.flux-verify");
    }
}
