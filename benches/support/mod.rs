//! What the criterion benches share: the bodies they send and the synthetic cluster.

#![allow(dead_code)]

use std::path::Path;

use fluxgate::admission;
use fluxgate::cluster::MemoryView;
use fluxgate::engine::{Endpoint, Engine};
use fluxgate::metrics::Metrics;
use fluxgate::server::log_decision;
use serde_json::{Value, json};

pub mod cluster;
pub mod manifests;

/// The review every target is measured with: a 4 KiB OCIRepository CREATE (keyless cosign
/// with GitLab identities) that passes every policy. The load test sends the same file.
pub const PASSING_REVIEW: &str = "tests/fixtures/bench/ocirepository-create-4k.json";

/// Decode, prefetch, evaluate, encode, record metrics and log the decision: what the webhook
/// does between a whole body and the bytes it answers with (the view is in memory, so the
/// prefetch finds nothing to fetch), within the inline budget the webhook judges with first.
/// Returns the answer's length.
pub fn whole_path(engine: &Engine, view: &MemoryView, metrics: &Metrics, body: &[u8]) -> usize {
    let request = admission::decode(body).expect("decodes");
    std::hint::black_box(engine.prefetch(&request));
    let budget = fluxgate::budget::Budget::default().inline(fluxgate::budget::Limits::INLINE);
    let (mut verdict, mut exemptions) =
        engine.review_within(Endpoint::Validate, &request, view, &budget);
    if verdict.unjudged.is_some() {
        // The webhook's evaluation pool: the first review of new identity patterns.
        (verdict, exemptions) = engine.review(Endpoint::Validate, &request, view);
    }
    // The webhook settles claims (a Lease write) only when a policy made one: the test it
    // does on every review.
    std::hint::black_box(verdict.claims.is_empty());
    let out = fluxgate::engine::verdict::encode(&request.uid, &verdict);
    metrics.record_review(
        Endpoint::Validate,
        &request.kind.kind,
        request.operation.as_str(),
        &verdict,
        &exemptions,
        0.0001,
    );
    log_decision(Endpoint::Validate, &request, &verdict, &exemptions);
    out.len()
}

/// The decision log at info level, formatted as in production, into a sink: the formatting
/// is measured, not the disk. Logging goes there while the guard lives.
pub fn log_decisions_into_sink() -> tracing::subscriber::DefaultGuard {
    tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .event_format(fluxgate::logging::JsonLines::new(
                fluxgate::logging::UtcTime,
            ))
            .with_writer(std::io::sink)
            .with_max_level(tracing::Level::INFO)
            .finish(),
    )
}

pub fn read(relative: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// An AdmissionReview body as the API server sends it for `object` (and `old` on UPDATE).
pub fn review(operation: &str, object: &Value, old: Option<&Value>) -> Vec<u8> {
    let api_version = object["apiVersion"].as_str().unwrap_or("v1");
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let kind = object["kind"].as_str().unwrap_or("");
    let body = json!({
        "kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": "0b4b5d1e-6a0e-4c3f-9d47-b2c7a1f0e8d3",
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": format!("{}s", kind.to_lowercase())},
            "name": object["metadata"]["name"],
            "namespace": object["metadata"]["namespace"],
            "operation": operation,
            "userInfo": {"username": "system:serviceaccount:flux-system:kustomize-controller",
                "groups": ["system:serviceaccounts", "system:serviceaccounts:flux-system", "system:authenticated"]},
            "object": object,
            "oldObject": old,
            "dryRun": false
        }
    });
    serde_json::to_vec(&body).expect("serializes")
}

/// A view holding the synthetic cluster's `rbac` RBAC objects and `workloads` Deployments,
/// applied the way the reflectors apply them.
pub fn view(rbac: usize, workloads: usize) -> MemoryView {
    let view = MemoryView::new();
    for object in cluster::objects(rbac, workloads) {
        view.apply(&object).expect("applies");
    }
    view
}

/// An UPDATE of 3 MiB, the API server's request limit, of `object`: object and old object
/// each carry 1.5 MiB of annotations, and the spec changed.
pub fn big_update(object: &Value) -> Vec<u8> {
    let mut old = object.clone();
    for i in 0..1500 {
        old["metadata"]["annotations"][format!("bulk.example.com/entry-{i}")] =
            json!("x".repeat(1000));
    }
    let mut new = old.clone();
    new["spec"]["ref"] = json!({"semver": ">=2.5.0 <3.0.0"});
    review("UPDATE", &new, Some(&old))
}

/// The object of the 4 KiB passing review.
pub fn passing_object() -> Value {
    let body: Value = serde_json::from_slice(&read(PASSING_REVIEW)).expect("json");
    body["request"]["object"].clone()
}
