//! fluxgate's cluster view fed by a real kube-apiserver (envtest, see tests/support/envtest):
//! the stateful rules through the reflectors, a watch lost and regained when the API server
//! process stops and starts again, SIGTERM while the API server has requests in flight; and
//! the harness's own promises.
//!
//! Without KUBEBUILDER_ASSETS these tests print one line and pass without doing anything.

#[path = "support/envtest/mod.rs"]
mod envtest;

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use envtest::{Env, FluxgateOptions, Kubectl};
use fluxgate::cluster::kube::KubeView;
use fluxgate::cluster::{ClusterView, Lookup};
use fluxgate::config::Config;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use serde_json::{Value, json};

const RENDERED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/corpus/gitlab-agent/rendered"
);

/// The gitlab-agent chart rendered for release `gitlab-agent` in namespace `gitlab-agent`.
const FIRST_AGENT: &str = "release-gitlab-agent__ns-gitlab-agent.yaml";
/// The same chart, release `test` in namespace `gitlab-agent-test`: what GitLab's UI tells
/// you to run for an agent named `test`.
const SECOND_AGENT: &str = "release-test__ns-gitlab-agent-test.yaml";

fn rendered(file: &str) -> String {
    std::fs::read_to_string(format!("{RENDERED}/{file}")).expect("a rendered install")
}

/// The namespaces the rendered installs name (created once; the harness empties them).
async fn agent_namespaces(env: &Env) {
    for namespace in ["gitlab-agent", "gitlab-agent-test"] {
        let manifest = format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {namespace}\n");
        env.kubectl(&["apply", "-f", "-"], &manifest).await.ok();
    }
}

async fn apply(env: &Env, namespace: &str, manifest: &str) -> Kubectl {
    env.kubectl(&["apply", "-n", namespace, "-f", "-"], manifest)
        .await
}

/// Applies until the result satisfies `done` (the view learns of changes through its watch,
/// a moment after the API server made them), at most 20 s; the last result.
async fn apply_until(
    env: &Env,
    namespace: &str,
    manifest: &str,
    done: impl Fn(&Kubectl) -> bool,
) -> Kubectl {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = apply(env, namespace, manifest).await;
        if done(&out) || Instant::now() > deadline {
            return out;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[track_caller]
fn assert_denied(out: &Kubectl, phrases: &[&str]) {
    let err = out.err();
    assert!(
        err.contains("admission webhook \"validate.fluxgate.io\" denied the request"),
        "{err}"
    );
    for phrase in phrases {
        assert!(err.contains(phrase), "{phrase:?} not in:\n{err}");
    }
}

fn binding(name: &str, kind: &str, role: &str, group: &str) -> String {
    format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: {name}\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: {kind}\n  name: {role}\nsubjects:\n  - apiGroup: rbac.authorization.k8s.io\n    kind: Group\n    name: '{group}'\n"
    )
}

fn role(kind: &str, name: &str, verbs: &str, resources: &str) -> String {
    format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: {kind}\nmetadata:\n  name: {name}\nrules:\n  - apiGroups: ['', apps]\n    resources: {resources}\n    verbs: {verbs}\n"
    )
}

/// A project's identity (every CI job of project 42): judged for what it gets in any namespace.
const PROJECT: &str = "gitlab:project:42";

// ---------------------------------------------------------------------------------------------
// single-agent

