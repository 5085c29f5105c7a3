//! `single-agent`: one GitLab agent for Kubernetes installation per cluster.
//!
//! Every request goes through the real engine as an AdmissionReview body; the cluster is the
//! real in-memory view, fed the way the reflectors feed it.

use std::path::PathBuf;
use std::sync::Barrier;
use std::time::Duration;

use fluxgate::admission::decode;
use fluxgate::cluster::{MemoryView, ObjectKey};
use fluxgate::config::Config;
use fluxgate::engine::verdict::Verdict;
use fluxgate::engine::{Endpoint, Engine};
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

/// An engine with this policy alone: other policies judge some of the same kinds (a
/// HelmRelease's chart source, for one) and would blur what these tests check.
fn engine() -> Engine {
    engine_with("")
}

fn engine_with(yaml: &str) -> Engine {
    Engine::with_policies(
        vec![Box::new(
            fluxgate::policy::single_agent::SingleAgent::default(),
        )],
        Config::from_yaml(yaml, "test.yaml").expect("valid config"),
        None,
    )
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

fn judge_body(engine: &Engine, view: &MemoryView, body: &str) -> Verdict {
    let request = decode(body.as_bytes()).expect("a valid AdmissionReview");
    engine.review(Endpoint::Validate, &request, view).0
}

fn create(engine: &Engine, view: &MemoryView, object: &Value) -> Verdict {
    judge_body(engine, view, &review_body("CREATE", object, None, false))
}

fn create_dry_run(engine: &Engine, view: &MemoryView, object: &Value) -> Verdict {
    judge_body(engine, view, &review_body("CREATE", object, None, true))
}

fn update(engine: &Engine, view: &MemoryView, old: &Value, new: &Value) -> Verdict {
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

#[test]
fn every_install_from_the_corpus_alone_is_allowed() {
    for install in corpus_installs() {
        let engine = engine();
        let view = MemoryView::new();
        for object in &install.objects {
            assert_allowed(&create(&engine, &view, object), install.name);
            view.apply(object).expect("applies");
        }
        let installations = fluxgate::cluster::ClusterView::agent_installations(&view)
            .found()
            .expect("synced");
        assert_eq!(
            installations.len(),
            1,
            "{}: {installations:?}",
            install.name
        );
        assert_eq!(
            installations[0].id.to_string(),
            install.id,
            "{}",
            install.name
        );
    }
}

#[test]
fn any_two_different_installs_are_a_violation_in_both_orders() {
    let installs = corpus_installs();
    for existing in &installs {
        for second in installs.iter().filter(|i| i.name != existing.name) {
            let view = MemoryView::new();
            apply_all(&view, &existing.objects);
            let what = format!("{} then {}", existing.name, second.name);
            let message = assert_denied(&create(&engine(), &view, &second.deployment()), &what);
            for expected in [
                second.id,
                existing.id,
                "ci_access",
                "user_access",
                "access_as",
                "doc/user/clusters/agent/ci_cd_workflow",
            ] {
                assert!(
                    message.contains(expected),
                    "{what}: {expected:?} missing in {message}"
                );
            }
        }
    }
}

#[test]
fn the_denial_names_the_new_object_what_makes_it_an_agent_and_the_existing_objects() {
    let (view, _) = cluster_with_the_gitlab_agent_chart();
    let second = corpus_installs().remove(2);
    let message = assert_denied(&create(&engine(), &view, &second.deployment()), "second");
    assert!(
        message.contains("Deployment gitlab-agent/second-gitlab-agent-v2"),
        "{message}"
    );
    assert!(message.contains(&format!("{AGENTK}:v17.3.1")), "{message}");
    assert!(
        message.contains("Deployment gitlab-agent/gitlab-agent-v2"),
        "{message}"
    );
}

#[test]
fn the_charts_upgrade_from_name_to_name_v2_is_the_same_installation() {
    let install = corpus_installs().remove(0);
    let mut v1 = install.deployment();
    v1["metadata"]["name"] = json!("gitlab-agent");
    let view = MemoryView::new();
    view.apply(&stored(v1, "uid-v1")).expect("applies");
    assert_allowed(
        &create(&engine(), &view, &install.deployment()),
        "chart -v2",
    );

    // The same without Helm's labels: the epoch suffix alone ties them.
    let legacy = manifests(LEGACY, "gitlab-agent");
    let old = legacy
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .cloned()
        .expect("deployment");
    let mut renamed = old.clone();
    renamed["metadata"]["name"] = json!("gitlab-agent-v2");
    let view = MemoryView::new();
    view.apply(&old).expect("applies");
    assert_allowed(&create(&engine(), &view, &renamed), "kpt -v2");
}

#[test]
fn scaling_rolling_out_and_bumping_the_existing_install_are_allowed() {
    let (view, install) = cluster_with_the_gitlab_agent_chart();
    // Even where a second installation predates the policy: blocking the first one's
    // rollouts would not remove the second, the audit scan reports it.
    apply_all(&view, &corpus_installs().remove(1).objects);
    let old = stored(install.deployment(), "uid-agent");
    let mut scaled = old.clone();
    scaled["spec"]["replicas"] = json!(3);
    let mut restarted = old.clone();
    restarted["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"] =
        json!("2026-11-21T18:00:00Z");
    let mut bumped = old.clone();
    bumped["spec"]["template"]["spec"]["containers"][0]["image"] =
        json!(format!("{AGENTK}:v17.4.0"));
    bumped["metadata"]["labels"]["helm.sh/chart"] = json!("gitlab-agent-2.7.0");
    for (what, new) in [
        ("scale", scaled),
        ("rollout restart", restarted),
        ("upgrade", bumped),
    ] {
        assert_allowed(&update(&engine(), &view, &old, &new), what);
    }
}

#[test]
fn replicasets_and_pods_of_the_existing_install_are_allowed() {
    for install in [corpus_installs().remove(0), corpus_installs().remove(3)] {
        let engine = engine();
        let view = MemoryView::new();
        let deployment = stored(install.deployment(), "uid-deployment");
        view.apply(&deployment).expect("applies");
        // An unrelated installation elsewhere makes any mistake in ownership a denial.
        apply_all(&view, &corpus_installs().remove(1).objects);

        let namespace = deployment["metadata"]["namespace"]
            .as_str()
            .expect("namespace");
        let name = deployment["metadata"]["name"].as_str().expect("name");
        let template = &deployment["spec"]["template"];
        let mut labels = template["metadata"]["labels"].clone();
        labels["pod-template-hash"] = json!("5d4f8b");
        let replicaset = json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {
                "name": format!("{name}-5d4f8b"), "namespace": namespace, "uid": "uid-rs",
                "labels": labels,
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name,
                    "uid": "uid-deployment", "controller": true, "blockOwnerDeletion": true}]
            },
            "spec": {"replicas": 2, "template": template}
        });
        assert_allowed(
            &create(&engine, &view, &replicaset),
            &format!("{}: ReplicaSet", install.name),
        );

        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": format!("{name}-5d4f8b-x7k2p"), "namespace": namespace, "uid": "uid-pod",
                "labels": labels,
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{name}-5d4f8b"),
                    "uid": "uid-rs", "controller": true, "blockOwnerDeletion": true}]
            },
            "spec": template["spec"]
        });
        // Before the ReplicaSet reaches the view (its watch event may lag) and after.
        assert_allowed(
            &create(&engine, &view, &pod),
            &format!("{}: Pod, ReplicaSet not seen yet", install.name),
        );
        view.apply(&replicaset).expect("applies");
        assert_allowed(
            &create(&engine, &view, &pod),
            &format!("{}: Pod", install.name),
        );
    }
}

