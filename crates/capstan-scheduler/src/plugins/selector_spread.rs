//! SelectorSpread: spreads the pods of one controller (same controlling owner uid) across nodes —
//! the fewer of its siblings a node already runs, the higher it scores.

use crate::cache::NodeInfo;
use crate::framework::{CycleState, Score, default_normalize};
use crate::types::PodInfo;

pub const NAME: &str = "SelectorSpread";

#[derive(Debug)]
pub struct SelectorSpread;

impl Score for SelectorSpread {
    fn name(&self) -> &'static str {
        NAME
    }

    fn skip(&self, _: &CycleState, pod: &PodInfo) -> bool {
        pod.owner_uid.is_none()
    }

    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        pod.owner_uid
            .as_ref()
            .and_then(|owner| node.owner_counts.get(owner))
            .map_or(0, |&c| i64::from(c))
    }

    fn normalize(&self, scores: &mut [i64]) {
        default_normalize(scores, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{add, node_info, pod_info};
    use serde_json::json;

    fn owned(name: &str, owner: &str) -> PodInfo {
        pod_info(
            name,
            json!({"metadata": {"ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner, "uid": owner, "controller": true}]}}),
        )
    }

    #[test]
    fn nodes_with_fewer_siblings_score_higher() {
        let s = CycleState::default();
        let mut a = node_info("a", json!({}));
        let mut b = node_info("b", json!({}));
        let c = node_info("c", json!({}));
        add(&mut a, owned("x1", "rs1"));
        add(&mut a, owned("x2", "rs1"));
        add(&mut b, owned("x3", "rs1"));
        add(&mut b, owned("y1", "rs2"));
        let p = owned("x4", "rs1");
        let mut scores: Vec<i64> = [&a, &b, &c]
            .iter()
            .map(|n| SelectorSpread.score(&s, &p, n))
            .collect();
        assert_eq!(scores, vec![2, 1, 0]);
        SelectorSpread.normalize(&mut scores);
        assert_eq!(scores, vec![0, 50, 100]);
    }
}
