//! NodeName: a pod that names a node (`spec.nodeName`) fits only that node.

use crate::cache::NodeInfo;
use crate::framework::{CycleState, Filter, Status};
use crate::types::PodInfo;

pub const NAME: &str = "NodeName";
pub const REASON: &str = "node(s) didn't match the requested node name";

#[derive(Debug)]
pub struct NodeName;

impl Filter for NodeName {
    fn name(&self) -> &'static str {
        NAME
    }

    fn skip(&self, _: &CycleState, pod: &PodInfo) -> bool {
        pod.node_name.is_none()
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        match &pod.node_name {
            Some(wanted) if wanted != node.name() => Status::unresolvable(REASON),
            _ => Status::Success,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{node_info, pod_info};
    use serde_json::json;

    #[test]
    fn only_the_named_node_fits() {
        let s = CycleState::default();
        let named = pod_info("p", json!({"spec": {"nodeName": "n2"}}));
        assert_eq!(
            NodeName.filter(&s, &named, &node_info("n1", json!({}))),
            Status::unresolvable(REASON)
        );
        assert!(
            NodeName
                .filter(&s, &named, &node_info("n2", json!({})))
                .is_success()
        );
        assert!(
            NodeName
                .filter(&s, &pod_info("q", json!({})), &node_info("n1", json!({})))
                .is_success()
        );
    }
}
