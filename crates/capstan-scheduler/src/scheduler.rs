//! The running scheduler: watches (pods, nodes, and the claims and volumes VolumeBinding reads) feed one loop that owns the cache and the
//! queue — no locks — and schedules one pod at a time; bindings run concurrently (bounded) while the
//! next pod is scheduled, and report back to the loop. Events and status updates go through a
//! best-effort side channel (dropped when full, as kube's event broadcaster does).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use capstan_client::Lean;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    Binding, Event, EventSource, Node, NodeSelector, ObjectReference, PersistentVolume,
    PersistentVolumeClaim, Pod,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event as WatchEvent};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::SchedulerOptions;
use crate::algorithm::{Algorithm, Profile};
use crate::cache::Cache;
use crate::queue::{QueueTiming, SchedulingQueue};
use crate::types::{NodeSpec, PodInfo, PodKey};

/// What the watches tell the loop.
#[derive(Debug)]
enum Msg {
    PodsRelist,
    Pod(Arc<PodInfo>),
    PodGone(PodKey),
    PodsSynced,
    NodesRelist,
    Node(NodeSpec),
    NodeGone(String),
    NodesSynced,
    /// Every claim after a (re)list: `namespace/name` -> bound volume.
    Claims(HashMap<String, Option<String>>),
    Claim(String, Option<String>),
    ClaimGone(String),
    /// Every volume after a (re)list: name -> required node affinity.
    Volumes(HashMap<String, Option<NodeSelector>>),
    Volume(String, Option<NodeSelector>),
    VolumeGone(String),
}

/// What a binding task reports.
#[derive(Debug)]
struct BindOutcome {
    pod: Arc<PodInfo>,
    node: String,
    result: Result<(), kube::Error>,
}

/// Writes that do not block scheduling.
#[derive(Debug)]
enum Effect {
    Event {
        pod: Arc<PodInfo>,
        type_: &'static str,
        reason: &'static str,
        action: &'static str,
        message: String,
    },
    Unschedulable {
        pod: Arc<PodInfo>,
        message: String,
    },
}

fn pod_key(meta: &ObjectMeta) -> PodKey {
    Arc::from(format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    ))
}

async fn watch_pods(client: Client, tx: mpsc::Sender<Msg>) {
    let mut stream = watcher(Api::<Lean<Pod>>::all(client));
    while let Some(event) = stream.next().await {
        let msg = match event {
            Ok(WatchEvent::Init) => Msg::PodsRelist,
            Ok(WatchEvent::InitApply(p) | WatchEvent::Apply(p)) => {
                Msg::Pod(Arc::new(PodInfo::from_pod(p.0)))
            }
            Ok(WatchEvent::Delete(p)) => Msg::PodGone(pod_key(&p.0.metadata)),
            Ok(WatchEvent::InitDone) => Msg::PodsSynced,
            Err(e) => {
                warn!(error = %e, "pod watch failed; retrying");
                continue;
            }
        };
        if tx.send(msg).await.is_err() {
            return;
        }
    }
}

async fn watch_nodes(client: Client, tx: mpsc::Sender<Msg>) {
    let mut stream = watcher(Api::<Lean<Node>>::all(client));
    while let Some(event) = stream.next().await {
        let msg = match event {
            Ok(WatchEvent::Init) => Msg::NodesRelist,
            Ok(WatchEvent::InitApply(n) | WatchEvent::Apply(n)) => {
                Msg::Node(NodeSpec::from_node(n.0))
            }
            Ok(WatchEvent::Delete(n)) => Msg::NodeGone(n.0.metadata.name.unwrap_or_default()),
            Ok(WatchEvent::InitDone) => Msg::NodesSynced,
            Err(e) => {
                warn!(error = %e, "node watch failed; retrying");
                continue;
            }
        };
        if tx.send(msg).await.is_err() {
            return;
        }
    }
}

fn claim_entry(claim: &PersistentVolumeClaim) -> (String, Option<String>) {
    let key = format!(
        "{}/{}",
        claim.metadata.namespace.as_deref().unwrap_or_default(),
        claim.metadata.name.as_deref().unwrap_or_default()
    );
    let volume = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .filter(|v| !v.is_empty());
    (key, volume)
}

