//! `fluxgate check` judges what the cluster would receive, not the files as they lie: patches
//! are not objects, the Flux Operator's objects are judged, fluxgate's own mutations come first,
//! namespaces are read as the API server and kustomize set them, and the notes say what a
//! tenant's object would run as. Each rule is tested beside the hostile variant that must not
//! slip through.

mod common;

use std::path::{Path, PathBuf};

use fluxgate::check;
use fluxgate::config::Config;
use fluxgate::engine::Engine;
use fluxgate::finding::PolicyId;
use fluxgate::report::{self, Action, Format, NoteType, Report, Scope, Subject};

use common::TempDir;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("parent directory");
    }
    std::fs::write(&path, text).expect("writes the file");
    path
}

fn check_with(config: Config, path: &Path) -> Report {
    let engine = Engine::new(config, None);
    check::check(&engine, &[path.to_path_buf()], &[], &mut std::io::empty())
}

fn check_dir(path: &Path) -> Report {
    check_with(Config::default(), path)
}

fn config(yaml: &str) -> Config {
    Config::from_yaml(yaml, "test.yaml").expect("a valid configuration")
}

fn subject<'r>(report: &'r Report, kind: &str, name: &str) -> &'r Subject {
    report
        .results
        .iter()
        .find(|s| s.kind == kind && s.name == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in {:#?}", report.results))
}

fn subjects<'r>(report: &'r Report, kind: &str, name: &str) -> Vec<&'r Subject> {
    report
        .results
        .iter()
        .filter(|s| s.kind == kind && s.name == name)
        .collect()
}

fn denied_by(subject: &Subject, policy: PolicyId) -> bool {
    subject
        .findings
        .iter()
        .any(|f| f.policy == policy && f.action == Action::Deny)
}

fn has_note(subject: &Subject, note: NoteType) -> bool {
    subject.notes.iter().any(|n| n.note_type == note)
}

const BASE_KUSTOMIZATION: &str = r#"apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: dev-team
  namespace: apps
spec:
  serviceAccountName: dev-team
  interval: 5m
  sourceRef:
    kind: GitRepository
    name: dev-team
"#;

const PATCH_WITHOUT_SA: &str = r#"apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: dev-team
  namespace: apps
spec:
  path: ./production
"#;

// ---------------------------------------------------------------------------------------------
// Kustomize patches

#[test]
fn a_file_a_kustomization_names_as_a_patch_is_set_aside_and_its_base_judged() {
    let dir = TempDir::new("patches");
    let root = &dir.0;
    write(root, "base/sync.yaml", BASE_KUSTOMIZATION);
    write(root, "base/kustomization.yaml", "resources: [sync.yaml]\n");
    write(root, "production/dev-team-patch.yaml", PATCH_WITHOUT_SA);
    write(
        root,
        "production/kustomization.yaml",
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [../base]\npatches:\n  - path: dev-team-patch.yaml\n",
    );
    let report = check_dir(root);
    assert_eq!(report.summary.exit_code, 0, "{:#?}", report.results);
    assert_eq!(subjects(&report, "Kustomization", "dev-team").len(), 1);
    let skip = report
        .skipped
        .iter()
        .find(|s| s.file.ends_with("production/dev-team-patch.yaml"))
        .expect("the patch is skipped with a note");
    assert!(skip.reason.contains("a kustomize patch"), "{}", skip.reason);
    assert!(skip.reason.contains("patches[0].path"), "{}", skip.reason);
}

#[test]
fn naming_a_real_manifest_as_a_patch_does_not_hide_it() {
    // Another kustomization lists the same file as a resource: it is an object, judged.
    let dir = TempDir::new("patch-and-resource");
    let root = &dir.0;
    write(root, "platform/sync.yaml", PATCH_WITHOUT_SA);
    write(
        root,
        "a/kustomization.yaml",
        "resources: [../base]\npatches:\n  - path: ../platform/sync.yaml\n",
    );
    write(
        root,
        "b/kustomization.yaml",
        "resources: [../platform/sync.yaml]\n",
    );
    let report = check_dir(root);
    let kustomization = subject(&report, "Kustomization", "dev-team");
    assert!(denied_by(kustomization, PolicyId::TenantLockdown));
}

