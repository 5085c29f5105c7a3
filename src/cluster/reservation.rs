//! One new agent installation at a time, across every fluxgate replica.
//!
//! `single-agent` allows a new installation only when the cluster view shows no other. The
//! view learns of an installation from its watch, some time after the API server stored it,
//! and each replica has its own view: two CREATEs of different installations that reach two
//! replicas within that delay would both be allowed. So an allowed new installation is first
//! *reserved* ([`Claim`]): a fixed-name object that names the installation is written through
//! the API server, and etcd's atomic create and `resourceVersion` preconditions let exactly
//! one writer win ([`LeaseReservations`], a `coordination.k8s.io` Lease in fluxgate's
//! namespace). A replica that finds the reservation naming another installation denies,
//! unless that installation's reservation has done its job ([`holder_blocks`]).
//!
//! [`LocalReservations`] is the same rule inside one process, for fluxgate without a cluster
//! (`--no-cluster`, `--cluster-state`, tests).

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant, SystemTime};

use std::collections::BTreeMap;

use k8s_openapi::api::coordination::v1::Lease;

use crate::gitlab::installation::InstallationId;

use super::ClusterView;
use super::lease::{self, LeaseCell, Written};

/// The text of a denial when a claim is refused: what the claiming policy says.
pub type RefusedText = fn(&Claim, &Held, SystemTime) -> String;
/// The text when the reservation cannot be read or written (the reason given).
pub type UnknownText = fn(&Claim, &str) -> String;

/// A new installation a request would add, to be reserved before the request is allowed.
#[derive(Debug, Clone)]
pub struct Claim {
    pub installation: InstallationId,
    /// The object whose request makes the claim, as messages name it.
    pub object: String,
    /// How long the reservation keeps other installations out if this one never appears
    /// (the API server or another webhook refused the request after fluxgate allowed it).
    pub ttl: Duration,
    /// Dry runs are judged against the reservation but never write one.
    pub dry_run: bool,
    /// What to answer when the reservation cannot be read or written (the API server is
    /// unreachable, fluxgate lacks the rights): allow (with a warning) or deny.
    pub allow_when_unknown: bool,
    pub refused_text: RefusedText,
    pub unknown_text: UnknownText,
}

/// A reservation as it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub installation: InstallationId,
    pub object: String,
    /// When it was made or last renewed, by the clock of the replica that wrote it.
    pub renewed: SystemTime,
    pub ttl: Duration,
}

/// The answer to a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reserved {
    /// The installation is reserved (or, for a dry run, could be).
    Granted,
    /// Another installation holds the reservation.
    Refused(Held),
    /// The reservation could not be read or written; says why.
    Unknown(String),
}

impl Reserved {
    /// `granted`, `refused` or `unknown`, for metrics.
    pub fn result(&self) -> &'static str {
        match self {
            Reserved::Granted => "granted",
            Reserved::Refused(_) => "refused",
            Reserved::Unknown(_) => "unknown",
        }
    }
}

/// Whether a reservation keeps `claim` out: it names another installation, and that
/// installation runs (the view shows it), or it has not appeared yet and its time is not up.
/// A reservation whose installation reached the view since it was made has done its job:
/// from then on the view keeps others out, and once that installation is deleted, a new one
/// may come.
pub fn holder_blocks(held: &Held, claim: &Claim, view: &dyn ClusterView, now: SystemTime) -> bool {
    why_holder_blocks(held, claim, view, now).0
}

/// [`holder_blocks`], with the reason (for the debug log).
fn why_holder_blocks(
    held: &Held,
    claim: &Claim,
    view: &dyn ClusterView,
    now: SystemTime,
) -> (bool, &'static str) {
    if held.installation == claim.installation {
        return (false, "same installation");
    }
    let age = now.duration_since(held.renewed).unwrap_or(Duration::ZERO);
    // The view's clock is monotonic; the reservation's is a wall clock (maybe another
    // replica's): the moment it was written, in this process's monotonic time.
    let since = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
    // Whether it came is read *before* whether it runs: the view may take it in between the
    // two reads (each takes the index's lock on its own), and read the other way round an
    // installation arriving at that moment looked as if it had come and gone already.
    let came = age < held.ttl && view.agent_installation_applied_since(&held.installation, since);
    let runs = view
        .agent_installations()
        .found()
        .is_some_and(|all| all.iter().any(|i| i.id == held.installation));
    if runs {
        (true, "runs")
    } else if age >= held.ttl {
        (false, "expired")
    } else if came {
        // It came, and is gone by the later read: deleted (or no longer an agent).
        (false, "came and went")
    } else {
        (true, "not come yet")
    }
}

/// A future [`Reservations::reserve`] returns.
pub type ReserveFuture<'a> = Pin<Box<dyn Future<Output = Reserved> + Send + 'a>>;

