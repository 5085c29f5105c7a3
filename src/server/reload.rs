//! Hot reload of the configuration file and the serving certificate. Both are polled rather
//! than watched with inotify: Kubernetes updates mounted ConfigMaps and Secrets by swapping a
//! symlink, which file watchers miss or see twice, while comparing contents is always right.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::watch;

use super::{AppState, ServerOptions};
use crate::config::{Config, ConfigError};
use crate::tls::{ReloadableCert, TlsFiles};

pub(super) async fn watch_files(
    state: Arc<AppState>,
    options: ServerOptions,
    cert: Arc<ReloadableCert>,
    mut cert_fingerprint: u64,
    mut config_fingerprint: Option<u64>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(options.reload_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = super::stopped(&mut shutdown) => return,
        }
        if let Some(path) = &options.config_path {
            let current = std::fs::read(path).ok().map(|bytes| fingerprint(&bytes));
            if current.is_some() && current != config_fingerprint {
                config_fingerprint = current;
                reload_config_once(&state, path);
            }
        }
        if let Ok(current) = options.tls.fingerprint()
            && current != cert_fingerprint
        {
            cert_fingerprint = current;
            reload_tls_once(&state, &options.tls, &cert);
        }
    }
}

fn fingerprint(bytes: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

/// Reads and validates a configuration file; the fingerprint is of the bytes parsed, so a
/// change made right after is still seen as a change.
pub(super) fn load_config(path: &std::path::Path) -> Result<(Config, u64), ConfigError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| ConfigError::unreadable(&name, &e))?;
    let text = String::from_utf8_lossy(&bytes);
    Ok((Config::from_yaml(&text, &name)?, fingerprint(&bytes)))
}

/// Loads the configuration file and swaps it in; a broken file keeps the configuration in
/// use, says why in the log and counts the failure.
pub fn reload_config_once(state: &AppState, path: &std::path::Path) -> bool {
    match Config::from_file(path) {
        Ok(config) => {
            state
                .view
                .reconfigure(config.policies.single_agent.detector());
            state.engine.set_config(config);
            state
                .metrics
                .config_reloads
                .with_label_values(&["success"])
                .inc();
            tracing::info!(path = %path.display(), "configuration reloaded");
            true
        }
        Err(e) => {
            state
                .metrics
                .config_reloads
                .with_label_values(&["error"])
                .inc();
            tracing::error!(error = %e, "new configuration is invalid; keeping the one in use");
            false
        }
    }
}

/// Loads the certificate files and swaps them in for new connections; connections already
/// open keep theirs. A broken pair keeps the certificate in use.
pub fn reload_tls_once(state: &AppState, files: &TlsFiles, cert: &ReloadableCert) -> bool {
    match files.load() {
        Ok(loaded) => {
            cert.replace(loaded.key);
            if let Some(not_after) = loaded.not_after {
                state.metrics.tls_cert_expiry.set(not_after as f64);
            }
            state.tls_loaded.store(true, Ordering::Release);
            state
                .metrics
                .tls_reloads
                .with_label_values(&["success"])
                .inc();
            tracing::info!(cert = %files.cert.display(), "serving certificate reloaded");
            true
        }
        Err(e) => {
            state
                .metrics
                .tls_reloads
                .with_label_values(&["error"])
                .inc();
            tracing::error!(error = %e, "new certificate is unusable; keeping the one in use");
            false
        }
    }
}
