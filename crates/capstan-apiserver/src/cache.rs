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

use crate::encode::SplitJson;

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
    /// The object's JSON with `metadata.resourceVersion` set (a slice of `line`: no copy of its own).
    pub json: Bytes,
    pub labels: BTreeMap<String, String>,
    /// Values of the selectable fields (`metadata.name`, `spec.nodeName`, ...).
    pub fields: Vec<(&'static str, String)>,
    /// The watch event line `{"type":"<line_kind>","object":<json>}\n`, encoded once and shared by
    /// every watcher that sees this object with that event type.
    line: Bytes,
    line_kind: EventType,
}

impl CachedObject {
    /// Builds the cached form of a stored object.
    pub fn from_store(resource: &ResourceInfo, kv: &KeyValue) -> Option<Self> {
        Self::from_store_as(resource, kv, EventType::Added)
    }

    /// Builds the cached form of a stored object whose watch line will say `kind`.
    pub fn from_store_as(resource: &ResourceInfo, kv: &KeyValue, kind: EventType) -> Option<Self> {
        let value = object_with_revision(&kv.value, kv.mod_revision)?;
        Some(Self::from_value_as(
            resource,
            kv.key.clone(),
            kv.mod_revision,
            &value,
            kind,
        ))
    }

    pub fn from_value(
        resource: &ResourceInfo,
        key: String,
        revision: Revision,
        value: &Value,
    ) -> Self {
        Self::from_value_as(resource, key, revision, value, EventType::Added)
    }

    /// Builds the cached form of `value`, encoding it once into the watch line of a `kind` event.
    pub fn from_value_as(
        resource: &ResourceInfo,
        key: String,
        revision: Revision,
        value: &Value,
        kind: EventType,
    ) -> Self {
        let mut buffer = Vec::with_capacity(4096);
        buffer.extend_from_slice(LINE_PREFIX);
        buffer.extend_from_slice(kind.as_str().as_bytes());
        buffer.extend_from_slice(LINE_OBJECT);
        let start = buffer.len();
        if serde_json::to_writer(&mut buffer, value).is_err() {
            buffer.truncate(start);
        }
        let end = buffer.len();
        buffer.extend_from_slice(LINE_SUFFIX);
        Self::with_line(resource, key, revision, value, kind, buffer, start..end)
    }

    /// Builds the cached form of an object this server wrote, from the one serialisation it
    /// stored, with `metadata.resourceVersion` set to `revision`.
    fn from_prepared(
        key: String,
        revision: Revision,
        prepared: &Prepared,
        kind: EventType,
    ) -> Self {
        let mut buffer = Vec::new();
        buffer.extend_from_slice(LINE_PREFIX);
        buffer.extend_from_slice(kind.as_str().as_bytes());
        buffer.extend_from_slice(LINE_OBJECT);
        let start = buffer.len();
        prepared.split.write_with_revision(revision, &mut buffer);
        let end = buffer.len();
        buffer.extend_from_slice(LINE_SUFFIX);
        let line = Bytes::from(buffer);
        let selectable = prepared.selectable.clone();
        Self {
            key,
            namespace: selectable.namespace,
            name: selectable.name,
            revision,
            json: line.slice(start..end),
            labels: selectable.labels,
            fields: selectable.fields,
            line,
            line_kind: kind,
        }
    }

    fn with_line(
        resource: &ResourceInfo,
        key: String,
        revision: Revision,
        value: &Value,
        kind: EventType,
        buffer: Vec<u8>,
        json: std::ops::Range<usize>,
    ) -> Self {
        let line = Bytes::from(buffer);
        let json = line.slice(json);
        let selectable = Selectable::of(resource, value);
        Self {
            key,
            namespace: selectable.namespace,
            name: selectable.name,
            revision,
            json,
            labels: selectable.labels,
            fields: selectable.fields,
            line,
            line_kind: kind,
        }
    }