#[test]
fn a_new_agent_pod_has_the_view_fetch_its_owner_first() {
    let install = corpus_installs().remove(0);
    let mut labels = install.deployment()["spec"]["template"]["metadata"]["labels"].clone();
    labels["pod-template-hash"] = json!("5d4f8b");
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "gitlab-agent-v2-5d4f8b-x7k2p", "namespace": "gitlab-agent", "labels": labels,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "gitlab-agent-v2-5d4f8b", "uid": "u", "controller": true}]},
        "spec": install.deployment()["spec"]["template"]["spec"]
    });
    let body = review_body("CREATE", &pod, None, false);
    let wanted = engine().prefetch(&decode(body.as_bytes()).expect("review"));
    assert_eq!(
        wanted,
        vec![ObjectKey {
            group: "apps".into(),
            kind: "ReplicaSet".into(),
            namespace: Some("gitlab-agent".into()),
            name: "gitlab-agent-v2-5d4f8b".into(),
        }]
    );

    // Other workloads cost the view nothing.
    let mut web = pod.clone();
    web["metadata"]["labels"] = json!({"app": "web"});
    web["spec"] = json!({"containers": [{"name": "web", "image": "nginx:1.25"}]});
    let body = review_body("CREATE", &web, None, false);
    assert!(
        engine()
            .prefetch(&decode(body.as_bytes()).expect("review"))
            .is_empty()
    );
}

