//! The scheduler's cache: every node, and the pods assigned to each with their precomputed sums
//! (requests, host ports, per-owner counts). Fed by the watches and, before the API confirms them,
//! by the scheduler's own decisions ("assumed" pods), so consecutive decisions see each other.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::NodeSelector;

use crate::types::{HostPort, NodeSpec, PodInfo, PodKey, Resources};

/// One node and what is assigned to it.
#[derive(Debug, Default)]
pub struct NodeInfo {
    /// `None` while the node object is gone but pods still point at it. Held inline, not behind a
    /// pointer: filters read it for hundreds of nodes per pod, and the slots are one contiguous
    /// vector (a pointer per node was a cache miss per node per pod).
    pub node: Option<NodeSpec>,
    pub requested: Resources,
    pub non_zero_cpu: i64,
    pub non_zero_memory: i64,
    pub pod_count: i64,
    pub used_ports: Vec<HostPort>,
    /// Pods per controlling owner uid.
    pub owner_counts: HashMap<String, u32>,
    pub pods: HashMap<PodKey, Arc<PodInfo>>,
}

impl NodeInfo {
    /// A node with no pods (for tests and for new nodes).
    pub fn new(node: NodeSpec) -> Self {
        NodeInfo {
            node: Some(node),
            ..Default::default()
        }
    }

    pub fn name(&self) -> &str {
        self.node.as_ref().map_or("", |n| n.name.as_str())
    }

    pub fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.requested.add(&pod.requests);
        self.non_zero_cpu += pod.non_zero_cpu;
        self.non_zero_memory += pod.non_zero_memory;
        self.pod_count += 1;
        self.used_ports.extend(pod.host_ports.iter().cloned());
        if let Some(owner) = &pod.owner_uid {
            *self.owner_counts.entry(owner.clone()).or_default() += 1;
        }
        self.pods.insert(pod.key.clone(), pod);
    }

    pub fn remove_pod(&mut self, key: &str) -> Option<Arc<PodInfo>> {
        let pod = self.pods.remove(key)?;
        self.requested.sub(&pod.requests);
        self.non_zero_cpu -= pod.non_zero_cpu;
        self.non_zero_memory -= pod.non_zero_memory;
        self.pod_count -= 1;
        for port in &pod.host_ports {
            if let Some(i) = self.used_ports.iter().position(|p| p == port) {
                self.used_ports.swap_remove(i);
            }
        }
        if let Some(owner) = &pod.owner_uid
            && let Some(count) = self.owner_counts.get_mut(owner)
        {
            *count -= 1;
            if *count == 0 {
                self.owner_counts.remove(owner);
            }
        }
        Some(pod)
    }
}

/// Where an assigned pod sits.
#[derive(Debug, Clone, Copy)]
struct Placement {
    slot: usize,
    /// Placed by our own decision, not yet seen bound in a watch event.
    assumed: bool,
}

/// All nodes and assigned pods.
#[derive(Debug, Default)]
pub struct Cache {
    slots: Vec<NodeInfo>,
    by_name: HashMap<String, usize>,
    /// Slots whose node object exists, in the order nodes were added.
    live: Vec<usize>,
    placements: HashMap<PodKey, Placement>,
    /// Assigned pods with required anti-affinity terms (checked against every incoming pod).
    with_anti_affinity: HashSet<PodKey>,
    /// PersistentVolumeClaims by `namespace/name`: the volume each is bound to, if any.
    claims: HashMap<String, Option<String>>,
    /// PersistentVolumes by name: their required node affinity, if any.
    volumes: HashMap<String, Option<NodeSelector>>,
}

impl Cache {
    /// Replaces every known claim (after a list).
    pub fn set_claims(&mut self, claims: HashMap<String, Option<String>>) {
        self.claims = claims;
    }

    pub fn upsert_claim(&mut self, key: String, volume: Option<String>) {
        self.claims.insert(key, volume);
    }

