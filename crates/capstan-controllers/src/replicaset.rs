//! The ReplicaSet controller (Kubernetes' `pkg/controller/replicaset`), level-triggered: for each
//! ReplicaSet it lists the namespace's pods, claims the active ones its selector matches (adopting
//! orphans, releasing owned pods that stopped matching), creates missing pods from the template in
//! slow-start batches, deletes the cheapest surplus pods first, and writes `status` through the
//! status subresource.
//!
//! Pods are listed from the API server on every sync instead of an informer cache: Capstan's LIST
//! is a consistent read from the watch cache, so a sync always sees the pods the previous one
//! created and Kubernetes' "expectations" bookkeeping is not needed. Pod events requeue the owning
//! ReplicaSet (or, for an orphan, every ReplicaSet whose selector matches it).
//!
//! Knows nothing of Deployments: the Deployment controller only changes `spec.replicas`.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::join_all;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::Context;
use crate::util::events::{EventType, Recorder};
use crate::util::owners::{self, Claim};
use crate::util::{Error, is_conflict, is_not_found, pods, selector};

/// The controller's name in events (`source.component`).
const COMPONENT: &str = "replicaset-controller";
/// At most this many pods are created or deleted in one sync (`BurstReplicas`).
const BURST_REPLICAS: usize = 500;
/// The first slow-start batch (`SlowStartInitialBatchSize`).
const SLOW_START_INITIAL_BATCH: usize = 1;

struct State {
    client: kube::Client,
    recorder: Recorder,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("recorder", &self.recorder)
            .finish()
    }
}

pub(crate) async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let client = ctx.client.clone();
    let controller = Controller::new(
        Api::<ReplicaSet>::all(client.clone()),
        watcher::Config::default(),
    );
    let store = controller.store();
    let state = Arc::new(State {
        recorder: Recorder::new(client.clone(), COMPONENT),
        client: client.clone(),
    });
    controller
        .watches_shared_stream(ctx.pods.touched(), move |pod| pod_owners(&store, &pod))
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(reconcile, error_policy, state)
        .for_each(|result| {
            if let Err(error) = result {
                tracing::debug!(controller = "replicaset", %error, "reconcile failed");
            }
            futures::future::ready(())
        })
        .await;
}

/// The ReplicaSets a pod event concerns: its controller, or for an orphan every ReplicaSet in the
/// namespace that could adopt it.
fn pod_owners(store: &Store<ReplicaSet>, pod: &Pod) -> Vec<ObjectRef<ReplicaSet>> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    if let Some(owner) = owners::controller_ref(&pod.metadata) {
        if owner.kind == "ReplicaSet" && owner.api_version.starts_with("apps/") {
            return vec![ObjectRef::new(&owner.name).within(ns)];
        }
        return vec![];
    }
    if pod.metadata.deletion_timestamp.is_some() {
        return vec![];
    }
    store
        .state()
        .iter()
        .filter(|rs| rs.metadata.namespace.as_deref() == Some(ns))
        .filter(|rs| {
            selector::matches(
                rs.spec.as_ref().map(|s| &s.selector),
                pod.metadata.labels.as_ref(),
            )
        })
        .map(|rs| ObjectRef::from_obj(rs.as_ref()))
        .collect()
}

fn error_policy(rs: Arc<ReplicaSet>, error: &Error, _state: Arc<State>) -> Action {
    let name = rs.metadata.name.as_deref().unwrap_or_default();
    match error {
        Error::Api(e) if is_conflict(e) => Action::requeue(Duration::from_millis(200)),
        _ => {
            tracing::warn!(controller = "replicaset", name, %error, "sync failed, requeueing");
            Action::requeue(Duration::from_secs(2))
        }
    }
}

async fn reconcile(rs: Arc<ReplicaSet>, state: Arc<State>) -> Result<Action, Error> {
    let ns = rs.metadata.namespace.clone().unwrap_or_default();
    let name = rs.metadata.name.clone().unwrap_or_default();
    let span =
        tracing::info_span!("reconcile", controller = "replicaset", key = %format!("{ns}/{name}"));
    sync(&rs, &state, &ns).instrument(span).await
}

