//! The REST verbs on resources: get, list, watch, create, update, patch, delete, deletecollection, and
//! the subresources (status, scale, binding, eviction, finalize, approval), with kube-apiserver's
//! semantics: preconditions, conflicts, graceful deletion, finalizers, dryRun, fieldValidation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use capstan_api::{FieldValidation, ResourceInfo};
use capstan_store::{Revision, StoreError};
use http::{HeaderMap, Method};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use crate::binding;
use crate::cache::{
    CacheEvent, CachedObject, EventType, PendingWrite, Prepared, WatchStartError, event_line,
    object_with_revision,
};
use crate::error::{ApiError, ApiResult};
use crate::objects::{self, metadata_mut, name_of};
use crate::request::{Query, ResourcePath};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::{ApiState, User, network, patch, render};

/// A finished response, before it becomes HTTP.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) code: u16,
    pub(crate) body: Bytes,
    pub(crate) content_type: String,
    pub(crate) warnings: Vec<String>,
}

impl Reply {
    pub(crate) fn json(code: u16, value: &Value) -> Self {
        Self {
            code,
            body: Bytes::from(serde_json::to_vec(value).unwrap_or_default()),
            content_type: "application/json".into(),
            warnings: Vec::new(),
        }
    }

    /// A JSON body already encoded.
    pub(crate) fn raw(code: u16, body: Bytes) -> Self {
        Self {
            code,
            body,
            content_type: "application/json".into(),
            warnings: Vec::new(),
        }
    }

    pub(crate) fn error(error: &ApiError) -> Self {
        Self::json(error.code, &error.status())
    }
}

/// What a resource request produces.
#[derive(Debug)]
pub(crate) enum Output {
    Reply(Reply),
    /// A watch: chunks of newline-separated JSON events.
    Stream {
        content_type: String,
        chunks: mpsc::Receiver<Bytes>,
    },
    /// A JSON list (200), streamed as it is copied.
    List(crate::body::ListBody),
}

/// One resource request, parsed.
pub(crate) struct Request<'a> {
    pub(crate) state: &'a Arc<ApiState>,
    pub(crate) user: &'a User,
    pub(crate) method: Method,
    pub(crate) path: ResourcePath,
    pub(crate) query: Query,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Request<'_> {
    fn dry_run(&self) -> bool {
        self.query.all("dryRun").any(|v| v == "All")
    }

    fn field_validation(&self) -> ApiResult<FieldValidation> {
        match self.query.get("fieldValidation") {
            None => Ok(FieldValidation::Warn),
            Some(v) => FieldValidation::parse(v).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "fieldValidation parameter unsupported value: \"{v}\": supported values: \"Ignore\", \"Warn\", \"Strict\""
                ))
            }),
        }
    }

    fn field_manager(&self) -> String {
        if let Some(m) = self.query.get("fieldManager").filter(|m| !m.is_empty()) {
            return m.to_owned();
        }
        let agent = self
            .headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("unknown");
        agent.split('/').next().unwrap_or("unknown").to_owned()
    }

    /// A server-side apply request: managedFields come from the apply itself.
    fn is_apply(&self) -> bool {
        self.method == Method::PATCH && patch::is_apply(self.content_type())
    }

    fn content_type(&self) -> &str {
        self.headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim())
            .unwrap_or("application/json")
    }
}

/// Serves one resource request.
pub(crate) async fn serve(req: Request<'_>) -> Output {
    let output = match dispatch(&req).await {
        Ok(output) => output,
        Err(error) => Output::Reply(Reply::error(&error)),
    };
    if render::wants_partial(&req.headers) {
        // Metadata only is `meta.k8s.io/v1` whatever the resource's version: no conversion.
        return partial_reply(output);
    }
    let conversion = capstan_api::find(&req.path.group, &req.path.version, &req.path.resource)
        .and_then(crate::conversion::Conversion::for_request);
    match conversion {
        Some(conversion) => convert(output, conversion),
        None => output,
    }
}

/// An answer holding one object (a get, or a write's) as `PartialObjectMetadata` for a client that
/// asked for metadata only, as client-go's metadata client does; lists and watches are answered so
/// by `list` and `watch` themselves, and `Status` answers stay as they are.
fn partial_reply(output: Output) -> Output {
    match output {
        Output::Reply(mut reply)
            if reply.content_type == "application/json" && (200..300).contains(&reply.code) =>
        {
            if let Some(partial) = render::partial_json(&reply.body) {
                reply.body = Bytes::from(partial);
                reply.content_type = render::PARTIAL_CONTENT_TYPE.into();
            }
            Output::Reply(reply)
        }
        other => other,
    }
}

/// A response in the version the client asked for.
fn convert(output: Output, conversion: crate::conversion::Conversion) -> Output {
    match output {
        Output::Reply(mut reply) => {
            reply.body = conversion.body(&reply.body);
            Output::Reply(reply)
        }
        Output::List(list) => Output::List(list.map_items(|item| conversion.body(item))),
        Output::Stream {
            content_type,
            mut chunks,
        } => {
            let (tx, rx) = mpsc::channel(16);
            tokio::spawn(async move {
                let mut partial = Vec::new();
                while let Some(chunk) = chunks.recv().await {
                    let converted = conversion.watch_chunk(&mut partial, &chunk);
                    if !converted.is_empty() && tx.send(converted).await.is_err() {
                        return;
                    }
                }
            });
            Output::Stream {
                content_type,
                chunks: rx,
            }
        }
    }
}

async fn dispatch(req: &Request<'_>) -> ApiResult<Output> {
    let p = &req.path;
    let resource = capstan_api::find(&p.group, &p.version, &p.resource)
        .ok_or_else(ApiError::path_not_found)?;
    // For the namespaces resource the "namespace" segment is the object's name.
    let namespace = if resource.namespaced() {
        p.namespace.clone()
    } else {
        None
    };
    if !resource.namespaced() && p.namespace.is_some() && resource.plural != "namespaces" {
        return Err(ApiError::path_not_found());
    }
    if resource.namespaced() && p.namespace.is_none() && p.name.is_some() {
        return Err(ApiError::path_not_found());
    }
    let name = p.name.as_deref();
    let sub = p.subresource.as_deref();
    if let Some(sub) = sub
        && resource.subresource(sub).is_none()
    {
        return Err(ApiError::path_not_found());
    }
    let ns = namespace.as_deref();
    if matches!(req.method, Method::POST | Method::PUT) && !req.body.is_empty() {
        let content_type = req.content_type();
        if !matches!(
            content_type,
            "application/json" | "application/yaml" | "*/*" | ""
        ) {
            return Err(ApiError::unsupported_media_type(content_type));
        }
    }
    let reply = match (&req.method, name, sub) {
        (&Method::GET, None, None) => {
            if req.path.watch_path || req.query.flag("watch") {
                return watch(req, resource, ns).await;
            }
            return list(req, resource, ns).await;
        }
        (&Method::GET, Some(name), None | Some("status" | "approval" | "ephemeralcontainers")) => {
            get(req, resource, ns, name).await?
        }
        (&Method::GET, Some(name), Some("scale")) => {
            let (object, _) = stored(req.state, resource, ns, name).await?;
            Reply::json(200, &to_scale(resource, &object))
        }
        (&Method::POST, None, None) => match resource.plural {
            "bindings" => binding(req, ns, None).await?,
            _ if !resource.stored => review(req, resource)?,
            _ => create(req, resource, ns).await?,
        },
        (&Method::POST, Some(name), Some("binding")) => binding(req, ns, Some(name)).await?,
        (&Method::POST, Some(name), Some("eviction")) => eviction(req, resource, ns, name).await?,
        (&Method::POST, Some(name), Some("token")) if resource.plural == "serviceaccounts" => {
            crate::sa_tokens::token_request(req.state, &req.body, ns.unwrap_or_default(), name)?
        }
        (&Method::PUT, Some(name), sub) if resource.stored => {
            update(req, resource, ns, name, sub).await?
        }
        (&Method::PATCH, Some(name), sub) if resource.stored => {
            patch_object(req, resource, ns, name, sub).await?
        }
        (&Method::DELETE, Some(name), None) if resource.stored => {
            delete(req, resource, ns, name).await?
        }
        (&Method::DELETE, None, None) if resource.has_verb("deletecollection") => {
            delete_collection(req, resource, ns).await?
        }
        _ => return Err(ApiError::method_not_allowed()),
    };
    Ok(Output::Reply(reply))
}

