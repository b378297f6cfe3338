//! The `endpoint-controller` and `endpointslice-controller`: for every Service with a selector, the
//! pods it selects become an `Endpoints` object (named like the service) and `EndpointSlice`s
//! (`<service>-<random>`, owned by the service), as kube's `pkg/controller/endpoint` and
//! `pkg/controller/endpointslice` write them.
//!
//! Level-triggered: reflector caches of services, pods, nodes, endpoints and slices feed a work
//! queue of service keys; `sync(namespace/name)` reads only the caches and writes the difference.
//! Services without a selector (and `ExternalName` services) are left alone; so are
//! `default/kubernetes`'s Endpoints and slices, which the API server maintains. Pods without
//! `status.podIP` are skipped. The Endpoints of a deleted service are deleted here; its slices go
//! with the garbage collector (owner reference).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Node, ObjectReference, Pod, Service,
    ServicePort,
};
use k8s_openapi::api::discovery::v1::{
    Endpoint, EndpointConditions, EndpointPort as SlicePort, EndpointSlice,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::Context;

/// `kubernetes.io/service-name`: the service an EndpointSlice belongs to.
const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
/// `endpointslice.kubernetes.io/managed-by`: which controller writes a slice.
const LABEL_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
/// Set (empty) on the Endpoints and slices of headless services.
const LABEL_HEADLESS: &str = "service.kubernetes.io/headless";
const ANNOTATION_TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";
const ANNOTATION_OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";
/// Endpoints objects keep at most this many addresses (kube's `maxCapacity`).
const MAX_ENDPOINTS_CAPACITY: usize = 1000;
/// Endpoints per EndpointSlice (kube's `--max-endpoints-per-slice` default).
const MAX_ENDPOINTS_PER_SLICE: usize = 100;

/// `namespace/name` of a service.
type Key = (String, String);
/// An Endpoints port as a sort key: (name, number, protocol).
type PortKey = (Option<String>, i32, Option<String>);

pub(crate) async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let client = ctx.client.clone();
    let (services, services_w) = reflector::store::<Service>();
    let (nodes, nodes_w) = reflector::store::<Node>();
    let (endpoints, endpoints_w) = reflector::store::<Endpoints>();
    let (slices, slices_w) = reflector::store::<EndpointSlice>();

    let cfg = watcher::Config::default;
    let svc_stream = watcher(Api::<Service>::all(client.clone()), cfg())
        .default_backoff()
        .reflect(services_w)
        .map(|e| trigger(0, e, |s: &Service, _| vec![key_of(s)]));
    let pod_services = services.clone();
    let pods = ctx.pods.store();
    let pod_stream = ctx.pods.subscribe().map(move |e| {
        trigger(1, Ok(e), |p: &Arc<Pod>, _| {
            // Every service of the pod's namespace: covers the ones it joins and leaves.
            let ns = p.namespace().unwrap_or_default();
            pod_services
                .state()
                .iter()
                .filter(|s| s.namespace().as_deref() == Some(ns.as_str()))
                .map(|s| key_of(s.as_ref()))
                .collect()
        })
    });
    let node_services = services.clone();
    let mut known_nodes: HashSet<String> = HashSet::new();
    let node_stream = watcher(Api::<Node>::all(client.clone()), cfg())
        .default_backoff()
        .reflect(nodes_w)
        .map(move |e| {
            // Slices skip pods on unknown nodes and carry the node's zone: resync when a node
            // appears or goes, not on every heartbeat.
            let changed = match &e {
                Ok(watcher::Event::Apply(n) | watcher::Event::InitApply(n)) => {
                    known_nodes.insert(n.name_any())
                }
                Ok(watcher::Event::Delete(n)) => known_nodes.remove(&n.name_any()),
                _ => false,
            };
            trigger(2, e, |_: &Node, _| {
                if changed {
                    node_services
                        .state()
                        .iter()
                        .map(|s| key_of(s.as_ref()))
                        .collect()
                } else {
                    vec![]
                }
            })
        });
    let ep_stream = watcher(Api::<Endpoints>::all(client.clone()), cfg())
        .default_backoff()
        .reflect(endpoints_w)
        .map(|e| {
            // kube resyncs a service when its Endpoints are deleted, and checks every Endpoints at
            // startup for a missing service; edits by others wait for the next service change.
            trigger(3, e, |ep: &Endpoints, kind| match kind {
                Kind::Delete | Kind::InitApply => vec![key_of(ep)],
                Kind::Apply => vec![],
            })
        });
    let slice_stream = watcher(Api::<EndpointSlice>::all(client.clone()), cfg())
        .default_backoff()
        .reflect(slices_w)
        .map(|e| {
            trigger(4, e, |s: &EndpointSlice, _| {
                let labels = s.labels();
                match (labels.get(LABEL_SERVICE_NAME), labels.get(LABEL_MANAGED_BY)) {
                    (Some(svc), Some(m)) if m == CONTROLLER_NAME => {
                        vec![(s.namespace().unwrap_or_default(), svc.clone())]
                    }
                    _ => vec![],
                }
            })
        });
    let streams: Vec<Pin<Box<dyn Stream<Item = Trigger<Key>> + Send>>> = vec![
        svc_stream.boxed(),
        pod_stream.boxed(),
        node_stream.boxed(),
        ep_stream.boxed(),
        slice_stream.boxed(),
    ];
    let caches = Caches {
        services,
        pods,
        nodes,
        endpoints,
        slices,
    };
    let sync = |key: Key| {
        let client = client.clone();
        let caches = caches.clone();
        async move {
            let span = tracing::debug_span!("reconcile", controller = "endpoint", key = %format!("{}/{}", key.0, key.1));
            sync_service(&client, &caches, &key).instrument(span).await
        }
    };
    run_queue(futures::stream::select_all(streams), 5, sync, shutdown).await;
}