#[test]
fn a_job_of_the_existing_installs_cronjob_is_allowed() {
    let view = MemoryView::new();
    let cronjob = json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "agent-probe", "namespace": "ops", "uid": "uid-cron"},
        "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "agentk", "image": format!("{AGENTK}:v17.3.1")}]}}}}}
    });
    view.apply(&cronjob).expect("applies");
    let job = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "agent-probe-29400000", "namespace": "ops",
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "agent-probe", "uid": "uid-cron", "controller": true}]},
        "spec": cronjob["spec"]["jobTemplate"]["spec"]
    });
    assert_allowed(&create(&engine(), &view, &job), "Job of the CronJob");
}

#[test]
fn agentk_in_a_cronjob_is_caught() {
    let (view, _) = cluster_with_the_gitlab_agent_chart();
    let cronjob = json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "nightly", "namespace": "team-a"},
        "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "OnFailure",
            "containers": [{"name": "sync", "image": format!("{AGENTK}:v17.3.1"),
                "args": ["--token-file=/t/token", "--kas-address=wss://kas.gitlab.com"]}]}}}}}
    });
    let message = assert_denied(&create(&engine(), &view, &cronjob), "CronJob");
    assert!(message.contains("CronJob team-a/nightly"), "{message}");
}

#[test]
fn an_ownerless_pod_running_agentk_is_caught() {
    let (view, _) = cluster_with_the_gitlab_agent_chart();
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "debug-agent", "namespace": "team-a"},
        "spec": {"containers": [{"name": "agentk", "image": format!("{AGENTK}:v17.3.1")}]}
    });
    let message = assert_denied(&create(&engine(), &view, &pod), "Pod");
    assert!(message.contains("Pod team-a/debug-agent"), "{message}");
}

#[test]
fn an_ownerless_pod_in_the_cluster_is_an_installation() {
    let view = MemoryView::new();
    view.apply(&json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "debug-agent", "namespace": "team-a", "uid": "uid-pod"},
        "spec": {"containers": [{"name": "agentk", "image": format!("{AGENTK}:v17.3.1")}]}
    }))
    .expect("applies");
    let install = corpus_installs().remove(0);
    let message = assert_denied(&create(&engine(), &view, &install.deployment()), "chart");
    assert!(message.contains("Pod team-a/debug-agent"), "{message}");
}

#[test]
fn images_from_any_registry_by_tag_or_digest_in_any_container_list_are_caught() {
    let cases = [
        (
            "mirror registry",
            json!([{"name": "agent", "image": "harbor.corp.example:8443/proxy/gitlab-org/cluster-integration/gitlab-agent/agentk:v17.3.1"}]),
            "containers",
        ),
        (
            "digest only",
            json!([{"name": "agent", "image": format!("{AGENTK}@sha256:3b0c1d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c")}]),
            "containers",
        ),
        (
            "init container",
            json!([{"name": "bootstrap", "image": format!("{AGENTK}:v17.3.1")}]),
            "initContainers",
        ),
    ];
    for (what, containers, field) in cases {
        let (view, _) = cluster_with_the_gitlab_agent_chart();
        let mut object = deployment(
            "team-a",
            "sneaky",
            json!([{"name": "app", "image": "nginx:1.25"}]),
        );
        if field == "initContainers" {
            object["spec"]["template"]["spec"]["initContainers"] = containers;
        } else {
            object["spec"]["template"]["spec"]["containers"] = containers;
        }
        let message = assert_denied(&create(&engine(), &view, &object), what);
        assert!(
            message.contains("Deployment team-a/sneaky"),
            "{what}: {message}"
        );
    }
}

