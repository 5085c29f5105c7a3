//! Prometheus metrics: one registry, typed handles created once and recorded in one place.

use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::engine::{Endpoint, ExemptionUse};
use crate::verdict::{Action, Verdict};

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
        self.admission_requests
            .with_label_values(&[endpoint.as_str(), kind, operation, verdict.decision()])
            .inc();
        self.admission_duration
            .with_label_values(&[endpoint.as_str()])
            .observe(seconds);
        for outcome in &verdict.outcomes {
            if !matches!(outcome.action, Action::Exempted(_)) {
                self.policy_violations
                    .with_label_values(&[outcome.finding.policy.as_str(), outcome.mode.as_str()])
                    .inc();
            }
        }
        for used in exemptions {
            self.exemptions
                .with_label_values(&[used.policy.as_str(), &used.exemption])
                .inc();
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Encoding into a Vec only fails on invalid metric families, which we never build.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}
