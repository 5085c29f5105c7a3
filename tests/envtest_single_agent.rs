//! `single-agent` across replicas, against a real kube-apiserver (envtest, see
//! tests/support/envtest): two `fluxgate serve` processes, each the admission webhook of its
//! own namespace, reserve new GitLab agent installations through one Lease, so that of two
//! concurrent CREATEs of different installations exactly one is allowed; dry runs never write
//! the Lease; and the RBAC deploy/ ships is what the reservation needs.

#[path = "support/envtest/mod.rs"]
mod envtest;

use std::time::{Duration, Instant};

use envtest::{Env, Fluxgate, FluxgateOptions};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, PostParams};
use serde_json::{Value, json};

const AGENTK: &str =
    "registry.gitlab.com/gitlab-org/cluster-integration/gitlab-agent/agentk:v17.3.1";
const LEASE: &str = fluxgate::cluster::reservation::LEASE_NAME;

/// A minimal agentk Deployment (no controller-manager runs it; the API server stores it).
fn agent(namespace: &str, name: &str) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "agent", "image": AGENTK,
                    "args": ["--token-file=/etc/agentk/secrets/token", "--kas-address=wss://kas.gitlab.example"]}]}
            }
        }
    }))
    .expect("a Deployment")
}

fn dry_run() -> PostParams {
    PostParams {
        dry_run: true,
        ..PostParams::default()
    }
}

