//! The audit scan over an in-memory cluster view: findings, PolicyReports (golden files),
//! the size cap, and metrics. A test policy flags Widgets labelled `bad: "true"`.

use fluxgate::audit::{self, AuditResult, OMITTED_ANNOTATION};
use fluxgate::cluster::MemoryView;
use fluxgate::config::Config;
use fluxgate::engine::Engine;
use fluxgate::finding::{Finding, PolicyId};
use fluxgate::metrics::Metrics;
use fluxgate::policy::{CREATE_UPDATE, Context, KindRule, Policy};
use serde_json::{Value, json};

struct BadLabel;

const RULES: &[KindRule] = &[
    KindRule {
        group: "example.com",
        kind: "Widget",
        resource: "widgets",
        opt_in: false,
        operations: CREATE_UPDATE,
        judged_fields: &[],
    },
    KindRule {
        group: "example.com",
        kind: "ClusterWidget",
        resource: "clusterwidgets",
        opt_in: false,
        operations: CREATE_UPDATE,
        judged_fields: &[],
    },
];

impl Policy for BadLabel {
    type Settings = ();

    fn id(&self) -> PolicyId {
        PolicyId::SignedOciSources
    }
    fn kinds(&self) -> &'static [KindRule] {
        RULES
    }
    fn validate(&self, ctx: &Context<'_>) -> Vec<Finding> {
        let object: Value = match ctx.parse_object(self.id()) {
            Ok(v) => v,
            Err(f) => return vec![f],
        };
        if object["metadata"]["labels"]["bad"] == "true" {
            vec![Finding::violation(
                self.id(),
                format!("{} is bad", ctx.object_ref()),
            )]
        } else {
            vec![]
        }
    }
}

fn engine(yaml: &str) -> Engine {
    Engine::with_policies(
        vec![Box::new(BadLabel)],
        Config::from_yaml(yaml, "t").expect("config"),
        None,
    )
}

fn widget(namespace: Option<&str>, name: &str, bad: bool) -> Value {
    let mut object = json!({
        "apiVersion": "example.com/v1",
        "kind": if namespace.is_some() { "Widget" } else { "ClusterWidget" },
        "metadata": {"name": name, "uid": format!("uid-{name}"), "labels": {}},
    });
    if let Some(ns) = namespace {
        object["metadata"]["namespace"] = json!(ns);
    }
    if bad {
        object["metadata"]["labels"]["bad"] = json!("true");
    }
    object
}

fn cluster() -> Vec<Value> {
    vec![
        widget(Some("team-a"), "ok", false),
        widget(Some("team-a"), "old-bad", true),
        widget(Some("team-b"), "bad-too", true),
        widget(None, "global-bad", true),
        json!({"kind": "NotAnObject"}),
    ]
}

#[test]
fn the_scan_finds_what_predates_the_webhook() {
    let report = audit::scan(&engine(""), &MemoryView::new(), &cluster());
    assert_eq!(report.objects_scanned, 4);
    assert_eq!(
        report.unreadable.len(),
        1,
        "the object without apiVersion is reported, not judged"
    );
    let names: Vec<&str> = report.findings.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["global-bad", "old-bad", "bad-too"]);
    assert!(
        report
            .findings
            .iter()
            .all(|f| f.result == AuditResult::Fail)
    );
}

#[test]
fn exempted_objects_are_reported_as_skipped() {
    let report = audit::scan(
        &engine("exemptions:\n- {name: legacy, namespaces: [team-b]}\n"),
        &MemoryView::new(),
        &cluster(),
    );
    let skipped: Vec<&str> = report
        .findings
        .iter()
        .filter(|f| f.result == AuditResult::Skip)
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(skipped, ["bad-too"]);
}

#[test]
fn warn_mode_findings_are_warnings_in_the_report() {
    let report = audit::scan(&engine("mode: warn"), &MemoryView::new(), &cluster());
    assert!(
        report
            .findings
            .iter()
            .all(|f| f.result == AuditResult::Warn)
    );
}

fn golden(name: &str, actual: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).expect("write golden");
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
            path.display()
        )
    });
    assert_eq!(actual, expected, "{name} differs from the golden file");
}

#[test]
fn policy_reports_match_the_golden_file() {
    let report = audit::scan(&engine(""), &MemoryView::new(), &cluster());
    let reports = audit::policy_reports(&report, &["team-c".to_string()], 100, 1_700_000_000);
    let text = serde_json::to_string_pretty(&reports).expect("json") + "\n";
    golden("audit-policyreports.json", &text);
    let kinds: Vec<(&str, Option<&str>)> = reports
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap_or(""),
                r["metadata"]["namespace"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("ClusterPolicyReport", None),
            ("PolicyReport", Some("team-a")),
            ("PolicyReport", Some("team-b")),
            ("PolicyReport", Some("team-c")),
        ],
        "one report per namespace, a namespace reported before gets an empty one"
    );
    assert_eq!(reports[3]["results"], json!([]));
}