fn volume_entry(volume: &PersistentVolume) -> (String, Option<NodeSelector>) {
    let affinity = volume
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.clone());
    (volume.metadata.name.clone().unwrap_or_default(), affinity)
}

/// How a listed kind's objects reach the loop: one entry per object, the whole set after a (re)list
/// (so the loop never sees a half-listed set), then one message per change.
struct Listed<K, V> {
    what: &'static str,
    entry: fn(&K) -> (String, V),
    whole: fn(HashMap<String, V>) -> Msg,
    one: fn(String, V) -> Msg,
    gone: fn(String) -> Msg,
}

/// Claims and volumes for the VolumeBinding filter.
async fn watch_listed<K, V>(api: Api<Lean<K>>, tx: mpsc::Sender<Msg>, how: Listed<K, V>)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + k8s_openapi::serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let mut stream = watcher(api);
    let mut listing: Option<HashMap<String, V>> = None;
    while let Some(event) = stream.next().await {
        let msg = match event {
            Ok(WatchEvent::Init) => {
                listing = Some(HashMap::new());
                continue;
            }
            Ok(WatchEvent::InitApply(o)) => {
                let (key, value) = (how.entry)(&o.0);
                listing.get_or_insert_with(HashMap::new).insert(key, value);
                continue;
            }
            Ok(WatchEvent::InitDone) => (how.whole)(listing.take().unwrap_or_default()),
            Ok(WatchEvent::Apply(o)) => {
                let (key, value) = (how.entry)(&o.0);
                (how.one)(key, value)
            }
            Ok(WatchEvent::Delete(o)) => (how.gone)((how.entry)(&o.0).0),
            Err(e) => {
                warn!(error = %e, what = how.what, "watch failed; retrying");
                continue;
            }
        };
        if tx.send(msg).await.is_err() {
            return;
        }
    }
}

fn watcher<K>(
    api: Api<K>,
) -> futures::stream::BoxStream<'static, Result<WatchEvent<K>, watcher::Error>>
where
    K: kube::Resource
        + Clone
        + k8s_openapi::serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static,
{
    watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed()
}

/// The scheduling loop's state.
struct Core {
    client: Client,
    options: SchedulerOptions,
    cache: Cache,
    queue: SchedulingQueue,
    algorithm: Algorithm,
    bindings: Arc<Semaphore>,
    bind_tx: mpsc::UnboundedSender<BindOutcome>,
    effects: mpsc::Sender<Effect>,
    pods_synced: bool,
    nodes_synced: bool,
    claims_synced: bool,
    volumes_synced: bool,
    pod_relist: Option<HashSet<PodKey>>,
    node_relist: Option<HashSet<String>>,
    /// Last PodScheduled=False message written per pod (skip identical rewrites).
    conditions: HashMap<PodKey, String>,
    last_leftover_flush: Instant,
}

impl Core {
    fn handle(&mut self, msg: Msg) {
        let now = Instant::now();
        match msg {
            Msg::PodsRelist => {
                self.pod_relist = Some(HashSet::new());
            }
            Msg::Pod(pod) => {
                if let Some(seen) = &mut self.pod_relist {
                    seen.insert(pod.key.clone());
                }
                self.pod_event(pod, now);
            }
            Msg::PodGone(key) => self.pod_gone(&key, now),
            Msg::PodsSynced => {
                if let Some(seen) = self.pod_relist.take() {
                    for key in self.cache.confirmed_pod_keys() {
                        if !seen.contains(&key) {
                            self.pod_gone(&key, now);
                        }
                    }
                    for key in self.queue.waiting_keys() {
                        if !seen.contains(&key) {
                            self.queue.remove(&key);
                        }
                    }
                }
                self.pods_synced = true;
            }
            Msg::NodesRelist => self.node_relist = Some(HashSet::new()),
            Msg::Node(node) => {
                if let Some(seen) = &mut self.node_relist {
                    seen.insert(node.name.clone());
                }
                if self.cache.upsert_node(node) {
                    self.queue.move_all_unschedulable(now);
                }
            }
            Msg::NodeGone(name) => self.cache.remove_node(&name),
            Msg::Claims(claims) => {
                self.cache.set_claims(claims);
                self.claims_synced = true;
                self.queue.move_all_unschedulable(now);
            }
            Msg::Claim(key, volume) => {
                self.cache.upsert_claim(key, volume);
                self.queue.move_all_unschedulable(now);
            }
            Msg::ClaimGone(key) => self.cache.remove_claim(&key),
            Msg::Volumes(volumes) => {
                self.cache.set_volumes(volumes);
                self.volumes_synced = true;
                self.queue.move_all_unschedulable(now);
            }
            Msg::Volume(name, affinity) => {
                self.cache.upsert_volume(name, affinity);
                self.queue.move_all_unschedulable(now);
            }
            Msg::VolumeGone(name) => self.cache.remove_volume(&name),
            Msg::NodesSynced => {
                if let Some(seen) = self.node_relist.take() {
                    for name in self.cache.all_node_names() {
                        if !seen.contains(&name) {
                            self.cache.remove_node(&name);
                        }
                    }
                }
                self.nodes_synced = true;
            }
        }
    }

