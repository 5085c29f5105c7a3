//! The HTTP layer: `/validate` and `/mutate` on the TLS listener; `/metrics`, `/healthz` and
//! `/readyz` on the metrics listener. Bad input always gets a JSON 4xx, never a panic.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::BodyExt;

use super::AppState;
use super::inflight::BodyPermit;
use super::pool::PoolError;
use crate::admission;
use crate::budget::{Budget, Exceeded, Limits};
use crate::engine::Endpoint;
use crate::engine::verdict::{self, Verdict};

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/validate", post(validate))
        .route("/mutate", post(mutate))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

pub fn metrics_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// A JSON error body: `{"error": "...", "code": 400}`.
fn error(state: Option<&AppState>, status: StatusCode, reason: &str, message: String) -> Response {
    if let Some(state) = state {
        state
            .metrics
            .rejected_requests
            .with_label_values(&[reason])
            .inc();
    }
    tracing::debug!(status = status.as_u16(), reason, %message, "request refused");
    let body = serde_json::json!({ "error": message, "code": status.as_u16() });
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.to_string(),
    )
        .into_response()
}

async fn not_found(State(state): State<Arc<AppState>>, request: Request) -> Response {
    error(
        Some(&state),
        StatusCode::NOT_FOUND,
        "not-found",
        format!(
            "no such path {}; fluxgate answers POST /validate and POST /mutate",
            request.uri().path()
        ),
    )
}

async fn method_not_allowed(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let mut response = error(
        Some(&state),
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        format!(
            "{} is not allowed on {}",
            request.method(),
            request.uri().path()
        ),
    );
    let allow = if request.uri().path().starts_with("/validate")
        || request.uri().path().starts_with("/mutate")
    {
        "POST"
    } else {
        "GET"
    };
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

async fn validate(State(state): State<Arc<AppState>>, request: Request) -> Response {
    review(state, Endpoint::Validate, request).await
}

async fn mutate(State(state): State<Arc<AppState>>, request: Request) -> Response {
    review(state, Endpoint::Mutate, request).await
}

fn is_json(request: &Request) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// Reads a body admitted for `capacity` bytes. Over `--max-body-bytes` (a body that declared
/// no length, or lied about it) it is a 413, after draining a bounded amount so that an
/// HTTP/1.1 client still reads the answer.
async fn read_body(
    state: &AppState,
    body: Body,
    capacity: usize,
    version: Version,
) -> Result<bytes::Bytes, Response> {
    let mut body = std::pin::pin!(body);
    let read = async {
        let mut out = bytes::BytesMut::with_capacity(capacity.min(state.max_body_bytes));
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                if out.len() + data.len() > state.max_body_bytes {
                    return Ok(None);
                }
                out.extend_from_slice(&data);
            }
        }
        Ok::<_, axum::Error>(Some(out.freeze()))
    };
    match tokio::time::timeout(state.body_read_timeout, read).await {
        Ok(Ok(Some(bytes))) => Ok(bytes),
        Ok(Ok(None)) => {
            let response = too_large(state, version);
            drain(state, body, version).await;
            Err(response)
        }
        Ok(Err(e)) => Err(error(
            Some(state),
            StatusCode::BAD_REQUEST,
            "body-read",
            format!("cannot read the request body: {e}"),
        )),
        Err(_) => Err(error(
            Some(state),
            StatusCode::REQUEST_TIMEOUT,
            "body-timeout",
            format!(
                "the request body did not arrive within {:?}",
                state.body_read_timeout
            ),
        )),
    }
}

/// Reads and drops what is left of a refused body, up to [`DRAIN_BYTES`] and [`DRAIN_TIME`]
/// (or the body read timeout, if shorter). An HTTP/1.1 server that answers before the client has sent its body and then
/// closes the connection makes the client's kernel see a reset before the client reads
/// the answer: the 413 is lost. HTTP/2 refuses the stream alone, so nothing is drained.
async fn drain<B: axum::body::HttpBody>(state: &AppState, body: B, version: Version) {
    if version >= Version::HTTP_2 {
        return;
    }
    let mut body = std::pin::pin!(body);
    let mut drained = 0usize;
    let _ = tokio::time::timeout(state.body_read_timeout.min(DRAIN_TIME), async {
        while drained < DRAIN_BYTES {
            match body.frame().await {
                Some(Ok(frame)) => {
                    drained += frame.data_ref().map_or(0, bytes::Buf::remaining);
                }
                _ => break,
            }
        }
    })
    .await;
}