/// Reads an object from the store, with its resourceVersion set.
pub(crate) async fn stored(
    state: &ApiState,
    resource: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
) -> ApiResult<(Value, Revision)> {
    let key = resource.key(ns, name);
    match state.store.get(&key, None).await {
        Ok(Some(kv)) => {
            let value = object_with_revision(&kv.value, kv.mod_revision)
                .ok_or_else(|| ApiError::internal(format!("stored object {key} is not JSON")))?;
            Ok((value, kv.mod_revision))
        }
        Ok(None) => Err(ApiError::not_found(resource, name)),
        Err(e) => Err(ApiError::from_store(e, resource, name)),
    }
}

/// The current object for a read-modify-write: from the watch cache when `from_cache` and cached (no
/// store round trip), else from the store. A cached copy may be behind the store; the
/// compare-and-swap write then fails and the caller retries from the store, as kube-apiserver's
/// GuaranteedUpdate does with its cached original state.
async fn current(
    state: &ApiState,
    resource: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
    from_cache: bool,
) -> ApiResult<(Value, Revision)> {
    if from_cache
        && let Some(cached) = state.cache.get(resource, &resource.key(ns, name))
        && let Ok(value) = serde_json::from_slice::<Value>(&cached.json)
    {
        return Ok((value, cached.revision));
    }
    stored(state, resource, ns, name).await
}

/// GET of one object, from the watch cache: with no resourceVersion a consistent read (the cache has
/// caught up to the store's current revision, as for LIST); `0` is any cached state; `N` is at least N.
async fn get(
    req: &Request<'_>,
    resource: &'static ResourceInfo,
    ns: Option<&str>,
    name: &str,
) -> ApiResult<Reply> {
    match req.query.get("resourceVersion").filter(|v| !v.is_empty()) {
        Some("0") => {}
        Some(rv) => {
            let rv = parse_rv(rv)?;
            catch_up(req.state, rv).await?;
        }
        None => {
            catch_up_to_store(req.state).await?;
        }
    }
    let object = req
        .state
        .cache
        .get(resource, &resource.key(ns, name))
        .ok_or_else(|| ApiError::not_found(resource, name))?;
    if render::wants_table(&req.headers) {
        return Ok(render::object(
            resource,
            &object.value(),
            &req.headers,
            &req.query,
        ));
    }
    Ok(Reply {
        code: 200,
        body: object.json.clone(),
        content_type: "application/json".into(),
        warnings: Vec::new(),
    })
}

fn parse_selectors(
    req: &Request<'_>,
    resource: &ResourceInfo,
) -> ApiResult<(LabelSelector, FieldSelector)> {
    let labels = LabelSelector::parse(req.query.get("labelSelector").unwrap_or_default())
        .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
    let fields = FieldSelector::parse(req.query.get("fieldSelector").unwrap_or_default())
        .map_err(ApiError::bad_request)?;
    let supported = crate::cache::supported_fields(resource);
    for field in fields.fields() {
        if !supported.contains(&field) {
            return Err(ApiError::bad_request(format!(
                "field label not supported: {field}"
            )));
        }
    }
    Ok((labels, fields))
}

fn matches(
    object: &CachedObject,
    ns: Option<&str>,
    labels: &LabelSelector,
    fields: &FieldSelector,
) -> bool {
    (ns.is_none() || object.namespace.as_deref() == ns)
        && labels.matches(&object.labels)
        && fields.matches(|f| object.field(f))
}

/// Waits until the cache reflects `revision`: a consistent read, or a resourceVersion the client saw.
async fn catch_up(state: &ApiState, revision: Revision) -> ApiResult<()> {
    if state.cache.revision() >= revision {
        return Ok(());
    }
    if state.cache.wait_for(revision, Duration::from_secs(3)).await {
        Ok(())
    } else {
        Err(ApiError::timeout_too_large(revision))
    }
}

/// A consistent read: waits until the cache holds everything the store has committed.
async fn catch_up_to_store(state: &ApiState) -> ApiResult<()> {
    let current = state
        .store
        .current_revision()
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    catch_up(state, current).await
}

fn parse_rv(text: &str) -> ApiResult<Revision> {
    text.parse::<Revision>()
        .ok()
        .filter(|r| *r >= 0)
        .ok_or_else(|| ApiError::bad_request(format!("invalid resource version: {text:?}")))
}

async fn list(
    req: &Request<'_>,
    resource: &'static ResourceInfo,
    ns: Option<&str>,
) -> ApiResult<Output> {
    let (labels, fields) = parse_selectors(req, resource)?;
    let limit = match req.query.get("limit") {
        Some(l) => l.parse::<i64>().ok().filter(|l| *l > 0).map(|l| l as usize),
        None => None,
    };
    let rv = req.query.get("resourceVersion").filter(|v| !v.is_empty());
    let exact = req.query.get("resourceVersionMatch") == Some("Exact");
    let continue_token = req.query.get("continue").filter(|c| !c.is_empty());

    let mut after_key = None;
    let mut pinned = None;
    if let Some(token) = continue_token {
        let prefix = resource.key_prefix();
        let (revision, last_key) = capstan_store::decode_continue(token, &prefix)
            .map_err(|e| ApiError::bad_request(format!("continue key is not valid: {e}")))?;
        pinned = Some(revision);
        after_key = Some(last_key);
    } else if let Some(rv) = rv {
        let rv = parse_rv(rv)?;
        if exact {
            pinned = Some(rv);
        } else if rv > 0 {
            catch_up(req.state, rv).await?;
        }
    } else {
        catch_up_to_store(req.state).await?;
    }

    let (items, revision, more) = match pinned {
        // A page of a list read at an older revision comes from the store, which keeps history.
        Some(revision) if revision != req.state.cache.revision() => {
            list_from_store(
                req,
                resource,
                ns,
                &labels,
                &fields,
                revision,
                after_key.as_deref(),
                limit,
            )
            .await?
        }
        _ => {
            let (objects, revision, more) = req.state.cache.list(
                resource,
                ns,
                after_key.as_deref(),
                |o| matches(o, ns, &labels, &fields),
                limit,
            );
            (objects, revision, more)
        }
    };
    let continue_token = if more {
        items
            .last()
            .map(|last| capstan_store::encode_continue(revision, &last.key))
    } else {
        None
    };
    Ok(render::list(
        resource,
        &items,
        revision,
        continue_token,
        &req.headers,
        &req.query,
    ))
}

#[allow(clippy::too_many_arguments)]
async fn list_from_store(
    req: &Request<'_>,
    resource: &'static ResourceInfo,
    ns: Option<&str>,
    labels: &LabelSelector,
    fields: &FieldSelector,
    revision: Revision,
    after_key: Option<&str>,
    limit: Option<usize>,
) -> ApiResult<(Vec<Arc<CachedObject>>, Revision, bool)> {
    let prefix = match ns {
        Some(ns) => resource.namespace_prefix(ns),
        None => resource.key_prefix(),
    };
    let mut token = after_key.map(|k| capstan_store::encode_continue(revision, k));
    let mut out = Vec::new();
    loop {
        let page = req
            .state
            .store
            .list(
                &prefix,
                capstan_store::ListOptions {
                    limit: Some(limit.unwrap_or(500).max(1)),
                    continue_token: token.take(),
                    revision: Some(revision),
                },
            )
            .await
            .map_err(|e| match e {
                StoreError::Compacted { .. } => ApiError::gone(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                ),
                other => ApiError::from_store(other, resource, ""),
            })?;
        for kv in &page.items {
            if let Some(object) = CachedObject::from_store(resource, kv)
                && matches(&object, ns, labels, fields)
            {
                if limit.is_some_and(|l| out.len() >= l) {
                    return Ok((out, revision, true));
                }
                out.push(Arc::new(object));
            }
        }
        match page.continue_token {
            Some(next) => token = Some(next),
            None => return Ok((out, revision, false)),
        }
    }
}