#[test]
fn the_table_matches_the_golden_file() {
    let report = audit::scan(&engine(""), &MemoryView::new(), &cluster());
    golden("audit-table.txt", &audit::render_table(&report));
}

#[test]
fn a_report_keeps_at_most_the_configured_results_and_counts_the_rest() {
    let objects: Vec<Value> = (0..500)
        .map(|i| widget(Some("crowded"), &format!("w{i:03}"), true))
        .collect();
    let report = audit::scan(&engine(""), &MemoryView::new(), &objects);
    let reports = audit::policy_reports(&report, &[], 100, 0);
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0]["results"].as_array().map(Vec::len), Some(100));
    assert_eq!(reports[0]["summary"]["fail"], 500);
    assert_eq!(
        reports[0]["metadata"]["annotations"][OMITTED_ANNOTATION],
        "400"
    );
    let size = serde_json::to_vec(&reports[0]).expect("json").len();
    assert!(
        size < 100 * 1024,
        "a capped report stays small: {size} bytes"
    );
}

#[test]
fn metrics_show_the_last_scan_only() {
    let metrics = Metrics::new();
    let report = audit::scan(&engine(""), &MemoryView::new(), &cluster());
    audit::cluster::record_metrics(&report, &metrics);
    let text = String::from_utf8(metrics.encode()).expect("utf-8");
    assert!(text.contains(
        "fluxgate_audit_violations{kind=\"Widget\",namespace=\"team-b\",policy=\"signed-oci-sources\"} 1"
    ), "{text}");
    assert!(!text.contains("fluxgate_audit_last_run_timestamp_seconds 0\n"));

    let fixed: Vec<Value> = vec![widget(Some("team-a"), "ok", false)];
    audit::cluster::record_metrics(
        &audit::scan(&engine(""), &MemoryView::new(), &fixed),
        &metrics,
    );
    let text = String::from_utf8(metrics.encode()).expect("utf-8");
    assert!(
        !text.contains("namespace=\"team-b\""),
        "fixed objects leave the gauge"
    );
}

#[test]
fn scanning_twice_gives_the_same_report() {
    let engine = engine("");
    let view = MemoryView::new();
    let first = audit::scan(&engine, &view, &cluster());
    let second = audit::scan(&engine, &view, &cluster());
    assert_eq!(first.findings, second.findings);
}

/// Objects of a rendered Helm install, placed in the release namespace as `helm install -n`
/// would.
fn rendered_install(file: &str, namespace: &str) -> Vec<Value> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/corpus/gitlab-agent/rendered")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::Deserializer::from_str(&text)
        .filter_map(|doc| {
            use serde::Deserialize;
            let mut value = Value::deserialize(doc).ok()?;
            value.get("kind")?;
            let cluster_scoped = matches!(
                value["kind"].as_str(),
                Some("ClusterRole" | "ClusterRoleBinding" | "Namespace")
            );
            if !cluster_scoped && value["metadata"]["namespace"].is_null() {
                value["metadata"]["namespace"] = json!(namespace);
            }
            Some(value)
        })
        .collect()
}

#[test]
fn the_scan_finds_two_agents_that_raced_past_the_webhook() {
    let mut cluster =
        rendered_install("release-gitlab-agent__ns-gitlab-agent.yaml", "gitlab-agent");
    cluster.extend(rendered_install(
        "release-test__ns-gitlab-agent-test.yaml",
        "gitlab-agent-test",
    ));
    let engine = Engine::new(Config::default(), None);
    let view = MemoryView::new();
    for object in &cluster {
        view.apply(object).expect("applies");
    }
    let report = audit::scan(&engine, &view, &cluster);
    let agents: Vec<(&str, &str)> = report
        .findings
        .iter()
        .filter(|f| f.policy == PolicyId::SingleAgent && f.result == AuditResult::Fail)
        .map(|f| (f.namespace.as_deref().unwrap_or(""), f.kind.as_str()))
        .collect();
    assert!(
        agents.contains(&("gitlab-agent", "Deployment")),
        "{agents:?}"
    );
    assert!(
        agents.contains(&("gitlab-agent-test", "Deployment")),
        "{agents:?}"
    );
    // The chart binds the agent to cluster-admin: ci-impersonation advises against it.
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.policy == PolicyId::CiImpersonation && f.kind == "ClusterRoleBinding"),
        "{:#?}",
        report.findings
    );

    let alone = rendered_install("release-gitlab-agent__ns-gitlab-agent.yaml", "gitlab-agent");
    let view = MemoryView::new();
    for object in &alone {
        view.apply(object).expect("applies");
    }
    let report = audit::scan(&engine, &view, &alone);
    assert!(
        !report
            .findings
            .iter()
            .any(|f| f.policy == PolicyId::SingleAgent),
        "one installation alone is clean: {:#?}",
        report.findings
    );
}
