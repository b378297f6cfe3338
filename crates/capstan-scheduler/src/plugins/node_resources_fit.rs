//! NodeResourcesFit: the pod's requests must fit the node's allocatable minus what its pods already
//! request, and the pod count must stay within `pods` (filter); LeastAllocated scoring prefers nodes
//! with the most cpu and memory left after placing the pod.

use crate::cache::NodeInfo;
use crate::framework::{CycleState, Filter, MAX_NODE_SCORE, Reason, Score, Status};
use crate::types::PodInfo;

pub const NAME: &str = "NodeResourcesFit";

#[derive(Debug)]
pub struct NodeResourcesFit;

impl Filter for NodeResourcesFit {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(n) = &node.node else {
            return Status::unresolvable("node not found");
        };
        let mut reasons: Vec<Reason> = Vec::new();
        if node.pod_count + 1 > n.allowed_pods {
            reasons.push("Too many pods".into());
        }
        let want = &pod.requests;
        if !want.is_zero() {
            let alloc = &n.allocatable;
            let used = &node.requested;
            if want.milli_cpu > 0 && want.milli_cpu > alloc.milli_cpu - used.milli_cpu {
                reasons.push("Insufficient cpu".into());
            }
            if want.memory > 0 && want.memory > alloc.memory - used.memory {
                reasons.push("Insufficient memory".into());
            }
            if want.ephemeral_storage > 0
                && want.ephemeral_storage > alloc.ephemeral_storage - used.ephemeral_storage
            {
                reasons.push("Insufficient ephemeral-storage".into());
            }
            for (name, v) in &want.scalar {
                if *v > 0 && *v > alloc.scalar(name) - used.scalar(name) {
                    reasons.push(format!("Insufficient {name}").into());
                }
            }
        }
        if reasons.is_empty() {
            Status::Success
        } else {
            Status::Unschedulable(reasons)
        }
    }
}

/// `(allocatable - requested) * 100 / allocatable`, 0 when over-committed.
fn least_allocated(requested: i64, allocatable: i64) -> i64 {
    if allocatable <= 0 || requested > allocatable {
        return 0;
    }
    (allocatable - requested) * MAX_NODE_SCORE / allocatable
}

impl Score for NodeResourcesFit {
    fn name(&self) -> &'static str {
        NAME
    }

    /// LeastAllocated over cpu and memory (weight 1 each), with default requests for containers
    /// that ask for nothing.
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let Some(n) = &node.node else { return 0 };
        let cpu = least_allocated(
            node.non_zero_cpu + pod.non_zero_cpu,
            n.allocatable.milli_cpu,
        );
        let mem = least_allocated(
            node.non_zero_memory + pod.non_zero_memory,
            n.allocatable.memory,
        );
        (cpu + mem) / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{add, node_info, pod_info};
    use serde_json::json;

    fn requesting(name: &str, requests: serde_json::Value) -> PodInfo {
        pod_info(
            name,
            json!({"spec": {"containers": [{"name": "c", "image": "x",
            "resources": {"requests": requests}}]}}),
        )
    }

    #[test]
    fn reports_every_insufficient_resource() {
        let s = CycleState::default();
        let mut n = node_info(
            "n",
            json!({"status": {"allocatable": {"cpu": "2", "memory": "1Gi", "pods": "2", "example.com/gpu": "1"}}}),
        );
        add(
            &mut n,
            requesting("a", json!({"cpu": "1500m", "memory": "512Mi"})),
        );
        let cases: Vec<(serde_json::Value, Vec<&str>)> = vec![
            (json!({"cpu": "500m", "memory": "512Mi"}), vec![]),
            (json!({"cpu": "501m"}), vec!["Insufficient cpu"]),
            (
                json!({"cpu": "1", "memory": "1Gi"}),
                vec!["Insufficient cpu", "Insufficient memory"],
            ),
            (
                json!({"example.com/gpu": "2"}),
                vec!["Insufficient example.com/gpu"],
            ),
            (json!({"example.com/gpu": "1"}), vec![]),
        ];
        for (req, want) in cases {
            let status = NodeResourcesFit.filter(&s, &requesting("p", req.clone()), &n);
            assert_eq!(
                status.reasons(),
                want.iter().map(|r| Reason::from(*r)).collect::<Vec<_>>(),
                "{req}"
            );
        }
        add(&mut n, requesting("b", json!({})));
        let status = NodeResourcesFit.filter(&s, &requesting("p", json!({"cpu": "1"})), &n);
        assert_eq!(
            status.reasons(),
            &[
                Reason::from("Too many pods"),
                Reason::from("Insufficient cpu")
            ]
        );
    }

    #[test]
    fn least_allocated_prefers_emptier_nodes() {
        let s = CycleState::default();
        let empty = node_info("a", json!({}));
        let mut busy = node_info("b", json!({}));
        add(
            &mut busy,
            requesting("x", json!({"cpu": "2", "memory": "4Gi"})),
        );
        let p = requesting("p", json!({"cpu": "1", "memory": "2Gi"}));
        // 4 cpu / 8Gi: empty -> (75 + 75) / 2; busy -> (25 + 25) / 2.
        assert_eq!(NodeResourcesFit.score(&s, &p, &empty), 75);
        assert_eq!(NodeResourcesFit.score(&s, &p, &busy), 25);
    }
}
