//! The StatefulSet controller (Kubernetes' `pkg/controller/statefulset`): each set owns pods with
//! stable names `<set>-<ordinal>` (ordinals from `spec.ordinals.start`), hostname = pod name and
//! subdomain = `serviceName`, labelled `statefulset.kubernetes.io/pod-name`,
//! `apps.kubernetes.io/pod-index` and `controller-revision-hash` (the ControllerRevision's name).
//!
//! A sync claims the set's pods and ControllerRevisions, finds or creates the revision of the
//! current template (the *update* revision; the *current* one is `status.currentRevision`), then:
//! - replaces failed or succeeded pods and creates missing ones; with `OrderedReady` (the default)
//!   pod N+1 is created only once pods 0..N are Running and Ready (and available for
//!   `minReadySeconds`), with `Parallel` all at once;
//! - deletes pods beyond `replicas` from the highest ordinal down (OrderedReady: one at a time,
//!   only while the rest are healthy);
//! - with the `RollingUpdate` strategy deletes, from the highest ordinal down to `partition`, one pod
//!   at a time that is not at the update revision and waits for it to come back healthy (it is
//!   recreated from the update revision); pods below the partition keep the current revision;
//! - writes `status` and deletes revisions beyond `revisionHistoryLimit` that no pod uses.
//!
//! - gives each pod its claims from `volumeClaimTemplates` (`<template>-<set>-<ordinal>`, created
//!   before the pod when missing and then kept: the default `Retain` retention), mounted in place of
//!   the template's volume of the same name.
//!
//! Left out: `persistentVolumeClaimRetentionPolicy` `Delete` (claims are always retained) and
//! `rollingUpdate.maxUnavailable` (alpha).
//! Pods are listed from the API server on every sync (a consistent read), so no expectations.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
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
use crate::util::history::{self, CONTROLLER_REVISION_HASH_LABEL};
use crate::util::owners::{self, Claim};
use crate::util::{Error, is_conflict, is_not_found, pods, selector};

/// The controller's name in events (`source.component`).
const COMPONENT: &str = "statefulset-controller";
/// The pod label holding the pod's own name (so a Service can select one pod).
pub(crate) const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The pod label holding the ordinal.
pub(crate) const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// The pod label holding the name of the ControllerRevision the pod was made from.
pub(crate) const REVISION_LABEL: &str = "controller-revision-hash";

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
        Api::<StatefulSet>::all(client.clone()),
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
                tracing::debug!(controller = "statefulset", %error, "reconcile failed");
            }
            futures::future::ready(())
        })
        .await;
}

/// The sets a pod event concerns: its controller, or for an orphan every set that could adopt it.
fn pod_owners(store: &Store<StatefulSet>, pod: &Pod) -> Vec<ObjectRef<StatefulSet>> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    if let Some(owner) = owners::controller_ref(&pod.metadata) {
        if owner.kind == "StatefulSet" && owner.api_version.starts_with("apps/") {
            return vec![ObjectRef::new(&owner.name).within(ns)];
        }
        return vec![];
    }
    store
        .state()
        .iter()
        .filter(|s| s.metadata.namespace.as_deref() == Some(ns))
        .filter(|s| is_member_of(s, pod))
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect()
}

fn error_policy(set: Arc<StatefulSet>, error: &Error, _state: Arc<State>) -> Action {
    let name = set.metadata.name.as_deref().unwrap_or_default();
    match error {
        Error::Api(e) if is_conflict(e) => Action::requeue(Duration::from_millis(200)),
        _ => {
            tracing::warn!(controller = "statefulset", name, %error, "sync failed, requeueing");
            Action::requeue(Duration::from_secs(2))
        }
    }
}

async fn reconcile(set: Arc<StatefulSet>, state: Arc<State>) -> Result<Action, Error> {
    let ns = set.metadata.namespace.clone().unwrap_or_default();
    let name = set.metadata.name.clone().unwrap_or_default();
    let span =
        tracing::info_span!("reconcile", controller = "statefulset", key = %format!("{ns}/{name}"));
    sync(&set, &state, &ns).instrument(span).await
}

