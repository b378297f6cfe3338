//! NodeUnschedulable: cordoned nodes (`spec.unschedulable`) take only pods that tolerate the
//! `node.kubernetes.io/unschedulable:NoSchedule` taint.

use k8s_openapi::api::core::v1::Taint;

use crate::cache::NodeInfo;
use crate::framework::{CycleState, Filter, Status};
use crate::selectors::tolerated;
use crate::types::PodInfo;

pub const NAME: &str = "NodeUnschedulable";
pub const REASON: &str = "node(s) were unschedulable";
const TAINT_KEY: &str = "node.kubernetes.io/unschedulable";

#[derive(Debug)]
pub struct NodeUnschedulable;

impl Filter for NodeUnschedulable {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(n) = &node.node else {
            return Status::unresolvable("node not found");
        };
        if !n.unschedulable {
            return Status::Success;
        }
        let taint = Taint {
            key: TAINT_KEY.to_owned(),
            effect: "NoSchedule".to_owned(),
            ..Default::default()
        };
        if tolerated(&pod.tolerations, &taint) {
            Status::Success
        } else {
            Status::unresolvable(REASON)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{node_info, pod_info};
    use serde_json::json;

    #[test]
    fn cordoned_nodes_reject_pods_without_the_toleration() {
        let cordoned = node_info("n", json!({"spec": {"unschedulable": true}}));
        let plain = pod_info("p", json!({}));
        let tolerant = pod_info(
            "t",
            json!({"spec": {"tolerations": [
            {"key": TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}]}}),
        );
        let s = CycleState::default();
        assert_eq!(
            NodeUnschedulable.filter(&s, &plain, &cordoned),
            Status::unresolvable(REASON)
        );
        assert!(
            NodeUnschedulable
                .filter(&s, &tolerant, &cordoned)
                .is_success()
        );
        assert!(
            NodeUnschedulable
                .filter(&s, &plain, &node_info("m", json!({})))
                .is_success()
        );
    }
}
