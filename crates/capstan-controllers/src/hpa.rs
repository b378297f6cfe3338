//! The HorizontalPodAutoscaler controller (kube-controller-manager's `horizontal-pod-autoscaler`,
//! `pkg/controller/podautoscaler`), with autoscaling/v2 semantics.
//!
//! Each HPA is synced every 15 s (`--horizontal-pod-autoscaler-sync-period`), and at once when it is
//! created or its spec changes; the controller's own status writes do not trigger a sync. A sync:
//!
//! 1. reads the target's `scale` subresource. Deployments, ReplicaSets and StatefulSets (`apps`)
//!    are known; other kinds (custom resources with a scale subresource) are found through
//!    discovery. When the target has zero replicas and `minReplicas` is not zero, scaling is
//!    disabled (`ScalingDisabled`). A count outside `[minReplicas, maxReplicas]` is brought back
//!    inside without looking at metrics.
//! 2. computes one replica count per metric with kube's replica calculator. `Resource` and
//!    `ContainerResource` metrics come from the `metrics.k8s.io` PodMetrics of the pods that the
//!    scale's selector picks. The count is the usage ratio times the number of ready pods, where
//!    the usage ratio is the utilization of the pods' requests (or the average value) over the
//!    target. A ratio within the 10 % tolerance of 1 keeps the current count. A pod without
//!    metrics counts as 0 % on a scale-up and as 100 % of its request on a scale-down. An unready
//!    pod (Pending, or for CPU not Ready or just started) counts as 0 % on a scale-up. When that
//!    recount would reverse the direction, the current count stays. `Pods`, `Object` and
//!    `External` metrics need a custom or external metrics API, which Capstan does not serve:
//!    they fail as they do in a cluster without one.
//! 3. takes the highest count, stabilizes it and limits the rate, then clamps it to
//!    `[minReplicas, maxReplicas]`. Without `spec.behavior`, a scale-down takes the highest
//!    recommendation of the last 300 s (`--horizontal-pod-autoscaler-downscale-stabilization`) and a
//!    scale-up goes to at most max(2 × current, 4). With it, each direction has its own
//!    stabilization window and its `Pods`/`Percent` policies over their periods, with
//!    `selectPolicy` `Max`, `Min` or `Disabled`. kube's defaults fill the parts left out.
//! 4. writes `spec.replicas` through the scale subresource (event `SuccessfulRescale`, or
//!    `FailedRescale`) and the status: `currentReplicas` (the scale's `spec.replicas`, as kube
//!    reports it), `desiredReplicas`, `currentMetrics`, `lastScaleTime`, and the conditions
//!    `AbleToScale`, `ScalingActive` and `ScalingLimited`, with kube's reasons and messages.
//!
//! Where this differs from kube:
//! - A spec change is synced at once; kube waits up to one sync period.
//! - The scale is written as a merge patch of `spec.replicas`. kube writes back the `Scale` it read,
//!   so a concurrent change makes that write fail.
//! - Pods selected by several HPAs are not detected (kube's `AmbiguousSelector`).
//! - A Warning event that repeats on consecutive syncs is recorded once. kube's recorder counts
//!   the repeats instead.
//! - `status.observedGeneration` is set; kube leaves it empty.
//! - `spec.behavior.*.tolerance` (alpha in Kubernetes 1.33) is ignored.
//!
//! As in kube, the recommendations and scale events behind stabilization and rate limits live in
//! memory: a new controller-manager leader starts without them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::autoscaling::v2::{
    ContainerResourceMetricStatus, CrossVersionObjectReference, HPAScalingRules,
    HorizontalPodAutoscaler, HorizontalPodAutoscalerBehavior, HorizontalPodAutoscalerCondition,
    HorizontalPodAutoscalerSpec, HorizontalPodAutoscalerStatus, MetricSpec, MetricStatus,
    MetricTarget, MetricValueStatus, ResourceMetricSource, ResourceMetricStatus,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::watcher;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::Context;
use crate::util::events::{EventType, Recorder};
use crate::util::quantity::{format_milli, milli_value};
use crate::util::{Error, is_not_found, pods};

/// The controller's name in events (`source.component`), as kube-controller-manager's.
const COMPONENT: &str = "horizontal-pod-autoscaler";
/// How often each HPA is synced (`--horizontal-pod-autoscaler-sync-period`).
const SYNC_PERIOD: Duration = Duration::from_secs(15);
/// How many HPAs are synced at once (`--concurrent-horizontal-pod-autoscaler-syncs`).
const CONCURRENT_SYNCS: u16 = 5;
/// A usage ratio this close to 1 keeps the replica count (`--horizontal-pod-autoscaler-tolerance`).
const TOLERANCE: f64 = 0.1;
/// How long a scale-down waits for higher recommendations to age out
/// (`--horizontal-pod-autoscaler-downscale-stabilization`).
const DOWNSCALE_STABILIZATION: Duration = Duration::from_secs(300);
/// How long after a pod starts its CPU samples may be skewed by start-up
/// (`--horizontal-pod-autoscaler-cpu-initialization-period`).
const CPU_INITIALIZATION_PERIOD: Duration = Duration::from_secs(300);
/// A pod that turned unready within this long of starting has never been ready
/// (`--horizontal-pod-autoscaler-initial-readiness-delay`).
const INITIAL_READINESS_DELAY: Duration = Duration::from_secs(30);
/// The memory of an HPA not synced for this long is dropped: the HPA is gone.
const FORGET_AFTER: Duration = Duration::from_secs(600);

const ABLE_TO_SCALE: &str = "AbleToScale";
const SCALING_ACTIVE: &str = "ScalingActive";
const SCALING_LIMITED: &str = "ScalingLimited";

struct State {
    client: kube::Client,
    recorder: Recorder,
    /// Per HPA (by uid): what must survive from one sync to the next.
    memory: Mutex<HashMap<String, Memory>>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("recorder", &self.recorder)
            .finish()
    }
}

impl State {
    /// Runs `f` on the memory of the HPA `key`. The lock is never held across an `.await`.
    fn with_memory<T>(&self, key: &str, f: impl FnOnce(&mut Memory) -> T) -> T {
        let mut memory = self.memory.lock().unwrap_or_else(PoisonError::into_inner);
        f(memory.entry(key.to_owned()).or_default())
    }
}

/// A timestamped replica count: a recommendation, or the size of a scale event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sample {
    at: Instant,
    replicas: i32,
}

/// What the controller remembers of one HPA between syncs.
#[derive(Debug, Default)]
struct Memory {
    /// When the HPA was last synced, and the hash of its spec then.
    last_sync: Option<(Instant, u64)>,
    /// Recent unstabilized recommendations, oldest first.
    recommendations: Vec<Sample>,
    /// Replicas added by recent scale-ups (kept only for HPAs with `spec.behavior`).
    scale_ups: Vec<Sample>,
    /// Replicas removed by recent scale-downs (kept only for HPAs with `spec.behavior`).
    scale_downs: Vec<Sample>,
    /// The Warning events (reason, message) of the last sync: not recorded again while they last.
    warned: Vec<(String, String)>,
}

impl Memory {
    /// kube's `recordInitialRecommendation`: the current count is the first recommendation, so a
    /// new HPA does not scale down before the stabilization window has passed.
    fn record_initial(&mut self, current: i32, now: Instant) {
        if self.recommendations.is_empty() {
            self.recommendations.push(Sample {
                at: now,
                replicas: current,
            });
        }
    }

    /// Remembers a rescale from `from` to `to` replicas for the rate limits of `behavior`.
    fn record_scale(
        &mut self,
        behavior: &HorizontalPodAutoscalerBehavior,
        from: i32,
        to: i32,
        now: Instant,
    ) {
        let (events, rules) = if to > from {
            (
                &mut self.scale_ups,
                scale_up_rules(behavior.scale_up.as_ref()),
            )
        } else {
            (
                &mut self.scale_downs,
                scale_down_rules(behavior.scale_down.as_ref()),
            )
        };
        let longest = rules.policies.iter().map(|p| p.period).max();
        events.retain(|e| longest.is_some_and(|l| now.duration_since(e.at) <= l));
        events.push(Sample {
            at: now,
            replicas: to.abs_diff(from).try_into().unwrap_or(i32::MAX),
        });
    }
}

/// Whether the HPA `key` is due for a sync; if so it is marked synced and `None` is returned, else
/// how long until it is due. An HPA is due once per sync period, and at once when its spec changed
/// (a status write, ours included, changes no spec). Memories of HPAs that have not been synced for
/// a while are dropped.
fn take_turn(
    memory: &mut HashMap<String, Memory>,
    key: &str,
    spec_hash: u64,
    now: Instant,
) -> Option<Duration> {
    memory.retain(|_, m| {
        m.last_sync
            .is_none_or(|(at, _)| now.duration_since(at) < FORGET_AFTER)
    });
    let m = memory.entry(key.to_owned()).or_default();
    if let Some((at, hash)) = m.last_sync
        && hash == spec_hash
    {
        let elapsed = now.duration_since(at);
        // A timer that fires a little early still counts as on time.
        if elapsed + Duration::from_millis(50) < SYNC_PERIOD {
            return Some(SYNC_PERIOD - elapsed);
        }
    }
    m.last_sync = Some((now, spec_hash));
    None
}

fn spec_hash(hpa: &HorizontalPodAutoscaler) -> u64 {
    let mut hasher = DefaultHasher::new();
    serde_json::to_string(&hpa.spec)
        .unwrap_or_default()
        .hash(&mut hasher);
    hasher.finish()
}