    pub fn remove_claim(&mut self, key: &str) {
        self.claims.remove(key);
    }

    /// The claim `namespace/name`: `None` when unknown, `Some(None)` while unbound.
    pub fn claim(&self, key: &str) -> Option<Option<&str>> {
        self.claims.get(key).map(Option::as_deref)
    }

    /// Replaces every known volume (after a list).
    pub fn set_volumes(&mut self, volumes: HashMap<String, Option<NodeSelector>>) {
        self.volumes = volumes;
    }

    pub fn upsert_volume(&mut self, name: String, affinity: Option<NodeSelector>) {
        self.volumes.insert(name, affinity);
    }

    pub fn remove_volume(&mut self, name: &str) {
        self.volumes.remove(name);
    }

    /// The required node affinity of volume `name` (`None` when unknown or unpinned).
    pub fn volume_affinity(&self, name: &str) -> Option<&NodeSelector> {
        self.volumes.get(name).and_then(Option::as_ref)
    }

    pub fn live_count(&self) -> usize {
        self.live.len()
    }

    /// Slot of the `i`-th live node.
    pub fn live_slot(&self, i: usize) -> usize {
        self.live[i]
    }

    pub fn slot(&self, slot: usize) -> &NodeInfo {
        &self.slots[slot]
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.by_name.get(name).map(|&s| &self.slots[s])
    }

    pub fn live_nodes(&self) -> impl Iterator<Item = &NodeInfo> {
        self.live.iter().map(|&s| &self.slots[s])
    }

    pub fn node_names(&self) -> impl Iterator<Item = &str> {
        self.live_nodes().map(NodeInfo::name)
    }

    /// Assigned pods carrying required anti-affinity, with the node they are on.
    pub fn pods_with_anti_affinity(&self) -> impl Iterator<Item = (&PodInfo, &NodeInfo)> {
        self.with_anti_affinity.iter().filter_map(|key| {
            let placement = self.placements.get(key)?;
            let node = &self.slots[placement.slot];
            Some((node.pods.get(key)?.as_ref(), node))
        })
    }

    fn slot_for(&mut self, name: &str) -> usize {
        if let Some(&slot) = self.by_name.get(name) {
            return slot;
        }
        self.slots.push(NodeInfo::default());
        let slot = self.slots.len() - 1;
        self.by_name.insert(name.to_owned(), slot);
        slot
    }

    /// Adds or updates a node. Returns true when something a pending pod could care about changed.
    pub fn upsert_node(&mut self, node: NodeSpec) -> bool {
        let slot = self.slot_for(&node.name);
        let info = &mut self.slots[slot];
        let changed = info.node.as_ref() != Some(&node);
        if info.node.is_none() {
            self.live.push(slot);
        }
        if changed {
            info.node = Some(node);
        }
        changed
    }

    pub fn remove_node(&mut self, name: &str) {
        if let Some(&slot) = self.by_name.get(name) {
            self.slots[slot].node = None;
            self.live.retain(|&s| s != slot);
        }
    }

    /// Records a pod the scheduler has just decided to bind (before the API confirms it).
    pub fn assume(&mut self, pod: Arc<PodInfo>, node: &str) {
        self.place(pod, node, true);
    }

    /// Undoes [`Cache::assume`] after a failed binding. Confirmed pods are left alone.
    pub fn forget(&mut self, key: &str) {
        if self.placements.get(key).is_some_and(|p| p.assumed) {
            self.remove_pod(key);
        }
    }

    /// Applies an assigned pod seen in a watch event (confirming an assumed one).
    pub fn upsert_assigned(&mut self, pod: Arc<PodInfo>) {
        let Some(node) = pod.node_name.clone() else {
            return;
        };
        self.place(pod, &node, false);
    }

