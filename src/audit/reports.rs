//! Which report API the audit scan writes, and the body of a report in each version it knows.
//!
//! A cluster may serve the results of policy engines through one of three sets of CRDs:
//! - Kyverno's `wgpolicyk8s.io` CRDs: `v1alpha2` only;
//! - the upstream wg-policy `wgpolicyk8s.io` CRDs: `v1alpha1`, `v1alpha2` and `v1beta1`
//!   (preferred), with no conversion webhook, so the API server only accepts a body whose
//!   `apiVersion` is the one of the URL it is sent to;
//! - OpenReports, `openreports.io/v1alpha1` `Report` and `ClusterReport`, which Kyverno 1.15+
//!   writes instead.
//!
//! Their schemas differ little: `v1beta1` adds a report-level `source` (and `configuration`,
//! which fluxgate does not use) to `v1alpha2`'s shape, and OpenReports' `v1alpha1` is
//! `v1beta1`'s shape under another group and kind names. The old `wgpolicyk8s.io/v1alpha1`
//! calls a result's outcome `status` and its properties `data`, and has no `source`,
//! `timestamp` or `info`/`critical` severities. fluxgate writes each version with the body
//! its schema describes ([`ReportSchema::object`]); a version it does not know is never
//! written to (its schema could need fields fluxgate cannot guess).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{AuditFinding, AuditReport, AuditResult, MANAGED_BY, OMITTED_ANNOTATION, REPORT_NAME};

/// The report API the audit scan writes (`--report-api`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ReportApi {
    /// OpenReports when the cluster serves it, else wgpolicyk8s.io.
    #[default]
    Auto,
    /// PolicyReport and ClusterPolicyReport (wgpolicyk8s.io), in a version the cluster serves.
    Wgpolicyk8s,
    /// Report and ClusterReport (openreports.io).
    Openreports,
}

impl ReportApi {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportApi::Auto => "auto",
            ReportApi::Wgpolicyk8s => "wgpolicyk8s",
            ReportApi::Openreports => "openreports",
        }
    }

    /// The report families to try, in order of preference.
    pub fn families(self) -> &'static [Family] {
        match self {
            ReportApi::Auto => &[Family::OpenReports, Family::WgPolicy],
            ReportApi::Wgpolicyk8s => &[Family::WgPolicy],
            ReportApi::Openreports => &[Family::OpenReports],
        }
    }
}

/// One API group of reports, with its namespaced and cluster-scoped kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    WgPolicy,
    OpenReports,
}

impl Family {
    pub const ALL: [Family; 2] = [Family::WgPolicy, Family::OpenReports];

    pub fn group(self) -> &'static str {
        match self {
            Family::WgPolicy => "wgpolicyk8s.io",
            Family::OpenReports => "openreports.io",
        }
    }

    /// The kind of a report on a namespace's objects (`namespaced`) or on cluster-scoped ones.
    pub fn kind(self, namespaced: bool) -> &'static str {
        match (self, namespaced) {
            (Family::WgPolicy, true) => "PolicyReport",
            (Family::WgPolicy, false) => "ClusterPolicyReport",
            (Family::OpenReports, true) => "Report",
            (Family::OpenReports, false) => "ClusterReport",
        }
    }

    /// The versions fluxgate has a body for, most wanted first.
    pub fn schemas(self) -> &'static [ReportSchema] {
        match self {
            Family::WgPolicy => &[
                ReportSchema::WgPolicyV1beta1,
                ReportSchema::WgPolicyV1alpha2,
                ReportSchema::WgPolicyV1alpha1,
            ],
            Family::OpenReports => &[ReportSchema::OpenReportsV1alpha1],
        }
    }
}

/// A version of a report API that fluxgate knows the schema of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportSchema {
    /// `wgpolicyk8s.io/v1alpha1`: results with `status` and `data`.
    WgPolicyV1alpha1,
    /// `wgpolicyk8s.io/v1alpha2` (Kyverno's CRDs): results with `result`, `source`,
    /// `timestamp` and `properties`.
    WgPolicyV1alpha2,
    /// `wgpolicyk8s.io/v1beta1`: `v1alpha2`, and `source` on the report.
    WgPolicyV1beta1,
    /// `openreports.io/v1alpha1`: `v1beta1`'s shape.
    OpenReportsV1alpha1,
}

