//! Objects a review names that the cluster view does not hold: each is asked of the API server
//! at most once at a time, and a miss is remembered briefly, so that a burst of reviews naming
//! the same absent object (a binding to a role that does not exist, sent again and again) never
//! becomes a burst of requests to the API server the webhook answers.
//!
//! [`Misses::resolve`] runs the fetch on its own task: a review that stops waiting at its
//! deadline does not cancel it, and the reviews that share it still get its answer.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, watch};

use super::ObjectKey;

/// How long a miss is remembered: the API server is asked again for the same key after it.
pub const MISS_TTL: Duration = Duration::from_secs(2);

/// The most misses remembered at once; the oldest is forgotten first.
pub const MISS_CAPACITY: usize = 4096;

/// The most fetches in flight at once, whatever the keys: reviews naming many different
/// absent objects wait for a turn (within their deadline) instead of opening a request each.
pub const MAX_CONCURRENT_FETCHES: usize = 8;

/// What the API server answered for one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    /// It exists; the view holds it now.
    Found,
    /// It does not exist.
    Missing,
    /// No answer (an error, a timeout, or the answer was overtaken by a deletion).
    Failed,
}

/// Single-flight fetches and a bounded, short-lived memory of misses.
pub struct Misses {
    ttl: Duration,
    capacity: usize,
    inflight: Mutex<HashMap<ObjectKey, watch::Receiver<bool>>>,
    recent: Mutex<Recent>,
    permits: Arc<Semaphore>,
}

/// Keys the API server could not give, each until its expiry; `order` is by expiry (the TTL
/// is the same for all), so the front is the first to forget.
#[derive(Default)]
struct Recent {
    until: HashMap<ObjectKey, Instant>,
    order: VecDeque<(ObjectKey, Instant)>,
}

impl Recent {
    fn holds(&self, key: &ObjectKey, now: Instant) -> bool {
        self.until.get(key).is_some_and(|until| now < *until)
    }

    fn remember(&mut self, key: ObjectKey, until: Instant, capacity: usize, now: Instant) {
        while let Some((front, expiry)) = self.order.front() {
            if *expiry > now && self.order.len() < capacity {
                break;
            }
            // An entry renewed since is the map's newer expiry, not this one's.
            if self.until.get(front) == Some(expiry) {
                self.until.remove(front);
            }
            self.order.pop_front();
        }
        if capacity == 0 {
            return;
        }
        self.until.insert(key.clone(), until);
        self.order.push_back((key, until));
    }

    fn len(&self) -> usize {
        self.until.len()
    }
}

