//! The Job controller (Kubernetes' `pkg/controller/job`) and the TTL-after-finished controller.
//!
//! Pods are created from the template with `generateName: <job>-` (Indexed: `<job>-<index>-`, with
//! the `batch.kubernetes.io/job-completion-index` annotation and label, hostname `<job>-<index>`
//! and `JOB_COMPLETION_INDEX` in the environment) and the `batch.kubernetes.io/job-tracking`
//! finalizer. The selector and the `batch.kubernetes.io/controller-uid` / `job-name` labels (and
//! the legacy `controller-uid` / `job-name`) come from the API server's Job defaulting.
//!
//! Finished pods are counted as Kubernetes 1.26+ does, so that a deleted pod is never lost or
//! counted twice: their uids go to `status.uncountedTerminatedPods`, then their finalizers are
//! removed, then they move to `status.succeeded` / `status.failed`. A pod being deleted that has
//! not succeeded counts as failed (unless the Job is suspended). Then, as 1.33 does:
//! - more failures than `backoffLimit` (6) adds `FailureTarget` (`BackoffLimitExceeded`), a Job
//!   active longer than `activeDeadlineSeconds` adds `FailureTarget` (`DeadlineExceeded`); enough
//!   successes (`completions`, every index for Indexed, or any success for a work queue without
//!   `completions`) add `SuccessCriteriaMet` (`CompletionsReached`). Active pods are then deleted
//!   and once none is left the terminal `Failed` / `Complete` condition follows;
//! - `suspend` deletes active pods (`Suspended` condition); resuming resets `startTime`;
//! - otherwise it keeps `min(parallelism, completions - succeeded)` pods active.
//!
//! Left out: the exponential backoff between pod re-creations, `podFailurePolicy`,
//! `successPolicy`, `backoffLimitPerIndex`, `podReplacementPolicy: Failed` and `managedBy`.
//! A finished Job with `ttlSecondsAfterFinished` is deleted (background propagation) once that
//! time has passed. Pods whose Job is gone lose the tracking finalizer (an orphan sweep).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::join_all;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::Context;
use crate::util::events::{EventType, Recorder};
use crate::util::owners::{self, Claim};
use crate::util::{Error, is_conflict, is_not_found, now, pods, selector};

/// The controller's name in events (`source.component`).
const COMPONENT: &str = "job-controller";
/// The finalizer that keeps a finished pod until the Job has counted it.
pub(crate) const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// The annotation and label holding an Indexed Job pod's index.
pub(crate) const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// `spec.backoffLimit` when unset.
const DEFAULT_BACKOFF_LIMIT: i32 = 6;

/// Condition types and reasons, as `batch/v1` names them.
mod cond {
    pub(super) const COMPLETE: &str = "Complete";
    pub(super) const FAILED: &str = "Failed";
    pub(super) const SUSPENDED: &str = "Suspended";
    pub(super) const FAILURE_TARGET: &str = "FailureTarget";
    pub(super) const SUCCESS_CRITERIA_MET: &str = "SuccessCriteriaMet";
    pub(super) const BACKOFF_LIMIT_EXCEEDED: &str = "BackoffLimitExceeded";
    pub(super) const DEADLINE_EXCEEDED: &str = "DeadlineExceeded";
    pub(super) const COMPLETIONS_REACHED: &str = "CompletionsReached";
}

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
    let controller = Controller::new(Api::<Job>::all(client.clone()), watcher::Config::default());
    let store = controller.store();
    let sweep_store = store.clone();
    let state = Arc::new(State {
        recorder: Recorder::new(client.clone(), COMPONENT),
        client: client.clone(),
    });
    let controller = controller
        .watches_shared_stream(ctx.pods.touched(), move |pod| pod_owner(&store, &pod))
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(reconcile, error_policy, state)
        .for_each(|result| {
            if let Err(error) = result {
                tracing::debug!(controller = "job", %error, "reconcile failed");
            }
            futures::future::ready(())
        });
    tokio::select! {
        () = controller => {}
        () = sweep_orphans(client, sweep_store) => {}
    }
}

