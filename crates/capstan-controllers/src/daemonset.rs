//! The DaemonSet controller (Kubernetes' `pkg/controller/daemon`): one pod per eligible node.
//!
//! A node is eligible when the daemon pod (the template plus the standard DaemonSet tolerations:
//! `not-ready`/`unreachable` NoExecute, `disk-pressure`, `memory-pressure`, `pid-pressure`,
//! `unschedulable` NoSchedule, and `network-unavailable` for host-network pods) fits its
//! `nodeSelector`, required node affinity and NoSchedule/NoExecute taints; a pod keeps running on a
//! node as long as its affinity matches and no NoExecute taint is untolerated. Pods are created
//! unbound with a required node affinity on `metadata.name` (`In [node]`), so the scheduler places
//! them, and labelled `controller-revision-hash` (the template hash) and `pod-template-generation`.
//!
//! A sync claims the set's pods and ControllerRevisions, creates missing daemon pods, deletes
//! failed ones (they are recreated), surplus ones (the oldest stays), and those on nodes that are no
//! longer eligible or no longer exist (Kubernetes leaves the latter to the pod GC controller, which
//! Capstan does not have), then rolls out a new template with `RollingUpdate` within
//! `maxUnavailable` (`maxSurge` is not implemented; `OnDelete` waits for the user), and writes
//! `status`. Node events requeue every DaemonSet.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::join_all;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    Toleration,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
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
use crate::util::{Error, history, is_conflict, is_not_found, pods, rollout, scheduling, selector};

