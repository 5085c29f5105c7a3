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

/// The chart's Deployment as Helm stores it: the release annotations Helm adds on install.
fn as_helm_stores_it(mut object: Value, release: &str, namespace: &str) -> Value {
    object["metadata"]["annotations"]["meta.helm.sh/release-name"] = json!(release);
    object["metadata"]["annotations"]["meta.helm.sh/release-namespace"] = json!(namespace);
    object
}

#[test]
fn the_charts_upgrade_from_name_to_name_v2_is_the_same_installation() {
    // Chart versions before the epoch suffix named the Deployment <fullname>, later ones
    // <fullname>-v1; 2.6.2 names it <fullname>-v2 (templates/deployment.yaml), and Helm deletes
    // the old one after creating the new one.
    let install = corpus_installs().remove(0);
    for old_name in ["gitlab-agent", "gitlab-agent-v1"] {
        for helm in [false, true] {
            let mut old = install.deployment();
            old["metadata"]["name"] = json!(old_name);
            let mut new = install.deployment();
            if helm {
                old = as_helm_stores_it(old, "gitlab-agent", "gitlab-agent");
                new = as_helm_stores_it(new, "gitlab-agent", "gitlab-agent");
            }
            let view = MemoryView::new();
            view.apply(&stored(old, "uid-old")).expect("applies");
            let judge = engine();
            assert_allowed(
                &create(&judge, &view, &new),
                &format!("{old_name} -> gitlab-agent-v2 (helm: {helm})"),
            );
            // Mid-upgrade, a third Deployment of the release is not the chart's doing.
            view.apply(&stored(new.clone(), "uid-new"))
                .expect("applies");
            let mut third = new.clone();
            third["metadata"]["name"] = json!("gitlab-agent-v3");
            let message = assert_denied(&create(&judge, &view, &third), "a third");
            assert!(message.contains("third"), "{message}");
        }
    }
}

#[test]
fn a_rename_outside_the_chart_is_a_second_installation() {
    // The kpt manifests never renamed their Deployment: a -v2 next to them is another agent.
    let legacy = manifests(LEGACY, "gitlab-agent");
    let old = legacy
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .cloned()
        .expect("deployment");
    let mut renamed = old.clone();
    renamed["metadata"]["name"] = json!("gitlab-agent-v2");
    let view = MemoryView::new();
    view.apply(&stored(old, "uid-kpt")).expect("applies");
    assert_denied(&create(&engine(), &view, &renamed), "kpt -v2");

    // The chart's labels, but another release: not a rename either.
    let (view, install) = cluster_with_the_gitlab_agent_chart();
    let mut other = install.deployment();
    other["metadata"]["name"] = json!("gitlab-agent-v3");
    other["metadata"]["labels"]["app.kubernetes.io/instance"] = json!("other");
    assert_denied(&create(&engine(), &view, &other), "another release");
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
        // The ReplicaSet confirms the Pod's ownerReference once the view has it (the
        // webhook's prefetch asks the API server for it first: see the next test).
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

    // The Deployment helm-controller renders names its HelmRelease: the view fetches that.
    let mut rendered = install.deployment();
    rendered["metadata"]["labels"]["helm.toolkit.fluxcd.io/name"] = json!("gitlab-agent");
    rendered["metadata"]["labels"]["helm.toolkit.fluxcd.io/namespace"] = json!("flux-system");
    let body = review_body("CREATE", &rendered, None, false);
    assert_eq!(
        engine().prefetch(&decode(body.as_bytes()).expect("review")),
        vec![ObjectKey {
            group: "helm.toolkit.fluxcd.io".into(),
            kind: "HelmRelease".into(),
            namespace: Some("flux-system".into()),
            name: "gitlab-agent".into(),
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
    // Its ReplicaSets and Pods belong to it when their owner is confirmed: without a
    // cluster view that cannot be, and whenUnknown decides; with the view, they are.
    let deployment = stored(installs[0].deployment(), "uid-deployment");
    let mut labels = deployment["spec"]["template"]["metadata"]["labels"].clone();
    labels["pod-template-hash"] = json!("5d4f8b");
    let replicaset = json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "gitlab-agent-v2-5d4f8b", "namespace": "gitlab-agent", "uid": "uid-rs", "labels": labels,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "gitlab-agent-v2", "uid": "uid-deployment", "controller": true}]},
        "spec": {"template": deployment["spec"]["template"]}
    });
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "gitlab-agent-v2-5d4f8b-x7k2p", "namespace": "gitlab-agent", "labels": labels,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "gitlab-agent-v2-5d4f8b", "uid": "uid-rs", "controller": true}]},
        "spec": deployment["spec"]["template"]["spec"]
    });
    let message = assert_denied(&create(&engine, &view, &pod), "Pod, view not synced");
    assert!(message.contains("cannot confirm its owner"), "{message}");
    let synced = MemoryView::new();
    synced.apply(&deployment).expect("applies");
    synced.apply(&replicaset).expect("applies");
    assert_allowed(&create(&engine, &synced, &pod), "sanctioned Pod");
    // A Pod that only claims the ReplicaSet (another uid) is judged by its own name.
    let mut forged = pod.clone();
    forged["metadata"]["ownerReferences"][0]["uid"] = json!("forged");
    assert_denied(&create(&engine, &synced, &forged), "forged owner");

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
        let (installs_into, release_name) = id.release.clone().expect("a release");
        assert_eq!(installs_into, release_namespace);

        // The Deployment helm-controller renders for that release, as Helm stores it.
        let mut rendered = corpus_installs().remove(0).deployment();
        rendered["metadata"]["namespace"] = json!(release_namespace);
        rendered["metadata"]["labels"]["app.kubernetes.io/instance"] = json!(release_name);
        rendered["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/instance"] =
            json!(release_name);
        let rendered = as_helm_stores_it(rendered, &release_name, release_namespace);
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