#[tokio::test]
async fn a_second_agent_is_denied_until_the_first_is_uninstalled() {
    let Some(env) = envtest::cluster().await else {
        return;
    };
    agent_namespaces(&env).await;
    let _fluxgate = env.fluxgate(FluxgateOptions::default()).await;

    let first = apply(&env, "gitlab-agent", &rendered(FIRST_AGENT)).await;
    assert!(
        first
            .ok()
            .contains("deployment.apps/gitlab-agent-v2 created"),
        "{}",
        first.stdout
    );
    // The second installation waits for nothing: the first is in the view, or reserved by
    // the replica that allowed it.
    let second = apply(&env, "gitlab-agent-test", &rendered(SECOND_AGENT)).await;
    assert_denied(
        &second,
        &[
            "[single-agent]",
            "Deployment gitlab-agent-test/test-gitlab-agent-v2",
            "Helm release gitlab-agent/gitlab-agent",
        ],
    );
    // The existing installation can still be scaled and updated.
    env.kubectl(
        &[
            "scale",
            "-n",
            "gitlab-agent",
            "deployment/gitlab-agent-v2",
            "--replicas=3",
        ],
        "",
    )
    .await
    .ok();
    env.kubectl(
        &[
            "set",
            "image",
            "-n",
            "gitlab-agent",
            "deployment/gitlab-agent-v2",
            "gitlab-agent=registry.gitlab.com/gitlab-org/cluster-integration/gitlab-agent/agentk:v17.4.0",
        ],
        "",
    )
    .await
    .ok();

    // Uninstalled, the first makes room for another: once the view has seen the deletion.
    env.kubectl(
        &["delete", "-n", "gitlab-agent", "-f", "-", "--wait=false"],
        &rendered(FIRST_AGENT),
    )
    .await
    .ok();
    let second = apply_until(&env, "gitlab-agent-test", &rendered(SECOND_AGENT), |o| {
        o.success
    })
    .await;
    assert!(
        second
            .ok()
            .contains("deployment.apps/test-gitlab-agent-v2 created"),
        "{}",
        second.stdout
    );
}

#[tokio::test]
async fn a_server_side_dry_run_of_an_agent_reserves_nothing() {
    let Some(env) = envtest::cluster().await else {
        return;
    };
    agent_namespaces(&env).await;
    let _fluxgate = env.fluxgate(FluxgateOptions::default()).await;
    let dry = env
        .kubectl(
            &["apply", "--dry-run=server", "-n", "gitlab-agent", "-f", "-"],
            &rendered(FIRST_AGENT),
        )
        .await;
    assert!(dry.ok().contains("(server dry run)"), "{}", dry.stdout);
    let real = apply(&env, "gitlab-agent-test", &rendered(SECOND_AGENT)).await;
    assert!(
        real.ok()
            .contains("deployment.apps/test-gitlab-agent-v2 created"),
        "{}",
        real.stdout
    );
}

// ---------------------------------------------------------------------------------------------
// ci-impersonation: roles from the cluster

#[tokio::test]
async fn a_binding_to_a_broad_cluster_role_that_already_exists_is_denied() {
    let Some(env) = envtest::cluster().await else {
        return;
    };
    let ns = env.namespace("existing-role").await;
    // Made before fluxgate starts: the view lists it.
    apply(
        &env,
        &ns,
        &role("ClusterRole", "deploy-anything", "['*']", "['*']"),
    )
    .await
    .ok();
    apply(
        &env,
        &ns,
        &role(
            "ClusterRole",
            "read-deployments",
            "[get, list, watch]",
            "[deployments]",
        ),
    )
    .await
    .ok();
    let _fluxgate = env.fluxgate(FluxgateOptions::default()).await;
    assert_denied(
        &apply(
            &env,
            &ns,
            &binding("ci", "ClusterRole", "deploy-anything", PROJECT),
        )
        .await,
        &["[ci-impersonation]", "deploy-anything", PROJECT],
    );
    apply(
        &env,
        &ns,
        &binding("ci-read", "ClusterRole", "read-deployments", PROJECT),
    )
    .await
    .ok();
}

#[tokio::test]
async fn a_role_created_after_start_up_is_judged_and_cannot_be_made_broad_later() {
    let Some(env) = envtest::cluster().await else {
        return;
    };
    let ns = env.namespace("later-role").await;
    let _fluxgate = env.fluxgate(FluxgateOptions::default()).await;
    apply(
        &env,
        &ns,
        &role("Role", "debugger", "[create]", "[pods/exec]"),
    )
    .await
    .ok();
    assert_denied(
        &apply(&env, &ns, &binding("ci", "Role", "debugger", PROJECT)).await,
        &["[ci-impersonation]", "debugger", PROJECT],
    );
    // A narrow role, bound, then widened: the widening is denied once the view has the
    // binding.
    apply(
        &env,
        &ns,
        &role("Role", "reader", "[get, list]", "[configmaps]"),
    )
    .await
    .ok();
    apply(&env, &ns, &binding("ci-read", "Role", "reader", PROJECT))
        .await
        .ok();
    let widened = apply_until(&env, &ns, &role("Role", "reader", "['*']", "['*']"), |o| {
        !o.success
    })
    .await;
    assert_denied(&widened, &["[ci-impersonation]", "reader"]);
}