/// The controller's name in events (`source.component`).
const COMPONENT: &str = "daemonset-controller";
/// The pod and revision label holding the template hash.
const REVISION_HASH_LABEL: &str = "controller-revision-hash";
/// The (deprecated, still written) pod label holding the DaemonSet's generation.
const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";
/// At most this many pods are created or deleted in one sync.
const BURST_REPLICAS: usize = 250;

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
        Api::<DaemonSet>::all(client.clone()),
        watcher::Config::default(),
    );
    let store = controller.store();
    let all = store.clone();
    let state = Arc::new(State {
        recorder: Recorder::new(client.clone(), COMPONENT),
        client: client.clone(),
    });
    controller
        .watches_shared_stream(ctx.pods.touched(), move |pod| pod_owners(&store, &pod))
        .watches(
            Api::<Node>::all(client),
            watcher::Config::default(),
            move |_node| {
                all.state()
                    .iter()
                    .map(|ds| ObjectRef::from_obj(ds.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(reconcile, error_policy, state)
        .for_each(|result| {
            if let Err(error) = result {
                tracing::debug!(controller = "daemonset", %error, "reconcile failed");
            }
            futures::future::ready(())
        })
        .await;
}

fn pod_owners(store: &Store<DaemonSet>, pod: &Pod) -> Vec<ObjectRef<DaemonSet>> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    if let Some(owner) = owners::controller_ref(&pod.metadata) {
        if owner.kind == "DaemonSet" && owner.api_version.starts_with("apps/") {
            return vec![ObjectRef::new(&owner.name).within(ns)];
        }
        return vec![];
    }
    store
        .state()
        .iter()
        .filter(|ds| ds.metadata.namespace.as_deref() == Some(ns))
        .filter(|ds| {
            selector::matches(
                ds.spec.as_ref().map(|s| &s.selector),
                pod.metadata.labels.as_ref(),
            )
        })
        .map(|ds| ObjectRef::from_obj(ds.as_ref()))
        .collect()
}

fn error_policy(ds: Arc<DaemonSet>, error: &Error, _state: Arc<State>) -> Action {
    let name = ds.metadata.name.as_deref().unwrap_or_default();
    match error {
        Error::Api(e) if is_conflict(e) => Action::requeue(Duration::from_millis(200)),
        _ => {
            tracing::warn!(controller = "daemonset", name, %error, "sync failed, requeueing");
            Action::requeue(Duration::from_secs(2))
        }
    }
}

async fn reconcile(ds: Arc<DaemonSet>, state: Arc<State>) -> Result<Action, Error> {
    let ns = ds.metadata.namespace.clone().unwrap_or_default();
    let name = ds.metadata.name.clone().unwrap_or_default();
    let span =
        tracing::info_span!("reconcile", controller = "daemonset", key = %format!("{ns}/{name}"));
    sync(&ds, &state, &ns).instrument(span).await
}

fn missing(ds: &DaemonSet, field: &'static str) -> Error {
    Error::MissingField {
        kind: "DaemonSet",
        namespace: ds.metadata.namespace.clone().unwrap_or_default(),
        name: ds.metadata.name.clone().unwrap_or_default(),
        field,
    }
}

fn toleration(key: &str, effect: &str) -> Toleration {
    Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        value: None,
        toleration_seconds: None,
    }
}

/// Adds the tolerations every daemon pod has (`AddOrUpdateDaemonPodTolerations`).
pub(crate) fn add_daemon_tolerations(pod: &mut Pod) {
    let Some(spec) = pod.spec.as_mut() else {
        return;
    };
    let mut wanted = vec![
        toleration("node.kubernetes.io/not-ready", "NoExecute"),
        toleration("node.kubernetes.io/unreachable", "NoExecute"),
        toleration("node.kubernetes.io/disk-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/memory-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/pid-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if spec.host_network == Some(true) {
        wanted.push(toleration(
            "node.kubernetes.io/network-unavailable",
            "NoSchedule",
        ));
    }
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for t in wanted {
        // Replace a toleration of the same key and effect (e.g. one with tolerationSeconds).
        tolerations.retain(|x| !(x.key == t.key && x.effect == t.effect));
        tolerations.push(t);
    }
}

/// Pins the pod to `node` through required node affinity on `metadata.name`
/// (`ReplaceDaemonSetPodNodeNameNodeAffinity`): every existing term keeps its label expressions
/// and gets the name requirement as its only field requirement.
pub(crate) fn pin_to_node(pod: &mut Pod, node: &str) {
    let Some(spec) = pod.spec.as_mut() else {
        return;
    };
    let requirement = NodeSelectorRequirement {
        key: "metadata.name".into(),
        operator: "In".into(),
        values: Some(vec![node.into()]),
    };
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let node_affinity = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    let required = node_affinity
        .required_during_scheduling_ignored_during_execution
        .get_or_insert_with(NodeSelector::default);
    if required.node_selector_terms.is_empty() {
        required
            .node_selector_terms
            .push(NodeSelectorTerm::default());
    }
    for term in &mut required.node_selector_terms {
        term.match_fields = Some(vec![requirement.clone()]);
    }
}

/// The daemon pod for `node`, not yet created.
fn new_pod(ds: &DaemonSet, node: &str, hash: &str) -> Result<Pod, Error> {
    let template = &ds
        .spec
        .as_ref()
        .ok_or_else(|| missing(ds, "spec"))?
        .template;
    let mut pod = pods::from_template(template, ds);
    pod.metadata.generate_name = Some(format!(
        "{}-",
        ds.metadata.name.as_deref().unwrap_or_default()
    ));
    let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(REVISION_HASH_LABEL.into(), hash.into());
    labels.insert(
        TEMPLATE_GENERATION_LABEL.into(),
        ds.metadata.generation.unwrap_or(1).to_string(),
    );
    add_daemon_tolerations(&mut pod);
    pin_to_node(&mut pod, node);
    Ok(pod)
}

/// (should run, should continue running) on `node` (`NodeShouldRunDaemonPod`).
fn node_should_run(pod: &Pod, node: &Node) -> (bool, bool) {
    if !scheduling::fits_node_affinity(pod, node) {
        return (false, false);
    }
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default();
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default();
    let fits = scheduling::untolerated(taints, tolerations, &["NoSchedule", "NoExecute"]).is_none();
    let keeps = scheduling::untolerated(taints, tolerations, &["NoExecute"]).is_none();
    (fits, keeps)
}

fn hash_of(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()?
        .get(REVISION_HASH_LABEL)
        .map(String::as_str)
}

fn created(pod: &Pod) -> Option<Timestamp> {
    pod.metadata.creation_timestamp.as_ref().map(|t| t.0)
}

/// The revision of the current template: found (re-numbered if an older one is re-used) or
/// created. Returns the hash its pods carry, or `None` after a name collision.
async fn current_hash(
    ds: &DaemonSet,
    api: &Api<ControllerRevision>,
    state: &State,
    ns: &str,
) -> Result<Option<(String, Vec<ControllerRevision>)>, Error> {
    let spec = ds.spec.as_ref().ok_or_else(|| missing(ds, "spec"))?;
    let revisions = history::claim_revisions(api, ds, Some(&spec.selector)).await?;
    let data = history::revision_data(Some(&spec.template));
    let latest = revisions.iter().map(|r| r.revision).max().unwrap_or(0);
    let label = |r: &ControllerRevision| {
        r.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(REVISION_HASH_LABEL))
            .cloned()
    };
    let equal = history::equal_revisions(&revisions, &data);
    if let Some(rev) = equal.last() {
        if rev.revision != latest {
            history::set_revision_number(api, rev, latest + 1).await?;
        }
        if let Some(hash) = label(rev) {
            return Ok(Some((hash, revisions)));
        }
    }
    let collision_count = ds.status.as_ref().and_then(|s| s.collision_count);
    let hash = rollout::compute_hash(&spec.template, collision_count);
    let template_labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.as_ref());
    let new = history::new_revision(
        ds,
        template_labels,
        REVISION_HASH_LABEL,
        &hash,
        data,
        history::next_revision(&revisions),
    );
    if history::create_revision(api, &new).await?.is_none() {
        let count = collision_count.unwrap_or(0).saturating_add(1);
        let dss: Api<DaemonSet> = Api::namespaced(state.client.clone(), ns);
        let name = ds.metadata.name.as_deref().unwrap_or_default();
        dss.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"collisionCount": count}})),
        )
        .await?;
        return Ok(None);
    }
    Ok(Some((hash, revisions)))
}