// ---------------------------------------------------------------------------------------
// An installation is known by facts the requester cannot forge: the hostile forms an
// adversarial review found, each beside the form that must still pass.

/// The chart's Deployment as the cluster stores it, and the second agent an attacker with
/// rights in `team-a` only writes by copying what makes it look like that one.
fn existing_chart_install() -> (MemoryView, Value) {
    let existing = stored(
        as_helm_stores_it(
            corpus_installs().remove(0).deployment(),
            "gitlab-agent",
            "gitlab-agent",
        ),
        "uid-existing",
    );
    let view = MemoryView::new();
    view.apply(&existing).expect("applies");
    (view, existing)
}

fn second_agent(namespace: &str, name: &str) -> Value {
    let mut evil = deployment(
        namespace,
        name,
        json!([{"name": "agent", "image": format!("{AGENTK}:v17.3.1"),
            "args": ["--token-file=/t/token", "--kas-address=wss://kas.gitlab.example"]}]),
    );
    evil["metadata"]["labels"]["helm.sh/chart"] = json!("gitlab-agent-2.6.2");
    evil
}

const SANCTIONED: &str = "policies:\n  single-agent:\n    sanctioned: {namespace: gitlab-agent, release: gitlab-agent}\n";

#[test]
fn copied_helm_release_annotations_do_not_make_another_namespace_the_release() {
    let (view, existing) = existing_chart_install();
    let evil = as_helm_stores_it(
        second_agent("team-a", "agent"),
        "gitlab-agent",
        "gitlab-agent",
    );
    let message = assert_denied(&create(&engine(), &view, &evil), "copied annotations");
    assert!(message.contains("Deployment team-a/agent"), "{message}");
    assert!(
        message.contains("Helm release gitlab-agent/gitlab-agent"),
        "{message}"
    );
    // Also where `sanctioned` names the release the annotations point at.
    let message = assert_denied(
        &create(&engine_with(SANCTIONED), &view, &evil),
        "copied annotations, sanctioned",
    );
    assert!(message.contains("sanctioned"), "{message}");
    // The real one is still allowed to change.
    let mut bumped = existing.clone();
    bumped["spec"]["replicas"] = json!(3);
    assert_allowed(&update(&engine(), &view, &existing, &bumped), "scale");
    assert_allowed(
        &update(&engine_with(SANCTIONED), &view, &existing, &bumped),
        "scale, sanctioned",
    );
}

