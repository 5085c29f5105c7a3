//! Every policy, through `Engine::review` on decoded reviews. The first byte picks the kind
//! (every kind some policy judges), the operation, dry-run and a subresource; the rest is
//! the object, and after a 0xFF byte the old object of an UPDATE. Bodies that are not JSON
//! are skipped: decoding is `admission_decode`'s target.
#![no_main]

use std::sync::LazyLock;

use fluxgate::admission;
use fluxgate::cluster::MemoryView;
use fluxgate::config::Config;
use fluxgate::engine::{Endpoint, Engine};
use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;

const CONFIG: &str = r#"
policies:
  signed-oci-sources:
    verifyDefaults:
      - match: oci://registry.gitlab.com/acme/**
        verify:
          provider: cosign
          matchOIDCIdentity:
            - issuer: '^https://gitlab\.com$'
              subject: '^https://gitlab\.com/{group}/{project}//\.gitlab-ci\.yml@refs/heads/main$'
"#;

const AGENTK: &str = "registry.gitlab.com/gitlab-org/cluster-integration/gitlab-agent/agentk";

struct World {
    engine: Engine,
    view: MemoryView,
    kinds: Vec<(&'static str, &'static str)>,
}

static WORLD: LazyLock<World> = LazyLock::new(|| {
    let config = Config::from_yaml(CONFIG, "fuzz.yaml").expect("the fuzz configuration parses");
    let engine = Engine::new(config, None);
    let view = MemoryView::new();
    for object in [
        serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "gitlab-agent-v2", "namespace": "gitlab-agent", "uid": "uid-agent",
                "labels": {"app.kubernetes.io/instance": "gitlab-agent"}},
            "spec": {"template": {"spec": {"containers": [{"name": "a", "image": format!("{AGENTK}:v17.3.1")}]}}}}),
        serde_json::json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "HelmRepository",
            "metadata": {"name": "charts", "namespace": "team-a"},
            "spec": {"type": "oci", "url": "oci://ghcr.io/acme/charts"}}),
        serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "deployer", "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}},
            "rules": [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "create"]}]}),
        serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "ci"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "deployer"},
            "subjects": [{"kind": "Group", "name": "gitlab:ci_job"}]}),
    ] {
        view.apply(&object).expect("fixture applies");
    }
    let mut kinds: Vec<(&'static str, &'static str)> = engine
        .kinds()
        .into_iter()
        .map(|(_, rule)| (rule.group, rule.kind))
        .collect();
    kinds.sort();
    kinds.dedup();
    World {
        engine,
        view,
        kinds,
    }
});

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let world = &*WORLD;
    let (group, kind) = world.kinds[usize::from(selector) % world.kinds.len()];
    let operation = if selector & 0x80 != 0 {
        "UPDATE"
    } else {
        "CREATE"
    };
    let dry_run = selector & 0x40 != 0;
    let sub_resource = match selector & 0x30 {
        0x30 => "\"ephemeralcontainers\"",
        0x20 => "\"status\"",
        _ => "null",
    };
    let (object, old) = match rest.iter().position(|&b| b == 0xFF) {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let Some(object) = as_json(object) else {
        return;
    };
    let old = match old.map(as_json) {
        Some(None) => return,
        Some(Some(old)) => old,
        None => "null",
    };
    // Built as text so that the object reaches the policies byte for byte.
    let body = format!(
        r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{"uid":"fuzz","kind":{{"group":"{group}","version":"v1","kind":"{kind}"}},"resource":{{"group":"{group}","version":"v1","resource":"x"}},"subResource":{sub_resource},"namespace":"team-a","name":"fuzz","operation":"{operation}","userInfo":{{"username":"fuzz"}},"object":{object},"oldObject":{old},"dryRun":{dry_run}}}}}"#
    );
    let Ok(request) = admission::decode(body.as_bytes()) else {
        return;
    };
    let _ = world.engine.prefetch(&request);
    for endpoint in [Endpoint::Validate, Endpoint::Mutate] {
        let (verdict, _) = world.engine.review(endpoint, &request, &world.view);
        let answer = fluxgate::engine::verdict::encode(&request.uid, &verdict);
        assert!(serde_json::from_slice::<serde_json::Value>(&answer).is_ok());
    }
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(object) {
        let _ = world.view.apply(&value);
        let _ = fluxgate::audit::scan(&world.engine, &world.view, [&value]);
    }
});

fn as_json(bytes: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(bytes).ok()?;
    serde_json::from_str::<&RawValue>(text)
        .ok()
        .map(RawValue::get)
}
