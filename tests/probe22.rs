//! `single-agent`: one GitLab agent for Kubernetes installation per cluster.
//!
//! Every request goes through the real engine as an AdmissionReview body; the cluster is the
//! real in-memory view, fed the way the reflectors feed it.

use std::path::PathBuf;
use std::sync::Barrier;
use std::time::Duration;

use fluxgate::admission::{Request, decode};
use fluxgate::cluster::reservation::LocalReservations;
use fluxgate::cluster::{MemoryView, ObjectKey};
use fluxgate::config::Config;
use fluxgate::engine::verdict::Verdict;
use fluxgate::engine::{Endpoint, Engine, settle_claims_locally};
use fluxgate::finding::PolicyId;
use serde_json::{Value, json};

const AGENTK: &str = "registry.gitlab.com/gitlab-org/cluster-integration/gitlab-agent/agentk";

fn corpus() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/corpus"
    ))
}

/// The objects of a manifest file, as `kubectl apply -n <namespace>` would store them.
fn manifests(relative: &str, namespace: &str) -> Vec<Value> {
    let path = corpus().join(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut objects = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(&text) {
        let mut value: Value = serde::Deserialize::deserialize(document).expect("yaml");
        if value.is_null() {
            continue;
        }
        let cluster_scoped = matches!(
            value["kind"].as_str(),
            Some("ClusterRole" | "ClusterRoleBinding" | "Namespace")
        );
        if !cluster_scoped && value["metadata"]["namespace"].is_null() {
            value["metadata"]["namespace"] = json!(namespace);
        }
        objects.push(value);
    }
    objects
}

struct Install {
    name: &'static str,
    /// How the denial names it.
    id: &'static str,
    objects: Vec<Value>,
}

impl Install {
    fn deployment(&self) -> Value {
        self.objects
            .iter()
            .find(|o| o["kind"] == "Deployment")
            .cloned()
            .expect("every install has a Deployment")
    }
}

const LEGACY: &str =
    "gitlab-agent/legacy-kpt-abaer123+gitlab-agent/build/deployment/gitlab-agent/base/base.yaml";

/// The three rendered chart installs and the 2021 kpt manifests.
fn corpus_installs() -> Vec<Install> {
    vec![
        Install {
            name: "chart, release gitlab-agent",
            id: "Helm release gitlab-agent/gitlab-agent",
            objects: manifests(
                "gitlab-agent/rendered/release-gitlab-agent__ns-gitlab-agent.yaml",
                "gitlab-agent",
            ),
        },
        Install {
            name: "chart, release test",
            id: "Helm release gitlab-agent-test/test",
            objects: manifests(
                "gitlab-agent/rendered/release-test__ns-gitlab-agent-test.yaml",
                "gitlab-agent-test",
            ),
        },
        Install {
            name: "chart, release second-gitlab-agent",
            id: "Helm release gitlab-agent/second-gitlab-agent",
            objects: manifests(
                "gitlab-agent/rendered/release-second-gitlab-agent__ns-gitlab-agent.yaml",
                "gitlab-agent",
            ),
        },
        Install {
            name: "legacy kpt",
            // The kpt base's namespace transformer puts it in gitlab-agent; here it lives
            // in its own namespace so that it is a different installation from the chart's.
            id: "Deployment legacy-agent/gitlab-agent",
            objects: manifests(LEGACY, "legacy-agent"),
        },
    ]
}

/// An engine with this policy alone (other policies judge some of the same kinds, a
/// HelmRelease's chart source for one, and would blur what these tests check), and the
/// reservation of one process: what `fluxgate serve` without a cluster answers with.
struct Judge {
    engine: Engine,
    reservations: LocalReservations,
}

impl Judge {
    fn prefetch(&self, request: &Request<'_>) -> Vec<ObjectKey> {
        self.engine.prefetch(request)
    }

    fn config(&self) -> std::sync::Arc<Config> {
        self.engine.config()
    }
}

fn engine() -> Judge {
    engine_with("")
}

fn engine_with(yaml: &str) -> Judge {
    Judge {
        engine: Engine::with_policies(
            vec![Box::new(fluxgate::policy::single_agent::SingleAgent)],
            Config::from_yaml(yaml, "test.yaml").expect("valid config"),
            None,
        ),
        reservations: LocalReservations::default(),
    }
}

fn review_body(operation: &str, object: &Value, old: Option<&Value>, dry_run: bool) -> String {
    let source = if object.is_null() {
        old.expect("an object")
    } else {
        object
    };
    let api_version = source["apiVersion"].as_str().expect("apiVersion");
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let kind = source["kind"].as_str().expect("kind");
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "0d6f7f8e-1111-4c3b-9a3e-5f2f2b7f0001",
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": format!("{}s", kind.to_lowercase())},
            "name": source["metadata"]["name"],
            "namespace": source["metadata"]["namespace"],
            "operation": operation,
            "userInfo": {"username": "kapi-admin", "groups": ["system:masters", "system:authenticated"]},
            "object": object,
            "oldObject": old,
            "dryRun": dry_run
        }
    })
    .to_string()
}