/// The validating webhook deploy/ ships (rendered from the enforce overlay: rules,
/// sideEffects, failurePolicy, timeout), calling `fluxgate` and only for `namespace`: the
/// API server's own way of sending some requests to one replica and others to another.
async fn register_for_namespace(env: &Env, fluxgate: &Fluxgate, namespace: &str) {
    use base64::Engine as _;
    let shipped = shipped()
        .into_iter()
        .find(|o| {
            o["kind"] == "ValidatingWebhookConfiguration" && o["metadata"]["name"] == "fluxgate"
        })
        .expect("deploy/ ships the validating webhook");
    let mut webhook = shipped["webhooks"][0].clone();
    assert_eq!(webhook["sideEffects"], "NoneOnDryRun");
    webhook["clientConfig"] = json!({
        "url": format!("https://127.0.0.1:{}/validate", fluxgate.addr.port()),
        "caBundle": base64::engine::general_purpose::STANDARD.encode(&fluxgate.ca_pem),
    });
    webhook["namespaceSelector"] =
        json!({"matchLabels": {"kubernetes.io/metadata.name": namespace}});
    let configuration: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": format!("fluxgate-{namespace}")},
        "webhooks": [webhook],
    }))
    .expect("a webhook configuration");
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingWebhookConfiguration",
        ),
        "validatingwebhookconfigurations",
    );
    Api::<DynamicObject>::all_with(env.client(), &resource)
        .create(&PostParams::default(), &configuration)
        .await
        .expect("the webhook configuration");
    // The API server picks new configurations up a moment later: dry runs until this
    // replica has judged one.
    let api: Api<Deployment> = Api::namespaced(env.client(), namespace);
    let judged = |metrics: &str| metrics.contains("kind=\"Deployment\"");
    let deadline = Instant::now() + Duration::from_secs(30);
    let web: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "probe", "namespace": namespace},
        "spec": {"selector": {"matchLabels": {"app": "probe"}},
            "template": {"metadata": {"labels": {"app": "probe"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]}}}
    }))
    .expect("a Deployment");
    while !judged(&fluxgate.metrics().await) {
        let _ = api.create(&dry_run(), &web).await;
        assert!(
            Instant::now() < deadline,
            "the API server never called {namespace}'s webhook"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `kubectl kustomize deploy/overlays/enforce`: what users apply.
fn shipped() -> Vec<Value> {
    let output = std::process::Command::new(std::env::var("KUBECTL").unwrap_or("kubectl".into()))
        .arg("kustomize")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/overlays/enforce"
        ))
        .output()
        .expect("kubectl on PATH (.ci/run installs it; or set KUBECTL)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_yaml_ng::Deserializer::from_str(&String::from_utf8_lossy(&output.stdout))
        .map(|d| <Value as serde::Deserialize>::deserialize(d).expect("yaml"))
        .filter(|o| !o.is_null())
        .collect()
}

/// Whether the API server lets this Deployment in (a server-side dry run through the webhook).
async fn would_allow(env: &Env, deployment: &Deployment) -> Result<(), String> {
    let namespace = deployment.metadata.namespace.as_deref().expect("namespace");
    Api::<Deployment>::namespaced(env.client(), namespace)
        .create(&dry_run(), deployment)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn replica(lease_namespace: &str) -> FluxgateOptions {
    FluxgateOptions {
        config: Some("policies:\n  single-agent:\n    reservationTtlSeconds: 5\n".into()),
        args: vec!["--reservation-namespace".into(), lease_namespace.into()],
        env: vec![(
            "FLUXGATE_LOG".into(),
            "info,fluxgate::cluster::reservation=debug".into(),
        )],
        webhooks: false,
        ..FluxgateOptions::default()
    }
}

#[tokio::test]
async fn two_replicas_allow_exactly_one_of_two_concurrent_installations() {
    let Some(env) = envtest::cluster().await else {
        return;
    };
    let lease_namespace = env.namespace("fluxgate").await;
    let (ns_a, ns_b) = (
        env.namespace("agents-a").await,
        env.namespace("agents-b").await,
    );
    let a = env.fluxgate(replica(&lease_namespace)).await;
    let b = env.fluxgate(replica(&lease_namespace)).await;
    register_for_namespace(&env, &a, &ns_a).await;
    register_for_namespace(&env, &b, &ns_b).await;
    let api_a: Api<Deployment> = Api::namespaced(env.client(), &ns_a);
    let api_b: Api<Deployment> = Api::namespaced(env.client(), &ns_b);

    let mut winners = Vec::new();
    for round in 0..50 {
        let name = format!("agent-{round}");
        let (first, second) = (agent(&ns_a, &name), agent(&ns_b, &name));
        let params = PostParams::default();
        let started = Instant::now();
        let (through_a, through_b) = tokio::join!(
            api_a.create(&params, &first),
            api_b.create(&params, &second),
        );
        let winner = match (&through_a, &through_b) {
            (Ok(_), Err(e)) | (Err(e), Ok(_)) => {
                let message = e.to_string();
                assert!(
                    message.contains("[single-agent]")
                        && message.contains("second GitLab agent for Kubernetes"),
                    "round {round}: {message}"
                );
                if through_a.is_ok() {
                    (&api_a, &ns_a)
                } else {
                    (&api_b, &ns_b)
                }
            }
            _ => panic!(
                "round {round}: exactly one of two concurrent installations must be allowed: \
                 through A {:?}, through B {:?}\nA:\n{}\nB:\n{}",
                through_a.as_ref().map(|_| "allowed"),
                through_b.as_ref().map(|_| "allowed"),
                a.log(),
                b.log()
            ),
        };
        let judged = started.elapsed();
        winners.push(winner.1.clone());

        // After the allowed one is deleted, a new one is allowed, through either replica, as
        // soon as both have seen it come and go.
        winner
            .0
            .delete(&name, &DeleteParams::default())
            .await
            .expect("delete the allowed one");
        let next = format!("agent-{}", round + 1);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let allowed_a = would_allow(&env, &agent(&ns_a, &next)).await;
            let allowed_b = would_allow(&env, &agent(&ns_b, &next)).await;
            if allowed_a.is_ok() && allowed_b.is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: after the allowed installation was deleted, a new one is still \
                 refused: A {allowed_a:?}, B {allowed_b:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!(
            "round {round:2}: allowed through {}, refused through {}; both answers in {judged:?}; \
             a new installation allowed through both {:?} after the delete",
            if winner.1 == &ns_a { "A" } else { "B" },
            if winner.1 == &ns_a { "B" } else { "A" },
            started.elapsed() - judged
        );
    }
    // Both replicas won rounds: the Lease, not one replica's timing, decided.
    let won_by_a = winners.iter().filter(|w| **w == ns_a).count();
    eprintln!(
        "50 rounds: {won_by_a} won through replica A, {} through B",
        50 - won_by_a
    );
    assert!(
        winners.contains(&ns_a) && winners.contains(&ns_b),
        "{winners:?}"
    );

    let lease = Api::<Lease>::namespaced(env.client(), &lease_namespace)
        .get(LEASE)
        .await
        .expect("the reservation Lease");
    let spec = lease.spec.expect("spec");
    assert_eq!(spec.lease_duration_seconds, Some(5));
    let holder = spec.holder_identity.expect("a holder");
    assert!(holder.starts_with("Deployment/agents-"), "{holder}");
    assert!(holder.ends_with("/agent-49"), "{holder}");
    for replica in [&a, &b] {
        let metrics = replica.metrics().await;
        assert!(
            metrics.contains("fluxgate_agent_reservations_total{result=\"granted\"}")
                && metrics.contains("fluxgate_agent_reservations_total{result=\"refused\"}"),
            "{metrics}"
        );
    }
}

#[tokio::test]
async fn a_dry_run_never_writes_the_reservation() {
    let Some(env) = envtest::cluster().await else {
        return;
    };
    let lease_namespace = env.namespace("fluxgate").await;
    let namespace = env.namespace("agents").await;
    let _fluxgate = env
        .fluxgate(FluxgateOptions::with_args(&[
            "--reservation-namespace",
            lease_namespace.as_str(),
        ]))
        .await;
    let leases: Api<Lease> = Api::namespaced(env.client(), &lease_namespace);
    let deployment = agent(&namespace, "agent");
    would_allow(&env, &deployment)
        .await
        .expect("a dry run is allowed");
    assert!(
        leases.get_opt(LEASE).await.expect("get").is_none(),
        "a server-side dry run wrote the reservation"
    );
    Api::<Deployment>::namespaced(env.client(), &namespace)
        .create(&PostParams::default(), &deployment)
        .await
        .expect("the real create is allowed");
    let lease = leases.get(LEASE).await.expect("the real create reserved");
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some(format!("Deployment/{namespace}/agent").as_str())
    );
    // A dry run of another installation is judged against it: denied, and nothing written.
    let version = leases
        .get(LEASE)
        .await
        .expect("lease")
        .metadata
        .resource_version;
    let other_namespace = env.namespace("agents").await;
    let refused = would_allow(&env, &agent(&other_namespace, "agent")).await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("second GitLab agent")),
        "{refused:?}"
    );
    assert_eq!(
        leases
            .get(LEASE)
            .await
            .expect("lease")
            .metadata
            .resource_version,
        version
    );
}

