//! The evaluation pool: a few threads for the reviews that need real work (regex
//! compilation, large bodies, deep RBAC aggregation), so that they never hold the async
//! workers that read requests, answer cheap reviews and serve the probes.
//!
//! Measured with callgrind (docs/RELIABILITY.md): handing a review to another thread and
//! back costs more than the whole inline judgement of a common review, so reviews start
//! inline under [`crate::budget::Limits::INLINE`] and move here only when that budget says
//! so (or when the body is large). A review waits for a pool thread at most until its
//! deadline; the webhook answers 503 at the deadline whatever the pool is doing, and the
//! review's budget stops its work soon after.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct EvalPool {
    threads: Arc<Semaphore>,
}

/// Why a job did not run to its end.
#[derive(Debug)]
pub enum PoolError {
    /// The deadline came first (waiting for a thread, or while the job ran).
    Deadline,
    /// The job panicked.
    Panicked,
}

impl EvalPool {
    pub fn new(size: usize) -> EvalPool {
        EvalPool {
            threads: Arc::new(Semaphore::new(size.max(1))),
        }
    }

    /// Runs `job` on a pool thread; its answer, unless `deadline` comes first. A job that
    /// outlives its deadline keeps its thread until it stops (its budget has the same
    /// deadline), so that the pool never runs more jobs than it has threads.
    pub async fn run<T, F>(&self, deadline: Instant, job: F) -> Result<T, PoolError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let deadline = tokio::time::Instant::from_std(deadline);
        let slot: OwnedSemaphorePermit =
            match tokio::time::timeout_at(deadline, self.threads.clone().acquire_owned()).await {
                Ok(Ok(slot)) => slot,
                _ => return Err(PoolError::Deadline),
            };
        let handle = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            job()
        });
        match tokio::time::timeout_at(deadline, handle).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => Err(PoolError::Panicked),
            Err(_) => Err(PoolError::Deadline),
        }
    }
}