/// The reflector caches a sync reads.
#[derive(Clone)]
struct Caches {
    services: Store<Service>,
    pods: Store<Pod>,
    nodes: Store<Node>,
    endpoints: Store<Endpoints>,
    slices: Store<EndpointSlice>,
}

fn key_of<K: Resource>(o: &K) -> Key {
    (
        o.meta().namespace.clone().unwrap_or_default(),
        o.meta().name.clone().unwrap_or_default(),
    )
}

// ---------------------------------------------------------------------------------------------
// A small level-triggered work queue shared by this module and the garbage collector.

/// What a watched stream tells the queue.
#[derive(Debug)]
pub(crate) enum Trigger<T> {
    /// Work for these keys.
    Keys(Vec<T>),
    /// Stream number `n` finished its initial list.
    Synced(usize),
    Nothing,
}

/// Which watch event produced a trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Apply,
    InitApply,
    Delete,
}

/// Maps a watcher event of stream `n` through `keys`.
pub(crate) fn trigger<K, T>(
    n: usize,
    event: Result<watcher::Event<K>, watcher::Error>,
    keys: impl FnOnce(&K, Kind) -> Vec<T>,
) -> Trigger<T> {
    match event {
        Ok(watcher::Event::Apply(o)) => Trigger::Keys(keys(&o, Kind::Apply)),
        Ok(watcher::Event::InitApply(o)) => Trigger::Keys(keys(&o, Kind::InitApply)),
        Ok(watcher::Event::Delete(o)) => Trigger::Keys(keys(&o, Kind::Delete)),
        Ok(watcher::Event::InitDone) => Trigger::Synced(n),
        Ok(watcher::Event::Init) => Trigger::Nothing,
        Err(e) => {
            tracing::warn!(error = %e, "watch failed; retrying");
            Trigger::Nothing
        }
    }
}

/// Keys waiting for a worker: each at most once, failed ones back after an exponential delay.
#[derive(Debug)]
pub(crate) struct WorkQueue<T> {
    queue: VecDeque<T>,
    queued: HashSet<T>,
    delayed: Vec<(Instant, T)>,
    failures: HashMap<T, u32>,
}

impl<T: Hash + Eq + Clone> WorkQueue<T> {
    pub(crate) fn new() -> Self {
        Self {
            queue: VecDeque::new(),
            queued: HashSet::new(),
            delayed: Vec::new(),
            failures: HashMap::new(),
        }
    }

    pub(crate) fn add(&mut self, key: T) {
        if self.queued.insert(key.clone()) {
            self.queue.push_back(key);
        }
    }

    pub(crate) fn add_after(&mut self, key: T, after: Duration) {
        self.delayed.push((Instant::now() + after, key));
    }

    /// Requeues a failed key after 100ms, 200ms, ... up to 30s.
    pub(crate) fn add_rate_limited(&mut self, key: T) {
        let n = self.failures.entry(key.clone()).or_insert(0);
        let delay = Duration::from_millis(100u64.saturating_mul(1 << (*n).min(9)))
            .min(Duration::from_secs(30));
        *n += 1;
        self.add_after(key, delay);
    }

    pub(crate) fn forget(&mut self, key: &T) {
        self.failures.remove(key);
    }

