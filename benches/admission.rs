//! The request path piece by piece: decode, evaluate, encode, on the bodies a real API
//! server sent. Figures and how to read them: docs/BENCHMARKS.md.

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fluxgate::admission;
use fluxgate::cluster::MemoryView;
use fluxgate::config::Config;
use fluxgate::engine::{Endpoint, Engine};
use fluxgate::metrics::Metrics;

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/admission")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The review every target is measured with: an OCIRepository CREATE that passes every policy.
const PASSING_REVIEW: &str =
    "ocirepo-create-with-verify-secretref__capture-OCIRepository-CREATE.json";

fn request_path(c: &mut Criterion) {
    let body = fixture(PASSING_REVIEW);
    let engine = Engine::new(Config::default(), None);
    let view = MemoryView::new();
    let metrics = Metrics::new();

    let mut group = c.benchmark_group("request_path");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("decode", |b| {
        b.iter(|| admission::decode(black_box(&body)).map(|r| r.uid.len()))
    });
    group.bench_function("decode_evaluate_encode_record", |b| {
        b.iter(|| {
            let request = admission::decode(black_box(&body)).expect("decodes");
            let (verdict, exemptions) = engine.review(Endpoint::Validate, &request, &view);
            let out = admission::encode(&request.uid, &verdict);
            metrics.record_review(
                Endpoint::Validate,
                &request.kind.kind,
                request.operation.as_str(),
                &verdict,
                &exemptions,
                0.0001,
            );
            out.len()
        })
    });
    group.bench_function("mutate", |b| {
        b.iter(|| {
            let request = admission::decode(black_box(&body)).expect("decodes");
            engine
                .review(Endpoint::Mutate, &request, &view)
                .0
                .patch
                .len()
        })
    });
    group.finish();
}

criterion_group!(benches, request_path);
criterion_main!(benches);