#[test]
fn a_copied_instance_label_does_not_join_the_release() {
    let (view, _) = existing_chart_install();
    let mut evil = second_agent("team-a", "agent");
    evil["metadata"]["labels"]["app.kubernetes.io/instance"] = json!("gitlab-agent");
    evil["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/instance"] =
        json!("gitlab-agent");
    assert_denied(&create(&engine(), &view, &evil), "instance label");
    assert_denied(
        &create(&engine_with(SANCTIONED), &view, &evil),
        "instance label, sanctioned",
    );
}

#[test]
fn a_second_workload_in_the_agents_own_namespace_is_a_second_installation() {
    let (view, _) = existing_chart_install();
    let evil = as_helm_stores_it(
        second_agent("gitlab-agent", "helper"),
        "gitlab-agent",
        "gitlab-agent",
    );
    let message = assert_denied(&create(&engine(), &view, &evil), "same namespace");
    assert!(
        message.contains("Deployment gitlab-agent/helper"),
        "{message}"
    );
    // With `sanctioned`: its name is not the release's.
    assert_denied(
        &create(&engine_with(SANCTIONED), &view, &evil),
        "same namespace, sanctioned",
    );
    // A StatefulSet named like the chart's Deployment is not the chart's rename either.
    let mut statefulset = as_helm_stores_it(
        second_agent("gitlab-agent", "gitlab-agent-v3"),
        "gitlab-agent",
        "gitlab-agent",
    );
    statefulset["kind"] = json!("StatefulSet");
    assert_denied(&create(&engine(), &view, &statefulset), "statefulset");
}

#[test]
fn an_owner_reference_to_the_running_agent_is_confirmed_or_ignored() {
    let (view, existing) = existing_chart_install();
    let reference = json!([{"apiVersion": "apps/v1", "kind": "Deployment", "name": "gitlab-agent-v2",
        "uid": "uid-existing", "controller": true, "blockOwnerDeletion": true}]);
    // From another namespace: the owner is not there.
    let mut elsewhere = second_agent("team-a", "agent");
    elsewhere["metadata"]["ownerReferences"] = reference.clone();
    assert_denied(
        &create(&engine(), &view, &elsewhere),
        "owner in another namespace",
    );
    assert_denied(
        &create(&engine_with(SANCTIONED), &view, &elsewhere),
        "owner in another namespace, sanctioned",
    );
    // In the same namespace, a Deployment claiming a Deployment as its controller (nothing
    // makes Deployments), and a Pod claiming it (Deployments make ReplicaSets, not Pods).
    let mut deployment_child = second_agent("gitlab-agent", "child");
    deployment_child["metadata"]["ownerReferences"] = reference.clone();
    assert_denied(
        &create(&engine(), &view, &deployment_child),
        "deployment child",
    );
    let pod_child = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "child", "namespace": "gitlab-agent", "ownerReferences": reference},
        "spec": existing["spec"]["template"]["spec"]
    });
    assert_denied(&create(&engine(), &view, &pod_child), "pod child");
    assert_denied(
        &create(&engine_with(SANCTIONED), &view, &pod_child),
        "pod child, sanctioned",
    );
    // A uid nobody has, with the owner's name.
    let mut replicaset = json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "gitlab-agent-v2-abc", "namespace": "gitlab-agent",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "gitlab-agent-v2",
                "uid": "not-the-owner", "controller": true}]},
        "spec": {"template": existing["spec"]["template"]}
    });
    assert_denied(&create(&engine(), &view, &replicaset), "forged uid");
    // The true owner: its ReplicaSet.
    replicaset["metadata"]["ownerReferences"][0]["uid"] = json!("uid-existing");
    assert_allowed(&create(&engine(), &view, &replicaset), "its ReplicaSet");
}

