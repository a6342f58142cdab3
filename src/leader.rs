//! Leader election over a `coordination.k8s.io/v1` Lease. Controllers that act on the cluster
//! (the health monitor) run only while this replica holds the lease; the extender and webhooks
//! run everywhere.
//!
//! Written here rather than taken from a crate. kube-lease-manager 0.13 (the first release for
//! kube 5) never steps down on its own: when renewals fail (API server unreachable, a partition)
//! its leader flag stays `true` past the lease's expiry, while another replica may take the
//! lease; two replicas would then both delete pods. client-go's renew deadline, kept here, makes
//! a leader that cannot renew stop acting before its lease can expire.
//!
//! The protocol is client-go's: get the Lease, take it if free or expired, renew it if ours, and
//! write it back with `replace`, whose `resourceVersion` makes the write fail with 409 if anyone
//! else wrote in between (optimistic concurrency: two replicas never both win).

use std::time::{Duration, Instant};

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::{SignedDuration, Timestamp},
};
use kube::{Api, Client, api::PostParams};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Errors talking to the API server about the Lease.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Lease request failed.
    #[error("lease request failed")]
    Kube(#[from] kube::Error),
    /// A Lease request took longer than the retry period.
    #[error("lease request timed out")]
    Timeout,
}

/// Timings of the election (client-go names).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Lease object name, in `namespace`.
    pub name: String,
    /// Namespace of the Lease.
    pub namespace: String,
    /// This replica's identity (`POD_NAME`, else hostname and pid).
    pub identity: String,
    /// How long others wait after the last renewal before taking the lease.
    pub lease_duration: Duration,
    /// The leader steps down if it could not renew for this long.
    pub renew_deadline: Duration,
    /// Interval between attempts to take or renew.
    pub retry_period: Duration,
}

/// This replica's identity: `POD_NAME`, else `<hostname>-<pid>`.
pub fn default_identity() -> String {
    if let Ok(name) = std::env::var("POD_NAME")
        && !name.is_empty()
    {
        return name;
    }
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_string()))
        .unwrap_or_else(|| "stork".into());
    format!("{host}-{}", std::process::id())
}

/// What a replica may do with the lease it just read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// We hold it: renew.
    Renew,
    /// Free or expired: take it (a new term).
    Take,
    /// Someone else holds a live lease.
    Wait,
}

/// Decides, from a Lease's spec read at `now`, whether `me` may renew or take it.
pub fn verdict(spec: Option<&LeaseSpec>, me: &str, now: Timestamp) -> Verdict {
    let Some(spec) = spec else { return Verdict::Take };
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder.is_empty() {
        return Verdict::Take;
    }
    if holder == me {
        return Verdict::Renew;
    }
    let (Some(renewed), Some(secs)) = (spec.renew_time.as_ref(), spec.lease_duration_seconds) else {
        // A holder without a renew time or duration cannot expire by the protocol; treat it as
        // expired rather than be locked out forever by a malformed object.
        return Verdict::Take;
    };
    if renewed.0 + SignedDuration::from_secs(i64::from(secs)) < now { Verdict::Take } else { Verdict::Wait }
}

/// The lease spec after `me` renews or takes it at `now`.
fn claimed(old: Option<&LeaseSpec>, me: &str, now: Timestamp, duration: Duration, take: bool) -> LeaseSpec {
    let mut spec = old.cloned().unwrap_or_default();
    if take {
        spec.acquire_time = Some(MicroTime(now));
        let had_holder = spec.holder_identity.as_deref().is_some_and(|h| !h.is_empty());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + i32::from(had_holder));
    }
    spec.holder_identity = Some(me.to_string());
    spec.renew_time = Some(MicroTime(now));
    spec.lease_duration_seconds = Some(i32::try_from(duration.as_secs()).unwrap_or(i32::MAX).max(1));
    spec
}

/// Runs the election until `cancel`; `tx` carries "is leader". Releases the lease on shutdown.
pub async fn run(client: Client, settings: Settings, tx: watch::Sender<bool>, cancel: CancellationToken) {
    let api: Api<Lease> = Api::namespaced(client, &settings.namespace);
    let mut last_renewal: Option<Instant> = None;
    loop {
        let started = Instant::now();
        let attempt =
            tokio::time::timeout(settings.retry_period.max(Duration::from_secs(1)), try_acquire(&api, &settings));
        let leading = *tx.borrow();
        match attempt.await.unwrap_or(Err(Error::Timeout)) {
            Ok(true) => {
                last_renewal = Some(started);
                if !leading {
                    tracing::info!(identity = %settings.identity, lease = %settings.name, "became leader");
                    tx.send_replace(true);
                }
            }
            Ok(false) => {
                last_renewal = None;
                if leading {
                    tracing::warn!(identity = %settings.identity, "lost the lease to another holder");
                    tx.send_replace(false);
                }
            }
            Err(e) => {
                let overdue = last_renewal.is_none_or(|t| t.elapsed() >= settings.renew_deadline);
                if leading && overdue {
                    tracing::warn!(error = %e, "could not renew the lease within the renew deadline; stepping down");
                    tx.send_replace(false);
                } else {
                    tracing::debug!(error = %e, "lease attempt failed");
                }
            }
        }
        // Step down the moment the renew deadline passes, even while a request hangs.
        let deadline = last_renewal.map(|t| t + settings.renew_deadline);
        let sleep = tokio::time::sleep(settings.retry_period);
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = sleep => {}
        }
        if *tx.borrow() && deadline.is_some_and(|d| Instant::now() >= d) {
            tracing::warn!("renew deadline passed; stepping down");
            tx.send_replace(false);
        }
    }
    if *tx.borrow() {
        tx.send_replace(false);
        release(&api, &settings).await;
    }
}

