//! The in-flight request body budget: memory grows with the bodies being read and judged,
//! so bodies are admitted against a global byte budget before they are read, and their
//! bytes are given back when the answer is ready (or when the evaluation pool, which may
//! finish later, lets go of the body).
//!
//! A body takes its declared length (or `--max-body-bytes` when it declares none) all at
//! once, so that no two bodies can each hold half and wait for the rest. Small bodies, the
//! API server's everyday reviews, also have a reserve that large ones cannot take: a flood
//! of large bodies makes large bodies wait, never the small ones.

use std::sync::Arc;
use std::time::Duration;

use prometheus::IntGauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bodies up to this size may use the reserve.
pub const SMALL_BODY_BYTES: usize = 64 * 1024;
/// The part of the budget only small bodies may use: 64 small bodies at once.
pub const SMALL_RESERVE_BYTES: usize = 64 * SMALL_BODY_BYTES;

/// Budgets are counted in KiB, so that a budget of gigabytes fits the semaphore's permits.
const UNIT: usize = 1024;

pub struct BodyBudget {
    /// Every body takes from this.
    all: Arc<Semaphore>,
    /// Large bodies take from this too: it is `all` less the small bodies' reserve.
    large: Arc<Semaphore>,
    total_bytes: usize,
    gauge: IntGauge,
}

/// Bytes of the budget held by one body; given back when dropped.
pub struct BodyPermit {
    _all: OwnedSemaphorePermit,
    _large: Option<OwnedSemaphorePermit>,
    bytes: usize,
    gauge: IntGauge,
}

impl Drop for BodyPermit {
    fn drop(&mut self) {
        self.gauge.sub(self.bytes as i64);
    }
}

/// Why a body was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotAdmitted {
    /// The budget stayed full for as long as the request could wait.
    Busy,
}

impl BodyBudget {
    /// A budget of `total_bytes`, never less than `max_body_bytes` plus the small bodies'
    /// reserve (so that one body of the largest size can always be read).
    pub fn new(total_bytes: usize, max_body_bytes: usize, gauge: IntGauge) -> BodyBudget {
        let total_bytes = total_bytes.max(max_body_bytes + SMALL_RESERVE_BYTES);
        let total = units(total_bytes);
        let reserve = units(SMALL_RESERVE_BYTES);
        BodyBudget {
            all: Arc::new(Semaphore::new(total)),
            large: Arc::new(Semaphore::new(total - reserve)),
            total_bytes,
            gauge,
        }
    }

    /// The budget in bytes.
    pub fn total_bytes(&self) -> usize {
        self.total_bytes
    }

    /// Admits a body of `bytes`, waiting at most `wait` for room.
    pub async fn admit(&self, bytes: usize, wait: Duration) -> Result<BodyPermit, NotAdmitted> {
        let wanted = u32::try_from(units(bytes)).unwrap_or(u32::MAX);
        let admitted = tokio::time::timeout(wait, async {
            let large = if bytes > SMALL_BODY_BYTES {
                Some(self.large.clone().acquire_many_owned(wanted).await.ok()?)
            } else {
                None
            };
            let all = self.all.clone().acquire_many_owned(wanted).await.ok()?;
            Some((all, large))
        })
        .await;
        match admitted {
            Ok(Some((all, large))) => {
                let bytes = wanted as usize * UNIT;
                self.gauge.add(bytes as i64);
                Ok(BodyPermit {
                    _all: all,
                    _large: large,
                    bytes,
                    gauge: self.gauge.clone(),
                })
            }
            _ => Err(NotAdmitted::Busy),
        }
    }
}

fn units(bytes: usize) -> usize {
    bytes.div_ceil(UNIT).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(total: usize, max_body: usize) -> BodyBudget {
        let gauge = IntGauge::new("test_inflight", "test").expect("gauge");
        BodyBudget::new(total, max_body, gauge)
    }

    #[tokio::test]
    async fn large_bodies_wait_for_room_and_are_refused_when_none_comes() {
        let budget = budget(2 << 20, 1 << 20);
        let total = budget.total_bytes();
        let first = budget
            .admit(1 << 20, Duration::from_millis(10))
            .await
            .expect("room for one");
        let second = budget
            .admit(
                total - SMALL_RESERVE_BYTES - (1 << 20),
                Duration::from_millis(10),
            )
            .await
            .expect("room for the rest of the large share");
        assert_eq!(
            budget.admit(100_000, Duration::from_millis(20)).await.err(),
            Some(NotAdmitted::Busy)
        );
        drop(first);
        assert!(
            budget
                .admit(100_000, Duration::from_millis(20))
                .await
                .is_ok()
        );
        drop(second);
    }

    #[tokio::test]
    async fn small_bodies_get_in_while_large_ones_fill_their_share() {
        let budget = budget(0, 1 << 20);
        let _large = budget
            .admit(1 << 20, Duration::from_millis(10))
            .await
            .expect("the one large body the budget holds");
        assert!(
            budget
                .admit(200_000, Duration::from_millis(10))
                .await
                .is_err(),
            "the large share is full"
        );
        let mut small = Vec::new();
        for _ in 0..64 {
            small.push(
                budget
                    .admit(4096, Duration::from_millis(10))
                    .await
                    .expect("the reserve takes small bodies"),
            );
        }
        assert_eq!(
            budget.gauge.get() as usize,
            (1 << 20) + 64 * 4096,
            "the gauge shows the bytes held"
        );
        drop(small);
        assert_eq!(budget.gauge.get() as usize, 1 << 20);
    }
}