fn pod_owner(store: &Store<Job>, pod: &Pod) -> Option<ObjectRef<Job>> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    if let Some(owner) = owners::controller_ref(&pod.metadata) {
        return (owner.kind == "Job" && owner.api_version.starts_with("batch/"))
            .then(|| ObjectRef::new(&owner.name).within(ns));
    }
    store
        .state()
        .iter()
        .find(|j| {
            j.metadata.namespace.as_deref() == Some(ns)
                && selector::matches(
                    j.spec.as_ref().and_then(|s| s.selector.as_ref()),
                    pod.metadata.labels.as_ref(),
                )
        })
        .map(|j| ObjectRef::from_obj(j.as_ref()))
}

/// Removes the tracking finalizer from pods whose Job no longer exists.
async fn sweep_orphans(client: kube::Client, jobs: Store<Job>) {
    if jobs.wait_until_ready().await.is_err() {
        return;
    }
    let api: Api<Pod> = Api::all(client.clone());
    let config = watcher::Config::default().labels("batch.kubernetes.io/controller-uid");
    let mut events = std::pin::pin!(watcher(api, config).default_backoff().applied_objects());
    while let Some(event) = events.next().await {
        let Ok(pod) = event else { continue };
        if !has_finalizer(&pod) {
            continue;
        }
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let owner = owners::controller_ref(&pod.metadata).filter(|r| r.kind == "Job");
        let alive = owner.is_some_and(|r| {
            jobs.get(&ObjectRef::new(&r.name).within(&ns))
                .is_some_and(|j| j.metadata.uid.as_deref() == Some(r.uid.as_str()))
        });
        if !alive {
            let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
            if let Err(error) = remove_finalizer(&pods, &pod).await {
                tracing::debug!(controller = "job", %error, "removing an orphan pod's finalizer failed");
            }
        }
    }
}

fn error_policy(job: Arc<Job>, error: &Error, _state: Arc<State>) -> Action {
    let name = job.metadata.name.as_deref().unwrap_or_default();
    match error {
        Error::Api(e) if is_conflict(e) => Action::requeue(Duration::from_millis(200)),
        _ => {
            tracing::warn!(controller = "job", name, %error, "sync failed, requeueing");
            Action::requeue(Duration::from_secs(2))
        }
    }
}

async fn reconcile(job: Arc<Job>, state: Arc<State>) -> Result<Action, Error> {
    let ns = job.metadata.namespace.clone().unwrap_or_default();
    let name = job.metadata.name.clone().unwrap_or_default();
    let span = tracing::info_span!("reconcile", controller = "job", key = %format!("{ns}/{name}"));
    let mut sync = Sync {
        jobs: Api::namespaced(state.client.clone(), &ns),
        pods: Api::namespaced(state.client.clone(), &ns),
        status: job.status.clone().unwrap_or_default(),
        job: &job,
        state: &state,
    };
    sync.run().instrument(span).await
}

fn has_finalizer(pod: &Pod) -> bool {
    pod.metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == TRACKING_FINALIZER)
}

async fn remove_finalizer(api: &Api<Pod>, pod: &Pod) -> Result<(), Error> {
    let finalizers: Vec<&String> = pod
        .metadata
        .finalizers
        .iter()
        .flatten()
        .filter(|f| *f != TRACKING_FINALIZER)
        .collect();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let patch = json!({"metadata": {"resourceVersion": pod.metadata.resource_version, "finalizers": finalizers}});
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// A pod's completion index, for Indexed Jobs.
fn index_of(pod: &Pod) -> Option<i32> {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(COMPLETION_INDEX))
        .or_else(|| pod.metadata.labels.as_ref()?.get(COMPLETION_INDEX))?
        .parse()
        .ok()
}

