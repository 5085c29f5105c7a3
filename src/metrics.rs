//! Prometheus metrics: one registry, typed handles created once and recorded in one place.

use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::budget::Exceeded;
use crate::engine::verdict::{Action, Verdict};
use crate::engine::{Endpoint, ExemptionUse};
use crate::finding::{Mode, PolicyId};

/// Latency buckets fine enough below one millisecond, where fluxgate answers.
const DURATION_BUCKETS: &[f64] = &[
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5,
];

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub admission_requests: IntCounterVec,
    pub admission_duration: HistogramVec,
    pub policy_violations: IntCounterVec,
    pub exemptions: IntCounterVec,
    pub rejected_requests: IntCounterVec,
    pub config_reloads: IntCounterVec,
    pub tls_reloads: IntCounterVec,
    pub tls_cert_expiry: Gauge,
    pub build_info: IntGaugeVec,
    pub audit_violations: IntGaugeVec,
    pub audit_last_run: Gauge,
    pub secret_age: IntGaugeVec,
    pub secret_rotation_overdue: IntGaugeVec,
    pub audit_report_writes: IntCounterVec,
    pub audit_leader: IntGauge,
    pub budget_exceeded: IntCounterVec,
    pub pool_reviews: IntCounterVec,
    pub output_cut: IntCounterVec,
    pub connections_refused: IntCounterVec,
    pub connections_open: IntGauge,
    pub inflight_body_bytes: IntGauge,
    pub agent_reservations: IntCounterVec,
    handles: Arc<Handles>,
}

const ENDPOINTS: [Endpoint; 2] = [Endpoint::Validate, Endpoint::Mutate];
const OPERATIONS: [&str; 4] = ["CREATE", "UPDATE", "DELETE", "CONNECT"];
const DECISIONS: [&str; 3] = ["allow", "warn", "deny"];
const MODES: [Mode; 4] = [Mode::Enforce, Mode::Warn, Mode::Audit, Mode::Off];
/// Kinds remembered per (endpoint, operation, decision); a webhook sees a dozen kinds, and
/// requests of yet more kinds still count, through `with_label_values`.
const KINDS_PER_SLOT: usize = 32;

/// Handles of the label sets every review records, resolved on first use and kept: each
/// `with_label_values` hashes its labels and takes a lock. Created lazily, so that /metrics
/// shows only series that happened.
#[derive(Default)]
struct Handles {
    duration: [OnceLock<Histogram>; 2],
    violations: [[OnceLock<IntCounter>; 4]; 3],
    /// By endpoint, operation and decision: the kinds seen, read without a lock.
    requests: [[[KindCounters; 3]; 4]; 2],
    /// Log lines and bytes cut, as last copied from [`crate::logging::cut`].
    log_cut_seen: std::sync::Mutex<(u64, u64)>,
}

/// The request counters of one (endpoint, operation, decision), by kind.
type KindCounters = ArcSwap<Vec<(Box<str>, IntCounter)>>;

fn index_of<T: PartialEq>(all: &[T], item: &T) -> Option<usize> {
    all.iter().position(|x| x == item)
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    // Names and labels are constants of this file; a collision would be a programming error
    // caught by the tests, so an unregistered handle is acceptable as the fallback.
    let c = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    let _ = registry.register(Box::new(c.clone()));
    c
}

