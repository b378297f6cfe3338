//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's leaderelection does it, so that
//! several servers can run side by side with one active scheduler and one active controller manager.
//!
//! The holder renews the Lease every [`RETRY`]; a candidate takes it over once it has not been renewed
//! for [`LEASE_DURATION`]. A leader that cannot renew within [`RENEW_DEADLINE`] stops its work before
//! anyone else may take over, so two leaders never act at once.

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::PostParams;
use tokio_util::sync::CancellationToken;

const LEASE_DURATION: Duration = Duration::from_secs(15);
const RENEW_DEADLINE: Duration = Duration::from_secs(10);
const RETRY: Duration = Duration::from_secs(2);
const NAMESPACE: &str = "kube-system";

/// Runs `work` whenever this process holds the Lease `kube-system/<name>`, until `shutdown`.
pub(crate) async fn run_elected<F, Fut>(
    client: kube::Client,
    name: &str,
    identity: String,
    shutdown: CancellationToken,
    work: F,
) where
    F: Fn(CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let leases: Api<Lease> = Api::namespaced(client, NAMESPACE);
    loop {
        // Candidate: try until acquired.
        loop {
            // Another holder: wait a retry period. An error (at start-up the API server may still be
            // creating kube-system): retry soon, a Ready node waits on the controllers.
            let wait = match try_acquire_or_renew(&leases, name, &identity).await {
                Ok(true) => break,
                Ok(false) => RETRY,
                Err(e) => {
                    tracing::debug!(lease = name, error = %e, "leader election attempt failed");
                    Duration::from_millis(100)
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = shutdown.cancelled() => return,
            }
        }
        tracing::info!(lease = name, identity, "became leader");
        let stop = shutdown.child_token();
        let task = tokio::spawn(work(stop.clone()));
        // Leader: renew until it fails for longer than the renew deadline.
        let mut last_renewal = Instant::now();
        loop {
            tokio::select! {
                () = tokio::time::sleep(RETRY) => {}
                () = shutdown.cancelled() => {
                    stop.cancel();
                    let _ = task.await;
                    release(&leases, name, &identity).await;
                    return;
                }
            }
            match try_acquire_or_renew(&leases, name, &identity).await {
                Ok(true) => last_renewal = Instant::now(),
                Ok(false) => {
                    tracing::warn!(lease = name, "lost the lease to another holder");
                    break;
                }
                Err(e) if last_renewal.elapsed() < RENEW_DEADLINE => {
                    tracing::debug!(lease = name, error = %e, "lease renewal failed; retrying");
                }
                Err(e) => {
                    tracing::warn!(lease = name, error = %e, "could not renew the lease in time");
                    break;
                }
            }
        }
        stop.cancel();
        let _ = task.await;
        tracing::info!(lease = name, "stopped leading");
    }
}

fn now() -> MicroTime {
    MicroTime(jiff::Timestamp::now())
}

/// Takes or renews the Lease; `Ok(false)` when another holder's Lease is still valid.
async fn try_acquire_or_renew(
    leases: &Api<Lease>,
    name: &str,
    identity: &str,
) -> Result<bool, kube::Error> {
    let existing = leases.get_opt(name).await?;
    let Some(mut lease) = existing else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(NAMESPACE.to_owned()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(identity.to_owned()),
                lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
                acquire_time: Some(now()),
                renew_time: Some(now()),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        return match leases.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(15).max(1) as u64);
    let renewed = spec.renew_time.as_ref().map(|t| t.0).unwrap_or_default();
    let expired =
        jiff::Timestamp::now().duration_since(renewed).as_secs_f64() > duration.as_secs_f64();
    if holder != identity && !holder.is_empty() && !expired {
        return Ok(false);
    }
    if holder != identity {
        spec.acquire_time = Some(now());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    spec.holder_identity = Some(identity.to_owned());
    spec.lease_duration_seconds = Some(LEASE_DURATION.as_secs() as i32);
    spec.renew_time = Some(now());
    // The replace carries the resourceVersion read above: a concurrent candidate gets a 409.
    match leases.replace(name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Gives the Lease up on shutdown so that another server takes over at once.
async fn release(leases: &Api<Lease>, name: &str, identity: &str) {
    let Ok(Some(mut lease)) = leases.get_opt(name).await else {
        return;
    };
    let Some(spec) = lease.spec.as_mut() else {
        return;
    };
    if spec.holder_identity.as_deref() != Some(identity) {
        return;
    }
    spec.holder_identity = None;
    spec.renew_time = None;
    let _ = leases.replace(name, &PostParams::default(), &lease).await;
}
