//! Leader election with a `coordination.k8s.io/v1` Lease, so that of several
//! replicas exactly one reconciles.
//!
//! The algorithm is client-go's: every retry period each replica reads the
//! Lease; the holder writes a new `renewTime`; a replica that has seen the
//! same record unchanged for a whole `leaseDurationSeconds` (by its own
//! clock, so clock skew between nodes does not matter) takes the Lease over.
//! Writes carry the `resourceVersion` that was read, so of two replicas
//! racing for the Lease the API server lets one win (the other gets 409).
//! A leader that cannot renew within the renew deadline stops reconciling;
//! on shutdown it releases the Lease so another replica takes over at once.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use tokio::sync::watch;

use crate::kube::metrics::Metrics;

/// Settings of the election.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// Name of the Lease object.
    pub name: String,
    /// This replica's name in `holderIdentity` (the pod's name).
    pub identity: String,
    /// How long a Lease stays valid without renewal. Default: 15 s.
    pub lease_duration: Duration,
    /// A leader that could not renew for this long stops reconciling. Default: 10 s.
    pub renew_deadline: Duration,
    /// Time between two attempts to acquire or renew. Default: 2 s.
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// client-go's defaults (15 s / 10 s / 2 s), scaled from the lease duration.
    pub fn new(
        name: impl Into<String>,
        identity: impl Into<String>,
        lease_duration: Duration,
    ) -> Self {
        LeaseConfig {
            name: name.into(),
            identity: identity.into(),
            lease_duration,
            renew_deadline: lease_duration * 2 / 3,
            retry_period: lease_duration * 2 / 15,
        }
    }
}

/// What to do after reading the Lease.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// No Lease exists: create it, held by us.
    Create(Lease),
    /// We hold it: write a new renewTime.
    Renew(Lease),
    /// Its holder let it expire (or released it): take it.
    TakeOver(Lease),
    /// Someone else holds a live Lease.
    Follow {
        /// Its holder.
        holder: String,
    },
}

/// This replica's role after one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// It holds the Lease and may reconcile.
    Leader,
    /// Another replica holds it.
    Follower {
        /// Who, when known.
        holder: Option<String>,
    },
}