/// `<set>-<ordinal>` -> (set, ordinal): the parent name is everything before the last dash.
pub(crate) fn parent_and_ordinal(pod_name: &str) -> Option<(&str, i32)> {
    let (parent, ordinal) = pod_name.rsplit_once('-')?;
    if ordinal.is_empty() || !ordinal.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((parent, ordinal.parse().ok()?))
}

fn ordinal_of(pod: &Pod) -> Option<i32> {
    parent_and_ordinal(pod.metadata.name.as_deref()?).map(|(_, o)| o)
}

/// The pod's name says it belongs to the set and the set's selector matches it (`isMemberOf`).
/// The claim of template `template` for pod `ordinal` of set `set` (kube's `getPersistentVolumeClaimName`).
fn claim_name(template: &str, set: &str, ordinal: i32) -> String {
    format!("{template}-{set}-{ordinal}")
}

fn is_member_of(set: &StatefulSet, pod: &Pod) -> bool {
    let name_matches = pod
        .metadata
        .name
        .as_deref()
        .and_then(parent_and_ordinal)
        .is_some_and(|(parent, _)| Some(parent) == set.metadata.name.as_deref());
    name_matches
        && selector::matches(
            set.spec.as_ref().map(|s| &s.selector),
            pod.metadata.labels.as_ref(),
        )
}

fn revision_of(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()?
        .get(REVISION_LABEL)
        .map(String::as_str)
}

fn missing(set: &StatefulSet, field: &'static str) -> Error {
    Error::MissingField {
        kind: "StatefulSet",
        namespace: set.metadata.namespace.clone().unwrap_or_default(),
        name: set.metadata.name.clone().unwrap_or_default(),
        field,
    }
}

/// Whether the pod counts as healthy for ordering: Running, Ready, and available for
/// `min_ready_seconds`, not being deleted.
fn is_healthy(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    pods::is_running_and_ready(pod)
        && pods::is_available(pod, min_ready_seconds, now)
        && !pods::is_terminating(pod)
}

fn is_finished(pod: &Pod) -> bool {
    matches!(pods::phase(pod), Some("Failed" | "Succeeded"))
}

/// The update strategy in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strategy {
    RollingUpdate { partition: i32 },
    OnDelete,
}

fn strategy(set: &StatefulSet) -> Strategy {
    let s = set.spec.as_ref().and_then(|s| s.update_strategy.as_ref());
    match s.and_then(|s| s.type_.as_deref()) {
        Some("OnDelete") => Strategy::OnDelete,
        _ => Strategy::RollingUpdate {
            partition: s
                .and_then(|s| s.rolling_update.as_ref())
                .and_then(|r| r.partition)
                .unwrap_or(0),
        },
    }
}

