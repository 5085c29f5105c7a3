//! The audit scan against a real kube-apiserver (envtest, see tests/support/envtest): reports
//! and Events for objects that predate the webhook, with each set of report CRDs a cluster
//! may have (Kyverno's wgpolicyk8s.io v1alpha2, the upstream wg-policy v1alpha1/v1alpha2/
//! v1beta1, OpenReports); `fluxgate audit`; a report that cannot be written; two replicas
//! that elect one writer through a Lease, and fail over.

mod common;
#[path = "support/envtest/mod.rs"]
mod envtest;

use std::process::Output;
use std::time::{Duration, Instant};

use envtest::{Env, Fluxgate, FluxgateOptions};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use serde_json::Value;

const KYVERNO: &[&str] = &[
    "corpus/crds/policy-reports/kyverno-wgpolicyk8s.io_policyreports.yaml",
    "corpus/crds/policy-reports/kyverno-wgpolicyk8s.io_clusterpolicyreports.yaml",
];
const WG_POLICY: &[&str] = &[
    "corpus/crds/policy-reports/wg-policy-prototypes-wgpolicyk8s.io_policyreports.yaml",
    "corpus/crds/policy-reports/wg-policy-prototypes-wgpolicyk8s.io_clusterpolicyreports.yaml",
];
const OPENREPORTS: &[&str] = &[
    "corpus/crds/policy-reports/openreports-openreports.io_reports.yaml",
    "corpus/crds/policy-reports/openreports-openreports.io_clusterreports.yaml",
];

/// An OCIRepository without signature verification: `signed-oci-sources` fails it.
fn unsigned_source(namespace: &str, name: &str) -> String {
    format!(
        "apiVersion: source.toolkit.fluxcd.io/v1
kind: OCIRepository
metadata: {{name: {name}, namespace: {namespace}}}
spec: {{interval: 10m, url: 'oci://ghcr.io/acme/{name}', ref: {{tag: '1.0.0'}}}}
"
    )
}

/// CI jobs as cluster admins: `ci-impersonation` fails it (a cluster-scoped object).
fn ci_jobs_as_admins(name: &str) -> String {
    format!(
        "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: {name}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}}
subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: Group, name: 'gitlab:ci_job'}}]
"
    )
}

fn resource(group: &str, version: &str, kind: &str) -> ApiResource {
    let plural = format!("{}s", kind.to_ascii_lowercase());
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), &plural)
}

