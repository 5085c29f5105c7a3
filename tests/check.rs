//! `fluxgate check` end to end through the library: exit codes, inputs (files, directories,
//! standard input), line numbers, the cluster view filled from the manifest set, every output
//! format parsed back, and the GitLab agent configuration lint.
//!
//! Policies that must fire are small test policies (below), so these tests keep their meaning
//! whatever the real policies decide; the corpus run uses the real registry.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use clap::Parser;
use serde::Deserialize;
use serde_json::Value;

use fluxgate::check::{self, CheckArgs, ColorChoice};
use fluxgate::cluster::Lookup;
use fluxgate::config::Config;
use fluxgate::engine::Engine;
use fluxgate::engine::registry;
use fluxgate::finding::{Finding, Mode, PolicyId, Severity};
use fluxgate::policy::{CREATE_UPDATE, Context, KindRule, Policy};
use fluxgate::report::{Action, Format, Report, SubjectType};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/corpus");

// ---------------------------------------------------------------------------------------------
// Test policies

/// OCIRepositories must set `spec.verify` (a violation); `spec.insecure: true` is advice.
/// The message carries XML's special characters on purpose.
struct VerifiedOci;

#[derive(Deserialize, Default)]
struct OciObject {
    #[serde(default)]
    spec: OciSpec,
}

#[derive(Deserialize, Default)]
struct OciSpec {
    #[serde(default)]
    verify: Option<Value>,
    #[serde(default)]
    insecure: bool,
}

const OCI_KINDS: &[KindRule] = &[KindRule {
    group: "source.toolkit.fluxcd.io",
    kind: "OCIRepository",
    resource: "ocirepositories",
    opt_in: false,
    operations: CREATE_UPDATE,
    judged_fields: &["/spec"],
}];

impl Policy for VerifiedOci {
    type Settings = ();

    fn id(&self) -> PolicyId {
        PolicyId::SignedOciSources
    }
    fn kinds(&self) -> &'static [KindRule] {
        OCI_KINDS
    }
    fn validate(&self, ctx: &Context<'_>) -> Vec<Finding> {
        let object: OciObject = match ctx.parse_object(self.id()) {
            Ok(o) => o,
            Err(finding) => return vec![finding],
        };
        let mut findings = Vec::new();
        if object.spec.verify.is_none() {
            findings.push(Finding::violation(
                self.id(),
                format!(
                    "{} has no spec.verify <unsigned> & \"unverified\" 'artifact'; add:\n  verify:\n    provider: cosign",
                    ctx.object_ref()
                ),
            ));
        }
        if object.spec.insecure {
            findings.push(Finding::advisory(
                self.id(),
                format!("{} pulls over plain HTTP", ctx.object_ref()),
            ));
        }
        findings
    }
}

/// A cluster-state rule: a HelmChart's HelmRepository must exist (in the set or the cluster).
struct ChartSourceExists;

const CHART_KINDS: &[KindRule] = &[KindRule {
    group: "source.toolkit.fluxcd.io",
    kind: "HelmChart",
    resource: "helmcharts",
    opt_in: false,
    operations: CREATE_UPDATE,
    judged_fields: &["/spec"],
}];

impl Policy for ChartSourceExists {
    type Settings = ();

    fn id(&self) -> PolicyId {
        PolicyId::SingleAgent
    }
    fn kinds(&self) -> &'static [KindRule] {
        CHART_KINDS
    }
    fn validate(&self, ctx: &Context<'_>) -> Vec<Finding> {
        let object: Value = match ctx.parse_object(self.id()) {
            Ok(o) => o,
            Err(finding) => return vec![finding],
        };
        let name = object["spec"]["sourceRef"]["name"].as_str().unwrap_or("");
        let namespace = ctx.request.namespace().unwrap_or("default");
        match ctx.view.helm_repository(namespace, name) {
            Lookup::Missing => vec![Finding::violation(
                self.id(),
                format!(
                    "{} uses HelmRepository {namespace}/{name}, which does not exist",
                    ctx.object_ref()
                ),
            )],
            Lookup::Found(_) | Lookup::Unknown => Vec::new(),
        }
    }
}

fn test_policies() -> Vec<Box<dyn fluxgate::engine::AnyPolicy>> {
    vec![Box::new(VerifiedOci), Box::new(ChartSourceExists)]
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// A directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "fluxgate-check-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("temp dir");
        TempDir(path)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("parent dir");
        }
        std::fs::write(&path, text).expect("write file");
        path
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: CheckArgs,
}