    pub(crate) fn pop(&mut self) -> Option<T> {
        let now = Instant::now();
        let mut i = 0;
        while i < self.delayed.len() {
            if self.delayed[i].0 <= now {
                let (_, key) = self.delayed.swap_remove(i);
                self.add(key);
            } else {
                i += 1;
            }
        }
        let key = self.queue.pop_front()?;
        self.queued.remove(&key);
        Some(key)
    }

    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.delayed.iter().map(|(t, _)| *t).min()
    }
}

/// Feeds `triggers` into a work queue and runs `sync` on one key at a time once all `streams`
/// streams have listed, until `shutdown`.
pub(crate) async fn run_queue<T, S, F, Fut, E>(
    mut triggers: S,
    streams: usize,
    mut sync: F,
    shutdown: CancellationToken,
) where
    T: Hash + Eq + Clone + std::fmt::Debug,
    S: Stream<Item = Trigger<T>> + Unpin,
    F: FnMut(T) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut queue = WorkQueue::new();
    let mut synced = HashSet::new();
    let handle = |t: Trigger<T>, queue: &mut WorkQueue<T>, synced: &mut HashSet<usize>| match t {
        Trigger::Keys(keys) => keys.into_iter().for_each(|k| queue.add(k)),
        Trigger::Synced(n) => {
            synced.insert(n);
        }
        Trigger::Nothing => {}
    };
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        while let Some(Some(t)) = triggers.next().now_or_never() {
            handle(t, &mut queue, &mut synced);
        }
        if synced.len() >= streams
            && let Some(key) = queue.pop()
        {
            match sync(key.clone()).await {
                Ok(()) => queue.forget(&key),
                Err(e) => {
                    tracing::warn!(key = ?key, error = %e, "sync failed; requeued");
                    queue.add_rate_limited(key);
                }
            }
            continue;
        }
        let wake = queue
            .next_due()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            _ = shutdown.cancelled() => return,
            t = triggers.next() => match t {
                Some(t) => handle(t, &mut queue, &mut synced),
                None => return,
            },
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// sync

async fn sync_service(
    client: &kube::Client,
    caches: &Caches,
    key: &Key,
) -> Result<(), kube::Error> {
    let (ns, name) = key;
    if ns == "default" && name == "kubernetes" {
        return Ok(());
    }
    let Some(svc) = caches.services.get(&ObjectRef::new(name).within(ns)) else {
        // The service is gone: so are its Endpoints (slices follow their owner reference).
        let api: Api<Endpoints> = Api::namespaced(client.clone(), ns);
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => tracing::info!("deleted endpoints of removed service"),
            Err(kube::Error::Api(s)) if s.is_not_found() => {}
            Err(e) => return Err(e),
        }
        return Ok(());
    };
    let Some(spec) = &svc.spec else {
        return Ok(());
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        return Ok(());
    }
    let Some(selector) = &spec.selector else {
        return Ok(());
    };
    let pods: Vec<Arc<Pod>> = caches.pods.state_filter(|p| {
        p.namespace().as_deref() == Some(ns.as_str()) && selects(selector, p.labels())
    });
    let trigger_time = last_change_trigger_time(&svc, &pods);

    let current = caches.endpoints.get(&ObjectRef::new(name).within(ns));
    if let Some(want) = desired_endpoints(&svc, &pods, current.as_deref(), trigger_time) {
        write(client, ns, current.is_none(), &want).await?;
    }

    let current_slices: Vec<Arc<EndpointSlice>> = caches.slices.state_filter(|s| {
        s.namespace().as_deref() == Some(ns.as_str())
            && s.labels().get(LABEL_SERVICE_NAME) == Some(name)
            && s.labels().get(LABEL_MANAGED_BY).map(String::as_str) == Some(CONTROLLER_NAME)
    });
    let nodes = |n: &str| caches.nodes.get(&ObjectRef::new(n));
    let groups = desired_slice_groups(&svc, &pods, &nodes);
    let plan = plan_slices(&svc, groups, &current_slices, trigger_time);
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), ns);
    for slice in &plan.create {
        match api.create(&PostParams::default(), slice).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.is_forbidden() => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    for slice in &plan.update {
        api.replace(&slice.name_any(), &PostParams::default(), slice)
            .await?;
    }
    for name in &plan.delete {
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn write(
    client: &kube::Client,
    ns: &str,
    create: bool,
    want: &Endpoints,
) -> Result<(), kube::Error> {
    let api: Api<Endpoints> = Api::namespaced(client.clone(), ns);
    let result = if create {
        api.create(&PostParams::default(), want).await
    } else {
        api.replace(&want.name_any(), &PostParams::default(), want)
            .await
    };
    match result {
        Ok(_) => Ok(()),
        // Namespace terminating: creates keep failing, drop the key (kube does the same).
        Err(kube::Error::Api(s)) if create && s.is_forbidden() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whether a service's equality selector matches these labels.
fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn pod_ip(pod: &Pod) -> Option<&str> {
    pod.status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .filter(|ip| !ip.is_empty())
}

/// kube's `ShouldPodBeInEndpoints`.
fn should_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    if pod_ip(pod).is_none() {
        return false;
    }
    if !include_terminating && pod.metadata.deletion_timestamp.is_some() {
        return false;
    }
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    match pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()) {
        Some("Never") => !matches!(phase, Some("Failed" | "Succeeded")),
        Some("OnFailure") => phase != Some("Succeeded"),
        _ => true,
    }
}

/// kube's `ShouldSetHostname`: the pod's hostname when its subdomain is this service.
fn hostname_for(pod: &Pod, svc: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let hostname = spec.hostname.as_deref().filter(|h| !h.is_empty())?;
    (spec.subdomain.as_deref() == svc.metadata.name.as_deref()
        && pod.metadata.namespace == svc.metadata.namespace)
        .then(|| hostname.to_owned())
}

/// kube's `FindPort`: the container port a service port's `targetPort` names or numbers.
fn find_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    match &port.target_port {
        Some(IntOrString::String(name)) => {
            let protocol = port.protocol.as_deref().unwrap_or("TCP");
            pod.spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find_map(|p| {
                    (p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol)
                        .then_some(p.container_port)
                })
        }
        Some(IntOrString::Int(n)) if *n != 0 => Some(*n),
        _ => Some(port.port),
    }
}

fn is_headless(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .is_none_or(|ip| ip.is_empty() || ip == "None")
}

fn target_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".to_owned()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..ObjectReference::default()
    }
}

