//! The audit scan: every object the policies cover, judged as if it were created now, to find
//! what was in the cluster before the webhook and what slipped through races (two agents
//! created at once on two replicas). It uses the same engine as the webhook, in dry-run: it
//! changes no state.
//!
//! This module is pure: objects in, an [`AuditReport`] and PolicyReport objects out. Listing
//! the cluster and writing reports and Events is [`cluster`]'s job.
//!
//! `secret-rotation` judges Secrets, which it finds through the cluster view rather than in
//! the listed objects: the scan adds one row per used Secret ([`AuditReport::rotation`]) and
//! findings on the Secrets themselves, and leaves out that policy's findings on the objects
//! that reference them, which would repeat the same stale key once per user.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

use crate::admission::OwnedObject;
use crate::cluster::{ClusterView, Lookup};
use crate::config::Config;
use crate::engine::verdict::Action;
use crate::engine::{Endpoint, Engine, exemption};
use crate::finding::{Mode, PolicyId, Severity};
use crate::policy::secret_rotation::{
    RotationRow, RotationStatus, rotation_findings, rotation_table, short_age,
};

pub mod cluster;
pub mod reports;

/// What a finding would have meant at admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditResult {
    /// Would be denied (enforce), or is reported only (audit mode).
    Fail,
    /// Would get a warning.
    Warn,
    /// An exemption covers it.
    Skip,
}

impl AuditResult {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditResult::Fail => "fail",
            AuditResult::Warn => "warn",
            AuditResult::Skip => "skip",
        }
    }
}

/// One finding on one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditFinding {
    pub policy: PolicyId,
    pub mode: Mode,
    pub result: AuditResult,
    pub api_version: String,
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    pub message: String,
}

/// The outcome of one scan.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditReport {
    pub objects_scanned: usize,
    /// Objects that could not be judged (not a Kubernetes object), with why.
    pub unreadable: Vec<String>,
    pub findings: Vec<AuditFinding>,
    /// Every Secret in use and how overdue its rotation is, most urgent first (empty when
    /// `secret-rotation` is off).
    pub rotation: Vec<RotationRow>,
}

impl AuditReport {
    /// Findings that count as violations (fail or warn), by (policy, namespace, kind), for
    /// the `fluxgate_audit_violations` gauge.
    pub fn violation_counts(&self) -> BTreeMap<(PolicyId, String, String), u64> {
        let mut counts = BTreeMap::new();
        for f in self
            .findings
            .iter()
            .filter(|f| f.result != AuditResult::Skip)
        {
            *counts
                .entry((
                    f.policy,
                    f.namespace.clone().unwrap_or_default(),
                    f.kind.clone(),
                ))
                .or_insert(0) += 1;
        }
        counts
    }
}

fn text(value: &Value, pointer: &str) -> Option<String> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// Judges every object as a dry-run CREATE, and the Secrets in use at the current time. The
/// view must already hold the objects (and whatever else the cluster has) so that rules about
/// cluster state see them.
pub fn scan<'a>(
    engine: &Engine,
    view: &dyn ClusterView,
    objects: impl IntoIterator<Item = &'a Value>,
) -> AuditReport {
    scan_at(engine, view, objects, unix_now())
}

pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// [`scan`] with the time Secrets' ages are measured at (Unix seconds).
pub fn scan_at<'a>(
    engine: &Engine,
    view: &dyn ClusterView,
    objects: impl IntoIterator<Item = &'a Value>,
    now_unix: i64,
) -> AuditReport {
    let mut scan = Scan::new(engine, view);
    for object in objects {
        scan.judge(object);
    }
    scan.finish_at(now_unix)
}

/// A scan in progress: objects are judged one at a time as they arrive (a page of a list) and
/// only their findings are kept, so that memory follows the findings, not the number of
/// objects scanned.
pub struct Scan<'e> {
    engine: &'e Engine,
    view: &'e dyn ClusterView,
    report: AuditReport,
}

impl<'e> Scan<'e> {
    pub fn new(engine: &'e Engine, view: &'e dyn ClusterView) -> Self {
        Scan {
            engine,
            view,
            report: AuditReport::default(),
        }
    }

    /// Objects judged so far.
    pub fn objects_scanned(&self) -> usize {
        self.report.objects_scanned
    }

