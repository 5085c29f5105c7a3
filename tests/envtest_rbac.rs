//! `ci-impersonation` through a real kube-apiserver (envtest, see tests/support/envtest):
//! RBAC applied with kubectl, judged through the webhook configurations deploy/ ships.

#[path = "support/envtest/mod.rs"]
mod envtest;

use std::time::{Duration, Instant};

use envtest::{Env, FluxgateOptions};

const CI_JOB_VIEW: &str = "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: ci-job-view}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: 'gitlab:ci_job'}]
";

/// Flux's `flux-view`, which aggregates wildcard reads of Flux's groups into view.
const FLUX_VIEW: &str = "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: flux-view
  labels:
    rbac.authorization.k8s.io/aggregate-to-admin: 'true'
    rbac.authorization.k8s.io/aggregate-to-edit: 'true'
    rbac.authorization.k8s.io/aggregate-to-view: 'true'
rules:
- apiGroups: [notification.toolkit.fluxcd.io, source.toolkit.fluxcd.io, helm.toolkit.fluxcd.io, kustomize.toolkit.fluxcd.io]
  resources: ['*']
  verbs: [get, list, watch]
";

/// A ClusterRole that adds token requests for every ServiceAccount to view.
const TOKEN_MINTER: &str = "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: token-minter
  labels: {rbac.authorization.k8s.io/aggregate-to-view: 'true'}
rules:
- apiGroups: ['']
  resources: [serviceaccounts/token]
  verbs: [create]
";

/// Applies `manifest` with a server dry run until the webhook denies it (fluxgate's cluster
/// view learns what was applied before through its watches, a moment later), then for real;
/// returns kubectl's error output.
async fn denied_once_the_view_knows(env: &Env, manifest: &str) -> String {
    let started = Instant::now();
    loop {
        let out = env
            .kubectl(&["apply", "--dry-run=server", "-f", "-"], manifest)
            .await;
        if !out.success || started.elapsed() > Duration::from_secs(20) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    env.kubectl(&["apply", "-f", "-"], manifest)
        .await
        .err()
        .to_string()
}

#[tokio::test]
async fn a_view_aggregated_escalation_is_denied_and_gitlabs_view_binding_passes() {
    let Some(env) = envtest::cluster().await else {
        return;
    };
    let _fluxgate = env.fluxgate(FluxgateOptions::default()).await;
    // GitLab's documented binding, with Flux's view role installed: allowed.
    env.kubectl(&["apply", "-f", "-"], FLUX_VIEW).await.ok();
    env.kubectl(&["apply", "-f", "-"], CI_JOB_VIEW).await.ok();
    // A ClusterRole that would let every CI job mint a token for any ServiceAccount through
    // view: denied when it is applied.
    let err = denied_once_the_view_knows(&env, TOKEN_MINTER).await;
    assert!(
        err.contains("admission webhook \"validate.fluxgate.io\" denied the request"),
        "{err}"
    );
    for phrase in [
        "[ci-impersonation]",
        "ClusterRole view, which aggregates ClusterRole token-minter",
        "ClusterRoleBinding ci-job-view (Group gitlab:ci_job)",
        "serviceaccounts/token",
    ] {
        assert!(err.contains(phrase), "{phrase}: {err}");
    }
    let get = env
        .kubectl(&["get", "clusterrole", "token-minter"], "")
        .await;
    assert!(!get.success, "the ClusterRole was not created");
}

#[tokio::test]
async fn a_binding_of_view_widened_by_aggregation_is_denied() {
    let Some(env) = envtest::cluster().await else {
        return;
    };
    let _fluxgate = env.fluxgate(FluxgateOptions::default()).await;
    // Nobody from GitLab is bound to view yet: the ClusterRole is allowed...
    env.kubectl(&["apply", "-f", "-"], TOKEN_MINTER).await.ok();
    // ...and the binding of the widened view is not.
    let err = denied_once_the_view_knows(&env, CI_JOB_VIEW).await;
    for phrase in [
        "denied the request",
        "ClusterRole view is broad in every namespace",
        "(from ClusterRole token-minter)",
    ] {
        assert!(err.contains(phrase), "{phrase}: {err}");
    }
}

#[tokio::test]
async fn gitlabs_environment_binding_of_admin_passes_and_kube_system_is_judged() {
    let Some(env) = envtest::cluster().await else {
        return;
    };
    let ns = env.namespace("review").await;
    let _fluxgate = env.fluxgate(FluxgateOptions::default()).await;
    // GitLab's environment template: admin for one environment, in its own namespace.
    let environment = format!(
        "apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: bind-review, namespace: {ns}}}
subjects: [{{kind: Group, apiGroup: rbac.authorization.k8s.io, name: 'gitlab:project_env:42:review'}}]
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: admin}}
"
    );
    env.kubectl(&["apply", "-f", "-"], &environment).await.ok();
    // The same in kube-system goes to the fail-open webhook for that namespace, and is denied.
    let kube_system = environment.replace(&format!("namespace: {ns}"), "namespace: kube-system");
    let err = env
        .kubectl(&["apply", "-f", "-"], &kube_system)
        .await
        .err()
        .to_string();
    for phrase in [
        "admission webhook \"rbac-protected-namespaces.fluxgate.io\" denied the request",
        "in the protected namespace kube-system",
        "pods/exec",
    ] {
        assert!(err.contains(phrase), "{phrase}: {err}");
    }
}