impl ReportSchema {
    pub fn family(self) -> Family {
        match self {
            ReportSchema::OpenReportsV1alpha1 => Family::OpenReports,
            _ => Family::WgPolicy,
        }
    }

    pub fn version(self) -> &'static str {
        match self {
            ReportSchema::WgPolicyV1alpha1 | ReportSchema::OpenReportsV1alpha1 => "v1alpha1",
            ReportSchema::WgPolicyV1alpha2 => "v1alpha2",
            ReportSchema::WgPolicyV1beta1 => "v1beta1",
        }
    }

    pub fn api_version(self) -> String {
        format!("{}/{}", self.family().group(), self.version())
    }

    /// The schema of `group`/`version`, if fluxgate knows it.
    pub fn of(group: &str, version: &str) -> Option<ReportSchema> {
        Family::ALL
            .iter()
            .filter(|f| f.group() == group)
            .flat_map(|f| f.schemas())
            .copied()
            .find(|s| s.version() == version)
    }

    /// Of the versions a cluster serves a report kind in, the one to write: the group's
    /// preferred version when fluxgate has a body for it, else the most wanted version it
    /// has one for. `served` lists the versions that serve the kind.
    pub fn choose<'a>(
        family: Family,
        preferred: Option<&str>,
        served: impl IntoIterator<Item = &'a str>,
    ) -> Option<ReportSchema> {
        let served: Vec<&str> = served.into_iter().collect();
        let known = |version: &str| {
            family
                .schemas()
                .iter()
                .copied()
                .find(|s| s.version() == version)
        };
        if let Some(schema) = preferred.filter(|p| served.contains(p)).and_then(known) {
            return Some(schema);
        }
        family
            .schemas()
            .iter()
            .copied()
            .find(|s| served.contains(&s.version()))
    }

    /// The report object of `scoped` in this schema.
    pub fn object(self, scoped: &ScopedReport<'_>, now_unix: i64) -> Value {
        let family = self.family();
        let mut metadata = json!({
            "name": REPORT_NAME,
            "labels": { MANAGED_BY.0: MANAGED_BY.1 },
            "annotations": { OMITTED_ANNOTATION: scoped.omitted.to_string() },
        });
        if let Some(ns) = &scoped.namespace {
            metadata["namespace"] = json!(ns);
        }
        let results: Vec<Value> = scoped
            .results
            .iter()
            .map(|f| self.result(f, now_unix))
            .collect();
        let mut object = json!({
            "apiVersion": self.api_version(),
            "kind": family.kind(scoped.namespace.is_some()),
            "metadata": metadata,
            "summary": scoped.summary,
            "results": results,
        });
        if matches!(
            self,
            ReportSchema::WgPolicyV1beta1 | ReportSchema::OpenReportsV1alpha1
        ) {
            object["source"] = json!("fluxgate");
        }
        object
    }

    fn result(self, f: &AuditFinding, now_unix: i64) -> Value {
        let mut resource = json!({
            "apiVersion": f.api_version,
            "kind": f.kind,
            "name": f.name,
        });
        if let Some(ns) = &f.namespace {
            resource["namespace"] = json!(ns);
        }
        if let Some(uid) = &f.uid {
            resource["uid"] = json!(uid);
        }
        let severity = if f.result == AuditResult::Fail {
            "high"
        } else {
            "medium"
        };
        let properties = json!({ "mode": f.mode.as_str() });
        match self {
            ReportSchema::WgPolicyV1alpha1 => json!({
                "policy": f.policy.as_str(),
                "status": f.result.as_str(),
                "severity": severity,
                "scored": true,
                "message": f.message,
                "resources": [resource],
                "data": properties,
            }),
            _ => json!({
                "source": "fluxgate",
                "policy": f.policy.as_str(),
                "result": f.result.as_str(),
                "severity": severity,
                "scored": true,
                "message": f.message,
                "resources": [resource],
                "properties": properties,
                "timestamp": { "seconds": now_unix, "nanos": 0 },
            }),
        }
    }
}