pub(crate) async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let client = ctx.client.clone();
    let state = Arc::new(State {
        recorder: Recorder::new(client.clone(), COMPONENT),
        client: client.clone(),
        memory: Mutex::new(HashMap::new()),
    });
    Controller::new(
        Api::<HorizontalPodAutoscaler>::all(client),
        watcher::Config::default(),
    )
    .with_config(controller::Config::default().concurrency(CONCURRENT_SYNCS))
    .graceful_shutdown_on(shutdown.cancelled_owned())
    .run(reconcile, error_policy, state)
    .for_each(|result| {
        if let Err(error) = result {
            tracing::debug!(controller = COMPONENT, %error, "reconcile failed");
        }
        futures::future::ready(())
    })
    .await;
}

fn error_policy(hpa: Arc<HorizontalPodAutoscaler>, error: &Error, _state: Arc<State>) -> Action {
    let name = hpa.metadata.name.as_deref().unwrap_or_default();
    tracing::warn!(controller = COMPONENT, name, %error, "sync failed, requeueing");
    Action::requeue(SYNC_PERIOD)
}

async fn reconcile(hpa: Arc<HorizontalPodAutoscaler>, state: Arc<State>) -> Result<Action, Error> {
    let ns = hpa.metadata.namespace.clone().unwrap_or_default();
    let name = hpa.metadata.name.clone().unwrap_or_default();
    let key = hpa
        .metadata
        .uid
        .clone()
        .unwrap_or_else(|| format!("{ns}/{name}"));
    let wait = {
        let mut memory = state.memory.lock().unwrap_or_else(PoisonError::into_inner);
        take_turn(&mut memory, &key, spec_hash(&hpa), Instant::now())
    };
    if let Some(wait) = wait {
        return Ok(Action::requeue(wait));
    }
    let span =
        tracing::info_span!("reconcile", controller = COMPONENT, key = %format!("{ns}/{name}"));
    sync(&hpa, &state, &key).instrument(span).await?;
    Ok(Action::requeue(SYNC_PERIOD))
}

/// What one sync decides: the new status and the events to record.
#[derive(Debug)]
struct Run {
    status: HorizontalPodAutoscalerStatus,
    /// The sync's time, for condition transitions and `lastScaleTime`.
    now: Time,
    /// The sync's time for the in-memory history.
    instant: Instant,
    warnings: Vec<(String, String)>,
    normal: Vec<(&'static str, String)>,
}

impl Run {
    fn condition(&mut self, type_: &str, status: bool, reason: &str, message: impl Into<String>) {
        set_condition(
            &mut self.status.conditions,
            type_,
            status,
            reason,
            message.into(),
            &self.now,
        );
    }

    fn warn(&mut self, reason: &str, message: impl Into<String>) {
        self.warnings.push((reason.to_owned(), message.into()));
    }

    fn failed_get_scale(&mut self, error: String) {
        self.condition(
            ABLE_TO_SCALE,
            false,
            "FailedGetScale",
            format!("the HPA controller was unable to get the target's current scale: {error}"),
        );
        self.warn("FailedGetScale", error);
    }
}

/// Sets a condition of the given type, adding it when missing; `lastTransitionTime` moves only
/// when the status changes (kube's `setConditionInList`).
fn set_condition(
    conditions: &mut Option<Vec<HorizontalPodAutoscalerCondition>>,
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    now: &Time,
) {
    let status = if status { "True" } else { "False" };
    let update = |c: &mut HorizontalPodAutoscalerCondition| {
        if c.status != status {
            c.last_transition_time = Some(now.clone());
        }
        c.status = status.to_owned();
        c.reason = Some(reason.to_owned());
        c.message = Some(message);
    };
    let list = conditions.get_or_insert_with(Vec::new);
    if let Some(existing) = list.iter_mut().find(|c| c.type_ == type_) {
        update(existing);
    } else {
        let mut added = HorizontalPodAutoscalerCondition {
            type_: type_.to_owned(),
            ..Default::default()
        };
        update(&mut added);
        list.push(added);
    }
}

async fn sync(hpa: &HorizontalPodAutoscaler, state: &State, key: &str) -> Result<(), Error> {
    let Some(spec) = hpa.spec.as_ref() else {
        return Ok(());
    };
    let mut status = hpa.status.clone().unwrap_or_default();
    status.observed_generation = hpa.metadata.generation;
    let mut run = Run {
        status,
        now: crate::util::now(),
        instant: Instant::now(),
        warnings: Vec::new(),
        normal: Vec::new(),
    };
    evaluate(hpa, spec, state, key, &mut run).await;

    let warnings = std::mem::take(&mut run.warnings);
    let fresh: Vec<(String, String)> = state.with_memory(key, |m| {
        let fresh = warnings
            .iter()
            .filter(|w| !m.warned.contains(w))
            .cloned()
            .collect();
        m.warned = warnings;
        fresh
    });
    for (reason, message) in fresh {
        state
            .recorder
            .publish(hpa, EventType::Warning, &reason, message)
            .await;
    }
    for (reason, message) in std::mem::take(&mut run.normal) {
        state
            .recorder
            .publish(hpa, EventType::Normal, reason, message)
            .await;
    }
    if hpa.status.as_ref() != Some(&run.status) {
        write_status(hpa, state, &run.status).await?;
    }
    Ok(())
}

/// Merge-patches the status; `currentMetrics` is cleared explicitly when there are none.
async fn write_status(
    hpa: &HorizontalPodAutoscaler,
    state: &State,
    status: &HorizontalPodAutoscalerStatus,
) -> Result<(), Error> {
    let ns = hpa.metadata.namespace.as_deref().unwrap_or_default();
    let name = hpa.metadata.name.as_deref().unwrap_or_default();
    let mut body = serde_json::to_value(status).map_err(|e| Error::Invalid(e.to_string()))?;
    if status.current_metrics.is_none()
        && let Some(fields) = body.as_object_mut()
    {
        fields.insert("currentMetrics".into(), Value::Null);
    }
    let api: Api<HorizontalPodAutoscaler> = Api::namespaced(state.client.clone(), ns);
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
        Err(e) => {
            state
                .recorder
                .publish(
                    hpa,
                    EventType::Warning,
                    "FailedUpdateStatus",
                    api_message(&e),
                )
                .await;
            Err(e.into())
        }
    }
}

/// The API server's message for a failed request (`deployments.apps "web" not found`).
fn api_message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) if !status.message.is_empty() => status.message.clone(),
        other => other.to_string(),
    }
}

/// kube's `reconcileAutoscaler` up to the status write. Failures are recorded in `run` as
/// conditions and Warning events.
async fn evaluate(
    hpa: &HorizontalPodAutoscaler,
    spec: &HorizontalPodAutoscalerSpec,
    state: &State,
    key: &str,
    run: &mut Run,
) {
    let ns = hpa.metadata.namespace.as_deref().unwrap_or_default();
    let target = &spec.scale_target_ref;
    let api = match scale_api(&state.client, ns, target).await {
        Ok(api) => api,
        Err(error) => return run.failed_get_scale(error),
    };
    let scale = match api.get_scale(&target.name).await {
        Ok(scale) => scale,
        Err(e) => return run.failed_get_scale(api_message(&e)),
    };
    run.condition(
        ABLE_TO_SCALE,
        true,
        "SucceededGetScale",
        "the HPA controller was able to get the target's current scale",
    );
    let current = scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    let selector = scale
        .status
        .as_ref()
        .and_then(|s| s.selector.clone())
        .unwrap_or_default();
    let instant = run.instant;
    state.with_memory(key, |m| m.record_initial(current, instant));
    let min = spec.min_replicas.unwrap_or(1);
    let max = spec.max_replicas;

    let mut metric_statuses = None;
    let (desired, reason) = if current == 0 && min != 0 {
        run.condition(
            SCALING_ACTIVE,
            false,
            "ScalingDisabled",
            "scaling is disabled since the replica count of the target is zero",
        );
        (current, String::new())
    } else if current > max {
        (
            max,
            "Current number of replicas above Spec.MaxReplicas".into(),
        )
    } else if current < min {
        (
            min,
            "Current number of replicas below Spec.MinReplicas".into(),
        )
    } else {
        let metrics = spec.metrics.as_deref().unwrap_or_default();
        let outcome =
            replicas_for_metrics(&state.client, ns, &selector, current, metrics, run).await;
        metric_statuses = outcome.statuses;
        let Some((proposal, metric)) = outcome.replicas else {
            run.status.current_replicas = Some(current);
            run.status.current_metrics = metric_statuses;
            return;
        };
        tracing::debug!(current, proposal, %metric, "proposing desired replicas");
        let reason = match proposal.cmp(&current) {
            std::cmp::Ordering::Greater => format!("{metric} above target"),
            std::cmp::Ordering::Less => "All metrics below target".into(),
            std::cmp::Ordering::Equal => String::new(),
        };
        let normalized = state.with_memory(key, |m| {
            normalize(
                m,
                spec.behavior.as_ref(),
                current,
                proposal,
                min,
                max,
                instant,
            )
        });
        run.condition(
            ABLE_TO_SCALE,
            true,
            normalized.stabilization.0,
            normalized.stabilization.1,
        );
        run.condition(
            SCALING_LIMITED,
            normalized.limit.0,
            normalized.limit.1,
            normalized.limit.2,
        );
        (normalized.replicas, reason)
    };

    let rescale = desired != current;
    if rescale {
        let patch = Patch::Merge(json!({ "spec": { "replicas": desired } }));
        if let Err(e) = api
            .patch_scale(&target.name, &PatchParams::default(), &patch)
            .await
        {
            let error = api_message(&e);
            run.warn(
                "FailedRescale",
                format!("New size: {desired}; reason: {reason}; error: {error}"),
            );
            run.condition(
                ABLE_TO_SCALE,
                false,
                "FailedUpdateScale",
                format!("the HPA controller was unable to update the target scale: {error}"),
            );
            run.status.current_replicas = Some(current);
            run.status.current_metrics = metric_statuses;
            return;
        }
        run.condition(
            ABLE_TO_SCALE,
            true,
            "SucceededRescale",
            format!("the HPA controller was able to update the target scale to {desired}"),
        );
        run.normal.push((
            "SuccessfulRescale",
            format!("New size: {desired}; reason: {reason}"),
        ));
        if let Some(behavior) = spec.behavior.as_ref() {
            state.with_memory(key, |m| m.record_scale(behavior, current, desired, instant));
        }
        run.status.last_scale_time = Some(run.now.clone());
        tracing::info!(current, desired, %reason, "rescaled");
    } else {
        tracing::debug!(current, "decided not to scale");
    }
    run.status.current_replicas = Some(current);
    run.status.desired_replicas = desired;
    run.status.current_metrics = metric_statuses;
}

