//! The configuration parser: any file is either a configuration that an engine can run on,
//! or an error with a message; never a panic.
#![no_main]

use std::sync::LazyLock;

use fluxgate::admission;
use fluxgate::cluster::{ClusterView, MemoryView};
use fluxgate::config::Config;
use fluxgate::engine::{Endpoint, Engine};
use libfuzzer_sys::fuzz_target;

const REVIEWS: &[&str] = &[
    r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"c","kind":{"group":"source.toolkit.fluxcd.io","version":"v1","kind":"OCIRepository"},"namespace":"team-a","name":"app","operation":"CREATE","userInfo":{"username":"u","groups":["g"]},"object":{"apiVersion":"source.toolkit.fluxcd.io/v1","kind":"OCIRepository","metadata":{"name":"app","namespace":"team-a"},"spec":{"url":"oci://registry.gitlab.com/acme/app"}}}}"#,
    r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"c","kind":{"group":"apps","version":"v1","kind":"Deployment"},"namespace":"team-a","name":"a","operation":"CREATE","userInfo":{"username":"u"},"object":{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"a","namespace":"team-a"},"spec":{"template":{"spec":{"containers":[{"name":"a","image":"registry.corp/agentk:v1"}]}}}}}}"#,
    r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"c","kind":{"group":"rbac.authorization.k8s.io","version":"v1","kind":"RoleBinding"},"namespace":"team-a","name":"b","operation":"CREATE","userInfo":{"username":"u"},"object":{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"RoleBinding","metadata":{"name":"b","namespace":"team-a"},"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"view"},"subjects":[{"kind":"Group","name":"gitlab:ci_job"}]}}}"#,
];

static VIEW: LazyLock<MemoryView> = LazyLock::new(MemoryView::new);

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    match Config::from_yaml(text, "fuzz.yaml") {
        Ok(config) => {
            // A configuration that loads must judge requests without trouble.
            VIEW.reconfigure(config.policies.single_agent.detector());
            let engine = Engine::new(config, None);
            for review in REVIEWS {
                let request = admission::decode(review.as_bytes()).expect("fixed reviews decode");
                let _ = engine.review(Endpoint::Validate, &request, &*VIEW);
                let _ = engine.review(Endpoint::Mutate, &request, &*VIEW);
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
