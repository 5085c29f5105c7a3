//! What handing a review to the evaluation pool costs, for a profiler: N reviews judged on a
//! tokio worker (as the webhook judges the common review, inline) or handed to a blocking
//! thread behind a semaphore and awaited (as it judges a review that needs real work).
//!
//!   valgrind --tool=callgrind target/release/examples/pool_handoff BODY.json N inline
//!   valgrind --tool=callgrind target/release/examples/pool_handoff BODY.json N pool
//!
//! The difference per review between the two is the hand-off's user-space instructions;
//! callgrind does not count the kernel's part (the futex wake-ups and the two context
//! switches), so the real cost is higher still. docs/RELIABILITY.md has the figures.

#[path = "../benches/support/mod.rs"]
mod support;

use std::sync::Arc;

use fluxgate::cluster::MemoryView;
use fluxgate::config::Config;
use fluxgate::engine::Engine;
use fluxgate::metrics::Metrics;

struct World {
    engine: Engine,
    view: MemoryView,
    metrics: Metrics,
    body: Vec<u8>,
}

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
    let pool = match args.next().as_deref() {
        None | Some("inline") => false,
        Some("pool") => true,
        Some(other) => return Err(format!("inline or pool, not {other}").into()),
    };
    let body = std::fs::read(&path)?;
    fluxgate::admission::decode(&body)?;
    let _log = support::log_decisions_into_sink();
    let world = Arc::new(World {
        engine: Engine::new(Config::default(), None),
        view: MemoryView::new(),
        metrics: Metrics::new(),
        body,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let threads = Arc::new(tokio::sync::Semaphore::new(1));
    let answered = runtime.block_on(async move {
        tokio::spawn(async move {
            let mut answered = 0usize;
            for _ in 0..rounds {
                answered += if pool {
                    let slot = threads.clone().acquire_owned().await.expect("open");
                    let world = world.clone();
                    tokio::task::spawn_blocking(move || {
                        let _slot = slot;
                        support::whole_path(&world.engine, &world.view, &world.metrics, &world.body)
                    })
                    .await
                    .expect("no panic")
                } else {
                    support::whole_path(&world.engine, &world.view, &world.metrics, &world.body)
                };
            }
            answered
        })
        .await
        .expect("no panic")
    });
    println!("{rounds} requests, {answered} bytes answered");
    Ok(())
}