// ---------------------------------------------------------------------------------------------
// Mutation first

const SHOP: &str = r#"apiVersion: source.toolkit.fluxcd.io/v1
kind: OCIRepository
metadata:
  name: shop
  namespace: shop
spec:
  interval: 5m
  url: oci://registry.gitlab.com/acme/shop/manifests
  ref:
    tag: 1.2.3
"#;

const VERIFY_DEFAULTS: &str = r#"policies:
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

#[test]
fn a_source_the_mutating_webhook_gives_verify_is_admitted_with_a_note_naming_the_rule() {
    let dir = TempDir::new("mutation");
    let file = write(&dir.0, "shop.yaml", SHOP);
    let without = check_dir(&file);
    assert!(denied_by(
        subject(&without, "OCIRepository", "shop"),
        PolicyId::SignedOciSources
    ));
    let report = check_with(config(VERIFY_DEFAULTS), &file);
    let shop = subject(&report, "OCIRepository", "shop");
    assert!(shop.findings.is_empty(), "{:#?}", shop.findings);
    let note = shop
        .notes
        .iter()
        .find(|n| n.note_type == NoteType::Mutated)
        .expect("a mutation note");
    assert!(
        note.message.contains("adds spec.verify"),
        "{}",
        note.message
    );
    assert!(note.message.contains("acme-gitlab"), "{}", note.message);
    assert_eq!(report.summary.exit_code, 0);
}

#[test]
fn check_mutates_the_kinds_the_mutating_webhook_is_sent() {
    let text =
        std::fs::read_to_string("deploy/base/webhooks.yaml").expect("deploy/base/webhooks.yaml");
    let documents: Vec<serde_json::Value> = text
        .split("\n---")
        .filter_map(|d| serde_yaml_ng::from_str(d).ok())
        .collect();
    let mutating = documents
        .iter()
        .find(|d| d["kind"] == "MutatingWebhookConfiguration")
        .expect("a MutatingWebhookConfiguration");
    let mut sent: Vec<(String, String)> = Vec::new();
    for webhook in mutating["webhooks"].as_array().expect("webhooks") {
        for rule in webhook["rules"].as_array().expect("rules") {
            for group in rule["apiGroups"].as_array().expect("apiGroups") {
                for resource in rule["resources"].as_array().expect("resources") {
                    sent.push((
                        group.as_str().unwrap_or_default().to_string(),
                        resource.as_str().unwrap_or_default().to_string(),
                    ));
                }
            }
        }
    }
    sent.sort();
    // Kinds to resources as the policies' rules name them.
    let engine = Engine::new(Config::default(), None);
    let rules = engine.kinds();
    let mut known: Vec<(String, String)> = check::MUTATED_KINDS
        .iter()
        .map(|(group, kind)| {
            let rule = rules
                .iter()
                .find(|(_, r)| r.group == *group && r.kind == *kind)
                .unwrap_or_else(|| panic!("no policy judges {group} {kind}"));
            (group.to_string(), rule.1.resource.to_string())
        })
        .collect();
    known.sort();
    assert_eq!(known, sent);
}

#[test]
fn a_source_no_verify_default_matches_is_still_denied() {
    let dir = TempDir::new("mutation-miss");
    let file = write(
        &dir.0,
        "evil.yaml",
        &SHOP.replace(
            "registry.gitlab.com/acme/shop",
            "registry.gitlab.com/acme-evil/shop",
        ),
    );
    let report = check_with(config(VERIFY_DEFAULTS), &file);
    let shop = subject(&report, "OCIRepository", "shop");
    assert!(denied_by(shop, PolicyId::SignedOciSources));
    assert!(!has_note(shop, NoteType::Mutated));
}