#[test]
fn an_ephemeral_agentk_container_in_a_pod_is_caught_by_the_scan() {
    // Ephemeral containers arrive through the pods/ephemeralcontainers subresource, which
    // the engine does not judge; the audit scan judges the Pod as a dry-run CREATE.
    let (view, _) = cluster_with_the_gitlab_agent_chart();
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "team-a"},
        "spec": {
            "containers": [{"name": "web", "image": "nginx:1.25"}],
            "ephemeralContainers": [{"name": "debugger", "image": format!("{AGENTK}:v17.3.1")}]
        }
    });
    assert_denied(&create_dry_run(&engine(), &view, &pod), "ephemeral");
}

#[test]
fn configured_image_patterns_are_caught_in_requests_and_in_the_view() {
    let config = "policies:\n  single-agent:\n    imagePatterns: ['registry\\.corp\\.example/platform/gitlab-agentk']\n";
    let engine = engine_with(config);
    let view = MemoryView::new();
    view.set_agent_detector(engine.config().policies.single_agent.detector().clone());
    let renamed = deployment(
        "platform",
        "agent",
        json!([{"name": "agent", "image": "registry.corp.example/platform/gitlab-agentk:v17.3.1"}]),
    );
    view.apply(&renamed).expect("applies");
    let install = corpus_installs().remove(0);
    let message = assert_denied(
        &create(&engine, &view, &install.deployment()),
        "chart after renamed mirror",
    );
    assert!(message.contains("Deployment platform/agent"), "{message}");

    let view = MemoryView::new();
    install
        .objects
        .iter()
        .for_each(|o| view.apply(o).expect("applies"));
    assert_denied(
        &create(&engine, &view, &renamed),
        "renamed mirror after chart",
    );
}