    /// This object's watch event line for an event of type `kind`: the shared encoding when `kind` is
    /// the type it was cached for, a fresh copy otherwise.
    pub fn line(&self, kind: EventType) -> Bytes {
        if kind == self.line_kind {
            self.line.clone()
        } else {
            event_line(kind.as_str(), &self.json)
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

/// What selectors and the cache's bookkeeping read from an object.
#[derive(Clone, Debug)]
struct Selectable {
    namespace: Option<String>,
    name: String,
    labels: BTreeMap<String, String>,
    fields: Vec<(&'static str, String)>,
}

impl Selectable {
    fn of(resource: &ResourceInfo, value: &Value) -> Self {
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
            namespace: meta["namespace"].as_str().map(str::to_owned),
            name: meta["name"].as_str().unwrap_or_default().to_owned(),
            labels,
            fields: selectable_fields(resource, value),
        }
    }
}

/// An object this server is about to write, encoded once. Registered with the cache before the
/// store write, so that its store event (recognised by the stored bytes, whichever of the event and
/// the write's acknowledgement comes first) needs no decoding and encoding again.
#[derive(Debug)]
pub(crate) struct Prepared {
    split: SplitJson,
    selectable: Selectable,
}

impl Prepared {
    /// `value` is the object as it will be stored (without resourceVersion), `split` its encoding.
    pub(crate) fn new(resource: &ResourceInfo, value: &Value, split: SplitJson) -> Self {
        Self {
            selectable: Selectable::of(resource, value),
            split,
        }
    }

    /// The object's JSON with `metadata.resourceVersion` set to `revision`.
    pub(crate) fn json_with_revision(&self, revision: Revision) -> Bytes {
        let mut out = Vec::new();
        self.split.write_with_revision(revision, &mut out);
        Bytes::from(out)
    }
}

/// A write registered with [`WatchCache::prepare`]; withdrawn when dropped before
/// [`PendingWrite::stored`] (the write failed or the request went away).
pub(crate) struct PendingWrite<'a> {
    cache: &'a RwLock<ResourceCache>,
    key: String,
    prepared: Arc<Prepared>,
    stored: bool,
}

impl PendingWrite<'_> {
    /// The store acknowledged the write at `revision`: its JSON with that resourceVersion.
    pub(crate) fn stored(mut self, revision: Revision) -> Bytes {
        self.stored = true;
        self.prepared.json_with_revision(revision)
    }
}

impl Drop for PendingWrite<'_> {
    fn drop(&mut self) {
        if self.stored {
            return;
        }
        let mut cache = write(self.cache);
        if cache
            .pending
            .get(&self.key)
            .is_some_and(|p| Arc::ptr_eq(p, &self.prepared))
        {
            cache.pending.remove(&self.key);
        }
    }
}

const LINE_PREFIX: &[u8] = b"{\"type\":\"";
const LINE_OBJECT: &[u8] = b"\",\"object\":";
const LINE_SUFFIX: &[u8] = b"}\n";

/// One watch event as a JSON line: `{"type":"<kind>","object":<object>}\n`.
pub fn event_line(kind: &str, object: &[u8]) -> Bytes {
    let mut line = Vec::with_capacity(object.len() + 32);
    line.extend_from_slice(LINE_PREFIX);
    line.extend_from_slice(kind.as_bytes());
    line.extend_from_slice(LINE_OBJECT);
    line.extend_from_slice(object);
    line.extend_from_slice(LINE_SUFFIX);
    Bytes::from(line)
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
    /// The revision of the last store event applied (or of the relist).
    applied: Revision,
    /// Objects this server is writing, already encoded, waiting for their store event: that event
    /// then needs no decoding and encoding again.
    pending: HashMap<String, Arc<Prepared>>,
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
    /// The built-in resources' caches, by storage name (the plural).
    caches: HashMap<&'static str, RwLock<ResourceCache>>,
    /// The custom resources' caches, which come and go with their definitions.
    custom: RwLock<CustomCaches>,
    revision: watch::Sender<Revision>,
}

