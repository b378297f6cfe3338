//! The `garbage-collector-controller`: deletes objects whose owners are gone, and carries out
//! foreground and orphan deletion (kube's `pkg/controller/garbagecollector`).
//!
//! Discovery finds every resource that supports `list`, `watch` and `delete` (events excluded, as
//! in kube); one watch per resource feeds an in-memory graph of `metadata.ownerReferences` keyed by
//! uid. Two kinds of work items, processed one at a time once every watch has listed:
//!
//! - *attempt to delete* a node: if it is being deleted with the `foregroundDeletion` finalizer, delete
//!   its dependents and drop the finalizer once no dependent with `blockOwnerDeletion` is left;
//!   otherwise classify its owners as solid, dangling (404 or another uid on a live read) or waiting
//!   for dependents (foreground). With a solid owner left it only strips the other references;
//!   without one it deletes the node (in the foreground when a waiting owner needs it, else with the
//!   node's own policy, background by default).
//! - *orphan* a node being deleted with the `orphan` finalizer: strip the reference to it from every
//!   dependent, then drop the finalizer.
//!
//! The API server deletes an object for good once its last finalizer is gone. Discovery is re-run
//! every 30 s so new resources get watched.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::SelectAll;
use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, DeleteParams, DynamicObject, PartialObjectMeta, Patch, PatchParams, Preconditions,
    PropagationPolicy,
};
use kube::discovery::{ApiCapabilities, ApiResource, Discovery, Scope, verbs};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::Context;
use crate::endpoints::WorkQueue;

const FOREGROUND: &str = "foregroundDeletion";
const ORPHAN: &str = "orphan";
const DISCOVERY_PERIOD: Duration = Duration::from_secs(30);

/// A work item, by object uid.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Item {
    AttemptToDelete(String),
    AttemptToOrphan(String),
}

/// What the graph knows of one object.
#[derive(Debug, Clone)]
struct Node {
    resource: usize,
    namespace: Option<String>,
    name: String,
    resource_version: String,
    owners: Vec<OwnerReference>,
    finalizers: Vec<String>,
    deleting: bool,
}

impl Node {
    fn deleting_dependents(&self) -> bool {
        self.deleting && self.finalizers.iter().any(|f| f == FOREGROUND)
    }

    fn orphaning(&self) -> bool {
        self.deleting && self.finalizers.iter().any(|f| f == ORPHAN)
    }
}

/// The owner/dependent graph.
#[derive(Debug, Default)]
struct Graph {
    nodes: HashMap<String, Node>,
    /// owner uid -> dependent uids.
    dependents: HashMap<String, HashSet<String>>,
}

impl Graph {
    /// Records an object; returns the work it causes.
    fn upsert(&mut self, uid: &str, node: Node) -> Vec<Item> {
        let mut work = Vec::new();
        let old = self.nodes.get(uid).cloned();
        let owners_changed = old.as_ref().is_none_or(|o| o.owners != node.owners);
        if owners_changed {
            if let Some(old) = &old {
                for r in &old.owners {
                    if let Some(set) = self.dependents.get_mut(&r.uid) {
                        set.remove(uid);
                    }
                    // An owner waiting for its dependents may be done now.
                    if !node.owners.iter().any(|n| n.uid == r.uid)
                        && self
                            .nodes
                            .get(&r.uid)
                            .is_some_and(Node::deleting_dependents)
                    {
                        work.push(Item::AttemptToDelete(r.uid.clone()));
                    }
                }
            }
            for r in &node.owners {
                self.dependents
                    .entry(r.uid.clone())
                    .or_default()
                    .insert(uid.to_owned());
            }
            if !node.owners.is_empty() {
                work.push(Item::AttemptToDelete(uid.to_owned()));
            }
        }
        let was_deleting_dependents = old.as_ref().is_some_and(Node::deleting_dependents);
        if node.deleting_dependents() && !was_deleting_dependents {
            for dep in self.dependents.get(uid).into_iter().flatten() {
                work.push(Item::AttemptToDelete(dep.clone()));
            }
            work.push(Item::AttemptToDelete(uid.to_owned()));
        }
        if node.orphaning() {
            work.push(Item::AttemptToOrphan(uid.to_owned()));
        }
        // A dependent that starts or stops existing changes what a foreground owner waits for.
        if node.deleting && old.as_ref().is_some_and(|o| !o.deleting) {
            for r in &node.owners {
                if self
                    .nodes
                    .get(&r.uid)
                    .is_some_and(Node::deleting_dependents)
                {
                    work.push(Item::AttemptToDelete(r.uid.clone()));
                }
            }
        }
        self.nodes.insert(uid.to_owned(), node);
        work
    }