/// fluxgate runs as the ServiceAccount deploy/ ships, with exactly its RBAC: the reservation
/// works (the Lease lands in the namespace of the kubeconfig context, as in a pod it lands in
/// the service account's), and the Role grants nothing beyond it.
#[tokio::test]
async fn the_shipped_rbac_is_what_the_reservation_needs() {
    let Some(env) = envtest::cluster().await else {
        return;
    };
    let rbac: Vec<Value> = shipped()
        .into_iter()
        .filter(|o| {
            matches!(
                o["kind"].as_str(),
                Some(
                    "Namespace"
                        | "ServiceAccount"
                        | "ClusterRole"
                        | "ClusterRoleBinding"
                        | "Role"
                        | "RoleBinding"
                )
            )
        })
        .collect();
    let manifest: String = rbac
        .iter()
        .map(|o| format!("---\n{}", serde_yaml_ng::to_string(o).expect("yaml")))
        .collect();
    env.kubectl(&["apply", "-f", "-"], &manifest).await.ok();
    let token = env
        .kubectl(
            &[
                "create",
                "token",
                "fluxgate",
                "-n",
                "fluxgate-system",
                "--duration=1h",
            ],
            "",
        )
        .await
        .ok()
        .trim()
        .to_string();
    let dir = std::env::temp_dir().join(format!("fluxgate-envtest-sa-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let ca = dir.join("ca.crt");
    std::fs::write(&ca, env.ca_pem()).expect("ca");
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: envtest\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: fluxgate\n  user:\n    token: {token}\ncontexts:\n- name: fluxgate\n  context: {{cluster: envtest, user: fluxgate, namespace: fluxgate-system}}\ncurrent-context: fluxgate\n",
            env.server(),
            ca.display()
        ),
    )
    .expect("kubeconfig");

    let namespace = env.namespace("agents").await;
    let fluxgate = env
        .fluxgate(FluxgateOptions {
            env: vec![("KUBECONFIG".into(), kubeconfig.display().to_string())],
            // The audit scan runs too: its writer is elected through the Lease fluxgate-audit.
            ..FluxgateOptions::with_args(&["--audit-interval", "1"])
        })
        .await;
    Api::<Deployment>::namespaced(env.client(), &namespace)
        .create(&PostParams::default(), &agent(&namespace, "agent"))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", fluxgate.log()));
    let lease = Api::<Lease>::namespaced(env.client(), "fluxgate-system")
        .get(LEASE)
        .await
        .expect("reserved through the shipped Role, in the service account's namespace");
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some(format!("Deployment/{namespace}/agent").as_str())
    );
    let metrics = fluxgate.metrics().await;
    assert!(
        metrics.contains("fluxgate_agent_reservations_total{result=\"granted\"} 1")
            && !metrics.contains("result=\"unknown\""),
        "{metrics}"
    );

    let started = Instant::now();
    loop {
        let audit = Api::<Lease>::namespaced(env.client(), "fluxgate-system")
            .get_opt(fluxgate::server::leader::LEASE_NAME)
            .await
            .expect("get");
        if audit
            .and_then(|l| l.spec?.holder_identity)
            .is_some_and(|h| h.ends_with(&format!("_{}", fluxgate.pid())))
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the audit Lease is held through the shipped Role\n{}",
            fluxgate.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Nothing more: the API server's own answer for the service account.
    let as_fluxgate = "--as=system:serviceaccount:fluxgate-system:fluxgate";
    for (verb, object, allowed) in [
        ("get", "leases/fluxgate-single-agent", "yes"),
        ("update", "leases/fluxgate-single-agent", "yes"),
        ("patch", "leases/fluxgate-single-agent", "no"),
        ("get", "leases/fluxgate-audit", "yes"),
        ("patch", "leases/fluxgate-audit", "yes"),
        ("update", "leases/fluxgate-audit", "no"),
        ("delete", "leases/fluxgate-audit", "no"),
        ("create", "leases", "yes"),
        ("delete", "leases/fluxgate-single-agent", "no"),
        ("update", "leases/someone-elses", "no"),
        ("list", "leases", "no"),
    ] {
        let out = env
            .kubectl(
                &[
                    "auth",
                    "can-i",
                    verb,
                    object,
                    "-n",
                    "fluxgate-system",
                    as_fluxgate,
                ],
                "",
            )
            .await;
        assert_eq!(
            out.stdout.trim(),
            allowed,
            "{verb} {object}: {}",
            out.stderr
        );
    }
    let out = env
        .kubectl(
            &[
                "auth",
                "can-i",
                "create",
                "leases",
                "-n",
                &namespace,
                as_fluxgate,
            ],
            "",
        )
        .await;
    assert_eq!(
        out.stdout.trim(),
        "no",
        "leases outside fluxgate's namespace"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// A reservation whose installation never appeared (fluxgate allowed the CREATE, the API
/// server refused it afterwards: here because the name was taken) keeps other installations out for `reservationTtlSeconds`, then the next
/// installation takes the Lease over: replaced at the `resourceVersion` it was read at (the
/// same Lease object, not deleted and created), and a writer holding an older read loses.
#[tokio::test]
async fn a_reservation_whose_installation_never_appeared_expires_and_is_taken_over() {
    use fluxgate::cluster::lease::{self, LeaseCell, Written};
    let Some(env) = envtest::cluster().await else {
        return;
    };
    let lease_namespace = env.namespace("fluxgate").await;
    let (ns_a, ns_b) = (
        env.namespace("agents-a").await,
        env.namespace("agents-b").await,
    );
    let ttl = Duration::from_secs(4);
    let _fluxgate = env
        .fluxgate(FluxgateOptions {
            config: Some(format!(
                "policies:\n  single-agent:\n    reservationTtlSeconds: {}\n",
                ttl.as_secs()
            )),
            args: vec!["--reservation-namespace".into(), lease_namespace.clone()],
            ..FluxgateOptions::default()
        })
        .await;
    // A Deployment of that name is there already (no agent): the API server refuses the
    // agent's CREATE with AlreadyExists when it stores it, after the webhooks allowed it.
    let web: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "ghost", "namespace": ns_a},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]}}}
    }))
    .expect("a Deployment");
    Api::<Deployment>::namespaced(env.client(), &ns_a)
        .create(&PostParams::default(), &web)
        .await
        .expect("a web server");
    let leases: Api<Lease> = Api::namespaced(env.client(), &lease_namespace);

    let refused = Api::<Deployment>::namespaced(env.client(), &ns_a)
        .create(&PostParams::default(), &agent(&ns_a, "ghost"))
        .await;
    let message = refused
        .expect_err("the API server refuses the Deployment")
        .to_string();
    assert!(
        message.contains("already exists") && !message.contains("single-agent"),
        "{message}"
    );
    let reserved_at = Instant::now();
    let ghost = leases
        .get(LEASE)
        .await
        .expect("fluxgate reserved before the API server refused");
    let ghost_spec = ghost.spec.clone().expect("spec");
    assert_eq!(
        ghost_spec.holder_identity.as_deref(),
        Some(format!("Deployment/{ns_a}/ghost").as_str())
    );
    assert_eq!(
        ghost_spec.lease_duration_seconds,
        Some(ttl.as_secs() as i32)
    );

    // Within the TTL: another installation is refused, by name of the one reserved, and
    // neither the refusal nor a dry run writes the Lease.
    let api_b: Api<Deployment> = Api::namespaced(env.client(), &ns_b);
    let early = api_b
        .create(&PostParams::default(), &agent(&ns_b, "agent"))
        .await
        .expect_err("refused while the reservation stands")
        .to_string();
    assert!(
        early.contains("second GitLab agent") && early.contains(&format!("{ns_a}/ghost")),
        "{early}"
    );
    assert!(would_allow(&env, &agent(&ns_b, "agent")).await.is_err());
    let unchanged = leases.get(LEASE).await.expect("lease");
    assert_eq!(
        unchanged.metadata.resource_version,
        ghost.metadata.resource_version
    );
    assert!(
        reserved_at.elapsed() < ttl,
        "the refusals took longer than the TTL; the test proves nothing"
    );

    // After the TTL: allowed, and the Lease is taken over in place.
    let deadline = reserved_at + ttl + Duration::from_secs(10);
    let taken_over_after = loop {
        match api_b
            .create(&PostParams::default(), &agent(&ns_b, "agent"))
            .await
        {
            Ok(_) => break reserved_at.elapsed(),
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "still refused {:?} after the reservation: {e}",
                    reserved_at.elapsed()
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    eprintln!(
        "reservation of a never-created installation: refused within the TTL ({ttl:?}), \
         taken over {taken_over_after:?} after it was made"
    );
    assert!(taken_over_after >= ttl - Duration::from_millis(500));
    let taken = leases.get(LEASE).await.expect("lease");
    assert_eq!(
        taken
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref()),
        Some(format!("Deployment/{ns_b}/agent").as_str())
    );
    assert_eq!(
        taken.metadata.uid, ghost.metadata.uid,
        "replaced, not recreated"
    );
    assert_ne!(
        taken.metadata.resource_version,
        ghost.metadata.resource_version
    );

    // The precondition: a writer that read the Lease before the takeover loses.
    let cell = LeaseCell::new(env.client(), &lease_namespace, LEASE);
    let stale = cell
        .replace(
            &ghost,
            lease::held_spec("Deployment/x/late", std::time::SystemTime::now(), ttl),
            Default::default(),
        )
        .await
        .expect("the API server answers");
    assert!(matches!(stale, Written::Lost), "{stale:?}");
    let after = leases.get(LEASE).await.expect("lease");
    assert_eq!(
        after.metadata.resource_version,
        taken.metadata.resource_version
    );
}