async fn sync(rs: &ReplicaSet, state: &State, ns: &str) -> Result<Action, Error> {
    let Some(spec) = rs.spec.as_ref() else {
        return Err(missing(rs, "spec"));
    };
    let pods_api: Api<Pod> = Api::namespaced(state.client.clone(), ns);
    let uid = rs.metadata.uid.clone().unwrap_or_default();
    let deleting = rs.metadata.deletion_timestamp.is_some();

    let mut owned = Vec::new();
    let mut claim_errors = Vec::new();
    for pod in pods_api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(pods::is_active)
    {
        let selected = selector::matches(Some(&spec.selector), pod.metadata.labels.as_ref());
        match owners::claim(&uid, deleting, &pod.metadata, selected) {
            Claim::Owned => owned.push(pod),
            Claim::Adopt => {
                match owners::adopt(&pods_api, &pod, owners::new_controller_ref(rs)).await {
                    Ok(Some(adopted)) => {
                        tracing::debug!(pod = ?adopted.metadata.name, "adopted orphan pod");
                        owned.push(adopted);
                    }
                    Ok(None) => {}
                    Err(e) => claim_errors.push(e),
                }
            }
            Claim::Release => {
                if let Err(e) = owners::release(&pods_api, &pod, &uid).await {
                    claim_errors.push(e);
                }
            }
            Claim::Ignore => {}
        }
    }

    let managed = if deleting {
        Ok(())
    } else {
        manage_replicas(rs, &owned, state, &pods_api).await
    };

    let desired = spec.replicas.unwrap_or(1);
    let status = calculate_status(rs, &owned, managed.as_ref().err(), Timestamp::now());
    if rs.status.as_ref() != Some(&status) {
        update_status(rs, &status, state, ns).await?;
    }
    managed?;
    if let Some(first) = claim_errors.pop() {
        return Err(first);
    }
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    if min_ready > 0
        && status.ready_replicas == Some(desired)
        && status.available_replicas != Some(desired)
    {
        // Pods are ready but not yet available: look again once minReadySeconds have passed.
        return Ok(Action::requeue(Duration::from_secs(
            u64::try_from(min_ready).unwrap_or(0),
        )));
    }
    Ok(Action::await_change())
}

fn missing(rs: &ReplicaSet, field: &'static str) -> Error {
    Error::MissingField {
        kind: "ReplicaSet",
        namespace: rs.metadata.namespace.clone().unwrap_or_default(),
        name: rs.metadata.name.clone().unwrap_or_default(),
        field,
    }
}

/// Creates or deletes pods so that `owned` reaches `spec.replicas` (at most `BURST_REPLICAS` at once).
async fn manage_replicas(
    rs: &ReplicaSet,
    owned: &[Pod],
    state: &State,
    pods_api: &Api<Pod>,
) -> Result<(), Error> {
    let Some(spec) = rs.spec.as_ref() else {
        return Err(missing(rs, "spec"));
    };
    let want = usize::try_from(spec.replicas.unwrap_or(1)).unwrap_or(0);
    let have = owned.len();
    if have < want {
        let count = (want - have).min(BURST_REPLICAS);
        let pod = pod_from_template(rs)?;
        tracing::debug!(count, want, have, "creating pods");
        let (created, failure) = slow_start_batch(count, SLOW_START_INITIAL_BATCH, || {
            create_pod(rs, &pod, state, pods_api)
        })
        .await;
        if let Some(error) = failure {
            tracing::debug!(
                created,
                skipped = count - created,
                "pod creation stopped early"
            );
            return Err(error);
        }
    } else if have > want {
        let count = (have - want).min(BURST_REPLICAS);
        let refs: Vec<&Pod> = owned.iter().collect();
        let victims = pods::pods_to_delete(&refs, &refs, count, Timestamp::now());
        tracing::debug!(count, want, have, "deleting pods");
        let results = join_all(
            victims
                .into_iter()
                .map(|p| delete_pod(rs, p, state, pods_api)),
        )
        .await;
        let total = results.len();
        let mut errors: Vec<Error> = results.into_iter().filter_map(Result::err).collect();
        if !errors.is_empty() {
            let count = errors.len();
            let first = errors.swap_remove(0);
            return Err(Error::Partial {
                count,
                total,
                first: Box::new(first),
            });
        }
    }
    Ok(())
}

