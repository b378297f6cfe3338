//! The Deployment controller (Kubernetes' `pkg/controller/deployment`): each Deployment owns one
//! ReplicaSet per pod template, named `<deployment>-<pod-template-hash>`. A sync claims the
//! Deployment's ReplicaSets (adopting orphans, releasing non-matching ones), then
//! - while paused, or when `spec.replicas` changed (a scaling event), only scales: one active
//!   ReplicaSet gets everything, several share the change in proportion to their sizes;
//! - otherwise rolls out: RollingUpdate grows the new ReplicaSet within maxSurge and shrinks old ones
//!   within maxUnavailable; Recreate scales old ones to zero, waits until their pods are gone, then
//!   creates the new one;
//! - cleans up old empty ReplicaSets beyond `revisionHistoryLimit`, and writes `status` with the
//!   `Available` and `Progressing` conditions that `kubectl rollout status` waits on.
//!
//! `kubectl rollout undo` patches the template back to an old ReplicaSet's; that ReplicaSet is found
//! by template equality (ignoring `pod-template-hash`) and becomes the new one with a fresh revision.
//! ReplicaSets are listed from the API server on every sync (a consistent read); the pods themselves
//! are the ReplicaSet controller's business, read here only to let Recreate wait for old pods.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::Context;
use crate::util::events::{EventType, Recorder};
use crate::util::owners::{self, Claim};
use crate::util::rollout::{
    self, POD_TEMPLATE_HASH, REVISION, by_creation, by_revision, by_size, condition,
    deployment_replicas, equal_ignore_hash, is_active, max_surge, max_unavailable, new_condition,
    reason, remove_condition, rs_available, rs_replicas, rs_status_replicas, set_condition,
};
use crate::util::{Error, is_conflict, is_not_found, selector};

/// The controller's name in events (`source.component`).
const COMPONENT: &str = "deployment-controller";

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
        Api::<Deployment>::all(client.clone()),
        watcher::Config::default(),
    );
    let deployments = controller.store();
    // ReplicaSets by name, to map a pod event to its Deployment (pod -> ReplicaSet -> Deployment).
    let (replica_sets, writer) = reflector::store::<ReplicaSet>();
    let rs_reflector = reflector::reflector(
        writer,
        watcher(
            Api::<ReplicaSet>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .for_each(|_| futures::future::ready(()));

    let state = Arc::new(State {
        recorder: Recorder::new(client.clone(), COMPONENT),
        client: client.clone(),
    });
    let rs_deployments = deployments.clone();
    let controller = controller
        .watches(
            Api::<ReplicaSet>::all(client.clone()),
            watcher::Config::default(),
            move |rs| replica_set_owners(&rs_deployments, &rs),
        )
        .watches_shared_stream(ctx.pods.touched(), move |pod| {
            pod_owners(&deployments, &replica_sets, &pod)
        })
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(reconcile, error_policy, state)
        .for_each(|result| {
            if let Err(error) = result {
                tracing::debug!(controller = "deployment", %error, "reconcile failed");
            }
            futures::future::ready(())
        });
    tokio::select! {
        () = controller => {}
        () = rs_reflector => {}
    }
}

/// The Deployments a ReplicaSet event concerns: its controller, or for an orphan every Deployment
/// in the namespace that could adopt it.
fn replica_set_owners(
    deployments: &Store<Deployment>,
    rs: &ReplicaSet,
) -> Vec<ObjectRef<Deployment>> {
    let ns = rs.metadata.namespace.as_deref().unwrap_or_default();
    if let Some(owner) = owners::controller_ref(&rs.metadata) {
        if owner.kind == "Deployment" && owner.api_version.starts_with("apps/") {
            return vec![ObjectRef::new(&owner.name).within(ns)];
        }
        return vec![];
    }
    deployments
        .state()
        .iter()
        .filter(|d| d.metadata.namespace.as_deref() == Some(ns))
        .filter(|d| {
            selector::matches(
                d.spec.as_ref().map(|s| &s.selector),
                rs.metadata.labels.as_ref(),
            )
        })
        .map(|d| ObjectRef::from_obj(d.as_ref()))
        .collect()
}

/// Pod events matter only to Recreate Deployments, which wait for old pods to be gone.
fn pod_owners(
    deployments: &Store<Deployment>,
    replica_sets: &Store<ReplicaSet>,
    pod: &Pod,
) -> Option<ObjectRef<Deployment>> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let rs_ref = owners::controller_ref(&pod.metadata).filter(|r| r.kind == "ReplicaSet")?;
    let rs = replica_sets.get(&ObjectRef::new(&rs_ref.name).within(ns))?;
    let d_ref = owners::controller_ref(&rs.metadata).filter(|r| r.kind == "Deployment")?;
    let key = ObjectRef::new(&d_ref.name).within(ns);
    let d = deployments.get(&key)?;
    (!rollout::is_rolling_update(&d)).then_some(key)
}