/// Where reservations are kept.
pub trait Reservations: Send + Sync + std::fmt::Debug {
    /// Judges a claim against the reservation and, unless it is a dry run or refused, makes
    /// it (or renews it, for the installation that holds it).
    fn reserve<'a>(&'a self, claim: &'a Claim, view: &'a dyn ClusterView) -> ReserveFuture<'a>;
}

/// The reservation of one process.
#[derive(Debug, Default)]
pub struct LocalReservations {
    held: std::sync::Mutex<Option<Held>>,
}

impl Reservations for LocalReservations {
    fn reserve<'a>(&'a self, claim: &'a Claim, view: &'a dyn ClusterView) -> ReserveFuture<'a> {
        let reserved = self.reserve_now(claim, view);
        Box::pin(async move { reserved })
    }
}

impl LocalReservations {
    /// Judges (and, unless a dry run, makes) a claim. Under one lock, so that of two
    /// concurrent claims for different installations exactly one is granted.
    pub fn reserve_now(&self, claim: &Claim, view: &dyn ClusterView) -> Reserved {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let now = SystemTime::now();
        if let Some(current) = held.as_ref()
            && holder_blocks(current, claim, view, now)
        {
            return Reserved::Refused(current.clone());
        }
        if !claim.dry_run {
            *held = Some(Held {
                installation: claim.installation.clone(),
                object: claim.object.clone(),
                renewed: now,
                ttl: claim.ttl,
            });
        }
        Reserved::Granted
    }
}

/// The name of the Lease (in fluxgate's namespace) that reserves new agent installations.
pub const LEASE_NAME: &str = "fluxgate-single-agent";
/// The object whose request made the reservation, for messages.
const OBJECT_ANNOTATION: &str = "fluxgate.io/object";
/// The installation, as messages name it (`holderIdentity` has it in a stable form).
const INSTALLATION_ANNOTATION: &str = "fluxgate.io/installation";
/// How long a reservation may take in all: reads, writes and retries, well within the
/// webhook's `timeoutSeconds` (5).
pub const RESERVE_DEADLINE: Duration = Duration::from_secs(3);
/// Writes lost to another writer before giving up: each loss means another replica made
/// progress, so a few are plenty.
const ATTEMPTS: usize = 5;

/// Reservations kept in a Lease in fluxgate's namespace: what every replica shares.
#[derive(Debug, Clone)]
pub struct LeaseReservations {
    cell: LeaseCell,
}

impl LeaseReservations {
    /// The reservation Lease [`LEASE_NAME`] in `namespace`.
    pub fn new(client: kube::Client, namespace: &str) -> Self {
        LeaseReservations {
            cell: LeaseCell::new(client, namespace, LEASE_NAME),
        }
    }

    fn trouble(&self, doing: &str, e: &kube::Error) -> Reserved {
        Reserved::Unknown(format!(
            "{doing} Lease {}/{} failed: {e}",
            self.cell.namespace(),
            self.cell.name()
        ))
    }

    async fn attempt(&self, claim: &Claim, view: &dyn ClusterView) -> Reserved {
        let annotations = BTreeMap::from([
            (OBJECT_ANNOTATION.to_string(), claim.object.clone()),
            (
                INSTALLATION_ANNOTATION.to_string(),
                claim.installation.to_string(),
            ),
        ]);
        for _ in 0..ATTEMPTS {
            let current = match self.cell.get().await {
                Ok(current) => current,
                Err(e) => return self.trouble("reading", &e),
            };
            let now = SystemTime::now();
            let spec = lease::held_spec(&claim.installation.key_text(), now, claim.ttl);
            let written = match current {
                None if claim.dry_run => return Reserved::Granted,
                None => self.cell.create(spec, annotations.clone()).await,
                Some(current) => {
                    let held = held(&current);
                    let (blocks, why) = held.as_ref().map_or((false, "no holder"), |held| {
                        why_holder_blocks(held, claim, view, now)
                    });
                    tracing::debug!(
                        claim = %claim.installation.key_text(),
                        why,
                        dry_run = claim.dry_run,
                        holder = lease::holder(&current).unwrap_or(""),
                        resource_version = current.metadata.resource_version.as_deref().unwrap_or(""),
                        blocks,
                        "reservation read"
                    );
                    if let Some(held) = held
                        && blocks
                    {
                        return Reserved::Refused(held);
                    }
                    if claim.dry_run {
                        return Reserved::Granted;
                    }
                    self.cell.replace(&current, spec, annotations.clone()).await
                }
            };
            tracing::debug!(
                claim = %claim.installation.key_text(),
                written = match &written {
                    Ok(Written::Done(lease)) => lease.metadata.resource_version.as_deref().unwrap_or("?"),
                    Ok(Written::Lost) => "lost",
                    Err(_) => "error",
                },
                "reservation write"
            );
            match written {
                Ok(Written::Done(_)) => return Reserved::Granted,
                // Another replica wrote first: read what it wrote and judge again.
                Ok(Written::Lost) => continue,
                Err(e) => return self.trouble("writing", &e),
            }
        }
        Reserved::Unknown(format!(
            "Lease {}/{} changed under each of {ATTEMPTS} attempts",
            self.cell.namespace(),
            self.cell.name()
        ))
    }
}