/// fluxgate's report (`fluxgate`) of this kind in `namespace` (cluster-scoped when `None`),
/// read at `version`, once it exists.
async fn wait_report(
    env: &Env,
    (group, version, kind): (&str, &str, &str),
    namespace: Option<&str>,
    within: Duration,
) -> Value {
    let resource = resource(group, version, kind);
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(env.client(), ns, &resource),
        None => Api::all_with(env.client(), &resource),
    };
    let started = Instant::now();
    loop {
        match api.get_opt("fluxgate").await {
            Ok(Some(report)) => return serde_json::to_value(report).expect("json"),
            Ok(None) => {}
            Err(e) => eprintln!("reading {kind} {namespace:?}/fluxgate: {e}"),
        }
        assert!(
            started.elapsed() < within,
            "no {group}/{version} {kind} fluxgate in {namespace:?} after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The apiVersion fluxgate wrote the report in (its managedFields entry).
fn written_as(report: &Value) -> String {
    report["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["manager"] == "fluxgate")
        .and_then(|m| m["apiVersion"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// The results of a report naming this object, with the policy each one is about.
fn results_on<'a>(report: &'a Value, kind: &str, name: &str) -> Vec<&'a Value> {
    report["results"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| {
            r["resources"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|o| o["kind"] == kind && o["name"] == name)
        })
        .collect()
}

/// The Events in `namespace` about the object `name`.
async fn events_about(env: &Env, namespace: &str, name: &str) -> Vec<Value> {
    let api: Api<DynamicObject> = Api::namespaced_with(
        env.client(),
        namespace,
        &resource("events.k8s.io", "v1", "Event"),
    );
    api.list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .map(|e| serde_json::to_value(e).expect("json"))
        .filter(|e| e["regarding"]["name"] == name)
        .collect()
}

async fn wait_events_about(env: &Env, namespace: &str, name: &str, within: Duration) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let events = events_about(env, namespace, name).await;
        if !events.is_empty() {
            return events;
        }
        assert!(
            started.elapsed() < within,
            "no Event about {namespace}/{name} after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The value of the metric line with exactly these labels, 0 when absent.
fn metric(metrics: &str, name_and_labels: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0.0)
}

/// `fluxgate audit --kubeconfig <env's> ARGS`.
async fn fluxgate_audit(env: &Env, args: &[&str]) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_fluxgate"));
    command
        .arg("audit")
        .arg("--kubeconfig")
        .arg(env.kubeconfig())
        .args(args)
        .env_remove("KUBERNETES_SERVICE_HOST");
    tokio::task::spawn_blocking(move || command.output().expect("fluxgate audit runs"))
        .await
        .expect("the fluxgate audit task")
}

/// With each set of report CRDs: objects made before fluxgate ran get a report in the
/// namespace (and the cluster report for cluster-scoped ones), in the version fluxgate
/// wrote, and an Event each, from the periodic scan of `fluxgate serve`.
async fn the_scan_reports_what_predates_the_webhook(
    env: &Env,
    crds: &[&str],
    args: &[&str],
    (group, version, namespaced_kind, cluster_kind): (&str, &str, &str, &str),
) {
    env.install_crds(crds).await;
    let ns = env.namespace("predates").await;
    env.kubectl(&["apply", "-f", "-"], &unsigned_source(&ns, "app"))
        .await
        .ok();
    let binding = format!("ci-admins-{ns}");
    env.kubectl(&["apply", "-f", "-"], &ci_jobs_as_admins(&binding))
        .await
        .ok();

    let mut all_args = vec!["--audit-interval", "1"];
    all_args.extend_from_slice(args);
    let fluxgate = env
        .fluxgate(FluxgateOptions {
            webhooks: false,
            ..FluxgateOptions::with_args(&all_args)
        })
        .await;

    let within = Duration::from_secs(30);
    let report = wait_report(env, (group, version, namespaced_kind), Some(&ns), within).await;
    assert_eq!(
        written_as(&report),
        format!("{group}/{version}"),
        "{report:#}"
    );
    assert_eq!(
        report["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "fluxgate"
    );
    let on_app = results_on(&report, "OCIRepository", "app");
    assert!(
        on_app.iter().any(|r| r["policy"] == "signed-oci-sources"),
        "{report:#}"
    );
    // The field the version's schema names the outcome with.
    let outcome = if version == "v1alpha1" && group == "wgpolicyk8s.io" {
        "status"
    } else {
        "result"
    };
    assert!(on_app.iter().all(|r| r[outcome] == "fail"), "{report:#}");
    assert!(report["summary"]["fail"].as_u64() >= Some(1), "{report:#}");
    if matches!(version, "v1beta1") || group == "openreports.io" {
        assert_eq!(report["source"], "fluxgate", "{report:#}");
    }

    let cluster = wait_report(env, (group, version, cluster_kind), None, within).await;
    assert!(
        results_on(&cluster, "ClusterRoleBinding", &binding)
            .iter()
            .any(|r| r["policy"] == "ci-impersonation"),
        "{cluster:#}"
    );

    let events = wait_events_about(env, &ns, "app", within).await;
    assert!(
        events.iter().any(|e| e["reason"] == "PolicyViolation"
            && e["reportingController"] == "fluxgate"
            && e["note"]
                .as_str()
                .is_some_and(|n| n.contains("signed-oci-sources"))),
        "{events:#?}"
    );
    // Discovery of the core group (Pods, ReplicationControllers) asks /api/v1: no kube
    // warning about an APIVersions answer where an APIResourceList was expected.
    let log = fluxgate.log();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("\"level\":\"WARN\"") && l.contains("\"target\":\"kube"))
        .collect();
    assert!(warnings.is_empty(), "{warnings:#?}");
    let metrics = fluxgate.metrics().await;
    assert!(
        metric(
            &metrics,
            "fluxgate_audit_report_writes_total{result=\"written\"}"
        ) >= 2.0
            && metric(
                &metrics,
                "fluxgate_audit_report_writes_total{result=\"failed\"}"
            ) == 0.0,
        "{metrics}"
    );
    assert!(
        metric(
            &metrics,
            &format!(
                "fluxgate_audit_violations{{kind=\"OCIRepository\",namespace=\"{ns}\",policy=\"signed-oci-sources\"}}"
            )
        ) == 1.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn kyverno_policy_reports_are_written_in_v1alpha2() {
    let Some(env) = envtest::cluster().await else {
        return;
    };
    the_scan_reports_what_predates_the_webhook(
        &env,
        KYVERNO,
        &[],
        (
            "wgpolicyk8s.io",
            "v1alpha2",
            "PolicyReport",
            "ClusterPolicyReport",
        ),
    )
    .await;
}

/// The upstream CRDs serve three versions and prefer v1beta1, with no conversion: the body
/// must be v1beta1's (the bug this replaced sent a v1alpha2 body to the v1beta1 URL, and the
/// API server refused every report).
#[tokio::test]
async fn upstream_policy_reports_are_written_in_the_preferred_v1beta1() {
    let Some(env) = envtest::cluster().await else {
        return;
    };
    the_scan_reports_what_predates_the_webhook(
        &env,
        WG_POLICY,
        &[],
        (
            "wgpolicyk8s.io",
            "v1beta1",
            "PolicyReport",
            "ClusterPolicyReport",
        ),
    )
    .await;
}

#[tokio::test]
async fn openreports_are_written_when_served() {
    let Some(env) = envtest::cluster().await else {
        return;
    };
    the_scan_reports_what_predates_the_webhook(
        &env,
        OPENREPORTS,
        &[],
        ("openreports.io", "v1alpha1", "Report", "ClusterReport"),
    )
    .await;
}

/// auto prefers OpenReports when a cluster has both (Kyverno 1.15+ with the old CRDs still
/// installed); --report-api wgpolicyk8s keeps PolicyReports.
#[tokio::test]
async fn the_report_api_can_be_chosen_when_both_are_served() {
    let Some(env) = envtest::cluster().await else {
        return;
    };
    env.install_crds(OPENREPORTS).await;
    the_scan_reports_what_predates_the_webhook(
        &env,
        KYVERNO,
        &["--report-api", "wgpolicyk8s"],
        (
            "wgpolicyk8s.io",
            "v1alpha2",
            "PolicyReport",
            "ClusterPolicyReport",
        ),
    )
    .await;
}

/// A cluster with only the oldest upstream version: its body names the outcome `status`.
#[tokio::test]
async fn a_cluster_serving_only_v1alpha1_gets_v1alpha1_reports() {
    let Some(env) = envtest::cluster().await else {
        return;
    };
    let mut manifests = String::new();
    for file in WG_POLICY {
        let path = std::path::Path::new(envtest::FIXTURES).join(file);
        let mut crd: Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(&path).expect("fixture"))
                .expect("a CRD");
        let versions = crd["spec"]["versions"].as_array_mut().expect("versions");
        versions.retain(|v| v["name"] == "v1alpha1");
        versions[0]["storage"] = Value::Bool(true);
        manifests.push_str(&format!(
            "---\n{}",
            serde_yaml_ng::to_string(&crd).expect("yaml")
        ));
    }
    env.kubectl(&["apply", "-f", "-"], &manifests).await.ok();
    env.kubectl(
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=30s",
            "crd/policyreports.wgpolicyk8s.io",
            "crd/clusterpolicyreports.wgpolicyk8s.io",
        ],
        "",
    )
    .await
    .ok();
    the_scan_reports_what_predates_the_webhook(
        &env,
        &[],
        &[],
        (
            "wgpolicyk8s.io",
            "v1alpha1",
            "PolicyReport",
            "ClusterPolicyReport",
        ),
    )
    .await;
}

/// `fluxgate audit`: the table and JSON of what predates the webhook, and with
/// --write-reports the reports and Events `serve` would write.
#[tokio::test]
async fn fluxgate_audit_prints_and_writes_reports() {
    let Some(env) = envtest::cluster().await else {
        return;
    };
    env.install_crds(KYVERNO).await;
    env.install_crds(OPENREPORTS).await;
    let ns = env.namespace("audit-cli").await;
    env.kubectl(&["apply", "-f", "-"], &unsigned_source(&ns, "app"))
        .await
        .ok();

    let table = fluxgate_audit(&env, &[]).await;
    let stdout = String::from_utf8_lossy(&table.stdout);
    assert_eq!(
        table.status.code(),
        Some(1),
        "an enforced violation: {stdout}\n{}",
        String::from_utf8_lossy(&table.stderr)
    );
    assert!(
        stdout.lines().any(|l| l.starts_with("fail")
            && l.contains("signed-oci-sources")
            && l.contains(&format!("OCIRepository {ns}/app"))),
        "{stdout}"
    );
    // Without --write-reports nothing is written.
    let reports: Api<DynamicObject> = Api::namespaced_with(
        env.client(),
        &ns,
        &resource("openreports.io", "v1alpha1", "Report"),
    );
    assert!(reports.get_opt("fluxgate").await.expect("get").is_none());
    assert!(events_about(&env, &ns, "app").await.is_empty());

    let json = fluxgate_audit(&env, &["-o", "json", "--write-reports"]).await;
    let stdout = String::from_utf8_lossy(&json.stdout);
    assert_eq!(json.status.code(), Some(1), "{stdout}");
    let value: Value = serde_json::from_str(&stdout).expect("JSON output");
    let scanned = value["objectsScanned"].as_u64().expect("objectsScanned");
    assert!(
        value["findings"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|f| f["name"] == "app"
                && f["namespace"] == ns.as_str()
                && f["policy"] == "signed-oci-sources"
                && f["result"] == "fail"),
        "{value:#}"
    );
    assert_eq!(
        value["written"]["reportKinds"],
        serde_json::json!([
            "openreports.io/v1alpha1 Report",
            "openreports.io/v1alpha1 ClusterReport"
        ]),
        "auto prefers OpenReports: {value:#}"
    );
    let report = reports.get("fluxgate").await.expect("the Report");
    let report = serde_json::to_value(report).expect("json");
    assert!(!results_on(&report, "OCIRepository", "app").is_empty());
    assert!(!events_about(&env, &ns, "app").await.is_empty());

    // Kinds of the core group are listed too (discovery asks /api/v1 for them): one more
    // Pod, one more object scanned.
    env.kubectl(&["create", "serviceaccount", "default", "-n", &ns], "")
        .await
        .ok();
    env.kubectl(
        &[
            "run",
            "web",
            "-n",
            &ns,
            "--image=nginx:1.27",
            "--restart=Never",
        ],
        "",
    )
    .await
    .ok();
    let again = fluxgate_audit(&env, &["-o", "json"]).await;
    let again: Value = serde_json::from_slice(&again.stdout).expect("JSON output");
    assert_eq!(
        again["objectsScanned"].as_u64(),
        Some(scanned + 1),
        "{again:#}"
    );

    let chosen = fluxgate_audit(&env, &["--write-reports", "--report-api", "wgpolicyk8s"]).await;
    assert_eq!(chosen.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&chosen.stderr);
    assert!(
        stderr.contains("wgpolicyk8s.io/v1alpha2 PolicyReport"),
        "{stderr}"
    );
    let policy_report = wait_report(
        &env,
        ("wgpolicyk8s.io", "v1alpha2", "PolicyReport"),
        Some(&ns),
        Duration::from_secs(1),
    )
    .await;
    assert!(!results_on(&policy_report, "OCIRepository", "app").is_empty());
    // fluxgate's reports live in one API at a time: the OpenReports ones would go stale.
    assert!(
        stderr.contains(&format!(
            "removed 1 reports of the report API fluxgate no longer writes: Report {ns}/fluxgate"
        )),
        "{stderr}"
    );
    assert!(reports.get_opt("fluxgate").await.expect("get").is_none());
    let cluster_reports: Api<DynamicObject> = Api::all_with(
        env.client(),
        &resource("openreports.io", "v1alpha1", "ClusterReport"),
    );
    assert!(
        cluster_reports
            .list(&ListParams::default().labels("app.kubernetes.io/managed-by=fluxgate"))
            .await
            .expect("list")
            .items
            .is_empty()
    );
}

/// A namespace being deleted refuses new objects: its report (and Events) cannot be
/// written. The other namespace's report, its Events and the metrics still are, and
/// `fluxgate audit --write-reports` says which report failed and exits 2.
#[tokio::test]
async fn a_report_that_cannot_be_written_stops_nothing_else() {
    let Some(env) = envtest::cluster().await else {
        return;
    };
    env.install_crds(KYVERNO).await;
    // Sorted before the healthy one: its report is the first written.
    let doomed = env.namespace("doomed").await;
    let healthy = env.namespace("team").await;
    for ns in [&doomed, &healthy] {
        env.kubectl(&["apply", "-f", "-"], &unsigned_source(ns, "app"))
            .await
            .ok();
    }
    // Without a kube-controller-manager the namespace stays Terminating, objects and all.
    env.kubectl(&["delete", "namespace", &doomed, "--wait=false"], "")
        .await
        .ok();

    let fluxgate = env
        .fluxgate(FluxgateOptions {
            webhooks: false,
            ..FluxgateOptions::with_args(&["--audit-interval", "1"])
        })
        .await;
    let within = Duration::from_secs(30);
    let report = wait_report(
        &env,
        ("wgpolicyk8s.io", "v1alpha2", "PolicyReport"),
        Some(&healthy),
        within,
    )
    .await;
    assert!(!results_on(&report, "OCIRepository", "app").is_empty());
    wait_events_about(&env, &healthy, "app", within).await;
    let metrics = fluxgate.metrics().await;
    assert!(
        metric(
            &metrics,
            "fluxgate_audit_report_writes_total{result=\"failed\"}"
        ) >= 1.0,
        "{metrics}"
    );
    assert!(
        metric(
            &metrics,
            &format!(
                "fluxgate_audit_violations{{kind=\"OCIRepository\",namespace=\"{doomed}\",policy=\"signed-oci-sources\"}}"
            )
        ) == 1.0,
        "{metrics}"
    );
    assert!(
        fluxgate.log().contains("cannot write an audit report"),
        "{}",
        fluxgate.log()
    );
    drop(fluxgate);

    let out = fluxgate_audit(&env, &["--write-reports"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("error: PolicyReport {doomed}/fluxgate")),
        "{stderr}"
    );
    assert!(
        !stderr.contains(&format!("PolicyReport {healthy}/fluxgate")),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("OCIRepository {doomed}/app")),
        "{stdout}"
    );
}

/// `fluxgate_audit_leader` of a replica.
async fn leads(replica: &Fluxgate) -> bool {
    metric(&replica.metrics().await, "fluxgate_audit_leader") == 1.0
}

/// The replica's reports written so far.
async fn reports_written(replica: &Fluxgate) -> f64 {
    metric(
        &replica.metrics().await,
        "fluxgate_audit_report_writes_total{result=\"written\"}",
    )
}

/// `holderIdentity` of the audit Lease.
async fn audit_lease_holder(env: &Env, namespace: &str) -> Option<String> {
    Api::<Lease>::namespaced(env.client(), namespace)
        .get_opt(fluxgate::server::leader::LEASE_NAME)
        .await
        .expect("get the Lease")
        .and_then(|lease| lease.spec?.holder_identity)
}

/// The verdict of a replica's /validate on an unsigned OCIRepository: every replica serves
/// admission, writer or not.
async fn denies_an_unsigned_source(replica: &Fluxgate, namespace: &str) -> bool {
    let object: Value = serde_yaml_ng::from_str(&unsigned_source(namespace, "new")).expect("yaml");
    let mut client = common::Client::connect(replica.addr, replica.ca_pem.as_bytes(), false)
        .await
        .expect("connect");
    let response = client
        .request(
            "POST",
            "/validate",
            Some("application/json"),
            common::review_of(&object, "CREATE", "uid-1"),
        )
        .await
        .expect("a response");
    assert_eq!(response.status, 200);
    let review: Value = serde_json::from_slice(&response.body).expect("a review");
    review["response"]["allowed"] == false
}

/// Two `fluxgate serve` replicas against one API server: one holds the Lease
/// `fluxgate-audit` and writes the reports and Events, the other writes nothing but still
/// judges admission reviews; the writer is killed (SIGKILL: no release), and the other takes
/// over within a lease duration and writes.
#[tokio::test]
async fn two_replicas_elect_one_writer_and_fail_over() {
    let Some(env) = envtest::cluster().await else {
        return;
    };
    env.install_crds(KYVERNO).await;
    let ns = env.namespace("replicas").await;
    let leases = env.namespace("fluxgate-system").await;
    env.kubectl(&["apply", "-f", "-"], &unsigned_source(&ns, "app"))
        .await
        .ok();
    const LEASE_SECONDS: u64 = 4;
    let lease_seconds = LEASE_SECONDS.to_string();
    let args = [
        "--audit-interval",
        "1",
        "--audit-lease-seconds",
        &lease_seconds,
        "--lease-namespace",
        &leases,
    ];
    let started = Instant::now();
    let replica = || async {
        env.fluxgate(FluxgateOptions {
            webhooks: false,
            ..FluxgateOptions::with_args(&args)
        })
        .await
    };
    let (a, b) = (replica().await, replica().await);

    // One leader, and the Lease names it.
    let (writer, other) = loop {
        match (leads(&a).await, leads(&b).await) {
            (true, false) => break (a, b),
            (false, true) => break (b, a),
            (true, true) => panic!("two audit writers\n{}\n{}", a.log(), b.log()),
            (false, false) => {}
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no audit writer elected\n{}\n{}",
            a.log(),
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "figure: an audit writer elected {:?} after the first replica started",
        started.elapsed()
    );
    let holder = audit_lease_holder(&env, &leases).await.expect("a holder");
    assert!(
        holder.ends_with(&format!("_{}", writer.pid())),
        "{holder} is not pid {}",
        writer.pid()
    );

    // The writer writes; over several intervals the other writes nothing and raises no
    // Event: one Event per finding on the object, not one per replica.
    let within = Duration::from_secs(30);
    let report = wait_report(
        &env,
        ("wgpolicyk8s.io", "v1alpha2", "PolicyReport"),
        Some(&ns),
        within,
    )
    .await;
    assert!(!results_on(&report, "OCIRepository", "app").is_empty());
    wait_events_about(&env, &ns, "app", within).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(reports_written(&writer).await >= 2.0, "{}", writer.log());
    assert_eq!(reports_written(&other).await, 0.0, "{}", other.log());
    assert!(!other.log().contains("audit scan done"), "{}", other.log());
    let events = events_about(&env, &ns, "app").await;
    let notes: std::collections::BTreeSet<&str> =
        events.iter().filter_map(|e| e["note"].as_str()).collect();
    assert_eq!(
        notes.len(),
        events.len(),
        "each finding raised once: {events:#?}"
    );
    let other_metrics = other.metrics().await;
    assert!(
        !other_metrics.contains("fluxgate_audit_violations{"),
        "only the writer keeps the audit gauges: {other_metrics}"
    );
    assert!(denies_an_unsigned_source(&writer, &ns).await);
    assert!(denies_an_unsigned_source(&other, &ns).await);

    // The writer dies without releasing the Lease: the other takes over once it expires.
    let killed = Instant::now();
    // SAFETY: kill(2) on the pid of a child this test started and still holds.
    assert_eq!(unsafe { libc::kill(writer.pid() as i32, libc::SIGKILL) }, 0);
    while !leads(&other).await {
        assert!(
            killed.elapsed() < Duration::from_secs(LEASE_SECONDS + 6),
            "no take-over after {:?}\n{}",
            killed.elapsed(),
            other.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took_over = killed.elapsed();
    eprintln!(
        "figure: the other replica took over {took_over:?} after the writer was killed (lease {LEASE_SECONDS} s)"
    );
    assert!(
        took_over <= Duration::from_secs(LEASE_SECONDS + 3),
        "within a lease duration (and the polling): {took_over:?}"
    );
    assert!(
        audit_lease_holder(&env, &leases)
            .await
            .is_some_and(|h| h.ends_with(&format!("_{}", other.pid())))
    );
    while reports_written(&other).await < 1.0 {
        assert!(killed.elapsed() < within, "{}", other.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "figure: the new writer wrote its first report {:?} after the old one was killed",
        killed.elapsed()
    );
    assert!(
        other.log().contains("this replica is now the audit writer"),
        "{}",
        other.log()
    );
    drop(writer);

    // Shut down gracefully, the writer gives the Lease back.
    other.terminate();
    let mut other = other;
    assert!(other.wait_exit(Duration::from_secs(20)).await.is_some());
    assert_eq!(
        audit_lease_holder(&env, &leases).await,
        None,
        "{}",
        other.log()
    );
}
