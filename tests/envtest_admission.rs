//! fluxgate as the admission webhook of a real kube-apiserver (envtest, see
//! tests/support/envtest): objects applied with kubectl, judged through the webhook
//! configurations deploy/ ships, each policy denying and allowing, server-side dry runs, the
//! mutating webhook's verify defaults, and modes as the client sees them.
//!
//! Without KUBEBUILDER_ASSETS these tests print one line and pass without doing anything.

#[path = "support/envtest/mod.rs"]
mod envtest;

use std::time::{Duration, Instant};

use envtest::{Env, FluxgateOptions, Kubectl};
use serde_json::Value;

/// A keyless cosign verification that names one GitLab project's main-branch pipeline.
const GITLAB_VERIFY: &str = r#"
  verify:
    provider: cosign
    matchOIDCIdentity:
      - issuer: '^https://gitlab\.com$'
        subject: '^https://gitlab\.com/acme/app//\.gitlab-ci\.yml@refs/heads/main$'"#;

fn oci_repository(name: &str, url: &str, reference: &str, verify: &str) -> String {
    format!(
        "apiVersion: source.toolkit.fluxcd.io/v1\nkind: OCIRepository\nmetadata:\n  name: {name}\nspec:\n  interval: 5m\n  url: {url}\n  ref:\n    {reference}\n{verify}\n"
    )
}

async fn apply(env: &Env, namespace: &str, manifest: &str) -> Kubectl {
    env.kubectl(&["apply", "-n", namespace, "-f", "-"], manifest)
        .await
}

/// Asserts that the apply was denied by fluxgate's validating webhook, with each phrase in
/// the message kubectl prints.
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

/// Asserts that the apply succeeded without any warning.
#[track_caller]
fn assert_allowed(out: &Kubectl) {
    out.ok();
    assert!(!out.stderr.contains("Warning"), "{}", out.stderr);
}

async fn get_json(env: &Env, namespace: &str, resource: &str) -> Value {
    let out = env
        .kubectl(&["get", "-n", namespace, resource, "-o", "json"], "")
        .await;
    serde_json::from_str(out.ok()).expect("kubectl get -o json")
}

async fn exists(env: &Env, namespace: &str, resource: &str) -> bool {
    env.kubectl(&["get", "-n", namespace, resource], "")
        .await
        .success
}

#[tokio::test]
async fn signed_oci_sources_denies_an_unverified_source_and_allows_a_gitlab_signed_one() {
    let Some(env) = envtest::cluster().await else {
        return;
    };
    let ns = env.namespace("signed").await;
    let _fluxgate = env.fluxgate(FluxgateOptions::default()).await;

    let unsigned = oci_repository(
        "podinfo",
        "oci://ghcr.io/stefanprodan/manifests/podinfo",
        "tag: 6.5.0",
        "",
    );
    let out = apply(&env, &ns, &unsigned).await;
    assert_denied(
        &out,
        &[
            "[signed-oci-sources]",
            &format!("OCIRepository {ns}/podinfo"),
            "spec.verify is missing",
        ],
    );
    assert!(!exists(&env, &ns, "ocirepository/podinfo").await);

    // Keyless with an identity that trusts any GitLab project: denied too.
    let anyone = oci_repository(
        "anyone",
        "oci://registry.gitlab.com/acme/app/manifests",
        "tag: 1.2.3",
        &GITLAB_VERIFY.replace(r"acme/app", ".*"),
    );
    assert_denied(&apply(&env, &ns, &anyone).await, &["[signed-oci-sources]"]);

    let signed = oci_repository(
        "app",
        "oci://registry.gitlab.com/acme/app/manifests",
        "tag: 1.2.3",
        GITLAB_VERIFY,
    );
    let out = apply(&env, &ns, &signed).await;
    assert_allowed(&out);
    assert!(
        out.stdout
            .contains("ocirepository.source.toolkit.fluxcd.io/app created")
    );
}