/// Most bytes of events a watcher gathers into one chunk (one write) before sending it.
const WATCH_BATCH: usize = 128 * 1024;
/// Chunks a watch may have queued for its connection; while they wait, events gather into bigger chunks.
const WATCH_QUEUE: usize = 4;
/// While events stream in, a watcher writes at most once per this interval: waiting that little
/// gathers them into one chunk (one TLS record run, one syscall) instead of one write per event.
/// An event after a quiet spell goes out at once.
const WATCH_COALESCE: Duration = Duration::from_millis(5);

/// The event lines a watcher has gathered for its next write: one line is sent as the shared
/// encoding itself, more are copied into one chunk.
#[derive(Debug, Default)]
struct Batch {
    first: Option<Bytes>,
    rest: Vec<u8>,
}

impl Batch {
    fn push(&mut self, line: Bytes) {
        if self.first.is_none() && self.rest.is_empty() {
            self.first = Some(line);
            return;
        }
        if let Some(first) = self.first.take() {
            self.rest.reserve(WATCH_BATCH.max(first.len() + line.len()));
            self.rest.extend_from_slice(&first);
        }
        self.rest.extend_from_slice(&line);
    }

    fn len(&self) -> usize {
        self.first.as_ref().map_or(self.rest.len(), Bytes::len)
    }

    fn take(&mut self) -> Option<Bytes> {
        match self.first.take() {
            Some(line) => Some(line),
            None if self.rest.is_empty() => None,
            None => Some(Bytes::from(std::mem::take(&mut self.rest))),
        }
    }
}

async fn watch(
    req: &Request<'_>,
    resource: &'static ResourceInfo,
    ns: Option<&str>,
) -> ApiResult<Output> {
    let (labels, fields) = parse_selectors(req, resource)?;
    let rv = match req.query.get("resourceVersion").filter(|v| !v.is_empty()) {
        None | Some("0") => None,
        Some(rv) => {
            let rv = parse_rv(rv)?;
            catch_up(req.state, rv).await?;
            Some(rv)
        }
    };
    let send_initial = req.query.get("sendInitialEvents") == Some("true");
    let bookmarks = req.query.flag("allowWatchBookmarks");
    let start = match req
        .state
        .cache
        .watch(resource, if send_initial { None } else { rv })
    {
        Ok(start) => start,
        // As kube-apiserver: the watch itself succeeds and its one event is the 410 (clients such
        // as kube-rs's watcher re-list on that event, but retry an HTTP 410 with the same version).
        Err(WatchStartError::TooOld { requested, oldest }) => {
            let status =
                ApiError::gone(format!("too old resource version: {requested} ({oldest})"))
                    .status();
            let (tx, rx) = mpsc::channel(1);
            let _ = tx.try_send(event_line(
                "ERROR",
                &serde_json::to_vec(&status).unwrap_or_default(),
            ));
            return Ok(Output::Stream {
                content_type: "application/json".into(),
                chunks: rx,
            });
        }
    };
    let timeout = req
        .query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let table = render::wants_table(&req.headers);
    let partial = !table && render::wants_partial(&req.headers);
    let (tx, rx) = mpsc::channel(WATCH_QUEUE);
    let ns = ns.map(str::to_owned);
    let state = req.state.clone();
    let kind = resource.kind;
    let api_version = resource.api_version();
    let include = render::include_object(&req.query);
    tokio::spawn(async move {
        let filter = |o: &CachedObject| matches(o, ns.as_deref(), &labels, &fields);
        let encode = |event: &CacheEvent, kind: EventType| -> Bytes {
            if table {
                let table = render::table_json(
                    resource,
                    std::slice::from_ref(&event.object),
                    None,
                    None,
                    include,
                );
                event_line(
                    kind.as_str(),
                    &serde_json::to_vec(&table).unwrap_or_default(),
                )
            } else if partial {
                event_line(
                    kind.as_str(),
                    &render::partial_json(&event.object.json).unwrap_or_default(),
                )
            } else {
                event.object.line(kind)
            }
        };
        let bookmark = |revision: Revision, initial_end: bool| -> Bytes {
            let mut meta = json!({"resourceVersion": revision.to_string()});
            if initial_end {
                meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
            }
            let object = json!({"kind": kind, "apiVersion": api_version, "metadata": meta});
            event_line("BOOKMARK", &serde_json::to_vec(&object).unwrap_or_default())
        };
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut last = start.revision;
        let mut batch = Batch::default();
        for event in &start.initial {
            if let Some(kind) = visible(event, &filter) {
                batch.push(encode(event, kind));
                if batch.len() >= WATCH_BATCH
                    && let Some(chunk) = batch.take()
                    && tx.send(chunk).await.is_err()
                {
                    return;
                }
            }
            last = last.max(event.object.revision);
        }
        if send_initial && bookmarks {
            batch.push(bookmark(start.revision, true));
        }
        if let Some(chunk) = batch.take()
            && tx.send(chunk).await.is_err()
        {
            return;
        }
        let mut live = start.live;
        let mut last_write = Instant::now()
            .checked_sub(WATCH_COALESCE)
            .unwrap_or_else(Instant::now);
        let mut backlog = false;
        let mut ticker = tokio::time::interval(Duration::from_secs(30));
        ticker.tick().await;
        loop {
            tokio::select! {
                received = live.recv() => {
                    // After a full chunk more events are waiting already: waiting again would cap
                    // a watch at WATCH_BATCH per interval (~6,500 pod events/s) and let it fall behind.
                    let since = last_write.elapsed();
                    if !backlog && since < WATCH_COALESCE {
                        tokio::time::sleep(WATCH_COALESCE - since).await;
                    }
                    // Everything already queued goes out in one chunk: one write per wake-up.
                    let mut next = Some(received.map_err(|_| ()));
                    let mut end = false;
                    while let Some(received) = next.take() {
                        match received {
                            Ok(event) => {
                                if event.object.revision > last {
                                    last = event.object.revision;
                                    if let Some(kind) = visible(&event, &filter) {
                                        batch.push(encode(&event, kind));
                                    }
                                }
                            }
                            // Too slow, or the cache restarted: end the watch after what was
                            // gathered; the client resumes from the last resourceVersion it saw.
                            Err(_) => {
                                end = true;
                                break;
                            }
                        }
                        if batch.len() >= WATCH_BATCH {
                            break;
                        }
                        next = match live.try_recv() {
                            Ok(event) => Some(Ok(event)),
                            Err(broadcast::error::TryRecvError::Empty) => None,
                            Err(_) => Some(Err(())),
                        };
                    }
                    backlog = batch.len() >= WATCH_BATCH;
                    if let Some(chunk) = batch.take() {
                        if tx.send(chunk).await.is_err() {
                            return;
                        }
                        last_write = Instant::now();
                    }
                    if end {
                        return;
                    }
                },
                _ = ticker.tick(), if bookmarks => {
                    let revision = state.cache.revision().max(last);
                    if tx.send(bookmark(revision, false)).await.is_err() {
                        return;
                    }
                }
                () = &mut deadline => return,
                () = tx.closed() => return,
            }
        }
    });
    let content_type = if table {
        "application/json;as=Table;v=v1;g=meta.k8s.io"
    } else if partial {
        render::PARTIAL_CONTENT_TYPE
    } else {
        "application/json"
    };
    Ok(Output::Stream {
        content_type: content_type.into(),
        chunks: rx,
    })
}

/// The event type a filtered watcher sees, if any: an object that stops matching looks deleted to it,
/// one that starts matching looks added.
fn visible(event: &CacheEvent, filter: &impl Fn(&CachedObject) -> bool) -> Option<EventType> {
    let now = filter(&event.object);
    match event.kind {
        EventType::Added => now.then_some(EventType::Added),
        EventType::Deleted => now.then_some(EventType::Deleted),
        EventType::Modified => {
            let before = event.prev.as_ref().is_some_and(|p| filter(p));
            match (before, now) {
                (true, true) => Some(EventType::Modified),
                (false, true) => Some(EventType::Added),
                (true, false) => Some(EventType::Deleted),
                (false, false) => None,
            }
        }
    }
}

