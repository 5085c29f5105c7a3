//! The webhook's work between a received body and the bytes it answers with (decode, prefetch,
//! evaluate, encode, metrics, the decision log line into a sink: `support::whole_path`, which
//! the criterion benches time), in a loop, for a profiler:
//!
//!   valgrind --tool=callgrind target/release/examples/request_path BODY.json 10000
//!
//! callgrind counts instructions, which stay the same however busy the machine is, so the
//! instructions per request printed by callgrind (total / N) compare optimisations reliably
//! where wall-clock figures on a shared machine do not. docs/BENCHMARKS.md has the figures.

#[path = "../benches/support/mod.rs"]
mod support;

use fluxgate::cluster::MemoryView;
use fluxgate::config::Config;
use fluxgate::engine::Engine;
use fluxgate::metrics::Metrics;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .unwrap_or_else(|| support::PASSING_REVIEW.to_string());
    let rounds: usize = args
        .next()
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(10_000);
    let body = std::fs::read(&path)?;
    // A body that is not a review is said so here, not found out in the loop.
    fluxgate::admission::decode(&body)?;
    let _log = support::log_decisions_into_sink();
    let engine = Engine::new(Config::default(), None);
    let view = MemoryView::new();
    let metrics = Metrics::new();
    let mut answered = 0usize;
    for _ in 0..rounds {
        answered += support::whole_path(&engine, &view, &metrics, std::hint::black_box(&body));
    }
    println!("{rounds} requests, {answered} bytes answered");
    Ok(())
}