fn gitlab_agent_helm_release(name: &str, namespace: &str, values: Value) -> Value {
    helm_release(
        name,
        namespace,
        json!({"interval": "10m", "releaseName": "gitlab-agent", "targetNamespace": "gitlab-agent",
            "install": {"createNamespace": true},
            "chart": {"spec": {"chart": "gitlab-agent", "version": "2.6.2",
                "sourceRef": {"kind": "HelmRepository", "name": "gitlab", "namespace": "flux-system"}}},
            "values": values}),
    )
}

#[test]
fn a_second_helmrelease_of_the_running_release_is_a_second_installation() {
    // The running agent, installed the way `glab cluster agent bootstrap` does it: a
    // HelmRelease in flux-system that installs release gitlab-agent into gitlab-agent.
    let running = stored(
        gitlab_agent_helm_release(
            "gitlab-agent",
            "flux-system",
            json!({"config": {"kasAddress": "wss://kas.gitlab.com", "secretName": "gitlab-agent-token"}}),
        ),
        "uid-hr",
    );
    let view = MemoryView::new();
    add_helm_repositories(&view);
    view.apply(&running).expect("applies");
    let rendered = stored(
        as_helm_stores_it(
            corpus_installs().remove(0).deployment(),
            "gitlab-agent",
            "gitlab-agent",
        ),
        "uid-rendered",
    );
    assert_allowed(&create(&engine(), &view, &rendered), "its Deployment");
    assert_allowed(
        &create(&engine_with(SANCTIONED), &view, &running),
        "the HelmRelease, sanctioned",
    );
    view.apply(&rendered).expect("applies");

    // A tenant's HelmRelease reusing releaseName and targetNamespace, with a
    // fullnameOverride so that its Deployment gets another name.
    let evil = gitlab_agent_helm_release(
        "agent",
        "team-a",
        json!({"fullnameOverride": "evil", "config": {"kasAddress": "wss://kas.gitlab.com"}}),
    );
    let message = assert_denied(&create(&engine(), &view, &evil), "second HelmRelease");
    assert!(message.contains("HelmRelease team-a/agent"), "{message}");
    assert_denied(
        &create(&engine_with(SANCTIONED), &view, &evil),
        "second HelmRelease, sanctioned",
    );
    // And the Deployment it would render next to the running one.
    let mut evil_deployment = rendered.clone();
    evil_deployment["metadata"]["name"] = json!("evil-v2");
    evil_deployment["metadata"]["uid"] = json!("uid-evil");
    assert_denied(
        &create(&engine(), &view, &evil_deployment),
        "its Deployment",
    );
    assert_denied(
        &create(&engine_with(SANCTIONED), &view, &evil_deployment),
        "its Deployment, sanctioned",
    );
    // The running HelmRelease itself can still be upgraded.
    let mut upgraded = running.clone();
    upgraded["spec"]["chart"]["spec"]["version"] = json!("2.7.0");
    assert_allowed(&update(&engine(), &view, &running, &upgraded), "upgrade");
}

fn agent_under_another_name(args: Value, env: Value) -> Value {
    let mut object = deployment(
        "team-a",
        "tools",
        json!([{"name": "tools", "image": "harbor.example/library/tools@sha256:3b0c1d9e8f7a6b5c",
            "args": args, "env": env}]),
    );
    object["spec"]["template"]["spec"]["containers"][0]["command"] =
        json!(["/usr/local/bin/tools"]);
    object
}

