//! Manifests shaped like a `kustomize build` of a GitOps repository, for `fluxgate check`
//! throughput: Flux sources and releases, Deployments, RBAC, ConfigMaps, in equal parts.

#![allow(dead_code)]

use std::fmt::Write as _;

/// `count` objects as one multi-document YAML text.
pub fn yaml(count: usize) -> String {
    let mut out = String::with_capacity(count * 450);
    for i in 0..count {
        object(i, &mut out);
        out.push_str("---\n");
    }
    out
}

fn object(i: usize, out: &mut String) {
    let ns = format!("team-{}", i % 50);
    // Writing to a String cannot fail.
    let _ = match i % 6 {
        0 => write!(
            out,
            "apiVersion: source.toolkit.fluxcd.io/v1\nkind: OCIRepository\nmetadata:\n  name: app-{i}\n  namespace: {ns}\n  labels:\n    app.kubernetes.io/name: app-{i}\nspec:\n  interval: 5m\n  url: oci://registry.gitlab.com/group/project/app-{i}\n  ref:\n    tag: 1.2.{i}\n  verify:\n    provider: cosign\n    matchOIDCIdentity:\n    - issuer: ^https://gitlab\\.com$\n      subject: ^https://gitlab\\.com/group/project//\\.gitlab-ci\\.yml@refs/heads/main$\n"
        ),
        1 => write!(
            out,
            "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata:\n  name: app-{i}\n  namespace: {ns}\nspec:\n  interval: 10m\n  chartRef:\n    kind: OCIRepository\n    name: app-{}\n  values:\n    replicaCount: 2\n    image:\n      tag: 1.{i}.0\n",
            i - 1
        ),
        2 => write!(
            out,
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web-{i}\n  namespace: {ns}\n  labels: {{app: web-{i}}}\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {{app: web-{i}}}\n  template:\n    metadata:\n      labels: {{app: web-{i}}}\n    spec:\n      containers:\n      - name: web\n        image: registry.example.com/web:1.{i}\n        ports:\n        - containerPort: 8080\n        resources:\n          requests: {{cpu: 100m, memory: 64Mi}}\n"
        ),
        3 => write!(
            out,
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: deployer-{i}\n  namespace: {ns}\nrules:\n- apiGroups: [apps]\n  resources: [deployments]\n  verbs: [get, list, watch, patch]\n- apiGroups: ['']\n  resources: [configmaps]\n  verbs: [get, list]\n"
        ),
        4 => write!(
            out,
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: ci-{i}\n  namespace: {ns}\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: Role\n  name: deployer-{}\nsubjects:\n- apiGroup: rbac.authorization.k8s.io\n  kind: Group\n  name: gitlab:project_env:{i}:production\n",
            i - 1
        ),
        _ => write!(
            out,
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings-{i}\n  namespace: {ns}\ndata:\n  LOG_LEVEL: info\n  FEATURE_FLAGS: \"a,b,c\"\n  config.yaml: |\n    server:\n      port: 8080\n      replicas: {i}\n"
        ),
    };
}
