//! NodeAffinity: `spec.nodeSelector` and required node affinity must match the node (filter);
//! preferred node affinity terms add their weights (score, normalised to 0..=100).

use crate::cache::NodeInfo;
use crate::framework::{CycleState, Filter, Score, Status, default_normalize};
use crate::selectors::{node_selector_matches, node_term_matches};
use crate::types::PodInfo;

pub const NAME: &str = "NodeAffinity";
pub const REASON: &str = "node(s) didn't match Pod's node affinity/selector";

#[derive(Debug)]
pub struct NodeAffinity;

impl Filter for NodeAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn skip(&self, _: &CycleState, pod: &PodInfo) -> bool {
        pod.node_selector.is_empty() && pod.required_node_affinity.is_none()
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(n) = &node.node else {
            return Status::unresolvable("node not found");
        };
        let selector_ok = pod
            .node_selector
            .iter()
            .all(|(k, v)| n.labels.get(k) == Some(v));
        let affinity_ok = pod
            .required_node_affinity
            .as_ref()
            .is_none_or(|sel| node_selector_matches(sel, &n.name, &n.labels));
        if selector_ok && affinity_ok {
            Status::Success
        } else {
            Status::unresolvable(REASON)
        }
    }
}

impl Score for NodeAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn skip(&self, _: &CycleState, pod: &PodInfo) -> bool {
        pod.preferred_node_affinity.iter().all(|t| t.weight == 0)
    }

    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let Some(n) = &node.node else { return 0 };
        pod.preferred_node_affinity
            .iter()
            .filter(|t| t.weight != 0 && node_term_matches(&t.preference, &n.name, &n.labels))
            .map(|t| i64::from(t.weight))
            .sum()
    }

    fn normalize(&self, scores: &mut [i64]) {
        default_normalize(scores, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{node_info, pod_info};
    use serde_json::json;

    #[test]
    fn node_selector_and_required_affinity_filter() {
        let s = CycleState::default();
        let ssd = node_info(
            "a",
            json!({"metadata": {"labels": {"disk": "ssd", "cores": "16"}}}),
        );
        let hdd = node_info(
            "b",
            json!({"metadata": {"labels": {"disk": "hdd", "cores": "4"}}}),
        );
        let by_selector = pod_info("p", json!({"spec": {"nodeSelector": {"disk": "ssd"}}}));
        assert!(NodeAffinity.filter(&s, &by_selector, &ssd).is_success());
        assert_eq!(
            NodeAffinity.filter(&s, &by_selector, &hdd),
            Status::unresolvable(REASON)
        );
        let by_affinity = pod_info(
            "q",
            json!({"spec": {"affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["8"]}]}]}}}}}),
        );
        assert!(NodeAffinity.filter(&s, &by_affinity, &ssd).is_success());
        assert!(!NodeAffinity.filter(&s, &by_affinity, &hdd).is_success());
    }

    #[test]
    fn preferred_terms_score_by_weight() {
        let s = CycleState::default();
        let p = pod_info(
            "p",
            json!({"spec": {"affinity": {"nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 10, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}},
                {"weight": 30, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}}
            ]}}}}),
        );
        let nodes = [
            node_info("a", json!({"metadata": {"labels": {"disk": "ssd"}}})),
            node_info(
                "b",
                json!({"metadata": {"labels": {"disk": "ssd", "zone": "a"}}}),
            ),
            node_info("c", json!({})),
        ];
        let mut scores: Vec<i64> = nodes
            .iter()
            .map(|n| NodeAffinity.score(&s, &p, n))
            .collect();
        assert_eq!(scores, vec![10, 40, 0]);
        Score::normalize(&NodeAffinity, &mut scores);
        assert_eq!(scores, vec![25, 100, 0]);
    }
}