fn gauges(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    let _ = registry.register(Box::new(g.clone()));
    g
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let admission_requests = counter(
            &registry,
            "fluxgate_admission_requests_total",
            "Admission reviews answered, by endpoint, kind, operation and decision (allow, warn, deny).",
            &["endpoint", "kind", "operation", "decision"],
        );
        let admission_duration = HistogramVec::new(
            HistogramOpts::new(
                "fluxgate_admission_duration_seconds",
                "Time from a whole request body to the encoded answer.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["endpoint"],
        )
        .unwrap_or_else(|e| panic!("histogram: {e}"));
        let _ = registry.register(Box::new(admission_duration.clone()));
        let policy_violations = counter(
            &registry,
            "fluxgate_policy_violations_total",
            "Findings by policy and the mode the policy ran in.",
            &["policy", "mode"],
        );
        let exemptions = counter(
            &registry,
            "fluxgate_exemptions_total",
            "Requests a policy skipped because of a configured exemption.",
            &["policy", "exemption"],
        );
        let rejected_requests = counter(
            &registry,
            "fluxgate_rejected_requests_total",
            "Requests refused before evaluation (not an AdmissionReview, too large, wrong method...).",
            &["reason"],
        );
        let config_reloads = counter(
            &registry,
            "fluxgate_config_reloads_total",
            "Configuration reloads by result (success, error).",
            &["result"],
        );
        let tls_reloads = counter(
            &registry,
            "fluxgate_tls_reloads_total",
            "Serving certificate reloads by result (success, error).",
            &["result"],
        );
        let tls_cert_expiry = Gauge::new(
            "fluxgate_tls_cert_expiry_timestamp_seconds",
            "When the serving certificate in use expires (Unix time).",
        )
        .unwrap_or_else(|e| panic!("gauge: {e}"));
        let _ = registry.register(Box::new(tls_cert_expiry.clone()));
        let build_info = IntGaugeVec::new(
            Opts::new(
                "fluxgate_build_info",
                "Always 1; the version label says which build runs.",
            ),
            &["version"],
        )
        .unwrap_or_else(|e| panic!("gauge: {e}"));
        let _ = registry.register(Box::new(build_info.clone()));
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        // Both results exist from the start, so that `increase(...{result="error"}[5m])`
        // alerts on the very first failure instead of on the second.
        for result in ["success", "error"] {
            config_reloads.with_label_values(&[result]);
            tls_reloads.with_label_values(&[result]);
        }
        let audit_violations = IntGaugeVec::new(
            Opts::new(
                "fluxgate_audit_violations",
                "Objects in violation found by the last audit scan, by policy, namespace and kind.",
            ),
            &["policy", "namespace", "kind"],
        )
        .unwrap_or_else(|e| panic!("gauge: {e}"));
        let _ = registry.register(Box::new(audit_violations.clone()));
        let audit_last_run = Gauge::new(
            "fluxgate_audit_last_run_timestamp_seconds",
            "When the last audit scan finished (Unix time).",
        )
        .unwrap_or_else(|e| panic!("gauge: {e}"));
        let _ = registry.register(Box::new(audit_last_run.clone()));
        let secret_age = gauges(
            &registry,
            "fluxgate_secret_age_seconds",
            "Time since the last rotation of a Secret Flux or the GitLab agent uses (its fluxgate.io/rotated-at annotation, else its creation), at the last audit scan.",
            &["namespace", "secret", "use"],
        );
        let secret_rotation_overdue = gauges(
            &registry,
            "fluxgate_secret_rotation_overdue",
            "1 when a Secret is older than the secret-rotation limit for its use, at the last audit scan; else 0.",
            &["namespace", "secret", "use"],
        );
        let audit_report_writes = counter(
            &registry,
            "fluxgate_audit_report_writes_total",
            "Reports (PolicyReport, ClusterPolicyReport, Report, ClusterReport) the audit scan wrote, by result (written, failed).",
            &["result"],
        );
        for result in ["written", "failed"] {
            audit_report_writes.with_label_values(&[result]);
        }
        let audit_leader = IntGauge::new(
            "fluxgate_audit_leader",
            "1 while this replica is the audit writer (holds the Lease fluxgate-audit, or runs without an election) and so runs the audit scan and writes its reports and Events; else 0.",
        )
        .unwrap_or_else(|e| panic!("gauge: {e}"));
        let _ = registry.register(Box::new(audit_leader.clone()));
        let budget_exceeded = counter(
            &registry,
            "fluxgate_budget_exceeded_total",
            "Reviews stopped by a budget (identity-patterns, regex-compilations, regex-bytes, rbac-rules, rbac-subjects, aggregation-steps, deadline): denied where the policy enforces.",
            &["budget"],
        );
        let pool_reviews = counter(
            &registry,
            "fluxgate_pool_reviews_total",
            "Reviews judged on the evaluation pool instead of inline, by why (large-body, offloaded).",
            &["why"],
        );
        let output_cut = counter(
            &registry,
            "fluxgate_output_cut_total",
            "What was cut to keep answers and logs bounded: findings past the cap per object, message bytes, log lines and log bytes.",
            &["what"],
        );
        for what in ["findings", "message-bytes", "log-lines", "log-bytes"] {
            output_cut.with_label_values(&[what]);
        }
        let connections_refused = counter(
            &registry,
            "fluxgate_connections_refused_total",
            "TLS connections closed on accept, by reason (limit: --max-connections; peer-limit: --max-connections-per-peer).",
            &["reason"],
        );
        for reason in ["limit", "peer-limit"] {
            connections_refused.with_label_values(&[reason]);
        }
        let connections_open = IntGauge::new(
            "fluxgate_connections_open",
            "TLS connections open on the webhook listener.",
        )
        .unwrap_or_else(|e| panic!("gauge: {e}"));
        let _ = registry.register(Box::new(connections_open.clone()));
        let inflight_body_bytes = IntGauge::new(
            "fluxgate_inflight_body_bytes",
            "Request body bytes admitted and not yet answered (the in-flight budget in use).",
        )
        .unwrap_or_else(|e| panic!("gauge: {e}"));
        let _ = registry.register(Box::new(inflight_body_bytes.clone()));
        let agent_reservations = counter(
            &registry,
            "fluxgate_agent_reservations_total",
            "Reservations of a new GitLab agent installation (single-agent), by result: granted, refused (another installation holds it), unknown (the reservation could not be read or written).",
            &["result"],
        );
        Metrics {
            registry,
            admission_requests,
            admission_duration,
            policy_violations,
            exemptions,
            rejected_requests,
            config_reloads,
            tls_reloads,
            tls_cert_expiry,
            build_info,
            audit_violations,
            audit_last_run,
            secret_age,
            secret_rotation_overdue,
            audit_report_writes,
            audit_leader,
            budget_exceeded,
            pool_reviews,
            output_cut,
            connections_refused,
            connections_open,
            inflight_body_bytes,
            agent_reservations,
            handles: Arc::default(),
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Records one answered review: the one place request metrics are written.
    pub fn record_review(
        &self,
        endpoint: Endpoint,
        kind: &str,
        operation: &str,
        verdict: &Verdict,
        exemptions: &[ExemptionUse],
        seconds: f64,
    ) {
        self.count_request(endpoint, kind, operation, verdict.decision());
        match index_of(&ENDPOINTS, &endpoint) {
            Some(e) => self.handles.duration[e]
                .get_or_init(|| {
                    self.admission_duration
                        .with_label_values(&[endpoint.as_str()])
                })
                .observe(seconds),
            None => self
                .admission_duration
                .with_label_values(&[endpoint.as_str()])
                .observe(seconds),
        }
        for outcome in &verdict.outcomes {
            if !matches!(outcome.action, Action::Exempted(_)) {
                let (policy, mode) = (outcome.finding.policy, outcome.mode);
                let labels = [policy.as_str(), mode.as_str()];
                match (index_of(PolicyId::ALL, &policy), index_of(&MODES, &mode)) {
                    (Some(p), Some(m)) if p < self.handles.violations.len() => {
                        self.handles.violations[p][m]
                            .get_or_init(|| self.policy_violations.with_label_values(&labels))
                            .inc()
                    }
                    _ => self.policy_violations.with_label_values(&labels).inc(),
                }
            }
        }
        for used in exemptions {
            self.exemptions
                .with_label_values(&[used.policy.as_str(), &used.exemption])
                .inc();
        }
        self.record_cuts(verdict);
    }

    /// What a verdict cut and which budget stopped it; rare, so not on cached handles.
    pub fn record_cuts(&self, verdict: &Verdict) {
        if verdict.cut_findings > 0 {
            self.output_cut
                .with_label_values(&["findings"])
                .inc_by(verdict.cut_findings as u64);
        }
        if verdict.cut_message_bytes > 0 {
            self.output_cut
                .with_label_values(&["message-bytes"])
                .inc_by(verdict.cut_message_bytes as u64);
        }
        if let Some(exceeded) = verdict.unjudged {
            self.budget_stopped(exceeded);
        }
    }

    /// Counts a review stopped by a budget (an inline review moved to the pool is not).
    pub fn budget_stopped(&self, exceeded: Exceeded) {
        if !matches!(exceeded, Exceeded::Offload { .. }) {
            self.budget_exceeded
                .with_label_values(&[exceeded.budget()])
                .inc();
        }
    }

    fn count_request(&self, endpoint: Endpoint, kind: &str, operation: &str, decision: &str) {
        let labels = [endpoint.as_str(), kind, operation, decision];
        let (Some(e), Some(o), Some(d)) = (
            index_of(&ENDPOINTS, &endpoint),
            index_of(&OPERATIONS, &operation),
            index_of(&DECISIONS, &decision),
        ) else {
            self.admission_requests.with_label_values(&labels).inc();
            return;
        };
        let slot = &self.handles.requests[e][o][d];
        if let Some((_, counter)) = slot.load().iter().find(|(k, _)| &**k == kind) {
            counter.inc();
            return;
        }
        let counter = self.admission_requests.with_label_values(&labels);
        counter.inc();
        slot.rcu(|kinds| {
            let mut kinds = Vec::clone(kinds);
            if kinds.len() < KINDS_PER_SLOT && !kinds.iter().any(|(k, _)| &**k == kind) {
                kinds.push((kind.into(), counter.clone()));
            }
            kinds
        });
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> Vec<u8> {
        let (lines, bytes) = crate::logging::cut();
        {
            let mut seen = self
                .handles
                .log_cut_seen
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            self.output_cut
                .with_label_values(&["log-lines"])
                .inc_by(lines.saturating_sub(seen.0));
            self.output_cut
                .with_label_values(&["log-bytes"])
                .inc_by(bytes.saturating_sub(seen.1));
            *seen = (lines.max(seen.0), bytes.max(seen.1));
        }
        let mut out = Vec::new();
        // Encoding into a Vec only fails on invalid metric families, which we never build.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::verdict::Outcome;
    use crate::finding::{Finding, Mode};

    fn denial() -> Verdict {
        Verdict {
            allowed: false,
            outcomes: vec![Outcome {
                finding: Finding::violation(PolicyId::SignedOciSources, "unsigned"),
                mode: Mode::Enforce,
                action: Action::Deny,
            }],
            ..Verdict::default()
        }
    }

    fn value(metrics: &Metrics, series: &str) -> Option<f64> {
        let text = String::from_utf8(metrics.encode()).expect("utf-8");
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
    }

    #[test]
    fn findings_and_message_bytes_cut_from_a_verdict_are_counted() {
        use crate::engine::verdict::{MAX_FINDING_BYTES, MAX_FINDINGS};
        let mut verdict = Verdict::allow();
        verdict.record(
            Finding::violation(PolicyId::SingleAgent, "y".repeat(MAX_FINDING_BYTES + 500)),
            Mode::Enforce,
            Action::Deny,
        );
        for i in 0..MAX_FINDINGS + 7 {
            verdict.record(
                Finding::violation(PolicyId::SingleAgent, format!("{i} {}", "x".repeat(100))),
                Mode::Enforce,
                Action::Deny,
            );
        }
        let metrics = Metrics::new();
        metrics.record_review(
            Endpoint::Validate,
            "Deployment",
            "CREATE",
            &verdict,
            &[],
            0.001,
        );
        assert_eq!(
            value(&metrics, r#"fluxgate_output_cut_total{what="findings"}"#),
            Some(8.0),
            "33 + 7 findings for 32 places"
        );
        assert!(
            value(
                &metrics,
                r#"fluxgate_output_cut_total{what="message-bytes"}"#
            )
            .is_some_and(|cut| cut > 500.0)
        );
        assert!(
            verdict
                .denial_message()
                .contains("(8 more findings were cut; the object has too many problems to list)"),
            "{}",
            verdict.denial_message()
        );
    }

    #[test]
    fn cached_handles_count_every_review() {
        let metrics = Metrics::new();
        for _ in 0..3 {
            metrics.record_review(
                Endpoint::Validate,
                "OCIRepository",
                "CREATE",
                &denial(),
                &[],
                0.001,
            );
        }
        assert_eq!(
            value(
                &metrics,
                r#"fluxgate_admission_requests_total{decision="deny",endpoint="validate",kind="OCIRepository",operation="CREATE"}"#
            ),
            Some(3.0)
        );
        assert_eq!(
            value(
                &metrics,
                r#"fluxgate_policy_violations_total{mode="enforce",policy="signed-oci-sources"}"#
            ),
            Some(3.0)
        );
        assert_eq!(
            value(
                &metrics,
                r#"fluxgate_admission_duration_seconds_count{endpoint="validate"}"#
            ),
            Some(3.0)
        );
    }

    #[test]
    fn kinds_beyond_the_cache_are_still_counted() {
        let metrics = Metrics::new();
        let allow = Verdict::allow();
        for round in 0..2 {
            for i in 0..KINDS_PER_SLOT + 5 {
                metrics.record_review(
                    Endpoint::Mutate,
                    &format!("Kind{i}"),
                    "UPDATE",
                    &allow,
                    &[],
                    0.0,
                );
            }
            let last = KINDS_PER_SLOT + 4;
            assert_eq!(
                value(
                    &metrics,
                    &format!(
                        r#"fluxgate_admission_requests_total{{decision="allow",endpoint="mutate",kind="Kind{last}",operation="UPDATE"}}"#
                    )
                ),
                Some(f64::from(round + 1))
            );
        }
    }

    #[test]
    fn series_appear_only_once_they_happen() {
        let metrics = Metrics::new();
        let text = String::from_utf8(metrics.encode()).expect("utf-8");
        assert!(
            !text.contains("fluxgate_policy_violations_total{"),
            "{text}"
        );
    }
}