// ---------------------------------------------------------------------------------------------
// Flux Operator

const FLUX_INSTANCE: &str = r#"apiVersion: fluxcd.controlplane.io/v1
kind: FluxInstance
metadata:
  name: flux
  namespace: flux-system
spec:
  distribution:
    version: "2.x"
    registry: ghcr.io/fluxcd
  sync:
    kind: OCIRepository
    url: oci://registry.gitlab.com/acme/fleet/manifests
    ref: "1.0.0"
    path: clusters/prod
"#;

#[test]
fn a_flux_instance_sync_source_is_judged_after_the_mutating_webhook() {
    let dir = TempDir::new("fluxinstance");
    let file = write(&dir.0, "flux.yaml", FLUX_INSTANCE);
    let report = check_dir(&file);
    let sources = subjects(&report, "OCIRepository", "flux-system");
    assert_eq!(sources.len(), 1);
    let source = sources[0];
    let origin = source
        .generated_by
        .as_ref()
        .expect("generated by the FluxInstance");
    assert_eq!(
        (origin.kind.as_str(), origin.name.as_str()),
        ("FluxInstance", "flux")
    );
    assert_eq!(source.namespace.as_deref(), Some("flux-system"));
    assert!(denied_by(source, PolicyId::SignedOciSources));
    let kustomization = subject(&report, "Kustomization", "flux-system");
    assert!(kustomization.generated_by.is_some());

    let report = check_with(config(VERIFY_DEFAULTS), &file);
    let source = subject(&report, "OCIRepository", "flux-system");
    assert!(source.findings.is_empty(), "{:#?}", source.findings);
    assert!(has_note(source, NoteType::Mutated));
}

#[test]
fn a_flux_instance_patch_is_applied_before_its_source_is_judged() {
    let instance = format!(
        "{FLUX_INSTANCE}  kustomize:\n    patches:\n      - target: {{kind: OCIRepository}}\n        patch: |\n          - op: add\n            path: /spec/insecure\n            value: true\n"
    );
    let dir = TempDir::new("fluxinstance-patch");
    let file = write(&dir.0, "flux.yaml", &instance);
    let report = check_with(config(VERIFY_DEFAULTS), &file);
    let source = subject(&report, "OCIRepository", "flux-system");
    // verifyDefaults gives it verify, but the patch makes it pull over plain HTTP.
    assert!(
        source
            .findings
            .iter()
            .any(|f| f.policy == PolicyId::SignedOciSources
                && f.action == Action::Deny
                && f.message.contains("insecure")),
        "{:#?}",
        source.findings
    );
    assert!(has_note(source, NoteType::Generated));
}

#[test]
fn a_resource_set_is_judged_where_it_is_not_templated_and_says_what_it_did_not_judge() {
    let dir = TempDir::new("resourceset");
    let file = write(
        &dir.0,
        "rset.yaml",
        r#"apiVersion: fluxcd.controlplane.io/v1
kind: ResourceSet
metadata:
  name: operator
  namespace: flux-system
spec:
  inputs:
    - tenant: team-a
  resources:
    - apiVersion: source.toolkit.fluxcd.io/v1
      kind: OCIRepository
      metadata:
        name: flux-operator
        namespace: flux-system
      spec:
        interval: 10m
        url: oci://ghcr.io/controlplaneio-fluxcd/charts/flux-operator
        ref:
          semver: "*"
        verify:
          provider: cosign
          matchOIDCIdentity:
            - issuer: ^https://token\.actions\.githubusercontent\.com$
              subject: ^https://github\.com/controlplaneio-fluxcd/charts/\.github/workflows/release\.yml@refs/tags/v\d+\.\d+\.\d+$
    - apiVersion: v1
      kind: Namespace
      metadata:
        name: << inputs.tenant >>
"#,
    );
    let report = check_dir(&file);
    let source = subject(&report, "OCIRepository", "flux-operator");
    assert_eq!(
        source.generated_by.as_ref().map(|g| g.field.as_str()),
        Some("spec.resources[0]")
    );
    assert!(denied_by(source, PolicyId::OciVersionPinning));
    assert!(!denied_by(source, PolicyId::SignedOciSources));
    let set = subject(&report, "ResourceSet", "operator");
    let note = set
        .notes
        .iter()
        .find(|n| n.note_type == NoteType::Generates)
        .expect("a note on what it makes");
    assert!(
        note.message.contains("spec.resources[1]"),
        "{}",
        note.message
    );
    assert!(
        report.skipped.iter().any(|s| s.reason.contains("templated")
            && s.reason.contains("flux-operator build resourceset"))
    );
}