/// maxUnavailable of a RollingUpdate DaemonSet over `desired` nodes (at least 1), or `None` for
/// OnDelete.
fn max_unavailable(ds: &DaemonSet, desired: i32) -> Result<Option<i32>, Error> {
    let strategy = ds.spec.as_ref().and_then(|s| s.update_strategy.as_ref());
    if strategy.and_then(|s| s.type_.as_deref()) == Some("OnDelete") {
        return Ok(None);
    }
    let value = strategy
        .and_then(|s| s.rolling_update.as_ref())
        .and_then(|r| r.max_unavailable.clone())
        .unwrap_or(IntOrString::Int(1));
    let n = rollout::scaled_value(&value, desired, true).map_err(Error::Invalid)?;
    Ok(Some(n.max(1)))
}

async fn sync(ds: &DaemonSet, state: &State, ns: &str) -> Result<Action, Error> {
    let Some(spec) = ds.spec.as_ref() else {
        return Err(missing(ds, "spec"));
    };
    let pods_api: Api<Pod> = Api::namespaced(state.client.clone(), ns);
    let revs_api: Api<ControllerRevision> = Api::namespaced(state.client.clone(), ns);
    let uid = ds.metadata.uid.clone().unwrap_or_default();
    let deleting = ds.metadata.deletion_timestamp.is_some();
    let nodes = Api::<Node>::all(state.client.clone())
        .list(&ListParams::default())
        .await?
        .items;

    let mut owned = Vec::new();
    for pod in pods_api.list(&ListParams::default()).await?.items {
        if pods::is_terminating(&pod) {
            continue;
        }
        let selected = selector::matches(Some(&spec.selector), pod.metadata.labels.as_ref());
        match owners::claim(&uid, deleting, &pod.metadata, selected) {
            Claim::Owned => owned.push(pod),
            Claim::Adopt => {
                if let Some(p) =
                    owners::adopt(&pods_api, &pod, owners::new_controller_ref(ds)).await?
                {
                    owned.push(p);
                }
            }
            Claim::Release => owners::release(&pods_api, &pod, &uid).await?,
            Claim::Ignore => {}
        }
    }
    if deleting {
        return Ok(Action::await_change());
    }
    let Some((hash, revisions)) = current_hash(ds, &revs_api, state, ns).await? else {
        return Ok(Action::requeue(Duration::from_millis(100)));
    };

    let mut by_node: HashMap<String, Vec<&Pod>> = HashMap::new();
    for pod in &owned {
        if let Some(node) = scheduling::target_node_name(pod) {
            by_node.entry(node).or_default().push(pod);
        }
    }
    for pods in by_node.values_mut() {
        pods.sort_by_key(|p| created(p));
    }

    let now = Timestamp::now();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let mut to_create: Vec<String> = Vec::new();
    let mut to_delete: Vec<&Pod> = Vec::new();
    let mut status = ds.status.clone().unwrap_or_default();
    let (mut desired, mut scheduled, mut misscheduled, mut ready, mut available, mut updated) =
        (0, 0, 0, 0, 0, 0);
    // Nodes that should run the pod, with what they have: for the rolling update.
    let mut eligible: Vec<(&str, Vec<&Pod>)> = Vec::new();
    for node in &nodes {
        let name = node.metadata.name.as_deref().unwrap_or_default();
        let probe = new_pod(ds, name, &hash)?;
        let (should_run, should_continue) = node_should_run(&probe, node);
        let here = by_node.remove(name).unwrap_or_default();
        let (failed, running): (Vec<&Pod>, Vec<&Pod>) =
            here.iter().partition(|p| pods::phase(p) == Some("Failed"));
        let active: Vec<&Pod> = running
            .iter()
            .copied()
            .filter(|p| pods::is_active(p))
            .collect();

        if should_run {
            desired += 1;
            if let Some(pod) = active.first() {
                scheduled += 1;
                if pods::is_ready(pod) {
                    ready += 1;
                }
                if pods::is_available(pod, min_ready, now) {
                    available += 1;
                }
                if hash_of(pod) == Some(hash.as_str()) {
                    updated += 1;
                }
            }
        } else if !active.is_empty() {
            misscheduled += 1;
        }

        if should_continue {
            for pod in &failed {
                state
                    .recorder
                    .publish(
                        ds,
                        EventType::Warning,
                        "FailedDaemonPod",
                        format!(
                            "Found failed daemon pod {ns}/{} on node {name}, will try to kill it",
                            pod.metadata.name.as_deref().unwrap_or_default()
                        ),
                    )
                    .await;
            }
            to_delete.extend(failed.iter().copied());
            if should_run && active.is_empty() {
                to_create.push(name.to_owned());
            }
            // More than one daemon pod: keep the oldest.
            to_delete.extend(active.iter().skip(1).copied());
            if should_run && let Some(pod) = active.first() {
                eligible.push((name, vec![*pod]));
            } else if should_run {
                eligible.push((name, vec![]));
            }
        } else {
            to_delete.extend(here.iter().copied());
        }
    }
    // Pods pinned to nodes that no longer exist.
    for pods in by_node.values() {
        to_delete.extend(pods.iter().copied());
    }

    // RollingUpdate: replace old pods within maxUnavailable.
    if let Some(max_unavailable) = max_unavailable(ds, desired)? {
        let mut unavailable = 0;
        let mut candidates: Vec<&Pod> = Vec::new();
        for (_, pods) in &eligible {
            match pods.first() {
                None => unavailable += 1,
                Some(pod) if hash_of(pod) == Some(hash.as_str()) => {
                    if !pods::is_available(pod, min_ready, now) {
                        unavailable += 1;
                    }
                }
                Some(pod) => {
                    if pods::is_available(pod, min_ready, now) {
                        candidates.push(pod);
                    } else {
                        // An old pod that is unavailable anyway goes without using the budget.
                        to_delete.push(pod);
                    }
                }
            }
        }
        let budget = usize::try_from(max_unavailable - unavailable).unwrap_or(0);
        candidates.sort_by_key(|p| created(p));
        to_delete.extend(candidates.into_iter().take(budget));
    }

    to_create.truncate(BURST_REPLICAS);
    to_delete.sort_by_key(|p| p.metadata.name.clone());
    to_delete.dedup_by_key(|p| p.metadata.name.clone());
    to_delete.truncate(BURST_REPLICAS);
    let results = join_all(
        to_create
            .iter()
            .map(|node| create_pod(ds, node, &hash, state, &pods_api)),
    )
    .await;
    let mut errors: Vec<Error> = results.into_iter().filter_map(Result::err).collect();
    let results = join_all(
        to_delete
            .iter()
            .map(|p| delete_pod(ds, p, state, &pods_api)),
    )
    .await;
    errors.extend(results.into_iter().filter_map(Result::err));

    status.desired_number_scheduled = desired;
    status.current_number_scheduled = scheduled;
    status.number_misscheduled = misscheduled;
    status.number_ready = ready;
    status.number_available = Some(available);
    status.number_unavailable = Some(desired - available);
    status.updated_number_scheduled = Some(updated);
    status.observed_generation = ds.metadata.generation;
    if ds.status.as_ref() != Some(&status) {
        update_status(ds, &status, state, ns).await?;
    }

    let live: Vec<&str> = owned.iter().filter_map(hash_of).collect();
    let live_names: Vec<String> = live
        .iter()
        .chain(std::iter::once(&hash.as_str()))
        .map(|h| history::revision_name(ds.metadata.name.as_deref().unwrap_or_default(), h))
        .collect();
    let live_refs: Vec<&str> = live_names.iter().map(String::as_str).collect();
    let limit = usize::try_from(spec.revision_history_limit.unwrap_or(10)).unwrap_or(0);
    history::truncate(&revs_api, &revisions, &live_refs, limit).await?;

    if let Some(first) = errors.pop() {
        return Err(first);
    }
    if min_ready > 0 && ready != available {
        return Ok(Action::requeue(Duration::from_secs(
            u64::try_from(min_ready).unwrap_or(1),
        )));
    }
    Ok(Action::await_change())
}