/// Parses a request body: JSON, or YAML (which kubectl sends for server-side apply).
pub(crate) fn parse_body(body: &[u8]) -> ApiResult<Value> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding request body: {e}")))
}

fn decode(
    req: &Request<'_>,
    resource: &ResourceInfo,
    value: Value,
) -> ApiResult<(Value, Vec<String>)> {
    let mut decoded = capstan_api::decode_value(resource, value, req.field_validation()?)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    // Objects are stored in their storage version (responses convert back).
    let object = crate::conversion::to_storage(resource, std::mem::take(&mut decoded.object));
    Ok((object, decoded.warnings))
}

/// NamespaceLifecycle: no new objects in a namespace that is missing or being deleted. The namespace
/// comes from the watch cache (as kube-apiserver's comes from an informer); one the cache has not seen
/// yet is looked up in the store.
async fn namespace_must_accept(req: &Request<'_>, ns: &str) -> ApiResult<()> {
    let namespaces = capstan_api::find("", "v1", "namespaces")
        .ok_or_else(|| ApiError::internal("no namespaces"))?;
    let namespace = match req.state.cache.get(namespaces, &namespaces.key(None, ns)) {
        Some(cached) => cached.value(),
        None => {
            stored(req.state, namespaces, None, ns)
                .await
                .map_err(|e| {
                    if e.code == 404 {
                        ApiError::namespace_not_found(ns)
                    } else {
                        e
                    }
                })?
                .0
        }
    };
    if namespace["metadata"]
        .get("deletionTimestamp")
        .is_some_and(|t| !t.is_null())
    {
        return Err(ApiError::forbidden(format!(
            "unable to create new content in namespace {ns} because it is being terminated"
        )));
    }
    Ok(())
}

async fn create(
    req: &Request<'_>,
    resource: &'static ResourceInfo,
    ns: Option<&str>,
) -> ApiResult<Reply> {
    if !resource.has_verb("create") {
        return Err(ApiError::method_not_allowed());
    }
    let body = parse_body(&req.body)?;
    let (object, warnings) = decode(req, resource, body)?;
    let mut reply = create_object(req, resource, ns, object).await?;
    reply.warnings = warnings;
    Ok(reply)
}

/// Creates a decoded object: system metadata, defaults, admission, validation, then the store.
pub(crate) async fn create_object(
    req: &Request<'_>,
    resource: &'static ResourceInfo,
    ns: Option<&str>,
    mut object: Value,
) -> ApiResult<Reply> {
    if let Some(ns) = ns {
        match object["metadata"]["namespace"].as_str() {
            Some(given) if !given.is_empty() && given != ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => {}
        }
        metadata_mut(&mut object).insert("namespace".into(), Value::String(ns.into()));
        namespace_must_accept(req, ns).await?;
    } else {
        metadata_mut(&mut object).remove("namespace");
    }
    let generate = object["metadata"]["generateName"]
        .as_str()
        .filter(|g| !g.is_empty())
        .map(str::to_owned);
    let mut attempts = 0;
    loop {
        // Only a generated name may need another attempt (and the original object again).
        let mut candidate = if generate.is_some() {
            object.clone()
        } else {
            std::mem::take(&mut object)
        };
        if name_of(&candidate).is_empty()
            && let Some(prefix) = &generate
        {
            metadata_mut(&mut candidate).insert(
                "name".into(),
                Value::String(format!("{prefix}{}", objects::name_suffix())),
            );
        }
        let name = name_of(&candidate).to_owned();
        objects::prepare_create(resource, &mut candidate);
        if resource.plural == "pods" && resource.group.is_empty() {
            // Before defaulting, which would give an unclassed pod priority 0.
            objects::admit_pod_priority(&mut candidate, &req.state.cache).map_err(|message| {
                ApiError::forbidden(format!("pods \"{name}\" is forbidden: {message}"))
            })?;
        }
        capstan_api::apply_defaults(resource, &mut candidate);
        if resource.plural == "pods" && resource.group.is_empty() {
            objects::admit_pod(&mut candidate, &req.state.admission);
        }
        if resource.plural == "persistentvolumeclaims" && resource.group.is_empty() {
            objects::admit_default_storage_class(&mut candidate, &req.state.cache);
            objects::admit_claim_protection(&mut candidate);
        }
        if resource.plural == "persistentvolumes" && resource.group.is_empty() {
            objects::admit_volume_protection(&mut candidate);
        }
        if resource.plural == "certificatesigningrequests" {
            objects::record_csr_requester(&mut candidate, req.user);
        }
        if resource.plural == "priorityclasses" {
            objects::admit_priority_class(&candidate, None, &req.state.cache)
                .map_err(|message| priority_class_forbidden(&name, &message))?;
        }
        let errors = if name.is_empty() {
            vec![capstan_api::FieldError::required(
                "metadata.name",
                "name or generateName is required",
            )]
        } else {
            capstan_api::validate_create(resource, &candidate)
        };
        if !errors.is_empty() {
            return Err(ApiError::invalid(resource, &name, &errors));
        }
        check_grant(req, resource, ns, &name, &candidate)?;
        let is_service = resource.plural == "services" && resource.group.is_empty();
        if is_service && !req.dry_run() {
            let owner = format!("{}/{name}", ns.unwrap_or_default());
            network::allocate_cluster_ip(
                &req.state.store,
                &req.state.services,
                &mut candidate,
                &owner,
            )
            .await?;
            if let Err(e) =
                network::allocate_node_ports(&req.state.store, &mut candidate, &owner).await
            {
                network::release(&req.state.store, &candidate).await;
                return Err(e);
            }
        }
        if !req.is_apply() {
            patch::record_update(None, &mut candidate, &req.field_manager(), resource);
        }
        if req.dry_run() {
            return Ok(Reply::json(201, &candidate));
        }
        let key = resource.key(ns, &name);
        let (bytes, pending) = encode_for_store(req, resource, &key, &candidate)?;
        match req.state.store.create(&key, bytes).await {
            Ok(kv) => {
                if let Some(pending) = pending {
                    return Ok(Reply::raw(201, pending.stored(kv.mod_revision)));
                }
                metadata_mut(&mut candidate).insert(
                    "resourceVersion".into(),
                    Value::String(kv.mod_revision.to_string()),
                );
                return Ok(Reply::json(201, &candidate));
            }
            Err(StoreError::AlreadyExists { .. })
                if generate.is_some() && attempts < 8 && name_of(&object).is_empty() =>
            {
                if is_service {
                    network::release(&req.state.store, &candidate).await;
                }
                attempts += 1;
            }
            Err(e) => {
                if is_service {
                    network::release(&req.state.store, &candidate).await;
                }
                return Err(ApiError::from_store(e, resource, &name));
            }
        }
    }
}

/// Serialises an object for the store, once: the bytes to store and, for an object with metadata
/// in a cached resource, its registration with the watch cache, which yields the response and the
/// cached object without encoding again.
fn encode_for_store<'a>(
    req: &Request<'a>,
    resource: &ResourceInfo,
    key: &str,
    object: &Value,
) -> ApiResult<(Bytes, Option<PendingWrite<'a>>)> {
    match crate::encode::SplitJson::new(object) {
        Some(split) => Ok(prepare_split(req, resource, key, object, split)),
        None => Ok((
            Bytes::from(serde_json::to_vec(object).map_err(|e| ApiError::internal(e.to_string()))?),
            None,
        )),
    }
}

/// The bytes to store of an already split object, and its registration with the watch cache;
/// `selectable` is the object itself or a tree holding at least what selectors read.
fn prepare_split<'a>(
    req: &Request<'a>,
    resource: &ResourceInfo,
    key: &str,
    selectable: &Value,
    split: crate::encode::SplitJson,
) -> (Bytes, Option<PendingWrite<'a>>) {
    let bytes = split.stored();
    let pending =
        req.state
            .cache
            .prepare(resource, key, Prepared::new(resource, selectable, split));
    (bytes, pending)
}