/// The most of a refused body that is read to deliver its 413: the API server never sends
/// more than its own 3 MiB limit (twice, for an UPDATE), so an over-large review from it is
/// drained whole, and anything larger is not worth reading.
const DRAIN_BYTES: usize = 16 * 1024 * 1024;
/// A client sending its refused body slowly is not waited for longer than this.
const DRAIN_TIME: Duration = Duration::from_secs(2);

fn too_large(state: &AppState, version: Version) -> Response {
    let mut response = error(
        Some(state),
        StatusCode::PAYLOAD_TOO_LARGE,
        "too-large",
        format!(
            "the request body is larger than {} bytes (--max-body-bytes)",
            state.max_body_bytes
        ),
    );
    if version < Version::HTTP_2 {
        // What was not drained is not read: the connection cannot carry another request.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

async fn review(state: Arc<AppState>, endpoint: Endpoint, request: Request) -> Response {
    let clock = Clock::start(&state, request.uri().query());
    let deadline = clock.deadline();
    let version = request.version();
    if !is_json(&request) {
        return error(
            Some(&state),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content-type",
            "Content-Type must be application/json (an AdmissionReview)".into(),
        );
    }
    let declared_length = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared_length.is_some_and(|len| len > state.max_body_bytes as u64) {
        let response = too_large(&state, version);
        if declared_length.is_some_and(|len| len <= DRAIN_BYTES as u64) {
            drain(&state, request.into_body(), version).await;
        }
        return response;
    }
    // A body that declares no length may be as large as any.
    let capacity = declared_length.map_or(state.max_body_bytes, |len| len as usize);
    let wait = state
        .body_admit_wait
        .min(deadline.saturating_duration_since(Instant::now()));
    let Ok(permit) = state.bodies.admit(capacity, wait).await else {
        let mut response = error(
            Some(&state),
            StatusCode::TOO_MANY_REQUESTS,
            "inflight-budget",
            format!(
                "fluxgate is reading and judging as many request bodies as its memory budget allows ({} bytes, --max-inflight-body-bytes); retry shortly",
                state.bodies.total_bytes()
            ),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        drain(&state, request.into_body(), version).await;
        return response;
    };
    let body = match read_body(&state, request.into_body(), capacity, version).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    if body.len() > state.inline_body_bytes {
        state
            .metrics
            .pool_reviews
            .with_label_values(&["large-body"])
            .inc();
        return on_pool(state, endpoint, body, permit, clock, false).await;
    }
    let request = match admission::decode(&body) {
        Ok(request) => request,
        Err(e) => return not_a_review(&state, &e),
    };
    refresh_view(&state, &request, deadline).await;
    let budget = Budget::default().inline(Limits::INLINE);
    let started = Instant::now();
    if let Some((mut verdict, exemptions)) = judge(&state, endpoint, &request, &budget) {
        let late = Late::new();
        if tokio::time::timeout_at(deadline.into(), settle(&state, &mut verdict))
            .await
            .is_err()
        {
            return past_deadline(&state, clock, &late);
        }
        return respond(
            &state,
            endpoint,
            &request,
            &verdict,
            &exemptions,
            (clock, started),
            &late,
        );
    }
    drop(request);
    state
        .metrics
        .pool_reviews
        .with_label_values(&["offloaded"])
        .inc();
    on_pool(state, endpoint, body, permit, clock, true).await
}

fn not_a_review(state: &AppState, e: &admission::DecodeError) -> Response {
    error(
        Some(state),
        StatusCode::BAD_REQUEST,
        "not-a-review",
        e.to_string(),
    )
}

/// Lets the cluster view fetch what the matching policies will look up, until the deadline.
async fn refresh_view(state: &AppState, request: &admission::Request<'_>, deadline: Instant) {
    let wanted = state.engine.prefetch(request);
    if !wanted.is_empty()
        && tokio::time::timeout_at(deadline.into(), state.view.refresh(&wanted))
            .await
            .is_err()
    {
        tracing::warn!(uid = %request.uid, "cluster view refresh hit the evaluation deadline; judging with what the view has");
    }
}

/// Judges a review on the evaluation pool, under the full budget and the review's deadline.
/// The body and its share of the in-flight budget go with it: the memory is in use until
/// the job ends, even when the answer (a 503 at the deadline) has gone before.
async fn on_pool(
    state: Arc<AppState>,
    endpoint: Endpoint,
    body: bytes::Bytes,
    permit: BodyPermit,
    clock: Clock,
    refreshed: bool,
) -> Response {
    let deadline = clock.deadline();
    let runtime = tokio::runtime::Handle::current();
    let job_state = Arc::clone(&state);
    // The job may finish after the handler has answered at the deadline: one 503 counted.
    let late = Arc::new(Late::new());
    let job_late = Arc::clone(&late);
    let job = move || {
        let _permit = permit;
        let state = job_state;
        let request = match admission::decode(&body) {
            Ok(request) => request,
            Err(e) => return not_a_review(&state, &e),
        };
        if !refreshed {
            runtime.block_on(refresh_view(&state, &request, deadline));
        }
        let budget = Budget::default().with_deadline(clock.arrived, clock.timeout);
        let started = Instant::now();
        match judge(&state, endpoint, &request, &budget) {
            Some((mut verdict, exemptions)) => {
                if !verdict.claims.is_empty()
                    && runtime
                        .block_on(tokio::time::timeout_at(
                            deadline.into(),
                            settle(&state, &mut verdict),
                        ))
                        .is_err()
                {
                    return past_deadline(&state, clock, &job_late);
                }
                respond(
                    &state,
                    endpoint,
                    &request,
                    &verdict,
                    &exemptions,
                    (clock, started),
                    &job_late,
                )
            }
            None => past_deadline(&state, clock, &job_late),
        }
    };
    match state.pool.run(deadline, job).await {
        Ok(response) => response,
        Err(PoolError::Deadline) => past_deadline(&state, clock, &late),
        Err(PoolError::Panicked) => error(
            Some(&state),
            StatusCode::INTERNAL_SERVER_ERROR,
            "panic",
            "evaluation failed unexpectedly; the error is in fluxgate's log".into(),
        ),
    }
}

/// When a review must be answered. The API server tells each webhook call how long it will
/// wait (`?timeout=5s`, its `timeoutSeconds` or what is left of the request's own deadline,
/// rounded up to a second); the answer is due a second before that (half of it for a
/// one-second timeout), and never later than `--eval-timeout-ms`. Counted from the request's
/// arrival: the API server's timeout covers the body's transfer too.
#[derive(Debug, Clone, Copy)]
struct Clock {
    arrived: Instant,
    timeout: Duration,
    /// What set the timeout, for the 503's message.
    source: &'static str,
}

impl Clock {
    fn start(state: &AppState, query: Option<&str>) -> Clock {
        let arrived = Instant::now();
        let asked = query
            .and_then(|q| q.split('&').find_map(|pair| pair.strip_prefix("timeout=")))
            .and_then(go_duration);
        match asked {
            Some(waits) => {
                let answer_within = waits.saturating_sub(Duration::from_secs(1).min(waits / 2));
                if answer_within < state.eval_timeout {
                    return Clock {
                        arrived,
                        timeout: answer_within,
                        source: "the API server's timeout less a second",
                    };
                }
                Clock {
                    arrived,
                    timeout: state.eval_timeout,
                    source: "--eval-timeout-ms",
                }
            }
            None => Clock {
                arrived,
                timeout: state.eval_timeout,
                source: "--eval-timeout-ms",
            },
        }
    }

    fn deadline(&self) -> Instant {
        self.arrived + self.timeout
    }
}

/// A duration as Go's `time.Duration.String` writes it (`5s`, `1m30s`, `1.5s`, `300ms`).
fn go_duration(text: &str) -> Option<Duration> {
    let mut rest = text;
    let mut total = 0f64;
    if rest.is_empty() || rest.len() > 32 {
        return None;
    }
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|&end| end > 0)?;
        let value: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let (unit, seconds) = [
            ("ns", 1e-9),
            ("us", 1e-6),
            ("µs", 1e-6),
            ("ms", 1e-3),
            ("s", 1.0),
            ("m", 60.0),
            ("h", 3600.0),
        ]
        .into_iter()
        .find(|(unit, _)| rest.starts_with(unit) && !(*unit == "m" && rest.starts_with("ms")))?;
        total += value * seconds;
        rest = &rest[unit.len()..];
    }
    Duration::try_from_secs_f64(total).ok()
}

/// Whether a review's 503 at the deadline has been counted.
struct Late(std::sync::atomic::AtomicBool);

impl Late {
    fn new() -> Self {
        Late(std::sync::atomic::AtomicBool::new(false))
    }

    /// True the first time only.
    fn first(&self) -> bool {
        !self.0.swap(true, std::sync::atomic::Ordering::AcqRel)
    }
}

fn past_deadline(state: &AppState, clock: Clock, late: &Late) -> Response {
    let first = late.first();
    if first {
        state.metrics.budget_stopped(Exceeded::Deadline {
            timeout: clock.timeout,
        });
    }
    error(
        first.then_some(state),
        StatusCode::SERVICE_UNAVAILABLE,
        "deadline",
        format!(
            "no answer within the {:?} deadline ({}; {:?} since the request arrived): the webhook's failurePolicy decides",
            clock.timeout,
            clock.source,
            clock.arrived.elapsed()
        ),
    )
}

/// Judges a decoded review within `budget`; `None` when an inline budget asks for the pool.
fn judge(
    state: &AppState,
    endpoint: Endpoint,
    request: &admission::Request<'_>,
    budget: &Budget,
) -> Option<(Verdict, Vec<crate::engine::ExemptionUse>)> {
    let (verdict, exemptions) =
        state
            .engine
            .review_within(endpoint, request, state.view.as_ref(), budget);
    if let Some(Exceeded::Offload { .. }) = verdict.unjudged {
        return None;
    }
    Some((verdict, exemptions))
}

/// Reserves what an allowed verdict claims (a new GitLab agent installation) before it is
/// answered. Only such a review waits for the API server; the common one claims nothing.
async fn settle(state: &AppState, verdict: &mut Verdict) {
    if verdict.claims.is_empty() {
        return;
    }
    let results =
        crate::engine::settle_claims(verdict, state.reservations.as_ref(), state.view.as_ref())
            .await;
    for result in results {
        state
            .metrics
            .agent_reservations
            .with_label_values(&[result])
            .inc();
    }
}

/// Answers a judged review: the AdmissionReview, its metrics and its decision line.
/// `(clock, started)`: when the request arrived and must be answered, and when its judging
/// began.
fn respond(
    state: &AppState,
    endpoint: Endpoint,
    request: &admission::Request<'_>,
    verdict: &Verdict,
    exemptions: &[crate::engine::ExemptionUse],
    (clock, started): (Clock, Instant),
    late: &Late,
) -> Response {
    if clock.arrived.elapsed() > clock.timeout
        || matches!(verdict.unjudged, Some(Exceeded::Deadline { .. }))
    {
        // An answer this late may already have been given up on by the API server; let
        // its failurePolicy decide rather than pretend.
        return past_deadline(state, clock, late);
    }
    let encoded = verdict::encode(&request.uid, verdict);
    // Kinds are whatever the client says: only judged kinds become label values, so that
    // made-up kinds cannot grow the metrics without bound.
    let kind_label = state
        .engine
        .known_kind(&request.kind.group, &request.kind.kind)
        .unwrap_or("other");
    state.metrics.record_review(
        endpoint,
        kind_label,
        request.operation.as_str(),
        verdict,
        exemptions,
        started.elapsed().as_secs_f64(),
    );
    log_decision(endpoint, request, verdict, exemptions);
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        encoded,
    )
        .into_response()
}

