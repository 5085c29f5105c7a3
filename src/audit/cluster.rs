//! The audit scan against a live cluster: list what the policies cover, judge it, and write
//! PolicyReports, Events and metrics.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use super::{AuditFinding, AuditReport, AuditResult, MANAGED_BY, Scan, policy_reports, unix_now};
use crate::cluster::ClusterView;
use crate::engine::Engine;
use crate::finding::PolicyId;
use crate::metrics::Metrics;

/// Bounds that keep reports and Events small in big clusters.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    pub max_results_per_report: usize,
    pub max_events_per_scan: usize,
    /// The same finding on the same object raises at most one Event per this interval.
    pub event_interval: Duration,
    pub write_reports: bool,
    pub publish_events: bool,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            max_results_per_report: 200,
            max_events_per_scan: 50,
            event_interval: Duration::from_secs(3600),
            write_reports: true,
            publish_events: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("writing PolicyReport {name}: {source}")]
    Report { name: String, source: kube::Error },
}

/// How many objects one list request asks for: the scan holds one page at a time.
pub const LIST_PAGE_SIZE: u32 = 500;

/// Lists every object of the kinds the engine's policies judge, in the version the cluster
/// prefers, page by page (the API server's `limit` and `continue`), and judges each page into
/// `scan` as it arrives: the scan never holds more than one page of objects, whatever the
/// size of the cluster. Kinds the cluster does not serve are skipped, and so are kinds only
/// `secret-rotation` judges: the scan reports Secrets from the cluster view, not from the
/// objects that reference them. A kind that cannot be listed (forbidden to fluxgate's
/// account, a transient error) is reported as unreadable and the scan goes on with the rest:
/// one missing permission must not blind the whole audit.
pub async fn scan_covered_objects(client: &Client, engine: &Engine, scan: &mut Scan<'_>) {
    scan_covered_objects_in_pages(client, engine, scan, LIST_PAGE_SIZE).await;
}

/// [`scan_covered_objects`] with `page_size` objects per list request.
pub async fn scan_covered_objects_in_pages(
    client: &Client,
    engine: &Engine,
    scan: &mut Scan<'_>,
    page_size: u32,
) {
    let kinds: BTreeSet<(&str, &str)> = engine
        .kinds()
        .into_iter()
        .filter(|(policy, _)| *policy != PolicyId::SecretRotation)
        .map(|(_, rule)| (rule.group, rule.kind))
        .collect();
    for (group, kind) in kinds {
        let Some(resource) = served_resource(client, group, kind).await else {
            tracing::debug!(group, kind, "not served by this cluster; nothing to audit");
            continue;
        };
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        let mut params = ListParams::default().limit(page_size.max(1));
        loop {
            let page = match api.list(&params).await {
                Ok(page) => page,
                Err(e) => {
                    // A page that fails after others were judged (an expired `continue`
                    // token, a dropped connection) leaves the kind half-judged: said so.
                    tracing::warn!(group, kind, error = %e, "cannot list; this kind is left out of the audit");
                    scan.unreadable(format!("cannot list {kind} ({group}): {e}"));
                    break;
                }
            };
            let next = page.metadata.continue_.filter(|c| !c.is_empty());
            for item in page.items {
                let Ok(mut value) = serde_json::to_value(&item) else {
                    continue;
                };
                drop(item);
                if let Some(map) = value.as_object_mut() {
                    map.insert("apiVersion".into(), resource.api_version.clone().into());
                    map.insert("kind".into(), resource.kind.clone().into());
                }
                scan.judge(&value);
            }
            match next {
                Some(token) => params = params.continue_token(&token),
                None => break,
            }
        }
    }
}

async fn served_resource(client: &Client, group: &str, kind: &str) -> Option<ApiResource> {
    if group.is_empty() {
        let core = kube::discovery::oneshot::pinned_group(
            client,
            &kube::discovery::ApiGroup::CORE_GROUP.parse().ok()?,
        )
        .await
        .ok()?;
        return core.recommended_kind(kind).map(|(r, _)| r);
    }
    let found = kube::discovery::oneshot::group(client, group).await.ok()?;
    found.recommended_kind(kind).map(|(resource, _)| resource)
}

/// Runs scans and remembers which Events it already raised.
pub struct ClusterAuditor {
    client: Client,
    options: AuditOptions,
    recorder: Recorder,
    last_event: Mutex<HashMap<(String, String), Instant>>,
}