/// The reservation a Lease holds; `None` for one that names no installation fluxgate can
/// read (it is taken over).
fn held(lease: &Lease) -> Option<Held> {
    let installation = InstallationId::from_key_text(lease::holder(lease)?)?;
    let annotations = lease.metadata.annotations.as_ref();
    Some(Held {
        installation,
        object: annotations
            .and_then(|a| a.get(OBJECT_ANNOTATION))
            .cloned()
            .unwrap_or_else(|| "another object".to_string()),
        renewed: lease::renewed_at(lease).unwrap_or(SystemTime::UNIX_EPOCH),
        ttl: lease::duration(lease),
    })
}

impl Reservations for LeaseReservations {
    fn reserve<'a>(&'a self, claim: &'a Claim, view: &'a dyn ClusterView) -> ReserveFuture<'a> {
        Box::pin(async move {
            match tokio::time::timeout(RESERVE_DEADLINE, self.attempt(claim, view)).await {
                Ok(reserved) => reserved,
                Err(_) => Reserved::Unknown(format!(
                    "the API server did not answer within {RESERVE_DEADLINE:?} (Lease {}/{})",
                    self.cell.namespace(),
                    self.cell.name()
                )),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::MemoryView;
    use crate::gitlab::agent::{AgentFacts, AgentKind};

    fn id(name: &str) -> InstallationId {
        InstallationId::of_top(&AgentFacts {
            kind: AgentKind::Deployment,
            namespace: "agents".into(),
            name: name.into(),
            uid: None,
            owner: None,
            release_claim: None,
            chart_label: false,
            installs: None,
            undecided: false,
            token_secret: None,
            service_account: None,
        })
    }

    fn claim(name: &str, dry_run: bool) -> Claim {
        Claim {
            installation: id(name),
            object: format!("Deployment agents/{name}"),
            ttl: Duration::from_secs(30),
            dry_run,
            allow_when_unknown: false,
            refused_text: |_, _, _| String::new(),
            unknown_text: |_, _| String::new(),
        }
    }

    #[test]
    fn one_process_grants_one_installation_at_a_time() {
        let view = MemoryView::new();
        let local = LocalReservations::default();
        assert_eq!(
            local.reserve_now(&claim("a", true), &view),
            Reserved::Granted
        );
        assert_eq!(
            local.reserve_now(&claim("b", false), &view),
            Reserved::Granted
        );
        assert!(
            matches!(local.reserve_now(&claim("a", false), &view), Reserved::Refused(h) if h.installation == id("b"))
        );
        assert!(matches!(
            local.reserve_now(&claim("a", true), &view),
            Reserved::Refused(_)
        ));
        // The holder itself may retry.
        assert_eq!(
            local.reserve_now(&claim("b", false), &view),
            Reserved::Granted
        );
    }

    /// A view the holder's installation reaches *during* the first of the two questions
    /// [`holder_blocks`] asks it (answered from before), as a watch event may land between
    /// two reads of the index.
    struct ArrivesMidway {
        view: MemoryView,
        object: std::sync::Mutex<Option<serde_json::Value>>,
    }

    impl ArrivesMidway {
        fn arrive(&self) {
            if let Some(object) = self.object.lock().expect("lock").take() {
                self.view.apply(&object).expect("applies");
            }
        }
    }

    impl ClusterView for ArrivesMidway {
        fn synced(&self) -> bool {
            self.view.synced()
        }
        fn namespace_labels(
            &self,
            namespace: &str,
        ) -> super::super::Lookup<BTreeMap<String, String>> {
            self.view.namespace_labels(namespace)
        }
        fn helm_repository(
            &self,
            namespace: &str,
            name: &str,
        ) -> super::super::Lookup<super::super::HelmRepositoryFacts> {
            self.view.helm_repository(namespace, name)
        }
        fn agent_installations(
            &self,
        ) -> super::super::Lookup<Vec<super::super::AgentInstallation>> {
            let answer = self.view.agent_installations();
            self.arrive();
            answer
        }
        fn agent_installation_applied_since(&self, id: &InstallationId, since: Instant) -> bool {
            let answer = self.view.agent_installation_applied_since(id, since);
            self.arrive();
            answer
        }
        fn role(
            &self,
            namespace: &str,
            name: &str,
        ) -> super::super::Lookup<std::sync::Arc<crate::rbac::objects::RoleFacts>> {
            self.view.role(namespace, name)
        }
        fn cluster_role(
            &self,
            name: &str,
        ) -> super::super::Lookup<std::sync::Arc<crate::rbac::objects::RoleFacts>> {
            self.view.cluster_role(name)
        }
        fn cluster_roles_matching(
            &self,
            selector: &crate::selector::LabelSelector,
        ) -> super::super::Lookup<crate::rbac::objects::NamedRoles> {
            self.view.cluster_roles_matching(selector)
        }
        fn cluster_roles_aggregating(
            &self,
            labels: &BTreeMap<String, String>,
        ) -> super::super::Lookup<crate::rbac::objects::NamedRoles> {
            self.view.cluster_roles_aggregating(labels)
        }
        fn bindings_to(
            &self,
            role: &crate::rbac::objects::RoleKey,
        ) -> super::super::Lookup<Vec<std::sync::Arc<crate::rbac::objects::BindingFacts>>> {
            self.view.bindings_to(role)
        }
        fn other_gitlab_identity_in(
            &self,
            namespace: &str,
            except_identity: &str,
            except_binding: &str,
        ) -> super::super::Lookup<Option<(String, String)>> {
            self.view
                .other_gitlab_identity_in(namespace, except_identity, except_binding)
        }
        fn bindings_naming(
            &self,
            kind: &str,
            name: &str,
            namespace: Option<&str>,
        ) -> super::super::Lookup<Vec<std::sync::Arc<crate::rbac::objects::BindingFacts>>> {
            self.view.bindings_naming(kind, name, namespace)
        }
        fn secret(
            &self,
            namespace: &str,
            name: &str,
        ) -> super::super::Lookup<super::super::SecretFacts> {
            self.view.secret(namespace, name)
        }
        fn flux_secret_references(
            &self,
        ) -> super::super::Lookup<Vec<super::super::FluxSecretReference>> {
            self.view.flux_secret_references()
        }
        fn reconfigure(&self, agents: &crate::gitlab::agent::AgentDetector) {
            self.view.reconfigure(agents)
        }
    }

    #[test]
    fn an_installation_arriving_while_the_reservation_is_judged_blocks() {
        // Found by the two-replica envtest under load: replica B lost the Lease to A, read
        // A's reservation, and A's Deployment reached B's view between B's two questions.
        let view = ArrivesMidway {
            view: MemoryView::new(),
            object: std::sync::Mutex::new(Some(serde_json::json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "a", "namespace": "agents", "uid": "u-a"},
                "spec": {"template": {"spec": {"containers": [{"name": "agentk",
                    "image": "registry.gitlab.com/gitlab-org/cluster-integration/gitlab-agent/agentk:v17.3.1"}]}}}
            }))),
        };
        let now = SystemTime::now();
        let held = Held {
            installation: id("a"),
            object: "Deployment agents/a".into(),
            renewed: now - Duration::from_millis(10),
            ttl: Duration::from_secs(30),
        };
        assert!(holder_blocks(&held, &claim("b", false), &view, now));
        // And once it is there, it blocks for as long as it runs.
        assert!(holder_blocks(
            &held,
            &claim("b", false),
            &view,
            SystemTime::now()
        ));
    }

    #[test]
    fn a_reservation_blocks_until_its_time_is_up_or_its_installation_came() {
        let view = MemoryView::new();
        let now = SystemTime::now();
        let held = Held {
            installation: id("a"),
            object: "Deployment agents/a".into(),
            renewed: now,
            ttl: Duration::from_secs(30),
        };
        assert!(holder_blocks(&held, &claim("b", false), &view, now));
        assert!(!holder_blocks(&held, &claim("a", false), &view, now));
        assert!(!holder_blocks(
            &held,
            &claim("b", false),
            &view,
            now + Duration::from_secs(30)
        ));
        // Its installation reached the view (and left it again): done.
        view.apply(&serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "a", "namespace": "agents", "uid": "u-a"},
            "spec": {"template": {"spec": {"containers": [{"name": "agentk",
                "image": "registry.gitlab.com/gitlab-org/cluster-integration/gitlab-agent/agentk:v17.3.1"}]}}}
        }))
        .expect("applies");
        // While it runs, it blocks whatever its age.
        assert!(holder_blocks(
            &held,
            &claim("b", false),
            &view,
            now + Duration::from_secs(3600)
        ));
        view.delete(&crate::cluster::ObjectKey {
            group: "apps".into(),
            kind: "Deployment".into(),
            namespace: Some("agents".into()),
            name: "a".into(),
        });
        let earlier = Held {
            renewed: now - Duration::from_secs(1),
            ..held
        };
        assert!(!holder_blocks(
            &earlier,
            &claim("b", false),
            &view,
            SystemTime::now()
        ));
    }
}
