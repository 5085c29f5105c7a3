//! The audit scan against a live cluster: list what the policies cover, judge it, and write
//! PolicyReports, Events and metrics.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::discovery::ApiGroup;
use kube::discovery::Discovery;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use serde::Serialize;

use super::reports::{Family, ReportApi, ReportSchema, scoped_reports};
use super::{AuditFinding, AuditReport, AuditResult, MANAGED_BY, Scan, unix_now};
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
    /// Which report API to write (`--report-api`).
    pub report_api: ReportApi,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            max_results_per_report: 200,
            max_events_per_scan: 50,
            event_interval: Duration::from_secs(3600),
            write_reports: true,
            publish_events: true,
            report_api: ReportApi::Auto,
        }
    }
}

/// What one scan did besides judging: the reports and Events it wrote, and what failed.
/// A failure to write one report or Event never stops the others.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Written {
    /// The report kinds written, e.g. `openreports.io/v1alpha1 Report`; empty when no
    /// report API fluxgate can write is served (or reports were not asked for).
    pub report_kinds: Vec<String>,
    /// Reports written, as `Kind namespace/name` (or `Kind name` for cluster-scoped ones).
    pub reports: Vec<String>,
    /// Why a report could not be written, one line each.
    pub report_errors: Vec<String>,
    /// fluxgate's reports removed from the report API it no longer writes.
    pub retired: Vec<String>,
    /// Events published.
    pub events: usize,
    /// Why an Event could not be published, one line each.
    pub event_errors: Vec<String>,
}

/// One scan: what it found and what it wrote.
#[derive(Debug, Clone)]
pub struct AuditRun {
    pub report: AuditReport,
    pub written: Written,
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
    // `oneshot::group` asks the core group at /api and /api/v1, the others at /apis/...:
    // a core kind must never be looked up under /api/ with an empty version, which answers
    // an APIVersions where kube expects an APIResourceList.
    let found = kube::discovery::oneshot::group(client, group).await.ok()?;
    kind_resource(&found, kind)
}

/// The version of `kind` to read: the group's preferred version when it serves the kind,
/// else the most stable version that does. (A group's preferred version is one for the whole
/// group: before Flux 2.6, OCIRepository was served in v1beta2 only while the group
/// preferred v1 for GitRepository and the others.)
pub fn kind_resource(group: &ApiGroup, kind: &str) -> Option<ApiResource> {
    let serves = |version: &str| {
        group
            .versioned_resources(version)
            .into_iter()
            .map(|(resource, _)| resource)
            .find(|resource| resource.kind == kind)
    };
    group
        .preferred_version()
        .and_then(serves)
        .or_else(|| group.versions().find_map(serves))
}

/// Where reports go: the kind (and the version, with its body) for each scope.
#[derive(Debug, Clone)]
pub struct ReportTarget {
    pub family: Family,
    /// For the objects of a namespace.
    pub namespaced: Option<(ApiResource, ReportSchema)>,
    /// For cluster-scoped objects.
    pub cluster: Option<(ApiResource, ReportSchema)>,
    /// The report kinds of the other API that the cluster serves too: fluxgate's reports
    /// there (from another `--report-api`, or from before OpenReports was installed) would
    /// go stale, so they are removed.
    pub retired: Vec<ApiResource>,
}

impl ReportTarget {
    fn for_scope(&self, namespaced: bool) -> Option<&(ApiResource, ReportSchema)> {
        if namespaced {
            self.namespaced.as_ref()
        } else {
            self.cluster.as_ref()
        }
    }

    /// `group/version Kind` of each kind written.
    pub fn kinds(&self) -> Vec<String> {
        [&self.namespaced, &self.cluster]
            .into_iter()
            .flatten()
            .map(|(resource, _)| format!("{} {}", resource.api_version, resource.kind))
            .collect()
    }
}