#[test]
fn an_untemplated_resources_template_cannot_hide_an_unsigned_source() {
    let dir = TempDir::new("resourceset-template");
    let file = write(
        &dir.0,
        "rset.yaml",
        "apiVersion: fluxcd.controlplane.io/v1\nkind: ResourceSet\nmetadata: {name: sneaky, namespace: flux-system}\nspec:\n  resourcesTemplate: |\n    apiVersion: source.toolkit.fluxcd.io/v1\n    kind: OCIRepository\n    metadata: {name: hidden, namespace: team-a}\n    spec: {url: 'oci://ghcr.io/evil/app', ref: {tag: '1.0.0'}}\n",
    );
    let report = check_dir(&file);
    assert!(denied_by(
        subject(&report, "OCIRepository", "hidden"),
        PolicyId::SignedOciSources
    ));
    assert_eq!(report.summary.exit_code, 1);
}

// ---------------------------------------------------------------------------------------------
// Namespaces

#[test]
fn a_cluster_scoped_object_loses_its_namespace_and_a_namespace_less_one_reads_as_such() {
    let dir = TempDir::new("namespaces");
    let file = write(
        &dir.0,
        "rbac.yaml",
        r#"apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: ci-admin
  namespace: team-a
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: admin}
subjects:
  - {apiGroup: rbac.authorization.k8s.io, kind: Group, name: "gitlab:ci_job"}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: ci-edit
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: admin}
subjects:
  - {apiGroup: rbac.authorization.k8s.io, kind: Group, name: "gitlab:ci_job"}
"#,
    );
    let report = check_dir(&file);
    let binding = subject(&report, "ClusterRoleBinding", "ci-admin");
    assert_eq!(binding.namespace, None);
    assert_eq!(binding.scope, Some(Scope::Cluster));
    assert!(has_note(binding, NoteType::ClusterScoped));
    assert!(denied_by(binding, PolicyId::CiImpersonation));
    let role_binding = subject(&report, "RoleBinding", "ci-edit");
    assert_eq!(role_binding.scope, Some(Scope::Namespaced));
    assert!(role_binding.display_name().contains("no namespace set"));
    let message = &role_binding.findings[0].message;
    assert!(message.starts_with("RoleBinding ci-edit "), "{message}");
    assert!(!message.contains(" /ci-edit"), "{message}");
    assert!(!message.contains("in namespace :"), "{message}");
    assert!(
        message.contains("in the namespace it is applied to"),
        "{message}"
    );
}

#[test]
fn objects_get_the_namespace_their_kustomization_build_sets() {
    // The HelmRepository has no namespace of its own; the build puts it next to the release,
    // which finds it there (not "does not exist").
    let dir = TempDir::new("kustomize-namespace");
    let root = &dir.0;
    write(
        root,
        "app/repo.yaml",
        "apiVersion: source.toolkit.fluxcd.io/v1\nkind: HelmRepository\nmetadata: {name: charts}\nspec: {url: 'https://charts.example.com', interval: 1h}\n",
    );
    write(
        root,
        "app/release.yaml",
        "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata: {name: app}\nspec:\n  serviceAccountName: deployer\n  chart: {spec: {chart: app, sourceRef: {kind: HelmRepository, name: charts}}}\n",
    );
    write(
        root,
        "app/kustomization.yaml",
        "namespace: team-a\nresources: [repo.yaml, release.yaml]\n",
    );
    let report = check_dir(root);
    let release = subject(&report, "HelmRelease", "app");
    assert_eq!(release.namespace.as_deref(), Some("team-a"));
    assert!(has_note(release, NoteType::Namespace));
    assert!(release.findings.is_empty(), "{:#?}", release.findings);
}