fn judge_body(judge: &Judge, view: &MemoryView, body: &str) -> Verdict {
    let request = decode(body.as_bytes()).expect("a valid AdmissionReview");
    let mut verdict = judge.engine.review(Endpoint::Validate, &request, view).0;
    settle_claims_locally(&mut verdict, &judge.reservations, view);
    verdict
}

fn create(engine: &Judge, view: &MemoryView, object: &Value) -> Verdict {
    judge_body(engine, view, &review_body("CREATE", object, None, false))
}

fn create_dry_run(engine: &Judge, view: &MemoryView, object: &Value) -> Verdict {
    judge_body(engine, view, &review_body("CREATE", object, None, true))
}

fn update(engine: &Judge, view: &MemoryView, old: &Value, new: &Value) -> Verdict {
    judge_body(engine, view, &review_body("UPDATE", new, Some(old), false))
}

fn apply_all(view: &MemoryView, objects: &[Value]) {
    for object in objects {
        view.apply(object).expect("the view takes it");
    }
}

fn delete_all(view: &MemoryView, objects: &[Value]) {
    for object in objects {
        let api_version = object["apiVersion"].as_str().unwrap_or("");
        view.delete(&ObjectKey {
            group: api_version
                .rsplit_once('/')
                .map_or("", |(g, _)| g)
                .to_string(),
            kind: object["kind"].as_str().unwrap_or("").to_string(),
            namespace: object["metadata"]["namespace"].as_str().map(str::to_string),
            name: object["metadata"]["name"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        });
    }
}

/// What the API server stores: the object with a uid.
fn stored(mut object: Value, uid: &str) -> Value {
    object["metadata"]["uid"] = json!(uid);
    object
}

fn assert_allowed(verdict: &Verdict, what: &str) {
    assert!(
        verdict.allowed,
        "{what}: denied: {}",
        verdict.denial_message()
    );
    assert!(
        verdict
            .outcomes
            .iter()
            .all(|o| o.finding.policy != PolicyId::SingleAgent),
        "{what}: {:?}",
        verdict.outcomes
    );
}

fn assert_denied(verdict: &Verdict, what: &str) -> String {
    assert!(!verdict.allowed, "{what}: allowed");
    let message = verdict.denial_message();
    assert!(message.starts_with("[single-agent] "), "{what}: {message}");
    message
}

fn deployment(namespace: &str, name: &str, containers: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": containers}}
        }
    })
}

fn cluster_with_the_gitlab_agent_chart() -> (MemoryView, Install) {
    let view = MemoryView::new();
    let install = corpus_installs().remove(0);
    apply_all(&view, &install.objects);
    (view, install)
}

fn agent(namespace: &str, name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "agent", "image": format!("{AGENTK}:v17.3.1"),
                    "args": ["--token-file=/etc/agentk/secrets/token", "--kas-address=wss://kas.gitlab.example"]}]}}}
    })
}

#[test]
fn probe_same_name_other_namespace() {
    let view = MemoryView::new();
    view.apply(&stored(agent("agents-b", "agent-47"), "uid-b"))
        .expect("applies");
    let v = create(&engine(), &view, &agent("agents-a", "agent-47"));
    eprintln!("same name: allowed={} {}", v.allowed, v.denial_message());
    let v = create(&engine(), &view, &agent("agents-a", "agent-48"));
    eprintln!("other name: allowed={} {}", v.allowed, v.denial_message());
}