// ---------------------------------------------------------------------------------------------
// The view without Flux, a watch lost and regained

/// The CRDs of the Flux kinds the view watches are removed for this test and put back when
/// it ends (the harness reinstalls the Flux CRDs).
#[tokio::test]
async fn the_view_syncs_on_a_cluster_without_flux_and_follows_its_changes() {
    let Some(env) = envtest::cluster().await else {
        return;
    };
    let crds: Vec<&str> = envtest::FLUX_CRDS
        .iter()
        .map(|path| {
            let file = path.rsplit('/').next().unwrap_or(path);
            let (group, plural) = file
                .trim_end_matches(".yaml")
                .split_once('_')
                .expect("group_plural.yaml");
            // CRD names are <plural>.<group>.
            Box::leak(format!("{plural}.{group}").into_boxed_str()) as &str
        })
        .collect();
    env.remove_crds(&crds).await;
    let ns = env.namespace("no-flux").await;
    env.kubectl(&["label", "namespace", &ns, "fluxgate.io/legacy=true"], "")
        .await
        .ok();

    let view = KubeView::start(env.client());
    view.reconfigure(Config::default().policies.single_agent.detector());
    let deadline = Instant::now() + Duration::from_secs(30);
    while !view.synced() {
        assert!(Instant::now() < deadline, "the view did not sync");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    match view.namespace_labels(&ns) {
        Lookup::Found(labels) => assert_eq!(
            labels.get("fluxgate.io/legacy").map(String::as_str),
            Some("true")
        ),
        other => panic!("{ns}: {other:?}"),
    }
    // No Flux: the view answers that there is no HelmRepository, not that it cannot tell.
    assert_eq!(view.helm_repository(&ns, "podinfo"), Lookup::Missing);
    assert_eq!(view.agent_installations(), Lookup::Found(Vec::new()));
    // An agent created now reaches the view through its watch.
    let agent: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "agentk", "namespace": ns},
        "spec": {
            "selector": {"matchLabels": {"app": "agentk"}},
            "template": {
                "metadata": {"labels": {"app": "agentk"}},
                "spec": {"containers": [{
                    "name": "agent",
                    "image": "registry.gitlab.com/gitlab-org/cluster-integration/gitlab-agent/agentk:v17.3.1",
                }]},
            },
        },
    }))
    .expect("a Deployment");
    Api::<Deployment>::namespaced(env.client(), &ns)
        .create(&PostParams::default(), &agent)
        .await
        .expect("the agent");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Lookup::Found(installs) = view.agent_installations()
            && installs.len() == 1
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the watch did not deliver the agent: {:?}",
            view.agent_installations()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn agent_deployment(namespace: &str, name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{
                    "name": "agent",
                    "image": "registry.gitlab.com/gitlab-org/cluster-integration/gitlab-agent/agentk:v17.3.1",
                }]},
            },
        },
    })
}