#[test]
fn flags_are_read_after_the_kubelets_variable_expansion() {
    let (view, _) = existing_chart_install();
    for (what, args, env) in [
        (
            "whole flag",
            json!(["$(KAS_FLAG)=wss://kas.gitlab.example"]),
            json!([{"name": "KAS_FLAG", "value": "--kas-address"}]),
        ),
        (
            "flag and value",
            json!(["$(KAS)"]),
            json!([{"name": "URL", "value": "wss://kas.gitlab.example"}, {"name": "KAS", "value": "--kas-address=$(URL)"}]),
        ),
        (
            "half a flag",
            json!(["--kas-$(WHICH)", "wss://kas.gitlab.example"]),
            json!([{"name": "WHICH", "value": "address"}]),
        ),
    ] {
        let object = agent_under_another_name(args, env);
        let message = assert_denied(&create(&engine(), &view, &object), what);
        assert!(message.contains("expansion"), "{what}: {message}");
    }
    // What the kubelet leaves alone is not the flag: `$$` escapes, an undefined variable
    // stays as written, an env value sees only the entries before it.
    for (what, args, env) in [
        (
            "escaped",
            json!(["$$(KAS_FLAG)=x"]),
            json!([{"name": "KAS_FLAG", "value": "--kas-address"}]),
        ),
        ("undefined", json!(["$(KAS_FLAG)=x"]), json!([])),
        (
            "defined later",
            json!(["$(KAS)"]),
            json!([{"name": "KAS", "value": "$(F)=x"}, {"name": "F", "value": "--kas-address"}]),
        ),
    ] {
        let object = agent_under_another_name(args, env);
        assert_allowed(&create(&engine(), &view, &object), what);
    }
}