#[test]
fn adding_agentk_to_an_unrelated_workload_is_a_second_installation() {
    let (view, _) = cluster_with_the_gitlab_agent_chart();
    let old = stored(
        deployment(
            "team-a",
            "podinfo",
            json!([{"name": "podinfo", "image": "ghcr.io/stefanprodan/podinfo:6.5.0"}]),
        ),
        "uid-podinfo",
    );
    let mut new = old.clone();
    new["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .expect("containers")
        .push(json!({"name": "agentk", "image": format!("{AGENTK}:v17.3.1")}));
    let message = assert_denied(&update(&engine(), &view, &old, &new), "sidecar");
    assert!(message.contains("Deployment team-a/podinfo"), "{message}");
    assert!(
        message.contains("Helm release gitlab-agent/gitlab-agent"),
        "{message}"
    );
}

#[test]
fn removing_agentk_from_a_workload_takes_it_out_of_the_view() {
    let view = MemoryView::new();
    let agent = stored(
        deployment(
            "team-a",
            "side",
            json!([{"name": "agentk", "image": format!("{AGENTK}:v17.3.1")}]),
        ),
        "uid-side",
    );
    view.apply(&agent).expect("applies");
    let mut plain = agent.clone();
    plain["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.25");
    view.apply(&plain).expect("applies");
    let install = corpus_installs().remove(0);
    assert_allowed(
        &create(&engine(), &view, &install.deployment()),
        "after the sidecar left",
    );
}

#[test]
fn two_concurrent_installs_through_one_process_exactly_one_is_allowed() {
    let installs = corpus_installs();
    let first = installs[1].deployment();
    let second = installs[2].deployment();
    for round in 0..50 {
        let engine = engine();
        let view = MemoryView::new();
        let start = Barrier::new(2);
        let verdicts: Vec<Verdict> = std::thread::scope(|s| {
            let handles: Vec<_> = [&first, &second]
                .into_iter()
                .map(|object| {
                    let (engine, view, start) = (&engine, &view, &start);
                    s.spawn(move || {
                        let body = review_body("CREATE", object, None, false);
                        start.wait();
                        judge_body(engine, view, &body)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("no panic"))
                .collect()
        });
        let allowed = verdicts.iter().filter(|v| v.allowed).count();
        assert_eq!(
            allowed,
            1,
            "round {round}: {:?}",
            verdicts
                .iter()
                .map(Verdict::denial_message)
                .collect::<Vec<_>>()
        );
        let denied = verdicts.iter().find(|v| !v.allowed).expect("one denied");
        assert!(
            denied
                .denial_message()
                .contains("has not appeared in the cluster yet"),
            "{}",
            denied.denial_message()
        );
    }
}

#[test]
fn a_reservation_expires_if_the_object_never_appears() {
    let engine = engine_with("policies:\n  single-agent:\n    reservationTtlSeconds: 1\n");
    let view = MemoryView::new();
    let installs = corpus_installs();
    assert_allowed(&create(&engine, &view, &installs[1].deployment()), "first");
    // The API server (or another webhook) rejected it after us: it never appears.
    assert_denied(
        &create(&engine, &view, &installs[2].deployment()),
        "second, within the ttl",
    );
    std::thread::sleep(Duration::from_millis(1100));
    assert_allowed(
        &create(&engine, &view, &installs[2].deployment()),
        "second, after the ttl",
    );
}

#[test]
fn a_retried_create_of_the_same_install_is_allowed() {
    let engine = engine();
    let view = MemoryView::new();
    let install = corpus_installs().remove(1);
    assert_allowed(&create(&engine, &view, &install.deployment()), "first try");
    assert_allowed(&create(&engine, &view, &install.deployment()), "retry");
}

#[test]
fn dry_run_requests_never_reserve() {
    let engine = engine();
    let view = MemoryView::new();
    let installs = corpus_installs();
    assert_allowed(
        &create_dry_run(&engine, &view, &installs[1].deployment()),
        "dry run",
    );
    assert_allowed(
        &create(&engine, &view, &installs[2].deployment()),
        "real create after a dry run",
    );
    // A dry run is judged against the reservation the real one made.
    assert_denied(
        &create_dry_run(&engine, &view, &installs[1].deployment()),
        "dry run after",
    );
}

#[test]
fn deleting_the_existing_install_lets_a_new_one_in() {
    let engine = engine();
    let view = MemoryView::new();
    let installs = corpus_installs();
    assert_allowed(&create(&engine, &view, &installs[0].deployment()), "first");
    apply_all(&view, &installs[0].objects);
    assert_denied(
        &create(&engine, &view, &installs[1].deployment()),
        "while it runs",
    );
    // The watch reports it deleted: neither the view nor a reservation keeps the next out.
    delete_all(&view, &installs[0].objects);
    assert_allowed(
        &create(&engine, &view, &installs[1].deployment()),
        "after it is gone",
    );
}

#[test]
fn an_install_that_came_and_went_before_the_next_request_leaves_no_reservation() {
    let engine = engine();
    let view = MemoryView::new();
    let installs = corpus_installs();
    assert_allowed(&create(&engine, &view, &installs[0].deployment()), "first");
    apply_all(&view, &installs[0].objects);
    delete_all(&view, &installs[0].objects);
    assert_allowed(&create(&engine, &view, &installs[1].deployment()), "next");
}

#[test]
fn the_scan_of_objects_already_in_the_cluster_reports_each_duplicate_installation() {
    let installs = corpus_installs();
    let view = MemoryView::new();
    let first = stored(installs[0].deployment(), "uid-first");
    view.apply(&first).expect("applies");
    // One installation: its objects, judged as they are stored, are fine.
    assert_allowed(&create_dry_run(&engine(), &view, &first), "alone");

    let second = stored(installs[1].deployment(), "uid-second");
    view.apply(&second).expect("applies");
    for (object, own, other) in [
        (&first, installs[0].id, installs[1].id),
        (&second, installs[1].id, installs[0].id),
    ] {
        let message = assert_denied(&create_dry_run(&engine(), &view, object), own);
        assert!(message.contains(&format!("belongs to {own}")), "{message}");
        assert!(message.contains(other), "{message}");
    }
}

#[test]
fn the_sanctioned_installation_is_the_only_one_allowed_and_needs_no_cluster_state() {
    let engine = engine_with(
        "policies:\n  single-agent:\n    sanctioned: {namespace: gitlab-agent, release: gitlab-agent}\n",
    );
    let view = MemoryView::new();
    view.set_synced(false);
    let installs = corpus_installs();
    assert_allowed(
        &create(&engine, &view, &installs[0].deployment()),
        "sanctioned",
    );
    for other in &installs[1..] {
        let message = assert_denied(&create(&engine, &view, &other.deployment()), other.name);
        assert!(
            message.contains("gitlab-agent/gitlab-agent named by policies.single-agent.sanctioned"),
            "{message}"
        );
        assert!(message.contains(other.id), "{message}");
    }
    // Its ReplicaSets and Pods, known only by their labels and owner references.
    let deployment = installs[0].deployment();
    let mut labels = deployment["spec"]["template"]["metadata"]["labels"].clone();
    labels["pod-template-hash"] = json!("5d4f8b");
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "gitlab-agent-v2-5d4f8b-x7k2p", "namespace": "gitlab-agent", "labels": labels,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "gitlab-agent-v2-5d4f8b", "uid": "u", "controller": true}]},
        "spec": deployment["spec"]["template"]["spec"]
    });
    assert_allowed(&create(&engine, &view, &pod), "sanctioned Pod");

    // The kpt install, sanctioned by its Deployment's name.
    let engine = engine_with(
        "policies:\n  single-agent:\n    sanctioned: {namespace: legacy-agent, release: gitlab-agent}\n",
    );
    assert_allowed(
        &create(&engine, &view, &installs[3].deployment()),
        "sanctioned kpt",
    );
    assert_denied(
        &create(&engine, &view, &installs[0].deployment()),
        "chart when kpt is sanctioned",
    );
}