fn node_name(pod: &Pod) -> Option<String> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .filter(|n| !n.is_empty())
}

/// The newest change that affected the endpoints: the service's creation, a pod's creation or the
/// last flip of its Ready condition.
fn last_change_trigger_time(svc: &Service, pods: &[Arc<Pod>]) -> Option<Timestamp> {
    let pod_times = pods.iter().filter_map(|p| {
        let ready = p
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| {
                cs.iter()
                    .find(|c| c.type_ == "Ready")
                    .and_then(|c| c.last_transition_time.as_ref())
            });
        ready
            .or(p.metadata.creation_timestamp.as_ref())
            .map(|t| t.0)
    });
    svc.metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0)
        .into_iter()
        .chain(pod_times)
        .max()
}

/// Go's `time.RFC3339Nano` in UTC (jiff prints the same: trailing zeros trimmed, `Z`).
fn rfc3339(t: Timestamp) -> String {
    t.to_string()
}

/// The Endpoints object the service should have, or `None` when `current` already says it.
fn desired_endpoints(
    svc: &Service,
    pods: &[Arc<Pod>],
    current: Option<&Endpoints>,
    trigger_time: Option<Timestamp>,
) -> Option<Endpoints> {
    let spec = svc.spec.as_ref()?;
    let publish_not_ready = spec.publish_not_ready_addresses.unwrap_or(false);
    let ports = spec.ports.clone().unwrap_or_default();
    // port set -> (ready addresses, not-ready addresses), as kube's RepackSubsets groups them.
    let mut by_address: BTreeMap<(String, String), (EndpointAddress, bool, Vec<EndpointPort>)> =
        BTreeMap::new();
    for pod in pods {
        if !should_be_in_endpoints(pod, publish_not_ready) {
            continue;
        }
        let Some(ip) = pod_ip(pod) else { continue };
        let address = EndpointAddress {
            ip: ip.to_owned(),
            hostname: hostname_for(pod, svc),
            node_name: node_name(pod),
            target_ref: Some(target_ref(pod)),
        };
        let ready = publish_not_ready || is_ready(pod);
        let mut eps = Vec::new();
        if ports.is_empty() {
            if !is_headless(svc) {
                continue;
            }
        } else {
            for port in &ports {
                let Some(number) = find_port(pod, port) else {
                    continue;
                };
                eps.push(EndpointPort {
                    name: port.name.clone().filter(|n| !n.is_empty()),
                    port: number,
                    protocol: port.protocol.clone(),
                    app_protocol: port.app_protocol.clone(),
                });
            }
            if eps.is_empty() {
                continue;
            }
        }
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        by_address.insert((ip.to_owned(), uid), (address, ready, eps));
    }
    let mut subsets: BTreeMap<Vec<PortKey>, EndpointSubset> = BTreeMap::new();
    for ((_, _), (address, ready, mut ports)) in by_address {
        ports.sort_by(|a, b| (&a.name, a.port, &a.protocol).cmp(&(&b.name, b.port, &b.protocol)));
        let key = ports
            .iter()
            .map(|p| (p.name.clone(), p.port, p.protocol.clone()))
            .collect();
        let subset = subsets.entry(key).or_insert_with(|| EndpointSubset {
            ports: (!ports.is_empty()).then(|| ports.clone()),
            ..EndpointSubset::default()
        });
        let list = if ready {
            &mut subset.addresses
        } else {
            &mut subset.not_ready_addresses
        };
        list.get_or_insert_with(Vec::new).push(address);
    }
    let mut subsets: Vec<EndpointSubset> = subsets.into_values().collect();
    let over_capacity = truncate(&mut subsets);

    let mut labels = svc.metadata.labels.clone().unwrap_or_default();
    labels.remove(LABEL_HEADLESS);
    if let Some(cur) = current {
        let mut cur_labels = cur.metadata.labels.clone().unwrap_or_default();
        cur_labels.remove(LABEL_HEADLESS);
        let cur_over = cur.annotations().contains_key(ANNOTATION_OVER_CAPACITY);
        if cur.subsets.clone().unwrap_or_default() == subsets
            && cur_labels == labels
            && cur_over == over_capacity
        {
            return None;
        }
    }
    if is_headless(svc) {
        labels.insert(LABEL_HEADLESS.to_owned(), String::new());
    }
    let mut annotations = current
        .and_then(|c| c.metadata.annotations.clone())
        .unwrap_or_default();
    match trigger_time {
        Some(t) => annotations.insert(ANNOTATION_TRIGGER_TIME.to_owned(), rfc3339(t)),
        None => annotations.remove(ANNOTATION_TRIGGER_TIME),
    };
    if over_capacity {
        annotations.insert(ANNOTATION_OVER_CAPACITY.to_owned(), "truncated".to_owned());
    } else {
        annotations.remove(ANNOTATION_OVER_CAPACITY);
    }
    let mut meta = current
        .map(|c| c.metadata.clone())
        .unwrap_or_else(|| ObjectMeta {
            name: svc.metadata.name.clone(),
            namespace: svc.metadata.namespace.clone(),
            ..ObjectMeta::default()
        });
    meta.labels = (!labels.is_empty()).then_some(labels);
    meta.annotations = (!annotations.is_empty()).then_some(annotations);
    meta.managed_fields = None;
    Some(Endpoints {
        metadata: meta,
        subsets: (!subsets.is_empty()).then_some(subsets),
    })
}