async fn sync(set: &StatefulSet, state: &State, ns: &str) -> Result<Action, Error> {
    let Some(spec) = set.spec.as_ref() else {
        return Err(missing(set, "spec"));
    };
    let pods_api: Api<Pod> = Api::namespaced(state.client.clone(), ns);
    let revs_api: Api<ControllerRevision> = Api::namespaced(state.client.clone(), ns);
    let uid = set.metadata.uid.clone().unwrap_or_default();
    let deleting = set.metadata.deletion_timestamp.is_some();

    // Claim pods: the name must say they belong to this set.
    let mut owned = Vec::new();
    for pod in pods_api.list(&ListParams::default()).await?.items {
        let selected = is_member_of(set, &pod);
        match owners::claim(&uid, deleting, &pod.metadata, selected) {
            Claim::Owned => owned.push(pod),
            Claim::Adopt => {
                if let Some(p) =
                    owners::adopt(&pods_api, &pod, owners::new_controller_ref(set)).await?
                {
                    owned.push(p);
                }
            }
            Claim::Release => owners::release(&pods_api, &pod, &uid).await?,
            Claim::Ignore => {}
        }
    }
    let revisions = history::claim_revisions(&revs_api, set, Some(&spec.selector)).await?;
    let Some((current, update)) = revisions_of(set, &revs_api, &revisions, state, ns).await? else {
        // A hash collision: status.collisionCount was bumped; the next sync uses a new name.
        return Ok(Action::requeue(Duration::from_millis(100)));
    };
    let now = Timestamp::now();
    let mut status = compute_status(set, &owned, &current, &update, now);
    let action = if deleting {
        Ok(Action::await_change())
    } else {
        let mut sync = Sync {
            set,
            state,
            pods_api: &pods_api,
            current: &current,
            update: &update,
            now,
        };
        sync.update_pods(&owned).await
    };
    complete_rolling_update(set, &mut status);
    if set.status.as_ref() != Some(&status) {
        update_status(set, &status, state, ns).await?;
    }

    // History: keep revisions in use (by pods or status) plus `revisionHistoryLimit` others.
    let mut live: Vec<&str> = owned.iter().filter_map(revision_of).collect();
    for name in [&current, &update]
        .iter()
        .filter_map(|r| r.metadata.name.as_deref())
    {
        live.push(name);
    }
    let limit = usize::try_from(spec.revision_history_limit.unwrap_or(10)).unwrap_or(0);
    let revisions = history::claim_revisions(&revs_api, set, Some(&spec.selector)).await?;
    history::truncate(&revs_api, &revisions, &live, limit).await?;
    action
}

/// Finds (or creates) the update revision and the current revision (`getStatefulSetRevisions`).
/// Returns `None` after a hash collision (the collision count was bumped; retry).
async fn revisions_of(
    set: &StatefulSet,
    api: &Api<ControllerRevision>,
    revisions: &[ControllerRevision],
    state: &State,
    ns: &str,
) -> Result<Option<(ControllerRevision, ControllerRevision)>, Error> {
    let spec = set.spec.as_ref().ok_or_else(|| missing(set, "spec"))?;
    let data = history::revision_data(Some(&spec.template));
    let equal = history::equal_revisions(revisions, &data);
    let latest = revisions.iter().map(|r| r.revision).max().unwrap_or(0);
    let update = match equal.last() {
        Some(rev) if rev.revision == latest => (*rev).clone(),
        // A rollback to an old template: that revision becomes the newest.
        Some(rev) => history::set_revision_number(api, rev, latest + 1).await?,
        None => {
            let collision_count = set.status.as_ref().and_then(|s| s.collision_count);
            let hash = history::hash_revision(&data, collision_count);
            let template_labels = spec
                .template
                .metadata
                .as_ref()
                .and_then(|m| m.labels.as_ref());
            let new = history::new_revision(
                set,
                template_labels,
                CONTROLLER_REVISION_HASH_LABEL,
                &hash,
                data,
                history::next_revision(revisions),
            );
            match history::create_revision(api, &new).await? {
                Some(created) => created,
                None => {
                    let count = collision_count.unwrap_or(0).saturating_add(1);
                    let patch = json!({"status": {"collisionCount": count}});
                    let sets: Api<StatefulSet> = Api::namespaced(state.client.clone(), ns);
                    let name = set.metadata.name.as_deref().unwrap_or_default();
                    sets.patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
                        .await?;
                    return Ok(None);
                }
            }
        }
    };
    let wanted = set
        .status
        .as_ref()
        .and_then(|s| s.current_revision.as_deref());
    let current = revisions
        .iter()
        .find(|r| wanted.is_some() && r.metadata.name.as_deref() == wanted)
        .cloned()
        .unwrap_or_else(|| update.clone());
    Ok(Some((current, update)))
}