/// How an update computes the new object from the stored one.
enum Change<'a> {
    /// PUT of a whole object (main resource or a subresource).
    Replace { object: Value, sub: Option<&'a str> },
    /// PATCH of the main resource or a subresource.
    Patch { sub: Option<&'a str> },
}

async fn update(
    req: &Request<'_>,
    resource: &'static ResourceInfo,
    ns: Option<&str>,
    name: &str,
    sub: Option<&str>,
) -> ApiResult<Reply> {
    let body = parse_body(&req.body)?;
    let (object, warnings) = if sub == Some("scale") {
        (body, Vec::new())
    } else {
        decode(req, resource, body)?
    };
    let given = object["metadata"]["name"].as_str().unwrap_or_default();
    if !given.is_empty() && given != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({given}) does not match the name on the URL ({name})"
        )));
    }
    let mut reply = write(req, resource, ns, name, Change::Replace { object, sub }).await?;
    reply.warnings = warnings;
    Ok(reply)
}

async fn patch_object(
    req: &Request<'_>,
    resource: &'static ResourceInfo,
    ns: Option<&str>,
    name: &str,
    sub: Option<&str>,
) -> ApiResult<Reply> {
    write(req, resource, ns, name, Change::Patch { sub }).await
}

/// The read-modify-write loop of every update and patch (kube's GuaranteedUpdate): a precondition from
/// the client's resourceVersion fails with 409; a race with another writer is retried.
async fn write(
    req: &Request<'_>,
    resource: &'static ResourceInfo,
    ns: Option<&str>,
    name: &str,
    change: Change<'_>,
) -> ApiResult<Reply> {
    let key = resource.key(ns, name);
    // The first attempt reads the watch cache; any outcome but a successful compare-and-swap write
    // that came from the cached copy is checked again against the store (the copy may be behind).
    for attempt in 0..16 {
        let from_cache = attempt == 0;
        let current = match current(req.state, resource, ns, name, from_cache).await {
            Ok(found) => Some(found),
            Err(e) if e.code == 404 => None,
            Err(e) => return Err(e),
        };
        let Some((old, revision)) = current else {
            // Server-side apply creates; so does PUT of a Lease/Endpoints-like object? Kubernetes allows
            // create-on-update only for a few kinds; apply is the one that matters.
            if let Change::Patch { sub: None } = change
                && patch::is_apply(req.content_type())
            {
                let applied = patch::apply_create(req, resource, ns, name)?;
                return create_object(req, resource, ns, applied).await;
            }
            return Err(ApiError::not_found(resource, name));
        };
        let mut new = match next_state(req, resource, ns, name, &change, &old, revision) {
            Ok(new) => new,
            // Computed from a cached copy that may be behind: check against the store.
            Err(_) if from_cache => continue,
            Err(e) => return Err(e),
        };

        // Removing the last finalizer of an object being deleted completes the deletion.
        let deleting = new["metadata"]
            .get("deletionTimestamp")
            .is_some_and(|t| !t.is_null());
        // A namespace also waits for its `spec.finalizers` (the namespace controller's "kubernetes").
        let finalizers_left = new["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty())
            || (resource.plural == "namespaces"
                && new["spec"]["finalizers"]
                    .as_array()
                    .is_some_and(|f| !f.is_empty()));
        let pod_waiting_for_kubelet = resource.plural == "pods"
            && new["metadata"]["deletionGracePeriodSeconds"]
                .as_i64()
                .unwrap_or(0)
                > 0;
        if deleting && !finalizers_left && !pod_waiting_for_kubelet {
            if req.dry_run() {
                return Ok(Reply::json(200, &new));
            }
            return match req.state.store.delete(&key, Some(revision)).await {
                Ok(_) => {
                    after_delete(req, resource, &new).await;
                    Ok(Reply::json(200, &new))
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => Err(ApiError::from_store(e, resource, name)),
            };
        }

        if same_content(&new, &old) {
            if from_cache {
                continue;
            }
            // A no-op write keeps the resourceVersion, as in Kubernetes.
            return Ok(Reply::json(200, &old));
        }
        if req.dry_run() {
            if from_cache {
                continue;
            }
            // Nothing was written: the object keeps the resourceVersion it was read at.
            metadata_mut(&mut new).insert(
                "resourceVersion".into(),
                Value::String(revision.to_string()),
            );
            return Ok(Reply::json(200, &new));
        }
        let (bytes, pending) = encode_for_store(req, resource, &key, &new)?;
        match req.state.store.update(&key, bytes, revision).await {
            Ok(kv) => {
                let scale = matches!(
                    change,
                    Change::Replace {
                        sub: Some("scale"),
                        ..
                    } | Change::Patch { sub: Some("scale") }
                );
                if let Some(pending) = pending {
                    let json = pending.stored(kv.mod_revision);
                    if !scale {
                        return Ok(Reply::raw(200, json));
                    }
                }
                metadata_mut(&mut new).insert(
                    "resourceVersion".into(),
                    Value::String(kv.mod_revision.to_string()),
                );
                let reply_object = if matches!(
                    change,
                    Change::Replace {
                        sub: Some("scale"),
                        ..
                    } | Change::Patch { sub: Some("scale") }
                ) {
                    to_scale(resource, &new)
                } else {
                    new
                };
                return Ok(Reply::json(200, &reply_object));
            }
            Err(StoreError::Conflict { .. }) => {
                if let Change::Replace { object, .. } = &change
                    && object["metadata"]["resourceVersion"]
                        .as_str()
                        .is_some_and(|v| !v.is_empty())
                {
                    return Err(ApiError::modified(resource, name));
                }
            }
            Err(StoreError::NotFound { .. }) => return Err(ApiError::not_found(resource, name)),
            Err(e) => return Err(ApiError::from_store(e, resource, name)),
        }
    }
    Err(ApiError::conflict(
        resource,
        name,
        "too many concurrent writers; please retry",
    ))
}

/// The object an update or patch makes of `old` (at `revision`): the change applied, system
/// metadata kept, defaults set, validated, managedFields recorded.
fn next_state(
    req: &Request<'_>,
    resource: &'static ResourceInfo,
    ns: Option<&str>,
    name: &str,
    change: &Change<'_>,
    old: &Value,
    revision: Revision,
) -> ApiResult<Value> {
    let manager = req.field_manager();
    let mut new = match change {
        Change::Replace { object, sub } => {
            let precondition = object["metadata"]["resourceVersion"]
                .as_str()
                .filter(|v| !v.is_empty());
            if let Some(rv) = precondition
                && rv != revision.to_string()
            {
                return Err(ApiError::modified(resource, name));
            }
            replaced(resource, object, old, *sub)?
        }
        Change::Patch { sub } => {
            let content_type = req.content_type();
            if *sub == Some("scale") {
                let scale = patch::apply(
                    content_type,
                    &to_scale(resource, old),
                    &req.body,
                    resource,
                    &manager,
                    req.query.flag("force"),
                )?;
                replaced(resource, &scale, old, Some("scale"))?
            } else {
                // An object is patched in the version the client speaks.
                let in_version = crate::conversion::to_request(resource, old);
                let patched = patch::apply(
                    content_type,
                    in_version.as_ref().unwrap_or(old),
                    &req.body,
                    resource,
                    &manager,
                    req.query.flag("force"),
                )?;
                if let Some(rv) = patched["metadata"]["resourceVersion"].as_str()
                    && rv != revision.to_string()
                {
                    return Err(ApiError::modified(resource, name));
                }
                let (patched, _) = decode(req, resource, patched)?;
                replaced(resource, &patched, old, *sub)?
            }
        }
    };
    {
        let meta = metadata_mut(&mut new);
        meta.insert("name".into(), Value::String(name.into()));
        match ns {
            Some(ns) => meta.insert("namespace".into(), Value::String(ns.into())),
            None => meta.remove("namespace"),
        };
        meta.remove("resourceVersion");
    }
    capstan_api::apply_defaults(resource, &mut new);
    let mut errors = capstan_api::validate_update(resource, &new, old);
    if matches!(
        change,
        Change::Replace {
            sub: Some("ephemeralcontainers"),
            ..
        } | Change::Patch {
            sub: Some("ephemeralcontainers")
        }
    ) {
        errors.extend(capstan_api::validate_ephemeral_containers_update(&new, old));
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(resource, name, &errors));
    }
    if resource.plural == "priorityclasses" {
        objects::admit_priority_class(&new, Some(old), &req.state.cache)
            .map_err(|message| priority_class_forbidden(name, &message))?;
    }
    if resource.plural == "persistentvolumeclaims" && resource.group.is_empty() {
        objects::admit_claim_resize(&new, old, &req.state.cache).map_err(|message| {
            ApiError::forbidden(format!(
                "persistentvolumeclaims \"{name}\" is forbidden: {message}"
            ))
        })?;
    }
    check_grant(req, resource, ns, name, &new)?;
    if !req.is_apply() {
        patch::record_update(Some(old), &mut new, &manager, resource);
    }
    Ok(new)
}

/// RBAC's escalation check on roles and bindings (see [`crate::Authorizer::check_grant`]).
fn check_grant(
    req: &Request<'_>,
    resource: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
    object: &Value,
) -> ApiResult<()> {
    if resource.group != "rbac.authorization.k8s.io" {
        return Ok(());
    }
    req.state
        .authorizer
        .check_grant(req.user, resource.plural, ns, object)
        .map_err(|message| {
            ApiError::forbidden(format!(
                "{}.{} \"{name}\" is forbidden: {message}",
                resource.plural, resource.group
            ))
        })
}

fn priority_class_forbidden(name: &str, message: &str) -> ApiError {
    ApiError::forbidden(format!(
        "priorityclasses.scheduling.k8s.io \"{name}\" is forbidden: {message}"
    ))
}

/// Whether a write would change nothing but bookkeeping: the resourceVersion, or the timestamps of
/// managedFields entries whose field sets stayed the same.
fn same_content(new: &Value, old: &Value) -> bool {
    /// Equal maps, but for the keys `skip` and entries that `equal` says match.
    fn maps_equal(
        a: &serde_json::Map<String, Value>,
        b: &serde_json::Map<String, Value>,
        skip: &[&str],
        equal: impl Fn(&str, &Value, &Value) -> bool,
    ) -> bool {
        let kept = |m: &serde_json::Map<String, Value>| {
            m.keys().filter(|k| !skip.contains(&k.as_str())).count()
        };
        kept(a) == kept(b)
            && a.iter()
                .filter(|(k, _)| !skip.contains(&k.as_str()))
                .all(|(k, v)| b.get(k).is_some_and(|w| equal(k, v, w)))
    }
    let entries_equal = |a: &Value, b: &Value| match (a.as_array(), b.as_array()) {
        (Some(a), Some(b)) => {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|(x, y)| match (x.as_object(), y.as_object()) {
                        (Some(x), Some(y)) => maps_equal(x, y, &["time"], |_, v, w| v == w),
                        _ => x == y,
                    })
        }
        _ => a == b,
    };
    let (Some(new), Some(old)) = (new.as_object(), old.as_object()) else {
        return new == old;
    };
    maps_equal(new, old, &[], |key, v, w| {
        if key != "metadata" {
            return v == w;
        }
        match (v.as_object(), w.as_object()) {
            (Some(v), Some(w)) => maps_equal(v, w, &["resourceVersion"], |key, v, w| {
                if key == "managedFields" {
                    entries_equal(v, w)
                } else {
                    v == w
                }
            }),
            _ => v == w,
        }
    })
}