pub fn log_decision(
    endpoint: Endpoint,
    request: &admission::Request<'_>,
    verdict: &crate::engine::verdict::Verdict,
    exemptions: &[crate::engine::ExemptionUse],
) {
    let fired: Vec<&str> = verdict.fired().iter().map(|p| p.as_str()).collect();
    // Strings as `&str`, not `%`: the same JSON, without a trip through `fmt` per field.
    tracing::info!(
        target: "fluxgate::decision",
        endpoint = endpoint.as_str(),
        uid = request.uid.as_ref(),
        kind = request.kind.kind.as_ref(),
        operation = request.operation.as_str(),
        namespace = request.namespace().unwrap_or(""),
        name = request.name(),
        user = request.user_info.username.as_ref(),
        dry_run = request.is_dry_run(),
        decision = verdict.decision(),
        policies = fired.join(",").as_str(),
        patched = !verdict.patch.is_empty(),
        "decision"
    );
    // The full text of every finding, including the ones only audited or exempted: the
    // client sees at most a shortened warning.
    for outcome in &verdict.outcomes {
        tracing::info!(
            target: "fluxgate::finding",
            uid = %request.uid,
            policy = outcome.finding.policy.as_str(),
            mode = outcome.mode.as_str(),
            action = ?outcome.action,
            message = %outcome.finding.message,
            "finding"
        );
    }
    for used in exemptions {
        tracing::info!(
            target: "fluxgate::exemption",
            uid = %request.uid,
            policy = used.policy.as_str(),
            exemption = %used.exemption,
            "exemption used"
        );
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        state.metrics.encode(),
    )
        .into_response()
}

async fn healthz() -> Response {
    (StatusCode::OK, "ok\n").into_response()
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let readiness = state.ready();
    let status = if readiness.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        serde_json::to_string(&readiness).unwrap_or_default(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_are_read_as_the_api_server_writes_them() {
        assert_eq!(go_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(go_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(go_duration("300ms"), Some(Duration::from_millis(300)));
        for bad in ["", "5", "s", "5x", "-5s", "1e9s"] {
            assert_eq!(go_duration(bad), None, "{bad:?}");
        }
    }
}
