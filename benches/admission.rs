//! The request path piece by piece: decode, evaluate, encode, metrics, the decision log line,
//! and mutation, on the 4 KiB review the load test sends, on bodies a real API server sent,
//! and on a 3 MiB UPDATE. Figures and how to read them: docs/BENCHMARKS.md.

mod support;

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fluxgate::admission;
use fluxgate::cluster::MemoryView;
use fluxgate::config::Config;
use fluxgate::engine::{Endpoint, Engine};
use fluxgate::metrics::Metrics;
use fluxgate::server::log_decision;
use serde_json::json;

/// The mutation bench's configuration: a `verifyDefaults` rule for the registry of the
/// OCIRepository without `verify`, so that `/mutate` has a patch to make.
const MUTATING_CONFIG: &str = r#"
policies:
  signed-oci-sources:
    verifyDefaults:
    - name: acme
      match: "oci://ghcr.io/stefanprodan/**"
      verify:
        provider: cosign
        secretRef: {name: cosign-pub}
"#;

fn request_path(c: &mut Criterion) {
    let _log = support::log_decisions_into_sink();
    let body = support::read(support::PASSING_REVIEW);
    let captured = support::read(
        "tests/fixtures/admission/ocirepo-create-with-verify-secretref__capture-OCIRepository-CREATE.json",
    );
    let engine = Engine::new(Config::default(), None);
    let view = MemoryView::new();
    let metrics = Metrics::new();

    let mut group = c.benchmark_group("request_path");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("decode (4 KiB)", |b| {
        b.iter(|| admission::decode(black_box(&body)).map(|r| r.uid.len()))
    });
    let request = admission::decode(&body).expect("decodes");
    group.bench_function("evaluate (4 KiB)", |b| {
        b.iter(|| {
            engine
                .review(Endpoint::Validate, black_box(&request), &view)
                .0
                .allowed
        })
    });
    let (verdict, exemptions) = engine.review(Endpoint::Validate, &request, &view);
    assert!(
        verdict.allowed && verdict.warnings.is_empty(),
        "{verdict:?}"
    );
    group.bench_function("encode", |b| {
        b.iter(|| fluxgate::engine::verdict::encode(black_box(&request.uid), black_box(&verdict)))
    });
    group.bench_function("record metrics", |b| {
        b.iter(|| {
            metrics.record_review(
                Endpoint::Validate,
                &request.kind.kind,
                request.operation.as_str(),
                black_box(&verdict),
                &exemptions,
                0.0001,
            )
        })
    });
    group.bench_function("log the decision", |b| {
        b.iter(|| {
            log_decision(
                Endpoint::Validate,
                &request,
                black_box(&verdict),
                &exemptions,
            )
        })
    });
    group.bench_function("whole path (4 KiB)", |b| {
        b.iter(|| support::whole_path(&engine, &view, &metrics, black_box(&body)))
    });
    group.throughput(Throughput::Bytes(captured.len() as u64));
    group.bench_function("whole path (API server capture, 2 KiB)", |b| {
        b.iter(|| support::whole_path(&engine, &view, &metrics, black_box(&captured)))
    });
    group.finish();

    // UPDATEs: one that leaves the judged fields alone (a label), one that changes them.
    let object: serde_json::Value = serde_json::from_slice::<serde_json::Value>(&body)
        .expect("json")["request"]["object"]
        .clone();
    let mut labelled = object.clone();
    labelled["metadata"]["labels"]["acme.example.com/touched"] = json!("yes");
    let mut retagged = object.clone();
    retagged["spec"]["ref"] = json!({"semver": ">=2.5.0 <3.0.0"});
    let label_update = support::review("UPDATE", &labelled, Some(&object));
    let spec_update = support::review("UPDATE", &retagged, Some(&object));
    let big_update = support::big_update(&object);
    let mut group = c.benchmark_group("update");
    group.bench_function("label only (judged fields unchanged)", |b| {
        b.iter(|| support::whole_path(&engine, &view, &metrics, black_box(&label_update)))
    });
    group.bench_function("spec changed", |b| {
        b.iter(|| support::whole_path(&engine, &view, &metrics, black_box(&spec_update)))
    });
    group.throughput(Throughput::Bytes(big_update.len() as u64));
    group.sample_size(20);
    group.bench_function("3 MiB, spec changed", |b| {
        b.iter(|| support::whole_path(&engine, &view, &metrics, black_box(&big_update)))
    });
    group.finish();
}

fn mutation(c: &mut Criterion) {
    let config = Config::from_yaml(MUTATING_CONFIG, "bench").expect("config");
    let engine = Engine::new(config, None);
    let view = MemoryView::new();
    let unsigned = support::read(
        "tests/fixtures/admission/deny-ocirepo-create__validate-OCIRepository-CREATE.json",
    );
    let signed = support::read(support::PASSING_REVIEW);
    let request = admission::decode(&unsigned).expect("decodes");
    let (verdict, _) = engine.review(Endpoint::Mutate, &request, &view);
    assert!(!verdict.patch.is_empty(), "the bench must mutate");

    let mut group = c.benchmark_group("mutate");
    group.bench_function("adds verify (decode, patch, encode)", |b| {
        b.iter(|| {
            let request = admission::decode(black_box(&unsigned)).expect("decodes");
            let (verdict, _) = engine.review(Endpoint::Mutate, &request, &view);
            fluxgate::engine::verdict::encode(&request.uid, &verdict).len()
        })
    });
    group.bench_function("nothing to add (decode, evaluate, encode)", |b| {
        b.iter(|| {
            let request = admission::decode(black_box(&signed)).expect("decodes");
            let (verdict, _) = engine.review(Endpoint::Mutate, &request, &view);
            fluxgate::engine::verdict::encode(&request.uid, &verdict).len()
        })
    });
    group.finish();
}

criterion_group!(benches, request_path, mutation);
criterion_main!(benches);