/// The object a write of `object` through `sub` produces from `old`.
fn replaced(
    resource: &ResourceInfo,
    object: &Value,
    old: &Value,
    sub: Option<&str>,
) -> ApiResult<Value> {
    Ok(match sub {
        None => {
            let mut new = object.clone();
            objects::prepare_update(resource, &mut new, old);
            if resource.plural == "pods" && resource.group.is_empty() {
                // A plain update keeps the ephemeral containers (their subresource changes them).
                match old["spec"].get("ephemeralContainers") {
                    Some(ec) => new["spec"]["ephemeralContainers"] = ec.clone(),
                    None => {
                        if let Some(spec) = new["spec"].as_object_mut() {
                            spec.remove("ephemeralContainers");
                        }
                    }
                }
            }
            new
        }
        Some("status") => objects::prepare_status_update(object, old),
        Some("scale") => {
            let replicas = object["spec"]["replicas"]
                .as_i64()
                .ok_or_else(|| ApiError::bad_request("scale: spec.replicas is required"))?;
            let mut new = old.clone();
            if let Some(paths) = resource.custom.and_then(|c| c.scale.as_ref()) {
                if at_path(old, &paths.spec_replicas).as_i64() != Some(replicas) {
                    set_path(&mut new, &paths.spec_replicas, json!(replicas));
                    let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
                    metadata_mut(&mut new).insert("generation".into(), json!(generation + 1));
                }
                return Ok(new);
            }
            new["spec"]["replicas"] = json!(replicas);
            if resource.group == "apps" {
                let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
                if old["spec"]["replicas"].as_i64() != Some(replicas) {
                    metadata_mut(&mut new).insert("generation".into(), json!(generation + 1));
                }
            }
            new
        }
        Some("finalize") => {
            let mut new = old.clone();
            new["spec"]["finalizers"] = object["spec"]["finalizers"].clone();
            new
        }
        // Only the ephemeral containers change (kube's ephemeralContainersStrategy).
        Some("ephemeralcontainers") => {
            let mut new = old.clone();
            new["spec"]["ephemeralContainers"] = object["spec"]["ephemeralContainers"].clone();
            new
        }
        Some("approval") => {
            let mut new = old.clone();
            new["status"]["conditions"] = object["status"]["conditions"].clone();
            new
        }
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "cannot update subresource {other}"
            )));
        }
    })
}

/// The value at a simple JSONPath (`.spec.replicas`); null when absent.
fn at_path<'v>(object: &'v Value, path: &str) -> &'v Value {
    path.split('.')
        .filter(|s| !s.is_empty())
        .fold(object, |at, key| &at[key])
}

/// Sets the value at a simple JSONPath, creating the objects on the way.
fn set_path(object: &mut Value, path: &str, value: Value) {
    let mut at = object;
    for key in path.split('.').filter(|s| !s.is_empty()) {
        if !at.is_object() {
            *at = json!({});
        }
        at = &mut at[key];
    }
    *at = value;
}

/// `autoscaling/v1` Scale of a workload, or of a custom resource with the scale subresource.
fn to_scale(resource: &ResourceInfo, object: &Value) -> Value {
    let meta = &object["metadata"];
    if let Some(paths) = resource.custom.and_then(|c| c.scale.as_ref()) {
        let selector = paths
            .label_selector
            .as_deref()
            .and_then(|p| at_path(object, p).as_str())
            .unwrap_or_default();
        return json!({
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                "name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
                "resourceVersion": meta["resourceVersion"], "creationTimestamp": meta["creationTimestamp"],
            },
            "spec": {"replicas": at_path(object, &paths.spec_replicas).as_i64().unwrap_or(0)},
            "status": {"replicas": at_path(object, &paths.status_replicas).as_i64().unwrap_or(0), "selector": selector},
        });
    }
    let selector = object["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"], "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": object["spec"]["replicas"].as_i64().unwrap_or(0)},
        "status": {"replicas": object["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector},
    })
}

/// DeleteOptions from the body or the query.
struct DeleteOptions {
    grace_period: Option<i64>,
    propagation: Option<String>,
    precondition_uid: Option<String>,
    precondition_rv: Option<String>,
}

