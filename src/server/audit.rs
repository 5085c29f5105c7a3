//! The periodic audit scan inside `fluxgate serve`: the server runs the scan of the `audit`
//! module with its own engine, cluster view and metrics, until it shuts down. Of several
//! replicas only the elected writer scans ([`super::leader`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::AppState;
use crate::audit::cluster::ClusterAuditor;
use crate::metrics::Metrics;

/// Runs a scan every `interval` until shutdown, inside `fluxgate serve`. Waits for the
/// cluster view to sync first, so that rules about cluster state see the whole cluster.
///
/// With `leader` (the election of [`super::leader::Leadership`]), scans only while it says
/// this replica is the audit writer: at once when it becomes the writer, then every
/// `interval`. A replica that stops being the writer clears its audit gauges, which the new
/// writer now keeps (else alerts that sum them over replicas would count stale findings).
pub async fn periodic(
    auditor: Arc<ClusterAuditor>,
    state: Arc<AppState>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
    mut leader: Option<watch::Receiver<bool>>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut leading = leader.as_mut().is_none_or(|l| *l.borrow_and_update());
    state.metrics.audit_leader.set(i64::from(leading));
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            changed = changed(&mut leader) => {
                let now = changed.unwrap_or(false);
                if now != leading {
                    leading = now;
                    state.metrics.audit_leader.set(i64::from(leading));
                    if leading {
                        ticker.reset_immediately();
                    } else {
                        clear_audit_gauges(&state.metrics);
                    }
                }
                continue;
            }
            _ = super::stopped(&mut shutdown) => return,
        }
        if !leading {
            tracing::debug!("audit scan skipped: another replica is the audit writer");
            continue;
        }
        if !state.view.synced() {
            tracing::info!(
                "audit scan postponed: the cluster view is not synced yet, or has lost a watch (its findings would be guesses)"
            );
            continue;
        }
        let run = auditor
            .run_once(&state.engine, state.view.as_ref(), &state.metrics)
            .await;
        tracing::info!(
            objects = run.report.objects_scanned,
            findings = run.report.findings.len(),
            reports = run.written.reports.len(),
            report_errors = run.written.report_errors.len(),
            events = run.written.events,
            event_errors = run.written.event_errors.len(),
            "audit scan done"
        );
    }
}

/// The next value of the election, or never without one. `None` once the election is gone.
async fn changed(leader: &mut Option<watch::Receiver<bool>>) -> Option<bool> {
    match leader {
        Some(l) => match l.changed().await {
            Ok(()) => Some(*l.borrow_and_update()),
            Err(_) => {
                // The election ended (shutdown): stop asking it.
                *leader = None;
                None
            }
        },
        None => std::future::pending().await,
    }
}

fn clear_audit_gauges(metrics: &Metrics) {
    metrics.audit_violations.reset();
    metrics.secret_age.reset();
    metrics.secret_rotation_overdue.reset();
}
