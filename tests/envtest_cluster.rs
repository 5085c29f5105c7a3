//! The envtest harness itself (tests/support/envtest), and fluxgate's cluster view fed by a
//! real kube-apiserver.

#[path = "support/envtest/mod.rs"]
mod envtest;

use envtest::FluxgateOptions;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, PostParams};
use serde_json::json;

fn cluster_role(name: &str) -> ClusterRole {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}],
    }))
    .expect("a ClusterRole")
}

fn deployment(namespace: &str, name: &str, image: &str) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": image}]},
            },
        },
    }))
    .expect("a Deployment")
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
        Api::<Deployment>::namespaced(client, &ns)
            .create(
                &PostParams::default(),
                &deployment(&ns, "web", "nginx:1.27"),
            )
            .await
            .expect("a Deployment");
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
    // The namespace stays (nothing would finish deleting it), empty.
    env.kubectl(&["get", "namespace", &ns], "").await.ok();
}

#[tokio::test]
async fn the_api_server_can_be_stopped_and_started_again_with_its_data() {
    let Some(env) = envtest::cluster().await else {
        return;
    };
    let ns = env.namespace("restart").await;
    let before = env
        .kubectl(&["create", "configmap", "kept", "-n", &ns], "")
        .await;
    before.ok();
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