impl ClusterAuditor {
    pub fn new(client: Client, options: AuditOptions) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "fluxgate".into(),
                instance: std::env::var("POD_NAME").ok(),
            },
        );
        ClusterAuditor {
            client,
            options,
            recorder,
            last_event: Mutex::new(HashMap::new()),
        }
    }

    /// One scan: list, judge, record metrics, write reports and Events.
    pub async fn run_once(
        &self,
        engine: &Engine,
        view: &dyn ClusterView,
        metrics: &Metrics,
    ) -> Result<AuditReport, AuditError> {
        let mut scan = Scan::new(engine, view);
        scan_covered_objects(&self.client, engine, &mut scan).await;
        let report = scan.finish();
        record_metrics(&report, metrics);
        if self.options.write_reports {
            self.write_reports(&report).await?;
        }
        if self.options.publish_events {
            self.publish_events(&report).await;
        }
        Ok(report)
    }

    async fn write_reports(&self, report: &AuditReport) -> Result<(), AuditError> {
        let Some(namespaced) =
            served_resource(&self.client, "wgpolicyk8s.io", "PolicyReport").await
        else {
            tracing::info!(
                "the PolicyReport CRD (wgpolicyk8s.io) is not installed; audit results go to metrics, logs and Events only"
            );
            return Ok(());
        };
        let cluster = served_resource(&self.client, "wgpolicyk8s.io", "ClusterPolicyReport").await;
        let selector = format!("{}={}", MANAGED_BY.0, MANAGED_BY.1);
        let previous: Vec<String> =
            Api::<DynamicObject>::all_with(self.client.clone(), &namespaced)
                .list_metadata(&ListParams::default().labels(&selector))
                .await
                .map(|list| {
                    list.items
                        .into_iter()
                        .filter_map(|o| o.metadata.namespace)
                        .collect()
                })
                .unwrap_or_default();
        let now = unix_now();
        let params = PatchParams::apply("fluxgate").force();
        for object in policy_reports(report, &previous, self.options.max_results_per_report, now) {
            let namespace = object["metadata"]["namespace"].as_str().map(str::to_string);
            let (api, name) = match (&namespace, &cluster) {
                (Some(ns), _) => (
                    Api::<DynamicObject>::namespaced_with(self.client.clone(), ns, &namespaced),
                    format!("{ns}/{}", super::REPORT_NAME),
                ),
                (None, Some(cluster)) => (
                    Api::<DynamicObject>::all_with(self.client.clone(), cluster),
                    super::REPORT_NAME.to_string(),
                ),
                (None, None) => continue,
            };
            // Server-side apply updates the report in place; it is never deleted and recreated.
            api.patch(super::REPORT_NAME, &params, &Patch::Apply(&object))
                .await
                .map_err(|source| AuditError::Report { name, source })?;
        }
        Ok(())
    }

    async fn publish_events(&self, report: &AuditReport) {
        let mut published = 0;
        for finding in report
            .findings
            .iter()
            .filter(|f| f.result != AuditResult::Skip)
        {
            if published >= self.options.max_events_per_scan {
                break;
            }
            let key = (
                finding.uid.clone().unwrap_or_else(|| {
                    format!(
                        "{}/{}/{}",
                        finding.kind,
                        finding.namespace.as_deref().unwrap_or(""),
                        finding.name
                    )
                }),
                finding.policy.as_str().to_string(),
            );
            {
                let mut last = self.last_event.lock().unwrap_or_else(|p| p.into_inner());
                if last
                    .get(&key)
                    .is_some_and(|t| t.elapsed() < self.options.event_interval)
                {
                    continue;
                }
                last.insert(key, Instant::now());
            }
            if let Err(e) = self
                .recorder
                .publish(&event_for(finding), &reference(finding))
                .await
            {
                tracing::warn!(error = %e, "could not publish an audit Event");
            }
            published += 1;
        }
    }
}

fn event_for(finding: &AuditFinding) -> Event {
    let mut note = finding.message.clone();
    // Event notes are limited to 1 KiB by the API server.
    if note.len() > 1000 {
        let mut cut = 1000;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
    }
    Event {
        type_: EventType::Warning,
        reason: "PolicyViolation".into(),
        note: Some(format!("[{}] {note}", finding.policy)),
        action: "Audit".into(),
        secondary: None,
    }
}

fn reference(finding: &AuditFinding) -> ObjectReference {
    ObjectReference {
        api_version: Some(finding.api_version.clone()),
        kind: Some(finding.kind.clone()),
        name: Some(finding.name.clone()),
        namespace: finding.namespace.clone(),
        uid: finding.uid.clone(),
        ..ObjectReference::default()
    }
}

/// Sets `fluxgate_audit_violations`, `fluxgate_secret_age_seconds` and
/// `fluxgate_secret_rotation_overdue` to this scan's values (old series are cleared, so a
/// rotated, deleted or no longer used Secret drops out) and stamps
/// `fluxgate_audit_last_run_timestamp_seconds`. Secrets whose age is unknown (missing, or
/// without any time in their metadata) get no series: the findings report them.
pub fn record_metrics(report: &AuditReport, metrics: &Metrics) {
    metrics.audit_violations.reset();
    for ((policy, namespace, kind), count) in report.violation_counts() {
        metrics
            .audit_violations
            .with_label_values(&[policy.as_str(), &namespace, &kind])
            .set(count as i64);
    }
    metrics.secret_age.reset();
    metrics.secret_rotation_overdue.reset();
    for row in &report.rotation {
        let Some(age) = row.age_seconds else {
            continue;
        };
        let labels = [
            row.namespace.as_str(),
            row.secret.as_str(),
            row.secret_use.as_str(),
        ];
        metrics.secret_age.with_label_values(&labels).set(age);
        metrics
            .secret_rotation_overdue
            .with_label_values(&labels)
            .set(i64::from(row.overdue()));
    }
    metrics.audit_last_run.set(unix_now() as f64);
}