/// The scale subresource's API for the target. kube maps the group and kind with its RESTMapper
/// (any version of the group); here the apps workloads are known and other kinds are discovered.
async fn scale_api(
    client: &kube::Client,
    ns: &str,
    target: &CrossVersionObjectReference,
) -> Result<Api<DynamicObject>, String> {
    let api_version = target.api_version.as_deref().unwrap_or_default();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let resource = match (group, target.kind.as_str()) {
        ("apps", "Deployment") => ApiResource::erase::<Deployment>(&()),
        ("apps", "ReplicaSet") => ApiResource::erase::<ReplicaSet>(&()),
        ("apps", "StatefulSet") => ApiResource::erase::<StatefulSet>(&()),
        _ => {
            let gvk = GroupVersionKind::gvk(group, version, &target.kind);
            match kube::discovery::pinned_kind(client, &gvk).await {
                Ok((resource, _)) => resource,
                Err(e) if is_not_found(&e) || matches!(e, kube::Error::Discovery(_)) => {
                    return Err(format!(
                        "no matches for kind {:?} in group {group:?}",
                        target.kind
                    ));
                }
                Err(e) => return Err(api_message(&e)),
            }
        }
    };
    Ok(Api::namespaced_with(client.clone(), ns, &resource))
}

/// The resource metrics API's PodMetrics (`metrics.k8s.io/v1beta1`, resource `pods`).
fn pod_metrics_resource() -> ApiResource {
    ApiResource {
        group: "metrics.k8s.io".into(),
        version: "v1beta1".into(),
        api_version: "metrics.k8s.io/v1beta1".into(),
        kind: "PodMetrics".into(),
        plural: "pods".into(),
    }
}

/// The pods the scale's selector picks and their PodMetrics, each read once per sync; an error is
/// kept as its message, reported by every metric that needs the input.
#[derive(Debug)]
struct Inputs {
    pods: Result<Vec<Pod>, String>,
    metrics: Result<Vec<DynamicObject>, String>,
}

async fn fetch_inputs(client: &kube::Client, ns: &str, selector: &str) -> Inputs {
    let params = ListParams::default().labels(selector);
    let pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&params)
        .await
        .map(|list| list.items)
        .map_err(|e| api_message(&e));
    let metrics =
        Api::<DynamicObject>::namespaced_with(client.clone(), ns, &pod_metrics_resource())
            .list(&params)
            .await
            .map(|list| list.items)
            .map_err(|e| {
                format!(
                    "unable to fetch metrics from resource metrics API: {}",
                    api_message(&e)
                )
            });
    Inputs { pods, metrics }
}

/// The metric the API server defaults an HPA to: CPU at 80 % of the requests.
fn default_metric() -> MetricSpec {
    MetricSpec {
        type_: "Resource".into(),
        resource: Some(ResourceMetricSource {
            name: "cpu".into(),
            target: MetricTarget {
                type_: "Utilization".into(),
                average_utilization: Some(80),
                ..Default::default()
            },
        }),
        ..Default::default()
    }
}

/// The outcome of all of an HPA's metrics.
#[derive(Debug)]
struct MetricsOutcome {
    /// The highest count and the metric that proposed it; `None` when the HPA must not scale.
    replicas: Option<(i32, String)>,
    /// One status per metric, empty for those that failed (kube's `currentMetrics`).
    statuses: Option<Vec<MetricStatus>>,
}

/// kube's `computeReplicasForMetrics`: the highest count over the metrics that could be computed.
/// When all metrics failed, or some failed and the rest would scale down, the HPA does not scale and
/// `ScalingActive` reports the first failure.
async fn replicas_for_metrics(
    client: &kube::Client,
    ns: &str,
    selector: &str,
    current: i32,
    specs: &[MetricSpec],
    run: &mut Run,
) -> MetricsOutcome {
    if selector.is_empty() {
        run.warn("SelectorRequired", "selector is required");
        run.condition(
            SCALING_ACTIVE,
            false,
            "InvalidSelector",
            "the HPA target's scale is missing a selector",
        );
        run.warn("FailedComputeMetricsReplicas", "selector is required");
        return MetricsOutcome {
            replicas: None,
            statuses: None,
        };
    }
    let default = [default_metric()];
    let specs = if specs.is_empty() {
        &default[..]
    } else {
        specs
    };
    let needs_pods = specs
        .iter()
        .any(|s| matches!(s.type_.as_str(), "Resource" | "ContainerResource"));
    let inputs = if needs_pods {
        fetch_inputs(client, ns, selector).await
    } else {
        Inputs {
            pods: Ok(Vec::new()),
            metrics: Ok(Vec::new()),
        }
    };
    let now = Timestamp::now();

    let mut statuses = vec![MetricStatus::default(); specs.len()];
    let mut best: Option<(i32, String)> = None;
    let mut failures = Vec::new();
    for (spec, status) in specs.iter().zip(statuses.iter_mut()) {
        match metric_replicas(spec, current, &inputs, now) {
            Ok(proposal) => {
                *status = proposal.status;
                if best.as_ref().is_none_or(|(r, _)| proposal.replicas > *r) {
                    best = Some((proposal.replicas, proposal.name));
                }
            }
            Err(failure) => {
                run.warn(failure.reason, failure.error.clone());
                failures.push(failure);
            }
        }
    }
    let statuses = Some(statuses);
    let scales_down = best.as_ref().is_none_or(|(r, _)| *r < current);
    match (failures.first(), best) {
        (Some(first), _) if scales_down => {
            run.condition(
                SCALING_ACTIVE,
                false,
                first.reason,
                format!(
                    "the HPA was unable to compute the replica count: {}",
                    first.error
                ),
            );
            run.warn(
                "FailedComputeMetricsReplicas",
                format!(
                    "invalid metrics ({} invalid out of {}), first error is: {}",
                    failures.len(),
                    specs.len(),
                    first.wrapped
                ),
            );
            MetricsOutcome {
                replicas: None,
                statuses,
            }
        }
        (_, Some((replicas, metric))) => {
            run.condition(
                SCALING_ACTIVE,
                true,
                "ValidMetricFound",
                format!("the HPA was able to successfully calculate a replica count from {metric}"),
            );
            MetricsOutcome {
                replicas: Some((replicas, metric)),
                statuses,
            }
        }
        // Unreachable: `specs` is not empty, so a metric either failed or proposed.
        (_, None) => MetricsOutcome {
            replicas: None,
            statuses,
        },
    }
}

/// One metric's proposal.
#[derive(Debug)]
struct MetricProposal {
    replicas: i32,
    /// How kube names the metric in reasons ("cpu resource utilization (percentage of request)").
    name: String,
    status: MetricStatus,
}

/// Why one metric could not be computed.
#[derive(Debug)]
struct MetricFailure {
    /// The `ScalingActive` reason and event reason (`FailedGetResourceMetric`).
    reason: &'static str,
    /// The event message, also in the condition message.
    error: String,
    /// The error with the metric's context, for `FailedComputeMetricsReplicas`.
    wrapped: String,
}

/// How `Pods` and `Object` metrics fail: Capstan serves no custom metrics API.
const NO_CUSTOM_METRICS_API: &str = "unable to fetch metrics from custom metrics API: no custom metrics API (custom.metrics.k8s.io) registered";
/// How `External` metrics fail: Capstan serves no external metrics API.
const NO_EXTERNAL_METRICS_API: &str = "unable to fetch metrics from external metrics API: no external metrics API (external.metrics.k8s.io) registered";

