//! The watch cache: every object of every resource in memory, fed by ONE store watch on `/registry/`.
//!
//! LIST and WATCH are served from here, so thousands of watchers cost one store watch. Because one
//! watch sees every write under `/registry/`, the cache knows the store revision it has caught up to,
//! which makes consistent reads cheap: a LIST waits until the cache has seen the store's current
//! revision, then answers from memory. Each resource keeps a window of recent events so that a watch
//! can resume from a resourceVersion; older than the window is 410 Gone, as in Kubernetes.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use capstan_api::ResourceInfo;
use capstan_store::{EventKind, KeyValue, ListOptions, Revision, Store};
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

/// Events kept per resource for watches that resume from a resourceVersion.
const HISTORY: usize = 10_000;
/// Live events a watcher may fall behind before it is closed (the client then re-watches).
const WATCH_BUFFER: usize = 1024;

/// One object as the cache holds it: the JSON sent to clients plus what selectors need.
#[derive(Debug)]
pub struct CachedObject {
    pub key: String,
    pub namespace: Option<String>,
    pub name: String,
    pub revision: Revision,
    /// The object's JSON with `metadata.resourceVersion` set.
    pub json: Bytes,
    pub labels: BTreeMap<String, String>,
    /// Values of the selectable fields (`metadata.name`, `spec.nodeName`, ...).
    pub fields: Vec<(&'static str, String)>,
}

impl CachedObject {
    /// Builds the cached form of a stored object.
    pub fn from_store(resource: &ResourceInfo, kv: &KeyValue) -> Option<Self> {
        let value = object_with_revision(&kv.value, kv.mod_revision)?;
        Some(Self::from_value(
            resource,
            kv.key.clone(),
            kv.mod_revision,
            &value,
        ))
    }

