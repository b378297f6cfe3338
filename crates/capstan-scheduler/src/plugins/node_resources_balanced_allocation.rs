//! NodeResourcesBalancedAllocation: prefers nodes whose cpu and memory utilisation stay close to each
//! other after placing the pod (`(1 - standard deviation of the fractions) * 100`).

use crate::cache::NodeInfo;
use crate::framework::{CycleState, MAX_NODE_SCORE, Score};
use crate::types::PodInfo;

pub const NAME: &str = "NodeResourcesBalancedAllocation";

#[derive(Debug)]
pub struct NodeResourcesBalancedAllocation;

fn fraction(requested: i64, allocatable: i64) -> f64 {
    if allocatable <= 0 {
        return 1.0;
    }
    (requested as f64 / allocatable as f64).min(1.0)
}

impl Score for NodeResourcesBalancedAllocation {
    fn name(&self) -> &'static str {
        NAME
    }

    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let Some(n) = &node.node else { return 0 };
        let cpu = fraction(
            node.non_zero_cpu + pod.non_zero_cpu,
            n.allocatable.milli_cpu,
        );
        let mem = fraction(
            node.non_zero_memory + pod.non_zero_memory,
            n.allocatable.memory,
        );
        // Standard deviation of two values is half their distance.
        let std = (cpu - mem).abs() / 2.0;
        ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{node_info, pod_info};
    use serde_json::json;

    #[test]
    fn balanced_usage_scores_higher() {
        let s = CycleState::default();
        let n = node_info("n", json!({}));
        let balanced = pod_info(
            "a",
            json!({"spec": {"containers": [{"name": "c", "image": "x",
            "resources": {"requests": {"cpu": "2", "memory": "4Gi"}}}]}}),
        );
        let skewed = pod_info(
            "b",
            json!({"spec": {"containers": [{"name": "c", "image": "x",
            "resources": {"requests": {"cpu": "4", "memory": "1Gi"}}}]}}),
        );
        assert_eq!(
            NodeResourcesBalancedAllocation.score(&s, &balanced, &n),
            100
        );
        // cpu 1.0, memory 0.125 -> std 0.4375 -> 56
        assert_eq!(NodeResourcesBalancedAllocation.score(&s, &skewed, &n), 56);
    }
}
