//! Helpers shared by the workload controllers (ReplicaSet, Deployment): the error type, controller
//! owner references and adoption, label selectors, pod readiness and deletion ranking, resource
//! quantities, and core/v1 events. Pure functions over k8s-openapi types; only `events` and
//! `owners` talk to the API server.

pub(crate) mod cron;
pub(crate) mod events;
pub(crate) mod history;
pub(crate) mod owners;
pub(crate) mod pods;
pub(crate) mod quantity;
pub(crate) mod rollout;
pub(crate) mod scheduling;
pub(crate) mod selector;
pub(crate) mod shared;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// Drops `metadata.managedFields` from an object before a controller caches it, as
/// kube-controller-manager's informers do: no controller reads them, and their field trees are a
/// large part of a cached pod's memory.
pub(crate) fn strip_managed_fields<K: kube::Resource>(object: &mut K) {
    object.meta_mut().managed_fields = None;
}

/// Why a workload reconcile failed; the controller requeues the object with backoff.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("api request failed: {0}")]
    Api(#[from] kube::Error),
    #[error("{kind} {namespace}/{name} has no {field}")]
    MissingField {
        kind: &'static str,
        namespace: String,
        name: String,
        field: &'static str,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("{count} of {total} operations failed, first: {first}")]
    Partial {
        count: usize,
        total: usize,
        first: Box<Error>,
    },
}

/// The current time, truncated to whole seconds as Kubernetes serialises `metav1.Time`.
pub(crate) fn now() -> Time {
    let now = Timestamp::now();
    Time(Timestamp::from_second(now.as_second()).unwrap_or(now))
}

/// True when the API error is a 404.
pub(crate) fn is_not_found(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == 404)
}

/// True when the API error is a 409 AlreadyExists / Conflict.
pub(crate) fn is_conflict(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == 409)
}