/// Caches of custom resources, by storage name (`<group>/<plural>`), and the stored objects of
/// custom resources nobody serves yet (kept raw, so that serving them starts from what is stored).
#[derive(Debug, Default)]
struct CustomCaches {
    /// Leaked: a cache lives as long as the process (a definition deleted and created again gets a
    /// new one), so that references to it need no lock on this table.
    served: HashMap<String, &'static RwLock<ResourceCache>>,
    unclaimed: HashMap<String, BTreeMap<String, (Bytes, Revision)>>,
}

/// The storage name of a store key: `/registry/pods/ns/a` -> `pods`,
/// `/registry/stable.example.com/crontabs/ns/a` -> `stable.example.com/crontabs` (custom
/// resources' groups have dots, built-in plurals none).
fn storage_of_key(key: &str) -> Option<&str> {
    let rest = key.strip_prefix("/registry/")?;
    let first = rest.split('/').next()?;
    if !first.contains('.') {
        return Some(first);
    }
    let second = rest[first.len()..].strip_prefix('/')?.split('/').next()?;
    Some(&rest[..first.len() + 1 + second.len()])
}

fn new_resource_cache(resource: &'static ResourceInfo) -> RwLock<ResourceCache> {
    RwLock::new(ResourceCache {
        resource,
        objects: BTreeMap::new(),
        history: VecDeque::new(),
        history_floor: 0,
        applied: 0,
        pending: HashMap::new(),
        live: broadcast::channel(WATCH_BUFFER).0,
    })
}

impl WatchCache {
    pub fn new(resources: &'static [ResourceInfo]) -> Arc<Self> {
        let mut caches = HashMap::new();
        // Versions of one kind share a storage name; the first listed is the storage version.
        for r in resources.iter().filter(|r| r.stored) {
            caches
                .entry(r.storage)
                .or_insert_with(|| new_resource_cache(r));
        }
        Arc::new(Self {
            caches,
            custom: RwLock::default(),
            revision: watch::channel(0).0,
        })
    }

    /// Starts caching the custom resource `resource` (its storage version's entry), from what the
    /// store holds of it now. Registering a storage name already cached changes nothing.
    pub fn serve_custom(&self, resource: &'static ResourceInfo) {
        let mut custom = self.custom.write().unwrap_or_else(|e| e.into_inner());
        if custom.served.contains_key(resource.storage) {
            return;
        }
        let stored = custom
            .unclaimed
            .remove(resource.storage)
            .unwrap_or_default();
        let mut floor = self.revision();
        let mut objects = BTreeMap::new();
        for (key, (value, revision)) in stored {
            floor = floor.max(revision);
            let kv = KeyValue {
                key: key.clone(),
                value,
                create_revision: 0,
                mod_revision: revision,
            };
            if let Some(object) = CachedObject::from_store(resource, &kv) {
                objects.insert(key, Arc::new(object));
            }
        }
        let cache: &'static RwLock<ResourceCache> =
            Box::leak(Box::new(new_resource_cache(resource)));
        {
            let mut c = write(cache);
            c.objects = objects;
            c.history_floor = floor;
            c.applied = floor;
        }
        custom.served.insert(resource.storage.to_owned(), cache);
    }

    /// Stops caching a custom resource: its watchers are closed, its objects kept raw.
    pub fn stop_custom(&self, storage: &str) {
        let mut custom = self.custom.write().unwrap_or_else(|e| e.into_inner());
        let Some(cache) = custom.served.remove(storage) else {
            return;
        };
        let mut cache = write(cache);
        let objects = std::mem::take(&mut cache.objects);
        cache.history.clear();
        cache.pending.clear();
        cache.live = broadcast::channel(1).0;
        let raw = objects
            .into_iter()
            .map(|(key, o)| (key, (o.json.clone(), o.revision)))
            .collect();
        custom.unclaimed.insert(storage.to_owned(), raw);
    }