/// Decides from the Lease as read (`current`), the time this replica first saw
/// that exact record (`observed_since`), and now.
pub fn decide(
    current: Option<&Lease>,
    config: &LeaseConfig,
    observed_since: Timestamp,
    now: Timestamp,
) -> Decision {
    let seconds = i32::try_from(config.lease_duration.as_secs()).unwrap_or(i32::MAX);
    let Some(lease) = current else {
        return Decision::Create(Lease {
            metadata: ObjectMeta {
                name: Some(config.name.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(config.identity.clone()),
                lease_duration_seconds: Some(seconds),
                acquire_time: Some(MicroTime(now)),
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        });
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
    let mut next = lease.clone();
    if holder.as_deref() == Some(config.identity.as_str()) {
        next.spec = Some(LeaseSpec {
            renew_time: Some(MicroTime(now)),
            lease_duration_seconds: Some(seconds),
            ..spec
        });
        return Decision::Renew(next);
    }
    let their_duration = spec
        .lease_duration_seconds
        .map_or(config.lease_duration.as_secs() as i64, i64::from);
    let expires = observed_since
        .checked_add(SignedDuration::from_secs(their_duration))
        .unwrap_or(Timestamp::MAX);
    match holder {
        Some(holder) if now < expires => Decision::Follow { holder },
        _ => {
            next.spec = Some(LeaseSpec {
                holder_identity: Some(config.identity.clone()),
                lease_duration_seconds: Some(seconds),
                acquire_time: Some(MicroTime(now)),
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(spec.lease_transitions.unwrap_or(0) + 1),
                ..spec
            });
            Decision::TakeOver(next)
        }
    }
}

/// The record a replica watches for change: holder and renew time.
#[derive(Debug, Clone, PartialEq)]
struct Observed {
    holder: Option<String>,
    renew_time: Option<MicroTime>,
    since: Timestamp,
}

/// One replica's side of the election.
#[derive(Debug)]
pub struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
    /// The record last read and when it was first seen, to time expiry by our own clock.
    observed: Option<Observed>,
}

impl Elector {
    /// An elector for the Lease `config.name` in the namespace of `api`.
    pub fn new(api: Api<Lease>, config: LeaseConfig) -> Self {
        Elector {
            api,
            config,
            observed: None,
        }
    }

    /// The election's settings.
    pub fn config(&self) -> &LeaseConfig {
        &self.config
    }

    /// Reads the Lease and acquires, renews or follows.
    pub async fn step(&mut self, now: Timestamp) -> Result<Role, kube::Error> {
        let current = self.api.get_opt(&self.config.name).await?;
        let since = self.observe(current.as_ref(), now);
        match decide(current.as_ref(), &self.config, since, now) {
            Decision::Follow { holder } => Ok(Role::Follower {
                holder: Some(holder),
            }),
            Decision::Create(lease) => {
                match self.api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(Role::Leader),
                    // Another replica created it between our read and our write.
                    Err(err) if status_code(&err) == Some(409) => {
                        Ok(Role::Follower { holder: None })
                    }
                    Err(err) => Err(err),
                }
            }
            Decision::Renew(lease) | Decision::TakeOver(lease) => {
                match self
                    .api
                    .replace(&self.config.name, &PostParams::default(), &lease)
                    .await
                {
                    Ok(_) => Ok(Role::Leader),
                    // The Lease changed since we read it: someone else won.
                    Err(err) if status_code(&err) == Some(409) => {
                        Ok(Role::Follower { holder: None })
                    }
                    Err(err) => Err(err),
                }
            }
        }
    }

    /// Gives the Lease up if we hold it, so another replica need not wait for it to expire.
    pub async fn release(&mut self, now: Timestamp) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            return Ok(());
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(now));
        lease.spec = Some(spec);
        self.api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
            .map(|_| ())
    }

    /// Remembers the record read; returns when it was first seen unchanged.
    fn observe(&mut self, current: Option<&Lease>, now: Timestamp) -> Timestamp {
        let spec = current.and_then(|l| l.spec.as_ref());
        let holder = spec.and_then(|s| s.holder_identity.clone());
        let renew_time = spec.and_then(|s| s.renew_time.clone());
        match &self.observed {
            Some(seen) if seen.holder == holder && seen.renew_time == renew_time => seen.since,
            _ => {
                self.observed = Some(Observed {
                    holder,
                    renew_time,
                    since: now,
                });
                now
            }
        }
    }
}