    fn pod_event(&mut self, pod: Arc<PodInfo>, now: Instant) {
        if pod.node_name.is_some() {
            self.queue.remove(&pod.key);
            self.conditions.remove(&pod.key);
            if pod.terminal {
                // Finished pods hold no resources.
                self.pod_gone(&pod.key.clone(), now);
            } else {
                self.cache.upsert_assigned(pod);
            }
            return;
        }
        if self.cache.contains_pod(&pod.key) {
            // Assumed (binding in flight or just done): an older, unbound version of the pod.
            return;
        }
        if pod.scheduler_name != self.options.scheduler_name || pod.deleting || pod.terminal {
            self.queue.remove(&pod.key);
            return;
        }
        self.queue.add_or_update(pod, now);
    }

    fn pod_gone(&mut self, key: &PodKey, now: Instant) {
        self.queue.remove(key);
        self.conditions.remove(key);
        if self.cache.remove_pod(key) {
            self.queue.move_all_unschedulable(now);
        }
    }

    fn bound(&mut self, outcome: BindOutcome) {
        let now = Instant::now();
        let pod = outcome.pod;
        match outcome.result {
            Ok(()) => {
                debug!(pod = %pod.key, node = %outcome.node, "bound");
                self.queue.done(&pod.key);
                self.conditions.remove(&pod.key);
                let message = format!("Successfully assigned {} to {}", pod.key, outcome.node);
                self.effect(Effect::Event {
                    pod,
                    type_: "Normal",
                    reason: "Scheduled",
                    action: "Binding",
                    message,
                });
            }
            Err(e) => {
                self.cache.forget(&pod.key);
                self.queue.move_all_unschedulable(now);
                let gone = matches!(&e, kube::Error::Api(s) if s.code == 404 || s.code == 409);
                if gone {
                    // Deleted, or bound by someone else: the watch brings the truth.
                    debug!(pod = %pod.key, error = %e, "binding refused");
                    self.queue.remove(&pod.key);
                } else {
                    warn!(pod = %pod.key, error = %e, "binding failed");
                    self.queue.mark_failed(&pod.key, now);
                    let message = format!("Binding rejected: {e}");
                    self.effect(Effect::Event {
                        pod,
                        type_: "Warning",
                        reason: "FailedScheduling",
                        action: "Scheduling",
                        message,
                    });
                }
            }
        }
    }

    fn effect(&self, effect: Effect) {
        if self.effects.try_send(effect).is_err() {
            debug!("event queue full; dropping an event");
        }
    }

