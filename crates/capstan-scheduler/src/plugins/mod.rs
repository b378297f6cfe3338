//! The plugins, one module each, registered by their upstream names in [`filter`] and [`score`].
//! The default profile ([`DEFAULT_FILTERS`], [`DEFAULT_SCORES`]) follows kube-scheduler's order and
//! weights; `CheckNodeCondition` (the pre-taint-based readiness predicate) and `SelectorSpread` (the
//! owner-based spreading that `PodTopologySpread` replaced upstream) are kept from older releases.

pub mod check_node_condition;
pub mod inter_pod_affinity;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_resources_balanced_allocation;
pub mod node_resources_fit;
pub mod node_unschedulable;
pub mod selector_spread;
pub mod taint_toleration;
pub mod volume_binding;

use crate::framework::{Filter, Score};

/// Filters in the order they run; the first rejection is the node's reason.
pub const DEFAULT_FILTERS: &[&str] = &[
    node_unschedulable::NAME,
    node_name::NAME,
    taint_toleration::NAME,
    check_node_condition::NAME,
    node_affinity::NAME,
    node_ports::NAME,
    node_resources_fit::NAME,
    volume_binding::NAME,
    inter_pod_affinity::NAME,
];

/// Scores with their weights.
pub const DEFAULT_SCORES: &[(&str, i64)] = &[
    (node_resources_fit::NAME, 1),
    (node_resources_balanced_allocation::NAME, 1),
    (node_affinity::NAME, 2),
    (taint_toleration::NAME, 3),
    (inter_pod_affinity::NAME, 2),
    (selector_spread::NAME, 2),
];

/// The filter plugin registered under `name`.
pub fn filter(name: &str) -> Option<Box<dyn Filter>> {
    Some(match name {
        node_unschedulable::NAME => Box::new(node_unschedulable::NodeUnschedulable),
        node_name::NAME => Box::new(node_name::NodeName),
        taint_toleration::NAME => Box::new(taint_toleration::TaintToleration),
        check_node_condition::NAME => Box::new(check_node_condition::CheckNodeCondition),
        node_affinity::NAME => Box::new(node_affinity::NodeAffinity),
        node_ports::NAME => Box::new(node_ports::NodePorts),
        node_resources_fit::NAME => Box::new(node_resources_fit::NodeResourcesFit),
        inter_pod_affinity::NAME => Box::new(inter_pod_affinity::InterPodAffinity),
        volume_binding::NAME => Box::new(volume_binding::VolumeBinding),
        _ => return None,
    })
}

/// The score plugin registered under `name`.
pub fn score(name: &str) -> Option<Box<dyn Score>> {
    Some(match name {
        node_resources_fit::NAME => Box::new(node_resources_fit::NodeResourcesFit),
        node_resources_balanced_allocation::NAME => {
            Box::new(node_resources_balanced_allocation::NodeResourcesBalancedAllocation)
        }
        node_affinity::NAME => Box::new(node_affinity::NodeAffinity),
        taint_toleration::NAME => Box::new(taint_toleration::TaintToleration),
        inter_pod_affinity::NAME => Box::new(inter_pod_affinity::InterPodAffinity),
        selector_spread::NAME => Box::new(selector_spread::SelectorSpread),
        _ => return None,
    })
}

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers for plugin unit tests.
    use crate::cache::NodeInfo;
    use crate::types::PodInfo;
    use crate::types::tests::{node, pod};
    use serde_json::json;
    use std::sync::Arc;

    /// A node with `cpu`/`memory` allocatable, 110 pods, Ready, plus extra fields merged in.
    pub(crate) fn node_info(name: &str, extra: serde_json::Value) -> NodeInfo {
        let mut v = json!({
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {
                "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True"}]
            }
        });
        merge(&mut v, extra);
        NodeInfo::new(node(v))
    }

    /// A pod in namespace `ns` with one container and the given spec fields merged in.
    pub(crate) fn pod_info(name: &str, extra: serde_json::Value) -> PodInfo {
        let mut v = json!({
            "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}")},
            "spec": {"containers": [{"name": "c", "image": "x"}]}
        });
        merge(&mut v, extra);
        pod(v)
    }

    pub(crate) fn add(node: &mut NodeInfo, pod: PodInfo) {
        node.add_pod(Arc::new(pod));
    }

    fn merge(base: &mut serde_json::Value, extra: serde_json::Value) {
        match (base, extra) {
            (serde_json::Value::Object(b), serde_json::Value::Object(e)) => {
                for (k, v) in e {
                    merge(b.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (b, e) => *b = e,
        }
    }
}