fn args(argv: &[&str]) -> CheckArgs {
    // Tests may run on a terminal: colour only where a test asks for it.
    let mut full = vec!["fluxgate-check"];
    if !argv.contains(&"--color") {
        full.extend(["--color", "never"]);
    }
    full.extend_from_slice(argv);
    Cli::try_parse_from(full).expect("valid arguments").args
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run_with(
    argv: &[&str],
    stdin: &str,
    policies: Vec<Box<dyn fluxgate::engine::AnyPolicy>>,
) -> Run {
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let code = check::run_with_policies(
        &args(argv),
        policies,
        stdin.as_bytes(),
        &mut stdout,
        &mut stderr,
    );
    Run {
        code,
        stdout: String::from_utf8(stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(stderr).expect("utf-8 stderr"),
    }
}

fn run(argv: &[&str], stdin: &str) -> Run {
    run_with(argv, stdin, test_policies())
}

fn json_report(argv: &[&str], stdin: &str) -> (i32, Report) {
    let mut full = vec!["-o", "json"];
    full.extend_from_slice(argv);
    let out = run(&full, stdin);
    let report: Report = serde_json::from_str(&out.stdout).expect("the JSON report parses");
    (out.code, report)
}

fn s(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

const UNSIGNED: &str = "apiVersion: source.toolkit.fluxcd.io/v1
kind: OCIRepository
metadata:
  name: app
  namespace: apps
spec:
  interval: 5m
  url: oci://registry.example.com/app
";

const SIGNED: &str = "apiVersion: source.toolkit.fluxcd.io/v1
kind: OCIRepository
metadata:
  name: signed
  namespace: apps
spec:
  interval: 5m
  url: oci://registry.example.com/app
  verify:
    provider: cosign
";

// ---------------------------------------------------------------------------------------------
// Exit codes and inputs

#[test]
fn an_enforced_violation_exits_1_and_names_file_line_and_object() {
    let dir = TempDir::new();
    let file = dir.write(
        "apps/oci.yaml",
        &format!("{SIGNED}---\n# the app\n{UNSIGNED}"),
    );
    let out = run(&[s(dir.path())], "");
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains(&check::reader::display_path(&file)),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("line 13: OCIRepository apps/app"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("DENY"), "{}", out.stdout);
    assert!(
        !out.stdout.contains("apps/signed"),
        "clean objects are not listed: {}",
        out.stdout
    );
    assert!(
        out.stdout.contains("FAIL: checked 2 objects in 1 file"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_clean_set_exits_0() {
    let dir = TempDir::new();
    dir.write("oci.yaml", SIGNED);
    let out = run(&[s(dir.path())], "");
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.starts_with("PASS: checked 1 object in 1 file"),
        "{}",
        out.stdout
    );
}

#[test]
fn warn_and_audit_modes_report_without_failing() {
    let dir = TempDir::new();
    dir.write("m/oci.yaml", UNSIGNED);
    for (mode, action) in [("warn", Action::Warn), ("audit", Action::Audit)] {
        let config = dir.write(
            "fluxgate.yaml",
            &format!("policies:\n  signed-oci-sources:\n    mode: {mode}\n"),
        );
        let m = dir.path().join("m");
        let (code, report) = json_report(&["--config", s(&config), s(&m)], "");
        assert_eq!(code, 0, "{mode}");
        let finding = &report.results[0].findings[0];
        assert_eq!(
            (finding.mode, finding.action),
            (mode.parse::<Mode>().expect("mode"), action)
        );
    }
}

#[test]
fn advice_in_enforce_mode_warns_and_does_not_fail() {
    let insecure = SIGNED.replace("  verify:", "  insecure: true\n  verify:");
    let (code, report) = json_report(&["-"], &insecure);
    assert_eq!(code, 0);
    let finding = &report.results[0].findings[0];
    assert_eq!(finding.severity, Severity::Advisory);
    assert_eq!(finding.action, Action::Warn);
}

#[test]
fn a_policy_turned_off_is_not_evaluated() {
    let dir = TempDir::new();
    let config = dir.write(
        "c.yaml",
        "policies:\n  signed-oci-sources:\n    mode: off\n",
    );
    let (code, report) = json_report(&["--config", s(&config), "-"], UNSIGNED);
    assert_eq!(code, 0);
    assert!(report.results[0].evaluated.is_empty());
    assert!(report.results[0].findings.is_empty());
}

#[test]
fn an_exemption_by_namespace_label_sees_namespaces_in_the_set() {
    let dir = TempDir::new();
    let config = dir.write(
        "c.yaml",
        "exemptions:\n- name: legacy\n  namespaceSelector:\n    matchLabels: {legacy: \"true\"}\n",
    );
    let namespace =
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps\n  labels: {legacy: \"true\"}\n";
    let (code, report) = json_report(
        &["--config", s(&config), "-"],
        &format!("{namespace}---\n{UNSIGNED}"),
    );
    assert_eq!(code, 0);
    let finding = &report.results[1].findings[0];
    assert_eq!(finding.action, Action::Exempted);
    assert_eq!(finding.exemption.as_deref(), Some("legacy"));
    // Without the Namespace in the set, the selector cannot match: fail closed.
    let (code, _) = json_report(&["--config", s(&config), "-"], UNSIGNED);
    assert_eq!(code, 1);
}

const CHART: &str = "apiVersion: source.toolkit.fluxcd.io/v1
kind: HelmChart
metadata:
  name: podinfo
  namespace: flux-system
spec:
  chart: podinfo
  sourceRef:
    kind: HelmRepository
    name: podinfo
";

const CHART_REPO: &str = "apiVersion: source.toolkit.fluxcd.io/v1
kind: HelmRepository
metadata:
  name: podinfo
  namespace: flux-system
spec:
  type: oci
  url: oci://ghcr.io/stefanprodan/charts
";

#[test]
fn cluster_state_rules_see_the_manifest_set_itself() {
    let (code, report) = json_report(&["-"], CHART);
    assert_eq!(code, 1, "the repository exists nowhere");
    assert!(
        report.results[0].findings[0]
            .message
            .contains("flux-system/podinfo")
    );

    // Later in the set, or in another file of the set: all objects are known before any is judged.
    let dir = TempDir::new();
    dir.write("a-chart.yaml", CHART);
    dir.write("b-repo.yaml", CHART_REPO);
    let (code, report) = json_report(&[s(dir.path())], "");
    assert_eq!(code, 0, "{:?}", report.results);
}

#[test]
fn cluster_state_files_are_known_but_not_checked() {
    let dir = TempDir::new();
    // As `kubectl get helmrepositories -A -o yaml` prints it.
    let state = dir.write(
        "state.yaml",
        &format!(
            "apiVersion: v1\nkind: List\nitems:\n- {}\n- {}",
            CHART_REPO.trim_end().replace('\n', "\n  "),
            UNSIGNED.trim_end().replace('\n', "\n  ")
        ),
    );
    let (code, report) = json_report(&["--cluster-state", s(&state), "-"], CHART);
    assert_eq!(code, 0, "{:?}", report);
    assert_eq!(report.summary.cluster_state_objects, 2);
    assert_eq!(
        report.summary.objects, 1,
        "the unsigned repository in the cluster is not judged"
    );
}

#[test]
fn standard_input_is_read_with_a_dash() {
    let (code, report) = json_report(&["-"], &format!("{SIGNED}---\n{UNSIGNED}"));
    assert_eq!(code, 1);
    assert_eq!(report.results.len(), 2);
    assert!(report.results.iter().all(|r| r.file == "<stdin>"));
    assert_eq!(report.results[1].line, 12);
}

#[test]
fn a_json_list_on_standard_input_is_expanded() {
    let list = serde_json::json!({
        "apiVersion": "v1", "kind": "List",
        "items": [
            serde_yaml_ng::from_str::<Value>(SIGNED).expect("yaml"),
            serde_yaml_ng::from_str::<Value>(UNSIGNED).expect("yaml"),
        ]
    });
    let (code, report) = json_report(&["-"], &serde_json::to_string_pretty(&list).expect("json"));
    assert_eq!(code, 1);
    let items: Vec<_> = report.results.iter().map(|r| r.item).collect();
    assert_eq!(items, vec![Some(0), Some(1)]);
}

#[test]
fn a_yaml_syntax_error_exits_2_with_file_and_line() {
    let dir = TempDir::new();
    let broken = dir.write(
        "broken.yaml",
        &format!(
            "{SIGNED}---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n data: oops\n"
        ),
    );
    let out = run(&[s(dir.path())], "");
    assert_eq!(out.code, 2, "{}", out.stderr);
    let expected = format!("{}:16:", check::reader::display_path(&broken));
    assert!(
        out.stderr.contains(&expected),
        "want {expected} in {}",
        out.stderr
    );
    assert!(out.stdout.contains("ERROR"), "{}", out.stdout);
}

#[test]
fn a_json_syntax_error_exits_2_with_file_and_line() {
    let dir = TempDir::new();
    let broken = dir.write(
        "broken.json",
        "{\n  \"apiVersion\": \"v1\",\n  \"kind\": ,\n}\n",
    );
    let out = run(&[s(&broken)], "");
    assert_eq!(out.code, 2);
    let expected = format!("{}:3:", check::reader::display_path(&broken));
    assert!(out.stderr.contains(&expected), "{}", out.stderr);
}

#[test]
fn a_missing_path_exits_2() {
    let out = run(&["/nonexistent/fluxgate/manifests"], "");
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("/nonexistent/fluxgate/manifests: cannot read"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_broken_config_is_bad_usage() {
    let dir = TempDir::new();
    let config = dir.write(
        "c.yaml",
        "policies:\n  signed-oci-sources:\n    mode: loud\n",
    );
    let out = run(&["--config", s(&config), "-"], SIGNED);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("c.yaml:3:"), "{}", out.stderr);
    assert!(out.stdout.is_empty());
}

#[test]
fn no_path_is_bad_usage() {
    assert!(Cli::try_parse_from(["fluxgate-check"]).is_err());
    let mut no_paths = args(&["-"]);
    no_paths.paths.clear();
    let mut stderr = Vec::new();
    let code = check::run(&no_paths, "".as_bytes(), Vec::new(), &mut stderr);
    assert_eq!(code, 2);
    assert!(String::from_utf8_lossy(&stderr).contains("no PATH"));
}

#[test]
fn arguments_parse_as_documented() {
    let parsed = args(&[
        "--config",
        "c.yaml",
        "-o",
        "junit",
        "--cluster-state",
        "a.yaml",
        "--cluster-state",
        "b/",
        "x.yaml",
        "-",
    ]);
    assert_eq!(parsed.config, Some(PathBuf::from("c.yaml")));
    assert_eq!(parsed.output, Format::Junit);
    assert_eq!(
        parsed.cluster_state,
        vec![PathBuf::from("a.yaml"), PathBuf::from("b/")]
    );
    assert_eq!(
        parsed.paths,
        vec![PathBuf::from("x.yaml"), PathBuf::from("-")]
    );
    assert_eq!(parsed.color, ColorChoice::Never);
    assert!(Cli::try_parse_from(["fluxgate-check", "-o", "xml", "x"]).is_err());
}

#[test]
fn helm_templates_and_non_manifests_are_skipped_with_a_note() {
    let dir = TempDir::new();
    dir.write(
        "chart/Chart.yaml",
        "apiVersion: v2\nname: demo\nversion: 1.0.0\n",
    );
    dir.write("chart/values.yaml", "replicas: 1\n");
    dir.write(
        "chart/templates/sa.yaml",
        "{{- if .Values.rbac.create -}}\napiVersion: v1\nkind: ServiceAccount\n{{- end }}\n",
    );
    dir.write(
        "go-template.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {{ .ns }}\n",
    );
    dir.write("README.md", "# not read\n");
    dir.write("oci.yaml", SIGNED);
    let (code, report) = json_report(&[s(dir.path())], "");
    assert_eq!(code, 0, "{:?}", report.errors);
    assert_eq!(report.summary.objects, 1);
    assert_eq!(report.summary.files, 5, "README.md is not a manifest file");
    let reasons: Vec<&str> = report.skipped.iter().map(|s| s.reason.as_str()).collect();
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    assert_eq!(
        reasons.iter().filter(|r| r.contains("template")).count(),
        2,
        "{reasons:?}"
    );
}

#[test]
fn colour_is_used_only_when_asked() {
    let out = run(&["--color", "always", "-"], UNSIGNED);
    assert!(out.stdout.contains("\x1b[1;31m"), "{}", out.stdout);
    let out = run(&["-"], UNSIGNED);
    assert!(!out.stdout.contains('\x1b'), "{}", out.stdout);
    let out = run(&["--color", "always", "-o", "json", "-"], UNSIGNED);
    assert!(
        !out.stdout.contains('\x1b'),
        "machine formats never carry colour"
    );
}

// ---------------------------------------------------------------------------------------------
// Output formats, parsed back

fn mixed_input() -> String {
    let insecure = SIGNED
        .replace("name: signed", "name: plain-http")
        .replace("  verify:", "  insecure: true\n  verify:");
    format!("{SIGNED}---\n{UNSIGNED}---\n{insecure}---\n{CHART}")
}

#[test]
fn the_json_report_round_trips() {
    let engine = Engine::with_policies(test_policies(), Config::default(), None);
    let input = mixed_input();
    let expected = check::check(&engine, &[PathBuf::from("-")], &[], &mut input.as_bytes());
    let (code, parsed) = json_report(&["-"], &input);
    assert_eq!(code, expected.summary.exit_code);
    assert_eq!(parsed, expected);
    assert_eq!(parsed.schema_version, 1);
    assert_eq!(
        (
            parsed.summary.objects,
            parsed.summary.denied,
            parsed.summary.warned
        ),
        (4, 2, 1)
    );
    // Field names are the documented schema, not Rust's.
    let raw: Value = serde_json::to_value(&parsed).expect("serializes");
    for key in ["schemaVersion", "summary", "results", "skipped", "errors"] {
        assert!(raw.get(key).is_some(), "{key}");
    }
    assert!(raw["summary"].get("exitCode").is_some());
    assert!(raw["results"][0].get("apiVersion").is_some());
    assert_eq!(raw["results"][1]["findings"][0]["action"], "deny");
}

#[test]
fn junit_parses_and_counts_one_testcase_per_policy_and_object() {
    let out = run(&["-o", "junit", "-"], &mixed_input());
    assert_eq!(out.code, 1);
    let doc = roxmltree::Document::parse(&out.stdout).expect("JUnit is well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    let cases: Vec<_> = root
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    assert_eq!(cases.len(), 4);
    assert_eq!(root.attribute("tests"), Some("4"));
    assert_eq!(root.attribute("failures"), Some("2"));
    let failure = cases
        .iter()
        .find(|c| c.attribute("name") == Some("signed-oci-sources OCIRepository apps/app"))
        .and_then(|c| c.children().find(|n| n.has_tag_name("failure")))
        .expect("the unsigned repository fails");
    // Escaping round-trips: the text is exactly the policy's message.
    assert_eq!(
        failure.text(),
        Some(
            "OCIRepository apps/app has no spec.verify <unsigned> & \"unverified\" 'artifact'; add:\n  verify:\n    provider: cosign"
        )
    );
    assert_eq!(
        failure.attribute("message"),
        Some(
            "OCIRepository apps/app has no spec.verify <unsigned> & \"unverified\" 'artifact'; add:"
        )
    );
    let warned = cases
        .iter()
        .find(|c| c.attribute("name") == Some("signed-oci-sources OCIRepository apps/plain-http"))
        .expect("the warned repository");
    assert!(warned.children().all(|n| !n.has_tag_name("failure")));
    let output = warned
        .children()
        .find(|n| n.has_tag_name("system-out"))
        .expect("system-out");
    assert!(output.text().unwrap_or("").starts_with("warn: "));
    assert!(cases.iter().all(|c| c.attribute("file") == Some("<stdin>")));
}

#[test]
fn junit_reports_unreadable_input_as_an_error() {
    let dir = TempDir::new();
    let broken = dir.write("bad.yaml", "a: [\n");
    let out = run(&["-o", "junit", s(&broken)], "");
    assert_eq!(out.code, 2);
    let doc = roxmltree::Document::parse(&out.stdout).expect("well-formed");
    assert_eq!(doc.root_element().attribute("errors"), Some("1"));
    assert!(doc.descendants().any(|n| n.has_tag_name("error")));
}

/// GitLab's Code Quality format: the fields the merge request widget needs, with their types.
fn assert_code_quality_issue(issue: &Value) {
    let object = issue.as_object().expect("an issue is an object");
    for key in ["description", "check_name", "fingerprint", "severity"] {
        let value = object.get(key).and_then(Value::as_str);
        assert!(value.is_some_and(|v| !v.is_empty()), "{key} in {issue}");
    }
    let severity = issue["severity"].as_str().unwrap_or("");
    assert!(
        ["info", "minor", "major", "critical", "blocker"].contains(&severity),
        "{issue}"
    );
    let fingerprint = issue["fingerprint"].as_str().unwrap_or("");
    assert!(fingerprint.len() == 32 && fingerprint.chars().all(|c| c.is_ascii_hexdigit()));
    assert!(
        issue["location"]["path"]
            .as_str()
            .is_some_and(|p| !p.is_empty()),
        "{issue}"
    );
    assert!(
        issue["location"]["lines"]["begin"]
            .as_u64()
            .is_some_and(|l| l >= 1),
        "{issue}"
    );
}

fn code_quality(paths: &[&str]) -> Vec<Value> {
    let mut argv = vec!["-o", "codequality"];
    argv.extend_from_slice(paths);
    let out = run(&argv, "");
    serde_json::from_str(&out.stdout).expect("Code Quality is a JSON array")
}

#[test]
fn code_quality_issues_have_the_required_fields_and_unique_fingerprints() {
    let dir = TempDir::new();
    let file = dir.write("m.yaml", &mixed_input());
    let issues = code_quality(&[s(&file)]);
    assert_eq!(issues.len(), 3, "{issues:?}");
    issues.iter().for_each(assert_code_quality_issue);
    let severities: Vec<&str> = issues
        .iter()
        .filter_map(|i| i["severity"].as_str())
        .collect();
    assert_eq!(severities, vec!["critical", "minor", "critical"]);
    let prints: HashSet<&str> = issues
        .iter()
        .filter_map(|i| i["fingerprint"].as_str())
        .collect();
    assert_eq!(prints.len(), issues.len());
}

#[test]
fn fingerprints_survive_reruns_and_line_shifts_but_not_other_objects() {
    let dir = TempDir::new();
    let file = dir.write("m.yaml", UNSIGNED);
    let first = code_quality(&[s(&file)]);
    let again = code_quality(&[s(&file)]);
    assert_eq!(first, again);
    dir.write("m.yaml", &format!("# a comment\n\n---\n{UNSIGNED}"));
    let shifted = code_quality(&[s(&file)]);
    assert_eq!(shifted[0]["fingerprint"], first[0]["fingerprint"]);
    assert_ne!(
        shifted[0]["location"]["lines"]["begin"],
        first[0]["location"]["lines"]["begin"]
    );
    dir.write("m.yaml", &UNSIGNED.replace("name: app", "name: other"));
    let other = code_quality(&[s(&file)]);
    assert_ne!(other[0]["fingerprint"], first[0]["fingerprint"]);
}

#[test]
fn the_same_object_twice_gets_two_fingerprints() {
    let issues = {
        let dir = TempDir::new();
        let file = dir.write("m.yaml", &format!("{UNSIGNED}---\n{UNSIGNED}"));
        code_quality(&[s(&file)])
    };
    assert_eq!(issues.len(), 2);
    assert_ne!(issues[0]["fingerprint"], issues[1]["fingerprint"]);
}

#[test]
fn code_quality_reports_unreadable_input_as_a_blocker() {
    let dir = TempDir::new();
    let broken = dir.write("bad.yaml", "kind: [\n");
    let issues = code_quality(&[s(&broken)]);
    assert_eq!(issues.len(), 1);
    assert_code_quality_issue(&issues[0]);
    assert_eq!(issues[0]["severity"], "blocker");
}

// ---------------------------------------------------------------------------------------------
// GitLab agent configuration

const EXAMPLES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/corpus/gitlab-agent/agent-config-examples"
);

#[test]
fn the_agent_config_examples_each_have_their_expected_findings() {
    // (file, [(entry, line)]) for every example GitLab documents.
    let expected: &[(&str, &[(&str, usize)])] = &[
        ("ci_cd_workflow__ci_access-ci_job-impersonation.yaml", &[]),
        (
            "ci_cd_workflow__ci_access-environments.yaml",
            &[
                ("ci_access.projects[0]", 5),
                ("ci_access.projects[1]", 6),
                ("ci_access.groups[0]", 11),
            ],
        ),
        (
            "ci_cd_workflow__ci_access-groups.yaml",
            &[("ci_access.groups[0]", 5)],
        ),
        (
            "ci_cd_workflow__ci_access-projects.yaml",
            &[("ci_access.projects[0]", 5)],
        ),
        ("getting_started_deployments__ci_access-ci_job.yaml", &[]),
        (
            "managed_kubernetes_resources__resource_management.yaml",
            &[],
        ),
        ("user_access__access_as-agent.yaml", &[("user_access", 6)]),
        ("user_access__access_as-user.yaml", &[]),
    ];
    let on_disk: HashSet<String> = std::fs::read_dir(EXAMPLES)
        .expect("examples")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    let listed: HashSet<String> = expected.iter().map(|(f, _)| f.to_string()).collect();
    assert_eq!(on_disk, listed, "every example has its expectation");

    for (file, findings) in expected {
        let path = format!("{EXAMPLES}/{file}");
        let (code, report) = json_report(&[&path], "");
        assert_eq!(report.results.len(), 1, "{file}");
        let subject = &report.results[0];
        assert_eq!(
            subject.subject_type,
            SubjectType::GitlabAgentConfig,
            "{file}"
        );
        let got: Vec<(&str, usize)> = subject
            .findings
            .iter()
            .map(|f| (f.entry.as_deref().unwrap_or(""), f.line))
            .collect();
        assert_eq!(got, findings.to_vec(), "{file}");
        assert!(
            subject.findings.iter().all(|f| {
                let fix = if f.entry.as_deref() == Some("user_access") {
                    "user: {}"
                } else {
                    "ci_job: {}"
                };
                f.policy == PolicyId::CiImpersonation
                    && f.action == Action::Deny
                    && f.message.contains(fix)
            }),
            "{file}"
        );
        assert_eq!(code, if findings.is_empty() { 0 } else { 1 }, "{file}");
    }
}

#[test]
fn an_agent_config_is_recognised_by_its_path() {
    let dir = TempDir::new();
    // No key that gives it away by content.
    let text = "remote_development:\n  enabled: true\n";
    dir.write(".gitlab/agents/prod/config.yaml", text);
    dir.write("elsewhere/config.yaml", text);
    let (code, report) = json_report(&[s(dir.path())], "");
    assert_eq!(code, 0);
    assert_eq!(report.results.len(), 1);
    assert_eq!(
        report.results[0].subject_type,
        SubjectType::GitlabAgentConfig
    );
    assert_eq!(report.results[0].name, "prod");
    assert_eq!(
        report.skipped.len(),
        1,
        "the same text elsewhere is not a manifest"
    );

    dir.write(
        ".gitlab/agents/prod/config.yaml",
        "ci_access:\n  projects:\n  - id: a/b\n    access_as:\n      agent: {}\n",
    );
    let out = run(&[s(dir.path())], "");
    assert_eq!(out.code, 1);
    assert!(
        out.stdout.contains("GitLab agent prod (") && out.stdout.contains("access_as: agent"),
        "{}",
        out.stdout
    );
}

#[test]
fn the_agent_config_lint_follows_the_ci_impersonation_mode() {
    let dir = TempDir::new();
    let config = dir.write("c.yaml", "policies:\n  ci-impersonation:\n    mode: warn\n");
    let example = format!("{EXAMPLES}/ci_cd_workflow__ci_access-projects.yaml");
    let (code, report) = json_report(&["--config", s(&config), &example], "");
    assert_eq!(code, 0);
    assert_eq!(report.results[0].findings[0].action, Action::Warn);
    let config = dir.write("c.yaml", "policies:\n  ci-impersonation:\n    mode: off\n");
    let (code, report) = json_report(&["--config", s(&config), &example], "");
    assert_eq!(code, 0);
    assert!(report.results[0].findings.is_empty());
}

// ---------------------------------------------------------------------------------------------
// The corpus

#[test]
fn the_whole_corpus_is_checked_in_one_run() {
    let engine = Engine::new(Config::default(), None);
    let report = check::check(
        &engine,
        &[PathBuf::from(CORPUS)],
        &[],
        &mut std::io::empty(),
    );
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    // What the reader makes of tests/fixtures/corpus, whatever the policies decide (counted
    // independently with a YAML 1.1 parser: 400 *.yaml/*.yml/*.json files, 493 non-empty
    // documents; the 31 API-server bodies of tests/fixtures/admission are not in it). Of the
    // objects: 7 files kustomization.yaml names as patches or transformer configurations are
    // set aside (skipped as "kustomize"), 4 objects are what a FluxInstance and a ResourceSet
    // make the Flux Operator create, and the hub-spoke example's 7 objects under deploy/ are
    // judged once for each of the two clusters' Kustomizations that apply them (422 - 7 + 4 + 7).
    let s = &report.summary;
    assert_eq!(
        (s.files, s.documents, s.objects, s.agent_configs),
        (400, 493, 426, 8),
        "{s:?}"
    );
    let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
    for skip in &report.skipped {
        let key = if skip.reason.contains("kustomize") {
            "kustomize"
        } else if skip.reason.contains("template") {
            "template"
        } else if skip.reason.contains("webhook message") {
            "admission review"
        } else {
            "not an object"
        };
        *reasons.entry(key).or_default() += 1;
    }
    assert_eq!(
        reasons,
        BTreeMap::from([
            ("admission review", 10),
            ("kustomize", 51),
            ("not an object", 15),
            ("template", 19),
        ]),
        "{:?}",
        report.skipped
    );
    // The agent configuration examples alone make the run fail in enforce mode.
    assert_eq!(s.exit_code, 1);
    assert!(report.results.iter().all(|r| {
        r.findings
            .iter()
            .all(|f| !f.message.is_empty() && f.fingerprint.len() == 32)
    }));
}

#[test]
fn every_corpus_format_is_well_formed() {
    let junit = run_with(&["-o", "junit", CORPUS], "", registry());
    roxmltree::Document::parse(&junit.stdout).expect("JUnit of the corpus parses");
    let cq = run_with(&["-o", "codequality", CORPUS], "", registry());
    let issues: Vec<Value> = serde_json::from_str(&cq.stdout).expect("Code Quality parses");
    issues.iter().for_each(assert_code_quality_issue);
    let prints: HashSet<&str> = issues
        .iter()
        .filter_map(|i| i["fingerprint"].as_str())
        .collect();
    assert_eq!(prints.len(), issues.len(), "fingerprints are unique");
}

#[test]
fn the_agent_configuration_documented_for_gitlab_ci_passes_the_lint() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/gitlab-ci.md"))
        .expect("docs/gitlab-ci.md");
    let block = doc
        .split("```yaml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .find(|b| b.contains("ci_access:"))
        .expect("the doc shows an agent configuration");
    let (code, report) = json_report(&["-"], block);
    assert_eq!(code, 0);
    assert_eq!(
        report.results[0].subject_type,
        SubjectType::GitlabAgentConfig
    );
    assert!(report.results[0].findings.is_empty());
}

#[test]
fn empty_standard_input_is_an_error_not_a_pass() {
    // `kustomize build | fluxgate check -` where kustomize failed and the shell has no pipefail.
    for stdin in ["", "\n# only a comment\n---\n"] {
        let out = run(&["-"], stdin);
        assert_eq!(out.code, 2, "{stdin:?}");
        assert!(
            out.stderr
                .contains("<stdin>: standard input holds no document"),
            "{}",
            out.stderr
        );
    }
}

// ---------------------------------------------------------------------------------------------
// ci-impersonation in check: input errors, roles check cannot see, GitLab's own setups

const BROKEN_BINDING: &str = "apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: broken, namespace: team-a}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Deployment, name: x}
subjects: [{kind: Group, name: devs}]
";

#[test]
fn malformed_rbac_is_an_input_error_not_a_violation() {
    let out = run_with(&["-o", "json", "-"], BROKEN_BINDING, registry());
    assert_eq!(out.code, 2, "{}", out.stdout);
    let report: Report = serde_json::from_str(&out.stdout).expect("report");
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    let error = &report.errors[0];
    assert_eq!(error.line, Some(1));
    assert!(
        error
            .message
            .contains("[ci-impersonation] RoleBinding team-a/broken is malformed")
            && error.message.contains("The API server refuses it"),
        "{}",
        error.message
    );
    assert!(report.results[0].findings.is_empty());
    assert_eq!(report.summary.denied, 0);
    assert!(out.stderr.contains("is malformed"), "{}", out.stderr);
    // Whatever the mode: an input error is not a finding.
    let dir = TempDir::new();
    let config = dir.write("c.yaml", "mode: audit\n");
    let audit = run_with(&["--config", s(&config), "-"], BROKEN_BINDING, registry());
    assert_eq!(audit.code, 2);
    // The same binding for a GitLab identity is a violation (fail closed).
    let gitlab = BROKEN_BINDING.replace("name: devs", "name: 'gitlab:ci_job'");
    let out = run_with(&["-o", "json", "-"], &gitlab, registry());
    assert_eq!(out.code, 1, "{}", out.stdout);
}

#[test]
fn a_role_check_cannot_see_points_at_cluster_state() {
    let binding = "apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: deploy, namespace: team-a}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: deployer}
subjects: [{kind: Group, name: 'gitlab:project_env:42:review'}]
";
    let out = run_with(&["-"], binding, registry());
    assert_eq!(out.code, 1);
    assert!(
        out.stdout
            .contains("neither among the manifests checked nor in a --cluster-state file")
            && out
                .stdout
                .contains("give fluxgate check the cluster's roles with --cluster-state"),
        "{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains("create the role before the binding"),
        "{}",
        out.stdout
    );
    let dir = TempDir::new();
    let state = dir.write(
        "roles.yaml",
        "apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: deployer, namespace: team-a}
rules: [{apiGroups: [apps], resources: [deployments], verbs: [get, create, patch]}]
",
    );
    let out = run_with(&["--cluster-state", s(&state), "-"], binding, registry());
    assert_eq!(out.code, 0, "{}", out.stdout);
}

#[test]
fn gitlabs_documented_setups_check_clean_with_flux_installed() {
    let dir = TempDir::new();
    let template = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/gitlab-managed-resources/environment-template-default.yaml"
    ))
    .expect("template")
    .replace("{{ .environment.slug }}", "review")
    .replace("{{ .project.id }}", "42")
    .replace("{{ .agent.id }}", "7");
    let objects: Value = serde_yaml_ng::from_str(&template).expect("template");
    let mut manifests = String::new();
    for object in objects["objects"].as_array().expect("objects") {
        manifests.push_str(&serde_yaml_ng::to_string(object).expect("yaml"));
        manifests.push_str("---\n");
    }
    dir.write("environment.yaml", &manifests);
    for file in [
        "controller.yaml",
        "edit.yaml",
        "view.yaml",
        "reconciler.yaml",
    ] {
        let text =
            std::fs::read_to_string(format!("{CORPUS}/rbac/fluxcd+flux2/manifests/rbac/{file}"))
                .expect("flux rbac");
        dir.write(&format!("flux/{file}"), &text);
    }
    let view = std::fs::read_to_string(format!(
        "{CORPUS}/rbac/gitlab-docs/ci_cd_workflow__ci-job-view.yaml"
    ))
    .expect("ci-job-view");
    dir.write("ci-job-view.yaml", &view);
    let out = run_with(&["-o", "json", s(dir.path())], "", registry());
    let report: Report = serde_json::from_str(&out.stdout).expect("report");
    let found: Vec<&String> = report
        .results
        .iter()
        .flat_map(|r| r.findings.iter().map(|f| &f.message))
        .collect();
    assert_eq!(out.code, 0, "{found:#?}");
    assert!(found.is_empty(), "{found:#?}");
    assert_eq!(report.summary.objects, 8, "{:?}", report.summary);
}