/// One attempt: true if we hold the lease afterwards.
async fn try_acquire(api: &Api<Lease>, s: &Settings) -> Result<bool, Error> {
    let now = Timestamp::now();
    match api.get_opt(&s.name).await? {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(s.name.clone()),
                    namespace: Some(s.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(claimed(None, &s.identity, now, s.lease_duration, true)),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e.into()),
            }
        }
        Some(mut lease) => {
            let take = match verdict(lease.spec.as_ref(), &s.identity, now) {
                Verdict::Wait => return Ok(false),
                Verdict::Take => true,
                Verdict::Renew => false,
            };
            lease.spec = Some(claimed(lease.spec.as_ref(), &s.identity, now, s.lease_duration, take));
            // `lease` still carries the resourceVersion we read: a concurrent writer makes this 409.
            match api.replace(&s.name, &PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e.into()),
            }
        }
    }
}

/// Hands the lease back on a clean shutdown so the next leader need not wait for expiry.
async fn release(api: &Api<Lease>, s: &Settings) {
    let result = async {
        let mut lease = api.get(&s.name).await?;
        if let Some(spec) = lease.spec.as_mut()
            && spec.holder_identity.as_deref() == Some(s.identity.as_str())
        {
            spec.holder_identity = None;
            api.replace(&s.name, &PostParams::default(), &lease).await?;
        }
        Ok::<_, kube::Error>(())
    };
    match tokio::time::timeout(Duration::from_secs(2), result).await {
        Ok(Ok(())) => tracing::info!("released the lease"),
        Ok(Err(e)) => tracing::warn!(error = %e, "failed to release the lease"),
        Err(_) => tracing::warn!("timed out releasing the lease"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(by: &str, renewed: Timestamp, secs: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(by.into()),
            renew_time: Some(MicroTime(renewed)),
            lease_duration_seconds: Some(secs),
            ..LeaseSpec::default()
        }
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    #[test]
    fn a_missing_or_unheld_lease_may_be_taken() {
        assert_eq!(verdict(None, "a", at(0)), Verdict::Take);
        let mut spec = held("", at(0), 15);
        assert_eq!(verdict(Some(&spec), "a", at(0)), Verdict::Take);
        spec.holder_identity = None;
        assert_eq!(verdict(Some(&spec), "a", at(0)), Verdict::Take);
    }

    #[test]
    fn our_own_lease_is_renewed_even_when_expired() {
        assert_eq!(verdict(Some(&held("a", at(0), 15)), "a", at(100)), Verdict::Renew);
    }

    #[test]
    fn another_holders_lease_is_respected_until_it_expires() {
        let spec = held("b", at(0), 15);
        assert_eq!(verdict(Some(&spec), "a", at(10)), Verdict::Wait);
        assert_eq!(verdict(Some(&spec), "a", at(15)), Verdict::Wait);
        assert_eq!(verdict(Some(&spec), "a", at(16)), Verdict::Take);
    }

    #[test]
    fn taking_a_held_lease_counts_a_transition_and_renewing_does_not() {
        let old = held("b", at(0), 15);
        let taken = claimed(Some(&old), "a", at(20), Duration::from_secs(15), true);
        assert_eq!(taken.holder_identity.as_deref(), Some("a"));
        assert_eq!(taken.lease_transitions, Some(1));
        assert_eq!(taken.acquire_time, Some(MicroTime(at(20))));
        let renewed = claimed(Some(&taken), "a", at(30), Duration::from_secs(15), false);
        assert_eq!(renewed.lease_transitions, Some(1));
        assert_eq!(renewed.acquire_time, Some(MicroTime(at(20))));
        assert_eq!(renewed.renew_time, Some(MicroTime(at(30))));
        let fresh = claimed(None, "a", at(0), Duration::from_secs(15), true);
        assert_eq!(fresh.lease_transitions, Some(0));
    }
}
