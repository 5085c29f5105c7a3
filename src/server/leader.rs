//! One audit writer among replicas. Every replica of `fluxgate serve` answers admission
//! reviews, but only the holder of the Lease `fluxgate-audit` (`coordination.k8s.io/v1`, in
//! fluxgate's own namespace) runs the periodic audit scan and writes its reports and Events;
//! otherwise each replica would write the same reports and raise the same Events every
//! interval.
//!
//! The election is `kube-lease-manager`'s (Lease locked by server-side apply, so of two
//! replicas racing for a free Lease one gets a conflict; renewed before it expires; taken
//! over once its holder has not renewed it for a lease duration: a waiting replica sleeps
//! until the Lease it saw would expire, then looks again). The holder releases the Lease when
//! it shuts down, so that the next replica takes it without a forced release. As with client-go's leader election there is no fencing: a holder cut off
//! from the API server believes it leads until it next reaches it, and may then write one
//! more scan's reports (server-side apply of the same content) before it learns otherwise.

use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseCreateMode, LeaseManagerBuilder, LeaseParams};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The Lease the audit writer holds.
pub const LEASE_NAME: &str = "fluxgate-audit";

/// Where and how the audit writer is elected.
#[derive(Debug, Clone)]
pub struct ElectionOptions {
    /// fluxgate's own namespace (where its service account may write this Lease).
    pub namespace: String,
    /// This replica's name in the Lease's `holderIdentity`: unique among replicas.
    pub identity: String,
    /// How long the Lease lasts without a renewal: another replica takes over within about
    /// this time after the holder dies. At least 2 s.
    pub lease_duration: Duration,
}

impl ElectionOptions {
    /// `name_pid`, the name being the pod's (`POD_NAME`, else the hostname, which is the
    /// pod's name in a cluster): unique among replicas, and among processes of one machine.
    pub fn default_identity() -> String {
        let host = ["POD_NAME", "HOSTNAME"]
            .iter()
            .find_map(|var| std::env::var(var).ok())
            .filter(|h| !h.is_empty())
            .filter(|h| !h.is_empty())
            .or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .ok()
                    .map(|h| h.trim().to_string())
                    .filter(|h| !h.is_empty())
            })
            .unwrap_or_else(|| "fluxgate".to_string());
        format!("{host}_{}", std::process::id())
    }

    /// (duration, grace) in whole seconds as the lease manager takes them: the holder renews
    /// `grace` seconds before the Lease would expire, a third of its duration.
    fn seconds(&self) -> (u64, u64) {
        let duration = self.lease_duration.as_secs().max(2);
        (duration, (duration / 3).max(1))
    }
}

/// This replica's part in the election: whether it is the audit writer now.
pub struct Leadership {
    leading: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

impl Leadership {
    /// Starts taking part in the election until `shutdown`, when the Lease is released if
    /// this replica holds it. Errors reaching the API server (at start-up too) are logged
    /// and retried; meanwhile this replica does not lead.
    pub fn start(
        client: Client,
        options: ElectionOptions,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let (sender, leading) = watch::channel(false);
        let task = tokio::spawn(elect(client, options, sender, shutdown));
        Leadership { leading, task }
    }

    /// `true` while this replica is the audit writer; changes as the election goes.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.leading.clone()
    }

    /// Waits (at most `within`) for the Lease to be released after shutdown.
    pub async fn stopped(self, within: Duration) {
        if tokio::time::timeout(within, self.task).await.is_err() {
            tracing::warn!(
                lease = LEASE_NAME,
                "the audit Lease was not released in time; another replica takes over when it expires"
            );
        }
    }
}

async fn elect(
    client: Client,
    options: ElectionOptions,
    sender: watch::Sender<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (duration, grace) = options.seconds();
    let mut retry = Duration::from_secs(1);
    let manager = loop {
        let built = LeaseManagerBuilder::new(client.clone(), LEASE_NAME)
            .with_namespace(options.namespace.clone())
            .with_create_mode(LeaseCreateMode::AutoCreate)
            .with_parameters(
                LeaseParams::new(options.identity.clone(), duration, grace)
                    .with_field_manager(format!("fluxgate-audit-{}", options.identity)),
            )
            .build();
        tokio::select! {
            built = built => match built {
                Ok(manager) => break manager,
                Err(e) => tracing::warn!(
                    namespace = %options.namespace,
                    lease = LEASE_NAME,
                    error = %e,
                    retry_in = ?retry,
                    "cannot read or create the audit Lease; this replica does not write audit reports until it can"
                ),
            },
            _ = super::stopped(&mut shutdown) => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(retry) => {}
            _ = super::stopped(&mut shutdown) => return,
        }
        retry = (retry * 2).min(Duration::from_secs(30));
    };
    tracing::info!(
        namespace = %options.namespace,
        lease = LEASE_NAME,
        identity = %options.identity,
        lease_seconds = duration,
        "taking part in the election of the audit writer"
    );
    let (mut elected, task) = manager.watch().await;
    loop {
        let leading = *elected.borrow_and_update();
        if *sender.borrow() != leading {
            tracing::info!(
                lease = LEASE_NAME,
                identity = %options.identity,
                leading,
                "{}",
                if leading {
                    "this replica is now the audit writer"
                } else {
                    "this replica is no longer the audit writer"
                }
            );
            sender.send_replace(leading);
        }
        tokio::select! {
            changed = elected.changed() => if changed.is_err() { break },
            _ = super::stopped(&mut shutdown) => break,
        }
    }
    // Closing the channel makes the manager release the Lease if it holds it, and return.
    sender.send_replace(false);
    drop(elected);
    match task.await {
        Ok(Ok(_)) => tracing::info!(lease = LEASE_NAME, "left the election of the audit writer"),
        Ok(Err(e)) => {
            tracing::warn!(lease = LEASE_NAME, error = %e, "could not release the audit Lease; another replica takes over when it expires")
        }
        Err(e) => tracing::warn!(lease = LEASE_NAME, error = %e, "the election task failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_renews_a_third_of_the_lease_before_it_expires() {
        let options = |secs| ElectionOptions {
            namespace: "fluxgate-system".into(),
            identity: "a".into(),
            lease_duration: Duration::from_secs(secs),
        };
        assert_eq!(options(15).seconds(), (15, 5));
        assert_eq!(options(4).seconds(), (4, 1));
        // The lease manager needs 0 < grace < duration.
        assert_eq!(options(0).seconds(), (2, 1));
        assert_eq!(options(1).seconds(), (2, 1));
    }

    #[test]
    fn identities_differ_between_processes_of_one_host() {
        let identity = ElectionOptions::default_identity();
        assert!(
            identity.ends_with(&format!("_{}", std::process::id())),
            "{identity}"
        );
    }
}