    /// The cache of `resource`, built-in or custom.
    fn cache_of(&self, resource: &ResourceInfo) -> Option<&RwLock<ResourceCache>> {
        if resource.custom.is_none() {
            return self.caches.get(resource.storage);
        }
        let custom = self.custom.read().unwrap_or_else(|e| e.into_inner());
        custom.served.get(resource.storage).copied()
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
        self.reload(&items, revision);
        self.revision.send_replace(revision);
        ready.send_replace(true);
        tracing::debug!(revision, objects = items.len(), "watch cache loaded");

        let mut events = store.watch("/registry/", revision).await?;
        while let Some(event) = events.next().await {
            let event = event?;
            let revision = event.revision();
            self.dispatch(event);
            self.revision.send_replace(revision);
        }
        Err(capstan_store::StoreError::Closed)
    }

    /// Replaces every cache's objects with a full listing at `revision`.
    fn reload(&self, items: &[KeyValue], revision: Revision) {
        let mut custom = self.custom.write().unwrap_or_else(|e| e.into_inner());
        let mut fresh: HashMap<&str, BTreeMap<String, Arc<CachedObject>>> = HashMap::new();
        let mut unclaimed: HashMap<String, BTreeMap<String, (Bytes, Revision)>> = HashMap::new();
        for kv in items {
            let Some(storage) = storage_of_key(&kv.key) else {
                continue;
            };
            let cache = match self.caches.get(storage) {
                Some(cache) => Some(cache),
                None => custom.served.get(storage).copied(),
            };
            match cache {
                Some(cache) => {
                    let resource = read(cache).resource;
                    if let Some(object) = CachedObject::from_store(resource, kv) {
                        fresh
                            .entry(storage)
                            .or_default()
                            .insert(kv.key.clone(), Arc::new(object));
                    }
                }
                None if storage.contains('/') => {
                    unclaimed
                        .entry(storage.to_owned())
                        .or_default()
                        .insert(kv.key.clone(), (kv.value.clone(), kv.mod_revision));
                }
                None => {}
            }
        }
        let served: Vec<(&str, &RwLock<ResourceCache>)> = self
            .caches
            .iter()
            .map(|(name, cache)| (*name, cache))
            .chain(
                custom
                    .served
                    .iter()
                    .map(|(name, cache)| (name.as_str(), *cache)),
            )
            .collect();
        for (storage, cache) in served {
            let mut cache = write(cache);
            cache.objects = fresh.remove(storage).unwrap_or_default();
            cache.history.clear();
            cache.history_floor = revision;
            cache.applied = revision;
            cache.pending.clear();
            // Watchers of the old state must start over: replacing the sender closes their channels.
            cache.live = broadcast::channel(WATCH_BUFFER).0;
        }
        custom.unclaimed = unclaimed;
    }

    /// Applies one store event to the cache of its resource, or to the unclaimed objects.
    fn dispatch(&self, event: capstan_store::Event) {
        let Some(storage) = storage_of_key(&event.kv.key) else {
            return;
        };
        if let Some(cache) = self.caches.get(storage) {
            self.apply(cache, event);
            return;
        }
        if !storage.contains('/') {
            return;
        }
        // Under the table's lock, so that a resource starting to be served sees every event once.
        let mut custom = self.custom.write().unwrap_or_else(|e| e.into_inner());
        if let Some(cache) = custom.served.get(storage).copied() {
            drop(custom);
            self.apply(cache, event);
            return;
        }
        let objects = custom.unclaimed.entry(storage.to_owned()).or_default();
        match event.kind {
            EventKind::Created | EventKind::Updated => {
                objects.insert(event.kv.key, (event.kv.value, event.kv.mod_revision));
            }
            EventKind::Deleted => {
                objects.remove(&event.kv.key);
                if objects.is_empty() {
                    custom.unclaimed.remove(storage);
                }
            }
        }
    }