/// Parses a `completedIndexes` string (`"1,3-5,7"`).
pub(crate) fn parse_indexes(s: &str) -> BTreeSet<i32> {
    let mut set = BTreeSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>()) {
                    set.extend(a..=b);
                }
            }
            None => {
                if let Ok(v) = part.parse() {
                    set.insert(v);
                }
            }
        }
    }
    set
}

/// Formats indexes as kube does: ascending, runs of 2+ consecutive values as `a-b`.
pub(crate) fn format_indexes(set: &BTreeSet<i32>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        parts.push(if end > start {
            format!("{start}-{end}")
        } else {
            start.to_string()
        });
    }
    parts.join(",")
}

fn condition<'a>(status: &'a JobStatus, type_: &str) -> Option<&'a JobCondition> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_ && c.status == "True")
}

/// Sets a condition; keeps the transition time while its status holds (`ensureJobConditionStatus`).
fn set_condition(status: &mut JobStatus, type_: &str, value: &str, reason: &str, message: &str) {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let now = now();
    if let Some(c) = conditions.iter_mut().find(|c| c.type_ == type_) {
        if c.status != value {
            c.last_transition_time = Some(now.clone());
        }
        if c.status != value || c.reason.as_deref() != Some(reason) {
            c.last_probe_time = Some(now);
        }
        c.status = value.into();
        c.reason = Some(reason.into());
        c.message = Some(message.into());
        return;
    }
    conditions.push(JobCondition {
        type_: type_.into(),
        status: value.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(now.clone()),
        last_transition_time: Some(now),
    });
}

/// When a finished Job finished: its Complete or Failed condition's transition time.
fn finish_time(status: &JobStatus) -> Option<Timestamp> {
    [cond::COMPLETE, cond::FAILED]
        .iter()
        .find_map(|t| condition(status, t))
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0)
}

/// One sync of one Job; `status` is the working copy.
struct Sync<'a> {
    job: &'a Job,
    state: &'a State,
    jobs: Api<Job>,
    pods: Api<Pod>,
    status: JobStatus,
}