/// What one report says, whatever its API: the findings of one namespace (or of the
/// cluster-scoped objects when `namespace` is `None`).
#[derive(Debug, Clone)]
pub struct ScopedReport<'a> {
    pub namespace: Option<String>,
    /// Every finding counted, `pass`, `fail`, `warn`, `error` and `skip`.
    pub summary: BTreeMap<&'static str, u64>,
    /// At most the configured number of results, the most severe first.
    pub results: Vec<&'a AuditFinding>,
    /// How many results were left out.
    pub omitted: usize,
}

/// One report per namespace with findings (plus `previously_reported` namespaces, which get
/// an empty report so that fixed objects disappear from them), and one for cluster-scoped
/// objects. Each holds at most `max_results` results, the most severe first; the summary
/// counts all of them.
pub fn scoped_reports<'a>(
    report: &'a AuditReport,
    previously_reported: &[String],
    max_results: usize,
) -> Vec<ScopedReport<'a>> {
    let mut by_namespace: BTreeMap<Option<String>, Vec<&AuditFinding>> = BTreeMap::new();
    for ns in previously_reported {
        by_namespace.entry(Some(ns.clone())).or_default();
    }
    for finding in &report.findings {
        by_namespace
            .entry(finding.namespace.clone())
            .or_default()
            .push(finding);
    }
    by_namespace
        .into_iter()
        .map(|(namespace, mut findings)| {
            findings.sort_by_key(|f| (f.result, f.policy));
            let mut summary = BTreeMap::from([
                ("pass", 0u64),
                ("fail", 0),
                ("warn", 0),
                ("error", 0),
                ("skip", 0),
            ]);
            for f in &findings {
                *summary.entry(f.result.as_str()).or_insert(0) += 1;
            }
            let omitted = findings.len().saturating_sub(max_results);
            findings.truncate(max_results);
            ScopedReport {
                namespace,
                summary,
                results: findings,
                omitted,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_preferred_version_is_written_when_fluxgate_knows_it() {
        let served = ["v1alpha1", "v1alpha2", "v1beta1"];
        assert_eq!(
            ReportSchema::choose(Family::WgPolicy, Some("v1beta1"), served),
            Some(ReportSchema::WgPolicyV1beta1)
        );
        assert_eq!(
            ReportSchema::choose(Family::WgPolicy, Some("v1alpha2"), ["v1alpha2"]),
            Some(ReportSchema::WgPolicyV1alpha2)
        );
        assert_eq!(
            ReportSchema::choose(Family::OpenReports, Some("v1alpha1"), ["v1alpha1"]),
            Some(ReportSchema::OpenReportsV1alpha1)
        );
    }

    #[test]
    fn an_unknown_preferred_version_falls_back_to_a_known_served_one() {
        // A future v1 that fluxgate has no body for: write v1beta1, which is still served.
        assert_eq!(
            ReportSchema::choose(Family::WgPolicy, Some("v1"), ["v1", "v1beta1", "v1alpha2"]),
            Some(ReportSchema::WgPolicyV1beta1)
        );
        // The group prefers a version this kind is not served in (another CRD of the group).
        assert_eq!(
            ReportSchema::choose(Family::WgPolicy, Some("v1beta1"), ["v1alpha2"]),
            Some(ReportSchema::WgPolicyV1alpha2)
        );
        assert_eq!(
            ReportSchema::choose(Family::WgPolicy, Some("v2"), ["v2"]),
            None
        );
        assert_eq!(ReportSchema::choose(Family::OpenReports, None, []), None);
    }

    #[test]
    fn auto_prefers_openreports() {
        assert_eq!(
            ReportApi::Auto.families(),
            &[Family::OpenReports, Family::WgPolicy]
        );
        assert_eq!(ReportApi::Wgpolicyk8s.families(), &[Family::WgPolicy]);
        assert_eq!(ReportApi::Openreports.families(), &[Family::OpenReports]);
    }

    #[test]
    fn schemas_are_found_by_group_and_version() {
        assert_eq!(
            ReportSchema::of("wgpolicyk8s.io", "v1alpha2"),
            Some(ReportSchema::WgPolicyV1alpha2)
        );
        assert_eq!(
            ReportSchema::of("openreports.io", "v1alpha1"),
            Some(ReportSchema::OpenReportsV1alpha1)
        );
        assert_eq!(ReportSchema::of("openreports.io", "v1beta1"), None);
        assert_eq!(ReportSchema::of("example.com", "v1alpha1"), None);
    }
}