/// The report kinds to write, by `api`: the first family of [`ReportApi::families`] the
/// cluster serves a kind of in a version fluxgate has a body for. `None` when there is none.
pub async fn report_target(
    client: &Client,
    api: ReportApi,
) -> Result<Option<ReportTarget>, kube::Error> {
    let groups: Vec<&str> = Family::ALL.iter().map(|f| f.group()).collect();
    let discovery = Discovery::new(client.clone()).filter(&groups).run().await?;
    let pick = |family: Family, namespaced: bool| {
        let group = discovery.get(family.group())?;
        let kind = family.kind(namespaced);
        let serves = |version: &str| {
            group
                .versioned_resources(version)
                .into_iter()
                .find(|(resource, _)| resource.kind == kind)
        };
        let served: Vec<&str> = group.versions().filter(|v| serves(v).is_some()).collect();
        let schema = ReportSchema::choose(family, group.preferred_version(), served)?;
        serves(schema.version()).map(|(resource, _)| (resource, schema))
    };
    let Some((family, namespaced, cluster)) = api
        .families()
        .iter()
        .map(|&family| (family, pick(family, true), pick(family, false)))
        .find(|(_, namespaced, cluster)| namespaced.is_some() || cluster.is_some())
    else {
        return Ok(None);
    };
    let retired = Family::ALL
        .iter()
        .filter(|&&other| other != family)
        .filter_map(|other| discovery.get(other.group()).map(|group| (other, group)))
        .flat_map(|(other, group)| {
            [true, false]
                .into_iter()
                .filter_map(move |namespaced| kind_resource(group, other.kind(namespaced)))
        })
        .collect();
    Ok(Some(ReportTarget {
        family,
        namespaced,
        cluster,
        retired,
    }))
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

    /// One scan: list, judge, record metrics, write reports and Events. Failures to write
    /// are in [`AuditRun::written`] (and logged, and counted); they stop nothing else.
    pub async fn run_once(
        &self,
        engine: &Engine,
        view: &dyn ClusterView,
        metrics: &Metrics,
    ) -> AuditRun {
        let mut scan = Scan::new(engine, view);
        scan_covered_objects(&self.client, engine, &mut scan).await;
        let report = scan.finish();
        record_metrics(&report, metrics);
        let mut written = Written::default();
        if self.options.write_reports {
            self.write_reports(&report, metrics, &mut written).await;
        }
        if self.options.publish_events {
            self.publish_events(&report, &mut written).await;
        }
        AuditRun { report, written }
    }

    async fn write_reports(&self, report: &AuditReport, metrics: &Metrics, written: &mut Written) {
        let api = self.options.report_api;
        let target = match report_target(&self.client, api).await {
            Ok(Some(target)) => target,
            Ok(None) => {
                let why = match api {
                    ReportApi::Auto => "neither the OpenReports (openreports.io) nor the PolicyReport (wgpolicyk8s.io) CRDs are installed in a version fluxgate can write; audit results go to metrics, logs and Events only".to_string(),
                    _ => format!("--report-api {}: the cluster serves no {} report kind in a version fluxgate can write; no report is written", api.as_str(), api.families()[0].group()),
                };
                tracing::info!("{why}");
                if api != ReportApi::Auto {
                    written.report_errors.push(why);
                }
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot discover the report API; no report is written in this scan");
                written
                    .report_errors
                    .push(format!("discovering the report API: {e}"));
                return;
            }
        };
        written.report_kinds = target.kinds();
        let selector = format!("{}={}", MANAGED_BY.0, MANAGED_BY.1);
        let previous: Vec<String> = match &target.namespaced {
            Some((resource, _)) => Api::<DynamicObject>::all_with(self.client.clone(), resource)
                .list_metadata(&ListParams::default().labels(&selector))
                .await
                .map(|list| {
                    list.items
                        .into_iter()
                        .filter_map(|o| o.metadata.namespace)
                        .collect()
                })
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "cannot list fluxgate's reports; namespaces whose findings are all fixed keep their old report until the next scan that can");
                    Vec::new()
                }),
            None => Vec::new(),
        };
        let now = unix_now();
        let params = PatchParams::apply("fluxgate").force();
        for scoped in scoped_reports(report, &previous, self.options.max_results_per_report) {
            let Some((resource, schema)) = target.for_scope(scoped.namespace.is_some()) else {
                tracing::debug!(
                    "the cluster serves no cluster-scoped report kind; findings on cluster-scoped objects go to metrics, logs and Events only"
                );
                continue;
            };
            let object = schema.object(&scoped, now);
            let (api, name) = match &scoped.namespace {
                Some(ns) => (
                    Api::<DynamicObject>::namespaced_with(self.client.clone(), ns, resource),
                    format!("{} {ns}/{}", resource.kind, super::REPORT_NAME),
                ),
                None => (
                    Api::<DynamicObject>::all_with(self.client.clone(), resource),
                    format!("{} {}", resource.kind, super::REPORT_NAME),
                ),
            };
            // Server-side apply updates the report in place; it is never deleted and recreated.
            match api
                .patch(super::REPORT_NAME, &params, &Patch::Apply(&object))
                .await
            {
                Ok(_) => {
                    metrics
                        .audit_report_writes
                        .with_label_values(&["written"])
                        .inc();
                    written.reports.push(name);
                }
                Err(e) => {
                    metrics
                        .audit_report_writes
                        .with_label_values(&["failed"])
                        .inc();
                    tracing::warn!(report = %name, api_version = %resource.api_version, error = %e, "cannot write an audit report; the others are still written");
                    written
                        .report_errors
                        .push(format!("{name} ({}): {e}", resource.api_version));
                }
            }
        }
        for resource in &target.retired {
            self.retire(resource, &selector, &target, written).await;
        }
    }

    /// Deletes fluxgate's reports of a kind it no longer writes. Failing to is only logged:
    /// the reports it does write are up to date.
    async fn retire(
        &self,
        resource: &ApiResource,
        selector: &str,
        target: &ReportTarget,
        written: &mut Written,
    ) {
        let all = Api::<DynamicObject>::all_with(self.client.clone(), resource);
        let old = match all
            .list_metadata(&ListParams::default().labels(selector))
            .await
        {
            Ok(list) => list.items,
            Err(e) => {
                tracing::warn!(kind = %resource.kind, error = %e, "cannot list fluxgate's reports of a report API it no longer writes");
                return;
            }
        };
        for object in old {
            let Some(name) = object.metadata.name else {
                continue;
            };
            let namespace = object.metadata.namespace;
            let api = match &namespace {
                Some(ns) => {
                    Api::<DynamicObject>::namespaced_with(self.client.clone(), ns, resource)
                }
                None => all.clone(),
            };
            let described = match &namespace {
                Some(ns) => format!("{} {ns}/{name}", resource.kind),
                None => format!("{} {name}", resource.kind),
            };
            match api.delete(&name, &Default::default()).await {
                Ok(_) => {
                    tracing::info!(report = %described, now = ?target.kinds(), "removed a report of the report API fluxgate no longer writes");
                    written.retired.push(described);
                }
                Err(e) => {
                    tracing::warn!(report = %described, error = %e, "cannot remove a report of the report API fluxgate no longer writes")
                }
            }
        }
    }

    async fn publish_events(&self, report: &AuditReport, written: &mut Written) {
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
            match self
                .recorder
                .publish(&event_for(finding), &reference(finding))
                .await
            {
                Ok(()) => written.events += 1,
                Err(e) => {
                    tracing::warn!(error = %e, "could not publish an audit Event");
                    written.event_errors.push(format!(
                        "Event on {}: {e}",
                        crate::finding::object_ref(
                            &finding.kind,
                            finding.namespace.as_deref(),
                            &finding.name
                        )
                    ));
                }
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