    /// Says why some objects could not be judged (a kind that could not be listed).
    pub fn unreadable(&mut self, why: String) {
        self.report.unreadable.push(why);
    }

    /// Judges one object as a dry-run CREATE and keeps its findings.
    pub fn judge(&mut self, object: &Value) {
        let report = &mut self.report;
        let owned = match OwnedObject::from_value(object) {
            Ok(owned) => owned,
            Err(why) => {
                report.unreadable.push(why);
                return;
            }
        };
        report.objects_scanned += 1;
        let uid = text(object, "/metadata/uid");
        let request = owned.as_create(uid.as_deref().unwrap_or("audit"));
        let (verdict, _) = self.engine.review(Endpoint::Validate, &request, self.view);
        for outcome in verdict
            .outcomes
            .into_iter()
            .filter(|o| o.finding.policy != PolicyId::SecretRotation)
        {
            let result = match (&outcome.action, outcome.finding.severity) {
                (Action::Exempted(_), _) => AuditResult::Skip,
                (_, Severity::Advisory) | (Action::Warn, _) => AuditResult::Warn,
                (Action::Deny | Action::Audit, Severity::Violation | Severity::Invalid) => {
                    AuditResult::Fail
                }
            };
            report.findings.push(AuditFinding {
                policy: outcome.finding.policy,
                mode: outcome.mode,
                result,
                api_version: text(object, "/apiVersion").unwrap_or_default(),
                kind: owned.kind().to_string(),
                namespace: owned.namespace().map(str::to_string),
                name: owned.name().to_string(),
                uid: uid.clone(),
                message: outcome.finding.message,
            });
        }
    }

    /// Adds the Secrets in use (at the current time) and sorts the findings.
    pub fn finish(self) -> AuditReport {
        self.finish_at(unix_now())
    }

    /// [`Scan::finish`] with the time Secrets' ages are measured at (Unix seconds).
    pub fn finish_at(self, now_unix: i64) -> AuditReport {
        let mut report = self.report;
        audit_secrets(self.engine, self.view, now_unix, &mut report);
        report.findings.sort_by(|a, b| {
            (&a.namespace, &a.kind, &a.name, a.policy).cmp(&(
                &b.namespace,
                &b.kind,
                &b.name,
                b.policy,
            ))
        });
        report
    }
}

/// Adds the rotation table and the `secret-rotation` findings on Secrets.
fn audit_secrets(engine: &Engine, view: &dyn ClusterView, now_unix: i64, report: &mut AuditReport) {
    let config = engine.config();
    let mode = engine.mode_of(&config, PolicyId::SecretRotation);
    if mode == Mode::Off {
        return;
    }
    let Lookup::Found(rows) = rotation_table(view, &config.policies.secret_rotation, now_unix)
    else {
        return;
    };
    for finding in rotation_findings(&rows) {
        let result = if secret_exempted(&config, view, &finding.namespace, &finding.secret) {
            AuditResult::Skip
        } else if mode == Mode::Audit {
            AuditResult::Fail
        } else {
            // warn, and enforce, which this policy never turns into denials.
            AuditResult::Warn
        };
        report.findings.push(AuditFinding {
            policy: PolicyId::SecretRotation,
            mode,
            result,
            api_version: "v1".into(),
            kind: "Secret".into(),
            namespace: Some(finding.namespace).filter(|ns| !ns.is_empty()),
            name: finding.secret,
            uid: None,
            message: finding.message,
        });
    }
    report.rotation = rows;
}

/// Whether a configured exemption covers `secret-rotation` on this Secret (by namespace,
/// namespace labels or `{kind: Secret, name}`), as it would a request for it.
fn secret_exempted(config: &Config, view: &dyn ClusterView, namespace: &str, name: &str) -> bool {
    if config.exemptions.is_empty() {
        return false;
    }
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
    });
    let Ok(owned) = OwnedObject::from_value(&secret) else {
        return false;
    };
    let request = owned.as_create("audit");
    config.exemptions.iter().any(|e| {
        e.applies_to(PolicyId::SecretRotation)
            && exemption::matches(e, &request, |ns| view.namespace_labels(ns).found())
    })
}

/// The label fluxgate puts on the reports it owns.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "fluxgate");
/// Name of fluxgate's PolicyReport in each namespace and of its ClusterPolicyReport.
pub const REPORT_NAME: &str = "fluxgate";
/// Annotation counting the results left out of a report to keep it bounded.
pub const OMITTED_ANNOTATION: &str = "fluxgate.io/results-omitted";

