//! A `coordination.k8s.io/v1` Lease used as a compare-and-swap cell in etcd: read it, create
//! it (etcd's atomic create: of two writers, one gets 409 AlreadyExists), or replace it with
//! the `resourceVersion` it was read at as a precondition (of two writers, one gets 409
//! Conflict). Whoever holds a Lease, and for how long, is in its spec: `holderIdentity`,
//! `renewTime` (or `acquireTime`) and `leaseDurationSeconds`.
//!
//! This module knows nothing of what a Lease is used for; `single-agent`'s reservation
//! ([`super::reservation::LeaseReservations`]) is one user. Users pick their own Lease names.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, PostParams};

/// The answer of a write that another writer may have won.
#[derive(Debug, Clone)]
pub enum Written {
    /// Written; the Lease as stored (with its new `resourceVersion`).
    Done(Box<Lease>),
    /// Another writer was first (409: AlreadyExists on create, Conflict on replace).
    Lost,
}

/// One Lease, by namespace and name.
#[derive(Clone)]
pub struct LeaseCell {
    api: Api<Lease>,
    namespace: String,
    name: String,
}

impl std::fmt::Debug for LeaseCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Lease {}/{}", self.namespace, self.name)
    }
}

fn lost(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(status) if status.code == 409)
}

impl LeaseCell {
    pub fn new(client: Client, namespace: &str, name: &str) -> Self {
        LeaseCell {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The Lease, if it exists.
    pub async fn get(&self) -> Result<Option<Lease>, kube::Error> {
        self.api.get_opt(&self.name).await
    }

    /// Creates the Lease; [`Written::Lost`] when it exists already.
    pub async fn create(
        &self,
        spec: LeaseSpec,
        annotations: BTreeMap<String, String>,
    ) -> Result<Written, kube::Error> {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                annotations: (!annotations.is_empty()).then_some(annotations),
                ..ObjectMeta::default()
            },
            spec: Some(spec),
        };
        match self.api.create(&PostParams::default(), &lease).await {
            Ok(stored) => Ok(Written::Done(Box::new(stored))),
            Err(e) if lost(&e) => Ok(Written::Lost),
            Err(e) => Err(e),
        }
    }

    /// Replaces the Lease read as `current`, only if nobody wrote it since
    /// (its `resourceVersion` is the precondition); [`Written::Lost`] otherwise.
    pub async fn replace(
        &self,
        current: &Lease,
        spec: LeaseSpec,
        annotations: BTreeMap<String, String>,
    ) -> Result<Written, kube::Error> {
        let mut lease = current.clone();
        lease.spec = Some(spec);
        lease.metadata.annotations = (!annotations.is_empty()).then_some(annotations);
        // Without a resourceVersion the API server would not check; never write so.
        if lease.metadata.resource_version.is_none() {
            return Ok(Written::Lost);
        }
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(stored) => Ok(Written::Done(Box::new(stored))),
            Err(e) if lost(&e) => Ok(Written::Lost),
            Err(e) => Err(e),
        }
    }
}

/// A time for a Lease's spec.
pub fn micro_time(at: SystemTime) -> Option<MicroTime> {
    k8s_openapi::jiff::Timestamp::try_from(at)
        .ok()
        .map(MicroTime)
}

/// A Lease's time as a system time.
pub fn system_time(at: &MicroTime) -> SystemTime {
    SystemTime::from(at.0)
}

/// A spec held by `holder` from `now` for `duration` (whole seconds, at least one).
pub fn held_spec(holder: &str, now: SystemTime, duration: Duration) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(holder.to_string()),
        lease_duration_seconds: Some(i32::try_from(duration.as_secs().max(1)).unwrap_or(i32::MAX)),
        acquire_time: micro_time(now),
        renew_time: micro_time(now),
        ..LeaseSpec::default()
    }
}

/// When the Lease was last renewed (or acquired, or created).
pub fn renewed_at(lease: &Lease) -> Option<SystemTime> {
    let spec = lease.spec.as_ref();
    spec.and_then(|s| s.renew_time.as_ref())
        .or_else(|| spec.and_then(|s| s.acquire_time.as_ref()))
        .map(system_time)
        .or_else(|| {
            lease
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| SystemTime::from(t.0))
        })
}

/// How long the holder keeps the Lease after it was renewed.
pub fn duration(lease: &Lease) -> Duration {
    let seconds = lease
        .spec
        .as_ref()
        .and_then(|s| s.lease_duration_seconds)
        .unwrap_or(0);
    Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
}

/// The holder, if any.
pub fn holder(lease: &Lease) -> Option<&str> {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.as_deref())
        .filter(|h| !h.is_empty())
}

/// Whether the Lease's time is up at `now`. A Lease without a renewal time is.
pub fn expired(lease: &Lease, now: SystemTime) -> bool {
    match renewed_at(lease) {
        Some(renewed) => now
            .duration_since(renewed)
            .is_ok_and(|age| age >= duration(lease)),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_expires_after_its_duration() {
        let now = SystemTime::now();
        let lease = Lease {
            metadata: ObjectMeta::default(),
            spec: Some(held_spec("someone", now, Duration::from_secs(30))),
        };
        assert_eq!(holder(&lease), Some("someone"));
        assert!(!expired(&lease, now + Duration::from_secs(29)));
        assert!(expired(&lease, now + Duration::from_secs(30)));
        // A renewal in the future (another replica's clock ahead) is not expired.
        assert!(!expired(&lease, now - Duration::from_secs(5)));
        let empty = Lease::default();
        assert!(expired(&empty, now));
        assert_eq!(holder(&empty), None);
    }

    #[test]
    fn times_survive_the_round_trip_to_the_lease() {
        let now = SystemTime::now();
        let back = system_time(&micro_time(now).expect("a time"));
        let drift = now.duration_since(back).unwrap_or_else(|e| e.duration());
        assert!(drift < Duration::from_micros(2), "{drift:?}");
    }
}