fn status_code(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// Runs the election until `shutdown` turns true, publishing on `leading`
/// whether this replica may reconcile; releases the Lease on the way out.
pub async fn run(
    mut elector: Elector,
    leading: watch::Sender<bool>,
    mut shutdown: watch::Receiver<bool>,
    metrics: std::sync::Arc<Metrics>,
) {
    let mut last_renewal: Option<tokio::time::Instant> = None;
    let set = |lead: bool| {
        metrics.set_leader(lead);
        leading.send_if_modified(|current| {
            let changed = *current != lead;
            *current = lead;
            changed
        });
    };
    loop {
        match elector.step(Timestamp::now()).await {
            Ok(Role::Leader) => {
                if last_renewal.is_none() {
                    tracing::info!(lease = %elector.config.name, identity = %elector.config.identity, "acquired the leader Lease; reconciling");
                }
                last_renewal = Some(tokio::time::Instant::now());
                set(true);
            }
            Ok(Role::Follower { holder }) => {
                if last_renewal.take().is_some() {
                    tracing::warn!(holder = ?holder, "lost the leader Lease; stopping reconciles");
                } else if !*leading.borrow() {
                    tracing::debug!(holder = ?holder, "another replica leads");
                }
                set(false);
            }
            Err(err) => {
                tracing::warn!(error = %err, lease = %elector.config.name, "cannot read or write the leader Lease; check the Role allowing get, create and update on leases");
                let expired =
                    last_renewal.is_some_and(|at| at.elapsed() > elector.config.renew_deadline);
                if expired {
                    tracing::warn!("could not renew the leader Lease within the renew deadline; stopping reconciles");
                    last_renewal = None;
                    set(false);
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(elector.config.retry_period) => {}
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
    }
    let held = last_renewal.is_some();
    set(false);
    if held {
        match elector.release(Timestamp::now()).await {
            Ok(()) => tracing::info!("released the leader Lease"),
            Err(err) => {
                tracing::warn!(error = %err, "cannot release the leader Lease; another replica takes over when it expires")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> LeaseConfig {
        LeaseConfig::new("dynoscope-operator", "pod-a", Duration::from_secs(15))
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).unwrap()
    }

    fn lease(holder: Option<&str>, renewed: i64, transitions: i32) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some("dynoscope-operator".into()),
                resource_version: Some("7".into()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_owned),
                lease_duration_seconds: Some(15),
                acquire_time: Some(MicroTime(at(0))),
                renew_time: Some(MicroTime(at(renewed))),
                lease_transitions: Some(transitions),
                ..LeaseSpec::default()
            }),
        }
    }

    fn spec(decision: &Decision) -> LeaseSpec {
        match decision {
            Decision::Create(l) | Decision::Renew(l) | Decision::TakeOver(l) => {
                l.spec.clone().unwrap()
            }
            Decision::Follow { .. } => panic!("no write for {decision:?}"),
        }
    }

    #[test]
    fn decisions() {
        let config = config();
        // (lease read, first seen at, now, expected kind, holder after, transitions after)
        let other = lease(Some("pod-b"), 0, 3);
        let ours = lease(Some("pod-a"), 0, 3);
        let released = lease(None, 0, 3);
        let cases: [(&str, Option<&Lease>, i64, i64, &str); 6] = [
            ("no lease", None, 0, 0, "create"),
            ("ours", Some(&ours), 0, 5, "renew"),
            ("theirs, fresh", Some(&other), 0, 14, "follow"),
            (
                "theirs, seen unchanged for a whole duration",
                Some(&other),
                0,
                15,
                "take",
            ),
            (
                "theirs, only recently seen (clock skew)",
                Some(&other),
                10,
                20,
                "follow",
            ),
            ("released", Some(&released), 0, 0, "take"),
        ];
        for (name, current, since, now, want) in cases {
            let got = decide(current, &config, at(since), at(now));
            let kind = match &got {
                Decision::Create(_) => "create",
                Decision::Renew(_) => "renew",
                Decision::TakeOver(_) => "take",
                Decision::Follow { .. } => "follow",
            };
            assert_eq!(kind, want, "{name}: {got:?}");
            if kind == "follow" {
                continue;
            }
            let spec = spec(&got);
            assert_eq!(spec.holder_identity.as_deref(), Some("pod-a"), "{name}");
            assert_eq!(spec.renew_time, Some(MicroTime(at(now))), "{name}");
            assert_eq!(spec.lease_duration_seconds, Some(15), "{name}");
            let transitions = match kind {
                "create" => 0,
                "renew" => 3,
                _ => 4,
            };
            assert_eq!(spec.lease_transitions, Some(transitions), "{name}");
            if kind != "create" {
                // The write is conditional on what was read.
                let (Decision::Renew(l) | Decision::TakeOver(l)) = &got else {
                    unreachable!()
                };
                assert_eq!(l.metadata.resource_version.as_deref(), Some("7"), "{name}");
            }
        }
    }

    #[test]
    fn defaults_follow_client_go() {
        let config = config();
        assert_eq!(config.renew_deadline, Duration::from_secs(10));
        assert_eq!(config.retry_period, Duration::from_secs(2));
    }
}