/// kube's `computeReplicasForMetric`.
fn metric_replicas(
    spec: &MetricSpec,
    current: i32,
    inputs: &Inputs,
    now: Timestamp,
) -> Result<MetricProposal, MetricFailure> {
    let no_api = |reason, error: String, wrapped: String| MetricFailure {
        reason,
        wrapped: format!("{wrapped}: {error}"),
        error,
    };
    match spec.type_.as_str() {
        "Resource" => {
            let failed = |error: String| MetricFailure {
                reason: "FailedGetResourceMetric",
                wrapped: format!(
                    "failed to get {} resource metric value: {error}",
                    spec.resource.as_ref().map_or("", |r| r.name.as_str())
                ),
                error,
            };
            let source = spec
                .resource
                .as_ref()
                .ok_or_else(|| failed("invalid resource metric source: no resource".into()))?;
            let value = resource_replicas(&source.name, &source.target, None, current, inputs, now)
                .map_err(failed)?;
            Ok(MetricProposal {
                replicas: value.replicas,
                name: value.name,
                status: MetricStatus {
                    type_: "Resource".into(),
                    resource: Some(ResourceMetricStatus {
                        name: source.name.clone(),
                        current: value.current,
                    }),
                    ..Default::default()
                },
            })
        }
        "ContainerResource" => {
            let failed = |error: String| MetricFailure {
                reason: "FailedGetContainerResourceMetric",
                wrapped: format!(
                    "failed to get {} container metric value: {error}",
                    spec.container_resource
                        .as_ref()
                        .map_or("", |r| r.container.as_str())
                ),
                error,
            };
            let source = spec.container_resource.as_ref().ok_or_else(|| {
                failed("invalid container resource metric source: no resource".into())
            })?;
            let value = resource_replicas(
                &source.name,
                &source.target,
                Some(source.container.as_str()),
                current,
                inputs,
                now,
            )
            .map_err(failed)?;
            Ok(MetricProposal {
                replicas: value.replicas,
                name: value.name,
                status: MetricStatus {
                    type_: "ContainerResource".into(),
                    container_resource: Some(ContainerResourceMetricStatus {
                        name: source.name.clone(),
                        container: source.container.clone(),
                        current: value.current,
                    }),
                    ..Default::default()
                },
            })
        }
        "Pods" => {
            let name = spec.pods.as_ref().map_or("", |p| p.metric.name.as_str());
            Err(no_api(
                "FailedGetPodsMetric",
                format!("unable to get metric {name}: {NO_CUSTOM_METRICS_API}"),
                "failed to get pods metric value".into(),
            ))
        }
        "Object" => {
            let name = spec.object.as_ref().map_or("", |o| o.metric.name.as_str());
            Err(no_api(
                "FailedGetObjectMetric",
                format!("unable to get metric {name}: {NO_CUSTOM_METRICS_API}"),
                "failed to get object metric value".into(),
            ))
        }
        "External" => {
            let name = spec
                .external
                .as_ref()
                .map_or("", |e| e.metric.name.as_str());
            Err(no_api(
                "FailedGetExternalMetric",
                format!("unable to get external metric {name}: {NO_EXTERNAL_METRICS_API}"),
                format!("failed to get {name} external metric value"),
            ))
        }
        other => {
            let error = format!("unknown metric source type {other:?}");
            Err(MetricFailure {
                reason: "InvalidMetricSourceType",
                wrapped: error.clone(),
                error,
            })
        }
    }
}

/// A Resource or ContainerResource metric's proposal.
#[derive(Debug, PartialEq)]
struct ResourceProposal {
    replicas: i32,
    name: String,
    current: MetricValueStatus,
}

/// kube's `computeStatusForResourceMetricGeneric`: an average value target if there is one, else
/// an average utilization target.
fn resource_replicas(
    resource: &str,
    target: &MetricTarget,
    container: Option<&str>,
    current: i32,
    inputs: &Inputs,
    now: Timestamp,
) -> Result<ResourceProposal, String> {
    let (goal, what) = match (&target.average_value, target.average_utilization) {
        (Some(value), _) => match milli_value(&value.0) {
            Some(milli) if milli > 0 => (Goal::AverageValue(milli), "usage"),
            _ => return Err(format!("invalid target average value {:?}", value.0)),
        },
        (None, Some(percent)) if percent > 0 => (Goal::Utilization(percent), "utilization"),
        (None, Some(percent)) => return Err(format!("invalid target utilization {percent}")),
        (None, None) => {
            return Err("invalid resource metric source: neither an average utilization target nor an average value (usage) target was set".into());
        }
    };
    let proposal = replicas_from_inputs(current, goal, resource, container, inputs, now)
        .map_err(|e| format!("failed to get {resource} {what}: {e}"))?;
    let average_value = Some(Quantity(format_milli(proposal.average)));
    let (name, current) = match goal {
        Goal::AverageValue(_) => (
            format!("{resource} resource"),
            MetricValueStatus {
                average_value,
                ..Default::default()
            },
        ),
        Goal::Utilization(_) => (
            if container.is_some() {
                format!("{resource} container resource utilization (percentage of request)")
            } else {
                format!("{resource} resource utilization (percentage of request)")
            },
            MetricValueStatus {
                average_utilization: proposal.utilization,
                average_value,
                ..Default::default()
            },
        ),
    };
    Ok(ResourceProposal {
        replicas: proposal.replicas,
        name,
        current,
    })
}

/// kube's `GetResourceReplicas` / `GetRawResourceReplicas` from the fetched inputs.
fn replicas_from_inputs(
    current: i32,
    goal: Goal,
    resource: &str,
    container: Option<&str>,
    inputs: &Inputs,
    now: Timestamp,
) -> Result<Proposal, String> {
    let items = inputs
        .metrics
        .as_ref()
        .map_err(|e| format!("unable to get metrics for resource {resource}: {e}"))?;
    if items.is_empty() {
        return Err(format!(
            "unable to get metrics for resource {resource}: no metrics returned from resource metrics API"
        ));
    }
    let metrics = pod_metrics(items, resource, container);
    let pods = inputs
        .pods
        .as_ref()
        .map_err(|e| format!("unable to get pods while calculating replica count: {e}"))?;
    replica_count(current, goal, resource, container, pods, metrics, now)
}

/// One pod's usage of a resource, from its PodMetrics.
#[derive(Debug, Clone, Copy, PartialEq)]
struct PodMetric {
    /// Thousandths of a unit (millicores, millibytes).
    value: i64,
    timestamp: Option<Timestamp>,
    window: Duration,
}

/// Each pod's usage of `resource` (summed over its containers, or of `container` only). A pod
/// missing the resource in one of its containers has no sample, as in kube's metrics client.
fn pod_metrics(
    items: &[DynamicObject],
    resource: &str,
    container: Option<&str>,
) -> BTreeMap<String, PodMetric> {
    let usage = |c: &Value| c["usage"][resource].as_str().and_then(milli_value);
    items
        .iter()
        .filter_map(|item| {
            let name = item.metadata.name.clone()?;
            let containers = item.data["containers"]
                .as_array()
                .map_or(&[][..], Vec::as_slice);
            let value = match container {
                None if containers.is_empty() => None,
                None => containers
                    .iter()
                    .try_fold(0i64, |sum, c| Some(sum.saturating_add(usage(c)?))),
                Some(wanted) => containers
                    .iter()
                    .find(|c| c["name"] == wanted)
                    .and_then(usage),
            }?;
            let metric = PodMetric {
                value,
                timestamp: item.data["timestamp"].as_str().and_then(|t| t.parse().ok()),
                window: item.data["window"]
                    .as_str()
                    .and_then(go_duration)
                    .unwrap_or_default(),
            };
            Some((name, metric))
        })
        .collect()
}

/// A Go duration as `metav1.Duration` writes it (`30s`, `1m0s`, `1.5s`, `500ms`).
fn go_duration(text: &str) -> Option<Duration> {
    if text == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = text;
    let mut seconds = 0.0;
    while !rest.is_empty() {
        let number_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let (number, tail) = rest.split_at(number_end);
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_end);
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        seconds += number.parse::<f64>().ok()? * scale;
        rest = next;
    }
    Duration::try_from_secs_f64(seconds).ok()
}

/// Each pod's request of `resource` in thousandths: the sum over its containers (or `container`
/// only) and restartable init containers. A container without the request is an error.
fn pod_requests(
    pods: &[Pod],
    resource: &str,
    container: Option<&str>,
) -> Result<BTreeMap<String, i64>, String> {
    let mut requests = BTreeMap::new();
    for pod in pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let spec = pod.spec.as_ref();
        let regular = spec.map(|s| s.containers.iter()).into_iter().flatten();
        let sidecars = spec
            .and_then(|s| s.init_containers.as_ref())
            .into_iter()
            .flatten()
            .filter(|c| c.restart_policy.as_deref() == Some("Always"));
        let mut sum = 0i64;
        for c in regular
            .chain(sidecars)
            .filter(|c| container.is_none_or(|wanted| c.name == wanted))
        {
            let request = c
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get(resource))
                .and_then(|q| milli_value(&q.0))
                .ok_or_else(|| {
                    format!(
                        "missing request for {resource} in container {} of Pod {name}",
                        c.name
                    )
                })?;
            sum = sum.saturating_add(request);
        }
        requests.insert(name, sum);
    }
    Ok(requests)
}

/// The pods of a target sorted the way the replica calculator treats them (kube's `groupPods`).
#[derive(Debug, Default, PartialEq)]
struct PodGroups {
    /// Pods with a usable sample.
    ready: usize,
    /// Pending pods, and for CPU pods whose samples may be skewed by start-up.
    unready: BTreeSet<String>,
    /// Pods without a sample.
    missing: BTreeSet<String>,
    /// Pods being deleted or Failed.
    ignored: BTreeSet<String>,
}

fn group_pods(
    pods: &[Pod],
    metrics: &BTreeMap<String, PodMetric>,
    resource: &str,
    now: Timestamp,
) -> PodGroups {
    let mut groups = PodGroups::default();
    for pod in pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let phase = pods::phase(pod);
        if pods::is_terminating(pod) || phase == Some("Failed") {
            groups.ignored.insert(name);
        } else if phase == Some("Pending") {
            groups.unready.insert(name);
        } else if let Some(metric) = metrics.get(&name) {
            if resource == "cpu" && cpu_sample_unready(pod, metric, now) {
                groups.unready.insert(name);
            } else {
                groups.ready += 1;
            }
        } else {
            groups.missing.insert(name);
        }
    }
    groups
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Whether a pod's CPU sample must not be trusted yet. Within the initialization period after
/// start, unless the pod is Ready and the sample covers a full window after it became Ready; after
/// it, when the pod is unready and has never been ready.
fn cpu_sample_unready(pod: &Pod, metric: &PodMetric, now: Timestamp) -> bool {
    let started = pod.status.as_ref().and_then(|s| s.start_time.as_ref());
    let (Some(condition), Some(started)) = (pods::ready_condition(pod), started) else {
        return true;
    };
    let started = started.0.as_millisecond();
    let transition = condition
        .last_transition_time
        .as_ref()
        .map_or(0, |t| t.0.as_millisecond());
    let not_ready = condition.status == "False";
    if started.saturating_add(millis(CPU_INITIALIZATION_PERIOD)) > now.as_millisecond() {
        not_ready
            || metric.timestamp.is_some_and(|t| {
                t.as_millisecond() < transition.saturating_add(millis(metric.window))
            })
    } else {
        not_ready && started.saturating_add(millis(INITIAL_READINESS_DELAY)) > transition
    }
}