fn delete_options(req: &Request<'_>) -> ApiResult<DeleteOptions> {
    let body: Value = if req.body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        parse_body(&req.body)?
    };
    let grace_period = req
        .query
        .get("gracePeriodSeconds")
        .and_then(|g| g.parse().ok())
        .or_else(|| body["gracePeriodSeconds"].as_i64());
    let propagation = req
        .query
        .get("propagationPolicy")
        .map(str::to_owned)
        .or_else(|| body["propagationPolicy"].as_str().map(str::to_owned))
        .or_else(|| {
            match body["orphanDependents"]
                .as_bool()
                .or_else(|| req.query.get("orphanDependents").map(|o| o == "true"))
            {
                Some(true) => Some("Orphan".to_owned()),
                _ => None,
            }
        });
    if let Some(p) = &propagation
        && !matches!(p.as_str(), "Orphan" | "Background" | "Foreground")
    {
        return Err(ApiError::bad_request(format!(
            "propagationPolicy: Unsupported value: \"{p}\": supported values: \"Foreground\", \"Background\", \"Orphan\""
        )));
    }
    Ok(DeleteOptions {
        grace_period,
        propagation,
        precondition_uid: body["preconditions"]["uid"].as_str().map(str::to_owned),
        precondition_rv: body["preconditions"]["resourceVersion"]
            .as_str()
            .map(str::to_owned),
    })
}

async fn delete(
    req: &Request<'_>,
    resource: &'static ResourceInfo,
    ns: Option<&str>,
    name: &str,
) -> ApiResult<Reply> {
    let options = delete_options(req)?;
    delete_one(req, resource, ns, name, &options).await
}

async fn delete_one(
    req: &Request<'_>,
    resource: &'static ResourceInfo,
    ns: Option<&str>,
    name: &str,
    options: &DeleteOptions,
) -> ApiResult<Reply> {
    let key = resource.key(ns, name);
    for _ in 0..16 {
        let (mut object, revision) = stored(req.state, resource, ns, name).await?;
        let meta = &object["metadata"];
        if let Some(uid) = &options.precondition_uid
            && meta["uid"].as_str() != Some(uid)
        {
            return Err(ApiError::conflict(
                resource,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta["uid"].as_str().unwrap_or_default()
                ),
            ));
        }
        if let Some(rv) = &options.precondition_rv
            && *rv != revision.to_string()
        {
            return Err(ApiError::conflict(
                resource,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {revision}"
                ),
            ));
        }
        let already_deleting = meta.get("deletionTimestamp").is_some_and(|t| !t.is_null());
        let mut finalizers: Vec<Value> = meta["finalizers"].as_array().cloned().unwrap_or_default();
        match options.propagation.as_deref() {
            Some("Foreground") if !finalizers.contains(&json!("foregroundDeletion")) => {
                finalizers.push(json!("foregroundDeletion"));
            }
            Some("Orphan") if !finalizers.contains(&json!("orphan")) => {
                finalizers.push(json!("orphan"))
            }
            _ => {}
        }
        // A definition goes only after its objects (kube's CRD storage adds this on delete).
        let cleanup = json!(capstan_api::custom::CLEANUP_FINALIZER);
        if resource.plural == "customresourcedefinitions"
            && !already_deleting
            && !finalizers.contains(&cleanup)
        {
            finalizers.push(cleanup);
        }
        // Pods on a node end gracefully: the kubelet stops the containers and deletes the pod.
        let grace = if resource.plural == "pods" && resource.group.is_empty() {
            let bound = object["spec"]["nodeName"]
                .as_str()
                .is_some_and(|n| !n.is_empty());
            let finished = matches!(
                object["status"]["phase"].as_str(),
                Some("Succeeded" | "Failed")
            );
            let default = object["spec"]["terminationGracePeriodSeconds"]
                .as_i64()
                .unwrap_or(30);
            let grace = options.grace_period.unwrap_or(default).max(0);
            if bound && !finished { grace } else { 0 }
        } else {
            0
        };
        let graceful = grace > 0 || !finalizers.is_empty() || resource.plural == "namespaces";
        if graceful {
            if already_deleting {
                // Shortening a pod's grace period is the only change a second delete makes.
                let current = object["metadata"]["deletionGracePeriodSeconds"]
                    .as_i64()
                    .unwrap_or(0);
                if resource.plural == "pods" && grace < current {
                    let m = metadata_mut(&mut object);
                    m.insert("deletionGracePeriodSeconds".into(), json!(grace));
                    m.insert(
                        "deletionTimestamp".into(),
                        json!(objects::rfc3339_after(grace)),
                    );
                    if grace == 0 && finalizers.is_empty() {
                        match try_remove(req, resource, &key, name, revision, object).await? {
                            Some(reply) => return Ok(reply),
                            None => continue,
                        }
                    }
                    if !req.dry_run() {
                        let bytes = Bytes::from(
                            serde_json::to_vec(&object)
                                .map_err(|e| ApiError::internal(e.to_string()))?,
                        );
                        match req.state.store.update(&key, bytes, revision).await {
                            Ok(_) => {}
                            Err(StoreError::Conflict { .. }) => continue,
                            Err(e) => return Err(ApiError::from_store(e, resource, name)),
                        }
                    }
                }
                return Ok(Reply::json(202, &object));
            }
            {
                let m = metadata_mut(&mut object);
                m.insert(
                    "deletionTimestamp".into(),
                    json!(objects::rfc3339_after(grace)),
                );
                m.insert("deletionGracePeriodSeconds".into(), json!(grace));
                if !finalizers.is_empty() {
                    m.insert("finalizers".into(), Value::Array(finalizers));
                }
                m.remove("resourceVersion");
            }
            if resource.plural == "namespaces" {
                object["status"]["phase"] = json!("Terminating");
            }
            if req.dry_run() {
                return Ok(Reply::json(200, &object));
            }
            let bytes = Bytes::from(
                serde_json::to_vec(&object).map_err(|e| ApiError::internal(e.to_string()))?,
            );
            match req.state.store.update(&key, bytes, revision).await {
                Ok(kv) => {
                    metadata_mut(&mut object)
                        .insert("resourceVersion".into(), json!(kv.mod_revision.to_string()));
                    return Ok(Reply::json(200, &object));
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(ApiError::from_store(e, resource, name)),
            }
        }
        // The object changed between our read and the delete (a controller's status write): read
        // again and re-check the preconditions, as kube-apiserver's delete retries.
        match try_remove(req, resource, &key, name, revision, object).await? {
            Some(reply) => return Ok(reply),
            None => continue,
        }
    }
    Err(ApiError::conflict(
        resource,
        name,
        "too many concurrent writers; please retry",
    ))
}

/// Removes an object from the store for good; `None` when it changed since `revision` (the caller
/// reads it again and retries).
async fn try_remove(
    req: &Request<'_>,
    resource: &'static ResourceInfo,
    key: &str,
    name: &str,
    revision: Revision,
    object: Value,
) -> ApiResult<Option<Reply>> {
    if req.dry_run() {
        return Ok(Some(Reply::json(200, &object)));
    }
    match req.state.store.delete(key, Some(revision)).await {
        Ok(_) => {
            after_delete(req, resource, &object).await;
            Ok(Some(Reply::json(200, &object)))
        }
        Err(StoreError::Conflict { .. }) => Ok(None),
        Err(e) => Err(ApiError::from_store(e, resource, name)),
    }
}

async fn after_delete(req: &Request<'_>, resource: &ResourceInfo, object: &Value) {
    if resource.plural == "services" && resource.group.is_empty() {
        network::release(&req.state.store, object).await;
    }
}