    fn place(&mut self, pod: Arc<PodInfo>, node: &str, assumed: bool) {
        let key = pod.key.clone();
        self.remove_pod(&key);
        let slot = self.slot_for(node);
        if !pod.required_pod_anti_affinity.is_empty() {
            self.with_anti_affinity.insert(key.clone());
        }
        self.slots[slot].add_pod(pod);
        self.placements.insert(key, Placement { slot, assumed });
    }

    /// Removes an assigned pod (deleted or finished). Returns true if it was in the cache.
    pub fn remove_pod(&mut self, key: &str) -> bool {
        let Some(placement) = self.placements.remove(key) else {
            return false;
        };
        self.with_anti_affinity.remove(key);
        self.slots[placement.slot].remove_pod(key);
        true
    }

    pub fn contains_pod(&self, key: &str) -> bool {
        self.placements.contains_key(key)
    }

    /// Keys of assigned pods confirmed by the API (for resynchronising after a watch restart).
    pub fn confirmed_pod_keys(&self) -> Vec<PodKey> {
        self.placements
            .iter()
            .filter(|(_, p)| !p.assumed)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Node names in the cache (for resynchronising after a watch restart).
    pub fn all_node_names(&self) -> Vec<String> {
        self.live_nodes().map(|n| n.name().to_owned()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::tests::{node, pod};
    use serde_json::json;

    fn small_pod(name: &str, cpu: &str, port: Option<i32>) -> Arc<PodInfo> {
        let ports = port.map(|p| json!([{"containerPort": 80, "hostPort": p}]));
        Arc::new(pod(json!({
            "metadata": {"name": name, "namespace": "ns",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "rs-1", "controller": true}]},
            "spec": {"containers": [{"name": "c", "image": "x", "ports": ports,
                "resources": {"requests": {"cpu": cpu}}}]}
        })))
    }

    #[test]
    fn assumed_pods_count_once_and_are_confirmed_in_place() {
        let mut cache = Cache::default();
        cache.upsert_node(node(json!({"metadata": {"name": "n1"}})));
        cache.assume(small_pod("a", "100m", Some(8080)), "n1");
        let mut bound = (*small_pod("a", "100m", Some(8080))).clone();
        bound.node_name = Some("n1".into());
        cache.upsert_assigned(Arc::new(bound));
        let n = cache.node("n1").expect("node");
        assert_eq!(n.requested.milli_cpu, 100);
        assert_eq!(n.pod_count, 1);
        assert_eq!(n.used_ports.len(), 1);
        assert_eq!(n.owner_counts.get("rs-1"), Some(&1));
        // Confirmed pods survive a forget (only assumed ones are undone).
        cache.forget("ns/a");
        assert_eq!(cache.node("n1").expect("node").pod_count, 1);
    }

    #[test]
    fn forget_and_remove_restore_the_sums() {
        let mut cache = Cache::default();
        cache.upsert_node(node(json!({"metadata": {"name": "n1"}})));
        cache.assume(small_pod("a", "100m", Some(8080)), "n1");
        cache.assume(small_pod("b", "200m", None), "n1");
        cache.forget("ns/a");
        assert!(cache.remove_pod("ns/b"));
        let n = cache.node("n1").expect("node");
        assert_eq!(n.requested, Resources::default());
        assert_eq!(n.pod_count, 0);
        assert!(n.used_ports.is_empty());
        assert!(n.owner_counts.is_empty());
    }

    #[test]
    fn removed_nodes_leave_the_live_list() {
        let mut cache = Cache::default();
        assert!(cache.upsert_node(node(json!({"metadata": {"name": "n1"}}))));
        assert!(!cache.upsert_node(node(json!({"metadata": {"name": "n1"}}))));
        cache.upsert_node(node(json!({"metadata": {"name": "n2"}})));
        cache.remove_node("n1");
        assert_eq!(cache.node_names().collect::<Vec<_>>(), vec!["n2"]);
        cache.upsert_node(node(json!({"metadata": {"name": "n1"}})));
        assert_eq!(cache.live_count(), 2);
    }
}