#[tokio::test]
async fn a_watch_lost_with_the_api_server_makes_the_view_unknown_and_unready_until_it_returns() {
    let Some(env) = envtest::cluster().await else {
        return;
    };
    let ns = env.namespace("watch-lost").await;
    let mut fluxgate = env
        .fluxgate(FluxgateOptions::with_args(&["--view-grace-seconds", "2"]))
        .await;
    assert_eq!(fluxgate.readyz().await.0, 200);

    env.stop_apiserver();
    let lost_at = Instant::now();
    let deadline = lost_at + Duration::from_secs(30);
    let (status, body) = loop {
        let (status, body) = fluxgate.readyz().await;
        if status != 200 || Instant::now() > deadline {
            break (status, body);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"clusterView\":false"), "{body}");
    assert!(
        lost_at.elapsed() >= Duration::from_secs(2),
        "unready before the grace period ended"
    );
    wait_for_log(&fluxgate, "watch failing for longer than the grace period").await;
    // What the view cannot tell is not guessed: an agent is denied, with the reason.
    let review = common::review_of(&agent_deployment(&ns, "agentk"), "CREATE", "lost-1");
    let answer = common::Client::connect(fluxgate.addr, fluxgate.ca_pem.as_bytes(), false)
        .await
        .expect("fluxgate answers while the API server is down")
        .request("POST", "/validate", Some("application/json"), review)
        .await
        .expect("an answer")
        .json();
    assert_eq!(answer["response"]["allowed"], false, "{answer}");
    let message = answer["response"]["status"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains("has lost its watch of the API server"),
        "{message}"
    );

    env.start_apiserver().await;
    fluxgate.wait_ready(Duration::from_secs(60)).await;
    wait_for_log(&fluxgate, "watch works again").await;
    // The view answers again: the first agent is allowed, a second one denied.
    let first = serde_json::to_string(&agent_deployment(&ns, "first")).expect("json");
    env.kubectl(&["apply", "-f", "-"], &first).await.ok();
    let second = serde_json::to_string(&agent_deployment(&ns, "second")).expect("json");
    let out = env.kubectl(&["apply", "-f", "-"], &second).await;
    assert_denied(&out, &["[single-agent]", &format!("Deployment {ns}/first")]);
}

