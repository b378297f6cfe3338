//! The scheduler's own compact view of pods and nodes: what the plugins read, computed once when a
//! watch event arrives, so a scheduling cycle never touches (or clones) the full API objects.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Container, Node, NodeSelector, Pod, PodAffinityTerm, PreferredSchedulingTerm, Taint,
    Toleration, WeightedPodAffinityTerm,
};

use crate::quantity;

/// `namespace/name`, shared between the queue and the cache.
pub type PodKey = Arc<str>;

/// Cpu in milli-cores, everything else in whole units.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    /// Extended and hugepages resources, sorted by name.
    pub scalar: Vec<(String, i64)>,
}

impl Resources {
    /// Reads a `requests`/`allocatable` map; malformed quantities count as zero (the API server
    /// validates them, so this only guards against a misbehaving server).
    pub fn from_list(
        list: &BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    ) -> Self {
        let mut r = Resources::default();
        for (name, q) in list {
            match name.as_str() {
                "cpu" => r.milli_cpu = quantity::parse_milli(&q.0).unwrap_or(0),
                "memory" => r.memory = quantity::parse_value(&q.0).unwrap_or(0),
                "ephemeral-storage" => {
                    r.ephemeral_storage = quantity::parse_value(&q.0).unwrap_or(0)
                }
                "pods" => {}
                other => r.set_scalar(other, quantity::parse_value(&q.0).unwrap_or(0)),
            }
        }
        r
    }

    pub fn scalar(&self, name: &str) -> i64 {
        self.scalar
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .map(|i| self.scalar[i].1)
            .unwrap_or(0)
    }

    fn set_scalar(&mut self, name: &str, value: i64) {
        match self.scalar.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            Ok(i) => self.scalar[i].1 = value,
            Err(i) => self.scalar.insert(i, (name.to_owned(), value)),
        }
    }

    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_add(other.milli_cpu);
        self.memory = self.memory.saturating_add(other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_add(other.ephemeral_storage);
        for (name, v) in &other.scalar {
            let sum = self.scalar(name).saturating_add(*v);
            self.set_scalar(name, sum);
        }
    }

    pub fn sub(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_sub(other.milli_cpu);
        self.memory = self.memory.saturating_sub(other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_sub(other.ephemeral_storage);
        for (name, v) in &other.scalar {
            let diff = self.scalar(name).saturating_sub(*v);
            self.set_scalar(name, diff);
        }
    }

    /// Element-wise maximum.
    pub fn max_with(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        for (name, v) in &other.scalar {
            let m = self.scalar(name).max(*v);
            self.set_scalar(name, m);
        }
    }

    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalar.iter().all(|(_, v)| *v == 0)
    }
}

/// Cpu assumed for a container without a cpu request when scoring (kube: `DefaultMilliCPURequest`).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Memory assumed for a container without a memory request when scoring (kube: 200Mi).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// A host port a pod asks for; `0.0.0.0` matches every address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub protocol: String,
    pub ip: String,
    pub port: i32,
}

impl HostPort {
    pub fn conflicts(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || self.ip == "0.0.0.0" || other.ip == "0.0.0.0")
    }
}

/// Everything the plugins need to know about a pod.
#[derive(Debug, Clone, PartialEq)]
pub struct PodInfo {
    pub key: PodKey,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub node_name: Option<String>,
    pub scheduler_name: String,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// Phase Succeeded or Failed: holds no resources.
    pub terminal: bool,
    pub priority: i32,
    pub labels: BTreeMap<String, String>,
    /// uid of the controlling owner (ReplicaSet, StatefulSet, ...), for spreading.
    pub owner_uid: Option<String>,
    /// Effective requests: containers, init containers (max), overhead.
    pub requests: Resources,
    /// Requests with defaults for containers that ask for nothing (used by scores only).
    pub non_zero_cpu: i64,
    pub non_zero_memory: i64,
    pub host_ports: Vec<HostPort>,
    pub tolerations: Vec<Toleration>,
    pub node_selector: BTreeMap<String, String>,
    pub required_node_affinity: Option<NodeSelector>,
    pub preferred_node_affinity: Vec<PreferredSchedulingTerm>,
    pub required_pod_affinity: Vec<PodAffinityTerm>,
    pub required_pod_anti_affinity: Vec<PodAffinityTerm>,
    pub preferred_pod_anti_affinity: Vec<WeightedPodAffinityTerm>,
    /// Names of the PersistentVolumeClaims the pod's volumes use (in its namespace).
    pub claims: Vec<String>,
}

