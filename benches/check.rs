//! `fluxgate check` throughput: read, parse, fill the cluster view, judge every object with
//! every policy and write the JSON report, on a generated GitOps repository. The target is
//! 50k objects a second on one core (`scripts/bench-load.sh` times the binary on one core).

mod support;

use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fluxgate::check;
use fluxgate::config::Config;
use fluxgate::engine::Engine;
use fluxgate::report::{self, Format};

const OBJECTS: usize = 6_000;

fn check_throughput(c: &mut Criterion) {
    let path: PathBuf =
        std::env::temp_dir().join(format!("fluxgate-bench-check-{}.yaml", std::process::id()));
    std::fs::write(&path, support::manifests::yaml(OBJECTS)).expect("writes manifests");
    let engine = Engine::new(Config::default(), None);
    let mut group = c.benchmark_group("check");
    group.throughput(Throughput::Elements(OBJECTS as u64));
    group.sample_size(10);
    group.bench_function("read, judge and report (JSON)", |b| {
        b.iter(|| {
            let report = check::check(
                &engine,
                std::slice::from_ref(&path),
                &[],
                &mut std::io::empty(),
            );
            assert_eq!(report.summary.objects, OBJECTS);
            let mut sink = Vec::with_capacity(1 << 20);
            report::write(&report, Format::Json, false, &mut sink).expect("writes");
            sink.len()
        })
    });
    group.finish();
    let _ = std::fs::remove_file(&path);
}

criterion_group!(benches, check_throughput);
criterion_main!(benches);