#[test]
fn a_flag_from_a_config_map_is_undecided_and_follows_when_unknown() {
    let (view, _) = existing_chart_install();
    let object = agent_under_another_name(
        json!(["$(KAS_FLAG)=wss://kas.gitlab.example"]),
        json!([{"name": "KAS_FLAG", "valueFrom": {"configMapKeyRef": {"name": "tools", "key": "flag"}}}]),
    );
    let message = assert_denied(&create(&engine(), &view, &object), "deny");
    assert!(message.contains("ConfigMap tools key flag"), "{message}");
    let lenient = engine_with("policies:\n  single-agent:\n    whenUnknown: allow\n");
    let verdict = create(&lenient, &view, &object);
    assert!(verdict.allowed, "{}", verdict.denial_message());
    assert!(
        verdict.warnings.iter().any(|w| w.contains("cannot tell")),
        "{:?}",
        verdict.warnings
    );
    // Alone in the cluster, a possible agent is no second one.
    assert_allowed(&create(&engine(), &MemoryView::new(), &object), "alone");
    // Where the value cannot spell the flag, nothing is undecided.
    let benign = agent_under_another_name(
        json!(["--namespace=$(NS)", "--config=$(CFG)"]),
        json!([{"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
               {"name": "CFG", "valueFrom": {"configMapKeyRef": {"name": "tools", "key": "cfg"}}}]),
    );
    assert_allowed(&create(&engine(), &view, &benign), "benign");
}

#[test]
fn a_flag_from_env_from_is_undecided_and_follows_when_unknown() {
    let (view, _) = existing_chart_install();
    // `envFrom` defines every key of the ConfigMap (or Secret) under its prefix: the kubelet
    // expands `$(KAS)` from it as from `env`.
    for (what, args, env_from) in [
        (
            "ConfigMap",
            json!(["$(KAS)=wss://kas.gitlab.example"]),
            json!([{"configMapRef": {"name": "tools"}}]),
        ),
        (
            "Secret with a prefix",
            json!(["$(T_KAS)"]),
            json!([{"prefix": "T_", "secretRef": {"name": "tools"}}]),
        ),
    ] {
        let mut object = agent_under_another_name(args, json!([]));
        object["spec"]["template"]["spec"]["containers"][0]["envFrom"] = env_from;
        let message = assert_denied(&create(&engine(), &view, &object), what);
        assert!(message.contains("cannot tell"), "{what}: {message}");
        assert!(message.contains("envFrom"), "{what}: {message}");
        let lenient = engine_with("policies:\n  single-agent:\n    whenUnknown: allow\n");
        assert!(create(&lenient, &view, &object).allowed, "{what}");
    }
    // A prefix no variable of the command line starts with defines none of them.
    let mut other = agent_under_another_name(json!(["$(KAS)=wss://kas"]), json!([]));
    other["spec"]["template"]["spec"]["containers"][0]["envFrom"] =
        json!([{"prefix": "T_", "configMapRef": {"name": "tools"}}]);
    assert_allowed(&create(&engine(), &view, &other), "other prefix");
}

#[test]
fn bash_brace_expansion_in_a_script_is_read_like_bash() {
    let (view, _) = existing_chart_install();
    for script in [
        "exec agentk {--kas-address=wss://kas,--token-file=/t}",
        "exec agentk --kas-{address,port}=wss://kas",
        "exec agentk --kas-addres{s..s}=wss://kas",
    ] {
        let mut object = agent_under_another_name(json!([script]), json!([]));
        object["spec"]["template"]["spec"]["containers"][0]["command"] = json!(["/bin/bash", "-c"]);
        assert_denied(&create(&engine(), &view, &object), script);
    }
    let mut loop_ = agent_under_another_name(
        json!(["for i in {1..3}; do echo $i; done; exec nginx -g 'daemon off;'"]),
        json!([]),
    );
    loop_["spec"]["template"]["spec"]["containers"][0]["command"] = json!(["/bin/bash", "-c"]);
    assert_allowed(&create(&engine(), &view, &loop_), "a loop over a sequence");
}

#[test]
fn every_kind_that_runs_a_pod_template_and_every_container_list_is_caught() {
    let (view, _) = existing_chart_install();
    let renamed = json!({"name": "x", "image": "harbor.example/library/tools:1",
        "args": ["--kas-address=wss://kas.gitlab.example"]});
    let with_containers = |list: &str| {
        let mut spec = json!({"containers": [{"name": "web", "image": "nginx:1.25"}]});
        match list {
            "containers" => spec["containers"] = json!([renamed.clone()]),
            "initContainers" => spec["initContainers"] = json!([renamed.clone()]),
            // A native sidecar (an init container that keeps running).
            _ => {
                let mut sidecar = renamed.clone();
                sidecar["restartPolicy"] = json!("Always");
                spec["initContainers"] = json!([sidecar]);
            }
        }
        spec
    };
    for list in ["containers", "initContainers", "sidecar"] {
        let spec = with_containers(list);
        let template = json!({"metadata": {"labels": {"app": "x"}}, "spec": spec});
        let selector = json!({"matchLabels": {"app": "x"}});
        for object in [
            json!({"apiVersion": "v1", "kind": "Pod", "spec": spec}),
            json!({"apiVersion": "v1", "kind": "ReplicationController",
                "spec": {"selector": {"app": "x"}, "template": template}}),
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "spec": {"selector": selector, "template": template}}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "spec": {"selector": selector, "template": template}}),
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
                "spec": {"serviceName": "x", "selector": selector, "template": template}}),
            json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
                "spec": {"selector": selector, "template": template}}),
            json!({"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": template}}),
            json!({"apiVersion": "batch/v1", "kind": "CronJob",
                "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": template}}}}),
        ] {
            let mut object = object;
            let kind = object["kind"].as_str().expect("kind").to_string();
            object["metadata"] = json!({"name": "x", "namespace": "team-a"});
            let message = assert_denied(&create(&engine(), &view, &object), &kind);
            assert!(
                message.contains(&format!("{kind} team-a/x")),
                "{kind}, {list}: {message}"
            );
        }
    }
}