/// Cuts the subsets to [`MAX_ENDPOINTS_CAPACITY`] addresses, ready ones first (kube's
/// `truncateEndpoints`). Returns whether anything was cut.
fn truncate(subsets: &mut [EndpointSubset]) -> bool {
    let len = |v: &Option<Vec<EndpointAddress>>| v.as_ref().map_or(0, Vec::len);
    let ready: usize = subsets.iter().map(|s| len(&s.addresses)).sum();
    let not_ready: usize = subsets.iter().map(|s| len(&s.not_ready_addresses)).sum();
    if ready + not_ready <= MAX_ENDPOINTS_CAPACITY {
        return false;
    }
    let truncate_ready = ready > MAX_ENDPOINTS_CAPACITY;
    let (max, total) = if truncate_ready {
        (MAX_ENDPOINTS_CAPACITY, ready)
    } else {
        (MAX_ENDPOINTS_CAPACITY - ready, not_ready)
    };
    let mut can_add = max;
    for s in subsets.iter_mut() {
        let n = if truncate_ready {
            len(&s.addresses)
        } else {
            len(&s.not_ready_addresses)
        };
        let share = (n * max).div_ceil(total.max(1)).min(can_add);
        if truncate_ready {
            if let Some(a) = s.addresses.as_mut() {
                a.truncate(share);
            }
            s.not_ready_addresses = None;
            can_add -= len(&s.addresses);
        } else {
            if let Some(a) = s.not_ready_addresses.as_mut() {
                a.truncate(share);
            }
            can_add -= len(&s.not_ready_addresses);
        }
    }
    true
}

