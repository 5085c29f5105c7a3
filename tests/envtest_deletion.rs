//! Objects being deleted, through a real kube-apiserver (envtest, see tests/support/envtest):
//! while a finalizer holds an RBAC object it keeps granting, so an UPDATE that widens it is
//! judged like any other and denied; removing the finalizer changes nothing fluxgate judges
//! and is allowed, also for an object that broke the rule before fluxgate was installed.

#[path = "support/envtest/mod.rs"]
mod envtest;

use envtest::FluxgateOptions;

const HOLD: &str = "example.com/hold";

/// `kubectl patch <what> --type=json -p <patch>`.
fn patch<'a>(what: &'a [&'a str], patch: &'a str) -> Vec<&'a str> {
    let mut args = vec!["patch"];
    args.extend_from_slice(what);
    args.extend_from_slice(&["--type=json", "-p", patch]);
    args
}

#[tokio::test]
async fn rbac_held_by_a_finalizer_cannot_be_widened_and_its_finalizer_can_go() {
    let Some(env) = envtest::cluster().await else {
        return;
    };
    let ns = env.namespace("deleting").await;

    // Before fluxgate: a binding that gives GitLab's CI jobs cluster-admin, held by a finalizer.
    let predates = format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: {ns}-ci-admin\n  finalizers: [{HOLD}]\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}}\nsubjects:\n- {{apiGroup: rbac.authorization.k8s.io, kind: Group, name: gitlab:ci_job}}\n"
    );
    env.kubectl(&["apply", "-f", "-"], &predates).await.ok();

    let _fluxgate = env.fluxgate(FluxgateOptions::default()).await;

    // A binding fluxgate allows, and a narrow role for the CI jobs of one project environment.
    let allowed = format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: {ns}-platform-admins\n  finalizers: [{HOLD}]\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}}\nsubjects:\n- {{apiGroup: rbac.authorization.k8s.io, kind: Group, name: platform-admins}}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: {ns}-ci-deployer\n  finalizers: [{HOLD}]\nrules:\n- {{apiGroups: [apps], resources: [deployments], verbs: [get, list, patch]}}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: ci-deployer\n  namespace: {ns}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {ns}-ci-deployer}}\nsubjects:\n- {{apiGroup: rbac.authorization.k8s.io, kind: Group, name: \"gitlab:project_env:42:production\"}}\n"
    );
    env.kubectl(&["apply", "-f", "-"], &allowed).await.ok();

    // Delete them: the finalizer keeps each one, granting, with a deletionTimestamp.
    let (platform_admins, ci_deployer, ci_admin) = (
        format!("clusterrolebinding/{ns}-platform-admins"),
        format!("clusterrole/{ns}-ci-deployer"),
        format!("clusterrolebinding/{ns}-ci-admin"),
    );
    let (platform_admins, ci_deployer, ci_admin) = (
        platform_admins.as_str(),
        ci_deployer.as_str(),
        ci_admin.as_str(),
    );
    for object in [platform_admins, ci_deployer, ci_admin] {
        env.kubectl(&["delete", object, "--wait=false"], "")
            .await
            .ok();
        let out = env
            .kubectl(
                &[
                    "get",
                    object,
                    "-o",
                    "jsonpath={.metadata.deletionTimestamp}",
                ],
                "",
            )
            .await;
        assert!(!out.ok().trim().is_empty(), "{object} is being deleted");
    }

    // Widening while held: denied.
    let add_ci_jobs = r#"[{"op":"add","path":"/subjects/-","value":{"apiGroup":"rbac.authorization.k8s.io","kind":"Group","name":"gitlab:ci_job"}}]"#;
    let out = env
        .kubectl(&patch(&[platform_admins], add_ci_jobs), "")
        .await;
    let err = out.err();
    assert!(
        err.contains("admission webhook \"validate.fluxgate.io\" denied the request"),
        "{err}"
    );
    assert!(
        err.contains("[ci-impersonation]") && err.contains("gitlab:ci_job"),
        "{err}"
    );

    let everything = r#"[{"op":"replace","path":"/rules","value":[{"apiGroups":["*"],"resources":["*"],"verbs":["*"]}]}]"#;
    let out = env.kubectl(&patch(&[ci_deployer], everything), "").await;
    let err = out.err();
    assert!(err.contains("denied the request"), "{err}");
    assert!(err.contains("[ci-impersonation]"), "{err}");

    // Removing the finalizer: allowed, and the API server then removes the object. The
    // binding that predates fluxgate and breaks its rule included.
    let release = r#"[{"op":"remove","path":"/metadata/finalizers"}]"#;
    for object in [platform_admins, ci_deployer, ci_admin] {
        env.kubectl(&patch(&[object], release), "").await.ok();
        let out = env
            .kubectl(&["get", object, "--ignore-not-found"], "")
            .await;
        assert!(out.ok().trim().is_empty(), "{object} is gone");
    }
}
