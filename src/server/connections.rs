//! The TLS listener's connections: how many are open (in all and per peer address), how
//! long one may sit without a request, and what a refused one costs (a count, and a log line
//! at most once a second).
//!
//! A connection that holds a slot and does nothing is the cheapest attack on a webhook:
//! with no client certificate required, anyone who reaches the port can open them. HTTP/1.1
//! connections are closed by hyper's header read timeout when no request starts; HTTP/2
//! connections get keep-alive pings (a peer that does not answer is gone) and are closed
//! with a GOAWAY once no stream has been open for the idle timeout.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::metrics::Metrics;

/// Open connections by peer address, so that one client cannot take every slot.
pub struct Peers {
    per_peer: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// A connection's place in [`Peers`]; given back when dropped.
pub struct PeerSlot {
    peers: Arc<Peers>,
    ip: IpAddr,
}

impl Peers {
    pub fn new(per_peer: usize) -> Arc<Peers> {
        Arc::new(Peers {
            per_peer: per_peer.max(1),
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for one more connection from `ip`, unless it has `per_peer` open already.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<PeerSlot> {
        let mut open = lock(&self.open);
        let count = open.entry(ip).or_insert(0);
        if *count >= self.per_peer {
            return None;
        }
        *count += 1;
        Some(PeerSlot {
            peers: Arc::clone(self),
            ip,
        })
    }

    /// Connections open from `ip`.
    #[cfg(test)]
    pub fn open_from(&self, ip: IpAddr) -> usize {
        lock(&self.open).get(&ip).copied().unwrap_or(0)
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut open = lock(&self.peers.open);
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Why a connection was closed on accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `--max-connections` are open.
    Limit,
    /// `--max-connections-per-peer` are open from the same address.
    PeerLimit,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Limit => "limit",
            Refusal::PeerLimit => "peer-limit",
        }
    }
}

/// Counts refusals in a metric and logs them at most once per interval, with how many were
/// refused since the last line: a flood of connections must not become a flood of log lines.
pub struct Refusals {
    metrics: Metrics,
    interval: Duration,
    state: Mutex<RefusalLog>,
}

struct RefusalLog {
    last_logged: Option<Instant>,
    unlogged: u64,
}

impl Refusals {
    pub fn new(metrics: Metrics, interval: Duration) -> Self {
        Refusals {
            metrics,
            interval,
            state: Mutex::new(RefusalLog {
                last_logged: None,
                unlogged: 0,
            }),
        }
    }

    /// Records one refusal; returns the number of refusals the caller should log now (this
    /// one and those held back since the last line), or `None` to stay quiet.
    pub fn refuse(&self, why: Refusal, now: Instant) -> Option<u64> {
        self.metrics
            .connections_refused
            .with_label_values(&[why.as_str()])
            .inc();
        let mut state = lock(&self.state);
        state.unlogged += 1;
        let due = state
            .last_logged
            .is_none_or(|last| now.duration_since(last) >= self.interval);
        if !due {
            return None;
        }
        state.last_logged = Some(now);
        Some(std::mem::take(&mut state.unlogged))
    }
}

/// Whether a connection has a request in progress, and since when it has had none.
pub struct Activity {
    open: AtomicUsize,
    /// Milliseconds since `base` at which the last request ended (or the connection opened).
    idle_since_ms: AtomicU64,
    base: Instant,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            open: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
            base: Instant::now(),
        })
    }

    /// Marks a request as started; it ends when the guard is dropped.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.open.fetch_add(1, Ordering::AcqRel);
        InFlight(Arc::clone(self))
    }

    /// How long the connection has had no request open, if it has none now.
    pub fn idle_for(&self, now: Instant) -> Option<Duration> {
        if self.open.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = self.base + Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire));
        Some(now.saturating_duration_since(since))
    }
}

/// A request in progress on a connection.
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let ms = u64::try_from(self.0.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.idle_since_ms.store(ms, Ordering::Release);
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A service that marks each request in progress on its connection's [`Activity`] until its
/// response is ready.
#[derive(Clone)]
pub struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Tracked<S> {
    pub fn new(inner: S, activity: Arc<Activity>) -> Self {
        Tracked { inner, activity }
    }
}

impl<S, R> hyper::service::Service<R> for Tracked<S>
where
    S: hyper::service::Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = TrackedFuture<S::Future>;

    fn call(&self, request: R) -> Self::Future {
        let in_flight = self.activity.start();
        TrackedFuture {
            inner: self.inner.call(request),
            _in_flight: in_flight,
        }
    }
}

pin_project_lite::pin_project! {
    /// A request's response future, marking the request in progress until it is dropped.
    pub struct TrackedFuture<F> {
        #[pin]
        inner: F,
        _in_flight: InFlight,
    }
}

impl<F: Future> Future for TrackedFuture<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.project().inner.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_gets_its_share_and_no_more() {
        let peers = Peers::new(2);
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        let first = peers.admit(a).expect("first");
        let _second = peers.admit(a).expect("second");
        assert!(peers.admit(a).is_none(), "a third from the same address");
        assert!(peers.admit(b).is_some(), "another address still gets in");
        drop(first);
        assert!(
            peers.admit(a).is_some(),
            "a closed connection frees its slot"
        );
        assert_eq!(peers.open_from(b), 0);
    }

    #[test]
    fn refusals_are_all_counted_and_logged_once_an_interval() {
        let metrics = Metrics::new();
        let refusals = Refusals::new(metrics.clone(), Duration::from_secs(1));
        let start = Instant::now();
        assert_eq!(refusals.refuse(Refusal::Limit, start), Some(1));
        for i in 1..100 {
            assert_eq!(
                refusals.refuse(Refusal::PeerLimit, start + Duration::from_millis(i)),
                None
            );
        }
        // The next line, a second later, says how many were held back.
        assert_eq!(
            refusals.refuse(Refusal::Limit, start + Duration::from_secs(1)),
            Some(100)
        );
        let text = String::from_utf8(metrics.encode()).expect("utf-8");
        assert!(
            text.contains(r#"fluxgate_connections_refused_total{reason="peer-limit"} 99"#),
            "{text}"
        );
        assert!(
            text.contains(r#"fluxgate_connections_refused_total{reason="limit"} 2"#),
            "{text}"
        );
    }

    #[test]
    fn a_connection_is_idle_only_without_a_request_in_progress() {
        let activity = Activity::new();
        let now = Instant::now() + Duration::from_secs(5);
        assert!(
            activity
                .idle_for(now)
                .is_some_and(|d| d >= Duration::from_secs(4))
        );
        let request = activity.start();
        assert_eq!(activity.idle_for(now), None);
        drop(request);
        assert!(
            activity
                .idle_for(Instant::now())
                .is_some_and(|d| d < Duration::from_secs(1)),
            "idle again, counted from the end of the request"
        );
    }
}