async fn create_pod(
    ds: &DaemonSet,
    node: &str,
    hash: &str,
    state: &State,
    api: &Api<Pod>,
) -> Result<(), Error> {
    let pod = new_pod(ds, node, hash)?;
    match api.create(&PostParams::default(), &pod).await {
        Ok(created) => {
            let name = created.metadata.name.unwrap_or_default();
            state
                .recorder
                .publish(
                    ds,
                    EventType::Normal,
                    "SuccessfulCreate",
                    format!("Created pod: {name}"),
                )
                .await;
            Ok(())
        }
        Err(e) => {
            state
                .recorder
                .publish(
                    ds,
                    EventType::Warning,
                    "FailedCreate",
                    format!("Error creating: {e}"),
                )
                .await;
            Err(e.into())
        }
    }
}

async fn delete_pod(ds: &DaemonSet, pod: &Pod, state: &State, api: &Api<Pod>) -> Result<(), Error> {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {
            state
                .recorder
                .publish(
                    ds,
                    EventType::Normal,
                    "SuccessfulDelete",
                    format!("Deleted pod: {name}"),
                )
                .await;
            Ok(())
        }
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => {
            state
                .recorder
                .publish(
                    ds,
                    EventType::Warning,
                    "FailedDelete",
                    format!("Error deleting: {e}"),
                )
                .await;
            Err(e.into())
        }
    }
}