// ---------------------------------------------------------------------------------------------
// Flux Kustomizations of the set

const HUB: &str = r#"apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: apps
  namespace: production
spec:
  targetNamespace: production
  path: ./clusters/production/apps
  sourceRef:
    kind: GitRepository
    name: SOURCE
    namespace: flux-system
  patches:
    - target:
        kind: HelmRelease
      patch: |
        - op: add
          path: /spec/serviceAccountName
          value: flux-restricted
"#;

const RELEASE: &str = "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata: {name: podinfo}\nspec:\n  chart: {spec: {chart: podinfo, sourceRef: {kind: HelmRepository, name: podinfo}}}\n---\napiVersion: source.toolkit.fluxcd.io/v1\nkind: HelmRepository\nmetadata: {name: podinfo}\nspec: {url: 'https://stefanprodan.github.io/podinfo', interval: 1h}\n";

#[test]
fn a_kustomization_of_the_clusters_own_source_applies_its_target_namespace_and_patches() {
    let dir = TempDir::new("applier");
    let root = &dir.0;
    write(
        root,
        "hub/production.yaml",
        &HUB.replace("SOURCE", "flux-system"),
    );
    write(root, "clusters/production/apps/release.yaml", RELEASE);
    let report = check_dir(root);
    let release = subject(&report, "HelmRelease", "podinfo");
    assert_eq!(release.namespace.as_deref(), Some("production"));
    let applier = release
        .applied_by
        .as_ref()
        .expect("applied by the hub's Kustomization");
    assert_eq!(applier.name, "apps");
    assert!(has_note(release, NoteType::AppliedBy));
    assert!(
        !release
            .findings
            .iter()
            .any(|f| f.policy == PolicyId::TenantLockdown
                && f.message.contains("no spec.serviceAccountName")),
        "{:#?}",
        release.findings
    );
}

#[test]
fn a_kustomization_of_another_source_does_not_change_what_is_judged() {
    // Its paths name another repository's directories: the file here is judged as written.
    let dir = TempDir::new("applier-other-source");
    let root = &dir.0;
    write(
        root,
        "hub/production.yaml",
        &HUB.replace("SOURCE", "tenant-repo"),
    );
    write(root, "clusters/production/apps/release.yaml", RELEASE);
    let report = check_dir(root);
    let release = subject(&report, "HelmRelease", "podinfo");
    assert!(release.applied_by.is_none());
    assert!(denied_by(release, PolicyId::TenantLockdown));
}

// ---------------------------------------------------------------------------------------------
// Tenants and infrastructure

const MULTI_TENANT_INSTANCE: &str = "apiVersion: fluxcd.controlplane.io/v1\nkind: FluxInstance\nmetadata: {name: flux, namespace: flux-system}\nspec:\n  distribution: {version: '2.x', registry: ghcr.io/fluxcd}\n  cluster: {multitenant: true, tenantDefaultServiceAccount: flux}\n";