    pub fn from_value(
        resource: &ResourceInfo,
        key: String,
        revision: Revision,
        value: &Value,
    ) -> Self {
        let meta = &value["metadata"];
        let labels = meta["labels"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        Self {
            key,
            namespace: meta["namespace"].as_str().map(str::to_owned),
            name: meta["name"].as_str().unwrap_or_default().to_owned(),
            revision,
            json: Bytes::from(serde_json::to_vec(value).unwrap_or_default()),
            labels,
            fields: selectable_fields(resource, value),
        }
    }

    pub fn field(&self, name: &str) -> Option<String> {
        self.fields
            .iter()
            .find(|(f, _)| *f == name)
            .map(|(_, v)| v.clone())
    }

    pub fn value(&self) -> Value {
        serde_json::from_slice(&self.json).unwrap_or(Value::Null)
    }
}

/// Parses a stored object and sets `metadata.resourceVersion` to its revision.
pub fn object_with_revision(bytes: &[u8], revision: Revision) -> Option<Value> {
    let mut value: Value = serde_json::from_slice(bytes).ok()?;
    if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert(
            "resourceVersion".into(),
            Value::String(revision.to_string()),
        );
    }
    Some(value)
}

/// The fields a field selector may use on `resource`, as Kubernetes supports them.
pub fn supported_fields(resource: &ResourceInfo) -> &'static [&'static str] {
    match (resource.group, resource.plural) {
        ("", "pods") => &[
            "metadata.name",
            "metadata.namespace",
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        ("", "events") => &[
            "metadata.name",
            "metadata.namespace",
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        ("", "secrets") => &["metadata.name", "metadata.namespace", "type"],
        ("", "nodes") => &["metadata.name", "spec.unschedulable"],
        ("", "namespaces") => &["metadata.name", "status.phase"],
        ("apps", "replicasets") => &["metadata.name", "metadata.namespace", "status.replicas"],
        ("batch", "jobs") => &["metadata.name", "metadata.namespace", "status.successful"],
        ("certificates.k8s.io", "certificatesigningrequests") => {
            &["metadata.name", "spec.signerName"]
        }
        _ => &["metadata.name", "metadata.namespace"],
    }
}

fn selectable_fields(resource: &ResourceInfo, value: &Value) -> Vec<(&'static str, String)> {
    supported_fields(resource)
        .iter()
        .map(|field| {
            let v = if *field == "source" {
                &value["source"]["component"]
            } else {
                field.split('.').fold(value, |v, part| &v[part])
            };
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => n.to_string(),
                _ if *field == "spec.unschedulable" || *field == "spec.hostNetwork" => {
                    "false".into()
                }
                _ => String::new(),
            };
            (*field, text)
        })
        .collect()
}

/// The type of a watch event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change of one object. For a deletion, `object` is the last state with the deletion's revision.
#[derive(Debug)]
pub struct CacheEvent {
    pub kind: EventType,
    pub object: Arc<CachedObject>,
    pub prev: Option<Arc<CachedObject>>,
}

#[derive(Debug)]
struct ResourceCache {
    resource: &'static ResourceInfo,
    objects: BTreeMap<String, Arc<CachedObject>>,
    history: VecDeque<Arc<CacheEvent>>,
    /// Every event of this resource after this revision is in `history`.
    history_floor: Revision,
    live: broadcast::Sender<Arc<CacheEvent>>,
}

/// Why a watch could not start.
#[derive(Debug)]
pub enum WatchStartError {
    /// The resourceVersion is older than the cache's history.
    TooOld {
        requested: Revision,
        oldest: Revision,
    },
}

/// What a new watcher gets: events to send first, then the live channel.
#[derive(Debug)]
pub struct WatchStart {
    pub initial: Vec<Arc<CacheEvent>>,
    pub live: broadcast::Receiver<Arc<CacheEvent>>,
    /// Revision the initial events bring the watcher up to.
    pub revision: Revision,
}

/// The cache of every resource.
#[derive(Debug)]
pub struct WatchCache {
    caches: HashMap<&'static str, RwLock<ResourceCache>>,
    revision: watch::Sender<Revision>,
}

impl WatchCache {
    pub fn new(resources: &'static [ResourceInfo]) -> Arc<Self> {
        let caches = resources
            .iter()
            .filter(|r| r.stored)
            .map(|r| {
                (
                    r.plural,
                    RwLock::new(ResourceCache {
                        resource: r,
                        objects: BTreeMap::new(),
                        history: VecDeque::new(),
                        history_floor: 0,
                        live: broadcast::channel(WATCH_BUFFER).0,
                    }),
                )
            })
            .collect();
        Arc::new(Self {
            caches,
            revision: watch::channel(0).0,
        })
    }

    /// The store revision the cache has caught up to.
    pub fn revision(&self) -> Revision {
        *self.revision.borrow()
    }

    /// Waits until the cache has seen `revision`; false on timeout.
    pub async fn wait_for(&self, revision: Revision, timeout: Duration) -> bool {
        let mut rx = self.revision.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|r| *r >= revision))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Keeps the cache in step with the store until cancelled: lists everything, then follows one watch,
    /// starting over (and closing every watcher) if the watch fails.
    pub async fn run(
        self: Arc<Self>,
        store: Arc<dyn Store>,
        ready: watch::Sender<bool>,
        shutdown: CancellationToken,
    ) {
        loop {
            let result = tokio::select! {
                r = self.sync(&store, &ready) => r,
                () = shutdown.cancelled() => return,
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "watch cache lost its store watch; relisting");
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    async fn sync(
        &self,
        store: &Arc<dyn Store>,
        ready: &watch::Sender<bool>,
    ) -> Result<(), capstan_store::StoreError> {
        // Full relist at one revision.
        let mut token = None;
        let mut items = Vec::new();
        let revision = loop {
            let page = store
                .list(
                    "/registry/",
                    ListOptions {
                        limit: Some(5000),
                        continue_token: token,
                        revision: None,
                    },
                )
                .await?;
            items.extend(page.items);
            token = page.continue_token;
            if token.is_none() {
                break page.revision;
            }
        };
        let mut fresh: HashMap<&'static str, BTreeMap<String, Arc<CachedObject>>> = HashMap::new();
        for kv in &items {
            if let Some((plural, cache)) = self.cache_for_key(&kv.key) {
                let resource = read(cache).resource;
                if let Some(object) = CachedObject::from_store(resource, kv) {
                    fresh
                        .entry(plural)
                        .or_default()
                        .insert(kv.key.clone(), Arc::new(object));
                }
            }
        }
        for (plural, cache) in &self.caches {
            let mut cache = write(cache);
            cache.objects = fresh.remove(plural).unwrap_or_default();
            cache.history.clear();
            cache.history_floor = revision;
            // Watchers of the old state must start over: replacing the sender closes their channels.
            cache.live = broadcast::channel(WATCH_BUFFER).0;
        }
        self.revision.send_replace(revision);
        ready.send_replace(true);
        tracing::debug!(revision, objects = items.len(), "watch cache loaded");

        let mut events = store.watch("/registry/", revision).await?;
        while let Some(event) = events.next().await {
            let event = event?;
            let revision = event.revision();
            if let Some((_, cache)) = self.cache_for_key(&event.kv.key) {
                self.apply(cache, event);
            }
            self.revision.send_replace(revision);
        }
        Err(capstan_store::StoreError::Closed)
    }

    fn cache_for_key(&self, key: &str) -> Option<(&'static str, &RwLock<ResourceCache>)> {
        let plural = key.strip_prefix("/registry/")?.split('/').next()?;
        self.caches.get_key_value(plural).map(|(p, c)| (*p, c))
    }

    fn apply(&self, cache: &RwLock<ResourceCache>, event: capstan_store::Event) {
        let mut cache = write(cache);
        let resource = cache.resource;
        let revision = event.revision();
        let prev = cache.objects.get(&event.kv.key).cloned();
        let cache_event = match event.kind {
            EventKind::Created | EventKind::Updated => {
                let Some(object) = CachedObject::from_store(resource, &event.kv) else {
                    tracing::warn!(key = event.kv.key, "undecodable object in the store");
                    return;
                };
                let object = Arc::new(object);
                cache.objects.insert(event.kv.key.clone(), object.clone());
                let kind = if prev.is_some() {
                    EventType::Modified
                } else {
                    EventType::Added
                };
                CacheEvent { kind, object, prev }
            }
            EventKind::Deleted => {
                cache.objects.remove(&event.kv.key);
                let Some(last) = event.prev.as_ref() else {
                    return;
                };
                let Some(value) = object_with_revision(&last.value, revision) else {
                    return;
                };
                let object = Arc::new(CachedObject::from_value(
                    resource,
                    event.kv.key.clone(),
                    revision,
                    &value,
                ));
                CacheEvent {
                    kind: EventType::Deleted,
                    object,
                    prev,
                }
            }
        };
        let cache_event = Arc::new(cache_event);
        cache.history.push_back(cache_event.clone());
        while cache.history.len() > HISTORY {
            if let Some(old) = cache.history.pop_front() {
                cache.history_floor = old.object.revision;
            }
        }
        let _ = cache.live.send(cache_event);
    }

    /// The objects of `resource` (in one namespace, or all), in key order, starting after `after_key`.
    /// Returns them with the revision they were read at.
    pub fn list(
        &self,
        resource: &ResourceInfo,
        namespace: Option<&str>,
        after_key: Option<&str>,
        mut keep: impl FnMut(&CachedObject) -> bool,
        limit: Option<usize>,
    ) -> (Vec<Arc<CachedObject>>, Revision, bool) {
        let Some(cache) = self.caches.get(resource.plural) else {
            return (Vec::new(), self.revision(), false);
        };
        let cache = read(cache);
        let revision = self.revision();
        let prefix = match namespace {
            Some(ns) if resource.namespaced() => resource.namespace_prefix(ns),
            _ => resource.key_prefix(),
        };
        let start = match after_key {
            Some(key) if key >= prefix.as_str() => std::ops::Bound::Excluded(key.to_owned()),
            _ => std::ops::Bound::Included(prefix.clone()),
        };
        let mut out = Vec::new();
        let mut more = false;
        for (key, object) in cache.objects.range((start, std::ops::Bound::Unbounded)) {
            if !key.starts_with(&prefix) {
                break;
            }
            if !keep(object) {
                continue;
            }
            if limit.is_some_and(|l| out.len() >= l) {
                more = true;
                break;
            }
            out.push(object.clone());
        }
        (out, revision, more)
    }

    /// Starts a watch of `resource`. `from: None` sends the current objects as ADDED first
    /// ("get state and start at most recent"); `from: Some(rv)` resumes after `rv`.
    pub fn watch(
        &self,
        resource: &ResourceInfo,
        from: Option<Revision>,
    ) -> Result<WatchStart, WatchStartError> {
        let Some(cache) = self.caches.get(resource.plural) else {
            return Ok(WatchStart {
                initial: Vec::new(),
                live: broadcast::channel(1).1,
                revision: self.revision(),
            });
        };
        // Holding the read lock keeps the writer from adding an event between the snapshot and the
        // subscription: nothing is missed or sent twice.
        let cache = read(cache);
        let live = cache.live.subscribe();
        let revision = self.revision();
        let initial = match from {
            None => cache
                .objects
                .values()
                .map(|o| {
                    Arc::new(CacheEvent {
                        kind: EventType::Added,
                        object: o.clone(),
                        prev: None,
                    })
                })
                .collect(),
            Some(rv) => {
                if rv < cache.history_floor {
                    return Err(WatchStartError::TooOld {
                        requested: rv,
                        oldest: cache.history_floor,
                    });
                }
                cache
                    .history
                    .iter()
                    .filter(|e| e.object.revision > rv)
                    .cloned()
                    .collect()
            }
        };
        Ok(WatchStart {
            initial,
            live,
            revision,
        })
    }

    /// Number of objects of `resource`.
    pub fn count(&self, resource: &ResourceInfo) -> usize {
        self.caches
            .get(resource.plural)
            .map(|c| read(c).objects.len())
            .unwrap_or(0)
    }
}

fn read(lock: &RwLock<ResourceCache>) -> std::sync::RwLockReadGuard<'_, ResourceCache> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write(lock: &RwLock<ResourceCache>) -> std::sync::RwLockWriteGuard<'_, ResourceCache> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