async fn delete_collection(
    req: &Request<'_>,
    resource: &'static ResourceInfo,
    ns: Option<&str>,
) -> ApiResult<Reply> {
    let (labels, fields) = parse_selectors(req, resource)?;
    let options = delete_options(req)?;
    let current = req
        .state
        .store
        .current_revision()
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    catch_up(req.state, current).await?;
    let (objects, revision, _) = req.state.cache.list(
        resource,
        ns,
        None,
        |o| matches(o, ns, &labels, &fields),
        None,
    );
    let mut deleted = Vec::new();
    for object in &objects {
        match delete_one(
            req,
            resource,
            object.namespace.as_deref().or(ns),
            &object.name,
            &options,
        )
        .await
        {
            Ok(reply) => {
                deleted.push(serde_json::from_slice::<Value>(&reply.body).unwrap_or(Value::Null))
            }
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Reply::json(
        200,
        &json!({
            "kind": resource.list_kind(),
            "apiVersion": resource.api_version(),
            "metadata": {"resourceVersion": revision.to_string()},
            "items": deleted,
        }),
    ))
}

/// POST of a request-only kind: who-am-I and can-I reviews.
fn review(req: &Request<'_>, resource: &ResourceInfo) -> ApiResult<Reply> {
    let mut body = parse_body(&req.body)?;
    let user_info = json!({"username": req.user.name, "groups": req.user.groups});
    match resource.plural {
        "selfsubjectreviews" => {
            body["status"] = json!({"userInfo": user_info});
        }
        "selfsubjectaccessreviews" | "subjectaccessreviews" | "localsubjectaccessreviews" => {
            // A SubjectAccessReview asks about the user its spec names, not the one asking.
            let subject = if resource.plural == "selfsubjectaccessreviews" {
                req.user.clone()
            } else {
                let spec = &body["spec"];
                User::new(
                    spec["user"].as_str().unwrap_or_default(),
                    spec["groups"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str),
                )
            };
            let allowed = req.state.authorizer.allows_review(&subject, &body["spec"]);
            body["status"] = json!({"allowed": allowed, "reason": if allowed { "allowed by the authorizer" } else { "" }});
        }
        "selfsubjectrulesreviews" => {
            let namespace = body["spec"]["namespace"].as_str().unwrap_or_default();
            body["status"] = req.state.authorizer.rules_review(req.user, namespace);
        }
        "tokenreviews" => {
            let token = body["spec"]["token"].as_str().unwrap_or_default();
            let user = req
                .state
                .tokens
                .authenticate(token)
                .or_else(|| crate::sa_tokens::authenticate(req.state, token));
            body["status"] = match user {
                Some(user) => {
                    json!({"authenticated": true, "user": {"username": user.name, "groups": user.groups}})
                }
                None => json!({"authenticated": false}),
            };
        }
        _ => return Err(ApiError::method_not_allowed()),
    }
    metadata_mut(&mut body).insert("creationTimestamp".into(), Value::Null);
    body["apiVersion"] = json!(resource.api_version());
    body["kind"] = json!(resource.kind);
    Ok(Reply::json(201, &body))
}

/// `pods/binding` (and the legacy `bindings` resource): assigns a pod to a node, once.
async fn binding(req: &Request<'_>, ns: Option<&str>, pod_name: Option<&str>) -> ApiResult<Reply> {
    let body = parse_body(&req.body)?;
    let pods = capstan_api::find("", "v1", "pods").ok_or_else(|| ApiError::internal("no pods"))?;
    let name = pod_name
        .map(str::to_owned)
        .unwrap_or_else(|| name_of(&body).to_owned());
    let node = body["target"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if node.is_empty() {
        return Err(ApiError::invalid(
            capstan_api::find("", "v1", "bindings").unwrap_or(pods),
            &name,
            &[capstan_api::FieldError::required("target.name", "")],
        ));
    }
    let key = pods.key(ns, &name);
    let now = objects::now_rfc3339();
    // As for updates: the cached pod first, the store's after a conflict or a refusal.
    for attempt in 0..16 {
        let from_cache = attempt == 0;
        let cached = from_cache
            .then(|| req.state.cache.get(pods, &key))
            .flatten()
            .and_then(|c| Some((binding::bind_cached(&c.json, &node, &now)?, c.revision)));
        let (split, selectable, revision) = match cached {
            Some((binding::CachedBind::Refused, _)) => continue,
            Some((binding::CachedBind::Bound { split, selectable }, revision)) => {
                (split, selectable, revision)
            }
            None => {
                let (mut pod, revision) = current(req.state, pods, ns, &name, from_cache).await?;
                if let Err(refusal) = binding::bind_value(&mut pod, &name, &node, &now) {
                    if from_cache {
                        continue;
                    }
                    return Err(ApiError::conflict(pods, &name, &refusal));
                }
                let split = crate::encode::SplitJson::new(&pod)
                    .ok_or_else(|| ApiError::internal("the stored pod is not an object"))?;
                (split, pod, revision)
            }
        };
        if req.dry_run() {
            break;
        }
        let (bytes, pending) = prepare_split(req, pods, &key, &selectable, split);
        match req.state.store.update(&key, bytes, revision).await {
            Ok(kv) => {
                if let Some(pending) = pending {
                    pending.stored(kv.mod_revision);
                }
                break;
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(ApiError::from_store(e, pods, &name)),
        }
    }
    Ok(Reply::json(
        201,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    ))
}

/// `pods/eviction`: deletes the pod unless a PodDisruptionBudget forbids it right now.
async fn eviction(
    req: &Request<'_>,
    pods: &'static ResourceInfo,
    ns: Option<&str>,
    name: &str,
) -> ApiResult<Reply> {
    let body = parse_body(&req.body).unwrap_or(Value::Null);
    let (pod, _) = stored(req.state, pods, ns, name).await?;
    let deleting = pod["metadata"]
        .get("deletionTimestamp")
        .is_some_and(|t| !t.is_null());
    let finished = matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    );
    if !deleting && !finished {
        crate::disruption::check_budgets(req.state, ns.unwrap_or_default(), &pod).await?;
    }
    let options = DeleteOptions {
        grace_period: body["deleteOptions"]["gracePeriodSeconds"].as_i64(),
        propagation: None,
        precondition_uid: body["deleteOptions"]["preconditions"]["uid"]
            .as_str()
            .map(str::to_owned),
        precondition_rv: None,
    };
    delete_one(req, pods, ns, name, &options).await?;
    Ok(Reply::json(
        201,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    ))
}

/// Used by in-crate bootstrap code: a write as the system, bypassing HTTP.
pub(crate) fn system_request<'a>(
    state: &'a Arc<ApiState>,
    user: &'a User,
    body: Bytes,
) -> Request<'a> {
    Request {
        state,
        user,
        method: Method::POST,
        path: ResourcePath {
            group: String::new(),
            version: "v1".into(),
            namespace: None,
            resource: String::new(),
            name: None,
            subresource: None,
            watch_path: false,
        },
        query: Query::default(),
        headers: HeaderMap::new(),
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_content_ignores_only_resource_version_and_managed_field_times() {
        let old = json!({
            "metadata": {"name": "a", "resourceVersion": "7", "labels": {"x": "1"},
                "managedFields": [{"manager": "m", "time": "2026-01-01T00:00:00Z", "fieldsV1": {"f:a": {}}}]},
            "spec": {"replicas": 1}
        });
        let mut new = old.clone();
        metadata_mut(&mut new).remove("resourceVersion");
        new["metadata"]["managedFields"][0]["time"] = json!("2026-02-02T00:00:00Z");
        assert!(same_content(&new, &old));

        let mut scaled = new.clone();
        scaled["spec"]["replicas"] = json!(2);
        assert!(!same_content(&scaled, &old));
        let mut relabelled = new.clone();
        relabelled["metadata"]["labels"]["x"] = json!("2");
        assert!(!same_content(&relabelled, &old));
        let mut extra = new.clone();
        extra["status"] = json!({});
        assert!(!same_content(&extra, &old));
        let mut other_manager = new.clone();
        other_manager["metadata"]["managedFields"][0]["manager"] = json!("n");
        assert!(!same_content(&other_manager, &old));
        let mut annotated = new;
        annotated["metadata"]["annotations"] = json!({"a": "b"});
        assert!(!same_content(&annotated, &old));
    }

    #[test]
    fn watch_batches_send_one_line_as_is_and_join_more() {
        let mut batch = Batch::default();
        assert_eq!(batch.take(), None);
        let a = Bytes::from_static(b"{\"type\":\"ADDED\"}\n");
        batch.push(a.clone());
        assert_eq!(batch.len(), a.len());
        let one = batch.take().expect("one line");
        assert_eq!(one.as_ptr(), a.as_ptr(), "a lone line is not copied");
        assert_eq!(batch.take(), None);

        let lines = ["x\n", "yy\n", "zzz\n"];
        for line in lines {
            batch.push(Bytes::from_static(line.as_bytes()));
        }
        assert_eq!(batch.len(), 9);
        assert_eq!(batch.take().as_deref(), Some(&b"x\nyy\nzzz\n"[..]));
        assert_eq!(batch.take(), None);
    }
}