    /// One scheduling cycle; waits only for a binding slot.
    async fn schedule_one(&mut self, pod: Arc<PodInfo>) {
        let _span = tracing::debug_span!("schedule", pod = %pod.key).entered();
        match self.algorithm.schedule(&self.cache, &pod) {
            Ok(slot) => {
                let node = self.cache.slot(slot).name().to_owned();
                self.cache.assume(pod.clone(), &node);
                drop(_span);
                let Ok(permit) = self.bindings.clone().acquire_owned().await else {
                    return;
                };
                let client = self.client.clone();
                let tx = self.bind_tx.clone();
                tokio::spawn(async move {
                    let result = bind(client, &pod, &node).await;
                    drop(permit);
                    let _ = tx.send(BindOutcome { pod, node, result });
                });
            }
            Err(fit) => {
                let message = fit.message();
                debug!(%message, "unschedulable");
                self.queue.mark_unschedulable(&pod.key, Instant::now());
                if self.conditions.get(&pod.key) != Some(&message) {
                    self.conditions.insert(pod.key.clone(), message.clone());
                    self.effect(Effect::Unschedulable { pod, message });
                } else {
                    self.effect(Effect::Event {
                        pod,
                        type_: "Warning",
                        reason: "FailedScheduling",
                        action: "Scheduling",
                        message,
                    });
                }
            }
        }
    }

    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Msg>,
        mut bind_rx: mpsc::UnboundedReceiver<BindOutcome>,
        shutdown: CancellationToken,
    ) {
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            loop {
                match rx.try_recv() {
                    Ok(msg) => self.handle(msg),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => return,
                }
            }
            while let Ok(outcome) = bind_rx.try_recv() {
                self.bound(outcome);
            }
            let synced =
                self.pods_synced && self.nodes_synced && self.claims_synced && self.volumes_synced;
            let now = Instant::now();
            if synced {
                if now.duration_since(self.last_leftover_flush) >= Duration::from_secs(30) {
                    self.last_leftover_flush = now;
                    self.queue.flush_unschedulable_leftover(now);
                }
                if let Some(pod) = self.queue.pop(now) {
                    self.schedule_one(pod).await;
                    continue;
                }
            }
            let wake = self
                .queue
                .next_wakeup()
                .filter(|_| synced)
                .unwrap_or(now + Duration::from_secs(30));
            tokio::select! {
                _ = shutdown.cancelled() => return,
                msg = rx.recv() => match msg {
                    Some(msg) => self.handle(msg),
                    None => return,
                },
                Some(outcome) = bind_rx.recv() => self.bound(outcome),
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }
}

async fn bind(client: Client, pod: &PodInfo, node: &str) -> Result<(), kube::Error> {
    let api: Api<Pod> = Api::namespaced(client, &pod.namespace);
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(pod.name.clone()),
            namespace: Some(pod.namespace.clone()),
            uid: Some(pod.uid.clone()).filter(|u| !u.is_empty()),
            ..Default::default()
        },
        target: ObjectReference {
            api_version: Some("v1".to_owned()),
            kind: Some("Node".to_owned()),
            name: Some(node.to_owned()),
            ..Default::default()
        },
    };
    api.create_subresource::<_, serde_json::Value>(
        "binding",
        &pod.name,
        &PostParams::default(),
        &binding,
    )
    .await
    .map(|_| ())
}

fn now_time() -> Option<Time> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_nanos();
    let ts = k8s_openapi::jiff::Timestamp::from_nanosecond(i128::try_from(nanos).ok()?).ok()?;
    Some(Time(ts))
}

async fn publish_event(
    client: Client,
    instance: &str,
    pod: &PodInfo,
    type_: &str,
    reason: &str,
    action: &str,
    message: String,
) -> Result<(), kube::Error> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let now = now_time();
    let event = Event {
        metadata: ObjectMeta {
            name: Some(format!("{}.{nanos:x}", pod.name)),
            namespace: Some(pod.namespace.clone()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".to_owned()),
            kind: Some("Pod".to_owned()),
            name: Some(pod.name.clone()),
            namespace: Some(pod.namespace.clone()),
            uid: Some(pod.uid.clone()).filter(|u| !u.is_empty()),
            ..Default::default()
        },
        reason: Some(reason.to_owned()),
        message: Some(message),
        type_: Some(type_.to_owned()),
        action: Some(action.to_owned()),
        source: Some(EventSource {
            component: Some(crate::DEFAULT_SCHEDULER_NAME.to_owned()),
            host: None,
        }),
        reporting_component: Some(crate::DEFAULT_SCHEDULER_NAME.to_owned()),
        reporting_instance: Some(instance.to_owned()),
        first_timestamp: now.clone(),
        last_timestamp: now,
        count: Some(1),
        ..Default::default()
    };
    // The answer is only checked for success: read without its managedFields.
    Api::<Lean<Event>>::namespaced(client, &pod.namespace)
        .create(&PostParams::default(), &Lean(event))
        .await
        .map(|_| ())
}