#[test]
fn a_shell_entrypoint_runs_agentk_too() {
    let (view, _) = existing_chart_install();
    for (what, command, args) in [
        (
            "sh -c",
            json!(["sh", "-c"]),
            json!(["exec agentk --kas-address=wss://kas.gitlab.example --token-file=/t"]),
        ),
        (
            "bash -c",
            json!(["/bin/bash", "-c", "/usr/bin/agentk --kas-address wss://kas"]),
            json!([]),
        ),
        (
            "sh -ec",
            json!(["/bin/sh", "-ec"]),
            json!(["set -x\nexec /agentk \\\n  --kas-address=\"${KAS}\""]),
        ),
        (
            "env wrapper",
            json!(["/usr/bin/env", "-i", "sh", "-c"]),
            json!(["exec agentk '--kas-address=wss://kas'"]),
        ),
        (
            "quoted pieces",
            json!(["sh", "-c"]),
            json!(["exec agentk --kas-'addr'\"ess\"=wss://kas"]),
        ),
        (
            "split over variables",
            json!(["sh", "-c"]),
            json!(["K=--kas; exec agentk ${K}-address=wss://kas"]),
        ),
        (
            "env for the shell",
            json!(["sh", "-c"]),
            json!(["exec agentk $FLAGS"]),
        ),
        (
            "image entrypoint is a shell",
            json!(null),
            json!(["exec agentk --kas-address=wss://kas"]),
        ),
    ] {
        let mut object = agent_under_another_name(
            args,
            json!([{"name": "FLAGS", "value": "--token-file=/t --kas-address=wss://kas"}]),
        );
        object["spec"]["template"]["spec"]["containers"][0]["command"] = command;
        let message = assert_denied(&create(&engine(), &view, &object), what);
        assert!(
            message.contains("Deployment team-a/tools"),
            "{what}: {message}"
        );
    }
    // A shell that starts something else passes.
    let mut web = agent_under_another_name(
        json!(["echo \"start $(date)\"; exec nginx -g 'daemon off;'"]),
        json!([]),
    );
    web["spec"]["template"]["spec"]["containers"][0]["command"] = json!(["sh", "-c"]);
    assert_allowed(&create(&engine(), &view, &web), "nginx");
}

#[test]
fn a_replication_controller_runs_agentk_like_a_replicaset() {
    let (view, existing) = existing_chart_install();
    let rc = json!({
        "apiVersion": "v1", "kind": "ReplicationController",
        "metadata": {"name": "agent", "namespace": "team-a"},
        "spec": {"replicas": 1, "selector": {"app": "agent"},
            "template": {"metadata": {"labels": {"app": "agent"}}, "spec": existing["spec"]["template"]["spec"]}}
    });
    let message = assert_denied(&create(&engine(), &view, &rc), "rc");
    assert!(
        message.contains("ReplicationController team-a/agent"),
        "{message}"
    );
    // Alone, it is an installation like any other, and its Pods belong to it.
    let view = MemoryView::new();
    assert_allowed(&create(&engine(), &view, &rc), "alone");
    view.apply(&stored(rc.clone(), "uid-rc")).expect("applies");
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "agent-x7k2p", "namespace": "team-a",
            "ownerReferences": [{"apiVersion": "v1", "kind": "ReplicationController", "name": "agent", "uid": "uid-rc", "controller": true}]},
        "spec": existing["spec"]["template"]["spec"]
    });
    view.apply(&existing).expect("applies");
    assert_allowed(&create(&engine(), &view, &pod), "its Pod");
}

/// `fluxgate check -o json` over these objects (one file): the exit code and the single-agent
/// findings, each as (object, message).
fn check_single_agent(objects: &[Value]) -> (i32, Vec<(String, String)>) {
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "fluxgate-single-agent-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let text: String = objects
        .iter()
        .map(|o| format!("---\n{}", serde_yaml_ng::to_string(o).expect("yaml")))
        .collect();
    let file = dir.join("agents.yaml");
    std::fs::write(&file, text).expect("write");
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: fluxgate::check::CheckArgs,
    }
    let args = <Cli as clap::Parser>::try_parse_from([
        "check",
        "-o",
        "json",
        file.to_str().expect("utf-8"),
    ])
    .expect("args")
    .args;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = fluxgate::check::run(&args, std::io::empty(), &mut out, &mut err);
    std::fs::remove_dir_all(&dir).ok();
    let report: Value = serde_json::from_slice(&out).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&err)
        )
    });
    let mut findings = Vec::new();
    collect_single_agent(&report, &mut findings);
    (code, findings)
}