    /// Forgets an object; its dependents must re-check their owners.
    fn remove(&mut self, uid: &str) -> Vec<Item> {
        let mut work = Vec::new();
        let Some(node) = self.nodes.remove(uid) else {
            return work;
        };
        for r in &node.owners {
            if let Some(set) = self.dependents.get_mut(&r.uid) {
                set.remove(uid);
                if set.is_empty() && !self.nodes.contains_key(&r.uid) {
                    self.dependents.remove(&r.uid);
                }
            }
            if self
                .nodes
                .get(&r.uid)
                .is_some_and(Node::deleting_dependents)
            {
                work.push(Item::AttemptToDelete(r.uid.clone()));
            }
        }
        for dep in self.dependents.get(uid).into_iter().flatten() {
            work.push(Item::AttemptToDelete(dep.clone()));
        }
        work
    }

    fn dependents_of(&self, uid: &str) -> Vec<(String, Node)> {
        self.dependents
            .get(uid)
            .into_iter()
            .flatten()
            .filter_map(|d| self.nodes.get(d).map(|n| (d.clone(), n.clone())))
            .collect()
    }
}

fn node_of(resource: usize, obj: &Meta) -> Option<(String, Node)> {
    let m = &obj.metadata;
    Some((
        m.uid.clone()?,
        Node {
            resource,
            namespace: m.namespace.clone(),
            name: m.name.clone()?,
            resource_version: m.resource_version.clone().unwrap_or_default(),
            owners: m.owner_references.clone().unwrap_or_default(),
            finalizers: m.finalizers.clone().unwrap_or_default(),
            deleting: m.deletion_timestamp.is_some(),
        },
    ))
}

/// What the graph's watches yield.
type Meta = PartialObjectMeta<DynamicObject>;

type Events = SelectAll<
    Pin<Box<dyn Stream<Item = (usize, Result<watcher::Event<Meta>, watcher::Error>)> + Send>>,
>;

/// The watched resources and the state of their watches.
struct Gc {
    client: kube::Client,
    resources: Vec<(ApiResource, ApiCapabilities)>,
    /// (group, kind) -> index in `resources`.
    by_kind: HashMap<(String, String), usize>,
    synced: HashSet<usize>,
    /// Per resource: uids seen during a re-list in progress.
    relisting: HashMap<usize, HashSet<String>>,
    graph: Graph,
    queue: WorkQueue<Item>,
}

pub(crate) async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let mut gc = Gc {
        client: ctx.client.clone(),
        resources: Vec::new(),
        by_kind: HashMap::new(),
        synced: HashSet::new(),
        relisting: HashMap::new(),
        graph: Graph::default(),
        queue: WorkQueue::new(),
    };
    let mut events: Events = SelectAll::new();
    let mut next_discovery = Instant::now();
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        if Instant::now() >= next_discovery {
            gc.discover(&mut events).await;
            next_discovery = Instant::now() + DISCOVERY_PERIOD;
        }
        while let Some(Some((r, e))) = events.next().now_or_never() {
            gc.handle(r, e);
        }
        if !gc.resources.is_empty()
            && gc.synced.len() >= gc.resources.len()
            && let Some(item) = gc.queue.pop()
        {
            let span =
                tracing::debug_span!("reconcile", controller = "garbagecollector", key = ?item);
            match gc.process(&item).instrument(span).await {
                Ok(()) => gc.queue.forget(&item),
                Err(e) => {
                    tracing::warn!(item = ?item, error = %e, "garbage collection failed; requeued");
                    gc.queue.add_rate_limited(item);
                }
            }
            continue;
        }
        let wake = gc
            .queue
            .next_due()
            .unwrap_or(next_discovery)
            .min(next_discovery);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            e = events.next(), if !events.is_empty() => {
                if let Some((r, e)) = e {
                    gc.handle(r, e);
                }
            }
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
}