/// Runs `count` calls of `f` in batches of 1, 2, 4, ... (Kubernetes' `slowStartBatch`), stopping after
/// the first batch with a failure so that a failing create does not flood the API server. Returns the
/// number of successes and the first error.
async fn slow_start_batch<F, Fut>(count: usize, initial: usize, mut f: F) -> (usize, Option<Error>)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), Error>>,
{
    let mut remaining = count;
    let mut batch = remaining.min(initial.max(1));
    let mut successes = 0;
    while batch > 0 {
        let results = join_all((0..batch).map(|_| f())).await;
        let mut errors = results.into_iter().filter_map(Result::err);
        let first = errors.next();
        let failed = usize::from(first.is_some()) + errors.count();
        successes += batch - failed;
        if first.is_some() {
            return (successes, first);
        }
        remaining -= batch;
        batch = (2 * batch).min(remaining);
    }
    (successes, None)
}

/// A pod for `rs` from its template (`GetPodFromTemplate`): template labels, annotations and
/// finalizers, `generateName` `<rs>-`, and a controller reference to the ReplicaSet.
fn pod_from_template(rs: &ReplicaSet) -> Result<Pod, Error> {
    let template = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .ok_or_else(|| missing(rs, "spec.template"))?;
    let meta = template.metadata.clone().unwrap_or_default();
    Ok(Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!(
                "{}-",
                rs.metadata.name.as_deref().unwrap_or_default()
            )),
            namespace: rs.metadata.namespace.clone(),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![owners::new_controller_ref(rs)]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    })
}

async fn create_pod(
    rs: &ReplicaSet,
    pod: &Pod,
    state: &State,
    api: &Api<Pod>,
) -> Result<(), Error> {
    match api.create(&PostParams::default(), pod).await {
        Ok(created) => {
            let name = created.metadata.name.unwrap_or_default();
            state
                .recorder
                .publish(
                    rs,
                    EventType::Normal,
                    "SuccessfulCreate",
                    format!("Created pod: {name}"),
                )
                .await;
            Ok(())
        }
        Err(error) => {
            state
                .recorder
                .publish(
                    rs,
                    EventType::Warning,
                    "FailedCreate",
                    format!("Error creating: {error}"),
                )
                .await;
            Err(error.into())
        }
    }
}

async fn delete_pod(
    rs: &ReplicaSet,
    pod: &Pod,
    state: &State,
    api: &Api<Pod>,
) -> Result<(), Error> {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {
            state
                .recorder
                .publish(
                    rs,
                    EventType::Normal,
                    "SuccessfulDelete",
                    format!("Deleted pod: {name}"),
                )
                .await;
            Ok(())
        }
        Err(error) if is_not_found(&error) => Ok(()),
        Err(error) => {
            state
                .recorder
                .publish(
                    rs,
                    EventType::Warning,
                    "FailedDelete",
                    format!("Error deleting: {error}"),
                )
                .await;
            Err(error.into())
        }
    }
}