/// Status from the pods the sync saw (`computeReplicaStatus` plus the revisions).
fn compute_status(
    set: &StatefulSet,
    owned: &[Pod],
    current: &ControllerRevision,
    update: &ControllerRevision,
    now: Timestamp,
) -> StatefulSetStatus {
    let min_ready = set
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);
    let current_name = current.metadata.name.as_deref();
    let update_name = update.metadata.name.as_deref();
    let mut status = set.status.clone().unwrap_or_default();
    let (mut replicas, mut ready, mut available, mut cur, mut upd) = (0, 0, 0, 0, 0);
    for pod in owned {
        // `isCreated`: the API server has given the pod a phase.
        if pods::phase(pod).is_some() {
            replicas += 1;
        }
        if pods::is_running_and_ready(pod) {
            ready += 1;
            if pods::is_available(pod, min_ready, now) {
                available += 1;
            }
        }
        if pods::phase(pod).is_some() && !pods::is_terminating(pod) {
            if revision_of(pod) == current_name {
                cur += 1;
            }
            if revision_of(pod) == update_name {
                upd += 1;
            }
        }
    }
    status.observed_generation = set.metadata.generation;
    status.replicas = replicas;
    status.ready_replicas = Some(ready);
    status.available_replicas = Some(available);
    status.current_replicas = Some(cur);
    status.updated_replicas = Some(upd);
    status.current_revision = current.metadata.name.clone();
    status.update_revision = update.metadata.name.clone();
    status
}

/// Once every pod is updated and ready, the update revision becomes the current one.
fn complete_rolling_update(set: &StatefulSet, status: &mut StatefulSetStatus) {
    let replicas = set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    if matches!(strategy(set), Strategy::RollingUpdate { .. })
        && status.updated_replicas == Some(status.replicas)
        && status.ready_replicas == Some(status.replicas)
        && status.replicas == replicas
    {
        status.current_replicas = status.updated_replicas;
        status.current_revision = status.update_revision.clone();
    }
}

async fn update_status(
    set: &StatefulSet,
    status: &StatefulSetStatus,
    state: &State,
    ns: &str,
) -> Result<(), Error> {
    let api: Api<StatefulSet> = Api::namespaced(state.client.clone(), ns);
    let body = serde_json::to_value(status).map_err(|e| Error::Invalid(e.to_string()))?;
    let name = set.metadata.name.as_deref().unwrap_or_default();
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

/// One pass over the set's pods.
struct Sync<'a> {
    set: &'a StatefulSet,
    state: &'a State,
    pods_api: &'a Api<Pod>,
    current: &'a ControllerRevision,
    update: &'a ControllerRevision,
    now: Timestamp,
}