fn error_policy(d: Arc<Deployment>, error: &Error, _state: Arc<State>) -> Action {
    let name = d.metadata.name.as_deref().unwrap_or_default();
    match error {
        Error::Api(e) if is_conflict(e) => Action::requeue(Duration::from_millis(200)),
        _ => {
            tracing::warn!(controller = "deployment", name, %error, "sync failed, requeueing");
            Action::requeue(Duration::from_secs(2))
        }
    }
}

async fn reconcile(d: Arc<Deployment>, state: Arc<State>) -> Result<Action, Error> {
    let ns = d.metadata.namespace.clone().unwrap_or_default();
    let name = d.metadata.name.clone().unwrap_or_default();
    let span =
        tracing::info_span!("reconcile", controller = "deployment", key = %format!("{ns}/{name}"));
    let mut sync = Sync {
        rs_api: Api::namespaced(state.client.clone(), &ns),
        d_api: Api::namespaced(state.client.clone(), &ns),
        pods_api: Api::namespaced(state.client.clone(), &ns),
        stored_status: d.status.clone(),
        d: (*d).clone(),
        state: &state,
    };
    sync.sync_deployment().instrument(span).await
}

/// One sync of one Deployment. `d` is a working copy whose status is updated in memory as the
/// sync goes; `stored_status` is what the API server has, so writes happen only on change.
struct Sync<'a> {
    state: &'a State,
    d: Deployment,
    stored_status: Option<DeploymentStatus>,
    d_api: Api<Deployment>,
    rs_api: Api<ReplicaSet>,
    pods_api: Api<Pod>,
}

