//! fluxgate as the admission webhook of a real kube-apiserver (envtest, see
//! tests/support/envtest): requests made with kubectl, judged through the webhook
//! configurations deploy/ ships.

#[path = "support/envtest/mod.rs"]
mod envtest;

use envtest::FluxgateOptions;

#[tokio::test]
async fn an_unsigned_oci_source_is_denied_through_kubectl_apply() {
    let Some(env) = envtest::cluster().await else {
        return;
    };
    let ns = env.namespace("unsigned").await;
    let _fluxgate = env.fluxgate(FluxgateOptions::default()).await;
    let manifest = format!(
        "apiVersion: source.toolkit.fluxcd.io/v1\nkind: OCIRepository\nmetadata:\n  name: podinfo\n  namespace: {ns}\nspec:\n  interval: 5m\n  url: oci://ghcr.io/stefanprodan/manifests/podinfo\n  ref:\n    tag: 6.5.0\n"
    );
    let out = env.kubectl(&["apply", "-f", "-"], &manifest).await;
    let err = out.err();
    assert!(
        err.contains("admission webhook \"validate.fluxgate.io\" denied the request"),
        "{err}"
    );
    assert!(err.contains("[signed-oci-sources]"), "{err}");
}