#[tokio::test]
async fn a_chart_from_an_oci_helm_repository_in_the_cluster_must_be_verified() {
    let Some(env) = envtest::cluster().await else {
        return;
    };
    let ns = env.namespace("charts").await;
    let _fluxgate = env.fluxgate(FluxgateOptions::default()).await;
    // The repositories are created after fluxgate started: the view learns them from the API
    // server.
    let repository = |name: &str, url: &str, oci: bool| {
        let kind = if oci { "  type: oci\n" } else { "" };
        format!(
            "apiVersion: source.toolkit.fluxcd.io/v1\nkind: HelmRepository\nmetadata:\n  name: {name}\nspec:\n{kind}  interval: 10m\n  url: {url}\n"
        )
    };
    let chart = |name: &str, repository: &str, verify: &str| {
        format!(
            "apiVersion: source.toolkit.fluxcd.io/v1\nkind: HelmChart\nmetadata:\n  name: {name}\nspec:\n  interval: 10m\n  chart: podinfo\n  version: 6.5.0\n  sourceRef:\n    kind: HelmRepository\n    name: {repository}\n{verify}\n"
        )
    };
    let oci = repository("oci-charts", "oci://ghcr.io/stefanprodan/charts", true);
    assert_allowed(&apply(&env, &ns, &oci).await);
    let http = repository(
        "http-charts",
        "https://stefanprodan.github.io/podinfo",
        false,
    );
    assert_allowed(&apply(&env, &ns, &http).await);

    let out = apply(&env, &ns, &chart("unverified", "oci-charts", "")).await;
    assert_denied(
        &out,
        &[
            "[signed-oci-sources]",
            &format!(
                "HelmChart {ns}/unverified (chart oci://ghcr.io/stefanprodan/charts/podinfo from HelmRepository {ns}/oci-charts)"
            ),
            "spec.verify is missing",
        ],
    );
    assert_allowed(&apply(&env, &ns, &chart("verified", "oci-charts", GITLAB_VERIFY)).await);
    // Charts from an HTTP repository cannot be verified, and need not be.
    assert_allowed(&apply(&env, &ns, &chart("from-http", "http-charts", "")).await);
    // But that repository turned into an OCI one would have them pulled unverified: denied,
    // naming the chart, once the view has it.
    let switched = repository("http-charts", "oci://ghcr.io/stefanprodan/charts", true);
    let deadline = Instant::now() + Duration::from_secs(20);
    let out = loop {
        let out = apply(&env, &ns, &switched).await;
        if !out.success || Instant::now() > deadline {
            break out;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_denied(
        &out,
        &[
            "[signed-oci-sources]",
            &format!("HelmRepository {ns}/http-charts"),
            "from-http",
        ],
    );
}

#[tokio::test]
async fn oci_version_pinning_denies_a_moving_tag_and_allows_a_range_within_one_major() {
    let Some(env) = envtest::cluster().await else {
        return;
    };
    let ns = env.namespace("pinning").await;
    let _fluxgate = env.fluxgate(FluxgateOptions::default()).await;
    let url = "oci://registry.gitlab.com/acme/app/manifests";
    let latest = oci_repository("latest", url, "tag: latest", GITLAB_VERIFY);
    assert_denied(
        &apply(&env, &ns, &latest).await,
        &[
            "[oci-version-pinning]",
            &format!("OCIRepository {ns}/latest"),
        ],
    );
    let any_major = oci_repository("any-major", url, "semver: '>=1.0.0'", GITLAB_VERIFY);
    assert_denied(
        &apply(&env, &ns, &any_major).await,
        &["[oci-version-pinning]"],
    );
    let minor_and_patch =
        oci_repository("one-major", url, "semver: '>=1.2.0 <2.0.0'", GITLAB_VERIFY);
    assert_allowed(&apply(&env, &ns, &minor_and_patch).await);
}

#[tokio::test]
async fn tenant_lockdown_denies_a_tenant_kustomization_without_a_service_account() {
    let Some(env) = envtest::cluster().await else {
        return;
    };
    let ns = env.namespace("tenant").await;
    let _fluxgate = env.fluxgate(FluxgateOptions::default()).await;
    let kustomization = |name: &str, extra: &str| {
        format!(
            "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  name: {name}\nspec:\n  interval: 10m\n  path: ./deploy\n  prune: true\n  sourceRef:\n    kind: GitRepository\n    name: app\n{extra}"
        )
    };
    assert_denied(
        &apply(&env, &ns, &kustomization("as-cluster-admin", "")).await,
        &[
            "[tenant-lockdown]",
            &format!("Kustomization {ns}/as-cluster-admin"),
            "serviceAccountName",
        ],
    );
    assert_denied(
        &apply(
            &env,
            &ns,
            &kustomization(
                "cross-namespace",
                "  serviceAccountName: app\n  targetNamespace: x\n",
            )
            .replace(
                "    name: app\n",
                "    name: app\n    namespace: flux-system\n",
            ),
        )
        .await,
        &["[tenant-lockdown]", "flux-system"],
    );
    assert_allowed(
        &apply(
            &env,
            &ns,
            &kustomization("locked-down", "  serviceAccountName: app\n"),
        )
        .await,
    );
}

#[tokio::test]
async fn ci_impersonation_denies_cluster_admin_and_allows_gitlabs_own_bindings() {
    let Some(env) = envtest::cluster().await else {
        return;
    };
    let ns = env.namespace("ci").await;
    let _fluxgate = env.fluxgate(FluxgateOptions::default()).await;
    let binding = |name: &str, role: &str, group: &str| {
        format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: {name}\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: {role}\nsubjects:\n  - apiGroup: rbac.authorization.k8s.io\n    kind: Group\n    name: '{group}'\n"
        )
    };
    assert_denied(
        &apply(
            &env,
            &ns,
            &binding("ci-admin", "cluster-admin", "gitlab:ci_job"),
        )
        .await,
        &["[ci-impersonation]", "gitlab:ci_job", "cluster-admin"],
    );
    assert_denied(
        &apply(
            &env,
            &ns,
            &binding(
                "project-admin",
                "cluster-admin",
                "gitlab:project_env:42:review",
            ),
        )
        .await,
        &["[ci-impersonation]", "gitlab:project_env:42:review"],
    );
    // GitLab's documented environment template: admin in the environment's namespace.
    assert_allowed(
        &apply(
            &env,
            &ns,
            &binding("environment", "admin", "gitlab:project_env:42:review"),
        )
        .await,
    );
    // A look-alike is not a GitLab identity.
    assert_allowed(
        &apply(
            &env,
            &ns,
            &binding("look-alike", "cluster-admin", "gitlab-ci"),
        )
        .await,
    );
    assert_allowed(&apply(&env, &ns, &binding("ci-view", "view", "gitlab:ci_job")).await);
}

#[tokio::test]
async fn secret_rotation_in_warn_mode_warns_about_an_overdue_key_through_kubectl() {
    let Some(env) = envtest::cluster().await else {
        return;
    };
    let ns = env.namespace("rotation").await;
    let _fluxgate = env
        .fluxgate(FluxgateOptions::with_config(
            "policies:\n  secret-rotation:\n    mode: warn\n",
        ))
        .await;
    let secret = |name: &str, annotations: &str| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n{annotations}stringData:\n  username: git\n  password: not-a-real-one\n"
        )
    };
    apply(
        &env,
        &ns,
        &secret(
            "old-auth",
            "  annotations:\n    fluxgate.io/rotated-at: '2020-01-01T00:00:00Z'\n",
        ),
    )
    .await
    .ok();
    apply(&env, &ns, &secret("new-auth", "")).await.ok();
    let repository = |name: &str, secret: &str| {
        format!(
            "apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata:\n  name: {name}\nspec:\n  interval: 10m\n  url: https://gitlab.com/acme/app.git\n  ref:\n    branch: main\n  secretRef:\n    name: {secret}\n"
        )
    };
    // The Secrets reach fluxgate through its watch: apply until the warning shows.
    let deadline = Instant::now() + Duration::from_secs(20);
    let out = loop {
        let out = apply(&env, &ns, &repository("old", "old-auth")).await;
        out.ok();
        if out.stderr.contains("Warning") || Instant::now() > deadline {
            break out;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        out.stderr.contains("Warning: [secret-rotation]") && out.stderr.contains("old-auth"),
        "{}",
        out.stderr
    );
    // Both Secrets are in the view by now: the fresh one draws no warning.
    assert_allowed(&apply(&env, &ns, &repository("new", "new-auth")).await);
}