fn collect_single_agent(value: &Value, into: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            if map.get("policy").and_then(Value::as_str) == Some("single-agent") {
                into.push((
                    value.to_string(),
                    map.get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                ));
            }
            map.values().for_each(|v| collect_single_agent(v, into));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_single_agent(v, into)),
        _ => {}
    }
}

fn assert_check_denies(objects: &[Value], object: &str, what: &str) {
    let (code, findings) = check_single_agent(objects);
    assert_eq!(code, 1, "{what}: {findings:?}");
    assert!(
        findings
            .iter()
            .any(|(_, message)| message.contains(object) && message.contains("second GitLab agent")),
        "{what}: no single-agent finding names {object}: {findings:?}"
    );
}

#[test]
fn fluxgate_check_reports_the_forged_second_installation() {
    let existing = as_helm_stores_it(
        corpus_installs().remove(0).deployment(),
        "gitlab-agent",
        "gitlab-agent",
    );
    // The running installation alone passes.
    let (code, findings) = check_single_agent(std::slice::from_ref(&existing));
    assert!(findings.is_empty(), "{findings:?}");
    assert_eq!(code, 0);

    // Copied release annotations.
    let evil = as_helm_stores_it(
        second_agent("team-a", "agent"),
        "gitlab-agent",
        "gitlab-agent",
    );
    assert_check_denies(
        &[existing.clone(), evil],
        "Deployment team-a/agent",
        "annotations",
    );

    // A copied instance label.
    let mut labelled = second_agent("team-a", "agent");
    labelled["metadata"]["labels"]["app.kubernetes.io/instance"] = json!("gitlab-agent");
    assert_check_denies(
        &[existing.clone(), labelled],
        "Deployment team-a/agent",
        "instance label",
    );

    // An ownerReference to the running agent's uid (as `kubectl get -o yaml` exports it).
    let running = stored(existing.clone(), "uid-existing");
    let mut owned = second_agent("team-a", "agent");
    owned["kind"] = json!("ReplicaSet");
    owned["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "Deployment",
        "name": "gitlab-agent-v2", "uid": "uid-existing", "controller": true}]);
    assert_check_denies(
        &[running.clone(), owned.clone()],
        "ReplicaSet team-a/agent",
        "owner in another namespace",
    );
    owned["metadata"]["namespace"] = json!("gitlab-agent");
    owned["kind"] = json!("Deployment");
    assert_check_denies(
        &[running, owned],
        "Deployment gitlab-agent/agent",
        "a Deployment owned by a Deployment",
    );

    // A HelmRelease reusing the running release's releaseName and targetNamespace.
    let repository = json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "HelmRepository",
        "metadata": {"name": "gitlab", "namespace": "flux-system"},
        "spec": {"url": "https://charts.gitlab.io", "interval": "1h"}});
    let release = gitlab_agent_helm_release(
        "gitlab-agent",
        "flux-system",
        json!({"config": {"kasAddress": "wss://kas.gitlab.com", "secretName": "gitlab-agent-token"}}),
    );
    let (code, findings) = check_single_agent(&[repository.clone(), release.clone()]);
    assert!(findings.is_empty(), "{code}: {findings:?}");
    let evil = gitlab_agent_helm_release(
        "agent",
        "team-a",
        json!({"fullnameOverride": "evil", "config": {"kasAddress": "wss://kas.gitlab.com"}}),
    );
    assert_check_denies(
        &[repository, release, evil],
        "HelmRelease team-a/agent",
        "second HelmRelease",
    );
}