/// What a resource metric is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Goal {
    /// Percent of the pods' requests.
    Utilization(i32),
    /// Thousandths of a unit per pod.
    AverageValue(i64),
}

impl Goal {
    /// The usage ratio (current over target) of `usage`, with the current utilization (for a
    /// utilization goal) and the average usage per pod.
    fn measure(
        self,
        usage: &BTreeMap<String, i64>,
        requests: &BTreeMap<String, i64>,
    ) -> Result<(f64, Option<i32>, i64), String> {
        match self {
            Goal::Utilization(target) => {
                let (mut total, mut requested, mut count) = (0i64, 0i64, 0i64);
                for (pod, value) in usage {
                    // Samples of pods that were not listed have no request: extraneous.
                    if let Some(request) = requests.get(pod) {
                        total = total.saturating_add(*value);
                        requested = requested.saturating_add(*request);
                        count += 1;
                    }
                }
                if requested == 0 {
                    return Err("no metrics returned matched known pods".into());
                }
                // Whole percent, as kube truncates it before dividing.
                let utilization =
                    i32::try_from(total.saturating_mul(100) / requested).unwrap_or(i32::MAX);
                let average = total.checked_div(count).unwrap_or(0);
                Ok((
                    f64::from(utilization) / f64::from(target),
                    Some(utilization),
                    average,
                ))
            }
            Goal::AverageValue(target) => {
                let total = usage.values().fold(0i64, |sum, v| sum.saturating_add(*v));
                let count = i64::try_from(usage.len()).unwrap_or(i64::MAX);
                let average = total.checked_div(count).unwrap_or(0);
                Ok((average as f64 / target as f64, None, average))
            }
        }
    }

    /// The usage assumed for a pod without a sample when the ratio is `ratio`: on a scale-down
    /// what keeps the pod at the target (100 % of its request, or the target when above 100 %),
    /// on a scale-up nothing.
    fn assumed_for_missing(self, ratio: f64, request: i64) -> Option<i64> {
        match self {
            Goal::Utilization(target) if ratio < 1.0 => {
                Some(request.saturating_mul(i64::from(target.max(100))) / 100)
            }
            Goal::Utilization(_) if ratio > 1.0 => Some(0),
            Goal::Utilization(_) => None,
            Goal::AverageValue(target) if ratio < 1.0 => Some(target),
            Goal::AverageValue(_) => Some(0),
        }
    }
}

/// A metric's replica count and the current value behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Proposal {
    replicas: i32,
    /// The current utilization in percent, for a utilization goal.
    utilization: Option<i32>,
    /// The average usage per pod, in thousandths.
    average: i64,
}

fn within_tolerance(ratio: f64) -> bool {
    (1.0 - ratio).abs() <= TOLERANCE
}

fn ceil_replicas(value: f64) -> i32 {
    // `as` saturates, and a NaN becomes 0.
    value.ceil() as i32
}

/// kube's replica calculator for resource metrics: the replica count that brings the pods' usage
/// to the goal.
fn replica_count(
    current: i32,
    goal: Goal,
    resource: &str,
    container: Option<&str>,
    pods: &[Pod],
    metrics: BTreeMap<String, PodMetric>,
    now: Timestamp,
) -> Result<Proposal, String> {
    if pods.is_empty() {
        return Err("no pods returned by selector while calculating replica count".into());
    }
    let groups = group_pods(pods, &metrics, resource, now);
    let mut usage: BTreeMap<String, i64> = metrics
        .into_iter()
        .filter(|(name, _)| !groups.ignored.contains(name) && !groups.unready.contains(name))
        .map(|(name, metric)| (name, metric.value))
        .collect();
    if usage.is_empty() {
        return Err("did not receive metrics for targeted pods (pods might be unready)".into());
    }
    let requests = match goal {
        Goal::Utilization(_) => pod_requests(pods, resource, container)?,
        Goal::AverageValue(_) => BTreeMap::new(),
    };
    let (ratio, utilization, average) = goal.measure(&usage, &requests)?;
    let proposal = |replicas| Proposal {
        replicas,
        utilization,
        average,
    };

    let scale_up_with_unready = !groups.unready.is_empty() && ratio > 1.0;
    if !scale_up_with_unready && groups.missing.is_empty() {
        if within_tolerance(ratio) {
            return Ok(proposal(current));
        }
        return Ok(proposal(ceil_replicas(ratio * groups.ready as f64)));
    }

    // Recount with assumptions that damp the change: pods without samples at the target on a
    // scale-down and idle on a scale-up, unready pods idle on a scale-up.
    for name in &groups.missing {
        let request = requests.get(name).copied().unwrap_or(0);
        if let Some(assumed) = goal.assumed_for_missing(ratio, request) {
            usage.insert(name.clone(), assumed);
        }
    }
    if scale_up_with_unready {
        for name in &groups.unready {
            usage.insert(name.clone(), 0);
        }
    }
    let (new_ratio, _, _) = goal.measure(&usage, &requests)?;
    let reverses = (ratio > 1.0 && new_ratio < 1.0) || (ratio < 1.0 && new_ratio > 1.0);
    if within_tolerance(new_ratio) || reverses {
        return Ok(proposal(current));
    }
    let replicas = ceil_replicas(new_ratio * usage.len() as f64);
    if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
        return Ok(proposal(current));
    }
    Ok(proposal(replicas))
}

/// How a rate-limit policy's proposals are chosen (`selectPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SelectPolicy {
    /// The largest change.
    Max,
    /// The smallest change.
    Min,
    /// No scaling in this direction.
    Disabled,
}

/// One scaling policy: at most `value` pods, or `value` percent, per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Policy {
    percent: bool,
    value: i32,
    period: Duration,
}

/// `spec.behavior.scaleUp` or `scaleDown` with kube's defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ScalingRules {
    window: Duration,
    select: SelectPolicy,
    policies: Vec<Policy>,
}

fn scaling_rules(
    rules: Option<&HPAScalingRules>,
    default_window: Duration,
    default_policies: Vec<Policy>,
) -> ScalingRules {
    let Some(rules) = rules else {
        return ScalingRules {
            window: default_window,
            select: SelectPolicy::Max,
            policies: default_policies,
        };
    };
    let seconds = |s: i32| Duration::from_secs(u64::try_from(s).unwrap_or(0));
    ScalingRules {
        window: rules
            .stabilization_window_seconds
            .map_or(default_window, seconds),
        select: match rules.select_policy.as_deref() {
            Some("Min") => SelectPolicy::Min,
            Some("Disabled") => SelectPolicy::Disabled,
            _ => SelectPolicy::Max,
        },
        policies: rules
            .policies
            .as_ref()
            .map_or(default_policies, |policies| {
                policies
                    .iter()
                    .filter_map(|p| {
                        let percent = match p.type_.as_str() {
                            "Percent" => true,
                            "Pods" => false,
                            _ => return None,
                        };
                        Some(Policy {
                            percent,
                            value: p.value,
                            period: seconds(p.period_seconds),
                        })
                    })
                    .collect()
            }),
    }
}

/// Scale-up rules: no stabilization; at most 4 pods or 100 % per 15 s, whichever is more.
fn scale_up_rules(rules: Option<&HPAScalingRules>) -> ScalingRules {
    let per_15s = Duration::from_secs(15);
    scaling_rules(
        rules,
        Duration::ZERO,
        vec![
            Policy {
                percent: false,
                value: 4,
                period: per_15s,
            },
            Policy {
                percent: true,
                value: 100,
                period: per_15s,
            },
        ],
    )
}

/// Scale-down rules: 300 s of stabilization; up to 100 % per 15 s.
fn scale_down_rules(rules: Option<&HPAScalingRules>) -> ScalingRules {
    scaling_rules(
        rules,
        DOWNSCALE_STABILIZATION,
        vec![Policy {
            percent: true,
            value: 100,
            period: Duration::from_secs(15),
        }],
    )
}

/// A normalized recommendation and the conditions that explain it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Normalized {
    replicas: i32,
    /// The `AbleToScale` (True) reason and message.
    stabilization: (&'static str, &'static str),
    /// `ScalingLimited`: whether the count was limited, the reason and the message.
    limit: (bool, &'static str, &'static str),
}

const READY_FOR_NEW_SCALE: (&str, &str) =
    ("ReadyForNewScale", "recommended size matches current size");
const SCALE_DOWN_STABILIZED: (&str, &str) = (
    "ScaleDownStabilized",
    "recent recommendations were higher than current one, applying the highest recent recommendation",
);
const SCALE_UP_STABILIZED: (&str, &str) = (
    "ScaleUpStabilized",
    "recent recommendations were lower than current one, applying the lowest recent recommendation",
);
const DESIRED_WITHIN_RANGE: (&str, &str) = (
    "DesiredWithinRange",
    "the desired count is within the acceptable range",
);
const TOO_MANY_REPLICAS: (&str, &str) = (
    "TooManyReplicas",
    "the desired replica count is more than the maximum replica count",
);
const TOO_FEW_REPLICAS: (&str, &str) = (
    "TooFewReplicas",
    "the desired replica count is less than the minimum replica count",
);
const SCALE_UP_LIMIT: (&str, &str) = (
    "ScaleUpLimit",
    "the desired replica count is increasing faster than the maximum scale rate",
);
const SCALE_DOWN_LIMIT: (&str, &str) = (
    "ScaleDownLimit",
    "the desired replica count is decreasing faster than the maximum scale rate",
);