    fn apply(&self, cache: &RwLock<ResourceCache>, event: capstan_store::Event) {
        let mut cache = write(cache);
        let resource = cache.resource;
        let revision = event.revision();
        cache.applied = revision;
        // The bytes tell whether the pending object is this event's write (another server's or a
        // concurrent writer's event for the same key leaves it waiting for its own).
        let offered = match cache.pending.get(&event.kv.key) {
            Some(p) if p.split.stored_bytes() == &event.kv.value[..] => {
                cache.pending.remove(&event.kv.key)
            }
            _ => None,
        };
        let prev = cache.objects.get(&event.kv.key).cloned();
        let cache_event = match event.kind {
            EventKind::Created | EventKind::Updated => {
                let kind = if prev.is_some() {
                    EventType::Modified
                } else {
                    EventType::Added
                };
                let object = match offered {
                    Some(prepared) => Arc::new(CachedObject::from_prepared(
                        event.kv.key.clone(),
                        revision,
                        &prepared,
                        kind,
                    )),
                    None => {
                        let Some(object) = CachedObject::from_store_as(resource, &event.kv, kind)
                        else {
                            tracing::warn!(key = event.kv.key, "undecodable object in the store");
                            return;
                        };
                        Arc::new(object)
                    }
                };
                cache.objects.insert(event.kv.key.clone(), object.clone());
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
                let object = Arc::new(CachedObject::from_value_as(
                    resource,
                    event.kv.key.clone(),
                    revision,
                    &value,
                    EventType::Deleted,
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
        let Some(cache) = self.cache_of(resource) else {
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
        let Some(cache) = self.cache_of(resource) else {
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

    /// The cached object at `key` of `resource`, as of `revision()`.
    pub fn get(&self, resource: &ResourceInfo, key: &str) -> Option<Arc<CachedObject>> {
        let cache = self.cache_of(resource)?;
        read(cache).objects.get(key).cloned()
    }

    /// Registers an object this server is about to write under `key` (see [`Prepared`]).
    /// Returns `None` for a resource the cache does not hold.
    pub(crate) fn prepare(
        &self,
        resource: &ResourceInfo,
        key: &str,
        prepared: Prepared,
    ) -> Option<PendingWrite<'_>> {
        let cache = self.cache_of(resource)?;
        let prepared = Arc::new(prepared);
        write(cache)
            .pending
            .insert(key.to_owned(), prepared.clone());
        Some(PendingWrite {
            cache,
            key: key.to_owned(),
            prepared,
            stored: false,
        })
    }

    /// The revision of the last store event applied to `resource` (changes whenever its objects do).
    pub fn applied(&self, resource: &ResourceInfo) -> Revision {
        self.cache_of(resource)
            .map(|c| read(c).applied)
            .unwrap_or(0)
    }

    /// Number of objects of `resource`.
    pub fn count(&self, resource: &ResourceInfo) -> usize {
        self.cache_of(resource)
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

#[cfg(test)]
mod tests {
    use capstan_store::{Event, EventKind, KeyValue};
    use serde_json::json;

    use super::*;
    use crate::encode::SplitJson;

    fn pods() -> &'static ResourceInfo {
        capstan_api::find("", "v1", "pods").expect("pods")
    }

    fn pod(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": "ns", "labels": {"app": "a"}},
               "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]}})
    }

    fn stored(name: &str, value: &Value, revision: Revision, kind: EventKind) -> Event {
        Event {
            kind,
            kv: KeyValue {
                key: pods().key(Some("ns"), name),
                value: Bytes::from(serde_json::to_vec(value).expect("json")),
                create_revision: revision,
                mod_revision: revision,
            },
            prev: None,
        }
    }

    fn line_of(kind: &str, object: &CachedObject) -> String {
        format!(
            "{{\"type\":\"{kind}\",\"object\":{}}}\n",
            String::from_utf8_lossy(&object.json)
        )
    }

    #[test]
    fn event_lines_are_shared_for_their_own_type_and_built_for_others() {
        let object =
            CachedObject::from_value_as(pods(), "k".into(), 5, &pod("a"), EventType::Modified);
        let shared = object.line(EventType::Modified);
        assert_eq!(shared, line_of("MODIFIED", &object));
        // The JSON is a slice of the shared line, not a copy.
        assert_eq!(
            object.json.as_ptr(),
            shared[b"{\"type\":\"MODIFIED\",\"object\":".len()..].as_ptr()
        );
        for (kind, text) in [(EventType::Added, "ADDED"), (EventType::Deleted, "DELETED")] {
            assert_eq!(object.line(kind), line_of(text, &object));
        }
        let value: Value = serde_json::from_slice(&object.json).expect("json");
        assert_eq!(value["metadata"]["name"], "a");
        assert_eq!(object.field("spec.nodeName").as_deref(), Some("n1"));
    }

    #[test]
    fn prepared_objects_match_what_the_store_event_would_give() {
        let value = pod("a");
        let split = SplitJson::new(&value).expect("split");
        let prepared = Prepared::new(pods(), &value, split);
        let written = CachedObject::from_prepared("k".into(), 9, &prepared, EventType::Added);
        let mut with_rv = value.clone();
        with_rv["metadata"]["resourceVersion"] = json!("9");
        let decoded = CachedObject::from_value(pods(), "k".into(), 9, &with_rv);
        assert_eq!(written.json, decoded.json);
        assert_eq!(prepared.json_with_revision(9), decoded.json);
        assert_eq!(
            written.line(EventType::Added),
            decoded.line(EventType::Added)
        );
        assert_eq!(written.labels, decoded.labels);
        assert_eq!(written.fields, decoded.fields);
        assert_eq!(written.name, "a");
        assert_eq!(written.namespace, decoded.namespace);
    }

    #[test]
    fn prepared_writes_are_used_by_their_own_store_event_only() {
        let cache = WatchCache::new(capstan_api::resources());
        let lock = cache.caches.get("pods").expect("pods cache");
        let value = pod("a");
        let key = pods().key(Some("ns"), "a");
        let prepare = |value: &Value| {
            let split = SplitJson::new(value).expect("split");
            cache
                .prepare(pods(), &key, Prepared::new(pods(), value, split))
                .expect("pods are cached")
        };

        // The event may come before the write's acknowledgement: it takes the prepared object.
        let pending = prepare(&value);
        cache.apply(lock, stored("a", &value, 3, EventKind::Created));
        assert!(read(lock).pending.is_empty());
        let got = cache.get(pods(), &key).expect("cached");
        assert_eq!(got.revision, 3);
        assert_eq!(pending.stored(3), got.json);

        // Or after it: the prepared object waits for its event.
        let mut labelled = value.clone();
        labelled["metadata"]["labels"]["app"] = json!("c");
        let pending = prepare(&labelled);
        let reply: Value = serde_json::from_slice(&pending.stored(4)).expect("json");
        assert_eq!(reply["metadata"]["resourceVersion"], "4");
        assert_eq!(reply["metadata"]["labels"]["app"], "c");
        assert_eq!(read(lock).pending.len(), 1);
        cache.apply(lock, stored("a", &labelled, 4, EventKind::Updated));
        assert!(read(lock).pending.is_empty());
        let got = cache.get(pods(), &key).expect("cached");
        assert_eq!(got.labels.get("app").map(String::as_str), Some("c"));

        // Another writer's event for the key (other bytes) is decoded; the prepared object keeps
        // waiting, and is withdrawn when its write fails.
        let mut changed = value.clone();
        changed["metadata"]["labels"]["app"] = json!("b");
        let pending = prepare(&value);
        cache.apply(lock, stored("a", &changed, 5, EventKind::Updated));
        let got = cache.get(pods(), &key).expect("cached");
        assert_eq!(got.revision, 5);
        assert_eq!(got.labels.get("app").map(String::as_str), Some("b"));
        assert_eq!(read(lock).pending.len(), 1);
        drop(pending);
        assert!(read(lock).pending.is_empty());
    }
}