#[test]
fn an_unsynced_view_denies_agents_and_nothing_else() {
    let view = MemoryView::new();
    view.set_synced(false);
    let install = corpus_installs().remove(0);
    let message = assert_denied(&create(&engine(), &view, &install.deployment()), "unsynced");
    assert!(message.contains("not synced"), "{message}");
    let web = deployment(
        "team-a",
        "web",
        json!([{"name": "web", "image": "nginx:1.25"}]),
    );
    assert_allowed(&create(&engine(), &view, &web), "not an agent");

    let lenient = engine_with("policies:\n  single-agent:\n    whenUnknown: allow\n");
    let verdict = create(&lenient, &view, &install.deployment());
    assert!(verdict.allowed, "{}", verdict.denial_message());
    assert!(
        verdict.warnings.iter().any(|w| w.contains("not synced")),
        "{:?}",
        verdict.warnings
    );
}

/// The Helm repositories the HelmReleases below pull from, as the cluster has them: plain
/// HTTPS, so that signed-oci-sources (which judges HelmReleases too) has nothing to say.
fn add_helm_repositories(view: &MemoryView) {
    for (name, url) in [
        ("gitlab", "https://charts.gitlab.io"),
        ("podinfo", "https://stefanprodan.github.io/podinfo"),
    ] {
        view.apply(&json!({
            "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "HelmRepository",
            "metadata": {"name": name, "namespace": "flux-system"},
            "spec": {"url": url}
        }))
        .expect("applies");
    }
}

fn helm_release(name: &str, namespace: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec
    })
}

#[test]
fn a_flux_helmrelease_of_the_agent_chart_is_an_installation() {
    let (view, _) = cluster_with_the_gitlab_agent_chart();
    add_helm_repositories(&view);
    let release = helm_release(
        "gitlab-agent",
        "flux-system",
        json!({"interval": "1h", "targetNamespace": "team-b",
            "chart": {"spec": {"chart": "gitlab-agent", "version": "2.6.2",
                "sourceRef": {"kind": "HelmRepository", "name": "gitlab"}}}}),
    );
    let message = assert_denied(&create(&engine(), &view, &release), "HelmRelease");
    assert!(
        message.contains("HelmRelease flux-system/gitlab-agent"),
        "{message}"
    );
    assert!(
        message.contains("Helm release team-b/team-b-gitlab-agent"),
        "{message}"
    );

    let by_ref = helm_release(
        "agent",
        "flux-system",
        json!({"interval": "1h", "chartRef": {"kind": "OCIRepository", "name": "gitlab-agent-chart"}}),
    );
    assert_denied(&create(&engine(), &view, &by_ref), "chartRef");

    let other = helm_release(
        "podinfo",
        "flux-system",
        json!({"interval": "1h", "chart": {"spec": {"chart": "podinfo", "sourceRef": {"kind": "HelmRepository", "name": "podinfo"}}}}),
    );
    assert_allowed(&create(&engine(), &view, &other), "another chart");
}