/// Stabilizes `desired`, limits its rate and clamps it to `[min, max]`, recording it as a
/// recommendation (kube's `normalizeDesiredReplicas` and `normalizeDesiredReplicasWithBehaviors`).
fn normalize(
    memory: &mut Memory,
    behavior: Option<&HorizontalPodAutoscalerBehavior>,
    current: i32,
    desired: i32,
    min: i32,
    max: i32,
    now: Instant,
) -> Normalized {
    let (stabilized, stabilization, (replicas, limit)) = match behavior {
        None => {
            let stabilized = stabilize_down(&mut memory.recommendations, desired, now);
            let reason = if stabilized == desired {
                READY_FOR_NEW_SCALE
            } else {
                SCALE_DOWN_STABILIZED
            };
            (
                stabilized,
                reason,
                limit_legacy(current, stabilized, min, max),
            )
        }
        Some(behavior) => {
            let up = scale_up_rules(behavior.scale_up.as_ref());
            let down = scale_down_rules(behavior.scale_down.as_ref());
            let stabilized = stabilize(
                &mut memory.recommendations,
                current,
                desired,
                up.window,
                down.window,
                now,
            );
            let reason = if stabilized == desired {
                READY_FOR_NEW_SCALE
            } else if desired >= current {
                SCALE_UP_STABILIZED
            } else {
                SCALE_DOWN_STABILIZED
            };
            let limited = limit_with_rules(memory, &up, &down, current, stabilized, min, max, now);
            (stabilized, reason, limited)
        }
    };
    Normalized {
        replicas,
        stabilization,
        limit: (replicas != stabilized, limit.0, limit.1),
    }
}

/// Keeps `recommendations` younger than `keep`, then adds `desired`.
fn record(recommendations: &mut Vec<Sample>, desired: i32, keep: Duration, now: Instant) {
    recommendations.retain(|r| now.duration_since(r.at) <= keep);
    recommendations.push(Sample {
        at: now,
        replicas: desired,
    });
}

/// Without `spec.behavior`: the highest recommendation of the downscale stabilization window.
fn stabilize_down(recommendations: &mut Vec<Sample>, desired: i32, now: Instant) -> i32 {
    let highest = recommendations
        .iter()
        .filter(|r| now.duration_since(r.at) <= DOWNSCALE_STABILIZATION)
        .map(|r| r.replicas)
        .fold(desired, i32::max);
    record(recommendations, desired, DOWNSCALE_STABILIZATION, now);
    highest
}

/// With `spec.behavior`: no higher than the lowest recommendation of the scale-up window and no
/// lower than the highest of the scale-down window, starting from the current count.
fn stabilize(
    recommendations: &mut Vec<Sample>,
    current: i32,
    desired: i32,
    up_window: Duration,
    down_window: Duration,
    now: Instant,
) -> i32 {
    let within = |window: Duration| {
        recommendations
            .iter()
            .filter(move |r| now.duration_since(r.at) < window)
            .map(|r| r.replicas)
    };
    let up = within(up_window).fold(desired, i32::min);
    let down = within(down_window).fold(desired, i32::max);
    record(recommendations, desired, up_window.max(down_window), now);
    current.max(up).min(down)
}

/// Without `spec.behavior`: at most max(2 × current, 4) replicas, clamped to `[min, max]`.
fn limit_legacy(
    current: i32,
    desired: i32,
    min: i32,
    max: i32,
) -> (i32, (&'static str, &'static str)) {
    let scale_up_limit = current.saturating_mul(2).max(4);
    let (highest, reason) = if max > scale_up_limit {
        (scale_up_limit, SCALE_UP_LIMIT)
    } else {
        (max, TOO_MANY_REPLICAS)
    };
    if desired < min {
        (min, TOO_FEW_REPLICAS)
    } else if desired > highest {
        (highest, reason)
    } else {
        (desired, DESIRED_WITHIN_RANGE)
    }
}

/// Replicas changed by the `events` younger than `period`.
fn changed_within(events: &[Sample], period: Duration, now: Instant) -> i32 {
    events
        .iter()
        .filter(|e| now.duration_since(e.at) < period)
        .fold(0, |sum, e| sum.saturating_add(e.replicas))
}

/// The replica count each policy allows, from the count at the start of its period.
fn policy_limits<'a>(
    memory: &'a Memory,
    rules: &'a ScalingRules,
    current: i32,
    up: bool,
    now: Instant,
) -> impl Iterator<Item = i32> + 'a {
    rules.policies.iter().map(move |p| {
        let start = current - changed_within(&memory.scale_ups, p.period, now)
            + changed_within(&memory.scale_downs, p.period, now);
        let change = f64::from(p.value) / 100.0;
        match (p.percent, up) {
            (false, true) => start.saturating_add(p.value),
            (false, false) => start.saturating_sub(p.value),
            // Rounded up, or a small target could never grow.
            (true, true) => (f64::from(start) * (1.0 + change)).ceil() as i32,
            (true, false) => (f64::from(start) * (1.0 - change)) as i32,
        }
    })
}

