//! The HTTP layer: `/validate` and `/mutate` on the TLS listener; `/metrics`, `/healthz` and
//! `/readyz` on the metrics listener. Bad input always gets a JSON 4xx, never a panic.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::AppState;
use crate::admission;
use crate::engine::{Endpoint, verdict};

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

async fn read_body(state: &AppState, body: Body) -> Result<bytes::Bytes, Response> {
    let limited = Limited::new(body, state.max_body_bytes);
    match tokio::time::timeout(state.body_read_timeout, limited.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large(state)),
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

fn too_large(state: &AppState) -> Response {
    error(
        Some(state),
        StatusCode::PAYLOAD_TOO_LARGE,
        "too-large",
        format!(
            "the request body is larger than {} bytes (--max-body-bytes)",
            state.max_body_bytes
        ),
    )
}

async fn review(state: Arc<AppState>, endpoint: Endpoint, request: Request) -> Response {
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
        return too_large(&state);
    }
    let body = match read_body(&state, request.into_body()).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let started = Instant::now();
    let request = match admission::decode(&body) {
        Ok(request) => request,
        Err(e) => {
            return error(
                Some(&state),
                StatusCode::BAD_REQUEST,
                "not-a-review",
                e.to_string(),
            );
        }
    };
    let wanted = state.engine.prefetch(&request);
    if !wanted.is_empty()
        && tokio::time::timeout(state.eval_timeout, state.view.refresh(&wanted))
            .await
            .is_err()
    {
        tracing::warn!(uid = %request.uid, "cluster view refresh hit the evaluation deadline; judging with what the view has");
    }
    let (mut verdict, exemptions) = state.engine.review(endpoint, &request, state.view.as_ref());
    // Only an allowed request that adds a new agent installation claims anything: the
    // common review never waits for the API server.
    if !verdict.claims.is_empty() {
        let results = crate::engine::settle_claims(
            &mut verdict,
            state.reservations.as_ref(),
            state.view.as_ref(),
        )
        .await;
        for result in results {
            state
                .metrics
                .agent_reservations
                .with_label_values(&[result])
                .inc();
        }
    }
    if started.elapsed() > state.eval_timeout {
        // Policies are not interruptible, but an answer this late may already have been given
        // up on by the API server; let its failurePolicy decide rather than pretend.
        return error(
            Some(&state),
            StatusCode::SERVICE_UNAVAILABLE,
            "deadline",
            format!(
                "evaluation took {:?}, over the {:?} deadline (--eval-timeout)",
                started.elapsed(),
                state.eval_timeout
            ),
        );
    }
    let encoded = verdict::encode(&request.uid, &verdict);
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
        &verdict,
        &exemptions,
        started.elapsed().as_secs_f64(),
    );
    log_decision(endpoint, &request, &verdict, &exemptions);
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