impl PodInfo {
    /// Builds the compact view of a pod (consumes it: nothing big is kept).
    pub fn from_pod(pod: Pod) -> Self {
        let meta = pod.metadata;
        let namespace = meta.namespace.unwrap_or_default();
        let name = meta.name.unwrap_or_default();
        let key: PodKey = Arc::from(format!("{namespace}/{name}"));
        let owner_uid = meta
            .owner_references
            .unwrap_or_default()
            .into_iter()
            .find(|o| o.controller == Some(true))
            .map(|o| o.uid);
        let terminal = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|p| p == "Succeeded" || p == "Failed");
        let spec = pod.spec.unwrap_or_default();
        let (requests, non_zero) = pod_requests(&spec);
        let host_ports = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| {
                let port = p.host_port.filter(|&hp| hp > 0)?;
                Some(HostPort {
                    protocol: p.protocol.clone().unwrap_or_else(|| "TCP".to_owned()),
                    ip: p
                        .host_ip
                        .clone()
                        .filter(|ip| !ip.is_empty())
                        .unwrap_or_else(|| "0.0.0.0".to_owned()),
                    port,
                })
            })
            .collect();
        let claims = spec
            .volumes
            .iter()
            .flatten()
            .filter_map(|v| v.persistent_volume_claim.as_ref())
            .map(|c| c.claim_name.clone())
            .collect();
        let affinity = spec.affinity.unwrap_or_default();
        let node_affinity = affinity.node_affinity.unwrap_or_default();
        let pod_affinity = affinity.pod_affinity.unwrap_or_default();
        let anti = affinity.pod_anti_affinity.unwrap_or_default();
        PodInfo {
            key,
            namespace,
            name,
            uid: meta.uid.unwrap_or_default(),
            node_name: spec.node_name.filter(|n| !n.is_empty()),
            scheduler_name: spec
                .scheduler_name
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| crate::DEFAULT_SCHEDULER_NAME.to_owned()),
            deleting: meta.deletion_timestamp.is_some(),
            terminal,
            priority: spec.priority.unwrap_or(0),
            labels: meta.labels.unwrap_or_default(),
            owner_uid,
            requests,
            non_zero_cpu: non_zero.milli_cpu,
            non_zero_memory: non_zero.memory,
            host_ports,
            tolerations: spec.tolerations.unwrap_or_default(),
            node_selector: spec.node_selector.unwrap_or_default(),
            required_node_affinity: node_affinity
                .required_during_scheduling_ignored_during_execution,
            preferred_node_affinity: node_affinity
                .preferred_during_scheduling_ignored_during_execution
                .unwrap_or_default(),
            required_pod_affinity: pod_affinity
                .required_during_scheduling_ignored_during_execution
                .unwrap_or_default(),
            required_pod_anti_affinity: anti
                .required_during_scheduling_ignored_during_execution
                .unwrap_or_default(),
            preferred_pod_anti_affinity: anti
                .preferred_during_scheduling_ignored_during_execution
                .unwrap_or_default(),
            claims,
        }
    }

    /// True when the two versions would get the same scheduling decision (status-only updates,
    /// such as our own PodScheduled condition, do not count as a change).
    pub fn same_scheduling_inputs(&self, other: &PodInfo) -> bool {
        self.labels == other.labels
            && self.requests == other.requests
            && self.host_ports == other.host_ports
            && self.tolerations == other.tolerations
            && self.node_selector == other.node_selector
            && self.required_node_affinity == other.required_node_affinity
            && self.preferred_node_affinity == other.preferred_node_affinity
            && self.required_pod_affinity == other.required_pod_affinity
            && self.required_pod_anti_affinity == other.required_pod_anti_affinity
            && self.priority == other.priority
            && self.claims == other.claims
    }
}

fn container_requests(c: &Container) -> Resources {
    let Some(res) = c.resources.as_ref() else {
        return Resources::default();
    };
    let mut r = res
        .requests
        .as_ref()
        .map(Resources::from_list)
        .unwrap_or_default();
    // The API server defaults a missing request to the limit; do the same in case it did not.
    if let Some(limits) = res.limits.as_ref() {
        let requests = res.requests.as_ref();
        let missing = |name: &str| requests.is_none_or(|m| !m.contains_key(name));
        let l = Resources::from_list(limits);
        if missing("cpu") {
            r.milli_cpu = l.milli_cpu;
        }
        if missing("memory") {
            r.memory = l.memory;
        }
        if missing("ephemeral-storage") {
            r.ephemeral_storage = l.ephemeral_storage;
        }
        for (name, v) in &l.scalar {
            if missing(name) {
                r.set_scalar(name, *v);
            }
        }
    }
    r
}

fn non_zero(mut r: Resources) -> Resources {
    if r.milli_cpu == 0 {
        r.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
    }
    if r.memory == 0 {
        r.memory = DEFAULT_MEMORY_REQUEST;
    }
    r
}