/// The status a sync observed (`calculateStatus`): counts over the owned active pods, the
/// observed generation, and a `ReplicaFailure` condition while creating or deleting fails.
fn calculate_status(
    rs: &ReplicaSet,
    owned: &[Pod],
    manage_error: Option<&Error>,
    now: Timestamp,
) -> ReplicaSetStatus {
    let spec = rs.spec.as_ref();
    let template_labels = spec
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let min_ready = spec.and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let count = |f: &dyn Fn(&Pod) -> bool| {
        i32::try_from(owned.iter().filter(|p| f(p)).count()).unwrap_or(i32::MAX)
    };
    let mut status = rs.status.clone().unwrap_or_default();
    status.replicas = count(&|_| true);
    status.fully_labeled_replicas = Some(count(&|p| {
        let labels = p.metadata.labels.as_ref();
        template_labels
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
    }));
    status.ready_replicas = Some(count(&pods::is_ready));
    status.available_replicas = Some(count(&|p| pods::is_available(p, min_ready, now)));
    status.observed_generation = rs.metadata.generation;

    let mut conditions = status.conditions.take().unwrap_or_default();
    let has_failure = conditions.iter().any(|c| c.type_ == "ReplicaFailure");
    match manage_error {
        Some(error) if !has_failure => {
            let desired = spec.and_then(|s| s.replicas).unwrap_or(1);
            let reason = if status.replicas < desired {
                "FailedCreate"
            } else {
                "FailedDelete"
            };
            conditions.push(ReplicaSetCondition {
                type_: "ReplicaFailure".into(),
                status: "True".into(),
                reason: Some(reason.into()),
                message: Some(error.to_string()),
                last_transition_time: Some(crate::util::now()),
            });
        }
        None if has_failure => conditions.retain(|c| c.type_ != "ReplicaFailure"),
        _ => {}
    }
    status.conditions = (!conditions.is_empty()).then_some(conditions);
    status
}

async fn update_status(
    rs: &ReplicaSet,
    status: &ReplicaSetStatus,
    state: &State,
    ns: &str,
) -> Result<(), Error> {
    let api: Api<ReplicaSet> = Api::namespaced(state.client.clone(), ns);
    let mut body = serde_json::to_value(status).map_err(|e| Error::Invalid(e.to_string()))?;
    if status.conditions.is_none() {
        // A merge patch only removes a field that is explicitly null.
        body["conditions"] = serde_json::Value::Null;
    }
    let name = rs.metadata.name.as_deref().unwrap_or_default();
    match api
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": body })),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn slow_start_doubles_batches_and_stops_on_failure() {
        // All succeed: 1 + 2 + 4 + 3 = 10 calls.
        let calls = AtomicUsize::new(0);
        let (ok, err) = slow_start_batch(10, 1, || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Ok(()) }
        })
        .await;
        assert_eq!(
            (ok, err.is_none(), calls.load(Ordering::SeqCst)),
            (10, true, 10)
        );

        // The 4th call fails: batches 1, 2 succeed, the batch of 4 runs and then it stops.
        let calls = AtomicUsize::new(0);
        let (ok, err) = slow_start_batch(10, 1, || {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 3 {
                    Err(Error::Invalid("boom".into()))
                } else {
                    Ok(())
                }
            }
        })
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), 7);
        assert_eq!(ok, 6);
        assert!(err.is_some());
    }

    #[test]
    fn status_counts_owned_pods() {
        let rs: ReplicaSet = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "generation": 4},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web", "tier": "fe"}}, "spec": {"containers": []}}
            }
        }))
        .expect("replicaset");
        let pod = |labels: serde_json::Value, ready: bool| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": "p", "labels": labels},
                "status": {"phase": "Running", "conditions": [
                    {"type": "Ready", "status": if ready { "True" } else { "False" },
                     "lastTransitionTime": "2024-01-01T00:00:00Z"}
                ]}
            }))
            .expect("pod")
        };
        let owned = [
            pod(json!({"app": "web", "tier": "fe"}), true),
            pod(json!({"app": "web"}), true),
            pod(json!({"app": "web", "tier": "fe"}), false),
        ];
        let status = calculate_status(&rs, &owned, None, Timestamp::now());
        assert_eq!(status.replicas, 3);
        assert_eq!(status.fully_labeled_replicas, Some(2));
        assert_eq!(status.ready_replicas, Some(2));
        assert_eq!(status.available_replicas, Some(2));
        assert_eq!(status.observed_generation, Some(4));
        assert!(status.conditions.is_none());

        let failed = calculate_status(
            &rs,
            &owned[..1],
            Some(&Error::Invalid("quota".into())),
            Timestamp::now(),
        );
        let cond = failed
            .conditions
            .as_ref()
            .and_then(|c| c.first())
            .expect("ReplicaFailure");
        assert_eq!(
            (cond.type_.as_str(), cond.reason.as_deref()),
            ("ReplicaFailure", Some("FailedCreate"))
        );
    }
}