#[test]
fn a_tenant_release_without_a_service_account_says_what_it_would_run_as() {
    let dir = TempDir::new("runs-as");
    let root = &dir.0;
    write(root, "flux-system/instance.yaml", MULTI_TENANT_INSTANCE);
    write(
        root,
        "team/release.yaml",
        "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata: {name: app, namespace: team-a}\nspec:\n  chart: {spec: {chart: app, sourceRef: {kind: HelmRepository, name: charts}}}\n",
    );
    let report = check_dir(root);
    let release = subject(&report, "HelmRelease", "app");
    // The rule stands: the object must name its ServiceAccount itself.
    assert!(denied_by(release, PolicyId::TenantLockdown));
    let finding = release
        .findings
        .iter()
        .find(|f| f.policy == PolicyId::TenantLockdown)
        .expect("a tenant-lockdown finding");
    assert!(
        finding.message.contains("--default-service-account=<name>"),
        "{}",
        finding.message
    );
    assert!(
        finding.message.contains("cluster-admin"),
        "{}",
        finding.message
    );
    let note = release
        .notes
        .iter()
        .find(|n| n.note_type == NoteType::RunsAs)
        .expect("a runs-as note");
    assert!(
        note.message.contains("ServiceAccount team-a/flux"),
        "{}",
        note.message
    );
}

#[test]
fn infrastructure_applied_from_flux_system_is_suggested_as_a_platform_namespace() {
    let dir = TempDir::new("platform");
    let root = &dir.0;
    write(
        root,
        "clusters/prod/infrastructure.yaml",
        "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata: {name: infra, namespace: flux-system}\nspec:\n  path: ./infrastructure\n  sourceRef: {kind: GitRepository, name: flux-system}\n",
    );
    write(
        root,
        "infrastructure/cert-manager.yaml",
        "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata: {name: cert-manager, namespace: cert-manager}\nspec:\n  chart: {spec: {chart: cert-manager, sourceRef: {kind: HelmRepository, name: jetstack}}}\n",
    );
    let report = check_dir(root);
    let release = subject(&report, "HelmRelease", "cert-manager");
    let note = release
        .notes
        .iter()
        .find(|n| n.note_type == NoteType::PlatformNamespace)
        .expect("a platform-namespace note");
    assert!(
        note.message
            .contains("platformNamespaces: [flux-system, cert-manager]"),
        "{}",
        note.message
    );
    // Following the suggestion makes it the platform team's.
    let report = check_with(
        config(
            "policies:\n  tenant-lockdown:\n    platformNamespaces: [flux-system, cert-manager]\n",
        ),
        root,
    );
    let release = subject(&report, "HelmRelease", "cert-manager");
    assert!(
        !denied_by(release, PolicyId::TenantLockdown),
        "{:#?}",
        release.findings
    );
}

// ---------------------------------------------------------------------------------------------
// Output

#[test]
fn notes_and_origins_are_in_every_format_and_the_json_reads_back() {
    let dir = TempDir::new("formats");
    let file = write(&dir.0, "flux.yaml", FLUX_INSTANCE);
    let report = check_with(config(VERIFY_DEFAULTS), &file);
    let mut json = Vec::new();
    report::write(&report, Format::Json, false, &mut json).expect("writes JSON");
    let back: Report = serde_json::from_slice(&json).expect("the JSON reads back");
    assert_eq!(back, report);
    let value: serde_json::Value = serde_json::from_slice(&json).expect("JSON");
    let source = value["results"]
        .as_array()
        .and_then(|r| r.iter().find(|s| s["kind"] == "OCIRepository"))
        .expect("the generated source");
    assert_eq!(source["generatedBy"]["field"], "spec.sync (source)");
    assert_eq!(source["scope"], "namespaced");
    assert_eq!(source["notes"][0]["type"], "mutated");
    let mut text = Vec::new();
    report::write(&report, Format::Text, false, &mut text).expect("writes text");
    let text = String::from_utf8(text).expect("UTF-8");
    assert!(
        text.contains("(generated by FluxInstance flux-system/flux spec.sync (source))"),
        "{text}"
    );
    assert!(
        text.contains("NOTE   fluxgate's mutating webhook"),
        "{text}"
    );
    let mut junit = Vec::new();
    report::write(&report, Format::Junit, false, &mut junit).expect("writes JUnit");
    let mut quality = Vec::new();
    report::write(&report, Format::Codequality, false, &mut quality).expect("writes Code Quality");
}