/// kube's `PodRequests`: the sum of the app containers and restartable (sidecar) init containers, at
/// least the peak of any init container (with the sidecars started before it), plus overhead.
/// Returns (requests, requests with per-container defaults for scoring).
fn pod_requests(spec: &k8s_openapi::api::core::v1::PodSpec) -> (Resources, Resources) {
    let mut total = [Resources::default(), Resources::default()];
    for c in &spec.containers {
        let r = container_requests(c);
        total[1].add(&non_zero(r.clone()));
        total[0].add(&r);
    }
    for (i, t) in total.iter_mut().enumerate() {
        let mut sidecars = Resources::default();
        let mut init_peak = Resources::default();
        for c in spec.init_containers.iter().flatten() {
            let mut r = container_requests(c);
            if i == 1 {
                r = non_zero(r);
            }
            if c.restart_policy.as_deref() == Some("Always") {
                t.add(&r);
                sidecars.add(&r);
                init_peak.max_with(&sidecars);
            } else {
                r.add(&sidecars);
                init_peak.max_with(&r);
            }
        }
        t.max_with(&init_peak);
        if let Some(overhead) = spec.overhead.as_ref() {
            t.add(&Resources::from_list(overhead));
        }
    }
    let [requests, non_zero] = total;
    (requests, non_zero)
}

/// Ready condition of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    NotReady,
    /// Condition `Unknown` or missing.
    Unknown,
}

/// Everything the plugins need to know about a node object.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSpec {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    pub readiness: Readiness,
    pub allocatable: Resources,
    pub allowed_pods: i64,
}

impl NodeSpec {
    pub fn from_node(node: Node) -> Self {
        let spec = node.spec.unwrap_or_default();
        let status = node.status.unwrap_or_default();
        let list = status.allocatable.or(status.capacity).unwrap_or_default();
        let allowed_pods = list
            .get("pods")
            .and_then(|q| quantity::parse_value(&q.0).ok())
            .unwrap_or(0);
        let readiness = match status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "Ready")
            .map(|c| c.status.as_str())
        {
            Some("True") => Readiness::Ready,
            Some("False") => Readiness::NotReady,
            _ => Readiness::Unknown,
        };
        NodeSpec {
            name: node.metadata.name.unwrap_or_default(),
            labels: node.metadata.labels.unwrap_or_default(),
            taints: spec.taints.unwrap_or_default(),
            unschedulable: spec.unschedulable.unwrap_or(false),
            readiness,
            allocatable: Resources::from_list(&list),
            allowed_pods,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn pod(value: serde_json::Value) -> PodInfo {
        PodInfo::from_pod(serde_json::from_value(value).expect("pod json"))
    }

    pub(crate) fn node(value: serde_json::Value) -> NodeSpec {
        NodeSpec::from_node(serde_json::from_value(value).expect("node json"))
    }

    #[test]
    fn pod_requests_take_the_init_container_peak_and_overhead() {
        let p = pod(json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {
                "containers": [
                    {"name": "a", "image": "x", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}},
                    {"name": "b", "image": "x", "resources": {"limits": {"cpu": "200m"}}}
                ],
                "initContainers": [
                    {"name": "i", "image": "x", "resources": {"requests": {"cpu": "1", "memory": "1Mi"}}}
                ],
                "overhead": {"cpu": "10m"}
            }
        }));
        assert_eq!(p.requests.milli_cpu, 1010);
        assert_eq!(p.requests.memory, 64 * 1024 * 1024);
        // b has no memory request: 200Mi is assumed for scoring.
        assert_eq!(p.non_zero_memory, (64 + 200) * 1024 * 1024);
        assert_eq!(&*p.key, "ns/p");
    }

    #[test]
    fn sidecar_init_containers_add_to_the_running_sum() {
        let p = pod(json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {
                "containers": [{"name": "a", "image": "x", "resources": {"requests": {"cpu": "100m"}}}],
                "initContainers": [
                    {"name": "side", "image": "x", "restartPolicy": "Always", "resources": {"requests": {"cpu": "50m"}}},
                    {"name": "i", "image": "x", "resources": {"requests": {"cpu": "120m"}}}
                ]
            }
        }));
        // max(100 + 50, 120 + 50) = 170
        assert_eq!(p.requests.milli_cpu, 170);
    }

    #[test]
    fn node_readiness_and_allocatable() {
        let n = node(json!({
            "metadata": {"name": "n1", "labels": {"a": "b"}},
            "spec": {"unschedulable": true},
            "status": {
                "allocatable": {"cpu": "32", "memory": "128Gi", "pods": "110", "nvidia.com/gpu": "2"},
                "conditions": [{"type": "Ready", "status": "False"}]
            }
        }));
        assert_eq!(n.allocatable.milli_cpu, 32_000);
        assert_eq!(n.allocatable.memory, 128 << 30);
        assert_eq!(n.allocatable.scalar("nvidia.com/gpu"), 2);
        assert_eq!(n.allowed_pods, 110);
        assert_eq!(n.readiness, Readiness::NotReady);
        assert!(n.unschedulable);
        let missing = node(json!({"metadata": {"name": "n2"}}));
        assert_eq!(missing.readiness, Readiness::Unknown);
    }
}
