//! The periodic audit scan inside `fluxgate serve`: the server runs the scan of the `audit`
//! module with its own engine, cluster view and metrics, until it shuts down.

use std::sync::Arc;
use std::time::Duration;

use super::AppState;
use crate::audit::cluster::ClusterAuditor;

/// Runs a scan every `interval` until shutdown, inside `fluxgate serve`. Waits for the
/// cluster view to sync first, so that rules about cluster state see the whole cluster.
pub async fn periodic(
    auditor: Arc<ClusterAuditor>,
    state: Arc<AppState>,
    interval: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = super::stopped(&mut shutdown) => return,
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