async fn set_unschedulable_condition(
    client: Client,
    pod: &PodInfo,
    message: &str,
) -> Result<(), kube::Error> {
    let patch = serde_json::json!({"status": {"conditions": [{
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": message,
        "lastProbeTime": null,
        "lastTransitionTime": now_time(),
    }]}});
    Api::<Pod>::namespaced(client, &pod.namespace)
        .patch_status(&pod.name, &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .map(|_| ())
}

/// Applies effects with bounded concurrency.
async fn effects_worker(client: Client, instance: String, rx: mpsc::Receiver<Effect>) {
    let instance = Arc::new(instance);
    let stream =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) });
    stream
        .for_each_concurrent(16, |effect| {
            let client = client.clone();
            let instance = instance.clone();
            async move {
                let result = match effect {
                    Effect::Event { pod, type_, reason, action, message } => {
                        publish_event(client, &instance, &pod, type_, reason, action, message).await
                    }
                    Effect::Unschedulable { pod, message } => {
                        let condition = set_unschedulable_condition(client.clone(), &pod, &message).await;
                        if let Err(e) = condition {
                            debug!(pod = %pod.key, error = %e, "could not set PodScheduled condition");
                        }
                        publish_event(client, &instance, &pod, "Warning", "FailedScheduling", "Scheduling", message)
                            .await
                    }
                };
                if let Err(e) = result {
                    debug!(error = %e, "could not record event");
                }
            }
        })
        .await;
}

/// Runs the scheduler until `shutdown`.
pub(crate) async fn run(
    client: Client,
    options: SchedulerOptions,
    profile: Profile,
    shutdown: CancellationToken,
) {
    info!(scheduler = %options.scheduler_name, "scheduler starting");
    let (tx, rx) = mpsc::channel(1024);
    let (bind_tx, bind_rx) = mpsc::unbounded_channel();
    let (effects_tx, effects_rx) = mpsc::channel(4096);
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    let core = Core {
        client: client.clone(),
        cache: Cache::default(),
        queue: SchedulingQueue::new(QueueTiming {
            initial_backoff: options.pod_initial_backoff,
            max_backoff: options.pod_max_backoff,
            max_unschedulable: options.pod_max_in_unschedulable_pods_duration,
        }),
        algorithm: Algorithm::new(profile, options.percentage_of_nodes_to_score, seed),
        bindings: Arc::new(Semaphore::new(options.parallel_bindings.max(1))),
        bind_tx,
        effects: effects_tx,
        pods_synced: false,
        nodes_synced: false,
        claims_synced: false,
        volumes_synced: false,
        pod_relist: None,
        node_relist: None,
        conditions: HashMap::new(),
        last_leftover_flush: Instant::now(),
        options: options.clone(),
    };
    let tasks = [
        tokio::spawn(watch_pods(client.clone(), tx.clone())),
        tokio::spawn(watch_nodes(client.clone(), tx.clone())),
        tokio::spawn(watch_listed(
            Api::<Lean<PersistentVolumeClaim>>::all(client.clone()),
            tx.clone(),
            Listed {
                what: "persistentvolumeclaims",
                entry: claim_entry,
                whole: Msg::Claims,
                one: Msg::Claim,
                gone: Msg::ClaimGone,
            },
        )),
        tokio::spawn(watch_listed(
            Api::<Lean<PersistentVolume>>::all(client.clone()),
            tx,
            Listed {
                what: "persistentvolumes",
                entry: volume_entry,
                whole: Msg::Volumes,
                one: Msg::Volume,
                gone: Msg::VolumeGone,
            },
        )),
        tokio::spawn(effects_worker(client, options.instance.clone(), effects_rx)),
    ];
    core.run(rx, bind_rx, shutdown).await;
    for task in tasks {
        task.abort();
    }
    info!("scheduler stopped");
}