impl Gc {
    /// Starts watches for resources not watched yet.
    async fn discover(&mut self, events: &mut Events) {
        let discovery = match Discovery::new(self.client.clone()).run().await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "garbage collector discovery failed");
                return;
            }
        };
        let mut added: HashSet<(String, String)> = HashSet::new();
        for group in discovery.groups() {
            for (ar, caps) in group.recommended_resources() {
                if !(caps.supports_operation(verbs::LIST)
                    && caps.supports_operation(verbs::WATCH)
                    && caps.supports_operation(verbs::DELETE))
                    || ar.plural == "events"
                {
                    continue;
                }
                let key = (ar.group.clone(), ar.kind.clone());
                if self.by_kind.contains_key(&key) {
                    continue;
                }
                let index = self.resources.len();
                added.insert(key.clone());
                self.by_kind.insert(key, index);
                // Metadata only (PartialObjectMetadata), as kube's garbage collector watches: the
                // graph needs nothing else, and whole objects cost their decoding.
                let api: Api<Meta> = Api::all_with(self.client.clone(), &ar);
                let stream = watcher(api, watcher::Config::default())
                    .default_backoff()
                    .map(move |e| (index, e));
                events.push(stream.boxed());
                tracing::debug!(resource = %ar.plural, group = %ar.group, "garbage collector watching");
                self.resources.push((ar, caps));
            }
        }
        // Objects whose owners are of a kind just discovered (a new custom resource) were judged
        // while that kind was unknown, which never deletes: judge them again.
        let recheck: Vec<String> = self
            .graph
            .nodes
            .iter()
            .filter(|(_, node)| {
                node.owners.iter().any(|o| {
                    let group = o.api_version.rsplit_once('/').map_or("", |(g, _)| g);
                    added.contains(&(group.to_owned(), o.kind.clone()))
                })
            })
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in recheck {
            self.queue.add(Item::AttemptToDelete(uid));
        }
    }

    fn handle(&mut self, r: usize, event: Result<watcher::Event<Meta>, watcher::Error>) {
        let work = match event {
            Ok(watcher::Event::Apply(o)) => match node_of(r, &o) {
                Some((uid, node)) => self.graph.upsert(&uid, node),
                None => vec![],
            },
            Ok(watcher::Event::Delete(o)) => match o.metadata.uid.as_deref() {
                Some(uid) => self.graph.remove(uid),
                None => vec![],
            },
            Ok(watcher::Event::Init) => {
                self.relisting.insert(r, HashSet::new());
                vec![]
            }
            Ok(watcher::Event::InitApply(o)) => match node_of(r, &o) {
                Some((uid, node)) => {
                    self.relisting.entry(r).or_default().insert(uid.clone());
                    self.graph.upsert(&uid, node)
                }
                None => vec![],
            },
            Ok(watcher::Event::InitDone) => {
                self.synced.insert(r);
                let seen = self.relisting.remove(&r).unwrap_or_default();
                let gone: Vec<String> = self
                    .graph
                    .nodes
                    .iter()
                    .filter(|(uid, n)| n.resource == r && !seen.contains(*uid))
                    .map(|(uid, _)| uid.clone())
                    .collect();
                gone.iter().flat_map(|uid| self.graph.remove(uid)).collect()
            }
            Err(e) => {
                tracing::warn!(error = %e, "garbage collector watch failed; retrying");
                vec![]
            }
        };
        for item in work {
            self.queue.add(item);
        }
    }

    fn api(&self, resource: usize, namespace: Option<&str>) -> Option<Api<DynamicObject>> {
        let (ar, caps) = self.resources.get(resource)?;
        Some(match (&caps.scope, namespace) {
            (Scope::Namespaced, Some(ns)) => Api::namespaced_with(self.client.clone(), ns, ar),
            _ => Api::all_with(self.client.clone(), ar),
        })
    }

    async fn process(&mut self, item: &Item) -> Result<(), kube::Error> {
        match item {
            Item::AttemptToDelete(uid) => self.attempt_to_delete(uid).await,
            Item::AttemptToOrphan(uid) => self.attempt_to_orphan(uid).await,
        }
    }

    async fn attempt_to_delete(&mut self, uid: &str) -> Result<(), kube::Error> {
        let Some(node) = self.graph.nodes.get(uid).cloned() else {
            return Ok(());
        };
        if node.deleting && !node.deleting_dependents() {
            return Ok(());
        }
        if node.deleting_dependents() {
            return self.process_deleting_dependents(uid, &node).await;
        }
        if node.owners.is_empty() {
            return Ok(());
        }
        let mut solid = Vec::new();
        let mut dangling = Vec::new();
        let mut waiting = Vec::new();
        for owner in &node.owners {
            match self.owner_state(&node, owner).await? {
                OwnerState::Solid => solid.push(owner.uid.clone()),
                OwnerState::Dangling => dangling.push(owner.uid.clone()),
                OwnerState::Waiting => waiting.push(owner.uid.clone()),
            }
        }
        let Some(api) = self.api(node.resource, node.namespace.as_deref()) else {
            return Ok(());
        };
        if !solid.is_empty() {
            if dangling.is_empty() && waiting.is_empty() {
                return Ok(());
            }
            // Keep the object for its live owners; forget the others.
            let keep: Vec<&OwnerReference> = node
                .owners
                .iter()
                .filter(|o| !dangling.contains(&o.uid) && !waiting.contains(&o.uid))
                .collect();
            tracing::info!(object = %node.name, removed = ?[&dangling[..], &waiting[..]].concat(), "removing owner references to deleted owners");
            return patch_ignoring_missing(&api, &node, json!({"ownerReferences": keep})).await;
        }
        let has_dependents = !self.graph.dependents_of(uid).is_empty();
        let policy = if !waiting.is_empty() && has_dependents {
            // This object must go before its foreground owner, and its own dependents before it:
            // it must not block the owner through blockOwnerDeletion meanwhile.
            let unblocked: Vec<OwnerReference> = node
                .owners
                .iter()
                .map(|o| {
                    let mut o = o.clone();
                    if waiting.contains(&o.uid) {
                        o.block_owner_deletion = Some(false);
                    }
                    o
                })
                .collect();
            if unblocked != node.owners {
                patch_ignoring_missing(&api, &node, json!({"ownerReferences": unblocked})).await?;
            }
            PropagationPolicy::Foreground
        } else if node.finalizers.iter().any(|f| f == ORPHAN) {
            PropagationPolicy::Orphan
        } else if node.finalizers.iter().any(|f| f == FOREGROUND) {
            PropagationPolicy::Foreground
        } else {
            PropagationPolicy::Background
        };
        tracing::info!(object = %node.name, namespace = ?node.namespace, ?policy, "deleting object whose owners are gone");
        let params = DeleteParams {
            propagation_policy: Some(policy),
            preconditions: Some(Preconditions {
                uid: Some(uid.to_owned()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&node.name, &params).await {
            Ok(_) => Ok(()),
            // Gone already, or replaced by a new object with the same name.
            Err(kube::Error::Api(s)) if s.is_not_found() || s.is_conflict() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// A foreground owner: delete its dependents, drop the finalizer when no blocking one is left.
    async fn process_deleting_dependents(
        &mut self,
        uid: &str,
        node: &Node,
    ) -> Result<(), kube::Error> {
        let dependents = self.graph.dependents_of(uid);
        let blocking: Vec<&(String, Node)> = dependents
            .iter()
            .filter(|(_, d)| {
                d.owners
                    .iter()
                    .any(|o| o.uid == uid && o.block_owner_deletion == Some(true))
            })
            .collect();
        if blocking.is_empty() {
            tracing::info!(object = %node.name, "dependents deleted; removing foregroundDeletion finalizer");
            return self.remove_finalizer(node, FOREGROUND).await;
        }
        for (dep_uid, dep) in blocking {
            if !dep.deleting || dep.deleting_dependents() {
                self.queue.add(Item::AttemptToDelete(dep_uid.clone()));
            }
        }
        Ok(())
    }

    async fn attempt_to_orphan(&mut self, uid: &str) -> Result<(), kube::Error> {
        let Some(node) = self.graph.nodes.get(uid).cloned() else {
            return Ok(());
        };
        if !node.orphaning() {
            return Ok(());
        }
        for (_, dep) in self.graph.dependents_of(uid) {
            let Some(api) = self.api(dep.resource, dep.namespace.as_deref()) else {
                continue;
            };
            let keep: Vec<&OwnerReference> = dep.owners.iter().filter(|o| o.uid != uid).collect();
            patch_ignoring_missing(&api, &dep, json!({"ownerReferences": keep})).await?;
        }
        tracing::info!(object = %node.name, "dependents orphaned; removing orphan finalizer");
        self.remove_finalizer(&node, ORPHAN).await
    }

    async fn remove_finalizer(&self, node: &Node, finalizer: &str) -> Result<(), kube::Error> {
        let Some(api) = self.api(node.resource, node.namespace.as_deref()) else {
            return Ok(());
        };
        let left: Vec<&String> = node.finalizers.iter().filter(|f| *f != finalizer).collect();
        patch_ignoring_missing(&api, node, json!({"finalizers": left})).await
    }

    /// Whether an owner still exists: the graph first, then a live read (the graph may lag).
    async fn owner_state(
        &self,
        dependent: &Node,
        owner: &OwnerReference,
    ) -> Result<OwnerState, kube::Error> {
        if let Some(o) = self.graph.nodes.get(&owner.uid) {
            return Ok(if o.deleting_dependents() {
                OwnerState::Waiting
            } else {
                OwnerState::Solid
            });
        }
        let group = owner.api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let Some(&resource) = self.by_kind.get(&(group.to_owned(), owner.kind.clone())) else {
            // Unknown kind: kube retries until discovery knows it; never delete on a guess.
            tracing::debug!(kind = %owner.kind, api_version = %owner.api_version, "owner kind not served");
            return Ok(OwnerState::Solid);
        };
        let namespace = match self.resources[resource].1.scope {
            Scope::Namespaced => match dependent.namespace.as_deref() {
                Some(ns) => Some(ns),
                // A cluster-scoped object cannot have a namespaced owner: leave it alone.
                None => return Ok(OwnerState::Solid),
            },
            Scope::Cluster => None,
        };
        let Some(api) = self.api(resource, namespace) else {
            return Ok(OwnerState::Solid);
        };
        match api.get_opt(&owner.name).await? {
            None => Ok(OwnerState::Dangling),
            Some(o) if o.metadata.uid.as_deref() != Some(owner.uid.as_str()) => {
                Ok(OwnerState::Dangling)
            }
            Some(o) => {
                let deleting_dependents = o.metadata.deletion_timestamp.is_some()
                    && o.metadata
                        .finalizers
                        .iter()
                        .flatten()
                        .any(|f| f == FOREGROUND);
                Ok(if deleting_dependents {
                    OwnerState::Waiting
                } else {
                    OwnerState::Solid
                })
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OwnerState {
    Solid,
    Dangling,
    Waiting,
}

/// A JSON merge patch of `metadata` guarded by the resourceVersion the graph saw (409 when the
/// object changed since; the newer version is on its way through the watch).
async fn patch_ignoring_missing(
    api: &Api<DynamicObject>,
    node: &Node,
    metadata: serde_json::Value,
) -> Result<(), kube::Error> {
    let mut metadata = metadata;
    if let Some(m) = metadata.as_object_mut() {
        m.insert("resourceVersion".into(), json!(node.resource_version));
    }
    let patch = json!({ "metadata": metadata });
    match api
        .patch(&node.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner_ref(uid: &str, block: bool) -> OwnerReference {
        OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: format!("cm-{uid}"),
            uid: uid.into(),
            block_owner_deletion: Some(block),
            controller: None,
        }
    }

    fn node(owners: Vec<OwnerReference>, finalizers: &[&str], deleting: bool) -> Node {
        Node {
            resource: 0,
            namespace: Some("ns".into()),
            name: "x".into(),
            resource_version: "1".into(),
            owners,
            finalizers: finalizers.iter().map(|f| (*f).to_owned()).collect(),
            deleting,
        }
    }

    fn del(uid: &str) -> Item {
        Item::AttemptToDelete(uid.into())
    }

    #[test]
    fn a_new_dependent_is_checked_and_an_owner_deletion_rechecks_its_dependents() {
        let mut g = Graph::default();
        assert_eq!(g.upsert("owner", node(vec![], &[], false)), []);
        assert_eq!(
            g.upsert("dep", node(vec![owner_ref("owner", false)], &[], false)),
            [del("dep")]
        );
        // An update that leaves the owners alone causes no work.
        assert_eq!(
            g.upsert("dep", node(vec![owner_ref("owner", false)], &[], false)),
            []
        );
        assert_eq!(g.remove("owner"), [del("dep")]);
    }

    #[test]
    fn foreground_deletion_visits_dependents_and_the_owner_waits_for_them() {
        let mut g = Graph::default();
        g.upsert("owner", node(vec![], &[], false));
        g.upsert("dep", node(vec![owner_ref("owner", true)], &[], false));
        let work = g.upsert("owner", node(vec![], &[FOREGROUND], true));
        assert_eq!(work, [del("dep"), del("owner")]);
        // The dependent going away wakes the owner up.
        assert_eq!(g.remove("dep"), [del("owner")]);
    }

    #[test]
    fn orphan_finalizer_queues_orphaning() {
        let mut g = Graph::default();
        let work = g.upsert("owner", node(vec![], &[ORPHAN], true));
        assert_eq!(work, [Item::AttemptToOrphan("owner".into())]);
    }
}