async fn wait_for_log(fluxgate: &envtest::Fluxgate, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !fluxgate.log().contains(text) {
        assert!(
            Instant::now() < deadline,
            "{text:?} not logged:\n{}",
            fluxgate.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// SIGTERM with requests in flight

#[tokio::test]
async fn sigterm_answers_the_requests_the_api_server_has_in_flight_then_exits_0() {
    let Some(env) = envtest::cluster().await else {
        return;
    };
    let ns = env.namespace("sigterm").await;
    let mut fluxgate = env.fluxgate(FluxgateOptions::default()).await;
    let stop = Arc::new(AtomicBool::new(false));
    let workers = create_signed_sources(&env, &ns, &stop);
    // Traffic flows through both webhooks, then the signal.
    let deadline = Instant::now() + Duration::from_secs(30);
    while decisions(&fluxgate.log()).len() < 40 {
        assert!(Instant::now() < deadline, "no traffic:\n{}", fluxgate.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    fluxgate.terminate();
    let status = fluxgate.wait_exit(Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut outcomes = Vec::new();
    for worker in workers {
        outcomes.extend(worker.await.expect("a worker"));
    }
    let log = fluxgate.log();
    assert!(status.is_some_and(|s| s.success()), "{status:?}:\n{log}");
    assert!(log.contains("all connections drained"), "{log}");

    // Every review fluxgate answered reached the API server: what it allowed was created.
    let created: BTreeSet<&str> = outcomes
        .iter()
        .filter(|o| o.result.is_ok())
        .map(|o| o.name.as_str())
        .collect();
    for (name, decision) in decisions(&log) {
        assert_eq!(decision, "allow", "{name}");
        assert!(
            created.contains(name.as_str()),
            "fluxgate allowed {name}, but the API server did not create it: {:?}",
            outcomes.iter().find(|o| o.name == name)
        );
    }
    // After the signal, requests kept coming over the API server's kept-alive connections,
    // and were answered (each answer closing its connection) ...
    let (before, after) = log
        .split_once("shutdown signal received")
        .expect("the signal is logged");
    assert!(
        !decisions(after).is_empty(),
        "no review answered after the signal ({} before)",
        decisions(before).len()
    );
    // ... and none failed until fluxgate stopped accepting: this single replica has no
    // other to take over, so what comes after fails, as the webhook's failurePolicy says.
    let drain_started = logged_at(&log, "no longer accepting");
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| o.result.is_err()).collect();
    for outcome in &failed {
        assert!(
            outcome.at >= drain_started,
            "{} failed during the linger, before {drain_started}: {outcome:?}",
            outcome.name
        );
        let error = outcome
            .result
            .as_ref()
            .err()
            .map(String::as_str)
            .unwrap_or_default();
        assert!(error.contains("failed calling webhook"), "{outcome:?}");
    }
    assert!(!failed.is_empty(), "no request came after the shutdown");
}

#[tokio::test]
async fn a_rolling_update_behind_a_service_loses_no_request() {
    let Some(env) = envtest::cluster().await else {
        return;
    };
    let ns = env.namespace("rollout").await;
    // Replica A serves; the Service (the proxy) sends every connection to it.
    let mut old = env
        .fluxgate(FluxgateOptions {
            webhooks: false,
            ..FluxgateOptions::default()
        })
        .await;
    let service = envtest::ServiceProxy::start(old.addr).await;
    old.register(
        &env,
        &FluxgateOptions {
            webhook_url: Some(service.url.clone()),
            ..FluxgateOptions::default()
        },
    )
    .await;
    // Replica B, the new version, with the same certificate.
    let new = env
        .fluxgate(FluxgateOptions {
            certs: Some(old.dir.clone()),
            webhooks: false,
            ..FluxgateOptions::default()
        })
        .await;
    let stop = Arc::new(AtomicBool::new(false));
    let workers = create_signed_sources(&env, &ns, &stop);
    let deadline = Instant::now() + Duration::from_secs(30);
    while decisions(&old.log()).len() < 40 {
        assert!(Instant::now() < deadline, "no traffic:\n{}", old.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The rollout: A leaves the endpoints, keeps serving during its preStop pause (the API
    // server still uses its open connections), then gets SIGTERM.
    service.route_to(new.addr);
    tokio::time::sleep(Duration::from_secs(1)).await;
    old.terminate();
    let status = old.wait_exit(Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut outcomes = Vec::new();
    for worker in workers {
        outcomes.extend(worker.await.expect("a worker"));
    }
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| o.result.is_err()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed during the rollout: {failed:#?}",
        failed.len(),
        outcomes.len()
    );
    // Any review: each answer after the signal closes its connection, so the API server may
    // send A only the /mutate calls and the /validate ones that follow to B.
    let after = old
        .log()
        .split_once("shutdown signal received")
        .map(|(_, after)| reviews_answered(after))
        .unwrap_or(0);
    assert!(after > 0, "A answered nothing after its SIGTERM");
    assert!(
        !decisions(&new.log()).is_empty(),
        "B took over: {}",
        new.log()
    );
}

/// Eight tasks creating signed OCIRepositories (allowed) one after the other until `stop`;
/// what became of each.
fn create_signed_sources(
    env: &Env,
    ns: &str,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<Outcome>>> {
    let oci = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("source.toolkit.fluxcd.io", "v1", "OCIRepository"),
        "ocirepositories",
    );
    (0..8)
        .map(|worker| {
            let api: Api<DynamicObject> = Api::namespaced_with(env.client(), ns, &oci);
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let name = format!("w{worker}-{n}");
                    let object: DynamicObject = serde_json::from_value(json!({
                        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "OCIRepository",
                        "metadata": {"name": name},
                        "spec": {
                            "interval": "5m",
                            "url": "oci://registry.gitlab.com/acme/app/manifests",
                            "ref": {"tag": "1.2.3"},
                            "verify": {"provider": "cosign", "matchOIDCIdentity": [{
                                "issuer": "^https://gitlab\\.com$",
                                "subject": "^https://gitlab\\.com/acme/app//\\.gitlab-ci\\.yml@refs/heads/main$",
                            }]},
                        },
                    }))
                    .expect("an OCIRepository");
                    let result = api
                        .create(&PostParams::default(), &object)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string());
                    outcomes.push(Outcome {
                        name,
                        result,
                        at: time::OffsetDateTime::now_utc(),
                    });
                }
                outcomes
            })
        })
        .collect()
}

#[derive(Debug)]
struct Outcome {
    name: String,
    result: Result<(), String>,
    at: time::OffsetDateTime,
}

/// When fluxgate logged the line whose message starts with `message`.
fn logged_at(log: &str, message: &str) -> time::OffsetDateTime {
    log.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|entry| {
            entry["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(message))
        })
        .and_then(|entry| {
            time::OffsetDateTime::parse(
                entry["timestamp"].as_str()?,
                &time::format_description::well_known::Rfc3339,
            )
            .ok()
        })
        .unwrap_or_else(|| panic!("{message:?} not logged:\n{log}"))
}

/// How many reviews, of either endpoint, fluxgate logged a decision for (not the harness's
/// dry runs).
fn reviews_answered(log: &str) -> usize {
    log.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|entry| entry["message"] == "decision" && entry["dry_run"] == false)
        .count()
}

/// (name, decision) of each /validate review fluxgate logged (not the harness's dry runs).
fn decisions(log: &str) -> Vec<(String, String)> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|entry| {
            entry["message"] == "decision"
                && entry["endpoint"] == "validate"
                && entry["dry_run"] == false
        })
        .map(|entry| {
            (
                entry["name"].as_str().unwrap_or_default().to_string(),
                entry["decision"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The harness

fn cluster_role(name: &str) -> ClusterRole {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}],
    }))
    .expect("a ClusterRole")
}

#[tokio::test]
async fn each_test_finds_the_cluster_as_the_one_before_found_it() {
    let ns;
    {
        let Some(env) = envtest::cluster().await else {
            return;
        };
        ns = env.namespace("leftovers").await;
        let client = env.client();
        Api::<ClusterRole>::all(client.clone())
            .create(&PostParams::default(), &cluster_role("envtest-leftover"))
            .await
            .expect("a ClusterRole");
        let web: Deployment =
            serde_json::from_value(agent_deployment(&ns, "web")).expect("a Deployment");
        Api::<Deployment>::namespaced(client, &ns)
            .create(&PostParams::default(), &web)
            .await
            .expect("a Deployment");
        env.install_crds(&["corpus/crds/policy-reports/kyverno-wgpolicyk8s.io_policyreports.yaml"])
            .await;
        let fluxgate = env.fluxgate(FluxgateOptions::default()).await;
        // The validating and mutating webhooks, and the fail-open one for RBAC in kube-system
        // and fluxgate's namespace.
        assert_eq!(fluxgate.webhook_configurations().len(), 3);
        // The turn ends here: fluxgate is stopped, then what the test made is deleted.
    }
    let Some(env) = envtest::cluster().await else {
        return;
    };
    let client = env.client();
    let role = Api::<ClusterRole>::all(client.clone())
        .get_opt("envtest-leftover")
        .await
        .expect("get");
    assert!(role.is_none(), "the ClusterRole of the last test is gone");
    let web = Api::<Deployment>::namespaced(client, &ns)
        .get_opt("web")
        .await
        .expect("get");
    assert!(web.is_none(), "the Deployment of the last test is gone");
    let webhooks = env
        .kubectl(
            &[
                "get",
                "validatingwebhookconfigurations,mutatingwebhookconfigurations",
                "-o",
                "name",
            ],
            "",
        )
        .await;
    assert_eq!(webhooks.ok().trim(), "", "no webhook configuration is left");
    let crd = env
        .kubectl(
            &[
                "get",
                "crd",
                "policyreports.wgpolicyk8s.io",
                "--ignore-not-found",
            ],
            "",
        )
        .await;
    assert_eq!(
        crd.ok().trim(),
        "",
        "the CRD the last test installed is gone"
    );
    // The namespace stays (nothing would finish deleting it).
    env.kubectl(&["get", "namespace", &ns], "").await.ok();
}

#[tokio::test]
async fn the_api_server_can_be_stopped_and_started_again_with_its_data() {
    let Some(env) = envtest::cluster().await else {
        return;
    };
    let ns = env.namespace("restart").await;
    env.kubectl(&["create", "configmap", "kept", "-n", &ns], "")
        .await
        .ok();
    env.stop_apiserver();
    let down = env
        .kubectl(
            &[
                "get",
                "configmap",
                "kept",
                "-n",
                &ns,
                "--request-timeout=2s",
            ],
            "",
        )
        .await;
    assert!(down.err().contains("refused"), "{}", down.stderr);
    env.start_apiserver().await;
    let after = env
        .kubectl(&["get", "configmap", "kept", "-n", &ns, "-o", "name"], "")
        .await;
    assert_eq!(after.ok().trim(), "configmap/kept");
}