/// PolicyReports in `wgpolicyk8s.io/v1alpha2` (Kyverno's CRDs): see
/// [`reports::scoped_reports`] for what goes in which report, and [`reports::ReportSchema`]
/// for the other versions and OpenReports.
pub fn policy_reports(
    report: &AuditReport,
    previously_reported: &[String],
    max_results: usize,
    now_unix: i64,
) -> Vec<Value> {
    reports::scoped_reports(report, previously_reported, max_results)
        .iter()
        .map(|scoped| reports::ReportSchema::WgPolicyV1alpha2.object(scoped, now_unix))
        .collect()
}

/// A table for people: one row per finding, most severe first.
pub fn render_table(report: &AuditReport) -> String {
    let mut rows: Vec<[String; 5]> = vec![[
        "RESULT".into(),
        "POLICY".into(),
        "MODE".into(),
        "OBJECT".into(),
        "MESSAGE".into(),
    ]];
    let mut findings: Vec<&AuditFinding> = report.findings.iter().collect();
    findings.sort_by_key(|f| (f.result, f.policy));
    for f in findings {
        let object = crate::finding::object_ref(&f.kind, f.namespace.as_deref(), &f.name);
        let first_line = f.message.lines().next().unwrap_or("").to_string();
        rows.push([
            f.result.as_str().into(),
            f.policy.as_str().into(),
            f.mode.as_str().into(),
            object,
            first_line,
        ]);
    }
    let widths: Vec<usize> = (0..4)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            if i < 4 {
                out.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            } else {
                out.push_str(cell);
            }
        }
        out.push('\n');
    }
    out.push_str(&format!(
        "\n{} objects scanned, {} findings ({} fail, {} warn, {} skipped by exemptions)\n",
        report.objects_scanned,
        report.findings.len(),
        report
            .findings
            .iter()
            .filter(|f| f.result == AuditResult::Fail)
            .count(),
        report
            .findings
            .iter()
            .filter(|f| f.result == AuditResult::Warn)
            .count(),
        report
            .findings
            .iter()
            .filter(|f| f.result == AuditResult::Skip)
            .count(),
    ));
    for why in &report.unreadable {
        out.push_str(&format!("skipped: {why}\n"));
    }
    out
}

/// `fluxgate audit`'s rotation table: secret, use, users, age, limit, overdue; most urgent
/// first (the order of [`rotation_table`], which [`scan`] keeps).
pub fn render_rotation_table(rows: &[RotationRow]) -> String {
    let mut table: Vec<[String; 6]> = vec![[
        "SECRET".into(),
        "USE".into(),
        "USED BY".into(),
        "AGE".into(),
        "LIMIT".into(),
        "OVERDUE".into(),
    ]];
    for row in rows {
        let age = match (row.status, row.age_seconds) {
            (RotationStatus::Missing, _) => "-".to_string(),
            (_, Some(age)) => short_age(age),
            (_, None) => "unknown".to_string(),
        };
        let overdue = match (row.status, row.age_seconds) {
            (RotationStatus::Missing, _) => "missing".to_string(),
            (RotationStatus::Overdue, Some(age)) => {
                format!("yes, by {}", short_age(age - row.max_age_seconds))
            }
            (RotationStatus::Current, Some(age)) => {
                format!("no, {} left", short_age(row.max_age_seconds - age))
            }
            _ => "unknown".to_string(),
        };
        let mut age = age;
        if row.annotation_problem.is_some() {
            age.push_str(" (bad rotated-at)");
        }
        table.push([
            format!("{}/{}", row.namespace, row.secret),
            row.secret_use.to_string(),
            row.users(),
            age,
            short_age(row.max_age_seconds),
            overdue,
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| {
            table
                .iter()
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in &table {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, cell)| format!("{cell:<width$}", width = widths[i]))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    let overdue = rows.iter().filter(|r| r.overdue()).count();
    let missing = rows
        .iter()
        .filter(|r| r.status == RotationStatus::Missing)
        .count();
    out.push_str(&format!(
        "\n{} Secrets in use, {overdue} overdue for rotation, {missing} missing\n",
        rows.len()
    ));
    out
}