async fn update_status(
    ds: &DaemonSet,
    status: &DaemonSetStatus,
    state: &State,
    ns: &str,
) -> Result<(), Error> {
    let api: Api<DaemonSet> = Api::namespaced(state.client.clone(), ns);
    let body = serde_json::to_value(status).map_err(|e| Error::Invalid(e.to_string()))?;
    let name = ds.metadata.name.as_deref().unwrap_or_default();
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
    use super::*;

    fn ds(spec_extra: serde_json::Value) -> DaemonSet {
        let mut spec = json!({
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {"containers": [{"name": "c", "image": "agent"}]}},
        });
        if let (Some(s), Some(extra)) = (spec.as_object_mut(), spec_extra.as_object()) {
            for (k, v) in extra {
                s.insert(k.clone(), v.clone());
            }
        }
        serde_json::from_value(json!({"metadata": {"name": "agent", "namespace": "kube-system", "generation": 2, "uid": "u1"}, "spec": spec}))
            .expect("daemonset")
    }

    fn node(value: serde_json::Value) -> Node {
        serde_json::from_value(value).expect("node")
    }

    #[test]
    fn daemon_pods_carry_tolerations_affinity_and_labels() {
        let pod = new_pod(&ds(json!({})), "n1", "abc").expect("pod");
        let labels = pod.metadata.labels.as_ref().expect("labels");
        assert_eq!(
            labels.get(REVISION_HASH_LABEL).map(String::as_str),
            Some("abc")
        );
        assert_eq!(
            labels.get(TEMPLATE_GENERATION_LABEL).map(String::as_str),
            Some("2")
        );
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("agent-"));
        assert_eq!(scheduling::target_node_name(&pod).as_deref(), Some("n1"));
        let keys: Vec<(String, String)> = pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|t| (t.key.unwrap_or_default(), t.effect.unwrap_or_default()))
            .collect();
        for (key, effect) in [
            ("node.kubernetes.io/not-ready", "NoExecute"),
            ("node.kubernetes.io/unreachable", "NoExecute"),
            ("node.kubernetes.io/disk-pressure", "NoSchedule"),
            ("node.kubernetes.io/memory-pressure", "NoSchedule"),
            ("node.kubernetes.io/pid-pressure", "NoSchedule"),
            ("node.kubernetes.io/unschedulable", "NoSchedule"),
        ] {
            assert!(keys.contains(&(key.into(), effect.into())), "{key}");
        }
    }

    #[test]
    fn node_eligibility_cases() {
        let plain = ds(json!({}));
        let selective = ds(
            json!({"template": {"metadata": {"labels": {"app": "agent"}},
            "spec": {"containers": [{"name": "c"}], "nodeSelector": {"role": "edge"}}}}),
        );
        let cases = [
            (&plain, json!({"metadata": {"name": "n1"}}), (true, true)),
            (
                &plain,
                json!({"metadata": {"name": "n1"}, "spec": {"unschedulable": true,
                "taints": [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]}}),
                (true, true),
            ),
            (
                &plain,
                json!({"metadata": {"name": "n1"}, "spec": {
                "taints": [{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]}}),
                (true, true),
            ),
            (
                &plain,
                json!({"metadata": {"name": "n1"}, "spec": {
                "taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]}}),
                (false, true),
            ),
            (
                &plain,
                json!({"metadata": {"name": "n1"}, "spec": {
                "taints": [{"key": "dedicated", "value": "db", "effect": "NoExecute"}]}}),
                (false, false),
            ),
            (
                &plain,
                json!({"metadata": {"name": "n1"}, "spec": {
                "taints": [{"key": "soft", "effect": "PreferNoSchedule"}]}}),
                (true, true),
            ),
            (
                &selective,
                json!({"metadata": {"name": "n1", "labels": {"role": "edge"}}}),
                (true, true),
            ),
            (
                &selective,
                json!({"metadata": {"name": "n1", "labels": {"role": "core"}}}),
                (false, false),
            ),
        ];
        for (set, n, want) in cases {
            let n = node(n);
            let pod = new_pod(set, "n1", "h").expect("pod");
            assert_eq!(node_should_run(&pod, &n), want, "{n:?}");
        }
    }

    #[test]
    fn max_unavailable_resolves_percentages_and_on_delete() {
        let rolling = |v: serde_json::Value| {
            ds(
                json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": v}}}),
            )
        };
        assert_eq!(max_unavailable(&ds(json!({})), 5).expect("ok"), Some(1));
        assert_eq!(max_unavailable(&rolling(json!(2)), 5).expect("ok"), Some(2));
        assert_eq!(
            max_unavailable(&rolling(json!("50%")), 5).expect("ok"),
            Some(3)
        );
        assert_eq!(
            max_unavailable(&rolling(json!("0%")), 5).expect("ok"),
            Some(1)
        );
        assert_eq!(
            max_unavailable(&ds(json!({"updateStrategy": {"type": "OnDelete"}})), 5).expect("ok"),
            None
        );
    }
}
