//! The webhook's work between a received body and the bytes it answers with (decode, evaluate,
//! encode, metrics, the decision log line into a sink), in a loop, for a profiler:
//!
//!   valgrind --tool=callgrind target/release/examples/request_path BODY.json 10000
//!
//! callgrind counts instructions, which stay the same however busy the machine is, so the
//! instructions per request printed by callgrind (total / N) compare optimisations reliably
//! where wall-clock figures on a shared machine do not. docs/BENCHMARKS.md has the figures.

use std::hint::black_box;

use fluxgate::admission;
use fluxgate::cluster::MemoryView;
use fluxgate::config::Config;
use fluxgate::engine::{Endpoint, Engine};
use fluxgate::metrics::Metrics;
use fluxgate::server::log_decision;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .unwrap_or_else(|| "tests/fixtures/bench/ocirepository-create-4k.json".into());
    let rounds: usize = args
        .next()
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(10_000);
    let body = std::fs::read(&path)?;
    let _log = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .event_format(fluxgate::logging::JsonLines::new(
                tracing_subscriber::fmt::time::SystemTime,
            ))
            .with_writer(std::io::sink)
            .with_max_level(tracing::Level::INFO)
            .finish(),
    );
    let engine = Engine::new(Config::default(), None);
    let view = MemoryView::new();
    let metrics = Metrics::new();
    let mut answered = 0usize;
    for _ in 0..rounds {
        let request = admission::decode(black_box(&body))?;
        let _ = black_box(engine.prefetch(&request));
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
        log_decision(Endpoint::Validate, &request, &verdict, &exemptions);
        answered += black_box(out.len());
    }
    println!("{rounds} requests, {answered} bytes answered");
    Ok(())
}
