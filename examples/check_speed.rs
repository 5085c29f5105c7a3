//! How many objects a second `fluxgate check` reads and judges, on one core.
//!
//!     cargo run --release --example check_speed [OBJECTS]
//!
//! Generates a multi-document YAML file of OBJECTS (default 20,000) objects shaped like a
//! `kustomize build` of a GitOps repository (Flux sources, Deployments, RBAC, ConfigMaps), then
//! runs the whole check (read, parse, fill the cluster view, judge every object with every
//! policy, write the JSON report) and prints the rate. Issue 7 asks for 10,000/s at least.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use fluxgate::check;
use fluxgate::config::Config;
use fluxgate::engine::Engine;
use fluxgate::report::{self, Format};

fn object(i: usize, out: &mut String) {
    let ns = format!("team-{}", i % 50);
    let _ = match i % 4 {
        0 => write!(
            out,
            "apiVersion: source.toolkit.fluxcd.io/v1\nkind: OCIRepository\nmetadata:\n  name: app-{i}\n  namespace: {ns}\n  labels:\n    app.kubernetes.io/name: app-{i}\nspec:\n  interval: 5m\n  url: oci://registry.gitlab.com/group/project/app-{i}\n  ref:\n    tag: 1.2.{i}\n  verify:\n    provider: cosign\n    matchOIDCIdentity:\n    - issuer: ^https://gitlab\\.com$\n      subject: ^https://gitlab\\.com/group/project//\\.gitlab-ci\\.yml@refs/heads/main$\n"
        ),
        1 => write!(
            out,
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web-{i}\n  namespace: {ns}\n  labels: {{app: web-{i}}}\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {{app: web-{i}}}\n  template:\n    metadata:\n      labels: {{app: web-{i}}}\n    spec:\n      containers:\n      - name: web\n        image: registry.example.com/web:1.{i}\n        ports:\n        - containerPort: 8080\n        resources:\n          requests: {{cpu: 100m, memory: 64Mi}}\n"
        ),
        2 => write!(
            out,
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: ci-{i}\n  namespace: {ns}\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: edit\nsubjects:\n- apiGroup: rbac.authorization.k8s.io\n  kind: Group\n  name: gitlab:project_env:{i}:production\n"
        ),
        _ => write!(
            out,
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings-{i}\n  namespace: {ns}\ndata:\n  LOG_LEVEL: info\n  FEATURE_FLAGS: \"a,b,c\"\n  config.yaml: |\n    server:\n      port: 8080\n      replicas: {i}\n"
        ),
    };
    out.push_str("---\n");
}

fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let mut text = String::with_capacity(count * 400);
    for i in 0..count {
        object(i, &mut text);
    }
    let path: PathBuf =
        std::env::temp_dir().join(format!("fluxgate-speed-{}.yaml", std::process::id()));
    if let Err(e) = std::fs::write(&path, &text) {
        eprintln!("cannot write {}: {e}", path.display());
        std::process::exit(2);
    }
    let engine = Engine::new(Config::default(), None);

    // Reading and parsing alone, to tell it apart from judging.
    let start = Instant::now();
    let mut inputs = check::reader::Inputs::default();
    check::reader::Reader::new(&mut std::io::empty())
        .read_paths(std::slice::from_ref(&path), &mut inputs);
    let reading = start.elapsed();
    drop(inputs);

    let start = Instant::now();
    let report = check::check(
        &engine,
        std::slice::from_ref(&path),
        &[],
        &mut std::io::empty(),
    );
    let mut sink = Vec::new();
    let written = report::write(&report, Format::Json, false, &mut sink);
    let elapsed = start.elapsed();
    let _ = std::fs::remove_file(&path);

    if let Err(e) = written {
        eprintln!("cannot write the report: {e}");
        std::process::exit(2);
    }
    let objects = report.summary.objects;
    println!(
        "{objects} objects ({:.1} MiB of YAML) checked in {:.3} s: {:.0} objects/s ({} errors); reading and parsing alone: {:.3} s",
        text.len() as f64 / (1024.0 * 1024.0),
        elapsed.as_secs_f64(),
        objects as f64 / elapsed.as_secs_f64(),
        report.summary.errors,
        reading.as_secs_f64(),
    );
}