/// Slice endpoints grouped by their port list.
type SliceGroups = BTreeMap<Vec<(String, i32, String)>, (Vec<SlicePort>, Vec<Endpoint>)>;

fn desired_slice_groups(
    svc: &Service,
    pods: &[Arc<Pod>],
    nodes: &dyn Fn(&str) -> Option<Arc<Node>>,
) -> SliceGroups {
    let mut groups = SliceGroups::new();
    let Some(spec) = svc.spec.as_ref() else {
        return groups;
    };
    let publish_not_ready = spec.publish_not_ready_addresses.unwrap_or(false);
    let ports = spec.ports.clone().unwrap_or_default();
    for pod in pods {
        if !should_be_in_endpoints(pod, true) {
            continue;
        }
        let Some(ip) = pod_ip(pod) else { continue };
        if ip.contains(':') {
            continue; // IPv4 slices only.
        }
        // kube skips (and retries later) pods whose node it does not know.
        let Some(node) = node_name(pod).and_then(|n| nodes(&n)) else {
            continue;
        };
        let mut slice_ports: Vec<SlicePort> = Vec::new();
        for port in &ports {
            let Some(number) = find_port(pod, port) else {
                continue;
            };
            slice_ports.push(SlicePort {
                name: Some(port.name.clone().unwrap_or_default()),
                port: Some(number),
                protocol: Some(port.protocol.clone().unwrap_or_else(|| "TCP".to_owned())),
                app_protocol: port.app_protocol.clone(),
            });
        }
        if ports.is_empty() && !is_headless(svc) {
            continue;
        }
        let serving = is_ready(pod);
        let terminating = pod.metadata.deletion_timestamp.is_some();
        // Never ready while terminating, unless the service publishes not-ready addresses.
        let ready = publish_not_ready || (serving && !terminating);
        let endpoint = Endpoint {
            addresses: vec![ip.to_owned()],
            conditions: Some(EndpointConditions {
                ready: Some(ready),
                serving: Some(serving),
                terminating: Some(terminating),
            }),
            hostname: hostname_for(pod, svc),
            node_name: node_name(pod),
            target_ref: Some(target_ref(pod)),
            zone: node.labels().get("topology.kubernetes.io/zone").cloned(),
            ..Endpoint::default()
        };
        let key = slice_ports
            .iter()
            .map(|p| {
                (
                    p.name.clone().unwrap_or_default(),
                    p.port.unwrap_or(0),
                    p.protocol.clone().unwrap_or_default(),
                )
            })
            .collect();
        let group = groups
            .entry(key)
            .or_insert_with(|| (slice_ports.clone(), Vec::new()));
        group.1.push(endpoint);
    }
    for (_, endpoints) in groups.values_mut() {
        endpoints.sort_by(|a, b| {
            (
                &a.addresses,
                a.target_ref.as_ref().and_then(|r| r.uid.as_ref()),
            )
                .cmp(&(
                    &b.addresses,
                    b.target_ref.as_ref().and_then(|r| r.uid.as_ref()),
                ))
        });
    }
    groups
}

/// The writes that bring a service's slices to the desired state.
#[derive(Debug, Default)]
struct SlicePlan {
    create: Vec<EndpointSlice>,
    update: Vec<EndpointSlice>,
    delete: Vec<String>,
}

fn slice_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = svc.metadata.labels.clone().unwrap_or_default();
    labels.remove(LABEL_HEADLESS);
    if is_headless(svc) {
        labels.insert(LABEL_HEADLESS.to_owned(), String::new());
    }
    labels.insert(LABEL_SERVICE_NAME.to_owned(), svc.name_any());
    labels.insert(LABEL_MANAGED_BY.to_owned(), CONTROLLER_NAME.to_owned());
    labels
}