#[tokio::test]
async fn the_flux_controllers_without_the_lockdown_flags_are_allowed_with_a_warning() {
    let Some(env) = envtest::cluster().await else {
        return;
    };
    let ns = env.namespace("flux-controllers").await;
    let _fluxgate = env.fluxgate(FluxgateOptions::default()).await;
    let controller = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: kustomize-controller\nspec:\n  selector:\n    matchLabels:\n      app: kustomize-controller\n  template:\n    metadata:\n      labels:\n        app: kustomize-controller\n    spec:\n      containers:\n        - name: manager\n          image: ghcr.io/fluxcd/kustomize-controller:v1.4.0\n          args: [--watch-all-namespaces=true]\n";
    let out = apply(&env, &ns, controller).await;
    out.ok();
    assert!(
        out.stderr.contains("Warning: [tenant-lockdown]")
            && out.stderr.contains("--no-cross-namespace-refs"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn a_server_side_dry_run_is_judged_and_stores_nothing() {
    let Some(env) = envtest::cluster().await else {
        return;
    };
    let ns = env.namespace("dry-run").await;
    let _fluxgate = env.fluxgate(FluxgateOptions::default()).await;
    let unsigned = oci_repository(
        "unsigned",
        "oci://ghcr.io/stefanprodan/manifests/podinfo",
        "tag: 6.5.0",
        "",
    );
    let out = env
        .kubectl(
            &["apply", "--dry-run=server", "-n", &ns, "-f", "-"],
            &unsigned,
        )
        .await;
    assert_denied(&out, &["[signed-oci-sources]"]);
    let signed = oci_repository(
        "signed",
        "oci://registry.gitlab.com/acme/app/manifests",
        "tag: 1.2.3",
        GITLAB_VERIFY,
    );
    let out = env
        .kubectl(
            &["apply", "--dry-run=server", "-n", &ns, "-f", "-"],
            &signed,
        )
        .await;
    assert!(out.ok().contains("(server dry run)"), "{}", out.stdout);
    assert!(!exists(&env, &ns, "ocirepository/signed").await);
}

#[tokio::test]
async fn the_mutating_webhook_adds_the_verify_defaults_and_the_result_is_admitted() {
    let Some(env) = envtest::cluster().await else {
        return;
    };
    let ns = env.namespace("mutate").await;
    let config = r#"
policies:
  signed-oci-sources:
    verifyDefaults:
      - name: acme-gitlab
        match: oci://registry.gitlab.com/acme/**
        verify:
          provider: cosign
          matchOIDCIdentity:
            - issuer: '^https://gitlab\.com$'
              subject: '^https://gitlab\.com/{group}/{project}//\.gitlab-ci\.yml@refs/heads/main$'
"#;
    let _fluxgate = env.fluxgate(FluxgateOptions::with_config(config)).await;
    let bare = oci_repository(
        "app",
        "oci://registry.gitlab.com/acme/app/manifests",
        "tag: 1.2.3",
        "",
    );
    assert_allowed(&apply(&env, &ns, &bare).await);
    let stored = get_json(&env, &ns, "ocirepository/app").await;
    assert_eq!(stored["spec"]["verify"]["provider"], "cosign");
    assert_eq!(
        stored["spec"]["verify"]["matchOIDCIdentity"][0]["subject"],
        r"^https://gitlab\.com/acme/app//\.gitlab-ci\.yml@refs/heads/main$"
    );
    assert_eq!(
        stored["metadata"]["annotations"]["fluxgate.io/verify-default"],
        "acme-gitlab"
    );
    // Applied again (an UPDATE), the defaults are not added twice, nor changed.
    assert_allowed(&apply(&env, &ns, &bare).await);
    let again = get_json(&env, &ns, "ocirepository/app").await;
    assert_eq!(again["spec"]["verify"], stored["spec"]["verify"]);
    // A source no default matches is still denied.
    let elsewhere = oci_repository(
        "elsewhere",
        "oci://ghcr.io/stefanprodan/manifests/podinfo",
        "tag: 6.5.0",
        "",
    );
    assert_denied(
        &apply(&env, &ns, &elsewhere).await,
        &["[signed-oci-sources]"],
    );
}

#[tokio::test]
async fn in_warn_mode_a_violation_is_admitted_and_kubectl_shows_the_warning() {
    let Some(env) = envtest::cluster().await else {
        return;
    };
    let ns = env.namespace("warn").await;
    let _fluxgate = env
        .fluxgate(FluxgateOptions::with_config("mode: warn\n"))
        .await;
    let unsigned = oci_repository(
        "podinfo",
        "oci://ghcr.io/stefanprodan/manifests/podinfo",
        "tag: 6.5.0",
        "",
    );
    let out = apply(&env, &ns, &unsigned).await;
    out.ok();
    assert!(
        out.stderr.contains("Warning: [signed-oci-sources]"),
        "{}",
        out.stderr
    );
    assert!(exists(&env, &ns, "ocirepository/podinfo").await);
}