impl Sync<'_> {
    fn name(&self) -> &str {
        self.job.metadata.name.as_deref().unwrap_or_default()
    }

    fn indexed(&self) -> bool {
        self.job
            .spec
            .as_ref()
            .and_then(|s| s.completion_mode.as_deref())
            == Some("Indexed")
    }

    async fn run(&mut self) -> Result<Action, Error> {
        let Some(spec) = self.job.spec.as_ref() else {
            return Err(Error::MissingField {
                kind: "Job",
                namespace: self.job.metadata.namespace.clone().unwrap_or_default(),
                name: self.name().to_owned(),
                field: "spec",
            });
        };
        let owned = self.claim_pods().await?;
        let finished = finish_time(&self.status).is_some();
        self.count_finished(&owned, finished).await?;
        if finished {
            return self.after_finished().await;
        }
        let now = Timestamp::now();
        let suspended = spec.suspend == Some(true);
        let mut active: Vec<&Pod> = owned.iter().filter(|p| pods::is_active(p)).collect();
        active.sort_by_key(|p| p.metadata.name.clone());
        let terminating = owned
            .iter()
            .filter(|p| {
                pods::is_terminating(p) && !matches!(pods::phase(p), Some("Succeeded" | "Failed"))
            })
            .count();

        // Start, suspension and resumption.
        if suspended {
            if condition(&self.status, cond::SUSPENDED).is_none() {
                set_condition(
                    &mut self.status,
                    cond::SUSPENDED,
                    "True",
                    "JobSuspended",
                    "Job suspended",
                );
                self.event(EventType::Normal, "Suspended", "Job suspended".into())
                    .await;
            }
        } else {
            if self
                .status
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == cond::SUSPENDED && c.status == "True")
            {
                set_condition(
                    &mut self.status,
                    cond::SUSPENDED,
                    "False",
                    "JobResumed",
                    "Job resumed",
                );
                self.event(EventType::Normal, "Resumed", "Job resumed".into())
                    .await;
                self.status.start_time = None;
            }
            if self.status.start_time.is_none() {
                self.status.start_time = Some(now_time());
            }
        }

        // Success and failure criteria.
        let succeeded = self.status.succeeded.unwrap_or(0);
        let failed = self.status.failed.unwrap_or(0);
        let completions = spec.completions;
        let indexed = self.indexed();
        let done_indexes =
            parse_indexes(self.status.completed_indexes.as_deref().unwrap_or_default());
        let mut requeue: Option<Duration> = None;
        if condition(&self.status, cond::FAILURE_TARGET).is_none()
            && condition(&self.status, cond::SUCCESS_CRITERIA_MET).is_none()
        {
            let backoff_limit = spec.backoff_limit.unwrap_or(DEFAULT_BACKOFF_LIMIT);
            let deadline = spec
                .active_deadline_seconds
                .filter(|_| !suspended)
                .and_then(|secs| {
                    let start = self.status.start_time.as_ref()?.0.as_second();
                    Some(start + secs)
                });
            let reached = if indexed {
                completions.is_some_and(|c| {
                    i32::try_from(done_indexes.iter().filter(|i| **i < c).count())
                        .unwrap_or(i32::MAX)
                        >= c
                })
            } else {
                match completions {
                    Some(c) => succeeded >= c,
                    None => succeeded > 0 && active.is_empty(),
                }
            };
            if failed > backoff_limit {
                set_condition(
                    &mut self.status,
                    cond::FAILURE_TARGET,
                    "True",
                    cond::BACKOFF_LIMIT_EXCEEDED,
                    "Job has reached the specified backoff limit",
                );
            } else if deadline.is_some_and(|d| now.as_second() >= d) {
                set_condition(
                    &mut self.status,
                    cond::FAILURE_TARGET,
                    "True",
                    cond::DEADLINE_EXCEEDED,
                    "Job was active longer than specified deadline",
                );
            } else if reached {
                set_condition(
                    &mut self.status,
                    cond::SUCCESS_CRITERIA_MET,
                    "True",
                    cond::COMPLETIONS_REACHED,
                    "Reached expected number of succeeded pods",
                );
            } else if let Some(d) = deadline {
                requeue = Some(Duration::from_secs(
                    u64::try_from(d - now.as_second()).unwrap_or(0).max(1),
                ));
            }
        }

        let target = condition(&self.status, cond::FAILURE_TARGET)
            .or_else(|| condition(&self.status, cond::SUCCESS_CRITERIA_MET))
            .cloned();
        let mut errors = Vec::new();
        if let Some(target) = target {
            // Ending: no new pods, the active ones go; the terminal condition once none is left.
            errors.extend(self.delete_pods(&active).await);
            let pending = owned.iter().any(|p| pods::is_active(p) || has_finalizer(p));
            let uncounted = self
                .status
                .uncounted_terminated_pods
                .as_ref()
                .is_some_and(|u| {
                    !u.succeeded.as_ref().is_none_or(Vec::is_empty)
                        || !u.failed.as_ref().is_none_or(Vec::is_empty)
                });
            if !pending && !uncounted {
                let reason = target.reason.clone().unwrap_or_default();
                let message = target.message.clone().unwrap_or_default();
                if target.type_ == cond::FAILURE_TARGET {
                    set_condition(&mut self.status, cond::FAILED, "True", &reason, &message);
                    self.event(EventType::Warning, &reason, message).await;
                } else {
                    set_condition(&mut self.status, cond::COMPLETE, "True", &reason, &message);
                    self.status.completion_time = Some(now_time());
                    self.event(EventType::Normal, "Completed", "Job completed".into())
                        .await;
                }
            }
            self.status.active = None;
        } else if suspended {
            errors.extend(self.delete_pods(&active).await);
            self.status.active = None;
        } else {
            let parallelism = spec.parallelism.unwrap_or(1).max(0);
            let active_count = i32::try_from(active.len()).unwrap_or(i32::MAX);
            if indexed {
                errors.extend(
                    self.manage_indexed(
                        &active,
                        &done_indexes,
                        completions.unwrap_or(0),
                        parallelism,
                    )
                    .await,
                );
            } else {
                let want = match completions {
                    None if succeeded > 0 => active_count.min(parallelism),
                    None => parallelism,
                    Some(c) => (c - succeeded).clamp(0, parallelism),
                };
                if active_count > want {
                    let surplus = usize::try_from(active_count - want).unwrap_or(0);
                    // Not-ready pods first, then the newest.
                    let mut victims = active.clone();
                    victims.sort_by_key(|p| {
                        (
                            pods::is_ready(p),
                            std::cmp::Reverse(p.metadata.creation_timestamp.as_ref().map(|t| t.0)),
                        )
                    });
                    victims.truncate(surplus);
                    errors.extend(self.delete_pods(&victims).await);
                } else if active_count < want {
                    let count = usize::try_from(want - active_count).unwrap_or(0);
                    let results = join_all((0..count).map(|_| self.create_pod(None))).await;
                    errors.extend(results.into_iter().filter_map(Result::err));
                }
            }
            let now_active = self.pods.list(&ListParams::default()).await?.items;
            let uid = self.job.metadata.uid.clone().unwrap_or_default();
            self.status.active = Some(
                i32::try_from(
                    now_active
                        .iter()
                        .filter(|p| {
                            owners::controller_ref(&p.metadata).is_some_and(|r| r.uid == uid)
                        })
                        .filter(|p| pods::is_active(p))
                        .count(),
                )
                .unwrap_or(i32::MAX),
            )
            .filter(|n| *n > 0);
        }
        self.status.ready = Some(
            i32::try_from(active.iter().filter(|p| pods::is_ready(p)).count()).unwrap_or(i32::MAX),
        );
        self.status.terminating = Some(i32::try_from(terminating).unwrap_or(i32::MAX));
        self.write_status().await?;
        if let Some(first) = errors.into_iter().next() {
            return Err(first);
        }
        if finish_time(&self.status).is_some() {
            return self.after_finished().await;
        }
        Ok(requeue.map_or_else(Action::await_change, Action::requeue))
    }

    /// The Job's pods, adopting orphans its selector matches.
    async fn claim_pods(&self) -> Result<Vec<Pod>, Error> {
        let spec = self.job.spec.as_ref();
        let sel = spec.and_then(|s| s.selector.as_ref());
        let uid = self.job.metadata.uid.clone().unwrap_or_default();
        let deleting = self.job.metadata.deletion_timestamp.is_some();
        let mut owned = Vec::new();
        for pod in self.pods.list(&ListParams::default()).await?.items {
            let selected = selector::matches(sel, pod.metadata.labels.as_ref());
            match owners::claim(&uid, deleting, &pod.metadata, selected) {
                Claim::Owned => owned.push(pod),
                Claim::Adopt => {
                    if let Some(p) =
                        owners::adopt(&self.pods, &pod, owners::new_controller_ref(self.job))
                            .await?
                    {
                        owned.push(p);
                    }
                }
                Claim::Release => owners::release(&self.pods, &pod, &uid).await?,
                Claim::Ignore => {}
            }
        }
        Ok(owned)
    }

    /// Moves finished pods into the counters through `uncountedTerminatedPods` (three steps, each
    /// safe to repeat: record uids, drop finalizers, count).
    async fn count_finished(&mut self, owned: &[Pod], job_finished: bool) -> Result<(), Error> {
        let suspended = self.job.spec.as_ref().and_then(|s| s.suspend) == Some(true);
        let mut uncounted = self
            .status
            .uncounted_terminated_pods
            .clone()
            .unwrap_or_default();
        let (mut ok, mut bad): (Vec<String>, Vec<String>) = (
            uncounted.succeeded.clone().unwrap_or_default(),
            uncounted.failed.clone().unwrap_or_default(),
        );
        let mut done_indexes =
            parse_indexes(self.status.completed_indexes.as_deref().unwrap_or_default());
        let mut recorded = false;
        for pod in owned.iter().filter(|p| has_finalizer(p)) {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            if ok.contains(&uid) || bad.contains(&uid) {
                continue;
            }
            match pods::phase(pod) {
                Some("Succeeded") => {
                    if let Some(i) = index_of(pod).filter(|_| self.indexed())
                        && !done_indexes.insert(i)
                    {
                        // That index had already succeeded: not counted again.
                        continue;
                    }
                    ok.push(uid);
                }
                Some("Failed") => bad.push(uid),
                _ if pods::is_terminating(pod) && !suspended && !job_finished => bad.push(uid),
                _ if pods::is_terminating(pod) || job_finished => {
                    // Deleted by a suspension or after the end: not a failure, only release it.
                    remove_finalizer(&self.pods, pod).await?;
                    continue;
                }
                _ => continue,
            }
            recorded = true;
        }
        if recorded {
            uncounted.succeeded = Some(ok.clone());
            uncounted.failed = Some(bad.clone());
            self.status.uncounted_terminated_pods = Some(uncounted);
            if self.indexed() {
                self.status.completed_indexes = Some(format_indexes(&done_indexes));
            }
            self.write_status().await?;
        }
        if ok.is_empty() && bad.is_empty() {
            return Ok(());
        }
        // Drop the finalizers of every recorded pod still carrying it.
        let recorded_uids: HashSet<&String> = ok.iter().chain(bad.iter()).collect();
        let releases = owned
            .iter()
            .filter(|p| has_finalizer(p))
            .filter(|p| {
                p.metadata
                    .uid
                    .as_ref()
                    .is_some_and(|u| recorded_uids.contains(u))
            })
            .map(|p| remove_finalizer(&self.pods, p));
        for result in join_all(releases).await {
            result?;
        }
        // Counters are omitted while zero, as kube's `omitempty` prints them.
        let add = |v: Option<i32>, n: usize| {
            Some(
                v.unwrap_or(0)
                    .saturating_add(i32::try_from(n).unwrap_or(i32::MAX)),
            )
            .filter(|t| *t > 0)
        };
        self.status.succeeded = add(self.status.succeeded, ok.len());
        self.status.failed = add(self.status.failed, bad.len());
        self.status.uncounted_terminated_pods = Some(UncountedTerminatedPods {
            succeeded: Some(vec![]),
            failed: Some(vec![]),
        });
        self.write_status().await
    }

    /// TTL-after-finished: delete the Job once `ttlSecondsAfterFinished` have passed.
    async fn after_finished(&self) -> Result<Action, Error> {
        let Some(ttl) = self
            .job
            .spec
            .as_ref()
            .and_then(|s| s.ttl_seconds_after_finished)
        else {
            return Ok(Action::await_change());
        };
        let Some(finished) = finish_time(&self.status) else {
            return Ok(Action::await_change());
        };
        let expires = finished.as_second() + i64::from(ttl);
        let left = expires - Timestamp::now().as_second();
        if left > 0 {
            return Ok(Action::requeue(Duration::from_secs(
                u64::try_from(left).unwrap_or(1),
            )));
        }
        tracing::info!(
            job = self.name(),
            "deleting a finished job past its ttlSecondsAfterFinished"
        );
        let params = DeleteParams {
            propagation_policy: Some(kube::api::PropagationPolicy::Background),
            preconditions: Some(kube::api::Preconditions {
                uid: self.job.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match self.jobs.delete(self.name(), &params).await {
            Ok(_) => Ok(Action::await_change()),
            Err(e) if is_not_found(&e) || is_conflict(&e) => Ok(Action::await_change()),
            Err(e) => Err(e.into()),
        }
    }

    /// Indexed: one active pod per pending index, lowest first, within parallelism; duplicates and
    /// pods for indexes out of range or already done go.
    async fn manage_indexed(
        &self,
        active: &[&Pod],
        done: &BTreeSet<i32>,
        completions: i32,
        parallelism: i32,
    ) -> Vec<Error> {
        let mut seen = BTreeSet::new();
        let mut surplus = Vec::new();
        for pod in active {
            match index_of(pod) {
                Some(i)
                    if (0..completions).contains(&i) && !done.contains(&i) && seen.insert(i) => {}
                _ => surplus.push(*pod),
            }
        }
        let mut errors = self.delete_pods(&surplus).await;
        let running = i32::try_from(seen.len()).unwrap_or(i32::MAX);
        let room = usize::try_from(parallelism - running).unwrap_or(0);
        let pending: Vec<i32> = (0..completions)
            .filter(|i| !done.contains(i) && !seen.contains(i))
            .take(room)
            .collect();
        let results = join_all(pending.into_iter().map(|i| self.create_pod(Some(i)))).await;
        errors.extend(results.into_iter().filter_map(Result::err));
        errors
    }

    async fn create_pod(&self, index: Option<i32>) -> Result<(), Error> {
        let pod = new_pod(self.job, index)?;
        match self.pods.create(&PostParams::default(), &pod).await {
            Ok(created) => {
                let name = created.metadata.name.unwrap_or_default();
                self.event(
                    EventType::Normal,
                    "SuccessfulCreate",
                    format!("Created pod: {name}"),
                )
                .await;
                Ok(())
            }
            Err(e) => {
                self.event(
                    EventType::Warning,
                    "FailedCreate",
                    format!("Error creating: {e}"),
                )
                .await;
                Err(e.into())
            }
        }
    }
    async fn delete_pods(&self, victims: &[&Pod]) -> Vec<Error> {
        let results = join_all(victims.iter().map(|pod| async move {
            let name = pod.metadata.name.as_deref().unwrap_or_default();
            match self.pods.delete(name, &DeleteParams::default()).await {
                Ok(_) => {
                    self.event(
                        EventType::Normal,
                        "SuccessfulDelete",
                        format!("Deleted pod: {name}"),
                    )
                    .await;
                    Ok(())
                }
                Err(e) if is_not_found(&e) => Ok(()),
                Err(e) => Err(Error::from(e)),
            }
        }))
        .await;
        results.into_iter().filter_map(Result::err).collect()
    }

    async fn event(&self, type_: EventType, reason: &str, message: String) {
        self.state
            .recorder
            .publish(self.job, type_, reason, message)
            .await;
    }

    /// Writes the working status if it differs from the stored one. Fields that were cleared are
    /// sent as null so that the merge patch removes them.
    async fn write_status(&mut self) -> Result<(), Error> {
        if self.job.status.as_ref() == Some(&self.status) {
            return Ok(());
        }
        let mut body =
            serde_json::to_value(&self.status).map_err(|e| Error::Invalid(e.to_string()))?;
        if let Some(o) = body.as_object_mut() {
            for field in [
                "startTime",
                "completionTime",
                "completedIndexes",
                "active",
                "failed",
                "succeeded",
            ] {
                o.entry(field).or_insert(Value::Null);
            }
        }
        match self
            .jobs
            .patch_status(
                self.name(),
                &PatchParams::default(),
                &Patch::Merge(json!({"status": body})),
            )
            .await
        {
            Ok(updated) => {
                if let Some(status) = updated.status {
                    self.status = status;
                }
                Ok(())
            }
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// The pod for `job` (and `index`, for Indexed Jobs), not yet created.
fn new_pod(job: &Job, index: Option<i32>) -> Result<Pod, Error> {
    let spec = job
        .spec
        .as_ref()
        .ok_or_else(|| Error::Invalid("job without spec".into()))?;
    let mut pod = pods::from_template(&spec.template, job);
    let name = job.metadata.name.as_deref().unwrap_or_default();
    pod.metadata.generate_name = Some(match index {
        Some(i) => format!("{name}-{i}-"),
        None => format!("{name}-"),
    });
    pod.metadata
        .finalizers
        .get_or_insert_with(Vec::new)
        .push(TRACKING_FINALIZER.into());
    if let Some(i) = index {
        pod.metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(COMPLETION_INDEX.into(), i.to_string());
        pod.metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(COMPLETION_INDEX.into(), i.to_string());
        if let Some(pod_spec) = pod.spec.as_mut() {
            pod_spec.hostname = Some(format!("{name}-{i}"));
            let env = EnvVar {
                name: "JOB_COMPLETION_INDEX".into(),
                value: None,
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        api_version: None,
                        field_path: format!("metadata.labels['{COMPLETION_INDEX}']"),
                    }),
                    ..Default::default()
                }),
            };
            for c in pod_spec
                .init_containers
                .iter_mut()
                .flatten()
                .chain(pod_spec.containers.iter_mut())
            {
                let vars = c.env.get_or_insert_with(Vec::new);
                if !vars.iter().any(|v| v.name == env.name) {
                    vars.push(env.clone());
                }
            }
        }
    }
    Ok(pod)
}

fn now_time() -> Time {
    now()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completed_indexes_round_trip_in_kube_format() {
        let cases = [
            ("", vec![]),
            ("0", vec![0]),
            ("0,2", vec![0, 2]),
            ("0-2", vec![0, 1, 2]),
            ("1,3-5,7", vec![1, 3, 4, 5, 7]),
        ];
        for (text, values) in cases {
            let set: BTreeSet<i32> = values.iter().copied().collect();
            assert_eq!(parse_indexes(text), set, "{text}");
            assert_eq!(format_indexes(&set), text);
        }
        assert_eq!(parse_indexes("x,2"), BTreeSet::from([2]));
    }

    #[test]
    fn conditions_keep_transition_time_while_status_holds() {
        let mut status = JobStatus::default();
        set_condition(
            &mut status,
            cond::SUSPENDED,
            "True",
            "JobSuspended",
            "Job suspended",
        );
        let first = status.conditions.clone().expect("conditions")[0].clone();
        assert_eq!(
            condition(&status, cond::SUSPENDED).map(|c| c.reason.clone()),
            Some(Some("JobSuspended".into()))
        );
        set_condition(
            &mut status,
            cond::SUSPENDED,
            "False",
            "JobResumed",
            "Job resumed",
        );
        let conditions = status.conditions.clone().expect("conditions");
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].status, "False");
        assert!(condition(&status, cond::SUSPENDED).is_none());
        assert!(first.last_transition_time.is_some());
    }

    #[test]
    fn pods_carry_the_tracking_finalizer_and_their_index() {
        let job: Job = serde_json::from_value(json!({
            "metadata": {"name": "pi", "namespace": "default", "uid": "u1"},
            "spec": {"completionMode": "Indexed", "completions": 3, "template": {
                "metadata": {"labels": {"batch.kubernetes.io/job-name": "pi"}},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}
        }))
        .expect("job");
        let pod = new_pod(&job, Some(2)).expect("pod");
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("pi-2-"));
        assert!(has_finalizer(&pod));
        assert_eq!(index_of(&pod), Some(2));
        let labels = pod.metadata.labels.as_ref().expect("labels");
        assert_eq!(labels.get(COMPLETION_INDEX).map(String::as_str), Some("2"));
        assert_eq!(
            labels
                .get("batch.kubernetes.io/job-name")
                .map(String::as_str),
            Some("pi")
        );
        let spec = pod.spec.as_ref().expect("spec");
        assert_eq!(spec.hostname.as_deref(), Some("pi-2"));
        let env = spec.containers[0].env.clone().unwrap_or_default();
        assert!(env.iter().any(|e| e.name == "JOB_COMPLETION_INDEX"));
        let owner = &pod.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("Job", "u1"));

        let plain = new_pod(&job, None).expect("pod");
        assert_eq!(plain.metadata.generate_name.as_deref(), Some("pi-"));
        assert_eq!(index_of(&plain), None);
    }
}