fn owner_ref(svc: &Service) -> OwnerReference {
    OwnerReference {
        api_version: "v1".to_owned(),
        kind: "Service".to_owned(),
        name: svc.name_any(),
        uid: svc.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn plan_slices(
    svc: &Service,
    groups: SliceGroups,
    current: &[Arc<EndpointSlice>],
    trigger_time: Option<Timestamp>,
) -> SlicePlan {
    let labels = slice_labels(svc);
    let owners = vec![owner_ref(svc)];
    // (ports, endpoints) per wanted slice; one empty placeholder when the service has no endpoints.
    let mut wanted: Vec<(Option<Vec<SlicePort>>, Vec<Endpoint>)> = Vec::new();
    for (ports, endpoints) in groups.into_values() {
        for chunk in endpoints.chunks(MAX_ENDPOINTS_PER_SLICE) {
            wanted.push(((!ports.is_empty()).then(|| ports.clone()), chunk.to_vec()));
        }
    }
    if wanted.is_empty() {
        wanted.push((None, Vec::new()));
    }
    let mut existing: Vec<&EndpointSlice> = current
        .iter()
        .map(Arc::as_ref)
        .filter(|s| s.address_type == "IPv4")
        .collect();
    existing.sort_by_key(|s| s.name_any());
    let mut plan = SlicePlan::default();
    let mut leftover: Vec<Option<&EndpointSlice>> = existing.iter().copied().map(Some).collect();
    let mut unmatched = Vec::new();
    // First pass: reuse slices that already have the same ports.
    for (ports, endpoints) in wanted {
        let slot = leftover
            .iter_mut()
            .find(|s| s.is_some_and(|s| normalized_ports(&s.ports) == normalized_ports(&ports)));
        match slot.and_then(Option::take) {
            Some(slice) => push_update(
                &mut plan,
                slice,
                ports,
                endpoints,
                &labels,
                &owners,
                trigger_time,
            ),
            None => unmatched.push((ports, endpoints)),
        }
    }
    // Then repurpose what is left, and create the rest.
    for (ports, endpoints) in unmatched {
        match leftover.iter_mut().find_map(Option::take) {
            Some(slice) => push_update(
                &mut plan,
                slice,
                ports,
                endpoints,
                &labels,
                &owners,
                trigger_time,
            ),
            None => {
                let mut annotations = BTreeMap::new();
                if let Some(t) = trigger_time {
                    annotations.insert(ANNOTATION_TRIGGER_TIME.to_owned(), rfc3339(t));
                }
                plan.create.push(EndpointSlice {
                    metadata: ObjectMeta {
                        generate_name: Some(format!("{}-", svc.name_any())),
                        namespace: svc.metadata.namespace.clone(),
                        labels: Some(labels.clone()),
                        annotations: (!annotations.is_empty()).then_some(annotations),
                        owner_references: Some(owners.clone()),
                        ..ObjectMeta::default()
                    },
                    address_type: "IPv4".to_owned(),
                    endpoints,
                    ports,
                })
            }
        }
    }
    plan.delete = leftover
        .into_iter()
        .flatten()
        .map(|s| s.name_any())
        .collect();
    // Slices of another address type (IPv6, FQDN) this controller wrote earlier are stale too.
    plan.delete.extend(
        current
            .iter()
            .filter(|s| s.address_type != "IPv4")
            .map(|s| s.name_any()),
    );
    plan
}

fn normalized_ports(ports: &Option<Vec<SlicePort>>) -> Vec<SlicePort> {
    ports.clone().unwrap_or_default()
}

fn push_update(
    plan: &mut SlicePlan,
    slice: &EndpointSlice,
    ports: Option<Vec<SlicePort>>,
    endpoints: Vec<Endpoint>,
    labels: &BTreeMap<String, String>,
    owners: &[OwnerReference],
    trigger_time: Option<Timestamp>,
) {
    let same = normalized_ports(&slice.ports) == normalized_ports(&ports)
        && slice.endpoints == endpoints
        && slice.metadata.labels.as_ref() == Some(labels)
        && slice.metadata.owner_references.as_deref() == Some(owners);
    if same {
        return;
    }
    let mut new = slice.clone();
    new.metadata.managed_fields = None;
    new.metadata.labels = Some(labels.clone());
    new.metadata.owner_references = Some(owners.to_vec());
    let mut annotations = new.metadata.annotations.take().unwrap_or_default();
    match trigger_time {
        Some(t) => annotations.insert(ANNOTATION_TRIGGER_TIME.to_owned(), rfc3339(t)),
        None => annotations.remove(ANNOTATION_TRIGGER_TIME),
    };
    new.metadata.annotations = (!annotations.is_empty()).then_some(annotations);
    new.ports = ports;
    new.endpoints = endpoints;
    plan.update.push(new);
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, ContainerPort, PodCondition, PodSpec, PodStatus, ServiceSpec,
    };

    fn service(target: IntOrString) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("ns".into()),
                uid: Some("svc-uid".into()),
                labels: Some(BTreeMap::from([("app".into(), "web".into())])),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some("10.43.0.10".into()),
                selector: Some(BTreeMap::from([("app".into(), "web".into())])),
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: 80,
                    protocol: Some("TCP".into()),
                    target_port: Some(target),
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        }
    }

    fn pod(name: &str, ip: Option<&str>, ready: bool) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                uid: Some(format!("{name}-uid")),
                labels: Some(BTreeMap::from([("app".into(), "web".into())])),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: Some("n1".into()),
                containers: vec![Container {
                    name: "c".into(),
                    ports: Some(vec![ContainerPort {
                        name: Some("web".into()),
                        container_port: 8080,
                        protocol: Some("TCP".into()),
                        ..ContainerPort::default()
                    }]),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                pod_ip: ip.map(str::to_owned),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
        })
    }

    #[test]
    fn target_ports_resolve_by_number_name_or_default() {
        let p = pod("a", Some("10.0.0.1"), true);
        let port = |t| {
            service(t)
                .spec
                .and_then(|s| s.ports)
                .and_then(|p| p.into_iter().next())
                .expect("port")
        };
        assert_eq!(find_port(&p, &port(IntOrString::Int(9090))), Some(9090));
        assert_eq!(
            find_port(&p, &port(IntOrString::String("web".into()))),
            Some(8080)
        );
        assert_eq!(
            find_port(&p, &port(IntOrString::String("nope".into()))),
            None
        );
    }

    #[test]
    fn endpoints_split_ready_and_not_ready_and_skip_pods_without_ip() {
        let svc = service(IntOrString::String("web".into()));
        let pods = vec![
            pod("b", Some("10.0.0.2"), false),
            pod("a", Some("10.0.0.1"), true),
            pod("c", None, true),
        ];
        let ep = desired_endpoints(&svc, &pods, None, None).expect("endpoints");
        let subsets = ep.subsets.expect("subsets");
        assert_eq!(subsets.len(), 1);
        let ips = |v: &Option<Vec<EndpointAddress>>| {
            v.iter().flatten().map(|a| a.ip.clone()).collect::<Vec<_>>()
        };
        assert_eq!(ips(&subsets[0].addresses), ["10.0.0.1"]);
        assert_eq!(ips(&subsets[0].not_ready_addresses), ["10.0.0.2"]);
        assert_eq!(subsets[0].ports.as_ref().map(|p| p[0].port), Some(8080));
        // Same content again: nothing to write.
        let current = Endpoints {
            metadata: ep.metadata.clone(),
            subsets: Some(subsets),
        };
        assert!(desired_endpoints(&svc, &pods, Some(&current), None).is_none());
    }

    #[test]
    fn slice_conditions_follow_readiness_and_termination() {
        let svc = service(IntOrString::Int(8080));
        let mut terminating = (*pod("t", Some("10.0.0.3"), true)).clone();
        terminating.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::UNIX_EPOCH),
        );
        let pods = vec![
            pod("a", Some("10.0.0.1"), true),
            pod("b", Some("10.0.0.2"), false),
            Arc::new(terminating),
        ];
        let node = Arc::new(Node {
            metadata: ObjectMeta {
                name: Some("n1".into()),
                ..ObjectMeta::default()
            },
            ..Node::default()
        });
        let groups = desired_slice_groups(&svc, &pods, &|_| Some(node.clone()));
        let (_, endpoints) = groups.values().next().expect("group");
        let conds: Vec<_> = endpoints
            .iter()
            .map(|e| {
                let c = e.conditions.as_ref().expect("conditions");
                (e.addresses[0].as_str(), c.ready, c.serving, c.terminating)
            })
            .collect();
        assert_eq!(
            conds,
            [
                ("10.0.0.1", Some(true), Some(true), Some(false)),
                ("10.0.0.2", Some(false), Some(false), Some(false)),
                ("10.0.0.3", Some(false), Some(true), Some(true)),
            ]
        );
        // Pods on unknown nodes are left out.
        assert!(desired_slice_groups(&svc, &pods, &|_| None).is_empty());
    }

    #[test]
    fn a_service_without_endpoints_gets_one_placeholder_slice() {
        let svc = service(IntOrString::Int(8080));
        let plan = plan_slices(&svc, SliceGroups::new(), &[], None);
        assert_eq!(plan.create.len(), 1);
        let s = &plan.create[0];
        assert!(s.endpoints.is_empty() && s.ports.is_none());
        assert_eq!(s.metadata.generate_name.as_deref(), Some("web-"));
        assert_eq!(
            s.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_MANAGED_BY))
                .map(String::as_str),
            Some(CONTROLLER_NAME)
        );
    }

    #[test]
    fn work_queue_deduplicates_keys() {
        let mut q = WorkQueue::new();
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!((q.pop(), q.pop(), q.pop()), (Some("a"), Some("b"), None));
    }
}