impl Sync<'_> {
    fn name(&self) -> &str {
        self.d.metadata.name.as_deref().unwrap_or_default()
    }

    fn status(&self) -> DeploymentStatus {
        self.d.status.clone().unwrap_or_default()
    }

    fn paused(&self) -> bool {
        self.d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false)
    }

    async fn event(&self, type_: EventType, reason: &str, message: String) {
        self.state
            .recorder
            .publish(&self.d, type_, reason, message)
            .await;
    }

    /// `syncDeployment`.
    async fn sync_deployment(&mut self) -> Result<Action, Error> {
        let Some(spec) = self.d.spec.clone() else {
            return Err(Error::MissingField {
                kind: "Deployment",
                namespace: self.d.metadata.namespace.clone().unwrap_or_default(),
                name: self.name().to_owned(),
                field: "spec",
            });
        };
        if selector::is_empty(Some(&spec.selector)) {
            self.event(
                EventType::Warning,
                "SelectingAll",
                "This deployment is selecting all pods. A non-empty selector is required.".into(),
            )
            .await;
            let mut status = self.status();
            if status.observed_generation < self.d.metadata.generation {
                status.observed_generation = self.d.metadata.generation;
                self.write_status(status).await?;
            }
            return Ok(Action::await_change());
        }

        let rs_list = self.claim_replica_sets().await?;
        if self.d.metadata.deletion_timestamp.is_some() {
            self.sync_status_only(&rs_list).await?;
            return Ok(Action::await_change());
        }
        self.check_paused_conditions().await?;
        if self.paused() || rollout::is_scaling_event(&self.d, &rs_list) {
            self.sync(&rs_list).await?;
        } else if rollout::is_rolling_update(&self.d) {
            self.rollout_rolling(&rs_list).await?;
        } else {
            self.rollout_recreate(&rs_list).await?;
        }
        Ok(self.requeue_if_stuck())
    }

    /// Lists the namespace's ReplicaSets and claims those the selector matches
    /// (`getReplicaSetsForDeployment`).
    async fn claim_replica_sets(&self) -> Result<Vec<ReplicaSet>, Error> {
        let spec_selector = self.d.spec.as_ref().map(|s| &s.selector);
        let uid = self.d.metadata.uid.clone().unwrap_or_default();
        let deleting = self.d.metadata.deletion_timestamp.is_some();
        let mut claimed = Vec::new();
        for rs in self.rs_api.list(&ListParams::default()).await?.items {
            let selected = selector::matches(spec_selector, rs.metadata.labels.as_ref());
            match owners::claim(&uid, deleting, &rs.metadata, selected) {
                Claim::Owned => claimed.push(rs),
                Claim::Adopt => {
                    if let Some(adopted) =
                        owners::adopt(&self.rs_api, &rs, owners::new_controller_ref(&self.d))
                            .await?
                    {
                        claimed.push(adopted);
                    }
                }
                Claim::Release => owners::release(&self.rs_api, &rs, &uid).await?,
                Claim::Ignore => {}
            }
        }
        Ok(claimed)
    }

    /// The new ReplicaSet (its template equals the Deployment's), if any, and all the others.
    fn split(&self, rs_list: &[ReplicaSet]) -> (Option<ReplicaSet>, Vec<ReplicaSet>) {
        let new = rollout::find_new_replica_set(&self.d, rs_list).cloned();
        let new_uid = new.as_ref().and_then(|rs| rs.metadata.uid.clone());
        let old = rs_list
            .iter()
            .filter(|rs| new_uid.is_none() || rs.metadata.uid != new_uid)
            .cloned()
            .collect();
        (new, old)
    }

    /// `getAllReplicaSetsAndSyncRevision`.
    async fn all_replica_sets(
        &mut self,
        rs_list: &[ReplicaSet],
        create: bool,
    ) -> Result<(Option<ReplicaSet>, Vec<ReplicaSet>), Error> {
        let (existing, old) = self.split(rs_list);
        let new = self.new_replica_set(existing, &old, create).await?;
        Ok((new, old))
    }

    /// `getNewReplicaSet`: brings an existing new ReplicaSet's revision and annotations up to date, or
    /// (when `create`) creates it.
    async fn new_replica_set(
        &mut self,
        existing: Option<ReplicaSet>,
        old: &[ReplicaSet],
        create: bool,
    ) -> Result<Option<ReplicaSet>, Error> {
        let new_revision = rollout::max_revision(old) + 1;
        let min_ready = self.d.spec.as_ref().and_then(|s| s.min_ready_seconds);
        if let Some(existing) = existing {
            let mut copy = existing.clone();
            let annotations_updated =
                rollout::set_new_replica_set_annotations(&self.d, &mut copy, new_revision, true);
            let min_ready_update = copy
                .spec
                .as_ref()
                .and_then(|s| s.min_ready_seconds)
                .unwrap_or(0)
                != min_ready.unwrap_or(0);
            if annotations_updated || min_ready_update {
                let patch = json!({
                    "metadata": {"annotations": copy.metadata.annotations},
                    "spec": {"minReadySeconds": min_ready.unwrap_or(0)},
                });
                let name = copy.metadata.name.clone().unwrap_or_default();
                let updated = self
                    .rs_api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                    .await?;
                return Ok(Some(updated));
            }
            let revision = copy
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(REVISION))
                .cloned()
                .unwrap_or_default();
            self.set_deployment_revision(&revision).await?;
            if rollout::has_progress_deadline(&self.d)
                && condition(&self.status(), "Progressing").is_none()
            {
                let mut status = self.status();
                let msg = format!(
                    "Found new replica set {:?}",
                    copy.metadata.name.as_deref().unwrap_or_default()
                );
                set_condition(
                    &mut status,
                    new_condition("Progressing", "True", reason::FOUND_NEW_RS, msg),
                );
                self.write_status(status).await?;
            }
            return Ok(Some(copy));
        }
        if !create {
            return Ok(None);
        }

        let spec = self.d.spec.clone().unwrap_or_default();
        let collision_count = self.d.status.as_ref().and_then(|s| s.collision_count);
        let hash = rollout::compute_hash(&spec.template, collision_count);
        let mut template = spec.template.clone();
        template
            .metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let mut rs_selector = spec.selector.clone();
        rs_selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let name = format!("{}-{hash}", self.name());
        let mut new_rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: self.d.metadata.namespace.clone(),
                owner_references: Some(vec![owners::new_controller_ref(&self.d)]),
                labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: min_ready,
                selector: rs_selector,
                template: Some(template),
            }),
            status: None,
        };
        let replicas = {
            let all: Vec<&ReplicaSet> = old.iter().chain(std::iter::once(&new_rs)).collect();
            rollout::new_rs_new_replicas(&self.d, &all, &new_rs)
        };
        if let Some(s) = new_rs.spec.as_mut() {
            s.replicas = Some(replicas);
        }
        rollout::set_new_replica_set_annotations(&self.d, &mut new_rs, new_revision, false);

        let (created, already_existed) = match self
            .rs_api
            .create(&PostParams::default(), &new_rs)
            .await
        {
            Ok(created) => (created, false),
            Err(e) if is_conflict(&e) => {
                // Either our own earlier create (the cache lagged) or a hash collision.
                let found = self.rs_api.get(&name).await?;
                let ours = owners::controller_ref(&found.metadata).map(|r| &r.uid)
                    == self.d.metadata.uid.as_ref();
                let same = found
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .is_some_and(|t| equal_ignore_hash(t, &spec.template));
                if ours && same {
                    (found, true)
                } else {
                    let mut status = self.status();
                    status.collision_count = Some(collision_count.unwrap_or(0).saturating_add(1));
                    self.write_status(status).await?;
                    return Err(Error::Invalid(format!(
                        "pod template hash collision on replica set {name}, retrying with collisionCount"
                    )));
                }
            }
            Err(e) => {
                let msg = format!("Failed to create new replica set {name:?}: {e}");
                self.event(EventType::Warning, "FailedCreate", msg.clone())
                    .await;
                if rollout::has_progress_deadline(&self.d) {
                    let mut status = self.status();
                    set_condition(
                        &mut status,
                        new_condition("Progressing", "False", reason::FAILED_RS_CREATE, msg),
                    );
                    self.write_status(status).await?;
                }
                return Err(e.into());
            }
        };
        if !already_existed && replicas > 0 {
            self.event(
                EventType::Normal,
                "ScalingReplicaSet",
                format!("Scaled up replica set {name} from 0 to {replicas}"),
            )
            .await;
        }
        self.set_deployment_revision(&new_revision.to_string())
            .await?;
        if !already_existed && rollout::has_progress_deadline(&self.d) {
            let mut status = self.status();
            let msg = format!("Created new replica set {name:?}");
            set_condition(
                &mut status,
                new_condition("Progressing", "True", reason::NEW_RS_CREATED, msg),
            );
            self.write_status(status).await?;
        }
        Ok(Some(created))
    }

    /// Keeps the Deployment's revision annotation equal to its new ReplicaSet's.
    async fn set_deployment_revision(&mut self, revision: &str) -> Result<(), Error> {
        let current = self
            .d
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REVISION));
        if revision.is_empty() || current.map(String::as_str) == Some(revision) {
            return Ok(());
        }
        let patch = json!({"metadata": {"annotations": {REVISION: revision}}});
        let name = self.name().to_owned();
        self.d_api
            .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await?;
        self.d
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(REVISION.into(), revision.into());
        Ok(())
    }

    /// `checkPausedConditions`: a Progressing=Unknown condition records pause and resume.
    async fn check_paused_conditions(&mut self) -> Result<(), Error> {
        if !rollout::has_progress_deadline(&self.d) {
            return Ok(());
        }
        let mut status = self.status();
        let paused_recorded = condition(&status, "Progressing").and_then(|c| c.reason.as_deref())
            == Some(reason::PAUSED);
        let cond = if self.paused() && !paused_recorded {
            new_condition(
                "Progressing",
                "Unknown",
                reason::PAUSED,
                "Deployment is paused".into(),
            )
        } else if !self.paused() && paused_recorded {
            new_condition(
                "Progressing",
                "Unknown",
                reason::RESUMED,
                "Deployment is resumed".into(),
            )
        } else {
            return Ok(());
        };
        set_condition(&mut status, cond);
        self.write_status(status).await
    }

    /// `sync`: scaling only (paused Deployments and scaling events), no rollout.
    async fn sync(&mut self, rs_list: &[ReplicaSet]) -> Result<(), Error> {
        let (mut new, mut old) = self.all_replica_sets(rs_list, false).await?;
        self.scale(&mut new, &mut old).await?;
        if self.paused() {
            self.cleanup(&old).await?;
        }
        let status = self.calculate_status(new.as_ref(), &old);
        self.write_status(status).await
    }

    async fn sync_status_only(&mut self, rs_list: &[ReplicaSet]) -> Result<(), Error> {
        let (existing, old) = self.split(rs_list);
        let new = self.new_replica_set(existing, &old, false).await?;
        let status = self.calculate_status(new.as_ref(), &old);
        self.write_status(status).await
    }

    /// Scales `rs` to `to`, refreshing its replicas annotations (`scaleReplicaSet`); returns whether
    /// the size changed and the ReplicaSet as written.
    async fn scale_replica_set(
        &self,
        rs: &ReplicaSet,
        to: i32,
    ) -> Result<(bool, ReplicaSet), Error> {
        let from = rs_replicas(rs);
        let desired = deployment_replicas(&self.d);
        let max = desired + max_surge(&self.d);
        let size_changes = from != to;
        if !size_changes && !rollout::replicas_annotations_need_update(rs, desired, max) {
            return Ok((false, rs.clone()));
        }
        let name = rs.metadata.name.clone().unwrap_or_default();
        let patch = json!({
            "metadata": {"annotations": {
                rollout::DESIRED_REPLICAS: desired.to_string(),
                rollout::MAX_REPLICAS: max.to_string(),
            }},
            "spec": {"replicas": to},
        });
        let updated = self
            .rs_api
            .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await?;
        if size_changes {
            let direction = if to > from { "up" } else { "down" };
            self.event(
                EventType::Normal,
                "ScalingReplicaSet",
                format!("Scaled {direction} replica set {name} from {from} to {to}"),
            )
            .await;
        }
        Ok((size_changes, updated))
    }

    /// `scale`: one active ReplicaSet (or, with none, the newest) takes the whole size; a saturated
    /// new ReplicaSet ends the old ones; otherwise a RollingUpdate spreads the change over the active
    /// ReplicaSets in proportion to their sizes, leftovers to the largest.
    async fn scale(
        &self,
        new: &mut Option<ReplicaSet>,
        old: &mut [ReplicaSet],
    ) -> Result<(), Error> {
        let replicas = deployment_replicas(&self.d);
        let active: Vec<&ReplicaSet> = new
            .iter()
            .chain(old.iter())
            .filter(|rs| is_active(rs))
            .collect();
        let target = match active.len() {
            0 => new
                .as_ref()
                .or_else(|| old.iter().max_by(|a, b| by_creation(a, b)))
                .map(|rs| rs.metadata.uid.clone()),
            1 => active.first().map(|rs| rs.metadata.uid.clone()),
            _ => None,
        };
        if let Some(uid) = target {
            if let Some(rs) = slot(new, old, &uid)
                && rs_replicas(rs) != replicas
            {
                *rs = self.scale_replica_set(rs, replicas).await?.1;
            }
            return Ok(());
        }
        if new
            .as_ref()
            .is_some_and(|rs| rollout::is_saturated(&self.d, rs))
        {
            for rs in old.iter_mut().filter(|rs| is_active(rs)) {
                *rs = self.scale_replica_set(rs, 0).await?.1;
            }
            return Ok(());
        }
        if !rollout::is_rolling_update(&self.d) {
            return Ok(());
        }
        let mut all: Vec<ReplicaSet> = new
            .iter()
            .chain(old.iter())
            .filter(|rs| is_active(rs))
            .cloned()
            .collect();
        let current: i32 = all.iter().map(rs_replicas).sum();
        let allowed = if replicas > 0 {
            replicas + max_surge(&self.d)
        } else {
            0
        };
        let to_add = allowed - current;
        // Scaling up, equal sizes grow newest first; scaling down, they shrink oldest first.
        all.sort_by(|a, b| by_size(a, b, to_add > 0));
        let mut added = 0;
        let mut sizes: Vec<i32> = Vec::with_capacity(all.len());
        for rs in &all {
            let p = if to_add == 0 {
                0
            } else {
                rollout::proportion(rs, &self.d, to_add, added)
            };
            sizes.push(rs_replicas(rs) + p);
            added += p;
        }
        if let Some(first) = sizes.first_mut()
            && to_add != 0
        {
            *first = (*first + to_add - added).max(0);
        }
        for (rs, size) in all.iter().zip(sizes) {
            if let Some(target) = slot(new, old, &rs.metadata.uid) {
                *target = self.scale_replica_set(target, size).await?.1;
            }
        }
        Ok(())
    }

    /// `rolloutRolling`.
    async fn rollout_rolling(&mut self, rs_list: &[ReplicaSet]) -> Result<(), Error> {
        let (new, mut old) = self.all_replica_sets(rs_list, true).await?;
        let Some(mut new) = new else {
            return Err(Error::Invalid("new replica set was not created".into()));
        };
        // Scale up, if we can.
        let (scaled_up, updated) = self.reconcile_new_replica_set(&new, &old).await?;
        new = updated;
        if !scaled_up {
            // Scale down, if we can.
            let scaled_down = self.reconcile_old_replica_sets(&new, &mut old).await?;
            if !scaled_down && rollout::deployment_complete(&self.d, &self.status()) {
                self.cleanup(&old).await?;
            }
        }
        self.sync_rollout_status(Some(&new), &old).await
    }

    /// `reconcileNewReplicaSet`.
    async fn reconcile_new_replica_set(
        &self,
        new: &ReplicaSet,
        old: &[ReplicaSet],
    ) -> Result<(bool, ReplicaSet), Error> {
        let replicas = deployment_replicas(&self.d);
        let current = rs_replicas(new);
        if current == replicas {
            return Ok((false, new.clone()));
        }
        let target = if current > replicas {
            replicas
        } else {
            let all: Vec<&ReplicaSet> = old.iter().chain(std::iter::once(new)).collect();
            rollout::new_rs_new_replicas(&self.d, &all, new)
        };
        self.scale_replica_set(new, target).await
    }

    /// `reconcileOldReplicaSets`: shrinks old ReplicaSets as far as availability allows, unhealthy
    /// replicas first.
    async fn reconcile_old_replica_sets(
        &self,
        new: &ReplicaSet,
        old: &mut [ReplicaSet],
    ) -> Result<bool, Error> {
        let old_count: i32 = old.iter().map(rs_replicas).sum();
        if old_count == 0 {
            return Ok(false);
        }
        let all_count = old_count + rs_replicas(new);
        let min_available = deployment_replicas(&self.d) - max_unavailable(&self.d);
        let new_unavailable = rs_replicas(new) - rs_available(new);
        let max_scaled_down = all_count - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        old.sort_by(by_creation);
        // Clean up unhealthy replicas first: they do not count towards availability anyway.
        let mut cleaned = 0;
        for rs in old.iter_mut() {
            if cleaned >= max_scaled_down {
                break;
            }
            let (replicas, available) = (rs_replicas(rs), counted_available(rs));
            if replicas == 0 || available >= replicas {
                continue;
            }
            let down = (max_scaled_down - cleaned).min(replicas - available);
            *rs = self.scale_replica_set(rs, replicas - down).await?.1;
            cleaned += down;
        }
        // Then scale down within maxUnavailable.
        let available: i32 =
            old.iter().map(counted_available).sum::<i32>() + counted_available(new);
        let mut scaled = 0;
        if available > min_available {
            let budget = available - min_available;
            for rs in old.iter_mut() {
                if scaled >= budget {
                    break;
                }
                let replicas = rs_replicas(rs);
                if replicas == 0 {
                    continue;
                }
                let down = replicas.min(budget - scaled);
                *rs = self.scale_replica_set(rs, replicas - down).await?.1;
                scaled += down;
            }
        }
        Ok(cleaned + scaled > 0)
    }

    /// `rolloutRecreate`: old ReplicaSets to zero, wait for their pods to go, then the new one.
    async fn rollout_recreate(&mut self, rs_list: &[ReplicaSet]) -> Result<(), Error> {
        let (mut new, mut old) = self.all_replica_sets(rs_list, false).await?;
        let mut scaled_down = false;
        for rs in old.iter_mut().filter(|rs| is_active(rs)) {
            let (scaled, updated) = self.scale_replica_set(rs, 0).await?;
            *rs = updated;
            scaled_down |= scaled;
        }
        if scaled_down || self.old_pods_running(new.as_ref(), &old).await? {
            return self.sync_rollout_status(new.as_ref(), &old).await;
        }
        if new.is_none() {
            (new, old) = self.all_replica_sets(rs_list, true).await?;
        }
        if let Some(rs) = new.as_ref() {
            new = Some(
                self.scale_replica_set(rs, deployment_replicas(&self.d))
                    .await?
                    .1,
            );
        }
        if rollout::deployment_complete(&self.d, &self.status()) {
            self.cleanup(&old).await?;
        }
        self.sync_rollout_status(new.as_ref(), &old).await
    }

    /// Whether pods of old ReplicaSets still exist and are not terminal (`oldPodsRunning`); pods
    /// being deleted count, so Recreate never overlaps old and new pods.
    async fn old_pods_running(
        &self,
        new: Option<&ReplicaSet>,
        old: &[ReplicaSet],
    ) -> Result<bool, Error> {
        if old.iter().map(rs_status_replicas).sum::<i32>() > 0 {
            return Ok(true);
        }
        let old_uids: HashSet<&str> = old
            .iter()
            .filter_map(|rs| rs.metadata.uid.as_deref())
            .collect();
        let new_uid = new.and_then(|rs| rs.metadata.uid.as_deref());
        let pods = self.pods_api.list(&ListParams::default()).await?.items;
        Ok(pods.iter().any(|pod| {
            let owner = owners::controller_ref(&pod.metadata).map(|r| r.uid.as_str());
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            owner.is_some_and(|uid| old_uids.contains(uid) && Some(uid) != new_uid)
                && !matches!(phase, Some("Failed" | "Succeeded"))
        }))
    }

    /// `cleanupDeployment`: deletes the oldest empty ReplicaSets beyond `revisionHistoryLimit`.
    async fn cleanup(&self, old: &[ReplicaSet]) -> Result<(), Error> {
        let Some(limit) = self.d.spec.as_ref().and_then(|s| s.revision_history_limit) else {
            return Ok(());
        };
        let mut cleanable: Vec<&ReplicaSet> = old
            .iter()
            .filter(|rs| rs.metadata.deletion_timestamp.is_none())
            .collect();
        let excess = i32::try_from(cleanable.len()).unwrap_or(i32::MAX) - limit;
        if excess <= 0 {
            return Ok(());
        }
        cleanable.sort_by(|a, b| by_revision(a, b));
        for rs in cleanable
            .into_iter()
            .take(usize::try_from(excess).unwrap_or(0))
        {
            let observed = rs.status.as_ref().and_then(|s| s.observed_generation);
            if rs_status_replicas(rs) != 0
                || rs_replicas(rs) != 0
                || rs.metadata.generation > observed
            {
                continue;
            }
            let name = rs.metadata.name.as_deref().unwrap_or_default();
            tracing::debug!(replicaset = name, "cleaning up old replica set");
            let params = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Background),
                ..Default::default()
            };
            match self.rs_api.delete(name, &params).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// `calculateStatus`: counts from the ReplicaSets, and the Available condition.
    fn calculate_status(&self, new: Option<&ReplicaSet>, old: &[ReplicaSet]) -> DeploymentStatus {
        let all: Vec<&ReplicaSet> = old.iter().chain(new).collect();
        let available: i32 = all.iter().map(|rs| rs_available(rs)).sum();
        let total: i32 = all.iter().map(|rs| rs_replicas(rs)).sum();
        let mut status = self.status();
        status.observed_generation = self.d.metadata.generation;
        status.replicas = Some(all.iter().map(|rs| rs_status_replicas(rs)).sum());
        status.updated_replicas = Some(new.map_or(0, rs_status_replicas));
        status.ready_replicas = Some(all.iter().map(|rs| rollout::rs_ready(rs)).sum());
        status.available_replicas = Some(available);
        status.unavailable_replicas = Some((total - available).max(0));
        let cond = if available >= deployment_replicas(&self.d) - max_unavailable(&self.d) {
            new_condition(
                "Available",
                "True",
                reason::MIN_AVAILABLE,
                "Deployment has minimum availability.".into(),
            )
        } else {
            new_condition(
                "Available",
                "False",
                reason::MIN_UNAVAILABLE,
                "Deployment does not have minimum availability.".into(),
            )
        };
        set_condition(&mut status, cond);
        status
    }

    /// `syncRolloutStatus`: status plus the Progressing condition.
    async fn sync_rollout_status(
        &mut self,
        new: Option<&ReplicaSet>,
        old: &[ReplicaSet],
    ) -> Result<(), Error> {
        let mut status = self.calculate_status(new, old);
        if !rollout::has_progress_deadline(&self.d) {
            remove_condition(&mut status, "Progressing");
        }
        let current = condition(&self.status(), "Progressing").cloned();
        let complete_before = status.replicas == status.updated_replicas
            && current.as_ref().and_then(|c| c.reason.as_deref()) == Some(reason::NEW_RS_AVAILABLE);
        if rollout::has_progress_deadline(&self.d) && !complete_before {
            let subject = |what: &str| match new.and_then(|rs| rs.metadata.name.as_deref()) {
                Some(rs) => format!("ReplicaSet {rs:?} {what}"),
                None => format!("Deployment {:?} {what}", self.name()),
            };
            if rollout::deployment_complete(&self.d, &status) {
                let msg = subject("has successfully progressed.");
                set_condition(
                    &mut status,
                    new_condition("Progressing", "True", reason::NEW_RS_AVAILABLE, msg),
                );
            } else if rollout::deployment_progressing(&self.d, &status) {
                let mut cond = new_condition(
                    "Progressing",
                    "True",
                    reason::RS_UPDATED,
                    subject("is progressing."),
                );
                if let Some(current) = current.as_ref() {
                    if current.status == "True" {
                        cond.last_transition_time = current.last_transition_time.clone();
                    }
                    remove_condition(&mut status, "Progressing");
                }
                set_condition(&mut status, cond);
            } else if self.timed_out(&status) {
                let msg = subject("has timed out progressing.");
                set_condition(
                    &mut status,
                    new_condition("Progressing", "False", reason::TIMED_OUT, msg),
                );
            }
        }
        // A ReplicaSet's ReplicaFailure condition surfaces on the Deployment.
        let failure = old.iter().chain(new).find_map(|rs| {
            rs.status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .find(|c| c.type_ == "ReplicaFailure" && c.status == "True")
                .cloned()
        });
        match failure {
            Some(c) => set_condition(
                &mut status,
                new_condition(
                    "ReplicaFailure",
                    &c.status,
                    c.reason.as_deref().unwrap_or_default(),
                    c.message.unwrap_or_default(),
                ),
            ),
            None => remove_condition(&mut status, "ReplicaFailure"),
        }
        self.write_status(status).await
    }

    /// `DeploymentTimedOut`: no progress for `progressDeadlineSeconds` since the last update.
    fn timed_out(&self, status: &DeploymentStatus) -> bool {
        let Some(cond) = condition(status, "Progressing") else {
            return false;
        };
        match cond.reason.as_deref() {
            Some(reason::TIMED_OUT) => return true,
            Some(reason::NEW_RS_AVAILABLE) => return false,
            _ => {}
        }
        let deadline = i64::from(
            self.d
                .spec
                .as_ref()
                .and_then(|s| s.progress_deadline_seconds)
                .unwrap_or(600),
        );
        cond.last_update_time
            .as_ref()
            .is_some_and(|t| t.0.as_second() + deadline < Timestamp::now().as_second())
    }

    /// `requeueStuckDeployment`: look again when the progress deadline would pass.
    fn requeue_if_stuck(&self) -> Action {
        let status = self.status();
        let Some(cond) = condition(&status, "Progressing") else {
            return Action::await_change();
        };
        if !rollout::has_progress_deadline(&self.d)
            || rollout::deployment_complete(&self.d, &status)
            || cond.reason.as_deref() == Some(reason::TIMED_OUT)
        {
            return Action::await_change();
        }
        let deadline = i64::from(
            self.d
                .spec
                .as_ref()
                .and_then(|s| s.progress_deadline_seconds)
                .unwrap_or(600),
        );
        let since = cond
            .last_update_time
            .as_ref()
            .map_or(0, |t| t.0.as_second());
        let after = since + deadline - Timestamp::now().as_second();
        Action::requeue(Duration::from_secs(
            u64::try_from(after).unwrap_or(0).max(1),
        ))
    }

    /// Writes `status` through the status subresource when it differs from the stored one.
    async fn write_status(&mut self, status: DeploymentStatus) -> Result<(), Error> {
        self.d.status = Some(status.clone());
        if self.stored_status.as_ref() == Some(&status) {
            return Ok(());
        }
        let mut body = serde_json::to_value(&status).map_err(|e| Error::Invalid(e.to_string()))?;
        if status.conditions.is_none() {
            body["conditions"] = serde_json::Value::Null;
        }
        let name = self.name().to_owned();
        match self
            .d_api
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": body })),
            )
            .await
        {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e.into()),
        }
        self.stored_status = Some(status);
        Ok(())
    }
}

/// The ReplicaSet with `uid` among the new and old ones.
fn slot<'a>(
    new: &'a mut Option<ReplicaSet>,
    old: &'a mut [ReplicaSet],
    uid: &Option<String>,
) -> Option<&'a mut ReplicaSet> {
    match new.as_mut() {
        Some(rs) if rs.metadata.uid == *uid => Some(rs),
        _ => old.iter_mut().find(|rs| rs.metadata.uid == *uid),
    }
}

/// Available replicas that count towards the rollout's availability budget: at most
/// `spec.replicas`, because a ReplicaSet whose status has not caught up with a scale-down is about to
/// lose the surplus (Kubernetes reads `status.availableReplicas` alone and can briefly overshoot
/// maxUnavailable in that window).
fn counted_available(rs: &ReplicaSet) -> i32 {
    rs_available(rs).min(rs_replicas(rs))
}