impl Sync<'_> {
    fn name(&self) -> &str {
        self.set.metadata.name.as_deref().unwrap_or_default()
    }

    fn min_ready_seconds(&self) -> i32 {
        self.set
            .spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }

    /// The action when a pod is Running and Ready but not yet available: look again later.
    fn wait(&self, pod: &Pod) -> Action {
        if pods::is_running_and_ready(pod) && self.min_ready_seconds() > 0 {
            Action::requeue(Duration::from_secs(
                u64::try_from(self.min_ready_seconds()).unwrap_or(1),
            ))
        } else {
            Action::await_change()
        }
    }

    /// `updateStatefulSet`'s pod pass.
    async fn update_pods(&mut self, owned: &[Pod]) -> Result<Action, Error> {
        let spec = self
            .set
            .spec
            .as_ref()
            .ok_or_else(|| missing(self.set, "spec"))?;
        let replicas = spec.replicas.unwrap_or(1).max(0);
        let start = spec
            .ordinals
            .as_ref()
            .and_then(|o| o.start)
            .unwrap_or(0)
            .max(0);
        let end = start.saturating_add(replicas);
        let monotonic = spec.pod_management_policy.as_deref() != Some("Parallel");
        let min_ready = self.min_ready_seconds();

        let mut slots: BTreeMap<i32, &Pod> = BTreeMap::new();
        let mut condemned: Vec<&Pod> = Vec::new();
        for pod in owned {
            match ordinal_of(pod) {
                Some(o) if (start..end).contains(&o) => {
                    slots.insert(o, pod);
                }
                Some(_) => condemned.push(pod),
                None => {}
            }
        }
        condemned.sort_by_key(|p| std::cmp::Reverse(ordinal_of(p)));

        // The first unhealthy pod, in the order the set is processed.
        let first_unhealthy = slots
            .values()
            .chain(condemned.iter())
            .find(|p| !is_healthy(p, min_ready, self.now))
            .and_then(|p| p.metadata.name.clone());

        for ordinal in start..end {
            match slots.get(&ordinal) {
                Some(pod) if is_finished(pod) => {
                    let name = pod.metadata.name.as_deref().unwrap_or_default();
                    let phase = pods::phase(pod).unwrap_or_default();
                    self.state
                        .recorder
                        .publish(
                            self.set,
                            EventType::Warning,
                            if phase == "Failed" {
                                "RecreatingFailedPod"
                            } else {
                                "RecreatingTerminatedPod"
                            },
                            format!(
                                "StatefulSet {}/{} is recreating {} Pod {name}",
                                self.set.metadata.namespace.as_deref().unwrap_or_default(),
                                self.name(),
                                phase.to_lowercase()
                            ),
                        )
                        .await;
                    self.delete_pod(pod).await?;
                    if monotonic {
                        return Ok(Action::await_change());
                    }
                }
                Some(pod) => {
                    if monotonic && pods::is_terminating(pod) {
                        tracing::debug!(pod = ?pod.metadata.name, "waiting for the pod to terminate");
                        return Ok(Action::await_change());
                    }
                    if monotonic && !is_healthy(pod, min_ready, self.now) {
                        tracing::debug!(pod = ?pod.metadata.name, "waiting for the pod to be Running and Ready");
                        return Ok(self.wait(pod));
                    }
                }
                None => {
                    self.create_pod(ordinal).await?;
                    if monotonic {
                        return Ok(Action::await_change());
                    }
                }
            }
        }

        // Scale down, highest ordinal first.
        for pod in &condemned {
            if pods::is_terminating(pod) {
                if monotonic {
                    return Ok(Action::await_change());
                }
                continue;
            }
            if monotonic && first_unhealthy.is_some() && first_unhealthy != pod.metadata.name {
                tracing::debug!(unhealthy = ?first_unhealthy, "scale down blocked by an unhealthy pod");
                return Ok(Action::await_change());
            }
            self.delete_pod(pod).await?;
            if monotonic {
                return Ok(Action::await_change());
            }
        }

        let Strategy::RollingUpdate { partition } = strategy(self.set) else {
            return Ok(Action::await_change());
        };
        let update_name = self.update.metadata.name.as_deref();
        let update_min = start.saturating_add(partition.max(0));
        for ordinal in (update_min..end).rev() {
            let Some(pod) = slots.get(&ordinal) else {
                // Created by this pass: not healthy yet.
                return Ok(Action::await_change());
            };
            if revision_of(pod) != update_name && !pods::is_terminating(pod) {
                tracing::debug!(pod = ?pod.metadata.name, "rolling the pod to the update revision");
                self.delete_pod(pod).await?;
                return Ok(Action::await_change());
            }
            if !is_healthy(pod, min_ready, self.now) {
                return Ok(self.wait(pod));
            }
        }
        Ok(Action::await_change())
    }

    /// The pod for `ordinal` (`newVersionedStatefulSetPod`): from the current revision below the
    /// partition, else from the update revision.
    fn new_pod(&self, ordinal: i32) -> Result<Pod, Error> {
        let spec = self
            .set
            .spec
            .as_ref()
            .ok_or_else(|| missing(self.set, "spec"))?;
        let start = spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0);
        let current_replicas = self
            .set
            .status
            .as_ref()
            .and_then(|s| s.current_replicas)
            .unwrap_or(0);
        let use_current = match strategy(self.set) {
            Strategy::RollingUpdate { partition } => {
                let has_rolling_update = spec
                    .update_strategy
                    .as_ref()
                    .is_some_and(|s| s.rolling_update.is_some());
                if has_rolling_update {
                    ordinal < start + partition
                } else {
                    ordinal < start + current_replicas
                }
            }
            Strategy::OnDelete => false,
        };
        let (revision, template): (&ControllerRevision, PodTemplateSpec) = if use_current {
            (
                self.current,
                history::revision_template(self.current).unwrap_or_else(|| spec.template.clone()),
            )
        } else {
            (self.update, spec.template.clone())
        };
        let mut pod = pods::from_template(&template, self.set);
        let name = format!("{}-{ordinal}", self.name());
        let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
        labels.insert(POD_NAME_LABEL.into(), name.clone());
        labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
        labels.insert(
            REVISION_LABEL.into(),
            revision.metadata.name.clone().unwrap_or_default(),
        );
        if let Some(pod_spec) = pod.spec.as_mut() {
            pod_spec.hostname = Some(name.clone());
            pod_spec.subdomain = spec.service_name.clone().filter(|s| !s.is_empty());
            // Each claim template becomes the pod's volume of that name (kube's updateStorage).
            let volumes = pod_spec.volumes.get_or_insert_with(Vec::new);
            for template in spec.volume_claim_templates.iter().flatten() {
                let volume_name = template.metadata.name.clone().unwrap_or_default();
                volumes.retain(|v| v.name != volume_name);
                volumes.push(Volume {
                    name: volume_name.clone(),
                    persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                        claim_name: claim_name(&volume_name, self.name(), ordinal),
                        read_only: None,
                    }),
                    ..Volume::default()
                });
            }
            if volumes.is_empty() {
                pod_spec.volumes = None;
            }
        }
        pod.metadata.name = Some(name);
        Ok(pod)
    }

    /// Creates the claims of pod `ordinal` that do not exist yet.
    async fn create_claims(&self, ordinal: i32) -> Result<(), Error> {
        let Some(templates) = self
            .set
            .spec
            .as_ref()
            .and_then(|s| s.volume_claim_templates.as_ref())
        else {
            return Ok(());
        };
        let ns = self.set.metadata.namespace.clone().unwrap_or_default();
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(self.state.client.clone(), &ns);
        let selector_labels = self
            .set
            .spec
            .as_ref()
            .and_then(|s| s.selector.match_labels.clone())
            .unwrap_or_default();
        for template in templates {
            let name = claim_name(
                template.metadata.name.as_deref().unwrap_or_default(),
                self.name(),
                ordinal,
            );
            if claims.get_opt(&name).await?.is_some() {
                continue;
            }
            let mut claim = template.clone();
            claim.metadata = kube::api::ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                labels: Some(
                    template
                        .metadata
                        .labels
                        .clone()
                        .unwrap_or_default()
                        .into_iter()
                        .chain(selector_labels.clone())
                        .collect(),
                ),
                annotations: template.metadata.annotations.clone(),
                ..Default::default()
            };
            claim.status = None;
            match claims.create(&PostParams::default(), &claim).await {
                Ok(_) => {
                    self.state
                        .recorder
                        .publish(
                            self.set,
                            EventType::Normal,
                            "SuccessfulCreate",
                            format!(
                                "create Claim {name} Pod {}-{ordinal} in StatefulSet {} success",
                                self.name(),
                                self.name()
                            ),
                        )
                        .await;
                }
                Err(e) if is_conflict(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn create_pod(&self, ordinal: i32) -> Result<(), Error> {
        self.create_claims(ordinal).await?;
        let pod = self.new_pod(ordinal)?;
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        match self.pods_api.create(&PostParams::default(), &pod).await {
            Ok(_) => {
                self.state
                    .recorder
                    .publish(
                        self.set,
                        EventType::Normal,
                        "SuccessfulCreate",
                        format!(
                            "create Pod {pod_name} in StatefulSet {} successful",
                            self.name()
                        ),
                    )
                    .await;
                Ok(())
            }
            // Still there (e.g. terminating): the next sync sees it.
            Err(e) if is_conflict(&e) => Ok(()),
            Err(e) => {
                self.state
                    .recorder
                    .publish(
                        self.set,
                        EventType::Warning,
                        "FailedCreate",
                        format!(
                            "create Pod {pod_name} in StatefulSet {} failed error: {e}",
                            self.name()
                        ),
                    )
                    .await;
                Err(e.into())
            }
        }
    }

    async fn delete_pod(&self, pod: &Pod) -> Result<(), Error> {
        let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
        match self
            .pods_api
            .delete(pod_name, &DeleteParams::default())
            .await
        {
            Ok(_) => {
                self.state
                    .recorder
                    .publish(
                        self.set,
                        EventType::Normal,
                        "SuccessfulDelete",
                        format!(
                            "delete Pod {pod_name} in StatefulSet {} successful",
                            self.name()
                        ),
                    )
                    .await;
                Ok(())
            }
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => {
                self.state
                    .recorder
                    .publish(
                        self.set,
                        EventType::Warning,
                        "FailedDelete",
                        format!(
                            "delete Pod {pod_name} in StatefulSet {} failed error: {e}",
                            self.name()
                        ),
                    )
                    .await;
                Err(e.into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_names_split_into_parent_and_ordinal() {
        let cases = [
            ("web-0", Some(("web", 0))),
            ("my-db-12", Some(("my-db", 12))),
            ("web-", None),
            ("web-x1", None),
            ("web", None),
            ("web--1", Some(("web-", 1))),
        ];
        for (name, want) in cases {
            assert_eq!(parent_and_ordinal(name), want, "{name}");
        }
    }

    fn set(value: serde_json::Value) -> StatefulSet {
        serde_json::from_value(value).expect("statefulset")
    }

    #[test]
    fn strategy_defaults_to_rolling_update_without_partition() {
        let base = json!({"metadata": {"name": "web"}, "spec": {"selector": {}, "template": {}, "serviceName": "web"}});
        assert_eq!(
            strategy(&set(base)),
            Strategy::RollingUpdate { partition: 0 }
        );
        let on_delete = json!({"metadata": {"name": "web"}, "spec": {"selector": {}, "template": {}, "serviceName": "web", "updateStrategy": {"type": "OnDelete"}}});
        assert_eq!(strategy(&set(on_delete)), Strategy::OnDelete);
        let partitioned = json!({"metadata": {"name": "web"}, "spec": {"selector": {}, "template": {}, "serviceName": "web", "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}}});
        assert_eq!(
            strategy(&set(partitioned)),
            Strategy::RollingUpdate { partition: 2 }
        );
    }

    #[test]
    fn status_counts_revisions_and_completes_the_rollout() {
        let s = set(json!({
            "metadata": {"name": "web", "generation": 3},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "serviceName": "web",
                     "template": {"metadata": {"labels": {"app": "web"}}}},
            "status": {"replicas": 0, "currentRevision": "web-old"}
        }));
        let rev = |name: &str| ControllerRevision {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let pod = |name: &str, revision: &str, ready: bool| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": name, "labels": {"app": "web", REVISION_LABEL: revision}},
                "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
            }))
            .expect("pod")
        };
        let (old, new) = (rev("web-old"), rev("web-new"));
        let pods = [
            pod("web-0", "web-old", true),
            pod("web-1", "web-new", false),
        ];
        let mut status = compute_status(&s, &pods, &old, &new, Timestamp::now());
        complete_rolling_update(&s, &mut status);
        assert_eq!(status.replicas, 2);
        assert_eq!(status.ready_replicas, Some(1));
        assert_eq!(
            (status.current_replicas, status.updated_replicas),
            (Some(1), Some(1))
        );
        assert_eq!(status.current_revision.as_deref(), Some("web-old"));
        assert_eq!(status.update_revision.as_deref(), Some("web-new"));
        assert_eq!(status.observed_generation, Some(3));

        let pods = [pod("web-0", "web-new", true), pod("web-1", "web-new", true)];
        let mut status = compute_status(&s, &pods, &old, &new, Timestamp::now());
        complete_rolling_update(&s, &mut status);
        assert_eq!(status.current_revision.as_deref(), Some("web-new"));
        assert_eq!(status.current_replicas, Some(2));
    }
}