impl Default for Misses {
    fn default() -> Self {
        Misses::new(MISS_TTL, MISS_CAPACITY, MAX_CONCURRENT_FETCHES)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain maps of keys and times: still whole after a panic elsewhere.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Misses {
    pub fn new(ttl: Duration, capacity: usize, concurrent: usize) -> Misses {
        Misses {
            ttl,
            capacity,
            inflight: Mutex::new(HashMap::new()),
            recent: Mutex::new(Recent::default()),
            permits: Arc::new(Semaphore::new(concurrent.max(1))),
        }
    }

    /// Whether the API server could not give `key` within the TTL.
    pub fn recently_missed(&self, key: &ObjectKey) -> bool {
        lock(&self.recent).holds(key, Instant::now())
    }

    /// How many misses are remembered (expired ones included until they are pushed out).
    pub fn remembered(&self) -> usize {
        lock(&self.recent).len()
    }

    /// Makes sure the API server has been asked for `key`: returns at once when it could not
    /// give it within the TTL, waits for the fetch already in flight for it, or starts `fetch`
    /// on its own task and waits for that. The caller bounds the wait (its deadline); the
    /// fetch goes on without it.
    pub async fn resolve<F, Fut>(self: &Arc<Self>, key: &ObjectKey, fetch: F)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Fetched> + Send + 'static,
    {
        if self.recently_missed(key) {
            return;
        }
        let mut done = {
            let mut inflight = lock(&self.inflight);
            match inflight.get(key) {
                Some(running) => running.clone(),
                None => {
                    let (tell, done) = watch::channel(false);
                    inflight.insert(key.clone(), done.clone());
                    let misses = Arc::clone(self);
                    let key = key.clone();
                    let fetched = fetch();
                    tokio::spawn(async move {
                        let outcome = match Arc::clone(&misses.permits).acquire_owned().await {
                            Ok(_permit) => fetched.await,
                            Err(_) => Fetched::Failed,
                        };
                        misses.finish(key, outcome);
                        let _ = tell.send(true);
                    });
                    done
                }
            }
        };
        // An error means the fetch's task ended without a word (it panicked): nothing to wait for.
        let _ = done.wait_for(|finished| *finished).await;
    }

    /// Records a fetch's outcome before it leaves the in-flight map, so that a review arriving
    /// in between finds the key either held by the view, remembered as missed, or in flight.
    fn finish(&self, key: ObjectKey, outcome: Fetched) {
        if outcome != Fetched::Found {
            let now = Instant::now();
            lock(&self.recent).remember(key.clone(), now + self.ttl, self.capacity, now);
        }
        lock(&self.inflight).remove(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn role(name: &str) -> ObjectKey {
        ObjectKey {
            group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            namespace: None,
            name: name.into(),
        }
    }

    /// A fetch that counts its calls and answers `outcome` after `delay`.
    fn counted(
        calls: &Arc<AtomicUsize>,
        delay: Duration,
        outcome: Fetched,
    ) -> impl FnOnce() -> std::pin::Pin<Box<dyn Future<Output = Fetched> + Send>> {
        let calls = Arc::clone(calls);
        move || {
            calls.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                outcome
            })
        }
    }

    #[tokio::test]
    async fn concurrent_misses_of_one_key_share_one_fetch() {
        let misses = Arc::new(Misses::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let key = role("deployer");
        let waits = (0..50).map(|_| {
            misses.resolve(
                &key,
                counted(&calls, Duration::from_millis(50), Fetched::Found),
            )
        });
        futures_util::future::join_all(waits).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_miss_is_remembered_for_the_ttl_and_then_asked_again() {
        let misses = Arc::new(Misses::new(Duration::from_millis(200), 16, 4));
        let calls = Arc::new(AtomicUsize::new(0));
        let key = role("absent");
        for _ in 0..20 {
            misses
                .resolve(&key, counted(&calls, Duration::ZERO, Fetched::Missing))
                .await;
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1, "one fetch within the TTL");
        tokio::time::sleep(Duration::from_millis(250)).await;
        misses
            .resolve(&key, counted(&calls, Duration::ZERO, Fetched::Missing))
            .await;
        assert_eq!(calls.load(Ordering::SeqCst), 2, "asked again after the TTL");
    }

    #[tokio::test]
    async fn a_failed_fetch_is_not_repeated_by_every_review_either() {
        let misses = Arc::new(Misses::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let key = role("unreachable");
        for _ in 0..10 {
            misses
                .resolve(&key, counted(&calls, Duration::ZERO, Fetched::Failed))
                .await;
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_found_object_is_not_remembered_as_missed() {
        let misses = Arc::new(Misses::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let key = role("present");
        misses
            .resolve(&key, counted(&calls, Duration::ZERO, Fetched::Found))
            .await;
        assert!(!misses.recently_missed(&key));
        assert_eq!(misses.remembered(), 0);
    }

    #[tokio::test]
    async fn the_memory_of_misses_is_bounded_and_forgets_the_oldest() {
        let misses = Arc::new(Misses::new(Duration::from_secs(60), 8, 4));
        let calls = Arc::new(AtomicUsize::new(0));
        for i in 0..100 {
            misses
                .resolve(
                    &role(&format!("r{i}")),
                    counted(&calls, Duration::ZERO, Fetched::Missing),
                )
                .await;
        }
        assert_eq!(calls.load(Ordering::SeqCst), 100);
        assert_eq!(misses.remembered(), 8);
        assert!(misses.recently_missed(&role("r99")));
        assert!(!misses.recently_missed(&role("r0")));
    }

    #[tokio::test]
    async fn a_review_that_stops_waiting_does_not_cancel_the_fetch_others_share() {
        let misses = Arc::new(Misses::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let key = role("slow");
        let first = tokio::time::timeout(
            Duration::from_millis(20),
            misses.resolve(
                &key,
                counted(&calls, Duration::from_millis(200), Fetched::Missing),
            ),
        )
        .await;
        assert!(first.is_err(), "the first review gave up at its deadline");
        // The second review joins the fetch still running rather than starting one.
        misses
            .resolve(&key, counted(&calls, Duration::ZERO, Fetched::Missing))
            .await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(misses.recently_missed(&key));
    }

    #[tokio::test]
    async fn fetches_of_different_keys_take_turns_beyond_the_limit() {
        let misses = Arc::new(Misses::new(MISS_TTL, 64, 2));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let waits = (0..10).map(|i| {
            let (running, most) = (Arc::clone(&running), Arc::clone(&most));
            let key = role(&format!("k{i}"));
            let misses = Arc::clone(&misses);
            async move {
                misses
                    .resolve(&key, move || async move {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        running.fetch_sub(1, Ordering::SeqCst);
                        Fetched::Missing
                    })
                    .await
            }
        });
        futures_util::future::join_all(waits).await;
        assert!(most.load(Ordering::SeqCst) <= 2, "{most:?}");
    }
}