#[test]
fn a_helmrelease_and_the_deployment_it_installs_are_one_installation() {
    for (name, spec, release_namespace) in [
        (
            "gitlab-agent",
            json!({"targetNamespace": "gitlab-agent"}),
            "gitlab-agent",
        ),
        (
            "agent",
            json!({"releaseName": "gitlab-agent"}),
            "flux-system",
        ),
        // helm-controller shortens release names over 53 characters with a hash.
        (
            "gitlab-agent-for-the-production-platform",
            json!({"targetNamespace": "a-very-long-target-namespace"}),
            "a-very-long-target-namespace",
        ),
    ] {
        let mut spec = spec;
        spec["interval"] = json!("1h");
        spec["chart"] = json!({"spec": {"chart": "gitlab-agent", "sourceRef": {"kind": "HelmRepository", "name": "gitlab"}}});
        let release = helm_release(name, "flux-system", spec);
        let engine = engine();
        let view = MemoryView::new();
        add_helm_repositories(&view);
        assert_allowed(&create(&engine, &view, &release), name);
        view.apply(&release).expect("applies");
        let id = fluxgate::cluster::ClusterView::agent_installations(&view)
            .found()
            .expect("synced")[0]
            .id
            .clone();
        assert_eq!(id.namespace(), release_namespace);

        // The Deployment helm-controller renders for that release.
        let mut rendered = corpus_installs().remove(0).deployment();
        rendered["metadata"]["namespace"] = json!(release_namespace);
        rendered["metadata"]["labels"]["app.kubernetes.io/instance"] = json!(id.name());
        rendered["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/instance"] =
            json!(id.name());
        assert_allowed(
            &create(&engine, &view, &rendered),
            &format!("{name}: its Deployment"),
        );
        assert_denied(
            &create(&engine, &view, &corpus_installs().remove(1).deployment()),
            &format!("{name}: another"),
        );
    }
}

#[test]
fn the_api_servers_deployment_creates_are_not_agents() {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/admission"
    ));
    let (view, _) = cluster_with_the_gitlab_agent_chart();
    for file in [
        "deployment-create__capture-Deployment-CREATE.json",
        "deployment-create-dryrun-server__capture-Deployment-CREATE-dryrun.json",
    ] {
        let body = std::fs::read_to_string(dir.join(file)).expect("corpus file");
        let verdict = judge_body(&engine(), &view, &body);
        assert!(
            verdict.evaluated.contains(&PolicyId::SingleAgent),
            "{file}: not evaluated"
        );
        assert_allowed(&verdict, file);
        // Nor do they need a synced view.
        let unsynced = MemoryView::new();
        unsynced.set_synced(false);
        assert_allowed(&judge_body(&engine(), &unsynced, &body), file);
    }
}

#[test]
fn a_malformed_workload_is_denied_with_the_path() {
    let view = MemoryView::new();
    let mut object = deployment("team-a", "broken", json!([]));
    object["spec"]["template"]["spec"]["containers"] = json!("agentk");
    let message = assert_denied(&create(&engine(), &view, &object), "malformed");
    assert!(
        message.contains("spec.template.spec.containers"),
        "{message}"
    );
}

#[test]
fn bad_settings_point_at_the_key() {
    let err = Config::from_yaml(
        "policies:\n  single-agent:\n    imagePatterns: ['(']\n",
        "c.yaml",
    )
    .expect_err("bad regex");
    assert!(
        err.to_string()
            .contains("policies.single-agent.imagePatterns[0]"),
        "{err}"
    );
    let err = Config::from_yaml(
        "policies:\n  single-agent:\n    reservationTtlSeconds: 0\n",
        "c.yaml",
    )
    .expect_err("zero ttl");
    assert!(err.to_string().contains("reservationTtlSeconds"), "{err}");
    let err = Config::from_yaml(
        "policies:\n  single-agent:\n    whenUnknown: maybe\n",
        "c.yaml",
    )
    .expect_err("bad whenUnknown");
    assert!(err.to_string().contains("whenUnknown"), "{err}");
    let err = Config::from_yaml(
        "policies:\n  single-agent:\n    sanctioned: {namespace: gitlab-agent}\n",
        "c.yaml",
    )
    .expect_err("sanctioned without release");
    assert!(err.to_string().contains("release"), "{err}");
}