/// With `spec.behavior`: the scale-up or scale-down policies' limit, clamped to `[min, max]`
/// (kube's `convertDesiredReplicasWithBehaviorRate`).
#[allow(clippy::too_many_arguments)]
fn limit_with_rules(
    memory: &Memory,
    up: &ScalingRules,
    down: &ScalingRules,
    current: i32,
    desired: i32,
    min: i32,
    max: i32,
    now: Instant,
) -> (i32, (&'static str, &'static str)) {
    if desired > current {
        let limit = match up.select {
            SelectPolicy::Disabled => current,
            SelectPolicy::Max => policy_limits(memory, up, current, true, now)
                .max()
                .unwrap_or(i32::MIN),
            SelectPolicy::Min => policy_limits(memory, up, current, true, now)
                .min()
                .unwrap_or(i32::MAX),
        }
        // No further scale-up until the recent ones age out.
        .max(current);
        let (highest, reason) = if max > limit {
            (limit, SCALE_UP_LIMIT)
        } else {
            (max, TOO_MANY_REPLICAS)
        };
        if desired > highest {
            return (highest, reason);
        }
    } else if desired < current {
        let limit = match down.select {
            SelectPolicy::Disabled => current,
            SelectPolicy::Max => policy_limits(memory, down, current, false, now)
                .min()
                .unwrap_or(i32::MAX),
            SelectPolicy::Min => policy_limits(memory, down, current, false, now)
                .max()
                .unwrap_or(i32::MIN),
        }
        // No further scale-down until the recent ones age out.
        .min(current);
        let (lowest, reason) = if min < limit {
            (limit, SCALE_DOWN_LIMIT)
        } else {
            (min, TOO_FEW_REPLICAS)
        };
        if desired < lowest {
            return (lowest, reason);
        }
    }
    (desired, DESIRED_WITHIN_RANGE)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::autoscaling::v2::HPAScalingPolicy;
    use k8s_openapi::api::core::v1::{
        Container, PodCondition, PodSpec, PodStatus, ResourceRequirements,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn ts(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).expect("valid timestamp")
    }

    /// The tests' wall clock.
    const NOW: i64 = 1_700_000_000;

    /// A pod named `name` in `phase`, Ready (or not) for the last hour, requesting `cpu` in its
    /// one container `app`.
    fn pod(name: &str, phase: &str, ready: bool, cpu: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "app".into(),
                    resources: Some(ResourceRequirements {
                        requests: cpu.map(|q| [("cpu".to_owned(), Quantity(q.into()))].into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                start_time: Some(Time(ts(NOW - 3600))),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    last_transition_time: Some(Time(ts(NOW - 3600))),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    /// A sample of `value` thousandths taken just now.
    fn sample(value: i64) -> PodMetric {
        PodMetric {
            value,
            timestamp: Some(ts(NOW)),
            window: Duration::from_secs(10),
        }
    }

    fn samples(pairs: &[(&str, i64)]) -> BTreeMap<String, PodMetric> {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), sample(*value)))
            .collect()
    }

    fn cpu_replicas(
        current: i32,
        goal: Goal,
        pods: &[Pod],
        metrics: &[(&str, i64)],
    ) -> Result<Proposal, String> {
        replica_count(current, goal, "cpu", None, pods, samples(metrics), ts(NOW))
    }

    #[test]
    fn one_pod_at_1000_percent_of_a_50_percent_target_scales_to_the_maximum_of_3() {
        let pods = [pod("web-1", "Running", true, Some("100m"))];
        let proposal =
            cpu_replicas(1, Goal::Utilization(50), &pods, &[("web-1", 1000)]).expect("computable");
        assert_eq!(
            proposal,
            Proposal {
                replicas: 20,
                utilization: Some(1000),
                average: 1000
            }
        );
        let mut memory = Memory::default();
        let now = Instant::now();
        memory.record_initial(1, now);
        let normalized = normalize(&mut memory, None, 1, proposal.replicas, 1, 3, now);
        assert_eq!(normalized.replicas, 3);
        assert_eq!(
            normalized.limit,
            (true, TOO_MANY_REPLICAS.0, TOO_MANY_REPLICAS.1)
        );
        assert_eq!(normalized.stabilization, READY_FOR_NEW_SCALE);
    }

    #[test]
    fn usage_within_tolerance_keeps_the_current_count() {
        let pods: Vec<Pod> = (1..=4)
            .map(|i| pod(&format!("web-{i}"), "Running", true, Some("100m")))
            .collect();
        // 105 % and 95 % of a 100 % target: within 10 %.
        for usage in [105, 95] {
            let metrics: Vec<(String, i64)> =
                (1..=4).map(|i| (format!("web-{i}"), usage)).collect();
            let metrics: Vec<(&str, i64)> = metrics.iter().map(|(n, v)| (n.as_str(), *v)).collect();
            let proposal =
                cpu_replicas(4, Goal::Utilization(100), &pods, &metrics).expect("computable");
            assert_eq!(proposal.replicas, 4, "usage {usage}%");
            assert_eq!(proposal.utilization, Some(usage as i32));
        }
        // 150 %: out of tolerance.
        let metrics: Vec<(String, i64)> = (1..=4).map(|i| (format!("web-{i}"), 150)).collect();
        let metrics: Vec<(&str, i64)> = metrics.iter().map(|(n, v)| (n.as_str(), *v)).collect();
        let proposal =
            cpu_replicas(4, Goal::Utilization(100), &pods, &metrics).expect("computable");
        assert_eq!(proposal.replicas, 6);
    }

    #[test]
    fn scale_down_waits_for_the_300_second_stabilization_window() {
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let mut memory = Memory::default();
        memory.record_initial(5, at(0));
        // Load drops: 2 replicas would do, but 5 was recommended within the last 300 s.
        for t in [15, 150, 299] {
            let n = normalize(&mut memory, None, 5, 2, 1, 10, at(t));
            assert_eq!(n.replicas, 5, "at {t}s");
            assert_eq!(n.stabilization, SCALE_DOWN_STABILIZED);
            assert!(!n.limit.0);
        }
        let n = normalize(&mut memory, None, 5, 2, 1, 10, at(301));
        assert_eq!(n.replicas, 2);
        assert_eq!(n.stabilization, READY_FOR_NEW_SCALE);
        // Only samples of the window are kept.
        assert!(memory.recommendations.iter().all(|r| r.replicas == 2));
    }

    #[test]
    fn replica_bounds_clamp_and_set_scaling_limited() {
        let now = Instant::now();
        // (current, desired, min, max) -> (replicas, limited, reason)
        let cases = [
            ((3, 1, 2, 10), (2, true, TOO_FEW_REPLICAS.0)),
            ((8, 12, 1, 10), (10, true, TOO_MANY_REPLICAS.0)),
            ((2, 20, 1, 50), (4, true, SCALE_UP_LIMIT.0)),
            ((10, 30, 1, 50), (20, true, SCALE_UP_LIMIT.0)),
            ((4, 6, 1, 10), (6, false, DESIRED_WITHIN_RANGE.0)),
        ];
        for ((current, desired, min, max), (replicas, limited, reason)) in cases {
            let mut memory = Memory::default();
            let n = normalize(&mut memory, None, current, desired, min, max, now);
            assert_eq!(
                (n.replicas, n.limit.0, n.limit.1),
                (replicas, limited, reason),
                "{current} -> {desired} in [{min}, {max}]"
            );
        }
    }

    #[test]
    fn pods_without_metrics_damp_the_change() {
        let pods: Vec<Pod> = ["a", "b", "c", "d"]
            .iter()
            .map(|n| pod(n, "Running", true, Some("100m")))
            .collect();
        // Scale-up: c and d count as idle, 400m of 400m is on target.
        let p = cpu_replicas(4, Goal::Utilization(100), &pods, &[("a", 200), ("b", 200)]);
        assert_eq!(p.expect("computable").replicas, 4);
        // Still above target with them idle: 600m of 400m, 6 replicas.
        let p = cpu_replicas(4, Goal::Utilization(100), &pods, &[("a", 300), ("b", 300)]);
        assert_eq!(p.expect("computable").replicas, 6);
        // Scale-down: c and d count as at 100 % of their request, 220m of 400m is above a 50 %
        // target, so no scale-down.
        let p = cpu_replicas(4, Goal::Utilization(50), &pods, &[("a", 10), ("b", 10)])
            .expect("computable");
        assert_eq!((p.replicas, p.utilization), (4, Some(10)));
    }

    #[test]
    fn unready_pods_count_as_idle_on_a_scale_up() {
        let pods = [
            pod("a", "Running", true, Some("100m")),
            pod("b", "Running", true, Some("100m")),
            pod("c", "Pending", false, Some("100m")),
            pod("gone", "Failed", false, Some("100m")),
        ];
        // 200 % on a and b; with c idle 133 %: ceil(1.33 * 3) = 4.
        let p = cpu_replicas(3, Goal::Utilization(100), &pods, &[("a", 200), ("b", 200)]);
        assert_eq!(p.expect("computable").replicas, 4);
        // A Running pod that is not Ready is unready for CPU too, and its sample is dropped.
        let pods = [
            pod("a", "Running", true, Some("100m")),
            pod("b", "Running", false, Some("100m")),
        ];
        let p = cpu_replicas(2, Goal::Utilization(100), &pods, &[("a", 300), ("b", 900)]);
        assert_eq!(p.expect("computable").replicas, 3);
    }

    #[test]
    fn cpu_samples_of_starting_pods_are_unready_until_a_window_after_ready() {
        let mut starting = pod("a", "Running", true, Some("100m"));
        if let Some(status) = starting.status.as_mut() {
            status.start_time = Some(Time(ts(NOW - 60)));
            if let Some(c) = status.conditions.as_mut().and_then(|c| c.first_mut()) {
                c.last_transition_time = Some(Time(ts(NOW - 50)));
            }
        }
        let early = PodMetric {
            value: 100,
            timestamp: Some(ts(NOW - 45)),
            window: Duration::from_secs(10),
        };
        assert!(cpu_sample_unready(&starting, &early, ts(NOW)));
        assert!(!cpu_sample_unready(&starting, &sample(100), ts(NOW)));
        let settled = pod("b", "Running", true, Some("100m"));
        assert!(!cpu_sample_unready(&settled, &early, ts(NOW)));
        let mut no_start = settled.clone();
        if let Some(status) = no_start.status.as_mut() {
            status.start_time = None;
        }
        assert!(cpu_sample_unready(&no_start, &sample(100), ts(NOW)));
    }

    #[test]
    fn utilization_needs_every_container_to_request_the_resource() {
        let pods = [pod("web-1", "Running", true, None)];
        let err = cpu_replicas(1, Goal::Utilization(50), &pods, &[("web-1", 100)]);
        assert_eq!(
            err,
            Err("missing request for cpu in container app of Pod web-1".into())
        );
        // An average value needs no request.
        let p = cpu_replicas(1, Goal::AverageValue(50), &pods, &[("web-1", 100)]);
        assert_eq!(p.expect("computable").replicas, 2);
    }

    #[test]
    fn average_value_compares_the_mean_usage_per_pod() {
        let pods = [
            pod("a", "Running", true, None),
            pod("b", "Running", true, None),
        ];
        let p = cpu_replicas(2, Goal::AverageValue(200), &pods, &[("a", 300), ("b", 500)])
            .expect("computable");
        assert_eq!(
            p,
            Proposal {
                replicas: 4,
                utilization: None,
                average: 400
            }
        );
    }

    #[test]
    fn no_pods_or_no_usable_samples_are_errors() {
        assert_eq!(
            cpu_replicas(1, Goal::Utilization(50), &[], &[]),
            Err("no pods returned by selector while calculating replica count".into())
        );
        let pods = [pod("a", "Pending", false, Some("100m"))];
        assert_eq!(
            cpu_replicas(1, Goal::Utilization(50), &pods, &[("a", 10)]),
            Err("did not receive metrics for targeted pods (pods might be unready)".into())
        );
    }

    #[test]
    fn pod_metrics_sum_containers_and_skip_incomplete_pods() {
        let item = |name: &str, containers: Value| -> DynamicObject {
            serde_json::from_value(json!({
                "apiVersion": "metrics.k8s.io/v1beta1",
                "kind": "PodMetrics",
                "metadata": {"name": name, "namespace": "default"},
                "timestamp": "2023-11-14T22:13:20Z",
                "window": "10.5s",
                "containers": containers,
            }))
            .expect("a PodMetrics document")
        };
        let items = [
            item(
                "two",
                json!([
                    {"name": "app", "usage": {"cpu": "250m", "memory": "1Ki"}},
                    {"name": "sidecar", "usage": {"cpu": "12345n", "memory": "2Ki"}},
                ]),
            ),
            item(
                "no-cpu",
                json!([{"name": "app", "usage": {"memory": "1Ki"}}]),
            ),
            item("empty", json!([])),
        ];
        let cpu = pod_metrics(&items, "cpu", None);
        assert_eq!(cpu.keys().collect::<Vec<_>>(), ["two"]);
        assert_eq!(
            cpu.get("two"),
            Some(&PodMetric {
                value: 251,
                timestamp: Some(ts(NOW)),
                window: Duration::from_millis(10_500),
            })
        );
        let memory = pod_metrics(&items, "memory", None);
        assert_eq!(memory.get("two").map(|m| m.value), Some(3_072_000));
        assert_eq!(memory.get("no-cpu").map(|m| m.value), Some(1_024_000));
        let sidecar = pod_metrics(&items, "cpu", Some("sidecar"));
        assert_eq!(sidecar.get("two").map(|m| m.value), Some(1));
    }

    #[test]
    fn go_durations_parse() {
        let cases = [
            ("30s", Some(Duration::from_secs(30))),
            ("1m0s", Some(Duration::from_secs(60))),
            ("1.5s", Some(Duration::from_millis(1500))),
            ("500ms", Some(Duration::from_millis(500))),
            ("1h2m3s", Some(Duration::from_secs(3723))),
            ("0", Some(Duration::ZERO)),
            ("10", None),
            ("s", None),
            ("5d", None),
        ];
        for (text, want) in cases {
            assert_eq!(go_duration(text), want, "{text:?}");
        }
    }

    fn rules(
        window: Option<i32>,
        select: Option<&str>,
        policies: &[(&str, i32, i32)],
    ) -> HPAScalingRules {
        HPAScalingRules {
            stabilization_window_seconds: window,
            select_policy: select.map(str::to_owned),
            policies: Some(
                policies
                    .iter()
                    .map(|(type_, value, period)| HPAScalingPolicy {
                        type_: (*type_).to_owned(),
                        value: *value,
                        period_seconds: *period,
                    })
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn behavior_policies_limit_the_rate_of_change() {
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let defaults = HorizontalPodAutoscalerBehavior::default();

        // Default scale-up: max(+4, +100 %) per 15 s.
        let mut memory = Memory::default();
        let n = normalize(&mut memory, Some(&defaults), 10, 100, 1, 200, at(0));
        assert_eq!((n.replicas, n.limit.1), (20, SCALE_UP_LIMIT.0));
        memory.record_scale(&defaults, 10, 20, at(0));
        // 5 s later the period still started at 10 replicas: no more room.
        let n = normalize(&mut memory, Some(&defaults), 20, 100, 1, 200, at(5));
        assert_eq!((n.replicas, n.limit.1), (20, SCALE_UP_LIMIT.0));
        // After the period it may double again.
        let n = normalize(&mut memory, Some(&defaults), 20, 100, 1, 200, at(16));
        assert_eq!(n.replicas, 40);

        // Scale-down of at most 1 pod per minute, no stabilization.
        let slow_down = HorizontalPodAutoscalerBehavior {
            scale_down: Some(rules(Some(0), None, &[("Pods", 1, 60)])),
            ..Default::default()
        };
        let mut memory = Memory::default();
        let n = normalize(&mut memory, Some(&slow_down), 5, 1, 1, 10, at(0));
        assert_eq!((n.replicas, n.limit.1), (4, SCALE_DOWN_LIMIT.0));
        memory.record_scale(&slow_down, 5, 4, at(0));
        let n = normalize(&mut memory, Some(&slow_down), 4, 1, 1, 10, at(30));
        assert_eq!(n.replicas, 4);
        let n = normalize(&mut memory, Some(&slow_down), 4, 1, 1, 10, at(61));
        assert_eq!(n.replicas, 3);

        // Disabled: never down.
        let never_down = HorizontalPodAutoscalerBehavior {
            scale_down: Some(rules(Some(0), Some("Disabled"), &[("Percent", 100, 15)])),
            ..Default::default()
        };
        let n = normalize(
            &mut Memory::default(),
            Some(&never_down),
            5,
            1,
            1,
            10,
            at(0),
        );
        assert_eq!(n.replicas, 5);

        // Min picks the smaller change: +1 pod rather than +100 %.
        let careful_up = HorizontalPodAutoscalerBehavior {
            scale_up: Some(rules(
                None,
                Some("Min"),
                &[("Pods", 1, 15), ("Percent", 100, 15)],
            )),
            ..Default::default()
        };
        let n = normalize(
            &mut Memory::default(),
            Some(&careful_up),
            4,
            8,
            1,
            10,
            at(0),
        );
        assert_eq!(n.replicas, 5);
    }

    #[test]
    fn behavior_stabilization_windows_hold_both_directions() {
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let behavior = HorizontalPodAutoscalerBehavior {
            scale_up: Some(rules(Some(60), None, &[("Percent", 100, 15)])),
            scale_down: Some(rules(Some(30), None, &[("Percent", 100, 15)])),
        };
        let mut memory = Memory::default();
        memory.record_initial(3, at(0));
        // Up: the lowest recommendation of the last 60 s (3) holds.
        let n = normalize(&mut memory, Some(&behavior), 3, 6, 1, 10, at(10));
        assert_eq!((n.replicas, n.stabilization), (3, SCALE_UP_STABILIZED));
        let n = normalize(&mut memory, Some(&behavior), 3, 6, 1, 10, at(71));
        assert_eq!((n.replicas, n.stabilization), (6, READY_FOR_NEW_SCALE));
        // Down: the highest of the last 30 s (6) holds.
        let n = normalize(&mut memory, Some(&behavior), 6, 2, 1, 10, at(80));
        assert_eq!((n.replicas, n.stabilization), (6, SCALE_DOWN_STABILIZED));
        let n = normalize(&mut memory, Some(&behavior), 6, 2, 1, 10, at(102));
        assert_eq!(n.replicas, 2);
    }

    #[test]
    fn conditions_keep_their_transition_time_while_the_status_holds() {
        let (t1, t2) = (Time(ts(NOW)), Time(ts(NOW + 15)));
        let mut conditions = None;
        set_condition(
            &mut conditions,
            ABLE_TO_SCALE,
            true,
            "SucceededGetScale",
            "a".into(),
            &t1,
        );
        set_condition(
            &mut conditions,
            SCALING_ACTIVE,
            false,
            "ScalingDisabled",
            "b".into(),
            &t1,
        );
        set_condition(
            &mut conditions,
            ABLE_TO_SCALE,
            true,
            "ReadyForNewScale",
            "c".into(),
            &t2,
        );
        set_condition(
            &mut conditions,
            SCALING_ACTIVE,
            true,
            "ValidMetricFound",
            "d".into(),
            &t2,
        );
        let conditions = conditions.expect("conditions");
        let summary: Vec<(&str, &str, Option<&str>, Option<&Time>)> = conditions
            .iter()
            .map(|c| {
                (
                    c.type_.as_str(),
                    c.status.as_str(),
                    c.reason.as_deref(),
                    c.last_transition_time.as_ref(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (ABLE_TO_SCALE, "True", Some("ReadyForNewScale"), Some(&t1)),
                (SCALING_ACTIVE, "True", Some("ValidMetricFound"), Some(&t2)),
            ]
        );
    }

    #[test]
    fn hpas_sync_every_period_and_at_once_when_their_spec_changes() {
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let mut memory = HashMap::new();
        assert_eq!(take_turn(&mut memory, "uid-1", 1, at(0)), None);
        // Our own status write comes back as a watch event: not due yet.
        assert_eq!(
            take_turn(&mut memory, "uid-1", 1, at(5)),
            Some(Duration::from_secs(10))
        );
        // A spec change is synced at once.
        assert_eq!(take_turn(&mut memory, "uid-1", 2, at(6)), None);
        assert_eq!(take_turn(&mut memory, "uid-1", 2, at(21)), None);
        // An HPA not seen for long is forgotten.
        assert_eq!(take_turn(&mut memory, "uid-2", 1, at(2000)), None);
        assert!(!memory.contains_key("uid-1"));
    }

    #[test]
    fn failing_metric_types_name_kubes_reasons() {
        let inputs = Inputs {
            pods: Ok(Vec::new()),
            metrics: Err("unable to fetch metrics from resource metrics API: the server could not find the requested resource".into()),
        };
        let cpu = default_metric();
        let failure = metric_replicas(&cpu, 1, &inputs, ts(NOW)).expect_err("no metrics API");
        assert_eq!(failure.reason, "FailedGetResourceMetric");
        assert_eq!(
            failure.error,
            "failed to get cpu utilization: unable to get metrics for resource cpu: unable to fetch metrics from resource metrics API: the server could not find the requested resource"
        );
        assert!(
            failure
                .wrapped
                .starts_with("failed to get cpu resource metric value: ")
        );
        let pods_metric = MetricSpec {
            type_: "Pods".into(),
            ..Default::default()
        };
        let failure =
            metric_replicas(&pods_metric, 1, &inputs, ts(NOW)).expect_err("no custom metrics");
        assert_eq!(failure.reason, "FailedGetPodsMetric");
        let unknown = MetricSpec {
            type_: "Telepathy".into(),
            ..Default::default()
        };
        let failure = metric_replicas(&unknown, 1, &inputs, ts(NOW)).expect_err("unknown type");
        assert_eq!(failure.reason, "InvalidMetricSourceType");
        assert_eq!(failure.error, "unknown metric source type \"Telepathy\"");
    }

    #[test]
    fn resource_metric_status_reports_utilization_and_average_value() {
        let inputs = Inputs {
            pods: Ok(vec![pod("web-1", "Running", true, Some("200m"))]),
            metrics: Ok(vec![
                serde_json::from_value(json!({
                    "apiVersion": "metrics.k8s.io/v1beta1",
                    "kind": "PodMetrics",
                    "metadata": {"name": "web-1", "namespace": "default"},
                    "timestamp": "2023-11-14T22:13:20Z",
                    "window": "10s",
                    "containers": [{"name": "app", "usage": {"cpu": "50m"}}],
                }))
                .expect("a PodMetrics document"),
            ]),
        };
        let proposal = metric_replicas(&default_metric(), 1, &inputs, ts(NOW)).expect("computable");
        assert_eq!(proposal.replicas, 1);
        assert_eq!(
            proposal.name,
            "cpu resource utilization (percentage of request)"
        );
        assert_eq!(
            proposal.status,
            MetricStatus {
                type_: "Resource".into(),
                resource: Some(ResourceMetricStatus {
                    name: "cpu".into(),
                    current: MetricValueStatus {
                        average_utilization: Some(25),
                        average_value: Some(Quantity("50m".into())),
                        value: None,
                    },
                }),
                ..Default::default()
            }
        );
    }
}
